//! The task event log checked from both ends, for the tests that kill processes under load: a
//! consumer that follows a project's event stream through its own disconnects and the kills,
//! resuming with `Last-Event-ID` (an opaque string to it), and two pure checks over recorded
//! data: what the consumer received against the log as the database holds it
//! ([`stream_problems`]), and the log against the tasks the database holds and the clients were
//! told about ([`log_problems`]). Shared by the crash loop (SQLite) and the cluster test
//! (PostgreSQL); the planted-fault tests of the crash binary feed the checks doctored input.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use super::rng::Rng;
use super::serve::Api;

/// One event as the consumer received it. `kind` is the SSE `event:` field (`missed` included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub id: Option<String>,
    pub kind: String,
    pub data: String,
}

/// One row of the event log as the database holds it; a log is given in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub kind: String,
    pub task_id: String,
    pub instance_id: String,
    pub data: String,
}

impl Logged {
    /// The events of one stored row, in order: a row holds the events of one write about one
    /// task (`n` of them; both engines). `None` for a row the log never writes.
    pub fn of_row(kind: String, task_id: &str, instance_id: &str, data: String, n: i64) -> Option<Vec<Logged>> {
        let events = kafka_tasks_domain::events::unpack(usize::try_from(n).ok()?, kind, data)?;
        let logged =
            |(kind, data)| Logged { kind, task_id: task_id.to_owned(), instance_id: instance_id.to_owned(), data };
        Some(events.into_iter().map(logged).collect())
    }
}

/// One task as the database holds it after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub instance_id: String,
    pub name: String,
    pub status: String,
    /// Epoch milliseconds.
    pub created_at: i64,
    /// Whether ListBackgroundTasks shows it.
    pub in_background: bool,
}

/// At most this many problems are spelt out per check; the rest are counted.
const SPELT_OUT: usize = 15;

fn capped(mut v: Vec<String>) -> Vec<String> {
    if v.len() > SPELT_OUT {
        let more = v.len() - SPELT_OUT;
        v.truncate(SPELT_OUT);
        v.push(format!("… and {more} more of the same check"));
    }
    v
}

/// What identifies an event whatever its wire id: its kind and its data, as JSON (the data
/// carries the task, the step, the status and the instant of the change).
fn content(kind: &str, data: &str) -> (String, Value) {
    (kind.to_owned(), serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_owned())))
}

fn describe(kind: &str, data: &Value) -> String {
    let step = data["step"]["index"].as_u64().map(|i| format!(" {i}")).unwrap_or_default();
    let task = data["task_id"].as_str().unwrap_or("?");
    let status = data["status"].as_str().unwrap_or("?");
    format!("{kind}{step} of task {task} ({status}, at {})", data["at"].as_str().unwrap_or("?"))
}

/// What a consumer that opened its stream "from now on" and then resumed after each event it
/// received must have got: every event of `log` from where its stream started, in log order,
/// each once, and no `missed` (the run does not prune the log). `start` brackets where the
/// stream started: the log's length just before it was opened and just after it answered.
pub fn stream_problems(received: &[Received], log: &[Logged], start: (usize, usize)) -> Vec<String> {
    let mut v = vec![];
    let (lo, hi) = (start.0.min(log.len()), start.1.min(log.len()).max(start.0.min(log.len())));
    let logged: Vec<(String, Value)> = log.iter().map(|l| content(&l.kind, &l.data)).collect();
    let mut got = vec![];
    for (n, r) in received.iter().enumerate() {
        if r.kind == "missed" {
            v.push(format!("received #{n} is `missed` ({}), yet the log was never pruned", r.data));
        } else {
            got.push((n, content(&r.kind, &r.data)));
        }
    }
    let Some((n0, first)) = got.first() else {
        if log.len() > hi {
            let (kind, data) = &logged[hi];
            v.push(format!(
                "received nothing, yet {} events were logged after the stream started, the first {}",
                log.len() - hi,
                describe(kind, data)
            ));
        }
        return capped(v);
    };
    // Where the first event received lies in the log: between the two ends of the bracket.
    let mut next = match logged.iter().position(|e| e == first) {
        None => {
            v.push(format!("received #{n0}, {}, is not in the log", describe(&first.0, &first.1)));
            hi
        }
        Some(k) if k < lo => {
            v.push(format!(
                "received #{n0}, {}, was logged before the stream started (log position {k}, stream from {lo})",
                describe(&first.0, &first.1)
            ));
            k
        }
        Some(k) if k > hi => {
            for (kind, data) in &logged[hi..k] {
                v.push(format!("never received (before the first event): {}", describe(kind, data)));
            }
            k
        }
        Some(k) => k,
    };
    let from = next;
    for (n, e) in &got {
        if logged.get(next) == Some(e) {
            next += 1;
            continue;
        }
        if logged[from..next].contains(e) {
            v.push(format!("received #{n}, {}, again (or out of order)", describe(&e.0, &e.1)));
        } else if let Some(skip) = logged[next..].iter().position(|x| x == e) {
            for (kind, data) in &logged[next..next + skip] {
                v.push(format!("never received (a gap before #{n}): {}", describe(kind, data)));
            }
            next += skip + 1;
        } else if logged[..from].contains(e) {
            v.push(format!("received #{n}, {}, was logged before the stream started", describe(&e.0, &e.1)));
        } else {
            v.push(format!("received #{n}, {}, is not in the log", describe(&e.0, &e.1)));
        }
    }
    for (kind, data) in &logged[next.min(logged.len())..] {
        v.push(format!("never received (after the last event received): {}", describe(kind, data)));
    }
    capped(v)
}

/// What the event log must agree with: the database's tables after the run and what the
/// clients were told.
#[derive(Debug, Default, Clone)]
pub struct Truth {
    /// Every task in the database after the run.
    pub tasks: HashMap<String, TaskRow>,
    /// Every instance in the database after the run.
    pub instances: HashSet<String>,
    /// Instances whose creation was acknowledged.
    pub acked_instances: HashSet<String>,
    /// Tasks whose submission was acknowledged (`job_id`, `schedule_id`).
    pub acked: HashSet<String>,
    /// Tasks deleted with a 204: id → their status when deleted.
    pub deleted: HashMap<String, String>,
    /// Tasks whose delete got no answer.
    pub unsure_deleted: HashSet<String>,
}

/// One event per committed change: every task created has one `task.created`, first; every
/// task that ended SUCCESS or FAILED one `task.finished` with that status, and nothing but its
/// deletion after it; a cancelled one none; every step at most one `step.finished`; every task
/// deleted with a 204 one `task.deleted`, last, and a task still stored none; and no event is
/// about a task that never existed (not stored, never acknowledged, not on an instance that
/// was removed with its tasks).
pub fn log_problems(log: &[Logged], truth: &Truth) -> Vec<String> {
    let mut v = vec![];
    let mut by_task: HashMap<&str, Vec<(usize, &str, Value)>> = HashMap::new();
    for (n, row) in log.iter().enumerate() {
        let data: Value = serde_json::from_str(&row.data).unwrap_or(Value::Null);
        if data["task_id"] != row.task_id.as_str() || data["instance_id"] != row.instance_id.as_str() {
            v.push(format!(
                "log row {n}: {} of task {} on {}, yet its data says {}",
                row.kind, row.task_id, row.instance_id, row.data
            ));
        }
        by_task.entry(row.task_id.as_str()).or_default().push((n, row.kind.as_str(), data));
    }
    let count = |events: &[(usize, &str, Value)], kind: &str| events.iter().filter(|e| e.1 == kind).count();

    let mut ids: Vec<&&str> = by_task.keys().collect();
    ids.sort();
    for id in ids {
        let events = &by_task[*id];
        let instance = log[events[0].0].instance_id.as_str();
        let existed = truth.tasks.contains_key(*id)
            || truth.acked.contains(*id)
            || truth.deleted.contains_key(*id)
            || truth.unsure_deleted.contains(*id)
            || (truth.acked_instances.contains(instance) && !truth.instances.contains(instance));
        if !existed {
            let kinds: Vec<&str> = events.iter().map(|e| e.1).collect();
            v.push(format!("events {kinds:?} are about task {id} on {instance}, which never existed"));
        }
        if events[0].1 != "task.created" || count(events, "task.created") != 1 {
            let kinds: Vec<&str> = events.iter().map(|e| e.1).collect();
            v.push(format!("task {id}: its events are {kinds:?}, not one task.created first"));
        }
        if let Some(end) = events.iter().position(|e| e.1 == "task.finished") {
            let after: Vec<&str> = events[end + 1..].iter().map(|e| e.1).filter(|k| *k != "task.deleted").collect();
            if count(events, "task.finished") > 1 || !after.is_empty() {
                let kinds: Vec<&str> = events.iter().map(|e| e.1).collect();
                v.push(format!("task {id}: events after its end: {kinds:?}"));
            }
        }
        if let Some(gone) = events.iter().position(|e| e.1 == "task.deleted")
            && (gone + 1 != events.len() || count(events, "task.deleted") > 1)
        {
            let kinds: Vec<&str> = events.iter().map(|e| e.1).collect();
            v.push(format!("task {id}: events after its deletion: {kinds:?}"));
        }
        let mut finished_steps: HashMap<u64, usize> = HashMap::new();
        for e in events.iter().filter(|e| e.1 == "step.finished") {
            *finished_steps.entry(e.2["step"]["index"].as_u64().unwrap_or(u64::MAX)).or_default() += 1;
        }
        for (step, n) in finished_steps.iter().filter(|(_, n)| **n > 1) {
            v.push(format!("task {id}: step {step} finished {n} times"));
        }
    }

    let none = vec![];
    let events_of = |id: &str| by_task.get(id).unwrap_or(&none);
    let mut stored: Vec<(&String, &TaskRow)> = truth.tasks.iter().collect();
    stored.sort_by_key(|(id, _)| *id);
    for (id, t) in stored {
        let events = events_of(id);
        if count(events, "task.created") == 0 {
            v.push(format!("{} task {id} ({}) is stored, yet no task.created was logged", t.name, t.status));
        }
        if count(events, "task.deleted") > 0 {
            v.push(format!("{} task {id} is stored, yet a task.deleted was logged", t.name));
        }
        let ends: Vec<&Value> = events.iter().filter(|e| e.1 == "task.finished").map(|e| &e.2).collect();
        let ended_once = |status: &str| ends.len() == 1 && ends[0]["status"] == status;
        let agrees = match t.status.as_str() {
            "SUCCESS" | "FAILED" => ended_once(&t.status),
            "CANCELLED" => ends.is_empty() && events.last().is_some_and(|e| e.2["status"] == "CANCELLED"),
            _ => ends.is_empty(),
        };
        if !agrees {
            let said: Vec<String> =
                events.iter().map(|e| format!("{} {}", e.1, e.2["status"].as_str().unwrap_or("?"))).collect();
            v.push(format!("{} task {id} is stored {}, yet its events are {said:?}", t.name, t.status));
        }
    }
    let mut acked: Vec<&String> = truth.acked.iter().collect();
    acked.sort();
    for id in acked {
        if count(events_of(id), "task.created") == 0 {
            v.push(format!("acknowledged task {id} has no task.created"));
        }
    }
    let mut deleted: Vec<(&String, &String)> = truth.deleted.iter().collect();
    deleted.sort();
    for (id, status) in deleted {
        let events = events_of(id);
        if count(events, "task.deleted") != 1 {
            v.push(format!("task {id}, deleted with a 204, has {} task.deleted", count(events, "task.deleted")));
        }
        let ends = count(events, "task.finished");
        if matches!(status.as_str(), "SUCCESS" | "FAILED") && ends != 1 {
            v.push(format!("task {id}, {status} when deleted with a 204, has {ends} task.finished"));
        }
    }
    capped(v)
}

/// What a consumer did and got.
#[derive(Debug, Default)]
pub struct Consumed {
    pub received: Vec<Received>,
    /// The log's length just before the stream that received the first event was opened
    /// ("from now on", without a resume point) and just after it answered.
    pub start: (usize, usize),
    pub streams: usize,
    /// Streams the consumer closed itself.
    pub dropped: usize,
    /// Streams that ended or broke under it (the kills).
    pub cut: usize,
    /// Streams resumed with `?after=` instead of `Last-Event-ID`.
    pub by_query: usize,
    /// Answers no stream should get (anything but 200 and "later").
    pub problems: Vec<String>,
}

/// Where and how a consumer reads.
pub struct Follow {
    /// The stream's path, e.g. `/v2/{project}/tasks/events`.
    pub path: String,
    /// The processes it may read from; empty while none is up.
    pub servers: watch::Receiver<Vec<Api>>,
    /// The length of the log the stream reads, read from the database itself (`None` when it
    /// cannot be read: the start is then bracketed as loosely as can be).
    pub log_len: Arc<dyn Fn() -> Option<usize> + Send + Sync>,
    /// Set once the log has stopped growing: the consumer then reads to its end and stops.
    pub stop: watch::Receiver<bool>,
    /// Told when the first stream has answered.
    pub opened: Option<tokio::sync::oneshot::Sender<()>>,
    pub rng: Rng,
}

/// After the stop, the consumer is done once it holds as many events as the log can owe it, or
/// else once no event came for this long.
const CAUGHT_UP: Duration = Duration::from_secs(1);
/// After the stop, the consumer gives up this long after its last event or stream opened.
const GIVE_UP: Duration = Duration::from_secs(30);

/// Follows the stream: opens it from now on, closes it at random moments (after some events, or
/// some time), reconnects to any of the servers with the last id received, waits out the kills;
/// after the stop, reads until it has every event the log holds past where its stream started
/// (stopping there cannot hide a fault: a gap never gets that far, a repeat leaves the end
/// unread), or until the stream has been quiet for a second.
pub async fn consume(mut f: Follow) -> Consumed {
    let mut out = Consumed::default();
    let Ok(http) = kafka_tasks_platform::tls::client_builder(None)
        .expect("client builder")
        .connect_timeout(Duration::from_secs(2))
        .build()
    else {
        out.problems.push("no HTTP client".into());
        return out;
    };
    let mut last_id: Option<String> = None;
    // The latest of: the stop seen, an event received.
    let mut lively: Option<Instant> = None;
    // After the stop: the log's final length.
    let mut last_len: Option<Option<usize>> = None;
    let mut events = 0;
    let caught_up = |start: (usize, usize), events: usize, len: Option<usize>| {
        len.is_some_and(|n| events >= n.saturating_sub(start.0).max(1))
    };
    loop {
        if *f.stop.borrow() {
            let len = *last_len.get_or_insert_with(|| (f.log_len)());
            if caught_up(out.start, events, len) {
                return out;
            }
            let since = *lively.get_or_insert_with(Instant::now);
            if since.elapsed() > GIVE_UP {
                out.problems.push(format!("no stream could be read for {GIVE_UP:?} after the stop"));
                return out;
            }
        }
        let servers = f.servers.borrow().clone();
        if servers.is_empty() {
            tokio::select! {
                _ = f.servers.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            continue;
        }
        let api = f.rng.pick(&servers);
        let url_safe = |id: &str| id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
        let (path, header) = match &last_id {
            Some(id) if url_safe(id) && f.rng.percent(25) => {
                out.by_query += 1;
                (format!("{}?after={id}", f.path), None)
            }
            other => (f.path.clone(), other.clone()),
        };
        let from_now = last_id.is_none();
        let before = from_now.then(|| (f.log_len)());
        let mut req = http.get(format!("{}{path}", api.base));
        for (k, v) in api.signed_headers("GET", &path, b"") {
            req = req.header(k, v);
        }
        if let Some(id) = &header {
            req = req.header("last-event-id", id.as_str());
        }
        let mut res = match tokio::time::timeout(Duration::from_secs(5), req.send()).await {
            Ok(Ok(res)) => res,
            _ => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let status = res.status().as_u16();
        if status != 200 {
            // A refused resume is retried (and so repeated) until the stop: the first few say it.
            if status != 429 && status != 503 && out.problems.len() < SPELT_OUT {
                let text = res.text().await.unwrap_or_default();
                out.problems.push(format!("GET {path} (Last-Event-ID {header:?}) → {status} {text}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        out.streams += 1;
        if lively.is_some() {
            lively = Some(Instant::now());
        }
        if let Some(before) = before {
            out.start = (before.unwrap_or(0), (f.log_len)().unwrap_or(usize::MAX));
        }
        if let Some(opened) = f.opened.take() {
            let _ = opened.send(());
        }
        let budget = f.rng.range(1, 60) as usize;
        let until = Instant::now() + Duration::from_millis(f.rng.range(30, 1_500));
        let mut here = 0;
        let mut buf: Vec<u8> = vec![];
        loop {
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = buf.drain(..end + 2).collect();
                let Some(event) = parse_block(&String::from_utf8_lossy(&block)) else { continue };
                if event.id.is_none() && event.kind != "missed" && out.problems.len() < SPELT_OUT {
                    out.problems.push(format!("an event without an id: {event:?}"));
                }
                if let Some(id) = &event.id {
                    last_id = Some(id.clone());
                }
                events += usize::from(event.kind != "missed");
                out.received.push(event);
                here += 1;
                if lively.is_some() {
                    lively = Some(Instant::now());
                }
            }
            if *f.stop.borrow() {
                let len = *last_len.get_or_insert_with(|| (f.log_len)());
                let since = *lively.get_or_insert_with(Instant::now);
                if caught_up(out.start, events, len) || since.elapsed() > CAUGHT_UP {
                    return out;
                }
            } else if last_id.is_some() && (here >= budget || Instant::now() >= until) {
                out.dropped += 1;
                break;
            }
            match tokio::time::timeout(Duration::from_millis(50), res.chunk()).await {
                Err(_) => {}
                Ok(Ok(Some(chunk))) => buf.extend_from_slice(&chunk),
                Ok(_) => {
                    out.cut += 1;
                    break;
                }
            }
        }
    }
}

/// One SSE message; `None` for a comment (keep-alive) alone.
fn parse_block(block: &str) -> Option<Received> {
    let (mut id, mut kind, mut data, mut any) = (None, String::new(), String::new(), false);
    for line in block.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "id" => id = Some(value.to_owned()),
            "event" => kind = value.to_owned(),
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {}
        }
    }
    any.then_some(Received { id, kind, data })
}
