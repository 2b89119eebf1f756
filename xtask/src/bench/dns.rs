//! `cargo xtask bench dns`: dnsperf in dom0 against the dns mote and against NSD in the Linux
//! PVH guest (ci/linux-guest, `mote.nsd`), both serving the dns app's sample zone, in one
//! harness. Each round boots the mote, then Linux, runs dnsperf for [`SECONDS`] with
//! [`OUTSTANDING`] queries in flight over [`QUERIES`] and shuts the guest down; the table shows
//! the median of the rounds with NSD as the baseline.

use super::echo::{Subject, LINUX_DIR, STEP_LIMIT};
use super::{field, median, serving_guest, Better, Ctx, Row, Section};
use crate::agent::Agent;
use crate::build::{self, AppMeta, Image};
use crate::guest;
use std::time::Duration;

/// Rounds; each figure is their median.
const ROUNDS: usize = 3;
/// Length of one dnsperf run.
const SECONDS: u32 = 10;
/// Queries dnsperf keeps in flight.
const OUTSTANDING: u32 = 10;
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

/// One round's figures for one server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DnsFigures {
    pub queries_per_second: f64,
    /// Percentage of the queries sent that got no answer.
    pub lost_percent: f64,
    /// Latency percentiles over every answered query, in ms.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// xl create until the server printed that it serves, in s.
    pub boot_s: f64,
    pub memory_mib: f64,
}

/// Name, unit, whether higher is better, decimals, and the figure.
type Metric = (&'static str, &'static str, bool, usize, fn(&DnsFigures) -> f64);

const METRICS: [Metric; 8] = [
    ("queries answered per second", "q/s", true, 0, |f| f.queries_per_second),
    ("queries lost", "%", false, 2, |f| f.lost_percent),
    ("latency, median", "ms", false, 2, |f| f.p50_ms),
    ("latency, p90", "ms", false, 2, |f| f.p90_ms),
    ("latency, p99", "ms", false, 2, |f| f.p99_ms),
    ("latency, max", "ms", false, 2, |f| f.max_ms),
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
            args: ["console=hvc0", "quiet", "mote.ip=10.0.0.50/24", "mote.nsd"].map(String::from).to_vec(),
            xl: vec![format!("ramdisk=\"{LINUX_DIR}/initrd.cpio\""), format!("memory={NSD_MEMORY_MIB}")],
            ip: "10.0.0.50",
            ready: "mote-linux: ready",
            image: Image { meta: AppMeta { memory_mib: NSD_MEMORY_MIB, ..linux.meta.clone() }, ..linux },
        },
    ];
    let (figures, failures) = super::rounds(ROUNDS, &subjects, |s| s.label, |s| measure_one(&agent, s));
    Ok(section(&figures[0], &figures[1], failures))
}

/// Boots `subject`, times it until it serves, runs dnsperf against it, shuts it down.
fn measure_one(agent: &Agent, subject: &Subject) -> Result<DnsFigures, String> {
    serving_guest(agent, subject, |boot_s| {
        // dnsperf -v prints a line per answer, "> NOERROR www.example.com A 0.000123";
        // only the latencies and the summary come back.
        let command = format!(
            "dnsperf -s {ip} -d {QUERY_FILE} -l {SECONDS} -q {OUTSTANDING} -t 2 -v > /tmp/dnsperf.out 2>&1; \
             status=$?; grep -v '^>' /tmp/dnsperf.out; echo LATENCIES; \
             awk '/^> / {{ print $NF }}' /tmp/dnsperf.out; rm -f /tmp/dnsperf.out; exit $status",
            ip = subject.ip
        );
        let out = agent.run_ok(&command, STEP_LIMIT + Duration::from_secs(u64::from(SECONDS)))?;
        let figures = parse(&out, boot_s, f64::from(subject.image.meta.memory_mib))?;
        eprintln!(
            "bench dns:   {}: {:.0} q/s, {:.2}% lost, median {:.2} ms, p99 {:.2} ms",
            subject.label, figures.queries_per_second, figures.lost_percent, figures.p50_ms, figures.p99_ms
        );
        Ok(figures)
    })
}

/// The figures in dnsperf's summary and the latencies after the `LATENCIES` line.
fn parse(out: &str, boot_s: f64, memory_mib: f64) -> Result<DnsFigures, String> {
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
        ) => Ok(DnsFigures {
            queries_per_second,
            lost_percent,
            p50_ms,
            p90_ms,
            p99_ms,
            max_ms,
            boot_s,
            memory_mib,
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
             dnsperf in dom0, {SECONDS} s with {OUTSTANDING} queries in flight over {} names, median of \
             {ROUNDS} rounds",
            QUERIES.lines().count()
        ),
        baseline: format!(
            "NSD in a Linux PVH guest (the dom0 kernel, busybox initramfs; {NSD_MEMORY_MIB} MiB)"
        ),
        notes: vec![
            format!("rounds measured: mote {}, NSD {}", mote.len(), nsd.len()),
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
        let f = parse(REPORT, 12.5, 2.0).unwrap();
        assert_eq!(f.queries_per_second, 3489.034818);
        assert_eq!(f.lost_percent, 0.23);
        assert!((f.p50_ms - 0.2).abs() < 1e-9, "{f:?}");
        assert!((f.p90_ms - 0.4).abs() < 1e-9, "{f:?}");
        assert!((f.max_ms - 4.094).abs() < 1e-9, "{f:?}");
        assert_eq!((f.boot_s, f.memory_mib), (12.5, 2.0));
        assert!(parse("Queries per second: 5\nLATENCIES\n", 1.0, 1.0).is_err());
    }

    #[test]
    fn section_shows_medians_against_nsd() {
        let f = |qps| DnsFigures {
            queries_per_second: qps,
            lost_percent: 0.0,
            p50_ms: 1.0,
            p90_ms: 2.0,
            p99_ms: 3.0,
            max_ms: 4.0,
            boot_s: 5.0,
            memory_mib: 2.0,
        };
        let s = section(&[f(3000.0), f(1000.0), f(2000.0)], &[f(1000.0)], Vec::new());
        let qps = &s.rows[0];
        assert_eq!((qps.value, qps.baseline, qps.better), (2000.0, Some(1000.0), Better::Higher));
        assert_eq!(qps.ratio(), Some(2.0));
    }
}
