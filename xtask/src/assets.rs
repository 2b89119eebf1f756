//! What the harness boots besides the image: host packages, Xen and the dom0 kernel (fetched by
//! `ci/fetch-xen.sh`), and the dom0 initramfs (built by `ci/build-dom0.sh`, cached by a hash
//! of everything that goes into it); for `cargo xtask bench`, the initramfs of a Linux guest
//! (`ci/build-linux-guest.sh`, cached the same way).

use crate::{cargo, mote_dir, run_status, target_dir, workspace_root};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Everything QEMU needs to boot Xen with a dom0.
#[derive(Debug, Clone)]
pub struct Assets {
    /// The hypervisor (uncompressed, multiboot).
    pub xen: PathBuf,
    /// The dom0 kernel.
    pub dom0_kernel: PathBuf,
    /// The dom0 initramfs (with the agent).
    pub dom0_initrd: PathBuf,
    /// The agent binary (for the host).
    pub agent: PathBuf,
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/mote`.
pub fn cache_dir() -> Result<PathBuf, String> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
            PathBuf::from(home).join(".cache")
        }
    };
    Ok(base.join("mote"))
}

/// A script under `ci/`, checked to exist.
fn ci_script(name: &str) -> Result<PathBuf, String> {
    let path = workspace_root().join("ci").join(name);
    if !path.is_file() {
        return Err(format!("{} is missing (the harness scripts live in ci/)", path.display()));
    }
    Ok(path)
}

/// Runs `ci/install-host-deps.sh` (idempotent).
pub fn install_host_deps() -> Result<(), String> {
    let script = ci_script("install-host-deps.sh")?;
    run_status(Command::new("bash").arg(&script)).map_err(|e| format!("installing host packages: {e}"))
}

/// Fetches Xen and the dom0 kernel, builds the agent and the dom0 initramfs (if its inputs
/// changed), and returns their paths.
pub fn ensure() -> Result<Assets, String> {
    let cache = cache_dir()?;
    fs::create_dir_all(&cache).map_err(|e| format!("create {}: {e}", cache.display()))?;
    run_status(Command::new("bash").arg(ci_script("fetch-xen.sh")?).arg(&cache))
        .map_err(|e| format!("fetching Xen and the dom0 kernel: {e}"))?;
    let xen = cache.join("xen");
    let dom0_kernel = ["vmlinux", "vmlinuz"]
        .iter()
        .map(|name| cache.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("ci/fetch-xen.sh left no vmlinux or vmlinuz in {}", cache.display()))?;
    if !xen.is_file() {
        return Err(format!("ci/fetch-xen.sh left no xen in {}", cache.display()));
    }
    let agent = build_agent()?;
    let dom0_initrd = initramfs(&cache, "dom0", &agent, &dom0_kernel)?;
    Ok(Assets { xen, dom0_kernel, dom0_initrd, agent })
}

/// The cached initramfs of the Linux benchmark guest (which boots the dom0 kernel), built if
/// missing.
pub fn linux_guest_initrd(assets: &Assets) -> Result<PathBuf, String> {
    initramfs(&cache_dir()?, "linux-guest", &assets.agent, &assets.dom0_kernel)
}

/// Builds `mote-agent` for the host and returns the binary.
fn build_agent() -> Result<PathBuf, String> {
    run_status(cargo().args(["build", "--release", "-p", "mote-agent"]))
        .map_err(|e| format!("building mote-agent: {e}"))?;
    let agent = target_dir().join("release").join("mote-agent");
    if !agent.is_file() {
        return Err(format!("cargo built mote-agent but {} is missing", agent.display()));
    }
    Ok(agent)
}

/// Builds host/vif-mote (`cargo xtask build vif-mote`) into `target/mote/vif-mote`: static and
/// not position-independent, so that it runs in any x86-64 Linux dom0 and its start costs no
/// dynamic loading or relocation, which under emulation took about 0.1 s of each `xl create`
/// (docs/measurements.md, Boot).
pub fn build_vif_mote() -> Result<PathBuf, String> {
    // `cargo rustc` gives the flags to the binary's own link only; naming the target keeps
    // them (and the static C runtime) away from build scripts and proc-macros.
    run_status(cargo().args([
        "rustc",
        "--release",
        "-p",
        "vif-mote",
        "--target",
        "x86_64-unknown-linux-gnu",
        "--",
        "-C",
        "target-feature=+crt-static",
        "-C",
        "relocation-model=static",
    ]))
    .map_err(|e| format!("building vif-mote: {e}"))?;
    let built = target_dir().join("x86_64-unknown-linux-gnu").join("release").join("vif-mote");
    let out = mote_dir().join("vif-mote");
    fs::create_dir_all(mote_dir()).map_err(|e| format!("create {}: {e}", mote_dir().display()))?;
    fs::copy(&built, &out).map_err(|e| format!("copy {} to {}: {e}", built.display(), out.display()))?;
    Ok(out)
}

/// The cached initramfs `<cache>/<name>-<hash>.cpio` that `ci/build-<name>.sh` (with
/// `ci/initramfs-common.sh`) builds from the agent, the files under `ci/<name>/` and what
/// ci/fetch-xen.sh unpacked; built if missing.
fn initramfs(cache: &Path, name: &str, agent: &Path, kernel: &Path) -> Result<PathBuf, String> {
    let script = ci_script(&format!("build-{name}.sh"))?;
    let mut inputs = vec![agent.to_path_buf(), script.clone(), ci_script("initramfs-common.sh")?];
    collect_files(&workspace_root().join("ci").join(name), &mut inputs)?;
    // ci/build-dom0.sh installs the lean hotplug helper operators get from host/vif-mote.
    let vif_mote = if name == "dom0" { Some(build_vif_mote()?) } else { None };
    inputs.extend(vif_mote.clone());
    let mut hash = Fnv64::new();
    // The initramfs also carries the kernel's modules (and dom0's the toolstack) unpacked by
    // ci/fetch-xen.sh: a new fetch (its stamp) or kernel means a new build. Their sizes and
    // modification times stand for their (large) contents.
    for path in [kernel.to_path_buf(), cache.join("fetched.stamp")] {
        let meta = fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .unwrap_or_default();
        hash.write(format!("{} {} {}\n", path.display(), meta.len(), mtime.as_nanos()).as_bytes());
    }
    for input in &inputs {
        let data = fs::read(input).map_err(|e| format!("read {}: {e}", input.display()))?;
        let name = input.strip_prefix(workspace_root()).unwrap_or(input);
        hash.write(name.to_string_lossy().as_bytes());
        hash.write(&(data.len() as u64).to_le_bytes());
        hash.write(&data);
    }
    let out = cache.join(format!("{name}-{:016x}.cpio", hash.finish()));
    if out.is_file() {
        eprintln!("harness: {name} initramfs up to date ({})", out.display());
        return Ok(out);
    }
    let partial = cache.join(format!("{name}-{:016x}.cpio.partial", hash.finish()));
    run_status(Command::new("bash").arg(&script).arg(cache).arg(agent).arg(&partial).args(vif_mote))
        .map_err(|e| format!("building the {name} initramfs: {e}"))?;
    if !partial.is_file() {
        return Err(format!("ci/build-{name}.sh succeeded but did not write {}", partial.display()));
    }
    fs::rename(&partial, &out)
        .map_err(|e| format!("rename {} to {}: {e}", partial.display(), out.display()))?;
    // Older initramfs builds are useless now.
    if let Ok(entries) = fs::read_dir(cache) {
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with(&format!("{name}-")) && file.ends_with(".cpio") && entry.path() != out {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    Ok(out)
}

/// Appends every file under `dir` (recursively, sorted) to `out`; nothing if `dir` is absent.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("read {}: {e}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// 64-bit FNV-1a: a cache key, not a security measure.
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_values() {
        let mut h = Fnv64::new();
        assert_eq!(h.finish(), 0xcbf2_9ce4_8422_2325);
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
    }
}
