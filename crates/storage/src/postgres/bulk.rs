//! Loading many records at once (benchmarks and imports).

use async_trait::async_trait;

use super::*;
use crate::paging::bucket_of;
use kafka_tasks_domain::TaskId;
use kafka_tasks_domain::instance::Instance;
use kafka_tasks_domain::placement::views_of;

#[async_trait]
impl BulkStore for Postgres {
    async fn bulk_load(&self, instances: Vec<Instance>, tasks: Vec<NewTask>) -> StoreResult<()> {
        use tokio_postgres::binary_copy::BinaryCopyInWriter;
        use tokio_postgres::types::Type;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let sink =
            tx.copy_in("COPY instances (id, project_id, created_at, busy_task_id, doc) FROM STDIN BINARY").await?;
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(
            sink,
            &[Type::TEXT, Type::TEXT, Type::INT8, Type::TEXT, Type::TEXT]
        ));
        for inst in &instances {
            let doc = serde_json::to_string(inst).map_err(json_error)?;
            let busy = inst.busy_task.as_ref().map(TaskId::as_str);
            writer
                .as_mut()
                .write(&[&inst.id.as_str(), &inst.project_id.as_str(), &inst.created_at, &busy, &doc])
                .await?;
        }
        writer.as_mut().finish().await?;
        let sink = tx.copy_in(&format!("COPY tasks ({TASK_INSERT_COLUMNS}) FROM STDIN BINARY")).await?;
        let types = [
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::BOOL,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
        ];
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
        for t in &tasks {
            writer.as_mut().write(&TaskRow::new(t)?.values()).await?;
        }
        writer.as_mut().finish().await?;
        let mut counts: std::collections::HashMap<(&str, i16, i64), i64> = std::collections::HashMap::new();
        let mut totals: std::collections::HashMap<(&str, i16), i64> = std::collections::HashMap::new();
        for t in &tasks {
            for view in views_of(&t.record) {
                let key = (t.record.instance_id.as_str(), view.code() as i16);
                *counts.entry((key.0, key.1, bucket_of(t.record.created_at))).or_default() += 1;
                *totals.entry(key).or_default() += 1;
            }
        }
        let st = tx
            .prepare_cached(
                "INSERT INTO task_totals (instance_id, view, n) VALUES ($1, $2, $3) \
                 ON CONFLICT (instance_id, view, shard) DO UPDATE SET n = task_totals.n + excluded.n",
            )
            .await?;
        for ((inst, view), n) in totals {
            tx.execute(&st, &[&inst, &view, &n]).await?;
        }
        let st = tx
            .prepare_cached(
                "INSERT INTO task_buckets (instance_id, view, bucket, n) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (instance_id, view, bucket, shard) DO UPDATE SET n = task_buckets.n + excluded.n",
            )
            .await?;
        for ((inst, view, bucket), n) in counts {
            tx.execute(&st, &[&inst, &view, &bucket, &n]).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
