//! The Xen hypervisor interface for mote, as seen from an x86-64 PVH guest.
//!
//! One protocol per module: [`hypercall`] finds Xen and installs the
//! hypercall page, [`hvm`] reads and sets HVM parameters, [`memory`] maps
//! Xen's pages into ours, [`shared_info`] is the page Xen shares with us,
//! [`event`] binds and demultiplexes event channels, [`time`] reads the PV
//! clock and sets one-shot timers, [`gnttab`] shares our pages with backends,
//! [`ring`] is the byte ring shared with backends, [`io_ring`] the
//! request/response ring of PV devices, [`console`] drives the PV
//! console ring, [`xenstore`] talks to xenstored, [`xenbus`] walks a PV
//! device frontend through its handshake, [`sched`] yields, polls and shuts
//! the domain down, [`vchan`] is the server end of a byte stream to a
//! dom0 tool. Structures mirror Xen's public headers, named in each
//! module; identifiers shared between them are in [`types`].
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod console;
pub mod error;
pub mod event;
pub mod gnttab;
pub mod hvm;
pub mod hypercall;
pub mod io_ring;
pub mod memory;
pub mod ring;
pub mod sched;
pub mod shared_info;
pub mod time;
pub mod types;
pub mod vchan;
pub mod xenbus;
pub mod xenstore;

pub use error::XenError;
pub use types::{DomId, Gfn};
