//! Seeding a benchmark population straight into the store.

use kafka_tasks::domain::instance::{Instance, InstanceStatus, NewInstance};
use kafka_tasks::domain::operation::Operation;
use kafka_tasks::domain::{InstanceId, ProjectId, Step, StepStatus, TaskId, TaskStatus};
use kafka_tasks::storage::{NewTask, Storage};

/// What was seeded, for the load phases to aim at.
pub struct Population {
    pub hot: InstanceId,
    /// A sample of the hot instance's task ids (for show and progress).
    pub hot_sample: Vec<TaskId>,
    pub others: Vec<InstanceId>,
    /// Background task ids of the other instances, by instance (for delete).
    pub other_tasks: Vec<Vec<TaskId>>,
    /// Range of `created_at` the tasks span.
    pub oldest: i64,
    pub newest: i64,
}

const DAY_MS: i64 = 86_400_000;

fn instance(project: &ProjectId, now: i64, i: usize) -> anyhow::Result<Instance> {
    let new =
        NewInstance { name: format!("bench-{i}"), product_id: "c6.2u4g.cluster".into(), ..NewInstance::example() };
    let mut inst = Instance::create(project.clone(), &new, USER.0, USER.1, now - 400 * DAY_MS);
    inst.id = instance_id(project, i as u64)?;
    inst.status = InstanceStatus::Running;
    Ok(inst)
}

/// Who the seeded tasks were started by.
const USER: (&str, &str) = ("0a1b2c3d4e5f60718293a4b5c6d7e8f9", "bench");

/// A cheap deterministic spread (splitmix64), so that runs seed comparable data.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// 128 bits of the same spread for the `n`-th id of a kind in a project (two projects seeded
/// into one store, as `bench --prune` does, get different ids). The ids are deterministic like
/// the rest of the population, so that every run builds the same B-trees: where a random id
/// falls decides which pages split, and so how much the same write costs.
fn spread_id(project: &ProjectId, kind: u64, n: u64) -> u128 {
    let seed = project.as_str().bytes().fold(kind, |h, b| mix(h ^ u64::from(b)));
    (u128::from(mix(n ^ seed)) << 64) | u128::from(mix(n ^ seed ^ 0x6a09_e667_f3bc_c909))
}

fn instance_id(project: &ProjectId, n: u64) -> anyhow::Result<InstanceId> {
    let id = uuid::Uuid::from_u128(spread_id(project, 0x1d5, n)).hyphenated().to_string();
    id.parse().map_err(|_| anyhow::anyhow!("not an instance id: {id}"))
}

fn task_id(project: &ProjectId, n: u64) -> anyhow::Result<TaskId> {
    let id = format!("{:032x}", spread_id(project, 0x7a5c, n));
    id.parse().map_err(|_| anyhow::anyhow!("not a task id: {id}"))
}

/// A finished task of a realistic mix: 90 % SUCCESS, 8 % FAILED, 2 % cancelled scheduled tasks.
fn finished_task(inst: &Instance, n: u64, created_at: i64) -> anyhow::Result<NewTask> {
    let r = mix(n);
    let op = match r % 4 {
        0 => Operation::AutoTopic { old: false, new: true },
        1 => Operation::Restart,
        2 => Operation::Upgrade {
            engine_version: "2.7".into(),
            old_kernel: "2.7.1-h0.cbu.dms.100.r0".into(),
            new_kernel: "2.7.1-h0.cbu.dms.101.r0".into(),
            brokers: 3,
        },
        _ => Operation::ModifyConfigs { changes: vec![] },
    };
    let roll = (r >> 8) % 100;
    let (status, schedule_at) = match roll {
        0..=89 => (TaskStatus::Success, None),
        90..=97 => (TaskStatus::Failed, None),
        _ => (TaskStatus::Cancelled, Some(created_at + DAY_MS)),
    };
    let mut t = created_at;
    let steps: Vec<Step> = op
        .plan()
        .iter()
        .enumerate()
        .map(|(i, (kind, ms))| {
            let (st, start, end) = match status {
                TaskStatus::Cancelled => (StepStatus::Waiting, None, None),
                TaskStatus::Failed if i == 1 => (StepStatus::Failed, Some(t), Some(t + *ms as i64)),
                TaskStatus::Failed if i > 1 => (StepStatus::Waiting, None, None),
                _ => (StepStatus::Completed, Some(t), Some(t + *ms as i64)),
            };
            t += *ms as i64;
            Step {
                name: kind.name().into_owned(),
                status: st,
                start_time: start,
                end_time: end,
                duration_ms: *ms,
                failure: None,
            }
        })
        .collect();
    let mut task = NewTask::new(inst, op, USER, created_at, schedule_at, 1.0);
    task.record.id = task_id(&inst.project_id, n)?;
    task.record.status = status;
    task.record.updated_at = t;
    task.record.steps = steps;
    Ok(task)
}

/// Seeds `hot_tasks` tasks in one instance and `tasks_per_instance` in each of `instances` more,
/// spread over the last year, in chunks so that memory stays flat.
pub async fn seed(
    storage: &Storage,
    project: &ProjectId,
    now: i64,
    hot_tasks: usize,
    instances: usize,
    tasks_per_instance: usize,
) -> anyhow::Result<Population> {
    const CHUNK: usize = 50_000;
    let span = 365 * DAY_MS;
    let oldest = now - span;
    let created = |n: u64| oldest + (mix(n ^ 0x5eed) % span as u64) as i64;
    let hot = instance(project, now, 0)?;
    let mut pop = Population {
        hot: hot.id.clone(),
        hot_sample: Vec::new(),
        others: Vec::new(),
        other_tasks: Vec::new(),
        oldest,
        newest: now,
    };
    let mut counter: u64 = 0;
    let mut batch: Vec<NewTask> = Vec::with_capacity(CHUNK);
    let mut pending_instances = vec![hot.clone()];
    for _ in 0..hot_tasks {
        counter += 1;
        let t = finished_task(&hot, counter, created(counter))?;
        if pop.hot_sample.len() < 10_000 && t.record.status != TaskStatus::Cancelled {
            pop.hot_sample.push(t.record.id.clone());
        }
        batch.push(t);
        if batch.len() == CHUNK {
            storage.bulk.bulk_load(std::mem::take(&mut pending_instances), std::mem::take(&mut batch)).await?;
        }
    }
    for i in 0..instances {
        let inst = instance(project, now, i + 1)?;
        let mut ids = Vec::with_capacity(tasks_per_instance);
        for _ in 0..tasks_per_instance {
            counter += 1;
            let t = finished_task(&inst, counter, created(counter))?;
            if t.record.status != TaskStatus::Cancelled {
                ids.push(t.record.id.clone());
            }
            batch.push(t);
        }
        pop.others.push(inst.id.clone());
        pop.other_tasks.push(ids);
        pending_instances.push(inst);
        if batch.len() >= CHUNK {
            storage.bulk.bulk_load(std::mem::take(&mut pending_instances), std::mem::take(&mut batch)).await?;
        }
    }
    storage.bulk.bulk_load(pending_instances, batch).await?;
    Ok(pop)
}

/// `n` new instances, each with one operation queued (`CREATED`, due now, holding its instance's
/// lock), so that a starting engine finds `n` tasks to run: the queue-drain measurement.
pub async fn queue(storage: &Storage, project: &ProjectId, now: i64, n: usize) -> anyhow::Result<()> {
    const CHUNK: usize = 10_000;
    let mut instances = Vec::with_capacity(CHUNK);
    let mut tasks = Vec::with_capacity(CHUNK);
    for i in 0..n {
        let mut inst = instance(project, now, 1_000_000 + i)?;
        let mut task = NewTask::new(&inst, Operation::AutoTopic { old: false, new: true }, USER, now, None, 0.0);
        task.record.id = task_id(project, 1 << 40 | i as u64)?;
        inst.busy_task = Some(task.record.id.clone());
        tasks.push(task);
        instances.push(inst);
        if tasks.len() == CHUNK {
            storage.bulk.bulk_load(std::mem::take(&mut instances), std::mem::take(&mut tasks)).await?;
        }
    }
    storage.bulk.bulk_load(instances, tasks).await?;
    Ok(())
}
