//! The gateway in front of every API route: authenticates the request (AK/SK signature or token),
//! hands the identity and its route's audit action to the handler, and writes the audit events
//! the store did not write (refusals; see [`super::audit`]) before the response leaves. Refusals leave a line in the `security` log and
//! a count in `/metrics`; throttled ones carry `Retry-After`.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::audit::{self, BatchRefusals, StoredEvent};
use super::error::{ApiError, current_request_id};
use super::extract::{QueryMap, RouteAudit};
use super::{AppState, BodyHolder};
use crate::auth::{AuthError, Checked, SignedRequest};
use crate::storage::AuditEvent;

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(_, detail) => ApiError::Unauthenticated(detail),
            AuthError::WrongProject => ApiError::WrongProject,
            AuthError::FailuresThrottled(_, secs) | AuthError::RateLimited(secs) => ApiError::Throttled(secs),
            AuthError::BodiesThrottled => ApiError::Throttled(1),
            AuthError::Store(e) => ApiError::from(e),
            AuthError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

/// The response to a refused request, after its security log line and counters.
fn refuse(state: &AppState, headers: &axum::http::HeaderMap, client: Option<IpAddr>, e: AuthError) -> Response {
    if let Some(reason) = e.reason() {
        let ak = state.auth.claimed_access_key(headers);
        crate::auth::record_failure(reason, ak.as_deref(), client, &current_request_id());
    }
    if let Some(reason) = e.throttle_reason() {
        crate::auth::record_throttled(reason);
    }
    let retry_after = match e {
        AuthError::FailuresThrottled(_, secs) | AuthError::RateLimited(secs) => Some(secs),
        AuthError::BodiesThrottled => Some(1),
        _ => None,
    };
    let mut res = ApiError::from(e).into_response();
    if let Some(secs) = retry_after {
        res.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

/// Whether a request declares a body (a non-zero `Content-Length`, or any transfer coding).
fn has_body(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(axum::http::header::TRANSFER_ENCODING)
        || headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// The client's address as the auth layer saw it, for handlers that log a refusal.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    // Without the peer's address (a server not started with connect info) the client is unknown.
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let client = state.auth.client_address(peer, &parts.headers);
    // The cheap checks come first: a stranger's body is never buffered.
    let checked = match state.auth.precheck(&parts.headers).await {
        Ok(c) => c,
        Err(e) => return refuse(&state, &parts.headers, client, e),
    };
    // A signed body is read before its signature can be checked, and an access key is no
    // secret: each client address gets only a few such reads at once.
    let slot = match &checked {
        Checked::Signed(_) if has_body(&parts.headers) => match state.auth.unverified_body(client) {
            Some(slot) => Some(slot),
            None => return refuse(&state, &parts.headers, client, AuthError::BodiesThrottled),
        },
        _ => None,
    };
    // The signature covers the body, so it is read here (bounded, its bytes reserved as they
    // arrive) and handed on. A token is verified already: its credential is charged too.
    let (bytes, _reservation) = if has_body(&parts.headers) {
        let mut holders = vec![BodyHolder::Address(client)];
        let verified = match &checked {
            Checked::Token(identity) => {
                holders.extend(identity.access_key.clone().map(BodyHolder::Credential));
                true
            }
            Checked::Signed(_) => false,
        };
        match state.body_guard.read(body, holders, verified).await {
            Ok((bytes, reservation)) => (bytes, Some(reservation)),
            Err(why) => return super::body_refusal(why).unwrap_or_else(|| ApiError::InvalidBody.into_response()),
        }
    } else {
        (axum::body::Bytes::new(), None)
    };
    drop(slot);
    let signed = SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: &bytes,
    };
    let identity = match state.auth.finish(checked, &signed, client).await {
        Ok(i) => i,
        Err(e) => return refuse(&state, &parts.headers, client, e),
    };
    parts.extensions.insert(ClientAddress(client));
    let mutating = !matches!(parts.method, Method::GET | Method::HEAD);
    let route = parts.extensions.get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let path_target = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(raw) => ["task_id", "instance_id", "project_id"]
            .iter()
            .find_map(|k| raw.iter().find(|(name, _)| name == k).map(|(_, v)| v.to_owned())),
        Err(_) => None,
    };
    let method = parts.method.clone();
    // One look at the route's registration serves both the action and the batch question.
    let route_audit = audit::route_audit(&method, &route);
    let action =
        audit::action_of(route_audit, &bytes).map_or_else(|| format!("{method} {route}"), |a| a.iam_name().to_owned());
    let at = state.clock.now_ms();
    // A batch is audited per instance it names, whatever becomes of the request.
    let batch =
        (mutating && route_audit == super::routes::Audit::Batch).then(|| audit::batch_targets(&bytes)).flatten();
    parts.extensions.insert(identity.clone());
    parts.extensions.insert(RouteAudit { action: action.clone(), at });
    // Refused after authentication, so that it is audited like any other refusal.
    let res = match QueryMap::parse(parts.uri.query().unwrap_or("")) {
        Ok(query) => {
            parts.extensions.insert(query);
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
        Err(e) => e.into_response(),
    };
    if !mutating || res.extensions().get::<StoredEvent>().is_some() {
        return res;
    }
    // The one place refusals (and successes the store did not record) are audited.
    let status = res.status().as_u16();
    let events: Vec<(String, u16)> = match (res.extensions().get::<BatchRefusals>(), batch) {
        (Some(BatchRefusals(refused)), _) => refused.clone(),
        (None, Some(named)) => named.into_iter().map(|name| (name, status)).collect(),
        (None, None) => {
            let target = path_target.or_else(|| identity.access_key.clone()).unwrap_or_default();
            vec![(target, status)]
        }
    };
    for (target, status) in events {
        let event = AuditEvent {
            at,
            request_id: current_request_id(),
            project_id: identity.project_id.as_str().to_owned(),
            user_id: identity.user_id.clone(),
            user_name: identity.user_name.clone(),
            access_key: identity.access_key.clone(),
            action: action.clone(),
            target,
            status,
            detail: None,
        };
        if let Err(e) = state.storage.audit.append_audit(event).await {
            tracing::error!(error = %e, "could not write the audit event");
        }
    }
    res
}
