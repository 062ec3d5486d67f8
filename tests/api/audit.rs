//! Audit by rule: an accepted change's event is stored with it, every refusal after
//! authentication gets exactly one event from the gateway, under its route's action, and a
//! batch action leaves exactly one event per instance it names, parsable or not.

use kafka_tasks::domain::Role;
use kafka_tasks::storage::AuditEvent;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{PROJECT, Response, TestApp};

const OTHER_PROJECT: &str = "fedcba9876543210fedcba9876543210";
const UNKNOWN: &str = "11111111-2222-3333-4444-555555555555";

/// The audit events `res`'s request left, oldest first, read back from the audit store.
async fn events_of(app: &TestApp, res: &Response) -> Vec<AuditEvent> {
    let id = res.request_id.as_deref().expect("request id");
    let events = app.db.storage().await.audit.list_audit(None, None, 10_000).await.expect("audit readable");
    events.into_iter().filter(|e| e.request_id == id).collect()
}

/// `(action, target, status)` of each event, sorted by target.
fn summary(events: &[AuditEvent]) -> Vec<(String, String, u16)> {
    let mut out: Vec<_> = events.iter().map(|e| (e.action.clone(), e.target.clone(), e.status)).collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

fn row(action: &str, target: &str, status: u16) -> (String, String, u16) {
    (action.to_owned(), target.to_owned(), status)
}

async fn batch(app: &TestApp, body: serde_json::Value) -> Response {
    app.post(&format!("/v2/{PROJECT}/instances/action"), body).await
}

per_engine! {
    #[tokio::test]
    async fn a_batch_leaves_one_event_per_named_instance_parsable_or_not() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let res = batch(&app, json!({"action": "restart", "instances": [inst.as_str(), UNKNOWN, "not-an-id", 42]})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let answer = res.json();
        let results: Vec<&str> =
            answer["results"].as_array().expect("results").iter().filter_map(|r| r["result"].as_str()).collect();
        assert_eq!(results, ["success", "failed", "failed", "failed"]);

        let mut expected = vec![
            row("dms:instance:modify", inst.as_str(), 200),
            row("dms:instance:modify", UNKNOWN, 404),
            row("dms:instance:modify", "not-an-id", 400),
            row("dms:instance:modify", "42", 400),
        ];
        expected.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(summary(&events_of(&app, &res).await), expected);
    }
}

per_engine! {
    #[tokio::test]
    async fn a_batch_whose_instances_are_all_refused_leaves_exactly_one_event_each() {
        let app = TestApp::spawn().await;
        let other = "22222222-3333-4444-5555-666666666666";
        let res = batch(&app, json!({"action": "delete", "instances": [UNKNOWN, other]})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(
            summary(&events_of(&app, &res).await),
            [row("dms:instance:delete", UNKNOWN, 404), row("dms:instance:delete", other, 404)]
        );
    }
}

per_engine! {
    #[tokio::test]
    async fn a_batch_refused_as_a_whole_leaves_one_event_per_named_instance() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let reader = app.credential(PROJECT, "rita", Role::Readonly).await;
        let body = json!({"action": "delete", "instances": [inst.as_str(), "not-an-id"]}).to_string();
        let res = app.request_as(&reader, Method::POST, &format!("/v2/{PROJECT}/instances/action"), Some(body)).await;
        res.assert_error(403, "DMS.00403003");
        let events = events_of(&app, &res).await;
        assert_eq!(
            summary(&events),
            [row("dms:instance:delete", inst.as_str(), 403), row("dms:instance:delete", "not-an-id", 403)]
        );
        assert!(events.iter().all(|e| e.user_name == "rita"));

        // A body naming nothing the batch can take is one refusal, for the project.
        let res = batch(&app, json!({"action": "reboot", "instances": [inst.as_str()]})).await;
        res.assert_error(400, "DMS.00400062");
        let events = events_of(&app, &res).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].status, 400);
    }
}

per_engine! {
    #[tokio::test]
    async fn a_refusal_before_the_handler_is_audited_once_under_its_routes_action() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        // Refused by the body extractor, before the handler states its permission.
        let res = app.request(Method::POST, &format!("/v2/kafka/{PROJECT}/instances"), Some("{not json".into())).await;
        res.assert_error(400, "DMS.00400800");
        assert_eq!(summary(&events_of(&app, &res).await), [row("dms:instance:create", PROJECT, 400)]);
        // Refused by the path extractor: another project.
        let other = app.credential(OTHER_PROJECT, "bob", Role::Admin).await;
        let res = app.request_as(&other, Method::DELETE, &app.instance_path(&inst), None).await;
        res.assert_error(403, "APIGW.0302");
        let events = events_of(&app, &res).await;
        assert_eq!(summary(&events), [row("dms:instance:delete", inst.as_str(), 403)]);
        assert_eq!(events[0].project_id, OTHER_PROJECT, "the event names the caller's project");
        // Refused by the gateway itself: a query parameter given twice.
        let res = app.update_scheduled(&inst, UNKNOWN, "?status=CANCELLED&status=null").await;
        assert_eq!(res.status, 400, "{}", res.text);
        assert_eq!(summary(&events_of(&app, &res).await), [row("dms:instance:modifyScheduledTask", UNKNOWN, 400)]);
    }
}

per_engine! {
    #[tokio::test]
    async fn every_accepted_mutation_leaves_exactly_one_event() {
        let app = TestApp::spawn().await;
        let res = app
            .create_instance_with(json!({
                "name": "audited", "engine_version": "2.7", "broker_num": 3, "storage_space": 300, "product_id": "p"
            }))
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let inst = res.json()["instance_id"].as_str().expect("instance_id").to_owned();
        assert_eq!(summary(&events_of(&app, &res).await), [row("dms:instance:create", &inst, 200)]);
        app.wait_instance_status(&inst, "RUNNING").await;

        let res = app.auto_topic(&inst, true).await;
        assert_eq!(summary(&events_of(&app, &res).await), [row("dms:instance:modify", &inst, 200)]);
        let job = res.json()["job_id"].as_str().expect("job_id").to_owned();
        app.wait_task_status(&inst, &job, "SUCCESS").await;
        let res = app.delete_task(&inst, &job).await;
        assert_eq!(res.status, 204);
        let events = events_of(&app, &res).await;
        assert_eq!(summary(&events), [row("dms:instance:deleteBackgroundTask", &job, 204)]);
        assert!(events[0].detail.is_some(), "the deleted record is kept");

        let res = app.update_instance(&inst, json!({"name": "renamed"})).await;
        assert_eq!(summary(&events_of(&app, &res).await), [row("dms:instance:modify", &inst, 204)]);

        let at = chrono::Utc::now().timestamp_millis() + 3_600_000;
        app.newer_kernel().await;
        let res = app.upgrade(&inst, json!({"is_schedule": true, "execute_at": at})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let sid = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();
        assert_eq!(summary(&events_of(&app, &res).await), [row("dms:instance:modify", &inst, 200)]);
        let res = app.update_scheduled(&inst, &sid, "?status=CANCELLED").await;
        assert_eq!(summary(&events_of(&app, &res).await), [row("dms:instance:modifyScheduledTask", &sid, 204)]);
        let res = app.delete_scheduled(&inst, &sid).await;
        assert_eq!(summary(&events_of(&app, &res).await), [row("dms:instance:deleteScheduledTask", &sid, 204)]);

        // A success the store does not record (an estimate; a token) is audited by the gateway, once.
        let one = json!([{"topic": "t1", "brokers": [0, 1]}]);
        let res = app.reassign(&inst, json!({"reassignments": one, "time_estimate": true})).await;
        assert_eq!(summary(&events_of(&app, &res).await), [row("dms:instance:modify", &inst, 200)]);
        let body = json!({"auth": {"scope": {"project": {"id": PROJECT}}}}).to_string();
        let res = app.request(Method::POST, "/v3/auth/tokens", Some(body)).await;
        assert_eq!(res.status, 201, "{}", res.text);
        assert_eq!(summary(&events_of(&app, &res).await), [row("iam:tokens:create", &app.admin.access_key, 201)]);

        let res = app.delete(&app.instance_path(&inst)).await;
        assert_eq!(summary(&events_of(&app, &res).await), [row("dms:instance:delete", &inst, 204)]);
    }
}

#[test]
fn every_mutating_route_has_an_audit_action() {
    let body = br#"{"action":"restart"}"#;
    let all = kafka_tasks::http::routes::all();
    assert!(all.iter().filter(|r| r.method != axum::http::Method::GET).count() >= 20, "{all:?}");
    for r in all {
        let action = kafka_tasks::http::audit::route_action(&r.method, &r.path, body);
        let mutating = !matches!(r.method, axum::http::Method::GET | axum::http::Method::HEAD);
        assert_eq!(action.is_some(), mutating, "{} {}: {action:?}", r.method, r.path);
    }
}
