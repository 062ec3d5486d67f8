//! Background and scheduled task records: rows, day-bucket counts, lists and pages.

use std::sync::LazyLock;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::*;
use crate::paging::ViewCode as _;
use crate::paging::{BUCKET_MS, PageCount, bucket_of, bucket_range, partial_edges, removal_deltas, unbounded};
use crate::sqlite::events::append_events;
use kafka_tasks_domain::Timestamp;
use kafka_tasks_domain::events::{EventKind, NewEvent};
use kafka_tasks_domain::operation::Operation;
use kafka_tasks_domain::placement::{placement, views_of};
use kafka_tasks_domain::{InstanceId, ProjectId, Step, TaskId, TaskRecord, TaskStatus};
use kafka_tasks_domain::{deletion, rescheduling};

pub(super) const TASK_COLUMNS: &str = "id, project_id, instance_id, name, user_id, user_name, params, status, \
     created_at, updated_at, schedule_at, steps";

pub(super) fn get_task_sql(filter: &str) -> String {
    let cols: Vec<String> = TASK_COLUMNS.split(", ").map(|c| format!("t.{}", c.trim())).collect();
    format!(
        "SELECT {} FROM instances i LEFT JOIN tasks t ON t.id = ?1 AND t.instance_id = i.id AND t.{filter} \
         WHERE i.id = ?2 AND i.project_id = ?3",
        cols.join(", ")
    )
}

pub(super) static GET_BACKGROUND_TASK: LazyLock<String> = LazyLock::new(|| get_task_sql(view_filter(View::Background)));
pub(super) static GET_SCHEDULED_TASK: LazyLock<String> = LazyLock::new(|| get_task_sql(view_filter(View::Scheduled)));

pub(super) const LIST_HEAD_ALL: &str = "SELECT EXISTS (SELECT 1 FROM instances WHERE id = ?1 AND project_id = ?5), \
     coalesce((SELECT n FROM task_totals WHERE instance_id = ?1 AND view = ?2 AND ?3 <= ?4), 0)";

pub(super) const LIST_HEAD_RANGE: &str = "SELECT EXISTS (SELECT 1 FROM instances WHERE id = ?1 AND project_id = ?5), \
     (SELECT coalesce(sum(n), 0) FROM task_buckets WHERE instance_id = ?1 AND view = ?2 AND bucket BETWEEN ?3 AND ?4)";

pub(super) const BUCKETS_NEWEST_FIRST: &str = "SELECT bucket, n FROM task_buckets \
     WHERE instance_id = ?1 AND view = ?2 AND bucket BETWEEN ?3 AND ?4 ORDER BY bucket DESC";

/// A page of a view, newest first, below an upper bound on `created_at`.
pub(super) fn page_sql(view: View) -> &'static str {
    static BACKGROUND: LazyLock<String> = LazyLock::new(|| page_sql_text(View::Background));
    static SCHEDULED: LazyLock<String> = LazyLock::new(|| page_sql_text(View::Scheduled));
    match view {
        View::Background => &BACKGROUND,
        View::Scheduled => &SCHEDULED,
    }
}

pub(super) fn page_sql_text(view: View) -> String {
    format!(
        "SELECT {SUMMARY_COLUMNS} FROM tasks WHERE instance_id = ?1 AND {} AND created_at BETWEEN ?2 AND ?3 \
         ORDER BY created_at DESC, id DESC LIMIT ?4 OFFSET ?5",
        view_filter(view)
    )
}

/// The rows a bulk delete selects (and its dry run counts): finished background tasks of the
/// instance (`?1`) created in `?2..=?3`, of the statuses in the JSON array `?4`, named `?5` if given.
const BULK_WHERE: &str = "instance_id = ?1 AND in_background = 1 AND due_at IS NULL AND created_at BETWEEN ?2 AND ?3 \
     AND status IN (SELECT value FROM json_each(?4)) AND (?5 IS NULL OR name = ?5)";

fn bulk_statuses(filter: &BulkFilter) -> StoreResult<String> {
    let statuses: Vec<&str> = filter.statuses_or_finished().iter().map(|s| s.as_str()).collect();
    serde_json::to_string(&statuses).map_err(json_error)
}

/// The oldest at most `limit` records a bulk delete with `filter` removes, and whether more match.
fn bulk_select(
    conn: &Connection,
    i: &InstanceId,
    filter: &BulkFilter,
    limit: u64,
) -> StoreResult<(Vec<TaskRecord>, bool)> {
    let statuses = bulk_statuses(filter)?;
    let mut st = conn.prepare_cached(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM tasks WHERE {BULK_WHERE} ORDER BY created_at, id LIMIT ?6"
    ))?;
    let fetch = limit.saturating_add(1).min(i64::MAX as u64) as i64;
    let rows =
        st.query_map(params![i.as_str(), filter.from, filter.to, statuses, filter.name, fetch], task_from_row)?;
    let mut read = Vec::new();
    for r in rows {
        read.push(r??);
    }
    Ok(filter.select(read, limit))
}

/// The columns of a list row: everything but the steps, which lists do not show.
pub(super) const SUMMARY_COLUMNS: &str = "id, project_id, instance_id, name, user_id, user_name, params, status, \
     created_at, updated_at, schedule_at, NULL";

pub(super) fn task_from_row(r: &Row<'_>) -> rusqlite::Result<Result<TaskRecord, StoreError>> {
    let status: String = r.get(7)?;
    let steps: Option<String> = r.get(11)?;
    let mut rec = TaskRecord {
        id: TaskId::from_trusted(r.get(0)?),
        project_id: ProjectId::from_trusted(r.get(1)?),
        instance_id: InstanceId::from_trusted(r.get(2)?),
        name: r.get(3)?,
        user_id: r.get(4)?,
        user_name: r.get(5)?,
        params: r.get(6)?,
        status: TaskStatus::Created,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        schedule_at: r.get(10)?,
        steps: Vec::new(),
    };
    Ok((|| {
        rec.status = TaskStatus::parse(&status).ok_or_else(|| corrupt(format!("task status {status:?}")))?;
        if let Some(steps) = steps {
            rec.steps = serde_json::from_str::<Vec<Step>>(&steps).map_err(json_error)?;
        }
        Ok(rec)
    })())
}

pub(super) fn view_filter(view: View) -> &'static str {
    match view {
        View::Background => "in_background = 1",
        View::Scheduled => "schedule_at IS NOT NULL",
    }
}

pub(super) fn load_task(conn: &Connection, i: &InstanceId, t: &TaskId, view: View) -> StoreResult<Option<TaskRecord>> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1 AND instance_id = ?2 AND {}", view_filter(view));
    let mut st = conn.prepare_cached(&sql)?;
    match st.query_row(params![t.as_str(), i.as_str()], task_from_row).optional()? {
        Some(r) => r.map(Some),
        None => Ok(None),
    }
}

/// Moves a task in or out of a view's day bucket.
pub(super) fn bump(
    conn: &Connection,
    instance: &InstanceId,
    view: View,
    created_at: i64,
    delta: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO task_buckets (instance_id, view, bucket, n) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (instance_id, view, bucket) DO UPDATE SET n = n + excluded.n",
    )?
    .execute(params![instance.as_str(), view.code(), bucket_of(created_at), delta])?;
    conn.prepare_cached(
        "INSERT INTO task_totals (instance_id, view, n) VALUES (?1, ?2, ?3) \
         ON CONFLICT (instance_id, view) DO UPDATE SET n = n + excluded.n",
    )?
    .execute(params![instance.as_str(), view.code(), delta])?;
    Ok(())
}

/// Removes loaded records, takes them out of their day buckets and totals, each counter row
/// once, and logs a `task.deleted` event for each, at `at`. The records are those of `instance`.
pub(super) fn remove_records(
    conn: &Connection,
    instance: &InstanceId,
    records: &[TaskRecord],
    at: i64,
) -> StoreResult<()> {
    let logged: Vec<NewEvent> = records.iter().map(|r| NewEvent::of(EventKind::Deleted, r, None, at)).collect();
    append_events(conn, &logged)?;
    for r in records {
        conn.prepare_cached("DELETE FROM tasks WHERE id = ?1")?.execute(params![r.id.as_str()])?;
    }
    for (view, bucket, delta) in removal_deltas(records) {
        bump(conn, instance, view, bucket * BUCKET_MS, delta)?;
    }
    count_finished(conn, instance, -(records.iter().filter(|r| is_finished(r)).count() as i64))
}

/// Moves instance `i`'s count of finished tasks (`instances.finished_tasks`, what retention's cap
/// reads) by `delta`. Every write that inserts, ends, un-ends or deletes a task calls it (or, for
/// a task's end, [`save_instance_ending`](super::instances::save_instance_ending)), as the task
/// counters are kept: in code, since a trigger on `tasks` would make SQLite open a statement
/// journal for every statement that writes a task (migration 0018).
pub(super) fn count_finished(conn: &Connection, i: &InstanceId, delta: i64) -> StoreResult<()> {
    if delta != 0 {
        conn.prepare_cached("UPDATE instances SET finished_tasks = finished_tasks + ?2 WHERE id = ?1")?
            .execute(params![i.as_str(), delta])?;
    }
    Ok(())
}

/// Whether a record counts as finished: its `due_at` is NULL ([`placement`]).
pub(super) fn is_finished(r: &TaskRecord) -> bool {
    placement(r).1.is_none()
}

pub(super) fn count_in(conn: &Connection, r: &TaskRecord, delta: i64) -> StoreResult<()> {
    for view in views_of(r) {
        bump(conn, &r.instance_id, view, r.created_at, delta)?;
    }
    Ok(())
}

pub(super) fn insert_task(conn: &Connection, t: &NewTask) -> StoreResult<()> {
    let r = &t.record;
    let (in_background, due_at) = placement(r);
    let steps = serde_json::to_string(&r.steps).map_err(json_error)?;
    let op = serde_json::to_string(&t.operation).map_err(json_error)?;
    let mut st = conn.prepare_cached(
        "INSERT INTO tasks (id, project_id, instance_id, name, user_id, user_name, params, status, created_at, \
         updated_at, schedule_at, in_background, steps, operation, due_at, lease_owner) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, NULL)",
    )?;
    st.execute(params![
        r.id.as_str(),
        r.project_id.as_str(),
        r.instance_id.as_str(),
        r.name,
        r.user_id,
        r.user_name,
        r.params,
        r.status.as_str(),
        r.created_at,
        r.updated_at,
        r.schedule_at,
        in_background as i64,
        steps,
        op,
        due_at,
    ])?;
    if due_at.is_none() {
        count_finished(conn, &r.instance_id, 1)?;
    }
    count_in(conn, r, 1)
}

/// Writes back a task a worker changed: its status, steps and lease.
pub(super) fn save_task_progress(
    conn: &Connection,
    t: &TaskRecord,
    due_at: Option<i64>,
    owner: Option<&str>,
) -> StoreResult<()> {
    let steps = serde_json::to_string(&t.steps).map_err(json_error)?;
    // `in_background` is not set here: naming it would make SQLite rewrite the task's entry in
    // the partial index `tasks_background` on every step. A claim sets it when a scheduled task
    // fires ([`fired_into_background`]).
    let mut st = conn.prepare_cached(
        "UPDATE tasks SET status = ?2, updated_at = ?3, steps = ?4, due_at = ?5, lease_owner = ?6 WHERE id = ?1",
    )?;
    st.execute(params![t.id.as_str(), t.status.as_str(), t.updated_at, steps, due_at, owner])?;
    Ok(())
}

/// A scheduled task that fired is a background task from now on.
pub(super) fn fired_into_background(conn: &Connection, t: &TaskId) -> StoreResult<()> {
    conn.prepare_cached("UPDATE tasks SET in_background = 1 WHERE id = ?1")?.execute(params![t.as_str()])?;
    Ok(())
}

pub(super) fn load_operation(conn: &Connection, t: &TaskId) -> StoreResult<Operation> {
    let mut st = conn.prepare_cached("SELECT operation FROM tasks WHERE id = ?1")?;
    let op: String = st.query_row(params![t.as_str()], |r| r.get(0))?;
    serde_json::from_str(&op).map_err(json_error)
}

#[async_trait]
impl TaskStore for Sqlite {
    async fn list_tasks(&self, q: &TaskQuery) -> StoreResult<Option<(u64, Vec<TaskRecord>)>> {
        self.read(|conn| {
            let filter = view_filter(q.view);
            let inst = q.instance_id.as_str();
            let (first, last) = bucket_range(q);
            let args = params![inst, q.view.code(), first, last];
            // The instance check and the total in one statement: the total from the instance's
            // running count when unfiltered, else from the day buckets in range.
            let head = if unbounded(q) { LIST_HEAD_ALL } else { LIST_HEAD_RANGE };
            let (exists, total): (bool, i64) = conn
                .prepare_cached(head)?
                .query_row(params![inst, q.view.code(), first, last, q.project_id.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            if !exists {
                return Ok(None);
            }
            let mut count = PageCount::new(q, total);
            for (bucket, lo, hi) in partial_edges(q) {
                let sql = format!(
                    "SELECT count(*) FROM tasks WHERE instance_id = ?1 AND {filter} AND created_at BETWEEN ?2 AND ?3"
                );
                let n: i64 = conn.prepare_cached(&sql)?.query_row(params![inst, lo, hi], |r| r.get(0))?;
                let stored: i64 = conn
                    .prepare_cached("SELECT n FROM task_buckets WHERE instance_id = ?1 AND view = ?2 AND bucket = ?3")?
                    .query_row(params![inst, q.view.code(), bucket], |r| r.get(0))
                    .optional()?
                    .unwrap_or(0);
                count.edge(bucket, n, stored);
            }
            // Newest buckets first, read only as far as the page's offset.
            let mut st = conn.prepare_cached(BUCKETS_NEWEST_FIRST)?;
            let mut rows = st.query(args)?;
            while let Some(r) = rows.next()? {
                if !count.bucket(r.get(0)?, r.get(1)?) {
                    break;
                }
            }
            drop(rows);
            let (total, start) = count.plan();
            let Some((upper, skip)) = start else {
                return Ok(Some((total, Vec::new())));
            };
            let mut st = conn.prepare_cached(page_sql(q.view))?;
            let from = q.created_from.unwrap_or(i64::MIN);
            let rows = st.query_map(
                params![inst, from, upper, q.limit as i64, skip.min(i64::MAX as u64) as i64],
                task_from_row,
            )?;
            let mut tasks = Vec::with_capacity(q.limit as usize);
            for r in rows {
                tasks.push(r??);
            }
            Ok(Some((total, tasks)))
        })
        .await
    }

    async fn get_task(&self, p: &ProjectId, i: &InstanceId, t: &TaskId, view: View) -> StoreResult<Found<TaskRecord>> {
        self.read(move |conn| {
            // One statement: the instance row always, the task's columns when it exists.
            let sql = match view {
                View::Background => &*GET_BACKGROUND_TASK,
                View::Scheduled => &*GET_SCHEDULED_TASK,
            };
            let mut st = conn.prepare_cached(sql)?;
            let found = st
                .query_row(params![t.as_str(), i.as_str(), p.as_str()], |r| match r.get::<_, Option<String>>(0)? {
                    None => Ok(None),
                    Some(_) => task_from_row(r).map(Some),
                })
                .optional()?;
            Ok(match found {
                None => Found::NoInstance,
                Some(None) => Found::NoTask,
                Some(Some(task)) => Found::Yes(task?),
            })
        })
        .await
    }

    async fn delete_task(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        t: &TaskId,
        view: View,
        audit: Option<AuditEvent>,
    ) -> StoreResult<DeleteOutcome> {
        let (p, i, t) = (p.clone(), i.clone(), t.clone());
        let outcome = self
            .write(move |conn| {
                if !instance_exists(conn, &p, &i)? {
                    return Ok(DeleteOutcome::NoInstance);
                }
                let Some(task) = load_task(conn, &i, &t, view)? else {
                    return Ok(DeleteOutcome::NoTask);
                };
                if !deletion::may_delete(&task) {
                    return Ok(DeleteOutcome::Running);
                }
                conn.prepare_cached("DELETE FROM tasks WHERE id = ?1")?.execute(params![t.as_str()])?;
                count_in(conn, &task, -1)?;
                if is_finished(&task) {
                    count_finished(conn, &i, -1)?;
                }
                let at = audit.as_ref().map_or_else(kafka_tasks_domain::now_ms, |a| a.at);
                append_events(conn, &[NewEvent::of(EventKind::Deleted, &task, None, at)])?;
                if let Some(event) = &audit {
                    let detail = serde_json::to_string(&deletion::deleted(&task)).map_err(json_error)?;
                    write_audit(conn, &event.storable_with(Some(detail)))?;
                }
                Ok(DeleteOutcome::Deleted(Box::new(task)))
            })
            .await?;
        if matches!(outcome, DeleteOutcome::Deleted(_)) {
            self.events_committed();
        }
        Ok(outcome)
    }

    async fn delete_tasks(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        filter: &BulkFilter,
        limit: u64,
        audit: AuditEvent,
    ) -> StoreResult<Option<BulkDeleted>> {
        let (p, i, filter) = (p.clone(), i.clone(), filter.clone());
        let out = self
            .write(move |conn| {
                if !instance_exists(conn, &p, &i)? {
                    return Ok(None);
                }
                let (deleted, more) = bulk_select(conn, &i, &filter, limit)?;
                remove_records(conn, &i, &deleted, audit.at)?;
                for event in bulk_delete_events(&audit, &filter, &deleted, more) {
                    insert_audit(conn, &event)?;
                }
                Ok(Some(BulkDeleted { deleted, more }))
            })
            .await?;
        if out.as_ref().is_some_and(|b| !b.deleted.is_empty()) {
            self.events_committed();
        }
        Ok(out)
    }

    async fn preview_delete(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        filter: &BulkFilter,
        limit: u64,
    ) -> StoreResult<Option<BulkPreview>> {
        let (p, i, filter) = (p.clone(), i.clone(), filter.clone());
        self.read(move |conn| {
            if !instance_exists(conn, &p, &i)? {
                return Ok(None);
            }
            let statuses = bulk_statuses(&filter)?;
            let matched: i64 = conn
                .prepare_cached(&format!("SELECT count(*) FROM tasks WHERE {BULK_WHERE}"))?
                .query_row(params![i.as_str(), filter.from, filter.to, statuses, filter.name], |r| r.get(0))?;
            let (first, _) = bulk_select(conn, &i, &filter, limit)?;
            Ok(Some(BulkPreview { matched: u64::try_from(matched).unwrap_or(0), first }))
        })
        .await
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
        let (p, i, t) = (p.clone(), i.clone(), t.clone());
        let found = self
            .write(move |conn| {
                if !instance_exists(conn, &p, &i)? {
                    return Ok(Found::NoInstance);
                }
                let Some(mut task) = load_task(conn, &i, &t, View::Scheduled)? else {
                    return Ok(Found::NoTask);
                };
                let Some(r) = rescheduling::rescheduled(&task, change, now) else {
                    return Ok(Found::Yes(false));
                };
                conn.prepare_cached(
                    "UPDATE tasks SET status = ?2, schedule_at = ?3, due_at = ?4, updated_at = ?5 WHERE id = ?1",
                )?
                .execute(params![t.as_str(), r.status.as_str(), r.schedule_at, r.due_at, now])?;
                // A cancel ends the task, a resume un-ends it.
                count_finished(conn, &i, r.due_at.is_none() as i64 - is_finished(&task) as i64)?;
                r.apply_to(&mut task, now);
                append_events(conn, &[NewEvent::of(EventKind::Rescheduled, &task, None, now)])?;
                if let Some(event) = &audit {
                    insert_audit(conn, event)?;
                }
                Ok(Found::Yes(true))
            })
            .await?;
        if found == Found::Yes(true) {
            self.events_committed();
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite re-prepares a statement on every new binding when the plan might depend on bound
    /// values (ORDER BY, LIMIT, joins), unless the query planner stability guarantee is on.
    #[test]
    fn hot_statements_are_never_reprepared() {
        let dir = std::env::temp_dir().join(format!("kt-reprepare-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut conn = connect(&dir.join("t.db")).expect("open");
        migrate(&mut conn).expect("migrate");
        let statements = [
            (GET_BACKGROUND_TASK.as_str().to_owned(), 3),
            (BUCKETS_NEWEST_FIRST.to_owned(), 4),
            (LIST_HEAD_ALL.to_owned(), 5),
            (LIST_HEAD_RANGE.to_owned(), 5),
            (page_sql(View::Background).to_owned(), 5),
        ];
        for (sql, n) in statements {
            let mut last = 0;
            for i in 0..5i64 {
                let mut st = conn.prepare_cached(&sql).expect("prepare");
                let values: Vec<rusqlite::types::Value> =
                    (0..n).map(|k| if k == 0 { format!("i{i}").into() } else { (i * 10 + k).into() }).collect();
                let mut rows = st.query(rusqlite::params_from_iter(values)).expect("query");
                while rows.next().expect("step").is_some() {}
                drop(rows);
                last = st.get_status(rusqlite::StatementStatus::RePrepare);
            }
            assert_eq!(last, 0, "{sql}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
