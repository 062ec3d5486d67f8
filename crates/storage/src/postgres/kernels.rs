//! Kernel builds the operator added.

use async_trait::async_trait;
use kafka_tasks_domain::Timestamp;

use super::*;

#[async_trait]
impl KernelStore for Postgres {
    async fn added_kernel_builds(&self, engine_version: &str) -> StoreResult<Vec<String>> {
        let client = self.pool.get().await?;
        let st =
            client.prepare_cached("SELECT build FROM kernel_builds WHERE engine_version = $1 ORDER BY seq").await?;
        client.query(&st, &[&engine_version]).await?.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    async fn add_kernel_build(&self, engine_version: &str, build: &str, now: Timestamp) -> StoreResult<bool> {
        let now = now.ms();
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "INSERT INTO kernel_builds (engine_version, build, added_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (engine_version, build) DO NOTHING",
                &[&engine_version, &build, &now],
            )
            .await?;
        Ok(n == 1)
    }
}
