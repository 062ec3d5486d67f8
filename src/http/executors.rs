//! How a task ran, for operators: what its executor reported and, for a failed task, why it
//! failed and what to do (`…/tasks/{task_id}/run`; `…/executor` is its older name, still
//! served); and the callback through which a webhook receiver ends a step.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{Caller, JsonBody, TaskPath};
use super::routes::{Op, op};
use super::tasks::find;
use crate::domain::Action;
use crate::executor::{MAX_MESSAGE, REASON_TAIL, webhook};
use crate::storage::{Callback, StepAnswer, View};
use crate::wire::executor::{CallbackBody, FailureJson, RunJson};

pub fn operations() -> Vec<Op> {
    vec![op(routes!(show_run)), op(routes!(show_run_alias)), op(routes!(callback)).audit(Action::ModifyInstance)]
}

/// ShowTaskRun (kafka-tasks): `GET …/tasks/{task_id}/run`, for operators and admins only (an
/// executor's output and reason may hold secrets).
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/tasks/{task_id}/run",
    operation_id = "ShowTaskRun",
    tag = "Executors",
    params(TaskPath),
    responses((status = 200, description = "How the task ran: its executor's report, and why it failed", body = RunJson)),
)]
pub(super) async fn show_run(
    state: State<AppState>,
    caller: Caller,
    path: TaskPath,
) -> Result<Json<RunJson>, ApiError> {
    run_of(state, caller, path).await
}

/// ShowTaskExecutorRun (kafka-tasks): the older name of ShowTaskRun, the same answer.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/tasks/{task_id}/executor",
    operation_id = "ShowTaskExecutorRun",
    tag = "Executors",
    params(TaskPath),
    responses((status = 200, description = "The same as ShowTaskRun (`…/run`), its older path", body = RunJson)),
)]
pub(super) async fn show_run_alias(
    state: State<AppState>,
    caller: Caller,
    path: TaskPath,
) -> Result<Json<RunJson>, ApiError> {
    run_of(state, caller, path).await
}

async fn run_of(State(state): State<AppState>, caller: Caller, path: TaskPath) -> Result<Json<RunJson>, ApiError> {
    caller.require(Action::GetTaskOutput)?;
    let task = find(&state, &path, View::Background).await?;
    let run = state.storage.runs.task_run(&task.id).await?.unwrap_or_default();
    let step = if run.attempt == 0 {
        String::new()
    } else {
        task.steps.get(run.step).map(|s| s.name.clone()).unwrap_or_default()
    };
    let failure = task.steps.iter().enumerate().find_map(|(i, s)| {
        s.failure.as_ref().map(|f| FailureJson {
            reason: f.reason.clone(),
            remedy: f.remedy.clone(),
            step: s.name.clone(),
            step_index: i,
        })
    });
    Ok(Json(RunJson {
        attempt: run.attempt,
        reason: run.reason.or_else(|| failure.as_ref().map(|f| f.reason.clone())),
        failure,
        message: run.message,
        output_tail: run.output_tail,
        progress: run.progress,
        step,
        task_id: task.id.as_str().to_owned(),
        updated_at: run.updated_at,
    }))
}

/// ReportTaskExecutorStep (kafka-tasks): `POST …/tasks/{task_id}/executor-callback` → 204.
/// Signed with an AK/SK of the project (operator or admin) and carrying the attempt's one-time
/// token: a leaked token alone ends nothing, and a key alone cannot end a step it was not sent.
#[utoipa::path(
    post,
    path = "/v2/{project_id}/instances/{instance_id}/tasks/{task_id}/executor-callback",
    operation_id = "ReportTaskExecutorStep",
    tag = "Executors",
    params(TaskPath),
    request_body = CallbackBody,
    responses((status = 204, description = "Recorded (a token that is not the running attempt's: 400 DMS.00400062)")),
)]
pub(super) async fn callback(
    State(state): State<AppState>,
    caller: Caller,
    path: TaskPath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Action::ModifyInstance)?;
    let body: CallbackBody = crate::wire::from_value(body)?;
    let cb = parse_callback(&body)?;
    let token = body.token.as_deref().unwrap_or_default();
    let task = find(&state, &path, View::Background).await?;
    let (event, receipt) = caller.audit(task.id.as_str(), StatusCode::NO_CONTENT);
    let recorded = state
        .storage
        .runs
        .answer_step(&task.id, &webhook::token_hash(token), cb, state.clock.now(), Some(event))
        .await?;
    if !recorded {
        return Err(ApiError::InvalidParam("token"));
    }
    Ok(receipt.respond(StatusCode::NO_CONTENT))
}

/// Reads a callback's body; every field is checked before anything is looked up.
fn parse_callback(body: &CallbackBody) -> Result<Callback, ApiError> {
    let token = body.token.as_deref().ok_or(ApiError::InvalidParam("token"))?;
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::InvalidParam("token"));
    }
    let text = |key: &'static str, given: &Option<String>, max: usize| -> Result<Option<String>, ApiError> {
        match given {
            Some(s) if s.len() > max => Err(ApiError::InvalidParam(key)),
            given => Ok(given.clone()),
        }
    };
    let message = text("message", &body.message, MAX_MESSAGE)?;
    let reason = text("reason", &body.reason, REASON_TAIL)?;
    let progress = match body.progress {
        None => None,
        Some(p) => Some(u32::try_from(p).ok().filter(|p| *p <= 100).ok_or(ApiError::InvalidParam("progress"))?),
    };
    let end = match body.result.as_deref() {
        Some("progress") => None,
        Some("success") => Some(StepAnswer::Success),
        Some("failure") => Some(StepAnswer::Failure { reason: reason.ok_or(ApiError::InvalidParam("reason"))? }),
        _ => return Err(ApiError::InvalidParam("result")),
    };
    Ok(Callback { progress, message, end })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn parse_callback(body: &Value) -> Result<Callback, ApiError> {
        super::parse_callback(&crate::wire::from_value(body.clone())?)
    }

    #[test]
    fn a_callback_body_is_checked_field_by_field() {
        let token = "ab".repeat(32);
        assert!(parse_callback(&json!({"token": token, "result": "success"})).is_ok());
        let bad = [
            json!({"result": "success"}),
            json!({"token": "short", "result": "success"}),
            json!({"token": token, "result": "done"}),
            json!({"token": token, "result": "failure"}),
            json!({"token": token, "result": "progress", "progress": 101}),
            json!({"token": token, "result": "progress", "message": "x".repeat(MAX_MESSAGE + 1)}),
            json!({"token": token, "result": "failure", "reason": 7}),
        ];
        for b in bad {
            assert!(parse_callback(&b).is_err(), "{b}");
        }
    }
}
