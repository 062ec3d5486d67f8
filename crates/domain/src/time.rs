//! The three time formats of the DMS API: ISO-8601 with milliseconds in bodies,
//! `YYYYMMDDHHmmss` in query strings, and epoch milliseconds in step lists and operation bodies.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `2020-05-15T03:19:51.046Z`
///
/// Years 0000-9999 (every time a record can hold) are written by hand: chrono's general
/// formatter cost ~550 instructions a call, and an event row, a listed task or a shown task
/// formats two to four of them. Other times go through chrono, which writes them in its form.
pub fn iso_ms(ms: i64) -> String {
    /// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z.
    const FIRST: i64 = -62_167_219_200_000;
    const LAST: i64 = 253_402_300_799_999;
    if !(FIRST..=LAST).contains(&ms) {
        return match DateTime::<Utc>::from_timestamp_millis(ms) {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => String::new(),
        };
    }
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, sec, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, h);
    put(14, 2, min);
    put(17, 2, sec);
    put(20, 3, milli);
    b.iter().map(|&c| c as char).collect()
}

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// An instant: milliseconds since the Unix epoch, UTC, as the database columns hold it. Shown
/// (and parsed from query strings) in the compact `YYYYMMDDHHmmss` form; a span between two is a
/// [`std::time::Duration`]. `CompactTime` is its name where it comes from a query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

pub use self::Timestamp as CompactTime;

impl Timestamp {
    /// The wall clock now (the service's own time is the [`Clock`](crate::clock::Clock)'s).
    pub fn now() -> Timestamp {
        Timestamp(now_ms())
    }

    pub const fn from_ms(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    /// Epoch milliseconds (what a column stores).
    pub const fn ms(self) -> i64 {
        self.0
    }

    /// `span` later, saturating at the end of time.
    pub fn after(self, span: std::time::Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(millis(span)))
    }

    /// How long after `earlier` this is; zero when it is not after it.
    pub fn since(self, earlier: Timestamp) -> std::time::Duration {
        std::time::Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

impl std::ops::Add<std::time::Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, span: std::time::Duration) -> Timestamp {
        self.after(span)
    }
}

/// A span in whole milliseconds, as the database columns and the step plans count it
/// (saturating at `i64::MAX`).
pub fn millis(span: std::time::Duration) -> i64 {
    i64::try_from(span.as_millis()).unwrap_or(i64::MAX)
}

impl std::str::FromStr for Timestamp {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S")
            .map(|t| Timestamp(t.and_utc().timestamp_millis()))
            .map_err(|_| ())
    }
}

/// The same `YYYYMMDDHHmmss` UTC form (empty for an instant chrono cannot represent).
impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match DateTime::<Utc>::from_timestamp_millis(self.0) {
            Some(t) => write!(f, "{}", t.format("%Y%m%d%H%M%S")),
            None => Ok(()),
        }
    }
}

impl Timestamp {
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
    fn iso_is_chronos_rfc3339_everywhere() {
        let chrono = |ms: i64| match DateTime::<Utc>::from_timestamp_millis(ms) {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => String::new(),
        };
        let mut cases = vec![
            0,
            -1,
            1,
            951_782_400_000,     // 2000-02-29
            4_107_542_399_999,   // 2100-02-28T23:59:59.999
            4_107_542_400_000,   // 2100-03-01
            -62_167_219_200_000, // 0000-01-01
            -62_167_219_200_001, // the millisecond before: chrono's form
            253_402_300_799_999, // 9999-12-31T23:59:59.999
            253_402_300_800_000, // 10000-01-01: chrono's form
            i64::MIN,
            i64::MAX,
        ];
        // A walk over four centuries and more in uneven steps, both sides of the epoch.
        let mut ms: i64 = -62_167_219_200_000;
        while ms < 253_402_300_799_999 {
            cases.push(ms);
            ms += 86_399_937_123;
        }
        // Every day of four years around 2000 and of the first four years of year 0.
        for start in [915_148_800_000i64, -62_167_219_200_000] {
            cases.extend((0..1500).map(|i| start + i * 86_400_123));
        }
        for ms in cases {
            assert_eq!(iso_ms(ms), chrono(ms), "{ms}");
        }
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

    #[test]
    fn a_timestamp_moves_by_durations_and_saturates() {
        use std::time::Duration;
        let t = Timestamp::from_ms(1589512791046);
        assert_eq!((t + Duration::from_millis(954)).to_string(), "20200515031952");
        assert_eq!(t.after(Duration::from_secs(60)).since(t), Duration::from_secs(60));
        assert_eq!(t.since(t.after(Duration::from_secs(1))), Duration::ZERO);
        assert_eq!(Timestamp(i64::MAX - 1).after(Duration::MAX), Timestamp(i64::MAX));
        assert_eq!(millis(Duration::from_micros(2_999)), 2);
    }
}
