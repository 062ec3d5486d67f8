//! What executors keep with a task: attempts, progress, failures, output and webhook answers.

use async_trait::async_trait;

use super::engine::end_step;
use super::*;
use kafka_tasks_domain::Timestamp;
use kafka_tasks_domain::transition;
use kafka_tasks_domain::{StepFailure, TaskId};

#[async_trait]
impl RunStore for Postgres {
    async fn begin_attempt(
        &self,
        owner: &str,
        task: &TaskId,
        step: usize,
        token_hash: Option<String>,
        now: Timestamp,
    ) -> StoreResult<Option<u32>> {
        let now = now.ms();
        let client = self.pool.get().await?;
        // The first attempt at a step, or one more at the step begun last (the task row is
        // checked for our lease in the same statement).
        let st = client
            .prepare_cached(
                "INSERT INTO task_runs (task_id, step, attempt, token_hash, updated_at) \
                 SELECT id, $2, 1, $3, $4 FROM tasks \
                 WHERE id = $1 AND lease_owner = $5 AND status = 'EXECUTING' AND due_at >= $4 \
                 ON CONFLICT (task_id) DO UPDATE SET \
                   attempt = CASE WHEN task_runs.step = excluded.step THEN task_runs.attempt + 1 ELSE 1 END, \
                   step = excluded.step, progress = NULL, message = '', reason = NULL, output_tail = '', \
                   token_hash = excluded.token_hash, answer = NULL, updated_at = excluded.updated_at \
                 RETURNING attempt",
            )
            .await?;
        let row = client.query_opt(&st, &[&task.as_str(), &(step as i64), &token_hash, &now, &owner]).await?;
        Ok(row.map(|r| r.try_get::<_, i64>(0)).transpose()?.map(|a| a.clamp(1, i64::from(u32::MAX)) as u32))
    }

    async fn report(&self, owner: &str, task: &TaskId, step: usize, r: Report, now: Timestamp) -> StoreResult<()> {
        let now = now.ms();
        let client = self.pool.get().await?;
        let st = client
            .prepare_cached(
                "UPDATE task_runs SET progress = coalesce($3, progress), message = coalesce($4, message), \
                 output_tail = coalesce($5, output_tail), updated_at = $6 WHERE task_id = $1 AND step = $2 \
                 AND EXISTS (SELECT 1 FROM tasks WHERE id = $1 AND lease_owner = $7 AND status = 'EXECUTING')",
            )
            .await?;
        let progress = r.progress.map(i64::from);
        client
            .execute(&st, &[&task.as_str(), &(step as i64), &progress, &r.message, &r.output_tail, &now, &owner])
            .await?;
        Ok(())
    }

    async fn fail_step(
        &self,
        owner: &str,
        task_id: &TaskId,
        step: usize,
        now: Timestamp,
        reason: String,
        output_tail: String,
        audit: AuditEvent,
    ) -> StoreResult<StepOutcome> {
        let now = now.ms();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let failure = StepFailure::executor(&reason);
        let ended = end_step(&tx, owner, task_id, now, 0, |task, inst, op| {
            transition::fail_step(task, inst, op, step, now, failure)
        })
        .await?;
        let Some((outcome, logged)) = ended else {
            return Ok(StepOutcome::Lost);
        };
        let st = tx
            .prepare_cached(
                "UPDATE task_runs SET reason = $2, output_tail = $3, token_hash = NULL, updated_at = $4 WHERE task_id = $1",
            )
            .await?;
        tx.execute(&st, &[&task_id.as_str(), &reason, &output_tail, &now]).await?;
        insert_audit(&tx, &audit).await?;
        tx.commit().await?;
        if logged {
            self.events_committed();
        }
        Ok(outcome)
    }

    async fn holds_lease(&self, owner: &str, task: &TaskId, now: Timestamp) -> StoreResult<bool> {
        let now = now.ms();
        let client = self.pool.get().await?;
        let st = client
            .prepare_cached(
                "SELECT 1 FROM tasks WHERE id = $1 AND lease_owner = $2 AND status = 'EXECUTING' AND due_at >= $3",
            )
            .await?;
        Ok(client.query_opt(&st, &[&task.as_str(), &owner, &now]).await?.is_some())
    }

    async fn save_state(&self, owner: &str, task: &TaskId, state: String, now: Timestamp) -> StoreResult<bool> {
        let now = now.ms();
        let client = self.pool.get().await?;
        let st = client
            .prepare_cached(
                "UPDATE task_runs SET executor_state = $2, updated_at = $3 WHERE task_id = $1 AND EXISTS \
                 (SELECT 1 FROM tasks WHERE id = $1 AND lease_owner = $4 AND status = 'EXECUTING' AND due_at >= $3)",
            )
            .await?;
        Ok(client.execute(&st, &[&task.as_str(), &state, &now, &owner]).await? == 1)
    }

    async fn load_state(&self, task: &TaskId) -> StoreResult<Option<String>> {
        let client = self.pool.get().await?;
        let st = client.prepare_cached("SELECT executor_state FROM task_runs WHERE task_id = $1").await?;
        let row = client.query_opt(&st, &[&task.as_str()]).await?;
        Ok(row.map(|r| r.try_get::<_, Option<String>>(0)).transpose()?.flatten())
    }

    async fn task_run(&self, task: &TaskId) -> StoreResult<Option<TaskRun>> {
        let client = self.pool.get().await?;
        let st = client
            .prepare_cached(
                "SELECT step, attempt, progress, message, reason, output_tail, answer, updated_at \
                 FROM task_runs WHERE task_id = $1",
            )
            .await?;
        let Some(r) = client.query_opt(&st, &[&task.as_str()]).await? else {
            return Ok(None);
        };
        task_run_from(
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
            r.try_get(5)?,
            r.try_get(6)?,
            r.try_get(7)?,
        )
        .map(Some)
    }

    async fn answer_step(
        &self,
        task: &TaskId,
        token_hash: &str,
        callback: Callback,
        now: Timestamp,
        audit: Option<AuditEvent>,
    ) -> StoreResult<bool> {
        let now = now.ms();
        let answer = callback.end.as_ref().map(serde_json::to_string).transpose().map_err(json_error)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let st = tx
            .prepare_cached(
                "UPDATE task_runs SET progress = coalesce($3, progress), message = coalesce($4, message), \
                 answer = $5, token_hash = CASE WHEN $5::TEXT IS NULL THEN token_hash END, updated_at = $6 \
                 WHERE task_id = $1 AND token_hash = $2 AND answer IS NULL",
            )
            .await?;
        let progress = callback.progress.map(i64::from);
        let n = tx.execute(&st, &[&task.as_str(), &token_hash, &progress, &callback.message, &answer, &now]).await?;
        if n == 1
            && let Some(a) = &audit
        {
            insert_audit(&tx, a).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }
}
