//! kafkaPartitionReassign on a bound cluster: AlterPartitionReassignments with the requested
//! throttle set as Kafka's own `kafka-reassign-partitions` sets it, progress from the bytes the
//! new replicas hold, and the throttles removed before the step says 100 %.
//!
//! - **The target** of each partition comes from the request: an entry's `assignment` names
//!   partitions and their brokers; `brokers` (with `replication_factor`, else the partition's
//!   current one) spreads every other partition of the topic round-robin over the brokers
//!   listed, partition `p` taking `brokers[(p + i) % n]` for `i` in `0..rf`. Deterministic, so
//!   that every step and every attempt computes the same target.
//! - **Throttles** as `ReassignPartitionsCommand` sets them: for each partition that gains a
//!   replica, `leader.replication.throttled.replicas` of its topic lists `partition:broker` for
//!   each of its current replicas (any may lead), `follower.replication.throttled.replicas` each
//!   new one; `leader.replication.throttled.rate` and `follower.replication.throttled.rate` are
//!   set on every broker involved (current and new replicas).
//! - **A crash** (attempt 2 of `reassign_partitions`): ListPartitionReassignments shows what is in
//!   flight; a partition already moving to its target is adopted, never submitted again, and a
//!   partition already on its target is left alone. Only the rest is submitted.
//! - **Progress**: for each new replica, its bytes (DescribeLogDirs at its broker) against the
//!   bytes of its partition's leader; a partition that has reached its target counts whole. Never
//!   lower than what this run reported before, and at most 99 until the throttles are removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use krafka::admin::{
    AlterPartitionReassignmentsOptions, ConfigOp, ConfigResource, DescribeConfigsOptions, DescribeLogDirsOptions,
    DescribeTopicsOptions, IncrementalAlterConfigsOptions, ListPartitionReassignmentsOptions, TopicPartition,
};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{CALL_TIMEOUT, Spec, why};
use crate::executor::{Event, StepRun};

/// How often the reassignment's state and sizes are read while it runs.
const POLL: Duration = Duration::from_secs(1);
/// How many polls a partition may look finished-but-elsewhere (metadata catching up) before
/// the reassignment is taken as cancelled by someone else.
const SETTLE_POLLS: u32 = 10;
/// The replication rate assumed by `time_estimate` when the request sets no throttle.
pub const UNTHROTTLED_RATE: u64 = 100 * 1024 * 1024;

const LEADER_RATE: &str = "leader.replication.throttled.rate";
const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

/// A partition, ordered (krafka's `TopicPartition` is not `Ord`).
type Part = (String, i32);

/// One step of a kafkaPartitionReassign task (steps: `pre_check`, `reassign_partitions`, `verify`).
pub(super) async fn step(spec: &Spec, req: &StepRun<'_>, events: &mpsc::Sender<Event>) -> Result<String, String> {
    let wanted = Request::parse(&req.task.params)?;
    let kafka = super::connect(spec).await?;
    match req.step_name {
        "pre_check" => pre_check(&kafka, &wanted).await,
        "reassign_partitions" => reassign(&kafka, &wanted, req.attempt, events).await,
        "verify" => verify(&kafka, &wanted).await,
        other => Err(format!("step {other} of {} is not done on a bound cluster yet", req.operation)),
    }
}

/// What the task asks for, from its params (as [`crate::domain::operation::reassign`] recorded them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    topics: Vec<TopicRequest>,
    /// Bytes per second; `None` for no throttle (absent or -1).
    throttle: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TopicRequest {
    topic: String,
    brokers: Option<Vec<i32>>,
    replication_factor: Option<usize>,
    /// Partition (`None`: the entry's index) → its brokers.
    assignment: Vec<(Option<i32>, Vec<i32>)>,
}

fn ids(v: &Value) -> Option<Vec<i32>> {
    v.as_array()?.iter().map(|b| b.as_i64().and_then(|b| i32::try_from(b).ok()).filter(|b| *b >= 0)).collect()
}

impl Request {
    pub fn parse(params: &str) -> Result<Request, String> {
        let params: Value = serde_json::from_str(params).map_err(|e| format!("the task's params are not JSON: {e}"))?;
        Request::of(&params)
    }

    /// From a request body or recorded params (the same shape).
    pub fn of(params: &Value) -> Result<Request, String> {
        let list = params.get("reassignments").and_then(Value::as_array).ok_or("the task names no reassignment")?;
        let mut topics = Vec::with_capacity(list.len());
        for r in list {
            let topic = r.get("topic").and_then(Value::as_str).ok_or("a reassignment without a topic")?.to_owned();
            let brokers = match r.get("brokers") {
                None | Some(Value::Null) => None,
                Some(v) => Some(ids(v).ok_or_else(|| format!("{topic}: brokers are not broker ids"))?),
            };
            let replication_factor = r.get("replication_factor").and_then(Value::as_u64).map(|n| n as usize);
            let mut assignment = Vec::new();
            for a in r.get("assignment").and_then(Value::as_array).into_iter().flatten() {
                let partition =
                    a.get("partition").and_then(Value::as_i64).map(|p| i32::try_from(p).unwrap_or(i32::MAX));
                let brokers = a
                    .get("partition_brokers")
                    .or_else(|| a.get("assignment"))
                    .and_then(ids)
                    .ok_or_else(|| format!("{topic}: an assignment without brokers"))?;
                assignment.push((partition, brokers));
            }
            topics.push(TopicRequest { topic, brokers, replication_factor, assignment });
        }
        let throttle = params.get("throttle").and_then(Value::as_i64).filter(|t| *t > 0).map(|t| t as u64);
        Ok(Request { topics, throttle })
    }
}

/// One partition's move: where it is and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Move {
    /// Its replicas before the move (with a move in flight: the replicas it is not adding).
    current: Vec<i32>,
    target: Vec<i32>,
}

impl Move {
    /// The replicas it gains.
    fn adding(&self) -> Vec<i32> {
        self.target.iter().copied().filter(|b| !self.current.contains(b)).collect()
    }
}

/// The cluster's answer to the request: every partition's move, checked.
#[derive(Debug, Default)]
struct Plan {
    moves: BTreeMap<Part, Move>,
    /// Partitions in flight now: target as the controller has it.
    in_flight: BTreeMap<Part, Vec<i32>>,
    brokers: Vec<i32>,
}

fn tp(p: &Part) -> TopicPartition {
    TopicPartition::new(p.0.clone(), p.1)
}

fn same_set(a: &[i32], b: &[i32]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

fn list(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Reads the cluster and computes every partition's move, refusing what the cluster cannot do
/// (a topic or partition that does not exist, a broker that is not there or is fenced, a
/// replica set with a broker twice, more replicas than brokers) with the reason.
async fn plan(kafka: &krafka::Kafka, wanted: &Request) -> Result<Plan, String> {
    let cluster = crate::kafka::describe(kafka, CALL_TIMEOUT).await.map_err(why)?;
    let serving: BTreeSet<i32> = cluster.brokers.iter().filter(|b| !b.fenced).map(|b| b.id).collect();
    let known: BTreeSet<i32> = cluster.brokers.iter().map(|b| b.id).collect();
    let admin = kafka.admin();
    let names: BTreeSet<&str> = wanted.topics.iter().map(|t| t.topic.as_str()).collect();
    let described = admin
        .describe_topics(names.iter().copied(), DescribeTopicsOptions::default().timeout(CALL_TIMEOUT))
        .await
        .map_err(why)?;
    let check = |what: &str, ids: &[i32]| -> Result<(), String> {
        if ids.is_empty() {
            return Err(format!("{what}: no broker named"));
        }
        if ids.iter().collect::<BTreeSet<_>>().len() != ids.len() {
            return Err(format!("{what}: a broker is named twice ({})", list(ids)));
        }
        for b in ids {
            if !known.contains(b) {
                return Err(format!(
                    "{what}: broker {b} is not in the cluster (its brokers: {})",
                    list(&known.iter().copied().collect::<Vec<_>>())
                ));
            }
            if !serving.contains(b) {
                return Err(format!("{what}: broker {b} is fenced (not serving)"));
            }
        }
        Ok(())
    };
    // What is in flight first: a partition being moved counts as its replicas without those it
    // is adding (its replication factor too), so that a second attempt computes the same target.
    let mut all = Vec::new();
    for t in &wanted.topics {
        match described.get(&t.topic) {
            Some(Ok(d)) => all.extend(d.partitions.iter().map(|p| TopicPartition::new(t.topic.clone(), p.partition))),
            Some(Err(e)) => return Err(format!("topic {}: {e}", t.topic)),
            None => return Err(format!("topic {} does not exist", t.topic)),
        }
    }
    let ongoing = admin
        .list_partition_reassignments(
            ListPartitionReassignmentsOptions::default().timeout(CALL_TIMEOUT).partitions(all),
        )
        .await
        .map_err(why)?;
    let mut moves = BTreeMap::new();
    let mut current_of: BTreeMap<Part, Vec<i32>> = BTreeMap::new();
    let mut in_flight = BTreeMap::new();
    for t in &wanted.topics {
        let Some(Ok(d)) = described.get(&t.topic) else { continue };
        for p in &d.partitions {
            let part = (t.topic.clone(), p.partition);
            let current = match ongoing.get(&TopicPartition::new(t.topic.clone(), p.partition)) {
                Some(r) => {
                    let to =
                        r.replicas.iter().copied().filter(|b| !r.removing_replicas.contains(b)).collect::<Vec<_>>();
                    in_flight.insert(part.clone(), to);
                    r.replicas.iter().copied().filter(|b| !r.adding_replicas.contains(b)).collect()
                }
                None => p.replicas.clone(),
            };
            current_of.insert(part, current);
        }
        let count = d.partitions.len() as i32;
        let mut explicit = BTreeSet::new();
        for (i, (partition, brokers)) in t.assignment.iter().enumerate() {
            let partition = partition.unwrap_or(i as i32);
            if partition >= count {
                return Err(format!("topic {} has no partition {partition} (it has {count})", t.topic));
            }
            if !explicit.insert(partition) {
                return Err(format!("topic {} partition {partition} is assigned twice", t.topic));
            }
            check(&format!("{}-{partition}", t.topic), brokers)?;
            moves.insert((t.topic.clone(), partition), brokers.clone());
        }
        if let Some(brokers) = &t.brokers {
            check(&t.topic, brokers)?;
            for p in &d.partitions {
                if explicit.contains(&p.partition) {
                    continue;
                }
                let now = current_of.get(&(t.topic.clone(), p.partition)).map_or(0, Vec::len);
                let rf = t.replication_factor.unwrap_or(now);
                if rf == 0 || rf > brokers.len() {
                    return Err(format!(
                        "topic {}: {rf} replicas cannot be placed on {} brokers ({})",
                        t.topic,
                        brokers.len(),
                        list(brokers)
                    ));
                }
                let n = brokers.len();
                let target = (0..rf).map(|i| brokers[(p.partition as usize + i) % n]).collect();
                moves.insert((t.topic.clone(), p.partition), target);
            }
        }
    }
    let mut plan = Plan { brokers: known.into_iter().collect(), ..Plan::default() };
    for (part, target) in moves {
        if let Some(to) = in_flight.remove(&part) {
            plan.in_flight.insert(part.clone(), to);
        }
        let current = current_of.get(&part).cloned().unwrap_or_default();
        plan.moves.insert(part, Move { current, target });
    }
    // Other partitions of these topics in flight are someone else's, and conflict only if ours.
    Ok(plan)
}

/// Partitions moving to another target than ours: someone else's reassignment.
fn foreign(plan: &Plan) -> Vec<String> {
    plan.in_flight
        .iter()
        .filter(|(p, to)| plan.moves.get(*p).is_none_or(|m| !same_set(&m.target, to)))
        .map(|((t, p), to)| format!("{t}-{p} (moving to {})", list(to)))
        .collect()
}

async fn pre_check(kafka: &krafka::Kafka, wanted: &Request) -> Result<String, String> {
    let plan = plan(kafka, wanted).await.map_err(|e| format!("{e}; nothing was changed"))?;
    let others = foreign(&plan);
    if !others.is_empty() {
        return Err(format!(
            "another reassignment is in flight for {}; nothing was changed",
            others.into_iter().take(10).collect::<Vec<_>>().join(", ")
        ));
    }
    let moving = plan.moves.values().filter(|m| !m.adding().is_empty()).count();
    Ok(format!(
        "{} partitions checked on brokers {}: {moving} gain replicas{}",
        plan.moves.len(),
        list(&plan.brokers),
        wanted.throttle.map(|t| format!(", throttled at {t} B/s")).unwrap_or_default()
    ))
}

/// `kafka-reassign-partitions`' topic throttles: topic → (leader list, follower list).
fn topic_throttles(moves: &BTreeMap<Part, Move>) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut out: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for ((topic, p), m) in moves {
        let adding = m.adding();
        if adding.is_empty() {
            continue;
        }
        let entry = out.entry(topic.clone()).or_default();
        entry.0.extend(m.current.iter().map(|b| format!("{p}:{b}")));
        entry.1.extend(adding.iter().map(|b| format!("{p}:{b}")));
    }
    out
}

/// Every broker a move involves (current and new replicas).
fn involved(moves: &BTreeMap<Part, Move>) -> BTreeSet<i32> {
    moves.values().filter(|m| !m.adding().is_empty()).flat_map(|m| m.current.iter().chain(&m.target).copied()).collect()
}

async fn alter(kafka: &krafka::Kafka, changes: Vec<(ConfigResource, Vec<ConfigOp>)>) -> Result<(), String> {
    if changes.is_empty() {
        return Ok(());
    }
    let options = IncrementalAlterConfigsOptions::default().timeout(CALL_TIMEOUT);
    let answers = kafka.admin().incremental_alter_configs(changes, options).await.map_err(why)?;
    for (resource, answer) in answers {
        answer.map_err(|e| format!("the cluster refused a throttle change of {resource:?}: {e}"))?;
    }
    Ok(())
}

async fn set_throttles(kafka: &krafka::Kafka, moves: &BTreeMap<Part, Move>, rate: u64) -> Result<(), String> {
    let mut changes = Vec::new();
    for (topic, (leaders, followers)) in topic_throttles(moves) {
        changes.push((
            ConfigResource::topic(topic),
            vec![
                ConfigOp::set(LEADER_REPLICAS, leaders.join(",")),
                ConfigOp::set(FOLLOWER_REPLICAS, followers.join(",")),
            ],
        ));
    }
    for b in involved(moves) {
        changes.push((
            ConfigResource::broker(b),
            vec![ConfigOp::set(LEADER_RATE, rate.to_string()), ConfigOp::set(FOLLOWER_RATE, rate.to_string())],
        ));
    }
    alter(kafka, changes).await
}

/// Removes the throttle configs from the topics and from the brokers given (deleting one that is
/// not set is harmless), then reads them back: the names still set, if any.
async fn clear_throttles(
    kafka: &krafka::Kafka,
    topics: &BTreeSet<String>,
    brokers: &BTreeSet<i32>,
) -> Result<(), String> {
    let mut changes = Vec::new();
    for t in topics {
        changes.push((
            ConfigResource::topic(t.clone()),
            vec![ConfigOp::delete(LEADER_REPLICAS), ConfigOp::delete(FOLLOWER_REPLICAS)],
        ));
    }
    for b in brokers {
        changes
            .push((ConfigResource::broker(*b), vec![ConfigOp::delete(LEADER_RATE), ConfigOp::delete(FOLLOWER_RATE)]));
    }
    alter(kafka, changes).await?;
    // Each broker applies the change when the metadata reaches it: read back until none shows it.
    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
    loop {
        let left = throttles_left(kafka, topics, brokers).await?;
        if left.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("throttles still set after removing them: {}", left.join(", ")));
        }
        tokio::time::sleep(super::POLL).await;
    }
}

/// The throttle configs still set dynamically on these topics and brokers.
async fn throttles_left(
    kafka: &krafka::Kafka,
    topics: &BTreeSet<String>,
    brokers: &BTreeSet<i32>,
) -> Result<Vec<String>, String> {
    let resources: Vec<ConfigResource> = topics
        .iter()
        .map(|t| ConfigResource::topic(t.clone()))
        .chain(brokers.iter().map(|b| ConfigResource::broker(*b)))
        .collect();
    let names = [LEADER_RATE, FOLLOWER_RATE, LEADER_REPLICAS, FOLLOWER_REPLICAS].map(str::to_owned).to_vec();
    let options = DescribeConfigsOptions::default().timeout(CALL_TIMEOUT).config_names(names);
    let described = kafka.admin().describe_configs(resources.clone(), options).await.map_err(why)?;
    let mut left = Vec::new();
    for r in &resources {
        let entries = match described.get(r) {
            Some(Ok(e)) => e,
            Some(Err(e)) => return Err(format!("{r:?} did not describe its configs: {e}")),
            None => return Err(format!("{r:?} did not answer DescribeConfigs")),
        };
        for e in entries {
            let set = e.value.as_deref().is_some_and(|v| !v.is_empty()) && !e.is_default;
            // A broker's rate shows its static default too; only a dynamic one is ours.
            if set && (e.config_source == 1 || e.config_source == 2) {
                left.push(format!("{r:?} {}={}", e.name, e.value.as_deref().unwrap_or_default()));
            }
        }
    }
    Ok(left)
}

/// Where the partitions are: replicas, ISR and leader of each.
struct Seen {
    replicas: Vec<i32>,
    isr: Vec<i32>,
    leader: Option<i32>,
}

async fn look(kafka: &krafka::Kafka, topics: &BTreeSet<String>) -> Result<BTreeMap<Part, Seen>, String> {
    let described = kafka
        .admin()
        .describe_topics(topics.iter(), DescribeTopicsOptions::default().timeout(CALL_TIMEOUT))
        .await
        .map_err(why)?;
    let mut out = BTreeMap::new();
    for t in topics {
        let d = match described.get(t) {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(format!("topic {t}: {e}")),
            None => return Err(format!("topic {t} is gone")),
        };
        for p in &d.partitions {
            out.insert(
                (t.clone(), p.partition),
                Seen { replicas: p.replicas.clone(), isr: p.isr.clone(), leader: p.leader },
            );
        }
    }
    Ok(out)
}

/// Whether a partition has its target: the same replicas, all in sync.
fn arrived(m: &Move, seen: Option<&Seen>) -> bool {
    seen.is_some_and(|s| s.replicas == m.target && m.target.iter().all(|b| s.isr.contains(b)))
}

/// Bytes of each replica, by (partition, broker), from DescribeLogDirs (future replicas of a move
/// between directories left out).
async fn sizes(
    kafka: &krafka::Kafka,
    brokers: &BTreeSet<i32>,
    parts: Vec<TopicPartition>,
) -> Result<HashMap<(Part, i32), i64>, String> {
    let options = DescribeLogDirsOptions::default().timeout(CALL_TIMEOUT).partitions(parts);
    let dirs = kafka.admin().describe_log_dirs(brokers.iter().copied(), options).await.map_err(why)?;
    let mut out = HashMap::new();
    for (broker, answer) in dirs {
        let Ok(dirs) = answer else { continue };
        for dir in dirs.into_values().flatten() {
            for (t, r) in dir.replicas {
                if !r.is_future {
                    *out.entry(((t.topic, t.partition), broker)).or_insert(0) += r.size;
                }
            }
        }
    }
    Ok(out)
}

/// Bytes moved and bytes to move, over every replica a partition gains.
fn moved(
    moves: &BTreeMap<Part, Move>,
    seen: &BTreeMap<Part, Seen>,
    sizes: &HashMap<(Part, i32), i64>,
    done: &BTreeSet<Part>,
) -> (u128, u128) {
    let (mut have, mut total) = (0u128, 0u128);
    for (part, m) in moves {
        let adding = m.adding();
        if adding.is_empty() {
            continue;
        }
        let size = |b: i32| sizes.get(&(part.clone(), b)).copied().unwrap_or(0).max(0) as u128;
        // The leader's bytes: what a new replica must copy (before it leads, the biggest source).
        let leader = seen
            .get(part)
            .and_then(|s| s.leader)
            .filter(|l| m.current.contains(l))
            .map(size)
            .unwrap_or_else(|| m.current.iter().map(|b| size(*b)).max().unwrap_or(0))
            // A replica with nothing to copy still counts, as one byte.
            .max(1);
        for b in adding {
            total += leader;
            have += if done.contains(part) { leader } else { size(b).min(leader) };
        }
    }
    (have, total)
}

async fn report(events: &mpsc::Sender<Event>, progress: u32, message: String) {
    let _ = events.send(Event::Progress { progress: Some(progress), message: Some(message) }).await;
}

async fn reassign(
    kafka: &krafka::Kafka,
    wanted: &Request,
    attempt: u32,
    events: &mpsc::Sender<Event>,
) -> Result<String, String> {
    let plan = plan(kafka, wanted).await?;
    let others = foreign(&plan);
    if !others.is_empty() {
        return Err(format!(
            "another reassignment is in flight for {}",
            others.into_iter().take(10).collect::<Vec<_>>().join(", ")
        ));
    }
    let topics: BTreeSet<String> = plan.moves.keys().map(|(t, _)| t.clone()).collect();
    let seen = look(kafka, &topics).await?;
    let adopted: Vec<&Part> = plan.in_flight.keys().collect();
    let submit: Vec<(TopicPartition, Option<Vec<i32>>)> = plan
        .moves
        .iter()
        .filter(|(p, m)| !plan.in_flight.contains_key(*p) && !arrived(m, seen.get(*p)))
        .map(|(p, m)| (tp(p), Some(m.target.clone())))
        .collect();
    let brokers = involved(&plan.moves);
    if let Some(rate) = wanted.throttle {
        // Set again on a second attempt: the same values, so nothing resets.
        set_throttles(kafka, &plan.moves, rate).await?;
    }
    let submitted = submit.len();
    // No report before the bytes are read: after a crash the first figure is what the adopted
    // move has already copied, never a 0 that would send the task's progress backwards.
    if !submit.is_empty() {
        let count = submitted;
        tracing::info!(
            target: "kafka_tasks::reassign",
            partitions = count,
            adopted = adopted.len(),
            attempt,
            "AlterPartitionReassignments sent"
        );
        let options = AlterPartitionReassignmentsOptions::default().timeout(CALL_TIMEOUT);
        let answers = kafka.admin().alter_partition_reassignments(submit, options).await.map_err(why)?;
        let mut refused: Vec<String> = answers
            .into_iter()
            .filter_map(|(t, a)| a.err().map(|e| format!("{}-{}: {e}", t.topic, t.partition)))
            .collect();
        if !refused.is_empty() {
            refused.sort();
            refused.truncate(10);
            return Err(format!("the cluster refused the reassignment of {}", refused.join("; ")));
        }
    } else if !adopted.is_empty() {
        tracing::info!(target: "kafka_tasks::reassign", adopted = adopted.len(), attempt, "reassignment in flight adopted");
    }
    let parts: Vec<TopicPartition> = plan.moves.keys().map(tp).collect();
    let mut shown = 0u32;
    let mut strays: HashMap<Part, u32> = HashMap::new();
    loop {
        let ongoing = kafka
            .admin()
            .list_partition_reassignments(
                ListPartitionReassignmentsOptions::default().timeout(CALL_TIMEOUT).partitions(parts.clone()),
            )
            .await
            .map_err(why)?;
        let seen = look(kafka, &topics).await?;
        let mut done = BTreeSet::new();
        for (p, m) in &plan.moves {
            let key = tp(p);
            if ongoing.contains_key(&key) {
                continue;
            }
            if arrived(m, seen.get(p)) {
                done.insert(p.clone());
            } else if seen.get(p).is_some_and(|s| !same_set(&s.replicas, &m.target)) {
                // Not moving and not there: metadata catching up, or someone cancelled it.
                let n = strays.entry(p.clone()).or_insert(0);
                *n += 1;
                if *n > SETTLE_POLLS {
                    let now = seen.get(p).map(|s| list(&s.replicas)).unwrap_or_default();
                    return Err(format!(
                        "the reassignment of {}-{} stopped before its target {} (its replicas: {now}); \
                         cancelled outside kafka-tasks?",
                        p.0,
                        p.1,
                        list(&m.target)
                    ));
                }
            }
        }
        let bytes = sizes(kafka, &brokers, parts.clone()).await?;
        let (have, total) = moved(&plan.moves, &seen, &bytes, &done);
        let pct = (have * 100).checked_div(total).map_or(99, |p| p.min(99) as u32);
        shown = shown.max(pct);
        if done.len() == plan.moves.len() {
            break;
        }
        report(
            events,
            shown,
            format!(
                "{} of {} partitions on their target; {have} of {total} bytes copied",
                done.len(),
                plan.moves.len()
            ),
        )
        .await;
        tokio::time::sleep(POLL).await;
    }
    report(events, 99, "every partition on its target; removing the throttles".to_owned()).await;
    if wanted.throttle.is_some() {
        clear_throttles(kafka, &topics, &brokers).await?;
    }
    report(events, 100, "every partition on its target, throttles removed".to_owned()).await;
    Ok(format!(
        "{} partitions on their target ({submitted} submitted, {} adopted in flight){}",
        plan.moves.len(),
        plan.in_flight.len(),
        if wanted.throttle.is_some() { ", throttles removed" } else { "" }
    ))
}

/// Every partition on its target and in sync, nothing in flight, no throttle left behind.
async fn verify(kafka: &krafka::Kafka, wanted: &Request) -> Result<String, String> {
    let plan = plan(kafka, wanted).await?;
    if let Some(((t, p), _)) = plan.in_flight.iter().next() {
        return Err(format!("{t}-{p} is still being reassigned"));
    }
    let topics: BTreeSet<String> = plan.moves.keys().map(|(t, _)| t.clone()).collect();
    let seen = look(kafka, &topics).await?;
    for (p, m) in &plan.moves {
        if !arrived(m, seen.get(p)) {
            let now = seen.get(p).map(|s| format!("replicas {}, in sync {}", list(&s.replicas), list(&s.isr)));
            return Err(format!("{}-{} is not on {} in sync ({})", p.0, p.1, list(&m.target), now.unwrap_or_default()));
        }
    }
    if wanted.throttle.is_some() {
        let brokers: BTreeSet<i32> = plan.brokers.iter().copied().collect();
        let left = throttles_left(kafka, &topics, &brokers).await?;
        if !left.is_empty() {
            return Err(format!("throttles left set: {}", left.join(", ")));
        }
    }
    Ok(format!("{} partitions on their target replicas, all in sync", plan.moves.len()))
}

/// `time_estimate` for a bound instance: the bytes each broker must send (as a partition's
/// leader) and receive (as a new replica), over the throttle (or [`UNTHROTTLED_RATE`]); the busiest
/// broker sets the time. Seconds, at least one.
pub async fn estimate(kafka: &krafka::Kafka, wanted: &Request) -> Result<u64, String> {
    let plan = plan(kafka, wanted).await?;
    let topics: BTreeSet<String> = plan.moves.keys().map(|(t, _)| t.clone()).collect();
    let seen = look(kafka, &topics).await?;
    let brokers = involved(&plan.moves);
    let bytes = sizes(kafka, &brokers, plan.moves.keys().map(tp).collect()).await?;
    let mut load: BTreeMap<i32, (u128, u128)> = BTreeMap::new();
    for (part, m) in &plan.moves {
        let size = |b: i32| bytes.get(&(part.clone(), b)).copied().unwrap_or(0).max(0) as u128;
        let leader =
            seen.get(part).and_then(|s| s.leader).filter(|l| m.current.contains(l)).or(m.current.first().copied());
        let Some(leader) = leader else { continue };
        for b in m.adding() {
            let copy = size(leader).saturating_sub(size(b));
            load.entry(leader).or_default().0 += copy;
            load.entry(b).or_default().1 += copy;
        }
    }
    let busiest = load.values().map(|(out, inn)| *out.max(inn)).max().unwrap_or(0);
    let rate = u128::from(wanted.throttle.unwrap_or(UNTHROTTLED_RATE).max(1));
    Ok(busiest.div_ceil(rate).max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moves(list: &[(&str, i32, &[i32], &[i32])]) -> BTreeMap<Part, Move> {
        list.iter()
            .map(|(t, p, c, g)| ((t.to_string(), *p), Move { current: c.to_vec(), target: g.to_vec() }))
            .collect()
    }

    #[test]
    fn throttles_follow_kafkas_own_tool() {
        // As ReassignPartitionsCommand's own test case: every current replica is leader-throttled,
        // each new one follower-throttled; a partition that gains nothing is left out.
        let m = moves(&[
            ("foo", 0, &[1, 2, 3], &[1, 2, 5]),
            ("foo", 1, &[4, 5, 6], &[6, 7, 8]),
            ("bar", 0, &[2, 3], &[3, 2]),
        ]);
        let t = topic_throttles(&m);
        assert_eq!(t["foo"].0, ["0:1", "0:2", "0:3", "1:4", "1:5", "1:6"]);
        assert_eq!(t["foo"].1, ["0:5", "1:7", "1:8"]);
        assert!(!t.contains_key("bar"), "{t:?}");
        assert_eq!(involved(&m), [1, 2, 3, 4, 5, 6, 7, 8].into_iter().collect());
    }

    #[test]
    fn progress_counts_new_replicas_against_their_leaders() {
        let m = moves(&[("t", 0, &[1, 2], &[1, 3]), ("t", 1, &[1, 2], &[2, 3])]);
        let seen: BTreeMap<Part, Seen> = [0, 1]
            .into_iter()
            .map(|p| (("t".to_owned(), p), Seen { replicas: vec![1, 2, 3], isr: vec![1, 2], leader: Some(1) }))
            .collect();
        let mut sizes = HashMap::new();
        sizes.insert((("t".to_owned(), 0), 1), 1000);
        sizes.insert((("t".to_owned(), 0), 3), 250);
        sizes.insert((("t".to_owned(), 1), 1), 3000);
        sizes.insert((("t".to_owned(), 1), 3), 9000); // never counts more than the leader has
        assert_eq!(moved(&m, &seen, &sizes, &BTreeSet::new()), (3250, 4000));
        let done = [("t".to_owned(), 0)].into_iter().collect();
        assert_eq!(moved(&m, &seen, &sizes, &done), (4000, 4000));
    }

    #[test]
    fn a_request_reads_both_recorded_shapes() {
        let r = Request::parse(
            r#"{"reassignments":[{"topic":"a","brokers":[1,2],"replication_factor":2},
                {"topic":"b","assignment":[{"partition":3,"partition_brokers":[3,1]},{"assignment":[2]}]}],"throttle":1024}"#,
        )
        .unwrap();
        assert_eq!(r.throttle, Some(1024));
        assert_eq!(r.topics[0].brokers, Some(vec![1, 2]));
        assert_eq!(r.topics[1].assignment, vec![(Some(3), vec![3, 1]), (None, vec![2])]);
        assert_eq!(
            Request::parse(r#"{"reassignments":[{"topic":"a","brokers":[1]}],"throttle":-1}"#).unwrap().throttle,
            None
        );
        assert!(Request::parse(r#"{"reassignments":[{"topic":"a","brokers":[-1]}]}"#).is_err());
    }
}
