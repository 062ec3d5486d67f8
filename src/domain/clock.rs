//! The service's one clock. Auth (signature dates, token expiry, rate limits), the handlers
//! (creation times, schedules), the audit log and the engine (what is due, leases, step times)
//! all read it, so a test that moves it moves all of them together.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Wall-clock time in epoch milliseconds, plus an offset that tests can move forward (or back).
/// Clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn now_ms(&self) -> i64 {
        super::now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}
