//! DeleteBackgroundTask's and DeleteScheduledTask's rule: only a finished task may be deleted,
//! and the audit trail keeps the record as it was.

use super::task::TaskRecord;

/// Whether a task may be deleted now: only once it has finished (succeeded, failed or been
/// cancelled); a waiting or running task stays.
pub fn may_delete(task: &TaskRecord) -> bool {
    task.status.is_terminal()
}

/// The audit detail of a deleted task: the record as it was.
pub fn deleted_detail(task: &TaskRecord) -> serde_json::Value {
    serde_json::json!({ "deleted_task": task.audit_record() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskStatus;
    use crate::placement::tests::task;

    #[test]
    fn only_a_finished_task_may_be_deleted() {
        for status in [TaskStatus::Success, TaskStatus::Failed, TaskStatus::Cancelled] {
            assert!(may_delete(&task(status, None)), "{status:?}");
        }
        for status in [TaskStatus::Created, TaskStatus::Executing] {
            assert!(!may_delete(&task(status, None)), "{status:?}");
            assert!(!may_delete(&task(status, Some(500))), "{status:?}");
        }
    }

    #[test]
    fn the_audit_keeps_the_deleted_record() {
        let t = task(TaskStatus::Success, None);
        let detail = deleted_detail(&t);
        assert_eq!(detail["deleted_task"], t.audit_record());
    }
}
