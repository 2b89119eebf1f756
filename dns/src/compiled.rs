//! Zones compiled at build time: a zone loaded from its master file on the host (apps/dns's
//! build script) is written as its names and RRsets in wire form, and read back in the
//! guest without the master-file parser, whose errors then come at build time instead. The
//! form is this crate's own (no compatibility across versions: the build writes and the same
//! build reads it):
//!
//! ```text
//! zone   = MAGIC origin nodes:u32 node*
//! node   = name rrsets:u16 rrset*            names in key order, each once, ENTs included
//! rrset  = type:u16 ttl:u32 rdatas:u16 (length:u16 rdata)*
//! ```
//!
//! Names are uncompressed wire names, so every spelling comes back as loaded; integers are
//! big-endian; rdata is as on the wire, read back with the message reader's checks.

use crate::name::Name;
use crate::rdata::RData;
use crate::wire::{Reader, WireError, Writer};
use crate::zone::{Node, RRset, Zone};
use crate::OutOfMemory;
use alloc::vec::Vec;
use core::fmt;

/// What a compiled zone starts with.
const MAGIC: &[u8; 4] = b"mdz1";

/// Why bytes are not a compiled zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledError {
    /// The byte where reading stopped.
    pub at: usize,
    pub problem: &'static str,
}

impl core::error::Error for CompiledError {}

impl fmt::Display for CompiledError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "compiled zone: {} at byte {}", self.problem, self.at)
    }
}

/// `zone` in compiled form; [`OutOfMemory`] when the heap has no room for it.
pub fn write(zone: &Zone) -> Result<Vec<u8>, OutOfMemory> {
    let mut w = Writer::uncompressed();
    w.bytes(MAGIC);
    w.name(zone.origin());
    w.u32(zone.nodes().count() as u32);
    for node in zone.nodes() {
        w.name(&node.name);
        w.u16(node.rrsets.len() as u16);
        for set in &node.rrsets {
            w.u16(set.rtype);
            w.u32(set.ttl);
            w.u16(set.rdatas.len() as u16);
            for rdata in &set.rdatas {
                let length_at = w.len();
                w.u16(0);
                rdata.emit(&mut w);
                w.set_u16(length_at, (w.len() - length_at - 2) as u16);
            }
        }
    }
    w.finish()
}

/// The zone `bytes` hold, as [`write()`] wrote it.
pub fn read(bytes: &[u8]) -> Result<Zone, CompiledError> {
    let mut r = Reader::new(bytes, 0);
    read_from(&mut r).map_err(|problem| CompiledError { at: r.at, problem })
}

fn read_from(r: &mut Reader<'_>) -> Result<Zone, &'static str> {
    let bad = |_: WireError| "truncated or malformed";
    if r.bytes(MAGIC.len()).ok() != Some(&MAGIC[..]) {
        return Err("no compiled zone here");
    }
    let mut zone = Zone::new(r.name().map_err(bad)?);
    for _ in 0..r.u32().map_err(bad)? {
        let name: Name = r.name().map_err(bad)?;
        let sets = r.u16().map_err(bad)?;
        let mut rrsets = Vec::with_capacity(usize::from(sets));
        for _ in 0..sets {
            let (rtype, ttl, count) = (r.u16().map_err(bad)?, r.u32().map_err(bad)?, r.u16().map_err(bad)?);
            let mut rdatas = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                let len = r.u16().map_err(bad)?;
                rdatas.push(RData::parse(rtype, r, usize::from(len)).map_err(bad)?);
            }
            rrsets.push(RRset { rtype, ttl, rdatas });
        }
        zone.append(Node { name, rrsets }).map_err(|e| match e {
            Some(_) => "a name outside the zone",
            None => "names out of order",
        })?;
    }
    if !r.is_empty() {
        return Err("bytes after the zone");
    }
    Ok(zone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master;
    use alloc::format;
    use alloc::string::ToString;

    const TEXT: &str = "$ORIGIN Example.\n$TTL 300\n\
        @ IN SOA ns1.Example. HostMaster.example. 1 7200 3600 1209600 300\n\
        @ NS ns1\n@ MX 10 Mail\nns1 A 192.0.2.1\nmail AAAA 2001:db8::25\n\
        a.B.c TXT \"one\" \"two\"\n*.w CNAME www\nwww 60 A 192.0.2.80\nwww 60 A 192.0.2.81\n\
        _sip._tcp SRV 1 2 5060 sip\nsip CAA 0 issue \"ca.example\"\nx TYPE65534 \\# 3 010203\n\
        sub NS ns.sub\nns.sub A 192.0.2.53\n";

    /// Every node, RRset and rdata, the names' spelling included.
    fn dump(zone: &Zone) -> Vec<alloc::string::String> {
        zone.nodes()
            .flat_map(|node| {
                let wire = format!("{:?}", node.name.wire());
                let sets: Vec<_> =
                    node.rrsets.iter().map(|s| format!("{} {} {:?}", s.rtype, s.ttl, s.rdatas)).collect();
                core::iter::once(format!("{wire} {}", node.name)).chain(sets)
            })
            .collect()
    }

    #[test]
    fn a_zone_comes_back_as_loaded() {
        let zone = master::parse("t.zone", TEXT).unwrap();
        let compiled = write(&zone).unwrap();
        let back = read(&compiled).unwrap();
        assert_eq!(back.origin().wire(), zone.origin().wire());
        assert_eq!(dump(&back), dump(&zone));
        assert!(
            dump(&zone).iter().any(|l| l.ends_with(" B.c.Example.")),
            "the empty non-terminal kept its spelling"
        );
        assert!(dump(&zone).iter().any(|l| l.contains("HostMaster")), "rdata names are not compressed");
    }

    #[test]
    fn damaged_bytes_are_errors_not_zones() {
        let compiled = write(&master::parse("t.zone", TEXT).unwrap()).unwrap();
        assert_eq!(read(b"mdz0").unwrap_err().problem, "no compiled zone here");
        for len in 0..compiled.len() {
            assert!(read(&compiled[..len]).is_err(), "cut at {len}");
        }
        let mut longer = compiled.clone();
        longer.push(0);
        assert_eq!(read(&longer).unwrap_err().problem, "bytes after the zone");
        // An A record of 5 octets.
        let mut w = Writer::uncompressed();
        w.bytes(MAGIC);
        let origin = Name::from_labels([&b"example"[..]]).unwrap();
        w.name(&origin);
        w.u32(1);
        w.name(&origin);
        w.u16(1);
        for v in [1, 0] {
            w.u16(v);
        }
        w.u16(60);
        w.u16(1);
        w.u16(5);
        w.bytes(&[1, 2, 3, 4, 5]);
        assert_eq!(read(&w.finish().unwrap()).unwrap_err().problem, "truncated or malformed");
        assert_eq!(RData::parse(1, &mut Reader::new(&[1, 2, 3, 4, 5], 0), 5), Err(WireError::BadRdata));
    }

    #[test]
    fn names_must_be_in_order_and_in_the_zone() {
        let origin = Name::from_labels([&b"example"[..]]).unwrap();
        let compiled = |names: &[&str]| {
            let mut w = Writer::uncompressed();
            w.bytes(MAGIC);
            w.name(&origin);
            w.u32(names.len() as u32);
            for n in names {
                w.name(&Name::from_labels(n.split('.').map(str::as_bytes)).unwrap());
                w.u16(0);
            }
            w.finish().unwrap()
        };
        // Key order is that of the lower-cased wire form: a shorter first label comes first.
        assert!(read(&compiled(&["a.example", "example"])).is_ok());
        assert_eq!(read(&compiled(&["example", "a.example"])).unwrap_err().problem, "names out of order");
        assert_eq!(read(&compiled(&["a.example", "A.example"])).unwrap_err().problem, "names out of order");
        assert_eq!(
            read(&compiled(&["example", "outside-the-zone"])).unwrap_err().problem,
            "a name outside the zone"
        );
        assert_eq!(read(&compiled(&["example"])).unwrap().origin().to_string(), "example.");
    }
}
