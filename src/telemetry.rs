//! Every metric the service exports, in one place: names, help texts, histogram buckets, the
//! process-wide recorder, and the periodic sampler of the gauges that come from the store.
//!
//! Label values are never chosen by a client: methods come from a fixed set, routes are route
//! templates (or `unmatched`), statuses are classes, operations and steps are the code's own
//! names, reasons and kinds are enumerations. See docs/operations.md for what each is for.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// HTTP.
pub const HTTP_REQUESTS: &str = "kafka_tasks_http_requests_total";
pub const HTTP_DURATION: &str = "kafka_tasks_http_request_duration_seconds";
pub const HTTP_IN_FLIGHT: &str = "kafka_tasks_http_requests_in_flight";
/// Requests refused by the body guard (`reason`: uri_too_long, body_too_large, body_timeout,
/// body_malformed). Authentication failures, throttling and body-budget refusals have their own
/// families below; a request is counted in exactly one of them.
pub const HTTP_REJECTED: &str = "kafka_tasks_http_rejected_total";
/// The reasons of [`HTTP_REJECTED`].
pub const REJECT_REASONS: &[&str] = &["uri_too_long", "body_too_large", "body_timeout", "body_malformed"];
/// Written in src/auth; named here so that every name is listed in one place.
pub const AUTH_FAILURES: &str = "kafka_tasks_auth_failures_total";
pub const RATE_LIMITED: &str = "kafka_tasks_rate_limited_total";
pub const BODY_BUDGET_REFUSALS: &str = "kafka_tasks_body_budget_refusals_total";
/// Connections the serve loop closed itself (`reason`: one of [`CONNECTION_CLOSE_REASONS`]).
pub const CONNECTIONS_CLOSED: &str = "kafka_tasks_connections_closed_total";
/// The reasons of [`CONNECTIONS_CLOSED`]: past the per-address cap at accept; a response the
/// client did not read within the write timeout; a head or idle timeout; a response's set end
/// (an event stream's lifetime); with TLS, a failed handshake, one not done within its timeout,
/// and plain HTTP sent to the TLS port.
pub const CONNECTION_CLOSE_REASONS: &[&str] = &[
    "per_address_cap",
    "write_stalled",
    "head_or_idle",
    "response_end",
    "tls_handshake",
    "tls_handshake_timeout",
    "plain_http_on_tls",
];
/// Written in src/http/instances.rs (`name` is the operation's task name).
pub const SUBMITTED: &str = "kafka_tasks_submitted_total";

// Engine.
/// Unfinished tasks by status (CREATED, EXECUTING), sampled from the store.
pub const TASKS: &str = "kafka_tasks_tasks";
/// Tasks due now but not taken by any worker (CREATED and due, or EXECUTING past their lease).
pub const QUEUE_DEPTH: &str = "kafka_tasks_queue_depth";
pub const QUEUE_OLDEST_AGE: &str = "kafka_tasks_queue_oldest_age_seconds";
/// EXECUTING tasks whose lease has expired (no worker renewed it).
pub const LEASE_EXPIRED: &str = "kafka_tasks_lease_expired_tasks";
/// Tasks this process is running a step of now.
pub const RUNNING_STEPS: &str = "kafka_tasks_running_steps";
pub const STEP_DURATION: &str = "kafka_tasks_step_duration_seconds";
pub const LEASE_TAKEOVERS: &str = "kafka_tasks_lease_takeovers_total";
pub const SCHEDULED_FIRED: &str = "kafka_tasks_scheduled_fired_total";
/// Tasks ended, by `operation` and `status` (SUCCESS, FAILED).
pub const TASK_OUTCOMES: &str = "kafka_tasks_task_outcomes_total";
/// Executor runs (one per step, or per task for a per-task program), by `operation` (task
/// name), `executor` (exec, webhook) and `outcome` (success, failure, timeout, stopped, lost).
pub const EXECUTOR_RUNS: &str = "kafka_tasks_executor_runs_total";
pub const EXECUTOR_DURATION: &str = "kafka_tasks_executor_run_duration_seconds";
/// The outcomes of [`EXECUTOR_RUNS`].
pub const EXECUTOR_OUTCOMES: &[&str] = &["success", "failure", "timeout", "stopped", "lost"];
/// When the store was last sampled (Unix seconds); stale when the sampler is stuck.
pub const STATS_SAMPLED: &str = "kafka_tasks_store_stats_timestamp_seconds";

// Store.
pub use crate::storage::telemetry::{SQLITE_COMMIT_DURATION, SQLITE_GROUP_SIZE, STORE_ERRORS};
/// PostgreSQL pool connections by `state` (in_use, idle).
pub const PG_POOL_CONNECTIONS: &str = "kafka_tasks_pg_pool_connections";
pub const PG_POOL_WAITING: &str = "kafka_tasks_pg_pool_waiting";

pub const BUILD_INFO: &str = "kafka_tasks_build_info";

/// HTTP latency: a show is well under a millisecond, a create on a busy SQLite disk tens of ms.
const HTTP_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Steps last from nothing to minutes (times `--time-scale`).
const STEP_BUCKETS: &[f64] = &[0.01, 0.05, 0.25, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];
/// An fsync'd commit: a fraction of a millisecond on a fast disk, seconds on a stalled one.
const COMMIT_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
/// Writes per group commit (at most 512, the SQLite writer's largest group).
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// How often recorded histogram samples are folded into their buckets when nothing scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process-wide Prometheus recorder (metrics has one global recorder), with a thread that
/// runs its upkeep and samples the process metrics, so that samples recorded between scrapes
/// never pile up.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(install).clone()
}

fn builder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), HTTP_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(STEP_DURATION.into()), STEP_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(EXECUTOR_DURATION.into()), STEP_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(SQLITE_COMMIT_DURATION.into()), COMMIT_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(SQLITE_GROUP_SIZE.into()), GROUP_BUCKETS)
}

fn install() -> PrometheusHandle {
    let builder = builder().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "histogram buckets refused; using summaries");
        PrometheusBuilder::new()
    });
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::warn!("a metrics recorder was already installed");
    }
    describe();
    initialise();
    let process = metrics_process::Collector::default();
    process.describe();
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            process.collect();
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
    }
    handle
}

fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by method, route template and status class.");
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request, by method, route and status class."
    );
    describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being handled now.");
    describe_counter!(HTTP_REJECTED, "Requests refused by the body guard, by reason.");
    describe_counter!(AUTH_FAILURES, "Requests refused by authentication, by reason.");
    describe_counter!(RATE_LIMITED, "Requests refused by a rate limit, by reason.");
    describe_counter!(BODY_BUDGET_REFUSALS, "Requests refused because the body memory budget was spent.");
    describe_counter!(CONNECTIONS_CLOSED, "Connections the server closed itself, by reason.");
    describe_counter!(SUBMITTED, "Tasks submitted, by task name.");
    describe_gauge!(TASKS, "Unfinished tasks in the store, by status (sampled).");
    describe_gauge!(QUEUE_DEPTH, "Tasks due but not taken by a worker (sampled).");
    describe_gauge!(QUEUE_OLDEST_AGE, Unit::Seconds, "How long the oldest due, untaken task has waited (sampled).");
    describe_gauge!(LEASE_EXPIRED, "EXECUTING tasks whose lease has expired (sampled).");
    describe_gauge!(RUNNING_STEPS, "Tasks this process is running a step of.");
    describe_histogram!(STEP_DURATION, Unit::Seconds, "Time a step took, by operation and step.");
    describe_counter!(LEASE_TAKEOVERS, "Running tasks taken over after their lease expired or was released.");
    describe_counter!(SCHEDULED_FIRED, "Scheduled tasks started when their time came.");
    describe_counter!(TASK_OUTCOMES, "Tasks ended, by operation and status.");
    describe_counter!(EXECUTOR_RUNS, "Executor runs ended, by operation, executor kind and outcome.");
    describe_histogram!(
        EXECUTOR_DURATION,
        Unit::Seconds,
        "Time an executor run took, by operation, executor kind and outcome."
    );
    describe_gauge!(STATS_SAMPLED, Unit::Seconds, "When the store gauges were last sampled.");
    describe_histogram!(SQLITE_COMMIT_DURATION, Unit::Seconds, "Time of a SQLite group commit (COMMIT and fsync).");
    describe_histogram!(SQLITE_GROUP_SIZE, "Writes per SQLite group commit.");
    describe_gauge!(PG_POOL_CONNECTIONS, "PostgreSQL pool connections, by state (in_use, idle).");
    describe_gauge!(PG_POOL_WAITING, "Requests waiting for a PostgreSQL pool connection.");
    describe_counter!(STORE_ERRORS, "Store errors, by kind.");
    describe_gauge!(BUILD_INFO, "Always 1; the labels say the version and the storage engine.");
}

/// The operations' task names, so that their outcome counters exist at 0 from the start: a
/// rate over a counter that appears at 1 misses its first increment, and the failure-ratio alert
/// would miss a process's first failure.
const OPERATIONS: &[&str] = &crate::domain::operation::TASK_NAMES;

/// Series that must exist at 0 before their first event, for the same reason.
fn initialise() {
    for op in OPERATIONS {
        metrics::counter!(SUBMITTED, "name" => *op).increment(0);
        for status in ["SUCCESS", "FAILED"] {
            metrics::counter!(TASK_OUTCOMES, "operation" => *op, "status" => status).increment(0);
        }
    }
    for kind in ["backend", "corrupt", "closed", "unavailable"] {
        metrics::counter!(STORE_ERRORS, "kind" => kind).increment(0);
    }
    for reason in REJECT_REASONS {
        metrics::counter!(HTTP_REJECTED, "reason" => *reason).increment(0);
    }
    metrics::counter!(BODY_BUDGET_REFUSALS).increment(0);
    for reason in CONNECTION_CLOSE_REASONS {
        metrics::counter!(CONNECTIONS_CLOSED, "reason" => *reason).increment(0);
    }
    metrics::counter!(LEASE_TAKEOVERS).increment(0);
    metrics::counter!(SCHEDULED_FIRED).increment(0);
    metrics::gauge!(HTTP_IN_FLIGHT).increment(0.0);
    metrics::gauge!(RUNNING_STEPS).increment(0.0);
}

/// Records `kafka_tasks_build_info` for the storage engine named by `database`.
pub fn build_info(database: &str) {
    let engine = if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        "postgres"
    } else {
        "sqlite"
    };
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "engine" => engine).set(1.0);
}

/// The label of a step: its name when the operation has such a step (names come from the code),
/// else `other`, so that a stored record can never add a label value.
pub fn step_label(op: &crate::domain::operation::Operation, stored: &str) -> String {
    if op.steps(1.0).iter().any(|s| s.name == stored) { stored.to_owned() } else { "other".to_owned() }
}

/// Counts what a claim did: a takeover of a running task, or a scheduled task firing.
pub fn claimed(takeover: bool, scheduled: bool) {
    if takeover {
        metrics::counter!(LEASE_TAKEOVERS).increment(1);
    } else if scheduled {
        metrics::counter!(SCHEDULED_FIRED).increment(1);
    }
}

/// Counts a task's end under its operation's name.
pub fn task_ended(operation: &'static str, status: crate::domain::TaskStatus) {
    metrics::counter!(TASK_OUTCOMES, "operation" => operation, "status" => status.as_str()).increment(1);
}

/// Records a finished step's duration (from its start to its end being stored).
pub fn step_done(op: &crate::domain::operation::Operation, name: &'static str, step: &str, took: Duration) {
    metrics::histogram!(STEP_DURATION, "operation" => name, "step" => step_label(op, step)).record(took.as_secs_f64());
}

/// Counts an executor run's end and records its duration. Every label is a fixed name: the
/// operation's task name, the executor kind, an outcome of [`EXECUTOR_OUTCOMES`].
pub fn executor_run(operation: &'static str, executor: &'static str, outcome: &'static str, took: Duration) {
    metrics::counter!(EXECUTOR_RUNS, "operation" => operation, "executor" => executor, "outcome" => outcome)
        .increment(1);
    metrics::histogram!(EXECUTOR_DURATION, "operation" => operation, "executor" => executor, "outcome" => outcome)
        .record(took.as_secs_f64());
}

/// Holds [`RUNNING_STEPS`] up while a task runs in this process.
pub struct RunningStep(());

impl RunningStep {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        metrics::gauge!(RUNNING_STEPS).increment(1.0);
        RunningStep(())
    }
}

impl Drop for RunningStep {
    fn drop(&mut self) {
        metrics::gauge!(RUNNING_STEPS).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_accepted_and_sorted() {
        assert!(builder().is_ok());
        for b in [HTTP_BUCKETS, STEP_BUCKETS, COMMIT_BUCKETS, GROUP_BUCKETS] {
            assert!(b.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn step_labels_are_the_operations_own_step_names() {
        let op = crate::domain::operation::Operation::Restart;
        let first = op.steps(1.0).first().map(|s| s.name.clone()).unwrap_or_default();
        assert!(!first.is_empty());
        assert_eq!(step_label(&op, &first), first);
        assert_eq!(step_label(&op, "'; DROP TABLE tasks; --"), "other");
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let counters = [
            HTTP_REQUESTS,
            HTTP_REJECTED,
            AUTH_FAILURES,
            RATE_LIMITED,
            BODY_BUDGET_REFUSALS,
            SUBMITTED,
            LEASE_TAKEOVERS,
            SCHEDULED_FIRED,
            TASK_OUTCOMES,
            STORE_ERRORS,
            EXECUTOR_RUNS,
        ];
        for c in counters {
            assert!(c.starts_with("kafka_tasks_") && c.ends_with("_total"), "{c}");
        }
        for h in [HTTP_DURATION, STEP_DURATION, SQLITE_COMMIT_DURATION, EXECUTOR_DURATION] {
            assert!(h.ends_with("_seconds"), "{h}");
        }
    }
}
