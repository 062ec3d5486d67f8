//! Cluster bindings on the wire (connected mode, an extension): what ShowInstanceCluster and
//! BindInstanceCluster answer. The binding itself is the domain's
//! ([`kafka_tasks_domain::cluster::BindingView`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use kafka_tasks_domain::cluster::BindingView;

/// A binding and what the cluster says now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterAnswer {
    pub binding: BindingView,
    /// The cluster as DescribeCluster showed it, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterView>,
    /// Why it did not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub instance_id: String,
    /// Whether the cluster answered DescribeCluster just now.
    pub reachable: bool,
}

/// The cluster as DescribeCluster shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterView {
    pub brokers: Vec<BrokerView>,
    pub cluster_id: String,
    pub controller_id: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BrokerView {
    pub fenced: bool,
    pub host: String,
    pub id: i32,
    pub port: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_tasks_domain::cluster::BindingRequest;

    #[test]
    fn answers_serialise_with_sorted_keys() {
        let request: BindingRequest = serde_json::from_value(serde_json::json!({
            "bootstrap_servers": "10.0.0.1:9092",
            "security_protocol": "SASL_SSL",
            "sasl_username": "admin",
            "sasl_password_env": "KAFKA_TASKS_CLUSTER_PASSWORD",
            "ssl_ca_file": "/etc/kafka/ca.pem",
            "broker_control": "/opt/broker-control",
        }))
        .expect("a binding request");
        let (binding, _) = request.check().expect("a valid binding");
        let view = binding.view();
        let every = serde_json::to_value(&view).expect("json");
        assert_eq!(every.as_object().map(|o| o.len()), Some(7), "{every}");
        let answer = ClusterAnswer {
            binding: view,
            cluster: Some(ClusterView {
                brokers: vec![BrokerView { fenced: false, host: "10.0.0.1".into(), id: 1, port: 9092 }],
                cluster_id: "c".into(),
                controller_id: 1,
            }),
            error: Some("e".into()),
            instance_id: "i".into(),
            reachable: true,
        };
        assert!(crate::tests::sorted(&answer));
    }
}
