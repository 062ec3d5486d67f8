//! The task event log's rules: which events a change of a task leads to, and what each carries.
//! Every storage engine calls these with the records it writes and appends the events in the
//! same transaction (`append_events` in each engine), so a stream never shows a change that was
//! rolled back and never misses one that committed.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepRef<'a> {
    /// 0-based.
    pub index: usize,
    #[schema(value_type = String)]
    pub name: Cow<'a, str>,
    pub status: StepStatus,
}

/// An event's JSON `data`, as stored and as sent (the event stream's document takes its schema
/// from this type).
// The strings are `Cow`: borrowed from the task when the stores write events, owned when the CLI
// reads them back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventData<'a> {
    #[schema(value_type = String)]
    pub task_id: Cow<'a, str>,
    #[schema(value_type = String)]
    pub instance_id: Cow<'a, str>,
    #[schema(value_type = String)]
    pub name: Cow<'a, str>,
    pub status: TaskStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub step: Option<StepRef<'a>>,
    /// Steps completed out of `steps` and the percentage ShowBackgroundTaskProgress reports.
    pub steps_done: usize,
    pub steps: usize,
    pub progress: u32,
    /// ISO 8601 UTC with milliseconds, as the task API shows times.
    #[schema(value_type = String)]
    pub created_at: Cow<'a, str>,
    #[schema(value_type = String)]
    pub updated_at: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Option<String>)]
    pub schedule_at: Option<Cow<'a, str>>,
    /// When the change was made.
    #[schema(value_type = String)]
    pub at: Cow<'a, str>,
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

/// One row of the log about to be appended: one event, or the several events one write makes
/// about one task (a claim that runs a task of two instant steps to its end makes five), which
/// take consecutive positions in the log. A row of several keeps what its events share once
/// (the task's state; see [`unpack`]), so such a write costs the log one row and one payload
/// rather than one of each per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub at: i64,
    pub project_id: String,
    pub instance_id: String,
    pub task_id: String,
    /// How many events the row holds (at least one): the positions it takes.
    pub n: usize,
    /// One event: its kind's wire name. Several: see [`unpack`].
    pub kind: String,
    /// One event: its [`EventData`] as JSON. Several: see [`unpack`].
    pub data: String,
}

/// A row as the engines store it, borrowed from an [`EventRow`] or a single [`NewEvent`].
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub at: i64,
    pub project_id: &'a str,
    pub instance_id: &'a str,
    pub task_id: &'a str,
    pub n: usize,
    pub kind: &'a str,
    pub data: &'a str,
}

/// What the engines' `append_events` take: single events and rows alike.
pub trait AsRow {
    fn as_row(&self) -> RowRef<'_>;
}

impl AsRow for EventRow {
    fn as_row(&self) -> RowRef<'_> {
        RowRef {
            at: self.at,
            project_id: &self.project_id,
            instance_id: &self.instance_id,
            task_id: &self.task_id,
            n: self.n,
            kind: &self.kind,
            data: &self.data,
        }
    }
}

impl AsRow for NewEvent {
    fn as_row(&self) -> RowRef<'_> {
        RowRef {
            at: self.at,
            project_id: &self.project_id,
            instance_id: &self.instance_id,
            task_id: &self.task_id,
            n: 1,
            kind: self.kind.as_str(),
            data: &self.data,
        }
    }
}

impl From<NewEvent> for EventRow {
    fn from(e: NewEvent) -> Self {
        EventRow {
            at: e.at,
            project_id: e.project_id,
            instance_id: e.instance_id,
            task_id: e.task_id,
            n: 1,
            kind: e.kind.as_str().to_owned(),
            data: e.data,
        }
    }
}

/// Where the `step` member goes in an event's JSON: [`EventData`]'s members are written in
/// their declared order, `step` (when present) between `status` and `steps_done`. No member
/// before it can hold this text: a quote inside a JSON string is always escaped.
const STEP_GOES_BEFORE: &str = ",\"steps_done\":";

/// The events of a stored row, in order, as `(kind, data)`: what [`EventRow`]s of several
/// events hold, given back as the single events they stand for (byte for byte what
/// [`NewEvent::of`] makes of each).
///
/// A row of several events has in `kind` their kinds' wire names separated by spaces, that of
/// an event about a step followed by `:J`, and in `data` the task's state as JSON without
/// `step` on its first line, then one line per step an event is about (J counts them from 0):
/// its `step` object. serde_json never writes a raw newline, so lines split cleanly. An event
/// is the state with its step's object put in as `step`.
///
/// `None` when the row is none this log writes (a damaged database).
pub fn unpack(n: usize, kind: String, data: String) -> Option<Vec<(String, String)>> {
    if n == 1 {
        return Some(vec![(kind, data)]);
    }
    let mut lines = data.split('\n');
    let state = lines.next()?;
    let steps: Vec<&str> = lines.collect();
    let (head, tail) = state.split_at(state.find(STEP_GOES_BEFORE)?);
    let mut out = Vec::with_capacity(n);
    for token in kind.split(' ') {
        let (kind, data) = match token.split_once(':') {
            None => (token, state.to_owned()),
            Some((kind, j)) => {
                let step = steps.get(j.parse::<usize>().ok()?)?;
                let mut data = String::with_capacity(state.len() + step.len() + 8);
                data.push_str(head);
                data.push_str(",\"step\":");
                data.push_str(step);
                data.push_str(tail);
                (kind, data)
            }
        };
        EventKind::parse(kind)?;
        out.push((kind.to_owned(), data));
    }
    (out.len() == n).then_some(out)
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

    /// Step `i` as an event shows it (`None` past the last step).
    fn step(&self, i: usize) -> Option<StepRef<'a>> {
        self.task.steps.get(i).map(|s| StepRef { index: i, name: Cow::Borrowed(&s.name), status: s.status })
    }

    /// The data of an event about this state, about step `step` if given.
    fn data(&self, step: Option<StepRef<'a>>) -> EventData<'_> {
        let task = self.task;
        EventData {
            task_id: Cow::Borrowed(task.id.as_str()),
            instance_id: Cow::Borrowed(task.instance_id.as_str()),
            name: Cow::Borrowed(&task.name),
            status: task.status,
            step,
            steps_done: self.steps_done,
            steps: task.steps.len(),
            progress: self.progress,
            created_at: Cow::Borrowed(&self.created_at),
            updated_at: Cow::Borrowed(&self.updated_at),
            schedule_at: self.schedule_at.as_deref().map(Cow::Borrowed),
            at: Cow::Borrowed(&self.at),
        }
    }

    /// The event `kind` about this state, about step `step` if given.
    fn event(&self, kind: EventKind, step: Option<usize>) -> NewEvent {
        let task = self.task;
        let data = self.data(step.and_then(|i| self.step(i)));
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

    /// The row of `events` (two or more) about this state, in [`unpack`]'s layout: the state
    /// written once, each step once.
    fn row(&self, events: &[(EventKind, Option<usize>)]) -> EventRow {
        let task = self.task;
        // Plain data of strings and numbers: serialising cannot fail.
        let mut data = serde_json::to_string(&self.data(None)).unwrap_or_default();
        let mut kind = String::with_capacity(events.len() * 14);
        // The steps written so far, by index, in the order of their lines.
        let mut lines: Vec<usize> = Vec::new();
        for (k, step) in events {
            if !kind.is_empty() {
                kind.push(' ');
            }
            kind.push_str(k.as_str());
            let Some((i, s)) = step.and_then(|i| self.step(i).map(|s| (i, s))) else { continue };
            let j = match lines.iter().position(|l| *l == i) {
                Some(j) => j,
                None => {
                    lines.push(i);
                    data.push('\n');
                    data.push_str(&serde_json::to_string(&s).unwrap_or_default());
                    lines.len() - 1
                }
            };
            let _ = write!(kind, ":{j}");
        }
        EventRow {
            at: self.now,
            project_id: task.project_id.as_str().to_owned(),
            instance_id: task.instance_id.as_str().to_owned(),
            task_id: task.id.as_str().to_owned(),
            n: events.len(),
            kind,
            data,
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
/// after a crash restarts its step: that is a new start. They go into one row (none if nothing
/// happened).
pub fn progressed(before: &Before, task: &TaskRecord, now: i64, out: &mut Vec<EventRow>) {
    let mut made: Vec<(EventKind, Option<usize>)> = Vec::new();
    let mut push = |kind, step| made.push((kind, step));
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
    match made.as_slice() {
        [] => {}
        [(kind, step)] => out.push(TaskState::of(task, now).event(*kind, *step).into()),
        several => out.push(TaskState::of(task, now).row(several)),
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

    /// The events of `rows`, one after another, as `(kind, data)`.
    fn events(rows: &[EventRow]) -> Vec<(String, String)> {
        rows.iter().flat_map(|r| unpack(r.n, r.kind.clone(), r.data.clone()).unwrap_or_default()).collect()
    }

    fn kinds(out: &[EventRow]) -> Vec<(String, Option<usize>)> {
        events(out)
            .into_iter()
            .map(|(kind, data)| {
                let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
                (kind, v["step"]["index"].as_u64().map(|i| i as usize))
            })
            .collect()
    }

    fn owned(kinds: &[(&str, Option<usize>)]) -> Vec<(String, Option<usize>)> {
        kinds.iter().map(|(k, i)| (k.to_string(), *i)).collect()
    }

    #[test]
    fn a_step_end_reports_the_end_then_the_next_start() {
        let mut t = task(TaskStatus::Executing, None);
        t.steps = steps(&[StepStatus::InProgress, StepStatus::Waiting]);
        let before = Before::of(&t);
        t.steps = steps(&[StepStatus::Completed, StepStatus::InProgress]);
        let mut out = Vec::new();
        progressed(&before, &t, 5, &mut out);
        assert_eq!(kinds(&out), owned(&[("step.finished", Some(0)), ("step.started", Some(1))]));
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
        assert_eq!(kinds(&out), owned(&[("step.finished", Some(1)), ("task.finished", None)]));
        let data: serde_json::Value = serde_json::from_str(&events(&out)[1].1).unwrap_or_default();
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
        assert_eq!(
            kinds(&out),
            owned(&[("step.started", Some(0)), ("step.finished", Some(0)), ("step.started", Some(1))])
        );
    }

    #[test]
    fn nothing_changed_means_no_event() {
        let mut t = task(TaskStatus::Executing, None);
        t.steps = steps(&[StepStatus::InProgress]);
        let mut out = Vec::new();
        progressed(&Before::of(&t), &t, 5, &mut out);
        assert!(out.is_empty());
    }

    /// Every move of a task from every state to every later one, with awkward names: the row it
    /// makes holds exactly the events of one [`NewEvent::of`] each, byte for byte, in order.
    #[test]
    fn a_row_of_several_events_gives_back_each_event_as_it_was_written() {
        use StepStatus::*;
        let names = ["s", "quote \" ,\"steps_done\":1 \\", "line\nbreak", "ünï ✓ \u{7}"];
        let states = [Waiting, InProgress, Completed, Failed];
        let mut rows = 0;
        for n in 1..=3 {
            for from in 0..states.len().pow(n) {
                for to in 0..states.len().pow(n) {
                    let pick = |mut code: usize| -> Vec<StepStatus> {
                        (0..n)
                            .map(|_| {
                                let s = states[code % states.len()];
                                code /= states.len();
                                s
                            })
                            .collect()
                    };
                    let mut t = task(TaskStatus::Executing, Some(7));
                    t.name = names[(from + to) % names.len()].to_owned();
                    t.steps = steps(&pick(from));
                    for (i, s) in t.steps.iter_mut().enumerate() {
                        s.name = names[(i + to) % names.len()].to_owned();
                    }
                    let before = Before::of(&t);
                    for (s, status) in t.steps.iter_mut().zip(pick(to)) {
                        s.status = status;
                        s.start_time = Some(if from == to { 1 } else { 2 });
                    }
                    if t.steps.iter().all(|s| s.status == Completed) {
                        t.status = TaskStatus::Success;
                    }
                    let mut out = Vec::new();
                    progressed(&before, &t, 9, &mut out);
                    assert!(out.len() <= 1, "one row a move");
                    let Some(row) = out.first() else { continue };
                    rows += usize::from(row.n > 1);
                    let expected: Vec<(String, String)> = kinds(&out)
                        .into_iter()
                        .map(|(kind, step)| {
                            let kind = EventKind::parse(&kind).unwrap_or(EventKind::Created);
                            let e = NewEvent::of(kind, &t, step, 9);
                            (e.kind.as_str().to_owned(), e.data)
                        })
                        .collect();
                    assert_eq!(events(&out), expected, "{row:?}");
                    assert_eq!(row.n, expected.len());
                    for (_, data) in &expected {
                        assert!(serde_json::from_str::<serde_json::Value>(data).is_ok(), "{data}");
                    }
                }
            }
        }
        assert!(rows > 100, "the cases make rows of several events: {rows}");
    }

    #[test]
    fn a_damaged_row_is_refused_rather_than_misread() {
        let state = r#"{"task_id":"t","status":"SUCCESS","steps_done":1,"at":"x"}"#.to_owned();
        let ok = unpack(2, "step.finished:0 task.finished".into(), format!("{state}\n{{\"index\":0}}"));
        assert_eq!(ok.map(|v| v.len()), Some(2));
        for (n, kind, data) in [
            (3, "step.finished:0 task.finished", format!("{state}\n{{}}")),
            (2, "step.finished:1 task.finished", format!("{state}\n{{}}")),
            (2, "step.finished:x task.finished", format!("{state}\n{{}}")),
            (2, "step.exploded task.finished", state.clone()),
            (2, "task.finished task.finished", r#"{"no":"steps_done"}"#.to_owned()),
        ] {
            assert_eq!(unpack(n, kind.to_owned(), data.clone()), None, "{kind} {data}");
        }
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
