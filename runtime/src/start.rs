//! From the PVH entry to the app's `main`.

use crate::cmdline::{self, Cmdline};
use crate::memory::MemoryMap;
use core::fmt::Write;
use mote_arch::boot::{image_range, StartInfoReader};
use mote_arch::debugcon::DebugCon;
use mote_xen::console::Console;
use mote_xen::hypercall::Xen;
use mote_xen::sched::{shutdown, ShutdownReason};
use spin::Once;

/// What the runtime learned while booting.
#[derive(Debug)]
pub struct BootInfo {
    /// The hypervisor's version and CPUID base, as it reported them.
    pub xen: Xen,
    /// The command line, truncated to [`cmdline::MAX_LEN`] bytes.
    pub cmdline: heapless::String<{ cmdline::MAX_LEN }>,
    /// The memory map Xen handed over, which the heap was carved from.
    pub memory: MemoryMap,
    /// Physical `[start, end)` of the loaded image.
    pub image: (u64, u64),
    /// The boot stack's guard page (never mapped: an overflow faults there).
    pub stack_guard: u64,
    /// Bytes given to the heap, and in how many spans.
    pub heap_bytes: u64,
    /// How many separate spans of RAM those bytes came in.
    pub heap_spans: usize,
    /// When the runtime's first instruction ran (PV clock), for the boot time.
    pub first_instruction: crate::Instant,
}

static BOOT: Once<BootInfo> = Once::new();

/// What the runtime learned while booting.
pub fn boot_info() -> &'static BootInfo {
    BOOT.get().expect("boot info is set before main runs")
}

/// The heap's size in bytes, once known (for the crash path, which must not panic).
pub(crate) fn heap_bytes() -> Option<u64> {
    BOOT.get().map(|b| b.heap_bytes)
}

/// The parsed command line.
pub fn cmdline() -> Cmdline<'static> {
    Cmdline::new(&boot_info().cmdline)
}

extern "Rust" {
    /// Defined by `mote::main!`.
    fn __mote_app_main() -> bool;
}

/// Boot failures before the console exists: reported on port 0xE9.
fn early_fatal(args: core::fmt::Arguments<'_>) -> ! {
    let _ = writeln!(DebugCon, "mote: {args}");
    shutdown(ShutdownReason::Crash)
}

/// Called by the boot code in long mode with the `hvm_start_info` address.
#[no_mangle]
extern "C" fn mote_start(start_info_paddr: u32) -> ! {
    // Read before anything else; converted to PV clock time once the clock is up.
    // SAFETY: RDTSC only reads the time-stamp counter.
    let first_tsc = unsafe { core::arch::x86_64::_rdtsc() };
    mote_arch::init();
    mote_arch::exception::set_fatal_handler(crate::crash::exception);

    let xen = match mote_xen::hypercall::init() {
        Ok(xen) => xen,
        // Without Xen there is no shutdown either: report and stop the CPU.
        Err(e) => {
            let _ = writeln!(DebugCon, "mote: {e}");
            mote_arch::cpu::halt_forever()
        }
    };
    if let Err(e) = crate::events::init() {
        early_fatal(format_args!("event channels and clock: {e}"));
    }
    match Console::from_hvm_params(crate::events::now_ns) {
        Ok(console) => crate::console::install(console),
        Err(e) => {
            let _ = writeln!(DebugCon, "mote: no PV console ({e}); using port 0xE9");
        }
    }

    // Copy what Xen handed over before the heap may reuse its memory.
    // SAFETY: the boot code checked the magic at this address, and the
    // first 4 GiB are identity-mapped.
    let Some(start_info) = (unsafe { StartInfoReader::from_paddr_identity(start_info_paddr) }) else {
        early_fatal(format_args!("bad hvm_start_info at {start_info_paddr:#x}"))
    };
    let memory = MemoryMap::new(start_info.memmap().iter().map(|e| (e.addr, e.size, e.ty)));
    let mut line = heapless::String::new();
    let raw = start_info.cmdline().map(|c| c.to_bytes()).unwrap_or_default();
    let raw = core::str::from_utf8(raw).unwrap_or("");
    let truncated = raw.len() > cmdline::MAX_LEN;
    for c in raw.chars() {
        if line.push(c).is_err() {
            break;
        }
    }

    let image = image_range();
    let page_tables = match crate::security::protect(&memory, image.1) {
        Ok(tables) => tables,
        Err(e) => early_fatal(format_args!("page tables: {e}")),
    };
    let (heap_bytes, heap_spans) = crate::heap::init(&memory, image.1);
    let first_instruction = crate::events::instant_at_tsc(first_tsc);
    let info = BOOT.call_once(|| BootInfo {
        xen,
        cmdline: line,
        memory,
        image,
        stack_guard: mote_arch::boot::stack_guard(),
        heap_bytes,
        heap_spans,
        first_instruction,
    });
    crate::logger::init(cmdline().get("log"));
    crate::random::init();
    if truncated {
        log::warn!("command line longer than {} bytes was truncated", cmdline::MAX_LEN);
    }
    if info.memory.dropped() > 0 {
        log::warn!(
            "{} memory map entries beyond the first {} were ignored",
            info.memory.dropped(),
            crate::memory::MAX_REGIONS
        );
    }
    if heap_bytes == 0 {
        log::warn!("no free RAM for the heap: allocations will fail");
    }
    log::debug!(
        "{}; image {:#x}-{:#x}; heap {} KiB; {page_tables} page-table pages",
        info.xen,
        image.0,
        image.1,
        heap_bytes / 1024
    );
    crate::security::report();
    match crate::grants::init() {
        Ok(frames) => log::debug!("grant table: {frames} frames"),
        Err(e) => log::error!("no grant table ({e}): pages cannot be shared with other domains"),
    }
    connect_xenstore();
    crate::gdb::init(cmdline().get("gdb"));

    // In u64: formatting a u128 would bring its own code (1 KiB).
    let boot_us = u64::try_from(first_instruction.elapsed().as_micros()).unwrap_or(u64::MAX);
    log::info!("boot: main {boot_us} us after the first instruction");
    // SAFETY: `mote::main!` defines this symbol with this signature.
    let ok = unsafe { __mote_app_main() };
    let reason = match (ok, crate::lifecycle::requested()) {
        (false, _) => ShutdownReason::Crash,
        (true, Some(request)) => request.reason(),
        (true, None) => ShutdownReason::Poweroff,
    };
    crate::console::flush();
    shutdown(reason)
}

/// Connects to xenstore, learns who we are, and starts listening for
/// shutdown requests. A domain without xenstore still runs, without them.
fn connect_xenstore() {
    if let Err(e) = crate::xenstore::init() {
        log::error!("no xenstore ({e}): xl shutdown/reboot will not reach this domain");
        return;
    }
    let grace = match cmdline().get_parsed::<u64>("shutdown_grace_ms") {
        None => crate::lifecycle::GRACE,
        Some(Ok(ms)) => core::time::Duration::from_millis(ms),
        Some(Err(v)) => {
            log::warn!(
                "shutdown_grace_ms=\"{v}\" is not a number; using {} s",
                crate::lifecycle::GRACE.as_secs()
            );
            crate::lifecycle::GRACE
        }
    };
    let result = crate::xenstore::with(|xs| {
        let (domid, name) = xs.identity()?;
        log::info!("domain {} ({name}) on {}", domid.0, boot_info().xen);
        crate::lifecycle::init(xs, grace)
    });
    if let Some(Err(e)) = result {
        log::error!("xenstore: {e}; xl shutdown/reboot will not reach this domain");
    }
}
