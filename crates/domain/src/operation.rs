//! The operations that create tasks: what each one is called, the steps it runs through,
//! what it records as `params`, and how it changes the instance when it finishes.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::instance::{Instance, InstanceStatus, MAX_BROKERS, MAX_STORAGE_GB, NewInstance, config_def};
use super::task::{Step, StepFailure, StepStatus};
use super::{Invalid, TopicName};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub name: String,
    pub old_value: String,
    pub new_value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResizeKind {
    Storage,
    Horizontal,
    Vertical,
}

/// An operation on an instance, as recorded with its task so that a worker in any process
/// (or after a restart) can carry it on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    CreateInstance {
        name: String,
        engine_version: String,
        broker_num: u32,
        storage_space: u32,
    },
    DeleteInstance,
    Restart,
    ModifyConfigs {
        changes: Vec<ConfigChange>,
    },
    AutoTopic {
        old: bool,
        new: bool,
    },
    Resize {
        kind: ResizeKind,
        old_storage: u32,
        new_storage: u32,
        old_brokers: u32,
        new_brokers: u32,
        old_product: String,
        new_product: String,
    },
    Reassign {
        reassignments: Value,
        throttle: Option<i64>,
    },
    /// A rolling kernel upgrade: each broker in turn moves from `old_kernel` to `new_kernel`,
    /// builds of the same `engine_version`, which never changes.
    #[serde(rename = "kernel_upgrade")]
    Upgrade {
        engine_version: String,
        old_kernel: String,
        new_kernel: String,
        /// The brokers upgraded one by one, ids `0..brokers`: the instance's when submitted.
        brokers: u32,
    },
    /// An engine-version upgrade (2.7 to 3.x) as recorded before upgrades became kernel
    /// upgrades. Never created now; still read so that such a record loads. One still waiting
    /// fails when it fires ([`Operation::still_applies`]); one already running ends without
    /// changing the engine version.
    #[serde(rename = "upgrade")]
    LegacyUpgrade {
        old_version: String,
        new_version: String,
    },
}

/// What a step does, typed: the step's wire name is derived from it ([`StepKind::name`]), and
/// step effects match on it, never on names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    CreateResources,
    InstallBrokers,
    StartCluster,
    StopCluster,
    ReleaseResources,
    PreCheck,
    RollingRestart,
    HealthCheck,
    ApplyConfig,
    DiskExpansion,
    CreateBrokers,
    RollingScaling,
    ReassignPartitions,
    Verify,
    /// The kernel upgrade of one broker (by id) in a rolling upgrade: `upgrade_broker_{id}`.
    UpgradeBroker(u32),
    /// The one upgrade step of a [`Operation::LegacyUpgrade`].
    UpgradeBrokers,
    PostCheck,
}

impl StepKind {
    /// The step's name as the progress API shows it.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        use StepKind::*;
        std::borrow::Cow::Borrowed(match self {
            CreateResources => "create_resources",
            InstallBrokers => "install_brokers",
            StartCluster => "start_cluster",
            StopCluster => "stop_cluster",
            ReleaseResources => "release_resources",
            PreCheck => "pre_check",
            RollingRestart => "rolling_restart",
            HealthCheck => "health_check",
            ApplyConfig => "apply_config",
            DiskExpansion => "disk_expansion",
            CreateBrokers => "create_brokers",
            RollingScaling => "rolling_scaling",
            ReassignPartitions => "reassign_partitions",
            Verify => "verify",
            UpgradeBroker(id) => return std::borrow::Cow::Owned(format!("upgrade_broker_{id}")),
            UpgradeBrokers => "upgrade_brokers",
            PostCheck => "post_check",
        })
    }
}

/// The realistic duration of upgrading one broker's kernel (DMS's guide: about 5 minutes each,
/// data synchronisation included), before the time scale.
pub const BROKER_UPGRADE_MS: u64 = 300_000;

/// Facts about the world an operation's step may depend on, known only when the step runs.
#[derive(Debug, Clone, Copy)]
pub struct StepContext {
    /// The largest storage (GB) the resource pool can allocate to one instance.
    pub storage_pool_gb: u32,
    /// The operations whose steps an executor runs (`--executors`): their steps end when the
    /// executor says so, never in the transaction that takes the task, whatever their planned
    /// duration. Empty by default: every operation is simulated.
    pub executed: OpSet,
    /// Every step ends in a write of its own, never chained in the transaction that took the
    /// task or ended the step before: test control (`serve --test-control`) decides each step's
    /// fate as it starts (a fault rule may fail or stretch it), even at `--time-scale 0`.
    pub stepwise: bool,
}

/// Every task name an operation can have ([`Operation::task_name`]), in a fixed order.
pub const TASK_NAMES: [&str; 7] = [
    "createInstance",
    "deleteInstance",
    "restartInstance",
    "kafkaConfigModify",
    "extendInstance",
    "kafkaPartitionReassign",
    "upgradeInstance",
];

/// A set of operations, by task name ([`TASK_NAMES`]); `Copy`, so that it travels in a
/// [`StepContext`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpSet(u8);

impl OpSet {
    pub const EMPTY: OpSet = OpSet(0);

    /// Adds the operation named `task_name`; `false` when no operation has that name.
    pub fn insert(&mut self, task_name: &str) -> bool {
        match TASK_NAMES.iter().position(|n| *n == task_name) {
            Some(i) => {
                self.0 |= 1 << i;
                true
            }
            None => false,
        }
    }

    pub fn contains(self, task_name: &str) -> bool {
        TASK_NAMES.iter().position(|n| *n == task_name).is_some_and(|i| self.0 & (1 << i) != 0)
    }
}

impl StepContext {
    /// Whether an executor runs the steps of `op` on `inst` (rather than the simulation's
    /// timer): the executor file names the operation, or the instance is bound to a Kafka
    /// cluster (whose operations the `kafka` executor does; creating and deleting the record of
    /// a bound instance never touch the cluster).
    pub fn executes(&self, op: &Operation, inst: &super::instance::Instance) -> bool {
        self.executed.contains(op.task_name())
            || (inst.cluster_bound && !matches!(op, Operation::CreateInstance { .. } | Operation::DeleteInstance))
    }

    /// Whether each step of `op` on `inst` must end in a write of its own: an executor runs it,
    /// or test control may fault it ([`StepContext::stepwise`]).
    pub fn one_step_per_write(&self, op: &Operation, inst: &super::instance::Instance) -> bool {
        self.stepwise || self.executes(op, inst)
    }
}

/// What finishing a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepEffect {
    /// The step succeeded; the instance may have changed.
    Done,
    /// The step failed; the task ends `FAILED` and the instance is left as it was before the task
    /// (but for its status, which `on_failure` sets).
    Failed(StepFailure),
    /// The step succeeded and the instance is gone.
    InstanceRemoved,
}

impl Operation {
    /// The task name shown by the API (camelCase; DMS's observed names where known).
    pub fn task_name(&self) -> &'static str {
        match self {
            Operation::CreateInstance { .. } => "createInstance",
            Operation::DeleteInstance => "deleteInstance",
            Operation::Restart => "restartInstance",
            Operation::ModifyConfigs { .. } | Operation::AutoTopic { .. } => "kafkaConfigModify",
            Operation::Resize { .. } => "extendInstance",
            Operation::Reassign { .. } => "kafkaPartitionReassign",
            Operation::Upgrade { .. } | Operation::LegacyUpgrade { .. } => "upgradeInstance",
        }
    }

    /// What the operation changes, old and new, as the JSON object that `params` carries.
    pub fn params(&self) -> String {
        let v = match self {
            Operation::CreateInstance { name, engine_version, broker_num, storage_space } => json!({
                "name": name, "engine_version": engine_version,
                "broker_num": broker_num, "storage_space": storage_space,
            }),
            Operation::DeleteInstance | Operation::Restart => json!({}),
            Operation::ModifyConfigs { changes } => json!({ "kafka_configs": changes }),
            Operation::AutoTopic { old, new } => {
                json!({ "old_auto_status": old, "new_auto_status": new })
            }
            Operation::Resize {
                kind,
                old_storage,
                new_storage,
                old_brokers,
                new_brokers,
                old_product,
                new_product,
            } => json!({
                "oper_type": kind,
                "old_storage_space": old_storage, "new_storage_space": new_storage,
                "old_broker_num": old_brokers, "new_broker_num": new_brokers,
                "old_product_id": old_product, "new_product_id": new_product,
            }),
            Operation::Reassign { reassignments, throttle } => reassign_body(reassignments, *throttle),
            Operation::Upgrade { engine_version, old_kernel, new_kernel, .. } => json!({
                "engine_version": engine_version, "old_version": old_kernel, "new_version": new_kernel,
            }),
            Operation::LegacyUpgrade { old_version, new_version } => {
                json!({ "old_version": old_version, "new_version": new_version })
            }
        };
        v.to_string()
    }

    /// The steps and their realistic durations in milliseconds, before the time scale.
    pub fn plan(&self) -> Vec<(StepKind, u64)> {
        use StepKind::*;
        match self {
            Operation::CreateInstance { broker_num, .. } => vec![
                (CreateResources, 60_000),
                (InstallBrokers, 30_000 * u64::from(*broker_num)),
                (StartCluster, 30_000),
            ],
            Operation::DeleteInstance => {
                vec![(StopCluster, 10_000), (ReleaseResources, 20_000)]
            }
            Operation::Restart => vec![(PreCheck, 2_000), (RollingRestart, 60_000), (HealthCheck, 5_000)],
            Operation::ModifyConfigs { changes } => {
                let needs_restart = changes.iter().any(|c| config_def(&c.name).is_some_and(|d| !d.dynamic));
                let mut steps = vec![(PreCheck, 1_000), (ApplyConfig, 5_000)];
                if needs_restart {
                    steps.push((RollingRestart, 60_000));
                }
                steps
            }
            Operation::AutoTopic { .. } => vec![(PreCheck, 1_000), (ApplyConfig, 5_000)],
            Operation::Resize { kind: ResizeKind::Storage, .. } => {
                vec![(PreCheck, 5_000), (DiskExpansion, 120_000), (RollingScaling, 60_000)]
            }
            Operation::Resize { kind: ResizeKind::Horizontal, new_brokers, old_brokers, .. } => vec![
                (PreCheck, 5_000),
                (CreateBrokers, 60_000 * u64::from(new_brokers.saturating_sub(*old_brokers).max(1))),
                (RollingScaling, 60_000),
            ],
            Operation::Resize { kind: ResizeKind::Vertical, old_brokers, .. } => {
                vec![(PreCheck, 5_000), (RollingScaling, 90_000 * u64::from(*old_brokers))]
            }
            Operation::Reassign { reassignments, .. } => {
                let topics = reassignments.as_array().map_or(1, Vec::len) as u64;
                vec![(PreCheck, 2_000), (ReassignPartitions, 30_000 * topics), (Verify, 5_000)]
            }
            Operation::Upgrade { brokers, .. } => {
                let mut steps = vec![(PreCheck, 5_000)];
                steps.extend((0..*brokers).map(|id| (UpgradeBroker(id), BROKER_UPGRADE_MS)));
                steps.push((PostCheck, 10_000));
                steps
            }
            Operation::LegacyUpgrade { .. } => {
                vec![(PreCheck, 5_000), (UpgradeBrokers, 300_000), (PostCheck, 10_000)]
            }
        }
    }

    /// The step list of a new task, every step `WAITING`, durations multiplied by `time_scale`.
    pub fn steps(&self, time_scale: f64) -> Vec<Step> {
        self.plan()
            .into_iter()
            .map(|(kind, ms)| Step {
                name: kind.name().into_owned(),
                status: StepStatus::Waiting,
                start_time: None,
                end_time: None,
                duration_ms: (ms as f64 * time_scale).round() as u64,
                failure: None,
            })
            .collect()
    }

    /// The instance's status while the operation runs, if the operation shows one.
    pub fn running_status(&self) -> Option<InstanceStatus> {
        match self {
            Operation::CreateInstance { .. } => Some(InstanceStatus::Creating),
            Operation::DeleteInstance => Some(InstanceStatus::Deleting),
            Operation::Restart => Some(InstanceStatus::Restarting),
            Operation::Resize { .. } | Operation::Reassign { .. } => Some(InstanceStatus::Extending),
            Operation::Upgrade { .. } | Operation::LegacyUpgrade { .. } => Some(InstanceStatus::Upgrading),
            Operation::ModifyConfigs { .. } | Operation::AutoTopic { .. } => None,
        }
    }

    /// Runs the effect of finishing step number `step` of the operation's [`plan`](Self::plan)
    /// on the instance. Changes are applied only by the last step, so a failure at any earlier
    /// step leaves the instance as it was.
    pub fn finish_step(&self, step: usize, is_last: bool, inst: &mut Instance, ctx: StepContext) -> StepEffect {
        let kind = self.plan().get(step).map(|s| s.0);
        match (self, kind) {
            (Operation::CreateInstance { storage_space, .. }, Some(StepKind::CreateResources))
                if *storage_space > ctx.storage_pool_gb =>
            {
                return StepEffect::Failed(StepFailure::new(
                    format!(
                        "not enough storage: the resource pool cannot allocate {storage_space} GB (at most {} GB)",
                        ctx.storage_pool_gb
                    ),
                    format!(
                        "create the instance again with at most {} GB of storage (the server's --storage-pool-gb)",
                        ctx.storage_pool_gb
                    ),
                ));
            }
            (Operation::Resize { new_storage, .. }, Some(StepKind::DiskExpansion))
                if *new_storage > ctx.storage_pool_gb =>
            {
                return StepEffect::Failed(StepFailure::new(
                    format!(
                        "not enough storage: the resource pool cannot allocate {new_storage} GB (at most {} GB)",
                        ctx.storage_pool_gb
                    ),
                    format!(
                        "resize again to at most {} GB (the server's --storage-pool-gb); the instance is unchanged",
                        ctx.storage_pool_gb
                    ),
                ));
            }
            _ => {}
        }
        if !is_last {
            return StepEffect::Done;
        }
        match self {
            Operation::CreateInstance { .. } => {}
            Operation::DeleteInstance => return StepEffect::InstanceRemoved,
            Operation::Restart | Operation::Reassign { .. } => {}
            Operation::ModifyConfigs { changes } => {
                for c in changes {
                    let is_default = config_def(&c.name).is_some_and(|d| d.default == c.new_value);
                    if is_default {
                        inst.configs.remove(&c.name);
                    } else {
                        inst.configs.insert(c.name.clone(), c.new_value.clone());
                    }
                }
            }
            Operation::AutoTopic { new, .. } => inst.enable_auto_topic = *new,
            Operation::Resize { new_storage, new_brokers, new_product, .. } => {
                inst.storage_space = *new_storage;
                inst.broker_num = *new_brokers;
                inst.product_id = new_product.clone();
            }
            Operation::Upgrade { new_kernel, .. } => inst.kernel_version = Some(new_kernel.clone()),
            // The engine version never changes; an old record ends as a no-op.
            Operation::LegacyUpgrade { .. } => {}
        }
        inst.status = InstanceStatus::Running;
        StepEffect::Done
    }

    /// The instance's status after the task failed: a failed create is `CREATEFAILED`; any other
    /// operation restores the status the instance had before it began (`before`), so that a
    /// failure never turns an instance that was not running into a `RUNNING` one.
    pub fn failed_status(&self, before: Option<InstanceStatus>) -> InstanceStatus {
        match (self, before) {
            (Operation::CreateInstance { .. }, _) => InstanceStatus::CreateFailed,
            (_, Some(before)) => before,
            // A task begun before the previous status was recorded: RUNNING is what admitted it.
            (_, None) => InstanceStatus::Running,
        }
    }

    /// Whether the operation, recorded when it was submitted, still applies to the instance as it
    /// is now: the checks an immediate submission makes (status, versions, sizes), made again
    /// when a scheduled task fires. `Err` says why not. The one-operation lock is checked by the
    /// caller: a busy instance makes a scheduled task wait, not fail.
    pub fn still_applies(&self, inst: &Instance) -> Result<(), String> {
        if !self.allowed_in(inst.status) {
            return Err(format!("the instance is {}, which does not allow {}", inst.status, self.task_name()));
        }
        match self {
            Operation::Upgrade { engine_version, old_kernel, new_kernel, brokers } => {
                // Kernels only move forward (to a build added later), so an instance still on
                // the build the upgrade was computed from is still behind its target.
                if inst.engine_version != *engine_version || inst.kernel_version() != old_kernel {
                    return Err(format!(
                        "the instance runs kernel {} of {}, not {old_kernel}: the upgrade to {new_kernel} no longer applies",
                        inst.kernel_version(),
                        inst.engine_version
                    ));
                }
                if inst.broker_num != *brokers {
                    return Err(format!(
                        "the instance has {} brokers, not {brokers}: the rolling upgrade planned for them no longer applies",
                        inst.broker_num
                    ));
                }
            }
            Operation::LegacyUpgrade { new_version, .. } => {
                return Err(format!(
                    "an upgrade to engine version {new_version} is no longer run: upgrades change the kernel only"
                ));
            }
            Operation::Resize {
                kind,
                old_storage,
                new_storage,
                old_brokers,
                new_brokers,
                old_product,
                new_product,
            } => {
                let unchanged = inst.storage_space == *old_storage
                    && inst.broker_num == *old_brokers
                    && inst.product_id == *old_product;
                let grows = match kind {
                    ResizeKind::Storage => *new_storage > inst.storage_space,
                    ResizeKind::Horizontal => *new_brokers > inst.broker_num && *new_storage >= inst.storage_space,
                    ResizeKind::Vertical => *new_product != inst.product_id,
                };
                if !unchanged || !grows || *new_storage > MAX_STORAGE_GB || *new_brokers > MAX_BROKERS {
                    return Err(format!(
                        "the instance changed since the resize was scheduled ({} GB, {} brokers, {}): it no longer applies",
                        inst.storage_space, inst.broker_num, inst.product_id
                    ));
                }
            }
            Operation::Reassign { reassignments, throttle } => {
                // The record holds only what `reassign` kept, in the shape it reads.
                let recorded = serde_json::from_value::<Vec<ReassignmentRequest>>(reassignments.clone())
                    .map_err(|e| format!("the recorded reassignment cannot be read: {e}"))?;
                reassign(Some(&recorded), *throttle, inst)
                    .map_err(|e| format!("the reassignment no longer applies to the instance: {e}"))?;
            }
            Operation::CreateInstance { .. }
            | Operation::DeleteInstance
            | Operation::Restart
            | Operation::ModifyConfigs { .. }
            | Operation::AutoTopic { .. } => {}
        }
        Ok(())
    }

    /// Whether the operation may start on an instance in `status`.
    pub fn allowed_in(&self, instance_status: InstanceStatus) -> bool {
        match self {
            Operation::CreateInstance { .. } => true,
            Operation::DeleteInstance => instance_status != InstanceStatus::Deleting,
            _ => instance_status == InstanceStatus::Running,
        }
    }
}

impl From<&NewInstance> for Operation {
    fn from(n: &NewInstance) -> Self {
        Operation::CreateInstance {
            name: n.name.clone(),
            engine_version: n.engine_version.clone(),
            broker_num: n.broker_num,
            storage_space: n.storage_space,
        }
    }
}

/// One config change of a ModifyInstanceConfigs request, as the wire read it (a number or a
/// boolean value is given as its JSON text).
#[derive(Debug, Clone, Default)]
pub struct ConfigRequest {
    pub name: Option<String>,
    pub value: Option<String>,
}

/// ModifyInstanceConfigs' changes against the instance's current values.
pub fn modify_configs(list: Option<&[ConfigRequest]>, inst: &Instance) -> Result<Operation, Invalid> {
    let list = list.ok_or(Invalid::Param("kafka_configs"))?;
    if list.is_empty() || list.len() > CONFIG_LIMIT {
        return Err(Invalid::Param("kafka_configs"));
    }
    let mut changes: Vec<ConfigChange> = Vec::with_capacity(list.len());
    for item in list {
        let name = item.name.as_deref().ok_or(Invalid::Param("name"))?;
        let def = config_def(name).ok_or(Invalid::Param("name"))?;
        let value = item.value.clone().ok_or(Invalid::Param("value"))?;
        if !def.accepts(&value) || changes.iter().any(|c| c.name == name) {
            return Err(Invalid::Param("value"));
        }
        let old_value = inst.config_value(name).unwrap_or_default();
        changes.push(ConfigChange { name: name.to_owned(), old_value, new_value: value });
    }
    Ok(Operation::ModifyConfigs { changes })
}

const CONFIG_LIMIT: usize = 50;

/// Counts of dynamic and static configs in a change, as ModifyInstanceConfigs reports them.
pub fn config_counts(op: &Operation) -> (usize, usize) {
    match op {
        Operation::ModifyConfigs { changes } => {
            let dynamic = changes.iter().filter(|c| config_def(&c.name).is_some_and(|d| d.dynamic)).count();
            (dynamic, changes.len() - dynamic)
        }
        _ => (0, 0),
    }
}

/// UpdateInstanceAutoCreateTopic: `enable_auto_topic`, required.
pub fn auto_topic(enable: Option<bool>, inst: &Instance) -> Result<Operation, Invalid> {
    let new = enable.ok_or(Invalid::Param("enable_auto_topic"))?;
    Ok(Operation::AutoTopic { old: inst.enable_auto_topic, new })
}

/// A ResizeEngineInstance request as the wire read it.
#[derive(Debug, Clone, Default)]
pub struct ResizeRequest {
    pub oper_type: Option<ResizeKind>,
    pub new_storage_space: Option<u32>,
    pub new_broker_num: Option<u32>,
    pub new_product_id: Option<String>,
}

/// ResizeEngineInstanceReq: `oper_type` storage | horizontal | vertical.
pub fn resize(req: &ResizeRequest, inst: &Instance) -> Result<Operation, Invalid> {
    let kind = req.oper_type.ok_or(Invalid::Param("oper_type"))?;
    let mut new_storage = inst.storage_space;
    let mut new_brokers = inst.broker_num;
    let mut new_product = inst.product_id.clone();
    match kind {
        ResizeKind::Storage => {
            let s = req.new_storage_space.ok_or(Invalid::Param("new_storage_space"))?;
            // Disks only grow, up to the maximum.
            if s <= inst.storage_space || s > MAX_STORAGE_GB {
                return Err(Invalid::Param("new_storage_space"));
            }
            new_storage = s;
        }
        ResizeKind::Horizontal => {
            let b = req.new_broker_num.ok_or(Invalid::Param("new_broker_num"))?;
            if b <= inst.broker_num || b > MAX_BROKERS {
                return Err(Invalid::Param("new_broker_num"));
            }
            // Storage is per cluster and grows with the brokers unless given; the computed size
            // is checked against the maximum (in u64, so that it cannot wrap).
            new_storage = match req.new_storage_space {
                Some(s) if s >= inst.storage_space && s <= MAX_STORAGE_GB => s,
                Some(_) => return Err(Invalid::Param("new_storage_space")),
                None => (u64::from(inst.storage_space) / u64::from(inst.broker_num.max(1)))
                    .checked_mul(u64::from(b))
                    .and_then(|s| u32::try_from(s).ok())
                    .filter(|s| *s <= MAX_STORAGE_GB)
                    .ok_or(Invalid::Param("new_broker_num"))?,
            };
            new_brokers = b;
        }
        ResizeKind::Vertical => {
            let p = req.new_product_id.as_deref().ok_or(Invalid::Param("new_product_id"))?;
            if p.is_empty() || p.len() > 64 || p == inst.product_id {
                return Err(Invalid::Param("new_product_id"));
            }
            new_product = p.to_owned();
        }
    }
    Ok(Operation::Resize {
        kind,
        old_storage: inst.storage_space,
        new_storage,
        old_brokers: inst.broker_num,
        new_brokers,
        old_product: inst.product_id.clone(),
        new_product,
    })
}

/// When a scheduled operation is due (`is_schedule` + `execute_at` in epoch ms), if it is one.
pub fn schedule(is_schedule: Option<bool>, execute_at: Option<i64>, now: i64) -> Result<Option<i64>, Invalid> {
    if is_schedule != Some(true) {
        return Ok(None);
    }
    let at = execute_at.ok_or(Invalid::Timestamp)?;
    // Due at least a second from now, and within ten years.
    if at <= now + 1_000 || at > now + 10 * 366 * 86_400_000 {
        return Err(Invalid::Timestamp);
    }
    Ok(Some(at))
}

/// One entry of a reassignment request, as the wire read it (and as the operation records it).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReassignmentRequest {
    pub topic: Option<String>,
    pub brokers: Option<Vec<u64>>,
    pub replication_factor: Option<u64>,
    pub assignment: Option<Vec<AssignmentRequest>>,
}

/// One partition's brokers in a reassignment entry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AssignmentRequest {
    pub partition: Option<u64>,
    pub partition_brokers: Option<Vec<u64>>,
}

/// PartitionReassignRequest: every topic named as Kafka allows ([`TopicName`]), every broker
/// named existing (ids `0..broker_num`). Only the fields it interprets are recorded (topic,
/// brokers, replication_factor, and each assignment's partition and brokers): whatever else an
/// entry carries is dropped, not stored.
pub fn reassign(
    list: Option<&[ReassignmentRequest]>,
    throttle: Option<i64>,
    inst: &Instance,
) -> Result<Operation, Invalid> {
    let list = list.ok_or(Invalid::Param("reassignments"))?;
    if list.is_empty() || list.len() > 500 {
        return Err(Invalid::Param("reassignments"));
    }
    // A bound instance's brokers are its cluster's (any node id Kafka allows): the `kafka`
    // executor checks them against the cluster at `pre_check`, before anything changes.
    let broker_ok = |b: &u64| if inst.cluster_bound { *b <= i32::MAX as u64 } else { *b < u64::from(inst.broker_num) };
    let brokers_ok = |ids: &[u64]| !ids.is_empty() && ids.len() <= MAX_BROKERS as usize && ids.iter().all(broker_ok);
    let mut kept = Vec::with_capacity(list.len());
    for r in list {
        let topic: TopicName = r.topic.as_deref().and_then(|t| t.parse().ok()).ok_or(Invalid::Param("topic"))?;
        let brokers = r.brokers.as_deref();
        if brokers.is_none() && r.assignment.is_none() {
            return Err(Invalid::Param("brokers"));
        }
        let mut entry = serde_json::Map::new();
        entry.insert("topic".into(), topic.as_str().into());
        if let Some(brokers) = brokers {
            if !brokers_ok(brokers) {
                return Err(Invalid::Param("brokers"));
            }
            entry.insert("brokers".into(), json!(brokers));
        }
        if let Some(rf) = r.replication_factor {
            let all = if inst.cluster_bound { MAX_BROKERS as usize } else { inst.broker_num as usize };
            let max = brokers.map_or(all, <[u64]>::len) as u64;
            if !(rf >= 1 && rf <= max) {
                return Err(Invalid::Param("replication_factor"));
            }
            entry.insert("replication_factor".into(), rf.into());
        }
        if let Some(assignment) = &r.assignment {
            let mut parts = Vec::with_capacity(assignment.len());
            for a in assignment {
                let ids =
                    a.partition_brokers.as_deref().filter(|ids| brokers_ok(ids)).ok_or(Invalid::Param("assignment"))?;
                parts.push(json!({ "partition": a.partition, "partition_brokers": ids }));
            }
            entry.insert("assignment".into(), Value::Array(parts));
        }
        kept.push(Value::Object(entry));
    }
    if throttle.is_some_and(|t| t != -1 && t <= 0) {
        return Err(Invalid::Param("throttle"));
    }
    Ok(Operation::Reassign { reassignments: Value::Array(kept), throttle })
}

/// A rolling kernel upgrade of the instance to `latest`, the newest build of its engine
/// version. An instance already on it has nothing to upgrade.
pub fn upgrade(inst: &Instance, latest: &str) -> Result<Operation, Invalid> {
    if latest.is_empty() || inst.kernel_version() == latest {
        return Err(Invalid::AlreadyLatest);
    }
    Ok(Operation::Upgrade {
        engine_version: inst.engine_version.clone(),
        old_kernel: inst.kernel_version().to_owned(),
        new_kernel: latest.to_owned(),
        brokers: inst.broker_num,
    })
}

/// A reassignment as `params` records it and [`reassign`] reads it: `throttle` only when given.
fn reassign_body(reassignments: &Value, throttle: Option<i64>) -> Value {
    let mut body = json!({ "reassignments": reassignments });
    if let Some(t) = throttle {
        body["throttle"] = json!(t);
    }
    body
}
