//! The xenstore page (`struct xenstore_domain_interface` in `io/xs_wire.h`,
//! `docs/misc/xenstore-ring.txt`): we produce into `req` and consume from
//! `rsp`, each a 1024-byte [`crate::ring`]; xenstored owns the other two
//! indices, the feature bits and the error indicator.

use super::transport::{Transport, TransportError};
use crate::event::Port;
use crate::hvm::{self, RingPageError};
use crate::ring::{Consumer, Producer, SharedBytes};
use core::sync::atomic::{fence, AtomicU32, Ordering};

/// `XENSTORE_RING_SIZE`.
pub const RING_SIZE: usize = 1024;
/// `XENSTORE_SERVER_FEATURE_RECONNECTION`: `connection` is meaningful.
const FEATURE_RECONNECTION: u32 = 1;
/// `XENSTORE_SERVER_FEATURE_ERROR`: `error` is meaningful.
const FEATURE_ERROR: u32 = 2;
/// `XENSTORE_RECONNECT`: a reset is in progress; nothing else may be touched.
const RECONNECT: u32 = 1;

/// `struct xenstore_domain_interface`.
#[repr(C)]
pub struct Interface {
    pub(super) req: SharedBytes<RING_SIZE>,
    pub(super) rsp: SharedBytes<RING_SIZE>,
    pub(super) req_cons: AtomicU32,
    pub(super) req_prod: AtomicU32,
    pub(super) rsp_cons: AtomicU32,
    pub(super) rsp_prod: AtomicU32,
    pub(super) server_features: AtomicU32,
    pub(super) connection: AtomicU32,
    pub(super) error: AtomicU32,
}

const _: () = assert!(core::mem::size_of::<Interface>() == 2076);
const _: () = assert!(core::mem::offset_of!(Interface, req_cons) == 2048);

impl Interface {
    /// A blank interface, as Xen hands it over (host tests use it too).
    pub const fn new() -> Self {
        Interface {
            req: SharedBytes::new(),
            rsp: SharedBytes::new(),
            req_cons: AtomicU32::new(0),
            req_prod: AtomicU32::new(0),
            rsp_cons: AtomicU32::new(0),
            rsp_prod: AtomicU32::new(0),
            server_features: AtomicU32::new(0),
            connection: AtomicU32::new(0),
            error: AtomicU32::new(0),
        }
    }

    /// Finds the page and event channel Xen set up for this domain
    /// (`HVM_PARAM_STORE_PFN`, `HVM_PARAM_STORE_EVTCHN`).
    pub fn from_hvm_params() -> Result<(&'static Interface, Port), RingPageError> {
        let page = hvm::ring_page(hvm::Param::StorePfn, hvm::Param::StoreEvtchn)?;
        // SAFETY: Xen gave us this mapped frame as the xenstore page; it is
        // never freed and only accessed through `Interface`'s atomics and
        // volatile accesses.
        let intf: &'static Interface = unsafe { &*(page.addr as *const Interface) };
        Ok((intf, page.port))
    }
}

impl Default for Interface {
    fn default() -> Self {
        Self::new()
    }
}

/// The client's byte stream over the shared page. `notify` signals the
/// store event channel; `wait` blocks until it fires (or just yields).
pub struct RingTransport<'a, N, W> {
    intf: &'a Interface,
    req: Producer<'a, RING_SIZE>,
    rsp: Consumer<'a, RING_SIZE>,
    /// Our indices must be re-read from the page: set at start and while
    /// xenstored resets the ring.
    stale: bool,
    /// xenstored may be asleep: it had taken every request before our last
    /// write, or had no room left to answer before our last read. Only then
    /// does [`Transport::notify`] signal it, as Linux's xenbus does: each
    /// signal may switch the CPU to dom0, so requests written in a row go
    /// with one signal instead of one each.
    wake: bool,
    notify: N,
    wait: W,
}

impl<'a, N: FnMut(), W: FnMut()> RingTransport<'a, N, W> {
    pub fn new(intf: &'a Interface, notify: N, wait: W) -> Self {
        RingTransport {
            intf,
            req: Producer::new(&intf.req, &intf.req_cons, &intf.req_prod),
            rsp: Consumer::new(&intf.rsp, &intf.rsp_cons, &intf.rsp_prod),
            stale: true,
            wake: false,
            notify,
            wait,
        }
    }

    /// Whether data may move now: not while xenstored resets the ring
    /// (after which our indices are re-read), and never after it reported
    /// an error.
    fn ready(&mut self) -> Result<bool, TransportError> {
        let intf = self.intf;
        let features = intf.server_features.load(Ordering::Acquire);
        if features & FEATURE_ERROR != 0 {
            let error = intf.error.load(Ordering::Acquire);
            if error != 0 {
                return Err(TransportError::Closed(error));
            }
        }
        if features & FEATURE_RECONNECTION != 0 && intf.connection.load(Ordering::Acquire) == RECONNECT {
            self.stale = true;
            return Ok(false);
        }
        if self.stale {
            self.req = Producer::new(&intf.req, &intf.req_cons, &intf.req_prod);
            self.rsp = Consumer::new(&intf.rsp, &intf.rsp_cons, &intf.rsp_prod);
            self.stale = false;
            self.wake = true;
        }
        Ok(true)
    }
}

impl<N: FnMut(), W: FnMut()> Transport for RingTransport<'_, N, W> {
    fn send(&mut self, bytes: &[u8]) -> Result<usize, TransportError> {
        if !self.ready()? {
            return Ok(0);
        }
        let before = self.intf.req_prod.load(Ordering::Relaxed);
        let n = self.req.write_some(bytes).map_err(TransportError::Corrupt)?;
        // Our new index is visible before we look at how far xenstored got.
        fence(Ordering::SeqCst);
        if n > 0 && self.intf.req_cons.load(Ordering::SeqCst) == before {
            self.wake = true;
        }
        Ok(n)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, TransportError> {
        if !self.ready()? {
            return Ok(0);
        }
        let before = self.intf.rsp_cons.load(Ordering::Relaxed);
        let full = self.intf.rsp_prod.load(Ordering::Acquire).wrapping_sub(before) as usize >= RING_SIZE;
        let n = self.rsp.read_some(buf).map_err(TransportError::Corrupt)?;
        self.wake |= n > 0 && full;
        Ok(n)
    }

    fn notify(&mut self) {
        if core::mem::take(&mut self.wake) {
            (self.notify)();
        }
    }

    fn wait(&mut self) {
        (self.wait)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::RingCorrupt;
    use core::cell::Cell;

    /// xenstored's side of the page.
    fn server(intf: &Interface) -> (Consumer<'_, RING_SIZE>, Producer<'_, RING_SIZE>) {
        (
            Consumer::new(&intf.req, &intf.req_cons, &intf.req_prod),
            Producer::new(&intf.rsp, &intf.rsp_cons, &intf.rsp_prod),
        )
    }

    fn start_at(intf: &Interface, idx: u32) {
        for i in [&intf.req_cons, &intf.req_prod, &intf.rsp_cons, &intf.rsp_prod] {
            i.store(idx, Ordering::Relaxed);
        }
    }

    #[test]
    fn both_directions_wrap_the_ring_and_u32() {
        let intf = Interface::new();
        start_at(&intf, u32::MAX - 700);
        let mut t = RingTransport::new(&intf, || {}, || {});
        let (mut s_rx, mut s_tx) = server(&intf);
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let (mut at_server, mut at_client) = (Vec::new(), Vec::new());
        let mut buf = [0u8; 300];
        let mut sent = 0;
        while at_client.len() < data.len() {
            sent += t.send(&data[sent..]).unwrap();
            let n = s_rx.read_some(&mut buf).unwrap();
            at_server.extend_from_slice(&buf[..n]);
            s_tx.write_some(&buf[..n]).unwrap();
            let n = t.recv(&mut buf).unwrap();
            at_client.extend_from_slice(&buf[..n]);
        }
        assert_eq!(at_server, data);
        assert_eq!(at_client, data);
    }

    #[test]
    fn nothing_moves_while_xenstored_resets_the_ring() {
        let intf = Interface::new();
        intf.server_features.store(FEATURE_RECONNECTION, Ordering::Relaxed);
        intf.connection.store(RECONNECT, Ordering::Relaxed);
        let mut t = RingTransport::new(&intf, || {}, || {});
        assert_eq!(t.send(b"abc"), Ok(0));
        // The reset leaves indices anywhere; we continue from there.
        start_at(&intf, 500);
        intf.connection.store(0, Ordering::Relaxed);
        assert_eq!(t.send(b"abc"), Ok(3));
        assert_eq!(intf.req_prod.load(Ordering::Relaxed), 503);
    }

    #[test]
    fn xenstored_error_indicator_closes_the_stream() {
        let intf = Interface::new();
        let mut t = RingTransport::new(&intf, || {}, || {});
        intf.error.store(2, Ordering::Relaxed);
        // Without the feature bit the field means nothing.
        assert_eq!(t.send(b"a"), Ok(1));
        intf.server_features.store(FEATURE_ERROR, Ordering::Relaxed);
        assert_eq!(t.send(b"a"), Err(TransportError::Closed(2)));
        assert_eq!(t.recv(&mut [0; 4]), Err(TransportError::Closed(2)));
    }

    #[test]
    fn runaway_indices_are_errors() {
        let intf = Interface::new();
        let mut t = RingTransport::new(&intf, || {}, || {});
        intf.rsp_prod.store(RING_SIZE as u32 + 1, Ordering::Relaxed);
        let corrupt = TransportError::Corrupt(RingCorrupt { cons: 0, prod: RING_SIZE as u32 + 1 });
        assert_eq!(t.recv(&mut [0; 4]), Err(corrupt));
        intf.req_cons.store(7, Ordering::Relaxed);
        assert_eq!(t.send(b"a"), Err(TransportError::Corrupt(RingCorrupt { cons: 7, prod: 0 })));
    }

    #[test]
    fn hooks_are_the_creators() {
        let waited = Cell::new(0);
        let intf = Interface::new();
        let mut t = RingTransport::new(&intf, || {}, || waited.set(waited.get() + 1));
        t.wait();
        t.wait();
        assert_eq!(waited.get(), 2);
    }

    #[test]
    fn xenstored_is_signalled_only_when_it_may_be_asleep() {
        let notified = Cell::new(0);
        let intf = Interface::new();
        let mut t = RingTransport::new(&intf, || notified.set(notified.get() + 1), || {});
        let (mut s_rx, mut s_tx) = server(&intf);
        // Nothing moved: nothing to tell.
        t.notify();
        assert_eq!(notified.get(), 0);
        // Requests written in a row to an idle xenstored: one signal.
        assert_eq!(t.send(b"one"), Ok(3));
        assert_eq!(t.send(b"two"), Ok(3));
        t.notify();
        t.notify();
        assert_eq!(notified.get(), 1);
        // xenstored has taken part of them: it is awake and will see the rest.
        assert_eq!(s_rx.read_some(&mut [0; 3]), Ok(3));
        assert_eq!(t.send(b"three"), Ok(5));
        t.notify();
        assert_eq!(notified.get(), 1);
        // It took everything: the next request wakes it.
        assert_eq!(s_rx.read_some(&mut [0; 16]), Ok(8));
        assert_eq!(t.send(b"four"), Ok(4));
        t.notify();
        assert_eq!(notified.get(), 2);

        // Reading answers from a ring with room left tells it nothing; from a
        // full ring (xenstored may be waiting for room), it does.
        assert_eq!(s_tx.write_some(&[7; 10]), Ok(10));
        assert_eq!(t.recv(&mut [0; 10]), Ok(10));
        t.notify();
        assert_eq!(notified.get(), 2);
        assert_eq!(s_tx.write_some(&[7; RING_SIZE]), Ok(RING_SIZE));
        assert_eq!(t.recv(&mut [0; 1]), Ok(1));
        t.notify();
        assert_eq!(notified.get(), 3);
    }
}
