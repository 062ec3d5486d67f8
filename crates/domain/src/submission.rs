//! A task about to be stored, and how it is built from an operation on an instance.
//!
//! A submission is checked against the instance as it is *inside* the storing transaction (its
//! state may change between the request and the write), so the HTTP layer does not build the
//! task itself: it hands the store a [`TaskBuilder`], pure domain values (who, when, how fast,
//! and how to derive the operation from the instance), which the store calls with the instance
//! it has read.

use super::instance::Instance;
use super::operation::Operation;
use super::{Identity, Invalid, TaskId, TaskRecord, TaskStatus};

/// A task about to be stored, with the operation it carries out.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub record: TaskRecord,
    pub operation: Operation,
}

impl NewTask {
    /// A `CREATED` task for `op` on `inst`, started by the given user at `now`, due at
    /// `schedule_at` when scheduled, its steps' durations multiplied by `time_scale`.
    pub fn new(
        inst: &Instance,
        op: Operation,
        user: (&str, &str),
        now: i64,
        schedule_at: Option<i64>,
        time_scale: f64,
    ) -> Self {
        NewTask {
            record: TaskRecord {
                id: TaskId::generate(),
                project_id: inst.project_id.clone(),
                instance_id: inst.id.clone(),
                name: op.task_name().to_owned(),
                user_id: user.0.to_owned(),
                user_name: user.1.to_owned(),
                params: op.params(),
                status: TaskStatus::Created,
                created_at: now,
                updated_at: now,
                schedule_at,
                steps: op.steps(time_scale),
            },
            operation: op,
        }
    }
}

/// The operation a submission carries out, given the instance as the store read it. `Fn`: a store
/// may build the task more than once ([`TaskBuilder::build`]).
pub type OperationFrom = Box<dyn Fn(&Instance) -> Result<Operation, Invalid> + Send>;

/// Builds the task of a submission from the instance as it is inside the submitting
/// transaction. Made by the HTTP layer from the request, called by the store, which may call it
/// again when it runs the transaction again (the SQLite writer re-runs a group's writes after
/// one of them failed, the first run rolled back): each build stands alone.
pub struct TaskBuilder(Build);

enum Build {
    Plan {
        user_id: String,
        user_name: String,
        now: i64,
        schedule_at: Option<i64>,
        time_scale: f64,
        operation: OperationFrom,
    },
    Ready(Box<NewTask>),
}

impl TaskBuilder {
    /// A task started by `who` at `now` (due at `schedule_at` when scheduled), its steps'
    /// durations multiplied by `time_scale`, carrying out the operation `operation` derives from
    /// the instance (or refusing with its reason).
    pub fn new(
        who: &Identity,
        now: i64,
        schedule_at: Option<i64>,
        time_scale: f64,
        operation: impl Fn(&Instance) -> Result<Operation, Invalid> + Send + 'static,
    ) -> Self {
        TaskBuilder(Build::Plan {
            user_id: who.user_id.clone(),
            user_name: who.user_name.clone(),
            now,
            schedule_at,
            time_scale,
            operation: Box::new(operation),
        })
    }

    /// A task built beforehand (imports and tests), stored as it is.
    pub fn ready(task: NewTask) -> Self {
        TaskBuilder(Build::Ready(Box::new(task)))
    }

    /// The task for `inst`, or why the operation does not apply to it. Each build of a planned
    /// task is a new task (its own id), made from `inst` alone; a ready one is the same each time.
    pub fn build(&self, inst: &Instance) -> Result<NewTask, Invalid> {
        match &self.0 {
            Build::Ready(task) => Ok(NewTask::clone(task)),
            Build::Plan { user_id, user_name, now, schedule_at, time_scale, operation } => {
                let op = operation(inst)?;
                Ok(NewTask::new(inst, op, (user_id, user_name), *now, *schedule_at, *time_scale))
            }
        }
    }
}
