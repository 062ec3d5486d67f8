//! Log flood control: a fault (disk full, database down, a client hammering a broken endpoint)
//! repeats the same error thousands of times a second. Each distinct key (the message and its
//! cause) is logged at most once per period; the next line that gets through carries how many
//! were suppressed in between (`suppressed = N`, "… repeated N times").

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Keys tracked at most; beyond it stale keys are dropped, and if none is stale the line is
/// let through untracked (better a few extra lines than unbounded memory).
const MAX_KEYS: usize = 1024;
/// Longest key kept (error texts can embed client input).
const MAX_KEY_LEN: usize = 256;

pub struct LogLimiter {
    period: Duration,
    seen: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    last: Instant,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(period: Duration) -> Self {
        LogLimiter { period, seen: Mutex::new(HashMap::new()) }
    }

    /// `Some(n)` when a line for `key` may be written now, `n` being the lines suppressed since
    /// the last one; `None` when this line is to be suppressed (it is counted).
    pub fn allow(&self, key: &str) -> Option<u64> {
        let key = truncate(key);
        let now = Instant::now();
        let Ok(mut seen) = self.seen.lock() else {
            return Some(0);
        };
        if let Some(e) = seen.get_mut(key) {
            if now.duration_since(e.last) < self.period {
                e.suppressed += 1;
                return None;
            }
            let n = e.suppressed;
            *e = Entry { last: now, suppressed: 0 };
            return Some(n);
        }
        if seen.len() >= MAX_KEYS {
            let period = self.period;
            seen.retain(|_, e| now.duration_since(e.last) < period || e.suppressed > 0);
            if seen.len() >= MAX_KEYS {
                return Some(0);
            }
        }
        seen.insert(key.to_owned(), Entry { last: now, suppressed: 0 });
        Some(0)
    }
}

fn truncate(key: &str) -> &str {
    if key.len() <= MAX_KEY_LEN {
        return key;
    }
    let mut end = MAX_KEY_LEN;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

/// The process-wide limiter: one line per key per second.
pub fn global() -> &'static LogLimiter {
    static LIMITER: OnceLock<LogLimiter> = OnceLock::new();
    LIMITER.get_or_init(|| LogLimiter::new(Duration::from_secs(1)))
}

/// Logs with `tracing::$level!` unless the same key was logged within the last second;
/// the line carries `suppressed`, the number of identical lines dropped since the last one.
///
/// `limited!(error, key, field = value, …, "message")`
#[macro_export]
macro_rules! limited {
    ($level:ident, $key:expr, $($rest:tt)+) => {
        if let Some(suppressed) = $crate::log_limit::global().allow($key) {
            tracing::$level!(suppressed, $($rest)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_is_logged_once_per_period_with_the_count_of_what_was_dropped() {
        let l = LogLimiter::new(Duration::from_millis(50));
        assert_eq!(l.allow("disk full"), Some(0));
        for _ in 0..100 {
            assert_eq!(l.allow("disk full"), None);
        }
        assert_eq!(l.allow("other"), Some(0), "keys are independent");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.allow("disk full"), Some(100));
        assert_eq!(l.allow("disk full"), None);
    }

    #[test]
    fn the_key_table_stays_bounded() {
        let l = LogLimiter::new(Duration::from_secs(60));
        for i in 0..(MAX_KEYS * 3) {
            l.allow(&format!("k{i}"));
        }
        assert!(l.seen.lock().map(|s| s.len()).unwrap_or(0) <= MAX_KEYS);
        let long = "x".repeat(10_000);
        assert_eq!(l.allow(&long), Some(0));
    }
}
