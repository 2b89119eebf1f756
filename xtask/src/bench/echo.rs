//! `cargo xtask bench echo`: the echo mote against a Linux PVH guest (Debian's kernel, the
//! dom0 one, with `mote-agent echo-server`) in one harness. Each round boots the mote, then
//! Linux, measures each from dom0 with the agent's clients and shuts it down; the section
//! shows the median of the rounds with Linux as the baseline.

use super::{field, median_rows, Ctx, Metric, Section};
use crate::agent::Agent;
use crate::assets::{self, Assets};
use crate::build::{self, AppMeta, Image};
use crate::guest;
use std::path::Path;
use std::time::{Duration, Instant};

/// Rounds; each figure is their median.
const ROUNDS: usize = 3;
/// Bytes through TCP echo, one connection.
const ECHO_BYTES: u64 = 10_000_000;
/// Bytes into TCP discard, one connection.
const DISCARD_BYTES: u64 = 20_000_000;
/// UDP echo round trips, one after another.
const DATAGRAMS: u32 = 500;
/// The Linux guest's memory: at 80 MiB its 58 MiB kernel and then 8 MiB initramfs no longer
/// fit (`xc_dom_chk_alloc_pages: segment module0 too large`); with nginx and its libraries
/// (16 MiB of initramfs) it panicked at boot in 96, and xen-blkfront ran out in 96 too.
pub const LINUX_MEMORY_MIB: u32 = 160;
/// Where the Linux guest's kernel and initramfs go in dom0: a tmpfs of its own, as dom0's root
/// file system is too small for the kernel.
pub const LINUX_DIR: &str = "/mote/linux";
/// Longest a guest may take to boot, or one measurement to run.
pub const STEP_LIMIT: Duration = Duration::from_secs(180);

/// A guest under test.
pub struct Subject {
    /// Column heading.
    pub(super) label: &'static str,
    pub(super) image: Image,
    /// Kernel command line.
    pub(super) args: Vec<String>,
    /// xl config overrides.
    pub(super) xl: Vec<String>,
    /// The address it serves on.
    pub(super) ip: &'static str,
    /// Text of the console line that says it serves.
    pub(super) ready: &'static str,
}

/// One round's figures for one guest, in the order of [`METRICS`].
type Figures = [f64; 7];

/// Name, unit, whether higher is better, decimals.
const METRICS: [Metric; 7] = [
    ("TCP echo throughput", "MB/s", true, 2),
    ("TCP discard throughput", "MB/s", true, 2),
    ("UDP echo round trip, median", "ms", false, 2),
    ("UDP echo round trip, p99", "ms", false, 2),
    ("UDP echo round trip, min", "ms", false, 2),
    ("xl create to serving", "s", false, 1),
    ("guest memory, xl memory=", "MiB", false, 0),
];

/// The echo section: medians of [`ROUNDS`] rounds, Linux as the baseline.
pub fn echo(ctx: &mut Ctx) -> Result<Section, String> {
    let mote = build::build("echo", build::Flavor::RELEASE)?;
    let agent = ctx.agent()?;
    guest::upload(&agent, &mote)?;
    let linux = ctx.linux()?;

    let subjects = [
        Subject {
            label: "mote",
            args: vec!["ip=10.0.0.2/24".into()],
            xl: Vec::new(),
            ip: "10.0.0.2",
            ready: "echo: serving on",
            image: mote,
        },
        linux_subject(linux),
    ];
    let (figures, failures) = super::rounds(ROUNDS, &subjects, |s| s.label, |s| measure(&agent, s));
    Ok(section(&figures[0], &figures[1], failures))
}

/// `cargo xtask bench offload`: apps/echo with netfront's offloads off, with checksum offload
/// only, and with both (the default), one after the other in each round; each offload's rows
/// compare the median with it against the median without it.
pub fn offload(ctx: &mut Ctx) -> Result<Section, String> {
    let image = build::build("echo", build::Flavor::RELEASE)?;
    let agent = ctx.agent()?;
    guest::upload(&agent, &image)?;
    let subject = |label, netfront: Option<&str>| Subject {
        label,
        args: ["ip=10.0.0.2/24"].into_iter().chain(netfront).map(String::from).collect(),
        xl: Vec::new(),
        ip: "10.0.0.2",
        ready: "echo: serving on",
        image: image.clone(),
    };
    let subjects = [
        subject("netfront=no-csum-offload,no-sg", Some("netfront=no-csum-offload,no-sg")),
        subject("netfront=no-sg", Some("netfront=no-sg")),
        subject("default (both on)", None),
    ];
    let (figures, failures) = super::rounds(ROUNDS, &subjects, |s| s.label, |s| measure(&agent, s));
    let rows = |prefix: &str, with: &[Figures], without: &[Figures]| {
        let mut rows = median_rows(&METRICS[..5], with, without);
        rows.iter_mut().for_each(|row| row.name = format!("{prefix}: {}", row.name));
        rows
    };
    let mut rows_all = rows("checksum offload", &figures[1], &figures[0]);
    rows_all.extend(rows("rx scatter-gather", &figures[2], &figures[1]));
    Ok(Section {
        title: format!(
            "netfront's offloads in apps/echo, median of {ROUNDS} rounds (the same loads as `echo`)"
        ),
        baseline: "the same image without the offload (checksum offload: netfront=no-csum-offload,no-sg; \
                   scatter-gather: netfront=no-sg)"
            .into(),
        notes: vec![format!(
            "rounds measured: {}",
            subjects
                .iter()
                .zip(&figures)
                .map(|(s, f)| format!("{} {}", s.label, f.len()))
                .collect::<Vec<_>>()
                .join(", ")
        )],
        rows: rows_all,
        failures,
        ..Section::default()
    })
}

/// The Linux guest serving echo on 10.0.0.50.
pub fn linux_subject(image: Image) -> Subject {
    Subject {
        label: "Linux",
        args: ["console=hvc0", "quiet", "mote.ip=10.0.0.50/24"].map(String::from).to_vec(),
        xl: vec![format!("ramdisk=\"{LINUX_DIR}/initrd.cpio\"")],
        ip: "10.0.0.50",
        ready: "mote-linux: ready",
        image,
    }
}

/// Copies the Linux guest's kernel and initramfs into a tmpfs in dom0 and its config into
/// dom0's image folder; the image that names them.
pub fn upload_linux(agent: &Agent, assets: &Assets) -> Result<Image, String> {
    let initrd = &super::web::linux_initrd_with_site(
        &assets::linux_guest_initrd(assets)?,
        &super::web::bench_site()?,
    )?;
    let started = Instant::now();
    let limit = Duration::from_secs(120);
    agent.run_ok(
        &format!("mkdir -p {LINUX_DIR} && {{ mountpoint -q {LINUX_DIR} || mount -t tmpfs -o size=128m tmpfs {LINUX_DIR}; }}"),
        limit,
    )?;
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()));
    agent.put(&format!("{LINUX_DIR}/vmlinux"), &read(&assets.dom0_kernel)?, 0o644, limit)?;
    agent.put(&format!("{LINUX_DIR}/initrd.cpio"), &read(initrd)?, 0o644, limit)?;
    let meta = AppMeta { memory_mib: LINUX_MEMORY_MIB, network: true, ..AppMeta::default() };
    let cfg = build::xl_cfg("linux", &format!("{LINUX_DIR}/vmlinux"), &meta, false);
    agent.put("/mote/images/linux.cfg", cfg.as_bytes(), 0o644, limit)?;
    // `Image` describes a mote; of it `guest::run` needs only the name (for the config uploaded
    // here) and the file to symbolize crash reports with, which no Linux console line resembles.
    let kernel = assets.dom0_kernel.clone();
    eprintln!("bench: Linux kernel and initramfs copied to dom0 in {:.1}s", started.elapsed().as_secs_f64());
    Ok(Image {
        app: "linux".into(),
        meta,
        flavor: build::Flavor::RELEASE,
        elf: kernel.clone(),
        debug_elf: kernel.clone(),
        cfg: kernel,
    })
}

/// Boots `subject`, times it until it serves, measures it from dom0, shuts it down.
fn measure(agent: &Agent, subject: &Subject) -> Result<Figures, String> {
    super::serving_guest(agent, subject, |boot| {
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

/// The section: medians of the rounds, Linux's as the baseline.
fn section(mote: &[Figures], linux: &[Figures], failures: Vec<String>) -> Section {
    let rows = median_rows(&METRICS, mote, linux);
    Section {
        title: format!(
            "apps/echo (mote) vs a Linux PVH guest, median of {ROUNDS} rounds: TCP echo {} MB and TCP \
             discard {} MB over one connection, {DATAGRAMS} UDP echo round trips",
            ECHO_BYTES / 1_000_000,
            DISCARD_BYTES / 1_000_000
        ),
        baseline: format!(
            "a Linux PVH guest (the dom0 kernel, busybox initramfs, mote-agent echo-server; {LINUX_MEMORY_MIB} MiB)"
        ),
        notes: vec![
            format!("rounds measured: mote {}, Linux {}", mote.len(), linux.len()),
            "xl create to serving: from xtask starting `xl create` to the guest's ready line on its console".into(),
        ],
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
    fn section_shows_medians_against_linux() {
        let mote = [
            [2.0, 3.0, 1.0, 4.0, 0.5, 8.0, 16.0],
            [4.0, 3.0, 1.0, 4.0, 0.5, 8.0, 16.0],
            [3.0, 3.0, 1.0, 4.0, 0.5, 8.0, 16.0],
        ];
        let linux = [[1.5, 4.0, 2.0, 8.0, 1.0, 30.0, 96.0]; 3];
        let s = section(&mote, &linux, Vec::new());
        let echo = &s.rows[0];
        assert_eq!((echo.value, echo.baseline, echo.better), (3.0, Some(1.5), Better::Higher));
        assert_eq!(echo.ratio(), Some(2.0));
        let memory = s.rows.last().unwrap();
        assert_eq!((memory.value, memory.baseline, memory.better), (16.0, Some(96.0), Better::Lower));
    }
}
