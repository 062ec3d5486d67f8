//! The engine: steps, failure, crash recovery and shutdown.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::TestApp;

per_engine! {
    #[tokio::test]
    async fn a_resize_beyond_the_resource_pool_fails_at_its_step_and_leaves_the_instance_as_it_was() {
        let app = TestApp::spawn_with(&["--time-scale", "0", "--storage-pool-gb", "1000"]).await;
        let inst = app.create_instance().await;
        let before = app.show_instance(&inst).await.json();
        let res = app.resize(&inst, json!({"oper_type": "storage", "new_storage_space": 2000})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let job = res.json()["job_id"].as_str().expect("job_id").to_owned();
        app.wait_task_status(&inst, &job, "FAILED").await;

        let p = app.progress(&inst, &job).await.json();
        let statues: Vec<_> = p["step_list"].as_array().expect("steps").iter().map(|s| s["statue"].clone()).collect();
        assert_eq!(statues, [json!("COMPLETED"), json!("FAILED"), json!("WAITING")]);
        assert_eq!(p["step_list"][1]["name"], "disk_expansion");
        assert_eq!(p["remain_time"], 0);
        let after = app.show_instance(&inst).await.json();
        assert_eq!(after["storage_space"], before["storage_space"]);
        assert_eq!(after["status"], "RUNNING");
        // Why, and what to do: on the task's run, under its new path and its old one alike; the DMS
        // record itself keeps exactly its fields.
        let run_path = |end: &str| format!("{}/tasks/{job}/{end}", app.instance_path(&inst));
        let run = app.get(&run_path("run")).await.json();
        assert_eq!(run["failure"]["step"], "disk_expansion", "{run}");
        assert_eq!(run["failure"]["step_index"], 1, "{run}");
        let reason = run["failure"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("not enough storage") && reason.contains("2000 GB") && reason.contains("1000 GB"), "{run}");
        assert!(run["failure"]["remedy"].as_str().is_some_and(|r| r.contains("at most 1000 GB")), "{run}");
        assert_eq!(run["reason"], run["failure"]["reason"], "{run}");
        assert_eq!(app.get(&run_path("executor")).await.json(), run, "the old path is an alias");
        let record = app.show_task(&inst, &job).await.json();
        let mut keys: Vec<&str> = record["tasks"][0].as_object().expect("task").keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["created_at", "id", "name", "params", "status", "updated_at", "user_id", "user_name"]);
        // The instance is free for the next operation, and a failed task can be deleted.
        app.finished_task(&inst, true).await;
        assert_eq!(app.delete_task(&inst, &job).await.status, 204);
    }
}

per_engine! {
    #[tokio::test]
    async fn progress_reports_the_running_step_and_an_honest_remaining_time() {
        // Restart: 2 s, 60 s, 5 s; at 0.05 that is 0.1 s, 3 s, 0.25 s.
        let app = TestApp::spawn_with(&["--time-scale", "0.05"]).await;
        let inst = app.create_instance().await;
        let task = app.restart_instance(&inst).await;
        let p = app.wait_step_running(&inst, &task, 1).await;
        assert_eq!(p["step_list"][0]["statue"], "COMPLETED");
        assert_eq!(p["step_list"][2]["statue"], "WAITING");
        assert!(p["step_list"][2].get("start_time").is_none());
        let pct = p["progress_percentage"].as_u64().expect("pct");
        assert!((1..99).contains(&pct), "{p}");
        let remain = p["remain_time"].as_u64().expect("remain");
        assert!((1..=4).contains(&remain), "3.35 s planned in all: {p}");
        assert_eq!(app.show_instance(&inst).await.json()["status"], "RESTARTING");
        app.wait_task_status(&inst, &task, "SUCCESS").await;
        assert_eq!(app.show_instance(&inst).await.json()["status"], "RUNNING");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_task_interrupted_by_kill_9_resumes_at_its_step_after_restart() {
        let flags = ["--time-scale", "0.05", "--lease-ms", "600"];
        let mut app = TestApp::spawn_process(&flags).await;
        let inst = app.create_instance().await;
        let task = app.restart_instance(&inst).await;
        // Wait until the long middle step runs, then kill the process without warning.
        let before = app.wait_step_running(&inst, &task, 1).await;
        app.kill9();

        app.start_again(&flags);
        let done = app.wait_task_status(&inst, &task, "SUCCESS").await;
        assert_eq!(done["id"], task.as_str());
        let after = app.progress(&inst, &task).await.json();
        // The first step ran once: its times are those recorded before the crash.
        assert_eq!(after["step_list"][0], before["step_list"][0]);
        assert!(after["step_list"].as_array().is_some_and(|s| s.iter().all(|s| s["statue"] == "COMPLETED")));
        assert_eq!(app.show_instance(&inst).await.json()["status"], "RUNNING");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_204_delete_survives_kill_9() {
        let mut app = TestApp::spawn_process(&["--time-scale", "0"]).await;
        let inst = app.create_instance().await;
        let task = app.finished_task(&inst, true).await;
        assert_eq!(app.delete_task(&inst, &task).await.status, 204);
        app.kill9();
        app.start_again(&["--time-scale", "0"]);
        app.show_task(&inst, &task).await.assert_error(404, "DMS.00404070");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_scheduled_task_due_while_the_service_was_down_runs_once_after_start() {
        let mut app = TestApp::spawn_process(&["--time-scale", "0"]).await;
        let inst = app.create_instance().await;
        let newer = app.newer_kernel().await;
        let at = chrono::Utc::now().timestamp_millis() + 1_200;
        let res = app.upgrade(&inst, json!({"is_schedule": true, "execute_at": at})).await;
        let id = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();
        app.kill9();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        app.start_again(&["--time-scale", "0"]);
        app.wait_task_status(&inst, &id, "SUCCESS").await;
        let all = app.list_tasks(&inst, "?limit=100").await.json();
        let upgrades = all["tasks"].as_array().map(|a| a.iter().filter(|t| t["name"] == "upgradeInstance").count());
        assert_eq!(upgrades, Some(1));
        assert_eq!(app.show_upgrade(&inst).await.json()["current_version"], newer.as_str());
    }
}

per_engine! {
    #[tokio::test]
    async fn sigterm_shuts_down_cleanly_and_running_tasks_resume_at_once() {
        let flags = ["--time-scale", "0.02", "--lease-ms", "60000"];
        let mut app = TestApp::spawn_process(&flags).await;
        let inst = app.create_instance().await;
        let task = app.restart_instance(&inst).await;
        let status = app.terminate();
        assert!(status.success(), "{status:?}");
        // The lease is a minute long, but a clean stop gave it back: the task finishes promptly.
        let started = Instant::now();
        app.start_again(&flags);
        app.wait_task_status(&inst, &task, "SUCCESS").await;
        assert!(started.elapsed() < Duration::from_secs(15));
    }
}
