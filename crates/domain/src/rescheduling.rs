//! UpdateScheduledTask's rule: only a waiting scheduled task may be moved or cancelled, and a
//! cancelled one waits again only when asked to and its time is still ahead.

use super::task::{TaskRecord, TaskStatus};

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

/// A scheduled task's new state, to be written as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rescheduled {
    pub status: TaskStatus,
    pub schedule_at: Option<i64>,
    /// When a worker should look at it; `None` once cancelled.
    pub due_at: Option<i64>,
}

impl Rescheduled {
    /// `task` as it is once the change is written (for the event that reports it).
    pub fn apply_to(&self, task: &mut TaskRecord, now: i64) {
        task.status = self.status;
        task.schedule_at = self.schedule_at;
        task.updated_at = now;
    }
}

/// What UpdateScheduledTask does to a scheduled task at `now`, or `None` when the task's state
/// does not allow the change (it has started or ended; or it was cancelled and is not asked to
/// wait again at a time still ahead).
pub fn rescheduled(task: &TaskRecord, change: ScheduleChange, now: i64) -> Option<Rescheduled> {
    let schedule_at = change.execute_at.or(task.schedule_at);
    let (status, due_at) = match (task.status, change.status) {
        (TaskStatus::Created, StatusChange::Cancel) => (TaskStatus::Cancelled, None),
        (TaskStatus::Created, StatusChange::Keep | StatusChange::Wait) => (TaskStatus::Created, schedule_at),
        (TaskStatus::Cancelled, StatusChange::Wait) if schedule_at.is_some_and(|at| at > now) => {
            (TaskStatus::Created, schedule_at)
        }
        _ => return None,
    };
    Some(Rescheduled { status, schedule_at, due_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests::task;

    fn change(execute_at: Option<i64>, status: StatusChange) -> ScheduleChange {
        ScheduleChange { execute_at, status }
    }

    #[test]
    fn a_waiting_task_moves_and_stays_due_at_its_new_time() {
        let t = task(TaskStatus::Created, Some(500));
        let r = rescheduled(&t, change(Some(900), StatusChange::Keep), 200);
        assert_eq!(r, Some(Rescheduled { status: TaskStatus::Created, schedule_at: Some(900), due_at: Some(900) }));
    }

    #[test]
    fn a_cancelled_task_keeps_its_time_and_is_never_due() {
        let t = task(TaskStatus::Created, Some(500));
        let r = rescheduled(&t, change(None, StatusChange::Cancel), 200);
        assert_eq!(r, Some(Rescheduled { status: TaskStatus::Cancelled, schedule_at: Some(500), due_at: None }));
    }

    #[test]
    fn a_cancelled_task_waits_again_only_for_a_time_still_ahead() {
        let t = task(TaskStatus::Cancelled, Some(500));
        assert_eq!(rescheduled(&t, change(None, StatusChange::Wait), 200).map(|r| r.status), Some(TaskStatus::Created));
        assert_eq!(rescheduled(&t, change(None, StatusChange::Wait), 500), None);
        assert_eq!(rescheduled(&t, change(Some(900), StatusChange::Wait), 600).map(|r| r.due_at), Some(Some(900)));
        assert_eq!(rescheduled(&t, change(Some(900), StatusChange::Keep), 200), None);
        assert_eq!(rescheduled(&t, change(None, StatusChange::Cancel), 200), None);
    }

    #[test]
    fn only_a_waiting_task_may_be_rescheduled() {
        for status in [TaskStatus::Executing, TaskStatus::Success, TaskStatus::Failed] {
            let t = task(status, Some(500));
            for s in [StatusChange::Keep, StatusChange::Cancel, StatusChange::Wait] {
                assert_eq!(rescheduled(&t, change(Some(900), s), 200), None, "{status:?} {s:?}");
            }
        }
    }
}
