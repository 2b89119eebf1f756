//! The heap: every free span of RAM after the image, managed by `talc`,
//! with the bytes in use and their high-water mark counted, and published
//! in xenstore (`data/heap-used`, `data/heap-hwm`) so that a soak test can
//! watch a service's memory from dom0.
//!
//! Large allocations keep 32 KiB free: a service that fills its heap
//! with buffers sized to its clients (asked for with `try_reserve`) is
//! refused the next one, instead of aborting later on one of the small
//! allocations that have no way to fail (a task, its waker, a log line).

use crate::memory::MemoryMap;
use crate::time::Instant;
use crate::xenstore::Store;
use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use talc::source::Manual;
use talc::TalcLock;

static ALLOCATOR: TalcLock<spin::Mutex<()>, Manual> = TalcLock::new(Manual);

#[global_allocator]
static COUNTED: Counted = Counted;

/// Bytes allocated now, and the most ever allocated at once.
static IN_USE: AtomicUsize = AtomicUsize::new(0);
static HIGH_WATER: AtomicUsize = AtomicUsize::new(0);

/// Bytes given to the allocator at boot.
static CLAIMED: AtomicUsize = AtomicUsize::new(0);

/// Allocations of this size or more are large: buffers sized to the input.
const LARGE: usize = 4096;

/// What a large allocation must leave free for the small ones.
const RESERVE: usize = 32 * 1024;

/// Whether an allocation of `size` bytes, `more` of them not yet in use
/// (less than `size` when a realloc grows one), may be attempted: a small
/// one always, a large one only if [`RESERVE`] stays free after it.
fn may_take(size: usize, more: usize) -> bool {
    size < LARGE || IN_USE.load(Ordering::Relaxed) + more + RESERVE <= CLAIMED.load(Ordering::Relaxed)
}

/// `talc` with the counts kept on the way (talc's own counters have no
/// high-water mark).
struct Counted;

fn grew(bytes: usize) {
    let now = IN_USE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    HIGH_WATER.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call goes to talc unchanged, or fails (null) before
// reaching it; only counters are added.
unsafe impl GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !may_take(layout.size(), layout.size()) {
            return core::ptr::null_mut();
        }
        // SAFETY: the caller's contract is talc's.
        let ptr = unsafe { ALLOCATOR.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !may_take(layout.size(), layout.size()) {
            return core::ptr::null_mut();
        }
        // SAFETY: as above.
        let ptr = unsafe { ALLOCATOR.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { ALLOCATOR.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && !may_take(new_size, new_size - layout.size()) {
            return core::ptr::null_mut();
        }
        // SAFETY: as above.
        let new = unsafe { ALLOCATOR.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        new
    }
}

/// The heap's use in bytes: now, and the most at any time since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapUsage {
    /// Allocated now.
    pub in_use: usize,
    /// The most ever allocated at once: what sizing a guest's memory needs.
    pub high_water: usize,
}

/// The heap's size: the bytes given to the allocator at boot.
pub fn size() -> usize {
    CLAIMED.load(Ordering::Relaxed)
}

/// How much of the heap is in use, and its high-water mark.
pub fn usage() -> HeapUsage {
    HeapUsage { in_use: IN_USE.load(Ordering::Relaxed), high_water: HIGH_WATER.load(Ordering::Relaxed) }
}

/// How often the usage is written to xenstore, at most.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// When the usage was last written, and what.
static PUBLISHED: spin::Mutex<Option<(Instant, HeapUsage)>> = spin::Mutex::new(None);

/// When the usage was "last written" once writing it failed: never again.
const GAVE_UP: Instant = Instant::from_nanos(u64::MAX);

/// What [`publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Published {
    /// Nothing new to write.
    Nothing,
    /// It talked to xenstore: replies it read may have brought watch events
    /// along (taking the store's event with them), so the executor must look
    /// at its drivers again before it sleeps.
    Talked,
    /// The usage changed but is not written yet (written less than
    /// [`PUBLISH_EVERY`] ago, or the store was busy): call again by then, so
    /// that a guest going idle after a burst still publishes its peak.
    Due(Instant),
}

/// Writes the usage to `data/heap-used` and `data/heap-hwm` when it
/// changed, at most every [`PUBLISH_EVERY`]; called by the executor before
/// it idles.
pub(crate) fn publish(now: Instant) -> Published {
    let retry = Published::Due(now.saturating_add(PUBLISH_EVERY));
    let Some(mut published) = PUBLISHED.try_lock() else { return retry };
    let usage = usage();
    if let Some((at, last)) = *published {
        if last == usage || at == GAVE_UP {
            return Published::Nothing;
        }
        let due = at.saturating_add(PUBLISH_EVERY);
        if now < due {
            return Published::Due(due);
        }
    }
    let written = crate::xenstore::try_with(|xs| {
        xs.write("data/heap-used", alloc::format!("{}", usage.in_use).as_bytes())?;
        xs.write("data/heap-hwm", alloc::format!("{}", usage.high_water).as_bytes())
    });
    match written {
        Some(Ok(())) => *published = Some((now, usage)),
        Some(Err(e)) => {
            log::warn!("heap: writing data/heap-hwm: {e}; not trying again");
            *published = Some((GAVE_UP, usage));
        }
        None => return retry,
    }
    Published::Talked
}

/// Only the identity-mapped first 4 GiB can be handed out.
const MAPPED_LIMIT: u64 = 1 << 32;

/// Gives the allocator all free RAM above `used_end`; returns the bytes
/// claimed and the number of spans.
pub(crate) fn init(map: &MemoryMap, used_end: u64) -> (u64, usize) {
    let mut bytes = 0;
    let mut spans = 0;
    for (start, end) in map.free_spans(used_end, MAPPED_LIMIT) {
        let size = (end - start) as usize;
        // SAFETY: the span is RAM per Xen's memory map, lies above the image
        // and the copied boot data, is identity-mapped, and is given to the
        // allocator once and never used otherwise.
        if unsafe { ALLOCATOR.lock().claim(start as *mut u8, size) }.is_some() {
            bytes += end - start;
            spans += 1;
        }
    }
    CLAIMED.store(bytes as usize, Ordering::Relaxed);
    (bytes, spans)
}
