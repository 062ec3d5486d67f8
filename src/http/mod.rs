//! The HTTP layer: one module per resource, each listing its operations for [`routes`] (the one
//! registration of each), assembled here with the request-id, logging, metrics and body-guard
//! layers and the DMS-shaped 404/405 fallbacks.
//! The serve loop (connections, timeouts, hyper's own errors) is [`serve`].

pub mod audit;
pub mod auth_layer;
pub mod clusters;
pub mod console;
pub mod control;
pub mod error;
pub mod events;
pub mod executors;
pub mod extract;
pub mod health;
pub mod instances;
pub mod openapi;
pub mod retention;
pub mod routes;
pub mod scheduled;
pub mod serve;
pub mod tasks;
pub mod tokens;
pub mod zones;

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
    /// What cluster bindings may reach (from `serve`'s flags).
    pub cluster_policy: Arc<crate::domain::cluster::ClusterPolicy>,
    /// Test control, with `serve --test-control` only.
    pub control: Option<Arc<crate::control::TestControl>>,
    /// What ShowInstance last saw of bound instances' clusters (a few seconds' cache).
    pub cluster_health: Arc<crate::kafka::HealthCache>,
}

pub fn router(state: AppState) -> Router {
    let api = routes::api().router;
    // Fault injection is layered only when test control is on: the layer itself (a boxed future
    // and a copy of the state per request) cost every request about 12k instructions even when
    // it had nothing to do.
    let api = match state.control {
        Some(_) => api.route_layer(middleware::from_fn_with_state(state.clone(), control::inject)),
        None => api,
    };
    let api = api.route_layer(middleware::from_fn_with_state(state.clone(), auth_layer::authenticate));
    Router::new()
        .merge(api)
        .merge(control::router(&state))
        .merge(routes::public().router)
        .merge(console::router(state.control.is_some()))
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
    let route = req.extensions().get::<MatchedPath>().cloned();
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let in_flight = InFlight::new();
    let mut res = REQUEST_ID.scope(id.clone(), next.run(req).instrument(span.clone())).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    drop(in_flight);
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    RequestMetrics::with(method_label(&method), route, status_class(status), |(requests, duration)| {
        requests.increment(1);
        duration.record(elapsed.as_secs_f64());
    });
    span.in_scope(|| tracing::info!(status, latency_us = elapsed.as_micros() as u64, "handled"));
    res
}

/// The request counter and duration histogram of each (method, route template, status class),
/// looked up in the metrics registry once per worker thread instead of once per request (a key
/// built from three labels, hashed and compared in a sharded map: ~3k instructions a request).
/// Bounded: methods, statuses and route templates are fixed sets (a path that matches no route
/// is "unmatched").
struct RequestMetrics;

type RequestHandles = (metrics::Counter, metrics::Histogram);
/// Route template → (method, status class, handles).
type HandlesByRoute = std::collections::HashMap<String, Vec<(&'static str, &'static str, RequestHandles)>>;

impl RequestMetrics {
    fn with(method: &'static str, route: &str, status: &'static str, f: impl FnOnce(&RequestHandles)) {
        thread_local! {
            /// Per route template: the handles of each (method, status class) seen.
            static HANDLES: std::cell::RefCell<HandlesByRoute> = std::cell::RefCell::new(HandlesByRoute::new());
        }
        HANDLES.with_borrow_mut(|handles| {
            if !handles.contains_key(route) {
                handles.insert(route.to_owned(), Vec::new());
            }
            let Some(seen) = handles.get_mut(route) else { return };
            let at = match seen.iter().position(|(m, st, _)| *m == method && *st == status) {
                Some(at) => at,
                None => {
                    // The recorder is installed before the first handle is taken (else a no-op
                    // handle would be kept).
                    let _ = telemetry::handle();
                    let labels =
                        [("method", method.to_owned()), ("route", route.to_owned()), ("status", status.to_owned())];
                    let made = (
                        metrics::counter!(telemetry::HTTP_REQUESTS, &labels),
                        metrics::histogram!(telemetry::HTTP_DURATION, &labels),
                    );
                    seen.push((method, status, made));
                    seen.len() - 1
                }
            };
            f(&seen[at].2);
        });
    }
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

/// Bounds what request bodies can cost: a global budget of buffered bytes, a share of it per
/// holder (client address, verified credential), a size limit and read deadlines. Bytes are
/// reserved as they arrive, so a slow sender holds only what it has sent. See [`body_guard`]
/// and [`BodyGuard::read`].
pub struct BodyGuard {
    budget: Arc<Semaphore>,
    per_holder: usize,
    body_timeout: Duration,
    unverified_timeout: Duration,
    /// Bytes buffered now per holder; an entry goes when its bytes are released, so the map
    /// holds at most two entries per request whose body is being held.
    held: Arc<Mutex<std::collections::HashMap<BodyHolder, usize>>>,
}

/// Who a body's bytes are charged to, besides the global budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BodyHolder {
    /// The client's address (`None` when the server has no peer address).
    Address(Option<std::net::IpAddr>),
    /// A verified credential: the access key behind a valid token. A signed request's access
    /// key is only a claim until its body has been read, and charging the claim would let a
    /// stranger spend the key owner's share, so signed bodies are charged to their address only.
    Credential(String),
}

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRefused {
    /// The global budget stayed spent for [`BUDGET_WAIT`]: 503.
    Budget,
    /// One of the holders has its share buffered already: 429.
    Share,
    /// Over [`BODY_LIMIT`]: 413.
    TooLarge,
    /// Not whole within the deadline: 408.
    Timeout,
    /// The body stream failed (the body guard's fault says why).
    Broken,
}

/// The bytes of one body, reserved until it is dropped (held by the request until it is answered).
pub struct BodyReservation {
    permits: Option<tokio::sync::OwnedSemaphorePermit>,
    charged: Vec<(BodyHolder, usize)>,
    held: Arc<Mutex<std::collections::HashMap<BodyHolder, usize>>>,
}

impl BodyReservation {
    /// Reserves `n` more bytes for every holder and in the global budget.
    async fn charge(&mut self, guard: &BodyGuard, n: usize) -> Result<(), BodyRefused> {
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if self.charged.iter().any(|(h, _)| held.get(h).copied().unwrap_or(0) + n > guard.per_holder) {
                return Err(BodyRefused::Share);
            }
            for (h, mine) in &mut self.charged {
                *held.entry(h.clone()).or_insert(0) += n;
                *mine += n;
            }
        }
        let n = u32::try_from(n).map_err(|_| BodyRefused::TooLarge)?;
        let permit = match guard.budget.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(_) => match tokio::time::timeout(BUDGET_WAIT, guard.budget.clone().acquire_many_owned(n)).await {
                Ok(Ok(p)) => p,
                _ => return Err(BodyRefused::Budget),
            },
        };
        match &mut self.permits {
            Some(p) => p.merge(permit),
            None => self.permits = Some(permit),
        }
        Ok(())
    }
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for (h, mine) in &self.charged {
            if let Some(n) = held.get_mut(h) {
                *n = n.saturating_sub(*mine);
                if *n == 0 {
                    held.remove(h);
                }
            }
        }
    }
}

impl BodyGuard {
    pub fn new(net: &serve::NetArgs) -> Self {
        let budget_bytes = (net.body_budget_bytes as usize).clamp(BODY_LIMIT, Semaphore::MAX_PERMITS);
        BodyGuard {
            budget: Arc::new(Semaphore::new(budget_bytes)),
            per_holder: (net.body_bytes_per_holder as usize).max(BODY_LIMIT),
            body_timeout: Duration::from_millis(net.body_timeout_ms),
            unverified_timeout: Duration::from_millis(net.unverified_body_timeout_ms),
            held: Arc::default(),
        }
    }

    /// Bytes of the budget not reserved now.
    pub fn available(&self) -> usize {
        self.budget.available_permits()
    }

    /// Reads a whole body of at most [`BODY_LIMIT`] bytes, reserving its bytes as they arrive,
    /// in the global budget and for each of `holders`; a body whose sender is not verified yet
    /// (`verified` false) must be whole within `--unverified-body-timeout-ms`. The reservation
    /// lasts as long as the returned guard.
    pub async fn read(
        &self,
        body: Body,
        holders: Vec<BodyHolder>,
        verified: bool,
    ) -> Result<(Bytes, BodyReservation), BodyRefused> {
        let mut reservation = BodyReservation {
            permits: None,
            charged: holders.into_iter().map(|h| (h, 0)).collect(),
            held: self.held.clone(),
        };
        let read = async {
            use http_body_util::BodyExt;
            let mut body = body;
            let mut out = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame.map_err(|_| BodyRefused::Broken)?.into_data() else { continue };
                if out.len() + data.len() > BODY_LIMIT {
                    return Err(BodyRefused::TooLarge);
                }
                if !data.is_empty() {
                    reservation.charge(self, data.len()).await?;
                    out.extend_from_slice(&data);
                }
            }
            Ok(Bytes::from(out))
        };
        let bytes = if verified {
            read.await?
        } else {
            tokio::time::timeout(self.unverified_timeout, read).await.map_err(|_| BodyRefused::Timeout)??
        };
        Ok((bytes, reservation))
    }
}

/// The answer to a body that could not be read, after its count; `None` for a broken body
/// stream, whose answer the body guard gives (it knows why).
pub fn body_refusal(why: BodyRefused) -> Option<Response> {
    Some(match why {
        BodyRefused::Budget => {
            crate::limited!(warn, "body budget", "body budget spent; request refused");
            metrics::counter!(telemetry::BODY_BUDGET_REFUSALS).increment(1);
            closing(ApiError::Busy)
        }
        BodyRefused::Share => {
            metrics::counter!(telemetry::RATE_LIMITED, "reason" => "body_share").increment(1);
            let mut res = closing(ApiError::Throttled(1));
            res.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(1));
            res
        }
        BodyRefused::TooLarge => {
            rejected("body_too_large");
            closing(ApiError::TooLarge)
        }
        BodyRefused::Timeout => {
            rejected("body_timeout");
            closing(ApiError::BodyTimeout)
        }
        BodyRefused::Broken => return None,
    })
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
/// and a declared body over [`BODY_LIMIT`] (413) at once. The body is wrapped so that reading it
/// fails past the body-read timeout or the size limit, and the response then says why (408, 413,
/// or 400 for a body hyper could not decode), whatever the reader made of the failure. Its bytes
/// are reserved as the gateway reads them ([`BodyGuard::read`]).
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
