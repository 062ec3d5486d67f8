//! Background tasks: ListBackgroundTasks, ShowBackgroundTask, DeleteBackgroundTask and
//! ShowBackgroundTaskProgress.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{Caller, InstancePath, MAX_ECHOED_NAME, QueryMap, TaskPath};
use super::routes::{Op, op};
use crate::domain::retention::{BULK_DELETE_MAX, BulkFilter};
use crate::domain::task::TaskJson;
use crate::domain::{Action, CompactTime, InstanceId, ProjectId, TaskRecord};
use crate::storage::{DeleteOutcome, Found, TaskQuery, View};
use crate::wire::from_query;
use crate::wire::task::{
    BulkDeleteAnswer, BulkDeletePreview, BulkDeleteQuery, PageQuery, StepJson, TaskList, TaskProgress,
};

pub fn operations() -> Vec<Op> {
    vec![
        op(routes!(list)),
        op(routes!(delete_many)).audit(Action::DeleteBackgroundTask),
        op(routes!(show)),
        op(routes!(delete)).audit(Action::DeleteBackgroundTask),
        op(routes!(progress)),
    ]
}

/// Parses `start`/`offset`, `limit`, `begin_time` and `end_time` as ListBackgroundTasks and
/// ListScheduledTasks take them.
pub fn page_query(project: ProjectId, instance: InstanceId, view: View, q: &PageQuery) -> Result<TaskQuery, ApiError> {
    let start = match (&q.start, &q.offset) {
        (Some(_), Some(_)) => return Err(ApiError::InvalidParam("start")),
        (Some(s), None) => s.parse::<u64>().map_err(|_| ApiError::InvalidParam("start"))?,
        (None, Some(s)) => s.parse::<u64>().map_err(|_| ApiError::InvalidParam("offset"))?,
        (None, None) => 1,
    };
    let limit = match &q.limit {
        None => 10,
        Some(s) => s.parse::<u64>().ok().filter(|l| (1..=100).contains(l)).ok_or(ApiError::InvalidParam("limit"))?,
    };
    let (begin, end) = time_range(q)?;
    Ok(TaskQuery {
        project_id: project,
        instance_id: instance,
        view,
        created_from: begin.map(|b| b.0),
        created_to: end.map(CompactTime::end_of_second),
        // 1-based; 0 and 1 both mean the first task.
        offset: start.saturating_sub(1),
        limit,
    })
}

/// `begin_time` and `end_time` (`YYYYMMDDHHmmss`, UTC), each optional; begin not after end.
fn time_range(q: &PageQuery) -> Result<(Option<CompactTime>, Option<CompactTime>), ApiError> {
    let time = |given: &Option<String>| -> Result<Option<CompactTime>, ApiError> {
        given.as_deref().map(|s| s.parse::<CompactTime>().map_err(|_| ApiError::InvalidTimestamp)).transpose()
    };
    let begin = time(&q.begin_time)?;
    let end = time(&q.end_time)?;
    if let (Some(b), Some(e)) = (begin, end)
        && b > e
    {
        return Err(ApiError::InvalidParam("begin_time"));
    }
    Ok((begin, end))
}

/// ListBackgroundTasks: `GET /v2/{project_id}/instances/{instance_id}/tasks`
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/tasks",
    operation_id = "ListBackgroundTasks",
    tag = "Background tasks",
    params(InstancePath, PageQuery),
    responses((status = 200, description = "A page of the instance's background tasks, newest first", body = TaskList)),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    QueryMap(q): QueryMap,
) -> Result<Response, ApiError> {
    caller.require(Action::GetBackgroundTask)?;
    let query = page_query(path.project, path.instance, View::Background, &from_query(&q)?)?;
    let (total, tasks) = state.storage.tasks.list_tasks(&query).await?.ok_or(ApiError::NoInstance)?;
    Ok(task_list(total, &tasks))
}

/// `{"task_count": "<n>", "tasks": [...]}`: task_count is a string on the wire (Terraform parses
/// it with Atoi). Serialised straight from the records, without an intermediate JSON tree.
fn task_list(total: u64, tasks: &[TaskRecord]) -> Response {
    let tasks = tasks.iter().map(|t| TaskJson::new(t, false)).collect();
    Json(TaskList { task_count: total.to_string(), tasks }).into_response()
}

/// The task a path names, or the 404 that says which part is missing.
pub async fn find(state: &AppState, path: &TaskPath, view: View) -> Result<TaskRecord, ApiError> {
    match state.storage.tasks.get_task(&path.project, &path.instance, &path.task, view).await? {
        Found::Yes(t) => Ok(t),
        Found::NoInstance => Err(ApiError::NoInstance),
        Found::NoTask => Err(ApiError::NoTask),
    }
}

/// ShowBackgroundTask: `GET …/tasks/{task_id}`, the list wrapper with one element.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/tasks/{task_id}",
    operation_id = "ShowBackgroundTask",
    tag = "Background tasks",
    params(TaskPath),
    responses((status = 200, description = "The task, as a list of one (`task_count` is \"1\")", body = TaskList)),
)]
pub(super) async fn show(State(state): State<AppState>, caller: Caller, path: TaskPath) -> Result<Response, ApiError> {
    caller.require(Action::GetBackgroundTask)?;
    let task = find(&state, &path, View::Background).await?;
    Ok(task_list(1, std::slice::from_ref(&task)))
}

/// Removes a finished task; shared by DeleteBackgroundTask and DeleteScheduledTask. The audit
/// event keeps the record as it was, so who deleted what outlives the record.
pub async fn remove(state: &AppState, caller: &Caller, path: &TaskPath, view: View) -> Result<Response, ApiError> {
    let (event, receipt) = caller.audit(path.task.as_str(), StatusCode::NO_CONTENT);
    match state.storage.tasks.delete_task(&path.project, &path.instance, &path.task, view, Some(event)).await? {
        DeleteOutcome::Deleted(_) => Ok(receipt.respond(StatusCode::NO_CONTENT)),
        DeleteOutcome::Running => Err(ApiError::TaskRunning),
        DeleteOutcome::NoInstance => Err(ApiError::NoInstance),
        DeleteOutcome::NoTask => Err(ApiError::NoTask),
    }
}

/// DeleteBackgroundTask: `DELETE …/tasks/{task_id}` → 204 once the removal is durable.
#[utoipa::path(
    delete,
    path = "/v2/{project_id}/instances/{instance_id}/tasks/{task_id}",
    operation_id = "DeleteBackgroundTask",
    tag = "Background tasks",
    params(TaskPath),
    responses((status = 204, description = "Deleted (a running task is refused with 400 DMS.00400017)")),
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    path: TaskPath,
) -> Result<Response, ApiError> {
    caller.require(Action::DeleteBackgroundTask)?;
    remove(&state, &caller, &path, View::Background).await
}

/// How many of the records a dry run names (the oldest): one page of the list.
const BULK_PREVIEW_MAX: u64 = 100;

/// Bulk delete (an extension): `DELETE /v2/{project_id}/instances/{instance_id}/tasks?end_time=…`
/// removes the finished background tasks created in the range (oldest first, at most
/// [`BULK_DELETE_MAX`] per request) with the same permission as DeleteBackgroundTask; each
/// removed record is audited as a single delete's is.
#[utoipa::path(
    delete,
    path = "/v2/{project_id}/instances/{instance_id}/tasks",
    operation_id = "DeleteBackgroundTasks",
    tag = "Background tasks",
    params(InstancePath, BulkDeleteQuery),
    responses(
        (status = 200, description = "Extension: finished tasks in the range removed (at most 1000 a request; `more` says whether to call again). Running and waiting tasks are never removed. With `dry_run=true`: a `BulkDeletePreview`, nothing removed.", body = BulkDeleteAnswer),
    ),
)]
pub(super) async fn delete_many(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    QueryMap(q): QueryMap,
) -> Result<Response, ApiError> {
    caller.require(Action::DeleteBackgroundTask)?;
    if let Some(unknown) = q.keys().find(|k| !BulkDeleteQuery::KEYS.contains(&k.as_str())) {
        return Err(ApiError::UnknownParam(unknown.chars().take(MAX_ECHOED_NAME).collect()));
    }
    let q: BulkDeleteQuery = from_query(&q)?;
    let filter = BulkFilter::parse(|k| q.get(k))?;
    let dry_run = match q.dry_run.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::InvalidParam("dry_run")),
    };
    if dry_run {
        let preview = state
            .storage
            .tasks
            .preview_delete(&path.project, &path.instance, &filter, BULK_PREVIEW_MAX)
            .await?
            .ok_or(ApiError::NoInstance)?;
        let tasks = preview.first.iter().map(|t| TaskJson::new(t, false)).collect();
        return Ok(Json(BulkDeletePreview {
            deleted: 0,
            more: preview.matched > BULK_DELETE_MAX,
            dry_run: true,
            matched: preview.matched,
            tasks,
        })
        .into_response());
    }
    let (event, receipt) = caller.audit(path.instance.as_str(), StatusCode::OK);
    let done = state
        .storage
        .tasks
        .delete_tasks(&path.project, &path.instance, &filter, BULK_DELETE_MAX, event)
        .await?
        .ok_or(ApiError::NoInstance)?;
    Ok(receipt.respond(Json(BulkDeleteAnswer { deleted: done.deleted.len(), more: done.more })))
}

/// ShowBackgroundTaskProgress: `GET …/tasks/{task_id}/progress`
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/tasks/{task_id}/progress",
    operation_id = "ShowBackgroundTaskProgress",
    tag = "Background tasks",
    params(TaskPath),
    responses((status = 200, description = "The task's progress and its steps", body = TaskProgress)),
)]
pub(super) async fn progress(
    State(state): State<AppState>,
    caller: Caller,
    path: TaskPath,
) -> Result<Response, ApiError> {
    caller.require(Action::Unrestricted)?;
    let task = find(&state, &path, View::Background).await?;
    // An executor's own report of its step stands for the clock's guess (read only for the
    // operations an executor runs: a simulated task costs no second read).
    let reported = if state.step_context.executed.contains(&task.name) {
        state.storage.runs.task_run(&task.id).await?.and_then(|r| r.progress.map(|p| (r.step, p)))
    } else {
        None
    };
    let p = task.progress_reported(state.clock.now_ms(), reported);
    let steps: Vec<StepJson> = task.steps.iter().map(StepJson::from).collect();
    Ok(Json(TaskProgress { progress_percentage: p.percentage, remain_time: p.remain_seconds, step_list: steps })
        .into_response())
}
