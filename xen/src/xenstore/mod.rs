//! The xenstore client (`io/xs_wire.h`, `docs/misc/xenstore.txt`,
//! `docs/misc/xenstore-ring.txt`): how a guest reads its configuration,
//! publishes its devices' state and watches its backends.
//!
//! Split so the protocol runs on the host: [`wire`] encodes and decodes
//! messages, [`ring`] moves bytes through the shared page, [`client`]
//! matches replies to requests, files watch events and retries
//! transactions over any [`Transport`]. Node operations are the methods of
//! [`Store`], the same on a [`Client`] and inside a [`Transaction`].
//!
//! The runtime connects like this; `wait` may block until the store event
//! channel fires (better) or just yield:
//!
//! ```no_run
//! use mote_xen::xenstore::{Client, Interface, RingTransport};
//! use mote_xen::{event, sched};
//!
//! let (page, port) = Interface::from_hvm_params().expect("no xenstore page");
//! let notify = move || {
//!     let _ = event::send(port);
//! };
//! let mut xs = Client::new(RingTransport::new(page, notify, sched::yield_now));
//! let me = xs.domid().expect("xenstore unusable");
//! ```

pub mod client;
pub mod error;
pub mod ring;
pub mod transport;
pub mod wire;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

pub use client::{Client, Replies, Reply, Store, Transaction, WatchId, TX_ATTEMPTS};
pub use error::{Errno, ProtocolError, XsError};
pub use ring::{Interface, RingTransport};
pub use transport::{Transport, TransportError};
pub use wire::{Access, Permission, ReqId, Request, TxId, WatchEvent};
