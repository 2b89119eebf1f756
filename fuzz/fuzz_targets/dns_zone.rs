//! Any text as a zone master file: the parser returns a zone or an error, never panics. A
//! zone it returns makes a catalog that answers a query for its apex SOA.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mote_dns::rdata::{types, CLASS_IN};
use mote_dns::{master, respond, Catalog, Transport};

fuzz_target!(|text: &[u8]| {
    let Ok(zone) = master::parse("fuzz.zone", &String::from_utf8_lossy(text)) else { return };
    let mut query = vec![0xab, 0xcd, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(zone.origin().wire());
    query.extend_from_slice(&types::SOA.to_be_bytes());
    query.extend_from_slice(&CLASS_IN.to_be_bytes());
    let catalog = Catalog::new(vec![zone]).expect("one zone makes a catalog");
    let reply = respond(&catalog, &query, Transport::Tcp).expect("a query gets a reply");
    assert_eq!(reply[3] & 0xf, 0, "the apex SOA is answered with NOERROR");
    assert_eq!(reply[6..8], [0, 1], "one answer: the SOA");
});
