//! Grant tables, version 1 (`grant_table.h`): how this domain lets a backend
//! map one of its pages.
//!
//! The table is an array of entries shared with Xen. We write an entry's
//! domid and frame, then its flags; Xen sets `GTF_reading`/`GTF_writing` in
//! the flags while the backend has the page mapped. Ending access clears the
//! flags with a compare-and-swap that fails if Xen set either bit first, so a
//! page (and its reference) is never reused while the backend can still
//! touch it.

mod refs;
mod setup;

use crate::types::{DomId, Gfn, PAGE_SIZE};
use core::fmt;
use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use refs::RefAllocator;

pub use setup::{query_size, InitError, Size};

/// `GNTTAB_NR_RESERVED_ENTRIES`: entries the toolstack may fill (console,
/// xenstore); never handed out.
pub const RESERVED_ENTRIES: u32 = 8;

const GTF_PERMIT_ACCESS: u16 = 1 << 0;
const GTF_READONLY: u16 = 1 << 2;
const GTF_READING: u16 = 1 << 3;
const GTF_WRITING: u16 = 1 << 4;

/// A grant reference: an index into the grant table, passed to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GrantRef(pub u32);

impl fmt::Display for GrantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "grant reference {}", self.0)
    }
}

/// What the other domain may do with a granted page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// Why a grant could not be made or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// Every reference is in use.
    Exhausted,
    /// The frame does not fit a v1 entry's 32-bit frame field.
    FrameTooHigh(Gfn),
    /// The backend still has the page mapped; the reference stays granted.
    /// End access again once the backend has unmapped it.
    InUse(GrantRef),
    /// The reference is not granted: already ended, or never handed out.
    NotGranted(GrantRef),
    /// One of the references reserved for the toolstack.
    Reserved(GrantRef),
    /// Beyond the end of the table.
    OutOfRange(GrantRef),
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantError::Exhausted => f.write_str("no free grant reference"),
            GrantError::FrameTooHigh(gfn) => {
                write!(f, "frame {:#x} is too high for a v1 grant entry", gfn.0)
            }
            GrantError::InUse(r) => write!(f, "{r} is still mapped by the backend"),
            GrantError::NotGranted(r) => write!(f, "{r} is not granted"),
            GrantError::Reserved(r) => write!(f, "{r} is reserved for the toolstack"),
            GrantError::OutOfRange(r) => write!(f, "{r} is beyond the grant table"),
        }
    }
}

/// `struct grant_entry_v1`. Xen writes `flags` concurrently, so every field
/// is accessed atomically.
#[repr(C)]
struct Entry {
    flags: AtomicU16,
    domid: AtomicU16,
    frame: AtomicU32,
}

const _: () = assert!(size_of::<Entry>() == 8);

/// Entries in one frame of the table.
const ENTRIES_PER_FRAME: usize = PAGE_SIZE / size_of::<Entry>();

/// The grant table: the shared entries and which references are taken.
pub struct GrantTable<'a> {
    entries: &'a [Entry],
    refs: RefAllocator,
}

impl<'a> GrantTable<'a> {
    /// Manages `entries`, which must be unused beyond the reserved ones.
    fn new(entries: &'a [Entry]) -> Self {
        let capacity = u32::try_from(entries.len()).unwrap_or(u32::MAX);
        GrantTable { entries, refs: RefAllocator::new(capacity) }
    }

    /// Number of frames the table spans.
    pub fn frames(&self) -> usize {
        self.entries.len() / ENTRIES_PER_FRAME
    }

    /// Lets domain `domid` map frame `gfn` with `access`; returns the
    /// reference to pass to it.
    pub fn grant_access(&mut self, domid: DomId, gfn: Gfn, access: Access) -> Result<GrantRef, GrantError> {
        let frame = u32::try_from(gfn.0).map_err(|_| GrantError::FrameTooHigh(gfn))?;
        let r = self.refs.alloc().ok_or(GrantError::Exhausted)?;
        let entry = &self.entries[r.0 as usize];
        entry.domid.store(domid.0, Ordering::Relaxed);
        entry.frame.store(frame, Ordering::Relaxed);
        let flags = match access {
            Access::ReadOnly => GTF_PERMIT_ACCESS | GTF_READONLY,
            Access::ReadWrite => GTF_PERMIT_ACCESS,
        };
        // Release: Xen must see domid and frame before the entry is valid.
        entry.flags.store(flags, Ordering::Release);
        Ok(r)
    }

    /// Revokes the grant behind `r` and frees the reference, unless the
    /// backend still has the page mapped ([`GrantError::InUse`]): then the
    /// grant stays in place and the page must not be reused yet.
    pub fn end_access(&mut self, r: GrantRef) -> Result<(), GrantError> {
        self.refs.check_taken(r)?;
        let flags = &self.entries[r.0 as usize].flags;
        let mut current = flags.load(Ordering::Acquire);
        loop {
            if current & (GTF_READING | GTF_WRITING) != 0 {
                return Err(GrantError::InUse(r));
            }
            // Xen sets the mapping bits with its own compare-and-swap, so
            // either it maps before this succeeds (and we retry and see the
            // bits) or it finds the entry invalid. Acquire: the caller's
            // reuse of the page comes after the revocation.
            match flags.compare_exchange(current, 0, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        self.refs.free(r)
    }
}

/// `n` zeroed, page-aligned pages from the heap, to share with a backend
/// (rings, buffers); `None` when memory runs out. They go back to the heap
/// only through [`free_shared_pages`], once every grant of them has ended: a
/// page must not be reused while a backend may still map it.
pub fn alloc_shared_pages(n: usize) -> Option<alloc::vec::Vec<*mut u8>> {
    if n == 0 {
        return Some(alloc::vec::Vec::new());
    }
    let layout = core::alloc::Layout::from_size_align(PAGE_SIZE * n, PAGE_SIZE).ok()?;
    // SAFETY: the layout has a non-zero size.
    let base = unsafe { alloc::alloc::alloc_zeroed(layout) };
    if base.is_null() {
        return None;
    }
    // SAFETY: every offset stays inside the allocation just made.
    Some((0..n).map(|i| unsafe { base.add(i * PAGE_SIZE) }).collect())
}

/// Gives back pages from [`alloc_shared_pages`] (zeroed first, so nothing
/// shared lingers in the heap).
///
/// # Safety
/// `pages` must be exactly what one call of [`alloc_shared_pages`] returned,
/// no grant of them may be in place, and nothing may use them afterwards.
pub unsafe fn free_shared_pages(pages: alloc::vec::Vec<*mut u8>) {
    let Some(&base) = pages.first() else { return };
    let layout = core::alloc::Layout::from_size_align(PAGE_SIZE * pages.len(), PAGE_SIZE)
        .expect("alloc_shared_pages made this layout");
    // SAFETY: by the caller's contract the block is ours, unshared, and was
    // allocated with this layout.
    unsafe {
        core::ptr::write_bytes(base, 0, layout.size());
        alloc::alloc::dealloc(base, layout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKEND: DomId = DomId(0);

    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|_| Entry { flags: AtomicU16::new(0), domid: AtomicU16::new(0), frame: AtomicU32::new(0) })
            .collect()
    }

    fn read(entries: &[Entry], r: GrantRef) -> (u16, u16, u32) {
        let e = &entries[r.0 as usize];
        (e.flags.load(Ordering::Relaxed), e.domid.load(Ordering::Relaxed), e.frame.load(Ordering::Relaxed))
    }

    #[test]
    fn grants_fill_the_entry() {
        let shared = entries(16);
        let mut table = GrantTable::new(&shared);
        let rw = table.grant_access(DomId(3), Gfn(0x1234), Access::ReadWrite).unwrap();
        let ro = table.grant_access(BACKEND, Gfn(0x99), Access::ReadOnly).unwrap();
        assert_eq!(read(&shared, rw), (GTF_PERMIT_ACCESS, 3, 0x1234));
        assert_eq!(read(&shared, ro), (GTF_PERMIT_ACCESS | GTF_READONLY, 0, 0x99));
        assert!(rw.0 >= RESERVED_ENTRIES && ro.0 >= RESERVED_ENTRIES && rw != ro);
    }

    #[test]
    fn ending_access_clears_the_entry_and_frees_the_ref() {
        let shared = entries(RESERVED_ENTRIES as usize + 1);
        let mut table = GrantTable::new(&shared);
        let r = table.grant_access(BACKEND, Gfn(7), Access::ReadWrite).unwrap();
        assert_eq!(table.grant_access(BACKEND, Gfn(8), Access::ReadWrite), Err(GrantError::Exhausted));
        table.end_access(r).unwrap();
        assert_eq!(read(&shared, r).0, 0);
        assert_eq!(table.grant_access(BACKEND, Gfn(8), Access::ReadOnly), Ok(r));
    }

    #[test]
    fn a_mapped_grant_is_not_ended_and_its_ref_not_reused() {
        for (access, mapped) in [(Access::ReadOnly, GTF_READING), (Access::ReadWrite, GTF_WRITING)] {
            let shared = entries(RESERVED_ENTRIES as usize + 1);
            let mut table = GrantTable::new(&shared);
            let r = table.grant_access(BACKEND, Gfn(7), access).unwrap();
            let flags = &shared[r.0 as usize].flags;
            // The backend maps the page: Xen sets the bit.
            flags.fetch_or(mapped, Ordering::Relaxed);
            assert_eq!(table.end_access(r), Err(GrantError::InUse(r)));
            let (kept, domid, frame) = read(&shared, r);
            assert_eq!((kept & GTF_PERMIT_ACCESS, domid, frame), (GTF_PERMIT_ACCESS, 0, 7));
            assert_eq!(table.grant_access(BACKEND, Gfn(8), access), Err(GrantError::Exhausted));
            // The backend unmaps: now the grant can end.
            flags.fetch_and(!mapped, Ordering::Relaxed);
            assert_eq!(table.end_access(r), Ok(()));
            assert_eq!(flags.load(Ordering::Relaxed), 0);
        }
    }

    #[test]
    fn ending_what_is_not_ours_is_an_error_and_leaves_entries_alone() {
        let shared = entries(16);
        let mut table = GrantTable::new(&shared);
        // Entry 1 is the toolstack's xenstore grant.
        shared[1].flags.store(GTF_PERMIT_ACCESS, Ordering::Relaxed);
        assert_eq!(table.end_access(GrantRef(1)), Err(GrantError::Reserved(GrantRef(1))));
        assert_eq!(shared[1].flags.load(Ordering::Relaxed), GTF_PERMIT_ACCESS);
        assert_eq!(table.end_access(GrantRef(16)), Err(GrantError::OutOfRange(GrantRef(16))));
        assert_eq!(table.end_access(GrantRef(9)), Err(GrantError::NotGranted(GrantRef(9))));
        let r = table.grant_access(BACKEND, Gfn(1), Access::ReadWrite).unwrap();
        table.end_access(r).unwrap();
        assert_eq!(table.end_access(r), Err(GrantError::NotGranted(r)));
    }

    #[test]
    fn frames_beyond_32_bits_are_refused_without_using_a_ref() {
        let shared = entries(RESERVED_ENTRIES as usize + 1);
        let mut table = GrantTable::new(&shared);
        let gfn = Gfn(1 << 32);
        assert_eq!(table.grant_access(BACKEND, gfn, Access::ReadWrite), Err(GrantError::FrameTooHigh(gfn)));
        assert!(table.grant_access(BACKEND, Gfn(u32::MAX.into()), Access::ReadWrite).is_ok());
    }

    #[test]
    fn frames_counts_whole_pages_of_entries() {
        let shared = entries(2 * ENTRIES_PER_FRAME);
        assert_eq!(ENTRIES_PER_FRAME, 512);
        assert_eq!(GrantTable::new(&shared).frames(), 2);
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            GrantError::InUse(GrantRef(12)).to_string(),
            "grant reference 12 is still mapped by the backend"
        );
        assert_eq!(
            GrantError::FrameTooHigh(Gfn(1 << 32)).to_string(),
            "frame 0x100000000 is too high for a v1 grant entry"
        );
        assert_eq!(GrantError::Exhausted.to_string(), "no free grant reference");
    }
}
