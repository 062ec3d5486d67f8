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
        self.write(move |conn| {
            for table in RESET_TABLES {
                conn.execute(&format!("DELETE FROM {table}"), [])?;
            }
            // The events go as retention prunes them: a stream resuming from an older cursor
            // is told that what it missed is gone, and ids are never reused (AUTOINCREMENT).
            conn.execute(
                "UPDATE task_events_pruned SET xid = 0, \
                 id = coalesce((SELECT max(id) FROM task_events), id), \
                 max_id = max(max_id, coalesce((SELECT max(id) FROM task_events), 0)) WHERE one = 1",
                [],
            )?;
            conn.execute("DELETE FROM task_events", [])?;
            conn.execute("UPDATE prune_lease SET owner = NULL, until = 0", [])?;
            if let Some(keep) = credentials {
                conn.execute("DELETE FROM credentials WHERE access_key <> ?1", params![keep])?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    }
}
