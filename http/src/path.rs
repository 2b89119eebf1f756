//! From a request target to a path inside the site (RFC 9112 §3.2, RFC 3986 §5.2.4): the
//! query is split off, each segment percent-decoded, `.` and `..` resolved. A `..` above the
//! root, an encoded `/`, a NUL, a bad escape or a path that is not UTF-8 is refused, so nothing
//! outside the site root can be named.

use alloc::string::String;
use alloc::vec::Vec;

/// A request target resolved inside the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// `/` followed by the decoded segments joined with `/`; no trailing `/` except for the root.
    pub path: String,
    /// The target named a directory: it ended in `/` (or in `.`/`..`).
    pub trailing_slash: bool,
    /// The query, still encoded, without its `?`.
    pub query: Option<&'a str>,
}

/// Why a target was refused (always a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form or absolute-form, or it has a fragment.
    Form,
    /// A `%` not followed by two hex digits.
    Escape,
    /// An encoded `/` or NUL, or bytes that are not UTF-8.
    Forbidden,
    /// A `..` that would leave the root.
    AboveRoot,
}

/// Resolves a request target (origin-form `/a/b?q`, or absolute-form `http://host/a/b?q`).
pub fn resolve(target: &str) -> Result<Target<'_>, PathError> {
    let target = strip_authority(target).ok_or(PathError::Form)?;
    if target.contains('#') {
        return Err(PathError::Form);
    }
    let (raw, query) = match target.split_once('?') {
        Some((raw, query)) => (raw, Some(query)),
        None => (target, None),
    };
    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    // An empty path (absolute-form only) is the root's.
    for raw_segment in raw.strip_prefix('/').unwrap_or(raw).split('/') {
        let segment = decode(raw_segment)?;
        trailing_slash = matches!(segment.as_str(), "" | "." | "..");
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                segments.pop().ok_or(PathError::AboveRoot)?;
            }
            _ => segments.push(segment),
        }
    }
    let mut path = String::with_capacity(raw.len());
    for segment in &segments {
        path.push('/');
        path.push_str(segment);
    }
    if path.is_empty() {
        path.push('/');
    }
    Ok(Target { path, trailing_slash, query })
}

/// The path and query of a target: origin-form (`/p?q`) as it is; absolute-form
/// (`http://host:port/p?q`) without its scheme and authority, which leaves the path empty when
/// none follows the authority (RFC 9112 §3.2.2). `None` for any other form, or another scheme.
fn strip_authority(target: &str) -> Option<&str> {
    if target.starts_with('/') {
        return Some(target);
    }
    let (scheme, rest) = target.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // An empty host is invalid (RFC 9110 §4.2.1), and so is userinfo (§4.2.4).
    let (authority, path) = rest.split_at(end);
    (!authority.is_empty() && valid_host(authority.as_bytes())).then_some(path)
}

/// A `Host` field value or a target's authority: `uri-host [ ":" port ]` (RFC 9110 §7.2), the
/// host a reg-name (RFC 3986 §3.2.2: unreserved, sub-delimiters, percent-escapes), an IPv4
/// address or a bracketed IP literal. Empty is valid: a `Host` may be empty.
pub fn valid_host(value: &[u8]) -> bool {
    let (host, port) = match value.iter().rposition(|&b| b == b':') {
        Some(i) if !value[i..].contains(&b']') => (&value[..i], &value[i + 1..]),
        _ => (value, &b""[..]),
    };
    if !port.iter().all(u8::is_ascii_digit) {
        return false;
    }
    match host {
        [b'[', literal @ .., b']'] => {
            !literal.is_empty() && literal.iter().all(|&b| b.is_ascii_hexdigit() || b":.vV".contains(&b))
        }
        _ => host.iter().all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b)),
    }
}

fn decode(segment: &str) -> Result<String, PathError> {
    let mut bytes = Vec::with_capacity(segment.len());
    let mut input = segment.bytes();
    while let Some(b) = input.next() {
        if b == b'%' {
            let high = input.next().and_then(hex).ok_or(PathError::Escape)?;
            let low = input.next().and_then(hex).ok_or(PathError::Escape)?;
            bytes.push(high << 4 | low);
        } else {
            bytes.push(b);
        }
    }
    if bytes.iter().any(|&b| b == b'/' || b == 0) {
        return Err(PathError::Forbidden);
    }
    String::from_utf8(bytes).map_err(|_| PathError::Forbidden)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes `path` for a `Location` header: everything but unreserved characters,
/// sub-delimiters, `:`, `@` and `/` (RFC 3986 §3.3).
pub fn encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(target: &str) -> Result<(String, bool), PathError> {
        resolve(target).map(|t| (t.path, t.trailing_slash))
    }

    #[test]
    fn plain_paths_and_query() {
        assert_eq!(path("/"), Ok(("/".into(), true)));
        assert_eq!(path("/a/b.html"), Ok(("/a/b.html".into(), false)));
        assert_eq!(path("/docs/"), Ok(("/docs".into(), true)));
        let t = resolve("/a?x=1&y=%2F").unwrap();
        assert_eq!((t.path.as_str(), t.query), ("/a", Some("x=1&y=%2F")));
    }

    #[test]
    fn dots_and_empty_segments_resolve() {
        assert_eq!(path("/a/./b//c"), Ok(("/a/b/c".into(), false)));
        assert_eq!(path("/a/b/../c"), Ok(("/a/c".into(), false)));
        assert_eq!(path("/a/.."), Ok(("/".into(), true)));
        assert_eq!(path("/a/%2e%2E/b"), Ok(("/b".into(), false)));
    }

    #[test]
    fn nothing_above_the_root() {
        assert_eq!(path("/.."), Err(PathError::AboveRoot));
        assert_eq!(path("/a/../../etc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(path("/%2e%2e/etc/passwd"), Err(PathError::AboveRoot));
    }

    #[test]
    fn encoded_slash_nul_and_bad_escapes_are_refused() {
        assert_eq!(path("/a%2fb"), Err(PathError::Forbidden));
        assert_eq!(path("/..%2f..%2fetc"), Err(PathError::Forbidden));
        assert_eq!(path("/a%00.html"), Err(PathError::Forbidden));
        assert_eq!(path("/%ff%fe"), Err(PathError::Forbidden));
        assert_eq!(path("/a%2"), Err(PathError::Escape));
        assert_eq!(path("/a%zz"), Err(PathError::Escape));
    }

    #[test]
    fn percent_decoding_utf8() {
        assert_eq!(path("/caf%C3%A9%20menu.html"), Ok(("/café menu.html".into(), false)));
    }

    #[test]
    fn forms() {
        assert_eq!(path("http://example.com/a/b"), Ok(("/a/b".into(), false)));
        assert_eq!(path("HTTP://example.com:80/"), Ok(("/".into(), true)));
        assert_eq!(path("ftp://example.com/a"), Err(PathError::Form));
        assert_eq!(path("http://example.com"), Ok(("/".into(), true)));
        assert_eq!(path("http://example.com?q"), Ok(("/".into(), true)));
        assert_eq!(path("http:///a"), Err(PathError::Form));
        assert_eq!(path("http://user@example.com/a"), Err(PathError::Form));
        assert_eq!(path("*"), Err(PathError::Form));
        assert_eq!(path("a/b"), Err(PathError::Form));
        assert_eq!(path("/a#frag"), Err(PathError::Form));
    }

    #[test]
    fn hosts() {
        for host in ["", "example.com", "a-b.example:8080", "10.0.0.2:80", "[::1]:80", "[fe80::1]", "x%41"] {
            assert!(valid_host(host.as_bytes()), "{host:?}");
        }
        for host in ["a b/c@@", "a b", "a/b", "user@a", "a:8x", "[::1", "[]", "a\tb"] {
            assert!(!valid_host(host.as_bytes()), "{host:?}");
        }
    }

    #[test]
    fn location_encoding() {
        assert_eq!(encode("/café menu/"), "/caf%C3%A9%20menu/");
        assert_eq!(encode("/a-b_c.d~/"), "/a-b_c.d~/");
        assert_eq!(encode("/100%?"), "/100%25%3F");
    }
}
