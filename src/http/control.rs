//! Test control's API (`serve --test-control` only; see [`crate::control`]): fault rules, the
//! clock and the reset, under `/v2/{project_id}/test-control/`, admin role. Without the flag
//! none of these routes exists (every one answers the router's 404) and the fault layer
//! ([`inject`]) passes every request straight through.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa_axum::routes;

use super::AppState;
use super::audit::StoredEvent;
use super::error::{ApiError, current_request_id};
use super::extract::{Caller, ProjectPath};
use super::routes::{Op, op};
use crate::control::{ControlError, INJECTED_ACTION, TestControl, faults::Effect};
use crate::domain::{Action, Identity};
use crate::storage::AuditEvent;
use crate::wire::control::{
    ClockAnswer, ClockMove, ErrorInput, FailInput, ResetAnswer, ResetBody, RestoredSnapshot, RuleFilters, RuleInput,
    RulesAnswer, RulesBody, SnapshotBody, SnapshotJson, SnapshotList,
};

/// The control routes, behind authentication; none at all without `--test-control`.
pub fn router(state: &AppState) -> Router<AppState> {
    if state.control.is_none() {
        return Router::new();
    }
    super::routes::control()
        .router
        .route_layer(middleware::from_fn_with_state(state.clone(), super::auth_layer::authenticate))
}

pub fn operations() -> Vec<Op> {
    vec![
        op(routes!(list_faults)),
        op(routes!(replace_faults)).audit(Action::TestControl),
        op(routes!(append_faults)).audit(Action::TestControl),
        op(routes!(remove_faults)).audit(Action::TestControl),
        op(routes!(show_clock)),
        op(routes!(move_clock)).audit(Action::TestControl),
        op(routes!(reset)).audit(Action::TestControl),
        op(routes!(list_snapshots)),
        op(routes!(save_snapshot)).audit(Action::TestControl),
        op(routes!(delete_snapshot)).audit(Action::TestControl),
        op(routes!(restore_snapshot)).audit(Action::TestControl),
    ]
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Bad(why) => ApiError::ControlRefused(why),
            ControlError::Store(e) => ApiError::from(e),
        }
    }
}

/// The caller may use test control (admin), and the server has it on.
fn control<'a>(state: &'a AppState, caller: &Caller) -> Result<&'a TestControl, ApiError> {
    caller.require(Action::TestControl)?;
    state.control.as_deref().ok_or(ApiError::NoSuchUrl)
}

/// A JSON object body, or `{}` for none.
fn object(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::InvalidBody),
    }
}

/// The `rules` array of a body.
fn rules(body: &Bytes) -> Result<Vec<Value>, ApiError> {
    let mut m = object(body)?;
    if let Some(k) = m.keys().find(|k| *k != "rules") {
        return Err(ApiError::ControlRefused(format!("unknown field {:?}; the body is {{\"rules\": [...]}}", cut(k))));
    }
    match m.remove("rules") {
        Some(Value::Array(list)) => Ok(list),
        _ => Err(ApiError::ControlRefused("the body is {\"rules\": [...]}".into())),
    }
}

fn cut(s: &str) -> &str {
    cut_to(s, 64)
}

/// At most `n` bytes of `s`, on a character boundary.
fn cut_to(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `GET`: the rules, each with how often it matched and fired.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/test-control/faults",
    operation_id = "ListTestControlFaults",
    tag = "Test control",
    params(ProjectPath),
    responses((status = 200, description = "The fault rules (admin role; `serve --test-control` only)", body = RulesAnswer)),
)]
pub(super) async fn list_faults(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(_): ProjectPath,
) -> Result<Response, ApiError> {
    Ok(axum::Json(control(&state, &caller)?.rules_json()).into_response())
}

/// `POST`: the rules become those of the body, `{"rules": [...]}`.
#[utoipa::path(
    post,
    path = "/v2/{project_id}/test-control/faults",
    operation_id = "ReplaceTestControlFaults",
    tag = "Test control",
    params(ProjectPath),
    request_body = RulesBody,
    responses((status = 200, description = "The fault rules now in force", body = RulesAnswer)),
)]
pub(super) async fn replace_faults(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(_): ProjectPath,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c = control(&state, &caller)?;
    let list = rules(&body)?;
    Ok(axum::Json(c.replace_rules(&list).await?).into_response())
}

/// `PATCH`: the body's rules are added after the others.
#[utoipa::path(
    patch,
    path = "/v2/{project_id}/test-control/faults",
    operation_id = "AppendTestControlFaults",
    tag = "Test control",
    params(ProjectPath),
    request_body = RulesBody,
    responses((status = 200, description = "The fault rules now in force", body = RulesAnswer)),
)]
pub(super) async fn append_faults(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(_): ProjectPath,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c = control(&state, &caller)?;
    let list = rules(&body)?;
    Ok(axum::Json(c.append_rules(&list).await?).into_response())
}

/// `DELETE`: removes the rules that equal one of the body's in every field it gives
/// (`{"rules": [{"id": 3}]}`); without a body, every rule.
#[utoipa::path(
    delete,
    path = "/v2/{project_id}/test-control/faults",
    operation_id = "DeleteTestControlFaults",
    tag = "Test control",
    params(ProjectPath),
    request_body(content = RuleFilters, description = "`{\"rules\": [filter, ...]}`; none removes every rule"),
    responses((status = 200, description = "The rules left, and how many were removed", body = RulesAnswer)),
)]
pub(super) async fn remove_faults(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(_): ProjectPath,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c = control(&state, &caller)?;
    if object(&body)?.is_empty() {
        return Ok(axum::Json(c.remove_rules(&[serde_json::Map::new()]).await?).into_response());
    }
    let list = rules(&body)?;
    if list.len() > crate::control::faults::MAX_RULES {
        return Err(ApiError::ControlRefused(format!("at most {} filters", crate::control::faults::MAX_RULES)));
    }
    let mut filters = Vec::with_capacity(list.len());
    for f in list {
        match f {
            Value::Object(f) if !f.is_empty() => filters.push(f),
            Value::Object(_) => {
                return Err(ApiError::ControlRefused("an empty filter; to remove every rule, send no body".into()));
            }
            _ => return Err(ApiError::ControlRefused("each filter is an object of rule fields".into())),
        }
    }
    Ok(axum::Json(c.remove_rules(&filters).await?).into_response())
}

/// `GET`: what the clock reads, its offset from the wall clock, and whether it is frozen.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/test-control/clock",
    operation_id = "ShowTestControlClock",
    tag = "Test control",
    params(ProjectPath),
    responses((status = 200, description = "The service's clock", body = ClockAnswer)),
)]
pub(super) async fn show_clock(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(_): ProjectPath,
) -> Result<Response, ApiError> {
    Ok(axum::Json(control(&state, &caller)?.clock_json()).into_response())
}

/// `POST`: `{"action": "advance", "by": "2h"}`, `{"action": "set", "to": "2027-01-01T02:00:00Z"}`,
/// `{"action": "freeze"}` or `{"action": "resume"}`. Never backwards.
#[utoipa::path(
    post,
    path = "/v2/{project_id}/test-control/clock",
    operation_id = "MoveTestControlClock",
    tag = "Test control",
    params(ProjectPath),
    request_body(content = ClockMove, description = "advance (by: `90s`, `15m`, `2h`, `1d` or milliseconds), set (to: RFC 3339), freeze, resume"),
    responses((status = 200, description = "The clock, moved", body = ClockAnswer)),
)]
pub(super) async fn move_clock(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(_): ProjectPath,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c = control(&state, &caller)?;
    let m = object(&body)?;
    let bad = |why: &str| ApiError::ControlRefused(why.to_owned());
    let allowed: &[&str] = match m.get("action").and_then(Value::as_str) {
        Some("advance") => &["action", "by"],
        Some("set") => &["action", "to"],
        Some("freeze" | "resume") => &["action"],
        _ => return Err(bad("action must be advance, set, freeze or resume")),
    };
    if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::ControlRefused(format!("unknown field {:?} for this action", cut(k))));
    }
    const TO: &str = "to must be an RFC 3339 time, such as 2027-01-01T02:00:00Z";
    // The fields are the action's; a `to` that is not text is the one type left to refuse.
    let moved: ClockMove = serde_json::from_value(Value::Object(m)).map_err(|_| bad(TO))?;
    let answer = match moved.action.as_str() {
        "advance" => {
            let ms = match &moved.by {
                Some(Value::String(s)) => crate::control::parse_duration(s),
                Some(Value::Number(n)) => n.as_i64().filter(|ms| *ms >= 0),
                _ => None,
            }
            .ok_or_else(|| bad("by must be an amount of time: 90s, 15m, 2h, 1d, or milliseconds"))?;
            c.advance(ms).await?
        }
        "set" => {
            let at = moved.to.as_deref().and_then(crate::control::parse_time).ok_or_else(|| bad(TO))?;
            c.set(at).await?
        }
        "freeze" => c.freeze().await?,
        _ => c.resume().await?,
    };
    Ok(axum::Json(answer).into_response())
}

/// `POST`: back to a clean database in one call. `{"credentials": true}` also removes every
/// access key but the caller's own.
#[utoipa::path(
    post,
    path = "/v2/{project_id}/test-control/reset",
    operation_id = "ResetTestControlState",
    tag = "Test control",
    params(ProjectPath),
    request_body(content = ResetBody, description = "`{\"credentials\": false}` (the default keeps every access key)"),
    responses((status = 200, description = "The database is clean", body = ResetAnswer)),
)]
pub(super) async fn reset(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(_): ProjectPath,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c = control(&state, &caller)?;
    let m = object(&body)?;
    if let Some(k) = m.keys().find(|k| *k != "credentials") {
        return Err(ApiError::ControlRefused(format!("unknown field {:?}", cut(k))));
    }
    let ResetBody { credentials } = serde_json::from_value(Value::Object(m))
        .map_err(|_| ApiError::ControlRefused("credentials must be true or false".into()))?;
    if credentials && caller.0.access_key.is_none() {
        return Err(ApiError::ControlRefused("resetting credentials needs a caller with an access key".into()));
    }
    let answer = c.reset(credentials, caller.0.access_key.as_deref()).await?;
    if credentials {
        state.auth.forget_all();
    }
    Ok(axum::Json(answer).into_response())
}

/// The `{name}` of a snapshot route, as sent (checked by [`TestControl`]).
fn snapshot_name(raw: &RawPathParams) -> String {
    raw.iter().find(|(k, _)| *k == "name").map(|(_, v)| cut_to(v, 256).to_owned()).unwrap_or_default()
}

/// `GET`: the snapshots, by name, with when each was saved and its size.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/test-control/snapshots",
    operation_id = "ListTestControlSnapshots",
    tag = "Test control",
    params(ProjectPath),
    responses((status = 200, description = "The snapshots saved", body = SnapshotList)),
)]
pub(super) async fn list_snapshots(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(_): ProjectPath,
) -> Result<Response, ApiError> {
    Ok(axum::Json(control(&state, &caller)?.list_snapshots().await?).into_response())
}

/// `POST`: `{"name": "NAME"}` saves the state (instances, tasks, scheduled tasks, runs, events,
/// retention policies; never credentials) as NAME, replacing a snapshot of that name.
#[utoipa::path(
    post,
    path = "/v2/{project_id}/test-control/snapshots",
    operation_id = "SaveTestControlSnapshot",
    tag = "Test control",
    params(ProjectPath),
    request_body = SnapshotBody,
    responses((status = 200, description = "The snapshot saved", body = SnapshotJson)),
)]
pub(super) async fn save_snapshot(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(_): ProjectPath,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c = control(&state, &caller)?;
    let m = object(&body)?;
    if let Some(k) = m.keys().find(|k| *k != "name") {
        return Err(ApiError::ControlRefused(format!(
            "unknown field {:?}; the body is {{\"name\": \"NAME\"}}",
            cut(k)
        )));
    }
    let SnapshotBody { name } = serde_json::from_value(Value::Object(m))
        .map_err(|_| ApiError::ControlRefused("the body is {\"name\": \"NAME\"}".into()))?;
    Ok(axum::Json(c.save_snapshot(&name).await?).into_response())
}

/// `POST`: the state becomes the snapshot's, in one transaction.
#[utoipa::path(
    post,
    path = "/v2/{project_id}/test-control/snapshots/{name}/restore",
    operation_id = "RestoreTestControlSnapshot",
    tag = "Test control",
    params(ProjectPath, ("name" = String, Path, description = "The snapshot's name")),
    responses((status = 200, description = "The state is the snapshot's", body = RestoredSnapshot),
              (status = 404, description = "No snapshot of that name (`DMS.00404800`)")),
)]
pub(super) async fn restore_snapshot(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(_): ProjectPath,
    raw: RawPathParams,
) -> Result<Response, ApiError> {
    let c = control(&state, &caller)?;
    let name = snapshot_name(&raw);
    Ok(axum::Json(c.restore_snapshot(&name).await?.ok_or(ApiError::NoSnapshot)?).into_response())
}

/// `DELETE`: removes the snapshot.
#[utoipa::path(
    delete,
    path = "/v2/{project_id}/test-control/snapshots/{name}",
    operation_id = "DeleteTestControlSnapshot",
    tag = "Test control",
    params(ProjectPath, ("name" = String, Path, description = "The snapshot's name")),
    responses((status = 204, description = "The snapshot is gone"),
              (status = 404, description = "No snapshot of that name (`DMS.00404800`)")),
)]
pub(super) async fn delete_snapshot(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(_): ProjectPath,
    raw: RawPathParams,
) -> Result<Response, ApiError> {
    let c = control(&state, &caller)?;
    let name = snapshot_name(&raw);
    if !c.delete_snapshot(&name).await? {
        return Err(ApiError::NoSnapshot);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The test-control part of the OpenAPI document, served with `--test-control` only.
#[derive(OpenApi)]
#[openapi(
    components(schemas(RuleInput, ErrorInput, FailInput)),
    tags((name = "Test control", description = "Extension, `serve --test-control` only (admin role): fault rules, \
        the movable clock, the state reset. See docs/testing.md."))
)]
pub struct ControlDoc;

/// The operation id of a request, if it is a registered operation (an alias path has its
/// primary's id).
pub fn operation_id(method: &axum::http::Method, route: &str) -> Option<&'static str> {
    super::routes::lookup(method, route).map(|r| r.operation_id.as_str())
}

/// The fault layer, between authentication and the handler of every API operation: a rule that
/// fires delays the answer, or answers in the handler's place. Without `--test-control`, or
/// with no rule for API calls, the request goes straight on.
pub async fn inject(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(control) = state.control.as_deref() else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    let route = parts.extensions.get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let Some(operation) = operation_id(&parts.method, &route) else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let (project, instance) = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(raw) => {
            // Path segments are the client's: no longer than a matcher can be, in logs and audit.
            let get = |k: &str| {
                raw.iter().find(|(n, _)| *n == k).map(|(_, v)| cut_to(v, crate::control::faults::MAX_NAME).to_owned())
            };
            (get("project_id"), get("instance_id"))
        }
        Err(_) => (None, None),
    };
    let identity = parts.extensions.get::<Identity>().cloned();
    let project = project.or_else(|| identity.as_ref().map(|i| i.project_id.as_str().to_owned())).unwrap_or_default();
    let Some(fired) = control.api_fault(operation, &project, instance.as_deref()) else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let (latency, status) = match &fired.effect {
        Effect::Error { latency_ms, status_code, .. } => (*latency_ms, *status_code),
        Effect::Latency { latency_ms } => (*latency_ms, 0),
        _ => (0, 0),
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let at = state.clock.now_ms();
    let mut res = match &fired.effect {
        Effect::Error { status_code, error_code, error_msg, retry_after, .. } => {
            let status = StatusCode::from_u16(*status_code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = crate::wire::error::ErrorBody::new(error_code, error_msg, current_request_id);
            let mut res = (status, axum::Json(body)).into_response();
            if let Some(secs) = retry_after {
                res.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            res.extensions_mut().insert(StoredEvent);
            res
        }
        _ => next.run(Request::from_parts(parts, body)).await,
    };
    let event = AuditEvent {
        at,
        request_id: current_request_id(),
        project_id: identity.as_ref().map_or_else(String::new, |i| i.project_id.as_str().to_owned()),
        user_id: identity.as_ref().map_or_else(String::new, |i| i.user_id.clone()),
        user_name: identity.as_ref().map_or_else(String::new, |i| i.user_name.clone()),
        access_key: identity.as_ref().and_then(|i| i.access_key.clone()),
        action: INJECTED_ACTION.to_owned(),
        target: instance.unwrap_or(project),
        status: if status == 0 { res.status().as_u16() } else { status },
        detail: Some(json!({ "rule": fired.rule, "effect": fired.effect.label(), "operation": operation })),
    };
    if let Err(e) = state.storage.audit.append_audit(event).await {
        tracing::error!(error = %e, "could not write the audit event of an injected fault");
    }
    if status == 0 {
        // A delay only: the handler's answer, whose own audit stands.
        return res;
    }
    res.headers_mut().insert("x-kafka-tasks-injected-fault", HeaderValue::from(fired.rule));
    res
}
