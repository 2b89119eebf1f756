//! The ext2/3/4 reader behind [`crate::fs`] (the `disk` feature). The filesystem
//! is read by the `ext4-view` crate, which validates what it reads (checksums included) and
//! keeps its own block cache; [`SectorReader`] turns its byte-range reads into whole-sector
//! reads of a [`Sectors`] device, a [`Disk`](crate::disk::Disk) in a guest or memory in tests.

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;
use ext4_view::{Ext4, Ext4Error, Ext4Read, FileType};

/// What the filesystem reader needs of a disk: whole sectors by number.
pub trait Sectors {
    /// Bytes per sector (a power of two, at least 512).
    fn sector_size(&self) -> usize;
    /// Sectors on the device.
    fn sectors(&self) -> u64;
    /// Fills `buf` (a whole number of sectors) from `sector` on.
    fn read_sectors(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), String>;
}

/// A read of the device that failed, as `ext4-view` wants it (an `Error` it can box).
#[derive(Debug)]
struct ReadError(String);

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for ReadError {}

/// Byte ranges over whole sectors: the aligned middle of a range is read straight into the
/// caller's buffer, a partial first or last sector through a one-sector buffer.
pub struct SectorReader<D> {
    device: D,
    bounce: Vec<u8>,
    /// Device reads and bytes read, shared with whoever measures them.
    stats: Rc<Cell<Stats>>,
}

/// What a [`SectorReader`] asked of its device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Device reads (one blkfront request each, at most the disk's request size).
    pub reads: u64,
    /// Bytes those reads brought in, whole sectors included.
    pub bytes: u64,
}

impl<D: Sectors> SectorReader<D> {
    /// A reader of `device`, with its one-sector buffer for the ragged ends of a range.
    pub fn new(device: D) -> SectorReader<D> {
        let bounce = vec![0; device.sector_size()];
        SectorReader { device, bounce, stats: Rc::default() }
    }

    /// Device reads and bytes so far.
    pub fn stats(&self) -> Stats {
        self.stats.get()
    }

    /// Reads `dst.len()` bytes from byte `start`; refuses ranges past the device's end.
    pub fn read_at(&mut self, start: u64, dst: &mut [u8]) -> Result<(), String> {
        let size = self.device.sector_size() as u64;
        let end = start.checked_add(dst.len() as u64).filter(|&end| end <= self.device.sectors() * size);
        if end.is_none() {
            return Err(format!(
                "{} bytes at byte {start} run past the disk's end ({} bytes)",
                dst.len(),
                self.device.sectors() * size
            ));
        }
        let mut sector = start / size;
        let mut done = 0;
        let head = (start % size) as usize;
        if head != 0 || dst.len() < size as usize {
            let n = dst.len().min(size as usize - head);
            self.read(sector, None)?;
            dst[..n].copy_from_slice(&self.bounce[head..head + n]);
            done = n;
            sector += 1;
        }
        let whole = (dst.len() - done) / size as usize * size as usize;
        if whole > 0 {
            self.read(sector, Some((done, whole, &mut *dst)))?;
            done += whole;
            sector += (whole as u64) / size;
        }
        if done < dst.len() {
            self.read(sector, None)?;
            let n = dst.len() - done;
            dst[done..].copy_from_slice(&self.bounce[..n]);
        }
        Ok(())
    }

    /// Reads into `dst[offset..offset + len]`, or one sector into the bounce buffer.
    fn read(&mut self, sector: u64, dst: Option<(usize, usize, &mut [u8])>) -> Result<(), String> {
        let buf = match dst {
            Some((offset, len, dst)) => &mut dst[offset..offset + len],
            None => &mut self.bounce[..],
        };
        let stats = self.stats.get();
        self.stats.set(Stats { reads: stats.reads + 1, bytes: stats.bytes + buf.len() as u64 });
        self.device.read_sectors(sector, buf)
    }
}

impl<D: Sectors> Ext4Read for SectorReader<D> {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn core::error::Error + Send + Sync + 'static>> {
        self.read_at(start_byte, dst).map_err(|e| Box::new(ReadError(e)).into())
    }
}

/// Why a filesystem or a file could not be read.
#[derive(Debug)]
pub enum FsError {
    /// The disk holds no filesystem this reader takes (not ext2/3/4, corrupt, or a feature
    /// it does not support).
    Mount {
        /// The disk, as [`Fs::load`] was told to name it.
        disk: String,
        /// What was wrong with it.
        problem: String,
    },
    /// A path that could not be read.
    Path {
        /// The path asked for.
        path: String,
        /// Why it could not be read ([`FsError::is_not_found`] tells the usual case).
        problem: String,
    },
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::Mount { disk, problem } => {
                write!(f, "{disk}: no readable ext2/3/4 filesystem: {problem}")
            }
            FsError::Path { path, problem } => write!(f, "{path}: {problem}"),
        }
    }
}

impl FsError {
    /// The path names nothing.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FsError::Path { problem, .. } if problem == NOT_FOUND)
    }
}

const NOT_FOUND: &str = "no such file or directory";

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file: content.
    File,
    /// A directory, listed by [`Fs::read_dir`].
    Directory,
    /// A symbolic link, device, FIFO or socket: never read as content.
    Other,
}

/// A file's or directory's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// What the path names.
    pub kind: Kind,
    /// Bytes, for a file.
    pub len: u64,
    /// Last modification, seconds since the Unix epoch (0 if before it).
    pub modified: u64,
}

/// One entry of a directory (`.` and `..` left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name within its directory.
    pub name: String,
    /// What it names (symbolic links not followed).
    pub kind: Kind,
}

/// A read-only filesystem on a disk.
///
/// An app mounts its content disk once at start, and serves from memory or reads per request:
///
/// ```no_run
/// # fn main() -> Result<(), mote::fs::FsError> {
/// if let Some(fs) = mote::fs::mount_first()? {
///     for entry in fs.read_dir("/")? {
///         mote::println!("{} ({:?})", entry.name, entry.kind);
///     }
///     let index = fs.read("/index.html")?;
///     mote::println!("{} bytes read in {} device reads", index.len(), fs.stats().reads);
/// }
/// # Ok(())
/// # }
/// ```
pub struct Fs {
    ext4: Ext4,
    disk: String,
    /// The device's size in bytes: no file read can be larger.
    bytes: u64,
    stats: Rc<Cell<Stats>>,
}

impl Fs {
    /// Reads the superblock, group descriptors and journal of the filesystem on `device`,
    /// named `disk` in errors; an error if there is none or it does not check out.
    pub fn load<D: Sectors + 'static>(disk: &str, device: D) -> Result<Fs, FsError> {
        let bytes = device.sectors() * device.sector_size() as u64;
        let reader = SectorReader::new(device);
        let stats = reader.stats.clone();
        let ext4 = Ext4::load(Box::new(reader))
            .map_err(|e| FsError::Mount { disk: disk.to_string(), problem: e.to_string() })?;
        Ok(Fs { ext4, disk: disk.to_string(), bytes, stats })
    }

    /// What was read from the disk so far (the reader caches blocks, so repeated reads of the
    /// same data cost nothing here).
    pub fn stats(&self) -> Stats {
        self.stats.get()
    }

    /// The disk's name, as given to [`Fs::load`].
    pub fn disk(&self) -> &str {
        &self.disk
    }

    /// The whole of the file at absolute `path` (symbolic links followed). A file that says
    /// it is larger than the disk (sparse, or a damaged inode) is refused rather than
    /// allocated, and so is one the heap has no room for (an error naming the sizes, not an
    /// allocation failure).
    pub fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        let problem = |problem: String| FsError::Path { path: path.to_string(), problem };
        let mut file = self.ext4.open(path).map_err(|e| path_error(path, e))?;
        let len = file.metadata().len();
        if len > self.bytes {
            return Err(problem(format!("says it holds {len} bytes, more than the disk's {}", self.bytes)));
        }
        let mut data = Vec::new();
        if data.try_reserve_exact(len as usize).is_err() {
            return Err(problem(format!("{len} bytes do not fit in memory{}", heap_figures())));
        }
        data.resize(len as usize, 0);
        let mut at = 0;
        while at < data.len() {
            match file.read_bytes(&mut data[at..]).map_err(|e| path_error(path, e))? {
                0 => return Err(problem(format!("ends after {at} of its {len} bytes"))),
                n => at += n,
            }
        }
        Ok(data)
    }

    /// What `path` names (a symbolic link itself, not its target).
    pub fn metadata(&self, path: &str) -> Result<Metadata, FsError> {
        let m = self.ext4.symlink_metadata(path).map_err(|e| path_error(path, e))?;
        Ok(Metadata {
            kind: kind(m.file_type()),
            len: m.len(),
            modified: u64::try_from(m.modified().seconds()).unwrap_or(0),
        })
    }

    /// The entries of the directory at `path`, sorted by name; names that are not UTF-8 are
    /// an error (paths are strings here).
    pub fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        let mut entries = Vec::new();
        for entry in self.ext4.read_dir(path).map_err(|e| path_error(path, e))? {
            let entry = entry.map_err(|e| path_error(path, e))?;
            let name = entry.file_name();
            let name = name.as_str().map_err(|_| FsError::Path {
                path: path.to_string(),
                problem: format!("an entry's name is not UTF-8: {}", name.display()),
            })?;
            if name == "." || name == ".." {
                continue;
            }
            let kind = kind(entry.file_type().map_err(|e| path_error(path, e))?);
            entries.push(DirEntry { name: name.to_string(), kind });
        }
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }
}

/// The heap's size and use, for an error about memory running out.
#[cfg(target_os = "none")]
fn heap_figures() -> String {
    let size = crate::boot_info().heap_bytes;
    format!(": the heap has {size} bytes, {} of them in use", crate::heap::usage().in_use)
}

#[cfg(not(target_os = "none"))]
fn heap_figures() -> String {
    String::new()
}

/// What an ext4 file type is to an app.
fn kind(file_type: FileType) -> Kind {
    if file_type.is_regular_file() {
        Kind::File
    } else if file_type.is_dir() {
        Kind::Directory
    } else {
        Kind::Other
    }
}

fn path_error(path: &str, e: Ext4Error) -> FsError {
    let problem = match e {
        Ext4Error::NotFound => NOT_FOUND.to_string(),
        e => e.to_string(),
    };
    FsError::Path { path: path.to_string(), problem }
}

#[cfg(target_os = "none")]
mod guest {
    use super::{Fs, FsError, Sectors};
    use crate::disk::{self, Disk};
    use alloc::format;
    use alloc::string::{String, ToString};

    impl Sectors for Disk {
        fn sector_size(&self) -> usize {
            self.info().sector_size as usize
        }

        fn sectors(&self) -> u64 {
            self.info().sectors
        }

        fn read_sectors(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), String> {
            self.read(sector, buf).map_err(|e| format!("reading disk {}: {e}", self.id()))
        }
    }

    impl Fs {
        /// The filesystem on `disk`.
        pub fn mount(disk: Disk) -> Result<Fs, FsError> {
            let name = match crate::fs::vdev::name(disk.id()) {
                Some(vdev) => format!("disk {vdev} (vbd {})", disk.id()),
                None => format!("disk vbd {}", disk.id()),
            };
            Fs::load(&name, disk)
        }
    }

    /// The filesystem on the disk xl calls `vdev` (`xvda`, `xvdb`, …); an error when there is
    /// no such disk or it holds no filesystem.
    pub fn mount_vdev(vdev: &str) -> Result<Fs, FsError> {
        let mount_error = |problem: String| FsError::Mount { disk: format!("disk {vdev}"), problem };
        let id =
            crate::fs::vdev::id(vdev).ok_or_else(|| mount_error("not a disk name like xvda".to_string()))?;
        let disks = disk::open_all().map_err(|e| mount_error(e.to_string()))?;
        let disk = disks.into_iter().find(|d| d.id() == id);
        Fs::mount(disk.ok_or_else(|| mount_error("the domain has no such disk".to_string()))?)
    }

    /// The filesystem on the domain's first disk (lowest device id), or `None` when the domain
    /// has no disk; an error when the disks cannot be opened or the first holds no filesystem.
    pub fn mount_first() -> Result<Option<Fs>, FsError> {
        let disks = disk::open_all()
            .map_err(|e| FsError::Mount { disk: "disks".to_string(), problem: e.to_string() })?;
        match disks.into_iter().next() {
            Some(disk) => Fs::mount(disk).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(target_os = "none")]
pub use guest::{mount_first, mount_vdev};

/// The hosted runtime's disk: an image file.
#[cfg(feature = "hosted")]
mod hosted {
    use super::{Fs, FsError, Sectors};
    use alloc::format;
    use alloc::string::{String, ToString};
    use std::os::unix::fs::FileExt;

    const SECTOR: usize = 512;

    /// A disk image file, read in 512-byte sectors (a partial last sector is left out, as a
    /// block device would).
    struct ImageFile {
        file: std::fs::File,
        path: String,
        sectors: u64,
    }

    impl Sectors for ImageFile {
        fn sector_size(&self) -> usize {
            SECTOR
        }

        fn sectors(&self) -> u64 {
            self.sectors
        }

        fn read_sectors(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), String> {
            self.file
                .read_exact_at(buf, sector * SECTOR as u64)
                .map_err(|e| format!("reading {} at sector {sector}: {e}", self.path))
        }
    }

    /// The filesystem in the image file that `disk=PATH` on the command line names (`cargo
    /// xtask run <app> --hosted --disk IMAGE` passes it), or `None` without one; an error when
    /// the file cannot be opened or holds no filesystem.
    pub fn mount_first() -> Result<Option<Fs>, FsError> {
        let Some(path) = crate::cmdline().get("disk") else { return Ok(None) };
        let name = format!("disk image {path}");
        let mount_error = |e: std::io::Error| FsError::Mount { disk: name.clone(), problem: e.to_string() };
        let file = std::fs::File::open(path).map_err(mount_error)?;
        let bytes = file.metadata().map_err(mount_error)?.len();
        let image = ImageFile { file, path: path.to_string(), sectors: bytes / SECTOR as u64 };
        Fs::load(&name, image).map(Some)
    }
}

#[cfg(feature = "hosted")]
pub use hosted::mount_first;

#[cfg(test)]
mod tests;
