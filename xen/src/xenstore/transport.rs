//! What the client needs from the byte stream to xenstored. The shared ring
//! ([`super::ring::RingTransport`]) is the real one; keeping the client
//! generic lets it run against a fake xenstored on the host.

use crate::ring::RingCorrupt;
use core::fmt;

/// Why the byte stream stopped working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// The peer's ring index ran ahead of ours by more than the ring.
    Corrupt(RingCorrupt),
    /// xenstored deactivated the connection and said why (`XENSTORE_ERROR_*`).
    Closed(u32),
    /// A host's device or socket to xenstored failed with this `errno`.
    Os(i32),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Corrupt(e) => e.fmt(f),
            TransportError::Closed(code) => write!(f, "xenstored closed the connection (error {code})"),
            TransportError::Os(errno) => write!(f, "the connection to xenstored failed (errno {errno})"),
        }
    }
}

/// A non-blocking byte stream to xenstored plus the two hooks that make
/// waiting cheap.
pub trait Transport {
    /// Copies as much of `bytes` as the stream takes now; 0 when full.
    fn send(&mut self, bytes: &[u8]) -> Result<usize, TransportError>;
    /// Copies out what has arrived, up to `buf.len()`; 0 when nothing has.
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, TransportError>;
    /// Tells xenstored that `send` or `recv` moved data, if it may need
    /// telling (a transport may skip the signal when xenstored is busy).
    fn notify(&mut self);
    /// Blocks until xenstored may have made progress.
    fn wait(&mut self);
}
