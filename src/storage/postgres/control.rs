//! Test control's values and the reset to a clean database ([`ControlStore`]).

use async_trait::async_trait;
use tokio_postgres::error::SqlState;

use super::*;

#[async_trait]
impl ControlStore for Postgres {
    async fn control_value(&self, key: &str) -> StoreResult<Option<String>> {
        let client = self.pool.get().await?;
        let st = client.prepare_cached("SELECT value FROM test_control WHERE key = $1").await?;
        Ok(client.query_opt(&st, &[&key]).await?.map(|r| r.try_get(0)).transpose()?)
    }

    async fn put_control_value(&self, key: &str, value: &str, now: i64) -> StoreResult<()> {
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

    async fn reset_state(&self, credentials: Option<&str>) -> StoreResult<()> {
        let mut client = self.pool.get().await?;
        // The reset takes every table it touches at once and without waiting (NOWAIT), and
        // tries again shortly when one is in use: it never waits while holding a lock, so it
        // can never be half of a deadlock with a request's transaction (a plain TRUNCATE of
        // many tables could, and one side was answered 500). Bounded: about 10 s of tries.
        let mut attempts = 0;
        loop {
            match reset_once(&mut client, credentials).await {
                Err(e) if attempts < 200 && e.code().is_some_and(|c| *c == SqlState::LOCK_NOT_AVAILABLE) => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                done => return Ok(done?),
            }
        }
    }
}

async fn reset_once(
    client: &mut tokio_postgres::Client,
    credentials: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(
        "LOCK TABLE task_runs, cluster_bindings, task_buckets, task_totals, tasks, instances, audit_events, \
         retention_policies, kernel_builds, task_events, task_events_pruned, prune_lease, credentials \
         IN ACCESS EXCLUSIVE MODE NOWAIT",
    )
    .await?;
    // One statement: TRUNCATE takes each table's lock once and leaves no dead rows behind.
    tx.batch_execute(
        "TRUNCATE task_runs, cluster_bindings, task_buckets, task_totals, tasks, instances, audit_events, \
         retention_policies, kernel_builds",
    )
    .await?;
    // The events go as retention prunes them: a stream resuming from an older cursor is
    // told that what it missed is gone.
    if let Some(last) = tx.query_opt("SELECT xid, id FROM task_events ORDER BY xid DESC, id DESC LIMIT 1", &[]).await? {
        let (xid, id): (i64, i64) = (last.try_get(0)?, last.try_get(1)?);
        let max_id: i64 = tx.query_one("SELECT max(id) FROM task_events", &[]).await?.try_get(0)?;
        tx.execute("DELETE FROM task_events", &[]).await?;
        tx.execute(
            "UPDATE task_events_pruned SET xid = $1, id = $2, max_id = greatest(max_id, $3) WHERE one = 1",
            &[&xid, &id, &max_id],
        )
        .await?;
    }
    tx.execute("UPDATE prune_lease SET owner = NULL, until = 0", &[]).await?;
    if let Some(keep) = credentials {
        tx.execute("DELETE FROM credentials WHERE access_key <> $1", &[&keep]).await?;
    }
    tx.commit().await
}
