//! RFC 1034 §4.3.2 inside one zone: exact matches, CNAME chains, referrals
//! at delegations, wildcards (RFC 4592), and negative answers with the SOA
//! (RFC 2308).

use super::rcode;
use crate::name::{Name, MAX_NAME};
use crate::rdata::{types, RData};
use crate::zone::{Node, RRset, Zone};
use crate::{try_push, OutOfMemory};
use alloc::vec::Vec;

/// Longest CNAME chain followed (a loop ends sooner: a name is never visited twice).
const MAX_CHAIN: usize = 8;

/// An RRset as it goes into a reply; its owner is the query's name or one of the zone's.
#[derive(Debug)]
pub struct Rr<'z> {
    pub owner: &'z Name,
    pub rtype: u16,
    pub ttl: u32,
    pub rdatas: &'z [RData],
    /// Addresses of a referral's name server at or below the cut: a reply
    /// without them is incomplete (RFC 9471 §3).
    pub in_domain_glue: bool,
}

impl<'z> Rr<'z> {
    fn new(owner: &'z Name, set: &'z RRset) -> Rr<'z> {
        Rr { owner, rtype: set.rtype, ttl: set.ttl, rdatas: &set.rdatas, in_domain_glue: false }
    }
}

/// The outcome of resolution: the reply's rcode, AA and sections.
#[derive(Debug, Default)]
pub struct Answer<'z> {
    pub rcode: u16,
    pub authoritative: bool,
    pub answer: Vec<Rr<'z>>,
    pub authority: Vec<Rr<'z>>,
    pub additional: Vec<Rr<'z>>,
}

impl Answer<'_> {
    /// An answer that is only an rcode.
    pub fn rcode(rcode: u16) -> Answer<'static> {
        Answer { rcode, ..Answer::default() }
    }
}

/// Where a name leads in the zone.
enum Found<'z> {
    /// The node answering for the name (itself, or the wildcard that covers it).
    Node(&'z Node),
    /// A delegation at or above the name: the node holding the NS RRset.
    Cut(&'z Node),
    /// No such name (RFC 4592 §4.1: no closest-encloser wildcard either).
    Missing,
}

/// Answers `qtype` at `qname`, which is in `zone`; the only allocations are
/// the sections' vectors, and [`OutOfMemory`] when the heap has no room for them.
pub fn resolve<'z>(zone: &'z Zone, qname: &'z Name, qtype: u16) -> Result<Answer<'z>, OutOfMemory> {
    let mut answer = Answer { authoritative: true, ..Answer::default() };
    let mut name = qname;
    for _ in 0..MAX_CHAIN {
        let node = match find(zone, name) {
            Found::Cut(cut) => {
                referral(zone, cut, &mut answer)?;
                return Ok(answer);
            }
            Found::Missing => {
                answer.rcode = rcode::NXDOMAIN;
                negative(zone, &mut answer)?;
                return Ok(answer);
            }
            Found::Node(node) => node,
        };
        // RFC 8482 §4.2: ANY gets one RRset, not all of them.
        let wanted = if qtype == types::ANY { node.rrsets.first() } else { node.rrset(qtype) };
        if let Some(set) = wanted {
            // Minimal responses: the additional section has only the
            // addresses of name servers (of an NS answer, or a referral).
            try_push(&mut answer.answer, Rr::new(name, set))?;
            if set.rtype == types::NS {
                glue(zone, set, None, &mut answer)?;
            }
            return Ok(answer);
        }
        let Some(cname) = node.rrset(types::CNAME) else {
            negative(zone, &mut answer)?;
            return Ok(answer);
        };
        try_push(&mut answer.answer, Rr::new(name, cname))?;
        let Some(RData::Name(target)) = cname.rdatas.first() else {
            return Ok(answer);
        };
        let seen = answer.answer.iter().any(|rr| rr.owner == target);
        if seen || !target.is_subdomain_of(zone.origin()) {
            return Ok(answer);
        }
        name = target;
    }
    Ok(answer)
}

/// Walks down from the apex to `name`, stopping at a zone cut.
fn find<'z>(zone: &'z Zone, name: &Name) -> Found<'z> {
    let Some(mut closest) = zone.apex() else {
        return Found::Missing;
    };
    let below = name.label_count() - zone.origin().label_count();
    for up in (0..below).rev() {
        match zone.node_by_wire(name.suffix(up)) {
            Some(node) if node.rrset(types::NS).is_some() => return Found::Cut(node),
            Some(node) => closest = node,
            None => {
                // `*.closest`, built on the stack; none when it would be too long.
                let mut wildcard = [0u8; MAX_NAME + 2];
                let closest_wire = closest.name.wire();
                wildcard[..2].copy_from_slice(b"\x01*");
                wildcard[2..2 + closest_wire.len()].copy_from_slice(closest_wire);
                let len = 2 + closest_wire.len();
                let node = (len <= MAX_NAME).then(|| zone.node_by_wire(&wildcard[..len])).flatten();
                return node.map_or(Found::Missing, Found::Node);
            }
        }
    }
    Found::Node(closest)
}

/// A referral (RFC 1034 §4.3.2 step 3b): AA clear unless the answer
/// section already has our data, the cut's NS RRset, and glue.
fn referral<'z>(zone: &'z Zone, cut: &'z Node, answer: &mut Answer<'z>) -> Result<(), OutOfMemory> {
    let Some(ns) = cut.rrset(types::NS) else { return Ok(()) };
    answer.authoritative = !answer.answer.is_empty();
    try_push(&mut answer.authority, Rr::new(&cut.name, ns))?;
    glue(zone, ns, Some(&cut.name), answer)
}

/// NXDOMAIN or NODATA: the SOA in the authority section, its TTL the
/// lesser of its own and its MINIMUM (RFC 2308 §3).
fn negative<'z>(zone: &'z Zone, answer: &mut Answer<'z>) -> Result<(), OutOfMemory> {
    let Some(soa) = zone.soa() else { return Ok(()) };
    let minimum = match soa.rdatas.first() {
        Some(RData::Soa { minimum, .. }) => *minimum,
        _ => soa.ttl,
    };
    let mut rr = Rr::new(zone.origin(), soa);
    rr.ttl = rr.ttl.min(minimum);
    try_push(&mut answer.authority, rr)
}

/// Addresses of the name servers of an NS RRset, when the zone has them
/// (RFC 1034 §4.3.2 step 3b for referrals; glue below a cut included).
/// Those at or below `cut`, a referral's, are marked in-domain glue.
fn glue<'z>(
    zone: &'z Zone,
    set: &'z RRset,
    cut: Option<&Name>,
    answer: &mut Answer<'z>,
) -> Result<(), OutOfMemory> {
    for target in set.rdatas.iter().filter_map(|r| r.additional_target(set.rtype)) {
        let Some(node) = zone.node(target) else { continue };
        let in_domain_glue = cut.is_some_and(|cut| target.is_subdomain_of(cut));
        for rtype in [types::A, types::AAAA] {
            let Some(addresses) = node.rrset(rtype) else { continue };
            let present = |rr: &Rr<'_>| rr.rtype == rtype && rr.owner == target;
            if !answer.additional.iter().any(present) && !answer.answer.iter().any(present) {
                try_push(&mut answer.additional, Rr { in_domain_glue, ..Rr::new(&node.name, addresses) })?;
            }
        }
    }
    Ok(())
}
