//! kafkaPartitionReassign and ShowInstance of a bound instance, against the real test cluster
//! (see `connected.rs`: skipped without `KAFKA_TASKS_TEST_KAFKA`, required in CI). Effects are
//! checked with Kafka's own tools: `kafka-topics --describe` for the replicas,
//! `kafka-configs --describe` for the throttles, `kafka-reassign-partitions --list/--verify`, and
//! VerifiableProducer/VerifiableConsumer for the messages.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::connected::{Kafka, allowing, bound, cluster_path, wait_ended};
use crate::helpers::TestApp;

/// The tests that set throttles run one at a time: throttle rates are per broker, and each test
/// checks that none is left.
static THROTTLES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A topic name no other test or run uses.
fn fresh(stem: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{stem}-{}-{nanos}", std::process::id())
}

/// Deletes the test's topics when it ends, passed or not (the cluster's disk is shared).
struct Cleanup {
    kafka: Tools,
    topics: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let args = ["topics", "--bootstrap-server", self.kafka.bootstrap(), "--delete", "--topic"];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(self.topics.join("|"));
        let _ = self.kafka.command(&args).output();
    }
}

/// What running Kafka's tools needs, apart from the cluster's turn guard (which stays on the
/// test's own thread): sendable to the blocking pool and to spawned tasks.
#[derive(Clone)]
struct Tools {
    script: std::path::PathBuf,
    dir: String,
    bootstrap: String,
}

impl Tools {
    fn of(kafka: &Kafka) -> Tools {
        Tools {
            script: kafka.script.clone(),
            dir: kafka.var("KAFKA_CLUSTER_DIR").to_owned(),
            bootstrap: kafka.bootstrap().to_owned(),
        }
    }

    fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    fn command(&self, args: &[String]) -> std::process::Command {
        let mut c = std::process::Command::new(&self.script);
        c.arg("tools").args(args).env("KAFKA_CLUSTER_DIR", &self.dir);
        c
    }
}

/// A Kafka tool's standard output, off the async runtime (a JVM takes seconds to start).
async fn tool(kafka: &Tools, args: &[&str]) -> String {
    let mut c = kafka.command(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let shown = format!("{args:?}");
    tokio::task::spawn_blocking(move || {
        let out = c.output().expect("the cluster script runs");
        assert!(out.status.success(), "{shown}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .expect("tool thread")
}

/// A topic of `partitions` partitions, every one on brokers 1 and 2, min.insync.replicas 2.
async fn topic_on_1_2(kafka: &Tools, name: &str, partitions: usize) {
    let assignment = vec!["1:2"; partitions].join(",");
    let b = kafka.bootstrap().to_owned();
    tool(
        kafka,
        &[
            "topics",
            "--bootstrap-server",
            &b,
            "--create",
            "--topic",
            name,
            "--replica-assignment",
            &assignment,
            "--config",
            "min.insync.replicas=2",
        ],
    )
    .await;
}

/// `records` records of `size` bytes, acks=all, with Kafka's ProducerPerformance.
async fn fill(kafka: &Tools, topic: &str, records: u64, size: u64) {
    let servers = format!("bootstrap.servers={}", kafka.bootstrap());
    let out = tool(
        kafka,
        &[
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            topic,
            "--num-records",
            &records.to_string(),
            "--record-size",
            &size.to_string(),
            "--throughput",
            "-1",
            "--producer-props",
            &servers,
            "acks=all",
        ],
    )
    .await;
    assert!(out.contains(&format!("{records} records sent")), "{out}");
}

/// Partition → replicas, as `kafka-topics --describe` shows them.
async fn replicas(kafka: &Tools, topic: &str) -> BTreeMap<i32, (Vec<i32>, Vec<i32>)> {
    let b = kafka.bootstrap().to_owned();
    let out = tool(kafka, &["topics", "--bootstrap-server", &b, "--describe", "--topic", topic]).await;
    let field = |line: &str, name: &str| -> Option<String> {
        let rest = line.split(&format!("{name}: ")).nth(1)?;
        Some(rest.split_whitespace().next().unwrap_or_default().to_owned())
    };
    let ids = |s: String| s.split(',').filter_map(|b| b.parse().ok()).collect::<Vec<i32>>();
    out.lines()
        .filter(|l| l.contains("Partition: "))
        .filter_map(|l| {
            let p = field(l, "Partition")?.parse().ok()?;
            Some((p, (ids(field(l, "Replicas")?), ids(field(l, "Isr")?))))
        })
        .collect()
}

/// The dynamic configs of a topic or broker that throttle replication, as `kafka-configs` shows.
async fn throttles(kafka: &Tools, kind: &str, name: &str) -> Vec<String> {
    let b = kafka.bootstrap().to_owned();
    let out =
        tool(kafka, &["configs", "--bootstrap-server", &b, "--entity-type", kind, "--entity-name", name, "--describe"])
            .await;
    out.lines()
        .map(str::trim)
        .filter(|l| l.contains("replication.throttled"))
        .map(|l| l.split(" sensitive=").next().unwrap_or(l).to_owned())
        .collect()
}

fn reassign_path(app: &TestApp, inst: &str) -> String {
    format!("/v2/{}/kafka/instances/{inst}/reassign", app.project)
}

async fn progress(app: &TestApp, inst: &str, task: &str) -> Option<u64> {
    let res = app.get(&format!("{}/tasks/{task}/progress", app.instance_path(inst))).await;
    res.json()["progress_percentage"].as_u64()
}

/// The target `brokers: [3, 2]` gives partition `p`: `[3, 2]` for even `p`, `[2, 3]` for odd.
fn target(p: i32) -> Vec<i32> {
    if p % 2 == 0 { vec![3, 2] } else { vec![2, 3] }
}

async fn check_on_target(kafka: &Tools, topic: &str, partitions: i32) {
    let seen = replicas(kafka, topic).await;
    assert_eq!(seen.len() as i32, partitions, "{seen:?}");
    for (p, (replicas, isr)) in &seen {
        assert_eq!(replicas, &target(*p), "{topic}-{p}: {seen:?}");
        let mut isr = isr.clone();
        isr.sort();
        assert_eq!(isr, [2, 3], "{topic}-{p} in sync: {seen:?}");
    }
}

async fn check_no_throttles(kafka: &Tools, topics: &[&str]) {
    for t in topics {
        let left = throttles(kafka, "topics", t).await;
        assert!(left.is_empty(), "topic {t} keeps {left:?}");
    }
    for b in ["1", "2", "3"] {
        let left = throttles(kafka, "brokers", b).await;
        assert!(left.is_empty(), "broker {b} keeps {left:?}");
    }
}

/// `kafka-reassign-partitions --verify` of the same target, keeping throttles (its own removal
/// would hide ours): every partition's reassignment complete.
async fn verify_with_kafkas_tool(kafka: &Tools, topics: &[&str], partitions: i32) {
    let parts: Vec<Value> = topics
        .iter()
        .flat_map(|t| (0..partitions).map(move |p| json!({"topic": t, "partition": p, "replicas": target(p)})))
        .collect();
    let file = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(file.path(), json!({"version": 1, "partitions": parts}).to_string()).expect("written");
    let path = file.path().display().to_string();
    let b = kafka.bootstrap().to_owned();
    let out = tool(
        kafka,
        &["reassign", "--bootstrap-server", &b, "--reassignment-json-file", &path, "--verify", "--preserve-throttles"],
    )
    .await;
    let complete = out.lines().filter(|l| l.contains("is completed")).count();
    assert_eq!(complete, topics.len() * partitions as usize, "{out}");
}

/// Acked (partition, offset) → value of a VerifiableProducer run, or what a consumer read.
fn events(out: &str, name: &str) -> HashMap<(i64, i64), String> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|e| e["name"] == name)
        .filter_map(|e| Some(((e["partition"].as_i64()?, e["offset"].as_i64()?), e["value"].as_str()?.to_owned())))
        .collect()
}

on_sqlite! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_throttled_reassignment_moves_replicas_keeps_every_message_and_removes_its_throttles() {
        let Some(turn) = Kafka::get() else { return };
        let _serial = THROTTLES.lock().await;
        let kafka = Tools::of(&turn);
        let app = Arc::new(allowing(&[]).await);
        let inst = bound(&app, &turn).await;
        let (bulk, msgs) = (fresh("reassign-bulk"), fresh("reassign-msgs"));
        let _cleanup = Cleanup { kafka: kafka.clone(), topics: vec![bulk.clone(), msgs.clone()] };
        const PARTS: i32 = 4;
        topic_on_1_2(&kafka, &bulk, PARTS as usize).await;
        topic_on_1_2(&kafka, &msgs, PARTS as usize).await;
        // 24 MB to copy to broker 3 at 3 MB/s: long enough to watch, short enough for a test.
        fill(&kafka, &bulk, 2400, 10_000).await;
        let b = kafka.bootstrap().to_owned();
        let produced = tool(
            &kafka,
            &[
                "producer",
                "--bootstrap-server",
                &b,
                "--topic",
                &msgs,
                "--acks",
                "-1",
                "--max-messages",
                "2000",
                "--repeating-keys",
                "40",
            ],
        )
        .await;
        let acked = events(&produced, "producer_send_success");
        assert_eq!(acked.len(), 2000, "every message acked with acks=all");

        let body = json!({"reassignments": [{"topic": bulk, "brokers": [3, 2]}, {"topic": msgs, "brokers": [3, 2]}],
                          "throttle": 3_000_000});
        // The estimate comes from the cluster: about 24 MB into broker 3 at 3 MB/s.
        let mut estimate = body.clone();
        estimate["time_estimate"] = json!(true);
        let res = app.post(&reassign_path(&app, &inst), estimate).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let secs = res.json()["reassignment_time"].as_u64().expect("reassignment_time");
        assert!((6..=20).contains(&secs), "estimate {secs} s for ~24 MB at 3 MB/s");

        let res = app.post(&reassign_path(&app, &inst), body).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
        // Progress as a DMS client sees it, sampled until the task ends.
        let sampler = {
            let (app, inst, task) = (app.clone(), inst.clone(), task.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let t = app.show_task(&inst, &task).await.json()["tasks"][0].clone();
                    if let Some(p) = progress(&app, &inst, &task).await {
                        seen.push(p);
                    }
                    if t["status"] == "SUCCESS" || t["status"] == "FAILED" {
                        return seen;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        // While it runs, Kafka's own tool shows the throttles as kafka-reassign-partitions sets them.
        let deadline = Instant::now() + Duration::from_secs(20);
        let during = loop {
            let t = throttles(&kafka, "topics", &bulk).await;
            if t.iter().any(|l| l.starts_with("follower.replication.throttled.replicas")) || Instant::now() > deadline {
                break t;
            }
        };
        let leader: Vec<String> = (0..PARTS).flat_map(|p| [format!("{p}:1"), format!("{p}:2")]).collect();
        let follower: Vec<String> = (0..PARTS).map(|p| format!("{p}:3")).collect();
        assert!(during.contains(&format!("leader.replication.throttled.replicas={}", leader.join(","))), "{during:?}");
        assert!(during.contains(&format!("follower.replication.throttled.replicas={}", follower.join(","))), "{during:?}");
        let rate = throttles(&kafka, "brokers", "3").await;
        assert!(rate.contains(&"leader.replication.throttled.rate=3000000".to_owned()), "{rate:?}");
        assert!(rate.contains(&"follower.replication.throttled.rate=3000000".to_owned()), "{rate:?}");

        let t = wait_ended(&app, &inst, &task).await;
        let run = app.get(&format!("{}/tasks/{task}/executor", app.instance_path(&inst))).await.json();
        assert_eq!(t["status"], "SUCCESS", "{t} {run}");
        let samples = sampler.await.expect("sampler");
        assert!(samples.windows(2).all(|w| w[0] <= w[1]), "progress went backwards: {samples:?}");
        assert!(samples.iter().any(|p| *p > 0 && *p < 100), "no progress between 0 and 100 was seen: {samples:?}");

        // Kafka's view: the replicas are where they were asked to be, in sync; no throttle is left.
        check_no_throttles(&kafka, &[&bulk, &msgs]).await;
        check_on_target(&kafka, &bulk, PARTS).await;
        check_on_target(&kafka, &msgs, PARTS).await;
        verify_with_kafkas_tool(&kafka, &[&bulk, &msgs], PARTS).await;
        // Every message acked before the move is read back after it, with its value.
        let consumed = tool(
            &kafka,
            &[
                "consumer",
                "--bootstrap-server",
                &b,
                "--topic",
                &msgs,
                "--group-id",
                &format!("{msgs}-reader"),
                "--max-messages",
                "2000",
                "--verbose",
            ],
        )
        .await;
        let read = events(&consumed, "record_data");
        let lost: Vec<_> = acked.iter().filter(|(k, v)| read.get(k) != Some(v)).map(|(k, _)| k).collect();
        assert!(lost.is_empty(), "{} acked messages not read back, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    }
}

on_sqlite! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_the_cluster_cannot_do_fails_pre_check_with_nothing_changed() {
        let Some(turn) = Kafka::get() else { return };
        let _serial = THROTTLES.lock().await;
        let kafka = Tools::of(&turn);
        let app = allowing(&[]).await;
        let inst = bound(&app, &turn).await;
        let name = fresh("reassign-refused");
        let _cleanup = Cleanup { kafka: kafka.clone(), topics: vec![name.clone()] };
        topic_on_1_2(&kafka, &name, 2).await;
        let cases = [
            (json!({"reassignments": [{"topic": "no-such-topic-anywhere", "brokers": [1, 2]}]}), "no-such-topic-anywhere"),
            (json!({"reassignments": [{"topic": name, "brokers": [2, 7]}]}), "broker 7 is not in the cluster"),
            (
                json!({"reassignments": [{"topic": name, "assignment": [{"partition": 9, "partition_brokers": [1, 3]}]}]}),
                "no partition 9",
            ),
        ];
        for (body, why) in cases {
            // The estimate refuses it with the cluster's reason, as a DMS error.
            let mut estimate = body.clone();
            estimate["time_estimate"] = json!(true);
            let res = app.post(&reassign_path(&app, &inst), estimate).await;
            res.assert_error(400, "DMS.00400062");
            assert!(res.text.contains(why), "{why}: {}", res.text);
            let res = app.post(&reassign_path(&app, &inst), body).await;
            assert_eq!(res.status, 200, "{}", res.text);
            let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
            let t = wait_ended(&app, &inst, &task).await;
            assert_eq!(t["status"], "FAILED", "{t}");
            let run = app.get(&format!("{}/tasks/{task}/executor", app.instance_path(&inst))).await.json();
            assert_eq!(run["step"], "pre_check", "{run}");
            let reason = run["reason"].as_str().unwrap_or_default();
            assert!(reason.contains(why) && reason.contains("nothing was changed"), "{run}");
        }
        // Nothing moved, nothing throttled.
        for (p, (replicas, _)) in replicas(&kafka, &name).await {
            assert_eq!(replicas, [1, 2], "partition {p}");
        }
        check_no_throttles(&kafka, &[&name]).await;
    }
}

/// A listener that forwards to the cluster until told to go silent: then it accepts and never
/// answers, as a hung cluster or a black-holed network does.
struct Silencer {
    addr: String,
    silent: Arc<std::sync::atomic::AtomicBool>,
}

impl Silencer {
    async fn start(to: String) -> Silencer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let silent = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = silent.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (flag, to) = (flag.clone(), to.clone());
                tokio::spawn(async move {
                    if flag.load(std::sync::atomic::Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        return;
                    }
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        Silencer { addr, silent }
    }
}

on_sqlite! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn show_instance_reflects_the_cluster_and_an_unreachable_one_within_the_bound() {
        let Some(kafka) = Kafka::get() else { return };
        let app = allowing(&[]).await;
        let first = kafka.bootstrap().split(',').next().expect("a server").to_owned();
        let proxy = Silencer::start(first).await;
        let inst = app.create_instance().await;
        let _ = app.wait_instance_status(&inst, "RUNNING").await;
        let res = app.put(&cluster_path(&app, &inst), Some(json!({"bootstrap_servers": proxy.addr}))).await;
        assert_eq!(res.status, 200, "{}", res.text);

        // Reachable: the cluster's brokers and metadata version, status unchanged.
        let v = app.show_instance(&inst).await.json();
        assert_eq!(v["status"], "RUNNING", "{v}");
        assert_eq!(v["cluster"]["reachable"], true, "{v}");
        assert_eq!(v["cluster"]["broker_ids"], json!([1, 2, 3]), "{v}");
        assert_eq!(v["broker_num"], 3, "{v}");
        assert_eq!(v["cluster"]["cluster_id"], kafka.var("KAFKA_CLUSTER_ID"), "{v}");
        assert!(v["cluster"]["metadata_version"].as_i64().is_some_and(|l| l > 0), "{v}");
        // The independent view agrees: Kafka's feature tool shows the same finalized levels (it names
        // metadata.version's level as a release, `4.3-IV0`; the others as numbers).
        let b = kafka.bootstrap().to_owned();
        let features = kafka.tool(&["features", "--bootstrap-server", &b, "describe"]);
        let mut compared = 0;
        for line in features.lines() {
            let word = |key: &str| line.split(key).nth(1).and_then(|r| r.split_whitespace().next()).map(str::to_owned);
            let (Some(name), Some(level)) = (word("Feature: "), word("FinalizedVersionLevel: ")) else { continue };
            if let Ok(level) = level.parse::<i64>() {
                // Kafka does not list a feature finalized at level 0 in ApiVersions.
                assert_eq!(v["cluster"]["features"][&name].as_i64().unwrap_or(0), level, "{name}: {features} {v}");
                compared += 1;
            }
        }
        assert!(compared >= 2, "{features}");
        // ShowUpgradeInstanceVersion names the release line the brokers support (`4.3-IV0` → 4.3; no
        // build of the instance's catalog is on it), not the instance record's build.
        let line = features
            .lines()
            .find(|l| l.contains("Feature: metadata.version"))
            .and_then(|l| l.split("SupportedMaxVersion: ").nth(1))
            .and_then(|r| r.split("-IV").next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no supported metadata.version in {features}"));
        let shown = app.show_upgrade(&inst).await;
        assert_eq!(shown.json()["current_version"].as_str(), Some(line.as_str()), "{}", shown.text);

        // Silent: ShowInstance still answers promptly, RUNNING, with the reason, and fast again while
        // the failure is cached.
        proxy.silent.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(6)).await; // past the cache's five seconds
        let started = Instant::now();
        let v = app.show_instance(&inst).await.json();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(4), "ShowInstance took {took:?} on a silent cluster");
        assert_eq!(v["status"], "RUNNING", "{v}");
        assert_eq!(v["cluster"]["reachable"], false, "{v}");
        assert!(v["cluster"]["error"].as_str().is_some_and(|e| e.contains("cannot use the cluster")), "{v}");
        let started = Instant::now();
        let again = app.show_instance(&inst).await.json();
        assert!(started.elapsed() < Duration::from_millis(500), "the failure was not cached: {:?}", started.elapsed());
        assert_eq!(again["cluster"]["reachable"], false);
        // ShowUpgradeInstanceVersion says so too, in DMS's error format, from the same cache.
        let started = Instant::now();
        let res = app.show_upgrade(&inst).await;
        res.assert_error(400, "DMS.00400062");
        assert!(res.text.contains("cannot use the cluster"), "{}", res.text);
        assert!(started.elapsed() < Duration::from_millis(500), "not from the cache: {:?}", started.elapsed());

        // A reassignment on the silent cluster fails cleanly at pre_check, within the call timeout.
        let started = Instant::now();
        let res =
            app.post(&reassign_path(&app, &inst), json!({"reassignments": [{"topic": "t", "brokers": [1, 2]}]})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
        let t = wait_ended(&app, &inst, &task).await;
        assert_eq!(t["status"], "FAILED", "{t}");
        assert!(started.elapsed() < Duration::from_secs(45), "took {:?}", started.elapsed());
        let run = app.get(&format!("{}/tasks/{task}/executor", app.instance_path(&inst))).await.json();
        assert_eq!(run["step"], "pre_check", "{run}");
        assert!(run["reason"].as_str().is_some_and(|r| r.contains("cannot use the cluster")), "{run}");
    }
}

on_sqlite! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kill9_mid_reassignment_the_next_process_adopts_it_and_submits_nothing_again() {
        let Some(turn) = Kafka::get() else { return };
        let _serial = THROTTLES.lock().await;
        let kafka = Tools::of(&turn);
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("kafka-tasks.log");
        let flags = ["--time-scale", "0", "--cluster-allow", "127.0.0.1", "--lease-ms", "2000"];
        let mut app = TestApp::spawn_process_logged(&flags, Some(&log)).await;
        let inst = bound(&app, &turn).await;
        let name = fresh("reassign-crash");
        let _cleanup = Cleanup { kafka: kafka.clone(), topics: vec![name.clone()] };
        const PARTS: i32 = 4;
        topic_on_1_2(&kafka, &name, PARTS as usize).await;
        fill(&kafka, &name, 2400, 10_000).await;
        let body = json!({"reassignments": [{"topic": name, "brokers": [3, 2]}], "throttle": 2_000_000});
        let res = app.post(&reassign_path(&app, &inst), body).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
        // Killed once the move is under way (bytes copied, not all).
        let deadline = Instant::now() + Duration::from_secs(60);
        let before = loop {
            let run = app.get(&format!("{}/tasks/{task}/executor", app.instance_path(&inst))).await.json();
            if run["step"] == "reassign_partitions" && run["progress"].as_u64().is_some_and(|p| p > 0 && p < 90) {
                break run["progress"].as_u64().unwrap_or_default();
            }
            assert!(Instant::now() < deadline, "the move never got under way: {run}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        app.kill9();
        // Kafka's own tool: the reassignment is still in flight with nobody watching it.
        let b = kafka.bootstrap().to_owned();
        let listed = tool(&kafka, &["reassign", "--bootstrap-server", &b, "--list"]).await;
        assert!(listed.contains(&name), "not in flight after the kill (at {before} %): {listed}");

        app.start_again_logged(&flags, Some(&log));
        let t = wait_ended(&app, &inst, &task).await;
        let run = app.get(&format!("{}/tasks/{task}/executor", app.instance_path(&inst))).await.json();
        assert_eq!(t["status"], "SUCCESS", "{t} {run}");
        // Our log of AlterPartitionReassignments: one submission, of every partition, then an adoption.
        let text = std::fs::read_to_string(&log).expect("log");
        let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let sent: Vec<&Value> = lines.iter().filter(|l| l["message"] == "AlterPartitionReassignments sent").collect();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0]["partitions"], PARTS, "{sent:?}");
        let adopted: Vec<&Value> = lines.iter().filter(|l| l["message"] == "reassignment in flight adopted").collect();
        assert_eq!(adopted.len(), 1, "{adopted:?}");
        check_on_target(&kafka, &name, PARTS).await;
        check_no_throttles(&kafka, &[&name]).await;
        app.terminate();
    }
}
