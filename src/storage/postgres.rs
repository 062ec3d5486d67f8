//! The PostgreSQL engine, for several `serve` processes on one database.
//!
//! Concurrency rests on row locks under READ COMMITTED: an operation is admitted with its
//! instance row locked (`FOR UPDATE`), so the one-operation-per-instance rule holds across
//! processes; workers claim due tasks with `FOR UPDATE SKIP LOCKED` and skip a task whose
//! instance row another transaction holds, so claims never wait on each other; every step's end
//! is written only while the worker's lease is current. Migrations run under an advisory lock.

use std::str::FromStr;
use std::sync::LazyLock;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use tokio_postgres::{NoTls, Row};

use super::paging::{PageCount, bucket_of, bucket_range, partial_edges, unbounded};
use super::*;
use crate::domain::instance::Instance;
use crate::domain::operation::{Operation, StepContext};
use crate::domain::placement::{placement, views_of};
use crate::domain::transition::{self, InstanceWrite, TaskWrite, Write};
use crate::domain::{InstanceId, ProjectId, Step, TaskId, TaskRecord, TaskStatus};
use crate::domain::{admission, deletion, rescheduling};
use crate::telemetry;

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_auth.sql"),
    include_str!("../../migrations/postgres/0003_task_buckets.sql"),
    include_str!("../../migrations/postgres/0004_task_totals.sql"),
    include_str!("../../migrations/postgres/0005_master_key_check.sql"),
    include_str!("../../migrations/postgres/0006_kernel_builds.sql"),
];
/// Serialises migrations of processes that start together.
const MIGRATION_LOCK: i64 = 0x6b61_666b_6174_0001;
/// Serialises the creation of the first credential.
const FIRST_CREDENTIAL_LOCK: i64 = 0x6b61_666b_6174_0002;

pub struct Postgres {
    pool: Pool,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    telemetry::store_error(StoreError::Backend(e.to_string()))
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    telemetry::store_error(StoreError::Corrupt(e.to_string()))
}

/// SQLSTATE classes and codes that mean "the database cannot serve now" rather than "this
/// statement is wrong": connection exceptions (08), insufficient resources (53: disk full, out
/// of memory, too many connections), operator intervention (57: admin/crash shutdown, cannot
/// connect now, statement cancelled), a read-only transaction (25006: a standby), and a
/// database that does not exist (3D000: dropped under us).
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57") || code == "25006" || code == "3D000"
}

/// Keeps what PostgreSQL said (SQLSTATE, message, detail, hint, where) instead of the bare
/// "db error" that `tokio_postgres::Error` displays, and tells outages from faults.
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        telemetry::store_error(classify(e))
    }
}

fn classify(e: tokio_postgres::Error) -> StoreError {
    {
        if let Some(db) = e.as_db_error() {
            let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            for (label, part) in [("detail", db.detail()), ("hint", db.hint()), ("where", db.where_())] {
                if let Some(part) = part {
                    text.push_str(&format!("; {label}: {part}"));
                }
            }
            if let (Some(table), Some(constraint)) = (db.table(), db.constraint()) {
                text.push_str(&format!("; table {table}, constraint {constraint}"));
            }
            return if unavailable_sqlstate(db.code().code()) {
                StoreError::Unavailable(text)
            } else {
                StoreError::Backend(text)
            };
        }
        // Not from the server: the connection is closed, refused, or broke mid-way.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) {
            StoreError::Unavailable(text)
        } else {
            StoreError::Backend(text)
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match e {
            // With `RecyclingMethod::Fast` nothing runs on a pooled connection before it is
            // handed out, so a backend error here comes from connecting: the server is down,
            // refuses connections, or this database does not accept them.
            PoolError::Backend(e) => telemetry::store_error(match classify(e) {
                StoreError::Backend(text) => StoreError::Unavailable(format!("cannot connect: {text}")),
                other => other,
            }),
            PoolError::Closed => telemetry::store_error(StoreError::Closed),
            PoolError::Timeout(_) => telemetry::store_error(StoreError::Unavailable(format!("connection pool: {e}"))),
            PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => backend(e),
        }
    }
}

/// The longest a request waits for a connection from the pool, or for a new one to open.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Postgres {
    pub async fn open(url: &str, pool_size: usize) -> anyhow::Result<Self> {
        let config = tokio_postgres::Config::from_str(url)?;
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        // Bounded waits: with the server down or every connection stuck, a request answers
        // 503 after POOL_WAIT instead of hanging.
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .build()?;
        let pg = Postgres { pool };
        pg.migrate().await?;
        Ok(pg)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
        let result = async {
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
                )
                .await?;
            let applied: i64 =
                client.query_one("SELECT count(*) FROM schema_migrations", &[]).await?.try_get(0)?;
            if applied as usize > MIGRATIONS.len() {
                return Err(StoreError::Corrupt(format!(
                    "the database is at schema version {applied}, newer than this build knows ({})",
                    MIGRATIONS.len()
                )));
            }
            for (n, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
                let tx = client.transaction().await?;
                tx.batch_execute(sql).await?;
                let version = (n + 1) as i32;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    &[&version, &crate::domain::now_ms()],
                )
                .await?;
                tx.commit().await?;
            }
            Ok(())
        }
        .await;
        client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
        result
    }
}

const TASK_COLUMNS: &str = "id, project_id, instance_id, name, user_id, user_name, params, status, \
     created_at, updated_at, schedule_at, steps";

fn task_from_row(r: &Row) -> Result<TaskRecord, StoreError> {
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
            Some(s) => serde_json::from_str::<Vec<Step>>(&s).map_err(corrupt)?,
            None => Vec::new(),
        },
    })
}

/// The columns of a list row: everything but the steps, which lists do not show.
const SUMMARY_COLUMNS: &str = "id, project_id, instance_id, name, user_id, user_name, params, status, \
     created_at, updated_at, schedule_at, NULL::TEXT";

fn get_task_sql(filter: &str) -> String {
    let cols: Vec<String> = TASK_COLUMNS.split(", ").map(|c| format!("t.{}", c.trim())).collect();
    format!(
        "SELECT {} FROM instances i LEFT JOIN tasks t ON t.id = $1 AND t.instance_id = i.id AND t.{filter} \
         WHERE i.id = $2 AND i.project_id = $3",
        cols.join(", ")
    )
}

static GET_BACKGROUND_TASK: LazyLock<String> = LazyLock::new(|| get_task_sql(view_filter(View::Background)));
static GET_SCHEDULED_TASK: LazyLock<String> = LazyLock::new(|| get_task_sql(view_filter(View::Scheduled)));

fn view_filter(view: View) -> &'static str {
    match view {
        View::Background => "in_background",
        View::Scheduled => "schedule_at IS NOT NULL",
    }
}

async fn instance_exists(tx: &Transaction<'_>, p: &ProjectId, i: &InstanceId) -> StoreResult<bool> {
    let st = tx.prepare_cached("SELECT 1 FROM instances WHERE id = $1 AND project_id = $2").await?;
    Ok(tx.query_opt(&st, &[&i.as_str(), &p.as_str()]).await?.is_some())
}

/// Loads a task; `lock` takes its row lock for the rest of the transaction.
async fn load_task(
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

fn instance_from_row(r: &Row) -> StoreResult<Instance> {
    let doc: String = r.try_get(0)?;
    let busy: Option<String> = r.try_get(1)?;
    let mut inst: Instance = serde_json::from_str(&doc).map_err(corrupt)?;
    inst.busy_task = busy.map(TaskId::from_trusted);
    Ok(inst)
}

/// Loads and locks an instance. With `skip_locked`, `None` also when another transaction holds it.
async fn lock_instance(tx: &Transaction<'_>, i: &InstanceId, skip_locked: bool) -> StoreResult<Option<Instance>> {
    let sql = if skip_locked {
        "SELECT doc, busy_task_id FROM instances WHERE id = $1 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT doc, busy_task_id FROM instances WHERE id = $1 FOR UPDATE"
    };
    let st = tx.prepare_cached(sql).await?;
    tx.query_opt(&st, &[&i.as_str()]).await?.map(|r| instance_from_row(&r)).transpose()
}

async fn save_instance(tx: &Transaction<'_>, inst: &Instance) -> StoreResult<()> {
    let doc = serde_json::to_string(inst).map_err(corrupt)?;
    let st = tx.prepare_cached("UPDATE instances SET doc = $2, busy_task_id = $3 WHERE id = $1").await?;
    tx.execute(&st, &[&inst.id.as_str(), &doc, &inst.busy_task.as_ref().map(TaskId::as_str)]).await?;
    Ok(())
}

/// Moves a task in or out of a view's day bucket.
async fn bump(tx: &Transaction<'_>, instance: &InstanceId, view: View, created_at: i64, delta: i64) -> StoreResult<()> {
    let st = tx
        .prepare_cached(
            "INSERT INTO task_buckets (instance_id, view, bucket, n) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (instance_id, view, bucket) DO UPDATE SET n = task_buckets.n + excluded.n",
        )
        .await?;
    tx.execute(&st, &[&instance.as_str(), &(view.code() as i16), &bucket_of(created_at), &delta]).await?;
    let st = tx
        .prepare_cached(
            "INSERT INTO task_totals (instance_id, view, n) VALUES ($1, $2, $3) \
             ON CONFLICT (instance_id, view) DO UPDATE SET n = task_totals.n + excluded.n",
        )
        .await?;
    tx.execute(&st, &[&instance.as_str(), &(view.code() as i16), &delta]).await?;
    Ok(())
}

async fn count_in(tx: &Transaction<'_>, r: &TaskRecord, delta: i64) -> StoreResult<()> {
    for view in views_of(r) {
        bump(tx, &r.instance_id, view, r.created_at, delta).await?;
    }
    Ok(())
}

/// The columns a new task row is written with, by INSERT and by COPY alike.
const TASK_INSERT_COLUMNS: &str = "id, project_id, instance_id, name, user_id, user_name, params, status, \
     created_at, updated_at, schedule_at, in_background, steps, operation, due_at, lease_owner";

/// A new task's row values, in `TASK_INSERT_COLUMNS` order.
struct TaskRow<'a> {
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
    fn new(t: &'a NewTask) -> StoreResult<Self> {
        let (in_background, due_at) = placement(&t.record);
        let r = &t.record;
        Ok(TaskRow {
            r,
            ids: [r.id.as_str(), r.project_id.as_str(), r.instance_id.as_str()],
            status: r.status.as_str(),
            in_background,
            due_at,
            steps: serde_json::to_string(&t.record.steps).map_err(corrupt)?,
            operation: serde_json::to_string(&t.operation).map_err(corrupt)?,
            owner: None,
        })
    }

    fn values(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 16] {
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

async fn insert_task(tx: &Transaction<'_>, t: &NewTask) -> StoreResult<()> {
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

async fn save_task_progress(
    tx: &Transaction<'_>,
    t: &TaskRecord,
    due_at: Option<i64>,
    owner: Option<&str>,
) -> StoreResult<()> {
    let steps = serde_json::to_string(&t.steps).map_err(corrupt)?;
    let st = tx
        .prepare_cached(
            "UPDATE tasks SET status = $2, updated_at = $3, steps = $4, due_at = $5, lease_owner = $6, \
             in_background = TRUE WHERE id = $1",
        )
        .await?;
    tx.execute(&st, &[&t.id.as_str(), &t.status.as_str(), &t.updated_at, &steps, &due_at, &owner]).await?;
    Ok(())
}

/// Task rows a claim changes, written back in one statement.
#[derive(Default)]
struct TaskUpdates {
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
        self.steps.push(serde_json::to_string(&t.steps).map_err(corrupt)?);
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

/// Writes back several instances in one statement.
async fn save_instances<'a>(tx: &Transaction<'_>, instances: impl Iterator<Item = &'a Instance>) -> StoreResult<()> {
    let (mut ids, mut docs, mut busy) = (Vec::new(), Vec::new(), Vec::new());
    for inst in instances {
        ids.push(inst.id.as_str().to_owned());
        docs.push(serde_json::to_string(inst).map_err(corrupt)?);
        busy.push(inst.busy_task.as_ref().map(|t| t.as_str().to_owned()));
    }
    if ids.is_empty() {
        return Ok(());
    }
    let st = tx
        .prepare_cached(
            "UPDATE instances AS i SET doc = u.doc, busy_task_id = u.busy \
             FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS u(id, doc, busy) WHERE i.id = u.id",
        )
        .await?;
    tx.execute(&st, &[&ids, &docs, &busy]).await?;
    Ok(())
}

async fn remove_instance(tx: &Transaction<'_>, i: &InstanceId) -> StoreResult<()> {
    tx.execute("DELETE FROM tasks WHERE instance_id = $1", &[&i.as_str()]).await?;
    tx.execute("DELETE FROM task_buckets WHERE instance_id = $1", &[&i.as_str()]).await?;
    tx.execute("DELETE FROM task_totals WHERE instance_id = $1", &[&i.as_str()]).await?;
    tx.execute("DELETE FROM instances WHERE id = $1", &[&i.as_str()]).await?;
    Ok(())
}

/// Writes what a worker's end of a step leads to, as the domain maps it ([`transition::Write`]).
/// (A claim writes its batch with [`TaskUpdates`] and [`save_instances`] instead.)
async fn apply(tx: &Transaction<'_>, task: &TaskRecord, inst: &Instance, w: Write, owner: &str) -> StoreResult<()> {
    match w.instance {
        InstanceWrite::Keep => {}
        InstanceWrite::Save => save_instance(tx, inst).await?,
        InstanceWrite::Remove => remove_instance(tx, &inst.id).await?,
    }
    match w.task {
        TaskWrite::RetryAt(at) => save_task_progress(tx, task, Some(at), None).await?,
        TaskWrite::Leased(until) => save_task_progress(tx, task, Some(until), Some(owner)).await?,
        TaskWrite::Ended => save_task_progress(tx, task, None, None).await?,
        TaskWrite::Gone => {}
    }
    Ok(())
}

#[async_trait]
impl TaskStore for Postgres {
    async fn list_tasks(&self, q: &TaskQuery) -> StoreResult<Option<(u64, Vec<TaskRecord>)>> {
        let mut client = self.pool.get().await?;
        // One snapshot for the existence check, the count and the page.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let filter = view_filter(q.view);
        let inst = q.instance_id.as_str();
        let (first, last) = bucket_range(q);
        let view = q.view.code() as i16;
        // The instance check and the total in one statement: the total from the instance's
        // running count when unfiltered, else from the day buckets in range.
        let head = if unbounded(q) {
            "SELECT EXISTS (SELECT 1 FROM instances WHERE id = $1 AND project_id = $5), \
             coalesce((SELECT n FROM task_totals WHERE instance_id = $1 AND view = $2 AND $3::BIGINT <= $4::BIGINT), 0)"
        } else {
            "SELECT EXISTS (SELECT 1 FROM instances WHERE id = $1 AND project_id = $5), \
             (SELECT coalesce(sum(n), 0)::BIGINT FROM task_buckets \
              WHERE instance_id = $1 AND view = $2 AND bucket BETWEEN $3 AND $4)"
        };
        let st = tx.prepare_cached(head).await?;
        let row = tx.query_one(&st, &[&inst, &view, &first, &last, &q.project_id.as_str()]).await?;
        if !row.try_get::<_, bool>(0)? {
            return Ok(None);
        }
        let mut count = PageCount::new(q, row.try_get(1)?);
        for (bucket, lo, hi) in partial_edges(q) {
            let sql = format!(
                "SELECT count(*) FROM tasks WHERE instance_id = $1 AND {filter} AND created_at BETWEEN $2 AND $3"
            );
            let st = tx.prepare_cached(&sql).await?;
            let n: i64 = tx.query_one(&st, &[&inst, &lo, &hi]).await?.try_get(0)?;
            let st = tx
                .prepare_cached("SELECT n FROM task_buckets WHERE instance_id = $1 AND view = $2 AND bucket = $3")
                .await?;
            let stored: i64 =
                tx.query_opt(&st, &[&inst, &view, &bucket]).await?.map(|r| r.try_get(0)).transpose()?.unwrap_or(0);
            count.edge(bucket, n, stored);
        }
        // Newest buckets first, read in slices only as far as the page's offset.
        let st = tx
            .prepare_cached(
                "SELECT bucket, n FROM task_buckets WHERE instance_id = $1 AND view = $2 AND bucket BETWEEN $3 AND $4 \
                 ORDER BY bucket DESC LIMIT $5 OFFSET $6",
            )
            .await?;
        // A first page needs a bucket or two; deep offsets read on in growing slices.
        let mut slice: i64 = 16;
        'read: loop {
            let rows = tx.query(&st, &[&inst, &view, &first, &last, &slice, &(count.read() as i64)]).await?;
            let len = rows.len() as i64;
            for r in rows {
                if !count.bucket(r.try_get(0)?, r.try_get(1)?) {
                    break 'read;
                }
            }
            if len < slice {
                break;
            }
            slice *= 8;
        }
        let (total, start) = count.plan();
        let Some((upper, skip)) = start else {
            tx.commit().await?;
            return Ok(Some((total, Vec::new())));
        };
        let page = tx
            .prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM tasks WHERE instance_id = $1 AND {filter} AND created_at BETWEEN $2 AND $3 \
                 ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
            ))
            .await?;
        let limit = q.limit.min(i64::MAX as u64) as i64;
        let skip = skip.min(i64::MAX as u64) as i64;
        let from = q.created_from.unwrap_or(i64::MIN);
        let rows = tx.query(&page, &[&inst, &from, &upper, &limit, &skip]).await?;
        let tasks = rows.iter().map(task_from_row).collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await?;
        Ok(Some((total, tasks)))
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
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if !instance_exists(&tx, p, i).await? {
            return Ok(DeleteOutcome::NoInstance);
        }
        let Some(task) = load_task(&tx, i, t, view, true).await? else {
            return Ok(DeleteOutcome::NoTask);
        };
        if !deletion::may_delete(&task) {
            return Ok(DeleteOutcome::Running);
        }
        tx.execute("DELETE FROM tasks WHERE id = $1", &[&t.as_str()]).await?;
        count_in(&tx, &task, -1).await?;
        if let Some(mut event) = audit {
            event.detail = Some(deletion::deleted_detail(&task));
            insert_audit(&tx, &event).await?;
        }
        tx.commit().await?;
        Ok(DeleteOutcome::Deleted(Box::new(task)))
    }

    async fn update_scheduled(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        t: &TaskId,
        change: ScheduleChange,
        now: i64,
        audit: Option<AuditEvent>,
    ) -> StoreResult<Found<bool>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if !instance_exists(&tx, p, i).await? {
            return Ok(Found::NoInstance);
        }
        let Some(task) = load_task(&tx, i, t, View::Scheduled, true).await? else {
            return Ok(Found::NoTask);
        };
        let Some(r) = rescheduling::rescheduled(&task, change, now) else {
            return Ok(Found::Yes(false));
        };
        tx.execute(
            "UPDATE tasks SET status = $2, schedule_at = $3, due_at = $4, updated_at = $5 WHERE id = $1",
            &[&t.as_str(), &r.status.as_str(), &r.schedule_at, &r.due_at, &now],
        )
        .await?;
        if let Some(event) = &audit {
            insert_audit(&tx, event).await?;
        }
        tx.commit().await?;
        Ok(Found::Yes(true))
    }
}

#[async_trait]
impl InstanceStore for Postgres {
    async fn create_instance(&self, inst: Instance, task: NewTask, audit: Option<AuditEvent>) -> StoreResult<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let doc = serde_json::to_string(&inst).map_err(corrupt)?;
        tx.execute(
            "INSERT INTO instances (id, project_id, created_at, busy_task_id, doc) VALUES ($1, $2, $3, $4, $5)",
            &[&inst.id.as_str(), &inst.project_id.as_str(), &inst.created_at, &task.record.id.as_str(), &doc],
        )
        .await?;
        insert_task(&tx, &task).await?;
        if let Some(event) = &audit {
            insert_audit(&tx, event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_instance(&self, p: &ProjectId, i: &InstanceId) -> StoreResult<Option<Instance>> {
        let client = self.pool.get().await?;
        let st =
            client.prepare_cached("SELECT doc, busy_task_id FROM instances WHERE id = $1 AND project_id = $2").await?;
        client.query_opt(&st, &[&i.as_str(), &p.as_str()]).await?.map(|r| instance_from_row(&r)).transpose()
    }

    async fn list_instances(&self, p: &ProjectId) -> StoreResult<Vec<Instance>> {
        let client = self.pool.get().await?;
        let st = client
            .prepare_cached(
                "SELECT doc, busy_task_id FROM instances WHERE project_id = $1 ORDER BY created_at DESC, id DESC",
            )
            .await?;
        client.query(&st, &[&p.as_str()]).await?.iter().map(instance_from_row).collect()
    }

    async fn submit(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        build: TaskBuilder,
        audit: Option<AuditEvent>,
    ) -> StoreResult<Result<NewTask, SubmitError>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let (task, changed) = match admission::submission(lock_instance(&tx, i, false).await?, p, build) {
            Ok(admitted) => admitted,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(inst) = &changed {
            save_instance(&tx, inst).await?;
        }
        insert_task(&tx, &task).await?;
        if let Some(event) = &audit {
            insert_audit(&tx, event).await?;
        }
        tx.commit().await?;
        Ok(Ok(task))
    }

    async fn modify_instance(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        change: InstanceChange,
        audit: Option<AuditEvent>,
    ) -> StoreResult<Result<(), SubmitError>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let inst = match admission::modification(lock_instance(&tx, i, false).await?, p, change) {
            Ok(inst) => inst,
            Err(e) => return Ok(Err(e)),
        };
        save_instance(&tx, &inst).await?;
        if let Some(event) = &audit {
            insert_audit(&tx, event).await?;
        }
        tx.commit().await?;
        Ok(Ok(()))
    }
}

#[async_trait]
impl KernelStore for Postgres {
    async fn added_kernel_builds(&self, engine_version: &str) -> StoreResult<Vec<String>> {
        let client = self.pool.get().await?;
        let st =
            client.prepare_cached("SELECT build FROM kernel_builds WHERE engine_version = $1 ORDER BY seq").await?;
        client.query(&st, &[&engine_version]).await?.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    async fn add_kernel_build(&self, engine_version: &str, build: &str, now: i64) -> StoreResult<bool> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "INSERT INTO kernel_builds (engine_version, build, added_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (engine_version, build) DO NOTHING",
                &[&engine_version, &build, &now],
            )
            .await?;
        Ok(n == 1)
    }
}

#[async_trait]
impl EngineStore for Postgres {
    async fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        max: usize,
        ctx: StepContext,
    ) -> StoreResult<Vec<Claimed>> {
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
        for row in rows {
            let mut task = task_from_row(&row)?;
            let op: String = row.try_get(12)?;
            let operation: Operation = serde_json::from_str(&op).map_err(corrupt)?;
            if removed.contains(&task.instance_id) {
                continue;
            }
            let Some(inst) = instances.get_mut(&task.instance_id) else {
                continue;
            };
            let started = task.status == TaskStatus::Created;
            let was_background = placement(&task).0;
            let taken = transition::take(&mut task, inst, &operation, now, ctx);
            if !was_background && placement(&task).0 {
                // A scheduled task that fires becomes a background task.
                bump(&tx, &task.instance_id, View::Background, task.created_at, 1).await?;
            }
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
            claimed.push(Claimed { task, operation, step: p.step, started, ended: p.ended, reason: p.reason });
        }
        for id in &removed {
            instances.remove(id);
        }
        updates.apply(&tx).await?;
        save_instances(&tx, instances.values()).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn finish_step(
        &self,
        owner: &str,
        task_id: &TaskId,
        step: usize,
        now: i64,
        lease_ms: i64,
        ctx: StepContext,
    ) -> StoreResult<StepOutcome> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let st = tx
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS}, operation FROM tasks \
                 WHERE id = $1 AND lease_owner = $2 AND status = 'EXECUTING' AND due_at >= $3 FOR UPDATE"
            ))
            .await?;
        // A lease that has run out is no longer ours, even if nobody has taken the task yet.
        let Some(row) = tx.query_opt(&st, &[&task_id.as_str(), &owner, &now]).await? else {
            return Ok(StepOutcome::Lost);
        };
        let mut task = task_from_row(&row)?;
        let op: String = row.try_get(12)?;
        let operation: Operation = serde_json::from_str(&op).map_err(corrupt)?;
        let Some(mut inst) = lock_instance(&tx, &task.instance_id, false).await? else {
            return Ok(StepOutcome::Lost);
        };
        let advance = transition::finish_steps(&mut task, &mut inst, &operation, step, now, ctx);
        apply(&tx, &task, &inst, advance.write(now, lease_ms), owner).await?;
        tx.commit().await?;
        Ok(advance.into())
    }

    async fn renew_leases(&self, owner: &str, until: i64) -> StoreResult<()> {
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

    async fn engine_stats(&self, now: i64) -> StoreResult<EngineStats> {
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

const CREDENTIAL_COLUMNS: &str = "access_key, secret_sealed, project_id, user_id, user_name, role, created_at, \
     revoked_at, failed_attempts, locked_until";

fn credential_from_row(r: &Row) -> StoreResult<CredentialRecord> {
    let role: String = r.try_get(5)?;
    Ok(CredentialRecord {
        access_key: r.try_get(0)?,
        secret_sealed: r.try_get(1)?,
        project_id: ProjectId::from_trusted(r.try_get(2)?),
        user_id: r.try_get(3)?,
        user_name: r.try_get(4)?,
        role: role.parse().map_err(corrupt)?,
        created_at: r.try_get(6)?,
        revoked_at: r.try_get(7)?,
        failed_attempts: r.try_get::<_, i32>(8)?.max(0) as u32,
        locked_until: r.try_get(9)?,
    })
}

async fn insert_credential_row(tx: &Transaction<'_>, c: &CredentialRecord) -> StoreResult<()> {
    tx.execute(
        &format!("INSERT INTO credentials ({CREDENTIAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
        &[
            &c.access_key,
            &c.secret_sealed,
            &c.project_id.as_str(),
            &c.user_id,
            &c.user_name,
            &c.role.as_str(),
            &c.created_at,
            &c.revoked_at,
            &(c.failed_attempts.min(i32::MAX as u32) as i32),
            &c.locked_until,
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl CredentialStore for Postgres {
    async fn master_key_check(&self) -> StoreResult<Option<String>> {
        let client = self.pool.get().await?;
        let row = client.query_opt("SELECT check_value FROM master_key_check WHERE id = 1", &[]).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn record_master_key_check(&self, value: &str, now: i64) -> StoreResult<String> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO master_key_check (id, check_value, created_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
                &[&value, &now],
            )
            .await?;
        Ok(client.query_one("SELECT check_value FROM master_key_check WHERE id = 1", &[]).await?.try_get(0)?)
    }

    async fn has_credentials(&self) -> StoreResult<bool> {
        let client = self.pool.get().await?;
        Ok(client.query_opt("SELECT 1 FROM credentials LIMIT 1", &[]).await?.is_some())
    }

    async fn insert_credential(&self, c: CredentialRecord) -> StoreResult<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        insert_credential_row(&tx, &c).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_first_credential(&self, c: CredentialRecord) -> StoreResult<bool> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Processes starting together on an empty database create one first key, not several.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FIRST_CREDENTIAL_LOCK]).await?;
        if tx.query_opt("SELECT 1 FROM credentials LIMIT 1", &[]).await?.is_some() {
            return Ok(false);
        }
        insert_credential_row(&tx, &c).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn get_credential(&self, access_key: &str) -> StoreResult<Option<CredentialRecord>> {
        let client = self.pool.get().await?;
        let st = client
            .prepare_cached(&format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE access_key = $1"))
            .await?;
        client.query_opt(&st, &[&access_key]).await?.map(|r| credential_from_row(&r)).transpose()
    }

    async fn list_credentials(&self) -> StoreResult<Vec<CredentialRecord>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(&format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY created_at, access_key"), &[])
            .await?;
        rows.iter().map(credential_from_row).collect()
    }

    async fn revoke_credential(&self, access_key: &str, now: i64) -> StoreResult<bool> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE credentials SET revoked_at = $2 WHERE access_key = $1 AND revoked_at IS NULL",
                &[&access_key, &now],
            )
            .await?;
        Ok(n == 1)
    }
}

async fn insert_audit(tx: &Transaction<'_>, e: &AuditEvent) -> StoreResult<()> {
    let e = &e.storable();
    let st = tx
        .prepare_cached(
            "INSERT INTO audit_events (at, request_id, project_id, user_id, user_name, access_key, action, target, \
             status, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .await?;
    let detail = e.detail.as_ref().map(|d| d.to_string());
    let status = i32::from(e.status);
    tx.execute(
        &st,
        &[
            &e.at,
            &e.request_id,
            &e.project_id,
            &e.user_id,
            &e.user_name,
            &e.access_key,
            &e.action,
            &e.target,
            &status,
            &detail,
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl AuditStore for Postgres {
    async fn append_audit(&self, e: AuditEvent) -> StoreResult<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        insert_audit(&tx, &e).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_audit(
        &self,
        project: Option<&ProjectId>,
        since: Option<i64>,
        limit: u64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let client = self.pool.get().await?;
        let project = project.map(|p| p.as_str().to_owned());
        let rows = client
            .query(
                "SELECT at, request_id, project_id, user_id, user_name, access_key, action, target, status, detail \
                 FROM audit_events WHERE ($1::TEXT IS NULL OR project_id = $1) AND at >= $2 ORDER BY seq LIMIT $3",
                &[&project, &since.unwrap_or(i64::MIN), &(limit.min(i64::MAX as u64) as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let detail: Option<String> = r.try_get(9)?;
                Ok(AuditEvent {
                    at: r.try_get(0)?,
                    request_id: r.try_get(1)?,
                    project_id: r.try_get(2)?,
                    user_id: r.try_get(3)?,
                    user_name: r.try_get(4)?,
                    access_key: r.try_get(5)?,
                    action: r.try_get(6)?,
                    target: r.try_get(7)?,
                    status: r.try_get::<_, i32>(8)?.clamp(0, 999) as u16,
                    detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                })
            })
            .collect()
    }
}

#[async_trait]
impl BulkStore for Postgres {
    async fn bulk_load(&self, instances: Vec<Instance>, tasks: Vec<NewTask>) -> StoreResult<()> {
        use tokio_postgres::binary_copy::BinaryCopyInWriter;
        use tokio_postgres::types::Type;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let sink =
            tx.copy_in("COPY instances (id, project_id, created_at, busy_task_id, doc) FROM STDIN BINARY").await?;
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(
            sink,
            &[Type::TEXT, Type::TEXT, Type::INT8, Type::TEXT, Type::TEXT]
        ));
        for inst in &instances {
            let doc = serde_json::to_string(inst).map_err(corrupt)?;
            let busy = inst.busy_task.as_ref().map(TaskId::as_str);
            writer
                .as_mut()
                .write(&[&inst.id.as_str(), &inst.project_id.as_str(), &inst.created_at, &busy, &doc])
                .await?;
        }
        writer.as_mut().finish().await?;
        let sink = tx.copy_in(&format!("COPY tasks ({TASK_INSERT_COLUMNS}) FROM STDIN BINARY")).await?;
        let types = [
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::BOOL,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
        ];
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
        for t in &tasks {
            writer.as_mut().write(&TaskRow::new(t)?.values()).await?;
        }
        writer.as_mut().finish().await?;
        let mut counts: std::collections::HashMap<(&str, i16, i64), i64> = std::collections::HashMap::new();
        let mut totals: std::collections::HashMap<(&str, i16), i64> = std::collections::HashMap::new();
        for t in &tasks {
            for view in views_of(&t.record) {
                let key = (t.record.instance_id.as_str(), view.code() as i16);
                *counts.entry((key.0, key.1, bucket_of(t.record.created_at))).or_default() += 1;
                *totals.entry(key).or_default() += 1;
            }
        }
        let st = tx
            .prepare_cached(
                "INSERT INTO task_totals (instance_id, view, n) VALUES ($1, $2, $3) \
                 ON CONFLICT (instance_id, view) DO UPDATE SET n = task_totals.n + excluded.n",
            )
            .await?;
        for ((inst, view), n) in totals {
            tx.execute(&st, &[&inst, &view, &n]).await?;
        }
        let st = tx
            .prepare_cached(
                "INSERT INTO task_buckets (instance_id, view, bucket, n) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (instance_id, view, bucket) DO UPDATE SET n = task_buckets.n + excluded.n",
            )
            .await?;
        for ((inst, view, bucket), n) in counts {
            tx.execute(&st, &[&inst, &view, &bucket, &n]).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Health for Postgres {
    async fn ping(&self) -> StoreResult<()> {
        let client = self.pool.get().await?;
        client.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    /// `txid_current()` assigns a transaction id, so its commit is a WAL record: it fails on a
    /// read-only server (a standby, `default_transaction_read_only`) and waits on a stalled WAL.
    async fn write_probe(&self) -> StoreResult<()> {
        let client = self.pool.get().await?;
        client.query_one("SELECT txid_current()", &[]).await?;
        Ok(())
    }
}
