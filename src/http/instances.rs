//! Instances and the operations that create tasks (spec 3.8): create, list, show, delete,
//! batch restart/delete, configs, auto-topic, resize, partition reassignment and upgrade.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa_axum::routes;

use super::AppState;
use super::audit::{BatchAudit, MAX_BATCH, Receipt, batch_name};
use super::error::ApiError;
use super::extract::{Caller, InstancePath, JsonBody, ProjectPath};
use super::openapi::shapes;
use super::routes::{Op, op};
use crate::domain::instance::{Instance, InstanceUpdate, NewInstance};
use crate::domain::operation::{self, Operation};
use crate::domain::submission::{NewTask, TaskBuilder};
use crate::domain::{Action, InstanceId, Invalid};
use crate::storage::SubmitError;

/// Several operations have two documented paths (the SDKs and Terraform use both); each pair
/// is served by one handler, so auth, audit and errors cannot drift apart.
pub fn operations() -> Vec<Op> {
    vec![
        // CreateInstanceByEngine (engine `kafka`) and CreatePostPaidKafkaInstance.
        op(routes!(create)).audit(Action::CreateInstance).alias("/v2/{project_id}/kafka/instances"),
        op(routes!(list)),
        op(routes!(batch_action)).batch(),
        op(routes!(show)),
        op(routes!(update)).audit(Action::ModifyInstance),
        op(routes!(delete)).audit(Action::DeleteInstance),
        op(routes!(show_configs)),
        op(routes!(modify_configs)).audit(Action::ModifyInstance),
        op(routes!(auto_topic)).audit(Action::ModifyInstance),
        op(routes!(resize))
            .audit(Action::ModifyInstance)
            .alias("/v2/kafka/{project_id}/instances/{instance_id}/extend"),
        op(routes!(reassign))
            .audit(Action::ModifyInstance)
            .alias("/v2/kafka/{project_id}/instances/{instance_id}/reassign"),
        op(routes!(show_upgrade)),
        op(routes!(upgrade)).audit(Action::ModifyInstance),
        op(routes!(show_tags)),
        op(routes!(show_cluster)),
    ]
}

/// Submits an operation on an instance: `make` sees the instance as it is inside the
/// submitting transaction. Returns the stored task and the receipt of its audit event.
/// `status` is the answer on success, recorded in the audit event stored with the task.
async fn submit<F>(
    state: &AppState,
    caller: &Caller,
    path: &InstancePath,
    schedule_at: Option<i64>,
    status: StatusCode,
    make: F,
) -> Result<(NewTask, Receipt), ApiError>
where
    F: FnOnce(&Instance) -> Result<Operation, Invalid> + Send + 'static,
{
    let build = TaskBuilder::new(&caller.0, state.clock.now_ms(), schedule_at, state.time_scale, make);
    let (event, receipt) = caller.audit(path.instance.as_str(), status);
    match state.storage.instances.submit(&path.project, &path.instance, build, Some(event)).await? {
        Ok(task) => {
            metrics::counter!("kafka_tasks_submitted_total", "name" => task.record.name.clone()).increment(1);
            state.engine_wake.notify_one();
            Ok((task, receipt))
        }
        Err(SubmitError::NoInstance) => Err(ApiError::NoInstance),
        Err(SubmitError::Busy) => Err(ApiError::InstanceState),
        Err(SubmitError::Invalid(e)) => Err(e.into()),
    }
}

/// `{"job_id"}` for an immediate task, `{"schedule_id"}` for a scheduled one.
fn job_or_schedule(task: &NewTask) -> Value {
    let task = &task.record;
    if task.schedule_at.is_some() { json!({ "schedule_id": task.id }) } else { json!({ "job_id": task.id }) }
}

/// CreateInstanceByEngine: `POST /v2/kafka/{project_id}/instances`, and
/// CreatePostPaidKafkaInstance: `POST /v2/{project_id}/kafka/instances` → `{"instance_id"}`.
/// The instance runs the latest kernel build of its engine version.
#[utoipa::path(
    post,
    path = "/v2/kafka/{project_id}/instances",
    operation_id = "CreateInstanceByEngine",
    tag = "Instances",
    params(shapes::ProjectPath),
    request_body = shapes::CreateInstanceBody,
    responses((status = 200, description = "The instance is being created (a `kafkaManagerCreate` task runs)", body = shapes::CreatedInstance)),
)]
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(project): ProjectPath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let who = caller.require(Action::CreateInstance)?;
    let new = NewInstance::from_body(body)?;
    let catalog = state.storage.kernel_catalog(&new.engine_version).await?;
    let now = state.clock.now_ms();
    let mut inst = Instance::create(project, &new, &who.user_id, &who.user_name, now);
    inst.kernel_version = catalog.map(|c| c.latest().to_owned());
    let task = NewTask::new(&inst, Operation::from(&new), (&who.user_id, &who.user_name), now, None, state.time_scale);
    let id = inst.id.clone();
    let (event, receipt) = caller.audit(id.as_str(), StatusCode::OK);
    state.storage.instances.create_instance(inst, task, Some(event)).await?;
    state.engine_wake.notify_one();
    Ok(receipt.respond(Json(json!({ "instance_id": id }))))
}

/// ListInstances: `GET /v2/{project_id}/instances`
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances",
    operation_id = "ListInstances",
    tag = "Instances",
    params(shapes::ProjectPath),
    responses((status = 200, description = "The project's instances", body = shapes::InstanceList)),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(project): ProjectPath,
) -> Result<Json<Value>, ApiError> {
    caller.require(Action::GetInstance)?;
    let all = state.storage.instances.list_instances(&project).await?;
    let instances: Vec<Value> = all.iter().map(Instance::to_json).collect();
    Ok(Json(json!({ "instance_num": instances.len(), "instances": instances })))
}

async fn load(state: &AppState, path: &InstancePath) -> Result<Instance, ApiError> {
    state.storage.instances.get_instance(&path.project, &path.instance).await?.ok_or(ApiError::NoInstance)
}

/// ShowInstance: `GET /v2/{project_id}/instances/{instance_id}`
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}",
    operation_id = "ShowInstance",
    tag = "Instances",
    params(shapes::InstancePath),
    responses((status = 200, description = "The instance", body = shapes::InstanceJson)),
)]
pub(super) async fn show(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
) -> Result<Json<Value>, ApiError> {
    caller.require(Action::GetInstance)?;
    let inst = load(&state, &path).await?;
    let mut v = inst.to_json();
    if inst.cluster_bound
        && let Some(health) = super::clusters::health(&state, &path).await?
    {
        // The cluster's own broker count while it answers; the record's when it does not.
        if health.reachable {
            v["broker_num"] = json!(health.broker_ids.len());
        }
        v["cluster"] = json!(health);
    }
    Ok(Json(v))
}

/// ShowKafkaTags: `GET /v2/{project_id}/kafka/{instance_id}/tags` → `{"tags": [{"key","value"}]}`,
/// the tags the instance was created with.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/kafka/{instance_id}/tags",
    operation_id = "ShowKafkaTags",
    tag = "Instances",
    params(shapes::InstancePath),
    responses((status = 200, description = "The instance's tags", body = shapes::TagList)),
)]
pub(super) async fn show_tags(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
) -> Result<Json<Value>, ApiError> {
    caller.require(Action::GetInstance)?;
    Ok(Json(json!({ "tags": load(&state, &path).await?.tags() })))
}

/// ShowKafkaCluster: `GET /v2/{project_id}/instances/{instance_id}/manage/cluster` →
/// `{"cluster": {"brokers": [{"broker_id","host","port","health"}]}}`; no brokers until the
/// instance has been created.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/manage/cluster",
    operation_id = "ShowKafkaCluster",
    tag = "Instances",
    params(shapes::InstancePath),
    responses((status = 200, description = "The instance's brokers", body = shapes::KafkaCluster)),
)]
pub(super) async fn show_cluster(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
) -> Result<Json<Value>, ApiError> {
    caller.require(Action::GetInstance)?;
    let brokers = load(&state, &path).await?.brokers();
    Ok(Json(json!({ "cluster": crate::domain::brokers::cluster(&brokers) })))
}

/// DeleteInstance: `DELETE /v2/{project_id}/instances/{instance_id}` → 204; the instance and its
/// task records go away when the `deleteInstance` task finishes.
#[utoipa::path(
    delete,
    path = "/v2/{project_id}/instances/{instance_id}",
    operation_id = "DeleteInstance",
    tag = "Instances",
    params(shapes::InstancePath),
    responses((status = 204, description = "Being deleted (a `deleteInstance` task runs)")),
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
) -> Result<Response, ApiError> {
    caller.require(Action::DeleteInstance)?;
    let (_, receipt) =
        submit(&state, &caller, &path, None, StatusCode::NO_CONTENT, |_| Ok(Operation::DeleteInstance)).await?;
    Ok(receipt.respond(StatusCode::NO_CONTENT))
}

/// BatchRestartOrDeleteInstances: `POST /v2/{project_id}/instances/action`
/// `{"action":"restart"|"delete","instances":[…]}` → one result per instance, and one audit
/// event per instance: stored with its task when accepted, else written by the gateway.
#[utoipa::path(
    post,
    path = "/v2/{project_id}/instances/action",
    operation_id = "BatchRestartOrDeleteInstances",
    tag = "Instances",
    params(shapes::ProjectPath),
    request_body = shapes::BatchActionBody,
    responses((status = 200, description = "One result per instance, in order", body = shapes::BatchResults)),
)]
pub(super) async fn batch_action(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(project): ProjectPath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (action, op) = match body.get("action").and_then(Value::as_str) {
        Some("restart") => (Action::ModifyInstance, Operation::Restart),
        Some("delete") => (Action::DeleteInstance, Operation::DeleteInstance),
        _ => return Err(ApiError::InvalidParam("action")),
    };
    caller.require(action)?;
    let ids = body.get("instances").and_then(Value::as_array).ok_or(ApiError::InvalidParam("instances"))?;
    if ids.is_empty() || ids.len() > MAX_BATCH {
        return Err(ApiError::InvalidParam("instances"));
    }
    let mut results = Vec::with_capacity(ids.len());
    let mut audit = BatchAudit::default();
    for raw in ids {
        let name = raw.as_str().unwrap_or_default().to_owned();
        let outcome = match name.parse::<InstanceId>() {
            Ok(instance) => {
                let path = InstancePath { project: project.clone(), instance };
                let op = op.clone();
                match submit(&state, &caller, &path, None, StatusCode::OK, move |_| Ok(op)).await {
                    Ok((_, receipt)) => {
                        audit.accepted(receipt);
                        "success"
                    }
                    Err(ApiError::Internal(e)) => return Err(ApiError::Internal(e)),
                    Err(e) => {
                        audit.refused(batch_name(raw), e.status().as_u16());
                        "failed"
                    }
                }
            }
            Err(_) => {
                audit.refused(batch_name(raw), ApiError::InvalidInstanceId.status().as_u16());
                "failed"
            }
        };
        results.push(json!({ "result": outcome, "instance": name }));
    }
    Ok(audit.respond(Json(json!({ "results": results }))))
}

/// UpdateInstance: `PUT /v2/{project_id}/instances/{instance_id}` with any of `name`,
/// `description`, `maintain_begin` + `maintain_end`, `security_group_id`, `retention_policy`,
/// `enterprise_project_id` → 204. What may change when is
/// [`InstanceUpdate::apply`]'s rule, applied in the storing transaction.
#[utoipa::path(
    put,
    path = "/v2/{project_id}/instances/{instance_id}",
    operation_id = "UpdateInstance",
    tag = "Instances",
    params(shapes::InstancePath),
    request_body = shapes::UpdateInstanceBody,
    responses((status = 204, description = "Updated")),
)]
pub(super) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Action::ModifyInstance)?;
    let change = InstanceUpdate::from_body(body)?;
    let (event, receipt) = caller.audit(path.instance.as_str(), StatusCode::NO_CONTENT);
    let apply = Box::new(move |inst: &mut Instance| change.apply(inst));
    match state.storage.instances.modify_instance(&path.project, &path.instance, apply, Some(event)).await? {
        Ok(()) => Ok(receipt.respond(StatusCode::NO_CONTENT)),
        Err(SubmitError::NoInstance) => Err(ApiError::NoInstance),
        Err(SubmitError::Busy) => Err(ApiError::InstanceState),
        Err(SubmitError::Invalid(e)) => Err(e.into()),
    }
}

/// ShowInstanceConfigs: `GET …/configs`
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/configs",
    operation_id = "ShowInstanceConfigs",
    tag = "Instances",
    params(shapes::InstancePath),
    responses((status = 200, description = "Every broker config with its current value", body = shapes::ConfigList)),
)]
pub(super) async fn show_configs(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
) -> Result<Json<Value>, ApiError> {
    caller.require(Action::GetInstance)?;
    Ok(Json(json!({ "kafka_configs": load(&state, &path).await?.config_list() })))
}

/// ModifyInstanceConfigs: `PUT …/configs` → `{"job_id","dynamic_config","static_config"}`
#[utoipa::path(
    put,
    path = "/v2/{project_id}/instances/{instance_id}/configs",
    operation_id = "ModifyInstanceConfigs",
    tag = "Instances",
    params(shapes::InstancePath),
    request_body = shapes::ModifyConfigsBody,
    responses((status = 200, description = "The task that applies the change", body = shapes::ConfigsModified)),
)]
pub(super) async fn modify_configs(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Action::ModifyInstance)?;
    let (task, receipt) =
        submit(&state, &caller, &path, None, StatusCode::OK, move |inst| operation::modify_configs(&body, inst))
            .await?;
    let (dynamic, stat) = operation::config_counts(&task.operation);
    Ok(receipt.respond(Json(json!({ "job_id": task.record.id, "dynamic_config": dynamic, "static_config": stat }))))
}

/// UpdateInstanceAutoCreateTopic: `POST …/autotopic` `{"enable_auto_topic": bool}`
#[utoipa::path(
    post,
    path = "/v2/{project_id}/instances/{instance_id}/autotopic",
    operation_id = "UpdateInstanceAutoCreateTopic",
    tag = "Instances",
    params(shapes::InstancePath),
    request_body = shapes::AutoTopicBody,
    responses((status = 200, description = "The task that applies the change", body = shapes::AutoTopicChanged)),
)]
pub(super) async fn auto_topic(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Action::ModifyInstance)?;
    let enable = body.get("enable_auto_topic").and_then(Value::as_bool);
    let (task, receipt) =
        submit(&state, &caller, &path, None, StatusCode::OK, move |inst| operation::auto_topic(&body, inst)).await?;
    Ok(receipt.respond(Json(json!({ "job_id": task.record.id, "enable_auto_topic": enable }))))
}

/// ResizeEngineInstance: `POST …/extend` → `{"job_id"}`
#[utoipa::path(
    post,
    path = "/v2/{project_id}/kafka/instances/{instance_id}/extend",
    operation_id = "ResizeEngineInstance",
    tag = "Instances",
    params(shapes::InstancePath),
    request_body = shapes::ResizeBody,
    responses((status = 200, description = "The resize task", body = shapes::JobId)),
)]
pub(super) async fn resize(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Action::ModifyInstance)?;
    let (task, receipt) =
        submit(&state, &caller, &path, None, StatusCode::OK, move |inst| operation::resize(&body, inst)).await?;
    Ok(receipt.respond(Json(json!({ "job_id": task.record.id }))))
}

/// CreateKafkaReassignmentTask: `POST /v2/{project_id}/kafka/instances/{instance_id}/reassign`
/// and the documented `POST /v2/kafka/{project_id}/instances/{instance_id}/reassign` (Terraform's),
/// immediate or scheduled. With
/// `time_estimate: true` it only estimates, creating no task.
#[utoipa::path(
    post,
    path = "/v2/{project_id}/kafka/instances/{instance_id}/reassign",
    operation_id = "CreateKafkaReassignmentTask",
    tag = "Instances",
    params(shapes::InstancePath),
    request_body = shapes::ReassignBody,
    responses((status = 200, description = "The task (`job_id`), the scheduled task (`schedule_id`), or with `time_estimate` the estimate", body = shapes::ReassignOutcome)),
)]
pub(super) async fn reassign(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Action::ModifyInstance)?;
    let schedule_at = operation::schedule(&body, state.clock.now_ms())?;
    if body.get("time_estimate").and_then(Value::as_bool) == Some(true) {
        let inst = load(&state, &path).await?;
        let op = operation::reassign(&body, &inst)?;
        let secs: u64 = match inst.cluster_bound {
            // A bound instance's estimate comes from its cluster: real sizes over the throttle.
            true => super::clusters::estimate_reassignment(&state, &path, &body).await?,
            false => op.plan().iter().map(|s| s.1).sum::<u64>() / 1000,
        };
        // Nothing stored: the gateway audits the estimate.
        return Ok(Json(json!({ "reassignment_time": secs })).into_response());
    }
    let (task, receipt) =
        submit(&state, &caller, &path, schedule_at, StatusCode::OK, move |inst| operation::reassign(&body, inst))
            .await?;
    Ok(receipt.respond(Json(job_or_schedule(&task))))
}

/// The newest kernel build of the instance's engine version.
async fn latest_kernel(state: &AppState, inst: &Instance) -> Result<String, ApiError> {
    let catalog = state.storage.kernel_catalog(&inst.engine_version).await?;
    Ok(catalog.map(|c| c.latest().to_owned()).unwrap_or_default())
}

/// ShowUpgradeInstanceVersion: `GET …/upgrade` → `{"current_version","latest_version"}`, the
/// kernel build the instance runs and the newest one of its engine version.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/kafka/instances/{instance_id}/upgrade",
    operation_id = "ShowUpgradeInstanceVersion",
    tag = "Instances",
    params(shapes::InstancePath),
    responses((status = 200, description = "The kernel build the instance runs and the newest of its engine version", body = shapes::UpgradeVersions)),
)]
pub(super) async fn show_upgrade(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
) -> Result<Json<Value>, ApiError> {
    caller.require(Action::GetInstance)?;
    let inst = load(&state, &path).await?;
    let latest = latest_kernel(&state, &inst).await?;
    Ok(Json(json!({ "current_version": inst.kernel_version(), "latest_version": latest })))
}

/// UpgradeInstance: `POST …/upgrade` `{"is_schedule","execute_at"}` → `{"job_id"}` or
/// `{"schedule_id"}`: a rolling kernel upgrade to the newest build of the instance's engine
/// version (refused when it runs it already).
#[utoipa::path(
    post,
    path = "/v2/{project_id}/kafka/instances/{instance_id}/upgrade",
    operation_id = "UpgradeInstance",
    tag = "Instances",
    params(shapes::InstancePath),
    request_body = shapes::UpgradeBody,
    responses((status = 200, description = "The upgrade task (`job_id`) or the scheduled one (`schedule_id`)", body = shapes::JobOrSchedule)),
)]
pub(super) async fn upgrade(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Action::ModifyInstance)?;
    let schedule_at = operation::schedule(&body, state.clock.now_ms())?;
    // Read before the submitting transaction: builds are only ever appended, so a build added
    // meanwhile makes this one older, never invalid.
    let inst = load(&state, &path).await?;
    let latest = latest_kernel(&state, &inst).await?;
    let (task, receipt) =
        submit(&state, &caller, &path, schedule_at, StatusCode::OK, move |inst| operation::upgrade(inst, &latest))
            .await?;
    Ok(receipt.respond(Json(job_or_schedule(&task))))
}
