//! Instances and the operations that create tasks.

use serde_json::{Value, json};

use crate::helpers::TestApp;

per_engine! {
    #[tokio::test]
    async fn an_instance_is_created_and_runs() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let shown = app.show_instance(&inst).await.json();
        assert_eq!(shown["status"], "RUNNING");
        assert_eq!(shown["broker_num"], 3);
        assert_eq!(shown["vpc_id"], "vpc-1", "descriptive DMS fields are kept");
        let listed = app.get(&format!("/v2/{}/instances", app.project)).await.json();
        assert_eq!(listed["instance_num"], 1);
        assert_eq!(listed["instances"][0]["instance_id"], inst.as_str());
        let tasks = app.list_tasks(&inst, "").await.json();
        assert_eq!(tasks["tasks"][0]["name"], "createInstance");
        assert_eq!(tasks["tasks"][0]["status"], "SUCCESS");
    }
}

per_engine! {
    #[tokio::test]
    async fn invalid_create_requests_create_nothing() {
        let app = TestApp::spawn().await;
        let good =
            json!({"name": "kafka-x", "engine_version": "2.7", "broker_num": 3, "storage_space": 300, "product_id": "p"});
        let cases = [
            ("name", json!(null)),
            ("name", json!("x")),
            ("engine_version", json!("9.9")),
            ("broker_num", json!(0)),
            ("broker_num", json!("three")),
            ("storage_space", json!(-1)),
            ("product_id", json!(null)),
        ];
        for (field, value) in cases {
            let mut body = good.clone();
            body[field] = value;
            let res = app.create_instance_with(body).await;
            res.assert_error(400, "DMS.00400062");
            assert!(res.json()["error_msg"].as_str().is_some_and(|m| m.contains(field)), "{}", res.text);
        }
        let list = app.get(&format!("/v2/{}/instances", app.project)).await.json();
        assert_eq!(list["instance_num"], 0);
    }
}

per_engine! {
    #[tokio::test]
    async fn config_changes_apply_when_the_task_finishes() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let res = app
            .modify_configs(
                &inst,
                json!([{"name": "log.retention.hours", "value": "24"}, {"name": "num.partitions", "value": "6"}]),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let body = res.json();
        assert_eq!((body["dynamic_config"].clone(), body["static_config"].clone()), (json!(1), json!(1)));
        let job = body["job_id"].as_str().expect("job_id").to_owned();
        let task = app.wait_task_status(&inst, &job, "SUCCESS").await;
        assert_eq!(task["name"], "kafkaConfigModify");
        let params: Value = serde_json::from_str(task["params"].as_str().unwrap_or_default()).expect("params");
        assert_eq!(
            params["kafka_configs"][0],
            json!({"name": "log.retention.hours", "old_value": "72", "new_value": "24"})
        );
        let configs = app.get(&format!("{}/configs", app.instance_path(&inst))).await.json();
        let value = |name: &str| {
            configs["kafka_configs"]
                .as_array()
                .and_then(|a| a.iter().find(|c| c["name"] == name))
                .map(|c| c["value"].clone())
        };
        assert_eq!(value("log.retention.hours"), Some(json!("24")));
        assert_eq!(value("num.partitions"), Some(json!("6")));
        // A static change restarts brokers.
        let steps = app.progress(&inst, &job).await.json()["step_list"].clone();
        assert_eq!(steps.as_array().and_then(|s| s.last()).map(|s| s["name"].clone()), Some(json!("rolling_restart")));
    }
}

per_engine! {
    #[tokio::test]
    async fn invalid_operations_are_refused_and_create_no_task() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let before = app.task_count(&inst).await;

        app.modify_configs(&inst, json!([{"name": "no.such.config", "value": "1"}]))
            .await
            .assert_error(400, "DMS.00400062");
        app.modify_configs(&inst, json!([{"name": "log.retention.hours", "value": "100000"}]))
            .await
            .assert_error(400, "DMS.00400062");
        app.resize(&inst, json!({"oper_type": "storage", "new_storage_space": 200}))
            .await
            .assert_error(400, "DMS.00400062");
        app.resize(&inst, json!({"oper_type": "horizontal", "new_broker_num": 2})).await.assert_error(400, "DMS.00400062");
        app.reassign(&inst, json!({"reassignments": [{"topic": "t", "brokers": [0, 5]}]}))
            .await
            .assert_error(400, "DMS.00400062");
        app.finished_task(&inst, true).await;
        let mid = app.task_count(&inst).await;
        assert_eq!(mid, before + 1);
        app.post(&format!("{}/autotopic", app.instance_path(&inst)), json!({"enable_auto_topic": "yes"}))
            .await
            .assert_error(400, "DMS.00400062");
        let malformed = app
            .request(reqwest::Method::PUT, &format!("{}/configs", app.instance_path(&inst)), Some("{not json".into()))
            .await;
        malformed.assert_error(400, "DMS.00400800");
        assert_eq!(app.task_count(&inst).await, mid);
    }
}

per_engine! {
    #[tokio::test]
    async fn one_operation_at_a_time_per_instance() {
        let app = TestApp::spawn_with(&["--time-scale", "0.05"]).await;
        let inst = app.create_instance().await;
        let first = app.resize(&inst, json!({"oper_type": "storage", "new_storage_space": 600})).await;
        assert_eq!(first.status, 200, "{}", first.text);
        let before = app.task_count(&inst).await;
        app.auto_topic(&inst, true).await.assert_error(400, "DMS.00400026");
        let restart = app
            .post(&format!("/v2/{}/instances/action", app.project), json!({"action": "restart", "instances": [inst]}))
            .await;
        assert_eq!(restart.json()["results"][0], json!({"result": "failed", "instance": inst}));
        assert_eq!(app.task_count(&inst).await, before);
    }
}

per_engine! {
    #[tokio::test]
    async fn restart_and_delete_through_the_batch_action() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let res = app
            .post(
                &format!("/v2/{}/instances/action", app.project),
                json!({"action": "restart", "instances": [inst, "bogus"]}),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(
            res.json()["results"],
            json!([{"result": "success", "instance": inst}, {"result": "failed", "instance": "bogus"}])
        );
        let tasks = app.list_tasks(&inst, "").await.json();
        let restart = tasks["tasks"][0].clone();
        assert_eq!(restart["name"], "restartInstance");
        app.wait_task_status(&inst, restart["id"].as_str().unwrap_or_default(), "SUCCESS").await;

        app.post(&format!("/v2/{}/instances/action", app.project), json!({"action": "explode", "instances": [inst]}))
            .await
            .assert_error(400, "DMS.00400062");
        let del = app.delete(&app.instance_path(&inst)).await;
        assert_eq!(del.status, 204, "{}", del.text);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while app.show_instance(&inst).await.status != 404 {
            assert!(std::time::Instant::now() < deadline, "instance never went away");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        app.show_instance(&inst).await.assert_error(404, "DMS.00404022");
        app.list_tasks(&inst, "").await.assert_error(404, "DMS.00404022");
    }
}

per_engine! {
    #[tokio::test]
    async fn reassignment_can_estimate_without_creating_a_task() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let before = app.task_count(&inst).await;
        let res = app.reassign(&inst, json!({"reassignments": [{"topic": "t", "brokers": [0, 1, 2], "replication_factor": 3}], "time_estimate": true})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert!(res.json()["reassignment_time"].as_u64().is_some_and(|s| s > 0));
        assert_eq!(app.task_count(&inst).await, before);
        let res = app
            .reassign(&inst, json!({"reassignments": [{"topic": "t", "brokers": [0, 1, 2]}], "throttle": 10485760}))
            .await;
        let job = res.json()["job_id"].as_str().expect("job_id").to_owned();
        app.wait_task_status(&inst, &job, "SUCCESS").await;
    }
}

/// Every byte of the SQLite database files (the database, its WAL and shared memory).
fn sqlite_bytes(app: &TestApp) -> Option<Vec<u8>> {
    let path = app.db.url.strip_prefix("sqlite:")?;
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(b) = std::fs::read(format!("{path}{suffix}")) {
            all.extend(b);
        }
    }
    Some(all)
}

per_engine! {
    #[tokio::test]
    async fn passwords_and_unknown_fields_of_a_create_are_neither_stored_nor_shown() {
        let app = TestApp::spawn().await;
        let reader = app.credential(&app.project, "reader", kafka_tasks::domain::Role::Readonly).await;
        let filler = "Z".repeat(200 * 1024);
        let res = app
            .create_instance_with(json!({
                "name": "kafka-secret", "engine_version": "2.7", "broker_num": 3, "storage_space": 300,
                "product_id": "p", "vpc_id": "vpc-1",
                "password": "Pw-Top-1-Secret", "kafka_manager_password": "Pw-Manager-2-Secret",
                "ssl_user_password": "Pw-Ssl-3-Secret", "unknown_field": filler,
            }))
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let inst = res.json()["instance_id"].as_str().expect("instance_id").to_owned();
        app.wait_instance_status(&inst, "RUNNING").await;

        for cred in [&app.admin, &reader] {
            for path in [app.instance_path(&inst), format!("/v2/{}/instances", app.project)] {
                let res = app.request_as(cred, reqwest::Method::GET, &path, None).await;
                assert_eq!(res.status, 200, "{}", res.text);
                assert!(!res.text.contains("Secret"), "a password is shown: {}", res.text);
                assert!(!res.text.contains("ZZZZ") && !res.text.contains("unknown_field"), "an unknown field is kept");
                assert!(res.text.contains("vpc-1"), "kept fields are shown: {}", res.text);
            }
        }
        if let Some(bytes) = sqlite_bytes(&app) {
            let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
            assert!(!has(b"Secret"), "a password reached the database file");
            assert!(!has(&[b'Z'; 64]), "the unknown 200 KB field reached the database file");
        }
    }
}

per_engine! {
    #[tokio::test]
    async fn sizes_have_a_maximum_and_a_horizontal_resize_never_wraps() {
        let app = TestApp::spawn_with(&["--time-scale", "0", "--storage-pool-gb", "4000000000"]).await;
        let body = |storage: u64| json!({"name": "kafka-huge", "engine_version": "2.7", "broker_num": 1, "storage_space": storage, "product_id": "p"});
        let res = app.create_instance_with(body(3_000_000_000)).await;
        res.assert_error(400, "DMS.00400062");
        assert!(res.json()["error_msg"].as_str().is_some_and(|m| m.contains("storage_space")), "{}", res.text);

        let max = u64::from(kafka_tasks::domain::instance::MAX_STORAGE_GB);
        let res = app.create_instance_with(body(max)).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let inst = res.json()["instance_id"].as_str().expect("instance_id").to_owned();
        app.wait_instance_status(&inst, "RUNNING").await;
        let res = app.resize(&inst, json!({"oper_type": "horizontal", "new_broker_num": 2})).await;
        res.assert_error(400, "DMS.00400062");
        assert!(res.json()["error_msg"].as_str().is_some_and(|m| m.contains("new_broker_num")), "{}", res.text);
        let shown = app.show_instance(&inst).await.json();
        assert_eq!(shown["storage_space"], max);
        assert_eq!(shown["broker_num"], 1);
        app.resize(&inst, json!({"oper_type": "storage", "new_storage_space": max + 1}))
            .await
            .assert_error(400, "DMS.00400062");
    }
}
