//! The vif as a `smoltcp` device: received frames come out of the rx ring
//! already copied into our own buffer; sent frames go into pre-granted tx
//! slots (consecutive TCP segments joined first, with tx GSO: [`crate::gso`]),
//! and the backend is notified only when it asked to be.

use crate::connect::{Features, Offload, Shared};
use crate::csum;
#[cfg(feature = "tx-gso")]
use crate::gso::{self, Joiner, Joiners};
#[cfg(feature = "tx-gso")]
use crate::queues::MAX_TX_PACKET;
use crate::queues::{QueueError, Queues, TxReady, MAX_FRAME};
use crate::rx::RxCsum;
use crate::wire::{NETTXF_CSUM_BLANK, NETTXF_DATA_VALIDATED};
use alloc::vec::Vec;
use mote_xen::event::{self, Port};
use mote_xen::gnttab::GrantTable;
use mote_xen::io_ring::RingError;
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// A connected vif.
pub struct Netfront {
    queues: Queues,
    port: Port,
    mac: [u8; 6],
    rx_frame: Vec<u8>,
    shared: Shared,
    features: Features,
    /// TCP segments being joined into one packet per connection (with tx GSO): sent when a
    /// frame of the connection that does not continue them comes, and at the end of each
    /// turn of the stack ([`Netfront::prepare_to_sleep`]).
    #[cfg(feature = "tx-gso")]
    joiner: Option<Joiners>,
    /// A ring the backend broke (an index running ahead): the vif carries
    /// no more frames, and its owner should close it.
    broken: Option<RingError>,
}

impl Netfront {
    pub fn new(queues: Queues, port: Port, mac: [u8; 6], shared: Shared, features: Features) -> Self {
        Netfront {
            queues,
            port,
            mac,
            // Room for the longest packet taken (a GSO one with scatter-gather, a page's worth
            // without), so that gathering one never grows it: there may be no heap left to
            // grow into.
            rx_frame: Vec::with_capacity(features.rx.max_frame()),
            shared,
            features,
            // Allocated now, at its full size, for the reason rx_frame is.
            #[cfg(feature = "tx-gso")]
            joiner: features.tx_gso.then(|| Joiners::new(JOINED_FLOWS, JOINED_PACKET)),
            broken: None,
        }
    }

    /// The offloads the handshake settled.
    pub fn features(&self) -> Features {
        self.features
    }

    /// Gives the rings, buffers, grants and event channel back, once the
    /// backend has closed (see [`Shared::release`]).
    pub fn release(self, grants: &mut GrantTable<'_>) {
        let Netfront { shared, .. } = self;
        shared.release(grants);
    }

    /// Why the vif stopped, if the backend broke a ring.
    pub fn broken(&self) -> Option<RingError> {
        self.broken
    }

    /// Logs a data-path error; a broken ring stops the vif for good.
    fn fault(&mut self, e: QueueError) {
        match e {
            QueueError::Ring(ring) => {
                log::error!("netfront: {e}; the vif stops carrying frames");
                self.broken = Some(ring);
            }
            _ => log::warn!("{e}"),
        }
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The event channel the backend signals.
    pub fn port(&self) -> Port {
        self.port
    }

    pub fn stats(&self) -> crate::queues::Stats {
        self.queues.stats
    }

    /// Sends the segments being joined, frees the slots of sent frames and asks for an event
    /// on the next response; true if work is already waiting (poll again, don't sleep).
    pub fn prepare_to_sleep(&mut self) -> bool {
        if self.broken.is_some() {
            return false;
        }
        #[cfg(feature = "tx-gso")]
        self.send_held();
        if let Err(e) = self.queues.reap_tx() {
            self.fault(e);
        }
        self.queues.arm_events().unwrap_or_else(|e| {
            self.fault(e);
            false
        })
    }

    /// Whether a frame may go out at `now`: a tx slot is free (after taking the backend's tx
    /// responses if none is), or the backend has stalled so long that frames are dropped
    /// rather than waited for ([`Queues::tx_ready`]).
    fn tx_room(&mut self, now: Instant) -> bool {
        if self.broken.is_some() {
            return false;
        }
        // The packets held for joining keep their slots free, with one for a frame more
        // ([`fits`]); a frame sent on its own may have taken that one: then they go first.
        #[cfg(feature = "tx-gso")]
        if let Some(joiners) = &self.joiner {
            let (buffers, ring) = held_slots(joiners, None);
            if !self.queues.has_room(buffers, ring) {
                self.send_held();
            }
        }
        if !self.queues.can_send() {
            if let Err(e) = self.queues.reap_tx() {
                self.fault(e);
                return false;
            }
        }
        self.queues.tx_ready(now.total_millis()) != TxReady::Wait
    }

    /// Sends every packet held for joining, and notifies the backend if it asked.
    #[cfg(feature = "tx-gso")]
    fn send_held(&mut self) {
        if let Some(joiners) = &mut self.joiner {
            for joiner in joiners.iter_mut() {
                send_joined(&mut self.queues, joiner, self.features);
            }
            Self::flush(&mut self.queues, self.port);
        }
    }

    /// Takes the next frame that may go up into `rx_frame`; false if none has come. Frames
    /// dropped on the way (a bad checksum, a refused response) are counted and passed over.
    fn next_frame(&mut self) -> bool {
        while self.broken.is_none() {
            match self.queues.recv(&mut self.rx_frame) {
                // With checksum offload smoltcp verifies no TCP/UDP checksum: what the backend
                // did not vouch for is verified here.
                Ok(Some(RxCsum::Unchecked)) if self.features.csum && !csum::verify_rx(&self.rx_frame) => {
                    self.queues.stats.rx_bad_csum += 1;
                    log::debug!("netfront: dropped a received segment with a bad checksum");
                }
                Ok(Some(_)) => return true,
                Ok(None) => return false,
                // A bad response is dropped (and counted); look at the next
                // one. At most a ring's worth: each takes one of our requests.
                Err(e) => self.fault(e),
            }
        }
        false
    }

    fn flush(queues: &mut Queues, port: Port) {
        if queues.publish() {
            if let Err(e) = event::send(port) {
                log::warn!("netfront: notifying the backend on {port}: {e}");
            }
        }
    }
}

impl phy::Device for Netfront {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        // A frame taken in may be answered at once (an ACK) through the paired TxToken: take
        // one only while a tx slot is free, so that with the tx ring full the answer waits
        // (the frame stays in the rx ring) instead of being dropped.
        if !self.tx_room(now) {
            return None;
        }
        let got = self.next_frame();
        // Every buffer taken goes back to the backend now, whether a frame came of it or not:
        // after a ring's worth of dropped packets the backend would otherwise hold no buffer to
        // deliver the next one into, and a vif that sends nothing of its own (no tx GSO, a
        // static address) would never publish them again (issue #29, item 1). A broken ring
        // is left alone.
        if self.broken.is_some() {
            return None;
        }
        Self::flush(&mut self.queues, self.port);
        if !got {
            return None;
        }
        let tx = TxToken {
            queues: &mut self.queues,
            port: self.port,
            features: self.features,
            #[cfg(feature = "tx-gso")]
            joiner: self.joiner.as_mut(),
        };
        Some((RxToken { frame: &self.rx_frame }, tx))
    }

    fn transmit(&mut self, now: Instant) -> Option<TxToken<'_>> {
        let features = self.features;
        if !self.tx_room(now) {
            return None;
        }
        Some(TxToken {
            queues: &mut self.queues,
            port: self.port,
            features,
            #[cfg(feature = "tx-gso")]
            joiner: self.joiner.as_mut(),
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        capabilities(Offload { csum: self.features.csum, sg: self.features.rx.sg })
    }
}

/// What a vif with these offloads offers smoltcp (the same whether connected or not, as
/// smoltcp reads it once).
pub fn capabilities(offload: Offload) -> DeviceCapabilities {
    let mut caps = DeviceCapabilities::default();
    caps.medium = Medium::Ethernet;
    caps.max_transmission_unit = MAX_FRAME;
    caps.checksum = ChecksumCapabilities::default();
    caps.checksum.ipv4 = Checksum::Both;
    if offload.csum {
        // Per frame in netfront instead (see `csum`): smoltcp's choice is per device.
        caps.checksum.tcp = Checksum::None;
        caps.checksum.udp = Checksum::None;
    }
    caps
}

pub struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

/// Connections whose segments are joined at once: a turn of the stack sends a segment of
/// each connection with data in turn. And the longest packet joined for one: 11 segments of
/// 1460 bytes, as much as the web app's 16 KiB send buffer holds.
#[cfg(feature = "tx-gso")]
const JOINED_FLOWS: usize = 4;
#[cfg(feature = "tx-gso")]
const JOINED_PACKET: usize = 16 * 1024;
/// Heap bytes the joiners hold (allocated when the vif connects, with tx GSO).
#[cfg(feature = "tx-gso")]
pub const JOINER_HEAP_BYTES: usize = JOINED_FLOWS * JOINED_PACKET;
#[cfg(not(feature = "tx-gso"))]
pub const JOINER_HEAP_BYTES: usize = 0;
#[cfg(feature = "tx-gso")]
const _: () = assert!(JOINED_PACKET <= MAX_TX_PACKET);

pub struct TxToken<'a> {
    queues: &'a mut Queues,
    port: Port,
    features: Features,
    #[cfg(feature = "tx-gso")]
    joiner: Option<&'a mut Joiners>,
}

/// The tx buffers and ring slots the packets held take (as GSO ones), but joiner `except`'s.
#[cfg(feature = "tx-gso")]
fn held_slots(joiners: &Joiners, except: Option<usize>) -> (usize, usize) {
    joiners
        .held_lens(except)
        .map(|len| Queues::tx_slots_for(len, true))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// Whether a packet of `len` bytes for joiner `at` fits in the tx ring with every other
/// packet held and one frame more.
#[cfg(feature = "tx-gso")]
fn fits(queues: &Queues, joiners: &Joiners, at: usize, len: usize) -> bool {
    let (buffers, ring) = Queues::tx_slots_for(len, true);
    let (held_buffers, held_ring) = held_slots(joiners, Some(at));
    queues.has_room(buffers + held_buffers, ring + held_ring)
}

/// `NETTXF_*` for a frame to send, its TCP/UDP checksum prepared for them
/// ([`csum::prepare_tx`]).
fn tx_flags(frame: &mut [u8], on: Features) -> u16 {
    if on.csum && csum::prepare_tx(frame, on.tx_csum_v4, on.tx_csum_v6) {
        NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED
    } else {
        0
    }
}

/// Queues the packet the joiner holds, if any, as GSO when it joined several segments.
#[cfg(feature = "tx-gso")]
fn send_joined(queues: &mut Queues, joiner: &mut Joiner, on: Features) {
    if let Some(joined) = joiner.take() {
        let flags = tx_flags(joined.frame, on);
        if queues.send_packet(joined.frame, flags, joined.seg_size) && joined.seg_size.is_some() {
            queues.stats.tx_gso += 1;
            queues.stats.tx_gso_segments += u64::from(joined.segments);
        }
        joiner.clear();
    }
}

impl TxToken<'_> {
    /// Sends a frame smoltcp has filled in (kept out of the generic `consume`, which is
    /// built once for each of smoltcp's callers).
    #[inline(never)]
    fn send(self, frame: &mut [u8]) {
        #[cfg(feature = "tx-gso")]
        if let Some(joiners) = self.joiner {
            let on = self.features;
            if let Some(at) = joiners.flow_of(frame) {
                // Joined while the packets held with it (and one frame more) have room.
                let joined = joiners.get(at).joined_len(frame);
                if joined.is_some_and(|n| fits(self.queues, joiners, at, n)) {
                    joiners.get(at).join(frame);
                    return;
                }
                // The connection's held segments go before this one.
                send_joined(self.queues, joiners.get(at), on);
            }
            // A segment that may start a packet waits for the next of its connection.
            if gso::can_start(frame) {
                let (at, free) = joiners.free_or_victim();
                if !free {
                    send_joined(self.queues, joiners.get(at), on);
                }
                if fits(self.queues, joiners, at, frame.len()) {
                    joiners.get(at).join(frame);
                    Netfront::flush(self.queues, self.port);
                    return;
                }
            }
        }
        let flags = tx_flags(frame, self.features);
        // Without a free slot (a backend that stopped answering) the frame
        // is dropped and counted by `send`.
        self.queues.send(frame, flags);
        Netfront::flush(self.queues, self.port);
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        if len > MAX_FRAME {
            // smoltcp keeps to the MTU we report; a longer frame cannot go out in one slot.
            log::error!("netfront: {len}-byte frame exceeds {MAX_FRAME} bytes; dropped");
            return f(&mut alloc::vec![0; len]);
        }
        let mut frame = [0u8; MAX_FRAME];
        let result = f(&mut frame[..len]);
        self.send(&mut frame[..len]);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::Shared;
    use crate::rx::{RxFeatures, BUFFER_SIZE};
    use crate::testing::{bytes, queues_with};
    use crate::wire::{RxRequest, RxResponse};
    use mote_xen::event::Port;
    use smoltcp::phy::{Device, RxToken as _};

    #[test]
    fn the_longest_frame_one_buffer_holds_is_received_without_growing_the_buffer() {
        // No scatter-gather: a piece fills at most its page, longer than an Ethernet frame
        // (VLAN-tagged, or from a hostile backend).
        let (mut q, _, mut back, _, rxb) = queues_with(1, 2, RxFeatures::default());
        q.publish();
        let mut dev = Netfront::new(q, Port(0), [0; 6], Shared::none(), Features::default());
        let capacity = dev.rx_frame.capacity();
        let req: RxRequest = back.requests(8)[0];
        let frame: Vec<u8> = (0..BUFFER_SIZE).map(|i| i as u8).collect();
        bytes(&rxb[usize::from(req.id)]).copy_from_slice(&frame);
        back.respond(8, RxResponse { id: req.id, offset: 0, flags: 0, status: BUFFER_SIZE as i16 });
        let (rx, _) = dev.receive(Instant::from_millis(0)).expect("the frame");
        assert_eq!(rx.consume(|f| f.to_vec()), frame);
        assert_eq!(dev.rx_frame.capacity(), capacity, "no allocation on the data path");
    }
}

#[cfg(all(test, feature = "tx-gso"))]
mod gso_tests {
    use super::*;
    use crate::connect::Shared;
    use crate::rx::RxFeatures;
    use crate::testing::{bytes, queues_with, tcp_v4_segment};
    use crate::wire::{TxRequest, TxResponse, NETIF_RSP_OKAY, NETTXF_EXTRA_INFO, NETTXF_MORE_DATA};
    use mote_xen::event::Port;
    use smoltcp::phy::{Device, TxToken as _};

    const TX: usize = 12;

    fn gso_features() -> Features {
        Features {
            csum: true,
            rx: RxFeatures { sg: true, csum_blank: true, gso: true },
            tx_csum_v4: true,
            tx_csum_v6: false,
            tx_gso: true,
        }
    }

    fn send(dev: &mut Netfront, frame: &[u8]) {
        let token = dev.transmit(Instant::from_millis(0)).expect("room for a frame");
        token.consume(frame.len(), |buf| buf.copy_from_slice(frame));
    }

    #[test]
    fn segments_join_per_connection_within_the_slots_free_and_none_is_dropped() {
        // Two tx pages: four 2 KiB slots.
        let (mut q, mut back, _, txb, _) = queues_with(2, 1, gso_features().rx);
        // A first frame answered here, as the first publish would notify through a hypercall.
        assert!(q.send(&[0; 60], 0));
        q.publish();
        let first: Vec<TxRequest> = back.requests(TX);
        back.respond(TX, TxResponse { id: first[0].id, status: NETIF_RSP_OKAY });
        q.reap_tx().unwrap();
        let mut dev = Netfront::new(q, Port(0), [0; 6], Shared::none(), gso_features());
        let payload = |n: i32| -> Vec<u8> { (0..1460).map(|i| (i + n * 7) as u8).collect() };
        // Connection 1's first two segments, with connection 2's first between them.
        send(&mut dev, &tcp_v4_segment(1, 1000, &payload(0), false, false));
        send(&mut dev, &tcp_v4_segment(2, 5000, &payload(9), true, false));
        send(&mut dev, &tcp_v4_segment(1, 2460, &payload(1), false, false));
        assert!(back.requests::<TxRequest>(TX).is_empty(), "all three held");
        // Connection 1's third would leave no slot for a frame after the packets held
        // (3 for connection 1, 1 for connection 2, of 4): connection 1's packet goes first,
        // the third on its own.
        send(&mut dev, &tcp_v4_segment(1, 3920, &payload(2), false, false));
        assert!(!dev.prepare_to_sleep());
        let reqs: Vec<TxRequest> = back.requests(TX);
        assert_eq!(
            reqs[0].flags & (NETTXF_MORE_DATA | NETTXF_EXTRA_INFO),
            NETTXF_MORE_DATA | NETTXF_EXTRA_INFO
        );
        assert_eq!(reqs[1], crate::wire::gso_extra_info(1460));
        assert_eq!(usize::from(reqs[0].size), 54 + 2 * 1460);
        let slot = |r: &TxRequest, len: usize| {
            bytes(&txb[usize::from(r.id) / 2])[usize::from(r.offset)..][..len].to_vec()
        };
        let mut joined = slot(&reqs[0], crate::queues::TX_SLOT_SIZE);
        joined.extend(slot(&reqs[2], usize::from(reqs[2].size)));
        assert_eq!(&joined[54..], [payload(0), payload(1)].concat(), "payloads in order");
        // Then the third of connection 1 and the one of connection 2, each alone.
        assert_eq!(reqs.len(), 5);
        assert_eq!(slot(&reqs[3], 60)[34..36], 1u16.to_be_bytes());
        assert_eq!(slot(&reqs[4], 60)[34..36], 2u16.to_be_bytes());
        let stats = dev.stats();
        assert_eq!((stats.tx_gso, stats.tx_gso_segments, stats.tx_no_slot), (1, 2, 0));
    }
}
