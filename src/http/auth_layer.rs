//! The gateway in front of every API route: authenticates the request (AK/SK signature or token),
//! hands the identity to the handler, and writes the audit event of every authenticated
//! mutating request before the response leaves.

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, current_request_id};
use super::extract::AuditNote;
use super::{AppState, BODY_LIMIT};
use crate::auth::{AuthError, SignedRequest};
use crate::storage::AuditEvent;

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(detail) => ApiError::Unauthenticated(detail),
            AuthError::WrongProject => ApiError::WrongProject,
            AuthError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    // The signature covers the body, so it is read here (bounded) and handed on.
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return ApiError::TooLarge.into_response();
    };
    let signed = SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: &bytes,
    };
    let identity = match state.auth.authenticate(&signed).await {
        Ok(i) => i,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mutating = !matches!(parts.method, Method::GET | Method::HEAD);
    let route = parts.extensions.get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let path_target = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(raw) => ["task_id", "instance_id", "project_id"]
            .iter()
            .find_map(|k| raw.iter().find(|(name, _)| name == k).map(|(_, v)| v.to_owned())),
        Err(_) => None,
    };
    let note = AuditNote::default();
    parts.extensions.insert(identity.clone());
    parts.extensions.insert(note.clone());
    let method = parts.method.clone();
    let res = next.run(Request::from_parts(parts, Body::from(bytes))).await;

    let fields = note.take();
    if mutating && !fields.recorded {
        let event = AuditEvent {
            at: state.auth.clock.now_ms(),
            request_id: current_request_id(),
            project_id: identity.project_id.as_str().to_owned(),
            user_id: identity.user_id,
            user_name: identity.user_name,
            access_key: identity.access_key,
            action: fields.action.map(str::to_owned).unwrap_or_else(|| format!("{method} {route}")),
            target: fields.target.or(path_target).unwrap_or_default(),
            status: res.status().as_u16(),
            detail: None,
        };
        if let Err(e) = state.storage.audit.append_audit(event).await {
            tracing::error!(error = %e, "could not write the audit event");
        }
    }
    res
}
