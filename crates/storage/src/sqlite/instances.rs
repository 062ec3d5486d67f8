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
    let doc = serde_json::to_string(inst).map_err(json_error)?;
    let mut st = conn.prepare_cached("UPDATE instances SET doc = ?2, busy_task_id = ?3 WHERE id = ?1")?;
    st.execute(params![inst.id.as_str(), doc, inst.busy_task.as_ref().map(TaskId::as_str)])?;
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
            .write_once(move |conn| {
                let (task, changed) = match admission::submission(load_instance(conn, &i)?, &p, build) {
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
        self.write_once(move |conn| {
            let inst = match admission::modification(load_instance(conn, &i)?, &p, change) {
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
