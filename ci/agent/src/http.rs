//! `mote-agent http-check ADDR PATH CONNECTIONS REQUESTS`: many keep-alive HTTP/1.1 clients
//! at once. Opens CONNECTIONS connections (a few at a time, so that the server's backlog of
//! unaccepted ones stays short), each sending one `GET PATH` as soon as it is open (and those
//! open asked again now and then, so that none idles out meanwhile); once all are open, every
//! connection the server kept sends REQUESTS - 1 more, all written before any answer is read.
//! A connection the server refuses (a response with `Connection: close`) is counted by its
//! status. Prints how many connections were kept open at once and each status's count with the
//! length and FNV-1a digest of the 200 bodies, which must all be the same; exits non-zero on an
//! I/O error, a malformed response or differing bodies.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// No connect, read or write may take longer.
const STALL: Duration = Duration::from_secs(30);
/// Threads opening and driving connections; each connects one at a time.
const THREADS: usize = 8;
/// While connections are being opened, those already open are asked again this often: well
/// within the idle timeouts of servers (apps/web's is 30 s).
const REFRESH: Duration = Duration::from_secs(10);

/// One response as read.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    /// The server closes the connection after it.
    close: bool,
    body: Vec<u8>,
}

/// Reads one response with a `Content-Length` body.
fn read_answer(reader: &mut impl BufRead) -> io::Result<Answer> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(bad("connection closed before a response".into()));
    }
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let (mut length, mut close) = (None, false);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("connection closed in a response head".into()));
        }
        let field = line.trim_end();
        if field.is_empty() {
            break;
        }
        let (name, value) = field.split_once(':').ok_or_else(|| bad(format!("bad field {field:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| bad(format!("bad length {value:?}")))?);
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let length = length.ok_or_else(|| bad(format!("status {status} without Content-Length")))?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Answer { status, close, body })
}

/// A connection the server kept open, with its reader.
struct Open {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

fn connect(addr: SocketAddr) -> io::Result<Open> {
    let stream = TcpStream::connect_timeout(&addr, STALL)?;
    stream.set_read_timeout(Some(STALL))?;
    stream.set_write_timeout(Some(STALL))?;
    Ok(Open { reader: BufReader::new(stream.try_clone()?), writer: stream })
}

/// What all connections saw: answers by status, the 200 body, errors.
#[derive(Default)]
struct Tally {
    /// Connections the server kept open, all open at once once every thread has opened its share.
    kept: usize,
    statuses: BTreeMap<u16, u64>,
    body: Option<Vec<u8>>,
    errors: Vec<String>,
}

impl Tally {
    fn record(&mut self, answer: &Answer) {
        *self.statuses.entry(answer.status).or_default() += 1;
        if answer.status == 200 {
            match &self.body {
                None => self.body = Some(answer.body.clone()),
                Some(body) if *body != answer.body => self
                    .errors
                    .push(format!("a 200 body of {} bytes differs from the first", answer.body.len())),
                Some(_) => {}
            }
        }
    }
}

/// One thread's connections: opened and asked once each, then (after every thread has opened
/// its share) asked `requests - 1` more times. While it opens, the ones already open are asked
/// again every [`REFRESH`], so that none sits idle long enough for the server to close it.
fn drive(
    addr: SocketAddr,
    request: &[u8],
    count: usize,
    requests: u64,
    opened: &Barrier,
    tally: &Mutex<Tally>,
) {
    let mut kept = Vec::new();
    let fail = |e: String| tally.lock().unwrap().errors.push(e);
    let mut refreshed = Instant::now();
    for _ in 0..count {
        if refreshed.elapsed() >= REFRESH {
            ask_all(&mut kept, request, tally);
            refreshed = Instant::now();
        }
        let first = connect(addr).and_then(|mut open| {
            open.writer.write_all(request)?;
            let answer = read_answer(&mut open.reader)?;
            Ok((open, answer))
        });
        match first {
            Ok((open, answer)) => {
                tally.lock().unwrap().record(&answer);
                if !answer.close {
                    kept.push(open);
                }
            }
            Err(e) => fail(format!("first request: {e}")),
        }
    }
    tally.lock().unwrap().kept += kept.len();
    opened.wait();
    for _ in 1..requests {
        ask_all(&mut kept, request, tally);
    }
}

/// Sends `request` on every connection, then reads every answer.
fn ask_all(kept: &mut [Open], request: &[u8], tally: &Mutex<Tally>) {
    let fail = |e: String| tally.lock().unwrap().errors.push(e);
    for open in kept.iter_mut() {
        if let Err(e) = open.writer.write_all(request) {
            fail(format!("write: {e}"));
        }
    }
    for open in kept.iter_mut() {
        match read_answer(&mut open.reader) {
            Ok(answer) => tally.lock().unwrap().record(&answer),
            Err(e) => fail(format!("read: {e}")),
        }
    }
}

/// Lets this process hold as many sockets as its hard limit allows (the soft limit is often 1024).
fn raise_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn check(addr: SocketAddr, path: &str, connections: usize, requests: u64) -> Result<String, String> {
    raise_file_limit();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: mote-agent\r\n\r\n").into_bytes();
    let threads = THREADS.min(connections);
    let opened = Arc::new(Barrier::new(threads));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let count = connections / threads + usize::from(i < connections % threads);
            let (request, opened, tally) = (request.clone(), opened.clone(), tally.clone());
            thread::spawn(move || drive(addr, &request, count, requests, &opened, &tally))
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| "a client thread panicked".to_owned())?;
    }
    let secs = started.elapsed().as_secs_f64();
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    if !tally.errors.is_empty() {
        let shown: Vec<&str> = tally.errors.iter().take(5).map(String::as_str).collect();
        return Err(format!("{} errors, the first: {}", tally.errors.len(), shown.join("; ")));
    }
    let statuses: Vec<String> = tally.statuses.iter().map(|(status, n)| format!("{n} x {status}")).collect();
    let body = tally.body.unwrap_or_default();
    let digest =
        body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    Ok(format!(
        "http-check: {connections} connections to {addr}{path}, {} kept open at once, each asked at least {requests} times, in {secs:.1} s: {}; 200 body {} bytes, fnv64 {digest:016x}",
        tally.kept,
        statuses.join(", "),
        body.len()
    ))
}

/// `http-check`; the exit status.
pub fn main(args: &[String]) -> i32 {
    let parsed = match args {
        [addr, path, connections, requests] => match (addr.parse(), connections.parse(), requests.parse()) {
            (Ok(a), Ok(c @ 1..), Ok(r @ 1..)) if path.starts_with('/') => Some((a, path, c, r)),
            _ => None,
        },
        _ => None,
    };
    let Some((addr, path, connections, requests)) = parsed else {
        eprintln!("usage: mote-agent http-check IP:PORT /PATH CONNECTIONS REQUESTS");
        return 2;
    };
    match check(addr, path, connections, requests) {
        Ok(report) => {
            println!("{report}");
            0
        }
        Err(e) => {
            eprintln!("http-check: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn reads_responses_with_and_without_close() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 4\r\n\r\nbusy";
        let mut reader = &input[..];
        assert_eq!(
            read_answer(&mut reader).unwrap(),
            Answer { status: 200, close: false, body: b"abc".to_vec() }
        );
        assert_eq!(
            read_answer(&mut reader).unwrap(),
            Answer { status: 503, close: true, body: b"busy".to_vec() }
        );
        assert!(read_answer(&mut reader).is_err());
        assert!(read_answer(&mut &b"HTTP/1.1 200 OK\r\n\r\n"[..]).is_err());
        assert!(read_answer(&mut &b"SSH-2.0\r\n"[..]).is_err());
    }

    /// A server that keeps `limit` connections and refuses the others with 503.
    fn server(limit: usize) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for (i, s) in l.incoming().enumerate() {
                let mut s = s.unwrap();
                thread::spawn(move || {
                    let mut reader = BufReader::new(s.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 {
                        if line == "\r\n" {
                            let answer: &[u8] = if i < limit {
                                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                            } else {
                                b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                            };
                            s.write_all(answer).unwrap();
                            if i >= limit {
                                return;
                            }
                        }
                        line.clear();
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn counts_served_and_refused_connections() {
        let report = check(server(10), "/", 13, 3).unwrap();
        assert!(report.contains(", 10 kept open at once,"), "{report}");
        assert!(report.contains(": 30 x 200, 3 x 503; 200 body 5 bytes, fnv64 "), "{report}");
    }
}
