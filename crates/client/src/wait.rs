//! Waiting for a task to end: reads ShowBackgroundTask and ShowBackgroundTaskProgress, and shows
//! the current step, the percentage and the remaining time: a live bar when stderr is a
//! terminal, else one plain line per change. Between looks it follows the instance's task event
//! stream when the server has one ([`super::events`]): the task is looked at as soon as an event
//! names it, and otherwise every [`QUIET_LOOK`] (every second with a live bar, whose remaining
//! time moves). Without the stream it polls about once a second (429s are waited out by
//! [`Api::send`]).
//! Progress goes to stderr so that stdout keeps only the command's result. The answers are read
//! into their wire types (an answer of another shape ends the wait, exit 4); what it shows of
//! them (the status, the step names) and the task id are escaped, so that nothing the server
//! sent acts on the terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use kafka_tasks_domain::task::StepStatus;
use kafka_tasks_wire::executor::RunJson;
use kafka_tasks_wire::task::{TaskList, TaskProgress};

use super::events::{EventReader, Heard};
use super::http::{Api, answer_as};
use super::output::{duration, escape, paint_status};
use super::{Failure, OK_STATUSES};

/// Why a failed task failed and what to do (when the server says), from the task's run
/// (`…/run`, operators and admins); `None` when the server has no reason for it. Not escaped:
/// the caller prints it escaped.
pub async fn why_failed(api: &Api, instance: &str, task: &str) -> Option<Why> {
    let path = api.instance_path(instance, &format!("/tasks/{task}/run"));
    match api.get_as::<RunJson>(&path, &[]).await {
        Ok(RunJson { failure: Some(f), .. }) => {
            Some(Why { step: Some(f.step), reason: f.reason, remedy: Some(f.remedy) })
        }
        // A task that failed before runs kept their failure has only the reason.
        Ok(RunJson { failure: None, reason, .. }) => Some(Why { step: None, reason: reason?, remedy: None }),
        Err(Failure::Api { status: 403, .. }) => Some(Why {
            step: None,
            reason: "not shown to this key's role (operators and admins see it with `tasks show`)".into(),
            remedy: None,
        }),
        Err(_) => None,
    }
}

/// Why a task failed, as the server says.
#[derive(Debug, Clone, PartialEq)]
pub struct Why {
    pub step: Option<String>,
    pub reason: String,
    pub remedy: Option<String>,
}

/// `: REASON. What to do: REMEDY` to end the line that names a failed task.
pub fn why_line(why: Option<&Why>) -> String {
    match why {
        Some(Why { reason, remedy: Some(remedy), .. }) => format!(": {reason}. What to do: {remedy}"),
        Some(Why { reason, remedy: None, .. }) => format!(": {reason}"),
        None => String::new(),
    }
}

/// How long a wait that follows the event stream goes without looking at the task.
const QUIET_LOOK: Duration = Duration::from_secs(10);

/// How a wait reads its task.
pub struct Waiting<'a> {
    pub api: &'a Api,
    pub instance: &'a str,
    pub task: &'a str,
    /// Give up after this long (`None`: never).
    pub timeout: Option<Duration>,
    /// A `deleteInstance` task: the instance (and the task) disappearing is its success.
    pub gone_is_success: bool,
}

/// The state of a task as one poll sees it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    status: String,
    percentage: u64,
    remain_secs: u64,
    /// 1-based index of the current step, of `total`.
    step: usize,
    total: usize,
    step_name: String,
}

impl Seen {
    fn line(&self, colour: bool) -> String {
        let status = paint_status(&self.status, colour);
        let step = if self.total > 0 {
            format!(" step {}/{} {}", self.step, self.total, self.step_name)
        } else {
            String::new()
        };
        let left = if OK_STATUSES.contains(&self.status.as_str()) || self.status == "FAILED" {
            String::new()
        } else {
            format!(", {} left", duration(self.remain_secs))
        };
        format!("{status} {:>3}%{step}{left}", self.percentage)
    }
}

/// What a look shows people: `status` as given (escaped by the caller), the step names escaped.
fn parse_progress(p: &TaskProgress, status: &str) -> Seen {
    let total = p.step_list.len();
    // The current step: the first not completed (the failed one, when the task failed).
    let idx = p.step_list.iter().position(|s| s.statue != StepStatus::Completed).unwrap_or(total.saturating_sub(1));
    let step_name = p.step_list.get(idx).map(|s| escape(&s.name).into_owned()).unwrap_or_default();
    Seen {
        status: status.to_owned(),
        percentage: u64::from(p.progress_percentage.min(100)),
        remain_secs: p.remain_time,
        step: if total == 0 { 0 } else { idx + 1 },
        total,
        step_name,
    }
}

/// Waits until the task ends. `Ok(task record)` when it succeeded, [`Failure::TaskFailed`]
/// when it failed or was cancelled, [`Failure::Timeout`] past the timeout.
pub async fn wait(w: Waiting<'_>) -> Result<Value, Failure> {
    let started = Instant::now();
    let shown_task = escape(w.task);
    let live = std::io::stderr().is_terminal();
    let colour = live && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let bar = if live {
        let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
        let template = if colour {
            "{spinner} [{bar:24.cyan/blue}] {pos:>3}% {wide_msg}"
        } else {
            "{spinner} [{bar:24}] {pos:>3}% {wide_msg}"
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        Some(bar)
    } else {
        None
    };
    let task_path = w.api.instance_path(w.instance, &format!("/tasks/{}", w.task));
    // Opened before the first look, so that no change after that look goes unheard.
    let mut stream = EventReader::open(w.api, w.instance).await;
    let mut mode = Some(if stream.is_some() { "following the event stream" } else { "polling" });
    let mut last: Option<Seen> = None;
    let result = loop {
        let shown = match w.api.get(&task_path, &[]).await {
            Ok(v) => v,
            // The instance went away with its task (perhaps before the first look).
            Err(Failure::Api { status: 404, .. }) if w.gone_is_success => break Ok(Value::Null),
            Err(e) => break Err(e),
        };
        let status = match answer_as::<TaskList>(&shown, &format!("GET {task_path}")) {
            Ok(list) => list.tasks.first().map_or_else(|| "UNKNOWN".to_owned(), |t| t.status.clone().into_owned()),
            Err(e) => break Err(e),
        };
        let task = shown.get("tasks").and_then(|t| t.get(0)).cloned().unwrap_or(Value::Null);
        let progress = match w.api.get_as::<TaskProgress>(&format!("{task_path}/progress"), &[]).await {
            Ok(p) => p,
            Err(Failure::Api { status: 404, .. }) if w.gone_is_success => break Ok(Value::Null),
            Err(e) => break Err(e),
        };
        // `seen` is what people are shown; the status as sent decides below.
        let seen = parse_progress(&progress, &escape(&status));
        let ended = matches!(status.as_str(), "SUCCESS" | "FAILED" | "CANCELLED" | "DELETED");
        match &bar {
            Some(bar) => {
                bar.set_position(seen.percentage);
                let step = if seen.total > 0 {
                    format!("step {}/{} {}", seen.step, seen.total, seen.step_name)
                } else {
                    String::new()
                };
                let left = if ended { String::new() } else { format!(" · {} left", duration(seen.remain_secs)) };
                bar.set_message(format!("{} {step}{left}", paint_status(&seen.status, colour)));
            }
            None => {
                let changed = last.as_ref().is_none_or(|l| l.status != seen.status || l.step != seen.step);
                if changed {
                    let at = chrono::Local::now().format("%H:%M:%S");
                    let mut err = std::io::stderr().lock();
                    let how = mode.take().map(|m| format!(" ({m})")).unwrap_or_default();
                    let _ = writeln!(err, "{at} {shown_task} {}{how}", seen.line(false));
                }
            }
        }
        last = Some(seen);
        if ended {
            break match (status.as_str(), last.as_ref()) {
                ("SUCCESS", _) => Ok(task),
                // Failures are escaped where they are printed ([`super::run`]).
                ("FAILED", Some(s)) if !s.step_name.is_empty() => {
                    let why = why_line(why_failed(w.api, w.instance, w.task).await.as_ref());
                    Err(Failure::TaskFailed(format!("task {} FAILED at step {}{why}", w.task, s.step_name)))
                }
                _ => Err(Failure::TaskFailed(format!("task {} {status}", w.task))),
            };
        }
        if w.timeout.is_some_and(|t| started.elapsed() >= t) {
            break Err(Failure::Timeout(format!(
                "task {} is still {status} after {} (--timeout); it goes on: `kafka-tasks tasks wait -i {} {}`",
                w.task,
                duration(started.elapsed().as_secs_f64().round() as u64),
                w.instance,
                w.task
            )));
        }
        let look = if bar.is_some() { Duration::from_secs(1) } else { QUIET_LOOK };
        let look = w.timeout.map_or(look, |t| look.min(t.saturating_sub(started.elapsed())));
        match &mut stream {
            Some(events) => {
                if events.heard(w.task, look).await == Heard::Closed {
                    // The server ended the stream (its lifetime, a restart): poll from now on.
                    stream = None;
                }
            }
            None => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    if let Some(bar) = bar {
        // The finished bar stays on screen; indicatif leaves the cursor at its end.
        bar.finish();
        eprintln!();
    }
    if result.is_ok() && w.gone_is_success && last.as_ref().is_some_and(|l| l.status != "SUCCESS") {
        // The instance went away with its task: the deletion is done.
        let at = chrono::Local::now().format("%H:%M:%S");
        let _ = writeln!(std::io::stderr().lock(), "{at} {shown_task} SUCCESS 100% (instance removed)");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_step_is_the_first_not_completed() {
        let p = serde_json::json!({"progress_percentage": 40, "remain_time": 75, "step_list": [
            {"name": "a", "statue": "COMPLETED"}, {"name": "b", "statue": "IN_PROGRESS"}, {"name": "c", "statue": "WAITING"}]});
        let p: TaskProgress = serde_json::from_value(p).expect("a progress answer");
        let s = parse_progress(&p, "EXECUTING");
        assert_eq!((s.step, s.total, s.step_name.as_str(), s.percentage), (2, 3, "b", 40));
        assert_eq!(s.line(false), "EXECUTING  40% step 2/3 b, 1 min 15 s left");
    }
}
