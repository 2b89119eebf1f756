//! Xen PV block frontend (`io/blkif.h`, `docs/misc/blkif-drivers-explained.txt`).
//!
//! [`wire`] mirrors the ring entries; [`inflight`] keeps the books of the
//! requests with the backend and validates every response against them;
//! [`device`] is the data path (requests of up to 11 pre-granted pages,
//! data copied through them), [`connect`] the xenbus handshake with blkback.
//! The backend is untrusted: a response naming an unknown id or the wrong
//! operation is refused, never followed.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod connect;
pub mod device;
pub mod inflight;
pub mod wire;
