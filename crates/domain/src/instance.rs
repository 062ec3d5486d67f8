//! Virtual Kafka instances: what an instance records, the broker configs it accepts,
//! and how the create request is validated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Invalid;
use super::ids::{InstanceId, ProjectId, TaskId};

/// Engine versions this control plane can run, oldest first; an upgrade moves to the next one.
pub const ENGINE_VERSIONS: &[&str] = &["2.7", "3.x"];

/// An instance as stored. `extra` holds the descriptive DMS create fields this service keeps
/// (see [`KEPT_FIELDS`]); nothing else a client sends is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    pub project_id: ProjectId,
    pub name: String,
    pub engine_version: String,
    pub status: InstanceStatus,
    pub broker_num: u32,
    pub storage_space: u32,
    pub product_id: String,
    pub enable_auto_topic: bool,
    /// Broker configs set to something other than their default.
    pub configs: BTreeMap<String, String>,
    pub user_id: String,
    pub user_name: String,
    pub created_at: i64,
    /// Read through the whitelist: a row stored before it existed loses its other fields
    /// (passwords included) the next time the instance is written.
    #[serde(default, deserialize_with = "kept_only")]
    pub extra: Map<String, Value>,
    /// The task that holds this instance's one-operation-at-a-time lock, if any.
    #[serde(skip)]
    pub busy_task: Option<TaskId>,
    /// The status the instance had when its running operation began: what a failure restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_before: Option<InstanceStatus>,
    /// The kernel build the instance runs (see [`super::kernel`]). `None` in a row stored
    /// before kernels were recorded: such an instance runs its engine version's first build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
    /// Bound to a real Kafka cluster (connected mode): its operations are done on the cluster
    /// by the `kafka` executor, so their steps end when it says so, never at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_bound: bool,
}

/// The largest storage (GB) an instance may have, at creation or after a resize: 10 PB, far
/// above any DMS flavour (50 brokers of 30,000 GB), and small enough that every size sum and
/// product fits a `u32` with room to spare.
pub const MAX_STORAGE_GB: u32 = 10_000_000;

/// The most brokers an instance may have.
pub const MAX_BROKERS: u32 = 50;

/// An instance's state, serialised (on the wire and in the stored document) as DMS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum InstanceStatus {
    #[serde(rename = "CREATING")]
    Creating,
    #[serde(rename = "CREATEFAILED")]
    CreateFailed,
    #[serde(rename = "RUNNING")]
    Running,
    #[serde(rename = "RESTARTING")]
    Restarting,
    #[serde(rename = "EXTENDING")]
    Extending,
    #[serde(rename = "UPGRADING")]
    Upgrading,
    #[serde(rename = "DELETING")]
    Deleting,
}

impl InstanceStatus {
    /// The DMS name, as the wire and the stored document spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Creating => "CREATING",
            InstanceStatus::CreateFailed => "CREATEFAILED",
            InstanceStatus::Running => "RUNNING",
            InstanceStatus::Restarting => "RESTARTING",
            InstanceStatus::Extending => "EXTENDING",
            InstanceStatus::Upgrading => "UPGRADING",
            InstanceStatus::Deleting => "DELETING",
        }
    }
}

impl std::fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Instance {
    /// A new instance as a create request describes it, `CREATING` until its task ends.
    pub fn create(project: ProjectId, new: &NewInstance, user_id: &str, user_name: &str, now: i64) -> Self {
        Instance {
            id: InstanceId::generate(),
            project_id: project,
            name: new.name.clone(),
            engine_version: new.engine_version.clone(),
            status: InstanceStatus::Creating,
            broker_num: new.broker_num,
            storage_space: new.storage_space,
            product_id: new.product_id.clone(),
            enable_auto_topic: new.enable_auto_topic,
            configs: BTreeMap::new(),
            user_id: user_id.to_owned(),
            user_name: user_name.to_owned(),
            created_at: now,
            extra: new.extra.clone(),
            busy_task: None,
            status_before: None,
            kernel_version: None,
            cluster_bound: false,
        }
    }

    /// The kernel build the instance runs: the one recorded, else (a row stored before kernels
    /// were recorded) its engine version's first build.
    pub fn kernel_version(&self) -> &str {
        match &self.kernel_version {
            Some(k) => k,
            None => super::kernel::initial(&self.engine_version).unwrap_or(""),
        }
    }

    /// The instance's brokers with their addresses ([`super::brokers`]); none until its create
    /// task has made them (`CREATING`, `CREATEFAILED`).
    pub fn brokers(&self) -> Vec<super::brokers::Broker> {
        match self.status {
            InstanceStatus::Creating | InstanceStatus::CreateFailed => Vec::new(),
            _ => super::brokers::brokers(&self.id, self.broker_num),
        }
    }

    pub fn config_value(&self, name: &str) -> Option<String> {
        let def = config_def(name)?;
        Some(self.configs.get(name).cloned().unwrap_or_else(|| def.default.to_owned()))
    }
}

#[derive(Debug, Clone, Copy)]
pub enum ConfigKind {
    Int { min: i64, max: i64 },
    Bool,
    Enum(&'static [&'static str]),
}

impl ConfigKind {
    /// The name ShowInstanceConfigs gives the type.
    pub fn type_name(self) -> &'static str {
        match self {
            ConfigKind::Int { .. } => "integer",
            ConfigKind::Bool => "boolean",
            ConfigKind::Enum(_) => "string",
        }
    }
}

/// A broker config this service accepts in ModifyInstanceConfigs.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    /// Dynamic configs apply without a restart; static ones need a rolling restart.
    pub dynamic: bool,
    pub kind: ConfigKind,
}

impl ConfigDef {
    /// The values it takes, as ShowInstanceConfigs words them (`1~168`, `true or false`, …).
    pub fn valid_values(&self) -> String {
        match self.kind {
            ConfigKind::Int { min, max } => format!("{min}~{max}"),
            ConfigKind::Bool => "true or false".to_owned(),
            ConfigKind::Enum(v) => v.join(" or "),
        }
    }

    pub fn accepts(&self, value: &str) -> bool {
        match self.kind {
            ConfigKind::Int { min, max } => value.parse::<i64>().is_ok_and(|v| (min..=max).contains(&v)),
            ConfigKind::Bool => value == "true" || value == "false",
            ConfigKind::Enum(v) => v.contains(&value),
        }
    }
}

const fn int(name: &'static str, default: &'static str, dynamic: bool, min: i64, max: i64) -> ConfigDef {
    ConfigDef { name, default, dynamic, kind: ConfigKind::Int { min, max } }
}

const fn boolean(name: &'static str, default: &'static str, dynamic: bool) -> ConfigDef {
    ConfigDef { name, default, dynamic, kind: ConfigKind::Bool }
}

/// The modifiable broker configs of a DMS Kafka instance (a subset of the console's list).
pub const CONFIGS: &[ConfigDef] = &[
    boolean("allow.everyone.if.no.acl.found", "true", true),
    boolean("auto.create.groups.enable", "true", false),
    boolean("auto.leader.rebalance.enable", "true", false),
    int("connections.max.idle.ms", "600000", false, 5000, 600000),
    int("default.replication.factor", "3", false, 1, 3),
    int("group.max.session.timeout.ms", "1800000", false, 6000, 1800000),
    int("group.min.session.timeout.ms", "6000", false, 6000, 300000),
    int("log.retention.hours", "72", true, 1, 168),
    ConfigDef {
        name: "log.message.timestamp.type",
        default: "CreateTime",
        dynamic: true,
        kind: ConfigKind::Enum(&["CreateTime", "LogAppendTime"]),
    },
    int("max.connections.per.ip", "1000", true, 100, 20000),
    int("message.max.bytes", "10485760", true, 0, 10485760),
    int("min.insync.replicas", "1", true, 1, 3),
    int("num.partitions", "3", false, 1, 200),
    int("offsets.retention.minutes", "20160", false, 1440, 30240),
    boolean("unclean.leader.election.enable", "false", true),
];

pub fn config_def(name: &str) -> Option<&'static ConfigDef> {
    CONFIGS.iter().find(|c| c.name == name)
}

/// A validated CreateInstanceByEngine body.
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub name: String,
    pub engine_version: String,
    pub broker_num: u32,
    pub storage_space: u32,
    pub product_id: String,
    pub enable_auto_topic: bool,
    pub extra: Map<String, Value>,
}

/// The shape a kept descriptive field must have.
#[derive(Debug, Clone, Copy)]
enum Kept {
    /// A string of at most this many bytes.
    Str(usize),
    Bool,
    /// A list of at most `.0` strings of at most `.1` bytes each.
    StrList(usize, usize),
    /// DMS resource tags: `[{"key", "value"}]` (see [`valid_tags`]).
    Tags,
}

/// The DMS create fields kafka-tasks keeps besides the ones it interprets, and returns in
/// ShowInstance: descriptive, bounded, and never a secret. Everything else is dropped.
pub const KEPT_FIELDS: &[&str] = &[
    "description",
    "specification",
    "storage_spec_code",
    "vpc_id",
    "subnet_id",
    "security_group_id",
    "available_zones",
    "enterprise_project_id",
    "ssl_enable",
    "retention_policy",
    "disk_encrypted_enable",
    "maintain_begin",
    "maintain_end",
    "tags",
];

fn kept_shape(key: &str) -> Option<Kept> {
    Some(match key {
        "description" => Kept::Str(1024),
        "specification" | "storage_spec_code" | "vpc_id" | "subnet_id" | "security_group_id" => Kept::Str(64),
        "enterprise_project_id" | "retention_policy" => Kept::Str(64),
        "maintain_begin" | "maintain_end" => Kept::Str(8),
        "available_zones" => Kept::StrList(8, 64),
        "ssl_enable" | "disk_encrypted_enable" => Kept::Bool,
        "tags" => Kept::Tags,
        _ => return None,
    })
}

/// Whether a stored descriptive field may be kept and shown: whitelisted, and never a password.
fn is_kept_field(key: &str) -> bool {
    kept_shape(key).is_some() && !is_secret_name(key)
}

fn kept_only<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    let all = Map::<String, Value>::deserialize(d)?;
    Ok(all.into_iter().filter(|(k, _)| is_kept_field(k)).collect())
}

/// `password`, `kafka_manager_password`, `sasl_password`…: any name that holds "password".
pub fn is_secret_name(key: &str) -> bool {
    key.to_ascii_lowercase().contains("password")
}

fn kept_value(key: &'static str, shape: Kept, v: Value) -> Result<Option<Value>, Invalid> {
    let ok = match (&v, shape) {
        (Value::Null, _) => return Ok(None),
        (Value::String(s), Kept::Str(max)) => s.len() <= max,
        (Value::Bool(_), Kept::Bool) => true,
        (Value::Array(items), Kept::StrList(n, max)) => {
            items.len() <= n && items.iter().all(|i| i.as_str().is_some_and(|s| s.len() <= max))
        }
        (Value::Array(items), Kept::Tags) => return valid_tags(items).map(|tags| Some(Value::Array(tags))),
        _ => false,
    };
    if ok { Ok(Some(v)) } else { Err(Invalid::Param(key)) }
}

/// The most tags an instance may carry (DMS's limit).
pub const MAX_TAGS: usize = 20;

/// A tag key or value: DMS allows letters, digits, spaces and `_ . : = + - @`; the key is 1 to
/// 128 characters and may not start or end with a space, the value at most 255 characters.
fn valid_tag_text(s: &str, key: bool) -> bool {
    let n = s.chars().count();
    let len_ok = if key { (1..=128).contains(&n) && s.trim() == s } else { n <= 255 };
    len_ok && s.chars().all(|c| c.is_alphanumeric() || " _.:=+-@".contains(c))
}

/// A create body's `tags`, checked and rebuilt as `[{"key", "value"}]` (nothing else of a tag is
/// kept): at most [`MAX_TAGS`], keys distinct. Anything else is `Invalid::Param("tags")`.
fn valid_tags(items: &[Value]) -> Result<Vec<Value>, Invalid> {
    const BAD: Invalid = Invalid::Param("tags");
    if items.len() > MAX_TAGS {
        return Err(BAD);
    }
    let mut keys = std::collections::BTreeSet::new();
    let mut tags = Vec::with_capacity(items.len());
    for item in items {
        let key = item.get("key").and_then(Value::as_str).ok_or(BAD)?;
        let value = match item.get("value") {
            None | Some(Value::Null) => "",
            Some(v) => v.as_str().ok_or(BAD)?,
        };
        if !valid_tag_text(key, true) || !valid_tag_text(value, false) || !keys.insert(key) {
            return Err(BAD);
        }
        tags.push(serde_json::json!({ "key": key, "value": value }));
    }
    Ok(tags)
}

/// DMS's instance name rule: 4 to 64 characters, a letter first, then letters, digits, `_`, `-`.
fn valid_name(name: &str) -> bool {
    (4..=64).contains(&name.chars().count())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The values `retention_policy` takes (DMS's capacity threshold policy).
pub const RETENTION_POLICIES: &[&str] = &["produce_reject", "time_base"];

/// The start times DMS allows for a maintenance window; each window lasts four hours.
pub const MAINTAIN_BEGINS: &[&str] = &["22:00:00", "02:00:00", "06:00:00", "10:00:00", "14:00:00", "18:00:00"];

/// The window an instance has until one is set (DMS's default start, and four hours).
pub const DEFAULT_WINDOW: (&str, &str) = ("02:00:00", "06:00:00");

/// A kept field as given (`None` when absent or null), checked for its shape and rule: what
/// create and UpdateInstance both accept.
fn checked_kept(key: &'static str, v: Option<Value>) -> Result<Option<Value>, Invalid> {
    let (Some(v), Some(shape)) = (v, kept_shape(key)) else {
        return Ok(None);
    };
    let v = kept_value(key, shape, v)?;
    if key == "retention_policy" && v.as_ref().and_then(Value::as_str).is_some_and(|p| !RETENTION_POLICIES.contains(&p))
    {
        return Err(Invalid::Param(key));
    }
    Ok(v)
}

/// A maintenance window is given whole or not at all: a start DMS allows and the end four
/// hours later (`HH:mm:ss`).
fn check_window(begin: Option<&str>, end: Option<&str>) -> Result<(), Invalid> {
    match (begin, end) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(Invalid::Param("maintain_begin")),
        (Some(_), None) => Err(Invalid::Param("maintain_end")),
        (Some(b), Some(e)) => {
            let hour: u32 = b
                .get(..2)
                .and_then(|h| h.parse().ok())
                .filter(|_| MAINTAIN_BEGINS.contains(&b))
                .ok_or(Invalid::Param("maintain_begin"))?;
            let want = format!("{:02}:00:00", (hour + 4) % 24);
            if e == want { Ok(()) } else { Err(Invalid::Param("maintain_end")) }
        }
    }
}

/// A validated UpdateInstance body: the fields it changes, each checked as create checks it.
/// `description: ""` clears the description.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    /// `(maintain_begin, maintain_end)`, given together.
    pub maintenance: Option<(String, String)>,
    pub security_group_id: Option<String>,
    pub retention_policy: Option<String>,
    pub enterprise_project_id: Option<String>,
}

/// An UpdateInstance request as the wire read it, not yet checked.
#[derive(Debug, Clone, Default)]
pub struct UpdateRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub maintain_begin: Option<String>,
    pub maintain_end: Option<String>,
    pub security_group_id: Option<String>,
    pub retention_policy: Option<String>,
    pub enterprise_project_id: Option<String>,
}

impl InstanceUpdate {
    /// Checks an UpdateInstance request, each field as create checks it; a request that
    /// changes nothing is refused (`Invalid::Body`).
    pub fn validate(req: UpdateRequest) -> Result<Self, Invalid> {
        let name = req.name;
        if name.as_deref().is_some_and(|n| !valid_name(n)) {
            return Err(Invalid::Param("name"));
        }
        let text = |key: &'static str, v: Option<String>| -> Result<Option<String>, Invalid> {
            Ok(checked_kept(key, v.map(Value::String))?.and_then(|v| v.as_str().map(str::to_owned)))
        };
        let description = text("description", req.description)?;
        let begin = text("maintain_begin", req.maintain_begin)?;
        let end = text("maintain_end", req.maintain_end)?;
        check_window(begin.as_deref(), end.as_deref())?;
        let maintenance = begin.zip(end);
        let id = |key: &'static str, v: Option<String>| -> Result<Option<String>, Invalid> {
            match text(key, v)? {
                Some(v) if v.is_empty() => Err(Invalid::Param(key)),
                v => Ok(v),
            }
        };
        let security_group_id = id("security_group_id", req.security_group_id)?;
        let enterprise_project_id = id("enterprise_project_id", req.enterprise_project_id)?;
        let retention_policy = text("retention_policy", req.retention_policy)?;
        let update = InstanceUpdate {
            name,
            description,
            maintenance,
            security_group_id,
            retention_policy,
            enterprise_project_id,
        };
        if update == InstanceUpdate::default() {
            return Err(Invalid::Body);
        }
        Ok(update)
    }

    /// The rule of what may change, when. Descriptive fields (name, description, maintenance
    /// window, enterprise project) change in any state but `DELETING`. The security group and
    /// the retention policy reconfigure the brokers, so changing them needs a `RUNNING`
    /// instance with no operation running; giving their current value is no change (Terraform
    /// sends every field on each update). Refusals change nothing.
    pub fn apply(&self, inst: &mut Instance) -> Result<(), Invalid> {
        if inst.status == InstanceStatus::Deleting {
            return Err(Invalid::InstanceState);
        }
        let current = |inst: &Instance, key: &str| inst.extra.get(key).and_then(Value::as_str).map(str::to_owned);
        let broker_change =
            [("security_group_id", &self.security_group_id), ("retention_policy", &self.retention_policy)]
                .iter()
                .any(|(key, new)| new.is_some() && **new != current(inst, key));
        if broker_change && (inst.status != InstanceStatus::Running || inst.busy_task.is_some()) {
            return Err(Invalid::InstanceState);
        }
        if let Some(name) = &self.name {
            inst.name = name.clone();
        }
        let mut set = |key: &str, v: &Option<String>| match v.as_deref() {
            None => {}
            Some("") => {
                inst.extra.remove(key);
            }
            Some(v) => {
                inst.extra.insert(key.to_owned(), Value::from(v));
            }
        };
        set("description", &self.description);
        set("security_group_id", &self.security_group_id);
        set("retention_policy", &self.retention_policy);
        set("enterprise_project_id", &self.enterprise_project_id);
        if let Some((begin, end)) = &self.maintenance {
            set("maintain_begin", &Some(begin.clone()));
            set("maintain_end", &Some(end.clone()));
        }
        Ok(())
    }
}

/// A create request as the wire read it (each field of the type DMS takes), not yet checked.
/// `kept` holds the [`KEPT_FIELDS`] the request gave, by name.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub name: Option<String>,
    pub engine: Option<String>,
    pub engine_version: Option<String>,
    pub broker_num: Option<u32>,
    pub storage_space: Option<u32>,
    pub product_id: Option<String>,
    pub enable_auto_topic: Option<bool>,
    pub kept: Map<String, Value>,
}

impl NewInstance {
    /// Checks a create request. Besides the fields it interprets, only [`KEPT_FIELDS`] are
    /// kept (each checked for its shape and size); the wire reads nothing else of a body, so
    /// passwords (`password`, `kafka_manager_password`, any `*password*`) are never seen here.
    pub fn validate(mut req: CreateRequest) -> Result<Self, Invalid> {
        let name = req.name.ok_or(Invalid::Param("name"))?;
        if !valid_name(&name) {
            return Err(Invalid::Param("name"));
        }
        if let Some(engine) = req.engine
            && engine != "kafka"
        {
            return Err(Invalid::Param("engine"));
        }
        let engine_version = req.engine_version.ok_or(Invalid::Param("engine_version"))?;
        if !ENGINE_VERSIONS.contains(&engine_version.as_str()) {
            return Err(Invalid::Param("engine_version"));
        }
        let broker_num = req.broker_num.ok_or(Invalid::Param("broker_num"))?;
        if !(1..=MAX_BROKERS).contains(&broker_num) {
            return Err(Invalid::Param("broker_num"));
        }
        let storage_space = req.storage_space.ok_or(Invalid::Param("storage_space"))?;
        if !(100..=MAX_STORAGE_GB).contains(&storage_space) {
            return Err(Invalid::Param("storage_space"));
        }
        let product_id = req.product_id.ok_or(Invalid::Param("product_id"))?;
        if product_id.is_empty() || product_id.len() > 64 {
            return Err(Invalid::Param("product_id"));
        }
        let enable_auto_topic = req.enable_auto_topic.unwrap_or(false);
        let mut extra = Map::new();
        for key in KEPT_FIELDS {
            if let Some(v) = checked_kept(key, req.kept.remove(*key))? {
                extra.insert((*key).to_owned(), v);
            }
        }
        let window = |key: &str| extra.get(key).and_then(Value::as_str);
        check_window(window("maintain_begin"), window("maintain_end"))?;
        // Only the zones ListAvailableZones shows.
        if let Some(Value::Array(zones)) = extra.get("available_zones")
            && !zones.iter().all(|z| z.as_str().is_some_and(super::zones::is_zone))
        {
            return Err(Invalid::Param("available_zones"));
        }
        Ok(NewInstance { name, engine_version, broker_num, storage_space, product_id, enable_auto_topic, extra })
    }
}

/// A valid instance of three brokers, for the tests of every crate (and the bench's seed) that
/// need one: `NewInstance { name: …, ..NewInstance::example() }` changes what matters to them.
impl NewInstance {
    pub fn example() -> Self {
        NewInstance {
            name: "kafka-1".into(),
            engine_version: "2.7".into(),
            broker_num: 3,
            storage_space: 300,
            product_id: "p".into(),
            enable_auto_topic: false,
            extra: Default::default(),
        }
    }
}
