//! Test control's values and the reset to a clean database ([`ControlStore`]).

use async_trait::async_trait;
use kafka_tasks_domain::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::*;

/// Cleared by a reset, children before parents.
pub(crate) const RESET_TABLES: &[&str] = &[
    "task_runs",
    "cluster_bindings",
    "task_buckets",
    "task_totals",
    "tasks",
    "instances",
    "audit_events",
    "retention_policies",
    "kernel_builds",
];

#[async_trait]
impl ControlStore for Sqlite {
    async fn control_value(&self, key: &str) -> StoreResult<Option<String>> {
        let key = key.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM test_control WHERE key = ?1")?
                .query_row(params![key], |r| r.get::<_, String>(0))
                .optional()?)
        })
        .await
    }

    async fn put_control_value(&self, key: &str, value: &str, now: Timestamp) -> StoreResult<()> {
        let now = now.ms();
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO test_control (key, value, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )?
            .execute(params![key, value, now])?;
            Ok(())
        })
        .await
    }

    async fn save_snapshot(
        &self,
        name: &str,
        now: Timestamp,
        max_count: u64,
        max_bytes: u64,
    ) -> StoreResult<SnapshotSaved> {
        let now = now.ms();
        let name = name.to_owned();
        self.write(move |conn| {
            let others: i64 =
                conn.query_row("SELECT count(*) FROM test_snapshots WHERE name <> ?1", params![name], |r| r.get(0))?;
            if others as u64 >= max_count {
                return Ok(SnapshotSaved::TooMany);
            }
            let mut data = String::from("{");
            for table in SNAPSHOT_TABLES.iter().chain(&["task_events"]) {
                let columns = columns(conn, table)?;
                let fields: Vec<String> = columns.iter().map(|c| format!("'{c}', \"{c}\"")).collect();
                let order = if *table == "task_events" { " ORDER BY id" } else { "" };
                let rows: String = conn.query_row(
                    &format!(
                        "SELECT coalesce(json_group_array(json(r)), '[]') FROM \
                         (SELECT json_object({}) AS r FROM \"{table}\"{order})",
                        fields.join(", ")
                    ),
                    [],
                    |r| r.get(0),
                )?;
                if data.len() > 1 {
                    data.push(',');
                }
                data.push_str(&format!("\"{table}\":{rows}"));
                if data.len() as u64 > max_bytes {
                    return Ok(SnapshotSaved::TooBig(data.len() as u64));
                }
            }
            data.push('}');
            let size = data.len() as u64;
            conn.prepare_cached(
                "INSERT INTO test_snapshots (name, created_at, size_bytes, data) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (name) DO UPDATE SET created_at = excluded.created_at, \
                 size_bytes = excluded.size_bytes, data = excluded.data",
            )?
            .execute(params![name, now, size as i64, data])?;
            Ok(SnapshotSaved::Saved(SnapshotInfo { name: name.clone(), created_at: now, size_bytes: size }))
        })
        .await
    }

    async fn restore_snapshot(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_owned();
        self.write(move |conn| {
            let data: Option<String> = conn
                .query_row("SELECT data FROM test_snapshots WHERE name = ?1", params![name], |r| r.get(0))
                .optional()?;
            let Some(data) = data else { return Ok(false) };
            let tables: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&data)
                .map_err(|e| StoreError::corrupt(format!("snapshot {name}")).caused_by(e))?;
            for table in SNAPSHOT_TABLES.iter().rev() {
                conn.execute(&format!("DELETE FROM \"{table}\""), [])?;
            }
            conn.execute("DELETE FROM cluster_bindings", [])?;
            prune_every_event(conn)?;
            // Events get new ids, in their order, after the highest ever given: ids never go
            // back. A row of several events takes as many (migration 0016; a snapshot saved
            // before it has single events).
            let last: i64 = conn.query_row(
                "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'task_events'",
                [],
                |r| r.get(0),
            )?;
            for table in SNAPSHOT_TABLES.iter().chain(&["task_events"]) {
                let rows = tables.get(*table).map(|v| v.to_string()).unwrap_or_else(|| "[]".into());
                let columns = columns(conn, table)?;
                let values: Vec<String> = columns
                    .iter()
                    .map(|c| match (*table, c.as_str()) {
                        ("task_events", "id") => {
                            "?2 + sum(coalesce(json_extract(value, '$.n'), 1)) OVER (ORDER BY key)".to_owned()
                        }
                        ("task_events", "n") => "coalesce(json_extract(value, '$.n'), 1)".to_owned(),
                        // Recounted once every table is in (below): exact whatever the snapshot
                        // held, and one saved before the count restores.
                        ("instances", "finished_tasks") => "0".to_owned(),
                        _ => format!("json_extract(value, '$.\"{c}\"')"),
                    })
                    .collect();
                let names: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
                let sql = format!(
                    "INSERT INTO \"{table}\" ({}) SELECT {} FROM json_each(?1) ORDER BY key",
                    names.join(", "),
                    values.join(", ")
                );
                if *table == "task_events" {
                    conn.execute(&sql, params![rows, last])?;
                } else {
                    conn.execute(&sql, params![rows])?;
                }
            }
            conn.execute(
                "UPDATE instances SET finished_tasks = \
                 (SELECT count(*) FROM tasks WHERE instance_id = instances.id AND due_at IS NULL)",
                [],
            )?;
            Ok(true)
        })
        .await
    }

    async fn list_snapshots(&self) -> StoreResult<Vec<SnapshotInfo>> {
        self.read(|conn| {
            let mut st =
                conn.prepare_cached("SELECT name, created_at, size_bytes FROM test_snapshots ORDER BY name")?;
            let rows = st.query_map([], |r| {
                Ok(SnapshotInfo { name: r.get(0)?, created_at: r.get(1)?, size_bytes: r.get::<_, i64>(2)? as u64 })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn delete_snapshot(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_owned();
        self.write(move |conn| Ok(conn.execute("DELETE FROM test_snapshots WHERE name = ?1", params![name])? > 0)).await
    }

    async fn reset_state(&self, credentials: Option<&str>) -> StoreResult<()> {
        let credentials = credentials.map(str::to_owned);
        let path = self.path.clone();
        self.write_alone(move |live| swap_for_fresh(live, &path, credentials.as_deref())).await
    }
}

/// The reset on SQLite: a fresh database is built in memory (the migrations, then the rows
/// that stay copied from the live file: credentials, test control's values, the master key
/// check, executor state, the AUTOINCREMENT counters, the event log's prune state) and copied
/// over the live database in one step with SQLite's online backup, which writes only the fresh
/// database's few pages and commits them as one transaction that other connections see like any
/// other. Deleting 10,000 tasks and their events row by row instead rewrote every page of them
/// (hundreds of milliseconds on the shared test machine; docs/notes/people.md). Runs on the
/// writer connection between group commits, so no write of this process falls in between.
fn swap_for_fresh(live: &mut Connection, path: &std::path::Path, keep_credential: Option<&str>) -> StoreResult<()> {
    let page_size: i64 = live.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let mut fresh = Connection::open_in_memory()?;
    fresh.pragma_update(None, "page_size", page_size)?;
    migrate(&mut fresh)?;
    fresh.pragma_update(None, "application_id", APPLICATION_ID)?;
    fresh.execute("ATTACH DATABASE ?1 AS live", params![path.display().to_string()])?;
    let tables: Vec<String> = fresh
        .prepare("SELECT name FROM live.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    let tx = fresh.transaction()?;
    for table in tables.iter().filter(|t| !RESET_TABLES.contains(&t.as_str()) && *t != "task_events") {
        tx.execute(&format!("DELETE FROM main.\"{table}\""), [])?;
        if table == "credentials" {
            if let Some(keep) = keep_credential {
                tx.execute(
                    "INSERT INTO main.credentials SELECT * FROM live.credentials WHERE access_key = ?1",
                    params![keep],
                )?;
            }
            if keep_credential.is_some() {
                continue;
            }
        }
        tx.execute(&format!("INSERT INTO main.\"{table}\" SELECT * FROM live.\"{table}\""), [])?;
    }
    tx.execute("DELETE FROM main.sqlite_sequence", [])?;
    tx.execute("INSERT INTO main.sqlite_sequence SELECT * FROM live.sqlite_sequence", [])?;
    // The events go as retention prunes them: a stream resuming from an older cursor is told
    // that what it missed is gone, and ids are never reused (the AUTOINCREMENT counter stays).
    tx.execute(
        "UPDATE main.task_events_pruned SET xid = 0, \
         id = coalesce((SELECT max(id) FROM live.task_events), id), \
         max_id = max(max_id, coalesce((SELECT max(id) FROM live.task_events), 0)) WHERE one = 1",
        [],
    )?;
    tx.execute("UPDATE main.prune_lease SET owner = NULL, until = 0", [])?;
    tx.commit()?;
    fresh.execute("DETACH DATABASE live", [])?;
    let backup = rusqlite::backup::Backup::new(&fresh, live)?;
    match backup.step(-1)? {
        rusqlite::backup::StepResult::Done => Ok(()),
        other => Err(StoreError::unavailable(format!("the reset could not replace the database: {other:?}"))),
    }
}

/// A table's columns, in order.
fn columns(conn: &Connection, table: &str) -> StoreResult<Vec<String>> {
    let mut st = conn.prepare(&format!("PRAGMA table_info(\"{table}\")"))?;
    let names = st.query_map([], |r| r.get::<_, String>(1))?.collect::<Result<_, _>>()?;
    Ok(names)
}

/// Removes every task event as retention prunes them: a stream resuming from an older cursor
/// is told that what it missed is gone, and ids are never reused (AUTOINCREMENT).
fn prune_every_event(conn: &Connection) -> StoreResult<()> {
    conn.execute(
        "UPDATE task_events_pruned SET xid = 0, \
         id = coalesce((SELECT max(id) FROM task_events), id), \
         max_id = max(max_id, coalesce((SELECT max(id) FROM task_events), 0)) WHERE one = 1",
        [],
    )?;
    conn.execute("DELETE FROM task_events", [])?;
    Ok(())
}
