//! The embedded SQLite engine (the default).
//!
//! One writer thread owns the only write connection and commits in groups: every write that
//! queues while a commit is running joins the next transaction, each in its own savepoint, and
//! each caller is answered only after the group's commit is on disk (`synchronous=FULL` in WAL
//! mode). Reads run on a small pool of connections in blocking threads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::{mpsc, oneshot};

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
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_auth.sql"),
    include_str!("../../migrations/sqlite/0003_task_buckets.sql"),
    include_str!("../../migrations/sqlite/0004_task_totals.sql"),
    include_str!("../../migrations/sqlite/0005_master_key_check.sql"),
    include_str!("../../migrations/sqlite/0006_kernel_builds.sql"),
];
/// Written into the database header by the readiness probe ("kt" twice).
const APPLICATION_ID: i32 = 0x6b74_6b74;
/// The most writes one group commit takes.
const MAX_GROUP: usize = 512;

type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Job = Box<dyn FnOnce(Result<&Connection, StoreError>) -> Reply + Send>;

pub struct Sqlite {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    /// The checkpointer runs while this lives.
    _alive: Arc<()>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        let err = match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    DiskFull | SystemIoFailure | DatabaseBusy | DatabaseLocked | CannotOpen | ReadOnly | OutOfMemory
                ) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Backend(e.to_string()),
        };
        telemetry::store_error(err)
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    telemetry::store_error(StoreError::Corrupt(e.to_string()))
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    // Plans that do not depend on bound values: otherwise SQLite re-prepares statements with an
    // ORDER BY, a LIMIT or a join on every new binding, which cost more than the queries.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(conn)
}

/// Creates the database file readable by its owner only (SQLite gives its `-wal` and `-shm`
/// files the database file's mode), and makes existing files of an older database private.
/// The database holds the audit log and the sealed secrets.
fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path)?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    // Another owner's file: it still opens, as before; say so.
                    tracing::warn!(file = %std::path::Path::new(&name).display(), error = %e, "cannot make the database file private");
                }
                _ => {}
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if applied as usize > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database is at schema version {applied}, newer than this build knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (n + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let err = StoreError::from(e);
            for job in batch {
                job(Err(err.clone()))(Ok(()));
            }
            continue;
        }
        let replies: Vec<Reply> = batch.into_iter().map(|job| job(Ok(&conn))).collect();
        let commit_started = std::time::Instant::now();
        let committed = conn.execute_batch("COMMIT").map_err(StoreError::from);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        metrics::histogram!(telemetry::SQLITE_COMMIT_DURATION).record(commit_started.elapsed().as_secs_f64());
        metrics::histogram!(telemetry::SQLITE_GROUP_SIZE).record(replies.len() as f64);
        for reply in replies {
            reply(committed.clone());
        }
    }
}

/// Copies committed WAL frames into the database file every quarter second (PASSIVE: it never
/// blocks the writer or readers), until the store is dropped.
fn checkpoint_loop(conn: Connection, alive: std::sync::Weak<()>) {
    while alive.upgrade().is_some() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            crate::limited!(warn, &format!("checkpoint {e}"), error = %e, "WAL checkpoint failed");
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

impl Sqlite {
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::auth::keys::create_private_dir(dir)?;
        }
        make_private(path)?;
        let mut conn = connect(path)?;
        migrate(&mut conn)?;
        // Checkpoints run on their own thread, so that a commit never waits for one.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (tx, rx) = mpsc::channel::<Job>(4096);
        std::thread::Builder::new().name("sqlite-writer".into()).spawn(move || writer_loop(conn, rx))?;
        let alive = Arc::new(());
        let checkpointer = connect(path)?;
        let token = Arc::downgrade(&alive);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, token))?;
        Ok(Sqlite { path: path.to_owned(), writer: tx, readers: Mutex::new(Vec::new()), _alive: alive })
    }

    /// Runs `f` in its own savepoint inside the next group commit and returns once it is durable.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        let job: Job = Box::new(move |conn: Result<&Connection, StoreError>| {
            let result = conn.and_then(|conn| {
                conn.prepare_cached("SAVEPOINT job")?.execute([])?;
                let result = f(conn);
                if result.is_err() {
                    conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
                }
                conn.prepare_cached("RELEASE job")?.execute([])?;
                result
            });
            Box::new(move |committed: StoreResult<()>| {
                let _ = tx.send(committed.and(result));
            })
        });
        self.writer.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a read on a pooled connection, on the calling thread. Reads are short indexed lookups;
    /// handing each to a blocking thread cost more in wake-ups than the query itself, and running
    /// them inline bounds the open connections by the runtime's worker threads.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> StoreResult<T>,
    {
        let pooled = self.readers.lock().map_err(|_| StoreError::Closed)?.pop();
        let conn = match pooled {
            Some(c) => c,
            None => connect(&self.path)?,
        };
        let result = f(&conn);
        if let Ok(mut pool) = self.readers.lock() {
            pool.push(conn);
        }
        result
    }
}

const TASK_COLUMNS: &str = "id, project_id, instance_id, name, user_id, user_name, params, status, \
     created_at, updated_at, schedule_at, steps";

fn get_task_sql(filter: &str) -> String {
    let cols: Vec<String> = TASK_COLUMNS.split(", ").map(|c| format!("t.{}", c.trim())).collect();
    format!(
        "SELECT {} FROM instances i LEFT JOIN tasks t ON t.id = ?1 AND t.instance_id = i.id AND t.{filter} \
         WHERE i.id = ?2 AND i.project_id = ?3",
        cols.join(", ")
    )
}

static GET_BACKGROUND_TASK: LazyLock<String> = LazyLock::new(|| get_task_sql(view_filter(View::Background)));
static GET_SCHEDULED_TASK: LazyLock<String> = LazyLock::new(|| get_task_sql(view_filter(View::Scheduled)));

const LIST_HEAD_ALL: &str = "SELECT EXISTS (SELECT 1 FROM instances WHERE id = ?1 AND project_id = ?5), \
     coalesce((SELECT n FROM task_totals WHERE instance_id = ?1 AND view = ?2 AND ?3 <= ?4), 0)";

const LIST_HEAD_RANGE: &str = "SELECT EXISTS (SELECT 1 FROM instances WHERE id = ?1 AND project_id = ?5), \
     (SELECT coalesce(sum(n), 0) FROM task_buckets WHERE instance_id = ?1 AND view = ?2 AND bucket BETWEEN ?3 AND ?4)";

const BUCKETS_NEWEST_FIRST: &str = "SELECT bucket, n FROM task_buckets \
     WHERE instance_id = ?1 AND view = ?2 AND bucket BETWEEN ?3 AND ?4 ORDER BY bucket DESC";

/// A page of a view, newest first, below an upper bound on `created_at`.
fn page_sql(view: View) -> &'static str {
    static BACKGROUND: LazyLock<String> = LazyLock::new(|| page_sql_text(View::Background));
    static SCHEDULED: LazyLock<String> = LazyLock::new(|| page_sql_text(View::Scheduled));
    match view {
        View::Background => &BACKGROUND,
        View::Scheduled => &SCHEDULED,
    }
}

fn page_sql_text(view: View) -> String {
    format!(
        "SELECT {SUMMARY_COLUMNS} FROM tasks WHERE instance_id = ?1 AND {} AND created_at BETWEEN ?2 AND ?3 \
         ORDER BY created_at DESC, id DESC LIMIT ?4 OFFSET ?5",
        view_filter(view)
    )
}

/// The columns of a list row: everything but the steps, which lists do not show.
const SUMMARY_COLUMNS: &str = "id, project_id, instance_id, name, user_id, user_name, params, status, \
     created_at, updated_at, schedule_at, NULL";

fn task_from_row(r: &Row<'_>) -> rusqlite::Result<Result<TaskRecord, StoreError>> {
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
            rec.steps = serde_json::from_str::<Vec<Step>>(&steps).map_err(corrupt)?;
        }
        Ok(rec)
    })())
}

fn instance_exists(conn: &Connection, p: &ProjectId, i: &InstanceId) -> StoreResult<bool> {
    let mut st = conn.prepare_cached("SELECT 1 FROM instances WHERE id = ?1 AND project_id = ?2")?;
    Ok(st.exists(params![i.as_str(), p.as_str()])?)
}

fn view_filter(view: View) -> &'static str {
    match view {
        View::Background => "in_background = 1",
        View::Scheduled => "schedule_at IS NOT NULL",
    }
}

fn load_task(conn: &Connection, i: &InstanceId, t: &TaskId, view: View) -> StoreResult<Option<TaskRecord>> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1 AND instance_id = ?2 AND {}", view_filter(view));
    let mut st = conn.prepare_cached(&sql)?;
    match st.query_row(params![t.as_str(), i.as_str()], task_from_row).optional()? {
        Some(r) => r.map(Some),
        None => Ok(None),
    }
}

fn load_instance(conn: &Connection, i: &InstanceId) -> StoreResult<Option<Instance>> {
    let mut st = conn.prepare_cached("SELECT doc, busy_task_id FROM instances WHERE id = ?1")?;
    let row = st
        .query_row(params![i.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))
        .optional()?;
    row.map(|(doc, busy)| {
        let mut inst: Instance = serde_json::from_str(&doc).map_err(corrupt)?;
        inst.busy_task = busy.map(TaskId::from_trusted);
        Ok(inst)
    })
    .transpose()
}

fn save_instance(conn: &Connection, inst: &Instance) -> StoreResult<()> {
    let doc = serde_json::to_string(inst).map_err(corrupt)?;
    let mut st = conn.prepare_cached("UPDATE instances SET doc = ?2, busy_task_id = ?3 WHERE id = ?1")?;
    st.execute(params![inst.id.as_str(), doc, inst.busy_task.as_ref().map(TaskId::as_str)])?;
    Ok(())
}

/// Moves a task in or out of a view's day bucket.
fn bump(conn: &Connection, instance: &InstanceId, view: View, created_at: i64, delta: i64) -> StoreResult<()> {
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

fn count_in(conn: &Connection, r: &TaskRecord, delta: i64) -> StoreResult<()> {
    for view in views_of(r) {
        bump(conn, &r.instance_id, view, r.created_at, delta)?;
    }
    Ok(())
}

fn insert_task(conn: &Connection, t: &NewTask) -> StoreResult<()> {
    let r = &t.record;
    let (in_background, due_at) = placement(r);
    let steps = serde_json::to_string(&r.steps).map_err(corrupt)?;
    let op = serde_json::to_string(&t.operation).map_err(corrupt)?;
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
    count_in(conn, r, 1)
}

/// Writes back a task a worker changed: its status, steps and lease.
fn save_task_progress(conn: &Connection, t: &TaskRecord, due_at: Option<i64>, owner: Option<&str>) -> StoreResult<()> {
    let steps = serde_json::to_string(&t.steps).map_err(corrupt)?;
    let mut st = conn.prepare_cached(
        "UPDATE tasks SET status = ?2, updated_at = ?3, steps = ?4, due_at = ?5, lease_owner = ?6, \
         in_background = 1 WHERE id = ?1",
    )?;
    st.execute(params![t.id.as_str(), t.status.as_str(), t.updated_at, steps, due_at, owner])?;
    Ok(())
}

fn load_operation(conn: &Connection, t: &TaskId) -> StoreResult<Operation> {
    let mut st = conn.prepare_cached("SELECT operation FROM tasks WHERE id = ?1")?;
    let op: String = st.query_row(params![t.as_str()], |r| r.get(0))?;
    serde_json::from_str(&op).map_err(corrupt)
}

fn remove_instance(conn: &Connection, i: &InstanceId) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM tasks WHERE instance_id = ?1")?.execute(params![i.as_str()])?;
    conn.prepare_cached("DELETE FROM task_buckets WHERE instance_id = ?1")?.execute(params![i.as_str()])?;
    conn.prepare_cached("DELETE FROM task_totals WHERE instance_id = ?1")?.execute(params![i.as_str()])?;
    conn.prepare_cached("DELETE FROM instances WHERE id = ?1")?.execute(params![i.as_str()])?;
    Ok(())
}

/// Writes what a worker's move of a task leads to, as the domain maps it ([`transition::Write`]).
fn apply(conn: &Connection, task: &TaskRecord, inst: &Instance, w: Write, owner: &str) -> StoreResult<()> {
    match w.instance {
        InstanceWrite::Keep => {}
        InstanceWrite::Save => save_instance(conn, inst)?,
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
        self.write(move |conn| {
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
            if let Some(mut event) = audit {
                event.detail = Some(deletion::deleted_detail(&task));
                insert_audit(conn, &event)?;
            }
            Ok(DeleteOutcome::Deleted(Box::new(task)))
        })
        .await
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
        let (p, i, t) = (p.clone(), i.clone(), t.clone());
        self.write(move |conn| {
            if !instance_exists(conn, &p, &i)? {
                return Ok(Found::NoInstance);
            }
            let Some(task) = load_task(conn, &i, &t, View::Scheduled)? else {
                return Ok(Found::NoTask);
            };
            let Some(r) = rescheduling::rescheduled(&task, change, now) else {
                return Ok(Found::Yes(false));
            };
            conn.prepare_cached(
                "UPDATE tasks SET status = ?2, schedule_at = ?3, due_at = ?4, updated_at = ?5 WHERE id = ?1",
            )?
            .execute(params![t.as_str(), r.status.as_str(), r.schedule_at, r.due_at, now])?;
            if let Some(event) = &audit {
                insert_audit(conn, event)?;
            }
            Ok(Found::Yes(true))
        })
        .await
    }
}

#[async_trait]
impl InstanceStore for Sqlite {
    async fn create_instance(&self, inst: Instance, task: NewTask, audit: Option<AuditEvent>) -> StoreResult<()> {
        self.write(move |conn| {
            let doc = serde_json::to_string(&inst).map_err(corrupt)?;
            conn.prepare_cached(
                "INSERT INTO instances (id, project_id, created_at, busy_task_id, doc) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                inst.id.as_str(),
                inst.project_id.as_str(),
                inst.created_at,
                task.record.id.as_str(),
                doc
            ])?;
            insert_task(conn, &task)?;
            if let Some(event) = &audit {
                insert_audit(conn, event)?;
            }
            Ok(())
        })
        .await
    }

    async fn get_instance(&self, p: &ProjectId, i: &InstanceId) -> StoreResult<Option<Instance>> {
        self.read(|conn| Ok(load_instance(conn, i)?.filter(|inst| inst.project_id == *p))).await
    }

    async fn list_instances(&self, p: &ProjectId) -> StoreResult<Vec<Instance>> {
        self.read(|conn| {
            let mut st = conn.prepare_cached(
                "SELECT doc, busy_task_id FROM instances WHERE project_id = ?1 ORDER BY created_at DESC, id DESC",
            )?;
            let rows =
                st.query_map(params![p.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (doc, busy) = row?;
                let mut inst: Instance = serde_json::from_str(&doc).map_err(corrupt)?;
                inst.busy_task = busy.map(TaskId::from_trusted);
                out.push(inst);
            }
            Ok(out)
        })
        .await
    }

    async fn submit(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        build: TaskBuilder,
        audit: Option<AuditEvent>,
    ) -> StoreResult<Result<NewTask, SubmitError>> {
        let (p, i) = (p.clone(), i.clone());
        self.write(move |conn| {
            let (task, changed) = match admission::submission(load_instance(conn, &i)?, &p, build) {
                Ok(admitted) => admitted,
                Err(e) => return Ok(Err(e)),
            };
            if let Some(inst) = &changed {
                save_instance(conn, inst)?;
            }
            insert_task(conn, &task)?;
            if let Some(event) = &audit {
                insert_audit(conn, event)?;
            }
            Ok(Ok(task))
        })
        .await
    }

    async fn modify_instance(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        change: InstanceChange,
        audit: Option<AuditEvent>,
    ) -> StoreResult<Result<(), SubmitError>> {
        let (p, i) = (p.clone(), i.clone());
        self.write(move |conn| {
            let inst = match admission::modification(load_instance(conn, &i)?, &p, change) {
                Ok(inst) => inst,
                Err(e) => return Ok(Err(e)),
            };
            save_instance(conn, &inst)?;
            if let Some(event) = &audit {
                insert_audit(conn, event)?;
            }
            Ok(Ok(()))
        })
        .await
    }
}

#[async_trait]
impl KernelStore for Sqlite {
    async fn added_kernel_builds(&self, engine_version: &str) -> StoreResult<Vec<String>> {
        self.read(|conn| {
            let mut st =
                conn.prepare_cached("SELECT build FROM kernel_builds WHERE engine_version = ?1 ORDER BY seq")?;
            let rows = st.query_map(params![engine_version], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn add_kernel_build(&self, engine_version: &str, build: &str, now: i64) -> StoreResult<bool> {
        let (engine_version, build) = (engine_version.to_owned(), build.to_owned());
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "INSERT INTO kernel_builds (engine_version, build, added_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (engine_version, build) DO NOTHING",
                )?
                .execute(params![engine_version, build, now])?;
            Ok(n == 1)
        })
        .await
    }
}

/// The engine's gauges, read through the partial index of unfinished tasks (`tasks_due`).
const STATS_SQL: &str = "SELECT coalesce(sum(status = 'CREATED'), 0), coalesce(sum(status = 'EXECUTING'), 0), \
     coalesce(sum(due_at <= ?1), 0), min(CASE WHEN due_at <= ?1 AND due_at > 0 THEN due_at END), \
     coalesce(sum(status = 'EXECUTING' AND due_at <= ?1), 0) FROM tasks WHERE due_at IS NOT NULL";

#[async_trait]
impl EngineStore for Sqlite {
    async fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        max: usize,
        ctx: StepContext,
    ) -> StoreResult<Vec<Claimed>> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {TASK_COLUMNS}, operation FROM tasks WHERE due_at <= ?1 ORDER BY due_at LIMIT ?2"
            ))?;
            let rows = st.query_map(params![now, max as i64], |r| Ok((task_from_row(r)?, r.get::<_, String>(12)?)))?;
            let mut candidates = Vec::new();
            for row in rows {
                let (task, op) = row?;
                candidates.push((task?, serde_json::from_str::<Operation>(&op).map_err(corrupt)?));
            }
            let mut claimed = Vec::new();
            for (mut task, operation) in candidates {
                let Some(mut inst) = load_instance(conn, &task.instance_id)? else {
                    continue;
                };
                let started = task.status == TaskStatus::Created;
                let was_background = placement(&task).0;
                let taken = transition::take(&mut task, &mut inst, &operation, now, ctx);
                if !was_background && placement(&task).0 {
                    // A scheduled task that fires becomes a background task.
                    bump(conn, &task.instance_id, View::Background, task.created_at, 1)?;
                }
                apply(conn, &task, &inst, taken.write(now, lease_ms), &owner)?;
                let Some(p) = taken.progress(task.steps.len()) else {
                    continue;
                };
                claimed.push(Claimed { task, operation, step: p.step, started, ended: p.ended, reason: p.reason });
            }
            Ok(claimed)
        })
        .await
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
        let (owner, task_id) = (owner.to_owned(), task_id.clone());
        self.write(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks \
                 WHERE id = ?1 AND lease_owner = ?2 AND status = 'EXECUTING' AND due_at >= ?3"
            ))?;
            // A lease that has run out is no longer ours, even if nobody has taken the task yet.
            let Some(task) = st.query_row(params![task_id.as_str(), owner, now], task_from_row).optional()? else {
                return Ok(StepOutcome::Lost);
            };
            let mut task = task?;
            let operation = load_operation(conn, &task_id)?;
            let Some(mut inst) = load_instance(conn, &task.instance_id)? else {
                return Ok(StepOutcome::Lost);
            };
            let advance = transition::finish_steps(&mut task, &mut inst, &operation, step, now, ctx);
            apply(conn, &task, &inst, advance.write(now, lease_ms), &owner)?;
            Ok(advance.into())
        })
        .await
    }

    async fn renew_leases(&self, owner: &str, until: i64) -> StoreResult<()> {
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

    async fn engine_stats(&self, now: i64) -> StoreResult<EngineStats> {
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

const CREDENTIAL_COLUMNS: &str = "access_key, secret_sealed, project_id, user_id, user_name, role, created_at, \
     revoked_at, failed_attempts, locked_until";

fn credential_from_row(r: &Row<'_>) -> rusqlite::Result<Result<CredentialRecord, StoreError>> {
    let role: String = r.get(5)?;
    let project: String = r.get(2)?;
    let rec = CredentialRecord {
        access_key: r.get(0)?,
        secret_sealed: r.get(1)?,
        project_id: ProjectId::from_trusted(project),
        user_id: r.get(3)?,
        user_name: r.get(4)?,
        role: crate::domain::Role::Readonly,
        created_at: r.get(6)?,
        revoked_at: r.get(7)?,
        failed_attempts: r.get::<_, i64>(8)?.clamp(0, u32::MAX as i64) as u32,
        locked_until: r.get(9)?,
    };
    Ok(role.parse().map(|role| CredentialRecord { role, ..rec }).map_err(corrupt))
}

fn insert_credential_row(conn: &Connection, c: &CredentialRecord) -> StoreResult<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO credentials ({CREDENTIAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?
    .execute(params![
        c.access_key,
        c.secret_sealed,
        c.project_id.as_str(),
        c.user_id,
        c.user_name,
        c.role.as_str(),
        c.created_at,
        c.revoked_at,
        c.failed_attempts as i64,
        c.locked_until
    ])?;
    Ok(())
}

#[async_trait]
impl CredentialStore for Sqlite {
    async fn master_key_check(&self) -> StoreResult<Option<String>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT check_value FROM master_key_check WHERE id = 1")?
                .query_row([], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn record_master_key_check(&self, value: &str, now: i64) -> StoreResult<String> {
        let value = value.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO master_key_check (id, check_value, created_at) VALUES (1, ?1, ?2) ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![value, now])?;
            Ok(conn.prepare_cached("SELECT check_value FROM master_key_check WHERE id = 1")?.query_row([], |r| r.get(0))?)
        })
        .await
    }

    async fn has_credentials(&self) -> StoreResult<bool> {
        self.read(|conn| Ok(conn.prepare_cached("SELECT 1 FROM credentials LIMIT 1")?.exists([])?)).await
    }

    async fn insert_credential(&self, c: CredentialRecord) -> StoreResult<()> {
        self.write(move |conn| insert_credential_row(conn, &c)).await
    }

    async fn insert_first_credential(&self, c: CredentialRecord) -> StoreResult<bool> {
        self.write(move |conn| {
            if conn.prepare_cached("SELECT 1 FROM credentials LIMIT 1")?.exists([])? {
                return Ok(false);
            }
            insert_credential_row(conn, &c)?;
            Ok(true)
        })
        .await
    }

    async fn get_credential(&self, access_key: &str) -> StoreResult<Option<CredentialRecord>> {
        self.read(|conn| {
            let mut st =
                conn.prepare_cached(&format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE access_key = ?1"))?;
            st.query_row(params![access_key], credential_from_row).optional()?.transpose()
        })
        .await
    }

    async fn list_credentials(&self) -> StoreResult<Vec<CredentialRecord>> {
        self.read(|conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY created_at, access_key"
            ))?;
            let rows = st.query_map([], credential_from_row)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r??);
            }
            Ok(out)
        })
        .await
    }

    async fn revoke_credential(&self, access_key: &str, now: i64) -> StoreResult<bool> {
        let ak = access_key.to_owned();
        self.write(move |conn| {
            let n = conn
                .prepare_cached("UPDATE credentials SET revoked_at = ?2 WHERE access_key = ?1 AND revoked_at IS NULL")?
                .execute(params![ak, now])?;
            Ok(n == 1)
        })
        .await
    }
}

fn insert_audit(conn: &Connection, e: &AuditEvent) -> StoreResult<()> {
    let e = &e.storable();
    let detail = e.detail.as_ref().map(|d| d.to_string());
    conn.prepare_cached(
        "INSERT INTO audit_events (at, request_id, project_id, user_id, user_name, access_key, action, target, status, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![e.at, e.request_id, e.project_id, e.user_id, e.user_name, e.access_key, e.action, e.target, e.status, detail])?;
    Ok(())
}

#[async_trait]
impl AuditStore for Sqlite {
    async fn append_audit(&self, e: AuditEvent) -> StoreResult<()> {
        self.write(move |conn| insert_audit(conn, &e)).await
    }

    async fn list_audit(
        &self,
        project: Option<&ProjectId>,
        since: Option<i64>,
        limit: u64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let project = project.map(|p| p.as_str().to_owned());
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT at, request_id, project_id, user_id, user_name, access_key, action, target, status, detail \
                 FROM audit_events WHERE (?1 IS NULL OR project_id = ?1) AND at >= ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows =
                st.query_map(params![project, since.unwrap_or(i64::MIN), limit.min(i64::MAX as u64) as i64], |r| {
                    let detail: Option<String> = r.get(9)?;
                    Ok(AuditEvent {
                        at: r.get(0)?,
                        request_id: r.get(1)?,
                        project_id: r.get(2)?,
                        user_id: r.get(3)?,
                        user_name: r.get(4)?,
                        access_key: r.get(5)?,
                        action: r.get(6)?,
                        target: r.get(7)?,
                        status: r.get::<_, i64>(8)?.clamp(0, 999) as u16,
                        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                    })
                })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

#[async_trait]
impl BulkStore for Sqlite {
    async fn bulk_load(&self, instances: Vec<Instance>, tasks: Vec<NewTask>) -> StoreResult<()> {
        self.write(move |conn| {
            let mut st = conn.prepare_cached(
                "INSERT INTO instances (id, project_id, created_at, busy_task_id, doc) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for inst in &instances {
                let doc = serde_json::to_string(inst).map_err(corrupt)?;
                st.execute(params![
                    inst.id.as_str(),
                    inst.project_id.as_str(),
                    inst.created_at,
                    inst.busy_task.as_ref().map(TaskId::as_str),
                    doc
                ])?;
            }
            for t in &tasks {
                insert_task(conn, t)?;
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl Health for Sqlite {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).map(|_| ())?)).await
    }

    /// Rewrites the header's `application_id` (a field this application owns, the same value
    /// each time): it dirties page 1, so the group commit must append to the WAL and sync.
    async fn write_probe(&self) -> StoreResult<()> {
        self.write(|conn| Ok(conn.pragma_update(None, "application_id", APPLICATION_ID)?)).await
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
