//! Where a stored task stands: which of the two task views shows it, and when a worker should
//! look at it. Every engine stores these two facts beside the task (and counts the views per
//! day), so the rule lives here once.

use super::task::{TaskRecord, TaskStatus};

/// Which records a task endpoint sees: background tasks (everything that is not a scheduled task
/// still waiting, including scheduled tasks that have fired) or scheduled tasks (in any state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Background,
    Scheduled,
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

/// The views a stored task is counted in.
pub fn views_of(r: &TaskRecord) -> impl Iterator<Item = View> + use<> {
    let (in_background, _) = placement(r);
    [in_background.then_some(View::Background), r.schedule_at.map(|_| View::Scheduled)].into_iter().flatten()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{InstanceId, ProjectId, TaskId};

    pub(crate) fn task(status: TaskStatus, schedule_at: Option<i64>) -> TaskRecord {
        TaskRecord {
            id: TaskId::generate(),
            project_id: ProjectId::from_trusted("0123456789abcdef0123456789abcdef".into()),
            instance_id: InstanceId::from_trusted("11111111-2222-3333-4444-555555555555".into()),
            name: "restart".into(),
            user_id: "u".into(),
            user_name: "n".into(),
            params: String::new(),
            status,
            created_at: 100,
            updated_at: 100,
            schedule_at,
            steps: Vec::new(),
        }
    }

    #[test]
    fn an_immediate_task_is_a_background_task_due_when_created() {
        assert_eq!(placement(&task(TaskStatus::Created, None)), (true, Some(100)));
        assert_eq!(views_of(&task(TaskStatus::Created, None)).collect::<Vec<_>>(), [View::Background]);
    }

    #[test]
    fn a_waiting_scheduled_task_is_only_in_the_scheduled_view_and_due_at_its_time() {
        assert_eq!(placement(&task(TaskStatus::Created, Some(500))), (false, Some(500)));
        assert_eq!(views_of(&task(TaskStatus::Created, Some(500))).collect::<Vec<_>>(), [View::Scheduled]);
        assert_eq!(views_of(&task(TaskStatus::Cancelled, Some(500))).collect::<Vec<_>>(), [View::Scheduled]);
    }

    #[test]
    fn a_scheduled_task_that_fired_is_in_both_views() {
        for status in [TaskStatus::Executing, TaskStatus::Success, TaskStatus::Failed] {
            assert_eq!(
                views_of(&task(status, Some(500))).collect::<Vec<_>>(),
                [View::Background, View::Scheduled],
                "{status:?}"
            );
        }
    }

    #[test]
    fn a_running_task_is_due_at_once_for_a_takeover_and_an_ended_one_never() {
        assert_eq!(placement(&task(TaskStatus::Executing, None)).1, Some(0));
        for status in [TaskStatus::Success, TaskStatus::Failed, TaskStatus::Cancelled] {
            assert_eq!(placement(&task(status, None)).1, None, "{status:?}");
        }
    }
}
