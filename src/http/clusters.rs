//! Cluster bindings (connected mode, an extension of the DMS API): which real Apache Kafka
//! cluster an instance's operations are done on. Admin role for reading and changing. Binding
//! checks the cluster answers (DescribeCluster with the binding's credentials) and refuses
//! clearly when it does not; unbinding never touches the cluster. The rules of a binding are
//! [`crate::domain::cluster`], the client [`crate::kafka`].

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{Caller, InstancePath, JsonBody};
use super::routes::{Op, op};
use crate::domain::Action;
use crate::domain::cluster::{AllowRule, Binding, BindingRequest, ClusterPolicy};
use crate::kafka::{ClusterError, ClusterView};
use crate::storage::StoredBinding;
use crate::wire::cluster::ClusterAnswer;

/// How long binding waits for the cluster to answer.
const BIND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long showing a binding waits for the cluster's current view.
const SHOW_TIMEOUT: Duration = Duration::from_secs(3);
/// The most of a cluster's error text put in an answer.
const MAX_REASON: usize = 512;

/// What bindings may reach (flags of `kafka-tasks serve`; see [`ClusterPolicy`]).
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Bootstrap servers a cluster binding may name: an address or CIDR block, a host name, or
    /// `*.domain` (repeatable, or comma-separated in the variable). None: no instance can be bound.
    #[arg(long = "cluster-allow", env = "KAFKA_TASKS_CLUSTER_ALLOW", value_delimiter = ',', value_name = "RULE")]
    pub cluster_allow: Vec<AllowRule>,
    /// The directory that password and CA files named by bindings must be in. None: bindings name
    /// no file (passwords are sealed, or in a `KAFKA_TASKS_CLUSTER_*` variable).
    #[arg(long, env = "KAFKA_TASKS_CLUSTER_SECRETS_DIR", value_name = "DIR")]
    pub cluster_secrets_dir: Option<std::path::PathBuf>,
    /// The directory that a binding's broker-control program (rolling restarts, static configs,
    /// kernel upgrades on a bound cluster) must be in. None: bindings name no such program.
    #[arg(long, env = "KAFKA_TASKS_BROKER_CONTROL_DIR", value_name = "DIR")]
    pub broker_control_dir: Option<std::path::PathBuf>,
}

impl ClusterArgs {
    pub fn policy(&self) -> ClusterPolicy {
        ClusterPolicy {
            allow: self.cluster_allow.clone(),
            secrets_dir: self.cluster_secrets_dir.clone(),
            control_dir: self.broker_control_dir.clone(),
        }
    }
}

pub fn operations() -> Vec<Op> {
    vec![
        op(routes!(show)),
        op(routes!(bind)).audit(Action::BindCluster),
        op(routes!(unbind)).audit(Action::BindCluster),
    ]
}

fn reason(e: &ClusterError) -> String {
    let mut s: String = e.to_string().chars().filter(|c| !c.is_control()).collect();
    if s.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Connects and describes the cluster of `stored`.
async fn look(state: &AppState, stored: &StoredBinding, timeout: Duration) -> Result<ClusterView, ClusterError> {
    let kafka = crate::kafka::connect(stored, state.auth.master(), &state.cluster_policy, timeout).await?;
    crate::kafka::describe(&kafka, timeout).await
}

async fn answer(state: &AppState, instance: &str, stored: &StoredBinding, timeout: Duration) -> ClusterAnswer {
    let seen = look(state, stored, timeout).await;
    let (reachable, cluster, error) = match seen {
        Ok(v) => (true, Some(v), None),
        Err(e) => (false, None, Some(reason(&e))),
    };
    ClusterAnswer { binding: stored.binding.view(), cluster, error, instance_id: instance.to_owned(), reachable }
}

/// `GET /v2/{project_id}/instances/{instance_id}/cluster`: the binding (never its password) and
/// the cluster as it answers now.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/cluster",
    operation_id = "ShowInstanceCluster",
    tag = "Connected mode",
    params(InstancePath),
    responses((status = 200, description = "The instance's cluster binding (admin role)", body = ClusterAnswer)),
)]
pub(super) async fn show(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
) -> Result<Response, ApiError> {
    caller.require(Action::GetCluster)?;
    state.storage.instances.get_instance(&path.project, &path.instance).await?.ok_or(ApiError::NoInstance)?;
    let stored =
        state.storage.clusters.get_binding(&path.project, &path.instance).await?.ok_or(ApiError::NoClusterBinding)?;
    Ok(Json(answer(&state, path.instance.as_str(), &stored, SHOW_TIMEOUT).await).into_response())
}

/// `PUT /v2/{project_id}/instances/{instance_id}/cluster`: binds the instance to a cluster (or
/// rebinds it), once the cluster has answered with the binding's credentials.
#[utoipa::path(
    put,
    path = "/v2/{project_id}/instances/{instance_id}/cluster",
    operation_id = "BindInstanceCluster",
    tag = "Connected mode",
    params(InstancePath),
    request_body = BindingRequest,
    responses((status = 200, description = "The binding now in force (admin role)", body = ClusterAnswer)),
)]
pub(super) async fn bind(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Action::BindCluster)?;
    let request: BindingRequest = serde_json::from_value(body).map_err(|_| ApiError::InvalidBody)?;
    let (binding, inline) = request.check()?;
    // The operator's policy first: what a path outside it is, or whether it exists, is not told.
    state.cluster_policy.permits(&binding).map_err(ApiError::ClusterUnusable)?;
    check_broker_control(&binding)?;
    state.storage.instances.get_instance(&path.project, &path.instance).await?.ok_or(ApiError::NoInstance)?;
    let stored = StoredBinding { password_sealed: inline.map(|p| state.auth.master().seal(&p)), binding };
    let view = look(&state, &stored, BIND_TIMEOUT).await.map_err(|e| ApiError::ClusterUnusable(reason(&e)))?;
    let (mut event, receipt) = caller.audit(path.instance.as_str(), StatusCode::OK);
    event.detail = Some(serde_json::json!({ "binding": stored.binding.view(), "cluster_id": view.cluster_id }));
    let bound = state
        .storage
        .clusters
        .put_binding(&path.project, &path.instance, Some(stored.clone()), state.clock.now(), event)
        .await?;
    if !bound {
        return Err(ApiError::NoInstance);
    }
    let answer = ClusterAnswer {
        binding: stored.binding.view(),
        cluster: Some(view),
        error: None,
        instance_id: path.instance.as_str().to_owned(),
        reachable: true,
    };
    Ok(receipt.respond(Json(answer).into_response()))
}

/// `DELETE /v2/{project_id}/instances/{instance_id}/cluster`: unbinds the instance (its next
/// operations are simulated again); the cluster is not touched.
#[utoipa::path(
    delete,
    path = "/v2/{project_id}/instances/{instance_id}/cluster",
    operation_id = "UnbindInstanceCluster",
    tag = "Connected mode",
    params(InstancePath),
    responses((status = 204, description = "Unbound (admin role)")),
)]
pub(super) async fn unbind(
    State(state): State<AppState>,
    caller: Caller,
    path: InstancePath,
) -> Result<Response, ApiError> {
    caller.require(Action::BindCluster)?;
    state.storage.clusters.get_binding(&path.project, &path.instance).await?.ok_or(ApiError::NoClusterBinding)?;
    let (event, receipt) = caller.audit(path.instance.as_str(), StatusCode::NO_CONTENT);
    let done =
        state.storage.clusters.put_binding(&path.project, &path.instance, None, state.clock.now(), event).await?;
    if !done {
        return Err(ApiError::NoInstance);
    }
    Ok(receipt.respond(StatusCode::NO_CONTENT.into_response()))
}

/// The broker-control program must be an executable file, as an executor's program must.
fn check_broker_control(b: &Binding) -> Result<(), ApiError> {
    let Some(program) = &b.broker_control else { return Ok(()) };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ok = std::fs::metadata(program).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if !ok {
            return Err(ApiError::InvalidParam("broker_control"));
        }
    }
    Ok(())
}

/// What ShowInstance shows of a bound instance's cluster (cached briefly; bounded when the
/// cluster does not answer). `None` when the instance has no binding after all.
pub(super) async fn health(
    state: &AppState,
    path: &InstancePath,
) -> Result<Option<crate::kafka::ClusterHealth>, ApiError> {
    let Some(stored) = state.storage.clusters.get_binding(&path.project, &path.instance).await? else {
        return Ok(None);
    };
    let now = state.clock.now_ms();
    let cache = &state.cluster_health;
    Ok(Some(cache.get(path.instance.as_str(), &stored, state.auth.master(), &state.cluster_policy, now).await))
}

/// ShowUpgradeInstanceVersion's `current_version` of a bound instance: the newest kernel build of
/// `engine_version` on the release line its brokers run ([`crate::kafka::Running`]), or that line
/// when no build is on it; from ShowInstance's cache of the cluster's health, so that readers
/// asking often cost the cluster one look per few seconds. `None` when the instance has no
/// binding; the cluster not answering is an error with its reason, never the record's version
/// passed off as the cluster's.
pub(super) async fn running_build(
    state: &AppState,
    path: &InstancePath,
    engine_version: &str,
) -> Result<Option<String>, ApiError> {
    let Some(health) = health(state, path).await? else { return Ok(None) };
    if !health.reachable {
        return Err(ApiError::ClusterUnusable(health.error.unwrap_or_default()));
    }
    let level = health.supported_metadata_version.ok_or_else(|| {
        ApiError::ClusterUnusable("the brokers did not describe the metadata versions they support".to_owned())
    })?;
    let catalog = state.storage.kernel_catalog(engine_version).await?;
    Ok(Some(crate::kafka::Running::at(level).current_build(catalog.as_ref().map_or(&[], |c| c.builds()))))
}

/// `time_estimate` of a reassignment on a bound instance: from the cluster's partition sizes and
/// the throttle ([`crate::executor::kafka::reassign::estimate`]), in seconds.
pub(super) async fn estimate_reassignment(
    state: &AppState,
    path: &InstancePath,
    body: &serde_json::Value,
) -> Result<u64, ApiError> {
    use crate::executor::kafka::reassign;
    let stored =
        state.storage.clusters.get_binding(&path.project, &path.instance).await?.ok_or(ApiError::NoClusterBinding)?;
    let wanted = reassign::Request::of(body).map_err(|e| ApiError::ClusterRefuses("reassignments", e))?;
    let work = async {
        let kafka = crate::kafka::connect(&stored, state.auth.master(), &state.cluster_policy, SHOW_TIMEOUT)
            .await
            .map_err(|e| ApiError::ClusterUnusable(reason(&e)))?;
        reassign::estimate(&kafka, &wanted).await.map_err(|e| ApiError::ClusterRefuses("reassignments", clean(e)))
    };
    match tokio::time::timeout(BIND_TIMEOUT, work).await {
        Ok(answer) => answer,
        Err(_) => Err(ApiError::ClusterUnusable(format!("no answer within {} s", BIND_TIMEOUT.as_secs()))),
    }
}

/// A cluster's words made safe to show: no control characters, at most [`MAX_REASON`] bytes.
fn clean(s: String) -> String {
    reason(&ClusterError::Config(s))
}
