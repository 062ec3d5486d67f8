//! Access keys and the master key check.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::*;
use kafka_tasks_domain::ProjectId;
use kafka_tasks_domain::Timestamp;

pub(super) const CREDENTIAL_COLUMNS: &str = "access_key, secret_sealed, project_id, user_id, user_name, role, created_at, \
     revoked_at, failed_attempts, locked_until";

pub(super) fn credential_from_row(r: &Row<'_>) -> rusqlite::Result<Result<CredentialRecord, StoreError>> {
    let role: String = r.get(5)?;
    let project: String = r.get(2)?;
    let rec = CredentialRecord {
        access_key: r.get(0)?,
        secret_sealed: r.get(1)?,
        project_id: ProjectId::from_trusted(project),
        user_id: r.get(3)?,
        user_name: r.get(4)?,
        role: kafka_tasks_domain::Role::Readonly,
        created_at: r.get(6)?,
        revoked_at: r.get(7)?,
        failed_attempts: r.get::<_, i64>(8)?.clamp(0, u32::MAX as i64) as u32,
        locked_until: r.get(9)?,
    };
    Ok(role.parse().map(|role| CredentialRecord { role, ..rec }).map_err(corrupt))
}

pub(super) fn insert_credential_row(conn: &Connection, c: &CredentialRecord) -> StoreResult<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO credentials ({CREDENTIAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?
    .execute(params![
        c.access_key,
        c.secret_sealed,
        c.project_id.as_str(),
        c.user_id,
        c.user_name,
        c.role.as_str(),
        c.created_at,
        c.revoked_at,
        c.failed_attempts as i64,
        c.locked_until
    ])?;
    Ok(())
}

#[async_trait]
impl CredentialStore for Sqlite {
    async fn master_key_check(&self) -> StoreResult<Option<String>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT check_value FROM master_key_check WHERE id = 1")?
                .query_row([], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn record_master_key_check(&self, value: &str, now: Timestamp) -> StoreResult<String> {
        let now = now.ms();
        let value = value.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO master_key_check (id, check_value, created_at) VALUES (1, ?1, ?2) ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![value, now])?;
            Ok(conn.prepare_cached("SELECT check_value FROM master_key_check WHERE id = 1")?.query_row([], |r| r.get(0))?)
        })
        .await
    }

    async fn has_credentials(&self) -> StoreResult<bool> {
        self.read(|conn| Ok(conn.prepare_cached("SELECT 1 FROM credentials LIMIT 1")?.exists([])?)).await
    }

    async fn insert_credential(&self, c: CredentialRecord) -> StoreResult<()> {
        self.write(move |conn| insert_credential_row(conn, &c)).await
    }

    async fn insert_first_credential(&self, c: CredentialRecord) -> StoreResult<bool> {
        self.write(move |conn| {
            if conn.prepare_cached("SELECT 1 FROM credentials LIMIT 1")?.exists([])? {
                return Ok(false);
            }
            insert_credential_row(conn, &c)?;
            Ok(true)
        })
        .await
    }

    async fn get_credential(&self, access_key: &str) -> StoreResult<Option<CredentialRecord>> {
        self.read(|conn| {
            let mut st =
                conn.prepare_cached(&format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE access_key = ?1"))?;
            st.query_row(params![access_key], credential_from_row).optional()?.transpose()
        })
        .await
    }

    async fn list_credentials(&self) -> StoreResult<Vec<CredentialRecord>> {
        self.read(|conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY created_at, access_key"
            ))?;
            let rows = st.query_map([], credential_from_row)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r??);
            }
            Ok(out)
        })
        .await
    }

    async fn revoke_credential(&self, access_key: &str, now: Timestamp) -> StoreResult<bool> {
        let now = now.ms();
        let ak = access_key.to_owned();
        self.write(move |conn| {
            let n = conn
                .prepare_cached("UPDATE credentials SET revoked_at = ?2 WHERE access_key = ?1 AND revoked_at IS NULL")?
                .execute(params![ak, now])?;
            Ok(n == 1)
        })
        .await
    }
}
