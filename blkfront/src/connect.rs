//! Bringing a virtual block device up: the xenbus handshake with blkback
//! (`io/blkif.h`'s "feature and parameter negotiation"): one ring page, an
//! event channel, `protocol = x86_64-abi`; the disk's geometry read once the
//! backend is Connected.

use crate::device::{Disk, DiskInfo, GrantedPage};
use crate::wire::{MAX_SEGMENTS, VDISK_READONLY};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use mote_xen::event;
use mote_xen::gnttab::{alloc_shared_pages, Access, GrantError, GrantTable};
use mote_xen::io_ring::FrontRing;
use mote_xen::xenbus::{Frontend, XenbusError, XenbusState};
use mote_xen::xenstore::{Client, Store, Transport, XsError};
use mote_xen::{Gfn, XenError};

/// Requests in flight at once; each holds `MAX_SEGMENTS` pages (44 KiB).
pub const DEFAULT_SLOTS: usize = 4;

/// Why a disk could not be brought up.
#[derive(Debug)]
pub enum ConnectError {
    Xenbus(XenbusError),
    Xenstore(XsError),
    Grant(GrantError),
    EventChannel(XenError),
    /// A geometry node the backend wrote is missing or not a number.
    BadInfo(&'static str, String),
    NoMemory,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Xenbus(e) => write!(f, "xenbus: {e}"),
            ConnectError::Xenstore(e) => write!(f, "xenstore: {e}"),
            ConnectError::Grant(e) => write!(f, "granting buffers: {e}"),
            ConnectError::EventChannel(e) => write!(f, "event channel: {e}"),
            ConnectError::BadInfo(key, value) => write!(f, "backend's {key} is {value:?}"),
            ConnectError::NoMemory => f.write_str("out of memory for the ring and buffers"),
        }
    }
}

impl From<XenbusError> for ConnectError {
    fn from(e: XenbusError) -> Self {
        ConnectError::Xenbus(e)
    }
}

impl From<XsError> for ConnectError {
    fn from(e: XsError) -> Self {
        ConnectError::Xenstore(e)
    }
}

impl From<GrantError> for ConnectError {
    fn from(e: GrantError) -> Self {
        ConnectError::Grant(e)
    }
}

/// The virtual devices the toolstack gave the domain (`device/vbd/<id>`).
pub fn devices<T: Transport>(xs: &mut Client<T>) -> Result<Vec<u32>, XsError> {
    let mut ids: Vec<u32> = xs.directory("device/vbd")?.iter().filter_map(|d| d.parse().ok()).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Parses what the backend published about the disk.
pub fn parse_info(
    sectors: &str,
    sector_size: Option<&str>,
    info: &str,
    flush: Option<&str>,
) -> Result<DiskInfo, ConnectError> {
    let bad = |key: &'static str, v: &str| ConnectError::BadInfo(key, v.into());
    let sectors = sectors.trim().parse().map_err(|_| bad("sectors", sectors))?;
    let sector_size: u32 = match sector_size {
        None => 512,
        Some(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|s: &u32| s.is_power_of_two() && (512..=4096).contains(s))
            .ok_or_else(|| bad("sector-size", v))?,
    };
    let info: u32 = info.trim().parse().map_err(|_| bad("info", info))?;
    Ok(DiskInfo {
        sectors,
        sector_size,
        read_only: info & VDISK_READONLY != 0,
        flush: flush.map(str::trim) == Some("1"),
    })
}

/// Brings up `device/vbd/<id>` and returns it Connected.
pub fn connect<T: Transport>(
    xs: &mut Client<T>,
    grants: &mut GrantTable<'_>,
    id: u32,
    slots: usize,
) -> Result<Disk, ConnectError> {
    let path = format!("device/vbd/{id}");
    let mut vbd = Frontend::open(xs, &path)?;
    vbd.switch(xs, XenbusState::Initialising)?;
    vbd.wait_backend(xs, |s| s == XenbusState::InitWait)?;
    let backend = vbd.backend_id();
    let pages = alloc_shared_pages(1 + slots * MAX_SEGMENTS).ok_or(ConnectError::NoMemory)?;
    // SAFETY: the page is fresh, page-aligned, ours alone (and the
    // backend's once granted) and never freed.
    let ring = unsafe { FrontRing::init(pages[0]) };
    let ring_ref = grants.grant_access(backend, Gfn::containing(pages[0] as u64), Access::ReadWrite)?;
    let buffers = pages[1..]
        .iter()
        .map(|&addr| {
            let gref = grants.grant_access(backend, Gfn::containing(addr as u64), Access::ReadWrite)?;
            Ok(GrantedPage { addr, gref: gref.0 })
        })
        .collect::<Result<Vec<_>, ConnectError>>()?;
    let port = event::alloc_unbound(backend).map_err(ConnectError::EventChannel)?;
    event::unmask(port).map_err(ConnectError::EventChannel)?;
    vbd.publish(xs, XenbusState::Initialised, |keys| {
        keys.write("ring-ref", &format!("{}", ring_ref.0))?;
        keys.write("event-channel", &format!("{}", port.0))?;
        keys.write("protocol", "x86_64-abi")
    })?;
    vbd.wait_backend(xs, |s| s == XenbusState::Connected)?;
    let be = String::from(vbd.backend());
    let sectors = xs.read_string(&format!("{be}/sectors"))?;
    let sector_size = xs.read_string(&format!("{be}/sector-size")).ok();
    let info = xs.read_string(&format!("{be}/info"))?;
    let flush = xs.read_string(&format!("{be}/feature-flush-cache")).ok();
    let info = parse_info(&sectors, sector_size.as_deref(), &info, flush.as_deref())?;
    vbd.switch(xs, XenbusState::Connected)?;
    Ok(Disk::new(ring, buffers, port, id as u16, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_parses_and_rejects_garbage() {
        let info = parse_info("131072", Some("512"), "4", Some("1")).unwrap();
        assert_eq!(info, DiskInfo { sectors: 131072, sector_size: 512, read_only: true, flush: true });
        assert_eq!(info.bytes(), 64 << 20);
        assert!(!parse_info("8", None, "0", None).unwrap().read_only);
        assert!(parse_info("x", None, "0", None).is_err());
        assert!(parse_info("8", Some("1000"), "0", None).is_err());
        assert!(parse_info("8", Some("8192"), "0", None).is_err());
        assert!(parse_info("8", None, "-1", None).is_err());
    }
}
