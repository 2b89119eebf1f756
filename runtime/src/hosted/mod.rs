//! The hosted platform: the runtime as a Linux process, so that an app's logic runs under
//! gdb, perf and valgrind (`cargo xtask run <app> --hosted`). What the app sees is the same
//! API; underneath, the console and log are standard output, time is Linux's monotonic and
//! wall clocks, the executor sleeps in poll(2) ([`crate::executor::hosted`]), the network is
//! smoltcp on a TAP device ([`crate::net`]), SIGINT and SIGTERM are the shutdown request
//! ([`crate::lifecycle`]), the first disk is an image file (`disk=PATH`, [`crate::fs`]) and
//! the command line is the process's arguments. Nothing of Xen runs.

use crate::cmdline::{self, Cmdline};
use crate::time::Instant;
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The memory an app is told it has without `memory=`: the size of a small guest's heap.
pub const DEFAULT_MEMORY_MIB: u64 = 64;

/// What the runtime learned at start.
#[derive(Debug)]
pub struct BootInfo {
    /// The process's arguments as one command line ([`cmdline::join_args`]).
    pub cmdline: String,
    /// The heap the app may plan for: `memory=` MiB (the xl config's `memory`, which `cargo
    /// xtask run --hosted` passes), [`DEFAULT_MEMORY_MIB`] without it. The process's heap is
    /// Linux's and has no limit of its own.
    pub heap_bytes: u64,
}

static BOOT: OnceLock<BootInfo> = OnceLock::new();
/// Time zero of [`Instant`]: the process's start.
static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();

/// What the runtime learned at start.
pub fn boot_info() -> &'static BootInfo {
    BOOT.get().expect("boot info is set before main runs")
}

/// The parsed command line.
pub fn cmdline() -> Cmdline<'static> {
    Cmdline::new(&boot_info().cmdline)
}

impl Instant {
    /// Now, from Linux's monotonic clock: nanoseconds since the process started.
    pub fn now() -> Instant {
        let epoch = EPOCH.get_or_init(std::time::Instant::now);
        Instant::from_nanos(u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// Time since `self`, on Linux's monotonic clock.
    pub fn elapsed(self) -> Duration {
        Instant::now().duration_since(self)
    }
}

/// Wall-clock time as (seconds, nanoseconds) since the Unix epoch.
pub fn wallclock() -> (u64, u32) {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_secs(), since.subsec_nanos())
}

#[doc(hidden)]
pub fn _print(args: core::fmt::Arguments<'_>) {
    let _ = std::io::stdout().lock().write_fmt(args);
}

/// Writes out what standard output holds.
pub fn flush() {
    let _ = std::io::stdout().flush();
}

/// The process's entry, from `mote::main!`: sets up the platform, runs the app, and returns
/// the exit status (0 when it succeeded).
pub fn start(app: impl FnOnce() -> bool) -> i32 {
    // Sets time zero.
    let _ = Instant::now();
    let line = cmdline::join_args(std::env::args().skip(1));
    let memory = Cmdline::new(&line).get_parsed::<u64>("memory").map(|m| m.map_err(String::from));
    let heap_bytes = match memory {
        Some(Ok(mib)) => mib << 20,
        _ => DEFAULT_MEMORY_MIB << 20,
    };
    BOOT.get_or_init(|| BootInfo { cmdline: line, heap_bytes });
    crate::logger::init(cmdline().get("log"));
    if let Some(Err(v)) = memory {
        log::warn!("memory={v:?} is not a number of MiB; using {DEFAULT_MEMORY_MIB}");
    }
    // A panic aborts (for gdb and core dumps) after the report and the recent log lines.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flush();
        report(info);
        crate::logger::print_recent(|args| eprint!("{args}"));
    }));
    crate::lifecycle::init(grace());
    log::info!("hosted: process {}, command line {:?}", std::process::id(), boot_info().cmdline);
    let ok = app();
    flush();
    if ok {
        0
    } else {
        1
    }
}

/// `shutdown_grace_ms=`, or [`crate::lifecycle::GRACE`].
fn grace() -> Duration {
    match cmdline().get_parsed::<u64>("shutdown_grace_ms") {
        None => crate::lifecycle::GRACE,
        Some(Ok(ms)) => Duration::from_millis(ms),
        Some(Err(v)) => {
            log::warn!("shutdown_grace_ms={v:?} is not a number; using {:?}", crate::lifecycle::GRACE);
            crate::lifecycle::GRACE
        }
    }
}
