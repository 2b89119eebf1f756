//! `mote-agent`: the dom0 end of the harness protocol (docs/harness-protocol.md).
//!
//! dom0's `/init` starts it; `cargo xtask` connects through QEMU's port forward. One TCP
//! connection carries one request:
//!
//! - `EXEC <shell command>\n`: run `/bin/sh -c <command>` in a new process group, stdin from
//!   /dev/null, stdout and stderr merged into one pipe and streamed back as `o` frames, then an
//!   `x` frame with the exit status. If the client's side of the socket reaches end-of-file
//!   before that, the whole process group is killed.
//! - `PUT <absolute path> <length> <octal mode>\n<length bytes>`: write the file through a
//!   temporary name and a rename (parents created), then answer `x` `0`. Blocks of zeros become
//!   holes.
//! - `TUNNEL <absolute path>\n`: connect to the Unix socket at that path (waiting up to 10 s
//!   for it to appear in its existing directory), answer `x` `0`, and from then on relay raw bytes both ways (what
//!   `cargo xtask debug` carries gdb's connection through).
//!
//! Replies are frames: a tag byte, a big-endian `u32` length, the payload. `e` reports a failure
//! of the agent itself (bad request, spawn or I/O error).
//!
//! Usage: `mote-agent [PORT]` (default 7000, listening on 0.0.0.0). Two subcommands serve
//! tests in dom0: `mote-agent follow FILE` (below), `mote-agent gnt-map …` ([`gnt`]) and
//! `mote-agent forward …` ([`forward`]), `mote-agent tcp-check|udp-check|discard-check …`
//! ([`check`]), `mote-agent http-check …` ([`http`]), `mote-agent isn-sample …` ([`isn`]);
//! and `mote-agent echo-server …` ([`echo`]) is the Linux benchmark guest's service, `mote-agent disk-bench …` ([`disk_bench`]) its disk
//! measurement.

mod burst;
mod check;
mod disk_bench;
mod echo;
mod first;
mod forward;
mod gnt;
mod http;
mod isn;

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// The port used when none is given on the command line.
const DEFAULT_PORT: u16 = 7000;
/// Longest request line accepted (the command of an `EXEC` included).
const MAX_REQUEST_LINE: u64 = 64 * 1024;
/// Size of the reads from the command's output pipe, and so the largest `o` frame.
const OUTPUT_CHUNK: usize = 64 * 1024;
/// After the shell has exited, how long to wait for its output pipe to close. A background
/// process that keeps the pipe open (`daemon &`) must not hold the reply forever.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Frame tag: a chunk of command output.
pub const TAG_OUTPUT: u8 = b'o';
/// Frame tag: the end of a request; the payload is the exit status in ASCII decimal.
pub const TAG_EXIT: u8 = b'x';
/// Frame tag: the agent failed; the payload is the message.
pub const TAG_ERROR: u8 = b'e';

/// The `IP:PORT COUNT` arguments of the raw-socket commands (`bad-udp-burst`, `isn-sample`).
fn address_and_count(args: &[String]) -> Option<(std::net::SocketAddrV4, u32)> {
    match args {
        [addr, count] => addr.parse().ok().zip(count.parse().ok()),
        _ => None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, path] = args.as_slice() {
        if cmd == "follow" {
            follow(Path::new(path), &mut io::stdout().lock(), FOLLOW_POLL);
            return;
        }
    }
    if args.first().is_some_and(|cmd| cmd == "gnt-map") {
        std::process::exit(gnt::main(&args[1..]));
    }
    if args.first().is_some_and(|cmd| cmd == "forward") {
        std::process::exit(forward::main(&args[1..]));
    }
    if let Some(cmd @ ("tcp-check" | "udp-check" | "discard-check")) = args.first().map(String::as_str) {
        std::process::exit(check::main(cmd, &args[1..]));
    }
    if args.first().is_some_and(|cmd| cmd == "http-check") {
        std::process::exit(http::main(&args[1..]));
    }
    if args.first().is_some_and(|cmd| cmd == "echo-server") {
        std::process::exit(echo::main(&args[1..]));
    }
    if args.first().is_some_and(|cmd| cmd == "first-answer") {
        std::process::exit(first::main(&args[1..]));
    }
    if args.first().is_some_and(|cmd| cmd == "bad-udp-burst") {
        std::process::exit(burst::main(&args[1..]));
    }
    if args.first().is_some_and(|cmd| cmd == "isn-sample") {
        std::process::exit(isn::main(&args[1..]));
    }
    if args.first().is_some_and(|cmd| cmd == "disk-bench") {
        std::process::exit(disk_bench::main(&args[1..]));
    }
    let port = match args.first() {
        None => DEFAULT_PORT,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("mote-agent: bad port {arg:?}; usage: mote-agent [PORT] | mote-agent follow FILE | mote-agent gnt-map … | mote-agent forward … | mote-agent tcp-check|udp-check|discard-check … | mote-agent http-check … | mote-agent echo-server ECHO_PORT DISCARD_PORT | mote-agent disk-bench DEVICE BYTES READS | mote-agent bad-udp-burst IP:PORT COUNT | mote-agent first-answer KIND IP:PORT [ARG] SECONDS");
            std::process::exit(2);
        }),
    };
    let listener = TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| {
        eprintln!("mote-agent: cannot listen on port {port}: {e}");
        std::process::exit(1);
    });
    eprintln!("mote-agent: listening on port {port}");
    serve(listener);
}

/// How often `follow` looks for new bytes: often enough that a guest's
/// console reaches the host as it is written (busybox `tail -F` checks once a
/// second), rarely enough to cost dom0 nothing.
const FOLLOW_POLL: Duration = Duration::from_millis(20);

/// `mote-agent follow FILE`: copies FILE to `out` from the start, then keeps
/// copying what is appended; waits for FILE to exist. Runs until killed (the
/// agent kills it when the client disconnects) or `out` fails.
fn follow(path: &Path, out: &mut impl Write, poll: Duration) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut file = loop {
        match std::fs::File::open(path) {
            Ok(f) => break f,
            Err(_) => thread::sleep(poll),
        }
    };
    loop {
        match file.read(&mut buf) {
            Ok(0) => {
                if out.flush().is_err() {
                    return;
                }
                thread::sleep(poll);
            }
            Ok(n) => {
                if out.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) => {
                eprintln!("mote-agent follow: {}: {e}", path.display());
                return;
            }
        }
    }
}

/// Accepts connections forever, one thread each.
fn serve(listener: TcpListener) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                thread::spawn(move || handle(stream));
            }
            Err(e) => eprintln!("mote-agent: accept: {e}"),
        }
    }
}

/// Writes one frame: tag, big-endian `u32` payload length, payload.
pub fn write_frame(out: &mut impl Write, tag: u8, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame payload too long"))?;
    let mut header = [0u8; 5];
    header[0] = tag;
    header[1..].copy_from_slice(&len.to_be_bytes());
    out.write_all(&header)?;
    out.write_all(payload)
}

/// Reads one frame; `Ok(None)` on a clean end-of-file before the tag byte.
pub fn read_frame(input: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    match input.read(&mut header[..1])? {
        0 => return Ok(None),
        _ => input.read_exact(&mut header[1..])?,
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let mut payload = vec![0; len as usize];
    input.read_exact(&mut payload)?;
    Ok(Some((header[0], payload)))
}

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Run a shell command.
    Exec(String),
    /// Write `len` bytes that follow the line to `path` with permission bits `mode`.
    Put { path: String, len: u64, mode: u32 },
    /// Relay the connection to the Unix socket at this path.
    Tunnel(String),
}

/// Parses a request line (without its `\n`).
pub fn parse_request(line: &str) -> Result<Request, String> {
    if let Some(command) = line.strip_prefix("EXEC ") {
        return Ok(Request::Exec(command.to_owned()));
    }
    if let Some(args) = line.strip_prefix("PUT ") {
        // Split from the right so that the path may contain spaces.
        let mut fields = args.rsplitn(3, ' ');
        let (Some(mode), Some(len), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!("PUT needs <path> <length> <mode>: {line:?}"));
        };
        let len = len.parse().map_err(|_| format!("bad PUT length {len:?}"))?;
        let mode = u32::from_str_radix(mode, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| format!("bad PUT mode {mode:?}"))?;
        if !path.starts_with('/') {
            return Err(format!("PUT path must be absolute: {path:?}"));
        }
        return Ok(Request::Put { path: path.to_owned(), len, mode });
    }
    if let Some(path) = line.strip_prefix("TUNNEL ") {
        if !path.starts_with('/') {
            return Err(format!("TUNNEL path must be absolute: {path:?}"));
        }
        return Ok(Request::Tunnel(path.to_owned()));
    }
    Err(format!("unknown request {line:?}"))
}

/// Serves one connection: reads the request, runs it, answers, closes.
fn handle(stream: TcpStream) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(e) => return eprintln!("mote-agent: clone socket: {e}"),
    });
    let mut writer = stream;
    let result = read_request(&mut reader).and_then(|request| match request {
        Request::Exec(command) => exec(&command, reader, &mut writer),
        Request::Put { path, len, mode } => {
            put(Path::new(&path), len, mode, &mut reader)?;
            Ok(write_frame(&mut writer, TAG_EXIT, b"0")?)
        }
        Request::Tunnel(path) => tunnel(Path::new(&path), reader, &mut writer),
    });
    if let Err(message) = result {
        // Best effort: the client may be gone already.
        let _ = write_frame(&mut writer, TAG_ERROR, message.to_string().as_bytes());
    }
    // Also wakes the EXEC watcher thread, which holds a clone of the socket.
    let _ = writer.shutdown(Shutdown::Both);
}

/// How long `TUNNEL` waits for its socket to appear and accept.
const TUNNEL_CONNECT: Duration = Duration::from_secs(10);

/// `TUNNEL`: relays the client's connection to the Unix socket at `path`
/// until either side closes. The socket may not exist yet (its server is
/// starting): the connection is retried for [`TUNNEL_CONNECT`].
fn tunnel(path: &Path, mut reader: BufReader<TcpStream>, writer: &mut TcpStream) -> Result<(), AgentError> {
    let deadline = std::time::Instant::now() + TUNNEL_CONNECT;
    let upstream = loop {
        match UnixStream::connect(path) {
            Ok(s) => break s,
            // No such directory: nothing is about to create the socket there.
            Err(e) if std::time::Instant::now() >= deadline || !path.parent().is_some_and(Path::exists) => {
                return Err(AgentError::Message(format!("TUNNEL {}: {e}", path.display())))
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    };
    write_frame(writer, TAG_EXIT, b"0")?;
    let mut up_write = upstream.try_clone()?;
    // Bytes the client sent right after the request line are already buffered.
    up_write.write_all(reader.buffer())?;
    let buffered = reader.buffer().len();
    reader.consume(buffered);
    let mut client_read = reader.into_inner();
    let up = thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut up_write);
        let _ = up_write.shutdown(Shutdown::Write);
    });
    let mut up_read = upstream;
    let _ = io::copy(&mut up_read, writer);
    let _ = writer.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// Reads and parses the request line.
fn read_request(reader: &mut impl BufRead) -> Result<Request, AgentError> {
    let mut line = Vec::new();
    reader.take(MAX_REQUEST_LINE).read_until(b'\n', &mut line)?;
    if line.pop() != Some(b'\n') {
        return Err(AgentError::Message("request line missing or too long".into()));
    }
    let line =
        String::from_utf8(line).map_err(|_| AgentError::Message("request line is not UTF-8".into()))?;
    Ok(parse_request(&line)?)
}

/// Why a request failed. Errors writing to the client end the request silently (there is no
/// one to tell); the others are reported in an `e` frame.
enum AgentError {
    Message(String),
    Io(io::Error),
}

impl From<String> for AgentError {
    fn from(message: String) -> Self {
        AgentError::Message(message)
    }
}

impl From<io::Error> for AgentError {
    fn from(e: io::Error) -> Self {
        AgentError::Io(e)
    }
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentError::Message(m) => f.write_str(m),
            AgentError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// What the threads of an `EXEC` report to the one that writes frames.
enum Event {
    Output(Vec<u8>),
    OutputEnd,
    Exited(ExitStatus),
    ClientGone,
}

/// Runs `command`, streaming its output to `client`; `socket` is the client's side, watched for
/// end-of-file.
fn exec(
    command: &str,
    socket: impl Read + Send + 'static,
    client: &mut impl Write,
) -> Result<(), AgentError> {
    let (mut output, output_writer) = io::pipe()?;
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(output_writer.try_clone()?)
        .stderr(output_writer)
        .process_group(0)
        .spawn()
        .map_err(|e| AgentError::Message(format!("spawn /bin/sh: {e}")))?;
    // The Command (and with it our copies of the pipe's write end) is dropped: the pipe reaches
    // end-of-file once the command and everything it started have closed it.
    let pgid = child.id() as i32;
    let (events, inbox) = mpsc::channel();

    let tx = events.clone();
    thread::spawn(move || {
        let mut buf = vec![0; OUTPUT_CHUNK];
        loop {
            match output.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Event::Output(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(Event::OutputEnd);
    });

    let tx = events.clone();
    thread::spawn(move || {
        // Clients send nothing after the request: any read that returns means "gone".
        let mut socket = socket;
        let _ = socket.read(&mut [0u8; 64]);
        let _ = tx.send(Event::ClientGone);
    });

    thread::spawn(move || {
        if let Ok(status) = child.wait() {
            let _ = events.send(Event::Exited(status));
        }
    });

    let mut status = None;
    let mut output_open = true;
    while status.is_none() || output_open {
        let event = if status.is_some() {
            match inbox.recv_timeout(DRAIN_GRACE) {
                Ok(event) => event,
                Err(_) => break,
            }
        } else {
            inbox.recv().expect("the waiter thread reports before it ends")
        };
        match event {
            Event::Output(chunk) => {
                if let Err(e) = write_frame(client, TAG_OUTPUT, &chunk) {
                    kill_group(pgid);
                    return Err(e.into());
                }
            }
            Event::OutputEnd => output_open = false,
            Event::Exited(s) => status = Some(s),
            Event::ClientGone => {
                kill_group(pgid);
                return Ok(());
            }
        }
    }
    let status = status.expect("loop ends only after the exit");
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(write_frame(client, TAG_EXIT, code.to_string().as_bytes())?)
}

/// Sends SIGKILL to the process group `pgid`, ignoring errors (it may have exited already).
fn kill_group(pgid: i32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGKILL: i32 = 9;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a negative pid names
    // the process group, which `process_group(0)` made equal to the shell's pid.
    unsafe {
        kill(-pgid, SIGKILL);
    }
}

/// Writes `len` bytes from `input` to `path` with permission bits `mode`: into a temporary file
/// beside it first, renamed over `path` once complete, so readers never see a partial file.
fn put(path: &Path, len: u64, mode: u32, input: &mut impl Read) -> Result<(), AgentError> {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let parent = path.parent().ok_or_else(|| format!("PUT path has no parent: {path:?}"))?;
    let name = path.file_name().ok_or_else(|| format!("PUT path has no file name: {path:?}"))?;
    fs::create_dir_all(parent)?;
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let tmp = parent.join(format!(".{}.mote-put.{}.{serial}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        let copied = copy_sparse(&mut input.take(len), &mut file)?;
        if copied != len {
            return Err(AgentError::Message(format!("PUT: got {copied} of {len} bytes")));
        }
        // Set explicitly: the mode given to open(2) would be filtered through the umask.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Copies `input` to the start of the empty `file`, leaving holes for the blocks that are all
/// zeros: on dom0's tmpfs they take no memory (a kernel's zeroed `.bss` is a third of its ELF
/// file). Returns the number of bytes copied.
fn copy_sparse(input: &mut impl Read, file: &mut fs::File) -> io::Result<u64> {
    const BLOCK: usize = 4096;
    let mut buf = vec![0u8; BLOCK];
    let mut copied = 0u64;
    loop {
        let mut n = 0;
        while n < BLOCK {
            match input.read(&mut buf[n..])? {
                0 => break,
                got => n += got,
            }
        }
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|&b| b == 0) {
            file.seek(io::SeekFrom::Current(n as i64))?;
        } else {
            file.write_all(&buf[..n])?;
        }
        copied += n as u64;
        if n < BLOCK {
            break;
        }
    }
    file.set_len(copied)?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    /// Collects what `follow` writes; fails once `limit` bytes arrived so that `follow` ends.
    struct Collect {
        got: Vec<u8>,
        limit: usize,
    }

    impl Write for Collect {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.got.extend_from_slice(b);
            if self.got.len() >= self.limit {
                return Err(io::Error::other("enough"));
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn follow_waits_for_the_file_and_copies_appended_bytes() {
        let dir = std::env::temp_dir().join(format!("mote-agent-follow-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("guest.log");
        let writer_path = path.clone();
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            fs::write(&writer_path, b"first\n").unwrap();
            thread::sleep(Duration::from_millis(50));
            let mut f = fs::OpenOptions::new().append(true).open(&writer_path).unwrap();
            f.write_all(b"second\n").unwrap();
        });
        let mut out = Collect { got: Vec::new(), limit: 13 };
        follow(&path, &mut out, Duration::from_millis(5));
        writer.join().unwrap();
        assert_eq!(out.got, b"first\nsecond\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    use super::*;
    use std::net::SocketAddr;
    use std::time::Instant;

    /// Starts an agent on a free loopback port.
    fn start_agent() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || serve(listener));
        addr
    }

    /// Sends `request` and reads every frame until the agent closes the connection.
    fn roundtrip(addr: SocketAddr, request: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request).unwrap();
        let mut frames = Vec::new();
        while let Some(frame) = read_frame(&mut stream).unwrap() {
            frames.push(frame);
        }
        frames
    }

    /// Splits a reply into the concatenated output and the final frame.
    fn output_and_end(frames: &[(u8, Vec<u8>)]) -> (Vec<u8>, (u8, String)) {
        let (last, chunks) = frames.split_last().expect("at least one frame");
        let mut output = Vec::new();
        for (tag, payload) in chunks {
            assert_eq!(*tag, TAG_OUTPUT);
            output.extend_from_slice(payload);
        }
        let end = (last.0, String::from_utf8(last.1.clone()).unwrap());
        (output, end)
    }

    fn scratch_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mote-agent-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn frame_roundtrip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, TAG_OUTPUT, b"hello").unwrap();
        write_frame(&mut buf, TAG_EXIT, b"").unwrap();
        assert_eq!(&buf[..10], b"o\0\0\0\x05hello");
        let mut input = &buf[..];
        assert_eq!(read_frame(&mut input).unwrap(), Some((TAG_OUTPUT, b"hello".to_vec())));
        assert_eq!(read_frame(&mut input).unwrap(), Some((TAG_EXIT, Vec::new())));
        assert_eq!(read_frame(&mut input).unwrap(), None);
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let mut input = &b"o\0\0\0\x05hel"[..];
        assert!(read_frame(&mut input).is_err());
    }

    #[test]
    fn parses_requests() {
        assert_eq!(parse_request("EXEC xl list"), Ok(Request::Exec("xl list".into())));
        assert_eq!(
            parse_request("PUT /tmp/a b 12 755"),
            Ok(Request::Put { path: "/tmp/a b".into(), len: 12, mode: 0o755 })
        );
        assert!(parse_request("PUT tmp/a 12 644").is_err());
        assert!(parse_request("PUT /tmp/a 12 999").is_err());
        assert!(parse_request("PUT /tmp/a x 644").is_err());
        assert!(parse_request("PUT /tmp/a").is_err());
        assert!(parse_request("RUN ls").is_err());
    }

    #[test]
    fn exec_merges_output_and_reports_status() {
        let addr = start_agent();
        let frames = roundtrip(addr, b"EXEC echo out; echo err >&2; exit 3\n");
        assert_eq!(output_and_end(&frames), (b"out\nerr\n".to_vec(), (TAG_EXIT, "3".into())));
    }

    #[test]
    fn exec_reports_signals_as_128_plus_n() {
        let addr = start_agent();
        let frames = roundtrip(addr, b"EXEC kill -TERM $$\n");
        assert_eq!(output_and_end(&frames), (Vec::new(), (TAG_EXIT, "143".into())));
    }

    #[test]
    fn exec_stdin_is_dev_null() {
        let addr = start_agent();
        let frames = roundtrip(addr, b"EXEC cat; echo done\n");
        assert_eq!(output_and_end(&frames), (b"done\n".to_vec(), (TAG_EXIT, "0".into())));
    }

    #[test]
    fn exec_does_not_wait_for_background_holders_of_the_pipe() {
        let addr = start_agent();
        let started = Instant::now();
        let frames = roundtrip(addr, b"EXEC sleep 30 & echo $$\n");
        assert!(started.elapsed() < Duration::from_secs(10));
        let (output, end) = output_and_end(&frames);
        assert_eq!(end, (TAG_EXIT, "0".into()));
        kill_group(String::from_utf8(output).unwrap().trim().parse().unwrap());
    }

    #[test]
    fn disconnect_kills_the_process_group() {
        let addr = start_agent();
        let mut stream = TcpStream::connect(addr).unwrap();
        // The shell waits for a background child: both must die.
        stream.write_all(b"EXEC sleep 60 & echo $!; wait\n").unwrap();
        let (tag, payload) = read_frame(&mut stream).unwrap().unwrap();
        assert_eq!(tag, TAG_OUTPUT);
        let pid: u32 = String::from_utf8(payload).unwrap().trim().parse().unwrap();
        drop(stream);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Gone, or a zombie waiting for whoever reaps orphans here.
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().unwrap_or("").trim_start().chars().next();
            if matches!(state, None | Some('Z') | Some('X')) {
                break;
            }
            assert!(Instant::now() < deadline, "background child {pid} still alive");
            thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn put_writes_file_with_mode_then_exec_reads_it() {
        let addr = start_agent();
        let dir = scratch_dir("put");
        let path = dir.join("sub dir/file.bin");
        let data = b"line one\nbinary \0\xff\n";
        let mut request = format!("PUT {} {} 750\n", path.display(), data.len()).into_bytes();
        request.extend_from_slice(data);
        assert_eq!(roundtrip(addr, &request), vec![(TAG_EXIT, b"0".to_vec())]);
        assert_eq!(fs::read(&path).unwrap(), data);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o750);

        let frames = roundtrip(addr, format!("EXEC cat '{}'\n", path.display()).as_bytes());
        let (output, end) = output_and_end(&frames);
        assert_eq!(output, data);
        assert_eq!(end, (TAG_EXIT, "0".into()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tunnel_relays_both_ways_to_a_unix_socket() {
        let addr = start_agent();
        let dir = scratch_dir("tunnel");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gdb.sock");
        let socket_path = path.clone();
        // The socket appears after the request: the agent waits for it.
        let server = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            let listener = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 8];
            s.read_exact(&mut buf).unwrap();
            buf.reverse();
            s.write_all(&buf).unwrap();
        });
        let mut stream = TcpStream::connect(addr).unwrap();
        // The first bytes travel in the same write as the request line.
        stream.write_all(format!("TUNNEL {}\n$g#6", path.display()).as_bytes()).unwrap();
        assert_eq!(read_frame(&mut stream).unwrap(), Some((TAG_EXIT, b"0".to_vec())));
        stream.write_all(b"+$?#").unwrap();
        let mut back = [0u8; 8];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"#?$+6#g$");
        server.join().unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tunnel_to_nothing_is_an_error() {
        let addr = start_agent();
        let frames = roundtrip(addr, b"TUNNEL /nonexistent/mote.sock\n");
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0, TAG_ERROR);
        assert!(parse_request("TUNNEL relative.sock").is_err());
    }

    #[test]
    fn put_leaves_holes_for_zero_blocks() {
        let addr = start_agent();
        let dir = scratch_dir("sparse");
        let path = dir.join("image");
        let mut data = vec![0u8; 1 << 20];
        data[5000] = 1;
        data.extend_from_slice(&[0u8; 100]);
        let mut request = format!("PUT {} {} 644\n", path.display(), data.len()).into_bytes();
        request.extend_from_slice(&data);
        assert_eq!(roundtrip(addr, &request), vec![(TAG_EXIT, b"0".to_vec())]);
        assert_eq!(fs::read(&path).unwrap(), data);
        let blocks = std::os::unix::fs::MetadataExt::blocks(&fs::metadata(&path).unwrap());
        assert!(blocks * 512 < 64 * 1024, "{blocks} blocks of 512 bytes allocated");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn short_put_leaves_no_file() {
        let addr = start_agent();
        let dir = scratch_dir("short");
        let path = dir.join("file");
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(format!("PUT {} 100 644\nonly this", path.display()).as_bytes()).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let (tag, _) = read_frame(&mut stream).unwrap().unwrap();
        assert_eq!(tag, TAG_ERROR);
        assert!(!path.exists());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_request_gets_an_error_frame() {
        let addr = start_agent();
        let frames = roundtrip(addr, b"HELLO\n");
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0, TAG_ERROR);
    }
}
