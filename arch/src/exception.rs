//! CPU exception reports.
//!
//! Every CPU exception is fatal for a mote unless a debugger takes it:
//! `dispatch` first offers the saved state to the [`DebugHandler`], if one
//! is installed (the gdb stub: breakpoints, single steps, and stopping on a
//! crash), then hands it to the [`FatalHandler`] the kernel installed (which
//! prints the report on the console and crashes the domain), or, before one
//! is installed, prints it on the debug port and halts.

use crate::paging;
use core::fmt;
use spin::Once;
use x86_64::registers::control::Cr2;

/// The state the entry stubs save, lowest address first: the general
/// registers (pushed last), the vector and error code (pushed by the stub;
/// zero when the CPU gives none), then the CPU's interrupt frame.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct ExceptionFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Name and mnemonic of an exception vector (Intel SDM vol. 3, table 6-1).
pub fn name(vector: u64) -> (&'static str, &'static str) {
    match vector {
        0 => ("divide error", "#DE"),
        1 => ("debug", "#DB"),
        2 => ("non-maskable interrupt", "NMI"),
        3 => ("breakpoint", "#BP"),
        4 => ("overflow", "#OF"),
        5 => ("bound range exceeded", "#BR"),
        6 => ("invalid opcode", "#UD"),
        7 => ("device not available", "#NM"),
        8 => ("double fault", "#DF"),
        9 => ("coprocessor segment overrun", "#MF"),
        10 => ("invalid TSS", "#TS"),
        11 => ("segment not present", "#NP"),
        12 => ("stack-segment fault", "#SS"),
        13 => ("general protection fault", "#GP"),
        14 => ("page fault", "#PF"),
        16 => ("x87 floating-point error", "#MF"),
        17 => ("alignment check", "#AC"),
        18 => ("machine check", "#MC"),
        19 => ("SIMD floating-point exception", "#XM"),
        20 => ("virtualization exception", "#VE"),
        21 => ("control protection", "#CP"),
        28 => ("hypervisor injection", "#HV"),
        29 => ("VMM communication", "#VC"),
        30 => ("security exception", "#SX"),
        _ => ("reserved exception", "#??"),
    }
}

/// The report printed for an exception: what happened, where, and every
/// register, plus CR2 (the faulting address for page faults).
pub struct Report<'a> {
    pub frame: &'a ExceptionFrame,
    pub cr2: u64,
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.frame;
        let (name, mnemonic) = name(r.vector);
        writeln!(f, "EXCEPTION: {name} ({mnemonic}, vector {}), error code {:#x}", r.vector, r.error_code)?;
        if r.vector == 14 {
            writeln!(f, "  page fault: {}", PageFaultCause(r.error_code))?;
        }
        if let Some(violation) = Violation::of(r.vector, r.error_code, self.cr2) {
            writeln!(f, "  violation: {violation}")?;
        }
        writeln!(f, "  RIP={:#018x} CS={:#06x} RFLAGS={:#018x}", r.rip, r.cs, r.rflags)?;
        writeln!(f, "  RSP={:#018x} SS={:#06x} CR2={:#018x}", r.rsp, r.ss, self.cr2)?;
        let rows = [
            [("RAX", r.rax), ("RBX", r.rbx), ("RCX", r.rcx)],
            [("RDX", r.rdx), ("RSI", r.rsi), ("RDI", r.rdi)],
            [("RBP", r.rbp), ("R8 ", r.r8), ("R9 ", r.r9)],
            [("R10", r.r10), ("R11", r.r11), ("R12", r.r12)],
            [("R13", r.r13), ("R14", r.r14), ("R15", r.r15)],
        ];
        for row in rows {
            writeln!(
                f,
                "  {}={:#018x} {}={:#018x} {}={:#018x}",
                row[0].0, row[0].1, row[1].0, row[1].1, row[2].0, row[2].1
            )?;
        }
        Ok(())
    }
}

/// Decodes a page-fault error code (Intel SDM vol. 3, 4.7).
struct PageFaultCause(u64);

impl fmt::Display for PageFaultCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        let what = if e & 1 != 0 { "protection violation" } else { "page not present" };
        let access = if e & 0x10 != 0 {
            "instruction fetch"
        } else if e & 2 != 0 {
            "write"
        } else {
            "read"
        };
        let mode = if e & 4 != 0 { "user" } else { "kernel" };
        write!(f, "{what} on {mode} {access}")?;
        if e & 8 != 0 {
            write!(f, ", reserved bit set")?;
        }
        Ok(())
    }
}

/// Which protection a page fault (or a double fault it caused) ran into,
/// named from the page tables' layout.
enum Violation {
    Null(u64),
    Guard(&'static str, bool),
    ReadOnly(&'static str),
    NotExecutable(&'static str),
}

impl Violation {
    fn of(vector: u64, error_code: u64, cr2: u64) -> Option<Violation> {
        let span = paging::span_at(cr2);
        let guard = span.filter(|s| s.access.is_none() && s.name.ends_with("guard page")).map(|s| s.name);
        match vector {
            // A push onto a guard page cannot deliver its own page fault: the
            // CPU raises a double fault, which runs on the IST stack.
            8 => guard.map(|name| Violation::Guard(name, true)),
            14 => {
                let present = error_code & 1 != 0;
                if !present && cr2 < paging::PAGE_SIZE {
                    Some(Violation::Null(cr2))
                } else if let Some(name) = guard {
                    Some(Violation::Guard(name, false))
                } else if present && error_code & 0x10 != 0 {
                    Some(Violation::NotExecutable(span?.name))
                } else if present && error_code & 2 != 0 {
                    Some(Violation::ReadOnly(span?.name))
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Null(addr) => write!(f, "null pointer dereference (address {addr:#x}, in page 0)"),
            Violation::Guard(name, double) => {
                write!(f, "{name} hit: stack overflow")?;
                if *double {
                    f.write_str(" (the page fault could not be pushed on the full stack)")?;
                }
                Ok(())
            }
            Violation::ReadOnly(name) => write!(f, "write to read-only memory ({name})"),
            Violation::NotExecutable(name) => write!(f, "execution of non-executable memory ({name})"),
        }
    }
}

/// What the kernel does with a CPU exception; it must not return.
pub type FatalHandler = fn(&Report<'_>) -> !;

static FATAL_HANDLER: Once<FatalHandler> = Once::new();

/// Installs the handler for fatal exceptions (first call wins).
pub fn set_fatal_handler(handler: FatalHandler) {
    FATAL_HANDLER.call_once(|| handler);
}

/// A debugger's look at an exception: returns `true` when it handled it,
/// and the interrupted code resumes with the frame as the handler left it.
pub type DebugHandler = fn(&mut ExceptionFrame) -> bool;

static DEBUG_HANDLER: Once<DebugHandler> = Once::new();

/// Installs the debugger's exception handler (first call wins).
pub fn set_debug_handler(handler: DebugHandler) {
    DEBUG_HANDLER.call_once(|| handler);
}

/// `RFLAGS.TF`: a debug exception after the next instruction (single step).
pub const RFLAGS_TF: u64 = 1 << 8;

/// Breakpoint (`#BP`, from `int3`) and debug (`#DB`) exception vectors.
pub const VECTOR_DEBUG: u64 = 1;
pub const VECTOR_BREAKPOINT: u64 = 3;

pub(crate) fn dispatch(frame: &mut ExceptionFrame) {
    if DEBUG_HANDLER.get().is_some_and(|handler| handler(frame)) {
        return;
    }
    let report = Report { frame, cr2: Cr2::read_raw() };
    match FATAL_HANDLER.get() {
        Some(handler) => handler(&report),
        None => {
            use core::fmt::Write;
            let _ = write!(crate::debugcon::DebugCon, "{report}");
            crate::cpu::halt_forever()
        }
    }
}
