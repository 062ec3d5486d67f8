//! Fidelity to DMS: kernel upgrades (ShowUpgradeInstanceVersion, rolling UpgradeInstance,
//! the operator's `kernels add`), the second paths of create and reassign, UpdateInstance,
//! `status=null` on a scheduled task, and `params` without nulls.

use kafka_tasks::domain::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{LATEST_BUILT_IN_27, PROJECT, TestApp};

const OTHER_PROJECT: &str = "fedcba9876543210fedcba9876543210";

fn in_ms(ms: i64) -> i64 {
    chrono::Utc::now().timestamp_millis() + ms
}

/// The audit events of requests with this id.
async fn audit_of(app: &TestApp, request_id: &str) -> Vec<kafka_tasks::storage::AuditEvent> {
    let events = app.db.storage().await.audit.list_audit(None, None, 10_000).await.expect("audit readable");
    events.into_iter().filter(|e| e.request_id == request_id).collect()
}

// --- kernel versions ---

per_engine! {
    #[tokio::test]
    async fn show_upgrade_version_answers_the_running_build_and_the_newest_one() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let res = app.show_upgrade(&inst).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.json(), json!({"current_version": LATEST_BUILT_IN_27, "latest_version": LATEST_BUILT_IN_27}));

        let newer = app.newer_kernel().await;
        let shown = app.show_upgrade(&inst).await.json();
        assert_eq!(shown, json!({"current_version": LATEST_BUILT_IN_27, "latest_version": newer}));
        // A read: a readonly key may ask.
        let reader = app.credential(PROJECT, "rita", Role::Readonly).await;
        let path = format!("/v2/{PROJECT}/kafka/instances/{inst}/upgrade");
        assert_eq!(app.request_as(&reader, Method::GET, &path, None).await.json(), shown);
        // New instances start on the newest build.
        let second = app.create_instance().await;
        assert_eq!(app.show_upgrade(&second).await.json()["current_version"], newer.as_str());
        // Another project's instance is not there.
        let other = app.credential(OTHER_PROJECT, "bob", Role::Admin).await;
        let theirs = format!("/v2/{OTHER_PROJECT}/kafka/instances/{inst}/upgrade");
        app.request_as(&other, Method::GET, &theirs, None).await.assert_error(404, "DMS.00404022");
        app.request_as(&other, Method::GET, &path, None).await.assert_error(403, "APIGW.0302");
    }
}

per_engine! {
    #[tokio::test]
    async fn an_instance_on_the_latest_kernel_is_not_upgraded() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let before = app.task_count(&inst).await;
        let res = app.upgrade(&inst, json!({})).await;
        res.assert_error(400, "DMS.00400026");
        assert!(res.text.contains("latest kernel"), "{}", res.text);
        app.upgrade(&inst, json!({"is_schedule": true, "execute_at": in_ms(60_000)}))
            .await
            .assert_error(400, "DMS.00400026");
        assert_eq!(app.task_count(&inst).await, before);
        assert_eq!(app.list_scheduled(&inst, "").await.json()["job_count"], 0);
    }
}

per_engine! {
    #[tokio::test]
    async fn a_kernel_upgrade_rolls_broker_by_broker_and_keeps_the_engine_version() {
        // 300 s per broker × 0.004 = 1.2 s per broker.
        let app = TestApp::spawn_with(&["--time-scale", "0.004"]).await;
        let res = app
            .create_instance_with(json!({
                "name": "kafka-3x", "engine_version": "3.x", "broker_num": 3, "storage_space": 300, "product_id": "p"
            }))
            .await;
        let inst = res.json()["instance_id"].as_str().expect("instance_id").to_owned();
        app.wait_instance_status(&inst, "RUNNING").await;
        let old = app.show_upgrade(&inst).await.json()["current_version"].as_str().expect("current").to_owned();
        assert_eq!(old, "3.1.1-h0.cbu.dms.101.r0");
        app.add_kernel_build("3.x", "3.1.1-h0.cbu.dms.102.r0").await.expect("added");

        let res = app.upgrade(&inst, json!({})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let job = res.json()["job_id"].as_str().expect("job_id").to_owned();
        let task = &app.show_task(&inst, &job).await.json()["tasks"][0];
        assert_eq!(task["name"], "upgradeInstance");
        let params: Value = serde_json::from_str(task["params"].as_str().expect("params")).expect("JSON params");
        assert_eq!(params, json!({"engine_version": "3.x", "old_version": old, "new_version": "3.1.1-h0.cbu.dms.102.r0"}));

        // Broker 1 upgrading: pre_check and broker 0 are done, two brokers and post_check remain.
        let p = app.wait_step_running(&inst, &job, 2).await;
        let names: Vec<&str> =
            p["step_list"].as_array().expect("steps").iter().filter_map(|s| s["name"].as_str()).collect();
        assert_eq!(names, ["pre_check", "upgrade_broker_0", "upgrade_broker_1", "upgrade_broker_2", "post_check"]);
        assert_eq!(p["step_list"][1]["statue"], "COMPLETED", "{p}");
        assert_eq!(p["step_list"][3]["statue"], "WAITING", "{p}");
        let pct = p["progress_percentage"].as_u64().expect("percentage");
        assert!((33..67).contains(&pct), "one of three brokers done, the second under way: {p}");
        let remain = p["remain_time"].as_u64().expect("remain_time");
        assert!((1..=3).contains(&remain), "at most two brokers' 1.2 s left: {p}");
        let shown = app.show_instance(&inst).await.json();
        assert_eq!(shown["status"], "UPGRADING");
        assert_eq!(app.show_upgrade(&inst).await.json()["current_version"], old.as_str(), "changed only at the end");

        app.wait_task_status(&inst, &job, "SUCCESS").await;
        let shown = app.show_instance(&inst).await.json();
        assert_eq!((shown["status"].as_str(), shown["engine_version"].as_str()), (Some("RUNNING"), Some("3.x")));
        let versions = app.show_upgrade(&inst).await.json();
        assert_eq!(versions["current_version"], versions["latest_version"]);
        assert_eq!(versions["current_version"], "3.1.1-h0.cbu.dms.102.r0");
        app.upgrade(&inst, json!({})).await.assert_error(400, "DMS.00400026");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_scheduled_upgrade_fails_when_the_brokers_it_planned_for_changed() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        app.newer_kernel().await;
        let res = app.upgrade(&inst, json!({"is_schedule": true, "execute_at": app.clock.now_ms() + 60_000})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let scheduled = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();
        let grow = app.resize(&inst, json!({"oper_type": "horizontal", "new_broker_num": 4})).await;
        assert_eq!(grow.status, 200, "{}", grow.text);
        app.wait_task_status(&inst, grow.json()["job_id"].as_str().expect("job_id"), "SUCCESS").await;

        app.clock.advance(62_000);
        app.wait_task_status(&inst, &scheduled, "FAILED").await;
        let shown = app.show_instance(&inst).await.json();
        assert_eq!((shown["status"].as_str(), shown["broker_num"].as_u64()), (Some("RUNNING"), Some(4)));
        assert_eq!(app.show_upgrade(&inst).await.json()["current_version"], LATEST_BUILT_IN_27);
        // Upgraded afresh, it rolls over the four brokers.
        let res = app.upgrade(&inst, json!({})).await;
        let job = res.json()["job_id"].as_str().expect("job_id").to_owned();
        let p = app.wait_task_status(&inst, &job, "SUCCESS").await;
        assert_eq!(p["status"], "SUCCESS");
        let steps = app.progress(&inst, &job).await.json()["step_list"].as_array().map(Vec::len);
        assert_eq!(steps, Some(6));
    }
}

per_engine! {
    #[tokio::test]
    async fn the_kernels_command_adds_a_build_once_and_lists_them() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let cli = |args: &[&str]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_kafka-tasks"))
                .args(args)
                .args(["--database", &app.db.url])
                .output()
                .expect("the binary runs")
        };
        let build = "2.7.1-h0.cbu.dms.200.r0";
        let out = cli(&["kernels", "add", "--engine-version", "2.7", "--build", build]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(app.show_upgrade(&inst).await.json()["latest_version"], build);

        let again = cli(&["kernels", "add", "--engine-version", "2.7", "--build", build]);
        assert!(!again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("already"));
        for (version, bad) in [("2.7", "has space"), ("2.7", ""), ("9.9", "x1")] {
            let out = cli(&["kernels", "add", "--engine-version", version, "--build", bad]);
            assert!(!out.status.success(), "{version} {bad:?}");
        }
        let out = cli(&["kernels", "list"]);
        assert!(out.status.success());
        let lines: Vec<Value> =
            String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
        let v27 = lines.iter().find(|l| l["engine_version"] == "2.7").expect("2.7 listed");
        assert_eq!(v27["latest"], build);
        assert_eq!(v27["builds"][0], "2.7.1-h0.cbu.dms.100.r0");
        // The operator's change is audited.
        let events = app.db.storage().await.audit.list_audit(None, None, 10_000).await.expect("audit");
        assert!(events.iter().any(|e| e.action == "kafka:kernels:add" && e.target == build && e.status == 201));
    }
}

// --- the second paths ---

fn create_body(name: &str) -> Value {
    json!({"name": name, "engine_version": "2.7", "broker_num": 3, "storage_space": 300, "product_id": "c6.2u4g.cluster"})
}

per_engine! {
    #[tokio::test]
    async fn create_post_paid_kafka_instance_is_create_by_engine_on_its_own_path() {
        let app = TestApp::spawn().await;
        let res = app.create_post_paid(create_body("post-paid")).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let inst = res.json()["instance_id"].as_str().expect("instance_id").to_owned();
        let shown = app.wait_instance_status(&inst, "RUNNING").await;
        assert_eq!(shown["name"], "post-paid");
        let events = audit_of(&app, res.request_id.as_deref().expect("request id")).await;
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].action.as_str(), events[0].status), ("dms:instance:create", 200));

        // The same rules as the sibling: validation, roles, projects.
        app.create_post_paid(json!({"name": "x"})).await.assert_error(400, "DMS.00400062");
        app.create_post_paid(json!({"engine": "rabbitmq", "name": "kafka-e", "engine_version": "2.7"}))
            .await
            .assert_error(400, "DMS.00400062");
        let operator = app.credential(PROJECT, "otto", Role::Operator).await;
        let path = format!("/v2/{PROJECT}/kafka/instances");
        let body = Some(create_body("by-otto").to_string());
        app.request_as(&operator, Method::POST, &path, body.clone()).await.assert_error(403, "DMS.00403003");
        let other = app.credential(OTHER_PROJECT, "bob", Role::Admin).await;
        app.request_as(&other, Method::POST, &path, body).await.assert_error(403, "APIGW.0302");
        // GET on it is a method the path does not serve.
        app.get(&path).await.assert_error(405, "DMS.00405001");
        assert_eq!(app.get(&format!("/v2/{PROJECT}/instances")).await.json()["instance_num"], 1);
    }
}

per_engine! {
    #[tokio::test]
    async fn the_documented_reassign_path_serves_every_mode() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let one = json!([{"topic": "t1", "brokers": [0, 1]}]);

        let est = app.reassign_documented(&inst, json!({"reassignments": one, "time_estimate": true})).await;
        assert_eq!(est.status, 200, "{}", est.text);
        let old_path = app.reassign(&inst, json!({"reassignments": one, "time_estimate": true})).await;
        assert_eq!(est.json(), old_path.json());
        assert_eq!(est.json()["reassignment_time"], 37);

        let res = app.reassign_documented(&inst, json!({"reassignments": one})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let job = res.json()["job_id"].as_str().expect("job_id").to_owned();
        let task = app.wait_task_status(&inst, &job, "SUCCESS").await;
        assert_eq!(task["name"], "kafkaPartitionReassign");
        // No throttle given, none recorded: params carry no null.
        assert_eq!(task["params"], r#"{"reassignments":[{"brokers":[0,1],"topic":"t1"}]}"#);

        let res = app
            .reassign_documented(
                &inst,
                json!({"reassignments": one, "throttle": 1024, "is_schedule": true, "execute_at": in_ms(3_600_000)}),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let sid = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();
        let job = &app.list_scheduled(&inst, "").await.json()["jobs"][0];
        assert_eq!(job["id"], sid.as_str());
        assert!(job["params"].as_str().is_some_and(|p| p.contains(r#""throttle":1024"#)), "{job}");
        let events = audit_of(&app, res.request_id.as_deref().expect("request id")).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, "dms:instance:modify");

        // Errors and isolation as on the sibling path.
        app.reassign_documented(&inst, json!({"reassignments": [{"topic": "t", "brokers": [7]}]}))
            .await
            .assert_error(400, "DMS.00400062");
        let reader = app.credential(PROJECT, "rita", Role::Readonly).await;
        let path = format!("/v2/kafka/{PROJECT}/instances/{inst}/reassign");
        let body = Some(json!({"reassignments": one}).to_string());
        app.request_as(&reader, Method::POST, &path, body.clone()).await.assert_error(403, "DMS.00403003");
        let other = app.credential(OTHER_PROJECT, "bob", Role::Admin).await;
        app.request_as(&other, Method::POST, &path, body.clone()).await.assert_error(403, "APIGW.0302");
        let theirs = format!("/v2/kafka/{OTHER_PROJECT}/instances/{inst}/reassign");
        app.request_as(&other, Method::POST, &theirs, body).await.assert_error(404, "DMS.00404022");
    }
}

per_engine! {
    #[tokio::test]
    async fn every_earlier_path_still_reaches_its_handler() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        app.newer_kernel().await;
        let i = app.instance_path(&inst);
        let p = PROJECT;
        let ok = |res: crate::helpers::Response, what: &str| {
            assert!(res.status.is_success(), "{what}: {} {}", res.status, res.text);
        };
        ok(app.get(&format!("/v2/{p}/instances")).await, "ListInstances");
        ok(app.get(&i).await, "ShowInstance");
        ok(app.get(&format!("{i}/configs")).await, "ShowInstanceConfigs");
        ok(app.get(&format!("{i}/tasks")).await, "ListBackgroundTasks");
        ok(app.get(&format!("{i}/scheduled-tasks")).await, "ListScheduledTasks");
        let grow = json!({"oper_type": "storage", "new_storage_space": 600});
        let res = app.post(&format!("/v2/{p}/kafka/instances/{inst}/extend"), grow).await;
        app.wait_task_status(&inst, res.json()["job_id"].as_str().expect("job"), "SUCCESS").await;
        let grow = json!({"oper_type": "storage", "new_storage_space": 900});
        let res = app.post(&format!("/v2/kafka/{p}/instances/{inst}/extend"), grow).await;
        app.wait_task_status(&inst, res.json()["job_id"].as_str().expect("job"), "SUCCESS").await;
        let res = app.reassign(&inst, json!({"reassignments": [{"topic": "t", "brokers": [0]}]})).await;
        app.wait_task_status(&inst, res.json()["job_id"].as_str().expect("job"), "SUCCESS").await;
        let res = app.upgrade(&inst, json!({})).await;
        app.wait_task_status(&inst, res.json()["job_id"].as_str().expect("job"), "SUCCESS").await;
        let res = app.modify_configs(&inst, json!([{"name": "log.retention.hours", "value": "24"}])).await;
        app.wait_task_status(&inst, res.json()["job_id"].as_str().expect("job"), "SUCCESS").await;
        let task = app.finished_task(&inst, true).await;
        ok(app.progress(&inst, &task).await, "ShowBackgroundTaskProgress");
        ok(app.delete_task(&inst, &task).await, "DeleteBackgroundTask");
        ok(app.create_instance_with(create_body("by-engine")).await, "CreateInstanceByEngine");
        let batch = json!({"action": "restart", "instances": [inst]});
        ok(app.post(&format!("/v2/{p}/instances/action"), batch).await, "BatchRestartOrDeleteInstances");
        app.wait_instance_status(&inst, "RUNNING").await;
        ok(app.delete(&i).await, "DeleteInstance");
    }
}

// --- UpdateInstance ---

per_engine! {
    #[tokio::test]
    async fn update_instance_changes_the_fields_shown_and_is_audited() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let shown = app.show_instance(&inst).await.json();
        assert_eq!(
            (shown["maintain_begin"].as_str(), shown["maintain_end"].as_str()),
            (Some("02:00:00"), Some("06:00:00"))
        );
        let body = json!({
            "name": "renamed-1", "description": "orders cluster", "maintain_begin": "22:00:00", "maintain_end": "02:00:00",
            "security_group_id": "sg-2", "retention_policy": "time_base", "enterprise_project_id": "ep-7",
            "unknown_field": "ignored"
        });
        let res = app.update_instance(&inst, body).await;
        assert_eq!(res.status, 204, "{}", res.text);
        assert_eq!(res.text, "");
        let shown = app.show_instance(&inst).await.json();
        for (k, v) in [
            ("name", "renamed-1"),
            ("description", "orders cluster"),
            ("maintain_begin", "22:00:00"),
            ("maintain_end", "02:00:00"),
            ("security_group_id", "sg-2"),
            ("retention_policy", "time_base"),
            ("enterprise_project_id", "ep-7"),
        ] {
            assert_eq!(shown[k], v, "{k}: {shown}");
        }
        assert!(shown.get("unknown_field").is_none());
        assert_eq!(shown["engine_version"], "2.7");
        let listed = app.get(&format!("/v2/{PROJECT}/instances")).await.json();
        assert_eq!(listed["instances"][0]["name"], "renamed-1");
        assert_eq!(listed["instances"][0]["description"], "orders cluster");

        let events = audit_of(&app, res.request_id.as_deref().expect("request id")).await;
        assert_eq!(events.len(), 1, "one event, written with the change");
        assert_eq!(
            (events[0].action.as_str(), events[0].target.as_str(), events[0].status),
            ("dms:instance:modify", inst.as_str(), 204)
        );

        // Terraform's form: an empty description clears it; unchanged fields are sent again.
        let res = app.update_instance(&inst, json!({"description": "", "security_group_id": "sg-2"})).await;
        assert_eq!(res.status, 204, "{}", res.text);
        assert!(app.show_instance(&inst).await.json().get("description").is_none());
    }
}

per_engine! {
    #[tokio::test]
    async fn update_instance_refuses_each_bad_field_by_name_and_changes_nothing() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let before = app.show_instance(&inst).await.json();
        let cases = [
            (json!({"name": "abc"}), "name"),
            (json!({"name": "1abcd"}), "name"),
            (json!({"name": "has space"}), "name"),
            (json!({"name": "a".repeat(65)}), "name"),
            (json!({"name": 42}), "name"),
            (json!({"description": "d".repeat(1025)}), "description"),
            (json!({"maintain_begin": "02:00:00"}), "maintain_end"),
            (json!({"maintain_end": "06:00:00"}), "maintain_begin"),
            (json!({"maintain_begin": "03:00:00", "maintain_end": "07:00:00"}), "maintain_begin"),
            (json!({"maintain_begin": "02:00:00", "maintain_end": "07:00:00"}), "maintain_end"),
            (json!({"maintain_begin": "2am", "maintain_end": "06:00:00"}), "maintain_begin"),
            (json!({"security_group_id": ""}), "security_group_id"),
            (json!({"security_group_id": 1}), "security_group_id"),
            (json!({"retention_policy": "keep_everything"}), "retention_policy"),
            (json!({"enterprise_project_id": ""}), "enterprise_project_id"),
            (json!({"name": "good-name", "retention_policy": "x"}), "retention_policy"),
        ];
        for (body, field) in cases {
            let res = app.update_instance(&inst, body.clone()).await;
            res.assert_error(400, "DMS.00400062");
            assert!(res.json()["error_msg"].as_str().is_some_and(|m| m.contains(field)), "{body} → {}", res.text);
        }
        for empty in [json!({}), json!({"name": null}), json!({"nothing": 1})] {
            app.update_instance(&inst, empty).await.assert_error(400, "DMS.00400800");
        }
        app.request(Method::PUT, &app.instance_path(&inst), None).await.assert_error(400, "DMS.00400800");
        assert_eq!(app.show_instance(&inst).await.json(), before);
    }
}

per_engine! {
    #[tokio::test]
    async fn update_instance_refuses_broker_settings_while_an_operation_runs() {
        // The restart's rolling_restart step lasts 60 s × 0.03 = 1.8 s.
        let app = TestApp::spawn_with(&["--time-scale", "0.03"]).await;
        let inst = app.create_instance().await;
        let res =
            app.update_instance(&inst, json!({"security_group_id": "sg-1", "retention_policy": "produce_reject"})).await;
        assert_eq!(res.status, 204, "{}", res.text);
        let restart = app.restart_instance(&inst).await;
        app.wait_step_running(&inst, &restart, 1).await;

        for body in [json!({"security_group_id": "sg-2"}), json!({"retention_policy": "time_base"})] {
            let res = app.update_instance(&inst, body).await;
            res.assert_error(400, "DMS.00400026");
            let events = audit_of(&app, res.request_id.as_deref().expect("request id")).await;
            assert_eq!(events.len(), 1, "a refusal is audited too");
            assert_eq!(events[0].status, 400);
        }
        // Descriptive fields change at any time, and resending the current values is no change.
        let res = app
            .update_instance(
                &inst,
                json!({"name": "busy-rename", "security_group_id": "sg-1", "retention_policy": "produce_reject"}),
            )
            .await;
        assert_eq!(res.status, 204, "{}", res.text);
        let shown = app.show_instance(&inst).await.json();
        assert_eq!((shown["name"].as_str(), shown["security_group_id"].as_str()), (Some("busy-rename"), Some("sg-1")));
        assert_eq!(shown["status"], "RESTARTING");

        app.wait_task_status(&inst, &restart, "SUCCESS").await;
        let res = app.update_instance(&inst, json!({"security_group_id": "sg-2"})).await;
        assert_eq!(res.status, 204, "{}", res.text);
        assert_eq!(app.show_instance(&inst).await.json()["security_group_id"], "sg-2");
    }
}

per_engine! {
    #[tokio::test]
    async fn update_instance_needs_an_operator_of_the_project() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let path = app.instance_path(&inst);
        let body = Some(json!({"name": "by-rita"}).to_string());
        let reader = app.credential(PROJECT, "rita", Role::Readonly).await;
        let res = app.request_as(&reader, Method::PUT, &path, body.clone()).await;
        res.assert_error(403, "DMS.00403003");
        let events = audit_of(&app, res.request_id.as_deref().expect("request id")).await;
        assert_eq!((events.len(), events[0].status), (1, 403));
        let operator = app.credential(PROJECT, "otto", Role::Operator).await;
        assert_eq!(
            app.request_as(&operator, Method::PUT, &path, Some(json!({"name": "by-otto"}).to_string())).await.status,
            204
        );
        let other = app.credential(OTHER_PROJECT, "bob", Role::Admin).await;
        app.request_as(&other, Method::PUT, &path, body.clone()).await.assert_error(403, "APIGW.0302");
        let theirs = format!("/v2/{OTHER_PROJECT}/instances/{inst}");
        app.request_as(&other, Method::PUT, &theirs, body).await.assert_error(404, "DMS.00404022");
        assert_eq!(app.show_instance(&inst).await.json()["name"], "by-otto");
    }
}

// --- status=null ---

per_engine! {
    #[tokio::test]
    async fn status_null_makes_a_cancelled_task_wait_again_while_its_time_is_ahead() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let body =
            |at: i64| json!({"reassignments": [{"topic": "t", "brokers": [0]}], "is_schedule": true, "execute_at": at});

        // Ahead: cancelled, then waiting again, then it runs at its time.
        // Times on the server's clock, which the engine reads too: moved, not slept through.
        let at = |ms: i64| app.clock.now_ms() + ms;
        let compact_at = |ms: i64| {
            let when = chrono::DateTime::from_timestamp_millis(at(ms)).expect("representable time");
            when.format("%Y%m%d%H%M%S").to_string()
        };
        let res = app.reassign(&inst, body(at(3_600_000))).await;
        let id = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();
        assert_eq!(app.update_scheduled(&inst, &id, "?status=CANCELLED").await.status, 204);
        let res = app.update_scheduled(&inst, &id, "?status=null").await;
        assert_eq!(res.status, 204, "{}", res.text);
        assert_eq!(app.list_scheduled(&inst, "").await.json()["jobs"][0]["status"], "CREATED");
        // Null on a waiting task leaves it waiting; with a time it moves it.
        assert_eq!(app.update_scheduled(&inst, &id, "?status=null").await.status, 204);
        let when = compact_at(60_000);
        assert_eq!(app.update_scheduled(&inst, &id, &format!("?status=null&execute_at={when}")).await.status, 204);
        app.clock.advance(62_000);
        app.wait_task_status(&inst, &id, "SUCCESS").await;
        // It ran: nothing brings it back.
        app.update_scheduled(&inst, &id, "?status=null").await.assert_error(400, "DMS.00400026");

        // Cancelled and its time passed: it stays cancelled unless given a new time.
        let res = app.reassign(&inst, body(at(60_000))).await;
        let id = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();
        assert_eq!(app.update_scheduled(&inst, &id, "?status=CANCELLED").await.status, 204);
        app.clock.advance(62_000);
        app.update_scheduled(&inst, &id, "?status=null").await.assert_error(400, "DMS.00400026");
        assert_eq!(app.list_scheduled(&inst, "").await.json()["jobs"][0]["status"], "CANCELLED");
        let res = app.update_scheduled(&inst, &id, &format!("?status=null&execute_at={}", compact_at(3_600_000))).await;
        assert_eq!(res.status, 204, "{}", res.text);
        assert_eq!(app.list_scheduled(&inst, "").await.json()["jobs"][0]["status"], "CREATED");
        // Other status words stay refused by name.
        app.update_scheduled(&inst, &id, "?status=NULL").await.assert_error(400, "DMS.00400062");
    }
}
