//! The long-mode GDT and TSS.
//!
//! The boot code's GDT only gets us into long mode; this one adds a TSS so
//! that double faults and NMIs run on their own stack (IST 1) and can still
//! report when the kernel stack has overflowed.

use crate::paging::{Access, Layout, MapError, PAGE_SIZE};
use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slot (1-based in the IDT, 0-based in the TSS) for fatal exceptions.
pub const FATAL_IST: u16 = 1;

const FATAL_STACK_SIZE: usize = 16 * 1024;

/// A stack above a page of its own that is never mapped (see
/// [`push_stacks`]), so that an overflow faults instead of writing over
/// whatever lies below.
#[repr(C, align(4096))]
struct GuardedStack {
    guard: [u8; PAGE_SIZE as usize],
    stack: [u8; FATAL_STACK_SIZE],
}

static mut FATAL_STACK: GuardedStack =
    GuardedStack { guard: [0; PAGE_SIZE as usize], stack: [0; FATAL_STACK_SIZE] };

/// Names the IST stack and unmaps its guard page in `layout`.
pub(crate) fn push_stacks(layout: &mut Layout) -> Result<(), MapError> {
    let guard = core::ptr::addr_of!(FATAL_STACK) as u64;
    let stack = guard + PAGE_SIZE;
    layout.push(stack, stack + FATAL_STACK_SIZE as u64, Some(Access::ReadWrite), "the exception stack")?;
    layout.push(guard, stack, None, "the exception stack's guard page")
}

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(GlobalDescriptorTable, SegmentSelector, SegmentSelector, SegmentSelector)> = Once::new();

pub(crate) fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        // The image lies in the identity-mapped low 4 GiB, so the address is canonical as it
        // is; `new_truncate` has no panic path (`VirtAddr::new`'s brings in Debug formatting).
        let top = core::ptr::addr_of!(FATAL_STACK) as u64 + size_of::<GuardedStack>() as u64;
        tss.interrupt_stack_table[usize::from(FATAL_IST - 1)] = VirtAddr::new_truncate(top);
        tss
    });
    let (gdt, code, data, tss_sel) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_sel = gdt.append(Descriptor::tss_segment(tss));
        (gdt, code, data, tss_sel)
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, which lives in a
    // static, and describe flat 64-bit code and data segments.
    unsafe {
        CS::set_reg(*code);
        DS::set_reg(*data);
        ES::set_reg(*data);
        SS::set_reg(*data);
        load_tss(*tss_sel);
    }
}
