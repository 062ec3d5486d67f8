//! Retention policies and bulk delete: the pruner removes exactly the finished
//! records a policy no longer keeps, never a waiting or running one, keeps every count exact and
//! audits each batch; the bulk delete removes exactly what its filter names, audited record by
//! record, with the single delete's permission. Records are seeded straight into the store with
//! the times a test needs; the server's clock is moved where a test needs time to pass.

use std::time::{Duration, Instant};

use kafka_tasks::domain::instance::{Instance, InstanceStatus, NewInstance};
use kafka_tasks::domain::operation::Operation;
use kafka_tasks::domain::{Role, TaskStatus};
use kafka_tasks::storage::{AuditEvent, NewTask};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PROJECT, Response, TestApp};

const OTHER_PROJECT: &str = "fedcba9876543210fedcba9876543210";
const DAY: i64 = 86_400_000;

/// A server that prunes every 100 ms, three records per batch.
async fn pruning_app(extra: &[&str]) -> TestApp {
    let mut flags = vec!["--retention-interval-ms", "100", "--retention-pause-ms", "0", "--retention-batch", "3"];
    if !extra.contains(&"--time-scale") {
        flags.extend(["--time-scale", "0"]);
    }
    flags.extend_from_slice(extra);
    TestApp::spawn_with(&flags).await
}

pub(crate) fn new_instance(project: &str, now: i64) -> Instance {
    let new = NewInstance { name: "seeded".into(), product_id: "c6.2u4g.cluster".into(), ..NewInstance::example() };
    let mut inst = Instance::create(project.parse().expect("project"), &new, "u", "seed", now - 500 * DAY);
    inst.status = InstanceStatus::Running;
    inst
}

/// A task of `inst` created at `created`, ended at `ended` with `status`.
pub(crate) fn finished(inst: &Instance, op: Operation, created: i64, ended: i64, status: TaskStatus) -> NewTask {
    let mut t = NewTask::new(inst, op, ("u", "seed"), created, None, 0.0);
    t.record.status = status;
    t.record.updated_at = ended;
    t
}

fn restart() -> Operation {
    Operation::Restart
}

fn autotopic() -> Operation {
    Operation::AutoTopic { old: false, new: true }
}

async fn seed(app: &TestApp, instances: Vec<Instance>, tasks: &[NewTask]) {
    app.db.storage().await.bulk.bulk_load(instances, tasks.to_vec()).await.expect("seeded");
}

fn ids(tasks: &[NewTask]) -> Vec<String> {
    let mut v: Vec<String> = tasks.iter().map(|t| t.record.id.as_str().to_owned()).collect();
    v.sort();
    v
}

/// The ids the background list shows (up to 100), sorted.
async fn listed(app: &TestApp, inst: &str) -> Vec<String> {
    let list = app.list_tasks(inst, "?limit=100").await.json();
    let mut v: Vec<String> =
        list["tasks"].as_array().expect("tasks").iter().map(|t| t["id"].as_str().expect("id").to_owned()).collect();
    v.sort();
    v
}

/// Waits until the instance's background `task_count` is `n`.
async fn wait_count(app: &TestApp, inst: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let count = app.task_count(inst).await;
        if count == n {
            return;
        }
        assert!(Instant::now() < deadline, "task_count stayed {count}, expected {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every count the list can show agrees with the rows: the unfiltered total, and the total of
/// a time range (day buckets plus its partial edges).
async fn assert_counts_exact(app: &TestApp, inst: &str) {
    let all = listed(app, inst).await;
    assert_eq!(app.task_count(inst).await, all.len(), "task_count is the number of rows");
    let now = app.clock.now_ms();
    let fmt = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("time").format("%Y%m%d%H%M%S").to_string();
    let q = format!("?limit=100&begin_time={}&end_time={}", fmt(now - 600 * DAY), fmt(now + DAY));
    let ranged = app.list_tasks(inst, &q).await.json();
    let shown = ranged["tasks"].as_array().map_or(0, Vec::len);
    assert_eq!(ranged["task_count"], shown.to_string(), "a ranged task_count is the number of rows");
}

async fn audit_events(app: &TestApp) -> Vec<AuditEvent> {
    app.db.storage().await.audit.list_audit(None, None, 100_000).await.expect("audit readable")
}

async fn put_policy(app: &TestApp, body: Value) -> Response {
    app.request(Method::PUT, &format!("/v2/{PROJECT}/tasks/retention"), Some(body.to_string())).await
}

per_engine! {
    #[tokio::test]
    async fn the_age_rule_removes_only_tasks_that_ended_longer_ago_and_keeps_counts_exact() {
        let app = pruning_app(&[]).await;
        let now = app.clock.now_ms();
        let inst = new_instance(PROJECT, now);
        let old: Vec<NewTask> =
            (0..7).map(|k| finished(&inst, restart(), now - 45 * DAY, now - 40 * DAY + k, TaskStatus::Success)).collect();
        // Created long ago, ended recently: age counts from the end.
        let recent: Vec<NewTask> = vec![
            finished(&inst, restart(), now - 45 * DAY, now - 10 * DAY, TaskStatus::Failed),
            finished(&inst, autotopic(), now - 5 * DAY, now - 5 * DAY, TaskStatus::Success),
        ];
        let id = inst.id.as_str().to_owned();
        seed(&app, vec![inst], &[old.clone(), recent.clone()].concat()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(app.task_count(&id).await, 9, "the default policy (no flags) keeps everything");

        let res = put_policy(&app, json!({"max_age_days": 30})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        wait_count(&app, &id, 2).await;
        assert_eq!(listed(&app, &id).await, ids(&recent));
        assert_counts_exact(&app, &id).await;

        // One audit event per batch (three records at most), together naming every removed record.
        let prunes: Vec<AuditEvent> =
            audit_events(&app).await.into_iter().filter(|e| e.action == "kafka-tasks:retention:prune").collect();
        assert!(prunes.len() >= 3, "7 records in batches of 3: {prunes:?}");
        let mut removed: Vec<String> = vec![];
        for e in &prunes {
            let d = e.detail.as_ref().expect("detail");
            assert_eq!(d["rule"], "age");
            assert!(d["deleted"].as_u64().is_some_and(|n| (1..=3).contains(&n)), "{d}");
            assert_eq!((e.target.as_str(), e.project_id.as_str(), e.user_id.as_str()), (id.as_str(), PROJECT, "retention"));
            removed.extend(d["task_ids"].as_array().expect("ids").iter().map(|v| v.as_str().expect("id").to_owned()));
        }
        removed.sort();
        assert_eq!(removed, ids(&old));
    }
}

per_engine! {
    #[tokio::test]
    async fn a_per_name_override_replaces_the_default_age_and_null_keeps_that_name_forever() {
        let app = pruning_app(&[]).await;
        let now = app.clock.now_ms();
        let inst = new_instance(PROJECT, now);
        let restart_old = finished(&inst, restart(), now - 100 * DAY, now - 100 * DAY, TaskStatus::Success);
        let restart_older = finished(&inst, restart(), now - 400 * DAY, now - 400 * DAY, TaskStatus::Success);
        let topic_old = finished(&inst, autotopic(), now - 400 * DAY, now - 400 * DAY, TaskStatus::Success);
        let upgrade =
            Operation::Upgrade { engine_version: "2.7".into(), old_kernel: "a".into(), new_kernel: "b".into(), brokers: 3 };
        let upgrade_old = finished(&inst, upgrade, now - 400 * DAY, now - 400 * DAY, TaskStatus::Failed);
        let (restart_name, upgrade_name) = (restart_old.record.name.clone(), upgrade_old.record.name.clone());
        let id = inst.id.as_str().to_owned();
        let all = [restart_old.clone(), restart_older.clone(), topic_old.clone(), upgrade_old.clone()];
        seed(&app, vec![inst], &all).await;

        let body = json!({"max_age_days": 30, "overrides": {restart_name.as_str(): 365, upgrade_name.as_str(): null}});
        assert_eq!(put_policy(&app, body).await.status, 200);
        wait_count(&app, &id, 2).await;
        assert_eq!(listed(&app, &id).await, ids(&[restart_old, upgrade_old]));
        assert_counts_exact(&app, &id).await;
    }
}

per_engine! {
    #[tokio::test]
    async fn the_cap_keeps_the_most_recently_created_records_of_each_instance() {
        let app = pruning_app(&["--retention-max-tasks-per-instance", "3"]).await;
        let now = app.clock.now_ms();
        let (a, b) = (new_instance(PROJECT, now), new_instance(PROJECT, now));
        // A long-running task: created first, ended last. The cap removes in creation order
        // (the list's order), so it goes first; by end it would have been kept.
        let long = finished(&a, restart(), now - 2 * DAY, now - 1, TaskStatus::Success);
        let mut a_tasks: Vec<NewTask> = (0..8)
            .map(|k| finished(&a, restart(), now - DAY + k * 1000, now - DAY + k * 1000 + 10, TaskStatus::Success))
            .collect();
        a_tasks.insert(0, long);
        let b_tasks: Vec<NewTask> =
            (0..2).map(|k| finished(&b, restart(), now - DAY, now - k, TaskStatus::Failed)).collect();
        let (ia, ib) = (a.id.as_str().to_owned(), b.id.as_str().to_owned());
        seed(&app, vec![a, b], &[a_tasks.clone(), b_tasks.clone()].concat()).await;

        // The configured default applies to a project that set nothing.
        let shown = app.get(&format!("/v2/{PROJECT}/tasks/retention")).await.json();
        assert_eq!(shown["source"], "default");
        assert_eq!(shown["policy"]["max_tasks_per_instance"], 3);
        wait_count(&app, &ia, 3).await;
        assert_eq!(listed(&app, &ia).await, ids(&a_tasks[6..]), "the three created last");
        assert_eq!(listed(&app, &ib).await, ids(&b_tasks), "an instance under the cap keeps everything");
        assert_counts_exact(&app, &ia).await;
        let caps = audit_events(&app).await.into_iter().filter(|e| e.action == "kafka-tasks:retention:prune").count();
        assert!(caps >= 2, "6 records in batches of 3");
    }
}

per_engine! {
    #[tokio::test]
    async fn waiting_scheduled_and_running_tasks_are_never_pruned() {
        // Steps take a thousand times their realistic length: a started task stays EXECUTING.
        let app = pruning_app(&["--time-scale", "1000"]).await;
        let now = app.clock.now_ms();
        let mut inst = new_instance(PROJECT, now);
        let old = finished(&inst, restart(), now - 3 * DAY, now - 3 * DAY, TaskStatus::Success);
        let running = NewTask::new(&inst, restart(), ("u", "seed"), now - 3 * DAY, None, 1000.0);
        inst.busy_task = Some(running.record.id.clone());
        let waiting = NewTask::new(&inst, autotopic(), ("u", "seed"), now - 3 * DAY, Some(now + 1000 * DAY), 0.0);
        let id = inst.id.as_str().to_owned();
        seed(&app, vec![inst], &[old.clone(), running.clone(), waiting.clone()]).await;
        let running_id = running.record.id.as_str().to_owned();
        app.wait_step_running(&id, &running_id, 0).await;

        assert_eq!(put_policy(&app, json!({"max_age_days": 1, "max_tasks_per_instance": 1})).await.status, 200);
        // A year passes on the server's clock; the scheduled task is still ahead.
        app.clock.advance(365 * DAY);
        wait_count(&app, &id, 1).await;
        let task = app.show_task(&id, &running_id).await.json();
        assert_eq!(task["tasks"][0]["status"], "EXECUTING");
        let scheduled = app.list_scheduled(&id, "").await.json();
        assert_eq!(scheduled["jobs"][0]["id"], waiting.record.id.as_str());
        assert_eq!(scheduled["jobs"][0]["status"], "CREATED");
        assert_eq!(scheduled["job_count"], 1);
        // Several more rounds change nothing.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(app.task_count(&id).await, 1);
        assert_counts_exact(&app, &id).await;
    }
}

per_engine! {
    #[tokio::test]
    async fn the_policy_is_read_and_changed_by_an_admin_of_the_project_only_and_strictly_checked() {
        let app = TestApp::spawn().await;
        let path = format!("/v2/{PROJECT}/tasks/retention");
        let shown = app.get(&path).await;
        assert_eq!(shown.status, 200, "{}", shown.text);
        assert_eq!(
            shown.json(),
            json!({"project_id": PROJECT, "source": "default",
                   "policy": {"max_age_days": null, "overrides": {}, "max_tasks_per_instance": null}})
        );
        let policy = json!({"max_age_days": 30, "overrides": {"createInstance": 365, "restartInstance": null},
                            "max_tasks_per_instance": 5000});
        let res = put_policy(&app, policy.clone()).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.json()["policy"], policy);
        assert_eq!(app.get(&path).await.json(), json!({"project_id": PROJECT, "source": "project", "policy": policy}));
        let event =
            audit_events(&app).await.into_iter().find(|e| e.request_id == res.request_id.clone().unwrap_or_default());
        let event = event.expect("the change is audited");
        assert_eq!((event.action.as_str(), event.status), ("kafka-tasks:retention:set", 200));
        assert_eq!(event.detail.expect("detail")["policy"], policy);

        // Operators and readers may do neither; another project's admin is refused at the gateway.
        for role in [Role::Readonly, Role::Operator] {
            let cred = app.credential(PROJECT, "someone", role).await;
            for (method, body) in [(Method::GET, None), (Method::PUT, Some("{}".to_owned())), (Method::DELETE, None)] {
                app.request_as(&cred, method, &path, body).await.assert_error(403, "DMS.00403003");
            }
        }
        let other = app.credential(OTHER_PROJECT, "eve", Role::Admin).await;
        app.request_as(&other, Method::PUT, &path, Some("{}".into())).await.assert_error(403, "APIGW.0302");
        app.request_as(&other, Method::GET, &path, None).await.assert_error(403, "APIGW.0302");

        // Out of bounds, mistyped or unknown: refused, nothing changed.
        let many: serde_json::Map<String, Value> = (0..65).map(|i| (format!("n{i}"), json!(1))).collect();
        for (body, code) in [
            (json!({"max_age_days": 0}), "DMS.00400062"),
            (json!({"max_age_days": 36_501}), "DMS.00400062"),
            (json!({"max_age_days": "30"}), "DMS.00400800"),
            (json!({"overrides": {"x".repeat(65): 1}}), "DMS.00400062"),
            (json!({"overrides": {"a/b": 1}}), "DMS.00400062"),
            (json!({"overrides": many}), "DMS.00400062"),
            (json!({"max_tasks_per_instance": 0}), "DMS.00400062"),
            (json!({"max_tasks_per_instance": -5}), "DMS.00400800"),
            (json!({"max_age": 30}), "DMS.00400800"),
            (json!([1]), "DMS.00400800"),
        ] {
            put_policy(&app, body.clone()).await.assert_error(400, code);
        }
        assert_eq!(app.get(&path).await.json()["policy"], policy, "refusals changed nothing");

        let reset = app.delete(&path).await;
        assert_eq!(reset.status, 200, "{}", reset.text);
        assert_eq!(app.get(&path).await.json()["source"], "default");
    }
}

/// `begin/end` as the list takes them, around `ms`.
fn compact(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).expect("time").format("%Y%m%d%H%M%S").to_string()
}

fn bulk_path(inst: &str, query: &str) -> String {
    format!("/v2/{PROJECT}/instances/{inst}/tasks?{query}")
}

per_engine! {
    #[tokio::test]
    async fn bulk_delete_removes_exactly_the_finished_tasks_its_filter_names() {
        let app = TestApp::spawn_with(&["--time-scale", "1000"]).await;
        let now = app.clock.now_ms() - 60_000;
        let mut inst = new_instance(PROJECT, now);
        let t = |k: i64| now - 10 * DAY + k * DAY;
        let a_success = finished(&inst, restart(), t(0), t(0), TaskStatus::Success);
        let a_failed = finished(&inst, restart(), t(1), t(1), TaskStatus::Failed);
        let b_success = finished(&inst, autotopic(), t(2), t(2), TaskStatus::Success);
        let late = finished(&inst, restart(), t(8), t(8), TaskStatus::Success);
        let running = NewTask::new(&inst, restart(), ("u", "seed"), t(3), None, 1000.0);
        inst.busy_task = Some(running.record.id.clone());
        let id = inst.id.as_str().to_owned();
        seed(&app, vec![inst], &[a_success.clone(), a_failed.clone(), b_success.clone(), late.clone(), running.clone()])
            .await;
        let running_id = running.record.id.as_str().to_owned();
        app.wait_step_running(&id, &running_id, 0).await;
        let before = compact(t(5));

        // Only FAILED: one.
        let res = app.delete(&bulk_path(&id, &format!("end_time={before}&status=FAILED"))).await;
        assert_eq!((res.status.as_u16(), res.json()), (200, json!({"deleted": 1, "more": false})), "{}", res.text);
        // Only the auto-topic task's name.
        let name = b_success.record.name.clone();
        let res = app.delete(&bulk_path(&id, &format!("end_time={before}&name={name}"))).await;
        assert_eq!(res.json(), json!({"deleted": 1, "more": false}));
        // A range that starts after the first task: nothing.
        let res = app.delete(&bulk_path(&id, &format!("begin_time={}&end_time={before}", compact(t(0) + 2000)))).await;
        assert_eq!(res.json()["deleted"], 0);
        // Everything before: the first task; the running one (created before too) stays.
        let res = app.delete(&bulk_path(&id, &format!("end_time={before}"))).await;
        assert_eq!(res.json()["deleted"], 1);
        assert_eq!(listed(&app, &id).await, ids(&[late, running]));
        assert_counts_exact(&app, &id).await;
        assert_eq!(app.show_task(&id, &running_id).await.json()["tasks"][0]["status"], "EXECUTING");

        // Each removed record is audited as a single delete's is, plus the request's own event.
        let res = app.delete(&bulk_path(&id, &format!("end_time={}", compact(now + DAY)))).await;
        assert_eq!(res.json()["deleted"], 1);
        let events: Vec<AuditEvent> =
            audit_events(&app).await.into_iter().filter(|e| Some(&e.request_id) == res.request_id.as_ref()).collect();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events.iter().all(|e| e.action == "dms:instance:deleteBackgroundTask" && e.status == 200));
        let record = events.iter().find(|e| e.target != id).expect("the record's event");
        let detail = record.detail.as_ref().expect("detail");
        assert_eq!(detail["deleted_task"]["id"], record.target.as_str());
        assert_eq!(detail["deleted_task"]["instance_id"], id.as_str());
        let summary = events.iter().find(|e| e.target == id).expect("the request's event");
        assert_eq!(summary.detail.as_ref().expect("detail")["deleted"], 1);
    }
}

per_engine! {
    #[tokio::test]
    async fn bulk_delete_is_bounded_per_request_and_says_when_more_remain() {
        let app = TestApp::spawn().await;
        let now = app.clock.now_ms() - 60_000;
        let inst = new_instance(PROJECT, now);
        let tasks: Vec<NewTask> =
            (0..1_005).map(|k| finished(&inst, restart(), now - DAY + k, now - DAY + k, TaskStatus::Success)).collect();
        let id = inst.id.as_str().to_owned();
        seed(&app, vec![inst], &tasks).await;
        let path = bulk_path(&id, &format!("end_time={}", compact(now)));
        assert_eq!(app.delete(&path).await.json(), json!({"deleted": 1000, "more": true}));
        assert_eq!(app.task_count(&id).await, 5);
        // The oldest went first.
        assert_eq!(listed(&app, &id).await, ids(&tasks[1000..]));
        assert_eq!(app.delete(&path).await.json(), json!({"deleted": 5, "more": false}));
        assert_eq!(app.task_count(&id).await, 0);
    }
}

per_engine! {
    #[tokio::test]
    async fn a_bulk_delete_dry_run_counts_every_match_lists_the_oldest_and_removes_nothing() {
        let app = TestApp::spawn().await;
        let now = app.clock.now_ms() - 60_000;
        let inst = new_instance(PROJECT, now);
        let mut tasks: Vec<NewTask> =
            (0..1_005).map(|k| finished(&inst, restart(), now - DAY + k, now - DAY + k, TaskStatus::Success)).collect();
        tasks.push(finished(&inst, restart(), now - DAY + 2_000, now - DAY + 2_000, TaskStatus::Failed));
        let id = inst.id.as_str().to_owned();
        seed(&app, vec![inst], &tasks).await;
        let preview = app.delete(&bulk_path(&id, &format!("end_time={}&dry_run=true", compact(now)))).await.json();
        assert_eq!(preview["matched"], 1_006, "{preview}");
        assert_eq!(
            (preview["deleted"].clone(), preview["more"].clone(), preview["dry_run"].clone()),
            (json!(0), json!(true), json!(true))
        );
        let mut listed_ids: Vec<&str> =
            preview["tasks"].as_array().expect("tasks").iter().filter_map(|t| t["id"].as_str()).collect();
        listed_ids.sort_unstable();
        assert_eq!(listed_ids, ids(&tasks[..100]), "the oldest 100, those the delete takes first");
        let failed =
            app.delete(&bulk_path(&id, &format!("end_time={}&status=FAILED&dry_run=true", compact(now)))).await.json();
        assert_eq!((failed["matched"].clone(), failed["more"].clone()), (json!(1), json!(false)), "{failed}");
        assert_eq!(app.task_count(&id).await, 1_006, "a dry run removed something");
        // The gateway audits the request as any DELETE, but no record is named as deleted.
        let events = audit_events(&app).await;
        assert!(events.iter().all(|e| e.detail.as_ref().is_none_or(|d| d.get("deleted_task").is_none())), "{events:?}");
        let res = app.delete(&bulk_path(&id, &format!("end_time={}&dry_run=yes", compact(now)))).await;
        assert_eq!(res.status, 400, "{}", res.text);
        assert!(res.text.contains("dry_run"), "{}", res.text);
        assert_eq!(app.task_count(&id).await, 1_006);
    }
}

per_engine! {
    #[tokio::test]
    async fn bulk_delete_refuses_bad_filters_readers_and_strangers_and_changes_nothing() {
        let app = TestApp::spawn().await;
        let now = app.clock.now_ms() - 60_000;
        let inst = new_instance(PROJECT, now);
        let tasks = vec![finished(&inst, restart(), now - DAY, now - DAY, TaskStatus::Success)];
        let id = inst.id.as_str().to_owned();
        seed(&app, vec![inst], &tasks).await;
        let end = compact(now);
        for (query, code) in [
            (String::new(), "DMS.00400062"),
            (format!("begin_time={end}"), "DMS.00400062"),
            ("end_time=2026".to_owned(), "DMS.00400142"),
            ("end_time=20261340000000".to_owned(), "DMS.00400142"),
            (format!("end_time={end}&begin_time=29990101000000"), "DMS.00400062"),
            (format!("end_time={end}&status=EXECUTING"), "DMS.00400062"),
            (format!("end_time={end}&status=CREATED"), "DMS.00400062"),
            (format!("end_time={end}&status=success"), "DMS.00400062"),
            (format!("end_time={end}&name=a%2Fb"), "DMS.00400062"),
            (format!("end_time={end}&name={}", "x".repeat(65)), "DMS.00400062"),
            // A mistyped filter must not widen the deletion: unknown keys are refused.
            (format!("end_time={end}&stauts=FAILED"), "DMS.00400062"),
            (format!("end_time={end}&limit=5"), "DMS.00400062"),
            // Given twice: which one counts is not what the signer chose.
            (format!("end_time={end}&status=FAILED&status=SUCCESS"), "DMS.00400062"),
        ] {
            app.delete(&bulk_path(&id, &query)).await.assert_error(400, code);
        }
        // An unknown key is named in the error, cut short: a long one is not echoed whole.
        let long = app.delete(&bulk_path(&id, &format!("end_time={end}&{}=1", "k".repeat(3_000)))).await;
        long.assert_error(400, "DMS.00400062");
        assert!(long.text.len() < 300, "{}", long.text);
        let unknown = "11111111-2222-3333-4444-555555555555";
        app.delete(&bulk_path(unknown, &format!("end_time={end}"))).await.assert_error(404, "DMS.00404022");
        app.delete(&bulk_path("not-a-uuid", &format!("end_time={end}"))).await.assert_error(400, "DMS.00400030");

        let reader = app.credential(PROJECT, "reader", Role::Readonly).await;
        let path = bulk_path(&id, &format!("end_time={end}"));
        app.request_as(&reader, Method::DELETE, &path, None).await.assert_error(403, "DMS.00403003");
        let other = app.credential(OTHER_PROJECT, "eve", Role::Admin).await;
        app.request_as(&other, Method::DELETE, &path, None).await.assert_error(403, "APIGW.0302");
        assert_eq!(app.task_count(&id).await, 1, "nothing was deleted");
        // The refused reader is audited once, under the single delete's action.
        let refused: Vec<AuditEvent> =
            audit_events(&app).await.into_iter().filter(|e| e.status == 403 && e.user_name == "reader").collect();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(
            (refused[0].action.as_str(), refused[0].target.as_str()),
            ("dms:instance:deleteBackgroundTask", id.as_str())
        );

        // An operator may, as for the single delete.
        let operator = app.credential(PROJECT, "op", Role::Operator).await;
        let res = app.request_as(&operator, Method::DELETE, &path, None).await;
        assert_eq!(res.json()["deleted"], 1, "{}", res.text);
    }
}

on_postgres! {
    /// Two server processes (this test's and the binary) on one PostgreSQL database, both pruning often: every record goes once,
    /// the counts end exact, and the audited batches add up to exactly what was removed.
    #[tokio::test]
    async fn two_processes_pruning_one_postgres_database_remove_each_record_once() {
        let flags =
            ["--time-scale", "0", "--retention-interval-ms", "50", "--retention-pause-ms", "0", "--retention-batch", "7"];
        let (first, _) = TestApp::spawn_on_postgres(&flags).await;
        // The second is the real binary in a process of its own, on the same database and key.
        let mut second = crate::helpers::start_process(&first.db, &flags);

        let now = first.clock.now_ms();
        let instances: Vec<Instance> = (0..4).map(|_| new_instance(PROJECT, now)).collect();
        let mut tasks = vec![];
        for inst in &instances {
            for k in 0..60 {
                tasks.push(finished(inst, restart(), now - 50 * DAY, now - 40 * DAY + k, TaskStatus::Success));
            }
            tasks.push(finished(inst, restart(), now - 50 * DAY, now - DAY, TaskStatus::Success));
        }
        let inst_ids: Vec<String> = instances.iter().map(|i| i.id.as_str().to_owned()).collect();
        seed(&first, instances, &tasks).await;
        assert_eq!(put_policy(&first, json!({"max_age_days": 30})).await.status, 200);
        for id in &inst_ids {
            wait_count(&first, id, 1).await;
            assert_counts_exact(&first, id).await;
        }
        let removed: u64 = audit_events(&first)
            .await
            .iter()
            .filter(|e| e.action == "kafka-tasks:retention:prune")
            .map(|e| e.detail.as_ref().and_then(|d| d["deleted"].as_u64()).unwrap_or(0))
            .sum();
        assert_eq!(removed, 240, "each record removed and audited once");
        let batches: std::collections::HashSet<String> = audit_events(&first)
            .await
            .into_iter()
            .filter(|e| e.action == "kafka-tasks:retention:prune")
            .map(|e| e.request_id)
            .collect();
        assert!(batches.len() >= 240 / 7, "batches of at most 7: {}", batches.len());
        second.kill9();
    }
}
