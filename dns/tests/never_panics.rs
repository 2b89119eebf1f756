//! Property test of the query path: valid queries, mutated byte by byte, and
//! random bytes never make `respond` panic or hang, and every reply is a
//! well-formed header with the query's ID within the transport's size limit.
//! The zone parser likewise never panics on mutated master files. (`cargo fuzz` targets are
//! the next step; these run with `cargo test`.)

use mote_dns::query::MAX_UDP_PAYLOAD;
use mote_dns::{master, respond, Catalog, Responder, Transport};

const ZONE: &str = r#"
$ORIGIN example.com.
$TTL 3600
@       SOA   ns1 hostmaster 1 7200 3600 1209600 300
        NS    ns1
        MX    10 mail
ns1     A     192.0.2.1
mail    A     192.0.2.3
www     A     192.0.2.10
        AAAA  2001:db8::10
        TXT   "one" "two"
alias   CNAME www
loop1   CNAME loop2
loop2   CNAME loop1
*.wild  TXT   "wildcard"
sub     NS    ns.sub
ns.sub  A     192.0.2.53
_s._tcp SRV   0 0 53 www
caa     CAA   0 issue "ca.example"
"#;

/// xorshift64*: deterministic, so a failure reproduces.
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
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if edns {
        q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 8, 0, 10, 0, 4, 1, 2, 3, 4]);
    }
    q
}

/// The replies to `input` are sane, and the responder's (remembered or not) equal `respond`'s.
fn check(catalog: &Catalog, responder: &mut Responder, input: &[u8]) {
    for (transport, limit) in [(Transport::Udp, usize::from(MAX_UDP_PAYLOAD)), (Transport::Tcp, 65535)] {
        let reply = respond(catalog, input, transport);
        let mut out = Vec::new();
        let answered = responder.respond_into(input, transport, &mut out);
        assert_eq!(answered.unwrap().then_some(&out), reply.as_ref(), "the responder's reply to {input:?}");
        if let Some(reply) = reply {
            assert!(reply.len() >= 12 && reply.len() <= limit, "reply of {} bytes to {input:?}", reply.len());
            assert_eq!(reply[..2], input[..2], "the ID is echoed");
            assert_ne!(reply[2] & 0x80, 0, "QR is set");
        }
    }
}

#[test]
fn mutated_and_random_queries_never_panic() {
    let catalog = Catalog::new(vec![master::parse("fuzz.zone", ZONE).unwrap()]).unwrap();
    let mut responder = Responder::new(&catalog, 256 * 1024);
    let mut corpus = Vec::new();
    for name in [
        "www.example.com",
        "alias.example.com",
        "loop1.example.com",
        "a.wild.example.com",
        "x.sub.example.com",
        "nope.example.com",
        "example.com",
        "www.example.org",
        "_s._tcp.example.com",
    ] {
        for qtype in [1, 2, 5, 6, 15, 16, 28, 33, 41, 255, 257, 65000] {
            corpus.push(query(name, qtype, false));
            corpus.push(query(name, qtype, true));
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..200_000 {
        let mut q = corpus[rng.below(corpus.len())].clone();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(q.len() + 1);
            match rng.below(6) {
                0 if at < q.len() => q[at] = rng.byte(),
                1 if at < q.len() => q[at] ^= 1 << rng.below(8),
                2 => q.truncate(at),
                3 => q.insert(at, rng.byte()),
                4 if at + 1 < q.len() => {
                    // A compression pointer to anywhere, loops included.
                    q[at] = 0xc0 | (rng.byte() & 0x3f);
                    q[at + 1] = rng.byte();
                }
                _ => {
                    let chunk: Vec<u8> = q[at.min(q.len())..].iter().take(rng.below(40)).copied().collect();
                    q.extend_from_slice(&chunk);
                }
            }
        }
        if q.len() >= 2 {
            check(&catalog, &mut responder, &q);
        }
    }
    for _ in 0..50_000 {
        let q: Vec<u8> = (0..2 + rng.below(600)).map(|_| rng.byte()).collect();
        check(&catalog, &mut responder, &q);
    }
}

#[test]
fn mutated_zone_files_never_panic() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let specials = b" \t\n;()\"\\.@$#*0123456789";
    for _ in 0..20_000 {
        let mut text = ZONE.as_bytes().to_vec();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(text.len());
            match rng.below(3) {
                0 => text[at] = specials[rng.below(specials.len())],
                1 => text.insert(at, rng.byte()),
                _ => {
                    text.remove(at);
                }
            }
        }
        let text = String::from_utf8_lossy(&text);
        if let Ok(zone) = master::parse("fuzz.zone", &text) {
            let catalog = Catalog::new(vec![zone]).unwrap();
            check(&catalog, &mut Responder::new(&catalog, 4096), &query("www.example.com", 1, true));
        }
    }
}
