//! Test-only mote driven by `test=` on the command line; the integration
//! tests (`cargo xtask test`) check what it prints and how it ends.
//!
//! - `test=panic`: panics (the report and a crash are expected).
//! - `test=pagefault`: reads an unmapped address (an exception report naming
//!   CR2 and a crash are expected).
//! - `test=write-text`, `write-rodata`, `exec-heap`, `exec-stack`, `null`,
//!   `stack-overflow`, `guard-read`: each commits one memory-protection
//!   violation in a function of its own ([`violate`]); a report naming the
//!   violation and that function, and a crash, are expected. A line ending
//!   in "survived" means the protection is missing.
//! - `test=longline len=N`: prints one line of N characters, then powers off.
//! - `test=sleep ms=N count=C`: sleeps N ms (default 1000) C times (default 1)
//!   and prints the longest and shortest sleep the PV clock measured, and the
//!   wall clock before and after.
//! - `test=idle secs=N`: sleeps N s (default 15) so the host can check that
//!   an idle mote uses no CPU time.
//! - `test=clock secs=N`: for N s (default 2) from boot, reads the PV clock
//!   before and after 1 ms sleeps and checks each reading against the time,
//!   by Xen's own clock, that Xen scheduled the vCPU in after the sleep: a
//!   reading after it may not be earlier, one before it not later. Prints how
//!   many readings were more than [`CLOCK_MARGIN`] behind or ahead, and the
//!   first such.
//! - `test=xenstore`: prints its domid and name from xenstore, writes
//!   `data/from-guest`, then waits on a watch until dom0 writes
//!   `data/from-dom0`, and prints that value.
//! - `test=timer`: waits until dom0 writes `data/go`, then writes
//!   `data/timer` = `start`, sleeps 1 s, writes `end`; dom0 times the two
//!   writes with its own clock, and writes `data/timer-read` when done.
//! - `test=console-stall`: waits until dom0 writes `data/go` (after stopping
//!   xenconsoled), writes 200 lines of about 100 bytes to the console, writes
//!   the milliseconds that took to `data/flooded`, waits for
//!   `data/resumed` and prints them: a console nobody drains costs a bounded
//!   wait, and the loss is reported once it drains again.
//! - `test=async`: on the executor, three tasks sleep 300, 100 and 200 ms
//!   while a 50 ms timeout cuts a 10 s sleep short; prints whether the
//!   timeout fired and the order the tasks woke in.
//! - `test=disk`: writes [`disk_pattern`] over the whole first disk, flushes,
//!   reads it back and verifies it; `test=disk-verify` only reads and
//!   verifies (a later boot); `test=disk-ro` expects its write to be refused.
//!   Each prints the requests it sent: how many, how many indirect, and the
//!   most in flight at once. `disk_timeout_s=N` fails the disk when the
//!   backend leaves requests unanswered for N s (blkfront's default: 30). `test=disk-discard`: writes the pattern over
//!   the whole disk, discards its middle half, checks that the discarded
//!   half reads as zeros and the rest as the pattern, then waits for
//!   `xl shutdown` (dom0 looks at the backend meanwhile).
//! - `test=disk-async tasks=T reads=R`: through the async disk API, writes
//!   the pattern over the first 4 MiB, then T tasks (default 64) each read R
//!   (default 16) 4 KiB blocks at pseudo-random places and verify them;
//!   prints how many reads, how fast, and the most requests in flight.
//! - `test=disk-detach`: through the async disk API, 8 tasks read the first
//!   disk in 64 KiB blocks over and over until a read fails (dom0 runs `xl
//!   block-detach` meanwhile); prints `disk-detach: reading` once reads
//!   work, then each task's error, then what a later read gets, and waits
//!   for `xl shutdown`. `test=disk-detach-blocking`: the same with one
//!   blocking reader.
//! - `test=disk-reattach count=N`: reads the first disk through the async
//!   API and watches for disks attached later (`mote::disk::watch`); prints
//!   `disk-reattach: watching`, then for each of N (default 2) disks
//!   attached (dom0 detaches the first and attaches others, one under its
//!   name) connects it and prints its name and the text of its first line,
//!   then waits for `xl shutdown`.
//! - `test=disk-bench bytes=N reads=R`: `cargo xtask bench disk`'s measurement
//!   (the same as `mote-agent disk-bench` in the Linux guest): writes the
//!   first N bytes of the disk in 1 MiB blocks and flushes, reads them back,
//!   then makes R 4 KiB reads at pseudo-random offsets, one at a time;
//!   prints `disk-bench: start` as it starts, then `disk-bench: seq-write W
//!   MB/s, seq-read R MB/s, rand-read I IOPS in T s` (T: all three, by the
//!   PV clock).
//! - `test=heap-full`: takes 64 KiB buffers with `try_reserve` until one is
//!   refused, then 4 KiB ones; prints how many and the bytes left free
//!   (`mote::heap`'s reserve for small allocations); then, with the heap
//!   that full, runs 16 tasks that each make small allocations and wait on
//!   timers; frees the buffers and takes a 64 KiB one again.
//! - `test=wait`: waits for `xl shutdown` or `xl reboot`, says which, and
//!   returns (the runtime then ends the domain as asked).
//! - `test=random`: prints 32 bytes from `mote::random::fill` in hex and the
//!   seed's source (`random bytes: <hex> from RDSEED`), then waits as `test=wait`
//!   does: dom0 reboots it to compare two boots of one image.
//! - `test=grant`: grants dom0 a page holding a text, read-write then
//!   read-only. For each it prints `grant: rw ref=N` (or `ro`), waits until
//!   dom0 has mapped the page and writes `data/grant-rw-mapped` (or `-ro-`),
//!   prints what dom0 wrote into a read-write page, checks that ending the
//!   grant fails while it is mapped, then retries until dom0 unmaps it.
//! - `test=xenbus` (with a vif): opens `device/vif/0`, prints its backend,
//!   switches to Initialising and waits for netback's InitWait, then waits
//!   until dom0 writes `data/xenbus-close`, closes the device, and waits
//!   until dom0 writes `data/xenbus-done` (dom0 checks the states meanwhile).
#![no_std]
#![no_main]

use core::fmt;
use core::time::Duration;
extern crate alloc;

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use mote::grants::{Access, DomId, GrantError, GrantRef, Page};
use mote::xenbus::{Frontend, XenbusError, XenbusState};
use mote::xenstore::{Errno, Store, Xenstore, XsError};
use mote::Instant;
use mote_xen::XenError;

impl From<XsError> for Error {
    fn from(e: XsError) -> Self {
        Error::Xenstore(e)
    }
}

mote::main!(main);

/// Far above the identity-mapped first 4 GiB.
const UNMAPPED: u64 = 0x40_0000_0000;

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// How far `test=clock` lets the PV clock stray from Xen's: more than a
/// scheduling time slice (the vCPU may be descheduled between the reading
/// and the hypercall that checks it), well below the error it catches.
const CLOCK_MARGIN: Duration = Duration::from_millis(100);

/// How long `test=grant` waits for dom0 to unmap a page.
const UNMAP_WAIT: Duration = Duration::from_secs(20);
/// Pause between attempts to end a grant dom0 still has mapped.
const END_RETRY: Duration = Duration::from_millis(100);
impl From<XenbusError> for Error {
    fn from(e: XenbusError) -> Self {
        Error::Xenbus(e)
    }
}

#[derive(Debug)]
enum Error {
    Disk(String),
    Xenstore(XsError),
    Xenbus(XenbusError),
    NoXenstore,
    MissingTest,
    UnknownTest(&'static str),
    BadNumber(&'static str, &'static str),
    NoGrantTable,
    Grant(GrantError),
    EndedWhileMapped(GrantRef),
    Clock(XenError),
}

impl From<GrantError> for Error {
    fn from(e: GrantError) -> Self {
        Error::Grant(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Xenstore(e) => write!(f, "xenstore: {e}"),
            Error::Xenbus(e) => e.fmt(f),
            Error::Disk(e) => write!(f, "disk: {e}"),
            Error::NoXenstore => f.write_str("this domain has no xenstore connection"),
            Error::MissingTest => f.write_str("no test= on the command line"),
            Error::UnknownTest(t) => write!(f, "unknown test {t:?}"),
            Error::BadNumber(key, v) => write!(f, "{key}={v:?} is not a number"),
            Error::NoGrantTable => f.write_str("this domain has no grant table"),
            Error::Grant(e) => write!(f, "grant table: {e}"),
            Error::EndedWhileMapped(r) => write!(f, "{r} was ended while dom0 had it mapped"),
            Error::Clock(e) => write!(f, "checking the clock against Xen's: {e}"),
        }
    }
}

fn main() -> Result<(), Error> {
    let cmdline = mote::cmdline();
    match cmdline.get("test").ok_or(Error::MissingTest)? {
        "panic" => {
            mote::log::info!("selftest: about to panic");
            panic!("deliberate panic from selftest")
        }
        "pagefault" => {
            // SAFETY: deliberately unsound: the read must fault.
            let value = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
            mote::println!("read {value:#x} from an unmapped address?!");
            Ok(())
        }
        "longline" => {
            long_line(number("len", 10_240)? as usize);
            mote::println!("longline done");
            Ok(())
        }
        "sleep" => {
            let ms = number("ms", 1000)?;
            let count = number("count", 1)?;
            let (sec, nsec) = mote::wallclock();
            mote::println!("sleep: {count} x {ms} ms from wallclock {sec}.{nsec:09}");
            let (mut min, mut max) = (u128::MAX, 0);
            for _ in 0..count {
                let start = Instant::now();
                mote::sleep(Duration::from_millis(ms));
                let slept = start.elapsed().as_nanos();
                min = min.min(slept);
                max = max.max(slept);
            }
            let (sec, nsec) = mote::wallclock();
            mote::println!("sleep: slept {max} ns (shortest {min} ns), wallclock {sec}.{nsec:09}");
            Ok(())
        }
        "clock" => check_clock(Duration::from_secs(number("secs", 2)?)),
        "idle" => {
            let secs = number("secs", 15)?;
            mote::println!("idle: sleeping {secs} s");
            mote::sleep(Duration::from_secs(secs));
            mote::println!("idle: done");
            Ok(())
        }
        "xenstore" => xenstore(|xs| {
            let domid = xs.domid()?;
            let name = xs.name()?;
            mote::println!("xenstore: domid={} name={name}", domid.0);
            xs.write("data/from-guest", b"written by selftest")?;
            mote::println!("xenstore: wrote data/from-guest");
            let value = wait_for_value(xs, "data/from-dom0")?;
            mote::println!("xenstore: dom0 wrote {value}");
            Ok(())
        }),
        "timer" => xenstore(|xs| {
            mote::println!("timer: waiting for dom0");
            wait_for_value(xs, "data/go")?;
            xs.write("data/timer", b"start")?;
            // Only the sleep is timed, not the xenstore round trips around it.
            let start = Instant::now();
            mote::sleep(Duration::from_secs(1));
            let slept = start.elapsed();
            xs.write("data/timer", b"end")?;
            mote::println!("timer: slept {} ns", slept.as_nanos());
            // Stay until dom0 has read `end`: the domain's nodes go with it.
            wait_for_value(xs, "data/timer-read")?;
            Ok(())
        }),
        "async" => {
            let woke = Rc::new(RefCell::new(Vec::new()));
            let start = Instant::now();
            let timed_out = mote::block_on(async {
                for ms in [300, 100, 200] {
                    let woke = woke.clone();
                    mote::spawn(async move {
                        mote::time::sleep(Duration::from_millis(ms)).await;
                        woke.borrow_mut().push(ms);
                    });
                }
                let cut = mote::time::timeout(
                    Duration::from_millis(50),
                    mote::time::sleep(Duration::from_secs(10)),
                );
                let timed_out = cut.await.is_err();
                mote::time::sleep(Duration::from_millis(400)).await;
                timed_out
            });
            mote::println!("async: timeout fired: {timed_out}");
            mote::println!(
                "async: woke in order {:?} within {} ms",
                woke.borrow(),
                start.elapsed().as_millis()
            );
            Ok(())
        }
        "console-stall" => xenstore(|xs| {
            // dom0 stops xenconsoled, then says go: 20 000 bytes into a 2 KiB ring nobody
            // drains must cost a bounded wait, not hang the domain.
            mote::println!("console-stall: waiting for dom0");
            wait_for_value(xs, "data/go")?;
            let start = Instant::now();
            for i in 0..200 {
                mote::println!("console-stall: line {i:3} {:>80}", "x");
            }
            let took = start.elapsed().as_millis();
            xs.write("data/flooded", format!("{took}").as_bytes())?;
            wait_for_value(xs, "data/resumed")?;
            mote::println!("console-stall: 200 lines written in {took} ms with xenconsoled stopped");
            Ok(())
        }),
        "heap-full" => {
            heap_full();
            Ok(())
        }
        "wait" => {
            wait();
            Ok(())
        }
        "random" => {
            let mut bytes = [0u8; 32];
            mote::random::fill(&mut bytes);
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            mote::println!("random bytes: {hex} from {}", mote::random::source());
            wait();
            Ok(())
        }
        "grant" => xenstore(|xs| {
            let page = Page::alloc();
            share_with_dom0(xs, page, Access::ReadWrite, "mote grant rw test")?;
            share_with_dom0(xs, page, Access::ReadOnly, "mote grant ro test")
        }),
        "xenbus" => xenstore(|xs| {
            let mut vif = Frontend::open(xs, "device/vif/0")?;
            mote::println!("xenbus: backend {} id {}", vif.backend(), vif.backend_id().0);
            vif.switch(xs, XenbusState::Initialising)?;
            mote::println!("xenbus: frontend Initialising");
            let state = vif.wait_backend(xs, |s| s == XenbusState::InitWait)?;
            mote::println!("xenbus: backend {state:?}");
            wait_for_value(xs, "data/xenbus-close")?;
            let state = vif.close(xs)?;
            mote::println!("xenbus: frontend Closed, backend {state:?}");
            wait_for_value(xs, "data/xenbus-done")?;
            Ok(())
        }),
        "disk" | "disk-verify" | "disk-ro" | "disk-discard" => disk(cmdline.get("test").unwrap_or_default()),
        "disk-async" => disk_async(number("tasks", 64)?, number("reads", 16)?),
        "disk-detach" => disk_detach(false),
        "disk-detach-blocking" => disk_detach(true),
        "disk-reattach" => disk_reattach(number("count", 2)?),
        "disk-bench" => disk_bench(number("bytes", 32 << 20)?, number("reads", 2000)?),
        mode @ ("write-text" | "write-rodata" | "exec-heap" | "exec-stack" | "null" | "stack-overflow"
        | "guard-read") => {
            violate(mode);
            mote::println!("{mode}: survived");
            Ok(())
        }
        other => Err(Error::UnknownTest(other)),
    }
}

/// Read-only data for `test=write-rodata` to write.
static RODATA: u64 = 0x005E_A1ED;

/// Commits the memory-protection violation `mode` names (see the module
/// documentation), each in a function the crash report's backtrace names.
fn violate(mode: &str) {
    match mode {
        "write-text" => write_text(),
        "write-rodata" => write_rodata(),
        "exec-heap" => exec_heap(),
        "exec-stack" => exec_stack(),
        "null" => null(),
        "stack-overflow" => mote::println!("stack-overflow: depth {}", stack_overflow(0)),
        "guard-read" => guard_read(),
        _ => {}
    }
}

#[inline(never)]
fn write_text() {
    let code = write_text as *const () as *mut u8;
    // SAFETY: deliberately unsound: .text is read-only, the write must fault.
    unsafe { code.write_volatile(0xCC) };
}

#[inline(never)]
fn write_rodata() {
    // SAFETY: deliberately unsound: .rodata is read-only, the write must fault.
    unsafe { core::ptr::addr_of!(RODATA).cast_mut().write_volatile(0) };
}

/// Calls `ret` instructions at `code`, which must not be executable; inlined,
/// so that the call is made from the function that names the case.
#[inline(always)]
fn call_data(code: *const u8) {
    // SAFETY: deliberately unsound: the bytes are data; the fetch must fault.
    let f: extern "C" fn() = unsafe { core::mem::transmute(code) };
    f();
}

#[inline(never)]
fn exec_heap() {
    let code = alloc::vec![0xC3u8; 16]; // ret
    call_data(core::hint::black_box(code.as_ptr()));
}

#[inline(never)]
fn exec_stack() {
    let code = [0xC3u8; 16]; // ret
    call_data(core::hint::black_box(code.as_ptr()));
}

#[inline(never)]
fn null() {
    // SAFETY: deliberately unsound: a field 8 bytes into a null pointer's
    // target; page 0 is never mapped, the read must fault.
    let value = unsafe { core::ptr::without_provenance::<u64>(8).read_volatile() };
    mote::println!("null: read {value:#x}");
}

/// Recurses until the boot stack's guard page stops it.
#[inline(never)]
fn stack_overflow(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let frame = core::hint::black_box([depth; 64]);
    stack_overflow(depth + 1) + frame[(depth % 64) as usize]
}

#[inline(never)]
fn guard_read() {
    let guard = mote::boot_info().stack_guard;
    // SAFETY: deliberately unsound: the guard page is never mapped.
    let value = unsafe { (guard as *const u64).read_volatile() };
    mote::println!("guard-read: read {value:#x}");
}

/// `test=wait`: see the module documentation.
fn wait() {
    mote::println!("wait: waiting for shutdown");
    let request = mote::wait_for_shutdown();
    mote::println!("wait: {request:?} requested");
}

/// `test=clock`: see the module documentation.
fn check_clock(run: Duration) -> Result<(), Error> {
    let margin = CLOCK_MARGIN.as_nanos() as u64;
    let start = Instant::now();
    let (mut readings, mut behind, mut ahead) = (0u32, 0u32, 0u32);
    let mut first = None;
    let mut last_since = 0;
    // The largest differences seen either way, in ns.
    let (mut most_behind, mut most_ahead) = (0, 0);
    while start.elapsed() < run {
        let before = Instant::now().as_nanos();
        // Blocks: Xen schedules the vCPU in again when the timer fires.
        mote::sleep(Duration::from_millis(1));
        let since = mote_xen::time::running_since_ns().map_err(Error::Clock)?;
        let after = Instant::now().as_nanos();
        // Xen's clock read `since` at or before `after`.
        most_behind = most_behind.max(since.saturating_sub(after));
        if after + margin < since {
            behind += 1;
            first.get_or_insert(format!("read {after} ns after being scheduled at {since} ns"));
        }
        // A new scheduling came after the previous iteration's, so after `before`.
        if since != last_since {
            most_ahead = most_ahead.max(before.saturating_sub(since));
            if before > since + margin {
                ahead += 1;
                first.get_or_insert(format!("read {before} ns before being scheduled at {since} ns"));
            }
        }
        last_since = since;
        readings += 2;
    }
    mote::println!(
        "clock: {readings} readings in {} ms: {behind} behind and {ahead} ahead of Xen's clock by more than {} ms \
         (at most {} us behind, {} us ahead)",
        start.elapsed().as_millis(),
        CLOCK_MARGIN.as_millis(),
        most_behind / 1000,
        most_ahead / 1000
    );
    if let Some(first) = first {
        mote::println!("clock: first stray: {first}");
    }
    Ok(())
}

/// Grants `page`, holding `text`, to dom0; once dom0 says it has mapped it,
/// ending the grant must fail until dom0 unmaps it.
/// `test=heap-full`: see the module documentation.
fn heap_full() {
    // Room for every buffer's handle, taken while the heap is empty.
    let mut taken: Vec<Vec<u8>> = Vec::with_capacity(2048);
    let mut counts = [0usize; 2];
    for (count, size) in counts.iter_mut().zip([64 * 1024, 4096]) {
        while taken.len() < taken.capacity() {
            let mut buffer = Vec::new();
            if buffer.try_reserve_exact(size).is_err() {
                break;
            }
            taken.push(buffer);
            *count += 1;
        }
    }
    let in_use = mote::heap::usage().in_use;
    mote::println!(
        "heap-full: took {} x 64 KiB and {} x 4 KiB, then one was refused with {} of {} bytes in use",
        counts[0],
        counts[1],
        in_use,
        mote::heap::size()
    );
    const TASKS: u64 = 16;
    let (ended, passed) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    mote::block_on({
        let (ended, passed) = (ended.clone(), passed.clone());
        async move {
            for task in 0..TASKS {
                let (ended, passed) = (ended.clone(), passed.clone());
                mote::spawn(async move {
                    let small: Vec<alloc::boxed::Box<[u64; 8]>> =
                        (0..8).map(|i| alloc::boxed::Box::new([task * i; 8])).collect();
                    let cut = mote::time::timeout(
                        Duration::from_millis(20),
                        mote::time::sleep(Duration::from_secs(10)),
                    );
                    let timed_out = cut.await.is_err();
                    mote::time::sleep(Duration::from_millis(task)).await;
                    if timed_out && small.iter().zip(0..).all(|(b, i)| b.iter().all(|&v| v == task * i)) {
                        passed.set(passed.get() + 1);
                    }
                    ended.set(ended.get() + 1);
                });
            }
            while ended.get() < TASKS {
                mote::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    mote::println!(
        "heap-full: {} of {TASKS} tasks allocated, timed out and slept with the heap full",
        passed.get()
    );
    drop(taken);
    let mut again: Vec<u8> = Vec::new();
    let fits = again.try_reserve_exact(64 * 1024).is_ok();
    mote::println!("heap-full: freed; a 64 KiB buffer fits again: {fits}");
}

fn share_with_dom0(xs: &mut Xenstore, page: &Page, access: Access, text: &str) -> Result<(), Error> {
    let label = match access {
        Access::ReadWrite => "rw",
        Access::ReadOnly => "ro",
    };
    page.write(0, text.as_bytes());
    page.write(text.len(), &[0]);
    let r = grants(|gt| gt.grant_access(DomId(0), page.gfn(), access))?;
    mote::println!("grant: {label} ref={}", r.0);
    wait_for_value(xs, &format!("data/grant-{label}-mapped"))?;
    if access == Access::ReadWrite {
        let mut head = [0u8; 64];
        page.read(0, &mut head);
        let end = head.iter().position(|&b| b == 0).unwrap_or(head.len());
        mote::println!("grant: rw dom0 wrote {:?}", String::from_utf8_lossy(&head[..end]));
    }
    match grants(|gt| gt.end_access(r)) {
        Err(Error::Grant(GrantError::InUse(_))) => {
            mote::println!("grant: {label} end_access while mapped: in use (ok)")
        }
        Ok(()) => return Err(Error::EndedWhileMapped(r)),
        Err(e) => return Err(e),
    }
    let start = Instant::now();
    loop {
        match grants(|gt| gt.end_access(r)) {
            Ok(()) => break,
            Err(Error::Grant(GrantError::InUse(_))) if start.elapsed() < UNMAP_WAIT => mote::sleep(END_RETRY),
            Err(e) => return Err(e),
        }
    }
    mote::println!("grant: {label} ended");
    Ok(())
}

/// Runs `f` with the grant table.
fn grants<T>(
    f: impl FnOnce(&mut mote::grants::GrantTable<'static>) -> Result<T, GrantError>,
) -> Result<T, Error> {
    Ok(mote::grants::with(f).ok_or(Error::NoGrantTable)??)
}

/// Runs `f` with the xenstore client.
fn xenstore(f: impl FnOnce(&mut Xenstore) -> Result<(), Error>) -> Result<(), Error> {
    mote::xenstore::with(f).ok_or(Error::NoXenstore)?
}

/// Watches `path` until it holds a non-empty value; returns the value.
fn wait_for_value(xs: &mut Xenstore, path: &str) -> Result<String, Error> {
    let watch = xs.watch(path, path)?;
    mote::println!("xenstore: watching {path}");
    loop {
        // The first event comes at once; later ones when the node changes.
        xs.wait_event(watch)?;
        match xs.read_string(path) {
            Ok(v) if !v.is_empty() => {
                xs.unwatch(watch)?;
                return Ok(v);
            }
            Ok(_) | Err(XsError::Xen(Errno::NoEnt)) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Byte `offset` of the disk test's pattern: the top byte of a
/// multiplicative hash, so every sector differs (xtask computes the same).
fn disk_pattern(offset: u64) -> u8 {
    ((offset as u32).wrapping_mul(2_654_435_761) >> 24) as u8
}

/// The disk tests, in 1 MiB steps.
fn disk(test: &str) -> Result<(), Error> {
    const STEP: usize = 1 << 20;
    let mut disks = mote::disk::open_all().map_err(|e| Error::Disk(alloc::format!("{e}")))?;
    let disk = disks.first_mut().ok_or(Error::Disk("no disk".into()))?;
    if let Some(Ok(seconds)) = mote::cmdline().get_parsed::<u64>("disk_timeout_s") {
        disk.set_timeout(core::time::Duration::from_secs(seconds));
    }
    let info = disk.info();
    let size = info.bytes();
    let mut buf = alloc::vec![0u8; STEP];
    let fill = |buf: &mut [u8], base: u64| {
        buf.iter_mut().enumerate().for_each(|(i, b)| *b = disk_pattern(base + i as u64))
    };
    let io = |e: mote::disk::DiskError| Error::Disk(alloc::format!("{e}"));
    if test == "disk-ro" {
        fill(&mut buf, 0);
        return match disk.write(0, &buf[..info.sector_size as usize]) {
            Err(e @ mote::disk::DiskError::ReadOnly) => {
                mote::println!("disk: write refused: {e}");
                Ok(())
            }
            other => Err(Error::Disk(alloc::format!("a write to a read-only disk gave {other:?}"))),
        };
    }
    let sectors_per_step = (STEP / info.sector_size as usize) as u64;
    if test == "disk" || test == "disk-discard" {
        let start = Instant::now();
        for (n, base) in (0..size).step_by(STEP).enumerate() {
            let len = STEP.min((size - base) as usize);
            fill(&mut buf[..len], base);
            disk.write(n as u64 * sectors_per_step, &buf[..len]).map_err(io)?;
        }
        disk.flush().map_err(io)?;
        mote::println!("disk: wrote and flushed {size} bytes in {} ms", start.elapsed().as_millis());
    }
    // With test=disk-discard, the middle half of the disk (whole MiBs).
    let hole = (size / 4 / STEP as u64 * STEP as u64)..(size * 3 / 4 / STEP as u64 * STEP as u64);
    if test == "disk-discard" {
        let per_byte = u64::from(info.sector_size);
        let sectors = disk.discard(hole.start / per_byte, (hole.end - hole.start) / per_byte).map_err(io)?;
        disk.flush().map_err(io)?;
        // Whole MiBs are whole extents of any discard granularity blkback offers.
        mote::println!("disk: discarded {} bytes at byte {}", sectors * per_byte, hole.start);
    }
    let start = Instant::now();
    let mut want = alloc::vec![0u8; STEP];
    for (n, base) in (0..size).step_by(STEP).enumerate() {
        let len = STEP.min((size - base) as usize);
        disk.read(n as u64 * sectors_per_step, &mut buf[..len]).map_err(io)?;
        if test == "disk-discard" && hole.contains(&base) {
            want[..len].fill(0);
        } else {
            fill(&mut want[..len], base);
        }
        if buf[..len] != want[..len] {
            return Err(Error::Disk(alloc::format!("the MiB at byte {base} differs from what was written")));
        }
    }
    mote::println!("disk: read and verified {size} bytes in {} ms", start.elapsed().as_millis());
    let stats = disk.stats();
    mote::println!(
        "disk: {} requests, {} indirect, at most {} in flight",
        stats.requests,
        stats.indirect,
        stats.peak_in_flight
    );
    if test == "disk-discard" {
        mote::println!("disk: waiting for shutdown");
        mote::wait_for_shutdown();
    }
    Ok(())
}

/// `test=disk-async`.
fn disk_async(tasks: u64, reads: u64) -> Result<(), Error> {
    const AREA: u64 = 4 << 20;
    const BLOCK: usize = 4096;
    let disk = mote::disk::open_all().map_err(|e| Error::Disk(alloc::format!("{e}")))?.into_iter().next();
    let disk = disk.ok_or(Error::Disk("no disk".into()))?;
    let io = |e: mote::disk::DiskError| Error::Disk(alloc::format!("{e}"));
    let sector = u64::from(disk.info().sector_size);
    mote::block_on(async move {
        let disk = disk.into_async();
        let mut buf = alloc::vec![0u8; 1 << 20];
        for base in (0..AREA).step_by(buf.len()) {
            buf.iter_mut().enumerate().for_each(|(i, b)| *b = disk_pattern(base + i as u64));
            disk.write(base / sector, &buf).await.map_err(io)?;
        }
        drop(buf);
        let failures: Rc<RefCell<Vec<String>>> = Rc::default();
        let finished = Rc::new(RefCell::new(0));
        let start = Instant::now();
        for t in 0..tasks {
            let (disk, failures, finished) = (disk.clone(), failures.clone(), finished.clone());
            mote::spawn(async move {
                let mut block = [0u8; BLOCK];
                let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                for _ in 0..reads {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    let at = (x >> 33) % (AREA / BLOCK as u64) * BLOCK as u64;
                    match disk.read(at / sector, &mut block).await {
                        Err(e) => failures.borrow_mut().push(alloc::format!("read at {at}: {e}")),
                        Ok(())
                            if block.iter().enumerate().any(|(i, &b)| b != disk_pattern(at + i as u64)) =>
                        {
                            failures
                                .borrow_mut()
                                .push(alloc::format!("the block at {at} differs from the pattern"))
                        }
                        Ok(()) => {}
                    }
                }
                *finished.borrow_mut() += 1;
            });
        }
        while *finished.borrow() < tasks {
            mote::time::sleep(Duration::from_millis(5)).await;
        }
        let ms = start.elapsed().as_millis().max(1);
        if let Some(first) = failures.borrow().first() {
            return Err(Error::Disk(alloc::format!(
                "{} reads failed; first: {first}",
                failures.borrow().len()
            )));
        }
        mote::println!(
            "disk-async: {} reads of 4 KiB by {tasks} tasks verified in {ms} ms ({} IOPS), at most {} in flight",
            tasks * reads,
            u128::from(tasks * reads) * 1000 / ms,
            disk.stats().peak_in_flight
        );
        Ok(())
    })
}

/// `test=disk-detach`.
fn disk_detach(blocking: bool) -> Result<(), Error> {
    const TASKS: usize = 8;
    const BLOCK: usize = 64 * 1024;
    let disk = mote::disk::open_all().map_err(|e| Error::Disk(alloc::format!("{e}")))?.into_iter().next();
    let mut disk = disk.ok_or(Error::Disk("no disk".into()))?;
    let sectors = disk.info().sectors;
    let per_block = (BLOCK / disk.info().sector_size as usize) as u64;
    if blocking {
        let mut block = alloc::vec![0u8; BLOCK];
        let mut reads = 0u64;
        let e = loop {
            if let Err(e) = disk.read(reads * per_block % (sectors - per_block), &mut block) {
                break e;
            }
            reads += 1;
            if reads == 64 {
                mote::println!("disk-detach: reading");
            }
        };
        let started = Instant::now();
        let later = match disk.read(0, &mut block[..512]) {
            Ok(()) => String::from("succeeded"),
            Err(e) => alloc::format!("failed ({e})"),
        };
        mote::println!(
            "disk-detach: the blocking reader stopped after {reads} reads: {e}; a later read {later} in {} ms",
            started.elapsed().as_millis()
        );
        mote::println!("disk: waiting for shutdown");
        mote::wait_for_shutdown();
        return Ok(());
    }
    mote::block_on(async move {
        let disk = disk.into_async();
        let errors: Rc<RefCell<Vec<(usize, u64)>>> = Rc::default();
        let reads = Rc::new(Cell::new(0u64));
        for t in 0..TASKS {
            let (disk, errors, reads) = (disk.clone(), errors.clone(), reads.clone());
            mote::spawn(async move {
                let mut block = alloc::vec![0u8; BLOCK];
                let mut at = t as u64 * per_block;
                loop {
                    if let Err(e) = disk.read(at % (sectors - per_block), &mut block).await {
                        mote::println!("disk-detach: task {t} stopped after {} reads: {e}", reads.get());
                        errors.borrow_mut().push((t, reads.get()));
                        return;
                    }
                    reads.set(reads.get() + 1);
                    if reads.get() == 64 {
                        mote::println!("disk-detach: reading");
                    }
                    at += TASKS as u64 * per_block;
                }
            });
        }
        while errors.borrow().len() < TASKS {
            mote::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        let later = match disk.read(0, &mut [0u8; 512]).await {
            Ok(()) => String::from("succeeded"),
            Err(e) => alloc::format!("failed ({e})"),
        };
        mote::println!(
            "disk-detach: {TASKS} tasks stopped after {} reads; a later read {later} in {} ms",
            reads.get(),
            started.elapsed().as_millis()
        );
        mote::println!("disk: waiting for shutdown");
        mote::lifecycle::shutdown_requested().await;
        Ok(())
    })
}

/// `test=disk-reattach`.
fn disk_reattach(count: u64) -> Result<(), Error> {
    let failed = |e: &dyn fmt::Display| Error::Disk(alloc::format!("{e}"));
    let disk = mote::disk::open_all().map_err(|e| failed(&e))?.into_iter().next();
    let mut disk = disk.ok_or(Error::Disk("no disk".into()))?;
    mote::println!("disk-reattach: vbd {} reads: {}", disk.id(), first_line(&mut disk)?);
    mote::block_on(async move {
        // Through the async API, whose driver notices the detach with no read under way.
        let first = disk.into_async();
        let mut attached = mote::disk::watch().map_err(|e| failed(&e))?;
        mote::println!("disk-reattach: watching");
        for _ in 0..count {
            let offer = attached.next().await.map_err(|e| failed(&e))?;
            let name = offer.name();
            let mut disk = offer.connect().await.map_err(|e| failed(&e))?;
            mote::println!("disk-reattach: {name} connected, reads: {}", first_line(&mut disk)?);
        }
        drop(first);
        mote::println!("disk: waiting for shutdown");
        mote::lifecycle::shutdown_requested().await;
        Ok(())
    })
}

/// The disk's first line of text (up to 64 bytes of its first sector).
fn first_line(disk: &mut mote::disk::Disk) -> Result<String, Error> {
    let mut sector = alloc::vec![0u8; disk.info().sector_size as usize];
    disk.read(0, &mut sector).map_err(|e| Error::Disk(alloc::format!("{e}")))?;
    let line = sector.iter().take(64).take_while(|&&b| b.is_ascii_graphic() || b == b' ');
    Ok(line.map(|&b| char::from(b)).collect())
}

/// `test=disk-bench`.
fn disk_bench(bytes: u64, reads: u64) -> Result<(), Error> {
    const STEP: usize = 1 << 20;
    const BLOCK: usize = 4096;
    let mut disks = mote::disk::open_all().map_err(|e| Error::Disk(alloc::format!("{e}")))?;
    let disk = disks.first_mut().ok_or(Error::Disk("no disk".into()))?;
    let io = |e: mote::disk::DiskError| Error::Disk(alloc::format!("{e}"));
    let sector = u64::from(disk.info().sector_size);
    let steps = bytes.min(disk.info().bytes()) / STEP as u64;
    let mb = (steps * STEP as u64) as f64 / 1e6;
    let mut buf = alloc::vec![0u8; STEP];
    mote::println!("disk-bench: start");
    let all = Instant::now();
    let start = Instant::now();
    for n in 0..steps {
        buf.fill(n as u8);
        disk.write(n * STEP as u64 / sector, &buf).map_err(io)?;
    }
    disk.flush().map_err(io)?;
    let write = mb / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for n in 0..steps {
        disk.read(n * STEP as u64 / sector, &mut buf).map_err(io)?;
    }
    let read = mb / start.elapsed().as_secs_f64();
    // The same 64-bit LCG as mote-agent's disk-bench (Knuth's MMIX constants).
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let blocks = steps * (STEP / BLOCK) as u64;
    let start = Instant::now();
    for _ in 0..reads {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let block = (x >> 33) % blocks;
        disk.read(block * BLOCK as u64 / sector, &mut buf[..BLOCK]).map_err(io)?;
    }
    let iops = reads as f64 / start.elapsed().as_secs_f64();
    let total = all.elapsed().as_secs_f64();
    mote::println!(
        "disk-bench: seq-write {write:.2} MB/s, seq-read {read:.2} MB/s, rand-read {iops:.0} IOPS in {total:.2} s"
    );
    Ok(())
}

/// The command line's `key` as a number, or `default` when absent.
fn number(key: &'static str, default: u64) -> Result<u64, Error> {
    match mote::cmdline().get_parsed::<u64>(key) {
        None => Ok(default),
        Some(Ok(n)) => Ok(n),
        Some(Err(v)) => Err(Error::BadNumber(key, v)),
    }
}

/// Prints `LONGLINE ` and `len` characters cycling through [`ALPHABET`] as
/// one line, in pieces, without the heap.
fn long_line(len: usize) {
    let mut chunk = [0u8; 360];
    for (i, b) in chunk.iter_mut().enumerate() {
        *b = ALPHABET[i % ALPHABET.len()];
    }
    mote::print!("LONGLINE ");
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        // The chunk length is a multiple of 36, so every piece starts at '0'.
        mote::print!("{}", core::str::from_utf8(&chunk[..n]).unwrap_or_default());
        left -= n;
    }
    mote::println!();
}
