//! `cargo xtask bench disk`: blkfront against Linux's xen-blkfront on the same disk image in
//! one harness. The mote is the selftest app (`test=disk-bench`), the Linux guest the echo
//! benchmark's (Debian's kernel) running `mote-agent disk-bench` on `/dev/xvda` with
//! `O_DIRECT`; both write the first [`BYTES`] of a raw image on a tmpfs in dom0 in 1 MiB
//! blocks and flush, read them back in 1 MiB blocks, then make [`READS`] 4 KiB reads at the
//! same pseudo-random offsets, one at a time. The section shows the median of the rounds with
//! Linux as the baseline.

use super::echo::LINUX_DIR;
use super::{field, median_rows, rounds, with_guest, Ctx, Metric, Section};
use crate::agent::{sh_quote, Agent};
use crate::build::{self, Image};
use crate::guest;
use std::time::{Duration, Instant};

/// Rounds; each figure is their median.
const ROUNDS: usize = 3;
/// Bytes written, then read, sequentially.
const BYTES: u64 = 16 << 20;
/// 4 KiB random reads.
const READS: u64 = 1000;
/// The image both guests get, on a tmpfs of its own in dom0.
const IMAGE_DIR: &str = "/mnt/bench-disk";
/// The Linux guest's memory here: the echo benchmark's 96 MiB runs out (the kernel panics,
/// "System is deadlocked on memory") once xen-blkfront and its buffers are in.
const LINUX_MEMORY_MIB: u32 = 160;
/// Longest one guest run (boot, measurement, shutdown) may take.
const RUN_LIMIT: Duration = Duration::from_secs(900);

/// Name, unit, whether higher is better, decimals.
const METRICS: [Metric; 3] = [
    ("sequential write, 1 MiB blocks", "MB/s", true, 2),
    ("sequential read, 1 MiB blocks", "MB/s", true, 2),
    ("random read, 4 KiB, one at a time", "IOPS", true, 0),
];

/// One round's figures, in the order of [`METRICS`].
pub type Figures = [f64; 3];

struct Subject {
    label: &'static str,
    image: Image,
    args: Vec<String>,
    xl: Vec<String>,
    /// The console line after which the guest is shut down from dom0 (the mote powers off
    /// by itself).
    done: Option<&'static str>,
}

/// The disk section: medians of [`ROUNDS`] rounds, Linux as the baseline.
pub fn disk(ctx: &mut Ctx) -> Result<Section, String> {
    let mote = build::build("selftest", build::Flavor::RELEASE)?;
    let agent = ctx.agent()?;
    guest::upload(&agent, &mote)?;
    let linux = ctx.linux()?;
    agent.run_ok(
        &format!(
            "mkdir -p {IMAGE_DIR} && {{ mountpoint -q {IMAGE_DIR} || mount -t tmpfs -o size=24m tmpfs {IMAGE_DIR}; }} \
             && dd if=/dev/zero of={IMAGE_DIR}/bench.img bs=1M count={}",
            BYTES >> 20
        ),
        RUN_LIMIT,
    )?;
    let disk = format!(r#"disk=["format=raw,vdev=xvda,access=rw,target={IMAGE_DIR}/bench.img"]"#);
    let subjects = [
        Subject {
            label: "mote",
            image: mote,
            args: vec!["test=disk-bench".into(), format!("bytes={BYTES}"), format!("reads={READS}")],
            xl: vec![disk.clone()],
            done: None,
        },
        Subject {
            label: "Linux",
            image: linux,
            args: vec!["console=hvc0".into(), "quiet".into(), format!("mote.disk-bench={BYTES},{READS}")],
            xl: vec![
                format!("ramdisk=\"{LINUX_DIR}/initrd.cpio\""),
                format!("memory={LINUX_MEMORY_MIB}"),
                disk,
            ],
            done: Some("mote-linux: disk-bench done"),
        },
    ];
    let (figures, failures) = rounds(ROUNDS, &subjects, |s| s.label, |s| measure(&agent, s));
    Ok(section(&figures[0], &figures[1], failures))
}

/// Boots `subject`, takes its `disk-bench:` line, and sees it gone. The guest's own time for
/// the measurements must agree with the host's between its `disk-bench: start` line and its
/// report ([`clock_agrees`]), else the round is refused.
fn measure(agent: &Agent, subject: &Subject) -> Result<Figures, String> {
    with_guest(agent, &subject.image, &subject.args, &subject.xl, RUN_LIMIT, |lines| {
        let deadline = Instant::now() + RUN_LIMIT;
        let mut started = None;
        let mut report = None;
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains("disk-bench: start") => started = Some(Instant::now()),
                Ok(line) if line.contains("disk-bench: seq-write") => {
                    let host = started.map(|s| s.elapsed().as_secs_f64());
                    eprintln!(
                        "bench:   {} (host: {})",
                        line.trim(),
                        host.map_or("?".into(), |h| format!("{h:.2} s"))
                    );
                    report = Some((line, host));
                    if subject.done.is_none() {
                        break;
                    }
                }
                Ok(line) if line.contains("mote-linux: clocksource") => eprintln!("bench:   {}", line.trim()),
                Ok(line) if subject.done.is_some_and(|d| line.contains(d)) => break,
                Ok(_) => {}
                Err(_) => return Err("no `disk-bench:` line".to_owned()),
            }
        }
        if subject.done.is_some() {
            agent.run_ok(&format!("xl shutdown -w {}", sh_quote(&subject.image.app)), RUN_LIMIT)?;
        }
        let (report, host) = report.ok_or("no `disk-bench:` line")?;
        let host = host.ok_or("a report without `disk-bench: start` before it")?;
        let (figures, guest) = parse(&report).ok_or_else(|| format!("unexpected report {report:?}"))?;
        if !clock_agrees(guest, host) {
            return Err(format!(
                "the guest's clock disagrees with the host's: the measurements took {guest:.2} s by the guest's, \
                 {host:.2} s by the host's; figures not used: {report:?}"
            ));
        }
        Ok(figures)
    })
}

/// Whether `guest` seconds by the guest's clock and `host` seconds between the console lines
/// around them, by the host's, tell the same time: within half of `host` or a second (the
/// console's delay), whichever is more.
fn clock_agrees(guest: f64, host: f64) -> bool {
    (guest - host).abs() <= (host / 2.0).max(1.0)
}

/// `disk-bench: seq-write W MB/s, seq-read R MB/s, rand-read I IOPS in T s`: the figures
/// and T; `None` also for a figure that is not a finite number (a guest whose clock stood
/// still prints `inf`).
fn parse(line: &str) -> Option<(Figures, f64)> {
    let figures = [
        field(line, "seq-write ", " MB/s")?,
        field(line, "seq-read ", " MB/s")?,
        field(line, "rand-read ", " IOPS")?,
    ];
    let total = field(line, " IOPS in ", " s")?;
    figures.iter().all(|f| f.is_finite()).then_some((figures, total))
}

/// The section: medians of the rounds, Linux's as the baseline.
fn section(mote: &[Figures], linux: &[Figures], failures: Vec<String>) -> Section {
    let rows = median_rows(&METRICS, mote, linux);
    Section {
        title: format!(
            "blkfront (selftest mote) vs Linux xen-blkfront (O_DIRECT), median of {ROUNDS} rounds: {} MiB \
             written then read in 1 MiB blocks, {READS} random 4 KiB reads one at a time; raw image on a \
             tmpfs in dom0, Linux blkback",
            BYTES >> 20
        ),
        baseline: format!("a Linux PVH guest (the dom0 kernel, xen-blkfront; {LINUX_MEMORY_MIB} MiB)"),
        notes: vec![format!("rounds measured: mote {}, Linux {}", mote.len(), linux.len())],
        rows,
        failures,
        ..Section::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Better;

    #[test]
    fn reads_both_guests_reports() {
        let line =
            "[    3.1] disk-bench: seq-write 12.50 MB/s, seq-read 20.25 MB/s, rand-read 812 IOPS in 4.07 s";
        assert_eq!(parse(line), Some(([12.5, 20.25, 812.0], 4.07)));
        assert_eq!(parse("disk-bench: seq-write 1 MB/s"), None);
        assert_eq!(parse("disk-bench: seq-write 1 MB/s, seq-read 1 MB/s, rand-read 1 IOPS"), None);
        assert_eq!(
            parse("disk-bench: seq-write inf MB/s, seq-read inf MB/s, rand-read inf IOPS in 0.00 s"),
            None
        );
    }

    #[test]
    fn a_guest_clock_off_from_the_hosts_is_caught() {
        assert!(clock_agrees(4.0, 4.6));
        assert!(clock_agrees(0.4, 1.2), "a second of console delay is allowed");
        assert!(clock_agrees(9.0, 6.5));
        // What a Linux round printed under load: 16 MiB at 1891 MB/s, 1000 reads at 4924 IOPS.
        assert!(!clock_agrees(0.23, 9.0));
        assert!(!clock_agrees(30.0, 9.0));
    }

    #[test]
    fn section_shows_medians_against_linux() {
        let mote = [[10.0, 20.0, 500.0], [12.0, 22.0, 700.0], [11.0, 21.0, 600.0]];
        let linux = [[5.0, 40.0, 300.0]; 3];
        let s = section(&mote, &linux, Vec::new());
        let read = &s.rows[1];
        assert_eq!((read.value, read.baseline, read.better), (21.0, Some(40.0), Better::Higher));
        let iops = &s.rows[2];
        assert_eq!((iops.value, iops.ratio()), (600.0, Some(2.0)));
    }
}
