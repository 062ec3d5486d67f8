//! Instances and the operations that create tasks (spec 3.8): create, list, show, delete,
//! batch restart/delete, configs, auto-topic, resize, partition reassignment and upgrade.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::routes;

use super::AppState;
use super::audit::{BatchAudit, MAX_BATCH, Receipt, batch_name};
use super::error::ApiError;
use super::extract::{Caller, InstancePath, JsonBody, ProjectPath};
use super::routes::{Op, op};
use crate::domain::instance::{Instance, InstanceUpdate, NewInstance};
use crate::domain::operation::{self, Operation};
use crate::domain::submission::{NewTask, TaskBuilder};
use crate::domain::{Action, InstanceId, Invalid};
use crate::storage::SubmitError;
use crate::wire::from_value;
use crate::wire::instance::{
    ConfigList, CreateInstanceBody, CreatedInstance, InstanceJson, InstanceList, KafkaCluster, TagList,
    UpdateInstanceBody,
};
use crate::wire::operation::{
    AutoTopicBody, AutoTopicChanged, BatchAction, BatchActionBody, BatchResult, BatchResults, ConfigsModified, JobId,
    JobOrSchedule, ModifyConfigsBody, Outcome, ReassignBody, ReassignOutcome, ReassignmentEstimate, ResizeBody,
    ScheduleId, UpgradeBody, UpgradeVersions,
};

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
    F: Fn(&Instance) -> Result<Operation, Invalid> + Send + 'static,
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
fn job_or_schedule(task: &NewTask) -> JobOrSchedule {
    let task = &task.record;
    let id = task.id.as_str().to_owned();
    if task.schedule_at.is_some() {
        JobOrSchedule::Schedule(ScheduleId { schedule_id: id })
    } else {
        JobOrSchedule::Job(JobId { job_id: id })
    }
}

/// CreateInstanceByEngine: `POST /v2/kafka/{project_id}/instances`, and
/// CreatePostPaidKafkaInstance: `POST /v2/{project_id}/kafka/instances` → `{"instance_id"}`.
/// The instance runs the latest kernel build of its engine version.
#[utoipa::path(
    post,
    path = "/v2/kafka/{project_id}/instances",
    operation_id = "CreateInstanceByEngine",
    tag = "Instances",
    params(ProjectPath),
    request_body = CreateInstanceBody,
    responses((status = 200, description = "The instance is being created (a `kafkaManagerCreate` task runs)", body = CreatedInstance)),
)]
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(project): ProjectPath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let who = caller.require(Action::CreateInstance)?;
    let new = NewInstance::try_from(from_value::<CreateInstanceBody>(body)?)?;
    let catalog = state.storage.kernel_catalog(&new.engine_version).await?;
    let now = state.clock.now_ms();
    let mut inst = Instance::create(project, &new, &who.user_id, &who.user_name, now);
    inst.kernel_version = catalog.map(|c| c.latest().to_owned());
    let task = NewTask::new(&inst, Operation::from(&new), (&who.user_id, &who.user_name), now, None, state.time_scale);
    let id = inst.id.clone();
    let (event, receipt) = caller.audit(id.as_str(), StatusCode::OK);
    state.storage.instances.create_instance(inst, task, Some(event)).await?;
    state.engine_wake.notify_one();
    Ok(receipt.respond(Json(CreatedInstance { instance_id: id.as_str().to_owned() })))
}

/// ListInstances: `GET /v2/{project_id}/instances`
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances",
    operation_id = "ListInstances",
    tag = "Instances",
    params(ProjectPath),
    responses((status = 200, description = "The project's instances", body = InstanceList)),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(project): ProjectPath,
) -> Result<Json<InstanceList>, ApiError> {
    caller.require(Action::GetInstance)?;
    let all = state.storage.instances.list_instances(&project).await?;
    let instances: Vec<InstanceJson> = all.iter().map(InstanceJson::from).collect();
    Ok(Json(InstanceList { instance_num: instances.len() as u64, instances }))
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
    params(InstancePath),
    responses((status = 200, description = "The instance (with `cluster` when it is bound to one)", body = InstanceJson)),
)]
pub(super) async fn show(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
) -> Result<Json<InstanceJson>, ApiError> {
    caller.require(Action::GetInstance)?;
    let inst = load(&state, &path).await?;
    let mut shown = InstanceJson::from(&inst);
    if inst.cluster_bound
        && let Some(mut health) = super::clusters::health(&state, &path).await?
    {
        // Why the cluster does not answer names its addresses and files: the binding's, which
        // only an admin may read.
        if health.error.is_some() && caller.require(Action::GetCluster).is_err() {
            health.error =
                Some("the cluster does not answer; an admin sees why in the instance's cluster binding".into());
        }
        // The cluster's own broker count while it answers; the record's when it does not.
        if health.reachable {
            shown.broker_num = u32::try_from(health.broker_ids.len()).unwrap_or(u32::MAX);
        }
        shown.cluster = Some(health);
    }
    Ok(Json(shown))
}

/// ShowKafkaTags: `GET /v2/{project_id}/kafka/{instance_id}/tags` → `{"tags": [{"key","value"}]}`,
/// the tags the instance was created with.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/kafka/{instance_id}/tags",
    operation_id = "ShowKafkaTags",
    tag = "Instances",
    params(InstancePath),
    responses((status = 200, description = "The instance's tags", body = TagList)),
)]
pub(super) async fn show_tags(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
) -> Result<Json<TagList>, ApiError> {
    caller.require(Action::GetInstance)?;
    Ok(Json(TagList::from(&load(&state, &path).await?)))
}

/// ShowKafkaCluster: `GET /v2/{project_id}/instances/{instance_id}/manage/cluster` →
/// `{"cluster": {"brokers": [{"broker_id","host","port","health"}]}}`; no brokers until the
/// instance has been created.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/manage/cluster",
    operation_id = "ShowKafkaCluster",
    tag = "Instances",
    params(InstancePath),
    responses((status = 200, description = "The instance's brokers", body = KafkaCluster)),
)]
pub(super) async fn show_cluster(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
) -> Result<Json<KafkaCluster>, ApiError> {
    caller.require(Action::GetInstance)?;
    let brokers = load(&state, &path).await?.brokers();
    Ok(Json(KafkaCluster::from(brokers.as_slice())))
}

/// DeleteInstance: `DELETE /v2/{project_id}/instances/{instance_id}` → 204; the instance and its
/// task records go away when the `deleteInstance` task finishes.
#[utoipa::path(
    delete,
    path = "/v2/{project_id}/instances/{instance_id}",
    operation_id = "DeleteInstance",
    tag = "Instances",
    params(InstancePath),
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
    params(ProjectPath),
    request_body = BatchActionBody,
    responses((status = 200, description = "One result per instance, in order", body = BatchResults)),
)]
pub(super) async fn batch_action(
    State(state): State<AppState>,
    caller: Caller,
    ProjectPath(project): ProjectPath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let body: BatchActionBody = from_value(body)?;
    let (action, op) = match body.action {
        Some(BatchAction::Restart) => (Action::ModifyInstance, Operation::Restart),
        Some(BatchAction::Delete) => (Action::DeleteInstance, Operation::DeleteInstance),
        None => return Err(ApiError::InvalidParam("action")),
    };
    caller.require(action)?;
    let ids = body.instances.ok_or(ApiError::InvalidParam("instances"))?;
    if ids.is_empty() || ids.len() > MAX_BATCH {
        return Err(ApiError::InvalidParam("instances"));
    }
    let mut results = Vec::with_capacity(ids.len());
    let mut audit = BatchAudit::default();
    for raw in &ids {
        let name = raw.as_str().unwrap_or_default().to_owned();
        let outcome = match name.parse::<InstanceId>() {
            Ok(instance) => {
                let path = InstancePath { project: project.clone(), instance };
                let op = op.clone();
                match submit(&state, &caller, &path, None, StatusCode::OK, move |_| Ok(op.clone())).await {
                    Ok((_, receipt)) => {
                        audit.accepted(receipt);
                        Outcome::Success
                    }
                    Err(ApiError::Internal(e)) => return Err(ApiError::Internal(e)),
                    Err(e) => {
                        audit.refused(batch_name(raw), e.status().as_u16());
                        Outcome::Failed
                    }
                }
            }
            Err(_) => {
                audit.refused(batch_name(raw), ApiError::InvalidInstanceId.status().as_u16());
                Outcome::Failed
            }
        };
        results.push(BatchResult { instance: name, result: outcome });
    }
    Ok(audit.respond(Json(BatchResults { results })))
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
    params(InstancePath),
    request_body = UpdateInstanceBody,
    responses((status = 204, description = "Updated")),
)]
pub(super) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Action::ModifyInstance)?;
    let change = InstanceUpdate::validate(from_value::<UpdateInstanceBody>(body)?.into())?;
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
    params(InstancePath),
    responses((status = 200, description = "Every broker config with its current value", body = ConfigList)),
)]
pub(super) async fn show_configs(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
) -> Result<Json<ConfigList>, ApiError> {
    caller.require(Action::GetInstance)?;
    Ok(Json(ConfigList::from(&load(&state, &path).await?)))
}

/// ModifyInstanceConfigs: `PUT …/configs` → `{"job_id","dynamic_config","static_config"}`
#[utoipa::path(
    put,
    path = "/v2/{project_id}/instances/{instance_id}/configs",
    operation_id = "ModifyInstanceConfigs",
    tag = "Instances",
    params(InstancePath),
    request_body = ModifyConfigsBody,
    responses((status = 200, description = "The task that applies the change", body = ConfigsModified)),
)]
pub(super) async fn modify_configs(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Action::ModifyInstance)?;
    let changes = from_value::<ModifyConfigsBody>(body)?.requests();
    let make = move |inst: &Instance| operation::modify_configs(changes.as_deref(), inst);
    let (task, receipt) = submit(&state, &caller, &path, None, StatusCode::OK, make).await?;
    let (dynamic, stat) = operation::config_counts(&task.operation);
    let job_id = task.record.id.as_str().to_owned();
    Ok(receipt.respond(Json(ConfigsModified { dynamic_config: dynamic as u64, job_id, static_config: stat as u64 })))
}

/// UpdateInstanceAutoCreateTopic: `POST …/autotopic` `{"enable_auto_topic": bool}`
#[utoipa::path(
    post,
    path = "/v2/{project_id}/instances/{instance_id}/autotopic",
    operation_id = "UpdateInstanceAutoCreateTopic",
    tag = "Instances",
    params(InstancePath),
    request_body = AutoTopicBody,
    responses((status = 200, description = "The task that applies the change", body = AutoTopicChanged)),
)]
pub(super) async fn auto_topic(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Action::ModifyInstance)?;
    let enable = from_value::<AutoTopicBody>(body)?.enable_auto_topic;
    let (task, receipt) =
        submit(&state, &caller, &path, None, StatusCode::OK, move |inst| operation::auto_topic(enable, inst)).await?;
    // Accepted only with a value (`auto_topic` requires it).
    let enable_auto_topic = enable.unwrap_or_default();
    Ok(receipt.respond(Json(AutoTopicChanged { enable_auto_topic, job_id: task.record.id.as_str().to_owned() })))
}

/// ResizeEngineInstance: `POST …/extend` → `{"job_id"}`
#[utoipa::path(
    post,
    path = "/v2/{project_id}/kafka/instances/{instance_id}/extend",
    operation_id = "ResizeEngineInstance",
    tag = "Instances",
    params(InstancePath),
    request_body = ResizeBody,
    responses((status = 200, description = "The resize task", body = JobId)),
)]
pub(super) async fn resize(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Action::ModifyInstance)?;
    let req = (&from_value::<ResizeBody>(body)?).into();
    let (task, receipt) =
        submit(&state, &caller, &path, None, StatusCode::OK, move |inst| operation::resize(&req, inst)).await?;
    Ok(receipt.respond(Json(JobId { job_id: task.record.id.as_str().to_owned() })))
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
    params(InstancePath),
    request_body = ReassignBody,
    responses((status = 200, description = "The task (`job_id`), the scheduled task (`schedule_id`), or with `time_estimate` the estimate", body = ReassignOutcome)),
)]
pub(super) async fn reassign(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Action::ModifyInstance)?;
    let req: ReassignBody = from_value(body.clone())?;
    let schedule_at = operation::schedule(req.is_schedule, req.execute_at, state.clock.now_ms())?;
    let (entries, throttle) = (req.requests(), req.throttle);
    if req.time_estimate == Some(true) {
        let inst = load(&state, &path).await?;
        let op = operation::reassign(entries.as_deref(), throttle, &inst)?;
        let secs: u64 = match inst.cluster_bound {
            // A bound instance's estimate comes from its cluster: real sizes over the throttle.
            true => super::clusters::estimate_reassignment(&state, &path, &body).await?,
            false => op.plan().iter().map(|s| s.1).sum::<u64>() / 1000,
        };
        // Nothing stored: the gateway audits the estimate.
        return Ok(Json(ReassignOutcome::Estimate(ReassignmentEstimate { reassignment_time: secs })).into_response());
    }
    let make = move |inst: &Instance| operation::reassign(entries.as_deref(), throttle, inst);
    let (task, receipt) = submit(&state, &caller, &path, schedule_at, StatusCode::OK, make).await?;
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
    params(InstancePath),
    responses((status = 200, description = "The kernel build the instance runs and the newest of its engine version", body = UpgradeVersions)),
)]
pub(super) async fn show_upgrade(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
) -> Result<Json<UpgradeVersions>, ApiError> {
    caller.require(Action::GetInstance)?;
    let inst = load(&state, &path).await?;
    let latest_version = latest_kernel(&state, &inst).await?;
    // A bound instance's brokers say what they run; the record says what the simulation runs.
    let current_version = match super::clusters::running_build(&state, &path, &inst.engine_version).await? {
        Some(build) => build,
        None => inst.kernel_version().to_owned(),
    };
    Ok(Json(UpgradeVersions { current_version, latest_version }))
}

/// UpgradeInstance: `POST …/upgrade` `{"is_schedule","execute_at"}` → `{"job_id"}` or
/// `{"schedule_id"}`: a rolling kernel upgrade to the newest build of the instance's engine
/// version (refused when it runs it already).
#[utoipa::path(
    post,
    path = "/v2/{project_id}/kafka/instances/{instance_id}/upgrade",
    operation_id = "UpgradeInstance",
    tag = "Instances",
    params(InstancePath),
    request_body = UpgradeBody,
    responses((status = 200, description = "The upgrade task (`job_id`) or the scheduled one (`schedule_id`)", body = JobOrSchedule)),
)]
pub(super) async fn upgrade(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Action::ModifyInstance)?;
    let req: UpgradeBody = from_value(body)?;
    let schedule_at = operation::schedule(req.is_schedule, req.execute_at, state.clock.now_ms())?;
    // Read before the submitting transaction: builds are only ever appended, so a build added
    // meanwhile makes this one older, never invalid.
    let inst = load(&state, &path).await?;
    let latest = latest_kernel(&state, &inst).await?;
    let (task, receipt) =
        submit(&state, &caller, &path, schedule_at, StatusCode::OK, move |inst| operation::upgrade(inst, &latest))
            .await?;
    Ok(receipt.respond(Json(job_or_schedule(&task))))
}
