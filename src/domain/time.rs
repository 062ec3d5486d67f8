//! The three time formats of the DMS API: ISO-8601 with milliseconds in bodies,
//! `YYYYMMDDHHmmss` in query strings, and epoch milliseconds in step lists and operation bodies.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `2020-05-15T03:19:51.046Z`
pub fn iso_ms(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => String::new(),
    }
}

/// A `YYYYMMDDHHmmss` UTC value from a query string, held as epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CompactTime(pub i64);

impl std::str::FromStr for CompactTime {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S")
            .map(|t| CompactTime(t.and_utc().timestamp_millis()))
            .map_err(|_| ())
    }
}

/// The same `YYYYMMDDHHmmss` UTC form (empty for an instant chrono cannot represent).
impl std::fmt::Display for CompactTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match DateTime::<Utc>::from_timestamp_millis(self.0) {
            Some(t) => write!(f, "{}", t.format("%Y%m%d%H%M%S")),
            None => Ok(()),
        }
    }
}

impl CompactTime {
    /// The last millisecond of the second this value names, so that an inclusive upper
    /// bound of `…HHmmss` covers a record created at `…HH:mm:ss.999`.
    pub fn end_of_second(self) -> i64 {
        self.0 + 999
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_iso_with_milliseconds_and_z() {
        assert_eq!(iso_ms(1589512791046), "2020-05-15T03:19:51.046Z");
        assert_eq!(iso_ms(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn parses_compact_times_strictly() {
        assert_eq!("20200515031951".parse::<CompactTime>(), Ok(CompactTime(1589512791000)));
        assert!("2020051503195".parse::<CompactTime>().is_err());
        assert!("20201315031951".parse::<CompactTime>().is_err());
        assert!("20200230000000".parse::<CompactTime>().is_err());
        assert!("2020-05-15T03:1".parse::<CompactTime>().is_err());
        assert!("+0200515031951".parse::<CompactTime>().is_err());
    }

    #[test]
    fn compact_times_round_trip_through_display() {
        assert_eq!(CompactTime(1589512791046).to_string(), "20200515031951");
        assert_eq!("20200515031951".parse::<CompactTime>().map(|t| t.to_string()), Ok("20200515031951".to_owned()));
        assert_eq!(CompactTime(i64::MAX).to_string(), "");
    }
}
