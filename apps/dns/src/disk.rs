//! Zones from the domain's first disk, when it has one: every `*.zone` file in the root
//! directory of the ext2/3/4 filesystem on it (`cargo xtask disk DIR -o zones.img` makes
//! one). A file is named after its zone's origin, without the final dot: `example.com.zone`
//! holds `example.com.` (`.zone` the root zone); the text sets the origin (`$ORIGIN`, or
//! absolute names) and a file whose origin differs from its name is an error, so the zone an
//! operator drops in is the one served.
//!
//! The reader is the `disk` feature (`cargo xtask build dns --disk-support`, the image
//! `dns-disk.elf`); an image without it refuses to start with a disk attached.

use alloc::string::String;
use alloc::vec::Vec;
use mote_dns::Zone;
#[cfg(feature = "disk")]
use {alloc::format, mote::fs::Kind, mote_dns::master};

/// Every zone on the first disk, or `None` without a disk; an error when the disk holds no
/// readable filesystem, no zone file, or a zone that does not load.
#[cfg(feature = "disk")]
pub fn zones() -> Result<Option<Vec<Zone>>, String> {
    let Some(fs) = mote::fs::mount_first().map_err(|e| format!("dns: {e}"))? else {
        return Ok(None);
    };
    let disk = fs.disk();
    let mut zones = Vec::new();
    for entry in fs.read_dir("/").map_err(|e| format!("dns: {disk}: {e}"))? {
        let Some(stem) = entry.name.strip_suffix(".zone") else { continue };
        if entry.kind != Kind::File {
            continue;
        }
        let path = format!("/{}", entry.name);
        let bytes = fs.read(&path).map_err(|e| format!("dns: {disk}: {e}"))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("dns: {disk}: {path}: not UTF-8 text"))?;
        let zone = master::parse(&path, &text).map_err(|e| format!("dns: {disk}: {e}"))?;
        let origin = format!("{}", zone.origin());
        if !origin.eq_ignore_ascii_case(&format!("{stem}.")) {
            return Err(format!(
                "dns: {disk}: {path} holds zone {origin}: a zone file is named after its origin ({}zone)",
                if origin == "." { "" } else { &origin }
            ));
        }
        zones.push(zone);
    }
    if zones.is_empty() {
        return Err(format!("dns: {disk}: no *.zone file in the root directory"));
    }
    mote::println!("dns: {} zones from {disk}", zones.len());
    Ok(Some(zones))
}

/// `None`, as this image reads no disk; an error when the domain has one anyway.
#[cfg(not(feature = "disk"))]
pub fn zones() -> Result<Option<Vec<Zone>>, String> {
    mote::fs::refuse_attached("dns").map(|()| None)
}
