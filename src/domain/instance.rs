//! Virtual Kafka instances: what an instance records, the broker configs it accepts,
//! and how the create request is validated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Invalid;
use super::ids::{InstanceId, ProjectId, TaskId};
use super::time::iso_ms;

/// Engine versions this control plane can run, oldest first; an upgrade moves to the next one.
pub const ENGINE_VERSIONS: &[&str] = &["2.7", "3.x"];

/// An instance as stored. The DMS fields this service does not interpret are kept in `extra`
/// and returned as they were given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    pub project_id: ProjectId,
    pub name: String,
    pub engine_version: String,
    pub status: String,
    pub broker_num: u32,
    pub storage_space: u32,
    pub product_id: String,
    pub enable_auto_topic: bool,
    /// Broker configs set to something other than their default.
    pub configs: BTreeMap<String, String>,
    pub user_id: String,
    pub user_name: String,
    pub created_at: i64,
    pub extra: Map<String, Value>,
    /// The task that holds this instance's one-operation-at-a-time lock, if any.
    #[serde(skip)]
    pub busy_task: Option<TaskId>,
}

/// Instance states as DMS names them.
pub mod status {
    pub const CREATING: &str = "CREATING";
    pub const CREATE_FAILED: &str = "CREATEFAILED";
    pub const RUNNING: &str = "RUNNING";
    pub const RESTARTING: &str = "RESTARTING";
    pub const EXTENDING: &str = "EXTENDING";
    pub const UPGRADING: &str = "UPGRADING";
    pub const DELETING: &str = "DELETING";
}

impl Instance {
    /// A new instance as a create request describes it, `CREATING` until its task ends.
    pub fn create(project: ProjectId, new: &NewInstance, user_id: &str, user_name: &str, now: i64) -> Self {
        Instance {
            id: InstanceId::generate(),
            project_id: project,
            name: new.name.clone(),
            engine_version: new.engine_version.clone(),
            status: status::CREATING.to_owned(),
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
        }
    }

    /// The instance as ShowInstance / ListInstances return it.
    pub fn to_json(&self) -> Value {
        let mut m = self.extra.clone();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_owned(), v);
        };
        put("instance_id", self.id.as_str().into());
        put("name", self.name.clone().into());
        put("engine", "kafka".into());
        put("engine_version", self.engine_version.clone().into());
        put("status", self.status.clone().into());
        put("broker_num", self.broker_num.into());
        put("storage_space", self.storage_space.into());
        put("total_storage_space", self.storage_space.into());
        put("product_id", self.product_id.clone().into());
        put("enable_auto_topic", self.enable_auto_topic.into());
        put("user_id", self.user_id.clone().into());
        put("user_name", self.user_name.clone().into());
        put("project_id", self.project_id.as_str().into());
        // DMS reports created_at as a string of epoch milliseconds.
        put("created_at", self.created_at.to_string().into());
        put("created_at_iso", iso_ms(self.created_at).into());
        put("task", self.busy_task.as_ref().map(|t| Value::from(t.as_str())).unwrap_or(Value::Null));
        Value::Object(m)
    }

    /// Every broker config with its current value, as ShowInstanceConfigs returns them.
    pub fn config_list(&self) -> Vec<Value> {
        CONFIGS
            .iter()
            .map(|c| {
                let value = self.configs.get(c.name).map(String::as_str).unwrap_or(c.default);
                serde_json::json!({
                    "name": c.name,
                    "valid_values": c.valid_values(),
                    "default_value": c.default,
                    "config_type": if c.dynamic { "dynamic" } else { "static" },
                    "value": value,
                    "value_type": c.kind.type_name(),
                })
            })
            .collect()
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
    fn type_name(self) -> &'static str {
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
    fn valid_values(&self) -> String {
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

fn take_str(body: &mut Map<String, Value>, key: &'static str) -> Result<Option<String>, Invalid> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Invalid::Param(key)),
    }
}

fn take_u32(body: &mut Map<String, Value>, key: &'static str) -> Result<Option<u32>, Invalid> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()).map(Some).ok_or(Invalid::Param(key)),
    }
}

impl NewInstance {
    /// Validates a create request body; fields this service does not interpret are kept.
    pub fn from_body(body: Value) -> Result<Self, Invalid> {
        let Value::Object(mut body) = body else {
            return Err(Invalid::Body);
        };
        // Secrets are accepted, as DMS does, but never stored or echoed.
        body.remove("password");
        let name = take_str(&mut body, "name")?.ok_or(Invalid::Param("name"))?;
        let valid_name = (4..=64).contains(&name.chars().count())
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(Invalid::Param("name"));
        }
        if let Some(engine) = take_str(&mut body, "engine")?
            && engine != "kafka"
        {
            return Err(Invalid::Param("engine"));
        }
        let engine_version = take_str(&mut body, "engine_version")?.ok_or(Invalid::Param("engine_version"))?;
        if !ENGINE_VERSIONS.contains(&engine_version.as_str()) {
            return Err(Invalid::Param("engine_version"));
        }
        let broker_num = take_u32(&mut body, "broker_num")?.ok_or(Invalid::Param("broker_num"))?;
        if !(1..=50).contains(&broker_num) {
            return Err(Invalid::Param("broker_num"));
        }
        let storage_space = take_u32(&mut body, "storage_space")?.ok_or(Invalid::Param("storage_space"))?;
        if storage_space < 100 {
            return Err(Invalid::Param("storage_space"));
        }
        let product_id = take_str(&mut body, "product_id")?.ok_or(Invalid::Param("product_id"))?;
        if product_id.is_empty() || product_id.len() > 64 {
            return Err(Invalid::Param("product_id"));
        }
        let enable_auto_topic = match body.remove("enable_auto_topic") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(Invalid::Param("enable_auto_topic")),
        };
        Ok(NewInstance { name, engine_version, broker_num, storage_space, product_id, enable_auto_topic, extra: body })
    }
}
