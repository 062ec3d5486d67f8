//! Hostile requests against the live server (the built binary on SQLite), in three runs of their
//! own, each on a fresh database:
//!
//! - **raw**: bytes over TCP: weird and huge methods, bad request lines and versions, paths with
//!   bad escapes, `%00`, `..`, overlong segments and raw unicode, too many and too big headers,
//!   bad `Content-Length`, broken chunked framing, pipelining, bytes that are not HTTP at all;
//! - **forged**: well-formed requests under credentials that must not pass: garbage and malformed
//!   `Authorization`, unknown keys, wrong signatures for a real key, expired dates, mangled
//!   tokens, signed requests altered after signing, bodies swapped under a declared payload hash,
//!   `UNSIGNED-PAYLOAD` with a body;
//! - **signed**: correctly signed (or token) requests of real keys carrying hostile paths, query
//!   strings (duplicate and malformed keys and values), bodies and headers, so that the
//!   authenticated handlers get them.
//!
//! Each asserts: no panic (the server still answers `/healthz`, its stderr has no "panicked"),
//! no 5xx, every error a DMS/APIGW JSON body with `X-Request-Id`, and no change in the database
//! (every table dumped before and after; the audit table may only gain refusals).
//!
//! `KAFKA_TASKS_HOSTILE_REQUESTS` sets the total over the three runs (default 20,000);
//! `KAFKA_TASKS_HOSTILE_SEED` replays a seed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that meets the unexpected should stop there: a panic is its failure"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_tasks::auth::IssuedCredential;
use kafka_tasks::auth::signature::{self, Algorithm, sdk_date};
use serde_json::{Value, json};

extern crate kafka_tasks_testkit as kit;

use kit::{rng, serve};

mod craft;
mod raw;

use craft::{Draft, Targets};
use raw::Exchange;
use rng::Rng;
use serve::{Api, PROJECT, ServerProcess, now_ms};

const MASTER_KEY: &str = "5a1e5a1e00112233445566778899aabbccddeeff00112233445566778899aabb";
const WORKERS: usize = 8;
/// How long one exchange may take before it counts as unanswered (a wait, not a verdict).
const EXCHANGE_LIMIT: Duration = Duration::from_secs(30);

fn total_requests() -> usize {
    std::env::var("KAFKA_TASKS_HOSTILE_REQUESTS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000)
}

// ---------------------------------------------------------------------------------------------
// The server and its database
// ---------------------------------------------------------------------------------------------

/// A server on a fresh database, with records for the hostile requests to aim at.
struct Stage {
    _dir: tempfile::TempDir,
    db_path: PathBuf,
    server: ServerProcess,
    targets: Targets,
    /// The admin key the records were made with.
    admin: IssuedCredential,
    /// Further keys, as asked for (user name → key).
    keys: BTreeMap<String, IssuedCredential>,
}

impl Stage {
    async fn new(keys: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_path = dir.path().join("hostile.db");
        let db = format!("sqlite:{}", db_path.display());
        let admin = serve::cli_credential(&db, MASTER_KEY, "owner", "admin");
        let keys: BTreeMap<String, IssuedCredential> = keys
            .iter()
            .map(|(user, role)| (user.to_string(), serve::cli_credential(&db, MASTER_KEY, user, role)))
            .collect();
        let token = std::process::Command::new(serve::bin())
            .args(["token", "create", "--access-key", &admin.access_key, "--database", &db])
            .env("KAFKA_TASKS_MASTER_KEY", MASTER_KEY)
            .output()
            .expect("the CLI runs");
        assert!(token.status.success(), "token create: {}", String::from_utf8_lossy(&token.stderr));
        let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
        let key_file = dir.path().join("master.key");
        let key_file = key_file.to_str().expect("utf-8 path");
        let server = ServerProcess::start(
            &["--database", &db, "--master-key-file", key_file, "--time-scale", "0", "--poll-ms", "20"],
            &[
                ("KAFKA_TASKS_MASTER_KEY", MASTER_KEY),
                ("KAFKA_TASKS_STORAGE_POOL_GB", "1000"),
                ("KAFKA_TASKS_LOG", "warn,kafka_tasks::server=info"),
            ],
            &dir.path().join("serve.log"),
        );
        let api = Api::new(&server.base, admin.clone());
        let targets = make_targets(&api, token).await;
        Stage { _dir: dir, db_path, server, targets, admin, keys }
    }
}

async fn wait_instance(api: &Api, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = api.send_patiently("GET", &format!("/v2/{PROJECT}/instances/{id}"), None).await;
        let v = r.json();
        if v["status"] == status && v["task"].is_null() {
            return;
        }
        assert!(Instant::now() < deadline, "instance {id} never became {status}: {}", r.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A RUNNING instance with ended tasks and a scheduled task due in a day, and a CREATEFAILED one.
async fn make_targets(api: &Api, token: String) -> Targets {
    let create = |name: &str, storage: u64| {
        json!({"name": name, "engine_version": "2.7", "broker_num": 3, "storage_space": storage, "product_id": "c6.2u4g.cluster"})
            .to_string()
    };
    let path = format!("/v2/kafka/{PROJECT}/instances");
    let r = api.send_patiently("POST", &path, Some(&create("hostile-running", 300))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let running = r.json()["instance_id"].as_str().expect("instance_id").to_owned();
    let r = api.send_patiently("POST", &path, Some(&create("hostile-failed", 5_000))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let failed = r.json()["instance_id"].as_str().expect("instance_id").to_owned();
    wait_instance(api, &running, "RUNNING").await;
    wait_instance(api, &failed, "CREATEFAILED").await;

    let body = json!({"enable_auto_topic": true}).to_string();
    let r = api.send_patiently("POST", &format!("/v2/{PROJECT}/instances/{running}/autotopic"), Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_instance(api, &running, "RUNNING").await;
    let at = now_ms() + 86_400_000;
    let body = json!({"reassignments": [{"topic": "t", "brokers": [0]}], "is_schedule": true, "execute_at": at});
    let r = api
        .send_patiently("POST", &format!("/v2/{PROJECT}/kafka/instances/{running}/reassign"), Some(&body.to_string()))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let waiting = r.json()["schedule_id"].as_str().expect("schedule_id").to_owned();

    let mut done_tasks = vec![];
    for inst in [&running, &failed] {
        let r = api.send_patiently("GET", &format!("/v2/{PROJECT}/instances/{inst}/tasks?limit=100"), None).await;
        for t in r.json()["tasks"].as_array().cloned().unwrap_or_default() {
            assert!(["SUCCESS", "FAILED"].contains(&t["status"].as_str().unwrap_or("")), "not ended: {t}");
            done_tasks.push(t["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert!(done_tasks.len() >= 3, "{done_tasks:?}");
    Targets {
        project: PROJECT.to_owned(),
        running,
        failed,
        done_tasks,
        waiting,
        token,
        product: "c6.2u4g.cluster".into(),
    }
}

/// A dump: per table, its rows (cells rendered, blobs by length), keyed by their first column.
type Dump = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn cell(v: rusqlite::types::Value) -> String {
    use rusqlite::types::Value as V;
    match v {
        V::Null => "NULL".into(),
        V::Integer(i) => i.to_string(),
        V::Real(f) => f.to_string(),
        V::Text(t) => format!("{t:?}"),
        V::Blob(b) => format!("<{} bytes {}>", b.len(), hex::encode(&b[..b.len().min(8)])),
    }
}

/// Every table but the audit log, and the audit log's last `seq`.
fn dump(path: &Path) -> (Dump, i64) {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("database opens read-only");
    let mut tables = BTreeMap::new();
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("table names");
    for name in names.into_iter().filter(|n| !n.starts_with("audit")) {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{name}\"")).expect("select");
        let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let rows: Vec<Vec<String>> = stmt
            .query_map([], |r| (0..columns.len()).map(|i| r.get::<_, rusqlite::types::Value>(i).map(cell)).collect())
            .and_then(|rows| rows.collect())
            .expect("rows");
        // Rows are matched by their primary key (the whole row when there is none).
        let pk: Vec<usize> = conn
            .prepare(&format!("SELECT cid FROM pragma_table_info('{name}') WHERE pk > 0 ORDER BY pk"))
            .and_then(|mut s| s.query_map([], |r| r.get::<_, i64>(0))?.collect::<Result<Vec<i64>, _>>())
            .expect("primary key")
            .into_iter()
            .map(|c| c as usize)
            .collect();
        let mut keyed = BTreeMap::new();
        for row in rows {
            let key = if pk.is_empty() {
                row.join("|")
            } else {
                pk.iter().filter_map(|i| row.get(*i)).cloned().collect::<Vec<_>>().join("|")
            };
            let shown = columns.iter().zip(&row).map(|(c, v)| format!("{c}={v}")).collect();
            keyed.insert(key, shown);
        }
        tables.insert(name, keyed);
    }
    let seq: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM audit_events", [], |r| r.get(0)).expect("seq");
    (tables, seq)
}

/// What changed between two dumps, and the audit rows after `seq` that are not refusals.
fn database_changes(path: &Path, before: &(Dump, i64)) -> (Vec<String>, usize) {
    let after = dump(path);
    let mut changes = vec![];
    let empty = BTreeMap::new();
    for (table, rows) in &after.0 {
        let old = before.0.get(table).unwrap_or(&empty);
        let mut lines = vec![];
        for (key, row) in rows {
            match old.get(key) {
                None => lines.push(format!("added {}", row.join(", "))),
                Some(was) if was != row => {
                    let diff: Vec<String> =
                        was.iter().zip(row).filter(|(a, b)| a != b).map(|(a, b)| format!("{a} → {b}")).collect();
                    lines.push(format!("changed {}: {}", row.first().cloned().unwrap_or_default(), diff.join(", ")));
                }
                _ => {}
            }
        }
        for (key, row) in old {
            if !rows.contains_key(key) {
                lines.push(format!("removed {}", row.join(", ")));
            }
        }
        if !lines.is_empty() {
            let shown: Vec<String> = lines.iter().take(4).map(|l| l.chars().take(300).collect()).collect();
            changes.push(format!("table {table}: {} rows differ: {}", lines.len(), shown.join("; ")));
        }
    }
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("database opens read-only");
    let audit: Vec<(i64, i64, String)> = conn
        .prepare("SELECT seq, status, action FROM audit_events WHERE seq > ?1 ORDER BY seq")
        .and_then(|mut s| s.query_map([before.1], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .expect("audit rows");
    for (seq, status, action) in audit.iter().filter(|(_, status, _)| *status < 400) {
        changes.push(format!("audit row {seq} records an accepted request: {action} → {status}"));
    }
    (changes, audit.len())
}

// ---------------------------------------------------------------------------------------------
// Verdicts
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    sent: usize,
    by_status: BTreeMap<u16, usize>,
    /// Connections closed without a byte of answer (not HTTP, or cut off by the server).
    closed: usize,
    timed_out: usize,
    /// Requests answered by something behind the gateway (neither 401 nor 429).
    past_gateway: usize,
    violations: BTreeMap<&'static str, (usize, Vec<String>)>,
    /// Examples of requests that got no answer (not failures: printed for diagnosis).
    unanswered: Vec<String>,
}

impl Tally {
    fn violation(&mut self, kind: &'static str, example: impl FnOnce() -> String) {
        let e = self.violations.entry(kind).or_default();
        e.0 += 1;
        if e.1.len() < 4 {
            e.1.push(example());
        }
    }

    fn merge(&mut self, o: Tally) {
        self.sent += o.sent;
        self.closed += o.closed;
        self.timed_out += o.timed_out;
        self.past_gateway += o.past_gateway;
        for (k, v) in o.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        self.unanswered.extend(o.unanswered.into_iter().take(6usize.saturating_sub(self.unanswered.len())));
        for (k, (n, ex)) in o.violations {
            let e = self.violations.entry(k).or_default();
            e.0 += n;
            e.1.extend(ex.into_iter().take(4usize.saturating_sub(e.1.len())));
        }
    }
}

/// A response as the checks see it.
struct Answer<'a> {
    status: u16,
    request_id: bool,
    body: &'a [u8],
}

fn show(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).escape_debug().to_string();
    if bytes.len() > max { format!("{text}… ({} bytes)", bytes.len()) } else { text }
}

/// The checks every answer passes: no 5xx; an error is DMS/APIGW JSON with `X-Request-Id`.
fn judge(t: &mut Tally, head: bool, a: &Answer, request: &(dyn Fn() -> String + Sync)) {
    *t.by_status.entry(a.status).or_default() += 1;
    let example = || format!("{} → {} {}", request(), a.status, show(a.body, 300));
    if a.status >= 500 {
        t.violation("5xx answer", example);
    }
    if a.status < 400 {
        return;
    }
    let v: Value = serde_json::from_slice(a.body).unwrap_or(Value::Null);
    let code = v["error_code"].as_str().unwrap_or("");
    let shaped = head || (code.starts_with("DMS.") || code.starts_with("APIGW.")) && v["error_msg"].is_string();
    match (a.request_id, shaped) {
        (true, true) => {}
        // What hyper answers by itself (bad request line, framing, header limits) has neither.
        (false, false) => t.violation("error neither DMS/APIGW JSON nor with X-Request-Id", example),
        (false, true) => t.violation("error without X-Request-Id", example),
        (true, false) => t.violation("error body not DMS/APIGW JSON", example),
    }
}

// ---------------------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------------------

struct Ctx {
    addr: String,
    base: String,
    http: reqwest::Client,
    targets: Targets,
    /// Keys the signed run signs with, taken in turn.
    signers: Vec<IssuedCredential>,
    /// Keys the forged run attacks: (victim of wrong signatures, body swaps, tampering).
    victims: Option<(IssuedCredential, IssuedCredential, IssuedCredential)>,
}

/// Header lines of a request as sent (name, raw value).
type Headers = Vec<(String, Vec<u8>)>;

fn raw_request(method: &str, target: &str, host: &str, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nhost: {host}\r\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// Whether reqwest sends this target exactly as written (it normalises dot segments,
/// backslashes, fragments and non-ASCII; those go over raw TCP instead).
fn verbatim_url(base: &str, target: &str) -> Option<reqwest::Url> {
    let url = reqwest::Url::parse(&format!("{base}{target}")).ok()?;
    let sent = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    (sent == target).then_some(url)
}

/// A request ready to go, exactly as it will be sent.
struct Outgoing<'a> {
    method: &'a str,
    target: &'a str,
    headers: &'a Headers,
    body: &'a [u8],
    label: &'a str,
}

/// Sends a request (reqwest when it can carry it verbatim and `client` says so, else raw TCP)
/// and judges every answer. Returns the statuses seen.
async fn send(ctx: &Ctx, t: &mut Tally, client: bool, out: Outgoing<'_>) -> Vec<u16> {
    let Outgoing { method, target, headers, body, label } = out;
    t.sent += 1;
    let head = method == "HEAD";
    let describe = || format!("[{label}] {method} {}", show(target.as_bytes(), 160));
    let via_client = client.then(|| verbatim_url(&ctx.base, target)).flatten().and_then(|url| {
        let m = reqwest::Method::from_bytes(method.as_bytes()).ok()?;
        let mut req = ctx.http.request(m, url);
        for (k, v) in headers {
            req = req.header(k.as_str(), reqwest::header::HeaderValue::from_bytes(v).ok()?);
        }
        Some(req.body(body.to_vec()))
    });
    if let Some(req) = via_client {
        let sent = req.send().await;
        match sent {
            // reqwest refuses some URLs it parsed itself (too long for its URI type): send raw.
            Err(e) if e.is_builder() => {}
            Ok(res) => {
                let status = res.status().as_u16();
                let request_id = res.headers().contains_key("x-request-id");
                let bytes = res.bytes().await.unwrap_or_default();
                judge(t, head, &Answer { status, request_id, body: &bytes }, &describe);
                return vec![status];
            }
            Err(e) => {
                if e.is_timeout() {
                    t.timed_out += 1;
                } else {
                    t.closed += 1;
                }
                if t.unanswered.len() < 6 {
                    t.unanswered.push(format!("{} (client): {}", describe(), show(e.to_string().as_bytes(), 200)));
                }
                return vec![];
            }
        }
    }
    let bytes = raw_request(method, target, &ctx.addr, headers, body);
    exchange(ctx, t, &bytes, head, false, &describe).await
}

async fn exchange(
    ctx: &Ctx,
    t: &mut Tally,
    bytes: &[u8],
    head: bool,
    incomplete: bool,
    describe: &(dyn Fn() -> String + Sync),
) -> Vec<u16> {
    match raw::exchange(&ctx.addr, bytes, head, incomplete, EXCHANGE_LIMIT).await {
        Exchange::Answered(rs) => rs
            .iter()
            .map(|r| {
                let a = Answer { status: r.status, request_id: r.header("x-request-id").is_some(), body: &r.body };
                judge(t, head, &a, describe);
                r.status
            })
            .collect(),
        Exchange::Closed => {
            t.closed += 1;
            if t.unanswered.len() < 6 {
                t.unanswered.push(format!("{} (closed)", describe()));
            }
            vec![]
        }
        Exchange::TimedOut => {
            t.timed_out += 1;
            if t.unanswered.len() < 6 {
                t.unanswered.push(format!("{} (timed out)", describe()));
            }
            vec![]
        }
        Exchange::Garbled(e) => {
            t.violation("answer is not HTTP", || format!("{} → {e}", describe()));
            vec![]
        }
    }
}

/// `SDK-HMAC-SHA256` headers over `signed` (lowercase names, plus `x-sdk-date`) and `payload`,
/// built with the project's canonical request, for the forgeries the signer cannot make.
fn sign_with(
    cred: &IssuedCredential,
    method: &str,
    target: &str,
    signed: &[(&str, &str)],
    payload: &str,
    date: &str,
) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut all: Vec<(&str, &str)> = signed.to_vec();
    all.push(("x-sdk-date", date));
    all.sort();
    let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
    let canonical = signature::canonical_request(
        method,
        path,
        query,
        &names,
        |n| all.iter().find(|(k, _)| *k == n).map(|(_, v)| *v),
        payload,
    );
    let sts = signature::string_to_sign(Algorithm::Sha256, date, &canonical);
    let sig = signature::signature(Algorithm::Sha256, &cred.secret_key, &sts);
    format!("SDK-HMAC-SHA256 Access={}, SignedHeaders={}, Signature={sig}", cred.access_key, names.join(";"))
}

/// The headers of a correctly signed request, as the SDK sends them (the raw sender adds `host`).
fn signed_headers(ctx: &Ctx, cred: &IssuedCredential, method: &str, target: &str, body: &[u8], at: i64) -> Headers {
    let base = [("content-type", "application/json"), ("host", ctx.addr.as_str())];
    kit::sign::signed_headers(cred, method, target, &base, kit::sign::Payload::Body(body), at)
        .into_iter()
        .filter(|(k, _)| k != "host")
        .map(|(k, v)| (k, v.into_bytes()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The three runs
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Mode {
    Raw,
    Forged,
    Signed,
}

/// Whether the HTTP stack takes this request line at all (what it refuses is the raw run's business;
/// the signed run is about what reaches the handlers).
fn stack_accepts(d: &Draft) -> bool {
    use std::str::FromStr;
    // A fragment never reaches the server (so it is not signed either).
    d.target.len() < 65_000
        && !d.target.contains('#')
        && axum::http::uri::PathAndQuery::from_str(&d.target).is_ok()
        && axum::http::Method::from_bytes(d.method.as_bytes()).is_ok()
}

async fn one_signed(ctx: &Ctx, rng: &mut Rng, t: &mut Tally) {
    let mut d: Draft = craft::draft(rng, &ctx.targets);
    for _ in 0..50 {
        if stack_accepts(&d) {
            break;
        }
        d = craft::draft(rng, &ctx.targets);
    }
    let by_token = rng.percent(25);
    let mut headers: Headers = if by_token {
        vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("x-auth-token".into(), ctx.targets.token.clone().into_bytes()),
        ]
    } else {
        let cred = rng.pick(&ctx.signers).clone();
        signed_headers(ctx, &cred, &d.method, &d.target, &d.body, now_ms())
    };
    headers.extend(d.headers.iter().filter(|(k, _)| k != "x-auth-token").cloned());
    let out = Outgoing { method: &d.method, target: &d.target, headers: &headers, body: &d.body, label: d.label };
    let statuses = send(ctx, t, rng.percent(65), out).await;
    for s in statuses {
        if s != 401 && s != 429 {
            t.past_gateway += 1;
        } else if t.unanswered.len() < 6 {
            t.unanswered.push(format!(
                "[{}] {} {} refused at the gateway ({s}) though {}",
                d.label,
                d.method,
                show(d.target.as_bytes(), 200),
                if by_token { "it carries a valid token" } else { "it is correctly signed" }
            ));
        }
        // A hostile request must never be carried out.
        if (200..300).contains(&s) && !matches!(d.method.as_str(), "GET" | "HEAD") {
            t.violation("hostile mutation accepted", || {
                format!(
                    "[{}] {} {} body {} → {s}",
                    d.label,
                    d.method,
                    show(d.target.as_bytes(), 200),
                    show(&d.body, 200)
                )
            });
        }
    }
}

async fn one_forged(ctx: &Ctx, rng: &mut Rng, t: &mut Tally) {
    let Some((victim, swapper, tamperer)) = &ctx.victims else { return };
    let d = craft::plain(rng, &ctx.targets);
    let now = now_ms();
    let date = sdk_date(now);
    let ct = ("content-type".to_owned(), b"application/json".to_vec());
    let mut target = d.target.clone();
    let mut body = d.body.clone();
    let mut client = true;
    let fake_auth = |alg: &str, ak: &str, signed: &str, sig: &str| -> Vec<u8> {
        format!("{alg} Access={ak}, SignedHeaders={signed}, Signature={sig}").into_bytes()
    };
    let (label, headers): (&'static str, Headers) = match rng.below(100) {
        0..10 => {
            let auth: Vec<u8> = match rng.below(6) {
                0 => (0..rng.range(1, 300)).map(|_| rng.range(0x21, 0x7F) as u8).collect(),
                1 => rng
                    .pick(&[&b"Bearer x"[..], b"Basic YWRtaW46YWRtaW4=", b"SDK-HMAC-SHA256", b"SDK-HMAC-SHA256 "])
                    .to_vec(),
                2 => b"SDK-HMAC-SHA256 Access=, SignedHeaders=, Signature=".to_vec(),
                3 => vec![b'A'; rng.range(1_000, 60_000) as usize],
                4 => format!("SDK-HMAC-SHA256 {}", "Access=a, ".repeat(500)).into_bytes(),
                _ => b"SDK-HMAC-SHA256 Access=a,SignedHeaders=x-sdk-date,Signature=zz,Signature=00".to_vec(),
            };
            (
                "garbage authorization",
                vec![ct, ("x-sdk-date".into(), date.into_bytes()), ("authorization".into(), auth)],
            )
        }
        10..30 => {
            let sig = craft::hex_id(rng, 64);
            let auth = fake_auth("SDK-HMAC-SHA256", &victim.access_key, "content-type;host;x-sdk-date", &sig);
            (
                "wrong signature for a real key",
                vec![ct, ("x-sdk-date".into(), date.into_bytes()), ("authorization".into(), auth)],
            )
        }
        30..36 => {
            let ak = craft::hex_id(rng, 20).to_uppercase();
            let auth = fake_auth("SDK-HMAC-SHA256", &ak, "content-type;host;x-sdk-date", &craft::hex_id(rng, 64));
            ("unknown access key", vec![ct, ("x-sdk-date".into(), date.into_bytes()), ("authorization".into(), auth)])
        }
        36..44 => {
            let sig = craft::hex_id(rng, 64);
            let ak = victim.access_key.as_str();
            let (auth, date): (Vec<u8>, String) = match rng.below(8) {
                0 => (fake_auth("SDK-HMAC-MD5", ak, "host;x-sdk-date", &sig), date),
                1 => (fake_auth("sdk-hmac-sha256", ak, "host;x-sdk-date", &sig), date),
                2 => (fake_auth("SDK-HMAC-SHA256", ak, "x-sdk-date;host", &sig), date),
                3 => (fake_auth("SDK-HMAC-SHA256", ak, "content-type;host", &sig), date),
                4 => (fake_auth("SDK-HMAC-SHA256", ak, "host;x-sdk-date", &sig[..63]), date),
                5 => (fake_auth("SDK-HMAC-SHA256", ak, "host;x-sdk-date", "zz"), date),
                6 => (fake_auth("SDK-HMAC-SHA256", ak, "host;x-sdk-date", &sig), "2024-01-01T00:00:00Z".into()),
                _ => (fake_auth("SDK-HMAC-SHA256", ak, "host;x-sdk-date", &sig), "99999999T999999Z".into()),
            };
            (
                "malformed authorization",
                vec![ct, ("x-sdk-date".into(), date.into_bytes()), ("authorization".into(), auth)],
            )
        }
        44..52 => {
            let real = ctx.targets.token.clone();
            let token = match rng.below(5) {
                0 => real[..real.len() / 2].to_owned(),
                1 => format!("{real}0"),
                2 => {
                    let mut b = real.into_bytes();
                    let i = rng.index(b.len());
                    b[i] = if b[i] == b'a' { b'b' } else { b'a' };
                    String::from_utf8_lossy(&b).into_owned()
                }
                3 => format!("KT1.{}.{}", craft::hex_id(rng, 120), craft::hex_id(rng, 64)),
                _ => craft::weird_id(rng),
            };
            ("forged token", vec![ct, ("x-auth-token".into(), token.into_bytes())])
        }
        52..70 => {
            // Signed correctly, then altered: the path, the query, the body, the date or a signed header.
            let mut h = signed_headers(ctx, tamperer, &d.method, &d.target, &d.body, now);
            match rng.below(5) {
                0 => {
                    let (from, to) = (&ctx.targets.running, &ctx.targets.failed);
                    target = if target.contains(from.as_str()) {
                        target.replace(from.as_str(), to)
                    } else {
                        target.replace(PROJECT, &craft::hex_id(rng, 32))
                    };
                    if target == d.target {
                        target.push_str(if target.contains('?') { "&limit=7" } else { "?limit=7" });
                    }
                }
                1 => target.push_str(if target.contains('?') { "&limit=7" } else { "?limit=7" }),
                2 => body.extend_from_slice(b" "),
                3 => h[1].1 = sdk_date(now + 1_000).into_bytes(),
                _ => h[0].1 = b"application/json; charset=utf-8".to_vec(),
            }
            ("signed then altered", h)
        }
        70..76 => {
            let at = if rng.percent(50) { now - 16 * 60_000 } else { now + 16 * 60_000 };
            ("signed outside the date window", signed_headers(ctx, tamperer, &d.method, &d.target, &d.body, at))
        }
        76..88 if !d.body.is_empty() => {
            // A body swapped under the hash of the one that was signed.
            let hash = Algorithm::Sha256.hash_hex(&d.body);
            body = craft::broken_body(rng, d.route, &ctx.targets);
            if body == d.body {
                body.push(b' ');
            }
            let signed_header = rng.percent(50);
            let mut signed = vec![("content-type", "application/json"), ("host", ctx.addr.as_str())];
            if signed_header {
                signed.push(("x-sdk-content-sha256", hash.as_str()));
            }
            let auth = sign_with(swapper, &d.method, &target, &signed, &hash, &date);
            let h = vec![
                ct,
                ("x-sdk-content-sha256".into(), hash.clone().into_bytes()),
                ("x-sdk-date".into(), date.into_bytes()),
                ("authorization".into(), auth.into_bytes()),
            ];
            (
                if signed_header {
                    "body swapped under a signed hash header"
                } else {
                    "body swapped under a hash header"
                },
                h,
            )
        }
        88..94 => {
            // UNSIGNED-PAYLOAD on a request with a body: refused unless the operator opts in.
            if body.is_empty() {
                body = b"{\"unsigned\": true}".to_vec();
            }
            let mut signed = vec![("content-type", "application/json"), ("host", ctx.addr.as_str())];
            if rng.percent(50) {
                signed.push(("x-sdk-content-sha256", "UNSIGNED-PAYLOAD"));
            }
            let auth = sign_with(swapper, &d.method, &target, &signed, "UNSIGNED-PAYLOAD", &date);
            let h = vec![
                ct,
                ("x-sdk-content-sha256".into(), b"UNSIGNED-PAYLOAD".to_vec()),
                ("x-sdk-date".into(), date.into_bytes()),
                ("authorization".into(), auth.into_bytes()),
            ];
            ("UNSIGNED-PAYLOAD with a body", h)
        }
        94..97 => {
            // Bytes a header may carry but that are not text.
            client = false;
            let mut auth = b"SDK-HMAC-SHA256 Access=".to_vec();
            auth.extend((0..rng.range(1, 200)).map(|_| rng.range(0x80, 0x100) as u8));
            (
                "non-text authorization",
                vec![ct, ("x-sdk-date".into(), date.into_bytes()), ("authorization".into(), auth)],
            )
        }
        _ => ("no credentials", vec![ct]),
    };
    let out = Outgoing { method: &d.method, target: &target, headers: &headers, body: &body, label };
    let statuses = send(ctx, t, client, out).await;
    for s in statuses {
        // 431: a head over the server's limit (a 60 KB Authorization) is refused by the HTTP
        // stack before the gateway sees it, which is a refusal all the same.
        if ![401, 429, 431].contains(&s) {
            t.past_gateway += 1;
            t.violation("forged request not refused (401/429, or 431 for an oversized head)", || {
                format!("[{label}] {} {} → {s}", d.method, show(target.as_bytes(), 200))
            });
        }
    }
}

const WEIRD_METHODS: &[&[u8]] =
    &[b"", b"G ET", b"GET\x00", b"get", b"G\xc3\x89T", b"\tGET", b"GET\x7f", b"PRI", b"CONNECT", b"-", b"GET/"];
const VERSIONS: &[&[u8]] = &[
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"HTTP/1.2",
    b"http/1.1",
    b"HTTP/1",
    b"HTTP/1.1 extra",
    b"",
    b"HTTP/11",
    b"HTTP/1.1\x00",
];
const BAD_LENGTHS: &[&[u8]] =
    &[b"abc", b"-1", b"1 2", b"0x10", b"+5", b"99999999999999999999", b"", b"1.0", b"\xff", b"18446744073709551616"];

fn chunked(rng: &mut Rng, body: &[u8], eol: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    let mut rest = body;
    while !rest.is_empty() {
        let n = (rng.range(1, 4_096) as usize).min(rest.len());
        out.extend_from_slice(format!("{n:x}").as_bytes());
        out.extend_from_slice(eol);
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(eol);
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0");
    out.extend_from_slice(eol);
    out.extend_from_slice(eol);
    out
}

fn bad_chunked(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut out = match rng.below(8) {
        0 => b"zz\r\nabc\r\n0\r\n\r\n".to_vec(),
        1 => b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n".to_vec(),
        2 => b"3\r\nabcdef\r\n0\r\n\r\n".to_vec(),
        3 => b"3;ext=\"\x01\"\r\nabc\r\n0\r\n\r\n".to_vec(),
        4 => b"3\r\nabc\r\n0\r\nX-Trailer: \x00\r\n\r\n".to_vec(),
        5 => b"-3\r\nabc\r\n0\r\n\r\n".to_vec(),
        6 => b"3\nabc".to_vec(),
        _ => format!("{:x}\r\n", body.len() + 100).into_bytes(),
    };
    if rng.percent(50) {
        out.extend_from_slice(body);
    }
    out
}

/// A request as bytes, broken at any level: the whole, the request line, the headers, the framing.
fn raw_draft(rng: &mut Rng, ctx: &Ctx) -> (Vec<u8>, bool, &'static str) {
    match rng.below(100) {
        0..3 => return (rng.some_bytes(1, 4_000), false, "random bytes"),
        3..5 => {
            let b: &[u8] = rng.pick(&[
                &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                b"SSH-2.0-OpenSSH_9.6\r\n",
                b"",
                b"\r\n\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n",
            ]);
            return (b.to_vec(), false, "not HTTP");
        }
        _ => {}
    }
    let d = craft::draft(rng, &ctx.targets);
    let eol: &[u8] = match rng.below(100) {
        0..92 => b"\r\n",
        92..97 => b"\n",
        _ => b"\r",
    };
    let mut label = "raw request";
    let method: Vec<u8> = if rng.percent(12) {
        label = "weird method";
        match rng.below(4) {
            0 => vec![b'M'; rng.range(1_000, 20_000) as usize],
            _ => rng.pick(WEIRD_METHODS).to_vec(),
        }
    } else {
        d.method.clone().into_bytes()
    };
    let head = method == b"HEAD";
    let target: Vec<u8> = match rng.below(100) {
        0..3 => b"*".to_vec(),
        3..6 => format!("http://{}/healthz", ctx.addr).into_bytes(),
        6..8 => b"healthz".to_vec(),
        8..10 => {
            label = "overlong target";
            format!("/{}", "a".repeat(rng.range(8_000, 300_000) as usize)).into_bytes()
        }
        10..14 => {
            let mut t = d.target.clone().into_bytes();
            // Into the path only: a byte dropped into a query key (`sta\xc3\xa9tus`) can turn
            // a refused duplicate into a different key, and so into a valid request.
            let path_len = t.iter().position(|&b| b == b'?').unwrap_or(t.len());
            let at = rng.index(path_len + 1);
            let junk: &[u8] = rng.pick(&[&b"\x00"[..], b"\x7f", b"\xff\xfe", b" ", b"\x01", b"\xc3\xa9"]);
            t.splice(at..at, junk.iter().copied());
            t
        }
        _ => d.target.clone().into_bytes(),
    };
    let version: &[u8] = if rng.percent(8) { rng.pick(VERSIONS) } else { b"HTTP/1.1" };
    let mut out = method;
    out.push(b' ');
    out.extend_from_slice(&target);
    if !version.is_empty() {
        out.push(b' ');
        out.extend_from_slice(version);
    }
    out.extend_from_slice(eol);

    let line = |out: &mut Vec<u8>, name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(eol);
    };
    match rng.below(100) {
        0..85 => line(&mut out, b"host", ctx.addr.as_bytes()),
        85..90 => {
            line(&mut out, b"host", ctx.addr.as_bytes());
            line(&mut out, b"host", b"evil.example");
        }
        90..95 => {}
        _ => {
            let h: &[u8] = rng.pick(&[&b""[..], b"a b", b":::", b"[::1", b"\xff"]);
            line(&mut out, b"host", h);
        }
    }
    if rng.percent(30) {
        let (name, value): (&[u8], Vec<u8>) = match rng.below(4) {
            0 => {
                (b"authorization", rng.some_bytes(1, 200).into_iter().filter(|b| *b != b'\r' && *b != b'\n').collect())
            }
            1 => (b"authorization", b"SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=00".to_vec()),
            2 => (b"x-auth-token", craft::weird_id(rng).into_bytes()),
            _ => (b"x-auth-token", ctx.targets.token.clone().into_bytes()),
        };
        line(&mut out, name, &value);
    }
    for (k, v) in &d.headers {
        line(&mut out, k.as_bytes(), v);
    }
    if rng.percent(12) {
        label = "header attack";
        match rng.below(8) {
            0 => {
                for i in 0..rng.range(101, 400) {
                    line(&mut out, format!("x-many-{i}").as_bytes(), b"v");
                }
            }
            1 => line(&mut out, b"x-huge", &vec![b'h'; rng.range(60_000, 500_000) as usize]),
            2 => line(&mut out, rng.pick(&[&b"bad name"[..], b"x-\x00", b"\xc3\xa9", b"", b"(x)", b"x:y"]), b"v"),
            3 => {
                line(&mut out, b"x-folded", b"first");
                out.extend_from_slice(b"  continued");
                out.extend_from_slice(eol);
            }
            4 => {
                out.extend_from_slice(b"no colon here");
                out.extend_from_slice(eol);
            }
            5 => line(&mut out, b"x-cr", b"a\rb"),
            6 => line(&mut out, &vec![b'n'; rng.range(10_000, 100_000) as usize], b"v"),
            _ => line(&mut out, b"x-nul", b"a\x00b"),
        }
    }
    if rng.percent(3) {
        line(&mut out, b"expect", b"100-continue");
    }
    // Always `close`: a kept-alive connection would leave the reader waiting.
    line(&mut out, b"connection", b"close");
    let body = &d.body;
    let framed: Vec<u8> = match rng.below(100) {
        0..55 => {
            if !body.is_empty() || rng.percent(30) {
                line(&mut out, b"content-length", body.len().to_string().as_bytes());
            }
            body.clone()
        }
        55..62 => {
            label = "content-length short";
            line(&mut out, b"content-length", (body.len() / 2).to_string().as_bytes());
            body.clone()
        }
        62..69 => {
            label = "content-length long";
            line(&mut out, b"content-length", (body.len() + rng.range(1, 300_000) as usize).to_string().as_bytes());
            body.clone()
        }
        69..76 => {
            label = "content-length invalid";
            line(&mut out, b"content-length", rng.pick(BAD_LENGTHS));
            body.clone()
        }
        76..80 => {
            label = "content-length twice";
            line(&mut out, b"content-length", body.len().to_string().as_bytes());
            let other = if rng.percent(50) { body.len() } else { body.len() + 1 };
            line(&mut out, b"content-length", other.to_string().as_bytes());
            body.clone()
        }
        80..89 => {
            label = "chunked";
            line(&mut out, b"transfer-encoding", b"chunked");
            chunked(rng, body, eol)
        }
        89..95 => {
            label = "chunked broken";
            line(&mut out, b"transfer-encoding", b"chunked");
            bad_chunked(rng, body)
        }
        95..97 => {
            label = "chunked and content-length";
            line(&mut out, b"transfer-encoding", b"chunked");
            line(&mut out, b"content-length", body.len().to_string().as_bytes());
            chunked(rng, body, eol)
        }
        _ => {
            label = "unknown transfer-encoding";
            let te: &[u8] = rng.pick(&[&b"gzip"[..], b"chunked, gzip", b"xchunked", b"identity", b"chunked, chunked"]);
            line(&mut out, b"transfer-encoding", te);
            body.clone()
        }
    };
    out.extend_from_slice(eol);
    out.extend_from_slice(&framed);
    (out, head, label)
}

async fn one_raw(ctx: &Ctx, rng: &mut Rng, t: &mut Tally) {
    t.sent += 1;
    let (bytes, head, label) = raw_draft(rng, ctx);
    let describe = || format!("[{label}] {}", show(&bytes, 200));
    // Requests the server cannot see the end of: it learns of the end from EOF.
    let incomplete = matches!(
        label,
        "random bytes" | "not HTTP" | "content-length long" | "chunked broken" | "unknown transfer-encoding"
    ) || !bytes.windows(4).any(|w| w == b"\r\n\r\n");
    exchange(ctx, t, &bytes, head, incomplete, &describe).await;
}

async fn worker(ctx: Arc<Ctx>, mode: Mode, mut rng: Rng, count: usize) -> Tally {
    let mut t = Tally::default();
    for _ in 0..count {
        match mode {
            Mode::Raw => one_raw(&ctx, &mut rng, &mut t).await,
            Mode::Forged => one_forged(&ctx, &mut rng, &mut t).await,
            Mode::Signed => one_signed(&ctx, &mut rng, &mut t).await,
        }
    }
    t
}

/// Runs `count` requests of `mode` on `stage` over parallel connections, then checks the server
/// and the database; returns the tally and the failures.
async fn run(name: &str, mode: Mode, stage: &mut Stage, count: usize, seed: u64) -> (Tally, Vec<String>) {
    let before = dump(&stage.db_path);
    let signers: Vec<IssuedCredential> = std::iter::once(stage.admin.clone())
        .chain(stage.keys.values().filter(|k| k.user_name.starts_with("signer")).cloned())
        .collect();
    let victims = match (stage.keys.get("victim"), stage.keys.get("swapper"), stage.keys.get("tamperer")) {
        (Some(a), Some(b), Some(c)) => Some((a.clone(), b.clone(), c.clone())),
        _ => None,
    };
    let http = kafka_tasks::tls::client_builder(None)
        .expect("client builder")
        .redirect(reqwest::redirect::Policy::none())
        .timeout(EXCHANGE_LIMIT)
        .build()
        .expect("client");
    let ctx = Arc::new(Ctx {
        addr: stage.server.addr.clone(),
        base: stage.server.base.clone(),
        http,
        targets: stage.targets.clone(),
        signers,
        victims,
    });
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let per = count.div_ceil(WORKERS);
    let handles: Vec<_> = (0..WORKERS).map(|_| tokio::spawn(worker(ctx.clone(), mode, rng.fork(), per))).collect();
    let mut tally = Tally::default();
    for h in handles {
        tally.merge(h.await.expect("worker"));
    }
    let elapsed = started.elapsed();

    let mut failures = vec![];
    for (kind, (n, examples)) in &tally.violations {
        failures.push(format!("{kind}: {n} times, e.g.\n      {}", examples.join("\n      ")));
    }
    // Still alive and sane.
    let admin = Api::new(&stage.server.base, stage.admin.clone());
    let health = admin.send("GET", "/healthz", None).await;
    if !health.as_ref().is_ok_and(|r| r.status == 200) {
        failures.push(format!("/healthz after the run: {health:?}"));
    }
    if !stage.server.is_running() {
        failures.push("the server process died".into());
    }
    failures.extend(stage.server.panics().into_iter().map(|p| format!("server stderr: {p}")));
    let scrape = Instant::now();
    let metrics = admin.send("GET", "/metrics", None).await.map(|r| r.text.len()).unwrap_or(0);
    let scrape = scrape.elapsed();
    let (rss, peak) = stage.server.memory_kib().unwrap_or_default();
    let (changes, audited) = database_changes(&stage.db_path, &before);
    failures.extend(changes.into_iter().map(|c| format!("database changed by rejected requests: {c}")));
    eprintln!(
        "hostile {name}: {} requests in {elapsed:?} ({:.0}/s) over {WORKERS} connections; statuses {:?}; {} past the \
         gateway; {} closed without an answer, {} timed out; {audited} refusals audited; {} kinds of failure; \
         server RSS {rss} KiB (peak {peak} KiB), /metrics {metrics} bytes in {scrape:?}",
        tally.sent,
        tally.sent as f64 / elapsed.as_secs_f64(),
        tally.by_status,
        tally.past_gateway,
        tally.closed,
        tally.timed_out,
        failures.len(),
    );
    for u in &tally.unanswered {
        eprintln!("  unanswered: {u}");
    }
    (tally, failures)
}

/// The generated runs hide a valid value behind a duplicated query key only now and then; these
/// requests do it every time, on the one task a reschedule or a cancel could change. The answer
/// must be a 400 naming the parameter, and nothing may change.
async fn duplicate_key_probes(stage: &Stage) -> Vec<String> {
    let t = &stage.targets;
    let api = Api::new(&stage.server.base, stage.admin.clone());
    let before = dump(&stage.db_path);
    let valid_time = serve::compact_time(now_ms() + 2 * 86_400_000);
    let path = format!("/v2/{PROJECT}/instances/{}/scheduled-tasks/{}", t.running, t.waiting);
    let mut failures = vec![];
    for query in [format!("execute_at=20200101000000&execute_at={valid_time}"), "status=PAUSED&status=CANCELLED".into()]
    {
        let r = api.send_patiently("PUT", &format!("{path}?{query}"), None).await;
        let code = r.json()["error_code"].as_str().unwrap_or_default().to_owned();
        if r.status != 400 || !code.starts_with("DMS.") {
            failures.push(format!("duplicate query keys ?{query} on a waiting task → {} {}", r.status, r.text));
        }
    }
    let (changes, _) = database_changes(&stage.db_path, &before);
    failures.extend(changes.into_iter().map(|c| format!("database changed by duplicate query keys: {c}")));
    failures
}

fn share(percent: usize) -> usize {
    (total_requests() * percent).div_ceil(100).max(1)
}

fn verdict(name: &str, failures: &[String]) {
    assert!(failures.is_empty(), "hostile {name} run:\n  {}", failures.join("\n  "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_from_raw_tcp_gets_json_errors_and_changes_nothing() {
    let seed = Rng::seed_from_env("KAFKA_TASKS_HOSTILE_SEED");
    let mut stage = Stage::new(&[]).await;
    let (_, failures) = run("raw", Mode::Raw, &mut stage, share(30), seed).await;
    verdict("raw", &failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_credentials_never_pass_never_lock_out_the_owner_and_change_nothing() {
    let seed = Rng::seed_from_env("KAFKA_TASKS_HOSTILE_SEED").wrapping_add(1);
    let mut stage = Stage::new(&[("victim", "admin"), ("swapper", "admin"), ("tamperer", "admin")]).await;
    let (_, mut failures) = run("forged", Mode::Forged, &mut stage, share(25), seed).await;
    // The owners of the attacked keys still get in, from the same address.
    for user in ["victim", "swapper", "tamperer"] {
        let owner = Api::new(&stage.server.base, stage.keys[user].clone());
        match owner.send("GET", &format!("/v2/{PROJECT}/instances"), None).await {
            Ok(r) if r.status == 200 => {}
            other => failures.push(format!("the owner of the {user} key is refused after the attack: {other:?}")),
        }
    }
    verdict("forged", &failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_from_signed_callers_is_refused_cleanly_and_changes_nothing() {
    let seed = Rng::seed_from_env("KAFKA_TASKS_HOSTILE_SEED").wrapping_add(2);
    // Several keys share the load, so that a per-key rate limit leaves most requests to the handlers.
    let mut stage = Stage::new(&[
        ("signer-1", "admin"),
        ("signer-2", "admin"),
        ("signer-3", "admin"),
        ("signer-4", "operator"),
        ("signer-5", "operator"),
        ("signer-6", "readonly"),
        ("signer-7", "readonly"),
    ])
    .await;
    let count = share(45);
    let probes = duplicate_key_probes(&stage).await;
    let (tally, mut failures) = run("signed", Mode::Signed, &mut stage, count, seed).await;
    failures.extend(probes);
    // The run proves something only if the handlers saw most of it.
    if tally.past_gateway * 4 < tally.sent {
        failures.push(format!("only {} of {} signed requests got past the gateway", tally.past_gateway, tally.sent));
    }
    verdict("signed", &failures);
}
