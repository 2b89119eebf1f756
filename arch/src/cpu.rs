//! Small CPU helpers.

/// Stops this CPU for good: interrupts off, then `hlt` forever.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Enables interrupts (the kernel runs with them on once its handlers are in).
pub fn enable_interrupts() {
    x86_64::instructions::interrupts::enable();
}

/// Sleeps until the next interrupt, unless `ready()` already reports work.
///
/// `ready` runs with interrupts off, so an interrupt cannot slip in between
/// the check and the sleep unnoticed: `sti; hlt` keeps interrupts blocked for
/// one more instruction, so one that arrives after the check wakes the `hlt`.
/// Under Xen, `hlt` blocks the vCPU in the hypervisor (`SCHEDOP_block`) until
/// an event or timer is due: idle costs no CPU time.
pub fn idle_unless(ready: impl FnOnce() -> bool) {
    x86_64::instructions::interrupts::disable();
    if ready() {
        x86_64::instructions::interrupts::enable();
    } else {
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}

/// The frame-pointer chain starting at `rbp`: each frame holds the caller's
/// `rbp` at `[rbp]` and the return address at `[rbp + 8]`.
///
/// Images are built with `-C force-frame-pointers=yes`; the chain ends at the
/// zero `rbp` the boot code sets. Walking stops at a null, misaligned or
/// non-increasing frame pointer, so a corrupted stack ends the walk instead
/// of faulting, and after `max` frames.
pub fn backtrace(mut rbp: u64, max: usize, mut each: impl FnMut(u64)) {
    for _ in 0..max {
        let mapped = |addr: u64| crate::paging::access(addr).is_some() || !crate::paging::installed();
        if !rbp.is_multiple_of(8) || !(0x1000..1 << 32).contains(&rbp) || !mapped(rbp) || !mapped(rbp + 8) {
            return;
        }
        // SAFETY: rbp is non-null, aligned and both words are mapped (or,
        // before the page tables are installed, inside the identity-mapped
        // first 4 GiB), so reading them cannot fault; a bogus chain yields
        // bogus addresses, never memory unsafety.
        let (next, ret) = unsafe {
            let p = rbp as *const u64;
            (p.read_volatile(), p.add(1).read_volatile())
        };
        if ret == 0 {
            return;
        }
        each(ret);
        if next <= rbp {
            return;
        }
        rbp = next;
    }
}

/// Reads the current frame pointer.
#[inline(always)]
pub fn frame_pointer() -> u64 {
    let rbp: u64;
    // SAFETY: reads a register; no memory is touched.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
    rbp
}
