//! Bad input gets the spec's error, never a 500, a panic or a hang, and changes nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

const TASK: &str = "8abfa7b372160bfd0172165864064079";

per_engine! {
    #[tokio::test]
    async fn malformed_ids_are_named_in_path_order() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let p = &app.project;
        for (path, code) in [
            (format!("/v2/nothex/instances/{inst}/tasks"), "DMS.00400002"),
            (format!("/v2/{}/instances/{inst}/tasks", p.to_uppercase().replace('A', "G")), "DMS.00400002"),
            (format!("/v2/{p}/instances/not-a-uuid/tasks"), "DMS.00400030"),
            (format!("/v2/{p}/instances/{}/tasks", inst.replace('-', "")), "DMS.00400030"),
            (format!("/v2/{p}/instances/{inst}/tasks/short"), "DMS.00400070"),
            (format!("/v2/{p}/instances/{inst}/tasks/{}", TASK.to_uppercase()), "DMS.00400070"),
            (format!("/v2/{p}/instances/{inst}/tasks/{TASK}x/progress"), "DMS.00400070"),
        ] {
            app.get(&path).await.assert_error(400, code);
        }
        // A path that does not even decode is no URL this service serves.
        app.delete(&format!("/v2/{p}/instances/{inst}/scheduled-tasks/%FF")).await.assert_error(404, "DMS.00404001");
        for method in [Method::DELETE, Method::GET] {
            app.request(method, &format!("/v2/{p}/instances/x/tasks/{TASK}"), None).await.assert_error(400, "DMS.00400030");
        }
    }
}

per_engine! {
    #[tokio::test]
    async fn bad_query_values_are_refused() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        for (query, code) in [
            ("?limit=0", "DMS.00400062"),
            ("?limit=101", "DMS.00400062"),
            ("?limit=ten", "DMS.00400062"),
            ("?limit=-1", "DMS.00400062"),
            ("?start=-1", "DMS.00400062"),
            ("?start=1&offset=1", "DMS.00400062"),
            ("?offset=x", "DMS.00400062"),
            ("?begin_time=2024", "DMS.00400142"),
            ("?begin_time=20241301000000", "DMS.00400142"),
            ("?end_time=2024-01-01T00:00", "DMS.00400142"),
            ("?begin_time=20240102000000&end_time=20240101000000", "DMS.00400062"),
        ] {
            app.list_tasks(&inst, query).await.assert_error(400, code);
            app.list_scheduled(&inst, query).await.assert_error(400, code);
        }
        assert_eq!(app.list_tasks(&inst, "?limit=100&start=1").await.status, 200);
        assert_eq!(app.list_tasks(&inst, "?unknown=1").await.status, 200);
    }
}

per_engine! {
    #[tokio::test]
    async fn unknown_paths_and_wrong_methods_have_dms_errors() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        app.get("/v2").await.assert_error(404, "DMS.00404001");
        app.get("/v3").await.assert_error(404, "DMS.00404001");
        app.get(&format!("/v2/{}/instances/{inst}/tasks/{TASK}/nothing", app.project))
            .await
            .assert_error(404, "DMS.00404001");
        app.request(Method::POST, &format!("/v2/{}/instances/{inst}/tasks", app.project), None)
            .await
            .assert_error(405, "DMS.00405001");
        app.request(Method::PUT, &format!("/v2/{}/instances/{inst}/tasks/{TASK}", app.project), None)
            .await
            .assert_error(405, "DMS.00405001");
        app.request(Method::PATCH, &format!("/v2/{}/instances/{inst}/scheduled-tasks", app.project), None)
            .await
            .assert_error(405, "DMS.00405001");
    }
}

per_engine! {
    #[tokio::test]
    async fn malformed_and_oversized_bodies_are_refused_and_change_nothing() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let before = app.task_count(&inst).await;
        let configs = format!("{}/configs", app.instance_path(&inst));
        for body in ["", "{", "[]", "null", "\"text\"", "{\"kafka_configs\": [}"] {
            app.request(Method::PUT, &configs, Some(body.to_owned())).await.assert_error(400, "DMS.00400800");
        }
        let huge = format!("{{\"kafka_configs\": [{{\"name\": \"{}\", \"value\": \"1\"}}]}}", "x".repeat(1024 * 1024));
        app.request(Method::PUT, &configs, Some(huge)).await.assert_error(413, "APIGW.0201");
        let create = format!("/v2/kafka/{}/instances", app.project);
        app.request(Method::POST, &create, Some("{bad".into())).await.assert_error(400, "DMS.00400800");
        assert_eq!(app.task_count(&inst).await, before);
        assert_eq!(app.get(&format!("/v2/{}/instances", app.project)).await.json()["instance_num"], 1);
    }
}

per_engine! {
    #[tokio::test]
    async fn every_response_carries_a_request_id() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let responses = [
            app.get("/healthz").await,
            app.list_tasks(&inst, "").await,
            app.show_task(&inst, TASK).await,
            app.get("/nowhere").await,
            app.list_tasks(&inst, "?limit=0").await,
        ];
        let mut ids: Vec<String> = responses
            .iter()
            .map(|r| r.request_id.clone().unwrap_or_else(|| panic!("no X-Request-Id on {}", r.text)))
            .collect();
        assert!(ids.iter().all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())), "{ids:?}");
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), responses.len(), "each request has its own id");
    }
}

per_engine! {
    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let app = TestApp::spawn().await;
        assert_eq!(app.get("/healthz").await.status, 200);
        assert_eq!(app.get("/readyz").await.status, 200);
        app.create_instance().await;
        let metrics = app.get("/metrics").await;
        assert_eq!(metrics.status, 200);
        assert!(metrics.text.contains("kafka_tasks_http_request_duration_seconds"), "{}", metrics.text);
    }
}

per_engine! {
    #[tokio::test]
    async fn the_console_page_is_served_without_credentials() {
        let app = TestApp::spawn().await;
        let page = app.send(Method::GET, "/console", None, &[]).await;
        assert_eq!(page.status, 200);
        assert!(page.text.contains("<title>kafka-tasks console</title>"), "{}", page.text);
        assert!(page.text.contains("X-Auth-Token"), "the page authenticates with a token");
        let root = app.send(Method::GET, "/", None, &[]).await;
        assert_eq!(root.status, 200, "/ leads to the console");
    }
}

per_engine! {
    /// Kafka's own rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
    /// Executors split and quote what the task carries; a topic outside the rule (a tab, a
    /// newline) could become more than one topic there.
    #[tokio::test]
    async fn topic_names_outside_kafkas_rule_are_refused_and_create_nothing() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let before = app.task_count(&inst).await;
        let long = "t".repeat(250);
        for topic in ["", "a\tb", "a\nb", "orders\t9\nother", "a b", ".", "..", &long, "tópico", "a/b", "a\u{202e}b"] {
            let entry = json!({"topic": topic, "brokers": [0, 1]});
            app.reassign(&inst, json!({"reassignments": [entry]})).await.assert_error(400, "DMS.00400062");
            let with_a_good_one = json!({"reassignments": [{"topic": "fine", "brokers": [0]}, entry]});
            app.reassign(&inst, with_a_good_one).await.assert_error(400, "DMS.00400062");
            let later =
                json!({"reassignments": [entry], "is_schedule": true, "execute_at": app.clock.now_ms() + 3_600_000});
            app.reassign(&inst, later).await.assert_error(400, "DMS.00400062");
            let estimate = json!({"reassignments": [entry], "time_estimate": true});
            app.reassign(&inst, estimate).await.assert_error(400, "DMS.00400062");
        }
        assert_eq!(app.task_count(&inst).await, before);
        assert_eq!(app.list_scheduled(&inst, "").await.json()["job_count"], 0);

        let longest = "x".repeat(249);
        let good = ["orders.v2", "__consumer_offsets", "my-topic_1", "...", "-", &longest];
        let body = json!({"reassignments": good.iter().map(|t| json!({"topic": t, "brokers": [0]})).collect::<Vec<_>>()});
        let res = app.reassign(&inst, body).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let job = res.json()["job_id"].as_str().expect("job_id").to_owned();
        let task = app.wait_task_status(&inst, &job, "SUCCESS").await;
        let params: Value = serde_json::from_str(task["params"].as_str().expect("params")).expect("params are JSON");
        let kept: Vec<&str> =
            params["reassignments"].as_array().expect("a list").iter().filter_map(|r| r["topic"].as_str()).collect();
        assert_eq!(kept, good);
    }
}
