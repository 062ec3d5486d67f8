//! The engine's work queue: claims, step ends, leases and gauges.

use async_trait::async_trait;
use deadpool_postgres::Transaction;

use super::*;
use crate::paging::bucket_of;
use crate::postgres::events::append_events;
use kafka_tasks_domain::events::{self, Before};
use kafka_tasks_domain::instance::Instance;
use kafka_tasks_domain::operation::{Operation, StepContext};
use kafka_tasks_domain::placement::placement;
use kafka_tasks_domain::transition::{self, InstanceWrite, TaskWrite, Write};
use kafka_tasks_domain::{InstanceId, TaskId, TaskRecord};

/// Task rows a claim changes, written back in one statement.
#[derive(Default)]
pub(super) struct TaskUpdates {
    ids: Vec<String>,
    statuses: Vec<&'static str>,
    updated: Vec<i64>,
    steps: Vec<String>,
    due: Vec<Option<i64>>,
    owners: Vec<Option<String>>,
    background: Vec<bool>,
}

impl TaskUpdates {
    fn push(&mut self, t: &TaskRecord, due_at: Option<i64>, owner: Option<&str>) -> StoreResult<()> {
        self.ids.push(t.id.as_str().to_owned());
        self.statuses.push(t.status.as_str());
        self.updated.push(t.updated_at);
        self.steps.push(serde_json::to_string(&t.steps).map_err(json_error)?);
        self.due.push(due_at);
        self.owners.push(owner.map(str::to_owned));
        self.background.push(placement(t).0);
        Ok(())
    }

    async fn apply(&self, tx: &Transaction<'_>) -> StoreResult<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let st = tx
            .prepare_cached(
                "UPDATE tasks AS t SET status = u.status, updated_at = u.updated_at, steps = u.steps, \
                 due_at = u.due_at, lease_owner = u.owner, in_background = u.background \
                 FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::BIGINT[], $6::TEXT[], $7::BOOL[]) \
                   AS u(id, status, updated_at, steps, due_at, owner, background) \
                 WHERE t.id = u.id",
            )
            .await?;
        tx.execute(
            &st,
            &[&self.ids, &self.statuses, &self.updated, &self.steps, &self.due, &self.owners, &self.background],
        )
        .await?;
        Ok(())
    }
}

/// Writes what a worker's end of a step leads to, as the domain maps it ([`transition::Write`]).
/// (A claim writes its batch with [`TaskUpdates`] and [`save_instances`] instead.)
pub(super) async fn apply(
    tx: &Transaction<'_>,
    task: &TaskRecord,
    inst: &Instance,
    w: Write,
    owner: &str,
) -> StoreResult<()> {
    let task_write = async {
        match w.task {
            TaskWrite::RetryAt(at) => save_task_progress(tx, task, Some(at), None).await,
            TaskWrite::Leased(until) => save_task_progress(tx, task, Some(until), Some(owner)).await,
            TaskWrite::Ended => save_task_progress(tx, task, None, None).await,
            TaskWrite::Gone => Ok(()),
        }
    };
    match w.instance {
        InstanceWrite::Keep => task_write.await,
        // The instance row and the task row are different rows: both writes go out pipelined.
        InstanceWrite::Save => tokio::try_join!(save_instance(tx, inst), task_write).map(|_| ()),
        // Removing the instance removes its tasks: that one goes first, on its own.
        InstanceWrite::Remove => {
            remove_instance(tx, &inst.id).await?;
            task_write.await
        }
    }
}

/// Counts a claim's fired scheduled tasks into the background view, one statement for the batch:
/// `fired` holds each (instance, day bucket) once with its number of tasks.
async fn count_fired(
    tx: &Transaction<'_>,
    fired: &std::collections::HashMap<(InstanceId, i64), i64>,
) -> StoreResult<()> {
    if fired.is_empty() {
        return Ok(());
    }
    let (mut ids, mut buckets, mut ns) = (Vec::new(), Vec::new(), Vec::new());
    for ((i, b), n) in fired {
        ids.push(i.as_str());
        buckets.push(*b);
        ns.push(*n);
    }
    let st = tx
        .prepare_cached(concat!(
            "WITH u AS (SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) AS u(instance_id, bucket, n)), \
                 b AS (INSERT INTO task_buckets (instance_id, view, bucket, shard, n) SELECT instance_id, $4, bucket, ",
            shard!(),
            ", n FROM u \
                 ON CONFLICT (instance_id, view, bucket, shard) DO UPDATE SET n = task_buckets.n + excluded.n) \
                 INSERT INTO task_totals (instance_id, view, shard, n) SELECT instance_id, $4, ",
            shard!(),
            ", sum(n)::BIGINT FROM u GROUP BY instance_id \
                 ON CONFLICT (instance_id, view, shard) DO UPDATE SET n = task_totals.n + excluded.n"
        ))
        .await?;
    tx.execute(&st, &[&ids, &buckets, &ns, &(View::Background.code() as i16)]).await?;
    Ok(())
}

/// A step end's read: the leased task and its instance, joined and locked together.
static FINISH_STEP_READ: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let cols: Vec<String> = TASK_COLUMNS.split(", ").map(|c| format!("t.{}", c.trim())).collect();
    format!(
        "SELECT {}, t.operation, i.doc, i.busy_task_id FROM tasks t JOIN instances i ON i.id = t.instance_id \
         WHERE t.id = $1 AND t.lease_owner = $2 AND t.status = 'EXECUTING' AND t.due_at >= $3 FOR UPDATE OF t, i",
        cols.join(", ")
    )
});

/// A running task `owner` still holds at `now`, with its operation and instance, both rows
/// locked: what a step's end reads. `None` when the lease is lost.
pub(super) async fn leased(
    tx: &Transaction<'_>,
    owner: &str,
    task_id: &TaskId,
    now: i64,
) -> StoreResult<Option<(TaskRecord, Operation, Instance)>> {
    // The task and its instance, both locked (task row first, as before), in one statement.
    let st = tx.prepare_cached(&FINISH_STEP_READ).await?;
    // A lease that has run out is no longer ours, even if nobody has taken the task yet.
    let Some(row) = tx.query_opt(&st, &[&task_id.as_str(), &owner, &now]).await? else {
        return Ok(None);
    };
    let task = task_from_row(&row)?;
    let op: String = row.try_get(12)?;
    let operation: Operation = serde_json::from_str(&op).map_err(json_error)?;
    let inst = instance_from_row_at(&row, 13)?;
    Ok(Some((task, operation, inst)))
}

/// Ends a step of a task `owner` still holds: `advance` moves the task and its instance (a
/// rule of [`transition`]), then the writes it maps to, pipelined with the task's events. `None`
/// when the lease is lost; else the outcome and whether events were logged.
pub(super) async fn end_step(
    tx: &Transaction<'_>,
    owner: &str,
    task_id: &TaskId,
    now: i64,
    lease_ms: i64,
    advance: impl FnOnce(&mut TaskRecord, &mut Instance, &Operation) -> transition::Advance,
) -> StoreResult<Option<(StepOutcome, bool)>> {
    let Some((mut task, operation, mut inst)) = leased(tx, owner, task_id, now).await? else {
        return Ok(None);
    };
    let before = Before::of(&task);
    let advance = advance(&mut task, &mut inst, &operation);
    let mut logged = Vec::new();
    events::progressed(&before, &task, now, &mut logged);
    tokio::try_join!(apply(tx, &task, &inst, advance.write(now, lease_ms), owner), append_events(tx, &logged))?;
    Ok(Some((advance.into(), !logged.is_empty())))
}

#[async_trait]
impl EngineStore for Postgres {
    async fn claim(
        &self,
        owner: &str,
        now: Timestamp,
        lease: Duration,
        max: usize,
        ctx: StepContext,
    ) -> StoreResult<Vec<Claimed>> {
        let (now, lease_ms) = (now.ms(), millis(lease));
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let st = tx
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS}, operation FROM tasks WHERE due_at <= $1 ORDER BY due_at LIMIT $2 \
                 FOR UPDATE SKIP LOCKED"
            ))
            .await?;
        let rows = tx.query(&st, &[&now, &(max as i64)]).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // Lock every instance of the batch in one statement; an instance another transaction
        // holds is skipped, and its tasks are looked at again on the next poll.
        let ids: Vec<String> = rows.iter().map(|r| r.try_get::<_, String>(2)).collect::<Result<_, _>>()?;
        let st = tx
            .prepare_cached("SELECT doc, busy_task_id FROM instances WHERE id = ANY($1) FOR UPDATE SKIP LOCKED")
            .await?;
        let mut instances: std::collections::HashMap<InstanceId, Instance> = std::collections::HashMap::new();
        for r in tx.query(&st, &[&ids]).await? {
            let inst = instance_from_row(&r)?;
            instances.insert(inst.id.clone(), inst);
        }
        let mut removed: Vec<InstanceId> = Vec::new();
        let mut claimed = Vec::new();
        let mut updates = TaskUpdates::default();
        let mut fired: std::collections::HashMap<(InstanceId, i64), i64> = std::collections::HashMap::new();
        let mut logged = Vec::new();
        for row in rows {
            let mut task = task_from_row(&row)?;
            let before = Before::of(&task);
            let op: String = row.try_get(12)?;
            let operation: Operation = serde_json::from_str(&op).map_err(json_error)?;
            if removed.contains(&task.instance_id) {
                continue;
            }
            let Some(inst) = instances.get_mut(&task.instance_id) else {
                continue;
            };
            let claim = transition::claim(&mut task, inst, &operation, now, ctx);
            events::progressed(&before, &task, now, &mut logged);
            if claim.fired {
                // A scheduled task that fires becomes a background task: counted at the end.
                *fired.entry((task.instance_id.clone(), bucket_of(task.created_at))).or_insert(0) += 1;
            }
            let (taken, started) = (claim.taken, claim.started);
            let w = taken.write(now, lease_ms);
            match w.task {
                TaskWrite::RetryAt(at) => updates.push(&task, Some(at), None)?,
                TaskWrite::Leased(until) => updates.push(&task, Some(until), Some(owner))?,
                TaskWrite::Ended => updates.push(&task, None, None)?,
                TaskWrite::Gone => {}
            }
            // Instances are written back together at the end; a removed one goes now.
            if w.instance == InstanceWrite::Remove {
                remove_instance(&tx, &task.instance_id).await?;
                removed.push(task.instance_id.clone());
            }
            let Some(p) = taken.progress(task.steps.len()) else {
                continue;
            };
            let bound = inst.cluster_bound;
            claimed.push(Claimed { task, operation, step: p.step, started, ended: p.ended, reason: p.reason, bound });
        }
        for id in &removed {
            instances.remove(id);
        }
        // A removed instance's counters went with it.
        fired.retain(|(i, _), _| !removed.contains(i));
        count_fired(&tx, &fired).await?;
        // The events go out pipelined with the task rows: no round trip of their own.
        tokio::try_join!(updates.apply(&tx), append_events(&tx, &logged))?;
        save_instances(&tx, instances.values()).await?;
        tx.commit().await?;
        if !logged.is_empty() {
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
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let ended = end_step(&tx, owner, task_id, now, lease_ms, |task, inst, op| {
            transition::finish_steps(task, inst, op, step, now, ctx)
        })
        .await?;
        let Some((outcome, logged)) = ended else {
            return Ok(StepOutcome::Lost);
        };
        tx.commit().await?;
        if logged {
            self.events_committed();
        }
        Ok(outcome)
    }

    async fn renew_leases(&self, owner: &str, until: Timestamp) -> StoreResult<()> {
        let until = until.ms();
        let client = self.pool.get().await?;
        let st = client
            .prepare_cached("UPDATE tasks SET due_at = $2 WHERE lease_owner = $1 AND status = 'EXECUTING'")
            .await?;
        client.execute(&st, &[&owner, &until]).await?;
        Ok(())
    }

    async fn unfinished_count(&self) -> StoreResult<u64> {
        let client = self.pool.get().await?;
        let n: i64 = client.query_one("SELECT count(*) FROM tasks WHERE due_at IS NOT NULL", &[]).await?.try_get(0)?;
        Ok(n.max(0) as u64)
    }

    async fn engine_stats(&self, now: Timestamp) -> StoreResult<EngineStats> {
        let now = now.ms();
        let status = self.pool.status();
        let client = self.pool.get().await?;
        let r = client
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'CREATED'), count(*) FILTER (WHERE status = 'EXECUTING'), \
                 count(*) FILTER (WHERE due_at <= $1), min(due_at) FILTER (WHERE due_at <= $1 AND due_at > 0), \
                 count(*) FILTER (WHERE status = 'EXECUTING' AND due_at <= $1) FROM tasks WHERE due_at IS NOT NULL",
                &[&now],
            )
            .await?;
        let n = |i: usize| -> StoreResult<u64> { Ok(r.try_get::<_, i64>(i)?.max(0) as u64) };
        let in_use = status.size.saturating_sub(status.available) as u64;
        Ok(EngineStats {
            created: n(0)?,
            executing: n(1)?,
            due: n(2)?,
            oldest_due_at: r.try_get(3)?,
            lease_expired: n(4)?,
            pool: Some(PoolStats { in_use, idle: status.available as u64, waiting: status.waiting as u64 }),
        })
    }

    async fn release_leases(&self, owner: &str) -> StoreResult<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE tasks SET due_at = 0, lease_owner = NULL WHERE lease_owner = $1 AND status = 'EXECUTING'",
                &[&owner],
            )
            .await?;
        Ok(())
    }
}
