//! Loading many records at once (benchmarks and imports).

use async_trait::async_trait;
use rusqlite::params;

use super::*;
use kafka_tasks_domain::TaskId;
use kafka_tasks_domain::instance::Instance;

#[async_trait]
impl BulkStore for Sqlite {
    async fn bulk_load(&self, instances: Vec<Instance>, tasks: Vec<NewTask>) -> StoreResult<()> {
        self.write(move |conn| {
            let mut st = conn.prepare_cached(
                "INSERT INTO instances (id, project_id, created_at, busy_task_id, doc) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for inst in &instances {
                let doc = serde_json::to_string(inst).map_err(json_error)?;
                st.execute(params![
                    inst.id.as_str(),
                    inst.project_id.as_str(),
                    inst.created_at,
                    inst.busy_task.as_ref().map(TaskId::as_str),
                    doc
                ])?;
            }
            for t in &tasks {
                insert_task(conn, t)?;
            }
            Ok(())
        })
        .await
    }
}
