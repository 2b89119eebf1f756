//! The site from the domain's first disk, when it has one: every regular file of the ext2/3/4
//! filesystem on it (`cargo xtask disk DIR -o site.img` makes one), read into memory at
//! start and kept for the server's life, so the guest's memory must hold the site. Symbolic
//! links and special files are left out, as in the embedded site. Files are served as they
//! are on the disk: no gzip variants are made at start.
//!
//! The reader is the `disk` feature (`cargo xtask build web --disk-support`, the image
//! `web-disk.elf`); an image without it refuses to start with a disk attached.

use alloc::string::String;
use mote_http::StaticFile;
#[cfg(feature = "disk")]
use {
    alloc::boxed::Box,
    alloc::format,
    alloc::string::ToString,
    alloc::vec::Vec,
    mote::fs::{Fs, Kind},
};

/// The files of the first disk's filesystem sorted by path, or `None` without a disk; an
/// error when the disk holds no readable filesystem or a file cannot be read.
#[cfg(feature = "disk")]
pub fn site() -> Result<Option<&'static [StaticFile]>, String> {
    let started = mote::Instant::now();
    let Some(fs) = mote::fs::mount_first().map_err(|e| format!("web: {e}"))? else {
        return Ok(None);
    };
    let mut files = Vec::new();
    walk(&fs, String::new(), 0, &mut files).map_err(|e| format!("web: {}: {e}", fs.disk()))?;
    // Paths are unique, so an unstable sort (a smaller image) orders them the same.
    files.sort_unstable_by(|a: &StaticFile, b| a.path.cmp(b.path));
    let bytes: usize = files.iter().map(|f| f.body.len()).sum();
    let read = fs.stats();
    mote::println!(
        "web: site from {}: {} files, {bytes} bytes, loaded in {} ms ({} disk reads, {} KiB)",
        fs.disk(),
        files.len(),
        // Whole milliseconds as u64: formatting a u128 costs 1.2 KiB of image.
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        read.reads,
        read.bytes >> 10
    );
    Ok(Some(Box::leak(files.into_boxed_slice())))
}

/// Heap bytes a site from [`site`] keeps: its bodies, paths and file table.
pub fn heap_bytes(files: &[StaticFile]) -> u64 {
    let data: usize = files.iter().map(|f| f.body.len() + f.path.len()).sum();
    (data + core::mem::size_of_val(files)) as u64
}

/// `None`, as this image reads no disk; an error when the domain has one anyway.
#[cfg(not(feature = "disk"))]
pub fn site() -> Result<Option<&'static [StaticFile]>, String> {
    mote::fs::refuse_attached("web").map(|()| None)
}

/// Directories nested deeper are refused (a damaged filesystem could loop).
#[cfg(feature = "disk")]
const MAX_DEPTH: usize = 32;

/// Adds every file below `dir` (`""` for the root), `depth` levels down, to `files`.
#[cfg(feature = "disk")]
fn walk(fs: &Fs, dir: String, depth: usize, files: &mut Vec<StaticFile>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("{dir}: directories nested deeper than {MAX_DEPTH}"));
    }
    for entry in fs.read_dir(if dir.is_empty() { "/" } else { &dir }).map_err(|e| e.to_string())? {
        let path = format!("{dir}/{}", entry.name);
        match entry.kind {
            Kind::Directory => walk(fs, path, depth + 1, files)?,
            Kind::File => {
                let body = fs.read(&path).map_err(|e| e.to_string())?;
                let etag = mote_http::etag(&body);
                let modified = fs.metadata(&path).map_err(|e| e.to_string())?.modified;
                files.push(StaticFile {
                    path: path.leak(),
                    body: body.leak(),
                    modified,
                    etag: etag.leak(),
                    gzip: None,
                });
            }
            Kind::Other => {}
        }
    }
    Ok(())
}
