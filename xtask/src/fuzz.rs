//! `cargo xtask fuzz`: runs the `cargo fuzz` targets in `fuzz/` for a while each, one
//! process (one core) at a time, with corpus and crash artifacts in `target/fuzz-corpus/`.
//! A target starts from its hand-written seeds in `fuzz/seeds/TARGET/` (read, never written)
//! and from what earlier runs kept.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

/// The targets in `fuzz/fuzz_targets/`, in the order they run.
pub const TARGETS: &[&str] = &[
    "dns_query",
    "dns_zone",
    "http_request",
    "xenstore_decode",
    "netif_responses",
    "cmdline",
    "blkif_responses",
];

/// What one run of a target came to, from libFuzzer's output.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Inputs executed.
    pub runs: Option<u64>,
    /// Coverage counters (`cov:`) and features (`ft:`) reached.
    pub cov: Option<u64>,
    pub features: Option<u64>,
    /// Inputs in the corpus at the end.
    pub corpus: Option<u64>,
    /// The input that crashed the target, as libFuzzer wrote it.
    pub crash: Option<String>,
}

impl Summary {
    /// Reads libFuzzer's status lines (`#N ... cov: C ft: F corp: K/...`), its final
    /// `Done N runs` and the `Test unit written to PATH` of a crash.
    pub fn parse(log: &str) -> Summary {
        let mut summary = Summary::default();
        for line in log.lines() {
            if let Some((_, path)) = line.split_once("Test unit written to ") {
                summary.crash = Some(path.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("Done ") {
                summary.runs = rest.split(' ').next().and_then(|n| n.parse().ok());
            } else if let Some(rest) = line.strip_prefix('#') {
                let mut words = rest.split_whitespace();
                summary.runs = words.next().and_then(|n| n.parse().ok()).or(summary.runs);
                while let Some(word) = words.next() {
                    let value = || words.clone().next().and_then(|v| v.split('/').next()?.parse().ok());
                    match word {
                        "cov:" => summary.cov = value(),
                        "ft:" => summary.features = value(),
                        "corp:" => summary.corpus = value(),
                        _ => {}
                    }
                }
            }
        }
        summary
    }

    fn line(&self, target: &str, seconds: u64) -> String {
        let n = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        let verdict = match &self.crash {
            Some(path) => format!("CRASH, input in {path}"),
            None => "0 crashes".to_owned(),
        };
        format!(
            "fuzz {target}: {} runs in {seconds} s, cov {}, ft {}, corpus {}, {verdict}",
            n(self.runs),
            n(self.cov),
            n(self.features),
            n(self.corpus)
        )
    }
}

/// Runs `target` (or every target) for `seconds` each; `Ok(false)` if one crashed.
pub fn run(target: Option<&str>, seconds: u64) -> Result<bool, String> {
    let targets: Vec<&str> = match target {
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => return Err(format!("no fuzz target {t:?}; the targets are {}", TARGETS.join(", "))),
        None => TARGETS.to_vec(),
    };
    let nightly = nightly()?;
    ensure_cargo_fuzz(&nightly)?;
    let mut clean = true;
    let mut lines = Vec::new();
    for target in targets {
        let summary = run_one(&nightly, target, seconds)?;
        println!("{}", summary.line(target, seconds));
        clean &= summary.crash.is_none();
        lines.push(summary.line(target, seconds));
    }
    if lines.len() > 1 {
        println!("\nsummary:\n{}", lines.join("\n"));
    }
    Ok(clean)
}

/// The file that names the pinned nightly.
const TOOLCHAIN_FILE: &str = "fuzz/rust-toolchain.toml";

/// The nightly toolchain the targets build with: the `channel` of [`TOOLCHAIN_FILE`].
fn nightly() -> Result<String, String> {
    let path = crate::workspace_root().join(TOOLCHAIN_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    channel(&text).ok_or_else(|| format!("{}: no `channel = \"nightly-…\"` line", path.display()))
}

/// The value of a `channel = "…"` line naming a nightly.
fn channel(toml: &str) -> Option<String> {
    toml.lines().find_map(|l| {
        let value = l.trim().strip_prefix("channel")?.trim().strip_prefix('=')?.trim();
        let name = value.strip_prefix('"')?.strip_suffix('"')?;
        name.starts_with("nightly").then(|| name.to_owned())
    })
}

/// Installs cargo-fuzz unless `cargo +NIGHTLY fuzz` already works.
fn ensure_cargo_fuzz(nightly: &str) -> Result<(), String> {
    let works = |cmd: &mut Command| {
        cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    let toolchain = format!("+{nightly}");
    if works(Command::new("cargo").args([&toolchain, "fuzz", "--version"])) {
        return Ok(());
    }
    if !works(Command::new("cargo").args([&toolchain, "--version"])) {
        return Err(format!(
            "fuzzing needs the nightly pinned in {TOOLCHAIN_FILE}: `rustup toolchain install {nightly} --profile minimal`"
        ));
    }
    println!("xtask: installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    crate::run_status(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"])).map_err(|e| {
        format!("cannot install cargo-fuzz ({e}); install it by hand with `cargo install cargo-fuzz`")
    })
}

/// One target's run; libFuzzer's output goes to `target/fuzz-corpus/TARGET/fuzz.log`.
fn run_one(nightly: &str, target: &str, seconds: u64) -> Result<Summary, String> {
    let dir = crate::target_dir().join("fuzz-corpus").join(target);
    let (corpus, artifacts) = (dir.join("corpus"), dir.join("artifacts"));
    for d in [&corpus, &artifacts] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let log_path = dir.join("fuzz.log");
    let log = File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let err_log = log.try_clone().map_err(|e| format!("{}: {e}", log_path.display()))?;
    println!("fuzz {target}: {seconds} s (log in {})", log_path.display());
    let root = crate::workspace_root();
    let seeds = root.join("fuzz/seeds").join(target);
    let status = Command::new("cargo")
        .current_dir(&root)
        .arg(format!("+{nightly}"))
        .args(["fuzz", "run", target])
        .arg(&corpus)
        .args(seeds.is_dir().then_some(&seeds))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .stdout(log)
        .stderr(err_log)
        .status()
        .map_err(|e| format!("cannot run cargo +{nightly} fuzz: {e}"))?;
    let text = std::fs::read_to_string(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let summary = Summary::parse(&text);
    if summary.crash.is_some() {
        print_tail(&text, &log_path);
    } else if !status.success() || summary.runs.is_none() {
        print_tail(&text, &log_path);
        return Err(format!("fuzz target {target} did not run ({status}); see {}", log_path.display()));
    }
    Ok(summary)
}

/// The end of a log, where the panic message or build error is.
fn print_tail(text: &str, path: &Path) {
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("--- last lines of {} ---", path.display());
    for line in &lines[lines.len().saturating_sub(30)..] {
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_clean_run() {
        let log = "INFO: Seed: 1\n#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                   #1048576\tpulse  cov: 250 ft: 900 corp: 120/4Kb lim: 4 exec/s: 17000 rss: 60Mb\n\
                   #1100000\tDONE   cov: 251 ft: 903 corp: 121/4Kb lim: 4 exec/s: 18000 rss: 61Mb\n\
                   Done 1100000 runs in 61 second(s)\n";
        let summary = Summary::parse(log);
        let expected = Summary {
            runs: Some(1_100_000),
            cov: Some(251),
            features: Some(903),
            corpus: Some(121),
            crash: None,
        };
        assert_eq!(summary, expected);
        assert_eq!(
            summary.line("dns_query", 60),
            "fuzz dns_query: 1100000 runs in 60 s, cov 251, ft 903, corpus 121, 0 crashes"
        );
    }

    #[test]
    fn the_pinned_nightly_is_read_from_its_file() {
        let pinned = nightly().unwrap();
        assert!(pinned.len() == "nightly-2026-10-30".len() && pinned.starts_with("nightly-20"), "{pinned}");
        assert_eq!(
            channel("[toolchain]\nchannel = \"nightly-2026-10-30\"\n").as_deref(),
            Some("nightly-2026-10-30")
        );
        assert_eq!(channel("channel = \"1.95.0\"\n"), None);
        assert_eq!(channel("# channel\n"), None);
    }

    #[test]
    fn summary_of_a_crash() {
        let log =
            "#300\tNEW    cov: 40 ft: 41 corp: 9/90b lim: 4 exec/s: 0 rss: 30Mb L: 3/3 MS: 1 ChangeBit-\n\
                   thread '<unnamed>' panicked at fuzz_targets/dns_zone.rs:9:5:\n\
                   ==1234== ERROR: libFuzzer: deadly signal\n\
                   artifact_prefix='t/'; Test unit written to t/crash-da39a3ee\n";
        let summary = Summary::parse(log);
        assert_eq!((summary.runs, summary.corpus), (Some(300), Some(9)));
        assert_eq!(summary.crash.as_deref(), Some("t/crash-da39a3ee"));
    }
}
