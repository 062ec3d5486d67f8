//! `tasks events`: an instance's task events as they happen, read with [`EventReader`]. When
//! the stream ends (the server's stream lifetime, a restart) or breaks, it is opened again just
//! after the last event printed, after a pause that doubles from [`FIRST_PAUSE`] up to
//! [`LONGEST_PAUSE`] while nothing comes, so that nothing is lost or printed twice and a
//! server that keeps refusing is not hammered. Stops after `--count` events, after
//! `--until-idle` without one, or at Ctrl-C (exit 0, nothing printed).
//!
//! `-o json` prints each event as sent (`{"id", "event", "data"}`, one a line, `data` parsed);
//! the table prints time, task, event, step and status a line, every value escaped
//! ([`super::output::escape`]): the server's values never act on the terminal.

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use kafka_tasks_domain::events::EventData;
use kafka_tasks_wire::events::SseEvent;

use super::Failure;
use super::events::{EventReader, Next};
use super::http::Api;
use super::output::{escape, inert_json, paint_status, parse_api_time};

/// The pause before opening the stream again after it ended having sent events.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between attempts while the stream keeps ending or being refused.
const LONGEST_PAUSE: Duration = Duration::from_secs(30);
/// Far enough ahead to stand for "never" as a deadline.
const NEVER: Duration = Duration::from_secs(86_400 * 365);

/// What `tasks events` follows and when it stops.
pub struct Following<'a> {
    pub api: &'a Api,
    pub instance: &'a str,
    /// Resume just after this event id (`0`: the whole log kept); `None`: from now on.
    pub after: Option<String>,
    /// Stop after this long without an event.
    pub until_idle: Option<Duration>,
    /// Stop after this many events.
    pub count: Option<u64>,
    pub json: bool,
    pub colour: bool,
}

/// Follows the stream until `--count`, `--until-idle` or Ctrl-C.
pub async fn follow(f: Following<'_>) -> Result<(), Failure> {
    tokio::select! {
        done = follow_stream(&f) => done,
        // Ctrl-C is how a person stops following: not a failure, and nothing to say.
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Whether opening the stream again may succeed later: no answer, a server error, throttling.
fn retryable(f: &Failure) -> bool {
    match f {
        Failure::Network(_) => true,
        Failure::Api { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

async fn follow_stream(f: &Following<'_>) -> Result<(), Failure> {
    let mut cursor = f.after.clone();
    let mut printed = 0u64;
    let mut pause = FIRST_PAUSE;
    let mut last_heard = Instant::now();
    let mut opened_once = false;
    let mut header = !f.json;
    if f.count == Some(0) {
        return Ok(());
    }
    loop {
        let idle_end = f.until_idle.map_or(last_heard + NEVER, |d| last_heard + d);
        let opened = tokio::time::timeout_at(idle_end, EventReader::connect(f.api, f.instance, cursor.as_deref()));
        let mut reader = match opened.await {
            Err(_) => return Ok(()),
            Ok(Ok(r)) => r,
            // The first refusal is the answer (an unknown instance, a bad id, no stream here).
            Ok(Err(e)) if !opened_once || !retryable(&e) => return Err(e),
            Ok(Err(e)) => {
                let line = format!("the stream could not be opened again ({e}); trying again in {pause:?}");
                let _ = writeln!(std::io::stderr().lock(), "{}", escape(&line));
                if tokio::time::timeout_at(idle_end, tokio::time::sleep(pause)).await.is_err() {
                    return Ok(());
                }
                pause = (pause * 2).min(LONGEST_PAUSE);
                continue;
            }
        };
        opened_once = true;
        loop {
            let idle_end = f.until_idle.map_or(last_heard + NEVER, |d| last_heard + d);
            match reader.next(idle_end).await {
                Next::Event(e) => {
                    if header {
                        println!("{}", row("TIME", "TASK", "EVENT", "STEP", "STATUS"));
                        header = false;
                    }
                    print_event(&e, f.json, f.colour);
                    if let Some(id) = e.id {
                        cursor = Some(id);
                    }
                    last_heard = Instant::now();
                    pause = FIRST_PAUSE;
                    printed += 1;
                    if f.count.is_some_and(|n| printed >= n) {
                        return Ok(());
                    }
                }
                Next::Quiet if f.until_idle.is_some() => return Ok(()),
                Next::Quiet => {}
                Next::Closed => break,
            }
        }
        // Ended or broke: open it again after the last event printed.
        let idle_end = f.until_idle.map_or(last_heard + NEVER, |d| last_heard + d);
        if tokio::time::timeout_at(idle_end, tokio::time::sleep(pause)).await.is_err() {
            return Ok(());
        }
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// One line of the table: columns padded to the width of their usual values.
fn row(time: &str, task: &str, event: &str, step: &str, status: &str) -> String {
    format!("{time:<12}  {task:<32}  {event:<16}  {step:<24}  {status}")
}

fn print_event(e: &SseEvent, json: bool, colour: bool) {
    if json {
        let data = serde_json::from_str(&e.data).unwrap_or_else(|_| Value::String(e.data.clone()));
        let line = json!({ "id": e.id, "event": e.event, "data": data });
        println!("{}", inert_json(line.to_string()));
        return;
    }
    println!("{}", event_row(e, colour));
}

/// An event's line of the table, its data read into [`EventData`] (the type the server writes it
/// from); a `missed` message, or data of another shape, shows its event name alone.
fn event_row(e: &SseEvent, colour: bool) -> String {
    let Ok(d) = serde_json::from_str::<EventData>(&e.data) else {
        return row("", "", &escape(&e.event), "", "");
    };
    let time = parse_api_time(&d.at)
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
        .map(|t| t.with_timezone(&chrono::Local).format("%H:%M:%S%.3f").to_string())
        .unwrap_or_default();
    let step = d.step.map(|s| format!("{}/{} {}", s.index + 1, d.steps, escape(&s.name))).unwrap_or_default();
    let line = row(&time, &escape(&d.task_id), &escape(&e.event), &step, "");
    format!("{line}{}", paint_status(d.status.as_str(), colour))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row of the table reads the event's data into its type: the step's place out of the
    /// steps, the status; strings escaped; `missed` and data of another shape show the event alone.
    #[test]
    fn an_events_row_reads_its_data_into_its_type() {
        let event = |name: &str, data: String| SseEvent { id: Some("a1".into()), event: name.into(), data };
        let hostile = crate::events::tests::data_naming(r"t\u001b]0;x\u0007");
        let line = event_row(&event("step.started", hostile), false);
        assert!(line.contains(r"t\x1b]0;x\x07") && line.contains("1/2 s") && line.ends_with("EXECUTING"), "{line}");
        assert!(!line.contains('\u{1b}'), "{line:?}");
        let missed = event_row(&SseEvent::missed("a".into(), "b".into()), false);
        assert_eq!(missed.trim(), "missed");
        let other = event_row(&event("step.started", r#"{"task_id":"t1"}"#.into()), false);
        assert_eq!(other.trim(), "step.started");
    }

    #[test]
    fn only_what_may_pass_is_tried_again() {
        assert!(retryable(&Failure::Network("reset".into())));
        let api =
            |status| Failure::Api { status, code: String::new(), message: String::new(), request_id: None, hint: None };
        assert!(retryable(&api(503)) && retryable(&api(429)));
        assert!(!retryable(&api(404)) && !retryable(&api(400)) && !retryable(&api(401)));
    }
}
