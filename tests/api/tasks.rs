//! ListBackgroundTasks, ShowBackgroundTask, DeleteBackgroundTask and progress.

use serde_json::Value;

use crate::helpers::TestApp;

per_engine! {
    #[tokio::test]
    async fn a_finished_task_can_be_shown_deleted_and_is_then_gone() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let task = app.finished_task(&inst, true).await;

        let shown = app.show_task(&inst, &task).await;
        assert_eq!(shown.status, 200);
        let body = shown.json();
        assert_eq!(body["task_count"], "1");
        let t = &body["tasks"][0];
        assert_eq!(t["id"], task.as_str());
        assert_eq!(t["name"], "kafkaConfigModify");
        assert_eq!(t["status"], "SUCCESS");
        assert_eq!(t["user_name"], "admin");
        let params: Value =
            serde_json::from_str(t["params"].as_str().expect("params is a string")).expect("params is JSON");
        assert_eq!(params, serde_json::json!({"old_auto_status": false, "new_auto_status": true}));
        for field in ["id", "name", "user_name", "user_id", "params", "status", "created_at", "updated_at"] {
            assert!(t[field].is_string(), "{field} must be a string: {t}");
        }
        assert!(t["created_at"].as_str().is_some_and(|s| s.len() == 24 && s.ends_with('Z')), "{t}");

        let before = app.task_count(&inst).await;
        let del = app.delete_task(&inst, &task).await;
        assert_eq!(del.status, 204);
        assert_eq!(del.text, "");
        app.show_task(&inst, &task).await.assert_error(404, "DMS.00404070");
        app.delete_task(&inst, &task).await.assert_error(404, "DMS.00404070");
        assert_eq!(app.task_count(&inst).await, before - 1);
        let listed = app.list_tasks(&inst, "?limit=100").await.json();
        assert!(listed["tasks"].as_array().is_some_and(|ts| ts.iter().all(|t| t["id"] != task.as_str())));
    }
}

per_engine! {
    #[tokio::test]
    async fn a_running_task_cannot_be_deleted_and_stays_unchanged() {
        // Steps take seconds here, so the task is still running when we try.
        let app = TestApp::spawn_with(&["--time-scale", "0.1"]).await;
        let res = app
            .create_instance_with(serde_json::json!({
                "name": "slow-one", "engine_version": "2.7", "broker_num": 3, "storage_space": 300, "product_id": "p"
            }))
            .await;
        let inst = res.json()["instance_id"].as_str().expect("id").to_owned();
        let listed = app.list_tasks(&inst, "").await.json();
        let task = listed["tasks"][0]["id"].as_str().expect("create task").to_owned();
        let before = app.show_task(&inst, &task).await.json();
        assert!(["CREATED", "EXECUTING"].contains(&before["tasks"][0]["status"].as_str().unwrap_or("")));

        app.delete_task(&inst, &task).await.assert_error(400, "DMS.00400017");
        let after = app.show_task(&inst, &task).await;
        assert_eq!(after.status, 200);
        assert_eq!(after.json()["tasks"][0]["id"], task.as_str());
    }
}

per_engine! {
    #[tokio::test]
    async fn tasks_of_another_instance_or_an_unknown_instance_are_not_found() {
        let app = TestApp::spawn().await;
        let a = app.create_instance().await;
        let b = app.create_instance().await;
        let task = app.finished_task(&a, true).await;

        app.show_task(&b, &task).await.assert_error(404, "DMS.00404070");
        app.delete_task(&b, &task).await.assert_error(404, "DMS.00404070");
        app.progress(&b, &task).await.assert_error(404, "DMS.00404070");
        let unknown = "11111111-2222-3333-4444-555555555555";
        app.show_task(unknown, &task).await.assert_error(404, "DMS.00404022");
        app.delete_task(unknown, &task).await.assert_error(404, "DMS.00404022");
        app.list_tasks(unknown, "").await.assert_error(404, "DMS.00404022");
        assert_eq!(app.show_task(&a, &task).await.status, 200);
    }
}

per_engine! {
    #[tokio::test]
    async fn a_delete_is_durable_across_a_restart() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let task = app.finished_task(&inst, true).await;
        let kept = app.finished_task(&inst, false).await;
        assert_eq!(app.delete_task(&inst, &task).await.status, 204);

        let app = app.restart(&["--time-scale", "0"]).await;
        app.show_task(&inst, &task).await.assert_error(404, "DMS.00404070");
        assert_eq!(app.show_task(&inst, &kept).await.status, 200);
    }
}

per_engine! {
    #[tokio::test]
    #[allow(clippy::int_plus_one)] // Terraform's stop condition, kept verbatim.
    async fn paging_as_terraform_does_visits_every_task_once() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let mut expected = vec![];
        for i in 0..26 {
            expected.push(app.finished_task(&inst, i % 2 == 0).await);
        }
        let total = app.task_count(&inst).await;
        assert_eq!(total, 27, "26 toggles and the createInstance task");

        // Terraform: start=1&limit=10, then start += len(tasks) until task_count <= start-1.
        let mut seen: Vec<String> = vec![];
        let mut start = 1;
        loop {
            let page = app.list_tasks(&inst, &format!("?start={start}&limit=10")).await.json();
            let count: usize = page["task_count"].as_str().and_then(|s| s.parse().ok()).expect("task_count");
            assert_eq!(count, total);
            let tasks = page["tasks"].as_array().expect("tasks").clone();
            seen.extend(tasks.iter().map(|t| t["id"].as_str().unwrap_or_default().to_owned()));
            start += tasks.len();
            if count <= start - 1 {
                break;
            }
            assert!(!tasks.is_empty(), "an empty page before the end");
        }
        assert_eq!(seen.len(), total);
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), total, "no task twice");
        // Newest first: the last toggle leads, the createInstance task closes.
        assert_eq!(seen.first(), expected.last());
        assert_eq!(app.show_task(&inst, &seen[total - 1]).await.json()["tasks"][0]["name"], "createInstance");
    }
}

per_engine! {
    #[tokio::test]
    async fn start_and_offset_are_one_based_and_a_page_past_the_end_is_empty() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        for i in 0..3 {
            app.finished_task(&inst, i % 2 == 0).await;
        }
        let first = app.list_tasks(&inst, "?start=1&limit=2").await.json();
        let zero = app.list_tasks(&inst, "?start=0&limit=2").await.json();
        let offset = app.list_tasks(&inst, "?offset=1&limit=2").await.json();
        assert_eq!(first, zero);
        assert_eq!(first, offset);
        assert_eq!(first["tasks"].as_array().map(Vec::len), Some(2));
        let second = app.list_tasks(&inst, "?start=2&limit=2").await.json();
        assert_eq!(second["tasks"][0]["id"], first["tasks"][1]["id"]);
        let past = app.list_tasks(&inst, "?start=50").await.json();
        assert_eq!(past["task_count"], "4");
        assert_eq!(past["tasks"], serde_json::json!([]));
        let default = app.list_tasks(&inst, "").await.json();
        assert_eq!(default["tasks"].as_array().map(Vec::len), Some(4));
    }
}

per_engine! {
    #[tokio::test]
    async fn time_filters_are_inclusive_to_the_second() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let task = app.finished_task(&inst, true).await;
        let created =
            app.show_task(&inst, &task).await.json()["tasks"][0]["created_at"].as_str().expect("created").to_owned();
        // 2026-11-27T21:46:07.225Z → 20261127214607
        let second: String = created.chars().filter(char::is_ascii_digit).take(14).collect();
        let next = {
            let t = chrono::NaiveDateTime::parse_from_str(&second, "%Y%m%d%H%M%S").expect("time")
                + chrono::Duration::seconds(1);
            t.format("%Y%m%d%H%M%S").to_string()
        };
        let prev = {
            let t = chrono::NaiveDateTime::parse_from_str(&second, "%Y%m%d%H%M%S").expect("time")
                - chrono::Duration::seconds(1);
            t.format("%Y%m%d%H%M%S").to_string()
        };
        let ids = |v: Value| -> Vec<String> {
            v["tasks"]
                .as_array()
                .map(|a| a.iter().map(|t| t["id"].as_str().unwrap_or_default().to_owned()).collect())
                .unwrap_or_default()
        };
        let has = |v: Value| ids(v).contains(&task);
        assert!(has(app.list_tasks(&inst, &format!("?begin_time={second}&end_time={second}")).await.json()));
        assert!(has(app.list_tasks(&inst, &format!("?begin_time={second}")).await.json()));
        assert!(has(app.list_tasks(&inst, &format!("?end_time={second}")).await.json()));
        assert!(!has(app.list_tasks(&inst, &format!("?begin_time={next}")).await.json()));
        assert!(!has(app.list_tasks(&inst, &format!("?end_time={prev}")).await.json()));
        let none = app.list_tasks(&inst, "?end_time=20000101000000").await.json();
        assert_eq!(none["task_count"], "0");
    }
}

per_engine! {
    #[tokio::test]
    async fn progress_lists_every_step_with_epoch_millisecond_times() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let res = app.resize(&inst, serde_json::json!({"oper_type": "storage", "new_storage_space": 600})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let job = res.json()["job_id"].as_str().expect("job_id").to_owned();
        app.wait_task_status(&inst, &job, "SUCCESS").await;
        let p = app.progress(&inst, &job).await.json();
        assert_eq!(p["progress_percentage"], 100);
        assert_eq!(p["remain_time"], 0);
        let steps = p["step_list"].as_array().expect("step_list");
        let names: Vec<&str> = steps.iter().filter_map(|s| s["name"].as_str()).collect();
        assert_eq!(names, ["pre_check", "disk_expansion", "rolling_scaling"]);
        let mut last_end = 0;
        for s in steps {
            assert_eq!(s["statue"], "COMPLETED", "{s}");
            let (start, end) = (s["start_time"].as_i64().expect("start"), s["end_time"].as_i64().expect("end"));
            assert!(start > 1_600_000_000_000 && start <= end && start >= last_end, "{p}");
            last_end = end;
        }
        assert_eq!(app.show_instance(&inst).await.json()["storage_space"], 600);
    }
}
