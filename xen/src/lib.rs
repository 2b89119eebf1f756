//! The Xen hypervisor interface for mote, as seen from an x86-64 PVH guest.
//!
//! One protocol per module: [`hypercall`] finds Xen and installs the
//! hypercall page, [`hvm`] reads HVM parameters, [`console`] drives the PV
//! console ring, [`sched`] yields and shuts the domain down. Structures mirror
//! Xen's public headers, named in each module.
#![cfg_attr(not(test), no_std)]

pub mod console;
pub mod error;
pub mod event;
pub mod hvm;
pub mod hypercall;
pub mod sched;

pub use error::XenError;
