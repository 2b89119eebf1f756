//! Soak cases: a minute of load on each serving app; the host tools are in `crate::soak`.

use super::dns::dns_address;
use super::net::echo_address;
use super::web::web_address;
use super::{shut_down, Case, Check, Driver};
use crate::guest::Reason;
use std::time::Duration;

/// A minute of load on each serving app.
pub(super) fn cases() -> Vec<Case> {
    use Check::*;
    vec![
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
    ]
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
