//! Scheduled tasks: ListScheduledTasks, UpdateScheduledTask and DeleteScheduledTask.
//! A scheduled task keeps its id when it fires and from then on is also a background task.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{Caller, InstancePath, QueryMap, TaskPath};
use super::routes::{Op, op};
use super::tasks::{page_query, remove};
use crate::domain::task::TaskJson;
use crate::domain::{Action, CompactTime};
use crate::storage::{Found, ScheduleChange, StatusChange, View};
use crate::wire::from_query;
use crate::wire::task::{JobList, PageQuery, RescheduleQuery};

pub fn operations() -> Vec<Op> {
    vec![
        op(routes!(list)),
        op(routes!(update)).audit(Action::ModifyScheduledTask),
        op(routes!(delete)).audit(Action::DeleteScheduledTask),
    ]
}

/// ListScheduledTasks: `GET …/scheduled-tasks`; `job_count` is a number, unlike `task_count`.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/scheduled-tasks",
    operation_id = "ListScheduledTasks",
    tag = "Scheduled tasks",
    params(InstancePath, PageQuery),
    responses((status = 200, description = "A page of the instance's scheduled tasks (each with `schedule_at`)", body = JobList)),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    QueryMap(q): QueryMap,
) -> Result<Response, ApiError> {
    caller.require(Action::ListScheduledTasks)?;
    let query = page_query(path.project, path.instance, View::Scheduled, &from_query(&q)?)?;
    let (total, jobs) = state.storage.tasks.list_tasks(&query).await?.ok_or(ApiError::NoInstance)?;
    let jobs = jobs.iter().map(|t| TaskJson::new(t, true)).collect();
    Ok(Json(JobList { job_count: total, jobs }).into_response())
}

/// UpdateScheduledTask: `PUT …/scheduled-tasks/{task_id}?execute_at=…&status=CANCELLED|null`:
/// moves a waiting task, cancels it, or (`status=null`) makes a cancelled one whose time is still
/// ahead wait again ([`crate::domain::rescheduling::rescheduled`]).
#[utoipa::path(
    put,
    path = "/v2/{project_id}/instances/{instance_id}/scheduled-tasks/{task_id}",
    operation_id = "UpdateScheduledTask",
    tag = "Scheduled tasks",
    params(TaskPath, RescheduleQuery),
    responses((status = 204, description = "Rescheduled or cancelled (a task no longer waiting is refused with 400 DMS.00400026)")),
)]
pub(super) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    path: TaskPath,
    QueryMap(q): QueryMap,
) -> Result<Response, ApiError> {
    caller.require(Action::ModifyScheduledTask)?;
    let q: RescheduleQuery = from_query(&q)?;
    let now = state.clock.now();
    let execute_at = match q.execute_at.as_deref() {
        None => None,
        Some(s) => {
            let t = s.parse::<CompactTime>().map_err(|_| ApiError::InvalidTimestamp)?;
            if t <= now {
                return Err(ApiError::InvalidTimestamp);
            }
            Some(t.0)
        }
    };
    let status = match q.status.as_deref() {
        None => StatusChange::Keep,
        Some("CANCELLED") => StatusChange::Cancel,
        // DMS lists `null` ("to be executed") among the statuses: wait (again) for execute_at.
        Some("null") => StatusChange::Wait,
        Some(_) => return Err(ApiError::InvalidParam("status")),
    };
    if execute_at.is_none() && status == StatusChange::Keep {
        return Err(ApiError::InvalidParam("execute_at"));
    }
    let change = ScheduleChange { execute_at, status };
    let (event, receipt) = caller.audit(path.task.as_str(), StatusCode::NO_CONTENT);
    match state
        .storage
        .tasks
        .update_scheduled(&path.project, &path.instance, &path.task, change, now, Some(event))
        .await?
    {
        Found::Yes(true) => {
            state.engine_wake.notify_one();
            Ok(receipt.respond(StatusCode::NO_CONTENT))
        }
        Found::Yes(false) => Err(ApiError::InstanceState),
        Found::NoInstance => Err(ApiError::NoInstance),
        Found::NoTask => Err(ApiError::NoTask),
    }
}

/// DeleteScheduledTask: `DELETE …/scheduled-tasks/{task_id}`, allowed once the task has ended.
#[utoipa::path(
    delete,
    path = "/v2/{project_id}/instances/{instance_id}/scheduled-tasks/{task_id}",
    operation_id = "DeleteScheduledTask",
    tag = "Scheduled tasks",
    params(TaskPath),
    responses((status = 204, description = "Deleted (a task not ended is refused with 400 DMS.00400017)")),
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    path: TaskPath,
) -> Result<Response, ApiError> {
    caller.require(Action::DeleteScheduledTask)?;
    remove(&state, &caller, &path, View::Scheduled).await
}
