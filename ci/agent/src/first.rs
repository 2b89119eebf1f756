//! `mote-agent first-answer KIND ADDR [ARG] SECONDS`: asks a service that is still booting,
//! every [`EVERY`], until it answers correctly, then prints `first_answer_ms=N` with N the
//! dom0 uptime in milliseconds (`/proc/uptime`, the clock of the benchmark's shell) at that
//! answer. One process probes the whole time, so every guest is timed by the same program with
//! the same period, instead of by one `dig`, `curl` or agent process per try, whose start
//! alone takes a good part of a second in an emulated dom0.
//!
//! KIND is `udp-echo` (a datagram that must come back unchanged), `dns NAME` (an `A` query for
//! NAME that must get a NOERROR response with an answer) or `http PATH` (a `GET` that must get a
//! `200`). Exits 1 when SECONDS pass without an answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

/// Time between two tries.
const EVERY: Duration = Duration::from_millis(50);
/// How long one try waits for its answer: the tries overlap no more than this allows.
const TRY_LIMIT: Duration = Duration::from_millis(300);

/// What answers the benchmark's guests give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    UdpEcho,
    Dns(String),
    Http(String),
}

/// A DNS query (RFC 1035 §4.1) with `id` for `name`'s `A` record, recursion not desired;
/// `None` when a label is empty or longer than 63 bytes.
pub fn dns_query(id: u16, name: &str) -> Option<Vec<u8>> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    Some(q)
}

/// Whether `reply` answers query `id`: QR set, RCODE NOERROR, at least one answer record.
pub fn dns_answers(reply: &[u8], id: u16) -> bool {
    reply.len() >= 12
        && reply[..2] == id.to_be_bytes()
        && reply[2] & 0x80 != 0
        && reply[3] & 0x0f == 0
        && u16::from_be_bytes([reply[6], reply[7]]) > 0
}

/// Whether an HTTP response starts with a `200` status line.
pub fn http_ok(head: &[u8]) -> bool {
    head.starts_with(b"HTTP/1.1 200 ") || head.starts_with(b"HTTP/1.0 200 ")
}

/// One try: whether `addr` answered `probe` correctly within [`TRY_LIMIT`].
fn try_once(probe: &Probe, addr: SocketAddr, id: u16) -> bool {
    let udp = |datagram: &[u8], check: &dyn Fn(&[u8]) -> bool| -> bool {
        let Ok(socket) = UdpSocket::bind("0.0.0.0:0") else { return false };
        if socket.connect(addr).is_err()
            || socket.set_read_timeout(Some(TRY_LIMIT)).is_err()
            || socket.send(datagram).is_err()
        {
            return false;
        }
        let mut buf = [0u8; 1500];
        matches!(socket.recv(&mut buf), Ok(n) if check(&buf[..n]))
    };
    match probe {
        Probe::UdpEcho => {
            let msg = format!("mote first-answer {id}");
            udp(msg.as_bytes(), &|reply| reply == msg.as_bytes())
        }
        Probe::Dns(name) => match dns_query(id, name) {
            Some(query) => udp(&query, &|reply| dns_answers(reply, id)),
            None => false,
        },
        Probe::Http(path) => {
            let Ok(mut stream) = TcpStream::connect_timeout(&addr, TRY_LIMIT) else { return false };
            let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", addr.ip());
            if stream.set_read_timeout(Some(TRY_LIMIT)).is_err()
                || stream.write_all(request.as_bytes()).is_err()
            {
                return false;
            }
            let mut head = [0u8; 16];
            stream.read_exact(&mut head).is_ok() && http_ok(&head)
        }
    }
}

/// dom0's uptime in milliseconds.
fn uptime_ms() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some((secs * 1000.0) as u64)
}

/// Parses `KIND ADDR [ARG] SECONDS`.
pub fn parse(args: &[String]) -> Option<(Probe, SocketAddr, Duration)> {
    let (probe, addr, secs) = match args {
        [kind, addr, secs] if kind == "udp-echo" => (Probe::UdpEcho, addr, secs),
        [kind, addr, name, secs] if kind == "dns" => (Probe::Dns(name.clone()), addr, secs),
        [kind, addr, path, secs] if kind == "http" && path.starts_with('/') => {
            (Probe::Http(path.clone()), addr, secs)
        }
        _ => return None,
    };
    if let Probe::Dns(name) = &probe {
        dns_query(0, name)?;
    }
    Some((probe, addr.parse().ok()?, Duration::from_secs(secs.parse().ok()?)))
}

/// `first-answer`; the exit status.
pub fn main(args: &[String]) -> i32 {
    let Some((probe, addr, limit)) = parse(args) else {
        eprintln!("usage: mote-agent first-answer udp-echo IP:PORT SECONDS | dns IP:PORT NAME SECONDS | http IP:PORT /PATH SECONDS");
        return 2;
    };
    let started = Instant::now();
    let mut id: u16 = 0;
    while started.elapsed() < limit {
        let tried = Instant::now();
        id = id.wrapping_add(1);
        if try_once(&probe, addr, id) {
            return match uptime_ms() {
                Some(ms) => {
                    println!("first_answer_ms={ms} ");
                    0
                }
                None => {
                    eprintln!("first-answer: cannot read /proc/uptime");
                    1
                }
            };
        }
        thread::sleep(EVERY.saturating_sub(tried.elapsed()));
    }
    eprintln!("first-answer: no answer from {addr} in {} s", limit.as_secs());
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn builds_a_query_and_recognises_its_answer() {
        let q = dns_query(0x1234, "www.example.com.").unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 0, 0]);
        assert_eq!(&q[12..], b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        let mut reply = q.clone();
        reply[2] = 0x84;
        assert!(!dns_answers(&reply, 0x1234), "no answer record");
        reply[7] = 1;
        assert!(dns_answers(&reply, 0x1234));
        assert!(!dns_answers(&reply, 0x1235), "another query's id");
        reply[3] = 3;
        assert!(!dns_answers(&reply, 0x1234), "NXDOMAIN");
        assert!(!dns_answers(&q, 0x1234), "the query itself, QR clear");
        assert!(dns_query(1, "a..b").is_none());
        assert!(dns_query(1, &"x".repeat(64)).is_none());
    }

    #[test]
    fn parses_each_kind_and_refuses_the_rest() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let (p, a, d) = parse(&args("dns 10.0.0.2:53 www.example.com 60")).unwrap();
        assert_eq!((p, a.port(), d.as_secs()), (Probe::Dns("www.example.com".into()), 53, 60));
        assert_eq!(parse(&args("http 10.0.0.3:80 / 5")).unwrap().0, Probe::Http("/".into()));
        assert_eq!(parse(&args("udp-echo 10.0.0.50:7 5")).unwrap().0, Probe::UdpEcho);
        assert!(parse(&args("http 10.0.0.3:80 index.html 5")).is_none());
        assert!(parse(&args("dns 10.0.0.2:53 a..b 5")).is_none());
        assert!(parse(&args("udp-echo 10.0.0.50 5")).is_none(), "no port");
        assert!(parse(&args("ping 10.0.0.50:7 5")).is_none());
    }

    #[test]
    fn waits_for_a_server_that_starts_late_and_gives_up_on_a_silent_one() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let server = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            let l = TcpListener::bind(addr).unwrap();
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        });
        let args = ["http".into(), addr.to_string(), "/".into(), "10".into()];
        assert_eq!(main(&args), 0);
        server.join().unwrap();
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let args = ["udp-echo".into(), silent.local_addr().unwrap().to_string(), "1".into()];
        assert_eq!(main(&args), 1);
    }
}
