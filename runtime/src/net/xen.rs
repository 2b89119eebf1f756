//! Networking on Xen: the domain's vif (netfront) under the stack.

use super::{Config, ConfigError, Nic, Stack};
use crate::xenstore::Store;
use core::fmt;
use mote_netfront::connect::{self, ConnectError};
use mote_netfront::device::Netfront;
use mote_xen::xenbus::{BackendEvent, Frontend};
use smoltcp::phy::{Device, DeviceCapabilities};
use smoltcp::time::Instant as SmolInstant;

/// A vif under the stack: netfront's data path, and its xenbus frontend
/// watching the backend. When the backend closes (`xl network-detach`, a
/// backend shutting down), the vif answers the handshake down to Closed and
/// carries no more frames; the rest of the domain goes on.
struct Vif {
    index: u32,
    device: Netfront,
    /// `None` once closed.
    frontend: Option<Frontend>,
}

impl Vif {
    /// Takes the backend's state changes; closes on Closing/Closed.
    fn watch_backend(&mut self) {
        let Some(frontend) = self.frontend.as_mut() else { return };
        match crate::xenstore::try_with(|xs| frontend.poll(xs)) {
            Some(Ok(Some(BackendEvent::Closing(state)))) => {
                log::info!("net: vif {}: backend {state:?}, closing", self.index);
                if let Some(frontend) = self.frontend.take() {
                    match crate::xenstore::with(|xs| frontend.close(xs)) {
                        Some(Ok(state)) => log::info!("net: vif {}: closed (backend {state:?})", self.index),
                        Some(Err(e)) => log::warn!("net: vif {}: closing: {e}", self.index),
                        None => {}
                    }
                }
            }
            Some(Err(e)) => log::warn!("net: vif {}: backend state: {e}", self.index),
            _ => {}
        }
    }
}

impl Device for Vif {
    type RxToken<'a> = <Netfront as Device>::RxToken<'a>;
    type TxToken<'a> = <Netfront as Device>::TxToken<'a>;

    fn receive(&mut self, now: SmolInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.frontend.as_ref()?;
        self.device.receive(now)
    }

    fn transmit(&mut self, now: SmolInstant) -> Option<Self::TxToken<'_>> {
        self.frontend.as_ref()?;
        self.device.transmit(now)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.device.capabilities()
    }
}

impl Nic for Vif {
    fn arm_wakeup(&mut self) -> bool {
        self.watch_backend();
        self.frontend.is_some() && self.device.prepare_to_sleep()
    }
}

/// Why the network could not come up.
#[derive(Debug)]
pub enum UpError {
    /// A bad network argument for vif `.0`.
    Config(u32, ConfigError),
    /// The domain has no xenstore connection or no grant table.
    NoXen(&'static str),
    Vif(u32, ConnectError),
    /// The domain has no vif (`vif = [...]` in the xl config).
    NoVif,
}

impl fmt::Display for UpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpError::Config(vif, e) => write!(f, "network configuration of vif {vif}: {e}"),
            UpError::NoXen(what) => write!(f, "no {what}: cannot bring up the vif"),
            UpError::Vif(vif, e) => write!(f, "vif {vif}: {e}"),
            UpError::NoVif => f.write_str("the domain has no vif (add vif = [...] to its xl config)"),
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
    let mut indexes: alloc::vec::Vec<u32> = crate::xenstore::with(|xs| xs.directory("device/vif"))
        .ok_or(UpError::NoXen("xenstore"))?
        .map_err(|_| UpError::NoVif)?
        .iter()
        .filter_map(|name| name.parse().ok())
        .collect();
    indexes.sort_unstable();
    if indexes.is_empty() {
        return Err(UpError::NoVif);
    }
    indexes
        .into_iter()
        .map(|index| {
            let config = Config::for_vif(&crate::cmdline(), index).map_err(|e| UpError::Config(index, e))?;
            up_vif(index, &config)
        })
        .collect()
}

/// Brings up vif `index` (`device/vif/<index>`) with `config`.
pub fn up_vif(index: u32, config: &Config) -> Result<Stack, UpError> {
    let (netfront, frontend) = crate::xenstore::with(|xs| {
        crate::grants::with(|gt| connect::connect(xs, gt, index, connect::Config::default()))
            .ok_or(UpError::NoXen("grant table"))
    })
    .ok_or(UpError::NoXen("xenstore"))??
    .map_err(|e| UpError::Vif(index, e))?;
    let mac = netfront.mac();
    log::info!(
        "net: vif {index} connected, mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    );
    crate::executor::xen::wake_on(netfront.port());
    Ok(Stack::new(Vif { index, device: netfront, frontend: Some(frontend) }, mac, config))
}
