//! What executors keep with a task: attempts, progress, failures, output and webhook answers.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::engine::end_step;
use super::*;
use kafka_tasks_domain::Timestamp;
use kafka_tasks_domain::transition;
use kafka_tasks_domain::{StepFailure, TaskId};

/// Begins an attempt: the first at a step, or one more at the step begun last.
pub(super) const BEGIN_ATTEMPT_SQL: &str = "INSERT INTO task_runs (task_id, step, attempt, token_hash, updated_at) \
     SELECT id, ?2, 1, ?3, ?4 FROM tasks WHERE id = ?1 AND lease_owner = ?5 AND status = 'EXECUTING' AND due_at >= ?4 \
     ON CONFLICT (task_id) DO UPDATE SET \
       attempt = CASE WHEN task_runs.step = excluded.step THEN task_runs.attempt + 1 ELSE 1 END, \
       step = excluded.step, progress = NULL, message = '', reason = NULL, output_tail = '', \
       token_hash = excluded.token_hash, answer = NULL, updated_at = excluded.updated_at \
     RETURNING attempt";

#[async_trait]
impl RunStore for Sqlite {
    async fn begin_attempt(
        &self,
        owner: &str,
        task: &TaskId,
        step: usize,
        token_hash: Option<String>,
        now: Timestamp,
    ) -> StoreResult<Option<u32>> {
        let now = now.ms();
        let (owner, task) = (owner.to_owned(), task.clone());
        self.write(move |conn| {
            let attempt: Option<i64> = conn
                .prepare_cached(BEGIN_ATTEMPT_SQL)?
                .query_row(params![task.as_str(), step as i64, token_hash, now, owner], |r| r.get(0))
                .optional()?;
            Ok(attempt.map(|a| a.clamp(1, i64::from(u32::MAX)) as u32))
        })
        .await
    }

    async fn report(&self, owner: &str, task: &TaskId, step: usize, r: Report, now: Timestamp) -> StoreResult<()> {
        let now = now.ms();
        let (owner, task) = (owner.to_owned(), task.clone());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE task_runs SET progress = coalesce(?3, progress), message = coalesce(?4, message), \
                 output_tail = coalesce(?5, output_tail), updated_at = ?6 WHERE task_id = ?1 AND step = ?2 \
                 AND EXISTS (SELECT 1 FROM tasks WHERE id = ?1 AND lease_owner = ?7 AND status = 'EXECUTING')",
            )?
            .execute(params![
                task.as_str(),
                step as i64,
                r.progress.map(i64::from),
                r.message,
                r.output_tail,
                now,
                owner
            ])?;
            Ok(())
        })
        .await
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
        let (owner, task_id) = (owner.to_owned(), task_id.clone());
        let (outcome, logged) = self.write(move |conn| {
            let failure = StepFailure::executor(&reason);
            let ended = end_step(conn, &owner, &task_id, now, 0, |task, inst, op| {
                transition::fail_step(task, inst, op, step, now, failure)
            })?;
            let Some((outcome, logged)) = ended else {
                return Ok((StepOutcome::Lost, false));
            };
            conn.prepare_cached(
                "UPDATE task_runs SET reason = ?2, output_tail = ?3, token_hash = NULL, updated_at = ?4 WHERE task_id = ?1",
            )?
            .execute(params![task_id.as_str(), reason, output_tail, now])?;
            insert_audit(conn, &audit)?;
            Ok((outcome, logged))
        })
        .await?;
        if logged {
            self.events_committed();
        }
        Ok(outcome)
    }

    async fn holds_lease(&self, owner: &str, task: &TaskId, now: Timestamp) -> StoreResult<bool> {
        let now = now.ms();
        self.read(|conn| {
            let held = conn
                .prepare_cached(
                    "SELECT 1 FROM tasks WHERE id = ?1 AND lease_owner = ?2 AND status = 'EXECUTING' AND due_at >= ?3",
                )?
                .query_row(params![task.as_str(), owner, now], |_| Ok(()))
                .optional()?;
            Ok(held.is_some())
        })
        .await
    }

    async fn save_state(&self, owner: &str, task: &TaskId, state: String, now: Timestamp) -> StoreResult<bool> {
        let now = now.ms();
        let (owner, task) = (owner.to_owned(), task.clone());
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE task_runs SET executor_state = ?2, updated_at = ?3 WHERE task_id = ?1 AND EXISTS \
                     (SELECT 1 FROM tasks WHERE id = ?1 AND lease_owner = ?4 AND status = 'EXECUTING' AND due_at >= ?3)",
                )?
                .execute(params![task.as_str(), state, now, owner])?;
            Ok(n == 1)
        })
        .await
    }

    async fn load_state(&self, task: &TaskId) -> StoreResult<Option<String>> {
        self.read(|conn| {
            let state = conn
                .prepare_cached("SELECT executor_state FROM task_runs WHERE task_id = ?1")?
                .query_row(params![task.as_str()], |r| r.get::<_, Option<String>>(0))
                .optional()?;
            Ok(state.flatten())
        })
        .await
    }

    async fn task_run(&self, task: &TaskId) -> StoreResult<Option<TaskRun>> {
        self.read(|conn| {
            let mut st = conn.prepare_cached(
                "SELECT step, attempt, progress, message, reason, output_tail, answer, updated_at \
                 FROM task_runs WHERE task_id = ?1",
            )?;
            let row = st
                .query_row(params![task.as_str()], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, i64>(7)?,
                    ))
                })
                .optional()?;
            row.map(|(step, attempt, progress, message, reason, output_tail, answer, updated_at)| {
                task_run_from(step, attempt, progress, message, reason, output_tail, answer, updated_at)
            })
            .transpose()
        })
        .await
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
        let (task, token_hash) = (task.clone(), token_hash.to_owned());
        let answer = callback.end.as_ref().map(serde_json::to_string).transpose().map_err(json_error)?;
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE task_runs SET progress = coalesce(?3, progress), message = coalesce(?4, message), \
                     answer = ?5, token_hash = CASE WHEN ?5 IS NULL THEN token_hash END, updated_at = ?6 \
                     WHERE task_id = ?1 AND token_hash = ?2 AND answer IS NULL",
                )?
                .execute(params![
                    task.as_str(),
                    token_hash,
                    callback.progress.map(i64::from),
                    callback.message,
                    answer,
                    now
                ])?;
            if n == 1
                && let Some(a) = &audit
            {
                insert_audit(conn, a)?;
            }
            Ok(n == 1)
        })
        .await
    }
}
