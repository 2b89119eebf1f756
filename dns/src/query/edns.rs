//! EDNS(0) (RFC 6891): the client's OPT record, and ours in the reply.

use super::MAX_UDP_PAYLOAD;
use crate::rdata::types;
use crate::wire::{Reader, WireError, Writer};

/// Bytes of our OPT record: root owner, type, class, TTL, empty rdata.
pub const OPT_LEN: usize = 11;
/// Bytes an Extended DNS Error option adds (RFC 8914 §2: code, length, info-code).
pub const EDE_LEN: usize = 6;
/// The EDNS option code of an Extended DNS Error (RFC 8914 §2).
const EDE: u16 = 15;

/// Extended DNS Error info-codes (RFC 8914 §4) we send with a REFUSED.
pub mod ede {
    /// A zone transfer, or a question about the server's identity (RFC 4892).
    pub const PROHIBITED: u16 = 18;
    /// A name outside our zones.
    pub const NOT_AUTHORITATIVE: u16 = 20;
    /// A class we do not serve.
    pub const NOT_SUPPORTED: u16 = 21;
}
/// The DO bit in the OPT TTL (RFC 3225).
const DO: u32 = 0x8000;

/// What the client's OPT record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The largest UDP reply the client takes (RFC 6891 §6.2.3).
    pub payload: u16,
    pub version: u8,
    dnssec_ok: bool,
}

impl Edns {
    /// Reads an OPT record's class, TTL and rdata; its options must fill the
    /// rdata exactly (RFC 6891 §6.1.2).
    pub fn parse(class: u16, ttl: u32, rdata: &[u8]) -> Result<Edns, WireError> {
        let mut r = Reader::new(rdata, 0);
        while !r.is_empty() {
            let _code = r.u16()?;
            let len = usize::from(r.u16()?);
            r.bytes(len)?;
        }
        Ok(Edns { payload: class, version: (ttl >> 16) as u8, dnssec_ok: ttl & DO != 0 })
    }

    /// Our OPT: our payload size, the upper 8 bits of `rcode`, version 0,
    /// DO copied (RFC 3225 §3), and an Extended DNS Error when given.
    pub fn emit(&self, w: &mut Writer, rcode: u16, error: Option<u16>) {
        w.u8(0);
        w.u16(types::OPT);
        w.u16(MAX_UDP_PAYLOAD);
        let extended = u32::from(rcode >> 4) << 24;
        w.u32(extended | if self.dnssec_ok { DO } else { 0 });
        match error {
            Some(code) => {
                w.u16(EDE_LEN as u16);
                w.u16(EDE);
                w.u16(2);
                w.u16(code);
            }
            None => w.u16(0),
        }
    }
}
