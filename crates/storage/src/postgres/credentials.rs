//! Access keys and the master key check.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::*;
use kafka_tasks_domain::ProjectId;
use kafka_tasks_domain::Timestamp;

pub(super) const CREDENTIAL_COLUMNS: &str = "access_key, secret_sealed, project_id, user_id, user_name, role, created_at, \
     revoked_at, failed_attempts, locked_until";

pub(super) fn credential_from_row(r: &Row) -> StoreResult<CredentialRecord> {
    let role: String = r.try_get(5)?;
    Ok(CredentialRecord {
        access_key: r.try_get(0)?,
        secret_sealed: r.try_get(1)?,
        project_id: ProjectId::from_trusted(r.try_get(2)?),
        user_id: r.try_get(3)?,
        user_name: r.try_get(4)?,
        role: role.parse().map_err(corrupt)?,
        created_at: r.try_get(6)?,
        revoked_at: r.try_get(7)?,
        failed_attempts: r.try_get::<_, i32>(8)?.max(0) as u32,
        locked_until: r.try_get(9)?,
    })
}

pub(super) async fn insert_credential_row(tx: &Transaction<'_>, c: &CredentialRecord) -> StoreResult<()> {
    tx.execute(
        &format!("INSERT INTO credentials ({CREDENTIAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
        &[
            &c.access_key,
            &c.secret_sealed,
            &c.project_id.as_str(),
            &c.user_id,
            &c.user_name,
            &c.role.as_str(),
            &c.created_at,
            &c.revoked_at,
            &(c.failed_attempts.min(i32::MAX as u32) as i32),
            &c.locked_until,
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl CredentialStore for Postgres {
    async fn master_key_check(&self) -> StoreResult<Option<String>> {
        let client = self.pool.get().await?;
        let row = client.query_opt("SELECT check_value FROM master_key_check WHERE id = 1", &[]).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn record_master_key_check(&self, value: &str, now: Timestamp) -> StoreResult<String> {
        let now = now.ms();
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO master_key_check (id, check_value, created_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
                &[&value, &now],
            )
            .await?;
        Ok(client.query_one("SELECT check_value FROM master_key_check WHERE id = 1", &[]).await?.try_get(0)?)
    }

    async fn has_credentials(&self) -> StoreResult<bool> {
        let client = self.pool.get().await?;
        Ok(client.query_opt("SELECT 1 FROM credentials LIMIT 1", &[]).await?.is_some())
    }

    async fn insert_credential(&self, c: CredentialRecord) -> StoreResult<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        insert_credential_row(&tx, &c).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_first_credential(&self, c: CredentialRecord) -> StoreResult<bool> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Processes starting together on an empty database create one first key, not several.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FIRST_CREDENTIAL_LOCK]).await?;
        if tx.query_opt("SELECT 1 FROM credentials LIMIT 1", &[]).await?.is_some() {
            return Ok(false);
        }
        insert_credential_row(&tx, &c).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn get_credential(&self, access_key: &str) -> StoreResult<Option<CredentialRecord>> {
        let client = self.pool.get().await?;
        let st = client
            .prepare_cached(&format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE access_key = $1"))
            .await?;
        client.query_opt(&st, &[&access_key]).await?.map(|r| credential_from_row(&r)).transpose()
    }

    async fn list_credentials(&self) -> StoreResult<Vec<CredentialRecord>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(&format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY created_at, access_key"), &[])
            .await?;
        rows.iter().map(credential_from_row).collect()
    }

    async fn revoke_credential(&self, access_key: &str, now: Timestamp) -> StoreResult<bool> {
        let now = now.ms();
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE credentials SET revoked_at = $2 WHERE access_key = $1 AND revoked_at IS NULL",
                &[&access_key, &now],
            )
            .await?;
        Ok(n == 1)
    }
}
