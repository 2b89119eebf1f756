//! The domain's grant table, set up at boot and shared by apps and drivers
//! ([`with`]), and the pages they grant ([`Page`]).
//!
//! ```ignore
//! let page = mote::grants::Page::alloc();
//! let r = mote::grants::with(|gt| gt.grant_access(DomId(0), page.gfn(), Access::ReadWrite));
//! ```

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU8, Ordering};
use mote_xen::gnttab::InitError;
use mote_xen::types::PAGE_SIZE;
use spin::Mutex;

pub use mote_xen::gnttab::{Access, GrantError, GrantRef, GrantTable};
pub use mote_xen::{DomId, Gfn};

/// Frames mapped at boot: 2048 references, enough for a few rings and their
/// buffers.
const FRAMES: u32 = 4;

static TABLE: Mutex<Option<GrantTable<'static>>> = Mutex::new(None);

/// Maps the grant table; returns how many frames it spans. Needs the heap.
pub(crate) fn init() -> Result<usize, InitError> {
    let table = GrantTable::init(FRAMES)?;
    let frames = table.frames();
    *TABLE.lock() = Some(table);
    Ok(frames)
}

/// Runs `f` with the grant table; `None` when it could not be set up at
/// boot. Calls from inside `f` to `with` would deadlock.
pub fn with<R>(f: impl FnOnce(&mut GrantTable<'static>) -> R) -> Option<R> {
    TABLE.lock().as_mut().map(f)
}

/// One frame of RAM to share with another domain. Its bytes are atomics, as
/// the other domain may change them at any time.
///
/// Pages are never freed: one granted page back in the heap would let the
/// other domain write into whatever is allocated there. Reuse a page for a
/// new grant once [`GrantTable::end_access`] on the old one succeeded.
#[repr(C, align(4096))]
pub struct Page([AtomicU8; PAGE_SIZE]);

impl Page {
    /// A zeroed page from the heap, kept for the life of the domain.
    pub fn alloc() -> &'static Page {
        Box::leak(Box::new(Page([const { AtomicU8::new(0) }; PAGE_SIZE])))
    }

    /// The frame to grant.
    pub fn gfn(&self) -> Gfn {
        // All RAM is identity-mapped: the page's address is its
        // guest-physical address.
        Gfn::containing(self as *const Page as u64)
    }

    /// Copies `bytes` into the page at `offset`. Panics if they do not fit.
    pub fn write(&self, offset: usize, bytes: &[u8]) {
        for (cell, &b) in self.0[offset..offset + bytes.len()].iter().zip(bytes) {
            cell.store(b, Ordering::Relaxed);
        }
    }

    /// Fills `buf` from the page at `offset`. Panics if it reaches beyond it.
    pub fn read(&self, offset: usize, buf: &mut [u8]) {
        let cells = &self.0[offset..offset + buf.len()];
        for (b, cell) in buf.iter_mut().zip(cells) {
            *b = cell.load(Ordering::Relaxed);
        }
    }
}
