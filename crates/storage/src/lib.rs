//! Storage: the capability traits the HTTP layer and the engine use, and one implementation
//! per database engine. SQL lives here and nowhere else.

pub mod events;
pub mod paging;
pub mod postgres;
pub mod sqlite;
mod storable;
pub mod telemetry;

pub use storable::StorableAudit;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use kafka_tasks_domain::instance::Instance;
use kafka_tasks_domain::operation::{Operation, StepContext};
use kafka_tasks_domain::time::millis;
use kafka_tasks_domain::{InstanceId, Invalid, ProjectId, Role, TaskId, TaskRecord, TaskStatus, Timestamp};

/// What a store error keeps of the error under it (the driver's, the JSON decoder's), so that
/// `source()` chains, error reports and logs reach it. Shared rather than boxed alone: the
/// SQLite writer hands one failed group commit to every write in the group.
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A storage failure, whatever the engine. Never shown to API clients. Each variant but
/// `Closed` carries a short context (what failed, in words) and, when a driver or decoder
/// error caused it, that error as its [`source`](std::error::Error::source) (the driver's own
/// type, so a caller can downcast it); [`StoreError::chain`] renders both.
#[derive(Debug, Clone)]
pub enum StoreError {
    Backend {
        context: String,
        source: Option<Cause>,
    },
    Corrupt {
        context: String,
        source: Option<Cause>,
    },
    Closed,
    /// The database cannot serve now (connection refused or lost, disk full, I/O error, locked
    /// past the busy timeout, administrator shutdown); worth retrying later. API: 503.
    Unavailable {
        context: String,
        source: Option<Cause>,
    },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Backend { context, .. } => write!(f, "database error: {context}"),
            StoreError::Corrupt { context, .. } => write!(f, "stored data is unreadable: {context}"),
            StoreError::Closed => f.write_str("the database is shutting down"),
            StoreError::Unavailable { context, .. } => write!(f, "database unavailable: {context}"),
        }
    }
}

/// Written out rather than derived: thiserror would give the `Arc` itself as the source, and a
/// caller could not downcast it to the driver's error.
impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Backend { source, .. }
            | StoreError::Corrupt { source, .. }
            | StoreError::Unavailable { source, .. } => {
                source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
            }
            StoreError::Closed => None,
        }
    }
}

impl StoreError {
    /// A backend error with `context` and no source yet (see [`Self::caused_by`]).
    pub fn backend(context: impl Into<String>) -> StoreError {
        StoreError::Backend { context: context.into(), source: None }
    }

    /// Stored data that cannot be read, with `context` and no source yet.
    pub fn corrupt(context: impl Into<String>) -> StoreError {
        StoreError::Corrupt { context: context.into(), source: None }
    }

    /// The database cannot serve now, with `context` and no source yet.
    pub fn unavailable(context: impl Into<String>) -> StoreError {
        StoreError::Unavailable { context: context.into(), source: None }
    }

    /// The same error with `cause` as its source (`Closed` has none and stays as it is).
    pub fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        match &mut self {
            StoreError::Backend { source, .. }
            | StoreError::Corrupt { source, .. }
            | StoreError::Unavailable { source, .. } => *source = Some(Arc::new(cause)),
            StoreError::Closed => {}
        }
        self
    }

    /// The error's kind, as the `kafka_tasks_store_errors_total{kind}` label names it.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Backend { .. } => "backend",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Closed => "closed",
            StoreError::Unavailable { .. } => "unavailable",
        }
    }

    /// The error and every source under it, `: `-separated (what logs print).
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }

    /// Counts the error in the store-error metric and gives it back (each engine's errors
    /// pass here once, where they are made).
    pub fn counted(self) -> StoreError {
        crate::telemetry::store_error(self.kind());
        self
    }
}

/// A JSON column that does not decode (or a value that does not encode): corrupt data, with
/// serde's error as the source.
pub(crate) fn json_error(e: serde_json::Error) -> StoreError {
    StoreError::corrupt("a JSON column does not convert").caused_by(e).counted()
}

pub type StoreResult<T> = Result<T, StoreError>;

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

/// The domain types the contract speaks in: a task about to be stored and the builder a
/// submission hands the store, the two task views, UpdateScheduledTask's inputs, and why a
/// submission is refused. Their rules live in `domain` ([`kafka_tasks_domain::admission`],
/// [`kafka_tasks_domain::placement`], [`kafka_tasks_domain::rescheduling`]).
pub use kafka_tasks_domain::admission::SubmitError;
pub use kafka_tasks_domain::placement::View;
pub use kafka_tasks_domain::rescheduling::{ScheduleChange, StatusChange};
pub use kafka_tasks_domain::submission::{NewTask, TaskBuilder};

/// Changes UpdateInstance makes to an instance, decided by the domain's rule
/// ([`kafka_tasks_domain::instance::InstanceUpdate::apply`]) on the instance as it is inside the
/// storing transaction. `Fn`: a store may apply it again when it runs the transaction again
/// (the first run rolled back), each time to the instance as that run read it.
pub type InstanceChange = Box<dyn Fn(&mut Instance) -> Result<(), Invalid> + Send>;

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
    /// Bulk delete's one deletion path: in one transaction, removes the oldest (by creation) at
    /// most `limit` finished background tasks of the instance that `filter` matches, with their
    /// counts; writes one audit event per removed record (as a single delete's: target the
    /// task, the record in its detail) and `audit` itself (target the instance, the filter and
    /// count in its detail). `None` when the instance does not exist in the project.
    async fn delete_tasks(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        filter: &BulkFilter,
        limit: u64,
        audit: AuditEvent,
    ) -> StoreResult<Option<BulkDeleted>>;
    /// A bulk delete's dry run: how many finished background tasks `filter` matches now, and
    /// the oldest `limit` of them, read with the same selection as [`Self::delete_tasks`] (the
    /// same `WHERE` text and [`BulkFilter::select`]); removes and audits nothing. `None` when
    /// the instance does not exist in the project.
    async fn preview_delete(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        filter: &BulkFilter,
        limit: u64,
    ) -> StoreResult<Option<BulkPreview>>;
    /// Moves or cancels a scheduled task that has not started. `Found::Yes(false)` when it has.
    /// `audit`, when given, is written in the same transaction if the task changes.
    async fn update_scheduled(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        t: &TaskId,
        change: ScheduleChange,
        now: Timestamp,
        audit: Option<AuditEvent>,
    ) -> StoreResult<Found<bool>>;
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

/// What a bulk delete did: the records it removed, and whether more matched than one request
/// removes ([`kafka_tasks_domain::retention::BULK_DELETE_MAX`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BulkDeleted {
    pub deleted: Vec<TaskRecord>,
    pub more: bool,
}

/// What a bulk delete would remove: the count of every match and the oldest of them.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkPreview {
    pub matched: u64,
    pub first: Vec<TaskRecord>,
}

pub use kafka_tasks_domain::retention::{BulkFilter, Candidate, PruneRule, RetentionPolicy};

/// Retention policies and the pruner's reads and deletes ([`kafka_tasks_domain::retention`] decides).
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// The project's own policy; `None` when it follows the configured default.
    async fn get_retention(&self, p: &ProjectId) -> StoreResult<Option<RetentionPolicy>>;
    /// Whether any project has a policy of its own.
    async fn has_retention_policies(&self) -> StoreResult<bool>;
    /// Stores the project's policy (`None`: back to the default), with `audit` in the same
    /// transaction.
    async fn put_retention(
        &self,
        p: &ProjectId,
        policy: Option<RetentionPolicy>,
        now: Timestamp,
        audit: AuditEvent,
    ) -> StoreResult<()>;
    /// Takes (or renews, for its holder) the one pruning lease until `until`; `false` while
    /// another owner holds an unexpired one.
    async fn take_prune_lease(&self, owner: &str, now: Timestamp, until: Timestamp) -> StoreResult<bool>;
    async fn release_prune_lease(&self, owner: &str) -> StoreResult<()>;
    /// Instances in id order after `after`, at most `limit`, with their projects.
    async fn instances_after(
        &self,
        after: Option<&InstanceId>,
        limit: u64,
    ) -> StoreResult<Vec<(InstanceId, ProjectId)>>;
    /// Finished tasks of `i` that ended before `before`, oldest creation first, after the
    /// `(created_at, id)` cursor, at most `limit`. A task ends after it is created, so the scan
    /// walks the instance's tasks in creation order (its background and scheduled views, each
    /// task once) and stops at the first created at or after `before`; what it reads and skips
    /// is the tasks created before `before` that have not ended, or ended after it.
    async fn finished_tasks(
        &self,
        i: &InstanceId,
        before: i64,
        after: Option<(i64, TaskId)>,
        limit: u64,
    ) -> StoreResult<Vec<Candidate>>;
    /// How many finished task records `i` keeps (a count every write of a task keeps: on the
    /// instance's row, in code, on SQLite; in shard rows, by triggers, on PostgreSQL).
    async fn finished_count(&self, i: &InstanceId) -> StoreResult<u64>;
    /// Retention's one deletion path: in one transaction, removes those of `tasks` (of
    /// instance `i`) still finished and unchanged since read, with their day buckets and
    /// totals, and writes `audit` (its detail: the rule and the removed ids) when any went.
    /// Returns how many were removed.
    async fn prune_tasks(
        &self,
        i: &InstanceId,
        tasks: Vec<Candidate>,
        rule: PruneRule,
        audit: AuditEvent,
    ) -> StoreResult<u64>;
}

/// The audit events of a bulk delete: one per removed record, as a single delete writes it
/// (target the task, the record in the detail), then the request's own (`request`: target the
/// instance; the filter, the count and whether more remain in the detail).
pub(crate) fn bulk_delete_events(
    request: &AuditEvent,
    filter: &BulkFilter,
    deleted: &[TaskRecord],
    more: bool,
) -> Vec<AuditEvent> {
    let mut events: Vec<AuditEvent> = deleted
        .iter()
        .map(|t| AuditEvent {
            target: t.id.as_str().to_owned(),
            detail: Some(kafka_tasks_domain::deletion::deleted_detail(t)),
            ..request.clone()
        })
        .collect();
    events.push(AuditEvent { detail: Some(filter.audit_detail(deleted.len(), more)), ..request.clone() });
    events
}

/// The audit event of a pruning batch that removed `removed`.
pub(crate) fn prune_event(batch: &AuditEvent, rule: PruneRule, removed: &[TaskRecord]) -> AuditEvent {
    AuditEvent { detail: Some(kafka_tasks_domain::retention::prune_detail(rule, removed)), ..batch.clone() }
}

/// Kernel builds the operator added, beyond the built-in ones ([`kafka_tasks_domain::kernel`]).
#[async_trait]
pub trait KernelStore: Send + Sync {
    /// The builds added to `engine_version`, in the order they were added.
    async fn added_kernel_builds(&self, engine_version: &str) -> StoreResult<Vec<String>>;
    /// Appends a build to `engine_version`'s list; `false` when it was listed already.
    async fn add_kernel_build(&self, engine_version: &str, build: &str, now: Timestamp) -> StoreResult<bool>;
}

/// A cluster binding as stored: the binding and, when its SASL password was given inline, that
/// password sealed with the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBinding {
    pub binding: kafka_tasks_domain::cluster::Binding,
    pub password_sealed: Option<Vec<u8>>,
}

/// The Apache Kafka clusters instances are bound to (connected mode).
#[async_trait]
pub trait ClusterStore: Send + Sync {
    async fn get_binding(&self, p: &ProjectId, i: &InstanceId) -> StoreResult<Option<StoredBinding>>;
    /// Binds the instance (`Some`, replacing any binding) or unbinds it (`None`), with `audit`,
    /// in one transaction; `false` when the instance does not exist in the project.
    async fn put_binding(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        binding: Option<StoredBinding>,
        now: Timestamp,
        audit: AuditEvent,
    ) -> StoreResult<bool>;
}

/// What test control keeps (`serve --test-control`, [`crate::control`]): named JSON values
/// (the fault rules, the clock's offset), and the reset to a clean database.
#[async_trait]
pub trait ControlStore: Send + Sync {
    async fn control_value(&self, key: &str) -> StoreResult<Option<String>>;
    async fn put_control_value(&self, key: &str, value: &str, now: Timestamp) -> StoreResult<()>;
    /// Removes every record in one transaction: instances, tasks and their counts, runs,
    /// events (as retention prunes them, so that a stream's cursor stays meaningful), audit,
    /// retention policies, added kernel builds, cluster bindings. Credentials stay, unless
    /// `credentials` names the one access key to keep (every other goes). Test control's own
    /// values stay.
    async fn reset_state(&self, credentials: Option<&str>) -> StoreResult<()>;
    /// Saves the state of the task tables ([`SNAPSHOT_TABLES`] and the task events) as the
    /// snapshot `name`, read in one transaction, replacing one of that name; refused when it
    /// would be the `max_count + 1`th or is larger than `max_bytes`. Never credentials, the
    /// audit, cluster bindings (their sealed passwords) or test control's values.
    async fn save_snapshot(
        &self,
        name: &str,
        now: Timestamp,
        max_count: u64,
        max_bytes: u64,
    ) -> StoreResult<SnapshotSaved>;
    /// Replaces the state of the task tables with the snapshot's, in one transaction; `false`
    /// when there is none of that name. Events are loaded in their order under new ids (ids
    /// never go back), and a stream resuming from before is told what it missed, as after a
    /// reset. Instances lose their cluster bindings.
    async fn restore_snapshot(&self, name: &str) -> StoreResult<bool>;
    /// The snapshots, by name.
    async fn list_snapshots(&self) -> StoreResult<Vec<SnapshotInfo>>;
    /// `false` when there is none of that name.
    async fn delete_snapshot(&self, name: &str) -> StoreResult<bool>;
}

/// The tables a snapshot holds besides the task events, parents first.
pub const SNAPSHOT_TABLES: &[&str] =
    &["instances", "tasks", "task_runs", "task_buckets", "task_totals", "retention_policies"];

/// A stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotInfo {
    pub name: String,
    pub created_at: i64,
    pub size_bytes: u64,
}

/// What saving a snapshot did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotSaved {
    Saved(SnapshotInfo),
    /// As many snapshots as allowed are stored already.
    TooMany,
    /// The state is larger than allowed (its size).
    TooBig(u64),
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
    /// The task's instance is bound to a Kafka cluster (connected mode): its binding is read
    /// for the `kafka` executor; for every other task nothing more is read.
    pub bound: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Another worker holds the task now (our lease expired); stop working on it.
    Lost,
    Next(usize),
    Ended(TaskStatus),
}

impl From<kafka_tasks_domain::transition::Advance> for StepOutcome {
    fn from(a: kafka_tasks_domain::transition::Advance) -> Self {
        use kafka_tasks_domain::transition::Advance;
        match a {
            Advance::Next(n) => StepOutcome::Next(n),
            Advance::Ended(status) => StepOutcome::Ended(status),
            Advance::RemoveInstance => StepOutcome::Ended(TaskStatus::Success),
        }
    }
}

/// The engine's work queue.
#[async_trait]
pub trait EngineStore: Send + Sync {
    /// Leases up to `max` due tasks to `owner` until `now + lease`: new tasks, scheduled tasks
    /// whose time has come, and running tasks whose lease has expired.
    /// Steps planned to take no time are finished in the same transaction.
    async fn claim(
        &self,
        owner: &str,
        now: Timestamp,
        lease: Duration,
        max: usize,
        ctx: StepContext,
    ) -> StoreResult<Vec<Claimed>>;
    /// Finishes a step, if `owner` still holds the task (its lease then runs to `now + lease`).
    async fn finish_step(
        &self,
        owner: &str,
        task: &TaskId,
        step: usize,
        now: Timestamp,
        lease: Duration,
        ctx: StepContext,
    ) -> StoreResult<StepOutcome>;
    /// Extends every lease `owner` holds to `until`.
    async fn renew_leases(&self, owner: &str, until: Timestamp) -> StoreResult<()>;
    /// Gives back every lease `owner` holds, so that another worker can take them at once.
    async fn release_leases(&self, owner: &str) -> StoreResult<()>;
    /// Tasks not yet ended (waiting, due or running), across all instances.
    async fn unfinished_count(&self) -> StoreResult<u64>;
    /// The counts behind the engine's gauges at `now` (see [`EngineStats`]).
    async fn engine_stats(&self, now: Timestamp) -> StoreResult<EngineStats>;
}

/// What an executor reported for a task ([`RunStore`]), kept with the task.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskRun {
    /// The step it runs (or ran last).
    pub step: usize,
    /// The attempt at that step: 1, and one more each time the step is begun again.
    pub attempt: u32,
    /// The step's own progress, 0 to 100, as last reported.
    pub progress: Option<u32>,
    pub message: String,
    /// Why the task failed, when its executor failed it.
    pub reason: Option<String>,
    /// The last bytes of the executor's output (at most [`crate::executor::OUTPUT_TAIL`]).
    pub output_tail: String,
    /// A webhook receiver's final answer for the current attempt, once it came.
    pub answer: Option<StepAnswer>,
    pub updated_at: i64,
}

/// How a webhook receiver ended a step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum StepAnswer {
    Success,
    Failure { reason: String },
}

/// What a webhook receiver's callback says: progress, and the step's end if it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub progress: Option<u32>,
    pub message: Option<String>,
    pub end: Option<StepAnswer>,
}

/// What an executor reports while its step runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub progress: Option<u32>,
    pub message: Option<String>,
    pub output_tail: Option<String>,
}

/// What executors keep with a task: attempts, progress, failures, output, and the
/// webhook callbacks. Every write by a worker is conditional on its lease, as a step's end is.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Begins an attempt at `step` of a task `owner` holds: attempt 1 for a step not begun
    /// before, one more for a step begun before (by a process that died or handed its lease
    /// back). Progress, message and output start empty; `token_hash` is the webhook's callback
    /// token for this attempt. `None` when the lease is no longer ours.
    async fn begin_attempt(
        &self,
        owner: &str,
        task: &TaskId,
        step: usize,
        token_hash: Option<String>,
        now: Timestamp,
    ) -> StoreResult<Option<u32>>;
    /// Records what the executor running `step` reported (fields left `None` are kept).
    async fn report(&self, owner: &str, task: &TaskId, step: usize, r: Report, now: Timestamp) -> StoreResult<()>;
    /// Ends the task `FAILED` at `step` because its executor failed, if `owner` still holds it:
    /// the instance goes back as [`kafka_tasks_domain::transition::fail_step`] says; `reason` and
    /// `output_tail` are kept with the task and `audit` is written, all in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn fail_step(
        &self,
        owner: &str,
        task: &TaskId,
        step: usize,
        now: Timestamp,
        reason: String,
        output_tail: String,
        audit: AuditEvent,
    ) -> StoreResult<StepOutcome>;
    /// Whether `owner` still holds the lease on `task` at `now`: an executor whose task another
    /// process has taken over is stopped.
    async fn holds_lease(&self, owner: &str, task: &TaskId, now: Timestamp) -> StoreResult<bool>;
    /// What the executors reported for a task; `None` when no executor ran it.
    async fn task_run(&self, task: &TaskId) -> StoreResult<Option<TaskRun>>;
    /// Keeps `state` (an executor's own JSON) with `task` across its attempts and steps, if
    /// `owner` still holds the lease at `now`; `false` when it does not (nothing is written, and
    /// the executor must do nothing more). Needs an attempt begun.
    async fn save_state(&self, owner: &str, task: &TaskId, state: String, now: Timestamp) -> StoreResult<bool>;
    /// What an executor kept with `task` ([`save_state`](Self::save_state)); `None` before any.
    async fn load_state(&self, task: &TaskId) -> StoreResult<Option<String>>;
    /// A webhook receiver's callback for `task`: recorded (with `audit`, in one transaction)
    /// only when `token_hash` is the current attempt's and that attempt has not ended yet; a
    /// final answer spends the token. `false` when nothing was recorded.
    async fn answer_step(
        &self,
        task: &TaskId,
        token_hash: &str,
        callback: Callback,
        now: Timestamp,
        audit: Option<AuditEvent>,
    ) -> StoreResult<bool>;
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
    async fn record_master_key_check(&self, value: &str, now: Timestamp) -> StoreResult<String>;
    /// Whether any access key (active or revoked) is stored.
    async fn has_credentials(&self) -> StoreResult<bool>;
    async fn insert_credential(&self, c: CredentialRecord) -> StoreResult<()>;
    /// Inserts `c` only if no credential exists at all; `false` when one did.
    async fn insert_first_credential(&self, c: CredentialRecord) -> StoreResult<bool>;
    async fn get_credential(&self, access_key: &str) -> StoreResult<Option<CredentialRecord>>;
    async fn list_credentials(&self) -> StoreResult<Vec<CredentialRecord>>;
    /// `false` when there is no such active key.
    async fn revoke_credential(&self, access_key: &str, now: Timestamp) -> StoreResult<bool>;
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
    pub events: Arc<dyn events::EventStore>,
    pub runs: Arc<dyn RunStore>,
    pub retention: Arc<dyn RetentionStore>,
    pub clusters: Arc<dyn ClusterStore>,
    pub control: Arc<dyn ControlStore>,
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
            + events::EventStore
            + RunStore
            + RetentionStore
            + ClusterStore
            + ControlStore
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
            kernels: e.clone(),
            events: e.clone(),
            runs: e.clone(),
            retention: e.clone(),
            clusters: e.clone(),
            control: e,
        }
    }

    /// The kernel builds of `engine_version`, built-in then added; `None` for an unknown
    /// engine version.
    pub async fn kernel_catalog(
        &self,
        engine_version: &str,
    ) -> StoreResult<Option<kafka_tasks_domain::kernel::Catalog>> {
        let added = self.kernels.added_kernel_builds(engine_version).await?;
        Ok(kafka_tasks_domain::kernel::Catalog::new(engine_version, added))
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

/// A [`TaskRun`] from its stored columns, whatever the engine.
#[allow(clippy::too_many_arguments)]
fn task_run_from(
    step: i64,
    attempt: i64,
    progress: Option<i64>,
    message: String,
    reason: Option<String>,
    output_tail: String,
    answer: Option<String>,
    updated_at: i64,
) -> StoreResult<TaskRun> {
    let answer = answer
        .map(|a| serde_json::from_str(&a))
        .transpose()
        .map_err(|e| StoreError::corrupt("task_runs.answer").caused_by(e))?;
    Ok(TaskRun {
        step: usize::try_from(step).map_err(|e| StoreError::corrupt("task_runs.step").caused_by(e))?,
        attempt: u32::try_from(attempt).map_err(|e| StoreError::corrupt("task_runs.attempt").caused_by(e))?,
        progress: progress.map(|p| p.clamp(0, 100) as u32),
        message,
        reason,
        output_tail,
        answer,
        updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    #[test]
    fn store_error_kinds_are_the_variants() {
        assert_eq!(StoreError::unavailable("x").kind(), "unavailable");
        assert_eq!(StoreError::backend("x").kind(), "backend");
        assert_eq!(StoreError::corrupt("x").kind(), "corrupt");
        assert_eq!(StoreError::Closed.kind(), "closed");
    }

    #[test]
    fn a_decoding_failure_keeps_serdes_error_and_a_clone_keeps_it_too() {
        let cause = serde_json::from_str::<u32>("x").expect_err("not a number");
        let e = super::json_error(cause).clone();
        assert!(std::error::Error::source(&e).is_some_and(|s| s.is::<serde_json::Error>()), "{e:?}");
        assert!(
            e.chain().starts_with("stored data is unreadable: a JSON column does not convert: expected"),
            "{}",
            e.chain()
        );
    }
}
