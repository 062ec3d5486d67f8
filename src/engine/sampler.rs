//! The store sampler: every `--store-sample-ms`, one query over unfinished tasks sets the
//! store's gauges (tasks by status, queue depth and age, expired leases, the pool).

use std::time::Duration;

use crate::domain::Timestamp;
use crate::storage::{EngineStats, Storage};
use crate::telemetry;

/// Sets the store's gauges from one sample.
pub fn record_stats(s: &EngineStats, now: Timestamp) {
    metrics::gauge!(telemetry::TASKS, "status" => "CREATED").set(s.created as f64);
    metrics::gauge!(telemetry::TASKS, "status" => "EXECUTING").set(s.executing as f64);
    metrics::gauge!(telemetry::QUEUE_DEPTH).set(s.due as f64);
    let age = s.oldest_due_at.map_or(0.0, |at| now.since(Timestamp(at)).as_secs_f64());
    metrics::gauge!(telemetry::QUEUE_OLDEST_AGE).set(age);
    metrics::gauge!(telemetry::LEASE_EXPIRED).set(s.lease_expired as f64);
    if let Some(p) = s.pool {
        metrics::gauge!(telemetry::PG_POOL_CONNECTIONS, "state" => "in_use").set(p.in_use as f64);
        metrics::gauge!(telemetry::PG_POOL_CONNECTIONS, "state" => "idle").set(p.idle as f64);
        metrics::gauge!(telemetry::PG_POOL_WAITING).set(p.waiting as f64);
    }
    metrics::gauge!(telemetry::STATS_SAMPLED).set(now.ms() as f64 / 1000.0);
}

/// Samples the store every `every` (`--store-sample-ms`) until `shutdown` turns true, at the
/// service's clock (what is due, and since when, is decided on it).
pub async fn sample_forever(
    storage: Storage,
    clock: crate::domain::Clock,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let now = clock.now();
        match storage.engine.engine_stats(now).await {
            Ok(s) => record_stats(&s, now),
            Err(e) => crate::limited!(warn, "store stats", error = %e, "could not sample the store's task counts"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
