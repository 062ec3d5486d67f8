//! The load generator: N keep-alive HTTP/1.1 connections, each sending signed requests
//! back to back for a fixed time, recording every latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use kafka_tasks::auth::signature::{Algorithm, Signer, sdk_date};

/// One request to send.
pub struct Call {
    pub method: &'static str,
    pub path_and_query: String,
    pub body: Option<String>,
}

/// Makes worker `w`'s `i`-th request; `None` when it has nothing left to send.
pub type CallMaker = Arc<dyn Fn(usize, u64) -> Option<Call> + Send + Sync>;

/// What one phase measured.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Measured {
    pub requests: u64,
    pub errors: u64,
    /// Answers with the status `busy_status` (counted apart, not as errors).
    pub busy: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    #[serde(skip)]
    pub first_error: Option<String>,
}

impl Measured {
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 { self.requests as f64 / self.seconds } else { 0.0 }
    }
}

#[derive(Clone)]
pub struct Target {
    pub addr: std::net::SocketAddr,
    pub access_key: String,
    pub secret_key: String,
    /// The signing mode (V11 scoped to the server's default region and service).
    pub algorithm: Algorithm,
}

pub(super) struct Worker {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

pub(super) async fn connect(addr: std::net::SocketAddr) -> std::io::Result<Worker> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(Worker { sender })
}

/// Sends one signed request and reads the whole answer: its status.
pub(super) async fn send(w: &mut Worker, target: &Target, host: &str, call: &Call) -> Result<u16, String> {
    let body = call.body.clone().unwrap_or_default();
    let (path, query) = call.path_and_query.split_once('?').unwrap_or((&call.path_and_query, ""));
    let signer = Signer {
        algorithm: target.algorithm,
        access_key: &target.access_key,
        secret_key: &target.secret_key,
        region_service: Some(("cn-north-4", "dms")),
    };
    let date = sdk_date(kafka_tasks::domain::now_ms());
    let headers = [("content-type", "application/json"), ("host", host)];
    let signed = signer.sign(call.method, path, query, &headers, body.as_bytes(), &date);
    let req = Request::builder()
        .method(call.method)
        .uri(&call.path_and_query)
        .header("host", host)
        .header("content-type", "application/json")
        .header("x-sdk-date", signed.sdk_date)
        .header("authorization", signed.authorization)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    w.sender.ready().await.map_err(|e| e.to_string())?;
    let res = w.sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    res.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok(status)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)]) / 1000.0
}

/// Runs `connections` workers for `duration`, each sending `make(worker, i)` back to back.
/// An answer other than `expect` (or `busy_status`) counts as an error.
pub async fn run(
    target: &Target,
    connections: usize,
    duration: Duration,
    make: CallMaker,
    expect: u16,
    busy_status: Option<u16>,
) -> Measured {
    let host = target.addr.to_string();
    let started = Instant::now();
    let deadline = started + duration;
    let mut handles = Vec::with_capacity(connections);
    for w in 0..connections {
        let (target, host, make) = (target.clone(), host.clone(), make.clone());
        handles.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::with_capacity(64 * 1024);
            let (mut errors, mut busy, mut first_error) = (0u64, 0u64, None::<String>);
            let mut worker = None;
            let mut i = 0u64;
            while Instant::now() < deadline {
                if worker.is_none() {
                    match connect(target.addr).await {
                        Ok(c) => worker = Some(c),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e.to_string());
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let Some(conn) = worker.as_mut() else { continue };
                let Some(call) = make(w, i) else { break };
                i += 1;
                let t = Instant::now();
                match send(conn, &target, &host, &call).await {
                    Ok(s) if s == expect => lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32),
                    Ok(s) if Some(s) == busy_status => {
                        busy += 1;
                        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    Ok(s) => {
                        errors += 1;
                        first_error.get_or_insert(format!("{} {} -> {s}", call.method, call.path_and_query));
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                        worker = None;
                    }
                }
            }
            (lat, errors, busy, first_error)
        }));
    }
    let mut all: Vec<u32> = Vec::new();
    let mut m = Measured::default();
    for h in handles {
        if let Ok((lat, errors, busy, first_error)) = h.await {
            all.extend(lat);
            m.errors += errors;
            m.busy += busy;
            if m.first_error.is_none() {
                m.first_error = first_error;
            }
        }
    }
    m.seconds = started.elapsed().as_secs_f64();
    all.sort_unstable();
    m.requests = all.len() as u64 - m.busy.min(all.len() as u64);
    m.p50_ms = percentile(&all, 0.50);
    m.p99_ms = percentile(&all, 0.99);
    m.p999_ms = percentile(&all, 0.999);
    m
}
