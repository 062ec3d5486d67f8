//! Steps an executor runs ([`crate::executor`]): the engine begins each attempt, relays what the
//! executor reports, enforces the operation's timeout, stops the executor at shutdown, and
//! records the step's end (or the task's failure) under its lease, exactly as a simulated step's.

use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::*;
use crate::domain::operation::Operation;
use crate::executor::{Event, Executor, Outcome, StepRun, webhook};
use crate::storage::{AuditEvent, Report};

/// The audit action of a step an executor failed.
pub const FAILED_ACTION: &str = "kafka-tasks:executor:failStep";
pub use crate::domain::ENGINE_USER;

/// Progress is written at most this often per run; what comes between is merged (the last
/// percentage and message win), so that a chatty program costs a few writes a second, not one
/// per line.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// Progress reported but not written yet.
#[derive(Default)]
struct Pending {
    report: Option<Report>,
    written: Option<tokio::time::Instant>,
}

impl Pending {
    fn merge(&mut self, progress: Option<u32>, message: Option<String>) {
        let r = self.report.get_or_insert_with(Report::default);
        if progress.is_some() {
            r.progress = progress;
        }
        if message.is_some() {
            r.message = message;
        }
    }

    /// When the pending report may be written.
    fn due(&self) -> tokio::time::Instant {
        self.written.map_or_else(tokio::time::Instant::now, |w| w + REPORT_EVERY)
    }
}

/// Why the engine stopped a run before it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Timeout,
    Shutdown,
    /// The task ended or the lease was lost while a per-task program reported its way on.
    Over,
}

/// What an executor's event led to.
enum Moved {
    Stay,
    /// A per-task program moved on to another step: its timeout starts again.
    On,
    Over,
}

impl Engine {
    pub(super) async fn run_executed(
        &self,
        deps: &ExecutorDeps,
        executor: Arc<crate::executor::Executor>,
        task: TaskRecord,
        operation: Operation,
        mut current: usize,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let op = operation.task_name();
        let kind = executor.kind_name();
        let Some(instance) = self.instance_json(deps, &task, &mut shutdown).await else {
            return;
        };
        let names: Vec<&str> = task.steps.iter().map(|s| s.name.as_str()).collect();
        loop {
            let Some(step) = task.steps.get(current) else {
                return;
            };
            let token = matches!(executor.kind, crate::executor::Kind::Webhook(_))
                .then(|| hex::encode(crate::auth::keys::random_bytes::<32>()));
            let Some(attempt) = self.begin(deps, &task, current, token.as_deref(), &mut shutdown).await else {
                tracing::warn!("lease lost before the step began; another worker has the task");
                return;
            };
            tracing::info!(step = %step.name, attempt, executor = kind, "executor run started");
            tracing::debug!(task_id = %task.id, owner = %self.owner, step = current, attempt, at = self.now_ms(), "step started");
            let started = Instant::now();
            let req = StepRun {
                task: &task,
                instance: &instance,
                operation: op,
                step: current,
                step_name: &step.name,
                steps: names.clone(),
                attempt,
                token: token.as_deref(),
                runs: deps.runs.as_ref(),
                owner: &self.owner,
                clock: &self.config.clock,
                poll: Duration::from_millis(self.config.poll_ms.clamp(20, 1000)),
                kill_grace: deps.executors.kill_grace,
                lease: self.config.lease.max(Duration::from_millis(1)),
            };
            let (events_tx, mut events) = mpsc::channel(64);
            let (stop_tx, stop_rx) = watch::channel(false);
            let run = executor.run(&req, events_tx, stop_rx);
            tokio::pin!(run);
            let deadline = tokio::time::sleep(executor.timeout);
            tokio::pin!(deadline);
            let mut why = None;
            let mut at = current;
            let mut watch_stop = shutdown.clone();
            let mut pending = Pending::default();
            // The lease is checked as often as it is renewed: a task another process took over
            // (this one was paused, or cut off from the database) has its executor stopped.
            let mut lease_check = tokio::time::interval(self.renew_every());
            lease_check.tick().await;
            let outcome = loop {
                tokio::select! {
                    o = &mut run => break o,
                    Some(event) = events.recv(), if why.is_none() => {
                        match self.on_event(deps, &executor, op, &task, &mut at, event, &mut watch_stop, &mut pending).await {
                            Moved::Stay => {}
                            Moved::On => deadline.as_mut().reset(tokio::time::Instant::now() + executor.timeout),
                            Moved::Over => {
                                why = Some(Why::Over);
                                let _ = stop_tx.send(true);
                            }
                        }
                    }
                    _ = tokio::time::sleep_until(pending.due()), if pending.report.is_some() && why.is_none() => {
                        self.flush(deps, &task, at, &mut pending).await;
                    }
                    _ = lease_check.tick(), if why.is_none() => {
                        if let Ok(false) = deps.runs.holds_lease(&self.owner, &task.id, self.now()).await {
                            tracing::warn!(step = at, attempt, "the lease was lost while the executor ran; stopping it");
                            why = Some(Why::Over);
                            let _ = stop_tx.send(true);
                        }
                    }
                    _ = &mut deadline, if why.is_none() => {
                        why = Some(Why::Timeout);
                        let _ = stop_tx.send(true);
                    }
                    _ = crate::executor::stopped(&mut shutdown), if why.is_none() => {
                        why = Some(Why::Shutdown);
                        let _ = stop_tx.send(true);
                    }
                }
            };
            while let Ok(event) = events.try_recv() {
                if why.is_none()
                    && matches!(
                        self.on_event(deps, &executor, op, &task, &mut at, event, &mut watch_stop, &mut pending).await,
                        Moved::Over
                    )
                {
                    why = Some(Why::Over);
                }
            }
            if why != Some(Why::Over) {
                pending.written = None;
                self.flush(deps, &task, at, &mut pending).await;
            }
            current = at;
            let step_name = task.steps.get(current).map_or("", |s| s.name.as_str());
            let took = started.elapsed();
            let (label, next) = match (outcome, why) {
                (_, Some(Why::Over)) => ("lost", None),
                (Outcome::Done { tail }, _) => {
                    tracing::info!(step = %step_name, attempt, took_ms = took.as_millis() as u64, "executor run succeeded");
                    let report = Report { output_tail: Some(tail), ..Report::default() };
                    if let Err(e) = deps.runs.report(&self.owner, &task.id, current, report, self.now()).await {
                        tracing::warn!(error = %e, "could not keep the executor's output");
                    }
                    telemetry::step_done(&operation, op, step_name, took);
                    ("success", self.finish_run(op, &task, current, executor.per_task()).await)
                }
                (Outcome::Failed { reason, tail }, _) => {
                    tracing::warn!(step = %step_name, attempt, %reason, "executor run failed");
                    ("failure", self.fail(deps, op, kind, &task, current, attempt, reason, tail).await)
                }
                (Outcome::Stopped { tail }, Some(Why::Timeout)) => {
                    let reason = format!("step {step_name} timed out after {} s", executor.timeout.as_secs());
                    tracing::warn!(step = %step_name, attempt, %reason, "executor run timed out");
                    ("timeout", self.fail(deps, op, kind, &task, current, attempt, reason, tail).await)
                }
                (Outcome::Stopped { .. }, _) => {
                    tracing::info!(step = %step_name, attempt, "executor stopped by the shutdown; the lease is handed back");
                    ("stopped", None)
                }
            };
            telemetry::executor_run(op, kind, label, took);
            match next {
                Some(n) => current = n,
                None => return,
            }
        }
    }

    /// Relays one event of the executor running step `*at`.
    #[allow(clippy::too_many_arguments)]
    async fn on_event(
        &self,
        deps: &ExecutorDeps,
        executor: &Executor,
        op: &'static str,
        task: &TaskRecord,
        at: &mut usize,
        event: Event,
        shutdown: &mut watch::Receiver<bool>,
        pending: &mut Pending,
    ) -> Moved {
        match event {
            Event::Progress { progress, message } => {
                pending.merge(progress, message);
                if pending.due() <= tokio::time::Instant::now() {
                    self.flush(deps, task, *at, pending).await;
                }
                Moved::Stay
            }
            Event::Step(name) if executor.per_task() => {
                let Some(target) = task.steps.iter().position(|s| s.name == name).filter(|t| *t > *at) else {
                    tracing::warn!(step = %name, "an executor named a step that is not ahead of the running one; ignored");
                    return Moved::Stay;
                };
                // What was reported belongs to the step that ends now.
                pending.written = None;
                self.flush(deps, task, *at, pending).await;
                while *at < target {
                    let outcome = self.finish(task, *at).await;
                    match self.after_step(op, task, *at, outcome) {
                        Some(n) => *at = n,
                        None => return Moved::Over,
                    }
                    if self.begin(deps, task, *at, None, shutdown).await.is_none() {
                        return Moved::Over;
                    }
                }
                Moved::On
            }
            Event::Step(name) => {
                tracing::debug!(step = %name, "a step change reported by a per-step program; ignored");
                Moved::Stay
            }
        }
    }

    /// Writes the pending progress of step `at`, if any.
    async fn flush(&self, deps: &ExecutorDeps, task: &TaskRecord, at: usize, pending: &mut Pending) {
        let Some(report) = pending.report.take() else {
            return;
        };
        pending.written = Some(tokio::time::Instant::now());
        if let Err(e) = deps.runs.report(&self.owner, &task.id, at, report, self.now()).await {
            crate::limited!(warn, &format!("report {e}"), error = %e, "could not record an executor's progress");
        }
    }

    /// Records a run's success: step `current` ends, and with a per-task program every step after
    /// it. The step to run next, if any.
    async fn finish_run(
        &self,
        op: &'static str,
        task: &TaskRecord,
        mut current: usize,
        per_task: bool,
    ) -> Option<usize> {
        loop {
            let outcome = self.finish(task, current).await;
            let next = self.after_step(op, task, current, outcome)?;
            if !per_task {
                return Some(next);
            }
            current = next;
        }
    }

    /// Fails the task at step `current`, with `reason` kept with it and in the audit trail.
    #[allow(clippy::too_many_arguments)]
    async fn fail(
        &self,
        deps: &ExecutorDeps,
        op: &'static str,
        kind: &'static str,
        task: &TaskRecord,
        current: usize,
        attempt: u32,
        reason: String,
        tail: String,
    ) -> Option<usize> {
        let step = task.steps.get(current).map_or("", |s| s.name.as_str());
        loop {
            let now = self.now_ms();
            let audit = AuditEvent {
                at: now,
                request_id: String::new(),
                project_id: task.project_id.as_str().to_owned(),
                user_id: String::new(),
                user_name: ENGINE_USER.to_owned(),
                access_key: None,
                action: FAILED_ACTION.to_owned(),
                target: task.id.as_str().to_owned(),
                status: 0,
                detail: Some(json!({
                    "instance_id": task.instance_id.as_str(),
                    "operation": op,
                    "executor": kind,
                    "step": step,
                    "attempt": attempt,
                    "reason": crate::executor::cut(&reason, crate::executor::REASON_TAIL),
                })),
            };
            match deps
                .runs
                .fail_step(&self.owner, &task.id, current, Timestamp::from_ms(now), reason.clone(), tail.clone(), audit)
                .await
            {
                Ok(outcome) => return self.after_step(op, task, current, outcome),
                Err(e) => {
                    crate::limited!(warn, &format!("fail step {e}"), error = %e, "could not record a failed step; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Begins an attempt at step `current` (retrying while the store is unavailable); `None`
    /// when the lease is lost or the engine stops meanwhile.
    async fn begin(
        &self,
        deps: &ExecutorDeps,
        task: &TaskRecord,
        current: usize,
        token: Option<&str>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<u32> {
        let hash = token.map(webhook::token_hash);
        loop {
            match deps.runs.begin_attempt(&self.owner, &task.id, current, hash.clone(), self.now()).await {
                Ok(attempt) => return attempt,
                Err(e) => {
                    crate::limited!(warn, &format!("begin attempt {e}"), error = %e, "could not begin a step; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = crate::executor::stopped(shutdown) => return None,
                    }
                }
            }
        }
    }

    /// The task's instance as ShowInstance shows it (`null` if it is gone); `None` when the
    /// engine stops before the store answers.
    async fn instance_json(
        &self,
        deps: &ExecutorDeps,
        task: &TaskRecord,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Value> {
        loop {
            match deps.instances.get_instance(&task.project_id, &task.instance_id).await {
                Ok(i) => return Some(i.map_or(Value::Null, |i| instance_json(&i))),
                Err(e) => {
                    crate::limited!(warn, &format!("executor instance {e}"), error = %e, "could not read the instance; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = crate::executor::stopped(shutdown) => return None,
                    }
                }
            }
        }
    }
}

/// The instance as ShowInstance / ListInstances return it: what the engine hands to executors.
fn instance_json(inst: &crate::domain::instance::Instance) -> Value {
    serde_json::to_value(crate::wire::instance::InstanceJson::from(inst)).unwrap_or(Value::Null)
}
