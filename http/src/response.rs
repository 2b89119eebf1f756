//! Status codes and the response head writer.

use crate::date::HttpDate;
use alloc::vec::Vec;
use core::fmt::{self, Write};

/// The statuses the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    PartialContent,
    MovedPermanently,
    NotModified,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    LengthRequired,
    PreconditionFailed,
    ContentTooLarge,
    UriTooLong,
    RangeNotSatisfiable,
    HeaderFieldsTooLarge,
    NotImplemented,
    ServiceUnavailable,
    VersionNotSupported,
}

impl Status {
    /// The code and reason phrase with a newline: the status line's text, and the small body
    /// of an error response.
    pub fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK\n",
            Status::PartialContent => "206 Partial Content\n",
            Status::MovedPermanently => "301 Moved Permanently\n",
            Status::NotModified => "304 Not Modified\n",
            Status::BadRequest => "400 Bad Request\n",
            Status::NotFound => "404 Not Found\n",
            Status::MethodNotAllowed => "405 Method Not Allowed\n",
            Status::LengthRequired => "411 Length Required\n",
            Status::PreconditionFailed => "412 Precondition Failed\n",
            Status::ContentTooLarge => "413 Content Too Large\n",
            Status::UriTooLong => "414 URI Too Long\n",
            Status::RangeNotSatisfiable => "416 Range Not Satisfiable\n",
            Status::HeaderFieldsTooLarge => "431 Request Header Fields Too Large\n",
            Status::NotImplemented => "501 Not Implemented\n",
            Status::ServiceUnavailable => "503 Service Unavailable\n",
            Status::VersionNotSupported => "505 HTTP Version Not Supported\n",
        }
    }

    pub fn code(self) -> u16 {
        self.line()[..3].parse().unwrap_or(500)
    }
}

/// A response: its head, then `body` (borrowed from the site, or a static error text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    pub status: Status,
    pub head: Vec<u8>,
    pub body: &'a [u8],
    /// The connection ends after this response.
    pub close: bool,
}

/// Writes a response head: status line, `Date` and `Server`, then the caller's fields.
pub struct Head {
    status: Status,
    bytes: Vec<u8>,
}

impl Head {
    pub fn new(status: Status, now: u64) -> Head {
        let mut head = Head { status, bytes: Vec::with_capacity(256) };
        head.field("Date", HttpDate(now));
        head.field("Server", "mote");
        head
    }

    pub fn field(&mut self, name: &str, value: impl fmt::Display) -> &mut Head {
        // Writing to a Vec cannot fail.
        let _ = write!(Bytes(&mut self.bytes), "{name}: {value}\r\n");
        self
    }

    /// Ends the head; `Connection: close` when `close`, `Connection: keep-alive` when an
    /// HTTP/1.0 client asked for it.
    pub fn finish(mut self, close: bool, keep_alive_1_0: bool) -> Vec<u8> {
        if close {
            self.field("Connection", "close");
        } else if keep_alive_1_0 {
            self.field("Connection", "keep-alive");
        }
        let mut out = Vec::with_capacity(self.bytes.len() + 40);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.line().trim_end().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.bytes);
        out.extend_from_slice(b"\r\n");
        out
    }
}

struct Bytes<'a>(&'a mut Vec<u8>);

impl Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_layout() {
        let mut head = Head::new(Status::NotFound, 784_111_777);
        head.field("Content-Length", 14);
        let bytes = head.finish(true, false);
        assert_eq!(
            core::str::from_utf8(&bytes).unwrap(),
            "HTTP/1.1 404 Not Found\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: mote\r\n\
             Content-Length: 14\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn codes_match_lines() {
        assert_eq!(Status::HeaderFieldsTooLarge.code(), 431);
        assert_eq!(Status::Ok.code(), 200);
    }
}
