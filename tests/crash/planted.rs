//! Planted faults: each check of the crash loop, fed the records of a small clean run, finds
//! nothing; fed the same records with one fault planted, it reports that fault. The wire ids
//! are opaque strings here, as the checks must take them.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::json;

use super::event_log::{Logged, Received, TaskRow, Truth, log_problems, stream_problems};
use super::paging::{Ack, DeleteAttempt, Facts, Page, Pass, paging_problems};

const INSTANCE: &str = "11111111-2222-3333-4444-555555555555";

fn event(kind: &str, task: &str, status: &str, step: Option<u64>, at: u64) -> Logged {
    let mut data = json!({"task_id": task, "instance_id": INSTANCE, "name": "restartInstance", "status": status,
        "steps_done": 0, "steps": 2, "progress": 0, "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T00:00:00.000Z", "at": format!("2026-01-01T00:00:{at:02}.000Z")});
    if let Some(i) = step {
        data["step"] = json!({"index": i, "name": format!("s{i}"), "status": "COMPLETED"});
    }
    Logged { kind: kind.into(), task_id: task.into(), instance_id: INSTANCE.into(), data: data.to_string() }
}

/// A clean log: task `t1` runs two steps and succeeds, `t2` is scheduled and cancelled, `t3`
/// fails and is deleted.
fn log() -> Vec<Logged> {
    vec![
        event("task.created", "t1", "CREATED", None, 1),
        event("task.created", "t2", "CREATED", None, 2),
        event("step.started", "t1", "EXECUTING", Some(0), 3),
        event("task.created", "t3", "CREATED", None, 4),
        event("step.finished", "t1", "EXECUTING", Some(0), 5),
        event("task.rescheduled", "t2", "CANCELLED", None, 6),
        event("step.started", "t1", "EXECUTING", Some(1), 7),
        event("step.started", "t3", "EXECUTING", Some(0), 8),
        event("step.finished", "t1", "SUCCESS", Some(1), 9),
        event("task.finished", "t1", "SUCCESS", None, 10),
        event("step.finished", "t3", "FAILED", Some(0), 11),
        event("task.finished", "t3", "FAILED", None, 12),
        event("task.deleted", "t3", "FAILED", None, 13),
    ]
}

/// What a consumer that started after the first two events got, with ids of a shape the
/// checks must not read anything into.
fn received(log: &[Logged]) -> Vec<Received> {
    log[2..]
        .iter()
        .enumerate()
        .map(|(n, e)| Received { id: Some(format!("c~{n:x}.z")), kind: e.kind.clone(), data: e.data.clone() })
        .collect()
}

fn task(status: &str) -> TaskRow {
    TaskRow {
        instance_id: INSTANCE.into(),
        name: "restartInstance".into(),
        status: status.into(),
        created_at: 1,
        in_background: true,
    }
}

fn truth() -> Truth {
    Truth {
        tasks: HashMap::from([("t1".into(), task("SUCCESS")), ("t2".into(), task("CANCELLED"))]),
        instances: HashSet::from([INSTANCE.into()]),
        acked_instances: HashSet::from([INSTANCE.into()]),
        acked: HashSet::from(["t1".into(), "t2".into(), "t3".into()]),
        deleted: HashMap::from([("t3".into(), "FAILED".into())]),
        unsure_deleted: HashSet::new(),
    }
}

fn reports(problems: &[String], words: &str) -> bool {
    problems.iter().any(|p| p.contains(words))
}

#[test]
fn the_clean_records_pass_every_event_check() {
    let log = log();
    assert_eq!(stream_problems(&received(&log), &log, (2, 2)), Vec::<String>::new());
    assert_eq!(stream_problems(&received(&log), &log, (1, 3)), Vec::<String>::new());
    assert_eq!(log_problems(&log, &truth()), Vec::<String>::new());
}

#[test]
fn a_task_finished_missing_from_the_log_is_reported() {
    let mut log = log();
    log.retain(|e| !(e.kind == "task.finished" && e.task_id == "t1"));
    let p = log_problems(&log, &truth());
    let said = r#"is stored SUCCESS, yet its events are ["task.created CREATED", "step.started EXECUTING", "#;
    assert!(reports(&p, &format!("restartInstance task t1 {said}")), "{p:#?}");
    assert!(reports(&p, r#""step.started EXECUTING", "step.finished SUCCESS"]"#), "{p:#?}");
}

#[test]
fn a_task_finished_the_stream_never_delivered_is_a_gap() {
    let log = log();
    let mut got = received(&log);
    got.retain(|e| !(e.kind == "task.finished" && e.data.contains("\"t1\"")));
    let p = stream_problems(&got, &log, (2, 2));
    assert!(reports(&p, "never received (a gap before #7): task.finished of task t1"), "{p:#?}");
    // At the end of the stream, too.
    let mut got = received(&log);
    got.pop();
    let p = stream_problems(&got, &log, (2, 2));
    assert!(reports(&p, "never received (after the last event received): task.deleted of task t3"), "{p:#?}");
}

#[test]
fn a_step_finished_received_twice_is_reported() {
    let log = log();
    let mut got = received(&log);
    let twice = got.iter().position(|e| e.kind == "step.finished").map(|i| got[i].clone());
    got.insert(3, twice.clone().unwrap_or_else(|| panic!("a step.finished")));
    let p = stream_problems(&got, &log, (2, 2));
    assert!(
        reports(&p, "received #3, step.finished 0 of task t1 (EXECUTING, at 2026-01-01T00:00:05.000Z), again"),
        "{p:#?}"
    );
    // Delivered twice under the same opaque id, straight after the first.
    let mut got = received(&log);
    got.insert(3, got[2].clone());
    let p = stream_problems(&got, &log, (2, 2));
    assert!(reports(&p, "again"), "{p:#?}");
}

#[test]
fn a_step_finished_logged_twice_is_reported() {
    let mut log = log();
    // Ended again later (a second writer that still thought it held the task).
    log.insert(6, event("step.finished", "t1", "EXECUTING", Some(0), 6));
    let p = log_problems(&log, &truth());
    assert!(reports(&p, "task t1: step 0 finished 2 times"), "{p:#?}");
}

#[test]
fn a_phantom_event_is_reported_by_both_checks() {
    let clean = log();
    let mut log = clean.clone();
    log.insert(5, event("task.finished", "t9", "SUCCESS", None, 5));
    let p = log_problems(&log, &truth());
    assert!(reports(&p, "are about task t9 on 11111111-2222-3333-4444-555555555555, which never existed"), "{p:#?}");
    assert!(reports(&p, "task t9: its events are [\"task.finished\"], not one task.created first"), "{p:#?}");
    // Received but never logged.
    let mut got = received(&clean);
    got.insert(4, Received { id: Some("c~ff".into()), kind: "task.finished".into(), data: log[5].data.clone() });
    let p = stream_problems(&got, &clean, (2, 2));
    assert!(
        reports(&p, "received #4, task.finished of task t9 (SUCCESS, at 2026-01-01T00:00:05.000Z), is not in the log"),
        "{p:#?}"
    );
}

#[test]
fn missed_is_a_fault_when_nothing_is_pruned() {
    let log = log();
    let mut got = received(&log);
    got.insert(5, Received { id: None, kind: "missed".into(), data: r#"{"after":"c~4.z"}"#.into() });
    let p = stream_problems(&got, &log, (2, 2));
    assert!(reports(&p, "received #5 is `missed`"), "{p:#?}");
}

#[test]
fn a_stream_that_starts_early_or_late_is_reported() {
    let log = log();
    // It started after the first two events, yet began with the second one.
    let mut got = received(&log);
    got.insert(0, Received { id: Some("c~0".into()), kind: log[1].kind.clone(), data: log[1].data.clone() });
    let p = stream_problems(&got, &log, (2, 2));
    assert!(reports(&p, "was logged before the stream started"), "{p:#?}");
    // It began one event late.
    let p = stream_problems(&received(&log)[1..], &log, (2, 2));
    assert!(reports(&p, "never received (before the first event): step.started 0 of task t1"), "{p:#?}");
    // Nothing received though events came after the start.
    let p = stream_problems(&[], &log, (2, 2));
    assert!(reports(&p, "received nothing, yet 11 events were logged after the stream started"), "{p:#?}");
}

#[test]
fn acknowledged_and_deleted_tasks_without_their_events_are_reported() {
    let mut log = log();
    log.retain(|e| e.task_id != "t2" && e.kind != "task.deleted");
    let mut truth = truth();
    truth.tasks.remove("t2");
    let p = log_problems(&log, &truth);
    assert!(reports(&p, "acknowledged task t2 has no task.created"), "{p:#?}");
    assert!(reports(&p, "task t3, deleted with a 204, has 0 task.deleted"), "{p:#?}");
    // A stored task the log says was deleted, and a cancelled one that "finished".
    let mut log = self::log();
    log.push(event("task.deleted", "t1", "SUCCESS", None, 14));
    log.push(event("task.finished", "t2", "CANCELLED", None, 15));
    let p = log_problems(&log, &self::truth());
    assert!(reports(&p, "restartInstance task t1 is stored, yet a task.deleted was logged"), "{p:#?}");
    let said = r#"["task.created CREATED", "task.rescheduled CANCELLED", "task.finished CANCELLED"]"#;
    assert!(reports(&p, &format!("restartInstance task t2 is stored CANCELLED, yet its events are {said}")), "{p:#?}");
}

/// A clean pass record: tasks `a`, `b`, `c` (oldest first) acknowledged before the pass, paged
/// two at a time, newest first.
struct Paging {
    t0: Instant,
    tasks: HashMap<String, TaskRow>,
    logged: HashSet<String>,
    acked: HashMap<String, Ack>,
    instances_acked: HashMap<String, Instant>,
    deletes: Vec<DeleteAttempt>,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Paging {
    fn new() -> Self {
        let t0 = Instant::now();
        let row = |created_at| TaskRow { created_at, ..task("SUCCESS") };
        let tasks: HashMap<String, TaskRow> =
            [("a", 1_000), ("b", 2_000), ("c", 3_000)].into_iter().map(|(id, at)| (id.to_owned(), row(at))).collect();
        Paging {
            t0,
            logged: tasks.keys().cloned().collect(),
            acked: tasks.keys().map(|id| (id.clone(), Ack { immediate: true, at: t0 })).collect(),
            tasks,
            instances_acked: HashMap::new(),
            deletes: vec![],
        }
    }

    fn pass(&self, pages: &[&[&str]], quiet: bool) -> Pass {
        let t = self.t0 + ms(10);
        Pass {
            instance: INSTANCE.into(),
            limit: 2,
            started: t,
            ended: t + ms(10 * pages.len() as u64),
            pages: pages
                .iter()
                .enumerate()
                .map(|(n, ids)| Page {
                    start: 1 + 2 * n as u64,
                    sent: t + ms(10 * n as u64),
                    task_count: Some(3),
                    ids: ids.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            complete: true,
            quiet,
        }
    }

    fn problems(&self, passes: &[Pass]) -> Vec<String> {
        let facts = Facts {
            tasks: &self.tasks,
            logged: &self.logged,
            acked: &self.acked,
            instances_acked: &self.instances_acked,
            deletes: &self.deletes,
            killed: None,
        };
        paging_problems(passes, &facts)
    }

    /// A delete of task `task` (created at `created_at`), sent and answered at these offsets.
    fn delete(&mut self, task: &str, created_at: i64, sent: u64, answered: u64, status: u16) {
        self.deletes.push(DeleteAttempt {
            task: task.into(),
            instance: INSTANCE.into(),
            created_at: Some(created_at),
            sent: self.t0 + ms(sent),
            answer: Some((self.t0 + ms(answered), status)),
        });
    }
}

#[test]
fn a_clean_pass_passes() {
    let p = Paging::new();
    assert_eq!(p.problems(&[p.pass(&[&["c", "b"], &["a"]], true)]), Vec::<String>::new());
}

#[test]
fn a_task_skipped_by_a_page_is_reported_unless_one_ahead_of_it_left() {
    let mut p = Paging::new();
    let skipped = p.pass(&[&["c", "b"], &[]], false);
    let found = p.problems(std::slice::from_ref(&skipped));
    assert!(reports(&found, "skipped restartInstance task a (SUCCESS, created at 1000)"), "{found:#?}");
    // A task behind `a` deleted during the pass does not explain it.
    p.delete("z", 500, 12, 14, 204);
    assert!(reports(&p.problems(std::slice::from_ref(&skipped)), "skipped restartInstance task a"));
    // Nor does one ahead of it whose delete was refused, or answered before the pass began.
    p.delete("d", 4_000, 12, 14, 409);
    p.delete("e", 4_000, 0, 5, 204);
    assert!(reports(&p.problems(std::slice::from_ref(&skipped)), "skipped restartInstance task a"));
    // One ahead of it deleted during the pass shifted it onto the page already read.
    p.delete("f", 4_000, 12, 14, 204);
    assert_eq!(p.problems(&[skipped]), Vec::<String>::new());
}

#[test]
fn a_phantom_listed_task_is_reported() {
    let p = Paging::new();
    let found = p.problems(&[p.pass(&[&["c", "b"], &["ghost", "a"], &[]], false)]);
    assert!(reports(&found, "listed ghost, which never existed"), "{found:#?}");
    // A task created by a request cut off by the kill is no phantom: the database holds it.
    let mut p = Paging::new();
    p.tasks.insert("unacked".into(), TaskRow { created_at: 2_500, ..task("SUCCESS") });
    assert_eq!(p.problems(&[p.pass(&[&["c", "unacked"], &["b", "a"], &[]], false)]), Vec::<String>::new());
}

#[test]
fn a_task_listed_after_its_delete_was_answered_is_reported() {
    let mut p = Paging::new();
    p.tasks.remove("c");
    p.delete("c", 3_000, 0, 5, 204);
    let found = p.problems(&[p.pass(&[&["c", "b"], &["a"]], false)]);
    assert!(reports(&found, "page start=1 listed c, sent 5 ms after its delete was answered 204"), "{found:#?}");
    // Listed by a page sent before the answer came: the delete may not have committed yet.
    p.deletes.clear();
    p.delete("c", 3_000, 0, 15, 204);
    assert_eq!(p.problems(&[p.pass(&[&["c", "b"], &["a"]], false)]), Vec::<String>::new());
}

#[test]
fn a_quiet_pass_whose_count_is_off_is_reported() {
    let p = Paging::new();
    let mut pass = p.pass(&[&["c", "b"], &["a"]], true);
    pass.pages[1].task_count = Some(4);
    let found = p.problems(&[pass]);
    assert!(reports(&found, "quiet: task_count {"), "{found:#?}");
    // The same record twice is caught even when the count agrees with the records.
    let found = p.problems(&[p.pass(&[&["c", "b"], &["b"]], true)]);
    assert!(reports(&found, "3 records paged through, 2 distinct"), "{found:#?}");
}
