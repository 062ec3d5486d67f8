//! How a task and its instance change as a worker starts a task and finishes its steps.
//! Every storage engine loads the rows, calls these functions and writes the rows back in one
//! transaction, so the rules live here once.

use super::instance::Instance;
use super::operation::{Operation, StepContext, StepEffect};
use super::task::{StepStatus, TaskRecord, TaskStatus};

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
            refuse(task, now);
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
        StepEffect::Failed(_) => {
            fail_at(task, inst, op, step, now);
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
        if task.steps.get(n).is_none_or(|s| s.duration_ms > 0) {
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
        Begin::Run(step) if task.steps.get(step).is_some_and(|s| s.duration_ms == 0) => {
            match finish_steps(task, inst, op, step, now, ctx) {
                Advance::Next(n) => Taken::Running(n),
                Advance::Ended(status) => Taken::Ended(status),
                Advance::RemoveInstance => Taken::RemoveInstance,
            }
        }
        Begin::Run(step) => Taken::Running(step),
    }
}

/// Ends a task `FAILED` at its first step without touching its instance.
fn refuse(task: &mut TaskRecord, now: i64) {
    if let Some(s) = task.steps.first_mut() {
        s.status = StepStatus::Failed;
        s.start_time = Some(now);
        s.end_time = Some(now);
    }
    task.status = TaskStatus::Failed;
    task.updated_at = now;
}

/// Ends a running task `FAILED` at `step`: the instance gets back the status it had before the
/// operation began (a create: `CREATEFAILED`) and its lock is released.
fn fail_at(task: &mut TaskRecord, inst: &mut Instance, op: &Operation, step: usize, now: i64) {
    if let Some(s) = task.steps.get_mut(step) {
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
