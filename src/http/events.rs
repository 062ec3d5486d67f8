//! The task event streams (an extension; DMS has none): Server-Sent Events read from the
//! durable event log ([`crate::storage::events`]).
//!
//! A stream reads the log in bounded pages, one page at a time and only when the client has
//! taken the previous one (the response body is pulled by hyper as the socket drains), so a
//! slow client costs one page of memory, never a backlog. Between pages it holds no database
//! connection: it waits for the store's wake-up signal (a commit in this process, or a NOTIFY
//! from another on PostgreSQL), a poll interval as the fallback, or the server's shutdown.
//! Streams are capped per credential and in all; each ends after a set lifetime so that a
//! revoked key or an expired token stops reading (the client resumes with `Last-Event-ID`).
//!
//! The log's positions are global (one sequence for every project, so that PostgreSQL's
//! out-of-order commits can be waited for), and showing them would let a project read every
//! other project's activity from the gaps between its own ids. So a stream shows each position
//! sealed under a key of its project's own ([`EventIds`]): 32 hex digits that say nothing of the
//! position, and that only the same project's streams accept back. `0` stays the log's start.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{Caller, InstancePath, ProjectPath, QueryMap};
use super::routes::{Op, op};
use crate::domain::Action;
use crate::storage::events::{EventCursor, EventScope, EventStart, EventStore, LoggedEvent};
use crate::wire::events::SseEvent;
use crate::wire::from_query;
use crate::wire::task::{EventQuery, LastEventId};

/// Events read from the log at once by one stream.
pub const PAGE: usize = 100;
/// How soon a stream reads again when committed events wait behind a transaction still running.
const PENDING_RETRY: Duration = Duration::from_millis(5);
/// How long a stream waits after the database failed before it reads again.
const ERROR_RETRY: Duration = Duration::from_secs(1);

/// The event streams' settings (flags of `kafka-tasks serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct EventArgs {
    /// A comment line is sent on an idle event stream this often (ms), so that proxies and
    /// clients see it alive.
    #[arg(long, env = "KAFKA_TASKS_EVENT_KEEPALIVE_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub event_keepalive_ms: u64,

    /// An idle stream reads the event log at least this often (ms), whatever the wake-ups say.
    #[arg(long, env = "KAFKA_TASKS_EVENT_POLL_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub event_poll_ms: u64,

    /// Event streams open at once in this process; more are answered 429.
    #[arg(long, env = "KAFKA_TASKS_EVENT_STREAMS_MAX", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub event_streams_max: u64,

    /// Event streams open at once per access key (or per token's user); more are answered 429.
    #[arg(long, env = "KAFKA_TASKS_EVENT_STREAMS_PER_KEY", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub event_streams_per_key: u64,

    /// Event streams open at once per project, whatever its keys and users; more are answered
    /// 429. Keeps one project's many keys from taking every stream of the process from the others.
    #[arg(long, env = "KAFKA_TASKS_EVENT_STREAMS_PER_PROJECT", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub event_streams_per_project: u64,

    /// A stream ends after this long (s); the client reconnects with `Last-Event-ID` and is
    /// authenticated again, so a revoked key or an expired token stops reading.
    #[arg(long, env = "KAFKA_TASKS_EVENT_STREAM_LIFETIME_SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub event_stream_lifetime_secs: u64,

    /// Events older than this (s) are pruned from the log.
    #[arg(long, env = "KAFKA_TASKS_EVENT_RETENTION_SECS", default_value_t = 7 * 86_400, value_parser = clap::value_parser!(u64).range(1..=10 * 365 * 86_400))]
    pub event_retention_secs: u64,

    /// The log keeps about this many of the newest events at most.
    #[arg(long, env = "KAFKA_TASKS_EVENT_RETENTION_MAX", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub event_retention_max: u64,

    /// How often the log is pruned (ms), in batches of 1,000 events.
    #[arg(long, env = "KAFKA_TASKS_EVENT_PRUNE_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub event_prune_ms: u64,
}

impl EventArgs {
    pub fn retention(&self) -> crate::storage::events::EventRetention {
        crate::storage::events::EventRetention {
            max_age_ms: (self.event_retention_secs as i64).saturating_mul(1000),
            max_events: self.event_retention_max as i64,
        }
    }
}

/// How long past its lifetime a stream's connection is closed if the stream has not ended itself.
const LIFETIME_GRACE: Duration = Duration::from_secs(1);

/// The open streams of this process and their limits.
pub struct Streams {
    keep_alive: Duration,
    poll: Duration,
    lifetime: Duration,
    total: Arc<Semaphore>,
    per_key_max: usize,
    per_project_max: usize,
    /// Open streams per credential (`project/key`) and per project (`project`); an entry goes
    /// when its last stream ends, so the map holds at most twice as many entries as there are
    /// open streams.
    per_key: Mutex<HashMap<String, usize>>,
    shutdown: watch::Receiver<bool>,
}

impl Streams {
    pub fn new(args: &EventArgs, shutdown: watch::Receiver<bool>) -> Self {
        Streams {
            keep_alive: Duration::from_millis(args.event_keepalive_ms),
            poll: Duration::from_millis(args.event_poll_ms),
            lifetime: Duration::from_secs(args.event_stream_lifetime_secs),
            total: Arc::new(Semaphore::new(args.event_streams_max as usize)),
            per_key_max: args.event_streams_per_key as usize,
            per_project_max: args.event_streams_per_project as usize,
            per_key: Mutex::new(HashMap::new()),
            shutdown,
        }
    }

    /// A slot for one more stream of `key` in `project`, or `None` past any cap.
    fn admit(self: &Arc<Self>, project: &str, key: &str) -> Option<Slot> {
        let permit = self.total.clone().try_acquire_owned().ok()?;
        let mut open = self.per_key.lock().ok()?;
        let key = format!("{project}/{key}");
        let (of_key, of_project) = (open.get(&key).copied().unwrap_or(0), open.get(project).copied().unwrap_or(0));
        if of_key >= self.per_key_max || of_project >= self.per_project_max {
            return None;
        }
        open.insert(key.clone(), of_key + 1);
        open.insert(project.to_owned(), of_project + 1);
        Some(Slot { streams: self.clone(), counted: [key, project.to_owned()], _permit: permit })
    }
}

/// One open stream's place under the caps, given back when the stream is dropped (the client
/// went away, the lifetime ended, or the server shuts down).
struct Slot {
    streams: Arc<Streams>,
    /// The credential's and the project's entries it counts in.
    counted: [String; 2],
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Ok(mut open) = self.streams.per_key.lock() else { return };
        for entry in &self.counted {
            if let Some(n) = open.get_mut(entry) {
                *n -= 1;
                if *n == 0 {
                    open.remove(entry);
                }
            }
        }
    }
}

pub fn operations() -> Vec<Op> {
    vec![op(routes!(project_events)), op(routes!(instance_events))]
}

/// `GET /v2/{project_id}/tasks/events`: every task event of the project, as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/tasks/events",
    operation_id = "StreamProjectTaskEvents",
    tag = "Task events",
    params(ProjectPath, EventQuery, LastEventId),
    responses((status = 200, description = STREAM_DOC, content_type = "text/event-stream", body = SseEvent)),
)]
pub(super) async fn project_events(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(project): ProjectPath,
    QueryMap(q): QueryMap,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Action::GetBackgroundTask)?;
    open(&state, &caller, EventScope::Project(project), &q, &headers).await
}

/// `GET /v2/{project_id}/instances/{instance_id}/tasks/events`: the task events of one instance.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/tasks/events",
    operation_id = "StreamInstanceTaskEvents",
    tag = "Task events",
    params(InstancePath, EventQuery, LastEventId),
    responses((status = 200, description = STREAM_DOC, content_type = "text/event-stream", body = SseEvent)),
)]
pub(super) async fn instance_events(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    QueryMap(q): QueryMap,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Action::GetBackgroundTask)?;
    state.storage.instances.get_instance(&path.project, &path.instance).await?.ok_or(ApiError::NoInstance)?;
    open(&state, &caller, EventScope::Instance(path.project, path.instance), &q, &headers).await
}

const STREAM_DOC: &str = "A `text/event-stream` of task events (each message is an `SseEvent`; its `data` is \
     a JSON object, `EventData` for a task event). `id` is the event's place in the log, for `Last-Event-ID` or \
     `?after=`: 32 hex digits, opaque and the project's own; `0` is the log's start. A stream resumed from an event \
     the log no longer keeps starts with an event `missed` (no id; data `MissedData`): events in between are lost, \
     re-read the task lists. Comment lines (`: keep-alive`) are sent while idle. 429 when too many streams are \
     open (per key, or in all).";

/// A message of the stream as the SSE encoder sends it.
fn frame(e: SseEvent) -> Event {
    let frame = Event::default().event(e.event).data(e.data);
    match e.id {
        Some(id) => frame.id(id),
        None => frame,
    }
}

/// The event ids one project's streams show: each log position and a zero check block, as one
/// AES-128 block under the project's own key, in hex. The same position always shows the same
/// id (a browser's `Last-Event-ID` works as it should); an id of another project, or made up,
/// opens to a block whose check half is not zero, and is refused like any malformed id.
pub struct EventIds(aes_gcm::aes::Aes128);

impl EventIds {
    pub fn new(key: [u8; 16]) -> Self {
        use aes_gcm::aes::cipher::KeyInit;
        EventIds(aes_gcm::aes::Aes128::new(&key.into()))
    }

    /// The id shown for log position `position` (0, the log's start, shows as `0`).
    pub fn show(&self, position: i64) -> String {
        use aes_gcm::aes::cipher::BlockEncrypt;
        if position == 0 {
            return "0".to_owned();
        }
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&position.to_be_bytes());
        let mut block = block.into();
        self.0.encrypt_block(&mut block);
        hex::encode(block)
    }

    /// The log position behind an id this project's streams showed; `None` for anything else.
    pub fn open(&self, id: &str) -> Option<i64> {
        use aes_gcm::aes::cipher::BlockDecrypt;
        let id = id.trim();
        if id == "0" {
            return Some(0);
        }
        let mut block = [0u8; 16];
        hex::decode_to_slice(id, &mut block).ok()?;
        let mut block = block.into();
        self.0.decrypt_block(&mut block);
        let (position, check) = block.split_at(8);
        if check.iter().any(|b| *b != 0) {
            return None;
        }
        let position = i64::from_be_bytes(position.try_into().ok()?);
        (position > 0).then_some(position)
    }
}

/// Where the client asked to resume: `Last-Event-ID` (what browsers resend on reconnecting)
/// wins over `?after=`; neither means "from now on".
fn resume_point(q: &HashMap<String, String>, headers: &HeaderMap, ids: &EventIds) -> Result<Option<i64>, ApiError> {
    // A value that is not text is no id the stream showed.
    let header = headers.get("last-event-id").map(|v| v.to_str().unwrap_or_default().to_owned());
    if let Some(v) = (LastEventId { last_event_id: header }).last_event_id {
        return ids.open(&v).map(Some).ok_or(ApiError::InvalidParam("Last-Event-ID"));
    }
    match from_query::<EventQuery>(q)?.after {
        None => Ok(None),
        Some(s) => ids.open(&s).map(Some).ok_or(ApiError::InvalidParam("after")),
    }
}

async fn open(
    state: &AppState,
    caller: &Caller,
    scope: EventScope,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let ids = EventIds::new(state.auth.event_id_key(scope.project().as_str()));
    let after = resume_point(q, headers, &ids)?;
    let identity = &caller.0;
    let key = identity.access_key.as_deref().unwrap_or(identity.user_id.as_str());
    let slot = state.events.admit(identity.project_id.as_str(), key).ok_or(ApiError::Throttled(1))?;
    let store = state.storage.events.clone();
    let mut skip = std::collections::HashSet::new();
    let (cursor, first) = match store.event_start(after).await? {
        EventStart::Tail(c, seen) => {
            skip.extend(seen);
            (c, None)
        }
        EventStart::From(c) => (c, None),
        EventStart::Missed(c) => (c, Some(SseEvent::missed(ids.show(after.unwrap_or(0)), ids.show(c.id)))),
        EventStart::Unknown => {
            return Err(ApiError::InvalidParam(if headers.contains_key("last-event-id") {
                "Last-Event-ID"
            } else {
                "after"
            }));
        }
    };
    let streams = state.events.clone();
    let ends = tokio::time::Instant::now() + streams.lifetime;
    let reader = Reader {
        signal: store.event_signal(),
        store,
        scope,
        cursor,
        buf: VecDeque::new(),
        skip,
        first,
        shutdown: streams.shutdown.clone(),
        poll: streams.poll,
        ends,
        ids,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(reader, next);
    let mut res =
        Sse::new(stream).keep_alive(KeepAlive::new().interval(streams.keep_alive).text("keep-alive")).into_response();
    // Proxies must pass events on as they come (nginx buffers otherwise).
    res.headers_mut().insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    // The stream ends itself at its lifetime when its client reads; one that stops reading is
    // not polled, so the serve loop closes its connection (and frees its slot) by timer, shortly
    // after.
    res.extensions_mut().insert(super::serve::CloseConnectionAt(ends.into_std() + LIFETIME_GRACE));
    Ok(res)
}

/// One stream's state between events.
struct Reader {
    store: Arc<dyn EventStore>,
    scope: EventScope,
    cursor: EventCursor,
    /// The rest of the last page read (at most [`PAGE`]).
    buf: VecDeque<LoggedEvent>,
    /// Events that committed before a stream "from now" started (see [`EventStart::Tail`]).
    skip: std::collections::HashSet<i64>,
    first: Option<SseEvent>,
    signal: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    poll: Duration,
    ends: tokio::time::Instant,
    ids: EventIds,
    _slot: Slot,
}

/// The stream's next event: from the page in hand, else from the next page read, else after a
/// wake-up. `None` ends the stream (shutdown or lifetime).
async fn next(mut r: Reader) -> Option<(Result<Event, Infallible>, Reader)> {
    if let Some(e) = r.first.take() {
        return Some((Ok(frame(e)), r));
    }
    loop {
        if let Some(e) = r.buf.pop_front() {
            if !r.skip.is_empty() && r.skip.remove(&e.id) {
                continue;
            }
            let event = SseEvent::task(r.ids.show(e.id), e.kind, e.data);
            return Some((Ok(frame(event)), r));
        }
        if *r.shutdown.borrow() || tokio::time::Instant::now() >= r.ends {
            return None;
        }
        // Marked seen before reading: a commit during the read wakes the next wait.
        r.signal.borrow_and_update();
        let wait = match r.store.read_events(&r.scope, r.cursor, PAGE).await {
            Ok(page) => {
                r.cursor = page.next;
                if !page.events.is_empty() {
                    r.buf.extend(page.events);
                    continue;
                }
                if page.more {
                    // Another instance's events filled the read: read on (each read is
                    // bounded), letting the other tasks of this worker run in between.
                    tokio::task::yield_now().await;
                    continue;
                }
                if page.pending { PENDING_RETRY } else { r.poll }
            }
            Err(e) => {
                crate::limited!(warn, "event stream read", error = %e, "an event stream could not read the log");
                ERROR_RETRY
            }
        };
        let until = (tokio::time::Instant::now() + wait).min(r.ends);
        tokio::select! {
            changed = r.signal.changed() => {
                if changed.is_err() {
                    tokio::time::sleep_until(until).await;
                }
            }
            _ = tokio::time::sleep_until(until) => {}
            _ = r.shutdown.changed() => {}
        }
    }
}

/// Prunes the event log every `--event-prune-ms`, in batches of 1,000, until shutdown.
pub async fn prune_forever(
    state_store: Arc<dyn EventStore>,
    clock: crate::domain::Clock,
    args: EventArgs,
    mut stop: watch::Receiver<bool>,
) {
    const BATCH: usize = 1_000;
    let every = Duration::from_millis(args.event_prune_ms);
    let policy = args.retention();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
            // Moved forward (test control), events age at once.
            _ = clock.moved() => {}
        }
        if let Err(e) = prune_round(state_store.as_ref(), clock.now_ms(), policy, BATCH, &stop).await {
            crate::limited!(warn, "event prune", error = %e, "could not prune the event log");
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One round of pruning: batches of `batch` rows, a short pause between them (room for
/// requests), until a batch prunes less than a full one's worth or shutdown begins. Returns the
/// events pruned. A batch of rows holds at least as many events (a row may hold several), so a
/// full batch returns `batch` or more.
async fn prune_round(
    store: &dyn EventStore,
    now: i64,
    policy: crate::storage::events::EventRetention,
    batch: usize,
    stop: &watch::Receiver<bool>,
) -> crate::storage::StoreResult<u64> {
    let mut total = 0;
    loop {
        let n = store.prune_events(now, policy, batch).await?;
        total += n;
        if (n as usize) < batch || *stop.borrow() {
            return Ok(total);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::instance::{Instance, InstanceStatus, NewInstance};
    use crate::domain::operation::Operation;
    use crate::storage::events::EventRetention;
    use crate::storage::{NewTask, Storage, TaskBuilder};

    fn args() -> EventArgs {
        EventArgs {
            event_keepalive_ms: 15_000,
            event_poll_ms: 1_000,
            event_streams_max: 4,
            event_streams_per_key: 2,
            event_streams_per_project: 3,
            event_stream_lifetime_secs: 60,
            event_retention_secs: 60,
            event_retention_max: 1_000,
            event_prune_ms: 1_000,
        }
    }

    /// However far behind a client is, its stream holds one page of the log, read when the
    /// previous one is taken (a real SQLite store with 250 events).
    #[test]
    fn event_ids_open_only_to_their_own_project_and_hide_their_order() {
        let (mine, theirs) = (EventIds::new([1; 16]), EventIds::new([2; 16]));
        for position in [1, 2, 3, 1_000_000, i64::MAX] {
            let id = mine.show(position);
            assert_eq!(id.len(), 32);
            assert_eq!(mine.open(&id), Some(position));
            assert_eq!(theirs.open(&id), None, "another project's id opened");
        }
        assert_eq!(mine.show(0), "0");
        assert_eq!(mine.open("0"), Some(0));
        // Neighbouring positions share no visible structure (no prefix, no order).
        let (a, b) = (mine.show(41), mine.show(42));
        assert_ne!(a[..8], b[..8]);
        for bad in ["", "1", "-1", "zz", &"0".repeat(32), &"f".repeat(33), &mine.show(5)[..31]] {
            assert_eq!(mine.open(bad), None, "{bad:?}");
        }
    }

    /// A round goes on while batches come back full, counted in events: a batch of rows each
    /// holding a claim's several events prunes more events than it has rows (a real SQLite
    /// store: twelve instances created and run at once, a row of one and a row of several each).
    #[tokio::test]
    async fn a_round_prunes_every_full_batch_of_rows_holding_several_events() {
        use crate::domain::operation::{OpSet, StepContext};
        let dir = tempfile::tempdir().expect("dir");
        let storage = Storage::open(&format!("sqlite:{}", dir.path().join("e.db").display())).await.expect("store");
        let project: crate::domain::ProjectId = "0123456789abcdef0123456789abcdef".parse().expect("project");
        for i in 0..12 {
            let new = NewInstance { name: format!("k{i}"), ..NewInstance::example() };
            let inst = Instance::create(project.clone(), &new, "u", "n", 1);
            let create = NewTask::new(&inst, Operation::Restart, ("u", "n"), 1, None, 0.0);
            storage.instances.create_instance(inst, create, None).await.expect("instance");
        }
        let ctx = StepContext { storage_pool_gb: 10_000, executed: OpSet::EMPTY, stepwise: false };
        let at = crate::domain::Timestamp::from_ms(2);
        let claimed = storage.engine.claim("w", at, Duration::from_secs(60), 100, ctx).await.expect("claim");
        assert_eq!(claimed.len(), 12);
        let scope = EventScope::Project(project);
        let logged = storage.events.read_events(&scope, EventCursor::default(), 1_000).await.expect("read");
        // Each creation's `task.created`, then each claim's row of several.
        assert!(logged.events.len() > 12 * 2, "rows of several: {}", logged.events.len());
        let all = EventRetention { max_age_ms: 0, max_events: 0 };
        let stop = watch::channel(false).1;
        let pruned = prune_round(storage.events.as_ref(), i64::MAX / 4, all, 4, &stop).await.expect("prune");
        assert_eq!(pruned as usize, logged.events.len(), "every event, counted once");
        let left = storage.events.read_events(&scope, EventCursor::default(), 100).await;
        assert_eq!(left.expect("read").events, vec![], "one round prunes the whole log");
    }

    #[tokio::test]
    async fn a_stream_holds_at_most_one_page_whatever_the_backlog() {
        let dir = tempfile::tempdir().expect("dir");
        let storage = Storage::open(&format!("sqlite:{}", dir.path().join("e.db").display())).await.expect("store");
        let project: crate::domain::ProjectId = "0123456789abcdef0123456789abcdef".parse().expect("project");
        let new = NewInstance { name: "k".into(), ..NewInstance::example() };
        let mut inst = Instance::create(project.clone(), &new, "u", "n", 1);
        inst.status = InstanceStatus::Running;
        let create = NewTask::new(&inst, Operation::Restart, ("u", "n"), 1, None, 1.0);
        storage.instances.create_instance(inst.clone(), create, None).await.expect("instance");
        // Scheduled tasks take no lock: 249 more `task.created` events.
        for n in 0..249 {
            let t = NewTask::new(&inst, Operation::Restart, ("u", "n"), 2 + n, Some(i64::MAX / 2), 1.0);
            let stored = storage.instances.submit(&project, &inst.id, TaskBuilder::ready(t), None).await;
            assert!(matches!(stored, Ok(Ok(_))), "{stored:?}");
        }
        let streams = Arc::new(Streams::new(&args(), watch::channel(false).1));
        let slot = streams.admit("p", "k").expect("a slot");
        let store = storage.events.clone();
        let mut reader = Reader {
            signal: store.event_signal(),
            store,
            scope: EventScope::Project(project),
            cursor: EventCursor::default(),
            buf: VecDeque::new(),
            skip: Default::default(),
            first: None,
            shutdown: streams.shutdown.clone(),
            poll: Duration::from_secs(1),
            ends: tokio::time::Instant::now() + Duration::from_secs(60),
            ids: EventIds::new([7; 16]),
            _slot: slot,
        };
        let mut seen = 0;
        for page in 0..3 {
            let (_, r) = next(reader).await.expect("an event");
            reader = r;
            seen += 1;
            let held = reader.buf.len();
            assert_eq!(held, if page < 2 { PAGE - 1 } else { 250 - 2 * PAGE - 1 }, "page {page}");
            for _ in 0..held {
                let (_, r) = next(reader).await.expect("an event");
                reader = r;
                seen += 1;
            }
        }
        assert_eq!(seen, 250);
        // Caps: a second stream of the key fits, a third does not; dropping gives the slot back.
        let second = streams.admit("p", "k").expect("second");
        assert!(streams.admit("p", "k").is_none());
        drop(second);
        let second = streams.admit("p", "k").expect("the slot came back");
        // The project's third stream fits through another key, its fourth does not; another
        // project still has room under the overall cap.
        let third = streams.admit("p", "k2").expect("third");
        assert!(streams.admit("p", "k3").is_none());
        assert!(streams.admit("q", "k").is_some());
        drop((second, third));
    }
}
