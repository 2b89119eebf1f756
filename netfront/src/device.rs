//! The vif as a `smoltcp` device: received frames come out of the rx ring
//! already copied into our own buffer; sent frames go into a pre-granted tx
//! slot, and the backend is notified only when it asked to be.

use crate::connect::{Features, Offload, Shared};
use crate::csum;
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
            // Room for the longest packet taken (a GSO one, with scatter-gather), so that
            // gathering one never grows it: there may be no heap left to grow into.
            rx_frame: Vec::with_capacity(if features.rx.sg { crate::rx::MAX_RX_FRAME } else { MAX_FRAME }),
            shared,
            features,
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

    /// Frees the slots of sent frames and asks for an event on the next
    /// response; true if work is already waiting (poll again, don't sleep).
    pub fn prepare_to_sleep(&mut self) -> bool {
        if self.broken.is_some() {
            return false;
        }
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
        if !self.queues.can_send() {
            if let Err(e) = self.queues.reap_tx() {
                self.fault(e);
                return false;
            }
        }
        self.queues.tx_ready(now.total_millis()) != TxReady::Wait
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
        loop {
            if self.broken.is_some() {
                return None;
            }
            match self.queues.recv(&mut self.rx_frame) {
                // With checksum offload smoltcp verifies no TCP/UDP checksum: what the backend
                // did not vouch for is verified here.
                Ok(Some(RxCsum::Unchecked)) if self.features.csum && !csum::verify_rx(&self.rx_frame) => {
                    self.queues.stats.rx_bad_csum += 1;
                    log::debug!("netfront: dropped a received segment with a bad checksum");
                }
                Ok(Some(_)) => break,
                Ok(None) => return None,
                // A bad response is dropped (and counted); look at the next
                // one. At most a ring's worth: each takes one of our requests.
                Err(e) => self.fault(e),
            }
        }
        // The reposted rx buffer goes back to the backend at once.
        Self::flush(&mut self.queues, self.port);
        let tx = TxToken { queues: &mut self.queues, port: self.port, features: self.features };
        Some((RxToken { frame: &self.rx_frame }, tx))
    }

    fn transmit(&mut self, now: Instant) -> Option<TxToken<'_>> {
        let features = self.features;
        self.tx_room(now).then_some(TxToken { queues: &mut self.queues, port: self.port, features })
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

pub struct TxToken<'a> {
    queues: &'a mut Queues,
    port: Port,
    features: Features,
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
        let on = self.features;
        let flags = if on.csum && csum::prepare_tx(&mut frame[..len], on.tx_csum_v4, on.tx_csum_v6) {
            NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED
        } else {
            0
        };
        // Without a free slot (a backend that stopped answering) the frame
        // is dropped and counted by `send`.
        if self.queues.send(&frame[..len], flags) {
            Netfront::flush(self.queues, self.port);
        }
        result
    }
}
