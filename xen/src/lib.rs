//! The Xen hypervisor interface for mote, as seen from an x86-64 PVH guest.
//!
//! One protocol per module: [`hypercall`] finds Xen and installs the
//! hypercall page, [`hvm`] reads and sets HVM parameters, [`memory`] maps
//! Xen pages into our address space, [`shared_info`] is the page Xen shares
//! with us, [`event`] binds and demultiplexes event channels, [`time`] reads
//! the PV clock and sets one-shot timers, [`console`] drives the PV console
//! ring, [`sched`] yields and shuts the domain down. Structures mirror
//! Xen's public headers, named in each module.
#![cfg_attr(not(test), no_std)]

pub mod console;
pub mod error;
pub mod event;
pub mod hvm;
pub mod hypercall;
pub mod memory;
pub mod sched;
pub mod shared_info;
pub mod time;

pub use error::XenError;
