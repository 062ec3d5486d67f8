//! The task event log: appends (inside the writing transaction), pages, start points, pruning.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::*;
use crate::domain::events::{NewEvent, prunable, resume};
use crate::storage::events::*;

/// Appends `events`, in order, in the transaction `conn` is in. The caller wakes the streams
/// ([`Sqlite::events_committed`]) once that transaction is committed.
pub(crate) fn append_events(conn: &Connection, events: &[NewEvent]) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut st = conn.prepare_cached(
        "INSERT INTO task_events (at, project_id, instance_id, task_id, kind, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for e in events {
        st.execute(params![e.at, e.project_id, e.instance_id, e.task_id, e.kind.as_str(), e.data])?;
    }
    Ok(())
}

const READ_PROJECT: &str =
    "SELECT id, kind, data FROM task_events WHERE project_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3";
const READ_INSTANCE: &str = "SELECT id, kind, data FROM task_events \
     WHERE instance_id = ?4 AND project_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3";

fn pruned(conn: &Connection) -> StoreResult<(EventCursor, i64)> {
    let mut st = conn.prepare_cached("SELECT xid, id, max_id FROM task_events_pruned WHERE one = 1")?;
    let row = st.query_row([], |r| Ok((EventCursor { xid: r.get(0)?, id: r.get(1)? }, r.get(2)?))).optional()?;
    Ok(row.unwrap_or_default())
}

#[async_trait]
impl EventStore for Sqlite {
    async fn event_start(&self, after: Option<i64>) -> StoreResult<EventStart> {
        self.read(move |conn| {
            let (oldest, max_pruned) = pruned(conn)?;
            let Some(after) = after else {
                let last: Option<i64> =
                    conn.prepare_cached("SELECT max(id) FROM task_events")?.query_row([], |r| r.get(0))?;
                return Ok(EventStart::Tail(EventCursor { xid: 0, id: last.unwrap_or(0).max(max_pruned) }, Vec::new()));
            };
            let exists = conn.prepare_cached("SELECT 1 FROM task_events WHERE id = ?1")?.exists(params![after])?;
            Ok(if exists {
                EventStart::From(EventCursor { xid: 0, id: after })
            } else {
                resume(after, oldest, max_pruned)
            })
        })
        .await
    }

    async fn read_events(&self, scope: &EventScope, after: EventCursor, limit: usize) -> StoreResult<EventPage> {
        self.read(move |conn| {
            let map = |r: &rusqlite::Row<'_>| Ok(LoggedEvent { id: r.get(0)?, kind: r.get(1)?, data: r.get(2)? });
            let limit = limit as i64;
            let rows: Vec<LoggedEvent> = match scope {
                EventScope::Project(p) => conn
                    .prepare_cached(READ_PROJECT)?
                    .query_map(params![p.as_str(), after.id, limit], map)?
                    .collect::<Result<_, _>>()?,
                EventScope::Instance(p, i) => conn
                    .prepare_cached(READ_INSTANCE)?
                    .query_map(params![p.as_str(), after.id, limit, i.as_str()], map)?
                    .collect::<Result<_, _>>()?,
            };
            let next = rows.last().map_or(after, |e| EventCursor { xid: 0, id: e.id });
            Ok(EventPage { events: rows, next, pending: false })
        })
        .await
    }

    fn event_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.signal.subscribe()
    }

    async fn prune_events(&self, now: i64, policy: EventRetention, batch: usize) -> StoreResult<u64> {
        self.write(move |conn| {
            let last: Option<i64> =
                conn.prepare_cached("SELECT max(id) FROM task_events")?.query_row([], |r| r.get(0))?;
            let Some(last) = last else { return Ok(0) };
            let rows: Vec<(i64, i64)> = conn
                .prepare_cached("SELECT id, at FROM task_events ORDER BY id LIMIT ?1")?
                .query_map(params![batch as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let n = prunable(&rows, now.saturating_sub(policy.max_age_ms), last.saturating_sub(policy.max_events));
            let Some(&(through, _)) = rows.get(n.wrapping_sub(1)) else { return Ok(0) };
            conn.prepare_cached("DELETE FROM task_events WHERE id <= ?1")?.execute(params![through])?;
            conn.prepare_cached(
                "UPDATE task_events_pruned SET xid = 0, id = ?1, max_id = max(max_id, ?1) WHERE one = 1",
            )?
            .execute(params![through])?;
            Ok(n as u64)
        })
        .await
    }
}
