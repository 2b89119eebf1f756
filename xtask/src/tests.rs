//! `cargo xtask test`: host unit tests, then integration cases run under real Xen in one
//! harness. The cases sit in a module per area (boot, security, net, web, dns, disk, content,
//! soak, gdb); [`cases`] lists them in the order they run.

use crate::agent::Agent;
use crate::assets;
use crate::build::{self, Image};
use crate::forward;
use crate::guest::{self, Reason};
use crate::harness::{self, Harness};
use crate::{run_status, workspace_root};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

mod boot;
mod content;
mod disk;
mod dns;
mod gdb;
mod hosted;
mod isn;
mod net;
mod security;
mod soak;
mod web;

/// A case that has not ended by then fails (and its domain is destroyed). The longest, 1000
/// web connections, took 124 s with five other harnesses sharing the host's two cores.
const CASE_TIMEOUT: Duration = Duration::from_secs(300);
/// Console lines shown with a failure.
const EXCERPT_LINES: usize = 40;
/// Longest console line shown in full in an excerpt.
const EXCERPT_WIDTH: usize = 300;

/// One check of a case's console text.
pub enum Check {
    /// The console contains this text somewhere.
    Contains(&'static str),
    /// The console has a line exactly equal to this.
    Line(&'static str),
    /// A named check in code; gets the console and the image (for its configuration).
    Custom(&'static str, fn(&str, &Image) -> Result<(), String>),
}

/// An integration case: boot `app` with `args`, expect `reason` and every check to pass.
pub struct Case {
    pub name: &'static str,
    pub app: &'static str,
    pub args: &'static [&'static str],
    /// Built with the gdb stub (`cargo xtask build --gdb`), for cases that use `gdb=`.
    pub gdb: bool,
    /// Built with the content-disk reader (`cargo xtask build --disk-support`), for cases
    /// that attach a content disk the app reads.
    pub disk: bool,
    /// Overrides of the app's xl config for this case (`key=value`, e.g. a `vif`).
    pub xl: &'static [&'static str],
    pub reason: Reason,
    pub checks: Vec<Check>,
    /// Acts on the running guest from dom0 (`xl shutdown`, `xenstore-write`, …) and checks
    /// what it sees; `None` lets the guest run on its own.
    pub driver: Option<DriverFn>,
}

impl Case {
    /// How its app's image is built.
    fn flavor(&self) -> build::Flavor {
        build::Flavor { gdb: self.gdb, disk: self.disk, ..build::Flavor::RELEASE }
    }
}

/// A case's driver; an `Err` fails the case and destroys the domain.
pub type DriverFn = fn(&mut Driver) -> Result<(), String>;

/// What a case's driver works with: the guest's console as it arrives, and dom0.
pub struct Driver {
    pub agent: Agent,
    /// The domain's name (the app's).
    pub name: &'static str,
    /// The unstripped copy of the image the guest runs (for gdb).
    pub debug_elf: std::path::PathBuf,
    lines: mpsc::Receiver<String>,
    /// The app's forwarded ports, for the first case of that app that runs (so a case that
    /// uses them comes first among its app's cases).
    pub forwards: Vec<forward::Plan>,
}

/// How long a driver waits for one console line or dom0 command.
const DRIVER_WAIT: Duration = Duration::from_secs(30);

impl Driver {
    /// Waits for the next console line containing `text` (lines before it are skipped);
    /// returns the line.
    pub fn wait_line(&mut self, text: &str) -> Result<String, String> {
        self.wait_line_of(text, &[text])
    }

    /// [`Driver::wait_line`] for the next line containing any of `texts` (`what` names them
    /// in the error).
    pub fn wait_line_of(&mut self, what: &str, texts: &[&str]) -> Result<String, String> {
        let deadline = Instant::now() + DRIVER_WAIT;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if texts.iter().any(|t| line.contains(t)) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!("no console line containing {what:?} within {DRIVER_WAIT:?}"))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("the guest ended before printing {what:?}"))
                }
            }
        }
    }

    /// [`Driver::wait_line`] for up to four driver waits, for a guest's first lines: on a
    /// loaded host, creating the domain (hotplug scripts in the emulated dom0) has taken over
    /// a minute.
    pub fn wait_first_line(&mut self, text: &str) -> Result<String, String> {
        let mut tries = 0;
        loop {
            match self.wait_line(text) {
                Err(e) if e.starts_with("no console line") && tries < 3 => tries += 1,
                result => return result,
            }
        }
    }

    /// Runs a shell command in dom0; its output, or an error naming it when it fails.
    pub fn dom0(&self, command: &str) -> Result<String, String> {
        self.agent.run_ok(command, DRIVER_WAIT)
    }

    /// The guest's domain id, from `xl domid`.
    pub fn domid(&self) -> Result<u32, String> {
        let out = self.dom0(&format!("xl domid {}", self.name))?;
        out.trim().parse().map_err(|_| format!("`xl domid {}` printed {out:?}", self.name))
    }
}

/// The integration cases, in the order they run. Each area's module holds its cases; an area
/// that runs in more than one place has a list for each, for the order matters (an app's
/// forwarded ports go to its first case that runs).
pub fn cases() -> Vec<Case> {
    [
        boot::reports(),
        security::protection(),
        boot::services(),
        security::random(),
        boot::with_dom0(),
        disk::cases(),
        net::cases(),
        security::isns(),
        web::cases(),
        dns::cases(),
        net::attached_again(),
        soak::cases(),
        content::cases(),
        gdb::cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Longest a dom0 network check may take (the 50 MB echo takes ~20–45 s under TCG).
const NET_CHECK_LIMIT: Duration = Duration::from_secs(100);

/// Runs a dom0 check and shows its report under the case.
fn dom0_check(d: &Driver, command: &str) -> Result<(), String> {
    let out = d.agent.run_ok(command, NET_CHECK_LIMIT)?;
    for line in out.lines().filter(|l| l.contains("-check:") || l.contains("packets transmitted")) {
        println!("    {}", line.trim());
    }
    Ok(())
}

fn shut_down(d: &Driver) -> Result<(), String> {
    d.dom0(&format!("xl shutdown -w {}", d.name)).map(drop)
}

/// A page only the web cases' site has, and its text.
const SITE_CHECK: (&str, &str) = ("site-check.txt", "this site was given with --site\n");

/// Copies the files under `from` to `to`, leaving alone those already the same (so that the
/// app is not rebuilt for nothing).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> Result<(), String> {
    let entries = std::fs::read_dir(from).map_err(|e| format!("read {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("read {}: {e}", from.display()))?;
        let kind = entry.file_type().map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        } else if kind.is_file() {
            let data =
                std::fs::read(entry.path()).map_err(|e| format!("read {}: {e}", entry.path().display()))?;
            write_if_changed(&to.join(entry.file_name()), &data)?;
        }
    }
    Ok(())
}

fn write_if_changed(path: &std::path::Path, data: &[u8]) -> Result<(), String> {
    if std::fs::read(path).is_ok_and(|old| old == data) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, data).map_err(|e| format!("write {}: {e}", path.display()))
}

/// The SHA-256 of `data` in hex, by the host's `sha256sum`.
fn host_sha256(data: &[u8]) -> Result<String, String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sha256sum: {e}"))?;
    child.stdin.take().expect("piped").write_all(data).map_err(|e| format!("sha256sum: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("sha256sum: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().next().map(str::to_owned).ok_or_else(|| format!("sha256sum printed {text:?}"))
}

/// The guest stopped through its own error path, not a panic (an allocation failure panics).
fn check_no_panic(console: &str, _: &Image) -> Result<(), String> {
    match console.lines().find(|l| l.contains("PANIC")) {
        Some(line) => Err(format!("the guest panicked: {line}")),
        None => Ok(()),
    }
}

/// Starts the app's forwards to the guest at the address in its console line `… on <ip>`
/// (`marker` names that line); the relays run while the returned handles live.
fn forward_from_host(d: &mut Driver, marker: &str) -> Result<forward::Relays, String> {
    let line = d.wait_line(marker)?;
    let ip: std::net::Ipv4Addr = line
        .split(|c: char| c.is_whitespace() || c == '/')
        .find_map(|word| word.parse().ok())
        .ok_or_else(|| format!("no address in {line:?}"))?;
    let wanted = d.forwards.len();
    let relays = forward::start(&d.agent, &mut d.forwards, d.name, ip);
    if wanted == 0 {
        return Err(format!("{} has no forwarded ports (see the harness's lines above)", d.name));
    }
    if relays.len() != wanted {
        return Err(format!("{} of {wanted} forwards started", relays.len()));
    }
    Ok(relays)
}

/// Runs a command on the host; its standard output.
fn host(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How long `xl shutdown` may take to end a guest that is waiting for it.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

/// Runs `case`'s guest to its end, with its driver (if any) acting alongside; a driver that
/// fails has the domain destroyed rather than waiting for the case's timeout.
fn run_case(
    case: &Case,
    agent: &Agent,
    image: &Image,
    args: &[String],
    opts: &guest::Options,
    forwards: Vec<forward::Plan>,
) -> (guest::GuestRun, Result<(), String>) {
    let Some(drive) = case.driver else {
        return (guest::run(agent, image, args, opts, &mut |_| {}), Ok(()));
    };
    let (tx, lines) = mpsc::channel();
    thread::scope(|scope| {
        let guest = scope.spawn(move || {
            guest::run(agent, image, args, opts, &mut |line| {
                let _ = tx.send(line.to_owned());
            })
        });
        let mut driver =
            Driver { agent: *agent, name: case.app, debug_elf: image.debug_elf.clone(), lines, forwards };
        let driven = drive(&mut driver);
        if driven.is_err() {
            let _ = agent.run(&format!("xl destroy {}", case.app), DRIVER_WAIT);
        }
        let run = guest.join().unwrap_or_else(|_| guest::GuestRun {
            result: Err("the guest runner panicked".into()),
            console: String::new(),
        });
        (run, driven)
    })
}

/// Runs the checks of `case` against a finished run; the reasons for failure.
fn judge(case: &Case, image: &Image, run: &guest::GuestRun) -> Vec<String> {
    let mut problems = Vec::new();
    match &run.result {
        Ok(reason) if *reason == case.reason => {}
        Ok(reason) => problems.push(format!(
            "expected the guest to end with {:?}, but it {}",
            case.reason,
            reason.verb()
        )),
        Err(e) => problems.push(e.clone()),
    }
    for check in &case.checks {
        let outcome = match check {
            Check::Contains(text) => {
                if run.console.contains(text) {
                    Ok(())
                } else {
                    Err(format!("console does not contain {text:?}"))
                }
            }
            Check::Line(text) => {
                if run.console.lines().any(|l| l == *text) {
                    Ok(())
                } else {
                    Err(format!("console has no line {text:?}"))
                }
            }
            Check::Custom(what, f) => f(&run.console, image).map_err(|e| format!("{what}: {e}")),
        };
        if let Err(e) = outcome {
            problems.push(e);
        }
    }
    problems
}

/// The last lines of `console`, long lines shortened, indented.
fn excerpt(console: &str) -> String {
    if console.is_empty() {
        return "    (no console output)".into();
    }
    let lines: Vec<&str> = console.lines().collect();
    let mut out = String::new();
    if lines.len() > EXCERPT_LINES {
        out.push_str(&format!("    … ({} earlier lines)\n", lines.len() - EXCERPT_LINES));
    }
    for line in &lines[lines.len().saturating_sub(EXCERPT_LINES)..] {
        if line.chars().count() > EXCERPT_WIDTH {
            let head: String = line.chars().take(EXCERPT_WIDTH).collect();
            out.push_str(&format!("    | {head}… ({} characters)\n", line.chars().count()));
        } else {
            out.push_str(&format!("    | {line}\n"));
        }
    }
    out.trim_end().to_owned()
}

/// Options of `cargo xtask test`.
pub struct TestOptions {
    /// Skip the host packages and unit tests (steps a and b).
    pub integration_only: bool,
    /// Run only the hosted cases (`tests::hosted::cases`).
    pub hosted_only: bool,
    /// Run only the cases whose name contains this.
    pub filter: Option<String>,
}

/// `cargo xtask test`; returns whether everything passed.
pub fn run(opts: &TestOptions) -> Result<bool, String> {
    let mut ok = true;
    let wanted = |name: &str| opts.filter.as_deref().is_none_or(|f| name.contains(f));
    if opts.hosted_only {
        assets::install_host_deps()?;
        let (passed, failed) = hosted::run(&wanted);
        println!("hosted: {passed} passed, {failed} failed");
        return Ok(failed == 0);
    }
    if !opts.integration_only {
        eprintln!("==> host packages");
        assets::install_host_deps()?;
        eprintln!("==> host unit tests");
        ok &= unit_tests();
    }
    eprintln!("==> integration tests under Xen");
    let cases: Vec<Case> = cases().into_iter().filter(|c| wanted(c.name)).collect();
    let (passed, failed) = integration(&cases);
    println!("integration: {passed} passed, {failed} failed");
    eprintln!("==> hosted integration tests (Linux processes in network namespaces)");
    let (hosted_passed, hosted_failed) = hosted::run(&wanted);
    println!("hosted: {hosted_passed} passed, {hosted_failed} failed");
    Ok(ok && failed == 0 && hosted_failed == 0)
}

/// Host unit tests: every workspace package but the target-only ones.
fn unit_tests() -> bool {
    let mut args = vec!["test".to_owned(), "--workspace".into()];
    let excluded = match target_only_packages() {
        Ok(packages) => packages,
        Err(e) => {
            eprintln!("unit tests: {e}");
            return false;
        }
    };
    for package in excluded {
        args.push("--exclude".into());
        args.push(package);
    }
    // The runtime once more as dns and web link it: without its default `ipv6` feature.
    let without_ipv6 = ["test", "-p", "mote", "--no-default-features"];
    let mut ok = true;
    for args in [args, without_ipv6.map(String::from).to_vec()] {
        if let Err(e) = run_status(crate::cargo().args(&args)) {
            eprintln!("unit tests: {e}");
            ok = false;
        }
    }
    ok
}

/// The package names of apps/*, which only build for the unikernel target: left out of the
/// host unit tests (mote-arch builds its page-table builder for the host, for its tests).
pub(crate) fn target_only_packages() -> Result<Vec<String>, String> {
    let mut packages = Vec::new();
    let apps = workspace_root().join("apps");
    let entries = std::fs::read_dir(&apps).map_err(|e| format!("read {}: {e}", apps.display()))?;
    for entry in entries.flatten() {
        // An app's package name is its folder's name.
        if entry.path().join("Cargo.toml").is_file() {
            packages.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    packages.sort();
    Ok(packages)
}

/// The zones the dns cases are served, through `--zone`: the sample and the NSD
/// differential test's zone.
const DNS_ZONES: &[&str] = &["apps/dns/zones/example.com.zone", "dns/tests/zones/test.zone"];

/// An app's image for the cases: the dns app's with [`DNS_ZONES`]; an app that serves a site
/// (`site = true`) built with `--site` and its own sample site plus [`SITE_CHECK`], so that its
/// cases show both that the sample is served and that `--site` is honoured.
fn build_for_cases(app: &str, flavor: build::Flavor) -> Result<Image, String> {
    build::build_with(app, flavor, &case_build_env(app)?)
}

/// The build-script variables of [`build_for_cases`] (for hosted cases too).
pub(crate) fn case_build_env(app: &str) -> Result<Vec<(&'static str, std::ffi::OsString)>, String> {
    let mut env = Vec::new();
    if app == "dns" {
        let zones: Vec<std::path::PathBuf> = DNS_ZONES.iter().map(|z| workspace_root().join(z)).collect();
        env.push((crate::zones::ENV, crate::zones::check(&zones)?));
    }
    if build::app_meta(app)?.site {
        let site = crate::mote_dir().join(format!("{app}-test-site"));
        copy_tree(&workspace_root().join("apps").join(app).join("site"), &site)?;
        write_if_changed(&site.join(SITE_CHECK.0), SITE_CHECK.1.as_bytes())?;
        env.push(build::site_env(app, &site)?);
    }
    Ok(env)
}

/// Builds the images, boots one harness, runs `cases`; returns (passed, failed).
fn integration(cases: &[Case]) -> (usize, usize) {
    let fail_all = |why: &str| {
        for case in cases {
            println!("test {} ... FAILED\n    {}", case.name, why.replace('\n', "\n    "));
        }
        (0, cases.len())
    };
    if cases.is_empty() {
        return (0, 0);
    }
    let mut images: BTreeMap<(&str, build::Flavor), Result<Image, String>> = BTreeMap::new();
    for case in cases {
        images.entry((case.app, case.flavor())).or_insert_with(|| build_for_cases(case.app, case.flavor()));
    }
    let assets = match assets::ensure() {
        Ok(a) => a,
        Err(e) => return fail_all(&format!("harness assets: {e}")),
    };
    // Apps' `forward = [...]` ports, so that a case can reach its guest from 127.0.0.1.
    let mut forwards: BTreeMap<&str, Vec<forward::Plan>> = BTreeMap::new();
    for ((app, _), image) in images.iter() {
        if forwards.contains_key(app) {
            continue;
        }
        if let Ok(img) = image {
            match forward::plan(&img.meta.forward) {
                Ok(plans) => {
                    // Another harness may hold a port: QEMU would refuse to start, so only the
                    // cases that need that port fail.
                    let (free, taken): (Vec<_>, Vec<_>) = plans
                        .into_iter()
                        .partition(|p| std::net::TcpListener::bind(("127.0.0.1", p.tcp_port())).is_ok());
                    for plan in taken {
                        eprintln!("harness: 127.0.0.1:{} is taken: no forward for {app}", plan.tcp_port());
                    }
                    forwards.insert(app, free);
                }
                // Only the cases that reach the guest from the host need them.
                Err(e) => eprintln!("harness: no forwarded ports for {app}: {e}"),
            }
        }
    }
    let tcp_ports: Vec<u16> = forwards.values().flat_map(|plans| forward::tcp_ports(plans)).collect();
    let mut harness = match Harness::boot(&assets, &tcp_ports) {
        Ok(h) => h,
        Err(e) => return fail_all(&format!("harness did not start: {e}")),
    };
    let agent = harness.agent();
    for ((app, _), image) in images.iter_mut() {
        if let Ok(img) = image {
            if let Err(e) = guest::upload(&agent, img) {
                *image = Err(format!("uploading {app} to dom0: {e}"));
            }
        }
    }

    if cases.iter().any(|c| c.xl.iter().any(|o| o.contains("/mnt/disks/"))) {
        if let Err(e) = agent.run_ok(disk::DISK_SETUP, DRIVER_WAIT) {
            return fail_all(&format!("creating the disk images in dom0: {e}"));
        }
    }
    if cases.iter().any(|c| content::uses_content(c.xl)) {
        if let Err(e) = content::setup(&agent) {
            return fail_all(&format!("making the content disk images: {e}"));
        }
    }
    let (mut passed, mut failed) = (0, 0);
    for case in cases {
        let started = Instant::now();
        let problems_and_console = match &images[&(case.app, case.flavor())] {
            Err(e) => (vec![format!("image {}: {e}", case.app)], String::new()),
            Ok(image) => match harness.check_alive() {
                Err(e) => (vec![e], String::new()),
                Ok(()) => {
                    let args: Vec<String> = case.args.iter().map(|s| s.to_string()).collect();
                    let opts = guest::Options {
                        timeout: Some(CASE_TIMEOUT),
                        echo: false,
                        clock: Instant::now(),
                        xl: case.xl.iter().map(|s| s.to_string()).collect(),
                    };
                    let plans = forwards.get_mut(case.app).map(std::mem::take).unwrap_or_default();
                    let (run, driven) = run_case(case, &agent, image, &args, &opts, plans);
                    let mut problems = judge(case, image, &run);
                    if let Err(e) = driven {
                        problems.insert(0, format!("driver: {e}"));
                    }
                    (problems, run.console)
                }
            },
        };
        let (problems, console) = problems_and_console;
        let secs = started.elapsed().as_secs_f64();
        if problems.is_empty() {
            passed += 1;
            println!("test {} ... ok ({secs:.1}s)", case.name);
        } else {
            failed += 1;
            println!("test {} ... FAILED ({secs:.1}s)", case.name);
            for problem in problems {
                println!("    {}", problem.replace('\n', "\n    "));
            }
            println!("    console ({} {}):\n{}", case.app, case.args.join(" "), excerpt(&console));
        }
    }
    if failed > 0 {
        println!("serial log of the harness: {}", harness::log_file().display());
    }
    drop(harness);
    (passed, failed)
}

/// Where the out-of-memory cases put their dom0 scripts (the agent takes one-line commands).
const OOM_SCRIPT_FILE: &str = "/tmp/out-of-memory.sh";

#[cfg(test)]
mod unit {
    use super::*;
    use crate::build::AppMeta;

    pub(super) fn image(memory_mib: u32) -> Image {
        Image {
            app: "hello".into(),
            meta: AppMeta { memory_mib, ..AppMeta::default() },
            flavor: crate::build::Flavor::RELEASE,
            elf: "/x.elf".into(),
            debug_elf: "/x.debug.elf".into(),
            cfg: "/x.cfg".into(),
        }
    }

    /// A case that asks for the stub on its command line runs an image that has one (or checks
    /// the error of one that has not), and only those cases pay for the gdb build.
    #[test]
    fn gdb_cases_use_the_gdb_build() {
        for case in cases() {
            let asks = case.args.iter().any(|a| a.starts_with("gdb="));
            let expects_no_stub =
                case.checks.iter().any(|c| matches!(c, Check::Contains(t) if t.contains("has no gdb stub")));
            assert_eq!(case.gdb, asks && !expects_no_stub, "{}", case.name);
        }
    }

    /// A case that attaches a content disk runs the image that reads it, but for the one that
    /// checks the refusal of an image without the reader; only those cases pay for the build.
    #[test]
    fn content_disk_cases_use_the_disk_build() {
        for case in cases() {
            let refusal = case
                .checks
                .iter()
                .any(|c| matches!(c, Check::Contains(t) if t.contains("reads no content disk")));
            assert_eq!(case.disk, content::uses_content(case.xl) && !refusal, "{}", case.name);
        }
    }

    #[test]
    fn case_names_are_unique() {
        let cases = cases();
        let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), cases.len());
    }

    #[test]
    fn judge_reports_reason_and_checks() {
        let cases = cases();
        let case = cases.iter().find(|c| c.name == "panic_is_reported").unwrap();
        let run =
            guest::GuestRun { result: Ok(Reason::Poweroff), console: "PANIC: deliberate panic\n".into() };
        let problems = judge(case, &image(4), &run);
        assert_eq!(problems.len(), 5, "{problems:?}");
        let report = "PANIC at apps/selftest/src/main.rs:10:5: deliberate panic\nbacktrace:\n  \
                      #0  0x1009f2 __mote_app_main at runtime/src/lib.rs:76\n        \
                      inlined selftest::main at apps/selftest/src/main.rs:10\n\
                      heap: 4096 of 3670016 bytes in use, at most 8192\n\
                      last log lines, oldest first:\n  [INFO  mote::start] domain 3 (selftest)\n  \
                      [INFO  selftest] selftest: about to panic\n";
        let run = guest::GuestRun { result: Ok(Reason::Crash), console: report.into() };
        assert!(judge(case, &image(4), &run).is_empty());
        // The same lines before the report: log=warn did not keep them off the console.
        let leaked = format!("[INFO  mote::start] domain 3 (selftest)\n{report}");
        let run = guest::GuestRun { result: Ok(Reason::Crash), console: leaked };
        assert_eq!(judge(case, &image(4), &run).len(), 1);
    }

    #[test]
    fn excerpt_shortens() {
        let console = format!("{}\nshort\n", "x".repeat(1000));
        let e = excerpt(&console);
        assert!(e.contains("(1000 characters)"));
        assert!(e.contains("    | short"));
        assert_eq!(excerpt(""), "    (no console output)");
    }
}
