//! Memoized replies, so that a server answers the queries it has seen before
//! without allocating: a reply depends only on the question's name (without
//! case), type and class, the OPT record's payload size and DO bit, and the
//! transport, apart from the ID, RD and CD and the question's spelling, which
//! are copied from the query into the stored reply. Names in the reply that
//! end like the question point into it (the writer compresses against it
//! first), so they echo the new spelling too.

use crate::query::{try_respond, Transport};
use crate::zone::Catalog;
use crate::OutOfMemory;
use alloc::vec::Vec;

use crate::wire::{flags, HEADER_LEN};

/// Longest key: transport, payload, DO, type, class, and a 255-octet name.
const KEY_MAX: usize = 8 + 255;

/// The bytes of the question and OPT that decide a reply, lower-cased.
struct Key {
    bytes: [u8; KEY_MAX],
    len: usize,
    /// Where the question ends in the query (and in the reply).
    question_end: usize,
}

impl Key {
    /// The key of a query whose reply depends only on it: opcode QUERY, one
    /// uncompressed question, nothing else but an OPT record of version 0
    /// with well-formed options, and nothing after. Anything else (errors
    /// included) is answered afresh each time.
    fn of(query: &[u8], transport: Transport) -> Option<Key> {
        let header = query.get(..HEADER_LEN)?;
        let field = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
        let request_flags = field(2);
        let opcode_or_qr = flags::QR | 0xf << flags::OPCODE_SHIFT;
        if request_flags & opcode_or_qr != 0
            || field(4) != 1
            || field(6) != 0
            || field(8) != 0
            || field(10) > 1
        {
            return None;
        }
        let mut key = Key { bytes: [0; KEY_MAX], len: 8, question_end: 0 };
        key.bytes[0] = transport as u8;
        let mut at = HEADER_LEN;
        loop {
            let len = usize::from(*query.get(at)?);
            if len > 63 || at + 1 + len - HEADER_LEN > 255 {
                return None;
            }
            let label = query.get(at..at + 1 + len)?;
            for (k, b) in key.bytes[key.len..key.len + label.len()].iter_mut().zip(label) {
                *k = b.to_ascii_lowercase();
            }
            key.len += label.len();
            at += 1 + len;
            if len == 0 {
                break;
            }
        }
        key.bytes[4..8].copy_from_slice(query.get(at..at + 4)?);
        at += 4;
        key.question_end = at;
        if field(10) == 1 {
            // Root owner, type OPT, payload, extended rcode 0, version 0, flags, options.
            let opt = query.get(at..at + 11)?;
            if opt[..3] != [0, 0, 41] || opt[5..7] != [0, 0] {
                return None;
            }
            key.bytes[1..3].copy_from_slice(&opt[3..5]);
            key.bytes[3] = 1 | (opt[7] & 0x80);
            let end = at + 11 + usize::from(u16::from_be_bytes([opt[9], opt[10]]));
            at += 11;
            while at < end {
                let len = usize::from(u16::from_be_bytes([*query.get(at + 2)?, *query.get(at + 3)?]));
                at += 4 + len;
            }
            if at != end {
                return None;
            }
        }
        (at == query.len()).then_some(key)
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Answers queries from a catalog, remembering replies up to a byte budget
/// (past it, what was remembered is dropped and filled again). The replies sit
/// in a vector sorted by key: a miss's insert moves the entries after it (48
/// bytes each, their number bounded by the budget). Every allocation is
/// fallible: a query the heap has no room to answer gets [`OutOfMemory`] (and
/// is counted), and a reply it has no room to remember empties the memory,
/// which gives the heap back what it held.
pub struct Responder<'c> {
    catalog: &'c Catalog,
    replies: Vec<(Vec<u8>, Vec<u8>)>,
    bytes: usize,
    budget: usize,
    out_of_memory: u64,
}

impl<'c> Responder<'c> {
    /// A responder remembering at most `budget` bytes of keys and replies.
    pub fn new(catalog: &'c Catalog, budget: usize) -> Responder<'c> {
        Responder { catalog, replies: Vec::new(), bytes: 0, budget, out_of_memory: 0 }
    }

    /// Writes the reply to `query` into `out` (cleared first; its capacity
    /// is reused); false when the query gets no reply. A query answered
    /// before costs no allocation once `out` has grown to the reply's size.
    /// [`OutOfMemory`]: the heap had no room to answer; counted in
    /// [`Responder::out_of_memory`].
    pub fn respond_into(
        &mut self,
        query: &[u8],
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Result<bool, OutOfMemory> {
        let answered = self.answer_into(query, transport, out);
        if answered.is_err() {
            self.out_of_memory += 1;
        }
        answered
    }

    fn answer_into(
        &mut self,
        query: &[u8],
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Result<bool, OutOfMemory> {
        out.clear();
        let key = Key::of(query, transport);
        let found =
            key.as_ref().map(|key| (key, self.replies.binary_search_by(|(k, _)| k[..].cmp(key.bytes()))));
        if let Some((key, Ok(at))) = found {
            let reply = &self.replies[at].1;
            out.try_reserve(reply.len()).map_err(|_| OutOfMemory)?;
            out.extend_from_slice(reply);
            out[..2].copy_from_slice(&query[..2]);
            let echoed = flags::RD | flags::CD;
            let request_flags = u16::from_be_bytes([query[2], query[3]]) & echoed;
            let reply_flags = u16::from_be_bytes([reply[2], reply[3]]) & !echoed | request_flags;
            out[2..4].copy_from_slice(&reply_flags.to_be_bytes());
            out[HEADER_LEN..key.question_end].copy_from_slice(&query[HEADER_LEN..key.question_end]);
            return Ok(true);
        }
        let Some(reply) = try_respond(self.catalog, query, transport)? else { return Ok(false) };
        out.try_reserve(reply.len()).map_err(|_| OutOfMemory)?;
        out.extend_from_slice(&reply);
        if let Some((key, Err(_))) = found {
            self.remember(key.bytes(), reply);
        }
        Ok(true)
    }

    /// Keeps `reply` under `key`, within the budget; with no room in the heap,
    /// forgets everything instead.
    fn remember(&mut self, key: &[u8], reply: Vec<u8>) {
        let cost = key.len() + reply.len();
        if self.bytes + cost > self.budget {
            self.replies.clear();
            self.bytes = 0;
        }
        if cost > self.budget {
            return;
        }
        let mut owned = Vec::new();
        if owned.try_reserve_exact(key.len()).is_err() || self.replies.try_reserve(1).is_err() {
            self.replies = Vec::new();
            self.bytes = 0;
            return;
        }
        owned.extend_from_slice(key);
        // Not found before `try_respond`, and clearing keeps the order: the search gives the place.
        let at = self.replies.binary_search_by(|(k, _)| k[..].cmp(key)).unwrap_or_else(|at| at);
        self.replies.insert(at, (owned, reply));
        self.bytes += cost;
    }

    /// Bytes of keys and replies remembered.
    pub fn remembered(&self) -> usize {
        self.bytes
    }

    /// Queries left unanswered because the heap had no room.
    pub fn out_of_memory(&self) -> u64 {
        self.out_of_memory
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master;
    use crate::query::respond;

    fn catalog() -> Catalog {
        let zone = master::parse("t.zone", crate::query::tests::ZONE).unwrap();
        Catalog::new(alloc::vec![zone]).unwrap()
    }

    /// A query with this ID, flags, name spelling, type, and an optional OPT (payload, DO).
    fn query(id: u16, flag_bits: u16, name: &str, qtype: u16, opt: Option<(u16, bool)>) -> Vec<u8> {
        let mut q = Vec::new();
        q.extend_from_slice(&id.to_be_bytes());
        q.extend_from_slice(&flag_bits.to_be_bytes());
        q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(opt.is_some())]);
        for label in name.split('.').filter(|l| !l.is_empty()) {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
        if let Some((payload, dnssec_ok)) = opt {
            q.extend_from_slice(&[0, 0, 41]);
            q.extend_from_slice(&payload.to_be_bytes());
            q.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        }
        q
    }

    #[test]
    fn remembered_replies_equal_fresh_ones() {
        let catalog = catalog();
        let mut responder = Responder::new(&catalog, 1 << 20);
        let mut out = Vec::new();
        let names = [
            "www.example.com",
            "WWW.Example.COM",
            "x.y.wild.EXAMPLE.com",
            "A.sub.example.com",
            "chain.example.com",
            "nope.example.com",
            "example.org",
        ];
        for round in 0..2 {
            for (i, name) in names.iter().enumerate() {
                for qtype in [1, 15, 16, 28, 255] {
                    for opt in [None, Some((1232, false)), Some((512, true))] {
                        for flag_bits in [0, 0x0100, 0x0110] {
                            let q = query(i as u16 * 7 + round, flag_bits, name, qtype, opt);
                            assert_eq!(responder.respond_into(&q, Transport::Udp, &mut out), Ok(true));
                            let fresh = respond(&catalog, &q, Transport::Udp).unwrap();
                            assert_eq!(out, fresh, "{name} {qtype} {opt:?} {flag_bits:#x} round {round}");
                        }
                    }
                }
            }
        }
        assert!(responder.remembered() > 0);
    }

    #[test]
    fn only_plain_queries_are_remembered() {
        let catalog = catalog();
        let mut responder = Responder::new(&catalog, 1 << 20);
        let mut out = Vec::new();
        let plain = query(1, 0, "www.example.com", 1, None);
        let mut trailing = plain.clone();
        trailing.push(0);
        let mut status = plain.clone();
        status[2] = 0x10;
        let mut bad_opt = query(1, 0, "www.example.com", 1, Some((1232, false)));
        let len = bad_opt.len();
        bad_opt[len - 1] = 3;
        bad_opt.extend_from_slice(&[0, 1, 0]);
        let mut version1 = query(1, 0, "www.example.com", 1, Some((1232, false)));
        version1[len - 5] = 1;
        for q in [trailing, status, bad_opt, version1] {
            assert_eq!(responder.respond_into(&q, Transport::Udp, &mut out), Ok(true));
            assert_eq!(out, respond(&catalog, &q, Transport::Udp).unwrap());
            assert_eq!(responder.remembered(), 0, "{q:?}");
        }
        let mut response = plain.clone();
        response[2] = 0x80;
        assert_eq!(responder.respond_into(&response, Transport::Udp, &mut out), Ok(false));
    }

    #[test]
    fn the_budget_bounds_what_is_remembered() {
        let catalog = catalog();
        let mut responder = Responder::new(&catalog, 300);
        let mut out = Vec::new();
        for name in ["www.example.com", "ns1.example.com", "ns2.example.com", "mail.example.com"] {
            assert_eq!(
                responder.respond_into(&query(1, 0, name, 1, None), Transport::Udp, &mut out),
                Ok(true)
            );
            assert!(responder.remembered() <= 300);
        }
    }
}
