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
    if !target.starts_with('/') || target.contains('#') {
        return Err(PathError::Form);
    }
    let (raw, query) = match target.split_once('?') {
        Some((raw, query)) => (raw, Some(query)),
        None => (target, None),
    };
    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    for raw_segment in raw[1..].split('/') {
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

/// The path part of an absolute-form target (`http://host:port/p` → `/p`); origin-form as is.
fn strip_authority(target: &str) -> Option<&str> {
    let Some(scheme_end) = target.find("://") else {
        return Some(target);
    };
    if !target[..scheme_end].eq_ignore_ascii_case("http")
        && !target[..scheme_end].eq_ignore_ascii_case("https")
    {
        return None;
    }
    let rest = &target[scheme_end + 3..];
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => Some(&rest[i..]),
        _ => None,
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
        assert_eq!(path("http://example.com"), Err(PathError::Form));
        assert_eq!(path("*"), Err(PathError::Form));
        assert_eq!(path("a/b"), Err(PathError::Form));
        assert_eq!(path("/a#frag"), Err(PathError::Form));
    }

    #[test]
    fn location_encoding() {
        assert_eq!(encode("/café menu/"), "/caf%C3%A9%20menu/");
        assert_eq!(encode("/a-b_c.d~/"), "/a-b_c.d~/");
        assert_eq!(encode("/100%?"), "/100%25%3F");
    }
}
