//! Extractors that turn the raw request into domain values, failing with the spec's errors.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use serde_json::Value;

use super::audit::Receipt;
use super::error::ApiError;
use crate::auth::signature;
use crate::domain::{Action, Identity, InstanceId, ProjectId, TaskId};
use crate::storage::AuditEvent;

fn path_params(params: &RawPathParams) -> HashMap<&str, &str> {
    params.iter().collect()
}

async fn raw_params(parts: &mut Parts) -> Result<RawPathParams, ApiError> {
    // Percent-decoding failures are paths no route serves.
    RawPathParams::from_request_parts(parts, &()).await.map_err(|_| ApiError::NoSuchUrl)
}

/// The project the path names, once it is the caller's own: another project's path is refused
/// here (`403 APIGW.0302`), before any handler code runs, whatever else the path holds.
fn own_project(parts: &Parts, p: &HashMap<&str, &str>) -> Result<ProjectId, ApiError> {
    let project: ProjectId = p.get("project_id").and_then(|s| s.parse().ok()).ok_or(ApiError::InvalidProjectId)?;
    // Only routes behind the auth layer take a project path; reaching one without an identity is a bug.
    let caller =
        parts.extensions.get::<Identity>().ok_or_else(|| ApiError::Internal("route without authentication".into()))?;
    if caller.project_id != project {
        return Err(ApiError::WrongProject);
    }
    Ok(project)
}

fn parse_instance(p: &HashMap<&str, &str>) -> Result<InstanceId, ApiError> {
    p.get("instance_id").and_then(|s| s.parse().ok()).ok_or(ApiError::InvalidInstanceId)
}

/// `/v2/{project_id}/…`, the caller's own project (see [`own_project`]). The OpenAPI document
/// describes the path parameters from these extractors themselves (`params(ProjectPath)`).
#[derive(utoipa::IntoParams)]
#[into_params(names("project_id"), parameter_in = Path)]
pub struct ProjectPath(
    /// The project: 32 hexadecimal characters.
    #[param(value_type = String, pattern = "^[0-9a-fA-F]{32}$")]
    pub ProjectId,
);

/// `/v2/{project_id}/instances/{instance_id}/…`, in the caller's own project.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct InstancePath {
    /// The project: 32 hexadecimal characters.
    #[param(rename = "project_id", value_type = String, pattern = "^[0-9a-fA-F]{32}$")]
    pub project: ProjectId,
    /// The instance: a UUID in its hyphenated form.
    #[param(rename = "instance_id", value_type = String, format = "uuid")]
    pub instance: InstanceId,
}

/// `/v2/{project_id}/instances/{instance_id}/tasks/{task_id}` and the scheduled-task twin, in
/// the caller's own project.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TaskPath {
    /// The project: 32 hexadecimal characters.
    #[param(rename = "project_id", value_type = String, pattern = "^[0-9a-fA-F]{32}$")]
    pub project: ProjectId,
    /// The instance: a UUID in its hyphenated form.
    #[param(rename = "instance_id", value_type = String, format = "uuid")]
    pub instance: InstanceId,
    /// The task: 32 lowercase hexadecimal characters.
    #[param(rename = "task_id", value_type = String, pattern = "^[0-9a-f]{32}$")]
    pub task: TaskId,
}

impl<S: Send + Sync> FromRequestParts<S> for ProjectPath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = raw_params(parts).await?;
        Ok(ProjectPath(own_project(parts, &path_params(&raw))?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for InstancePath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = raw_params(parts).await?;
        let p = path_params(&raw);
        let project = own_project(parts, &p)?;
        Ok(InstancePath { project, instance: parse_instance(&p)? })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TaskPath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = raw_params(parts).await?;
        let p = path_params(&raw);
        let project = own_project(parts, &p)?;
        let instance = parse_instance(&p)?;
        let task = p.get("task_id").and_then(|s| s.parse().ok()).ok_or(ApiError::InvalidTaskId)?;
        Ok(TaskPath { project, instance, task })
    }
}

/// The query string as name → value, decoded exactly as the signature decodes it
/// ([`signature::query_pairs`]). A name given twice is refused: both values are signed, and
/// which one a handler would read is not something the signer chose.
/// The gateway parses it once for every authenticated request, so that a duplicated name is
/// refused on every route, including those whose handler reads no query at all.
#[derive(Debug, Clone)]
pub struct QueryMap(pub HashMap<String, String>);

/// Longest parameter name echoed back in an error.
pub(super) const MAX_ECHOED_NAME: usize = 64;

impl QueryMap {
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let mut map = HashMap::new();
        for (name, value) in signature::query_pairs(query) {
            if map.contains_key(&name) {
                let shown: String = name.chars().take(MAX_ECHOED_NAME).collect();
                return Err(ApiError::DuplicateParam(shown));
            }
            map.insert(name, value);
        }
        Ok(QueryMap(map))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.extensions.remove::<QueryMap>() {
            Some(parsed) => Ok(parsed),
            None => QueryMap::parse(parts.uri.query().unwrap_or("")),
        }
    }
}

/// A JSON object body. Malformed JSON → `DMS.00400800`; over the size limit → 413.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;
    async fn from_request(req: Request, s: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, s).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::InvalidBody
            }
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v @ Value::Object(_)) => Ok(JsonBody(v)),
            _ => Err(ApiError::InvalidBody),
        }
    }
}

/// What the gateway resolved for an authenticated request before the handler: the action its
/// route performs (for the audit; [`super::audit::route_action`]) and when it arrived.
#[derive(Debug, Clone)]
pub struct RouteAudit {
    pub action: String,
    pub at: i64,
}

/// The identity a request is handled for, established by the auth layer, with what the audit
/// of its route records.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity, RouteAudit);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let identity = parts.extensions.get::<Identity>().cloned();
        let route = parts.extensions.get::<RouteAudit>().cloned();
        // Only routes behind the auth layer use this extractor; reaching it without an identity is a bug.
        match (identity, route) {
            (Some(i), Some(r)) => Ok(Caller(i, r)),
            _ => Err(ApiError::Internal("route without authentication".into())),
        }
    }
}

impl Caller {
    /// Checks that the caller's role allows `action` (a DMS refusal otherwise). The project was
    /// checked already, by the path extractor.
    pub fn require(&self, action: Action) -> Result<&Identity, ApiError> {
        if self.0.role < action.required_role() {
            return Err(ApiError::Forbidden);
        }
        Ok(&self.0)
    }

    /// For a project named outside the path (a token request's scope): it must be the caller's.
    pub fn own_project(&self, project: &ProjectId) -> Result<(), ApiError> {
        if self.0.project_id != *project {
            return Err(ApiError::WrongProject);
        }
        Ok(())
    }

    /// The audit event this request leaves if the store accepts its change on `target`,
    /// answered with `status`, for the store to write in the change's transaction; and the
    /// receipt that goes on the answer once it has ([`Receipt::respond`]). The action is the
    /// route's, not the handler's choice.
    pub fn audit(&self, target: &str, status: axum::http::StatusCode) -> (AuditEvent, Receipt) {
        let event = AuditEvent {
            at: self.1.at,
            request_id: super::error::current_request_id(),
            project_id: self.0.project_id.as_str().to_owned(),
            user_id: self.0.user_id.clone(),
            user_name: self.0.user_name.clone(),
            access_key: self.0.access_key.clone(),
            action: self.1.action.clone(),
            target: target.to_owned(),
            status: status.as_u16(),
            detail: None,
        };
        (event, Receipt::new())
    }
}
