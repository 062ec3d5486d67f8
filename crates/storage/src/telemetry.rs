//! The metrics the store records itself. The server describes them with the others
//! (`telemetry` in the `kafka-tasks` crate) and serves them at `/metrics`.

/// How long a SQLite group commit took (the writer thread's transaction of many jobs).
pub const SQLITE_COMMIT_DURATION: &str = "kafka_tasks_sqlite_commit_duration_seconds";
/// How many write jobs a SQLite group commit carried.
pub const SQLITE_GROUP_SIZE: &str = "kafka_tasks_sqlite_group_commit_size";
/// Store errors by `kind` (the StoreError variant: backend, corrupt, closed, unavailable).
pub const STORE_ERRORS: &str = "kafka_tasks_store_errors_total";

/// Counts a store error of `kind` (see `StoreError::kind`) in [`STORE_ERRORS`].
pub fn store_error(kind: &'static str) {
    metrics::counter!(STORE_ERRORS, "kind" => kind).increment(1);
}
