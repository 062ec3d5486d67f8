//! Test control's values and the reset to a clean database ([`ControlStore`]).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::*;

/// Cleared by a reset, children before parents.
pub(crate) const RESET_TABLES: &[&str] = &[
    "task_runs",
    "cluster_bindings",
    "task_buckets",
    "task_totals",
    "tasks",
    "instances",
    "audit_events",
    "retention_policies",
    "kernel_builds",
];

#[async_trait]
impl ControlStore for Sqlite {
    async fn control_value(&self, key: &str) -> StoreResult<Option<String>> {
        let key = key.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM test_control WHERE key = ?1")?
                .query_row(params![key], |r| r.get::<_, String>(0))
                .optional()?)
        })
        .await
    }

    async fn put_control_value(&self, key: &str, value: &str, now: i64) -> StoreResult<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO test_control (key, value, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )?
            .execute(params![key, value, now])?;
            Ok(())
        })
        .await
    }

    async fn reset_state(&self, credentials: Option<&str>) -> StoreResult<()> {
        let credentials = credentials.map(str::to_owned);
        let path = self.path.clone();
        self.write_alone(move |live| swap_for_fresh(live, &path, credentials.as_deref())).await
    }
}

/// The reset on SQLite: a fresh database is built in memory (the migrations, then the rows
/// that stay copied from the live file: credentials, test control's values, the master key
/// check, executor state, the AUTOINCREMENT counters, the event log's prune state) and copied
/// over the live database in one step with SQLite's online backup, which writes only the fresh
/// database's few pages and commits them as one transaction that other connections see like any
/// other. Deleting 10,000 tasks and their events row by row instead rewrote every page of them
/// (hundreds of milliseconds on the shared test machine; docs/notes/people.md). Runs on the
/// writer connection between group commits, so no write of this process falls in between.
fn swap_for_fresh(live: &mut Connection, path: &std::path::Path, keep_credential: Option<&str>) -> StoreResult<()> {
    let page_size: i64 = live.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let mut fresh = Connection::open_in_memory()?;
    fresh.pragma_update(None, "page_size", page_size)?;
    migrate(&mut fresh)?;
    fresh.pragma_update(None, "application_id", APPLICATION_ID)?;
    fresh.execute("ATTACH DATABASE ?1 AS live", params![path.display().to_string()])?;
    let tables: Vec<String> = fresh
        .prepare("SELECT name FROM live.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    let tx = fresh.transaction()?;
    for table in tables.iter().filter(|t| !RESET_TABLES.contains(&t.as_str()) && *t != "task_events") {
        tx.execute(&format!("DELETE FROM main.\"{table}\""), [])?;
        if table == "credentials" {
            if let Some(keep) = keep_credential {
                tx.execute(
                    "INSERT INTO main.credentials SELECT * FROM live.credentials WHERE access_key = ?1",
                    params![keep],
                )?;
            }
            if keep_credential.is_some() {
                continue;
            }
        }
        tx.execute(&format!("INSERT INTO main.\"{table}\" SELECT * FROM live.\"{table}\""), [])?;
    }
    tx.execute("DELETE FROM main.sqlite_sequence", [])?;
    tx.execute("INSERT INTO main.sqlite_sequence SELECT * FROM live.sqlite_sequence", [])?;
    // The events go as retention prunes them: a stream resuming from an older cursor is told
    // that what it missed is gone, and ids are never reused (the AUTOINCREMENT counter stays).
    tx.execute(
        "UPDATE main.task_events_pruned SET xid = 0, \
         id = coalesce((SELECT max(id) FROM live.task_events), id), \
         max_id = max(max_id, coalesce((SELECT max(id) FROM live.task_events), 0)) WHERE one = 1",
        [],
    )?;
    tx.execute("UPDATE main.prune_lease SET owner = NULL, until = 0", [])?;
    tx.commit()?;
    fresh.execute("DETACH DATABASE live", [])?;
    let backup = rusqlite::backup::Backup::new(&fresh, live)?;
    match backup.step(-1)? {
        rusqlite::backup::StepResult::Done => Ok(()),
        other => Err(StoreError::Unavailable(format!("the reset could not replace the database: {other:?}"))),
    }
}
