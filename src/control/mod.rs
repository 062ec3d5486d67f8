//! Test control (`serve --test-control`): what people testing their automation drive — fault
//! rules ([`faults`]), the movable clock, and a state reset. Off unless the flag is given; a
//! server without it builds none of this, so it never reads a stored rule or clock offset.
//!
//! What is stored (in `test_control`, one JSON value per key) is shared by every process on the
//! database: each reads it at start-up and again every [`REFRESH`], so that on PostgreSQL a
//! clock moved through one process is the clock of all. Firing counts and random sequences are
//! kept per process between changes of the list (see docs/testing.md).

pub mod faults;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::domain::Timestamp;
use crate::domain::clock::ClockSetting;
use crate::domain::{Clock, TaskRecord};
use crate::storage::{AuditEvent, ControlStore, SnapshotSaved, StepOutcome, Storage, StoreError, StoreResult};
use crate::wire::control::{ClockAnswer, ResetAnswer, RestoredSnapshot, RulesAnswer, SnapshotJson, SnapshotList};
use faults::{BadRule, Effect, FaultSet, Fired, Site};

/// How often a process reads what other processes stored.
pub const REFRESH: Duration = Duration::from_secs(1);

const FAULTS_KEY: &str = "faults";
const CLOCK_KEY: &str = "clock";

/// The audit action of an injected fault.
pub const INJECTED_ACTION: &str = "kafka-tasks:testControl:faultInjected";
/// The metric counting injected faults, by effect (a fixed set: error, latency, fail_step,
/// step_duration).
pub const INJECTED_METRIC: &str = "kafka_tasks_control_faults_injected_total";

/// The most snapshots stored at once.
pub const MAX_SNAPSHOTS: u64 = 16;
/// The largest snapshot, in bytes of its JSON (about 100,000 tasks with their events).
pub const MAX_SNAPSHOT_BYTES: u64 = 128 << 20;
/// The longest snapshot name.
pub const MAX_SNAPSHOT_NAME: usize = 64;

/// The latest time the clock may be set or advanced to (the year 9999).
const LATEST_MS: i64 = 253_402_300_799_000;

/// Why a control request was refused (a 400 with this text).
#[derive(Debug)]
pub enum ControlError {
    Bad(String),
    Store(StoreError),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        ControlError::Store(e)
    }
}

impl From<BadRule> for ControlError {
    fn from(BadRule(why): BadRule) -> Self {
        ControlError::Bad(why)
    }
}

/// The test control of one server.
pub struct TestControl {
    storage: Storage,
    clock: Clock,
    engine_wake: Arc<Notify>,
    faults: Mutex<FaultSet>,
    /// One change at a time: a change is stored before it is applied here.
    changing: tokio::sync::Mutex<()>,
}

/// What a step is to do, after the rules had their say.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    pub duration_ms: u64,
    /// Fail the step with this reason when its time has passed; the firing rule's id.
    pub fail: Option<(u64, String)>,
}

impl TestControl {
    /// Reads the stored rules and clock and puts the clock where it was left.
    pub async fn open(storage: Storage, clock: Clock, engine_wake: Arc<Notify>) -> anyhow::Result<Arc<Self>> {
        let this = Arc::new(TestControl {
            storage,
            clock,
            engine_wake,
            faults: Mutex::default(),
            changing: tokio::sync::Mutex::new(()),
        });
        this.refresh().await?;
        Ok(this)
    }

    fn store(&self) -> &dyn ControlStore {
        self.storage.control.as_ref()
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, FaultSet> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes what other processes stored: a newer rule list, and the clock.
    pub async fn refresh(&self) -> StoreResult<()> {
        if let Some(text) = self.store().control_value(FAULTS_KEY).await? {
            let stored: FaultSet =
                serde_json::from_str(&text).map_err(|e| StoreError::corrupt("test_control.faults").caused_by(e))?;
            let mut mine = self.faults();
            if stored.revision != mine.revision {
                *mine = stored;
            }
        }
        if let Some(text) = self.store().control_value(CLOCK_KEY).await? {
            let setting: ClockSetting =
                serde_json::from_str(&text).map_err(|e| StoreError::corrupt("test_control.clock").caused_by(e))?;
            if setting != self.clock.setting() {
                self.clock.apply(setting);
                self.engine_wake.notify_one();
            }
        }
        Ok(())
    }

    /// Refreshes every [`REFRESH`] until `shutdown`.
    pub async fn refresh_forever(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = self.refresh().await {
                crate::limited!(warn, &format!("control refresh {e}"), error = %e, "could not read the stored test control");
            }
        }
    }

    // ---- fault rules ----

    pub fn rules_json(&self) -> RulesAnswer {
        let set = self.faults();
        RulesAnswer { removed: None, rules: set.rules.iter().map(faults::Rule::shown).collect() }
    }

    /// Stores `change` applied to the list, then makes it the list; nothing changes when it
    /// refuses or the store fails.
    async fn change_rules<T>(
        &self,
        change: impl FnOnce(&mut FaultSet) -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        let _one = self.changing.lock().await;
        let mut next = self.faults().clone();
        let out = change(&mut next)?;
        if next.rules.len() > faults::MAX_RULES {
            return Err(ControlError::Bad(format!("at most {} rules", faults::MAX_RULES)));
        }
        next.revision += 1;
        let text = serde_json::to_string(&next)
            .map_err(|e| ControlError::Store(StoreError::backend("test control state does not encode").caused_by(e)))?;
        self.store().put_control_value(FAULTS_KEY, &text, self.clock.now()).await?;
        *self.faults() = next;
        Ok(out)
    }

    /// `POST`: the list becomes `rules`.
    pub async fn replace_rules(&self, rules: &[Value]) -> Result<RulesAnswer, ControlError> {
        self.change_rules(|set| {
            let parsed = faults::parse_rules(rules, set.next_id + 1)?;
            set.next_id += parsed.len() as u64;
            set.rules = parsed;
            Ok(())
        })
        .await?;
        Ok(self.rules_json())
    }

    /// `PATCH`: `rules` go at the end of the list.
    pub async fn append_rules(&self, rules: &[Value]) -> Result<RulesAnswer, ControlError> {
        self.change_rules(|set| {
            if set.rules.len() + rules.len() > faults::MAX_RULES {
                return Err(ControlError::Bad(format!("at most {} rules", faults::MAX_RULES)));
            }
            let parsed = faults::parse_rules(rules, set.next_id + 1)?;
            set.next_id += parsed.len() as u64;
            set.rules.extend(parsed);
            Ok(())
        })
        .await?;
        Ok(self.rules_json())
    }

    /// `DELETE`: removes the rules equal to one of `filters` in every field it gives (`{}`
    /// matches every rule), in one change.
    pub async fn remove_rules(&self, filters: &[serde_json::Map<String, Value>]) -> Result<RulesAnswer, ControlError> {
        let removed =
            self.change_rules(|set| Ok(filters.iter().map(|f| set.remove_matching(f)).sum::<usize>())).await?;
        Ok(RulesAnswer { removed: Some(removed), ..self.rules_json() })
    }

    /// The fault an API call meets, if a rule fires (counted, logged; the caller audits it).
    pub fn api_fault(&self, operation: &str, project_id: &str, instance_id: Option<&str>) -> Option<Fired> {
        let fired = {
            let mut set = self.faults();
            if !set.has_live(true) {
                return None;
            }
            set.fire(Site::Api { operation, project_id, instance_id })?
        };
        injected(&fired, json!({ "operation": operation, "project_id": project_id, "instance_id": instance_id }));
        Some(fired)
    }

    /// What step `step` of `task` is to do, given its planned duration.
    pub fn plan_step(&self, task: &TaskRecord, step: usize, planned_ms: u64) -> StepPlan {
        let plain = StepPlan { duration_ms: planned_ms, fail: None };
        let Some(s) = task.steps.get(step) else { return plain };
        let fired = {
            let mut set = self.faults();
            if !set.has_live(false) {
                return plain;
            }
            set.fire(Site::Step {
                project_id: task.project_id.as_str(),
                instance_id: task.instance_id.as_str(),
                task_name: &task.name,
                step: &s.name,
            })
        };
        let Some(fired) = fired else { return plain };
        injected(&fired, json!({ "task_id": task.id.as_str(), "task_name": task.name, "step": s.name }));
        match fired.effect {
            Effect::FailStep { reason } => StepPlan { duration_ms: planned_ms, fail: Some((fired.rule, reason)) },
            Effect::StepDuration { ms } => StepPlan { duration_ms: ms, fail: None },
            Effect::StepFactor { factor } => StepPlan {
                duration_ms: (planned_ms as f64 * factor).min(faults::MAX_STEP_MS as f64) as u64,
                fail: None,
            },
            Effect::Error { .. } | Effect::Latency { .. } => plain,
        }
    }

    /// Fails step `step` of `task` as a failed executor run does (the same store call): the task
    /// ends `FAILED`, the instance gets its status back, the reason shows in the executor view,
    /// and the audit records the injection. Retries while the store is unavailable.
    pub async fn fail_step(&self, owner: &str, task: &TaskRecord, step: usize, rule: u64, reason: &str) -> StepOutcome {
        let runs = &self.storage.runs;
        let step_name = task.steps.get(step).map_or("", |s| s.name.as_str());
        loop {
            let now = self.clock.now_ms();
            let attempt = match runs.begin_attempt(owner, &task.id, step, None, Timestamp::from_ms(now)).await {
                Ok(Some(a)) => a,
                Ok(None) => return StepOutcome::Lost,
                Err(e) => {
                    crate::limited!(warn, &format!("inject {e}"), error = %e, "could not record an injected failure; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let audit = AuditEvent {
                at: now,
                request_id: String::new(),
                project_id: task.project_id.as_str().to_owned(),
                user_id: String::new(),
                user_name: crate::domain::ENGINE_USER.to_owned(),
                access_key: None,
                action: INJECTED_ACTION.to_owned(),
                target: task.id.as_str().to_owned(),
                status: 0,
                detail: Some(json!({
                    "rule": rule,
                    "effect": "fail_step",
                    "instance_id": task.instance_id.as_str(),
                    "task_name": task.name,
                    "step": step_name,
                    "attempt": attempt,
                    "reason": reason,
                })),
            };
            match runs
                .fail_step(owner, &task.id, step, Timestamp::from_ms(now), reason.to_owned(), String::new(), audit)
                .await
            {
                Ok(o) => return o,
                Err(e) => {
                    crate::limited!(warn, &format!("inject {e}"), error = %e, "could not record an injected failure; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    // ---- the clock ----

    pub fn clock_json(&self) -> ClockAnswer {
        let s = self.clock.setting();
        let now = self.clock.now_ms();
        ClockAnswer {
            frozen: s.frozen_at.is_some(),
            now: crate::domain::time::iso_ms(now),
            now_ms: now,
            offset_ms: s.offset_ms,
        }
    }

    async fn move_clock(&self, to: ClockSetting) -> Result<ClockAnswer, ControlError> {
        let text = serde_json::to_string(&to)
            .map_err(|e| ControlError::Store(StoreError::backend("test control state does not encode").caused_by(e)))?;
        self.store().put_control_value(CLOCK_KEY, &text, self.clock.now()).await?;
        self.clock.apply(to);
        // Scheduled tasks now due, and steps whose time has passed, go at once.
        self.engine_wake.notify_one();
        tracing::warn!(offset_ms = to.offset_ms, frozen = to.frozen_at.is_some(), now = %crate::domain::time::iso_ms(self.clock.now_ms()), "test control moved the clock");
        Ok(self.clock_json())
    }

    /// Moves the clock forward by `ms`.
    pub async fn advance(&self, ms: i64) -> Result<ClockAnswer, ControlError> {
        let _one = self.changing.lock().await;
        if ms < 0 {
            return Err(ControlError::Bad(
                "the clock only moves forward: stored records never see time go back".into(),
            ));
        }
        let s = self.clock.setting();
        let now = self.clock.now_ms();
        if now.saturating_add(ms) > LATEST_MS {
            return Err(ControlError::Bad("the clock cannot go past the year 9999".into()));
        }
        self.move_clock(ClockSetting { offset_ms: s.offset_ms + ms, frozen_at: s.frozen_at.map(|f| f + ms) }).await
    }

    /// Sets the clock to `at` (epoch ms), which must not be earlier than now.
    pub async fn set(&self, at: i64) -> Result<ClockAnswer, ControlError> {
        let _one = self.changing.lock().await;
        let now = self.clock.now_ms();
        if at < now {
            return Err(ControlError::Bad(format!(
                "cannot set the clock back to {}: it reads {} and stored records never see time go back",
                crate::domain::time::iso_ms(at),
                crate::domain::time::iso_ms(now)
            )));
        }
        if at > LATEST_MS {
            return Err(ControlError::Bad("the clock cannot go past the year 9999".into()));
        }
        let s = self.clock.setting();
        let offset_ms = at - crate::domain::now_ms();
        self.move_clock(ClockSetting { offset_ms, frozen_at: s.frozen_at.map(|_| at) }).await
    }

    /// Stops the clock where it is.
    pub async fn freeze(&self) -> Result<ClockAnswer, ControlError> {
        let _one = self.changing.lock().await;
        let s = self.clock.setting();
        if s.frozen_at.is_some() {
            return Ok(self.clock_json());
        }
        self.move_clock(ClockSetting { offset_ms: s.offset_ms, frozen_at: Some(self.clock.now_ms()) }).await
    }

    /// Lets the clock run again from where it stood (it does not jump to catch up).
    pub async fn resume(&self) -> Result<ClockAnswer, ControlError> {
        let _one = self.changing.lock().await;
        let s = self.clock.setting();
        let Some(frozen) = s.frozen_at else {
            return Ok(self.clock_json());
        };
        self.move_clock(ClockSetting { offset_ms: frozen - crate::domain::now_ms(), frozen_at: None }).await
    }

    // ---- snapshots ----

    /// Saves the task tables as the snapshot `name` (replacing one of that name).
    pub async fn save_snapshot(&self, name: &str) -> Result<SnapshotJson, ControlError> {
        snapshot_name(name)?;
        let _one = self.changing.lock().await;
        let saved = self.store().save_snapshot(name, self.clock.now(), MAX_SNAPSHOTS, MAX_SNAPSHOT_BYTES).await?;
        match saved {
            SnapshotSaved::Saved(info) => Ok(snapshot_json(&info)),
            SnapshotSaved::TooMany => Err(ControlError::Bad(format!(
                "at most {MAX_SNAPSHOTS} snapshots are kept; delete one first (DELETE …/test-control/snapshots/NAME)"
            ))),
            SnapshotSaved::TooBig(size) => Err(ControlError::Bad(format!(
                "the state is larger than a snapshot may be ({} MiB at least, at most {} MiB)",
                size >> 20,
                MAX_SNAPSHOT_BYTES >> 20
            ))),
        }
    }

    /// Loads the snapshot `name`: `None` when there is none of that name. The fault rules and
    /// the clock stay as they are (time never goes back); the engine looks at the tasks at once.
    pub async fn restore_snapshot(&self, name: &str) -> Result<Option<RestoredSnapshot>, ControlError> {
        snapshot_name(name)?;
        let _one = self.changing.lock().await;
        let started = std::time::Instant::now();
        if !self.store().restore_snapshot(name).await? {
            return Ok(None);
        }
        self.engine_wake.notify_one();
        let took = started.elapsed();
        tracing::warn!(snapshot = name, took_ms = took.as_millis() as u64, "test control restored a snapshot");
        Ok(Some(RestoredSnapshot { restored: name.to_owned(), took_ms: took.as_secs_f64() * 1000.0 }))
    }

    pub async fn list_snapshots(&self) -> Result<SnapshotList, ControlError> {
        let list = self.store().list_snapshots().await?;
        Ok(SnapshotList { snapshots: list.iter().map(snapshot_json).collect() })
    }

    /// `false` when there is none of that name.
    pub async fn delete_snapshot(&self, name: &str) -> Result<bool, ControlError> {
        snapshot_name(name)?;
        let _one = self.changing.lock().await;
        Ok(self.store().delete_snapshot(name).await?)
    }

    // ---- reset ----

    /// Back to a clean database: every record but the credentials (and with `credentials`,
    /// every credential but `keep`, the caller's own); the fault rules go too. The clock stays
    /// where it is: time never goes back.
    pub async fn reset(&self, credentials: bool, keep: Option<&str>) -> Result<ResetAnswer, ControlError> {
        let started = std::time::Instant::now();
        let keep = if credentials { Some(keep.unwrap_or_default()) } else { None };
        self.storage.control.reset_state(keep).await?;
        self.change_rules(|set| {
            set.rules.clear();
            Ok(())
        })
        .await?;
        let took = started.elapsed();
        tracing::warn!(credentials, took_ms = took.as_millis() as u64, "test control reset the database");
        Ok(ResetAnswer { credentials, reset: true, took_ms: took.as_secs_f64() * 1000.0 })
    }
}

/// A snapshot name: 1 to [`MAX_SNAPSHOT_NAME`] letters, digits, `.`, `-` or `_`.
fn snapshot_name(name: &str) -> Result<(), ControlError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SNAPSHOT_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(ControlError::Bad(format!("a snapshot name has 1 to {MAX_SNAPSHOT_NAME} letters, digits, '.', '-' or '_'")))
    }
}

fn snapshot_json(info: &crate::storage::SnapshotInfo) -> SnapshotJson {
    SnapshotJson {
        created_at: crate::domain::time::iso_ms(info.created_at),
        name: info.name.clone(),
        size_bytes: info.size_bytes,
    }
}

/// Counts and logs a firing.
fn injected(fired: &Fired, at: Value) {
    metrics::counter!(INJECTED_METRIC, "effect" => fired.effect.label()).increment(1);
    tracing::warn!(rule = fired.rule, effect = fired.effect.label(), site = %at, "test control injected a fault");
}

/// Parses an amount of time: `90s`, `15m`, `2h`, `1d`, `500ms`, or bare milliseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "ms"),
    };
    let n: i64 = num.parse().ok()?;
    let per = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(per).filter(|ms| *ms <= LATEST_MS)
}

/// Parses an RFC 3339 time into epoch ms.
pub fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s.trim()).ok().map(|t| t.timestamp_millis())
}

/// Whether a database URL may be used with test control: SQLite, or a PostgreSQL server on
/// this machine (a reset wipes it; a shared one is refused).
pub fn database_allowed(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Ok(());
    }
    let config: tokio_postgres::Config =
        url.parse().map_err(|e| format!("--test-control: the PostgreSQL URL does not parse: {e}"))?;
    let hosts = config.get_hosts();
    let local = !hosts.is_empty()
        && hosts.iter().all(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => {
                name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(_) => true,
        })
        // `hostaddr` overrides where a host name connects: `host=localhost&hostaddr=10.0.0.5`
        // would pass the check above and reach another machine.
        && config.get_hostaddrs().iter().all(|ip| ip.is_loopback());
    if local {
        Ok(())
    } else {
        Err("--test-control is refused with a PostgreSQL server that is not on this machine (loopback): \
             test control resets and rewrites the whole database, and must never reach a shared one"
            .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_database_on_this_machine_is_allowed() {
        assert!(database_allowed("sqlite:data/kafka-tasks.db").is_ok());
        assert!(database_allowed("postgres://postgres@127.0.0.1:5432/db").is_ok());
        assert!(database_allowed("postgres://postgres@localhost/db").is_ok());
        assert!(database_allowed("postgres://postgres@10.0.0.5/db").is_err());
        assert!(database_allowed("postgres://postgres@127.0.0.1,db.example/db").is_err());
        // A hostaddr decides where a connection goes, whatever the host name says.
        assert!(database_allowed("postgres://postgres@localhost/db?hostaddr=10.0.0.5").is_err());
        assert!(database_allowed("postgres://postgres@localhost/db?hostaddr=127.0.0.1").is_ok());
    }

    #[test]
    fn durations_and_times_parse() {
        assert_eq!(parse_duration("2h"), Some(7_200_000));
        assert_eq!(parse_duration("90s"), Some(90_000));
        assert_eq!(parse_duration("500"), Some(500));
        assert_eq!(parse_duration("1d"), Some(86_400_000));
        assert_eq!(parse_duration("-1h"), None);
        assert_eq!(parse_duration("2x"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
        assert_eq!(parse_time("2027-01-01T02:00:00Z"), Some(1_798_768_800_000));
    }

    #[test]
    fn only_a_local_postgres_is_allowed() {
        assert!(database_allowed("sqlite:data/x.db").is_ok());
        assert!(database_allowed("postgres://postgres@127.0.0.1:5432/x").is_ok());
        assert!(database_allowed("postgres://postgres@localhost/x").is_ok());
        assert!(database_allowed("postgres://postgres@[::1]:5432/x").is_ok());
        assert!(database_allowed("postgres://postgres@db.example.com/x").is_err());
        assert!(database_allowed("postgres://postgres@10.0.0.5/x").is_err());
        assert!(database_allowed("postgres://u@127.0.0.1,db.example.com/x").is_err());
    }
}
