//! Instances and the operations submitted on them.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::*;
use crate::sqlite::events::append_events;
use kafka_tasks_domain::admission;
use kafka_tasks_domain::events::NewEvent;
use kafka_tasks_domain::instance::Instance;
use kafka_tasks_domain::{InstanceId, ProjectId, TaskId};

pub(super) fn instance_exists(conn: &Connection, p: &ProjectId, i: &InstanceId) -> StoreResult<bool> {
    let mut st = conn.prepare_cached("SELECT 1 FROM instances WHERE id = ?1 AND project_id = ?2")?;
    Ok(st.exists(params![i.as_str(), p.as_str()])?)
}

pub(super) fn load_instance(conn: &Connection, i: &InstanceId) -> StoreResult<Option<Instance>> {
    let mut st = conn.prepare_cached("SELECT doc, busy_task_id FROM instances WHERE id = ?1")?;
    let row = st
        .query_row(params![i.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))
        .optional()?;
    row.map(|(doc, busy)| {
        let mut inst: Instance = serde_json::from_str(&doc).map_err(json_error)?;
        inst.busy_task = busy.map(TaskId::from_trusted);
        Ok(inst)
    })
    .transpose()
}

pub(super) fn save_instance(conn: &Connection, inst: &Instance) -> StoreResult<()> {
    save_instance_ending(conn, inst, 0)
}

/// Writes the instance back and adds `ended` (0 or 1) tasks to its count of finished tasks, in
/// the one rewrite of its row that a task's end makes anyway.
pub(super) fn save_instance_ending(conn: &Connection, inst: &Instance, ended: i64) -> StoreResult<()> {
    let doc = serde_json::to_string(inst).map_err(json_error)?;
    let mut st = conn.prepare_cached(
        "UPDATE instances SET doc = ?2, busy_task_id = ?3, finished_tasks = finished_tasks + ?4 WHERE id = ?1",
    )?;
    st.execute(params![inst.id.as_str(), doc, inst.busy_task.as_ref().map(TaskId::as_str), ended])?;
    Ok(())
}

pub(super) fn remove_instance(conn: &Connection, i: &InstanceId) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM tasks WHERE instance_id = ?1")?.execute(params![i.as_str()])?;
    conn.prepare_cached("DELETE FROM task_buckets WHERE instance_id = ?1")?.execute(params![i.as_str()])?;
    conn.prepare_cached("DELETE FROM task_totals WHERE instance_id = ?1")?.execute(params![i.as_str()])?;
    conn.prepare_cached("DELETE FROM cluster_bindings WHERE instance_id = ?1")?.execute(params![i.as_str()])?;
    conn.prepare_cached("DELETE FROM instances WHERE id = ?1")?.execute(params![i.as_str()])?;
    Ok(())
}

#[async_trait]
impl InstanceStore for Sqlite {
    async fn create_instance(&self, inst: Instance, task: NewTask, audit: Option<AuditEvent>) -> StoreResult<()> {
        self.write(move |conn| {
            let doc = serde_json::to_string(&inst).map_err(json_error)?;
            conn.prepare_cached(
                "INSERT INTO instances (id, project_id, created_at, busy_task_id, doc) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                inst.id.as_str(),
                inst.project_id.as_str(),
                inst.created_at,
                task.record.id.as_str(),
                doc
            ])?;
            insert_task(conn, &task)?;
            append_events(conn, &[NewEvent::created(&task.record)])?;
            if let Some(event) = &audit {
                insert_audit(conn, event)?;
            }
            Ok(())
        })
        .await?;
        self.events_committed();
        Ok(())
    }

    async fn get_instance(&self, p: &ProjectId, i: &InstanceId) -> StoreResult<Option<Instance>> {
        self.read(|conn| Ok(load_instance(conn, i)?.filter(|inst| inst.project_id == *p))).await
    }

    async fn list_instances(&self, p: &ProjectId) -> StoreResult<Vec<Instance>> {
        self.read(|conn| {
            let mut st = conn.prepare_cached(
                "SELECT doc, busy_task_id FROM instances WHERE project_id = ?1 ORDER BY created_at DESC, id DESC",
            )?;
            let rows =
                st.query_map(params![p.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (doc, busy) = row?;
                let mut inst: Instance = serde_json::from_str(&doc).map_err(json_error)?;
                inst.busy_task = busy.map(TaskId::from_trusted);
                out.push(inst);
            }
            Ok(out)
        })
        .await
    }

    async fn submit(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        build: TaskBuilder,
        audit: Option<AuditEvent>,
    ) -> StoreResult<Result<NewTask, SubmitError>> {
        let (p, i) = (p.clone(), i.clone());
        let submitted = self
            .write(move |conn| {
                let (task, changed) = match admission::submission(load_instance(conn, &i)?, &p, &build) {
                    Ok(admitted) => admitted,
                    Err(e) => return Ok(Err(e)),
                };
                if let Some(inst) = &changed {
                    save_instance(conn, inst)?;
                }
                insert_task(conn, &task)?;
                append_events(conn, &[NewEvent::created(&task.record)])?;
                if let Some(event) = &audit {
                    insert_audit(conn, event)?;
                }
                Ok(Ok(task))
            })
            .await?;
        if submitted.is_ok() {
            self.events_committed();
        }
        Ok(submitted)
    }

    async fn modify_instance(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        change: InstanceChange,
        audit: Option<AuditEvent>,
    ) -> StoreResult<Result<(), SubmitError>> {
        let (p, i) = (p.clone(), i.clone());
        self.write(move |conn| {
            let inst = match admission::modification(load_instance(conn, &i)?, &p, &change) {
                Ok(inst) => inst,
                Err(e) => return Ok(Err(e)),
            };
            save_instance(conn, &inst)?;
            if let Some(event) = &audit {
                insert_audit(conn, event)?;
            }
            Ok(Ok(()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    //! Submissions and instance changes in one group commit: the writer may run them twice (a
    //! later write of the group failed, their first run rolled back); each is stored once, as its
    //! answer says. Checked on the database file through a connection of the test's own.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use kafka_tasks_domain::instance::{InstanceStatus, NewInstance};
    use kafka_tasks_domain::operation::{OpSet, Operation, StepContext};
    use kafka_tasks_domain::{AuthMethod, Identity, Role, Timestamp};

    use super::*;

    const T0: i64 = 1_700_000_000_000;
    const CTX: StepContext = StepContext { storage_pool_gb: 10_000, executed: OpSet::EMPTY, stepwise: false };

    fn who(p: &ProjectId) -> Identity {
        Identity {
            project_id: p.clone(),
            user_id: "u".into(),
            user_name: "n".into(),
            access_key: None,
            role: Role::Admin,
            method: AuthMethod::AkSk,
        }
    }

    fn audit(p: &ProjectId, inst: &Instance) -> Option<AuditEvent> {
        Some(AuditEvent {
            at: T0,
            request_id: "r".into(),
            project_id: p.as_str().into(),
            user_id: "u".into(),
            user_name: "n".into(),
            access_key: None,
            action: "modifyInstance".into(),
            target: inst.id.as_str().into(),
            status: 200,
            detail: None,
        })
    }

    /// A restart (due at `schedule_at` when given) whose builds `builds` counts.
    fn restart(p: &ProjectId, schedule_at: Option<i64>, builds: &Arc<AtomicUsize>) -> TaskBuilder {
        let builds = builds.clone();
        TaskBuilder::new(&who(p), T0 + 1, schedule_at, 1.0, move |_| {
            builds.fetch_add(1, Ordering::SeqCst);
            Ok(Operation::Restart)
        })
    }

    /// A running instance with no operation, and the id of its creation task (planned to take no
    /// time, so the claim that takes it ends it).
    async fn running(store: &Sqlite, p: &ProjectId, name: &str) -> (Instance, TaskId) {
        let new = NewInstance { name: name.into(), ..NewInstance::example() };
        let inst = Instance::create(p.clone(), &new, "u", "n", T0);
        let create = NewTask::new(&inst, Operation::from(&new), ("u", "n"), T0, None, 0.0);
        let created = create.record.id.clone();
        store.create_instance(inst.clone(), create, None).await.expect("create");
        store.claim("setup", Timestamp::from_ms(T0), Duration::from_secs(60), 10, CTX).await.expect("claim");
        let inst = store.get_instance(p, &inst.id).await.expect("get").expect("exists");
        assert_eq!((inst.status, &inst.busy_task), (InstanceStatus::Running, &None));
        (inst, created)
    }

    /// Holds the writer thread inside a write of its own until the returned sender is dropped,
    /// so that what is queued meanwhile commits as one group behind it.
    async fn hold_writer(
        store: &Arc<Sqlite>,
    ) -> (tokio::task::JoinHandle<StoreResult<()>>, std::sync::mpsc::Sender<()>) {
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let held = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write(move |_| {
                        let _ = started_tx.send(());
                        let _ = gate.recv();
                        Ok(())
                    })
                    .await
            }
        });
        while started.try_recv().is_err() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (held, release)
    }

    /// Queues `write` behind the held writer, as its `n`th write (the test runs on one thread:
    /// once the count shows it, the write is in the queue).
    async fn queue<T: Send + 'static>(
        store: &Sqlite,
        n: usize,
        write: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        let handle = tokio::spawn(write);
        while store.writer.max_capacity() - store.writer.capacity() < n {
            tokio::task::yield_now().await;
        }
        handle
    }

    async fn savepoints_run(store: &Sqlite) -> i32 {
        store
            .write(|conn| Ok(conn.prepare_cached("SAVEPOINT job")?.get_status(rusqlite::StatementStatus::Run)))
            .await
            .expect("count")
    }

    /// The tasks of `inst` other than its creation task, as the database file holds them.
    fn stored_tasks(
        db: &Connection,
        inst: &Instance,
        created: &TaskId,
    ) -> Vec<(String, String, String, String, Option<i64>)> {
        let mut st = db
            .prepare("SELECT id, name, user_id, status, schedule_at FROM tasks WHERE instance_id = ?1 AND id != ?2")
            .expect("prepare");
        st.query_map(params![inst.id.as_str(), created.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
    }

    fn as_stored(t: &NewTask) -> (String, String, String, String, Option<i64>) {
        let r = &t.record;
        (r.id.as_str().into(), r.name.clone(), r.user_id.clone(), r.status.as_str().into(), r.schedule_at)
    }

    fn count(db: &Connection, sql: &str, key: &str) -> i64 {
        db.query_row(sql, [key], |r| r.get(0)).expect("count")
    }

    #[tokio::test]
    async fn a_group_of_submissions_with_a_failing_write_stores_each_once() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("g.db");
        let store = Arc::new(Sqlite::open(&path).await.expect("open"));
        let p = ProjectId::generate();
        let (a, a_created) = running(&store, &p, "a").await;
        let (b, b_created) = running(&store, &p, "b").await;
        let (c, _) = running(&store, &p, "c").await;
        let (d, d_created) = running(&store, &p, "d").await;
        let savepoints_before = savepoints_run(&store).await;

        let builds: Vec<_> = (0..4).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let (held, release) = hold_writer(&store).await;
        let submit = |inst: &Instance, build: TaskBuilder, audit: Option<AuditEvent>| {
            let (store, p, i) = (store.clone(), p.clone(), inst.id.clone());
            async move { store.submit(&p, &i, build, audit).await }
        };
        // An immediate restart takes a's lock; a second one finds it held (refused, no audit).
        let first = queue(&store, 1, submit(&a, restart(&p, None, &builds[0]), audit(&p, &a))).await;
        let refused = queue(&store, 2, submit(&a, restart(&p, None, &builds[1]), None)).await;
        let scheduled =
            queue(&store, 3, submit(&b, restart(&p, Some(T0 + 3_600_000), &builds[2]), audit(&p, &b))).await;
        // Not idempotent: a change applied twice would leave "c-renamed-renamed".
        let rename: InstanceChange = Box::new(|inst: &mut Instance| {
            inst.name = format!("{}-renamed", inst.name);
            Ok(())
        });
        let renamed = queue(&store, 4, {
            let (store, p, i, audit) = (store.clone(), p.clone(), c.id.clone(), audit(&p, &c));
            async move { store.modify_instance(&p, &i, rename, audit).await }
        })
        .await;
        // Takes d's lock, then fails in the store: its task's id is taken (d's creation task).
        let mut duplicate = NewTask::new(&d, Operation::Restart, ("u", "n"), T0 + 1, None, 1.0);
        duplicate.record.id = d_created.clone();
        let failed = queue(&store, 5, submit(&d, TaskBuilder::ready(duplicate), audit(&p, &d))).await;
        // After the failure: runs once, and finds d's lock free (the failed write's taking undone).
        let after = queue(&store, 6, submit(&d, restart(&p, None, &builds[3]), audit(&p, &d))).await;
        drop(release);
        held.await.expect("join").expect("held");

        let first = first.await.expect("join").expect("stored").expect("admitted");
        assert_eq!(refused.await.expect("join").expect("stored").err(), Some(SubmitError::Busy));
        let scheduled = scheduled.await.expect("join").expect("stored").expect("admitted");
        assert_eq!(renamed.await.expect("join").expect("stored"), Ok(()));
        assert!(failed.await.expect("join").is_err(), "the duplicate id fails in the store");
        let after = after.await.expect("join").expect("stored").expect("admitted");
        let builds: Vec<_> = builds.iter().map(|n| n.load(Ordering::SeqCst)).collect();
        assert_eq!(builds, [2, 2, 2, 1], "the writes before the failure ran twice, the one after it once");
        assert_eq!(savepoints_run(&store).await, savepoints_before + 5, "the five that ran again, each in its own");

        let db = Connection::open(&path).expect("open");
        assert_eq!(stored_tasks(&db, &a, &a_created), [as_stored(&first)]);
        assert_eq!(stored_tasks(&db, &b, &b_created), [as_stored(&scheduled)]);
        assert_eq!(stored_tasks(&db, &d, &d_created), [as_stored(&after)]);
        let busy = |inst: &Instance| -> Option<String> {
            db.query_row("SELECT busy_task_id FROM instances WHERE id = ?1", [inst.id.as_str()], |r| r.get(0))
                .expect("busy")
        };
        let held_by = |t: &NewTask| Some(t.record.id.as_str().to_owned());
        assert_eq!((busy(&a), busy(&b), busy(&c), busy(&d)), (held_by(&first), None, None, held_by(&after)));
        let doc: String =
            db.query_row("SELECT doc FROM instances WHERE id = ?1", [c.id.as_str()], |r| r.get(0)).expect("doc");
        let stored: Instance = serde_json::from_str(&doc).expect("instance");
        assert_eq!(stored.name, "c-renamed");
        for inst in [&a, &b, &c, &d] {
            assert_eq!(count(&db, "SELECT count(*) FROM audit_events WHERE target = ?1", inst.id.as_str()), 1);
            // The stored counts are the tasks' (each counted once).
            let counted =
                count(&db, "SELECT coalesce(sum(n), 0) FROM task_totals WHERE instance_id = ?1", inst.id.as_str());
            let tasks = count(
                &db,
                "SELECT sum(in_background) + count(schedule_at) FROM tasks WHERE instance_id = ?1",
                inst.id.as_str(),
            );
            assert_eq!(counted, tasks);
        }
        for t in [&first, &scheduled, &after] {
            assert_eq!(count(&db, "SELECT count(*) FROM task_events WHERE task_id = ?1", t.record.id.as_str()), 1);
        }
        let gaps: i64 = db.query_row("SELECT max(id) - sum(n) FROM task_events", [], |r| r.get(0)).expect("gaps");
        assert_eq!(gaps, 0, "the event log's positions stay dense: the rolled back runs left no hole");

        // A group of submissions and a change where nothing fails runs no savepoint.
        let savepoints_before = savepoints_run(&store).await;
        let (held, release) = hold_writer(&store).await;
        let mut submitted = vec![];
        for (n, inst) in [&b, &c].into_iter().enumerate() {
            let build = restart(&p, None, &Arc::new(AtomicUsize::new(0)));
            submitted.push(queue(&store, n + 1, submit(inst, build, audit(&p, inst))).await);
        }
        let build = restart(&p, Some(T0 + 7_200_000), &Arc::new(AtomicUsize::new(0)));
        submitted.push(queue(&store, 3, submit(&d, build, None)).await);
        let again: InstanceChange = Box::new(|inst: &mut Instance| {
            inst.name = format!("{}-again", inst.name);
            Ok(())
        });
        let renamed = queue(&store, 4, {
            let (store, p, i) = (store.clone(), p.clone(), a.id.clone());
            async move { store.modify_instance(&p, &i, again, None).await }
        })
        .await;
        drop(release);
        held.await.expect("join").expect("held");
        for s in submitted {
            s.await.expect("join").expect("stored").expect("admitted");
        }
        assert_eq!(renamed.await.expect("join").expect("stored"), Ok(()));
        assert_eq!(savepoints_run(&store).await, savepoints_before);
    }
}
