//! Retention policies, the pruning lease, and the pruner's reads and its one deletion path.

use async_trait::async_trait;

use super::*;
use kafka_tasks_domain::Timestamp;
use kafka_tasks_domain::{InstanceId, ProjectId, TaskId, TaskStatus};

#[async_trait]
impl RetentionStore for Postgres {
    async fn get_retention(&self, p: &ProjectId) -> StoreResult<Option<RetentionPolicy>> {
        let client = self.pool.get().await?;
        let st = client.prepare_cached("SELECT policy FROM retention_policies WHERE project_id = $1").await?;
        let text: Option<String> = client.query_opt(&st, &[&p.as_str()]).await?.map(|r| r.try_get(0)).transpose()?;
        text.map(|t| serde_json::from_str(&t).map_err(json_error)).transpose()
    }

    async fn has_retention_policies(&self) -> StoreResult<bool> {
        let client = self.pool.get().await?;
        let st = client.prepare_cached("SELECT EXISTS (SELECT 1 FROM retention_policies)").await?;
        Ok(client.query_one(&st, &[]).await?.try_get(0)?)
    }

    async fn put_retention(
        &self,
        p: &ProjectId,
        policy: Option<RetentionPolicy>,
        now: Timestamp,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let now = now.ms();
        let text = policy.map(|p| serde_json::to_string(&p)).transpose().map_err(json_error)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        match text {
            Some(t) => {
                tx.execute(
                    "INSERT INTO retention_policies (project_id, policy, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (project_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
                    &[&p.as_str(), &t, &now],
                )
                .await?
            }
            None => tx.execute("DELETE FROM retention_policies WHERE project_id = $1", &[&p.as_str()]).await?,
        };
        insert_audit(&tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_prune_lease(&self, owner: &str, now: Timestamp, until: Timestamp) -> StoreResult<bool> {
        let now = now.ms();
        let until = until.ms();
        let client = self.pool.get().await?;
        let st = client
            .prepare_cached(
                "UPDATE prune_lease SET owner = $1, until = $3 WHERE id = 1 \
                 AND (owner IS NULL OR owner = $1 OR until < $2)",
            )
            .await?;
        Ok(client.execute(&st, &[&owner, &now, &until]).await? == 1)
    }

    async fn release_prune_lease(&self, owner: &str) -> StoreResult<()> {
        let client = self.pool.get().await?;
        client.execute("UPDATE prune_lease SET owner = NULL, until = 0 WHERE id = 1 AND owner = $1", &[&owner]).await?;
        Ok(())
    }

    async fn instances_after(
        &self,
        after: Option<&InstanceId>,
        limit: u64,
    ) -> StoreResult<Vec<(InstanceId, ProjectId)>> {
        let client = self.pool.get().await?;
        let st =
            client.prepare_cached("SELECT id, project_id FROM instances WHERE id > $1 ORDER BY id LIMIT $2").await?;
        let limit = limit.min(i64::MAX as u64) as i64;
        client
            .query(&st, &[&after.map_or("", |a| a.as_str()), &limit])
            .await?
            .iter()
            .map(|r| Ok((InstanceId::from_trusted(r.try_get(0)?), ProjectId::from_trusted(r.try_get(1)?))))
            .collect()
    }

    async fn finished_tasks(
        &self,
        i: &InstanceId,
        before: i64,
        after: Option<(i64, TaskId)>,
        limit: u64,
    ) -> StoreResult<Vec<Candidate>> {
        let client = self.pool.get().await?;
        let (at, id) = after.map_or((i64::MIN, String::new()), |(at, id)| (at, id.as_str().to_owned()));
        let st = client
            .prepare_cached(
                // Both creation-ordered views, each an index range scan in order with its own
                // limit, merged (a Merge Append: without the arms' limits the planner may sort
                // the instance's tasks instead). A task in both, a fired scheduled one, is read
                // from the background arm only.
                "(SELECT id, name, status, updated_at, created_at FROM tasks \
                 WHERE instance_id = $1 AND in_background AND created_at < $2 AND (created_at, id) > ($3, $4) \
                 AND due_at IS NULL AND updated_at < $2 ORDER BY created_at, id LIMIT $5) \
                 UNION ALL (SELECT id, name, status, updated_at, created_at FROM tasks \
                 WHERE instance_id = $1 AND schedule_at IS NOT NULL AND NOT in_background AND created_at < $2 \
                 AND (created_at, id) > ($3, $4) AND due_at IS NULL AND updated_at < $2 ORDER BY created_at, id LIMIT $5) \
                 ORDER BY created_at, id LIMIT $5",
            )
            .await?;
        let limit = limit.min(i64::MAX as u64) as i64;
        client
            .query(&st, &[&i.as_str(), &before, &at, &id, &limit])
            .await?
            .iter()
            .map(|r| {
                let status: String = r.try_get(2)?;
                Ok(Candidate {
                    id: TaskId::from_trusted(r.try_get(0)?),
                    name: r.try_get(1)?,
                    status: TaskStatus::parse(&status).ok_or_else(|| corrupt(format!("task status {status:?}")))?,
                    ended_at: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    async fn finished_count(&self, i: &InstanceId) -> StoreResult<u64> {
        let client = self.pool.get().await?;
        let st = client
            .prepare_cached("SELECT coalesce(sum(n), 0)::BIGINT FROM finished_counts WHERE instance_id = $1")
            .await?;
        let n: i64 = client.query_one(&st, &[&i.as_str()]).await?.try_get(0)?;
        Ok(n.max(0) as u64)
    }

    async fn prune_tasks(
        &self,
        i: &InstanceId,
        tasks: Vec<Candidate>,
        rule: PruneRule,
        audit: AuditEvent,
    ) -> StoreResult<u64> {
        let ids: Vec<&str> = tasks.iter().map(|c| c.id.as_str()).collect();
        let statuses: Vec<&str> = tasks.iter().map(|c| c.status.as_str()).collect();
        let ended: Vec<i64> = tasks.iter().map(|c| c.ended_at).collect();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Only rows still as read (a cancelled scheduled task may have been resumed), and never
        // a row another transaction holds: the pruner waits for no one. Locked, then counted out,
        // then deleted: the counters before the count of finished tasks (the delete's trigger),
        // the order of every other write of both (a single delete: its counters, then the
        // trigger), so that two writes sharing a counter shard cannot wait for each other.
        let st = tx
            .prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM tasks t \
                 JOIN unnest($2::TEXT[], $3::TEXT[], $4::BIGINT[]) AS c(cid, cstatus, cended) ON t.id = c.cid \
                 WHERE t.instance_id = $1 AND t.status = c.cstatus AND t.updated_at = c.cended AND t.due_at IS NULL \
                 FOR UPDATE OF t SKIP LOCKED"
            ))
            .await?;
        let rows = tx.query(&st, &[&i.as_str(), &ids, &statuses, &ended]).await?;
        let removed = rows.iter().map(task_from_row).collect::<StoreResult<Vec<_>>>()?;
        if removed.is_empty() {
            return Ok(0);
        }
        count_out(&tx, i, &removed, audit.at).await?;
        let gone: Vec<&str> = removed.iter().map(|t| t.id.as_str()).collect();
        let st = tx.prepare_cached("DELETE FROM tasks WHERE id = ANY($1)").await?;
        tx.execute(&st, &[&gone]).await?;
        insert_audit(&tx, &prune_event(&audit, rule, &removed)).await?;
        tx.commit().await?;
        self.events_committed();
        Ok(removed.len() as u64)
    }
}
