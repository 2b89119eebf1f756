//! `--hosted`: an app built as a Linux process (the runtime's `hosted` feature) and run in a
//! network namespace of its own, `mote-<app>`, where a TAP device [`TAP`] has the address
//! [`PEER`] on the kernel's side and the app the static address [`APP_IP`] (`ip=` on its
//! command line; later arguments override it). The app's forwarded ports are relayed from
//! 127.0.0.1 on the host by threads of this process whose upstream sockets are made inside
//! the namespace (setns(2) on a thread of their own), TCP and UDP alike. The namespace, and
//! the TAP device in it, go when the run ends.

use crate::build::{AppMeta, Flavor, Forward, SITE_ENV};
use crate::{run_status, target_dir};
use std::collections::hash_map::{Entry, HashMap};
use std::ffi::OsString;
use std::io::{self, Read};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// What a hosted app is built for.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// The TAP device in the namespace (the runtime's default `tap=`).
pub const TAP: &str = "mote0";
/// The kernel's side of the TAP device.
pub const PEER: &str = "10.0.0.1/24";
/// The app's address.
pub const APP_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// How often relay threads look whether they should stop.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Builds `app` for [`TARGET`] with the runtime's `hosted` feature (release profile, which
/// keeps debug info, or the dev profile with `--debug`); the path of the executable. An app
/// that reads content disks always gets its reader (its `disk` feature): a process's size
/// is not what the split is for.
pub fn build(app: &str, flavor: Flavor, env: &[(&str, OsString)]) -> Result<PathBuf, String> {
    if flavor.gdb {
        return Err(
            "--gdb builds the gdb stub of a Xen image; a hosted app is debugged with gdb itself".into()
        );
    }
    let features =
        if crate::build::app_meta(app)?.content.is_some() { "mote/hosted,disk" } else { "mote/hosted" };
    let mut cargo = crate::cargo();
    cargo.args(["build", "--target", TARGET, "-p", app, "--features", features]);
    if !flavor.debug {
        cargo.arg("--release");
    }
    cargo.env_remove(SITE_ENV);
    cargo.envs(env.iter().map(|(k, v)| (k, v)));
    run_status(&mut cargo).map_err(|e| {
        format!(
            "building {app} hosted: {e}\n(a hosted build has no Xen-only parts of the runtime: xenstore, \
             grants, mote::disk, the blocking mote::sleep; hello and selftest use them)"
        )
    })?;
    let exe = target_dir().join(TARGET).join(if flavor.debug { "debug" } else { "release" }).join(app);
    eprintln!("mote: {app} (hosted): {}", exe.display());
    Ok(exe)
}

/// The app's command line: its address, TAP device and memory, the disk image, then `user`'s
/// arguments (which override the others).
pub fn app_args(meta: &AppMeta, disk: Option<&Path>, user: &[String]) -> Result<Vec<String>, String> {
    let mut args =
        vec![format!("ip={APP_IP}/24"), format!("tap={TAP}"), format!("memory={}", meta.memory_mib)];
    if let Some(disk) = disk {
        let disk = disk.canonicalize().map_err(|e| format!("--disk {}: {e}", disk.display()))?;
        args.push(format!("disk={}", disk.display()));
    }
    args.extend(user.iter().cloned());
    Ok(args)
}

/// Refuses early what would fail later: network namespaces need root.
pub fn check_root() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("--hosted makes a network namespace and a TAP device: run it as root".into());
    }
    Ok(())
}

/// A network namespace with the app's TAP device; deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Makes `mote-<app>` (replacing one left by a run that was killed).
    pub fn create(app: &str) -> Result<Netns, String> {
        let name = format!("mote-{app}");
        if Path::new("/run/netns").join(&name).exists() {
            run_status(Command::new("ip").args(["netns", "del", &name]))?;
        }
        run_status(Command::new("ip").args(["netns", "add", &name]))?;
        let netns = Netns { name };
        for args in [
            &["link", "set", "lo", "up"][..],
            &["tuntap", "add", "dev", TAP, "mode", "tap"],
            &["addr", "add", PEER, "dev", TAP],
            &["link", "set", TAP, "up"],
        ] {
            run_status(Command::new("ip").args(["-n", &netns.name]).args(args))?;
        }
        Ok(netns)
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

/// Moves the calling thread into network namespace `name`: sockets it makes from then on are
/// there.
fn enter(name: &str) -> io::Result<()> {
    let file = std::fs::File::open(Path::new("/run/netns").join(name))?;
    // SAFETY: setns only reads the descriptor, which `file` keeps open across the call; it
    // changes this thread's network namespace and nothing of Rust's.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run_status(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("mote: {e}");
        }
    }
}

/// A socket wanted inside the namespace, and where to send it.
enum Dial {
    Tcp(SocketAddr, mpsc::Sender<io::Result<TcpStream>>),
    Udp(SocketAddr, mpsc::Sender<io::Result<UdpSocket>>),
}

/// Sends [`Dial`]s to the namespace's dialer thread.
#[derive(Clone)]
struct Dialer(mpsc::Sender<Dial>);

impl Dialer {
    /// A thread in `netns` that makes the sockets asked of it, until every sender is gone.
    fn start(netns: &Netns) -> Result<Dialer, String> {
        let (tx, rx) = mpsc::channel::<Dial>();
        let (ready_tx, ready) = mpsc::channel();
        let name = netns.name.clone();
        thread::spawn(move || {
            let entered = enter(&name);
            let ok = entered.is_ok();
            let _ = ready_tx.send(entered);
            if !ok {
                return;
            }
            for dial in rx {
                match dial {
                    Dial::Tcp(to, reply) => {
                        let _ = reply.send(TcpStream::connect_timeout(&to, Duration::from_secs(5)));
                    }
                    Dial::Udp(to, reply) => {
                        let socket = UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect(to).map(|()| s));
                        let _ = reply.send(socket);
                    }
                }
            }
        });
        match ready.recv() {
            Ok(Ok(())) => Ok(Dialer(tx)),
            Ok(Err(e)) => Err(format!("entering network namespace {}: {e}", netns.name)),
            Err(_) => Err("the namespace's dialer thread ended".into()),
        }
    }

    fn tcp(&self, to: SocketAddr) -> io::Result<TcpStream> {
        let (tx, rx) = mpsc::channel();
        self.0.send(Dial::Tcp(to, tx)).map_err(|_| io::Error::other("dialer gone"))?;
        rx.recv().map_err(|_| io::Error::other("dialer gone"))?
    }

    fn udp(&self, to: SocketAddr) -> io::Result<UdpSocket> {
        let (tx, rx) = mpsc::channel();
        self.0.send(Dial::Udp(to, tx)).map_err(|_| io::Error::other("dialer gone"))?;
        rx.recv().map_err(|_| io::Error::other("dialer gone"))?
    }
}

/// The relays of an app's forwarded ports; they stop (and free the ports) on drop.
pub struct Relays {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Relays {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Listens on 127.0.0.1 for each of `forwards` (an error if a port is taken) and relays to
/// the app at [`APP_IP`] in `netns`.
pub fn forward(netns: &Netns, app: &str, forwards: &[Forward]) -> Result<Relays, String> {
    enum Bound {
        Tcp(TcpListener),
        Udp(UdpSocket),
    }
    let mut bound = Vec::new();
    for f in forwards {
        let taken = |e: io::Error| format!("cannot listen on 127.0.0.1:{}/{}: {e}", f.host, f.proto());
        bound.push(if f.udp {
            let socket = UdpSocket::bind(("127.0.0.1", f.host)).map_err(taken)?;
            socket.set_read_timeout(Some(STOP_CHECK)).map_err(taken)?;
            Bound::Udp(socket)
        } else {
            let listener = TcpListener::bind(("127.0.0.1", f.host)).map_err(taken)?;
            listener.set_nonblocking(true).map_err(taken)?;
            Bound::Tcp(listener)
        });
    }
    let dialer = Dialer::start(netns)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (f, socket) in forwards.iter().zip(bound) {
        let upstream = SocketAddr::from((APP_IP, f.guest));
        let (dialer, stop) = (dialer.clone(), stop.clone());
        threads.push(match socket {
            Bound::Tcp(listener) => thread::spawn(move || relay_tcp(listener, upstream, dialer, stop)),
            Bound::Udp(socket) => thread::spawn(move || relay_udp(socket, upstream, dialer, stop)),
        });
        eprintln!(
            "mote: 127.0.0.1:{}/{} -> {app} {upstream} (network namespace {})",
            f.host,
            f.proto(),
            netns.name
        );
    }
    Ok(Relays { stop, threads })
}

/// Accepts connections until told to stop; each gets a connection to `upstream` and two
/// threads copying between them.
fn relay_tcp(listener: TcpListener, upstream: SocketAddr, dialer: Dialer, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(STOP_CHECK / 4);
                continue;
            }
            Err(e) => {
                eprintln!("mote: accepting on {}: {e}", listener.local_addr().map_or(0, |a| a.port()));
                continue;
            }
        };
        let _ = client.set_nonblocking(false);
        let server = match dialer.tcp(upstream) {
            Ok(server) => server,
            Err(e) => {
                eprintln!("mote: connecting to {upstream}: {e}");
                continue;
            }
        };
        for (from, to) in [(&client, &server), (&server, &client)] {
            let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else { continue };
            thread::spawn(move || {
                let _ = io::copy(&mut from, &mut to);
                let _ = to.shutdown(Shutdown::Write);
            });
        }
    }
}

/// Relays datagrams: each client address gets its own socket towards `upstream`, and a
/// thread that sends the replies back to it.
fn relay_udp(socket: UdpSocket, upstream: SocketAddr, dialer: Dialer, stop: Arc<AtomicBool>) {
    let socket = Arc::new(socket);
    let mut clients: HashMap<SocketAddr, UdpSocket> = HashMap::new();
    let mut buf = vec![0u8; 65535];
    while !stop.load(Ordering::SeqCst) {
        let (n, client) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(e) => {
                eprintln!("mote: udp relay to {upstream}: {e}");
                return;
            }
        };
        let server = match clients.entry(client) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => match udp_upstream(&dialer, upstream, client, &socket, &stop) {
                Ok(server) => e.insert(server),
                Err(e) => {
                    eprintln!("mote: udp socket towards {upstream}: {e}");
                    continue;
                }
            },
        };
        if let Err(e) = server.send(&buf[..n]) {
            eprintln!("mote: udp to {upstream}: {e}");
        }
    }
}

/// A socket towards `upstream` for `client`'s datagrams, and a thread that sends its replies
/// back to `client` through `socket`.
fn udp_upstream(
    dialer: &Dialer,
    upstream: SocketAddr,
    client: SocketAddr,
    socket: &Arc<UdpSocket>,
    stop: &Arc<AtomicBool>,
) -> io::Result<UdpSocket> {
    let server = dialer.udp(upstream)?;
    server.set_read_timeout(Some(STOP_CHECK))?;
    let (replies, back, stop) = (server.try_clone()?, socket.clone(), stop.clone());
    thread::spawn(move || {
        let mut buf = vec![0u8; 65535];
        while !stop.load(Ordering::SeqCst) {
            match replies.recv(&mut buf) {
                Ok(n) => {
                    let _ = back.send_to(&buf[..n], client);
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
    });
    Ok(server)
}

/// Sends the lines of a child's output to `tx` as they come, from a reader thread.
pub fn lines(output: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
    thread::spawn(move || {
        let mut reader = io::BufReader::new(output);
        let mut line = String::new();
        while matches!(io::BufRead::read_line(&mut reader, &mut line), Ok(1..)) {
            if tx.send(line.trim_end_matches('\n').to_owned()).is_err() {
                return;
            }
            line.clear();
        }
    });
}

/// Sends `signal` to process `pid` (an app this run started, directly or under gdb).
pub fn signal(pid: u32, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { libc::kill(pid, signal) };
}

/// What `cargo xtask run|debug <app> --hosted` was asked.
pub struct RunOptions<'a> {
    pub app: &'a str,
    pub flavor: Flavor,
    /// The app is sent SIGTERM after this long.
    pub timeout: Option<Duration>,
    pub disk: Option<&'a Path>,
    pub guest_args: &'a [String],
    /// Run it under gdb (`debug`), with this command file (`--batch`).
    pub gdb: Option<Option<&'a Path>>,
}

/// Builds the app, makes its namespace and relays, and runs it (under gdb for `debug`) until
/// it exits; Ctrl-C (or SIGTERM to this process) is passed on to it as SIGTERM, its
/// shutdown request.
pub fn run(opts: &RunOptions<'_>, env: &[(&str, OsString)]) -> Result<std::process::ExitCode, String> {
    let app = opts.app;
    check_root()?;
    if let Some(disk) = opts.disk {
        if !disk.is_file() {
            return Err(format!("--disk {}: no such file", disk.display()));
        }
    }
    let meta = crate::build::app_meta(app)?;
    let exe = build(app, opts.flavor, env)?;
    let args = app_args(&meta, opts.disk, opts.guest_args)?;
    let netns = Netns::create(app)?;
    let relays = forward(&netns, app, &meta.forward)?;
    if let Some(command) = &meta.try_command {
        eprintln!("mote: try `{command}`");
    }
    let mut command = match opts.gdb {
        None => {
            let mut command = netns.command(&exe);
            command.args(&args);
            // Its own process group: the terminal's Ctrl-C comes here, and goes on once.
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            command
        }
        Some(batch) => {
            let mut command = netns.command("gdb");
            if let Some(file) = batch {
                command.arg("-batch").arg("-x").arg(file);
            }
            command.arg("--args").arg(&exe).args(&args);
            command
        }
    };
    eprintln!("mote: {app} {} (network namespace {})", args.join(" "), netns.name);
    let mut child = command.spawn().map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let pid = child.id();
    let under_gdb = opts.gdb.is_some();
    // gdb takes Ctrl-C itself (it stops the app); otherwise it asks the app to shut down.
    if let Err(e) = ctrlc::set_handler(move || {
        if !under_gdb {
            signal(pid, libc::SIGTERM);
        }
    }) {
        eprintln!("mote: warning: cannot take Ctrl-C ({e}); the app gets no shutdown request from it");
    }
    let started = std::time::Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for {app}: {e}")),
        }
        if !timed_out && opts.timeout.is_some_and(|t| started.elapsed() >= t) {
            eprintln!("mote: {app} still running after {:?}: asking it to shut down", started.elapsed());
            signal(pid, libc::SIGTERM);
            timed_out = true;
        }
        thread::sleep(STOP_CHECK);
    };
    drop(relays);
    drop(netns);
    println!("mote: {app} (hosted) exited: {status}");
    Ok(if status.success() && !timed_out {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_command_line_has_the_namespace_address_then_the_users_arguments() {
        let meta = AppMeta { memory_mib: 4, ..AppMeta::default() };
        let user = ["log=debug".to_owned(), "ip=10.0.0.9/24".to_owned()];
        let args = app_args(&meta, None, &user).unwrap();
        assert_eq!(args, ["ip=10.0.0.2/24", "tap=mote0", "memory=4", "log=debug", "ip=10.0.0.9/24"]);
        let image = std::env::temp_dir().join(format!("mote-hosted-test-{}.img", std::process::id()));
        std::fs::write(&image, b"").unwrap();
        let want = format!("disk={}", image.canonicalize().unwrap().display());
        let args = app_args(&meta, Some(&image), &[]).unwrap();
        std::fs::remove_file(&image).unwrap();
        assert_eq!(args[3], want);
        assert!(app_args(&meta, Some(Path::new("/nonexistent/mote.img")), &[]).is_err());
    }
}
