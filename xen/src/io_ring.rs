//! The frontend side of a request/response ring (`io/ring.h`), the shape of
//! netif and blkif: one shared page holding four indices and an array of
//! entries, each slot holding a request or, later, the response to it.
//!
//! We produce requests and consume responses. The backend's indices are
//! read once per step and validated: a backend may not answer more requests
//! than we made, and an index that runs ahead is an error, never a reason to
//! read a slot. Entries are copied out of the shared page before anyone looks
//! at them.

use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::sync::atomic::{fence, AtomicU32, Ordering};

/// Size of the shared page.
pub const PAGE_SIZE: usize = 4096;
/// `struct __name##_sring` before the entries: 4 indices, `pvt`, `__pad[44]`.
const HEADER_SIZE: usize = 64;

/// A request or response type that may live in a ring slot.
///
/// # Safety
/// Every bit pattern must be a valid value (integers and arrays of them
/// only, `#[repr(C)]` as in the Xen header), since slots are written by the
/// other domain.
pub unsafe trait RingEntry: Copy {}

/// The ring header (`struct __name##_sring`).
#[repr(C)]
struct Header {
    req_prod: AtomicU32,
    req_event: AtomicU32,
    rsp_prod: AtomicU32,
    rsp_event: AtomicU32,
}

/// What the backend did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// `rsp_prod` claims responses to requests we never made.
    RunAhead { rsp_prod: u32, rsp_cons: u32, req_prod: u32 },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::RunAhead { rsp_prod, rsp_cons, req_prod } => write!(
                f,
                "backend's rsp_prod {rsp_prod:#x} runs ahead (consumed {rsp_cons:#x}, requested {req_prod:#x})"
            ),
        }
    }
}

/// The ring is full: every slot holds a request not yet answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Number of slots for entries of `Req`/`Rsp` in a one-page ring.
pub const fn ring_size<Req, Rsp>() -> u32 {
    ring_size_in::<Req, Rsp>(1)
}

/// Number of slots for entries of `Req`/`Rsp` in a ring of `pages`
/// contiguous pages: the largest power of two that fits after the header
/// (`__CONST_RING_SIZE` over `PAGE_SIZE * pages`).
pub const fn ring_size_in<Req, Rsp>(pages: usize) -> u32 {
    let entry = if size_of::<Req>() > size_of::<Rsp>() { size_of::<Req>() } else { size_of::<Rsp>() };
    let fit = (PAGE_SIZE * pages - HEADER_SIZE) / entry;
    let mut size = 1;
    while size * 2 <= fit {
        size *= 2;
    }
    size as u32
}

/// The frontend's view of one ring page.
pub struct FrontRing<'a, Req, Rsp> {
    header: &'a Header,
    entries: *mut u8,
    size: u32,
    /// Requests written, published or not.
    req_prod_pvt: u32,
    /// Requests published: all the backend can have seen.
    req_published: u32,
    /// Responses taken.
    rsp_cons: u32,
    _entries: PhantomData<(&'a mut [u8], Req, Rsp)>,
}

// SAFETY: the ring owns its view of the page; moving it to another context
// moves that exclusive view with it.
unsafe impl<Req: Send, Rsp: Send> Send for FrontRing<'_, Req, Rsp> {}

/// A front ring's indices at one moment ([`FrontRing::indices`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Indices {
    /// Requests we published, and the one the backend wants an event for.
    pub req_prod: u32,
    pub req_event: u32,
    /// Responses the backend published, those we took, and the one we want
    /// an event for.
    pub rsp_prod: u32,
    pub rsp_cons: u32,
    pub rsp_event: u32,
}

impl core::fmt::Display for Indices {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "requests published {} (event at {}), responses published {} taken {} (event at {})",
            self.req_prod, self.req_event, self.rsp_prod, self.rsp_cons, self.rsp_event
        )
    }
}

impl<'a, Req: RingEntry, Rsp: RingEntry> FrontRing<'a, Req, Rsp> {
    const ENTRY_SIZE: usize =
        if size_of::<Req>() > size_of::<Rsp>() { size_of::<Req>() } else { size_of::<Rsp>() };
    /// The stricter of the two entries' alignments, which every slot keeps:
    /// the header and the slot size are multiples of it (checked when a ring
    /// of these entries is built), so in-place volatile accesses are aligned.
    const ALIGN: usize = {
        let align = if align_of::<Req>() > align_of::<Rsp>() { align_of::<Req>() } else { align_of::<Rsp>() };
        assert!(
            Self::ENTRY_SIZE.is_multiple_of(align) && HEADER_SIZE.is_multiple_of(align),
            "ring slots would not keep the entries' alignment"
        );
        align
    };

    /// Initialises a fresh ring in `page` (`SHARED_RING_INIT` +
    /// `FRONT_RING_INIT`), before it is granted to the backend.
    ///
    /// Entries are read and written in place, aligned: a slot size that is
    /// not a multiple of both entries' alignment fails to compile. Twelve-byte
    /// requests with eight-byte-aligned responses would put every other
    /// response off its alignment:
    ///
    /// ```compile_fail,E0080
    /// # use mote_xen::io_ring::{FrontRing, RingEntry};
    /// #[derive(Clone, Copy)]
    /// #[repr(C)]
    /// struct Req([u32; 3]);
    /// #[derive(Clone, Copy)]
    /// #[repr(C)]
    /// struct Rsp(u64);
    /// // SAFETY: integers only.
    /// unsafe impl RingEntry for Req {}
    /// // SAFETY: integers only.
    /// unsafe impl RingEntry for Rsp {}
    /// #[repr(C, align(4096))]
    /// struct Page([u8; 4096]);
    /// let mut page = Box::new(Page([0; 4096]));
    /// // SAFETY: a fresh page, used only through the ring.
    /// let ring: FrontRing<Req, Rsp> = unsafe { FrontRing::init(page.0.as_mut_ptr()) };
    /// ```
    ///
    /// # Safety
    /// `page` must be valid for reads and writes of [`PAGE_SIZE`] bytes,
    /// aligned for the header and both entries (a page boundary is), and
    /// used only through this ring (and the backend) for as long as the ring
    /// lives.
    pub unsafe fn init(page: *mut u8) -> Self {
        // SAFETY: the caller's guarantee, for one page.
        unsafe { Self::init_pages(page, 1) }
    }

    /// [`FrontRing::init`] for a ring of `pages` contiguous pages (a
    /// multi-page ring, `ring-page-order` in blkif), `pages` a power of two.
    ///
    /// # Safety
    /// As for [`FrontRing::init`], for `pages * PAGE_SIZE` bytes.
    pub unsafe fn init_pages(page: *mut u8, pages: usize) -> Self {
        assert!(pages.is_power_of_two(), "a ring spans a power of two of pages");
        assert!(
            (page as usize).is_multiple_of(Self::ALIGN.max(align_of::<Header>())),
            "a ring page is aligned for its entries"
        );
        // SAFETY: the caller guarantees the pages; zeroing them before the
        // backend sees them is what SHARED_RING_INIT does.
        unsafe { core::ptr::write_bytes(page, 0, PAGE_SIZE * pages) };
        // SAFETY: the header is the page's first 16 bytes, aligned (checked
        // above), and only accessed atomically.
        let header = unsafe { &*(page as *const Header) };
        header.req_event.store(1, Ordering::Relaxed);
        header.rsp_event.store(1, Ordering::Relaxed);
        FrontRing {
            header,
            // SAFETY: within the page.
            entries: unsafe { page.add(HEADER_SIZE) },
            size: ring_size_in::<Req, Rsp>(pages),
            req_prod_pvt: 0,
            req_published: 0,
            rsp_cons: 0,
            _entries: PhantomData,
        }
    }

    /// Slots in the ring.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Requests that can be pushed before responses must be taken.
    pub fn free_requests(&self) -> u32 {
        self.size - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    fn slot(&self, index: u32) -> *mut u8 {
        let offset = (index & (self.size - 1)) as usize * Self::ENTRY_SIZE;
        // SAFETY: offset + entry size stays within the pages: size slots of
        // ENTRY_SIZE fit after the header by construction of `ring_size_in`.
        unsafe { self.entries.add(offset) }
    }

    /// The ring index the next pushed request takes (the slot its response, or whatever the
    /// protocol puts in that slot, comes back in).
    pub fn next_request_index(&self) -> u32 {
        self.req_prod_pvt
    }

    /// The ring index of the next response [`FrontRing::pop_response`] takes.
    pub fn next_response_index(&self) -> u32 {
        self.rsp_cons
    }

    /// Writes a request into the next slot; the backend sees it after
    /// [`FrontRing::publish`].
    pub fn push(&mut self, req: Req) -> Result<(), Full> {
        if self.free_requests() == 0 {
            return Err(Full);
        }
        // SAFETY: the slot is ours (between rsp_cons + size and
        // req_prod_pvt), and aligned for `Req` (`ALIGN`).
        unsafe { self.slot(self.req_prod_pvt).cast::<Req>().write_volatile(req) };
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// The indices as they stand, for the report of a backend that stopped
    /// answering: whether it answered unseen, or never answered.
    pub fn indices(&self) -> Indices {
        let h = self.header;
        Indices {
            req_prod: self.req_published,
            req_event: h.req_event.load(Ordering::SeqCst),
            rsp_prod: h.rsp_prod.load(Ordering::SeqCst),
            rsp_cons: self.rsp_cons,
            rsp_event: h.rsp_event.load(Ordering::SeqCst),
        }
    }

    /// Publishes pushed requests (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`);
    /// true when the backend asked to be notified of them.
    pub fn publish(&mut self) -> bool {
        // Our own copy: the shared index is the backend's to scribble on.
        let old = self.req_published;
        let new = self.req_prod_pvt;
        // Release: the backend sees the requests before the index.
        self.header.req_prod.store(new, Ordering::Release);
        self.req_published = new;
        // The backend's req_event must be read after our index is visible.
        fence(Ordering::SeqCst);
        let event = self.header.req_event.load(Ordering::Acquire);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// The backend's response index, validated: it may not pass the
    /// requests we published (those written since, it has not seen).
    fn rsp_prod(&self) -> Result<u32, RingError> {
        let rsp_prod = self.header.rsp_prod.load(Ordering::Acquire);
        let outstanding = self.req_published.wrapping_sub(self.rsp_cons);
        if rsp_prod.wrapping_sub(self.rsp_cons) > outstanding {
            return Err(RingError::RunAhead {
                rsp_prod,
                rsp_cons: self.rsp_cons,
                req_prod: self.req_published,
            });
        }
        Ok(rsp_prod)
    }

    /// Takes the next response, copied out of the page.
    pub fn pop_response(&mut self) -> Result<Option<Rsp>, RingError> {
        if self.rsp_prod()? == self.rsp_cons {
            return Ok(None);
        }
        // SAFETY: the backend published this slot (rsp_prod, read with
        // Acquire, is past it); it is aligned for `Rsp` (`ALIGN`), and
        // `Rsp: RingEntry` accepts any bytes.
        let rsp = unsafe { self.slot(self.rsp_cons).cast::<Rsp>().read_volatile() };
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(rsp))
    }

    /// Asks for an event on the next response and reports whether one is
    /// already there (`RING_FINAL_CHECK_FOR_RESPONSES`): call before
    /// sleeping, and sleep only on `false`.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.rsp_prod()? != self.rsp_cons {
            return Ok(true);
        }
        self.header.rsp_event.store(self.rsp_cons.wrapping_add(1), Ordering::SeqCst);
        fence(Ordering::SeqCst);
        Ok(self.rsp_prod()? != self.rsp_cons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(C)]
    struct Req {
        id: u16,
        pad: u16,
        gref: u32,
    }
    // SAFETY: integers only.
    unsafe impl RingEntry for Req {}

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(C)]
    struct Rsp {
        id: u16,
        status: i16,
    }
    // SAFETY: integers only.
    unsafe impl RingEntry for Rsp {}

    #[repr(C, align(4096))]
    struct Page([u8; PAGE_SIZE]);

    /// Plays the backend: answers every published request with its id.
    struct Backend<'a> {
        header: &'a Header,
        entries: *mut u8,
        req_cons: u32,
        rsp_prod: u32,
    }

    impl Backend<'_> {
        fn new(page: &mut Page) -> Backend<'_> {
            let base = page.0.as_mut_ptr();
            Backend {
                header: unsafe { &*(base as *const Header) },
                entries: unsafe { base.add(64) },
                req_cons: 0,
                rsp_prod: 0,
            }
        }

        fn answer_all(&mut self, size: u32) -> Vec<Req> {
            let req_prod = self.header.req_prod.load(Ordering::Acquire);
            let mut seen = Vec::new();
            while self.req_cons != req_prod {
                let slot = unsafe { self.entries.add((self.req_cons & (size - 1)) as usize * 8) };
                let req = unsafe { slot.cast::<Req>().read_unaligned() };
                unsafe { slot.cast::<Rsp>().write_unaligned(Rsp { id: req.id, status: 0 }) };
                seen.push(req);
                self.req_cons = self.req_cons.wrapping_add(1);
                self.rsp_prod = self.rsp_prod.wrapping_add(1);
            }
            self.header.rsp_prod.store(self.rsp_prod, Ordering::Release);
            seen
        }
    }

    #[test]
    fn sizes_follow_the_header_macro() {
        assert_eq!(ring_size::<Req, Rsp>(), 256); // netif rx-like: 8-byte slots
        assert_eq!(ring_size::<[u8; 12], [u8; 4]>(), 256); // netif tx: 12-byte slots
        assert_eq!(ring_size::<[u8; 112], [u8; 16]>(), 32); // blkif
        assert_eq!(ring_size_in::<[u8; 112], [u8; 16]>(2), 64); // blkif, ring-page-order 1
        assert_eq!(ring_size_in::<[u8; 112], [u8; 16]>(4), 128);
    }

    #[test]
    fn requests_go_out_and_responses_come_back_across_wraparound() {
        let mut page = Box::new(Page([0xAA; PAGE_SIZE]));
        let base = page.0.as_mut_ptr();
        let mut ring: FrontRing<Req, Rsp> = unsafe { FrontRing::init(base) };
        let mut backend = Backend::new(&mut page);
        let size = ring.size();
        let mut next = 0u16;
        for round in 0..5 {
            while ring.push(Req { id: next, pad: 0, gref: u32::from(next) }).is_ok() {
                next = next.wrapping_add(1);
            }
            assert_eq!(ring.free_requests(), 0);
            // The backend left req_event at 1: only the first publish asks for a notification.
            assert_eq!(ring.publish(), round == 0);
            let seen = backend.answer_all(size);
            assert_eq!(seen.len(), size as usize);
            let mut got = Vec::new();
            while let Some(rsp) = ring.pop_response().unwrap() {
                got.push(rsp.id);
            }
            assert_eq!(got, seen.iter().map(|r| r.id).collect::<Vec<_>>());
            assert!(!ring.final_check_for_responses().unwrap());
        }
    }

    #[test]
    fn run_ahead_backend_is_rejected() {
        let mut page = Box::new(Page([0; PAGE_SIZE]));
        let base = page.0.as_mut_ptr();
        let mut ring: FrontRing<Req, Rsp> = unsafe { FrontRing::init(base) };
        ring.push(Req { id: 1, pad: 0, gref: 7 }).unwrap();
        ring.publish();
        let header = unsafe { &*(base as *const Header) };
        // Two responses to one request.
        header.rsp_prod.store(2, Ordering::Release);
        assert_eq!(ring.pop_response(), Err(RingError::RunAhead { rsp_prod: 2, rsp_cons: 0, req_prod: 1 }));
        // Far ahead (a wrapped, garbage index) too.
        header.rsp_prod.store(0x8000_0000, Ordering::Release);
        assert!(ring.final_check_for_responses().is_err());
        // An answer to a request written but not yet published: the
        // backend cannot have seen it.
        ring.push(Req { id: 2, pad: 0, gref: 8 }).unwrap();
        header.rsp_prod.store(2, Ordering::Release);
        assert_eq!(ring.pop_response(), Err(RingError::RunAhead { rsp_prod: 2, rsp_cons: 0, req_prod: 1 }));
        ring.publish();
        assert!(ring.pop_response().unwrap().is_some());
    }

    #[test]
    fn publish_asks_for_a_notification_from_the_index_we_published() {
        let mut page = Box::new(Page([0; PAGE_SIZE]));
        let base = page.0.as_mut_ptr();
        let mut ring: FrontRing<Req, Rsp> = unsafe { FrontRing::init(base) };
        let header = unsafe { &*(base as *const Header) };
        ring.push(Req { id: 1, pad: 0, gref: 7 }).unwrap();
        assert!(ring.publish());
        // The backend wants an event for the second request, and scribbles
        // over the shared req_prod as if it had seen that one already.
        header.req_event.store(2, Ordering::SeqCst);
        header.req_prod.store(2, Ordering::SeqCst);
        ring.push(Req { id: 2, pad: 0, gref: 8 }).unwrap();
        assert!(ring.publish(), "request 2 crosses req_event: the backend must be told");
        assert_eq!(header.req_prod.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn final_check_sets_rsp_event() {
        let mut page = Box::new(Page([0; PAGE_SIZE]));
        let base = page.0.as_mut_ptr();
        let mut ring: FrontRing<Req, Rsp> = unsafe { FrontRing::init(base) };
        let header = unsafe { &*(base as *const Header) };
        assert!(!ring.final_check_for_responses().unwrap());
        assert_eq!(header.rsp_event.load(Ordering::SeqCst), 1);
    }
}
