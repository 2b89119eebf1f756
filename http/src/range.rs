//! The `Range` header (RFC 9110 §14.2), single byte ranges only: a valid single range of a
//! file is served as 206, one that selects nothing as 416, and everything else (another unit,
//! several ranges, bad syntax) is ignored, which the RFC allows, so the whole file is sent.

use core::ops::Range;

/// What a `Range` header asks of a file of a given length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranged {
    /// Send the whole file (200).
    Whole,
    /// Send these bytes (206).
    Part(Range<u64>),
    /// No byte of the file is selected (416).
    Unsatisfiable,
}

/// Evaluates a `Range` header's value against a file of `len` bytes.
pub fn evaluate(value: &[u8], len: u64) -> Ranged {
    let Ok(value) = core::str::from_utf8(value) else {
        return Ranged::Whole;
    };
    let value = value.trim();
    let Some(spec) = value.get(..6).filter(|unit| unit.eq_ignore_ascii_case("bytes=")).map(|_| &value[6..])
    else {
        return Ranged::Whole;
    };
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    if first.is_empty() {
        return match digits(last) {
            None => Ranged::Whole,
            Some(0) => Ranged::Unsatisfiable,
            Some(_) if len == 0 => Ranged::Unsatisfiable,
            Some(suffix) => Ranged::Part(len.saturating_sub(suffix)..len),
        };
    }
    let Some(first) = digits(first) else {
        return Ranged::Whole;
    };
    let end = match digits(last) {
        _ if last.is_empty() => len,
        Some(last) if last >= first => last.saturating_add(1).min(len),
        _ => return Ranged::Whole,
    };
    if first >= len {
        Ranged::Unsatisfiable
    } else {
        Ranged::Part(first..end)
    }
}

/// A non-empty run of ASCII digits that fits in a `u64`.
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(value: &str, len: u64) -> Ranged {
        evaluate(value.as_bytes(), len)
    }

    #[test]
    fn first_last_and_open_ranges() {
        assert_eq!(eval("bytes=0-99", 1000), Ranged::Part(0..100));
        assert_eq!(eval("bytes=500-", 1000), Ranged::Part(500..1000));
        assert_eq!(eval("bytes=900-5000", 1000), Ranged::Part(900..1000));
        assert_eq!(eval("Bytes=0-0", 1), Ranged::Part(0..1));
    }

    #[test]
    fn suffix_ranges() {
        assert_eq!(eval("bytes=-100", 1000), Ranged::Part(900..1000));
        assert_eq!(eval("bytes=-5000", 1000), Ranged::Part(0..1000));
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(eval("bytes=1000-", 1000), Ranged::Unsatisfiable);
        assert_eq!(eval("bytes=1000-2000", 1000), Ranged::Unsatisfiable);
        assert_eq!(eval("bytes=-0", 1000), Ranged::Unsatisfiable);
        assert_eq!(eval("bytes=-10", 0), Ranged::Unsatisfiable);
    }

    #[test]
    fn ignored_headers_mean_the_whole_file() {
        for value in [
            "bytes=5-1",
            "bytes=0-1,5-9",
            "items=0-1",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
            "bytes 0-1",
        ] {
            assert_eq!(eval(value, 1000), Ranged::Whole, "{value}");
        }
    }
}
