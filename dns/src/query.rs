//! Answering a query (RFC 1034 §4.3.2) from a [`Catalog`]: validation of
//! the request, EDNS(0) (RFC 6891), resolution in `resolve`, and the
//! reply's size limit with TC (RFC 1035 §4.2.1, RFC 2181 §9, RFC 9471 §3).

mod edns;
mod resolve;

use crate::name::{Name, MAX_NAME};
use crate::rdata::{types, CLASS_ANY, CLASS_CH, CLASS_IN};
use crate::wire::{flags, Packet, Question, Reader, WireError, Writer, HEADER_LEN};
use crate::zone::Catalog;
use crate::OutOfMemory;
use alloc::vec::Vec;
use edns::{ede, Edns};
use resolve::{Answer, Rr};

/// Response codes (RFC 1035 §4.1.1, RFC 6891 §9 for BADVERS).
pub mod rcode {
    pub const NOERROR: u16 = 0;
    pub const FORMERR: u16 = 1;
    pub const NXDOMAIN: u16 = 3;
    pub const NOTIMP: u16 = 4;
    pub const REFUSED: u16 = 5;
    pub const BADVERS: u16 = 16;
}

/// What the query came over; it sets the reply's size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Largest UDP reply we send whatever the client offers: the DNS flag day
/// 2020 value, which avoids IP fragmentation.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// The limit without EDNS (RFC 1035 §4.2.1).
const CLASSIC_UDP_PAYLOAD: usize = 512;

/// The reply to `query`, or `None` for what must not be answered: a
/// message too short for a header, or a response (QR set). Running out of
/// memory panics, as for any `Vec`: a server uses [`try_respond`].
pub fn respond(catalog: &Catalog, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
    try_respond(catalog, query, transport).expect("out of memory answering a query")
}

/// [`respond`], with [`OutOfMemory`] when the heap has no room for what the
/// reply needs: the question's name, the lists of RRsets and the reply's
/// bytes, each allocated fallibly.
pub fn try_respond(
    catalog: &Catalog,
    query: &[u8],
    transport: Transport,
) -> Result<Option<Vec<u8>>, OutOfMemory> {
    let Ok(packet) = Packet::new_checked(query) else { return Ok(None) };
    if packet.flags() & flags::QR != 0 {
        return Ok(None);
    }
    let reply = Reply::new(&packet);
    let mut name = [0u8; MAX_NAME];
    let sections = read_sections(&packet, &mut name);
    if packet.opcode() != 0 {
        // RFC 6891 §7: a valid OPT in the request gets one in the reply, whatever the opcode.
        let edns = sections.ok().and_then(|(_, edns)| edns);
        return Reply { edns, ..reply }.bare(rcode::NOTIMP).map(Some);
    }
    // A query has exactly one question and no answer records.
    let (Ok((Some((name_len, qtype, qclass)), edns)), 1, 0) = (sections, packet.qdcount(), packet.ancount())
    else {
        return reply.bare(rcode::FORMERR).map(Some);
    };
    let question = Question { name: Name::try_from_wire(&name[..name_len])?, qtype, qclass };
    let limit = match (transport, &edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => CLASSIC_UDP_PAYLOAD,
        (Transport::Udp, Some(e)) => usize::from(e.payload.clamp(512, MAX_UDP_PAYLOAD)),
    };
    let reply = Reply { edns, limit, ..reply };
    if reply.edns.as_ref().is_some_and(|e| e.version != 0) {
        return reply.finish(&question, rcode::BADVERS, &Answer::default(), None).map(Some);
    }
    let refused = |error| (Answer::rcode(rcode::REFUSED), Some(error));
    let (answer, error) = match (question.qclass, question.qtype) {
        // RFC 5936 §4.2: AXFR is defined over TCP only.
        (CLASS_IN | CLASS_ANY, types::AXFR) if transport == Transport::Udp => {
            (Answer::rcode(rcode::NOTIMP), None)
        }
        (CLASS_IN | CLASS_ANY, types::AXFR | types::IXFR) => refused(ede::PROHIBITED),
        (CLASS_IN | CLASS_ANY, _) => match catalog.find(&question.name) {
            Some(zone) => {
                let mut answer = resolve::resolve(zone, &question.name, question.qtype)?;
                // QCLASS * (RFC 1035 §3.2.5) is answered from our IN data, but
                // not authoritatively: other classes may hold more.
                answer.authoritative &= question.qclass == CLASS_IN;
                (answer, None)
            }
            None => refused(ede::NOT_AUTHORITATIVE),
        },
        (CLASS_CH, types::TXT) if is_identity_query(&question.name) => refused(ede::PROHIBITED),
        _ => refused(ede::NOT_SUPPORTED),
    };
    reply.finish(&question, answer.rcode, &answer, error).map(Some)
}

/// The CHAOS-class names that ask for the server's version or identity
/// (RFC 4892 §2.3), which we do not tell.
fn is_identity_query(name: &Name) -> bool {
    const KNOWN: [&[u8]; 4] = [
        b"\x07version\x04bind\0",
        b"\x07version\x06server\0",
        b"\x08hostname\x04bind\0",
        b"\x02id\x06server\0",
    ];
    KNOWN.iter().any(|known| name.wire().eq_ignore_ascii_case(known))
}

/// A question read into a name buffer: the name's length, then type and class.
type QuestionAt = (usize, u16, u16);

/// What a message's sections hold for us: its first question (the name into `name`: its
/// length, then type and class) and its OPT record; or why it is malformed (FORMERR): a
/// question or record that does not parse, or an OPT out of the additional section, owned by
/// another name than the root or not the only one (RFC 6891 §6.1.1). Later questions, which a
/// query must not have, are read over `name`.
fn read_sections(
    packet: &Packet<&[u8]>,
    name: &mut [u8; MAX_NAME],
) -> Result<(Option<QuestionAt>, Option<Edns>), WireError> {
    let mut r = Reader::new(packet.bytes(), HEADER_LEN);
    let mut first = None;
    for _ in 0..packet.qdcount() {
        let name_len = r.name_into(name)?;
        let question = (name_len, r.u16()?, r.u16()?);
        first.get_or_insert(question);
    }
    let before_additional = u32::from(packet.ancount()) + u32::from(packet.nscount());
    let mut edns = None;
    let mut owner = [0u8; MAX_NAME];
    for i in 0..before_additional + u32::from(packet.arcount()) {
        let owner_len = r.name_into(&mut owner)?;
        let (rtype, class, ttl, len) = (r.u16()?, r.u16()?, r.u32()?, usize::from(r.u16()?));
        let rdata = r.bytes(len)?;
        if rtype == types::OPT {
            // The root name is one zero octet.
            if i < before_additional || edns.is_some() || owner_len != 1 {
                return Err(WireError::Malformed);
            }
            edns = Some(Edns::parse(class, ttl, rdata)?);
        }
    }
    Ok((first, edns))
}

/// The parts of the reply known before resolution.
struct Reply {
    id: u16,
    /// Opcode, RD and CD as the query had them (RFC 1035 §4.1.1, RFC 4035 §3.1.6).
    echoed_flags: u16,
    edns: Option<Edns>,
    limit: usize,
}

impl Reply {
    fn new(packet: &Packet<&[u8]>) -> Reply {
        let echoed_flags = packet.flags() & (0xf << flags::OPCODE_SHIFT | flags::RD | flags::CD);
        Reply { id: packet.id(), echoed_flags, edns: None, limit: CLASSIC_UDP_PAYLOAD }
    }

    fn header(&self, w: &mut Writer, rcode: u16) {
        w.u16(self.id);
        w.u16(flags::QR | self.echoed_flags | (rcode & 0xf));
        w.bytes(&[0; 8]);
    }

    /// A header alone, for a query whose question cannot be trusted, and
    /// our OPT when the query's was read.
    fn bare(&self, rcode: u16) -> Result<Vec<u8>, OutOfMemory> {
        let mut w = Writer::new();
        self.header(&mut w, rcode);
        if let Some(edns) = &self.edns {
            edns.emit(&mut w, rcode, None);
            w.set_u16(10, 1);
        }
        w.finish()
    }

    /// The full reply: question, sections as far as they fit, OPT (with the
    /// Extended DNS Error `error` when the query had EDNS, RFC 8914 §3).
    fn finish(
        &self,
        question: &Question,
        rcode: u16,
        answer: &Answer<'_>,
        error: Option<u16>,
    ) -> Result<Vec<u8>, OutOfMemory> {
        let mut w = Writer::new();
        self.header(&mut w, rcode);
        w.name(&question.name);
        w.u16(question.qtype);
        w.u16(question.qclass);
        w.set_u16(4, 1);
        let opt_len = edns::OPT_LEN + if error.is_some() { edns::EDE_LEN } else { 0 };
        let room = self.limit - if self.edns.is_some() { opt_len } else { 0 };
        let mut truncated = false;
        let mut counts = [0u16; 3];
        // RRsets go in whole or not at all; one missing from the answer or
        // authority section sets TC, one missing from the additional does
        // not unless it is a referral's in-domain glue (RFC 9471 §3).
        let sections = [&answer.answer, &answer.authority, &answer.additional];
        'sections: for (i, section) in sections.into_iter().enumerate() {
            for rr in section {
                let before = w.len();
                let n = emit(&mut w, rr);
                if w.len() <= room {
                    counts[i] += n;
                    continue;
                }
                w.truncate(before);
                truncated |= i < 2 || rr.in_domain_glue;
                if i < 2 {
                    break 'sections;
                }
            }
        }
        let mut header_flags = flags::QR | self.echoed_flags | (rcode & 0xf);
        if answer.authoritative {
            header_flags |= flags::AA;
        }
        if truncated {
            header_flags |= flags::TC;
        }
        w.set_u16(2, header_flags);
        if let Some(edns) = &self.edns {
            edns.emit(&mut w, rcode, error);
            counts[2] += 1;
        }
        for (i, count) in counts.into_iter().enumerate() {
            w.set_u16(6 + 2 * i, count);
        }
        w.finish()
    }
}

/// Writes an RRset; returns its number of records.
fn emit(w: &mut Writer, rr: &Rr<'_>) -> u16 {
    for rdata in rr.rdatas {
        w.name(rr.owner);
        w.u16(rr.rtype);
        w.u16(CLASS_IN);
        w.u32(rr.ttl);
        let len_at = w.len();
        w.u16(0);
        rdata.emit(w);
        // Short of the field itself only when a write found no room (`finish` says so).
        let len = w.len().saturating_sub(len_at + 2);
        w.set_u16(len_at, len as u16);
    }
    rr.rdatas.len() as u16
}

#[cfg(test)]
pub(crate) mod tests;
