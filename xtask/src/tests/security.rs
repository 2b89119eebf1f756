//! Security cases: memory protection (W^X, guard pages), random bytes, TCP's ISNs.

use super::net::echo_address;
use super::{isn, shut_down, Case, Check, Driver};
use crate::build::Image;
use crate::guest::Reason;
use std::time::Instant;

/// The memory-protection violations, each one crashing the selftest.
pub(super) fn protection() -> Vec<Case> {
    use Check::*;
    vec![
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
    ]
}

/// Random bytes that differ between boots.
pub(super) fn random() -> Vec<Case> {
    use Check::*;
    vec![Case {
        name: "two_boots_draw_different_random_bytes",
        app: "selftest",
        args: &["test=random"],
        gdb: false,
        disk: false,
        xl: &[],
        reason: Reason::Poweroff,
        checks: vec![Line("wait: Reboot requested"), Line("wait: Poweroff requested")],
        driver: Some(drive_random_reboot),
    }]
}

/// TCP's initial sequence numbers, against the old seeding's predictor.
pub(super) fn isns() -> Vec<Case> {
    use Check::*;
    vec![Case {
        name: "tcp_isns_are_distinct_and_not_predicted_from_the_old_seeding",
        app: "echo",
        args: &["ip=10.0.0.29/24"],
        gdb: false,
        disk: false,
        xl: &[],
        reason: Reason::Poweroff,
        checks: vec![Line("echo: Poweroff requested, stopping")],
        driver: Some(drive_isn_sample),
    }]
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
