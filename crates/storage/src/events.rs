//! The task event log's contract: where a stream starts, a bounded page of events after a
//! position, the wake-up signal a stream waits on, and retention. Each engine appends events with
//! its own `append_events`, inside the transaction of the change they report.

use async_trait::async_trait;
use tokio::sync::watch;

use super::StoreResult;
pub use kafka_tasks_domain::events::{EventCursor, EventStart};
use kafka_tasks_domain::{InstanceId, ProjectId};

/// Whose events a stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventScope {
    Project(ProjectId),
    Instance(ProjectId, InstanceId),
}

impl EventScope {
    pub fn project(&self) -> &ProjectId {
        match self {
            EventScope::Project(p) | EventScope::Instance(p, _) => p,
        }
    }
}

/// An event as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    pub id: i64,
    /// [`kafka_tasks_domain::events::EventKind`]'s wire name.
    pub kind: String,
    /// JSON ([`kafka_tasks_domain::events::EventData`]).
    pub data: String,
}

/// A page of the log after a position.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    pub events: Vec<LoggedEvent>,
    /// Where the next page starts.
    pub next: EventCursor,
    /// Committed events lie beyond `next` that are not readable yet (PostgreSQL: an older
    /// transaction is still running); read again shortly rather than wait for a wake-up.
    pub pending: bool,
    /// The read stopped at its bound of rows scanned ([`INSTANCE_SCAN_ROWS`]) with fewer than
    /// `limit` events: more of the log lies beyond `next` now; read again at once.
    pub more: bool,
}

/// The most rows of its project's log one read of an instance's events walks. The log has no
/// index by instance (each task's end would write a leaf of it on a page of its own: see
/// docs/performance.md, "The wall the counts do not see"), so an instance's stream reads its
/// project's rows and keeps its own; this bound keeps each read short, however busy the project
/// and however far back the stream resumes, and the stream's position moves past what it read.
pub const INSTANCE_SCAN_ROWS: usize = 1_000;

/// How long the log keeps events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRetention {
    /// Events older than this (ms) are pruned.
    pub max_age_ms: i64,
    /// At most about this many events are kept: on SQLite counted by position (positions lost
    /// to rolled-back transactions count too); on PostgreSQL, whose positions have gaps, by the
    /// rows' events, once their transactions have settled.
    pub max_events: i64,
}

/// The task event log.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Where a stream starts: `None` is the log's end now (only new events); `Some(id)` is just
    /// after event `id` (0: the beginning of the log).
    async fn event_start(&self, after: Option<i64>) -> StoreResult<EventStart>;
    /// At most `limit` events of `scope` after `after`, in log order. Holds a connection only
    /// for the one statement.
    async fn read_events(&self, scope: &EventScope, after: EventCursor, limit: usize) -> StoreResult<EventPage>;
    /// Changes when events may have been appended: by this process as it commits, and (on
    /// PostgreSQL) by any process, through LISTEN/NOTIFY.
    fn event_signal(&self) -> watch::Receiver<u64>;
    /// Prunes at most `batch` of the oldest events that `policy` no longer keeps; returns how
    /// many. Safe to run in several processes at once.
    async fn prune_events(&self, now: i64, policy: EventRetention, batch: usize) -> StoreResult<u64>;
}

/// The in-process wake-up: a counter bumped after each commit that appended events. A watch
/// channel keeps one value, so however many commits happen while a stream is busy, it wakes once.
#[derive(Debug)]
pub struct EventSignal(watch::Sender<u64>);

impl Default for EventSignal {
    fn default() -> Self {
        EventSignal(watch::channel(0).0)
    }
}

impl EventSignal {
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}
