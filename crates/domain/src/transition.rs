//! How a task and its instance change as a worker starts a task and finishes its steps.
//! Every storage engine loads the rows, calls these functions and writes the rows back in one
//! transaction, so the rules live here once.

use super::instance::Instance;
use super::operation::{Operation, StepContext, StepEffect};
use super::placement::placement;
use super::task::{StepFailure, StepStatus, TaskRecord, TaskStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The task runs from this step (a task taken over after a crash resumes at its unfinished step).
    Run(usize),
    /// A scheduled task whose instance is busy with another operation; try again later.
    Blocked,
    /// The task failed at once, for this reason: the operation no longer applies to its
    /// instance (a scheduled task whose instance changed while it waited). The instance is
    /// left untouched.
    Refused(String),
}

/// Starts (or takes over) a task. A task that starts now is checked against the instance as it
/// is now, exactly as an immediate submission is ([`Operation::still_applies`]): a scheduled
/// task fires on an instance that may have changed since it was submitted.
pub fn begin(task: &mut TaskRecord, inst: &mut Instance, op: &Operation, now: i64) -> Begin {
    if task.status == TaskStatus::Created {
        if inst.busy_task.as_ref().is_some_and(|t| *t != task.id) {
            return Begin::Blocked;
        }
        if let Err(reason) = op.still_applies(inst) {
            refuse(task, now, &reason);
            if inst.busy_task.as_ref() == Some(&task.id) {
                // Only an immediate task holds the lock before it starts (and its instance
                // cannot change meanwhile); never leave the lock behind.
                inst.busy_task = None;
            }
            return Begin::Refused(reason);
        }
        task.status = TaskStatus::Executing;
        task.updated_at = now;
        inst.busy_task = Some(task.id.clone());
        inst.status_before = Some(inst.status);
        if let Some(s) = op.running_status() {
            inst.status = s;
        }
    }
    let step = task.steps.iter().position(|s| s.status != StepStatus::Completed).unwrap_or(0);
    if let Some(s) = task.steps.get_mut(step) {
        s.status = StepStatus::InProgress;
        s.start_time = Some(now);
        s.end_time = None;
    }
    Begin::Run(step)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// Go on with this step.
    Next(usize),
    /// The task ended with this status; the instance was updated.
    Ended(TaskStatus),
    /// The task succeeded and the instance (with all its tasks) is to be removed.
    RemoveInstance,
}

/// Finishes step `step` of a running task.
pub fn finish_step(
    task: &mut TaskRecord,
    inst: &mut Instance,
    op: &Operation,
    step: usize,
    now: i64,
    ctx: StepContext,
) -> Advance {
    let total = task.steps.len();
    let effect = op.finish_step(step, step + 1 >= total, inst, ctx);
    task.updated_at = now;
    match effect {
        StepEffect::Failed(failure) => {
            fail_at(task, inst, op, step, now, failure);
            Advance::Ended(TaskStatus::Failed)
        }
        StepEffect::Done | StepEffect::InstanceRemoved => {
            if let Some(s) = task.steps.get_mut(step) {
                s.status = StepStatus::Completed;
                s.end_time = Some(now);
            }
            if step + 1 < total {
                if let Some(s) = task.steps.get_mut(step + 1) {
                    s.status = StepStatus::InProgress;
                    s.start_time = Some(now);
                }
                return Advance::Next(step + 1);
            }
            task.status = TaskStatus::Success;
            inst.busy_task = None;
            inst.status_before = None;
            if effect == StepEffect::InstanceRemoved {
                Advance::RemoveInstance
            } else {
                Advance::Ended(TaskStatus::Success)
            }
        }
    }
}

/// Finishes step `step` and, in the same breath, every following step planned to take no time
/// (at `--time-scale 0` a whole task ends in one write).
pub fn finish_steps(
    task: &mut TaskRecord,
    inst: &mut Instance,
    op: &Operation,
    step: usize,
    now: i64,
    ctx: StepContext,
) -> Advance {
    let mut advance = finish_step(task, inst, op, step, now, ctx);
    while let Advance::Next(n) = advance {
        // An executor's step ends when the executor says so, never at once.
        if ctx.one_step_per_write(op, inst) || task.steps.get(n).is_none_or(|s| s.duration_ms > 0) {
            break;
        }
        advance = finish_step(task, inst, op, n, now, ctx);
    }
    advance
}

/// What a worker taking a due task leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// A scheduled task whose instance is busy; look again later.
    Blocked,
    /// The task runs, from this step on.
    Running(usize),
    /// The task ended as it was taken: its steps take no time.
    Ended(TaskStatus),
    /// The task failed as it was taken, for this reason: its operation no longer applies to the
    /// instance, which is left untouched.
    Refused(String),
    /// The task ended as it was taken and its instance (with all its tasks) is to be removed.
    RemoveInstance,
}

/// Starts or takes over a task and, when its next steps are planned to take no time, finishes
/// them at once: at `--time-scale 0` a task is done in the transaction that takes it.
pub fn take(task: &mut TaskRecord, inst: &mut Instance, op: &Operation, now: i64, ctx: StepContext) -> Taken {
    match begin(task, inst, op, now) {
        Begin::Blocked => Taken::Blocked,
        Begin::Refused(reason) => Taken::Refused(reason),
        Begin::Run(step)
            if !ctx.one_step_per_write(op, inst) && task.steps.get(step).is_some_and(|s| s.duration_ms == 0) =>
        {
            match finish_steps(task, inst, op, step, now, ctx) {
                Advance::Next(n) => Taken::Running(n),
                Advance::Ended(status) => Taken::Ended(status),
                Advance::RemoveInstance => Taken::RemoveInstance,
            }
        }
        Begin::Run(step) => Taken::Running(step),
    }
}

/// How long a scheduled task whose instance is busy waits before a worker looks at it again.
pub const BLOCKED_RETRY_MS: i64 = 1_000;

/// What a store writes once a worker has moved a task ([`Taken::write`], [`Advance::write`]), so
/// that every engine maps a step's outcome to the same rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    pub instance: InstanceWrite,
    pub task: TaskWrite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceWrite {
    /// The instance did not change.
    Keep,
    /// Write the instance back (its status, its lock).
    Save,
    /// Remove the instance with all its tasks (the task row goes with it).
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskWrite {
    /// Only the due time moves: a worker looks again then (the task is otherwise unchanged).
    RetryAt(i64),
    /// The task runs on under the worker's lease, until the given time: write its status and
    /// steps, due at the lease's end, owned by the worker.
    Leased(i64),
    /// The task ended: write its status and steps, no lease, never due.
    Ended,
    /// Nothing: the task went with its instance.
    Gone,
}

/// What a worker is told about a task it took: the step it runs from (the step count once it has
/// ended), how it ended if it did, and why it failed if its operation no longer applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub step: usize,
    pub ended: Option<TaskStatus>,
    pub reason: Option<String>,
}

impl Taken {
    /// The rows to write for this outcome of a claim at `now`, with a lease of `lease_ms`.
    pub fn write(&self, now: i64, lease_ms: i64) -> Write {
        let (instance, task) = match self {
            Taken::Blocked => (InstanceWrite::Keep, TaskWrite::RetryAt(now + BLOCKED_RETRY_MS)),
            Taken::Running(_) => (InstanceWrite::Save, TaskWrite::Leased(now + lease_ms)),
            // A refusal leaves the instance as it was, but for a lock an immediate task held.
            Taken::Ended(_) | Taken::Refused(_) => (InstanceWrite::Save, TaskWrite::Ended),
            Taken::RemoveInstance => (InstanceWrite::Remove, TaskWrite::Gone),
        };
        Write { instance, task }
    }

    /// What the worker is told; `None` for a blocked task, which is not claimed.
    pub fn progress(self, steps: usize) -> Option<Progress> {
        let ended = |status| Progress { step: steps, ended: Some(status), reason: None };
        Some(match self {
            Taken::Blocked => return None,
            Taken::Running(step) => Progress { step, ended: None, reason: None },
            Taken::Ended(status) => ended(status),
            Taken::Refused(why) => Progress { reason: Some(why), ..ended(TaskStatus::Failed) },
            Taken::RemoveInstance => ended(TaskStatus::Success),
        })
    }
}

impl Advance {
    /// The rows to write for this end of a step at `now`, with a lease of `lease_ms`.
    pub fn write(&self, now: i64, lease_ms: i64) -> Write {
        let (instance, task) = match self {
            // The instance changes only as the task ends.
            Advance::Next(_) => (InstanceWrite::Keep, TaskWrite::Leased(now + lease_ms)),
            Advance::Ended(_) => (InstanceWrite::Save, TaskWrite::Ended),
            Advance::RemoveInstance => (InstanceWrite::Remove, TaskWrite::Gone),
        };
        Write { instance, task }
    }
}

/// A due task a worker took ([`claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub taken: Taken,
    /// The task was waiting (`CREATED`) and starts now, rather than being taken over.
    pub started: bool,
    /// A scheduled task fired and became a background task: from now on it counts in the
    /// background view as well.
    pub fired: bool,
}

/// [`take`], and what it means for the task's place in the views.
pub fn claim(task: &mut TaskRecord, inst: &mut Instance, op: &Operation, now: i64, ctx: StepContext) -> Claim {
    let started = task.status == TaskStatus::Created;
    let was_background = placement(task).0;
    let taken = take(task, inst, op, now, ctx);
    Claim { taken, started, fired: !was_background && placement(task).0 }
}

/// Ends a running task `FAILED` at `step` because its executor failed (a non-zero exit, a
/// timeout, a webhook's failure or deadline): the instance gets back the status it had before the
/// operation began and its lock is released, exactly as for a step the simulation fails.
pub fn fail_step(
    task: &mut TaskRecord,
    inst: &mut Instance,
    op: &Operation,
    step: usize,
    now: i64,
    failure: StepFailure,
) -> Advance {
    fail_at(task, inst, op, step, now, failure);
    Advance::Ended(TaskStatus::Failed)
}

/// Ends a task `FAILED` at its first step without touching its instance.
fn refuse(task: &mut TaskRecord, now: i64, reason: &str) {
    if let Some(s) = task.steps.first_mut() {
        s.failure = Some(StepFailure::new(
            format!("the operation no longer applies to the instance: {reason}"),
            "nothing was changed; submit the operation again for the instance as it is now",
        ));
        s.status = StepStatus::Failed;
        s.start_time = Some(now);
        s.end_time = Some(now);
    }
    task.status = TaskStatus::Failed;
    task.updated_at = now;
}

/// Ends a running task `FAILED` at `step`: the instance gets back the status it had before the
/// operation began (a create: `CREATEFAILED`) and its lock is released.
fn fail_at(task: &mut TaskRecord, inst: &mut Instance, op: &Operation, step: usize, now: i64, failure: StepFailure) {
    if let Some(s) = task.steps.get_mut(step) {
        s.failure = Some(failure);
        s.status = StepStatus::Failed;
        s.start_time.get_or_insert(now);
        s.end_time = Some(now);
    }
    task.status = TaskStatus::Failed;
    task.updated_at = now;
    inst.status = op.failed_status(inst.status_before);
    inst.status_before = None;
    inst.busy_task = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProjectId;
    use crate::instance::{InstanceStatus, NewInstance};
    use crate::placement::tests::task;

    fn running() -> Instance {
        let mut inst = Instance::create(ProjectId::generate(), &NewInstance::example(), "", "", 0);
        inst.status = InstanceStatus::Running;
        inst
    }

    const CTX: StepContext =
        StepContext { storage_pool_gb: 10_000, executed: crate::operation::OpSet::EMPTY, stepwise: false };

    #[test]
    fn a_scheduled_task_that_fires_joins_the_background_view() {
        let (mut t, mut inst) = (task(TaskStatus::Created, Some(500)), running());
        let c = claim(&mut t, &mut inst, &Operation::Restart, 600, CTX);
        assert!(c.started && c.fired, "{c:?}");
    }

    #[test]
    fn an_immediate_task_or_a_takeover_fires_nothing() {
        let (mut t, mut inst) = (task(TaskStatus::Created, None), running());
        let c = claim(&mut t, &mut inst, &Operation::Restart, 600, CTX);
        assert!(c.started && !c.fired, "{c:?}");
        let c = claim(&mut t, &mut inst, &Operation::Restart, 700, CTX);
        assert!(!c.started && !c.fired, "a takeover: {c:?}");
    }

    #[test]
    fn a_blocked_scheduled_task_stays_where_it_was() {
        let (mut t, mut inst) = (task(TaskStatus::Created, Some(500)), running());
        inst.busy_task = Some(crate::TaskId::generate());
        let c = claim(&mut t, &mut inst, &Operation::Restart, 600, CTX);
        assert_eq!((c.taken, c.fired), (Taken::Blocked, false));
    }

    #[test]
    fn a_blocked_task_only_moves_its_due_time_and_is_not_claimed() {
        let w = Taken::Blocked.write(100, 30);
        assert_eq!(w, Write { instance: InstanceWrite::Keep, task: TaskWrite::RetryAt(100 + BLOCKED_RETRY_MS) });
        assert_eq!(Taken::Blocked.progress(3), None);
    }

    #[test]
    fn a_running_task_is_leased_and_its_instance_saved() {
        assert_eq!(
            Taken::Running(1).write(100, 30),
            Write { instance: InstanceWrite::Save, task: TaskWrite::Leased(130) }
        );
        assert_eq!(Taken::Running(1).progress(3), Some(Progress { step: 1, ended: None, reason: None }));
    }

    #[test]
    fn a_task_that_ends_as_it_is_taken_releases_everything() {
        for taken in [Taken::Ended(TaskStatus::Success), Taken::Refused("why".into())] {
            assert_eq!(taken.write(100, 30), Write { instance: InstanceWrite::Save, task: TaskWrite::Ended });
        }
        assert_eq!(
            Taken::Refused("why".into()).progress(3),
            Some(Progress { step: 3, ended: Some(TaskStatus::Failed), reason: Some("why".into()) })
        );
        assert_eq!(
            Taken::RemoveInstance.write(100, 30),
            Write { instance: InstanceWrite::Remove, task: TaskWrite::Gone }
        );
        assert_eq!(Taken::RemoveInstance.progress(3).and_then(|p| p.ended), Some(TaskStatus::Success));
    }

    #[test]
    fn an_executed_operation_never_finishes_a_step_as_it_is_taken() {
        let mut executed = crate::operation::OpSet::default();
        assert!(executed.insert("restartInstance"));
        let ctx = StepContext { executed, ..CTX };
        let (mut t, mut inst) = (task(TaskStatus::Created, None), running());
        t.steps = Operation::Restart.steps(0.0);
        assert_eq!(take(&mut t, &mut inst, &Operation::Restart, 600, ctx), Taken::Running(0));
        assert_eq!(finish_steps(&mut t, &mut inst, &Operation::Restart, 0, 700, ctx), Advance::Next(1));
        assert_eq!(
            fail_step(&mut t, &mut inst, &Operation::Restart, 1, 800, StepFailure::executor("exit 1")),
            Advance::Ended(TaskStatus::Failed)
        );
        assert_eq!(
            (t.status, inst.status, inst.busy_task.clone()),
            (TaskStatus::Failed, InstanceStatus::Running, None)
        );
        assert_eq!(t.steps[1].status, crate::StepStatus::Failed);
    }

    #[test]
    fn a_next_step_renews_the_lease_without_touching_the_instance() {
        assert_eq!(
            Advance::Next(2).write(100, 30),
            Write { instance: InstanceWrite::Keep, task: TaskWrite::Leased(130) }
        );
        let ended = Advance::Ended(TaskStatus::Failed);
        assert_eq!(ended.write(100, 30), Write { instance: InstanceWrite::Save, task: TaskWrite::Ended });
        assert_eq!(Advance::RemoveInstance.write(100, 30).instance, InstanceWrite::Remove);
    }
}
