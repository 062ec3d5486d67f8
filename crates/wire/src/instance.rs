//! Instances on the wire: CreateInstance and UpdateInstance requests, and what ShowInstance,
//! ListInstances, ShowKafkaTags, ShowKafkaCluster and ShowInstanceConfigs answer.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::RequestBody;
use kafka_tasks_domain::Invalid;
use kafka_tasks_domain::brokers::{self, Broker};
use kafka_tasks_domain::instance::{
    CONFIGS, CreateRequest, DEFAULT_WINDOW, Instance, InstanceStatus, NewInstance, UpdateRequest,
};
use kafka_tasks_domain::time::iso_ms;

/// A resource tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tag {
    #[schema(example = "owner")]
    pub key: String,
    #[schema(example = "team-a")]
    pub value: String,
}

/// A tag as a create request gives it: the value may be left out or null.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(as = TagInput)]
pub struct TagInput {
    key: String,
    value: Option<String>,
}

/// The capacity threshold policy: what a full disk does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetentionPolicy {
    ProduceReject,
    TimeBase,
}

impl RetentionPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionPolicy::ProduceReject => "produce_reject",
            RetentionPolicy::TimeBase => "time_base",
        }
    }
}

/// CreateInstanceByEngine / CreatePostPaidKafkaInstance. Other descriptive fields
/// (`specification`, `vpc_id`, `available_zones`, `ssl_enable`, …) are accepted and kept;
/// anything else, passwords included, is not read.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct CreateInstanceBody {
    /// 4 to 64 characters: a letter, then letters, digits, `_` or `-`.
    #[schema(required = true, value_type = String, pattern = "^[A-Za-z][A-Za-z0-9_-]{3,63}$")]
    pub name: Option<String>,
    /// Only `kafka`.
    pub engine: Option<String>,
    #[schema(required = true, value_type = String, example = "3.x")]
    pub engine_version: Option<String>,
    #[schema(required = true, value_type = u32, example = 3)]
    pub broker_num: Option<u32>,
    /// GB.
    #[schema(required = true, value_type = u32, example = 300)]
    pub storage_space: Option<u32>,
    #[schema(required = true, value_type = String, example = "c6.2u4g.cluster")]
    pub product_id: Option<String>,
    pub enable_auto_topic: Option<bool>,
    pub description: Option<String>,
    pub specification: Option<String>,
    pub storage_spec_code: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub security_group_id: Option<String>,
    /// Zone ids from ListAvailableZones (`GET /v2/available-zones`); any other is refused.
    #[schema(example = json!(["az1"]))]
    pub available_zones: Option<Vec<String>>,
    pub enterprise_project_id: Option<String>,
    pub ssl_enable: Option<bool>,
    pub retention_policy: Option<RetentionPolicy>,
    pub disk_encrypted_enable: Option<bool>,
    /// `HH:mm:ss`, with `maintain_end`.
    pub maintain_begin: Option<String>,
    pub maintain_end: Option<String>,
    /// At most 20, keys distinct: the key 1 to 128 characters, the value at most 255, both of
    /// letters, digits, spaces and `_ . : = + - @`. ShowKafkaTags returns them.
    pub tags: Option<Vec<TagInput>>,
}

impl RequestBody for CreateInstanceBody {
    const FIELDS: &'static [&'static str] = &[
        "name",
        "engine",
        "engine_version",
        "broker_num",
        "storage_space",
        "product_id",
        "enable_auto_topic",
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
}

impl From<CreateInstanceBody> for CreateRequest {
    fn from(b: CreateInstanceBody) -> Self {
        let mut kept = Map::new();
        let mut keep = |key: &str, v: Option<Value>| {
            if let Some(v) = v {
                kept.insert(key.to_owned(), v);
            }
        };
        keep("description", b.description.map(Value::String));
        keep("specification", b.specification.map(Value::String));
        keep("storage_spec_code", b.storage_spec_code.map(Value::String));
        keep("vpc_id", b.vpc_id.map(Value::String));
        keep("subnet_id", b.subnet_id.map(Value::String));
        keep("security_group_id", b.security_group_id.map(Value::String));
        keep("available_zones", b.available_zones.map(|z| z.into_iter().map(Value::String).collect()));
        keep("enterprise_project_id", b.enterprise_project_id.map(Value::String));
        keep("ssl_enable", b.ssl_enable.map(Value::Bool));
        keep("retention_policy", b.retention_policy.map(|p| Value::from(p.as_str())));
        keep("disk_encrypted_enable", b.disk_encrypted_enable.map(Value::Bool));
        keep("maintain_begin", b.maintain_begin.map(Value::String));
        keep("maintain_end", b.maintain_end.map(Value::String));
        keep(
            "tags",
            b.tags.map(|tags| {
                tags.into_iter()
                    .map(|t| serde_json::json!({ "key": t.key, "value": t.value.unwrap_or_default() }))
                    .collect()
            }),
        );
        CreateRequest {
            name: b.name,
            engine: b.engine,
            engine_version: b.engine_version,
            broker_num: b.broker_num,
            storage_space: b.storage_space,
            product_id: b.product_id,
            enable_auto_topic: b.enable_auto_topic,
            kept,
        }
    }
}

impl TryFrom<CreateInstanceBody> for NewInstance {
    type Error = Invalid;
    fn try_from(b: CreateInstanceBody) -> Result<Self, Invalid> {
        NewInstance::validate(b.into())
    }
}

/// UpdateInstance: any of these fields (a null one is left out).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UpdateInstanceBody {
    /// 4 to 64 characters: a letter, then letters, digits, `_` or `-`.
    #[schema(pattern = "^[A-Za-z][A-Za-z0-9_-]{3,63}$")]
    pub name: Option<String>,
    /// `""` clears it.
    pub description: Option<String>,
    /// `HH:mm:ss`, with `maintain_end`.
    pub maintain_begin: Option<String>,
    pub maintain_end: Option<String>,
    pub security_group_id: Option<String>,
    pub retention_policy: Option<RetentionPolicy>,
    pub enterprise_project_id: Option<String>,
}

impl RequestBody for UpdateInstanceBody {
    const FIELDS: &'static [&'static str] = &[
        "name",
        "description",
        "maintain_begin",
        "maintain_end",
        "security_group_id",
        "retention_policy",
        "enterprise_project_id",
    ];
}

impl From<UpdateInstanceBody> for UpdateRequest {
    fn from(b: UpdateInstanceBody) -> Self {
        UpdateRequest {
            name: b.name,
            description: b.description,
            maintain_begin: b.maintain_begin,
            maintain_end: b.maintain_end,
            security_group_id: b.security_group_id,
            retention_policy: b.retention_policy.map(|p| p.as_str().to_owned()),
            enterprise_project_id: b.enterprise_project_id,
        }
    }
}

/// CreateInstance's answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedInstance {
    #[schema(format = "uuid")]
    pub instance_id: String,
}

/// What ShowInstance says of a bound instance's cluster: its brokers as DescribeCluster lists
/// them and its finalized features, or why it did not answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterHealth {
    /// Registered brokers, by id.
    pub broker_ids: Vec<i32>,
    /// When it was asked (epoch ms); answers are cached for a few seconds.
    pub checked_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub cluster_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub controller_id: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
    /// Every finalized feature's level (`metadata.version`, `kraft.version`, …).
    pub features: std::collections::BTreeMap<String, i16>,
    /// Those fenced (registered, not serving).
    pub fenced_broker_ids: Vec<i32>,
    /// The finalized `metadata.version` level, when the cluster reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub metadata_version: Option<i16>,
    /// Whether the cluster answered within the bound.
    pub reachable: bool,
    /// The lowest of the brokers' highest supported `metadata.version` levels: what the oldest
    /// broker's release can run (ShowUpgradeInstanceVersion of a bound instance maps it to a
    /// release line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub supported_metadata_version: Option<i16>,
}

/// An instance as ShowInstance and ListInstances return it; kept descriptive fields
/// (`description`, `vpc_id`, `available_zones`, `ssl_enable`, …) appear when set.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstanceJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = json!(["az1"]))]
    pub available_zones: Option<Vec<String>>,
    /// A bound instance's: its cluster's broker count while the cluster answers.
    pub broker_num: u32,
    /// Billing mode: always 1, pay-per-use.
    #[schema(example = 1)]
    pub charging_mode: i32,
    /// A bound instance's cluster (connected mode), as ShowInstance sees it now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub cluster: Option<ClusterHealth>,
    /// The brokers' addresses, comma-separated (once the instance is created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "192.168.7.11,192.168.7.12,192.168.7.13")]
    pub connect_address: Option<String>,
    /// Epoch milliseconds, as a string (as DMS sends it).
    #[schema(example = "1764316800000")]
    pub created_at: String,
    pub created_at_iso: String,
    /// A JSON document in a string (once the instance is created): each broker's listener
    /// address → `{"advertised_ip","broker_id","port","port_id"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        nullable = false,
        example = "{\"192.168.7.11\":{\"advertised_ip\":\"192.168.7.11\",\"broker_id\":\"0\",\"port\":9011,\"port_id\":\"3f6c1a52-58c4-4b7e-9a55-2c1d0f8e6b21\"}}"
    )]
    pub cross_vpc_info: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub disk_encrypted_enable: Option<bool>,
    pub enable_auto_topic: bool,
    #[schema(example = "kafka")]
    pub engine: String,
    pub engine_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub enterprise_project_id: Option<String>,
    #[schema(format = "uuid")]
    pub instance_id: String,
    pub maintain_begin: String,
    pub maintain_end: String,
    pub name: String,
    /// The port of `connect_address` (once the instance is created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = 9092)]
    pub port: Option<u16>,
    pub product_id: String,
    pub project_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub retention_policy: Option<RetentionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub security_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub specification: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub ssl_enable: Option<bool>,
    pub status: InstanceStatus,
    pub storage_space: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub storage_spec_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub subnet_id: Option<String>,
    /// The tags given at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub tags: Option<Vec<Tag>>,
    /// The id of the task that holds the instance busy, or null.
    pub task: Option<String>,
    pub total_storage_space: u32,
    pub user_id: String,
    pub user_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub vpc_id: Option<String>,
}

/// A kept field of the instance's stored descriptive fields, as its wire type (`None` when
/// absent or, in a row older than the checks, of another shape).
fn kept<T: serde::de::DeserializeOwned>(inst: &Instance, key: &str) -> Option<T> {
    inst.extra.get(key).and_then(|v| T::deserialize(v).ok())
}

impl From<&Instance> for InstanceJson {
    fn from(inst: &Instance) -> Self {
        let brokers = inst.brokers();
        let addresses = (!brokers.is_empty())
            .then(|| (brokers::connect_address(&brokers), brokers::CLIENT_PORT, brokers::cross_vpc_info(&brokers)));
        let (maintain_begin, maintain_end) =
            match (kept::<String>(inst, "maintain_begin"), kept::<String>(inst, "maintain_end")) {
                (Some(begin), end) => (begin, end.unwrap_or_default()),
                (None, _) => (DEFAULT_WINDOW.0.to_owned(), DEFAULT_WINDOW.1.to_owned()),
            };
        InstanceJson {
            available_zones: kept(inst, "available_zones"),
            broker_num: inst.broker_num,
            // Every instance here is pay-per-use (DMS: 1; 0 is yearly/monthly, which clients
            // unsubscribe through billing instead of deleting).
            charging_mode: 1,
            cluster: None,
            connect_address: addresses.as_ref().map(|a| a.0.clone()),
            // DMS reports created_at as a string of epoch milliseconds.
            created_at: inst.created_at.to_string(),
            created_at_iso: iso_ms(inst.created_at),
            cross_vpc_info: addresses.as_ref().map(|a| a.2.clone()),
            description: kept(inst, "description"),
            disk_encrypted_enable: kept(inst, "disk_encrypted_enable"),
            enable_auto_topic: inst.enable_auto_topic,
            engine: "kafka".to_owned(),
            engine_version: inst.engine_version.clone(),
            enterprise_project_id: kept(inst, "enterprise_project_id"),
            instance_id: inst.id.as_str().to_owned(),
            maintain_begin,
            maintain_end,
            name: inst.name.clone(),
            port: addresses.as_ref().map(|a| a.1),
            product_id: inst.product_id.clone(),
            project_id: inst.project_id.as_str().to_owned(),
            retention_policy: kept(inst, "retention_policy"),
            security_group_id: kept(inst, "security_group_id"),
            specification: kept(inst, "specification"),
            ssl_enable: kept(inst, "ssl_enable"),
            status: inst.status,
            storage_space: inst.storage_space,
            storage_spec_code: kept(inst, "storage_spec_code"),
            subnet_id: kept(inst, "subnet_id"),
            tags: kept(inst, "tags"),
            task: inst.busy_task.as_ref().map(|t| t.as_str().to_owned()),
            total_storage_space: inst.storage_space,
            user_id: inst.user_id.clone(),
            user_name: inst.user_name.clone(),
            vpc_id: kept(inst, "vpc_id"),
        }
    }
}

/// ListInstances.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstanceList {
    pub instance_num: u64,
    pub instances: Vec<InstanceJson>,
}

/// ShowKafkaTags: the instance's tags.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TagList {
    pub tags: Vec<Tag>,
}

impl From<&Instance> for TagList {
    fn from(inst: &Instance) -> Self {
        TagList { tags: kept(inst, "tags").unwrap_or_default() }
    }
}

/// ShowKafkaCluster: `{"cluster": {"brokers": […]}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KafkaCluster {
    pub cluster: ClusterBrokers,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterBrokers {
    /// Empty until the instance is created.
    pub brokers: Vec<ClusterBroker>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterBroker {
    #[schema(example = "0")]
    pub broker_id: String,
    pub health: bool,
    #[schema(example = "192.168.7.11")]
    pub host: String,
    #[schema(example = 9092)]
    pub port: u16,
}

impl From<&[Broker]> for KafkaCluster {
    fn from(list: &[Broker]) -> Self {
        let brokers = list
            .iter()
            .map(|b| ClusterBroker {
                broker_id: b.id.to_string(),
                health: true,
                host: b.ip.to_string(),
                port: brokers::CLIENT_PORT,
            })
            .collect();
        KafkaCluster { cluster: ClusterBrokers { brokers } }
    }
}

/// ShowInstanceConfigs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigList {
    pub kafka_configs: Vec<ConfigJson>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigJson {
    #[schema(inline)]
    pub config_type: ConfigType,
    pub default_value: String,
    pub name: String,
    /// e.g. `1~168`, `true or false`, or the allowed words.
    pub valid_values: String,
    pub value: String,
    #[schema(inline)]
    pub value_type: ValueType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConfigType {
    Dynamic,
    Static,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    Integer,
    Boolean,
    String,
}

impl From<&Instance> for ConfigList {
    /// Every broker config with its current value.
    fn from(inst: &Instance) -> Self {
        use kafka_tasks_domain::instance::ConfigKind;
        let kafka_configs = CONFIGS
            .iter()
            .map(|c| ConfigJson {
                config_type: if c.dynamic { ConfigType::Dynamic } else { ConfigType::Static },
                default_value: c.default.to_owned(),
                name: c.name.to_owned(),
                valid_values: c.valid_values(),
                value: inst.configs.get(c.name).map(String::as_str).unwrap_or(c.default).to_owned(),
                value_type: match c.kind {
                    ConfigKind::Int { .. } => ValueType::Integer,
                    ConfigKind::Bool => ValueType::Boolean,
                    ConfigKind::Enum(_) => ValueType::String,
                },
            })
            .collect();
        ConfigList { kafka_configs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_tasks_domain::{ProjectId, TaskId};
    use serde_json::json;

    fn instance(body: Value) -> Instance {
        let new = crate::from_value::<CreateInstanceBody>(body).and_then(NewInstance::try_from).expect("valid");
        Instance::create(ProjectId::generate(), &new, "u", "n", 1_764_316_800_000)
    }

    #[test]
    fn responses_serialise_with_sorted_keys() {
        let mut inst = instance(json!({
            "name": "kafka-1", "engine_version": "3.x", "broker_num": 3, "storage_space": 300, "product_id": "p",
            "description": "d", "specification": "s", "storage_spec_code": "dms.physical.storage.high",
            "vpc_id": "v", "subnet_id": "s", "security_group_id": "sg", "available_zones": ["az1"],
            "enterprise_project_id": "0", "ssl_enable": false, "retention_policy": "time_base",
            "disk_encrypted_enable": false, "maintain_begin": "22:00:00", "maintain_end": "02:00:00",
            "tags": [{"key": "k", "value": "v"}],
        }));
        inst.status = InstanceStatus::Running;
        inst.busy_task = Some(TaskId::generate());
        let mut shown = InstanceJson::from(&inst);
        shown.cluster = Some(ClusterHealth {
            broker_ids: vec![1],
            checked_at: 1,
            cluster_id: Some("c".into()),
            controller_id: Some(1),
            error: Some("e".into()),
            features: [("metadata.version".to_owned(), 20)].into(),
            fenced_broker_ids: vec![],
            metadata_version: Some(20),
            reachable: true,
            supported_metadata_version: Some(21),
        });
        let every_field = serde_json::to_value(&shown).expect("json");
        assert_eq!(every_field.as_object().map(Map::len), Some(35), "{every_field}");
        assert!(crate::tests::sorted(&shown));
        assert!(crate::tests::sorted(&InstanceList { instance_num: 1, instances: vec![shown] }));
        assert!(crate::tests::sorted(&TagList::from(&inst)));
        assert!(crate::tests::sorted(&KafkaCluster::from(inst.brokers().as_slice())));
        assert!(crate::tests::sorted(&ConfigList::from(&inst)));
        assert!(crate::tests::sorted(&CreatedInstance { instance_id: inst.id.as_str().to_owned() }));
    }

    #[test]
    fn an_instance_reads_back_as_it_was_shown() {
        let inst = instance(json!({
            "name": "kafka-1", "engine_version": "2.7", "broker_num": 3, "storage_space": 300, "product_id": "p",
            "tags": [{"key": "k"}], "vpc_id": "vpc-1",
        }));
        let text = serde_json::to_string(&InstanceJson::from(&inst)).expect("json");
        let read: InstanceJson = serde_json::from_str(&text).expect("the client reads what the server sends");
        assert_eq!(serde_json::to_string(&read).ok(), Some(text));
        assert_eq!(read.tags, Some(vec![Tag { key: "k".into(), value: String::new() }]));
        assert_eq!((read.maintain_begin.as_str(), read.maintain_end.as_str()), DEFAULT_WINDOW);
        assert_eq!(read.task, None);
    }

    /// `FIELDS` names every field of the body, and the fields the body keeps are the domain's
    /// `KEPT_FIELDS`: a field added to one and not the others fails here, not in a client.
    #[test]
    fn the_create_fields_are_the_bodys_and_the_domains() {
        use std::collections::BTreeSet;
        use utoipa::PartialSchema;
        let named: BTreeSet<&str> = CreateInstanceBody::FIELDS.iter().copied().collect();
        assert_eq!(named.len(), CreateInstanceBody::FIELDS.len(), "a field named twice");
        let schema = serde_json::to_value(CreateInstanceBody::schema()).expect("schema");
        let declared: BTreeSet<&str> =
            schema["properties"].as_object().map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
        assert_eq!(named, declared, "FIELDS and the struct's fields");
        let every = CreateInstanceBody {
            name: Some("kafka-1".into()),
            engine: Some("kafka".into()),
            engine_version: Some("3.x".into()),
            broker_num: Some(3),
            storage_space: Some(300),
            product_id: Some("p".into()),
            enable_auto_topic: Some(true),
            description: Some("d".into()),
            specification: Some("s".into()),
            storage_spec_code: Some("c".into()),
            vpc_id: Some("v".into()),
            subnet_id: Some("n".into()),
            security_group_id: Some("g".into()),
            available_zones: Some(vec!["az1".into()]),
            enterprise_project_id: Some("0".into()),
            ssl_enable: Some(false),
            retention_policy: Some(RetentionPolicy::TimeBase),
            disk_encrypted_enable: Some(false),
            maintain_begin: Some("22:00:00".into()),
            maintain_end: Some("02:00:00".into()),
            tags: Some(vec![TagInput { key: "k".into(), value: None }]),
        };
        let kept: BTreeSet<String> = CreateRequest::from(every).kept.keys().cloned().collect();
        let domain: BTreeSet<String> =
            kafka_tasks_domain::instance::KEPT_FIELDS.iter().map(|f| (*f).to_owned()).collect();
        assert_eq!(kept, domain, "what the body keeps and the domain's KEPT_FIELDS");
        let interpreted: BTreeSet<&str> = named.iter().copied().filter(|f| !domain.contains(*f)).collect();
        assert_eq!(
            interpreted,
            ["broker_num", "enable_auto_topic", "engine", "engine_version", "name", "product_id", "storage_space"]
                .into(),
            "the fields the domain interprets"
        );
    }

    #[test]
    fn a_wrong_type_is_refused_under_the_name_dms_gives_it() {
        let bad = |body: Value| crate::from_value::<CreateInstanceBody>(body).err();
        assert_eq!(bad(json!({"name": 1})), Some(Invalid::Param("name")));
        assert_eq!(bad(json!({"broker_num": 3.5})), Some(Invalid::Param("broker_num")));
        assert_eq!(bad(json!({"storage_space": 5_000_000_000u64})), Some(Invalid::Param("storage_space")));
        assert_eq!(bad(json!({"tags": [{"key": 1}]})), Some(Invalid::Param("tags")));
        assert_eq!(bad(json!({"tags": "a=b"})), Some(Invalid::Param("tags")));
        assert_eq!(bad(json!({"available_zones": [1]})), Some(Invalid::Param("available_zones")));
        assert_eq!(bad(json!({"retention_policy": "sometimes"})), Some(Invalid::Param("retention_policy")));
        assert_eq!(bad(json!({"name": null, "password": {"nested": 1}, "unknown": [1]})), None);
        assert_eq!(crate::decode::<CreateInstanceBody>(b"[]").err(), Some(Invalid::Body));
        assert_eq!(crate::decode::<CreateInstanceBody>(b"{\"name\": 1, }").err(), Some(Invalid::Body));
    }
}
