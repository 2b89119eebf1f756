//! Runs one image as a guest in the harness's dom0: uploads it, follows its console log, runs
//! `xl create -F` and reports how the domain ended together with everything it printed.

use crate::agent::{sh_quote, Agent, Event};
use crate::build::{xl_cfg, Image};
use crate::symbolize::Symbolizer;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Where images and their configs go in dom0.
const IMAGE_DIR: &str = "/mote/images";
/// Where xenconsoled (`--log=guest`) writes each guest's console.
const CONSOLE_LOG_DIR: &str = "/var/log/xen/console";
/// Timeout of the short dom0 commands around a run (upload, clean-up, destroy).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// After the domain is gone, the longest we wait for its console log to stop growing.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Why a domain shut down (libxl's `shutdown_reason`, which is Xen's `SHUTDOWN_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Poweroff,
    Reboot,
    Suspend,
    Crash,
    Watchdog,
    SoftReset,
    Other(u32),
}

impl Reason {
    pub fn from_code(code: u32) -> Reason {
        match code {
            0 => Reason::Poweroff,
            1 => Reason::Reboot,
            2 => Reason::Suspend,
            3 => Reason::Crash,
            4 => Reason::Watchdog,
            5 => Reason::SoftReset,
            other => Reason::Other(other),
        }
    }

    /// "powered off", "crashed", … for `mote: <app> <verb>`.
    pub fn verb(self) -> String {
        match self {
            Reason::Poweroff => "powered off".into(),
            Reason::Reboot => "rebooted".into(),
            Reason::Suspend => "suspended".into(),
            Reason::Crash => "crashed".into(),
            Reason::Watchdog => "was stopped by the watchdog".into(),
            Reason::SoftReset => "asked for a soft reset".into(),
            Reason::Other(code) => format!("shut down with unknown reason code {code}"),
        }
    }
}

/// What one `xl create -F` output line says about the domain's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XlReport {
    /// `Domain N has shut down, reason code R 0xR`.
    Shutdown { domid: u32, reason: Reason },
    /// `Domain N has been destroyed.` (by someone else, e.g. `xl destroy`).
    Destroyed { domid: u32 },
}

/// Parses a line of `xl create -F` output; `None` for the lines that report nothing of the end.
pub fn parse_xl_line(line: &str) -> Option<XlReport> {
    let at = line.find("Domain ")?;
    let rest = &line[at + "Domain ".len()..];
    let (domid, rest) = rest.split_once(' ')?;
    let domid = domid.parse().ok()?;
    if let Some(code) = rest.strip_prefix("has shut down, reason code ") {
        let code = code.split_whitespace().next()?.parse().ok()?;
        return Some(XlReport::Shutdown { domid, reason: Reason::from_code(code) });
    }
    if rest.starts_with("has been destroyed") {
        return Some(XlReport::Destroyed { domid });
    }
    None
}

/// How a run ended, and the console text (`\r` removed) whatever happened.
#[derive(Debug)]
pub struct GuestRun {
    pub result: Result<Reason, String>,
    pub console: String,
}

/// How to run a guest.
pub struct Options {
    /// Destroy the domain and fail after this long (`None`: wait for ever).
    pub timeout: Option<Duration>,
    /// Print the console to stdout as it arrives, and progress and xl's lines to stderr.
    pub echo: bool,
    /// Start of the harness, for the times in progress lines.
    pub clock: Instant,
    /// Overrides of the config, `key=value` as in an xl config (e.g. `vif=["bridge=xenbr0"]`),
    /// passed to `xl create` after the config file.
    pub xl: Vec<String>,
}

/// Checks that `args` can go into `extra="…"` of an xl config.
pub fn extra_value(args: &[String]) -> Result<String, String> {
    for arg in args {
        if arg.contains(['"', '\\', '\n', '\r']) {
            return Err(format!("command-line argument {arg:?}: double quotes, backslashes and newlines cannot pass through xl's extra=\"…\""));
        }
    }
    Ok(args.join(" "))
}

/// Copies `image` and a config for it into dom0's `/mote/images/`.
pub fn upload(agent: &Agent, image: &Image) -> Result<(), String> {
    let elf = std::fs::read(&image.elf).map_err(|e| format!("read {}: {e}", image.elf.display()))?;
    let kernel = format!("{IMAGE_DIR}/{}.elf", image.stem());
    agent.put(&kernel, &elf, 0o755, COMMAND_TIMEOUT)?;
    let cfg = xl_cfg(&image.app, &kernel, &image.meta, image.flavor.disk);
    agent.put(&format!("{IMAGE_DIR}/{}.cfg", image.stem()), cfg.as_bytes(), 0o644, COMMAND_TIMEOUT)
}

/// Where a streamed event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Console,
    Xl,
}

/// The console bytes received so far, and how many of them were handed out as lines.
#[derive(Default)]
struct Console {
    bytes: Vec<u8>,
    emitted: usize,
}

impl Console {
    /// Calls `sink` with each new complete line (without `\r\n`).
    fn emit_lines(&mut self, sink: &mut dyn FnMut(&str)) {
        while let Some(nl) = self.bytes[self.emitted..].iter().position(|&b| b == b'\n') {
            let line = &self.bytes[self.emitted..self.emitted + nl];
            sink(String::from_utf8_lossy(line).trim_end_matches('\r'));
            self.emitted += nl + 1;
        }
    }

    /// Calls `sink` with what is left after the last newline, if anything.
    fn emit_rest(&mut self, sink: &mut dyn FnMut(&str)) {
        self.emit_lines(sink);
        if self.emitted < self.bytes.len() {
            sink(String::from_utf8_lossy(&self.bytes[self.emitted..]).trim_end_matches('\r'));
            self.emitted = self.bytes.len();
        }
    }
}

/// Runs `image` (uploaded before with [`upload`]) with `args` on its command line, until the
/// domain shuts down, `xl` fails, or `opts.timeout` passes (then the domain is destroyed).
/// `on_line` gets each console line as it arrives.
pub fn run(
    agent: &Agent,
    image: &Image,
    args: &[String],
    opts: &Options,
    on_line: &mut dyn FnMut(&str),
) -> GuestRun {
    let symbols = Symbolizer::new(&image.debug_elf, &crate::workspace_root());
    let mut lines = Vec::new();
    // Crash reports come out symbolized, both on the way out and in the text tests check.
    let mut annotate = |line: &str| {
        let line = symbols.annotate(line);
        on_line(&line);
        lines.push(line);
    };
    let mut console = Console::default();
    let result = run_inner(agent, image, args, opts, &mut console, &mut annotate);
    console.emit_rest(&mut annotate);
    GuestRun { result, console: lines.join("\n") }
}

fn run_inner(
    agent: &Agent,
    image: &Image,
    args: &[String],
    opts: &Options,
    console: &mut Console,
    on_line: &mut dyn FnMut(&str),
) -> Result<Reason, String> {
    let name = &image.app;
    let log = format!("{CONSOLE_LOG_DIR}/guest-{name}.log");
    let progress = |what: &str| {
        if opts.echo {
            eprintln!("harness: {what} {:.1}s", opts.clock.elapsed().as_secs_f64());
        }
    };
    let extra = extra_value(args)?;

    // A domain of the same name left over (from `cargo xtask xl`, say) would make xl refuse.
    agent.run_ok(
        &format!(
            "if xl domid {n} >/dev/null 2>&1; then xl destroy {n}; fi; mkdir -p {CONSOLE_LOG_DIR} && rm -f {l}",
            n = sh_quote(name),
            l = sh_quote(&log)
        ),
        COMMAND_TIMEOUT,
    )?;

    let (tx, events) = mpsc::channel();
    // xenconsoled creates the log when it sees the domain; `follow` waits for it to exist.
    let tail =
        agent.spawn(&format!("exec /mote/agent follow {}", sh_quote(&log)), Source::Console, tx.clone())?;
    let mut xl_command = format!("xl create -F {}", sh_quote(&format!("{IMAGE_DIR}/{}.cfg", image.stem())));
    for setting in &opts.xl {
        xl_command.push(' ');
        xl_command.push_str(&sh_quote(setting));
    }
    if !args.is_empty() {
        xl_command.push(' ');
        xl_command.push_str(&sh_quote(&format!("extra=\"{extra}\"")));
    }
    let xl = agent.spawn(&format!("exec {xl_command} 2>&1"), Source::Xl, tx)?;
    progress(&format!("guest {name} starting"));

    let deadline = opts.timeout.map(|t| Instant::now() + t);
    let mut xl_output = String::new();
    let mut xl_partial = Vec::new();
    let mut reports = Vec::new();
    let mut tail_ended = None;
    let mut first_output = true;
    let xl_status = loop {
        let wait =
            deadline.map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(Instant::now()));
        match events.recv_timeout(wait) {
            Ok((Source::Console, Event::Output(chunk))) => {
                if first_output {
                    first_output = false;
                    progress("guest console output");
                }
                console.bytes.extend_from_slice(&chunk);
                console.emit_lines(on_line);
            }
            Ok((Source::Console, Event::Exit(status))) => {
                tail_ended = Some(format!("`agent follow` exited with status {status}"))
            }
            Ok((Source::Console, Event::Failed(message))) => tail_ended = Some(message),
            Ok((Source::Xl, Event::Output(chunk))) => {
                xl_partial.extend_from_slice(&chunk);
                while let Some(nl) = xl_partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = xl_partial.drain(..=nl).collect();
                    let line = String::from_utf8_lossy(&line).trim_end().to_owned();
                    if opts.echo {
                        eprintln!("xl: {line}");
                    }
                    if let Some(report) = parse_xl_line(&line) {
                        if let XlReport::Shutdown { reason: Reason::Reboot, .. } = report {
                            progress(&format!("guest {name} rebooting"));
                        }
                        reports.push(report);
                    }
                    xl_output.push_str(&line);
                    xl_output.push('\n');
                }
            }
            Ok((Source::Xl, Event::Exit(status))) => break status,
            Ok((Source::Xl, Event::Failed(message))) => {
                return Err(format!("lost the `xl create` stream: {message}\n{xl_output}"));
            }
            Err(RecvTimeoutError::Timeout) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    xl.cancel();
                    let destroyed = agent
                        .run(&format!("xl destroy {}", sh_quote(name)), COMMAND_TIMEOUT)
                        .map(|(status, out)| {
                            if status == 0 {
                                "destroyed it".to_owned()
                            } else {
                                format!("`xl destroy` failed: {}", out.trim())
                            }
                        })
                        .unwrap_or_else(|e| format!("could not destroy it: {e}"));
                    drain(agent, &log, console, &events, on_line);
                    return Err(format!(
                        "the guest did not shut down within {}s; {destroyed}",
                        opts.timeout.unwrap_or_default().as_secs()
                    ));
                }
            }
            Err(RecvTimeoutError::Disconnected) => return Err("event streams ended unexpectedly".into()),
        }
    };
    progress(&format!("guest {name} gone"));
    drain(agent, &log, console, &events, on_line);
    drop(tail);
    if let Some(problem) = tail_ended {
        if console.bytes.is_empty() {
            return Err(format!("could not follow the console log {log}: {problem}"));
        }
    }
    // The last report counts: a reboot is followed by the next run's end.
    match reports.last() {
        Some(XlReport::Shutdown { reason, .. }) => Ok(*reason),
        // A guest that printed nothing may never have been unpaused: xl's lines tell.
        Some(XlReport::Destroyed { domid }) if console.bytes.is_empty() => Err(format!(
            "domain {domid} was destroyed from outside before it printed anything; xl said:\n{}",
            xl_output.trim_end()
        )),
        Some(XlReport::Destroyed { domid }) => Err(format!("domain {domid} was destroyed from outside")),
        None => Err(format!(
            "`xl create` exited with status {xl_status} without reporting a shutdown:\n{}",
            xl_output.trim_end()
        )),
    }
}

/// After the domain is gone: waits until its console log stops growing and the stream has
/// caught up (or [`DRAIN_LIMIT`] passes), then reads the whole log, which is authoritative,
/// and hands out whatever the stream had not delivered.
fn drain(
    agent: &Agent,
    log: &str,
    console: &mut Console,
    events: &mpsc::Receiver<(Source, Event)>,
    on_line: &mut dyn FnMut(&str),
) {
    let limit = Instant::now() + DRAIN_LIMIT;
    let mut last_size = None;
    while Instant::now() < limit {
        // Take what the stream has for a moment.
        let until = Instant::now() + Duration::from_millis(300);
        while let Ok((source, event)) = events.recv_timeout(until.saturating_duration_since(Instant::now())) {
            if let (Source::Console, Event::Output(chunk)) = (source, event) {
                console.bytes.extend_from_slice(&chunk);
                console.emit_lines(on_line);
            }
        }
        let size = agent
            .run(&format!("wc -c < {} 2>/dev/null || echo 0", sh_quote(log)), Duration::from_secs(10))
            .ok()
            .and_then(|(_, out)| out.trim().parse::<usize>().ok());
        let Some(size) = size else { break };
        if last_size == Some(size) && console.bytes.len() >= size {
            break;
        }
        last_size = Some(size);
    }
    if let Ok((0, full)) = agent.run(&format!("cat {}", sh_quote(log)), COMMAND_TIMEOUT) {
        let full = full.into_bytes();
        if full.len() > console.bytes.len() && full.starts_with(&console.bytes) {
            console.bytes = full;
            console.emit_lines(on_line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_shutdown_reports() {
        assert_eq!(
            parse_xl_line("Domain 1 has shut down, reason code 0 0x0"),
            Some(XlReport::Shutdown { domid: 1, reason: Reason::Poweroff })
        );
        assert_eq!(
            parse_xl_line("Domain 12 has shut down, reason code 3 0x3"),
            Some(XlReport::Shutdown { domid: 12, reason: Reason::Crash })
        );
        assert_eq!(
            parse_xl_line("xl: Domain 2 has shut down, reason code 1 0x1"),
            Some(XlReport::Shutdown { domid: 2, reason: Reason::Reboot })
        );
        assert_eq!(
            parse_xl_line("Domain 7 has shut down, reason code 9 0x9"),
            Some(XlReport::Shutdown { domid: 7, reason: Reason::Other(9) })
        );
        assert_eq!(parse_xl_line("Domain 4 has been destroyed."), Some(XlReport::Destroyed { domid: 4 }));
    }

    #[test]
    fn ignores_other_xl_lines() {
        for line in [
            "Parsing config from /mote/images/hello.cfg",
            "Action for shutdown reason code 0 is destroy",
            "Domain 1 needs to be cleaned up: destroying the domain",
            "Done. Exiting now",
            "Domain x has shut down, reason code 0 0x0",
            "Domain 1 has shut down, reason code",
            "",
        ] {
            assert_eq!(parse_xl_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn reason_verbs() {
        assert_eq!(Reason::from_code(0).verb(), "powered off");
        assert_eq!(Reason::from_code(3).verb(), "crashed");
        assert_eq!(Reason::from_code(4), Reason::Watchdog);
        assert_eq!(Reason::from_code(5), Reason::SoftReset);
    }

    #[test]
    fn extra_joins_and_rejects_quotes() {
        assert_eq!(extra_value(&["a=b".into(), "mode=test".into()]).unwrap(), "a=b mode=test");
        assert_eq!(extra_value(&[]).unwrap(), "");
        assert!(extra_value(&["a=\"b\"".into()]).is_err());
        assert!(extra_value(&["a\\b".into()]).is_err());
    }

    #[test]
    fn console_splits_lines_and_strips_cr() {
        let mut console = Console::default();
        let mut lines = Vec::new();
        console.bytes.extend_from_slice(b"one\r\ntw");
        console.emit_lines(&mut |l| lines.push(l.to_owned()));
        assert_eq!(lines, ["one"]);
        console.bytes.extend_from_slice(b"o\r\nthree");
        console.emit_rest(&mut |l| lines.push(l.to_owned()));
        assert_eq!(lines, ["one", "two", "three"]);
    }
}
