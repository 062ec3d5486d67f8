//! DeleteBackgroundTask's and DeleteScheduledTask's rule: only a finished task may be deleted,
//! and the audit trail keeps the record as it was.

use serde::Serialize;

use super::task::{AuditRecord, TaskRecord};

/// Whether a task may be deleted now: only once it has finished (succeeded, failed or been
/// cancelled); a waiting or running task stays.
pub fn may_delete(task: &TaskRecord) -> bool {
    task.status.is_terminal()
}

/// The audit detail of a deleted task: the record as it was. A single delete serialises it
/// straight into the audit row ([`deleted`]); a bulk delete keeps it as a value among others.
pub fn deleted_detail(task: &TaskRecord) -> serde_json::Value {
    serde_json::to_value(deleted(task)).unwrap_or_default()
}

/// [`deleted_detail`] before it becomes a value: what a single delete writes as text.
pub fn deleted(task: &TaskRecord) -> DeletedDetail<'_> {
    DeletedDetail { deleted_task: task.audit_record() }
}

#[derive(Debug, Serialize)]
pub struct DeletedDetail<'a> {
    deleted_task: AuditRecord<'a>,
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
        let kept = &deleted_detail(&t)["deleted_task"];
        assert_eq!(kept["id"], t.id.as_str());
        assert_eq!(kept["instance_id"], t.instance_id.as_str());
        assert_eq!(kept["name"], t.name.as_str());
        assert_eq!(kept["status"], t.status.as_str());
        assert_eq!(kept["params"], t.params.as_str());
        assert_eq!(kept["created_at"], crate::time::iso_ms(t.created_at));
        assert!(kept.get("schedule_at").is_none(), "{kept}");
    }

    #[test]
    fn the_text_a_single_delete_writes_is_the_detail_a_bulk_delete_keeps() {
        for t in [task(TaskStatus::Success, None), task(TaskStatus::Cancelled, Some(500))] {
            let text = serde_json::to_string(&deleted(&t)).expect("serialises");
            let read: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(read, deleted_detail(&t), "{text}");
            assert_eq!(read["deleted_task"].get("schedule_at").is_some(), t.schedule_at.is_some(), "{text}");
        }
    }
}
