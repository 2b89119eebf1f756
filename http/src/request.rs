//! Answering one parsed request (RFC 9110): method, framing, target, then the file with its
//! conditionals and range.

use crate::coding::accepts_gzip;
use crate::date::HttpDate;
use crate::mime::content_type;
use crate::path::{self, Target};
use crate::range::{self, Ranged};
use crate::response::{Head, Response, Status};
use crate::site::{Entry, File, Site};
use alloc::format;
use alloc::string::String;

/// Longest request target taken (414 beyond).
pub const MAX_TARGET: usize = 2048;
/// Methods that exist but are not allowed here (405); any other unknown one is 501.
const KNOWN_METHODS: &[&str] = &["POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// What the request line and header fields say, independent of the target.
struct Request<'r> {
    head_only: bool,
    version_1_0: bool,
    close: bool,
    fields: &'r [httparse::Header<'r>],
}

impl<'r> Request<'r> {
    fn values(&self, name: &'r str) -> impl Iterator<Item = &'r [u8]> + 'r {
        self.fields.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }

    fn value(&self, name: &'r str) -> Option<&'r [u8]> {
        self.values(name).next()
    }

    /// The comma-separated list elements of every `name` field, trimmed.
    fn list(&self, name: &'r str) -> impl Iterator<Item = &'r [u8]> + 'r {
        self.values(name).flat_map(|v| v.split(|&b| b == b',')).map(<[u8]>::trim_ascii)
    }

    /// An error answer with its small text body (none for HEAD).
    fn error(&self, status: Status, now: u64, close: bool) -> Response<'static> {
        let body = status.line().as_bytes();
        let mut head = Head::new(status, now);
        head.field("Content-Type", "text/plain; charset=utf-8").field("Content-Length", body.len());
        if status == Status::MethodNotAllowed {
            head.field("Allow", "GET, HEAD");
        }
        let close = close || self.close;
        let head = head.finish(close, self.version_1_0 && !close);
        Response { status, head, body: if self.head_only { b"" } else { body }, close }
    }
}

/// The answer to a complete request head.
pub fn respond<'s, S: Site>(parsed: &httparse::Request<'_, '_>, site: &'s S, now: u64) -> Response<'s> {
    let method = parsed.method.unwrap_or("");
    let version_1_0 = parsed.version == Some(0);
    let mut request =
        Request { head_only: method == "HEAD", version_1_0, close: false, fields: parsed.headers };
    request.close = if version_1_0 {
        !request.list("Connection").any(|t| t.eq_ignore_ascii_case(b"keep-alive"))
    } else {
        request.list("Connection").any(|t| t.eq_ignore_ascii_case(b"close"))
    };

    // One valid Host, or none from an HTTP/1.0 client (RFC 9112 §3.2).
    let hosts = request.values("Host").count();
    if hosts > 1
        || (hosts == 0 && !version_1_0)
        || !request.values("Host").all(|h| path::valid_host(h.trim_ascii()))
    {
        return request.error(Status::BadRequest, now, true);
    }
    let body = match body_framing(&request) {
        Ok(body) => body,
        Err(status) => return request.error(status, now, true),
    };
    if method != "GET" && method != "HEAD" {
        let status =
            if KNOWN_METHODS.contains(&method) { Status::MethodNotAllowed } else { Status::NotImplemented };
        return request.error(status, now, body != Body::None);
    }
    match body {
        Body::None => {}
        Body::Chunked => return request.error(Status::LengthRequired, now, true),
        Body::Length => return request.error(Status::ContentTooLarge, now, true),
    }
    let target = parsed.path.unwrap_or("");
    if target.len() > MAX_TARGET {
        return request.error(Status::UriTooLong, now, true);
    }
    let Ok(target) = path::resolve(target) else {
        return request.error(Status::BadRequest, now, false);
    };
    match site.lookup(&target.path) {
        Entry::Directory if !target.trailing_slash => redirect(&request, &target, now),
        Entry::Directory => {
            let index =
                if target.path == "/" { String::from("/index.html") } else { target.path + "/index.html" };
            match site.lookup(&index) {
                Entry::File(file) => serve(&request, &index, file, now),
                _ => request.error(Status::NotFound, now, false),
            }
        }
        Entry::File(file) if !target.trailing_slash => serve(&request, &target.path, file, now),
        _ => request.error(Status::NotFound, now, false),
    }
}

/// How the request's body is framed (RFC 9112 §6.3).
#[derive(Debug, PartialEq, Eq)]
enum Body {
    None,
    Chunked,
    Length,
}

/// 400 when the framing is invalid: both fields, or disagreeing or malformed lengths; 501
/// for a transfer coding other than chunked, which this server does not implement (RFC 9112
/// §6.1), even before chunked.
fn body_framing(request: &Request<'_>) -> Result<Body, Status> {
    let mut length: Option<&[u8]> = None;
    for value in request.list("Content-Length") {
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) || length.is_some_and(|l| l != value) {
            return Err(Status::BadRequest);
        }
        length = Some(value);
    }
    let mut codings = request.list("Transfer-Encoding").filter(|c| !c.is_empty()).peekable();
    let coded = codings.peek().is_some();
    let chunked_only = codings.all(|c| c.eq_ignore_ascii_case(b"chunked"));
    match (request.value("Transfer-Encoding").is_some(), length) {
        (true, Some(_)) => Err(Status::BadRequest),
        (true, None) if !coded => Err(Status::BadRequest),
        (true, None) if !chunked_only => Err(Status::NotImplemented),
        (true, None) => Ok(Body::Chunked),
        (false, Some(length)) if length.iter().any(|&b| b != b'0') => Ok(Body::Length),
        (false, _) => Ok(Body::None),
    }
}

fn redirect(request: &Request<'_>, target: &Target<'_>, now: u64) -> Response<'static> {
    let mut location = path::encode(&target.path);
    location.push('/');
    if let Some(query) = target.query {
        location = format!("{location}?{query}");
    }
    let status = Status::MovedPermanently;
    let body = status.line().as_bytes();
    let mut head = Head::new(status, now);
    head.field("Location", location)
        .field("Content-Type", "text/plain; charset=utf-8")
        .field("Content-Length", body.len());
    let head = head.finish(request.close, request.version_1_0 && !request.close);
    Response { status, head, body: if request.head_only { b"" } else { body }, close: request.close }
}

/// A file, in the representation the client accepts (gzip when it takes it and the site has
/// it), after the preconditions in the order of RFC 9110 §13.2.2 (`If-Match` or else
/// `If-Unmodified-Since`, then `If-None-Match` or else `If-Modified-Since`) and `Range`, all
/// applied to that representation.
fn serve<'s>(request: &Request<'_>, path: &str, file: File<'s>, now: u64) -> Response<'s> {
    let gzip = file.gzip.filter(|_| accepts_gzip(request.list("Accept-Encoding")));
    let (content, etag) = gzip.map_or((file.body, file.etag), |g| (g.body, g.etag));
    // Strong comparison (§13.1.1): our tags are strong, so a weak one never matches.
    let unchanged = if request.value("If-Match").is_some() {
        request.list("If-Match").any(|tag| tag == b"*" || tag == etag.as_bytes())
    } else {
        request
            .value("If-Unmodified-Since")
            .and_then(|value| HttpDate::parse(value, now))
            .is_none_or(|since| file.modified <= since.0)
    };
    if !unchanged {
        return request.error(Status::PreconditionFailed, now, false);
    }
    let len = content.len() as u64;
    let not_modified = if request.value("If-None-Match").is_some() {
        request.list("If-None-Match").any(|tag| tag == b"*" || weak_eq(tag, etag.as_bytes()))
    } else {
        request
            .value("If-Modified-Since")
            .and_then(|v| HttpDate::parse(v, now))
            .is_some_and(|since| file.modified <= since.0)
    };
    let ranged = match request.value("Range") {
        _ if not_modified || request.head_only => Ranged::Whole,
        Some(value) if if_range_holds(request, etag, file.modified, now) => range::evaluate(value, len),
        _ => Ranged::Whole,
    };
    let status = match (&ranged, not_modified) {
        (_, true) => Status::NotModified,
        (Ranged::Whole, _) => Status::Ok,
        (Ranged::Part(_), _) => Status::PartialContent,
        (Ranged::Unsatisfiable, _) => Status::RangeNotSatisfiable,
    };
    let mut head = Head::new(status, now);
    head.field("ETag", etag).field("Last-Modified", HttpDate(file.modified));
    if file.gzip.is_some() {
        // Caches must tell the representations apart (RFC 9110 §12.5.5).
        head.field("Vary", "Accept-Encoding");
    }
    let body = match ranged {
        _ if not_modified => &content[..0],
        Ranged::Whole => {
            head.field("Content-Type", content_type(path)).field("Content-Length", len);
            content
        }
        Ranged::Part(range) => {
            head.field("Content-Type", content_type(path))
                .field("Content-Length", range.end - range.start)
                .field("Content-Range", format!("bytes {}-{}/{len}", range.start, range.end - 1));
            &content[range.start as usize..range.end as usize]
        }
        Ranged::Unsatisfiable => {
            head.field("Content-Range", format!("bytes */{len}")).field("Content-Length", 0);
            &content[..0]
        }
    };
    if gzip.is_some() && !not_modified {
        head.field("Content-Encoding", "gzip");
    }
    head.field("Accept-Ranges", "bytes");
    let head = head.finish(request.close, request.version_1_0 && !request.close);
    Response {
        status,
        head,
        body: if request.head_only { &content[..0] } else { body },
        close: request.close,
    }
}

/// `If-Range` (RFC 9110 §13.1.5): absent, or the representation's strong ETag, or its exact
/// date.
fn if_range_holds(request: &Request<'_>, etag: &str, modified: u64, now: u64) -> bool {
    match request.value("If-Range") {
        None => true,
        Some(value) if value.starts_with(b"\"") => value == etag.as_bytes(),
        Some(value) => HttpDate::parse(value, now).is_some_and(|date| date.0 == modified),
    }
}

/// Weak comparison of entity tags (RFC 9110 §8.8.3.2): equal once any `W/` is dropped.
fn weak_eq(a: &[u8], b: &[u8]) -> bool {
    a.strip_prefix(b"W/").unwrap_or(a) == b.strip_prefix(b"W/").unwrap_or(b)
}
