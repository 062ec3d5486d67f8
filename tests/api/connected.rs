//! Connected mode against a real Apache Kafka cluster: the three-node KRaft cluster that
//! `scripts/kafka-cluster.sh` starts (scripts/test.sh starts it before the Rust tests and names
//! its `cluster.env` in `KAFKA_TASKS_TEST_KAFKA`). Effects are checked with Kafka's own tools
//! from the same jars (`kafka-cluster.sh tools configs …`), not with kafka-tasks' view.
//!
//! Without `KAFKA_TASKS_TEST_KAFKA` the tests say so and pass, except in CI (`CI=true`), where
//! the cluster must be there.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::TestApp;

/// The cluster the tests use, from its `cluster.env`.
pub(crate) struct Kafka {
    env: HashMap<String, String>,
    pub(crate) script: PathBuf,
    /// Tests that restart brokers take the cluster for themselves; the others share it.
    _turn: Turn,
}

/// Who has the test cluster: the tests of this binary run in parallel, and one that restarts
/// brokers (connected_rolling) must not run beside one that needs every broker up.
static TURNS: std::sync::RwLock<()> = std::sync::RwLock::new(());

enum Turn {
    Shared(#[allow(dead_code)] std::sync::RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] std::sync::RwLockWriteGuard<'static, ()>),
}

impl Kafka {
    /// The cluster, shared with the other tests that leave its brokers alone.
    pub(crate) fn get() -> Option<Kafka> {
        Self::take(false)
    }

    /// The cluster, for a test that stops or restarts brokers: no other connected test runs meanwhile.
    pub(crate) fn get_exclusive() -> Option<Kafka> {
        Self::take(true)
    }

    fn take(exclusive: bool) -> Option<Kafka> {
        let Ok(path) = std::env::var("KAFKA_TASKS_TEST_KAFKA") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "KAFKA_TASKS_TEST_KAFKA (the test cluster's cluster.env) must be set in CI"
            );
            eprintln!("skipped: no Kafka test cluster (start one with scripts/kafka-cluster.sh start)");
            return None;
        };
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.replace("\\,", ",")))
            .collect();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-cluster.sh");
        // A test that failed holding its turn poisons the lock; the cluster is still usable.
        let turn = if exclusive {
            Turn::Exclusive(TURNS.write().unwrap_or_else(|e| e.into_inner()))
        } else {
            Turn::Shared(TURNS.read().unwrap_or_else(|e| e.into_inner()))
        };
        Some(Kafka { env, script, _turn: turn })
    }

    pub(crate) fn var(&self, k: &str) -> &str {
        self.env.get(k).map(String::as_str).unwrap_or_else(|| panic!("{k} not in cluster.env"))
    }

    pub(crate) fn bootstrap(&self) -> &str {
        self.var("KAFKA_BOOTSTRAP")
    }

    /// The SCRAM test user and password, from the 0600 file the cluster script wrote.
    fn scram(&self) -> (String, String) {
        let text = std::fs::read_to_string(self.var("KAFKA_SCRAM_FILE")).expect("scram file");
        let get = |k: &str| {
            text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_owned).expect("scram entry")
        };
        (get("KAFKA_SCRAM_USER"), get("KAFKA_SCRAM_PASSWORD"))
    }

    /// A Kafka tool's standard output (the tool from the cluster's own jars).
    pub(crate) fn tool(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(&self.script)
            .arg("tools")
            .args(args)
            .env("KAFKA_CLUSTER_DIR", self.var("KAFKA_CLUSTER_DIR"))
            .output()
            .expect("the cluster script runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A broker's configs as `kafka-configs --describe --all` shows them: name → value.
    pub(crate) fn broker_configs(&self, broker: &str) -> HashMap<String, String> {
        let out = self.tool(&[
            "configs",
            "--bootstrap-server",
            self.bootstrap(),
            "--entity-type",
            "brokers",
            "--entity-name",
            broker,
            "--describe",
            "--all",
        ]);
        out.lines()
            .filter_map(|l| l.trim().split_once('='))
            .filter_map(|(name, rest)| {
                let value = rest.split(" sensitive=").next()?;
                Some((name.to_owned(), value.to_owned()))
            })
            .collect()
    }

    /// The cluster-wide broker defaults set dynamically (`--entity-default`).
    pub(crate) fn cluster_defaults(&self) -> String {
        self.tool(&[
            "configs",
            "--bootstrap-server",
            self.bootstrap(),
            "--entity-type",
            "brokers",
            "--entity-default",
            "--describe",
        ])
    }
}

/// A server that lets bindings reach the test cluster (on loopback), with `extra` flags.
pub(crate) async fn allowing(extra: &[&str]) -> TestApp {
    let mut flags = vec!["--time-scale", "0", "--cluster-allow", "127.0.0.1"];
    flags.extend_from_slice(extra);
    TestApp::spawn_with(&flags).await
}

pub(crate) fn cluster_path(app: &TestApp, inst: &str) -> String {
    format!("{}/cluster", app.instance_path(inst))
}

pub(crate) async fn bound(app: &TestApp, kafka: &Kafka) -> String {
    let inst = app.create_instance().await;
    let _ = app.wait_instance_status(&inst, "RUNNING").await;
    let res = app.put(&cluster_path(app, &inst), Some(json!({"bootstrap_servers": kafka.bootstrap()}))).await;
    assert_eq!(res.status, 200, "{}", res.text);
    inst
}

on_sqlite! {
    #[tokio::test]
    async fn an_instance_binds_to_the_cluster_that_answers_and_shows_it() {
        let Some(kafka) = Kafka::get() else { return };
        let app = allowing(&[]).await;
        let inst = app.create_instance().await;
        let res = app.put(&cluster_path(&app, &inst), Some(json!({"bootstrap_servers": kafka.bootstrap()}))).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let v = res.json();
        // The cluster's id as its storage was formatted with, and its three brokers.
        assert_eq!(v["cluster"]["cluster_id"], kafka.var("KAFKA_CLUSTER_ID"), "{v}");
        let ids: Vec<i64> =
            v["cluster"]["brokers"].as_array().expect("brokers").iter().filter_map(|b| b["id"].as_i64()).collect();
        assert_eq!(ids, [1, 2, 3], "{v}");
        let shown = app.get(&cluster_path(&app, &inst)).await;
        assert_eq!(shown.status, 200);
        assert_eq!(shown.json()["reachable"], true, "{}", shown.text);
        assert_eq!(shown.json()["binding"]["bootstrap_servers"], kafka.bootstrap());
        // Unbinding leaves the cluster alone and the instance unbound.
        let res = app.delete(&cluster_path(&app, &inst)).await;
        assert_eq!(res.status, 204, "{}", res.text);
        app.get(&cluster_path(&app, &inst)).await.assert_error(404, "DMS.00404090");
    }
}

on_sqlite! {
    #[tokio::test]
    async fn scram_binds_with_the_right_password_only_and_never_shows_it() {
        let Some(kafka) = Kafka::get() else { return };
        let dir = tempfile::tempdir().expect("dir");
        let app = allowing(&["--cluster-secrets-dir", dir.path().to_str().expect("utf-8")]).await;
        let inst = app.create_instance().await;
        let (user, password) = kafka.scram();
        let sasl = kafka.var("KAFKA_SASL_BOOTSTRAP");
        let body = |password: &str| {
            json!({"bootstrap_servers": sasl, "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                   "sasl_username": user, "sasl_password": password})
        };
        let started = Instant::now();
        let wrong = app.put(&cluster_path(&app, &inst), Some(body("not-the-password"))).await;
        wrong.assert_error(400, "DMS.00400062");
        assert!(wrong.text.contains("cannot use the cluster"), "{}", wrong.text);
        assert!(started.elapsed() < Duration::from_secs(20), "refused after {:?}", started.elapsed());
        app.get(&cluster_path(&app, &inst)).await.assert_error(404, "DMS.00404090");

        let res = app.put(&cluster_path(&app, &inst), Some(body(&password))).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let shown = app.get(&cluster_path(&app, &inst)).await;
        assert_eq!(shown.json()["reachable"], true, "{}", shown.text);
        assert_eq!(shown.json()["binding"]["sasl_password_source"], "sealed");
        assert!(!res.text.contains(&password) && !shown.text.contains(&password), "the password was shown");
        // Nor is it anywhere in the database file (bindings, audit log) in the clear.
        if let Some(db) = app.db.url.strip_prefix("sqlite:") {
            let bytes = std::fs::read(db).unwrap_or_default();
            assert!(
                !bytes.windows(password.len()).any(|w| w == password.as_bytes()),
                "the password is stored in the clear"
            );
        }

        // A password file others can read is refused, with the fix named.
        let file = dir.path().join("password");
        std::fs::write(&file, format!("{password}\n")).expect("written");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let by_file = json!({"bootstrap_servers": sasl, "security_protocol": "SASL_PLAINTEXT", "sasl_username": user,
                             "sasl_password_file": file.display().to_string()});
        let res = app.put(&cluster_path(&app, &inst), Some(by_file.clone())).await;
        res.assert_error(400, "DMS.00400062");
        assert!(res.text.contains("chmod 600"), "{}", res.text);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let res = app.put(&cluster_path(&app, &inst), Some(by_file)).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.json()["binding"]["sasl_password_source"], format!("file:{}", file.display()));
    }
}

on_sqlite! {
    #[tokio::test]
    async fn a_dynamic_config_change_lands_on_every_broker() {
        let Some(kafka) = Kafka::get() else { return };
        let app = allowing(&[]).await;
        let inst = bound(&app, &kafka).await;
        // A value no test used before, so that seeing it proves this change.
        let hours = (100 + (std::process::id() % 60)).to_string();
        let res = app
            .modify_configs(&inst, json!([{"name": "log.retention.hours", "value": hours}, {"name": "max.connections.per.ip", "value": "1234"}]))
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
        let t = wait_ended(&app, &inst, &task).await;
        assert_eq!(
            t["status"],
            "SUCCESS",
            "{t} {}",
            app.get(&format!("{}/tasks/{task}/executor", app.instance_path(&inst))).await.text
        );
        // Kafka's own tool: the cluster default is set, and every broker has it in force (Kafka
        // changes retention at run time as log.retention.ms, which wins over the hours).
        let ms = (hours.parse::<i64>().expect("hours") * 3_600_000).to_string();
        let defaults = kafka.cluster_defaults();
        assert!(defaults.contains(&format!("log.retention.ms={ms}")), "{defaults}");
        for broker in ["1", "2", "3"] {
            let configs = kafka.broker_configs(broker);
            assert_eq!(configs.get("log.retention.ms").map(String::as_str), Some(ms.as_str()), "broker {broker}");
            assert_eq!(configs.get("max.connections.per.ip").map(String::as_str), Some("1234"), "broker {broker}");
        }
        // The instance shows the new values too, and the step says what it did.
        let run = app.get(&format!("{}/tasks/{task}/executor", app.instance_path(&inst))).await.json();
        assert!(run["output_tail"].as_str().unwrap_or("").contains("on every broker"), "{run}");
    }
}

on_sqlite! {
    #[tokio::test]
    async fn a_static_config_change_on_a_bound_instance_fails_before_changing_anything() {
        let Some(kafka) = Kafka::get() else { return };
        let app = allowing(&[]).await;
        let inst = bound(&app, &kafka).await;
        let res = app.modify_configs(&inst, json!([{"name": "num.partitions", "value": "7"}])).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
        let t = wait_ended(&app, &inst, &task).await;
        assert_eq!(t["status"], "FAILED", "{t}");
        let run = app.get(&format!("{}/tasks/{task}/executor", app.instance_path(&inst))).await.json();
        let reason = run["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("num.partitions") && reason.contains("rolling restart"), "{run}");
        assert_eq!(run["step"], "pre_check", "{run}");
        // (Other tests change other configs of the shared cluster meanwhile: this one looks at its own.)
        let defaults = kafka.cluster_defaults();
        assert!(!defaults.contains("num.partitions"), "the cluster changed: {defaults}");
        for broker in ["1", "2", "3"] {
            assert_ne!(
                kafka.broker_configs(broker).get("num.partitions").map(String::as_str),
                Some("7"),
                "broker {broker}"
            );
        }
        assert_eq!(app.show_instance(&inst).await.json()["status"], "RUNNING", "the instance got its status back");
    }
}

/// Waits for a task to end (SUCCESS or FAILED), longer than the simulated tests do: a real
/// cluster takes its time.
pub(crate) async fn wait_ended(app: &TestApp, inst: &str, task: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let res = app.show_task(inst, task).await;
        let t = res.json()["tasks"][0].clone();
        if t["status"] == "SUCCESS" || t["status"] == "FAILED" {
            return t;
        }
        assert!(Instant::now() < deadline, "task still {} after 90 s", t["status"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

on_sqlite! {
    #[tokio::test]
    async fn tls_binds_with_the_clusters_ca_only_and_a_config_change_lands_through_it() {
        let Some(kafka) = Kafka::get() else { return };
        // The CA files where the operator allows files: the secrets directory.
        let dir = tempfile::tempdir().expect("dir");
        let (ca, other) = (dir.path().join("ca.pem"), dir.path().join("other-ca.pem"));
        std::fs::copy(kafka.var("KAFKA_CA_FILE"), &ca).expect("the cluster's CA");
        std::fs::copy(kafka.var("KAFKA_OTHER_CA_FILE"), &other).expect("another CA");
        let app = allowing(&["--cluster-secrets-dir", dir.path().to_str().expect("utf-8")]).await;
        let inst = app.create_instance().await;
        let _ = app.wait_instance_status(&inst, "RUNNING").await;
        let ssl = kafka.var("KAFKA_SSL_BOOTSTRAP");
        let body = |ca: &std::path::Path| json!({"bootstrap_servers": ssl, "security_protocol": "SSL", "ssl_ca_file": ca.display().to_string()});
        // A CA that did not sign the brokers' certificate: refused with the reason, nothing bound.
        let wrong = app.put(&cluster_path(&app, &inst), Some(body(&other))).await;
        wrong.assert_error(400, "DMS.00400062");
        assert!(wrong.text.contains("cannot use the cluster"), "{}", wrong.text);
        app.get(&cluster_path(&app, &inst)).await.assert_error(404, "DMS.00404090");

        let res = app.put(&cluster_path(&app, &inst), Some(body(&ca))).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.json()["cluster"]["cluster_id"], kafka.var("KAFKA_CLUSTER_ID"), "{}", res.text);
        // A dynamic config change over TLS lands on every broker (Kafka's ConfigCommand, over PLAINTEXT).
        let bytes = (1_048_576 + std::process::id() % 100_000).to_string();
        let res = app.modify_configs(&inst, json!([{"name": "message.max.bytes", "value": bytes}])).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
        let t = wait_ended(&app, &inst, &task).await;
        let run = app.get(&format!("{}/tasks/{task}/executor", app.instance_path(&inst))).await.text;
        assert_eq!(t["status"], "SUCCESS", "{t} {run}");
        for broker in ["1", "2", "3"] {
            let configs = kafka.broker_configs(broker);
            assert_eq!(configs.get("message.max.bytes"), Some(&bytes), "broker {broker}");
        }

        // SCRAM over TLS: the right password binds.
        let (user, password) = kafka.scram();
        let sasl_ssl = json!({"bootstrap_servers": kafka.var("KAFKA_SASL_SSL_BOOTSTRAP"), "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": user, "sasl_password": password,
            "ssl_ca_file": ca.display().to_string()});
        let res = app.put(&cluster_path(&app, &inst), Some(sasl_ssl)).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(app.get(&cluster_path(&app, &inst)).await.json()["reachable"], true);
    }
}
