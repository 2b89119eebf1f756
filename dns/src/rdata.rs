//! Record types and their data: names inside rdata kept as [`Name`]s so that
//! they can be compressed (only for the RFC 1035 types, RFC 3597 §4) and
//! followed for additional-section processing.

use crate::name::Name;
use crate::wire::{Reader, WireError, Writer};
use alloc::vec::Vec;

/// Type codes (RFC 1035 §3.2.2, RFC 3596, RFC 2782, RFC 8659, RFC 6891).
pub mod types {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const OPT: u16 = 41;
    pub const CAA: u16 = 257;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const MAILB: u16 = 253;
    pub const MAILA: u16 = 254;
    pub const ANY: u16 = 255;
}

/// Classes (RFC 1035 §3.2.4, §3.2.5).
pub const CLASS_IN: u16 = 1;
pub const CLASS_CH: u16 = 3;
pub const CLASS_ANY: u16 = 255;

/// The mnemonics the master-file parser knows.
pub const MNEMONICS: &[(&str, u16)] = &[
    ("A", types::A),
    ("NS", types::NS),
    ("CNAME", types::CNAME),
    ("SOA", types::SOA),
    ("PTR", types::PTR),
    ("MX", types::MX),
    ("TXT", types::TXT),
    ("AAAA", types::AAAA),
    ("SRV", types::SRV),
    ("CAA", types::CAA),
];

/// Record data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// NS, CNAME, PTR: one name, compressible.
    Name(Name),
    Mx {
        preference: u16,
        exchange: Name,
    },
    Soa {
        mname: Name,
        rname: Name,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
    /// The target is never compressed (RFC 2782).
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: Name,
    },
    /// Every other type, A, AAAA, TXT and CAA included: the wire bytes.
    Opaque(Vec<u8>),
}

impl RData {
    /// Reads `len` bytes of rdata of type `rtype` (names in them uncompressed
    /// or compressed against `r`'s message), checking fixed sizes.
    pub fn parse(rtype: u16, r: &mut Reader<'_>, len: usize) -> Result<RData, WireError> {
        let end = r.at + len;
        let data = match rtype {
            types::NS | types::CNAME | types::PTR => RData::Name(r.name()?),
            types::MX => RData::Mx { preference: r.u16()?, exchange: r.name()? },
            types::SOA => RData::Soa {
                mname: r.name()?,
                rname: r.name()?,
                serial: r.u32()?,
                refresh: r.u32()?,
                retry: r.u32()?,
                expire: r.u32()?,
                minimum: r.u32()?,
            },
            types::SRV => {
                RData::Srv { priority: r.u16()?, weight: r.u16()?, port: r.u16()?, target: r.name()? }
            }
            types::A if len != 4 => return Err(WireError::BadRdata),
            types::AAAA if len != 16 => return Err(WireError::BadRdata),
            _ => RData::Opaque(r.bytes(len)?.to_vec()),
        };
        if r.at != end {
            return Err(WireError::BadRdata);
        }
        Ok(data)
    }

    pub fn emit(&self, w: &mut Writer) {
        match self {
            RData::Name(name) => w.name(name),
            RData::Mx { preference, exchange } => {
                w.u16(*preference);
                w.name(exchange);
            }
            RData::Soa { mname, rname, serial, refresh, retry, expire, minimum } => {
                w.name(mname);
                w.name(rname);
                for v in [serial, refresh, retry, expire, minimum] {
                    w.u32(*v);
                }
            }
            RData::Srv { priority, weight, port, target } => {
                w.u16(*priority);
                w.u16(*weight);
                w.u16(*port);
                w.name_uncompressed(target);
            }
            RData::Opaque(bytes) => w.bytes(bytes),
        }
    }

    /// The name whose addresses go into the additional section
    /// (RFC 1035 §3.3.9, §3.3.11; RFC 2782).
    pub fn additional_target(&self, rtype: u16) -> Option<&Name> {
        match (rtype, self) {
            (types::NS, RData::Name(n)) => Some(n),
            (_, RData::Mx { exchange, .. }) => Some(exchange),
            (_, RData::Srv { target, .. }) => Some(target),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sizes_are_checked() {
        assert!(RData::parse(types::A, &mut Reader::new(&[1, 2, 3], 0), 3).is_err());
        assert_eq!(
            RData::parse(types::A, &mut Reader::new(&[1, 2, 3, 4], 0), 4),
            Ok(RData::Opaque([1, 2, 3, 4].to_vec()))
        );
        // An MX whose name ends before its rdata length does.
        assert!(RData::parse(types::MX, &mut Reader::new(&[0, 1, 0, 9], 0), 4).is_err());
    }

    #[test]
    fn srv_target_is_not_compressed() {
        let target = Name::from_labels([&b"example"[..]]).unwrap();
        let mut w = Writer::new();
        w.name(&target);
        RData::Srv { priority: 1, weight: 2, port: 3, target: target.clone() }.emit(&mut w);
        assert_eq!(&w.finish().unwrap()[9 + 6..], target.wire());
    }
}
