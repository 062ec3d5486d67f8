//! A real Prometheus (Debian's `prometheus`) scraping real servers: the key series exist,
//! aggregate across the processes of a PostgreSQL deployment, and an induced failure fires the
//! matching alert in Prometheus's own alert state. Plus the dashboard's queries: each parses
//! with `promtool` and names only metrics the service exports.
//!
//! Skips (saying so) when `prometheus`/`promtool` are not installed, unless
//! `KAFKA_TASKS_REQUIRE_PROMETHEUS=1` or in CI (scripts/test.sh, which CI runs, installs them
//! and sets it before it runs every test binary). Each test is bounded (well under 60 s).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that meets the unexpected should stop there: a panic is its failure"
)]

mod dashboard;
mod harness;
extern crate kafka_tasks_testkit as kit;

use kit::{pg, serve};

use std::time::Duration;

use harness::{Client, Prometheus, Server, prometheus_tool, value};

/// Bound on each wait for Prometheus (a scrape and a rule evaluation every second).
const WAIT: Duration = Duration::from_secs(15);
const LIST_ROUTE: &str = "/v2/{project_id}/instances/{instance_id}/tasks";
const CREATE_ROUTE: &str = "/v2/kafka/{project_id}/instances";

/// Steps take a ten-thousandth of their realistic time (milliseconds); a create over 1000 GB fails at its allocation step.
const FLAGS: &[&str] = &["--time-scale", "0.0001", "--storage-pool-gb", "1000"];

/// Drives load over `servers` in turn: `n` good creates, each browsed; two unsigned requests.
async fn drive(client: &Client, servers: &[&Server], n: usize) -> Vec<String> {
    let mut made = Vec::new();
    for i in 0..n {
        let s = servers[i % servers.len()];
        let inst = client.create(s, 300).await;
        // The creation task ends within milliseconds (time scale 0); browse it either way.
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.browse(s, &inst).await;
        made.push(inst);
    }
    for s in servers {
        let res = kafka_tasks::tls::http_client()
            .get(format!("{}/v2/{}/instances", s.base, harness::PROJECT))
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), 401);
    }
    made
}

/// What both engines check once the load ran: series exist, the failure fires its alert.
async fn check(prom: &Prometheus, client: &Client, servers: &[&Server], engine: &str, n: usize) {
    let up = prom
        .wait_for("sum(up{job=\"kafka-tasks\"})", WAIT, |r| r.first().is_some_and(|v| value(v) == servers.len() as f64))
        .await;
    assert_eq!(up.len(), 1);
    let info = prom.query(&format!("count(kafka_tasks_build_info{{engine=\"{engine}\"}})")).await;
    assert_eq!(info.first().map(value), Some(servers.len() as f64), "{info:?}");
    // The outcome counters exist (at 0) before any failure, so a rate sees the first one.
    prom.wait_for("kafka_tasks_task_outcomes_total{operation=\"createInstance\",status=\"FAILED\"}", WAIT, |r| {
        r.len() == servers.len()
    })
    .await;

    drive(client, servers, n).await;

    // Requests aggregate by route template across the processes.
    let q = format!("sum by (route) (kafka_tasks_http_requests_total{{route=\"{LIST_ROUTE}\",status=\"2xx\"}})");
    prom.wait_for(&q, WAIT, |r| r.first().is_some_and(|v| value(v) == n as f64)).await;
    let per_process = prom.query(&format!("kafka_tasks_http_requests_total{{route=\"{LIST_ROUTE}\"}}")).await;
    assert_eq!(per_process.len(), servers.len(), "each process reports the route: {per_process:?}");
    let q = format!("sum by (route) (kafka_tasks_http_requests_total{{route=\"{CREATE_ROUTE}\"}})");
    prom.wait_for(&q, WAIT, |r| r.first().is_some_and(|v| value(v) == n as f64)).await;
    // Histograms aggregate too: a p99 over every process's buckets.
    let q = "histogram_quantile(0.99, sum by (le) (rate(kafka_tasks_http_request_duration_seconds_bucket[30s])))";
    prom.wait_for(q, WAIT, |r| r.first().is_some_and(|v| value(v) > 0.0)).await;
    let q = "sum(kafka_tasks_step_duration_seconds_count{operation=\"createInstance\"})";
    prom.wait_for(q, WAIT, |r| r.first().is_some_and(|v| value(v) >= n as f64)).await;
    prom.wait_for("sum(kafka_tasks_task_outcomes_total{status=\"SUCCESS\"})", WAIT, |r| {
        r.first().is_some_and(|v| value(v) == n as f64)
    })
    .await;
    prom.wait_for("sum(kafka_tasks_auth_failures_total{reason=\"missing_credentials\"})", WAIT, |r| {
        r.first().is_some_and(|v| value(v) == servers.len() as f64)
    })
    .await;
    for q in
        ["process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total", "kafka_tasks_queue_depth"]
    {
        let r = prom.wait_for(q, WAIT, |r| r.len() == servers.len()).await;
        assert!(r.iter().all(|v| value(v) >= 0.0), "{q}: {r:?}");
    }
    match engine {
        "sqlite" => {
            prom.wait_for("kafka_tasks_sqlite_commit_duration_seconds_count", WAIT, |r| r.len() == 1).await;
        }
        _ => {
            prom.wait_for("kafka_tasks_pg_pool_connections{state=\"idle\"}", WAIT, |r| r.len() == servers.len()).await;
        }
    }
    // Nothing has failed yet.
    assert!(prom.alerts().await.iter().all(|a| a["labels"]["alertname"] != "KafkaTasksOperationFailureRatio"));

    // A create beyond --storage-pool-gb fails at its allocation step (one on each process, so
    // that the ratio is well over the threshold however the window falls): the failure-ratio alert
    // (rules from deploy/prometheus/alerts.yml with short windows) fires for createInstance.
    for s in servers {
        client.create(s, 2000).await;
    }
    let alert = prom.wait_firing("KafkaTasksOperationFailureRatio", ("operation", "createInstance"), WAIT).await;
    assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
    assert!(alert["annotations"]["summary"].as_str().is_some_and(|s| s.contains("createInstance")), "{alert}");
}

#[tokio::test]
async fn prometheus_scrapes_a_sqlite_server_and_fires_the_failure_alert() {
    let Some(binary) = prometheus_tool("prometheus") else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite:{}", dir.path().join("t.db").display());
    let server = Server::start(&db, &dir.path().join("master.key"), FLAGS);
    let client = Client::new(dir.path());
    let prom = Prometheus::start(&binary, &[&server.addr]).await;
    check(&prom, &client, &[&server], "sqlite", 3).await;
}

#[tokio::test]
async fn prometheus_aggregates_two_postgresql_processes_and_fires_the_failure_alert() {
    let Some(binary) = prometheus_tool("prometheus") else { return };
    let Some(pg) = pg::FreshDatabase::create_or_skip("kt_prom").await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("master.key");
    let a = Server::start(&pg.url, &key, FLAGS);
    let b = Server::start(&pg.url, &key, FLAGS);
    let client = Client::new(dir.path());
    let prom = Prometheus::start(&binary, &[&a.addr, &b.addr]).await;
    check(&prom, &client, &[&a, &b], "postgres", 4).await;
}
