//! Joining consecutive TCP/IPv4 segments of one connection into one packet for the backend
//! to cut again (`io/netif.h`, "Guest transmit": a request with a `XEN_NETIF_EXTRA_TYPE_GSO`
//! extra-info slot, offered by the backend's `feature-gso-tcpv4`).
//!
//! smoltcp makes no segment longer than the peer's MSS, but a bulk sender emits several within
//! one turn of the stack, one from each connection with data in turn. dom0's cost is per
//! packet (docs/measurements.md, "The 1 MiB file is bound by dom0's work per packet"), so a
//! [`Joiner`] per connection ([`Joiners`]) holds its first segment and appends each next one
//! that continues it exactly; the backend's stack cuts the packet into segments of the first
//! one's payload size again, each with the headers of the first and its own sequence number,
//! IP id and checksums, as Linux cuts a TSO packet.
//!
//! A segment continues the held packet when it has the same Ethernet header, an IPv4 header
//! without options or fragmentation that differs only in length, id and checksum, the same
//! ports, acknowledgement, window and TCP options, the sequence number right after the held
//! payload, and ACK with at most PSH set; the held packet must end in a segment of the full
//! size without PSH. Anything else is sent on its own.

use alloc::vec::Vec;

const ETH_HEADER: usize = 14;
const IPV4_HEADER: usize = 20;
const TCP_START: usize = ETH_HEADER + IPV4_HEADER;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const PROTO_TCP: u8 = 6;
/// TCP flag bits (the header's 14th byte).
const FLAG_PSH: u8 = 0x08;
const FLAG_ACK: u8 = 0x10;

/// Where a joinable segment's parts lie in its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// End of the TCP header: the payload starts here.
    payload: usize,
    /// End of the IP packet: the frame's length (no Ethernet padding).
    end: usize,
}

/// A TCP/IPv4 data segment that could be joined (see the module documentation); `None` for
/// anything else.
fn layout(frame: &[u8]) -> Option<Layout> {
    if frame.len() < TCP_START + 20 || frame[12..14] != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &frame[ETH_HEADER..];
    // Version 4, no options; not a fragment (DF may be set); TCP.
    if ip[0] != 0x45 || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 || ip[9] != PROTO_TCP {
        return None;
    }
    let end = ETH_HEADER + usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let tcp = &frame[TCP_START..];
    let payload = TCP_START + usize::from(tcp[12] >> 4) * 4;
    let flags = tcp[13];
    if end != frame.len() || payload < TCP_START + 20 || payload >= end || flags & !FLAG_PSH != FLAG_ACK {
        return None;
    }
    Some(Layout { payload, end })
}

fn seq(frame: &[u8]) -> u32 {
    u32::from_be_bytes(frame[TCP_START + 4..TCP_START + 8].try_into().unwrap())
}

/// Whether `frame` may start a packet to join others to: a TCP/IPv4 data segment with ACK
/// (and maybe PSH) only.
pub fn can_start(frame: &[u8]) -> bool {
    layout(frame).is_some()
}

/// Holds a packet being joined; see the module documentation.
pub struct Joiner {
    /// The held packet: the first segment's headers, then every joined payload.
    held: Vec<u8>,
    /// The first segment's payload size: the size the backend cuts the packet into.
    seg_size: usize,
    /// Where the held packet's payload starts.
    payload: usize,
    /// Whether the last segment joined had PSH set or was short: nothing may follow it.
    closed: bool,
    segments: u16,
    /// Longest packet to hold (bytes of frame).
    limit: usize,
}

/// A packet taken from the [`Joiner`], its headers made whole.
pub struct Joined<'a> {
    pub frame: &'a mut [u8],
    /// The payload size to cut it into, when it holds more than one segment.
    pub seg_size: Option<u16>,
    pub segments: u16,
}

impl Joiner {
    /// A joiner for packets of up to `limit` bytes; allocates them now, so that joining
    /// never allocates.
    pub fn new(limit: usize) -> Self {
        Joiner { held: Vec::with_capacity(limit), seg_size: 0, payload: 0, closed: false, segments: 0, limit }
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether `frame` is a TCP/IPv4 segment of the connection held (same Ethernet header,
    /// addresses and ports), continuing it or not.
    pub fn same_flow(&self, frame: &[u8]) -> bool {
        let held = &self.held;
        !held.is_empty()
            && frame.len() >= TCP_START + 4
            && held[..ETH_HEADER] == frame[..ETH_HEADER]
            && frame[ETH_HEADER + 9] == PROTO_TCP
            && held[ETH_HEADER + 12..TCP_START + 4] == frame[ETH_HEADER + 12..TCP_START + 4]
    }

    /// Length of the packet held with `frame` joined.
    pub fn joined_len(&self, frame: &[u8]) -> Option<usize> {
        let l = layout(frame)?;
        if self.held.is_empty() {
            return Some(frame.len());
        }
        let (held, payload) = (&self.held, self.payload);
        let continues = !self.closed
            && self.same_flow(frame)
            // Type of service; fragment bits, TTL and protocol.
            && held[ETH_HEADER + 1] == frame[ETH_HEADER + 1]
            && held[ETH_HEADER + 6..ETH_HEADER + 10] == frame[ETH_HEADER + 6..ETH_HEADER + 10]
            // Acknowledgement, header length, window, urgent pointer, options.
            && payload == l.payload
            && held[TCP_START + 8..TCP_START + 13] == frame[TCP_START + 8..TCP_START + 13]
            && held[TCP_START + 14..TCP_START + 16] == frame[TCP_START + 14..TCP_START + 16]
            && held[TCP_START + 18..payload] == frame[TCP_START + 18..l.payload]
            && seq(frame) == seq(held).wrapping_add((held.len() - payload) as u32)
            && l.end - l.payload <= self.seg_size;
        let len = held.len() + (l.end - l.payload);
        (continues && len <= self.limit).then_some(len)
    }

    /// Holds `frame` (a joinable segment, when nothing is held) or appends its payload to the
    /// held packet (when it continues it): see [`Joiner::joined_len`]. False, changing
    /// nothing, for a frame that is neither.
    pub fn join(&mut self, frame: &[u8]) -> bool {
        if self.joined_len(frame).is_none() {
            return false;
        }
        let l = layout(frame).expect("checked by joined_len");
        let payload = &frame[l.payload..];
        if self.held.is_empty() {
            self.held.extend_from_slice(frame);
            self.seg_size = payload.len();
            self.payload = l.payload;
            self.segments = 1;
        } else {
            self.held.extend_from_slice(payload);
            self.segments += 1;
            // The last segment's PSH goes on the packet (Linux leaves it on the last cut).
            self.held[TCP_START + 13] |= frame[TCP_START + 13] & FLAG_PSH;
        }
        self.closed = frame[TCP_START + 13] & FLAG_PSH != 0 || payload.len() < self.seg_size;
        true
    }

    /// The held packet, with its IPv4 length and header checksum made whole (the TCP checksum
    /// is the caller's: [`crate::csum::prepare_tx`]), until [`Joiner::clear`].
    pub fn take(&mut self) -> Option<Joined<'_>> {
        if self.held.is_empty() {
            return None;
        }
        let ip_len = (self.held.len() - ETH_HEADER) as u16;
        let ip = &mut self.held[ETH_HEADER..TCP_START];
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[10..12].fill(0);
        let sum = !internet_sum(ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let segments = self.segments;
        let seg_size = (segments > 1).then_some(self.seg_size as u16);
        Some(Joined { frame: &mut self.held, seg_size, segments })
    }

    /// Empties the joiner (after the packet [`Joiner::take`] gave went out, or was dropped).
    pub fn clear(&mut self) {
        self.held.clear();
        self.segments = 0;
        self.closed = false;
    }
}

/// A [`Joiner`] for each of several connections.
pub struct Joiners {
    flows: Vec<Joiner>,
    /// The joiner to empty next when every one holds a packet and another connection sends.
    next_victim: usize,
}

impl Joiners {
    /// `flows` joiners of packets of up to `limit` bytes, allocated now.
    pub fn new(flows: usize, limit: usize) -> Self {
        Joiners { flows: (0..flows).map(|_| Joiner::new(limit)).collect(), next_victim: 0 }
    }

    /// The joiner holding `frame`'s connection.
    pub fn flow_of(&self, frame: &[u8]) -> Option<usize> {
        self.flows.iter().position(|j| j.same_flow(frame))
    }

    /// An empty joiner, or else the one to empty for a new connection (in turn).
    pub fn free_or_victim(&mut self) -> (usize, bool) {
        match self.flows.iter().position(Joiner::is_empty) {
            Some(i) => (i, true),
            None => {
                let i = self.next_victim;
                self.next_victim = (i + 1) % self.flows.len();
                (i, false)
            }
        }
    }

    pub fn get(&mut self, i: usize) -> &mut Joiner {
        &mut self.flows[i]
    }

    /// The lengths of the packets held, but for joiner `except`.
    pub fn held_lens(&self, except: Option<usize>) -> impl Iterator<Item = usize> + '_ {
        self.flows
            .iter()
            .enumerate()
            .filter(move |(i, j)| Some(*i) != except && !j.is_empty())
            .map(|(_, j)| j.len())
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Joiner> {
        self.flows.iter_mut()
    }
}

/// The ones' complement sum of `bytes` as 16-bit big-endian words (RFC 1071), folded.
fn internet_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 =
        bytes.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tcp_v4_segment;
    use smoltcp::wire::{EthernetFrame, Ipv4Packet, TcpPacket, TcpSeqNumber};

    /// A frame as smoltcp builds it: `payload` at sequence number `seq`, PSH if `push`, IP id
    /// `id`.
    fn segment(seq: i32, payload: &[u8], push: bool, id: u16) -> Vec<u8> {
        let mut frame = tcp_v4_segment(80, seq, payload, push, true);
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH_HEADER..]);
        ip.set_ident(id);
        ip.fill_checksum();
        frame
    }

    fn data(range: core::ops::Range<u32>) -> Vec<u8> {
        range.map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn consecutive_full_segments_join_into_one_packet() {
        let mut j = Joiner::new(32 * 1024);
        assert!(j.join(&segment(1000, &data(0..1460), false, 5)));
        assert!(j.join(&segment(2460, &data(1460..2920), false, 6)));
        assert!(j.join(&segment(3920, &data(2920..3500), true, 7)));
        // The last was short (and pushed): nothing more joins.
        assert!(!j.join(&segment(4500, &data(3500..4960), false, 8)));
        let joined = j.take().unwrap();
        assert_eq!((joined.seg_size, joined.segments), (Some(1460), 3));
        let frame = EthernetFrame::new_checked(&joined.frame[..]).unwrap();
        let ip = Ipv4Packet::new_checked(frame.payload()).unwrap();
        assert!(ip.verify_checksum(), "the IP header checksum is made whole");
        assert_eq!(usize::from(ip.total_len()), 20 + 20 + 3500);
        assert_eq!(ip.ident(), 5, "the first segment's id: the backend counts on from it");
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp.seq_number(), TcpSeqNumber(1000));
        assert!(tcp.psh() && tcp.ack(), "the last segment's PSH is kept");
        assert_eq!(tcp.payload(), &data(0..3500)[..]);
        j.clear();
        assert!(j.is_empty() && j.take().is_none());
    }

    #[test]
    fn one_segment_goes_out_as_it_came() {
        let mut j = Joiner::new(32 * 1024);
        let alone = segment(1000, &data(0..100), true, 5);
        assert!(j.join(&alone));
        let joined = j.take().unwrap();
        assert_eq!((joined.seg_size, joined.segments), (None, 1));
        assert_eq!(joined.frame, &alone[..]);
    }

    #[test]
    fn a_segment_that_does_not_continue_is_refused() {
        let first = segment(1000, &data(0..1460), false, 5);
        let cases: [(&str, Vec<u8>); 5] = [
            ("a gap in the sequence", segment(2461, &data(0..1460), false, 6)),
            ("a retransmission", segment(1000, &data(0..1460), false, 6)),
            ("longer than the first", segment(2460, &data(0..1500), false, 6)),
            ("another window", {
                let mut s = segment(2460, &data(0..1460), false, 6);
                s[TCP_START + 15] ^= 1;
                s
            }),
            ("another port", {
                let mut s = segment(2460, &data(0..1460), false, 6);
                s[TCP_START + 3] ^= 1;
                s
            }),
        ];
        for (what, next) in cases {
            let mut j = Joiner::new(32 * 1024);
            assert!(j.join(&first));
            assert!(!j.join(&next), "{what}");
            assert_eq!(j.take().unwrap().segments, 1, "{what}");
        }
        // After a pushed segment nothing joins, though it continues.
        let mut j = Joiner::new(32 * 1024);
        assert!(j.join(&segment(1000, &data(0..1460), true, 5)));
        assert!(!j.join(&segment(2460, &data(1460..2920), false, 6)));
    }

    #[test]
    fn only_tcp_ipv4_data_with_ack_is_held() {
        let mut j = Joiner::new(32 * 1024);
        assert!(!j.join(&segment(1000, &[], false, 5)), "a bare ACK");
        let mut syn = segment(1000, &data(0..10), false, 5);
        syn[TCP_START + 13] |= 0x02;
        assert!(!j.join(&syn));
        let mut fragment = segment(1000, &data(0..10), false, 5);
        fragment[ETH_HEADER + 6] |= 0x20;
        assert!(!j.join(&fragment));
        let mut padded = segment(1000, &data(0..10), false, 5);
        padded.push(0);
        assert!(!j.join(&padded), "bytes past the IP packet");
        assert!(!j.join(&[0; 10]));
        assert!(j.is_empty());
    }

    #[test]
    fn each_connection_joins_in_its_own_joiner() {
        let mut joiners = Joiners::new(2, 32 * 1024);
        let a = |seq: i32, port: u16| {
            let mut s = segment(seq, &data(0..1460), false, 5);
            s[TCP_START + 2..TCP_START + 4].copy_from_slice(&port.to_be_bytes());
            s
        };
        for (seq, port) in [(1000, 1), (1000, 2), (2460, 1), (2460, 2)] {
            let frame = a(seq, port);
            let i = match joiners.flow_of(&frame) {
                Some(i) => i,
                None => joiners.free_or_victim().0,
            };
            assert!(joiners.get(i).join(&frame), "{seq} {port}");
        }
        assert_eq!(joiners.held_lens(None).collect::<Vec<_>>(), [54 + 2920, 54 + 2920]);
        assert_eq!(joiners.held_lens(Some(0)).count(), 1);
        // A third connection: no joiner is free, one is named to be emptied, in turn.
        assert_eq!(joiners.flow_of(&a(1000, 3)), None);
        assert_eq!(joiners.free_or_victim(), (0, false));
        assert_eq!(joiners.free_or_victim(), (1, false));
        // A pure ACK of a held connection is of its flow, though it does not join.
        let ack = segment(2460, &[], false, 9);
        let mut ack = ack;
        ack[TCP_START + 2..TCP_START + 4].copy_from_slice(&2u16.to_be_bytes());
        assert_eq!(joiners.flow_of(&ack), Some(1));
        assert!(!joiners.get(1).join(&ack));
    }

    #[test]
    fn the_limit_bounds_the_packet() {
        let first = segment(1000, &data(0..1460), false, 5);
        let mut j = Joiner::new(first.len() + 1460);
        assert!(j.join(&first));
        assert!(j.join(&segment(2460, &data(0..1460), false, 6)));
        assert_eq!(j.joined_len(&segment(3920, &data(0..1), false, 7)), None);
        assert!(!j.join(&segment(3920, &data(0..1), false, 7)));
    }
}
