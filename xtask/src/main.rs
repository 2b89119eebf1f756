//! `cargo xtask`: builds mote images and runs them under Xen in an emulated machine.
//!
//! ```text
//! cargo xtask build <app> [--debug] [--site DIR]
//! cargo xtask run <app> [--debug] [--site DIR] [--timeout SECS] [-- <guest command line>…]
//! cargo xtask xl <xl arguments>…
//! cargo xtask test [--integration-only] [CASE-FILTER]
//! cargo xtask bench [echo|web]
//! cargo xtask fuzz [TARGET] [--seconds N]
//! ```
//!
//! Modules: `build` (image + xl config), `assets` (Xen, dom0 kernel and initramfs), `harness`
//! (the QEMU machine), `agent` (client of dom0's agent), `guest` (one guest run in dom0),
//! `tests` (the test command and its integration cases), `bench` (benchmarks against a Linux
//! guest; `bench_web` the web server's), `fuzz` (the `cargo fuzz` targets).

mod agent;
mod assets;
mod bench;
mod bench_web;
mod build;
mod forward;
mod fuzz;
mod guest;
mod harness;
mod symbolize;
mod tests;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

const USAGE: &str = "\
usage:
  cargo xtask build <app> [--debug] [--site DIR]
      build apps/<app> into target/mote/<app>.elf (stripped), <app>.debug.elf and <app>.cfg;
      --site embeds DIR as the site of an app that serves one (web) instead of its sample
  cargo xtask run <app> [--debug] [--site DIR] [--timeout SECS] [-- <args>…]
      build, boot Xen + dom0 in QEMU, run the app with <args> as its command line,
      stream its console; exit 0 when it powers off
  cargo xtask xl <args>…
      run `xl <args>` in the dom0 of the harness a running `cargo xtask run` started
  cargo xtask test [--integration-only] [FILTER]
      host packages, host unit tests, then the integration cases (whose name contains FILTER)
      under Xen
  cargo xtask bench [echo|web]
      measure the echo mote against a Linux PVH guest in the harness (web: apps/web against
      nginx in that guest, with wrk) and print both and the ratio

  cargo xtask fuzz [TARGET] [--seconds N]
      run each fuzz target in fuzz/ (or TARGET) for N seconds (default 60) with
      cargo +nightly fuzz; corpus and crashes in target/fuzz-corpus/; fails on a crash";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result<ExitCode, String> {
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    match command.as_str() {
        "build" => {
            let args = parse_app_args(rest, false)?;
            if !args.guest_args.is_empty() {
                return Err("`build` takes no guest arguments".into());
            }
            build::build_with(&args.app, args.debug, args.site.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        "run" => cmd_run(&parse_app_args(rest, true)?),
        "xl" => cmd_xl(rest),
        "test" => {
            let mut opts = tests::TestOptions { integration_only: false, filter: None };
            for arg in rest {
                match arg.as_str() {
                    "--integration-only" => opts.integration_only = true,
                    a if a.starts_with('-') => return Err(format!("unknown option {a:?}\n{USAGE}")),
                    a if opts.filter.is_none() => opts.filter = Some(a.to_owned()),
                    a => return Err(format!("unexpected argument {a:?}\n{USAGE}")),
                }
            }
            Ok(if tests::run(&opts)? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        "bench" => {
            if rest.len() > 1 {
                return Err(format!("`bench` takes at most one benchmark name\n{USAGE}"));
            }
            Ok(if bench::run(rest.first().map(String::as_str))? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        "fuzz" => {
            let (target, seconds) = parse_fuzz_args(rest)?;
            Ok(if fuzz::run(target.as_deref(), seconds)? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

/// What `build` and `run` were asked.
#[derive(Debug, PartialEq, Eq)]
struct AppArgs {
    app: String,
    debug: bool,
    timeout: Option<Duration>,
    /// `--site DIR`: the site to embed.
    site: Option<PathBuf>,
    guest_args: Vec<String>,
}

/// Parses `<app> [--debug] [--site DIR] [--timeout SECS] [-- args…]`.
fn parse_app_args(args: &[String], allow_timeout: bool) -> Result<AppArgs, String> {
    let mut app = None;
    let mut debug = false;
    let mut timeout = None;
    let mut site = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--" => break,
            "--debug" => debug = true,
            "--timeout" if allow_timeout => {
                let secs = iter.next().ok_or("--timeout needs a number of seconds")?;
                let secs: u64 =
                    secs.parse().map_err(|_| format!("--timeout: bad number of seconds {secs:?}"))?;
                timeout = Some(Duration::from_secs(secs));
            }
            "--site" => site = Some(PathBuf::from(iter.next().ok_or("--site needs a directory")?)),
            a if a.starts_with('-') => return Err(format!("unknown option {a:?}\n{USAGE}")),
            a if app.is_none() => app = Some(a.to_owned()),
            a => return Err(format!("unexpected argument {a:?} (guest arguments go after `--`)\n{USAGE}")),
        }
    }
    let app = app.ok_or_else(|| format!("which app?\n{USAGE}"))?;
    Ok(AppArgs { app, debug, timeout, site, guest_args: iter.cloned().collect() })
}

/// Parses `[TARGET] [--seconds N]`.
fn parse_fuzz_args(args: &[String]) -> Result<(Option<String>, u64), String> {
    let mut target = None;
    let mut seconds = 60;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--seconds" => {
                let n = iter.next().ok_or("--seconds needs a number")?;
                seconds = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--seconds: bad number {n:?}"))?;
            }
            a if a.starts_with('-') => return Err(format!("unknown option {a:?}\n{USAGE}")),
            a if target.is_none() => target = Some(a.to_owned()),
            a => return Err(format!("unexpected argument {a:?}\n{USAGE}")),
        }
    }
    Ok((target, seconds))
}

/// `cargo xtask run`.
fn cmd_run(args: &AppArgs) -> Result<ExitCode, String> {
    let (app, timeout, guest_args) = (args.app.as_str(), args.timeout, &args.guest_args);
    guest::extra_value(guest_args)?;
    let image = build::build_with(app, args.debug, args.site.as_deref())?;
    assets::install_host_deps()?;
    let assets = assets::ensure()?;
    let mut forwards = forward::plan(&image.meta.forward)?;
    let harness = harness::Harness::boot(&assets, &forward::tcp_ports(&forwards))?;
    let agent = harness.agent();
    guest::upload(&agent, &image)?;
    let opts = guest::Options { timeout, echo: true, clock: harness.started(), xl: Vec::new() };
    let mut stdout = std::io::stdout();
    let mut relays = Vec::new();
    let run = guest::run(&agent, &image, guest_args, &opts, &mut |line| {
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
        // Once the guest says its address, the forwarded ports lead to it.
        if let Some(ip) = guest_ipv4(line).filter(|_| relays.is_empty()) {
            relays = forward::start(&agent, &mut forwards, app, ip);
            if let Some(command) = &image.meta.try_command {
                eprintln!("mote: try `{command}`");
            }
        }
    });
    drop(relays);
    drop(harness);
    match run.result {
        Ok(guest::Reason::Poweroff) => {
            println!("mote: {app} powered off");
            Ok(ExitCode::SUCCESS)
        }
        Ok(reason) => {
            println!("mote: {app} {}", reason.verb());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            println!("mote: {app} failed: {e}");
            eprintln!("mote: serial log of the harness: {}", harness::log_file().display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The guest's IPv4 address from the runtime's `net: A.B.C.D/N …` log line.
fn guest_ipv4(line: &str) -> Option<std::net::Ipv4Addr> {
    let rest = &line[line.find("net: ")? + 5..];
    rest.split('/').next()?.parse().ok()
}

/// `cargo xtask xl`.
fn cmd_xl(args: &[String]) -> Result<ExitCode, String> {
    let port_file = harness::port_file();
    let port: u16 = match std::fs::read_to_string(&port_file) {
        Ok(text) => {
            text.trim().parse().map_err(|_| format!("{} holds no port number", port_file.display()))?
        }
        Err(_) => return Err("no harness is running (start one with `cargo xtask run <app>`)".into()),
    };
    let agent = agent::Agent::new(port);
    agent.ping().map_err(|e| {
        format!("{} names port {port}, but no harness answers there (stale file?): {e}", port_file.display())
    })?;
    let command: Vec<String> = args.iter().map(|a| agent::sh_quote(a)).collect();
    let (tx, events) = std::sync::mpsc::channel();
    let _exec = agent.spawn(&format!("exec xl {} 2>&1", command.join(" ")), (), tx)?;
    let mut stdout = std::io::stdout();
    for (_, event) in events {
        match event {
            agent::Event::Output(chunk) => {
                let _ = stdout.write_all(&chunk);
                let _ = stdout.flush();
            }
            agent::Event::Exit(status) => return Ok(ExitCode::from(status.clamp(0, 255) as u8)),
            agent::Event::Failed(message) => return Err(format!("xl: {message}")),
        }
    }
    Err("xl: the agent stream ended unexpectedly".into())
}

/// The workspace root (xtask's parent).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// `target/mote`, where images, configs and harness files go.
pub fn mote_dir() -> PathBuf {
    target_dir().join("mote")
}

/// Runs `command` with inherited stdio; an error unless it exits with status 0.
pub fn run_status(command: &mut Command) -> Result<(), String> {
    let shown = format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        command.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );
    let status = command.status().map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

#[cfg(test)]
mod cli_tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn guest_address_is_read_from_the_net_line() {
        assert_eq!(
            guest_ipv4("[INFO  mote::net] net: 10.0.0.100/24 via DHCP, gateway 10.0.0.1"),
            Some([10, 0, 0, 100].into())
        );
        assert_eq!(guest_ipv4("net: up"), None);
        assert_eq!(guest_ipv4("Hello, world!"), None);
    }

    #[test]
    fn app_args() {
        let args = parse_app_args(&strings(&["hello", "--debug", "--", "a=b", "--x"]), true).unwrap();
        assert_eq!((args.app.as_str(), args.debug, args.timeout, args.site), ("hello", true, None, None));
        assert_eq!(args.guest_args, ["a=b", "--x"]);
        let args = parse_app_args(&strings(&["hello", "--timeout", "30"]), true).unwrap();
        assert_eq!(args.timeout, Some(Duration::from_secs(30)));
        assert!(args.guest_args.is_empty());
        let args = parse_app_args(&strings(&["web", "--site", "/srv/www"]), false).unwrap();
        assert_eq!(args.site, Some(PathBuf::from("/srv/www")));
        assert!(parse_app_args(&strings(&["web", "--site"]), false).is_err());
        assert!(parse_app_args(&strings(&["hello", "extra"]), true).is_err());
        assert!(parse_app_args(&strings(&["--debug"]), true).is_err());
        assert!(parse_app_args(&strings(&["hello", "--timeout", "1"]), false).is_err());
    }

    #[test]
    fn fuzz_args() {
        assert_eq!(parse_fuzz_args(&[]).unwrap(), (None, 60));
        assert_eq!(
            parse_fuzz_args(&strings(&["dns_zone", "--seconds", "5"])).unwrap(),
            (Some("dns_zone".into()), 5)
        );
        assert!(parse_fuzz_args(&strings(&["--seconds", "0"])).is_err());
        assert!(parse_fuzz_args(&strings(&["a", "b"])).is_err());
    }
}
