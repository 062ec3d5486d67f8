//! Cluster bindings (connected mode) as far as they go without a Kafka cluster: who may bind,
//! what a binding may say, and a cluster that does not answer. The bindings to a real cluster
//! are tested in `tests/connected` against the three-node test cluster.

use kafka_tasks::domain::Timestamp;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::helpers::{PROJECT, TestApp};
use kafka_tasks::domain::Role;

/// A server that lets bindings reach loopback, where the tests' clusters (real or made up) are.
async fn loopback_server() -> TestApp {
    TestApp::spawn_with(&["--time-scale", "0", "--cluster-allow", "127.0.0.0/8"]).await
}

fn cluster_path(app: &TestApp, inst: &str) -> String {
    format!("{}/cluster", app.instance_path(inst))
}

/// The instance has no binding: GET answers 404 DMS.00404090.
async fn assert_unbound(app: &TestApp, inst: &str) {
    app.get(&cluster_path(app, inst)).await.assert_error(404, "DMS.00404090");
}

per_engine! {
    #[tokio::test]
    async fn only_admins_see_or_change_a_binding() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let path = cluster_path(&app, &inst);
        let body = json!({"bootstrap_servers": "127.0.0.1:1"}).to_string();
        for role in [Role::Readonly, Role::Operator] {
            let cred = app.credential(PROJECT, &format!("{role:?}"), role).await;
            for (method, body) in [(Method::GET, None), (Method::PUT, Some(body.clone())), (Method::DELETE, None)] {
                app.request_as(&cred, method.clone(), &path, body).await.assert_error(403, "DMS.00403003");
            }
        }
        assert_unbound(&app, &inst).await;
    }
}

per_engine! {
    #[tokio::test]
    async fn a_bad_binding_is_refused_by_name_and_stores_nothing() {
        let app = loopback_server().await;
        let inst = app.create_instance().await;
        let path = cluster_path(&app, &inst);
        for (body, field) in [
            (json!({"bootstrap_servers": ""}), "bootstrap_servers"),
            (json!({"bootstrap_servers": "k\n:9092"}), "bootstrap_servers"),
            (
                json!({"bootstrap_servers": "k:9092", "security_protocol": "SASL_SSL", "sasl_username": "u"}),
                "sasl_password",
            ),
            (json!({"bootstrap_servers": "k:9092", "sasl_username": "u"}), "security_protocol"),
            (json!({"bootstrap_servers": "k:9092", "broker_control": "relative/path"}), "broker_control"),
        ] {
            let res = app.put(&path, Some(body.clone())).await;
            res.assert_error(400, "DMS.00400062");
            assert!(res.text.contains(field), "{body} → {}", res.text);
        }
        for body in
            [json!({"bootstrap_servers": "k:9092", "bogus": 1}), json!({"security_protocol": "PLAINTEXT"}), json!([1])]
        {
            app.put(&path, Some(body)).await.assert_error(400, "DMS.00400800");
        }
        assert_unbound(&app, &inst).await;
        // An instance that does not exist.
        let other = format!("/v2/{PROJECT}/instances/00000000-0000-4000-8000-000000000000/cluster");
        app.put(&other, Some(json!({"bootstrap_servers": "127.0.0.1:1"}))).await.assert_error(404, "DMS.00404022");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_cluster_that_does_not_answer_is_refused_clearly_within_the_timeout() {
        let app = loopback_server().await;
        let inst = app.create_instance().await;
        // A port nothing listens on: refused at once.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let started = Instant::now();
        let res =
            app.put(&cluster_path(&app, &inst), Some(json!({"bootstrap_servers": format!("127.0.0.1:{port}")}))).await;
        res.assert_error(400, "DMS.00400062");
        assert!(res.text.contains("cannot use the cluster at 127.0.0.1:"), "{}", res.text);
        assert!(started.elapsed() < Duration::from_secs(15), "answered after {:?}", started.elapsed());
        assert_unbound(&app, &inst).await;
        // A listener that accepts and never speaks Kafka: refused by the bind timeout (10 s).
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = silent.local_addr().expect("addr");
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let started = Instant::now();
        let res = app.put(&cluster_path(&app, &inst), Some(json!({"bootstrap_servers": addr.to_string()}))).await;
        res.assert_error(400, "DMS.00400062");
        assert!(started.elapsed() < Duration::from_secs(25), "answered after {:?}", started.elapsed());
        assert_unbound(&app, &inst).await;
        hold.abort();
    }
}

/// Stores a PLAINTEXT binding of `inst` to `server` as the bind endpoint writes it, without
/// asking the cluster (for clusters that do not answer).
pub(crate) async fn store_plaintext_binding(app: &TestApp, inst: &str, server: &str) {
    use kafka_tasks::domain::cluster::{Binding, SecurityProtocol};
    use kafka_tasks::storage::{AuditEvent, StoredBinding};
    let binding = Binding {
        bootstrap: vec![server.to_owned()],
        protocol: SecurityProtocol::PLAINTEXT,
        sasl: None,
        ssl_ca_file: None,
        broker_control: None,
    };
    let audit = AuditEvent {
        at: app.clock.now_ms(),
        request_id: "test".into(),
        project_id: PROJECT.into(),
        user_id: "test".into(),
        user_name: "test".into(),
        access_key: None,
        action: "kafka-tasks:instance:bindCluster".into(),
        target: inst.to_owned(),
        status: 200,
        detail: None,
    };
    let storage = app.db.storage().await;
    let project: kafka_tasks::domain::ProjectId = PROJECT.parse().expect("project");
    let id: kafka_tasks::domain::InstanceId = inst.parse().expect("instance");
    let stored = StoredBinding { binding, password_sealed: None };
    assert!(
        storage
            .clusters
            .put_binding(&project, &id, Some(stored), Timestamp::from_ms(app.clock.now_ms()), audit)
            .await
            .expect("bound")
    );
}

per_engine! {
    /// A cluster that stopped answering after it was bound: the operation fails cleanly at its
    /// first step with the reason, within the executor's call timeout, and changes nothing.
    #[tokio::test]
    async fn an_operation_on_a_cluster_that_went_away_fails_with_the_reason() {
        let app = loopback_server().await;
        let inst = app.create_instance().await;
        let _ = app.wait_instance_status(&inst, "RUNNING").await;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let gone = closed.local_addr().expect("addr").to_string();
        drop(closed);
        // Bound while the cluster answered (written as the bind endpoint writes it).
        store_plaintext_binding(&app, &inst, &gone).await;
        let before = app.show_instance(&inst).await.json();
        let started = Instant::now();
        let res = app.modify_configs(&inst, json!([{"name": "max.connections.per.ip", "value": "1234"}])).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
        let t = loop {
            let t = app.show_task(&inst, &task).await.json()["tasks"][0].clone();
            if t["status"] == "FAILED" || t["status"] == "SUCCESS" {
                break t;
            }
            assert!(started.elapsed() < Duration::from_secs(40), "still {} after 40 s", t["status"]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(t["status"], "FAILED", "{t}");
        let run = app.get(&format!("{}/tasks/{task}/executor", app.instance_path(&inst))).await.json();
        let reason = run["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(&format!("cannot use the cluster at {gone}")), "{run}");
        assert_eq!(run["step"], "pre_check", "{run}");
        let after = app.show_instance(&inst).await.json();
        assert_eq!(after["status"], "RUNNING");
        assert_eq!(after["kafka_configs"], before["kafka_configs"], "a failed task changed the instance");
    }
}

per_engine! {
    /// A project admin is a tenant: binding must not let one make the server connect wherever it can
    /// reach, read its files, or use its own settings as a password.
    #[tokio::test]
    async fn a_binding_reaches_only_what_the_operator_allows() {
        let secrets = tempfile::tempdir().expect("dir");
        let dir = secrets.path().to_str().expect("utf-8").to_owned();
        let app =
            TestApp::spawn_with(&["--time-scale", "0", "--cluster-allow", "10.9.0.0/16", "--cluster-secrets-dir", &dir])
                .await;
        let inst = app.create_instance().await;
        let path = cluster_path(&app, &inst);
        // Nothing is allowed by default.
        let closed = TestApp::spawn().await;
        let other = closed.create_instance().await;
        let res = closed.put(&cluster_path(&closed, &other), Some(json!({"bootstrap_servers": "10.9.0.1:9092"}))).await;
        res.assert_error(400, "DMS.00400062");
        assert!(res.text.contains("--cluster-allow"), "{}", res.text);
        let outside = tempfile::NamedTempFile::new().expect("file");
        for (body, why) in [
            (json!({"bootstrap_servers": "169.254.169.254:80"}), "not among the clusters"),
            (json!({"bootstrap_servers": "127.0.0.1:5432"}), "not among the clusters"),
            (json!({"bootstrap_servers": "10.9.0.1:9092,127.0.0.1:22"}), "not among the clusters"),
            (
                json!({"bootstrap_servers": "10.9.0.1:9092", "security_protocol": "SASL_PLAINTEXT", "sasl_username": "u",
                       "sasl_password_env": "KAFKA_TASKS_MASTER_KEY"}),
                "KAFKA_TASKS_CLUSTER_",
            ),
            (
                json!({"bootstrap_servers": "10.9.0.1:9092", "security_protocol": "SASL_PLAINTEXT", "sasl_username": "u",
                       "sasl_password_file": outside.path().display().to_string()}),
                "not under the secrets directory",
            ),
            (
                json!({"bootstrap_servers": "10.9.0.1:9092", "security_protocol": "SSL",
                       "ssl_ca_file": format!("{dir}/../../etc/passwd")}),
                "not under the secrets directory",
            ),
        ] {
            let started = Instant::now();
            let res = app.put(&path, Some(body.clone())).await;
            res.assert_error(400, "DMS.00400062");
            assert!(res.text.contains(why), "{body} → {}", res.text);
            // Refused before any connection is tried (10.9.0.0/16 answers nothing here).
            assert!(started.elapsed() < Duration::from_secs(2), "{body}: {:?}", started.elapsed());
        }
        assert_unbound(&app, &inst).await;
    }
}
