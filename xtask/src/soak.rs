//! `cargo xtask soak [--minutes N]`: the echo, dns and web motes under sustained load from dom0
//! at once, for N minutes (default 10). dns gets one `dnsperf` run and web one `wrk` run for the
//! whole time, each keeping requests in flight ([`load_command`]); echo gets rounds of
//! `mote-agent` checks, one after another. Every 15 s the guests' heap use and high-water mark
//! are read from xenstore (`data/heap-used`, `data/heap-hwm`, written by the runtime) and
//! printed. At the end: per service what the load generator reported, and whether the
//! high-water mark stayed flat (see [`Report::flat`]); [`Report::passes`] is the verdict.

use crate::agent::{sh_quote, Agent};
use crate::assets;
use crate::bench::dns::QUERIES;
use crate::bench::web::{wrk_errors, wrk_requests};
use crate::build::{self, Image};
use crate::guest::{self, Reason};
use crate::harness::Harness;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How often the heap figures are read.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(15);
/// Growth of the high-water mark, after the first quarter of the run, still called flat: the
/// stack's buffers and the allocator's rounding move by a few KiB between rounds.
pub const FLAT_SLACK: u64 = 64 * 1024;
/// Longest one round or one dom0 command may take; a load generator's run may take this
/// much longer than its length.
const STEP_LIMIT: Duration = Duration::from_secs(120);
/// Queries dnsperf keeps in flight, and how long it waits for each answer before it counts
/// the query lost: ten times the worst p99 latency of `cargo xtask bench dns` under TCG.
const DNS_IN_FLIGHT: u32 = 10;
const DNS_TIMEOUT_S: u32 = 5;
/// Lost queries tolerated, per thousand sent. A query dnsperf sends over UDP and gets no
/// answer to within [`DNS_TIMEOUT_S`] is one the guest dropped or never saw: a datagram
/// dropped on a full ring between dom0 and the guest, or by dom0's own socket when dnsperf
/// and the guest outrun the one emulated CPU they share. UDP does not retransmit, so that
/// load generator's overload shows as loss; beyond 1 in 1000 the soak calls it failure.
pub const DNS_LOST_PER_MILLE: u64 = 1;
/// The rcodes the query mix ([`QUERIES`]) is answered with; any other (SERVFAIL, FORMERR, …)
/// is a failed answer.
const DNS_RCODES: [&str; 3] = ["NOERROR", "NXDOMAIN", "REFUSED"];
/// Keep-alive connections wrk holds, and how long it waits for a response before counting a
/// timeout (TCP retransmits, so no request is lost to overload: every wrk error is a failure).
const WEB_CONNECTIONS: u32 = 10;
const WEB_TIMEOUT_S: u32 = 10;
/// Where the query file goes in dom0.
const QUERY_FILE: &str = "/tmp/soak-queries.txt";

/// A service under load: its app, static address, and the console line that says it serves.
pub struct Service {
    pub app: &'static str,
    pub ip: &'static str,
    pub ready: &'static str,
}

pub static SERVICES: [Service; 3] = [
    Service { app: "echo", ip: "10.0.0.20", ready: "echo: serving on" },
    Service { app: "dns", ip: "10.0.0.21", ready: "dns: serving on" },
    Service { app: "web", ip: "10.0.0.22", ready: "web: serving " },
];

/// A dom0 shell command that puts one round of echo load on `ip` and prints
/// `answers A failed F`: 4 TCP connections of 50 KB echoed and compared plus 20 UDP datagrams,
/// each check one answer.
pub fn echo_round(ip: &str) -> String {
    let count = |test: &str| format!("if {test}; then a=$((a+1)); else f=$((f+1)); fi");
    format!(
        "a=0; f=0; {}; {}; echo \"answers $a failed $f\"",
        count(&format!("/mote/agent tcp-check {ip}:7 50000 4 >/dev/null 2>&1")),
        count(&format!("/mote/agent udp-check {ip}:7 20 >/dev/null 2>&1"))
    )
}

/// The dom0 command that loads `app` (dns or web) at `ip` for `seconds`: dnsperf over the
/// benchmark's query mix with [`DNS_IN_FLIGHT`] queries in flight, or wrk on `/` with
/// [`WEB_CONNECTIONS`] keep-alive connections.
pub fn load_command(app: &str, ip: &str, seconds: u64) -> String {
    match app {
        "dns" => {
            format!("dnsperf -s {ip} -d {QUERY_FILE} -l {seconds} -q {DNS_IN_FLIGHT} -t {DNS_TIMEOUT_S}")
        }
        // The port is given: dom0 has no /etc/services for wrk to look `http` up in.
        _ => format!("wrk -t1 -c{WEB_CONNECTIONS} -d{seconds}s --timeout {WEB_TIMEOUT_S}s http://{ip}:80/"),
    }
}

/// What a service's load generator reported for the whole run.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Load {
    /// Requests sent (echo: checks run).
    pub sent: u64,
    /// Answers received: echo checks passed, dns queries answered (any rcode), web responses.
    pub completed: u64,
    /// Queries without an answer (dnsperf's `lost`); judged by [`DNS_LOST_PER_MILLE`].
    pub lost: u64,
    /// Failures, none tolerated: echo checks failed, dns answers with an rcode outside
    /// [`DNS_RCODES`], wrk's socket errors and non-2xx/3xx responses.
    pub failed: u64,
    /// The generator's own summary, for the report.
    pub detail: String,
}

impl Load {
    /// No failure, and no more lost than [`DNS_LOST_PER_MILLE`] of those sent; something must
    /// have been answered.
    pub fn passes(&self) -> bool {
        self.completed > 0 && self.failed == 0 && self.lost * 1000 <= self.sent * DNS_LOST_PER_MILLE
    }
}

/// dnsperf's summary: queries sent, completed and lost, and the answers by rcode.
pub fn parse_dnsperf(out: &str) -> Result<Load, String> {
    let count = |label: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
    };
    let (Some(sent), Some(completed), Some(lost)) =
        (count("Queries sent:"), count("Queries completed:"), count("Queries lost:"))
    else {
        return Err(format!("unexpected dnsperf report:\n{out}"));
    };
    // "  Response codes:       NOERROR 2900 (82.86%), NXDOMAIN 300 (8.57%)"
    let codes = out.lines().find_map(|l| l.trim().strip_prefix("Response codes:")).unwrap_or("").trim();
    let mut failed = 0;
    for code in codes.split(", ").filter(|c| !c.is_empty()) {
        let mut words = code.split_whitespace();
        let (Some(name), Some(Ok(n))) = (words.next(), words.next().map(str::parse::<u64>)) else {
            return Err(format!("unexpected dnsperf response codes {codes:?}"));
        };
        if !DNS_RCODES.contains(&name) {
            failed += n;
        }
    }
    let detail = format!(
        "dnsperf, {DNS_IN_FLIGHT} in flight: {sent} queries sent, {completed} answered ({codes}), {lost} lost"
    );
    Ok(Load { sent, completed, lost, failed, detail })
}

/// wrk's summary: requests completed, and its errors.
pub fn parse_wrk(out: &str) -> Result<Load, String> {
    let completed = wrk_requests(out).ok_or_else(|| format!("unexpected wrk report:\n{out}"))?;
    let failed = wrk_errors(out);
    let detail = format!(
        "wrk, {WEB_CONNECTIONS} connections: {completed} requests completed, {failed} errors (socket errors and non-2xx/3xx)"
    );
    Ok(Load { sent: completed, completed, lost: 0, failed, detail })
}

/// Puts load on `app` at `ip` for `run`: echo rounds until the time is up, or one run of the
/// app's load generator.
fn generate(agent: &Agent, app: &str, ip: &str, run: Duration) -> Result<Load, String> {
    if app != "echo" {
        let out = agent.run_ok(&load_command(app, ip, run.as_secs()), run + STEP_LIMIT)?;
        return if app == "dns" { parse_dnsperf(&out) } else { parse_wrk(&out) };
    }
    let started = Instant::now();
    let (mut rounds, mut load) = (0, Load::default());
    while started.elapsed() < run {
        let out = agent.run_ok(&echo_round(ip), STEP_LIMIT)?;
        let mut words = out.split_whitespace();
        let (Some("answers"), Some(Ok(a)), Some("failed"), Some(Ok(f))) = (
            words.next(),
            words.next().map(str::parse::<u64>),
            words.next(),
            words.next().map(str::parse::<u64>),
        ) else {
            return Err(format!("an echo round printed {out:?}"));
        };
        rounds += 1;
        load.sent += a + f;
        load.completed += a;
        load.failed += f;
    }
    load.detail = format!(
        "{rounds} rounds of mote-agent checks (4 x 50 000 B over TCP, 20 UDP datagrams): {} passed, {} failed",
        load.completed, load.failed
    );
    Ok(load)
}

/// Heap use and high-water mark of domain `name`, from its xenstore `data/`.
pub fn heap(agent: &Agent, name: &str) -> Result<(u64, u64), String> {
    let out = agent.run_ok(
        &format!(
            "d=$(xl domid {n}) && xenstore-read /local/domain/$d/data/heap-used /local/domain/$d/data/heap-hwm",
            n = sh_quote(name)
        ),
        STEP_LIMIT,
    )?;
    let mut values = out.split_whitespace().map(str::parse::<u64>);
    match (values.next(), values.next()) {
        (Some(Ok(used)), Some(Ok(hwm))) => Ok((used, hwm)),
        _ => Err(format!("data/heap-used and data/heap-hwm of {name} read {out:?}")),
    }
}

/// What a soak of one service came to.
#[derive(Debug, Default)]
pub struct Report {
    pub load: Load,
    /// `(seconds since the start, heap used, high-water mark)`.
    pub samples: Vec<(u64, u64, u64)>,
}

impl Report {
    /// The high-water mark the end is held to: the one read by the first sample at or after the
    /// first quarter of the run (all that warming up reached, whatever the sampling jitter; for
    /// a slow service, its first sample), or by the last sample of a run too short for that.
    fn reference(&self, run: Duration) -> Option<u64> {
        let quarter = run.as_secs() / 4;
        self.samples.iter().find(|s| s.0 >= quarter).or(self.samples.last()).map(|s| s.2)
    }

    /// Whether the high-water mark at the end is within [`FLAT_SLACK`] of [`Report::reference`].
    pub fn flat(&self, run: Duration) -> bool {
        match (self.reference(run), self.samples.last()) {
            (Some(early), Some(last)) => last.2 <= early + FLAT_SLACK,
            _ => false,
        }
    }

    /// The verdict: the load passes ([`Load::passes`]) and the heap stayed flat.
    pub fn passes(&self, run: Duration) -> bool {
        self.load.passes() && self.flat(run)
    }

    pub fn line(&self, app: &str, run: Duration) -> String {
        let hwm = |h: Option<u64>| h.map_or_else(|| "?".into(), |h| format!("{} KiB", h / 1024));
        format!(
            "soak {app}: {}; heap high-water {} after the first quarter, {} at the end ({}): {}",
            self.load.detail,
            hwm(self.reference(run)),
            hwm(self.samples.last().map(|s| s.2)),
            if self.flat(run) { "flat" } else { "GREW" },
            if self.passes(run) { "pass" } else { "FAIL" }
        )
    }
}

/// Puts load on `app` (serving already as domain `name` at `ip`) for `run`, reading its heap
/// figures every [`SAMPLE_EVERY`] meanwhile and once the load has ended; prints each sample.
pub fn soak(agent: &Agent, name: &str, app: &str, ip: &str, run: Duration) -> Result<Report, String> {
    if app == "dns" {
        agent.put(QUERY_FILE, QUERIES.as_bytes(), 0o644, STEP_LIMIT)?;
    }
    let started = Instant::now();
    thread::scope(|scope| {
        let load = scope.spawn(|| generate(agent, app, ip, run));
        let mut samples = Vec::new();
        let mut next_sample = started;
        loop {
            let done = load.is_finished();
            if done || Instant::now() >= next_sample {
                let (used, hwm) = heap(agent, name)?;
                let t = started.elapsed().as_secs();
                println!(
                    "    soak {app} {t:>4} s: heap {} KiB in use, high-water {} KiB",
                    used / 1024,
                    hwm / 1024
                );
                samples.push((t, used, hwm));
                next_sample += SAMPLE_EVERY;
            }
            if done {
                break;
            }
            thread::sleep(next_sample.saturating_duration_since(Instant::now()).min(Duration::from_secs(1)));
        }
        let load = load.join().map_err(|_| format!("the {app} load thread panicked"))??;
        Ok(Report { load, samples })
    })
}

/// `cargo xtask soak --minutes N`; whether every service passed ([`Report::passes`]).
pub fn run(minutes: u64) -> Result<bool, String> {
    let run = Duration::from_secs(minutes * 60);
    let images: Vec<Image> =
        SERVICES.iter().map(|s| build::build(s.app, build::Flavor::RELEASE)).collect::<Result<_, _>>()?;
    assets::install_host_deps()?;
    let assets = assets::ensure()?;
    let harness = Harness::boot(&assets, &[])?;
    let agent = harness.agent();
    for image in &images {
        guest::upload(&agent, image)?;
    }
    let reports = thread::scope(|scope| {
        let runs: Vec<_> = SERVICES
            .iter()
            .zip(&images)
            .map(|(service, image)| {
                let (tx, lines) = mpsc::channel::<String>();
                let opts = guest::Options {
                    timeout: Some(run + Duration::from_secs(600)),
                    echo: false,
                    clock: Instant::now(),
                    xl: Vec::new(),
                };
                let args = vec![format!("ip={}/24", service.ip)];
                let agent = &agent;
                let guest = scope.spawn(move || {
                    guest::run(agent, image, &args, &opts, &mut |line| {
                        let _ = tx.send(line.to_owned());
                    })
                });
                // One guest at a time until it serves: several `xl create`s at once overrun
                // libxl's 10 s hotplug timeout in dom0 under TCG.
                let ready = wait_for(&lines, service.ready);
                (service, guest, ready)
            })
            .collect();
        let loads: Vec<_> = runs
            .iter()
            .map(|(service, _, ready)| {
                let service: &'static Service = service;
                let ready = ready.clone();
                let agent = &agent;
                scope.spawn(move || {
                    ready?;
                    let report = soak(agent, service.app, service.app, service.ip, run);
                    agent.run_ok(&format!("xl shutdown -w {}", service.app), STEP_LIMIT)?;
                    report
                })
            })
            .collect();
        let mut reports = Vec::new();
        for ((service, guest, _), load) in runs.into_iter().zip(loads) {
            let report = load.join().map_err(|_| "a load thread panicked".to_owned())?;
            if report.is_err() {
                let _ = agent.run(&format!("xl destroy {}", service.app), STEP_LIMIT);
            }
            let guest = guest.join().map_err(|_| "a guest runner panicked".to_owned())?;
            match (report, guest.result) {
                (Ok(report), Ok(Reason::Poweroff)) => reports.push((service.app, report)),
                (Ok(_), Ok(reason)) => {
                    return Err(format!("{} {}\n{}", service.app, reason.verb(), guest.console))
                }
                (Err(e), result) => {
                    let xl = result.err().map(|g| format!(" (the guest: {g})")).unwrap_or_default();
                    return Err(format!("{}: {e}{xl}\n{}", service.app, guest.console));
                }
                (Ok(_), Err(e)) => return Err(format!("{}: {e}\n{}", service.app, guest.console)),
            }
        }
        Ok(reports)
    })?;
    drop(harness);
    println!("\nsoak: {minutes} min, the three services at once");
    let mut clean = true;
    for (app, report) in &reports {
        println!("{}", report.line(app, run));
        clean &= report.passes(run);
    }
    Ok(clean)
}

/// Waits for the console line containing `text`.
fn wait_for(lines: &mpsc::Receiver<String>, text: &str) -> Result<(), String> {
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(text) => return Ok(()),
            Ok(_) => {}
            Err(_) => return Err(format!("no console line {text:?} within {STEP_LIMIT:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_means_the_early_high_water_mark_holds() {
        let run = Duration::from_secs(60);
        let mut report = Report { samples: vec![(2, 100, 500_000), (15, 90, 520_000)], ..Report::default() };
        report.samples.push((60, 95, 520_000 + FLAT_SLACK));
        assert!(report.flat(run));
        report.samples.push((61, 95, 520_001 + FLAT_SLACK));
        assert!(!report.flat(run));
        assert!(!Report::default().flat(run));
        let slow = Report { samples: vec![(35, 478, 480_000), (71, 478, 480_000)], ..Report::default() };
        assert!(slow.flat(run));
        // Warming up past a sample taken just before the quarter (CI, 2026-11-27: 839 KiB at
        // 0 s, 1370 KiB from 16 s on) is not growth.
        let warm = Report {
            samples: vec![(0, 839, 839_000), (16, 969, 1_370_000), (60, 841, 1_370_000)],
            ..Report::default()
        };
        assert!(warm.flat(run));
    }

    #[test]
    fn a_report_fails_on_growth_or_on_a_failing_load() {
        let run = Duration::from_secs(60);
        let good = Load { sent: 100, completed: 100, ..Load::default() };
        let samples = vec![(0, 1, 400_000), (60, 1, 400_000)];
        assert!(Report { load: good.clone(), samples: samples.clone() }.passes(run));
        let grew = vec![(0, 1, 400_000), (15, 1, 400_000), (60, 1, 400_001 + FLAT_SLACK)];
        let report = Report { load: good.clone(), samples: grew };
        assert!(!report.passes(run));
        assert!(report.line("dns", run).contains("(GREW): FAIL"), "{}", report.line("dns", run));
        let failed = Load { failed: 1, ..good };
        assert!(!Report { load: failed, samples }.passes(run));
    }

    const DNSPERF: &str = "DNS Performance Testing Tool\nVersion 2.10.0\n\n\
        [Status] Testing complete (time limit)\n\nStatistics:\n\n\
          Queries sent:         4000\n  Queries completed:    3996 (99.90%)\n\
          Queries lost:         4 (0.10%)\n\n\
          Response codes:       NOERROR 3000 (75.08%), NXDOMAIN 632 (15.82%), REFUSED 364 (9.11%)\n\
          Run time (s):         60.000276\n  Queries per second:   66.6\n";

    #[test]
    fn dnsperf_loss_is_tolerated_up_to_one_in_a_thousand() {
        let load = parse_dnsperf(DNSPERF).unwrap();
        assert_eq!((load.sent, load.completed, load.lost, load.failed), (4000, 3996, 4, 0));
        assert!(load.passes(), "{load:?}");
        assert!(load.detail.contains("4000 queries sent, 3996 answered (NOERROR 3000"), "{}", load.detail);
        let lossy = parse_dnsperf(&DNSPERF.replace("lost:         4 ", "lost:         5 ")).unwrap();
        assert!(!lossy.passes(), "{lossy:?}");
    }

    #[test]
    fn a_servfail_or_nothing_answered_fails_dns() {
        let servfail = DNSPERF.replace("REFUSED 364", "SERVFAIL 364");
        let load = parse_dnsperf(&servfail).unwrap();
        assert_eq!(load.failed, 364);
        assert!(!load.passes());
        let silent = "Queries sent:         40\n  Queries completed:    0 (0.00%)\n  Queries lost:         40 (100.00%)\n";
        assert!(!parse_dnsperf(silent).unwrap().passes());
        assert!(parse_dnsperf("dnsperf: cannot open file").is_err());
        assert!(parse_dnsperf(&DNSPERF.replace("NOERROR 3000", "NOERROR many")).is_err());
    }

    #[test]
    fn every_wrk_error_fails_web() {
        let clean = "Running 1m test @ http://10.0.0.22:80/\n  1 threads and 10 connections\n\
                     5400 requests in 1.00m, 3.10MB read\nRequests/sec:     90.00\nTransfer/sec:     52.90KB\n";
        let load = parse_wrk(clean).unwrap();
        assert_eq!((load.completed, load.failed), (5400, 0));
        assert!(load.passes());
        let timeouts =
            clean.replace("read\n", "read\n  Socket errors: connect 0, read 0, write 0, timeout 2\n");
        assert_eq!(parse_wrk(&timeouts).unwrap().failed, 2);
        assert!(!parse_wrk(&timeouts).unwrap().passes());
        let refused = clean.replace("read\n", "read\n  Non-2xx or 3xx responses: 7\n");
        assert!(!parse_wrk(&refused).unwrap().passes());
        assert!(parse_wrk("unable to connect to 10.0.0.22:80 Connection refused").is_err());
    }

    #[test]
    fn commands_name_the_service() {
        assert!(echo_round("10.0.0.20").ends_with("echo \"answers $a failed $f\""));
        assert!(load_command("dns", "10.0.0.21", 60)
            .starts_with("dnsperf -s 10.0.0.21 -d /tmp/soak-queries.txt -l 60 "));
        assert!(load_command("web", "10.0.0.22", 60).contains(" -d60s "));
    }
}
