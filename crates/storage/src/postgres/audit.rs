//! The audit trail.

use async_trait::async_trait;
use deadpool_postgres::Transaction;

use super::*;
use kafka_tasks_domain::ProjectId;

pub(super) async fn insert_audit(tx: &Transaction<'_>, e: &AuditEvent) -> StoreResult<()> {
    let e = &e.storable();
    let st = tx
        .prepare_cached(
            "INSERT INTO audit_events (at, request_id, project_id, user_id, user_name, access_key, action, target, \
             status, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .await?;
    let status = i32::from(e.status);
    tx.execute(
        &st,
        &[
            &e.at,
            &e.request_id,
            &e.project_id,
            &e.user_id,
            &e.user_name,
            &e.access_key,
            &e.action,
            &e.target,
            &status,
            &e.detail,
        ],
    )
    .await?;
    Ok(())
}

/// Writes several events in one statement, in order.
pub(super) async fn insert_audits(tx: &Transaction<'_>, events: &[AuditEvent]) -> StoreResult<()> {
    let events: Vec<StorableAudit> = events.iter().map(AuditEvent::storable).collect();
    let col = |f: for<'x> fn(&'x StorableAudit<'x>) -> &'x str| events.iter().map(f).collect::<Vec<&str>>();
    let at: Vec<i64> = events.iter().map(|e| e.at).collect();
    let keys: Vec<Option<&str>> = events.iter().map(|e| e.access_key.as_deref()).collect();
    let status: Vec<i32> = events.iter().map(|e| i32::from(e.status)).collect();
    let detail: Vec<Option<&str>> = events.iter().map(|e| e.detail.as_deref()).collect();
    let st = tx
        .prepare_cached(
            "INSERT INTO audit_events (at, request_id, project_id, user_id, user_name, access_key, action, target, \
             status, detail) SELECT * FROM unnest($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
             $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::INTEGER[], $10::TEXT[])",
        )
        .await?;
    tx.execute(
        &st,
        &[
            &at,
            &col(|e| e.request_id.as_ref()),
            &col(|e| e.project_id.as_ref()),
            &col(|e| e.user_id.as_ref()),
            &col(|e| e.user_name.as_ref()),
            &keys,
            &col(|e| e.action.as_ref()),
            &col(|e| e.target.as_ref()),
            &status,
            &detail,
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl AuditStore for Postgres {
    async fn append_audit(&self, e: AuditEvent) -> StoreResult<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        insert_audit(&tx, &e).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_audit(
        &self,
        project: Option<&ProjectId>,
        since: Option<i64>,
        limit: u64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let client = self.pool.get().await?;
        let project = project.map(|p| p.as_str().to_owned());
        let rows = client
            .query(
                "SELECT at, request_id, project_id, user_id, user_name, access_key, action, target, status, detail \
                 FROM audit_events WHERE ($1::TEXT IS NULL OR project_id = $1) AND at >= $2 ORDER BY seq LIMIT $3",
                &[&project, &since.unwrap_or(i64::MIN), &(limit.min(i64::MAX as u64) as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let detail: Option<String> = r.try_get(9)?;
                Ok(AuditEvent {
                    at: r.try_get(0)?,
                    request_id: r.try_get(1)?,
                    project_id: r.try_get(2)?,
                    user_id: r.try_get(3)?,
                    user_name: r.try_get(4)?,
                    access_key: r.try_get(5)?,
                    action: r.try_get(6)?,
                    target: r.try_get(7)?,
                    status: r.try_get::<_, i32>(8)?.clamp(0, 999) as u16,
                    detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                })
            })
            .collect()
    }
}
