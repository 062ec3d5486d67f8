//! Retention: which finished task records a project's policy removes, and what a bulk delete
//! matches. Engines read candidate rows, ask these rules, and delete what they decide; the
//! rules are written once, here.
//!
//! A policy has three parts: a default age (finished tasks whose end is older are removed), ages
//! per task name that replace the default for that name (`null`: keep that name forever), and
//! a cap on the finished records each instance keeps (the oldest beyond it are removed, whatever
//! their name). A task's age counts from when it ended (`updated_at` of a finished record).
//! Waiting, scheduled and running tasks are never candidates ([`super::deletion::may_delete`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::deletion::may_delete;
use super::task::{TaskRecord, TaskStatus};
use super::{CompactTime, Invalid};

pub const DAY_MS: i64 = 86_400_000;
/// The longest age a policy may give: 100 years.
pub const MAX_DAYS: u32 = 36_500;
/// The most per-name overrides one policy holds.
pub const MAX_OVERRIDES: usize = 64;
/// The longest task name an override or a filter may name (task names are short camelCase words).
pub const MAX_NAME_LEN: usize = 64;
/// The largest per-instance cap.
pub const MAX_CAP: u64 = 10_000_000;

/// A project's retention policy as stored and as the API shows it (fields in alphabetical
/// order, as every answer of the wire is).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Finished tasks are removed this many days after they ended; `null` keeps them (1-36500).
    #[serde(default)]
    pub max_age_days: Option<u32>,
    /// The most finished records each instance keeps; the oldest beyond it are removed
    /// (`null`: no cap; 1-10000000).
    #[serde(default)]
    pub max_tasks_per_instance: Option<u64>,
    /// Per task name: days that replace `max_age_days` for that name; `null` keeps that name
    /// forever (at most 64 names of 1-64 letters, digits, `_`, `-` or `.`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub overrides: BTreeMap<String, Option<u32>>,
}

/// A task name as policies and filters take it.
pub fn valid_task_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl RetentionPolicy {
    /// A policy parsed from an API body, every bound checked; `Invalid::Body` for a document
    /// that is not a policy, `Invalid::Param` naming the field that is out of range.
    pub fn from_json(v: serde_json::Value) -> Result<Self, Invalid> {
        let p: RetentionPolicy = serde_json::from_value(v).map_err(|_| Invalid::Body)?;
        p.validate()?;
        Ok(p)
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        let days_ok = |d: &Option<u32>| d.is_none_or(|d| (1..=MAX_DAYS).contains(&d));
        if !days_ok(&self.max_age_days) {
            return Err(Invalid::Param("max_age_days"));
        }
        if self.overrides.len() > MAX_OVERRIDES
            || self.overrides.iter().any(|(name, days)| !valid_task_name(name) || !days_ok(days))
        {
            return Err(Invalid::Param("overrides"));
        }
        if self.max_tasks_per_instance.is_some_and(|c| !(1..=MAX_CAP).contains(&c)) {
            return Err(Invalid::Param("max_tasks_per_instance"));
        }
        Ok(())
    }

    /// Whether this policy can ever remove anything.
    pub fn prunes(&self) -> bool {
        self.max_age_days.is_some()
            || self.overrides.values().any(Option::is_some)
            || self.max_tasks_per_instance.is_some()
    }

    /// How long a finished task named `name` is kept (ms), `None` for ever.
    pub fn max_age_ms(&self, name: &str) -> Option<i64> {
        let days = match self.overrides.get(name) {
            Some(over) => *over,
            None => self.max_age_days,
        };
        days.map(|d| i64::from(d) * DAY_MS)
    }

    /// Tasks that ended before this may have aged out at `now` (the shortest age of the policy);
    /// `None` when no age applies. Engines scan finished tasks up to it and ask [`Self::expired`].
    pub fn scan_bound(&self, now: i64) -> Option<i64> {
        let shortest = self.overrides.values().copied().chain([self.max_age_days]).flatten().min()?;
        Some(now - i64::from(shortest) * DAY_MS)
    }

    /// Whether the age rule removes `task` at `now`. Only a finished task is ever removed.
    pub fn expired(&self, task: &Candidate, now: i64) -> bool {
        task.finished() && self.max_age_ms(&task.name).is_some_and(|age| task.ended_at < now - age)
    }

    /// How many of an instance's `finished` records the cap removes (the oldest-created ones).
    pub fn excess(&self, finished: u64) -> u64 {
        self.max_tasks_per_instance.map_or(0, |cap| finished.saturating_sub(cap))
    }
}

/// A finished task as the pruner sees it: enough to decide, and to delete it only while it is
/// still as read (a cancelled scheduled task can be resumed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: super::TaskId,
    pub name: String,
    pub status: TaskStatus,
    /// `updated_at`: when a finished task ended.
    pub ended_at: i64,
    /// When the task was created: the order the pruner reads an instance's tasks in.
    pub created_at: i64,
}

impl Candidate {
    pub fn finished(&self) -> bool {
        self.status.is_terminal()
    }
}

/// Why the pruner removed a batch, as its audit event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneRule {
    Age,
    Cap,
}

impl PruneRule {
    pub fn as_str(self) -> &'static str {
        match self {
            PruneRule::Age => "age",
            PruneRule::Cap => "cap",
        }
    }
}

/// The audit action of a pruning batch.
pub const PRUNE_ACTION: &str = "kafka-tasks:retention:prune";

/// The audit detail of a pruning batch: the rule and the records it removed.
pub fn prune_detail(rule: PruneRule, removed: &[TaskRecord]) -> serde_json::Value {
    let ids: Vec<&str> = removed.iter().map(|t| t.id.as_str()).collect();
    serde_json::json!({ "rule": rule.as_str(), "deleted": removed.len(), "task_ids": ids })
}

/// The most records one bulk delete removes; a request that matches more removes the oldest
/// this many and says `"more": true`.
pub const BULK_DELETE_MAX: u64 = 1_000;

/// What a bulk delete removes: finished background tasks of one instance created within
/// `[from, to]` (epoch ms, inclusive), of the given statuses and name when set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkFilter {
    pub from: i64,
    pub to: i64,
    /// Empty: every finished status.
    pub statuses: Vec<TaskStatus>,
    pub name: Option<String>,
}

/// The query keys a bulk delete takes; any other is refused (a mistyped filter must not widen
/// a deletion).
pub const BULK_KEYS: [&str; 4] = ["begin_time", "end_time", "status", "name"];

impl BulkFilter {
    /// Parses the query of a bulk delete. `end_time` is required, `begin_time` defaults to the
    /// beginning of time; both `YYYYMMDDHHmmss` (UTC) as the list takes them. `status` is one or
    /// more of `SUCCESS`, `FAILED`, `CANCELLED`, comma-separated; a running state is refused.
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Self, Invalid> {
        let time = |k: &str| get(k).map(|s| s.parse::<CompactTime>().map_err(|_| Invalid::Timestamp)).transpose();
        let to = time("end_time")?.ok_or(Invalid::Param("end_time"))?;
        let from = time("begin_time")?;
        if from.is_some_and(|f| f > to) {
            return Err(Invalid::Param("begin_time"));
        }
        let mut statuses = Vec::new();
        if let Some(s) = get("status") {
            for part in s.split(',') {
                let status = TaskStatus::parse(part.trim())
                    .filter(|s| matches!(s, TaskStatus::Success | TaskStatus::Failed | TaskStatus::Cancelled))
                    .ok_or(Invalid::Param("status"))?;
                if !statuses.contains(&status) {
                    statuses.push(status);
                }
            }
        }
        let name = get("name");
        if name.as_deref().is_some_and(|n| !valid_task_name(n)) {
            return Err(Invalid::Param("name"));
        }
        Ok(BulkFilter { from: from.map_or(i64::MIN, |f| f.0), to: to.end_of_second(), statuses, name })
    }

    /// The statuses the filter takes: those given, else every finished one.
    pub fn statuses_or_finished(&self) -> Vec<TaskStatus> {
        if self.statuses.is_empty() {
            vec![TaskStatus::Success, TaskStatus::Failed, TaskStatus::Cancelled]
        } else {
            self.statuses.clone()
        }
    }

    /// Whether a bulk delete with this filter removes `task`: finished, in range, and matching.
    pub fn matches(&self, task: &TaskRecord) -> bool {
        may_delete(task)
            && (self.from..=self.to).contains(&task.created_at)
            && (self.statuses.is_empty() || self.statuses.contains(&task.status))
            && self.name.as_ref().is_none_or(|n| *n == task.name)
    }

    /// Of `rows` read oldest first (at most `limit + 1`), the records one request removes (at
    /// most `limit`, each one [`Self::matches`]) and whether more match than it removes.
    pub fn select(&self, rows: Vec<TaskRecord>, limit: u64) -> (Vec<TaskRecord>, bool) {
        let mut chosen: Vec<TaskRecord> = rows.into_iter().filter(|r| self.matches(r)).collect();
        let more = chosen.len() as u64 > limit;
        chosen.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        (chosen, more)
    }

    /// The filter as the request's audit event records it.
    pub fn audit_detail(&self, deleted: usize, more: bool) -> serde_json::Value {
        let statuses: Vec<&str> = self.statuses.iter().map(|s| s.as_str()).collect();
        serde_json::json!({
            "deleted": deleted, "more": more,
            "filter": { "from": self.from, "to": self.to, "status": statuses, "name": self.name },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskId;
    use crate::placement::tests::task;
    use serde_json::json;

    fn cand(name: &str, status: TaskStatus, ended_at: i64) -> Candidate {
        Candidate { id: TaskId::generate(), name: name.into(), status, ended_at, created_at: ended_at }
    }

    #[test]
    fn age_counts_from_the_end_and_an_override_replaces_it() {
        let p = RetentionPolicy::from_json(json!({
            "max_age_days": 30, "overrides": {"createInstance": 365, "restart": null}
        }))
        .expect("valid");
        let now = 400 * DAY_MS;
        assert!(p.expired(&cand("x", TaskStatus::Success, now - 31 * DAY_MS), now));
        assert!(!p.expired(&cand("x", TaskStatus::Success, now - 29 * DAY_MS), now));
        assert!(!p.expired(&cand("createInstance", TaskStatus::Failed, now - 31 * DAY_MS), now));
        assert!(p.expired(&cand("createInstance", TaskStatus::Failed, now - 366 * DAY_MS), now));
        assert!(!p.expired(&cand("restart", TaskStatus::Cancelled, 0), now));
        assert_eq!(p.scan_bound(now), Some(now - 30 * DAY_MS));
    }

    #[test]
    fn a_running_or_waiting_task_never_expires() {
        let p = RetentionPolicy { max_age_days: Some(1), ..Default::default() };
        for status in [TaskStatus::Created, TaskStatus::Executing] {
            assert!(!p.expired(&cand("x", status, 0), 100 * DAY_MS), "{status:?}");
        }
    }

    #[test]
    fn the_cap_removes_only_the_excess() {
        let p = RetentionPolicy { max_tasks_per_instance: Some(10), ..Default::default() };
        assert_eq!(p.excess(25), 15);
        assert_eq!(p.excess(3), 0);
        assert_eq!(RetentionPolicy::default().excess(1_000), 0);
        assert!(p.prunes() && !RetentionPolicy::default().prunes());
        assert_eq!(p.scan_bound(0), None);
    }

    #[test]
    fn policies_out_of_bounds_are_refused() {
        for (body, err) in [
            (json!({"max_age_days": 0}), Invalid::Param("max_age_days")),
            (json!({"max_age_days": 36_501}), Invalid::Param("max_age_days")),
            (json!({"max_age_days": -1}), Invalid::Body),
            (json!({"max_age_days": "30"}), Invalid::Body),
            (json!({"overrides": {"": 3}}), Invalid::Param("overrides")),
            (json!({"overrides": {"a b": 3}}), Invalid::Param("overrides")),
            (json!({"overrides": {"x".repeat(65): 3}}), Invalid::Param("overrides")),
            (json!({"overrides": {"x": 0}}), Invalid::Param("overrides")),
            (json!({"max_tasks_per_instance": 0}), Invalid::Param("max_tasks_per_instance")),
            (json!({"max_tasks_per_instance": 10_000_001}), Invalid::Param("max_tasks_per_instance")),
            (json!({"keep": 3}), Invalid::Body),
        ] {
            assert_eq!(RetentionPolicy::from_json(body.clone()), Err(err), "{body}");
        }
        let many: serde_json::Map<String, serde_json::Value> =
            (0..=MAX_OVERRIDES).map(|i| (format!("n{i}"), json!(1))).collect();
        assert_eq!(RetentionPolicy::from_json(json!({ "overrides": many })), Err(Invalid::Param("overrides")));
    }

    #[test]
    fn a_bulk_filter_needs_an_end_and_takes_only_finished_states() {
        let q = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            BulkFilter::parse(move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        };
        assert_eq!(q(&[]), Err(Invalid::Param("end_time")));
        assert_eq!(q(&[("end_time", "2026")]), Err(Invalid::Timestamp));
        assert_eq!(q(&[("end_time", "20261128000000"), ("status", "EXECUTING")]), Err(Invalid::Param("status")));
        assert_eq!(
            q(&[("end_time", "20261128000000"), ("begin_time", "20261129000000")]),
            Err(Invalid::Param("begin_time"))
        );
        assert_eq!(q(&[("end_time", "20261128000000"), ("name", "a/b")]), Err(Invalid::Param("name")));
        let f = q(&[("end_time", "20261128000000"), ("status", "FAILED,CANCELLED,FAILED"), ("name", "restart")])
            .expect("valid");
        assert_eq!(f.statuses, [TaskStatus::Failed, TaskStatus::Cancelled]);
        let mut t = task(TaskStatus::Failed, None);
        assert!(f.matches(&t));
        t.status = TaskStatus::Success;
        assert!(!f.matches(&t));
        t.status = TaskStatus::Executing;
        let all = q(&[("end_time", "20261128000000")]).expect("valid");
        assert!(!all.matches(&t), "a running task never matches");
    }
}
