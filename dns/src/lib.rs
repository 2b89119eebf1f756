//! Sans-IO authoritative DNS: the message codec ([`wire`]), zone master files
//! ([`master`]), zone data ([`zone`]), zones compiled at build time ([`compiled`]) and the
//! query engine ([`query`]).
//!
//! ```
//! use mote_dns::{master, respond, Catalog, Transport};
//!
//! let zone = master::parse("example.zone", "example. 3600 IN SOA ns hostmaster 1 2 3 4 5\nwww A 192.0.2.1")?;
//! let catalog = Catalog::new(vec![zone]).map_err(|(zone, e)| format!("{zone}: {e}"))?;
//! let request = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 0, 1, 0, 1];
//! let reply = respond(&catalog, &request, Transport::Udp).expect("a query gets a reply");
//! assert_eq!(reply[3] & 0xf, 0); // NOERROR
//! assert_eq!(reply[7], 1); // one answer
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![no_std]

extern crate alloc;

pub mod compiled;
pub mod master;
pub mod memo;
pub mod name;
pub mod query;
pub mod rdata;
pub mod wire;
pub mod zone;

pub use memo::Responder;
pub use name::Name;
pub use query::{respond, try_respond, Transport};
pub use zone::{Catalog, Zone};

/// The heap had no room for what answering a query needed: that query goes unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

impl core::fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("out of memory")
    }
}

impl core::error::Error for OutOfMemory {}

/// `vec.push(item)`, or [`OutOfMemory`] when the vector cannot grow.
pub(crate) fn try_push<T>(vec: &mut alloc::vec::Vec<T>, item: T) -> Result<(), OutOfMemory> {
    vec.try_reserve(1).map_err(|_| OutOfMemory)?;
    vec.push(item);
    Ok(())
}
