//! One connection's state (RFC 9112): bytes come in as they arrive, complete requests are
//! answered in order (pipelining), and the buffered input stays bounded.

use crate::request::{respond, MAX_TARGET};
use crate::response::{Head, Response, Status};
use crate::site::Site;
use alloc::vec::Vec;

/// Longest request head taken: request line and header fields (414 or 431 beyond).
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header fields in a request (431 beyond).
pub const MAX_FIELDS: usize = 48;

/// An HTTP/1.1 server connection without I/O: [`feed`](Connection::feed) it what was read,
/// send what [`next_response`](Connection::next_response) returns until it returns `None`.
#[derive(Debug, Default)]
pub struct Connection {
    input: Vec<u8>,
    closed: bool,
    /// The input buffer could not grow: the request is refused with 503.
    out_of_memory: bool,
}

impl Connection {
    pub fn new() -> Connection {
        Connection::default()
    }

    /// Takes bytes read from the peer (dropped once the connection is closing). The buffer
    /// grows by what is fed, not by doubling, so what it holds is what it takes. When the
    /// heap has no room for them, the input is dropped and the next response is a 503 that
    /// closes the connection; returns false then.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        if self.closed || self.out_of_memory {
            return !self.out_of_memory;
        }
        if self.input.try_reserve_exact(bytes.len()).is_err() {
            self.out_of_memory = true;
            self.input = Vec::new();
            return false;
        }
        self.input.extend_from_slice(bytes);
        true
    }

    /// No part of a request is waiting: the connection is between requests.
    pub fn is_idle(&self) -> bool {
        self.input.is_empty()
    }

    /// Bytes held for requests not answered yet: below [`MAX_HEAD`] plus one read.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Heap bytes the input buffer holds.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.input.capacity()
    }

    /// A response said `Connection: close`: send it, then close.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The answer to the next complete request, or `None` until more input arrives (or
    /// after the closing response). Input beyond [`MAX_HEAD`] without a complete head is
    /// answered with 414 or 431, so what is buffered stays below `MAX_HEAD` plus one read.
    pub fn next_response<'s, S: Site>(&mut self, site: &'s S, now: u64) -> Option<Response<'s>> {
        if self.closed {
            return None;
        }
        if self.out_of_memory {
            self.closed = true;
            return Some(refuse(Status::ServiceUnavailable, now));
        }
        self.read_minor_version_as_1_1();
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut request = httparse::Request::new(&mut fields);
        let response = match request.parse(&self.input) {
            Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => {
                let response = respond(&request, site, now);
                self.input.drain(..n);
                response
            }
            Ok(httparse::Status::Partial) if self.input.len() <= MAX_HEAD => return None,
            Ok(_) if self.request_line_len() > MAX_TARGET => refuse(Status::UriTooLong, now),
            Ok(_) | Err(httparse::Error::TooManyHeaders) => refuse(Status::HeaderFieldsTooLarge, now),
            Err(httparse::Error::Version) if self.names_other_version() => {
                refuse(Status::VersionNotSupported, now)
            }
            Err(_) => refuse(Status::BadRequest, now),
        };
        if response.close {
            self.closed = true;
            self.input = Vec::new();
        }
        Some(response)
    }

    /// The length of the (first) request line, complete or not.
    fn request_line_len(&self) -> usize {
        self.input.iter().position(|&b| b == b'\n').unwrap_or(self.input.len())
    }

    /// The version at the end of the (first) request line, complete or not: `HTTP/x.y`'s
    /// major and minor digits, where the line holds one.
    fn version_at(&self) -> Option<(usize, u8, u8)> {
        let end = self.request_line_len();
        let line = self.input[..end].trim_ascii_end();
        let start = line.len().checked_sub(8)?;
        match line[start..] {
            [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                if major.is_ascii_digit()
                    && minor.is_ascii_digit()
                    && start > 0
                    && line[start - 1] == b' ' =>
            {
                Some((start + 7, major, minor))
            }
            _ => None,
        }
    }

    /// The request line ends in a well-formed `HTTP/x.y` other than 1.x.
    fn names_other_version(&self) -> bool {
        self.version_at().is_some_and(|(_, major, _)| major != b'1')
    }

    /// A complete request line naming HTTP/1.2 to 1.9 is read as HTTP/1.1, the highest minor
    /// version implemented (RFC 9110 §6.2); `httparse` takes only 1.0 and 1.1.
    fn read_minor_version_as_1_1(&mut self) {
        if self.request_line_len() == self.input.len() {
            return;
        }
        if let Some((at, b'1', b'2'..=b'9')) = self.version_at() {
            self.input[at] = b'1';
        }
    }
}

/// The answer to a connection refused for lack of capacity: 503, then close.
pub fn refusal(now: u64) -> Vec<u8> {
    let response = refuse(Status::ServiceUnavailable, now);
    let mut bytes = response.head;
    bytes.extend_from_slice(response.body);
    bytes
}

/// An answer to input that is not a request to serve, which ends the connection.
fn refuse(status: Status, now: u64) -> Response<'static> {
    let body = status.line().as_bytes();
    let mut head = Head::new(status, now);
    head.field("Content-Type", "text/plain; charset=utf-8").field("Content-Length", body.len());
    if status == Status::ServiceUnavailable {
        head.field("Retry-After", 1);
    }
    Response { status, head: head.finish(true, false), body, close: true }
}
