//! `mote-agent bad-udp-burst IP:PORT COUNT`: sends COUNT UDP datagrams to IP:PORT whose UDP
//! checksum is wrong, as fast as a raw socket takes them without waiting (a guest that takes
//! nothing more must not hang the sender: what the socket refuses is counted, not retried),
//! and prints how many went out. Sent
//! from dom0 through the bridge, they reach a guest without `NETRXF_data_validated` (Linux
//! leaves a raw socket's packets `CHECKSUM_NONE`), so the guest must check and drop each: the
//! integration case that a run of dropped packets does not leave netfront without rx buffers
//! (issue #29, item 1).

use std::net::{SocketAddrV4, UdpSocket};

/// An IPv4 datagram (RFC 791, no options) from `src` to `dst` carrying `payload` in UDP
/// (RFC 768) with its checksum off by one: never zero (which would mean "no checksum") and
/// never the right one.
pub fn datagram(src: SocketAddrV4, dst: SocketAddrV4, id: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    // Don't fragment, TTL 64, UDP, checksum filled in below.
    p.extend_from_slice(&[0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.ip().octets());
    p.extend_from_slice(&dst.ip().octets());
    let header_sum = checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&header_sum.to_be_bytes());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    let pseudo = [&src.ip().octets()[..], &dst.ip().octets()[..], &[0, 17], &(udp_len as u16).to_be_bytes()];
    let right = match checksum(&[pseudo[0], pseudo[1], pseudo[2], pseudo[3], &p[20..]]) {
        0 => 0xffff,
        sum => sum,
    };
    let wrong = if right == 0xffff { 1 } else { right + 1 };
    p[26..28].copy_from_slice(&wrong.to_be_bytes());
    p
}

/// The Internet checksum (RFC 1071) of the parts, taken as one run of bytes.
fn checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u32 =
        bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn burst(dst: SocketAddrV4, count: u32) -> Result<u32, String> {
    // The source address dom0 would use for dst, and a port of our own that nothing answers.
    let probe = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("udp socket: {e}"))?;
    probe.connect(dst).map_err(|e| format!("no route to {dst}: {e}"))?;
    let src = match probe.local_addr().map_err(|e| e.to_string())? {
        std::net::SocketAddr::V4(a) => a,
        other => return Err(format!("local address {other} is not IPv4")),
    };
    // SAFETY: plain socket(2); the descriptor is checked and closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(format!("raw socket: {}", std::io::Error::last_os_error()));
    }
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from(*dst.ip()).to_be() },
        sin_zero: [0; 8],
    };
    let mut sent = 0;
    for i in 0..count {
        let packet = datagram(src, dst, i as u16, b"mote bad checksum");
        // SAFETY: the buffer and the address are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                fd,
                packet.as_ptr().cast(),
                packet.len(),
                libc::MSG_DONTWAIT,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n == packet.len() as isize {
            sent += 1;
        }
    }
    // SAFETY: fd is ours and open.
    unsafe { libc::close(fd) };
    Ok(sent)
}

pub fn main(args: &[String]) -> i32 {
    let Some((dst, count)) = crate::address_and_count(args) else {
        eprintln!("usage: mote-agent bad-udp-burst IP:PORT COUNT");
        return 2;
    };
    match burst(dst, count) {
        Ok(sent) => {
            println!("bad-udp-burst: {sent} of {count} datagrams with a wrong UDP checksum sent to {dst}");
            i32::from(sent == 0)
        }
        Err(e) => {
            eprintln!("bad-udp-burst: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn the_header_checksum_is_right_and_the_udp_one_wrong_but_never_zero() {
        let src = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000);
        for (port, payload) in [(53, &b"mote bad checksum"[..]), (7, b""), (9, b"x")] {
            let dst = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 28), port);
            let p = datagram(src, dst, 7, payload);
            assert_eq!(p.len(), 28 + payload.len());
            assert_eq!(checksum(&[&p[..20]]), 0, "IPv4 header sums to zero");
            let udp_len = (8 + payload.len()) as u16;
            let pseudo: Vec<u8> =
                [&src.ip().octets()[..], &dst.ip().octets(), &[0, 17], &udp_len.to_be_bytes()].concat();
            assert_ne!(&p[26..28], &[0, 0]);
            assert_ne!(checksum(&[&pseudo, &p[20..]]), 0, "the UDP checksum does not verify");
            // With the field zeroed and filled in right, it would.
            let mut right = p.clone();
            right[26..28].fill(0);
            let sum = checksum(&[&pseudo, &right[20..]]);
            right[26..28].copy_from_slice(&sum.to_be_bytes());
            assert_eq!(checksum(&[&pseudo, &right[20..]]), 0);
        }
    }
}
