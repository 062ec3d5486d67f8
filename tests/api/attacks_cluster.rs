//! Attacks on connected mode by a project admin (a tenant) holding a key: what a binding can
//! make the server reach, read or tell, and what a hostile "broker" at an allowed address can do
//! to the server. The operator's side of the rules is `tests/api/clusters.rs`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::connected::Kafka;
use crate::helpers::TestApp;

fn cluster_path(app: &TestApp, inst: &str) -> String {
    format!("{}/cluster", app.instance_path(inst))
}

async fn assert_unbound(app: &TestApp, inst: &str) {
    app.get(&cluster_path(app, inst)).await.assert_error(404, "DMS.00404090");
}

/// A server that lets bindings reach loopback, read files in `secrets` and run programs in
/// `control`.
async fn server_with_dirs(secrets: &std::path::Path, control: &std::path::Path) -> TestApp {
    let (s, c) = (secrets.to_str().expect("utf-8"), control.to_str().expect("utf-8"));
    TestApp::spawn_with(&[
        "--time-scale",
        "0",
        "--cluster-allow",
        "127.0.0.0/8",
        "--cluster-secrets-dir",
        s,
        "--broker-control-dir",
        c,
    ])
    .await
}

/// The message of a refusal with `path` written as PATH: two refusals that differ only in the
/// path they name must read the same.
fn message_without(res: &crate::helpers::Response, path: &str) -> String {
    res.assert_error(400, "DMS.00400062");
    res.json()["error_msg"].as_str().unwrap_or_default().replace(path, "PATH")
}

on_sqlite! {
    /// Whether a path outside the operator's directories exists, is a file or is executable must not
    /// be told by the answer: a tenant could otherwise map the server's disk (`/root/.ssh/id_rsa`,
    /// `/proc/self/…`) one bind at a time.
    #[tokio::test]
    async fn a_bind_does_not_tell_what_is_on_the_server_s_disk_outside_the_operator_s_directories() {
        let secrets = tempfile::tempdir().expect("dir");
        let control = tempfile::tempdir().expect("dir");
        let app = server_with_dirs(secrets.path(), control.path()).await;
        let inst = app.create_instance().await;
        let path = cluster_path(&app, &inst);
        let climbing = format!("{}/../../etc/passwd", secrets.path().display());
        let climbing_missing = format!("{}/../../etc/no-such-file-kt", secrets.path().display());
        let tls = |ca: &str| json!({"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "SSL", "ssl_ca_file": ca});
        let scram = |file: &str| {
            json!({"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "SASL_PLAINTEXT", "sasl_username": "u",
                   "sasl_password_file": file})
        };
        let control_of = |program: &str| json!({"bootstrap_servers": "127.0.0.1:9092", "broker_control": program});
        for (existing, missing, body) in [
            ("/etc/passwd", "/etc/no-such-file-kt", &tls as &dyn Fn(&str) -> Value),
            ("/proc/self/environ", "/proc/self/no-such-file-kt", &scram),
            (climbing.as_str(), climbing_missing.as_str(), &scram),
            ("/bin/sh", "/bin/no-such-program-kt", &control_of),
            ("/etc", "/no-such-dir-kt", &control_of),
        ] {
            let started = Instant::now();
            let there = app.put(&path, Some(body(existing))).await;
            let absent = app.put(&path, Some(body(missing))).await;
            let (a, b) = (message_without(&there, existing), message_without(&absent, missing));
            assert_eq!(a, b, "{existing} and {missing} are told apart");
            assert!(a.contains("is not under the"), "{a}");
            assert!(started.elapsed() < Duration::from_secs(2), "refused before connecting: {:?}", started.elapsed());
        }
        // Inside the operator's directory a program that is not executable is refused by name.
        let idle = control.path().join("not-executable");
        std::fs::write(&idle, "#!/bin/sh\n").expect("file");
        let res = app.put(&path, Some(control_of(idle.to_str().expect("utf-8")))).await;
        res.assert_error(400, "DMS.00400062");
        assert!(res.text.contains("broker_control"), "{}", res.text);
        assert_unbound(&app, &inst).await;
    }
}

on_sqlite! {
    /// A password or CA file inside the secrets directory that is not a small regular file (a FIFO
    /// that would block the reading thread forever, a directory, something huge) or a password file
    /// others may read is refused, quickly, by name.
    #[cfg(unix)]
    #[tokio::test]
    async fn files_a_binding_names_must_be_small_private_regular_files() {
        use std::os::unix::fs::PermissionsExt;
        let secrets = tempfile::tempdir().expect("dir");
        let control = tempfile::tempdir().expect("dir");
        let app = server_with_dirs(secrets.path(), control.path()).await;
        let inst = app.create_instance().await;
        let path = cluster_path(&app, &inst);
        let dir = secrets.path();
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg("-m").arg("600").arg(&fifo).status().expect("mkfifo runs");
        assert!(made.success());
        std::fs::create_dir(dir.join("a-dir")).expect("dir");
        let huge = std::fs::File::create(dir.join("huge")).expect("file");
        huge.set_len(64 << 20).expect("sparse file");
        std::fs::set_permissions(dir.join("huge"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(dir.join("loose"), "pw\n").expect("file");
        std::fs::set_permissions(dir.join("loose"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let client = kafka_tasks::tls::client_builder(None).expect("client").timeout(Duration::from_secs(8)).build();
        let client = client.expect("client");
        for (file, why) in [
            ("fifo", "not a regular file"),
            ("a-dir", "not a regular file"),
            ("huge", "larger than"),
            ("loose", "readable by others"),
        ] {
            let name = dir.join(file).display().to_string();
            for body in [
                json!({"bootstrap_servers": "127.0.0.1:9", "security_protocol": "SASL_PLAINTEXT", "sasl_username": "u",
                       "sasl_password_file": name}),
                json!({"bootstrap_servers": "127.0.0.1:9", "security_protocol": "SSL", "ssl_ca_file": name}),
            ] {
                if file == "loose" && body.get("ssl_ca_file").is_some() {
                    continue; // a CA certificate is no secret
                }
                let started = Instant::now();
                let text = body.to_string();
                let headers = app.signed_headers(&app.admin, &reqwest::Method::PUT, &path, &text, app.clock.now_ms());
                let mut req = client.put(format!("{}{path}", app.base)).body(text);
                for (k, v) in &headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                let res = req.send().await.unwrap_or_else(|e| panic!("{body}: no answer ({e})"));
                assert_eq!(res.status().as_u16(), 400, "{body}");
                let answer: Value = res.json().await.expect("json");
                assert_eq!(answer["error_code"], "DMS.00400062", "{answer}");
                assert!(answer["error_msg"].as_str().is_some_and(|m| m.contains(why)), "{body} → {answer}");
                assert!(started.elapsed() < Duration::from_secs(3), "{body}: {:?}", started.elapsed());
            }
        }
        assert_unbound(&app, &inst).await;
        // The server still answers: no worker thread is stuck on the FIFO.
        assert_eq!(app.show_instance(&inst).await.status, 200);
    }
}

/// A made-up "broker" on loopback: on every connection it reads the client's first request,
/// writes `reply` (one byte every `pace` when given) and then holds the connection open.
async fn hostile_broker(reply: Vec<u8>, pace: Option<Duration>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                match pace {
                    None => {
                        let _ = s.write_all(&reply).await;
                    }
                    Some(pace) => {
                        for b in &reply {
                            if s.write_all(&[*b]).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(pace).await;
                        }
                    }
                }
                // Hold the connection: the client must give up on its own deadline.
                let _ = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf)).await;
            });
        }
    });
    (addr, task)
}

on_sqlite! {
    /// A "broker" that answers with a frame of 2 GiB, with a frame just under krafka's 100 MiB
    /// default, with another service's banner, with garbage, or one byte at a time: every bind is
    /// refused within its deadline, nothing is stored, and the answer does not repeat what the
    /// other service said (a bind is not a way to read another service's banner).
    #[tokio::test]
    async fn a_hostile_broker_neither_hangs_a_bind_nor_gets_its_words_repeated() {
        let app = TestApp::spawn_with(&["--time-scale", "0", "--cluster-allow", "127.0.0.0/8"]).await;
        let inst = app.create_instance().await;
        let path = cluster_path(&app, &inst);
        let mut huge = vec![0x7f, 0xff, 0xff, 0xff];
        huge.extend_from_slice(&[0u8; 1024]);
        let mut just_under = ((100u32 << 20) - 1).to_be_bytes().to_vec();
        just_under.extend_from_slice(&[0u8; 64 << 10]);
        let banner = b"\x00\x00\x00\x20SECRET-BANNER-OF-ANOTHER-SERVICE".to_vec();
        let mut garbage = 40u32.to_be_bytes().to_vec();
        garbage.extend(b"SECRET-BANNER-garbage-garbage-garbage-xx".iter());
        for (reply, pace, what) in [
            (huge, None, "a 2 GiB frame"),
            (just_under, None, "a 100 MiB frame"),
            (banner, None, "another service's banner"),
            (garbage, None, "garbage"),
            (vec![0, 0, 3, 0, 0, 0, 0, 1, 0, 0], Some(Duration::from_millis(500)), "a trickle"),
        ] {
            let (addr, broker) = hostile_broker(reply, pace).await;
            let started = Instant::now();
            let res = app.put(&path, Some(json!({"bootstrap_servers": addr}))).await;
            res.assert_error(400, "DMS.00400062");
            assert!(!res.text.contains("SECRET-BANNER"), "{what}: {}", res.text);
            assert!(started.elapsed() < Duration::from_secs(25), "{what}: answered after {:?}", started.elapsed());
            broker.abort();
        }
        assert_unbound(&app, &inst).await;
        assert_eq!(app.show_instance(&inst).await.status, 200);
    }
}

on_sqlite! {
    /// A SCRAM password given inline is sealed and sent nowhere: not in the answer of a refused
    /// bind, the audit log, `/metrics` or a log line, even when the "broker" it was tried against
    /// answers garbage.
    #[tokio::test]
    async fn an_inline_cluster_password_appears_in_no_answer_audit_record_metric_or_log_line() {
        let log = tempfile::NamedTempFile::new().expect("log");
        let mut app =
            TestApp::spawn_process_logged(&["--time-scale", "0", "--cluster-allow", "127.0.0.0/8"], Some(log.path())).await;
        let inst = app.create_instance().await;
        let path = cluster_path(&app, &inst);
        let secret = "kt-cluster-pw-5f1e2d3c4b";
        let mut reply = 12u32.to_be_bytes().to_vec();
        reply.extend_from_slice(&[0, 0, 0, 1, 0, 35, 0, 0, 0, 0, 0, 0]);
        let (addr, broker) = hostile_broker(reply, None).await;
        let res = app
            .put(
                &path,
                Some(json!({"bootstrap_servers": addr, "security_protocol": "SASL_PLAINTEXT", "sasl_username": "ops",
                            "sasl_password": secret})),
            )
            .await;
        res.assert_error(400, "DMS.00400062");
        broker.abort();
        let metrics = app.scrape_metrics().await;
        assert!(metrics.contains("kafka_tasks_"), "metrics are served: {metrics:.200}");
        let audit = app.db.storage().await.audit.list_audit(None, None, 10_000).await.expect("audit");
        assert!(audit.iter().any(|e| e.target == inst && e.status == 400), "the refused bind is audited: {audit:?}");
        let _ = app.terminate();
        let logged = std::fs::read_to_string(log.path()).expect("log");
        assert!(logged.contains(&addr) || logged.lines().count() > 3, "the log was captured: {logged:.300}");
        for (what, text) in
            [("answer", res.text.clone()), ("metrics", metrics), ("log", logged), ("audit", format!("{audit:?}"))]
        {
            assert!(!text.contains(secret), "the password is in the {what}");
        }
    }
}

on_sqlite! {
    /// The cluster's brokers are reached at the addresses it advertises, not at the bootstrap
    /// servers: a cluster reached through an allowed name but advertising addresses the operator
    /// did not allow (what a hostile "cluster" would do to make the server connect elsewhere) is
    /// refused before any request goes there, naming the broker. The real test cluster advertises
    /// 127.0.0.1; it is reached here as `localhost`.
    #[tokio::test]
    async fn a_cluster_that_advertises_brokers_outside_the_allow_list_is_refused() {
        let Some(kafka) = Kafka::get() else { return };
        let bootstrap = kafka.bootstrap().replace("127.0.0.1", "localhost");
        let only_name = TestApp::spawn_with(&["--time-scale", "0", "--cluster-allow", "localhost"]).await;
        let inst = only_name.create_instance().await;
        let res = only_name.put(&cluster_path(&only_name, &inst), Some(json!({"bootstrap_servers": bootstrap}))).await;
        res.assert_error(400, "DMS.00400062");
        assert!(res.text.contains("advertises broker") && res.text.contains("127.0.0.1"), "{}", res.text);
        assert_unbound(&only_name, &inst).await;
        let both = TestApp::spawn_with(&["--time-scale", "0", "--cluster-allow", "localhost,127.0.0.0/8"]).await;
        let inst = both.create_instance().await;
        let res = both.put(&cluster_path(&both, &inst), Some(json!({"bootstrap_servers": bootstrap}))).await;
        assert_eq!(res.status, 200, "allowed both ways, it binds: {}", res.text);
    }
}

on_sqlite! {
    /// ShowInstance, which every role reads, says whether a bound instance's cluster answers; why
    /// it does not names the binding's servers and files, which only an admin may read.
    #[tokio::test]
    async fn why_a_cluster_does_not_answer_is_shown_to_admins_only() {
        use kafka_tasks::domain::Role;
        let app = TestApp::spawn_with(&["--time-scale", "0", "--cluster-allow", "127.0.0.0/8"]).await;
        let inst = app.create_instance().await;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let gone = closed.local_addr().expect("addr").to_string();
        drop(closed);
        crate::clusters::store_plaintext_binding(&app, &inst, &gone).await;
        let admin = app.show_instance(&inst).await.json();
        assert_eq!(admin["cluster"]["reachable"], false, "{admin}");
        assert!(admin["cluster"]["error"].as_str().is_some_and(|e| e.contains(&gone)), "the admin sees why: {admin}");
        for role in [Role::Readonly, Role::Operator] {
            let cred = app.credential(crate::helpers::PROJECT, &format!("{role:?}"), role).await;
            let res = app.request_as(&cred, reqwest::Method::GET, &app.instance_path(&inst), None).await;
            assert_eq!(res.status, 200, "{}", res.text);
            let shown = res.json();
            assert_eq!(shown["cluster"]["reachable"], false, "{shown}");
            assert!(shown["cluster"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{shown}");
            assert!(!res.text.contains(&gone), "{role:?} sees the binding's address: {}", res.text);
        }
    }
}
