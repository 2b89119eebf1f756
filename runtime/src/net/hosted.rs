//! Networking as a Linux process: smoltcp on a TAP device (`tap=NAME`, [`DEFAULT_TAP`]
//! without it), which `cargo xtask run <app> --hosted` makes in a network namespace of its
//! own. The process has one interface, configured as vif 0 is (`ip=`, `gw=`, `ip6=`, `gw6=`;
//! DHCP by default).

use super::{Config, ConfigError, Nic, Stack};
use core::fmt;
use smoltcp::phy::{Medium, TunTapInterface};
use std::os::fd::AsRawFd;

/// Heap bytes the interface holds once up: none beyond the frame being read (the TAP
/// device's buffers are the kernel's).
pub const VIF_HEAP_BYTES: usize = 0;

/// The TAP device used without `tap=`.
pub const DEFAULT_TAP: &str = "mote0";
/// The interface's hardware address: locally administered (bit 1 of the first byte).
const MAC: [u8; 6] = [0x02, 0x6d, 0x6f, 0x74, 0x65, 0x01];

impl Nic for TunTapInterface {}

/// Why the network could not come up.
#[derive(Debug)]
pub enum UpError {
    /// A bad network argument for interface `.0`.
    Config(u32, ConfigError),
    /// The TAP device could not be opened.
    Tap(String, std::io::Error),
}

impl fmt::Display for UpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpError::Config(vif, e) => write!(f, "network configuration of interface {vif}: {e}"),
            UpError::Tap(name, e) => write!(
                f,
                "TAP device {name}: {e} (`cargo xtask run <app> --hosted` makes one; tap=NAME names another)"
            ),
        }
    }
}

/// Brings up the TAP device with the command line's configuration and returns its stack.
/// Call inside [`crate::block_on`].
pub fn up() -> Result<Stack, UpError> {
    let cmdline = crate::cmdline();
    let config = Config::for_vif(&cmdline, 0).map_err(|e| UpError::Config(0, e))?;
    let name = cmdline.get("tap").unwrap_or(DEFAULT_TAP);
    let device = TunTapInterface::new(name, Medium::Ethernet).map_err(|e| UpError::Tap(name.into(), e))?;
    crate::executor::hosted::wake_on(device.as_raw_fd());
    log::info!(
        "net: TAP device {name}, mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        MAC[0],
        MAC[1],
        MAC[2],
        MAC[3],
        MAC[4],
        MAC[5]
    );
    Ok(Stack::new(device, MAC, &config))
}

/// Every interface: hosted, the one of [`up`].
pub fn up_all() -> Result<Vec<Stack>, UpError> {
    up().map(|stack| vec![stack])
}

/// Every interface and the ones attached later: hosted, the one of [`up`], and none later
/// (a process's interfaces are the TAP device it was given).
pub fn up_all_and_watch() -> Result<(Vec<Stack>, Attached), UpError> {
    Ok((up_all()?, Attached))
}

/// Interfaces attached while the process runs: there are none.
pub struct Attached;

impl Attached {
    /// Waits forever: no interface is attached to a hosted process.
    pub async fn next(&mut self) -> Result<Stack, UpError> {
        core::future::pending().await
    }
}
