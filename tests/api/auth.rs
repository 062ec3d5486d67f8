//! Authentication, project isolation, roles, tokens and the audit log, over HTTP with
//! real signatures.

use kafka_tasks::domain::Timestamp;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PROJECT, TestApp};
use kafka_tasks::domain::Role;

const OTHER_PROJECT: &str = "fedcba9876543210fedcba9876543210";

fn header_mut<'a>(headers: &'a mut [(String, String)], name: &str) -> &'a mut String {
    &mut headers.iter_mut().find(|(k, _)| k == name).expect("header present").1
}

per_engine! {
    #[tokio::test]
    async fn requests_without_credentials_are_refused_by_the_gateway() {
        let app = TestApp::spawn().await;
        let path = format!("/v2/{PROJECT}/instances");
        let res = app.send(Method::GET, &path, None, &[]).await;
        res.assert_error(401, "APIGW.0301");
        let body = res.json();
        assert_eq!(body["error_msg"], "Incorrect IAM authentication information: x-auth-token not found");
        assert_eq!(body["request_id"].as_str(), res.request_id.as_deref());
        let garbled = [("authorization".to_owned(), "SDK-HMAC-SHA256 nonsense".to_owned())];
        app.send(Method::GET, &path, None, &garbled).await.assert_error(401, "APIGW.0301");
        // Health and metrics need no credentials.
        assert_eq!(app.send(Method::GET, "/healthz", None, &[]).await.status, 200);
    }
}

per_engine! {
    #[tokio::test]
    async fn one_changed_byte_anywhere_the_signature_covers_is_refused() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let now = app.clock.now_ms();
        let admin = app.admin.clone();
        let list = format!("{}/tasks?limit=10", app.instance_path(&inst));

        // The untouched request passes.
        let ok = app.signed_headers(&admin, &Method::GET, &list, "", now);
        assert_eq!(app.send(Method::GET, &list, None, &ok).await.status, 200);

        // Path.
        let task_a = format!("{}/tasks/0123456789abcdef0123456789abcdef", app.instance_path(&inst));
        let task_b = format!("{}/tasks/0123456789abcdef0123456789abcdee", app.instance_path(&inst));
        let h = app.signed_headers(&admin, &Method::GET, &task_a, "", now);
        app.send(Method::GET, &task_b, None, &h).await.assert_error(401, "APIGW.0301");
        // Query.
        let tampered = list.replace("limit=10", "limit=11");
        app.send(Method::GET, &tampered, None, &ok).await.assert_error(401, "APIGW.0301");
        // Body.
        let configs = format!("{}/configs", app.instance_path(&inst));
        let body = json!({"kafka_configs": [{"name": "log.retention.hours", "value": "24"}]}).to_string();
        let h = app.signed_headers(&admin, &Method::PUT, &configs, &body, now);
        let before = app.task_count(&inst).await;
        app.send(Method::PUT, &configs, Some(body.replace("24", "25")), &h).await.assert_error(401, "APIGW.0301");
        assert_eq!(app.task_count(&inst).await, before, "a refused request changes nothing");
        // A signed header's value.
        let mut h = ok.clone();
        header_mut(&mut h, "content-type").push(' ');
        header_mut(&mut h, "content-type").insert(0, 'x');
        app.send(Method::GET, &list, None, &h).await.assert_error(401, "APIGW.0301");
        // The date, by one second.
        let mut h = ok.clone();
        let date = header_mut(&mut h, "x-sdk-date");
        *date = kafka_tasks::auth::signature::sdk_date(now + 1000);
        app.send(Method::GET, &list, None, &h).await.assert_error(401, "APIGW.0301");
        // The access key.
        let mut h = ok.clone();
        let auth = header_mut(&mut h, "authorization");
        *auth = auth.replace(&admin.access_key, "AAAAAAAAAAAAAAAAAAAA");
        let res = app.send(Method::GET, &list, None, &h).await;
        res.assert_error(401, "APIGW.0301");
        assert!(res.json()["error_msg"].as_str().is_some_and(|m| m.ends_with("verify aksk signature fail")));
    }
}

per_engine! {
    #[tokio::test]
    async fn a_date_more_than_15_minutes_off_is_refused() {
        let app = TestApp::spawn().await;
        let path = format!("/v2/{PROJECT}/instances");
        let now = app.clock.now_ms();
        for offset in [-16 * 60_000, 16 * 60_000] {
            let h = app.signed_headers(&app.admin, &Method::GET, &path, "", now + offset);
            let res = app.send(Method::GET, &path, None, &h).await;
            res.assert_error(401, "APIGW.0301");
            assert!(res.text.contains("15 minutes"), "{}", res.text);
        }
        let h = app.signed_headers(&app.admin, &Method::GET, &path, "", now - 14 * 60_000);
        assert_eq!(app.send(Method::GET, &path, None, &h).await.status, 200);
    }
}

per_engine! {
    #[tokio::test]
    async fn the_date_must_be_signed() {
        let app = TestApp::spawn().await;
        let path = format!("/v2/{PROJECT}/instances");
        let mut h = app.signed_headers(&app.admin, &Method::GET, &path, "", app.clock.now_ms());
        let auth = header_mut(&mut h, "authorization");
        *auth = auth.replace(";x-sdk-date", "");
        let res = app.send(Method::GET, &path, None, &h).await;
        res.assert_error(401, "APIGW.0301");
        assert!(res.text.contains("x-sdk-date"), "{}", res.text);
    }
}

per_engine! {
    #[tokio::test]
    async fn a_revoked_key_stops_working() {
        let app = TestApp::spawn().await;
        let cred = app.credential(PROJECT, "alice", Role::Operator).await;
        let path = format!("/v2/{PROJECT}/instances");
        assert_eq!(app.request_as(&cred, Method::GET, &path, None).await.status, 200);
        let storage = app.db.storage().await;
        assert!(storage.credentials.revoke_credential(&cred.access_key, Timestamp::from_ms(app.clock.now_ms())).await.expect("revoked"));
        // Every node rereads a credential at least this often.
        app.clock.advance(kafka_tasks::auth::CREDENTIAL_CACHE_MS);
        let res = app.request_as(&cred, Method::GET, &path, None).await;
        res.assert_error(401, "APIGW.0301");
        assert!(res.text.contains("verify aksk signature fail"));
    }
}

per_engine! {
    #[tokio::test]
    async fn roles_decide_what_a_key_may_do() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let task = app.finished_task(&inst, true).await;
        let reader = app.credential(PROJECT, "rita", Role::Readonly).await;
        let operator = app.credential(PROJECT, "otto", Role::Operator).await;
        let tasks = format!("{}/tasks", app.instance_path(&inst));
        let one = format!("{tasks}/{task}");

        assert_eq!(app.request_as(&reader, Method::GET, &tasks, None).await.status, 200);
        assert_eq!(app.request_as(&reader, Method::GET, &format!("{one}/progress"), None).await.status, 200);
        app.request_as(&reader, Method::DELETE, &one, None).await.assert_error(403, "DMS.00403003");
        assert_eq!(app.show_task(&inst, &task).await.status, 200, "the refused delete changed nothing");
        let toggle = json!({"enable_auto_topic": false}).to_string();
        let autotopic = format!("{}/autotopic", app.instance_path(&inst));
        app.request_as(&reader, Method::POST, &autotopic, Some(toggle.clone())).await.assert_error(403, "DMS.00403003");

        // An operator runs operations and deletes tasks, but does not create or delete instances.
        let create =
            json!({"name": "kafka-op", "engine_version": "2.7", "broker_num": 3, "storage_space": 300, "product_id": "p"});
        let res = app
            .request_as(&operator, Method::POST, &format!("/v2/kafka/{PROJECT}/instances"), Some(create.to_string()))
            .await;
        res.assert_error(403, "DMS.00403003");
        app.request_as(&operator, Method::DELETE, &app.instance_path(&inst), None).await.assert_error(403, "DMS.00403003");
        assert_eq!(app.request_as(&operator, Method::DELETE, &one, None).await.status, 204);
        let res = app.request_as(&operator, Method::POST, &autotopic, Some(toggle)).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let job = res.json()["job_id"].as_str().expect("job").to_owned();
        let shown = app.wait_task_status(&inst, &job, "SUCCESS").await;
        assert_eq!(shown["user_name"], "otto", "the task records who started it");
        assert_eq!(shown["user_id"].as_str().map(str::len), Some(32));
    }
}

per_engine! {
    #[tokio::test]
    async fn a_project_sees_nothing_of_another() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let task = app.finished_task(&inst, true).await;
        let other = app.credential(OTHER_PROJECT, "bob", Role::Admin).await;

        // B's key on A's path: the gateway refuses.
        let a_path = format!("/v2/{PROJECT}/instances/{inst}/tasks/{task}");
        app.request_as(&other, Method::GET, &a_path, None).await.assert_error(403, "APIGW.0302");
        app.request_as(&other, Method::DELETE, &a_path, None).await.assert_error(403, "APIGW.0302");
        // B's own path with A's ids: exactly as if they did not exist.
        let unknown = "11111111-2222-3333-4444-555555555555";
        for (real, missing) in [
            (
                format!("/v2/{OTHER_PROJECT}/instances/{inst}/tasks/{task}"),
                format!("/v2/{OTHER_PROJECT}/instances/{unknown}/tasks/{task}"),
            ),
            (format!("/v2/{OTHER_PROJECT}/instances/{inst}"), format!("/v2/{OTHER_PROJECT}/instances/{unknown}")),
            (
                format!("/v2/{OTHER_PROJECT}/instances/{inst}/scheduled-tasks"),
                format!("/v2/{OTHER_PROJECT}/instances/{unknown}/scheduled-tasks"),
            ),
        ] {
            for method in [Method::GET, Method::DELETE] {
                if method == Method::DELETE && real.ends_with("scheduled-tasks") {
                    continue;
                }
                let a = app.request_as(&other, method.clone(), &real, None).await;
                let b = app.request_as(&other, method, &missing, None).await;
                a.assert_error(404, "DMS.00404022");
                assert_eq!((a.status, a.text), (b.status, b.text));
            }
        }
        assert_eq!(app.show_task(&inst, &task).await.status, 200);
        // X-Project-Id, when sent, must be the key's project, even when it is signed.
        let path = format!("/v2/{PROJECT}/instances");
        let mut claims_other = app.admin.clone();
        claims_other.project_id = OTHER_PROJECT.into();
        let h = app.signed_headers(&claims_other, &Method::GET, &path, "", app.clock.now_ms());
        app.send(Method::GET, &path, None, &h).await.assert_error(403, "APIGW.0302");
    }
}

async fn get_token(app: &TestApp) -> String {
    let body = json!({"auth": {"identity": {"methods": ["hw_ak_sk"]}, "scope": {"project": {"id": PROJECT}}}});
    let res = app.request(Method::POST, "/v3/auth/tokens", Some(body.to_string())).await;
    assert_eq!(res.status, 201, "{}", res.text);
    assert_eq!(res.json()["token"]["project"]["id"], PROJECT);
    let headers =
        app.signed_headers(&app.admin, &Method::POST, "/v3/auth/tokens", &body.to_string(), app.clock.now_ms());
    let raw = kafka_tasks::tls::http_client()
        .post(format!("{}/v3/auth/tokens", app.base))
        .headers(headers.iter().map(|(k, v)| (k.parse().expect("name"), v.parse().expect("value"))).collect())
        .body(body.to_string())
        .send()
        .await
        .expect("sent");
    raw.headers().get("x-subject-token").and_then(|v| v.to_str().ok()).expect("X-Subject-Token").to_owned()
}

per_engine! {
    #[tokio::test]
    async fn tokens_work_until_they_expire() {
        let app = TestApp::spawn().await;
        let token = get_token(&app).await;
        let path = format!("/v2/{PROJECT}/instances");
        let with_token = |t: &str| vec![("x-auth-token".to_owned(), t.to_owned())];
        assert_eq!(app.send(Method::GET, &path, None, &with_token(&token)).await.status, 200);
        let mut forged = token.clone();
        forged.replace_range(10..11, if &token[10..11] == "a" { "b" } else { "a" });
        app.send(Method::GET, &path, None, &with_token(&forged)).await.assert_error(401, "APIGW.0301");

        app.clock.advance(23 * 3_600_000);
        assert_eq!(app.send(Method::GET, &path, None, &with_token(&token)).await.status, 200);
        app.clock.advance(3_600_000 + 1);
        let res = app.send(Method::GET, &path, None, &with_token(&token)).await;
        res.assert_error(401, "APIGW.0301");
        assert!(res.text.contains("token expires"), "{}", res.text);
    }
}

per_engine! {
    #[tokio::test]
    async fn revoking_a_key_invalidates_its_tokens_and_scopes_are_checked() {
        let app = TestApp::spawn().await;
        let token = get_token(&app).await;
        let path = format!("/v2/{PROJECT}/instances");
        let h = vec![("x-auth-token".to_owned(), token)];
        assert_eq!(app.send(Method::GET, &path, None, &h).await.status, 200);
        let body = json!({"auth": {"scope": {"project": {"id": OTHER_PROJECT}}}}).to_string();
        app.request(Method::POST, "/v3/auth/tokens", Some(body)).await.assert_error(403, "APIGW.0302");
        app.request(Method::POST, "/v3/auth/tokens", Some("{}".into())).await.assert_error(400, "DMS.00400800");

        let storage = app.db.storage().await;
        storage.credentials.revoke_credential(&app.admin.access_key, Timestamp::from_ms(app.clock.now_ms())).await.expect("revoked");
        app.clock.advance(kafka_tasks::auth::CREDENTIAL_CACHE_MS);
        app.send(Method::GET, &path, None, &h).await.assert_error(401, "APIGW.0301");
    }
}

per_engine! {
    #[tokio::test]
    async fn every_mutation_leaves_an_audit_event_and_a_delete_keeps_the_record() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let task = app.finished_task(&inst, true).await;
        let reader = app.credential(PROJECT, "rita", Role::Readonly).await;
        app.request_as(&reader, Method::DELETE, &format!("{}/tasks/{task}", app.instance_path(&inst)), None).await;
        assert_eq!(app.delete_task(&inst, &task).await.status, 204);
        app.list_tasks(&inst, "").await; // reads are not audited

        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-tasks"))
            .args(["audit", "list", "--project-id", PROJECT, "--database"])
            .arg(&app.db.url)
            .output()
            .expect("cli runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let events: Vec<Value> =
            String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
        let actions: Vec<(&str, u64)> =
            events.iter().map(|e| (e["action"].as_str().unwrap_or(""), e["status"].as_u64().unwrap_or(0))).collect();
        assert_eq!(
            actions,
            [
                ("dms:instance:create", 200),
                ("dms:instance:modify", 200),
                ("dms:instance:deleteBackgroundTask", 403),
                ("dms:instance:deleteBackgroundTask", 204),
            ]
        );
        assert_eq!(events[0]["target"], inst.as_str());
        assert_eq!(events[2]["user_name"], "rita");
        let deleted = &events[3];
        assert_eq!(deleted["user_name"], "admin");
        assert_eq!(deleted["access_key"], app.admin.access_key.as_str());
        assert_eq!(deleted["target"], task.as_str());
        assert_eq!(deleted["request_id"].as_str().map(str::len), Some(32));
        let record = &deleted["detail"]["deleted_task"];
        assert_eq!(record["id"], task.as_str());
        assert_eq!(record["name"], "kafkaConfigModify");
        assert_eq!(record["status"], "SUCCESS");
        assert_eq!(record["instance_id"], inst.as_str());
        assert!(record["params"].as_str().is_some_and(|p| p.contains("new_auto_status")));
    }
}

fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kafka-tasks"))
        .args(args)
        .args(["--database", &app.db.url])
        .output()
        .expect("cli runs")
}

per_engine! {
    #[tokio::test]
    async fn credentials_are_managed_from_the_command_line_and_secrets_stay_private() {
        let app = TestApp::spawn().await;
        let key_file = app.db.key_file();
        let key_file = key_file.to_str().expect("utf-8");

        // The first key and the master key were written for the owner only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["initial-credential.json", "master.key"] {
                let mode = std::fs::metadata(app.db.dir.path().join(f)).expect("file").permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }

        let out = cli(
            &app,
            &[
                "credentials",
                "create",
                "--project-id",
                PROJECT,
                "--user-name",
                "cli-user",
                "--role",
                "readonly",
                "--master-key-file",
                key_file,
            ],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let created: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        let (ak, sk) = (created["access_key"].as_str().expect("ak"), created["secret_key"].as_str().expect("sk"));
        assert_eq!(created["role"], "readonly");
        assert_eq!(sk.len(), 40);

        let listed = cli(&app, &["credentials", "list"]);
        let text = String::from_utf8_lossy(&listed.stdout);
        assert!(text.contains(ak) && !text.contains(sk) && !text.contains("secret"), "{text}");
        assert_eq!(text.lines().count(), 2, "the first admin key and the new one");

        let token = cli(&app, &["token", "create", "--access-key", ak, "--master-key-file", key_file]);
        assert!(token.status.success());
        let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
        let h = vec![("x-auth-token".to_owned(), token)];
        assert_eq!(app.send(Method::GET, &format!("/v2/{PROJECT}/instances"), None, &h).await.status, 200);

        assert!(cli(&app, &["credentials", "revoke", ak]).status.success());
        assert!(!cli(&app, &["credentials", "revoke", ak]).status.success(), "already revoked");
        assert!(!cli(&app, &["token", "create", "--access-key", ak, "--master-key-file", key_file]).status.success());
        let bad = cli(
            &app,
            &["credentials", "create", "--project-id", "nothex", "--user-name", "x", "--master-key-file", key_file],
        );
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("--project-id"));
    }
}
