//! `cargo xtask test`: host unit tests, then integration cases run under real Xen in one
//! harness. The cases are the table in [`cases`].

use crate::agent::{sh_quote, Agent, Event, Exec};
use crate::assets;
use crate::build::{self, Image};
use crate::forward;
use crate::guest::{self, Reason};
use crate::harness::{self, Harness};
use crate::{run_status, workspace_root};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

mod content;
mod hosted;
mod isn;

/// A case that has not ended by then fails (and its domain is destroyed). The longest, 1000
/// web connections, took 124 s with five other harnesses sharing the host's two cores.
const CASE_TIMEOUT: Duration = Duration::from_secs(300);
/// Console lines shown with a failure.
const EXCERPT_LINES: usize = 40;
/// Longest console line shown in full in an excerpt.
const EXCERPT_WIDTH: usize = 300;

/// The console checks of the disk-detach cases: blkfront's detach, close and give-back lines,
/// then the selftest's own report `last`.
fn detach_checks(last: &'static str) -> Vec<Check> {
    vec![
        Check::Contains("blkfront: the disk was detached (backend Closing);"),
        Check::Contains("disk: vbd 51712: closed (backend "),
        Check::Contains("disk: vbd 51712: gave back 136 granted pages and the event channel"),
        Check::Contains(last),
    ]
}

/// One check of a case's console text.
pub enum Check {
    /// The console contains this text somewhere.
    Contains(&'static str),
    /// The console has a line exactly equal to this.
    Line(&'static str),
    /// A named check in code; gets the console and the image (for its configuration).
    Custom(&'static str, fn(&str, &Image) -> Result<(), String>),
}

/// An integration case: boot `app` with `args`, expect `reason` and every check to pass.
pub struct Case {
    pub name: &'static str,
    pub app: &'static str,
    pub args: &'static [&'static str],
    /// Built with the gdb stub (`cargo xtask build --gdb`), for cases that use `gdb=`.
    pub gdb: bool,
    /// Built with the content-disk reader (`cargo xtask build --disk-support`), for cases
    /// that attach a content disk the app reads.
    pub disk: bool,
    /// Overrides of the app's xl config for this case (`key=value`, e.g. a `vif`).
    pub xl: &'static [&'static str],
    pub reason: Reason,
    pub checks: Vec<Check>,
    /// Acts on the running guest from dom0 (`xl shutdown`, `xenstore-write`, …) and checks
    /// what it sees; `None` lets the guest run on its own.
    pub driver: Option<DriverFn>,
}

impl Case {
    /// How its app's image is built.
    fn flavor(&self) -> build::Flavor {
        build::Flavor { gdb: self.gdb, disk: self.disk, ..build::Flavor::RELEASE }
    }
}

/// A case's driver; an `Err` fails the case and destroys the domain.
pub type DriverFn = fn(&mut Driver) -> Result<(), String>;

/// What a case's driver works with: the guest's console as it arrives, and dom0.
pub struct Driver {
    pub agent: Agent,
    /// The domain's name (the app's).
    pub name: &'static str,
    /// The unstripped copy of the image the guest runs (for gdb).
    pub debug_elf: std::path::PathBuf,
    lines: mpsc::Receiver<String>,
    /// The app's forwarded ports, for the first case of that app that runs (so a case that
    /// uses them comes first among its app's cases).
    pub forwards: Vec<forward::Plan>,
}

/// How long a driver waits for one console line or dom0 command.
const DRIVER_WAIT: Duration = Duration::from_secs(30);

impl Driver {
    /// Waits for the next console line containing `text` (lines before it are skipped);
    /// returns the line.
    pub fn wait_line(&mut self, text: &str) -> Result<String, String> {
        self.wait_line_of(text, &[text])
    }

    /// [`Driver::wait_line`] for the next line containing any of `texts` (`what` names them
    /// in the error).
    pub fn wait_line_of(&mut self, what: &str, texts: &[&str]) -> Result<String, String> {
        let deadline = Instant::now() + DRIVER_WAIT;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if texts.iter().any(|t| line.contains(t)) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!("no console line containing {what:?} within {DRIVER_WAIT:?}"))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("the guest ended before printing {what:?}"))
                }
            }
        }
    }

    /// [`Driver::wait_line`] for up to four driver waits, for a guest's first lines: on a
    /// loaded host, creating the domain (hotplug scripts in the emulated dom0) has taken over
    /// a minute.
    pub fn wait_first_line(&mut self, text: &str) -> Result<String, String> {
        let mut tries = 0;
        loop {
            match self.wait_line(text) {
                Err(e) if e.starts_with("no console line") && tries < 3 => tries += 1,
                result => return result,
            }
        }
    }

    /// Runs a shell command in dom0; its output, or an error naming it when it fails.
    pub fn dom0(&self, command: &str) -> Result<String, String> {
        self.agent.run_ok(command, DRIVER_WAIT)
    }

    /// The guest's domain id, from `xl domid`.
    pub fn domid(&self) -> Result<u32, String> {
        let out = self.dom0(&format!("xl domid {}", self.name))?;
        out.trim().parse().map_err(|_| format!("`xl domid {}` printed {out:?}", self.name))
    }
}

/// A selftest case that commits a memory-protection violation: the domain crashes with
/// `checks` in its report, and the boot said what protects it.
fn violation_case(name: &'static str, args: &'static [&'static str], mut checks: Vec<Check>) -> Case {
    checks.push(Check::Contains("security: W^X on, guard pages on, KASLR off, entropy from "));
    checks.push(Check::Custom("the violation is not survived", check_not_survived));
    Case {
        name,
        app: "selftest",
        args,
        gdb: false,
        disk: false,
        xl: &[],
        reason: Reason::Crash,
        checks,
        driver: None,
    }
}

fn check_not_survived(console: &str, _: &Image) -> Result<(), String> {
    match console.lines().find(|l| l.ends_with(": survived")) {
        Some(line) => Err(format!("the selftest went on after its violation: {line:?}")),
        None => Ok(()),
    }
}

/// The integration cases, in the order they run.
pub fn cases() -> Vec<Case> {
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
                Contains("gdb=wait: this image has no gdb stub: build it with `cargo xtask build <app> --gdb`"),
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
        // Memory protection: each selftest mode commits one violation; the report names it and
        // the function. Without the protection the selftest says "survived" and powers off.
        violation_case(
            "protection_refuses_writing_text",
            &["test=write-text"],
            vec![
                Contains("page fault: protection violation on kernel write"),
                Contains("violation: write to read-only memory (.text)"),
                Contains("selftest::write_text at apps/selftest/src/main.rs"),
            ],
        ),
        violation_case(
            "protection_refuses_writing_rodata",
            &["test=write-rodata"],
            vec![
                Contains("page fault: protection violation on kernel write"),
                Contains("violation: write to read-only memory (.rodata)"),
                Contains("selftest::write_rodata at apps/selftest/src/main.rs"),
            ],
        ),
        violation_case(
            "protection_refuses_executing_the_heap",
            &["test=exec-heap"],
            vec![
                Contains("page fault: protection violation on kernel instruction fetch"),
                Contains("violation: execution of non-executable memory (the heap)"),
                // Named by the return address the call into data left on the stack.
                Contains("selftest::exec_heap at apps/selftest/src/main.rs"),
            ],
        ),
        violation_case(
            "protection_refuses_executing_the_stack",
            &["test=exec-stack"],
            vec![
                Contains("page fault: protection violation on kernel instruction fetch"),
                Contains("violation: execution of non-executable memory (the boot stack)"),
                Contains("selftest::exec_stack at apps/selftest/src/main.rs"),
            ],
        ),
        violation_case(
            "protection_reports_a_null_dereference",
            &["test=null"],
            vec![
                Contains("page fault: page not present on kernel read"),
                Contains("violation: null pointer dereference (address 0x8, in page 0)"),
                Contains("selftest::null at apps/selftest/src/main.rs"),
            ],
        ),
        violation_case(
            "protection_stops_a_stack_overflow_at_its_guard_page",
            &["test=stack-overflow"],
            vec![
                // The page fault cannot be pushed on the full stack: a double fault, on its own
                // stack, reports it.
                Contains("EXCEPTION: double fault (#DF, vector 8)"),
                Contains("violation: the boot stack's guard page hit: stack overflow"),
                Contains("selftest::stack_overflow at apps/selftest/src/main.rs"),
            ],
        ),
        violation_case(
            "protection_reports_reading_a_guard_page",
            &["test=guard-read"],
            vec![
                Contains("page fault: page not present on kernel read"),
                Contains("violation: the boot stack's guard page hit: stack overflow"),
                Contains("selftest::guard_read at apps/selftest/src/main.rs"),
            ],
        ),
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
        Case {
            name: "two_boots_draw_different_random_bytes",
            app: "selftest",
            args: &["test=random"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("wait: Reboot requested"), Line("wait: Poweroff requested")],
            driver: Some(drive_random_reboot),
        },
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
        Case {
            name: "disk_written_flushed_and_hashed_by_dom0",
            app: "selftest",
            // Under the driver's wait: a stalled transfer is reported by the guest too.
            args: &["test=disk", "disk_timeout_s=15"],
            gdb: false,
            disk: false,
            xl: &[DISK_RW],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("disk: wrote and flushed 67108864 bytes"),
                Contains("disk: vbd 51712: ring 4 pages, indirect 32 segments, persistent grants, discard"),
                Custom("indirect requests, 4 or more in flight", check_disk_stats),
            ],
            driver: Some(drive_disk_hash),
        },
        Case {
            name: "disk_read_back_on_a_second_boot",
            app: "selftest",
            args: &["test=disk-verify"],
            gdb: false,
            disk: false,
            xl: &[DISK_RW],
            reason: Reason::Poweroff,
            checks: vec![Contains("disk: read and verified 67108864 bytes")],
            driver: None,
        },
        Case {
            name: "disk_discard_punches_a_hole_dom0_sees",
            app: "selftest",
            args: &["test=disk-discard"],
            gdb: false,
            disk: false,
            xl: &[DISK_DISCARD],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("disk: vbd 51712: ring 4 pages, indirect 32 segments, persistent grants, discard"),
                Contains("disk: discarded 4194304 bytes at byte 2097152"),
                Contains("disk: read and verified 8388608 bytes"),
                Custom("indirect requests, 4 or more in flight", check_disk_stats),
            ],
            driver: Some(drive_disk_discard),
        },
        Case {
            name: "disk_async_tasks_keep_many_requests_in_flight",
            app: "selftest",
            args: &["test=disk-async", "tasks=64", "reads=16"],
            gdb: false,
            disk: false,
            xl: &[DISK_ASYNC],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("disk-async: 1024 reads of 4 KiB by 64 tasks verified"),
                Custom("more requests in flight than a one-page ring holds", check_disk_async),
            ],
            driver: None,
        },
        Case {
            name: "disk_read_only_refuses_writes",
            app: "selftest",
            args: &["test=disk-ro"],
            gdb: false,
            disk: false,
            xl: &[DISK_RO],
            reason: Reason::Poweroff,
            checks: vec![Line("disk: write refused: the disk is read-only")],
            driver: None,
        },
        Case {
            name: "disk_detached_while_read_fails_the_reads_and_the_guest_runs_on",
            app: "selftest",
            args: &["test=disk-detach"],
            gdb: false,
            disk: false,
            xl: &[DISK_ASYNC],
            reason: Reason::Poweroff,
            checks: detach_checks(
                "a later read failed (the disk was detached (its backend went to Closing))",
            ),
            driver: Some(drive_disk_detach),
        },
        Case {
            name: "disk_detached_and_attached_again_is_offered_to_the_app",
            app: "selftest",
            args: &["test=disk-reattach"],
            gdb: false,
            disk: false,
            xl: &[DISK_REATTACH],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("disk-reattach: vbd 51712 reads: disk-a"),
                Contains("disk: vbd 51712: closed (backend "),
                Contains("disk: xvda (vbd 51712) attached"),
                Contains("disk-reattach: xvda (vbd 51712) connected, reads: disk-b"),
                Contains("disk: xvdb (vbd 51728) attached"),
                Contains("disk-reattach: xvdb (vbd 51728) connected, reads: disk-c"),
            ],
            driver: Some(drive_disk_reattach),
        },
        Case {
            name: "disk_detached_under_a_blocking_read_fails_it_and_the_guest_runs_on",
            app: "selftest",
            args: &["test=disk-detach-blocking"],
            gdb: false,
            disk: false,
            xl: &[DISK_ASYNC],
            reason: Reason::Poweroff,
            checks: detach_checks(
                "reads: the disk was detached (its backend went to Closing); a later read failed (the disk was detached (its backend went to Closing))",
            ),
            driver: Some(drive_disk_detach),
        },
        Case {
            name: "forwards_reach_echo_from_host_loopback",
            app: "echo",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_forwards),
        },
        Case {
            name: "net_dhcp_ping_and_udp_echo",
            app: "echo",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains("via DHCP, gateway 10.0.0.1"), Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_dhcp_echo),
        },
        Case {
            name: "net_static_ipv4_and_ipv6",
            app: "echo",
            args: &["ip=10.0.0.2/24", "gw=10.0.0.1", "ip6=fd00::2/64"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("net: 10.0.0.2/24 (static), gateway 10.0.0.1"),
                Contains("net: fd00::2/64 (static)"),
                // What Linux's netback offers, taken: checksums left to it both ways.
                Contains(
                    "; rx checksum offload on, tx checksum offload on (IPv4) on (IPv6), rx scatter-gather on, GSO (TCP/IPv4) rx on tx on",
                ),
            ],
            driver: Some(drive_static_echo),
        },
        Case {
            name: "netfront_offloads_off_still_echo_ipv4_and_ipv6",
            app: "echo",
            args: &["ip=10.0.0.12/24", "ip6=fd00::12/64", "netfront=no-csum-offload,no-sg"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains(
                "; rx checksum offload off, tx checksum offload off (IPv4) off (IPv6), rx scatter-gather off, GSO (TCP/IPv4) rx off tx off",
            )],
            driver: Some(drive_offloads_off),
        },
        Case {
            name: "vif_mote_hotplug_helper_serves_and_names_a_missing_bridge",
            app: "echo",
            args: &["ip=10.0.0.13/24"],
            gdb: false,
            disk: false,
            xl: &[r#"vif=["bridge=xenbr0,script=vif-mote"]"#],
            reason: Reason::Poweroff,
            checks: vec![Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_vif_mote),
        },
        Case {
            name: "tcp_echo_50mb_byte_for_byte",
            app: "echo",
            args: &["ip=10.0.0.3/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_bulk_echo),
        },
        Case {
            name: "two_vifs_serve_both_addresses",
            app: "echo",
            args: &["ip=10.0.0.5/24", "vif1.ip=10.0.0.6/24"],
            gdb: false,
            disk: false,
            xl: &[r#"vif=["bridge=xenbr0","bridge=xenbr0"]"#],
            reason: Reason::Poweroff,
            checks: vec![Contains("net: vif 1 connected"), Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_two_vifs),
        },
        Case {
            name: "vif_detached_closes_and_the_other_serves_on",
            app: "echo",
            args: &["ip=10.0.0.7/24", "vif1.ip=10.0.0.8/24"],
            gdb: false,
            disk: false,
            xl: &[r#"vif=["bridge=xenbr0","bridge=xenbr0"]"#],
            reason: Reason::Poweroff,
            checks: vec![Contains("net: vif 1: backend Closing, closing"), Contains("net: vif 1: closed")],
            driver: Some(drive_vif_detach),
        },
        Case {
            name: "tcp_200_concurrent_connections",
            app: "echo",
            args: &["ip=10.0.0.4/24"],
            gdb: false,
            disk: false,
            // All 200 are open at once (the agent makes them before any sends), with 128 KiB
            // of TCP buffers each: more than echo's 16 MiB, where the last would be refused.
            xl: &["memory=32"],
            reason: Reason::Poweroff,
            checks: vec![Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_many_connections),
        },
        Case {
            name: "tcp_isns_are_distinct_and_not_predicted_from_the_old_seeding",
            app: "echo",
            args: &["ip=10.0.0.29/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_isn_sample),
        },
        Case {
            name: "web_serves_curl_on_host_loopback",
            app: "web",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("web: Poweroff requested, stopping")],
            driver: Some(drive_web_from_host),
        },
        Case {
            name: "web_serves_site_to_curl",
            app: "web",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains("via DHCP, gateway 10.0.0.1"), Line("web: Poweroff requested, stopping")],
            driver: Some(drive_web_site),
        },
        Case {
            name: "web_serves_1000_concurrent_keep_alive_connections",
            app: "web",
            args: &["ip=10.0.0.20/24"],
            gdb: false,
            disk: false,
            // 1000 connections at their largest (34 KiB each) and the rest: see apps/web.
            xl: &["memory=40"],
            reason: Reason::Poweroff,
            checks: vec![Line("web: Poweroff requested, stopping")],
            driver: Some(drive_web_many_connections),
        },
        Case {
            name: "web_refuses_connections_beyond_its_limit_with_503",
            app: "web",
            args: &["ip=10.0.0.20/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("web: Poweroff requested, stopping")],
            driver: Some(drive_web_over_limit),
        },
        Case {
            name: "web_out_of_memory_answers_503_and_serves_other_connections",
            app: "web",
            args: &["ip=10.0.0.27/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("tcp: port 80: no memory for a listening socket (20480 bytes): new connections refused"),
                Contains("web: out of memory for a request: answered 503 (1 so far)"),
                Custom("no panic", check_no_panic),
                Line("web: Poweroff requested, stopping"),
            ],
            driver: Some(drive_web_out_of_memory),
        },
        Case {
            name: "dns_answers_dig_on_host_loopback",
            app: "dns",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("dns: Poweroff requested, stopping")],
            driver: Some(drive_dns_from_host),
        },
        Case {
            name: "dns_answers_from_dom0",
            app: "dns",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("(udp/53 tcp/53): example.com. test."),
                Custom("ready is logged after main, once serving", ready_after_main),
                Line("dns: Poweroff requested, stopping"),
            ],
            driver: Some(drive_dns),
        },
        Case {
            name: "dns_out_of_memory_closes_a_tcp_connection_and_udp_answers",
            app: "dns",
            args: &["ip=10.0.0.26/24"],
            gdb: false,
            disk: false,
            // A small dns: a dozen large TCP queries fill its heap (at 2 MiB not even one fits;
            // at the default 4 MiB the connections it takes to fill it expire before the last).
            xl: &["memory=3"],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("dns: no memory for a tcp query of 65535 bytes: connection closed (1 so far)"),
                Custom("no panic", check_no_panic),
                Line("dns: Poweroff requested, stopping"),
            ],
            driver: Some(drive_dns_out_of_memory),
        },
        Case {
            name: "dns_answers_after_a_ring_of_bad_checksums",
            app: "dns",
            args: &["ip=10.0.0.28/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Custom("no panic", check_no_panic), Line("dns: Poweroff requested, stopping")],
            driver: Some(drive_dns_bad_checksum_burst),
        },
        Case {
            name: "vif_detached_and_attached_serves_again",
            app: "echo",
            args: &["ip=10.0.0.9/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains("net: vif 0: closed"), Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_vif_reattach),
        },
        Case {
            name: "vif_hot_attached_with_a_new_number_serves",
            app: "echo",
            args: &["ip=10.0.0.10/24", "vif1.ip=10.0.0.11/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains("net: vif 1 attached"), Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_vif_hot_attach),
        },
        Case {
            name: "dns_serves_on_a_hot_attached_vif",
            app: "dns",
            args: &["ip=10.0.0.24/24", "vif1.ip=10.0.0.25/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains("net: vif 1 attached"), Line("dns: Poweroff requested, stopping")],
            driver: Some(drive_dns_hot_attach),
        },
        Case {
            name: "vif_reattached_leases_again_by_dhcp",
            app: "echo",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains("net: DHCP lease on"), Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_vif_reattach_dhcp),
        },
        Case {
            name: "soak_echo_one_minute",
            app: "echo",
            args: &["ip=10.0.0.23/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_soak_echo),
        },
        Case {
            name: "soak_dns_one_minute_of_dnsperf",
            app: "dns",
            args: &["ip=10.0.0.24/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("dns: Poweroff requested, stopping")],
            driver: Some(drive_soak_dns),
        },
        Case {
            name: "soak_web_one_minute_of_wrk",
            app: "web",
            args: &["ip=10.0.0.25/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("web: Poweroff requested, stopping")],
            driver: Some(drive_soak_web),
        },
        Case {
            name: "damaged_content_disk_stops_web_at_start",
            app: "web",
            args: &[],
            gdb: false,
            disk: true,
            xl: &[content::DAMAGED],
            reason: Reason::Crash,
            checks: vec![Contains(
                "main returned an error: web: disk xvda (vbd 51712): no readable ext2/3/4 filesystem: corrupt filesystem:",
            )],
            driver: None,
        },
        Case {
            name: "site_larger_than_memory_stops_web_with_a_clear_error",
            app: "web",
            args: &[],
            gdb: false,
            disk: true,
            xl: &[content::TOO_BIG],
            reason: Reason::Crash,
            checks: vec![
                Contains(
                    "main returned an error: web: disk xvda (vbd 51712): /files/large.bin: 5242880 bytes do not fit in memory: the heap has ",
                ),
                Custom("no panic", check_no_panic),
            ],
            driver: Some(content::drive_too_big),
        },
        Case {
            name: "web_serves_a_site_from_disk",
            app: "web",
            args: &[],
            gdb: false,
            disk: true,
            xl: &[content::WEB_SITE],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("web: site from disk xvda (vbd 51712): 2 files, 1048638 bytes"),
                // The disk, dropped once the site is in memory, is closed and its pages freed.
                Contains("disk: vbd 51712: closed (backend Closed)"),
                Contains("disk: vbd 51712: gave back 136 granted pages and the event channel"),
                Line("web: Poweroff requested, stopping"),
            ],
            driver: Some(content::drive_web),
        },
        Case {
            name: "web_says_a_content_disk_attached_again_is_not_read",
            app: "web",
            args: &[],
            gdb: false,
            disk: true,
            xl: &[content::WEB_SITE],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("disk: xvda (vbd 51712) attached"),
                Contains(
                    "web: disk xvda (vbd 51712) attached while serving: not read (the site is read at start); restart the domain to use it",
                ),
                Line("web: Poweroff requested, stopping"),
            ],
            driver: Some(content::drive_web_reattach),
        },
        Case {
            name: "dns_answers_zones_from_disk",
            app: "dns",
            args: &[],
            gdb: false,
            disk: true,
            xl: &[content::DNS_ZONES],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("(udp/53 tcp/53): example.net. example.org."),
                Line("dns: Poweroff requested, stopping"),
            ],
            driver: Some(content::drive_dns),
        },
        Case {
            name: "content_disk_stops_dns_built_without_the_reader",
            app: "dns",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[content::DNS_ZONES],
            reason: Reason::Crash,
            checks: vec![
                Contains(
                    "main returned an error: dns: the domain has a disk (device/vbd/51712), but this image reads no content disk",
                ),
                Contains("`cargo xtask build dns --disk-support`: dns-disk.elf"),
                Custom("no panic", check_no_panic),
            ],
            driver: None,
        },
        Case {
            name: "gdb_breaks_in_the_web_handler",
            app: "web",
            args: &["gdb=wait"],
            gdb: true,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains(crate::debug::WAITING_LINE), Contains("web: serving")],
            driver: Some(crate::debug::web_case_driver),
        },
        Case {
            name: "gdb_stops_on_a_page_fault",
            app: "selftest",
            args: &["test=pagefault", "gdb=wait"],
            gdb: true,
            disk: false,
            xl: &[],
            reason: Reason::Crash,
            checks: vec![
                Contains("EXCEPTION: page fault"),
                Contains("selftest::main at apps/selftest/src/main.rs"),
            ],
            driver: Some(crate::debug::crash_case_driver),
        },
        Case {
            name: "gdb_interrupts_a_running_guest",
            app: "selftest",
            args: &["test=idle", "secs=20", "gdb=wait"],
            gdb: true,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("idle: done")],
            driver: Some(crate::debug::interrupt_case_driver),
        },
    ]
}

/// Longest a dom0 network check may take (the 50 MB echo takes ~20–45 s under TCG).
const NET_CHECK_LIMIT: Duration = Duration::from_secs(100);

/// The address in `echo: serving on A.B.C.D …`.
fn echo_address(d: &mut Driver) -> Result<String, String> {
    let line = d.wait_line("echo: serving on ")?;
    line.split_whitespace().nth(3).map(str::to_owned).ok_or_else(|| format!("no address in {line:?}"))
}

/// The address in `dns: serving on A.B.C.D …`.
fn dns_address(d: &mut Driver) -> Result<String, String> {
    let line = d.wait_line("dns: serving on ")?;
    line.split_whitespace().nth(3).map(str::to_owned).ok_or_else(|| format!("no address in {line:?}"))
}

/// Runs a dom0 check and shows its report under the case.
fn dom0_check(d: &Driver, command: &str) -> Result<(), String> {
    let out = d.agent.run_ok(command, NET_CHECK_LIMIT)?;
    for line in out.lines().filter(|l| l.contains("-check:") || l.contains("packets transmitted")) {
        println!("    {}", line.trim());
    }
    Ok(())
}

fn shut_down(d: &Driver) -> Result<(), String> {
    d.dom0(&format!("xl shutdown -w {}", d.name)).map(drop)
}

/// The guest leases an address from dom0's DHCP server, answers ping and echoes UDP.
fn drive_dhcp_echo(d: &mut Driver) -> Result<(), String> {
    let ip = echo_address(d)?;
    let last: u8 =
        ip.strip_prefix("10.0.0.").and_then(|n| n.parse().ok()).ok_or(format!("{ip} is not on xenbr0"))?;
    if !(100..=199).contains(&last) {
        return Err(format!("{ip} is outside dom0's DHCP range 10.0.0.100-199"));
    }
    dom0_check(d, &format!("ping -c 3 -W 5 {ip}"))?;
    dom0_check(d, &format!("/mote/agent udp-check {ip}:7 20"))?;
    shut_down(d)
}

/// Static IPv4 and IPv6 from the command line: ping, ping6, UDP and TCP echo over IPv6.
fn drive_static_echo(d: &mut Driver) -> Result<(), String> {
    let ip = echo_address(d)?;
    if ip != "10.0.0.2" {
        return Err(format!("serving on {ip}, not the static 10.0.0.2"));
    }
    dom0_check(d, "ping -c 3 -W 5 10.0.0.2")?;
    dom0_check(d, "ping6 -c 3 -W 5 fd00::2")?;
    dom0_check(d, "/mote/agent udp-check [fd00::2]:7 10")?;
    dom0_check(d, "/mote/agent tcp-check [fd00::2]:7 100000")?;
    shut_down(d)
}

/// With `netfront=no-csum-offload,no-sg` (smoltcp sums every checksum) echo works over IPv4
/// and IPv6.
fn drive_offloads_off(d: &mut Driver) -> Result<(), String> {
    echo_address(d)?;
    for ip in ["10.0.0.12", "[fd00::12]"] {
        dom0_check(d, &format!("/mote/agent udp-check {ip}:7 10"))?;
        dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 1000000"))?;
    }
    shut_down(d)
}

/// host/vif-mote put the guest's vif on the bridge at the bridge's MTU, up, without an IPv6
/// address of dom0's (echo answers), and a guest whose vif names a bridge dom0 lacks fails
/// `xl create` at once with the helper's reason.
fn drive_vif_mote(d: &mut Driver) -> Result<(), String> {
    let ip = echo_address(d)?;
    dom0_check(d, &format!("/mote/agent udp-check {ip}:7 10"))?;
    dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 100000"))?;
    let vif = format!("vif{}.0", d.domid()?);
    let link = d.dom0(&format!("ip -o link show dev {vif}"))?;
    if !(link.contains("master xenbr0") && link.contains("mtu 1500") && link.contains(",UP")) {
        return Err(format!("{vif} is not up on xenbr0 at MTU 1500: {link}"));
    }
    let ipv6 = d.dom0(&format!("cat /proc/sys/net/ipv6/conf/{vif}/disable_ipv6"))?;
    if ipv6.trim() != "1" {
        return Err(format!("{vif} keeps IPv6 on in dom0: disable_ipv6 is {ipv6:?}"));
    }
    let out = d.dom0(
        r#"xl create /mote/images/echo.cfg 'name="vifbad"' 'vif=["bridge=nobr0,script=vif-mote"]' 2>&1; echo "status=$?"; xl destroy vifbad 2>/dev/null; true"#,
    )?;
    if !out.contains("vif-mote: nobr0 is not a bridge in dom0") || out.contains("status=0") {
        return Err(format!("xl create with a missing bridge did not fail with vif-mote's reason:\n{out}"));
    }
    println!("    xl create with bridge=nobr0: failed with \"vif-mote: nobr0 is not a bridge in dom0\"");
    shut_down(d)
}

/// `boot: ready N us …` follows the serving line and gives a time no earlier than `boot: main`'s.
fn ready_after_main(console: &str, _: &Image) -> Result<(), String> {
    let us = |prefix: &str| -> Option<(usize, u64)> {
        let at = console.find(prefix)?;
        let rest = &console[at + prefix.len()..];
        Some((at, rest.split(' ').next()?.parse().ok()?))
    };
    let (main_at, main) = us("boot: main ").ok_or("no `boot: main N us` line")?;
    let (ready_at, ready) = us("boot: ready ").ok_or("no `boot: ready N us` line")?;
    let serving_at = console.find(" serving on ").ok_or("no serving line")?;
    if !(main_at < serving_at && serving_at < ready_at && main <= ready) {
        return Err(format!("boot: main {main} us and ready {ready} us out of order with the serving line"));
    }
    println!("    guest: main {main} us, serving {ready} us after the first instruction");
    Ok(())
}

/// 50 MB through TCP echo come back byte for byte.
fn drive_bulk_echo(d: &mut Driver) -> Result<(), String> {
    let ip = echo_address(d)?;
    dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 52428800"))?;
    shut_down(d)
}

/// What `cargo xtask run echo` offers: the echo ports on 127.0.0.1:7007, TCP and UDP, from
/// the host through QEMU and dom0.
fn drive_forwards(d: &mut Driver) -> Result<(), String> {
    let relays = forward_from_host(d, "echo: serving on ")?;
    echo_from_host()?;
    drop(relays);
    shut_down(d)
}

/// 127.0.0.1:7007 echoes UDP datagrams and a TCP line (under Xen or hosted).
pub(crate) fn echo_from_host() -> Result<(), String> {
    use std::io::{Read, Write};
    let fail = |what: &str, e: std::io::Error| format!("{what} 127.0.0.1:7007: {e}");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| fail("udp bind for", e))?;
    udp.set_read_timeout(Some(DRIVER_WAIT)).map_err(|e| fail("udp", e))?;
    for i in 0..3 {
        let msg = format!("datagram {i} from the host");
        udp.send_to(msg.as_bytes(), "127.0.0.1:7007").map_err(|e| fail("udp send to", e))?;
        let mut buf = [0u8; 256];
        let n = udp.recv(&mut buf).map_err(|e| fail("udp reply from", e))?;
        if &buf[..n] != msg.as_bytes() {
            return Err(format!("udp echo returned {:?}", String::from_utf8_lossy(&buf[..n])));
        }
    }
    let mut tcp = std::net::TcpStream::connect("127.0.0.1:7007").map_err(|e| fail("tcp connect to", e))?;
    tcp.set_read_timeout(Some(DRIVER_WAIT)).map_err(|e| fail("tcp", e))?;
    let msg = b"a line from the host\n";
    tcp.write_all(msg).map_err(|e| fail("tcp write to", e))?;
    let mut back = vec![0u8; msg.len()];
    tcp.read_exact(&mut back).map_err(|e| fail("tcp read from", e))?;
    if back != msg {
        return Err(format!("tcp echo returned {:?}", String::from_utf8_lossy(&back)));
    }
    println!("    127.0.0.1:7007 echoed 3 UDP datagrams and a TCP line");
    Ok(())
}

/// Each vif has its own stack and address, and both serve.
fn drive_two_vifs(d: &mut Driver) -> Result<(), String> {
    let mut addresses = [echo_address(d)?, echo_address(d)?];
    addresses.sort();
    if addresses != ["10.0.0.5", "10.0.0.6"] {
        return Err(format!("serving on {addresses:?}, not 10.0.0.5 and 10.0.0.6"));
    }
    for ip in addresses {
        dom0_check(d, &format!("ping -c 2 -W 5 {ip}"))?;
        dom0_check(d, &format!("/mote/agent udp-check {ip}:7 5"))?;
        dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 100000"))?;
    }
    shut_down(d)
}

/// `xl network-detach` of one vif: the guest answers the backend's closing at once (libxl
/// would otherwise wait 10 s and force it), and the other vif keeps serving.
fn drive_vif_detach(d: &mut Driver) -> Result<(), String> {
    echo_address(d)?;
    echo_address(d)?;
    let started = Instant::now();
    d.dom0(&format!("xl network-detach {} 1", d.name))?;
    let took = started.elapsed();
    d.wait_line("net: vif 1: closed")?;
    if took > SHUTDOWN_LIMIT {
        return Err(format!("`xl network-detach` took {took:?}: the guest did not answer the backend"));
    }
    println!("    xl network-detach took {:.1} s", took.as_secs_f64());
    dom0_check(d, "/mote/agent udp-check 10.0.0.7:7 5")?;
    dom0_check(d, "/mote/agent tcp-check 10.0.0.7:7 100000")?;
    shut_down(d)
}

/// 200 connections open at once are all echoed.
fn drive_many_connections(d: &mut Driver) -> Result<(), String> {
    let ip = echo_address(d)?;
    dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 2000 200"))?;
    shut_down(d)
}

/// dom0 opens 200 connections to echo one after another and records the ISN of each SYN-ACK:
/// all distinct, and none predicted from the ones before by [`isn::predict`], which knows
/// smoltcp's generator, the guest's MAC and the seeding before issue #21 (its tests show it
/// predicts ISNs made that way).
fn drive_isn_sample(d: &mut Driver) -> Result<(), String> {
    let line = d.wait_first_line("net: vif 0 connected, mac ")?;
    let mac = isn::parse_mac(&line).ok_or_else(|| format!("no MAC in {line:?}"))?;
    // The stack is made right after that line, at about dom0's uptime plus the time Xen ran
    // before dom0's clock started (about 3 s in the harness): the attacker's guess of when.
    let uptime = d.dom0("cat /proc/uptime")?;
    let uptime: f64 =
        uptime.split(' ').next().and_then(|s| s.parse().ok()).ok_or(format!("uptime {uptime:?}"))?;
    let estimate = ((uptime + 3.0) * 1e9) as u64;
    let ip = echo_address(d)?;
    let out = d.dom0(&format!("/mote/agent isn-sample {ip}:7 200"))?;
    let isns: Vec<u32> =
        out.lines().filter_map(|l| l.strip_prefix("isn-sample: ")?.split_once(' ')?.1.parse().ok()).collect();
    let distinct = isns.iter().collect::<std::collections::BTreeSet<_>>().len();
    if isns.len() != 200 || distinct != 200 {
        return Err(format!("{} ISNs recorded, {distinct} distinct:\n{out}", isns.len()));
    }
    let started = Instant::now();
    let window = isn::window(estimate);
    let prediction = isn::predict(&isns, mac, window.clone());
    println!(
        "    200 distinct ISNs ({:#010x} first); seeds of {:.3}-{:.3} s giving the first: {}; \
         ISNs predicted from those before: {} ({:.1} s)",
        isns[0],
        window.start as f64 / 1e9,
        window.end as f64 / 1e9,
        prediction.candidates,
        prediction.predicted.len(),
        started.elapsed().as_secs_f64()
    );
    if !prediction.predicted.is_empty() {
        let first: Vec<_> = prediction.predicted.iter().take(5).collect();
        return Err(format!(
            "{} of the 199 ISNs after the first were predicted from the ones before (number {first:?}, …)",
            prediction.predicted.len()
        ));
    }
    shut_down(d)
}

/// The address and connection limit in `web: serving N files on http://A.B.C.D/ to at most M
/// connections at once`.
fn web_address(d: &mut Driver) -> Result<(String, usize), String> {
    let line = d.wait_line("web: serving ")?;
    println!("    guest: {line}");
    let address = line.split("http://").nth(1).and_then(|rest| rest.split('/').next());
    let limit = line.split("at most ").nth(1).and_then(|rest| rest.split(' ').next()?.parse().ok());
    match (address, limit) {
        (Some(address), Some(limit)) => Ok((address.to_owned(), limit)),
        _ => Err(format!("no address and connection limit in {line:?}")),
    }
}

/// A page only the web cases' site has, and its text.
const SITE_CHECK: (&str, &str) = ("site-check.txt", "this site was given with --site\n");

/// Copies the files under `from` to `to`, leaving alone those already the same (so that the
/// app is not rebuilt for nothing).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> Result<(), String> {
    let entries = std::fs::read_dir(from).map_err(|e| format!("read {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("read {}: {e}", from.display()))?;
        let kind = entry.file_type().map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        } else if kind.is_file() {
            let data =
                std::fs::read(entry.path()).map_err(|e| format!("read {}: {e}", entry.path().display()))?;
            write_if_changed(&to.join(entry.file_name()), &data)?;
        }
    }
    Ok(())
}

fn write_if_changed(path: &std::path::Path, data: &[u8]) -> Result<(), String> {
    if std::fs::read(path).is_ok_and(|old| old == data) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, data).map_err(|e| format!("write {}: {e}", path.display()))
}

/// A file of the web app's sample site, as the host has it.
fn site_file(path: &str) -> Result<Vec<u8>, String> {
    let file = workspace_root().join("apps/web/site").join(path);
    std::fs::read(&file).map_err(|e| format!("read {}: {e}", file.display()))
}

/// FNV-1a, 64 bits, in hex, as `mote-agent http-check` prints it.
fn fnv64(data: &[u8]) -> String {
    let hash =
        data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{hash:016x}")
}

/// The SHA-256 of `data` in hex, by the host's `sha256sum`.
fn host_sha256(data: &[u8]) -> Result<String, String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sha256sum: {e}"))?;
    child.stdin.take().expect("piped").write_all(data).map_err(|e| format!("sha256sum: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("sha256sum: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().next().map(str::to_owned).ok_or_else(|| format!("sha256sum printed {text:?}"))
}

/// Runs curl in dom0 and checks its output, shown under the case.
fn curl_expect(d: &Driver, args: &str, expected: &str) -> Result<(), String> {
    let out = d.dom0(&format!("curl -s {args}"))?;
    if out.trim_end() != expected {
        return Err(format!("`curl -s {args}` printed {out:?}, expected {expected:?}"));
    }
    println!("    curl {args}: {}", expected.replace('\n', " | "));
    Ok(())
}

/// curl from dom0 against the web app: the page only the `--site` copy has, pages byte for
/// byte, 404, HEAD, a redirect, 304 with If-None-Match, a byte range, the gzip variant, a
/// slowloris client cut off, and several requests on one kept-alive connection.
fn drive_web_site(d: &mut Driver) -> Result<(), String> {
    let (ip, _) = web_address(d)?;
    let url = format!("http://{ip}");
    curl_expect(d, &format!("-f {url}/{}", SITE_CHECK.0), SITE_CHECK.1.trim_end())?;
    for (target, file) in
        [("/", "index.html"), ("/docs/sample.txt", "docs/sample.txt"), ("/img/mote.svg", "img/mote.svg")]
    {
        let hash = host_sha256(&site_file(file)?)?;
        curl_expect(d, &format!("-f {url}{target} | sha256sum"), &format!("{hash}  -"))?;
    }
    curl_expect(d, &format!("-o /dev/null -w '%{{http_code}}' {url}/missing.html"), "404")?;
    curl_expect(d, &format!("--path-as-is -o /dev/null -w '%{{http_code}}' {url}/../etc/passwd"), "400")?;
    curl_expect(
        d,
        &format!("-o /dev/null -w '%{{http_code}} %{{redirect_url}}' {url}/docs"),
        &format!("301 {url}/docs/"),
    )?;

    let sample = site_file("docs/sample.txt")?;
    let head = d.dom0(&format!("curl -sI {url}/docs/sample.txt"))?;
    let field = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(": ").filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
            })
            .ok_or_else(|| format!("HEAD response without {name}: {head:?}"))
    };
    if !head.starts_with("HTTP/1.1 200 OK") || field("Content-Length")? != sample.len().to_string() {
        return Err(format!("HEAD /docs/sample.txt answered {head:?}"));
    }
    if field("Content-Type")? != "text/plain; charset=utf-8" {
        return Err(format!("HEAD /docs/sample.txt answered {head:?}"));
    }
    println!("    curl -sI {url}/docs/sample.txt: 200, Content-Length {}", sample.len());
    let etag = field("ETag")?;
    curl_expect(
        d,
        &format!("-o /dev/null -w '%{{http_code}}' -H 'If-None-Match: {etag}' {url}/docs/sample.txt"),
        "304",
    )?;

    let part = String::from_utf8_lossy(&sample[1000..1100]);
    curl_expect(
        d,
        &format!("-r 1000-1099 -w '\\n%{{http_code}}' {url}/docs/sample.txt"),
        &format!("{part}\n206"),
    )?;
    curl_expect(
        d,
        &format!("-o /dev/null -w '%{{http_code}}' -r {}- {url}/docs/sample.txt", sample.len()),
        "416",
    )?;

    // gzip: smaller on the wire, the same bytes once decoded; not for a client that says q=0.
    let out = d.dom0(&format!(
        "curl -s --compressed -D /tmp/web-head -o /tmp/web-body {url}/docs/sample.txt && tr -d '\\r' </tmp/web-head && sha256sum </tmp/web-body"
    ))?;
    let has = |field: &str| out.lines().any(|l| l.eq_ignore_ascii_case(field));
    let wire: usize = out
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("gzip response without Content-Length: {out:?}"))?;
    let hash = host_sha256(&sample)?;
    if !has("Content-Encoding: gzip") || !has("Vary: Accept-Encoding") || wire >= sample.len() {
        return Err(format!("curl --compressed {url}/docs/sample.txt answered {out:?}"));
    }
    if !out.contains(&format!("{hash}  -")) {
        return Err(format!("the gzip variant of docs/sample.txt does not decode to the file: {out:?}"));
    }
    println!("    curl --compressed {url}/docs/sample.txt: gzip, {wire} bytes on the wire for {}, decoded byte for byte", sample.len());
    curl_expect(
        d,
        &format!(
            "-H 'Accept-Encoding: gzip;q=0, br' -o /dev/null -w '%{{size_download}}' {url}/docs/sample.txt"
        ),
        &sample.len().to_string(),
    )?;

    // Slowloris: a header line every 2 s would take 26 s; the header-read timeout (10 s) ends it.
    let trickle = "printf 'GET / HTTP/1.1\\r\\n'; for i in 1 2 3 4 5 6 7 8; do sleep 2; printf 'X-A: b\\r\\n'; done; sleep 10";
    let out =
        d.dom0(&format!("start=$(date +%s); ({trickle}) | nc {ip} 80; echo $(($(date +%s) - start))"))?;
    let held: u64 = out.trim().parse().map_err(|_| format!("slowloris check printed {out:?}"))?;
    if !(9..=16).contains(&held) {
        return Err(format!(
            "a slowloris client was held {held} s, not cut off after the 10 s header timeout"
        ));
    }
    println!("    slowloris client (a header line every 2 s) cut off after {held} s");

    // num_connects is 0 for a request that reused the connection.
    let urls = ["/", "/missing", "/style.css", "/docs/http.html"].map(|t| format!("{url}{t}")).join(" ");
    curl_expect(
        d,
        &format!("-w '%{{http_code}} %{{num_connects}}\\n' -o /dev/null -o /dev/null -o /dev/null -o /dev/null {urls}"),
        "200 1\n404 0\n200 0\n200 0",
    )?;
    shut_down(d)
}

/// 1000 connections open at once and kept alive, each asked for index.html at least twice, every
/// answer index.html; the guest has the memory for them (the case's `memory=`).
fn drive_web_many_connections(d: &mut Driver) -> Result<(), String> {
    const CONNECTIONS: usize = 1000;
    let (ip, limit) = web_address(d)?;
    if limit < CONNECTIONS {
        return Err(format!("the guest takes only {limit} connections at once"));
    }
    // It took 95 s with five other harnesses sharing the host's two cores.
    let limit = Duration::from_secs(240);
    let out = d.agent.run_ok(&format!("/mote/agent http-check {ip}:80 / {CONNECTIONS} 2"), limit)?;
    println!("    {}", out.trim());
    let index = site_file("index.html")?;
    let kept = format!(", {CONNECTIONS} kept open at once,");
    let body = format!(" x 200; 200 body {} bytes, fnv64 {}", index.len(), fnv64(&index));
    // The statuses are listed between " s: " and ";": one entry, 200.
    let statuses = out.split_once(" s: ").and_then(|(_, rest)| rest.split_once(';')).map(|(s, _)| s);
    let only_200 = statuses.is_some_and(|s| !s.contains(',') && s.ends_with(" x 200"));
    if !out.contains(&kept) || !out.contains(&body) || !only_200 {
        return Err(format!("expected {CONNECTIONS} connections kept, every answer index.html"));
    }
    shut_down(d)
}

/// A byte count as xenstore-read prints the runtime's `data/heap-used` or `data/heap-hwm`.
fn heap_bytes(text: &str) -> Result<u64, String> {
    text.trim().parse().map_err(|_| format!("a heap figure from xenstore is {text:?}"))
}

/// Keep-alive clients web serves at once at its default memory (issue #6).
const WEB_MIN_CONNECTIONS: usize = 10;

/// At the default memory, connections beyond the limit the guest prints get 503 and are
/// closed, while those within it (at least [`WEB_MIN_CONNECTIONS`]) are served (and kept alive
/// for a second request); prints the guest heap's high-water mark after them.
fn drive_web_over_limit(d: &mut Driver) -> Result<(), String> {
    const EXTRA: usize = 10;
    let (ip, limit) = web_address(d)?;
    if limit < WEB_MIN_CONNECTIONS {
        return Err(format!("the guest takes only {limit} connections at once, not {WEB_MIN_CONNECTIONS}"));
    }
    let home = format!("/local/domain/{}/data", d.domid()?);
    // The runtime publishes heap use at most once a second.
    std::thread::sleep(Duration::from_millis(1500));
    let idle = heap_bytes(&d.dom0(&format!("xenstore-read {home}/heap-used"))?)?;
    let out = d
        .agent
        .run_ok(&format!("/mote/agent http-check {ip}:80 /style.css {} 2", limit + EXTRA), NET_CHECK_LIMIT)?;
    println!("    {}", out.trim());
    let expected =
        [format!(", {limit} kept open at once,"), format!(": {} x 200, {EXTRA} x 503;", limit * 2)];
    if !expected.iter().all(|e| out.contains(e)) {
        return Err(format!("expected {limit} connections served twice and {EXTRA} refused ({expected:?})"));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let hwm = heap_bytes(&d.dom0(&format!("xenstore-read {home}/heap-hwm"))?)?;
    println!(
        "    heap: {} KiB in use before, high-water mark {} KiB after {limit} connections served and {EXTRA} refused",
        idle / 1024,
        hwm / 1024
    );
    // The refused clients left nothing behind: the server still answers.
    curl_expect(d, &format!("-o /dev/null -w '%{{http_code}}' http://{ip}/"), "200")?;
    shut_down(d)
}

/// Served connections of [`drive_web_out_of_memory`] that send only small requests.
const WEB_SMALL_ASKERS: usize = 4;

/// The dom0 bash script of [`drive_web_out_of_memory`], run as `bash FILE IP LIMIT SMALL`.
/// `status` reads one response head (HEAD requests: no bodies) and prints its code.
const WEB_OOM_SCRIPT: &str = r#"ip=$1; limit=$2; SMALL=$3
export LC_ALL=C
status() {
  local line code=
  while read -t 20 -u "$1" line; do
    line=${line%$'\r'}
    if [ -z "$code" ]; then code=${line#HTTP/1.1 }; code=${code%% *}; elif [ -z "$line" ]; then break; fi
  done
  echo "${code:-none}"
}
tally() { sort | uniq -c | awk '{ printf "%s%d x %s", sep, $1, $2; sep = ", " }'; }
small() { printf 'HEAD / HTTP/1.1\r\nHost: mote\r\n\r\n' >&$1; }
# Asks every served connection again (they idle out after 30 s), recording the statuses.
refresh() {
  for fd in "${served[@]}"; do small "$fd"; done
  for fd in "${served[@]}"; do status "$fd"; done >> /tmp/web-oom-statuses
  asked=$SECONDS
}
served=(); asked=$SECONDS; : > /tmp/web-oom-statuses
for i in $(seq "$limit"); do
  exec {fd}<>/dev/tcp/$ip/80 || exit 1
  small "$fd"
  status "$fd" >> /tmp/web-oom-statuses
  served+=("$fd")
  [ $((SECONDS - asked)) -ge 10 ] && refresh
done
extra=0; refused=0
for i in $(seq 400); do
  [ $((SECONDS - asked)) -ge 10 ] && refresh
  if exec {fd}<>/dev/tcp/$ip/80 2>/dev/null; then extra=$((extra+1)); refused=0
  else refused=$((refused+1)); [ $refused -ge 3 ] && break; sleep 0.3; fi
done
first=$(tally < /tmp/web-oom-statuses)
flood=$SECONDS
big=("${served[@]:0:limit-SMALL}"); little=("${served[@]:limit-SMALL}")
pad=$(printf '%07000d' 0)
for fd in "${big[@]}"; do printf 'HEAD / HTTP/1.1\r\nHost: mote\r\nX-Pad: %s\r\n\r\n' "$pad" >&$fd; done
for fd in "${little[@]}"; do small "$fd"; done
small=$(for fd in "${little[@]}"; do status "$fd"; done | tally)
large=$(for fd in "${big[@]}"; do status "$fd"; done | tally)
echo "requests before: $first; held $extra more, then refused $refused times (after $flood s); large requests: $large; small requests: $small; $SECONDS s"
"#;

/// Exhausts web's heap (default memory) the way clients that ignore its refusals do: the
/// connections it serves at once (its limit) are opened and asked once (those open asked
/// again every 10 s, so that none idles out), then more, which it answers 503 and closes, and which the client
/// keeps half-open (each holds its 20 KiB of TCP
/// buffers in the guest until the client closes or a minute passes), until the guest has no
/// memory for a listening socket and refuses connections outright. Then the served connections
/// send requests: large ones (7 KB of header fields; the heap has no room for most) must get
/// 503 for want of memory, small ones (their buffer's room kept from the first request) 200;
/// once the client closes, web serves again.
fn drive_web_out_of_memory(d: &mut Driver) -> Result<(), String> {
    let (ip, limit) = web_address(d)?;
    if limit <= WEB_SMALL_ASKERS {
        return Err(format!("the guest takes only {limit} connections at once"));
    }
    d.agent.put(OOM_SCRIPT_FILE, WEB_OOM_SCRIPT.as_bytes(), 0o644, DRIVER_WAIT)?;
    let command = format!("bash {OOM_SCRIPT_FILE} {ip} {limit} {WEB_SMALL_ASKERS}");
    let out = d.agent.run_ok(&command, NET_CHECK_LIMIT)?;
    println!("    {}", out.trim());
    let large = out.split("large requests: ").nth(1).and_then(|r| r.split(';').next()).unwrap_or("");
    let before = out.split("requests before: ").nth(1).and_then(|r| r.split(';').next()).unwrap_or("");
    let asked = before.strip_suffix(" x 200").and_then(|n| n.parse::<usize>().ok());
    let small = format!("small requests: {WEB_SMALL_ASKERS} x 200;");
    if asked.is_none_or(|n| n < limit)
        || !out.contains(&small)
        || !large.contains(" x 503")
        || large.contains("none")
    {
        return Err(format!(
            "expected every request before the large ones answered 200 ({limit} connections), the large ones 503 and the small ones 200"
        ));
    }
    d.wait_line("web: out of memory for a request: answered 503")?;
    curl_expect(d, &format!("-o /dev/null -w '%{{http_code}}' http://{ip}/"), "200")?;
    shut_down(d)
}

/// One `dig` query from dom0 and what its output must show: the status, whether AA is set,
/// and records (whitespace-normalised, as dig prints them).
struct DigCheck {
    args: &'static str,
    status: &'static str,
    authoritative: bool,
    records: &'static [&'static str],
}

/// Queries against apps/dns/zones/example.com.zone, each over UDP and over TCP.
const DIG_CHECKS: &[DigCheck] = &[
    DigCheck {
        args: "www.example.com A",
        status: "NOERROR",
        authoritative: true,
        records: &["www.example.com. 3600 IN A 192.0.2.80"],
    },
    DigCheck {
        args: "WwW.ExAmPlE.cOm AAAA",
        status: "NOERROR",
        authoritative: true,
        records: &["WwW.ExAmPlE.cOm. 3600 IN AAAA 2001:db8::80"],
    },
    DigCheck {
        args: "nope.example.com A",
        status: "NXDOMAIN",
        authoritative: true,
        records: &["example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 2024060101 7200 3600 1209600 300"],
    },
    DigCheck {
        args: "blog.example.com A",
        status: "NOERROR",
        authoritative: true,
        records: &[
            "blog.example.com. 3600 IN CNAME web.example.com.",
            "web.example.com. 3600 IN CNAME www.example.com.",
            "www.example.com. 3600 IN A 192.0.2.80",
        ],
    },
    DigCheck {
        args: "host.lab.example.com A",
        status: "NOERROR",
        authoritative: false,
        records: &["lab.example.com. 3600 IN NS ns.lab.example.com.", "ns.lab.example.com. 3600 IN A 192.0.2.53"],
    },
    DigCheck {
        args: "www.example.com TXT",
        status: "NOERROR",
        authoritative: true,
        records: &["www.example.com. 3600 IN TXT \"mote says hello\" \"from a unikernel\""],
    },
    DigCheck {
        args: "alice.users.example.com TXT",
        status: "NOERROR",
        authoritative: true,
        records: &["alice.users.example.com. 3600 IN TXT \"a wildcard answer\""],
    },
    DigCheck { args: "www.example.org A", status: "REFUSED", authoritative: false, records: &[] },
    // dns/tests/zones/test.zone, embedded with `--zone`.
    DigCheck {
        args: "DeEp.TeSt A",
        status: "NOERROR",
        authoritative: true,
        records: &[
            "DeEp.TeSt. 3600 IN CNAME blog.TeSt.",
            "blog.TeSt. 3600 IN CNAME web.TeSt.",
            "web.TeSt. 3600 IN CNAME www.TeSt.",
            "www.TeSt. 600 IN A 192.0.2.80",
        ],
    },
    DigCheck {
        args: "odd.test TYPE65280",
        status: "NOERROR",
        authoritative: true,
        records: &["odd.test. 3600 IN TYPE65280 \\# 4 DEADBEEF"],
    },
    DigCheck {
        args: "a.b.c.ent.test A",
        status: "NOERROR",
        authoritative: true,
        records: &["a.b.c.ent.test. 3600 IN A 192.0.2.7"],
    },
    DigCheck { args: "x.c.ent.test A", status: "NXDOMAIN", authoritative: true, records: &[] },
];

/// Runs one `dig @ip +norec` in dom0 asking every query of `checks` (one dig per check costs
/// seconds under TCG) and checks each answer against its check.
fn dig(d: &Driver, ip: &str, transport: &str, checks: &[DigCheck]) -> Result<(), String> {
    let queries: Vec<&str> = checks.iter().map(|c| c.args).collect();
    let command = format!("dig @{ip} +norec +time=5 +tries=2 {transport} {}", queries.join(" "));
    let out = d.dom0(&command)?;
    // Each answer's printout starts with its header line.
    let answers: Vec<&str> = out.split(";; ->>HEADER<<-").skip(1).collect();
    if answers.len() != checks.len() {
        return Err(format!(
            "`{command}`: {} answers for {} queries; dig printed:\n{out}",
            answers.len(),
            checks.len()
        ));
    }
    for (check, answer) in checks.iter().zip(answers) {
        let lines: Vec<String> =
            answer.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        let fail = |what: String| Err(format!("`{command}`, {}: {what}; dig printed:\n{answer}", check.args));
        if !answer.contains(&format!(" status: {},", check.status)) {
            return fail(format!("status is not {}", check.status));
        }
        // ";; flags: qr aa; QUERY: 1, …"
        let flags = lines.iter().find_map(|l| l.strip_prefix(";; flags:")).and_then(|f| f.split(';').next());
        let aa = flags.is_some_and(|f| f.split_whitespace().any(|w| w == "aa"));
        if aa != check.authoritative {
            return fail(format!("AA is {}", if aa { "set" } else { "clear" }));
        }
        for record in check.records {
            if !lines.iter().any(|l| l == record) {
                return fail(format!("no record {record:?}"));
            }
        }
        println!("    dig {transport} {}: {} ok", check.args, check.status);
    }
    Ok(())
}

/// dig from dom0 over UDP and TCP: answers, CNAME chain, NXDOMAIN, referral, TXT, wildcard,
/// REFUSED; then several queries over one TCP connection.
fn drive_dns(d: &mut Driver) -> Result<(), String> {
    let ip = dns_address(d)?;
    dig(d, &ip, "+notcp", DIG_CHECKS)?;
    dig(d, &ip, "+tcp", DIG_CHECKS)?;
    let command = format!(
        "dig @{ip} +norec +tcp +keepopen +short www.example.com A web.example.com CNAME mail.example.com A"
    );
    let out = d.dom0(&command)?;
    let answers: Vec<&str> = out.lines().collect();
    if answers != ["192.0.2.80", "www.example.com.", "192.0.2.25"] {
        return Err(format!("`{command}` printed {out:?}"));
    }
    println!("    dig +tcp +keepopen: 3 queries on one connection ok");
    shut_down(d)
}

/// Datagrams with a wrong UDP checksum, many times the 64 rx buffers netfront posts, sent at
/// dns from dom0: each is dropped in the guest (dom0 does not vouch for a raw socket's
/// checksums), and dns answers dig after them. Before issue #29's fix the buffers they took
/// were never published again, and dns, which sends nothing of its own, went deaf for good.
fn drive_dns_bad_checksum_burst(d: &mut Driver) -> Result<(), String> {
    let ip = dns_address(d)?;
    dig(d, &ip, "+notcp", &DIG_CHECKS[..1])?;
    let sent = d.dom0(&format!("/mote/agent bad-udp-burst {ip}:53 1000"))?;
    println!("    {}", sent.trim());
    // One query first, so that a deaf guest fails within dig's 10 s.
    dig(d, &ip, "+notcp", &DIG_CHECKS[..1])?;
    dig(d, &ip, "+notcp", DIG_CHECKS)?;
    dig(d, &ip, "+tcp", &DIG_CHECKS[..1])?;
    d.dom0(&format!("xl network-detach {} 0", d.name))?;
    d.wait_line("net: vif 0: closed")?;
    let counts = d.wait_line("net: vif 0: ")?;
    match bad_checksums(&counts) {
        Some(n) if n >= 64 => println!("    vif 0 dropped {n} segments with a bad checksum, then answered"),
        _ => return Err(format!("fewer bad checksums counted than rx buffers posted (64): {counts}")),
    }
    shut_down(d)
}

/// dns serves on a vif attached while it runs, under a number it has not seen, as on its first.
fn drive_dns_hot_attach(d: &mut Driver) -> Result<(), String> {
    for ip in hot_attach(d, "dns: serving on ", ["10.0.0.24", "10.0.0.25"])? {
        dig(d, ip, "+notcp", DIG_CHECKS)?;
        dig(d, ip, "+tcp", DIG_CHECKS)?;
        println!("    {ip}: dig over UDP and TCP ok");
    }
    shut_down(d)
}

/// The disk images the disk cases attach, made in dom0 once per harness.
/// They live on a tmpfs of their own: dom0's root file system has little room.
const DISK_SETUP: &str = "mkdir -p /mnt/disks && (mountpoint -q /mnt/disks || \
                          mount -t tmpfs -o size=84m tmpfs /mnt/disks) && \
                          dd if=/dev/zero of=/mnt/disks/rw.img bs=1M count=64 && \
                          dd if=/dev/zero of=/mnt/disks/ro.img bs=1M count=1 && \
                          dd if=/dev/zero of=/mnt/disks/discard.img bs=1M count=8 && \
                          dd if=/dev/zero of=/mnt/disks/async.img bs=1M count=4 && \
                          for d in a b c; do dd if=/dev/zero of=/mnt/disks/reattach-$d.img bs=1M count=1 && \
                          echo disk-$d | dd of=/mnt/disks/reattach-$d.img conv=notrunc || exit 1; done";
const DISK_RW: &str = r#"disk=["format=raw,vdev=xvda,access=rw,target=/mnt/disks/rw.img"]"#;
const DISK_RO: &str = r#"disk=["format=raw,vdev=xvda,access=ro,target=/mnt/disks/ro.img"]"#;
const DISK_ASYNC: &str = r#"disk=["format=raw,vdev=xvda,access=rw,target=/mnt/disks/async.img"]"#;
const DISK_REATTACH: &str = r#"disk=["format=raw,vdev=xvda,access=ro,target=/mnt/disks/reattach-a.img"]"#;
const DISK_DISCARD: &str = r#"disk=["format=raw,vdev=xvda,access=rw,target=/mnt/disks/discard.img"]"#;

/// `xl block-detach` while 8 tasks read (or one blocking reader): every read fails with a clear
/// error instead of waiting for answers that never come, the guest answers the backend's
/// closing at once (libxl would otherwise wait 10 s and force it), the vbd is gone from dom0,
/// and the domain keeps running until asked to stop.
fn drive_disk_detach(d: &mut Driver) -> Result<(), String> {
    d.wait_first_line("disk-detach: reading")?;
    let domid = d.domid()?;
    // dom0 times, by its uptime, when the backend leaves Connected (xl got to the detach: under
    // load xl itself takes seconds to start) and when the guest's frontend is Closed.
    let script = format!(
        "b=/local/domain/0/backend/vbd/{domid}/51712/state; f=/local/domain/{domid}/device/vbd/51712/state; \
         up() {{ cut -d' ' -f1 /proc/uptime; }}; start=$(up); \
         xl block-detach {name} xvda > /tmp/block-detach.out 2>&1 & \
         while [ \"$(xenstore-read $b 2>/dev/null)\" = 4 ]; do :; done; closing=$(up); \
         while s=$(xenstore-read $f 2>/dev/null) && [ \"$s\" != 6 ]; do :; done; closed=$(up); \
         wait $!; rc=$?; echo \"start $start closing $closing closed $closed frontend ${{s:-gone}} xl $rc\"; \
         cat /tmp/block-detach.out",
        name = d.name
    );
    let out = d.agent.run_ok(&script, DRIVER_WAIT * 2)?;
    let words: Vec<&str> = out.split_whitespace().collect();
    let at = |key: &str| -> Option<f64> {
        words.iter().position(|w| *w == key).and_then(|i| words.get(i + 1)?.parse().ok())
    };
    let (Some(start), Some(closing), Some(closed)) = (at("start"), at("closing"), at("closed")) else {
        return Err(format!("dom0's detach timing printed {out:?}"));
    };
    if !out.contains("frontend 6 xl 0") {
        return Err(format!(
            "the frontend did not reach Closed before libxl removed it, or xl failed: {out:?}"
        ));
    }
    let answered = closed - closing;
    // libxl forces a detach the frontend does not answer after 10 s.
    if answered > SHUTDOWN_LIMIT.as_secs_f64() {
        return Err(format!("the guest took {answered:.1} s to close its end after the backend's Closing"));
    }
    println!(
        "    dom0: backend Closing {:.1} s after `xl block-detach` began; guest's frontend Closed {answered:.1} s later",
        closing - start
    );
    println!("    guest: {}", d.wait_line("; a later read")?);
    let vbds = d.dom0(&format!("xl block-list {}", d.name))?;
    if vbds.lines().count() != 1 {
        return Err(format!("the vbd is still listed after the detach: {vbds:?}"));
    }
    d.wait_line("disk: waiting for shutdown")?;
    d.dom0(&format!("xl list {}", d.name))
        .map_err(|e| format!("the domain is gone after the detach: {e}"))?;
    shut_down(d)
}

/// `xl block-detach` of the guest's only disk, then `xl block-attach` of another image under
/// the same name (xvda) and of a third under a new one (xvdb): the guest's `mote::disk::watch`
/// offers each, and it connects them and reads their first lines.
fn drive_disk_reattach(d: &mut Driver) -> Result<(), String> {
    d.wait_first_line("disk-reattach: watching")?;
    d.dom0(&format!("xl block-detach {} xvda", d.name))?;
    d.wait_line("disk: vbd 51712: closed")?;
    for (vdev, image) in [("xvda", "b"), ("xvdb", "c")] {
        let started = Instant::now();
        // xl runs dom0's block hotplug script (a loop device for the file), which has taken
        // over 30 s on a loaded host.
        let attach = format!(
            "xl block-attach {} format=raw,vdev={vdev},access=ro,target=/mnt/disks/reattach-{image}.img",
            d.name
        );
        d.agent.run_ok(&attach, DRIVER_WAIT * 4)?;
        let line = d.wait_line(&format!("disk-reattach: {vdev} "))?;
        println!(
            "    guest: {} ({:.1} s after `xl block-attach` began)",
            line.trim(),
            started.elapsed().as_secs_f64()
        );
    }
    d.wait_line("disk: waiting for shutdown")?;
    shut_down(d)
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

/// The guest stopped through its own error path, not a panic (an allocation failure panics).
fn check_no_panic(console: &str, _: &Image) -> Result<(), String> {
    match console.lines().find(|l| l.contains("PANIC")) {
        Some(line) => Err(format!("the guest panicked: {line}")),
        None => Ok(()),
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

/// The selftest's disk pattern (apps/selftest: `disk_pattern`).
fn disk_pattern(offset: u64) -> u8 {
    ((offset as u32).wrapping_mul(2_654_435_761) >> 24) as u8
}

/// After the guest wrote the pattern, flushed and powered off, dom0 hashes the image file: it
/// must be the pattern, byte for byte.
fn drive_disk_hash(d: &mut Driver) -> Result<(), String> {
    // The guest's report of a stalled transfer (`disk_timeout_s`) ends the wait too, while the
    // domain and its backend are still there to look at.
    const STALLED: &str = "no event from the backend";
    for marker in ["disk: wrote and flushed", "disk: read and verified"] {
        match d.wait_line_of(marker, &[marker, STALLED]).and_then(|line| match line.contains(STALLED) {
            true => Err(format!("the guest reported a stalled transfer: {line}")),
            false => Ok(line),
        }) {
            Ok(line) => println!("    guest: {line}"),
            Err(e) => {
                // What dom0 and Xen saw, for the transfer that now and then stalls
                // (docs/measurements.md, "Closing with a time limit"): blkback's
                // counters twice, 2 s apart (moving or not), its and the loop
                // device's kernel threads, and Xen's view of the guest's vCPU and
                // event channels (pending/masked per port).
                let domid = d.domid().map_or_else(|e| e, |id| id.to_string());
                let seen = d.dom0(&format!(
                    "dmesg | tail -n 12; xenstore-ls -f /local/domain/0/backend/vbd 2>&1 | grep -E '/state|/sectors'; \
                     free -m; stats() {{ for f in /sys/bus/xen-backend/devices/vbd-*/statistics/*; do \
                     printf '%s=%s ' ${{f##*/}} $(cat $f); done; echo; }}; stats; sleep 2; stats; \
                     for p in /proc/[0-9]*; do case $(cat $p/comm) in *blkback*|*xvda*|*loop*) \
                     echo \"$(cat $p/comm) $(awk '{{print $3}}' $p/stat) $(cat $p/wchan)\"; cat $p/stack;; esac; done; \
                     echo w >/proc/sysrq-trigger; dmesg | grep -A14 'blocked state' | tail -n 40; \
                     xl debug-keys q; xl debug-keys e; xl dmesg | awk '/Event channel information for domain/ {{ on = $0 ~ / {domid}:/ }} on' | head -n 24; \
                     xl dmesg | grep -A6 'VCPU information and callbacks for d{domid}' | head -n 8; true"
                ));
                for line in seen.unwrap_or_else(|e| e).lines() {
                    println!("    dom0| {line}");
                }
                // The guest's report goes on with the ring's indices.
                if let Ok(line) = d.wait_line("blkfront:") {
                    println!("    guest: {line}");
                }
                return Err(e);
            }
        }
    }
    let deadline = Instant::now() + DRIVER_WAIT;
    while d.agent.run(&format!("xl domid {}", d.name), DRIVER_WAIT)?.0 == 0 {
        if Instant::now() > deadline {
            return Err("the guest did not go away after the disk test".into());
        }
        thread::sleep(Duration::from_millis(200));
    }
    let pattern: Vec<u8> = (0..64u64 << 20).map(disk_pattern).collect();
    let expected = host_sha256(&pattern)?;
    let out = d.dom0("sha256sum /mnt/disks/rw.img")?;
    let got = out.split_whitespace().next().unwrap_or_default();
    if got != expected {
        return Err(format!("dom0 hashed the image as {got}, the pattern is {expected}"));
    }
    println!("    dom0: sha256 of the 64 MiB image matches the pattern ({})", &got[..16]);
    Ok(())
}

/// The selftest's line `disk: N requests, M indirect, at most K in flight`: the 1 MiB
/// transfers went out as indirect requests of 128 KiB, four at a time (what the default
/// buffer pool holds; small requests could fill the 128-slot ring, see the host tests).
fn check_disk_stats(console: &str, _: &Image) -> Result<(), String> {
    let line = console
        .lines()
        .find(|l| l.contains(" indirect, at most "))
        .ok_or("no `disk: N requests, M indirect, at most K in flight` line")?;
    let numbers: Vec<u64> =
        line.split_whitespace().filter_map(|w| w.trim_end_matches(',').parse().ok()).collect();
    match numbers[..] {
        [requests, indirect, peak] if indirect > 0 && indirect <= requests && peak >= 4 => Ok(()),
        _ => Err(format!("{line:?}: expected indirect requests, 4 or more in flight")),
    }
}

/// `disk-async: … at most K in flight`: the tasks' reads were with the backend together,
/// more of them than a one-page ring (32 slots) holds.
fn check_disk_async(console: &str, _: &Image) -> Result<(), String> {
    let line = console.lines().find(|l| l.contains("disk-async:")).ok_or("no `disk-async:` line")?;
    println!("    guest: {}", line.trim());
    let peak: Option<u64> =
        line.split("at most ").nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok());
    match peak {
        Some(k) if k > 32 => Ok(()),
        _ => Err(format!("{line:?}: expected more than 32 requests in flight")),
    }
}

/// While the guest waits after its discard, dom0 checks that blkback counted a discard
/// request and uses persistent grants and a 4-page ring with it; after the guest is gone,
/// the image must be the pattern with zeros in the middle half, and that half a hole in the
/// file (tmpfs frees discarded pages).
fn drive_disk_discard(d: &mut Driver) -> Result<(), String> {
    d.wait_first_line("disk: waiting for shutdown")?;
    let domid = d.domid()?;
    let stats = format!("/sys/bus/xen-backend/devices/vbd-{domid}-51712/statistics");
    let discards = d.dom0(&format!("cat {stats}/ds_req"))?;
    if discards.trim().parse::<u64>().unwrap_or(0) == 0 {
        return Err(format!("blkback counted {discards:?} discard requests"));
    }
    let backend = format!("/local/domain/0/backend/vbd/{domid}/51712");
    let frontend = format!("/local/domain/{domid}/device/vbd/51712");
    let persistent =
        d.dom0(&format!("xenstore-read {backend}/feature-persistent {frontend}/feature-persistent"))?;
    if persistent.split_whitespace().collect::<Vec<_>>() != ["1", "1"] {
        return Err(format!("feature-persistent of backend and frontend: {persistent:?}"));
    }
    let order = d.dom0(&format!("xenstore-read {frontend}/ring-page-order {frontend}/ring-ref3"))?;
    println!(
        "    dom0: blkback counted {} discard(s); persistent grants; ring-page-order {}",
        discards.trim(),
        order.lines().next().unwrap_or_default()
    );
    let log = d.dom0("dmesg")?;
    let used = log.lines().filter(|l| l.contains(&format!("vbd/{domid}/51712: using"))).collect::<Vec<_>>();
    if !used.iter().any(|l| l.contains("persistent grants")) {
        return Err(format!("dom0's log does not show blkback using persistent grants: {used:?}"));
    }
    shut_down(d)?;
    const MIB: u64 = 1 << 20;
    let image: Vec<u8> =
        (0..8 * MIB).map(|i| if (2 * MIB..6 * MIB).contains(&i) { 0 } else { disk_pattern(i) }).collect();
    let expected = host_sha256(&image)?;
    let out = d.dom0("sha256sum /mnt/disks/discard.img && stat -c '%b %B' /mnt/disks/discard.img")?;
    let words: Vec<&str> = out.split_whitespace().collect();
    if words.first() != Some(&expected.as_str()) {
        return Err(format!("dom0 hashed the image as {:?}, expected {expected}", words.first()));
    }
    let allocated = match words[..] {
        [_, _, blocks, size] => blocks.parse::<u64>().unwrap_or(u64::MAX) * size.parse::<u64>().unwrap_or(1),
        _ => return Err(format!("dom0's stat printed {out:?}")),
    };
    if allocated > 4 * MIB {
        return Err(format!("the image still occupies {allocated} bytes: no hole where the guest discarded"));
    }
    println!("    dom0: image matches pattern-with-hole, {} KiB allocated of 8192", allocated / 1024);
    Ok(())
}

/// Starts the app's forwards to the guest at the address in its console line `… on <ip>`
/// (`marker` names that line); the relays run while the returned handles live.
fn forward_from_host(d: &mut Driver, marker: &str) -> Result<forward::Relays, String> {
    let line = d.wait_line(marker)?;
    let ip: std::net::Ipv4Addr = line
        .split(|c: char| c.is_whitespace() || c == '/')
        .find_map(|word| word.parse().ok())
        .ok_or_else(|| format!("no address in {line:?}"))?;
    let wanted = d.forwards.len();
    let relays = forward::start(&d.agent, &mut d.forwards, d.name, ip);
    if wanted == 0 {
        return Err(format!("{} has no forwarded ports (see the harness's lines above)", d.name));
    }
    if relays.len() != wanted {
        return Err(format!("{} of {wanted} forwards started", relays.len()));
    }
    Ok(relays)
}

/// Runs a command on the host; its standard output.
fn host(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What `cargo xtask run dns` offers: the host's own dig answered through 127.0.0.1:5353.
fn drive_dns_from_host(d: &mut Driver) -> Result<(), String> {
    let _relays = forward_from_host(d, "dns: serving on ")?;
    dns_from_host()?;
    shut_down(d)
}

/// The host's dig gets www.example.com's address from 127.0.0.1:5353, over UDP and TCP.
pub(crate) fn dns_from_host() -> Result<(), String> {
    for transport in ["+notcp", "+tcp"] {
        let answer = host(
            "dig",
            &["@127.0.0.1", "-p", "5353", transport, "+short", "+tries=3", "www.example.com", "A"],
        )?;
        if answer.trim() != "192.0.2.80" {
            return Err(format!("host dig {transport} www.example.com A answered {answer:?}"));
        }
        println!("    host: dig @127.0.0.1 -p 5353 {transport} www.example.com A: 192.0.2.80");
    }
    Ok(())
}

/// What `cargo xtask run web` offers: the host's own curl served through 127.0.0.1:8080.
fn drive_web_from_host(d: &mut Driver) -> Result<(), String> {
    let _relays = forward_from_host(d, "web: serving ")?;
    web_from_host()?;
    shut_down(d)
}

/// The host's curl gets the sample site's index.html from 127.0.0.1:8080, byte for byte.
pub(crate) fn web_from_host() -> Result<(), String> {
    let page = Command::new("curl")
        .args(["-sf", "--retry", "3", "http://127.0.0.1:8080/"])
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    if !page.status.success() {
        return Err(format!(
            "host curl http://127.0.0.1:8080/ failed: {}",
            String::from_utf8_lossy(&page.stderr)
        ));
    }
    if page.stdout != site_file("index.html")? {
        return Err("host curl http://127.0.0.1:8080/ returned something else than index.html".into());
    }
    println!("    host: curl http://127.0.0.1:8080/ returned index.html byte for byte");
    Ok(())
}

/// How long `xl shutdown` may take to end a guest that is waiting for it.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);
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

/// Two boots of one image (`xl reboot` between) print 32 bytes from `mote::random::fill`
/// each: both not all zeros, and different (the Unikraft bug X41 found: the same every boot).
fn drive_random_reboot(d: &mut Driver) -> Result<(), String> {
    let first = random_bytes(d)?;
    d.dom0(&format!("xl reboot {}", d.name))?;
    d.wait_line("wait: Reboot requested")?;
    let second = random_bytes(d)?;
    if first == second {
        return Err(format!("both boots drew {first}"));
    }
    d.dom0(&format!("xl shutdown -w {}", d.name))?;
    Ok(())
}

/// The hex bytes of the next `random bytes: <hex> from <source>` line, checked to be 32 and
/// not all zeros; printed with their source.
fn random_bytes(d: &mut Driver) -> Result<String, String> {
    let line = d.wait_line("random bytes: ")?;
    println!("    guest: {line}");
    let hex = line.split("random bytes: ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("no 32 bytes in hex in {line:?}"));
    }
    if hex.bytes().all(|b| b == b'0') {
        return Err(format!("32 zero bytes: {line:?}"));
    }
    d.wait_line("wait: waiting for shutdown")?;
    Ok(hex.to_owned())
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

/// Runs `case`'s guest to its end, with its driver (if any) acting alongside; a driver that
/// fails has the domain destroyed rather than waiting for the case's timeout.
fn run_case(
    case: &Case,
    agent: &Agent,
    image: &Image,
    args: &[String],
    opts: &guest::Options,
    forwards: Vec<forward::Plan>,
) -> (guest::GuestRun, Result<(), String>) {
    let Some(drive) = case.driver else {
        return (guest::run(agent, image, args, opts, &mut |_| {}), Ok(()));
    };
    let (tx, lines) = mpsc::channel();
    thread::scope(|scope| {
        let guest = scope.spawn(move || {
            guest::run(agent, image, args, opts, &mut |line| {
                let _ = tx.send(line.to_owned());
            })
        });
        let mut driver =
            Driver { agent: *agent, name: case.app, debug_elf: image.debug_elf.clone(), lines, forwards };
        let driven = drive(&mut driver);
        if driven.is_err() {
            let _ = agent.run(&format!("xl destroy {}", case.app), DRIVER_WAIT);
        }
        let run = guest.join().unwrap_or_else(|_| guest::GuestRun {
            result: Err("the guest runner panicked".into()),
            console: String::new(),
        });
        (run, driven)
    })
}

/// Runs the checks of `case` against a finished run; the reasons for failure.
fn judge(case: &Case, image: &Image, run: &guest::GuestRun) -> Vec<String> {
    let mut problems = Vec::new();
    match &run.result {
        Ok(reason) if *reason == case.reason => {}
        Ok(reason) => problems.push(format!(
            "expected the guest to end with {:?}, but it {}",
            case.reason,
            reason.verb()
        )),
        Err(e) => problems.push(e.clone()),
    }
    for check in &case.checks {
        let outcome = match check {
            Check::Contains(text) => {
                if run.console.contains(text) {
                    Ok(())
                } else {
                    Err(format!("console does not contain {text:?}"))
                }
            }
            Check::Line(text) => {
                if run.console.lines().any(|l| l == *text) {
                    Ok(())
                } else {
                    Err(format!("console has no line {text:?}"))
                }
            }
            Check::Custom(what, f) => f(&run.console, image).map_err(|e| format!("{what}: {e}")),
        };
        if let Err(e) = outcome {
            problems.push(e);
        }
    }
    problems
}

/// The last lines of `console`, long lines shortened, indented.
fn excerpt(console: &str) -> String {
    if console.is_empty() {
        return "    (no console output)".into();
    }
    let lines: Vec<&str> = console.lines().collect();
    let mut out = String::new();
    if lines.len() > EXCERPT_LINES {
        out.push_str(&format!("    … ({} earlier lines)\n", lines.len() - EXCERPT_LINES));
    }
    for line in &lines[lines.len().saturating_sub(EXCERPT_LINES)..] {
        if line.chars().count() > EXCERPT_WIDTH {
            let head: String = line.chars().take(EXCERPT_WIDTH).collect();
            out.push_str(&format!("    | {head}… ({} characters)\n", line.chars().count()));
        } else {
            out.push_str(&format!("    | {line}\n"));
        }
    }
    out.trim_end().to_owned()
}

/// Options of `cargo xtask test`.
pub struct TestOptions {
    /// Skip the host packages and unit tests (steps a and b).
    pub integration_only: bool,
    /// Run only the hosted cases (`tests::hosted::cases`).
    pub hosted_only: bool,
    /// Run only the cases whose name contains this.
    pub filter: Option<String>,
}

/// `cargo xtask test`; returns whether everything passed.
pub fn run(opts: &TestOptions) -> Result<bool, String> {
    let mut ok = true;
    let wanted = |name: &str| opts.filter.as_deref().is_none_or(|f| name.contains(f));
    if opts.hosted_only {
        assets::install_host_deps()?;
        let (passed, failed) = hosted::run(&wanted);
        println!("hosted: {passed} passed, {failed} failed");
        return Ok(failed == 0);
    }
    if !opts.integration_only {
        eprintln!("==> host packages");
        assets::install_host_deps()?;
        eprintln!("==> host unit tests");
        ok &= unit_tests();
    }
    eprintln!("==> integration tests under Xen");
    let cases: Vec<Case> = cases().into_iter().filter(|c| wanted(c.name)).collect();
    let (passed, failed) = integration(&cases);
    println!("integration: {passed} passed, {failed} failed");
    eprintln!("==> hosted integration tests (Linux processes in network namespaces)");
    let (hosted_passed, hosted_failed) = hosted::run(&wanted);
    println!("hosted: {hosted_passed} passed, {hosted_failed} failed");
    Ok(ok && failed == 0 && hosted_failed == 0)
}

/// Host unit tests: every workspace package but the target-only ones.
fn unit_tests() -> bool {
    let mut args = vec!["test".to_owned(), "--workspace".into()];
    let excluded = match target_only_packages() {
        Ok(packages) => packages,
        Err(e) => {
            eprintln!("unit tests: {e}");
            return false;
        }
    };
    for package in excluded {
        args.push("--exclude".into());
        args.push(package);
    }
    // The runtime once more as dns and web link it: without its default `ipv6` feature.
    let without_ipv6 = ["test", "-p", "mote", "--no-default-features"];
    let mut ok = true;
    for args in [args, without_ipv6.map(String::from).to_vec()] {
        if let Err(e) = run_status(crate::cargo().args(&args)) {
            eprintln!("unit tests: {e}");
            ok = false;
        }
    }
    ok
}

/// The package names of apps/*, which only build for the unikernel target: left out of the
/// host unit tests (mote-arch builds its page-table builder for the host, for its tests).
pub(crate) fn target_only_packages() -> Result<Vec<String>, String> {
    let mut packages = Vec::new();
    let apps = workspace_root().join("apps");
    let entries = std::fs::read_dir(&apps).map_err(|e| format!("read {}: {e}", apps.display()))?;
    for entry in entries.flatten() {
        // An app's package name is its folder's name.
        if entry.path().join("Cargo.toml").is_file() {
            packages.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    packages.sort();
    Ok(packages)
}

/// The zones the dns cases are served, through `--zone`: the sample and the NSD
/// differential test's zone.
const DNS_ZONES: &[&str] = &["apps/dns/zones/example.com.zone", "dns/tests/zones/test.zone"];

/// An app's image for the cases: the dns app's with [`DNS_ZONES`]; an app that serves a site
/// (`site = true`) built with `--site` and its own sample site plus [`SITE_CHECK`], so that its
/// cases show both that the sample is served and that `--site` is honoured.
fn build_for_cases(app: &str, flavor: build::Flavor) -> Result<Image, String> {
    build::build_with(app, flavor, &case_build_env(app)?)
}

/// The build-script variables of [`build_for_cases`] (for hosted cases too).
pub(crate) fn case_build_env(app: &str) -> Result<Vec<(&'static str, std::ffi::OsString)>, String> {
    let mut env = Vec::new();
    if app == "dns" {
        let zones: Vec<std::path::PathBuf> = DNS_ZONES.iter().map(|z| workspace_root().join(z)).collect();
        env.push((crate::zones::ENV, crate::zones::check(&zones)?));
    }
    if build::app_meta(app)?.site {
        let site = crate::mote_dir().join(format!("{app}-test-site"));
        copy_tree(&workspace_root().join("apps").join(app).join("site"), &site)?;
        write_if_changed(&site.join(SITE_CHECK.0), SITE_CHECK.1.as_bytes())?;
        env.push(build::site_env(app, &site)?);
    }
    Ok(env)
}

/// Builds the images, boots one harness, runs `cases`; returns (passed, failed).
fn integration(cases: &[Case]) -> (usize, usize) {
    let fail_all = |why: &str| {
        for case in cases {
            println!("test {} ... FAILED\n    {}", case.name, why.replace('\n', "\n    "));
        }
        (0, cases.len())
    };
    if cases.is_empty() {
        return (0, 0);
    }
    let mut images: BTreeMap<(&str, build::Flavor), Result<Image, String>> = BTreeMap::new();
    for case in cases {
        images.entry((case.app, case.flavor())).or_insert_with(|| build_for_cases(case.app, case.flavor()));
    }
    let assets = match assets::ensure() {
        Ok(a) => a,
        Err(e) => return fail_all(&format!("harness assets: {e}")),
    };
    // Apps' `forward = [...]` ports, so that a case can reach its guest from 127.0.0.1.
    let mut forwards: BTreeMap<&str, Vec<forward::Plan>> = BTreeMap::new();
    for ((app, _), image) in images.iter() {
        if forwards.contains_key(app) {
            continue;
        }
        if let Ok(img) = image {
            match forward::plan(&img.meta.forward) {
                Ok(plans) => {
                    // Another harness may hold a port: QEMU would refuse to start, so only the
                    // cases that need that port fail.
                    let (free, taken): (Vec<_>, Vec<_>) = plans
                        .into_iter()
                        .partition(|p| std::net::TcpListener::bind(("127.0.0.1", p.tcp_port())).is_ok());
                    for plan in taken {
                        eprintln!("harness: 127.0.0.1:{} is taken: no forward for {app}", plan.tcp_port());
                    }
                    forwards.insert(app, free);
                }
                // Only the cases that reach the guest from the host need them.
                Err(e) => eprintln!("harness: no forwarded ports for {app}: {e}"),
            }
        }
    }
    let tcp_ports: Vec<u16> = forwards.values().flat_map(|plans| forward::tcp_ports(plans)).collect();
    let mut harness = match Harness::boot(&assets, &tcp_ports) {
        Ok(h) => h,
        Err(e) => return fail_all(&format!("harness did not start: {e}")),
    };
    let agent = harness.agent();
    for ((app, _), image) in images.iter_mut() {
        if let Ok(img) = image {
            if let Err(e) = guest::upload(&agent, img) {
                *image = Err(format!("uploading {app} to dom0: {e}"));
            }
        }
    }

    if cases.iter().any(|c| c.xl.iter().any(|o| o.contains("/mnt/disks/"))) {
        if let Err(e) = agent.run_ok(DISK_SETUP, DRIVER_WAIT) {
            return fail_all(&format!("creating the disk images in dom0: {e}"));
        }
    }
    if cases.iter().any(|c| content::uses_content(c.xl)) {
        if let Err(e) = content::setup(&agent) {
            return fail_all(&format!("making the content disk images: {e}"));
        }
    }
    let (mut passed, mut failed) = (0, 0);
    for case in cases {
        let started = Instant::now();
        let problems_and_console = match &images[&(case.app, case.flavor())] {
            Err(e) => (vec![format!("image {}: {e}", case.app)], String::new()),
            Ok(image) => match harness.check_alive() {
                Err(e) => (vec![e], String::new()),
                Ok(()) => {
                    let args: Vec<String> = case.args.iter().map(|s| s.to_string()).collect();
                    let opts = guest::Options {
                        timeout: Some(CASE_TIMEOUT),
                        echo: false,
                        clock: Instant::now(),
                        xl: case.xl.iter().map(|s| s.to_string()).collect(),
                    };
                    let plans = forwards.get_mut(case.app).map(std::mem::take).unwrap_or_default();
                    let (run, driven) = run_case(case, &agent, image, &args, &opts, plans);
                    let mut problems = judge(case, image, &run);
                    if let Err(e) = driven {
                        problems.insert(0, format!("driver: {e}"));
                    }
                    (problems, run.console)
                }
            },
        };
        let (problems, console) = problems_and_console;
        let secs = started.elapsed().as_secs_f64();
        if problems.is_empty() {
            passed += 1;
            println!("test {} ... ok ({secs:.1}s)", case.name);
        } else {
            failed += 1;
            println!("test {} ... FAILED ({secs:.1}s)", case.name);
            for problem in problems {
                println!("    {}", problem.replace('\n', "\n    "));
            }
            println!("    console ({} {}):\n{}", case.app, case.args.join(" "), excerpt(&console));
        }
    }
    if failed > 0 {
        println!("serial log of the harness: {}", harness::log_file().display());
    }
    drop(harness);
    (passed, failed)
}

/// Detaches vif 0 of the running guest and attaches a new one: the guest closes the old, sees
/// the new one in its `device/vif` directory, connects it and serves on it.
/// `xl network-detach` then `xl network-attach` of vif 0, waiting for the guest to close it and
/// connect it again; the vif's counts line, logged as it went down.
fn reattach_vif0(d: &mut Driver) -> Result<String, String> {
    d.dom0(&format!("xl network-detach {} 0", d.name))?;
    d.wait_line("net: vif 0: closed")?;
    let counts = d.wait_line("net: vif 0: ")?;
    let started = Instant::now();
    d.dom0(&format!("xl network-attach {} bridge=xenbr0", d.name))?;
    d.wait_line("net: vif 0 connected")?;
    println!(
        "    vif 0 detached, attached again and connected {:.1} s after attach",
        started.elapsed().as_secs_f64()
    );
    Ok(counts)
}

/// The GSO packets a vif's counts line says it received (`… received (N over several
/// buffers, G GSO), …`).
fn gso_packets(counts: &str) -> Option<u64> {
    let before = counts.split(" GSO)").next().filter(|b| b.len() < counts.len())?;
    before.rsplit(", ").next()?.parse().ok()
}

/// The segments dropped for a bad checksum in a vif's counts line (`… N bad checksums, …`).
fn bad_checksums(counts: &str) -> Option<u64> {
    let (before, _) = counts.split_once(" bad checksums")?;
    before.rsplit(", ").next()?.parse().ok()
}

/// The GSO packets sent in a vif's counts line (`… packets sent (N GSO of S segments) …`):
/// (N, S).
fn tx_gso_packets(counts: &str) -> Option<(u64, u64)> {
    let (before, after) = counts.split_once(" GSO of ")?;
    let packets = before.rsplit('(').next()?.parse().ok()?;
    let segments = after.split(' ').next()?.parse().ok()?;
    Some((packets, segments))
}

/// Echo works on a static address; twice `xl network-detach` then `xl network-attach` of
/// vif 0; echo works again each time on the same address (the stack and its sockets stay).
fn drive_vif_reattach(d: &mut Driver) -> Result<(), String> {
    let ip = echo_address(d)?;
    dom0_check(d, &format!("/mote/agent udp-check {ip}:7 5"))?;
    dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 100000"))?;
    // A TCP stream from dom0 comes in GSO packets (rx GSO), which the vif counts.
    dom0_check(d, &format!("/mote/agent discard-check {ip}:9 2000000"))?;
    for round in 0..2 {
        let counts = reattach_vif0(d)?;
        if round == 0 {
            match gso_packets(&counts) {
                Some(n) if n > 0 => println!("    vif 0 received {n} GSO packets before the detach"),
                _ => return Err(format!("no GSO packet received from dom0's TCP stream: {counts}")),
            }
            // The echo answers each GSO packet with several segments in one turn: joined.
            match tx_gso_packets(&counts) {
                Some((n, segments)) if n > 0 && segments > n => {
                    println!("    vif 0 sent {n} GSO packets of {segments} segments before the detach")
                }
                _ => return Err(format!("no GSO packet sent with the echoed TCP stream: {counts}")),
            }
        }
        dom0_check(d, &format!("ping -c 2 -W 5 {ip}"))?;
        dom0_check(d, &format!("/mote/agent udp-check {ip}:7 5"))?;
        dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 100000"))?;
    }
    shut_down(d)
}

/// The guest boots with one vif; `xl network-attach` gives it a second (vif 1, a number it
/// never had): the guest picks it up, serves echo on its address (`vif1.ip=`), and vif 0
/// serves on.
fn drive_vif_hot_attach(d: &mut Driver) -> Result<(), String> {
    for ip in hot_attach(d, "echo: serving on ", ["10.0.0.10", "10.0.0.11"])? {
        dom0_check(d, &format!("ping -c 2 -W 5 {ip}"))?;
        dom0_check(d, &format!("/mote/agent udp-check {ip}:7 5"))?;
        dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 100000"))?;
    }
    shut_down(d)
}

/// Waits for the app's `serving` line (`<app>: serving on <ip> …`) with the first address,
/// attaches a vif with `xl network-attach` and waits for the guest to connect it (vif 1) and
/// serve on the second; the addresses, the new one first.
fn hot_attach<'a>(
    d: &mut Driver,
    serving: &str,
    [first, second]: [&'a str; 2],
) -> Result<[&'a str; 2], String> {
    let address = |line: &str| line.split_whitespace().nth(3).unwrap_or_default().to_owned();
    let on = address(&d.wait_line(serving)?);
    if on != first {
        return Err(format!("serving on {on}, not {first}"));
    }
    let started = Instant::now();
    d.dom0(&format!("xl network-attach {} bridge=xenbr0", d.name))?;
    // Serving (sockets bound on the new stack) and connected (the handshake done), in
    // whichever order they come.
    let (mut attached, mut connected) = (None, false);
    while attached.is_none() || !connected {
        let line = d.wait_line("")?;
        connected |= line.contains("net: vif 1 connected");
        if line.contains(serving) {
            attached = Some(address(&line));
        }
    }
    let attached = attached.unwrap_or_default();
    if attached != second {
        return Err(format!("the attached vif serves on {attached}, not {second}"));
    }
    println!(
        "    vif 1 attached and serving {:.1} s after xl network-attach",
        started.elapsed().as_secs_f64()
    );
    Ok([second, first])
}

/// The same with DHCP: the new vif has a new MAC, the guest asks for a lease again and serves
/// on the address it gets.
fn drive_vif_reattach_dhcp(d: &mut Driver) -> Result<(), String> {
    let ip = echo_address(d)?;
    dom0_check(d, &format!("/mote/agent udp-check {ip}:7 5"))?;
    reattach_vif0(d)?;
    let line = d.wait_line(" via DHCP")?;
    let ip = line
        .split("net: ")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("no address in {line:?}"))?
        .to_owned();
    println!("    leased {ip} again by DHCP");
    dom0_check(d, &format!("/mote/agent udp-check {ip}:7 5"))?;
    dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 100000"))?;
    shut_down(d)
}

/// Most connections [`drive_dns_out_of_memory`] opens.
const DNS_HOGS_MAX: usize = 60;

/// The dom0 bash script of [`drive_dns_out_of_memory`], run as `bash FILE IP MAX`. `query`
/// sends `www.example.com A` (id 0x1234, no recursion wanted) over UDP and prints the reply in
/// hex, or nothing after 5 s.
const DNS_OOM_SCRIPT: &str = r#"ip=$1
query() {
  exec {u}<>/dev/udp/$ip/53
  printf '\022\064\000\000\000\001\000\000\000\000\000\000\003www\007example\003com\000\000\001\000\001' >&$u
  timeout 5 dd bs=512 count=1 <&$u 2>/dev/null | od -An -tx1 | tr -d ' \n'
  exec {u}>&-
}
echo "before $(query)"
held=0; end='no connection closed'
for i in $(seq "$2"); do
  if ! exec {fd}<>/dev/tcp/$ip/53; then end="connection $i refused"; break; fi
  printf '\377\377\000' >&$fd
  read -t 0.3 -N 1 -u $fd _
  if [ $? -le 128 ]; then end="connection $i closed by the guest"; break; fi
  held=$((held+1))
done
echo "held $held; $end"
echo "during $(query)"
"#;

/// Where the out-of-memory cases put their dom0 scripts (the agent takes one-line commands).
const OOM_SCRIPT_FILE: &str = "/tmp/out-of-memory.sh";

/// Fills the heap of dns (at `memory=3`) with TCP queries it must hold: connections that each
/// announce a query of 65 535 bytes (the most RFC 7766's two-octet length allows) and send one
/// byte of it, opened one after another (each held until its query is complete or dns's 10 s
/// idle limit passes: the script waits 0.3 s on each) until the guest closes one. The guest must log that it had no memory for
/// the query and closed that connection, answer UDP meanwhile (the question, asked once
/// before, from its memo of replies), and answer over TCP again once the connections are gone.
fn drive_dns_out_of_memory(d: &mut Driver) -> Result<(), String> {
    let ip = dns_address(d)?;
    d.agent.put(OOM_SCRIPT_FILE, DNS_OOM_SCRIPT.as_bytes(), 0o644, DRIVER_WAIT)?;
    // At most DNS_HOGS_MAX waits of 0.3 s, and the UDP queries' 5 s each.
    let out = d.agent.run_ok(&format!("bash {OOM_SCRIPT_FILE} {ip} {DNS_HOGS_MAX}"), DRIVER_WAIT * 3)?;
    let line = |key: &str| out.lines().find_map(|l| l.strip_prefix(key)).unwrap_or("").trim();
    let answered = |hex: &str| hex.starts_with("1234") && hex.contains("c0000250");
    if !answered(line("before ")) {
        return Err(format!("no UDP answer for www.example.com A before the test: {out:?}"));
    }
    let report = line("held ");
    println!("    {DNS_HOGS_MAX} connections at most, each announcing a 65535-byte query: held {report}");
    if !report.contains("closed by the guest") || report.starts_with("0;") {
        return Err(format!("expected connections held, then one closed by the guest: {out:?}"));
    }
    d.wait_line("dns: no memory for a tcp query of 65535 bytes: connection closed")?;
    if !answered(line("during ")) {
        return Err(format!("no UDP answer while the heap was full: {out:?}"));
    }
    println!("    UDP answered www.example.com A while TCP queries filled the heap");
    // The guest frees the connections' memory as it takes in their closes, and listens again
    // on port 53 once a socket fits: until then a SYN is refused. Ask for up to 20 s.
    let tcp = d.agent.run(
        &format!(
            "for i in $(seq 20); do a=$(dig @{ip} +tcp +norec +time=2 +tries=1 +short www.example.com A 2>&1); \
             if [ \"$a\" = 192.0.2.80 ]; then echo \"answer=$a after=$i\"; exit 0; fi; sleep 1; done; echo \"last: $a\"; exit 1"
        ),
        DRIVER_WAIT * 2,
    )?;
    if tcp.0 != 0 {
        return Err(format!("TCP did not answer again within 20 s of the connections closing: {:?}", tcp.1));
    }
    println!("    TCP answered again once they closed ({})", tcp.1.trim());
    shut_down(d)
}

/// How long each soak case of `cargo xtask test` loads its service.
const SOAK_CASE_RUN: Duration = Duration::from_secs(60);

/// A minute of `cargo xtask soak`'s load on one service at `ip`: it must pass
/// ([`crate::soak::Report::passes`]: the load generator's failures and losses within the rule,
/// the heap high-water mark the guest writes to xenstore flat).
fn soak_case(d: &mut Driver, app: &'static str, ip: &str) -> Result<(), String> {
    let report = crate::soak::soak(&d.agent, d.name, app, ip, SOAK_CASE_RUN)?;
    println!("    {}", report.line(app, SOAK_CASE_RUN));
    if !report.passes(SOAK_CASE_RUN) {
        return Err(format!(
            "the {app} soak failed: {}; heap samples {:?}",
            report.load.detail, report.samples
        ));
    }
    shut_down(d)
}

/// Echo under rounds of `mote-agent` checks.
fn drive_soak_echo(d: &mut Driver) -> Result<(), String> {
    let ip = echo_address(d)?;
    soak_case(d, "echo", &ip)
}

/// dns under dnsperf.
fn drive_soak_dns(d: &mut Driver) -> Result<(), String> {
    let ip = dns_address(d)?;
    soak_case(d, "dns", &ip)
}

/// web under wrk.
fn drive_soak_web(d: &mut Driver) -> Result<(), String> {
    let (ip, _) = web_address(d)?;
    soak_case(d, "web", &ip)
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::build::AppMeta;

    #[test]
    fn gso_packets_are_read_from_the_vifs_counts_line() {
        let line = "[INFO  mote::net::xen] net: vif 0: 7585 packets sent (230 GSO of 2944 segments), 1327 received (1076 over several buffers, 1109 GSO), 0 rx errors, 0 bad checksums, 0 tx dropped by the backend, 0 for want of a slot";
        assert_eq!(gso_packets(line), Some(1109));
        assert_eq!(tx_gso_packets(line), Some((230, 2944)));
        assert_eq!(bad_checksums(line), Some(0));
        assert_eq!(bad_checksums(&line.replace("0 bad checksums", "1000 bad checksums")), Some(1000));
        assert_eq!(bad_checksums("net: vif 0: 3 frames sent, 4 received"), None);
        assert_eq!(tx_gso_packets(&line.replace("230 GSO of 2944", "0 GSO of 0")), Some((0, 0)));
        assert_eq!(tx_gso_packets("net: vif 0: 3 frames sent, 4 received"), None);
        assert_eq!(gso_packets(&line.replace("1109 GSO", "0 GSO")), Some(0));
        assert_eq!(
            gso_packets("net: vif 0: 3 frames sent, 4 received (0 over several buffers), 0 rx errors"),
            None
        );
    }

    fn image(memory_mib: u32) -> Image {
        Image {
            app: "hello".into(),
            meta: AppMeta { memory_mib, ..AppMeta::default() },
            flavor: crate::build::Flavor::RELEASE,
            elf: "/x.elf".into(),
            debug_elf: "/x.debug.elf".into(),
            cfg: "/x.cfg".into(),
        }
    }

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
    fn heap_figures_from_xenstore_read() {
        assert_eq!(heap_bytes("1234567\n"), Ok(1_234_567));
        assert!(heap_bytes("").is_err());
        assert!(heap_bytes("12 KiB").is_err());
    }

    /// A case that asks for the stub on its command line runs an image that has one (or checks
    /// the error of one that has not), and only those cases pay for the gdb build.
    #[test]
    fn gdb_cases_use_the_gdb_build() {
        for case in cases() {
            let asks = case.args.iter().any(|a| a.starts_with("gdb="));
            let expects_no_stub =
                case.checks.iter().any(|c| matches!(c, Check::Contains(t) if t.contains("has no gdb stub")));
            assert_eq!(case.gdb, asks && !expects_no_stub, "{}", case.name);
        }
    }

    /// A case that attaches a content disk runs the image that reads it, but for the one that
    /// checks the refusal of an image without the reader; only those cases pay for the build.
    #[test]
    fn content_disk_cases_use_the_disk_build() {
        for case in cases() {
            let refusal = case
                .checks
                .iter()
                .any(|c| matches!(c, Check::Contains(t) if t.contains("reads no content disk")));
            assert_eq!(case.disk, content::uses_content(case.xl) && !refusal, "{}", case.name);
        }
    }

    #[test]
    fn disk_figures_are_read_from_the_guests_lines() {
        let img = image(4);
        let line = "disk: 1025 requests, 1024 indirect, at most 4 in flight";
        assert!(check_disk_stats(line, &img).is_ok());
        assert!(check_disk_stats("disk: 1025 requests, 0 indirect, at most 4 in flight", &img).is_err());
        assert!(check_disk_stats("disk: 40 requests, 8 indirect, at most 1 in flight", &img).is_err());
        assert!(check_disk_stats("nothing", &img).is_err());
        let line = "disk-async: 1024 reads of 4 KiB by 64 tasks verified in 4584 ms (223 IOPS), at most 64 in flight";
        assert!(check_disk_async(line, &img).is_ok());
        assert!(check_disk_async(&line.replace("most 64", "most 32"), &img).is_err());
    }

    #[test]
    fn case_names_are_unique() {
        let cases = cases();
        let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), cases.len());
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

    #[test]
    fn judge_reports_reason_and_checks() {
        let cases = cases();
        let case = cases.iter().find(|c| c.name == "panic_is_reported").unwrap();
        let run =
            guest::GuestRun { result: Ok(Reason::Poweroff), console: "PANIC: deliberate panic\n".into() };
        let problems = judge(case, &image(4), &run);
        assert_eq!(problems.len(), 5, "{problems:?}");
        let report = "PANIC at apps/selftest/src/main.rs:10:5: deliberate panic\nbacktrace:\n  \
                      #0  0x1009f2 __mote_app_main at runtime/src/lib.rs:76\n        \
                      inlined selftest::main at apps/selftest/src/main.rs:10\n\
                      heap: 4096 of 3670016 bytes in use, at most 8192\n\
                      last log lines, oldest first:\n  [INFO  mote::start] domain 3 (selftest)\n  \
                      [INFO  selftest] selftest: about to panic\n";
        let run = guest::GuestRun { result: Ok(Reason::Crash), console: report.into() };
        assert!(judge(case, &image(4), &run).is_empty());
        // The same lines before the report: log=warn did not keep them off the console.
        let leaked = format!("[INFO  mote::start] domain 3 (selftest)\n{report}");
        let run = guest::GuestRun { result: Ok(Reason::Crash), console: leaked };
        assert_eq!(judge(case, &image(4), &run).len(), 1);
    }

    #[test]
    fn excerpt_shortens() {
        let console = format!("{}\nshort\n", "x".repeat(1000));
        let e = excerpt(&console);
        assert!(e.contains("(1000 characters)"));
        assert!(e.contains("    | short"));
        assert_eq!(excerpt(""), "    (no console output)");
    }
}
