//! The disk's data path. Reads and writes are split into requests of up to
//! [`Features::segments`] pages (11 in the ring slot, or more through
//! indirect descriptor pages), as many in flight as the ring and the buffer
//! pool allow; data is copied through a pool of pages granted to the backend
//! once, at connect time (which is what `feature-persistent` asks for).
//!
//! The pool's pages only ever hold zeros or data exchanged with this disk's
//! backend: the tail of a partly used page and the unused part of an
//! indirect page are cleared before the backend may look at them.

use crate::inflight::{InFlight, Outcome, ResponseError};
use crate::wire::{
    DiscardRequest, IndirectRequest, Request, RequestSlot, Response, Segment, MAX_INDIRECT_PAGES,
    MAX_SEGMENTS, OP_DISCARD, OP_FLUSH_DISKCACHE, OP_INDIRECT, OP_READ, OP_WRITE, SECTOR,
    SEGMENTS_PER_INDIRECT_PAGE,
};
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;
use mote_xen::event::Port;
use mote_xen::io_ring::{FrontRing, RingError, PAGE_SIZE};
use mote_xen::xenbus::XenbusState;

/// How long the backend may go without answering while requests are out
/// before the disk gives up on it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A page shared with the backend: where it is, and its grant reference.
#[derive(Debug, Clone, Copy)]
pub struct GrantedPage {
    pub addr: *mut u8,
    pub gref: u32,
}

/// What the backend says about the disk (`sectors`, `sector-size`, `info`,
/// `feature-flush-cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskInfo {
    pub sectors: u64,
    pub sector_size: u32,
    pub read_only: bool,
    pub flush: bool,
}

impl DiskInfo {
    /// The disk's size. [`crate::connect::parse_info`] refuses a backend's
    /// sector count that would overflow it; one built otherwise stops at
    /// `u64::MAX` rather than wrapping.
    pub fn bytes(&self) -> u64 {
        self.sectors.saturating_mul(u64::from(self.sector_size))
    }
}

/// `feature-discard` and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discard {
    /// `discard-granularity`, bytes.
    pub granularity: u32,
    /// `discard-alignment`, bytes.
    pub alignment: u32,
    /// `discard-secure`: the backend can discard securely (we never ask).
    pub secure: bool,
}

impl Discard {
    /// The part of `count` sectors (of `sector_size` bytes) from `sector` on that the backend
    /// can discard: whole extents of `granularity` bytes starting `alignment` bytes into the
    /// disk (`io/blkif.h`), as (first sector, sectors); `None` when the range covers no whole
    /// extent. What is trimmed off the ends is left as it is (a discard is a hint). A
    /// granularity of 0 counts as one sector.
    pub fn extents(&self, sector: u64, count: u64, sector_size: u32) -> Option<(u64, u64)> {
        let size = u128::from(sector_size);
        let granularity = u128::from(self.granularity).max(size);
        let alignment = u128::from(self.alignment) % granularity;
        let start = u128::from(sector) * size;
        let end = start + u128::from(count) * size;
        // Extent boundaries are `alignment + k * granularity`.
        let first = if start <= alignment {
            alignment
        } else {
            alignment + (start - alignment).div_ceil(granularity) * granularity
        };
        if end < alignment + granularity {
            return None;
        }
        let last = alignment + (end - alignment) / granularity * granularity;
        // Sectors wholly inside [first, last).
        let (from, to) = (first.div_ceil(size), last / size);
        (from < to).then(|| (from as u64, (to - from) as u64))
    }
}

/// What frontend and backend agreed on at connect time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Pages of the ring (`1 << ring-page-order`).
    pub ring_pages: usize,
    /// Segments per indirect request (`feature-max-indirect-segments`,
    /// capped by us); 0 without indirect descriptors.
    pub indirect_segments: usize,
    /// `feature-persistent`: the backend keeps our grants mapped.
    pub persistent: bool,
    pub discard: Option<Discard>,
}

impl Features {
    /// One page, direct requests only: what every backend understands.
    pub const BASIC: Features =
        Features { ring_pages: 1, indirect_segments: 0, persistent: false, discard: None };

    /// Pages one request can carry.
    pub fn segments(&self) -> usize {
        if self.indirect_segments > MAX_SEGMENTS {
            self.indirect_segments
        } else {
            MAX_SEGMENTS
        }
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ring {} page{}", self.ring_pages, if self.ring_pages == 1 { "" } else { "s" })?;
        match self.indirect_segments {
            0 => f.write_str(", no indirect")?,
            n => write!(f, ", indirect {n} segments")?,
        }
        f.write_str(if self.persistent { ", persistent grants" } else { ", no persistent grants" })?;
        match self.discard {
            Some(d) => write!(f, ", discard (granularity {}, alignment {})", d.granularity, d.alignment),
            None => f.write_str(", no discard"),
        }
    }
}

/// Why an I/O failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskError {
    ReadOnly,
    /// The range runs past the end of the disk.
    OutOfRange {
        sector: u64,
        len: usize,
    },
    /// The buffer is not a whole number of sectors.
    Unaligned {
        len: usize,
    },
    /// The backend reported an I/O error, or does not support the operation.
    Backend(Outcome),
    /// The backend broke the protocol (the disk is unusable from here on).
    Ring(RingError),
    Response(ResponseError),
    /// The backend did not answer for this long (the disk is unusable from
    /// here on: its requests stay with the backend).
    Timeout(Duration),
    /// The disk was closed by its owner (dropped): no more requests.
    Closed,
    /// The backend went to Closing or Closed (`xl block-detach`, the
    /// backend shutting down): the disk is gone, and every request with it
    /// failed.
    Gone(XenbusState),
    FlushUnsupported,
    DiscardUnsupported,
    /// A discard posted with [`Disk::start`] that is not whole extents of
    /// the backend's `discard-granularity` and `discard-alignment`
    /// ([`Discard::extents`] gives the part that is).
    DiscardUnaligned {
        sector: u64,
        count: u64,
    },
    /// More than one request carries ([`Disk::start`] does not split).
    TooLarge {
        len: usize,
        max: usize,
    },
    /// A request needs `pages` buffer pages (its indirect pages included),
    /// and no more than `free` can ever be free for it: it would wait for
    /// good.
    NoRoom {
        pages: usize,
        free: usize,
    },
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::ReadOnly => f.write_str("the disk is read-only"),
            DiskError::OutOfRange { sector, len } => {
                write!(f, "{len} bytes at sector {sector} run past the disk's end")
            }
            DiskError::Unaligned { len } => write!(f, "{len} bytes is not a whole number of sectors"),
            DiskError::Backend(o) => write!(f, "the backend answered {o:?}"),
            DiskError::Ring(e) => write!(f, "blkif ring: {e}"),
            DiskError::Response(e) => write!(f, "{e}"),
            DiskError::Timeout(t) => write!(f, "the backend did not answer within {} s", t.as_secs()),
            DiskError::Closed => f.write_str("the disk was closed"),
            DiskError::Gone(state) => write!(f, "the disk was detached (its backend went to {state:?})"),
            DiskError::FlushUnsupported => f.write_str("the backend offers no cache flush"),
            DiskError::DiscardUnsupported => f.write_str("the backend offers no discard"),
            DiskError::DiscardUnaligned { sector, count } => {
                write!(f, "a discard of {count} sectors at {sector} is not whole discard extents")
            }
            DiskError::TooLarge { len, max } => write!(f, "{len} bytes is more than one request's {max}"),
            DiskError::NoRoom { pages, free } => {
                write!(f, "a request of {pages} buffer pages cannot go out: at most {free} can be free")
            }
        }
    }
}

/// How the disk reaches its backend: the event channel both ways. The
/// runtime sends on and sleeps for the disk's port; host tests play the
/// backend here.
pub trait Signal {
    /// Tells the backend new requests are there.
    fn notify(&mut self, port: Port);
    /// Sleeps until the backend signals `port` (responses may be there):
    /// true, or false once `timeout` has passed without a signal or the
    /// backend went away ([`Signal::gone`]).
    fn wait(&mut self, port: Port, timeout: Duration) -> bool;
    /// The backend's state once it went to Closing or Closed: the disk is
    /// being detached and no answer will come. Never, by default.
    fn gone(&mut self) -> Option<XenbusState> {
        None
    }
    /// Once the disk failed with [`DiskError::Gone`], or when its owner
    /// drops it: closes the frontend ([`Disk::retire`]s `disk` first) and
    /// gives back what `disk` shared with the backend. Nothing, by default.
    fn close(&mut self, disk: &mut Disk) {
        let _ = disk;
    }
}

/// What the disk has sent its backend so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub requests: u64,
    /// Requests whose segments were in indirect pages.
    pub indirect: u64,
    /// Most requests with the backend at once.
    pub peak_in_flight: usize,
}

/// What a request in flight holds: pool pages (data pages first, then its
/// indirect pages) and where its data belongs in the caller's buffer.
#[derive(Debug)]
struct Held {
    pages: Vec<u16>,
    data_pages: usize,
    offset: usize,
    len: usize,
}

/// The caller's side of a transfer.
enum Buf<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
    None,
}

/// What a disk shares with its backend. [`Disk::detach`] takes it out of
/// the disk, so that a released disk has no way left to pages that may be
/// someone else's by then.
struct Link {
    ring: FrontRing<'static, RequestSlot, Response>,
    pool: Vec<GrantedPage>,
    /// What [`crate::connect::release`] gives back: the ring and pool pages,
    /// their grants and the event channel (none for the host's peer).
    shared: Option<crate::connect::Shared>,
}

/// A connected disk.
pub struct Disk {
    /// `None` once detached.
    link: Option<Link>,
    inflight: InFlight<Held>,
    free: Vec<u16>,
    /// Largest read or write one request carries, in pages.
    max_pages: usize,
    port: Port,
    handle: u16,
    info: DiskInfo,
    features: Features,
    timeout: Duration,
    /// Set once the backend broke the protocol, stopped answering or went
    /// away.
    failed: Option<DiskError>,
    stats: Stats,
}

// SAFETY: the pages behind the raw pointers belong to the disk alone (and
// the backend); the disk moves between contexts as a whole.
unsafe impl Send for Disk {}

impl Disk {
    /// `pool` are the granted buffer pages; a request takes up to
    /// `features.segments()` of them (plus its indirect pages), fewer when
    /// the pool is smaller than that.
    pub fn new(
        ring: FrontRing<'static, RequestSlot, Response>,
        pool: Vec<GrantedPage>,
        port: Port,
        handle: u16,
        info: DiskInfo,
        mut features: Features,
    ) -> Self {
        assert!(pool.len() >= 2 && pool.len() <= usize::from(u16::MAX), "a pool of 2 to 65535 pages");
        if features.indirect_segments > MAX_SEGMENTS {
            let cap = most_segments(pool.len()).min(MAX_INDIRECT_PAGES * SEGMENTS_PER_INDIRECT_PAGE);
            features.indirect_segments = features.indirect_segments.min(cap);
        }
        if features.indirect_segments <= MAX_SEGMENTS {
            features.indirect_segments = 0;
        }
        let free = (0..pool.len() as u16).rev().collect();
        let max_pages = if features.indirect_segments > 0 {
            features.indirect_segments
        } else {
            MAX_SEGMENTS.min(pool.len())
        };
        Disk {
            inflight: InFlight::new(ring.size()),
            link: Some(Link { ring, pool, shared: None }),
            free,
            max_pages,
            port,
            handle,
            info,
            features,
            timeout: DEFAULT_TIMEOUT,
            failed: None,
            stats: Stats::default(),
        }
    }

    /// The disk, with what [`crate::connect::release`] gives back.
    pub(crate) fn sharing(mut self, shared: crate::connect::Shared) -> Self {
        if let Some(link) = self.link.as_mut() {
            link.shared = Some(shared);
        }
        self
    }

    /// The ring and pool. Only a detached disk has none, and it is retired:
    /// every call checks the disk's failure before it comes here.
    fn link(&mut self) -> Result<&mut Link, DiskError> {
        self.link.as_mut().ok_or(DiskError::Closed)
    }

    pub fn info(&self) -> DiskInfo {
        self.info
    }

    pub fn features(&self) -> Features {
        self.features
    }

    pub fn port(&self) -> Port {
        self.port
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// How long the backend may stay silent with requests out.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn check(&self, sector: u64, len: usize) -> Result<(), DiskError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let size = self.info.sector_size as usize;
        if !len.is_multiple_of(size) {
            return Err(DiskError::Unaligned { len });
        }
        let end = sector.checked_add((len / size) as u64);
        if end.is_none_or(|end| end > self.info.sectors) {
            return Err(DiskError::OutOfRange { sector, len });
        }
        Ok(())
    }

    /// `sector` (of `sector-size` bytes) in the ring's 512-byte units.
    fn ring_sector(&self, sector: u64) -> u64 {
        sector * u64::from(self.info.sector_size / SECTOR as u32)
    }

    /// Reads `buf.len()` bytes from `sector` on.
    pub fn read(&mut self, sector: u64, buf: &mut [u8], io: &mut dyn Signal) -> Result<(), DiskError> {
        self.check(sector, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        self.transfer(OP_READ, self.ring_sector(sector), Buf::Read(buf), 0, io)
    }

    /// Writes `data` from `sector` on.
    pub fn write(&mut self, sector: u64, data: &[u8], io: &mut dyn Signal) -> Result<(), DiskError> {
        if self.info.read_only {
            return Err(DiskError::ReadOnly);
        }
        self.check(sector, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        self.transfer(OP_WRITE, self.ring_sector(sector), Buf::Write(data), 0, io)
    }

    /// Asks the backend to write its cache to stable storage.
    pub fn flush(&mut self, io: &mut dyn Signal) -> Result<(), DiskError> {
        if !self.info.flush {
            return Err(DiskError::FlushUnsupported);
        }
        self.check(0, 0)?;
        self.transfer(OP_FLUSH_DISKCACHE, 0, Buf::None, 0, io)
    }

    /// Tells the backend that `count` sectors from `sector` on are no
    /// longer needed (`BLKIF_OP_DISCARD`); they may read back as zeros.
    /// Only the whole discard extents in the range go to the backend
    /// ([`Discard::extents`]); returns how many sectors that was.
    pub fn discard(&mut self, sector: u64, count: u64, io: &mut dyn Signal) -> Result<u64, DiskError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let Some(discard) = self.features.discard else {
            return Err(DiskError::DiscardUnsupported);
        };
        if self.info.read_only {
            return Err(DiskError::ReadOnly);
        }
        if sector.checked_add(count).is_none_or(|end| end > self.info.sectors) {
            let len = count.saturating_mul(u64::from(self.info.sector_size));
            return Err(DiskError::OutOfRange { sector, len: usize::try_from(len).unwrap_or(usize::MAX) });
        }
        let Some((sector, count)) = discard.extents(sector, count, self.info.sector_size) else {
            return Ok(0);
        };
        self.transfer(OP_DISCARD, self.ring_sector(sector), Buf::None, self.ring_sector(count), io)?;
        Ok(count)
    }

    /// Posts the request for `buf[offset..offset + len]` (`len` 0 for a
    /// flush or discard), if an id and enough pool pages are free: false
    /// when they are not, an error when the pool could never carry it.
    fn post(
        &mut self,
        op: u8,
        sector: u64,
        buf: &Buf<'_>,
        offset: usize,
        len: usize,
        discard: u64,
    ) -> Result<bool, DiskError> {
        let link = self.link.as_mut().ok_or(DiskError::Closed)?;
        let data_pages = len.div_ceil(PAGE_SIZE);
        let needed = request_pages(data_pages);
        let indirect_pages = needed - data_pages;
        if needed > link.pool.len() {
            return Err(DiskError::NoRoom { pages: needed, free: link.pool.len() });
        }
        if !self.inflight.has_free() || self.free.len() < needed {
            return Ok(false);
        }
        let pages: Vec<u16> = (0..needed).filter_map(|_| self.free.pop()).collect();
        if let Buf::Write(data) = buf {
            copy_to_pages(&link.pool, &pages[..data_pages], &data[offset..offset + len]);
        }
        let segment = |i: usize| {
            let in_page = (len - i * PAGE_SIZE).min(PAGE_SIZE) / SECTOR;
            Segment::new(link.pool[usize::from(pages[i])].gref, 0, (in_page - 1) as u8)
        };
        let held = Held { pages: pages.clone(), data_pages, offset, len };
        let id = self.inflight.take(op, held).expect("an id is free");
        let slot: RequestSlot = if op == OP_DISCARD {
            DiscardRequest {
                operation: op,
                handle: self.handle,
                id,
                sector_number: sector,
                nr_sectors: discard,
                ..Default::default()
            }
            .into()
        } else if indirect_pages > 0 {
            let mut req = IndirectRequest {
                operation: OP_INDIRECT,
                indirect_op: op,
                nr_segments: data_pages as u16,
                id,
                sector_number: sector,
                handle: self.handle,
                ..Default::default()
            };
            for (n, &ind) in pages[data_pages..].iter().enumerate() {
                let page = link.pool[usize::from(ind)];
                req.indirect_grefs[n] = page.gref;
                let first = n * SEGMENTS_PER_INDIRECT_PAGE;
                let segs: Vec<Segment> =
                    (first..data_pages.min(first + SEGMENTS_PER_INDIRECT_PAGE)).map(segment).collect();
                write_segments(page, &segs);
            }
            req.into()
        } else {
            let mut req = Request {
                operation: op,
                handle: self.handle,
                id,
                sector_number: sector,
                ..Default::default()
            };
            for (i, seg) in req.seg.iter_mut().enumerate().take(data_pages) {
                *seg = segment(i);
            }
            req.nr_segments = data_pages as u8;
            req.into()
        };
        // Ids never outnumber ring slots, so the ring has room.
        let _ = link.ring.push(slot);
        self.stats.requests += 1;
        self.stats.indirect += u64::from(indirect_pages > 0);
        self.stats.peak_in_flight = self.stats.peak_in_flight.max(self.inflight.in_flight());
        Ok(true)
    }

    /// Takes one response, if there is one: its id, its outcome and what
    /// its request held. A protocol violation fails the disk for good.
    fn reap(&mut self) -> Result<Option<(u64, Outcome, Held)>, DiskError> {
        let rsp = match self.link()?.ring.pop_response() {
            Ok(Some(rsp)) => rsp,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.fail(DiskError::Ring(e))),
        };
        match self.inflight.complete(rsp) {
            Ok((outcome, held)) => Ok(Some((rsp.id, outcome, held))),
            Err(e) => Err(self.fail(DiskError::Response(e))),
        }
    }

    fn fail(&mut self, e: DiskError) -> DiskError {
        log::error!("blkfront: {e}; the disk is unusable from here on");
        self.failed = Some(e);
        e
    }

    /// Runs `op` over the whole of `buf` from `sector` (512-byte units) on
    /// (or, for a discard, over `discard` sectors), in requests of up to [`Disk::max_request`] bytes, as many in flight
    /// as ids and pool pages allow.
    fn transfer(
        &mut self,
        op: u8,
        sector: u64,
        mut buf: Buf<'_>,
        discard: u64,
        io: &mut dyn Signal,
    ) -> Result<(), DiskError> {
        let len = match &buf {
            Buf::Read(b) => b.len(),
            Buf::Write(d) => d.len(),
            Buf::None => 0,
        };
        if let Some(state) = io.gone() {
            return Err(self.backend_gone(state));
        }
        let chunk_max = self.max_request();
        let mut next = 0usize;
        let mut posted_all = false;
        let mut failure = None;
        loop {
            // Post as much as the free ids and pages allow.
            while !posted_all && failure.is_none() {
                let chunk = (len - next).min(chunk_max);
                if !self.post(op, sector + (next / SECTOR) as u64, &buf, next, chunk, discard)? {
                    break;
                }
                next += chunk;
                posted_all = next >= len;
            }
            if self.link()?.ring.publish() {
                io.notify(self.port);
            }
            if self.inflight.in_flight() == 0 {
                if !posted_all && failure.is_none() {
                    // Nothing out to wait for, and too few pages free: pages
                    // kept by a completion never finished.
                    let pages = request_pages((len - next).min(chunk_max).div_ceil(PAGE_SIZE));
                    return Err(DiskError::NoRoom { pages, free: self.free.len() });
                }
                return failure.map_or(Ok(()), Err);
            }
            // Take what has come back; sleep when nothing has.
            match self.reap()? {
                Some((_, outcome, held)) => {
                    if outcome != Outcome::Okay {
                        failure = Some(DiskError::Backend(outcome));
                    } else if let Buf::Read(b) = &mut buf {
                        copy_from_pages(
                            &self.link()?.pool,
                            &held.pages[..held.data_pages],
                            &mut b[held.offset..held.offset + held.len],
                        );
                    }
                    self.free.extend_from_slice(&held.pages);
                }
                None => {
                    let more = match self.link()?.ring.final_check_for_responses() {
                        Ok(more) => more,
                        Err(e) => return Err(self.fail(DiskError::Ring(e))),
                    };
                    if !more && !io.wait(self.port, self.timeout) {
                        return Err(match io.gone() {
                            Some(state) => self.backend_gone(state),
                            None => self.time_out(),
                        });
                    }
                }
            }
        }
    }
}

/// What [`Disk::start`] posts.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// `len` bytes (whole sectors, at most [`Disk::max_request`]).
    Read(usize),
    /// These bytes (whole sectors, at most [`Disk::max_request`]).
    Write(&'a [u8]),
    Flush,
    /// This many sectors.
    Discard(u64),
}

/// A request the backend has answered, until [`Disk::finish`] takes its
/// data and gives its pages back.
#[derive(Debug)]
pub struct Completion {
    pub id: u64,
    outcome: Outcome,
    held: Held,
}

/// The non-blocking interface, for an asynchronous runtime: post requests
/// with [`Disk::start`] and [`Disk::push`], take answers with
/// [`Disk::poll_completion`] and [`Disk::finish`]. Not to be mixed with the
/// blocking calls while requests are out.
impl Disk {
    /// Largest read or write one request carries.
    pub fn max_request(&self) -> usize {
        self.max_pages * PAGE_SIZE
    }

    /// Requests with the backend or answered and not finished.
    pub fn in_flight(&self) -> usize {
        self.inflight.in_flight()
    }

    /// Posts one request for `sector` on (the disk's sectors); `Ok(None)`
    /// when every id or too many buffer pages are taken (finish completions
    /// first), never for a request the whole pool could not carry
    /// ([`DiskError::NoRoom`]). The backend sees it after [`Disk::push`].
    pub fn start(&mut self, sector: u64, what: Start<'_>) -> Result<Option<u64>, DiskError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let (op, len, discard) = match what {
            Start::Read(len) => (OP_READ, len, 0),
            Start::Write(data) => (OP_WRITE, data.len(), 0),
            Start::Flush => (OP_FLUSH_DISKCACHE, 0, 0),
            Start::Discard(count) => (OP_DISCARD, 0, count),
        };
        match op {
            OP_WRITE | OP_DISCARD if self.info.read_only => return Err(DiskError::ReadOnly),
            OP_FLUSH_DISKCACHE if !self.info.flush => return Err(DiskError::FlushUnsupported),
            OP_DISCARD if self.features.discard.is_none() => return Err(DiskError::DiscardUnsupported),
            _ => {}
        }
        if let (OP_DISCARD, Some(d)) = (op, self.features.discard) {
            if d.extents(sector, discard, self.info.sector_size) != Some((sector, discard)) {
                return Err(DiskError::DiscardUnaligned { sector, count: discard });
            }
            if sector.checked_add(discard).is_none_or(|end| end > self.info.sectors) {
                let len = discard.saturating_mul(u64::from(self.info.sector_size));
                return Err(DiskError::OutOfRange {
                    sector,
                    len: usize::try_from(len).unwrap_or(usize::MAX),
                });
            }
        } else {
            self.check(sector, len)?;
        }
        if len > self.max_request() {
            return Err(DiskError::TooLarge { len, max: self.max_request() });
        }
        if len == 0 && matches!(op, OP_READ | OP_WRITE) {
            return Err(DiskError::Unaligned { len });
        }
        let id = self.inflight.peek_free();
        let buf = match what {
            Start::Write(data) => Buf::Write(data),
            _ => Buf::None,
        };
        let (sector, discard) = (self.ring_sector(sector), self.ring_sector(discard));
        Ok(self.post(op, sector, &buf, 0, len, discard)?.then_some(id).flatten())
    }

    /// Makes the posted requests visible to the backend, and tells it.
    /// Nothing once the disk is detached: its ring pages and event channel
    /// may be someone else's by then.
    pub fn push(&mut self, io: &mut dyn Signal) {
        let Some(link) = self.link.as_mut() else { return };
        if link.ring.publish() {
            io.notify(self.port);
        }
    }

    /// The next answer, validated; `Ok(None)` when there is none yet (the
    /// backend then signals the port when one arrives).
    pub fn poll_completion(&mut self) -> Result<Option<Completion>, DiskError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        loop {
            if let Some((id, outcome, held)) = self.reap()? {
                return Ok(Some(Completion { id, outcome, held }));
            }
            match self.link()?.ring.final_check_for_responses() {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => return Err(self.fail(DiskError::Ring(e))),
            }
        }
    }

    /// Copies a completed read's data into `buf` (its length, or shorter:
    /// the rest is dropped) and gives the request's pages back. Once the
    /// disk has failed, nothing is copied (a detached disk's pages may be
    /// given back to the heap already): that is the failure.
    pub fn finish(&mut self, done: Completion, buf: &mut [u8]) -> Result<(), DiskError> {
        let Completion { outcome, held, .. } = done;
        if let Some(e) = self.failed {
            return Err(e);
        }
        if outcome == Outcome::Okay {
            let len = held.len.min(buf.len());
            copy_from_pages(&self.link()?.pool, &held.pages[..held.data_pages], &mut buf[..len]);
        }
        self.free.extend_from_slice(&held.pages);
        match outcome {
            Outcome::Okay => Ok(()),
            bad => Err(DiskError::Backend(bad)),
        }
    }

    /// Gives up on a backend that has not answered for `self.timeout()`
    /// with requests out: the disk fails for good.
    pub fn time_out(&mut self) -> DiskError {
        if let Some(link) = &self.link {
            log::warn!("blkfront: {} requests out, ring: {}", self.inflight.in_flight(), link.ring.indices());
        }
        self.fail(DiskError::Timeout(self.timeout))
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Why the disk is unusable, once the backend broke the protocol,
    /// stopped answering or went away.
    pub fn failure(&self) -> Option<DiskError> {
        self.failed
    }

    /// Ends the disk's use before its end is closed and its pages given
    /// back: every later call fails with [`DiskError::Closed`] (or the
    /// failure the disk already had).
    pub fn retire(&mut self) {
        self.failed.get_or_insert(DiskError::Closed);
    }

    /// Retires the disk and takes its ring and buffer pages out of it, so
    /// that nothing reaches them any more; returns what
    /// [`crate::connect::release`] gives back: `None` for a disk that shares
    /// nothing (the host's peer), and the second time.
    pub fn detach(&mut self) -> Option<crate::connect::Shared> {
        self.retire();
        self.link.take()?.shared
    }

    /// The backend went to Closing or Closed (`state`): fails the disk for
    /// good with [`DiskError::Gone`]. The requests it had are dropped
    /// unanswered (their callers get the error; their pages are never used
    /// again, as the backend may still write them); returns the error.
    pub fn backend_gone(&mut self, state: XenbusState) -> DiskError {
        let e = DiskError::Gone(state);
        if self.failed == Some(e) {
            return e;
        }
        let lost = self.inflight.in_flight();
        log::error!("blkfront: the disk was detached (backend {state:?}); {lost} requests with it failed");
        self.failed = Some(e);
        e
    }
}

/// Pool pages a request of `segments` data pages takes: beyond the
/// [`MAX_SEGMENTS`] a ring slot holds, one indirect page per
/// [`SEGMENTS_PER_INDIRECT_PAGE`] segments too (`io/blkif.h`,
/// `BLKIF_OP_INDIRECT`).
pub(crate) fn request_pages(segments: usize) -> usize {
    if segments > MAX_SEGMENTS {
        segments + segments.div_ceil(SEGMENTS_PER_INDIRECT_PAGE)
    } else {
        segments
    }
}

/// Most segments of an indirect request that `pool` pages carry with its
/// indirect pages: n + ceil(n / 512) <= pool holds exactly while
/// ceil(pool / 513) indirect pages are left over.
pub(crate) fn most_segments(pool: usize) -> usize {
    pool - pool.div_ceil(SEGMENTS_PER_INDIRECT_PAGE + 1)
}

/// Writes `segs` at the start of indirect page `page` and clears the rest.
fn write_segments(page: GrantedPage, segs: &[Segment]) {
    debug_assert!(segs.len() <= SEGMENTS_PER_INDIRECT_PAGE);
    // SAFETY: the page is PAGE_SIZE bytes, page-aligned, ours while its
    // request is not posted; `Segment` is 8 bytes of integers with explicit
    // padding, 4-byte aligned, and the segments fit in the page.
    unsafe {
        core::ptr::copy_nonoverlapping(segs.as_ptr(), page.addr.cast::<Segment>(), segs.len());
        let used = core::mem::size_of_val(segs);
        core::ptr::write_bytes(page.addr.add(used), 0, PAGE_SIZE - used);
    }
}

/// Copies `data` to the start of consecutive pool `pages`; the rest of the
/// last page is cleared, so the backend sees nothing but the data.
fn copy_to_pages(pool: &[GrantedPage], pages: &[u16], data: &[u8]) {
    for (&p, part) in pages.iter().zip(data.chunks(PAGE_SIZE)) {
        let page = pool[usize::from(p)];
        // SAFETY: each page is PAGE_SIZE bytes, ours while its request is not
        // with the backend (before posting).
        unsafe {
            core::ptr::copy_nonoverlapping(part.as_ptr(), page.addr, part.len());
            core::ptr::write_bytes(page.addr.add(part.len()), 0, PAGE_SIZE - part.len());
        }
    }
}

/// Copies the start of consecutive pool `pages` into `buf`.
fn copy_from_pages(pool: &[GrantedPage], pages: &[u16], buf: &mut [u8]) {
    for (&p, part) in pages.iter().zip(buf.chunks_mut(PAGE_SIZE)) {
        // SAFETY: each page is PAGE_SIZE bytes, ours again once its request
        // has completed.
        unsafe { core::ptr::copy_nonoverlapping(pool[usize::from(p)].addr, part.as_mut_ptr(), part.len()) };
    }
}
