//! The HTTP layer: one module per resource, each exposing `router()`, assembled here with the
//! request-id, logging and body-limit layers and the DMS-shaped 404/405 fallbacks.

pub mod auth_layer;
pub mod console;
pub mod error;
pub mod extract;
pub mod health;
pub mod instances;
pub mod scheduled;
pub mod tasks;
pub mod tokens;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::auth::Authenticator;
use crate::domain::operation::{Operation, StepContext};
use crate::domain::{Identity, now_ms};
use crate::storage::{NewTask, Storage};
use error::{ApiError, REQUEST_ID};

/// The largest request body accepted (operation bodies are small JSON documents).
pub const BODY_LIMIT: usize = 256 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub storage: Storage,
    pub auth: Arc<Authenticator>,
    /// Wakes the engine when a task is submitted.
    pub engine_wake: Arc<Notify>,
    pub time_scale: f64,
    pub step_context: StepContext,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl AppState {
    /// A new task record for `op`, started by `who`, due at `schedule_at` when scheduled.
    pub fn new_task(
        &self,
        who: &Identity,
        inst: &crate::domain::instance::Instance,
        op: Operation,
        schedule_at: Option<i64>,
    ) -> NewTask {
        NewTask::new(inst, op, (&who.user_id, &who.user_name), now_ms(), schedule_at, self.time_scale)
    }
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(tasks::router())
        .merge(scheduled::router())
        .merge(instances::router())
        .merge(tokens::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), auth_layer::authenticate));
    Router::new()
        .merge(api)
        .merge(health::router())
        .merge(console::router())
        .fallback(|| async { ApiError::NoSuchUrl })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // A bug that panics answers 500 in the DMS format (and is logged) instead of a reset connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::Internal("a handler panicked".into()).into_response()
        }))
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

/// Gives each request an id (returned in `X-Request-Id`), a log span and an access-log line.
async fn request_context(req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let mut res = REQUEST_ID.scope(id.clone(), next.run(req).instrument(span.clone())).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    metrics::histogram!("kafka_tasks_http_request_seconds", "method" => method.to_string(), "status" => status.to_string())
        .record(elapsed.as_secs_f64());
    span.in_scope(|| tracing::info!(status, latency_us = elapsed.as_micros() as u64, "handled"));
    res
}
