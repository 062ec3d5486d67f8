//! Attacks on test control (`serve --test-control`) that its own tests (`tests/api/control.rs`)
//! do not make: the clock moved to the last instant it accepts, past it and to `i64::MAX`, then
//! every kind of request at that time; and a reset racing ordinary requests. None may answer a
//! 5xx or stop the server.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{PROJECT, TestApp};

const ON: &[&str] = &["--time-scale", "0", "--test-control"];

fn control(what: &str) -> String {
    format!("/v2/{PROJECT}/test-control/{what}")
}

async fn restart(app: &TestApp, inst: &str) -> crate::helpers::Response {
    app.post(&format!("/v2/{PROJECT}/instances/action"), json!({"action": "restart", "instances": [inst]})).await
}

#[track_caller]
fn assert_no_5xx(what: &str, res: &crate::helpers::Response) {
    assert!(res.status.as_u16() < 500, "{what}: {} {}", res.status, res.text);
}

per_engine! {
    #[tokio::test]
    async fn the_clock_at_the_end_of_year_9999_breaks_no_request() {
        let app = TestApp::spawn_with(ON).await;
        let inst = app.create_instance().await;
        app.wait_instance_status(&inst, "RUNNING").await;
        for bad in [
            json!({ "action": "set", "to": "+275760-09-13T00:00:00Z" }),
            json!({ "action": "set", "to": "10000-01-01T00:00:00Z" }),
            json!({ "action": "advance", "by": i64::MAX }),
            json!({ "action": "advance", "by": u64::MAX }),
            json!({ "action": "advance", "by": 1e300 }),
            json!({ "action": "advance", "by": "9223372036854775807" }),
            json!({ "action": "advance", "by": "106751991167d" }),
        ] {
            let res = app.post(&control("clock"), bad.clone()).await;
            res.assert_error(400, "DMS.00400800");
        }
        let res = app.post(&control("clock"), json!({ "action": "set", "to": "9999-12-31T23:59:59Z" })).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let res = app.post(&control("clock"), json!({ "action": "advance", "by": "1s" })).await;
        res.assert_error(400, "DMS.00400800");

        // Everything an ordinary client does, at the last second the clock may show: tokens that
        // would expire after year 9999, new tasks, the event log, the audit, the lists.
        let token = json!({"auth": {"identity": {"methods": ["hw_ak_sk"]}, "scope": {"project": {"id": PROJECT}}}});
        let res = app.request(Method::POST, "/v3/auth/tokens", Some(token.to_string())).await;
        assert_no_5xx("token", &res);
        let created = app.create_instance_with(json!({"name": "late", "engine": "kafka"})).await;
        assert_no_5xx("create instance", &created);
        let res = restart(&app, &inst).await;
        assert_no_5xx("restart", &res);
        let ip = app.instance_path(&inst);
        for path in [
            format!("{ip}/tasks"),
            format!("{ip}/tasks?start_time=20000101000000&end_time=99991231235959"),
            format!("/v2/{PROJECT}/instances"),
            ip.clone(),
            format!("{ip}/scheduled-tasks"),
            control("clock"),
            control("faults"),
        ] {
            assert_no_5xx(&path, &app.get(&path).await);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let listed = app.list_tasks(&inst, "").await;
        assert_eq!(listed.status, 200, "{}", listed.text);
        for t in listed.json()["tasks"].as_array().into_iter().flatten() {
            let id = t["id"].as_str().unwrap_or_default();
            assert_no_5xx("show task", &app.show_task(&inst, id).await);
            assert_no_5xx("progress", &app.progress(&inst, id).await);
        }
        assert_eq!(app.get("/healthz").await.status, 200, "still serving");
    }
}

per_engine! {
    /// A reset while requests of every kind are in flight: each answers without a 5xx (or is
    /// refused cleanly), and afterwards the database is clean and usable.
    #[tokio::test]
    async fn a_reset_racing_requests_leaves_no_5xx_and_a_usable_database() {
        let app = std::sync::Arc::new(TestApp::spawn_with(ON).await);
        race_requests_with(&app, "reset").await;
        usable_after(&app).await;
    }
}

per_engine! {
    /// The same race with a snapshot's restore, which empties and refills the same tables.
    #[tokio::test]
    async fn a_restore_racing_requests_leaves_no_5xx_and_a_usable_database() {
        let app = std::sync::Arc::new(TestApp::spawn_with(ON).await);
        let res = app.post(&control("snapshots"), json!({"name": "before-race"})).await;
        assert!(res.status.is_success(), "{} {}", res.status, res.text);
        race_requests_with(&app, "snapshots/before-race/restore").await;
        usable_after(&app).await;
    }
}

/// Runs 24 requests of four kinds on a running instance, with the test-control call `path`
/// started in the middle of them; none may answer 5xx.
async fn race_requests_with(app: &std::sync::Arc<TestApp>, path: &'static str) {
    let inst = app.create_instance().await;
    app.wait_instance_status(&inst, "RUNNING").await;
    let mut racing = Vec::new();
    for i in 0..24 {
        let client = app.clone();
        let inst = inst.clone();
        racing.push(tokio::spawn(async move {
            let res = match i % 4 {
                0 => client.create_instance_with(json!({"name": format!("race-{i}"), "engine": "kafka"})).await,
                1 => restart(&client, &inst).await,
                2 => client.list_tasks(&inst, "").await,
                _ => client.modify_configs(&inst, json!([{"name": "log.retention.hours", "value": "24"}])).await,
            };
            (i, res.status, res.text)
        }));
        if i == 12 {
            let client = app.clone();
            racing.push(tokio::spawn(async move {
                let res = client.post(&control(path), json!({})).await;
                (-1, res.status, res.text)
            }));
        }
    }
    for r in racing {
        let (i, status, text) = r.await.expect("request task");
        assert!(status.as_u16() < 500, "request {i}: {status} {text}");
    }
}

/// The database takes new work after the race.
async fn usable_after(app: &TestApp) {
    let again = app.create_instance().await;
    app.wait_instance_status(&again, "RUNNING").await;
    let task = app.restart_instance(&again).await;
    app.wait_task_status(&again, &task, "SUCCESS").await;
}
