//! TCP and UDP checksums per frame, for checksum offload (`io/netif.h`'s
//! `feature-no-csum-offload`, `NETRXF_csum_blank`/`NETRXF_data_validated`
//! and `NETTXF_csum_blank`/`NETTXF_data_validated`).
//!
//! smoltcp decides once per device whether it verifies and fills in
//! checksums; the backend decides per frame. With offload on, smoltcp does
//! neither for TCP and UDP and this module does what each frame needs: a
//! received frame the backend vouches for is taken as it is, any other is
//! verified here; a frame to send gets its pseudo-header sum and the
//! `csum_blank` flag when the backend completes checksums for its IP
//! version, and a full checksum otherwise.

#[cfg(any(feature = "ipv6", test))]
use smoltcp::wire::Ipv6Packet;
use smoltcp::wire::{
    checksum, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket,
};

/// Offset of the checksum field in a TCP and in a UDP header.
const TCP_CHECKSUM: usize = 16;
const UDP_CHECKSUM: usize = 6;

/// The TCP or UDP segment of a frame: where it starts, its length, its protocol and the
/// addresses of its pseudo-header.
struct Segment {
    start: usize,
    len: usize,
    protocol: IpProtocol,
    src: IpAddress,
    dst: IpAddress,
}

/// Finds the TCP or UDP segment of an Ethernet frame; `None` for anything else (ARP, ICMP,
/// IP fragments, malformed headers: left to smoltcp, which checks or drops them).
fn segment(frame: &[u8]) -> Option<Segment> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip_start = EthernetFrame::<&[u8]>::header_len();
    let (protocol, start, end, src, dst) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            let header = usize::from(ip.header_len());
            let total = usize::from(ip.total_len());
            let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
            (ip.next_header(), ip_start + header, ip_start + total, src, dst)
        }
        #[cfg(any(feature = "ipv6", test))]
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            let header = ip.header_len();
            let end = ip_start + header + usize::from(ip.payload_len());
            let (protocol, start) = skip_ipv6_extensions(frame, ip.next_header(), ip_start + header, end)?;
            (protocol, start, end, ip.src_addr().into(), ip.dst_addr().into())
        }
        _ => return None,
    };
    if end > frame.len() {
        return None;
    }
    match protocol {
        IpProtocol::Tcp | IpProtocol::Udp => Some(Segment { start, len: end - start, protocol, src, dst }),
        _ => None,
    }
}

/// Skips the IPv6 extension headers before the segment (RFC 8200 §4): hop-by-hop, routing
/// and destination options, by their length; a fragment is left to smoltcp. Returns the
/// protocol after them and where it starts.
#[cfg(any(feature = "ipv6", test))]
fn skip_ipv6_extensions(
    frame: &[u8],
    mut protocol: IpProtocol,
    mut start: usize,
    end: usize,
) -> Option<(IpProtocol, usize)> {
    while matches!(protocol, IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts) {
        let next = *frame.get(start)?;
        let len = (usize::from(*frame.get(start + 1)?) + 1) * 8;
        protocol = next.into();
        start += len;
        if start > end {
            return None;
        }
    }
    Some((protocol, start))
}

/// Whether a received frame not vouched for by the backend may go up: a TCP or UDP segment
/// with a wrong checksum (or too short to have one) may not; anything else is smoltcp's to
/// check.
pub fn verify_rx(frame: &[u8]) -> bool {
    let Some(s) = segment(frame) else { return true };
    let bytes = &frame[s.start..s.start + s.len];
    match s.protocol {
        IpProtocol::Tcp => TcpPacket::new_checked(bytes).is_ok_and(|p| p.verify_checksum(&s.src, &s.dst)),
        _ => UdpPacket::new_checked(bytes).is_ok_and(|p| p.verify_checksum(&s.src, &s.dst)),
    }
}

/// Makes a frame smoltcp built without TCP and UDP checksums ready to send. With `blank_v4`
/// (`blank_v6`) the backend completes IPv4 (IPv6) checksums: the field gets the
/// pseudo-header sum, which the backend's checksum over the segment completes (how Linux
/// hands partial checksums on), and the answer is true: send it with `NETTXF_csum_blank`.
/// Otherwise the checksum is computed here and the answer is false.
pub fn prepare_tx(frame: &mut [u8], blank_v4: bool, blank_v6: bool) -> bool {
    let Some(s) = segment(frame) else { return false };
    let blank = match s.dst {
        IpAddress::Ipv4(_) => blank_v4,
        // IPv6, when smoltcp has it.
        #[allow(unreachable_patterns)]
        _ => blank_v6,
    };
    let bytes = &mut frame[s.start..s.start + s.len];
    let field = match s.protocol {
        IpProtocol::Tcp => TCP_CHECKSUM,
        _ => UDP_CHECKSUM,
    };
    if bytes.len() < field + 2 {
        return false;
    }
    if blank {
        let sum = checksum::pseudo_header(&s.src, &s.dst, s.protocol, s.len as u32);
        bytes[field..field + 2].copy_from_slice(&sum.to_be_bytes());
        return true;
    }
    match s.protocol {
        IpProtocol::Tcp => {
            if let Ok(mut p) = TcpPacket::new_checked(bytes) {
                p.fill_checksum(&s.src, &s.dst);
            }
        }
        _ => {
            if let Ok(mut p) = UdpPacket::new_checked(bytes) {
                p.fill_checksum(&s.src, &s.dst);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{caps, ethernet, tcp_v4};
    use smoltcp::wire::{Ipv6Address, Ipv6Repr, UdpRepr};

    /// An IPv6 UDP frame, after a hop-by-hop header when `hop_by_hop`.
    fn udp_v6(payload: &[u8], fill: bool, hop_by_hop: bool) -> Vec<u8> {
        let (src, dst) = (
            Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
        );
        let udp = UdpRepr { src_port: 53, dst_port: 5353 };
        let ext = if hop_by_hop { 8 } else { 0 };
        let ip = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: if hop_by_hop { IpProtocol::HopByHop } else { IpProtocol::Udp },
            payload_len: ext + udp.header_len() + payload.len(),
            hop_limit: 64,
        };
        let mut bytes = vec![0; ip.buffer_len() + ip.payload_len];
        ip.emit(&mut Ipv6Packet::new_unchecked(&mut bytes[..]));
        let at = ip.buffer_len();
        if hop_by_hop {
            // Next header UDP, length 0 (8 bytes), a PadN option filling the rest.
            bytes[at..at + 8].copy_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        }
        udp.emit(
            &mut UdpPacket::new_unchecked(&mut bytes[at + ext..]),
            &src.into(),
            &dst.into(),
            payload.len(),
            |p| p.copy_from_slice(payload),
            &caps(fill),
        );
        ethernet(EthernetProtocol::Ipv6, &bytes)
    }

    #[test]
    fn received_segments_are_verified() {
        assert!(verify_rx(&tcp_v4(b"hello", true)));
        assert!(verify_rx(&udp_v6(b"query", true, false)));
        assert!(verify_rx(&udp_v6(b"query", true, true)));
        let mut bad = tcp_v4(b"hello", true);
        *bad.last_mut().unwrap() ^= 1;
        assert!(!verify_rx(&bad));
        assert!(!verify_rx(&tcp_v4(b"hello", false)), "a blank checksum is wrong unless vouched for");
        let mut bad = udp_v6(b"query", true, true);
        *bad.last_mut().unwrap() ^= 1;
        assert!(!verify_rx(&bad), "found behind the hop-by-hop header");
        // Not TCP or UDP, or not parseable: smoltcp's to judge.
        assert!(verify_rx(&[0xff; 10]));
        assert!(verify_rx(&ethernet(EthernetProtocol::Arp, &[0; 28])));
    }

    #[test]
    fn truncated_headers_are_not_read_past() {
        let frame = tcp_v4(b"hello", true);
        for len in 0..frame.len() {
            let mut cut = frame[..len].to_vec();
            // Whatever the cut, no panic; a claimed length past the frame is not verified here.
            verify_rx(&cut);
            prepare_tx(&mut cut, true, true);
        }
        // A hop-by-hop header claiming to run past the packet.
        let mut frame = udp_v6(b"q", true, true);
        frame[14 + 40 + 1] = 200;
        assert!(verify_rx(&frame));
        assert!(!prepare_tx(&mut frame, true, true));
    }

    #[test]
    fn sent_segments_get_a_full_checksum_or_the_pseudo_header_sum() {
        let full = tcp_v4(b"payload!", true);
        let mut frame = tcp_v4(b"payload!", false);
        assert!(!prepare_tx(&mut frame, false, true));
        assert_eq!(frame, full);
        let mut frame = tcp_v4(b"payload!", false);
        assert!(prepare_tx(&mut frame, true, false));
        // The backend finishes it by summing the segment, checksum field included.
        let seg = &frame[14 + 20..];
        let finished = !checksum::data(seg);
        let mut done = frame.clone();
        done[14 + 20 + TCP_CHECKSUM..][..2].copy_from_slice(&finished.to_be_bytes());
        assert_eq!(done, full);
        // IPv6: blank only when the backend offers it for IPv6.
        let full = udp_v6(b"answer", true, false);
        let mut frame = udp_v6(b"answer", false, false);
        assert!(!prepare_tx(&mut frame, true, false));
        assert_eq!(frame, full);
        let mut frame = udp_v6(b"answer", false, false);
        assert!(prepare_tx(&mut frame, false, true));
        // Neither TCP nor UDP: untouched.
        let mut arp = ethernet(EthernetProtocol::Arp, &[7; 28]);
        assert!(!prepare_tx(&mut arp, true, true));
        assert_eq!(arp, ethernet(EthernetProtocol::Arp, &[7; 28]));
    }
}
