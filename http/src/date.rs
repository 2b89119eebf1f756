//! HTTP dates (RFC 9110 §5.6.7): IMF-fixdate, like `Sun, 06 Nov 1994 08:49:37 GMT`, from and to
//! seconds since the Unix epoch; the two obsolete formats are parsed too, as recipients must.
//! An invalid date makes the conditional header that carries it ignored (§13.1.3).

use core::fmt;

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
/// [`DAYS`] in full, as RFC 850 dates name them.
const DAY_NAMES: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];
const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Seconds since 1970-01-01T00:00:00Z, shown as IMF-fixdate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpDate(pub u64);

impl fmt::Display for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0 / 86400;
        let secs = self.0 % 86400;
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
            DAYS[(days % 7) as usize],
            MONTHS[month as usize - 1],
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

impl HttpDate {
    /// Parses any of the three formats (RFC 9110 §5.6.7): IMF-fixdate, RFC 850
    /// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`); `None` for
    /// anything else. `now` places RFC 850's two-digit year.
    pub fn parse(text: &[u8], now: u64) -> Option<HttpDate> {
        let text = core::str::from_utf8(text).ok()?;
        let (weekday, day, month, year, time) = match text.strip_suffix(" GMT") {
            Some(rest) => {
                let (weekday, rest) = rest.split_once(", ")?;
                match rest.split_once(' ')? {
                    // RFC 850: a full day name, `dd-Mon-yy`.
                    (date, time) if weekday.len() > 3 => {
                        let weekday = &DAYS[DAY_NAMES.iter().position(|d| *d == weekday)?];
                        let mut date = date.split('-');
                        let (day, month, year) = (date.next()?, date.next()?, date.next()?);
                        let year = two_digit_year(number(year, 2)?, now);
                        (*weekday, number(day, 2)?, month, year, time)
                    }
                    (day, rest) => {
                        let (month, rest) = rest.split_once(' ')?;
                        let (year, time) = rest.split_once(' ')?;
                        (weekday, number(day, 2)?, month, number(year, 4)?, time)
                    }
                }
            }
            // asctime: `Www Mon dd hh:mm:ss yyyy`, the day padded with a space.
            None => {
                let fields = (text.get(..3)?, text.get(4..7)?, text.get(8..10)?, text.get(11..19)?);
                let (weekday, month, day, time) = fields;
                let spaces = [3, 7, 10, 19].iter().all(|&i| text.as_bytes()[i] == b' ');
                let day = day.strip_prefix(' ').map_or_else(|| number(day, 2), |d| number(d, 1))?;
                if !spaces || text.len() != 24 {
                    return None;
                }
                (weekday, day, month, number(&text[20..], 4)?, time)
            }
        };
        let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
        let mut time = time.split(':');
        let (hour, minute, second) =
            (number(time.next()?, 2)?, number(time.next()?, 2)?, number(time.next()?, 2)?);
        if time.next().is_some() || year < 1970 {
            return None;
        }
        if !(1..=days_in_month(year, month)).contains(&day) || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let days = days_from_civil(year, month, day);
        if DAYS[(days % 7) as usize] != weekday {
            return None;
        }
        Some(HttpDate(days * 86400 + hour * 3600 + minute * 60 + second))
    }
}

/// RFC 850's two-digit year as the year nearest `now` with those digits, but never more than
/// 50 years ahead (RFC 9110 §5.6.7).
fn two_digit_year(year: u64, now: u64) -> u64 {
    let this_year = civil_from_days(now / 86400).0;
    let year = this_year - this_year % 100 + year;
    if year > this_year + 50 {
        year - 100
    } else if year + 50 <= this_year {
        year + 100
    } else {
        year
    }
}

fn number(text: &str, digits: usize) -> Option<u64> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok())?
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's `civil_from_days`, for days since 1970-01-01 (unsigned: no dates before it).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`], for years from 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year % 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn formats_rfc_example() {
        assert_eq!(HttpDate(784_111_777).to_string(), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(HttpDate(0).to_string(), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(HttpDate(951_782_400).to_string(), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn parses_what_it_formats() {
        for secs in [0, 784_111_777, 951_782_400, 1_700_000_000, 4_102_444_799, 253_402_300_799] {
            let text = HttpDate(secs).to_string();
            assert_eq!(HttpDate::parse(text.as_bytes(), NOW), Some(HttpDate(secs)), "{text}");
        }
    }

    /// 2023-11-14.
    const NOW: u64 = 1_700_000_000;

    /// RFC 9110 §5.6.7: recipients take all three formats.
    #[test]
    fn parses_the_obsolete_formats() {
        for text in ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Sun Nov 06 08:49:37 1994"]
        {
            assert_eq!(HttpDate::parse(text.as_bytes(), NOW), Some(HttpDate(784_111_777)), "{text}");
        }
        assert_eq!(HttpDate::parse(b"Tue Feb 29 00:00:00 2000", NOW), Some(HttpDate(951_782_400)));
    }

    /// A two-digit year more than 50 years ahead is the latest past year with those digits.
    #[test]
    fn two_digit_years_are_at_most_50_years_ahead() {
        let year =
            |text: &str, now| HttpDate::parse(text.as_bytes(), now).map(|d| civil_from_days(d.0 / 86400).0);
        assert_eq!(year("Wednesday, 01-Jan-70 00:00:00 GMT", NOW), Some(2070));
        assert_eq!(year("Sunday, 01-Jan-73 00:00:00 GMT", NOW), Some(2073));
        assert_eq!(year("Tuesday, 01-Jan-74 00:00:00 GMT", NOW), Some(1974));
        assert_eq!(year("Monday, 01-Jan-24 00:00:00 GMT", NOW), Some(2024));
    }

    #[test]
    fn rejects_other_formats_and_nonsense() {
        for text in [
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Sunday, 06 Nov 1994 08:49:37 GMT",
            "Monday, 06-Nov-94 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun Nov  6 08:49:37 1994 GMT",
            "Mon Nov  6 08:49:37 1994",
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Fri, 30 Feb 2024 00:00:00 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT ",
            "",
        ] {
            assert_eq!(HttpDate::parse(text.as_bytes(), NOW), None, "{text}");
        }
    }
}
