//! Retention policies (an extension of the DMS API): how long a project's finished task records
//! are kept. Admin role for reading and changing; the rules are [`crate::domain::retention`],
//! the pruner that applies them [`crate::engine::retention`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{Caller, JsonBody, ProjectPath};
use super::routes::{Op, op};
use crate::domain::retention::RetentionPolicy;
use crate::domain::{Action, ProjectId};
use crate::wire::retention::{RetentionAnswer, Source};

pub fn operations() -> Vec<Op> {
    vec![
        op(routes!(show)),
        op(routes!(set)).audit(Action::SetRetention),
        op(routes!(reset)).audit(Action::SetRetention),
    ]
}

fn answer(project: &ProjectId, own: Option<RetentionPolicy>, state: &AppState) -> Response {
    let (source, policy) = match own {
        Some(p) => (Source::Project, p),
        None => (Source::Default, (*state.retention_defaults).clone()),
    };
    Json(RetentionAnswer { policy, project_id: project.as_str().to_owned(), source }).into_response()
}

/// `GET /v2/{project_id}/tasks/retention`: the policy in force and where it comes from.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/tasks/retention",
    operation_id = "ShowTaskRetention",
    tag = "Retention",
    params(ProjectPath),
    responses((status = 200, description = "The project's retention policy (admin role)", body = RetentionAnswer)),
)]
pub(super) async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(project): ProjectPath,
) -> Result<Response, ApiError> {
    caller.require(Action::GetRetention)?;
    let own = state.storage.retention.get_retention(&project).await?;
    Ok(answer(&project, own, &state))
}

/// `PUT /v2/{project_id}/tasks/retention`: replaces the project's policy as a whole (fields
/// left out are `null`: that rule does not apply).
#[utoipa::path(
    put,
    path = "/v2/{project_id}/tasks/retention",
    operation_id = "UpdateTaskRetention",
    tag = "Retention",
    params(ProjectPath),
    request_body = RetentionPolicy,
    responses((status = 200, description = "The policy now in force (admin role)", body = RetentionAnswer)),
)]
pub(super) async fn set(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(project): ProjectPath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Action::SetRetention)?;
    let policy = RetentionPolicy::from_json(body)?;
    store(&state, &caller, &project, Some(policy)).await
}

/// `DELETE /v2/{project_id}/tasks/retention`: the project follows the configured default again.
#[utoipa::path(
    delete,
    path = "/v2/{project_id}/tasks/retention",
    operation_id = "ResetTaskRetention",
    tag = "Retention",
    params(ProjectPath),
    responses((status = 200, description = "The default policy, now in force (admin role)", body = RetentionAnswer)),
)]
pub(super) async fn reset(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(project): ProjectPath,
) -> Result<Response, ApiError> {
    caller.require(Action::SetRetention)?;
    store(&state, &caller, &project, None).await
}

/// Stores the project's own policy (`None`: none, the default applies) with its audit event,
/// and answers with the policy now in force.
async fn store(
    state: &AppState,
    caller: &Caller,
    project: &ProjectId,
    policy: Option<RetentionPolicy>,
) -> Result<Response, ApiError> {
    let (mut event, receipt) = caller.audit(project.as_str(), StatusCode::OK);
    event.detail = Some(serde_json::json!({ "policy": policy }));
    state.storage.retention.put_retention(project, policy.clone(), state.clock.now(), event).await?;
    Ok(receipt.respond(answer(project, policy, state)))
}
