//! Memory protection at boot, and the line that reports what protects this
//! boot.
//!
//! [`protect`] replaces the boot code's writable, executable identity map
//! with page tables made from the image's sections and the memory map (see
//! `mote_arch::paging`): W^X, guard pages below the stacks, page 0 and
//! everything the guest does not use unmapped.

use crate::memory::{Kind, MemoryMap};
use mote_arch::paging::{self, Access, Layout, MapError, MAPPED_LIMIT};
use mote_xen::hvm::{self, Param};

/// What the page tables are made of: the memory map's RAM, the heap's spans
/// in it (named for fault reports), the image, and the pages Xen shares with
/// us on purpose; page 0 last, so that nothing maps it.
fn layout(memory: &MemoryMap, image_end: u64) -> Result<Layout, MapError> {
    let mut layout = Layout::default();
    for r in memory.regions().iter().filter(|r| r.kind == Kind::Ram) {
        // Only whole pages of RAM: a page that is partly something else is not ours.
        let start = r.start.checked_next_multiple_of(paging::PAGE_SIZE).unwrap_or(u64::MAX);
        let end = r.end().min(MAPPED_LIMIT) & !(paging::PAGE_SIZE - 1);
        if start < end {
            layout.push(start, end, Some(Access::ReadWrite), "RAM")?;
        }
    }
    // The same spans `heap::init` claims.
    for (start, end) in memory.free_spans(image_end, MAPPED_LIMIT) {
        layout.push(start, end, Some(Access::ReadWrite), "the heap")?;
    }
    mote_arch::boot::push_image(&mut layout)?;
    // Xen fills it when asked (through its MSR); the guest only runs it.
    let hypercall = mote_xen::hypercall::page_addr();
    layout.push(hypercall, hypercall + paging::PAGE_SIZE, Some(Access::ReadExecute), "the hypercall page")?;
    // The console and xenstore rings lie in the reserved area below 4 GiB.
    // Shared info and grant frames replace pages of .bss and the heap: mapped already.
    for (pfn, port, name) in [
        (Param::ConsolePfn, Param::ConsoleEvtchn, "the console ring"),
        (Param::StorePfn, Param::StoreEvtchn, "the xenstore ring"),
    ] {
        if let Ok(page) = hvm::ring_page(pfn, port) {
            let addr = page.addr as u64;
            layout.push(addr, addr + paging::PAGE_SIZE, Some(Access::ReadWrite), name)?;
        }
    }
    layout.push(0, paging::PAGE_SIZE, None, "page 0")?;
    Ok(layout)
}

/// Switches to page tables that enforce W^X and guard pages; returns how
/// many page-table pages they take. Call once, after copying what Xen handed
/// over (its pages need not be mapped afterwards) and before the heap.
pub(crate) fn protect(memory: &MemoryMap, image_end: u64) -> Result<usize, MapError> {
    paging::install(layout(memory, image_end)?)
}

/// Logs, once per boot at info level, what protects this boot: operators
/// and tests read it. Later protections add their part here.
pub(crate) fn report() {
    log::info!("security: W^X on, guard pages on, KASLR off, entropy from {}", crate::random::source());
}
