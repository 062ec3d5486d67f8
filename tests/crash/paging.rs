//! ListBackgroundTasks paged through while tasks come and go and the process is killed: a pager
//! that records every page it got, and the pure check of those pages ([`paging_problems`])
//! against the database after the run and what the clients were told.
//!
//! The list is newest first (`created_at`, then id, both descending) and paged by offset
//! (`start`). A task leaving the view before a page shifts the rest up by one, so the pager
//! may skip a task only when a task ahead of it in that order left during the pass; a task
//! joining the view (a scheduled task that fires) shifts the rest down, which repeats one,
//! never skips one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::event_log::TaskRow;
use super::rng::Rng;
use super::serve::{Api, PROJECT};

/// One page as the pager got it.
#[derive(Debug, Clone)]
pub struct Page {
    /// The page's `start` (1-based offset).
    pub start: u64,
    /// When its request was sent.
    pub sent: Instant,
    pub task_count: Option<u64>,
    pub ids: Vec<String>,
}

/// One pass through an instance's ListBackgroundTasks, page after page.
#[derive(Debug, Clone)]
pub struct Pass {
    pub instance: String,
    pub limit: u64,
    /// When its first request was sent and its last answer came.
    pub started: Instant,
    pub ended: Instant,
    pub pages: Vec<Page>,
    /// Every page answered 200 and the last one was short: the pass saw the whole list.
    pub complete: bool,
    /// Made after every task had ended and nothing else was sent.
    pub quiet: bool,
}

/// A task whose submission was acknowledged.
#[derive(Debug, Clone)]
pub struct Ack {
    /// Not scheduled: in the background view from its creation on.
    pub immediate: bool,
    /// When the acknowledgement came.
    pub at: Instant,
}

/// A DELETE of a task, answered or not.
#[derive(Debug, Clone)]
pub struct DeleteAttempt {
    pub task: String,
    pub instance: String,
    /// The task's `created_at` (epoch ms) as the list it was picked from showed it.
    pub created_at: Option<i64>,
    pub sent: Instant,
    /// When the answer came and its status; `None` when none came.
    pub answer: Option<(Instant, u16)>,
}

/// What the pages are checked against.
pub struct Facts<'a> {
    /// Every task in the database after the run.
    pub tasks: &'a HashMap<String, TaskRow>,
    /// Every task the database's event log says was created.
    pub logged: &'a HashSet<String>,
    pub acked: &'a HashMap<String, Ack>,
    /// Instance → when its creation was acknowledged (its createInstance task is a background
    /// task from then on).
    pub instances_acked: &'a HashMap<String, Instant>,
    pub deletes: &'a [DeleteAttempt],
    /// When the process was killed: a delete unanswered by then never happened after it.
    pub killed: Option<Instant>,
}

/// What the passes broke: a listed task that never existed (not stored at the end, never
/// acknowledged, never logged as created), or listed on another instance; a task listed by a
/// page sent after its delete was answered 204; a task skipped by a complete pass though it was
/// a background task before the pass started, is still stored, and no task ahead of it in the
/// list's order was deleted during the pass; and a quiet pass whose `task_count` is not the
/// number of records paged through, or whose records are not the instance's stored ones.
pub fn paging_problems(passes: &[Pass], f: &Facts) -> Vec<String> {
    let mut v = vec![];
    let mut deleted_at: HashMap<&str, Instant> = HashMap::new();
    for d in f.deletes {
        if let Some((at, 204)) = d.answer {
            let e = deleted_at.entry(d.task.as_str()).or_insert(at);
            *e = (*e).min(at);
        }
    }
    let origin = passes.iter().map(|p| p.started).min();
    let when = |t: Instant| origin.map_or(0, |o| t.saturating_duration_since(o).as_millis());
    for p in passes {
        let what = format!("pass over {} (limit {}, from +{} ms)", p.instance, p.limit, when(p.started));
        let mut seen: Vec<&str> = vec![];
        for page in &p.pages {
            for id in &page.ids {
                seen.push(id);
                match f.tasks.get(id) {
                    Some(t) if t.instance_id != p.instance => {
                        v.push(format!("{what}: listed {id}, a task of {}", t.instance_id));
                    }
                    None if !f.acked.contains_key(id) && !f.logged.contains(id) => {
                        v.push(format!("{what}: listed {id}, which never existed"));
                    }
                    _ => {}
                }
                if let Some(at) = deleted_at.get(id.as_str()).filter(|at| **at < page.sent) {
                    v.push(format!(
                        "{what}: page start={} listed {id}, sent {} ms after its delete was answered 204",
                        page.start,
                        page.sent.saturating_duration_since(*at).as_millis()
                    ));
                }
            }
        }
        if !p.complete {
            continue;
        }
        let seen_set: HashSet<&str> = seen.iter().copied().collect();
        let mut expected: Vec<(&String, &TaskRow)> = f
            .tasks
            .iter()
            .filter(|(id, t)| {
                t.instance_id == p.instance
                    && t.in_background
                    && match f.acked.get(*id) {
                        Some(a) => a.immediate && a.at < p.started,
                        None => {
                            t.name == "createInstance"
                                && f.instances_acked.get(&p.instance).is_some_and(|at| *at < p.started)
                        }
                    }
            })
            .collect();
        expected.sort_by_key(|(id, t)| (std::cmp::Reverse(t.created_at), std::cmp::Reverse(*id)));
        for (id, t) in expected {
            if seen_set.contains(id.as_str()) {
                continue;
            }
            let ahead_left = f.deletes.iter().any(|d| {
                let removed = d.answer.is_none_or(|(_, s)| s == 204);
                let ended = match (d.answer, f.killed) {
                    (Some((at, _)), _) => Some(at),
                    (None, Some(k)) if k > d.sent => Some(k),
                    _ => None,
                };
                d.instance == p.instance
                    && d.task != *id
                    && removed
                    && d.sent < p.ended
                    && ended.is_none_or(|e| e > p.started)
                    && d.created_at.is_none_or(|c| (c, d.task.as_str()) > (t.created_at, id.as_str()))
            });
            if !ahead_left {
                v.push(format!(
                    "{what}: skipped {} task {id} ({}, created at {}), stored before and after, and no task \
                     ahead of it was deleted meanwhile",
                    t.name, t.status, t.created_at
                ));
            }
        }
        if p.quiet {
            let counts: HashSet<Option<u64>> = p.pages.iter().map(|pg| pg.task_count).collect();
            let stored: HashSet<&str> = f
                .tasks
                .iter()
                .filter(|(_, t)| t.instance_id == p.instance && t.in_background)
                .map(|(id, _)| id.as_str())
                .collect();
            if counts != HashSet::from([Some(seen.len() as u64)]) || seen_set.len() != seen.len() {
                v.push(format!(
                    "{what}, quiet: task_count {counts:?}, {} records paged through, {} distinct",
                    seen.len(),
                    seen_set.len()
                ));
            }
            if seen_set != stored {
                v.push(format!(
                    "{what}, quiet: listed {} tasks, {} stored; not listed {:?}, not stored {:?}",
                    seen_set.len(),
                    stored.len(),
                    stored.difference(&seen_set).collect::<Vec<_>>(),
                    seen_set.difference(&stored).collect::<Vec<_>>()
                ));
            }
        }
    }
    if v.len() > 15 {
        let more = v.len() - 15;
        v.truncate(15);
        v.push(format!("… and {more} more paging problems"));
    }
    v
}

/// One pass over `instance`'s background tasks, `limit` a page.
pub async fn page_through(api: &Api, instance: &str, limit: u64, quiet: bool) -> Pass {
    let started = Instant::now();
    let mut pass =
        Pass { instance: instance.to_owned(), limit, started, ended: started, pages: vec![], complete: false, quiet };
    let mut start = 1;
    while pass.pages.len() < 1_000 {
        let path = format!("/v2/{PROJECT}/instances/{instance}/tasks?start={start}&limit={limit}");
        let sent = Instant::now();
        let Ok(r) = api.send("GET", &path, None).await else { break };
        if r.status != 200 {
            break;
        }
        let body = r.json();
        let task_count =
            body["task_count"].as_str().and_then(|s| s.parse().ok()).or_else(|| body["task_count"].as_u64());
        let ids: Vec<String> = body["tasks"]
            .as_array()
            .map(|ts| ts.iter().filter_map(|t| t["id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let n = ids.len() as u64;
        pass.pages.push(Page { start, sent, task_count, ids });
        pass.ended = Instant::now();
        if n < limit {
            pass.complete = true;
            break;
        }
        start += limit;
    }
    pass
}

/// Which instance to page through next (`None`: none yet).
pub type Pick = Arc<dyn Fn(&mut Rng) -> Option<String> + Send + Sync>;

/// Pages through the instances `pick` offers until the stop, waiting out the kills; then makes
/// one quiet pass over each instance it paged.
pub async fn pager(
    mut servers: watch::Receiver<Vec<Api>>,
    pick: Pick,
    stop: watch::Receiver<bool>,
    mut rng: Rng,
) -> Vec<Pass> {
    let mut passes = vec![];
    while !*stop.borrow() {
        let api = servers.borrow().first().cloned();
        let (Some(api), Some(inst)) = (api, pick(&mut rng)) else {
            tokio::select! {
                _ = servers.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            continue;
        };
        passes.push(page_through(&api, &inst, rng.range(2, 9), false).await);
        tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
    }
    let api = servers.borrow().first().cloned();
    if let Some(api) = api {
        let paged: HashSet<String> = passes.iter().map(|p| p.instance.clone()).collect();
        for inst in paged {
            passes.push(page_through(&api, &inst, rng.range(2, 9), true).await);
        }
    }
    passes
}
