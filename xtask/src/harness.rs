//! The harness machine: QEMU (TCG) running Xen with a Linux dom0 whose agent we reach through a
//! forwarded port. Owns the QEMU process and makes sure it dies on every way out: `Drop`,
//! Ctrl-C/SIGTERM (handler installed by [`Harness::boot`]), a panic (hook), and the death of
//! this process (PR_SET_PDEATHSIG).

use crate::agent::Agent;
use crate::assets::Assets;
use crate::monitor;
use crate::mote_dir;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

/// How long Xen and dom0 may take to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the agent may take to answer once dom0 said it is ready.
const AGENT_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of the serial log shown when something fails.
const LOG_TAIL_LINES: usize = 40;

/// The QEMU process to kill on a signal or panic (0: none).
static QEMU_PID: AtomicI32 = AtomicI32::new(0);
/// The port file to remove on a signal or panic.
static PORT_FILE: Mutex<Option<(PathBuf, u16)>> = Mutex::new(None);

/// The path of the file that tells `cargo xtask xl` where the running harness is.
pub fn port_file() -> PathBuf {
    mote_dir().join("harness.port")
}

/// QEMU's user network for dom0: `restrict=on` keeps every packet inside this machine; the
/// agent's port and the app's forwards are reachable from 127.0.0.1 only.
fn netdev(agent_port: u16, tcp_ports: &[u16]) -> String {
    let mut netdev = format!("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{agent_port}-:7000");
    for port in tcp_ports {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{port}-:{port}"));
    }
    netdev
}

/// The path of the serial log of the last harness.
pub fn log_file() -> PathBuf {
    mote_dir().join("harness.log")
}

/// Kills QEMU and removes the port file and the monitor's socket; safe to call from any thread,
/// more than once.
fn teardown_global() {
    let pid = QEMU_PID.swap(0, Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) with plain integers.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    let entry = PORT_FILE.lock().map(|mut g| g.take()).unwrap_or(None);
    if let Some((path, port)) = entry {
        remove_port_file(&path, port);
        let _ = fs::remove_file(monitor::socket_path(port));
    }
}

/// Removes the port file if it still names `port` (another harness may have replaced it).
fn remove_port_file(path: &Path, port: u16) {
    if fs::read_to_string(path).map(|s| s.trim() == port.to_string()).unwrap_or(false) {
        let _ = fs::remove_file(path);
    }
}

/// Ctrl-C / SIGTERM / SIGHUP and panics tear the harness down.
fn install_teardown_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = ctrlc::set_handler(|| {
            teardown_global();
            eprintln!("\nharness: interrupted; QEMU stopped");
            std::process::exit(130);
        }) {
            eprintln!("harness: warning: cannot install the Ctrl-C handler: {e}");
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            teardown_global();
            previous(info);
        }));
    });
}

/// What the serial reader reports.
enum Serial {
    XenUp,
    Dom0Ready,
    Dom0Failed(String),
    Closed,
}

/// A booted harness.
pub struct Harness {
    child: Child,
    pub port: u16,
    started: Instant,
    serial: Receiver<Serial>,
}

impl Harness {
    /// Boots QEMU with `assets`, waits for dom0's agent and records the port in
    /// `target/mote/harness.port`. Must be called from the main thread: PR_SET_PDEATHSIG fires
    /// when the thread that spawned QEMU ends.
    /// `tcp_ports` are forwarded from 127.0.0.1 to the same TCP ports in dom0.
    pub fn boot(assets: &Assets, tcp_ports: &[u16]) -> Result<Harness, String> {
        install_teardown_hooks();
        for path in [&assets.dom0_kernel, &assets.dom0_initrd] {
            let s = path.to_string_lossy();
            if s.contains(',') || s.contains(' ') {
                return Err(format!(
                    "{s}: QEMU's -initrd module list cannot take a path with a comma or space"
                ));
            }
        }
        let port = free_port()?;
        fs::create_dir_all(mote_dir()).map_err(|e| format!("create {}: {e}", mote_dir().display()))?;
        let log_path = log_file();
        let log = File::create(&log_path).map_err(|e| format!("create {}: {e}", log_path.display()))?;
        let log = Arc::new(Mutex::new(log));

        let monitor_socket = monitor::socket_path(port);
        let _ = fs::remove_file(&monitor_socket);
        let mut qemu = Command::new("qemu-system-x86_64");
        // No XSAVE: with it, Linux processes in dom0 and in the Linux baseline guests were
        // corrupted now and then (segmentation faults, "malloc(): corrupted top size"), and the
        // guest kernel's view of XSAVE changed from boot to boot (docs/measurements.md, Boot).
        // The motes use no FPU state. One CPU: with two, guests triple-faulted now and then and
        // missed event-channel wake-ups (docs/measurements.md, "Two CPUs, tried in full").
        qemu.args([
            "-machine",
            "pc",
            "-accel",
            "tcg",
            "-cpu",
            "max,-smap,-rdtscp,-xsave",
            "-smp",
            "1",
            "-m",
            "1024",
        ])
        .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
        // The monitor, for the watch that wakes a CPU QEMU left asleep (crate::monitor).
        .arg("-monitor")
        .arg(format!("unix:{},server,nowait", monitor_socket.display()))
        .arg("-kernel")
        .arg(&assets.xen)
        // dom0 holds its initramfs twice while unpacking it (about 80 MB with dig's libraries,
        // 31 MB of them ICU data): 256 MB was too little.
        .args(["-append", "console=com1 com1=115200,8n1 dom0_mem=384M,max:384M guest_loglvl=all"])
        .arg("-initrd")
        .arg(format!(
            "{} console=hvc0 earlyprintk=xen quiet,{}",
            assets.dom0_kernel.display(),
            assets.dom0_initrd.display()
        ))
        .arg("-netdev")
        .arg(netdev(port, tcp_ports))
        .args(["-device", "e1000,netdev=n0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure runs between fork and exec and makes only async-signal-safe calls
        // (setpgid, prctl, getppid, _exit); it allocates nothing.
        unsafe {
            qemu.pre_exec(move || {
                // Own process group: a terminal's Ctrl-C reaches us, and we stop QEMU.
                libc::setpgid(0, 0);
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    // We died before the prctl took effect.
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut child = qemu.spawn().map_err(|e| {
            format!("cannot start qemu-system-x86_64: {e} (run ci/install-host-deps.sh to install it)")
        })?;
        QEMU_PID.store(child.id() as i32, Ordering::SeqCst);
        let started = Instant::now();

        let (tx, serial) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let log2 = Arc::clone(&log);
        thread::spawn(move || read_serial(stdout, log2, tx));
        let log3 = Arc::clone(&log);
        thread::spawn(move || copy_lines(stderr, log, "qemu: "));
        monitor::watch(monitor_socket, started, move |line| {
            if let Ok(mut f) = log3.lock() {
                let _ = writeln!(f, "{line}");
            }
        });

        let mut harness = Harness { child, port, started, serial };
        harness.wait_ready()?;
        fs::write(port_file(), format!("{port}\n"))
            .map_err(|e| format!("write {}: {e}", port_file().display()))?;
        *PORT_FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some((port_file(), port));
        Ok(harness)
    }

    /// When QEMU started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Seconds since QEMU started, for progress lines.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The dom0 agent.
    pub fn agent(&self) -> Agent {
        Agent::new(self.port)
    }

    /// Why the harness is no longer usable, if it is not.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("QEMU exited ({status}); see {}", log_file().display())),
            Err(e) => Err(format!("cannot check on QEMU: {e}")),
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = self.started + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let failure = match self.serial.recv_timeout(left) {
                Ok(Serial::XenUp) => {
                    eprintln!("harness: Xen up {:.1}s", self.elapsed());
                    continue;
                }
                Ok(Serial::Dom0Ready) => break,
                Ok(Serial::Dom0Failed(line)) => format!("dom0 failed to start: {line}"),
                Ok(Serial::Closed) | Err(RecvTimeoutError::Disconnected) => {
                    // Give QEMU a moment to be reaped so that its status is known.
                    thread::sleep(Duration::from_millis(200));
                    match self.child.try_wait() {
                        Ok(Some(status)) => format!("QEMU exited ({status}) before dom0 was ready"),
                        _ => "QEMU closed its serial output before dom0 was ready".into(),
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    format!("dom0 did not report `mote-dom0: ready` within {}s", READY_TIMEOUT.as_secs())
                }
            };
            return Err(failure_with_log(&failure));
        }
        eprintln!("harness: dom0 ready {:.1}s", self.elapsed());
        let agent = self.agent();
        let deadline = Instant::now() + AGENT_TIMEOUT;
        loop {
            match agent.ping() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(failure_with_log(&format!(
                        "dom0 is ready but its agent does not answer: {e}"
                    )))
                }
                Err(_) => thread::sleep(Duration::from_millis(250)),
            }
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        QEMU_PID.store(0, Ordering::SeqCst);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(monitor::socket_path(self.port));
        let entry = PORT_FILE.lock().map(|mut g| g.take()).unwrap_or(None);
        if let Some((path, port)) = entry {
            remove_port_file(&path, port);
        }
    }
}

/// `message`, then where the serial log is and its last lines.
pub fn failure_with_log(message: &str) -> String {
    let path = log_file();
    let text = fs::read(&path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    format!("{message}\n--- last lines of {} ---\n{tail}\n--- end of log ---", path.display())
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("cannot find a free port: {e}"))
}

/// Copies the serial output to the log and reports the markers we wait for.
fn read_serial(stdout: impl Read, log: Arc<Mutex<File>>, tx: Sender<Serial>) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    let mut xen_seen = false;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Ok(mut f) = log.lock() {
            let _ = f.write_all(&line);
            let _ = f.flush();
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let event = if !xen_seen && text.contains("(XEN)") {
            xen_seen = true;
            Some(Serial::XenUp)
        } else if text.contains("mote-dom0: ready") {
            Some(Serial::Dom0Ready)
        } else {
            text.find("mote-dom0: FAILED").map(|at| Serial::Dom0Failed(text[at..].to_owned()))
        };
        if let Some(event) = event {
            // The receiver is gone once the harness is up; the log goes on.
            let _ = tx.send(event);
        }
    }
    let _ = tx.send(Serial::Closed);
}

/// Copies lines from `input` to the log with `prefix`.
fn copy_lines(input: impl Read, log: Arc<Mutex<File>>, prefix: &str) {
    for line in BufReader::new(input).lines() {
        let Ok(line) = line else { break };
        if let Ok(mut f) = log.lock() {
            let _ = writeln!(f, "{prefix}{line}");
        }
    }
}
