//! `cargo xtask disk <dir> -o <image>`: an ext4 image of a directory, for the apps that read
//! their content from a disk (`mote::fs`). `mkfs.ext4 -d` (e2fsprogs 1.43 or later) copies the
//! tree in; the image has no journal (the guest only reads it) and no reserved blocks, and an
//! operator can loop-mount it to look or edit.

use crate::agent::Agent;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where `cargo xtask run --disk` and the integration cases keep content images in dom0 (a
/// tmpfs of its own, so they do not crowd the disk cases' images).
pub const DOM0_DIR: &str = "/mnt/content";
/// Tries of growing sizes before giving up.
const TRIES: u32 = 4;

/// The space the files of `dir` take in 4 KiB blocks, and how many inodes they need.
fn footprint(dir: &Path) -> Result<(u64, u64), String> {
    let mut bytes = 0;
    let mut inodes = 1;
    for entry in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let meta =
            fs::symlink_metadata(entry.path()).map_err(|e| format!("{}: {e}", entry.path().display()))?;
        inodes += 1;
        if meta.is_dir() {
            let (b, i) = footprint(&entry.path())?;
            bytes += b + 4096;
            inodes += i;
        } else {
            bytes += meta.len().div_ceil(4096) * 4096;
        }
    }
    Ok((bytes, inodes))
}

/// The mkfs.ext4 to run: on PATH, or in /usr/sbin (not on an ordinary user's PATH).
fn mkfs() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("mkfs.ext4")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"].map(PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| "mkfs.ext4 not found: install e2fsprogs (ci/install-host-deps.sh does)".into())
}

/// Writes an ext4 image of `dir` to `out`, sized to fit; returns its size in bytes.
pub fn make(dir: &Path, out: &Path) -> Result<u64, String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let mkfs = mkfs()?;
    let (bytes, inodes) = footprint(dir)?;
    // Room for the metadata (superblock, group descriptors, bitmaps, inode tables at 256 bytes
    // an inode) and lost+found, rounded to whole MiB; doubled while mkfs finds it too small.
    let mut size = (bytes + bytes / 8 + inodes * 512 + (2 << 20)).div_ceil(1 << 20) << 20;
    let inode_count = (inodes + 16).max(64).to_string();
    let mut last_error = String::new();
    for _ in 0..TRIES {
        let _ = fs::remove_file(out);
        let output = Command::new(&mkfs)
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-O", "^has_journal", "-m", "0"])
            .args(["-N", &inode_count, "-L", "mote-content", "-E", "root_owner=0:0", "-d"])
            .arg(dir)
            .arg(out)
            .arg(format!("{}k", size >> 10))
            .output()
            .map_err(|e| format!("cannot run {}: {e}", mkfs.display()))?;
        if output.status.success() {
            return Ok(size);
        }
        last_error = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        size *= 2;
    }
    let _ = fs::remove_file(out);
    Err(format!("mkfs.ext4 -d {} failed: {last_error}", dir.display()))
}

/// `cargo xtask disk`.
pub fn cmd(dir: &Path, out: &Path) -> Result<(), String> {
    let size = make(dir, out)?;
    println!(
        "mote: {}: ext4 image of {} ({} MiB); attach it with `cargo xtask run <app> --disk {}`",
        out.display(),
        dir.display(),
        size >> 20,
        out.display()
    );
    Ok(())
}

/// The loop device `cargo xtask run --disk` binds its image to.
pub const RUN_LOOP: &str = "/dev/loop7";

/// Copies the content image `image` into dom0 (a tmpfs at [`DOM0_DIR`]) as `name` and binds
/// it read-only to `loop_device`; returns the xl setting that attaches that as the guest's
/// first disk. A loop device rather than the file as the target: for a file, Xen's block
/// hotplug script sets the loop device up itself and scans all of them under a lock, which in
/// a busy emulated dom0 has overrun libxl's hotplug timeout; a block device takes its short path.
pub fn upload(agent: &Agent, image: &Path, name: &str, loop_device: &str) -> Result<String, String> {
    let data = fs::read(image).map_err(|e| format!("read {}: {e}", image.display()))?;
    agent.run_ok(
        // dom0's busybox has no `mountpoint`.
        &format!(
            "mkdir -p {DOM0_DIR} && (grep -q ' {DOM0_DIR} ' /proc/mounts || mount -t tmpfs tmpfs {DOM0_DIR})"
        ),
        Duration::from_secs(30),
    )?;
    let target = format!("{DOM0_DIR}/{name}");
    agent.put(&target, &data, 0o644, Duration::from_secs(120))?;
    agent.run_ok(
        &format!("losetup -d {loop_device} 2>/dev/null; losetup -r {loop_device} {target}"),
        Duration::from_secs(30),
    )?;
    Ok(xl_disk(loop_device))
}

/// The xl `disk=` setting of a read-only content disk at `target` in dom0.
pub fn xl_disk(target: &str) -> String {
    format!("disk=[\"format=raw,vdev=xvda,access=ro,target={target}\"]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_hold_the_tree_and_grow_to_fit() {
        let dir = std::env::temp_dir().join(format!("mote-xtask-disk-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("site/sub")).unwrap();
        fs::write(dir.join("site/index.html"), "hi").unwrap();
        let big: Vec<u8> = (0..5_000_000u32).map(|i| (i ^ (i >> 9)) as u8).collect();
        fs::write(dir.join("site/sub/big.bin"), &big).unwrap();
        let out = dir.join("site.img");
        let size = make(&dir.join("site"), &out).unwrap();
        assert_eq!(fs::metadata(&out).unwrap().len(), size);
        assert!((5_000_000..16 << 20).contains(&size), "{size} bytes");
        // debugfs reads the image back without mounting it.
        let dump = dir.join("big.out");
        let debugfs = mkfs().unwrap().with_file_name("debugfs");
        let status = Command::new(debugfs)
            .args(["-R", &format!("dump /sub/big.bin {}", dump.display())])
            .arg(&out)
            .output()
            .unwrap();
        assert!(status.status.success());
        assert_eq!(fs::read(&dump).unwrap(), big);
        assert!(make(&dir.join("nope"), &out).unwrap_err().contains("is not a directory"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_xl_setting_is_read_only_xvda() {
        assert_eq!(xl_disk("/dev/loop7"), r#"disk=["format=raw,vdev=xvda,access=ro,target=/dev/loop7"]"#);
    }
}
