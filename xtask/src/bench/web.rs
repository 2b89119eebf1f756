//! `cargo xtask bench web`: apps/web against nginx in the Linux PVH guest (the one of
//! `cargo xtask bench echo`), both serving the same two files, loaded by Debian's `wrk` from
//! dom0 ([`bench_site`], which every Linux guest of the benchmarks carries at /srv/www). Each
//! round boots the mote, then Linux, runs wrk against each and shuts it down; the section shows
//! the median of the rounds with nginx as the baseline.

use super::echo::{Subject, LINUX_MEMORY_MIB, STEP_LIMIT};
use super::{median, serving_guest, Better, Ctx, Row, Section};
use crate::build;
use crate::{mote_dir, run_status, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Rounds; each figure is their median.
const ROUNDS: usize = 3;
/// How long each wrk run lasts.
const WRK_SECONDS: u32 = 10;
/// wrk's request timeout (its default, 2 s, is shorter than a 1 MiB response can take under
/// TCG: such a request would count as an error, not as its latency).
const WRK_TIMEOUT: u32 = 10;
/// Keep-alive connections wrk holds for the small page, and for the large file.
const SMALL_CONNECTIONS: u32 = 10;
const LARGE_CONNECTIONS: u32 = 4;
/// The small page (the sample site's home page) and the large file's name and size.
const SMALL: &str = "/index.html";
const LARGE: &str = "/1m.bin";
const LARGE_BYTES: usize = 1 << 20;
/// The mote's memory: its default 4 MiB plus room for the 1 MiB file embedded in the image.
const MOTE_MEMORY_MIB: u32 = 8;

/// What one wrk run reported.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Wrk {
    requests_per_s: f64,
    /// Bytes read per second, headers included, in MB/s (10^6 bytes).
    mb_per_s: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    /// Socket errors and responses other than 2xx/3xx.
    errors: f64,
}

/// Name, unit, higher is better, and how to get the figure from a round's two wrk runs
/// (small page, large file) and the guest's memory.
type Metric = (&'static str, &'static str, bool, fn(&Wrk, &Wrk, f64) -> f64);

const METRICS: [Metric; 9] = [
    ("small page, keep-alive", "req/s", true, |s, _, _| s.requests_per_s),
    ("small page latency p50", "ms", false, |s, _, _| s.p50_ms),
    ("small page latency p90", "ms", false, |s, _, _| s.p90_ms),
    ("small page latency p99", "ms", false, |s, _, _| s.p99_ms),
    ("1 MiB file throughput", "MB/s", true, |_, l, _| l.mb_per_s),
    ("1 MiB file latency p50", "ms", false, |_, l, _| l.p50_ms),
    ("1 MiB file latency p99", "ms", false, |_, l, _| l.p99_ms),
    ("errors (socket, non-2xx)", "count", false, |s, l, _| s.errors + l.errors),
    ("guest memory, xl memory=", "MiB", false, |_, _, m| m),
];

/// The web section: medians of [`ROUNDS`] rounds of both servers, nginx as the baseline.
pub fn web(ctx: &mut Ctx) -> Result<Section, String> {
    let site = bench_site()?;
    let mote = build::build_with("web", build::Flavor::RELEASE, &[build::site_env("web", &site)?])?;
    let agent = ctx.agent()?;
    crate::guest::upload(&agent, &mote)?;
    let linux = ctx.linux()?;
    let subjects = [
        Subject {
            label: "mote",
            args: vec!["ip=10.0.0.2/24".into()],
            xl: vec![format!("memory={MOTE_MEMORY_MIB}")],
            ip: "10.0.0.2",
            ready: "web: serving",
            image: mote,
        },
        Subject {
            label: "nginx",
            args: ["console=hvc0", "quiet", "mote.ip=10.0.0.50/24"].map(String::from).to_vec(),
            xl: vec![format!("ramdisk=\"{}/initrd.cpio\"", super::echo::LINUX_DIR)],
            ip: "10.0.0.50",
            ready: "mote-linux: ready",
            image: linux,
        },
    ];
    let memory = [f64::from(MOTE_MEMORY_MIB), f64::from(LINUX_MEMORY_MIB)];
    let (rounds, failures) = super::rounds(
        ROUNDS,
        &subjects,
        |s| s.label,
        |subject| {
            serving_guest(&agent, subject, |_| {
                let small = wrk(&agent, subject.ip, SMALL, SMALL_CONNECTIONS)?;
                let large = wrk(&agent, subject.ip, LARGE, LARGE_CONNECTIONS)?;
                Ok((small, large))
            })
        },
    );
    Ok(section(&rounds, memory, failures))
}

/// The section: medians of the rounds (mote's, then nginx's), nginx's as the baseline.
fn section(rounds: &[Vec<(Wrk, Wrk)>], memory: [f64; 2], failures: Vec<String>) -> Section {
    let rows = METRICS
        .iter()
        .map(|&(metric, unit, higher, figure)| {
            let [mote, nginx] = [0, 1]
                .map(|i| median(rounds[i].iter().map(|(small, large)| figure(small, large, memory[i]))));
            Row::new(metric, mote, unit, if higher { Better::Higher } else { Better::Lower })
                .baseline(nginx)
                .decimals(2)
        })
        .collect();
    Section {
        title: format!(
            "apps/web (mote) vs nginx in a Linux PVH guest, median of {ROUNDS} rounds; wrk from dom0, \
             {WRK_SECONDS} s per run: {SMALL} ({SMALL_CONNECTIONS} keep-alive connections), {LARGE} \
             ({LARGE_CONNECTIONS} connections)"
        ),
        baseline: format!(
            "nginx in a Linux PVH guest (the dom0 kernel, busybox initramfs; {LINUX_MEMORY_MIB} MiB)"
        ),
        notes: vec![format!("rounds measured: mote {}, nginx {}", rounds[0].len(), rounds[1].len())],
        rows,
        failures,
        ..Section::default()
    }
}

/// Runs wrk from dom0 against `http://ip/path`.
fn wrk(agent: &crate::agent::Agent, ip: &str, path: &str, connections: u32) -> Result<Wrk, String> {
    // The port is given: dom0 has no /etc/services for wrk to look `http` up in.
    let command = format!(
        "wrk -t1 -c{connections} -d{WRK_SECONDS}s --timeout {WRK_TIMEOUT}s --latency http://{ip}:80{path}"
    );
    let out = agent.run_ok(&command, STEP_LIMIT)?;
    eprintln!("bench web:   {command}\n{}", out.trim_end());
    parse_wrk(&out).ok_or_else(|| format!("unexpected wrk output: {out:?}"))
}

/// The rest of the line of wrk's report that starts with `label`, trimmed.
fn wrk_value(out: &str, label: &str) -> Option<String> {
    out.lines().find_map(|l| l.trim().strip_prefix(label).map(|rest| rest.trim().to_owned()))
}

/// What wrk counts as errors: its socket errors (`connect`, `read`, `write`, `timeout`) and the
/// responses other than 2xx or 3xx; absent lines count 0.
pub fn wrk_errors(out: &str) -> u64 {
    wrk_value(out, "Socket errors:")
        .map(|s| s.split(',').filter_map(|e| e.split_whitespace().nth(1)?.parse::<u64>().ok()).sum())
        .unwrap_or(0)
        + wrk_value(out, "Non-2xx or 3xx responses:").and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The requests wrk completed (`N requests in 10.00s, …`).
pub fn wrk_requests(out: &str) -> Option<u64> {
    out.lines().find_map(|l| l.trim().split_once(" requests in ")?.0.parse().ok())
}

/// Reads wrk's `--latency` report.
fn parse_wrk(out: &str) -> Option<Wrk> {
    let value_after = |label: &str| wrk_value(out, label);
    let percentile = |p: &str| millis(&value_after(p)?);
    let errors = wrk_errors(out) as f64;
    Some(Wrk {
        requests_per_s: value_after("Requests/sec:")?.parse().ok()?,
        mb_per_s: bytes(&value_after("Transfer/sec:")?)? / 1e6,
        p50_ms: percentile("50%")?,
        p90_ms: percentile("90%")?,
        p99_ms: percentile("99%")?,
        errors,
    })
}

/// A wrk duration (`812.00us`, `4.90ms`, `1.20s`, `2.00m`) in milliseconds.
fn millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// A wrk byte count (`512.00B`, `1.25MB`: binary multiples) in bytes.
fn bytes(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// `target/mote/bench-site`: the sample site's home page and [`LARGE`], [`LARGE_BYTES`] of
/// pseudo-random bytes (which gzip cannot shrink, so both servers send them as they are).
pub fn bench_site() -> Result<PathBuf, String> {
    let site = mote_dir().join("bench-site");
    std::fs::create_dir_all(&site).map_err(|e| format!("create {}: {e}", site.display()))?;
    let home = workspace_root().join("apps/web/site/index.html");
    let home = std::fs::read(&home).map_err(|e| format!("read {}: {e}", home.display()))?;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let large: Vec<u8> = (0..LARGE_BYTES / 8)
        .flat_map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes()
        })
        .collect();
    for (name, data) in [(&SMALL[1..], home), (&LARGE[1..], large)] {
        let path = site.join(name);
        // Unchanged files keep their times, so that the mote is not rebuilt for nothing.
        if std::fs::read(&path).is_ok_and(|old| old == data) {
            continue;
        }
        std::fs::write(&path, data).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(site)
}

/// The Linux guest's initramfs with a second archive appended that puts `site` at /srv/www,
/// where its nginx serves from (the kernel unpacks concatenated archives in order).
pub fn linux_initrd_with_site(initrd: &Path, site: &Path) -> Result<PathBuf, String> {
    let out = mote_dir().join("bench-linux-initrd.cpio");
    let stage = mote_dir().join("bench-linux-site");
    let _ = std::fs::remove_dir_all(&stage);
    let www = stage.join("srv/www");
    std::fs::create_dir_all(&www).map_err(|e| format!("create {}: {e}", www.display()))?;
    for entry in std::fs::read_dir(site).map_err(|e| format!("read {}: {e}", site.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        std::fs::copy(entry.path(), www.join(entry.file_name()))
            .map_err(|e| format!("copy {}: {e}", entry.path().display()))?;
    }
    let archive = mote_dir().join("bench-linux-site.cpio");
    run_status(Command::new("sh").current_dir(&stage).arg("-c").arg(format!(
        "find srv | LC_ALL=C sort | cpio --create --format=newc --owner=0:0 --quiet > {}",
        crate::agent::sh_quote(&archive.display().to_string())
    )))?;
    let mut bytes = std::fs::read(initrd).map_err(|e| format!("read {}: {e}", initrd.display()))?;
    bytes.extend(std::fs::read(&archive).map_err(|e| format!("read {}: {e}", archive.display()))?);
    std::fs::write(&out, bytes).map_err(|e| format!("write {}: {e}", out.display()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "Running 10s test @ http://10.0.0.2/index.html
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.21ms    2.01ms  30.00ms   80.00%
    Req/Sec     1.95k   200.00     2.20k    70.00%
  Latency Distribution
     50%  812.00us
     75%    6.00ms
     90%    7.50ms
     99%    1.20s
  19500 requests in 10.00s, 12.50MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 1, read 2, write 0, timeout 4
Requests/sec:   1950.00
Transfer/sec:      1.25MB
";

    #[test]
    fn reads_wrk_reports() {
        let wrk = parse_wrk(WRK_OUTPUT).unwrap();
        assert_eq!(wrk.requests_per_s, 1950.0);
        assert!((wrk.mb_per_s - 1.25 * 1.048_576).abs() < 1e-9, "{}", wrk.mb_per_s);
        assert!((wrk.p50_ms - 0.812).abs() < 1e-9);
        assert_eq!((wrk.p90_ms, wrk.p99_ms), (7.5, 1200.0));
        assert_eq!(wrk.errors, 10.0);
        let clean = WRK_OUTPUT
            .replace("  Non-2xx or 3xx responses: 3\n", "")
            .replace("  Socket errors: connect 1, read 2, write 0, timeout 4\n", "");
        assert_eq!(parse_wrk(&clean).unwrap().errors, 0.0);
        assert!(parse_wrk("wrk: unable to connect").is_none());
        assert_eq!((wrk_requests(WRK_OUTPUT), wrk_errors(WRK_OUTPUT)), (Some(19500), 10));
        assert_eq!(wrk_requests("wrk: unable to connect"), None);
    }

    #[test]
    fn units() {
        assert_eq!(millis("2.00m"), Some(120_000.0));
        assert_eq!(millis("3ms"), Some(3.0));
        assert_eq!(millis("3h"), None);
        assert_eq!(bytes("512.00B"), Some(512.0));
        assert_eq!(bytes("2.00KB"), Some(2048.0));
        assert_eq!(bytes("1.5"), None);
    }

    #[test]
    fn section_shows_medians_against_nginx() {
        let run = |rps| Wrk {
            requests_per_s: rps,
            mb_per_s: 1.0,
            p50_ms: 1.0,
            p90_ms: 2.0,
            p99_ms: 3.0,
            errors: 0.0,
        };
        let mote = vec![(run(3000.0), run(1.0)), (run(1000.0), run(1.0)), (run(2000.0), run(1.0))];
        let nginx = vec![(run(1000.0), run(1.0))];
        let s = section(&[mote, nginx], [8.0, 160.0], Vec::new());
        let small = &s.rows[0];
        assert_eq!((small.value, small.baseline, small.better), (2000.0, Some(1000.0), Better::Higher));
        let memory = s.rows.last().unwrap();
        assert_eq!((memory.value, memory.baseline, memory.better), (8.0, Some(160.0), Better::Lower));
    }
}
