//! The Grafana dashboard: every query parses (`promtool check rules` over a generated rules
//! file holding each as a recording rule) and names only metrics the service exports (compared
//! with live scrapes of a SQLite and a PostgreSQL server that have served some requests).

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::harness::{Client, PROJECT, Server, prometheus_tool, repo_file};

/// Every `expr` in the dashboard (panels, rows' panels, any depth).
fn expressions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => expressions(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| expressions(x, out)),
        _ => {}
    }
}

/// The query as Prometheus receives it from Grafana (its variables filled in).
fn as_sent(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$job", "kafka-tasks")
}

/// Names in `expr` that are metrics: identifiers of the service's families, and `up`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("kafka_tasks_") || t.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo_file("deploy/grafana/kafka-tasks.json")).expect("dashboard");
    let v: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut out = Vec::new();
    expressions(&v["panels"], &mut out);
    out
}

#[test]
fn every_dashboard_query_parses_with_promtool() {
    let Some(promtool) = prometheus_tool("promtool") else { return };
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 20, "the dashboard has its queries: {}", exprs.len());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        // A JSON string is a YAML string.
        rules.push_str(&format!("      - record: dashboard:query_{i}\n        expr: {}\n", Value::String(as_sent(e))));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, rules).expect("rules written");
    let out = Command::new(promtool).args(["check", "rules"]).arg(&file).output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool refused a dashboard query:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Families that a fresh server exports only after an event the test cannot cause cheaply;
/// each must at least be a name of src/telemetry.rs.
const EVENT_ONLY: &[&str] = &["kafka_tasks_rate_limited_total"];

#[tokio::test]
async fn the_dashboard_names_only_metrics_the_service_exports() {
    let Some(pg) = crate::pg::FreshDatabase::create_or_skip("kt_dash").await else { return };
    let mut exported = BTreeSet::new();
    for db in ["sqlite", pg.url.as_str()] {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = if db == "sqlite" { format!("sqlite:{}", dir.path().join("t.db").display()) } else { db.to_owned() };
        let server = Server::start(&url, &dir.path().join("master.key"), &["--time-scale", "0.0001"]);
        let client = Client::new(dir.path());
        let inst = client.create(&server, 300).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        client.browse(&server, &inst).await;
        let res = kafka_tasks::tls::http_client()
            .get(format!("{}/v2/{PROJECT}/instances", server.base))
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), 401);
        // The store's gauges are sampled at start and every 5 s.
        exported.extend(server.metric_families().await);
    }
    let telemetry = std::fs::read_to_string(repo_file("src/telemetry.rs")).expect("src/telemetry.rs");
    for name in EVENT_ONLY {
        assert!(telemetry.contains(&format!("\"{name}\"")), "{name} is not a name of src/telemetry.rs");
        exported.insert((*name).to_owned());
    }
    let mut unknown = BTreeSet::new();
    for e in dashboard_exprs() {
        for name in metric_names(&e) {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|base| exported.contains(*base)))
                .unwrap_or(&name);
            if !exported.contains(family) {
                unknown.insert(name);
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the dashboard names metrics the service does not export: {unknown:?}\nexported: {exported:?}"
    );
}

#[test]
fn metric_names_are_found_in_queries() {
    let names = metric_names("sum by (le) (rate(kafka_tasks_x_bucket{job=\"kafka-tasks\"}[1m])) / process_open_fds");
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["kafka_tasks_x_bucket", "process_open_fds"]);
}
