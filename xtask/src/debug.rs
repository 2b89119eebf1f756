//! `cargo xtask debug <app>`: boots the app in the harness with `gdb=wait` on its command line,
//! carries the guest's gdb stub to 127.0.0.1 and starts gdb with the unstripped image's symbols.
//!
//! The path of gdb's bytes: gdb → a listener on 127.0.0.1 here ([`Bridge`]) → the dom0 agent's
//! `TUNNEL` (through the harness's one forwarded port) → the Unix socket of
//! `vchan-socket-proxy`, Xen's stock tool, in dom0 → the vchan the guest's stub serves
//! (`runtime/src/gdb.rs`). On a Xen host of your own the same proxy does the dom0 part.

use crate::agent::{sh_quote, Agent, Event, Exec};
use crate::guest;
use crate::harness::Harness;
use crate::{assets, build, forward};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// What the guest prints when its stub waits for gdb (`runtime/src/gdb.rs`).
pub const WAITING_LINE: &str = "gdb: waiting for the debugger";
/// The vchan's xenstore directory under the domain's.
const VCHAN_PATH: &str = "data/mote-gdb";
/// How long gdb waits for one answer: a packet's trip through TCG-emulated Xen can be slow.
const REMOTE_TIMEOUT_SECS: u32 = 30;

/// Options of `cargo xtask debug`.
pub struct DebugOptions {
    pub app: String,
    /// Build the dev profile (unoptimized) instead of release.
    pub dev: bool,
    /// Run gdb in batch mode with this command file.
    pub batch: Option<PathBuf>,
    pub guest_args: Vec<String>,
}

/// The dom0 Unix socket `vchan-socket-proxy` listens on for `app`.
fn socket_path(app: &str) -> String {
    format!("/run/mote-gdb-{app}.sock")
}

/// Starts `vchan-socket-proxy` in dom0 for the running domain `app`: it listens on
/// [`socket_path`] and connects each client to the guest's vchan. It runs until the handle is
/// dropped.
pub fn start_proxy(agent: &Agent, app: &str) -> Result<Exec, String> {
    let sock = sh_quote(&socket_path(app));
    let command = format!(
        "rm -f {sock}; d=$(xl domid {app}) || exit 1; \
         exec vchan-socket-proxy \"$d\" \"/local/domain/$d/{VCHAN_PATH}\" {sock}",
        app = sh_quote(app)
    );
    let (tx, events) = mpsc::channel();
    let exec = agent.spawn(&command, (), tx)?;
    // The proxy prints nothing when it is fine; anything it says early is why it stopped.
    thread::spawn(move || {
        for ((), event) in events {
            match event {
                Event::Output(chunk) => eprint!("vchan-socket-proxy: {}", String::from_utf8_lossy(&chunk)),
                Event::Exit(status) if status != 0 => {
                    eprintln!("vchan-socket-proxy exited with status {status}")
                }
                // Ended by us (the handle dropped) when the session is over.
                Event::Exit(_) | Event::Failed(_) => {}
            }
        }
    });
    Ok(exec)
}

/// A listener on 127.0.0.1 whose connections are carried to the proxy's socket in dom0.
pub struct Bridge {
    pub port: u16,
}

impl Bridge {
    /// Listens on `127.0.0.1:port` (0: any free port); serves connections until the process
    /// ends.
    pub fn start(agent: Agent, app: &str, port: u16) -> Result<Bridge, String> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port} for gdb: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let path = socket_path(app);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let path = path.clone();
                thread::spawn(move || {
                    if let Err(e) = carry(agent, &path, client) {
                        eprintln!("mote: gdb connection: {e}");
                    }
                });
            }
        });
        Ok(Bridge { port })
    }
}

/// Relays one gdb connection through the agent's tunnel until either side closes.
fn carry(agent: Agent, path: &str, client: TcpStream) -> Result<(), String> {
    let tunnel = agent.tunnel(path)?;
    let _ = client.set_nodelay(true);
    let _ = tunnel.set_nodelay(true);
    let (mut c_read, mut t_write) =
        (client.try_clone().map_err(|e| e.to_string())?, tunnel.try_clone().map_err(|e| e.to_string())?);
    let up = thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut t_write);
        let _ = t_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut t_read, mut c_write) = (tunnel, client);
    let _ = io::copy(&mut t_read, &mut c_write);
    let _ = c_write.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// The gdb command line: the image's symbols, settings for a slow remote, the connection, and
/// then `batch`'s commands (or an interactive session).
pub fn gdb_command(debug_elf: &Path, port: u16, batch: Option<&Path>) -> Command {
    let mut gdb = Command::new("gdb");
    gdb.arg("-q").arg("-nx");
    if batch.is_some() {
        gdb.arg("-batch");
    }
    for setting in
        ["set pagination off", "set confirm off", &format!("set remotetimeout {REMOTE_TIMEOUT_SECS}")]
    {
        gdb.arg("-ex").arg(setting);
    }
    gdb.arg("-ex").arg(format!("target remote 127.0.0.1:{port}"));
    if let Some(file) = batch {
        gdb.arg("-x").arg(file);
    }
    gdb.arg(debug_elf);
    gdb
}

/// `cargo xtask debug`.
pub fn run(opts: &DebugOptions) -> Result<ExitCode, String> {
    if let Some(file) = &opts.batch {
        if !file.is_file() {
            return Err(format!("--batch {}: no such file", file.display()));
        }
    }
    let mut args = opts.guest_args.clone();
    args.retain(|a| !a.starts_with("gdb="));
    args.push("gdb=wait".into());
    guest::extra_value(&args)?;
    let image = build::build(&opts.app, build::Flavor { debug: opts.dev, gdb: true, disk: false })?;
    assets::install_host_deps()?;
    let assets = assets::ensure()?;
    // The app's ports are a convenience here: the session goes on without them.
    let mut forwards = forward::plan(&image.meta.forward).unwrap_or_else(|e| {
        eprintln!("mote: {app}'s ports are not forwarded: {e}", app = opts.app);
        Vec::new()
    });
    let harness = Harness::boot(&assets, &forward::tcp_ports(&forwards))?;
    let agent = harness.agent();
    guest::upload(&agent, &image)?;
    let bridge = Bridge::start(agent, &opts.app, 0)?;

    let (tx, lines) = mpsc::channel();
    let app = opts.app.clone();
    let clock = harness.started();
    let guest_image = image.clone();
    let runner = thread::spawn(move || {
        let opts = guest::Options { timeout: None, echo: false, clock, xl: Vec::new() };
        guest::run(&agent, &guest_image, &args, &opts, &mut |line| {
            let _ = tx.send(line.to_owned());
        })
    });

    // The guest's console goes to stderr, so gdb has stdout (and the terminal) to itself.
    // The loop ends when the guest's run does: by itself, or destroyed once gdb quits.
    let mut gdb = None;
    let mut proxy = None;
    let mut relays = forward::Relays::default();
    for line in lines.iter() {
        eprintln!("{line}");
        if let Some(ip) = crate::guest_ipv4(&line).filter(|_| relays.is_empty()) {
            relays = forward::start(&agent, &mut forwards, &app, ip);
            if let Some(command) = &image.meta.try_command {
                eprintln!("mote: try `{command}`");
            }
        }
        if line.contains(WAITING_LINE) && gdb.is_none() {
            proxy = Some(start_proxy(&agent, &app)?);
            eprintln!("mote: gdb stub of {app} on 127.0.0.1:{} (target remote 127.0.0.1:{0})", bridge.port);
            let mut command = gdb_command(&image.debug_elf, bridge.port, opts.batch.as_deref());
            if opts.batch.is_some() {
                command.stdin(Stdio::null());
            } else {
                give_gdb_the_terminal(&mut command);
            }
            let child = command
                .spawn()
                .map_err(|e| format!("cannot start gdb: {e} (ci/install-host-deps.sh installs it)"))?;
            gdb = Some(spawn_waiter(child, agent, &app));
        }
    }
    let run = runner.join().map_err(|_| "the guest runner panicked".to_owned())?;
    drop((relays, proxy));
    drop(harness);
    let Some(gdb) = gdb else {
        return Err(format!("{app} ended before gdb could attach: {}", describe(&run.result)));
    };
    eprintln!("mote: {app} {}", describe(&run.result));
    let status = gdb.join().map_err(|_| "the gdb waiter panicked".to_owned())?;
    Ok(match status.and_then(|s| s.code()) {
        Some(0) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

fn describe(result: &Result<guest::Reason, String>) -> String {
    match result {
        Ok(reason) => reason.verb(),
        Err(e) => format!("ended: {e}"),
    }
}

/// For an interactive gdb on a terminal: gdb gets a process group of its own and makes it the
/// terminal's foreground group, so that Ctrl-C reaches gdb (which interrupts the guest) and not
/// xtask (whose Ctrl-C handler ends the harness). [`take_back_the_terminal`] undoes it.
fn give_gdb_the_terminal(command: &mut Command) {
    // SAFETY: isatty has no preconditions.
    if unsafe { libc::isatty(0) } != 1 {
        return;
    }
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe calls
    // (setpgid, signal, tcsetpgrp, getpid); it allocates nothing.
    unsafe {
        command.pre_exec(|| {
            libc::setpgid(0, 0);
            // A background group's tcsetpgrp raises SIGTTOU, which would stop us.
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::tcsetpgrp(0, libc::getpid());
            libc::signal(libc::SIGTTOU, libc::SIG_DFL);
            Ok(())
        });
    }
}

/// Makes xtask's process group the terminal's foreground group again, after gdb.
fn take_back_the_terminal() {
    // SAFETY: isatty, signal, tcsetpgrp and getpgrp have no memory-safety preconditions;
    // SIGTTOU is ignored only around the call that would raise it.
    unsafe {
        if libc::isatty(0) == 1 {
            let previous = libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::tcsetpgrp(0, libc::getpgrp());
            libc::signal(libc::SIGTTOU, previous);
        }
    }
}

/// Waits for gdb in a thread; when it exits, destroys the domain (which ends the guest's
/// run and its console stream).
fn spawn_waiter(mut child: Child, agent: Agent, app: &str) -> thread::JoinHandle<Option<ExitStatus>> {
    let app = app.to_owned();
    thread::spawn(move || {
        let status = child.wait().ok();
        take_back_the_terminal();
        let _ = agent.run(&format!("xl destroy {} 2>/dev/null", sh_quote(&app)), Duration::from_secs(60));
        status
    })
}

/// The web app's request handler line the integration case breaks at: where `serve` feeds the
/// bytes it read (`n` of them) to the HTTP connection.
const WEB_BREAK_SOURCE: &str = "let fed = conn.feed(&buf[..n]);";

/// gdb in batch mode against a case's guest, stopped in `gdb=wait`.
struct BatchGdb {
    child: Child,
    output: mpsc::Receiver<String>,
    _proxy: Exec,
}

impl BatchGdb {
    /// Waits for the guest's stub, then starts the proxy, the bridge and gdb on `script`.
    fn start(d: &mut crate::tests::Driver, script: &str) -> Result<BatchGdb, String> {
        // Under load the vif's hotplug scripts alone can take longer than one wait.
        let mut waits = 0;
        while let Err(e) = d.wait_line(WAITING_LINE) {
            waits += 1;
            if waits == 3 || !e.starts_with("no console line") {
                return Err(e);
            }
        }
        let file = crate::mote_dir().join(format!("gdb-{}-case.gdb", d.name));
        std::fs::write(&file, script).map_err(|e| format!("{}: {e}", file.display()))?;
        let proxy = start_proxy(&d.agent, d.name)?;
        let bridge = Bridge::start(d.agent, d.name, 0)?;
        let mut child = gdb_command(&d.debug_elf, bridge.port, Some(&file))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start gdb: {e}"))?;
        let output = collect_output(&mut child);
        Ok(BatchGdb { child, output, _proxy: proxy })
    }

    /// Sends gdb SIGINT, as Ctrl-C in its terminal would: gdb interrupts the running target.
    fn interrupt(&self) -> Result<(), String> {
        let pid = i32::try_from(self.child.id()).map_err(|_| "gdb's pid does not fit a pid_t".to_owned())?;
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's, not reaped
        // yet (we have not waited for it).
        if unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
            return Err(format!("kill -INT gdb: {}", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Waits (at most `limit`) for gdb to finish; its output, checked by `check`, and shown
    /// under the case.
    fn finish(mut self, limit: Duration, check: impl Fn(&str) -> Result<(), String>) -> Result<(), String> {
        let status = wait_child(&mut self.child, limit);
        let _ = self.child.kill();
        let out = self.output.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
        let shown = out.lines().map(|l| format!("    gdb| {l}")).collect::<Vec<_>>().join("\n");
        let status = status.map_err(|e| format!("{e}\ngdb printed:\n{shown}"))?;
        check(&out).map_err(|e| format!("{e}\ngdb ({status}) printed:\n{shown}"))?;
        println!("{shown}");
        Ok(())
    }
}

/// The integration case's driver (`gdb_breaks_in_the_web_handler`): with the web guest stopped
/// in `gdb=wait`, gdb in batch mode sets a breakpoint in the request handler and continues;
/// a request from dom0 hits it; gdb prints the backtrace, the handler's local `n` (the request's
/// length), single-steps one instruction and detaches; the request is then answered.
pub fn web_case_driver(d: &mut crate::tests::Driver) -> Result<(), String> {
    let line = web_break_line()?;
    let gdb = BatchGdb::start(
        d,
        &format!(
            "break apps/web/src/main.rs:{line}\ncontinue\nbt\nprint n\nprint/x $pc\nstepi\nprint/x $pc\n\
             delete\ndetach\n"
        ),
    )?;
    let ip = loop {
        if let Some(ip) = crate::guest_ipv4(&d.wait_line("net: ")?) {
            break ip;
        }
    };
    d.wait_line("web: serving")?;
    // A request of a known length: 40 bytes.
    let (tx, curl_events) = mpsc::channel();
    let _curl = d.agent.spawn(
        &format!("curl -s -m 100 -H 'Host: mote' -H 'User-Agent:' -H 'Accept:' http://{ip}/robots.txt 2>&1"),
        (),
        tx,
    )?;
    gdb.finish(Duration::from_secs(100), |out| check_web_session(out, line))?;
    let mut answer = Vec::new();
    for ((), event) in curl_events.iter() {
        match event {
            Event::Output(chunk) => answer.extend_from_slice(&chunk),
            Event::Exit(0) => break,
            Event::Exit(s) => return Err(format!("curl exited with status {s} after gdb detached")),
            Event::Failed(e) => return Err(format!("curl: {e}")),
        }
    }
    let site = crate::workspace_root().join("apps/web/site/robots.txt");
    let expected = std::fs::read(&site).map_err(|e| format!("{}: {e}", site.display()))?;
    if answer != expected {
        return Err(format!("curl got {:?}, expected robots.txt", String::from_utf8_lossy(&answer)));
    }
    d.dom0(&format!("xl shutdown {}", d.name)).map(drop)
}

/// The integration case's driver (`gdb_stops_on_a_page_fault`): the selftest guest reads an
/// unmapped address under gdb; gdb stops there with SIGSEGV, shows where, and continuing ends
/// the program, after which the guest prints its crash report and crashes.
pub fn crash_case_driver(d: &mut crate::tests::Driver) -> Result<(), String> {
    let gdb = BatchGdb::start(d, "continue\nbt\ncontinue\n")?;
    gdb.finish(Duration::from_secs(100), |out| {
        if !out.contains("Program received signal SIGSEGV") {
            return Err("gdb did not stop with SIGSEGV".into());
        }
        let frames: Vec<&str> = out.lines().filter(|l| l.starts_with('#')).collect();
        if !frames.iter().any(|f| f.contains("selftest::main")) {
            return Err("the backtrace does not show selftest::main".into());
        }
        if !out.contains("Program terminated with signal SIGSEGV") {
            return Err("continuing did not end the program".into());
        }
        Ok(())
    })
}

/// The integration case's driver (`gdb_interrupts_a_running_guest`): the selftest guest
/// sleeps under gdb; Ctrl-C (SIGINT to gdb) stops it where it is; after a backtrace gdb
/// detaches and the guest finishes its sleep.
pub fn interrupt_case_driver(d: &mut crate::tests::Driver) -> Result<(), String> {
    let gdb = BatchGdb::start(d, "continue\nbt\ndetach\n")?;
    d.wait_line("idle: sleeping")?;
    // Let gdb's `continue` be under way, the guest halted in its sleep.
    thread::sleep(Duration::from_secs(3));
    gdb.interrupt()?;
    gdb.finish(Duration::from_secs(100), |out| {
        if !out.contains("Program received signal SIGINT") {
            return Err("gdb did not stop the guest with SIGINT".into());
        }
        let frames: Vec<&str> = out.lines().filter(|l| l.starts_with('#')).collect();
        if !frames.iter().any(|f| f.contains("mote::events::sleep"))
            || !frames.iter().any(|f| f.contains("selftest::main"))
        {
            return Err("the backtrace does not show selftest::main sleeping (mote::events::sleep)".into());
        }
        Ok(())
    })
}

/// gdb's stdout and stderr, whole, once it exits.
fn collect_output(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    thread::spawn(move || {
        let err = thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut e) = stderr {
                let _ = io::Read::read_to_string(&mut e, &mut text);
            }
            text
        });
        let mut text = String::new();
        if let Some(mut o) = stdout {
            let _ = io::Read::read_to_string(&mut o, &mut text);
        }
        text.push_str(&err.join().unwrap_or_default());
        let _ = tx.send(text);
    });
    rx
}

/// Waits for `child` to exit, at most `limit`.
fn wait_child(child: &mut Child, limit: Duration) -> Result<ExitStatus, String> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if std::time::Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            Ok(None) => return Err(format!("gdb did not finish within {limit:?}")),
            Err(e) => return Err(format!("waiting for gdb: {e}")),
        }
    }
}

/// The line of apps/web/src/main.rs where the web cases break: where a request's bytes are
/// fed to the connection.
pub fn web_break_line() -> Result<usize, String> {
    let source = crate::workspace_root().join("apps/web/src/main.rs");
    let text = std::fs::read_to_string(&source).map_err(|e| format!("{}: {e}", source.display()))?;
    text.lines()
        .position(|l| l.contains(WEB_BREAK_SOURCE))
        .map(|i| i + 1)
        .ok_or_else(|| format!("{} has no line with {WEB_BREAK_SOURCE:?}", source.display()))
}

/// What the web cases' gdb script must have printed.
pub fn check_web_session(out: &str, line: usize) -> Result<(), String> {
    let at = format!("apps/web/src/main.rs:{line}");
    // A threaded program (hosted: the signal thread) says which thread: `Thread 1 "web" hit …`.
    let stopped = |l: &str| l.starts_with("Breakpoint 1, ") || l.contains(" hit Breakpoint 1, ");
    if !out.lines().any(|l| stopped(l) && l.contains(&at)) {
        return Err(format!("gdb did not stop at breakpoint 1 at {at}"));
    }
    let frames: Vec<&str> = out.lines().filter(|l| l.starts_with('#')).collect();
    if !frames.first().is_some_and(|f| f.contains("web::serve")) {
        return Err("the backtrace does not start in web::serve".into());
    }
    if !frames.iter().any(|f| f.contains(" web::main (") || f.contains(" in web::main (")) {
        return Err("the backtrace does not reach the app's main (web::main)".into());
    }
    let value = |n: &str| out.lines().find_map(|l| l.strip_prefix(&format!("${n} = ")).map(str::trim));
    if value("1") != Some("40") {
        return Err(format!("print n gave {:?}, expected 40 (the request's length)", value("1")));
    }
    match (value("2"), value("3")) {
        (Some(before), Some(after)) if before != after => Ok(()),
        other => Err(format!("stepi did not move the PC: {other:?}")),
    }
}
