//! Liveness, readiness and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::routes::{Op, op};
use crate::storage::{Health, StoreResult};

/// How long a readiness result is reused: /readyz cannot make more than one probe a second,
/// however often it is called.
const READY_TTL: Duration = Duration::from_secs(1);
/// A probe that has not answered in this time makes /readyz 503 (a stalled write path).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn operations() -> Vec<Op> {
    vec![op(routes!(healthz)), op(routes!(ready)), op(routes!(metrics))]
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "Healthz",
    tag = "Service",
    responses((status = 200, description = "Alive", content_type = "text/plain", body = String, example = "ok")),
)]
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// The router of `--metrics-listen`: only `GET /metrics`.
pub fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new().route("/metrics", get(move || render(handle.clone()))).fallback(|| async { ApiError::NoSuchUrl })
}

/// Ready when the database answers a read and takes a write in time.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "Readyz",
    tag = "Service",
    responses(
        (status = 200, description = "Ready", content_type = "text/plain", body = String, example = "ready"),
        (status = 503, description = "The database does not take writes in time (DMS.00503000)", body = crate::wire::error::ErrorBody),
    ),
)]
pub(super) async fn ready(State(state): State<AppState>) -> Response {
    match state.readiness.check(state.storage.health.clone()).await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            crate::limited!(warn, "readiness", error = %e, "not ready: the database does not take writes");
            ApiError::Unavailable(e).into_response()
        }
    }
}

/// The last readiness result, and the probe still running if the last one did not answer.
#[derive(Default)]
pub struct Readiness {
    state: tokio::sync::Mutex<ReadyState>,
}

#[derive(Default)]
struct ReadyState {
    last: Option<(Instant, Result<(), String>)>,
    running: Option<(Instant, JoinHandle<StoreResult<()>>)>,
}

impl Readiness {
    /// Probes (a read, then a write) at most once per [`READY_TTL`]; a probe still unanswered
    /// after [`PROBE_TIMEOUT`] counts as a failure, and is not started again while it hangs.
    pub async fn check(&self, health: Arc<dyn Health>) -> Result<(), String> {
        let mut st = self.state.lock().await;
        if let Some((at, result)) = &st.last
            && at.elapsed() < READY_TTL
        {
            return result.clone();
        }
        let (started, mut probe) = match st.running.take() {
            Some(running) => running,
            None => (
                Instant::now(),
                tokio::spawn(async move {
                    health.ping().await?;
                    health.write_probe().await
                }),
            ),
        };
        let left = PROBE_TIMEOUT.saturating_sub(started.elapsed());
        let result = match tokio::time::timeout(left, &mut probe).await {
            Ok(Ok(r)) => r.map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(format!("the readiness probe failed: {e}")),
            Err(_) => {
                st.running = Some((started, probe));
                Err(format!("a database write has not completed in {} ms", started.elapsed().as_millis()))
            }
        };
        st.last = Some((Instant::now(), result.clone()));
        result
    }
}

/// Prometheus metrics, when served on the API's address (404 when `--metrics-listen` moves them).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "Metrics",
    tag = "Service",
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String),
        (status = 404, description = "Served on another address (DMS.00404001)", body = crate::wire::error::ErrorBody),
    ),
)]
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics {
        Some(h) => render(h).await,
        None => ApiError::NoSuchUrl.into_response(),
    }
}

/// Renders on a blocking thread: rendering is proportional to the series and must not hold an
/// async worker.
async fn render(handle: PrometheusHandle) -> Response {
    match tokio::task::spawn_blocking(move || handle.render()).await {
        Ok(text) => ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => ApiError::Internal(format!("rendering metrics failed: {e}")).into_response(),
    }
}
