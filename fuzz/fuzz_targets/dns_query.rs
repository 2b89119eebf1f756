//! Any bytes as a DNS query over UDP and over TCP, answered from the sample zone that
//! `apps/dns` serves. Every reply must echo the ID and opcode, have QR set, fit the
//! transport's limit, and parse back: the question, then each record counted in the header.
//! The `Responder` apps/dns answers UDP with (remembering replies across inputs) must reply
//! exactly as `respond` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mote_dns::query::MAX_UDP_PAYLOAD;
use mote_dns::rdata::RData;
use mote_dns::wire::{Packet, Question, Reader, HEADER_LEN};
use mote_dns::{master, respond, Catalog, Responder, Transport};
use std::cell::RefCell;
use std::sync::LazyLock;

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let text = include_str!("../../apps/dns/zones/example.com.zone");
    let zone = master::parse("example.com.zone", text).expect("the sample zone loads");
    Catalog::new(vec![zone]).expect("one zone makes a catalog")
});

thread_local! {
    static RESPONDER: RefCell<Responder<'static>> = RefCell::new(Responder::new(&CATALOG, 64 * 1024));
}

fuzz_target!(|query: &[u8]| {
    let unanswerable = query.len() < HEADER_LEN || query[2] & 0x80 != 0;
    for (transport, limit) in [(Transport::Udp, usize::from(MAX_UDP_PAYLOAD)), (Transport::Tcp, 65535)] {
        let reply = respond(&CATALOG, query, transport);
        assert_eq!(reply.is_none(), unanswerable, "only short messages and responses go unanswered");
        let mut out = Vec::new();
        let answered = RESPONDER.with_borrow_mut(|r| r.respond_into(query, transport, &mut out));
        assert_eq!(answered.unwrap().then_some(&out), reply.as_ref(), "the responder replies as respond does");
        let Some(reply) = reply else { continue };
        assert!(
            reply.len() >= HEADER_LEN && reply.len() <= limit,
            "{transport:?} reply of {} bytes",
            reply.len()
        );
        assert_eq!(reply[..2], query[..2], "the ID is echoed");
        assert_eq!(reply[2] & 0xf8, 0x80 | (query[2] & 0x78), "QR is set and the opcode echoed");
        reparse(&reply);
    }
});

/// The reply reads back as a message whose header counts match its sections.
fn reparse(reply: &[u8]) {
    let packet = Packet::new_checked(reply).unwrap();
    let mut r = Reader::new(reply, HEADER_LEN);
    assert!(packet.qdcount() <= 1);
    if packet.qdcount() == 1 {
        Question::parse(&mut r).expect("the question reads back");
    }
    let records = u32::from(packet.ancount()) + u32::from(packet.nscount()) + u32::from(packet.arcount());
    for _ in 0..records {
        r.name().expect("an owner name reads back");
        let (rtype, _class, _ttl, len) =
            (r.u16().unwrap(), r.u16().unwrap(), r.u32().unwrap(), r.u16().unwrap());
        RData::parse(rtype, &mut r, usize::from(len)).expect("record data reads back, RDLENGTH long");
    }
    assert!(r.is_empty(), "no bytes after the counted records");
}
