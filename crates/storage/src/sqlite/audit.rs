//! The audit trail.

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::*;
use kafka_tasks_domain::ProjectId;

pub(super) fn insert_audit(conn: &Connection, e: &AuditEvent) -> StoreResult<()> {
    write_audit(conn, &e.storable())
}

/// Inserts an event made storable ([`AuditEvent::storable_with`] when its detail is already text).
pub(super) fn write_audit(conn: &Connection, e: &StorableAudit<'_>) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO audit_events (at, request_id, project_id, user_id, user_name, access_key, action, target, status, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![e.at, e.request_id, e.project_id, e.user_id, e.user_name, e.access_key, e.action, e.target, e.status, e.detail])?;
    Ok(())
}

#[async_trait]
impl AuditStore for Sqlite {
    async fn append_audit(&self, e: AuditEvent) -> StoreResult<()> {
        self.write(move |conn| insert_audit(conn, &e)).await
    }

    async fn list_audit(
        &self,
        project: Option<&ProjectId>,
        since: Option<i64>,
        limit: u64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let project = project.map(|p| p.as_str().to_owned());
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT at, request_id, project_id, user_id, user_name, access_key, action, target, status, detail \
                 FROM audit_events WHERE (?1 IS NULL OR project_id = ?1) AND at >= ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows =
                st.query_map(params![project, since.unwrap_or(i64::MIN), limit.min(i64::MAX as u64) as i64], |r| {
                    let detail: Option<String> = r.get(9)?;
                    Ok(AuditEvent {
                        at: r.get(0)?,
                        request_id: r.get(1)?,
                        project_id: r.get(2)?,
                        user_id: r.get(3)?,
                        user_name: r.get(4)?,
                        access_key: r.get(5)?,
                        action: r.get(6)?,
                        target: r.get(7)?,
                        status: r.get::<_, i64>(8)?.clamp(0, 999) as u16,
                        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                    })
                })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
