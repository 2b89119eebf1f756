//! Zone data: the names of a zone with their RRsets, empty non-terminals
//! included (RFC 4592 §2.2.2), and the set of zones a server answers for.
//!
//! A [`Zone`] is read-only once built: its names in a vector sorted by key
//! (a `LiteMap`), found by binary search. Records in any order go through a
//! [`Builder`], which keeps them in a B-tree until [`Builder::finish`]; a
//! compiled zone, whose names come in order, is appended to directly, so an
//! image that only loads compiled zones carries no B-tree code.

use crate::name::{Name, MAX_NAME};
use crate::rdata::{types, RData};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use litemap::LiteMap;

/// The records of one owner name and type (RFC 2181 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RRset {
    pub rtype: u16,
    pub ttl: u32,
    pub rdatas: Vec<RData>,
}

/// A name of the zone: its spelling as loaded and its RRsets (none for an
/// empty non-terminal).
#[derive(Debug, Clone)]
pub struct Node {
    pub name: Name,
    pub rrsets: Vec<RRset>,
}

impl Node {
    pub fn rrset(&self, rtype: u16) -> Option<&RRset> {
        self.rrsets.iter().find(|s| s.rtype == rtype)
    }
}

/// Why data does not make a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneError {
    OutOfZone(Name),
    CnameAndOtherData(Name),
    NoSoa,
    SoaNotAtApex(Name),
    SecondSoa,
    DuplicateZone(Name),
}

impl core::error::Error for ZoneError {}

impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZoneError::OutOfZone(n) => write!(f, "{n} is outside the zone"),
            ZoneError::CnameAndOtherData(n) => write!(f, "{n} has a CNAME and other data (RFC 1034 §3.6.2)"),
            ZoneError::NoSoa => f.write_str("no SOA record at the zone apex"),
            ZoneError::SoaNotAtApex(n) => write!(f, "SOA record at {n}, not at the zone apex"),
            ZoneError::SecondSoa => f.write_str("a second, different SOA record: a zone has exactly one"),
            ZoneError::DuplicateZone(n) => write!(f, "zone {n} is loaded twice"),
        }
    }
}

/// One zone.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    /// By [`Name::key`], in its order.
    nodes: LiteMap<Vec<u8>, Node>,
}

/// A zone being loaded, its records in any order.
#[derive(Debug, Clone)]
pub struct Builder {
    origin: Name,
    nodes: BTreeMap<Vec<u8>, Node>,
}

impl Builder {
    pub fn new(origin: Name) -> Builder {
        Builder { origin, nodes: BTreeMap::new() }
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The zone, not validated yet (see [`Zone::validate`]).
    pub fn finish(self) -> Zone {
        let mut nodes = LiteMap::with_capacity(self.nodes.len());
        for (key, node) in self.nodes {
            // A B-tree's keys come in order: each one appends.
            let _ = nodes.try_append(key, node);
        }
        Zone { origin: self.origin, nodes }
    }

    /// Adds a record; identical records are kept once (RFC 2181 §5), and an
    /// RRset keeps the TTL of its first record (RFC 2181 §5.2).
    pub fn add(&mut self, owner: Name, rtype: u16, ttl: u32, rdata: RData) -> Result<(), ZoneError> {
        if !owner.is_subdomain_of(&self.origin) {
            return Err(ZoneError::OutOfZone(owner));
        }
        if rtype == types::SOA && owner != self.origin {
            return Err(ZoneError::SoaNotAtApex(owner));
        }
        let mut at = owner.clone();
        while at != self.origin {
            let parent = at.parent().expect("below the origin");
            self.nodes.entry(at.key()).or_insert_with(|| Node { name: at.clone(), rrsets: Vec::new() });
            at = parent;
        }
        let node =
            self.nodes.entry(owner.key()).or_insert_with(|| Node { name: owner.clone(), rrsets: Vec::new() });
        let cname = |t: u16| t == types::CNAME;
        if node.rrsets.iter().any(|s| cname(s.rtype) != cname(rtype)) {
            return Err(ZoneError::CnameAndOtherData(owner));
        }
        match node.rrsets.iter_mut().find(|s| s.rtype == rtype) {
            Some(set) if rtype == types::SOA && !set.rdatas.contains(&rdata) => {
                return Err(ZoneError::SecondSoa)
            }
            Some(set) if !set.rdatas.contains(&rdata) => set.rdatas.push(rdata),
            Some(_) => {}
            None => node.rrsets.push(RRset { rtype, ttl, rdatas: alloc::vec![rdata] }),
        }
        Ok(())
    }
}

impl Zone {
    /// A zone with no names yet, filled by [`Zone::append`].
    pub(crate) fn new(origin: Name) -> Zone {
        Zone { origin, nodes: LiteMap::new() }
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// Checks what a zone needs to be served: an SOA at the apex.
    pub fn validate(&self) -> Result<(), ZoneError> {
        self.apex().and_then(|n| n.rrset(types::SOA)).map(drop).ok_or(ZoneError::NoSoa)
    }

    /// Every name of the zone, empty non-terminals included, in key order.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// Adds a whole node after the others, as a compiled zone lists them: it must be in the
    /// zone and come after them in key order (`Err(None)` when not).
    pub(crate) fn append(&mut self, node: Node) -> Result<(), Option<ZoneError>> {
        if !node.name.is_subdomain_of(&self.origin) {
            return Err(Some(ZoneError::OutOfZone(node.name)));
        }
        match self.nodes.try_append(node.name.key(), node) {
            None => Ok(()),
            Some(_) => Err(None),
        }
    }

    pub fn node(&self, name: &Name) -> Option<&Node> {
        self.node_by_wire(name.wire())
    }

    /// The node of the name `wire` in wire form (at most [`MAX_NAME`] octets), looked up
    /// without allocating.
    pub fn node_by_wire(&self, wire: &[u8]) -> Option<&Node> {
        let mut key = [0u8; MAX_NAME];
        let key = key.get_mut(..wire.len())?;
        for (k, b) in key.iter_mut().zip(wire) {
            *k = b.to_ascii_lowercase();
        }
        self.nodes.get(&key[..])
    }

    pub fn apex(&self) -> Option<&Node> {
        self.node(&self.origin)
    }

    /// The SOA RRset (present in a validated zone).
    pub fn soa(&self) -> Option<&RRset> {
        self.apex()?.rrset(types::SOA)
    }
}

/// The zones a server is authoritative for.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    zones: Vec<Zone>,
}

impl Catalog {
    /// The zones, each validated; fails on the first bad or repeated one.
    pub fn new(zones: Vec<Zone>) -> Result<Catalog, (String, ZoneError)> {
        for (i, zone) in zones.iter().enumerate() {
            zone.validate().map_err(|e| (alloc::format!("{}", zone.origin), e))?;
            if zones[..i].iter().any(|z| z.origin == zone.origin) {
                return Err((
                    alloc::format!("{}", zone.origin),
                    ZoneError::DuplicateZone(zone.origin.clone()),
                ));
            }
        }
        Ok(Catalog { zones })
    }

    /// The zone with the closest origin at or above `name`.
    pub fn find(&self, name: &Name) -> Option<&Zone> {
        self.zones.iter().filter(|z| name.is_subdomain_of(&z.origin)).max_by_key(|z| z.origin.label_count())
    }

    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_labels(s.split('.').map(str::as_bytes)).unwrap()
    }

    #[test]
    fn empty_non_terminals_exist() {
        let mut z = Builder::new(name("example"));
        z.add(name("a.b.c.example"), types::A, 60, RData::Opaque([1, 2, 3, 4].to_vec())).unwrap();
        let z = z.finish();
        assert!(z.node(&name("b.c.example")).unwrap().rrsets.is_empty());
        assert!(z.node(&name("C.example")).is_some());
        assert!(z.node(&name("d.example")).is_none());
    }

    #[test]
    fn cname_excludes_other_data() {
        let mut z = Builder::new(name("example"));
        z.add(name("a.example"), types::CNAME, 60, RData::Name(name("b.example"))).unwrap();
        let err = z.add(name("a.example"), types::A, 60, RData::Opaque([1, 2, 3, 4].to_vec()));
        assert_eq!(err, Err(ZoneError::CnameAndOtherData(name("a.example"))));
        assert!(z.add(name("x.other"), types::A, 60, RData::Opaque([1, 2, 3, 4].to_vec())).is_err());
    }

    #[test]
    fn duplicates_are_kept_once() {
        let mut z = Builder::new(name("example"));
        for _ in 0..2 {
            z.add(name("a.example"), types::A, 60, RData::Opaque([1, 2, 3, 4].to_vec())).unwrap();
        }
        let z = z.finish();
        assert_eq!(z.node(&name("a.example")).unwrap().rrsets[0].rdatas.len(), 1);
        assert_eq!(z.validate(), Err(ZoneError::NoSoa));
    }

    #[test]
    fn names_are_found_without_case_in_key_order() {
        let mut z = Builder::new(name("example"));
        for n in ["zz.example", "a.example", "B.example", "mail.example"] {
            z.add(name(n), types::A, 60, RData::Opaque([1, 2, 3, 4].to_vec())).unwrap();
        }
        let z = z.finish();
        let keys: Vec<Vec<u8>> = z.nodes().map(|n| n.name.key()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(z.node(&name("b.EXAMPLE")).unwrap().name.wire(), name("B.example").wire());
        assert!(z.node(&name("c.example")).is_none());
    }

    #[test]
    fn closest_zone_wins() {
        let soa = || RData::Soa {
            mname: Name::root(),
            rname: Name::root(),
            serial: 1,
            refresh: 2,
            retry: 3,
            expire: 4,
            minimum: 5,
        };
        let mut outer = Builder::new(name("example"));
        outer.add(name("example"), types::SOA, 60, soa()).unwrap();
        let mut inner = Builder::new(name("sub.example"));
        inner.add(name("sub.example"), types::SOA, 60, soa()).unwrap();
        let catalog = Catalog::new(alloc::vec![outer.finish(), inner.finish()]).unwrap();
        assert_eq!(catalog.find(&name("a.sub.example")).unwrap().origin(), &name("sub.example"));
        assert_eq!(catalog.find(&name("a.example")).unwrap().origin(), &name("example"));
        assert!(catalog.find(&name("example.org")).is_none());
    }

    #[test]
    fn one_soa_per_zone() {
        let soa = |serial| RData::Soa {
            mname: Name::root(),
            rname: Name::root(),
            serial,
            refresh: 2,
            retry: 3,
            expire: 4,
            minimum: 5,
        };
        let mut z = Builder::new(name("example"));
        z.add(name("example"), types::SOA, 60, soa(1)).unwrap();
        z.add(name("example"), types::SOA, 60, soa(1)).unwrap();
        assert_eq!(z.add(name("example"), types::SOA, 60, soa(2)), Err(ZoneError::SecondSoa));
        assert_eq!(z.finish().soa().unwrap().rdatas.len(), 1);
    }
}
