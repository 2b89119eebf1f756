//! Domain names (RFC 1035 §3.1) in uncompressed wire form, compared without
//! regard to ASCII case (RFC 4343).

use crate::OutOfMemory;
use alloc::vec::Vec;
use core::fmt;

/// Longest name in wire form, terminal root label included (RFC 1035 §2.3.4).
pub const MAX_NAME: usize = 255;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL: usize = 63;

/// A fully qualified name: length-prefixed labels ending with the root label.
#[derive(Clone)]
pub struct Name(Vec<u8>);

/// Why a name cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    EmptyLabel,
    LabelTooLong,
    NameTooLong,
}

impl core::error::Error for NameError {}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::EmptyLabel => "empty label",
            NameError::LabelTooLong => "label longer than 63 octets",
            NameError::NameTooLong => "name longer than 255 octets",
        })
    }
}

impl Name {
    pub fn root() -> Name {
        Name(alloc::vec![0])
    }

    /// Builds a name from its labels, leftmost first (the root label left out).
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a [u8]>) -> Result<Name, NameError> {
        let mut wire = Vec::new();
        for label in labels {
            match label.len() {
                0 => return Err(NameError::EmptyLabel),
                n if n > MAX_LABEL => return Err(NameError::LabelTooLong),
                n => wire.push(n as u8),
            }
            wire.extend_from_slice(label);
        }
        wire.push(0);
        if wire.len() > MAX_NAME {
            return Err(NameError::NameTooLong);
        }
        Ok(Name(wire))
    }

    /// A name from wire-form labels a reader has checked: each label 1 to 63
    /// octets (the length octet's top bits clear), a root label last, 255
    /// octets at most.
    pub(crate) fn from_wire(wire: Vec<u8>) -> Name {
        debug_assert!(wire.len() <= MAX_NAME && wire.last() == Some(&0));
        Name(wire)
    }

    /// [`Name::from_wire`] of a copy of `wire`, or [`OutOfMemory`] when the heap has no room.
    pub(crate) fn try_from_wire(wire: &[u8]) -> Result<Name, OutOfMemory> {
        let mut copy = Vec::new();
        copy.try_reserve_exact(wire.len()).map_err(|_| OutOfMemory)?;
        copy.extend_from_slice(wire);
        Ok(Name::from_wire(copy))
    }

    /// The name in uncompressed wire form.
    pub fn wire(&self) -> &[u8] {
        &self.0
    }

    /// The labels, leftmost first, without the root label.
    pub fn labels(&self) -> Labels<'_> {
        Labels(&self.0)
    }

    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    pub fn is_root(&self) -> bool {
        self.0.len() == 1
    }

    /// The name without its leftmost label; `None` for the root.
    pub fn parent(&self) -> Option<Name> {
        let first = *self.0.first()? as usize;
        (first > 0).then(|| Name(self.0[1 + first..].to_vec()))
    }

    /// `label.self`.
    pub fn prepend(&self, label: &[u8]) -> Result<Name, NameError> {
        Name::from_labels(core::iter::once(label).chain(self.labels()))
    }

    /// `self` followed by `origin` (for a relative name).
    pub fn append(&self, origin: &Name) -> Result<Name, NameError> {
        Name::from_labels(self.labels().chain(origin.labels()))
    }

    /// Whether `self` is `other` or below it.
    pub fn is_subdomain_of(&self, other: &Name) -> bool {
        self.0.len() >= other.0.len()
            && self
                .suffix(self.label_count().wrapping_sub(other.label_count()))
                .eq_ignore_ascii_case(&other.0)
    }

    /// The ancestor `n` labels up (`self` for 0); the root if `n` is too large.
    pub fn ancestor(&self, n: usize) -> Name {
        Name(self.suffix(n).to_vec())
    }

    /// The wire form of [`Name::ancestor`]`(n)`, without copying it.
    pub fn suffix(&self, n: usize) -> &[u8] {
        let mut at = 0;
        for _ in 0..n {
            match self.0[at] {
                0 => break,
                len => at += 1 + len as usize,
            }
        }
        &self.0[at..]
    }

    /// Whether the leftmost label is `*` (RFC 4592 §2.1.1).
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with(b"\x01*")
    }

    /// The key names are compared and stored by: the wire form in lower case.
    pub fn key(&self) -> Vec<u8> {
        self.0.to_ascii_lowercase()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for Name {}

/// Iterator over a name's labels.
pub struct Labels<'a>(&'a [u8]);

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let len = *self.0.first()? as usize;
        if len == 0 {
            return None;
        }
        let label = &self.0[1..1 + len];
        self.0 = &self.0[1 + len..];
        Some(label)
    }
}

/// Presentation format (RFC 1035 §5.1): `.` and `\` escaped, other
/// non-printable octets as `\DDD`.
impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str(".");
        }
        for label in self.labels() {
            for &b in label {
                match b {
                    b'.' | b'\\' | b'"' | b'(' | b')' | b';' => write!(f, "\\{}", b as char)?,
                    0x21..=0x7e => write!(f, "{}", b as char)?,
                    _ => write!(f, "\\{b:03}")?,
                }
            }
            f.write_str(".")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn name(labels: &[&str]) -> Name {
        Name::from_labels(labels.iter().map(|l| l.as_bytes())).unwrap()
    }

    #[test]
    fn compares_without_case() {
        assert_eq!(name(&["WWW", "Example", "com"]), name(&["www", "example", "COM"]));
        assert_ne!(name(&["www", "example"]), name(&["ww", "example"]));
        assert_eq!(name(&["A"]).key(), name(&["a"]).key());
    }

    #[test]
    fn ancestry() {
        let n = name(&["a", "b", "example", "com"]);
        let zone = name(&["EXAMPLE", "com"]);
        assert!(n.is_subdomain_of(&zone));
        assert!(zone.is_subdomain_of(&zone));
        assert!(!zone.is_subdomain_of(&n));
        assert!(!name(&["xexample", "com"]).is_subdomain_of(&zone));
        assert!(n.is_subdomain_of(&Name::root()));
        assert_eq!(n.parent().unwrap(), name(&["b", "example", "com"]));
        assert_eq!(n.ancestor(2), zone);
        assert_eq!(Name::root().parent(), None);
    }

    #[test]
    fn limits() {
        let long = [b'a'; 64];
        assert_eq!(Name::from_labels([&long[..]]), Err(NameError::LabelTooLong));
        assert_eq!(Name::from_labels([&b""[..]]), Err(NameError::EmptyLabel));
        let label = [b'a'; 63];
        assert_eq!(Name::from_labels([&label[..]; 4]), Err(NameError::NameTooLong));
        assert!(Name::from_labels([&label[..], &label[..], &label[..], &label[..61]]).is_ok());
    }

    #[test]
    fn presentation() {
        assert_eq!(name(&["a.b", "x y"]).to_string(), "a\\.b.x\\032y.");
        assert_eq!(Name::root().to_string(), ".");
        assert!(name(&["*", "example"]).is_wildcard());
    }
}
