//! Secrets and the audit trail: files private to their owner, the first admin key kept off
//! captured output, a wrong master key refused before anything is made, operator commands
//! audited, and audit events that survive any byte a client sends.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{PROJECT, TestApp, TestDb};

fn cli(db: &TestDb, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kafka-tasks"))
        .args(args)
        .args(["--database", &db.url])
        .output()
        .expect("cli runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn sqlite_files_and_the_folder_made_for_them_are_private() {
    let app = TestApp::spawn().await;
    let Some(path) = app.db.url.strip_prefix("sqlite:").map(std::path::PathBuf::from) else {
        return; // PostgreSQL: no files of ours.
    };
    app.create_instance().await;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.clone().into_os_string();
        name.push(suffix);
        assert_eq!(mode(std::path::Path::new(&name)), 0o600, "{}", name.to_string_lossy());
    }
    let dir = app.db.dir.path().join("new").join("data");
    let db = dir.join("kafka-tasks.db");
    let storage = kafka_tasks::storage::Storage::open(&format!("sqlite:{}", db.display())).await.expect("opens");
    assert!(!storage.credentials.has_credentials().await.expect("reads"));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&db), 0o600);
}

per_engine! {
    #[tokio::test]
    async fn commands_given_another_master_key_are_refused_and_make_nothing() {
        let app = TestApp::spawn().await;
        let other_file = app.db.dir.path().join("other.key");
        let other_file_arg = other_file.to_str().expect("utf-8");
        let create = ["credentials", "create", "--project-id", PROJECT, "--user-name", "mallory", "--role", "admin"];
        let count = |out: std::process::Output| text(&out.stdout).lines().count();
        assert_eq!(count(cli(&app.db, &["credentials", "list"])), 1);

        // No key file: refused, and no new key file is made.
        let out = cli(&app.db, &[&create[..], &["--master-key-file", other_file_arg]].concat());
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("--master-key") && err.contains("does not exist"), "{err}");
        assert!(!other_file.exists(), "a fresh master key file was created");

        // Another key, given directly or in a file: refused.
        let other = "ab".repeat(32);
        let out = cli(&app.db, &[&create[..], &["--master-key", &other]].concat());
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("another master key") && err.contains("--master-key"), "{err}");
        std::fs::write(&other_file, &other).expect("key file");
        let out = cli(&app.db, &[&create[..], &["--master-key-file", other_file_arg]].concat());
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("another master key"));
        let token = cli(&app.db, &["token", "create", "--access-key", &app.admin.access_key, "--master-key", &other]);
        assert!(!token.status.success());
        assert!(text(&token.stderr).contains("another master key"));
        assert_eq!(count(cli(&app.db, &["credentials", "list"])), 1, "nothing was created");

        // `serve` too refuses to start with it.
        let args = crate::helpers::serve_args(&["--database", &app.db.url, "--master-key", &other]);
        let started = kafka_tasks::server::start(&args).await;
        assert!(started.as_ref().is_err_and(|e| format!("{e:#}").contains("another master key")), "serve started");

        // The right key still works.
        let key_file = app.db.key_file();
        let out = cli(&app.db, &[&create[..], &["--master-key-file", key_file.to_str().expect("utf-8")]].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

per_engine! {
    #[tokio::test]
    async fn the_first_admin_secret_goes_to_its_private_file_and_not_to_a_captured_stdout() {
        use std::io::{BufRead, BufReader, Read};
        let db = TestDb::fresh().await;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-tasks"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--database", &db.url])
            .arg("--master-key-file")
            .arg(db.key_file())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("binary starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let listening = line.contains("\"listening\"");
                seen.push(line);
                if listening {
                    let _ = tx.send(seen.clone());
                }
            }
        });
        let logs = rx.recv_timeout(Duration::from_secs(20)).expect("server started");
        child.kill().expect("kill");
        child.wait().expect("reaped");
        let mut stdout = String::new();
        child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("stdout read");

        let file = db.dir.path().join("initial-credential.json");
        let cred: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("file")).expect("json");
        let secret = cred["secret_key"].as_str().expect("secret");
        assert_eq!(secret.len(), 40);
        assert!(!stdout.contains(secret), "the secret reached a captured stdout: {stdout}");
        assert!(logs.iter().all(|l| !l.contains(secret)), "the secret reached the log");
        let note = logs.iter().find(|l| l.contains("first admin credential")).expect("a log line about the key");
        assert!(note.contains("initial-credential.json"), "{note}");
        #[cfg(unix)]
        assert_eq!(mode(&file), 0o600);
    }
}

per_engine! {
    #[tokio::test]
    async fn creating_and_revoking_keys_from_the_command_line_is_audited() {
        let app = TestApp::spawn().await;
        let key_file = app.db.key_file();
        let key_file = key_file.to_str().expect("utf-8");
        let args =
            ["credentials", "create", "--project-id", PROJECT, "--user-name", "carol", "--master-key-file", key_file];
        let out = cli(&app.db, &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let created: Value = serde_json::from_slice(&out.stdout).expect("json");
        let (ak, sk) = (created["access_key"].as_str().expect("ak"), created["secret_key"].as_str().expect("sk"));
        assert!(cli(&app.db, &["credentials", "revoke", ak]).status.success());

        let out = cli(&app.db, &["audit", "list", "--project-id", PROJECT]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let listed = text(&out.stdout);
        assert!(!listed.contains(sk), "the secret is in the audit log");
        let events: Vec<Value> = listed.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
        let of = |action: &str| events.iter().find(|e| e["action"] == action).cloned().unwrap_or_default();
        for (action, status) in [("kafka:credentials:create", 201), ("kafka:credentials:revoke", 204)] {
            let e = of(action);
            assert_eq!(e["target"], ak, "{action}: {listed}");
            assert_eq!(e["user_id"], "cli");
            assert_eq!(e["access_key"], Value::Null);
            assert_eq!(e["project_id"], PROJECT);
            assert_eq!(e["status"], status);
            assert_eq!(e["request_id"].as_str().map(str::len), Some(32));
        }
        assert_eq!(of("kafka:credentials:create")["detail"]["user_name"], "carol");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_nul_byte_in_a_path_keeps_its_audit_event() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let res = app.request(Method::DELETE, &format!("{}/tasks/a%00b", app.instance_path(&inst)), None).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
        let request_id = res.request_id.clone().expect("request id");

        let storage = app.db.storage().await;
        let events = storage.audit.list_audit(None, None, 1000).await.expect("audit readable");
        let event = events.iter().find(|e| e.request_id == request_id).expect("the refused request was audited");
        assert_eq!(event.status, 400);
        assert!(!event.target.contains('\0'));
    }
}
