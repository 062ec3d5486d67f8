//! The embedded SQLite engine (the default).
//!
//! One writer thread owns the only write connection and commits in groups: every write that
//! queues while a commit is running joins the next transaction, and each caller is answered
//! only after the group's commit is on disk (`synchronous=FULL` in WAL mode). A write that fails
//! changes nothing and the others still commit ([`commit_group`]). Reads run on a small pool of
//! connections in blocking threads.
//!
//! One file per capability (`tasks`, `instances`, `engine`, `credentials`, `audit`, `kernels`,
//! `bulk`); this file holds the connection, the writer thread with its group commit, the
//! checkpointer, migrations, the health probe and the instruction guard's [`WalPin`]. The
//! business rules are in `kafka_tasks_domain`: each capability reads rows, calls the rule and writes
//! the rows it decides.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::telemetry;

mod audit;
mod bulk;
mod clusters;
mod control;
mod credentials;
mod engine;
pub(crate) mod events;
mod instances;
mod kernels;
mod retention;
mod runs;
mod tasks;

use audit::*;
use instances::*;
use tasks::*;

const MIGRATIONS: &[&str] = &[
    include_str!("../../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../../migrations/sqlite/0002_auth.sql"),
    include_str!("../../../../migrations/sqlite/0003_task_buckets.sql"),
    include_str!("../../../../migrations/sqlite/0004_task_totals.sql"),
    include_str!("../../../../migrations/sqlite/0005_master_key_check.sql"),
    include_str!("../../../../migrations/sqlite/0006_kernel_builds.sql"),
    include_str!("../../../../migrations/sqlite/0007_retention.sql"),
    include_str!("../../../../migrations/sqlite/0008_task_events.sql"),
    include_str!("../../../../migrations/sqlite/0009_executors.sql"),
    include_str!("../../../../migrations/sqlite/0010_counter_shards.sql"),
    include_str!("../../../../migrations/sqlite/0011_cluster_bindings.sql"),
    include_str!("../../../../migrations/sqlite/0014_executor_state.sql"),
    include_str!("../../../../migrations/sqlite/0012_test_control.sql"),
    include_str!("../../../../migrations/sqlite/0015_test_snapshots.sql"),
    include_str!("../../../../migrations/sqlite/0016_event_rows.sql"),
    include_str!("../../../../migrations/sqlite/0017_no_instance_event_index.sql"),
    include_str!("../../../../migrations/sqlite/0018_finished_counts.sql"),
];
/// Written into the database header by the readiness probe ("kt" twice).
const APPLICATION_ID: i32 = 0x6b74_6b74;
/// The most writes one group commit takes.
const MAX_GROUP: usize = 512;

type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Job = Box<dyn GroupedWrite>;
/// A write that runs alone, outside any transaction, between two group commits (the reset's
/// swap of the whole database, [`control`]).
type AloneJob = Box<dyn FnOnce(&mut Connection) -> Reply + Send>;

/// What the writer thread runs.
enum Work {
    /// Grouped with others into one transaction.
    Grouped(Job),
    Alone(AloneJob),
}

pub struct Sqlite {
    path: PathBuf,
    writer: mpsc::Sender<Work>,
    readers: Mutex<Vec<Connection>>,
    /// Wakes this process's event streams after a commit that appended events.
    signal: crate::events::EventSignal,
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
                StoreError::unavailable(format!("SQLite {:?}", f.code))
            }
            rusqlite::Error::SqliteFailure(f, _) => StoreError::backend(format!("SQLite {:?}", f.code)),
            _ => StoreError::backend("SQLite"),
        };
        StoreError::counted(err.caused_by(e))
    }
}

/// Stored data that does not read back, said in words (no error under it).
fn corrupt(why: impl std::fmt::Display) -> StoreError {
    StoreError::counted(StoreError::corrupt(why.to_string()))
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
        return Err(StoreError::corrupt(format!(
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

fn writer_loop(mut conn: Connection, mut rx: mpsc::Receiver<Work>) {
    let mut next: Option<Work> = None;
    while let Some(work) = next.take().or_else(|| rx.blocking_recv()) {
        let first = match work {
            Work::Grouped(job) => job,
            Work::Alone(job) => {
                job(&mut conn)(Ok(()));
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(Work::Grouped(job)) => batch.push(job),
                // Runs after this group's commit.
                Ok(alone) => {
                    next = Some(alone);
                    break;
                }
                Err(_) => break,
            }
        }
        commit_group(&conn, batch);
    }
}

/// A write the writer thread runs inside a group's transaction.
trait GroupedWrite: Send {
    /// Runs the write and keeps its result; false when it failed. `own_savepoint`: inside a
    /// savepoint of its own, rolled back to when it fails. A write may run twice
    /// ([`commit_group`]): the first run's changes are then rolled back, and the second run's
    /// result is the answer.
    fn run(&mut self, conn: &Connection, own_savepoint: bool) -> bool;
    /// Answers the caller: the group's commit (or why the write never ran), then its result.
    fn answer(self: Box<Self>, committed: StoreResult<()>);
}

/// A caller's write and the channel its answer goes back on.
struct Pending<F, T> {
    f: F,
    result: Option<StoreResult<T>>,
    tx: oneshot::Sender<StoreResult<T>>,
}

impl<F, T> GroupedWrite for Pending<F, T>
where
    T: Send,
    F: Fn(&Connection) -> StoreResult<T> + Send,
{
    fn run(&mut self, conn: &Connection, own_savepoint: bool) -> bool {
        let result = if own_savepoint { in_own_savepoint(conn, &self.f) } else { (self.f)(conn) };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, committed: StoreResult<()>) {
        let Pending { result, tx, .. } = *self;
        let never_ran = || Err(StoreError::backend("the write never ran"));
        let _ = tx.send(committed.and_then(|()| result.unwrap_or_else(never_ran)));
    }
}

fn in_own_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let result = f(conn);
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    result
}

/// Runs a group of writes in one transaction, commits it, and answers each write once the commit
/// is on disk.
///
/// A write that fails must change nothing while the others still commit. Each write in a
/// savepoint of its own does that, but a savepoint makes SQLite copy every page the write then
/// changes into its sub-journal first (an in-memory copy of each page: ~15 pages and ~41k
/// instructions of a task's delete, a tenth of it). So the writes first run one after the other
/// with no savepoint. When one fails, the whole transaction is rolled back (its own partial
/// changes with it), that write is answered with its error, and the rest of the group runs in a
/// new transaction, each write in its own savepoint (those before the failed one for the second
/// time, their first run undone). A write thus runs at most twice, whatever the others do: a
/// client whose writes fail cannot make the writer redo a group more than once.
fn commit_group(conn: &Connection, batch: Vec<Job>) {
    let Some(mut batch) = begin(conn, batch) else { return };
    if let Some(failed) = batch.iter_mut().position(|job| !job.run(conn, false)) {
        // Fails only when SQLite has already rolled the transaction back itself.
        let _ = run_cached(conn, "ROLLBACK");
        batch.remove(failed).answer(Ok(()));
        if batch.is_empty() {
            return;
        }
        let Some(again) = begin(conn, batch) else { return };
        batch = again;
        for job in batch.iter_mut() {
            // A failure SQLite met by ending the transaction itself (a full disk, an I/O error):
            // the writes after it must not run outside one (a SAVEPOINT there begins a
            // transaction and its RELEASE commits it, behind the error they would be answered
            // with). The COMMIT below fails, and every write is answered with that.
            if conn.is_autocommit() {
                break;
            }
            job.run(conn, true);
        }
    }
    let commit_started = std::time::Instant::now();
    let committed = run_cached(conn, "COMMIT").map_err(StoreError::from);
    if committed.is_err() {
        let _ = run_cached(conn, "ROLLBACK");
    }
    metrics::histogram!(telemetry::SQLITE_COMMIT_DURATION).record(commit_started.elapsed().as_secs_f64());
    metrics::histogram!(telemetry::SQLITE_GROUP_SIZE).record(batch.len() as f64);
    for job in batch {
        job.answer(committed.clone());
    }
}

/// `BEGIN IMMEDIATE` for `batch`: the group back, or `None` with every write answered with why
/// it could not begin. Cached like the savepoint statements: `execute_batch` parsed BEGIN,
/// COMMIT (and ROLLBACK) anew for every group, ~3.4k instructions a group.
fn begin(conn: &Connection, batch: Vec<Job>) -> Option<Vec<Job>> {
    match run_cached(conn, "BEGIN IMMEDIATE") {
        Ok(()) => Some(batch),
        Err(e) => {
            let err = StoreError::from(e);
            for job in batch {
                job.answer(Err(err.clone()));
            }
            None
        }
    }
}

/// Runs a statement without parameters or rows through the connection's statement cache.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Copies committed WAL frames into the database file every quarter second (PASSIVE: it never
/// blocks the writer or readers), until the store is dropped.
fn checkpoint_loop(conn: Connection, alive: std::sync::Weak<()>) {
    while alive.upgrade().is_some() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            kafka_tasks_platform::limited!(warn, &format!("checkpoint {e}"), error = %e, "WAL checkpoint failed");
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// Puts the WAL of a database that another process serves into the same state before each
/// phase the instruction-count guard (`kafka-tasks-bench --instructions`) measures. That
/// process checkpoints on wall-clock time, so where its writes land in the WAL, whether it
/// restarts the WAL and how much a checkpoint copies would otherwise differ from run to run,
/// and so would the instructions its writes cost (by 1-4 %). Two connections of its own and no
/// threads; its one write per phase makes the server's connections drop their page caches once,
/// the same way in every run.
pub struct WalPin {
    writer: Connection,
    reader: Connection,
}

impl WalPin {
    pub fn open(path: &Path) -> StoreResult<Self> {
        let writer = Connection::open(path)?;
        writer.busy_timeout(std::time::Duration::from_secs(30))?;
        let reader = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        reader.busy_timeout(std::time::Duration::from_secs(30))?;
        Ok(WalPin { writer, reader })
    }

    /// `PRAGMA wal_checkpoint(mode)`: (frames in the WAL, frames copied into the database).
    /// Retried while another connection's checkpoint runs (SQLite answers that at once,
    /// without the busy handler); the busy timeout covers waiting for readers and the writer.
    fn checkpoint(&self, mode: &str) -> StoreResult<(i64, i64)> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (busy, log, copied): (i64, i64, i64) =
                self.writer.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            if busy == 0 {
                return Ok((log, copied));
            }
            if std::time::Instant::now() > deadline {
                return Err(StoreError::unavailable(format!("the WAL checkpoint ({mode}) stayed blocked for 60 s")));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Copies the whole WAL into the database and empties it (waiting for the server's
    /// transactions to end): the server's reads then use the database file alone, and its next
    /// write starts the WAL again at its first frame.
    pub fn empty(&self) -> StoreResult<()> {
        match self.checkpoint("TRUNCATE")? {
            (0, 0) => Ok(()),
            other => Err(StoreError::unavailable(format!("the WAL is not empty after a checkpoint: {other:?}"))),
        }
    }

    /// Empties the WAL, writes one frame of its own (page 1 with the same application id, as
    /// the readiness probe does), holds a read transaction on it and copies it into the
    /// database. Until [`release`](Self::release), the server's writes append after that
    /// frame, its checkpoints find nothing they may copy, and its WAL is not restarted.
    pub fn hold(&self) -> StoreResult<()> {
        self.empty()?;
        let id: i64 = self.writer.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        self.writer.pragma_update(None, "application_id", id)?;
        self.reader.execute_batch("BEGIN")?;
        // The read transaction takes its snapshot, and its mark in the WAL, at its first read.
        self.reader.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0))?;
        match self.checkpoint("PASSIVE")? {
            (1, 1) => Ok(()),
            other => Err(StoreError::unavailable(format!("the WAL did not hold one frame: {other:?}"))),
        }
    }

    /// Ends the read transaction of [`hold`](Self::hold): checkpoints go on.
    pub fn release(&self) -> StoreResult<()> {
        Ok(self.reader.execute_batch("ROLLBACK")?)
    }
}

impl Sqlite {
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            kafka_tasks_platform::private_files::create_private_dir(dir)?;
        }
        make_private(path)?;
        let mut conn = connect(path)?;
        migrate(&mut conn)?;
        // Checkpoints run on their own thread, so that a commit never waits for one.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (tx, rx) = mpsc::channel::<Work>(4096);
        std::thread::Builder::new().name("sqlite-writer".into()).spawn(move || writer_loop(conn, rx))?;
        let alive = Arc::new(());
        let checkpointer = connect(path)?;
        let token = Arc::downgrade(&alive);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, token))?;
        Ok(Sqlite {
            path: path.to_owned(),
            writer: tx,
            readers: Mutex::new(Vec::new()),
            signal: Default::default(),
            _alive: alive,
        })
    }

    /// Runs `f` inside the next group commit and returns once it is durable. `f` may run twice
    /// (the first run rolled back: [`commit_group`]), so it takes what it captured by reference.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(Pending { f, result: None, tx });
        self.writer.send(Work::Grouped(job)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on the writer connection alone, outside any transaction: `f` makes its own.
    async fn write_alone<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        let job: AloneJob = Box::new(move |conn: &mut Connection| {
            let result = f(conn);
            Box::new(move |_: StoreResult<()>| {
                let _ = tx.send(result);
            })
        });
        self.writer.send(Work::Alone(job)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Wakes the event streams: called once a write that appended events has committed (one
    /// writer commits at a time, so what a stream then reads is complete up to the newest id).
    fn events_committed(&self) {
        self.signal.notify();
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("dir");
        let conn = connect(&dir.path().join("g.db")).expect("open");
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL) STRICT").expect("table");
        (dir, conn)
    }

    type Answer = oneshot::Receiver<StoreResult<()>>;

    /// A write that adds 1 to row `k` and counts its runs, then fails when `fails(run)` says so
    /// (after its change).
    fn bump(k: &'static str, fails: fn(usize) -> bool) -> (Job, Answer, Arc<AtomicUsize>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let f = move |conn: &Connection| {
            let run = counted.fetch_add(1, Ordering::SeqCst) + 1;
            conn.execute("INSERT INTO t (k, n) VALUES (?1, 1) ON CONFLICT (k) DO UPDATE SET n = n + 1", [k])?;
            if fails(run) { Err(StoreError::backend("refused")) } else { Ok(()) }
        };
        let (tx, rx) = oneshot::channel();
        (Box::new(Pending { f, result: None, tx }), rx, runs)
    }

    fn rows(conn: &Connection) -> Rows {
        let mut st = conn.prepare("SELECT k, n FROM t ORDER BY k").expect("prepare");
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("query").map(|r| r.expect("row")).collect()
    }

    fn answered_ok(rx: &mut Answer) -> bool {
        rx.try_recv().expect("answered").is_ok()
    }

    /// A test write: its key, and on which run it fails.
    type Write = (&'static str, fn(usize) -> bool);
    type Rows = Vec<(String, i64)>;

    /// Runs `writes` as one group: each write's answer, its runs, and the rows committed.
    fn group(writes: &[Write]) -> (Vec<bool>, Vec<usize>, Rows) {
        let (_dir, conn) = db();
        group_on(&conn, writes)
    }

    /// [`group`] on `conn`.
    fn group_on(conn: &Connection, writes: &[Write]) -> (Vec<bool>, Vec<usize>, Rows) {
        let mut jobs = vec![];
        let mut answers = vec![];
        let mut runs = vec![];
        for &(k, fails) in writes {
            let (job, rx, n) = bump(k, fails);
            jobs.push(job);
            answers.push(rx);
            runs.push(n);
        }
        commit_group(conn, jobs);
        assert!(conn.is_autocommit(), "the group's transaction has ended");
        let ok = answers.iter_mut().map(answered_ok).collect();
        let runs = runs.iter().map(|n| n.load(Ordering::SeqCst)).collect();
        (ok, runs, rows(conn))
    }

    /// How many times the writer's `SAVEPOINT job` has run on `conn` (SQLite's own count for the
    /// cached statement; it stays cached: the tests prepare far fewer than the cache holds).
    fn savepoints_run(conn: &Connection) -> i32 {
        conn.prepare_cached("SAVEPOINT job").expect("prepare").get_status(rusqlite::StatementStatus::Run)
    }

    const NEVER: fn(usize) -> bool = |_| false;
    const ALWAYS: fn(usize) -> bool = |_| true;
    const SECOND_RUN: fn(usize) -> bool = |run| run == 2;

    fn committed(rows: &[(&str, i64)]) -> Rows {
        rows.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    #[test]
    fn a_failed_write_changes_nothing_and_the_writes_before_it_run_again_once() {
        let (ok, runs, rows) = group(&[("a", NEVER), ("b", ALWAYS), ("c", NEVER)]);
        assert_eq!(ok, [true, false, true]);
        assert_eq!(runs, [2, 1, 1], "a ran again after b's failure rolled the group back; c ran once");
        assert_eq!(rows, committed(&[("a", 1), ("c", 1)]), "a's first run was undone, b's change too");
    }

    #[test]
    fn a_write_that_fails_on_its_second_run_is_undone_alone() {
        let (ok, runs, rows) = group(&[("a", SECOND_RUN), ("b", NEVER), ("c", ALWAYS)]);
        assert_eq!(ok, [false, true, false]);
        assert_eq!(runs, [2, 2, 1]);
        assert_eq!(rows, committed(&[("b", 1)]), "a's second run was rolled back to its own savepoint");
    }

    #[test]
    fn a_write_runs_at_most_twice_whatever_the_others_do() {
        // Every other write fails, each on its first run: one redo of the group, not one a failure.
        let writes: Vec<Write> = ["a", "b", "c", "d", "e", "f", "g"]
            .into_iter()
            .enumerate()
            .map(|(n, k)| (k, if n % 2 == 1 { ALWAYS } else { NEVER }))
            .collect();
        let (ok, runs, rows) = group(&writes);
        assert_eq!(ok, [true, false, true, false, true, false, true]);
        assert_eq!(runs, [2, 1, 1, 1, 1, 1, 1], "only the write before the first failure ran again");
        assert_eq!(rows, committed(&[("a", 1), ("c", 1), ("e", 1), ("g", 1)]));
    }

    #[test]
    fn savepoints_run_only_after_a_failure_and_once_a_write() {
        let (_dir, conn) = db();
        let before = savepoints_run(&conn);
        let (ok, runs, _) = group_on(&conn, &[("a", NEVER), ("b", NEVER), ("c", NEVER)]);
        assert_eq!((ok, runs), (vec![true; 3], vec![1; 3]));
        assert_eq!(savepoints_run(&conn), before, "a group with no failure runs no savepoint");
        let (ok, _, rows) = group_on(&conn, &[("a", NEVER), ("b", ALWAYS), ("c", NEVER), ("d", NEVER)]);
        assert_eq!(ok, [true, false, true, true]);
        assert_eq!(savepoints_run(&conn), before + 3, "one savepoint for each write that ran again");
        assert_eq!(rows, committed(&[("a", 2), ("b", 1), ("c", 2), ("d", 1)]));
    }

    #[test]
    fn writes_never_run_outside_the_transaction_when_sqlite_ended_it() {
        let (_dir, conn) = db();
        let (first, mut first_answer, _) = bump("a", ALWAYS);
        // Fails the way SQLite fails a statement on a full disk: the transaction is gone.
        let (tx, mut ended_answer) = oneshot::channel();
        let ends = |conn: &Connection| -> StoreResult<()> {
            conn.execute_batch("ROLLBACK")?;
            Err(StoreError::unavailable("SQLite DiskFull"))
        };
        let ended: Job = Box::new(Pending { f: ends, result: None, tx });
        let (last, mut last_answer, last_runs) = bump("c", NEVER);
        commit_group(&conn, vec![first, ended, last]);
        assert!(!answered_ok(&mut first_answer) && !answered_ok(&mut ended_answer));
        assert!(!answered_ok(&mut last_answer), "its transaction is gone: not committed, and said so");
        assert_eq!(last_runs.load(Ordering::SeqCst), 0, "never run outside the transaction");
        assert!(rows(&conn).is_empty());
    }

    #[test]
    fn a_group_that_fails_entirely_commits_nothing() {
        let (ok, runs, rows) = group(&[("a", ALWAYS), ("b", ALWAYS), ("c", NEVER)]);
        assert_eq!(ok, [false, false, true]);
        assert_eq!(runs, [1, 1, 1], "b first ran in its own savepoint, after a's failure");
        assert_eq!(rows, committed(&[("c", 1)]));
    }

    /// The engine's wall was page I/O: an index whose key begins with `instance_id` puts each
    /// task's entry on a leaf of its own (a burst of queued tasks is spread over many instances),
    /// so an index like that which a task's end writes costs the single writer a page (often
    /// read first) per ended task (docs/performance.md, "The wall the counts do not see"). Two
    /// such indexes halved the drain before anyone noticed. This names the rule: no index on
    /// `task_events` (appended at every end) begins with the instance, and none on `tasks` that
    /// does has a column a task's end changes in its key or its `WHERE`. A new one needs a
    /// reason written down here and a measurement (the guard's writer bytes).
    #[test]
    fn no_index_a_tasks_end_writes_begins_with_its_instance() -> Result<(), Box<dyn std::error::Error>> {
        // What `tasks::save_task_progress` (the end of a task) and a claim set.
        const END_COLUMNS: [&str; 5] = ["status", "updated_at", "steps", "due_at", "lease_owner"];
        let dir = tempfile::tempdir()?;
        let mut conn = connect(&dir.path().join("s.db"))?;
        migrate(&mut conn)?;
        let indexes: Vec<(String, String, String)> = conn
            .prepare(
                "SELECT name, tbl_name, coalesce(sql, '') FROM sqlite_master \
                 WHERE type = 'index' AND tbl_name IN ('tasks', 'task_events') ORDER BY name",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        assert!(indexes.len() >= 4, "the schema's indexes were read: {indexes:?}");
        let mut offending = Vec::new();
        let mut keyed_by_instance = Vec::new();
        for (name, table, sql) in indexes {
            let columns: Vec<String> = conn
                .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?
                .query_map([&name], |r| r.get::<_, Option<String>>(0))?
                .filter_map(|c| c.transpose())
                .collect::<Result<_, _>>()?;
            if columns.first().map(String::as_str) != Some("instance_id") {
                continue;
            }
            keyed_by_instance.push(name.clone());
            let sql = sql.to_lowercase();
            let filter = sql.split_once(" where ").map_or("", |(_, w)| w);
            let ends = |c: &str| END_COLUMNS.contains(&c) || END_COLUMNS.iter().any(|e| c.contains(e));
            if table == "task_events" || columns.iter().any(|c| ends(c)) || ends(filter) {
                offending.push(format!("{name}: {sql}"));
            }
        }
        assert_eq!(offending, Vec::<String>::new(), "indexes keyed by instance that a task's end writes");
        // The ones that stay, written at a task's creation only (the task list's own order).
        assert_eq!(keyed_by_instance, ["tasks_background", "tasks_scheduled"]);
        Ok(())
    }
}
