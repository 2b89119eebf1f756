//! Zone master files (RFC 1035 §5): `$ORIGIN`, `$TTL` (RFC 2308 §4), `@`,
//! relative names, parentheses, comments, quoted strings, `\X` and `\DDD`
//! escapes, and RFC 3597 `TYPEnnn`/`\#` for any type. The first record
//! must be the SOA; its owner is the zone's origin, and the initial
//! `$ORIGIN` for the names after it unless the file sets one. Errors name the file,
//! the line and the problem.

use crate::name::Name;
use crate::rdata::{types, RData, CLASS_IN, MNEMONICS};
use crate::wire::Reader;
use crate::zone::{Builder, Zone};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};

/// A zone file that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterError {
    pub file: String,
    pub line: usize,
    pub problem: String,
}

impl core::error::Error for MasterError {}

impl fmt::Display for MasterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.problem)
    }
}

/// A token: its raw text (escapes not yet decoded) and whether it was quoted.
struct Token<'a> {
    text: &'a str,
    quoted: bool,
}

/// One entry: its tokens, the line it starts on, and whether it started
/// with blank space (then its owner is the previous one's).
struct Entry<'a> {
    line: usize,
    blank_owner: bool,
    tokens: Vec<Token<'a>>,
}

/// Splits the text into entries, joining lines inside parentheses.
fn entries(text: &str) -> Result<Vec<Entry<'_>>, (usize, String)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut line, mut depth, mut i) = (1, 0usize, 0);
    let mut current: Option<Entry<'_>> = None;
    let mut at_line_start = true;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\n' => {
                if depth == 0 {
                    out.extend(current.take().filter(|e| !e.tokens.is_empty()));
                }
                line += 1;
                at_line_start = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b';' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth = depth.checked_sub(1).ok_or((line, String::from("')' without '('")))?;
                i += 1;
            }
            _ => {
                let start_line = line;
                let (token, end) = if b == b'"' {
                    let mut j = i + 1;
                    while j < bytes.len() && bytes[j] != b'"' {
                        if bytes[j] == b'\n' {
                            line += 1;
                        }
                        j += if bytes[j] == b'\\' { 2 } else { 1 };
                    }
                    while !text.is_char_boundary(j.min(bytes.len())) {
                        j += 1;
                    }
                    if j >= bytes.len() {
                        return Err((start_line, String::from("quoted string without its closing '\"'")));
                    }
                    (Token { text: &text[i + 1..j], quoted: true }, j + 1)
                } else {
                    let mut j = i;
                    while j < bytes.len() && !b" \t\r\n;()\"".contains(&bytes[j]) {
                        j += if bytes[j] == b'\\' { 2 } else { 1 };
                    }
                    let mut j = j.min(bytes.len());
                    while !text.is_char_boundary(j) {
                        j += 1;
                    }
                    (Token { text: &text[i..j], quoted: false }, j)
                };
                let entry = current.get_or_insert_with(|| Entry {
                    line: start_line,
                    blank_owner: !at_line_start,
                    tokens: Vec::new(),
                });
                entry.tokens.push(token);
                i = end;
            }
        }
        at_line_start = false;
    }
    if depth > 0 {
        return Err((line, String::from("'(' without ')' before the end of the file")));
    }
    out.extend(current.filter(|e| !e.tokens.is_empty()));
    Ok(out)
}

/// Decodes `\X` and `\DDD` escapes.
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1..i + 4) {
            Some(d) if d.iter().all(u8::is_ascii_digit) => {
                let v = d.iter().fold(0u32, |v, c| v * 10 + u32::from(c - b'0'));
                out.push(
                    u8::try_from(v).map_err(|_| format!("escape \\{} is above 255", &text[i + 1..i + 4]))?,
                );
                i += 4;
            }
            _ => {
                out.push(*b.get(i + 1).ok_or("a '\\' ends the text")?);
                i += 2;
            }
        }
    }
    Ok(out)
}

/// A name relative to `origin` unless it ends with an unescaped dot; `@` is the origin.
fn parse_name(text: &str, origin: &Name) -> Result<Name, String> {
    if text == "@" {
        return Ok(origin.clone());
    }
    if text == "." {
        return Ok(Name::root());
    }
    let b = text.as_bytes();
    let mut labels: Vec<Vec<u8>> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut absolute = false;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'.' => {
                labels.push(unescape(&text[start..i])?);
                start = i + 1;
                i += 1;
                absolute = i == b.len();
            }
            _ => i += 1,
        }
    }
    if !absolute {
        labels.push(unescape(&text[start..])?);
    }
    let name =
        Name::from_labels(labels.iter().map(Vec::as_slice)).map_err(|e| format!("bad name {text:?}: {e}"))?;
    if absolute {
        Ok(name)
    } else {
        name.append(origin).map_err(|e| format!("bad name {text:?}: {e}"))
    }
}

/// A TTL in seconds, or with BIND's units (`1h30m`); at most 2^31 - 1 (RFC 2181 §8).
fn parse_ttl(text: &str) -> Option<u32> {
    if !text.as_bytes().first()?.is_ascii_digit() {
        return None;
    }
    let (mut total, mut n, mut digits) = (0u64, 0u64, false);
    for c in text.bytes() {
        if c.is_ascii_digit() {
            n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            digits = true;
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            b's' => 1,
            b'm' => 60,
            b'h' => 3600,
            b'd' => 86400,
            b'w' => 604800,
            _ => return None,
        };
        if !digits {
            return None;
        }
        total = total.checked_add(n.checked_mul(unit)?)?;
        (n, digits) = (0, false);
    }
    let all_digits = text.bytes().all(|c| c.is_ascii_digit());
    if digits && !all_digits {
        return None;
    }
    u32::try_from(total + n).ok().filter(|&t| t <= i32::MAX as u32)
}

fn parse_type(text: &str) -> Option<u16> {
    let upper = text.to_ascii_uppercase();
    MNEMONICS
        .iter()
        .find(|(m, _)| *m == upper)
        .map(|(_, t)| *t)
        .or_else(|| upper.strip_prefix("TYPE")?.parse().ok())
}

fn parse_class(text: &str) -> Option<u16> {
    let upper = text.to_ascii_uppercase();
    match upper.as_str() {
        "IN" => Some(CLASS_IN),
        "CS" => Some(2),
        "CH" => Some(3),
        "HS" => Some(4),
        _ => upper.strip_prefix("CLASS")?.parse().ok(),
    }
}

fn number<T: core::str::FromStr>(token: Option<&Token<'_>>, what: &str) -> Result<T, String> {
    let text = token.ok_or(format!("missing {what}"))?.text;
    text.parse().map_err(|_| format!("bad {what} {text:?}"))
}

fn name_at(tokens: &[Token<'_>], i: usize, what: &str, origin: &Name) -> Result<Name, String> {
    parse_name(tokens.get(i).ok_or(format!("missing {what}"))?.text, origin)
}

/// A character-string (RFC 1035 §3.3): at most 255 octets.
fn character_string(token: &Token<'_>) -> Result<Vec<u8>, String> {
    let s = unescape(token.text)?;
    if s.len() > 255 {
        return Err(format!("string of {} octets, longer than 255", s.len()));
    }
    Ok(s)
}

/// The rdata of one record, from its tokens.
fn parse_rdata(rtype: u16, tokens: &[Token<'_>], origin: &Name) -> Result<RData, String> {
    if tokens.first().is_some_and(|t| !t.quoted && t.text == "\\#") {
        return parse_generic(rtype, &tokens[1..]);
    }
    let expect = |n: usize| {
        if tokens.len() == n {
            Ok(())
        } else {
            Err(format!("expected {n} rdata fields, found {}", tokens.len()))
        }
    };
    let data = match rtype {
        types::A => {
            expect(1)?;
            let a: Ipv4Addr =
                tokens[0].text.parse().map_err(|_| format!("bad IPv4 address {:?}", tokens[0].text))?;
            RData::Opaque(a.octets().to_vec())
        }
        types::AAAA => {
            expect(1)?;
            let a: Ipv6Addr =
                tokens[0].text.parse().map_err(|_| format!("bad IPv6 address {:?}", tokens[0].text))?;
            RData::Opaque(a.octets().to_vec())
        }
        types::NS | types::CNAME | types::PTR => {
            expect(1)?;
            RData::Name(name_at(tokens, 0, "name", origin)?)
        }
        types::MX => {
            expect(2)?;
            RData::Mx {
                preference: number(tokens.first(), "preference")?,
                exchange: name_at(tokens, 1, "exchange", origin)?,
            }
        }
        types::SRV => {
            expect(4)?;
            RData::Srv {
                priority: number(tokens.first(), "priority")?,
                weight: number(tokens.get(1), "weight")?,
                port: number(tokens.get(2), "port")?,
                target: name_at(tokens, 3, "target", origin)?,
            }
        }
        types::SOA => {
            expect(7)?;
            let time = |i: usize, what: &str| {
                parse_ttl(tokens[i].text).ok_or_else(|| format!("bad SOA {what} {:?}", tokens[i].text))
            };
            RData::Soa {
                mname: name_at(tokens, 0, "MNAME", origin)?,
                rname: name_at(tokens, 1, "RNAME", origin)?,
                serial: number(tokens.get(2), "serial")?,
                refresh: time(3, "refresh")?,
                retry: time(4, "retry")?,
                expire: time(5, "expire")?,
                minimum: time(6, "minimum")?,
            }
        }
        types::TXT => {
            if tokens.is_empty() {
                return Err(String::from("TXT needs at least one string"));
            }
            let mut wire = Vec::new();
            for token in tokens {
                let s = character_string(token)?;
                wire.push(s.len() as u8);
                wire.extend_from_slice(&s);
            }
            RData::Opaque(wire)
        }
        types::CAA => {
            expect(3)?;
            let flags: u8 = number(tokens.first(), "CAA flags")?;
            let tag = tokens[1].text.as_bytes();
            if tag.is_empty() || tag.len() > 15 || !tag.iter().all(u8::is_ascii_alphanumeric) {
                return Err(format!(
                    "bad CAA tag {:?} (RFC 8659 §4.1: 1 to 15 letters and digits)",
                    tokens[1].text
                ));
            }
            let mut wire = alloc::vec![flags, tag.len() as u8];
            wire.extend_from_slice(tag);
            wire.extend_from_slice(&unescape(tokens[2].text)?);
            RData::Opaque(wire)
        }
        _ => return Err(format!("type {rtype} needs the RFC 3597 form: \\# <length> <hex>")),
    };
    Ok(data)
}

/// RFC 3597 §5: `\# <length> <hex>…`, checked like rdata read off the wire.
fn parse_generic(rtype: u16, tokens: &[Token<'_>]) -> Result<RData, String> {
    let len: usize = number(tokens.first(), "\\# length")?;
    let hex: String = tokens[1..].iter().map(|t| t.text).collect();
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("bad \\# hex data {hex:?}"));
    }
    let bytes: Vec<u8> =
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0)).collect();
    if bytes.len() != len {
        return Err(format!("\\# says {len} octets, the hex has {}", bytes.len()));
    }
    if rtype == types::OPT {
        return Err(String::from("OPT is not a zone record type (RFC 6891 §6.1.1)"));
    }
    RData::parse(rtype, &mut Reader::new(&bytes, 0), len)
        .map_err(|_| format!("\\# data is not valid for type {rtype}"))
}

/// Loads one zone from master-file text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Zone, MasterError> {
    parse_zone(file, text, None)
}

/// Loads one zone from master-file bytes (as read from a file or a disk),
/// which must be UTF-8. With `origin` (the zone's name, as a server's
/// configuration gives it) the file starts relative to it and its SOA must
/// be there; without, the SOA's owner is the origin.
pub fn parse_bytes(file: &str, text: &[u8], origin: Option<&Name>) -> Result<Zone, MasterError> {
    let text = core::str::from_utf8(text).map_err(|e| {
        let line = 1 + text[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        MasterError { file: String::from(file), line, problem: String::from("not UTF-8 text") }
    })?;
    parse_zone(file, text, origin)
}

fn parse_zone(file: &str, text: &str, apex: Option<&Name>) -> Result<Zone, MasterError> {
    let fail = |line: usize, problem: String| MasterError { file: String::from(file), line, problem };
    let entries = entries(text).map_err(|(line, p)| fail(line, p))?;
    let mut origin = apex.cloned().unwrap_or_else(Name::root);
    let mut origin_given = apex.is_some();
    let mut default_ttl: Option<u32> = None;
    let mut last_ttl: Option<u32> = None;
    let mut owner: Option<Name> = None;
    let mut zone: Option<Builder> = None;
    let mut last_line = 1;
    for entry in &entries {
        let line = entry.line;
        last_line = line;
        let t = &entry.tokens;
        let at = |p: String| fail(line, p);
        match t[0].text {
            "$ORIGIN" if !t[0].quoted && !entry.blank_owner => {
                let text = t.get(1).ok_or_else(|| at(String::from("$ORIGIN needs a name")))?.text;
                origin = parse_name(text, &origin).map_err(at)?;
                origin_given = true;
                continue;
            }
            "$TTL" if !t[0].quoted && !entry.blank_owner => {
                let text = t.get(1).ok_or_else(|| at(String::from("$TTL needs a TTL")))?.text;
                default_ttl = Some(parse_ttl(text).ok_or_else(|| at(format!("bad TTL {text:?}")))?);
                continue;
            }
            d if d.starts_with('$') && !entry.blank_owner => {
                return Err(at(format!("unsupported directive {d}")));
            }
            _ => {}
        }
        let mut i = 0;
        if !entry.blank_owner {
            owner = Some(parse_name(t[0].text, &origin).map_err(at)?);
            i = 1;
        }
        let owner = owner
            .clone()
            .ok_or_else(|| at(String::from("no owner name (the first record starts with a blank)")))?;
        let mut ttl = None;
        let mut class_seen = false;
        let rtype = loop {
            let token = t.get(i).ok_or_else(|| at(String::from("missing type")))?;
            i += 1;
            if let (None, Some(v)) = (ttl, parse_ttl(token.text)) {
                ttl = Some(v);
            } else if let (false, Some(c)) = (class_seen, parse_class(token.text)) {
                if c != CLASS_IN {
                    return Err(at(format!("class {} is not supported (only IN)", token.text)));
                }
                class_seen = true;
            } else if let Some(rtype) = parse_type(token.text) {
                break rtype;
            } else {
                return Err(at(format!("unknown type {:?}", token.text)));
            }
        };
        let rdata =
            parse_rdata(rtype, &t[i..], &origin).map_err(|p| at(format!("{}: {p}", type_name(rtype))))?;
        let zone = match &mut zone {
            Some(z) => z,
            None if rtype == types::SOA && apex.is_some_and(|a| *a != owner) => {
                return Err(at(format!("the SOA is at {owner}, not at the zone's origin {}", origin)));
            }
            None if rtype == types::SOA => {
                // Without $ORIGIN, names after the SOA are relative to the zone (as named.conf's zone name would make them).
                if !origin_given {
                    origin = owner.clone();
                }
                zone.insert(Builder::new(owner.clone()))
            }
            None => return Err(at(String::from("the first record must be the zone's SOA"))),
        };
        let soa_minimum = match &rdata {
            RData::Soa { minimum, .. } => Some(*minimum),
            _ => None,
        };
        let ttl = ttl
            .or(default_ttl)
            .or(last_ttl)
            .or(soa_minimum)
            .ok_or_else(|| at(String::from("no TTL: give one or set $TTL")))?;
        last_ttl = Some(ttl);
        zone.add(owner, rtype, ttl, rdata).map_err(|e| at(format!("{e}")))?;
    }
    let zone = zone.ok_or_else(|| fail(last_line, String::from("no records")))?.finish();
    zone.validate().map_err(|e| fail(last_line, format!("{e}")))?;
    Ok(zone)
}

fn type_name(rtype: u16) -> String {
    MNEMONICS
        .iter()
        .find(|(_, t)| *t == rtype)
        .map(|(m, _)| String::from(*m))
        .unwrap_or_else(|| format!("TYPE{rtype}"))
}

#[cfg(test)]
mod tests;
