//! The operations that create tasks, on the wire: their requests (ModifyInstanceConfigs,
//! UpdateInstanceAutoCreateTopic, ResizeEngineInstance, CreateKafkaReassignmentTask,
//! UpgradeInstance, BatchRestartOrDeleteInstances) and what they answer.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::RequestBody;
use kafka_tasks_domain::Invalid;
use kafka_tasks_domain::operation::{AssignmentRequest, ConfigRequest, ReassignmentRequest, ResizeKind, ResizeRequest};

/// ModifyInstanceConfigs.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ModifyConfigsBody {
    #[schema(required = true, value_type = Vec<ConfigChange>)]
    pub kafka_configs: Option<Vec<ConfigChange>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ConfigChange {
    #[schema(required = true, value_type = String, example = "log.retention.hours")]
    pub name: Option<String>,
    /// A string; a number or a boolean is taken as its JSON text.
    #[schema(required = true, value_type = String, example = "72")]
    pub value: Option<ConfigValue>,
}

/// A config value as clients send it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl RequestBody for ModifyConfigsBody {
    const FIELDS: &'static [&'static str] = &["kafka_configs", "name", "value"];
}

impl ModifyConfigsBody {
    /// The changes as the domain checks them ([`kafka_tasks_domain::operation::modify_configs`]).
    pub fn requests(&self) -> Option<Vec<ConfigRequest>> {
        let text = |v: &ConfigValue| match v {
            ConfigValue::Text(s) => s.clone(),
            ConfigValue::Number(n) => n.to_string(),
            ConfigValue::Bool(b) => b.to_string(),
        };
        let list = self.kafka_configs.as_ref()?;
        Some(list.iter().map(|c| ConfigRequest { name: c.name.clone(), value: c.value.as_ref().map(text) }).collect())
    }
}

/// UpdateInstanceAutoCreateTopic.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct AutoTopicBody {
    #[schema(required = true, value_type = bool)]
    pub enable_auto_topic: Option<bool>,
}

impl RequestBody for AutoTopicBody {
    const FIELDS: &'static [&'static str] = &["enable_auto_topic"];
}

/// ResizeEngineInstance.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ResizeBody {
    #[schema(required = true, value_type = ResizeKind, inline)]
    pub oper_type: Option<ResizeKind>,
    pub new_storage_space: Option<u32>,
    pub new_broker_num: Option<u32>,
    pub new_product_id: Option<String>,
}

impl RequestBody for ResizeBody {
    const FIELDS: &'static [&'static str] = &["oper_type", "new_storage_space", "new_broker_num", "new_product_id"];
}

impl From<&ResizeBody> for ResizeRequest {
    fn from(b: &ResizeBody) -> Self {
        ResizeRequest {
            oper_type: b.oper_type,
            new_storage_space: b.new_storage_space,
            new_broker_num: b.new_broker_num,
            new_product_id: b.new_product_id.clone(),
        }
    }
}

/// A schedule: `is_schedule: true` and when (epoch milliseconds).
fn schedule_refusal(field: &'static str) -> Invalid {
    // `execute_at` that is no time is refused as a bad timestamp, as DMS does.
    if field == "execute_at" { Invalid::Timestamp } else { Invalid::Param(field) }
}

/// CreateKafkaReassignmentTask.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ReassignBody {
    #[schema(required = true, value_type = Vec<Reassignment>)]
    pub reassignments: Option<Vec<Reassignment>>,
    /// Bytes per second, or -1 for none.
    pub throttle: Option<i64>,
    /// Only estimate the time (`{"reassignment_time"}`), creating no task.
    pub time_estimate: Option<bool>,
    pub is_schedule: Option<bool>,
    /// Epoch milliseconds, in the future, with `is_schedule: true`.
    pub execute_at: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct Reassignment {
    /// Kafka's rule: 1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..` (else 400 `DMS.00400062`).
    #[schema(required = true, value_type = String, pattern = "^[a-zA-Z0-9._-]{1,249}$")]
    pub topic: Option<String>,
    pub brokers: Option<Vec<u64>>,
    pub replication_factor: Option<u64>,
    pub assignment: Option<Vec<PartitionAssignment>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct PartitionAssignment {
    pub partition: Option<u64>,
    pub partition_brokers: Option<Vec<u64>>,
    /// Older documents' name of `partition_brokers` (read when that is absent).
    #[serde(rename = "assignment")]
    pub older_brokers: Option<Vec<u64>>,
}

impl RequestBody for ReassignBody {
    // A bad broker list of an assignment is the assignment's: `partition_brokers` is not named.
    const FIELDS: &'static [&'static str] = &[
        "reassignments",
        "throttle",
        "time_estimate",
        "is_schedule",
        "execute_at",
        "topic",
        "brokers",
        "replication_factor",
        "assignment",
        "partition",
    ];
    fn refusal(field: &'static str) -> Invalid {
        schedule_refusal(field)
    }
}

impl ReassignBody {
    /// The entries as the domain checks them ([`kafka_tasks_domain::operation::reassign`]).
    pub fn requests(&self) -> Option<Vec<ReassignmentRequest>> {
        let list = self.reassignments.as_ref()?;
        let entry = |r: &Reassignment| ReassignmentRequest {
            topic: r.topic.clone(),
            brokers: r.brokers.clone(),
            replication_factor: r.replication_factor,
            assignment: r.assignment.as_ref().map(|parts| {
                parts
                    .iter()
                    .map(|a| AssignmentRequest {
                        partition: a.partition,
                        partition_brokers: a.partition_brokers.clone().or_else(|| a.older_brokers.clone()),
                    })
                    .collect()
            }),
        };
        Some(list.iter().map(entry).collect())
    }
}

/// UpgradeInstance.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UpgradeBody {
    pub is_schedule: Option<bool>,
    /// Epoch milliseconds, in the future, with `is_schedule: true`.
    pub execute_at: Option<i64>,
}

impl RequestBody for UpgradeBody {
    const FIELDS: &'static [&'static str] = &["is_schedule", "execute_at"];
    fn refusal(field: &'static str) -> Invalid {
        schedule_refusal(field)
    }
}

/// BatchRestartOrDeleteInstances.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct BatchActionBody {
    #[schema(required = true, value_type = BatchAction, inline)]
    pub action: Option<BatchAction>,
    /// Instance ids, 1 to 50 (one that is no instance id fails alone).
    #[schema(required = true, value_type = Vec<String>)]
    pub instances: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchAction {
    Restart,
    Delete,
}

impl RequestBody for BatchActionBody {
    const FIELDS: &'static [&'static str] = &["action", "instances"];
}

/// BatchRestartOrDeleteInstances: one result per instance, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchResults {
    pub results: Vec<BatchResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchResult {
    pub instance: String,
    #[schema(inline)]
    pub result: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failed,
}

/// ModifyInstanceConfigs: the task and how many dynamic and static configs it changes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigsModified {
    pub dynamic_config: u64,
    pub job_id: String,
    pub static_config: u64,
}

/// UpdateInstanceAutoCreateTopic.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AutoTopicChanged {
    pub enable_auto_topic: bool,
    pub job_id: String,
}

/// `{"job_id"}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobId {
    pub job_id: String,
}

/// `{"schedule_id"}`: the id the task will keep when it runs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleId {
    pub schedule_id: String,
}

/// `{"reassignment_time"}`: the estimate, in seconds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReassignmentEstimate {
    pub reassignment_time: u64,
}

/// An immediate task's `{"job_id"}` or a scheduled one's `{"schedule_id"}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum JobOrSchedule {
    Job(JobId),
    Schedule(ScheduleId),
}

/// As [`JobOrSchedule`], or the estimate when `time_estimate` is true.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ReassignOutcome {
    Job(JobId),
    Schedule(ScheduleId),
    Estimate(ReassignmentEstimate),
}

/// ShowUpgradeInstanceVersion.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpgradeVersions {
    pub current_version: String,
    pub latest_version: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::from_value;
    use serde_json::json;

    #[test]
    fn answers_serialise_with_sorted_keys() {
        use crate::tests::sorted;
        let id = || "0123456789abcdef0123456789abcdef".to_owned();
        assert!(sorted(&ConfigsModified { dynamic_config: 1, job_id: id(), static_config: 2 }));
        assert!(sorted(&AutoTopicChanged { enable_auto_topic: true, job_id: id() }));
        assert!(sorted(&BatchResults { results: vec![BatchResult { instance: id(), result: Outcome::Failed }] }));
        assert!(sorted(&UpgradeVersions { current_version: id(), latest_version: id() }));
    }

    #[test]
    fn nested_fields_are_refused_under_the_names_dms_gives_them() {
        let configs = |b: Value| from_value::<ModifyConfigsBody>(b).err();
        assert_eq!(configs(json!({"kafka_configs": "x"})), Some(Invalid::Param("kafka_configs")));
        assert_eq!(configs(json!({"kafka_configs": [{"name": 1}]})), Some(Invalid::Param("name")));
        assert_eq!(configs(json!({"kafka_configs": [{"name": "n", "value": [1]}]})), Some(Invalid::Param("value")));
        let reassign = |b: Value| from_value::<ReassignBody>(b).err();
        let entry = |e: Value| reassign(json!({ "reassignments": [e] }));
        assert_eq!(entry(json!({"topic": "t", "brokers": [-1]})), Some(Invalid::Param("brokers")));
        assert_eq!(entry(json!({"topic": 7})), Some(Invalid::Param("topic")));
        let bad_part = json!({"topic": "t", "assignment": [{"partition_brokers": ["x"]}]});
        assert_eq!(entry(bad_part), Some(Invalid::Param("assignment")));
        assert_eq!(entry(json!({"topic": "t", "assignment": [{"partition": -1}]})), Some(Invalid::Param("partition")));
        assert_eq!(reassign(json!({"is_schedule": "yes"})), Some(Invalid::Param("is_schedule")));
        assert_eq!(reassign(json!({"execute_at": "tomorrow"})), Some(Invalid::Timestamp));
        assert_eq!(reassign(json!({"throttle": 1.5})), Some(Invalid::Param("throttle")));
        let older =
            from_value::<ReassignBody>(json!({"reassignments": [{"topic": "t", "assignment": [{"assignment": [1]}]}]}));
        let parts = older.ok().and_then(|b| b.requests()).and_then(|r| r[0].assignment.clone());
        assert_eq!(parts.map(|p| p[0].partition_brokers.clone()), Some(Some(vec![1])));
    }
}
