//! Boot cases: hello, the selftest's panic and fault reports, logs, the console, xenstore,
//! timers and the clock, the heap, shutdown and reboot, grants, idling, xenbus.

use super::{check_no_panic, Case, Check, Driver, DRIVER_WAIT, SHUTDOWN_LIMIT};
use crate::agent::{sh_quote, Agent, Event, Exec};
use crate::build::Image;
use crate::guest::Reason;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Booting, and what a guest that fails reports.
pub(super) fn reports() -> Vec<Case> {
    use Check::*;
    vec![
        Case {
            name: "hello_boots",
            app: "hello",
            args: &["greeting=hi", "mode=test"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("Hello, world!"),
                Line("cmdline: greeting=hi mode=test"),
                Custom("memory map lists sane RAM", check_memory_map),
                Custom("heap: <N> bytes with N > 0", check_heap),
            ],
            driver: None,
        },
        Case {
            // Bad configuration for this image: a clear error, and the app runs on.
            name: "hello_boots_without_a_stub_for_gdb",
            app: "hello",
            args: &["gdb=wait"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![
                Contains(
                    "gdb=wait: this image has no gdb stub: build it with `cargo xtask build <app> --gdb`",
                ),
                Contains("Hello, world!"),
            ],
            driver: None,
        },
        Case {
            name: "panic_is_reported",
            app: "selftest",
            args: &["test=panic", "log=warn"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Crash,
            checks: vec![
                Contains("PANIC"),
                Contains("deliberate panic"),
                Contains("apps/selftest/src/main.rs"),
                // Symbolized by xtask from the unstripped image: the panicking function by name.
                Contains("selftest::main at apps/selftest/src/main.rs"),
                Custom(
                    "info lines kept off the console by log=warn come out in the crash report",
                    check_flight_recorder,
                ),
                Custom("the crash report gives the heap's use", check_crash_heap),
            ],
            driver: None,
        },
        Case {
            name: "log_levels_per_module",
            app: "hello",
            args: &["log=error,mote::start=info"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains("[INFO  mote::start] domain ")],
            driver: None,
        },
        Case {
            name: "page_fault_is_reported",
            app: "selftest",
            args: &["test=pagefault"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Crash,
            checks: vec![
                Contains("EXCEPTION: page fault (#PF, vector 14)"),
                Contains("CR2=0x0000004000000000"),
                Contains("RIP="),
                Contains("RSP="),
                Contains("selftest::main at apps/selftest/src/main.rs"),
            ],
            driver: None,
        },
    ]
}

/// The console, xenstore, timers, the clock, the heap's reserve and `xl shutdown`/`reboot`.
pub(super) fn services() -> Vec<Case> {
    use Check::*;
    vec![
        Case {
            name: "long_line_arrives_whole",
            app: "selftest",
            args: &["test=longline", "len=10240"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Custom("LONGLINE of 10240 characters", check_long_line), Line("longline done")],
            driver: None,
        },
        Case {
            name: "console_bounds_its_wait_for_a_stopped_xenconsoled",
            app: "selftest",
            args: &["test=console-stall"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![
                Custom("the loss reported", check_console_loss),
                Contains("console-stall: 200 lines written in "),
            ],
            driver: Some(drive_console_stall),
        },
        Case {
            name: "xenstore_identity_write_and_watch",
            app: "selftest",
            args: &["test=xenstore"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("xenstore: dom0 wrote ping-from-dom0")],
            driver: Some(drive_xenstore),
        },
        Case {
            name: "timer_sleep_matches_dom0_clock",
            app: "selftest",
            args: &["test=timer"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Custom("the guest's PV clock measured 1 s", check_guest_sleep)],
            driver: Some(drive_timer),
        },
        Case {
            name: "pv_clock_agrees_with_xen_from_boot",
            app: "selftest",
            args: &["test=clock"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Custom("every PV clock reading was within 100 ms of Xen's clock", check_clock)],
            driver: None,
        },
        Case {
            name: "async_tasks_wake_on_timers_in_order",
            app: "selftest",
            args: &["test=async"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![
                Line("async: timeout fired: true"),
                Contains("async: woke in order [100, 200, 300] within"),
            ],
            driver: None,
        },
        Case {
            name: "heap_full_of_large_buffers_keeps_room_for_small_allocations",
            app: "selftest",
            args: &["test=heap-full"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![
                Custom("large buffers were refused with the heap's reserve left free", check_heap_reserve),
                Line("heap-full: 16 of 16 tasks allocated, timed out and slept with the heap full"),
                Line("heap-full: freed; a 64 KiB buffer fits again: true"),
                Custom("no panic", check_no_panic),
            ],
            driver: None,
        },
        Case {
            name: "xl_shutdown_powers_off",
            app: "selftest",
            args: &["test=wait"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("wait: Poweroff requested")],
            driver: Some(drive_shutdown),
        },
        Case {
            name: "xl_reboot_restarts",
            app: "selftest",
            args: &["test=wait"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("wait: Reboot requested"), Line("wait: Poweroff requested")],
            driver: Some(drive_reboot),
        },
    ]
}

/// Grants mapped by dom0, the idle guest as dom0 sees it, and the xenbus handshake.
pub(super) fn with_dom0() -> Vec<Case> {
    use Check::*;
    vec![
        Case {
            name: "grant_mapped_by_dom0_cannot_be_ended",
            app: "selftest",
            args: &["test=grant"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![
                Line("grant: rw dom0 wrote \"written by dom0\""),
                Line("grant: rw end_access while mapped: in use (ok)"),
                Line("grant: rw ended"),
                Line("grant: ro end_access while mapped: in use (ok)"),
                Line("grant: ro ended"),
            ],
            driver: Some(drive_grant),
        },
        Case {
            name: "idle_guest_does_not_spin",
            app: "selftest",
            args: &["test=idle", "secs=14"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("idle: done")],
            driver: Some(drive_idle),
        },
        Case {
            name: "xenbus_handshake_with_netback",
            app: "selftest",
            args: &["test=xenbus"],
            gdb: false,
            disk: false,
            xl: &[r#"vif=["bridge=xenbr0"]"#],
            reason: Reason::Poweroff,
            checks: vec![
                Line("xenbus: frontend Initialising"),
                Line("xenbus: backend InitWait"),
                Line("xenbus: frontend Closed, backend Closed"),
            ],
            driver: Some(drive_xenbus),
        },
    ]
}

/// A crash report's `heap: U of H bytes in use, at most M` line, with U <= M <= H and H > 0.
fn check_crash_heap(console: &str, _: &Image) -> Result<(), String> {
    let line = console.lines().find(|l| l.starts_with("heap: ")).ok_or("no `heap:` line")?;
    let numbers: Vec<u64> =
        line.split_whitespace().filter_map(|w| w.trim_end_matches(',').parse().ok()).collect();
    match numbers[..] {
        [used, size, most] if size > 0 && used <= most && most <= size => Ok(()),
        _ => Err(format!("implausible heap line {line:?}")),
    }
}

/// The heap's reserve for small allocations (runtime/src/heap.rs: `RESERVE`), and the size
/// of the smallest buffer the selftest takes (`LARGE`).
const HEAP_RESERVE: usize = 32 * 1024;
const HEAP_LARGE: usize = 4096;

/// `test=heap-full`'s first line: buffers of both sizes were taken, and the 4 KiB one refused
/// left at least the reserve free and less than the reserve and one more buffer.
fn check_heap_reserve(console: &str, _: &Image) -> Result<(), String> {
    let line = console
        .lines()
        .find_map(|l| l.strip_prefix("heap-full: took "))
        .ok_or("no `heap-full: took` line")?;
    // "N x 64 KiB and M x 4 KiB, then one was refused with U of S bytes in use"
    let numbers: Vec<usize> =
        line.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    let [large, _, small, _, in_use, size] = numbers[..] else {
        return Err(format!("unexpected line: {line:?}"));
    };
    let free = size.saturating_sub(in_use);
    if large == 0 || small == 0 || !(HEAP_RESERVE..HEAP_RESERVE + HEAP_LARGE).contains(&free) {
        return Err(format!(
            "expected 64 KiB and 4 KiB buffers taken until {HEAP_RESERVE}..{} bytes were free; {free} were: {line:?}",
            HEAP_RESERVE + HEAP_LARGE
        ));
    }
    println!("    {large} x 64 KiB and {small} x 4 KiB taken, then refused with {free} bytes free of {size}");
    Ok(())
}

/// Tolerance of the dom0-timed 1 s sleep: TCG and dom0's scheduling add jitter, and
/// `/proc/uptime` counts in 10 ms steps.
const DOM0_SLEEP_TOLERANCE: f64 = 0.15;
/// CPU seconds an idle guest may use over [`IDLE_WINDOW`] (xl shows tenths).
const IDLE_CPU_LIMIT: f64 = 0.1;
const IDLE_WINDOW: Duration = Duration::from_secs(10);

/// The guest names itself as xl does; dom0 reads what it wrote; dom0's write wakes its watch.
fn drive_xenstore(d: &mut Driver) -> Result<(), String> {
    let line = d.wait_line("xenstore: domid=")?;
    let domid = d.domid()?;
    let expected = format!("xenstore: domid={domid} name={}", d.name);
    if line != expected {
        return Err(format!("guest said {line:?}, xl says {expected:?}"));
    }
    d.wait_line("xenstore: watching data/from-dom0")?;
    let home = format!("/local/domain/{domid}");
    let value = d.dom0(&format!("xenstore-read {home}/data/from-guest"))?;
    if value.trim() != "written by selftest" {
        return Err(format!("dom0 read {value:?} from data/from-guest"));
    }
    d.dom0(&format!("xenstore-write {home}/data/from-dom0 ping-from-dom0"))?;
    d.wait_line("xenstore: dom0 wrote")?;
    Ok(())
}

/// dom0 timestamps the guest's `start` and `end` writes around its 1 s sleep with its own
/// clock; the interval must be 1 s within [`DOM0_SLEEP_TOLERANCE`].
fn drive_timer(d: &mut Driver) -> Result<(), String> {
    d.wait_line("xenstore: watching data/go")?;
    let home = format!("/local/domain/{}", d.domid()?);
    let (tx, events) = mpsc::channel();
    // The watch fires once when set, then on `start` and on `end`; `read` is a shell builtin,
    // so no process start delays the timestamp.
    let _watch = d.agent.spawn(
        &format!(
            "xenstore-watch -n 3 {home}/data/timer | while read -r path; do read -r up idle </proc/uptime; echo \"$up $(xenstore-read $path 2>/dev/null)\"; done"
        ),
        (),
        tx,
    )?;
    let mut stamps = Vec::new();
    let mut text = String::new();
    let deadline = Instant::now() + DRIVER_WAIT;
    while stamps.len() < 3 {
        match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(((), Event::Output(chunk))) => {
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(nl) = text.find('\n') {
                    let line: String = text.drain(..=nl).collect();
                    let mut fields = line.split_whitespace();
                    let t: f64 = fields
                        .next()
                        .and_then(|t| t.parse().ok())
                        .ok_or_else(|| format!("dom0 printed {line:?}"))?;
                    let value = fields.next().unwrap_or("");
                    // Event 1 is the watch being set (no value yet); then `start`, then `end`.
                    let expected = ["", "start", "end"][stamps.len()];
                    if value != expected {
                        return Err(format!(
                            "watch event {} saw {value:?}, expected {expected:?}",
                            stamps.len() + 1
                        ));
                    }
                    stamps.push(t);
                    if stamps.len() == 1 {
                        d.dom0(&format!("xenstore-write {home}/data/go 1"))?;
                    }
                }
            }
            Ok(((), Event::Exit(status))) => {
                return Err(format!("xenstore-watch ended (status {status}) after {} events", stamps.len()))
            }
            Ok(((), Event::Failed(e))) => return Err(e),
            Err(_) => return Err(format!("dom0 saw {} of 3 watch events in {DRIVER_WAIT:?}", stamps.len())),
        }
    }
    d.dom0(&format!("xenstore-write {home}/data/timer-read 1"))?;
    let interval = stamps[2] - stamps[1];
    if (interval - 1.0).abs() > DOM0_SLEEP_TOLERANCE {
        return Err(format!("dom0 timed the guest's 1 s sleep as {interval:.3} s"));
    }
    println!("    dom0 timed the 1 s sleep as {interval:.3} s");
    Ok(())
}

/// `timer: slept N ns` with N within a millisecond above 1 s (never below).
fn check_guest_sleep(console: &str, _: &Image) -> Result<(), String> {
    let line = console.lines().find(|l| l.starts_with("timer: slept ")).ok_or("no `timer: slept` line")?;
    let ns: u64 = line
        .trim_start_matches("timer: slept ")
        .trim_end_matches(" ns")
        .parse()
        .map_err(|_| format!("cannot read {line:?}"))?;
    if !(1_000_000_000..1_020_000_000).contains(&ns) {
        return Err(format!("the guest measured its 1 s sleep as {ns} ns"));
    }
    Ok(())
}

/// `test=clock` took enough readings over its 2 s, none astray.
fn check_clock(console: &str, _: &Image) -> Result<(), String> {
    let line = console.lines().find(|l| l.starts_with("clock: ") && l.contains(" readings in "));
    let line = line.ok_or("no `clock: N readings` line")?;
    let numbers: Vec<u64> =
        line.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    let [readings, ms, behind, ahead, _margin, _, _] = numbers[..] else {
        return Err(format!("cannot read {line:?}"));
    };
    if behind + ahead > 0 {
        let first = console.lines().find(|l| l.starts_with("clock: first stray")).unwrap_or_default();
        return Err(format!("{behind} readings behind and {ahead} ahead of Xen's clock; {first}"));
    }
    // A reading every millisecond or so; far fewer means the loop did not run as meant.
    if readings < 200 || ms < 2000 {
        return Err(format!("only {readings} readings in {ms} ms"));
    }
    Ok(())
}

/// `xl shutdown` ends the waiting guest, as poweroff, within [`SHUTDOWN_LIMIT`].
fn drive_shutdown(d: &mut Driver) -> Result<(), String> {
    d.wait_line("wait: waiting for shutdown")?;
    let started = Instant::now();
    d.dom0(&format!("xl shutdown -w {}", d.name))?;
    let took = started.elapsed();
    if took > SHUTDOWN_LIMIT {
        return Err(format!("`xl shutdown -w` took {took:?}"));
    }
    Ok(())
}

/// `xl reboot` brings the guest back (it boots and waits again), then `xl shutdown` ends it.
fn drive_reboot(d: &mut Driver) -> Result<(), String> {
    d.wait_line("wait: waiting for shutdown")?;
    let first = d.domid()?;
    d.dom0(&format!("xl reboot {}", d.name))?;
    d.wait_line("wait: Reboot requested")?;
    d.wait_line("wait: waiting for shutdown")?;
    let second = d.domid()?;
    if second == first {
        return Err(format!("still domain {first} after the reboot"));
    }
    d.dom0(&format!("xl shutdown -w {}", d.name))?;
    Ok(())
}

/// The guest names netback's directory for its vif; dom0 reads both ends' states
/// (`io/xenbus.h` numbers) at InitWait and after the close.
fn drive_xenbus(d: &mut Driver) -> Result<(), String> {
    let line = d.wait_line("xenbus: backend /")?;
    let domid = d.domid()?;
    let backend = format!("/local/domain/0/backend/vif/{domid}/0");
    if line != format!("xenbus: backend {backend} id 0") {
        return Err(format!("guest said {line:?}; the backend is {backend} in domain 0"));
    }
    let home = format!("/local/domain/{domid}");
    let states = |d: &Driver| -> Result<(String, String), String> {
        let front = d.dom0(&format!("xenstore-read {home}/device/vif/0/state"))?;
        let back = d.dom0(&format!("xenstore-read {backend}/state"))?;
        Ok((front.trim().to_owned(), back.trim().to_owned()))
    };
    d.wait_line("xenbus: backend InitWait")?;
    let (front, back) = states(d)?;
    if (front.as_str(), back.as_str()) != ("1", "2") {
        return Err(format!("at InitWait dom0 reads frontend state {front:?}, backend {back:?}"));
    }
    d.dom0(&format!("xenstore-write {home}/data/xenbus-close 1"))?;
    d.wait_line("xenbus: frontend Closed")?;
    let (front, back) = states(d)?;
    if (front.as_str(), back.as_str()) != ("6", "6") {
        return Err(format!("after the close dom0 reads frontend state {front:?}, backend {back:?}"));
    }
    d.dom0(&format!("xenstore-write {home}/data/xenbus-done 1"))?;
    Ok(())
}

/// The guest's CPU time in `xl list` barely moves while it sleeps.
fn drive_idle(d: &mut Driver) -> Result<(), String> {
    d.wait_line("idle: sleeping")?;
    let cpu = |d: &Driver| -> Result<f64, String> {
        let out = d.dom0(&format!("xl list {}", d.name))?;
        let row = out.lines().last().unwrap_or_default();
        row.split_whitespace()
            .nth(5)
            .and_then(|t| t.parse().ok())
            .ok_or(format!("cannot read `xl list`: {out:?}"))
    };
    let before = cpu(d)?;
    thread::sleep(IDLE_WINDOW);
    let used = cpu(d)? - before;
    if used > IDLE_CPU_LIMIT {
        return Err(format!("the idle guest used {used:.1} s of CPU in {IDLE_WINDOW:?}"));
    }
    println!("    idle guest used {used:.1} s of CPU in {IDLE_WINDOW:?}");
    Ok(())
}

/// What dom0 writes into the page the guest grants read-write.
const DOM0_GRANT_TEXT: &str = "written by dom0";

/// dom0 maps the page the guest grants, read-write then read-only, with `mote-agent gnt-map`
/// and reads the guest's text; the guest must fail to end each grant while the mapping is held
/// and succeed once it is released. A read-only grant must not map writable.
fn drive_grant(d: &mut Driver) -> Result<(), String> {
    for (label, write) in [("rw", Some(DOM0_GRANT_TEXT)), ("ro", None)] {
        let line = d.wait_line(&format!("grant: {label} ref="))?;
        let gref: u32 = line
            .rsplit_once("ref=")
            .and_then(|(_, r)| r.parse().ok())
            .ok_or_else(|| format!("cannot read the reference in {line:?}"))?;
        let domid = d.domid()?;
        let map = format!("exec /mote/agent gnt-map {domid} {gref}");
        if write.is_none() {
            let (status, out) = d.agent.run(&format!("{map} --write x --hold 1"), DRIVER_WAIT)?;
            if status == 0 || out.contains("gnt-map: wrote") {
                return Err(format!("dom0 mapped the read-only grant {gref} writable: {}", out.trim_end()));
            }
            println!("    dom0 could not map the read-only grant writable: {}", out.trim_end());
        }
        let options = write.map(|text| format!(" --write {}", sh_quote(text))).unwrap_or_default();
        let mut mapping = Dom0Command::start(&d.agent, &format!("{map}{options}"))?;
        let read = mapping.wait_line("gnt-map: read ")?;
        let expected = format!("gnt-map: read \"mote grant {label} test\"");
        if read != expected {
            return Err(format!("dom0 printed {read:?}, expected {expected:?}"));
        }
        let holding = mapping.wait_line("gnt-map: holding (pid ")?;
        let pid: u32 = holding
            .trim_start_matches("gnt-map: holding (pid ")
            .trim_end_matches(')')
            .parse()
            .map_err(|_| format!("cannot read the pid in {holding:?}"))?;
        d.dom0(&format!("xenstore-write /local/domain/{domid}/data/grant-{label}-mapped 1"))?;
        d.wait_line(&format!("grant: {label} end_access while mapped: in use (ok)"))?;
        d.dom0(&format!("kill -TERM {pid}"))?;
        mapping.wait_line("gnt-map: unmapped")?;
        match mapping.wait_exit()? {
            0 => {}
            status => return Err(format!("gnt-map exited with status {status}")),
        }
        d.wait_line(&format!("grant: {label} ended"))?;
    }
    Ok(())
}

/// A dom0 command running alongside the guest, its output read line by line. Dropping it kills
/// the command.
struct Dom0Command {
    _exec: Exec,
    events: mpsc::Receiver<((), Event)>,
    /// Output not yet returned as a line.
    pending: String,
}

impl Dom0Command {
    fn start(agent: &Agent, command: &str) -> Result<Dom0Command, String> {
        let (tx, events) = mpsc::channel();
        let exec = agent.spawn(command, (), tx)?;
        Ok(Dom0Command { _exec: exec, events, pending: String::new() })
    }

    /// The next output event, within [`DRIVER_WAIT`].
    fn next(&mut self) -> Result<Event, String> {
        self.events.recv_timeout(DRIVER_WAIT).map(|((), e)| e).map_err(|_| {
            format!("dom0 command silent for {DRIVER_WAIT:?}; pending output {:?}", self.pending)
        })
    }

    /// Waits for the next output line containing `text` (lines before it are skipped).
    fn wait_line(&mut self, text: &str) -> Result<String, String> {
        loop {
            while let Some(nl) = self.pending.find('\n') {
                let line: String = self.pending.drain(..=nl).collect();
                if line.contains(text) {
                    return Ok(line.trim_end().to_owned());
                }
            }
            match self.next()? {
                Event::Output(chunk) => self.pending.push_str(&String::from_utf8_lossy(&chunk)),
                Event::Exit(status) => {
                    return Err(format!(
                        "dom0 command exited ({status}) before printing {text:?}: {:?}",
                        self.pending
                    ))
                }
                Event::Failed(e) => return Err(e),
            }
        }
    }

    /// Waits for the command to end; its exit status.
    fn wait_exit(&mut self) -> Result<i32, String> {
        loop {
            match self.next()? {
                Event::Output(chunk) => self.pending.push_str(&String::from_utf8_lossy(&chunk)),
                Event::Exit(status) => return Ok(status),
                Event::Failed(e) => return Err(e),
            }
        }
    }
}

/// With `log=warn` the info lines stay off the console until the crash report's flight recorder
/// prints them.
fn check_flight_recorder(console: &str, _: &Image) -> Result<(), String> {
    let (before, after) = console
        .split_once("last log lines, oldest first:")
        .ok_or("no `last log lines` in the crash report")?;
    for line in ["[INFO  mote::start] domain ", "[INFO  selftest] selftest: about to panic"] {
        if before.contains(line) {
            return Err(format!("{line:?} reached the console despite log=warn"));
        }
        if !after.contains(line) {
            return Err(format!("the flight recorder lacks {line:?}"));
        }
    }
    Ok(())
}

/// A line `memory map:` followed by `  [0xSTART-0xEND] TYPE` lines, of which the `RAM` ones add
/// up to between 2 MiB and the configured memory.
fn check_memory_map(console: &str, image: &Image) -> Result<(), String> {
    let mut lines = console.lines().skip_while(|l| !l.starts_with("memory map:"));
    lines.next().ok_or("no line starting with `memory map:`")?;
    let entries: Vec<(u64, u64, &str)> = lines.map_while(parse_map_entry).collect();
    let ram: Vec<_> = entries.iter().filter(|(_, _, kind)| kind.starts_with("RAM")).collect();
    if ram.is_empty() {
        return Err(format!(
            "no `  [0x…-0x…] RAM` entry after `memory map:` ({} other entries)",
            entries.len()
        ));
    }
    // END may be inclusive or exclusive: allow a byte per entry.
    let total: u64 = ram.iter().map(|(start, end, _)| end - start).sum();
    let configured = u64::from(image.meta.memory_mib) << 20;
    let slack = ram.len() as u64;
    if total < 2 << 20 || total > configured + slack {
        return Err(format!(
            "RAM in the memory map adds up to {total} bytes ({:.2} MiB); expected between 2 MiB and the configured {} MiB",
            total as f64 / (1 << 20) as f64,
            image.meta.memory_mib
        ));
    }
    Ok(())
}

/// Parses `  [0xSTART-0xEND] TYPE…`.
fn parse_map_entry(line: &str) -> Option<(u64, u64, &str)> {
    let rest = line.strip_prefix("  [0x")?;
    let (start, rest) = rest.split_once("-0x")?;
    let (end, kind) = rest.split_once("] ")?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    (end >= start).then_some((start, end, kind.trim()))
}

/// A line `heap: <N> bytes` with N > 0 (more may follow: `heap: 4096 bytes in 1 spans`).
fn check_heap(console: &str, _: &Image) -> Result<(), String> {
    let line = console.lines().find(|l| l.starts_with("heap: ")).ok_or("no line starting with `heap: `")?;
    let n = line
        .strip_prefix("heap: ")
        .and_then(|r| r.split_once(" bytes").filter(|(_, rest)| rest.is_empty() || rest.starts_with(' ')))
        .and_then(|(n, _)| n.parse::<u64>().ok())
        .ok_or_else(|| format!("{line:?} is not `heap: <N> bytes`"))?;
    if n == 0 {
        return Err("heap is 0 bytes".into());
    }
    Ok(())
}

/// xenconsoled stopped (SIGSTOP) while the selftest writes 20 000 bytes into its 2 KiB console
/// ring: the writes must give up within a bounded time (the guest says so through xenstore,
/// which xenconsoled does not serve); then xenconsoled goes on, and the console shows how many
/// bytes were dropped. Before issue #29's fix the guest waited for ever.
fn drive_console_stall(d: &mut Driver) -> Result<(), String> {
    d.wait_first_line("console-stall: waiting for dom0")?;
    d.wait_line("xenstore: watching data/go")?;
    let home = format!("/local/domain/{}", d.domid()?);
    d.dom0("kill -STOP $(pidof xenconsoled)")?;
    let flooded = (|| {
        d.dom0(&format!("xenstore-write {home}/data/go 1"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(ms) = d.dom0(&format!("xenstore-read {home}/data/flooded")) {
                return Ok(ms.trim().to_owned());
            }
            if Instant::now() > deadline {
                return Err("the guest did not finish writing within 60 s of xenconsoled stopping".to_owned());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })();
    // xenconsoled goes on whatever happened: later cases need it.
    d.dom0("kill -CONT $(pidof xenconsoled)")?;
    let ms = flooded?;
    println!("    20 000 bytes written in {ms} ms with xenconsoled stopped");
    d.dom0(&format!("xenstore-write {home}/data/resumed 1"))?;
    Ok(())
}

/// The console of [`drive_console_stall`]: the ring's worth written before xenconsoled
/// stopped, then `[console: N bytes dropped]` with N the rest, then the guest's last line.
fn check_console_loss(console: &str, _: &Image) -> Result<(), String> {
    let dropped: u64 = console
        .lines()
        .find_map(|l| l.strip_prefix("[console: ")?.strip_suffix(" bytes dropped]")?.parse().ok())
        .ok_or("no `[console: N bytes dropped]` line")?;
    let written = console.lines().filter(|l| l.starts_with("console-stall: line ")).count();
    // 200 lines of 105 bytes (with "\r\n"), of which the 2 KiB ring holds about 20.
    if written >= 200 || dropped < 10_000 {
        return Err(format!("{written} of 200 lines shown and {dropped} bytes reported dropped"));
    }
    Ok(())
}

/// The line the selftest prints for `test=longline len=N`.
pub fn long_line(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut line = String::from("LONGLINE ");
    line.extend((0..len).map(|i| ALPHABET[i % ALPHABET.len()] as char));
    line
}

fn check_long_line(console: &str, _: &Image) -> Result<(), String> {
    let expected = long_line(10240);
    if console.lines().any(|l| l == expected) {
        return Ok(());
    }
    let found: Vec<&str> = console.lines().filter(|l| l.starts_with("LONGLINE")).collect();
    if found.is_empty() {
        return Err("no line starting with `LONGLINE`".into());
    }
    let details: Vec<String> = found
        .iter()
        .map(|l| {
            let at = l.bytes().zip(expected.bytes()).position(|(a, b)| a != b).unwrap_or(l.len().min(expected.len()));
            let payload = l.len().saturating_sub("LONGLINE ".len());
            format!("a LONGLINE line with {payload} characters after `LONGLINE ` (expected 10240) first differs at column {at}")
        })
        .collect();
    Err(details.join("; "))
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::tests::unit::image;

    #[test]
    fn the_heap_reserve_check_wants_the_reserve_free_and_no_more() {
        let line = |in_use: usize| {
            format!("heap-full: took 25 x 64 KiB and 9 x 4 KiB, then one was refused with {in_use} of 1757184 bytes in use\n")
        };
        let image = image(4);
        assert!(check_heap_reserve(&line(1757184 - 33000), &image).is_ok());
        // Nearly full (no reserve) or refused early (a reserve larger than the buffer).
        assert!(check_heap_reserve(&line(1757184 - 1500), &image).is_err());
        assert!(check_heap_reserve(&line(1757184 - 40000), &image).is_err());
        assert!(check_heap_reserve(&line(1757184 - 33000).replace("9 x", "0 x"), &image).is_err());
        assert!(check_heap_reserve("heap-full: freed\n", &image).is_err());
    }

    #[test]
    fn the_clock_check_wants_no_stray_reading_and_enough_of_them() {
        let line = |readings: u32, behind: u32, ahead: u32| {
            format!(
                "clock: {readings} readings in 2001 ms: {behind} behind and {ahead} ahead of Xen's clock \
                 by more than 100 ms (at most 0 us behind, 3 us ahead)\n"
            )
        };
        let image = image(4);
        assert_eq!(check_clock(&line(2164, 0, 0), &image), Ok(()));
        let stray =
            line(2164, 3, 0) + "clock: first stray: read 5 ns after being scheduled at 900000000 ns\n";
        let err = check_clock(&stray, &image).unwrap_err();
        assert!(err.contains("3 readings behind") && err.contains("scheduled at 900000000"), "{err}");
        assert!(check_clock(&line(2164, 0, 1), &image).is_err());
        assert!(check_clock(&line(150, 0, 0), &image).is_err());
        assert!(check_clock("clock: garbled\n", &image).is_err());
    }

    #[test]
    fn memory_map_check() {
        let real = "memory map: 5 entries\n  [0x0000000000000000-0x00000000003fffff] RAM (4096 KiB)\n  [0x00000000feff8000-0x00000000feffffff] reserved (32 KiB)\n";
        assert_eq!(check_memory_map(real, &image(4)), Ok(()));
        let good = "boot\nmemory map:\n  [0x0000000000000000-0x000000000009f000] RAM\n  [0x0000000000100000-0x0000000000400000] RAM\n  [0x00000000fc000000-0x00000000fc009000] reserved\nheap: 4096 bytes\n";
        assert_eq!(check_memory_map(good, &image(4)), Ok(()));
        // Too much RAM for 4 MiB.
        let big = "memory map:\n  [0x0-0x1000000] RAM\n";
        assert!(check_memory_map(big, &image(4)).is_err());
        assert_eq!(check_memory_map(big, &image(16)), Ok(()));
        // Too little, none, no header.
        assert!(check_memory_map("memory map:\n  [0x0-0x1000] RAM\n", &image(4)).is_err());
        assert!(check_memory_map("memory map:\n  [0x0-0x400000] reserved\n", &image(4)).is_err());
        assert!(check_memory_map("  [0x0-0x400000] RAM\n", &image(4)).is_err());
        // Entries must follow the header directly.
        assert!(check_memory_map("memory map:\nother\n  [0x0-0x300000] RAM\n", &image(4)).is_err());
    }

    #[test]
    fn heap_check() {
        assert_eq!(check_heap("x\nheap: 1048576 bytes\n", &image(4)), Ok(()));
        assert_eq!(check_heap("heap: 2985984 bytes in 1 spans\n", &image(4)), Ok(()));
        assert!(check_heap("heap: 12 bytesx\n", &image(4)).is_err());
        assert!(check_heap("heap: 0 bytes\n", &image(4)).is_err());
        assert!(check_heap("heap: many bytes\n", &image(4)).is_err());
        assert!(check_heap("no heap\n", &image(4)).is_err());
    }

    #[test]
    fn long_line_check() {
        assert_eq!(&long_line(40)[..], "LONGLINE 0123456789abcdefghijklmnopqrstuvwxyz0123");
        let good = format!("start\n{}\nlongline done\n", long_line(10240));
        assert_eq!(check_long_line(&good, &image(4)), Ok(()));
        let mut cut = long_line(10240);
        cut.truncate(4000);
        let err = check_long_line(&format!("{cut}\n"), &image(4)).unwrap_err();
        assert!(err.contains("3991 characters after"), "{err}");
        assert!(check_long_line("nothing\n", &image(4)).is_err());
    }
}
