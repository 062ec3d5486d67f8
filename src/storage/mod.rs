//! Storage: the capability traits the HTTP layer and the engine use, and one implementation
//! per database engine. SQL lives here and nowhere else.

pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::instance::Instance;
use crate::domain::operation::{Operation, StepContext};
use crate::domain::{InstanceId, Invalid, ProjectId, Role, TaskId, TaskRecord, TaskStatus};

/// A storage failure, whatever the engine. Never shown to API clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Backend(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("the database is shutting down")]
    Closed,
    /// The database cannot serve now (connection refused or lost, disk full, I/O error, locked
    /// past the busy timeout, administrator shutdown); worth retrying later. API: 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which records a task endpoint sees: background tasks (everything that is not a scheduled task
/// still waiting, including scheduled tasks that have fired) or scheduled tasks (in any state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Background,
    Scheduled,
}

/// A page of tasks of one instance, newest first.
#[derive(Debug, Clone)]
pub struct TaskQuery {
    pub project_id: ProjectId,
    pub instance_id: InstanceId,
    pub view: View,
    /// Inclusive bounds on `created_at`, epoch ms.
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
    /// Rows to skip.
    pub offset: u64,
    pub limit: u64,
}

/// A lookup that distinguishes a missing instance from a missing task.
#[derive(Debug, Clone, PartialEq)]
pub enum Found<T> {
    NoInstance,
    NoTask,
    Yes(T),
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeleteOutcome {
    NoInstance,
    NoTask,
    /// The task has not finished; nothing changed.
    Running,
    /// The record as it was before it was removed.
    Deleted(Box<TaskRecord>),
}

/// UpdateScheduledTask's inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleChange {
    pub execute_at: Option<i64>,
    pub status: StatusChange,
}

/// What UpdateScheduledTask's `status` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    /// No `status`: only the time moves.
    Keep,
    /// `status=CANCELLED`.
    Cancel,
    /// `status=null`, DMS's "to be executed": a waiting task stays waiting; a cancelled one
    /// whose time (given now, or kept) is still ahead waits again.
    Wait,
}

/// A task about to be stored, and the domain builder a submission hands the store.
pub use crate::domain::submission::{NewTask, TaskBuilder};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    #[error("no such instance")]
    NoInstance,
    #[error("instance busy or not in a state for the operation")]
    Busy,
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

/// What UpdateScheduledTask does to a scheduled task at `now`: its new status, `schedule_at`
/// and `due_at`, or `None` when the task's state does not allow the change (it has started or
/// ended; or it was cancelled and is not asked to wait again at a time still ahead).
pub fn rescheduled(
    task: &TaskRecord,
    change: ScheduleChange,
    now: i64,
) -> Option<(TaskStatus, Option<i64>, Option<i64>)> {
    let schedule_at = change.execute_at.or(task.schedule_at);
    match (task.status, change.status) {
        (TaskStatus::Created, StatusChange::Cancel) => Some((TaskStatus::Cancelled, schedule_at, None)),
        (TaskStatus::Created, StatusChange::Keep | StatusChange::Wait) => {
            Some((TaskStatus::Created, schedule_at, schedule_at))
        }
        (TaskStatus::Cancelled, StatusChange::Wait) if schedule_at.is_some_and(|at| at > now) => {
            Some((TaskStatus::Created, schedule_at, schedule_at))
        }
        _ => None,
    }
}

/// Changes UpdateInstance makes to an instance, decided by the domain's rule
/// ([`crate::domain::instance::InstanceUpdate::apply`]) on the instance as it is inside the
/// storing transaction.
pub type InstanceChange = Box<dyn FnOnce(&mut Instance) -> Result<(), Invalid> + Send>;

/// Admits a new task on its instance: an immediate task takes the instance's one-operation lock,
/// refused when it is held or the operation does not apply to the instance as it is (the rule a
/// scheduled task meets again when it fires). Returns whether the instance changed.
pub fn admit(inst: &mut Instance, task: &NewTask) -> Result<bool, SubmitError> {
    if task.record.schedule_at.is_some() {
        return Ok(false);
    }
    if inst.busy_task.is_some() || task.operation.still_applies(inst).is_err() {
        return Err(SubmitError::Busy);
    }
    inst.busy_task = Some(task.record.id.clone());
    Ok(true)
}

/// Background and scheduled task records.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// `None` when the instance does not exist in the project; else the total and the page.
    async fn list_tasks(&self, q: &TaskQuery) -> StoreResult<Option<(u64, Vec<TaskRecord>)>>;
    async fn get_task(&self, p: &ProjectId, i: &InstanceId, t: &TaskId, view: View) -> StoreResult<Found<TaskRecord>>;
    /// Removes a terminal task durably. `audit`, when given, is written in the same transaction
    /// if the task is removed, with the record as it was in its `detail`.
    async fn delete_task(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        t: &TaskId,
        view: View,
        audit: Option<AuditEvent>,
    ) -> StoreResult<DeleteOutcome>;
    /// Moves or cancels a scheduled task that has not started. `Found::Yes(false)` when it has.
    /// `audit`, when given, is written in the same transaction if the task changes.
    async fn update_scheduled(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        t: &TaskId,
        change: ScheduleChange,
        now: i64,
        audit: Option<AuditEvent>,
    ) -> StoreResult<Found<bool>>;
}

/// The audit detail of a deleted task: the record as it was.
pub fn deleted_detail(task: &TaskRecord) -> serde_json::Value {
    serde_json::json!({ "deleted_task": task.audit_record() })
}

/// Instances and the operations submitted on them.
#[async_trait]
pub trait InstanceStore: Send + Sync {
    /// Stores a new instance with its creation task (and `audit`, in the same transaction).
    async fn create_instance(&self, inst: Instance, task: NewTask, audit: Option<AuditEvent>) -> StoreResult<()>;
    async fn get_instance(&self, p: &ProjectId, i: &InstanceId) -> StoreResult<Option<Instance>>;
    async fn list_instances(&self, p: &ProjectId) -> StoreResult<Vec<Instance>>;
    /// In one transaction: finds the instance, builds the task from it, and stores the task.
    /// An immediate task takes the instance's one-operation lock (refused when it is held);
    /// a scheduled one takes it when it fires. `audit`, when given, is written in the same
    /// transaction if the task is stored.
    async fn submit(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        build: TaskBuilder,
        audit: Option<AuditEvent>,
    ) -> StoreResult<Result<NewTask, SubmitError>>;
    /// In one transaction: finds the instance (locked), applies `change` to it, and stores it with
    /// `audit`. Nothing is written when `change` refuses.
    async fn modify_instance(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        change: InstanceChange,
        audit: Option<AuditEvent>,
    ) -> StoreResult<Result<(), SubmitError>>;
}

/// Kernel builds the operator added, beyond the built-in ones ([`crate::domain::kernel`]).
#[async_trait]
pub trait KernelStore: Send + Sync {
    /// The builds added to `engine_version`, in the order they were added.
    async fn added_kernel_builds(&self, engine_version: &str) -> StoreResult<Vec<String>>;
    /// Appends a build to `engine_version`'s list; `false` when it was listed already.
    async fn add_kernel_build(&self, engine_version: &str, build: &str, now: i64) -> StoreResult<bool>;
}

/// A task a worker holds a lease on.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub task: TaskRecord,
    pub operation: Operation,
    pub step: usize,
    /// This claim started the task (it was `CREATED`); false when it took over a running one.
    pub started: bool,
    /// Set when the task ended in the claim itself (its steps take no time): nothing left to run.
    pub ended: Option<TaskStatus>,
    /// Why the task failed as it was claimed, when its operation no longer applied.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Another worker holds the task now (our lease expired); stop working on it.
    Lost,
    Next(usize),
    Ended(TaskStatus),
}

/// The engine's work queue.
#[async_trait]
pub trait EngineStore: Send + Sync {
    /// Leases up to `max` due tasks to `owner` until `now + lease_ms`: new tasks, scheduled tasks
    /// whose time has come, and running tasks whose lease has expired.
    /// Steps planned to take no time are finished in the same transaction.
    async fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        max: usize,
        ctx: StepContext,
    ) -> StoreResult<Vec<Claimed>>;
    /// Finishes a step, if `owner` still holds the task.
    async fn finish_step(
        &self,
        owner: &str,
        task: &TaskId,
        step: usize,
        now: i64,
        lease_ms: i64,
        ctx: StepContext,
    ) -> StoreResult<StepOutcome>;
    /// Extends every lease `owner` holds to `until`.
    async fn renew_leases(&self, owner: &str, until: i64) -> StoreResult<()>;
    /// Gives back every lease `owner` holds, so that another worker can take them at once.
    async fn release_leases(&self, owner: &str) -> StoreResult<()>;
    /// Tasks not yet ended (waiting, due or running), across all instances.
    async fn unfinished_count(&self) -> StoreResult<u64>;
    /// The counts behind the engine's gauges at `now` (see [`EngineStats`]).
    async fn engine_stats(&self, now: i64) -> StoreResult<EngineStats>;
}

/// What the store's gauges show: unfinished tasks only (read through the index of due tasks,
/// so that sampling costs what the queue holds, not the whole history).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub created: u64,
    pub executing: u64,
    /// Due and not taken: CREATED and due, or EXECUTING past its lease.
    pub due: u64,
    /// The earliest due time among those (a released lease, due at 0, is not counted here).
    pub oldest_due_at: Option<i64>,
    pub lease_expired: u64,
    /// PostgreSQL's connection pool, when there is one.
    pub pool: Option<PoolStats>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub in_use: u64,
    pub idle: u64,
    pub waiting: u64,
}

/// An access key as stored; the secret key is sealed with the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub access_key: String,
    pub secret_sealed: Vec<u8>,
    pub project_id: ProjectId,
    pub user_id: String,
    pub user_name: String,
    pub role: Role,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub failed_attempts: u32,
    pub locked_until: Option<i64>,
}

/// Access keys.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// The check value of the master key the secrets are sealed with, once one was recorded.
    async fn master_key_check(&self) -> StoreResult<Option<String>>;
    /// Records `value` as the master key's check value unless one is recorded already;
    /// returns the recorded one (which may be another process's).
    async fn record_master_key_check(&self, value: &str, now: i64) -> StoreResult<String>;
    /// Whether any access key (active or revoked) is stored.
    async fn has_credentials(&self) -> StoreResult<bool>;
    async fn insert_credential(&self, c: CredentialRecord) -> StoreResult<()>;
    /// Inserts `c` only if no credential exists at all; `false` when one did.
    async fn insert_first_credential(&self, c: CredentialRecord) -> StoreResult<bool>;
    async fn get_credential(&self, access_key: &str) -> StoreResult<Option<CredentialRecord>>;
    async fn list_credentials(&self) -> StoreResult<Vec<CredentialRecord>>;
    /// `false` when there is no such active key.
    async fn revoke_credential(&self, access_key: &str, now: i64) -> StoreResult<bool>;
}

/// One authenticated mutating request.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEvent {
    pub at: i64,
    pub request_id: String,
    pub project_id: String,
    pub user_id: String,
    pub user_name: String,
    pub access_key: Option<String>,
    pub action: String,
    pub target: String,
    pub status: u16,
    /// For a deleted task: the record as it was.
    pub detail: Option<serde_json::Value>,
}

/// The longest text an audit field keeps (bytes); a client-chosen target (a path segment) is cut there.
pub const AUDIT_FIELD_MAX: usize = 1024;

/// A text field as it can be stored in any engine: NUL (which PostgreSQL's `text` cannot hold)
/// becomes U+FFFD, and the text is cut at [`AUDIT_FIELD_MAX`] bytes on a character boundary.
fn storable_text(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\0') && s.len() <= AUDIT_FIELD_MAX {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut s = s.replace('\0', "\u{FFFD}");
    let mut end = s.len().min(AUDIT_FIELD_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    std::borrow::Cow::Owned(s)
}

impl AuditEvent {
    /// The event as every engine stores it: any byte a client could send in a path or header
    /// (NUL included) is written, so that an event is never lost to its own content. Storage
    /// engines call this in their one audit insert.
    pub fn storable(&self) -> AuditEvent {
        let t = |s: &str| storable_text(s).into_owned();
        AuditEvent {
            at: self.at,
            request_id: t(&self.request_id),
            project_id: t(&self.project_id),
            user_id: t(&self.user_id),
            user_name: t(&self.user_name),
            access_key: self.access_key.as_deref().map(t),
            action: t(&self.action),
            target: t(&self.target),
            status: self.status,
            // Serialised JSON escapes NUL (`\u0000`), so the detail needs nothing.
            detail: self.detail.clone(),
        }
    }
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_audit(&self, e: AuditEvent) -> StoreResult<()>;
    /// Oldest first, at most `limit`.
    async fn list_audit(
        &self,
        project: Option<&ProjectId>,
        since: Option<i64>,
        limit: u64,
    ) -> StoreResult<Vec<AuditEvent>>;
}

/// Loading many records at once, bypassing the API: benchmarks and imports.
#[async_trait]
pub trait BulkStore: Send + Sync {
    /// Stores instances and their tasks as given (any state; running tasks get no lease).
    async fn bulk_load(&self, instances: Vec<Instance>, tasks: Vec<NewTask>) -> StoreResult<()>;
}

/// Where a stored task stands for the two views and the engine: whether it is a background task,
/// and when a worker should look at it (`None` once it has ended).
pub fn placement(r: &TaskRecord) -> (bool, Option<i64>) {
    let in_background =
        r.schedule_at.is_none() || matches!(r.status, TaskStatus::Executing | TaskStatus::Success | TaskStatus::Failed);
    let due_at = match r.status {
        TaskStatus::Created => Some(r.schedule_at.unwrap_or(r.created_at)),
        TaskStatus::Executing => Some(0),
        _ => None,
    };
    (in_background, due_at)
}

/// The width of a count bucket: one UTC day of `created_at`.
pub const BUCKET_MS: i64 = 86_400_000;

pub fn bucket_of(ms: i64) -> i64 {
    ms.div_euclid(BUCKET_MS)
}

impl View {
    /// The view's number in the bucket table.
    pub fn code(self) -> i64 {
        match self {
            View::Background => 0,
            View::Scheduled => 1,
        }
    }
}

/// The views a stored task is counted in.
pub fn views_of(r: &TaskRecord) -> impl Iterator<Item = View> + use<> {
    let (in_background, _) = placement(r);
    [in_background.then_some(View::Background), r.schedule_at.map(|_| View::Scheduled)].into_iter().flatten()
}

/// The buckets a query touches, inclusive (`bucket_of` of its bounds).
pub fn bucket_range(q: &TaskQuery) -> (i64, i64) {
    (q.created_from.map_or(i64::MIN, bucket_of), q.created_to.map_or(i64::MAX, bucket_of))
}

/// Buckets only partly inside the query's time bounds, as `(bucket, from, to)`: their rows in
/// bounds must be counted exactly (at most a day's worth each).
pub fn partial_edges(q: &TaskQuery) -> Vec<(i64, i64, i64)> {
    let mut out: Vec<(i64, i64, i64)> = Vec::with_capacity(2);
    let span = |b: i64| (b.saturating_mul(BUCKET_MS), b.saturating_add(1).saturating_mul(BUCKET_MS) - 1);
    if let Some(f) = q.created_from {
        let b = bucket_of(f);
        let (start, end) = span(b);
        let hi = q.created_to.map_or(end, |t| t.min(end));
        if f != start || hi != end {
            out.push((b, f, hi));
        }
    }
    if let Some(t) = q.created_to {
        let b = bucket_of(t);
        let (start, end) = span(b);
        let lo = q.created_from.map_or(start, |f| f.max(start));
        if (t != end || lo != start) && !out.iter().any(|e| e.0 == b) {
            out.push((b, lo, t));
        }
    }
    out
}

/// Where a page starts, found from bucket counts without reading the rows before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagePlan {
    pub total: u64,
    /// The newest `created_at` the page can hold and how many rows at or below it to skip;
    /// `None` when the page lies past the end.
    pub start: Option<(i64, u64)>,
}

/// `buckets` are `(bucket, count)`, newest first, the counts exact within the query's bounds.
pub fn plan_page(buckets: &[(i64, i64)], q: &TaskQuery) -> PagePlan {
    if matches!((q.created_from, q.created_to), (Some(f), Some(t)) if f > t) {
        return PagePlan { total: 0, start: None };
    }
    let total: u64 = buckets.iter().map(|b| b.1.max(0) as u64).sum();
    let mut before: u64 = 0;
    for &(bucket, n) in buckets {
        let n = n.max(0) as u64;
        if before + n > q.offset {
            let upper = bucket.saturating_add(1).saturating_mul(BUCKET_MS) - 1;
            let upper = q.created_to.map_or(upper, |t| t.min(upper));
            return PagePlan { total, start: Some((upper, q.offset - before)) };
        }
        before += n;
    }
    PagePlan { total, start: None }
}

/// Liveness of the database itself.
#[async_trait]
pub trait Health: Send + Sync {
    async fn ping(&self) -> StoreResult<()>;
    /// A small durable write through the same path as every other write (SQLite's writer
    /// thread and group commit; a PostgreSQL transaction that takes a transaction id), so that
    /// a full disk, a read-only database or a stalled writer shows.
    async fn write_probe(&self) -> StoreResult<()>;
}

/// Connections a PostgreSQL pool keeps unless told otherwise.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Everything the service keeps, one handle per capability.
#[derive(Clone)]
pub struct Storage {
    pub tasks: Arc<dyn TaskStore>,
    pub instances: Arc<dyn InstanceStore>,
    pub engine: Arc<dyn EngineStore>,
    pub credentials: Arc<dyn CredentialStore>,
    pub audit: Arc<dyn AuditStore>,
    pub bulk: Arc<dyn BulkStore>,
    pub health: Arc<dyn Health>,
    pub kernels: Arc<dyn KernelStore>,
}

impl Storage {
    fn from_engine<E>(e: Arc<E>) -> Self
    where
        E: TaskStore
            + InstanceStore
            + EngineStore
            + CredentialStore
            + AuditStore
            + BulkStore
            + Health
            + KernelStore
            + 'static,
    {
        Storage {
            tasks: e.clone(),
            instances: e.clone(),
            engine: e.clone(),
            credentials: e.clone(),
            audit: e.clone(),
            bulk: e.clone(),
            health: e.clone(),
            kernels: e,
        }
    }

    /// The kernel builds of `engine_version`, built-in then added; `None` for an unknown
    /// engine version.
    pub async fn kernel_catalog(&self, engine_version: &str) -> StoreResult<Option<crate::domain::kernel::Catalog>> {
        let added = self.kernels.added_kernel_builds(engine_version).await?;
        Ok(crate::domain::kernel::Catalog::new(engine_version, added))
    }

    /// Opens (and migrates) the database named by `url`: `sqlite:PATH`, a bare path, or
    /// `postgres://…` (with a connection pool of the default size).
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        Self::open_with_pool(url, DEFAULT_POOL_SIZE).await
    }

    pub async fn open_with_pool(url: &str, pool_size: usize) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let db = postgres::Postgres::open(url, pool_size).await?;
            return Ok(Self::from_engine(Arc::new(db)));
        }
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        let db = sqlite::Sqlite::open(std::path::Path::new(path)).await?;
        Ok(Self::from_engine(Arc::new(db)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_text_is_storable_whatever_the_client_sent() {
        assert_eq!(storable_text("a\0b"), "a\u{FFFD}b");
        assert_eq!(storable_text("plain"), "plain");
        let long = "é".repeat(AUDIT_FIELD_MAX);
        let cut = storable_text(&long);
        assert!(cut.len() <= AUDIT_FIELD_MAX && cut.chars().all(|c| c == 'é'));
        assert!(storable_text(&"\0".repeat(AUDIT_FIELD_MAX)).len() <= AUDIT_FIELD_MAX);
    }

    fn query(offset: u64, from: Option<i64>, to: Option<i64>) -> TaskQuery {
        TaskQuery {
            project_id: "0123456789abcdef0123456789abcdef".parse().expect("p"),
            instance_id: "11111111-2222-3333-4444-555555555555".parse().expect("i"),
            view: View::Background,
            created_from: from,
            created_to: to,
            offset,
            limit: 10,
        }
    }

    const D: i64 = BUCKET_MS;

    #[test]
    fn a_page_starts_in_the_bucket_that_holds_its_offset() {
        let buckets = [(12, 5), (11, 0), (10, 7)];
        assert_eq!(plan_page(&buckets, &query(0, None, None)), PagePlan { total: 12, start: Some((13 * D - 1, 0)) });
        assert_eq!(plan_page(&buckets, &query(4, None, None)).start, Some((13 * D - 1, 4)));
        assert_eq!(plan_page(&buckets, &query(5, None, None)).start, Some((11 * D - 1, 0)));
        assert_eq!(plan_page(&buckets, &query(11, None, None)).start, Some((11 * D - 1, 6)));
        assert_eq!(plan_page(&buckets, &query(12, None, None)), PagePlan { total: 12, start: None });
        assert_eq!(plan_page(&buckets, &query(0, Some(12 * D + 5), None)).start.map(|s| s.0), Some(13 * D - 1));
        assert_eq!(plan_page(&buckets, &query(0, None, Some(12 * D + 5))).start, Some((12 * D + 5, 0)));
        assert_eq!(plan_page(&buckets, &query(0, Some(3), Some(2))).total, 0);
    }

    #[test]
    fn only_partly_covered_buckets_are_counted_exactly() {
        assert!(partial_edges(&query(0, None, None)).is_empty());
        assert!(partial_edges(&query(0, Some(10 * D), Some(13 * D - 1))).is_empty());
        assert_eq!(partial_edges(&query(0, Some(10 * D + 1), Some(13 * D - 1))), [(10, 10 * D + 1, 11 * D - 1)]);
        assert_eq!(
            partial_edges(&query(0, Some(10 * D + 1), Some(12 * D))),
            [(10, 10 * D + 1, 11 * D - 1), (12, 12 * D, 12 * D)]
        );
        assert_eq!(partial_edges(&query(0, Some(10 * D + 1), Some(10 * D + 9))), [(10, 10 * D + 1, 10 * D + 9)]);
        assert_eq!(partial_edges(&query(0, None, Some(10 * D + 9))), [(10, 10 * D, 10 * D + 9)]);
        assert_eq!(bucket_range(&query(0, Some(10 * D + 1), None)), (10, i64::MAX));
    }
}
