//! Event delivery latency: a client follows the project's task event stream while another
//! submits operations one at a time; for each, the time from the moment the submitting client
//! holds the answer (the change is committed before the answer is sent, so this is just after
//! the commit) to the moment the stream client receives the `task.created` event, and from the
//! request's start to the event (an upper bound that includes the request itself).

use std::time::{Duration, Instant};

use kafka_tasks::auth::signature::{Algorithm, Signer, sdk_date};

use super::load::Target;

/// What the measurement found (milliseconds).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Delivery {
    pub samples: usize,
    /// From the submit's answer to the event; an event that arrived before the answer counts 0.
    pub after_answer_p50_ms: f64,
    pub after_answer_p99_ms: f64,
    /// Events that arrived before the submitting client had its answer.
    pub before_answer: usize,
    /// From the submit's start to the event.
    pub from_submit_p50_ms: f64,
    pub from_submit_p99_ms: f64,
}

fn signed(target: &Target, method: &str, path: &str, body: &str) -> reqwest::header::HeaderMap {
    let host = target.addr.to_string();
    let signer = Signer {
        algorithm: Algorithm::Sha256,
        access_key: &target.access_key,
        secret_key: &target.secret_key,
        region_service: None,
    };
    let headers = [("content-type", "application/json"), ("host", host.as_str())];
    let s = signer.sign(method, path, "", &headers, body.as_bytes(), &sdk_date(kafka_tasks::domain::now_ms()));
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in [
        ("content-type", "application/json".to_owned()),
        ("x-sdk-date", s.sdk_date),
        ("authorization", s.authorization),
    ] {
        if let Ok(v) = v.parse() {
            map.insert(k, v);
        }
    }
    map
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// Submits `samples` auto-topic toggles over `instances` in turn and times their events.
pub async fn measure(target: &Target, project: &str, instances: &[String], samples: usize) -> anyhow::Result<Delivery> {
    let http = kafka_tasks::tls::client_builder(None)?.timeout(Duration::from_secs(600)).build()?;
    let base = format!("http://{}", target.addr);
    let path = format!("/v2/{project}/tasks/events");
    let mut stream = http.get(format!("{base}{path}")).headers(signed(target, "GET", &path, "")).send().await?;
    anyhow::ensure!(stream.status() == 200, "the event stream answered {}", stream.status());
    // The stream is read on its own task, so that each event is timed as it arrives.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, Instant)>(1024);
    let reader = tokio::spawn(async move {
        let mut buf = String::new();
        while let Ok(Some(chunk)) = stream.chunk().await {
            let at = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                if !block.contains("event: task.created") {
                    continue;
                }
                let data = block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or_default();
                let v: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
                let task = v["task_id"].as_str().unwrap_or_default().to_owned();
                if tx.send((task, at)).await.is_err() {
                    return;
                }
            }
        }
    });
    let (mut after, mut from, mut early) = (Vec::new(), Vec::new(), 0usize);
    for i in 0..samples {
        let inst = &instances[i % instances.len()];
        let op = format!("/v2/{project}/instances/{inst}/autotopic");
        let body = serde_json::json!({ "enable_auto_topic": i % 2 == 0 }).to_string();
        let sent = Instant::now();
        let res =
            http.post(format!("{base}{op}")).headers(signed(target, "POST", &op, &body)).body(body).send().await?;
        let answered = Instant::now();
        if res.status() != 200 {
            // The instance is still busy with the previous toggle: not a sample.
            continue;
        }
        let v: serde_json::Value = res.json().await?;
        let job = v["job_id"].as_str().unwrap_or_default().to_owned();
        let received = loop {
            let (task, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .map_err(|_| anyhow::anyhow!("no event for {job} in 10 s"))?
                .ok_or_else(|| anyhow::anyhow!("the event stream ended"))?;
            if task == job {
                break at;
            }
        };
        if received < answered {
            early += 1;
        }
        after.push(received.saturating_duration_since(answered).as_secs_f64() * 1000.0);
        from.push(received.saturating_duration_since(sent).as_secs_f64() * 1000.0);
    }
    reader.abort();
    after.sort_by(f64::total_cmp);
    from.sort_by(f64::total_cmp);
    Ok(Delivery {
        samples: after.len(),
        after_answer_p50_ms: percentile(&after, 0.5),
        after_answer_p99_ms: percentile(&after, 0.99),
        before_answer: early,
        from_submit_p50_ms: percentile(&from, 0.5),
        from_submit_p99_ms: percentile(&from, 0.99),
    })
}
