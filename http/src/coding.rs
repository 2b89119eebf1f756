//! `Accept-Encoding` (RFC 9110 §12.5.3): whether a client takes a gzip-coded response.

/// Whether the `Accept-Encoding` list elements allow `gzip`: named (or as `x-gzip`, §8.4.1.3)
/// with a non-zero weight, or not named and `*` with a non-zero weight. Elements with a
/// malformed weight are ignored. No field at all means identity only: the RFC would allow any
/// coding, but clients that decode gzip say so.
pub fn accepts_gzip<'a>(elements: impl Iterator<Item = &'a [u8]>) -> bool {
    let (mut gzip, mut any) = (None::<u16>, None::<u16>);
    for element in elements {
        let mut parts = element.split(|&b| b == b';');
        let coding = parts.next().unwrap_or_default().trim_ascii();
        let Some(weight) = weight(parts) else { continue };
        if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
            gzip = Some(gzip.map_or(weight, |w| w.max(weight)));
        } else if coding == b"*" {
            any = Some(any.map_or(weight, |w| w.max(weight)));
        }
    }
    gzip.or(any).is_some_and(|w| w > 0)
}

/// The `q` parameter among an element's parameters, in thousandths (1000 without one);
/// `None` if a parameter is malformed.
fn weight<'a>(parameters: impl Iterator<Item = &'a [u8]>) -> Option<u16> {
    for parameter in parameters {
        let at = parameter.iter().position(|&b| b == b'=')?;
        let (name, value) = (parameter[..at].trim_ascii(), parameter[at + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"q") {
            return qvalue(value);
        }
    }
    Some(1000)
}

/// A weight (§12.4.2): `0` to `1` with at most three decimals, in thousandths.
fn qvalue(value: &[u8]) -> Option<u16> {
    let (whole, fraction) = match value.iter().position(|&b| b == b'.') {
        Some(at) => (&value[..at], &value[at + 1..]),
        None => (value, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = fraction.iter().chain(b"000").take(3).fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(value: &str) -> bool {
        accepts_gzip(value.split(',').map(|e| e.trim().as_bytes()))
    }

    #[test]
    fn gzip_named_or_by_wildcard() {
        for value in ["gzip", "GZIP", "deflate, gzip, br", "x-gzip", "gzip;q=0.5", "*", "br, *;q=0.1"] {
            assert!(accepts(value), "{value}");
        }
    }

    #[test]
    fn zero_weight_or_absent_refuses() {
        for value in [
            "",
            "identity",
            "br, deflate",
            "gzip;q=0",
            "gzip; q=0.000",
            "*;q=0",
            "gzip;q=0, *",
            "*, gzip;q=0",
        ] {
            assert!(!accepts(value), "{value}");
        }
        assert!(!accepts_gzip(core::iter::empty()));
    }

    #[test]
    fn malformed_weights_are_ignored() {
        for value in ["gzip;q=2", "gzip;q=1.5", "gzip;q=0.1234", "gzip;q=", "gzip;q=x", "gzip;level"] {
            assert!(!accepts(value), "{value}");
        }
        assert!(accepts("gzip;q=1.000"));
        assert!(accepts("gzip;q=0.001"));
        assert!(accepts("gzip;q=bad, *;q=1"));
    }

    #[test]
    fn weights_in_thousandths() {
        assert_eq!(qvalue(b"0.5"), Some(500));
        assert_eq!(qvalue(b"0.05"), Some(50));
        assert_eq!(qvalue(b"1"), Some(1000));
        assert_eq!(qvalue(b"0."), Some(0));
        assert_eq!(qvalue(b"1.001"), None);
        assert_eq!(qvalue(b".5"), None);
    }
}
