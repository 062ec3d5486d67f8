//! Connection hygiene, bounded memory and metrics, the HTTP stack's own errors, readiness and
//! database outages.

use std::time::{Duration, Instant};

use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// A method of `len` letters that no server knows.
fn junk_method(seed: usize, len: usize) -> String {
    let mut s = String::with_capacity(len + 32);
    while s.len() < len {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string().to_ascii_uppercase());
    }
    s.truncate(len);
    s.replace_range(0..1, ["X", "Y", "Z"][seed % 3]);
    s
}

per_engine! {
    #[tokio::test]
    async fn a_flood_of_made_up_methods_leaves_metrics_small_and_labels_bounded() {
        // A process of its own: the metrics recorder is process-wide, and other tests' servers in
        // this test binary would add their own routes and counts to what is measured here.
        let app = TestApp::spawn_process(&["--time-scale", "0"]).await;
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..20 {
            let base = app.base.clone();
            tasks.spawn(async move {
                for i in 0..100 {
                    let method = junk_method(worker * 100 + i, 1000 + (worker * 37 + i * 11) % 1000);
                    let req = format!("{method} /v2/x/{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                    let reply = raw_exchange(&base, req.as_bytes(), Duration::from_secs(5)).await;
                    assert!(!reply.bytes.is_empty(), "no answer to a junk method");
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("flood worker");
        }
        let text = app.scrape_metrics().await;
        assert!(text.len() < 64 * 1024, "/metrics grew to {} bytes", text.len());
        assert!(text.lines().all(|l| l.len() < 512), "a metrics line is longer than 512 bytes");
        for part in text.split("method=\"").skip(1) {
            let value = part.split('"').next().unwrap_or_default();
            assert!(
                ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "OTHER"].contains(&value),
                "unexpected method label {value:?}"
            );
        }
        assert!(text.contains("method=\"OTHER\""), "junk methods are counted as OTHER");
        assert!(text.contains("route=\"unmatched\"") || text.contains("route=\"/"), "routes are templates");
        assert!(!text.contains("/v2/x/1"), "raw paths never become labels");
    }
}

per_engine! {
    #[tokio::test]
    async fn slow_headers_and_idle_keep_alive_connections_are_closed_within_their_timeouts() {
        let app =
            TestApp::spawn_with(&["--time-scale", "0", "--header-timeout-ms", "300", "--idle-timeout-ms", "700"]).await;

        let slow = raw_exchange(&app.base, b"GET /healthz HTTP/1.1\r\nHost: t\r\n", Duration::from_secs(5)).await;
        let closed = slow.closed_after.expect("a connection with half a head stays open");
        assert!(closed >= Duration::from_millis(250) && closed < Duration::from_millis(1500), "closed after {closed:?}");

        // A head that trickles in: the header timeout counts from its first byte, not per byte.
        let mut s = raw_connect(&app.base).await;
        let started = Instant::now();
        let mut closed_early = false;
        for chunk in [&b"GET /hea"[..], b"lthz HTTP/1.1\r\n", b"Host: t\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n", b"X-C: 3\r\n"] {
            if s.write_all(chunk).await.is_err() {
                closed_early = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await;
        assert!(closed_early || matches!(n, Ok(Ok(0)) | Ok(Err(_))), "a trickled head was not cut off: {n:?}");
        assert!(started.elapsed() < Duration::from_millis(1500), "cut off after {:?}", started.elapsed());

        // A connection that never sends a byte holds its slot only for the header timeout.
        let silent = raw_exchange(&app.base, b"", Duration::from_secs(5)).await;
        let closed = silent.closed_after.expect("a silent connection stays open");
        assert!(closed >= Duration::from_millis(250) && closed < Duration::from_millis(650), "closed after {closed:?}");

        let idle = raw_exchange(&app.base, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", Duration::from_secs(5)).await;
        assert_eq!(idle.response().0, 200);
        let closed = idle.closed_after.expect("an idle keep-alive connection stays open");
        assert!(closed >= Duration::from_millis(600) && closed < Duration::from_millis(2000), "closed after {closed:?}");
    }
}

per_engine! {
    #[tokio::test]
    async fn a_slow_body_is_cut_off_with_a_dms_error() {
        let app = TestApp::spawn_with(&["--time-scale", "0", "--body-timeout-ms", "400"]).await;
        let path = format!("/v2/{}/instances/action", app.project);
        let mut req = format!("POST {path} HTTP/1.1\r\n");
        for (k, v) in app.signed_headers(&app.admin, &Method::POST, &path, "{}", app.clock.now_ms()) {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Content-Length: 1000\r\n\r\n{\"action\":");
        let started = Instant::now();
        let reply = raw_exchange(&app.base, req.as_bytes(), Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(2), "answered after {:?}", started.elapsed());
        reply.assert_dms_error(408, "DMS.00408000");
    }
}

per_engine! {
    #[tokio::test]
    async fn errors_of_the_http_stack_are_dms_json_with_a_request_id() {
        let app = TestApp::spawn().await;
        let wait = Duration::from_secs(5);

        raw_exchange(&app.base, b"NOT A REQUEST LINE\r\n\r\n", wait).await.assert_dms_error(400, "DMS.00400800");
        raw_exchange(&app.base, b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", wait)
            .await
            .assert_dms_error(400, "DMS.00400800");
        let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\n");
        for i in 0..150 {
            many.push_str(&format!("X-H{i}: v\r\n"));
        }
        many.push_str("\r\n");
        raw_exchange(&app.base, many.as_bytes(), wait).await.assert_dms_error(431, "DMS.00431000");
        let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "a".repeat(20 * 1024));
        raw_exchange(&app.base, long.as_bytes(), wait).await.assert_dms_error(414, "DMS.00414000");
        let huge = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(100 * 1024));
        let reply = raw_exchange(&app.base, huge.as_bytes(), wait).await;
        let status = reply.response().0;
        assert!(status == 414 || status == 431, "{status}");
        reply.assert_dms_error(status, if status == 414 { "DMS.00414000" } else { "DMS.00431000" });

        // After a good response on the same connection, the error still has its own shape.
        let piped = raw_exchange(&app.base, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGARBAGE\r\n\r\n", wait).await;
        let text = String::from_utf8_lossy(&piped.bytes).into_owned();
        let second = text.find("HTTP/1.1 400").expect("a second response");
        RawReply { bytes: text.as_bytes()[second..].to_vec(), closed_after: None }.assert_dms_error(400, "DMS.00400800");

        // A malformed chunked body is a bad request, not a large one.
        let path = format!("/v2/{}/instances/action", app.project);
        let mut req = format!("POST {path} HTTP/1.1\r\n");
        for (k, v) in app.signed_headers(&app.admin, &Method::POST, &path, "{}", app.clock.now_ms()) {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n");
        raw_exchange(&app.base, req.as_bytes(), wait).await.assert_dms_error(400, "DMS.00400800");
    }
}

per_engine! {
    #[tokio::test(flavor = "multi_thread")]
    async fn sigterm_with_stalled_clients_exits_within_the_grace_period() {
        let mut app = TestApp::spawn_process(&["--time-scale", "0", "--shutdown-grace-ms", "1000"]).await;
        let path = format!("/v2/{}/instances/action", app.project);
        let mut half_head = raw_connect(&app.base).await;
        half_head.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n").await.expect("sent");
        let mut half_body = raw_connect(&app.base).await;
        let mut req = format!("POST {path} HTTP/1.1\r\n");
        for (k, v) in app.signed_headers(&app.admin, &Method::POST, &path, "{}", app.clock.now_ms()) {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Content-Length: 100000\r\n\r\n{\"action\":");
        half_body.write_all(req.as_bytes()).await.expect("sent");
        let mut idle = raw_connect(&app.base).await;
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await.expect("sent");
        let mut buf = [0u8; 1024];
        let _ = idle.read(&mut buf).await;
        tokio::time::sleep(Duration::from_millis(200)).await;

        let started = Instant::now();
        let status = tokio::task::block_in_place(|| app.terminate_within(Duration::from_secs(8)));
        let took = started.elapsed();
        assert!(status.is_some(), "the server did not exit within 8 s of SIGTERM");
        assert!(took < Duration::from_secs(4), "exit took {took:?} with a 1 s grace period");
        drop((half_head, half_body, idle));
    }
}

per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_large_bodies_stay_within_the_body_budget() {
        const CLIENTS: usize = 300;
        const BODY: usize = 250_000;
        // All 300 come from one address: this is about the global budget, so the per-address caps
        // (connections, unverified bodies, bytes) are set out of its way.
        let app = TestApp::spawn_process(&[
            "--time-scale",
            "0",
            "--body-budget-bytes",
            "1048576",
            "--max-connections-per-address",
            "1000",
            "--max-unverified-bodies-per-client",
            "1000",
            "--body-bytes-per-holder",
            "16777216",
        ])
        .await;
        let pid = app.pid();
        let rss_before = proc_status_kb(pid, "VmRSS");
        let path = format!("/v2/{}/instances/action", app.project);
        // Signed with a real key over the real body, so that each request passes the gateway's cheap
        // checks and its body is read (an unknown caller's body is refused unread).
        let body_hash = sha256(&" ".repeat(BODY));
        let signed = app.signed_headers_over(&app.admin, &Method::POST, &path, &[], &body_hash, app.clock.now_ms());
        let signed: String = signed.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..CLIENTS {
            let base = app.base.clone();
            let head = format!("POST {path} HTTP/1.1\r\n{signed}Content-Length: {BODY}\r\n\r\n");
            clients.spawn(async move {
                let mut s = raw_connect(&base).await;
                let body = vec![b' '; BODY];
                // Half the body, a pause that keeps the reservations of the first ones held, the rest.
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body[..BODY / 2]).await;
                tokio::time::sleep(Duration::from_millis(1000)).await;
                let _ = s.write_all(&body[BODY / 2..]).await;
                raw_read_response(s, Duration::from_secs(15)).await
            });
        }
        let mut statuses = std::collections::BTreeMap::new();
        while let Some(reply) = clients.join_next().await {
            let reply = reply.expect("client");
            assert!(!reply.bytes.is_empty(), "a client got no answer");
            let (status, _, body) = reply.response();
            let code =
                serde_json::from_str::<serde_json::Value>(&body).map(|v| v["error_code"].clone()).unwrap_or_default();
            reply.assert_dms_error(status, code.as_str().unwrap_or("not JSON"));
            *statuses.entry(status).or_insert(0) += 1;
        }
        let peak = proc_status_kb(pid, "VmHWM");
        eprintln!("statuses {statuses:?}; RSS before {rss_before} kB, peak {peak} kB");
        assert!(statuses.get(&503).copied().unwrap_or(0) > 0, "the budget never refused: {statuses:?}");
        for status in statuses.keys() {
            // 400: the body (spaces) is not JSON, once it has been read and its signature checked.
            assert!([400, 503].contains(status), "{statuses:?}");
        }
        // 300 × 250 KB would be 75 MB of bodies; the budget is 1 MiB.
        assert!(peak < rss_before + 40 * 1024, "peak RSS {peak} kB from {rss_before} kB");
        let res = app.scrape_metrics().await;
        assert!(res.contains("kafka_tasks_body_budget_refusals_total"), "refusals are counted");
    }
}

#[tokio::test]
async fn readyz_answers_503_while_the_sqlite_writer_is_stalled() {
    let app = TestApp::spawn().await;
    let Some(path) = app.db.url.strip_prefix("sqlite:") else {
        return; // the PostgreSQL run covers its own engine below
    };
    let ready = kafka_tasks::tls::http_client().get(format!("{}/readyz", app.base)).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);

    // Another process's write transaction: the writer thread waits for it (busy timeout).
    let blocker = rusqlite::Connection::open(path).expect("open");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("write lock");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let res = kafka_tasks::tls::http_client().get(format!("{}/readyz", app.base)).send().await.expect("readyz");
    assert_eq!(res.status(), 503, "readyz while no write can complete");
    assert!(started.elapsed() < Duration::from_secs(4), "readyz took {:?}", started.elapsed());
    let body: serde_json::Value = res.json().await.expect("JSON");
    assert_eq!(body["error_code"], "DMS.00503000");

    blocker.execute_batch("ROLLBACK").expect("released");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = kafka_tasks::tls::http_client().get(format!("{}/readyz", app.base)).send().await.expect("readyz");
        if res.status() == 200 {
            eprintln!("ready again after {:?}", started.elapsed());
            break;
        }
        assert!(Instant::now() < deadline, "readyz stayed {} after the writer was free", res.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The writer's busy timeout is 5 s, too slow to wait for here; the mapping itself is checked.
#[test]
fn sqlite_errors_of_an_unwritable_database_answer_503() {
    use kafka_tasks::http::error::ApiError;
    use kafka_tasks::storage::StoreError;
    for code in [rusqlite::ffi::SQLITE_BUSY, rusqlite::ffi::SQLITE_FULL, rusqlite::ffi::SQLITE_IOERR] {
        let e = StoreError::from(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None));
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
        let api = ApiError::from(e);
        assert_eq!(api.status().as_u16(), 503);
        assert_eq!(api.code_and_message().0, "DMS.00503000");
    }
    let e = StoreError::from(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
        None,
    ));
    assert_eq!(ApiError::from(e).status().as_u16(), 500);
}

on_postgres! {
    #[tokio::test]
    async fn a_postgresql_outage_answers_503_and_readyz_follows() {
        let (app, url) = TestApp::spawn_on_postgres(&["--time-scale", "0"]).await;
        let instance = app.create_instance().await;
        let name = url.rsplit('/').next().expect("database name").to_owned();
        let (admin, conn) = tokio_postgres::connect(&format!("{}/postgres", crate::pg::server()), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL is up");
        tokio::spawn(conn);
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
            ))
            .await
            .expect("database closed");

        for _ in 0..3 {
            app.show_instance(&instance).await.assert_error(503, "DMS.00503000");
        }
        // Readiness is sampled about once a second; on a loaded machine the sample may come late.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let res = kafka_tasks::tls::http_client().get(format!("{}/readyz", app.base)).send().await.expect("readyz");
            if res.status() == 503 {
                break;
            }
            assert!(Instant::now() < deadline, "/readyz still {} during the outage", res.status());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        admin.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await.expect("reopened");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let res = app.show_instance(&instance).await;
            if res.status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "still {} after the database came back: {}", res.status, res.text);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

per_engine! {
    #[tokio::test]
    async fn metrics_listen_moves_metrics_off_the_api_address() {
        let app = TestApp::spawn_with(&["--time-scale", "0", "--metrics-listen", "127.0.0.1:0"]).await;
        app.get("/v2/x").await;
        let res = app.send(Method::GET, "/metrics", None, &[]).await;
        res.assert_error(404, "DMS.00404001");
        assert!(res.request_id.is_some());
        let other = app.metrics_base().expect("a metrics address");
        let text = kafka_tasks::tls::http_client()
            .get(format!("{other}/metrics"))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text");
        assert!(text.contains("kafka_tasks_http_request_duration_seconds_bucket"), "{text}");
    }
}

/// Opens a connection from `from` whose receive buffer is as small as the kernel allows, so that
/// what the server sends backs up at once when it is not read.
async fn tight_connection(base: &str, from: &str) -> tokio::net::TcpStream {
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().expect("addr");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    socket.bind(format!("{from}:0").parse().expect("local")).expect("bind");
    socket.connect(addr).await.expect("connect")
}

per_engine! {
    /// Attack: clients pipeline hundreds of requests for a large answer on every connection slot and
    /// never read. Each connection is closed once its response has waited `--write-timeout-ms` for
    /// its reader, so the slots come back and a new client is served; before the write deadline
    /// nobody got in for as long as the attacker kept its sockets open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clients_that_never_read_lose_their_connections_at_the_write_timeout() {
        // A process of its own: the closed-connection counter read below is the process's, and
        // this test's other engine runs beside it in this one.
        let app = TestApp::spawn_process(&[
            "--time-scale",
            "0",
            "--max-connections",
            "6",
            "--write-timeout-ms",
            "800",
            "--idle-timeout-ms",
            "120000",
        ])
        .await;
        let pipelined = "GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n".repeat(300);
        let mut held = Vec::new();
        for _ in 0..6 {
            let mut s = tight_connection(&app.base, "127.0.0.3").await;
            s.write_all(pipelined.as_bytes()).await.expect("pipelined requests sent");
            held.push(s);
        }
        // Every slot is held by a reader that does not read: a new client waits in the backlog
        // until the write deadline closes one of them.
        let started = Instant::now();
        let res = tokio::time::timeout(
            Duration::from_secs(20),
            kafka_tasks::tls::http_client().get(format!("{}/healthz", app.base)).send(),
        )
        .await;
        let res = res.unwrap_or_else(|_| panic!("no slot came back within 20 s")).expect("healthz");
        assert_eq!(res.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(6), "served after {:?}", started.elapsed());
        // Every stalled connection is closed by the write deadline (counted as it happens; on a
        // loaded machine the last ones may take a while to produce their first answer).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = app.scrape_metrics().await;
            let stalled = text
                .lines()
                .find(|l| l.starts_with("kafka_tasks_connections_closed_total{reason=\"write_stalled\"}"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if stalled >= 6.0 {
                break;
            }
            assert!(Instant::now() < deadline, "write stalls counted: {stalled}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // What reaches each reader then ends well short of its 300 answers.
        let one_answer = kafka_tasks::tls::http_client()
            .get(format!("{}/openapi.json", app.base))
            .send()
            .await
            .expect("doc")
            .bytes()
            .await
            .expect("body");
        for mut s in held {
            let mut got = 0usize;
            let mut buf = vec![0u8; 64 * 1024];
            let closed = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
            })
            .await;
            assert!(closed.is_ok(), "a stalled connection was still open");
            assert!(got < 100 * one_answer.len(), "{got} bytes reached a reader that never read");
        }
    }
}

per_engine! {
    /// Attack: one address opens connection after connection. It gets `--max-connections-per-address`
    /// of them; the next is closed at once, and other addresses are served all along.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_address_cannot_hold_more_than_its_share_of_connections() {
        let app = TestApp::spawn_with(&["--time-scale", "0", "--max-connections-per-address", "3"]).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut s = tight_connection(&app.base, "127.0.0.4").await;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await.expect("sent");
            let mut buf = [0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("answered").expect("read");
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
            held.push(s);
        }
        let mut fourth = tight_connection(&app.base, "127.0.0.4").await;
        let _ = fourth.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await;
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut buf)).await.expect("closed at once");
        assert!(matches!(n, Ok(0) | Err(_)), "a fourth connection was served: {n:?}");
        let res = app.send_from("127.0.0.1".parse().expect("ip"), Method::GET, "/healthz", None, &[]).await;
        assert_eq!(res.status(), 200, "another address is served");
        // A closed connection gives its place back.
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut s = tight_connection(&app.base, "127.0.0.4").await;
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await;
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
            if matches!(n, Ok(Ok(n)) if buf[..n].starts_with(b"HTTP/1.1 200")) {
                break;
            }
            assert!(Instant::now() < deadline, "the freed place never came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

per_engine! {
    /// `/metrics` holds every tenant's activity and costs the server a render per scrape: by default
    /// it is served on a loopback listener of its own, never on the API's address.
    #[tokio::test]
    async fn metrics_are_off_the_api_address_unless_asked_for() {
        use clap::Parser;
        use kafka_tasks::cli::{Cli, Command};
        use kafka_tasks::http::serve::MetricsListen;
        let Ok(Cli { command: Command::Serve(args) }) = Cli::try_parse_from(["kafka-tasks", "serve"]) else {
            panic!("serve parses with no flags");
        };
        assert_eq!(args.net.metrics_listen, MetricsListen::At("127.0.0.1:9464".parse().expect("addr")));
        for bad in ["0.0.0.0", "yes", ""] {
            assert!(Cli::try_parse_from(["kafka-tasks", "serve", "--metrics-listen", bad]).is_err(), "{bad:?} accepted");
        }
        let app = TestApp::spawn_with(&["--time-scale", "0", "--metrics-listen", "off"]).await;
        let res = app.send(Method::GET, "/metrics", None, &[]).await;
        res.assert_error(404, "DMS.00404001");
        assert!(app.metrics_base().is_none());
    }
}
