//! Client of `mote-agent`, the dom0 side of the harness (docs/harness-protocol.md).
//!
//! One TCP connection carries one request (`EXEC`, `PUT` or `TUNNEL`); the agent answers with
//! frames of one tag byte, a big-endian `u32` length and the payload.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// Frame tag: a chunk of command output.
const TAG_OUTPUT: u8 = b'o';
/// Frame tag: the end of a request; the payload is the exit status in ASCII decimal.
const TAG_EXIT: u8 = b'x';
/// Frame tag: the agent failed; the payload is the message.
const TAG_ERROR: u8 = b'e';
/// Largest frame payload accepted: the agent sends output in 64 KiB chunks, anything much
/// larger means the stream is out of step.
const MAX_PAYLOAD: u32 = 16 << 20;
/// How long to wait for the TCP connection (QEMU's forward answers at once when it is up).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One decoded reply frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A chunk of the command's output (stdout and stderr merged).
    Output(Vec<u8>),
    /// The request ended with this exit status.
    Exit(i32),
    /// The agent itself failed.
    Error(String),
}

/// Reads one frame; `Ok(None)` on a clean end-of-file before the tag byte.
pub fn read_frame(input: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut tag = [0u8; 1];
    loop {
        match input.read(&mut tag) {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len > MAX_PAYLOAD {
        return Err(bad_data(format!("frame of {len} bytes (tag {:?}): stream out of step", tag[0] as char)));
    }
    let mut payload = vec![0; len as usize];
    input.read_exact(&mut payload)?;
    let text = || String::from_utf8_lossy(&payload).into_owned();
    match tag[0] {
        TAG_OUTPUT => Ok(Some(Frame::Output(payload))),
        TAG_EXIT => {
            let status =
                text().trim().parse().map_err(|_| bad_data(format!("bad exit status {:?}", text())))?;
            Ok(Some(Frame::Exit(status)))
        }
        TAG_ERROR => Ok(Some(Frame::Error(text()))),
        other => Err(bad_data(format!("unknown frame tag 0x{other:02x}"))),
    }
}

fn bad_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Quotes `s` for `/bin/sh` (single quotes; embedded ones as `'\''`).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What a streaming `EXEC` reports.
#[derive(Debug)]
pub enum Event {
    Output(Vec<u8>),
    /// The command ended with this status; nothing follows.
    Exit(i32),
    /// The agent reported a failure, the connection broke, or it closed without an exit
    /// status; nothing follows.
    Failed(String),
}

/// A running `EXEC`. Dropping it (or [`Exec::cancel`]) closes the connection, which makes the
/// agent kill the command's process group.
pub struct Exec {
    socket: TcpStream,
}

impl Exec {
    /// Closes the connection: the agent kills the command.
    pub fn cancel(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// The agent in the harness's dom0, reached through QEMU's port forward.
#[derive(Clone, Copy, Debug)]
pub struct Agent {
    addr: SocketAddr,
}

impl Agent {
    pub fn new(port: u16) -> Agent {
        Agent { addr: SocketAddr::from(([127, 0, 0, 1], port)) }
    }

    fn connect(&self) -> Result<TcpStream, String> {
        let stream = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT)
            .map_err(|e| format!("cannot connect to the dom0 agent at {}: {e}", self.addr))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Starts `command` in dom0; its output and exit status arrive on `tx` as `(tag, event)`
    /// pairs, so that several commands can share one receiver. An `Exit` or `Failed` event is
    /// the last one.
    pub fn spawn<T: Copy + Send + 'static>(
        &self,
        command: &str,
        tag: T,
        tx: Sender<(T, Event)>,
    ) -> Result<Exec, String> {
        let mut stream = self.connect()?;
        stream
            .write_all(format!("EXEC {command}\n").as_bytes())
            .map_err(|e| format!("sending EXEC to the agent: {e}"))?;
        let mut reader = stream.try_clone().map_err(|e| format!("clone socket: {e}"))?;
        thread::spawn(move || loop {
            let event = match read_frame(&mut reader) {
                Ok(Some(Frame::Output(chunk))) => Event::Output(chunk),
                Ok(Some(Frame::Exit(status))) => Event::Exit(status),
                Ok(Some(Frame::Error(message))) => Event::Failed(format!("agent error: {message}")),
                Ok(None) => Event::Failed("agent closed the connection without an exit status".into()),
                Err(e) => Event::Failed(format!("reading from the agent: {e}")),
            };
            let last = !matches!(event, Event::Output(_));
            if tx.send((tag, event)).is_err() || last {
                return;
            }
        });
        Ok(Exec { socket: stream })
    }

    /// Runs `command` in dom0 and collects its output; fails (and kills the command) after
    /// `timeout`.
    pub fn run(&self, command: &str, timeout: Duration) -> Result<(i32, String), String> {
        let (tx, events) = mpsc::channel();
        let _exec = self.spawn(command, (), tx)?;
        let deadline = Instant::now() + timeout;
        let mut output = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match events.recv_timeout(left).map(|(_, e)| e) {
                Ok(Event::Output(chunk)) => output.extend_from_slice(&chunk),
                Ok(Event::Exit(status)) => {
                    return Ok((status, String::from_utf8_lossy(&output).into_owned()))
                }
                Ok(Event::Failed(message)) => return Err(format!("dom0 `{command}`: {message}")),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("dom0 `{command}` did not finish within {}s", timeout.as_secs()))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("dom0 `{command}`: reader thread ended"))
                }
            }
        }
    }

    /// Runs `command` in dom0 and fails unless it exits with status 0.
    pub fn run_ok(&self, command: &str, timeout: Duration) -> Result<String, String> {
        match self.run(command, timeout)? {
            (0, output) => Ok(output),
            (status, output) => {
                Err(format!("dom0 `{command}` exited with status {status}: {}", output.trim_end()))
            }
        }
    }

    /// Writes `data` to `path` in dom0 with permission bits `mode`.
    pub fn put(&self, path: &str, data: &[u8], mode: u32, timeout: Duration) -> Result<(), String> {
        let mut stream = self.connect()?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|_| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| e.to_string())?;
        let context = |e: io::Error| format!("PUT {path}: {e}");
        stream.write_all(format!("PUT {path} {} {mode:o}\n", data.len()).as_bytes()).map_err(context)?;
        stream.write_all(data).map_err(context)?;
        match read_frame(&mut stream).map_err(context)? {
            Some(Frame::Exit(0)) => Ok(()),
            Some(Frame::Exit(status)) => Err(format!("PUT {path}: status {status}")),
            Some(Frame::Error(message)) => Err(format!("PUT {path}: agent error: {message}")),
            Some(Frame::Output(_)) => Err(format!("PUT {path}: unexpected output frame")),
            None => Err(format!("PUT {path}: agent closed the connection without an answer")),
        }
    }

    /// A raw byte stream to the Unix socket at `path` in dom0 (the agent's `TUNNEL`).
    pub fn tunnel(&self, path: &str) -> Result<TcpStream, String> {
        let mut stream = self.connect()?;
        let context = |e: io::Error| format!("TUNNEL {path}: {e}");
        stream.write_all(format!("TUNNEL {path}\n").as_bytes()).map_err(context)?;
        // Only the answer may take a while (the agent waits for the socket to appear).
        stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(context)?;
        let answer = read_frame(&mut stream).map_err(context)?;
        stream.set_read_timeout(None).map_err(context)?;
        match answer {
            Some(Frame::Exit(0)) => Ok(stream),
            Some(Frame::Error(message)) => Err(format!("TUNNEL {path}: agent error: {message}")),
            other => Err(format!("TUNNEL {path}: unexpected answer {other:?}")),
        }
    }

    /// Whether the agent answers a trivial command.
    pub fn ping(&self) -> Result<(), String> {
        self.run_ok("true", Duration::from_secs(10)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_a_reply() {
        let mut bytes = frame(b'o', b"hello\n");
        bytes.extend(frame(b'o', b""));
        bytes.extend(frame(b'x', b"3"));
        let mut input = &bytes[..];
        assert_eq!(read_frame(&mut input).unwrap(), Some(Frame::Output(b"hello\n".to_vec())));
        assert_eq!(read_frame(&mut input).unwrap(), Some(Frame::Output(Vec::new())));
        assert_eq!(read_frame(&mut input).unwrap(), Some(Frame::Exit(3)));
        assert_eq!(read_frame(&mut input).unwrap(), None);
    }

    #[test]
    fn decodes_errors_and_signal_statuses() {
        let mut input = &frame(b'e', b"bad request")[..];
        assert_eq!(read_frame(&mut input).unwrap(), Some(Frame::Error("bad request".into())));
        let mut input = &frame(b'x', b"143")[..];
        assert_eq!(read_frame(&mut input).unwrap(), Some(Frame::Exit(143)));
    }

    #[test]
    fn rejects_malformed_frames() {
        // Truncated payload.
        assert!(read_frame(&mut &b"o\0\0\0\x05hel"[..]).is_err());
        // Truncated header.
        assert!(read_frame(&mut &b"x\0\0"[..]).is_err());
        // Unknown tag, bad status, absurd length.
        assert!(read_frame(&mut &frame(b'q', b"")[..]).is_err());
        assert!(read_frame(&mut &frame(b'x', b"zero")[..]).is_err());
        assert!(read_frame(&mut &b"o\xff\xff\xff\xff"[..]).is_err());
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(r#"extra="x=1""#), r#"'extra="x=1"'"#);
    }
}
