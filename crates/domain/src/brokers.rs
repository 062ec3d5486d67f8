//! Where an instance's brokers are reached, as DMS describes them: the private addresses behind
//! ShowInstance's `connect_address`, its cross-VPC listeners (`cross_vpc_info`), and the broker
//! list of ShowKafkaCluster. A virtual instance has no machines, so its addresses are derived
//! from its id: stable for the instance's life, distinct between its brokers, and the brokers a
//! resize adds get the next ones while the others keep theirs.

use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::ids::InstanceId;

/// The port clients in the instance's VPC connect to (DMS's plaintext listener).
pub const CLIENT_PORT: u16 = 9092;
/// The port of the cross-VPC listener DMS gives each broker.
pub const CROSS_VPC_PORT: u16 = 9011;

/// One broker of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// DMS numbers brokers from 0.
    pub id: u32,
    pub ip: Ipv4Addr,
    /// The id of the broker's network port (a UUID, as a VPC port id is).
    pub port_id: String,
}

/// The `count` brokers of an instance, by id. Addresses are `192.168.X.(11 + id)`, X from the
/// instance id, so that at most 50 brokers fit one /24 with room to spare.
pub fn brokers(instance: &InstanceId, count: u32) -> Vec<Broker> {
    let subnet = Sha256::digest(instance.as_str().as_bytes())[0];
    (0..count)
        .map(|id| {
            let host = u8::try_from(11 + id).unwrap_or(u8::MAX);
            let digest = Sha256::digest(format!("{}:{id}", instance.as_str()).as_bytes());
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            let port_id = uuid::Builder::from_random_bytes(bytes).into_uuid().to_string();
            Broker { id, ip: Ipv4Addr::new(192, 168, subnet, host), port_id }
        })
        .collect()
}

/// ShowInstance's `connect_address`: the brokers' addresses, comma-separated.
pub fn connect_address(brokers: &[Broker]) -> String {
    brokers.iter().map(|b| b.ip.to_string()).collect::<Vec<_>>().join(",")
}

/// ShowInstance's `cross_vpc_info`: a JSON document *in a string*, as DMS sends it, mapping
/// each listener address to `{advertised_ip, broker_id, port, port_id}`; the advertised
/// address is the listener's own until a user changes it (which kafka-tasks does not offer).
pub fn cross_vpc_info(brokers: &[Broker]) -> String {
    let map: Map<String, Value> = brokers
        .iter()
        .map(|b| {
            let ip = b.ip.to_string();
            let entry =
                json!({"advertised_ip": ip, "broker_id": b.id.to_string(), "port": CROSS_VPC_PORT, "port_id": b.port_id});
            (ip, entry)
        })
        .collect();
    Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> InstanceId {
        InstanceId::from_trusted(s.into())
    }

    #[test]
    fn addresses_are_stable_distinct_and_kept_across_a_resize() {
        let inst = id("11111111-2222-3333-4444-555555555555");
        let three = brokers(&inst, 3);
        assert_eq!(three, brokers(&inst, 3));
        let five = brokers(&inst, 5);
        assert_eq!(&five[..3], &three[..]);
        let mut ips: Vec<_> = five.iter().map(|b| b.ip).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 5);
        let mut ports: Vec<_> = five.iter().map(|b| b.port_id.clone()).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 5);
        assert!(brokers(&inst, super::super::instance::MAX_BROKERS).iter().all(|b| b.ip.octets()[3] <= 61));
    }

    #[test]
    fn cross_vpc_info_is_a_json_string_keyed_by_listener_address() {
        let bs = brokers(&id("11111111-2222-3333-4444-555555555555"), 2);
        let parsed: Value = serde_json::from_str(&cross_vpc_info(&bs)).expect("JSON in the string");
        let first = &parsed[bs[0].ip.to_string()];
        assert_eq!(first["advertised_ip"], bs[0].ip.to_string());
        assert_eq!((first["broker_id"].clone(), first["port"].clone()), (json!("0"), json!(CROSS_VPC_PORT)));
        assert_eq!(parsed.as_object().map(Map::len), Some(2));
        assert_eq!(connect_address(&bs), format!("{},{}", bs[0].ip, bs[1].ip));
    }
}
