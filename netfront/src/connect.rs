//! Bringing a vif up: the xenbus handshake with netback (`io/netif.h`'s
//! "feature negotiation" keys), the shared rings and the pre-granted
//! buffers.
//!
//! We ask for rx by copy (`request-rx-copy`), one queue, and by default (see
//! [`Offload`]) checksum offload both ways, rx scatter-gather and, with both,
//! GSO for TCP over IPv4 both ways (sending it, with the `tx-gso` feature, when
//! the backend offers `feature-gso-tcpv4` and `feature-sg`); each can be
//! turned off.

use crate::device::Netfront;
use crate::queues::{GrantedPage, Queues};
use crate::rx::RxFeatures;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use mote_xen::event::{self, Port};
use mote_xen::gnttab::{alloc_shared_pages, free_shared_pages, Access, GrantError, GrantRef, GrantTable};
use mote_xen::io_ring::FrontRing;
use mote_xen::xenbus::{Frontend, XenbusError, XenbusState};
use mote_xen::xenstore::{Client, Request, Store, Transport, XsError};
use mote_xen::{DomId, Gfn, XenError};

/// How much memory the data path gets.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Receive buffers (one page each) kept with the backend.
    pub rx_buffers: u16,
    /// Transmit pages, two frame slots each.
    pub tx_pages: u16,
    pub offload: Offload,
}

impl Config {
    /// 64 rx pages and 32 tx pages: 384 KiB, enough to keep a 1 Gbit/s
    /// backend busy without costing a small guest much of its memory.
    pub const DEFAULT: Config = Config { rx_buffers: 64, tx_pages: 32, offload: Offload::ALL };

    /// Pages a connected vif holds: its buffers and its two ring pages.
    pub const fn pages(&self) -> usize {
        2 + self.tx_pages as usize + self.rx_buffers as usize
    }

    /// Heap bytes a connected vif holds in its [`pages`](Config::pages).
    pub const fn heap_bytes(&self) -> usize {
        self.pages() * mote_xen::types::PAGE_SIZE
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

/// What the frontend offers the backend beyond the basic data path. Both are
/// on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offload {
    /// Checksum offload: we take frames whose TCP/UDP checksum the backend
    /// validated or left blank (and verify the others ourselves), and leave
    /// the checksum of frames we send to a backend that completes them
    /// (`feature-no-csum-offload` = 0, `feature-ipv6-csum-offload` = 1).
    /// Off, smoltcp verifies and fills in every checksum.
    pub csum: bool,
    /// rx scatter-gather (`feature-sg`): a packet may span several rx
    /// buffers, as one above 4 KiB does; with checksum offload also rx GSO
    /// (`feature-gso-tcpv4`): dom0's stack hands over TCP/IPv4 packets of up
    /// to 64 KiB instead of cutting them into one packet per MSS, which in a
    /// dom0 short of CPU is most of the cost of receiving. With both, and a
    /// backend that offers them, also tx GSO (the `tx-gso` feature):
    /// consecutive TCP/IPv4 segments of a connection go out as one packet
    /// over several tx slots (`crate::gso`).
    pub sg: bool,
}

impl Offload {
    pub const ALL: Offload = Offload { csum: true, sg: true };
}

impl Default for Offload {
    fn default() -> Self {
        Offload::ALL
    }
}

/// What the handshake settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// We do TCP/UDP checksums per frame (smoltcp does none): [`Offload::csum`].
    pub csum: bool,
    pub rx: RxFeatures,
    /// The backend completes blank TCP/UDP checksums of IPv4 frames we send
    /// (its `feature-no-csum-offload` absent or 0) and of IPv6 ones
    /// (`feature-ipv6-csum-offload` = 1).
    pub tx_csum_v4: bool,
    pub tx_csum_v6: bool,
    /// We send TCP/IPv4 packets of several segments for the backend to cut
    /// (its `feature-gso-tcpv4` and `feature-sg` = 1, with IPv4 tx checksum
    /// offload, our [`Offload::sg`] and the `tx-gso` feature).
    pub tx_gso: bool,
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "rx checksum offload {}, tx checksum offload {} (IPv4) {} (IPv6), rx scatter-gather {}, GSO (TCP/IPv4) rx {} tx {}",
            on(self.rx.csum_blank),
            on(self.tx_csum_v4),
            on(self.tx_csum_v6),
            on(self.rx.sg),
            on(self.rx.gso),
            on(self.tx_gso)
        )
    }
}

/// The backend's feature keys that the offloads depend on, as read (`None` when absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct BackendKeys<'a> {
    pub no_csum_offload: Option<&'a str>,
    pub ipv6_csum_offload: Option<&'a str>,
    pub sg: Option<&'a str>,
    pub gso_tcpv4: Option<&'a str>,
}

/// Settles the offloads from our [`Offload`] and the backend's keys.
pub fn negotiate(offload: Offload, backend: BackendKeys<'_>) -> Features {
    let flag = |value: Option<&str>| value.map(|v| v.trim() == "1");
    // io/netif.h: "If it is missing then the feature is assumed to be on."
    let tx_csum_v4 = offload.csum && flag(backend.no_csum_offload) != Some(true);
    Features {
        csum: offload.csum,
        rx: RxFeatures { sg: offload.sg, csum_blank: offload.csum, gso: offload.sg && offload.csum },
        tx_csum_v4,
        // "If it is missing then the feature is assumed to be off."
        tx_csum_v6: offload.csum && flag(backend.ipv6_csum_offload) == Some(true),
        // A GSO packet goes out with a blank checksum over several slots.
        tx_gso: cfg!(feature = "tx-gso")
            && offload.sg
            && tx_csum_v4
            && flag(backend.sg) == Some(true)
            && flag(backend.gso_tcpv4) == Some(true),
    }
}

/// Why a vif could not be brought up.
#[derive(Debug)]
pub enum ConnectError {
    Xenbus(XenbusError),
    Xenstore(XsError),
    Grant(GrantError),
    EventChannel(XenError),
    /// The toolstack's `mac` node is not six hex bytes.
    BadMac(String),
    /// Netback cannot copy into our buffers (`feature-rx-copy`).
    NoRxCopy,
    NoMemory,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Xenbus(e) => write!(f, "xenbus: {e}"),
            ConnectError::Xenstore(e) => write!(f, "xenstore: {e}"),
            ConnectError::Grant(e) => write!(f, "granting buffers: {e}"),
            ConnectError::EventChannel(e) => write!(f, "event channel: {e}"),
            ConnectError::BadMac(m) => write!(f, "bad mac address \"{m}\""),
            ConnectError::NoRxCopy => f.write_str("the backend does not offer feature-rx-copy"),
            ConnectError::NoMemory => f.write_str("out of memory for rings and buffers"),
        }
    }
}

impl From<XenbusError> for ConnectError {
    fn from(e: XenbusError) -> Self {
        ConnectError::Xenbus(e)
    }
}

impl From<XsError> for ConnectError {
    fn from(e: XsError) -> Self {
        ConnectError::Xenstore(e)
    }
}

impl From<GrantError> for ConnectError {
    fn from(e: GrantError) -> Self {
        ConnectError::Grant(e)
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn grant(
    grants: &mut GrantTable<'_>,
    domid: DomId,
    addr: *mut u8,
    access: Access,
) -> Result<GrantedPage, ConnectError> {
    // Identity mapping: a page's address is its guest-physical address.
    let gref = grants.grant_access(domid, Gfn::containing(addr as u64), access)?;
    Ok(GrantedPage { addr, gref })
}

/// Brings up vif `index` (`device/vif/<index>`) and returns it Connected,
/// with its xenbus frontend (to notice and answer the backend closing).
pub fn connect<T: Transport>(
    xs: &mut Client<T>,
    grants: &mut GrantTable<'_>,
    index: u32,
    config: Config,
) -> Result<(Netfront, Frontend), ConnectError> {
    let vif = Frontend::open(xs, &format!("device/vif/{index}"))?;
    connect_opened(xs, grants, vif, config)
}

/// [`connect`] for a frontend already opened (a vif coming back after its
/// backend closed, seen through the frontend's watch).
pub fn connect_opened<T: Transport>(
    xs: &mut Client<T>,
    grants: &mut GrantTable<'_>,
    mut vif: Frontend,
    config: Config,
) -> Result<(Netfront, Frontend), ConnectError> {
    vif.initialise(xs)?;
    vif.wait_backend(xs, |s| s == XenbusState::InitWait)?;
    // Our mac and the backend's features, in one round trip.
    let be = vif.backend();
    let nodes = [
        format!("{}/mac", vif.path()),
        format!("{be}/feature-rx-copy"),
        format!("{be}/feature-no-csum-offload"),
        format!("{be}/feature-ipv6-csum-offload"),
        // Needed only to send GSO.
        #[cfg(feature = "tx-gso")]
        format!("{be}/feature-sg"),
        #[cfg(feature = "tx-gso")]
        format!("{be}/feature-gso-tcpv4"),
    ];
    let mut values = xs.call_all(&nodes.each_ref().map(|n| Request::Read(n)));
    let mut next = || values.next_reply()?.into_string();
    let mac_text = next()?;
    let mac = parse_mac(&mac_text).ok_or(ConnectError::BadMac(mac_text))?;
    if next().ok().as_deref() != Some("1") {
        return Err(ConnectError::NoRxCopy);
    }
    let (no_csum, ipv6_csum) = (next().ok(), next().ok());
    #[cfg(feature = "tx-gso")]
    let (sg, gso) = (next().ok(), next().ok());
    #[cfg(not(feature = "tx-gso"))]
    let (sg, gso): (Option<String>, Option<String>) = (None, None);
    let keys = BackendKeys {
        no_csum_offload: no_csum.as_deref(),
        ipv6_csum_offload: ipv6_csum.as_deref(),
        sg: sg.as_deref(),
        gso_tcpv4: gso.as_deref(),
    };
    let features = negotiate(config.offload, keys);
    let backend = vif.backend_id();

    let count = config.pages();
    let pages = alloc_shared_pages(count).ok_or(ConnectError::NoMemory)?;
    // From here on, whatever was granted is given back (or kept, if the
    // backend still maps it) when a step fails.
    let mut shared = Shared { pages: pages.clone(), grants: Vec::with_capacity(count), port: None };
    let result = (|| {
        let (rings, buffers) = pages.split_at(2);
        let (tx_buf, rx_buf) = buffers.split_at(usize::from(config.tx_pages));
        // SAFETY: each ring page is fresh, page-aligned, ours alone (and the
        // backend's once granted) and freed only by `Shared::release`.
        let (tx, rx) = unsafe { (FrontRing::init(rings[0]), FrontRing::init(rings[1])) };
        let mut grant_all = |pages: &[*mut u8], access| -> Result<Vec<GrantedPage>, ConnectError> {
            let granted =
                pages.iter().map(|&p| grant(grants, backend, p, access)).collect::<Result<Vec<_>, _>>();
            granted.inspect(|g| shared.grants.extend(g.iter().map(|p| p.gref)))
        };
        let ring_grants = grant_all(rings, Access::ReadWrite)?;
        let tx_pages = grant_all(tx_buf, Access::ReadOnly)?;
        let rx_pages = grant_all(rx_buf, Access::ReadWrite)?;
        let port: Port = event::alloc_unbound(backend).map_err(ConnectError::EventChannel)?;
        shared.port = Some(port);
        event::unmask(port).map_err(ConnectError::EventChannel)?;
        let mut queues = Queues::new(tx, rx, tx_pages, rx_pages, features.rx);
        // The posted rx buffers are in the ring before netback connects to it.
        queues.publish();

        vif.publish(xs, XenbusState::Connected, |keys| {
            keys.write("tx-ring-ref", &format!("{}", ring_grants[0].gref.0));
            keys.write("rx-ring-ref", &format!("{}", ring_grants[1].gref.0));
            keys.write("event-channel", &format!("{}", port.0));
            keys.write("request-rx-copy", "1");
            keys.write("feature-rx-notify", "1");
            keys.write("feature-sg", if features.rx.sg { "1" } else { "0" });
            keys.write("feature-gso-tcpv4", if features.rx.gso { "1" } else { "0" });
            keys.write("feature-no-csum-offload", if features.rx.csum_blank { "0" } else { "1" });
            keys.write("feature-ipv6-csum-offload", if features.rx.csum_blank { "1" } else { "0" });
        })?;
        vif.wait_backend(xs, |s| s == XenbusState::Connected)?;
        event::send(port).map_err(ConnectError::EventChannel)?;
        Ok((queues, port))
    })();
    match result {
        Ok((queues, port)) => Ok((Netfront::new(queues, port, mac, shared, features), vif)),
        Err(e) => {
            shared.release(grants);
            Err(e)
        }
    }
}

/// Everything a vif shares with its backend, given back when it is done:
/// the pages (one allocation), their grants and the event channel.
pub struct Shared {
    pages: Vec<*mut u8>,
    grants: Vec<GrantRef>,
    port: Option<Port>,
}

impl Shared {
    /// Nothing shared: for host tests of a device over simulated rings.
    #[cfg(test)]
    pub(crate) fn none() -> Shared {
        Shared { pages: Vec::new(), grants: Vec::new(), port: None }
    }

    /// Ends every grant and closes the event channel; the pages go back to
    /// the heap only if no grant is still mapped by the backend (a backend
    /// that keeps a page mapped keeps the whole allocation, logged).
    pub fn release(self, grants: &mut GrantTable<'_>) {
        if let Some(port) = self.port {
            if let Err(e) = event::close(port) {
                log::warn!("netfront: closing {port}: {e}");
            }
        }
        let still_mapped = self.grants.iter().filter(|&&r| grants.end_access(r).is_err()).count();
        if still_mapped > 0 {
            log::warn!(
                "netfront: the backend still maps {still_mapped} of {} pages; keeping them",
                self.grants.len()
            );
            return;
        }
        // SAFETY: the pages are one allocation of `alloc_shared_pages`, no
        // longer granted, and nothing of ours points into them any more
        // (the rings and queues went with the `Netfront` that owned this).
        unsafe { free_shared_pages(self.pages) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(parse_mac("00:16:3e:5a:01:ff"), Some([0x00, 0x16, 0x3e, 0x5a, 0x01, 0xff]));
        assert_eq!(parse_mac(" 00:16:3E:5A:01:FF\n"), Some([0x00, 0x16, 0x3e, 0x5a, 0x01, 0xff]));
        for bad in ["", "00:16:3e:5a:01", "00:16:3e:5a:01:ff:00", "0:16:3e:5a:01:ff", "zz:16:3e:5a:01:ff"] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn offloads_follow_our_choice_and_the_backends_keys() {
        // Linux's netback writes no feature-no-csum-offload (on), ipv6 offload, sg and
        // gso-tcpv4 1.
        let linux_keys = BackendKeys {
            no_csum_offload: None,
            ipv6_csum_offload: Some("1"),
            sg: Some("1"),
            gso_tcpv4: Some("1"),
        };
        let linux = negotiate(Offload::default(), linux_keys);
        assert_eq!(
            linux,
            Features {
                csum: true,
                rx: RxFeatures { sg: true, csum_blank: true, gso: true },
                tx_csum_v4: true,
                tx_csum_v6: true,
                tx_gso: cfg!(feature = "tx-gso"),
            }
        );
        let refusing = negotiate(
            Offload::default(),
            BackendKeys { no_csum_offload: Some("1"), ipv6_csum_offload: None, ..linux_keys },
        );
        assert!(refusing.csum && !refusing.tx_csum_v4 && !refusing.tx_csum_v6 && refusing.rx.csum_blank);
        assert!(!refusing.tx_gso, "no GSO without the backend completing checksums");
        // Anything but 1 is not a refusal; anything but 1 is no IPv6 offload.
        let odd = negotiate(
            Offload::default(),
            BackendKeys { no_csum_offload: Some("yes"), ipv6_csum_offload: Some(""), ..Default::default() },
        );
        assert!(odd.tx_csum_v4 && !odd.tx_csum_v6 && !odd.tx_gso);
        let off = negotiate(Offload { csum: false, sg: false }, linux_keys);
        assert_eq!(off, Features::default());
        // GSO packets come with blank checksums over several buffers: it needs both.
        for ours in [Offload { csum: true, sg: false }, Offload { csum: false, sg: true }] {
            let f = negotiate(ours, linux_keys);
            assert!(!f.rx.gso && !f.tx_gso, "{ours:?}");
        }
        // Sending GSO also needs the backend's keys.
        for keys in
            [BackendKeys { sg: None, ..linux_keys }, BackendKeys { gso_tcpv4: Some("0"), ..linux_keys }]
        {
            assert!(!negotiate(Offload::default(), keys).tx_gso, "{keys:?}");
        }
    }

    #[test]
    fn default_data_path_takes_98_pages() {
        assert_eq!(Config::DEFAULT.pages(), 98);
        assert_eq!(Config::DEFAULT.heap_bytes(), 392 * 1024);
    }
}
