//! Executors: steps run by a program or a webhook receiver, with the engine's
//! guarantees (attempts, timeouts, cancellation, crash recovery) carried over. The program is
//! tests/executors/step.sh; the webhook receiver is a few lines of TCP below.

use std::path::Path;
use std::time::{Duration, Instant};

use kafka_tasks::domain::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// The test executor's path.
fn step_sh() -> String {
    format!("{}/tests/executors/step.sh", env!("CARGO_MANIFEST_DIR"))
}

/// A directory for one test's executor: its config, its run log, its files.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Self {
        Work { dir: tempfile::tempdir().expect("temp dir") }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes an executor file running `ops` with step.sh (`env` added to its environment).
    fn exec_config(&self, ops: &[&str], env: &str, extra: &str) -> String {
        let mut text = String::from("[defaults]\nkill_grace_ms = 300\n");
        for op in ops {
            text.push_str(&format!(
                "[operations.{op}]\nkind = \"exec\"\nprogram = \"{}\"\nworking_dir = \"{}\"\n{extra}\nenv = {{ TEST_DIR = \"{}\"{env} }}\n",
                step_sh(),
                self.path().display(),
                self.path().display()
            ));
        }
        self.write_config(&text)
    }

    fn write_config(&self, text: &str) -> String {
        let file = self.path().join("executors.toml");
        std::fs::write(&file, text).expect("config written");
        file.to_str().expect("utf-8").to_owned()
    }

    /// The lines of the run log: `TASK STEP ATTEMPT`.
    fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.path().join("runs.log")).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    fn release(&self) {
        std::fs::write(self.path().join("release"), "").expect("released");
    }

    fn file_opt(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path().join(name)).ok().filter(|s| !s.trim().is_empty())
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Waits until the run log holds `line`.
    async fn wait_run(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.runs().iter().any(|l| l == line) {
            assert!(Instant::now() < deadline, "never ran {line:?}: {:?}", self.runs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(config: &str) -> TestApp {
    TestApp::spawn_with(&["--time-scale", "0", "--executors", config]).await
}

impl TestApp {
    /// The task's run, read at its path (`…/run`) and its older one (`…/executor`), which
    /// must answer the same.
    async fn executor_run(&self, instance: &str, task: &str) -> crate::helpers::Response {
        let run = self.get(&format!("{}/tasks/{task}/run", self.instance_path(instance))).await;
        let old = self.get(&format!("{}/tasks/{task}/executor", self.instance_path(instance))).await;
        assert_eq!((old.status, &old.text), (run.status, &run.text), "the old path answers as the new");
        run
    }

    /// Waits until the progress endpoint shows `pct`.
    async fn wait_progress(&self, instance: &str, task: &str, pct: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let p = self.progress(instance, task).await.json();
            if p["progress_percentage"] == pct {
                return p;
            }
            assert!(Instant::now() < deadline, "progress never reached {pct}: {p}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

per_engine! {
    #[tokio::test]
    async fn an_exec_step_reports_progress_through_show_background_task_progress() {
        let work = Work::new();
        let app = serve(&work.exec_config(&["restartInstance"], ", HOLD_STEP = \"rolling_restart\"", "")).await;
        let inst = app.create_instance().await;
        let task = app.restart_instance(&inst).await;
        // pre_check done, rolling_restart at 40 % by its own report, health_check waiting: (100 + 40) / 3.
        let p = app.wait_progress(&inst, &task, 46).await;
        assert_eq!(p["step_list"][1]["statue"], "IN_PROGRESS", "{p}");
        assert_eq!(app.show_instance(&inst).await.json()["status"], "RESTARTING");
        let run = app.executor_run(&inst, &task).await.json();
        assert_eq!(
            (run["step"].as_str(), run["attempt"].as_u64(), run["progress"].as_u64()),
            (Some("rolling_restart"), Some(1), Some(40))
        );
        assert_eq!(run["message"], "working");

        work.release();
        app.wait_task_status(&inst, &task, "SUCCESS").await;
        let p = app.progress(&inst, &task).await.json();
        assert_eq!(p["progress_percentage"], 100);
        let ran: Vec<String> =
            ["pre_check", "rolling_restart", "health_check"].iter().map(|s| format!("{task} {s} 1")).collect();
        assert_eq!(work.runs(), ran, "each step ran once, in order, as attempt 1");
        let run = app.executor_run(&inst, &task).await.json();
        assert!(run["output_tail"].as_str().is_some_and(|t| t.contains("plain output of health_check")), "{run}");
        assert!(run["reason"].is_null());
        assert_eq!(app.show_instance(&inst).await.json()["status"], "RUNNING");
        // The document on stdin names the step, the attempt and the instance.
        let doc: Value =
            serde_json::from_str(&work.file(&format!("{task}.rolling_restart.1.stdin"))).expect("JSON on stdin");
        assert_eq!((doc["step"].as_str(), doc["attempt"].as_u64()), (Some("rolling_restart"), Some(1)));
        assert_eq!(doc["instance"]["instance_id"], inst.as_str());
        assert_eq!(doc["operation"], "restartInstance");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_readonly_key_never_sees_an_executor_s_output() {
        let work = Work::new();
        let app = serve(&work.exec_config(&["restartInstance"], "", "")).await;
        let inst = app.create_instance().await;
        let task = app.restart_instance(&inst).await;
        app.wait_task_status(&inst, &task, "SUCCESS").await;
        let reader = app.credential(&app.project, "reader", Role::Readonly).await;
        let path = format!("{}/tasks/{task}/executor", app.instance_path(&inst));
        app.request_as(&reader, Method::GET, &path, None).await.assert_error(403, "DMS.00403003");
        assert_eq!(app.executor_run(&inst, &task).await.status, 200);
        // Progress stays open to every key of the project.
        let progress = format!("{}/tasks/{task}/progress", app.instance_path(&inst));
        assert_eq!(app.request_as(&reader, Method::GET, &progress, None).await.status, 200);
    }
}

per_engine! {
    #[tokio::test]
    async fn a_failing_step_fails_the_task_with_its_exit_code_and_stderr_and_changes_nothing() {
        let work = Work::new();
        let config = work.exec_config(&["kafkaConfigModify"], ", FAIL_STEP = \"apply_config\"", "");
        // A process of its own: the run counters asserted below are the process's, and this
        // test's other engine runs beside it in this one.
        let app = TestApp::spawn_process(&["--time-scale", "0", "--executors", &config]).await;
        let inst = app.create_instance().await;
        let res = app.modify_configs(&inst, json!([{"name": "log.retention.hours", "value": "24"}])).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
        app.wait_task_status(&inst, &task, "FAILED").await;

        let p = app.progress(&inst, &task).await.json();
        let statues: Vec<&str> =
            p["step_list"].as_array().expect("steps").iter().filter_map(|s| s["statue"].as_str()).collect();
        assert_eq!(statues, ["COMPLETED", "FAILED"]);
        let run = app.executor_run(&inst, &task).await.json();
        let reason = run["reason"].as_str().expect("a reason");
        assert!(reason.contains("exit code 3") && reason.contains("the broker said no"), "{reason}");
        assert_eq!((run["failure"]["step"].as_str(), &run["failure"]["reason"]), (Some("apply_config"), &run["reason"]));
        assert!(run["failure"]["remedy"].as_str().is_some_and(|r| r.contains("executor's output")), "{run}");
        // The change was not applied, and the instance is free again.
        let configs = app.get(&format!("{}/configs", app.instance_path(&inst))).await.json();
        let retention = configs["kafka_configs"]
            .as_array()
            .expect("configs")
            .iter()
            .find(|c| c["name"] == "log.retention.hours")
            .cloned();
        assert_eq!(retention.map(|c| c["value"].clone()), Some(json!("72")));
        assert_eq!(app.show_instance(&inst).await.json()["status"], "RUNNING");
        // The failure is in the audit trail, with its reason.
        let events = app.db.storage().await.audit.list_audit(None, None, 1000).await.expect("audit");
        let failed: Vec<_> = events.iter().filter(|e| e.action == "kafka-tasks:executor:failStep").collect();
        assert_eq!(failed.len(), 1, "{events:?}");
        assert_eq!(failed[0].target, task);
        let detail = failed[0].detail.clone().expect("detail");
        assert_eq!((detail["step"].as_str(), detail["attempt"].as_u64()), (Some("apply_config"), Some(1)));
        assert!(detail["reason"].as_str().is_some_and(|r| r.contains("the broker said no")));
        // Runs are counted by operation, executor kind and outcome: one success, one failure.
        let metrics = app.send(Method::GET, "/metrics", None, &[]).await.text;
        let count = |outcome: &str| {
            let series = format!(
                "kafka_tasks_executor_runs_total{{operation=\"kafkaConfigModify\",executor=\"exec\",outcome=\"{outcome}\"}} "
            );
            metrics.lines().find_map(|l| l.strip_prefix(&series)).map(str::to_owned)
        };
        assert_eq!((count("success").as_deref(), count("failure").as_deref()), (Some("1"), Some("1")), "{metrics}");
        assert!(metrics.contains("kafka_tasks_executor_run_duration_seconds_bucket{operation=\"kafkaConfigModify\""));
    }
}

per_engine! {
    #[tokio::test]
    async fn a_step_past_its_timeout_fails_the_task_and_its_whole_process_group_is_killed() {
        let work = Work::new();
        let config = work.exec_config(&["restartInstance"], ", SLEEP_STEP = \"pre_check\"", "timeout_secs = 1");
        let app = serve(&config).await;
        let inst = app.create_instance().await;
        let task = app.restart_instance(&inst).await;
        let started = Instant::now();
        app.wait_task_status(&inst, &task, "FAILED").await;
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        let run = app.executor_run(&inst, &task).await.json();
        assert!(run["reason"].as_str().is_some_and(|r| r.contains("timed out after 1 s")), "{run}");
        // The program's own child (a `sleep 300`) went with it.
        let child = work.file("child.pid").trim().to_owned();
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(&child) {
            assert!(Instant::now() < deadline, "the executor's child {child} outlived the timeout");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(app.show_instance(&inst).await.json()["status"], "RUNNING");
    }
}

/// Whether a process runs (a zombie does not count).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

per_engine! {
    #[tokio::test]
    async fn a_scheduled_task_cancelled_before_it_fires_never_starts_its_executor() {
        let work = Work::new();
        let app = serve(&work.exec_config(&["kafkaPartitionReassign"], "", "")).await;
        let inst = app.create_instance().await;
        let at = app.clock.now_ms() + 60_000;
        let res = app
            .reassign(
                &inst,
                json!({"reassignments": [{"topic": "t1", "brokers": [0, 1]}], "is_schedule": true, "execute_at": at}),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let task = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();
        assert_eq!(app.update_scheduled(&inst, &task, "?status=CANCELLED").await.status, 204);
        app.clock.advance(62_000);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(work.runs().is_empty(), "{:?}", work.runs());
        // The same schedule, not cancelled, does run: the executor was reachable all along.
        let at = app.clock.now_ms() + 60_000;
        let res = app
            .reassign(
                &inst,
                json!({"reassignments": [{"topic": "t1", "brokers": [0, 1]}], "is_schedule": true, "execute_at": at}),
            )
            .await;
        let fired = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();
        app.clock.advance(62_000);
        app.wait_task_status(&inst, &fired, "SUCCESS").await;
        assert_eq!(work.runs().len(), 3, "{:?}", work.runs());
        assert!(work.runs().iter().all(|l| l.starts_with(&fired)));
    }
}

per_engine! {
    #[tokio::test]
    async fn a_hostile_params_value_reaches_the_executor_only_as_data() {
        let work = Work::new();
        let app = serve(&work.exec_config(&["extendInstance"], "", "")).await;
        let inst = app.create_instance().await;
        // A product id is free text of up to 64 bytes (topic names follow Kafka's stricter rule).
        let hostile = "$(touch pw-d)`touch pw-t`;touch pw-s\n|touch pw-p&&'\"${HOME}";
        let res = app.resize(&inst, json!({"oper_type": "vertical", "new_product_id": hostile})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
        app.wait_task_status(&inst, &task, "SUCCESS").await;
        let params: Value =
            serde_json::from_str(&work.file(&format!("{task}.pre_check.1.params"))).expect("KT_PARAMS is JSON");
        assert_eq!(params["new_product_id"], hostile, "byte for byte, in the environment");
        let doc: Value = serde_json::from_str(&work.file(&format!("{task}.pre_check.1.stdin"))).expect("JSON on stdin");
        assert_eq!(doc["params"]["new_product_id"], hostile, "byte for byte, on stdin");
        let made: Vec<String> = std::fs::read_dir(work.path())
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("pw-"))
            .collect();
        assert!(made.is_empty(), "the value ran as code: {made:?}");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_step_interrupted_by_kill_9_runs_again_as_attempt_2_exactly_once() {
        let work = Work::new();
        let config = work.exec_config(&["restartInstance"], ", HOLD_STEP = \"rolling_restart\"", "");
        let flags = ["--time-scale", "0", "--lease-ms", "600", "--executors", &config];
        let mut app = TestApp::spawn_process(&flags).await;
        let inst = app.create_instance().await;
        let task = app.restart_instance(&inst).await;
        work.wait_run(&format!("{task} rolling_restart 1")).await;
        app.kill9();

        app.start_again(&flags);
        work.wait_run(&format!("{task} rolling_restart 2")).await;
        work.release();
        app.wait_task_status(&inst, &task, "SUCCESS").await;
        let expected: Vec<String> = ["pre_check 1", "rolling_restart 1", "rolling_restart 2", "health_check 1"]
            .iter()
            .map(|s| format!("{task} {s}"))
            .collect();
        assert_eq!(work.runs(), expected, "the interrupted step ran again once; the others once");
        let run = app.executor_run(&inst, &task).await.json();
        assert_eq!((run["step"].as_str(), run["attempt"].as_u64()), (Some("health_check"), Some(1)));
        assert_eq!(app.show_instance(&inst).await.json()["status"], "RUNNING");
    }
}

on_postgres! {
    #[tokio::test]
    async fn an_executor_whose_task_another_process_took_over_is_stopped() {
        let work = Work::new();
        let config = work.exec_config(&["restartInstance"], ", HOLD_STEP = \"rolling_restart\"", "");
        let flags = ["--time-scale", "0", "--lease-ms", "600", "--executors", &config];
        let mut a = TestApp::spawn_process(&flags).await;
        let inst = a.create_instance().await;
        let task = a.restart_instance(&inst).await;
        work.wait_run(&format!("{task} rolling_restart 1")).await;
        let first = work.file(&format!("{task}.rolling_restart.1.pid")).trim().to_owned();
        // Pause the server, not its executor: its lease runs out and another process takes over.
        signal(a.pid(), "-STOP");
        let b = a.beside(&a.db.url.clone(), &flags).await;
        work.wait_run(&format!("{task} rolling_restart 2")).await;
        signal(a.pid(), "-CONT");
        // The first server finds its lease gone and stops its attempt; the second attempt goes on.
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(&first) {
            assert!(Instant::now() < deadline, "attempt 1 ({first}) still runs beside attempt 2");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let second = work.file(&format!("{task}.rolling_restart.2.pid")).trim().to_owned();
        assert!(alive(&second), "attempt 2 goes on");
        work.release();
        b.wait_task_status(&inst, &task, "SUCCESS").await;
        a.kill9();
    }
}

/// The probe's settings for a rolling restart whose program leaves a child running and holds.
const CHILD_HELD: &str = ", HOLD_STEP = \"rolling_restart\", CHILD_STEP = \"rolling_restart\"";

/// The pid of the child that attempt 1 of `task`'s rolling restart left running, once it runs.
async fn first_attempts_child(work: &Work, task: &str) -> String {
    work.wait_run(&format!("{task} rolling_restart 1")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while work.file_opt(&format!("{task}.rolling_restart.1.child.pid")).is_none() {
        assert!(Instant::now() < deadline, "the program's child never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let child = work.file(&format!("{task}.rolling_restart.1.child.pid")).trim().to_owned();
    assert!(alive(&child), "the program's child is not running");
    child
}

per_engine! {
    /// Attack on the guarantee that a step runs in one process at a time: the program's own child
    /// (a tool it started) outlived `kill -9` of the server and ran beside the next attempt. The
    /// run's watcher kills the whole group when the server dies, before attempt 2 can start.
    #[tokio::test]
    async fn no_program_of_a_killed_server_s_attempt_runs_beside_the_next_attempt() {
        let work = Work::new();
        let config = work.exec_config(&["restartInstance"], CHILD_HELD, "");
        let flags = ["--time-scale", "0", "--lease-ms", "2000", "--executors", &config];
        let mut app = TestApp::spawn_process(&flags).await;
        let inst = app.create_instance().await;
        let task = app.restart_instance(&inst).await;
        let child = first_attempts_child(&work, &task).await;
        app.kill9();
        let killed = Instant::now();
        while alive(&child) {
            assert!(killed.elapsed() < Duration::from_secs(2), "the program's child outlived the server");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        app.start_again(&flags);
        work.wait_run(&format!("{task} rolling_restart 2")).await;
        work.release();
        app.wait_task_status(&inst, &task, "SUCCESS").await;
        let runs = work.runs();
        assert!(runs.iter().all(|l| !l.starts_with("BESIDE")), "{runs:?}");
        // Each run has its own fencing token beside its attempt number.
        let (one, two) =
            (work.file(&format!("{task}.rolling_restart.1.token")), work.file(&format!("{task}.rolling_restart.2.token")));
        assert!(one.len() == 32 && one.bytes().all(|b| b.is_ascii_hexdigit()), "{one:?}");
        assert_ne!(one, two);
    }
}

on_postgres! {
    /// The same when the server is paused past its lease (SIGSTOP): its programs are not paused
    /// with it, so the watcher, no longer hearing the server's heartbeat, kills them at half the
    /// lease, before another process may take the task over.
    #[tokio::test]
    async fn no_program_of_a_paused_server_s_attempt_runs_beside_the_next_attempt() {
        let work = Work::new();
        let config = work.exec_config(&["restartInstance"], CHILD_HELD, "");
        let flags = ["--time-scale", "0", "--lease-ms", "1000", "--executors", &config];
        let mut a = TestApp::spawn_process(&flags).await;
        let inst = a.create_instance().await;
        let task = a.restart_instance(&inst).await;
        let child = first_attempts_child(&work, &task).await;
        signal(a.pid(), "-STOP");
        let paused = Instant::now();
        while alive(&child) {
            assert!(paused.elapsed() < Duration::from_millis(900), "the paused server's program still runs");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let b = a.beside(&a.db.url.clone(), &flags).await;
        work.wait_run(&format!("{task} rolling_restart 2")).await;
        signal(a.pid(), "-CONT");
        work.release();
        b.wait_task_status(&inst, &task, "SUCCESS").await;
        let runs = work.runs();
        assert!(runs.iter().all(|l| !l.starts_with("BESIDE")), "{runs:?}");
        a.kill9();
    }
}

fn signal(pid: u32, sig: &str) {
    let sent = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().expect("kill runs");
    assert!(sent.success());
}

per_engine! {
    #[tokio::test]
    async fn sigterm_stops_the_executor_and_hands_its_step_back_for_another_attempt() {
        let work = Work::new();
        let config = work.exec_config(&["restartInstance"], ", HOLD_STEP = \"rolling_restart\"", "");
        let flags = ["--time-scale", "0", "--executors", &config];
        let mut app = TestApp::spawn_process(&flags).await;
        let inst = app.create_instance().await;
        let task = app.restart_instance(&inst).await;
        work.wait_run(&format!("{task} rolling_restart 1")).await;
        let status = app.terminate_within(Duration::from_secs(10)).expect("the server stops within its grace period");
        assert!(status.success(), "{status:?}");
        app.start_again(&flags);
        // The lease was handed back: the step runs again at once, not after a lease expires.
        work.wait_run(&format!("{task} rolling_restart 2")).await;
        work.release();
        app.wait_task_status(&inst, &task, "SUCCESS").await;
    }
}

// --- webhooks ---

/// One POST a webhook receiver got.
struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Delivery {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map_or("", |(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A tiny HTTP receiver: answers every POST 200 and hands it to the test.
async fn receiver() -> (String, tokio::sync::mpsc::Receiver<Delivery>) {
    receiver_on(None).await
}

/// [`receiver`], over HTTPS when `tls` is given.
async fn receiver_on(tls: Option<tokio_rustls::TlsAcceptor>) -> (String, tokio::sync::mpsc::Receiver<Delivery>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}/hook", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => deliver(stream, tx).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            deliver(stream, tx).await;
                        }
                    }
                }
            });
        }
    });
    (url, rx)
}

/// Reads one POST from `stream`, answers 200 and hands it on.
async fn deliver<S>(mut stream: S, tx: tokio::sync::mpsc::Sender<Delivery>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = buf[head_end..head_end + length].to_vec();
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
    let _ = tx.send(Delivery { headers, body }).await;
}

const SECRET: &str = "a-webhook-secret-for-tests-only";

/// A server whose restarts go to a webhook receiver; the receiver's deliveries.
async fn webhook_app(work: &Work, timeout_secs: u64) -> (TestApp, tokio::sync::mpsc::Receiver<Delivery>) {
    let (url, rx) = receiver().await;
    (webhook_app_to(work, timeout_secs, &url, "").await, rx)
}

/// A server whose restarts go to the receiver at `url`, with `extra` lines in its executor entry.
#[allow(unsafe_code, reason = "set_var: every test sets the same value, see the SAFETY note")]
async fn webhook_app_to(work: &Work, timeout_secs: u64, url: &str, extra: &str) -> TestApp {
    // SAFETY: under nextest each test has a process of its own; under `cargo test` tests share
    // one, but every test sets this same constant value, so a reader never sees a torn or
    // different value.
    unsafe { std::env::set_var("KT_TEST_WEBHOOK_SECRET", SECRET) };
    let config = work.write_config(&format!(
        "[operations.restartInstance]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_env = \"KT_TEST_WEBHOOK_SECRET\"\n\
         callback_base = \"http://kafka-tasks.example\"\ntimeout_secs = {timeout_secs}\n{extra}"
    ));
    serve(&config).await
}

async fn next_delivery(rx: &mut tokio::sync::mpsc::Receiver<Delivery>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("a webhook came").expect("receiver alive")
}

/// Checks a delivery's signature as a receiver must; its callback path and token.
fn verified(d: &Delivery) -> (String, String) {
    let ts: i64 = d.header("x-kt-timestamp").parse().expect("a timestamp");
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    assert_eq!(d.header("x-kt-signature"), kafka_tasks::executor::webhook::sign(SECRET.as_bytes(), ts, &d.body));
    assert_ne!(
        d.header("x-kt-signature"),
        kafka_tasks::executor::webhook::sign(b"another-secret-entirely", ts, &d.body)
    );
    let v = d.json();
    let path = v["callback"]["path"].as_str().expect("callback path").to_owned();
    assert_eq!(v["callback"]["url"], format!("http://kafka-tasks.example{path}"));
    (path, v["callback"]["token"].as_str().expect("token").to_owned())
}

per_engine! {
    #[tokio::test]
    async fn a_webhook_step_ends_when_its_receiver_calls_back_with_the_token() {
        let work = Work::new();
        let (app, mut rx) = webhook_app(&work, 60).await;
        let inst = app.create_instance().await;
        let task = app.restart_instance(&inst).await;
        for (i, step) in ["pre_check", "rolling_restart", "health_check"].iter().enumerate() {
            let d = next_delivery(&mut rx).await;
            let (path, token) = verified(&d);
            assert_eq!((d.json()["task"]["step"].as_str(), d.json()["task"]["attempt"].as_u64()), (Some(*step), Some(1)));
            assert_eq!(d.header("x-kt-task-id"), task);
            if i == 1 {
                let res =
                    app.post(&path, json!({"token": token, "result": "progress", "progress": 50, "message": "half"})).await;
                assert_eq!(res.status, 204, "{}", res.text);
                // (100 + 50) / 3
                app.wait_progress(&inst, &task, 50).await;
                // A key that may not modify the instance cannot answer, token or not.
                let reader = app.credential(&app.project, "reader", Role::Readonly).await;
                let body = json!({"token": token, "result": "success"}).to_string();
                app.request_as(&reader, Method::POST, &path, Some(body)).await.assert_error(403, "DMS.00403003");
                // Another token is refused.
                let res = app.post(&path, json!({"token": "0".repeat(64), "result": "success"})).await;
                res.assert_error(400, "DMS.00400062");
            }
            let res = app.post(&path, json!({"token": token, "result": "success"})).await;
            assert_eq!(res.status, 204, "{}", res.text);
            // The token is spent.
            app.post(&path, json!({"token": token, "result": "success"})).await.assert_error(400, "DMS.00400062");
        }
        app.wait_task_status(&inst, &task, "SUCCESS").await;
        assert_eq!(app.show_instance(&inst).await.json()["status"], "RUNNING");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_webhook_to_an_https_receiver_trusts_its_ca_file_and_no_other() {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        kafka_tasks::tls::install_provider();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
        let key = KeyPair::generate().expect("key");
        let leaf =
            CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params").signed_by(&key, &ca).expect("leaf");
        let der_key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key DER");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], der_key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let (url, mut rx) = receiver_on(Some(acceptor)).await;
        assert!(url.starts_with("https://"));

        // With the CA: delivered, signed, and the step ends as over plain HTTP.
        let work = Work::new();
        let ca_file = work.dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("CA file");
        let app = webhook_app_to(&work, 60, &url, &format!("ca_file = \"{}\"\n", ca_file.display())).await;
        let inst = app.create_instance().await;
        let task = app.restart_instance(&inst).await;
        let (path, token) = verified(&next_delivery(&mut rx).await);
        let res = app.post(&path, json!({"token": token, "result": "failure", "reason": "stop here"})).await;
        assert_eq!(res.status, 204, "{}", res.text);
        app.wait_task_status(&inst, &task, "FAILED").await;

        // Without it the receiver's certificate is not trusted: nothing is delivered, and the task
        // fails saying so.
        let work = Work::new();
        let app = webhook_app_to(&work, 60, &url, "").await;
        let inst = app.create_instance().await;
        let task = app.restart_instance(&inst).await;
        app.wait_task_status(&inst, &task, "FAILED").await;
        let run = app.executor_run(&inst, &task).await.json();
        assert!(run["reason"].as_str().is_some_and(|r| r.contains("certificate is not trusted")), "{run}");
        assert!(rx.try_recv().is_err(), "a delivery over an untrusted connection");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_webhook_receiver_s_failure_fails_the_task_with_its_reason() {
        let work = Work::new();
        let (app, mut rx) = webhook_app(&work, 60).await;
        let inst = app.create_instance().await;
        let task = app.restart_instance(&inst).await;
        let (path, token) = verified(&next_delivery(&mut rx).await);
        let res =
            app.post(&path, json!({"token": token, "result": "failure", "reason": "broker 2 is not reachable"})).await;
        assert_eq!(res.status, 204, "{}", res.text);
        app.wait_task_status(&inst, &task, "FAILED").await;
        let run = app.executor_run(&inst, &task).await.json();
        assert!(run["reason"].as_str().is_some_and(|r| r.contains("broker 2 is not reachable")), "{run}");
        assert!(run["failure"]["reason"].as_str().is_some_and(|r| r.contains("broker 2 is not reachable")), "{run}");
        assert_eq!(app.show_instance(&inst).await.json()["status"], "RUNNING");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_webhook_step_nobody_answers_fails_at_its_deadline() {
        let work = Work::new();
        let (app, mut rx) = webhook_app(&work, 1).await;
        let inst = app.create_instance().await;
        let task = app.restart_instance(&inst).await;
        let (path, token) = verified(&next_delivery(&mut rx).await);
        app.wait_task_status(&inst, &task, "FAILED").await;
        let run = app.executor_run(&inst, &task).await.json();
        assert!(run["reason"].as_str().is_some_and(|r| r.contains("timed out")), "{run}");
        // A late answer changes nothing.
        app.post(&path, json!({"token": token, "result": "success"})).await.assert_error(400, "DMS.00400062");
        assert_eq!(app.show_task(&inst, &task).await.json()["tasks"][0]["status"], "FAILED");
    }
}

on_postgres! {
    #[tokio::test]
    async fn two_processes_on_postgresql_never_run_the_same_step_at_once() {
        let work = Work::new();
        let config = work.exec_config(&["restartInstance"], ", LOCK_STEPS = \"1\"", "");
        let flags = ["--time-scale", "0", "--executors", config.as_str()];
        let (a, url) = TestApp::spawn_on_postgres(&flags).await;
        let b = a.beside(&url, &flags).await;
        let mut jobs = Vec::new();
        for _ in 0..6 {
            let inst = a.create_instance().await;
            jobs.push((inst.clone(), a.restart_instance(&inst).await));
        }
        for (inst, task) in &jobs {
            b.wait_task_status(inst, task, "SUCCESS").await;
        }
        let runs = work.runs();
        assert!(!runs.iter().any(|l| l.starts_with("OVERLAP")), "{runs:?}");
        assert_eq!(runs.len(), 6 * 3, "every step ran exactly once: {runs:?}");
        assert!(runs.iter().all(|l| l.ends_with(" 1")), "{runs:?}");
    }
}

// --- the examples ---

/// A stand-in for Kafka's kafka-configs.sh: records its arguments, keeps the configs it was
/// given, and describes them as the real tool does (`name=value sensitive=false synonyms={…}`).
fn stub_kafka_bin(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("kafka-bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let script = bin.join("kafka-configs.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nstate=\"$(dirname \"$0\")/state\"\ntouch \"$state\"\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done >> \"$(dirname \"$0\")/calls\"\n\
         echo >> \"$(dirname \"$0\")/calls\"\n\
         case \" $* \" in *' --describe '*) echo 'Default configs for brokers in the cluster are:'; \
         sed 's/.*/  & sensitive=false synonyms={}/' \"$state\";; \
         *' --alter '*) while [ $# -gt 0 ]; do [ \"$1\" = --add-config ] && echo \"$2\" >> \"$state\"; shift; done;; esac\n",
    )
    .expect("stub written");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("executable");
    bin
}

per_engine! {
    #[tokio::test]
    async fn the_config_example_sets_the_change_with_kafka_configs_and_a_second_attempt_changes_nothing() {
        let work = Work::new();
        let bin = stub_kafka_bin(work.path());
        let example = format!("{}/examples/executors/kafka-config-modify.sh", env!("CARGO_MANIFEST_DIR"));
        let config = work.write_config(&format!(
            "[operations.kafkaConfigModify]\nkind = \"exec\"\nprogram = \"{example}\"\n\
             env = {{ KAFKA_BIN = \"{}\", BOOTSTRAP = \"127.0.0.1:9\" }}\n",
            bin.display()
        ));
        let app = serve(&config).await;
        let inst = app.create_instance().await;
        let res = app.modify_configs(&inst, json!([{"name": "log.retention.hours", "value": "24"}])).await;
        let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
        app.wait_task_status(&inst, &task, "SUCCESS").await;
        let calls = std::fs::read_to_string(bin.join("calls")).expect("the tool was called");
        let alters: Vec<&str> = calls.lines().filter(|l| l.contains("[--alter]")).collect();
        assert_eq!(
            alters,
            [
                "[--bootstrap-server][127.0.0.1:9][--alter][--entity-type][brokers][--entity-default][--add-config][log.retention.hours=24]"
            ],
            "{calls}"
        );
        let run = app.executor_run(&inst, &task).await.json();
        assert!(run["output_tail"].as_str().is_some_and(|t| t.contains("log.retention.hours set to 24")), "{run}");

        // The step run again (as after a crash) finds the value set and alters nothing.
        let again = std::process::Command::new(&example)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KAFKA_BIN", &bin)
            .env("BOOTSTRAP", "127.0.0.1:9")
            .env("KT_STEP", "apply_config")
            .env("KT_ATTEMPT", "2")
            .env("KT_PARAMS", r#"{"kafka_configs":[{"name":"log.retention.hours","old_value":"72","new_value":"24"}]}"#)
            .output()
            .expect("the example runs");
        assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
        assert!(String::from_utf8_lossy(&again.stdout).contains("already"));
        let calls = std::fs::read_to_string(bin.join("calls")).expect("calls");
        assert_eq!(calls.lines().filter(|l| l.contains("[--alter]")).count(), 1, "{calls}");
    }
}

/// A stub `kafka-reassign-partitions.sh` in a fresh `bin` directory under `dir`: it appends its
/// arguments to `bin/calls` (`[arg]…` a line) and each `--generate`'s topics file to
/// `bin/topics` (one JSON line each), proposes partition 0 of each topic on the brokers
/// listed, and once `--execute` ran, `--verify` says every partition of the plan is complete.
fn stub_reassign_bin(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("kafka-bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let script = bin.join("kafka-reassign-partitions.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
dir="$(dirname "$0")"
for a in "$@"; do printf '[%s]' "$a"; done >> "$dir/calls"
echo >> "$dir/calls"
while [ $# -gt 0 ]; do
    case "$1" in
        --generate|--execute|--verify) mode="$1" ;;
        --topics-to-move-json-file) topics="$2" ;;
        --broker-list) brokers="$2" ;;
        --reassignment-json-file) plan="$2" ;;
    esac
    shift
done
case "$mode" in
    --generate)
        jq -c . "$topics" >> "$dir/topics"
        echo 'Current partition replica assignment'
        echo '{"version":1,"partitions":[]}'
        echo 'Proposed partition reassignment configuration'
        jq -c --arg b "$brokers" '{version: 1, partitions: [.topics[]
            | {topic, partition: 0, replicas: ($b | split(",") | map(tonumber))}]}' "$topics" ;;
    --execute) touch "$dir/executed" ;;
    --verify)
        if [ -e "$dir/executed" ]; then
            jq -r '.partitions[] | "Reassignment of partition \(.topic)-\(.partition) is complete."' "$plan"
        fi ;;
esac
"#,
    )
    .expect("stub written");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("executable");
    bin
}

/// The reassignment example hands each topic to the tool whole: a topic holding a tab and a
/// newline (which the API refuses, but an executor must not trust that) stays one topic on
/// the brokers asked for, never extra (topic, brokers) pairs.
#[test]
fn the_reassign_example_passes_each_topic_to_the_tool_whole() {
    let work = Work::new();
    let bin = stub_reassign_bin(work.path());
    let state = work.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let example = format!("{}/examples/executors/kafka-partition-reassign.sh", env!("CARGO_MANIFEST_DIR"));
    let hostile = "orders\t9\nvictim";
    let params = json!({"reassignments": [
        {"topic": hostile, "brokers": [0, 1]},
        {"topic": "given", "assignment": [{"partition": 0, "partition_brokers": [2, 1]}]},
    ]});
    let out = std::process::Command::new(&example)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KAFKA_BIN", &bin)
        .env("BOOTSTRAP", "127.0.0.1:9")
        .env("STATE_DIR", &state)
        .env("KT_TASK_ID", "8abfa7b372160bfd0172165864064079")
        .env("KT_ATTEMPT", "1")
        .env("KT_PARAMS", params.to_string())
        .output()
        .expect("the example runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let calls = std::fs::read_to_string(bin.join("calls")).expect("the tool was called");
    let generated: Vec<&str> = calls.lines().filter(|l| l.contains("[--generate]")).collect();
    assert_eq!(generated.len(), 1, "one topic, one proposal: {calls}");
    assert!(generated[0].contains("[--broker-list][0,1]"), "{calls}");
    let topics = std::fs::read_to_string(bin.join("topics")).expect("topics files");
    let topics: Vec<Value> = topics.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert_eq!(topics, [json!({"version": 1, "topics": [{"topic": hostile}]})]);
    let plan: Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("8abfa7b372160bfd0172165864064079.json")).expect("plan"),
    )
    .expect("the plan is JSON");
    assert_eq!(
        plan["partitions"],
        json!([
            {"topic": "given", "partition": 0, "replicas": [2, 1]},
            {"topic": hostile, "partition": 0, "replicas": [0, 1]},
        ])
    );
}
