//! The HTTP layer: one module per resource, each exposing `router()`, assembled here with the
//! request-id, logging, metrics and body-guard layers and the DMS-shaped 404/405 fallbacks.
//! The serve loop (connections, timeouts, hyper's own errors) is [`serve`].

pub mod audit;
pub mod auth_layer;
pub mod console;
pub mod error;
pub mod events;
pub mod executors;
pub mod extract;
pub mod health;
pub mod instances;
pub mod openapi;
pub mod retention;
pub mod scheduled;
pub mod serve;
pub mod tasks;
pub mod tokens;

use std::sync::Arc;
use std::time::Instant;

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::sync::{Notify, Semaphore};
use tracing::Instrument;

use crate::auth::Authenticator;
use crate::domain::Clock;
use crate::domain::operation::StepContext;
use crate::storage::Storage;
use crate::telemetry;
use error::{ApiError, REQUEST_ID};

/// The longest request path written to a log line.
const MAX_LOGGED_PATH: usize = 256;

/// The largest request body accepted (operation bodies are small JSON documents).
pub const BODY_LIMIT: usize = 256 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub storage: Storage,
    pub auth: Arc<Authenticator>,
    /// The one clock: auth, handlers, audit and the engine read the same one.
    pub clock: Clock,
    /// Wakes the engine when a task is submitted.
    pub engine_wake: Arc<Notify>,
    pub time_scale: f64,
    pub step_context: StepContext,
    /// `None` when /metrics is not served on the API's address.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub body_guard: Arc<BodyGuard>,
    pub readiness: Arc<health::Readiness>,
    /// The open task event streams and their limits.
    pub events: Arc<events::Streams>,
    /// The retention policy of projects that set none (from `serve`'s flags).
    pub retention_defaults: Arc<crate::domain::retention::RetentionPolicy>,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(tasks::router())
        .merge(events::router())
        .merge(scheduled::router())
        .merge(instances::router())
        .merge(tokens::router())
        .merge(executors::router())
        .merge(retention::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), auth_layer::authenticate));
    Router::new()
        .merge(api)
        .merge(health::router())
        .merge(openapi::router())
        .merge(console::router())
        .fallback(|| async { ApiError::NoSuchUrl })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // A bug that panics answers 500 in the DMS format (and is logged) instead of a reset connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::Internal("a handler panicked".into()).into_response()
        }))
        .layer(middleware::from_fn_with_state(state.body_guard.clone(), body_guard))
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

/// The label of a method: one of a fixed set, so that made-up methods cannot grow the metrics.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Gives each request an id (returned in `X-Request-Id`), a log span and an access-log line.
async fn request_context(req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let method = req.method().clone();
    // The path as logged: a client chooses it, so only its first 256 bytes.
    let path = {
        let p = req.uri().path();
        let mut end = p.len().min(MAX_LOGGED_PATH);
        while !p.is_char_boundary(end) {
            end -= 1;
        }
        p[..end].to_owned()
    };
    // The route template, never the raw path (which a client chooses freely).
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let in_flight = InFlight::new();
    let mut res = REQUEST_ID.scope(id.clone(), next.run(req).instrument(span.clone())).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    drop(in_flight);
    let labels = [
        ("method", method_label(&method).into()),
        ("route", metrics::SharedString::from(route)),
        ("status", status_class(status).into()),
    ];
    let labels: Vec<metrics::Label> = labels.into_iter().map(|(k, v)| metrics::Label::new(k, v)).collect();
    metrics::counter!(telemetry::HTTP_REQUESTS, labels.clone()).increment(1);
    metrics::histogram!(telemetry::HTTP_DURATION, labels).record(elapsed.as_secs_f64());
    span.in_scope(|| tracing::info!(status, latency_us = elapsed.as_micros() as u64, "handled"));
    res
}

/// The in-flight gauge, looked up once (after the recorder is installed) rather than twice a
/// request: about 100 ns a request saved, measured.
static IN_FLIGHT: std::sync::LazyLock<metrics::Gauge> = std::sync::LazyLock::new(|| {
    let _ = telemetry::handle();
    metrics::gauge!(telemetry::HTTP_IN_FLIGHT)
});

/// Holds the in-flight gauge up while a request is handled (also when it is dropped midway).
struct InFlight;

impl InFlight {
    fn new() -> Self {
        IN_FLIGHT.increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.decrement(1.0);
    }
}

/// Counts a request the body guard refused, by a reason from a fixed set.
fn rejected(reason: &'static str) {
    metrics::counter!(telemetry::HTTP_REJECTED, "reason" => reason).increment(1);
}

/// Longest request target accepted (path and query); longer is 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// How long a request waits for room in the body budget before it is refused.
const BUDGET_WAIT: Duration = Duration::from_millis(500);

/// Bounds what request bodies can cost: a global budget of buffered bytes, a size limit and a
/// read deadline. See [`body_guard`].
pub struct BodyGuard {
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    body_timeout: Duration,
}

impl BodyGuard {
    pub fn new(budget_bytes: u64, body_timeout: Duration) -> Self {
        let budget_bytes = (budget_bytes as usize).clamp(BODY_LIMIT, Semaphore::MAX_PERMITS);
        BodyGuard { budget: Arc::new(Semaphore::new(budget_bytes)), budget_bytes, body_timeout }
    }

    /// Bytes of the budget not reserved now.
    pub fn available(&self) -> usize {
        self.budget.available_permits()
    }
}

/// Why a body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFault {
    Timeout,
    TooLarge,
    /// hyper could not decode it (a malformed chunk, a connection closed mid-body).
    Malformed,
}

/// Runs before authentication, for every request: refuses a target over [`MAX_URI_BYTES`] (414)
/// and a declared body over [`BODY_LIMIT`] (413) at once; reserves the body's bytes in the
/// global budget before anything reads it — its Content-Length, or the whole limit when it is
/// chunked — waiting at most [`BUDGET_WAIT`] (then 503 `DMS.00503001`); and holds the
/// reservation until the response is built. The body itself is wrapped so that reading it fails
/// past the body-read timeout or the size limit, and the response then says why (408, 413, or
/// 400 for a body hyper could not decode), whatever the reader made of the failure.
async fn body_guard(State(guard): State<Arc<BodyGuard>>, req: Request, next: Next) -> Response {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        rejected("uri_too_long");
        return ApiError::UriTooLong.into_response();
    }
    let hint = http_body::Body::size_hint(req.body());
    if hint.exact() == Some(0) {
        return next.run(req).await;
    }
    if hint.lower() > BODY_LIMIT as u64 {
        rejected("body_too_large");
        return closing(ApiError::TooLarge);
    }
    let need = hint.exact().map_or(BODY_LIMIT, |n| n as usize).clamp(1, guard.budget_bytes);
    let reserved = tokio::time::timeout(BUDGET_WAIT, guard.budget.clone().acquire_many_owned(need as u32)).await;
    let Ok(Ok(_reservation)) = reserved else {
        crate::limited!(warn, "body budget", budget_bytes = guard.budget_bytes, "body budget spent; request refused");
        metrics::counter!(telemetry::BODY_BUDGET_REFUSALS).increment(1);
        return closing(ApiError::Busy);
    };
    let fault = Arc::new(Mutex::new(None));
    let req = req.map(|body| {
        Body::new(GuardedBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(guard.body_timeout)),
            read: 0,
            fault: fault.clone(),
        })
    });
    let res = next.run(req).await;
    let fault = fault.lock().ok().and_then(|f| *f);
    match fault {
        None => res,
        Some(BodyFault::Timeout) => {
            rejected("body_timeout");
            closing(ApiError::BodyTimeout)
        }
        Some(BodyFault::TooLarge) => {
            rejected("body_too_large");
            closing(ApiError::TooLarge)
        }
        Some(BodyFault::Malformed) => {
            rejected("body_malformed");
            closing(ApiError::InvalidBody)
        }
    }
}

/// An error answered before the body was read (or after reading it failed): the connection is
/// closed after it, rather than kept for a body nobody will read.
fn closing(e: ApiError) -> Response {
    let mut res = e.into_response();
    res.headers_mut().insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// A request body with a deadline and a size limit, recording why it failed.
struct GuardedBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    read: usize,
    fault: Arc<Mutex<Option<BodyFault>>>,
}

impl GuardedBody {
    fn fail(&self, fault: BodyFault) -> axum::Error {
        if let Ok(mut f) = self.fault.lock() {
            f.get_or_insert(fault);
        }
        axum::Error::new(match fault {
            BodyFault::Timeout => "request body timeout",
            BodyFault::TooLarge => "request body too large",
            BodyFault::Malformed => "malformed request body",
        })
    }
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.read += data.len();
                    if self.read > BODY_LIMIT {
                        return Poll::Ready(Some(Err(self.fail(BodyFault::TooLarge))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(self.fail(BodyFault::Malformed)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(self.fail(BodyFault::Timeout)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_come_from_fixed_sets() {
        assert_eq!(method_label(&Method::GET), "GET");
        let junk = Method::from_bytes(b"XYZZYXYZZY").unwrap_or(Method::TRACE);
        assert_eq!(method_label(&junk), "OTHER");
        assert_eq!(method_label(&Method::TRACE), "OTHER");
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(999), "5xx");
    }
}
