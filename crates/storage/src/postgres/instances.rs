//! Instances and the operations submitted on them.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::*;
use crate::postgres::events::append_events;
use kafka_tasks_domain::admission;
use kafka_tasks_domain::events::NewEvent;
use kafka_tasks_domain::instance::Instance;
use kafka_tasks_domain::{InstanceId, ProjectId, TaskId};

pub(super) async fn instance_exists(tx: &Transaction<'_>, p: &ProjectId, i: &InstanceId) -> StoreResult<bool> {
    let st = tx.prepare_cached("SELECT 1 FROM instances WHERE id = $1 AND project_id = $2").await?;
    Ok(tx.query_opt(&st, &[&i.as_str(), &p.as_str()]).await?.is_some())
}

pub(super) fn instance_from_row(r: &Row) -> StoreResult<Instance> {
    instance_from_row_at(r, 0)
}

/// Decodes `doc, busy_task_id` starting at column `at`.
pub(super) fn instance_from_row_at(r: &Row, at: usize) -> StoreResult<Instance> {
    let doc: String = r.try_get(at)?;
    let busy: Option<String> = r.try_get(at + 1)?;
    let mut inst: Instance = serde_json::from_str(&doc).map_err(json_error)?;
    inst.busy_task = busy.map(TaskId::from_trusted);
    Ok(inst)
}

/// Loads and locks an instance. With `skip_locked`, `None` also when another transaction holds it.
pub(super) async fn lock_instance(
    tx: &Transaction<'_>,
    i: &InstanceId,
    skip_locked: bool,
) -> StoreResult<Option<Instance>> {
    let sql = if skip_locked {
        "SELECT doc, busy_task_id FROM instances WHERE id = $1 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT doc, busy_task_id FROM instances WHERE id = $1 FOR UPDATE"
    };
    let st = tx.prepare_cached(sql).await?;
    tx.query_opt(&st, &[&i.as_str()]).await?.map(|r| instance_from_row(&r)).transpose()
}

pub(super) async fn save_instance(tx: &Transaction<'_>, inst: &Instance) -> StoreResult<()> {
    let doc = serde_json::to_string(inst).map_err(json_error)?;
    let st = tx.prepare_cached("UPDATE instances SET doc = $2, busy_task_id = $3 WHERE id = $1").await?;
    tx.execute(&st, &[&inst.id.as_str(), &doc, &inst.busy_task.as_ref().map(TaskId::as_str)]).await?;
    Ok(())
}

/// Writes back several instances in one statement.
pub(super) async fn save_instances<'a>(
    tx: &Transaction<'_>,
    instances: impl Iterator<Item = &'a Instance>,
) -> StoreResult<()> {
    let (mut ids, mut docs, mut busy) = (Vec::new(), Vec::new(), Vec::new());
    for inst in instances {
        ids.push(inst.id.as_str().to_owned());
        docs.push(serde_json::to_string(inst).map_err(json_error)?);
        busy.push(inst.busy_task.as_ref().map(|t| t.as_str().to_owned()));
    }
    if ids.is_empty() {
        return Ok(());
    }
    let st = tx
        .prepare_cached(
            "UPDATE instances AS i SET doc = u.doc, busy_task_id = u.busy \
             FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS u(id, doc, busy) WHERE i.id = u.id",
        )
        .await?;
    tx.execute(&st, &[&ids, &docs, &busy]).await?;
    Ok(())
}

pub(super) async fn remove_instance(tx: &Transaction<'_>, i: &InstanceId) -> StoreResult<()> {
    tx.execute("DELETE FROM tasks WHERE instance_id = $1", &[&i.as_str()]).await?;
    tx.execute("DELETE FROM task_buckets WHERE instance_id = $1", &[&i.as_str()]).await?;
    tx.execute("DELETE FROM task_totals WHERE instance_id = $1", &[&i.as_str()]).await?;
    tx.execute("DELETE FROM finished_counts WHERE instance_id = $1", &[&i.as_str()]).await?;
    tx.execute("DELETE FROM cluster_bindings WHERE instance_id = $1", &[&i.as_str()]).await?;
    tx.execute("DELETE FROM instances WHERE id = $1", &[&i.as_str()]).await?;
    Ok(())
}

#[async_trait]
impl InstanceStore for Postgres {
    async fn create_instance(&self, inst: Instance, task: NewTask, audit: Option<AuditEvent>) -> StoreResult<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let doc = serde_json::to_string(&inst).map_err(json_error)?;
        tx.execute(
            "INSERT INTO instances (id, project_id, created_at, busy_task_id, doc) VALUES ($1, $2, $3, $4, $5)",
            &[&inst.id.as_str(), &inst.project_id.as_str(), &inst.created_at, &task.record.id.as_str(), &doc],
        )
        .await?;
        let created = [NewEvent::created(&task.record)];
        tokio::try_join!(insert_task(&tx, &task), append_events(&tx, &created))?;
        if let Some(event) = &audit {
            insert_audit(&tx, event).await?;
        }
        tx.commit().await?;
        self.events_committed();
        Ok(())
    }

    async fn get_instance(&self, p: &ProjectId, i: &InstanceId) -> StoreResult<Option<Instance>> {
        let client = self.pool.get().await?;
        let st =
            client.prepare_cached("SELECT doc, busy_task_id FROM instances WHERE id = $1 AND project_id = $2").await?;
        client.query_opt(&st, &[&i.as_str(), &p.as_str()]).await?.map(|r| instance_from_row(&r)).transpose()
    }

    async fn list_instances(&self, p: &ProjectId) -> StoreResult<Vec<Instance>> {
        let client = self.pool.get().await?;
        let st = client
            .prepare_cached(
                "SELECT doc, busy_task_id FROM instances WHERE project_id = $1 ORDER BY created_at DESC, id DESC",
            )
            .await?;
        client.query(&st, &[&p.as_str()]).await?.iter().map(instance_from_row).collect()
    }

    async fn submit(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        build: TaskBuilder,
        audit: Option<AuditEvent>,
    ) -> StoreResult<Result<NewTask, SubmitError>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let (task, changed) = match admission::submission(lock_instance(&tx, i, false).await?, p, &build) {
            Ok(admitted) => admitted,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(inst) = &changed {
            save_instance(&tx, inst).await?;
        }
        let created = [NewEvent::created(&task.record)];
        tokio::try_join!(insert_task(&tx, &task), append_events(&tx, &created))?;
        if let Some(event) = &audit {
            insert_audit(&tx, event).await?;
        }
        tx.commit().await?;
        self.events_committed();
        Ok(Ok(task))
    }

    async fn modify_instance(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        change: InstanceChange,
        audit: Option<AuditEvent>,
    ) -> StoreResult<Result<(), SubmitError>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let inst = match admission::modification(lock_instance(&tx, i, false).await?, p, change) {
            Ok(inst) => inst,
            Err(e) => return Ok(Err(e)),
        };
        save_instance(&tx, &inst).await?;
        if let Some(event) = &audit {
            insert_audit(&tx, event).await?;
        }
        tx.commit().await?;
        Ok(Ok(()))
    }
}
