//! Sans-IO authoritative DNS: the message codec ([`wire`]), zone master files
//! ([`master`]), zone data ([`zone`]) and the query engine ([`query`]).
//!
//! ```ignore
//! let catalog = Catalog::new(vec![master::parse("example.zone", TEXT, &Name::root())?])?;
//! let reply = query::respond(&catalog, &request, Transport::Udp);
//! ```
#![no_std]

extern crate alloc;

pub mod master;
pub mod name;
pub mod query;
pub mod rdata;
pub mod wire;
pub mod zone;

pub use name::Name;
pub use query::{respond, Transport};
pub use zone::{Catalog, Zone};
