//! In-memory limits of the gateway, none of which a stranger can turn against a key's owner:
//! - [`FailureThrottle`]: failed signatures per (access key, client address) in a fixed window.
//!   Past the limit that client's failures are answered 429; a correct signature still passes.
//! - [`KeyRateLimiter`]: a token bucket per access key, charged only by authenticated requests.
//!
//! Both are bounded: the throttle holds at most [`FailureThrottle::CAPACITY`] entries (expired,
//! then oldest, are evicted), the rate limiter only keys that authenticated (idle ones pruned).
//! Nothing here touches the database.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Seconds until `ms` milliseconds have passed, at least 1 (for `Retry-After`).
fn retry_secs(ms: f64) -> u64 {
    (ms / 1000.0).ceil().clamp(1.0, 86_400.0) as u64
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    failures: u32,
}

pub struct FailureThrottle {
    limit: u32,
    window_ms: i64,
    capacity: usize,
    map: Mutex<HashMap<(String, Option<IpAddr>), Window>>,
}

impl FailureThrottle {
    /// Entries kept at most (about 100 bytes each).
    pub const CAPACITY: usize = 16_384;

    pub fn new(limit: u32, window_ms: i64) -> Self {
        Self::with_capacity(limit, window_ms, Self::CAPACITY)
    }

    pub fn with_capacity(limit: u32, window_ms: i64, capacity: usize) -> Self {
        FailureThrottle { limit, window_ms: window_ms.max(1), capacity: capacity.max(1), map: Mutex::default() }
    }

    /// Records one failed signature; `Some(retry_after_secs)` when this client is past the limit.
    pub fn fail(&self, access_key: &str, addr: Option<IpAddr>, now: i64) -> Option<u64> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = (access_key.to_owned(), addr);
        if !map.contains_key(&key) && map.len() >= self.capacity {
            self.evict(&mut map, now);
        }
        let w = map.entry(key).or_insert(Window { start: now, failures: 0 });
        if now - w.start >= self.window_ms || now < w.start {
            *w = Window { start: now, failures: 0 };
        }
        w.failures = w.failures.saturating_add(1);
        (w.failures > self.limit).then(|| retry_secs((w.start + self.window_ms - now) as f64))
    }

    /// Drops expired windows; if that frees nothing, the oldest quarter.
    fn evict(&self, map: &mut HashMap<(String, Option<IpAddr>), Window>, now: i64) {
        map.retain(|_, w| now - w.start < self.window_ms && now >= w.start);
        if map.len() >= self.capacity {
            let mut starts: Vec<i64> = map.values().map(|w| w.start).collect();
            let cut = (starts.len() / 4).max(1).min(starts.len() - 1);
            let (_, nth, _) = starts.select_nth_unstable(cut);
            let nth = *nth;
            map.retain(|_, w| w.start > nth);
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: i64,
}

/// A token bucket per access key; `None` when the limit is off.
pub struct KeyRateLimiter {
    per_ms: f64,
    burst: f64,
    map: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    by_key: HashMap<String, Bucket>,
    prune_at: usize,
}

impl KeyRateLimiter {
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        (per_second > 0).then(|| KeyRateLimiter {
            per_ms: f64::from(per_second) / 1000.0,
            burst: f64::from(burst.max(1)),
            map: Mutex::new(Buckets { by_key: HashMap::new(), prune_at: 1024 }),
        })
    }

    fn refilled(&self, b: Bucket, now: i64) -> Bucket {
        let elapsed = (now - b.at).max(0) as f64;
        Bucket { tokens: (b.tokens + elapsed * self.per_ms).min(self.burst), at: now.max(b.at) }
    }

    fn wait(&self, b: Bucket) -> u64 {
        retry_secs((1.0 - b.tokens) / self.per_ms)
    }

    /// Whether a request of `access_key` would be refused now, without charging it: the check
    /// made before the body is read. `Some(retry_after_secs)` when it would.
    pub fn peek(&self, access_key: &str, now: i64) -> Option<u64> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let b = self.refilled(*map.by_key.get(access_key)?, now);
        (b.tokens < 1.0).then(|| self.wait(b))
    }

    /// Charges one request of an authenticated `access_key`; `Err(retry_after_secs)` when its
    /// bucket is empty.
    pub fn take(&self, access_key: &str, now: i64) -> Result<(), u64> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if !map.by_key.contains_key(access_key) && map.by_key.len() >= map.prune_at {
            // A full bucket is the same as none: drop those of idle (or revoked) keys.
            let burst = self.burst;
            map.by_key.retain(|_, b| self.refilled(*b, now).tokens < burst);
            map.prune_at = (map.by_key.len() * 2).max(1024);
        }
        let b = map.by_key.get(access_key).copied().unwrap_or(Bucket { tokens: self.burst, at: now });
        let mut b = self.refilled(b, now);
        let verdict = if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait(b))
        };
        map.by_key.insert(access_key.to_owned(), b);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_past_the_limit_are_throttled_until_the_window_ends() {
        let t = FailureThrottle::new(3, 60_000);
        let a = Some("127.0.0.2".parse().expect("ip"));
        let b = Some("127.0.0.1".parse().expect("ip"));
        for _ in 0..3 {
            assert_eq!(t.fail("AK", a, 1_000), None);
        }
        assert_eq!(t.fail("AK", a, 1_000), Some(60));
        assert_eq!(t.fail("AK", a, 31_000), Some(30));
        // Another address, another key: their own counts.
        assert_eq!(t.fail("AK", b, 31_000), None);
        assert_eq!(t.fail("AK2", a, 31_000), None);
        // A new window starts afresh.
        assert_eq!(t.fail("AK", a, 61_000), None);
    }

    #[test]
    fn the_throttle_never_holds_more_than_its_capacity() {
        let t = FailureThrottle::with_capacity(1, 60_000, 100);
        for i in 0..10_000u32 {
            let addr = Some(IpAddr::from(i.to_be_bytes()));
            t.fail("AK", addr, i64::from(i));
            assert!(t.len() <= 100);
        }
        // Expired entries go first: a full map of old windows empties.
        let t = FailureThrottle::with_capacity(1, 60_000, 10);
        for i in 0..10u8 {
            t.fail("AK", Some(IpAddr::from([10, 0, 0, i])), 0);
        }
        t.fail("AK", None, 60_000);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let r = KeyRateLimiter::new(10, 5).expect("on");
        assert_eq!(r.peek("AK", 0), None, "an unknown key is never refused before it is checked");
        for _ in 0..5 {
            assert_eq!(r.take("AK", 0), Ok(()));
        }
        assert_eq!(r.take("AK", 0), Err(1));
        assert_eq!(r.peek("AK", 0), Some(1));
        assert_eq!(r.take("OTHER", 0), Ok(()), "keys have their own buckets");
        // 10/s: one token every 100 ms.
        assert_eq!(r.take("AK", 100), Ok(()));
        assert_eq!(r.take("AK", 100), Err(1));
        assert!(KeyRateLimiter::new(0, 5).is_none(), "0 turns the limit off");
    }

    #[test]
    fn idle_buckets_are_pruned() {
        let r = KeyRateLimiter::new(1000, 1).expect("on");
        for i in 0..5_000 {
            assert_eq!(r.take(&format!("AK{i}"), i64::from(i) * 10), Ok(()));
        }
        let len = r.map.lock().map(|m| m.by_key.len()).unwrap_or(0);
        assert!(len <= 1024, "{len}");
    }
}

/// Bodies being read, per client address, before their signature is verified. An entry lives
/// only while one of its bodies is being read, so the map holds at most one entry per open
/// connection.
pub struct UnverifiedBodies {
    per_client: usize,
    reading: Arc<Mutex<HashMap<Option<IpAddr>, usize>>>,
}

/// One body being read; dropping it frees the client's slot.
pub struct BodySlot {
    client: Option<IpAddr>,
    reading: Arc<Mutex<HashMap<Option<IpAddr>, usize>>>,
}

impl UnverifiedBodies {
    pub fn new(per_client: u32) -> Self {
        UnverifiedBodies { per_client: (per_client as usize).max(1), reading: Arc::default() }
    }

    /// A slot for one more body from `client`, or `None` when it already has its share.
    pub fn begin(&self, client: Option<IpAddr>) -> Option<BodySlot> {
        let mut map = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(client).or_insert(0);
        if *n >= self.per_client {
            return None;
        }
        *n += 1;
        Some(BodySlot { client, reading: self.reading.clone() })
    }
}

impl Drop for BodySlot {
    fn drop(&mut self) {
        let mut map = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod unverified_tests {
    use super::*;

    #[test]
    fn a_client_gets_its_share_of_unverified_bodies_and_others_are_unaffected() {
        let u = UnverifiedBodies::new(2);
        let a = Some("127.0.0.2".parse().unwrap_or_else(|_| panic!("ip")));
        let b = Some("127.0.0.1".parse().unwrap_or_else(|_| panic!("ip")));
        let first = u.begin(a);
        let second = u.begin(a);
        assert!(first.is_some() && second.is_some());
        assert!(u.begin(a).is_none(), "a third body from the same client waits for none");
        assert!(u.begin(b).is_some(), "another client is not affected");
        drop(first);
        assert!(u.begin(a).is_some(), "a finished body frees its slot");
        drop(second);
        assert!(u.reading.lock().map(|m| m.len() <= 1).unwrap_or(false), "idle clients leave no entry");
    }
}
