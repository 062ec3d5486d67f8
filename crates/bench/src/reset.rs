//! `kafka-tasks-bench --reset`: what test control's reset (`POST …/test-control/reset`) costs
//! the store. Each round seeds `--reset-tasks` finished tasks in 100 instances and times
//! `reset_state` on them, in this process, without HTTP; prints each round and the median. Build with `--release`: the
//! figure is for people choosing whether to reset before every test.

use std::time::{Duration, Instant};

use super::BenchArgs;
use kafka_tasks::domain::{ProjectId, now_ms};
use kafka_tasks::storage::Storage;

pub async fn run(args: &BenchArgs, database: &str) -> anyhow::Result<()> {
    let project: ProjectId = "0123456789abcdef0123456789abcdef".parse().map_err(|_| anyhow::anyhow!("project"))?;
    let storage = Storage::open(database).await?;
    let per_instance = args.reset_tasks.div_ceil(100).max(1);
    let mut took: Vec<Duration> = Vec::new();
    for round in 0..args.reset_rounds.max(1) {
        super::seed::seed(&storage, &project, now_ms(), 0, 100, per_instance).await?;
        let started = Instant::now();
        storage.control.reset_state(None).await?;
        let t = started.elapsed();
        if !args.json {
            eprintln!("round {}: reset of {} tasks in {:.2} ms", round + 1, 100 * per_instance, ms(t));
        }
        took.push(t);
    }
    took.sort();
    let median = took[took.len() / 2];
    let max = took[took.len() - 1];
    if args.json {
        let line = serde_json::json!({
            "engine": args.engine, "tasks": 100 * per_instance, "rounds": took.len(),
            "reset_median_ms": ms(median), "reset_max_ms": ms(max),
        });
        println!("{line}");
    } else {
        println!(
            "kafka-tasks-bench --reset: {} ({}), {} tasks, {} rounds: median {:.2} ms, max {:.2} ms",
            args.engine,
            database,
            100 * per_instance,
            took.len(),
            ms(median),
            ms(max)
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
