//! The storage contract: the same cases against every engine, each on a fresh database.
//! Each case is two tests, `case::sqlite` and `case::postgres`. PostgreSQL is `KAFKA_TASKS_TEST_PG`
//! (default `postgres://postgres@127.0.0.1:5432`); when it is not reachable the PostgreSQL half
//! says "skipped" and passes locally, and fails in CI (`CI=true`), where it must be up.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that meets the unexpected should stop there: a panic is its failure"
)]

use std::collections::HashSet;
use std::time::Duration;

use kafka_tasks::domain::instance::{Instance, InstanceStatus, NewInstance};
use kafka_tasks::domain::operation::{self, Operation, StepContext};
use kafka_tasks::domain::placement::{placement, views_of};
use kafka_tasks::domain::{ProjectId, Role, TaskId, TaskRecord, TaskStatus, Timestamp};
use kafka_tasks::storage::*;

const CTX: StepContext =
    StepContext { storage_pool_gb: 10_000, executed: kafka_tasks::domain::operation::OpSet::EMPTY, stepwise: false };
const T0: i64 = 1_700_000_000_000;

extern crate kafka_tasks_testkit as kit;

use kit::pg;

struct Engine {
    name: &'static str,
    storage: Storage,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<pg::FreshDatabase>,
}

/// A fresh database on `engine` (PostgreSQL: the runner has checked that it answers).
async fn fresh(engine: kit::engine::Engine) -> Engine {
    match engine {
        kit::engine::Engine::Sqlite => {
            let dir = tempfile::tempdir().expect("dir");
            let url = format!("sqlite:{}", dir.path().join("c.db").display());
            let storage = Storage::open(&url).await.expect("sqlite");
            Engine { name: "sqlite", storage, _dir: Some(dir), _pg: None }
        }
        kit::engine::Engine::Postgres => {
            let db = pg::FreshDatabase::create("kt_contract").await;
            let storage = Storage::open(&db.url).await.expect("postgres");
            Engine { name: "postgres", storage, _dir: None, _pg: Some(db) }
        }
    }
}

/// One contract case, run once per engine as two tests named after the engine
/// (`case::sqlite`, `case::postgres`, by the kit's `per_engine!`), so that a failure says which
/// engine failed.
macro_rules! contract {
    ($(#[$m:meta])* async fn $name:ident($e:ident: Engine) $body:block) => {
        $crate::kit::per_engine! {
            $(#[$m])*
            #[tokio::test]
            async fn $name() {
                let $e = fresh(kit::engine::current()).await;
                $body
            }
        }
    };
}

/// The instant `ms` (epoch milliseconds), as the engine's store takes it.
fn at(ms: i64) -> Timestamp {
    Timestamp::from_ms(ms)
}

fn project() -> ProjectId {
    "0123456789abcdef0123456789abcdef".parse().expect("project")
}

fn instance(p: &ProjectId) -> Instance {
    let new = NewInstance { name: "kafka".into(), ..NewInstance::example() };
    let mut inst = Instance::create(p.clone(), &new, "u", "n", T0);
    inst.status = InstanceStatus::Running;
    inst
}

fn task(inst: &Instance, op: Operation, created_at: i64, schedule_at: Option<i64>) -> NewTask {
    // Short steps, but not zero-length: those would all finish in one write.
    NewTask::new(inst, op, ("u", "n"), created_at, schedule_at, 0.001)
}

/// An instance whose createInstance task has already run to the end.
async fn running_instance(s: &Storage) -> Instance {
    let inst = instance(&project());
    let create = task(
        &inst,
        Operation::CreateInstance { name: "k".into(), engine_version: "2.7".into(), broker_num: 3, storage_space: 300 },
        T0,
        None,
    );
    s.instances
        .create_instance(Instance { status: InstanceStatus::Creating, ..inst.clone() }, create, None)
        .await
        .expect("create");
    run_all(s, "setup", T0).await;
    s.instances.get_instance(&inst.project_id, &inst.id).await.expect("get").expect("exists")
}

/// Claims and finishes everything due at `now`.
async fn run_all(s: &Storage, owner: &str, now: i64) -> Vec<TaskStatus> {
    let mut ended = vec![];
    for c in s.engine.claim(owner, at(now), Duration::from_millis(60_000), 100, CTX).await.expect("claim") {
        let mut step = c.step;
        loop {
            match s
                .engine
                .finish_step(owner, &c.task.id, step, at(now), Duration::from_millis(60_000), CTX)
                .await
                .expect("finish")
            {
                StepOutcome::Next(n) => step = n,
                StepOutcome::Ended(st) => {
                    ended.push(st);
                    break;
                }
                StepOutcome::Lost => panic!("lost a task it held"),
            }
        }
    }
    ended
}

async fn submit(
    s: &Storage,
    inst: &Instance,
    op: Operation,
    created_at: i64,
    schedule_at: Option<i64>,
) -> Result<NewTask, SubmitError> {
    let t = task(inst, op, created_at, schedule_at);
    s.instances.submit(&inst.project_id, &inst.id, TaskBuilder::ready(t), None).await.expect("submit")
}

contract! {
    async fn a_task_runs_through_its_steps_and_applies_its_change_at_the_end(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        assert_eq!(inst.status, InstanceStatus::Running, "{}", e.name);
        assert_eq!(inst.busy_task, None, "{}", e.name);
        let t = submit(s, &inst, Operation::AutoTopic { old: false, new: true }, T0 + 1, None).await.expect("admitted");
        let claimed = s.engine.claim("w", at(T0 + 2), Duration::from_millis(60_000), 10, CTX).await.expect("claim");
        assert_eq!(claimed.len(), 1, "{}", e.name);
        assert_eq!(claimed[0].step, 0);
        assert_eq!(
            s.engine.finish_step("w", &t.record.id, 0, at(T0 + 3), Duration::from_millis(60_000), CTX).await.expect("f"),
            StepOutcome::Next(1)
        );
        let mid = s.instances.get_instance(&inst.project_id, &inst.id).await.expect("g").expect("i");
        assert!(!mid.enable_auto_topic, "{}: applied before the last step", e.name);
        assert_eq!(
            s.engine.finish_step("w", &t.record.id, 1, at(T0 + 4), Duration::from_millis(60_000), CTX).await.expect("f"),
            StepOutcome::Ended(TaskStatus::Success)
        );
        let after = s.instances.get_instance(&inst.project_id, &inst.id).await.expect("g").expect("i");
        assert!(after.enable_auto_topic, "{}", e.name);
        assert_eq!(after.busy_task, None, "{}", e.name);
        let Found::Yes(rec) =
            s.tasks.get_task(&inst.project_id, &inst.id, &t.record.id, View::Background).await.expect("g")
        else {
            panic!("{}: task missing", e.name)
        };
        assert_eq!(rec.status, TaskStatus::Success);
        assert_eq!(rec.steps.iter().map(|s| s.end_time).collect::<Vec<_>>(), [Some(T0 + 3), Some(T0 + 4)]);
    }
}

contract! {
    async fn steps_planned_to_take_no_time_finish_in_the_same_write(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let mut t = task(&inst, Operation::Restart, T0 + 1, None);
        t.record.steps = t.operation.steps(0.0);
        s.instances
            .submit(&inst.project_id, &inst.id, TaskBuilder::ready(t), None)
            .await
            .expect("submit")
            .expect("admitted");
        // Taken and done in the claim itself: nothing is left for a worker to run.
        let claimed = s.engine.claim("w", at(T0 + 2), Duration::from_millis(60_000), 10, CTX).await.expect("claim");
        assert_eq!(claimed.len(), 1, "{}", e.name);
        assert_eq!(claimed[0].ended, Some(TaskStatus::Success), "{}", e.name);
        let id = &claimed[0].task.id;
        assert_eq!(
            s.engine.finish_step("w", id, 0, at(T0 + 3), Duration::from_millis(60_000), CTX).await.expect("f"),
            StepOutcome::Lost,
            "{}",
            e.name
        );
        let Found::Yes(rec) = s.tasks.get_task(&inst.project_id, &inst.id, id, View::Background).await.expect("g")
        else {
            panic!()
        };
        assert_eq!(rec.status, TaskStatus::Success);
        assert!(
            rec.steps
                .iter()
                .all(|st| st.status == kafka_tasks::domain::StepStatus::Completed && st.end_time == Some(T0 + 2)),
            "{}",
            e.name
        );
        let after = s.instances.get_instance(&inst.project_id, &inst.id).await.expect("g").expect("i");
        assert_eq!((after.status, after.busy_task.clone()), (InstanceStatus::Running, None), "{}", e.name);
    }
}

contract! {
    async fn one_immediate_operation_at_a_time_scheduled_ones_wait(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        submit(s, &inst, Operation::Restart, T0 + 1, None).await.expect("first");
        assert_eq!(
            submit(s, &inst, Operation::Restart, T0 + 2, None).await.err(),
            Some(SubmitError::Busy),
            "{}",
            e.name
        );
        let sched = submit(s, &inst, Operation::Restart, T0 + 3, Some(T0 + 10)).await.expect("scheduled is admitted");
        // Due, but the instance is busy: the scheduled task waits.
        let claimed = s.engine.claim("w", at(T0 + 20), Duration::from_millis(60_000), 10, CTX).await.expect("claim");
        assert_eq!(claimed.len(), 1, "{}", e.name);
        assert_ne!(claimed[0].task.id, sched.record.id);
        let mut step = claimed[0].step;
        while let StepOutcome::Next(n) =
            s.engine.finish_step("w", &claimed[0].task.id, step, at(T0 + 21), Duration::from_millis(60_000), CTX).await.expect("f")
        {
            step = n;
        }
        // A second later it is looked at again and runs.
        assert!(s.engine.claim("w", at(T0 + 22), Duration::from_millis(60_000), 10, CTX).await.expect("claim").is_empty(), "{}", e.name);
        let later = s.engine.claim("w", at(T0 + 1_100), Duration::from_millis(60_000), 10, CTX).await.expect("claim");
        assert_eq!(
            later.iter().map(|c| c.task.id.clone()).collect::<Vec<_>>(),
            std::slice::from_ref(&sched.record.id),
            "{}",
            e.name
        );
        let busy = s.instances.get_instance(&inst.project_id, &inst.id).await.expect("g").expect("i");
        assert_eq!(busy.busy_task, Some(sched.record.id), "{}", e.name);
        assert_eq!(busy.status, InstanceStatus::Restarting);
    }
}

contract! {
    async fn an_expired_lease_is_taken_over_and_the_old_holder_loses_the_task(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let t = submit(s, &inst, Operation::Restart, T0 + 1, None).await.expect("admitted");
        assert_eq!(s.engine.claim("a", at(T0 + 2), Duration::from_millis(100), 10, CTX).await.expect("c").len(), 1);
        assert_eq!(
            s.engine.finish_step("a", &t.record.id, 0, at(T0 + 3), Duration::from_millis(100), CTX).await.expect("f"),
            StepOutcome::Next(1)
        );
        assert!(s.engine.claim("b", at(T0 + 50), Duration::from_millis(100), 10, CTX).await.expect("c").is_empty(), "{}: leased", e.name);
        let taken = s.engine.claim("b", at(T0 + 200), Duration::from_millis(100), 10, CTX).await.expect("c");
        assert_eq!(taken.len(), 1, "{}", e.name);
        assert_eq!(taken[0].step, 1, "{}: resumes at the unfinished step", e.name);
        assert_eq!(
            s.engine.finish_step("a", &t.record.id, 1, at(T0 + 201), Duration::from_millis(100), CTX).await.expect("f"),
            StepOutcome::Lost,
            "{}",
            e.name
        );
        // A lease that ran out is lost even before anybody takes it.
        assert_eq!(
            s.engine.finish_step("b", &t.record.id, 1, at(T0 + 400), Duration::from_millis(100), CTX).await.expect("f"),
            StepOutcome::Lost,
            "{}",
            e.name
        );
        s.engine.claim("b", at(T0 + 500), Duration::from_millis(100), 10, CTX).await.expect("c");
        s.engine.renew_leases("b", at(T0 + 10_000)).await.expect("renew");
        assert!(s.engine.claim("c", at(T0 + 9_000), Duration::from_millis(100), 10, CTX).await.expect("c").is_empty(), "{}: renewed", e.name);
        s.engine.release_leases("b").await.expect("release");
        assert_eq!(s.engine.claim("c", at(T0 + 9_000), Duration::from_millis(100), 10, CTX).await.expect("c").len(), 1, "{}: released", e.name);
    }
}

contract! {
    async fn concurrent_claims_never_hand_out_a_task_twice(e: Engine) {
        let s = &e.storage;
        let mut ids = HashSet::new();
        for _ in 0..60 {
            let inst = running_instance(s).await;
            ids.insert(submit(s, &inst, Operation::Restart, T0 + 1, None).await.expect("admitted").record.id);
        }
        let mut handles = vec![];
        for w in 0..6 {
            let engine = s.engine.clone();
            handles.push(tokio::spawn(async move {
                let mut got = vec![];
                for _ in 0..10 {
                    got.extend(
                        engine
                            .claim(&format!("w{w}"), at(T0 + 2), Duration::from_millis(60_000), 4, CTX)
                            .await
                            .expect("claim")
                            .into_iter()
                            .map(|c| c.task.id),
                    );
                }
                got
            }));
        }
        let mut all: Vec<TaskId> = vec![];
        for h in handles {
            all.extend(h.await.expect("join"));
        }
        let unique: HashSet<_> = all.iter().cloned().collect();
        assert_eq!(unique.len(), all.len(), "{}: a task was claimed twice", e.name);
        assert_eq!(unique, ids, "{}: every task claimed", e.name);
    }
}

contract! {
    async fn deletes_follow_the_rules_and_list_pages_newest_first(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let p = inst.project_id.clone();
        let running = submit(s, &inst, Operation::Restart, T0 + 10, None).await.expect("admitted").record.id;
        assert_eq!(
            s.tasks.delete_task(&p, &inst.id, &running, View::Background, Some(event("refused"))).await.expect("d"),
            DeleteOutcome::Running,
            "{}",
            e.name
        );
        run_all(s, "w", T0 + 11).await;
        for i in 0..5 {
            submit(s, &inst, Operation::AutoTopic { old: false, new: true }, T0 + 100 + i, None)
                .await
                .expect("admitted");
            run_all(s, "w", T0 + 200).await;
        }
        let q = |offset, limit, from, to| TaskQuery {
            project_id: p.clone(),
            instance_id: inst.id.clone(),
            view: View::Background,
            created_from: from,
            created_to: to,
            offset,
            limit,
        };
        let (total, page) = s.tasks.list_tasks(&q(0, 3, None, None)).await.expect("l").expect("instance");
        assert_eq!(total, 7, "{}", e.name);
        assert_eq!(page.iter().map(|t| t.created_at).collect::<Vec<_>>(), [T0 + 104, T0 + 103, T0 + 102], "{}", e.name);
        let (_, deep) = s.tasks.list_tasks(&q(6, 3, None, None)).await.expect("l").expect("instance");
        assert_eq!(deep.len(), 1);
        let (in_range, _) = s.tasks.list_tasks(&q(0, 10, Some(T0 + 101), Some(T0 + 103))).await.expect("l").expect("i");
        assert_eq!(in_range, 3, "{}: bounds are inclusive", e.name);

        let Found::Yes(before) = s.tasks.get_task(&p, &inst.id, &running, View::Background).await.expect("g") else {
            panic!()
        };
        let DeleteOutcome::Deleted(gone) =
            s.tasks.delete_task(&p, &inst.id, &running, View::Background, Some(event("deleted"))).await.expect("d")
        else {
            panic!("{}: not deleted", e.name)
        };
        // The audit event went in with the delete, carrying the record; the refused delete left none.
        let events = s.audit.list_audit(None, None, 10).await.expect("audit");
        assert_eq!(events.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>(), ["deleted"], "{}", e.name);
        assert_eq!(
            events[0].detail.as_ref().map(|d| d["deleted_task"]["id"].clone()),
            Some(serde_json::json!(running.as_str()))
        );
        assert_eq!(*gone, before);
        assert_eq!(
            s.tasks.delete_task(&p, &inst.id, &running, View::Background, None).await.expect("d"),
            DeleteOutcome::NoTask
        );
        let other: ProjectId = "fedcba9876543210fedcba9876543210".parse().expect("p");
        assert_eq!(
            s.tasks.delete_task(&other, &inst.id, &running, View::Background, None).await.expect("d"),
            DeleteOutcome::NoInstance
        );
        assert_eq!(s.tasks.list_tasks(&TaskQuery { project_id: other, ..q(0, 1, None, None) }).await.expect("l"), None);
    }
}

contract! {
    async fn a_bulk_delete_preview_counts_what_the_delete_then_removes(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let p = inst.project_id.clone();
        for i in 0..4 {
            submit(s, &inst, Operation::AutoTopic { old: false, new: true }, T0 + 100 + i, None)
                .await
                .expect("admitted");
            run_all(s, "w", T0 + 200).await;
        }
        let waiting = submit(s, &inst, Operation::Restart, T0 + 300, None).await.expect("admitted");
        let filter = BulkFilter::parse(|k| (k == "end_time").then(|| "29991231000000".to_owned())).expect("filter");
        let preview = s.tasks.preview_delete(&p, &inst.id, &filter, 3).await.expect("preview").expect("instance");
        // The instance's own createInstance task and four autotopic tasks; not the running restart.
        assert_eq!(preview.matched, 5, "{}", e.name);
        assert_eq!(preview.first.len(), 3, "{}", e.name);
        assert!(preview.first.iter().all(|t| t.id != waiting.record.id), "{}", e.name);
        assert!(preview.first.windows(2).all(|w| w[0].created_at <= w[1].created_at), "{}: oldest first", e.name);
        let deleted =
            s.tasks.delete_tasks(&p, &inst.id, &filter, 3, event("bulk")).await.expect("delete").expect("instance");
        assert_eq!(deleted.deleted, preview.first, "{}: the preview names what the delete removes", e.name);
        let after = s.tasks.preview_delete(&p, &inst.id, &filter, 10).await.expect("preview").expect("instance");
        assert_eq!(after.matched, 2, "{}", e.name);
        let other: ProjectId = "fedcba9876543210fedcba9876543210".parse().expect("p");
        assert_eq!(s.tasks.preview_delete(&other, &inst.id, &filter, 3).await.expect("preview"), None, "{}", e.name);
    }
}

contract! {
    async fn scheduled_tasks_wait_move_and_cancel(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let p = inst.project_id.clone();
        let a = submit(s, &inst, operation::upgrade(&inst, NEWER).expect("upgradable"), T0 + 1, Some(T0 + 5_000))
            .await
            .expect("a")
            .record
            .id;
        let b = submit(s, &inst, Operation::Restart, T0 + 2, Some(T0 + 5_000)).await.expect("b").record.id;
        assert!(s.engine.claim("w", at(T0 + 4_999), Duration::from_millis(60_000), 10, CTX).await.expect("c").is_empty(), "{}: not due", e.name);
        assert_eq!(
            s.tasks.get_task(&p, &inst.id, &a, View::Background).await.expect("g"),
            Found::NoTask,
            "{}: not yet a background task",
            e.name
        );
        let moved = ScheduleChange { execute_at: Some(T0 + 9_000), status: StatusChange::Keep };
        assert_eq!(
            s.tasks.update_scheduled(&p, &inst.id, &a, moved, Timestamp::from_ms(T0 + 10), None).await.expect("u"),
            Found::Yes(true)
        );
        let cancel = ScheduleChange { execute_at: None, status: StatusChange::Cancel };
        assert_eq!(
            s.tasks.update_scheduled(&p, &inst.id, &b, cancel, Timestamp::from_ms(T0 + 10), None).await.expect("u"),
            Found::Yes(true)
        );
        assert!(
            s.engine.claim("w", at(T0 + 8_000), Duration::from_millis(60_000), 10, CTX).await.expect("c").is_empty(),
            "{}: moved and cancelled",
            e.name
        );
        assert_eq!(run_all(s, "w", T0 + 9_000).await, [TaskStatus::Success], "{}", e.name);
        assert_eq!(
            s.tasks.update_scheduled(&p, &inst.id, &a, cancel, Timestamp::from_ms(T0 + 9_001), None).await.expect("u"),
            Found::Yes(false),
            "{}",
            e.name
        );
        let Found::Yes(fired) = s.tasks.get_task(&p, &inst.id, &a, View::Background).await.expect("g") else {
            panic!("{}", e.name)
        };
        assert_eq!(fired.schedule_at, Some(T0 + 9_000));
        let Found::Yes(cancelled) = s.tasks.get_task(&p, &inst.id, &b, View::Scheduled).await.expect("g") else {
            panic!()
        };
        assert_eq!(cancelled.status, TaskStatus::Cancelled);
        assert!(run_all(s, "w", T0 + 100_000).await.is_empty(), "{}: a cancelled task never runs", e.name);
        let upgraded = s.instances.get_instance(&p, &inst.id).await.expect("g").expect("i");
        assert_eq!(upgraded.kernel_version(), NEWER);
        assert_eq!(upgraded.engine_version, "2.7");
    }
}

/// A build newer than every built-in one of 2.7.
const NEWER: &str = "2.7.1-h0.cbu.dms.101.r0";

contract! {
    async fn a_cancelled_scheduled_task_waits_again_only_while_its_time_is_ahead(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let p = inst.project_id.clone();
        let a = submit(s, &inst, Operation::Restart, T0 + 1, Some(T0 + 5_000)).await.expect("a").record.id;
        let change = |execute_at, status| ScheduleChange { execute_at, status };
        let update = |c, now| s.tasks.update_scheduled(&p, &inst.id, &a, c, Timestamp::from_ms(now), None);
        assert_eq!(update(change(None, StatusChange::Cancel), T0 + 10).await.expect("u"), Found::Yes(true));
        assert_eq!(update(change(None, StatusChange::Wait), T0 + 20).await.expect("u"), Found::Yes(true), "{}", e.name);
        assert_eq!(update(change(None, StatusChange::Cancel), T0 + 30).await.expect("u"), Found::Yes(true));
        assert_eq!(
            update(change(None, StatusChange::Wait), T0 + 6_000).await.expect("u"),
            Found::Yes(false),
            "{}: its time has passed",
            e.name
        );
        assert_eq!(
            update(change(Some(T0 + 9_000), StatusChange::Wait), T0 + 6_000).await.expect("u"),
            Found::Yes(true),
            "{}: with a new time ahead",
            e.name
        );
        assert_eq!(run_all(s, "w", T0 + 9_000).await, [TaskStatus::Success], "{}", e.name);
        assert_eq!(
            update(change(None, StatusChange::Wait), T0 + 9_001).await.expect("u"),
            Found::Yes(false),
            "{}: it ran",
            e.name
        );
    }
}

contract! {
    async fn kernel_builds_are_appended_in_order_per_engine_version(e: Engine) {
        let s = &e.storage;
        assert!(s.kernels.added_kernel_builds("2.7").await.expect("r").is_empty(), "{}", e.name);
        assert!(s.kernels.add_kernel_build("2.7", "b-2", Timestamp::from_ms(T0)).await.expect("w"));
        assert!(s.kernels.add_kernel_build("2.7", "b-1", Timestamp::from_ms(T0)).await.expect("w"));
        assert!(!s.kernels.add_kernel_build("2.7", "b-2", Timestamp::from_ms(T0)).await.expect("w"), "{}: once", e.name);
        assert!(s.kernels.add_kernel_build("3.x", "b-3", Timestamp::from_ms(T0)).await.expect("w"));
        assert_eq!(s.kernels.added_kernel_builds("2.7").await.expect("r"), ["b-2", "b-1"], "{}", e.name);
        let catalog = s.kernel_catalog("2.7").await.expect("r").expect("known");
        assert_eq!(catalog.latest(), "b-1", "{}: the last added is the latest", e.name);
    }
}

contract! {
    async fn modifying_an_instance_stores_what_the_change_made_or_nothing(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let p = inst.project_id.clone();
        let rename: InstanceChange = Box::new(|i: &mut Instance| {
            i.name = "renamed".into();
            Ok(())
        });
        assert_eq!(s.instances.modify_instance(&p, &inst.id, rename, None).await.expect("m"), Ok(()));
        let refuse: InstanceChange = Box::new(|i: &mut Instance| {
            i.name = "never".into();
            Err(kafka_tasks::domain::Invalid::InstanceState)
        });
        assert!(s.instances.modify_instance(&p, &inst.id, refuse, None).await.expect("m").is_err());
        let got = s.instances.get_instance(&p, &inst.id).await.expect("g").expect("i");
        assert_eq!(got.name, "renamed", "{}", e.name);
        let other = ProjectId::generate();
        let noop: InstanceChange = Box::new(|_: &mut Instance| Ok(()));
        assert_eq!(
            s.instances.modify_instance(&other, &inst.id, noop, None).await.expect("m"),
            Err(SubmitError::NoInstance),
            "{}",
            e.name
        );
    }
}

contract! {
    async fn deleting_an_instance_removes_it_and_its_tasks(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        submit(s, &inst, Operation::DeleteInstance, T0 + 1, None).await.expect("admitted");
        assert_eq!(run_all(s, "w", T0 + 2).await, [TaskStatus::Success]);
        assert_eq!(s.instances.get_instance(&inst.project_id, &inst.id).await.expect("g"), None, "{}", e.name);
        assert!(s.instances.list_instances(&inst.project_id).await.expect("l").is_empty());
    }
}

/// An audit event for a change made in these tests.
fn event(request_id: &str) -> AuditEvent {
    AuditEvent {
        at: T0,
        request_id: request_id.into(),
        project_id: project().as_str().into(),
        user_id: "u".into(),
        user_name: "n".into(),
        access_key: None,
        action: "dms:instance:deleteBackgroundTask".into(),
        target: "t".into(),
        status: 204,
        detail: None,
    }
}

fn credential(ak: &str) -> CredentialRecord {
    CredentialRecord {
        access_key: ak.into(),
        secret_sealed: vec![1, 2, 3],
        project_id: project(),
        user_id: "u".into(),
        user_name: "n".into(),
        role: Role::Operator,
        created_at: T0,
        revoked_at: None,
        failed_attempts: 0,
        locked_until: None,
    }
}

contract! {
    async fn credentials_are_stored_and_revoked_and_the_first_one_is_created_once(e: Engine) {
        let c = &e.storage.credentials;
        let (x, y) = (c.clone(), c.clone());
        let (first, second) =
            tokio::join!(x.insert_first_credential(credential("AK1")), y.insert_first_credential(credential("AK2")));
        assert_eq!([first.expect("a"), second.expect("b")].iter().filter(|b| **b).count(), 1, "{}", e.name);
        c.insert_credential(credential("AK3")).await.expect("insert");
        let locked = c.get_credential("AK3").await.expect("g").expect("c");
        assert_eq!(locked.secret_sealed, vec![1, 2, 3]);
        assert_eq!(locked.role, Role::Operator);
        assert!(c.revoke_credential("AK3", Timestamp::from_ms(T0)).await.expect("r"));
        assert!(!c.revoke_credential("AK3", Timestamp::from_ms(T0)).await.expect("r"), "{}: already revoked", e.name);
        assert_eq!(c.list_credentials().await.expect("l").len(), 2);
    }
}

contract! {
    async fn audit_events_are_kept_in_order_and_filtered(e: Engine) {
        let a = &e.storage.audit;
        for (i, p) in
            ["0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210", "0123456789abcdef0123456789abcdef"]
                .iter()
                .enumerate()
        {
            a.append_audit(AuditEvent {
                at: T0 + i as i64,
                request_id: format!("r{i}"),
                project_id: (*p).into(),
                user_id: "u".into(),
                user_name: "n".into(),
                access_key: Some("AK".into()),
                action: "dms:instance:deleteBackgroundTask".into(),
                target: "t".into(),
                status: 204,
                detail: Some(serde_json::json!({"deleted_task": {"id": i}})),
            })
            .await
            .expect("append");
        }
        let mine = a.list_audit(Some(&project()), None, 10).await.expect("l");
        assert_eq!(mine.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>(), ["r0", "r2"], "{}", e.name);
        assert_eq!(mine[1].detail, Some(serde_json::json!({"deleted_task": {"id": 2}})));
        assert_eq!(a.list_audit(None, Some(T0 + 1), 10).await.expect("l").len(), 2, "{}", e.name);
        assert_eq!(a.list_audit(None, None, 1).await.expect("l").len(), 1);
    }
}

contract! {
    /// Bucket counts and the page planner against a full scan done here: any offset, any bounds,
    /// also after deletes and after scheduled tasks fire.
    async fn pages_match_a_full_scan_for_any_offset_and_bounds(e: Engine) {
        let s = &e.storage;
        let inst = instance(&project());
        let day = 86_400_000;
        let mut records: Vec<TaskRecord> = Vec::new();
        let mut tasks = Vec::new();
        for n in 0..240i64 {
            // Spread over ten days, several tasks in the same millisecond now and then.
            let created = T0 + (n * 7_919 % 10) * day + (n * 104_729 % day) / 3 * 3;
            let mut t = task(&inst, Operation::Restart, created, None);
            match n % 10 {
                0 => {
                    t.record.status = TaskStatus::Cancelled;
                    t.record.schedule_at = Some(created + day);
                }
                1 => {
                    t.record.schedule_at = Some(T0 + 5 * day);
                }
                2 => t.record.status = TaskStatus::Failed,
                _ => t.record.status = TaskStatus::Success,
            }
            records.push(t.record.clone());
            tasks.push(t);
        }
        s.bulk.bulk_load(vec![inst.clone()], tasks).await.expect("bulk");
        let expected = |records: &[TaskRecord], view: View, from: Option<i64>, to: Option<i64>| -> Vec<TaskId> {
            let mut v: Vec<&TaskRecord> = records
                .iter()
                .filter(|r| views_of(r).any(|x| x == view))
                .filter(|r| from.is_none_or(|f| r.created_at >= f) && to.is_none_or(|t| r.created_at <= t))
                .collect();
            v.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
            v.into_iter().map(|r| r.id.clone()).collect()
        };
        let check = |records: Vec<TaskRecord>| {
            let s = s.clone();
            let inst = inst.clone();
            async move {
                let bounds = [
                    (None, None),
                    (Some(T0 + 2 * day), None),
                    (None, Some(T0 + 6 * day + 12_345)),
                    (Some(T0 + 3 * day + 5), Some(T0 + 3 * day + day / 2)),
                    (Some(T0 + day / 3), Some(T0 + 8 * day)),
                    (Some(T0 + 20 * day), None),
                ];
                for view in [View::Background, View::Scheduled] {
                    for (from, to) in bounds {
                        let all = expected(&records, view, from, to);
                        for offset in [0u64, 1, 9, 10, 37, 100, 150, 199, 239, 500] {
                            let q = TaskQuery {
                                project_id: inst.project_id.clone(),
                                instance_id: inst.id.clone(),
                                view,
                                created_from: from,
                                created_to: to,
                                offset,
                                limit: 10,
                            };
                            let (total, page) = s.tasks.list_tasks(&q).await.expect("list").expect("instance");
                            let want: Vec<TaskId> = all.iter().skip(offset as usize).take(10).cloned().collect();
                            let got: Vec<TaskId> = page.into_iter().map(|t| t.id).collect();
                            assert_eq!(total as usize, all.len(), "{}: total {view:?} {from:?} {to:?}", e.name);
                            assert_eq!(got, want, "{}: page {view:?} {from:?} {to:?} offset {offset}", e.name);
                        }
                    }
                }
            }
        };
        check(records.clone()).await;

        // Delete some, let the waiting scheduled tasks fire, and check again.
        for r in records.iter().filter(|r| r.status != TaskStatus::Created).take(30) {
            let view = if placement(r).0 { View::Background } else { View::Scheduled };
            let out = s.tasks.delete_task(&r.project_id, &r.instance_id, &r.id, view, None).await.expect("delete");
            assert!(matches!(out, DeleteOutcome::Deleted(_)), "{}: {out:?}", e.name);
        }
        let deleted: HashSet<TaskId> =
            records.iter().filter(|r| r.status != TaskStatus::Created).take(30).map(|r| r.id.clone()).collect();
        records.retain(|r| !deleted.contains(&r.id));
        let claimed = s.engine.claim("w", at(T0 + 6 * day), Duration::from_millis(60_000), 1, CTX).await.expect("claim");
        assert_eq!(claimed.len(), 1, "{}", e.name);
        for r in records.iter_mut() {
            if r.id == claimed[0].task.id {
                r.status = TaskStatus::Executing;
            }
        }
        check(records).await;
    }
}

contract! {
    async fn audit_events_keep_any_byte_a_client_can_send(e: Engine) {
        let a = &e.storage.audit;
        a.append_audit(AuditEvent {
            at: T0,
            request_id: "r\0".into(),
            project_id: project().as_str().into(),
            user_id: "u".into(),
            user_name: "n\0n".into(),
            access_key: Some("AK\0".into()),
            action: "dms:instance:deleteBackgroundTask".into(),
            target: format!("a\0b{}", "é".repeat(2_000)),
            status: 400,
            detail: Some(serde_json::json!({"path": "a\0b"})),
        })
        .await
        .unwrap_or_else(|err| panic!("{}: {err}", e.name));
        let got = a.list_audit(None, None, 10).await.expect("l");
        assert_eq!(got.len(), 1, "{}", e.name);
        assert!(got[0].target.starts_with("a\u{FFFD}b"), "{}: {:?}", e.name, &got[0].target[..8]);
        assert!(got[0].target.len() <= AUDIT_FIELD_MAX);
        assert_eq!(got[0].detail, Some(serde_json::json!({"path": "a\0b"})), "{}", e.name);
    }
}

contract! {
    async fn the_master_key_check_is_recorded_once(e: Engine) {
        let c = &e.storage.credentials;
        assert_eq!(c.master_key_check().await.expect("r"), None, "{}", e.name);
        assert!(!c.has_credentials().await.expect("r"));
        assert_eq!(c.record_master_key_check("one", Timestamp::from_ms(T0)).await.expect("w"), "one", "{}", e.name);
        assert_eq!(c.record_master_key_check("two", Timestamp::from_ms(T0)).await.expect("w"), "one", "{}", e.name);
        assert_eq!(c.master_key_check().await.expect("r").as_deref(), Some("one"));
    }
}

contract! {
    async fn a_scheduled_operation_that_no_longer_applies_fails_and_leaves_the_instance_alone(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let up = operation::upgrade(&inst, NEWER).expect("upgradable");
        let sched = submit(s, &inst, up.clone(), T0 + 1, Some(T0 + 10)).await.expect("scheduled");
        submit(s, &inst, up, T0 + 2, None).await.expect("immediate");
        assert_eq!(run_all(s, "w", T0 + 5).await, [TaskStatus::Success], "{}", e.name);
        let before = s.instances.get_instance(&inst.project_id, &inst.id).await.expect("g").expect("i");
        assert_eq!(before.kernel_version(), NEWER);
        let claimed = s.engine.claim("w", at(T0 + 20), Duration::from_millis(60_000), 10, CTX).await.expect("claim");
        assert_eq!(claimed.len(), 1, "{}", e.name);
        assert_eq!(claimed[0].task.id, sched.record.id);
        assert_eq!(claimed[0].ended, Some(TaskStatus::Failed), "{}", e.name);
        assert!(claimed[0].reason.as_deref().is_some_and(|r| r.contains(NEWER)), "{:?}", claimed[0].reason);
        let after = s.instances.get_instance(&inst.project_id, &inst.id).await.expect("g").expect("i");
        assert_eq!(after, before, "{}", e.name);
        let t = s.tasks.get_task(&inst.project_id, &inst.id, &sched.record.id, View::Background).await.expect("t");
        assert!(matches!(t, Found::Yes(ref t) if t.status == TaskStatus::Failed), "{}: {t:?}", e.name);
    }
}

contract! {
    /// Many deletes of one instance at once, from as many pooled connections: the counts stay exact
    /// (on PostgreSQL they are spread over the connections' counter shards, which the list sums).
    async fn concurrent_deletes_of_one_instance_keep_its_counts_exact(e: Engine) {
        let s = &e.storage;
        let inst = instance(&project());
        let day = 86_400_000;
        let tasks: Vec<NewTask> = (0..400i64)
            .map(|n| {
                let mut t = task(&inst, Operation::Restart, T0 + (n % 4) * day + n, None);
                t.record.status = TaskStatus::Success;
                t
            })
            .collect();
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.record.id.clone()).collect();
        s.bulk.bulk_load(vec![inst.clone()], tasks).await.expect("bulk");
        let mut handles = Vec::new();
        for chunk in ids.chunks(10).take(30) {
            let (s, inst, chunk) = (s.clone(), inst.clone(), chunk.to_vec());
            handles.push(tokio::spawn(async move {
                for t in chunk {
                    let out = s.tasks.delete_task(&inst.project_id, &inst.id, &t, View::Background, Some(event("d")));
                    assert!(matches!(out.await.expect("delete"), DeleteOutcome::Deleted(_)));
                }
            }));
        }
        for h in handles {
            h.await.expect("join");
        }
        for (from, to) in
            [(None, None), (Some(T0 + day), Some(T0 + 3 * day - 1)), (Some(T0 + 5), Some(T0 + 2 * day + 7))]
        {
            let q = TaskQuery {
                project_id: inst.project_id.clone(),
                instance_id: inst.id.clone(),
                view: View::Background,
                created_from: from,
                created_to: to,
                offset: 0,
                limit: 1000,
            };
            let (total, page) = s.tasks.list_tasks(&q).await.expect("list").expect("instance");
            assert_eq!(total as usize, page.len(), "{}: total {from:?} {to:?}", e.name);
            if from.is_none() {
                assert_eq!(total, 100, "{}: 400 tasks, 300 deleted", e.name);
            }
        }
    }
}
// --- the task event log ---

use kafka_tasks::storage::events::{EventCursor, EventRetention, EventScope, EventStart, LoggedEvent};

/// Every event of `scope` after `from`, as the streams read them (pages of 100), waiting up to
/// 10 s for events that are committed but not yet readable (PostgreSQL's horizon is held back
/// by transactions running anywhere on the server).
async fn read_all(s: &Storage, scope: &EventScope, from: EventCursor) -> (Vec<LoggedEvent>, EventCursor) {
    let mut out = vec![];
    let mut at = from;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = s.events.read_events(scope, at, 100).await.expect("read");
        at = page.next;
        let empty = page.events.is_empty();
        out.extend(page.events);
        if empty && !page.pending && !page.more {
            return (out, at);
        }
        if page.pending {
            assert!(std::time::Instant::now() < deadline, "events stayed pending");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

contract! {
    async fn the_event_log_records_a_tasks_life_with_its_change(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let scope = EventScope::Project(inst.project_id.clone());
        let (events, end) = read_all(s, &scope, EventCursor::default()).await;
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds.first(), Some(&"task.created"), "{}: {kinds:?}", e.name);
        assert_eq!(kinds.last(), Some(&"task.finished"), "{}: {kinds:?}", e.name);
        assert!(kinds.contains(&"step.started") && kinds.contains(&"step.finished"), "{}: {kinds:?}", e.name);

        // A refused change writes no event; an accepted delete writes one.
        let t = submit(s, &inst, Operation::Restart, T0 + 10, None).await.expect("admitted");
        let running = s.tasks.delete_task(&inst.project_id, &inst.id, &t.record.id, View::Background, None).await;
        assert_eq!(running.expect("delete"), DeleteOutcome::Running);
        run_all(s, "w", T0 + 20).await;
        s.tasks.delete_task(&inst.project_id, &inst.id, &t.record.id, View::Background, None).await.expect("delete");
        let (more, _) = read_all(s, &scope, end).await;
        let kinds: Vec<&str> = more.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds.first(), Some(&"task.created"), "{}: {kinds:?}", e.name);
        assert_eq!(kinds.iter().filter(|k| **k == "task.deleted").count(), 1, "{}: {kinds:?}", e.name);
        assert_eq!(kinds.last(), Some(&"task.deleted"), "{}: {kinds:?}", e.name);
        // Another project's scope sees none of it; an instance scope sees its own.
        let other: ProjectId = "fedcba9876543210fedcba9876543210".parse().expect("project");
        let (none, _) = read_all(s, &EventScope::Project(other), EventCursor::default()).await;
        assert!(none.is_empty(), "{}", e.name);
        let (mine, _) = read_all(s, &EventScope::Instance(inst.project_id.clone(), inst.id.clone()), end).await;
        assert_eq!(mine.len(), more.len(), "{}", e.name);
    }
}

contract! {
    async fn pruning_keeps_a_tail_and_a_resume_point_before_it_is_told_it_missed_events(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let scope = EventScope::Project(inst.project_id.clone());
        let (all, _) = read_all(s, &scope, EventCursor::default()).await;
        assert!(all.len() >= 4, "{}", e.name);
        let (first, last) = (all[0].id, all[all.len() - 1].id);
        assert!(matches!(s.events.event_start(Some(first)).await, Ok(EventStart::From(_))), "{}", e.name);
        // Keep the newest two by count (age allows everything).
        let policy = EventRetention { max_age_ms: i64::MAX / 2, max_events: 2 };
        let pruned = s.events.prune_events(T0, policy, 1_000).await.expect("prune");
        assert_eq!(s.events.prune_events(T0, policy, 1_000).await.expect("prune again"), 0, "{}", e.name);
        let Ok(EventStart::Missed(at)) = s.events.event_start(Some(first)).await else {
            panic!("{}: a pruned resume point is not reported", e.name)
        };
        let (kept, _) = read_all(s, &scope, at).await;
        assert_eq!(pruned as usize + kept.len(), all.len(), "{}: pruned {pruned}, kept {kept:?}", e.name);
        assert_eq!(kept, all[all.len() - kept.len()..].to_vec(), "{}: the newest are kept", e.name);
        assert_eq!(kept.last().map(|k| k.id), Some(last), "{}", e.name);
        // The newest two, and at most the rest of the write they begin in (the events one write
        // makes about one task are kept or pruned together): same task, same instant.
        assert!(kept.len() >= 2, "{}: {kept:?}", e.name);
        let made = |e: &LoggedEvent| {
            let v: serde_json::Value = serde_json::from_str(&e.data).expect("json");
            (v["task_id"].to_string(), v["at"].to_string())
        };
        let (older, newest) = kept.split_at(kept.len() - 2);
        assert!(older.iter().all(|e| made(e) == made(&newest[0])), "{}: {kept:?}", e.name);
        // The last event itself still resumes normally; an id never written is unknown.
        assert!(matches!(s.events.event_start(Some(last)).await, Ok(EventStart::From(_))), "{}", e.name);
        assert_eq!(s.events.event_start(Some(last + 1_000)).await.expect("start"), EventStart::Unknown, "{}", e.name);
        // Age: everything older than the cutoff goes.
        let by_age = EventRetention { max_age_ms: 0, max_events: i64::MAX / 2 };
        s.events.prune_events(i64::MAX / 4, by_age, 1_000).await.expect("prune by age");
        let (left, _) = read_all(s, &scope, EventCursor::default()).await;
        assert!(left.is_empty(), "{}: {left:?}", e.name);
    }
}

/// A SQLite database whose events were logged before a row could hold several (migration
/// 0016): they stream as they did, under the same ids, a resume from any of them goes on just
/// after it, and the events written since (rows of several) follow them in order.
#[tokio::test]
async fn events_logged_before_rows_held_several_still_stream_and_resume() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("old.db");
    let url = format!("sqlite:{}", path.display());
    drop(Storage::open(&url).await.expect("sqlite"));
    // Back to the schema before 0016 (undoing 0018 and 0017 too; a newer migration must move
    // this downgrade), with events as the code before it wrote them.
    let old: Vec<(String, String)> = ["task.created", "step.started", "step.finished", "task.finished"]
        .iter()
        .enumerate()
        .map(|(i, k)| (k.to_string(), format!("{{\"task_id\":\"old\",\"n\":{i}}}")))
        .collect();
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        conn.execute_batch(SQLITE_BEFORE_FINISHED_COUNT).expect("0018 undone");
        conn.execute_batch("CREATE INDEX task_events_by_instance ON task_events (instance_id, id)").expect("0017");
        conn.execute_batch("ALTER TABLE task_events DROP COLUMN n").expect("0016's column");
        conn.pragma_update(None, "user_version", version - 3).expect("version");
        for (kind, data) in &old {
            conn.execute(
                "INSERT INTO task_events (at, project_id, instance_id, task_id, kind, data) \
                 VALUES (?1, ?2, 'i', 'old', ?3, ?4)",
                rusqlite::params![T0, project().as_str(), kind, data],
            )
            .expect("an old event");
        }
    }
    let s = Storage::open(&url).await.expect("migrated");
    let scope = EventScope::Project(project());
    let (before, end) = read_all(&s, &scope, EventCursor::default()).await;
    let shown: Vec<(i64, String, String)> = before.iter().map(|e| (e.id, e.kind.clone(), e.data.clone())).collect();
    let expected: Vec<(i64, String, String)> =
        old.iter().enumerate().map(|(i, (k, d))| (i as i64 + 1, k.clone(), d.clone())).collect();
    assert_eq!(shown, expected, "the old events, under the ids they had");
    // New events: an instance created and run, and a task of steps that take no time, which a
    // claim runs to its end in one write (one row of several events).
    let (_, new) = an_instant_task_run(&s, &scope, end).await;
    let all: Vec<LoggedEvent> = before.into_iter().chain(new).collect();
    let ids: Vec<i64> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=all.len() as i64).collect::<Vec<_>>(), "positions dense and in order");
    // A resume from any event, old or new (inside a row or at its end), goes on just after it.
    for (k, e) in all.iter().enumerate() {
        let Ok(EventStart::From(from)) = s.events.event_start(Some(e.id)).await else {
            panic!("event {} does not resume", e.id)
        };
        let (rest, _) = read_all(&s, &scope, from).await;
        assert_eq!(rest, all[k + 1..].to_vec(), "resumed after {}", e.id);
    }
    assert_eq!(s.events.event_start(Some(all.len() as i64 + 1)).await.expect("start"), EventStart::Unknown);
}

/// A new running instance and a task of steps that take no time, which a claim runs to its end
/// in one write (one row of several events): the task's id, and the events of `scope` after
/// `end`, checked to end with that task's life.
async fn an_instant_task_run(s: &Storage, scope: &EventScope, end: EventCursor) -> (TaskId, Vec<LoggedEvent>) {
    let inst = running_instance(s).await;
    let instant = NewTask::new(&inst, Operation::Restart, ("u", "n"), T0 + 10, None, 0.0);
    let t = s.instances.submit(&inst.project_id, &inst.id, TaskBuilder::ready(instant), None).await.expect("s");
    let t = t.expect("admitted");
    let claimed = s.engine.claim("w", at(T0 + 20), Duration::from_millis(60_000), 10, CTX).await.expect("claim");
    assert_eq!(claimed.iter().map(|c| c.ended).collect::<Vec<_>>(), vec![Some(TaskStatus::Success)]);
    let (new, _) = read_all(s, scope, end).await;
    let kinds: Vec<&str> = new.iter().map(|e| e.kind.as_str()).collect();
    let (started, finished) = ("step.started", "step.finished");
    let instant_run = ["task.created", started, finished, started, finished, started, finished, "task.finished"];
    assert!(kinds.ends_with(&instant_run), "{kinds:?}");
    (t.record.id, new)
}

/// A PostgreSQL database whose events were logged one a row under an identity (before
/// migration 0019): they stream as they did, under the same ids; the rows written since take a
/// block each, above every old id, a claim's events in one row; a resume from any event, old or
/// new, inside a row or at its end, goes on just after it; a position in a block's gap is
/// unknown.
#[tokio::test]
async fn events_logged_one_a_row_on_postgres_still_stream_and_resume() {
    let Some(db) = pg::FreshDatabase::create_or_skip("kt_events").await else { return };
    drop(Storage::open(&db.url).await.expect("postgres"));
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    client.batch_execute(PG_BEFORE_EVENT_ROWS).await.expect("0019 undone");
    let old: Vec<(String, String)> = ["task.created", "step.started", "step.finished", "task.finished"]
        .iter()
        .enumerate()
        .map(|(i, k)| (k.to_string(), format!("{{\"task_id\":\"old\",\"n\":{i}}}")))
        .collect();
    for (kind, data) in &old {
        client
            .execute(
                "INSERT INTO task_events (at, project_id, instance_id, task_id, kind, data) \
                 VALUES ($1, $2, 'i', 'old', $3, $4)",
                &[&T0, &project().as_str(), kind, data],
            )
            .await
            .expect("an old event");
    }
    let s = Storage::open(&db.url).await.expect("migrated");
    let scope = EventScope::Project(project());
    let (before, end) = read_all(&s, &scope, EventCursor::default()).await;
    let shown: Vec<(String, String)> = before.iter().map(|e| (e.kind.clone(), e.data.clone())).collect();
    assert_eq!(shown, old, "the old events");
    let old_ids: Vec<i64> = before.iter().map(|e| e.id).collect();
    let first = old_ids[0];
    assert_eq!(old_ids, (first..first + 4).collect::<Vec<_>>(), "under the ids the identity gave them");

    let (t, new) = an_instant_task_run(&s, &scope, end).await;
    let all: Vec<LoggedEvent> = before.into_iter().chain(new).collect();
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "positions in order");
    // Seen from the table itself: the claim wrote one row of seven events, the submission one of
    // one, and both sit past the old ids.
    let rows: Vec<(i64, i32)> = client
        .query("SELECT id, n FROM task_events WHERE task_id = $1 ORDER BY xid, id", &[&t.as_str()])
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.iter().map(|r| r.1).collect::<Vec<_>>(), vec![1, 7], "{rows:?}");
    assert!(rows.iter().all(|r| r.0 > first + 3), "{rows:?}");
    for (k, e) in all.iter().enumerate() {
        let Ok(EventStart::From(from)) = s.events.event_start(Some(e.id)).await else {
            panic!("event {} does not resume", e.id)
        };
        let (rest, _) = read_all(&s, &scope, from).await;
        assert_eq!(rest, all[k + 1..].to_vec(), "resumed after {}", e.id);
    }
    // The positions of the claim's block after its seven events, and between the blocks, were
    // never an event.
    let last = all.last().map_or(0, |e| e.id);
    for gap in [last + 1, rows[0].0 + 1] {
        assert_eq!(s.events.event_start(Some(gap)).await.expect("start"), EventStart::Unknown, "{gap}");
    }
}

contract! {
    /// The count cap keeps that many events, counted, whatever the positions (PostgreSQL's have
    /// gaps: a row takes a block): pruned twice with events appended between, the log keeps the
    /// newest `max_events` of them each time, and says how many it pruned.
    async fn the_count_cap_keeps_that_many_events_whatever_their_positions(e: Engine) {
        let s = &e.storage;
        let p = project();
        let scope = EventScope::Project(p.clone());
        let policy = EventRetention { max_age_ms: i64::MAX / 2, max_events: 10 };
        let mut total = 0;
        for append in [40, 25] {
            neighbour_events(&e, &p, append).await;
            total += append;
            let (all, _) = read_all(s, &scope, EventCursor::default()).await;
            let mut pruned = 0;
            loop {
                let n = s.events.prune_events(T0, policy, 7).await.expect("prune");
                if n == 0 {
                    break;
                }
                pruned += n;
            }
            let (kept, _) = read_all(s, &scope, EventCursor::default()).await;
            assert_eq!(kept.len(), 10, "{}: after {total} appended", e.name);
            assert_eq!(kept, all[all.len() - 10..].to_vec(), "{}: the newest are kept", e.name);
            assert_eq!(pruned as usize, all.len() - 10, "{}", e.name);
        }
    }
}

/// Appends `n` events of another instance of `p` behind the store's back, through the engine's
/// own driver: one row each, as a busy neighbour's log would have them.
async fn neighbour_events(e: &Engine, p: &ProjectId, n: i64) {
    const DATA: &str = r#"{"task_id":"neighbour"}"#;
    match (&e._dir, &e._pg) {
        (Some(dir), _) => {
            let conn = rusqlite::Connection::open(dir.path().join("c.db")).expect("open");
            conn.execute(
                "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?1) \
                 INSERT INTO task_events (at, project_id, instance_id, task_id, kind, data) \
                 SELECT ?2, ?3, 'neighbour', 'neighbour', 'task.created', ?4 FROM k",
                rusqlite::params![n, T0, p.as_str(), DATA],
            )
            .expect("insert");
        }
        (_, Some(db)) => {
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            client
                .execute(
                    "INSERT INTO task_events (at, project_id, instance_id, task_id, kind, data) \
                     SELECT $2, $3, 'neighbour', 'neighbour', 'task.created', $4 FROM generate_series(1, $1::BIGINT)",
                    &[&n, &T0, &p.as_str(), &DATA],
                )
                .await
                .expect("insert");
        }
        _ => unreachable!("an engine has a directory or a database"),
    }
}

contract! {
    /// An instance's events are read from its project's log (there is no index by instance):
    /// each read walks at most `INSTANCE_SCAN_ROWS` rows, says there is more, and moves the
    /// position past what it walked, so a quiet instance in a busy project gets its events after
    /// a few short reads, never one long one, and every one of them.
    async fn an_instance_read_walks_a_bounded_part_of_its_projects_log(e: Engine) {
        use kafka_tasks::storage::events::INSTANCE_SCAN_ROWS;
        let s = &e.storage;
        let inst = running_instance(s).await;
        let mine = EventScope::Instance(inst.project_id.clone(), inst.id.clone());
        let (before, end) = read_all(s, &mine, EventCursor::default()).await;
        assert!(!before.is_empty(), "{}", e.name);
        let busy = 2 * INSTANCE_SCAN_ROWS as i64 + 500;
        neighbour_events(&e, &inst.project_id, busy).await;
        let t = submit(s, &inst, Operation::Restart, T0 + 10, None).await.expect("admitted");
        // PostgreSQL reads only below the snapshot horizon, which any transaction running on the
        // server (other tests') holds back: wait until all of this is readable, so that the reads
        // below see the whole log and their bounds are the scan's, not the horizon's.
        let project = EventScope::Project(inst.project_id.clone());
        let (settled, _) = read_all(s, &project, end).await;
        assert_eq!(settled.len() as i64, busy + 1, "{}", e.name);

        let mut at = end;
        for walked in 1..=2 {
            let page = s.events.read_events(&mine, at, 100).await.expect("read");
            assert!(page.events.is_empty(), "{}: read {walked} found {:?}", e.name, page.events);
            assert!(page.more && !page.pending, "{}: read {walked}: {page:?}", e.name);
            // (Positions are dense on SQLite, a block a row apart on PostgreSQL: count the rows.)
            let walked_rows = settled.iter().filter(|e| e.id > at.id && e.id <= page.next.id).count();
            assert_eq!(walked_rows, INSTANCE_SCAN_ROWS, "{}: read {walked} walked one bound", e.name);
            at = page.next;
        }
        let page = s.events.read_events(&mine, at, 100).await.expect("read");
        let kinds: Vec<&str> = page.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["task.created"], "{}", e.name);
        assert!(page.events[0].data.contains(t.record.id.as_str()), "{}: {:?}", e.name, page.events);
        assert!(!page.more, "{}", e.name);

        // From the beginning, page by page: exactly the instance's events, in log order, the
        // same as the project's log without the neighbour's.
        let (all, _) = read_all(s, &mine, EventCursor::default()).await;
        let (project, _) = read_all(s, &EventScope::Project(inst.project_id.clone()), EventCursor::default()).await;
        assert_eq!(project.len() as i64, all.len() as i64 + busy, "{}", e.name);
        let theirs: Vec<LoggedEvent> = project.into_iter().filter(|e| !e.data.contains("neighbour")).collect();
        assert_eq!(all, theirs, "{}", e.name);
        // A page is never longer than asked, even from a row of several events.
        let page = s.events.read_events(&mine, EventCursor::default(), 1).await.expect("read");
        assert_eq!(page.events.len(), 1, "{}", e.name);
        assert_eq!(page.next.id, page.events[0].id, "{}", e.name);
    }
}

/// A fresh PostgreSQL store with a running instance, its project's log read to its end, and a
/// connection of its own that writes events behind the store's back (as another process would).
struct RawWriter {
    _db: pg::FreshDatabase,
    s: Storage,
    inst: Instance,
    scope: EventScope,
    end: EventCursor,
    client: tokio_postgres::Client,
}

impl RawWriter {
    async fn open() -> Option<Self> {
        let db = pg::FreshDatabase::create_or_skip("kt_events").await?;
        let s = Storage::open(&db.url).await.expect("postgres");
        let inst = running_instance(&s).await;
        let scope = EventScope::Project(inst.project_id.clone());
        let (_, end) = read_all(&s, &scope, EventCursor::default()).await;
        let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(conn);
        Some(RawWriter { _db: db, s, inst, scope, end, client })
    }

    /// Appends a `task.created` event of task `task` of `inst` through `client`, in whatever
    /// transaction it is in; its position.
    async fn event(client: &tokio_postgres::Client, inst: &Instance, task: &str) -> i64 {
        client
            .query_one(
                "INSERT INTO task_events (at, project_id, instance_id, task_id, kind, data) \
                 VALUES (1, $1, $2, $3, 'task.created', '{}') RETURNING id",
                &[&inst.project_id.as_str(), &inst.id.as_str(), &task],
            )
            .await
            .expect("insert")
            .get(0)
    }
}

/// PostgreSQL hands out ids in one order and commits them in another. A reader that has read
/// past a later id must still get the earlier one once its transaction commits.
#[tokio::test]
async fn an_event_id_that_commits_late_is_not_skipped_on_postgres() {
    let Some(RawWriter { _db, s, inst, scope, end, client }) = RawWriter::open().await else { return };
    client.batch_execute("BEGIN").await.expect("begin");
    let early = RawWriter::event(&client, &inst, "late").await;
    // A later id commits first.
    submit(&s, &inst, Operation::Restart, T0 + 10, None).await.expect("admitted");
    let page = s.events.read_events(&scope, end, 100).await.expect("read");
    assert!(page.events.iter().all(|e| e.id < early), "read past an id still in flight: {:?}", page.events);
    assert!(page.pending, "the committed later event is reported pending");
    client.batch_execute("COMMIT").await.expect("commit");
    let (after, _) = read_all(&s, &scope, page.next).await;
    let ids: Vec<i64> = after.iter().map(|e| e.id).collect();
    assert!(ids.contains(&early), "the early id was skipped: {ids:?}");
    assert!(ids.iter().any(|i| *i > early), "{ids:?}");
}

/// PostgreSQL's log is read in (transaction, position) order, and a row's block is taken when
/// its events are inserted: a transaction that began first (the smaller xid) may take its block
/// after a newer one took its own. A stream resumed from the older transaction's event must
/// still get the newer transaction's events, though their positions are smaller.
#[tokio::test]
async fn a_resume_gets_a_newer_transactions_events_with_smaller_positions_on_postgres() {
    let Some(RawWriter { _db, s, inst, scope, end, client }) = RawWriter::open().await else { return };
    client.batch_execute("BEGIN").await.expect("begin");
    // The older transaction: its xid now, its event (and so its block) after the newer one's.
    client.query_one("SELECT pg_current_xact_id()", &[]).await.expect("xid");
    let newer = submit(&s, &inst, Operation::Restart, T0 + 10, None).await.expect("admitted");
    let older = RawWriter::event(&client, &inst, "older").await;
    client.batch_execute("COMMIT").await.expect("commit");
    let (after, _) = read_all(&s, &scope, end).await;
    let order: Vec<(i64, bool)> = after.iter().map(|e| (e.id, e.data.contains(newer.record.id.as_str()))).collect();
    assert_eq!(order.len(), 2, "{order:?}");
    assert!(
        order[0] == (older, false) && order[1].1 && order[1].0 < older,
        "log order is the transactions': {order:?}"
    );
    let Ok(EventStart::From(from)) = s.events.event_start(Some(older)).await else { panic!("no resume") };
    let (rest, _) = read_all(&s, &scope, from).await;
    assert_eq!(rest.iter().map(|e| e.id).collect::<Vec<_>>(), vec![order[1].0], "resumed after the older one");
}

/// Two stores on one database, as two processes: a commit through one wakes the other's
/// streams through LISTEN/NOTIFY.
#[tokio::test]
async fn a_commit_in_one_process_wakes_the_streams_of_another_on_postgres() {
    let Some(db) = pg::FreshDatabase::create_or_skip("kt_events").await else { return };
    let writer = Storage::open(&db.url).await.expect("postgres");
    let reader = Storage::open(&db.url).await.expect("postgres");
    let mut signal = reader.events.event_signal();
    // (The reader's listener connected while the instance was set up: many round trips.)
    let inst = running_instance(&writer).await;
    signal.borrow_and_update();
    let scope = EventScope::Project(inst.project_id.clone());
    let (_, end) = read_all(&reader, &scope, EventCursor::default()).await;
    submit(&writer, &inst, Operation::Restart, T0 + 10, None).await.expect("admitted");
    tokio::time::timeout(std::time::Duration::from_secs(5), signal.changed())
        .await
        .expect("woken by the other store's commit")
        .expect("open");
    let (new, _) = read_all(&reader, &scope, end).await;
    assert_eq!(new.first().map(|e| e.kind.as_str()), Some("task.created"));
}

/// An executor's audit event for the failure of `task`.
fn failure_event(task: &TaskId) -> AuditEvent {
    AuditEvent {
        at: T0,
        request_id: String::new(),
        project_id: project().as_str().to_owned(),
        user_id: String::new(),
        user_name: "kafka-tasks-engine".into(),
        access_key: None,
        action: "kafka-tasks:executor:failStep".into(),
        target: task.as_str().to_owned(),
        status: 0,
        detail: None,
    }
}

contract! {
    async fn executor_attempts_count_per_step_and_a_takeover_adds_one(e: Engine) {
        let mut executed = operation::OpSet::EMPTY;
        assert!(executed.insert("restartInstance"));
        let ctx = StepContext { executed, ..CTX };
        let s = &e.storage;
        let inst = running_instance(s).await;
        let t = submit(s, &inst, Operation::Restart, T0 + 1, None).await.expect("admitted").record.id;
        assert_eq!(s.engine.claim("a", at(T0 + 2), Duration::from_millis(100), 10, ctx).await.expect("c")[0].step, 0);
        let runs = &s.runs;
        assert_eq!(runs.begin_attempt("a", &t, 0, None, Timestamp::from_ms(T0 + 3)).await.expect("b"), Some(1), "{}", e.name);
        assert_eq!(
            runs.begin_attempt("nobody", &t, 0, None, Timestamp::from_ms(T0 + 3)).await.expect("b"),
            None,
            "{}: not its lease",
            e.name
        );
        let report = Report { progress: Some(40), message: Some("m".into()), output_tail: None };
        runs.report("a", &t, 0, report.clone(), Timestamp::from_ms(T0 + 4)).await.expect("r");
        runs.report("nobody", &t, 0, Report { progress: Some(90), ..report }, Timestamp::from_ms(T0 + 4)).await.expect("r");
        let run = runs.task_run(&t).await.expect("run").expect("a run");
        assert_eq!((run.step, run.attempt, run.progress, run.message.as_str()), (0, 1, Some(40), "m"), "{}", e.name);
        // The lease runs out; another worker takes the task over at the same step: attempt 2.
        let taken = s.engine.claim("b", at(T0 + 200), Duration::from_millis(100), 10, ctx).await.expect("c");
        assert_eq!(taken[0].step, 0, "{}: an executed step is never finished by a claim", e.name);
        assert_eq!(runs.begin_attempt("b", &t, 0, None, Timestamp::from_ms(T0 + 201)).await.expect("b"), Some(2), "{}", e.name);
        assert_eq!(
            runs.task_run(&t).await.expect("r").expect("run").progress,
            None,
            "{}: a new attempt starts empty",
            e.name
        );
        assert_eq!(s.engine.finish_step("b", &t, 0, at(T0 + 202), Duration::from_millis(100), ctx).await.expect("f"), StepOutcome::Next(1));
        assert_eq!(
            runs.begin_attempt("b", &t, 1, Some("hash".into()), Timestamp::from_ms(T0 + 203)).await.expect("b"),
            Some(1),
            "{}",
            e.name
        );
        // A webhook answer: only with the attempt's token, and only once.
        let success = Callback { progress: Some(100), message: None, end: Some(StepAnswer::Success) };
        assert!(!runs.answer_step(&t, "other", success.clone(), Timestamp::from_ms(T0 + 204), None).await.expect("a"), "{}", e.name);
        assert!(runs.answer_step(&t, "hash", success.clone(), Timestamp::from_ms(T0 + 204), None).await.expect("a"), "{}", e.name);
        assert!(!runs.answer_step(&t, "hash", success, Timestamp::from_ms(T0 + 205), None).await.expect("a"), "{}: spent", e.name);
        assert_eq!(runs.task_run(&t).await.expect("r").expect("run").answer, Some(StepAnswer::Success));
        // A failure ends the task, keeps its reason and output, and is audited with it.
        let failed = runs
            .fail_step("b", &t, 1, Timestamp::from_ms(T0 + 206), "exit code 3: no".into(), "tail".into(), failure_event(&t))
            .await
            .expect("f");
        assert_eq!(failed, StepOutcome::Ended(TaskStatus::Failed), "{}", e.name);
        let run = runs.task_run(&t).await.expect("r").expect("run");
        assert_eq!((run.reason.as_deref(), run.output_tail.as_str()), (Some("exit code 3: no"), "tail"), "{}", e.name);
        let after = s.instances.get_instance(&inst.project_id, &inst.id).await.expect("g").expect("i");
        assert_eq!((after.status, after.busy_task), (InstanceStatus::Running, None), "{}", e.name);
        let audit = s.audit.list_audit(None, None, 100).await.expect("audit");
        assert_eq!(audit.iter().filter(|a| a.action == "kafka-tasks:executor:failStep").count(), 1, "{}", e.name);
        assert_eq!(
            runs.fail_step("b", &t, 1, Timestamp::from_ms(T0 + 207), "again".into(), String::new(), failure_event(&t)).await.expect("f"),
            StepOutcome::Lost,
            "{}: an ended task fails once",
            e.name
        );
        // The run goes with its task.
        let outcome = s.tasks.delete_task(&inst.project_id, &inst.id, &t, View::Background, None).await.expect("d");
        assert!(matches!(outcome, DeleteOutcome::Deleted(_)), "{}", e.name);
        assert_eq!(runs.task_run(&t).await.expect("r"), None, "{}", e.name);
    }
}

contract! {
    async fn executor_state_is_kept_across_attempts_and_steps_and_written_only_under_the_lease(e: Engine) {
        let mut executed = operation::OpSet::EMPTY;
        assert!(executed.insert("restartInstance"));
        let ctx = StepContext { executed, ..CTX };
        let s = &e.storage;
        let runs = &s.runs;
        let inst = running_instance(s).await;
        let t = submit(s, &inst, Operation::Restart, T0 + 1, None).await.expect("admitted").record.id;
        assert_eq!(runs.load_state(&t).await.expect("l"), None, "{}", e.name);
        s.engine.claim("a", at(T0 + 2), Duration::from_millis(100), 10, ctx).await.expect("c");
        assert_eq!(runs.begin_attempt("a", &t, 0, None, Timestamp::from_ms(T0 + 3)).await.expect("b"), Some(1), "{}", e.name);
        let issued = r#"{"rolling":{"rolling_restart":{"issued":{"broker":2}}}}"#;
        assert!(runs.save_state("a", &t, issued.into(), Timestamp::from_ms(T0 + 4)).await.expect("s"), "{}", e.name);
        assert!(!runs.save_state("nobody", &t, "{}".into(), Timestamp::from_ms(T0 + 4)).await.expect("s"), "{}: not its lease", e.name);
        assert!(!runs.save_state("a", &t, "{}".into(), Timestamp::from_ms(T0 + 500)).await.expect("s"), "{}: lease expired", e.name);
        // Another worker takes the task over: the new attempt reads what the old one kept.
        s.engine.claim("b", at(T0 + 200), Duration::from_millis(100), 10, ctx).await.expect("c");
        assert_eq!(runs.begin_attempt("b", &t, 0, None, Timestamp::from_ms(T0 + 201)).await.expect("b"), Some(2), "{}", e.name);
        assert_eq!(runs.load_state(&t).await.expect("l").as_deref(), Some(issued), "{}", e.name);
        assert!(!runs.save_state("a", &t, "{}".into(), Timestamp::from_ms(T0 + 202)).await.expect("s"), "{}: the old owner", e.name);
        assert_eq!(s.engine.finish_step("b", &t, 0, at(T0 + 203), Duration::from_millis(100), ctx).await.expect("f"), StepOutcome::Next(1));
        assert_eq!(runs.begin_attempt("b", &t, 1, None, Timestamp::from_ms(T0 + 204)).await.expect("b"), Some(1), "{}", e.name);
        assert_eq!(runs.load_state(&t).await.expect("l").as_deref(), Some(issued), "{}: kept across steps", e.name);
    }
}

contract! {
    async fn only_the_holder_of_a_live_lease_holds_it(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let t = submit(s, &inst, Operation::Restart, T0 + 1, None).await.expect("admitted").record.id;
        assert!(!s.runs.holds_lease("a", &t, Timestamp::from_ms(T0 + 2)).await.expect("h"), "{}: not claimed yet", e.name);
        s.engine.claim("a", at(T0 + 2), Duration::from_millis(100), 10, CTX).await.expect("c");
        assert!(s.runs.holds_lease("a", &t, Timestamp::from_ms(T0 + 50)).await.expect("h"), "{}", e.name);
        assert!(!s.runs.holds_lease("b", &t, Timestamp::from_ms(T0 + 50)).await.expect("h"), "{}", e.name);
        assert!(!s.runs.holds_lease("a", &t, Timestamp::from_ms(T0 + 500)).await.expect("h"), "{}: expired", e.name);
    }
}

fn prune_event(p: &ProjectId, target: &str) -> AuditEvent {
    AuditEvent {
        at: T0,
        request_id: "r".into(),
        project_id: p.as_str().into(),
        user_id: "retention".into(),
        user_name: "retention".into(),
        access_key: None,
        action: "kafka-tasks:retention:prune".into(),
        target: target.into(),
        status: 200,
        detail: None,
    }
}

/// `n` SUCCESS tasks of `inst`, ended at `T0 + k`.
async fn finished_tasks(s: &Storage, inst: &Instance, n: i64) -> Vec<TaskId> {
    let tasks: Vec<NewTask> = (0..n)
        .map(|k| {
            let mut t = task(inst, Operation::Restart, T0 + k, None);
            t.record.status = TaskStatus::Success;
            t.record.updated_at = T0 + k;
            t
        })
        .collect();
    let ids = tasks.iter().map(|t| t.record.id.clone()).collect();
    s.bulk.bulk_load(vec![], tasks).await.expect("loaded");
    ids
}

contract! {
    async fn concurrent_prunes_of_the_same_records_remove_each_once_and_keep_counts_exact(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let p = inst.project_id.clone();
        let loaded: HashSet<TaskId> = finished_tasks(s, &inst, 60).await.into_iter().collect();
        let read = s.retention.finished_tasks(&inst.id, T0 + 1_000, None, 1_000).await.expect("read");
        assert_eq!(read.len(), 61, "{}: the loaded tasks and the createInstance task", e.name);
        // Oldest creation first, and the cursor moves on from the last one read.
        assert!(read.windows(2).all(|w| (w[0].created_at, &w[0].id) < (w[1].created_at, &w[1].id)), "{}", e.name);
        let last = read.last().map(|c| (c.created_at, c.id.clone()));
        assert!(s.retention.finished_tasks(&inst.id, T0 + 1_000, last, 10).await.expect("read").is_empty());
        let candidates: Vec<Candidate> = read.into_iter().filter(|c| loaded.contains(&c.id)).collect();
        let runs: Vec<_> = (0..4)
            .map(|_| {
                let (r, i, c, ev) =
                    (s.retention.clone(), inst.id.clone(), candidates.clone(), prune_event(&p, inst.id.as_str()));
                tokio::spawn(async move { r.prune_tasks(&i, c, PruneRule::Age, ev).await })
            })
            .collect();
        let mut removed = 0;
        for run in runs {
            removed += run.await.expect("joined").expect("pruned");
        }
        assert_eq!(removed, 60, "{}: each record once", e.name);
        let q = TaskQuery {
            project_id: p.clone(),
            instance_id: inst.id.clone(),
            view: View::Background,
            created_from: None,
            created_to: None,
            offset: 0,
            limit: 100,
        };
        let (total, page) = s.tasks.list_tasks(&q).await.expect("list").expect("instance");
        assert_eq!((total, page.len()), (1, 1), "{}: the createInstance task is left, and counted", e.name);
        let ranged = TaskQuery { created_from: Some(T0 - 1), created_to: Some(T0 + 10_000), ..q };
        let (total, page) = s.tasks.list_tasks(&ranged).await.expect("list").expect("instance");
        assert_eq!(total as usize, page.len(), "{}: day buckets exact", e.name);
        let events = s.audit.list_audit(None, None, 100).await.expect("audit");
        let audited: u64 = events
            .iter()
            .filter(|e| e.action == "kafka-tasks:retention:prune")
            .map(|e| e.detail.as_ref().and_then(|d| d["deleted"].as_u64()).unwrap_or(0))
            .sum();
        assert_eq!(audited, 60, "{}: batches that removed nothing leave no event", e.name);
        assert_eq!(assert_finished_counts_exact(&e, "concurrent prunes").await, 1, "{}", e.name);
    }
}

contract! {
    async fn a_pruned_candidate_that_changed_since_it_was_read_stays(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let p = inst.project_id.clone();
        let a = submit(s, &inst, Operation::Restart, T0 + 1, Some(T0 + 5_000)).await.expect("a").record.id;
        let change = |status| ScheduleChange { execute_at: None, status };
        s.tasks.update_scheduled(&p, &inst.id, &a, change(StatusChange::Cancel), Timestamp::from_ms(T0 + 10), None).await.expect("u");
        let read = s.retention.finished_tasks(&inst.id, T0 + 1_000, None, 10).await.expect("read");
        assert!(read.iter().any(|c| c.id == a && c.status == TaskStatus::Cancelled), "{}", e.name);
        // Resumed between the read and the prune: waiting again, never removed.
        s.tasks.update_scheduled(&p, &inst.id, &a, change(StatusChange::Wait), Timestamp::from_ms(T0 + 20), None).await.expect("u");
        let mine: Vec<Candidate> = read.into_iter().filter(|c| c.id == a).collect();
        let n = s.retention.prune_tasks(&inst.id, mine, PruneRule::Age, prune_event(&p, "x")).await.expect("prune");
        assert_eq!(n, 0, "{}", e.name);
        assert!(matches!(s.tasks.get_task(&p, &inst.id, &a, View::Scheduled).await.expect("get"), Found::Yes(_)));
    }
}

contract! {
    async fn policies_are_stored_per_project_and_the_pruning_lease_has_one_holder(e: Engine) {
        let r = &e.storage.retention;
        let p = project();
        assert!(!r.has_retention_policies().await.expect("read"), "{}", e.name);
        let policy = RetentionPolicy { max_age_days: Some(3), ..Default::default() };
        r.put_retention(&p, Some(policy.clone()), Timestamp::from_ms(T0), prune_event(&p, "p")).await.expect("put");
        assert!(r.has_retention_policies().await.expect("read"), "{}", e.name);
        assert_eq!(r.get_retention(&p).await.expect("get"), Some(policy), "{}", e.name);
        r.put_retention(&p, None, Timestamp::from_ms(T0), prune_event(&p, "p")).await.expect("reset");
        assert!(!r.has_retention_policies().await.expect("read"), "{}", e.name);
        assert_eq!(r.get_retention(&p).await.expect("get"), None, "{}", e.name);
        assert!(r.take_prune_lease("a", Timestamp::from_ms(T0), Timestamp::from_ms(T0 + 100)).await.expect("take"), "{}", e.name);
        assert!(!r.take_prune_lease("b", Timestamp::from_ms(T0 + 50), Timestamp::from_ms(T0 + 150)).await.expect("take"), "{}: held", e.name);
        assert!(r.take_prune_lease("a", Timestamp::from_ms(T0 + 60), Timestamp::from_ms(T0 + 160)).await.expect("renew"), "{}: renewed", e.name);
        assert!(!r.take_prune_lease("b", Timestamp::from_ms(T0 + 150), Timestamp::from_ms(T0 + 250)).await.expect("take"), "{}: renewed", e.name);
        assert!(r.take_prune_lease("b", Timestamp::from_ms(T0 + 161), Timestamp::from_ms(T0 + 261)).await.expect("take"), "{}: expired", e.name);
        r.release_prune_lease("a").await.expect("a releases nothing it lost");
        assert!(!r.take_prune_lease("a", Timestamp::from_ms(T0 + 170), Timestamp::from_ms(T0 + 270)).await.expect("take"), "{}", e.name);
        r.release_prune_lease("b").await.expect("release");
        assert!(r.take_prune_lease("a", Timestamp::from_ms(T0 + 171), Timestamp::from_ms(T0 + 271)).await.expect("take"), "{}: released", e.name);
    }
}

fn bind_audit(inst: &Instance) -> kafka_tasks::storage::AuditEvent {
    kafka_tasks::storage::AuditEvent {
        at: T0,
        request_id: "r".into(),
        project_id: inst.project_id.as_str().into(),
        user_id: "u".into(),
        user_name: "n".into(),
        access_key: None,
        action: "kafka-tasks:instance:bindCluster".into(),
        target: inst.id.as_str().into(),
        status: 200,
        detail: None,
    }
}

contract! {
    async fn a_bound_instance_keeps_its_binding_until_unbound_or_deleted_and_its_steps_wait_for_the_executor(e: Engine) {
        use kafka_tasks::domain::cluster::{Binding, SecurityProtocol};
        use kafka_tasks::storage::StoredBinding;
        let s = &e.storage;
        let inst = running_instance(s).await;
        let binding = StoredBinding {
            binding: Binding {
                bootstrap: vec!["127.0.0.1:9092".into()],
                protocol: SecurityProtocol::PLAINTEXT,
                sasl: None,
                ssl_ca_file: None,
                broker_control: None,
            },
            password_sealed: Some(vec![1, 2, 3]),
        };
        let (p, i) = (&inst.project_id, &inst.id);
        assert_eq!(s.clusters.get_binding(p, i).await.expect("r"), None, "{}", e.name);
        assert!(s.clusters.put_binding(p, i, Some(binding.clone()), Timestamp::from_ms(T0), bind_audit(&inst)).await.expect("w"));
        assert_eq!(s.clusters.get_binding(p, i).await.expect("r"), Some(binding.clone()), "{}", e.name);
        assert!(s.instances.get_instance(p, i).await.expect("r").expect("i").cluster_bound, "{}", e.name);
        // Another project's instance of the same id is not this one.
        let other: ProjectId = "fedcba9876543210fedcba9876543210".parse().expect("p");
        assert_eq!(s.clusters.get_binding(&other, i).await.expect("r"), None, "{}", e.name);
        assert!(!s.clusters.put_binding(&other, i, None, Timestamp::from_ms(T0), bind_audit(&inst)).await.expect("w"), "{}", e.name);

        // A bound instance's steps that take no time still wait for the executor.
        let mut t = task(&inst, Operation::Restart, T0 + 1, None);
        t.record.steps = t.operation.steps(0.0);
        s.instances.submit(p, i, TaskBuilder::ready(t), None).await.expect("submit").expect("admitted");
        let claimed = s.engine.claim("w", at(T0 + 2), Duration::from_millis(60_000), 10, CTX).await.expect("claim");
        assert_eq!(claimed.len(), 1, "{}", e.name);
        assert_eq!(claimed[0].ended, None, "{}: a bound instance's step ended in the claim", e.name);

        // Unbinding clears both; deleting the instance removes its binding.
        assert!(s.clusters.put_binding(p, i, None, Timestamp::from_ms(T0), bind_audit(&inst)).await.expect("w"));
        assert_eq!(s.clusters.get_binding(p, i).await.expect("r"), None, "{}", e.name);
        assert!(!s.instances.get_instance(p, i).await.expect("r").expect("i").cluster_bound, "{}", e.name);
    }
}

contract! {
    /// Test control's reset (`POST …/test-control/reset`): every record goes in one call, the
    /// credentials stay (or all but one), test control's own values stay. On 10,000 stored tasks;
    /// the time each engine took is printed (`cargo test --release --test storage reset_ -- --nocapture`),
    /// a figure for docs/performance.md, not an assertion.
    async fn reset_removes_every_record_but_the_credentials_and_control_values(e: Engine) {
        let s = &e.storage;
        let mut instances = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..100 {
            let inst = instance(&project());
            for t in 0..100 {
                tasks.push(task(&inst, Operation::Restart, T0 + i * 100 + t, None));
            }
            instances.push(inst);
        }
        let some = instances[0].clone();
        s.bulk.bulk_load(instances, tasks).await.expect("loaded");
        s.credentials.insert_credential(credential("AK1")).await.expect("insert");
        s.credentials.insert_credential(credential("AK2")).await.expect("insert");
        s.control.put_control_value("clock", "{\"offset_ms\":5}", Timestamp::from_ms(T0)).await.expect("stored");
        s.kernels.add_kernel_build("2.7", "2.7.1-h0.cbu.dms.900.r0", Timestamp::from_ms(T0)).await.expect("added");
        let audit = AuditEvent {
            at: T0,
            request_id: "r".into(),
            project_id: project().as_str().into(),
            user_id: "u".into(),
            user_name: "n".into(),
            access_key: None,
            action: "a".into(),
            target: "t".into(),
            status: 200,
            detail: None,
        };
        s.audit.append_audit(audit).await.expect("audit");
        assert_eq!(s.engine.unfinished_count().await.expect("count"), 10_000, "{}", e.name);

        let started = std::time::Instant::now();
        s.control.reset_state(None).await.expect("reset");
        eprintln!("{}: reset of 10,000 tasks in {:?}", e.name, started.elapsed());

        assert_eq!(s.engine.unfinished_count().await.expect("count"), 0, "{}", e.name);
        assert!(s.instances.list_instances(&project()).await.expect("list").is_empty(), "{}", e.name);
        assert!(s.instances.get_instance(&project(), &some.id).await.expect("get").is_none());
        assert!(s.audit.list_audit(None, None, 10).await.expect("audit").is_empty(), "{}", e.name);
        assert!(s.kernels.added_kernel_builds("2.7").await.expect("builds").is_empty(), "{}", e.name);
        assert_eq!(s.credentials.list_credentials().await.expect("creds").len(), 2, "{}", e.name);
        assert_eq!(s.control.control_value("clock").await.expect("read").as_deref(), Some("{\"offset_ms\":5}"));
        // The store works on: a new instance and its task.
        let fresh = running_instance(s).await;
        assert_eq!(s.instances.list_instances(&project()).await.expect("list").len(), 1, "{}", e.name);
        assert!(submit(s, &fresh, Operation::Restart, T0 + 1, None).await.is_ok(), "{}", e.name);

        s.control.reset_state(Some("AK2")).await.expect("reset");
        let left: Vec<String> =
            s.credentials.list_credentials().await.expect("creds").into_iter().map(|c| c.access_key).collect();
        assert_eq!(left, ["AK2"], "{}", e.name);
    }
}

/// Drops the `instances` table behind the store's back, through the engine's own driver.
async fn drop_instances_table(e: &Engine) {
    match (&e._dir, &e._pg) {
        (Some(dir), _) => {
            let conn = rusqlite::Connection::open(dir.path().join("c.db")).expect("open");
            conn.execute_batch("DROP TABLE instances").expect("drop");
        }
        (_, Some(db)) => {
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            client.batch_execute("DROP TABLE instances CASCADE").await.expect("drop");
        }
        _ => unreachable!("an engine has a directory or a database"),
    }
}

contract! {
    /// A driver's failure keeps the driver's error under the store error: its source chain
    /// reaches the engine's own error type, and the chain's text says what the driver said.
    async fn a_driver_failure_keeps_the_drivers_error_as_its_source(e: Engine) {
        drop_instances_table(&e).await;
        let err = e.storage.instances.list_instances(&project()).await.expect_err("the table is gone");
        assert_eq!(err.kind(), "backend", "{}: {err:?}", e.name);
        let mut reached = false;
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            reached |= match e.name {
                "sqlite" => s.is::<rusqlite::Error>(),
                _ => s.is::<tokio_postgres::Error>(),
            };
            source = s.source();
        }
        assert!(reached, "{}: the chain does not reach the driver's error: {err:?}", e.name);
        assert!(err.chain().contains("instances"), "{}: {}", e.name, err.chain());
    }
}

/// Runs and run records with no task, read behind the store's back with the engine's own driver:
/// (every `task_runs` row, those whose task is gone).
async fn run_rows(e: &Engine) -> (i64, i64) {
    const SQL: &str = "SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = r.task_id)) \
                       FROM task_runs r";
    match (&e._dir, &e._pg) {
        (Some(dir), _) => {
            let conn = rusqlite::Connection::open(dir.path().join("c.db")).expect("open");
            conn.query_row(SQL, [], |r| Ok((r.get(0)?, r.get(1)?))).expect("count")
        }
        (_, Some(db)) => {
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            let row = client.query_one(SQL, &[]).await.expect("count");
            (row.get(0), row.get(1))
        }
        _ => unreachable!("an engine has a directory or a database"),
    }
}

/// A restart of `inst` claimed by an executor, its first attempt begun (so it has a run
/// record), then failed by it at `now`: a finished task that can be deleted and pruned.
async fn failed_with_a_run(s: &Storage, inst: &Instance, now: i64) -> TaskId {
    let mut executed = operation::OpSet::EMPTY;
    assert!(executed.insert("restartInstance"));
    let ctx = StepContext { executed, ..CTX };
    let t = submit(s, inst, Operation::Restart, now, None).await.expect("admitted").record.id;
    let claimed = s.engine.claim("x", at(now + 1), Duration::from_millis(60_000), 10, ctx).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(s.runs.begin_attempt("x", &t, 0, None, at(now + 2)).await.expect("begin"), Some(1));
    let failed = s
        .runs
        .fail_step("x", &t, 0, at(now + 3), "exit 1".into(), String::new(), failure_event(&t))
        .await
        .expect("fail");
    assert_eq!(failed, StepOutcome::Ended(TaskStatus::Failed));
    assert!(s.runs.task_run(&t).await.expect("run").is_some());
    t
}

contract! {
    /// Whichever way a task goes (deleted alone or in bulk, pruned, with its instance, by test
    /// control's reset or a snapshot's restore), its run record goes with it.
    async fn a_run_record_never_outlives_its_task(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let p = inst.project_id.clone();
        // A snapshot of the store before any run.
        assert!(matches!(s.control.save_snapshot("empty", at(T0), 10, 1 << 30).await.expect("save"), SnapshotSaved::Saved(_)));

        let single = failed_with_a_run(s, &inst, T0 + 10).await;
        let d = s.tasks.delete_task(&p, &inst.id, &single, View::Background, None).await.expect("delete");
        assert!(matches!(d, DeleteOutcome::Deleted(_)), "{}", e.name);
        assert_eq!(s.runs.task_run(&single).await.expect("run"), None, "{}", e.name);
        assert_eq!(run_rows(&e).await, (0, 0), "{}: single", e.name);

        let bulk = [failed_with_a_run(s, &inst, T0 + 20).await, failed_with_a_run(s, &inst, T0 + 30).await];
        let filter = BulkFilter::parse(|k| (k == "end_time").then(|| "29991231000000".to_owned())).expect("filter");
        let deleted = s.tasks.delete_tasks(&p, &inst.id, &filter, 100, event("bulk")).await.expect("d").expect("inst");
        assert!(bulk.iter().all(|t| deleted.deleted.iter().any(|r| &r.id == t)), "{}", e.name);
        assert_eq!(run_rows(&e).await, (0, 0), "{}: bulk", e.name);

        let pruned = failed_with_a_run(s, &inst, T0 + 40).await;
        let read = s.retention.finished_tasks(&inst.id, T0 + 1_000, None, 100).await.expect("read");
        let mine: Vec<Candidate> = read.into_iter().filter(|c| c.id == pruned).collect();
        assert_eq!(mine.len(), 1, "{}", e.name);
        let n = s.retention.prune_tasks(&inst.id, mine, PruneRule::Age, prune_event(&p, "x")).await.expect("prune");
        assert_eq!(n, 1, "{}", e.name);
        assert_eq!(run_rows(&e).await, (0, 0), "{}: pruned", e.name);

        // Kept in a snapshot with its task, then the instance goes, its tasks and their runs with it.
        let kept = failed_with_a_run(s, &inst, T0 + 50).await;
        assert!(matches!(s.control.save_snapshot("one", at(T0), 10, 1 << 30).await.expect("save"), SnapshotSaved::Saved(_)));
        submit(s, &inst, Operation::DeleteInstance, T0 + 60, None).await.expect("admitted");
        assert_eq!(run_all(s, "w", T0 + 61).await, [TaskStatus::Success], "{}", e.name);
        assert_eq!(s.instances.get_instance(&p, &inst.id).await.expect("g"), None, "{}", e.name);
        assert_eq!(run_rows(&e).await, (0, 0), "{}: instance", e.name);

        // A restore brings the task back with its run; one from before it takes both away.
        assert!(s.control.restore_snapshot("one").await.expect("restore"), "{}", e.name);
        assert!(s.runs.task_run(&kept).await.expect("run").is_some(), "{}: restored with its task", e.name);
        assert_eq!(run_rows(&e).await, (1, 0), "{}: restored", e.name);
        assert!(s.control.restore_snapshot("empty").await.expect("restore"), "{}", e.name);
        assert_eq!(run_rows(&e).await, (0, 0), "{}: restored before", e.name);

        assert!(s.control.restore_snapshot("one").await.expect("restore"), "{}", e.name);
        s.control.reset_state(None).await.expect("reset");
        assert_eq!(run_rows(&e).await, (0, 0), "{}: reset", e.name);
    }
}

/// Runs `sql` (statements without results) straight on `e`'s database.
async fn raw_execute(e: &Engine, sql: &str) {
    match (&e._dir, &e._pg) {
        (Some(dir), _) => {
            let conn = rusqlite::Connection::open(dir.path().join("c.db")).expect("open");
            conn.execute_batch(sql).expect("executed");
        }
        (_, Some(db)) => {
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            client.batch_execute(sql).await.expect("executed");
        }
        _ => unreachable!("an engine has a directory or a database"),
    }
}

/// The one number `sql` reads, straight from `e`'s database.
async fn raw_count(e: &Engine, sql: &str) -> i64 {
    match (&e._dir, &e._pg) {
        (Some(dir), _) => rusqlite::Connection::open(dir.path().join("c.db"))
            .expect("open")
            .query_row(sql, [], |r| r.get(0))
            .expect("read"),
        (_, Some(db)) => {
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            client.query_one(sql, &[]).await.expect("read").get(0)
        }
        _ => unreachable!("an engine has a directory or a database"),
    }
}

/// PostgreSQL's schema as it was before rows held several events (migration 0019 undone: the
/// identity back, continuing above every position handed out; the newest version forgotten).
const PG_BEFORE_EVENT_ROWS: &str = "DO $$ DECLARE next BIGINT; BEGIN \
     SELECT greatest((SELECT coalesce(max(id), 0) FROM task_events), \
                     (SELECT last_value FROM task_events_block)) + 1 INTO next; \
     ALTER TABLE task_events ALTER COLUMN id DROP DEFAULT; \
     DROP SEQUENCE task_events_block; \
     ALTER TABLE task_events DROP COLUMN n; \
     EXECUTE format('ALTER TABLE task_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (START WITH %s)', next); \
     ALTER TABLE task_events_pruned DROP COLUMN counted_xid, DROP COLUMN counted_id, DROP COLUMN counted; \
     DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations); END $$;";

/// SQLite's schema as it was before the count of finished tasks (migration 0018 undone).
const SQLITE_BEFORE_FINISHED_COUNT: &str = "ALTER TABLE instances DROP COLUMN finished_tasks; \
     CREATE INDEX tasks_finished ON tasks (instance_id, updated_at, id) WHERE due_at IS NULL;";

/// Each instance's stored count of finished tasks beside a recount of its rows.
async fn finished_counts(e: &Engine) -> Vec<(String, i64, i64)> {
    // SQLite keeps the count on the instance's row; PostgreSQL in shard rows (migration 0018).
    const SQLITE: &str = "SELECT i.id, i.finished_tasks, \
                          (SELECT count(*) FROM tasks t WHERE t.instance_id = i.id AND t.due_at IS NULL) \
                          FROM instances i ORDER BY i.id";
    const SQL: &str = "SELECT i.id, (SELECT coalesce(sum(n), 0)::BIGINT FROM finished_counts f WHERE f.instance_id = i.id), \
                       (SELECT count(*) FROM tasks t WHERE t.instance_id = i.id AND t.due_at IS NULL) \
                       FROM instances i ORDER BY i.id";
    match (&e._dir, &e._pg) {
        (Some(dir), _) => {
            let conn = rusqlite::Connection::open(dir.path().join("c.db")).expect("open");
            let mut st = conn.prepare(SQLITE).expect("prepare");
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .expect("query")
                .map(|r| r.expect("row"))
                .collect()
        }
        (_, Some(db)) => {
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            client.query(SQL, &[]).await.expect("query").iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
        }
        _ => unreachable!("an engine has a directory or a database"),
    }
}

/// Every instance's count of finished tasks is its number of finished rows, as stored and as
/// retention reads it; returns the total.
async fn assert_finished_counts_exact(e: &Engine, after: &str) -> i64 {
    let counts = finished_counts(e).await;
    for (id, stored, recount) in &counts {
        assert_eq!(stored, recount, "{}: after {after}, instance {id}", e.name);
        let read = e.storage.retention.finished_count(&id.parse().expect("instance id")).await.expect("count");
        assert_eq!(read as i64, *recount, "{}: after {after}, finished_count of {id}", e.name);
    }
    if e._pg.is_some() {
        let orphans =
            raw_count(e, "SELECT count(*) FROM finished_counts WHERE instance_id NOT IN (SELECT id FROM instances)");
        assert_eq!(orphans.await, 0, "{}: after {after}, counts of instances that are gone", e.name);
    }
    counts.iter().map(|(_, _, n)| n).sum()
}

contract! {
    /// The count of an instance's finished tasks that retention's cap reads is kept on the
    /// instance's row (SQLite: by each write, in code; PostgreSQL: by triggers into shard rows):
    /// after every path that inserts, ends, un-ends or deletes a task it equals a recount.
    async fn every_write_of_tasks_keeps_each_instances_finished_count_exact(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let p = inst.project_id.clone();
        assert_eq!(assert_finished_counts_exact(&e, "create").await, 1, "{}", e.name);
        let loaded = finished_tasks(s, &inst, 20).await;
        assert_eq!(assert_finished_counts_exact(&e, "bulk load").await, 21, "{}", e.name);

        // Submitted (not finished), claimed (not finished), run to the end (finished).
        let ran = submit(s, &inst, Operation::Restart, T0 + 100, None).await.expect("admitted").record.id;
        assert_eq!(assert_finished_counts_exact(&e, "submit").await, 21, "{}", e.name);
        assert_eq!(run_all(s, "w", T0 + 101).await, [TaskStatus::Success], "{}", e.name);
        assert_eq!(assert_finished_counts_exact(&e, "the engine's end").await, 22, "{}", e.name);

        // A scheduled task: waiting, cancelled (finished), resumed (waiting again), cancelled.
        let sched = submit(s, &inst, Operation::Restart, T0 + 200, Some(T0 + 90_000)).await.expect("a").record.id;
        assert_eq!(assert_finished_counts_exact(&e, "a scheduled submit").await, 22, "{}", e.name);
        let change = |status| ScheduleChange { execute_at: None, status };
        for (status, n) in [(StatusChange::Cancel, 23), (StatusChange::Wait, 22), (StatusChange::Cancel, 23)] {
            let r = s.tasks.update_scheduled(&p, &inst.id, &sched, change(status), at(T0 + 300), None).await;
            assert!(matches!(r.expect("update"), Found::Yes(true)), "{}", e.name);
            assert_eq!(assert_finished_counts_exact(&e, &format!("{status:?}")).await, n, "{}", e.name);
        }

        // A snapshot now (23 finished), restored after the deletes below.
        assert!(matches!(s.control.save_snapshot("s", at(T0), 10, 1 << 30).await.expect("save"), SnapshotSaved::Saved(_)));

        let d = s.tasks.delete_task(&p, &inst.id, &ran, View::Background, None).await.expect("delete");
        assert!(matches!(d, DeleteOutcome::Deleted(_)), "{}", e.name);
        assert_eq!(assert_finished_counts_exact(&e, "a single delete").await, 22, "{}", e.name);
        let filter = BulkFilter::parse(|k| (k == "end_time").then(|| "29991231000000".to_owned())).expect("filter");
        let bulk = s.tasks.delete_tasks(&p, &inst.id, &filter, 5, event("bulk")).await.expect("d").expect("inst");
        assert_eq!(bulk.deleted.len(), 5, "{}", e.name);
        assert_eq!(assert_finished_counts_exact(&e, "a bulk delete").await, 17, "{}", e.name);
        let read = s.retention.finished_tasks(&inst.id, i64::MAX, None, 4).await.expect("read");
        let n = s.retention.prune_tasks(&inst.id, read, PruneRule::Cap, prune_event(&p, "x")).await.expect("prune");
        assert_eq!(n, 4, "{}", e.name);
        assert_eq!(assert_finished_counts_exact(&e, "a prune").await, 13, "{}", e.name);

        // A second instance, deleted by its operation with its finished tasks.
        let other = running_instance(s).await;
        finished_tasks(s, &other, 5).await;
        assert_eq!(assert_finished_counts_exact(&e, "a second instance").await, 19, "{}", e.name);
        submit(s, &other, Operation::DeleteInstance, T0 + 400, None).await.expect("admitted");
        assert_eq!(run_all(s, "w", T0 + 401).await, [TaskStatus::Success], "{}", e.name);
        assert_eq!(assert_finished_counts_exact(&e, "an instance's deletion").await, 13, "{}", e.name);

        assert!(s.control.restore_snapshot("s").await.expect("restore"), "{}", e.name);
        assert_eq!(assert_finished_counts_exact(&e, "a restore").await, 23, "{}", e.name);
        assert!(matches!(s.tasks.get_task(&p, &inst.id, &loaded[0], View::Background).await.expect("get"), Found::Yes(_)));

        // A snapshot saved before the count existed (no such field), and one whose count is
        // wrong: both restore to exact counts.
        for (edit, what) in [
            ("json_remove(data, '$.instances[0].finished_tasks')", "an old snapshot"),
            ("json_set(data, '$.instances[0].finished_tasks', 999)", "a wrong count"),
        ] {
            let sql = match e.name {
                "sqlite" => format!("UPDATE test_snapshots SET data = {edit} WHERE name = 's'"),
                _ => {
                    let pg = if edit.starts_with("json_remove") {
                        "(data::jsonb #- '{instances,0,finished_tasks}')::text"
                    } else {
                        "jsonb_set(data::jsonb, '{instances,0,finished_tasks}', '999')::text"
                    };
                    format!("UPDATE test_snapshots SET data = {pg} WHERE name = 's'")
                }
            };
            raw_execute(&e, &sql).await;
            assert!(s.control.restore_snapshot("s").await.expect("restore"), "{}: {what}", e.name);
            assert_eq!(assert_finished_counts_exact(&e, what).await, 23, "{}", e.name);
        }

        s.control.reset_state(None).await.expect("reset");
        assert_eq!(assert_finished_counts_exact(&e, "a reset").await, 0, "{}", e.name);
        let again = running_instance(s).await;
        finished_tasks(s, &again, 3).await;
        assert_eq!(assert_finished_counts_exact(&e, "a reset and new tasks").await, 4, "{}", e.name);
    }
}

contract! {
    /// Retention reads an instance's tasks in creation order: a task created before the bound
    /// but ended after it is read past, one ended before it is a candidate, a waiting scheduled
    /// one created long ago is never one, and the walk stops at the first task created at or
    /// after the bound; each task is read once (a fired scheduled task is in both views).
    async fn retention_reads_finished_tasks_in_creation_order_each_once(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let bound = T0 + 10_000;
        let mut early_late = task(&inst, Operation::Restart, T0 + 1, None);
        early_late.record.status = TaskStatus::Success;
        early_late.record.updated_at = bound + 5;
        let mut ended = task(&inst, Operation::Restart, T0 + 2, None);
        ended.record.status = TaskStatus::Failed;
        ended.record.updated_at = bound - 5;
        let waiting = task(&inst, Operation::Restart, T0 + 3, Some(T0 + 1_000_000));
        // Scheduled, fired, ended: in both views.
        let mut fired = task(&inst, Operation::Restart, T0 + 4, Some(T0 + 5));
        fired.record.status = TaskStatus::Success;
        fired.record.updated_at = T0 + 6;
        let mut after = task(&inst, Operation::Restart, bound, None);
        after.record.status = TaskStatus::Success;
        after.record.updated_at = bound;
        let all = [early_late, ended.clone(), waiting, fired.clone(), after];
        s.bulk.bulk_load(vec![], all.to_vec()).await.expect("loaded");
        assert!(placement(&fired.record).0 && fired.record.schedule_at.is_some(), "{}: in both views", e.name);

        let read = s.retention.finished_tasks(&inst.id, bound, None, 100).await.expect("read");
        let ids: Vec<&TaskId> = read.iter().map(|c| &c.id).collect();
        // The createInstance task (created at T0, ended at T0) comes first.
        assert_eq!(ids[1..], [&ended.record.id, &fired.record.id], "{}", e.name);
        assert!(read.windows(2).all(|w| (w[0].created_at, &w[0].id) < (w[1].created_at, &w[1].id)));
        assert_eq!((read[1].ended_at, read[1].created_at), (bound - 5, T0 + 2), "{}", e.name);
        // Page by page from the cursor: the same tasks, each once.
        let mut paged = vec![];
        let mut cursor = None;
        loop {
            let page = s.retention.finished_tasks(&inst.id, bound, cursor, 1).await.expect("read");
            let Some(last) = page.last() else { break };
            cursor = Some((last.created_at, last.id.clone()));
            paged.extend(page);
        }
        assert_eq!(paged, read, "{}", e.name);
        // The cap's read (no bound): every finished task in creation order, the late one too.
        let capped = s.retention.finished_tasks(&inst.id, i64::MAX, None, 100).await.expect("read");
        assert_eq!(capped.len(), 5, "{}", e.name);
        assert_eq!(capped.len() as u64, s.retention.finished_count(&inst.id).await.expect("count"), "{}", e.name);
    }
}

contract! {
    /// A database at the schema before the count (the retention index on end time, no count)
    /// with finished and unfinished tasks migrates to exact counts, and the index is gone.
    async fn a_database_before_the_finished_count_migrates_to_exact_counts(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        finished_tasks(s, &inst, 7).await;
        submit(s, &inst, Operation::Restart, T0 + 1, Some(T0 + 90_000)).await.expect("admitted");
        let other = running_instance(s).await;
        finished_tasks(s, &other, 2).await;
        submit(s, &other, Operation::Restart, T0 + 2, None).await.expect("admitted");
        // Back to the schema before the count (0018; the newer ones undone first: a newer one
        // must move this downgrade).
        match e.name {
            "sqlite" => raw_execute(&e, &format!("{SQLITE_BEFORE_FINISHED_COUNT} PRAGMA user_version = {};", raw_count(&e, "PRAGMA user_version").await - 1)).await,
            _ => raw_execute(&e, &(PG_BEFORE_EVENT_ROWS.to_owned() + "DROP TRIGGER tasks_finished_inserted ON tasks; DROP TRIGGER tasks_finished_deleted ON tasks; \
                  DROP TRIGGER tasks_finished_changed ON tasks; DROP FUNCTION tasks_finished_counted(); \
                  DROP FUNCTION tasks_finished_changed(); \
                  DROP TABLE finished_counts; \
                  CREATE INDEX tasks_finished ON tasks (instance_id, updated_at, id) WHERE due_at IS NULL; \
                  DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations);")).await,
        }
        let url = match (&e._dir, &e._pg) {
            (Some(dir), _) => format!("sqlite:{}", dir.path().join("c.db").display()),
            (_, Some(db)) => db.url.clone(),
            _ => unreachable!("an engine has a directory or a database"),
        };
        let Engine { name, storage, _dir, _pg } = e;
        drop(storage);
        let e = Engine { name, storage: Storage::open(&url).await.expect("migrated"), _dir, _pg };
        assert_eq!(assert_finished_counts_exact(&e, "the migration").await, 11, "{}", e.name);
        let counts: Vec<i64> = finished_counts(&e).await.iter().map(|c| c.1).collect();
        assert!(counts.contains(&8) && counts.contains(&3), "{}: {counts:?}", e.name);
        let index = match e.name {
            "sqlite" => "SELECT count(*) FROM sqlite_master WHERE name = 'tasks_finished'",
            _ => "SELECT count(*) FROM pg_indexes WHERE indexname = 'tasks_finished'",
        };
        let left = raw_count(&e, index).await;
        assert_eq!(left, 0, "{}: the index on end time is gone", e.name);
    }
}

contract! {
    /// Single and bulk deletes, prunes, cancels and resumes and the engine's runs on one
    /// instance at once never deadlock (PostgreSQL would abort one, an error here) and leave the
    /// count exact.
    async fn concurrent_writes_of_one_instances_tasks_keep_its_finished_count_exact(e: Engine) {
        let s = &e.storage;
        let inst = running_instance(s).await;
        let p = inst.project_id.clone();
        let loaded = finished_tasks(s, &inst, 120).await;
        let mut scheduled = vec![];
        for k in 0..10 {
            scheduled.push(submit(s, &inst, Operation::Restart, T0 + k, Some(T0 + 1_000_000)).await.expect("a").record.id);
        }
        let mut runs = tokio::task::JoinSet::new();
        {
            let (s, p, i) = (s.clone(), p.clone(), inst.id.clone());
            runs.spawn(async move {
                for t in loaded.iter().take(60) {
                    s.tasks.delete_task(&p, &i, t, View::Background, None).await.expect("single delete");
                }
            });
        }
        {
            let (s, p, i) = (s.clone(), p.clone(), inst.id.clone());
            runs.spawn(async move {
                let filter = BulkFilter::parse(|k| (k == "end_time").then(|| "29991231000000".to_owned())).expect("f");
                for _ in 0..10 {
                    s.tasks.delete_tasks(&p, &i, &filter, 3, event("bulk")).await.expect("bulk delete");
                }
            });
        }
        {
            let (s, p, i) = (s.clone(), p.clone(), inst.id.clone());
            runs.spawn(async move {
                for _ in 0..10 {
                    let read = s.retention.finished_tasks(&i, i64::MAX, None, 4).await.expect("read");
                    s.retention.prune_tasks(&i, read, PruneRule::Cap, prune_event(&p, "x")).await.expect("prune");
                }
            });
        }
        {
            let (s, p, i) = (s.clone(), p.clone(), inst.id.clone());
            runs.spawn(async move {
                for t in &scheduled {
                    for status in [StatusChange::Cancel, StatusChange::Wait, StatusChange::Cancel] {
                        let change = ScheduleChange { execute_at: None, status };
                        s.tasks.update_scheduled(&p, &i, t, change, at(T0 + 50), None).await.expect("update");
                    }
                }
            });
        }
        {
            let (s, inst) = (s.clone(), inst.clone());
            runs.spawn(async move {
                for k in 0..10 {
                    submit(&s, &inst, Operation::Restart, T0 + 100 + k, None).await.expect("admitted");
                    // A claim passes over an instance another write holds: again.
                    while run_all(&s, "w", T0 + 100 + k).await.is_empty() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            });
        }
        while let Some(run) = runs.join_next().await {
            run.expect("no write failed");
        }
        let left = assert_finished_counts_exact(&e, "concurrent writes").await;
        assert!(left > 0, "{}", e.name);
    }
}
