//! The heap: every free span of RAM after the image, managed by `talc`.

use crate::memory::MemoryMap;
use talc::source::Manual;
use talc::TalcLock;

#[global_allocator]
static ALLOCATOR: TalcLock<spin::Mutex<()>, Manual> = TalcLock::new(Manual);

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
    (bytes, spans)
}
