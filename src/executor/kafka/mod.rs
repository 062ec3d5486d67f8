//! The built-in `kafka` executor (connected mode): an operation of an instance bound to a real
//! Apache Kafka cluster is done on that cluster, with the task's DMS name, steps and progress.
//!
//! Done so far:
//! - **kafkaConfigModify** of dynamic broker configs: `pre_check` finds every broker registered
//!   and unfenced and has the cluster validate the change without applying it; `apply_config`
//!   sets the values as the cluster-wide broker default with
//!   IncrementalAlterConfigs (idempotent: a second attempt sets the same values), then reads
//!   every broker's configs back with DescribeConfigs until each value is in force there. The
//!   step ends only when every broker shows every value; its progress is the share of brokers
//!   that do;
//! - **restartInstance**: a rolling restart through the binding's broker-control program, one
//!   broker at a time after Strimzi KafkaRoller's checks, the active controller last
//!   ([`rolling`]; the program's interface in [`control`]);
//! - **static configs and the auto-topic switch** (kafkaConfigModify): the program writes them into
//!   each broker's own configuration, then the same rolling restart, each broker's DescribeConfigs
//!   showing the value before the next one;
//! - **upgradeInstance**: each broker restarted on the Apache Kafka release the kernel build names
//!   (`4.3.2-h0…` → 4.3.2), then `metadata.version` finalised with UpdateFeatures;
//! - **kafkaPartitionReassign**: AlterPartitionReassignments throttled as Kafka's own tool does,
//!   progress from the bytes of the new replicas, a move in flight adopted after a crash
//!   ([`reassign`]);
//! - **extendInstance**: more brokers (`add-broker` through the broker-control program, then
//!   DescribeCluster until each serves; no partition moved unless a reassignment asks) or more
//!   storage (`set-storage`); a flavor change is refused ([`scale`]).
//!
//! The other operations of a bound instance are refused at their first step with the reason, so
//! that the task fails before anything changes.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

mod config;
mod control;
pub mod reassign;
mod rolling;
mod scale;

use super::{Event, Outcome, StepRun};
use crate::auth::keys::MasterKey;
use crate::storage::StoredBinding;

/// How long one admin call may take.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a step polls the cluster while it waits for a change to take effect.
pub(super) const POLL: Duration = Duration::from_millis(250);

/// A step's timeout when the executor file sets none for the operation.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(3600);

/// The operations the `kafka` executor does (by task name).
pub const OPERATIONS: &[&str] =
    &["extendInstance", "kafkaConfigModify", "kafkaPartitionReassign", "restartInstance", "upgradeInstance"];

/// One bound instance's cluster, as the executor reaches it.
#[derive(Debug)]
pub struct Spec {
    pub stored: StoredBinding,
    pub master: MasterKey,
    pub policy: std::sync::Arc<crate::domain::cluster::ClusterPolicy>,
    /// The step's timeout: a rolling restart's checks give up in time to fail with their reason.
    pub timeout: Duration,
}

/// Runs one step of a bound instance's operation on its cluster, until it is done, fails, or
/// `stop` turns true.
pub async fn run(
    spec: &Spec,
    req: &StepRun<'_>,
    events: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let work = step(spec, req, &events);
    tokio::select! {
        outcome = work => outcome,
        _ = super::stopped(&mut stop) => Outcome::Stopped { tail: String::new() },
    }
}

async fn step(spec: &Spec, req: &StepRun<'_>, events: &mpsc::Sender<Event>) -> Outcome {
    let result = match req.operation {
        "kafkaConfigModify" => config::step(spec, req, events).await,
        "kafkaPartitionReassign" => reassign::step(spec, req, events).await,
        "restartInstance" => rolling::restart_step(spec, req, events).await,
        "upgradeInstance" => rolling::upgrade_step(spec, req, events).await,
        "extendInstance" => scale::step(spec, req, events).await,
        other => Err(format!("{other} is not done on a bound cluster yet")),
    };
    match result {
        Ok(summary) => Outcome::Done { tail: summary },
        Err(reason) => Outcome::Failed { reason, tail: String::new() },
    }
}

/// Connects to the bound cluster, with the reason as the step's failure when it cannot.
pub(super) async fn connect(spec: &Spec) -> Result<krafka::Kafka, String> {
    crate::kafka::connect(&spec.stored, &spec.master, &spec.policy, CALL_TIMEOUT).await.map_err(why)
}

fn why(e: impl std::fmt::Display) -> String {
    e.to_string()
}
