//! Unpredictable TCP initial sequence numbers (RFC 6528) under smoltcp.
//!
//! smoltcp draws a connection's ISN from its own generator, sPCG32 with 64 bits of state:
//! a few ISNs seen give the state away, and with it every ISN after. There is no hook to
//! choose them. Rather than patch smoltcp (a copy of the crate to carry), the device layer
//! adds a keyed offset to every sequence number between smoltcp and the wire, as OpenBSD
//! PF's "modulate state" does: on the wire the ISN is smoltcp's plus
//! F(local address, local port, remote address, remote port), F being SipHash-2-4 keyed by
//! 128 bits from [`crate::random`] per stack (RFC 6528 §3's ISN = M + F(4-tuple, secret),
//! with smoltcp's random ISN standing for the clock M). An attacker who learns smoltcp's
//! state from its own connections still lacks F for anyone else's 4-tuple.
//!
//! Outgoing segments get SEQ + F; incoming ones ACK − F, and the edges of their SACK blocks
//! (RFC 2018 §3), which name our sequence space, − F. The peer's own sequence numbers, and
//! the SACK blocks we send about them, are left alone. The TCP checksum is updated
//! incrementally (RFC 1624 eqn. 3) where smoltcp computes or checks it; with checksum
//! offload netfront fills it after us and the backend checks it before us. The offset is a
//! function of the 4-tuple, kept nowhere: a segment that reaches no connection (answered by
//! a reset) goes through it too, so the reset's numbers match the peer's.

use super::stack::Nic;
use core::hash::Hasher;
use siphasher::sip::SipHasher24;
use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTOCOL_TCP: u8 = 6;
const TCP_FLAG_ACK: u8 = 0x10;
const TCP_OPTION_END: u8 = 0;
const TCP_OPTION_NOP: u8 = 1;
const TCP_OPTION_SACK: u8 = 5;

/// The secret of F.
#[derive(Clone, Copy)]
pub(super) struct Key([u8; 16]);

impl Key {
    pub(super) fn random() -> Key {
        let mut key = [0; 16];
        crate::random::fill(&mut key);
        Key(key)
    }

    /// F: the offset of the connection between `local` and `remote` (address bytes, port).
    pub(super) fn offset(&self, local: (&[u8], u16), remote: (&[u8], u16)) -> u32 {
        let mut hash = SipHasher24::new_with_key(&self.0);
        hash.write(local.0);
        hash.write(&local.1.to_be_bytes());
        hash.write(remote.0);
        hash.write(&remote.1.to_be_bytes());
        hash.finish() as u32
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Way {
    Out,
    In,
}

/// Offsets the sequence numbers of the TCP segment in Ethernet frame `frame` going `way`,
/// fixing its checksum if `checksum`. Anything else (ARP, UDP, a later IPv4 fragment, a
/// frame too short to hold what its headers say) passes unchanged.
pub(super) fn modulate(frame: &mut [u8], way: Way, key: &Key, checksum: bool) {
    let Some(ethertype) = frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) else { return };
    let ip = &mut frame[14..];
    // (header length, source, destination)
    let (header, src, dst) = match ethertype {
        ETHERTYPE_IPV4 if ip.len() >= 20 => {
            let later_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0;
            if ip[9] != PROTOCOL_TCP || later_fragment {
                return;
            }
            (usize::from(ip[0] & 0x0f) * 4, 12..16, 16..20)
        }
        // TCP right after the fixed header: smoltcp sends no extension headers, and a segment
        // behind one reaches smoltcp unmodulated, which at worst resets that connection.
        ETHERTYPE_IPV6 if ip.len() >= 40 && ip[6] == PROTOCOL_TCP => (40, 8..24, 24..40),
        _ => return,
    };
    if header < 20 || ip.len() < header + 20 {
        return;
    }
    let (addresses, tcp) = ip.split_at_mut(header);
    let (src_port, dst_port) = (read16(tcp, 0), read16(tcp, 2));
    let offset = match way {
        Way::Out => key.offset((&addresses[src], src_port), (&addresses[dst], dst_port)),
        Way::In => key.offset((&addresses[dst], dst_port), (&addresses[src], src_port)),
    };
    let mut sum = Checksum(read16(tcp, 16));
    match way {
        Way::Out => sum.replace(tcp, 4, |seq| seq.wrapping_add(offset)),
        Way::In => {
            if tcp[13] & TCP_FLAG_ACK != 0 {
                sum.replace(tcp, 8, |ack| ack.wrapping_sub(offset));
            }
            let options_end = (usize::from(tcp[12] >> 4) * 4).min(tcp.len());
            let mut at = 20;
            while at < options_end {
                match tcp[at] {
                    TCP_OPTION_END => break,
                    TCP_OPTION_NOP => at += 1,
                    kind => {
                        let Some(&len) = tcp.get(at + 1) else { break };
                        let len = usize::from(len);
                        if len < 2 || at + len > options_end {
                            break;
                        }
                        if kind == TCP_OPTION_SACK {
                            for edge in (at + 2..at + len).step_by(4).filter(|e| e + 4 <= at + len) {
                                sum.replace(tcp, edge, |edge| edge.wrapping_sub(offset));
                            }
                        }
                        at += len;
                    }
                }
            }
        }
    }
    if checksum {
        tcp[16..18].copy_from_slice(&sum.0.to_be_bytes());
    }
}

fn read16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// A TCP checksum kept up to date as 32-bit fields change (RFC 1624 eqn. 3:
/// HC' = ~(~HC + ~m + m'), per 16-bit word).
struct Checksum(u16);

impl Checksum {
    /// Replaces the 32-bit field at `at` of `tcp` by `f` of it.
    fn replace(&mut self, tcp: &mut [u8], at: usize, f: impl FnOnce(u32) -> u32) {
        let old = u32::from_be_bytes([tcp[at], tcp[at + 1], tcp[at + 2], tcp[at + 3]]);
        let new = f(old);
        tcp[at..at + 4].copy_from_slice(&new.to_be_bytes());
        let mut sum = u32::from(!self.0);
        for (m, m_new) in [(old >> 16, new >> 16), (old & 0xffff, new & 0xffff)] {
            sum += (!m & 0xffff) + m_new;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        self.0 = !(sum as u16);
    }
}

/// A device whose TCP segments are modulated on the way through (see the module's doc).
pub(super) struct Modulated<D> {
    pub(super) device: D,
    key: Key,
    /// A received frame, copied to be modulated: smoltcp reads it from a shared slice.
    scratch: alloc::vec::Vec<u8>,
}

impl<D: Device> Modulated<D> {
    pub(super) fn new(device: D) -> Modulated<D> {
        Modulated { device, key: Key::random(), scratch: alloc::vec::Vec::new() }
    }
}

impl<D: Device> Device for Modulated<D> {
    type RxToken<'a>
        = RxToken<'a, D::RxToken<'a>>
    where
        D: 'a;
    type TxToken<'a>
        = TxToken<D::TxToken<'a>>
    where
        D: 'a;

    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let caps = self.device.capabilities().checksum.tcp;
        let Modulated { device, key, scratch } = self;
        let (rx, tx) = device.receive(now)?;
        let rx = RxToken { token: rx, key: *key, checksum: caps.rx(), scratch };
        Some((rx, TxToken { token: tx, key: *key, checksum: caps.tx() }))
    }

    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        let checksum = self.device.capabilities().checksum.tcp.tx();
        let key = self.key;
        let token = self.device.transmit(now)?;
        Some(TxToken { token, key, checksum })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.device.capabilities()
    }
}

impl<D: Nic> Nic for Modulated<D> {
    fn arm_wakeup(&mut self) -> bool {
        self.device.arm_wakeup()
    }

    fn relinked(&mut self) -> Option<[u8; 6]> {
        self.device.relinked()
    }
}

pub(super) struct RxToken<'a, T> {
    token: T,
    key: Key,
    checksum: bool,
    scratch: &'a mut alloc::vec::Vec<u8>,
}

impl<T: phy::RxToken> phy::RxToken for RxToken<'_, T> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let RxToken { token, key, checksum, scratch } = self;
        token.consume(|frame| {
            scratch.clear();
            scratch.extend_from_slice(frame);
            modulate(scratch, Way::In, &key, checksum);
            f(scratch)
        })
    }

    fn meta(&self) -> phy::PacketMeta {
        self.token.meta()
    }
}

pub(super) struct TxToken<T> {
    token: T,
    key: Key,
    checksum: bool,
}

impl<T: phy::TxToken> phy::TxToken for TxToken<T> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let (key, checksum) = (self.key, self.checksum);
        self.token.consume(len, |frame| {
            let result = f(frame);
            modulate(frame, Way::Out, &key, checksum);
            result
        })
    }

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.token.set_meta(meta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol, Ipv4Address,
        Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
    };

    const LOCAL: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
    const REMOTE: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
    const KEY: Key = Key([7; 16]);

    /// An Ethernet frame of a TCP segment from `src` to `dst` (ports 80 and 50000 the way
    /// they go), with a computed checksum.
    fn segment(
        src: Ipv4Address,
        dst: Ipv4Address,
        ack: Option<i32>,
        sack: [Option<(u32, u32)>; 3],
    ) -> Vec<u8> {
        let (src_port, dst_port) = if src == LOCAL { (80, 50000) } else { (50000, 80) };
        let tcp = TcpRepr {
            src_port,
            dst_port,
            control: TcpControl::None,
            seq_number: TcpSeqNumber(1000),
            ack_number: ack.map(TcpSeqNumber),
            window_len: 1024,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: sack,
            timestamp: None,
            payload: b"hello",
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut frame = vec![0; eth.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut eth_frame = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.emit(&mut eth_frame);
        let mut ip_packet = Ipv4Packet::new_unchecked(eth_frame.payload_mut());
        ip.emit(&mut ip_packet, &caps);
        tcp.emit(
            &mut TcpPacket::new_unchecked(ip_packet.payload_mut()),
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(dst),
            &caps,
        );
        frame
    }

    /// The TCP segment of `frame`, its checksum checked.
    fn parse(frame: &[u8]) -> TcpRepr<'_> {
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
        let tcp = TcpPacket::new_checked(&frame[14 + 20..]).unwrap();
        assert!(tcp.verify_checksum(&src, &dst), "bad TCP checksum");
        TcpRepr::parse(&tcp, &src, &dst, &ChecksumCapabilities::default()).unwrap()
    }

    fn f(key: &Key) -> u32 {
        key.offset((&LOCAL.octets(), 80), (&REMOTE.octets(), 50000))
    }

    #[test]
    fn offsets_are_keyed_and_distinct_per_four_tuple() {
        let other = Key([8; 16]);
        assert_ne!(f(&KEY), f(&other));
        let offsets: std::collections::HashSet<u32> =
            (1024..2048).map(|port| KEY.offset((&LOCAL.octets(), 80), (&REMOTE.octets(), port))).collect();
        assert_eq!(offsets.len(), 1024);
        assert_ne!(
            KEY.offset((&LOCAL.octets(), 80), (&REMOTE.octets(), 50000)),
            KEY.offset((&REMOTE.octets(), 80), (&LOCAL.octets(), 50000))
        );
    }

    #[test]
    fn an_outgoing_segment_has_its_sequence_number_offset_and_a_valid_checksum() {
        let mut frame = segment(LOCAL, REMOTE, Some(500), [Some((600, 700)), None, None]);
        modulate(&mut frame, Way::Out, &KEY, true);
        let tcp = parse(&frame);
        assert_eq!(tcp.seq_number, TcpSeqNumber(1000) + f(&KEY) as usize);
        // The peer's sequence space: the acknowledgement and SACK blocks stay as they are.
        assert_eq!(tcp.ack_number, Some(TcpSeqNumber(500)));
        assert_eq!(tcp.sack_ranges, [Some((600, 700)), None, None]);
        assert_eq!(tcp.payload, b"hello");
    }

    #[test]
    fn an_incoming_segment_has_its_ack_and_sack_edges_offset_back_and_a_valid_checksum() {
        let off = f(&KEY);
        let on_wire = |n: u32| n.wrapping_add(off);
        let sack = [Some((on_wire(2000), on_wire(3000))), Some((on_wire(4000), on_wire(4500))), None];
        let mut frame = segment(REMOTE, LOCAL, Some(on_wire(1500) as i32), sack);
        modulate(&mut frame, Way::In, &KEY, true);
        let tcp = parse(&frame);
        assert_eq!(tcp.ack_number, Some(TcpSeqNumber(1500)));
        assert_eq!(tcp.sack_ranges, [Some((2000, 3000)), Some((4000, 4500)), None]);
        // The peer's own sequence number is its own.
        assert_eq!(tcp.seq_number, TcpSeqNumber(1000));
    }

    #[test]
    fn the_checksum_is_left_alone_where_smoltcp_leaves_it_to_the_device() {
        let mut frame = segment(LOCAL, REMOTE, None, [None; 3]);
        let before = frame[14 + 20 + 16..14 + 20 + 18].to_vec();
        modulate(&mut frame, Way::Out, &KEY, false);
        assert_eq!(frame[14 + 20 + 16..14 + 20 + 18], before[..]);
    }

    #[test]
    fn a_segment_without_ack_keeps_its_ack_field() {
        let mut frame = segment(REMOTE, LOCAL, None, [None; 3]);
        modulate(&mut frame, Way::In, &KEY, true);
        assert_eq!(parse(&frame).ack_number, None);
        assert_eq!(frame[14 + 20 + 8..14 + 20 + 12], [0; 4]);
    }

    #[test]
    fn truncated_and_non_tcp_frames_pass_unchanged() {
        let whole = segment(LOCAL, REMOTE, Some(1), [None; 3]);
        for len in [0, 13, 14, 33, 40, 53] {
            let mut frame = whole[..len].to_vec();
            modulate(&mut frame, Way::Out, &KEY, true);
            assert_eq!(frame, whole[..len]);
        }
        let mut udp = whole.clone();
        udp[14 + 9] = 17;
        modulate(&mut udp, Way::Out, &KEY, true);
        assert_eq!(udp[14 + 20 + 4..14 + 20 + 8], whole[14 + 20 + 4..14 + 20 + 8]);
    }
}
