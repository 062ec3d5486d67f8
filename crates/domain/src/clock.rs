//! The service's one clock. Auth (signature dates, token expiry, rate limits), the handlers
//! (creation times, schedules), the audit log and the engine (what is due, leases, step times)
//! all read it, so a test that moves it moves all of them together.
//!
//! Test control (`serve --test-control`, see [`crate::control`]) moves it through the API:
//! forward by an amount or to a time, frozen and resumed. Whoever waits on the clock (a
//! simulated step's planned duration) is woken when it moves ([`Clock::sleep_until`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// No frozen time: the clock runs.
const RUNNING: i64 = i64::MIN;

/// Wall-clock time in epoch milliseconds, plus an offset that tests can move forward (or back),
/// or frozen at one instant. Clones share the offset.
#[derive(Debug, Clone)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
    frozen_at: Arc<AtomicI64>,
    moved: Arc<Notify>,
    /// How often it was moved: a reader that saw another count knows it moved since.
    moves: Arc<AtomicU64>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            offset_ms: Arc::default(),
            frozen_at: Arc::new(AtomicI64::new(RUNNING)),
            moved: Arc::default(),
            moves: Arc::default(),
        }
    }
}

/// Where a clock stands: what test control stores, so that every process reads the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ClockSetting {
    /// Added to the wall clock while running.
    pub offset_ms: i64,
    /// The instant the clock stands still at, when frozen.
    pub frozen_at: Option<i64>,
}

impl Clock {
    /// The clock's time now.
    pub fn now(&self) -> super::Timestamp {
        super::Timestamp(self.now_ms())
    }

    /// [`Clock::now`] in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        match self.frozen_at.load(Ordering::Relaxed) {
            RUNNING => super::now_ms() + self.offset_ms.load(Ordering::Relaxed),
            frozen => frozen,
        }
    }

    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
        let frozen = self.frozen_at.load(Ordering::Relaxed);
        if frozen != RUNNING {
            self.frozen_at.store(frozen.saturating_add(ms), Ordering::Relaxed);
        }
        self.moves.fetch_add(1, Ordering::Relaxed);
        self.moved.notify_waiters();
    }

    /// The clock's offset and frozen instant.
    pub fn setting(&self) -> ClockSetting {
        let frozen = self.frozen_at.load(Ordering::Relaxed);
        ClockSetting {
            offset_ms: self.offset_ms.load(Ordering::Relaxed),
            frozen_at: (frozen != RUNNING).then_some(frozen),
        }
    }

    /// Puts the clock where `s` says (a stored setting, or one test control decided), and wakes
    /// whoever waits on it. Nothing happens when it is there already.
    pub fn apply(&self, s: ClockSetting) {
        if self.setting() == s {
            return;
        }
        self.offset_ms.store(s.offset_ms, Ordering::Relaxed);
        self.frozen_at.store(s.frozen_at.map_or(RUNNING, |f| f.max(RUNNING + 1)), Ordering::Relaxed);
        self.moves.fetch_add(1, Ordering::Relaxed);
        self.moved.notify_waiters();
    }

    /// How many times the clock was moved (advanced, set, frozen, resumed) so far.
    pub fn moves(&self) -> u64 {
        self.moves.load(Ordering::Relaxed)
    }

    /// Resolves the next time the clock is moved.
    pub async fn moved(&self) {
        self.moved.notified().await
    }

    /// Waits until the clock reads `at` or later: by the wall clock while it runs, and at once
    /// when it is moved past `at`. A frozen clock short of `at` waits until it is moved.
    pub async fn sleep_until(&self, at: super::Timestamp) {
        let at = at.ms();
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            // Registered before the time is read, so that a move in between is not missed.
            moved.as_mut().enable();
            let now = self.now_ms();
            if now >= at {
                return;
            }
            if self.frozen_at.load(Ordering::Relaxed) != RUNNING {
                moved.await;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis((at - now) as u64)) => {}
                    _ = &mut moved => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_time_stands_still_and_moves_only_when_advanced() {
        let c = Clock::default();
        let at = c.now_ms();
        c.apply(ClockSetting { offset_ms: 0, frozen_at: Some(at) });
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.now_ms(), at);
        c.advance(1_000);
        assert_eq!(c.now_ms(), at + 1_000);
        c.apply(ClockSetting { offset_ms: c.setting().offset_ms, frozen_at: None });
        assert!(c.now_ms() >= at + 1_000 - 10, "resumed near where it stood");
    }

    #[tokio::test]
    async fn a_sleeper_wakes_when_the_clock_is_moved_past_its_time() {
        let c = Clock::default();
        let target = c.now().after(Duration::from_secs(3_600));
        let sleeper = tokio::spawn({
            let c = c.clone();
            async move { c.sleep_until(target).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sleeper.is_finished());
        c.advance(3_600_000);
        tokio::time::timeout(Duration::from_secs(5), sleeper).await.expect("woken").expect("joined");
    }
}
