//! The pieces of the live tests: the service as real processes, a signing client, and Debian's
//! `prometheus` on a loopback port with a temporary config and storage.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::serve::ServerProcess;
use kafka_tasks::auth::IssuedCredential;
use reqwest::Method;
use serde_json::{Value, json};

pub const PROJECT: &str = "0123456789abcdef0123456789abcdef";

/// The repository's file at `rel`.
pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A program found on PATH (or named by `env` when set), if it runs.
fn tool(env: &str, name: &str) -> Option<PathBuf> {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(name));
    let ok = Command::new(&path).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    ok.is_ok_and(|s| s.success()).then_some(path)
}

/// `promtool`/`prometheus`, or `None` when the test may skip: absent and not required.
/// In CI (`CI=true`) or with `KAFKA_TASKS_REQUIRE_PROMETHEUS=1` it is required (then this
/// panics): scripts/test.sh, which CI runs, installs the package and sets the variable before
/// the step that runs every test binary. Elsewhere (a developer's `cargo test`) these tests skip,
/// saying so, without it.
pub fn prometheus_tool(name: &str) -> Option<PathBuf> {
    let env = if name == "promtool" { "KAFKA_TASKS_PROMTOOL" } else { "KAFKA_TASKS_PROMETHEUS" };
    match tool(env, name) {
        Some(p) => Some(p),
        None if std::env::var_os("KAFKA_TASKS_REQUIRE_PROMETHEUS").is_some_and(|v| v == "1") || crate::pg::in_ci() => {
            panic!("`{name}` is required (apt-get install prometheus); set {env} to its path")
        }
        None => {
            eprintln!(
                "SKIPPED: `{name}` is not installed (apt-get install prometheus); scripts/test.sh installs it and runs this test"
            );
            None
        }
    }
}

/// A `kafka-tasks serve` process (the shared test [`ServerProcess`]), killed when dropped.
pub struct Server {
    _process: ServerProcess,
    pub base: String,
    pub addr: String,
}

impl Server {
    /// Starts the binary on port 0 and reads its address from its JSON log, which is kept beside
    /// the key file.
    pub fn start(database: &str, key_file: &Path, flags: &[&str]) -> Server {
        let key = key_file.to_string_lossy().into_owned();
        let mut args = vec!["--poll-ms", "20", "--database", database, "--master-key-file", &key];
        args.extend_from_slice(flags);
        let log = key_file.with_file_name(format!("serve-{}.log", uuid::Uuid::new_v4().simple()));
        let process = ServerProcess::start(&args, &[], &log);
        Server { base: process.base.clone(), addr: process.addr.clone(), _process: process }
    }

    /// The families a scrape of `/metrics` lists (its `# TYPE` lines).
    pub async fn metric_families(&self) -> Vec<String> {
        let text = kafka_tasks::tls::http_client()
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text");
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_owned)
            .collect()
    }
}

/// Signs requests with the credential the first server wrote beside its master key.
pub struct Client {
    http: reqwest::Client,
    cred: IssuedCredential,
}

impl Client {
    pub fn new(dir: &Path) -> Client {
        let text = std::fs::read_to_string(dir.join("initial-credential.json")).expect("first credential written");
        Client { http: kafka_tasks::tls::http_client(), cred: serde_json::from_str(&text).expect("credential JSON") }
    }

    pub async fn request(&self, server: &Server, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let base = [("content-type", "application/json"), ("host", server.addr.as_str()), ("x-project-id", PROJECT)];
        let now = chrono::Utc::now().timestamp_millis();
        let headers = crate::kit::sign::signed_headers(
            &self.cred,
            method.as_str(),
            path,
            &base,
            crate::kit::sign::Payload::Body(body.as_bytes()),
            now,
        );
        let mut req = self.http.request(method, format!("{}{path}", server.base));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let res = req.body(body).send().await.expect("request sent");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Creates an instance of `storage_gb` and returns its id (its creation task runs at once).
    pub async fn create(&self, server: &Server, storage_gb: u64) -> String {
        let body = json!({
            "name": "kafka-prom", "engine_version": "2.7", "broker_num": 1,
            "storage_space": storage_gb, "product_id": "c6.2u4g.cluster", "vpc_id": "vpc-1"
        });
        let (status, v) =
            self.request(server, Method::POST, &format!("/v2/kafka/{PROJECT}/instances"), Some(body)).await;
        assert_eq!(status, 200, "{v}");
        v["instance_id"].as_str().expect("instance_id").to_owned()
    }

    /// Lists the instance's tasks and shows each.
    pub async fn browse(&self, server: &Server, instance: &str) {
        let path = format!("/v2/{PROJECT}/instances/{instance}/tasks");
        let (status, v) = self.request(server, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{v}");
        for t in v["tasks"].as_array().into_iter().flatten() {
            let id = t["id"].as_str().unwrap_or_default();
            let (status, v) = self.request(server, Method::GET, &format!("{path}/{id}"), None).await;
            assert_eq!(status, 200, "{v}");
        }
    }
}

/// The alert rules with their windows and delays shortened for a test that lasts seconds:
/// `[5m]` and `[15m]` become `[20s]`, every `for:` becomes `0s`.
pub fn fast_rules() -> String {
    let text = std::fs::read_to_string(repo_file("deploy/prometheus/alerts.yml")).expect("alerts.yml");
    let text = text.replace("[5m]", "[20s]").replace("[15m]", "[20s]");
    text.lines()
        .map(|l| match l.trim_start().strip_prefix("for:") {
            Some(_) => format!("{}for: 0s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A Prometheus server on loopback, killed when dropped.
pub struct Prometheus {
    child: Child,
    pub base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Prometheus {
    /// Starts `binary` scraping `targets` every second under `job: kafka-tasks`, evaluating the
    /// fast copy of the alert rules every second.
    pub async fn start(binary: &Path, targets: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("rules.yml"), fast_rules()).expect("rules written");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['rules.yml']\n\
             scrape_configs:\n  - job_name: kafka-tasks\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("config written");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let p = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: kafka_tasks::tls::http_client(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = p.http.get(format!("{}/-/ready", p.base)).send().await
                && r.status() == 200
            {
                return p;
            }
            let log = std::fs::read_to_string(p._dir.path().join("prometheus.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "prometheus did not become ready:\n{log}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The result vector of an instant query.
    pub async fn query(&self, q: &str) -> Vec<Value> {
        let encoded = percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC);
        let res = self.http.get(format!("{}/api/v1/query?query={encoded}", self.base)).send().await;
        let v: Value = res.expect("query sent").json().await.expect("JSON");
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `q` until `ok` holds of its result, for at most `within`.
    pub async fn wait_for(&self, q: &str, within: Duration, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let r = self.query(q).await;
            if ok(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "{q} never satisfied the check; last result: {r:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Alerts in Prometheus's own alert state.
    pub async fn alerts(&self) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/api/v1/alerts", self.base))
            .send()
            .await
            .expect("alerts")
            .json()
            .await
            .expect("JSON");
        v["data"]["alerts"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `name` fires with `label = value`.
    pub async fn wait_firing(&self, name: &str, label: (&str, &str), within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let alerts = self.alerts().await;
            if let Some(a) = alerts
                .iter()
                .find(|a| a["labels"]["alertname"] == name && a["labels"][label.0] == label.1 && a["state"] == "firing")
            {
                return a.clone();
            }
            assert!(Instant::now() < deadline, "{name} did not fire; alerts: {alerts:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The value of a one-sample vector element.
pub fn value(v: &Value) -> f64 {
    v["value"][1].as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}
