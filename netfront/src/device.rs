//! The vif as a `smoltcp` device: received frames come out of the rx ring
//! already copied into our own buffer; sent frames go into a pre-granted tx
//! slot, and the backend is notified only when it asked to be.

use crate::queues::{Queues, MAX_FRAME};
use alloc::vec::Vec;
use mote_xen::event::{self, Port};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// A connected vif.
pub struct Netfront {
    queues: Queues,
    port: Port,
    mac: [u8; 6],
    rx_frame: Vec<u8>,
}

impl Netfront {
    pub fn new(queues: Queues, port: Port, mac: [u8; 6]) -> Self {
        Netfront { queues, port, mac, rx_frame: Vec::with_capacity(MAX_FRAME) }
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
        if let Err(e) = self.queues.reap_tx() {
            log::warn!("{e}");
        }
        self.queues.arm_events().unwrap_or_else(|e| {
            log::warn!("{e}");
            false
        })
    }

    /// Whether a frame can be queued, after taking the backend's tx responses if none can.
    fn tx_room(&mut self) -> bool {
        if !self.queues.can_send() {
            if let Err(e) = self.queues.reap_tx() {
                log::warn!("{e}");
            }
        }
        self.queues.can_send()
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

    fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        // A frame taken in may be answered at once (an ACK) through the paired TxToken: take
        // one only while a tx slot is free, so that with the tx ring full the answer waits
        // (the frame stays in the rx ring) instead of being dropped.
        if !self.tx_room() {
            return None;
        }
        loop {
            match self.queues.recv(&mut self.rx_frame) {
                Ok(true) => break,
                Ok(false) => return None,
                // A bad response is dropped (and counted); look at the next one.
                Err(e) => log::warn!("{e}"),
            }
        }
        // The reposted rx buffer goes back to the backend at once.
        Self::flush(&mut self.queues, self.port);
        Some((RxToken { frame: &self.rx_frame }, TxToken { queues: &mut self.queues, port: self.port }))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        self.tx_room().then_some(TxToken { queues: &mut self.queues, port: self.port })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        // We told the backend `feature-no-csum-offload`: checksums are ours both ways.
        caps.checksum = ChecksumCapabilities::default();
        caps.checksum.ipv4 = Checksum::Both;
        caps
    }
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
        if !self.queues.send(&frame[..len]) {
            log::warn!("netfront: no tx slot for a {len}-byte frame; dropped");
        }
        Netfront::flush(self.queues, self.port);
        result
    }
}
