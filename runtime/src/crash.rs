//! Crash reports: panics and CPU exceptions print what happened and a
//! backtrace of return addresses, wait for the console to drain, and crash
//! the domain (xl reports `crash` and applies `on_crash`).

use crate::console::{flush, print_fatal};
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};
use mote_arch::cpu;
use mote_arch::exception::Report;
use mote_arch::paging;
use mote_xen::sched::{shutdown, ShutdownReason};

/// Frames printed at most.
const MAX_FRAMES: usize = 32;

static CRASHING: AtomicBool = AtomicBool::new(false);

/// Guards against a crash inside the crash path: the second one goes
/// straight to the hypervisor.
fn enter() {
    if CRASHING.swap(true, Ordering::SeqCst) {
        print_fatal(format_args!("mote: crashed while reporting a crash\n"));
        shutdown(ShutdownReason::Crash);
    }
}

/// Prints `first` (a return address not in the frame-pointer chain), then
/// the chain's from `rbp`.
fn print_backtrace(first: Option<u64>, rbp: u64) {
    print_fatal(format_args!("backtrace:\n"));
    let mut n = 0;
    if let Some(ret) = first {
        print_fatal(format_args!("  #{n:<2} {ret:#018x}\n"));
        n += 1;
    }
    cpu::backtrace(rbp, MAX_FRAMES, |ret| {
        print_fatal(format_args!("  #{n:<2} {ret:#018x}\n"));
        n += 1;
    });
}

fn finish() -> ! {
    // An allocation that failed panics ("memory allocation of N bytes failed"): the heap's
    // state says whether the guest needs more memory.
    let heap = crate::heap::usage();
    match crate::start::heap_bytes() {
        Some(size) => print_fatal(format_args!(
            "heap: {} of {size} bytes in use, at most {}\n",
            heap.in_use, heap.high_water
        )),
        None => {
            print_fatal(format_args!("heap: {} bytes in use, at most {}\n", heap.in_use, heap.high_water))
        }
    }
    crate::logger::print_recent(print_fatal);
    flush();
    shutdown(ShutdownReason::Crash)
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    enter();
    match info.location() {
        Some(l) => print_fatal(format_args!(
            "PANIC at {}:{}:{}: {}\n",
            l.file(),
            l.line(),
            l.column(),
            info.message()
        )),
        None => print_fatal(format_args!("PANIC: {}\n", info.message())),
    }
    // Under a debugger, stop where the panic happened first.
    crate::gdb::stop_on_panic();
    print_backtrace(None, cpu::frame_pointer());
    finish()
}

/// For a fetch from a page that may not be run (a call into data), the
/// return address the call left on the stack: the frame-pointer chain starts
/// at the caller's caller, and the faulting address names no function.
fn jumped_from(report: &Report<'_>) -> Option<u64> {
    let frame = report.frame;
    let fetch = frame.vector == 14 && frame.error_code & 0x10 != 0 && frame.rip == report.cr2;
    let rsp = frame.rsp;
    if !fetch || !rsp.is_multiple_of(8) || paging::access(rsp).is_none() {
        return None;
    }
    // SAFETY: aligned and mapped (just checked): reading a word cannot fault.
    Some(unsafe { (rsp as *const u64).read_volatile() })
}

/// Installed as the CPU exception handler.
pub(crate) fn exception(report: &Report<'_>) -> ! {
    enter();
    print_fatal(format_args!("{report}"));
    // The faulting instruction first, then its callers.
    print_fatal(format_args!("  at {:#018x}\n", report.frame.rip));
    print_backtrace(jumped_from(report), report.frame.rbp);
    finish()
}
