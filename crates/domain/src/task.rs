//! Task records, their states and their steps.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::ids::{InstanceId, ProjectId, TaskId};
use super::time::iso_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskStatus {
    Created,
    Executing,
    Success,
    Failed,
    Deleted,
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Created => "CREATED",
            TaskStatus::Executing => "EXECUTING",
            TaskStatus::Success => "SUCCESS",
            TaskStatus::Failed => "FAILED",
            TaskStatus::Deleted => "DELETED",
            TaskStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "CREATED" => TaskStatus::Created,
            "EXECUTING" => TaskStatus::Executing,
            "SUCCESS" => TaskStatus::Success,
            "FAILED" => TaskStatus::Failed,
            "DELETED" => TaskStatus::Deleted,
            "CANCELLED" => TaskStatus::Cancelled,
            _ => return None,
        })
    }

    /// Only a finished task may be deleted.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Success | TaskStatus::Failed | TaskStatus::Cancelled | TaskStatus::Deleted)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepStatus {
    Waiting,
    InProgress,
    Completed,
    Failed,
}

/// One step of a task. `duration_ms` is the planned duration (already multiplied by the time scale).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub status: StepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    pub duration_ms: u64,
    /// Why the step failed and what to do, on the step that failed (kept with the steps in the
    /// store; never in the DMS task record on the wire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<StepFailure>,
}

/// Why a step failed and what a person can do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    /// What was wrong, as the simulation, the executor or the check said it.
    pub reason: String,
    /// What to do about it.
    pub remedy: String,
}

impl StepFailure {
    /// The longest reason kept (bytes): an executor's reason can be long.
    pub const MAX_REASON: usize = 1024;

    /// An executor's failure (a non-zero exit, a timeout, a webhook receiver's `failure`, a
    /// connected cluster's refusal), as the executor said it.
    pub fn executor(reason: &str) -> Self {
        Self::new(
            reason,
            "see the executor's output (`kafka-tasks tasks show` prints its last lines), fix the cause, \
             then run the operation again; the instance is back as it was before the task",
        )
    }

    pub fn new(reason: impl Into<String>, remedy: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.len() > Self::MAX_REASON {
            let mut end = Self::MAX_REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push('…');
        }
        StepFailure { reason, remedy: remedy.into() }
    }
}

/// A task record as stored: a background task, a scheduled task, or a scheduled task that has fired
/// (which then is both, under the same id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    pub id: TaskId,
    pub project_id: ProjectId,
    pub instance_id: InstanceId,
    pub name: String,
    pub user_id: String,
    pub user_name: String,
    /// The JSON object of what the operation changes, serialised into a string as the API shows it.
    pub params: String,
    pub status: TaskStatus,
    pub created_at: i64,
    pub updated_at: i64,
    /// Set for a scheduled task: when it is due, epoch ms.
    pub schedule_at: Option<i64>,
    pub steps: Vec<Step>,
}

/// A task as the API shows it: every field a string (`schedule_at` only in scheduled lists).
/// Borrowed from the record when the server writes it; owned when a client reads it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskJson<'a> {
    #[schema(value_type = String)]
    pub id: Cow<'a, str>,
    /// The operation, e.g. `kafkaManagerCreate`, `restart`, `kafkaReassignment`.
    #[schema(value_type = String)]
    pub name: Cow<'a, str>,
    #[schema(value_type = String)]
    pub user_name: Cow<'a, str>,
    #[schema(value_type = String)]
    pub user_id: Cow<'a, str>,
    /// The operation's parameters, a JSON document serialised as a string (as DMS sends it).
    #[schema(value_type = String, example = "{\"enable_auto_topic\":true}")]
    pub params: Cow<'a, str>,
    #[schema(value_type = TaskStatus)]
    pub status: Cow<'a, str>,
    /// ISO 8601 UTC with milliseconds.
    #[schema(example = "2026-11-28T07:00:00.000Z")]
    pub created_at: String,
    pub updated_at: String,
    /// Scheduled tasks only: when it runs (ISO 8601 UTC), empty when never scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub schedule_at: Option<String>,
}

impl<'a> TaskJson<'a> {
    pub fn new(t: &'a TaskRecord, with_schedule: bool) -> Self {
        TaskJson {
            id: Cow::Borrowed(t.id.as_str()),
            name: Cow::Borrowed(&t.name),
            user_name: Cow::Borrowed(&t.user_name),
            user_id: Cow::Borrowed(&t.user_id),
            params: Cow::Borrowed(&t.params),
            status: Cow::Borrowed(t.status.as_str()),
            created_at: iso_ms(t.created_at),
            updated_at: iso_ms(t.updated_at),
            schedule_at: if with_schedule { Some(t.schedule_at.map(iso_ms).unwrap_or_default()) } else { None },
        }
    }
}

/// The record as it was, for the audit event of its deletion: the API's fields and its instance.
/// Serialised straight into the audit row's text (no `serde_json::Value` in between).
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    #[serde(flatten)]
    pub task: TaskJson<'a>,
    pub instance_id: &'a str,
}

impl TaskRecord {
    pub fn audit_record(&self) -> AuditRecord<'_> {
        AuditRecord { task: TaskJson::new(self, self.schedule_at.is_some()), instance_id: self.instance_id.as_str() }
    }
}

/// Progress as ShowBackgroundTaskProgress reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub percentage: u32,
    pub remain_seconds: u64,
}

impl TaskRecord {
    /// Percentage weighted by planned step durations (by step count when every step is instant),
    /// and the remaining planned time, counting the running step's elapsed part as done.
    pub fn progress(&self, now: i64) -> Progress {
        self.progress_reported(now, None)
    }

    /// As [`progress`](Self::progress), with what an executor reported: `(step, percent)` is the
    /// running step's own progress, which then stands for that step's elapsed part (an executor
    /// knows how far it got; the clock only knows how long it has run).
    pub fn progress_reported(&self, now: i64, reported: Option<(usize, u32)>) -> Progress {
        if self.status == TaskStatus::Success {
            return Progress { percentage: 100, remain_seconds: 0 };
        }
        if self.status.is_terminal() || self.steps.is_empty() {
            let done = self.steps.iter().filter(|s| s.status == StepStatus::Completed).count();
            let pct = if self.steps.is_empty() { 0 } else { done * 100 / self.steps.len() };
            return Progress { percentage: pct as u32, remain_seconds: 0 };
        }
        let total: u64 = self.steps.iter().map(|s| s.duration_ms).sum();
        let mut done_ms: u64 = 0;
        let mut done_steps = 0usize;
        // The running step's share reported by its executor, in hundredths of a step.
        let mut running_pct = 0u64;
        for (i, s) in self.steps.iter().enumerate() {
            match s.status {
                StepStatus::Completed => {
                    done_ms += s.duration_ms;
                    done_steps += 1;
                }
                StepStatus::InProgress => match reported.filter(|(step, _)| *step == i) {
                    Some((_, pct)) => {
                        running_pct = u64::from(pct.min(100));
                        done_ms += s.duration_ms * running_pct / 100;
                    }
                    None => {
                        let elapsed = s.start_time.map(|t| (now - t).max(0) as u64).unwrap_or(0);
                        done_ms += elapsed.min(s.duration_ms);
                    }
                },
                _ => {}
            }
        }
        let percentage = match (done_ms * 100).checked_div(total) {
            Some(p) => p as usize,
            None => (done_steps * 100 + running_pct as usize) / self.steps.len(),
        };
        let remain_ms = total.saturating_sub(done_ms);
        Progress {
            // A task still running never claims to be finished.
            percentage: percentage.min(99) as u32,
            remain_seconds: remain_ms.div_ceil(1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(status: StepStatus, start: Option<i64>, dur: u64) -> Step {
        Step { name: "s".into(), status, start_time: start, end_time: None, duration_ms: dur, failure: None }
    }

    fn task(status: TaskStatus, steps: Vec<Step>) -> TaskRecord {
        TaskRecord {
            id: TaskId::generate(),
            project_id: ProjectId::generate(),
            instance_id: InstanceId::generate(),
            name: "x".into(),
            user_id: String::new(),
            user_name: String::new(),
            params: "{}".into(),
            status,
            created_at: 0,
            updated_at: 0,
            schedule_at: None,
            steps,
        }
    }

    #[test]
    fn progress_weighs_steps_by_planned_duration() {
        let t = task(
            TaskStatus::Executing,
            vec![
                step(StepStatus::Completed, Some(0), 10_000),
                step(StepStatus::InProgress, Some(1_000), 20_000),
                step(StepStatus::Waiting, None, 10_000),
            ],
        );
        // 10 s done, 5 s of the second step elapsed: 15 of 40 s.
        let p = t.progress(6_000);
        assert_eq!(p.percentage, 37);
        assert_eq!(p.remain_seconds, 25);
    }

    #[test]
    fn an_executor_s_reported_progress_stands_for_the_running_step() {
        let t = task(
            TaskStatus::Executing,
            vec![
                step(StepStatus::Completed, Some(0), 0),
                step(StepStatus::InProgress, Some(0), 0),
                step(StepStatus::Waiting, None, 0),
                step(StepStatus::Waiting, None, 0),
            ],
        );
        assert_eq!(t.progress(0).percentage, 25);
        assert_eq!(t.progress_reported(0, Some((1, 40))).percentage, 35);
        assert_eq!(t.progress_reported(0, Some((0, 40))).percentage, 25, "a stale report of another step");
        let timed = task(TaskStatus::Executing, vec![step(StepStatus::InProgress, Some(0), 10_000)]);
        let p = timed.progress_reported(0, Some((0, 100)));
        assert_eq!((p.percentage, p.remain_seconds), (99, 0), "never 100 while running");
    }

    #[test]
    fn progress_of_finished_tasks() {
        let t = task(TaskStatus::Success, vec![step(StepStatus::Completed, Some(0), 0)]);
        assert_eq!(t.progress(0), Progress { percentage: 100, remain_seconds: 0 });
        let t = task(
            TaskStatus::Failed,
            vec![step(StepStatus::Completed, Some(0), 5), step(StepStatus::Failed, Some(0), 5)],
        );
        assert_eq!(t.progress(0), Progress { percentage: 50, remain_seconds: 0 });
    }

    #[test]
    fn terminal_states() {
        assert!(TaskStatus::Success.is_terminal());
        assert!(TaskStatus::Cancelled.is_terminal());
        assert!(!TaskStatus::Created.is_terminal());
        assert!(!TaskStatus::Executing.is_terminal());
    }
}
