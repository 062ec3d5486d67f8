//! Test control's values and the reset to a clean database ([`ControlStore`]).

use async_trait::async_trait;
use kafka_tasks_domain::Timestamp;
use tokio_postgres::error::SqlState;

use super::*;

#[async_trait]
impl ControlStore for Postgres {
    async fn control_value(&self, key: &str) -> StoreResult<Option<String>> {
        let client = self.pool.get().await?;
        let st = client.prepare_cached("SELECT value FROM test_control WHERE key = $1").await?;
        Ok(client.query_opt(&st, &[&key]).await?.map(|r| r.try_get(0)).transpose()?)
    }

    async fn put_control_value(&self, key: &str, value: &str, now: Timestamp) -> StoreResult<()> {
        let now = now.ms();
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO test_control (key, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                &[&key, &value, &now],
            )
            .await?;
        Ok(())
    }

    async fn save_snapshot(
        &self,
        name: &str,
        now: Timestamp,
        max_count: u64,
        max_bytes: u64,
    ) -> StoreResult<SnapshotSaved> {
        let now = now.ms();
        let mut client = self.pool.get().await?;
        // One view of every table: REPEATABLE READ reads them all as of the first statement.
        let tx =
            client.build_transaction().isolation_level(tokio_postgres::IsolationLevel::RepeatableRead).start().await?;
        let others: i64 =
            tx.query_one("SELECT count(*) FROM test_snapshots WHERE name <> $1", &[&name]).await?.try_get(0)?;
        if others as u64 >= max_count {
            return Ok(SnapshotSaved::TooMany);
        }
        let mut data = String::from("{");
        for table in SNAPSHOT_TABLES.iter().chain(&["task_events"]) {
            let order = if *table == "task_events" { " ORDER BY xid, id" } else { "" };
            let rows: String = tx
                .query_one(&format!("SELECT coalesce(json_agg(t{order}), '[]')::text FROM \"{table}\" t"), &[])
                .await?
                .try_get(0)?;
            if data.len() > 1 {
                data.push(',');
            }
            data.push_str(&format!("\"{table}\":{rows}"));
            if data.len() as u64 > max_bytes {
                return Ok(SnapshotSaved::TooBig(data.len() as u64));
            }
        }
        data.push('}');
        let size = data.len() as i64;
        tx.execute(
            "INSERT INTO test_snapshots (name, created_at, size_bytes, data) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET created_at = excluded.created_at, \
             size_bytes = excluded.size_bytes, data = excluded.data",
            &[&name, &now, &size, &data],
        )
        .await?;
        tx.commit().await?;
        Ok(SnapshotSaved::Saved(SnapshotInfo { name: name.to_owned(), created_at: now, size_bytes: size as u64 }))
    }

    async fn restore_snapshot(&self, name: &str) -> StoreResult<bool> {
        let mut client = self.pool.get().await?;
        let Some(row) = client.query_opt("SELECT data FROM test_snapshots WHERE name = $1", &[&name]).await? else {
            return Ok(false);
        };
        let data: String = row.try_get(0)?;
        let tables: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&data).map_err(|e| StoreError::corrupt(format!("snapshot {name}")).caused_by(e))?;
        // Like the reset: every table at once and without waiting, so a restore racing requests
        // is never half of a deadlock.
        without_waiting_for_locks!(restore_once(&mut client, &tables))?;
        Ok(true)
    }

    async fn list_snapshots(&self) -> StoreResult<Vec<SnapshotInfo>> {
        let client = self.pool.get().await?;
        let rows = client.query("SELECT name, created_at, size_bytes FROM test_snapshots ORDER BY name", &[]).await?;
        rows.iter()
            .map(|r| {
                Ok(SnapshotInfo {
                    name: r.try_get(0)?,
                    created_at: r.try_get(1)?,
                    size_bytes: r.try_get::<_, i64>(2)? as u64,
                })
            })
            .collect()
    }

    async fn delete_snapshot(&self, name: &str) -> StoreResult<bool> {
        let client = self.pool.get().await?;
        Ok(client.execute("DELETE FROM test_snapshots WHERE name = $1", &[&name]).await? > 0)
    }

    async fn reset_state(&self, credentials: Option<&str>) -> StoreResult<()> {
        let mut client = self.pool.get().await?;
        Ok(without_waiting_for_locks!(reset_once(&mut client, credentials))?)
    }
}

/// Runs `$once`, a transaction that takes every table it touches at once and without waiting
/// (`LOCK … NOWAIT`), again shortly while one is in use: it never waits while holding a lock, so
/// it can never be half of a deadlock with a request's transaction (a plain TRUNCATE of many
/// tables could, and one side was answered 500). Bounded: about 10 s of tries. (A macro, not a
/// function taking an async closure: such a closure's future is not `Send` under `async_trait`.)
macro_rules! without_waiting_for_locks {
    ($once:expr) => {{
        let mut attempts = 0;
        loop {
            match $once.await {
                Err(e) if attempts < 200 && e.code().is_some_and(|c| *c == SqlState::LOCK_NOT_AVAILABLE) => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                done => break done,
            }
        }
    }};
}
use without_waiting_for_locks;

async fn restore_once(
    client: &mut tokio_postgres::Client,
    tables: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let all = SNAPSHOT_TABLES.join(", ");
    tx.batch_execute(&format!(
        "LOCK TABLE cluster_bindings, finished_counts, {all}, task_events, task_events_pruned \
         IN ACCESS EXCLUSIVE MODE NOWAIT"
    ))
    .await?;
    // The counts of finished tasks go too: the tasks' inserts count them again (a trigger), exact
    // whatever the snapshot's age.
    tx.batch_execute(&format!("TRUNCATE cluster_bindings, finished_counts, {all}")).await?;
    prune_every_event(&tx).await?;
    for table in SNAPSHOT_TABLES {
        let rows = tables.get(*table).map(|v| v.to_string()).unwrap_or_else(|| "[]".into());
        tx.execute(
            &format!(
                "INSERT INTO \"{table}\" SELECT * FROM json_populate_recordset(NULL::\"{table}\", $1::text::json)"
            ),
            &[&rows],
        )
        .await?;
    }
    // Events get new ids (and this transaction's xid), in their order: ids never go back.
    let rows = tables.get("task_events").map(|v| v.to_string()).unwrap_or_else(|| "[]".into());
    tx.execute(
        "INSERT INTO task_events (id, at, project_id, instance_id, task_id, kind, data, n) \
         SELECT nextval('task_events_block') + coalesce(n, 1) - 1, at, project_id, instance_id, task_id, kind, data, \
         coalesce(n, 1) FROM json_populate_recordset(NULL::task_events, $1::text::json) ORDER BY xid, id",
        &[&rows],
    )
    .await?;
    tx.commit().await
}

async fn reset_once(
    client: &mut tokio_postgres::Client,
    credentials: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(
        "LOCK TABLE task_runs, cluster_bindings, task_buckets, task_totals, finished_counts, tasks, instances, audit_events, \
         retention_policies, kernel_builds, task_events, task_events_pruned, prune_lease, credentials \
         IN ACCESS EXCLUSIVE MODE NOWAIT",
    )
    .await?;
    // One statement: TRUNCATE takes each table's lock once and leaves no dead rows behind.
    tx.batch_execute(
        "TRUNCATE task_runs, cluster_bindings, task_buckets, task_totals, finished_counts, tasks, instances, audit_events, \
         retention_policies, kernel_builds",
    )
    .await?;
    prune_every_event(&tx).await?;
    tx.execute("UPDATE prune_lease SET owner = NULL, until = 0", &[]).await?;
    if let Some(keep) = credentials {
        tx.execute("DELETE FROM credentials WHERE access_key <> $1", &[&keep]).await?;
    }
    tx.commit().await
}

/// Removes every task event as retention prunes them: a stream resuming from an older cursor
/// is told that what it missed is gone.
async fn prune_every_event(tx: &tokio_postgres::Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    if let Some(last) = tx.query_opt("SELECT xid, id FROM task_events ORDER BY xid DESC, id DESC LIMIT 1", &[]).await? {
        let (xid, id): (i64, i64) = (last.try_get(0)?, last.try_get(1)?);
        let max_id: i64 = tx.query_one("SELECT max(id) FROM task_events", &[]).await?.try_get(0)?;
        tx.execute("DELETE FROM task_events", &[]).await?;
        tx.execute(
            "UPDATE task_events_pruned SET xid = $1, id = $2, max_id = greatest(max_id, $3), \
             counted_xid = $1, counted_id = $2, counted = 0 WHERE one = 1",
            &[&xid, &id, &max_id],
        )
        .await?;
    }
    Ok(())
}
