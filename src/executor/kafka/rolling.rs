//! Rolling restarts of a bound cluster, one broker at a time, through the binding's
//! broker-control program ([`super::control`]): restartInstance, the static configs of
//! kafkaConfigModify (and the auto-topic switch), each broker's kernel in upgradeInstance.
//!
//! Before each broker, the checks Strimzi's KafkaRoller makes: the broker serves, no partition
//! of the cluster is under-replicated, and no partition with a replica on the broker would drop
//! below its `min.insync.replicas` without it (a partition whose `min.insync.replicas` is at
//! least its replica count can never be restarted without losing writes; such partitions do not
//! block, and are named in the output). After each broker: its process changed (the program's
//! `status`), it is registered and unfenced again (DescribeCluster), no partition is
//! under-replicated, and a static config asked for is in force there (DescribeConfigs). A check
//! that does not pass before the step's deadline fails the task with the broker and partitions
//! named; nothing further is restarted. The active controller (the metadata quorum's leader)
//! goes last, so that the controller moves once.
//!
//! **Crash safety.** The order, the brokers done and the broker whose restart is being issued
//! (with the incarnation `status` showed before) are kept with the task
//! ([`crate::storage::RunStore::save_state`], under the lease) *before* the program runs. The
//! attempt after a crash reads them: a broker done is not touched again; for the broker that was
//! being restarted, `status` tells whether the restart happened (another incarnation: only the
//! checks are left), did not (the same one: it is restarted, its first restart), or stopped
//! half-way (the program was killed between stop and start: `restart` starts it). The previous
//! attempt's program is dead by then (the run's watcher), so two brokers are never down at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use krafka::admin::{
    ConfigResource, DescribeConfigsOptions, DescribeMetadataQuorumOptions, DescribeTopicsOptions, ListTopicsOptions,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use super::control::{Control, Status};
use super::{CALL_TIMEOUT, Spec, why};
use crate::executor::{Event, StepRun};

/// How often a check is made again while it does not pass.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// The most partitions a failure's reason names.
const NAMED: usize = 10;

/// What is done to each broker in turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    Restart,
    /// Static broker configs (Kafka's names and values), written by the program, then a restart.
    StaticConfig(Vec<(String, String)>),
    /// A restart on another Apache Kafka release.
    Upgrade(String),
}

/// One partition as the checks see it.
#[derive(Debug, Clone)]
struct Partition {
    name: String,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    min_isr: usize,
}

/// The cluster at one moment.
#[derive(Debug, Clone)]
pub(super) struct Snapshot {
    /// Registered and unfenced.
    pub(super) serving: BTreeSet<i32>,
    /// The metadata quorum's leader.
    controller: i32,
    partitions: Vec<Partition>,
}

impl Snapshot {
    /// Every broker the cluster has: those serving and those holding a replica.
    pub(super) fn brokers(&self) -> BTreeSet<i32> {
        let mut all = self.serving.clone();
        all.extend(self.partitions.iter().flat_map(|p| p.replicas.iter().copied()));
        all
    }

    pub(super) fn partitions_count(&self) -> usize {
        self.partitions.len()
    }

    /// The order to restart in: by id, the controller last.
    fn order(&self) -> Vec<i32> {
        let (mut order, controller): (Vec<i32>, Vec<i32>) =
            self.brokers().into_iter().partition(|b| *b != self.controller);
        order.extend(controller);
        order
    }

    fn under_replicated(&self) -> Vec<String> {
        self.partitions
            .iter()
            .filter(|p| p.isr.len() < p.replicas.len())
            .map(|p| format!("{} (in sync {:?} of {:?})", p.name, p.isr, p.replicas))
            .collect()
    }

    /// Why `broker` may not be restarted now; `None` when it may.
    fn blocks_restart(&self, broker: i32) -> Option<String> {
        if !self.serving.contains(&broker) {
            return Some(format!("broker {broker} is not serving (not registered, or fenced)"));
        }
        let missing: Vec<String> = self.brokers().difference(&self.serving).map(i32::to_string).collect();
        if !missing.is_empty() {
            return Some(format!("brokers {} hold replicas but are not serving", missing.join(", ")));
        }
        let under = self.under_replicated();
        if !under.is_empty() {
            return Some(format!("{} partitions are under-replicated: {}", under.len(), named(&under)));
        }
        let drop: Vec<String> = self
            .partitions
            .iter()
            .filter(|p| p.replicas.contains(&broker) && p.min_isr < p.replicas.len())
            .filter(|p| p.isr.iter().filter(|r| **r != broker).count() < p.min_isr)
            .map(|p| format!("{} (in sync {:?}, min.insync.replicas {})", p.name, p.isr, p.min_isr))
            .collect();
        if !drop.is_empty() {
            return Some(format!(
                "without broker {broker}, {} partitions would have fewer in-sync replicas than min.insync.replicas: {}",
                drop.len(),
                named(&drop)
            ));
        }
        None
    }

    /// Why `broker` is not back yet after its restart; `None` when it is.
    fn not_back(&self, broker: i32) -> Option<String> {
        if !self.serving.contains(&broker) {
            return Some(format!("broker {broker} has not registered again (unfenced)"));
        }
        let under = self.under_replicated();
        (!under.is_empty()).then(|| format!("{} partitions are still under-replicated: {}", under.len(), named(&under)))
    }

    /// Partitions that lose writes while `broker` restarts, whatever the order.
    fn unavoidable(&self, broker: i32) -> Vec<String> {
        self.partitions
            .iter()
            .filter(|p| p.replicas.contains(&broker) && p.min_isr >= p.replicas.len())
            .map(|p| p.name.clone())
            .collect()
    }
}

fn named(list: &[String]) -> String {
    let mut s = list.iter().take(NAMED).cloned().collect::<Vec<_>>().join(", ");
    if list.len() > NAMED {
        s.push_str(&format!(" and {} more", list.len() - NAMED));
    }
    s
}

/// DescribeCluster, DescribeQuorum, every topic's partitions and `min.insync.replicas`.
pub(super) async fn snapshot(kafka: &krafka::Kafka) -> Result<Snapshot, String> {
    let cluster = crate::kafka::describe(kafka, CALL_TIMEOUT).await.map_err(why)?;
    let serving = cluster.brokers.iter().filter(|b| !b.fenced).map(|b| b.id).collect();
    let admin = kafka.admin();
    // In KRaft, DescribeCluster names a random broker as the controller; the quorum's leader is
    // the active controller.
    let controller =
        match admin.describe_metadata_quorum(DescribeMetadataQuorumOptions::default().timeout(CALL_TIMEOUT)).await {
            Ok(q) if q.leader_id >= 0 => q.leader_id,
            _ => cluster.controller_id,
        };
    let names = admin
        .list_topics(ListTopicsOptions::default().include_internal(true).timeout(CALL_TIMEOUT))
        .await
        .map_err(why)?;
    let topics = if names.is_empty() {
        Default::default()
    } else {
        admin.describe_topics(&names, DescribeTopicsOptions::default().timeout(CALL_TIMEOUT)).await.map_err(why)?
    };
    let min_isr: BTreeMap<String, usize> = if names.is_empty() {
        BTreeMap::new()
    } else {
        let options = DescribeConfigsOptions::default()
            .timeout(CALL_TIMEOUT)
            .config_names(vec!["min.insync.replicas".to_owned()]);
        let described = admin.describe_configs(names.iter().map(ConfigResource::topic), options).await.map_err(why)?;
        names
            .iter()
            .filter_map(|n| {
                let entries = described.get(&ConfigResource::topic(n))?.as_ref().ok()?;
                let v = entries.iter().find(|e| e.name == "min.insync.replicas")?.value.as_deref()?.parse().ok()?;
                Some((n.clone(), v))
            })
            .collect()
    };
    let mut partitions = Vec::new();
    for (name, described) in topics {
        // A topic deleted between the listing and the description is no longer the checks' concern.
        let Ok(topic) = described else { continue };
        let min = min_isr.get(&name).copied().unwrap_or(1);
        for p in topic.partitions {
            partitions.push(Partition {
                name: format!("{name}-{}", p.partition),
                replicas: p.replicas,
                isr: p.isr,
                min_isr: min,
            });
        }
    }
    partitions.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Snapshot { serving, controller, partitions })
}

/// One step of restartInstance on a bound cluster (`pre_check`, `rolling_restart`, `health_check`).
pub(super) async fn restart_step(
    spec: &Spec,
    req: &StepRun<'_>,
    events: &mpsc::Sender<Event>,
) -> Result<String, String> {
    match req.step_name {
        "pre_check" => pre_check(spec, req).await,
        "rolling_restart" => roll(spec, req, events, &Action::Restart, None).await,
        "health_check" => {
            let health = health_check(spec).await?;
            let kept = Kept::load(req).await?;
            let rolled = kept.all.get("rolling").and_then(|r| r.get("rolling_restart")).and_then(|r| r.get("summary"));
            Ok(match rolled.and_then(Value::as_str) {
                Some(rolled) => format!("{health}; {rolled}"),
                None => health,
            })
        }
        other => Err(format!("step {other} of {} is not done on a bound cluster", req.operation)),
    }
}

/// Before anything is restarted: a broker-control program the operator allows, and a cluster
/// healthy now (every broker serving, nothing under-replicated). Not waited for: a cluster
/// already degraded fails the task at once, with the brokers and partitions named.
pub(super) async fn pre_check(spec: &Spec, req: &StepRun<'_>) -> Result<String, String> {
    Control::of(spec, req)?;
    let kafka = super::connect(spec).await?;
    let snap = snapshot(&kafka).await?;
    unhealthy(&snap).map_or(Ok(()), |why| Err(format!("{why}; nothing was restarted")))?;
    Ok(format!(
        "brokers {} serving, {} partitions fully replicated, controller {}; restart order {}",
        snap.serving.iter().map(i32::to_string).collect::<Vec<_>>().join(", "),
        snap.partitions.len(),
        snap.controller,
        snap.order().iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
    ))
}

/// Why the cluster is not healthy; `None` when every broker serves and no partition is
/// under-replicated.
pub(super) fn unhealthy(snap: &Snapshot) -> Option<String> {
    let missing: Vec<String> = snap.brokers().difference(&snap.serving).map(|b| b.to_string()).collect();
    if !missing.is_empty() {
        let on: Vec<String> = snap
            .partitions
            .iter()
            .filter(|p| p.replicas.iter().any(|r| !snap.serving.contains(r)))
            .map(|p| p.name.clone())
            .collect();
        return Some(format!(
            "broker {} is not serving (it holds replicas of {} partitions: {})",
            missing.join(", "),
            on.len(),
            named(&on)
        ));
    }
    let under = snap.under_replicated();
    (!under.is_empty()).then(|| format!("{} partitions are under-replicated: {}", under.len(), named(&under)))
}

/// After the roll: every broker serving and nothing under-replicated, waited for.
pub(super) async fn health_check(spec: &Spec) -> Result<String, String> {
    let kafka = super::connect(spec).await?;
    let deadline = Instant::now() + check_budget(spec.timeout);
    let mut spent = Duration::ZERO;
    let snap = wait(deadline, &mut spent, || async {
        let snap = snapshot(&kafka).await?;
        Ok(unhealthy(&snap).map_or(Ok(snap), Err))
    })
    .await?;
    Ok(format!(
        "brokers {} serving, {} partitions fully replicated",
        snap.serving.iter().map(i32::to_string).collect::<Vec<_>>().join(", "),
        snap.partitions.len()
    ))
}

/// One step of upgradeInstance on a bound cluster: `pre_check`, `upgrade_broker_{i}` (the i-th
/// broker of the order fixed at `pre_check`, the controller last), `post_check` (every broker
/// back, then the metadata version finalised at the level every broker now supports).
pub(super) async fn upgrade_step(
    spec: &Spec,
    req: &StepRun<'_>,
    events: &mpsc::Sender<Event>,
) -> Result<String, String> {
    let params: Value =
        serde_json::from_str(&req.task.params).map_err(|e| format!("the task's params are not JSON: {e}"))?;
    let build = params.get("new_version").and_then(Value::as_str).ok_or("the task names no new kernel")?;
    let release = crate::kafka::release_of(build).ok_or_else(|| {
        format!(
            "kernel build {build} names no Apache Kafka release (a bound cluster's builds start with one, as in \
             4.3.2-h0.cbu.dms.100.r0); nothing was changed"
        )
    })?;
    if req.step_name == "pre_check" {
        let summary = pre_check(spec, req).await?;
        let kafka = super::connect(spec).await?;
        let order = snapshot(&kafka).await?.order();
        let planned = req.steps.iter().filter(|s| s.starts_with("upgrade_broker_")).count();
        if planned != order.len() {
            return Err(format!(
                "the task plans {planned} broker upgrades and the cluster has {} brokers ({}); nothing was changed",
                order.len(),
                order.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
        let mut kept = Kept::load(req).await?;
        if kept.all.get("upgrade_order").is_none() {
            kept.all.insert("upgrade_order".to_owned(), serde_json::json!(order));
            kept.save_all().await?;
        }
        return Ok(format!("{summary}; upgrading to Apache Kafka {release}"));
    }
    if req.step_name == "post_check" {
        let health = health_check(spec).await?;
        let kafka = super::connect(spec).await?;
        let finalised = finalise_metadata_version(&kafka).await?;
        return Ok(format!("{health}; {finalised}"));
    }
    let Some(i) = req.step_name.strip_prefix("upgrade_broker_").and_then(|i| i.parse::<usize>().ok()) else {
        return Err(format!("step {} of {} is not done on a bound cluster", req.step_name, req.operation));
    };
    let kept = Kept::load(req).await?;
    let order: Vec<i32> = kept
        .all
        .get("upgrade_order")
        .and_then(|o| serde_json::from_value(o.clone()).ok())
        .ok_or("the upgrade's broker order was not kept at pre_check")?;
    let broker = *order.get(i).ok_or_else(|| format!("step {} has no broker in the order {order:?}", req.step_name))?;
    roll(spec, req, events, &Action::Upgrade(release.to_owned()), Some(broker)).await
}

/// UpdateFeatures: `metadata.version` to the highest level every broker supports, once all run
/// the new release (what `kafka-features upgrade` does for it). Repeating it changes nothing.
async fn finalise_metadata_version(kafka: &krafka::Kafka) -> Result<String, String> {
    use krafka::admin::{DescribeFeaturesOptions, FeatureUpdateKey, UpdateFeaturesOptions};
    const MV: &str = "metadata.version";
    let admin = kafka.admin();
    let brokers = crate::kafka::describe(kafka, CALL_TIMEOUT).await.map_err(why)?.brokers;
    let mut level = i16::MAX;
    let mut finalised = None;
    for b in &brokers {
        let f = admin
            .describe_features(DescribeFeaturesOptions::default().timeout(CALL_TIMEOUT).node_id(b.id))
            .await
            .map_err(|e| format!("broker {} did not describe its features: {e}", b.id))?;
        let max = f
            .supported
            .iter()
            .find(|s| s.name == MV)
            .map(|s| s.max_version)
            .ok_or_else(|| format!("broker {} does not list {MV} among its features", b.id))?;
        level = level.min(max);
        finalised = f.finalized.iter().find(|s| s.name == MV).map(|s| s.max_version_level).or(finalised);
    }
    if brokers.is_empty() {
        return Err("the cluster shows no broker".to_owned());
    }
    if finalised.is_some_and(|f| f >= level) {
        return Ok(format!("{MV} already at level {level}"));
    }
    let answers = admin
        .update_features(
            vec![FeatureUpdateKey::upgrade(MV, level)],
            UpdateFeaturesOptions::default().timeout(CALL_TIMEOUT),
        )
        .await
        .map_err(|e| format!("the controller refused {MV} level {level}: {e}"))?;
    for (feature, answer) in answers {
        answer.map_err(|e| format!("the controller refused {feature} level {level}: {e}"))?;
    }
    Ok(format!("{MV} finalised at level {level} (was {})", finalised.map_or("unset".to_owned(), |f| f.to_string())))
}

/// What a rolling step keeps with the task across attempts (under `"rolling"`, by step name).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Roll {
    order: Vec<i32>,
    done: Vec<i32>,
    /// The broker whose action was issued and not yet seen through.
    issued: Option<Issued>,
    /// What the step did, once it is done (shown again by the step after it, whose output is the
    /// one the task keeps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Issued {
    broker: i32,
    /// The incarnation `status` showed before the action was issued.
    before: String,
    attempt: u32,
}

/// The task's executor state, read and written whole (other keys are kept as they are).
pub(super) struct Kept<'a> {
    req: &'a StepRun<'a>,
    pub(super) all: serde_json::Map<String, Value>,
}

impl<'a> Kept<'a> {
    pub(super) async fn load(req: &'a StepRun<'a>) -> Result<Kept<'a>, String> {
        let text = req.runs.load_state(&req.task.id).await.map_err(|e| format!("cannot read the task's state: {e}"))?;
        let all = match text.as_deref().map(serde_json::from_str::<Value>) {
            None => serde_json::Map::new(),
            Some(Ok(Value::Object(m))) => m,
            Some(_) => return Err("the task's kept state is not a JSON object".to_owned()),
        };
        Ok(Kept { req, all })
    }

    fn roll(&self) -> Option<Roll> {
        let v = self.all.get("rolling")?.get(self.req.step_name)?;
        serde_json::from_value(v.clone()).ok()
    }

    /// Writes `roll` for this step; an error when the lease is no longer ours.
    async fn save(&mut self, roll: &Roll) -> Result<(), String> {
        self.put(roll)?;
        self.save_all().await
    }

    fn put(&mut self, roll: &Roll) -> Result<(), String> {
        let rolling = self.all.entry("rolling").or_insert_with(|| Value::Object(Default::default()));
        if !rolling.is_object() {
            *rolling = Value::Object(Default::default());
        }
        if let Value::Object(m) = rolling {
            m.insert(self.req.step_name.to_owned(), serde_json::to_value(roll).map_err(why)?);
        }
        Ok(())
    }

    /// Writes the whole state; an error when the lease is no longer ours.
    pub(super) async fn save_all(&mut self) -> Result<(), String> {
        let text = Value::Object(self.all.clone()).to_string();
        match self.req.runs.save_state(self.req.owner, &self.req.task.id, text, self.req.clock.now()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the task's lease was lost; another worker has it".to_owned()),
            Err(e) => Err(format!("cannot keep the rolling restart's state: {e}")),
        }
    }
}

/// Time spent, for the step's summary.
#[derive(Debug, Default)]
struct Spent {
    checks: Duration,
    program: Duration,
}

/// Restarts (or reconfigures, or upgrades) every broker, or only broker `only`, one at a time;
/// the step's summary on success.
pub(super) async fn roll(
    spec: &Spec,
    req: &StepRun<'_>,
    events: &mpsc::Sender<Event>,
    action: &Action,
    only: Option<i32>,
) -> Result<String, String> {
    let started = Instant::now();
    let deadline = started + check_budget(spec.timeout);
    let control = Control::of(spec, req)?;
    let kafka = super::connect(spec).await?;
    let mut kept = Kept::load(req).await?;
    let mut state = match kept.roll() {
        Some(r) => r,
        None => {
            let order = match only {
                Some(b) => vec![b],
                None => snapshot(&kafka).await?.order(),
            };
            let r = Roll { order, ..Roll::default() };
            kept.save(&r).await?;
            r
        }
    };
    let mut spent = Spent::default();
    let mut notes = Vec::new();
    let total = state.order.len();
    for broker in state.order.clone() {
        if state.done.contains(&broker) {
            continue;
        }
        let message = format!("broker {broker}: {} ({} of {total} done)", verb(action), state.done.len());
        progress(events, &state, total, message).await;
        let mut before = None;
        if let Some(issued) = state.issued.clone().filter(|i| i.broker == broker) {
            match timed(&mut spent.program, control.status(broker)).await? {
                // The previous attempt's restart happened: only the checks are left.
                Status::Running(id) if id != issued.before => before = Some(issued.before),
                // It never happened: it is restarted below, after the checks (its first restart)...
                Status::Running(_) if snapshot(&kafka).await?.serving.contains(&broker) => {}
                // ...unless it was stopping when the previous attempt ended (signalled, not yet
                // gone), or stopped half-way: then finishing that restart is what is left, and
                // the checks cannot pass while it is down.
                Status::Running(_) | Status::Stopped => {
                    timed(&mut spent.program, act(&control, action, broker)).await?;
                    before = Some(issued.before);
                }
            }
        }
        if before.is_none() {
            let snap = wait(deadline, &mut spent.checks, || async {
                let snap = snapshot(&kafka).await?;
                Ok(snap.blocks_restart(broker).map_or(Ok(snap), Err))
            })
            .await
            .map_err(|why| format!("broker {broker} was not restarted: {why}; {}", so_far(&state)))?;
            let unavoidable = snap.unavoidable(broker);
            if !unavoidable.is_empty() {
                notes.push(format!(
                    "while broker {broker} restarted, {} partitions with min.insync.replicas at their replica count \
                     could not take writes: {}",
                    unavoidable.len(),
                    named(&unavoidable)
                ));
            }
            let id = match timed(&mut spent.program, control.status(broker)).await? {
                Status::Running(id) => id,
                Status::Stopped => {
                    return Err(format!(
                        "broker {broker} serves, but the broker-control program says it is stopped; {}",
                        so_far(&state)
                    ));
                }
            };
            // Kept before the program runs: the attempt after a crash knows what was issued.
            state.issued = Some(Issued { broker, before: id.clone(), attempt: req.attempt });
            kept.save(&state).await?;
            timed(&mut spent.program, act(&control, action, broker)).await?;
            before = Some(id);
        }
        match timed(&mut spent.program, control.status(broker)).await? {
            Status::Running(id) if Some(&id) != before.as_ref() => {}
            Status::Running(id) => {
                return Err(format!(
                    "broker {broker} runs as {id}, as it did before: the broker-control program did not restart it"
                ));
            }
            Status::Stopped => return Err(format!("broker {broker} is still stopped after its restart")),
        }
        wait(deadline, &mut spent.checks, || async {
            let snap = snapshot(&kafka).await?;
            Ok(snap.not_back(broker).map_or(Ok(()), Err))
        })
        .await
        .map_err(|why| format!("broker {broker} did not come back: {why}; {}", so_far(&state)))?;
        if let Action::StaticConfig(values) = action {
            wait(deadline, &mut spent.checks, || async {
                let missing = missing_configs(&kafka, broker, values).await?;
                Ok(if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("DescribeConfigs shows {} not in force there", missing.join(", ")))
                })
            })
            .await
            .map_err(|why| format!("broker {broker} restarted, but {why}"))?;
        }
        state.done.push(broker);
        state.issued = None;
        kept.save(&state).await?;
        tracing::info!(broker, done = state.done.len(), total, "broker restarted and checked");
    }
    progress(events, &state, total, format!("{total} of {total} brokers done")).await;
    let took = started.elapsed();
    let mut summary = format!(
        "{} brokers {} in {:.1} s ({:.1} s in the broker-control program, {:.1} s waiting on checks)",
        verb_done(action),
        state.order.iter().map(i32::to_string).collect::<Vec<_>>().join(", "),
        took.as_secs_f64(),
        spent.program.as_secs_f64(),
        spent.checks.as_secs_f64()
    );
    for note in notes {
        summary.push_str("; ");
        summary.push_str(&note);
    }
    state.summary = Some(summary.clone());
    kept.save(&state).await?;
    Ok(summary)
}

fn so_far(state: &Roll) -> String {
    if state.done.is_empty() {
        "no broker was restarted".to_owned()
    } else {
        format!(
            "brokers {} were restarted before",
            state.done.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
        )
    }
}

fn verb_done(action: &Action) -> &'static str {
    match action {
        Action::Restart => "restarted",
        Action::StaticConfig(_) => "reconfigured and restarted",
        Action::Upgrade(_) => "upgraded",
    }
}

async fn timed<T>(spent: &mut Duration, f: impl std::future::Future<Output = T>) -> T {
    let t = Instant::now();
    let out = f.await;
    *spent += t.elapsed();
    out
}

/// Makes `check` until it passes (`Ok(Ok(_))`) or `deadline` passes; the last reason it did not
/// pass as the error. A call that fails counts as a check that did not pass.
pub(super) async fn wait<T, F, Fut>(deadline: Instant, spent: &mut Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<T, String>, String>>,
{
    let t = Instant::now();
    let out = loop {
        let why = match check().await {
            Ok(Ok(v)) => break Ok(v),
            Ok(Err(why)) | Err(why) => why,
        };
        if Instant::now() + CHECK_EVERY > deadline {
            break Err(why);
        }
        tracing::debug!(%why, "waiting for a rolling restart's check");
        tokio::time::sleep(CHECK_EVERY).await;
    };
    *spent += t.elapsed();
    out
}

/// The configs of `values` that `broker` does not show with the value asked for.
async fn missing_configs(
    kafka: &krafka::Kafka,
    broker: i32,
    values: &[(String, String)],
) -> Result<Vec<String>, String> {
    let options = DescribeConfigsOptions::default()
        .timeout(CALL_TIMEOUT)
        .config_names(values.iter().map(|(n, _)| n.clone()).collect());
    let described = kafka.admin().describe_configs([ConfigResource::broker(broker)], options).await.map_err(why)?;
    let entries = match described.get(&ConfigResource::broker(broker)) {
        Some(Ok(e)) => e,
        Some(Err(e)) => return Err(format!("broker {broker} did not describe its configs: {e}")),
        None => return Err(format!("broker {broker} did not answer DescribeConfigs")),
    };
    Ok(values
        .iter()
        .filter(|(n, v)| !entries.iter().any(|e| &e.name == n && e.value.as_deref() == Some(v.as_str())))
        .map(|(n, v)| format!("{n}={v}"))
        .collect())
}

fn verb(action: &Action) -> &'static str {
    match action {
        Action::Restart => "restarting",
        Action::StaticConfig(_) => "setting its static configs and restarting",
        Action::Upgrade(_) => "upgrading",
    }
}

async fn progress(events: &mpsc::Sender<Event>, state: &Roll, total: usize, message: String) {
    let progress = (state.done.len() * 100 / total.max(1)) as u32;
    let _ = events.send(Event::Progress { progress: Some(progress), message: Some(message) }).await;
}

/// How long the checks of a step may wait in all: the step's timeout less a margin, so that a
/// check that never passes fails with its own reason before the engine's timeout would.
pub(super) fn check_budget(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 10).min(Duration::from_secs(10)))
}

async fn act(control: &Control<'_>, action: &Action, broker: i32) -> Result<String, String> {
    match action {
        Action::Restart => control.restart(broker).await,
        Action::StaticConfig(values) => {
            control.set_static_config(broker, values).await?;
            control.restart(broker).await
        }
        Action::Upgrade(version) => control.upgrade(broker, version).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, replicas: &[i32], isr: &[i32], min_isr: usize) -> Partition {
        Partition { name: name.into(), replicas: replicas.to_vec(), isr: isr.to_vec(), min_isr }
    }

    fn snap(serving: &[i32], controller: i32, partitions: Vec<Partition>) -> Snapshot {
        Snapshot { serving: serving.iter().copied().collect(), controller, partitions }
    }

    #[test]
    fn the_controller_goes_last_and_a_broker_holding_replicas_counts_while_down() {
        let s = snap(&[1, 2, 3], 2, vec![part("t-0", &[1, 2, 3], &[1, 2, 3], 2)]);
        assert_eq!(s.order(), [1, 3, 2]);
        let down = snap(&[1, 2], 1, vec![part("t-0", &[1, 2, 3], &[1, 2], 2)]);
        assert_eq!(down.order(), [2, 3, 1]);
        let why = unhealthy(&down).expect("unhealthy");
        assert!(why.contains("broker 3 is not serving") && why.contains("t-0"), "{why}");
    }

    #[test]
    fn a_broker_is_restarted_only_if_no_partition_drops_below_min_insync() {
        let healthy = snap(&[1, 2, 3], 3, vec![part("t-0", &[1, 2, 3], &[1, 2, 3], 2)]);
        assert_eq!(healthy.blocks_restart(1), None);
        // RF 2 with min.insync 2 can never be restarted without losing writes: noted, not blocking.
        let tight = snap(&[1, 2, 3], 3, vec![part("u-0", &[1, 2], &[1, 2], 2)]);
        assert_eq!(tight.blocks_restart(1), None);
        assert_eq!(tight.unavoidable(1), ["u-0"]);
        let under = snap(&[1, 2, 3], 3, vec![part("t-0", &[1, 2, 3], &[2, 3], 2)]);
        let why = under.blocks_restart(2).expect("blocked");
        assert!(why.contains("under-replicated") && why.contains("t-0"), "{why}");
        assert!(under.not_back(1).is_some_and(|w| w.contains("t-0")));
        let not_serving = snap(&[1, 2], 3, vec![]);
        assert!(not_serving.blocks_restart(3).is_some_and(|w| w.contains("broker 3 is not serving")));
        assert!(not_serving.not_back(3).is_some_and(|w| w.contains("broker 3")));
    }

    #[test]
    fn the_check_budget_leaves_a_margin_before_the_step_timeout() {
        assert_eq!(check_budget(Duration::from_secs(3600)), Duration::from_secs(3590));
        assert_eq!(check_budget(Duration::from_secs(30)), Duration::from_secs(27));
    }
}
