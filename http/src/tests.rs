//! Behaviour through [`Connection`]: one test per rule, and random input that must never panic.

use crate::*;
use alloc::string::String;
use alloc::vec::Vec;
use alloc::{format, vec};

const NOW: u64 = 1_700_000_000;
const MODIFIED: u64 = 1_600_000_000;
static INDEX: &[u8] = b"<h1>home</h1>\n";
static DOCS_INDEX: &[u8] = b"<h1>docs</h1>\n";
static DATA: &[u8] = b"0123456789abcdefghij";
static PAGE: &[u8] = b"<p>a page long enough to be worth compressing</p>\n";
/// Stands in for the compressed page: the server only picks and slices it.
static PAGE_GZIP: &[u8] = b"\x1f\x8bcompressed page";

static FILES: &[StaticFile] = &[
    StaticFile { path: "/data.bin", body: DATA, modified: MODIFIED, etag: "\"data\"", gzip: None },
    StaticFile {
        path: "/docs/index.html",
        body: DOCS_INDEX,
        modified: MODIFIED,
        etag: "\"docs\"",
        gzip: None,
    },
    StaticFile { path: "/empty", body: b"", modified: MODIFIED, etag: "\"nodocs\"", gzip: None },
    StaticFile { path: "/index.html", body: INDEX, modified: MODIFIED, etag: "\"home\"", gzip: None },
    StaticFile {
        path: "/page.html",
        body: PAGE,
        modified: MODIFIED,
        etag: "\"page\"",
        gzip: Some(Encoded { body: PAGE_GZIP, etag: "\"page-gz\"" }),
    },
    StaticFile { path: "/style.css", body: b"p{}", modified: MODIFIED, etag: "\"css\"", gzip: None },
];

/// A response as a client sees it.
#[derive(Debug)]
struct Seen {
    code: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends `input` in one piece; returns the responses and whether the connection closed.
fn exchange(input: &str) -> (Vec<Seen>, bool) {
    let site = StaticSite::new(FILES);
    let mut conn = Connection::new();
    conn.feed(input.as_bytes());
    let mut seen = Vec::new();
    while let Some(response) = conn.next_response(&site, NOW) {
        seen.push(decode(&response));
    }
    (seen, conn.is_closed())
}

fn decode(response: &Response<'_>) -> Seen {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut fields);
    assert_eq!(parsed.parse(&response.head), Ok(httparse::Status::Complete(response.head.len())));
    assert_eq!(parsed.code, Some(response.status.code()));
    let fields = parsed
        .headers
        .iter()
        .map(|h| (String::from(h.name), String::from(core::str::from_utf8(h.value).unwrap())))
        .collect();
    Seen { code: response.status.code(), fields, body: response.body.to_vec() }
}

/// One request's response (the connection stays open or not, as it says).
fn one(input: &str) -> Seen {
    let (mut seen, _) = exchange(input);
    assert_eq!(seen.len(), 1, "{input:?}");
    seen.remove(0)
}

fn get(target: &str, fields: &str) -> Seen {
    one(&format!("GET {target} HTTP/1.1\r\nHost: x\r\n{fields}\r\n"))
}

#[test]
fn get_serves_file_with_metadata() {
    let seen = get("/style.css", "");
    assert_eq!(seen.code, 200);
    assert_eq!(seen.body, b"p{}");
    assert_eq!(seen.field("Content-Length"), Some("3"));
    assert_eq!(seen.field("Content-Type"), Some("text/css; charset=utf-8"));
    assert_eq!(seen.field("ETag"), Some("\"css\""));
    assert_eq!(seen.field("Last-Modified"), Some("Sun, 13 Sep 2020 12:26:40 GMT"));
    assert_eq!(seen.field("Date"), Some("Tue, 14 Nov 2023 22:13:20 GMT"));
    assert_eq!(seen.field("Accept-Ranges"), Some("bytes"));
    assert_eq!(seen.field("Connection"), None);
}

#[test]
fn head_has_get_fields_without_body() {
    let seen = one("HEAD /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(seen.code, 200);
    assert!(seen.body.is_empty());
    assert_eq!(seen.field("Content-Length"), Some(&*format!("{}", INDEX.len())));
}

#[test]
fn directories_serve_index_or_redirect() {
    assert_eq!(get("/", "").body, INDEX);
    assert_eq!(get("/docs/", "").body, DOCS_INDEX);
    let redirect = get("/docs?x=1", "");
    assert_eq!(redirect.code, 301);
    assert_eq!(redirect.field("Location"), Some("/docs/?x=1"));
    assert_eq!(get("/index.html/", "").code, 404);
}

#[test]
fn missing_and_outside_root() {
    assert_eq!(get("/nope", "").code, 404);
    assert_eq!(get("/docs/nope", "").code, 404);
    for target in ["/../index.html", "/%2e%2e/index.html", "/docs%2findex.html", "/index.html%00", "/%zz"] {
        let seen = get(target, "");
        assert_eq!(seen.code, 400, "{target}");
        assert_eq!(seen.body, b"400 Bad Request\n");
    }
    assert_eq!(get("/docs/../index.html", "").body, INDEX);
    assert_eq!(get("http://example.com/style.css", "").body, b"p{}");
}

#[test]
fn a_query_may_hold_a_url() {
    assert_eq!(get("/?next=https://example.org/", "").body, INDEX);
    assert_eq!(get("/docs/index.html?ref=https://news.example/item?id=1", "").body, DOCS_INDEX);
    let redirect = get("/docs?url=http://a/b", "");
    assert_eq!((redirect.code, redirect.field("Location")), (301, Some("/docs/?url=http://a/b")));
}

#[test]
fn an_absolute_form_target_without_a_path_names_the_root() {
    assert_eq!(get("http://example.com", "").body, INDEX);
    assert_eq!(get("http://example.com:8080?x=1", "").body, INDEX);
    assert_eq!(get("ftp://example.com/", "").code, 400);
}

#[test]
fn keep_alive_and_pipelining() {
    let (seen, closed) = exchange(
        "GET /style.css HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /data.bin HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(seen.iter().map(|s| s.code).collect::<Vec<_>>(), [200, 200, 404, 200]);
    assert_eq!(seen[3].body, DATA);
    assert!(!closed);
}

#[test]
fn requests_split_across_reads() {
    let site = StaticSite::new(FILES);
    let mut conn = Connection::new();
    let request = b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n";
    for (i, byte) in request.iter().enumerate() {
        assert!(conn.next_response(&site, NOW).is_none());
        conn.feed(&[*byte]);
        assert!(!conn.is_idle(), "after byte {i}");
    }
    assert_eq!(conn.next_response(&site, NOW).map(|r| r.body), Some(&b"p{}"[..]));
    assert!(conn.is_idle());
}

#[test]
fn connection_close_and_http_1_0() {
    let (seen, closed) = exchange(
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /style.css HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].field("Connection"), Some("close"));
    assert!(closed);
    let (seen, closed) = exchange("GET / HTTP/1.0\r\n\r\n");
    assert_eq!((seen[0].code, seen[0].field("Connection"), closed), (200, Some("close"), true));
    let (seen, closed) = exchange("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert_eq!((seen[0].code, seen[0].field("Connection"), closed), (200, Some("keep-alive"), false));
}

#[test]
fn etag_and_if_none_match() {
    let seen = get("/style.css", "If-None-Match: \"other\", W/\"css\"\r\n");
    assert_eq!(seen.code, 304);
    assert!(seen.body.is_empty());
    assert_eq!(seen.field("ETag"), Some("\"css\""));
    assert_eq!(get("/style.css", "If-None-Match: *\r\n").code, 304);
    assert_eq!(get("/style.css", "If-None-Match: \"other\"\r\n").code, 200);
    // If-None-Match wins over If-Modified-Since.
    let since = HttpDate(NOW);
    assert_eq!(
        get("/style.css", &format!("If-None-Match: \"x\"\r\nIf-Modified-Since: {since}\r\n")).code,
        200
    );
}

#[test]
fn last_modified_and_if_modified_since() {
    assert_eq!(get("/style.css", &format!("If-Modified-Since: {}\r\n", HttpDate(MODIFIED))).code, 304);
    assert_eq!(get("/style.css", &format!("If-Modified-Since: {}\r\n", HttpDate(MODIFIED - 1))).code, 200);
    assert_eq!(get("/style.css", "If-Modified-Since: yesterday\r\n").code, 200);
    for obsolete in ["Sunday, 13-Sep-20 12:26:40 GMT", "Sun Sep 13 12:26:40 2020"] {
        assert_eq!(get("/style.css", &format!("If-Modified-Since: {obsolete}\r\n")).code, 304, "{obsolete}");
    }
}

/// RFC 9110 §13.1.1, §13.1.4, §13.2.2: a failed If-Match or If-Unmodified-Since is 412, before
/// anything else is looked at; a resumed download never gets bytes of another version.
#[test]
fn if_match_and_if_unmodified_since_fail_with_412() {
    let seen = get("/data.bin", "If-Match: \"stale\"\r\nRange: bytes=5-\r\n");
    assert_eq!((seen.code, seen.body.as_slice()), (412, &b"412 Precondition Failed\n"[..]));
    assert_eq!(get("/data.bin", "If-Match: W/\"data\"\r\n").code, 412, "weak tags never match strongly");
    assert_eq!(get("/data.bin", "If-Match: \"x\", \"data\"\r\nRange: bytes=5-\r\n").code, 206);
    assert_eq!(get("/data.bin", "If-Match: *\r\n").code, 200);
    let old = HttpDate(MODIFIED - 1);
    assert_eq!(get("/data.bin", &format!("If-Unmodified-Since: {old}\r\n")).code, 412);
    assert_eq!(get("/data.bin", &format!("If-Unmodified-Since: {}\r\n", HttpDate(MODIFIED))).code, 200);
    assert_eq!(get("/data.bin", "If-Unmodified-Since: never\r\n").code, 200);
    // If-Match, when present, decides instead of If-Unmodified-Since.
    assert_eq!(get("/data.bin", &format!("If-Match: \"data\"\r\nIf-Unmodified-Since: {old}\r\n")).code, 200);
    // The tag is the chosen representation's.
    assert_eq!(get("/page.html", "Accept-Encoding: gzip\r\nIf-Match: \"page\"\r\n").code, 412);
    assert_eq!(get("/page.html", "Accept-Encoding: gzip\r\nIf-Match: \"page-gz\"\r\n").code, 200);
    let (seen, closed) = exchange("HEAD /data.bin HTTP/1.1\r\nHost: x\r\nIf-Match: \"stale\"\r\n\r\n");
    assert_eq!((seen[0].code, seen[0].body.len(), closed), (412, 0, false));
}

#[test]
fn single_range() {
    let seen = get("/data.bin", "Range: bytes=2-5\r\n");
    assert_eq!(seen.code, 206);
    assert_eq!(seen.body, b"2345");
    assert_eq!(seen.field("Content-Range"), Some("bytes 2-5/20"));
    assert_eq!(seen.field("Content-Length"), Some("4"));
    assert_eq!(get("/data.bin", "Range: bytes=-3\r\n").body, b"hij");
    assert_eq!(get("/data.bin", "Range: bytes=0-1,4-5\r\n").code, 200);
    let seen = get("/data.bin", "Range: bytes=20-\r\n");
    assert_eq!(seen.code, 416);
    assert_eq!(seen.field("Content-Range"), Some("bytes */20"));
    assert_eq!(get("/empty", "Range: bytes=0-\r\n").code, 416);
    assert_eq!(get("/data.bin", "Range: bytes=2-5\r\nIf-Range: \"data\"\r\n").code, 206);
    assert_eq!(get("/data.bin", "Range: bytes=2-5\r\nIf-Range: \"old\"\r\n").code, 200);
    assert_eq!(one("HEAD /data.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=2-5\r\n\r\n").code, 200);
}

#[test]
fn methods() {
    let seen = one("POST / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((seen.code, seen.field("Allow")), (405, Some("GET, HEAD")));
    assert_eq!(seen.body, b"405 Method Not Allowed\n");
    assert_eq!(one("DELETE / HTTP/1.1\r\nHost: x\r\n\r\n").code, 405);
    assert_eq!(one("BREW / HTTP/1.1\r\nHost: x\r\n\r\n").code, 501);
    let (seen, closed) = exchange("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!((seen.len(), seen[0].code, closed), (1, 405, true));
}

#[test]
fn request_bodies_are_refused() {
    let (seen, closed) = exchange("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!((seen.len(), seen[0].code, closed), (1, 411, true));
    let (seen, closed) = exchange("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!((seen.len(), seen[0].code, closed), (1, 413, true));
    assert_eq!(get("/", "Content-Length: 0\r\n").code, 200);
    assert_eq!(get("/", "Content-Length: 1, 2\r\n").code, 400);
    assert_eq!(get("/", "Content-Length: -1\r\n").code, 400);
    assert_eq!(get("/", "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n").code, 400);
}

#[test]
fn a_transfer_coding_other_than_chunked_gets_501() {
    for coding in ["identity", "gzip, chunked", "chunked, identity"] {
        let (seen, closed) =
            exchange(&format!("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\n\r\n"));
        assert_eq!((seen.len(), seen[0].code, closed), (1, 501, true), "{coding:?}");
    }
    let (seen, _) = exchange("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(seen[0].code, 411);
}

#[test]
fn malformed_requests_get_400_and_close() {
    for input in [
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "GET / FOO\r\nHost: x\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\x7f\x03\x03",
    ] {
        let (seen, closed) = exchange(input);
        assert_eq!((seen.len(), seen[0].code, closed), (1, 400, true), "{input:?}");
    }
}

#[test]
fn an_invalid_host_gets_400() {
    for host in ["a b/c@@", "user@x", "x:port", "[::1"] {
        let (seen, closed) = exchange(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        assert_eq!((seen[0].code, closed), (400, true), "{host:?}");
    }
    assert_eq!(one("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n").code, 200);
    assert_eq!(one("GET / HTTP/1.1\r\nHost:\r\n\r\n").code, 200);
}

#[test]
fn other_major_versions_get_505() {
    for input in ["GET / HTTP/2.0\r\nHost: x\r\n\r\n", "GET / HTTP/3.0\r\n"] {
        let (seen, closed) = exchange(input);
        assert_eq!((seen[0].code, closed), (505, true), "{input:?}");
    }
}

/// RFC 9110 §6.2: a higher minor version of a major version implemented is read as the
/// highest one implemented.
#[test]
fn a_higher_minor_version_is_served_as_http_1_1() {
    let (seen, closed) =
        exchange("GET /style.css HTTP/1.2\r\nHost: x\r\n\r\nGET / HTTP/1.9\r\nHost: x\r\n\r\n");
    assert_eq!(seen.iter().map(|s| s.code).collect::<Vec<_>>(), [200, 200]);
    assert_eq!((seen[0].body.as_slice(), closed), (&b"p{}"[..], false));
    // Still HTTP/1.1's rules: Host is required.
    assert_eq!(one("GET / HTTP/1.2\r\n\r\n").code, 400);
}

#[test]
fn long_targets_get_414_and_large_heads_431() {
    let long = "a".repeat(MAX_TARGET);
    assert_eq!(get(&format!("/{long}"), "").code, 414);
    let (seen, closed) = exchange(&format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD)));
    assert_eq!((seen[0].code, closed), (414, true));
    let field = format!("X-Filler: {}\r\n", "b".repeat(100));
    let (seen, _) = exchange(&format!("GET / HTTP/1.1\r\nHost: x\r\n{}", field.repeat(MAX_HEAD / 100)));
    assert_eq!(seen[0].code, 431);
    let (seen, _) = exchange(&format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", "X: y\r\n".repeat(MAX_FIELDS)));
    assert_eq!(seen[0].code, 431);
}

#[test]
fn refusal_is_a_closing_503() {
    let bytes = refusal(NOW);
    let text = core::str::from_utf8(&bytes).unwrap();
    assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n") && text.contains("Retry-After: 1\r\n"));
}

#[test]
fn gzip_variant_for_clients_that_accept_it() {
    let seen = get("/page.html", "Accept-Encoding: gzip, deflate, br\r\n");
    assert_eq!(seen.code, 200);
    assert_eq!(seen.body, PAGE_GZIP);
    assert_eq!(seen.field("Content-Encoding"), Some("gzip"));
    assert_eq!(seen.field("Content-Length"), Some(&*format!("{}", PAGE_GZIP.len())));
    assert_eq!(seen.field("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(seen.field("Vary"), Some("Accept-Encoding"));
    assert_eq!(seen.field("ETag"), Some("\"page-gz\""));
    let head = one("HEAD /page.html HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n");
    assert_eq!((head.field("Content-Encoding"), head.body.len()), (Some("gzip"), 0));
}

#[test]
fn identity_when_gzip_is_not_accepted() {
    for fields in
        ["", "Accept-Encoding: br\r\n", "Accept-Encoding: gzip;q=0, br\r\n", "Accept-Encoding: *;q=0\r\n"]
    {
        let seen = get("/page.html", fields);
        assert_eq!(seen.body, PAGE, "{fields:?}");
        assert_eq!(seen.field("Content-Encoding"), None, "{fields:?}");
        assert_eq!(seen.field("ETag"), Some("\"page\""), "{fields:?}");
        // The response still depends on the field.
        assert_eq!(seen.field("Vary"), Some("Accept-Encoding"), "{fields:?}");
    }
    // A file without a variant (not smaller compressed) is served as it is, with no Vary.
    let seen = get("/style.css", "Accept-Encoding: gzip\r\n");
    assert_eq!(
        (seen.body.as_slice(), seen.field("Content-Encoding"), seen.field("Vary")),
        (&b"p{}"[..], None, None)
    );
}

#[test]
fn conditionals_and_ranges_apply_to_the_chosen_representation() {
    let gzip = "Accept-Encoding: gzip\r\n";
    let seen = get("/page.html", &format!("{gzip}If-None-Match: \"page-gz\"\r\n"));
    assert_eq!(
        (seen.code, seen.field("ETag"), seen.field("Vary")),
        (304, Some("\"page-gz\""), Some("Accept-Encoding"))
    );
    // The identity's tag does not match the gzip representation, and the other way round.
    assert_eq!(get("/page.html", &format!("{gzip}If-None-Match: \"page\"\r\n")).code, 200);
    assert_eq!(get("/page.html", "If-None-Match: \"page-gz\"\r\n").code, 200);
    assert_eq!(get("/page.html", "If-None-Match: \"page\"\r\n").code, 304);

    let seen = get("/page.html", &format!("{gzip}Range: bytes=2-5\r\n"));
    assert_eq!(seen.code, 206);
    assert_eq!(seen.body, &PAGE_GZIP[2..6]);
    assert_eq!(seen.field("Content-Range"), Some(&*format!("bytes 2-5/{}", PAGE_GZIP.len())));
    assert_eq!(seen.field("Content-Encoding"), Some("gzip"));
    let seen = get("/page.html", &format!("{gzip}Range: bytes={}-\r\n", PAGE_GZIP.len()));
    assert_eq!(seen.code, 416);
    assert_eq!(seen.field("Content-Range"), Some(&*format!("bytes */{}", PAGE_GZIP.len())));
    // The same range of the identity is other bytes; If-Range names a representation.
    assert_eq!(get("/page.html", "Range: bytes=2-5\r\n").body, &PAGE[2..6]);
    assert_eq!(get("/page.html", &format!("{gzip}Range: bytes=2-5\r\nIf-Range: \"page-gz\"\r\n")).code, 206);
    assert_eq!(get("/page.html", &format!("{gzip}Range: bytes=2-5\r\nIf-Range: \"page\"\r\n")).code, 200);
}

/// xorshift64*: a fixed, dependency-free stream of test input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Seeds that mutations start from.
const SEEDS: &[&str] = &[
    "GET /docs/ HTTP/1.1\r\nHost: x\r\nRange: bytes=3-9\r\nIf-None-Match: \"a\", W/\"b\"\r\n\r\n",
    "GET /page.html HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br;q=1, gzip;q=0.5, *;q=0\r\nRange: bytes=1-\r\n\r\n",
    "HEAD /data.bin?q=%20 HTTP/1.0\r\nConnection: keep-alive\r\nIf-Modified-Since: Sun, 13 Sep 2020 12:26:40 GMT\r\n\r\n",
    "GET http://h/%2e%2e/a%2fb HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nIf-Range: \"data\"\r\nRange: bytes=-5\r\n\r\n",
];

/// Random and mutated requests, fed in random pieces: never a panic, every response well
/// formed, its body as long as it says, and the buffered input bounded.
#[test]
fn random_input_never_panics() {
    let site = StaticSite::new(FILES);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let alphabet = b"GETHADPOST /%.2efF0-9:,;=\"*W\r\n\x00\xffbytes=HTTP/1.1Host";
    for _ in 0..20_000 {
        let mut input = Vec::new();
        for _ in 0..1 + rng.below(4) {
            input.extend_from_slice(SEEDS[rng.below(SEEDS.len())].as_bytes());
        }
        for _ in 0..rng.below(8) {
            let at = rng.below(input.len() + 1);
            match rng.below(4) {
                0 if at < input.len() => input[at] = alphabet[rng.below(alphabet.len())],
                1 if at < input.len() => drop(input.remove(at)),
                2 => input.insert(at, alphabet[rng.below(alphabet.len())]),
                _ => input.insert(at, rng.next() as u8),
            }
        }
        let mut conn = Connection::new();
        let mut rest = &input[..];
        let mut longest = 0;
        while !rest.is_empty() && !conn.is_closed() {
            let (piece, tail) = rest.split_at(1 + rng.below(rest.len()));
            rest = tail;
            longest = longest.max(piece.len());
            conn.feed(piece);
            while let Some(response) = conn.next_response(&site, NOW) {
                let seen = decode(&response);
                let length: Option<usize> = seen.field("Content-Length").map(|l| l.parse().unwrap());
                if !response.body.is_empty() {
                    assert_eq!(length, Some(response.body.len()));
                }
            }
            assert!(conn.buffered() <= MAX_HEAD);
            assert!(conn.capacity() <= MAX_HEAD + longest, "{} bytes held", conn.capacity());
        }
    }
}

#[test]
fn bounded_buffer_under_endless_header() {
    let site = StaticSite::new(FILES);
    let mut conn = Connection::new();
    conn.feed(b"GET / HTTP/1.1\r\n");
    let chunk = vec![b'a'; 1000];
    let mut answered = None;
    for _ in 0..100 {
        conn.feed(&chunk);
        if let Some(response) = conn.next_response(&site, NOW) {
            answered = Some(response.status);
            break;
        }
        assert!(conn.buffered() <= MAX_HEAD);
        assert!(conn.capacity() <= MAX_HEAD + chunk.len());
    }
    assert_eq!(answered, Some(Status::HeaderFieldsTooLarge));
    assert!(conn.is_closed());
}

/// The test binary's allocator: the system's, except that a test can make allocations larger
/// than a limit fail on its thread, as a heap running out does.
mod limited {
    extern crate std;
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::Cell;
    use std::alloc::System;

    std::thread_local! {
        static LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
    }

    struct Limited;

    fn too_large(size: usize) -> bool {
        LIMIT.try_with(Cell::get).is_ok_and(|limit| size > limit)
    }

    // SAFETY: every allocation the limit lets through goes to the system allocator unchanged.
    unsafe impl GlobalAlloc for Limited {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if too_large(layout.size()) {
                return core::ptr::null_mut();
            }
            // SAFETY: the caller's contract is the system allocator's.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above; every block came from the system allocator.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if too_large(new_size) {
                return core::ptr::null_mut();
            }
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Limited = Limited;

    /// Runs `f` with allocations over `bytes` failing on this thread.
    pub fn with_limit<R>(bytes: usize, f: impl FnOnce() -> R) -> R {
        LIMIT.with(|l| l.set(bytes));
        let r = f();
        LIMIT.with(|l| l.set(usize::MAX));
        r
    }
}

#[test]
fn a_request_the_heap_cannot_hold_is_refused_with_503_and_the_next_connection_served() {
    let site = StaticSite::new(FILES);
    let padding = "x".repeat(4000);
    let request = format!("GET /style.css HTTP/1.1\r\nHost: x\r\nX-Pad: {padding}\r\n\r\n");
    let mut conn = Connection::new();
    let (fed, response) = limited::with_limit(1024, || {
        let fed = conn.feed(request.as_bytes());
        (fed, conn.next_response(&site, NOW).map(|r| decode(&r)))
    });
    assert!(!fed, "the 4 KiB of input did not fit");
    let response = response.expect("an answer, not silence");
    assert_eq!(response.code, 503);
    assert_eq!(response.field("Connection"), Some("close"));
    assert!(conn.is_closed());
    assert!(conn.next_response(&site, NOW).is_none());
    // With memory back, the same request on a new connection is served.
    let (seen, _) = exchange(&request);
    assert_eq!(seen[0].code, 200);
}
