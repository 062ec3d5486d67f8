//! The clusters instances are bound to.

use async_trait::async_trait;
use kafka_tasks_domain::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::*;

#[async_trait]
impl ClusterStore for Sqlite {
    async fn get_binding(&self, p: &ProjectId, i: &InstanceId) -> StoreResult<Option<StoredBinding>> {
        let (p, i) = (p.clone(), i.clone());
        self.read(move |conn| {
            let row = conn
                .prepare_cached(
                    "SELECT binding, password_sealed FROM cluster_bindings WHERE instance_id = ?1 AND project_id = ?2",
                )?
                .query_row(params![i.as_str(), p.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<Vec<u8>>>(1)?))
                })
                .optional()?;
            row.map(|(text, password_sealed)| {
                Ok(StoredBinding { binding: serde_json::from_str(&text).map_err(json_error)?, password_sealed })
            })
            .transpose()
        })
        .await
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
        let (p, i) = (p.clone(), i.clone());
        let text = binding.as_ref().map(|b| serde_json::to_string(&b.binding)).transpose().map_err(json_error)?;
        let sealed = binding.and_then(|b| b.password_sealed);
        self.write(move |conn| {
            // The instance's record says it is bound, so that its steps wait for the executor.
            let Some(mut inst) = super::instances::load_instance(conn, &i)?.filter(|inst| inst.project_id == p) else {
                return Ok(false);
            };
            inst.cluster_bound = text.is_some();
            super::instances::save_instance(conn, &inst)?;
            match &text {
                Some(t) => conn
                    .prepare_cached(
                        "INSERT INTO cluster_bindings (instance_id, project_id, binding, password_sealed, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (instance_id) DO UPDATE SET \
                         binding = excluded.binding, password_sealed = excluded.password_sealed, \
                         updated_at = excluded.updated_at",
                    )?
                    .execute(params![i.as_str(), p.as_str(), t, sealed, now])?,
                None => conn
                    .prepare_cached("DELETE FROM cluster_bindings WHERE instance_id = ?1")?
                    .execute(params![i.as_str()])?,
            };
            insert_audit(conn, &audit)?;
            Ok(true)
        })
        .await
    }
}
