//! The sector adapter and the filesystem API against images `mkfs.ext4 -d` makes, held in
//! memory (e2fsprogs is a host dependency: ci/install-host-deps.sh).

use super::*;
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A disk in memory that counts reads and can be told to fail them.
struct MemDisk {
    data: Vec<u8>,
    sector_size: usize,
    /// Set: every read fails.
    fail: Rc<Cell<bool>>,
}

impl Sectors for MemDisk {
    fn sector_size(&self) -> usize {
        self.sector_size
    }

    fn sectors(&self) -> u64 {
        (self.data.len() / self.sector_size) as u64
    }

    fn read_sectors(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), String> {
        assert_eq!(buf.len() % self.sector_size, 0, "the adapter reads whole sectors only");
        if self.fail.get() {
            return Err(format!("I/O error at sector {sector}"));
        }
        let start = sector as usize * self.sector_size;
        buf.copy_from_slice(&self.data[start..start + buf.len()]);
        Ok(())
    }
}

fn mem(data: Vec<u8>, sector_size: usize) -> MemDisk {
    MemDisk { data, sector_size, fail: Rc::default() }
}

/// A fresh scratch directory.
fn scratch() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mote-fs-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tree the tests read: a few files (one larger than a block group's worth of
/// sectors would be read in one go), a subdirectory and a symbolic link.
fn tree(root: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 4096) as u8).collect();
    let files = vec![
        ("/index.html", b"<h1>hello from disk</h1>\n".to_vec()),
        ("/empty", Vec::new()),
        ("/docs/big.bin", big),
        ("/docs/odd.txt", vec![b'x'; 4097]),
    ];
    for (path, body) in &files {
        let file = root.join(&path[1..]);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, body).unwrap();
    }
    std::os::unix::fs::symlink("index.html", root.join("link")).unwrap();
    files
}

/// `mkfs.ext4 -d` of `dir` in an image of `kib` KiB, with extra mkfs options.
fn mkfs(dir: &Path, kib: u32, options: &[&str]) -> Vec<u8> {
    let image = dir.with_extension("img");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0"])
        .args(options)
        .arg("-d")
        .arg(dir)
        .arg(&image)
        .arg(format!("{kib}k"))
        .status()
        .expect("mkfs.ext4 runs (e2fsprogs: ci/install-host-deps.sh)");
    assert!(status.success(), "mkfs.ext4 failed");
    std::fs::read(image).unwrap()
}

fn image(options: &[&str]) -> (Vec<u8>, Vec<(&'static str, Vec<u8>)>) {
    let dir = scratch();
    let files = tree(&dir);
    (mkfs(&dir, 4096, options), files)
}

#[test]
fn reads_every_file_byte_for_byte_with_512_and_4096_byte_sectors() {
    for options in [&["-O", "^has_journal"][..], &["-b", "4096"][..], &["-b", "1024", "-t", "ext2"][..]] {
        let (data, files) = image(options);
        for sector_size in [512, 4096] {
            let fs = Fs::load("mem", mem(data.clone(), sector_size)).unwrap();
            for (path, body) in &files {
                let before = fs.stats();
                assert_eq!(&fs.read(path).unwrap(), body, "{path} with {options:?}, {sector_size}");
                let read = fs.stats().bytes - before.bytes;
                // The reader fetches 32 KiB at a time into its block cache: the file's data,
                // and at most a directory, an inode table and an extent block besides.
                let bound = (body.len() as u64).div_ceil(32 << 10) * (32 << 10) + 3 * (32 << 10);
                assert!(read <= bound, "{path}: {read} bytes read for {}", body.len());
                let meta = fs.metadata(path).unwrap();
                assert_eq!((meta.kind, meta.len), (Kind::File, body.len() as u64));
                assert!(meta.modified > 1_600_000_000, "mtime {}", meta.modified);
            }
            assert_eq!(fs.read("/link").unwrap(), b"<h1>hello from disk</h1>\n", "links are followed");
            let before = fs.stats();
            fs.read("/index.html").unwrap();
            assert_eq!(fs.stats(), before, "a small file read again comes from the reader's cache");
        }
    }
}

#[test]
fn lists_directories_sorted_with_kinds() {
    let (data, _) = image(&[]);
    let fs = Fs::load("mem", mem(data, 512)).unwrap();
    let root: Vec<(String, Kind)> = fs.read_dir("/").unwrap().into_iter().map(|e| (e.name, e.kind)).collect();
    let want = [
        ("docs", Kind::Directory),
        ("empty", Kind::File),
        ("index.html", Kind::File),
        ("link", Kind::Other),
        ("lost+found", Kind::Directory),
    ];
    assert_eq!(root, want.map(|(n, k)| (n.to_string(), k)));
    let docs: Vec<String> = fs.read_dir("/docs").unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(docs, ["big.bin", "odd.txt"]);
    assert_eq!(fs.metadata("/docs").unwrap().kind, Kind::Directory);
    assert_eq!(fs.metadata("/link").unwrap().kind, Kind::Other);
}

#[test]
fn missing_paths_and_wrong_kinds_are_errors() {
    let (data, _) = image(&[]);
    let fs = Fs::load("mem", mem(data, 512)).unwrap();
    let missing = fs.read("/nope.html").unwrap_err();
    assert!(missing.is_not_found());
    assert_eq!(missing.to_string(), "/nope.html: no such file or directory");
    assert!(!fs.read("/docs").unwrap_err().is_not_found());
    assert!(fs.read_dir("/index.html").is_err());
    assert!(fs.read("relative").is_err());
}

#[test]
fn unaligned_reads_match_the_bytes() {
    let data: Vec<u8> = (0..64 * 512u32).map(|i| (i % 251) as u8).collect();
    let mut reader = SectorReader::new(mem(data.clone(), 512));
    for (start, len) in
        [(0, 1), (1, 511), (511, 2), (100, 1500), (512, 512), (1024, 4096), (3, 0), (32767, 1)]
    {
        let mut buf = vec![0; len];
        reader.read_at(start, &mut buf).unwrap();
        assert_eq!(buf, data[start as usize..start as usize + len], "{start}+{len}");
    }
    let before = reader.stats();
    let mut buf = vec![0; 8192];
    reader.read_at(4096, &mut buf).unwrap();
    let after = reader.stats();
    assert_eq!((after.reads - before.reads, after.bytes - before.bytes), (1, 8192), "aligned: no bounce");
}

#[test]
fn reads_past_the_end_are_refused() {
    let mut reader = SectorReader::new(mem(vec![0; 4096], 512));
    let mut buf = [0; 2];
    let e = reader.read_at(4095, &mut buf).unwrap_err();
    assert_eq!(e, "2 bytes at byte 4095 run past the disk's end (4096 bytes)");
    assert!(reader.read_at(u64::MAX, &mut buf).is_err());
    reader.read_at(4094, &mut buf).unwrap();
}

#[test]
fn a_disk_without_a_filesystem_is_a_clear_error() {
    let e = Fs::load("disk xvda", mem(vec![0; 1 << 20], 512)).err().unwrap();
    let text = e.to_string();
    assert!(text.starts_with("disk xvda: no readable ext2/3/4 filesystem: "), "{text}");
    let e = Fs::load("disk xvda", mem(vec![0; 1024], 512)).err().unwrap();
    assert!(e.to_string().contains("run past the disk's end"), "{e}");
}

#[test]
fn a_damaged_superblock_or_directory_is_a_clear_error() {
    let (data, _) = image(&[]);
    // The superblock is covered by a checksum (metadata_csum): flip a byte of its volume name.
    let mut bad = data.clone();
    bad[1024 + 0x78] ^= 0xff;
    let e = Fs::load("disk xvda", mem(bad, 512)).err().unwrap();
    assert!(e.to_string().contains("corrupt filesystem"), "{e}");
    // Overwrite every block holding the name index.html: the root directory, and the inode
    // table (where the short symbolic link keeps its target).
    let mut bad = data.clone();
    let needle = b"index.html";
    let blocks: Vec<usize> = data
        .chunks(4096)
        .enumerate()
        .filter(|(_, block)| block.windows(needle.len()).any(|w| w == needle))
        .map(|(i, _)| i)
        .collect();
    assert!(!blocks.is_empty());
    for block in blocks {
        bad[block * 4096..(block + 1) * 4096].fill(0xa5);
    }
    let fs = Fs::load("disk xvda", mem(bad, 512)).unwrap();
    let e = fs.read_dir("/").unwrap_err();
    assert!(e.to_string().starts_with("/: "), "{e}");
}

#[test]
fn device_errors_reach_the_caller() {
    let (data, _) = image(&[]);
    let disk = mem(data, 512);
    let fail = disk.fail.clone();
    let fs = Fs::load("mem", disk).unwrap();
    fail.set(true);
    // Loading read the superblock and group descriptors only: the file's blocks need the disk.
    let e = fs.read("/docs/big.bin").unwrap_err();
    assert!(e.to_string().contains("I/O error at sector"), "{e}");
    assert!(!e.is_not_found());
}

#[test]
fn a_file_larger_than_the_disk_is_refused_before_allocating() {
    let dir = scratch();
    std::fs::File::create(dir.join("sparse")).unwrap().set_len(1 << 40).unwrap();
    let fs = Fs::load("mem", mem(mkfs(&dir, 4096, &[]), 512)).unwrap();
    assert_eq!(fs.metadata("/sparse").unwrap().len, 1 << 40);
    let e = fs.read("/sparse").unwrap_err();
    assert_eq!(e.to_string(), "/sparse: says it holds 1099511627776 bytes, more than the disk's 4194304");
}
