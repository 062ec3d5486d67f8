//! Kernel builds the operator added.

use async_trait::async_trait;
use kafka_tasks_domain::Timestamp;
use rusqlite::params;

use super::*;

#[async_trait]
impl KernelStore for Sqlite {
    async fn added_kernel_builds(&self, engine_version: &str) -> StoreResult<Vec<String>> {
        self.read(|conn| {
            let mut st =
                conn.prepare_cached("SELECT build FROM kernel_builds WHERE engine_version = ?1 ORDER BY seq")?;
            let rows = st.query_map(params![engine_version], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn add_kernel_build(&self, engine_version: &str, build: &str, now: Timestamp) -> StoreResult<bool> {
        let now = now.ms();
        let (engine_version, build) = (engine_version.to_owned(), build.to_owned());
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "INSERT INTO kernel_builds (engine_version, build, added_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (engine_version, build) DO NOTHING",
                )?
                .execute(params![engine_version, build, now])?;
            Ok(n == 1)
        })
        .await
    }
}
