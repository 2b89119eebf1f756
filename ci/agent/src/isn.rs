//! `mote-agent isn-sample IP:PORT COUNT`: opens COUNT TCP connections to IP:PORT one after
//! another and records the initial sequence number of each SYN-ACK the server sends, read
//! from a raw `IPPROTO_TCP` socket (dom0 runs the agent as root) and matched to its
//! connection by our port. Prints `isn-sample: PORT ISN` per connection, then a count: the
//! integration case that a mote's ISNs are distinct and unpredictable (issue #21).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long one connection's SYN-ACK may take.
const WAIT: Duration = Duration::from_secs(10);
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// In an IPv4 datagram (RFC 791) carrying TCP (RFC 9293 §3.1): the SYN-ACK's source, its
/// destination port and its sequence number; `None` for anything else.
pub fn syn_ack(packet: &[u8]) -> Option<(SocketAddrV4, u16, u32)> {
    let header = usize::from(packet.first()? & 0x0f) * 4;
    if packet.first()? >> 4 != 4 || packet.get(9) != Some(&6) || header < 20 {
        return None;
    }
    let tcp = packet.get(header..header + 20)?;
    if tcp[13] & (TCP_SYN | TCP_ACK) != TCP_SYN | TCP_ACK {
        return None;
    }
    let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let port = |at: usize| u16::from_be_bytes([tcp[at], tcp[at + 1]]);
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    Some((SocketAddrV4::new(source, port(0)), port(2), seq))
}

/// A raw socket that receives a copy of every TCP segment to this host, with a read timeout.
fn tcp_tap() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is checked, then owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor no one else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval { tv_sec: 0, tv_usec: 200_000 };
    // SAFETY: the option's value is a timeval valid for its length.
    let set = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Reads `tap` until the SYN-ACK from `server` to `port` arrives; its sequence number.
fn wait_syn_ack(tap: &OwnedFd, server: SocketAddrV4, port: u16) -> Result<u32, String> {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::recv(tap.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => continue,
                _ => return Err(format!("raw socket: {e}")),
            }
        }
        match syn_ack(&buf[..n as usize]) {
            Some((from, to, seq)) if from == server && to == port => return Ok(seq),
            _ => {}
        }
    }
    Err(format!("no SYN-ACK from {server} to port {port} within {WAIT:?}"))
}

fn sample(server: SocketAddrV4, count: u32) -> Result<Vec<(u16, u32)>, String> {
    let tap = tcp_tap().map_err(|e| format!("raw socket: {e}"))?;
    let mut isns = Vec::new();
    for i in 0..count {
        let stream = TcpStream::connect_timeout(&server.into(), WAIT)
            .map_err(|e| format!("connection {i} to {server}: {e}"))?;
        let port = stream.local_addr().map_err(|e| e.to_string())?.port();
        // The SYN-ACK arrived before connect returned: it waits in the raw socket's queue.
        isns.push((port, wait_syn_ack(&tap, server, port)?));
    }
    Ok(isns)
}

pub fn main(args: &[String]) -> i32 {
    let Some((server, count)) = crate::address_and_count(args) else {
        eprintln!("usage: mote-agent isn-sample IP:PORT COUNT");
        return 2;
    };
    match sample(server, count) {
        Ok(isns) => {
            for (port, isn) in &isns {
                println!("isn-sample: {port} {isn}");
            }
            println!("isn-sample: {} SYN-ACKs from {server}", isns.len());
            0
        }
        Err(e) => {
            eprintln!("isn-sample: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header (no options) and the first 20 bytes of a TCP header.
    fn segment(flags: u8, protocol: u8) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, protocol, 0, 0, 10, 0, 0, 29, 10, 0, 0, 1];
        p.extend_from_slice(&7u16.to_be_bytes());
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p
    }

    #[test]
    fn a_syn_ack_gives_its_source_our_port_and_its_sequence_number() {
        let server = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 29), 7);
        assert_eq!(syn_ack(&segment(TCP_SYN | TCP_ACK, 6)), Some((server, 40000, 0xdead_beef)));
    }

    #[test]
    fn other_segments_and_truncated_packets_are_not_syn_acks() {
        assert_eq!(syn_ack(&segment(TCP_ACK, 6)), None);
        assert_eq!(syn_ack(&segment(TCP_SYN, 6)), None);
        assert_eq!(syn_ack(&segment(TCP_SYN | TCP_ACK, 17)), None);
        assert_eq!(syn_ack(&segment(TCP_SYN | TCP_ACK, 6)[..30]), None);
        assert_eq!(syn_ack(&[]), None);
    }
}
