//! The engine's work queue: claims, step ends, leases and gauges.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::*;
use crate::sqlite::events::append_events;
use kafka_tasks_domain::events::{self, Before};
use kafka_tasks_domain::instance::Instance;
use kafka_tasks_domain::operation::{Operation, StepContext};
use kafka_tasks_domain::transition::{self, InstanceWrite, TaskWrite, Write};
use kafka_tasks_domain::{TaskId, TaskRecord};

/// Writes what a worker's move of a task leads to, as the domain maps it ([`transition::Write`]).
pub(super) fn apply(conn: &Connection, task: &TaskRecord, inst: &Instance, w: Write, owner: &str) -> StoreResult<()> {
    // A task the engine ends was running or due: the instance counts one more finished task.
    let ended = matches!(w.task, TaskWrite::Ended) as i64;
    match w.instance {
        InstanceWrite::Keep => count_finished(conn, &inst.id, ended)?,
        InstanceWrite::Save => save_instance_ending(conn, inst, ended)?,
        InstanceWrite::Remove => remove_instance(conn, &inst.id)?,
    }
    match w.task {
        TaskWrite::RetryAt(at) => {
            conn.prepare_cached("UPDATE tasks SET due_at = ?2 WHERE id = ?1")?
                .execute(params![task.id.as_str(), at])?;
        }
        TaskWrite::Leased(until) => save_task_progress(conn, task, Some(until), Some(owner))?,
        TaskWrite::Ended => save_task_progress(conn, task, None, None)?,
        TaskWrite::Gone => {}
    }
    Ok(())
}

/// A running task `owner` still holds at `now`, with its operation and instance: what a step's
/// end reads. `None` when the lease is lost.
pub(super) fn leased(
    conn: &Connection,
    owner: &str,
    task_id: &TaskId,
    now: i64,
) -> StoreResult<Option<(TaskRecord, Operation, Instance)>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1 AND lease_owner = ?2 AND status = 'EXECUTING' AND due_at >= ?3"
    ))?;
    // A lease that has run out is no longer ours, even if nobody has taken the task yet.
    let Some(task) = st.query_row(params![task_id.as_str(), owner, now], task_from_row).optional()? else {
        return Ok(None);
    };
    let task = task?;
    let operation = load_operation(conn, task_id)?;
    let Some(inst) = load_instance(conn, &task.instance_id)? else {
        return Ok(None);
    };
    Ok(Some((task, operation, inst)))
}

/// Ends a step of a task `owner` still holds: `advance` moves the task and its instance (a
/// rule of [`transition`]), then the writes it maps to and the task's events. `None` when the
/// lease is lost; else the outcome and whether events were logged.
pub(super) fn end_step(
    conn: &Connection,
    owner: &str,
    task_id: &TaskId,
    now: i64,
    lease_ms: i64,
    advance: impl FnOnce(&mut TaskRecord, &mut Instance, &Operation) -> transition::Advance,
) -> StoreResult<Option<(StepOutcome, bool)>> {
    let Some((mut task, operation, mut inst)) = leased(conn, owner, task_id, now)? else {
        return Ok(None);
    };
    let before = Before::of(&task);
    let advance = advance(&mut task, &mut inst, &operation);
    apply(conn, &task, &inst, advance.write(now, lease_ms), owner)?;
    let mut logged = Vec::new();
    events::progressed(&before, &task, now, &mut logged);
    append_events(conn, &logged)?;
    Ok(Some((advance.into(), !logged.is_empty())))
}

/// The engine's gauges, read through the partial index of unfinished tasks (`tasks_due`).
pub(super) const STATS_SQL: &str = "SELECT coalesce(sum(status = 'CREATED'), 0), coalesce(sum(status = 'EXECUTING'), 0), \
     coalesce(sum(due_at <= ?1), 0), min(CASE WHEN due_at <= ?1 AND due_at > 0 THEN due_at END), \
     coalesce(sum(status = 'EXECUTING' AND due_at <= ?1), 0) FROM tasks WHERE due_at IS NOT NULL";

#[async_trait]
impl EngineStore for Sqlite {
    async fn claim(
        &self,
        owner: &str,
        now: Timestamp,
        lease: Duration,
        max: usize,
        ctx: StepContext,
    ) -> StoreResult<Vec<Claimed>> {
        let (now, lease_ms) = (now.ms(), millis(lease));
        let owner = owner.to_owned();
        let (claimed, logged) = self
            .write(move |conn| {
                let mut st = conn.prepare_cached(&format!(
                    "SELECT {TASK_COLUMNS}, operation FROM tasks WHERE due_at <= ?1 ORDER BY due_at LIMIT ?2"
                ))?;
                let rows =
                    st.query_map(params![now, max as i64], |r| Ok((task_from_row(r)?, r.get::<_, String>(12)?)))?;
                let mut candidates = Vec::new();
                for row in rows {
                    let (task, op) = row?;
                    candidates.push((task?, serde_json::from_str::<Operation>(&op).map_err(json_error)?));
                }
                let mut claimed = Vec::new();
                let mut logged = Vec::new();
                for (mut task, operation) in candidates {
                    let Some(mut inst) = load_instance(conn, &task.instance_id)? else {
                        continue;
                    };
                    let before = Before::of(&task);
                    let claim = transition::claim(&mut task, &mut inst, &operation, now, ctx);
                    if claim.fired {
                        // A scheduled task that fires becomes a background task.
                        bump(conn, &task.instance_id, View::Background, task.created_at, 1)?;
                        fired_into_background(conn, &task.id)?;
                    }
                    let (taken, started) = (claim.taken, claim.started);
                    apply(conn, &task, &inst, taken.write(now, lease_ms), &owner)?;
                    events::progressed(&before, &task, now, &mut logged);
                    let Some(p) = taken.progress(task.steps.len()) else {
                        continue;
                    };
                    claimed.push(Claimed {
                        task,
                        operation,
                        step: p.step,
                        started,
                        ended: p.ended,
                        reason: p.reason,
                        bound: inst.cluster_bound,
                    });
                }
                append_events(conn, &logged)?;
                Ok((claimed, !logged.is_empty()))
            })
            .await?;
        if logged {
            self.events_committed();
        }
        Ok(claimed)
    }

    async fn finish_step(
        &self,
        owner: &str,
        task_id: &TaskId,
        step: usize,
        now: Timestamp,
        lease: Duration,
        ctx: StepContext,
    ) -> StoreResult<StepOutcome> {
        let (now, lease_ms) = (now.ms(), millis(lease));
        let (owner, task_id) = (owner.to_owned(), task_id.clone());
        let (outcome, logged) = self
            .write(move |conn| {
                let ended = end_step(conn, &owner, &task_id, now, lease_ms, |task, inst, op| {
                    transition::finish_steps(task, inst, op, step, now, ctx)
                })?;
                Ok(ended.unwrap_or((StepOutcome::Lost, false)))
            })
            .await?;
        if logged {
            self.events_committed();
        }
        Ok(outcome)
    }

    async fn renew_leases(&self, owner: &str, until: Timestamp) -> StoreResult<()> {
        let until = until.ms();
        let owner = owner.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE tasks SET due_at = ?2 WHERE lease_owner = ?1 AND status = 'EXECUTING'")?
                .execute(params![owner, until])?;
            Ok(())
        })
        .await
    }

    async fn unfinished_count(&self) -> StoreResult<u64> {
        self.read(|conn| {
            let n: i64 = conn
                .prepare_cached("SELECT count(*) FROM tasks WHERE due_at IS NOT NULL")?
                .query_row([], |r| r.get(0))?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    async fn engine_stats(&self, now: Timestamp) -> StoreResult<EngineStats> {
        let now = now.ms();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(STATS_SQL)?;
            let stats = stmt.query_row(params![now], |r| {
                Ok(EngineStats {
                    created: r.get::<_, i64>(0)?.max(0) as u64,
                    executing: r.get::<_, i64>(1)?.max(0) as u64,
                    due: r.get::<_, i64>(2)?.max(0) as u64,
                    oldest_due_at: r.get(3)?,
                    lease_expired: r.get::<_, i64>(4)?.max(0) as u64,
                    pool: None,
                })
            })?;
            Ok(stats)
        })
        .await
    }

    async fn release_leases(&self, owner: &str) -> StoreResult<()> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE tasks SET due_at = 0, lease_owner = NULL WHERE lease_owner = ?1 AND status = 'EXECUTING'",
            )?
            .execute(params![owner])?;
            Ok(())
        })
        .await
    }
}
