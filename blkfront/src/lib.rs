//! Xen PV block frontend (`io/blkif.h`, `docs/misc/blkif-drivers-explained.txt`).
//!
//! [`wire`] mirrors the ring entries; [`inflight`] keeps the books of the
//! requests with the backend and validates every response against them;
//! [`device`] is the data path (requests split over a pool of pre-granted
//! pages, directly or through indirect pages, as many in flight as the ring
//! holds), [`connect`] the xenbus handshake with blkback. `peer` (feature
//! `peer`) is an in-memory blkback for tests and fuzzing.
//! The backend is untrusted: a response naming an unknown id or the wrong
//! operation is refused, never followed.
#![cfg_attr(not(any(test, feature = "peer")), no_std)]

extern crate alloc;

pub mod connect;
pub mod device;
pub mod inflight;
#[cfg(any(test, feature = "peer"))]
pub mod peer;
#[cfg(test)]
mod tests;
pub mod wire;
