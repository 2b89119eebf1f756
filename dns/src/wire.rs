//! The message format (RFC 1035 §4.1): a checked [`Packet`] view over the
//! header, name decompression with loop and bounds protection, and a
//! [`Writer`] that compresses names on output (RFC 1035 §4.1.4).

use crate::name::{Name, MAX_NAME};
use crate::OutOfMemory;
use alloc::vec::Vec;

pub const HEADER_LEN: usize = 12;

/// Why a message cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The message ends inside a field.
    Truncated,
    /// A compression pointer that does not point strictly backwards.
    BadPointer,
    /// A label type other than 00 (normal) or 11 (pointer), RFC 6891 §5.
    BadLabel,
    /// A name longer than 255 octets.
    NameTooLong,
    /// Record data whose length does not match its type's fields.
    BadRdata,
    /// Well-formed fields that make no valid message (RFC 1035 §4.1).
    Malformed,
}

/// Header flags (RFC 1035 §4.1.1, RFC 4035 §3.2 for AD/CD).
pub mod flags {
    pub const QR: u16 = 0x8000;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const CD: u16 = 0x0010;
    pub const OPCODE_SHIFT: u16 = 11;
}

/// A message whose header is known to be complete.
pub struct Packet<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Packet(buffer))
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.0.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    pub fn id(&self) -> u16 {
        self.u16_at(0)
    }
    pub fn flags(&self) -> u16 {
        self.u16_at(2)
    }
    pub fn opcode(&self) -> u8 {
        ((self.flags() >> flags::OPCODE_SHIFT) & 0xf) as u8
    }
    pub fn qdcount(&self) -> u16 {
        self.u16_at(4)
    }
    pub fn ancount(&self) -> u16 {
        self.u16_at(6)
    }
    pub fn nscount(&self) -> u16 {
        self.u16_at(8)
    }
    pub fn arcount(&self) -> u16 {
        self.u16_at(10)
    }
    pub fn bytes(&self) -> &[u8] {
        self.0.as_ref()
    }
}

/// A cursor reading fields of a message.
pub struct Reader<'a> {
    msg: &'a [u8],
    pub at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(msg: &'a [u8], at: usize) -> Reader<'a> {
        Reader { msg, at }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let out = self.msg.get(self.at..self.at.checked_add(n).ok_or(WireError::Truncated)?);
        let out = out.ok_or(WireError::Truncated)?;
        self.at += n;
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn is_empty(&self) -> bool {
        self.at >= self.msg.len()
    }

    /// A possibly compressed name. Every pointer must point before the label
    /// it replaces, so a chain of them always ends; the result is bounded by
    /// [`MAX_NAME`].
    pub fn name(&mut self) -> Result<Name, WireError> {
        let mut wire = [0u8; MAX_NAME];
        let len = self.name_into(&mut wire)?;
        Ok(Name::from_wire(wire[..len].to_vec()))
    }

    /// [`Reader::name`] into `wire`, without allocating: its length in wire form.
    pub fn name_into(&mut self, wire: &mut [u8; MAX_NAME]) -> Result<usize, WireError> {
        let mut len_out = 0;
        let mut at = self.at;
        let mut resume = None;
        loop {
            let len = *self.msg.get(at).ok_or(WireError::Truncated)?;
            match len & 0xc0 {
                0x00 => {
                    let label = self.msg.get(at..at + 1 + len as usize).ok_or(WireError::Truncated)?;
                    let out = wire.get_mut(len_out..len_out + label.len()).ok_or(WireError::NameTooLong)?;
                    out.copy_from_slice(label);
                    len_out += label.len();
                    at += 1 + len as usize;
                    if len == 0 {
                        break;
                    }
                }
                0xc0 => {
                    let low = *self.msg.get(at + 1).ok_or(WireError::Truncated)?;
                    let target = (usize::from(len & 0x3f) << 8) | usize::from(low);
                    if target >= at {
                        return Err(WireError::BadPointer);
                    }
                    resume.get_or_insert(at + 2);
                    at = target;
                }
                _ => return Err(WireError::BadLabel),
            }
        }
        self.at = resume.unwrap_or(at);
        Ok(len_out)
    }
}

/// A question (RFC 1035 §4.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: Name,
    pub qtype: u16,
    pub qclass: u16,
}

impl Question {
    pub fn parse(r: &mut Reader<'_>) -> Result<Question, WireError> {
        Ok(Question { name: r.name()?, qtype: r.u16()?, qclass: r.u16()? })
    }
}

/// Builds a message; names may be compressed against names written before.
/// It allocates fallibly: once the heap has had no room for a write, that and
/// every later write are dropped and [`Writer::finish`] says [`OutOfMemory`].
pub struct Writer {
    buf: Vec<u8>,
    /// Where each name suffix written in full starts, for compression pointers.
    names: Vec<u16>,
    out_of_memory: bool,
    /// Whether [`Writer::name`] compresses (not for [`Writer::uncompressed`]).
    compress: bool,
}

/// Offsets above this cannot be the target of a pointer (14 bits).
const MAX_POINTER: usize = 0x3fff;
/// Bytes the buffer takes at its first write: most replies fit.
const FIRST_CAPACITY: usize = 512;

impl Writer {
    /// A writer; it allocates at its first write.
    pub fn new() -> Writer {
        Writer { buf: Vec::new(), names: Vec::new(), out_of_memory: false, compress: true }
    }

    /// A writer that never compresses, so every name keeps its own spelling (a compressed
    /// name takes the case of the one it points to): for a compiled zone.
    pub fn uncompressed() -> Writer {
        Writer { compress: false, ..Writer::new() }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Cuts the message back to `len` bytes (forgetting names written after).
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
        self.names.retain(|&offset| usize::from(offset) < len);
    }

    pub fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        if self.out_of_memory {
            return;
        }
        if self.buf.capacity() - self.buf.len() < b.len()
            && self.buf.try_reserve(b.len().max(FIRST_CAPACITY)).is_err()
        {
            self.out_of_memory = true;
            return;
        }
        self.buf.extend_from_slice(b);
    }

    /// Overwrites the 16-bit field at `at` (a field lost to a failed write stays lost).
    pub fn set_u16(&mut self, at: usize, v: u16) {
        match self.buf.get_mut(at..at + 2) {
            Some(field) => field.copy_from_slice(&v.to_be_bytes()),
            None => debug_assert!(self.out_of_memory, "field at {at} of a {}-byte message", self.buf.len()),
        }
    }

    /// A name, its longest suffix already in the message replaced by a
    /// pointer (matched without case, so the first spelling wins).
    pub fn name(&mut self, name: &Name) {
        if !self.compress {
            return self.name_uncompressed(name);
        }
        let wire = name.wire();
        let mut at = 0;
        while wire[at] != 0 {
            if let Some(&offset) = self.names.iter().find(|&&o| self.spells(usize::from(o), &wire[at..])) {
                self.u16(0xc000 | offset);
                return;
            }
            if self.buf.len() <= MAX_POINTER && !self.out_of_memory {
                if self.names.try_reserve(1).is_err() {
                    self.out_of_memory = true;
                    return;
                }
                self.names.push(self.buf.len() as u16);
            }
            let end = at + 1 + wire[at] as usize;
            self.bytes(&wire[at..end]);
            at = end;
        }
        self.u8(0);
    }

    /// Whether the name written at `offset` (its labels, then a pointer or the
    /// root) is `wire` without regard to case.
    fn spells(&self, mut offset: usize, mut wire: &[u8]) -> bool {
        loop {
            let Some(&len) = self.buf.get(offset) else { return false };
            if len & 0xc0 == 0xc0 {
                let Some(&low) = self.buf.get(offset + 1) else { return false };
                // Pointers we wrote point backwards, so this ends.
                offset = usize::from(len & 0x3f) << 8 | usize::from(low);
                continue;
            }
            let end = offset + 1 + usize::from(len);
            let (Some(written), Some(wanted)) = (self.buf.get(offset..end), wire.get(..end - offset)) else {
                return false;
            };
            if !written.eq_ignore_ascii_case(wanted) {
                return false;
            }
            if len == 0 {
                return true;
            }
            wire = &wire[end - offset..];
            offset = end;
        }
    }

    /// A name never compressed (RFC 3597 §4: rdata of types not in RFC 1035).
    pub fn name_uncompressed(&mut self, name: &Name) {
        self.bytes(name.wire());
    }

    /// The message, or [`OutOfMemory`] when a write found no room.
    pub fn finish(self) -> Result<Vec<u8>, OutOfMemory> {
        if self.out_of_memory {
            return Err(OutOfMemory);
        }
        Ok(self.buf)
    }
}

impl Default for Writer {
    fn default() -> Writer {
        Writer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn name(s: &str) -> Name {
        Name::from_labels(s.split('.').map(str::as_bytes)).unwrap()
    }

    #[test]
    fn header_needs_12_bytes() {
        assert!(Packet::new_checked(&[0u8; 11][..]).is_err());
        let p = Packet::new_checked(&[0x12, 0x34, 0x29, 0x00, 0, 1, 0, 2, 0, 3, 0, 4][..]).unwrap();
        assert_eq!(
            (p.id(), p.opcode(), p.qdcount(), p.ancount(), p.nscount(), p.arcount()),
            (0x1234, 5, 1, 2, 3, 4)
        );
    }

    #[test]
    fn compression_round_trip() {
        let mut w = Writer::new();
        w.bytes(&[0; HEADER_LEN]);
        w.name(&name("www.Example.com"));
        w.name(&name("mail.example.COM"));
        w.name(&name("example.com"));
        let msg = w.finish().unwrap();
        // www.Example.com (17) + mail + pointer (7) + pointer (2)
        assert_eq!(msg.len(), HEADER_LEN + 17 + 7 + 2);
        let mut r = Reader::new(&msg, HEADER_LEN);
        assert_eq!(r.name().unwrap().to_string(), "www.Example.com.");
        let second = r.name().unwrap();
        assert_eq!(second.wire(), name("mail.Example.com").wire(), "the first spelling is reused");
        assert_eq!(r.name().unwrap(), name("example.com"));
        assert!(r.is_empty());
    }

    #[test]
    fn pointer_loops_and_bounds_are_rejected() {
        let mut msg = [0u8; HEADER_LEN + 2].to_vec();
        msg[HEADER_LEN..].copy_from_slice(&[0xc0, HEADER_LEN as u8]);
        assert_eq!(Reader::new(&msg, HEADER_LEN).name(), Err(WireError::BadPointer));
        let forward = [0xc0, 0x20];
        assert_eq!(Reader::new(&forward, 0).name(), Err(WireError::BadPointer));
        assert_eq!(Reader::new(&[3, b'a', b'b'], 0).name(), Err(WireError::Truncated));
        assert_eq!(Reader::new(&[0x40, 0], 0).name(), Err(WireError::BadLabel));
        assert_eq!(Reader::new(&[0xc0], 0).name(), Err(WireError::Truncated));
    }

    #[test]
    fn long_names_through_pointers_are_rejected() {
        // 5 labels of 63 octets reached by pointers chaining backwards.
        let mut msg = Vec::new();
        msg.push(63);
        msg.extend_from_slice(&[b'a'; 63]);
        msg.push(0);
        for i in 0..4 {
            let prev = if i == 0 { 0 } else { 65 + (i - 1) * 66 };
            msg.push(63);
            msg.extend_from_slice(&[b'a'; 63]);
            msg.extend_from_slice(&[0xc0, prev as u8]);
        }
        let last = 65 + 3 * 66;
        assert_eq!(Reader::new(&msg, last).name(), Err(WireError::NameTooLong));
    }
}
