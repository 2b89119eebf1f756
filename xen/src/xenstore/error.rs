//! What can go wrong talking to xenstored: its own refusals (errno names
//! sent as strings, `xsd_errors` in `io/xs_wire.h`), our refusal to send a
//! bad request, and a peer that breaks the protocol or the ring.

use super::transport::TransportError;
use super::wire::ReqId;
use alloc::string::String;
use core::fmt;

/// The errors `xsd_errors` in `io/xs_wire.h` lists, by their C names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    Inval,
    Acces,
    Exist,
    IsDir,
    NoEnt,
    NoMem,
    NoSpc,
    Io,
    NotEmpty,
    NoSys,
    RoFs,
    Busy,
    Again,
    IsConn,
    TooBig,
    Perm,
}

impl Errno {
    /// All of them, in `xsd_errors` order.
    pub const ALL: [Errno; 16] = [
        Errno::Inval,
        Errno::Acces,
        Errno::Exist,
        Errno::IsDir,
        Errno::NoEnt,
        Errno::NoMem,
        Errno::NoSpc,
        Errno::Io,
        Errno::NotEmpty,
        Errno::NoSys,
        Errno::RoFs,
        Errno::Busy,
        Errno::Again,
        Errno::IsConn,
        Errno::TooBig,
        Errno::Perm,
    ];

    /// The name as sent on the wire, e.g. "ENOENT".
    pub fn name(self) -> &'static str {
        match self {
            Errno::Inval => "EINVAL",
            Errno::Acces => "EACCES",
            Errno::Exist => "EEXIST",
            Errno::IsDir => "EISDIR",
            Errno::NoEnt => "ENOENT",
            Errno::NoMem => "ENOMEM",
            Errno::NoSpc => "ENOSPC",
            Errno::Io => "EIO",
            Errno::NotEmpty => "ENOTEMPTY",
            Errno::NoSys => "ENOSYS",
            Errno::RoFs => "EROFS",
            Errno::Busy => "EBUSY",
            Errno::Again => "EAGAIN",
            Errno::IsConn => "EISCONN",
            Errno::TooBig => "E2BIG",
            Errno::Perm => "EPERM",
        }
    }

    /// The error xenstored means by `name`, if `xs_wire.h` lists it.
    pub fn from_name(name: &str) -> Option<Errno> {
        Errno::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// How xenstored broke the protocol. Framing errors leave the byte stream
/// unusable, so the client stops talking after any of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A message claims more than `XENSTORE_PAYLOAD_MAX` bytes.
    Oversized(u32),
    /// A message type we never asked for.
    UnknownType(u32),
    /// A reply whose type is neither the request's nor `XS_ERROR`.
    WrongType { req_id: ReqId, ty: u32 },
    /// A reply for a request that is not in flight.
    Unsolicited(ReqId),
    /// A payload that does not parse as its type's syntax.
    Malformed(&'static str),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Oversized(len) => write!(f, "message of {len} bytes exceeds the limit"),
            ProtocolError::UnknownType(ty) => write!(f, "unknown message type {ty}"),
            ProtocolError::WrongType { req_id, ty } => {
                write!(f, "reply to request {} has type {ty}", req_id.0)
            }
            ProtocolError::Unsolicited(id) => write!(f, "reply to request {} not in flight", id.0),
            ProtocolError::Malformed(what) => write!(f, "malformed {what}"),
        }
    }
}

/// Why a xenstore operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XsError {
    /// xenstored refused the request.
    Xen(Errno),
    /// xenstored refused with an error name `xs_wire.h` does not list.
    UnknownXen(String),
    /// The request's payload would exceed `XENSTORE_PAYLOAD_MAX`, which
    /// makes xenstored drop the connection; it was not sent.
    TooLong(usize),
    /// A path or token is empty or contains a nul byte; it was not sent.
    BadArgument(&'static str),
    /// A watch token already in use: events could not tell the watches apart.
    TokenInUse,
    /// The watch is not (or no longer) registered.
    UnknownWatch,
    /// The request id is not in flight (never submitted or already taken).
    NotInFlight(ReqId),
    /// More replies were taken from [`Replies`](super::Replies) than
    /// requests were sent: the caller's mistake.
    NoReply,
    /// A value is not what the caller asked for (not UTF-8, not a number).
    BadValue(&'static str),
    /// Every attempt of a transaction conflicted with other writers.
    Conflict { attempts: u32 },
    /// xenstored broke the protocol; the connection is unusable.
    Protocol(ProtocolError),
    /// The ring failed; the connection is unusable.
    Transport(TransportError),
}

impl From<ProtocolError> for XsError {
    fn from(e: ProtocolError) -> Self {
        XsError::Protocol(e)
    }
}

impl From<TransportError> for XsError {
    fn from(e: TransportError) -> Self {
        XsError::Transport(e)
    }
}

impl fmt::Display for XsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XsError::Xen(e) => write!(f, "xenstore: {}", e.name()),
            XsError::UnknownXen(name) => write!(f, "xenstore: unknown error \"{name}\""),
            XsError::TooLong(len) => write!(f, "xenstore request of {len} bytes is too long"),
            XsError::BadArgument(what) => write!(f, "xenstore: invalid {what}"),
            XsError::TokenInUse => f.write_str("xenstore watch token already in use"),
            XsError::UnknownWatch => f.write_str("xenstore watch not registered"),
            XsError::NotInFlight(id) => write!(f, "xenstore request {} not in flight", id.0),
            XsError::NoReply => f.write_str("xenstore: a reply was taken for a request never sent"),
            XsError::BadValue(what) => write!(f, "xenstore value {what}"),
            XsError::Conflict { attempts } => {
                write!(f, "xenstore transaction conflicted {attempts} times")
            }
            XsError::Protocol(e) => write!(f, "xenstored broke the protocol: {e}"),
            XsError::Transport(e) => write!(f, "xenstore ring: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_maps_both_ways() {
        for errno in Errno::ALL {
            assert_eq!(Errno::from_name(errno.name()), Some(errno));
        }
        assert_eq!(Errno::from_name("E2BIG"), Some(Errno::TooBig));
        assert_eq!(Errno::from_name("EWHATEVER"), None);
        assert_eq!(XsError::Xen(Errno::NoEnt).to_string(), "xenstore: ENOENT");
    }
}
