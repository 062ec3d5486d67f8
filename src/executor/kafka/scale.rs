//! extendInstance on a bound cluster, with DMS's steps: more brokers (`oper_type` horizontal:
//! `pre_check`, `create_brokers`, `rolling_scaling`) or more storage (storage: `pre_check`,
//! `disk_expansion`, `rolling_scaling`), both through the binding's broker-control program
//! ([`super::control`]: `add-broker BROKER`, `set-storage BROKER GB`).
//!
//! - `pre_check`: the program is allowed and the cluster healthy (every broker serving, nothing
//!   under-replicated), else the task fails with nothing changed. For more brokers, the new ids
//!   are fixed here (after the highest the cluster shows) and kept with the task, so that an
//!   attempt after a crash adds the same brokers.
//! - `create_brokers`: for each new id DescribeCluster does not show serving, `add-broker`, then
//!   DescribeCluster polled until it shows the broker registered and unfenced; progress is the
//!   share of new brokers serving. `add-broker` is repeatable by the interface, so a second
//!   attempt simply asks again for those not yet serving.
//! - `disk_expansion`: `set-storage` for every broker, with its share of the new total (DMS's
//!   `new_storage_space` is the instance's, split evenly and rounded up).
//! - `rolling_scaling`: every broker serving (the new ones included) and nothing under-replicated.
//!   No partition is moved: new brokers take new partitions, and existing ones move only when a
//!   kafkaPartitionReassign asks (Kafka's own rule too; a silent rebalance would be traffic no one
//!   asked for).
//!
//! A flavor change (vertical) is refused at `pre_check`: a bound cluster's machines are the
//! operator's.

use std::collections::BTreeSet;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;

use super::control::Control;
use super::rolling::{Kept, check_budget, health_check, snapshot, unhealthy, wait};
use super::{CALL_TIMEOUT, Spec, why};
use crate::executor::{Event, StepRun};

/// Where the new brokers' ids are kept with the task.
const KEPT: &str = "extend_brokers";

/// What the task asks for, from its params.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ask {
    Brokers { add: u32 },
    Storage { total_gb: u64 },
    Flavor,
}

impl Ask {
    fn of(params: &str) -> Result<Ask, String> {
        let p: Value = serde_json::from_str(params).map_err(|e| format!("the task's params are not JSON: {e}"))?;
        let num = |k: &str| p.get(k).and_then(Value::as_u64);
        match p.get("oper_type").and_then(Value::as_str) {
            Some("horizontal") => {
                let (old, new) = (num("old_broker_num"), num("new_broker_num"));
                let (Some(old), Some(new)) = (old, new) else {
                    return Err("the task names no old and new broker counts".to_owned());
                };
                match u32::try_from(new.saturating_sub(old)) {
                    Ok(add) if add > 0 => Ok(Ask::Brokers { add }),
                    _ => Err(format!("{old} to {new} brokers adds none; nothing was changed")),
                }
            }
            Some("storage") => num("new_storage_space")
                .map(|total_gb| Ask::Storage { total_gb })
                .ok_or_else(|| "the task names no new storage".to_owned()),
            Some("vertical") => Ok(Ask::Flavor),
            _ => Err("the task names no oper_type".to_owned()),
        }
    }
}

/// One step of extendInstance on a bound cluster.
pub(super) async fn step(spec: &Spec, req: &StepRun<'_>, events: &mpsc::Sender<Event>) -> Result<String, String> {
    let ask = Ask::of(&req.task.params)?;
    match (&ask, req.step_name) {
        (Ask::Flavor, _) => {
            Err("a flavor change (oper_type vertical) is not done on a bound cluster: its brokers' machines are the \
             operator's; nothing was changed"
                .to_owned())
        }
        (_, "pre_check") => pre_check(spec, req, &ask).await,
        (Ask::Brokers { .. }, "create_brokers") => add_brokers(spec, req, events).await,
        (Ask::Storage { total_gb }, "disk_expansion") => set_storage(spec, req, events, *total_gb).await,
        (_, "rolling_scaling") => {
            let health = health_check(spec).await?;
            Ok(match ask {
                Ask::Brokers { .. } => format!(
                    "{health}; no partition was moved (new brokers take new partitions; a kafkaPartitionReassign \
                     moves existing ones)"
                ),
                _ => health,
            })
        }
        (_, other) => Err(format!("step {other} of {} is not done on a bound cluster", req.operation)),
    }
}

/// The program is allowed and the cluster healthy; for more brokers, their ids, kept.
async fn pre_check(spec: &Spec, req: &StepRun<'_>, ask: &Ask) -> Result<String, String> {
    Control::of(spec, req)?;
    let kafka = super::connect(spec).await?;
    let snap = snapshot(&kafka).await?;
    unhealthy(&snap).map_or(Ok(()), |why| Err(format!("{why}; nothing was changed")))?;
    let brokers = snap.brokers();
    let serving = list(&brokers);
    match ask {
        Ask::Brokers { add } => {
            let mut kept = Kept::load(req).await?;
            let ids = match kept.all.get(KEPT).and_then(|v| serde_json::from_value::<Vec<i32>>(v.clone()).ok()) {
                Some(ids) => ids,
                None => {
                    let ids = new_ids(&brokers, *add)?;
                    kept.all.insert(KEPT.to_owned(), serde_json::json!(ids));
                    kept.save_all().await?;
                    ids
                }
            };
            Ok(format!(
                "brokers {serving} serving, {} partitions fully replicated; adding brokers {}",
                snap.partitions_count(),
                list(&ids)
            ))
        }
        _ => Ok(format!("brokers {serving} serving, {} partitions fully replicated", snap.partitions_count())),
    }
}

/// `add` ids after the highest of `brokers`.
fn new_ids(brokers: &BTreeSet<i32>, add: u32) -> Result<Vec<i32>, String> {
    let first =
        brokers.last().map_or(Some(0), |b| b.checked_add(1)).ok_or("the cluster's broker ids are at their limit")?;
    (0..add)
        .map(|i| i32::try_from(i).ok().and_then(|i| first.checked_add(i)))
        .collect::<Option<Vec<i32>>>()
        .ok_or_else(|| "the cluster's broker ids are at their limit".to_owned())
}

/// `add-broker` for each new broker not serving yet, then DescribeCluster until it serves.
async fn add_brokers(spec: &Spec, req: &StepRun<'_>, events: &mpsc::Sender<Event>) -> Result<String, String> {
    let started = Instant::now();
    let deadline = started + check_budget(spec.timeout);
    let control = Control::of(spec, req)?;
    let kafka = super::connect(spec).await?;
    let kept = Kept::load(req).await?;
    let ids: Vec<i32> = kept
        .all
        .get(KEPT)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .ok_or("the new brokers' ids were not kept at pre_check")?;
    let mut spent = std::time::Duration::ZERO;
    for (done, &broker) in ids.iter().enumerate() {
        let progress = (done * 100 / ids.len().max(1)) as u32;
        let message = format!("broker {broker}: adding ({done} of {} serving)", ids.len());
        let _ = events.send(Event::Progress { progress: Some(progress), message: Some(message) }).await;
        if !serving(&kafka).await?.contains(&broker) {
            control.add_broker(broker).await.map_err(|e| format!("{e}; {}", so_far(&ids[..done])))?;
        }
        wait(deadline, &mut spent, || async {
            let now = serving(&kafka).await?;
            Ok(if now.contains(&broker) {
                Ok(())
            } else {
                Err(format!("DescribeCluster shows brokers {} serving, not {broker}", list(&now)))
            })
        })
        .await
        .map_err(|why| format!("broker {broker} did not join: {why}; {}", so_far(&ids[..done])))?;
    }
    let _ = events
        .send(Event::Progress { progress: Some(100), message: Some(format!("{0} of {0} serving", ids.len())) })
        .await;
    let now = serving(&kafka).await?;
    Ok(format!(
        "added brokers {} in {:.1} s; DescribeCluster shows brokers {} serving",
        list(&ids),
        started.elapsed().as_secs_f64(),
        list(&now)
    ))
}

/// `set-storage` for every broker, with its share of the new total.
async fn set_storage(
    spec: &Spec,
    req: &StepRun<'_>,
    events: &mpsc::Sender<Event>,
    total_gb: u64,
) -> Result<String, String> {
    let control = Control::of(spec, req)?;
    let kafka = super::connect(spec).await?;
    let brokers: Vec<i32> = snapshot(&kafka).await?.brokers().into_iter().collect();
    if brokers.is_empty() {
        return Err("the cluster shows no broker".to_owned());
    }
    let each = total_gb.div_ceil(brokers.len() as u64);
    for (done, &broker) in brokers.iter().enumerate() {
        let progress = (done * 100 / brokers.len()) as u32;
        let message = format!("broker {broker}: storage to {each} GB ({done} of {} done)", brokers.len());
        let _ = events.send(Event::Progress { progress: Some(progress), message: Some(message) }).await;
        control.set_storage(broker, each).await?;
    }
    Ok(format!("brokers {} set to {each} GB each ({total_gb} GB in all)", list(&brokers)))
}

/// The brokers DescribeCluster shows registered and unfenced.
async fn serving(kafka: &krafka::Kafka) -> Result<BTreeSet<i32>, String> {
    let view = crate::kafka::describe(kafka, CALL_TIMEOUT).await.map_err(why)?;
    Ok(view.brokers.iter().filter(|b| !b.fenced).map(|b| b.id).collect())
}

fn so_far(added: &[i32]) -> String {
    if added.is_empty() {
        "no broker was added".to_owned()
    } else {
        format!("brokers {} were added before", list(added))
    }
}

fn list<'a>(ids: impl IntoIterator<Item = &'a i32>) -> String {
    ids.into_iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_says_what_to_grow() {
        let p = |v: Value| Ask::of(&v.to_string());
        let grow = serde_json::json!({"oper_type": "horizontal", "old_broker_num": 3, "new_broker_num": 5});
        assert_eq!(p(grow), Ok(Ask::Brokers { add: 2 }));
        let none = serde_json::json!({"oper_type": "horizontal", "old_broker_num": 3, "new_broker_num": 3});
        assert!(p(none).is_err_and(|e| e.contains("adds none")));
        assert_eq!(
            p(serde_json::json!({"oper_type": "storage", "new_storage_space": 600})),
            Ok(Ask::Storage { total_gb: 600 })
        );
        assert_eq!(p(serde_json::json!({"oper_type": "vertical"})), Ok(Ask::Flavor));
        assert!(p(serde_json::json!({})).is_err());
        assert!(Ask::of("not json").is_err());
    }

    #[test]
    fn new_brokers_come_after_the_highest_id() {
        assert_eq!(new_ids(&[1, 2, 3].into(), 2), Ok(vec![4, 5]));
        assert_eq!(new_ids(&[0, 7].into(), 1), Ok(vec![8]));
        assert_eq!(new_ids(&BTreeSet::new(), 1), Ok(vec![0]));
        assert!(new_ids(&[i32::MAX].into(), 1).is_err());
        assert!(new_ids(&[i32::MAX - 1].into(), 2).is_err());
    }
}
