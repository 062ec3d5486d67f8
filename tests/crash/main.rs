//! Crash loop on SQLite: the built binary under a mixed concurrent workload (instances created,
//! some of them failing, config changes, restarts, resizes, scheduled operations moved and
//! cancelled, finished tasks and instances deleted), killed with SIGKILL at a random moment,
//! started again on the same database and left to settle. Then, from the API and the file:
//! every acknowledged task exists and has ended (unless a 204 deleted it), no 204'd delete came
//! back, no instance is busy or in a state its tasks make impossible, every `task_count` and
//! `job_count` equals the records paged through, and `PRAGMA integrity_check` says ok.
//!
//! Meanwhile a consumer follows the project's event stream, closing it at random and cut off by
//! the kill, resuming each time with the last id it got: it must have received exactly the
//! events the database logged from where it started, in order, each once; and the log must hold
//! one event per committed change ([`event_log`]). A pager pages through the background tasks
//! of some instances: it must list no task that never existed, none after its delete was
//! answered, and skip none that stayed ([`paging`]). The planted-fault tests ([`planted`]) show
//! that each of these checks catches what it is meant to.
//!
//! Bounded: `KAFKA_TASKS_CRASH_RUNS` runs (default 5); `KAFKA_TASKS_CRASH_SEED` replays a seed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that meets the unexpected should stop there: a panic is its failure"
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

extern crate kafka_tasks_testkit as kit;
mod paging;
#[cfg(test)]
mod planted;

use kit::{event_log, invariants, rng, serve};

use event_log::{Logged, TaskRow, Truth};
use invariants::is_terminal;
use paging::{Ack, DeleteAttempt, Facts};
use rng::Rng;
use serve::{Api, PROJECT, Reply, ServerProcess, compact_time, now_ms};
use tokio::sync::watch;

/// The master key of every process of the loop, given through `KAFKA_TASKS_MASTER_KEY`.
const MASTER_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// The simulated resource pool: creates and resizes beyond it fail at their allocation step.
const POOL_GB: u64 = 1000;
const WORKERS: usize = 6;

fn runs() -> u64 {
    std::env::var("KAFKA_TASKS_CRASH_RUNS").ok().and_then(|s| s.parse().ok()).filter(|n| *n > 0).unwrap_or(5)
}

/// What the clients were told, and what they cannot know (requests cut off by the kill).
#[derive(Default)]
struct Ledger {
    /// Instances whose creation was acknowledged.
    instances: Vec<String>,
    /// Acknowledged tasks (`job_id` / `schedule_id`): id → (instance, what).
    acked: BTreeMap<String, (String, &'static str)>,
    /// When each acknowledgement came (tasks and instances).
    acked_at: HashMap<String, Instant>,
    /// Acknowledged scheduled tasks: (instance, id).
    scheduled: Vec<(String, String)>,
    /// Scheduled tasks whose cancellation was answered 204.
    cancelled: HashSet<String>,
    /// Tasks deleted with a 204: id → (instance, name, status when deleted).
    deleted: HashMap<String, (String, String, String)>,
    /// Tasks whose delete got no answer: they may or may not exist.
    unsure_deleted: HashMap<String, (String, String, String)>,
    deleted_instances: HashSet<String>,
    unsure_instances: HashSet<String>,
    /// Batch restarts answered "success", per instance.
    restarts: HashMap<String, usize>,
    /// Every DELETE of a task, with when it was sent and answered.
    delete_attempts: Vec<DeleteAttempt>,
    killed: Option<Instant>,
    sent: usize,
    unanswered: usize,
    refused: usize,
    server_errors: Vec<String>,
}

impl Ledger {
    fn live_instance(&self, rng: &mut Rng) -> Option<String> {
        let live: Vec<&String> = self
            .instances
            .iter()
            .filter(|i| !self.deleted_instances.contains(*i) && !self.unsure_instances.contains(*i))
            .collect();
        (!live.is_empty()).then(|| live[rng.index(live.len())].clone())
    }

    fn instance_gone(&self, inst: &str) -> bool {
        self.deleted_instances.contains(inst) || self.unsure_instances.contains(inst)
    }
}

type Shared = Arc<Mutex<Ledger>>;

fn ledger(l: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends one request of the workload and books its answer: `None` when it got none.
async fn call(api: &Api, l: &Shared, method: &str, path: &str, body: Option<Value>) -> Option<Reply> {
    let body = body.map(|b| b.to_string());
    ledger(l).sent += 1;
    match api.send(method, path, body.as_deref()).await {
        Ok(r) => {
            let mut l = ledger(l);
            if r.status >= 500 {
                l.server_errors.push(format!("{method} {path} → {} {}", r.status, r.text));
            } else if r.status >= 400 {
                l.refused += 1;
            }
            Some(r)
        }
        Err(_) => {
            ledger(l).unanswered += 1;
            None
        }
    }
}

/// Books an operation's answer: its `job_id` or `schedule_id` is acknowledged.
fn book(l: &Shared, inst: &str, what: &'static str, reply: Option<Reply>) -> Option<String> {
    let r = reply.filter(|r| r.status == 200)?;
    let v = r.json();
    let mut l = ledger(l);
    if let Some(id) = v["job_id"].as_str() {
        l.acked.insert(id.to_owned(), (inst.to_owned(), what));
        l.acked_at.insert(id.to_owned(), Instant::now());
        return Some(id.to_owned());
    }
    if let Some(id) = v["schedule_id"].as_str() {
        l.acked.insert(id.to_owned(), (inst.to_owned(), what));
        l.acked_at.insert(id.to_owned(), Instant::now());
        l.scheduled.push((inst.to_owned(), id.to_owned()));
        return Some(id.to_owned());
    }
    None
}

async fn create_instance(api: &Api, l: &Shared, rng: &mut Rng, failing: bool) -> Option<String> {
    let storage = if failing { POOL_GB * 5 } else { rng.range(100, 400) };
    let body = json!({
        "name": format!("crash-{}", rng.below(1_000_000)), "engine_version": "2.7",
        "broker_num": rng.range(1, 4), "storage_space": storage, "product_id": "c6.2u4g.cluster",
    });
    let r = call(api, l, "POST", &format!("/v2/kafka/{PROJECT}/instances"), Some(body)).await?;
    let id = r.json()["instance_id"].as_str().map(str::to_owned).filter(|_| r.status == 200)?;
    let mut l = ledger(l);
    l.instances.push(id.clone());
    l.acked_at.insert(id.clone(), Instant::now());
    Some(id)
}

fn schedule_at(rng: &mut Rng) -> i64 {
    now_ms() + rng.range(1_300, 2_600) as i64
}

/// One request (or two) of the mixed workload.
async fn act(api: &Api, l: &Shared, rng: &mut Rng) {
    let roll = rng.below(100);
    let picked = ledger(l).live_instance(rng);
    let Some(inst) = picked.filter(|_| roll >= 10) else {
        let failing = rng.percent(20);
        create_instance(api, l, rng, failing).await;
        return;
    };
    let base = format!("/v2/{PROJECT}/instances/{inst}");
    let kafka = format!("/v2/{PROJECT}/kafka/instances/{inst}");
    match roll {
        10..22 => {
            let (name, value) = match rng.below(4) {
                0 => ("log.retention.hours", json!(rng.range(1, 169).to_string())),
                1 => ("num.partitions", json!(rng.range(1, 201).to_string())),
                2 => ("min.insync.replicas", json!(rng.range(1, 4).to_string())),
                _ => ("unclean.leader.election.enable", json!(if rng.percent(50) { "true" } else { "false" })),
            };
            let body = json!({"kafka_configs": [{"name": name, "value": value}]});
            let r = call(api, l, "PUT", &format!("{base}/configs"), Some(body)).await;
            book(l, &inst, "configs", r);
        }
        22..30 => {
            let r =
                call(api, l, "POST", &format!("{base}/autotopic"), Some(json!({"enable_auto_topic": rng.percent(50)})))
                    .await;
            book(l, &inst, "autotopic", r);
        }
        30..38 => {
            let body = json!({"action": "restart", "instances": [inst]});
            let r = call(api, l, "POST", &format!("/v2/{PROJECT}/instances/action"), Some(body)).await;
            if r.is_some_and(|r| r.status == 200 && r.json()["results"][0]["result"] == "success") {
                *ledger(l).restarts.entry(inst.clone()).or_default() += 1;
            }
        }
        38..46 => {
            let Some(shown) = call(api, l, "GET", &base, None).await.filter(|r| r.status == 200) else { return };
            let shown = shown.json();
            let storage = shown["storage_space"].as_u64().unwrap_or(100);
            let brokers = shown["broker_num"].as_u64().unwrap_or(1);
            let body = match rng.below(3) {
                0 => {
                    let grow = if rng.percent(15) { POOL_GB * 2 } else { 100 };
                    json!({"oper_type": "storage", "new_storage_space": storage + grow})
                }
                // A horizontal resize grows storage with the brokers and has no allocation step:
                // kept within the pool, so that storage beyond it can only mean a failure ignored.
                1 if brokers < 6 && storage / brokers.max(1) * (brokers + 1) <= POOL_GB => {
                    json!({"oper_type": "horizontal", "new_broker_num": brokers + 1})
                }
                _ => json!({"oper_type": "vertical", "new_product_id": format!("c6.{}u8g.cluster", rng.range(2, 9))}),
            };
            let r = call(api, l, "POST", &format!("{kafka}/extend"), Some(body)).await;
            book(l, &inst, "resize", r);
        }
        46..50 => {
            let body = json!({"reassignments": [{"topic": "t", "brokers": [0]}]});
            let r = call(api, l, "POST", &format!("{kafka}/reassign"), Some(body)).await;
            book(l, &inst, "reassign", r);
        }
        50..62 => {
            let body = json!({"reassignments": [{"topic": "s", "brokers": [0]}], "is_schedule": true, "execute_at": schedule_at(rng)});
            let r = call(api, l, "POST", &format!("{kafka}/reassign"), Some(body)).await;
            book(l, &inst, "scheduled reassign", r);
        }
        62..66 => {
            // A scheduled upgrade, sometimes overtaken by an immediate one: when it fires it
            // must find the instance already upgraded and fail, not upgrade it again.
            let body = json!({"is_schedule": true, "execute_at": schedule_at(rng)});
            let r = call(api, l, "POST", &format!("{kafka}/upgrade"), Some(body)).await;
            book(l, &inst, "scheduled upgrade", r);
            if rng.percent(50) {
                let r = call(api, l, "POST", &format!("{kafka}/upgrade"), Some(json!({}))).await;
                book(l, &inst, "upgrade", r);
            }
        }
        66..70 => {
            let r = call(api, l, "POST", &format!("{kafka}/upgrade"), Some(json!({}))).await;
            book(l, &inst, "upgrade", r);
        }
        70..80 => {
            let target = {
                let l = ledger(l);
                (!l.scheduled.is_empty()).then(|| l.scheduled[rng.index(l.scheduled.len())].clone())
            };
            let Some((sinst, task)) = target else { return };
            let cancel = roll >= 76;
            let query = if cancel {
                "status=CANCELLED".to_owned()
            } else {
                format!("execute_at={}", compact_time(now_ms() + rng.range(2_000, 3_500) as i64))
            };
            let path = format!("/v2/{PROJECT}/instances/{sinst}/scheduled-tasks/{task}?{query}");
            let r = call(api, l, "PUT", &path, None).await;
            if cancel && r.is_some_and(|r| r.status == 204) {
                ledger(l).cancelled.insert(task);
            }
        }
        80..92 => delete_finished_task(api, l, rng, &inst).await,
        92..95 => {
            if ledger(l).instances.len() < 4 {
                return;
            }
            ledger(l).unsure_instances.insert(inst.clone());
            let r = call(api, l, "DELETE", &base, None).await;
            let mut l = ledger(l);
            if let Some(r) = r {
                l.unsure_instances.remove(&inst);
                if r.status == 204 {
                    l.deleted_instances.insert(inst.clone());
                }
            }
        }
        _ => {
            let path = match rng.below(3) {
                0 => format!("{base}/tasks?limit=5"),
                1 => base.clone(),
                _ => format!("{base}/scheduled-tasks"),
            };
            call(api, l, "GET", &path, None).await;
        }
    }
}

/// Lists a view of the instance and deletes one of its ended tasks (never the createInstance
/// task, which the end checks read).
async fn delete_finished_task(api: &Api, l: &Shared, rng: &mut Rng, inst: &str) {
    let scheduled_view = rng.percent(30);
    let view = if scheduled_view { "scheduled-tasks" } else { "tasks" };
    let base = format!("/v2/{PROJECT}/instances/{inst}/{view}");
    let Some(list) = call(api, l, "GET", &format!("{base}?limit=20"), None).await.filter(|r| r.status == 200) else {
        return;
    };
    let list = list.json();
    let items = list["tasks"].as_array().or_else(|| list["jobs"].as_array()).cloned().unwrap_or_default();
    let done: Vec<&Value> = items.iter().filter(|t| is_terminal(t) && t["name"] != "createInstance").collect();
    if done.is_empty() {
        return;
    }
    let t = done[rng.index(done.len())];
    let id = t["id"].as_str().unwrap_or_default().to_owned();
    let entry = (
        inst.to_owned(),
        t["name"].as_str().unwrap_or_default().to_owned(),
        t["status"].as_str().unwrap_or_default().to_owned(),
    );
    let created_at = t["created_at"]
        .as_str()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map(|c| c.timestamp_millis());
    ledger(l).unsure_deleted.insert(id.clone(), entry.clone());
    let sent = Instant::now();
    let r = call(api, l, "DELETE", &format!("{base}/{id}"), None).await;
    let mut l = ledger(l);
    l.delete_attempts.push(DeleteAttempt {
        task: id.clone(),
        instance: inst.to_owned(),
        created_at,
        sent,
        answer: r.as_ref().map(|r| (Instant::now(), r.status)),
    });
    if let Some(r) = r {
        l.unsure_deleted.remove(&id);
        if r.status == 204 {
            l.deleted.insert(id, entry);
        }
    }
}

async fn worker(api: Api, l: Shared, stop: Arc<AtomicBool>, mut rng: Rng) {
    while !stop.load(Ordering::Relaxed) {
        act(&api, &l, &mut rng).await;
        tokio::time::sleep(Duration::from_millis(rng.below(12))).await;
    }
}

/// One instance as the API shows it after the run, with both views paged through.
struct Seen {
    doc: Value,
    /// (`task_count` of the first page, every record of every page) of ListBackgroundTasks.
    background: (u64, Vec<Value>),
    /// The same for ListScheduledTasks (`job_count`).
    scheduled: (u64, Vec<Value>),
}

/// Pages through a view, `limit` 7 at a time; notes any page whose count differs.
async fn page_all(api: &Api, inst: &str, view: &str, problems: &mut Vec<String>) -> (u64, Vec<Value>) {
    let (mut start, limit) = (1, 7);
    let mut all: Vec<Value> = vec![];
    let mut first: Option<u64> = None;
    loop {
        let path = format!("/v2/{PROJECT}/instances/{inst}/{view}?limit={limit}&start={start}");
        let r = api.send_patiently("GET", &path, None).await;
        if r.status != 200 {
            problems.push(format!("GET {path} → {} {}", r.status, r.text));
            return (first.unwrap_or(0), all);
        }
        let v = r.json();
        let count = v["task_count"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .or_else(|| v["job_count"].as_u64())
            .unwrap_or(u64::MAX);
        match first {
            None => first = Some(count),
            Some(c) if c != count => {
                problems.push(format!("{view} of {inst}: count {c} on page 1, {count} at start={start}"))
            }
            _ => {}
        }
        let items = v["tasks"].as_array().or_else(|| v["jobs"].as_array()).cloned().unwrap_or_default();
        let n = items.len();
        all.extend(items);
        if n < limit || all.len() > 10_000 {
            break;
        }
        start += limit;
    }
    (first.unwrap_or(0), all)
}

async fn snapshot(api: &Api, problems: &mut Vec<String>) -> BTreeMap<String, Seen> {
    let r = api.send_patiently("GET", &format!("/v2/{PROJECT}/instances"), None).await;
    assert_eq!(r.status, 200, "ListInstances: {}", r.text);
    let list = r.json();
    let mut out = BTreeMap::new();
    for doc in list["instances"].as_array().cloned().unwrap_or_default() {
        let id = doc["instance_id"].as_str().unwrap_or_default().to_owned();
        let background = page_all(api, &id, "tasks", problems).await;
        let scheduled = page_all(api, &id, "scheduled-tasks", problems).await;
        out.insert(id, Seen { doc, background, scheduled });
    }
    out
}

fn open_tasks(seen: &BTreeMap<String, Seen>) -> Vec<String> {
    seen.iter()
        .flat_map(|(i, s)| s.background.1.iter().chain(&s.scheduled.1).map(move |t| (i, t)))
        .filter(|(_, t)| !is_terminal(t))
        .map(|(i, t)| format!("{} {} {} on {i}", t["id"], t["name"], t["status"]))
        .collect()
}

/// Waits (generously) until every task has ended; returns what the API shows then.
async fn settle(api: &Api, violations: &mut Vec<String>) -> BTreeMap<String, Seen> {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let mut problems = vec![];
        let seen = snapshot(api, &mut problems).await;
        let open = open_tasks(&seen);
        if open.is_empty() && problems.is_empty() {
            // Instances were listed before their tasks: read everything again now that no task
            // is open, so that what is checked was read after the last task ended.
            let mut problems = vec![];
            let seen = snapshot(api, &mut problems).await;
            violations.extend(problems);
            return seen;
        }
        if Instant::now() > deadline {
            violations.push(format!("tasks still open 45 s after the restart: {open:?} {problems:?}"));
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The end checks of one run.
async fn check(api: &Api, l: &Ledger, seen: &BTreeMap<String, Seen>, v: &mut Vec<String>) {
    let mut tasks: HashMap<String, (String, Value)> = HashMap::new();
    for (inst, s) in seen {
        for (view, (count, items)) in [("tasks", &s.background), ("scheduled-tasks", &s.scheduled)] {
            v.extend(invariants::count_problem(&format!("{view} of {inst}"), *count, items));
            for t in items {
                tasks.insert(t["id"].as_str().unwrap_or_default().to_owned(), (inst.clone(), t.clone()));
            }
        }
        let deleted_upgrades = l
            .deleted
            .values()
            .chain(l.unsure_deleted.values())
            .filter(|(i, name, st)| i == inst && name == "upgradeInstance" && st == "SUCCESS")
            .count();
        v.extend(invariants::instance_problems(&s.doc, &s.background.1, POOL_GB, deleted_upgrades));
        let mine = &s.background.1;
        // Every acknowledged restart left a task.
        let restarts = mine.iter().filter(|t| t["name"] == "restartInstance").count()
            + l.deleted
                .values()
                .chain(l.unsure_deleted.values())
                .filter(|(i, name, _)| i == inst && name == "restartInstance")
                .count();
        let acked = l.restarts.get(inst).copied().unwrap_or(0);
        if restarts < acked {
            v.push(format!("instance {inst}: {acked} restarts acknowledged, {restarts} restart tasks"));
        }
    }

    for inst in &l.instances {
        if !l.instance_gone(inst) && !seen.contains_key(inst) {
            v.push(format!("acknowledged instance {inst} is missing"));
        }
    }
    for inst in &l.deleted_instances {
        if seen.contains_key(inst) {
            v.push(format!("instance {inst}, deleted with a 204, is still there"));
        }
    }
    for (id, (inst, what)) in &l.acked {
        if l.deleted.contains_key(id) || l.unsure_deleted.contains_key(id) || l.instance_gone(inst) {
            continue;
        }
        match tasks.get(id) {
            None => v.push(format!("acknowledged {what} task {id} on {inst} is missing")),
            Some((_, t)) if !is_terminal(t) => v.push(format!("acknowledged {what} task {id} never ended: {t}")),
            Some(_) => {}
        }
    }
    for id in &l.cancelled {
        if let Some((_, t)) = tasks.get(id)
            && t["status"] != "CANCELLED"
        {
            v.push(format!("task {id}, cancelled with a 204, ended {}", t["status"]));
        }
    }
    for (id, (inst, name, _)) in &l.deleted {
        if tasks.contains_key(id) {
            v.push(format!("{name} task {id}, deleted with a 204, came back"));
        }
        if l.instance_gone(inst) {
            continue;
        }
        let r = api.send_patiently("GET", &format!("/v2/{PROJECT}/instances/{inst}/tasks/{id}"), None).await;
        if r.status != 404 {
            v.push(format!("{name} task {id}, deleted with a 204, answers {} {}", r.status, r.text));
        }
    }
}

/// `PRAGMA integrity_check` (and the foreign keys) of the file, opened after the last stop.
fn check_file(path: &std::path::Path, v: &mut Vec<String>) {
    let conn = match rusqlite::Connection::open(path) {
        Ok(c) => c,
        Err(e) => return v.push(format!("cannot open {}: {e}", path.display())),
    };
    let rows = |sql: &str| -> Result<Vec<String>, rusqlite::Error> {
        let mut stmt = conn.prepare(sql)?;
        let out = stmt.query_map([], |r| r.get::<_, rusqlite::types::Value>(0))?;
        out.map(|r| r.map(|x| format!("{x:?}"))).collect()
    };
    match rows("PRAGMA integrity_check") {
        Ok(r) if r == [format!("{:?}", rusqlite::types::Value::Text("ok".into()))] => {}
        other => v.push(format!("PRAGMA integrity_check: {other:?}")),
    }
    match rows("PRAGMA foreign_key_check") {
        Ok(r) if r.is_empty() => {}
        other => v.push(format!("PRAGMA foreign_key_check: {other:?}")),
    }
}

/// A read-only connection to the database file, which the server may be writing meanwhile.
fn read_only(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(2))?;
    Ok(conn)
}

/// How many events of the project the log holds now (`None` when the file cannot be read).
fn log_len(path: &std::path::Path) -> Option<usize> {
    let conn = read_only(path).ok()?;
    let n: i64 = conn
        .query_row("SELECT coalesce(sum(n), 0) FROM task_events WHERE project_id = ?1", [PROJECT], |r| r.get(0))
        .ok()?;
    usize::try_from(n).ok()
}

/// The database after the last stop: the project's event log in log order, its tasks and its
/// instances.
struct Stored {
    log: Vec<Logged>,
    tasks: HashMap<String, TaskRow>,
    instances: HashSet<String>,
}

fn read_stored(path: &std::path::Path) -> rusqlite::Result<Stored> {
    let conn = read_only(path)?;
    // A row holds the events of one write about one task (migration 0016).
    let rows: Vec<(String, String, String, String, i64)> = conn
        .prepare("SELECT kind, task_id, instance_id, data, n FROM task_events WHERE project_id = ?1 ORDER BY id")?
        .query_map([PROJECT], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<Result<_, _>>()?;
    let mut log = Vec::new();
    for (kind, task_id, instance_id, data, n) in rows {
        log.extend(Logged::of_row(kind, &task_id, &instance_id, data, n).ok_or(rusqlite::Error::InvalidQuery)?);
    }
    let tasks = conn
        .prepare("SELECT id, instance_id, name, status, created_at, in_background FROM tasks WHERE project_id = ?1")?
        .query_map([PROJECT], |r| {
            let row = TaskRow {
                instance_id: r.get(1)?,
                name: r.get(2)?,
                status: r.get(3)?,
                created_at: r.get(4)?,
                in_background: r.get::<_, i64>(5)? == 1,
            };
            Ok((r.get(0)?, row))
        })?
        .collect::<Result<_, _>>()?;
    let instances = conn
        .prepare("SELECT id FROM instances WHERE project_id = ?1")?
        .query_map([PROJECT], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(Stored { log, tasks, instances })
}

/// The checks of the event log and of the pages, against the database after the last stop.
fn check_log_and_pages(
    l: &Ledger,
    db: &Stored,
    consumed: &event_log::Consumed,
    passes: &[paging::Pass],
) -> Vec<String> {
    let truth = Truth {
        tasks: db.tasks.clone(),
        instances: db.instances.clone(),
        acked_instances: l.instances.iter().cloned().collect(),
        acked: l.acked.keys().cloned().collect(),
        deleted: l.deleted.iter().map(|(id, (_, _, status))| (id.clone(), status.clone())).collect(),
        unsure_deleted: l.unsure_deleted.keys().cloned().collect(),
    };
    let mut v: Vec<String> =
        event_log::log_problems(&db.log, &truth).into_iter().map(|p| format!("event log: {p}")).collect();
    let received = event_log::stream_problems(&consumed.received, &db.log, consumed.start);
    v.extend(received.into_iter().chain(consumed.problems.iter().cloned()).map(|p| format!("event stream: {p}")));

    let logged: HashSet<String> =
        db.log.iter().filter(|e| e.kind == "task.created").map(|e| e.task_id.clone()).collect();
    let acked: HashMap<String, Ack> = l
        .acked
        .iter()
        .filter_map(|(id, (_, what))| {
            let at = *l.acked_at.get(id)?;
            Some((id.clone(), Ack { immediate: !what.starts_with("scheduled"), at }))
        })
        .collect();
    let instances_acked: HashMap<String, Instant> =
        l.instances.iter().filter_map(|i| Some((i.clone(), *l.acked_at.get(i)?))).collect();
    let facts = Facts {
        tasks: &db.tasks,
        logged: &logged,
        acked: &acked,
        instances_acked: &instances_acked,
        deletes: &l.delete_attempts,
        killed: l.killed,
    };
    v.extend(paging::paging_problems(passes, &facts).into_iter().map(|p| format!("paging: {p}")));
    v
}

/// Waits for a helper that stops by itself; past `within`, aborts it and says so.
async fn join<T>(what: &str, task: tokio::task::JoinHandle<T>, within: Duration, v: &mut Vec<String>) -> Option<T> {
    let abort = task.abort_handle();
    match tokio::time::timeout(within, task).await {
        Ok(Ok(out)) => Some(out),
        Ok(Err(e)) => {
            v.push(format!("the {what} failed: {e}"));
            None
        }
        Err(_) => {
            abort.abort();
            v.push(format!("the {what} did not stop within {within:?}"));
            None
        }
    }
}

struct RunReport {
    line: String,
    violations: Vec<String>,
}

async fn one_run(run: u64, seed: u64) -> RunReport {
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let db_path = dir.path().join("crash.db");
    let db = format!("sqlite:{}", db_path.display());
    let key_file = dir.path().join("master.key");
    let key_file = key_file.to_str().expect("utf-8 path");
    let pool = POOL_GB.to_string();
    let args = [
        "--database",
        &db,
        "--master-key-file",
        key_file,
        "--time-scale",
        "0.001",
        "--poll-ms",
        "20",
        "--lease-ms",
        "1000",
        "--storage-pool-gb",
        &pool,
        // Nothing is pruned from the event log, so that a `missed` event is a fault; idle streams
        // write often, so that the server soon notices a stream the consumer closed.
        "--event-retention-secs",
        "315360000",
        "--event-retention-max",
        "1000000000",
        "--event-prune-ms",
        "3600000",
        "--event-keepalive-ms",
        "250",
    ];
    let envs = [("KAFKA_TASKS_MASTER_KEY", MASTER_KEY), ("KAFKA_TASKS_LOG", "info")];
    let cred = serve::cli_credential(&db, MASTER_KEY, "crash", "admin");
    let mut violations = vec![];

    let mut server = ServerProcess::start(&args, &envs, &dir.path().join("first.log"));
    let api = Api::new(&server.base, cred.clone());
    let l: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    // The processes up now, for the pager and the consumer; "settled" ends them.
    let (servers, servers_rx) = watch::channel(vec![api.clone()]);
    let (settled, settled_rx) = watch::channel(false);

    // Every run holds one instance that fails to create and a scheduled operation due after the
    // failure: when it fires, the instance must stay CREATEFAILED.
    if let Some(doomed) = create_instance(&api, &l, &mut rng, true).await {
        let body = json!({"reassignments": [{"topic": "d", "brokers": [0]}], "is_schedule": true, "execute_at": now_ms() + 1_500});
        let r = call(&api, &l, "POST", &format!("/v2/{PROJECT}/kafka/instances/{doomed}/reassign"), Some(body)).await;
        book(&l, &doomed, "scheduled reassign on a failing instance", r);
    }
    let workers: Vec<_> =
        (0..WORKERS).map(|_| tokio::spawn(worker(api.clone(), l.clone(), stop.clone(), rng.fork()))).collect();
    let live = l.clone();
    let pick: paging::Pick = Arc::new(move |rng: &mut Rng| ledger(&live).live_instance(rng));
    let pager = tokio::spawn(paging::pager(servers_rx.clone(), pick, settled_rx.clone(), rng.fork()));
    // The consumer joins at a random moment of the load, from the log's end.
    let follow = event_log::Follow {
        path: format!("/v2/{PROJECT}/tasks/events"),
        servers: servers_rx,
        log_len: {
            let path = db_path.clone();
            Arc::new(move || log_len(&path))
        },
        stop: settled_rx,
        opened: None,
        rng: rng.fork(),
    };
    let joins_after = Duration::from_millis(rng.range(0, 400));
    let consumer = tokio::spawn(async move {
        tokio::time::sleep(joins_after).await;
        event_log::consume(follow).await
    });
    let kill_after = Duration::from_millis(rng.range(300, 2_500));
    tokio::time::sleep(kill_after).await;
    server.kill9();
    // Taken after the process is gone: no request it was serving can take effect later.
    ledger(&l).killed = Some(Instant::now());
    servers.send_replace(vec![]);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    violations.extend(server.panics().into_iter().map(|p| format!("first process: {p}")));

    // The same database, a new process.
    let mut server = ServerProcess::start(&args, &envs, &dir.path().join("second.log"));
    let api = Api::new(&server.base, cred);
    servers.send_replace(vec![api.clone()]);
    let seen = settle(&api, &mut violations).await;
    settled.send_replace(true);
    let passes = join("pager", pager, Duration::from_secs(60), &mut violations).await.unwrap_or_default();
    let consumed = join("event consumer", consumer, Duration::from_secs(60), &mut violations).await.unwrap_or_default();
    let l = Arc::try_unwrap(l).map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).unwrap_or_default();
    check(&api, &l, &seen, &mut violations).await;
    violations.extend(l.server_errors.iter().map(|e| format!("5xx under load: {e}")));
    drop(api);
    match server.terminate(Duration::from_secs(30)) {
        Ok(status) if status.success() => {}
        other => violations.push(format!("the restarted process did not stop cleanly on SIGTERM: {other:?}")),
    }
    violations.extend(server.panics().into_iter().map(|p| format!("restarted process: {p}")));
    check_file(&db_path, &mut violations);
    let stored = read_stored(&db_path);
    match &stored {
        Ok(db) => violations.extend(check_log_and_pages(&l, db, &consumed, &passes)),
        Err(e) => violations.push(format!("cannot read the database: {e}")),
    }

    let tasks: usize = seen.values().map(|s| s.background.1.len()).sum();
    let line = format!(
        "run {run} (seed {seed}): killed after {kill_after:?}; {} requests ({} unanswered, {} refused), {} instances, \
         {} tasks acknowledged, {} scheduled, {} cancelled, {} deleted, {} instances deleted; {tasks} tasks after \
         restart; {} events logged, {} received over {} streams ({} closed by the consumer, {} cut, {} resumed by \
         ?after=); {} pages in {} passes ({} complete); {:?}",
        l.sent,
        l.unanswered,
        l.refused,
        l.instances.len(),
        l.acked.len(),
        l.scheduled.len(),
        l.cancelled.len(),
        l.deleted.len(),
        l.deleted_instances.len(),
        stored.as_ref().map_or(0, |db| db.log.len()),
        consumed.received.len(),
        consumed.streams,
        consumed.dropped,
        consumed.cut,
        consumed.by_query,
        passes.iter().map(|p| p.pages.len()).sum::<usize>(),
        passes.len(),
        passes.iter().filter(|p| p.complete).count(),
        started.elapsed(),
    );
    eprintln!("{line}");
    for x in &violations {
        eprintln!("  run {run}: {x}");
    }
    RunReport { line, violations }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_work_and_leaves_no_impossible_state() {
    let mut rng = Rng::new(Rng::seed_from_env("KAFKA_TASKS_CRASH_SEED"));
    let started = Instant::now();
    let mut reports = vec![];
    for run in 0..runs() {
        reports.push(one_run(run, rng.next_u64()).await);
    }
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| format!("{}\n    {}", r.line, r.violations.join("\n    ")))
        .collect();
    eprintln!("{} runs in {:?}", reports.len(), started.elapsed());
    assert!(failed.is_empty(), "{} of {} runs broke an invariant:\n{}", failed.len(), reports.len(), failed.join("\n"));
}
