//! `cargo xtask bench [NAME…]`: every benchmark, or those named, each a function returning a
//! report [`Section`] of rows (figure, unit, baseline, ratio, which way is better). The report
//! is printed and written to `target/mote/bench/report.md` and `report.json` after each
//! section, so a long run keeps what it measured. Only a measurement that could not be taken
//! fails the command; no figure is judged.
//!
//! A benchmark is a [`Bench`] in [`BENCHES`]; [`Ctx`] boots the harness the first time a
//! benchmark asks for it and shares it with the ones after.

mod boot;
mod disk;
pub mod dns;
mod echo;
pub mod report;
mod size;
pub mod web;

use crate::agent::{sh_quote, Agent};
use crate::assets::{self, Assets};
use crate::build::Image;
use crate::guest::{self, Reason};
use crate::harness::Harness;
use echo::STEP_LIMIT;
pub use report::{Better, Row, Section};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// One benchmark.
pub struct Bench {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&mut Ctx) -> Result<Section, String>,
}

/// Every benchmark, in the order `cargo xtask bench` runs them.
pub const BENCHES: &[Bench] = &[
    Bench {
        name: "size",
        about: "stripped image size of every app and what takes the space",
        run: size::size,
    },
    Bench { name: "repro", about: "an app built twice from clean: equal images?", run: size::repro },
    Bench { name: "echo", about: "apps/echo vs a Linux PVH guest: TCP, UDP, time to serve", run: echo::echo },
    Bench {
        name: "offload",
        about: "apps/echo with netfront's checksum offload and rx scatter-gather off and on",
        run: echo::offload,
    },
    Bench { name: "dns", about: "apps/dns vs NSD in a Linux PVH guest: dnsperf from dom0", run: dns::dns },
    Bench { name: "web", about: "apps/web vs nginx in a Linux PVH guest: wrk from dom0", run: web::web },
    Bench {
        name: "disk",
        about: "blkfront vs Linux xen-blkfront: sequential MB/s, random-read IOPS",
        run: disk::disk,
    },
    Bench {
        name: "boot",
        about: "boot time: in the guest (PV clock) and xl create to first answer",
        run: boot::boot,
    },
    Bench { name: "memory", about: "smallest xl memory= with which dns and web serve", run: boot::memory },
    Bench {
        name: "density",
        about: "N dns motes started at once: time until all answer, memory each",
        run: boot::density,
    },
];

/// What benchmarks share: the assets and, once one asks, the harness.
pub struct Ctx {
    assets: Option<Assets>,
    harness: Option<Harness>,
    linux: Option<crate::build::Image>,
}

impl Ctx {
    /// Xen, dom0 and the host tools, fetched or built on first use.
    pub fn assets(&mut self) -> Result<&Assets, String> {
        if self.assets.is_none() {
            assets::install_host_deps()?;
            self.assets = Some(assets::ensure()?);
        }
        Ok(self.assets.as_ref().expect("set above"))
    }

    /// The agent of the harness, booted on first use.
    pub fn agent(&mut self) -> Result<Agent, String> {
        if self.harness.is_none() {
            let harness = Harness::boot(self.assets()?, &[])?;
            self.harness = Some(harness);
        }
        Ok(self.harness.as_ref().expect("set above").agent())
    }

    /// The Linux guest (kernel and initramfs copied into dom0 on first use), the baseline of
    /// the guest benchmarks.
    pub fn linux(&mut self) -> Result<crate::build::Image, String> {
        if self.linux.is_none() {
            let agent = self.agent()?;
            let assets = self.assets.as_ref().expect("agent() fetched the assets");
            self.linux = Some(echo::upload_linux(&agent, assets)?);
        }
        Ok(self.linux.clone().expect("set above"))
    }

    /// Whether the harness was booted.
    fn booted(&self) -> Option<&Harness> {
        self.harness.as_ref()
    }
}

/// `cargo xtask bench [NAME…]`: the benchmarks named, or all; whether every measurement was
/// taken.
pub fn run(names: &[String]) -> Result<bool, String> {
    let selected: Vec<&Bench> = if names.is_empty() {
        BENCHES.iter().collect()
    } else {
        names
            .iter()
            .map(|name| {
                BENCHES.iter().find(|b| b.name == name).ok_or_else(|| {
                    let names: Vec<&str> = BENCHES.iter().map(|b| b.name).collect();
                    format!("unknown benchmark {name:?} (there are: {})", names.join(", "))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let mut ctx = Ctx { assets: None, harness: None, linux: None };
    let mut report = report::Report { environment: host_environment(), sections: Vec::new() };
    let mut ok = true;
    for bench in selected {
        eprintln!("bench: {}: {}", bench.name, bench.about);
        let mut section = (bench.run)(&mut ctx).unwrap_or_else(|e| Section {
            title: bench.about.into(),
            failures: vec![e],
            ..Section::default()
        });
        section.name = bench.name.into();
        ok &= section.failures.is_empty();
        println!("{}", report::text(&section));
        report.sections.push(section);
        if let Some(harness) = ctx.booted() {
            report.environment = guest_environment(&harness.agent());
        }
        let (md, json) = report::write(&report, &report::dir())?;
        eprintln!("bench: report in {} and {}", md.display(), json.display());
    }
    Ok(ok)
}

/// QEMU's version.
fn host_environment() -> String {
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("host: {cores} cores; {qemu}")
}

/// QEMU's, Xen's and dom0's versions.
fn guest_environment(agent: &Agent) -> String {
    let dom0 = agent
        .run_ok(
            "xl info | awk -F': *' '/^xen_major/ { a = $2 } /^xen_minor/ { b = $2 } /^xen_extra/ { c = $2 } END { print a \".\" b c }'; uname -r",
            Duration::from_secs(60),
        )
        .unwrap_or_default();
    let mut dom0 = dom0.lines();
    format!(
        "{}, TCG, 1 CPU; Xen {}; dom0 Linux {}, 1 vCPU",
        host_environment(),
        dom0.next().unwrap_or("?"),
        dom0.next().unwrap_or("?")
    )
}

/// Measures each of `subjects` in turn, `count` rounds over; the figures of each subject (in
/// its order) and what could not be measured. `label` names a subject in the progress lines.
pub(crate) fn rounds<S, F>(
    count: usize,
    subjects: &[S],
    label: impl Fn(&S) -> &str,
    mut measure: impl FnMut(&S) -> Result<F, String>,
) -> (Vec<Vec<F>>, Vec<String>) {
    let mut figures: Vec<Vec<F>> = subjects.iter().map(|_| Vec::new()).collect();
    let mut failures = Vec::new();
    for round in 1..=count {
        for (subject, results) in subjects.iter().zip(&mut figures) {
            eprintln!("bench: round {round}/{count}: {}", label(subject));
            match measure(subject) {
                Ok(f) => results.push(f),
                Err(e) => {
                    eprintln!("bench: {} round {round}: {e}", label(subject));
                    failures.push(format!("{} round {round}: {e}", label(subject)));
                }
            }
        }
    }
    (figures, failures)
}

/// Runs `image` with `args` and the `xl` overrides while `measure` reads its console lines
/// (and ends the guest, or leaves it to power off by itself). The guest is destroyed when
/// `measure` fails; after it succeeds, the guest must power off within `limit`.
pub(crate) fn with_guest<T>(
    agent: &Agent,
    image: &Image,
    args: &[String],
    xl: &[String],
    limit: Duration,
    measure: impl FnOnce(&mpsc::Receiver<String>) -> Result<T, String>,
) -> Result<T, String> {
    let opts = guest::Options { timeout: Some(limit), echo: false, clock: Instant::now(), xl: xl.to_vec() };
    let (tx, lines) = mpsc::channel::<String>();
    thread::scope(|scope| {
        let run = scope.spawn(move || {
            guest::run(agent, image, args, &opts, &mut |line| {
                let _ = tx.send(line.to_owned());
            })
        });
        let measured = measure(&lines);
        if measured.is_err() {
            let _ = agent.run(&format!("xl destroy {}", sh_quote(&image.app)), STEP_LIMIT);
        }
        let run = run.join().map_err(|_| "the guest runner panicked".to_owned())?;
        match (measured, run.result) {
            (Err(e), Err(guest)) => Err(format!("{e}; {guest}\n{}", run.console)),
            (Err(e), Ok(_)) => Err(format!("{e}\n{}", run.console)),
            (Ok(figures), Ok(Reason::Poweroff)) => Ok(figures),
            (Ok(_), Ok(reason)) => Err(format!("the guest {} after the measurements", reason.verb())),
            (Ok(_), Err(e)) => Err(e),
        }
    })
}

/// Longest a guest may take to boot: Linux's kernel took over 180 s under TCG while other
/// harnesses loaded the host's two cores.
const BOOT_LIMIT: Duration = Duration::from_secs(600);
/// Longest a whole guest run (boot, measurements, shutdown) may take.
const RUN_LIMIT: Duration = Duration::from_secs(900);

/// Runs `subject` until its console says it serves, then `measure`s it (given the seconds from
/// `xl create` to then) and shuts it down; the guest is destroyed if anything fails.
pub fn serving_guest<T>(
    agent: &Agent,
    subject: &echo::Subject,
    measure: impl FnOnce(f64) -> Result<T, String>,
) -> Result<T, String> {
    let started = Instant::now();
    with_guest(agent, &subject.image, &subject.args, &subject.xl, RUN_LIMIT, |lines| {
        let deadline = started + BOOT_LIMIT;
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(subject.ready) => break,
                Ok(_) => {}
                Err(_) => return Err(format!("no console line {:?}", subject.ready)),
            }
        }
        let figures = measure(started.elapsed().as_secs_f64())?;
        agent.run_ok(&format!("xl shutdown -w {}", sh_quote(&subject.image.app)), STEP_LIMIT)?;
        Ok(figures)
    })
}

/// A metric of a table of figures: name, unit, whether higher is better, decimals shown.
pub type Metric = (&'static str, &'static str, bool, usize);

/// One row per metric: the median of the rounds' `i`th figure, against the baseline's.
pub fn median_rows<F: AsRef<[f64]>>(metrics: &[Metric], mote: &[F], baseline: &[F]) -> Vec<Row> {
    metrics
        .iter()
        .enumerate()
        .map(|(i, &(name, unit, higher, decimals))| {
            let better = if higher { Better::Higher } else { Better::Lower };
            Row::new(name, median(mote.iter().map(|f| f.as_ref()[i])), unit, better)
                .baseline(median(baseline.iter().map(|f| f.as_ref()[i])))
                .decimals(decimals)
        })
        .collect()
}

/// The number between `after` and the next `before` in `text`.
pub fn field(text: &str, after: &str, before: &str) -> Option<f64> {
    let start = text.find(after)? + after.len();
    let len = text[start..].find(before)?;
    text[start..start + len].trim().parse().ok()
}

/// The median of `values` (the upper one of an even count); NaN when empty.
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_checks_reports() {
        let udp = "udp-check: 500 datagrams echoed; round trip min 1.194 ms, median 2.643 ms, p99 20.977 ms";
        assert_eq!(field(udp, "median ", " ms"), Some(2.643));
        assert_eq!(field(udp, "p99 ", " ms"), Some(20.977));
        assert_eq!(field(udp, "min ", " ms"), Some(1.194));
        let tcp = "tcp-check: 1 connection(s) x 20000000 bytes echoed byte for byte in 15.63 s (1.28 MB/s); fnv64 …";
        assert_eq!(field(tcp, " (", " MB/s)"), Some(1.28));
        assert_eq!(field("nothing", "(", " MB/s)"), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([5.0].into_iter()), 5.0);
        assert!(median(std::iter::empty()).is_nan());
    }

    #[test]
    fn bench_names_are_unique() {
        let mut names: Vec<&str> = BENCHES.iter().map(|b| b.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), BENCHES.len());
    }
}
