//! The attacks that go through authentication, each replayed against the real server:
//! body swaps under a captured signature, lockout by a stranger, token chains, duplicate query
//! keys, per-key rate limits and unauthenticated bodies.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::helpers::{PROJECT, TestApp, sha256};
use kafka_tasks::auth::signature::UNSIGNED_PAYLOAD;
use kafka_tasks::domain::Role;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// The instance is still there and idle, with no task added.
async fn assert_untouched(app: &TestApp, inst: &str, tasks_before: usize) {
    let shown = app.show_instance(inst).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(shown.json()["status"], "RUNNING", "{}", shown.text);
    assert_eq!(app.task_count(inst).await, tasks_before, "a refused request changes nothing");
}

per_engine! {
    #[tokio::test]
    async fn a_captured_request_cannot_be_resent_with_another_body_under_an_unsigned_content_hash() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let before = app.task_count(&inst).await;
        let path = format!("/v2/{PROJECT}/instances/action");
        let restart = json!({"action": "restart", "instances": [inst]}).to_string();
        let delete = json!({"action": "delete", "instances": [inst]}).to_string();
        // Captured: an admin's restart, signed the Python SDK's way (no content-hash header).
        let mut h = app.signed_headers(&app.admin, &Method::POST, &path, &restart, app.clock.now_ms());
        // Resent with a delete body and the restart body's hash in an unsigned header.
        h.push(("x-sdk-content-sha256".into(), sha256(&restart)));
        let res = app.send(Method::POST, &path, Some(delete), &h).await;
        res.assert_error(401, "APIGW.0301");
        assert!(res.text.contains("verify aksk signature fail"), "{}", res.text);
        assert_untouched(&app, &inst, before).await;
    }
}

per_engine! {
    #[tokio::test]
    async fn a_signed_content_hash_that_lies_about_the_body_is_refused() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let before = app.task_count(&inst).await;
        let path = format!("/v2/{PROJECT}/instances/action");
        let restart = json!({"action": "restart", "instances": [inst]}).to_string();
        let delete = json!({"action": "delete", "instances": [inst]}).to_string();
        // Captured: signed the Go SDK's way, the content hash a signed header and the payload.
        let hash = sha256(&restart);
        let h = app.signed_headers_over(
            &app.admin,
            &Method::POST,
            &path,
            &[("x-sdk-content-sha256", &hash)],
            &hash,
            app.clock.now_ms(),
        );
        let res = app.send(Method::POST, &path, Some(delete), &h).await;
        res.assert_error(401, "APIGW.0301");
        assert_untouched(&app, &inst, before).await;
        // The same headers with the body they describe pass: the Go SDK's form is accepted.
        let res = app.send(Method::POST, &path, Some(restart), &h).await;
        assert_eq!(res.status, 200, "{}", res.text);
    }
}

per_engine! {
    #[tokio::test]
    async fn unsigned_payload_with_a_body_is_refused_unless_the_operator_allows_it() {
        for (flags, allowed) in
            [(&["--time-scale", "0"][..], false), (&["--time-scale", "0", "--allow-unsigned-payload"], true)]
        {
            let app = TestApp::spawn_with(flags).await;
            let path = format!("/v2/{PROJECT}/instances/action");
            let body = json!({"action": "restart", "instances": []}).to_string();
            let h = app.signed_headers_over(
                &app.admin,
                &Method::POST,
                &path,
                &[("x-sdk-content-sha256", UNSIGNED_PAYLOAD)],
                UNSIGNED_PAYLOAD,
                app.clock.now_ms(),
            );
            let res = app.send(Method::POST, &path, Some(body), &h).await;
            if allowed {
                assert_ne!(res.status, 401, "{}", res.text);
            } else {
                res.assert_error(401, "APIGW.0301");
            }
            // Without a body there is nothing left unsigned: always accepted.
            let list = format!("/v2/{PROJECT}/instances");
            let h = app.signed_headers_over(
                &app.admin,
                &Method::GET,
                &list,
                &[("x-sdk-content-sha256", UNSIGNED_PAYLOAD)],
                UNSIGNED_PAYLOAD,
                app.clock.now_ms(),
            );
            assert_eq!(app.send(Method::GET, &list, None, &h).await.status, 200);
        }
    }
}

per_engine! {
    #[tokio::test]
    async fn a_stranger_with_the_owners_access_key_slows_only_their_own_guesses() {
        let app = TestApp::spawn_with(&["--time-scale", "0", "--auth-failure-limit", "5"]).await;
        let owner = app.credential(PROJECT, "victim", Role::Operator).await;
        let path = format!("/v2/{PROJECT}/instances");
        let mut guess = owner.clone();
        guess.secret_key = "not-the-secret".into();
        let stranger = ip("127.0.0.2");
        let mut statuses = Vec::new();
        let mut retry_after = None;
        for _ in 0..20 {
            let h = app.signed_headers(&guess, &Method::GET, &path, "", app.clock.now_ms());
            let res = app.send_from(stranger, Method::GET, &path, None, &h).await;
            statuses.push(res.status().as_u16());
            if res.status() == 429 {
                retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let body: serde_json::Value = res.json().await.expect("JSON");
                assert_eq!(body["error_code"], "APIGW.0308", "{body}");
                assert_eq!(body["error_msg"], "The throttling threshold has been reached.");
            }
        }
        assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
        assert_eq!(statuses[5..], [429; 15], "{statuses:?}");
        assert!(retry_after.and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| (1..=60).contains(&s)));

        // The owner, from anywhere (even the stranger's address), is never locked out.
        for from in [ip("127.0.0.1"), stranger] {
            let h = app.signed_headers(&owner, &Method::GET, &path, "", app.clock.now_ms());
            let res = app.send_from(from, Method::GET, &path, None, &h).await;
            assert_eq!(res.status(), 200, "from {from}");
        }
        // And the failures were never written to the database.
        let stored = app.db.storage().await.credentials.get_credential(&owner.access_key).await.expect("read");
        let stored = stored.expect("the key");
        assert_eq!((stored.failed_attempts, stored.locked_until), (0, None));

        // Every failure is counted, by reason, and the throttled ones too.
        let metrics = app.send(Method::GET, "/metrics", None, &[]).await.text;
        assert!(metrics.contains(r#"kafka_tasks_auth_failures_total{reason="bad_signature"}"#), "{metrics}");
        assert!(metrics.contains(r#"kafka_tasks_rate_limited_total{reason="auth_failures"}"#), "{metrics}");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_token_cannot_mint_a_token() {
        let app = TestApp::spawn().await;
        let body = json!({"auth": {"identity": {"methods": ["hw_ak_sk"]}, "scope": {"project": {"id": PROJECT}}}});
        let h = app.signed_headers(&app.admin, &Method::POST, "/v3/auth/tokens", &body.to_string(), app.clock.now_ms());
        let res = app.send_from(ip("127.0.0.1"), Method::POST, "/v3/auth/tokens", Some(body.to_string()), &h).await;
        assert_eq!(res.status(), 201);
        let token = res.headers().get("x-subject-token").and_then(|v| v.to_str().ok()).expect("token").to_owned();

        let with_token = vec![("x-auth-token".to_owned(), token), ("content-type".into(), "application/json".into())];
        let res = app.send(Method::POST, "/v3/auth/tokens", Some(body.to_string()), &with_token).await;
        res.assert_error(401, "APIGW.0301");
        assert!(res.text.contains("a token cannot be used to request a token"), "{}", res.text);
        // The token itself still works for everything else.
        assert_eq!(app.send(Method::GET, &format!("/v2/{PROJECT}/instances"), None, &with_token).await.status, 200);
    }
}

per_engine! {
    #[tokio::test]
    async fn a_query_key_given_twice_is_refused_by_name() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        for query in ["?limit=1&limit=3", "?limit=3&limit=1"] {
            let res = app.list_tasks(&inst, query).await;
            res.assert_error(400, "DMS.00400062");
            assert!(res.json()["error_msg"].as_str().is_some_and(|m| m.contains("limit")), "{}", res.text);
        }
        app.newer_kernel().await;
        let res = app
            .upgrade(&inst, json!({"is_schedule": true, "execute_at": chrono::Utc::now().timestamp_millis() + 60_000}))
            .await;
        let id = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();
        let res = app.update_scheduled(&inst, &id, "?status=CANCELLED&status=CANCELLED").await;
        res.assert_error(400, "DMS.00400062");
        assert!(res.text.contains("status"), "{}", res.text);
        let job = &app.list_scheduled(&inst, "").await.json()["jobs"][0];
        assert_ne!(job["status"], "CANCELLED", "{job}");

        // A route whose handler reads no query is covered too: the gateway checks every request.
        let task = app.finished_task(&inst, true).await;
        let res = app.delete(&format!("/v2/{PROJECT}/instances/{inst}/tasks/{task}?x=1&x=2")).await;
        res.assert_error(400, "DMS.00400062");
        assert_eq!(app.show_task(&inst, &task).await.status, 200, "the refused delete removed nothing");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_key_over_its_rate_gets_429_and_other_keys_do_not() {
        let app = TestApp::spawn_with(&["--time-scale", "0", "--rate-limit-per-key", "1", "--rate-limit-burst", "5"]).await;
        let other = app.credential(PROJECT, "other", Role::Readonly).await;
        let path = format!("/v2/{PROJECT}/instances");
        let mut statuses = Vec::new();
        let mut retry_after = None;
        for _ in 0..10 {
            let h = app.signed_headers(&app.admin, &Method::GET, &path, "", app.clock.now_ms());
            let res = app.send_from(ip("127.0.0.1"), Method::GET, &path, None, &h).await;
            statuses.push(res.status().as_u16());
            if res.status() == 429 {
                retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let body: serde_json::Value = res.json().await.expect("JSON");
                assert_eq!(body["error_code"], "APIGW.0308", "{body}");
            }
        }
        assert_eq!(statuses[..5], [200; 5], "{statuses:?}");
        assert!(statuses[5..].contains(&429), "{statuses:?}");
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(app.request_as(&other, Method::GET, &path, None).await.status, 200, "another key is unaffected");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_large_body_from_an_unknown_key_is_refused_before_it_is_read() {
        let app = TestApp::spawn().await;
        let addr = app.base.trim_start_matches("http://").to_owned();
        let date = kafka_tasks::auth::signature::sdk_date(app.clock.now_ms());
        let head = format!(
            "POST /v2/{PROJECT}/instances/action HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             x-sdk-date: {date}\r\ncontent-length: 204800\r\nauthorization: SDK-HMAC-SHA256 \
             Access=UNKNOWNACCESSKEY0000, SignedHeaders=host;x-sdk-date, Signature={}\r\n\r\n",
            "0".repeat(64)
        );
        let started = Instant::now();
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(&addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            s.write_all(head.as_bytes()).expect("headers sent");
            // No body follows: an answer can only come from a server that did not wait for it.
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .await
        .expect("joined");
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
        assert!(answer.contains("APIGW.0301"), "{answer:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
}

per_engine! {
    #[tokio::test]
    async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
        let path = format!("/v2/{PROJECT}/instances");
        for trusted in [false, true] {
            let mut flags = vec!["--time-scale", "0", "--auth-failure-limit", "2"];
            if trusted {
                flags.extend(["--trusted-proxies", "127.0.0.1/32"]);
            }
            let app = TestApp::spawn_with(&flags).await;
            let mut guess = app.admin.clone();
            guess.secret_key = "not-the-secret".into();
            let status_as = |client: &'static str| {
                let mut h = app.signed_headers(&guess, &Method::GET, &path, "", app.clock.now_ms());
                h.push(("x-forwarded-for".into(), format!("198.51.100.77, {client}")));
                let path = path.clone();
                let app = &app;
                async move { app.send_from(ip("127.0.0.1"), Method::GET, &path, None, &h).await.status().as_u16() }
            };
            for _ in 0..2 {
                assert_eq!(status_as("203.0.113.1").await, 401);
            }
            assert_eq!(status_as("203.0.113.1").await, 429);
            // Another client behind the proxy has its own count; without a trusted proxy the header is
            // the sender's own claim and changes nothing.
            assert_eq!(status_as("203.0.113.2").await, if trusted { 401 } else { 429 }, "trusted: {trusted}");
        }
    }
}

/// The headers of a signed-looking request under `ak` whose signature is made up (no secret
/// needed): its body is read before the signature can be checked.
fn forged_auth(app: &TestApp, ak: &str) -> String {
    let date = kafka_tasks::auth::signature::sdk_date(app.clock.now_ms());
    format!(
        "X-Sdk-Date: {date}\r\nAuthorization: SDK-HMAC-SHA256 Access={ak}, SignedHeaders=x-sdk-date, Signature={}\r\n",
        "0".repeat(64)
    )
}

/// Holds a signed-looking request from `from` with the victim's access key whose body never
/// finishes arriving; returns the stream and what it answered within 2 s, if anything.
async fn hold_unverified_body(app: &TestApp, from: &str, ak: &str) -> (tokio::net::TcpStream, Option<String>) {
    stall_body(app, from, &forged_auth(app, ak), 1, Duration::from_secs(2)).await
}

per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stranger_holding_slow_bodies_under_a_known_key_cannot_spend_the_body_budget() {
        // Four bodies' worth of budget; each client may have two bodies read unverified at once.
        let app = TestApp::spawn_with(&[
            "--time-scale",
            "0",
            "--body-budget-bytes",
            "1048576",
            "--max-unverified-bodies-per-client",
            "2",
            "--body-timeout-ms",
            "20000",
        ])
        .await;
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..4 {
            let (stream, answer) = hold_unverified_body(&app, "127.0.0.2", &app.admin.access_key).await;
            if let Some(text) = answer {
                assert!(text.starts_with("HTTP/1.1 429") && text.contains("APIGW.0308"), "{text}");
                refused += 1;
            }
            held.push(stream);
        }
        assert_eq!(refused, 2, "past its share, the stranger's bodies are refused at once");
        // The key's owner, from another address, still gets its signed body through.
        assert_the_admin_gets_a_body_through(&app).await;
        drop(held);
    }
}

/// The admin key, from 127.0.0.1, mints a token: a signed body is read and served.
async fn assert_the_admin_gets_a_body_through(app: &TestApp) {
    let path = "/v3/auth/tokens";
    let body = json!({"auth": {"scope": {"project": {"id": PROJECT}}}}).to_string();
    let h = app.signed_headers(&app.admin, &Method::POST, path, &body, app.clock.now_ms());
    let res = app.send_from(ip("127.0.0.1"), Method::POST, path, Some(body), &h).await;
    assert_eq!(res.status().as_u16(), 201, "{:?}", res.text().await);
}

/// As much of a 256 KiB body as can be sent without ending it.
const ALL_BUT_ONE: usize = usize::MAX;

/// A token of a new key of `role`, minted over the API.
async fn token_of(app: &TestApp, user: &str, role: Role) -> String {
    let cred = app.credential(PROJECT, user, role).await;
    let body = json!({"auth": {"identity": {"methods": ["hw_ak_sk"]}, "scope": {"project": {"id": PROJECT}}}});
    let h = app.signed_headers(&cred, &Method::POST, "/v3/auth/tokens", &body.to_string(), app.clock.now_ms());
    let res = app.send_from(ip("127.0.0.1"), Method::POST, "/v3/auth/tokens", Some(body.to_string()), &h).await;
    assert_eq!(res.status().as_u16(), 201);
    res.headers().get("x-subject-token").and_then(|v| v.to_str().ok()).expect("X-Subject-Token").to_owned()
}

/// Starts a request from `from` under `auth` (header lines) that declares a body of 256 KiB,
/// sends `sent` bytes of it and stalls; returns the stream and what it answered within `wait`.
async fn stall_body(
    app: &TestApp,
    from: &str,
    auth: &str,
    sent: usize,
    wait: Duration,
) -> (tokio::net::TcpStream, Option<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const DECLARED: usize = 262_144;
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().expect("addr");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{from}:0").parse().expect("local")).expect("bind");
    let mut stream = socket.connect(addr).await.expect("connect");
    let head = format!(
        "POST /v2/{PROJECT}/instances/action HTTP/1.1\r\nHost: {addr}\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {DECLARED}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head sent");
    let _ = stream.write_all(&vec![b' '; sent.min(DECLARED - 1)]).await;
    let mut buf = vec![0u8; 4096];
    let answer = match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    };
    (stream, answer)
}

per_engine! {
    /// Attack: a readonly token, from one address and then from several, holds slow bodies to spend
    /// the process-wide body budget so that every project's requests with a body get 503. Bytes are
    /// charged to the token's credential and to each address as they arrive: past a holder's share
    /// the attacker gets 429, and a key owner elsewhere still gets its body through.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_readonly_token_cannot_spend_the_body_budget() {
        let app = TestApp::spawn_with(&[
            "--time-scale",
            "0",
            "--body-budget-bytes",
            "1048576",
            "--body-bytes-per-holder",
            "524288",
            "--body-timeout-ms",
            "30000",
        ])
        .await;
        let token = token_of(&app, "viewer", Role::Readonly).await;
        let auth = format!("X-Auth-Token: {token}\r\n");
        let mut held = Vec::new();
        let mut refused = 0;
        for from in ["127.0.0.5", "127.0.0.5", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"] {
            let (stream, answer) = stall_body(&app, from, &auth, ALL_BUT_ONE, Duration::from_millis(1500)).await;
            if let Some(text) = answer {
                assert!(text.starts_with("HTTP/1.1 429") && text.contains("APIGW.0308"), "{text}");
                assert!(text.to_ascii_lowercase().contains("retry-after: 1"), "{text}");
                refused += 1;
            }
            held.push(stream);
        }
        assert_eq!(refused, 4, "past two bodies' worth the token's bodies are refused, whatever the address");
        // The owner of another key, from another address, still gets a body through.
        assert_the_admin_gets_a_body_through(&app).await;
        drop(held);
    }
}

per_engine! {
    /// Attack: someone who knows only an access key sends signed-looking bodies from many addresses
    /// and never finishes them. A body whose signature cannot be checked yet gets the short
    /// `--unverified-body-timeout-ms`, not the verified caller's `--body-timeout-ms`, so each such
    /// body holds its bytes briefly and the key's owner is served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unverified_bodies_get_a_short_deadline() {
        let app = TestApp::spawn_with(&[
            "--time-scale",
            "0",
            "--body-timeout-ms",
            "30000",
            "--unverified-body-timeout-ms",
            "700",
        ])
        .await;
        let auth = forged_auth(&app, &app.admin.access_key);
        let started = Instant::now();
        let (_stream, answer) = stall_body(&app, "127.0.0.9", &auth, ALL_BUT_ONE, Duration::from_secs(5)).await;
        let text = answer.expect("answered before the verified caller's 30 s");
        assert!(text.starts_with("HTTP/1.1 408") && text.contains("DMS.00408000"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(3), "answered after {:?}", started.elapsed());
        // A verified (token) caller's slow body is not held to the short deadline.
        let token = token_of(&app, "operator", Role::Operator).await;
        let (_stream, answer) =
            stall_body(&app, "127.0.0.10", &format!("X-Auth-Token: {token}\r\n"), ALL_BUT_ONE, Duration::from_millis(1500))
                .await;
        assert!(answer.is_none(), "a verified caller's body was cut at the unverified deadline: {answer:?}");
    }
}
