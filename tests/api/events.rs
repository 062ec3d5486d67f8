//! The task event streams (SSE): order of a task's life, resume with `Last-Event-ID`, isolation,
//! keep-alive, limits, retention, and delivery from another server on the same PostgreSQL
//! database. Each test runs on both engines (`name::sqlite`, `name::postgres`).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PROJECT, TestApp};
use kafka_tasks::domain::Role;

const OTHER_PROJECT: &str = "fedcba9876543210fedcba9876543210";

/// One SSE message: a comment (keep-alive) or an event.
#[derive(Debug, Clone, Default)]
pub struct Sse {
    pub comment: bool,
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl Sse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {self:?}"))
    }
}

/// A client reading an event stream as it comes.
pub struct EventStream {
    res: reqwest::Response,
    buf: String,
}

impl EventStream {
    /// The next message within `within`; `None` when the stream ended or nothing came in time.
    pub async fn next(&mut self, within: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut msg = Sse::default();
                for line in block.lines() {
                    if line.starts_with(':') {
                        msg.comment = true;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        msg.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        msg.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        msg.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                return Some(msg);
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk()).await.ok()?.ok()??;
            self.buf.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }

    /// The next event (skipping keep-alive comments) within `within`.
    pub async fn next_event(&mut self, within: Duration) -> Option<Sse> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let msg = self.next(left).await?;
            if !msg.comment {
                return Some(msg);
            }
        }
    }

    /// Events until one matches `done` (included), failing after 20 s.
    pub async fn until(&mut self, done: impl Fn(&Sse) -> bool) -> Vec<Sse> {
        let mut out = vec![];
        loop {
            let e = self
                .next_event(Duration::from_secs(20))
                .await
                .unwrap_or_else(|| panic!("stream stalled after {out:?}"));
            let stop = done(&e);
            out.push(e);
            if stop {
                return out;
            }
        }
    }
}

/// Opens `path` signed with `cred` (the admin's by default) plus `extra` headers.
pub async fn open_as(
    app: &TestApp,
    cred: &kafka_tasks::auth::IssuedCredential,
    path: &str,
    extra: &[(&str, &str)],
) -> Result<EventStream, crate::helpers::Response> {
    let mut headers = app.signed_headers(cred, &Method::GET, path, "", app.clock.now_ms());
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    open_with_headers(&app.base, path, &headers).await
}

pub async fn open_with_headers(
    base: &str,
    path: &str,
    headers: &[(String, String)],
) -> Result<EventStream, crate::helpers::Response> {
    let mut req = kafka_tasks::tls::http_client().get(format!("{base}{path}"));
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let res = req.send().await.expect("request sent");
    if res.status() != 200 {
        let status = res.status();
        let request_id = res.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = res.text().await.expect("body");
        return Err(crate::helpers::Response { status, request_id, text });
    }
    let kind = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(kind.starts_with("text/event-stream"), "content-type {kind}");
    Ok(EventStream { res, buf: String::new() })
}

async fn open(app: &TestApp, path: &str) -> EventStream {
    match open_as(app, &app.admin, path, &[]).await {
        Ok(s) => s,
        Err(res) => panic!("stream refused: {} {}", res.status, res.text),
    }
}

/// The log positions behind the streams' opaque ids, opened with the server's own key (which a
/// client does not have): how the tests check the order the ids hide.
pub fn positions(app: &TestApp, project: &str, events: &[Sse]) -> Vec<i64> {
    let master = kafka_tasks::auth::keys::MasterKey::load(&app.db.key_file()).expect("key").expect("a key");
    let ids = kafka_tasks::http::events::EventIds::new(master.event_id_key(project));
    events.iter().filter_map(|e| e.id.as_deref()).map(|id| ids.open(id).expect("an id of this project")).collect()
}

/// The id a stream of `project` shows for log position `position`.
fn shown(app: &TestApp, project: &str, position: i64) -> String {
    let master = kafka_tasks::auth::keys::MasterKey::load(&app.db.key_file()).expect("key").expect("a key");
    kafka_tasks::http::events::EventIds::new(master.event_id_key(project)).show(position)
}

fn project_events(app: &TestApp) -> String {
    format!("/v2/{}/tasks/events", app.project)
}

fn instance_events(app: &TestApp, inst: &str) -> String {
    format!("{}/tasks/events", app.instance_path(inst))
}

/// Submits an auto-topic toggle and returns its task id.
async fn toggle(app: &TestApp, inst: &str, enable: bool) -> String {
    let res = app.auto_topic(inst, enable).await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.json()["job_id"].as_str().expect("job_id").to_owned()
}

fn is_end_of(task: &str) -> impl Fn(&Sse) -> bool + '_ {
    move |e: &Sse| e.event == "task.finished" && e.json()["task_id"] == task
}

per_engine! {
    #[tokio::test]
    async fn a_tasks_life_arrives_in_order_with_its_progress() {
        let app = TestApp::spawn_with(&["--time-scale", "0.001"]).await;
        let inst = app.create_instance().await;
        let mut stream = open(&app, &instance_events(&app, &inst)).await;
        let task = toggle(&app, &inst, true).await;
        let events = stream.until(is_end_of(&task)).await;

        let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(kinds.first(), Some(&"task.created"), "{kinds:?}");
        assert_eq!(kinds.last(), Some(&"task.finished"), "{kinds:?}");
        // Every step starts, then finishes, in step order.
        let steps: Vec<(String, u64)> = events
            .iter()
            .filter(|e| e.event.starts_with("step."))
            .map(|e| (e.event.clone(), e.json()["step"]["index"].as_u64().expect("step index")))
            .collect();
        assert!(!steps.is_empty(), "no step events: {kinds:?}");
        for (n, pair) in steps.chunks(2).enumerate() {
            assert_eq!(pair[0], ("step.started".to_owned(), n as u64), "{steps:?}");
            assert_eq!(pair.get(1), Some(&("step.finished".to_owned(), n as u64)), "{steps:?}");
        }
        // Ids rise; every event is about this task of this instance.
        assert!(events.iter().all(|e| e.id.is_some()), "an event without an id");
        let ids = positions(&app, PROJECT, &events);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let name = events[0].json()["name"].clone();
        assert!(name.as_str().is_some_and(|n| !n.is_empty()), "{name}");
        for e in &events {
            let d = e.json();
            assert_eq!(d["task_id"], task);
            assert_eq!(d["instance_id"], inst);
            assert_eq!(d["name"], name, "{d}");
        }
        let last = events.last().expect("end").json();
        assert_eq!(last["status"], "SUCCESS");
        assert_eq!(last["progress"], 100);
        assert_eq!(last["steps_done"], last["steps"]);
        // Progress never goes back.
        let progress: Vec<u64> = events.iter().map(|e| e.json()["progress"].as_u64().expect("progress")).collect();
        assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
        // The record the API shows agrees with the last event.
        let shown = app.show_task(&inst, &task).await.json()["tasks"][0].clone();
        assert_eq!(shown["status"], last["status"]);
        assert_eq!(shown["updated_at"], last["updated_at"]);
    }
}

per_engine! {
    #[tokio::test]
    async fn deleting_and_rescheduling_are_events_too() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let done = app.finished_task(&inst, true).await;
        let mut stream = open(&app, &project_events(&app)).await;
        assert_eq!(app.delete_task(&inst, &done).await.status, 204);
        let deleted = stream.next_event(Duration::from_secs(10)).await.expect("an event");
        assert_eq!((deleted.event.as_str(), deleted.json()["task_id"].as_str()), ("task.deleted", Some(done.as_str())));

        // A scheduled task: created, then cancelled.
        app.newer_kernel().await;
        let res = app.upgrade(&inst, json!({"is_schedule": true, "execute_at": app.clock.now_ms() + 3_600_000})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let id = res.json()["schedule_id"].as_str().expect("schedule_id").to_owned();
        let created = stream.next_event(Duration::from_secs(10)).await.expect("created");
        assert_eq!(created.event, "task.created");
        assert!(created.json()["schedule_at"].is_string(), "{}", created.data);
        assert_eq!(app.update_scheduled(&inst, &id, "?status=CANCELLED").await.status, 204);
        let changed = stream.next_event(Duration::from_secs(10)).await.expect("rescheduled");
        assert_eq!(changed.event, "task.rescheduled");
        assert_eq!(changed.json()["status"], "CANCELLED");
        assert_eq!(changed.json()["task_id"], id);
    }
}

per_engine! {
    /// A bulk delete (and so the pruner, which shares its store path) logs one `task.deleted` per record.
    #[tokio::test]
    async fn each_record_of_a_bulk_delete_is_a_deleted_event() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let first = app.finished_task(&inst, true).await;
        let second = app.finished_task(&inst, true).await;
        let mut stream = open(&app, &project_events(&app)).await;
        let end = chrono::DateTime::from_timestamp_millis(app.clock.now_ms() + 86_400_000)
            .expect("time")
            .format("%Y%m%d%H%M%S")
            .to_string();
        let res = app.delete(&format!("/v2/{PROJECT}/instances/{inst}/tasks?end_time={end}")).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let deleted = res.json()["deleted"].as_u64().expect("deleted");
        assert!(deleted >= 2, "{}", res.text);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..deleted {
            let e = stream.next_event(Duration::from_secs(10)).await.expect("an event");
            assert_eq!(e.event, "task.deleted", "{}", e.data);
            seen.insert(e.json()["task_id"].as_str().expect("task_id").to_owned());
        }
        assert!(seen.contains(&first) && seen.contains(&second), "{seen:?}");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_stream_resumed_with_last_event_id_loses_nothing_and_repeats_nothing() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        // The whole log from its beginning, read in one go: the reference.
        let mut first = open(&app, &format!("{}?after=0", project_events(&app))).await;
        let t1 = toggle(&app, &inst, true).await;
        let part = first.until(|e| e.event == "step.finished" && e.json()["task_id"] == t1).await;
        let seen = part.last().and_then(|e| e.id.clone()).expect("an id");
        drop(first);
        // While disconnected, more happens.
        app.wait_task_status(&inst, &t1, "SUCCESS").await;
        let t2 = toggle(&app, &inst, false).await;
        app.wait_task_status(&inst, &t2, "SUCCESS").await;

        let last = seen.to_string();
        let mut resumed = match open_as(&app, &app.admin, &project_events(&app), &[("Last-Event-ID", &last)]).await {
            Ok(s) => s,
            Err(res) => panic!("{} {}", res.status, res.text),
        };
        let rest = resumed.until(is_end_of(&t2)).await;
        let mut reference = open(&app, &format!("{}?after=0", project_events(&app))).await;
        let all = reference.until(is_end_of(&t2)).await;

        let got: Vec<String> = part.iter().chain(rest.iter()).filter_map(|e| e.id.clone()).collect();
        let want: Vec<String> = all.iter().filter_map(|e| e.id.clone()).collect();
        assert_eq!(got, want, "resumed stream differs from the whole log");
        let mut unique = got.clone();
        unique.dedup();
        assert_eq!(unique.len(), got.len(), "duplicates: {got:?}");
        // The `?after=` form resumes at the same place.
        let mut by_query = open(&app, &format!("{}?after={seen}", project_events(&app))).await;
        let again = by_query.next_event(Duration::from_secs(10)).await.expect("an event");
        assert_eq!(again.id, rest.first().and_then(|e| e.id.clone()));
    }
}

per_engine! {
    #[tokio::test]
    async fn streams_are_isolated_by_project_and_open_to_readonly_keys() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let stranger = app.credential(OTHER_PROJECT, "mallory", Role::Admin).await;
        // Another project's key is refused on both routes, whatever the resume point.
        for path in [project_events(&app), instance_events(&app, &inst), format!("{}?after=0", project_events(&app))] {
            let refused = open_as(&app, &stranger, &path, &[]).await.err().expect("refused");
            refused.assert_error(403, "APIGW.0302");
        }
        // Its own project's stream is its own: B's events never reach A's stream.
        let b_path = format!("/v2/{OTHER_PROJECT}/tasks/events");
        let mut b_stream = match open_as(&app, &stranger, &b_path, &[]).await {
            Ok(s) => s,
            Err(res) => panic!("{} {}", res.status, res.text),
        };
        let mut a_stream = open(&app, &format!("{}?after=0", project_events(&app))).await;
        let body = json!({"name": "kafka-b", "engine_version": "2.7", "broker_num": 3, "storage_space": 300,
                          "product_id": "c6.2u4g.cluster", "vpc_id": "vpc-1"});
        let res = app
            .request_as(&stranger, Method::POST, &format!("/v2/kafka/{OTHER_PROJECT}/instances"), Some(body.to_string()))
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let b_inst = res.json()["instance_id"].as_str().expect("instance").to_owned();
        let b_first = b_stream.next_event(Duration::from_secs(10)).await.expect("B sees its own event");
        assert_eq!(b_first.json()["instance_id"], b_inst);
        // A's instance stream on B's instance: not A's instance.
        let res = open_as(&app, &app.admin, &instance_events(&app, &b_inst), &[]).await.err().expect("refused");
        res.assert_error(404, "DMS.00404022");
        // A marker in A: everything A's stream carries up to it is A's.
        let marker = toggle(&app, &inst, false).await;
        let seen = a_stream.until(|e| e.json()["task_id"] == marker).await;
        for e in &seen {
            assert_ne!(e.json()["instance_id"], b_inst, "B's event in A's stream: {e:?}");
        }
        assert!(seen.len() > 1, "A's own history was streamed: {seen:?}");

        // A read-only key may follow; a token may too.
        let reader = app.credential(PROJECT, "viewer", Role::Readonly).await;
        let mut ro = match open_as(&app, &reader, &project_events(&app), &[]).await {
            Ok(s) => s,
            Err(res) => panic!("{} {}", res.status, res.text),
        };
        toggle(&app, &inst, true).await;
        assert!(ro.next_event(Duration::from_secs(10)).await.is_some());
        let token = token(&app).await;
        let mut by_token =
            match open_with_headers(&app.base, &project_events(&app), &[("x-auth-token".into(), token)]).await {
                Ok(s) => s,
                Err(res) => panic!("{} {}", res.status, res.text),
            };
        let _ = app.wait_instance_status(&inst, "RUNNING").await;
        toggle(&app, &inst, false).await;
        assert!(by_token.next_event(Duration::from_secs(10)).await.is_some());
        // Unsigned: 401.
        let res = open_with_headers(&app.base, &project_events(&app), &[]).await.err().expect("refused");
        assert_eq!(res.status, 401);
    }
}

async fn token(app: &TestApp) -> String {
    let body = json!({"auth": {"identity": {"methods": ["hw_ak_sk"]}, "scope": {"project": {"id": PROJECT}}}});
    let headers =
        app.signed_headers(&app.admin, &Method::POST, "/v3/auth/tokens", &body.to_string(), app.clock.now_ms());
    let mut req = kafka_tasks::tls::http_client().post(format!("{}/v3/auth/tokens", app.base)).body(body.to_string());
    for (k, v) in &headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let res = req.send().await.expect("sent");
    assert_eq!(res.status(), 201);
    res.headers().get("x-subject-token").and_then(|v| v.to_str().ok()).expect("X-Subject-Token").to_owned()
}

per_engine! {
    #[tokio::test]
    async fn an_idle_stream_gets_keep_alives_and_outlives_the_idle_timeout() {
        let app =
            TestApp::spawn_with(&["--time-scale", "0", "--event-keepalive-ms", "100", "--idle-timeout-ms", "300"]).await;
        let inst = app.create_instance().await;
        let mut stream = open(&app, &project_events(&app)).await;
        let started = Instant::now();
        let mut comments = 0;
        while started.elapsed() < Duration::from_millis(900) {
            // (On PostgreSQL a stream from "now" may begin with a few events committed just before.)
            let msg = stream.next(Duration::from_secs(2)).await.expect("a keep-alive");
            comments += usize::from(msg.comment);
        }
        assert!(comments >= 4, "{comments} keep-alives in 900 ms at 100 ms");
        let task = toggle(&app, &inst, true).await;
        let got = stream.until(|e| e.json()["task_id"] == task).await;
        assert_eq!(got.last().map(|e| e.event.as_str()), Some("task.created"));
    }
}

per_engine! {
    #[tokio::test]
    async fn streams_are_capped_per_key_and_give_their_slot_back() {
        let app =
            TestApp::spawn_with(&["--time-scale", "0", "--event-streams-per-key", "2", "--event-streams-max", "3"]).await;
        let a = open(&app, &project_events(&app)).await;
        let b = open(&app, &project_events(&app)).await;
        let res = open_as(&app, &app.admin, &project_events(&app), &[]).await.err().expect("third refused");
        res.assert_error(429, "APIGW.0308");
        // Another key has its own allowance, under the overall cap.
        let other = app.credential(PROJECT, "other", Role::Readonly).await;
        let c = open_as(&app, &other, &project_events(&app), &[]).await.ok().expect("another key's stream");
        let res = open_as(&app, &other, &project_events(&app), &[]).await.err().expect("over the overall cap");
        res.assert_error(429, "APIGW.0308");
        // A stream the client drops gives its slot back.
        drop(a);
        drop(c);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match open_as(&app, &app.admin, &project_events(&app), &[]).await {
                Ok(_) => break,
                Err(res) => {
                    assert!(Instant::now() < deadline, "slot never came back: {}", res.text);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        drop(b);
    }
}

per_engine! {
    /// Attack: one project mints keys (or users) and opens streams with each until the process has
    /// none left for anyone else. Its streams stop at its own cap; another project's still open.
    #[tokio::test]
    async fn one_project_with_many_keys_cannot_take_every_stream() {
        let app = TestApp::spawn_with(&[
            "--time-scale",
            "0",
            "--event-streams-per-key",
            "2",
            "--event-streams-per-project",
            "3",
            "--event-streams-max",
            "5",
        ])
        .await;
        let path = project_events(&app);
        let mut held = Vec::new();
        for user in ["k1", "k2", "k3"] {
            let cred = app.credential(PROJECT, user, Role::Readonly).await;
            for _ in 0..2 {
                match open_as(&app, &cred, &path, &[]).await {
                    Ok(s) => held.push(s),
                    Err(res) => res.assert_error(429, "APIGW.0308"),
                }
            }
        }
        assert_eq!(held.len(), 3, "the project holds its own cap of streams, no more");
        // A fresh key of the same project is refused too: the cap is the project's, not the key's.
        let fresh = app.credential(PROJECT, "k4", Role::Readonly).await;
        open_as(&app, &fresh, &path, &[]).await.err().expect("over the project's cap").assert_error(429, "APIGW.0308");
        // Another project still has the room the first one could not take.
        let other = app.credential(OTHER_PROJECT, "bob", Role::Readonly).await;
        let other_path = format!("/v2/{OTHER_PROJECT}/tasks/events");
        let b = open_as(&app, &other, &other_path, &[]).await.ok().expect("another project's stream");
        // A stream the project drops gives its project slot back.
        held.pop();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match open_as(&app, &fresh, &path, &[]).await {
                Ok(s) => {
                    held.push(s);
                    break;
                }
                Err(res) => {
                    assert!(Instant::now() < deadline, "project slot never came back: {}", res.text);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        drop((held, b));
    }
}

per_engine! {
    #[tokio::test]
    async fn a_slow_reader_gets_every_event_late_but_in_order() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let mut slow = open(&app, &project_events(&app)).await;
        // Far more events than one page while the reader reads nothing.
        let mut last = String::new();
        let mut ours = std::collections::HashSet::new();
        for i in 0..40 {
            last = toggle(&app, &inst, i % 2 == 0).await;
            ours.insert(last.clone());
            app.wait_task_status(&inst, &last, "SUCCESS").await;
        }
        let events = slow.until(is_end_of(&last)).await;
        let ids = positions(&app, PROJECT, &events);
        assert!(ids.len() > kafka_tasks::http::events::PAGE, "{} events", ids.len());
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order");
        let created = events
            .iter()
            .filter(|e| e.event == "task.created" && ours.contains(e.json()["task_id"].as_str().unwrap_or("")))
            .count();
        assert_eq!(created, 40);
    }
}

/// Appends `n` events of another instance of the project behind the server's back, through the
/// engine's own driver (no wake-up: only the next commit of the server wakes the streams).
async fn neighbour_events(app: &TestApp, n: i64) {
    const DATA: &str = r#"{"task_id":"neighbour"}"#;
    if let Some(path) = app.db.url.strip_prefix("sqlite:") {
        let conn = rusqlite::Connection::open(path).expect("open");
        conn.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
        conn.execute(
            "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?1) \
             INSERT INTO task_events (at, project_id, instance_id, task_id, kind, data) \
             SELECT 0, ?2, 'neighbour', 'neighbour', 'task.created', ?3 FROM k",
            rusqlite::params![n, PROJECT, DATA],
        )
        .expect("insert");
    } else {
        let (client, conn) = tokio_postgres::connect(&app.db.url, tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(conn);
        client
            .execute(
                "INSERT INTO task_events (at, project_id, instance_id, task_id, kind, data) \
                 SELECT 0, $2, 'neighbour', 'neighbour', 'task.created', $3 FROM generate_series(1, $1::BIGINT)",
                &[&n, &PROJECT, &DATA],
            )
            .await
            .expect("insert");
    }
}

per_engine! {
    /// An instance's stream walks its project's log a bounded part at a time: behind a busy
    /// neighbour's thousands of events it reads on at once, part after part, rather than waiting
    /// for the next poll (set here beyond the test's patience) after a part with none of its own.
    #[tokio::test]
    async fn a_quiet_instance_in_a_busy_project_gets_its_events_at_once() {
        let app = TestApp::spawn_with(&["--event-poll-ms", "600000", "--time-scale", "0"]).await;
        let inst = app.create_instance().await;
        let mut stream = open(&app, &instance_events(&app, &inst)).await;
        neighbour_events(&app, 3 * kafka_tasks::storage::events::INSTANCE_SCAN_ROWS as i64).await;
        let task = toggle(&app, &inst, true).await;
        // (`until` fails after 20 s: a stream waiting for its poll would.)
        let events = stream.until(is_end_of(&task)).await;
        assert_eq!(events.first().map(|e| e.event.as_str()), Some("task.created"), "{events:?}");
        assert!(events.iter().all(|e| e.json()["task_id"] == task.as_str()), "{events:?}");
        assert!(events.iter().all(|e| e.json()["instance_id"] == inst.as_str()), "{events:?}");
    }
}

per_engine! {
    #[tokio::test]
    async fn bad_resume_points_are_refused_clearly() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let _ = app.wait_instance_status(&inst, "RUNNING").await;
        let other_projects_id = shown(&app, OTHER_PROJECT, 1);
        assert_ne!(other_projects_id, shown(&app, PROJECT, 1), "each project shows its own ids");
        for (path, header) in [
            (format!("{}?after=-1", project_events(&app)), None),
            (format!("{}?after=abc", project_events(&app)), None),
            (format!("{}?after=999999999", project_events(&app)), None),
            (project_events(&app), Some("abc")),
            (project_events(&app), Some("999999999")),
            (project_events(&app), Some("1")),
            // Well-formed, but no id any stream of this project showed.
            (project_events(&app), Some("00112233445566778899aabbccddeeff")),
            // Another project's id for a position that exists: it says nothing here.
            (project_events(&app), Some(&other_projects_id)),
            (format!("{}?after={other_projects_id}", project_events(&app)), None),
        ] {
            let extra: Vec<(&str, &str)> = header.map(|h| vec![("Last-Event-ID", h)]).unwrap_or_default();
            let res = open_as(&app, &app.admin, &path, &extra).await.err().expect("refused");
            res.assert_error(400, "DMS.00400062");
        }
    }
}

per_engine! {
    #[tokio::test]
    async fn a_resume_point_older_than_retention_says_events_were_missed() {
        let app = TestApp::spawn_with(&["--time-scale", "0", "--event-retention-max", "3", "--event-prune-ms", "50"]).await;
        let inst = app.create_instance().await;
        let mut last = String::new();
        for enable in [true, false] {
            last = toggle(&app, &inst, enable).await;
            app.wait_task_status(&inst, &last, "SUCCESS").await;
        }
        // Pruning keeps about the newest three (it runs every 50 ms), in whole writes.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut s = open(&app, &format!("{}?after={}", project_events(&app), shown(&app, PROJECT, 1))).await;
            let first = s.next_event(Duration::from_secs(5)).await.expect("an event");
            if first.event == "missed" {
                assert_eq!(first.id, None);
                assert_eq!(first.json()["after"], shown(&app, PROJECT, 1));
                let resumed = first.json()["resumed_at"].as_str().expect("resumed_at").to_owned();
                // Then the kept events follow, from after where pruning had reached (pruning goes on
                // every 50 ms, so it may have taken a few more by the time the page is read).
                let kept = s.until(is_end_of(&last)).await;
                let resumed = positions(&app, PROJECT, &[Sse { id: Some(resumed), ..Sse::default() }]);
                let kept_at = positions(&app, PROJECT, &kept);
                assert!(kept_at.iter().all(|p| *p > resumed[0]), "{kept_at:?} after {resumed:?}");
                assert!(kept_at.windows(2).all(|w| w[0] < w[1]), "{kept_at:?}");
                // Pruned down: the newest three, and at most the rest of the write they begin in
                // (the events one write makes about one task go together: same task, same instant).
                let newest = kept.len().saturating_sub(3);
                let made = |e: &Sse| (e.json()["task_id"].clone(), e.json()["at"].clone());
                if kept[..newest].iter().all(|e| made(e) == made(&kept[newest])) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "never pruned: {first:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

per_engine! {
    #[tokio::test]
    async fn a_stream_ends_after_its_lifetime_and_resumes() {
        let app =
            TestApp::spawn_with(&["--time-scale", "0", "--event-stream-lifetime-secs", "1", "--event-keepalive-ms", "100"])
                .await;
        let mut stream = open(&app, &project_events(&app)).await;
        let started = Instant::now();
        while stream.next(Duration::from_secs(5)).await.is_some() {
            assert!(started.elapsed() < Duration::from_secs(4), "stream outlived its lifetime");
        }
        assert!(started.elapsed() >= Duration::from_millis(900));
    }
}

on_postgres! {
    /// Two servers on one database: an event committed through one reaches a stream on the other
    /// by NOTIFY (the other's poll interval is set far beyond the test's patience).
    #[tokio::test]
    async fn an_event_written_by_another_server_arrives_on_postgres() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let key_file = app.db.key_file();
        let args = crate::helpers::serve_args(&[
            "--database",
            &app.db.url,
            "--master-key-file",
            key_file.to_str().expect("path"),
            "--event-poll-ms",
            "600000",
            "--time-scale",
            "0",
        ]);
        let other = kafka_tasks::server::start(&args).await.expect("second server");
        let other_base = format!("http://{}", other.addr);
        let path = project_events(&app);
        let headers = app.signed_headers(&app.admin, &Method::GET, &path, "", app.clock.now_ms());
        let mut stream = match open_with_headers(&other_base, &path, &headers).await {
            Ok(s) => s,
            Err(res) => panic!("{} {}", res.status, res.text),
        };
        let mut latencies = vec![];
        for enable in [true, false, true] {
            let sent = Instant::now();
            let task = toggle(&app, &inst, enable).await;
            let got = stream.until(|e| e.json()["task_id"] == task).await;
            latencies.push(sent.elapsed());
            assert_eq!(got.last().map(|e| e.event.as_str()), Some("task.created"));
            stream.until(is_end_of(&task)).await;
            app.wait_task_status(&inst, &task, "SUCCESS").await;
        }
        eprintln!("cross-server delivery: {latencies:?}");
        other.stop().await.expect("stops");
    }
}

per_engine! {
    /// A graceful stop ends open streams at once rather than waiting out the grace period for them.
    #[tokio::test]
    async fn open_streams_end_when_the_server_stops() {
        let app = TestApp::spawn_with(&["--time-scale", "0", "--shutdown-grace-ms", "20000"]).await;
        let mut stream = open(&app, &project_events(&app)).await;
        let started = Instant::now();
        let app = app.restart(&["--time-scale", "0"]).await;
        assert!(started.elapsed() < Duration::from_secs(5), "the stop waited {:?} for the stream", started.elapsed());
        assert!(stream.next(Duration::from_secs(2)).await.is_none(), "the stream is over");
        drop(app);
    }
}

per_engine! {
    /// Attack: a client opens a stream and stops reading while events keep coming, to keep its slot
    /// (and its key's view) past the stream's lifetime. hyper stops polling a stream whose client
    /// does not read, so the lifetime is enforced by the connection's timer: the slot comes back
    /// within the lifetime plus a second's grace, and no event committed after the lifetime reaches
    /// the client.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_whose_client_stops_reading_still_ends_at_its_lifetime() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let app = TestApp::spawn_with(&[
            "--time-scale",
            "0",
            "--event-streams-per-key",
            "1",
            "--event-stream-lifetime-secs",
            "2",
            "--write-timeout-ms",
            "600000",
        ])
        .await;
        let inst = app.create_instance().await;
        let _ = app.wait_instance_status(&inst, "RUNNING").await;
        let path = project_events(&app);
        let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().expect("addr");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("receive buffer");
        let mut stalled = socket.connect(addr).await.expect("connect");
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
        for (k, v) in app.signed_headers(&app.admin, &Method::GET, &path, "", app.clock.now_ms()) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stalled.write_all(head.as_bytes()).await.expect("stream asked for");
        let opened = Instant::now();
        // Events keep coming, more than the socket buffers hold, so the stream's writes block.
        let mut last_task = String::new();
        let mut enable = true;
        while opened.elapsed() < Duration::from_millis(3500) {
            last_task = toggle(&app, &inst, enable).await;
            enable = !enable;
            let _ = app.wait_instance_status(&inst, "RUNNING").await;
        }
        // By now (lifetime 2 s + 1 s grace) the slot is back: a second stream of the key opens.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match open_as(&app, &app.admin, &path, &[]).await {
                Ok(_) => break,
                Err(res) => {
                    assert!(Instant::now() < deadline, "the stalled stream still holds its slot: {}", res.text);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        assert!(opened.elapsed() < Duration::from_secs(7), "slot back after {:?}", opened.elapsed());
        // The stalled stream is over: its connection was closed (its last bytes could not be written)
        // or its final chunk waits in the socket (they could); nothing it got was of the last task,
        // made after the lifetime.
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            while !got.ends_with(b"0\r\n\r\n") {
                match stalled.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(read.is_ok(), "the stalled stream never ended");
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{}", &text[..text.len().min(200)]);
        assert!(!text.contains(&last_task), "an event committed after the lifetime reached the client");
    }
}

per_engine! {
    /// A stream that ended at its lifetime leaves its keep-alive connection usable: the timer that
    /// closes a stalled stream's connection is the stream's, not the connection's, so a request sent
    /// on it later is answered.
    #[tokio::test]
    async fn a_connection_that_carried_a_finished_stream_serves_further_requests() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let app = TestApp::spawn_with(&["--time-scale", "0", "--event-stream-lifetime-secs", "1"]).await;
        let path = project_events(&app);
        let addr = app.base.trim_start_matches("http://").to_owned();
        let mut conn = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
        for (k, v) in app.signed_headers(&app.admin, &Method::GET, &path, "", app.clock.now_ms()) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes()).await.expect("sent");
        // Read until the chunked stream's last chunk: the stream ended at its lifetime.
        let mut got = Vec::new();
        let mut buf = vec![0u8; 8192];
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while !got.ends_with(b"0\r\n\r\n") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            true
        })
        .await;
        assert_eq!(ended, Ok(true), "the stream did not end by itself: {}", String::from_utf8_lossy(&got));
        // Past the lifetime and its grace, the same connection still answers.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await.expect("sent");
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await.expect("answered").expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    }
}
