//! A sans-IO HTTP/1.1 server for static files (RFC 9110, RFC 9112): requests are parsed with
//! `httparse`, answered from a [`Site`], and the bytes to send handed back; the caller does the
//! I/O and the timing. GET and HEAD, persistent connections and pipelining, conditional and
//! range requests, gzip-coded variants for clients that take them, and an error status for everything else.
//! [`Pool`] decides which connections a server keeps when more come than it has room for, and
//! how long each may wait.
#![no_std]

extern crate alloc;

mod coding;
mod conn;
mod date;
mod mime;
mod path;
mod pool;
mod range;
mod request;
mod response;
mod site;

pub use conn::{refusal, Connection, MAX_FIELDS, MAX_HEAD};
pub use date::HttpDate;
pub use mime::content_type;
pub use pool::{Admission, Evicted, Id, Pool, Timeouts};
pub use request::MAX_TARGET;
pub use response::{Response, Status};
pub use site::{etag, Encoded, Entry, File, Site, StaticFile, StaticSite};

#[cfg(test)]
mod tests;
