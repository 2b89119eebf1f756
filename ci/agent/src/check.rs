//! Clients that check an echo service from dom0:
//! `mote-agent tcp-check ADDR BYTES [CONNECTIONS]` sends BYTES of a
//! pseudo-random stream over each of CONNECTIONS concurrent connections and
//! checks that exactly the same bytes come back; `mote-agent udp-check ADDR
//! COUNT` sends COUNT numbered datagrams, checks each reply and prints the
//! round trips' minimum, median and 99th percentile; `mote-agent
//! discard-check ADDR BYTES` sends BYTES to a discard service and times
//! until the service has closed the connection after the last byte. All
//! print what they measured and exit non-zero on any mismatch or timeout.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

/// No single read may take longer: a stalled echo fails the check.
const STALL: Duration = Duration::from_secs(30);

/// The test stream: xorshift64* bytes, so both directions can be checked
/// without keeping the data; any split of the stream gives the same bytes.
struct Stream {
    state: u64,
    word: [u8; 8],
    used: usize,
}

impl Stream {
    fn new(seed: u64) -> Self {
        Stream { state: seed | 1, word: [0; 8], used: 8 }
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            if self.used == 8 {
                self.state ^= self.state >> 12;
                self.state ^= self.state << 25;
                self.state ^= self.state >> 27;
                self.word = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
                self.used = 0;
            }
            *b = self.word[self.used];
            self.used += 1;
        }
    }
}

/// FNV-1a over everything seen, to print a digest of each direction.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// One connection: writes `bytes` from seed `seed` while a reader checks the
/// echo; returns the digest of what was sent (= what came back).
fn tcp_one(stream: TcpStream, bytes: u64, seed: u64) -> io::Result<u64> {
    stream.set_read_timeout(Some(STALL))?;
    stream.set_write_timeout(Some(STALL))?;
    let mut writer = stream.try_clone()?;
    let sender = thread::spawn(move || -> io::Result<u64> {
        let mut gen = Stream::new(seed);
        let mut digest = Fnv::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            gen.fill(&mut buf[..n]);
            digest.update(&buf[..n]);
            writer.write_all(&buf[..n])?;
            left -= n as u64;
        }
        writer.shutdown(Shutdown::Write)?;
        Ok(digest.0)
    });
    let mut reader = stream;
    let mut expect = Stream::new(seed);
    let mut digest = Fnv::new();
    let (mut buf, mut want) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let mut got = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        expect.fill(&mut want[..n]);
        if buf[..n] != want[..n] {
            let at = buf[..n].iter().zip(&want[..n]).position(|(a, b)| a != b).unwrap_or(0);
            return Err(io::Error::other(format!("echo differs at byte {}", got + at as u64)));
        }
        digest.update(&buf[..n]);
        got += n as u64;
    }
    let sent = sender.join().map_err(|_| io::Error::other("sender panicked"))??;
    if got != bytes {
        return Err(io::Error::other(format!("{got} of {bytes} bytes came back")));
    }
    if digest.0 != sent {
        return Err(io::Error::other("digests differ"));
    }
    Ok(sent)
}

fn tcp(addr: SocketAddr, bytes: u64, conns: u64) -> Result<String, String> {
    let started = Instant::now();
    // Every connection is made first, one after another, and all are open at once before
    // any sends: as many connections as asked for, not a burst of SYNs, which a server
    // answers within its listen backlog only.
    let mut streams = Vec::new();
    for i in 0..conns {
        let stream = TcpStream::connect_timeout(&addr, STALL);
        streams.push(stream.map_err(|e| format!("{i} of {conns} connections made, then: {e}"))?);
    }
    let workers: Vec<_> = streams
        .into_iter()
        .zip(0..)
        .map(|(stream, i)| thread::spawn(move || tcp_one(stream, bytes, 0x5eed + i)))
        .collect();
    let mut digests = Vec::new();
    let mut errors = Vec::new();
    for (i, w) in workers.into_iter().enumerate() {
        match w.join() {
            Ok(Ok(d)) => digests.push(d),
            Ok(Err(e)) => errors.push(format!("connection {i}: {e}")),
            Err(_) => errors.push(format!("connection {i}: panicked")),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if !errors.is_empty() {
        return Err(format!("{} of {conns} connections failed: {}", errors.len(), errors.join("; ")));
    }
    let total = bytes * conns;
    Ok(format!(
        "tcp-check: {conns} connection(s) x {bytes} bytes echoed byte for byte in {secs:.2} s ({:.2} MB/s); fnv64 of stream 0 {:016x} sent and received",
        total as f64 / secs / 1e6,
        digests.first().copied().unwrap_or_default()
    ))
}

fn udp(addr: SocketAddr, count: u32) -> Result<String, String> {
    let bind = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
    let socket = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    socket.connect(addr).map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let mut rtts = Vec::new();
    let mut buf = [0u8; 2048];
    for i in 0..count {
        let msg = format!("mote udp-check datagram {i}");
        let sent = Instant::now();
        socket.send(msg.as_bytes()).map_err(|e| format!("send {i}: {e}"))?;
        let n = socket.recv(&mut buf).map_err(|e| format!("no reply to datagram {i}: {e}"))?;
        if &buf[..n] != msg.as_bytes() {
            return Err(format!("reply to datagram {i} was {:?}", String::from_utf8_lossy(&buf[..n])));
        }
        rtts.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    rtts.sort_by(f64::total_cmp);
    Ok(format!(
        "udp-check: {count} datagrams echoed; round trip min {:.3} ms, median {:.3} ms, p99 {:.3} ms",
        percentile(&rtts, 0),
        percentile(&rtts, 50),
        percentile(&rtts, 99)
    ))
}

/// The `p`th percentile (nearest rank) of sorted `values`; 0 when there are none.
fn percentile(sorted: &[f64], p: usize) -> f64 {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or_default()
}

/// Sends `bytes` of the test stream to a discard service; the time runs until the service
/// closes the connection after reading the last byte (it sends nothing back).
fn discard(addr: SocketAddr, bytes: u64) -> Result<String, String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, STALL).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(STALL)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(STALL)).map_err(|e| e.to_string())?;
    let mut gen = Stream::new(0x5eed);
    let mut buf = vec![0u8; 16 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        gen.fill(&mut buf[..n]);
        stream.write_all(&buf[..n]).map_err(|e| format!("send: {e}"))?;
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(_) => return Err("the discard service sent data".into()),
        Err(e) => return Err(format!("waiting for the service to close: {e}")),
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(format!(
        "discard-check: {bytes} bytes sent and the connection closed in {secs:.2} s ({:.2} MB/s)",
        bytes as f64 / secs / 1e6
    ))
}

/// `tcp-check` / `udp-check`; the exit status.
pub fn main(cmd: &str, args: &[String]) -> i32 {
    let parsed = match (cmd, args) {
        ("tcp-check", [addr, bytes]) | ("tcp-check", [addr, bytes, _]) => {
            let conns = args.get(2).map_or(Ok(1), |c| c.parse());
            match (addr.parse(), bytes.parse(), conns) {
                (Ok(a), Ok(b), Ok(c)) if c > 0 => Ok(tcp(a, b, c)),
                _ => Err(()),
            }
        }
        ("udp-check", [addr, count]) => match (addr.parse(), count.parse()) {
            (Ok(a), Ok(c)) => Ok(udp(a, c)),
            _ => Err(()),
        },
        ("discard-check", [addr, bytes]) => match (addr.parse(), bytes.parse()) {
            (Ok(a), Ok(b)) => Ok(discard(a, b)),
            _ => Err(()),
        },
        _ => Err(()),
    };
    match parsed {
        Err(()) => {
            eprintln!("usage: mote-agent tcp-check IP:PORT BYTES [CONNECTIONS] | mote-agent udp-check IP:PORT COUNT | mote-agent discard-check IP:PORT BYTES");
            2
        }
        Ok(Ok(report)) => {
            println!("{report}");
            0
        }
        Ok(Err(e)) => {
            eprintln!("{cmd}: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for s in l.incoming() {
                let mut s = s.unwrap();
                thread::spawn(move || {
                    let mut r = s.try_clone().unwrap();
                    io::copy(&mut r, &mut s).unwrap();
                    s.shutdown(Shutdown::Write).unwrap();
                });
            }
        });
        addr
    }

    #[test]
    fn tcp_check_passes_on_an_echo_and_fails_on_a_corrupter() {
        let addr = echo_server();
        assert!(tcp(addr, 300_000, 8).unwrap().contains("8 connection(s) x 300000 bytes"));
        // A server that changes one byte.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let bad = l.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut data = Vec::new();
            s.read_to_end(&mut data).unwrap();
            data[1000] ^= 1;
            s.write_all(&data).unwrap();
        });
        let err = tcp(bad, 5000, 1).unwrap_err();
        assert!(err.contains("differs at byte 1000"), "{err}");
    }

    #[test]
    fn udp_check_passes_on_an_echo() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            loop {
                let (n, from) = s.recv_from(&mut buf).unwrap();
                s.send_to(&buf[..n], from).unwrap();
            }
        });
        let report = udp(addr, 20).unwrap();
        assert!(report.starts_with("udp-check: 20 datagrams echoed; round trip min "), "{report}");
        assert!(report.contains(" ms, median ") && report.contains(" ms, p99 "), "{report}");
        assert_eq!(main("udp-check", &["nonsense".into(), "1".into()]), 2);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&values, 0), 1.0);
        assert_eq!(percentile(&values, 50), 100.0);
        assert_eq!(percentile(&values, 99), 198.0);
        assert_eq!(percentile(&[7.0], 99), 7.0);
        assert_eq!(percentile(&[], 50), 0.0);
    }

    #[test]
    fn discard_check_waits_for_the_close() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            io::copy(&mut s, &mut io::sink()).unwrap();
        });
        let report = discard(addr, 1_000_000).unwrap();
        assert!(report.starts_with("discard-check: 1000000 bytes sent"), "{report}");
        // An echo service is no discard service.
        assert_eq!(discard(echo_server(), 1000).unwrap_err(), "the discard service sent data");
    }
}
