//! kafkaConfigModify on a bound cluster: dynamic broker configs with IncrementalAlterConfigs,
//! validated first, verified on every broker before the step ends.

use std::collections::BTreeMap;

use krafka::admin::{ConfigOp, ConfigResource, DescribeConfigsOptions, IncrementalAlterConfigsOptions};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{CALL_TIMEOUT, POLL, Spec, why};
use crate::domain::instance::config_def;
use crate::executor::{Event, StepRun};

/// One step of a kafkaConfigModify task (its steps: `pre_check`, `apply_config`).
pub(super) async fn step(spec: &Spec, req: &StepRun<'_>, events: &mpsc::Sender<Event>) -> Result<String, String> {
    let changes = Changes::of(req)?;
    // The static configs go in with a rolling restart: in the step of that name when the task
    // has one, else (the auto-topic switch, whose DMS steps are only these two) in apply_config.
    let static_roll = || super::rolling::Action::StaticConfig(changes.static_.clone());
    match req.step_name {
        "pre_check" => {
            let kafka = super::connect(spec).await?;
            let summary = pre_check(&kafka, &changes).await?;
            if changes.static_.is_empty() {
                return Ok(summary);
            }
            let names: Vec<&str> = changes.static_.iter().map(|(n, _)| n.as_str()).collect();
            let rolling = super::rolling::pre_check(spec, req)
                .await
                .map_err(|e| format!("{} need a rolling restart: {e}", names.join(", ")))?;
            Ok(format!("{summary}; {rolling}"))
        }
        "apply_config" => {
            let kafka = super::connect(spec).await?;
            let summary = apply(&kafka, &changes, events).await?;
            if changes.static_.is_empty() || req.steps.contains(&"rolling_restart") {
                return Ok(summary);
            }
            super::rolling::roll(spec, req, events, &static_roll(), None).await
        }
        "rolling_restart" if !changes.static_.is_empty() => {
            super::rolling::roll(spec, req, events, &static_roll(), None).await
        }
        "rolling_restart" => Ok("no static config to set".to_owned()),
        other => Err(format!("step {other} of {} is not done on a bound cluster yet", req.operation)),
    }
}

/// The configs a kafkaConfigModify task sets, from its params.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Changes {
    /// Broker config name → new value, of the configs that apply without a restart (as Kafka
    /// names them: see [`broker_config`]).
    dynamic: BTreeMap<String, String>,
    /// Those that need a rolling restart (Kafka's names), set in each broker's own config by
    /// the broker-control program.
    static_: Vec<(String, String)>,
}

impl Changes {
    fn ops(&self) -> Vec<ConfigOp> {
        self.dynamic.iter().map(|(n, v)| ConfigOp::set(n.clone(), v.clone())).collect()
    }

    fn of(req: &StepRun<'_>) -> Result<Changes, String> {
        if !super::OPERATIONS.contains(&req.operation) {
            return Err(format!("{} is not done on a bound cluster yet", req.operation));
        }
        let params: Value =
            serde_json::from_str(&req.task.params).map_err(|e| format!("the task's params are not JSON: {e}"))?;
        let mut c = Changes { dynamic: BTreeMap::new(), static_: Vec::new() };
        if let Some(auto) = params.get("new_auto_status") {
            let on = auto.as_bool().ok_or("the auto-topic switch is not true or false")?;
            c.static_.push(("auto.create.topics.enable".to_owned(), on.to_string()));
            return Ok(c);
        }
        let list = params.get("kafka_configs").and_then(Value::as_array).ok_or("the task names no configs")?;
        for item in list {
            let (Some(name), Some(value)) =
                (item.get("name").and_then(Value::as_str), item.get("new_value").and_then(Value::as_str))
            else {
                return Err(format!("a config change without a name or a value: {item}"));
            };
            match config_def(name) {
                Some(def) if def.dynamic => {
                    let (name, value) = broker_config(name, value)?;
                    c.dynamic.insert(name, value);
                }
                Some(def) if def.accepts(value) && !DMS_ONLY.contains(&name) => {
                    c.static_.push((name.to_owned(), value.to_owned()));
                }
                Some(_) if DMS_ONLY.contains(&name) => {
                    return Err(format!(
                        "{name} is a setting of DMS's own brokers that Apache Kafka does not have; nothing was changed"
                    ));
                }
                _ => return Err(format!("{name}={value} is not a value kafka-tasks sets; nothing was changed")),
            }
        }
        Ok(c)
    }
}

/// DMS configs that Apache Kafka's brokers do not know: a bound cluster cannot take them.
const DMS_ONLY: &[&str] = &["auto.create.groups.enable"];

/// The broker config that carries a DMS config's change at run time. DMS offers
/// `log.retention.hours` as a dynamic config, but Kafka updates only `log.retention.ms`
/// dynamically (and it takes precedence over the hours); the others are Kafka's own names.
fn broker_config(name: &str, value: &str) -> Result<(String, String), String> {
    match name {
        "log.retention.hours" => {
            let hours: i64 = value.parse().map_err(|_| format!("log.retention.hours is not a number: {value}"))?;
            Ok(("log.retention.ms".to_owned(), (hours * 3_600_000).to_string()))
        }
        _ => Ok((name.to_owned(), value.to_owned())),
    }
}

/// Every broker registered and unfenced, and nothing asked for that needs a restart.
async fn pre_check(kafka: &krafka::Kafka, changes: &Changes) -> Result<String, String> {
    let cluster = crate::kafka::describe(kafka, CALL_TIMEOUT).await.map_err(why)?;
    if cluster.brokers.is_empty() {
        return Err("the cluster shows no broker".to_owned());
    }
    let fenced: Vec<String> = cluster.brokers.iter().filter(|b| b.fenced).map(|b| b.id.to_string()).collect();
    if !fenced.is_empty() {
        return Err(format!("brokers {} are fenced (not serving); nothing was changed", fenced.join(", ")));
    }
    // The cluster checks the change without applying it, so that one it would refuse fails the
    // task here, before anything changed.
    if !changes.dynamic.is_empty() {
        let options = IncrementalAlterConfigsOptions::default().timeout(CALL_TIMEOUT).validate_only(true);
        let answers = kafka
            .admin()
            .incremental_alter_configs([(ConfigResource::broker_default(), changes.ops())], options)
            .await
            .map_err(why)?;
        for (_, answer) in answers {
            answer.map_err(|e| format!("the cluster would refuse the change: {e}; nothing was changed"))?;
        }
    }
    Ok(format!(
        "cluster {} answers: brokers {} serving",
        cluster.cluster_id,
        cluster.brokers.iter().map(|b| b.id.to_string()).collect::<Vec<_>>().join(", ")
    ))
}

/// Sets the values as the cluster-wide default, then waits until every broker has them.
async fn apply(kafka: &krafka::Kafka, changes: &Changes, events: &mpsc::Sender<Event>) -> Result<String, String> {
    if changes.dynamic.is_empty() {
        return Ok("nothing to set".to_owned());
    }
    let admin = kafka.admin();
    let ops: Vec<ConfigOp> = changes.dynamic.iter().map(|(n, v)| ConfigOp::set(n.clone(), v.clone())).collect();
    let options = IncrementalAlterConfigsOptions::default().timeout(CALL_TIMEOUT);
    let answers =
        admin.incremental_alter_configs([(ConfigResource::broker_default(), ops)], options).await.map_err(why)?;
    for (_, answer) in answers {
        answer.map_err(|e| format!("the cluster refused the change: {e}"))?;
    }
    let brokers: Vec<i32> =
        crate::kafka::describe(kafka, CALL_TIMEOUT).await.map_err(why)?.brokers.iter().map(|b| b.id).collect();
    loop {
        let resources = brokers.iter().map(|id| ConfigResource::broker(*id));
        let options = DescribeConfigsOptions::default()
            .timeout(CALL_TIMEOUT)
            .config_names(changes.dynamic.keys().cloned().collect());
        let described = admin.describe_configs(resources, options).await.map_err(why)?;
        let mut done = 0;
        let mut pending = Vec::new();
        for id in &brokers {
            let entries = match described.get(&ConfigResource::broker(*id)) {
                Some(Ok(entries)) => entries,
                Some(Err(e)) => return Err(format!("broker {id} did not describe its configs: {e}")),
                None => return Err(format!("broker {id} did not answer DescribeConfigs")),
            };
            let missing: Vec<&str> = changes
                .dynamic
                .iter()
                .filter(|(name, value)| {
                    !entries.iter().any(|e| &e.name == *name && e.value.as_deref() == Some(value.as_str()))
                })
                .map(|(name, _)| name.as_str())
                .collect();
            if missing.is_empty() {
                done += 1;
            } else {
                pending.push(format!("broker {id}: {}", missing.join(", ")));
            }
        }
        let progress = (done * 100 / brokers.len().max(1)) as u32;
        let message = format!("{done} of {} brokers have the new values", brokers.len());
        let _ = events.send(Event::Progress { progress: Some(progress), message: Some(message.clone()) }).await;
        if pending.is_empty() {
            return Ok(format!(
                "set {} on every broker ({})",
                changes.dynamic.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(", "),
                brokers.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
        tracing::debug!(pending = %pending.join("; "), "waiting for brokers to take the new configs");
        tokio::time::sleep(POLL).await;
    }
}
