//! Networking on Xen: the domain's vif (netfront) under the stack.

use super::{Config, ConfigError, Nic, Stack};
use core::fmt;
use mote_netfront::connect::{self, ConnectError};
use mote_netfront::device::Netfront;

impl Nic for Netfront {
    fn arm_wakeup(&mut self) -> bool {
        self.prepare_to_sleep()
    }
}

/// Why the network could not come up.
#[derive(Debug)]
pub enum UpError {
    Config(ConfigError),
    /// The domain has no xenstore connection or no grant table.
    NoXen(&'static str),
    Vif(ConnectError),
}

impl fmt::Display for UpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpError::Config(e) => write!(f, "network configuration: {e}"),
            UpError::NoXen(what) => write!(f, "no {what}: cannot bring up the vif"),
            UpError::Vif(e) => write!(f, "vif 0: {e}"),
        }
    }
}

/// Brings up vif 0 with the command line's configuration (`ip=`, `gw=`,
/// `ip6=`, `gw6=`; DHCP by default) and returns its stack. Call inside
/// [`crate::block_on`]; with DHCP, `stack.wait_ipv4().await` waits for the
/// lease.
pub fn up() -> Result<Stack, UpError> {
    let config = Config::from_cmdline(&crate::cmdline()).map_err(UpError::Config)?;
    up_with(&config)
}

/// [`up`] with an explicit configuration.
pub fn up_with(config: &Config) -> Result<Stack, UpError> {
    let netfront = crate::xenstore::with(|xs| {
        crate::grants::with(|gt| connect::connect(xs, gt, 0, connect::Config::default()))
            .ok_or(UpError::NoXen("grant table"))
    })
    .ok_or(UpError::NoXen("xenstore"))??
    .map_err(UpError::Vif)?;
    let mac = netfront.mac();
    log::info!(
        "net: vif 0 connected, mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    );
    crate::executor::xen::wake_on(netfront.port());
    Ok(Stack::new(netfront, mac, config))
}
