//! Read-only files from a content disk: a disk holding an ext2/3/4 filesystem (what `cargo
//! xtask disk DIR -o IMG` makes, and what an operator can mount and edit with Linux's own
//! tools). The reader (`mount_first`, `Fs`) is the runtime's `disk` feature, with
//! blkfront (`mote::disk`): about 100 KiB of image that an app serving only what is built
//! into it leaves out. [`attached`] is there either way, so such an app can refuse a disk it
//! would not read rather than ignore it.

pub mod vdev;

#[cfg(feature = "disk")]
mod reader;
#[cfg(feature = "disk")]
pub use reader::*;

use alloc::string::String;

/// One of the domain's disks, as errors name it: `device/vbd/51712` (its xenstore
/// directory), or `None` without a disk; hosted, the image file `disk=PATH` names. Nothing is
/// opened: the disk is only looked up.
#[cfg(target_os = "none")]
pub fn attached() -> Option<String> {
    use mote_xen::xenstore::{Errno, Store, XsError};
    match crate::xenstore::with(|xs| xs.directory("device/vbd"))? {
        Ok(ids) => ids.into_iter().next().map(|id| alloc::format!("device/vbd/{id}")),
        // No device/vbd directory: no disks.
        Err(XsError::Xen(Errno::NoEnt)) => None,
        Err(e) => {
            log::warn!("fs: listing the domain's disks (device/vbd): {e}");
            None
        }
    }
}

/// One of the domain's disks; hosted, the image file `disk=PATH` names.
#[cfg(not(target_os = "none"))]
pub fn attached() -> Option<String> {
    #[cfg(feature = "hosted")]
    if let Some(path) = crate::cmdline().get("disk") {
        return Some(alloc::string::ToString::to_string(path));
    }
    None
}

/// For an image built without a content-disk reader: an error naming the domain's disk when
/// it has one, so that content an operator attached is never silently passed over for what
/// is built into `app`'s image; `Ok` without a disk.
pub fn refuse_attached(app: &str) -> Result<(), String> {
    match attached() {
        Some(disk) => Err(alloc::format!(
            "{app}: the domain has a disk ({disk}), but this image reads no content disk (it is built \
             without disk support and serves what is built into it): boot the disk-capable image \
             (`cargo xtask build {app} --disk-support`: {app}-disk.elf) or detach the disk"
        )),
        None => Ok(()),
    }
}
