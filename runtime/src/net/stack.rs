//! The interface, its sockets, addresses from the configuration or DHCP,
//! and the driver that polls them on every turn of the executor.

#[cfg(feature = "ipv6")]
use super::config::Ipv6Config;
use super::config::{Config, Ipv4Config};
use super::isn::Modulated;
use super::tcp::Backlog;
use crate::executor::{self, Driver};
use crate::time::Instant;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::poll_fn;
use core::net::Ipv4Addr;
use core::task::{Poll, Waker};
use core::time::Duration;
use litemap::LiteMap;
use smoltcp::iface::{
    self, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet, SocketStorage,
};
use smoltcp::phy::{Device, TxToken};
use smoltcp::socket::AnySocket;
use smoltcp::socket::{dhcpv4, Socket};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr,
    HardwareAddress, IpCidr, Ipv4Cidr,
};

/// Frames taken from the device per turn of the run loop, so that a flood
/// cannot starve the tasks.
pub(super) const INGRESS_BUDGET: usize = 64;

/// Dynamic ports (RFC 6335), for connections and sockets bound to port 0.
const EPHEMERAL_FIRST: u16 = 49152;
const EPHEMERAL_COUNT: u32 = u16::MAX as u32 - EPHEMERAL_FIRST as u32 + 1;

/// A network device as the stack needs it: a smoltcp device that can ask
/// for a wake-up before the executor sleeps.
pub trait Nic: Device {
    /// Arms the device's event for the next frame or completion; true if
    /// work is already waiting (the stack then polls again instead of
    /// sleeping). Devices that need no arming keep the default.
    fn arm_wakeup(&mut self) -> bool {
        false
    }

    /// Once after the device came back (a vif reconnected after its
    /// backend closed): its hardware address, which may be new. The stack
    /// takes it and asks DHCP again.
    fn relinked(&mut self) -> Option<[u8; 6]> {
        None
    }
}

/// smoltcp's socket set, grown only when the heap has room: smoltcp adds a
/// slot to a full set with an infallible `Vec` push, which would abort the
/// guest on an exhausted heap.
pub(super) struct SocketTable {
    set: SocketSet<'static>,
    /// Slots in `set`, free or not (smoltcp fills a free slot before it adds one).
    slots: usize,
}

impl SocketTable {
    /// Adds `socket`, or `None` when every slot is taken and the heap has no
    /// room for the larger table. The table only grows here, single-threaded:
    /// the block the probe got and gave back is there for the `Vec` to grow
    /// into, which asks for at most twice its slots (at least 4).
    pub(super) fn try_add<T: AnySocket<'static>>(&mut self, socket: T) -> Option<SocketHandle> {
        if self.set.iter().count() == self.slots {
            let mut probe = Vec::<SocketStorage<'static>>::new();
            probe.try_reserve_exact((2 * self.slots).max(4)).ok()?;
            drop(probe);
            self.slots += 1;
        }
        Some(self.set.add(socket))
    }
}

impl core::ops::Deref for SocketTable {
    type Target = SocketSet<'static>;
    fn deref(&self) -> &SocketSet<'static> {
        &self.set
    }
}

impl core::ops::DerefMut for SocketTable {
    fn deref_mut(&mut self) -> &mut SocketSet<'static> {
        &mut self.set
    }
}

/// A network stack: an interface with its addresses and sockets. Cheap to
/// clone (a handle); sockets keep it alive.
#[derive(Clone)]
pub struct Stack {
    pub(super) inner: Rc<RefCell<Inner>>,
}

pub(super) struct Inner {
    pub(super) iface: Interface,
    pub(super) sockets: SocketTable,
    /// Listening TCP ports, by listener id.
    pub(super) listeners: LiteMap<u64, Backlog>,
    next_listener: u64,
    /// Sockets of dropped TCP streams, removed once the connection is over,
    /// with the time they get reset if it takes too long. It keeps room for
    /// every live stream, so that closing one needs no memory.
    pub(super) closing: Vec<(SocketHandle, Option<Instant>)>,
    /// TCP streams not dropped yet.
    pub(super) streams: usize,
    dhcp: Option<SocketHandle>,
    /// Tasks waiting for an IPv4 address.
    ipv4_waiters: Vec<Waker>,
    /// A gratuitous ARP is due: the IPv4 address or the hardware address
    /// changed since the last one went out.
    announce: bool,
}

impl Stack {
    /// Brings up an interface on `device` with hardware address `mac`,
    /// configured by `config` (DHCP runs inside the stack), and makes it a
    /// driver of the running executor. Logs the addresses once they are set.
    ///
    /// # Panics
    /// Outside [`executor::Executor::block_on`].
    pub fn new<D: Nic + 'static>(device: D, mac: [u8; 6], config: &Config) -> Stack {
        let mut device = Modulated::new(device);
        let now = executor::now();
        let mut iface_config = iface::Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        // smoltcp's own generator (sPCG32) draws DHCP transaction ids, the first IPv4
        // identification and the sequence numbers `isn::Modulated` then hides: seeded per
        // stack from the CSPRNG, not from the MAC and the time an observer can guess.
        iface_config.random_seed = crate::random::u64();
        let iface = Interface::new(iface_config, &mut device, smoltcp_instant(now));
        let mut inner = Inner {
            iface,
            sockets: SocketTable { set: SocketSet::new(Vec::new()), slots: 0 },
            listeners: LiteMap::new(),
            next_listener: 0,
            closing: Vec::new(),
            streams: 0,
            dhcp: None,
            ipv4_waiters: Vec::new(),
            announce: false,
        };
        match config.ipv4 {
            Ipv4Config::Dhcp => {
                log::info!("net: asking for an IPv4 address by DHCP");
                inner.dhcp = inner.sockets.try_add(dhcpv4::Socket::new());
                if inner.dhcp.is_none() {
                    log::error!("net: no memory for the DHCP socket: no IPv4 address");
                }
            }
            Ipv4Config::Static { address, gateway } => {
                inner.set_ipv4(Some(address), gateway);
                log::info!("net: {address} (static){}", via(gateway));
            }
        }
        #[cfg(feature = "ipv6")]
        if let Some(Ipv6Config { address, gateway }) = config.ipv6 {
            inner.add_address(address.into());
            if let Some(gw) = gateway {
                inner.iface.routes_mut().add_default_ipv6_route(gw).expect("a route table has room for two");
            }
            log::info!("net: {address} (static){}", via(gateway));
        }
        let inner = Rc::new(RefCell::new(inner));
        executor::add_driver(StackDriver { inner: inner.clone(), device });
        Stack { inner }
    }

    /// The IPv4 address, once configured.
    pub fn ipv4(&self) -> Option<Ipv4Cidr> {
        self.inner.borrow().ipv4()
    }

    /// Waits until the stack has an IPv4 address (at once when static).
    pub async fn wait_ipv4(&self) -> Ipv4Cidr {
        poll_fn(|cx| {
            let mut inner = self.inner.borrow_mut();
            match inner.ipv4() {
                Some(cidr) => Poll::Ready(cidr),
                None => {
                    inner.ipv4_waiters.retain(|w| !w.will_wake(cx.waker()));
                    inner.ipv4_waiters.push(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Runs `f` on the stack's state; never across an `.await`.
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.borrow_mut())
    }
}

fn via<A: core::fmt::Display>(gateway: Option<A>) -> alloc::string::String {
    match gateway {
        Some(gw) => alloc::format!(", gateway {gw}"),
        None => alloc::string::String::from(", no gateway"),
    }
}

impl Inner {
    fn ipv4(&self) -> Option<Ipv4Cidr> {
        self.iface.ip_addrs().iter().find_map(|cidr| match cidr {
            IpCidr::Ipv4(v4) => Some(*v4),
            // IPv6 addresses, when the `ipv6` feature is on.
            #[allow(unreachable_patterns)]
            _ => None,
        })
    }

    fn add_address(&mut self, cidr: IpCidr) {
        self.iface.update_ip_addrs(|addrs| {
            if addrs.push(cidr).is_err() {
                log::error!("net: no room for address {cidr}");
            }
        });
    }

    /// Replaces the IPv4 address and default route.
    fn set_ipv4(&mut self, address: Option<Ipv4Cidr>, gateway: Option<Ipv4Addr>) {
        self.iface.update_ip_addrs(|addrs| addrs.retain(|a| !matches!(a, IpCidr::Ipv4(_))));
        self.iface.routes_mut().remove_default_ipv4_route();
        if let Some(address) = address {
            self.add_address(address.into());
            if let Some(gw) = gateway {
                self.iface.routes_mut().add_default_ipv4_route(gw).expect("a route table has room for two");
            }
            self.announce = true;
            self.ipv4_waiters.drain(..).for_each(Waker::wake);
        }
    }

    /// The device came back with hardware address `mac`: sockets and
    /// static addresses stay; a DHCP lease is asked for again, since the
    /// link (and the address the server gives) may have changed.
    fn relink(&mut self, mac: [u8; 6]) {
        self.iface.set_hardware_addr(HardwareAddress::Ethernet(EthernetAddress(mac)));
        self.announce = self.ipv4().is_some();
        if let Some(handle) = self.dhcp {
            self.sockets.get_mut::<dhcpv4::Socket>(handle).reset();
        }
    }

    /// Applies what the DHCP client learned since the last look.
    fn update_dhcp(&mut self) {
        let Some(handle) = self.dhcp else { return };
        let lease = match self.sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
            None => return,
            Some(dhcpv4::Event::Configured(c)) => Some((c.address, c.router)),
            Some(dhcpv4::Event::Deconfigured) => None,
        };
        match lease {
            Some((address, router)) => {
                self.set_ipv4(Some(address), router);
                log::info!("net: {address} via DHCP{}", via(router));
            }
            None => {
                if let Some(address) = self.ipv4() {
                    log::warn!("net: DHCP lease on {address} lost; asking again");
                }
                self.set_ipv4(None, None);
            }
        }
    }

    /// One turn: frames in (a bounded number), frames out, then the
    /// bookkeeping. Returns when to run again at the latest.
    fn poll(&mut self, device: &mut impl Device, now: Instant) -> Option<Instant> {
        let at = smoltcp_instant(now);
        self.iface.poll_maintenance(at);
        let mut taken = 0;
        while taken < INGRESS_BUDGET
            && self.iface.poll_ingress_single(at, device, &mut self.sockets) != PollIngressSingleResult::None
        {
            taken += 1;
            self.tend_listeners();
        }
        while self.iface.poll_egress(at, device, &mut self.sockets) == PollResult::SocketStateChanged {}
        self.update_dhcp();
        if self.announce {
            self.announce = !self.send_gratuitous_arp(device, at);
        }
        let reap_at = self.reap_closed(now);
        self.tend_listeners();
        if taken == INGRESS_BUDGET {
            return Some(now);
        }
        let poll_at = self.iface.poll_delay(at, &self.sockets).map(|d| now.saturating_add(Duration::from(d)));
        executor::earliest(poll_at, reap_at)
    }

    /// Broadcasts an ARP request for our own IPv4 address (RFC 5227 §3's
    /// announcement), so that neighbours waiting to resolve it (a client
    /// that asked while we booted) or holding an old hardware address for it
    /// (a vif re-attached with a new MAC) learn the current one at once, not
    /// after their cache times out. Linux's netfront does the same on
    /// connect. False when the device had no room to send; the next turn
    /// tries again.
    fn send_gratuitous_arp(&self, device: &mut impl Device, at: smoltcp::time::Instant) -> bool {
        let (Some(cidr), HardwareAddress::Ethernet(mac)) = (self.ipv4(), self.iface.hardware_addr()) else {
            return true;
        };
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: mac,
            source_protocol_addr: cidr.address(),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: cidr.address(),
        };
        let eth = EthernetRepr {
            src_addr: mac,
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: EthernetProtocol::Arp,
        };
        let Some(token) = device.transmit(at) else { return false };
        token.consume(eth.buffer_len() + arp.buffer_len(), |buf| {
            let mut frame = EthernetFrame::new_unchecked(buf);
            eth.emit(&mut frame);
            arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        });
        true
    }

    /// A free port from the dynamic range, if any is left: RFC 6056 §3.3.1's algorithm 1,
    /// a random port and, if it is taken, the ones after it, so that an off-path attacker
    /// cannot guess the port of the next connection (one half of what a blind injection
    /// needs; the other is the sequence number, see `isn::Modulated`).
    pub(super) fn ephemeral_port(&mut self) -> Option<u16> {
        let start = (crate::random::u64() % u64::from(EPHEMERAL_COUNT)) as u32;
        (0..EPHEMERAL_COUNT)
            .map(|i| EPHEMERAL_FIRST + ((start + i) % EPHEMERAL_COUNT) as u16)
            .find(|&port| !self.port_in_use(port))
    }

    /// Whether a UDP socket is bound to `port`.
    pub(super) fn udp_bound(&self, port: u16) -> bool {
        self.sockets.iter().any(|(_, socket)| matches!(socket, Socket::Udp(s) if s.endpoint().port == port))
    }

    /// Whether any socket uses `port` locally.
    fn port_in_use(&self, port: u16) -> bool {
        self.udp_bound(port)
            || self.sockets.iter().any(|(_, socket)| match socket {
                Socket::Tcp(s) => {
                    s.listen_endpoint().port == port || s.local_endpoint().is_some_and(|e| e.port == port)
                }
                _ => false,
            })
    }

    pub(super) fn add_listener(&mut self, backlog: Backlog) -> u64 {
        let id = self.next_listener;
        self.next_listener += 1;
        self.listeners.insert(id, backlog);
        id
    }
}

/// The executor's side of a stack: the device, and the interface to poll.
struct StackDriver<D> {
    inner: Rc<RefCell<Inner>>,
    device: D,
}

impl<D: Nic> Driver for StackDriver<D> {
    fn poll(&mut self, now: Instant) -> Option<Instant> {
        if let Some(mac) = self.device.relinked() {
            self.inner.borrow_mut().relink(mac);
        }
        let next = self.inner.borrow_mut().poll(&mut self.device, now);
        if self.device.arm_wakeup() {
            return Some(now);
        }
        next
    }
}

pub(super) fn smoltcp_instant(now: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(i64::try_from(now.as_nanos() / 1000).unwrap_or(i64::MAX))
}
