//! The availability zones this control plane offers (ListAvailableZones, `GET /v2/available-zones`)
//! and the rule that a created instance names only those: one list, so that the zones a client
//! is shown are exactly the ones CreateInstance accepts in `available_zones`.

/// The region every zone belongs to. kafka-tasks runs in one place; the name only has to be
/// stable, since clients (the Terraform provider) use zones to translate AZ ids to codes.
pub const REGION: &str = "kafka-tasks-1";

/// One availability zone: `id` is what CreateInstance's `available_zones` and ShowInstance
/// carry, `code` what a user writes (the provider's `availability_zones` maps codes to ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    pub id: &'static str,
    pub code: &'static str,
    pub name: &'static str,
}

/// The zones, the default first.
pub const ZONES: &[Zone] = &[
    Zone { id: "az1", code: "kafka-tasks-1a", name: "AZ1" },
    Zone { id: "az2", code: "kafka-tasks-1b", name: "AZ2" },
    Zone { id: "az3", code: "kafka-tasks-1c", name: "AZ3" },
];

/// Whether `id` names one of [`ZONES`].
pub fn is_zone(id: &str) -> bool {
    ZONES.iter().any(|z| z.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_ids_and_codes_are_unique() {
        let mut ids: Vec<_> = ZONES.iter().map(|z| z.id).collect();
        let mut codes: Vec<_> = ZONES.iter().map(|z| z.code).collect();
        ids.sort_unstable();
        ids.dedup();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!((ids.len(), codes.len()), (ZONES.len(), ZONES.len()));
        assert!(is_zone("az1") && !is_zone("cn-north-4a") && !is_zone(""));
    }
}
