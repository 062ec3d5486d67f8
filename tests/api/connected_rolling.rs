//! Rolling restarts of a bound instance's real cluster through the broker-control program
//! (`examples/broker-control/kafka-cluster.sh`, which drives `scripts/kafka-cluster.sh`). Effects
//! are checked with Kafka's own tools and the nodes' processes, not with kafka-tasks' view:
//! VerifiableProducer/VerifiableConsumer for the messages, `kafka-cluster.sh status` for each
//! node's JVM pid, ConfigCommand for static configs, the example program's log for what it was
//! asked to do. Each test takes the cluster for itself (`Kafka::get_exclusive`); a node restart
//! takes 10-20 s here, so the tests are few.
//!
//! Without `KAFKA_TASKS_TEST_KAFKA` the tests say so and pass, except in CI (`CI=true`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::connected::Kafka;
use crate::helpers::TestApp;

/// The longest a rolling restart of the three nodes may take here (loaded machine, 10-20 s a node).
const ROLL_LIMIT: Duration = Duration::from_secs(360);

/// A broker-control directory holding a wrapper around the example program, with its log.
struct Control {
    dir: tempfile::TempDir,
}

impl Control {
    fn new(kafka: &Kafka) -> Control {
        let dir = tempfile::tempdir().expect("dir");
        let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/broker-control/kafka-cluster.sh");
        let wrapper = dir.path().join("control.sh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nKAFKA_CLUSTER_DIR='{}' BROKER_CONTROL_LOG='{}' exec '{}' \"$@\"\n",
                kafka.var("KAFKA_CLUSTER_DIR"),
                dir.path().join("control.log").display(),
                example.display()
            ),
        )
        .expect("wrapper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Control { dir }
    }

    fn dir(&self) -> &str {
        self.dir.path().to_str().expect("utf-8")
    }

    fn program(&self) -> String {
        self.dir.path().join("control.sh").display().to_string()
    }

    /// The brokers the example program was asked to restart, in order, with the task of each.
    fn restarts(&self) -> Vec<(String, String)> {
        self.actions("restart", "task")
    }

    /// Each `what` line of the program's log: its broker and its field `k`.
    fn actions(&self, what: &str, k: &str) -> Vec<(String, String)> {
        let log = std::fs::read_to_string(self.dir.path().join("control.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.split(' ').nth(1) == Some(what))
            .map(|l| {
                let field = |k: &str| {
                    l.split(' ').find_map(|f| f.strip_prefix(&format!("{k}="))).unwrap_or_default().to_owned()
                };
                (field("broker"), field(k))
            })
            .collect()
    }
}

/// Each node's JVM pid, `None` for a stopped node, as `kafka-cluster.sh status` shows them.
fn pids(kafka: &Kafka) -> BTreeMap<u32, Option<u32>> {
    let out = Command::new(&kafka.script)
        .arg("status")
        .env("KAFKA_CLUSTER_DIR", kafka.var("KAFKA_CLUSTER_DIR"))
        .output()
        .expect("status runs");
    let text = String::from_utf8_lossy(&out.stdout);
    (1..=3)
        .map(|n| {
            let line = text.lines().find(|l| l.starts_with(&format!("node {n}: "))).unwrap_or_default();
            let pid = line.split("pid ").nth(1).and_then(|r| r.split(',').next()).and_then(|p| p.parse().ok());
            (n, pid)
        })
        .collect()
}

fn node(kafka: &Kafka, verb: &str, n: u32) {
    let out = Command::new(&kafka.script)
        .args([verb, &n.to_string()])
        .env("KAFKA_CLUSTER_DIR", kafka.var("KAFKA_CLUSTER_DIR"))
        .output()
        .expect("the cluster script runs");
    assert!(out.status.success(), "{verb} {n}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The active controller, as Kafka's MetadataQuorumCommand shows it.
fn quorum_leader(kafka: &Kafka) -> String {
    let out = kafka.tool(&["quorum", "--bootstrap-server", kafka.bootstrap(), "describe", "--status"]);
    out.lines()
        .find_map(|l| l.strip_prefix("LeaderId:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no leader in {out}"))
}

/// A topic with three replicas per partition and min.insync.replicas=2.
fn topic(kafka: &Kafka, name: &str) {
    kafka.tool(&new_topic(kafka.bootstrap(), name));
}

/// TopicCommand's arguments for [`topic`].
fn new_topic<'a>(bootstrap: &'a str, name: &'a str) -> [&'a str; 12] {
    [
        "topics",
        "--bootstrap-server",
        bootstrap,
        "--create",
        "--topic",
        name,
        "--partitions",
        "3",
        "--replication-factor",
        "3",
        "--config",
        "min.insync.replicas=2",
    ]
}

async fn server(control: &Control, extra: &[&str]) -> TestApp {
    let mut flags = vec!["--time-scale", "0", "--cluster-allow", "127.0.0.1", "--broker-control-dir", control.dir()];
    flags.extend_from_slice(extra);
    TestApp::spawn_with(&flags).await
}

async fn bind(app: &TestApp, kafka: &Kafka, control: &Control) -> String {
    let inst = app.create_instance().await;
    let _ = app.wait_instance_status(&inst, "RUNNING").await;
    let body = json!({"bootstrap_servers": kafka.bootstrap(), "broker_control": control.program()});
    let res = app.put(&format!("{}/cluster", app.instance_path(&inst)), Some(body)).await;
    assert_eq!(res.status, 200, "{}", res.text);
    inst
}

/// Waits for a task to end; the task and its executor view (reason, output).
async fn ended(app: &TestApp, inst: &str, task: &str, limit: Duration) -> (Value, Value) {
    let deadline = Instant::now() + limit;
    loop {
        let t = app.show_task(inst, task).await.json()["tasks"][0].clone();
        if t["status"] == "SUCCESS" || t["status"] == "FAILED" {
            let run = app.get(&format!("{}/tasks/{task}/executor", app.instance_path(inst))).await.json();
            return (t, run);
        }
        assert!(Instant::now() < deadline, "task still {} after {limit:?}", t["status"]);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Counts, from a thread that looks every 300 ms, the most nodes seen stopped at once.
struct DownWatch {
    stop: Arc<AtomicBool>,
    most: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DownWatch {
    fn start(kafka: &Kafka) -> DownWatch {
        let (stop, most) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (script, dir) = (kafka.script.clone(), kafka.var("KAFKA_CLUSTER_DIR").to_owned());
        let (s, m) = (stop.clone(), most.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let out = Command::new(&script).arg("status").env("KAFKA_CLUSTER_DIR", &dir).output();
                if let Ok(out) = out {
                    let down =
                        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.ends_with(": stopped")).count();
                    m.fetch_max(down, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        DownWatch { stop, most, thread: Some(thread) }
    }

    fn most(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.most.load(Ordering::Relaxed)
    }
}

/// A Kafka tool of the cluster in `dir` left running in the background (VerifiableProducer), its
/// stdout in a file.
fn background(script: &Path, dir: &str, args: &[&str], out: &Path) -> Child {
    Command::new(script)
        .arg("tools")
        .args(args)
        .env("KAFKA_CLUSTER_DIR", dir)
        .env_remove("KAFKA_VERSION")
        .stdout(std::fs::File::create(out).expect("output file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("the tool starts")
}

/// VerifiableProducer with acks=all, 50 messages a second until stopped, keyed over the partitions.
fn produce(script: &Path, dir: &str, bootstrap: &str, topic: &str, out: &Path) -> Child {
    let args = [
        "producer",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--acks",
        "-1",
        "--throughput",
        "50",
        "--max-messages",
        "1000000",
        "--repeating-keys",
        "30",
    ];
    background(script, dir, &args, out)
}

fn acked_count(produced: &Path) -> usize {
    events(produced, "producer_send_success").len()
}

/// Waits (up to a minute) until the producer has had 20 more messages acknowledged than `seen`:
/// traffic flows before the operation starts, and again after it ends.
async fn acked_beyond(produced: &Path, seen: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked_count(produced) < seen + 20 {
        assert!(Instant::now() < deadline, "the producer got no acknowledgement beyond {seen} in a minute");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERM: VerifiableProducer's shutdown hook flushes and reports what is still in flight.
fn stop_producing(producer: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &producer.id().to_string()]).status();
    let _ = producer.wait();
}

/// Reads `topic` back with VerifiableConsumer (a new group, from the start) and fails unless every
/// message the producer's `produced.jsonl` in `work` says was acknowledged is read.
async fn read_back(script: &Path, dir: &str, bootstrap: &str, topic: &str, work: &Path) {
    let acked: BTreeMap<(i64, i64), String> = events(&work.join("produced.jsonl"), "producer_send_success")
        .iter()
        .map(|e| ((e["partition"].as_i64().unwrap_or(-1), e["offset"].as_i64().unwrap_or(-1)), e["value"].to_string()))
        .collect();
    assert!(acked.len() > 100, "only {} messages acked", acked.len());
    let consumed = work.join("consumed.jsonl");
    let group = format!("{topic}-reader");
    let args = ["consumer", "--bootstrap-server", bootstrap, "--topic", topic, "--group-id", &group, "--verbose"];
    let mut consumer = background(script, dir, &args, &consumed);
    let deadline = Instant::now() + Duration::from_secs(90);
    let missing = loop {
        let read: HashSet<(i64, i64)> = events(&consumed, "record_data")
            .iter()
            .map(|e| (e["partition"].as_i64().unwrap_or(-1), e["offset"].as_i64().unwrap_or(-1)))
            .collect();
        let missing: Vec<&(i64, i64)> = acked.keys().filter(|k| !read.contains(k)).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing.len();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let _ = consumer.kill();
    let _ = consumer.wait();
    assert_eq!(missing, 0, "{missing} of {} acked messages were not read back", acked.len());
}

fn events(path: &Path, name: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|e| e["name"] == name)
        .collect()
}

on_postgres! {
    #[tokio::test]
    async fn a_rolling_restart_under_traffic_restarts_every_broker_controller_last_and_loses_no_acked_message() {
        let Some(kafka) = Kafka::get_exclusive() else { return };
        let control = Control::new(&kafka);
        let app = server(&control, &[]).await;
        let inst = bind(&app, &kafka, &control).await;
        let name = format!("rolling-{}-{}", std::process::id(), kafka_tasks::domain::now_ms());
        topic(&kafka, &name);
        let before = pids(&kafka);
        assert!(before.values().all(Option::is_some), "a node is down before the test: {before:?}");
        let leader = quorum_leader(&kafka);
        let work = tempfile::tempdir().expect("dir");
        let produced = work.path().join("produced.jsonl");
        // acks=all, 50 messages a second for as long as the restart takes, keyed over the partitions.
        let mut producer = produce(&kafka.script, kafka.var("KAFKA_CLUSTER_DIR"), kafka.bootstrap(), &name, &produced);
        acked_beyond(&produced, 0).await;
        let watch = DownWatch::start(&kafka);
        let task = app.restart_instance(&inst).await;
        let (t, run) = ended(&app, &inst, &task, ROLL_LIMIT).await;
        let most_down = watch.most();
        acked_beyond(&produced, acked_count(&produced)).await;
        stop_producing(&mut producer);
        assert_eq!(t["status"], "SUCCESS", "{t} {run}");
        eprintln!("rolling restart: {}", run["output_tail"]);

        // Every node's JVM is a new one; the program was asked once per broker, the controller last.
        let after = pids(&kafka);
        for n in 1..=3 {
            assert!(after[&n].is_some() && after[&n] != before[&n], "node {n}: {before:?} -> {after:?}");
        }
        let restarts: Vec<String> =
            control.restarts().into_iter().filter(|(_, t)| *t == task).map(|(broker, _)| broker).collect();
        assert_eq!(restarts.iter().collect::<BTreeSet<_>>().len(), 3, "{restarts:?}");
        assert_eq!(restarts.len(), 3, "a broker restarted twice: {restarts:?}");
        assert_eq!(restarts.last(), Some(&leader), "the active controller was not last: {restarts:?}");
        assert!(most_down <= 1, "{most_down} nodes were down at once");

        // Every acknowledged message is read back.
        read_back(&kafka.script, kafka.var("KAFKA_CLUSTER_DIR"), kafka.bootstrap(), &name, work.path()).await;
        // The task's output says what was done and where the time went.
        let output = run["output_tail"].as_str().unwrap_or("");
        assert!(output.contains(&format!("restarted brokers {}", restarts.join(", "))), "{run}");
        assert!(output.contains("waiting on checks"), "{run}");
    }
}

on_postgres! {
    #[tokio::test]
    async fn a_static_config_lands_on_every_broker_through_a_rolling_restart() {
        let Some(kafka) = Kafka::get_exclusive() else { return };
        let control = Control::new(&kafka);
        let app = server(&control, &[]).await;
        let inst = bind(&app, &kafka, &control).await;
        let before = pids(&kafka);
        // A value the cluster does not have yet, so that seeing it proves this change (not
        // num.partitions: connected.rs's refusal test watches that one on the shared cluster).
        const NAME: &str = "offsets.retention.minutes";
        let current = kafka.broker_configs("1").get(NAME).cloned().unwrap_or_default();
        let mut value = 20_000 + std::process::id() % 5_000;
        if current == value.to_string() {
            value += 1;
        }
        let value = value.to_string();
        let res = app.modify_configs(&inst, json!([{"name": NAME, "value": value}])).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
        let (t, run) = ended(&app, &inst, &task, ROLL_LIMIT).await;
        assert_eq!(t["status"], "SUCCESS", "{t} {run}");
        for broker in ["1", "2", "3"] {
            let configs = kafka.broker_configs(broker);
            assert_eq!(configs.get(NAME), Some(&value), "broker {broker}");
        }
        let after = pids(&kafka);
        for n in 1..=3 {
            assert!(after[&n].is_some() && after[&n] != before[&n], "node {n} was not restarted: {before:?} -> {after:?}");
        }
        // Not a dynamic default: the value is in each broker's own configuration.
        assert!(!kafka.cluster_defaults().contains(NAME), "set as a dynamic default");
    }
}

on_postgres! {
    #[tokio::test]
    async fn a_broker_already_down_fails_the_restart_at_its_check_and_nothing_is_restarted() {
        let Some(kafka) = Kafka::get_exclusive() else { return };
        let control = Control::new(&kafka);
        let app = server(&control, &[]).await;
        let inst = bind(&app, &kafka, &control).await;
        // A topic with a replica on every node, so that node 3 holds replicas when it is down.
        topic(&kafka, &format!("down-{}-{}", std::process::id(), kafka_tasks::domain::now_ms()));
        node(&kafka, "stop-node", 3);
        let before = pids(&kafka);
        let task = app.restart_instance(&inst).await;
        let (t, run) = ended(&app, &inst, &task, Duration::from_secs(90)).await;
        let after = pids(&kafka);
        node(&kafka, "start-node", 3);
        assert_eq!(t["status"], "FAILED", "{t} {run}");
        let reason = run["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("broker 3 is not serving") && reason.contains("nothing was restarted"), "{run}");
        assert_eq!(run["step"], "pre_check", "{run}");
        assert_eq!(before, after, "a node was restarted");
        assert!(control.restarts().is_empty(), "the program was asked to restart: {:?}", control.restarts());
        assert_eq!(app.show_instance(&inst).await.json()["status"], "RUNNING", "the instance got its status back");
    }
}

on_postgres! {
    #[tokio::test]
    async fn kill_9_during_a_rolling_restart_resumes_without_restarting_a_broker_twice() {
        let Some(kafka) = Kafka::get_exclusive() else { return };
        let control = Control::new(&kafka);
        let flags = [
            "--time-scale",
            "0",
            "--cluster-allow",
            "127.0.0.1",
            "--broker-control-dir",
            control.dir(),
            "--lease-ms",
            "6000",
        ];
        let mut app = TestApp::spawn_process(&flags).await;
        let inst = bind(&app, &kafka, &control).await;
        let before = pids(&kafka);
        let watch = DownWatch::start(&kafka);
        let task = app.restart_instance(&inst).await;
        // Killed while the first broker restarts: its `restart` line is in the log, its `restarted` not yet.
        let deadline = Instant::now() + Duration::from_secs(120);
        while control.restarts().is_empty() {
            assert!(Instant::now() < deadline, "no restart began");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        app.kill9();
        let killed_at = control.restarts().len();
        let finished_at = control.actions("restarted", "attempt").len();
        app.start_again(&flags);
        let (t, run) = ended(&app, &inst, &task, ROLL_LIMIT).await;
        let most_down = watch.most();
        assert_eq!(t["status"], "SUCCESS", "{t} {run}");
        let restarts: Vec<String> = control.restarts().into_iter().map(|(broker, _)| broker).collect();
        assert!(killed_at >= 1, "killed before any restart");
        let distinct: BTreeSet<&String> = restarts.iter().collect();
        assert_eq!(distinct.len(), 3, "{restarts:?}");
        assert_eq!(restarts.len(), 3, "a broker was restarted twice: {restarts:?}");
        assert!(most_down <= 1, "{most_down} nodes were down at once");
        let after = pids(&kafka);
        for n in 1..=3 {
            assert!(after[&n].is_some() && after[&n] != before[&n], "node {n}: {before:?} -> {after:?}");
        }
        // The kill came while the first restart ran, and the rest was done by the step's second attempt.
        assert_eq!((killed_at, finished_at), (1, 0), "not killed during the first restart");
        let attempts: Vec<String> = control.actions("restart", "attempt").into_iter().map(|(_, a)| a).collect();
        assert_eq!(attempts, ["1", "2", "2"], "{attempts:?}");
    }
}

/// The broker ids Kafka's BrokerApiVersionsCommand reaches (every registered, unfenced broker).
fn broker_ids(kafka: &Kafka) -> BTreeSet<u32> {
    let out = kafka.tool(&["api-versions", "--bootstrap-server", kafka.bootstrap()]);
    out.split("(id: ").skip(1).filter_map(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()).collect()
}

/// Takes added node `n` out of the shared cluster (stopped, unregistered) when the test ends,
/// however it ends, so later tests see the three brokers.
struct AddedNode<'a>(&'a Kafka, u32);

impl Drop for AddedNode<'_> {
    fn drop(&mut self) {
        let _ = Command::new(&self.0.script)
            .args(["remove-node", &self.1.to_string()])
            .env("KAFKA_CLUSTER_DIR", self.0.var("KAFKA_CLUSTER_DIR"))
            .output();
    }
}

on_postgres! {
    #[tokio::test]
    async fn extending_a_bound_instance_adds_a_broker_kafka_s_tools_see_and_grows_storage_through_the_program() {
        let Some(kafka) = Kafka::get_exclusive() else { return };
        let control = Control::new(&kafka);
        let app = server(&control, &[]).await;
        let inst = bind(&app, &kafka, &control).await;
        let shown = app.show_instance(&inst).await.json();
        let brokers = shown["broker_num"].as_u64().expect("broker_num");
        assert_eq!(broker_ids(&kafka), BTreeSet::from([1, 2, 3]), "the cluster has other brokers before the test");
        let name = format!("extend-{}-{}", std::process::id(), kafka_tasks::domain::now_ms());
        topic(&kafka, &name);
        let _added = AddedNode(&kafka, 4);

        let res = app.resize(&inst, json!({"oper_type": "horizontal", "new_broker_num": brokers + 1})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
        let (t, run) = ended(&app, &inst, &task, Duration::from_secs(180)).await;
        assert_eq!(t["status"], "SUCCESS", "{t} {run}");
        assert_eq!(t["name"], "extendInstance", "{t}");
        let p = app.progress(&inst, &task).await.json();
        let steps: Vec<&str> =
            p["step_list"].as_array().map_or(vec![], |s| s.iter().filter_map(|s| s["name"].as_str()).collect());
        assert_eq!(steps, ["pre_check", "create_brokers", "rolling_scaling"], "{p}");
        assert_eq!(p["progress_percentage"], 100, "{p}");
        // Kafka's own tool reaches the new broker; the program was asked once, for broker 4.
        assert_eq!(broker_ids(&kafka), BTreeSet::from([1, 2, 3, 4]));
        let asked: Vec<(String, String)> = control.actions("add-broker", "task");
        assert_eq!(asked, [("4".to_owned(), task.clone())], "{asked:?}");
        assert_eq!(app.show_instance(&inst).await.json()["broker_num"], json!(brokers + 1));
        // No rebalance was asked for, so none happened: the topic made before keeps its replicas.
        let described = kafka.tool(&["topics", "--bootstrap-server", kafka.bootstrap(), "--describe", "--topic", &name]);
        let replicas: Vec<&str> =
            described.lines().filter_map(|l| l.split("Replicas: ").nth(1)?.split_whitespace().next()).collect();
        assert_eq!(replicas.len(), 3, "{described}");
        assert!(replicas.iter().all(|r| !r.split(',').any(|b| b == "4")), "a partition moved to broker 4: {described}");

        // More storage, on the four brokers: the program is asked for each one's share.
        let storage = shown["storage_space"].as_u64().expect("storage_space");
        let recorded = |n: u32| Path::new(kafka.var("KAFKA_CLUSTER_DIR")).join(format!("node-{n}.storage-gb"));
        for n in 1..=4 {
            let _ = std::fs::remove_file(recorded(n));
        }
        let res = app.resize(&inst, json!({"oper_type": "storage", "new_storage_space": storage * 4})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
        let (t, run) = ended(&app, &inst, &task, Duration::from_secs(60)).await;
        assert_eq!(t["status"], "SUCCESS", "{t} {run}");
        let per_broker = (storage * 4).div_ceil(4).to_string();
        for n in 1..=4 {
            assert_eq!(std::fs::read_to_string(recorded(n)).unwrap_or_default().trim(), per_broker, "broker {n}");
        }
        drop(_added);
        assert_eq!(broker_ids(&kafka), BTreeSet::from([1, 2, 3]), "broker 4 is still there after the test");
    }
}

/// A cluster of its own in a temporary directory, cleaned (nodes stopped, files removed) on drop.
struct OwnCluster {
    dir: tempfile::TempDir,
    script: PathBuf,
}

impl OwnCluster {
    fn start(version: &str) -> OwnCluster {
        let dir = tempfile::tempdir().expect("dir");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-cluster.sh");
        let c = OwnCluster { dir, script };
        let out = c.command(&["start"]).env("KAFKA_BASE_PORT", "auto").env("KAFKA_VERSION", version).output();
        let out = out.expect("the cluster script runs");
        assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));
        c
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.script);
        cmd.args(args).env("KAFKA_CLUSTER_DIR", self.dir.path()).env_remove("KAFKA_VERSION");
        cmd
    }

    fn output(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("the cluster script runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn bootstrap(&self) -> String {
        let env = self.output(&["env"]);
        env.lines().find_map(|l| l.strip_prefix("KAFKA_BOOTSTRAP=")).expect("bootstrap").replace("\\,", ",")
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = self.command(&["clean"]).output();
    }
}

on_postgres! {
    #[tokio::test]
    async fn a_kernel_upgrade_moves_every_node_to_the_new_release_and_finalises_the_metadata_version() {
        // Its own cluster, on the oldest 4.x the script runs; the shared one is left on its version.
        let Some(_turn) = Kafka::get_exclusive() else { return };
        let cluster = OwnCluster::start("4.0.1");
        let dir = cluster.dir.path().display().to_string();
        let control = tempfile::tempdir().expect("dir");
        let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/broker-control/kafka-cluster.sh");
        let wrapper = control.path().join("control.sh");
        std::fs::write(&wrapper, format!("#!/bin/sh\nKAFKA_CLUSTER_DIR='{dir}' exec '{}' \"$@\"\n", example.display()))
            .expect("wrapper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let control_dir = control.path().to_str().expect("utf-8");
        let app = TestApp::spawn_with(&[
            "--time-scale",
            "0",
            "--cluster-allow",
            "127.0.0.1",
            "--broker-control-dir",
            control_dir,
        ])
        .await;
        let inst = app.create_instance().await;
        let body = json!({"bootstrap_servers": cluster.bootstrap(), "broker_control": wrapper.display().to_string()});
        let res = app.put(&format!("{}/cluster", app.instance_path(&inst)), Some(body)).await;
        assert_eq!(res.status, 200, "{}", res.text);
        // The operator's catalog names the release a build runs.
        const BUILD: &str = "4.3.2-h0.cbu.dms.200.r0";
        app.add_kernel_build("2.7", BUILD).await.expect("added");
        // ShowUpgradeInstanceVersion asks the brokers: 4.0 (no build of the catalog is on that line).
        let shown = app.show_upgrade(&inst).await.json();
        assert_eq!((shown["current_version"].as_str(), shown["latest_version"].as_str()), (Some("4.0"), Some(BUILD)));

        // Under traffic (acks=all, RF 3, min.insync.replicas 2): no acknowledged message is lost.
        let name = format!("upgrade-{}", std::process::id());
        let bootstrap = cluster.bootstrap();
        cluster.output(&[&["tools"][..], &new_topic(&bootstrap, &name)].concat());
        let work = tempfile::tempdir().expect("dir");
        let produced = work.path().join("produced.jsonl");
        let mut producer = produce(&cluster.script, &dir, &bootstrap, &name, &produced);
        acked_beyond(&produced, 0).await;
        let res = app.upgrade(&inst, json!({})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
        let (t, run) = ended(&app, &inst, &task, ROLL_LIMIT).await;
        acked_beyond(&produced, acked_count(&produced)).await;
        stop_producing(&mut producer);
        assert_eq!(t["status"], "SUCCESS", "{t} {run}");
        read_back(&cluster.script, &dir, &bootstrap, &name, work.path()).await;
        let shown = app.show_upgrade(&inst).await.json();
        assert_eq!(shown["current_version"], BUILD, "{shown}");

        // Each node's JVM runs the 4.3.2 jars (its command line), and the cluster's metadata version
        // is 4.3's (Kafka's FeatureCommand).
        let status = cluster.output(&["status"]);
        for n in 1..=3 {
            let line = status.lines().find(|l| l.starts_with(&format!("node {n}: running, pid "))).expect("running");
            let pid = line.split("pid ").nth(1).and_then(|r| r.split(',').next()).expect("pid");
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            assert!(cmdline.contains("/4.3.2/lib/"), "node {n} runs {cmdline}");
        }
        // The 4.3.2 tool: the 4.0.1 one the cluster was made with has no names for 4.3's levels.
        let out = cluster
            .command(&["tools", "features", "--bootstrap-server", &cluster.bootstrap(), "describe"])
            .env("KAFKA_VERSION", "4.3.2")
            .output()
            .expect("the tool runs");
        let features = String::from_utf8_lossy(&out.stdout);
        let mv = features.lines().find(|l| l.contains("Feature: metadata.version")).expect("metadata.version");
        assert!(mv.contains("FinalizedVersionLevel: 4.3-"), "{mv}");
        assert!(run["output_tail"].as_str().unwrap_or("").contains("metadata.version finalised"), "{run}");

        // The auto-topic switch, a static config whose DMS steps have no rolling_restart of their
        // own, on the same throw-away cluster: every broker shows it after the roll (ConfigCommand).
        let res = app.auto_topic(&inst, true).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
        let (t, run) = ended(&app, &inst, &task, ROLL_LIMIT).await;
        assert_eq!(t["status"], "SUCCESS", "{t} {run}");
        for broker in ["1", "2", "3"] {
            let args = [
                "tools",
                "configs",
                "--bootstrap-server",
                &cluster.bootstrap(),
                "--entity-type",
                "brokers",
                "--entity-name",
                broker,
                "--describe",
                "--all",
            ];
            let out = cluster.command(&args).env("KAFKA_VERSION", "4.3.2").output().expect("the tool runs");
            let configs = String::from_utf8_lossy(&out.stdout);
            assert!(
                configs.lines().any(|l| l.trim().starts_with("auto.create.topics.enable=true ")),
                "broker {broker}: {configs}"
            );
        }
    }
}

on_postgres! {
    #[tokio::test]
    async fn a_tenant_cannot_make_the_server_run_a_program_the_operator_did_not_allow() {
        // No cluster needed: the operator's rules are checked before the cluster is asked.
        let allowed = tempfile::tempdir().expect("dir");
        let inside = allowed.path().join("control.sh");
        std::fs::write(&inside, "#!/bin/sh\nexit 0\n").expect("program");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let link = allowed.path().join("sh");
        std::os::unix::fs::symlink("/bin/sh", &link).expect("link");

        async fn bind(app: &TestApp, inst: &str, program: &str) -> crate::helpers::Response {
            let body = json!({"bootstrap_servers": "127.0.0.1:9", "broker_control": program});
            app.put(&format!("{}/cluster", app.instance_path(inst)), Some(body)).await
        }

        // Without --broker-control-dir no binding may name a program, not even an allowed-looking one.
        let app = TestApp::spawn_with(&["--time-scale", "0", "--cluster-allow", "127.0.0.1"]).await;
        let inst = app.create_instance().await;
        let res = bind(&app, &inst, inside.to_str().expect("utf-8")).await;
        res.assert_error(400, "DMS.00400062");
        assert!(res.text.contains("--broker-control-dir"), "{}", res.text);

        // With it: a program elsewhere, a path climbing out, or a link out of the directory is refused.
        let dir = allowed.path().to_str().expect("utf-8");
        let app =
            TestApp::spawn_with(&["--time-scale", "0", "--cluster-allow", "127.0.0.1", "--broker-control-dir", dir]).await;
        let inst = app.create_instance().await;
        let climbing =
            format!("{dir}/../{}/control.sh", allowed.path().file_name().and_then(|n| n.to_str()).expect("name"));
        for program in ["/bin/sh", link.to_str().expect("utf-8")] {
            let res = bind(&app, &inst, program).await;
            res.assert_error(400, "DMS.00400062");
            assert!(res.text.contains("is not under the broker-control directory"), "{program}: {}", res.text);
        }
        // A path with `..` is refused even when it climbs back in: whether it would land inside
        // depends on the disk, and the answer must not tell what is on it.
        let res = bind(&app, &inst, &climbing).await;
        res.assert_error(400, "DMS.00400062");
        assert!(res.text.contains("is not under the broker-control directory"), "{}", res.text);
        // Nothing was bound by the refused requests.
        app.get(&format!("{}/cluster", app.instance_path(&inst))).await.assert_error(404, "DMS.00404090");
    }
}
