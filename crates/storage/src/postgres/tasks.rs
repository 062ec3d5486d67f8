//! Background and scheduled task records: rows, day-bucket counts, lists and pages.

use std::sync::LazyLock;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::*;
use crate::paging::{ListShape, bucket_of, bucket_range, list_sql, partial_edges, removal_deltas};
use crate::postgres::events::append_events;
use kafka_tasks_domain::Timestamp;
use kafka_tasks_domain::events::{EventKind, NewEvent};
use kafka_tasks_domain::placement::{placement, views_of};
use kafka_tasks_domain::{InstanceId, ProjectId, Step, TaskId, TaskRecord, TaskStatus};
use kafka_tasks_domain::{deletion, rescheduling};

pub(super) const TASK_COLUMNS: &str = "id, project_id, instance_id, name, user_id, user_name, params, status, \
     created_at, updated_at, schedule_at, steps";

/// Decodes a row of `TASK_COLUMNS`.
pub(super) fn task_from_row(r: &Row) -> Result<TaskRecord, StoreError> {
    let status: String = r.try_get(7)?;
    let steps: Option<String> = r.try_get(11)?;
    Ok(TaskRecord {
        id: TaskId::from_trusted(r.try_get(0)?),
        project_id: ProjectId::from_trusted(r.try_get(1)?),
        instance_id: InstanceId::from_trusted(r.try_get(2)?),
        name: r.try_get(3)?,
        user_id: r.try_get(4)?,
        user_name: r.try_get(5)?,
        params: r.try_get(6)?,
        status: TaskStatus::parse(&status).ok_or_else(|| corrupt(format!("task status {status:?}")))?,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
        schedule_at: r.try_get(10)?,
        steps: match steps {
            Some(s) => serde_json::from_str::<Vec<Step>>(&s).map_err(json_error)?,
            None => Vec::new(),
        },
    })
}

/// The columns of a list row: everything but the steps, which lists do not show.
pub(super) const SUMMARY_COLUMNS: &str = "id, project_id, instance_id, name, user_id, user_name, params, status, \
     created_at, updated_at, schedule_at, NULL::TEXT";

/// The column of a list row that says whether the instance exists (the total follows it).
const LIST_EXISTS: usize = 12;

/// The list statement of a shape, built once.
fn list_statement(shape: ListShape) -> &'static str {
    static ALL: LazyLock<Vec<(ListShape, String)>> = LazyLock::new(|| {
        ListShape::all().map(|shape| (shape, list_sql(shape, SUMMARY_COLUMNS, view_filter(shape.view)))).collect()
    });
    ALL.iter().find(|(s, _)| *s == shape).map_or("", |(_, sql)| sql.as_str())
}

pub(super) fn get_task_sql(filter: &str) -> String {
    let cols: Vec<String> = TASK_COLUMNS.split(", ").map(|c| format!("t.{}", c.trim())).collect();
    format!(
        "SELECT {} FROM instances i LEFT JOIN tasks t ON t.id = $1 AND t.instance_id = i.id AND t.{filter} \
         WHERE i.id = $2 AND i.project_id = $3",
        cols.join(", ")
    )
}

pub(super) static GET_BACKGROUND_TASK: LazyLock<String> = LazyLock::new(|| get_task_sql(view_filter(View::Background)));
pub(super) static GET_SCHEDULED_TASK: LazyLock<String> = LazyLock::new(|| get_task_sql(view_filter(View::Scheduled)));

/// The write of a delete, one statement in its own (implicit) transaction: the row goes only if
/// it is still as it was read (`status`, `updated_at`), and with it its day buckets and totals
/// (`$4`, the views the domain counts it in) and, in the `audit` variant, the audit event (built
/// in Rust, the deleted record in its detail), and the `task.deleted` event (its six values
/// after the audit's, or after `$5`). It returns how many rows it deleted (0 or 1).
pub(super) fn delete_write_sql(audit: bool) -> String {
    let e = if audit { 16 } else { 6 };
    format!(
        "WITH d AS (DELETE FROM tasks WHERE id = $1 AND status = $2 AND updated_at = $3 RETURNING instance_id), \
         b AS (INSERT INTO task_buckets (instance_id, view, bucket, shard, n) \
               SELECT d.instance_id, u.v, $5, {shard}, -1 FROM d, unnest($4::SMALLINT[]) AS u(v) \
               ON CONFLICT (instance_id, view, bucket, shard) DO UPDATE SET n = task_buckets.n + excluded.n), \
         c AS (INSERT INTO task_totals (instance_id, view, shard, n) \
               SELECT d.instance_id, u.v, {shard}, -1 FROM d, unnest($4::SMALLINT[]) AS u(v) \
               ON CONFLICT (instance_id, view, shard) DO UPDATE SET n = task_totals.n + excluded.n), \
         e AS (INSERT INTO task_events (at, project_id, instance_id, task_id, kind, data) \
               SELECT ${e}::BIGINT, ${e1}::TEXT, ${e2}::TEXT, ${e3}::TEXT, ${e4}::TEXT, ${e5}::TEXT FROM d){audit} \
         SELECT count(*) FROM d",
        shard = shard!(),
        e1 = e + 1,
        e2 = e + 2,
        e3 = e + 3,
        e4 = e + 4,
        e5 = e + 5,
        audit = if audit {
            ", a AS (INSERT INTO audit_events (at, request_id, project_id, user_id, user_name, access_key, action, \
             target, status, detail) SELECT $6::BIGINT, $7::TEXT, $8::TEXT, $9::TEXT, $10::TEXT, $11::TEXT, $12::TEXT, \
             $13::TEXT, $14::INTEGER, $15::TEXT FROM d)"
        } else {
            ""
        }
    )
}

pub(super) static DELETE_WRITE: LazyLock<String> = LazyLock::new(|| delete_write_sql(false));
pub(super) static DELETE_WRITE_AUDITED: LazyLock<String> = LazyLock::new(|| delete_write_sql(true));

pub(super) fn view_filter(view: View) -> &'static str {
    match view {
        View::Background => "in_background",
        View::Scheduled => "schedule_at IS NOT NULL",
    }
}

/// Loads a task; `lock` takes its row lock for the rest of the transaction.
pub(super) async fn load_task(
    tx: &Transaction<'_>,
    i: &InstanceId,
    t: &TaskId,
    view: View,
    lock: bool,
) -> StoreResult<Option<TaskRecord>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 AND instance_id = $2 AND {}{}",
        view_filter(view),
        if lock { " FOR UPDATE" } else { "" }
    );
    let st = tx.prepare_cached(&sql).await?;
    tx.query_opt(&st, &[&t.as_str(), &i.as_str()]).await?.map(|r| task_from_row(&r)).transpose()
}

/// Moves a task in or out of the day buckets and totals of each of `views` (distinct), in one
/// statement: the bucket rows and the running totals together.
pub(super) async fn bump_views(
    tx: &Transaction<'_>,
    instance: &InstanceId,
    views: &[View],
    created_at: i64,
    delta: i64,
) -> StoreResult<()> {
    if views.is_empty() {
        return Ok(());
    }
    let st = tx
        .prepare_cached(concat!(
            "WITH b AS (INSERT INTO task_buckets (instance_id, view, bucket, shard, n) \
                 SELECT $1, v, $3, ",
            shard!(),
            ", $4 FROM unnest($2::SMALLINT[]) AS u(v) \
                 ON CONFLICT (instance_id, view, bucket, shard) DO UPDATE SET n = task_buckets.n + excluded.n) \
                 INSERT INTO task_totals (instance_id, view, shard, n) SELECT $1, v, ",
            shard!(),
            ", $4 FROM unnest($2::SMALLINT[]) AS u(v) \
                 ON CONFLICT (instance_id, view, shard) DO UPDATE SET n = task_totals.n + excluded.n"
        ))
        .await?;
    let codes: Vec<i16> = views.iter().map(|v| v.code() as i16).collect();
    tx.execute(&st, &[&instance.as_str(), &codes, &bucket_of(created_at), &delta]).await?;
    Ok(())
}

/// Takes removed records out of their day buckets and totals (one statement, each counter row
/// once, in (view, bucket) order so that concurrent batches lock the shared rows in one order)
/// and logs a `task.deleted` event for each, at `at`.
pub(super) async fn count_out(
    tx: &Transaction<'_>,
    instance: &InstanceId,
    records: &[TaskRecord],
    at: i64,
) -> StoreResult<()> {
    let logged: Vec<NewEvent> = records.iter().map(|r| NewEvent::of(EventKind::Deleted, r, None, at)).collect();
    append_events(tx, &logged).await?;
    let deltas = removal_deltas(records);
    if deltas.is_empty() {
        return Ok(());
    }
    let views: Vec<i16> = deltas.iter().map(|(v, _, _)| v.code() as i16).collect();
    let buckets: Vec<i64> = deltas.iter().map(|(_, b, _)| *b).collect();
    let ns: Vec<i64> = deltas.iter().map(|(_, _, n)| *n).collect();
    let st = tx
        .prepare_cached(concat!(
            "WITH d AS (SELECT * FROM unnest($2::SMALLINT[], $3::BIGINT[], $4::BIGINT[]) WITH ORDINALITY AS u(v, b, n, o)), \
             bk AS (INSERT INTO task_buckets (instance_id, view, bucket, shard, n) SELECT $1, v, b, ",
            shard!(),
            ", n FROM d ORDER BY o \
             ON CONFLICT (instance_id, view, bucket, shard) DO UPDATE SET n = task_buckets.n + excluded.n) \
             INSERT INTO task_totals (instance_id, view, shard, n) SELECT $1, v, ",
            shard!(),
            ", sum(n)::BIGINT FROM d GROUP BY v ORDER BY v \
             ON CONFLICT (instance_id, view, shard) DO UPDATE SET n = task_totals.n + excluded.n"
        ))
        .await?;
    tx.execute(&st, &[&instance.as_str(), &views, &buckets, &ns]).await?;
    Ok(())
}

pub(super) async fn count_in(tx: &Transaction<'_>, r: &TaskRecord, delta: i64) -> StoreResult<()> {
    let views: Vec<View> = views_of(r).collect();
    bump_views(tx, &r.instance_id, &views, r.created_at, delta).await
}

/// The columns a new task row is written with, by INSERT and by COPY alike.
pub(super) const TASK_INSERT_COLUMNS: &str = "id, project_id, instance_id, name, user_id, user_name, params, status, \
     created_at, updated_at, schedule_at, in_background, steps, operation, due_at, lease_owner";

/// A new task's row values, in `TASK_INSERT_COLUMNS` order.
pub(super) struct TaskRow<'a> {
    r: &'a TaskRecord,
    ids: [&'a str; 3],
    status: &'static str,
    in_background: bool,
    due_at: Option<i64>,
    steps: String,
    operation: String,
    owner: Option<&'a str>,
}

impl<'a> TaskRow<'a> {
    pub(super) fn new(t: &'a NewTask) -> StoreResult<Self> {
        let (in_background, due_at) = placement(&t.record);
        let r = &t.record;
        Ok(TaskRow {
            r,
            ids: [r.id.as_str(), r.project_id.as_str(), r.instance_id.as_str()],
            status: r.status.as_str(),
            in_background,
            due_at,
            steps: serde_json::to_string(&t.record.steps).map_err(json_error)?,
            operation: serde_json::to_string(&t.operation).map_err(json_error)?,
            owner: None,
        })
    }

    pub(super) fn values(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 16] {
        let r = self.r;
        [
            &self.ids[0],
            &self.ids[1],
            &self.ids[2],
            &r.name,
            &r.user_id,
            &r.user_name,
            &r.params,
            &self.status,
            &r.created_at,
            &r.updated_at,
            &r.schedule_at,
            &self.in_background,
            &self.steps,
            &self.operation,
            &self.due_at,
            &self.owner,
        ]
    }
}

pub(super) async fn insert_task(tx: &Transaction<'_>, t: &NewTask) -> StoreResult<()> {
    let row = TaskRow::new(t)?;
    let st = tx
        .prepare_cached(&format!(
            "INSERT INTO tasks ({TASK_INSERT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .await?;
    tx.execute(&st, &row.values()).await?;
    count_in(tx, &t.record, 1).await
}

pub(super) async fn save_task_progress(
    tx: &Transaction<'_>,
    t: &TaskRecord,
    due_at: Option<i64>,
    owner: Option<&str>,
) -> StoreResult<()> {
    let steps = serde_json::to_string(&t.steps).map_err(json_error)?;
    let st = tx
        .prepare_cached(
            "UPDATE tasks SET status = $2, updated_at = $3, steps = $4, due_at = $5, lease_owner = $6, \
             in_background = TRUE WHERE id = $1",
        )
        .await?;
    tx.execute(&st, &[&t.id.as_str(), &t.status.as_str(), &t.updated_at, &steps, &due_at, &owner]).await?;
    Ok(())
}

/// The rows a bulk delete selects (and its dry run counts): finished background tasks of the
/// instance (`$1`) created in `$2..=$3`, of the statuses `$4`, named `$5` if given.
const BULK_WHERE: &str = "instance_id = $1 AND in_background AND due_at IS NULL AND created_at BETWEEN $2 AND $3 \
     AND status = ANY($4) AND ($5::TEXT IS NULL OR name = $5)";

/// The oldest at most `limit` records a bulk delete with `filter` removes, and whether more
/// match; `lock` is appended to the statement (` FOR UPDATE` when they are to be removed).
async fn bulk_select(
    tx: &Transaction<'_>,
    i: &InstanceId,
    filter: &BulkFilter,
    limit: u64,
    lock: &str,
) -> StoreResult<(Vec<TaskRecord>, bool)> {
    let statuses: Vec<&str> = filter.statuses_or_finished().iter().map(|s| s.as_str()).collect();
    let st = tx
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM tasks WHERE {BULK_WHERE} ORDER BY created_at, id LIMIT $6{lock}"
        ))
        .await?;
    let fetch = limit.saturating_add(1).min(i64::MAX as u64) as i64;
    let rows = tx.query(&st, &[&i.as_str(), &filter.from, &filter.to, &statuses, &filter.name, &fetch]).await?;
    let read = rows.iter().map(task_from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(filter.select(read, limit))
}

#[async_trait]
impl TaskStore for Postgres {
    async fn list_tasks(&self, q: &TaskQuery) -> StoreResult<Option<(u64, Vec<TaskRecord>)>> {
        // One statement, so one snapshot and one round trip: the instance check, the total, where
        // the page starts (from the day buckets) and the page itself.
        let client = self.pool.get().await?;
        let edges = partial_edges(q);
        let shape = ListShape::of(q, edges.len());
        let st = client.prepare_cached(list_statement(shape)).await?;
        let (first, last) = bucket_range(q);
        let view = q.view.code() as i16;
        let from = q.created_from.unwrap_or(i64::MIN);
        let offset = q.offset.min(i64::MAX as u64) as i64;
        let limit = q.limit.min(i64::MAX as u64) as i64;
        let (inst, project) = (q.instance_id.as_str(), q.project_id.as_str());
        let flat: Vec<i64> = edges.iter().flat_map(|&(b, lo, hi)| [b, lo, hi]).collect();
        let mut args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            vec![&inst, &view, &first, &last, &project, &from, &q.created_to, &offset, &limit];
        args.extend(flat.iter().map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)));
        let rows = client.query(&st, &args).await?;
        let Some(head) = rows.first() else {
            return Err(corrupt("a list statement returned no row"));
        };
        if !head.try_get::<_, bool>(LIST_EXISTS)? {
            return Ok(None);
        }
        let total: i64 = head.try_get(LIST_EXISTS + 1)?;
        let mut tasks = Vec::with_capacity(rows.len());
        for r in &rows {
            if r.try_get::<_, Option<String>>(0)?.is_some() {
                tasks.push(task_from_row(r)?);
            }
        }
        Ok(Some((total.max(0) as u64, tasks)))
    }

    async fn get_task(&self, p: &ProjectId, i: &InstanceId, t: &TaskId, view: View) -> StoreResult<Found<TaskRecord>> {
        // One statement: the instance row always, the task's columns when it exists.
        let client = self.pool.get().await?;
        let sql = match view {
            View::Background => &*GET_BACKGROUND_TASK,
            View::Scheduled => &*GET_SCHEDULED_TASK,
        };
        let st = client.prepare_cached(sql).await?;
        Ok(match client.query_opt(&st, &[&t.as_str(), &i.as_str(), &p.as_str()]).await? {
            None => Found::NoInstance,
            Some(row) if row.try_get::<_, Option<String>>(0)?.is_none() => Found::NoTask,
            Some(row) => Found::Yes(task_from_row(&row)?),
        })
    }

    async fn delete_task(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        t: &TaskId,
        view: View,
        audit: Option<AuditEvent>,
    ) -> StoreResult<DeleteOutcome> {
        let client = self.pool.get().await?;
        let read = match view {
            View::Background => &*GET_BACKGROUND_TASK,
            View::Scheduled => &*GET_SCHEDULED_TASK,
        };
        let read = client.prepare_cached(read).await?;
        let write = client.prepare_cached(if audit.is_some() { &DELETE_WRITE_AUDITED } else { &DELETE_WRITE }).await?;
        // Read, decide in Rust, write only if the row is still as read: two statements and no
        // lock held across a round trip (the counters' rows are shared by every delete of an
        // instance). A task that changed in between is read again.
        loop {
            let task = match client.query_opt(&read, &[&t.as_str(), &i.as_str(), &p.as_str()]).await? {
                None => return Ok(DeleteOutcome::NoInstance),
                Some(row) if row.try_get::<_, Option<String>>(0)?.is_none() => return Ok(DeleteOutcome::NoTask),
                Some(row) => task_from_row(&row)?,
            };
            if !deletion::may_delete(&task) {
                return Ok(DeleteOutcome::Running);
            }
            let views: Vec<i16> = views_of(&task).map(|v| v.code() as i16).collect();
            let (id, status, bucket) = (t.as_str(), task.status.as_str(), bucket_of(task.created_at));
            let at = audit.as_ref().map_or_else(kafka_tasks_domain::now_ms, |a| a.at);
            let ev = NewEvent::of(EventKind::Deleted, &task, None, at);
            let kind = ev.kind.as_str();
            let logged: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                [&ev.at, &ev.project_id, &ev.instance_id, &ev.task_id, &kind, &ev.data];
            let deleted: i64 = match &audit {
                Some(event) => {
                    let detail = serde_json::to_string(&deletion::deleted(&task)).map_err(json_error)?;
                    let e = event.storable_with(Some(detail));
                    let code = i32::from(e.status);
                    let values: [&(dyn tokio_postgres::types::ToSql + Sync); 15] = [
                        &id,
                        &status,
                        &task.updated_at,
                        &views,
                        &bucket,
                        &e.at,
                        &e.request_id,
                        &e.project_id,
                        &e.user_id,
                        &e.user_name,
                        &e.access_key,
                        &e.action,
                        &e.target,
                        &code,
                        &e.detail,
                    ];
                    let all: Vec<_> = values.iter().chain(logged.iter()).copied().collect();
                    client.query_one(&write, &all).await?.try_get(0)?
                }
                None => {
                    let values: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                        [&id, &status, &task.updated_at, &views, &bucket];
                    let all: Vec<_> = values.iter().chain(logged.iter()).copied().collect();
                    client.query_one(&write, &all).await?.try_get(0)?
                }
            };
            if deleted == 1 {
                self.events_committed();
                return Ok(DeleteOutcome::Deleted(Box::new(task)));
            }
        }
    }

    async fn delete_tasks(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        filter: &BulkFilter,
        limit: u64,
        audit: AuditEvent,
    ) -> StoreResult<Option<BulkDeleted>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if !instance_exists(&tx, p, i).await? {
            return Ok(None);
        }
        // Locked as read: a concurrent single delete or resume waits, or is waited for.
        let (deleted, more) = bulk_select(&tx, i, filter, limit, " FOR UPDATE").await?;
        if !deleted.is_empty() {
            // The counters first, then the delete (whose trigger takes the count of finished
            // tasks): every write takes them in this order (see `prune_tasks`).
            count_out(&tx, i, &deleted, audit.at).await?;
            let ids: Vec<&str> = deleted.iter().map(|t| t.id.as_str()).collect();
            let st = tx.prepare_cached("DELETE FROM tasks WHERE id = ANY($1)").await?;
            tx.execute(&st, &[&ids]).await?;
        }
        insert_audits(&tx, &bulk_delete_events(&audit, filter, &deleted, more)).await?;
        tx.commit().await?;
        if !deleted.is_empty() {
            self.events_committed();
        }
        Ok(Some(BulkDeleted { deleted, more }))
    }

    async fn preview_delete(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        filter: &BulkFilter,
        limit: u64,
    ) -> StoreResult<Option<BulkPreview>> {
        let mut client = self.pool.get().await?;
        // One snapshot for the count and the rows.
        let tx =
            client.build_transaction().isolation_level(tokio_postgres::IsolationLevel::RepeatableRead).start().await?;
        if !instance_exists(&tx, p, i).await? {
            return Ok(None);
        }
        let statuses: Vec<&str> = filter.statuses_or_finished().iter().map(|s| s.as_str()).collect();
        let st = tx.prepare_cached(&format!("SELECT count(*) FROM tasks WHERE {BULK_WHERE}")).await?;
        let matched: i64 =
            tx.query_one(&st, &[&i.as_str(), &filter.from, &filter.to, &statuses, &filter.name]).await?.get(0);
        let (first, _) = bulk_select(&tx, i, filter, limit, "").await?;
        tx.commit().await?;
        Ok(Some(BulkPreview { matched: u64::try_from(matched).unwrap_or(0), first }))
    }

    async fn update_scheduled(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        t: &TaskId,
        change: ScheduleChange,
        now: Timestamp,
        audit: Option<AuditEvent>,
    ) -> StoreResult<Found<bool>> {
        let now = now.ms();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if !instance_exists(&tx, p, i).await? {
            return Ok(Found::NoInstance);
        }
        let Some(mut task) = load_task(&tx, i, t, View::Scheduled, true).await? else {
            return Ok(Found::NoTask);
        };
        let Some(r) = rescheduling::rescheduled(&task, change, now) else {
            return Ok(Found::Yes(false));
        };
        r.apply_to(&mut task, now);
        let changed = [NewEvent::of(EventKind::Rescheduled, &task, None, now)];
        let (id, status) = (t.as_str(), r.status.as_str());
        let update = async {
            tx.execute(
                "UPDATE tasks SET status = $2, schedule_at = $3, due_at = $4, updated_at = $5 WHERE id = $1",
                &[&id, &status, &r.schedule_at, &r.due_at, &now],
            )
            .await
            .map_err(StoreError::from)
        };
        tokio::try_join!(update, append_events(&tx, &changed))?;
        if let Some(event) = &audit {
            insert_audit(&tx, event).await?;
        }
        tx.commit().await?;
        self.events_committed();
        Ok(Found::Yes(true))
    }
}
