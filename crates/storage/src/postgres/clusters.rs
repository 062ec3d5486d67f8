//! The clusters instances are bound to.

use async_trait::async_trait;
use kafka_tasks_domain::Timestamp;

use super::*;

#[async_trait]
impl ClusterStore for Postgres {
    async fn get_binding(&self, p: &ProjectId, i: &InstanceId) -> StoreResult<Option<StoredBinding>> {
        let client = self.pool.get().await?;
        let st = client
            .prepare_cached(
                "SELECT binding, password_sealed FROM cluster_bindings WHERE instance_id = $1 AND project_id = $2",
            )
            .await?;
        let Some(row) = client.query_opt(&st, &[&i.as_str(), &p.as_str()]).await? else {
            return Ok(None);
        };
        let text: String = row.try_get(0)?;
        Ok(Some(StoredBinding {
            binding: serde_json::from_str(&text).map_err(json_error)?,
            password_sealed: row.try_get(1)?,
        }))
    }

    async fn put_binding(
        &self,
        p: &ProjectId,
        i: &InstanceId,
        binding: Option<StoredBinding>,
        now: Timestamp,
        audit: AuditEvent,
    ) -> StoreResult<bool> {
        let now = now.ms();
        let text = binding.as_ref().map(|b| serde_json::to_string(&b.binding)).transpose().map_err(json_error)?;
        let sealed = binding.and_then(|b| b.password_sealed);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Locks the instance row (a delete of the instance cannot pass between the check and the
        // write), and its record says it is bound, so that its steps wait for the executor.
        let Some(mut inst) = super::instances::lock_instance(&tx, i, false).await?.filter(|inst| &inst.project_id == p)
        else {
            return Ok(false);
        };
        inst.cluster_bound = text.is_some();
        super::instances::save_instance(&tx, &inst).await?;
        match text {
            Some(t) => {
                tx.execute(
                    "INSERT INTO cluster_bindings (instance_id, project_id, binding, password_sealed, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (instance_id) DO UPDATE SET \
                     binding = excluded.binding, password_sealed = excluded.password_sealed, \
                     updated_at = excluded.updated_at",
                    &[&i.as_str(), &p.as_str(), &t, &sealed, &now],
                )
                .await?
            }
            None => tx.execute("DELETE FROM cluster_bindings WHERE instance_id = $1", &[&i.as_str()]).await?,
        };
        insert_audit(&tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }
}
