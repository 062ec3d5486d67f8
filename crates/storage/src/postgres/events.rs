//! The task event log: appends (inside the writing transaction), pages in `(xid, id)` order up
//! to the snapshot horizon, start points, pruning, and the LISTEN/NOTIFY connection that wakes
//! streams in every process.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use super::*;
use crate::events::*;
use kafka_tasks_domain::events::{AsRow, prunable, unpack};

/// The channel every process LISTENs on.
const CHANNEL: &str = "kafka_tasks_events";
/// One pruner at a time across processes.
const PRUNE_LOCK: i64 = 0x6b61_666b_6174_0003;

/// The transaction id and the oldest one still running, as BIGINT (tokio-postgres has no xid8).
const HORIZON: &str = "pg_snapshot_xmin(pg_current_snapshot())::TEXT::BIGINT";

/// The positions a row's block holds (migration 0019): a row takes one value of the block
/// sequence and the first `n` positions from it, so a row holds at most this many events.
const BLOCK: usize = 32;

/// Appends `rows`, in order, in transaction `tx`: one statement whatever their number.
///
/// A row of `n` events takes the first `n` positions of a block of its own and is stored under
/// the last of them, as on SQLite (migration 0019): `nextval` is evaluated per row in the rows'
/// order, so the blocks, and so the positions, follow the order of the rows. A row of more
/// events than a block holds (a kernel upgrade of many brokers run to its end in one claim) is
/// stored as the single events it stands for.
pub(crate) async fn append_events<R: AsRow>(tx: &Transaction<'_>, rows: &[R]) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let st = tx
        .prepare_cached(
            "INSERT INTO task_events (id, at, project_id, instance_id, task_id, kind, data, n) \
             SELECT nextval('task_events_block') + n - 1, at, p, i, t, k, d, n \
             FROM unnest($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::INTEGER[]) \
             WITH ORDINALITY AS u(at, p, i, t, k, d, n, o) ORDER BY o",
        )
        .await?;
    let unpacked: Vec<Option<Vec<(String, String)>>> = rows
        .iter()
        .map(|r| {
            let r = r.as_row();
            if r.n <= BLOCK {
                return Ok(None);
            }
            unpack(r.n, r.kind.to_owned(), r.data.to_owned())
                .map(Some)
                .ok_or_else(|| StoreError::corrupt(format!("a new event row of task {}", r.task_id)))
        })
        .collect::<StoreResult<_>>()?;
    let mut c = Columns::default();
    for (r, events) in rows.iter().zip(&unpacked) {
        let r = r.as_row();
        let mut push = |kind, data, n: usize| {
            c.at.push(r.at);
            c.project.push(r.project_id);
            c.instance.push(r.instance_id);
            c.task.push(r.task_id);
            c.kind.push(kind);
            c.data.push(data);
            c.n.push(n.max(1) as i32);
        };
        match events {
            None => push(r.kind, r.data, r.n),
            Some(events) => events.iter().for_each(|(kind, data)| push(kind, data, 1)),
        }
    }
    tx.execute(&st, &[&c.at, &c.project, &c.instance, &c.task, &c.kind, &c.data, &c.n]).await?;
    Ok(())
}

/// The rows of one append, a column each (the insert's arrays).
#[derive(Default)]
struct Columns<'a> {
    at: Vec<i64>,
    project: Vec<&'a str>,
    instance: Vec<&'a str>,
    task: Vec<&'a str>,
    kind: Vec<&'a str>,
    data: Vec<&'a str>,
    n: Vec<i32>,
}

/// The rows holding one project's events after a position, with the horizon read in the same
/// snapshot. A row is stored under its last event's position, so the first may also hold events
/// at or before it, which [`read_events`](EventStore::read_events) leaves out.
static READ_PROJECT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT id, xid, kind, data, {HORIZON}, n FROM task_events \
         WHERE project_id = $1 AND (xid, id) > ($2, $3) ORDER BY xid, id LIMIT $4"
    )
});
/// An instance's events, found by walking its project's events from the position (at most $4 of
/// them: [`INSTANCE_SCAN_ROWS`]): another instance's come without their kind and data, and only
/// move the stream's position on. There is no index by instance: every task's end would write
/// its events' entries on leaves of their own (docs/performance.md, "The wall the counts do not
/// see").
static READ_INSTANCE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT id, xid, CASE WHEN instance_id = $5 THEN kind END, CASE WHEN instance_id = $5 THEN data END, \
         {HORIZON}, n FROM task_events \
         WHERE project_id = $1 AND (xid, id) > ($2, $3) ORDER BY xid, id LIMIT $4"
    )
});

impl Postgres {
    /// Wakes this process's streams at once and asks the listener connection to NOTIFY the
    /// others; called after a commit that appended events. The NOTIFY is sent outside the
    /// writing transaction (a NOTIFY inside it would take PostgreSQL's global notify lock until
    /// the commit ends, serialising every commit that notifies), and a burst of commits sends one.
    pub(super) fn events_committed(&self) {
        self.events.signal.notify();
        self.events.outbox.notify_one();
    }
}

/// The wake-up machinery of one store: the in-process signal, and the request to NOTIFY.
pub(super) struct Wakeups {
    pub(super) signal: Arc<EventSignal>,
    pub(super) outbox: Arc<Notify>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Wakeups {
    /// Starts the listener connection of this store (see [`listen`]).
    pub(super) fn start(config: tokio_postgres::Config) -> Self {
        let signal = Arc::new(EventSignal::default());
        let outbox = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(config, signal.clone(), outbox.clone()));
        Wakeups { signal, outbox, listener }
    }
}

/// One connection outside the pool that LISTENs for other processes' commits (waking this
/// process's streams) and sends this process's NOTIFYs. When it is lost, it reconnects after a
/// second and wakes every stream once (events committed meanwhile are then read); streams also
/// poll the log on their own, so a lost connection delays events but never loses them.
async fn listen(config: tokio_postgres::Config, signal: Arc<EventSignal>, outbox: Arc<Notify>) {
    loop {
        let why = match config.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let driver = async {
                    loop {
                        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(_))) => signal.notify(),
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return e.to_string(),
                            None => return "connection closed".to_owned(),
                        }
                    }
                };
                let sender = async {
                    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                        return e.to_string();
                    }
                    signal.notify();
                    loop {
                        outbox.notified().await;
                        if let Err(e) = client.batch_execute(&format!("NOTIFY {CHANNEL}")).await {
                            return e.to_string();
                        }
                    }
                };
                tokio::select! {
                    why = driver => why,
                    why = sender => why,
                }
            }
            Err(e) => e.to_string(),
        };
        kafka_tasks_platform::limited!(warn, "event listener", error = %why, "the event listener connection is down; reconnecting");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn pruned(client: &deadpool_postgres::Client) -> StoreResult<(EventCursor, i64)> {
    let st = client.prepare_cached("SELECT xid, id, max_id FROM task_events_pruned WHERE one = 1").await?;
    Ok(match client.query_opt(&st, &[]).await? {
        Some(r) => (EventCursor { xid: r.try_get(0)?, id: r.try_get(1)? }, r.try_get(2)?),
        None => Default::default(),
    })
}

#[async_trait]
impl EventStore for Postgres {
    async fn event_start(&self, after: Option<i64>) -> StoreResult<EventStart> {
        let client = self.pool.get().await?;
        let Some(after) = after else {
            // Every transaction older than the horizon has ended; the stream takes what the
            // others (running, or not yet begun) append.
            // Events of those newer ones already committed are left out (one snapshot for both).
            let row = client
                .query_one(
                    &format!(
                        "WITH h AS (SELECT {HORIZON} AS h) SELECT h, ARRAY(SELECT p FROM \
                         (SELECT id, n FROM task_events, h WHERE xid >= h.h ORDER BY xid, id LIMIT {0}) r, \
                         generate_series(r.id - r.n + 1, r.id) p LIMIT {0}) FROM h",
                        kafka_tasks_domain::events::TAIL_SKIP_MAX
                    ),
                    &[],
                )
                .await?;
            let (h, seen): (i64, Vec<i64>) = (row.try_get(0)?, row.try_get(1)?);
            return Ok(EventStart::Tail(EventCursor { xid: h - 1, id: i64::MAX }, seen));
        };
        // The row that would hold position `after`: the first stored at or after it (a row's
        // positions lie in its own block, so no other row's end falls between).
        let st = client.prepare_cached("SELECT xid, id, n FROM task_events WHERE id >= $1 ORDER BY id LIMIT 1").await?;
        if let Some(r) = client.query_opt(&st, &[&after]).await? {
            let (xid, last, n): (i64, i64, i32) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            if after > 0 && last - i64::from(n) < after {
                return Ok(EventStart::From(EventCursor { xid, id: after }));
            }
        }
        let (oldest, max_pruned) = pruned(&client).await?;
        Ok(kafka_tasks_domain::events::resume(after, oldest, max_pruned))
    }

    async fn read_events(&self, scope: &EventScope, after: EventCursor, limit: usize) -> StoreResult<EventPage> {
        let client = self.pool.get().await?;
        let (rows, scan) = match scope {
            EventScope::Project(p) => {
                let st = client.prepare_cached(&READ_PROJECT).await?;
                (client.query(&st, &[&p.as_str(), &after.xid, &after.id, &(limit as i64)]).await?, None)
            }
            EventScope::Instance(p, i) => {
                let st = client.prepare_cached(&READ_INSTANCE).await?;
                let bound = INSTANCE_SCAN_ROWS as i64;
                let rows = client.query(&st, &[&p.as_str(), &after.xid, &after.id, &bound, &i.as_str()]).await?;
                (rows, Some(INSTANCE_SCAN_ROWS))
            }
        };
        drop(client);
        let scanned = rows.len();
        let mut page =
            EventPage { events: Vec::with_capacity(rows.len().min(limit)), next: after, ..Default::default() };
        for r in rows {
            let (xid, horizon): (i64, i64) = (r.try_get(1)?, r.try_get(4)?);
            if xid >= horizon {
                // Committed, but an older transaction may still commit events before it.
                page.pending = true;
                break;
            }
            if page.events.len() == limit {
                return Ok(page);
            }
            let (last, n): (i64, i32) = (r.try_get(0)?, r.try_get(5)?);
            let (kind, data): (Option<String>, Option<String>) = (r.try_get(2)?, r.try_get(3)?);
            if let Some((kind, data)) = kind.zip(data) {
                let events = usize::try_from(n).ok().and_then(|n| unpack(n, kind, data));
                let events = events.ok_or_else(|| StoreError::corrupt(format!("task event row {last}")))?;
                let first = last - i64::from(n) + 1;
                for (id, (kind, data)) in (first..).zip(events) {
                    // Only the row the position is in has events at or before it (positions
                    // are in log order within one transaction, not across transactions).
                    if xid == after.xid && id <= after.id {
                        continue;
                    }
                    if page.events.len() == limit {
                        return Ok(page);
                    }
                    page.events.push(LoggedEvent { id, kind, data });
                    page.next = EventCursor { xid, id };
                }
            }
            page.next = EventCursor { xid, id: last };
        }
        page.more = !page.pending && scan == Some(scanned) && page.events.len() < limit;
        Ok(page)
    }

    fn event_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.events.signal.subscribe()
    }

    /// Prunes whole rows (the events of one write about one task go together), as on SQLite.
    /// Positions have gaps here (each row takes a block), so the count cap counts the rows'
    /// events: the pruner keeps a count of the events after the pruned position and moves it on
    /// over the rows that have settled since its last round (older than every transaction still
    /// running: none can be added before them), and prunes only rows it has counted.
    async fn prune_events(&self, now: i64, policy: EventRetention, batch: usize) -> StoreResult<u64> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let locked: bool = tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PRUNE_LOCK]).await?.try_get(0)?;
        if !locked {
            return Ok(0);
        }
        let state =
            tx.query_one("SELECT counted_xid, counted_id, counted FROM task_events_pruned WHERE one = 1", &[]).await?;
        let (mut counted_to, mut counted) =
            (EventCursor { xid: state.try_get(0)?, id: state.try_get(1)? }, state.try_get::<_, i64>(2)?);
        let new = tx
            .query_one(
                &format!(
                    "WITH c AS (SELECT xid, id, n FROM task_events WHERE (xid, id) > ($1, $2) AND xid < {HORIZON}) \
                     SELECT (SELECT coalesce(sum(n), 0)::BIGINT FROM c), \
                     (SELECT ARRAY[xid, id] FROM c ORDER BY xid DESC, id DESC LIMIT 1)"
                ),
                &[&counted_to.xid, &counted_to.id],
            )
            .await?;
        let moved = match new.try_get::<_, Option<Vec<i64>>>(1)?.as_deref() {
            Some(&[xid, id]) => {
                counted += new.try_get::<_, i64>(0)?;
                counted_to = EventCursor { xid, id };
                true
            }
            _ => false,
        };
        let st = tx
            .prepare_cached(
                "SELECT xid, id, at, n FROM task_events WHERE (xid, id) <= ($1, $2) ORDER BY xid, id LIMIT $3",
            )
            .await?;
        let mut rows: Vec<(i64, i64, i64, i64)> = Vec::new();
        for r in tx.query(&st, &[&counted_to.xid, &counted_to.id, &(batch as i64)]).await? {
            rows.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, i64::from(r.try_get::<_, i32>(3)?)));
        }
        // Each row as (how many events up to and including it, its time): the cap's rule by
        // position is then a rule by count.
        let ranked: Vec<(i64, i64)> = rows
            .iter()
            .scan(0, |events, &(_, _, at, n)| {
                *events += n;
                Some((*events, at))
            })
            .collect();
        let n = prunable(&ranked, now.saturating_sub(policy.max_age_ms), counted.saturating_sub(policy.max_events));
        let pruned_events = n.checked_sub(1).and_then(|i| ranked.get(i)).map_or(0, |r| r.0);
        // The last row pruned, and the highest position among those pruned.
        let through = rows.get(n.wrapping_sub(1)).map(|&(xid, id, _, _)| (xid, id));
        if through.is_none() && !moved {
            return Ok(0);
        }
        let max_id = rows[..n].iter().map(|r| r.1).max();
        if let Some((xid, id)) = through {
            tx.execute("DELETE FROM task_events WHERE (xid, id) <= ($1, $2)", &[&xid, &id]).await?;
        }
        tx.execute(
            "UPDATE task_events_pruned SET xid = coalesce($1, xid), id = coalesce($2, id), \
             max_id = greatest(max_id, coalesce($3, max_id)), \
             counted_xid = $4, counted_id = $5, counted = greatest($6::BIGINT, 0) WHERE one = 1",
            &[
                &through.map(|t| t.0),
                &through.map(|t| t.1),
                &max_id,
                &counted_to.xid,
                &counted_to.id,
                &(counted - pruned_events),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(pruned_events as u64)
    }
}
