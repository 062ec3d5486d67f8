//! `kafka-tasks-bench --prune`: what pruning costs the API. One project holds the records a
//! retention policy removes (`--prune-instances` × `--prune-tasks-per-instance`, spread over
//! the last year, all but the last day's pruned by `max_age_days: 1`); another holds the
//! instance the API calls read and delete. ShowBackgroundTask, ListBackgroundTasks and
//! DeleteBackgroundTask are measured on an idle server, then again, round after round, while
//! the pruner works through the first project with the default batch and pause.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::load::{self, Call, CallMaker, Measured, Target};
use super::{BenchArgs, cpu_seconds, get, seed, start_server_with};
use kafka_tasks::auth::keys::MasterKey;
use kafka_tasks::domain::retention::RetentionPolicy;
use kafka_tasks::domain::{InstanceId, ProjectId, now_ms};
use kafka_tasks::storage::{AuditEvent, Storage, TaskQuery, View};

/// The records left in the pruned project's instances (their running totals).
async fn remaining(storage: &Storage, project: &ProjectId, instances: &[InstanceId]) -> anyhow::Result<u64> {
    let mut n = 0;
    for i in instances {
        let q = TaskQuery {
            project_id: project.clone(),
            instance_id: i.clone(),
            view: View::Background,
            created_from: None,
            created_to: None,
            offset: 0,
            limit: 1,
        };
        n += storage.tasks.list_tasks(&q).await?.map_or(0, |(total, _)| total);
    }
    Ok(n)
}

pub async fn run(args: &BenchArgs, database: &str, work: &std::path::Path) -> anyhow::Result<()> {
    let key_hex = hex::encode(uuid::Uuid::new_v4().as_bytes()).repeat(2);
    let master = MasterKey::from_hex(&key_hex)?;
    let api_project: ProjectId = "0123456789abcdef0123456789abcdef".parse().map_err(|_| anyhow::anyhow!("project"))?;
    let pruned_project: ProjectId =
        "fedcba9876543210fedcba9876543210".parse().map_err(|_| anyhow::anyhow!("project"))?;
    let storage = Storage::open(database).await?;
    let seed_started = Instant::now();
    let cred = super::bench_credential(&storage, &master, &api_project).await?;
    let (others, per_other) = (args.instances.min(100), args.tasks_per_instance.min(1_000));
    let api = seed::seed(&storage, &api_project, now_ms(), args.hot_tasks, others, per_other).await?;
    let doomed =
        seed::seed(&storage, &pruned_project, now_ms(), 0, args.prune_instances, args.prune_tasks_per_instance).await?;
    let mut doomed_instances = doomed.others.clone();
    doomed_instances.push(doomed.hot.clone());
    let before = remaining(&storage, &pruned_project, &doomed_instances).await?;
    eprintln!(
        "seeded {} records to prune and {} to call in {:.1} s",
        before,
        args.hot_tasks + others * per_other,
        seed_started.elapsed().as_secs_f64()
    );

    let log = work.join("server.log");
    let (server, _) = start_server_with(database, &key_hex, &log, &["--retention-interval-ms", "500"]).await?;
    let pid = server.child.id().to_string();
    let target = Target {
        addr: server.addr,
        access_key: cred.access_key.clone(),
        secret_key: cred.secret_key.clone(),
        algorithm: kafka_tasks::auth::signature::Algorithm::Sha256,
    };
    let dur = Duration::from_secs_f64(args.seconds);
    let hot_base = format!("/v2/{}/instances/{}/tasks", api_project.as_str(), api.hot.as_str());
    let sample = Arc::new(api.hot_sample.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>());
    let pick = |w: usize, i: u64, n: usize| {
        ((w as u64).wrapping_mul(7919).wrapping_add(i.wrapping_mul(104_729)) % n as u64) as usize
    };
    let (s, b) = (sample.clone(), hot_base.clone());
    let show: CallMaker = Arc::new(move |w, i| get(format!("{b}/{}", s[pick(w, i, s.len())])));
    let b = hot_base.clone();
    let list: CallMaker = Arc::new(move |_, _| get(format!("{b}?start=1&limit=10")));
    let p = api_project.as_str().to_owned();
    let victims: Arc<Vec<String>> = Arc::new(
        api.others
            .iter()
            .zip(&api.other_tasks)
            .flat_map(|(i, ts)| ts.iter().map(|t| format!("/v2/{p}/instances/{i}/tasks/{t}")).collect::<Vec<_>>())
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let delete: CallMaker = Arc::new(move |_, _| {
        let n = next.fetch_add(1, Ordering::Relaxed);
        victims.get(n).map(|path| Call { method: "DELETE", path_and_query: path.clone(), body: None })
    });
    let ops: [(&str, CallMaker, u16); 3] = [
        ("ShowBackgroundTask", show, 200),
        ("ListBackgroundTasks page 1", list, 200),
        ("DeleteBackgroundTask", delete, 204),
    ];
    let healthz: CallMaker = Arc::new(|_, _| get("/healthz".into()));
    load::run(&target, args.connections, Duration::from_millis(500), healthz, 200, None).await;

    let mut idle: Vec<Measured> = Vec::new();
    for (_, make, status) in &ops {
        idle.push(load::run(&target, args.connections, dur, make.clone(), *status, None).await);
    }

    // The policy, straight into the store as an admin's PUT would write it.
    let policy = RetentionPolicy { max_age_days: Some(1), ..Default::default() };
    let event = AuditEvent {
        at: now_ms(),
        request_id: "bench".into(),
        project_id: pruned_project.as_str().into(),
        user_id: "bench".into(),
        user_name: "bench".into(),
        access_key: None,
        action: "kafka-tasks:retention:set".into(),
        target: pruned_project.as_str().into(),
        status: 200,
        detail: None,
    };
    storage
        .retention
        .put_retention(&pruned_project, Some(policy), kafka_tasks::domain::Timestamp::now(), event)
        .await?;
    let started = Instant::now();
    let cpu0 = cpu_seconds(&pid);
    let mut during: Vec<Vec<Measured>> = vec![Vec::new(), Vec::new(), Vec::new()];
    let mut last = before;
    let mut still = 0;
    loop {
        for (k, (_, make, status)) in ops.iter().enumerate() {
            during[k].push(load::run(&target, args.connections, dur, make.clone(), *status, None).await);
        }
        let now_left = remaining(&storage, &pruned_project, &doomed_instances).await?;
        still = if now_left == last { still + 1 } else { 0 };
        last = now_left;
        // Done once two rounds in a row (several pruning intervals) removed nothing.
        if still >= 2 || started.elapsed() > Duration::from_secs(3_600) {
            break;
        }
    }
    let prune_secs = started.elapsed().as_secs_f64();
    let server_cpu = (cpu_seconds(&pid) - cpu0) / prune_secs * 100.0;
    let pruned = before - last;
    drop(server);

    println!(
        "kafka-tasks-bench --prune: {}, {} records pruned of {} ({} left: the last day's), {} connections, {} s per \
         operation and round",
        args.engine, pruned, before, last, args.connections, args.seconds
    );
    println!(
        "pruning ran alongside the calls for {:.0} s (including two quiet rounds at the end): {:.0} records/s; \
         server CPU {:.0} %",
        prune_secs,
        pruned as f64 / prune_secs.max(1e-9),
        server_cpu
    );
    println!(
        "{:<30} {:>10} {:>9} {:>9} {:>10} {:>10} {:>12} {:>7}",
        "operation", "idle req/s", "idle p50", "idle p99", "prune p50", "prune p99", "prune p99max", "errors"
    );
    for (k, (name, _, _)) in ops.iter().enumerate() {
        let rounds = &during[k];
        let n = rounds.len().max(1) as f64;
        let p50 = rounds.iter().map(|m| m.p50_ms).sum::<f64>() / n;
        let p99 = rounds.iter().map(|m| m.p99_ms).sum::<f64>() / n;
        let p99max = rounds.iter().map(|m| m.p99_ms).fold(0.0, f64::max);
        let errors: u64 = rounds.iter().map(|m| m.errors).sum::<u64>() + idle[k].errors;
        println!(
            "{:<30} {:>10.0} {:>9.2} {:>9.2} {:>10.2} {:>10.2} {:>12.2} {:>7}",
            name,
            idle[k].rps(),
            idle[k].p50_ms,
            idle[k].p99_ms,
            p50,
            p99,
            p99max,
            errors
        );
    }
    Ok(())
}
