//! The xenstore wire protocol (`io/xs_wire.h`, `docs/misc/xenstore.txt`):
//! each message is a `struct xsd_sockmsg` header followed by `len` bytes of
//! payload, mostly nul-terminated strings.
//!
//! Requests are encoded from typed values; replies are checked once at the
//! boundary (length, type, syntax) and decoded into typed values, so the
//! client never acts on what xenstored sent without validating it.

use super::error::{Errno, ProtocolError, XsError};
use crate::DomId;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// `XENSTORE_PAYLOAD_MAX`: longer messages make xenstored drop the
/// connection, and we refuse to buffer longer replies.
pub const PAYLOAD_MAX: usize = 4096;
/// Size of `struct xsd_sockmsg`.
pub const HEADER_LEN: usize = 16;

/// Matches a reply to its request; echoed by xenstored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReqId(pub u32);

/// A transaction allocated by xenstored; [`TxId::NONE`] outside any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxId(pub u32);

impl TxId {
    pub const NONE: TxId = TxId(0);
}

/// The message types a guest client sends or receives
/// (`enum xsd_sockmsg_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MsgType {
    Directory = 1,
    Read = 2,
    GetPerms = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    Write = 11,
    Mkdir = 12,
    Rm = 13,
    SetPerms = 14,
    WatchEvent = 15,
    Error = 16,
}

impl MsgType {
    const ALL: [MsgType; 13] = [
        MsgType::Directory,
        MsgType::Read,
        MsgType::GetPerms,
        MsgType::Watch,
        MsgType::Unwatch,
        MsgType::TransactionStart,
        MsgType::TransactionEnd,
        MsgType::Write,
        MsgType::Mkdir,
        MsgType::Rm,
        MsgType::SetPerms,
        MsgType::WatchEvent,
        MsgType::Error,
    ];

    fn from_u32(raw: u32) -> Option<MsgType> {
        MsgType::ALL.into_iter().find(|t| *t as u32 == raw)
    }
}

/// `struct xsd_sockmsg`, in the guest's (little-endian) byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub ty: MsgType,
    pub req_id: ReqId,
    pub tx_id: TxId,
    pub len: u32,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        let fields = [self.ty as u32, self.req_id.0, self.tx_id.0, self.len];
        for (chunk, field) in out.chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        out
    }

    /// Decodes a header, rejecting unknown types and oversized payloads
    /// before any payload byte is buffered.
    pub fn parse(raw: &[u8; HEADER_LEN]) -> Result<Header, ProtocolError> {
        let field = |i: usize| u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
        let len = field(12);
        if len as usize > PAYLOAD_MAX {
            return Err(ProtocolError::Oversized(len));
        }
        let ty = MsgType::from_u32(field(0)).ok_or(ProtocolError::UnknownType(field(0)))?;
        Ok(Header { ty, req_id: ReqId(field(4)), tx_id: TxId(field(8)), len })
    }
}

/// What a domain may do with a node (`<perm-as-string>` in xenstore.txt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    None,
    Read,
    Write,
    Both,
}

impl Access {
    fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }
}

/// One entry of a node's permission list. The first entry names the owner
/// (who may always do everything) and the access of domains not listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub domid: DomId,
    pub access: Access,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.access.letter(), self.domid.0)
    }
}

impl Permission {
    /// Parses "r7"-style text.
    pub fn parse(text: &str) -> Option<Permission> {
        let mut chars = text.chars();
        let access = match chars.next()? {
            'n' => Access::None,
            'r' => Access::Read,
            'w' => Access::Write,
            'b' => Access::Both,
            _ => return None,
        };
        let digits = chars.as_str();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Permission { domid: DomId(digits.parse().ok()?), access })
    }
}

/// A request, as the caller means it. Paths may be relative to the
/// domain's home (`/local/domain/<domid>`); xenstored resolves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    Read(&'a str),
    Write(&'a str, &'a [u8]),
    Directory(&'a str),
    Mkdir(&'a str),
    Rm(&'a str),
    GetPerms(&'a str),
    SetPerms(&'a str, &'a [Permission]),
    Watch { path: &'a str, token: &'a str },
    Unwatch { path: &'a str, token: &'a str },
    TransactionStart,
    TransactionEnd { commit: bool },
}

impl Request<'_> {
    pub fn msg_type(&self) -> MsgType {
        match self {
            Request::Read(_) => MsgType::Read,
            Request::Write(..) => MsgType::Write,
            Request::Directory(_) => MsgType::Directory,
            Request::Mkdir(_) => MsgType::Mkdir,
            Request::Rm(_) => MsgType::Rm,
            Request::GetPerms(_) => MsgType::GetPerms,
            Request::SetPerms(..) => MsgType::SetPerms,
            Request::Watch { .. } => MsgType::Watch,
            Request::Unwatch { .. } => MsgType::Unwatch,
            Request::TransactionStart => MsgType::TransactionStart,
            Request::TransactionEnd { .. } => MsgType::TransactionEnd,
        }
    }

    /// The whole message, header included. Fails without sending anything
    /// if an argument would change the message's meaning (a nul inside a
    /// string) or the payload would exceed [`PAYLOAD_MAX`].
    pub fn encode(&self, req_id: ReqId, tx_id: TxId) -> Result<Vec<u8>, XsError> {
        let mut msg = Vec::from([0; HEADER_LEN]);
        match *self {
            Request::Read(path)
            | Request::Directory(path)
            | Request::Mkdir(path)
            | Request::Rm(path)
            | Request::GetPerms(path) => push_str(&mut msg, path, "path")?,
            Request::Write(path, value) => {
                push_str(&mut msg, path, "path")?;
                msg.extend_from_slice(value);
            }
            Request::SetPerms(path, perms) => {
                push_str(&mut msg, path, "path")?;
                if perms.is_empty() {
                    return Err(XsError::BadArgument("empty permission list"));
                }
                for perm in perms {
                    push_str(&mut msg, &perm.to_string(), "permission")?;
                }
            }
            Request::Watch { path, token } | Request::Unwatch { path, token } => {
                push_str(&mut msg, path, "path")?;
                push_str(&mut msg, token, "token")?;
            }
            Request::TransactionStart => msg.push(0),
            Request::TransactionEnd { commit } => msg.extend_from_slice(if commit { b"T\0" } else { b"F\0" }),
        }
        let len = msg.len() - HEADER_LEN;
        if len > PAYLOAD_MAX {
            return Err(XsError::TooLong(len));
        }
        let header = Header { ty: self.msg_type(), req_id, tx_id, len: len as u32 };
        msg[..HEADER_LEN].copy_from_slice(&header.encode());
        Ok(msg)
    }
}

/// Appends `s` and its terminating nul; `what` names it in the error.
fn push_str(out: &mut Vec<u8>, s: &str, what: &'static str) -> Result<(), XsError> {
    if s.is_empty() || s.contains('\0') {
        return Err(XsError::BadArgument(what));
    }
    out.extend_from_slice(s.as_bytes());
    out.push(0);
    Ok(())
}

/// A complete message from xenstored, header validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub payload: Vec<u8>,
}

/// Reassembles messages from the reply byte stream, however the ring split
/// them. Holds at most one message plus what the caller pushed since.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `None` until one is, or the framing error
    /// after which the stream cannot be trusted.
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        let Some(raw) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header = Header::parse(raw)?;
        let end = HEADER_LEN + header.len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let payload = self.buf[HEADER_LEN..end].to_vec();
        self.buf.drain(..end);
        Ok(Some(Message { header, payload }))
    }
}

/// The nul-terminated strings of a payload (a missing final nul is
/// tolerated); `what` names the payload in the error.
fn strings<'a>(payload: &'a [u8], what: &'static str) -> Result<Vec<&'a str>, ProtocolError> {
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split(|&b| b == 0)
        .map(|s| core::str::from_utf8(s).map_err(|_| ProtocolError::Malformed(what)))
        .collect()
}

/// The error an `XS_ERROR` reply carries; unknown names are kept.
pub fn parse_error(payload: &[u8]) -> XsError {
    match strings(payload, "error reply").as_deref() {
        Ok([name]) => match Errno::from_name(name) {
            Some(errno) => XsError::Xen(errno),
            None => XsError::UnknownXen(name.to_string()),
        },
        Ok(_) => XsError::Protocol(ProtocolError::Malformed("error reply")),
        Err(e) => XsError::Protocol(e.clone()),
    }
}

/// The child names of an `XS_DIRECTORY` reply.
pub fn parse_directory(payload: &[u8]) -> Result<Vec<String>, ProtocolError> {
    let names = strings(payload, "directory")?;
    if names.iter().any(|n| n.is_empty() || n.contains('/')) {
        return Err(ProtocolError::Malformed("directory"));
    }
    Ok(names.into_iter().map(String::from).collect())
}

/// The permission list of an `XS_GET_PERMS` reply (never empty).
pub fn parse_perms(payload: &[u8]) -> Result<Vec<Permission>, ProtocolError> {
    let perms: Option<Vec<_>> = strings(payload, "permissions")?.into_iter().map(Permission::parse).collect();
    perms.filter(|p| !p.is_empty()).ok_or(ProtocolError::Malformed("permissions"))
}

/// The transaction id of an `XS_TRANSACTION_START` reply.
pub fn parse_tx_id(payload: &[u8]) -> Result<TxId, ProtocolError> {
    match strings(payload, "transaction id")?.as_slice() {
        [id] if id.bytes().all(|b| b.is_ascii_digit()) => match id.parse() {
            Ok(0) | Err(_) => Err(ProtocolError::Malformed("transaction id")),
            Ok(id) => Ok(TxId(id)),
        },
        _ => Err(ProtocolError::Malformed("transaction id")),
    }
}

/// An `XS_WATCH_EVENT`: `path` changed, reported to the watch of `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub path: String,
    pub token: String,
}

impl WatchEvent {
    pub fn parse(payload: &[u8]) -> Result<WatchEvent, ProtocolError> {
        match strings(payload, "watch event")?.as_slice() {
            [path, token] => Ok(WatchEvent { path: path.to_string(), token: token.to_string() }),
            _ => Err(ProtocolError::Malformed("watch event")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::message;
    use super::*;
    use alloc::vec;

    fn payload(req: Request<'_>) -> Vec<u8> {
        let msg = req.encode(ReqId(9), TxId(3)).unwrap();
        let header = Header::parse(msg.first_chunk().unwrap()).unwrap();
        assert_eq!(
            header,
            Header { ty: req.msg_type(), req_id: ReqId(9), tx_id: TxId(3), len: msg.len() as u32 - 16 }
        );
        msg[HEADER_LEN..].to_vec()
    }

    #[test]
    fn requests_encode_as_xenstore_txt_says() {
        assert_eq!(payload(Request::Read("name")), b"name\0");
        assert_eq!(payload(Request::Write("a/b", b"v\0x")), b"a/b\0v\0x");
        assert_eq!(payload(Request::Write("a", b"")), b"a\0");
        assert_eq!(payload(Request::Watch { path: "@releaseDomain", token: "t1" }), b"@releaseDomain\0t1\0");
        assert_eq!(payload(Request::Unwatch { path: "p", token: "t" }), b"p\0t\0");
        assert_eq!(payload(Request::TransactionStart), b"\0");
        assert_eq!(payload(Request::TransactionEnd { commit: true }), b"T\0");
        assert_eq!(payload(Request::TransactionEnd { commit: false }), b"F\0");
        let perms = [
            Permission { domid: DomId(7), access: Access::None },
            Permission { domid: DomId(0), access: Access::Both },
            Permission { domid: DomId(65535), access: Access::Read },
        ];
        assert_eq!(payload(Request::SetPerms("p", &perms)), b"p\0n7\0b0\0r65535\0");
    }

    #[test]
    fn header_is_little_endian_xsd_sockmsg() {
        let h = Header { ty: MsgType::Write, req_id: ReqId(0x0102_0304), tx_id: TxId(5), len: 6 };
        assert_eq!(h.encode(), [11, 0, 0, 0, 4, 3, 2, 1, 5, 0, 0, 0, 6, 0, 0, 0]);
        assert_eq!(Header::parse(&h.encode()), Ok(h));
    }

    #[test]
    fn requests_that_would_change_meaning_or_overflow_are_refused() {
        let id = (ReqId(1), TxId::NONE);
        assert_eq!(Request::Read("a\0b").encode(id.0, id.1), Err(XsError::BadArgument("path")));
        assert_eq!(Request::Read("").encode(id.0, id.1), Err(XsError::BadArgument("path")));
        let bad_token = Request::Watch { path: "p", token: "t\0" };
        assert_eq!(bad_token.encode(id.0, id.1), Err(XsError::BadArgument("token")));
        assert!(Request::SetPerms("p", &[]).encode(id.0, id.1).is_err());
        // "p\0" plus the value: exactly PAYLOAD_MAX is fine, one more is not.
        let value = vec![b'x'; PAYLOAD_MAX - 2];
        assert_eq!(Request::Write("p", &value).encode(id.0, id.1).unwrap().len(), HEADER_LEN + PAYLOAD_MAX);
        let value = vec![b'x'; PAYLOAD_MAX - 1];
        assert_eq!(Request::Write("p", &value).encode(id.0, id.1), Err(XsError::TooLong(PAYLOAD_MAX + 1)));
    }

    #[test]
    fn decoder_reassembles_byte_by_byte_and_splits_batches() {
        let mut stream = message(2, 1, b"value");
        stream.extend(message(15, 0, b"path\0tok\0"));
        let mut dec = Decoder::default();
        let mut got = Vec::new();
        for b in &stream {
            dec.push(core::slice::from_ref(b));
            while let Some(m) = dec.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].header.ty, got[0].payload.as_slice()), (MsgType::Read, &b"value"[..]));
        assert_eq!(
            WatchEvent::parse(&got[1].payload).unwrap(),
            WatchEvent { path: "path".into(), token: "tok".into() }
        );

        let mut dec = Decoder::default();
        dec.push(&stream);
        assert!(dec.next_message().unwrap().is_some());
        assert!(dec.next_message().unwrap().is_some());
        assert_eq!(dec.next_message(), Ok(None));
    }

    #[test]
    fn decoder_rejects_oversized_and_unknown_headers_before_the_payload() {
        let mut dec = Decoder::default();
        dec.push(&message(2, 1, b"")[..12]);
        dec.push(&4097u32.to_le_bytes());
        assert_eq!(dec.next_message(), Err(ProtocolError::Oversized(4097)));
        let mut dec = Decoder::default();
        dec.push(&message(0xffff, 1, b""));
        assert_eq!(dec.next_message(), Err(ProtocolError::UnknownType(0xffff)));
    }

    #[test]
    fn replies_decode_into_typed_values() {
        assert_eq!(parse_directory(b"a\0bc\0").unwrap(), ["a", "bc"]);
        assert_eq!(parse_directory(b"").unwrap(), Vec::<String>::new());
        assert!(parse_directory(b"a\0\0b\0").is_err());
        assert!(parse_directory(b"\xff\0").is_err());
        assert_eq!(
            parse_perms(b"b7\0r0\0").unwrap(),
            [
                Permission { domid: DomId(7), access: Access::Both },
                Permission { domid: DomId(0), access: Access::Read }
            ]
        );
        for bad in [&b""[..], b"x7\0", b"r\0", b"r70000\0", b"r+1\0"] {
            assert!(parse_perms(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_tx_id(b"42\0"), Ok(TxId(42)));
        for bad in [&b"0\0"[..], b"x\0", b"1\x002\0", b"+1\0", b"99999999999\0"] {
            assert!(parse_tx_id(bad).is_err(), "{bad:?}");
        }
        assert!(WatchEvent::parse(b"only-path\0").is_err());
    }

    #[test]
    fn error_names_map_to_errno_and_unknown_names_are_kept() {
        assert_eq!(parse_error(b"ENOENT\0"), XsError::Xen(Errno::NoEnt));
        assert_eq!(parse_error(b"EACCES"), XsError::Xen(Errno::Acces));
        assert_eq!(parse_error(b"ENOTCOFFEE\0"), XsError::UnknownXen("ENOTCOFFEE".into()));
        assert_eq!(parse_error(b"\xff\0"), XsError::Protocol(ProtocolError::Malformed("error reply")));
    }
}
