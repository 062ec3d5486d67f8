//! ListAvailableZones on the wire, with DMS's types and spelling.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use kafka_tasks_domain::zones::{REGION, ZONES};

/// ListAvailableZones.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AvailableZones {
    pub available_zones: Vec<AvailableZone>,
    pub region_id: String,
}

/// One availability zone, with DMS's types and spelling.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AvailableZone {
    #[schema(example = "kafka-tasks-1a")]
    pub code: String,
    pub default_az: bool,
    /// What CreateInstance's `available_zones` takes.
    #[schema(example = "az1")]
    pub id: String,
    pub ipv6_enable: bool,
    pub name: String,
    /// A string, as DMS sends it.
    pub port: String,
    pub remain_time: u64,
    /// `"true"` or `"false"`, a string.
    pub resource_availability: String,
    #[serde(rename = "soldOut")]
    pub sold_out: bool,
}

impl AvailableZones {
    /// The zones this control plane offers ([`kafka_tasks_domain::zones`]), the default first.
    pub fn offered() -> Self {
        let available_zones = ZONES
            .iter()
            .enumerate()
            .map(|(i, z)| AvailableZone {
                code: z.code.to_owned(),
                default_az: i == 0,
                id: z.id.to_owned(),
                ipv6_enable: false,
                name: z.name.to_owned(),
                port: "8002".to_owned(),
                remain_time: 0,
                resource_availability: "true".to_owned(),
                sold_out: false,
            })
            .collect();
        AvailableZones { available_zones, region_id: REGION.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zones_serialise_with_sorted_keys() {
        assert!(crate::tests::sorted(&AvailableZones::offered()));
    }
}
