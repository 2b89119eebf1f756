//! The disk's data path: reads and writes split into requests of up to
//! [`MAX_SEGMENTS`] pages, several in flight, data copied through pages that
//! were granted to the backend once, at connect time.

use crate::inflight::{InFlight, Outcome, ResponseError};
use crate::wire::{Request, Response, Segment, MAX_SEGMENTS, OP_FLUSH_DISKCACHE, OP_READ, OP_WRITE};
use alloc::vec::Vec;
use core::fmt;
use mote_xen::event::Port;
use mote_xen::io_ring::{FrontRing, RingError, PAGE_SIZE};

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
    pub fn bytes(&self) -> u64 {
        self.sectors * u64::from(self.sector_size)
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
    FlushUnsupported,
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
            DiskError::FlushUnsupported => f.write_str("the backend offers no cache flush"),
        }
    }
}

/// Where the data of request `id` belongs in the caller's buffer.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    offset: usize,
    len: usize,
}

/// How the disk reaches its backend: the event channel both ways. The
/// runtime sends on and sleeps for the disk's port; host tests play the
/// backend here.
pub trait Signal {
    /// Tells the backend new requests are there.
    fn notify(&mut self, port: Port);
    /// Sleeps until the backend signals `port` (responses may be there).
    fn wait(&mut self, port: Port);
}

/// A connected disk.
pub struct Disk {
    ring: FrontRing<'static, Request, Response>,
    inflight: InFlight,
    /// `MAX_SEGMENTS` pages per request id.
    pages: Vec<GrantedPage>,
    chunks: Vec<Option<Chunk>>,
    port: Port,
    handle: u16,
    info: DiskInfo,
}

// SAFETY: the pages behind the raw pointers belong to the disk alone (and
// the backend); the disk moves between contexts as a whole.
unsafe impl Send for Disk {}

impl Disk {
    /// `pages` holds `MAX_SEGMENTS` granted pages per request that may be in
    /// flight at once.
    pub fn new(
        ring: FrontRing<'static, Request, Response>,
        pages: Vec<GrantedPage>,
        port: Port,
        handle: u16,
        info: DiskInfo,
    ) -> Self {
        let slots = (pages.len() / MAX_SEGMENTS).min(ring.size() as usize) as u32;
        Disk {
            ring,
            inflight: InFlight::new(slots),
            pages,
            chunks: alloc::vec![None; slots as usize],
            port,
            handle,
            info,
        }
    }

    pub fn info(&self) -> DiskInfo {
        self.info
    }

    pub fn port(&self) -> Port {
        self.port
    }

    fn check(&self, sector: u64, len: usize) -> Result<(), DiskError> {
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

    /// Reads `buf.len()` bytes from `sector` on.
    pub fn read(&mut self, sector: u64, buf: &mut [u8], io: &mut dyn Signal) -> Result<(), DiskError> {
        self.check(sector, buf.len())?;
        self.transfer(OP_READ, sector, buf.len(), io, &mut |pages, chunk| {
            copy_from_pages(pages, &mut buf[chunk.offset..chunk.offset + chunk.len])
        })
    }

    /// Writes `data` from `sector` on.
    pub fn write(&mut self, sector: u64, data: &[u8], io: &mut dyn Signal) -> Result<(), DiskError> {
        if self.info.read_only {
            return Err(DiskError::ReadOnly);
        }
        self.check(sector, data.len())?;
        self.transfer(OP_WRITE, sector, data.len(), io, &mut |pages, chunk| {
            copy_to_pages(pages, &data[chunk.offset..chunk.offset + chunk.len])
        })
    }

    /// Asks the backend to write its cache to stable storage.
    pub fn flush(&mut self, io: &mut dyn Signal) -> Result<(), DiskError> {
        if !self.info.flush {
            return Err(DiskError::FlushUnsupported);
        }
        self.transfer(OP_FLUSH_DISKCACHE, 0, 0, io, &mut |_, _| {})
    }

    /// Runs `len` bytes of `op` from `sector` as requests of up to
    /// `MAX_SEGMENTS` pages, as many in flight as there are ids; `data` moves
    /// a chunk between the caller's buffer and its pages (before posting a
    /// write, after completing a read).
    fn transfer(
        &mut self,
        op: u8,
        sector: u64,
        len: usize,
        io: &mut dyn Signal,
        data: &mut dyn FnMut(&[GrantedPage], Chunk),
    ) -> Result<(), DiskError> {
        let chunk_max = MAX_SEGMENTS * PAGE_SIZE;
        let size = self.info.sector_size as usize;
        let mut next = 0usize;
        let mut posted_all = false;
        let mut failure = None;
        loop {
            // Post as much as the free ids allow.
            while !posted_all && failure.is_none() {
                let Some(id) = self.inflight.take(op) else { break };
                let chunk = Chunk { offset: next, len: (len - next).min(chunk_max) };
                let pages = &self.pages[id as usize * MAX_SEGMENTS..(id as usize + 1) * MAX_SEGMENTS];
                if op == OP_WRITE {
                    data(pages, chunk);
                }
                let mut req = Request {
                    operation: op,
                    handle: self.handle,
                    id,
                    sector_number: sector + (next / size) as u64,
                    ..Request::default()
                };
                let per_page = PAGE_SIZE / size;
                let sectors = chunk.len / size;
                for (i, seg) in req.seg.iter_mut().enumerate().take(sectors.div_ceil(per_page)) {
                    let in_page = (sectors - i * per_page).min(per_page);
                    *seg = Segment::new(pages[i].gref, 0, (in_page - 1) as u8);
                    req.nr_segments += 1;
                }
                self.chunks[id as usize] = Some(chunk);
                // Ids never outnumber ring slots, so the ring has room.
                let _ = self.ring.push(req);
                next += chunk.len;
                posted_all = next >= len;
            }
            if self.ring.publish() {
                io.notify(self.port);
            }
            if self.inflight.in_flight() == 0 {
                return failure.map_or(Ok(()), Err);
            }
            // Take what has come back; sleep when nothing has.
            match self.ring.pop_response().map_err(DiskError::Ring)? {
                Some(rsp) => {
                    let outcome = self.inflight.complete(rsp).map_err(DiskError::Response)?;
                    let chunk = self.chunks[rsp.id as usize].take();
                    match (outcome, chunk) {
                        (Outcome::Okay, Some(chunk)) => {
                            if op == OP_READ {
                                let id = rsp.id as usize;
                                data(&self.pages[id * MAX_SEGMENTS..(id + 1) * MAX_SEGMENTS], chunk);
                            }
                        }
                        (Outcome::Okay, None) => {}
                        (bad, _) => failure = Some(DiskError::Backend(bad)),
                    }
                }
                None => {
                    if !self.ring.final_check_for_responses().map_err(DiskError::Ring)? {
                        io.wait(self.port);
                    }
                }
            }
        }
    }
}

/// Copies `data` to the start of consecutive `pages`.
fn copy_to_pages(pages: &[GrantedPage], data: &[u8]) {
    for (page, part) in pages.iter().zip(data.chunks(PAGE_SIZE)) {
        // SAFETY: each page is PAGE_SIZE bytes, ours while its request is not
        // with the backend (before posting).
        unsafe { core::ptr::copy_nonoverlapping(part.as_ptr(), page.addr, part.len()) };
    }
}

/// Copies the start of consecutive `pages` into `buf`.
fn copy_from_pages(pages: &[GrantedPage], buf: &mut [u8]) {
    for (page, part) in pages.iter().zip(buf.chunks_mut(PAGE_SIZE)) {
        // SAFETY: each page is PAGE_SIZE bytes, ours again once its request
        // has completed.
        unsafe { core::ptr::copy_nonoverlapping(page.addr, part.as_mut_ptr(), part.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::RSP_OKAY;
    use core::sync::atomic::{AtomicU32, Ordering};
    use std::collections::HashMap;

    #[repr(C, align(4096))]
    struct Page([u8; PAGE_SIZE]);

    fn page() -> *mut u8 {
        Box::leak(Box::new(Page([0; PAGE_SIZE]))).0.as_mut_ptr()
    }

    /// blkback over an in-memory disk, answering what was published.
    struct Backend {
        ring: *mut u8,
        pages: HashMap<u32, *mut u8>,
        disk: Vec<u8>,
        req_cons: u32,
        rsp_prod: u32,
        requests: usize,
    }

    impl Signal for Backend {
        fn notify(&mut self, _: Port) {}
        fn wait(&mut self, _: Port) {
            self.serve();
        }
    }

    impl Backend {
        fn index(&self, i: usize) -> &AtomicU32 {
            unsafe { &*(self.ring.add(i * 4) as *const AtomicU32) }
        }

        fn serve(&mut self) {
            let prod = self.index(0).load(Ordering::Acquire);
            while self.req_cons != prod {
                let slot = unsafe { self.ring.add(64 + (self.req_cons as usize % 32) * 112) };
                let req = unsafe { slot.cast::<Request>().read_unaligned() };
                let mut offset = req.sector_number as usize * 512;
                for seg in &req.seg[..usize::from(req.nr_segments)] {
                    let page = self.pages[&seg.gref];
                    let len = (usize::from(seg.last_sect) + 1 - usize::from(seg.first_sect)) * 512;
                    let bytes = unsafe { core::slice::from_raw_parts_mut(page, len) };
                    match req.operation {
                        OP_READ => bytes.copy_from_slice(&self.disk[offset..offset + len]),
                        OP_WRITE => self.disk[offset..offset + len].copy_from_slice(bytes),
                        _ => {}
                    }
                    offset += len;
                }
                unsafe {
                    slot.cast::<Response>().write_unaligned(Response {
                        id: req.id,
                        operation: req.operation,
                        status: RSP_OKAY,
                    })
                };
                self.req_cons += 1;
                self.rsp_prod += 1;
                self.requests += 1;
            }
            self.index(2).store(self.rsp_prod, Ordering::Release);
        }
    }

    fn disk(read_only: bool) -> (Disk, Backend) {
        let ring_page = page();
        let ring = unsafe { FrontRing::init(ring_page) };
        let pages: Vec<GrantedPage> =
            (0..2 * MAX_SEGMENTS).map(|i| GrantedPage { addr: page(), gref: 100 + i as u32 }).collect();
        let backend = Backend {
            ring: ring_page,
            pages: pages.iter().map(|p| (p.gref, p.addr)).collect(),
            disk: vec![0; 1 << 20],
            req_cons: 0,
            rsp_prod: 0,
            requests: 0,
        };
        let info = DiskInfo { sectors: 2048, sector_size: 512, read_only, flush: true };
        (Disk::new(ring, pages, Port(1), 51712, info), backend)
    }

    #[test]
    fn large_transfers_split_into_requests_and_round_trip() {
        let (mut d, mut be) = disk(false);
        let data: Vec<u8> = (0..300 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
        d.write(10, &data, &mut be).unwrap();
        // 300 KiB in 44 KiB requests: 7 of them.
        assert_eq!(be.requests, 7);
        assert_eq!(&be.disk[10 * 512..10 * 512 + data.len()], &data[..]);
        let mut back = vec![0u8; data.len()];
        d.read(10, &mut back, &mut be).unwrap();
        assert_eq!(back, data);
        d.flush(&mut be).unwrap();
    }

    #[test]
    fn bad_ranges_and_read_only_disks_are_refused() {
        let (mut d, mut be) = disk(false);
        let mut buf = vec![0u8; 1024];
        assert_eq!(d.read(2047, &mut buf, &mut be), Err(DiskError::OutOfRange { sector: 2047, len: 1024 }));
        assert_eq!(
            d.read(u64::MAX, &mut buf, &mut be),
            Err(DiskError::OutOfRange { sector: u64::MAX, len: 1024 })
        );
        assert_eq!(d.read(0, &mut buf[..100], &mut be), Err(DiskError::Unaligned { len: 100 }));
        let (mut ro, mut be) = disk(true);
        assert_eq!(ro.write(0, &buf, &mut be), Err(DiskError::ReadOnly));
        assert_eq!(be.requests, 0);
    }

    #[test]
    fn a_response_for_an_unknown_id_is_an_error() {
        let (mut d, be) = disk(false);
        let mut buf = vec![0u8; 512];
        /// Answers with an id that was never posted.
        struct Hostile(*mut u8);
        impl Signal for Hostile {
            fn notify(&mut self, _: Port) {}
            fn wait(&mut self, _: Port) {
                unsafe {
                    let slot = self.0.add(64);
                    slot.cast::<Response>().write_unaligned(Response {
                        id: 999,
                        operation: OP_READ,
                        status: RSP_OKAY,
                    });
                    (*(self.0.add(8) as *const AtomicU32)).store(1, Ordering::Release);
                }
            }
        }
        let mut hostile = Hostile(be.ring);
        assert_eq!(
            d.read(0, &mut buf, &mut hostile),
            Err(DiskError::Response(ResponseError::UnknownId(999)))
        );
    }
}
