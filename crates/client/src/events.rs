//! Following an instance's task event stream (the server's SSE extension, docs/events.md):
//! [`EventReader`] reads it one event at a time. `tasks wait` uses it to look at its task as
//! soon as something happens to it ([`EventReader::heard`]; a server without the stream, or one
//! that refuses another stream, leaves the wait polling); `tasks events` prints every event and
//! resumes from the last id it printed when the stream ends or breaks ([`super::follow`]).

use std::time::Duration;

use kafka_tasks_domain::events::EventData;
use kafka_tasks_wire::events::{MISSED, SseEvent};

use super::Failure;
use super::http::Api;

/// The longest a stream is kept open by this client; the server ends streams sooner anyway.
const STREAM_TIMEOUT: Duration = Duration::from_secs(3600);
/// The most bytes of one event kept while it arrives (events are a few hundred bytes).
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// An open stream of an instance's task events.
pub struct EventReader {
    res: reqwest::Response,
    buf: String,
}

/// What the stream gave within the time asked.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Event(SseEvent),
    /// Nothing in time.
    Quiet,
    /// The stream ended or broke (an event cut short is dropped: it is sent again on resuming).
    Closed,
}

/// What the stream said about a task within the time asked.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// Something happened to the task (or events were missed): look at it now.
    Task,
    /// Nothing about the task in time.
    Quiet,
    /// The stream ended or broke: poll from now on.
    Closed,
}

impl EventReader {
    /// Opens the stream of `instance`'s task events from now on; `None` when the server does
    /// not serve it (an older server), refuses it (too many streams, throttled), or cannot be
    /// reached: the caller polls instead.
    pub async fn open(api: &Api, instance: &str) -> Option<Self> {
        Self::connect(api, instance, None).await.ok()
    }

    /// Opens the stream of `instance`'s task events just after the event `after` (`0`: the
    /// whole log kept), or from now on. The server's refusal is its DMS error; an answer that
    /// is not an event stream is a [`Failure::Network`].
    pub async fn connect(api: &Api, instance: &str, after: Option<&str>) -> Result<Self, Failure> {
        let path = api.instance_path(instance, "/tasks/events");
        let query: Vec<(&str, String)> = after.map(|a| ("after", a.to_owned())).into_iter().collect();
        let res = api.open_stream(&path, &query, STREAM_TIMEOUT).await?;
        let sse = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !sse {
            return Err(Failure::Network(format!("GET {path}: the answer is not an event stream")));
        }
        Ok(EventReader { res, buf: String::new() })
    }

    /// The next event, waiting until `deadline` at most; comments (`: keep-alive`) are skipped.
    pub async fn next(&mut self, deadline: tokio::time::Instant) -> Next {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return Next::Event(event);
                }
            }
            if self.buf.len() > MAX_EVENT_BYTES {
                return Next::Closed;
            }
            match tokio::time::timeout_at(deadline, self.res.chunk()).await {
                Err(_) => return Next::Quiet,
                Ok(Ok(Some(chunk))) => match std::str::from_utf8(&chunk) {
                    Ok(text) => self.buf.push_str(&text.replace("\r\n", "\n")),
                    Err(_) => return Next::Closed,
                },
                Ok(_) => return Next::Closed,
            }
        }
    }

    /// Waits up to `within` for an event about `task`.
    pub async fn heard(&mut self, task: &str, within: Duration) -> Heard {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.next(deadline).await {
                Next::Event(e) if about(&e, task) => return Heard::Task,
                Next::Event(_) => {}
                Next::Quiet => return Heard::Quiet,
                Next::Closed => return Heard::Closed,
            }
        }
    }
}

/// An SSE message's fields; `None` for a comment or a message without an event name.
fn parse(block: &str) -> Option<SseEvent> {
    let (mut id, mut event, mut data) = (None, None, String::new());
    for line in block.lines() {
        let field = |name: &str| line.strip_prefix(name).map(|v| v.strip_prefix(' ').unwrap_or(v).to_owned());
        if let Some(v) = field("id:") {
            id = Some(v);
        } else if let Some(v) = field("event:") {
            event = Some(v);
        } else if let Some(v) = field("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(&v);
        }
    }
    Some(SseEvent { id, event: event?, data })
}

/// Whether an event is about `task`: its data names it, or it is `missed`.
fn about(e: &SseEvent, task: &str) -> bool {
    e.event == MISSED || serde_json::from_str::<EventData>(&e.data).is_ok_and(|d| d.task_id == task)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::{SseEvent, about, parse};

    fn about_block(block: &str, task: &str) -> bool {
        parse(block).is_some_and(|e| about(&e, task))
    }

    /// An event's data as the server writes it (every member of `EventData`), naming `task` as
    /// JSON text (`\u` escapes allowed).
    pub(crate) fn data_naming(task: &str) -> String {
        format!(
            r#"{{"task_id":"{task}","instance_id":"i1","name":"restart","status":"EXECUTING","step":{{"index":0,"name":"s","status":"IN_PROGRESS"}},"steps_done":0,"steps":2,"progress":10,"created_at":"2026-11-28T09:12:40.000Z","updated_at":"2026-11-28T09:12:41.023Z","at":"2026-11-28T09:12:41.023Z"}}"#
        )
    }

    #[test]
    fn only_events_about_the_task_or_missed_ones_count() {
        let block = |id: &str, task: &str| format!("id: {id}\nevent: step.started\ndata: {}\n\n", data_naming(task));
        assert!(about_block(&block("3", "t1"), "t1"));
        assert!(!about_block(&block("4", "t2"), "t1"));
        // The id is read as JSON text, escapes and all.
        assert!(about_block(&block("5", r"t\u0031"), "t1"));
        assert!(about_block("event: missed\ndata: {\"after\":1}\n\n", "t1"));
        assert!(!about_block(": keep-alive\n\n", "t1"));
        assert!(!about_block("event: x\ndata: not json\n\n", "t1"));
        // Data of another shape names no task.
        assert!(!about_block("id: 6\nevent: step.started\ndata: {\"task_id\":\"t1\"}\n\n", "t1"));
    }

    #[test]
    fn a_message_keeps_its_fields_as_sent() {
        let e = parse("id: 9b1d\nevent: task.created\ndata: {\"a\":1}\n\n");
        let want = SseEvent { id: Some("9b1d".into()), event: "task.created".into(), data: "{\"a\":1}".into() };
        assert_eq!(e, Some(want));
        assert_eq!(parse(": keep-alive\n\n"), None);
        let missed = parse("event: missed\ndata: {\"after\":\"x\"}\n\n");
        assert_eq!(missed.map(|m| m.id), Some(None));
    }
}
