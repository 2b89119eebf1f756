//! The server end of a vchan (`tools/include/libxenvchan.h` and
//! `tools/libs/vchan/` in Xen): a byte stream each way between two domains
//! over one granted page, advertised in xenstore as `<path>/ring-ref` and
//! `<path>/event-channel`.
//!
//! Why vchan: Xen's own tools include `vchan-socket-proxy` (Debian 12's
//! `xen-utils-4.17` has it), which connects to such a server and relays it
//! to a Unix socket in dom0, so a mote's side channel (the gdb stub) needs
//! nothing installed in dom0.
//!
//! The page holds both rings' indices, their sizes, "live" flags and
//! notification requests; with the in-page layout we use, the client's
//! 1024-byte ring (`left`: client writes, we read) sits at offset 1024 and
//! ours (`right`) at offset 2048. The client's indices and flags are read
//! once per step and checked ([`RingCorrupt`]) before use.

use crate::ring::{Consumer, Producer, RingCorrupt, SharedBytes};
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU8, Ordering};

/// Notification bits (`VCHAN_NOTIFY_*`): wake the other side when data was
/// written, or read.
const NOTIFY_WRITE: u8 = 0x1;
const NOTIFY_READ: u8 = 0x2;

/// Ring orders of the in-page layout: 2^10 bytes at offset 1024, 2^11 at 2048.
const LEFT_ORDER: u16 = 10;
const RIGHT_ORDER: u16 = 11;
const LEFT_SIZE: usize = 1 << LEFT_ORDER;
const RIGHT_SIZE: usize = 1 << RIGHT_ORDER;

/// `struct ring_shared`.
#[repr(C)]
struct RingShared {
    cons: AtomicU32,
    prod: AtomicU32,
}

/// `struct vchan_interface`, followed by the two in-page rings.
#[repr(C)]
pub struct Interface {
    left: RingShared,
    right: RingShared,
    left_order: AtomicU16,
    right_order: AtomicU16,
    /// 0: gone, 1: connected, 2: not connected yet.
    cli_live: AtomicU8,
    srv_live: AtomicU8,
    /// Bits the server sets to ask the client for notifications.
    cli_notify: AtomicU8,
    /// Bits the client sets to ask the server for notifications.
    srv_notify: AtomicU8,
    /// The grant list of out-of-page rings; unused with in-page rings, but
    /// the client may still write it, so it is shared bytes like the rings.
    _grants: SharedBytes<1000>,
    left_buf: SharedBytes<LEFT_SIZE>,
    right_buf: SharedBytes<RIGHT_SIZE>,
}

const _: () = assert!(core::mem::size_of::<Interface>() == 4096);

impl Interface {
    /// A blank page (host tests use it too).
    pub const fn new() -> Self {
        Interface {
            left: RingShared { cons: AtomicU32::new(0), prod: AtomicU32::new(0) },
            right: RingShared { cons: AtomicU32::new(0), prod: AtomicU32::new(0) },
            left_order: AtomicU16::new(0),
            right_order: AtomicU16::new(0),
            cli_live: AtomicU8::new(0),
            srv_live: AtomicU8::new(0),
            cli_notify: AtomicU8::new(0),
            srv_notify: AtomicU8::new(0),
            _grants: SharedBytes::new(),
            left_buf: SharedBytes::new(),
            right_buf: SharedBytes::new(),
        }
    }
}

impl Default for Interface {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the client is, from `cli_live`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// No client has connected yet.
    Waiting,
    Connected,
    /// The client closed (or its domain unmapped the page): a new one may
    /// connect later.
    Gone,
    /// A value the protocol does not have.
    Invalid(u8),
}

/// Our end: we read the client's ring and write ours.
pub struct Server<'a> {
    intf: &'a Interface,
    rx: Consumer<'a, LEFT_SIZE>,
    tx: Producer<'a, RIGHT_SIZE>,
}

impl<'a> Server<'a> {
    /// Lays out a fresh page as a server does before granting it, as
    /// `libxenvchan_server_init` with both minimum sizes zero.
    pub fn new(intf: &'a Interface) -> Self {
        for index in [&intf.left.cons, &intf.left.prod, &intf.right.cons, &intf.right.prod] {
            index.store(0, Ordering::Relaxed);
        }
        intf.left_order.store(LEFT_ORDER, Ordering::Relaxed);
        intf.right_order.store(RIGHT_ORDER, Ordering::Relaxed);
        intf.cli_live.store(2, Ordering::Relaxed);
        intf.srv_live.store(1, Ordering::Relaxed);
        intf.cli_notify.store(NOTIFY_WRITE, Ordering::Relaxed);
        intf.srv_notify.store(0, Ordering::Release);
        Server {
            intf,
            rx: Consumer::new(&intf.left_buf, &intf.left.cons, &intf.left.prod),
            tx: Producer::new(&intf.right_buf, &intf.right.cons, &intf.right.prod),
        }
    }

    /// The client's state.
    pub fn client(&self) -> Client {
        match self.intf.cli_live.load(Ordering::Acquire) {
            0 => Client::Gone,
            1 => Client::Connected,
            2 => Client::Waiting,
            other => Client::Invalid(other),
        }
    }

    /// Asks the client to notify us when it writes: call before checking
    /// for data and then sleeping, so that a write in between still wakes us.
    pub fn want_data(&self) {
        self.intf.cli_notify.fetch_or(NOTIFY_WRITE, Ordering::SeqCst);
    }

    /// Copies out what the client wrote, up to `out.len()`. Returns how much,
    /// and whether the client asked to be told that we consumed it.
    pub fn read_some(&mut self, out: &mut [u8]) -> Result<(usize, bool), RingCorrupt> {
        let n = self.rx.read_some(out)?;
        Ok((n, n > 0 && self.take_request(NOTIFY_READ)))
    }

    /// Writes as much of `bytes` as fits. Returns how much, and whether the
    /// client asked to be told of new data.
    pub fn write_some(&mut self, bytes: &[u8]) -> Result<(usize, bool), RingCorrupt> {
        let n = self.tx.write_some(bytes)?;
        Ok((n, n > 0 && self.take_request(NOTIFY_WRITE)))
    }

    /// Bytes written and not yet consumed by the client.
    pub fn pending(&self) -> Result<u32, RingCorrupt> {
        self.tx.pending()
    }

    /// Clears the client's request for `bit`; true if it had asked.
    fn take_request(&self, bit: u8) -> bool {
        self.intf.srv_notify.fetch_and(!bit, Ordering::SeqCst) & bit != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays `libxenvchan`'s client on the same page.
    struct TestClient<'a> {
        intf: &'a Interface,
        tx: Producer<'a, LEFT_SIZE>,
        rx: Consumer<'a, RIGHT_SIZE>,
    }

    impl<'a> TestClient<'a> {
        fn connect(intf: &'a Interface) -> Self {
            assert_eq!(intf.left_order.load(Ordering::Relaxed), 10);
            assert_eq!(intf.right_order.load(Ordering::Relaxed), 11);
            intf.cli_live.store(1, Ordering::Relaxed);
            intf.srv_notify.store(NOTIFY_WRITE, Ordering::Relaxed);
            TestClient {
                intf,
                tx: Producer::new(&intf.left_buf, &intf.left.cons, &intf.left.prod),
                rx: Consumer::new(&intf.right_buf, &intf.right.cons, &intf.right.prod),
            }
        }
    }

    /// What may sit in a page the client writes: atomics and [`SharedBytes`],
    /// never plain bytes behind a shared reference.
    trait SharedCell {}
    impl SharedCell for AtomicU8 {}
    impl SharedCell for AtomicU16 {}
    impl SharedCell for AtomicU32 {}
    impl<const N: usize> SharedCell for SharedBytes<N> {}

    fn size<T: SharedCell>(_: &T) -> usize {
        core::mem::size_of::<T>()
    }

    #[test]
    fn every_byte_of_the_page_is_an_atomic_or_shared_bytes() {
        let i = Interface::new();
        let fields = [
            size(&i.left.cons),
            size(&i.left.prod),
            size(&i.right.cons),
            size(&i.right.prod),
            size(&i.left_order),
            size(&i.right_order),
            size(&i.cli_live),
            size(&i.srv_live),
            size(&i.cli_notify),
            size(&i.srv_notify),
            size(&i._grants),
            size(&i.left_buf),
            size(&i.right_buf),
        ];
        assert_eq!(fields.iter().sum::<usize>(), core::mem::size_of::<Interface>());
    }

    #[test]
    fn layout_matches_the_header() {
        let intf = Interface::new();
        let base = &intf as *const Interface as usize;
        assert_eq!(&intf.left_order as *const _ as usize - base, 16);
        assert_eq!(&intf.cli_live as *const _ as usize - base, 20);
        assert_eq!(&intf.srv_notify as *const _ as usize - base, 23);
        assert_eq!(&intf.left_buf as *const _ as usize - base, 1024);
        assert_eq!(&intf.right_buf as *const _ as usize - base, 2048);
    }

    #[test]
    fn bytes_flow_both_ways_and_notifications_follow_requests() {
        let intf = Box::new(Interface::new());
        let mut server = Server::new(&intf);
        assert_eq!(server.client(), Client::Waiting);
        assert_eq!(intf.cli_notify.load(Ordering::Relaxed), NOTIFY_WRITE);
        let mut client = TestClient::connect(&intf);
        assert_eq!(server.client(), Client::Connected);

        assert_eq!(client.tx.write_some(b"$qSupported#37"), Ok(14));
        let mut buf = [0; 64];
        // The client did not ask to hear of reads.
        assert_eq!(server.read_some(&mut buf), Ok((14, false)));
        assert_eq!(&buf[..14], b"$qSupported#37");
        // It asked to hear of writes, once.
        assert_eq!(server.write_some(b"+"), Ok((1, true)));
        assert_eq!(server.write_some(b"$OK#9a"), Ok((6, false)));
        assert_eq!(client.rx.read_some(&mut buf), Ok(7));
        assert_eq!(&buf[..7], b"+$OK#9a");
        assert_eq!(server.pending(), Ok(0));

        client.intf.cli_live.store(0, Ordering::Relaxed);
        assert_eq!(server.client(), Client::Gone);
    }

    #[test]
    fn a_full_ring_takes_only_what_fits() {
        let intf = Box::new(Interface::new());
        let mut server = Server::new(&intf);
        let _client = TestClient::connect(&intf);
        let big = [b'x'; RIGHT_SIZE + 10];
        assert_eq!(server.write_some(&big).map(|(n, _)| n), Ok(RIGHT_SIZE));
        assert_eq!(server.write_some(b"y").map(|(n, _)| n), Ok(0));
    }

    #[test]
    fn a_hostile_client_index_is_an_error() {
        let intf = Box::new(Interface::new());
        let mut server = Server::new(&intf);
        intf.left.prod.store(LEFT_SIZE as u32 + 1, Ordering::Relaxed);
        let mut buf = [0; 8];
        assert!(server.read_some(&mut buf).is_err());
        intf.cli_live.store(7, Ordering::Relaxed);
        assert_eq!(server.client(), Client::Invalid(7));
    }
}
