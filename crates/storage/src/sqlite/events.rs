//! The task event log: appends (inside the writing transaction), pages, start points, pruning.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::*;
use crate::events::*;
use kafka_tasks_domain::events::{AsRow, prunable, resume, unpack};

/// Appends `rows`, in order, in the transaction `conn` is in. The caller wakes the streams
/// ([`Sqlite::events_committed`]) once that transaction is committed.
///
/// A row of `n` events takes the next `n` positions of the log and is stored under the last of
/// them (migration 0016). When every row holds one event, SQLite's AUTOINCREMENT gives exactly
/// that (one past the highest id ever stored, so never one that was pruned); otherwise the ids
/// are given here, from that counter read once per call. One writer at a time, so nobody takes
/// the same ids meanwhile.
///
/// Rows go in by sixteen, then by four, then one at a time: each statement opens the table and
/// its index and rewrites `sqlite_sequence` once, so a claim's several hundred rows cost a
/// few dozen statements rather than one each.
pub(crate) fn append_events<R: AsRow>(conn: &Connection, rows: &[R]) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut last: Option<i64> = None;
    if rows.iter().any(|r| r.as_row().n > 1) {
        let seq = "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'task_events'";
        last = Some(conn.prepare_cached(seq)?.query_row([], |r| r.get(0))?);
    }
    let mut rest = rows;
    while !rest.is_empty() {
        let n = [16, 4, 1].into_iter().find(|&n| rest.len() >= n).unwrap_or(1);
        let (now, later) = rest.split_at(n);
        let mut st = conn.prepare_cached(insert_events_sql(n))?;
        let mut i = 1;
        for e in now {
            let e = e.as_row();
            last = last.map(|l| l + e.n.max(1) as i64);
            st.raw_bind_parameter(i, last)?;
            st.raw_bind_parameter(i + 1, e.at)?;
            st.raw_bind_parameter(i + 2, e.project_id)?;
            st.raw_bind_parameter(i + 3, e.instance_id)?;
            st.raw_bind_parameter(i + 4, e.task_id)?;
            st.raw_bind_parameter(i + 5, e.kind)?;
            st.raw_bind_parameter(i + 6, e.data)?;
            st.raw_bind_parameter(i + 7, e.n.max(1) as i64)?;
            i += 8;
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
            let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; n].join(", ");
            format!("INSERT INTO task_events (id, at, project_id, instance_id, task_id, kind, data, n) VALUES {rows}")
        })
    });
    match n {
        16 => &SQL[2],
        4 => &SQL[1],
        _ => &SQL[0],
    }
}

/// The rows holding events after a position: a row is stored under its last event's position,
/// so the first one may also hold events at or before it, which [`expand`] leaves out.
const READ_PROJECT: &str =
    "SELECT id, n, kind, data FROM task_events WHERE project_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3";
/// An instance's rows, found by walking its project's rows from the position (at most ?3 of them:
/// [`INSTANCE_SCAN_ROWS`]): another instance's rows come without their kind and data, and only
/// move the stream's position on. There is no index by instance: every task's end would write a
/// leaf of it on its own page (docs/performance.md, "The wall the counts do not see").
const READ_INSTANCE: &str = "SELECT id, n, CASE WHEN instance_id = ?4 THEN kind END, \
     CASE WHEN instance_id = ?4 THEN data END FROM task_events \
     WHERE project_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3";

/// A stored row: the position of its last event, how many it holds, and its kind and data
/// columns (`None` for a row of another instance than the one read).
type Row = (i64, i64, Option<(String, String)>);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let (kind, data): (Option<String>, Option<String>) = (r.get(2)?, r.get(3)?);
    Ok((r.get(0)?, r.get(1)?, kind.zip(data)))
}

/// The events of `rows` after position `after`, at most `limit` of them, and the position read
/// up to: the last event taken, or the last row passed over when the page is not full.
fn expand(rows: Vec<Row>, after: i64, limit: usize) -> StoreResult<(Vec<LoggedEvent>, i64)> {
    let mut out = Vec::with_capacity(rows.len().min(limit));
    let mut next = after;
    for (last, n, content) in rows {
        let Some((kind, data)) = content else {
            next = next.max(last);
            continue;
        };
        let events = usize::try_from(n).ok().and_then(|n| unpack(n, kind, data));
        let events = events.ok_or_else(|| StoreError::corrupt(format!("task event row {last}")))?;
        let first = last - n + 1;
        for (id, (kind, data)) in (first..).zip(events) {
            if out.len() == limit {
                return Ok((out, next));
            }
            if id > after {
                out.push(LoggedEvent { id, kind, data });
                next = id;
            }
        }
        next = next.max(last);
    }
    Ok((out, next))
}

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
            // The row that would hold position `after`: the first stored at or after it.
            let holder: Option<(i64, i64)> = conn
                .prepare_cached("SELECT id, n FROM task_events WHERE id >= ?1 ORDER BY id LIMIT 1")?
                .query_row(params![after], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            Ok(match holder {
                Some((last, n)) if after > 0 && last - n < after => EventStart::From(EventCursor { xid: 0, id: after }),
                _ => resume(after, oldest, max_pruned),
            })
        })
        .await
    }

    async fn read_events(&self, scope: &EventScope, after: EventCursor, limit: usize) -> StoreResult<EventPage> {
        self.read(move |conn| {
            // Each row holds at least one event after `after`: `limit` rows are enough for a
            // project; an instance's scan is bounded by rows, whatever it finds.
            let (rows, scan): (Vec<Row>, Option<usize>) = match scope {
                EventScope::Project(p) => (
                    conn.prepare_cached(READ_PROJECT)?
                        .query_map(params![p.as_str(), after.id, limit as i64], row)?
                        .collect::<Result<_, _>>()?,
                    None,
                ),
                EventScope::Instance(p, i) => (
                    conn.prepare_cached(READ_INSTANCE)?
                        .query_map(params![p.as_str(), after.id, INSTANCE_SCAN_ROWS as i64, i.as_str()], row)?
                        .collect::<Result<_, _>>()?,
                    Some(INSTANCE_SCAN_ROWS),
                ),
            };
            let scanned = rows.len();
            let (events, next) = expand(rows, after.id, limit)?;
            let more = scan == Some(scanned) && events.len() < limit;
            let next = EventCursor { xid: 0, id: next };
            Ok(EventPage { events, next, pending: false, more })
        })
        .await
    }

    fn event_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.signal.subscribe()
    }

    /// Prunes whole rows (the events of one write about one task go together): a row goes when
    /// it is older than the age limit or its last event is beyond the newest `max_events`, so
    /// the log may keep the rest of the row that the newest `max_events` begin in.
    async fn prune_events(&self, now: i64, policy: EventRetention, batch: usize) -> StoreResult<u64> {
        self.write(move |conn| {
            let last: Option<i64> =
                conn.prepare_cached("SELECT max(id) FROM task_events")?.query_row([], |r| r.get(0))?;
            let Some(last) = last else { return Ok(0) };
            let rows: Vec<(i64, i64, i64)> = conn
                .prepare_cached("SELECT id, at, n FROM task_events ORDER BY id LIMIT ?1")?
                .query_map(params![batch as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let oldest: Vec<(i64, i64)> = rows.iter().map(|&(id, at, _)| (id, at)).collect();
            let n = prunable(&oldest, now.saturating_sub(policy.max_age_ms), last.saturating_sub(policy.max_events));
            let Some(&(through, _, _)) = rows.get(n.wrapping_sub(1)) else { return Ok(0) };
            conn.prepare_cached("DELETE FROM task_events WHERE id <= ?1")?.execute(params![through])?;
            conn.prepare_cached(
                "UPDATE task_events_pruned SET xid = 0, id = ?1, max_id = max(max_id, ?1) WHERE one = 1",
            )?
            .execute(params![through])?;
            Ok(rows[..n].iter().map(|r| r.2.max(1) as u64).sum())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_tasks_domain::events::{EventKind, EventRow, NewEvent};

    fn log() -> Result<Connection, Box<dyn std::error::Error>> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(include_str!("../../../../migrations/sqlite/0008_task_events.sql"))?;
        conn.execute_batch(include_str!("../../../../migrations/sqlite/0016_event_rows.sql"))?;
        Ok(conn)
    }

    fn stored(conn: &Connection) -> Result<Vec<(i64, EventRow)>, Box<dyn std::error::Error>> {
        let mut st = conn
            .prepare("SELECT id, at, project_id, instance_id, task_id, kind, data, n FROM task_events ORDER BY id")?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    EventRow {
                        at: r.get(1)?,
                        project_id: r.get(2)?,
                        instance_id: r.get(3)?,
                        task_id: r.get(4)?,
                        kind: r.get(5)?,
                        data: r.get(6)?,
                        n: r.get::<_, i64>(7)? as usize,
                    },
                ))
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn event(i: usize) -> NewEvent {
        NewEvent {
            kind: EventKind::ALL[i % EventKind::ALL.len()],
            at: 1_000 + i as i64,
            project_id: format!("p{}", i % 3),
            instance_id: format!("i{}", i % 5),
            task_id: format!("t{i}"),
            data: format!("{{\"n\":{i}}}"),
        }
    }

    #[test]
    fn events_appended_in_chunks_keep_their_order_and_every_column() -> Result<(), Box<dyn std::error::Error>> {
        let conn = log()?;
        // 16 + 4 + 1 + 1 + 1 rows, then one more call to see the ids go on.
        let first: Vec<NewEvent> = (0..23).map(event).collect();
        append_events(&conn, &first)?;
        append_events(&conn, &[event(23)])?;
        append_events::<NewEvent>(&conn, &[])?;
        let expected: Vec<(i64, EventRow)> = (0..24).map(|i| (i as i64 + 1, event(i).into())).collect();
        assert_eq!(stored(&conn)?, expected);
        Ok(())
    }

    /// A row of several events takes as many positions, stored under its last; the next row
    /// goes on after it, even once every row is pruned; reads give each event its position.
    #[test]
    fn a_row_of_several_events_takes_a_position_each() -> Result<(), Box<dyn std::error::Error>> {
        let conn = log()?;
        let state = r#"{"task_id":"t","status":"SUCCESS","steps_done":1,"at":"x"}"#;
        let several = |i: usize| EventRow {
            n: 3,
            kind: "step.started:0 step.finished:0 task.finished".into(),
            data: format!("{state}\n{{\"index\":{i}}}"),
            ..event(i).into()
        };
        let rows: Vec<EventRow> = (0..21).map(|i| if i % 2 == 0 { several(i) } else { event(i).into() }).collect();
        append_events(&conn, &rows)?;
        let ids: Vec<i64> = stored(&conn)?.into_iter().map(|(id, _)| id).collect();
        let mut last = 0;
        let expected: Vec<i64> = rows
            .iter()
            .map(|r| {
                last += r.n as i64;
                last
            })
            .collect();
        assert_eq!(ids, expected);
        let read = |after: i64, limit: usize| -> Result<Vec<LoggedEvent>, Box<dyn std::error::Error>> {
            let rows: Vec<Row> = conn
                .prepare(READ_PROJECT.replace("project_id = ?1 AND ", "?1 = ?1 AND ").as_str())?
                .query_map(params!["", after, limit as i64], row)?
                .collect::<Result<_, _>>()?;
            Ok(expand(rows, after, limit)?.0)
        };
        let all = read(0, 1_000)?;
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), (1..=last).collect::<Vec<_>>());
        assert_eq!(all[0].kind, "step.started");
        assert_eq!(all[1].data, r#"{"task_id":"t","status":"SUCCESS","step":{"index":0},"steps_done":1,"at":"x"}"#);
        assert_eq!((all[3].kind.as_str(), all[3].data.as_str()), (EventKind::ALL[1].as_str(), r#"{"n":1}"#));
        // Paged from the middle of a row, a few at a time: the same events.
        let mut paged = Vec::new();
        let mut at = 1;
        loop {
            let page = read(at, 2)?;
            let Some(e) = page.last() else { break };
            at = e.id;
            paged.extend(page);
        }
        assert_eq!(paged, all[1..].to_vec());
        // Ids go on after the highest ever stored.
        conn.execute("DELETE FROM task_events", [])?;
        append_events(&conn, &[event(0)])?;
        append_events(&conn, &[several(0)])?;
        let ids: Vec<i64> = stored(&conn)?.into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, vec![last + 1, last + 4]);
        Ok(())
    }

    #[test]
    fn a_damaged_row_is_an_error_not_a_guess() {
        let content = Some(("task.finished".to_owned(), "{}".to_owned()));
        assert!(matches!(expand(vec![(5, 2, content.clone())], 0, 10), Err(StoreError::Corrupt { .. })));
        assert!(expand(vec![(5, 0, content)], 0, 10).is_err());
    }
}
