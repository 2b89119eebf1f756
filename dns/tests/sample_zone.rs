//! The zone apps/dns embeds loads, so the unikernel does not fail at boot
//! on it, and answers what the integration case `dns_answers_from_dom0` asks.

use mote_dns::{master, respond, Catalog, Transport};

const SAMPLE: &str = include_str!("../../apps/dns/zones/example.com.zone");

#[test]
fn sample_zone_loads_and_answers() {
    let zone = master::parse("example.com.zone", SAMPLE).unwrap();
    let catalog = Catalog::new(vec![zone]).unwrap();
    // www.example.com A, RD clear.
    let mut q = vec![0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
    let reply = respond(&catalog, &q, Transport::Udp).unwrap();
    assert_eq!(reply[2..4], [0x84, 0x00], "QR AA NOERROR");
    assert_eq!(reply[6..8], [0, 1], "one answer");
    assert_eq!(reply[reply.len() - 4..], [192, 0, 2, 80]);
}
