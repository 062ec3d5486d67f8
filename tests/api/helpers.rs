//! `TestApp`: a real server on port 0 with its own fresh database, and one helper per endpoint.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::kit::engine::Engine;
use crate::kit::serve::ServerProcess;
use crate::kit::sign;
use clap::Parser;
use kafka_tasks::auth::{Clock, IssuedCredential};
use kafka_tasks::cli::{Cli, Command};
use kafka_tasks::domain::Role;
use kafka_tasks::server::{self, Running};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const PROJECT: &str = "0123456789abcdef0123456789abcdef";

pub struct Response {
    pub status: StatusCode,
    pub request_id: Option<String>,
    pub text: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// Asserts a DMS error: status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.json()["error_code"], code, "body: {}", self.text);
        assert!(self.json()["error_msg"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

/// A fresh database for one test on the engine it runs on ([`crate::kit::engine::current`]):
/// SQLite in a temporary folder, or a database of its own on the PostgreSQL server
/// `KAFKA_TASKS_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`), dropped afterwards.
/// The folder also holds the master key.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    _pg: Option<crate::pg::FreshDatabase>,
}

impl TestDb {
    pub async fn fresh() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match crate::kit::engine::current() {
            // The engine's runner has checked that PostgreSQL answers (or skipped the test).
            Engine::Postgres => {
                let pg = crate::pg::FreshDatabase::create("kt_test").await;
                eprintln!("test database: {}", pg.url);
                TestDb { url: pg.url.clone(), dir, _pg: Some(pg) }
            }
            Engine::Sqlite => {
                let url = format!("sqlite:{}", dir.path().join("test.db").display());
                TestDb { url, dir, _pg: None }
            }
        }
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("master.key")
    }

    pub async fn storage(&self) -> kafka_tasks::storage::Storage {
        kafka_tasks::storage::Storage::open(&self.url).await.expect("database opens")
    }
}

pub struct TestApp {
    pub base: String,
    pub db: TestDb,
    pub project: String,
    /// The admin key the server created on its fresh database; every helper signs with it.
    pub admin: IssuedCredential,
    /// The server's clock (in-process servers only).
    pub clock: Clock,
    client: reqwest::Client,
    running: Option<Running>,
    child: Option<ServerProcess>,
}

/// Tests scrape `/metrics` on the API's address (and run many servers at once, which could not
/// share the default metrics port), unless a test chooses `--metrics-listen` itself.
pub fn metrics_on_api_unless_set(flags: &[&str]) -> &'static [&'static str] {
    if flags.contains(&"--metrics-listen") { &[] } else { &["--metrics-listen", "api"] }
}

pub fn serve_args(extra: &[&str]) -> kafka_tasks::config::ServeArgs {
    let mut argv = vec!["kafka-tasks", "serve", "--listen", "127.0.0.1:0", "--log-format", "text"];
    argv.extend_from_slice(metrics_on_api_unless_set(extra));
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv) {
        Ok(Cli { command: Command::Serve(args) }) => *args,
        other => panic!("bad test arguments: {other:?}"),
    }
}

impl TestApp {
    /// A server whose steps complete at once.
    pub async fn spawn() -> Self {
        Self::spawn_with(&["--time-scale", "0"]).await
    }

    pub async fn spawn_with(flags: &[&str]) -> Self {
        Self::start(TestDb::fresh().await, flags).await
    }

    async fn start(db: TestDb, flags: &[&str]) -> Self {
        let key_file = db.key_file();
        let key_file = key_file.to_str().expect("utf-8 path");
        let mut all = vec!["--database", &db.url, "--poll-ms", "20", "--master-key-file", key_file];
        all.extend_from_slice(flags);
        let clock = Clock::default();
        let running = server::start_with_clock(&serve_args(&all), clock.clone()).await.expect("server starts");
        TestApp {
            base: format!("http://{}", running.addr),
            admin: initial_credential(db.dir.path()),
            clock,
            db,
            project: PROJECT.to_owned(),
            client: kafka_tasks::tls::http_client(),
            running: Some(running),
            child: None,
        }
    }

    /// The real binary in its own process, so that it can be killed with SIGKILL.
    pub async fn spawn_process(flags: &[&str]) -> Self {
        Self::spawn_process_logged(flags, None).await
    }

    /// As [`spawn_process`](Self::spawn_process), appending its log lines (JSON) to `log`.
    pub async fn spawn_process_logged(flags: &[&str], log: Option<&std::path::Path>) -> Self {
        let db = TestDb::fresh().await;
        let child = start_process_logged(&db, flags, log);
        TestApp {
            base: child.base.clone(),
            admin: initial_credential(db.dir.path()),
            clock: Clock::default(),
            db,
            project: PROJECT.to_owned(),
            client: kafka_tasks::tls::http_client(),
            running: None,
            child: Some(child),
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill9();
        }
    }

    /// Starts the binary again on the same database (after `kill9` or `terminate`).
    pub fn start_again(&mut self, flags: &[&str]) {
        self.start_again_logged(flags, None);
    }

    /// As [`start_again`](Self::start_again), appending its log lines to `log`.
    pub fn start_again_logged(&mut self, flags: &[&str], log: Option<&std::path::Path>) {
        let child = start_process_logged(&self.db, flags, log);
        self.base = child.base.clone();
        self.child = Some(child);
    }

    /// SIGTERM, then waits (up to five minutes) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("a process");
        c.terminate(Duration::from_secs(300)).expect("the server exits after SIGTERM")
    }

    /// Stops the server gracefully and starts a new one on the same database.
    pub async fn restart(mut self, flags: &[&str]) -> Self {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean stop");
        }
        let db = std::mem::replace(
            &mut self.db,
            TestDb { url: String::new(), dir: tempfile::tempdir().expect("dir"), _pg: None },
        );
        Self::start(db, flags).await
    }

    /// Another access key, made with the CLI's code path on the same database.
    pub async fn credential(&self, project: &str, user: &str, role: Role) -> IssuedCredential {
        let storage = self.db.storage().await;
        let master = kafka_tasks::auth::keys::MasterKey::load_or_create(&self.db.key_file()).expect("master key");
        let project = project.parse().expect("project id");
        kafka_tasks::auth::create_credential(
            storage.credentials.as_ref(),
            &master,
            &project,
            user,
            role,
            self.clock.now_ms(),
            false,
        )
        .await
        .expect("stored")
        .expect("created")
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<String>) -> Response {
        self.request_as(&self.admin, method, path, body).await
    }

    /// A request signed with `cred` the way the Python SDK signs (every header it sends).
    pub async fn request_as(
        &self,
        cred: &IssuedCredential,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Response {
        let headers = self.signed_headers(cred, &method, path, body.as_deref().unwrap_or(""), self.clock.now_ms());
        self.send(method, path, body, &headers).await
    }

    /// The headers of a signed request, for tests that tamper with them.
    pub fn signed_headers(
        &self,
        cred: &IssuedCredential,
        method: &Method,
        path_and_query: &str,
        body: &str,
        at_ms: i64,
    ) -> Vec<(String, String)> {
        let host = self.base.trim_start_matches("http://");
        let base = [("content-type", "application/json"), ("host", host), ("x-project-id", cred.project_id.as_str())];
        sign::signed_headers(cred, method.as_str(), path_and_query, &base, sign::Payload::Body(body.as_bytes()), at_ms)
    }

    /// Sends a request with exactly these headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        headers: &[(String, String)],
    ) -> Response {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let request_id = res.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = res.text().await.expect("body read");
        Response { status, request_id, text }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(body.to_string())).await
    }

    pub async fn put(&self, path: &str, body: Option<Value>) -> Response {
        self.request(Method::PUT, path, body.map(|b| b.to_string())).await
    }

    pub fn instance_path(&self, instance: &str) -> String {
        format!("/v2/{}/instances/{instance}", self.project)
    }

    // --- the task endpoints ---

    pub async fn list_tasks(&self, instance: &str, query: &str) -> Response {
        self.get(&format!("{}/tasks{query}", self.instance_path(instance))).await
    }

    pub async fn show_task(&self, instance: &str, task: &str) -> Response {
        self.get(&format!("{}/tasks/{task}", self.instance_path(instance))).await
    }

    pub async fn delete_task(&self, instance: &str, task: &str) -> Response {
        self.delete(&format!("{}/tasks/{task}", self.instance_path(instance))).await
    }

    pub async fn progress(&self, instance: &str, task: &str) -> Response {
        self.get(&format!("{}/tasks/{task}/progress", self.instance_path(instance))).await
    }

    pub async fn list_scheduled(&self, instance: &str, query: &str) -> Response {
        self.get(&format!("{}/scheduled-tasks{query}", self.instance_path(instance))).await
    }

    pub async fn update_scheduled(&self, instance: &str, task: &str, query: &str) -> Response {
        self.put(&format!("{}/scheduled-tasks/{task}{query}", self.instance_path(instance)), None).await
    }

    pub async fn delete_scheduled(&self, instance: &str, task: &str) -> Response {
        self.delete(&format!("{}/scheduled-tasks/{task}", self.instance_path(instance))).await
    }

    // --- instances and operations ---

    pub async fn create_instance_with(&self, body: Value) -> Response {
        self.post(&format!("/v2/kafka/{}/instances", self.project), body).await
    }

    /// Creates an instance and waits until it is RUNNING.
    pub async fn create_instance(&self) -> String {
        let res = self
            .create_instance_with(json!({
                "name": "kafka-test", "engine_version": "2.7", "broker_num": 3,
                "storage_space": 300, "product_id": "c6.2u4g.cluster", "vpc_id": "vpc-1"
            }))
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let id = res.json()["instance_id"].as_str().expect("instance_id").to_owned();
        self.wait_instance_status(&id, "RUNNING").await;
        id
    }

    pub async fn show_instance(&self, instance: &str) -> Response {
        self.get(&self.instance_path(instance)).await
    }

    pub async fn wait_instance_status(&self, instance: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let inst = self.show_instance(instance).await.json();
            if inst["status"] == status && inst["task"].is_null() {
                return inst;
            }
            assert!(Instant::now() < deadline, "instance never reached {status}: {inst}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn modify_configs(&self, instance: &str, configs: Value) -> Response {
        self.put(&format!("{}/configs", self.instance_path(instance)), Some(json!({ "kafka_configs": configs }))).await
    }

    pub async fn auto_topic(&self, instance: &str, enable: bool) -> Response {
        self.post(&format!("{}/autotopic", self.instance_path(instance)), json!({ "enable_auto_topic": enable })).await
    }

    pub async fn resize(&self, instance: &str, body: Value) -> Response {
        self.post(&format!("/v2/{}/kafka/instances/{instance}/extend", self.project), body).await
    }

    pub async fn reassign(&self, instance: &str, body: Value) -> Response {
        self.post(&format!("/v2/{}/kafka/instances/{instance}/reassign", self.project), body).await
    }

    pub async fn upgrade(&self, instance: &str, body: Value) -> Response {
        self.post(&format!("/v2/{}/kafka/instances/{instance}/upgrade", self.project), body).await
    }

    /// Runs one auto-topic toggle to completion and returns its task id.
    pub async fn finished_task(&self, instance: &str, enable: bool) -> String {
        let res = self.auto_topic(instance, enable).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let id = res.json()["job_id"].as_str().expect("job_id").to_owned();
        self.wait_task_status(instance, &id, "SUCCESS").await;
        id
    }

    pub async fn wait_task_status(&self, instance: &str, task: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let res = self.show_task(instance, task).await;
            if res.status == 200 {
                let t = res.json()["tasks"][0].clone();
                if t["status"] == status {
                    self.wait_instance_idle(instance).await;
                    return t;
                }
            }
            assert!(Instant::now() < deadline, "task {task} never reached {status}: {}", res.text);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_instance_idle(&self, instance: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let inst = self.show_instance(instance).await.json();
            if inst["task"].is_null() || inst["error_code"].is_string() {
                return;
            }
            assert!(Instant::now() < deadline, "instance stayed busy: {inst}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Restarts the instance through the batch action and returns the restart task's id.
    pub async fn restart_instance(&self, instance: &str) -> String {
        let body = json!({"action": "restart", "instances": [instance]});
        let res = self.post(&format!("/v2/{}/instances/action", self.project), body).await;
        assert_eq!(res.status, 200, "{}", res.text);
        self.list_tasks(instance, "").await.json()["tasks"][0]["id"].as_str().expect("restart task").to_owned()
    }

    /// Waits until step `step` of the task runs; returns the progress seen then.
    pub async fn wait_step_running(&self, instance: &str, task: &str, step: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let p = self.progress(instance, task).await.json();
            if p["step_list"][step]["statue"] == "IN_PROGRESS" {
                return p;
            }
            assert!(Instant::now() < deadline, "step {step} never ran: {p}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn task_count(&self, instance: &str) -> usize {
        let res = self.list_tasks(instance, "").await;
        res.json()["task_count"].as_str().and_then(|s| s.parse().ok()).expect("task_count is a numeric string")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn initial_credential(dir: &std::path::Path) -> IssuedCredential {
    let text =
        std::fs::read_to_string(dir.join("initial-credential.json")).expect("the server wrote its first credential");
    serde_json::from_str(&text).expect("credential JSON")
}

/// Starts `kafka-tasks serve` on port 0 (the kit's [`ServerProcess`]) on `db`.
pub fn start_process(db: &TestDb, flags: &[&str]) -> ServerProcess {
    start_process_logged(db, flags, None)
}

/// As [`start_process`], appending its log lines (JSON) to `log` when given, else to a file of
/// its own in the database's folder.
pub fn start_process_logged(db: &TestDb, flags: &[&str], log: Option<&std::path::Path>) -> ServerProcess {
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let key_file = db.key_file();
    let key_file = key_file.to_str().expect("utf-8 path");
    let mut args = vec!["--poll-ms", "20", "--database", &db.url, "--master-key-file", key_file];
    args.extend_from_slice(flags);
    let own = || {
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        db.dir.path().join(format!("server-{n}.log"))
    };
    let log = log.map_or_else(own, std::path::Path::to_owned);
    ServerProcess::start(&args, &[], &log)
}

// --- raw requests, for the attack tests ---

/// The hex SHA-256 of a body, as a signed request declares it.
pub fn sha256(s: &str) -> String {
    kafka_tasks::auth::signature::Algorithm::Sha256.hash_hex(s.as_bytes())
}

impl TestApp {
    /// The headers of a request signed over `payload` (a body hash, or `UNSIGNED-PAYLOAD`) with
    /// `extra` headers signed too: what an SDK that sends `X-Sdk-Content-Sha256` produces.
    pub fn signed_headers_over(
        &self,
        cred: &IssuedCredential,
        method: &Method,
        path_and_query: &str,
        extra: &[(&str, &str)],
        payload: &str,
        at_ms: i64,
    ) -> Vec<(String, String)> {
        let host = self.base.trim_start_matches("http://");
        let mut base =
            vec![("content-type", "application/json"), ("host", host), ("x-project-id", cred.project_id.as_str())];
        base.extend_from_slice(extra);
        sign::signed_headers(cred, method.as_str(), path_and_query, &base, sign::Payload::Hash(payload), at_ms)
    }

    /// Sends a request with exactly these headers from the local address `from` (any of
    /// 127.0.0.0/8 on Linux), returning the raw response so its headers can be read.
    pub async fn send_from(
        &self,
        from: std::net::IpAddr,
        method: Method,
        path: &str,
        body: Option<String>,
        headers: &[(String, String)],
    ) -> reqwest::Response {
        let client = kafka_tasks::tls::client_builder(None)
            .expect("client builder")
            .local_address(from)
            .build()
            .expect("client");
        let mut req = client.request(method, format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        req.send().await.expect("request sent")
    }
}

// --- raw connections and processes, for the connection-hygiene tests ---

/// What came back on a raw connection: the bytes, and whether (and when) the server closed it.
pub struct RawReply {
    pub bytes: Vec<u8>,
    /// Time from the end of the send until the server closed the connection, if it did
    /// within the wait.
    pub closed_after: Option<Duration>,
}

impl RawReply {
    /// The first response's status, headers (lower-case names) and body.
    pub fn response(&self) -> (u16, Vec<(String, String)>, String) {
        let text = String::from_utf8_lossy(&self.bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response head: {text:?}"));
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.get(9..12)).and_then(|s| s.parse().ok()).expect("a status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok());
        let body = match len {
            Some(n) if n <= body.len() => body[..n].to_owned(),
            _ => body.to_owned(),
        };
        (status, headers, body)
    }

    /// Asserts one DMS/APIGW-shaped JSON error with an `X-Request-Id`.
    #[track_caller]
    pub fn assert_dms_error(&self, status: u16, code: &str) {
        let (got, headers, body) = self.response();
        assert_eq!(got, status, "{body}");
        let id = headers.iter().find(|(k, _)| k == "x-request-id").map(|(_, v)| v.clone());
        assert!(id.is_some_and(|id| id.len() == 32), "no X-Request-Id: {headers:?}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
        assert_eq!(v["error_code"], code, "{body}");
        assert!(v["error_msg"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
}

/// Opens a connection to `base` (`http://host:port`), sends `bytes`, and reads until the server
/// closes or `wait` passes.
pub async fn raw_exchange(base: &str, bytes: &[u8], wait: Duration) -> RawReply {
    let stream = raw_connect(base).await;
    raw_send_and_read(stream, bytes, wait).await
}

pub async fn raw_connect(base: &str) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.expect("connects")
}

pub async fn raw_send_and_read(mut stream: tokio::net::TcpStream, bytes: &[u8], wait: Duration) -> RawReply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A server may answer (and close) before it has read everything.
    let _ = stream.write_all(bytes).await;
    let sent = Instant::now();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return RawReply { bytes: out, closed_after: Some(sent.elapsed()) },
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return RawReply { bytes: out, closed_after: None },
        }
    }
}

impl TestApp {
    /// A server in this process on a fresh PostgreSQL database of its own, whatever the
    /// engine of the test (which runs [`on_postgres!`](crate::on_postgres), so that it skips
    /// when PostgreSQL does not answer outside CI).
    pub async fn spawn_on_postgres(flags: &[&str]) -> (Self, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let pg = crate::pg::FreshDatabase::create("kt_test").await;
        let url = pg.url.clone();
        (Self::start(TestDb { url: url.clone(), dir, _pg: Some(pg) }, flags).await, url)
    }

    /// A second server in this process on the database `url` (this one's), with the same keys.
    pub async fn beside(&self, url: &str, flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for f in ["master.key", "initial-credential.json"] {
            std::fs::copy(self.db.dir.path().join(f), dir.path().join(f)).expect("keys copied");
        }
        Self::start(TestDb { url: url.to_owned(), dir, _pg: None }, flags).await
    }

    /// The server process's id (process servers only).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(ServerProcess::pid).expect("a process")
    }

    /// SIGTERM, then waits at most `limit` for the process to exit; `None` if it did not
    /// (it is then killed).
    pub fn terminate_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take().expect("a process");
        c.terminate(limit).ok()
    }
}

/// A line of `/proc/PID/status` in kB (`VmRSS`, `VmHWM`).
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Reads one whole response (head and Content-Length body), or what came before `wait` passed
/// or the server closed.
pub async fn raw_read_response(mut stream: tokio::net::TcpStream, wait: Duration) -> RawReply {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return RawReply { bytes: out, closed_after: None };
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return RawReply { bytes: out, closed_after: Some(started.elapsed()) },
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return RawReply { bytes: out, closed_after: None },
        }
    }
}

impl TestApp {
    /// The text of `/metrics` on the API address, where the tests' servers serve it.
    pub async fn scrape_metrics(&self) -> String {
        let res = kafka_tasks::tls::http_client().get(format!("{}/metrics", self.base)).send().await.expect("scrape");
        res.text().await.expect("metrics text")
    }

    /// Where `--metrics-listen` serves `/metrics` (in-process servers only).
    pub fn metrics_base(&self) -> Option<String> {
        self.running.as_ref().and_then(|r| r.metrics_addr).map(|a| format!("http://{a}"))
    }
}

// --- kernel versions, the second paths, UpdateInstance ---

/// The build every 2.7 instance is created on while the operator has added none.
pub const LATEST_BUILT_IN_27: &str = "2.7.1-h0.cbu.dms.101.r0";

impl TestApp {
    /// ShowUpgradeInstanceVersion: `GET /v2/{project_id}/kafka/instances/{instance_id}/upgrade`.
    pub async fn show_upgrade(&self, instance: &str) -> Response {
        self.get(&format!("/v2/{}/kafka/instances/{instance}/upgrade", self.project)).await
    }

    /// Adds a kernel build the way `kafka-tasks kernels add` does, on the server's database.
    pub async fn add_kernel_build(&self, engine_version: &str, build: &str) -> anyhow::Result<()> {
        kafka_tasks::cli::add_kernel_build(&self.db.storage().await, engine_version, build).await
    }

    /// Adds a 2.7 build newer than every one so far and returns its name: instances created
    /// before it can then be upgraded.
    pub async fn newer_kernel(&self) -> String {
        let added = self.db.storage().await.kernels.added_kernel_builds("2.7").await.expect("builds read");
        let build = format!("2.7.1-h0.cbu.dms.{}.r0", 102 + added.len());
        self.add_kernel_build("2.7", &build).await.expect("build added");
        build
    }

    /// CreatePostPaidKafkaInstance: `POST /v2/{project_id}/kafka/instances`.
    pub async fn create_post_paid(&self, body: Value) -> Response {
        self.post(&format!("/v2/{}/kafka/instances", self.project), body).await
    }

    /// CreateReassignmentTask on its documented path: `POST /v2/kafka/{project_id}/instances/{instance_id}/reassign`.
    pub async fn reassign_documented(&self, instance: &str, body: Value) -> Response {
        self.post(&format!("/v2/kafka/{}/instances/{instance}/reassign", self.project), body).await
    }

    /// UpdateInstance: `PUT /v2/{project_id}/instances/{instance_id}`.
    pub async fn update_instance(&self, instance: &str, body: Value) -> Response {
        self.put(&self.instance_path(instance), Some(body)).await
    }
}
