//! Following an instance's task event stream (the server's SSE extension), for `tasks wait`:
//! a reader that says when something happened to a task, so that the wait looks at the task
//! at once instead of on its next poll. A server without the stream (or one that refuses
//! another stream) leaves the wait polling, as before.

use std::time::Duration;

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

/// What the stream said within the time asked.
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
        let path = api.instance_path(instance, "/tasks/events");
        let res = api.open_stream(&path, STREAM_TIMEOUT).await.ok()?;
        let sse = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        (res.status().is_success() && sse).then_some(EventReader { res, buf: String::new() })
    }

    /// Waits up to `within` for an event about `task`.
    pub async fn heard(&mut self, task: &str, within: Duration) -> Heard {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if about(&block, task) {
                    return Heard::Task;
                }
            }
            if self.buf.len() > MAX_EVENT_BYTES {
                return Heard::Closed;
            }
            match tokio::time::timeout_at(deadline, self.res.chunk()).await {
                Err(_) => return Heard::Quiet,
                Ok(Ok(Some(chunk))) => match std::str::from_utf8(&chunk) {
                    Ok(text) => self.buf.push_str(&text.replace("\r\n", "\n")),
                    Err(_) => return Heard::Closed,
                },
                Ok(_) => return Heard::Closed,
            }
        }
    }
}

/// Whether an SSE message is about `task`: an event whose data names it, or `missed`.
fn about(block: &str, task: &str) -> bool {
    let mut event = "";
    let mut data = String::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim());
        }
    }
    if event == "missed" {
        return true;
    }
    serde_json::from_str::<serde_json::Value>(&data)
        .ok()
        .is_some_and(|d| d.get("task_id").and_then(|t| t.as_str()) == Some(task))
}

#[cfg(test)]
mod tests {
    use super::about;

    #[test]
    fn only_events_about_the_task_or_missed_ones_count() {
        assert!(about("id: 3\nevent: step.started\ndata: {\"task_id\":\"t1\"}\n\n", "t1"));
        assert!(!about("id: 4\nevent: step.started\ndata: {\"task_id\":\"t2\"}\n\n", "t1"));
        assert!(about("event: missed\ndata: {\"after\":1}\n\n", "t1"));
        assert!(!about(": keep-alive\n\n", "t1"));
        assert!(!about("data: not json\n\n", "t1"));
    }
}
