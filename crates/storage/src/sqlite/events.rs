//! The task event log: appends (inside the writing transaction), pages, start points, pruning.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::*;
use crate::events::*;
use kafka_tasks_domain::events::{NewEvent, prunable, resume};

/// Appends `events`, in order, in the transaction `conn` is in. The caller wakes the streams
/// ([`Sqlite::events_committed`]) once that transaction is committed.
///
/// Rows go in by sixteen, then by four, then one at a time: each statement opens the table and
/// its two indexes and, the ids being `AUTOINCREMENT`, reads and rewrites `sqlite_sequence` once,
/// so a claim's several hundred events cost a few dozen statements rather than one each. The
/// ids are still given in the order of `events`.
pub(crate) fn append_events(conn: &Connection, events: &[NewEvent]) -> StoreResult<()> {
    let mut rest = events;
    while !rest.is_empty() {
        let n = [16, 4, 1].into_iter().find(|&n| rest.len() >= n).unwrap_or(1);
        let (now, later) = rest.split_at(n);
        let mut st = conn.prepare_cached(insert_events_sql(n))?;
        let mut i = 1;
        for e in now {
            st.raw_bind_parameter(i, e.at)?;
            st.raw_bind_parameter(i + 1, &e.project_id)?;
            st.raw_bind_parameter(i + 2, &e.instance_id)?;
            st.raw_bind_parameter(i + 3, &e.task_id)?;
            st.raw_bind_parameter(i + 4, e.kind.as_str())?;
            st.raw_bind_parameter(i + 5, &e.data)?;
            i += 6;
        }
        st.raw_execute()?;
        rest = later;
    }
    Ok(())
}

/// The insert of `n` (1, 4 or 16) event rows.
fn insert_events_sql(n: usize) -> &'static str {
    static SQL: std::sync::LazyLock<[String; 3]> = std::sync::LazyLock::new(|| {
        [1, 4, 16].map(|n| {
            let rows = vec!["(?, ?, ?, ?, ?, ?)"; n].join(", ");
            format!("INSERT INTO task_events (at, project_id, instance_id, task_id, kind, data) VALUES {rows}")
        })
    });
    match n {
        16 => &SQL[2],
        4 => &SQL[1],
        _ => &SQL[0],
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_tasks_domain::events::EventKind;

    #[test]
    fn events_appended_in_chunks_keep_their_order_and_every_column() -> Result<(), Box<dyn std::error::Error>> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(include_str!("../../../../migrations/sqlite/0008_task_events.sql"))?;
        // 16 + 4 + 1 + 1 + 1 rows, then one more call to see the ids go on.
        let make = |i: usize| NewEvent {
            kind: EventKind::ALL[i % EventKind::ALL.len()],
            at: 1_000 + i as i64,
            project_id: format!("p{}", i % 3),
            instance_id: format!("i{}", i % 5),
            task_id: format!("t{i}"),
            data: format!("{{\"n\":{i}}}"),
        };
        let first: Vec<NewEvent> = (0..23).map(make).collect();
        append_events(&conn, &first)?;
        append_events(&conn, &[make(23)])?;
        append_events(&conn, &[])?;
        let mut st =
            conn.prepare("SELECT id, at, project_id, instance_id, task_id, kind, data FROM task_events ORDER BY id")?;
        let rows: Vec<(i64, NewEvent)> = st
            .query_map([], |r| {
                let kind: String = r.get(5)?;
                Ok((
                    r.get(0)?,
                    NewEvent {
                        kind: EventKind::parse(&kind).unwrap_or(EventKind::Created),
                        at: r.get(1)?,
                        project_id: r.get(2)?,
                        instance_id: r.get(3)?,
                        task_id: r.get(4)?,
                        data: r.get(6)?,
                    },
                ))
            })?
            .collect::<Result<_, _>>()?;
        let expected: Vec<(i64, NewEvent)> = (0..24).map(|i| (i as i64 + 1, make(i))).collect();
        assert_eq!(rows, expected);
        Ok(())
    }
}
