//! The PostgreSQL engine, for several `serve` processes on one database.
//!
//! Concurrency rests on row locks under READ COMMITTED: an operation is admitted with its
//! instance row locked (`FOR UPDATE`), so the one-operation-per-instance rule holds across
//! processes; workers claim due tasks with `FOR UPDATE SKIP LOCKED` and skip a task whose
//! instance row another transaction holds, so claims never wait on each other; every step's end
//! is written only while the worker's lease is current. Migrations run under an advisory lock.
//!
//! One file per capability (`tasks`, `instances`, `engine`, `credentials`, `audit`, `kernels`,
//! `bulk`); this file holds the pool, error classification, migrations and the health probe.
//! The business rules are in `kafka_tasks_domain`: each capability reads rows, calls the rule and
//! writes the rows it decides.

use crate::paging::ViewCode as _;
use std::str::FromStr;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::*;

mod audit;
mod bulk;
mod clusters;
mod control;
mod credentials;
mod engine;
pub(crate) mod events;
mod instances;
mod kernels;
mod retention;
mod runs;
mod tasks;

use audit::*;
use instances::*;
use tasks::*;

const MIGRATIONS: &[&str] = &[
    include_str!("../../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../../migrations/postgres/0002_auth.sql"),
    include_str!("../../../../migrations/postgres/0003_task_buckets.sql"),
    include_str!("../../../../migrations/postgres/0004_task_totals.sql"),
    include_str!("../../../../migrations/postgres/0005_master_key_check.sql"),
    include_str!("../../../../migrations/postgres/0006_kernel_builds.sql"),
    include_str!("../../../../migrations/postgres/0007_retention.sql"),
    include_str!("../../../../migrations/postgres/0008_task_events.sql"),
    include_str!("../../../../migrations/postgres/0009_executors.sql"),
    include_str!("../../../../migrations/postgres/0010_counter_shards.sql"),
    include_str!("../../../../migrations/postgres/0011_cluster_bindings.sql"),
    include_str!("../../../../migrations/postgres/0014_executor_state.sql"),
    include_str!("../../../../migrations/postgres/0012_test_control.sql"),
    include_str!("../../../../migrations/postgres/0015_test_snapshots.sql"),
    include_str!("../../../../migrations/postgres/0017_no_instance_event_index.sql"),
    include_str!("../../../../migrations/postgres/0018_finished_counts.sql"),
    include_str!("../../../../migrations/postgres/0019_event_rows.sql"),
];

/// The counter shard a connection writes (migration 0010): its backend's, so that concurrent
/// writers of one instance's counts take different row locks.
macro_rules! shard {
    () => {
        "(pg_backend_pid() % 16)::SMALLINT"
    };
}
use shard;
/// Serialises migrations of processes that start together.
const MIGRATION_LOCK: i64 = 0x6b61_666b_6174_0001;
/// Serialises the creation of the first credential.
const FIRST_CREDENTIAL_LOCK: i64 = 0x6b61_666b_6174_0002;

pub struct Postgres {
    pool: Pool,
    /// Wakes event streams here and in other processes (see [`events`]).
    events: events::Wakeups,
}

/// Stored data that does not read back, said in words (no error under it).
fn corrupt(why: impl std::fmt::Display) -> StoreError {
    StoreError::counted(StoreError::corrupt(why.to_string()))
}

/// SQLSTATE classes and codes that mean "the database cannot serve now" rather than "this
/// statement is wrong": connection exceptions (08), insufficient resources (53: disk full, out
/// of memory, too many connections), operator intervention (57: admin/crash shutdown, cannot
/// connect now, statement cancelled), a read-only transaction (25006: a standby), and a
/// database that does not exist (3D000: dropped under us).
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57") || code == "25006" || code == "3D000"
}

/// Keeps the driver's error as the source, with what its `Display` leaves out (the SQLSTATE,
/// where, and the table and constraint) as the context, and tells outages from faults.
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::counted(classify(e))
    }
}

fn classify(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let mut context = format!("SQLSTATE {code}");
        if let Some(place) = db.where_() {
            context.push_str(&format!("; where: {place}"));
        }
        if let (Some(table), Some(constraint)) = (db.table(), db.constraint()) {
            context.push_str(&format!("; table {table}, constraint {constraint}"));
        }
        let err =
            if unavailable_sqlstate(code) { StoreError::unavailable(context) } else { StoreError::backend(context) };
        return err.caused_by(e);
    }
    // Not from the server: the connection is closed, refused, or broke mid-way.
    if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) {
        StoreError::unavailable("the connection failed").caused_by(e)
    } else {
        StoreError::backend("the driver failed").caused_by(e)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match e {
            // With `RecyclingMethod::Fast` nothing runs on a pooled connection before it is
            // handed out, so a backend error here comes from connecting: the server is down,
            // refuses connections, or this database does not accept them.
            PoolError::Backend(e) => StoreError::counted(match classify(e) {
                StoreError::Backend { context, source } => {
                    StoreError::Unavailable { context: format!("cannot connect: {context}"), source }
                }
                other => other,
            }),
            PoolError::Closed => StoreError::counted(StoreError::Closed),
            PoolError::Timeout(_) => StoreError::counted(StoreError::unavailable("connection pool").caused_by(e)),
            PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                StoreError::counted(StoreError::backend("connection pool").caused_by(e))
            }
        }
    }
}

/// The longest a request waits for a connection from the pool, or for a new one to open.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Postgres {
    pub async fn open(url: &str, pool_size: usize) -> anyhow::Result<Self> {
        let config = tokio_postgres::Config::from_str(url)?;
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        // Bounded waits: with the server down or every connection stuck, a request answers
        // 503 after POOL_WAIT instead of hanging.
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .build()?;
        let pg = Postgres { pool, events: events::Wakeups::start(config) };
        pg.migrate().await?;
        Ok(pg)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
        let result = async {
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
                )
                .await?;
            let applied: i64 =
                client.query_one("SELECT count(*) FROM schema_migrations", &[]).await?.try_get(0)?;
            if applied as usize > MIGRATIONS.len() {
                return Err(StoreError::corrupt(format!(
                    "the database is at schema version {applied}, newer than this build knows ({})",
                    MIGRATIONS.len()
                )));
            }
            for (n, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
                let tx = client.transaction().await?;
                tx.batch_execute(sql).await?;
                let version = (n + 1) as i32;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    &[&version, &kafka_tasks_domain::now_ms()],
                )
                .await?;
                tx.commit().await?;
            }
            Ok(())
        }
        .await;
        client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
        result
    }
}

#[async_trait]
impl Health for Postgres {
    async fn ping(&self) -> StoreResult<()> {
        let client = self.pool.get().await?;
        client.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    /// `txid_current()` assigns a transaction id, so its commit is a WAL record: it fails on a
    /// read-only server (a standby, `default_transaction_read_only`) and waits on a stalled WAL.
    async fn write_probe(&self) -> StoreResult<()> {
        let client = self.pool.get().await?;
        client.query_one("SELECT txid_current()", &[]).await?;
        Ok(())
    }
}
