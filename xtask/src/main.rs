//! `cargo xtask`: builds mote images and runs them under Xen in an emulated machine.
//!
//! ```text
//! cargo xtask build vif-mote
//! cargo xtask build <app> [--debug] [--gdb] [--disk-support] [--hosted] [--zone FILE…] [--site DIR]
//!     [--disk IMAGE]
//! cargo xtask run <app> [--debug] [--gdb] [--disk-support] [--hosted] [--timeout SECS] [--disk IMAGE]
//!     [--zone FILE…] [--site DIR] [-- <guest command line>…]
//! cargo xtask disk <dir> -o <image>
//! cargo xtask debug <app> [--debug] [--hosted [--disk IMAGE]] [--batch FILE] [-- <guest command line>…]
//! cargo xtask symbolize <app> [--gdb] [--disk-support] [FILE]
//! cargo xtask xl <xl arguments>…
//! cargo xtask test [--integration-only|--hosted] [CASE-FILTER]
//! cargo xtask checksec [<app>]
//! cargo xtask bench [NAME…]
//! cargo xtask fuzz [TARGET] [--time S]
//! cargo xtask soak [--minutes N]
//! cargo xtask docs [--serve]
//! ```
//!
//! Modules: `build` (image + xl config), `assets` (Xen, dom0 kernel and initramfs), `harness`
//! (the QEMU machine), `agent` (client of dom0's agent), `guest` (one guest run in dom0),
//! `debug` (gdb attached to a guest),
//! `tests` (the test command and its integration cases), `bench` (benchmarks and their
//! report), `checksec` (an image's hardening, from its ELF file), `fuzz` (the `cargo fuzz`
//! targets), `soak` (sustained load and heap high-water marks), `disk` (content disk images),
//! `hosted` (`--hosted`: the app as a Linux process in a network namespace), `docs` (the book in docs/ and the API docs).

mod agent;
mod assets;
mod bench;
mod build;
mod checksec;
mod debug;
mod disk;
mod docs;
mod forward;
mod fuzz;
mod guest;
mod harness;
mod hosted;
mod monitor;
mod soak;
mod symbolize;
mod tests;
mod zones;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

const USAGE: &str = "\
usage:
  cargo xtask build vif-mote
      build host/vif-mote, the lean vif hotplug helper for dom0, into target/mote/vif-mote
      (static: it runs in any x86-64 Linux dom0)
  cargo xtask build <app> [--debug] [--gdb] [--disk-support] [--zone FILE…] [--site DIR] [--disk IMAGE]
      build apps/<app> into target/mote/<app>.elf (stripped), <app>.debug.elf, <app>.cfg and
      <app>.xml (libvirt); --disk names IMAGE in both, attached read-only as xvda (dns and web:
      their --disk-support image);
      --gdb links the gdb stub (gdb=wait|on on the command line) and writes target/mote/gdb/;
      --disk-support (dns, web) links the content-disk reader and writes <app>-disk.elf, .cfg…:
      the image that reads its zones or site from a disk (without it, one with a disk refuses
      to start);
      for dns, --zone embeds these master files instead of the sample zone (checked first);
      --site embeds DIR as the site of an app that serves one (web) instead of its sample
  cargo xtask run <app> [--debug] [--gdb] [--disk-support] [--timeout SECS] [--disk IMAGE]
          [--zone FILE…] [--site DIR] [-- <args>…]
      build, boot Xen + dom0 in QEMU, run the app with <args> as its command line,
      stream its console; exit 0 when it powers off. --disk attaches IMAGE read-only
      as the guest's first disk (xvda), and runs the --disk-support image
  cargo xtask build|run|debug <app> --hosted …
      the app as a Linux process (the runtime's hosted feature; needs root): built for
      x86_64-unknown-linux-gnu, run in network namespace mote-<app> on TAP device mote0 with
      ip=10.0.0.2/24, its ports relayed from 127.0.0.1 as above; --disk IMAGE becomes disk=IMAGE
      (a hosted dns or web always has the content-disk reader);
      debug runs it under gdb in the namespace; Ctrl-C asks it to shut down (SIGTERM)
  cargo xtask disk <dir> -o <image>
      write an ext4 image of <dir> (mkfs.ext4 -d) for --disk or an xl disk = [...]
  cargo xtask debug <app> [--debug] [--batch FILE] [-- <args>…]
      run the app with gdb=wait and attach gdb (with the image's symbols) to its stub;
      --batch runs gdb on a command file; the guest is destroyed when gdb quits
  cargo xtask symbolize <app> [--gdb] [--disk-support] [FILE]
      add function names and source lines to the addresses of a crash report (FILE or stdin,
      e.g. a console log from a Xen host) from target/mote/<app>.debug.elf (--gdb: of the
      image built with --gdb, target/mote/gdb/<app>.debug.elf; --disk-support: of
      <app>-disk.debug.elf)
  cargo xtask xl <args>…
      run `xl <args>` in the dom0 of the harness a running `cargo xtask run` started
  cargo xtask test [--integration-only|--hosted] [FILTER]
      host packages, host unit tests, then the integration cases (whose name contains FILTER)
      under Xen, then the hosted cases; --hosted: only the hosted cases
  cargo xtask checksec [<app>]
      the hardening of target/mote/<app>.elf (of every app without one; built when missing):
      each LOAD segment's rights and size, W^X, PIE/KASLR, the stacks' guard pages and the
      entropy source, read from its ELF headers and <app>.debug.elf's symbols
  cargo xtask bench [NAME…]
      run every benchmark (or those named: size, repro, echo, offload, dns, web, disk, boot,
      memory, density), print each figure with its baseline and ratio, write
      target/mote/bench/report.md and .json

  cargo xtask fuzz [TARGET] [--time S]
      run each fuzz target in fuzz/ (or TARGET) for S seconds (default 60; --seconds is the
      same) with cargo fuzz on the nightly pinned in fuzz/rust-toolchain.toml; corpus and
      crashes in target/fuzz-corpus/; fails on a crash
  cargo xtask soak [--minutes N]
      the echo, dns and web motes under sustained load from dom0 for N minutes (default 10):
      mote-agent checks on echo, dnsperf on dns, wrk on web, and each guest's heap high-water
      mark over time; fails on a failed answer, dnsperf losing more than 1 query in 1000, or
      a high-water mark that grows
  cargo xtask docs [--serve]
      check every relative link and #anchor of README.md and docs/, build the book (docs/,
      mdBook, installed when missing) into target/book, and the API docs with cargo doc,
      warnings as errors; --serve serves the book on 127.0.0.1 instead (mdbook serve)";

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
        "build" if rest == ["vif-mote"] => {
            let binary = assets::build_vif_mote()?;
            eprintln!(
                "mote: vif-mote: {} (install it in dom0 as /etc/xen/scripts/vif-mote)",
                binary.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        "build" => {
            let (rest, zones) = zones::take(rest)?;
            let args = parse_app_args(&rest, "build")?;
            if !args.guest_args.is_empty() {
                return Err("`build` takes no guest arguments".into());
            }
            let env = build_env(&args, &zones)?;
            if args.hosted {
                if args.disk.is_some() {
                    return Err("`build --hosted` takes no --disk: give it to `run --hosted`".into());
                }
                hosted::build(&args.app, args.flavor, &env)?;
            } else {
                // An image given a content disk is the one that reads it.
                let image = build::build_with(&args.app, run_flavor(&args)?, &env)?;
                if let Some(disk) = &args.disk {
                    let disk = disk.canonicalize().map_err(|e| format!("--disk {}: {e}", disk.display()))?;
                    let disk =
                        disk.to_str().ok_or_else(|| format!("--disk {}: not UTF-8", disk.display()))?;
                    let xml = build::write_configs(&image, Some(disk))?;
                    eprintln!(
                        "mote: {}: {disk} attached read-only as xvda in {} and {}",
                        args.app,
                        image.cfg.display(),
                        xml.display()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        "run" => {
            let (rest, zones) = zones::take(rest)?;
            let args = parse_app_args(&rest, "run")?;
            let env = build_env(&args, &zones)?;
            if args.hosted {
                return hosted::run(&hosted_options(&args, None), &env);
            }
            cmd_run(&args, &env)
        }
        "disk" => {
            let (dir, out) = parse_disk_args(rest)?;
            disk::cmd(&dir, &out)?;
            Ok(ExitCode::SUCCESS)
        }
        "debug" => {
            let (batch, rest) = take_batch(rest)?;
            let args = parse_app_args(&rest, "debug")?;
            if args.hosted {
                return hosted::run(&hosted_options(&args, Some(batch.as_deref())), &build_env(&args, &[])?);
            }
            if args.disk.is_some() {
                return Err("`debug --disk` is for --hosted; a guest under gdb has no disk".into());
            }
            debug::run(&debug::DebugOptions {
                app: args.app,
                dev: args.flavor.debug,
                batch,
                guest_args: args.guest_args,
            })
        }
        "symbolize" => cmd_symbolize(rest),
        "xl" => cmd_xl(rest),
        "test" => {
            let mut opts = tests::TestOptions { integration_only: false, hosted_only: false, filter: None };
            for arg in rest {
                match arg.as_str() {
                    "--integration-only" => opts.integration_only = true,
                    "--hosted" => opts.hosted_only = true,
                    a if a.starts_with('-') => return Err(format!("unknown option {a:?}\n{USAGE}")),
                    a if opts.filter.is_none() => opts.filter = Some(a.to_owned()),
                    a => return Err(format!("unexpected argument {a:?}\n{USAGE}")),
                }
            }
            Ok(if tests::run(&opts)? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        "checksec" => {
            let apps = match rest {
                [] => build::apps()?,
                [app] if !app.starts_with('-') => vec![app.clone()],
                _ => return Err(format!("usage: cargo xtask checksec [<app>]\n{USAGE}")),
            };
            Ok(if checksec::run(&apps) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        "bench" => Ok(if bench::run(rest)? { ExitCode::SUCCESS } else { ExitCode::FAILURE }),
        "fuzz" => {
            let (target, seconds) = parse_fuzz_args(rest)?;
            Ok(if fuzz::run(target.as_deref(), seconds)? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        "soak" => {
            let minutes = match rest {
                [] => 10,
                [flag, n] if flag == "--minutes" => {
                    n.parse().ok().filter(|&n| n > 0).ok_or_else(|| format!("bad --minutes {n:?}"))?
                }
                _ => return Err(format!("usage: cargo xtask soak [--minutes N]\n{USAGE}")),
            };
            Ok(if soak::run(minutes)? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        "docs" => {
            match rest {
                [] => docs::run(false)?,
                [flag] if flag == "--serve" => docs::run(true)?,
                _ => return Err(format!("usage: cargo xtask docs [--serve]\n{USAGE}")),
            }
            Ok(ExitCode::SUCCESS)
        }
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

/// The build-script variables of `--zone` (dns only; the files checked first) and `--site`.
fn build_env(args: &AppArgs, zones: &[PathBuf]) -> Result<Vec<(&'static str, std::ffi::OsString)>, String> {
    let mut env = Vec::new();
    if !zones.is_empty() {
        if args.app != "dns" {
            return Err(format!("--zone is an option of the dns app, not of {}", args.app));
        }
        env.push((zones::ENV, zones::check(zones)?));
    }
    if let Some(site) = &args.site {
        env.push(build::site_env(&args.app, site)?);
    }
    Ok(env)
}

/// `run`'s or `debug`'s arguments for [`hosted::run`] (`gdb`: under gdb, with that command file).
fn hosted_options<'a>(args: &'a AppArgs, gdb: Option<Option<&'a std::path::Path>>) -> hosted::RunOptions<'a> {
    hosted::RunOptions {
        app: &args.app,
        flavor: args.flavor,
        timeout: args.timeout,
        disk: args.disk.as_deref(),
        guest_args: &args.guest_args,
        gdb,
    }
}

/// What `build` and `run` were asked.
#[derive(Debug)]
struct AppArgs {
    app: String,
    /// `--debug`, `--gdb`.
    flavor: build::Flavor,
    timeout: Option<Duration>,
    /// A content disk image to attach (`run --disk`), or to name in the configs (`build --disk`).
    disk: Option<PathBuf>,
    /// `--site DIR`: the site to embed.
    site: Option<PathBuf>,
    /// `--hosted`: the app as a Linux process ([`hosted`]).
    hosted: bool,
    guest_args: Vec<String>,
}

/// Parses `<app> [--debug] [--gdb] [--hosted] [--site DIR] [--timeout SECS] [--disk IMAGE] [-- args…]`
/// (`--gdb` not for `debug`, which always has the stub; `--timeout` for `run`, `--disk` for `run`,
/// `build` and `debug`).
fn parse_app_args(args: &[String], command: &str) -> Result<AppArgs, String> {
    let run = command == "run";
    let mut app = None;
    let mut flavor = build::Flavor::default();
    let mut timeout = None;
    let mut disk = None;
    let mut site = None;
    let mut hosted = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--" => break,
            "--debug" => flavor.debug = true,
            "--gdb" if command != "debug" => flavor.gdb = true,
            "--disk-support" if command != "debug" => flavor.disk = true,
            "--timeout" if run => {
                let secs = iter.next().ok_or("--timeout needs a number of seconds")?;
                let secs: u64 =
                    secs.parse().map_err(|_| format!("--timeout: bad number of seconds {secs:?}"))?;
                timeout = Some(Duration::from_secs(secs));
            }
            "--disk" if run || command == "debug" || command == "build" => {
                disk = Some(PathBuf::from(iter.next().ok_or("--disk needs an image file")?))
            }
            "--site" => site = Some(PathBuf::from(iter.next().ok_or("--site needs a directory")?)),
            "--hosted" => hosted = true,
            a if a.starts_with('-') => return Err(format!("unknown option {a:?}\n{USAGE}")),
            a if app.is_none() => app = Some(a.to_owned()),
            a => return Err(format!("unexpected argument {a:?} (guest arguments go after `--`)\n{USAGE}")),
        }
    }
    let app = app.ok_or_else(|| format!("which app?\n{USAGE}"))?;
    Ok(AppArgs { app, flavor, timeout, disk, site, hosted, guest_args: iter.cloned().collect() })
}

/// Parses `<dir> -o <image>`.
fn parse_disk_args(args: &[String]) -> Result<(PathBuf, PathBuf), String> {
    match args {
        [dir, o, out] if o == "-o" => Ok((dir.into(), out.into())),
        [o, out, dir] if o == "-o" => Ok((dir.into(), out.into())),
        _ => Err(format!("`disk` takes a directory and -o IMAGE\n{USAGE}")),
    }
}

/// Takes `--batch FILE` out of `debug`'s arguments (before any `--`); the last one counts.
fn take_batch(args: &[String]) -> Result<(Option<PathBuf>, Vec<String>), String> {
    let (rest, files) = take_paths(args, "--batch", "a gdb command file")?;
    Ok((files.into_iter().last(), rest))
}

/// Splits `NAME FILE` and `NAME=FILE` pairs off `args`: the other arguments, in order, and the
/// files. Arguments after `--` (the guest's) are left alone.
pub fn take_paths(args: &[String], name: &str, what: &str) -> Result<(Vec<String>, Vec<PathBuf>), String> {
    let (mut rest, mut paths) = (Vec::new(), Vec::new());
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            rest.push(arg.clone());
            rest.extend(iter.by_ref().cloned());
        } else if arg == name {
            paths.push(PathBuf::from(iter.next().ok_or_else(|| format!("{name} needs {what}"))?));
        } else if let Some(path) = arg.strip_prefix(name).and_then(|p| p.strip_prefix('=')) {
            paths.push(PathBuf::from(path));
        } else {
            rest.push(arg.clone());
        }
    }
    Ok((rest, paths))
}

/// Parses `[TARGET] [--seconds N]`.
fn parse_fuzz_args(args: &[String]) -> Result<(Option<String>, u64), String> {
    let mut target = None;
    let mut seconds = 60;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            flag @ ("--time" | "--seconds") => {
                let n = iter.next().ok_or_else(|| format!("{flag} needs a number of seconds"))?;
                seconds =
                    n.parse().ok().filter(|&n| n > 0).ok_or_else(|| format!("{flag}: bad number {n:?}"))?;
            }
            a if a.starts_with('-') => return Err(format!("unknown option {a:?}\n{USAGE}")),
            a if target.is_none() => target = Some(a.to_owned()),
            a => return Err(format!("unexpected argument {a:?}\n{USAGE}")),
        }
    }
    Ok((target, seconds))
}

/// `cargo xtask run`.
fn cmd_run(args: &AppArgs, env: &[(&str, std::ffi::OsString)]) -> Result<ExitCode, String> {
    let AppArgs { app, timeout, guest_args, .. } = args;
    let (app, timeout) = (app.as_str(), *timeout);
    guest::extra_value(guest_args)?;
    let flavor = run_flavor(args)?;
    if let Some(disk) = &args.disk {
        if !disk.is_file() {
            return Err(format!("--disk {}: no such file", disk.display()));
        }
    }
    let image = build::build_with(app, flavor, env)?;
    assets::install_host_deps()?;
    let assets = assets::ensure()?;
    let mut forwards = forward::plan(&image.meta.forward)?;
    let harness = harness::Harness::boot(&assets, &forward::tcp_ports(&forwards))?;
    let agent = harness.agent();
    guest::upload(&agent, &image)?;
    let mut xl = Vec::new();
    if let Some(disk) = &args.disk {
        xl.push(disk::upload(&agent, disk, &format!("{app}.img"), disk::RUN_LOOP)?);
    }
    let opts = guest::Options { timeout, echo: true, clock: harness.started(), xl };
    let mut stdout = std::io::stdout();
    let mut relays = forward::Relays::default();
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

/// The flavor `run` (and `build --disk`) builds: the one asked for, with the content-disk reader when a disk is
/// attached to an app that reads content disks (another app, like selftest, gets the disk as
/// it is).
fn run_flavor(args: &AppArgs) -> Result<build::Flavor, String> {
    let mut flavor = args.flavor;
    if args.disk.is_some() && build::app_meta(&args.app)?.content.is_some() {
        flavor.disk = true;
    }
    Ok(flavor)
}

/// The guest's IPv4 address from the runtime's `net: A.B.C.D/N …` log line.
pub fn guest_ipv4(line: &str) -> Option<std::net::Ipv4Addr> {
    let rest = &line[line.find("net: ")? + 5..];
    rest.split('/').next()?.parse().ok()
}

/// `cargo xtask symbolize <app> [--gdb] [FILE]`.
fn cmd_symbolize(args: &[String]) -> Result<ExitCode, String> {
    let flags = ["--gdb", "--disk-support"];
    let flavor = build::Flavor {
        gdb: args.iter().any(|a| a == flags[0]),
        disk: args.iter().any(|a| a == flags[1]),
        ..build::Flavor::RELEASE
    };
    let rest: Vec<&String> = args.iter().filter(|a| !flags.contains(&a.as_str())).collect();
    let (app, file) = match rest[..] {
        [app] => (app, None),
        [app, file] => (app, Some(file)),
        _ => {
            return Err(format!(
                "`symbolize` takes an app, --gdb, --disk-support and at most one file\n{USAGE}"
            ))
        }
    };
    build::app_meta(app)?;
    let elf = build::out_dir(flavor).join(format!("{}.debug.elf", flavor.file_stem(app)));
    if !elf.is_file() {
        let flags: String =
            args.iter().filter(|a| flags.contains(&a.as_str())).map(|a| format!(" {a}")).collect();
        return Err(format!("no {} (build it with `cargo xtask build {app}{flags}`)", elf.display()));
    }
    let text = match file {
        Some(path) => std::fs::read(path).map_err(|e| format!("{path}: {e}"))?,
        None => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .map_err(|e| format!("stdin: {e}"))?;
            bytes
        }
    };
    let symbols = symbolize::Symbolizer::new(&elf, &workspace_root());
    let mut stdout = std::io::stdout().lock();
    for line in String::from_utf8_lossy(&text).lines() {
        let _ = writeln!(stdout, "{}", symbols.annotate(line.trim_end_matches('\r')));
    }
    Ok(ExitCode::SUCCESS)
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

/// The cargo that runs xtask (or `cargo`), in the workspace root.
pub fn cargo() -> Command {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.current_dir(workspace_root());
    cargo
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
        let args = parse_app_args(&strings(&["hello", "--debug", "--", "a=b", "--x"]), "run").unwrap();
        assert_eq!(
            (args.app.as_str(), args.flavor, args.timeout),
            ("hello", build::Flavor { debug: true, ..build::Flavor::RELEASE }, None)
        );
        assert_eq!(args.guest_args, ["a=b", "--x"]);
        let args = parse_app_args(&strings(&["hello", "--timeout", "30"]), "run").unwrap();
        assert_eq!(args.timeout, Some(Duration::from_secs(30)));
        assert!(args.guest_args.is_empty());
        let args = parse_app_args(&strings(&["web", "--disk", "site.img"]), "run").unwrap();
        assert_eq!(args.disk, Some(PathBuf::from("site.img")));
        assert_eq!(
            run_flavor(&args).unwrap(),
            build::Flavor::DISK,
            "a disk is read by the disk-capable image"
        );
        let args = parse_app_args(&strings(&["selftest", "--disk", "raw.img"]), "run").unwrap();
        assert_eq!(run_flavor(&args).unwrap(), build::Flavor::RELEASE, "selftest reads raw disks as it is");
        let args = parse_app_args(&strings(&["dns", "--disk-support"]), "build").unwrap();
        assert_eq!(args.flavor, build::Flavor::DISK);
        assert!(parse_app_args(&strings(&["web", "--disk-support"]), "debug").is_err());

        assert!(parse_app_args(&strings(&["web", "--disk"]), "run").is_err());
        let args = parse_app_args(&strings(&["web", "--disk", "site.img"]), "build").unwrap();
        assert_eq!(args.disk, Some(PathBuf::from("site.img")));
        assert!(parse_app_args(&strings(&["web", "--disk", "site.img"]), "symbolize").is_err());
        let args = parse_app_args(&strings(&["web", "--site", "/srv/www"]), "build").unwrap();
        assert_eq!(args.site, Some(PathBuf::from("/srv/www")));
        assert!(parse_app_args(&strings(&["web", "--site"]), "build").is_err());
        assert!(parse_app_args(&strings(&["hello", "extra"]), "run").is_err());
        assert!(parse_app_args(&strings(&["--debug"]), "run").is_err());
        assert!(parse_app_args(&strings(&["hello", "--timeout", "1"]), "build").is_err());
        let args = parse_app_args(&strings(&["web", "--gdb"]), "build").unwrap();
        assert_eq!(args.flavor, build::Flavor { gdb: true, ..build::Flavor::RELEASE });
        assert_eq!(
            parse_app_args(&strings(&["web", "--gdb"]), "run").unwrap().flavor,
            build::Flavor { gdb: true, ..build::Flavor::RELEASE }
        );
        let args = parse_app_args(&strings(&["web", "--hosted", "--", "ip=10.0.0.9/24"]), "run").unwrap();
        assert!(args.hosted);
        assert_eq!(args.guest_args, ["ip=10.0.0.9/24"]);
        assert!(parse_app_args(&strings(&["web", "--hosted"]), "debug").unwrap().hosted);
        assert!(!parse_app_args(&strings(&["web"]), "run").unwrap().hosted);
        // `debug` always has the stub: no flag for it.
        assert!(parse_app_args(&strings(&["web", "--gdb"]), "debug").is_err());
    }

    #[test]
    fn disk_args() {
        let want = (PathBuf::from("site"), PathBuf::from("site.img"));
        assert_eq!(parse_disk_args(&strings(&["site", "-o", "site.img"])).unwrap(), want);
        assert_eq!(parse_disk_args(&strings(&["-o", "site.img", "site"])).unwrap(), want);
        assert!(parse_disk_args(&strings(&["site"])).is_err());
        assert!(parse_disk_args(&strings(&["site", "site.img"])).is_err());
    }

    #[test]
    fn debug_args() {
        let (batch, rest) = take_batch(&strings(&["web", "--batch", "t.gdb", "--", "--batch", "x"])).unwrap();
        assert_eq!(batch, Some(PathBuf::from("t.gdb")));
        assert_eq!(rest, ["web", "--", "--batch", "x"]);
        assert!(take_batch(&strings(&["web", "--batch"])).is_err());
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
