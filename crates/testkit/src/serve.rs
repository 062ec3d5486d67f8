//! The built `kafka-tasks` binary as a child process (started, killed with SIGKILL, stopped with
//! SIGTERM), access keys made with its CLI, and an HTTP client that signs every request with
//! the project's own signer ([`super::sign`]), as the SDKs do.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kafka_tasks_wire::credential::IssuedCredential;
use serde_json::Value;

/// The `kafka-tasks` binary cargo built beside the running test (`target/<profile>/`: a test
/// binary runs from its `deps/` folder), as a string for `Command::new` and for printing.
pub fn bin() -> &'static str {
    static BIN_PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN_PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut dir = exe.parent().expect("the test binary's folder").to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        let bin = dir.join(format!("kafka-tasks{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "{} is not built (cargo test builds it for the integration tests)", bin.display());
        bin.to_string_lossy().into_owned()
    })
}
pub const PROJECT: &str = "0123456789abcdef0123456789abcdef";

/// A `kafka-tasks serve` process; its stderr (JSON log lines, and any panic message) goes to `log`.
pub struct ServerProcess {
    child: Option<Child>,
    pub base: String,
    pub addr: String,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `serve --listen 127.0.0.1:0 --log-format json` plus `args` and waits (generously)
    /// for the address it logs. Its log lines are appended to `log`, so one log can follow a
    /// server across restarts; the address is the one logged after them.
    pub fn start(args: &[&str], envs: &[(&str, &str)], log: &Path) -> Self {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        let before = file.metadata().map_or(0, |m| m.len() as usize);
        let mut child = Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            // Scraped on the API's address, and many servers run at once (see `--metrics-listen`).
            .args(if args.contains(&"--metrics-listen") { &[][..] } else { &["--metrics-listen", "api"][..] })
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("serve starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read(log).unwrap_or_default();
            let text = String::from_utf8_lossy(text.get(before..).unwrap_or_default());
            if let Some(addr) = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["message"] == "listening")
                .and_then(|v| v["addr"].as_str().map(str::to_owned))
            {
                return ServerProcess { child: Some(child), base: format!("http://{addr}"), addr, log: log.to_owned() };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("serve exited with {status} before listening: {text}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve did not start within 60 s: {text}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's process id (for signals), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Started and not yet killed or stopped by this handle.
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `grace` for the exit; past it, SIGKILL and `Err`.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus, String> {
        let Some(mut c) = self.child.take() else { return Err("not running".into()) };
        let sent = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        if !sent.is_ok_and(|s| s.success()) {
            let _ = c.kill();
            let _ = c.wait();
            return Err("could not send SIGTERM".into());
        }
        let deadline = Instant::now() + grace;
        loop {
            match c.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    return Err(format!("still running {grace:?} after SIGTERM"));
                }
            }
        }
    }

    /// Its resident memory now and at its peak, in KiB (`VmRSS`, `VmHWM`), on Linux.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// The lines of its stderr that report a panic.
    pub fn panics(&self) -> Vec<String> {
        log_panics(&self.log)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn log_panics(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("panicked"))
        .map(|l| l.chars().take(500).collect())
        .collect()
}

/// An access key made with `kafka-tasks credentials create`, sealed under `master_key` (given
/// through `KAFKA_TASKS_MASTER_KEY`).
pub fn cli_credential(database: &str, master_key: &str, user: &str, role: &str) -> IssuedCredential {
    let out = Command::new(bin())
        .args(["credentials", "create", "--project-id", PROJECT, "--user-name", user, "--role", role])
        .args(["--database", database])
        .env("KAFKA_TASKS_MASTER_KEY", master_key)
        .output()
        .expect("the CLI runs");
    assert!(out.status.success(), "credentials create failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("credential JSON")
}

/// One answer, whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub request_id: Option<String>,
    pub retry_after: Option<u64>,
    pub text: String,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// A client that signs every request with `SDK-HMAC-SHA256`, as the Python SDK does.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub cred: IssuedCredential,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, cred: IssuedCredential) -> Self {
        let http = kafka_tasks_platform::tls::client_builder(None)
            .expect("client builder")
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(16)
            .build()
            .expect("client");
        Api { base: base.to_owned(), cred, http }
    }

    /// The headers of a request signed now.
    pub fn signed_headers(&self, method: &str, path_and_query: &str, body: &[u8]) -> Vec<(String, String)> {
        let host = self.base.trim_start_matches("http://");
        let headers = [("content-type", "application/json"), ("host", host)];
        let now = chrono::Utc::now().timestamp_millis();
        super::sign::signed_headers(&self.cred, method, path_and_query, &headers, super::sign::Payload::Body(body), now)
    }

    /// One signed request; `Err` when no answer came (connection refused or reset, timeout).
    pub async fn send(&self, method: &str, path_and_query: &str, body: Option<&str>) -> Result<Reply, String> {
        let body = body.unwrap_or("").to_owned();
        let headers = self.signed_headers(method, path_and_query, body.as_bytes());
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = self.http.request(method, format!("{}{path_and_query}", self.base));
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let res = req.body(body).send().await.map_err(|e| e.to_string())?;
        Ok(reply_of(res).await)
    }

    /// As [`Api::send`], but waits out refusals that say "later" (429) and connection errors,
    /// for reads and checks after the load (a wait, never an assertion: up to two minutes).
    pub async fn send_patiently(&self, method: &str, path_and_query: &str, body: Option<&str>) -> Reply {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match self.send(method, path_and_query, body).await {
                Ok(r) if r.status != 429 && r.status != 503 => return r,
                Ok(r) => {
                    let wait = r.retry_after.unwrap_or(1).clamp(1, 5);
                    tokio::time::sleep(Duration::from_millis(200 * wait)).await;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "{method} {path_and_query}: no answer for two minutes: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            assert!(Instant::now() < deadline, "{method} {path_and_query}: refused for two minutes");
        }
    }
}

pub async fn reply_of(res: reqwest::Response) -> Reply {
    let status = res.status().as_u16();
    let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let request_id = header("x-request-id");
    let retry_after = header("retry-after").and_then(|v| v.trim().parse().ok());
    let text = res.text().await.unwrap_or_default();
    Reply { status, request_id, retry_after, text }
}

/// `YYYYMMDDHHmmss` (UTC) of epoch milliseconds, as query strings carry times.
pub fn compact_time(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y%m%d%H%M%S").to_string())
        .unwrap_or_default()
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
