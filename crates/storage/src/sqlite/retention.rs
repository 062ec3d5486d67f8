//! Retention policies, the pruning lease, and the pruner's reads and its one deletion path.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::*;
use kafka_tasks_domain::Timestamp;
use kafka_tasks_domain::deletion::may_delete;
use kafka_tasks_domain::{InstanceId, ProjectId, TaskId, TaskStatus};

/// An instance's finished tasks created and ended before `?2`, after the `(created_at, id)`
/// cursor `(?3, ?4)`, oldest creation first: both creation-ordered views, each an index range
/// scan, merged (a task in both, a fired scheduled one, is read from the background arm only).
const FINISHED_TASKS: &str = "SELECT id, name, status, updated_at, created_at FROM tasks \
     WHERE instance_id = ?1 AND in_background = 1 AND created_at < ?2 AND (created_at, id) > (?3, ?4) \
     AND due_at IS NULL AND updated_at < ?2 \
     UNION ALL SELECT id, name, status, updated_at, created_at FROM tasks \
     WHERE instance_id = ?1 AND schedule_at IS NOT NULL AND in_background = 0 AND created_at < ?2 \
     AND (created_at, id) > (?3, ?4) AND due_at IS NULL AND updated_at < ?2 \
     ORDER BY 5, 1 LIMIT ?5";

#[async_trait]
impl RetentionStore for Sqlite {
    async fn get_retention(&self, p: &ProjectId) -> StoreResult<Option<RetentionPolicy>> {
        let text: Option<String> = self
            .read(|conn| {
                Ok(conn
                    .prepare_cached("SELECT policy FROM retention_policies WHERE project_id = ?1")?
                    .query_row(params![p.as_str()], |r| r.get(0))
                    .optional()?)
            })
            .await?;
        text.map(|t| serde_json::from_str(&t).map_err(json_error)).transpose()
    }

    async fn has_retention_policies(&self) -> StoreResult<bool> {
        self.read(|conn| {
            Ok(conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM retention_policies)")?.query_row([], |r| r.get(0))?)
        })
        .await
    }

    async fn put_retention(
        &self,
        p: &ProjectId,
        policy: Option<RetentionPolicy>,
        now: Timestamp,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let now = now.ms();
        let p = p.clone();
        let text = policy.map(|p| serde_json::to_string(&p)).transpose().map_err(json_error)?;
        self.write(move |conn| {
            match &text {
                Some(t) => conn
                    .prepare_cached(
                        "INSERT INTO retention_policies (project_id, policy, updated_at) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (project_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
                    )?
                    .execute(params![p.as_str(), t, now])?,
                None => conn
                    .prepare_cached("DELETE FROM retention_policies WHERE project_id = ?1")?
                    .execute(params![p.as_str()])?,
            };
            insert_audit(conn, &audit)
        })
        .await
    }

    async fn take_prune_lease(&self, owner: &str, now: Timestamp, until: Timestamp) -> StoreResult<bool> {
        let now = now.ms();
        let until = until.ms();
        let owner = owner.to_owned();
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE prune_lease SET owner = ?1, until = ?3 WHERE id = 1 \
                     AND (owner IS NULL OR owner = ?1 OR until < ?2)",
                )?
                .execute(params![owner, now, until])?;
            Ok(n == 1)
        })
        .await
    }

    async fn release_prune_lease(&self, owner: &str) -> StoreResult<()> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE prune_lease SET owner = NULL, until = 0 WHERE id = 1 AND owner = ?1")?
                .execute(params![owner])?;
            Ok(())
        })
        .await
    }

    async fn instances_after(
        &self,
        after: Option<&InstanceId>,
        limit: u64,
    ) -> StoreResult<Vec<(InstanceId, ProjectId)>> {
        self.read(|conn| {
            let mut st =
                conn.prepare_cached("SELECT id, project_id FROM instances WHERE id > ?1 ORDER BY id LIMIT ?2")?;
            let rows = st
                .query_map(params![after.map_or("", |a| a.as_str()), limit.min(i64::MAX as u64) as i64], |r| {
                    Ok((InstanceId::from_trusted(r.get(0)?), ProjectId::from_trusted(r.get(1)?)))
                })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn finished_tasks(
        &self,
        i: &InstanceId,
        before: i64,
        after: Option<(i64, TaskId)>,
        limit: u64,
    ) -> StoreResult<Vec<Candidate>> {
        self.read(|conn| {
            let (at, id) = after.map_or((i64::MIN, String::new()), |(at, id)| (at, id.as_str().to_owned()));
            let mut st = conn.prepare_cached(FINISHED_TASKS)?;
            let rows = st.query_map(params![i.as_str(), before, at, id, limit.min(i64::MAX as u64) as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?;
            let mut out = Vec::new();
            for r in rows {
                let (id, name, status, ended_at, created_at) = r?;
                let status = TaskStatus::parse(&status).ok_or_else(|| corrupt(format!("task status {status:?}")))?;
                out.push(Candidate { id: TaskId::from_trusted(id), name, status, ended_at, created_at });
            }
            Ok(out)
        })
        .await
    }

    async fn finished_count(&self, i: &InstanceId) -> StoreResult<u64> {
        self.read(|conn| {
            let n: i64 = conn
                .prepare_cached("SELECT finished_tasks FROM instances WHERE id = ?1")?
                .query_row(params![i.as_str()], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            Ok(n.max(0) as u64)
        })
        .await
    }

    async fn prune_tasks(
        &self,
        i: &InstanceId,
        tasks: Vec<Candidate>,
        rule: PruneRule,
        audit: AuditEvent,
    ) -> StoreResult<u64> {
        let i = i.clone();
        let n = self
            .write(move |conn| {
                // The writer is serial: what is read here is what is deleted.
                let mut removed = Vec::with_capacity(tasks.len());
                let mut st = conn.prepare_cached(&format!(
                    "SELECT {SUMMARY_COLUMNS} FROM tasks WHERE id = ?1 AND instance_id = ?2"
                ))?;
                for c in &tasks {
                    let Some(r) = st.query_row(params![c.id.as_str(), i.as_str()], task_from_row).optional()? else {
                        continue;
                    };
                    let r = r?;
                    if may_delete(&r) && r.status == c.status && r.updated_at == c.ended_at {
                        removed.push(r);
                    }
                }
                drop(st);
                if removed.is_empty() {
                    return Ok(0);
                }
                remove_records(conn, &i, &removed, audit.at)?;
                insert_audit(conn, &prune_event(&audit, rule, &removed))?;
                Ok(removed.len() as u64)
            })
            .await?;
        if n > 0 {
            self.events_committed();
        }
        Ok(n)
    }
}
