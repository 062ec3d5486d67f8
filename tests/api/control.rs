//! Test control (`serve --test-control`): fault rules, the movable clock, the reset. Each route
//! with good and bad input; what a rule does seen through the ordinary API (the task, the
//! instance, the executor view, the audit, the metrics); and a server without the flag that
//! has none of it, not even when its database holds rules.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PROJECT, TestApp};

const ON: &[&str] = &["--time-scale", "0", "--test-control"];

fn faults() -> String {
    format!("/v2/{PROJECT}/test-control/faults")
}

fn clock() -> String {
    format!("/v2/{PROJECT}/test-control/clock")
}

fn reset() -> String {
    format!("/v2/{PROJECT}/test-control/reset")
}

async fn set_rules(app: &TestApp, rules: Value) -> Value {
    let res = app.post(&faults(), json!({ "rules": rules })).await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.json()
}

async fn list_instances(app: &TestApp) -> crate::helpers::Response {
    app.get(&format!("/v2/{PROJECT}/instances")).await
}

per_engine! {
    #[tokio::test]
    async fn without_the_flag_every_control_route_is_404_and_undocumented() {
        let app = TestApp::spawn().await;
        for path in [faults(), clock(), reset()] {
            for method in [Method::GET, Method::POST, Method::PATCH, Method::DELETE, Method::PUT] {
                let res = app.request(method.clone(), &path, Some("{}".into())).await;
                res.assert_error(404, "DMS.00404001");
            }
        }
        let doc = app.send(Method::GET, "/openapi.json", None, &[]).await.text;
        assert!(!doc.contains("test-control"), "the document names no control route");
        let on = TestApp::spawn_with(ON).await;
        let doc: Value = on.send(Method::GET, "/openapi.json", None, &[]).await.json();
        for path in ["/v2/{project_id}/test-control/faults", "/v2/{project_id}/test-control/clock"] {
            assert!(doc["paths"][path].is_object(), "{path} documented with --test-control");
        }
        assert_eq!(doc["paths"]["/v2/{project_id}/test-control/faults"]["patch"]["operationId"], "AppendTestControlFaults");
        // Documented and served: without credentials, the gateway's 401 (not the router's 404).
        for (method, path) in [(Method::GET, faults()), (Method::PATCH, faults()), (Method::POST, clock())] {
            on.send(method, &path, None, &[]).await.assert_error(401, "APIGW.0301");
        }
    }
}

per_engine! {
    #[tokio::test]
    async fn a_rule_stored_by_a_control_server_is_never_applied_by_one_without_the_flag() {
        let app = TestApp::spawn_with(ON).await;
        set_rules(&app, json!([{ "operation": "ListInstances", "error": { "status_code": 503 } }])).await;
        list_instances(&app).await.assert_error(503, "DMS.00503001");
        let app = app.restart(&["--time-scale", "0"]).await;
        assert_eq!(list_instances(&app).await.status, 200, "the stored rule is not read without the flag");
        app.request(Method::GET, &faults(), None).await.assert_error(404, "DMS.00404001");
        // It was stored all along: the flag brings it back.
        let app = app.restart(ON).await;
        list_instances(&app).await.assert_error(503, "DMS.00503001");
    }
}

per_engine! {
    #[tokio::test]
    async fn an_injected_429_looks_like_the_gateway_s_retires_after_its_times_and_is_counted() {
        let app = TestApp::spawn_with(ON).await;
        set_rules(
            &app,
            json!([{ "operation": "ListInstances", "error": { "status_code": 429, "retry_after": 3 }, "times": 2 }]),
        )
        .await;
        for _ in 0..2 {
            let res = list_instances(&app).await;
            res.assert_error(429, "APIGW.0308");
            assert_eq!(res.json()["request_id"].as_str(), res.request_id.as_deref(), "APIGW errors carry the request id");
        }
        let raw = kafka_tasks::tls::http_client()
            .get(format!("{}/v2/{PROJECT}/instances", app.base))
            .headers(header_map(&app.signed_headers(
                &app.admin,
                &Method::GET,
                &format!("/v2/{PROJECT}/instances"),
                "",
                app.clock.now_ms(),
            )))
            .send()
            .await
            .expect("sent");
        assert_eq!(raw.status(), 200, "retired after two");
        // Other operations were never touched.
        assert_eq!(app.get(&format!("/v2/{PROJECT}/instances/{}", app.create_instance().await)).await.status, 200);
        let rules = app.get(&faults()).await.json();
        assert_eq!(rules["rules"][0]["fired"], 2, "{rules}");
        assert_eq!(rules["rules"][0]["retired"], true, "{rules}");
        let events = app.db.storage().await.audit.list_audit(None, None, 10_000).await.expect("audit");
        let injected: Vec<_> = events.iter().filter(|e| e.action == "kafka-tasks:testControl:faultInjected").collect();
        assert_eq!(injected.len(), 2, "{events:?}");
        assert_eq!(injected[0].status, 429);
        assert_eq!(injected[0].detail.as_ref().map(|d| d["operation"].clone()), Some(json!("ListInstances")));
        let metrics = app.send(Method::GET, "/metrics", None, &[]).await.text;
        assert!(
            metrics.lines().any(|l| l.starts_with("kafka_tasks_control_faults_injected_total{effect=\"error\"}")),
            "{metrics}"
        );
    }
}

per_engine! {
    #[tokio::test]
    async fn retry_after_is_sent_and_the_error_matches_only_its_instance() {
        let app = TestApp::spawn_with(ON).await;
        let (a, b) = (app.create_instance().await, app.create_instance().await);
        set_rules(&app, json!([{ "instance_id": a, "error": { "status_code": 429, "retry_after": 7 } }])).await;
        let path = format!("/v2/{PROJECT}/instances/{a}");
        let res = kafka_tasks::tls::http_client()
            .get(format!("{}{path}", app.base))
            .headers(header_map(&app.signed_headers(&app.admin, &Method::GET, &path, "", app.clock.now_ms())))
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("7"));
        assert_eq!(app.show_instance(&b).await.status, 200);
    }
}

fn header_map(headers: &[(String, String)]) -> reqwest::header::HeaderMap {
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        map.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            reqwest::header::HeaderValue::from_str(v).expect("value"),
        );
    }
    map
}

per_engine! {
    #[tokio::test]
    async fn a_latency_rule_really_delays_the_answer() {
        let app = TestApp::spawn_with(ON).await;
        set_rules(&app, json!([{ "operation": "ListInstances", "latency_ms": 400 }])).await;
        let started = Instant::now();
        assert_eq!(list_instances(&app).await.status, 200);
        assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
    }
}

per_engine! {
    #[tokio::test]
    async fn the_same_seed_gives_the_same_faults_twice() {
        let app = TestApp::spawn_with(ON).await;
        let rule =
            json!([{ "operation": "ListInstances", "error": { "status_code": 500 }, "probability": 0.5, "seed": 42 }]);
        let mut runs = Vec::new();
        for _ in 0..2 {
            set_rules(&app, rule.clone()).await;
            let mut statuses = Vec::new();
            for _ in 0..24 {
                statuses.push(list_instances(&app).await.status.as_u16());
            }
            runs.push(statuses);
        }
        assert_eq!(runs[0], runs[1]);
        assert!(runs[0].contains(&500) && runs[0].contains(&200), "a mix: {:?}", runs[0]);
    }
}

per_engine! {
    #[tokio::test]
    async fn an_injected_step_failure_ends_the_task_as_a_real_failure_does() {
        let app = TestApp::spawn_with(ON).await;
        let inst = app.create_instance().await;
        app.wait_instance_status(&inst, "RUNNING").await;
        set_rules(
            &app,
            json!([{ "task_name": "restartInstance", "step": "health_check", "fail_step": { "reason": "broker 2 did not come back" } }]),
        )
        .await;
        let task = app.restart_instance(&inst).await;
        let t = app.wait_task_status(&inst, &task, "FAILED").await;
        assert_eq!(t["name"], "restartInstance", "{t}");
        assert_eq!(app.show_instance(&inst).await.json()["status"], "RUNNING", "status restored");
        let p = app.progress(&inst, &task).await.json();
        let failed: Vec<_> = p["step_list"].as_array().expect("steps").iter().filter(|s| s["statue"] == "FAILED").collect();
        assert_eq!(failed.len(), 1, "{p}");
        let run = app.get(&format!("/v2/{PROJECT}/instances/{inst}/tasks/{task}/executor")).await;
        assert_eq!(run.status, 200, "{}", run.text);
        assert_eq!(run.json()["reason"], "broker 2 did not come back", "{}", run.text);
        let events = app.db.storage().await.audit.list_audit(None, None, 10_000).await.expect("audit");
        assert!(
            events.iter().any(|e| e.action == "kafka-tasks:testControl:faultInjected" && e.target == task),
            "{events:?}"
        );
        let metrics = app.send(Method::GET, "/metrics", None, &[]).await.text;
        assert!(metrics.contains("effect=\"fail_step\""), "{metrics}");
        assert!(
            metrics.lines().any(|l| l.contains("kafka_tasks_task_outcomes_total") && l.contains("FAILED")),
            "{metrics}"
        );
        // The instance takes the next operation as after any failure.
        let again = app.restart_instance(&inst).await;
        app.wait_task_status(&inst, &again, "FAILED").await;
        app.delete(&faults()).await;
        let third = app.restart_instance(&inst).await;
        app.wait_task_status(&inst, &third, "SUCCESS").await;
    }
}

per_engine! {
    #[tokio::test]
    async fn a_stretched_step_ends_when_the_clock_is_advanced_past_it() {
        let app = TestApp::spawn_with(ON).await;
        let inst = app.create_instance().await;
        app.wait_instance_status(&inst, "RUNNING").await;
        set_rules(&app, json!([{ "task_name": "restartInstance", "step_duration_ms": 7_200_000, "times": 1 }])).await;
        let task = app.restart_instance(&inst).await;
        app.wait_step_running(&inst, &task, 0).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(app.show_task(&inst, &task).await.json()["tasks"][0]["status"], "EXECUTING");
        let res = app.post(&clock(), json!({ "action": "advance", "by": "2h" })).await;
        assert_eq!(res.status, 200, "{}", res.text);
        app.wait_task_status(&inst, &task, "SUCCESS").await;
    }
}

per_engine! {
    #[tokio::test]
    async fn a_scheduled_upgrade_fires_after_the_clock_is_advanced() {
        let app = TestApp::spawn_with(ON).await;
        let inst = app.create_instance().await;
        app.wait_instance_status(&inst, "RUNNING").await;
        let newer = app.newer_kernel().await;
        let when = app.clock.now_ms() + 3 * 3_600_000;
        let res = app.upgrade(&inst, json!({ "is_schedule": true, "execute_at": when })).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let id = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(app.list_scheduled(&inst, "").await.json()["jobs"][0]["status"], "CREATED");
        app.post(&clock(), json!({ "action": "advance", "by": "3h" })).await;
        app.wait_task_status(&inst, &id, "SUCCESS").await;
        assert_eq!(app.show_upgrade(&inst).await.json()["current_version"], newer.as_str());
    }
}

per_engine! {
    #[tokio::test]
    async fn the_clock_moves_forward_freezes_resumes_and_never_goes_back() {
        let app = TestApp::spawn_with(ON).await;
        let before = app.clock.now_ms();
        let res = app.post(&clock(), json!({ "action": "set", "to": "2099-01-01T02:00:00Z" })).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert!(res.json()["now"].as_str().is_some_and(|n| n.starts_with("2099-01-01T02:00")), "{}", res.text);
        // Signed by the wall clock, requests still pass (the SDKs sign with the wall clock).
        app.create_instance().await;
        let events = app.db.storage().await.audit.list_audit(None, None, 10_000).await.expect("audit");
        let created = events.iter().find(|e| e.action == "dms:instance:create").expect("the creation is audited");
        assert!(created.at >= 4_070_916_000_000, "stored at the moved time: {created:?}");

        let res = app.post(&clock(), json!({ "action": "set", "to": "2098-01-01T00:00:00Z" })).await;
        res.assert_error(400, "DMS.00400800");
        assert!(res.json()["error_msg"].as_str().is_some_and(|m| m.contains("never see time go back")), "{}", res.text);
        app.post(&clock(), json!({ "action": "freeze" })).await;
        let frozen = app.get(&clock()).await.json();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(app.get(&clock()).await.json()["now_ms"], frozen["now_ms"]);
        assert_eq!(frozen["frozen"], true);
        let moved = app.post(&clock(), json!({ "action": "advance", "by": 1000 })).await.json();
        assert_eq!(moved["now_ms"].as_i64(), frozen["now_ms"].as_i64().map(|n| n + 1000));
        let resumed = app.post(&clock(), json!({ "action": "resume" })).await.json();
        assert!(resumed["now_ms"].as_i64() >= moved["now_ms"].as_i64(), "{resumed} {moved}");
        assert!(app.clock.now_ms() > before + 70 * 365 * 86_400_000);

        for bad in [
            json!({}),
            json!({ "action": "rewind" }),
            json!({ "action": "advance" }),
            json!({ "action": "advance", "by": "-2h" }),
            json!({ "action": "advance", "by": -5 }),
            json!({ "action": "advance", "by": "2 fortnights" }),
            json!({ "action": "advance", "by": "999999999999d" }),
            json!({ "action": "set", "to": "tomorrow" }),
            json!({ "action": "set", "to": "99999-01-01T00:00:00Z" }),
            json!({ "action": "set", "to": 4_102_444_800_000u64 }),
            json!({ "action": "set" }),
            json!({ "action": "advance", "by": ["1h"] }),
            json!({ "action": "freeze", "by": "1h" }),
        ] {
            let was = app.get(&clock()).await.json()["offset_ms"].clone();
            app.post(&clock(), bad.clone()).await.assert_error(400, "DMS.00400800");
            assert_eq!(app.get(&clock()).await.json()["offset_ms"], was, "{bad} changed nothing");
        }
    }
}

per_engine! {
    #[tokio::test]
    async fn bad_rules_are_refused_in_the_dms_format_and_change_nothing() {
        let app = TestApp::spawn_with(ON).await;
        set_rules(&app, json!([{ "operation": "ListInstances", "latency_ms": 1 }])).await;
        let many: Vec<Value> = (0..101).map(|_| json!({ "latency_ms": 1 })).collect();
        let huge = "x".repeat(5000);
        for bad in [
            json!({ "rules": [{}] }),
            json!({ "rules": [{ "latency_ms": 1, "fail_step": { "reason": "x" } }] }),
            json!({ "rules": [{ "fail_step": { "reason": "x" }, "operation": "ListInstances" }] }),
            json!({ "rules": [{ "error": { "status_code": 200, "error_code": "X" } }] }),
            json!({ "rules": [{ "error": { "status_code": 418 } }] }),
            json!({ "rules": [{ "error": { "status_code": 429, "error_code": "bad code!" } }] }),
            json!({ "rules": [{ "latency_ms": 600_000 }] }),
            json!({ "rules": [{ "latency_ms": 1, "probability": -0.1 }] }),
            json!({ "rules": [{ "latency_ms": 1, "times": 0 }] }),
            json!({ "rules": [{ "latency_ms": 1, "unknown": true }] }),
            json!({ "rules": [{ "fail_step": { "reason": huge } }] }),
            json!({ "rules": [{ "fail_step": { "reason": "a\u{1b}[31mred" } }] }),
            json!({ "rules": [{ "step_duration_factor": 1e9 }] }),
            json!({ "rules": many }),
            json!({ "rules": "all" }),
            json!({ "rule": [] }),
            json!([]),
        ] {
            for method in [Method::POST, Method::PATCH] {
                let res = app.request(method.clone(), &faults(), Some(bad.to_string())).await;
                assert_eq!(res.status, 400, "{method} {bad}: {}", res.text);
                assert!(res.json()["error_code"].as_str().is_some_and(|c| c.starts_with("DMS.004")), "{}", res.text);
            }
        }
        let res = app.request(Method::POST, &faults(), Some("{not json".into())).await;
        res.assert_error(400, "DMS.00400800");
        let rules = app.get(&faults()).await.json();
        assert_eq!(rules["rules"].as_array().map(Vec::len), Some(1), "nothing changed: {rules}");
        // PATCH past the bound is refused whole.
        let ninety_nine: Vec<Value> = (0..99).map(|_| json!({ "latency_ms": 1 })).collect();
        let res = app.request(Method::PATCH, &faults(), Some(json!({ "rules": ninety_nine }).to_string())).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let res = app.request(Method::PATCH, &faults(), Some(json!({ "rules": [{ "latency_ms": 1 }] }).to_string())).await;
        res.assert_error(400, "DMS.00400800");
        assert_eq!(app.get(&faults()).await.json()["rules"].as_array().map(Vec::len), Some(100));
    }
}

per_engine! {
    #[tokio::test]
    async fn delete_removes_the_matching_rules_or_all() {
        let app = TestApp::spawn_with(ON).await;
        let set = set_rules(
            &app,
            json!([
                { "operation": "ListInstances", "latency_ms": 1 },
                { "operation": "ShowInstance", "latency_ms": 1 },
                { "task_name": "restartInstance", "fail_step": { "reason": "r" } },
            ]),
        )
        .await;
        let id = set["rules"][1]["id"].clone();
        let res = app.request(Method::DELETE, &faults(), Some(json!({ "rules": [{ "id": id }] }).to_string())).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.json()["removed"], 1);
        let res = app
            .request(Method::DELETE, &faults(), Some(json!({ "rules": [{ "task_name": "restartInstance" }] }).to_string()))
            .await;
        assert_eq!(res.json()["removed"], 1, "{}", res.text);
        app.request(Method::DELETE, &faults(), Some(json!({ "rules": [{}] }).to_string()))
            .await
            .assert_error(400, "DMS.00400800");
        assert_eq!(app.get(&faults()).await.json()["rules"].as_array().map(Vec::len), Some(1));
        let res = app.delete(&faults()).await;
        assert_eq!(res.json()["removed"], 1, "{}", res.text);
        assert_eq!(app.get(&faults()).await.json()["rules"], json!([]));
    }
}

per_engine! {
    #[tokio::test]
    async fn control_is_for_admins_and_audited() {
        let app = TestApp::spawn_with(ON).await;
        let operator = app.credential(PROJECT, "op", kafka_tasks::domain::Role::Operator).await;
        for (method, path) in [(Method::GET, faults()), (Method::POST, clock()), (Method::POST, reset())] {
            let body = json!({ "action": "advance", "by": "1h" }).to_string();
            app.request_as(&operator, method, &path, Some(body)).await.assert_error(403, "DMS.00403003");
        }
        assert_eq!(app.get(&clock()).await.json()["offset_ms"], 0, "the operator moved nothing");
        app.post(&clock(), json!({ "action": "advance", "by": "1h" })).await;
        let events = app.db.storage().await.audit.list_audit(None, None, 10_000).await.expect("audit");
        let control: Vec<_> = events.iter().filter(|e| e.action == "kafka-tasks:testControl:change").collect();
        assert_eq!(control.iter().filter(|e| e.status == 403).count(), 2, "{control:?}");
        assert_eq!(control.iter().filter(|e| e.status == 200).count(), 1, "{control:?}");
    }
}

per_engine! {
    #[tokio::test]
    async fn reset_leaves_a_clean_database_and_keeps_the_credentials() {
        let app = TestApp::spawn_with(ON).await;
        let other = app.credential(PROJECT, "other", kafka_tasks::domain::Role::Admin).await;
        let inst = app.create_instance().await;
        app.wait_instance_status(&inst, "RUNNING").await;
        app.finished_task(&inst, true).await;
        set_rules(&app, json!([{ "operation": "ShowInstance", "latency_ms": 1 }])).await;
        app.post(&clock(), json!({ "action": "advance", "by": "1h" })).await;
        let offset = app.get(&clock()).await.json()["offset_ms"].clone();

        let res = app.post(&reset(), json!({})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(list_instances(&app).await.json()["instance_num"], 0, "no instance left");
        app.show_instance(&inst).await.assert_error(404, "DMS.00404022");
        assert_eq!(app.get(&faults()).await.json()["rules"], json!([]));
        assert_eq!(app.get(&clock()).await.json()["offset_ms"], offset, "time never goes back");
        assert_eq!(app.request_as(&other, Method::GET, &faults(), None).await.status, 200, "other keys kept");
        // Only the reset's own event is left in the audit.
        let events = app.db.storage().await.audit.list_audit(None, None, 10_000).await.expect("audit");
        assert_eq!(events.len(), 1, "{events:?}");

        for bad in [json!({ "credentials": "yes" }), json!({ "everything": true })] {
            app.post(&reset(), bad).await.assert_error(400, "DMS.00400800");
        }
        let res = app.post(&reset(), json!({ "credentials": true })).await;
        assert_eq!(res.status, 200, "{}", res.text);
        app.request_as(&other, Method::GET, &faults(), None).await.assert_error(401, "APIGW.0301");
        assert_eq!(app.get(&faults()).await.status, 200, "the caller's own key is kept");
    }
}

per_engine! {
    /// The reset swaps the whole SQLite database for a fresh one: the event log's ids still never
    /// go back, a stream resuming from before the reset is told that events were missed, and the
    /// store (its readers, its writer, the engine) goes on working on the fresh database.
    #[tokio::test]
    async fn after_a_reset_event_ids_go_on_and_an_older_cursor_is_told_it_missed_events() {
        use crate::events::{open_as, positions};
        let app = TestApp::spawn_with(ON).await;
        let inst = app.create_instance().await;
        app.wait_instance_status(&inst, "RUNNING").await;
        let path = format!("/v2/{PROJECT}/tasks/events");
        let mut before =
            open_as(&app, &app.admin, &format!("{path}?after=0"), &[]).await.unwrap_or_else(|r| panic!("{}", r.text));
        let old = before.until(|e| e.event == "task.finished").await;
        let last = old.last().and_then(|e| e.id.clone()).expect("an id");
        drop(before);

        let res = app.post(&reset(), json!({})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let again = app.create_instance().await;
        app.wait_instance_status(&again, "RUNNING").await;
        // From the newest event before the reset nothing was lost: the new events follow.
        let mut resumed =
            open_as(&app, &app.admin, &path, &[("Last-Event-ID", &last)]).await.unwrap_or_else(|r| panic!("{}", r.text));
        let new = resumed.until(|e| e.event == "task.finished").await;
        assert!(new.iter().all(|e| e.json()["instance_id"] == again.as_str()), "only the new instance's: {new:?}");
        // From an older one, the events in between went with the reset: the stream says so.
        let first = old.first().and_then(|e| e.id.clone()).expect("an id");
        let mut older =
            open_as(&app, &app.admin, &path, &[("Last-Event-ID", &first)]).await.unwrap_or_else(|r| panic!("{}", r.text));
        let missed = older.next_event(Duration::from_secs(10)).await.expect("an event");
        assert_eq!(missed.event, "missed", "{missed:?}");
        let after_missed = older.until(|e| e.event == "task.finished").await;
        assert_eq!(
            after_missed.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
            new.iter().map(|e| e.id.clone()).collect::<Vec<_>>()
        );
        let (old_at, new_at) = (positions(&app, PROJECT, &old), positions(&app, PROJECT, &new));
        let newest_old = old_at.iter().max().copied().unwrap_or(0);
        assert!(new_at.iter().all(|p| *p > newest_old), "ids never reused: {old_at:?} then {new_at:?}");
    }
}

#[tokio::test]
async fn test_control_is_refused_with_a_postgres_server_elsewhere() {
    let argv = ["--database", "postgres://postgres@db.example.com:5432/kt", "--test-control"];
    let args = crate::helpers::serve_args(&argv);
    let err = match kafka_tasks::server::start(&args).await {
        Ok(_) => panic!("started against a remote database"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("not on this machine"), "{err}");
}

per_engine! {
    #[tokio::test]
    async fn advancing_the_clock_ages_retention_and_expires_tokens_at_once() {
        // The pruner's interval is the default minute: only the clock's move can make it run now.
        let app = TestApp::spawn_with(ON).await;
        let inst = app.create_instance().await;
        app.wait_instance_status(&inst, "RUNNING").await;
        let done = app.finished_task(&inst, true).await;
        let body = json!({ "max_age_days": 1 });
        let res = app.request(Method::PUT, &format!("/v2/{PROJECT}/tasks/retention"), Some(body.to_string())).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let token_body =
            json!({"auth": {"identity": {"methods": ["hw_ak_sk"]}, "scope": {"project": {"id": PROJECT}}}}).to_string();
        let headers = app.signed_headers(&app.admin, &Method::POST, "/v3/auth/tokens", &token_body, app.clock.now_ms());
        let issued = kafka_tasks::tls::http_client()
            .post(format!("{}/v3/auth/tokens", app.base))
            .headers(header_map(&headers))
            .body(token_body)
            .send()
            .await
            .expect("sent");
        assert_eq!(issued.status(), 201);
        let token = issued.headers().get("x-subject-token").and_then(|v| v.to_str().ok()).expect("token").to_owned();
        let with_token = [("x-auth-token".to_owned(), token)];
        let instances = format!("/v2/{PROJECT}/instances");
        assert_eq!(app.send(Method::GET, &instances, None, &with_token).await.status, 200);

        app.post(&clock(), json!({ "action": "advance", "by": "2d" })).await;

        app.send(Method::GET, &instances, None, &with_token).await.assert_error(401, "APIGW.0301");
        let deadline = Instant::now() + Duration::from_secs(10);
        while app.show_task(&inst, &done).await.status == 200 {
            assert!(Instant::now() < deadline, "the finished task was never pruned");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

on_postgres! {
    #[tokio::test]
    async fn on_postgres_every_process_reads_the_same_moved_clock() {
        let (a, url) = TestApp::spawn_on_postgres(ON).await;
        let b = a.beside(&url, ON).await;
        let moved = a.post(&clock(), json!({ "action": "advance", "by": "5h" })).await.json();
        assert_eq!(moved["offset_ms"].as_i64().map(|o| o >= 18_000_000), Some(true), "{moved}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = b.get(&clock()).await.json();
            if seen["offset_ms"] == moved["offset_ms"] {
                break;
            }
            assert!(Instant::now() < deadline, "the other process never saw the move: {seen}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And the rules: one list for both.
        set_rules(&a, json!([{ "operation": "ListInstances", "error": { "status_code": 503 } }])).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while list_instances(&b).await.status != 503 {
            assert!(Instant::now() < deadline, "the other process never applied the rule");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

per_engine! {
    #[tokio::test]
    async fn a_hostile_path_segment_is_cut_before_it_reaches_the_log_and_audit_of_an_injection() {
        let app = TestApp::spawn_with(ON).await;
        set_rules(&app, json!([{ "operation": "ShowInstance", "error": { "status_code": 503 } }])).await;
        let long = "\u{e9}".repeat(1000);
        app.get(&format!("/v2/{PROJECT}/instances/{long}")).await.assert_error(503, "DMS.00503001");
        let events = app.db.storage().await.audit.list_audit(None, None, 10_000).await.expect("audit");
        let injected = events.iter().find(|e| e.action == "kafka-tasks:testControl:faultInjected").expect("audited");
        assert!(injected.target.len() <= 128 && injected.target.chars().all(|c| c == '\u{e9}'), "{}", injected.target);
    }
}

fn snapshots() -> String {
    format!("/v2/{PROJECT}/test-control/snapshots")
}

/// A suite loads "an instance mid-reassignment with 500 finished tasks" in one call: the state
/// is saved while the reassignment's first step runs, changed (a reset), and restored: the
/// 500 finished tasks are listed again, the task is EXECUTING, and the engine ends it once the
/// clock passes its step's time. Then the routes' limits and refusals.
async fn a_snapshot_restores_an_instance_mid_reassignment_with_500_finished_tasks(app: TestApp) {
    use crate::retention::{finished, new_instance};
    use kafka_tasks::domain::TaskStatus;
    use kafka_tasks::domain::operation::Operation;
    let now = app.clock.now_ms();
    let inst = new_instance(PROJECT, now);
    let id = inst.id.as_str().to_owned();
    let done: Vec<_> = (0..500)
        .map(|i| {
            let op = Operation::AutoTopic { old: false, new: i % 2 == 0 };
            finished(&inst, op, now - 1_000_000 + i * 1_000, now - 1_000_000 + i * 1_000 + 10, TaskStatus::Success)
        })
        .collect();
    app.db.storage().await.bulk.bulk_load(vec![inst], done).await.expect("seeded");
    set_rules(&app, json!([{ "step_duration_ms": 7_200_000, "times": 1 }])).await;
    let res = app.reassign(&id, json!({"reassignments": [{"topic": "t", "brokers": [0, 1, 2]}]})).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let task = res.json()["job_id"].as_str().expect("job_id").to_owned();
    app.wait_step_running(&id, &task, 0).await;

    let saved = app.post(&snapshots(), json!({ "name": "mid-reassignment" })).await;
    assert_eq!(saved.status, 200, "{}", saved.text);
    assert!(saved.json()["size_bytes"].as_u64().is_some_and(|n| n > 500 * 100), "{}", saved.text);
    // The state moves on: everything goes.
    assert_eq!(app.post(&reset(), json!({})).await.status, 200);
    app.show_instance(&id).await.assert_error(404, "DMS.00404022");

    let restored = app.post(&format!("{}/mid-reassignment/restore", snapshots()), json!({})).await;
    assert_eq!(restored.status, 200, "{}", restored.text);
    let listed = app.list_tasks(&id, "?limit=100").await.json();
    assert_eq!(listed["task_count"], "501", "{}", listed["task_count"]);
    let shown = app.show_task(&id, &task).await.json();
    assert_eq!(shown["tasks"][0]["status"], "EXECUTING", "restored mid-run: {shown}");
    // The engine goes on with the restored task once its stretched step's time has passed.
    app.post(&clock(), json!({ "action": "advance", "by": "2h" })).await;
    app.wait_task_status(&id, &task, "SUCCESS").await;

    let list = app.get(&snapshots()).await.json();
    assert_eq!(list["snapshots"][0]["name"], "mid-reassignment", "{list}");
    for bad in [json!({ "name": "../etc" }), json!({ "name": "" }), json!({ "name": 3 }), json!({ "nom": "x" })] {
        app.post(&snapshots(), bad).await.assert_error(400, "DMS.00400800");
    }
    app.post(&format!("{}/nothing/restore", snapshots()), json!({})).await.assert_error(404, "DMS.00404800");
    assert_eq!(app.delete(&format!("{}/mid-reassignment", snapshots())).await.status, 204);
    app.delete(&format!("{}/mid-reassignment", snapshots())).await.assert_error(404, "DMS.00404800");
    // At most MAX_SNAPSHOTS; saving under a name already kept replaces it.
    assert_eq!(app.post(&reset(), json!({})).await.status, 200);
    for n in 0..kafka_tasks::control::MAX_SNAPSHOTS {
        let res = app.post(&snapshots(), json!({ "name": format!("s{n}") })).await;
        assert_eq!(res.status, 200, "{}", res.text);
    }
    app.post(&snapshots(), json!({ "name": "one-too-many" })).await.assert_error(400, "DMS.00400800");
    assert_eq!(app.post(&snapshots(), json!({ "name": "s0" })).await.status, 200, "replacing is allowed");
    let list = app.get(&snapshots()).await.json();
    assert_eq!(list["snapshots"].as_array().map(Vec::len), Some(kafka_tasks::control::MAX_SNAPSHOTS as usize));
    // Admin only, and audited.
    let operator = app.credential(PROJECT, "op", kafka_tasks::domain::Role::Operator).await;
    let body = Some(json!({ "name": "x" }).to_string());
    app.request_as(&operator, Method::POST, &snapshots(), body).await.assert_error(403, "DMS.00403003");
    let events = app.db.storage().await.audit.list_audit(None, None, 10_000).await.expect("audit");
    assert!(events.iter().any(|e| e.action == "kafka-tasks:testControl:change" && e.status == 403), "{events:?}");
}

on_sqlite! {
    #[tokio::test]
    async fn a_snapshot_restores_an_instance_mid_reassignment_with_500_finished_tasks_on_sqlite() {
        a_snapshot_restores_an_instance_mid_reassignment_with_500_finished_tasks(TestApp::spawn_with(ON).await).await;
    }
}

on_postgres! {
    #[tokio::test]
    async fn a_snapshot_restores_an_instance_mid_reassignment_with_500_finished_tasks_on_postgres() {
        let (app, _) = TestApp::spawn_on_postgres(ON).await;
        a_snapshot_restores_an_instance_mid_reassignment_with_500_finished_tasks(app).await;
    }
}
