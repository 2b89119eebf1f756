//! Xen PV network frontend (`io/netif.h`).
//!
//! [`connect::connect`] brings a vif up through xenbus and returns a
//! [`device::Netfront`], a `smoltcp` device. Split like the rest of mote: [`wire`] mirrors the ring entries of
//! `netif.h`; [`tx`] and [`rx`] keep the books of which request ids are out
//! with the backend and validate every response against them, on the host
//! too. The backend is untrusted: a response naming an id we did not post,
//! posting twice, or describing bytes outside its page is rejected with an
//! error, never followed.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod connect;
pub mod csum;
pub mod device;
#[cfg(feature = "tx-gso")]
pub mod gso;
pub mod queues;
pub mod rx;
pub mod tx;
pub mod wire;

#[cfg(test)]
mod hostile;
#[cfg(test)]
mod testing;
