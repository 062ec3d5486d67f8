//! Three `serve` processes on one PostgreSQL database under a mixed workload sent round-robin;
//! one is killed with SIGKILL midway. Afterwards: every task is terminal, no step ran in two
//! places at once (from the step events every process logs), no scheduled task fired twice,
//! every 204'd delete stayed deleted, every acknowledged task exists, no instance is left busy
//! or in a state its tasks make impossible (one instance fails to create and gets operations
//! anyway), and every count equals the records paged through. A consumer follows the project's
//! event stream from before the first write, reconnecting at random to any live node with the
//! last id it got (cut off, too, by the kill): it must have received the whole log, in the
//! database's order, each event once; and the log must hold one event per committed change.
//!
//! PostgreSQL is `KAFKA_TASKS_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that meets the unexpected should stop there: a panic is its failure"
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_tasks::auth::IssuedCredential;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

const NEWER_KERNEL: &str = "2.7.1-h0.cbu.dms.102.r0";

extern crate kafka_tasks_testkit as kit;
use kit::{event_log, invariants, pg, rng, serve};

use event_log::{Logged, TaskRow, Truth};

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const BIN: &str = env!("CARGO_BIN_EXE_kafka-tasks");
/// The simulated resource pool of every node: a create beyond it fails at its allocation step.
const POOL_GB: u64 = 1000;

/// One `serve` process of the cluster.
type Node = serve::ServerProcess;

struct Cluster {
    nodes: Vec<Node>,
    cred: IssuedCredential,
    http: reqwest::Client,
    next: std::cell::Cell<usize>,
}

fn start_node(db: &str, key: &str, log: &Path) -> Node {
    let pool = POOL_GB.to_string();
    let args = ["--database", db, "--master-key", key, "--time-scale", "0.002", "--lease-ms", "1500"];
    let more = ["--poll-ms", "50", "--pool-size", "8", "--storage-pool-gb", &pool];
    // Nothing is pruned from the event log, so that a `missed` event is a fault; idle streams
    // write often, so that a node soon notices a stream the consumer closed.
    let events = ["--event-retention-secs", "315360000", "--event-retention-max", "1000000000"];
    let streams = ["--event-prune-ms", "3600000", "--event-keepalive-ms", "250"];
    Node::start(
        &[&args[..], &more[..], &events[..], &streams[..]].concat(),
        &[("KAFKA_TASKS_LOG", "info,kafka_tasks::engine=debug")],
        log,
    )
}

impl Cluster {
    fn alive(&self) -> Vec<&Node> {
        self.nodes.iter().filter(|n| n.is_started()).collect()
    }

    /// The next live node, round-robin.
    fn pick(&self) -> String {
        let alive = self.alive();
        let i = self.next.get();
        self.next.set(i + 1);
        alive[i % alive.len()].base.clone()
    }

    async fn call_on(&self, base: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let host = base.trim_start_matches("http://");
        let unsigned = [("content-type", "application/json"), ("host", host)];
        let now = chrono::Utc::now().timestamp_millis();
        let payload = kit::sign::Payload::Body(body.as_bytes());
        let headers = kit::sign::signed_headers(&self.cred, method.as_str(), path, &unsigned, payload, now);
        let mut req = self.http.request(method, format!("{base}{path}"));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let res = req.body(body).send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let base = self.pick();
        self.call_on(&base, method, path, body).await
    }
}

/// The index of the node whose log shows step `step` of `task` started.
async fn wait_for_step(nodes: &[Node], task: &str, step: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for (i, node) in nodes.iter().enumerate() {
            let text = std::fs::read_to_string(&node.log).unwrap_or_default();
            let found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|v| v["message"] == "step started" && v["task_id"] == task && v["step"].as_u64() == Some(step));
            if found {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no node started step {step} of {task}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every record of a view of the instance, paged 7 at a time, with the count the first page
/// gave (pages whose count differs are reported through a count of `u64::MAX`).
async fn page_all(cluster: &Cluster, inst: &str, view: &str) -> (u64, Vec<Value>) {
    let (mut start, limit) = (1, 7);
    let mut all = vec![];
    let mut first: Option<u64> = None;
    loop {
        let path = format!("/v2/{PROJECT}/instances/{inst}/{view}?limit={limit}&start={start}");
        let (s, v) = cluster.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        let count = v["task_count"]
            .as_str()
            .and_then(|c| c.parse::<u64>().ok())
            .or_else(|| v["job_count"].as_u64())
            .unwrap_or(u64::MAX);
        if first.is_some_and(|f| f != count) {
            first = Some(u64::MAX);
        }
        first.get_or_insert(count);
        let items = v["tasks"].as_array().or_else(|| v["jobs"].as_array()).cloned().unwrap_or_default();
        let n = items.len();
        all.extend(items);
        if n < limit || all.len() > 10_000 {
            return (first.unwrap_or(0), all);
        }
        start += limit;
    }
}

/// The live nodes, as the event consumer reaches them.
fn apis(cluster: &Cluster) -> Vec<serve::Api> {
    cluster.alive().iter().map(|n| serve::Api::new(&n.base, cluster.cred.clone())).collect()
}

/// How many events of the project the log holds now (blocking: the consumer asks in passing).
fn log_len(client: &tokio_postgres::Client) -> Option<usize> {
    let sql = "SELECT coalesce(sum(n), 0)::BIGINT FROM task_events WHERE project_id = $1";
    let row =
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(client.query_one(sql, &[&PROJECT])));
    usize::try_from(row.ok()?.get::<_, i64>(0)).ok()
}

/// The project's event log in the order streams read it, its tasks and its instances.
async fn read_stored(
    client: &tokio_postgres::Client,
) -> Result<(Vec<Logged>, HashMap<String, TaskRow>, HashSet<String>), tokio_postgres::Error> {
    // A row holds the events of one write about one task (migration 0019); a row the log never
    // writes is kept as it is, for the checks to report.
    let mut log = Vec::new();
    let sql = "SELECT kind, task_id, instance_id, data, n FROM task_events WHERE project_id = $1 ORDER BY xid, id";
    for r in client.query(sql, &[&PROJECT]).await? {
        let (kind, task_id, instance_id, data, n): (String, String, String, String, i32) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        match Logged::of_row(kind.clone(), &task_id, &instance_id, data.clone(), i64::from(n)) {
            Some(events) => log.extend(events),
            None => log.push(Logged { kind, task_id, instance_id, data }),
        }
    }
    let tasks = client
        .query(
            "SELECT id, instance_id, name, status, created_at, in_background FROM tasks WHERE project_id = $1",
            &[&PROJECT],
        )
        .await?
        .iter()
        .map(|r| {
            let row = TaskRow {
                instance_id: r.get(1),
                name: r.get(2),
                status: r.get(3),
                created_at: r.get(4),
                in_background: r.get(5),
            };
            (r.get(0), row)
        })
        .collect();
    let instances = client
        .query("SELECT id FROM instances WHERE project_id = $1", &[&PROJECT])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((log, tasks, instances))
}

#[derive(Debug, Clone)]
struct StepRun {
    owner: String,
    start: i64,
    end: Option<i64>,
    outcome: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_one_killed_every_task_ends_once() {
    // Declared first, dropped last: after the cluster, whose Drop stops the nodes.
    let Some(fresh) = pg::FreshDatabase::create_or_skip("kt_cluster").await else { return };
    let db = fresh.url.clone();
    let key = hex::encode(uuid::Uuid::new_v4().as_bytes()).repeat(2);
    let dir = tempfile::tempdir().expect("dir");

    // The operator's key, made before any node starts (so no node makes a first admin key).
    let out = Command::new(BIN)
        .args(["credentials", "create", "--project-id", PROJECT, "--user-name", "ops", "--role", "admin"])
        .args(["--database", &db, "--master-key", &key])
        .output()
        .expect("cli");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cred: IssuedCredential = serde_json::from_slice(&out.stdout).expect("credential JSON");

    let nodes = (0..3).map(|i| start_node(&db, &key, &dir.path().join(format!("node{i}.log")))).collect();
    let mut cluster = Cluster { nodes, cred, http: kafka_tasks::tls::http_client(), next: 0.into() };
    let started = Instant::now();

    // The event consumer, its stream open on the empty log before the first write.
    let (client, connection) = tokio_postgres::connect(&db, tokio_postgres::NoTls).await.expect("PostgreSQL is up");
    tokio::spawn(connection);
    let client = Arc::new(client);
    let (servers, servers_rx) = watch::channel(apis(&cluster));
    let (settled, settled_rx) = watch::channel(false);
    let (opened, is_open) = oneshot::channel();
    let counter = client.clone();
    let consumer = tokio::spawn(event_log::consume(event_log::Follow {
        path: format!("/v2/{PROJECT}/tasks/events"),
        servers: servers_rx,
        log_len: Arc::new(move || log_len(&counter)),
        stop: settled_rx,
        opened: Some(opened),
        rng: rng::Rng::new(rng::Rng::seed_from_env("KAFKA_TASKS_CLUSTER_SEED")),
    }));
    let open = tokio::time::timeout(Duration::from_secs(20), is_open).await;
    assert!(matches!(open, Ok(Ok(()))), "the event stream did not open");

    // Instances, created through different nodes.
    let mut instances = vec![];
    for i in 0..6 {
        let body = json!({"name": format!("kafka-{i}"), "engine_version": "2.7", "broker_num": 3, "storage_space": 300, "product_id": "p"});
        let (status, v) =
            cluster.call(reqwest::Method::POST, &format!("/v2/kafka/{PROJECT}/instances"), Some(body)).await;
        assert_eq!(status, 200, "{v}");
        instances.push(v["instance_id"].as_str().expect("id").to_owned());
    }

    // One instance fails to create (beyond the pool); the workload's operations reach it anyway,
    // scheduled ones included, and must leave it CREATEFAILED.
    {
        let body = json!({"name": "kafka-doomed", "engine_version": "2.7", "broker_num": 3, "storage_space": POOL_GB * 5, "product_id": "p"});
        let (status, v) =
            cluster.call(reqwest::Method::POST, &format!("/v2/kafka/{PROJECT}/instances"), Some(body)).await;
        assert_eq!(status, 200, "{v}");
        instances.push(v["instance_id"].as_str().expect("id").to_owned());
    }

    let upgrade_target = {
        let body = json!({"name": "kafka-upgrade", "engine_version": "2.7", "broker_num": 3, "storage_space": 300, "product_id": "p"});
        let (status, v) =
            cluster.call(reqwest::Method::POST, &format!("/v2/kafka/{PROJECT}/instances"), Some(body)).await;
        assert_eq!(status, 200, "{v}");
        v["instance_id"].as_str().expect("id").to_owned()
    };
    // A newer kernel build, so that the instance (created on the latest) can be upgraded.
    let storage = kafka_tasks::storage::Storage::open(&db).await.expect("database opens");
    kafka_tasks::cli::add_kernel_build(&storage, "2.7", NEWER_KERNEL).await.expect("build added");
    let mut acknowledged: HashSet<String> = HashSet::new();
    let mut scheduled: HashSet<String> = HashSet::new();
    let mut deleted: HashSet<String> = HashSet::new();
    let mut deleted_from: HashMap<String, String> = HashMap::new();
    let mut killed_at: Option<(String, i64)> = None;
    let mut busy_refusals = 0;
    for round in 0..30 {
        if round == 12 {
            // SIGKILL one node midway, with tasks in flight: the node found running the long step
            // of an upgrade, which must then finish elsewhere.
            let (s, v) = cluster
                .call(
                    reqwest::Method::POST,
                    &format!("/v2/{PROJECT}/kafka/instances/{upgrade_target}/upgrade"),
                    Some(json!({})),
                )
                .await;
            assert_eq!(s, 200, "{v}");
            let job = v["job_id"].as_str().expect("job").to_owned();
            acknowledged.insert(job.clone());
            let victim = wait_for_step(&cluster.nodes, &job, 1).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let node = &mut cluster.nodes[victim];
            let owner_log = node.log.clone();
            assert!(node.is_started(), "the victim is alive");
            let at = chrono::Utc::now().timestamp_millis();
            node.kill9();
            killed_at = Some((owner_log.display().to_string(), at));
            servers.send_replace(apis(&cluster));
        }
        for (i, inst) in instances.iter().enumerate() {
            let base = format!("/v2/{PROJECT}/instances/{inst}");
            let (path, body) = match (round + i) % 5 {
                0 => (format!("{base}/autotopic"), json!({"enable_auto_topic": round % 2 == 0})),
                1 => (
                    format!("{base}/configs"),
                    json!({"kafka_configs": [{"name": "log.retention.hours", "value": format!("{}", 24 + round)}]}),
                ),
                2 => (
                    format!("/v2/{PROJECT}/kafka/instances/{inst}/reassign"),
                    json!({"reassignments": [{"topic": "t", "brokers": [0, 1]}]}),
                ),
                3 if round % 3 == 0 => {
                    let at = chrono::Utc::now().timestamp_millis() + 1_500;
                    (
                        format!("/v2/{PROJECT}/kafka/instances/{inst}/reassign"),
                        json!({"reassignments": [{"topic": "s", "brokers": [1, 2]}], "is_schedule": true, "execute_at": at}),
                    )
                }
                _ => (format!("/v2/{PROJECT}/instances/action"), json!({"action": "restart", "instances": [inst]})),
            };
            let (status, v) = cluster.call(reqwest::Method::POST, &path, Some(body.clone())).await;
            let status = if path.ends_with("/configs") {
                let (s, v2) = cluster.call(reqwest::Method::PUT, &path, Some(body)).await;
                if s == 200 {
                    acknowledged.insert(v2["job_id"].as_str().expect("job").to_owned());
                }
                s
            } else {
                status
            };
            match status {
                200 => {
                    if let Some(j) = v["job_id"].as_str() {
                        acknowledged.insert(j.to_owned());
                    }
                    if let Some(s) = v["schedule_id"].as_str() {
                        acknowledged.insert(s.to_owned());
                        scheduled.insert(s.to_owned());
                    }
                    if v["results"][0]["result"] == "failed" {
                        busy_refusals += 1;
                    }
                }
                400 | 405 => busy_refusals += 1,
                other => panic!("unexpected {other}: {v}"),
            }
            // Delete a finished task of this instance now and then.
            if round % 4 == 3 {
                let (_, list) = cluster.call(reqwest::Method::GET, &format!("{base}/tasks?limit=100"), None).await;
                let done = list["tasks"].as_array().and_then(|ts| {
                    ts.iter().find(|t| t["status"] == "SUCCESS" && t["name"] != "createInstance").cloned()
                });
                if let Some(t) = done {
                    let id = t["id"].as_str().expect("id").to_owned();
                    let (s, v) = cluster.call(reqwest::Method::DELETE, &format!("{base}/tasks/{id}"), None).await;
                    assert!(s == 204 || s == 404, "{s} {v}");
                    if s == 204 {
                        deleted_from.insert(id.clone(), inst.clone());
                        deleted.insert(id);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(acknowledged.len() > 40, "the workload did work: {} tasks, {busy_refusals} refusals", acknowledged.len());

    instances.push(upgrade_target.clone());

    // Everything ends, taken over from the dead node where needed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut all_tasks: BTreeMap<String, Value> = BTreeMap::new();
    loop {
        all_tasks.clear();
        for inst in &instances {
            for view in ["tasks", "scheduled-tasks"] {
                let (s, v) = cluster
                    .call(reqwest::Method::GET, &format!("/v2/{PROJECT}/instances/{inst}/{view}?limit=100"), None)
                    .await;
                assert_eq!(s, 200, "{v}");
                let items = v["tasks"].as_array().or_else(|| v["jobs"].as_array()).cloned().unwrap_or_default();
                for t in items {
                    all_tasks.insert(t["id"].as_str().unwrap_or_default().to_owned(), t);
                }
            }
        }
        let open: Vec<&Value> = all_tasks
            .values()
            .filter(|t| !["SUCCESS", "FAILED", "CANCELLED"].contains(&t["status"].as_str().unwrap_or("")))
            .collect();
        if open.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "tasks never ended: {open:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    settled.send_replace(true);
    let consumed = match tokio::time::timeout(Duration::from_secs(60), consumer).await {
        Ok(Ok(consumed)) => consumed,
        other => panic!("the event consumer did not stop by itself: {other:?}"),
    };

    // The upgrade interrupted by the kill finished elsewhere, once.
    let (_, upgraded) =
        cluster.call(reqwest::Method::GET, &format!("/v2/{PROJECT}/instances/{upgrade_target}"), None).await;
    assert_eq!(upgraded["engine_version"], "2.7");
    let (_, versions) = cluster
        .call(reqwest::Method::GET, &format!("/v2/{PROJECT}/kafka/instances/{upgrade_target}/upgrade"), None)
        .await;
    assert_eq!(versions["current_version"], NEWER_KERNEL, "{versions}");
    let (_, ups) = cluster
        .call(reqwest::Method::GET, &format!("/v2/{PROJECT}/instances/{upgrade_target}/tasks?limit=100"), None)
        .await;
    assert_eq!(ups["tasks"][0]["name"], "upgradeInstance");
    assert_eq!(ups["tasks"][0]["status"], "SUCCESS");

    // Every acknowledged task exists unless we deleted it; every 204'd delete stayed deleted.
    for id in &acknowledged {
        assert!(all_tasks.contains_key(id) || deleted.contains(id), "acknowledged task {id} is missing");
    }
    for id in &deleted {
        assert!(!all_tasks.contains_key(id), "deleted task {id} came back");
    }
    // No instance busy or in an impossible state; counts equal the records paged through;
    // deleted tasks answer 404. Every failure is listed, after the checks below have run.
    let mut problems: Vec<String> = vec![];
    let (s, listed) = cluster.call(reqwest::Method::GET, &format!("/v2/{PROJECT}/instances"), None).await;
    assert_eq!(s, 200, "{listed}");
    let docs = listed["instances"].as_array().cloned().unwrap_or_default();
    for inst in &instances {
        if !docs.iter().any(|d| d["instance_id"] == inst.as_str()) {
            problems.push(format!("acknowledged instance {inst} is missing"));
        }
    }
    for doc in &docs {
        let inst = doc["instance_id"].as_str().unwrap_or_default();
        let background = page_all(&cluster, inst, "tasks").await;
        let scheduled = page_all(&cluster, inst, "scheduled-tasks").await;
        for (view, (count, items)) in [("tasks", &background), ("scheduled-tasks", &scheduled)] {
            problems.extend(invariants::count_problem(&format!("{view} of {inst}"), *count, items));
        }
        problems.extend(invariants::instance_problems(doc, &background.1, POOL_GB, 0));
    }
    for (id, inst) in &deleted_from {
        let (s, v) =
            cluster.call(reqwest::Method::GET, &format!("/v2/{PROJECT}/instances/{inst}/tasks/{id}"), None).await;
        if s != 404 {
            problems.push(format!("task {id}, deleted with a 204, answers {s} {v}"));
        }
    }

    // Any live node gives the same answer.
    let alive: Vec<String> = cluster.alive().iter().map(|n| n.base.clone()).collect();
    let path = format!("/v2/{PROJECT}/instances/{}/tasks?limit=100", instances[0]);
    let a = cluster.call_on(&alive[0], reqwest::Method::GET, &path, None).await;
    let b = cluster.call_on(&alive[1], reqwest::Method::GET, &path, None).await;
    assert_eq!(a, b);

    // From the step events of all three processes: no step ran in two places at once.
    let (killed_log, kill_time) = killed_at.expect("a node was killed");
    let mut runs: HashMap<(String, u64), Vec<StepRun>> = HashMap::new();
    let mut starts: HashMap<String, usize> = HashMap::new();
    let mut open_by_owner: HashMap<(String, u64), usize> = HashMap::new();
    let mut killed_owners = HashSet::new();
    for node in &cluster.nodes {
        let file = std::fs::File::open(&node.log).expect("log");
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            let task = v["task_id"].as_str().unwrap_or_default().to_owned();
            let owner = v["owner"].as_str().unwrap_or_default().to_owned();
            let at = v["at"].as_i64().unwrap_or_default();
            match v["message"].as_str() {
                Some("task claimed") if v["started"] == true => *starts.entry(task).or_default() += 1,
                Some("step started") => {
                    if node.log.display().to_string() == killed_log {
                        killed_owners.insert(owner.clone());
                    }
                    let key = (task, v["step"].as_u64().unwrap_or(u64::MAX));
                    let list = runs.entry(key.clone()).or_default();
                    open_by_owner.insert((format!("{}|{}", key.0, owner), key.1), list.len());
                    list.push(StepRun { owner, start: at, end: None, outcome: String::new() });
                }
                Some("step ended") => {
                    let key = (task.clone(), v["step"].as_u64().unwrap_or(u64::MAX));
                    if let Some(i) = open_by_owner.remove(&(format!("{task}|{owner}"), key.1)) {
                        let run = &mut runs.get_mut(&key).expect("started")[i];
                        run.end = Some(at);
                        run.outcome = v["outcome"].as_str().unwrap_or_default().to_owned();
                    }
                }
                _ => {}
            }
        }
    }
    assert!(!runs.is_empty(), "no step events were logged");
    let mut taken_over = 0;
    for ((task, step), mut list) in runs {
        for r in &mut list {
            if r.end.is_none() {
                assert!(killed_owners.contains(&r.owner), "a live process left step {step} of {task} open: {r:?}");
                r.end = Some(kill_time);
            }
        }
        list.sort_by_key(|r| r.start);
        for pair in list.windows(2) {
            assert!(
                pair[1].start >= pair[0].end.unwrap_or(i64::MAX),
                "step {step} of {task} ran twice at once: {list:?}"
            );
        }
        let completed = list.iter().filter(|r| r.outcome != "lost" && !r.outcome.is_empty()).count();
        assert!(completed <= 1, "step {step} of {task} completed twice: {list:?}");
        if list.len() > 1 {
            taken_over += 1;
        }
    }
    assert!(taken_over >= 1, "the killed node held no step: the test proved nothing about takeover");
    for (task, n) in &starts {
        assert_eq!(*n, 1, "task {task} was started {n} times");
    }
    for id in &scheduled {
        if !deleted.contains(id) {
            assert_eq!(starts.get(id), Some(&1), "scheduled task {id} fired {:?} times", starts.get(id));
        }
    }

    // The event log against the tables and what the clients were told; the stream against the log.
    let (log, tasks, stored_instances) = read_stored(&client).await.expect("the log and the tables read");
    let truth = Truth {
        tasks,
        instances: stored_instances,
        acked_instances: instances.iter().cloned().collect(),
        acked: acknowledged.clone(),
        deleted: deleted.iter().map(|id| (id.clone(), "SUCCESS".to_owned())).collect(),
        unsure_deleted: HashSet::new(),
    };
    problems.extend(event_log::log_problems(&log, &truth).into_iter().map(|p| format!("event log: {p}")));
    let received = event_log::stream_problems(&consumed.received, &log, consumed.start);
    problems.extend(received.into_iter().chain(consumed.problems).map(|p| format!("event stream: {p}")));
    eprintln!(
        "{} tasks acknowledged, {} scheduled, {} deleted, {busy_refusals} refused while busy, {taken_over} steps taken \
         over; {} events logged, {} received over {} streams ({} closed by the consumer, {} cut, {} resumed by \
         ?after=); {:?}",
        acknowledged.len(),
        scheduled.len(),
        deleted.len(),
        log.len(),
        consumed.received.len(),
        consumed.streams,
        consumed.dropped,
        consumed.cut,
        consumed.by_query,
        started.elapsed()
    );
    assert!(problems.is_empty(), "{} end checks failed:\n  {}", problems.len(), problems.join("\n  "));
}
