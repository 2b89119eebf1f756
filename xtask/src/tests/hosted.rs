//! The hosted cases: the network apps as Linux processes (`--hosted`), each in its network
//! namespace, answering the same checks from the host's 127.0.0.1 as under Xen, then shut
//! down by SIGTERM as `xl shutdown` shuts a guest down.

use super::dns::dns_from_host;
use super::net::echo_from_host;
use super::web::{site_file, web_from_host};
use super::{case_build_env, content, excerpt, DRIVER_WAIT};
use crate::build::{self, Flavor};
use crate::hosted::{self, Netns};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long an app may take to exit after SIGTERM.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

struct Case {
    name: &'static str,
    app: &'static str,
    args: &'static [&'static str],
    /// Makes the image given as `--disk`.
    disk: Option<fn() -> Result<PathBuf, String>>,
    /// Text of the console line that says the app serves.
    serving: &'static str,
    /// What the host checks through the forwarded ports.
    check: fn() -> Result<(), String>,
    /// Text the console must contain besides the app's `Poweroff requested` line.
    expect: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "hosted_forwards_reach_echo_from_host_loopback",
            app: "echo",
            args: &[],
            disk: None,
            serving: "echo: serving on 10.0.0.2",
            check: echo_from_host,
            expect: &["net: TAP device mote0"],
        },
        Case {
            name: "hosted_web_serves_curl_on_host_loopback",
            app: "web",
            args: &[],
            disk: None,
            serving: "web: serving ",
            check: web_from_host,
            expect: &["on http://10.0.0.2/"],
        },
        Case {
            name: "hosted_web_serves_requests_past_silent_and_half_sent_connections",
            app: "web",
            args: &[],
            disk: None,
            serving: "web: serving ",
            check: web_past_slow_connections,
            expect: &[],
        },
        Case {
            name: "hosted_web_serves_a_pipelining_client_past_the_header_timeout",
            app: "web",
            args: &[],
            disk: None,
            serving: "web: serving ",
            check: web_pipelining_past_header_timeout,
            expect: &[],
        },
        Case {
            name: "hosted_dns_answers_dig_on_host_loopback",
            app: "dns",
            args: &[],
            disk: None,
            serving: "dns: serving on 10.0.0.2",
            check: dns_from_host,
            expect: &[],
        },
        Case {
            name: "hosted_web_serves_a_site_from_a_disk_image",
            app: "web",
            args: &[],
            disk: Some(content::web_image),
            serving: "web: serving ",
            check: content::web_from_host,
            expect: &["web: site from disk image /", ": 2 files, 1048638 bytes"],
        },
        Case {
            name: "hosted_dns_answers_zones_from_a_disk_image",
            app: "dns",
            args: &[],
            disk: Some(content::dns_image),
            serving: "dns: serving on 10.0.0.2",
            check: content::dns_from_host,
            expect: &["(udp/53 tcp/53): example.net. example.org."],
        },
    ]
}

/// The case run under gdb ([`gdb_case`]).
const GDB_CASE: &str = "hosted_gdb_breaks_in_the_web_handler";

/// Runs the hosted cases whose names `wanted` accepts; returns (passed, failed).
pub fn run(wanted: &dyn Fn(&str) -> bool) -> (usize, usize) {
    let mut cases: Vec<Case> = cases().into_iter().filter(|c| wanted(c.name)).collect();
    if wanted(GDB_CASE) {
        cases.push(Case {
            name: GDB_CASE,
            app: "web",
            args: &[],
            disk: None,
            serving: "web: serving ",
            check: || Ok(()),
            expect: &[],
        });
    }
    let mut builds: BTreeMap<&str, Result<PathBuf, String>> = BTreeMap::new();
    let (mut passed, mut failed) = (0, 0);
    for case in &cases {
        let started = Instant::now();
        let exe = builds
            .entry(case.app)
            .or_insert_with(|| {
                hosted::check_root()?;
                hosted::build(case.app, Flavor::RELEASE, &case_build_env(case.app)?)
            })
            .clone();
        let mut console = Vec::new();
        let result = exe.and_then(|exe| {
            if case.name == GDB_CASE {
                gdb_case(&exe, &mut console)
            } else {
                run_case(case, &exe, &mut console)
            }
        });
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                passed += 1;
                println!("test {} ... ok ({secs:.1}s)", case.name);
            }
            Err(e) => {
                failed += 1;
                println!("test {} ... FAILED ({secs:.1}s)\n    {}", case.name, e.replace('\n', "\n    "));
                println!(
                    "    console ({} {}):\n{}",
                    case.app,
                    case.args.join(" "),
                    excerpt(&console.join("\n"))
                );
            }
        }
    }
    (passed, failed)
}

/// The app's process; killed if still running when dropped (a failed case).
struct App(Child);

impl App {
    /// Starts `command` (the app, or gdb running it); its output comes on the channel, a line
    /// at a time, standard output and error alike.
    fn spawn(mut command: Command) -> Result<(App, mpsc::Receiver<String>), String> {
        let shown = command.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run `ip {shown}`: {e}"))?;
        let (tx, lines) = mpsc::channel();
        hosted::lines(child.stdout.take().expect("piped"), tx.clone());
        hosted::lines(child.stderr.take().expect("piped"), tx);
        Ok((App(child), lines))
    }

    /// Waits up to [`EXIT_LIMIT`] for the process to end (after a SIGTERM), then adds the rest
    /// of its output to `console`.
    fn wait(
        &mut self,
        lines: &mpsc::Receiver<String>,
        console: &mut Vec<String>,
    ) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + EXIT_LIMIT;
        let status = loop {
            if let Some(status) = self.0.try_wait().map_err(|e| format!("waiting for the app: {e}"))? {
                break status;
            }
            if Instant::now() >= deadline {
                return Err(format!("the app did not end within {EXIT_LIMIT:?} of SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The readers end at the pipes' end: the rest of the output.
        while let Ok(line) = lines.recv_timeout(Duration::from_secs(2)) {
            console.push(line);
        }
        Ok(status)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn run_case(case: &Case, exe: &std::path::Path, console: &mut Vec<String>) -> Result<(), String> {
    let meta = build::app_meta(case.app)?;
    let disk = case.disk.map(|make| make()).transpose()?;
    let user: Vec<String> = case.args.iter().map(|s| s.to_string()).collect();
    let args = hosted::app_args(&meta, disk.as_deref(), &user)?;
    let netns = Netns::create(case.app)?;
    let relays = hosted::forward(&netns, case.app, &meta.forward)?;
    let mut command = netns.command(exe);
    command.args(&args);
    let (mut app, lines) = App::spawn(command)?;
    wait_line(&lines, case.serving, console)?;
    (case.check)()?;
    hosted::signal(app.0.id(), libc::SIGTERM);
    let status = app.wait(&lines, console)?;
    drop(relays);
    drop(netns);
    let text = console.join("\n");
    let stopping = format!("{}: Poweroff requested, stopping", case.app);
    let mut problems = Vec::new();
    if !status.success() {
        problems.push(format!("exited with {status}"));
    }
    for want in std::iter::once(stopping.as_str()).chain(case.expect.iter().copied()) {
        if !text.contains(want) {
            problems.push(format!("console lacks {want:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Waits for a line containing `text`, keeping every line in `console`.
fn wait_line(lines: &mpsc::Receiver<String>, text: &str, console: &mut Vec<String>) -> Result<(), String> {
    let deadline = Instant::now() + DRIVER_WAIT;
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let found = line.contains(text);
                console.push(line);
                if found {
                    return Ok(());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("no console line containing {text:?} within {DRIVER_WAIT:?}"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("the app ended before printing {text:?}"))
            }
        }
    }
}

/// `cargo xtask debug web --hosted --batch`'s way: gdb runs the web app in its namespace,
/// breaks where a request's bytes reach the connection (as the Xen case does, through the
/// stub), shows the backtrace and the request's length, steps, and lets it run on; the host's
/// curl then gets its answer, and SIGTERM ends the app, which gdb sees exit normally.
fn gdb_case(exe: &std::path::Path, console: &mut Vec<String>) -> Result<(), String> {
    let line = crate::debug::web_break_line()?;
    let script = crate::mote_dir().join("gdb-hosted-web-case.gdb");
    std::fs::write(
        &script,
        format!(
            "set pagination off\nhandle SIGTERM nostop noprint pass\nbreak apps/web/src/main.rs:{line}\nrun\n\
             bt\nprint n\nprint/x $pc\nstepi\nprint/x $pc\ndelete\ncontinue\n"
        ),
    )
    .map_err(|e| format!("{}: {e}", script.display()))?;
    let meta = build::app_meta("web")?;
    let args = hosted::app_args(&meta, None, &[])?;
    let netns = Netns::create("web")?;
    let relays = hosted::forward(&netns, "web", &meta.forward)?;
    let mut command = netns.command("gdb");
    command.args(["-batch", "-nx", "-x"]).arg(&script).arg("--args").arg(exe).args(&args);
    command.current_dir(crate::workspace_root());
    let (mut gdb, lines) = App::spawn(command)?;
    wait_line(&lines, "hosted: process ", console)?;
    let pid: u32 = console
        .last()
        .and_then(|l| l.split("hosted: process ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no process id in {:?}", console.last()))?;
    wait_line(&lines, "web: serving ", console)?;
    // A request of a known length (40 bytes), answered once gdb lets the app run on.
    let curl = std::thread::spawn(|| {
        std::process::Command::new("curl")
            .args(["-s", "-m", "100", "-H", "Host: mote", "-H", "User-Agent:", "-H", "Accept:"])
            .arg("http://127.0.0.1:8080/robots.txt")
            .output()
    });
    let answer = curl.join().map_err(|_| "the curl thread panicked")?.map_err(|e| format!("curl: {e}"))?;
    let expected = site_file("robots.txt")?;
    if answer.stdout != expected {
        return Err(format!("curl got {:?}, expected robots.txt", String::from_utf8_lossy(&answer.stdout)));
    }
    println!("    host: curl http://127.0.0.1:8080/robots.txt answered after gdb let the app run on");
    hosted::signal(pid, libc::SIGTERM);
    let status = gdb.wait(&lines, console)?;
    drop(relays);
    drop(netns);
    let out = console.join("\n");
    crate::debug::check_web_session(&out, line)?;
    if !status.success() {
        return Err(format!("gdb exited with {status}"));
    }
    for want in
        ["web: Poweroff requested, stopping", &format!("[Inferior 1 (process {pid}) exited normally]")]
    {
        if !out.contains(want) {
            return Err(format!("gdb's output lacks {want:?}"));
        }
    }
    println!(
        "    gdb: stopped at apps/web/src/main.rs:{line} in web::serve, n = 40, stepped, app exited normally"
    );
    Ok(())
}

/// The web app through its forward.
const WEB: &str = "127.0.0.1:8080";
/// A request for a small file of the site.
const ROBOTS: &[u8] = b"GET /robots.txt HTTP/1.1\r\nHost: mote\r\n\r\n";

/// Reads one response; its status and body (a `Content-Length` one).
fn read_response(reader: &mut impl BufRead) -> Result<(u16, Vec<u8>), String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| format!("reading a status line: {e}"))?;
    let status =
        line.get(9..12).and_then(|c| c.parse().ok()).ok_or_else(|| format!("status line {line:?}"))?;
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| format!("reading a response head: {e}"))?;
        match line.trim_end().split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("content-length") => {
                length = value.trim().parse().map_err(|_| format!("length {value:?}"))?;
            }
            Some(_) => {}
            None if line.trim_end().is_empty() => break,
            None => return Err(format!("field {line:?}")),
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|e| format!("reading a body of {length} bytes: {e}"))?;
    Ok((status, body))
}

/// Connections that send nothing and connections that send half a request head, many more
/// than web's pool holds (45 at `memory = 4`), then ordinary requests, each on a new
/// connection: every one is answered 200 (the newest takes the place of the slowest, which is
/// closed; the client closes what the server closed, as a kernel's client would soon). Before,
/// the first 45 held the pool for 30 s and the requests got 503.
fn web_past_slow_connections() -> Result<(), String> {
    const SLOW: usize = 150;
    const REQUESTS: usize = 20;
    let connect = || TcpStream::connect(WEB).map_err(|e| format!("connecting to {WEB}: {e}"));
    let mut slow = Vec::new();
    for i in 0..2 * SLOW {
        let mut stream = connect()?;
        if i >= SLOW {
            stream.write_all(b"GET / HTTP/1.1\r\nHost: mo").map_err(|e| format!("half a head: {e}"))?;
        }
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        slow.push(stream);
    }
    let expected = site_file("robots.txt")?;
    let mut statuses = BTreeMap::new();
    for _ in 0..REQUESTS {
        // Closes what the server closed (a 503, then the end).
        slow.retain_mut(
            |s| matches!(s.read(&mut [0; 512]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        );
        let stream = connect()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
        (&stream).write_all(ROBOTS).map_err(|e| format!("writing a request: {e}"))?;
        let (status, body) = read_response(&mut BufReader::new(&stream))?;
        if status == 200 && body != expected {
            return Err("a 200 that is not robots.txt".into());
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    println!(
        "    host: {SLOW} silent and {SLOW} half-sent connections, then {REQUESTS} requests: {statuses:?}; {} slow ones still open",
        slow.len()
    );
    if statuses.get(&200) != Some(&REQUESTS) {
        return Err(format!("expected {REQUESTS} x 200, got {statuses:?}"));
    }
    Ok(())
}

/// One connection whose every write ends one request and begins the next, once a second for
/// 13 s: each answered, past the 10 s the header timeout gives one request head. Before, the
/// timer ran from the first byte while the input never ran dry, and the client was cut off.
fn web_pipelining_past_header_timeout() -> Result<(), String> {
    const WRITES: usize = 13;
    let stream = TcpStream::connect(WEB).map_err(|e| format!("connecting to {WEB}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(&stream);
    let (first, rest) = ROBOTS.split_at(20);
    let expected = site_file("robots.txt")?;
    let started = Instant::now();
    (&stream).write_all(first).map_err(|e| format!("writing: {e}"))?;
    for i in 0..WRITES {
        std::thread::sleep(Duration::from_secs(1));
        let last = i + 1 == WRITES;
        let write = [rest, if last { &b""[..] } else { first }].concat();
        (&stream)
            .write_all(&write)
            .map_err(|e| format!("write {} after {:?}: {e}", i + 1, started.elapsed()))?;
        let (status, body) = read_response(&mut reader)
            .map_err(|e| format!("response {} after {:.1?}: {e}", i + 1, started.elapsed()))?;
        if status != 200 || body != expected {
            return Err(format!("response {} was {status}, not robots.txt", i + 1));
        }
    }
    println!("    host: {WRITES} pipelined requests over {:.1?}, each write ending one and starting the next: all 200", started.elapsed());
    Ok(())
}
