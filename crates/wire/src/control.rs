//! Test control on the wire (`serve --test-control` only, an extension): the fault rules as a
//! client writes them and as the service shows them, the clock, snapshots and the reset.
//!
//! The handlers first check which fields a body has (so that a refusal names the field in
//! words a tester reads, not serde's), then read it into its type here; each rule of a list is
//! read into [`RuleInput`] on its own, so that a refusal says which rule.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A rule as a client writes it. Matchers left out match anything; exactly one effect.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    /// An API operation, by its OpenAPI operationId (`ListBackgroundTasks`, `RestartInstance`…).
    /// API effects only.
    pub operation: Option<String>,
    pub project_id: Option<String>,
    pub instance_id: Option<String>,
    /// A task name (`restart`, `modifyConfigs`…). Step effects only.
    pub task_name: Option<String>,
    /// A step name (`RESTART_BROKERS`…). Step effects only.
    pub step: Option<String>,
    /// Chance (0 to 1) that a matching request or step is hit; 1 when left out.
    pub probability: Option<f64>,
    /// Fire this many times, then retire; forever when left out.
    pub times: Option<u64>,
    /// Seed of the rule's own random sequence (0 when left out): the same seed and the same
    /// requests give the same faults.
    pub seed: Option<u64>,
    /// Effect: answer the API call with this error (after `latency_ms`, if given).
    pub error: Option<ErrorInput>,
    /// Effect: delay the API answer this long (alone, or before `error`).
    pub latency_ms: Option<u64>,
    /// Effect: fail the step, and so the task, with this reason.
    pub fail_step: Option<FailInput>,
    /// Effect: the step takes this long instead of its planned duration.
    pub step_duration_ms: Option<u64>,
    /// Effect: the step takes this many times its planned duration.
    pub step_duration_factor: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ErrorInput {
    /// 400 to 599.
    pub status_code: u16,
    /// The DMS or APIGW code; for 429, 403, 500 and 503 the service's own code when left out.
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    /// Seconds, sent as `Retry-After`; for 429 and 503 the service's own (1) when left out.
    pub retry_after: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FailInput {
    pub reason: String,
}

/// ReplaceTestControlFaults and AppendTestControlFaults: `{"rules": [...]}`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesBody {
    pub rules: Vec<RuleInput>,
}

/// DeleteTestControlFaults: the rules that equal one of the filters in every field it gives
/// (`{"rules": [{"id": 3}]}`) are removed; no body removes every rule.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleFilters {
    /// Each a non-empty object of fields of a rule as shown ([`RuleJson`]).
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<Map<String, Value>>,
}

/// A rule as the service shows it: its matchers, its one effect, and what it has done.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
pub struct RuleJson {
    /// Effect: the API call is answered with this error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<InjectedError>,
    /// Effect: the step, and so the task, fails with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub fail_step: Option<FailInput>,
    /// How often it fired.
    pub fired: u64,
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub instance_id: Option<String>,
    /// Effect: the API answer is delayed this long (alone, or before `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub latency_ms: Option<u64>,
    /// How often it was asked (matched and, with a probability under 1, rolled).
    pub matched: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub operation: Option<String>,
    pub probability: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub project_id: Option<String>,
    /// It fired `times` times and fires no more.
    pub retired: bool,
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub step: Option<String>,
    /// Effect: the step takes this many times its planned duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub step_duration_factor: Option<f64>,
    /// Effect: the step takes this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub step_duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub task_name: Option<String>,
    /// `null`: forever.
    pub times: Option<u64>,
}

/// The error a rule answers with, its codes filled in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct InjectedError {
    pub error_code: String,
    pub error_msg: String,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u64>,
    pub status_code: u16,
}

/// The fault rules in force (and, after DeleteTestControlFaults, how many went).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
pub struct RulesAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub removed: Option<usize>,
    pub rules: Vec<RuleJson>,
}

/// The service's clock.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct ClockAnswer {
    pub frozen: bool,
    /// RFC 3339 UTC with milliseconds.
    pub now: String,
    pub now_ms: i64,
    /// Ahead of the wall clock by this much.
    pub offset_ms: i64,
}

/// MoveTestControlClock: `{"action": "advance", "by": "2h"}`, `{"action": "set", "to":
/// "2027-01-01T02:00:00Z"}`, `{"action": "freeze"}` or `{"action": "resume"}`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockMove {
    /// `advance`, `set`, `freeze` or `resume`.
    #[schema(example = "advance")]
    pub action: String,
    /// advance: `90s`, `15m`, `2h`, `1d`, or milliseconds (a number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "2h")]
    pub by: Option<Value>,
    /// set: RFC 3339, no earlier than the clock reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// ResetTestControlState's body (none is `{"credentials": false}`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    /// Also remove every access key but the caller's own.
    #[serde(default)]
    pub credentials: bool,
}

/// The database is clean.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
pub struct ResetAnswer {
    pub credentials: bool,
    pub reset: bool,
    pub took_ms: f64,
}

/// SaveTestControlSnapshot's body.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotBody {
    /// 1 to 64 letters, digits, `.`, `-`, `_`.
    pub name: String,
}

/// A saved snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct SnapshotJson {
    /// RFC 3339 UTC with milliseconds.
    pub created_at: String,
    pub name: String,
    pub size_bytes: u64,
}

/// ListTestControlSnapshots.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct SnapshotList {
    pub snapshots: Vec<SnapshotJson>,
}

/// RestoreTestControlSnapshot: the state is the snapshot's.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
pub struct RestoredSnapshot {
    pub restored: String,
    pub took_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_serialise_with_sorted_keys() {
        let every = RuleJson {
            error: Some(InjectedError {
                error_code: "DMS.00500000".into(),
                error_msg: "m".into(),
                retry_after: Some(1),
                status_code: 500,
            }),
            fail_step: Some(FailInput { reason: "r".into() }),
            fired: 1,
            id: 2,
            instance_id: Some("i".into()),
            latency_ms: Some(3),
            matched: 4,
            operation: Some("ListInstances".into()),
            probability: 0.5,
            project_id: Some("p".into()),
            retired: false,
            seed: 5,
            step: Some("s".into()),
            step_duration_factor: Some(1.5),
            step_duration_ms: Some(6),
            task_name: Some("t".into()),
            times: Some(7),
        };
        assert!(crate::tests::sorted(&RulesAnswer { removed: Some(1), rules: vec![every] }));
        let clock = ClockAnswer { frozen: true, now: "2027-01-01T00:00:00.000Z".into(), now_ms: 1, offset_ms: 2 };
        assert!(crate::tests::sorted(&clock));
        assert!(crate::tests::sorted(&ResetAnswer { credentials: true, reset: true, took_ms: 1.5 }));
        let snapshot = SnapshotJson { created_at: "2027-01-01T00:00:00.000Z".into(), name: "n".into(), size_bytes: 1 };
        assert!(crate::tests::sorted(&SnapshotList { snapshots: vec![snapshot] }));
        assert!(crate::tests::sorted(&RestoredSnapshot { restored: "n".into(), took_ms: 1.5 }));
    }
}
