//! An in-memory blkback for host tests and the fuzz target: it owns the
//! other end of a [`Disk`]'s ring and buffer pages, and either serves the
//! requests it finds (checking each against the protocol, so a frontend
//! mistake panics here) or lets a test write whatever responses it likes.

use crate::device::{Disk, DiskInfo, Features, GrantedPage, Signal};
use crate::wire::{
    DiscardRequest, IndirectRequest, Request, RequestSlot, Response, Segment, MAX_INDIRECT_PAGES,
    MAX_SEGMENTS, OP_DISCARD, OP_FLUSH_DISKCACHE, OP_INDIRECT, OP_READ, OP_WRITE, RSP_ERROR, RSP_OKAY,
    SECTOR, SEGMENTS_PER_INDIRECT_PAGE,
};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::mem::size_of;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use mote_xen::event::Port;
use mote_xen::io_ring::{ring_size_in, FrontRing, PAGE_SIZE};

/// One request as the peer understood it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub id: u64,
    /// The operation (inside an indirect request, its `indirect_op`).
    pub operation: u8,
    pub indirect: bool,
    /// First 512-byte sector.
    pub sector: u64,
    pub segments: usize,
    /// 512-byte sectors moved (or discarded).
    pub sectors: u64,
}

/// The backend end of a simulated blkif connection.
pub struct Peer {
    ring: *mut u8,
    ring_pages: usize,
    pool_base: *mut u8,
    size: u32,
    pages: BTreeMap<u32, *mut u8>,
    /// The disk's bytes.
    pub disk: Vec<u8>,
    req_cons: u32,
    rsp_prod: u32,
    /// Every request taken, in order.
    pub seen: Vec<Seen>,
    /// Most requests published and not yet answered at one time.
    pub peak_outstanding: u32,
    /// Bytes of granted pages outside a write's sectors that were not zero.
    pub leaked_bytes: usize,
    /// Panic on a malformed request (the default). A fuzzer that forges
    /// responses turns this off: a forged completion lets the frontend reuse
    /// pages that a request still in the ring names, and blkback answers
    /// such a request with an error.
    pub strict: bool,
    /// Events the frontend sent.
    pub notifications: usize,
}

/// Page blocks of finished peers, by size in pages: never given back to the
/// allocator, so that a disk outliving its peer still points at memory (and
/// a fuzzer running many peers does not grow).
static SPARE: std::sync::Mutex<Vec<(usize, usize)>> = std::sync::Mutex::new(Vec::new());

/// A page-aligned, zeroed block of `n` pages.
fn pages(n: usize) -> *mut u8 {
    let spare = {
        let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
        let found = spare.iter().position(|&(_, pages)| pages == n);
        found.map(|i| spare.swap_remove(i).0 as *mut u8)
    };
    if let Some(p) = spare {
        // SAFETY: a block of `n` pages this module allocated.
        unsafe { core::ptr::write_bytes(p, 0, n * PAGE_SIZE) };
        return p;
    }
    let layout = core::alloc::Layout::from_size_align(n * PAGE_SIZE, PAGE_SIZE).expect("page layout");
    // SAFETY: the layout is not zero-sized.
    let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
    assert!(!p.is_null(), "out of memory");
    p
}

impl Drop for Peer {
    fn drop(&mut self) {
        let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
        spare.push((self.ring as usize, self.ring_pages));
        spare.push((self.pool_base as usize, self.pages.len()));
    }
}

impl Peer {
    /// A disk of `info` with `features` (its ring of `features.ring_pages`)
    /// and `pool` buffer pages, and the peer serving it.
    pub fn connect(info: DiskInfo, features: Features, pool: usize) -> (Disk, Peer) {
        let ring_page = pages(features.ring_pages);
        // SAFETY: fresh pages, ours alone, never freed.
        let ring = unsafe { FrontRing::init_pages(ring_page, features.ring_pages) };
        let base = pages(pool);
        // SAFETY: within the allocation just made.
        let buffers: Vec<GrantedPage> = (0..pool)
            .map(|i| GrantedPage { addr: unsafe { base.add(i * PAGE_SIZE) }, gref: 100 + i as u32 })
            .collect();
        let peer = Peer {
            ring: ring_page,
            ring_pages: features.ring_pages,
            pool_base: base,
            size: ring_size_in::<RequestSlot, Response>(features.ring_pages),
            pages: buffers.iter().map(|p| (p.gref, p.addr)).collect(),
            disk: alloc::vec![0; (info.bytes()) as usize],
            req_cons: 0,
            rsp_prod: 0,
            seen: Vec::new(),
            peak_outstanding: 0,
            leaked_bytes: 0,
            strict: true,
            notifications: 0,
        };
        (Disk::new(ring, buffers, Port(1), 51712, info, features), peer)
    }

    fn index(&self, i: usize) -> &AtomicU32 {
        // SAFETY: the ring header's four u32 indices, aligned, only accessed
        // atomically (by us and the frontend).
        unsafe { &*(self.ring.add(i * 4) as *const AtomicU32) }
    }

    fn slot(&self, index: u32) -> *mut u8 {
        // SAFETY: `size` slots of the request size fit after the 64-byte header.
        unsafe { self.ring.add(64 + (index % self.size) as usize * size_of::<RequestSlot>()) }
    }

    /// The frontend's `req_prod`.
    pub fn req_prod(&self) -> u32 {
        self.index(0).load(Ordering::Acquire)
    }

    /// Requests published and not taken yet.
    pub fn pending(&self) -> u32 {
        self.req_prod().wrapping_sub(self.req_cons)
    }

    /// Takes the next published request, if any.
    pub fn take(&mut self) -> Option<RequestSlot> {
        if self.pending() == 0 {
            return None;
        }
        self.peak_outstanding = self.peak_outstanding.max(self.req_prod().wrapping_sub(self.rsp_prod));
        // SAFETY: the frontend published this slot.
        let req = unsafe { self.slot(self.req_cons).cast::<RequestSlot>().read_unaligned() };
        self.req_cons = self.req_cons.wrapping_add(1);
        Some(req)
    }

    /// A granted page of `PAGE_SIZE` bytes, only ever accessed through raw
    /// pointers (the frontend has its own).
    fn page(&self, gref: u32) -> Result<*mut u8, String> {
        self.pages.get(&gref).copied().ok_or_else(|| format!("gref {gref} was never granted"))
    }

    /// Carries out a request on the disk and returns the response blkback
    /// would give. Panics when the frontend broke the protocol (unless not
    /// [`Peer::strict`]: then the answer is an error).
    pub fn execute(&mut self, slot: &RequestSlot) -> Response {
        match self.run(slot) {
            Ok(rsp) => rsp,
            Err(e) if self.strict => panic!("the frontend broke the protocol: {e}"),
            Err(_) => {
                let id = u64::from_le_bytes(slot.bytes()[8..16].try_into().expect("8 bytes"));
                let operation = match slot.operation() {
                    OP_INDIRECT => slot.bytes()[1],
                    op => op,
                };
                Response { id, operation, status: RSP_ERROR, ..Response::default() }
            }
        }
    }

    fn run(&mut self, slot: &RequestSlot) -> Result<Response, String> {
        macro_rules! check {
            ($cond:expr, $($why:tt)*) => {
                if !$cond {
                    return Err(format!($($why)*));
                }
            };
        }
        let (id, op, sector, segs, indirect) = match slot.operation() {
            OP_READ | OP_WRITE | OP_FLUSH_DISKCACHE => {
                let r: Request = slot.read();
                check!(usize::from(r.nr_segments) <= MAX_SEGMENTS, "{} segments", r.nr_segments);
                check!(r.pad == 0, "padding must be zero");
                (r.id, r.operation, r.sector_number, r.seg[..usize::from(r.nr_segments)].to_vec(), false)
            }
            OP_INDIRECT => {
                let r: IndirectRequest = slot.read();
                let n = usize::from(r.nr_segments);
                check!(
                    n > MAX_SEGMENTS && n <= MAX_INDIRECT_PAGES * SEGMENTS_PER_INDIRECT_PAGE,
                    "{n} segments"
                );
                check!(matches!(r.indirect_op, OP_READ | OP_WRITE), "indirect op {}", r.indirect_op);
                let mut segs = Vec::new();
                for (i, &gref) in
                    r.indirect_grefs[..n.div_ceil(SEGMENTS_PER_INDIRECT_PAGE)].iter().enumerate()
                {
                    let page = self.page(gref)?;
                    let count = (n - i * SEGMENTS_PER_INDIRECT_PAGE).min(SEGMENTS_PER_INDIRECT_PAGE);
                    for k in 0..SEGMENTS_PER_INDIRECT_PAGE {
                        // SAFETY: within the page; `Segment` accepts any bytes.
                        let seg = unsafe { page.cast::<Segment>().add(k).read_unaligned() };
                        if k < count {
                            segs.push(seg);
                        } else {
                            check!(seg == Segment::default(), "stale bytes after the segments");
                        }
                    }
                }
                (r.id, r.indirect_op, r.sector_number, segs, true)
            }
            OP_DISCARD => {
                let r: DiscardRequest = slot.read();
                let end = r.sector_number.saturating_add(r.nr_sectors).saturating_mul(SECTOR as u64);
                let end = usize::try_from(end).unwrap_or(usize::MAX);
                check!(end <= self.disk.len(), "discard past the end");
                self.disk[r.sector_number as usize * SECTOR..end].fill(0);
                self.seen.push(Seen {
                    id: r.id,
                    operation: OP_DISCARD,
                    indirect: false,
                    sector: r.sector_number,
                    segments: 0,
                    sectors: r.nr_sectors,
                });
                return Ok(Response {
                    id: r.id,
                    operation: OP_DISCARD,
                    status: RSP_OKAY,
                    ..Response::default()
                });
            }
            other => return Err(format!("unknown operation {other}")),
        };
        check!(
            slot.bytes()[if indirect { 64 } else { 24 + 8 * segs.len() }..].iter().all(|&b| b == 0),
            "stale bytes after the request"
        );
        let start = usize::try_from(sector.saturating_mul(SECTOR as u64)).unwrap_or(usize::MAX);
        let mut offset = start;
        for seg in &segs {
            check!(
                seg.first_sect <= seg.last_sect && usize::from(seg.last_sect) < PAGE_SIZE / SECTOR,
                "{seg:?}"
            );
            let page = self.page(seg.gref)?;
            let (start, end) =
                (usize::from(seg.first_sect) * SECTOR, (usize::from(seg.last_sect) + 1) * SECTOR);
            let len = end - start;
            check!(offset.saturating_add(len) <= self.disk.len(), "request past the disk's end");
            match op {
                // SAFETY: `start..end` is within the page (checked above).
                OP_READ => unsafe { core::ptr::copy(self.disk[offset..].as_ptr(), page.add(start), len) },
                OP_WRITE => {
                    let mut copy = [0u8; PAGE_SIZE];
                    // SAFETY: the whole page, into a local copy.
                    unsafe { core::ptr::copy(page, copy.as_mut_ptr(), PAGE_SIZE) };
                    self.disk[offset..offset + len].copy_from_slice(&copy[start..end]);
                    let outside = copy[..start].iter().chain(&copy[end..]);
                    self.leaked_bytes += outside.filter(|&&b| b != 0).count();
                }
                _ => return Err(format!("operation {op} with segments")),
            }
            offset += len;
        }
        self.seen.push(Seen {
            id,
            operation: op,
            indirect,
            sector,
            segments: segs.len(),
            sectors: ((offset - start) / SECTOR) as u64,
        });
        Ok(Response { id, operation: op, status: RSP_OKAY, ..Response::default() })
    }

    /// Writes `rsp` into the next response slot (not published yet).
    pub fn respond(&mut self, rsp: Response) {
        self.write_response(self.rsp_prod, rsp);
        self.rsp_prod = self.rsp_prod.wrapping_add(1);
    }

    /// Writes `rsp` into slot `index`, whatever the protocol says.
    pub fn write_response(&self, index: u32, rsp: Response) {
        // SAFETY: a slot of the ring; `Response` is 16 bytes of integers.
        unsafe { self.slot(index).cast::<Response>().write_unaligned(rsp) };
    }

    /// Publishes the responses written so far.
    pub fn publish(&mut self) {
        self.index(2).store(self.rsp_prod, Ordering::Release);
    }

    /// Sets the `rsp_prod` the frontend sees to any value.
    pub fn set_rsp_prod(&mut self, value: u32) {
        self.index(2).store(value, Ordering::Release);
    }

    /// Fills the ring pages with `byte`, as the heap may reuse them once a
    /// released disk gave them back.
    pub fn poison_ring(&mut self, byte: u8) {
        // SAFETY: the ring's pages, only ever accessed through raw pointers.
        unsafe { core::ptr::write_bytes(self.ring, byte, self.ring_pages * PAGE_SIZE) };
    }

    /// Whether every byte of the ring pages is still `byte`.
    pub fn ring_poisoned(&self, byte: u8) -> bool {
        let mut copy = alloc::vec![0u8; self.ring_pages * PAGE_SIZE];
        // SAFETY: the ring's pages, into a local copy.
        unsafe { core::ptr::copy(self.ring, copy.as_mut_ptr(), copy.len()) };
        copy.iter().all(|&b| b == byte)
    }

    /// Serves every published request, answering a batch in reverse order
    /// (blkback may complete out of order).
    pub fn serve(&mut self) {
        let mut batch = Vec::new();
        while let Some(req) = self.take() {
            batch.push(self.execute(&req));
        }
        for rsp in batch.into_iter().rev() {
            self.respond(rsp);
        }
        self.publish();
        // As blkback going idle (`RING_FINAL_CHECK_FOR_REQUESTS`): notify us
        // of the next request.
        self.index(1).store(self.req_cons.wrapping_add(1), Ordering::SeqCst);
    }
}

impl Signal for Peer {
    fn notify(&mut self, _: Port) {
        self.notifications += 1;
    }

    fn wait(&mut self, _: Port, _: Duration) -> bool {
        self.serve();
        true
    }
}

/// A backend whose every answer is `script`'s: it gets the peer each time
/// the frontend waits, and returns false to make the wait time out.
pub struct Scripted<F: FnMut(&mut Peer) -> bool>(pub Peer, pub F);

impl<F: FnMut(&mut Peer) -> bool> Signal for Scripted<F> {
    fn notify(&mut self, _: Port) {}

    fn wait(&mut self, _: Port, _: Duration) -> bool {
        (self.1)(&mut self.0)
    }
}
