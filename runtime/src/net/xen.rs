//! Networking on Xen: the domain's vif (netfront) under the stack.

use super::{Config, ConfigError, Nic, Stack};
use crate::devices::Appeared;
use crate::xenstore::{Store, WatchId, XsError};
use alloc::format;
use core::fmt;
use mote_netfront::connect::{self, ConnectError};
use mote_netfront::device::Netfront;
use mote_xen::xenbus::{BackendEvent, Frontend, XenbusState};
use smoltcp::phy::{Device, DeviceCapabilities};
use smoltcp::time::Instant as SmolInstant;

/// A vif under the stack: netfront's data path and its xenbus frontend,
/// which watches the backend. When the backend closes (`xl
/// network-detach`, a backend shutting down), the vif answers the
/// handshake down to Closed, gives back what it shared and carries no
/// frames; the rest of the domain goes on. It then watches its
/// `device/vif/<index>` directory, and when a backend is waiting there
/// again (`xl network-attach`, a backend restarted: InitWait), connects to
/// it; the stack keeps its sockets and takes the new hardware address.
struct Vif {
    index: u32,
    link: Link,
    /// What netfront asks of the backend, on every (re)connection.
    connect: connect::Config,
    /// Netfront's capabilities, the same whether the link is up or not.
    caps: DeviceCapabilities,
    /// The hardware address of a reconnection, until the stack takes it.
    relinked: Option<[u8; 6]>,
}

enum Link {
    Up {
        device: alloc::boxed::Box<Netfront>,
        frontend: Frontend,
        /// We asked the backend to close (it broke a ring).
        closing: bool,
    },
    /// Closed. `dir` watches the frontend directory (removed and made again
    /// by detach and attach); `frontend`, while the directory exists,
    /// watches its backend's state.
    Down { dir: Option<WatchId>, frontend: Option<Frontend> },
}

impl Vif {
    fn path(&self) -> alloc::string::String {
        format!("device/vif/{}", self.index)
    }

    /// Follows the backend: closes the vif when it closes (or broke a
    /// ring), and connects again when a backend is waiting for us.
    fn tend(&mut self) {
        let index = self.index;
        match &mut self.link {
            Link::Up { device, frontend, closing } => {
                if device.broken().is_some() && !*closing {
                    *closing = true;
                    match crate::xenstore::with(|xs| frontend.switch(xs, XenbusState::Closing)) {
                        Some(Err(e)) => log::warn!("net: vif {index}: asking the backend to close: {e}"),
                        _ => log::warn!("net: vif {index}: asked the backend to close"),
                    }
                }
                match crate::xenstore::try_with(|xs| frontend.poll(xs)) {
                    Some(Ok(Some(BackendEvent::Closing(state)))) => {
                        log::info!("net: vif {index}: backend {state:?}, closing");
                        self.go_down();
                    }
                    Some(Err(e)) => log::warn!("net: vif {index}: backend state: {e}"),
                    _ => {}
                }
            }
            Link::Down { dir, frontend } => {
                let dir_changed = dir.and_then(|dir| {
                    crate::xenstore::try_with(|xs| {
                        let mut changed = false;
                        while let Ok(Some(_)) = xs.next_event(dir) {
                            changed = true;
                        }
                        changed
                    })
                });
                let mut waiting = false;
                if dir_changed == Some(true) {
                    if let Some(old) = frontend.take() {
                        crate::xenstore::with(|xs| old.forget(xs));
                    }
                    *frontend = open(index);
                    waiting = frontend.as_ref().is_some_and(|f| f.backend_state() == XenbusState::InitWait);
                }
                if let Some(f) = frontend.as_mut() {
                    if let Some(Ok(Some(BackendEvent::State(XenbusState::InitWait)))) =
                        crate::xenstore::try_with(|xs| f.poll(xs))
                    {
                        waiting = true;
                    }
                }
                if waiting {
                    self.reconnect();
                }
            }
        }
    }

    /// Closes the vif (the backend is closing), gives back its memory,
    /// grants and event channel, and starts watching for it to come back.
    fn go_down(&mut self) {
        let index = self.index;
        let dir = match crate::xenstore::with(|xs| xs.watch(&self.path(), &format!("{} (vif)", self.path())))
        {
            Some(Ok(dir)) => Some(dir),
            Some(Err(e)) => {
                log::error!("net: vif {index}: watching for it to come back: {e}");
                None
            }
            None => return,
        };
        let Link::Up { device, frontend, .. } =
            core::mem::replace(&mut self.link, Link::Down { dir, frontend: None })
        else {
            return;
        };
        crate::xenstore::close_frontend(frontend, module_path!(), format_args!("net: vif {index}"));
        crate::executor::xen::stop_waking_on(device.port());
        let stats = device.stats();
        crate::grants::with(|gt| device.release(gt));
        log::info!(
            "net: vif {index}: {} packets sent ({} GSO of {} segments), {} received ({} over several buffers, {} GSO), {} rx errors, {} bad checksums, {} tx dropped by the backend, {} for want of a slot",
            stats.tx_frames,
            stats.tx_gso,
            stats.tx_gso_segments,
            stats.rx_frames,
            stats.rx_multi_slot,
            stats.rx_gso,
            stats.rx_errors,
            stats.rx_bad_csum,
            stats.tx_dropped,
            stats.tx_no_slot
        );
        if let Link::Down { frontend, .. } = &mut self.link {
            *frontend = open(index);
        }
    }

    /// Connects to the backend waiting in the vif's directory.
    fn reconnect(&mut self) {
        let index = self.index;
        let Link::Down { dir, frontend } = &mut self.link else { return };
        let Some(opened) = frontend.take() else { return };
        let config = self.connect;
        let result = crate::xenstore::with(|xs| {
            crate::grants::with(|gt| connect::connect_opened(xs, gt, opened, config))
        })
        .flatten();
        match result {
            Some(Ok((device, frontend))) => {
                if let Some(dir) = *dir {
                    crate::xenstore::with(|xs| xs.unwatch(dir));
                }
                crate::executor::xen::wake_on(device.port());
                let mac = device.mac();
                log_connected(index, &device);
                self.relinked = Some(mac);
                self.link = Link::Up { device: alloc::boxed::Box::new(device), frontend, closing: false };
            }
            Some(Err(e)) => {
                log::warn!("net: vif {index}: reconnecting: {e}; waiting for the backend to change");
                // Retried when the backend's state or the directory changes.
                *frontend = open(index);
            }
            None => log::error!("net: vif {index}: no grant table to reconnect with"),
        }
    }
}

/// Opens `device/vif/<index>` to watch its backend, if it exists.
fn open(index: u32) -> Option<Frontend> {
    crate::xenstore::with(|xs| Frontend::open(xs, &format!("device/vif/{index}")).ok()).flatten()
}

fn log_connected(index: u32, device: &Netfront) {
    let mac = device.mac();
    log::info!(
        "net: vif {index} connected, mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}; {}",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5],
        device.features()
    );
}

impl Device for Vif {
    type RxToken<'a> = <Netfront as Device>::RxToken<'a>;
    type TxToken<'a> = <Netfront as Device>::TxToken<'a>;

    fn receive(&mut self, now: SmolInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        match &mut self.link {
            Link::Up { device, .. } => device.receive(now),
            Link::Down { .. } => None,
        }
    }

    fn transmit(&mut self, now: SmolInstant) -> Option<Self::TxToken<'_>> {
        match &mut self.link {
            Link::Up { device, .. } => device.transmit(now),
            Link::Down { .. } => None,
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.caps.clone()
    }
}

impl Nic for Vif {
    fn arm_wakeup(&mut self) -> bool {
        self.tend();
        match &mut self.link {
            Link::Up { device, .. } => self.relinked.is_some() || device.prepare_to_sleep(),
            Link::Down { .. } => false,
        }
    }

    fn relinked(&mut self) -> Option<[u8; 6]> {
        self.relinked.take()
    }
}

/// Why the network could not come up.
#[derive(Debug)]
pub enum UpError {
    /// A bad network argument for vif `.0`.
    Config(u32, ConfigError),
    /// The domain has no xenstore connection or no grant table.
    NoXen(&'static str),
    /// The handshake with vif `.0`'s backend failed.
    Vif(u32, ConnectError),
    /// The domain has no vif (`vif = [...]` in the xl config).
    NoVif,
    /// Reading `device/vif`, or watching it for vifs attached later.
    Watch(XsError),
}

impl fmt::Display for UpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpError::Config(vif, e) => write!(f, "network configuration of vif {vif}: {e}"),
            UpError::NoXen(what) => write!(f, "no {what}: cannot bring up the vif"),
            UpError::Vif(vif, e) => write!(f, "vif {vif}: {e}"),
            UpError::NoVif => f.write_str("the domain has no vif (add vif = [...] to its xl config)"),
            UpError::Watch(e) => write!(f, "reading or watching device/vif: {e}"),
        }
    }
}

/// Brings up vif 0 with the command line's configuration (`ip=`, `gw=`,
/// `ip6=`, `gw6=`; DHCP by default) and returns its stack. Call inside
/// [`crate::block_on`]; with DHCP, `stack.wait_ipv4().await` waits for the
/// lease.
pub fn up() -> Result<Stack, UpError> {
    let config = Config::for_vif(&crate::cmdline(), 0).map_err(|e| UpError::Config(0, e))?;
    up_vif(0, &config)
}

/// Brings up every vif the domain has, each with its own stack and
/// configuration (`vifN.ip=` … for vif N; see [`Config::for_vif`]).
pub fn up_all() -> Result<alloc::vec::Vec<Stack>, UpError> {
    up_indexes(&vif_indexes()?)
}

/// Brings up every vif the domain has, like [`up_all`], and watches for vifs attached later
/// with numbers not seen before (`xl network-attach` while the domain runs): [`Attached`]
/// hands out a stack for each. (A vif detached and attached again under a number already up
/// goes on in its old stack, which follows it.)
pub fn up_all_and_watch() -> Result<(alloc::vec::Vec<Stack>, Attached), UpError> {
    let (appeared, indexes) =
        Appeared::watch("device/vif").ok_or(UpError::NoXen("xenstore"))?.map_err(UpError::Watch)?;
    let stacks = up_indexes(&indexes)?;
    Ok((stacks, Attached { appeared, known: indexes }))
}

/// New vifs of a running domain: see [`up_all_and_watch`].
pub struct Attached {
    appeared: Appeared,
    /// Every vif number that has a stack.
    known: alloc::vec::Vec<u32>,
}

impl Attached {
    /// The stack of the next vif attached with a new number, configured like the others
    /// (`vifN.ip=` …). It is returned as soon as the vif's directory appears; the vif
    /// connects when its backend is ready (`net: vif N connected`). An error concerns that
    /// vif only: call again for the next.
    pub async fn next(&mut self) -> Result<Stack, UpError> {
        let index = loop {
            let index = self.appeared.next().await.map_err(UpError::Watch)?;
            if !self.known.contains(&index) {
                self.known.push(index);
                break index;
            }
        };
        let config = Config::for_vif(&crate::cmdline(), index).map_err(|e| UpError::Config(index, e))?;
        attach_vif(index, &config)
    }
}

/// A stack for vif `index`, whose backend may not be ready yet: the vif starts closed and
/// connects like one attached again ([`Vif::tend`]).
fn attach_vif(index: u32, config: &Config) -> Result<Stack, UpError> {
    let path = format!("device/vif/{index}");
    let mac_text = crate::xenstore::with(|xs| xs.read_string(&format!("{path}/mac")))
        .ok_or(UpError::NoXen("xenstore"))?
        .map_err(|e| UpError::Vif(index, ConnectError::Xenstore(e)))?;
    let mac = connect::parse_mac(&mac_text).ok_or(UpError::Vif(index, ConnectError::BadMac(mac_text)))?;
    let dir = crate::xenstore::with(|xs| xs.watch(&path, &format!("{path} (vif)")))
        .ok_or(UpError::NoXen("xenstore"))?
        .map_err(UpError::Watch)?;
    log::info!("net: vif {index} attached; connecting when its backend is ready");
    let offload = connect::Offload { csum: config.offload.csum, sg: config.offload.sg };
    let connect_config = connect::Config { offload, ..connect::Config::DEFAULT };
    let frontend = open(index);
    let ready = frontend.as_ref().is_some_and(|f| f.backend_state() == XenbusState::InitWait);
    let mut vif = Vif {
        index,
        link: Link::Down { dir: Some(dir), frontend },
        connect: connect_config,
        caps: mote_netfront::device::capabilities(offload),
        relinked: None,
    };
    if ready {
        vif.reconnect();
    }
    Ok(Stack::new(vif, mac, config))
}

/// The vif numbers in `device/vif`, in order.
fn vif_indexes() -> Result<alloc::vec::Vec<u32>, UpError> {
    crate::devices::numbers("device/vif").ok_or(UpError::NoXen("xenstore"))?.map_err(UpError::Watch)
}

/// Brings up the vifs `indexes`, each with its configuration.
fn up_indexes(indexes: &[u32]) -> Result<alloc::vec::Vec<Stack>, UpError> {
    if indexes.is_empty() {
        return Err(UpError::NoVif);
    }
    indexes
        .iter()
        .map(|&index| {
            let config = Config::for_vif(&crate::cmdline(), index).map_err(|e| UpError::Config(index, e))?;
            up_vif(index, &config)
        })
        .collect()
}

/// Heap bytes a vif holds once up: netfront's rings and frame buffers (384 KiB of buffers),
/// the buffer a packet over several rx buffers is gathered in (64 KiB) and, with the
/// `tx-gso` feature, those TCP segments are joined in (64 KiB), for apps that size their work
/// from the heap.
pub const VIF_HEAP_BYTES: usize = connect::Config::DEFAULT.heap_bytes()
    + mote_netfront::rx::MAX_RX_FRAME
    + mote_netfront::device::JOINER_HEAP_BYTES;

/// Brings up vif `index` (`device/vif/<index>`) with `config`.
pub fn up_vif(index: u32, config: &Config) -> Result<Stack, UpError> {
    let offload = connect::Offload { csum: config.offload.csum, sg: config.offload.sg };
    let connect_config = connect::Config { offload, ..connect::Config::DEFAULT };
    let (netfront, frontend) = crate::xenstore::with(|xs| {
        crate::grants::with(|gt| connect::connect(xs, gt, index, connect_config))
            .ok_or(UpError::NoXen("grant table"))
    })
    .ok_or(UpError::NoXen("xenstore"))??
    .map_err(|e| UpError::Vif(index, e))?;
    log_connected(index, &netfront);
    crate::executor::xen::wake_on(netfront.port());
    let mac = netfront.mac();
    let caps = mote_netfront::device::capabilities(offload);
    let link = Link::Up { device: alloc::boxed::Box::new(netfront), frontend, closing: false };
    Ok(Stack::new(Vif { index, link, connect: connect_config, caps, relinked: None }, mac, config))
}
