//! Any bytes as what a client sends on one connection, arriving in two reads split where the
//! first two input bytes say. Every response must be a complete HTTP/1.1 head naming its
//! status, its `Connection: close` must match whether the connection closes, a body must be
//! as long as `Content-Length` says, and the buffered input must stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mote_http::{Connection, Encoded, Response, StaticFile, StaticSite, MAX_HEAD};

static FILES: &[StaticFile] = &[
    StaticFile {
        path: "/data.bin",
        body: b"0123456789abcdefghij",
        modified: 1_600_000_000,
        etag: "\"d\"",
        gzip: None,
    },
    StaticFile { path: "/docs/index.html", body: b"<h1>docs</h1>\n", modified: 0, etag: "\"i\"", gzip: None },
    StaticFile { path: "/empty", body: b"", modified: 1_600_000_000, etag: "\"e\"", gzip: None },
    StaticFile {
        path: "/index.html",
        body: b"<h1>home</h1>\n",
        modified: 1_600_000_000,
        etag: "\"h\"",
        gzip: None,
    },
    StaticFile {
        path: "/page.html",
        body: b"<p>a page long enough to be worth compressing</p>\n",
        modified: 1_600_000_000,
        etag: "\"p\"",
        gzip: Some(Encoded { body: b"\x1f\x8bcompressed", etag: "\"pz\"" }),
    },
];

const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((split, input)) = data.split_first_chunk::<2>() else { return };
    let split = usize::from(u16::from_le_bytes(*split)) % (input.len() + 1);
    let site = StaticSite::new(FILES);
    let mut conn = Connection::new();
    for read in [&input[..split], &input[split..]] {
        conn.feed(read);
        while let Some(response) = conn.next_response(&site, NOW) {
            check(&response);
        }
        assert!(conn.buffered() <= MAX_HEAD, "{} bytes buffered", conn.buffered());
        assert!(!conn.is_closed() || conn.is_idle(), "nothing is kept once closed");
    }
});

fn check(response: &Response<'_>) {
    let mut fields = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut fields);
    assert_eq!(parsed.parse(&response.head), Ok(httparse::Status::Complete(response.head.len())));
    assert_eq!(parsed.version, Some(1));
    assert_eq!(parsed.code, Some(response.status.code()));
    let field =
        |name: &str| parsed.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    assert_eq!(field("Connection") == Some(b"close"), response.close, "Connection: close iff closing");
    if !response.body.is_empty() {
        let length =
            field("Content-Length").map(|v| std::str::from_utf8(v).unwrap().parse::<usize>().unwrap());
        assert_eq!(length, Some(response.body.len()));
    }
}
