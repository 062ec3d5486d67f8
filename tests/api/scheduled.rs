//! Scheduled tasks: they fire once when due, keep their id as background tasks, and can be
//! moved or cancelled while they wait. The engine reads the server's clock, so these tests
//! schedule on it and move it forward instead of sleeping until a schedule comes.

use serde_json::json;

use crate::helpers::{LATEST_BUILT_IN_27, TestApp};

/// `ms` from now on the server's clock.
fn at(app: &TestApp, ms: i64) -> i64 {
    app.clock.now_ms() + ms
}

/// `secs` from now on the server's clock, as `execute_at` takes it (to the second).
fn compact_at(app: &TestApp, secs: i64) -> String {
    let when = chrono::DateTime::from_timestamp_millis(at(app, secs * 1000)).expect("representable time");
    when.format("%Y%m%d%H%M%S").to_string()
}

/// How far schedules are put ahead: well past the API's one-second minimum.
const AHEAD_MS: i64 = 60_000;

/// Moves the server's clock past every schedule made with [`AHEAD_MS`].
fn pass_the_schedule(app: &TestApp) {
    app.clock.advance(AHEAD_MS + 2_000);
}

per_engine! {
    #[tokio::test]
    async fn a_scheduled_upgrade_fires_once_and_becomes_a_background_task() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let newer = app.newer_kernel().await;
        let res = app.upgrade(&inst, json!({"is_schedule": true, "execute_at": at(&app, AHEAD_MS)})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let id = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();
        assert!(res.json().get("job_id").is_none());

        let jobs = app.list_scheduled(&inst, "").await.json();
        assert_eq!(jobs["job_count"], 1, "job_count is a number: {jobs}");
        assert_eq!(jobs["jobs"][0]["id"], id.as_str());
        assert_eq!(jobs["jobs"][0]["status"], "CREATED");
        assert_eq!(jobs["jobs"][0]["name"], "upgradeInstance");
        assert!(jobs["jobs"][0]["schedule_at"].as_str().is_some_and(|s| s.ends_with('Z')));
        // Waiting, it is not a background task yet.
        app.show_task(&inst, &id).await.assert_error(404, "DMS.00404070");
        assert_eq!(app.show_upgrade(&inst).await.json()["current_version"], LATEST_BUILT_IN_27);

        pass_the_schedule(&app);
        let task = app.wait_task_status(&inst, &id, "SUCCESS").await;
        assert_eq!(task["id"], id.as_str());
        assert_eq!(app.show_upgrade(&inst).await.json()["current_version"], newer.as_str());
        assert_eq!(app.show_instance(&inst).await.json()["engine_version"], "2.7");
        let jobs = app.list_scheduled(&inst, "").await.json();
        assert_eq!(jobs["jobs"][0]["status"], "SUCCESS");
        // Fired once: one upgrade in the background list.
        let all = app.list_tasks(&inst, "?limit=100").await.json();
        let upgrades = all["tasks"].as_array().map(|a| a.iter().filter(|t| t["name"] == "upgradeInstance").count());
        assert_eq!(upgrades, Some(1));

        // Ended: it can be deleted from the scheduled list, which removes the record.
        assert_eq!(app.delete_scheduled(&inst, &id).await.status, 204);
        app.show_task(&inst, &id).await.assert_error(404, "DMS.00404070");
        assert_eq!(app.list_scheduled(&inst, "").await.json()["job_count"], 0);
    }
}

per_engine! {
    #[tokio::test]
    async fn a_cancelled_scheduled_task_never_runs() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        app.newer_kernel().await;
        let res = app.upgrade(&inst, json!({"is_schedule": true, "execute_at": at(&app, AHEAD_MS)})).await;
        let id = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();

        let upd = app.update_scheduled(&inst, &id, "?status=CANCELLED").await;
        assert_eq!(upd.status, 204, "{}", upd.text);
        assert_eq!(upd.text, "");
        pass_the_schedule(&app);
        // A task submitted after the clock moved has run: the engine has looked for due work since,
        // and the cancelled task was not among it.
        app.finished_task(&inst, true).await;
        let jobs = app.list_scheduled(&inst, "").await.json();
        assert_eq!(jobs["jobs"][0]["status"], "CANCELLED");
        assert_eq!(app.show_upgrade(&inst).await.json()["current_version"], LATEST_BUILT_IN_27);
        app.show_task(&inst, &id).await.assert_error(404, "DMS.00404070");
        // Once cancelled it cannot be changed again, but it can be deleted.
        app.update_scheduled(&inst, &id, &format!("?execute_at={}", compact_at(&app, 60)))
            .await
            .assert_error(400, "DMS.00400026");
        assert_eq!(app.delete_scheduled(&inst, &id).await.status, 204);
        app.delete_scheduled(&inst, &id).await.assert_error(404, "DMS.00404070");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_scheduled_task_can_be_moved_while_it_waits() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let res = app
            .reassign(&inst, json!({"reassignments": [{"topic": "t1", "brokers": [0, 1]}], "is_schedule": true, "execute_at": at(&app, 3_600_000)}))
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let id = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();
        // Still waiting: it can be neither deleted nor run.
        app.delete_scheduled(&inst, &id).await.assert_error(400, "DMS.00400017");

        let when = compact_at(&app, AHEAD_MS / 1000);
        assert_eq!(app.update_scheduled(&inst, &id, &format!("?execute_at={when}")).await.status, 204);
        let job = &app.list_scheduled(&inst, "").await.json()["jobs"][0];
        let expected = format!(
            "{}-{}-{}T{}:{}:{}.000Z",
            &when[0..4],
            &when[4..6],
            &when[6..8],
            &when[8..10],
            &when[10..12],
            &when[12..14]
        );
        assert_eq!(job["schedule_at"], expected);
        pass_the_schedule(&app);
        let done = app.wait_task_status(&inst, &id, "SUCCESS").await;
        assert_eq!(done["name"], "kafkaPartitionReassign");
        app.update_scheduled(&inst, &id, "?status=CANCELLED").await.assert_error(400, "DMS.00400026");
    }
}

per_engine! {
    #[tokio::test]
    async fn bad_schedule_updates_are_refused_and_change_nothing() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        app.newer_kernel().await;
        let res = app.upgrade(&inst, json!({"is_schedule": true, "execute_at": at(&app, 3_600_000)})).await;
        let id = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();
        let before = app.list_scheduled(&inst, "").await.json();

        app.update_scheduled(&inst, &id, "").await.assert_error(400, "DMS.00400062");
        app.update_scheduled(&inst, &id, "?status=SUCCESS").await.assert_error(400, "DMS.00400062");
        app.update_scheduled(&inst, &id, "?execute_at=2024").await.assert_error(400, "DMS.00400142");
        app.update_scheduled(&inst, &id, "?execute_at=20200101000000").await.assert_error(400, "DMS.00400142");
        app.update_scheduled(&inst, "0123456789abcdef0123456789abcdef", "?status=CANCELLED")
            .await
            .assert_error(404, "DMS.00404070");
        app.update_scheduled(&inst, "not-an-id", "?status=CANCELLED").await.assert_error(400, "DMS.00400070");
        assert_eq!(app.list_scheduled(&inst, "").await.json(), before);

        // Operation bodies with a bad schedule create nothing.
        app.upgrade(&inst, json!({"is_schedule": true, "execute_at": 5})).await.assert_error(400, "DMS.00400142");
        app.upgrade(&inst, json!({"is_schedule": true})).await.assert_error(400, "DMS.00400142");
        app.upgrade(&inst, json!({"is_schedule": true, "execute_at": "tomorrow"})).await.assert_error(400, "DMS.00400142");
        assert_eq!(app.list_scheduled(&inst, "").await.json(), before);
    }
}

per_engine! {
    #[tokio::test]
    async fn a_scheduled_operation_firing_on_a_failed_create_fails_and_leaves_it_createfailed() {
        let app = TestApp::spawn_with(&["--time-scale", "0", "--storage-pool-gb", "1000"]).await;
        let res = app
            .create_instance_with(json!({
                "name": "too-big", "engine_version": "2.7", "broker_num": 1, "storage_space": 2000, "product_id": "p"
            }))
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let inst = res.json()["instance_id"].as_str().expect("instance_id").to_owned();
        app.wait_instance_status(&inst, "CREATEFAILED").await;
        app.newer_kernel().await;

        let res = app.upgrade(&inst, json!({"is_schedule": true, "execute_at": at(&app, AHEAD_MS)})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let id = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();
        pass_the_schedule(&app);
        app.wait_task_status(&inst, &id, "FAILED").await;

        let shown = app.show_instance(&inst).await.json();
        assert_eq!(shown["status"], "CREATEFAILED", "{shown}");
        assert_eq!(shown["engine_version"], "2.7");
        let p = app.progress(&inst, &id).await.json();
        assert_eq!(p["step_list"][0]["statue"], "FAILED", "{p}");
        // Both failures keep why: the create's step, and the check that refused the upgrade.
        let run = |task: String| {
            let app = &app;
            let path = format!("{}/tasks/{task}/run", app.instance_path(&inst));
            async move { app.get(&path).await.json() }
        };
        let refused = run(id.clone()).await;
        let reason = refused["failure"]["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("the operation no longer applies"), "{refused}");
        assert!(
            refused["failure"]["remedy"].as_str().is_some_and(|r| r.contains("submit the operation again")),
            "{refused}"
        );
        let tasks = app.list_tasks(&inst, "").await.json();
        let create = tasks["tasks"].as_array().expect("tasks").iter().find(|t| t["name"] == "createInstance").cloned();
        let create = run(create.and_then(|t| t["id"].as_str().map(str::to_owned)).expect("the create task")).await;
        assert_eq!(create["failure"]["step"], "create_resources", "{create}");
        assert!(create["failure"]["reason"].as_str().is_some_and(|r| r.contains("2000 GB")), "{create}");
        // Still refused for anything but a delete.
        app.auto_topic(&inst, true).await.assert_error(400, "DMS.00400026");
        app.upgrade(&inst, json!({})).await.assert_error(400, "DMS.00400026");
    }
}

per_engine! {
    #[tokio::test]
    async fn an_upgrade_scheduled_before_an_immediate_upgrade_fails_when_it_fires() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let newer = app.newer_kernel().await;
        let res = app.upgrade(&inst, json!({"is_schedule": true, "execute_at": at(&app, AHEAD_MS)})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let scheduled = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();

        let now = app.upgrade(&inst, json!({})).await;
        assert_eq!(now.status, 200, "{}", now.text);
        let job = now.json()["job_id"].as_str().expect("job_id").to_owned();
        app.wait_task_status(&inst, &job, "SUCCESS").await;
        assert_eq!(app.show_upgrade(&inst).await.json()["current_version"], newer.as_str());

        // The scheduled upgrade started from the older build; the instance runs the newer one now,
        // so it no longer applies.
        pass_the_schedule(&app);
        app.wait_task_status(&inst, &scheduled, "FAILED").await;
        assert_eq!(app.show_upgrade(&inst).await.json()["current_version"], newer.as_str());
        let shown = app.show_instance(&inst).await.json();
        assert_eq!(shown["engine_version"], "2.7");
        assert_eq!(shown["status"], "RUNNING");
        assert_eq!(app.list_scheduled(&inst, "").await.json()["jobs"][0]["status"], "FAILED");
        // The instance was left free.
        app.finished_task(&inst, true).await;
    }
}
