//! `cargo xtask bench [echo]`: the echo mote against a Linux PVH guest (Debian's kernel, the
//! dom0 one, with `mote-agent echo-server`) in one harness. Each round boots the mote, then
//! Linux, measures each from dom0 with the agent's clients and shuts it down; the table shows
//! the median of the rounds and the ratio mote/Linux. Only a measurement that could not be
//! taken fails the command; no figure is judged.

use crate::agent::{sh_quote, Agent};
use crate::assets::{self, Assets};
use crate::build::{self, AppMeta, Image};
use crate::guest::{self, Reason};
use crate::harness::Harness;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Rounds; each figure is their median.
const ROUNDS: usize = 3;
/// Bytes through TCP echo, one connection.
const ECHO_BYTES: u64 = 10_000_000;
/// Bytes into TCP discard, one connection.
const DISCARD_BYTES: u64 = 20_000_000;
/// UDP echo round trips, one after another.
const DATAGRAMS: u32 = 500;
/// Memory the Linux guest boots and serves with: at 80 MiB its 58 MiB kernel and 8 MiB
/// initramfs no longer fit (`xc_dom_chk_alloc_pages: segment module0 too large`); 96 MiB did
/// until nginx and its libraries made the initramfs 16 MiB, with which the kernel panics at boot
/// ("System is deadlocked on memory").
pub(crate) const LINUX_MEMORY_MIB: u32 = 128;
/// Where the Linux guest's kernel and initramfs go in dom0: a tmpfs of its own, as dom0's root
/// file system is too small for the kernel.
pub(crate) const LINUX_DIR: &str = "/mote/linux";
/// Longest one measurement may take to run.
pub(crate) const STEP_LIMIT: Duration = Duration::from_secs(180);
/// Longest a guest may take to boot: Linux took over 180 s with five other harnesses sharing
/// the two host cores.
const BOOT_LIMIT: Duration = Duration::from_secs(300);
/// Longest a whole guest run (boot, measurements, shutdown) may take.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// A guest under test.
pub(crate) struct Subject {
    /// Column heading.
    pub label: &'static str,
    pub image: Image,
    /// Kernel command line.
    pub args: Vec<String>,
    /// xl config overrides.
    pub xl: Vec<String>,
    /// The address it serves on.
    pub ip: &'static str,
    /// Text of the console line that says it serves.
    pub ready: &'static str,
}

/// One round's figures for one guest, in the order of [`METRICS`].
type Figures = [f64; 7];

/// Name, unit, whether higher is better, decimals.
const METRICS: [(&str, &str, bool, usize); 7] = [
    ("TCP echo throughput", "MB/s", true, 2),
    ("TCP discard throughput", "MB/s", true, 2),
    ("UDP echo round trip, median", "ms", false, 2),
    ("UDP echo round trip, p99", "ms", false, 2),
    ("UDP echo round trip, min", "ms", false, 2),
    ("xl create to serving", "s", false, 1),
    ("guest memory, xl memory=", "MiB", false, 0),
];

/// `cargo xtask bench [echo]`; whether every measurement was taken.
pub fn run(which: Option<&str>) -> Result<bool, String> {
    match which {
        None | Some("echo") => {}
        Some("web") => return crate::bench_web::run(),
        Some(other) => return Err(format!("unknown benchmark {other:?} (there are: echo, web)")),
    }
    let mote = build::build("echo", false)?;
    assets::install_host_deps()?;
    let assets = assets::ensure()?;
    let linux_initrd = assets::linux_guest_initrd(&assets)?;
    let harness = Harness::boot(&assets, &[])?;
    let agent = harness.agent();
    guest::upload(&agent, &mote)?;
    let started = Instant::now();
    let linux = upload_linux(&agent, &assets, &linux_initrd)?;
    eprintln!("bench: Linux kernel and initramfs copied to dom0 in {:.1}s", started.elapsed().as_secs_f64());

    let subjects = [
        Subject {
            label: "mote",
            args: vec!["ip=10.0.0.2/24".into()],
            xl: Vec::new(),
            ip: "10.0.0.2",
            ready: "echo: serving on",
            image: mote,
        },
        Subject {
            label: "Linux",
            args: ["console=hvc0", "quiet", "mote.ip=10.0.0.50/24"].map(String::from).to_vec(),
            xl: vec![format!("ramdisk=\"{LINUX_DIR}/initrd.cpio\"")],
            ip: "10.0.0.50",
            ready: "mote-linux: ready",
            image: linux,
        },
    ];
    let mut figures: [Vec<Figures>; 2] = [Vec::new(), Vec::new()];
    let mut failures = Vec::new();
    for round in 1..=ROUNDS {
        for (subject, results) in subjects.iter().zip(&mut figures) {
            eprintln!("bench: round {round}/{ROUNDS}: {}", subject.label);
            match measure(&agent, subject) {
                Ok(f) => results.push(f),
                Err(e) => {
                    eprintln!("bench: {} round {round}: {e}", subject.label);
                    failures.push(format!("{} round {round}: {e}", subject.label));
                }
            }
        }
    }
    let environment = environment(&agent);
    drop(harness);
    println!("{}", table(&environment, &figures[0], &figures[1]));
    for failure in &failures {
        println!("not measured: {failure}");
    }
    Ok(failures.is_empty())
}

/// Copies the Linux guest's kernel and initramfs into a tmpfs in dom0 and its config into
/// dom0's image folder; the image that names them.
pub(crate) fn upload_linux(agent: &Agent, assets: &Assets, initrd: &Path) -> Result<Image, String> {
    let limit = Duration::from_secs(120);
    agent.run_ok(
        &format!("mkdir -p {LINUX_DIR} && {{ mountpoint -q {LINUX_DIR} || mount -t tmpfs -o size=128m tmpfs {LINUX_DIR}; }}"),
        limit,
    )?;
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()));
    agent.put(&format!("{LINUX_DIR}/vmlinux"), &read(&assets.dom0_kernel)?, 0o644, limit)?;
    agent.put(&format!("{LINUX_DIR}/initrd.cpio"), &read(initrd)?, 0o644, limit)?;
    let meta = AppMeta { memory_mib: LINUX_MEMORY_MIB, network: true, ..AppMeta::default() };
    let cfg = build::xl_cfg("linux", &format!("{LINUX_DIR}/vmlinux"), &meta);
    agent.put("/mote/images/linux.cfg", cfg.as_bytes(), 0o644, limit)?;
    // `Image` describes a mote; of it `guest::run` needs only the name (for the config uploaded
    // here) and the file to symbolize crash reports with, which no Linux console line resembles.
    let kernel = assets.dom0_kernel.clone();
    Ok(Image { app: "linux".into(), meta, elf: kernel.clone(), debug_elf: kernel.clone(), cfg: kernel })
}

/// Boots `subject`, times it until it serves, measures it from dom0, shuts it down.
fn measure(agent: &Agent, subject: &Subject) -> Result<Figures, String> {
    with_guest(agent, subject, |boot| {
        let check = |command: String| -> Result<String, String> {
            let out = agent.run_ok(&format!("/mote/agent {command}"), STEP_LIMIT)?;
            eprintln!("bench:   {}", out.trim());
            Ok(out)
        };
        let ip = subject.ip;
        let echo = check(format!("tcp-check {ip}:7 {ECHO_BYTES}"))?;
        let discard = check(format!("discard-check {ip}:9 {DISCARD_BYTES}"))?;
        let udp = check(format!("udp-check {ip}:7 {DATAGRAMS}"))?;
        let parsed = [
            field(&echo, " (", " MB/s)"),
            field(&discard, " (", " MB/s)"),
            field(&udp, "median ", " ms"),
            field(&udp, "p99 ", " ms"),
            field(&udp, "min ", " ms"),
        ];
        let [Some(echo), Some(discard), Some(median), Some(p99), Some(min)] = parsed else {
            return Err(format!("unexpected report in {echo:?} {discard:?} {udp:?}"));
        };
        let memory = f64::from(subject.image.meta.memory_mib);
        Ok([echo, discard, median, p99, min, boot, memory])
    })
}

/// Boots `subject`, waits until it serves, runs `measure` (given the seconds from `xl create`
/// to serving), shuts the guest down; `measure`'s figures if the guest then powered off.
pub(crate) fn with_guest<T: Send>(
    agent: &Agent,
    subject: &Subject,
    measure: impl FnOnce(f64) -> Result<T, String>,
) -> Result<T, String> {
    let opts = guest::Options {
        timeout: Some(RUN_LIMIT),
        echo: false,
        clock: Instant::now(),
        xl: subject.xl.clone(),
    };
    let (tx, lines) = mpsc::channel::<String>();
    thread::scope(|scope| {
        let started = Instant::now();
        let run = scope.spawn(move || {
            guest::run(agent, &subject.image, &subject.args, &opts, &mut |line| {
                let _ = tx.send(line.to_owned());
            })
        });
        let measured = (|| {
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
        })();
        if measured.is_err() {
            let _ = agent.run(&format!("xl destroy {}", sh_quote(&subject.image.app)), STEP_LIMIT);
        }
        let run = run.join().map_err(|_| "the guest runner panicked".to_owned())?;
        match (measured, run.result) {
            (Err(e), _) => Err(format!("{e}\n{}", run.console)),
            (Ok(figures), Ok(Reason::Poweroff)) => Ok(figures),
            (Ok(_), Ok(reason)) => Err(format!("the guest {} after the measurements", reason.verb())),
            (Ok(_), Err(e)) => Err(e),
        }
    })
}

/// The number between `after` and the next `before` in `text`.
fn field(text: &str, after: &str, before: &str) -> Option<f64> {
    let start = text.find(after)? + after.len();
    let len = text[start..].find(before)?;
    text[start..start + len].trim().parse().ok()
}

/// The median of `values` (the upper one of an even count); NaN when empty.
pub(crate) fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// QEMU's, Xen's and the kernel's versions.
pub(crate) fn environment(agent: &Agent) -> String {
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_owned())
        .unwrap_or_default();
    let dom0 = agent
        .run_ok(
            "xl info | awk -F': *' '/^xen_major/ { a = $2 } /^xen_minor/ { b = $2 } /^xen_extra/ { c = $2 } END { print a \".\" b c }'; uname -r",
            STEP_LIMIT,
        )
        .unwrap_or_default();
    let mut dom0 = dom0.lines();
    format!(
        "{qemu}, TCG, 1 CPU; Xen {}; dom0 and Linux guest: Linux {}, 1 vCPU each",
        dom0.next().unwrap_or("?"),
        dom0.next().unwrap_or("?")
    )
}

/// The result table: medians of the rounds and the ratio mote/Linux.
fn table(environment: &str, mote: &[Figures], linux: &[Figures]) -> String {
    let mut out = format!(
        "echo benchmark: apps/echo (mote) vs a Linux PVH guest, median of {ROUNDS} rounds: TCP echo \
         {} MB and TCP discard {} MB over one connection, {DATAGRAMS} UDP echo round trips\n\
         environment: {environment}\n\n",
        ECHO_BYTES / 1_000_000,
        DISCARD_BYTES / 1_000_000
    );
    out.push_str(&format!(
        "{:<30} {:>10} {:>10} {:>12}  {}\n",
        "metric", "mote", "Linux", "mote/Linux", "better"
    ));
    for (i, (name, unit, higher, decimals)) in METRICS.iter().enumerate() {
        let m = median(mote.iter().map(|f| f[i]));
        let l = median(linux.iter().map(|f| f[i]));
        out.push_str(&format!(
            "{:<30} {:>10} {:>10} {:>12}  {}\n",
            format!("{name} ({unit})"),
            format!("{m:.decimals$}"),
            format!("{l:.decimals$}"),
            format!("{:.2}", m / l),
            if *higher { "higher" } else { "lower" }
        ));
    }
    out.trim_end().to_owned()
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
        assert_eq!(field("discard-check: 20000000 bytes … (3.03 MB/s)", " (", " MB/s)"), Some(3.03));
        assert_eq!(field("nothing", "(", " MB/s)"), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([5.0].into_iter()), 5.0);
        assert!(median(std::iter::empty()).is_nan());
    }

    #[test]
    fn table_shows_medians_ratios_and_direction() {
        let mote = [[2.0, 3.0, 1.0, 4.0, 0.5, 8.0, 16.0]; 3];
        let linux = [[1.0, 4.0, 2.0, 8.0, 1.0, 30.0, 96.0]; 3];
        let t = table("QEMU", &mote, &linux);
        assert!(t.contains("environment: QEMU"), "{t}");
        let echo = t.lines().find(|l| l.starts_with("TCP echo throughput")).unwrap();
        assert!(echo.ends_with("2.00  higher"), "{echo}");
        let memory = t.lines().find(|l| l.starts_with("guest memory")).unwrap();
        assert!(
            memory.contains(" 16 ") && memory.contains(" 96 ") && memory.ends_with("0.17  lower"),
            "{memory}"
        );
    }
}
