//! `cargo xtask bench dns`: dnsperf in dom0 against the dns mote and against NSD in the Linux
//! PVH guest (ci/linux-guest, `mote.serve=nsd`), both serving the dns app's sample zone, in one
//! harness. Each round boots the mote, then Linux; against each it runs dnsperf for
//! [`SECONDS`] with [`OUTSTANDING`] queries in flight over [`QUERIES`], then searches for the
//! highest rate (`-Q`) answered without loss in short runs ([`next_rate`]), and shuts the guest
//! down; the table shows the median of the rounds with NSD as the baseline.

use super::echo::{Subject, LINUX_DIR, STEP_LIMIT};
use super::{field, median, serving_guest, Better, Ctx, Row, Section};
use crate::agent::Agent;
use crate::build::{self, AppMeta, Image};
use crate::guest;
use std::time::Duration;

/// Rounds; each figure is their median.
const ROUNDS: usize = 3;
/// Length of the run with a fixed number of queries in flight.
const SECONDS: u32 = 10;
/// Queries dnsperf keeps in flight in that run.
const OUTSTANDING: u32 = 10;
/// Length of one run of the rate search.
const TRIAL_SECONDS: u32 = 5;
/// Queries in flight allowed in the rate search: enough that dnsperf sends at the rate asked
/// (rate times latency) rather than waiting for answers, so a server that falls behind loses
/// queries instead of slowing the sender.
const TRIAL_OUTSTANDING: u32 = 1000;
/// Seconds dnsperf waits for an answer before counting the query lost.
const TIMEOUT_SECONDS: u32 = 2;
/// Seconds past its run and its last answer's timeout after which dnsperf is interrupted
/// (SIGINT: it stops and prints its report). It has been seen running on for minutes at a rate
/// the server could not keep.
const DNSPERF_GRACE: u32 = 30;
/// What dnsperf's report says when it was interrupted.
const INTERRUPTED: &str = "Testing complete (interruption)";
/// Runs of the rate search, at most.
const MAX_TRIALS: usize = 7;
/// The search ends when the lowest rate with loss is within this fraction above the highest
/// without.
const TOLERANCE: f64 = 0.1;
/// The lowest rate tried.
const MIN_RATE: u32 = 4;
/// A run holds its rate when nothing is lost and dnsperf answered at least this fraction of
/// the rate asked (below it the sender or the server fell behind).
const KEPT_UP: f64 = 0.9;
/// The query mix, over the sample zone (apps/dns/zones/example.com.zone): answers, a CNAME
/// chain, a wildcard, a referral, NXDOMAIN, NODATA and a name outside the zone.
pub const QUERIES: &str = "www.example.com A\nwww.example.com AAAA\nmail.example.com A\n\
                       example.com MX\nexample.com NS\nblog.example.com A\n\
                       alice.users.example.com TXT\nhost.lab.example.com A\n\
                       nope.example.com A\nwww.example.com MX\nwww.example.org A\n";
/// The Linux guest's memory: its initramfs with NSD and its libraries (18 MiB) does not fit
/// the 96 MiB of the echo benchmark ("System is deadlocked on memory" while booting), and at
/// 128 MiB NSD was once killed for want of memory.
const NSD_MEMORY_MIB: u32 = 256;
/// Where the query file goes in dom0.
const QUERY_FILE: &str = "/tmp/dns-queries.txt";

/// What one dnsperf run printed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub queries_per_second: f64,
    /// Percentage of the queries sent that got no answer.
    pub lost_percent: f64,
    /// Latency percentiles over every answered query, in ms.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// dnsperf did not end on its own and was interrupted ([`DNSPERF_GRACE`]).
    pub interrupted: bool,
}

impl Run {
    /// Whether the server kept up with `rate`: no loss, answers at nearly that rate, and a
    /// run that ended on time.
    fn held(&self, rate: u32) -> bool {
        !self.interrupted && self.lost_percent == 0.0 && self.queries_per_second >= KEPT_UP * f64::from(rate)
    }
}

/// One round's figures for one server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DnsFigures {
    /// The highest rate asked of dnsperf that the server answered without loss.
    pub zero_loss_qps: f64,
    /// The run at that rate.
    pub at_rate: Run,
    /// The run with [`OUTSTANDING`] queries in flight.
    pub in_flight: Run,
    /// xl create until the server printed that it serves, in s.
    pub boot_s: f64,
    pub memory_mib: f64,
}

/// Name, unit, whether higher is better, decimals, and the figure.
type Metric = (&'static str, &'static str, bool, usize, fn(&DnsFigures) -> f64);

const METRICS: [Metric; 11] = [
    ("queries/s at zero loss", "q/s", true, 0, |f| f.zero_loss_qps),
    ("  latency at that rate, median", "ms", false, 2, |f| f.at_rate.p50_ms),
    ("  latency at that rate, p90", "ms", false, 2, |f| f.at_rate.p90_ms),
    ("  latency at that rate, p99", "ms", false, 2, |f| f.at_rate.p99_ms),
    ("  latency at that rate, max", "ms", false, 2, |f| f.at_rate.max_ms),
    ("queries/s, 10 in flight", "q/s", true, 0, |f| f.in_flight.queries_per_second),
    ("  lost, 10 in flight", "%", false, 2, |f| f.in_flight.lost_percent),
    ("  latency, 10 in flight, median", "ms", false, 2, |f| f.in_flight.p50_ms),
    ("  latency, 10 in flight, p99", "ms", false, 2, |f| f.in_flight.p99_ms),
    ("xl create to serving", "s", false, 1, |f| f.boot_s),
    ("guest memory, xl memory=", "MiB", false, 0, |f| f.memory_mib),
];

/// The dns section: medians of [`ROUNDS`] rounds of both servers, NSD as the baseline.
pub fn dns(ctx: &mut Ctx) -> Result<Section, String> {
    let mote = build::build("dns", build::Flavor::RELEASE)?;
    let agent = ctx.agent()?;
    guest::upload(&agent, &mote)?;
    let linux = ctx.linux()?;
    agent.put(QUERY_FILE, QUERIES.as_bytes(), 0o644, STEP_LIMIT)?;
    let subjects = [
        Subject {
            label: "mote",
            args: vec!["ip=10.0.0.2/24".into()],
            xl: Vec::new(),
            ip: "10.0.0.2",
            ready: "dns: serving on",
            image: mote,
        },
        Subject {
            label: "NSD",
            args: ["console=hvc0", "quiet", "mote.ip=10.0.0.50/24", "mote.serve=nsd"]
                .map(String::from)
                .to_vec(),
            xl: vec![format!("ramdisk=\"{LINUX_DIR}/initrd.cpio\""), format!("memory={NSD_MEMORY_MIB}")],
            ip: "10.0.0.50",
            ready: "mote-linux: ready",
            image: Image { meta: AppMeta { memory_mib: NSD_MEMORY_MIB, ..linux.meta.clone() }, ..linux },
        },
    ];
    let (figures, failures) = super::rounds(ROUNDS, &subjects, |s| s.label, |s| measure_one(&agent, s));
    Ok(section(&figures[0], &figures[1], failures))
}

/// Boots `subject`, times it until it serves, runs dnsperf against it with a fixed number of
/// queries in flight, then at rates [`next_rate`] picks from the start of that run's rate,
/// and shuts it down.
fn measure_one(agent: &Agent, subject: &Subject) -> Result<DnsFigures, String> {
    serving_guest(agent, subject, |boot_s| {
        let in_flight = dnsperf(agent, subject.ip, SECONDS, &format!("-q {OUTSTANDING}"))?;
        eprintln!(
            "bench dns:   {}: {OUTSTANDING} in flight: {:.0} q/s, {:.2}% lost, median {:.2} ms, p99 {:.2} ms",
            subject.label,
            in_flight.queries_per_second,
            in_flight.lost_percent,
            in_flight.p50_ms,
            in_flight.p99_ms
        );
        let start = in_flight.queries_per_second.round() as u32;
        let mut trials: Vec<(u32, bool)> = Vec::new();
        let mut runs = Vec::new();
        while let Some(rate) = next_rate(start, &trials) {
            let options = format!("-q {TRIAL_OUTSTANDING} -Q {rate}");
            let run = dnsperf(agent, subject.ip, TRIAL_SECONDS, &options)?;
            let held = run.held(rate);
            eprintln!(
                "bench dns:   {}: -Q {rate}: {:.0} q/s, {:.2}% lost, median {:.2} ms: {}{}",
                subject.label,
                run.queries_per_second,
                run.lost_percent,
                run.p50_ms,
                if held { "held" } else { "not held" },
                if run.interrupted { " (dnsperf did not end on its own: interrupted)" } else { "" }
            );
            if run.interrupted {
                still_answers(agent, subject)?;
            }
            trials.push((rate, held));
            runs.push(run);
        }
        let rate = zero_loss_rate(&trials)
            .ok_or_else(|| format!("no rate down to {MIN_RATE} q/s answered without loss: {trials:?}"))?;
        let at_rate =
            trials.iter().zip(&runs).find(|((r, held), _)| *r == rate && *held).map(|(_, run)| *run);
        Ok(DnsFigures {
            zero_loss_qps: f64::from(rate),
            at_rate: at_rate.expect("the zero-loss rate is one that held"),
            in_flight,
            boot_s,
            memory_mib: f64::from(subject.image.meta.memory_mib),
        })
    })
}

/// The next rate to try, given the rates tried and whether each held, starting from `start`
/// (the rate with a fixed number in flight): doubling while every rate holds, halving while
/// none does, then bisecting between the highest rate held and the lowest one not held,
/// until they are within [`TOLERANCE`] or [`MAX_TRIALS`] runs are done. `None`: stop.
pub fn next_rate(start: u32, trials: &[(u32, bool)]) -> Option<u32> {
    if trials.len() >= MAX_TRIALS {
        return None;
    }
    let failed = trials.iter().filter(|(_, held)| !held).map(|(rate, _)| *rate).min();
    match (zero_loss_rate(trials), failed) {
        (None, None) => Some(start.max(MIN_RATE)),
        (Some(held), None) => Some(held.saturating_mul(2)),
        (None, Some(failed)) => (failed > MIN_RATE).then(|| (failed / 2).max(MIN_RATE)),
        (Some(held), Some(failed)) => {
            let next = held + (failed - held) / 2;
            (f64::from(failed) > f64::from(held) * (1.0 + TOLERANCE) && next > held).then_some(next)
        }
    }
}

/// The highest rate that held below every rate that did not (a rate that held above one
/// that did not is taken for noise); `None` when there is none.
pub fn zero_loss_rate(trials: &[(u32, bool)]) -> Option<u32> {
    let failed = trials.iter().filter(|(_, held)| !held).map(|(rate, _)| *rate).min().unwrap_or(u32::MAX);
    trials.iter().filter(|(rate, held)| *held && *rate < failed).map(|(rate, _)| *rate).max()
}

/// After a dnsperf run that had to be interrupted: whether the server still answers, which
/// tells a stuck load generator from a server that stopped.
fn still_answers(agent: &Agent, subject: &Subject) -> Result<(), String> {
    let ip = subject.ip;
    let (status, out) =
        agent.run(&format!("dig @{ip} +norec +time=2 +tries=3 +short www.example.com A"), STEP_LIMIT)?;
    if status == 0 && out.trim() == "192.0.2.80" {
        eprintln!("bench dns:   {}: still answers (www.example.com A: {})", subject.label, out.trim());
        return Ok(());
    }
    Err(format!("{} stopped answering after an interrupted dnsperf run: dig said {out:?}", subject.label))
}

/// Runs dnsperf against `ip` for `seconds` with `options` and reads its report.
fn dnsperf(agent: &Agent, ip: &str, seconds: u32, options: &str) -> Result<Run, String> {
    // dnsperf -v prints a line per answer, "> NOERROR www.example.com A 0.000123";
    // only the latencies and the summary come back. A dnsperf that `timeout` interrupted says
    // so in its report, whatever its exit status.
    let limit = seconds + TIMEOUT_SECONDS + DNSPERF_GRACE;
    let command = format!(
        "timeout -s INT {limit} dnsperf -s {ip} -d {QUERY_FILE} -l {seconds} {options} -t {TIMEOUT_SECONDS} -v \
         > /tmp/dnsperf.out 2>&1; status=$?; grep -qF '{INTERRUPTED}' /tmp/dnsperf.out && status=0; \
         grep -v '^>' /tmp/dnsperf.out; echo LATENCIES; \
         awk '/^> / {{ print $NF }}' /tmp/dnsperf.out; rm -f /tmp/dnsperf.out; exit $status"
    );
    let out = agent.run_ok(&command, STEP_LIMIT + Duration::from_secs(u64::from(seconds)))?;
    parse(&out)
}

/// The figures in dnsperf's summary and the latencies after the `LATENCIES` line.
fn parse(out: &str) -> Result<Run, String> {
    let (summary, latencies) =
        out.split_once("LATENCIES").ok_or_else(|| format!("no latencies in {out:?}"))?;
    let mut ms: Vec<f64> =
        latencies.split_whitespace().filter_map(|s| s.parse::<f64>().ok()).map(|s| s * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let percentile = |p: f64| ms.get(((ms.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied();
    let qps = field(summary, "Queries per second:", "\n");
    // "  Queries lost:         8 (0.23%)"
    let lost = summary.lines().find(|l| l.contains("Queries lost:")).and_then(|l| field(l, "(", "%"));
    match (qps, lost, percentile(0.5), percentile(0.9), percentile(0.99), ms.last()) {
        (
            Some(queries_per_second),
            Some(lost_percent),
            Some(p50_ms),
            Some(p90_ms),
            Some(p99_ms),
            Some(&max_ms),
        ) => Ok(Run {
            queries_per_second,
            lost_percent,
            p50_ms,
            p90_ms,
            p99_ms,
            max_ms,
            interrupted: summary.contains(INTERRUPTED),
        }),
        _ => Err(format!("unexpected dnsperf report:\n{summary}")),
    }
}

/// The section: medians of the rounds, NSD's as the baseline.
fn section(mote: &[DnsFigures], nsd: &[DnsFigures], failures: Vec<String>) -> Section {
    let rows = METRICS
        .iter()
        .map(|(name, unit, higher, decimals, get)| {
            let better = if *higher { Better::Higher } else { Better::Lower };
            Row::new(*name, median(mote.iter().map(get)), unit, better)
                .baseline(median(nsd.iter().map(get)))
                .decimals(*decimals)
        })
        .collect();
    Section {
        title: format!(
            "apps/dns (mote) vs NSD in a Linux PVH guest, both serving apps/dns/zones/example.com.zone; \
             dnsperf in dom0 over {} names: the highest rate (-Q) answered without loss in {TRIAL_SECONDS} s \
             runs, and {SECONDS} s with {OUTSTANDING} queries in flight; median of {ROUNDS} rounds",
            QUERIES.lines().count()
        ),
        baseline: format!(
            "NSD in a Linux PVH guest (the dom0 kernel, busybox initramfs; {NSD_MEMORY_MIB} MiB)"
        ),
        notes: vec![
            format!("rounds measured: mote {}, NSD {}", mote.len(), nsd.len()),
            format!(
                "queries/s at zero loss: from the rate with {OUTSTANDING} in flight, doubled while every \
                 rate holds, halved while none does, then bisected to within {:.0} %, {MAX_TRIALS} runs \
                 at most; a rate holds when nothing is lost (no answer within {TIMEOUT_SECONDS} s) and \
                 dnsperf answered at least {:.0} % of it, with up to {TRIAL_OUTSTANDING} queries in flight",
                TOLERANCE * 100.0,
                KEPT_UP * 100.0
            ),
            "latency percentiles: nearest rank over every answer of the run (dnsperf -v)".into(),
            "xl create to serving: from xtask starting `xl create` to the guest's ready line on its console"
                .into(),
        ],
        rows,
        failures,
        ..Section::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "DNS Performance Testing Tool\nVersion 2.10.0\n\n\
        [Status] Testing complete (time limit)\n\nStatistics:\n\n\
          Queries sent:         3498\n  Queries completed:    3490 (99.77%)\n\
          Queries lost:         8 (0.23%)\n\n  Response codes:       NOERROR 3490 (100.00%)\n\
          Run time (s):         1.000276\n  Queries per second:   3489.034818\n\n\
          Average Latency (s):  0.000104 (min 0.000021, max 0.004094)\nLATENCIES\n\
        0.000200\n0.000100\n0.000400\n0.000300\n0.004094\n0.000150\n0.000250\n0.000350\n0.000120\n0.000110\n";

    #[test]
    fn reads_dnsperf() {
        let f = parse(REPORT).unwrap();
        assert_eq!(f.queries_per_second, 3489.034818);
        assert_eq!(f.lost_percent, 0.23);
        assert!((f.p50_ms - 0.2).abs() < 1e-9, "{f:?}");
        assert!((f.p90_ms - 0.4).abs() < 1e-9, "{f:?}");
        assert!((f.max_ms - 4.094).abs() < 1e-9, "{f:?}");
        assert!(!f.interrupted);
        assert!(parse("Queries per second: 5\nLATENCIES\n").is_err());
        let lossless = REPORT.replace("8 (0.23%)", "0 (0.00%)");
        assert!(parse(&lossless).unwrap().held(3000));
        let stopped = parse(&lossless.replace("(time limit)", "(interruption)")).unwrap();
        assert!(stopped.interrupted && !stopped.held(3000), "{stopped:?}");
    }

    #[test]
    fn a_rate_holds_without_loss_at_nearly_that_rate() {
        let run = |qps, lost_percent| Run { queries_per_second: qps, lost_percent, ..parse(REPORT).unwrap() };
        assert!(run(100.0, 0.0).held(100));
        assert!(run(91.0, 0.0).held(100));
        assert!(!run(100.0, 0.01).held(100), "a lost query");
        assert!(!run(80.0, 0.0).held(100), "fell behind");
    }

    /// Runs the search against a server that holds every rate up to `capacity`.
    fn search(start: u32, capacity: u32) -> (Vec<(u32, bool)>, Option<u32>) {
        let mut trials = Vec::new();
        while let Some(rate) = next_rate(start, &trials) {
            assert!(!trials.iter().any(|(r, _)| *r == rate), "{rate} tried twice: {trials:?}");
            trials.push((rate, rate <= capacity));
        }
        let found = zero_loss_rate(&trials);
        (trials, found)
    }

    #[test]
    fn the_search_doubles_then_bisects() {
        let (trials, found) = search(50, 130);
        let rates: Vec<u32> = trials.iter().map(|(r, _)| *r).collect();
        assert_eq!(rates, [50, 100, 200, 150, 125, 137]);
        assert_eq!(found, Some(125));
    }

    #[test]
    fn the_search_halves_from_a_start_too_high() {
        let (trials, found) = search(400, 70);
        let rates: Vec<u32> = trials.iter().map(|(r, _)| *r).collect();
        assert_eq!(&rates[..3], [400, 200, 100]);
        assert_eq!(rates[3], 50);
        let found = found.unwrap();
        assert!((50..=70).contains(&found) && trials.len() <= MAX_TRIALS, "{trials:?}");
    }

    #[test]
    fn the_search_ends_within_its_runs_and_tolerance() {
        for capacity in [0, 3, 4, 5, 9, 17, 33, 60, 99, 250, 1000, 5000, 100_000] {
            for start in [0, 1, 10, 64, 300, 2000] {
                let (trials, found) = search(start, capacity);
                assert!(trials.len() <= MAX_TRIALS, "{start} {capacity}: {trials:?}");
                match found {
                    Some(rate) => assert!(rate <= capacity, "{start} {capacity}: {trials:?}"),
                    None => assert!(capacity < MIN_RATE || trials.len() == MAX_TRIALS, "{trials:?}"),
                }
                let failed = trials.iter().filter(|(_, held)| !held).map(|(r, _)| *r).min();
                if let (Some(rate), Some(failed), true) = (found, failed, trials.len() < MAX_TRIALS) {
                    assert!(f64::from(failed) <= f64::from(rate) * (1.0 + TOLERANCE) + 1.0, "{trials:?}");
                }
            }
        }
    }

    #[test]
    fn a_rate_held_above_one_that_failed_is_noise() {
        let trials = [(100, true), (200, false), (150, false), (175, true)];
        assert_eq!(zero_loss_rate(&trials), Some(100));
        assert_eq!(next_rate(100, &trials), Some(125));
        assert_eq!(zero_loss_rate(&[(8, false)]), None);
        assert_eq!(next_rate(8, &[(8, false), (4, false)]), None);
    }

    #[test]
    fn section_shows_medians_against_nsd() {
        let run = parse(REPORT).unwrap();
        let f = |qps| DnsFigures {
            zero_loss_qps: qps,
            at_rate: run,
            in_flight: run,
            boot_s: 5.0,
            memory_mib: 2.0,
        };
        let s = section(&[f(3000.0), f(1000.0), f(2000.0)], &[f(1000.0)], Vec::new());
        let qps = &s.rows[0];
        assert_eq!(qps.name, "queries/s at zero loss");
        assert_eq!((qps.value, qps.baseline, qps.better), (2000.0, Some(1000.0), Better::Higher));
        assert_eq!(qps.ratio(), Some(2.0));
    }
}
