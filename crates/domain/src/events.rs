//! The task event log's rules: which events a change of a task leads to, and what each carries.
//! Every storage engine calls these with the records it writes and appends the events in the
//! same transaction (`append_events` in each engine), so a stream never shows a change that was
//! rolled back and never misses one that committed.

use serde::Serialize;

use super::task::{StepStatus, TaskRecord, TaskStatus};
use super::time::iso_ms;

/// A position in the log. Events are read in `(xid, id)` order: on PostgreSQL `xid` is the
/// writing transaction's id (see the migration), on SQLite it is always 0 and the order is the
/// id's, which is the commit order there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct EventCursor {
    pub xid: i64,
    pub id: i64,
}

/// Where a stream starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventStart {
    /// At the log's end: after this position, leaving out the events with these ids, which
    /// committed before the stream started but lie after the position (PostgreSQL: written by
    /// transactions newer than one still running; at most [`TAIL_SKIP_MAX`]).
    Tail(EventCursor, Vec<i64>),
    /// Just after this position.
    From(EventCursor),
    /// The event asked for was pruned (with, perhaps, others after it): the stream says so and
    /// goes on from the oldest event kept.
    Missed(EventCursor),
    /// No such event was ever logged.
    Unknown,
}

/// The most already-committed events a stream started "from now" leaves out; past that it may
/// begin with a few events committed just before it started.
pub const TAIL_SKIP_MAX: usize = 1_000;

/// What happened to a task. The wire name is the SSE `event:` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A task was submitted (immediate or scheduled).
    Created,
    /// A step began (a task's first step starting means the task started).
    StepStarted,
    /// A step ended (completed or failed).
    StepFinished,
    /// The task ended: SUCCESS or FAILED.
    Finished,
    /// The task record was deleted.
    Deleted,
    /// A scheduled task was moved, cancelled, or set waiting again.
    Rescheduled,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "task.created",
            EventKind::StepStarted => "step.started",
            EventKind::StepFinished => "step.finished",
            EventKind::Finished => "task.finished",
            EventKind::Deleted => "task.deleted",
            EventKind::Rescheduled => "task.rescheduled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "task.created" => EventKind::Created,
            "step.started" => EventKind::StepStarted,
            "step.finished" => EventKind::StepFinished,
            "task.finished" => EventKind::Finished,
            "task.deleted" => EventKind::Deleted,
            "task.rescheduled" => EventKind::Rescheduled,
            _ => return None,
        })
    }

    /// Every kind, for documentation and tests.
    pub const ALL: [EventKind; 6] = [
        EventKind::Created,
        EventKind::StepStarted,
        EventKind::StepFinished,
        EventKind::Finished,
        EventKind::Deleted,
        EventKind::Rescheduled,
    ];
}

/// The step an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StepRef<'a> {
    /// 0-based.
    pub index: usize,
    pub name: &'a str,
    pub status: StepStatus,
}

/// An event's JSON `data`, as stored and as sent (the event stream's document takes its schema
/// from this type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EventData<'a> {
    pub task_id: &'a str,
    pub instance_id: &'a str,
    pub name: &'a str,
    pub status: TaskStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub step: Option<StepRef<'a>>,
    /// Steps completed out of `steps` and the percentage ShowBackgroundTaskProgress reports.
    pub steps_done: usize,
    pub steps: usize,
    pub progress: u32,
    /// ISO 8601 UTC with milliseconds, as the task API shows times.
    pub created_at: &'a str,
    pub updated_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub schedule_at: Option<&'a str>,
    /// When the change was made.
    pub at: &'a str,
}

/// One event about to be appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub at: i64,
    pub project_id: String,
    pub instance_id: String,
    pub task_id: String,
    /// [`EventData`] as JSON.
    pub data: String,
}

/// What every event about one state of a task shares: its times formatted and its progress
/// counted once, however many events that state makes (a claim that runs a task of instant
/// steps to its end makes five).
struct TaskState<'a> {
    task: &'a TaskRecord,
    now: i64,
    steps_done: usize,
    progress: u32,
    created_at: String,
    updated_at: String,
    schedule_at: Option<String>,
    at: String,
}

impl<'a> TaskState<'a> {
    fn of(task: &'a TaskRecord, now: i64) -> Self {
        TaskState {
            task,
            now,
            steps_done: task.steps.iter().filter(|s| s.status == StepStatus::Completed).count(),
            progress: task.progress(now).percentage,
            created_at: iso_ms(task.created_at),
            updated_at: iso_ms(task.updated_at),
            schedule_at: task.schedule_at.map(iso_ms),
            at: iso_ms(now),
        }
    }

    /// The event `kind` about this state, about step `step` if given.
    fn event(&self, kind: EventKind, step: Option<usize>) -> NewEvent {
        let task = self.task;
        let data = EventData {
            task_id: task.id.as_str(),
            instance_id: task.instance_id.as_str(),
            name: &task.name,
            status: task.status,
            step: step.and_then(|i| task.steps.get(i).map(|s| StepRef { index: i, name: &s.name, status: s.status })),
            steps_done: self.steps_done,
            steps: task.steps.len(),
            progress: self.progress,
            created_at: &self.created_at,
            updated_at: &self.updated_at,
            schedule_at: self.schedule_at.as_deref(),
            at: &self.at,
        };
        NewEvent {
            kind,
            at: self.now,
            project_id: task.project_id.as_str().to_owned(),
            instance_id: task.instance_id.as_str().to_owned(),
            task_id: task.id.as_str().to_owned(),
            // Plain data of strings and numbers: serialising cannot fail.
            data: serde_json::to_string(&data).unwrap_or_default(),
        }
    }
}

impl NewEvent {
    /// The event `kind` about `task` as it is now (after the change), about step `step` if given.
    pub fn of(kind: EventKind, task: &TaskRecord, step: Option<usize>, now: i64) -> Self {
        TaskState::of(task, now).event(kind, step)
    }
}

impl NewEvent {
    /// The event of a stored submission.
    pub fn created(task: &TaskRecord) -> Self {
        NewEvent::of(EventKind::Created, task, None, task.created_at)
    }
}

/// What a task's state before a worker moved it is compared with (see [`progressed`]).
#[derive(Debug, Clone)]
pub struct Before {
    status: TaskStatus,
    steps: Vec<(StepStatus, Option<i64>)>,
}

impl Before {
    pub fn of(task: &TaskRecord) -> Self {
        Before { status: task.status, steps: task.steps.iter().map(|s| (s.status, s.start_time)).collect() }
    }
}

/// The events of a worker's move of a task (a claim or a step's end), in the order they
/// happened: each step that ended or began, by index, then the task's end. A task taken over
/// after a crash restarts its step: that is a new start.
pub fn progressed(before: &Before, task: &TaskRecord, now: i64, out: &mut Vec<NewEvent>) {
    let mut state: Option<TaskState<'_>> = None;
    let mut push = |kind, step| out.push(state.get_or_insert_with(|| TaskState::of(task, now)).event(kind, step));
    for (i, s) in task.steps.iter().enumerate() {
        let (was, started) = before.steps.get(i).copied().unwrap_or((StepStatus::Waiting, None));
        match s.status {
            StepStatus::InProgress if was != StepStatus::InProgress || started != s.start_time => {
                push(EventKind::StepStarted, Some(i));
            }
            StepStatus::Completed | StepStatus::Failed if was != s.status => {
                // A step that takes no time starts and ends in one write: both are reported.
                if was != StepStatus::InProgress {
                    push(EventKind::StepStarted, Some(i));
                }
                push(EventKind::StepFinished, Some(i));
            }
            _ => {}
        }
    }
    if task.status != before.status && task.status.is_terminal() {
        push(EventKind::Finished, None);
    }
}

/// Where a stream resumes after event `after` when that event is not in the log: `oldest` is
/// where retention stopped pruning and `max_pruned` the highest id it pruned. An id at or below
/// that was pruned (the stream then says it missed events, unless exactly the last pruned
/// event was the last one seen); 0 is the log's beginning; any other id was never delivered.
pub fn resume(after: i64, oldest: EventCursor, max_pruned: i64) -> EventStart {
    if after < max_pruned {
        EventStart::Missed(oldest)
    } else if after == max_pruned && after == oldest.id {
        EventStart::From(oldest)
    } else if after == 0 {
        EventStart::From(EventCursor::default())
    } else if after <= max_pruned {
        EventStart::Missed(oldest)
    } else {
        EventStart::Unknown
    }
}

/// Retention's rule: of the oldest events, given in log order as `(id, at)`, how many to prune
/// now: the longest run from the start that is older than `cutoff_at` or at most `below_id`
/// (the count cap). A run, so that the log always keeps a contiguous tail and a resume point
/// tells exactly whether anything after it was pruned.
pub fn prunable(oldest: &[(i64, i64)], cutoff_at: i64, below_id: i64) -> usize {
    oldest.iter().take_while(|(id, at)| *at < cutoff_at || *id <= below_id).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Step;
    use crate::placement::tests::task;

    fn steps(states: &[StepStatus]) -> Vec<Step> {
        states
            .iter()
            .enumerate()
            .map(|(i, s)| Step {
                name: format!("s{i}"),
                status: *s,
                start_time: (*s != StepStatus::Waiting).then_some(1),
                end_time: None,
                duration_ms: 10,
                failure: None,
            })
            .collect()
    }

    fn kinds(out: &[NewEvent]) -> Vec<(&'static str, Option<usize>)> {
        out.iter()
            .map(|e| {
                let v: serde_json::Value = serde_json::from_str(&e.data).unwrap_or_default();
                (e.kind.as_str(), v["step"]["index"].as_u64().map(|i| i as usize))
            })
            .collect()
    }

    #[test]
    fn a_step_end_reports_the_end_then_the_next_start() {
        let mut t = task(TaskStatus::Executing, None);
        t.steps = steps(&[StepStatus::InProgress, StepStatus::Waiting]);
        let before = Before::of(&t);
        t.steps = steps(&[StepStatus::Completed, StepStatus::InProgress]);
        let mut out = Vec::new();
        progressed(&before, &t, 5, &mut out);
        assert_eq!(kinds(&out), vec![("step.finished", Some(0)), ("step.started", Some(1))]);
    }

    #[test]
    fn the_last_step_end_also_ends_the_task() {
        let mut t = task(TaskStatus::Executing, None);
        t.steps = steps(&[StepStatus::Completed, StepStatus::InProgress]);
        let before = Before::of(&t);
        t.steps = steps(&[StepStatus::Completed, StepStatus::Completed]);
        t.status = TaskStatus::Success;
        let mut out = Vec::new();
        progressed(&before, &t, 5, &mut out);
        assert_eq!(kinds(&out), vec![("step.finished", Some(1)), ("task.finished", None)]);
        let data: serde_json::Value = serde_json::from_str(&out[1].data).unwrap_or_default();
        assert_eq!(data["progress"], 100);
        assert_eq!(data["status"], "SUCCESS");
        assert_eq!(data["steps_done"], 2);
    }

    #[test]
    fn a_step_that_takes_no_time_starts_and_ends() {
        let mut t = task(TaskStatus::Created, None);
        t.steps = steps(&[StepStatus::Waiting, StepStatus::Waiting]);
        let before = Before::of(&t);
        t.steps = steps(&[StepStatus::Completed, StepStatus::InProgress]);
        t.status = TaskStatus::Executing;
        let mut out = Vec::new();
        progressed(&before, &t, 5, &mut out);
        assert_eq!(kinds(&out), vec![("step.started", Some(0)), ("step.finished", Some(0)), ("step.started", Some(1))]);
    }

    #[test]
    fn nothing_changed_means_no_event() {
        let mut t = task(TaskStatus::Executing, None);
        t.steps = steps(&[StepStatus::InProgress]);
        let mut out = Vec::new();
        progressed(&Before::of(&t), &t, 5, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn pruning_takes_the_oldest_run_only() {
        let rows = [(1, 10), (2, 20), (3, 5), (4, 50)];
        assert_eq!(prunable(&rows, 25, 0), 3);
        assert_eq!(prunable(&rows, 15, 0), 1);
        assert_eq!(prunable(&rows, 0, 2), 2);
        assert_eq!(prunable(&rows, 0, 0), 0);
        assert_eq!(prunable(&[], 100, 100), 0);
    }

    #[test]
    fn kinds_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("task.exploded"), None);
    }
}
