//! Bringing a virtual block device up: the xenbus handshake with blkback
//! (`io/blkif.h`'s "feature and parameter negotiation"): a ring of one or
//! more pages (`ring-page-order`, up to the backend's
//! `max-ring-page-order`), an event channel, `protocol = x86_64-abi`,
//! `feature-persistent` (our buffer pages are granted once, for good); the
//! disk's geometry and the backend's features (`feature-flush-cache`,
//! `feature-max-indirect-segments`, `feature-persistent`, `feature-discard`)
//! read once the backend is Connected.

use crate::device::{Discard, Disk, DiskInfo, Features, GrantedPage};
use crate::wire::{RequestSlot, Response, MAX_INDIRECT_PAGES, SEGMENTS_PER_INDIRECT_PAGE, VDISK_READONLY};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use mote_xen::event;
use mote_xen::event::Port;
use mote_xen::gnttab::{alloc_shared_pages, free_shared_pages, Access, GrantError, GrantRef, GrantTable};
use mote_xen::io_ring::FrontRing;
use mote_xen::xenbus::{Frontend, XenbusError, XenbusState};
use mote_xen::xenstore::{Client, Reply, Request, Store, Transport, XsError};
use mote_xen::{Gfn, XenError};

/// What the frontend asks for, at most; the backend may offer less.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Granted buffer pages shared by the requests in flight.
    pub buffer_pages: usize,
    /// Largest ring, in pages (a power of two).
    pub ring_pages: usize,
    /// Most segments (pages) in one indirect request.
    pub indirect_segments: usize,
}

impl Config {
    /// A 4-page ring (128 requests in flight), requests of up to 128 KiB
    /// (32 segments, Linux's default too), and buffers for four such
    /// requests with their indirect pages: 528 KiB.
    pub const DEFAULT: Config = Config { buffer_pages: 4 * (32 + 1), ring_pages: 4, indirect_segments: 32 };
}

/// Why a disk could not be brought up.
#[derive(Debug)]
pub enum ConnectError {
    Xenbus(XenbusError),
    Xenstore(XsError),
    Grant(GrantError),
    EventChannel(XenError),
    /// A geometry node the backend wrote is missing or not a number.
    BadInfo(&'static str, String),
    BadConfig(&'static str),
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
            ConnectError::BadConfig(why) => write!(f, "bad blkfront configuration: {why}"),
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

/// Parses what the backend published about the disk.
pub fn parse_info(
    sectors: &str,
    sector_size: Option<&str>,
    info: &str,
    flush: Option<&str>,
) -> Result<DiskInfo, ConnectError> {
    let bad = |key: &'static str, v: &str| ConnectError::BadInfo(key, v.into());
    let count: u64 = sectors.trim().parse().map_err(|_| bad("sectors", sectors))?;
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
    // A size in bytes that no u64 holds is no disk we can address.
    if count.checked_mul(u64::from(sector_size)).is_none() {
        return Err(bad("sectors", sectors));
    }
    Ok(DiskInfo {
        sectors: count,
        sector_size,
        read_only: info & VDISK_READONLY != 0,
        flush: flush.map(str::trim) == Some("1"),
    })
}

/// The backend's keys [`parse_info`] and [`parse_features`] read, taken in one
/// round trip once the backend is Connected.
const BACKEND_KEYS: [&str; 10] = [
    "sectors",
    "sector-size",
    "info",
    "feature-flush-cache",
    "feature-max-indirect-segments",
    "feature-discard",
    "discard-granularity",
    "discard-alignment",
    "discard-secure",
    "feature-persistent",
];

/// The ring's size in pages: ours, within what the backend's
/// `max-ring-page-order` allows (absent: one page).
pub fn ring_pages(wanted: usize, max_order: Option<&str>) -> Result<usize, ConnectError> {
    let max_order: u32 = match max_order {
        None => 0,
        Some(v) => v.trim().parse().map_err(|_| ConnectError::BadInfo("max-ring-page-order", v.into()))?,
    };
    Ok(wanted.min(1 << max_order.min(8)))
}

/// Parses the backend's features: `feature-max-indirect-segments` (capped
/// at `max_indirect`), `feature-persistent`, `feature-discard` with
/// `discard-granularity` (default: the sector size), `discard-alignment`
/// and `discard-secure`. A malformed number is an error, an absent key the
/// feature's absence.
pub fn parse_features(
    read: &mut dyn FnMut(&str) -> Option<String>,
    ring_pages: usize,
    max_indirect: usize,
    sector_size: u32,
) -> Result<Features, ConnectError> {
    let number = |key: &'static str, value: Option<String>| -> Result<Option<u32>, ConnectError> {
        value.map(|v| v.trim().parse().map_err(|_| ConnectError::BadInfo(key, v.clone()))).transpose()
    };
    let flag = |value: Option<String>| value.is_some_and(|v| v.trim() == "1");
    let indirect =
        number("feature-max-indirect-segments", read("feature-max-indirect-segments"))?.unwrap_or(0);
    let indirect_segments =
        (indirect as usize).min(max_indirect).min(MAX_INDIRECT_PAGES * SEGMENTS_PER_INDIRECT_PAGE);
    let discard = if flag(read("feature-discard")) {
        Some(Discard {
            granularity: number("discard-granularity", read("discard-granularity"))?.unwrap_or(sector_size),
            alignment: number("discard-alignment", read("discard-alignment"))?.unwrap_or(0),
            secure: flag(read("discard-secure")),
        })
    } else {
        None
    };
    Ok(Features { ring_pages, indirect_segments, persistent: flag(read("feature-persistent")), discard })
}

/// Everything a disk shares with its backend: the ring and buffer pages
/// (one allocation), their grants and the event channel.
#[derive(Debug)]
pub struct Shared {
    pages: Vec<*mut u8>,
    grants: Vec<GrantRef>,
    port: Port,
}

/// What [`release`] gave back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    pub grants: usize,
    /// Grants the backend still maps: their pages are kept for good.
    pub still_mapped: usize,
}

impl Shared {
    /// Closes the event channel and ends every grant; the pages go back to
    /// the heap only if the backend maps none of them any more (a grant it
    /// still maps stays, and its reference is not reused).
    fn give_back(self, grants: &mut GrantTable<'_>) -> Released {
        if let Err(e) = event::close(self.port) {
            log::warn!("blkfront: closing {}: {e}", self.port);
        }
        let still_mapped = self.grants.iter().filter(|&&r| grants.end_access(r).is_err()).count();
        if still_mapped == 0 {
            // SAFETY: the pages are one allocation of `alloc_shared_pages`,
            // no longer granted, and nothing uses them afterwards: the disk
            // that had them no longer holds its ring or pool
            // (`Disk::detach` took them), an abandoned handshake made no disk.
            unsafe { free_shared_pages(self.pages) };
        }
        Released { grants: self.grants.len(), still_mapped }
    }
}

/// Gives back what `disk` shared with its backend, once its frontend is
/// closed (the backend went away, or the disk is done with): closes the
/// event channel and ends every grant; the pages go back to the heap only
/// if the backend maps none of them any more. Takes the ring and pool out
/// of the disk first ([`Disk::detach`]), so nothing uses the pages
/// afterwards. Nothing the second time.
pub fn release(disk: &mut Disk, grants: &mut GrantTable<'_>) -> Option<Released> {
    Some(disk.detach()?.give_back(grants))
}

/// Brings up `device/vbd/<id>` and returns it Connected, with its xenbus
/// frontend (to notice the backend closing: `xl block-detach`). Blocks
/// until the backend is ready; [`begin`] and [`Handshake::finish`] are the
/// two halves, for a caller that waits for the backend itself.
pub fn connect<T: Transport>(
    xs: &mut Client<T>,
    grants: &mut GrantTable<'_>,
    id: u32,
    config: Config,
) -> Result<(Disk, Frontend), ConnectError> {
    let mut vbd = Frontend::open(xs, &format!("device/vbd/{id}"))?;
    vbd.initialise(xs)?;
    vbd.wait_backend(xs, |s| s == XenbusState::InitWait)?;
    let handshake = begin(xs, grants, &mut vbd, id, config)?;
    if let Err(e) = vbd.wait_backend(xs, |s| s == XenbusState::Connected) {
        handshake.abandon(grants);
        return Err(e.into());
    }
    let disk = handshake.finish(xs, grants, &mut vbd)?;
    Ok((disk, vbd))
}

/// A disk whose ring and event channel are published (the frontend is
/// Initialised), until the backend is Connected.
pub struct Handshake {
    id: u32,
    ring: FrontRing<'static, RequestSlot, Response>,
    ring_pages: usize,
    buffers: Vec<GrantedPage>,
    shared: Shared,
    indirect_segments: usize,
}

/// The first half of the handshake, once `vbd`'s backend is in InitWait:
/// grants a ring of up to `config.ring_pages` pages (within the backend's
/// `max-ring-page-order`) and the buffer pool, makes the event channel, and
/// publishes them with Initialised.
pub fn begin<T: Transport>(
    xs: &mut Client<T>,
    grants: &mut GrantTable<'_>,
    vbd: &mut Frontend,
    id: u32,
    config: Config,
) -> Result<Handshake, ConnectError> {
    if !config.ring_pages.is_power_of_two() || config.ring_pages > 256 {
        return Err(ConnectError::BadConfig("ring pages must be a power of two up to 256"));
    }
    if config.buffer_pages < 2 || config.buffer_pages > usize::from(u16::MAX) {
        return Err(ConnectError::BadConfig("buffer pages must be 2 to 65535"));
    }
    let backend = vbd.backend_id();
    let max_order = xs.read_string(&format!("{}/max-ring-page-order", vbd.backend())).ok();
    let ring_pages = ring_pages(config.ring_pages, max_order.as_deref())?;
    let pages = alloc_shared_pages(ring_pages + config.buffer_pages).ok_or(ConnectError::NoMemory)?;
    // SAFETY: the pages are fresh, contiguous, page-aligned, ours alone (and
    // the backend's once granted), and freed only by `Shared::give_back`.
    let ring = unsafe { FrontRing::init_pages(pages[0], ring_pages) };
    let grant = |grants: &mut GrantTable<'_>, addr: *mut u8| {
        grants.grant_access(backend, Gfn::containing(addr as u64), Access::ReadWrite).map(|r| r.0)
    };
    let ring_refs =
        pages[..ring_pages].iter().map(|&addr| grant(grants, addr)).collect::<Result<Vec<_>, _>>()?;
    let buffers = pages[ring_pages..]
        .iter()
        .map(|&addr| Ok(GrantedPage { addr, gref: grant(grants, addr)? }))
        .collect::<Result<Vec<_>, ConnectError>>()?;
    let port = event::alloc_unbound(backend).map_err(ConnectError::EventChannel)?;
    event::unmask(port).map_err(ConnectError::EventChannel)?;
    let granted = ring_refs.iter().copied().chain(buffers.iter().map(|b| b.gref)).map(GrantRef).collect();
    let handshake = Handshake {
        id,
        ring,
        ring_pages,
        buffers,
        shared: Shared { pages, grants: granted, port },
        indirect_segments: config.indirect_segments,
    };
    let published = vbd.publish(xs, XenbusState::Initialised, |keys| {
        if ring_pages == 1 {
            keys.write("ring-ref", &format!("{}", ring_refs[0]));
        } else {
            keys.write("ring-page-order", &format!("{}", ring_pages.trailing_zeros()));
            for (i, r) in ring_refs.iter().enumerate() {
                keys.write(&format!("ring-ref{i}"), &format!("{r}"));
            }
        }
        keys.write("event-channel", &format!("{}", port.0));
        keys.write("protocol", "x86_64-abi");
        keys.write("feature-persistent", "1");
    });
    match published {
        Ok(()) => Ok(handshake),
        Err(e) => {
            handshake.abandon(grants);
            Err(e.into())
        }
    }
}

impl Handshake {
    /// The second half, once the backend is Connected: reads the disk's
    /// geometry and the backend's features and goes Connected.
    pub fn finish<T: Transport>(
        self,
        xs: &mut Client<T>,
        grants: &mut GrantTable<'_>,
        vbd: &mut Frontend,
    ) -> Result<Disk, ConnectError> {
        match self.read_backend(xs, vbd) {
            Ok((info, features)) => {
                let Handshake { id, ring, buffers, shared, .. } = self;
                Ok(Disk::new(ring, buffers, shared.port, id as u16, info, features).sharing(shared))
            }
            Err(e) => {
                self.abandon(grants);
                Err(e)
            }
        }
    }

    fn read_backend<T: Transport>(
        &self,
        xs: &mut Client<T>,
        vbd: &mut Frontend,
    ) -> Result<(DiskInfo, Features), ConnectError> {
        // Every key of the backend's we use, in one round trip.
        let paths = BACKEND_KEYS.map(|key| format!("{}/{key}", vbd.backend()));
        let replies = xs.call_all(&paths.each_ref().map(|p| Request::Read(p)));
        let values: Vec<_> =
            BACKEND_KEYS.iter().zip(replies).map(|(&k, r)| (k, r.and_then(Reply::into_string))).collect();
        let value = |key: &str| {
            values.iter().find(|(k, _)| *k == key).map_or(Err(XsError::NoReply), |(_, v)| v.clone())
        };
        let (sectors, info) = (value("sectors")?, value("info")?);
        let (sector_size, flush) = (value("sector-size").ok(), value("feature-flush-cache").ok());
        let info = parse_info(&sectors, sector_size.as_deref(), &info, flush.as_deref())?;
        let features = parse_features(
            &mut |key| value(key).ok(),
            self.ring_pages,
            self.indirect_segments,
            info.sector_size,
        )?;
        vbd.switch(xs, XenbusState::Connected)?;
        Ok((info, features))
    }

    /// Gives up on the handshake (the backend closed, or broke it): gives
    /// back what was shared, as [`release`] does.
    pub fn abandon(self, grants: &mut GrantTable<'_>) -> Released {
        log::warn!("blkfront: vbd {}: handshake abandoned", self.id);
        self.shared.give_back(grants)
    }
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

    #[test]
    fn a_sector_count_too_large_to_size_in_bytes_is_refused() {
        // 2^52 sectors of 4 KiB is 2^64 bytes: one more than a u64 holds.
        let sectors = (1u64 << 52).to_string();
        assert!(parse_info(&sectors, Some("4096"), "0", None).is_err());
        let largest = ((1u64 << 52) - 1).to_string();
        assert_eq!(parse_info(&largest, Some("4096"), "0", None).unwrap().bytes(), u64::MAX - 4095);
        // Built by hand, such a disk's size stops at the largest u64 rather than wrapping.
        let huge = DiskInfo { sectors: u64::MAX, sector_size: 4096, read_only: false, flush: false };
        assert_eq!(huge.bytes(), u64::MAX);
    }

    #[test]
    fn ring_order_is_the_smaller_of_ours_and_the_backends() {
        assert_eq!(ring_pages(4, None).unwrap(), 1);
        assert_eq!(ring_pages(4, Some("4")).unwrap(), 4);
        assert_eq!(ring_pages(4, Some("1")).unwrap(), 2);
        assert_eq!(ring_pages(4, Some("4000000000")).unwrap(), 4);
        assert!(ring_pages(4, Some("-1")).is_err());
    }

    #[test]
    fn features_parse_from_what_linux_blkback_writes() {
        let keys = [
            ("feature-max-indirect-segments", "256"),
            ("feature-persistent", "1"),
            ("feature-discard", "1"),
            ("discard-granularity", "4096"),
            ("discard-alignment", "0"),
            ("discard-secure", "0"),
        ];
        let mut read = |k: &str| keys.iter().find(|(key, _)| *key == k).map(|(_, v)| String::from(*v));
        let f = parse_features(&mut read, 4, 32, 512).unwrap();
        assert_eq!(
            f,
            Features {
                ring_pages: 4,
                indirect_segments: 32,
                persistent: true,
                discard: Some(Discard { granularity: 4096, alignment: 0, secure: false }),
            }
        );
        let f = parse_features(&mut |_| None, 1, 32, 512).unwrap();
        assert_eq!(f, Features::BASIC);
        let mut bad = |k: &str| (k == "feature-max-indirect-segments").then(|| String::from("many"));
        assert!(parse_features(&mut bad, 1, 32, 512).is_err());
        // Granularity defaults to the sector size.
        let mut discard = |k: &str| (k == "feature-discard").then(|| String::from("1"));
        let f = parse_features(&mut discard, 1, 32, 4096).unwrap();
        assert_eq!(f.discard, Some(Discard { granularity: 4096, alignment: 0, secure: false }));
    }
}
