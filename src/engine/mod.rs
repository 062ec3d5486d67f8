//! The engine: in-process workers that run tasks through their steps.
//!
//! A dispatcher leases due tasks from the store (new tasks, scheduled tasks whose time has come,
//! and running tasks whose lease expired because their process died) and runs each in its own
//! tokio task, sleeping through each step's planned duration and recording the step's end in
//! the store. Every write is conditional on still holding the lease, so a task taken over by
//! another worker is never advanced twice. A renewer keeps the leases of running tasks alive.
//!
//! An operation the executor file names has its steps run by an executor instead
//! ([`crate::executor`]; [`run_executed`](Engine::run_executed)): each step begins an attempt
//! (one more when a step is begun again after a crash), runs until the executor ends it, fails
//! it, or the operation's timeout passes, and only then is its end recorded, as for a simulated
//! step.

pub mod retention;
pub mod sampler;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::domain::operation::StepContext;
use crate::domain::{Clock, TaskRecord, Timestamp};
use crate::executor::Executors;
use crate::storage::{Claimed, EngineStore, InstanceStore, RunStore, StepOutcome};
use crate::telemetry;

mod executed;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a lease lasts without renewal; a dead process's tasks are taken over after it.
    pub lease: Duration,
    /// How often to look for due work when nothing wakes the engine.
    pub poll_ms: u64,
    /// Tasks run at once by this process.
    pub max_in_flight: usize,
    pub step_context: StepContext,
    /// The service's clock: what is due, leases and step times are read from it.
    pub clock: Clock,
}

pub struct Engine {
    store: Arc<dyn EngineStore>,
    owner: String,
    config: EngineConfig,
    wake: Arc<Notify>,
    executors: Option<ExecutorDeps>,
    /// Test control (`serve --test-control`): fault rules that fail or stretch steps.
    control: Option<Arc<crate::control::TestControl>>,
}

pub use executed::ENGINE_USER;

/// What running executors needs beyond the work queue.
struct ExecutorDeps {
    executors: Arc<Executors>,
    runs: Arc<dyn RunStore>,
    instances: Arc<dyn InstanceStore>,
    /// Connected mode: the bindings, and the key that opens their sealed passwords.
    connected: Option<(
        Arc<dyn crate::storage::ClusterStore>,
        crate::auth::keys::MasterKey,
        Arc<crate::domain::cluster::ClusterPolicy>,
    )>,
}

impl Engine {
    pub fn new(store: Arc<dyn EngineStore>, config: EngineConfig, wake: Arc<Notify>) -> Self {
        let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        Engine { store, owner, config, wake, executors: None, control: None }
    }

    /// Runs the operations `executors` names with their executors (the others stay simulated).
    pub fn with_executors(
        mut self,
        executors: Arc<Executors>,
        runs: Arc<dyn RunStore>,
        instances: Arc<dyn InstanceStore>,
    ) -> Self {
        self.executors = Some(ExecutorDeps { executors, runs, instances, connected: None });
        self
    }

    /// Lets test control's fault rules fail or stretch simulated steps.
    pub fn with_test_control(mut self, control: Arc<crate::control::TestControl>) -> Self {
        self.control = Some(control);
        self
    }

    /// Does the operations of instances bound to a Kafka cluster on that cluster (connected
    /// mode; see [`crate::executor::kafka`]). Needs [`with_executors`](Self::with_executors) first.
    pub fn with_clusters(
        mut self,
        clusters: Arc<dyn crate::storage::ClusterStore>,
        master: crate::auth::keys::MasterKey,
        policy: Arc<crate::domain::cluster::ClusterPolicy>,
    ) -> Self {
        if let Some(deps) = &mut self.executors {
            deps.connected = Some((clusters, master, policy));
        }
        self
    }

    /// The `kafka` executor for a task of an instance bound to a cluster; `None` for an unbound
    /// one, and for the deletion of an instance (which unbinds it and never touches the cluster).
    /// A store that cannot answer is asked again: a bound instance's operation must never be
    /// simulated instead.
    async fn bound_executor(
        &self,
        deps: &ExecutorDeps,
        task: &TaskRecord,
        op: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Arc<crate::executor::Executor>> {
        let (clusters, master, policy) = deps.connected.as_ref()?;
        if op == "deleteInstance" || op == "createInstance" {
            return None;
        }
        loop {
            match clusters.get_binding(&task.project_id, &task.instance_id).await {
                Ok(None) => return None,
                Ok(Some(stored)) => {
                    let timeout = deps.executors.get(op).map_or(crate::executor::kafka::STEP_TIMEOUT, |e| e.timeout);
                    let spec = crate::executor::kafka::Spec {
                        stored,
                        master: master.clone(),
                        policy: policy.clone(),
                        timeout,
                    };
                    return Some(Arc::new(crate::executor::Executor {
                        kind: crate::executor::Kind::Kafka(spec),
                        timeout,
                    }));
                }
                Err(e) => {
                    crate::limited!(warn, &format!("binding {e}"), error = %e, "could not read the instance's cluster binding; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = crate::executor::stopped(shutdown) => return None,
                    }
                }
            }
        }
    }

    /// Runs until `shutdown` turns true, then stops its tasks and gives back their leases so
    /// that they resume at once in whichever process runs next.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.config.max_in_flight));
        let mut running = JoinSet::new();
        let renewer = tokio::spawn(this.clone().renew_forever());
        tracing::info!(owner = %this.owner, "engine started");
        let mut clock_moves = this.config.clock.moves();
        loop {
            if *shutdown.borrow() {
                break;
            }
            // A clock moved forward (test control) must not make this process's own leases look
            // expired to its next claim: they are renewed at the new time first.
            if this.config.clock.moves() != clock_moves {
                clock_moves = this.config.clock.moves();
                this.renew().await;
            }
            while running.try_join_next().is_some() {}
            let free = slots.available_permits();
            let mut claimed_all = false;
            if free > 0 {
                let want = free.min(256);
                match this.store.claim(&this.owner, this.now(), this.config.lease, want, this.config.step_context).await
                {
                    Ok(batch) => {
                        claimed_all = batch.len() == want;
                        for c in batch {
                            telemetry::claimed(!c.started, c.task.schedule_at.is_some());
                            let Ok(permit) = slots.clone().acquire_owned().await else {
                                break;
                            };
                            let me = this.clone();
                            let stop = shutdown.clone();
                            running.spawn(async move {
                                me.run_task(c, stop).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => {
                        crate::limited!(error, &format!("claim {e}"), error = %e, "could not claim tasks");
                    }
                }
            }
            if claimed_all {
                continue;
            }
            tokio::select! {
                _ = this.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(this.config.poll_ms)) => {}
                _ = shutdown.changed() => {}
                _ = slots.clone().acquire_owned(), if free == 0 => {}
            }
        }
        // Executors are stopped (their process groups signalled) and simulated steps stop
        // sleeping as soon as `shutdown` turns; give them that long, then stop what is left.
        let grace = self_grace(&this);
        let drained = tokio::time::timeout(grace, async { while running.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("tasks still running after the shutdown grace period; stopping them");
        }
        running.shutdown().await;
        renewer.abort();
        if let Err(e) = this.store.release_leases(&this.owner).await {
            tracing::warn!(error = %e, "could not release leases; they expire on their own");
        }
        tracing::info!("engine stopped");
    }

    fn now_ms(&self) -> i64 {
        self.config.clock.now_ms()
    }

    fn now(&self) -> Timestamp {
        self.config.clock.now()
    }

    /// How often leases are renewed (and checked): a third of the lease, at least 50 ms.
    fn renew_every(&self) -> Duration {
        (self.config.lease / 3).max(Duration::from_millis(50))
    }

    async fn renew_forever(self: Arc<Self>) {
        let every = self.renew_every();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.config.clock.moved() => {}
            }
            self.renew().await;
        }
    }

    async fn renew(&self) {
        if let Err(e) = self.store.renew_leases(&self.owner, self.now() + self.config.lease).await {
            crate::limited!(warn, &format!("renew {e}"), error = %e, "could not renew leases");
        }
    }

    async fn run_task(&self, c: Claimed, shutdown: watch::Receiver<bool>) {
        let span = tracing::info_span!("task", task_id = %c.task.id, name = %c.task.name);
        let _running = telemetry::RunningStep::new();
        self.run_steps(c, shutdown).instrument(span).await
    }

    async fn run_steps(&self, c: Claimed, mut shutdown: watch::Receiver<bool>) {
        let Claimed { task, operation, step: mut current, started, ended, reason, bound } = c;
        let op = operation.task_name();
        // Step events at debug level: enough to prove, from the logs of every process, that no
        // step ever ran in two places at once (see tests/cluster).
        tracing::debug!(task_id = %task.id, owner = %self.owner, started, at = self.now_ms(), "task claimed");
        if let Some(status) = ended {
            telemetry::task_ended(op, status);
            match reason {
                Some(reason) => {
                    tracing::warn!(status = status.as_str(), %reason, "task refused: its operation no longer applies")
                }
                None => tracing::info!(status = status.as_str(), "task ended"),
            }
            return;
        }
        if let Some(deps) = &self.executors {
            // The executed paths are boxed: their state is large, and every simulated task's future
            // would carry it (and tokio would copy it at each spawn) if they were inline.
            if bound {
                if let Some(executor) = Box::pin(self.bound_executor(deps, &task, op, &mut shutdown)).await {
                    return Box::pin(self.run_executed(deps, executor, task, operation, current, shutdown)).await;
                }
                if *shutdown.borrow() {
                    return;
                }
            }
            if let Some(executor) = deps.executors.get(op) {
                return Box::pin(self.run_executed(deps, executor, task, operation, current, shutdown)).await;
            }
        }
        loop {
            let Some(step) = task.steps.get(current) else {
                return;
            };
            tracing::debug!(task_id = %task.id, owner = %self.owner, step = current, at = self.now_ms(), "step started");
            let step_started = std::time::Instant::now();
            let plan = match &self.control {
                Some(c) => c.plan_step(&task, current, step.duration_ms),
                None => crate::control::StepPlan { duration_ms: step.duration_ms, fail: None },
            };
            if plan.duration_ms > 0 {
                // On the service's clock: moving it (test control) ends the step's wait.
                let until = self.now().after(Duration::from_millis(plan.duration_ms));
                let moves = self.config.clock.moves();
                tokio::select! {
                    _ = self.config.clock.sleep_until(until) => {}
                    // The lease is handed back as the engine stops; the step runs again elsewhere.
                    _ = crate::executor::stopped(&mut shutdown) => return,
                }
                if self.config.clock.moves() != moves {
                    // Moved past the lease's end too: renewed at the new time before the write
                    // that needs it.
                    self.renew().await;
                }
            }
            let outcome = match (&self.control, plan.fail) {
                (Some(c), Some((rule, reason))) => c.fail_step(&self.owner, &task, current, rule, &reason).await,
                _ => self.finish(&task, current).await,
            };
            if !matches!(outcome, StepOutcome::Lost) {
                telemetry::step_done(&operation, op, &step.name, step_started.elapsed());
            }
            match self.after_step(op, &task, current, outcome) {
                Some(n) => current = n,
                None => return,
            }
        }
    }

    /// Records the end of step `current`, retrying while the store is unavailable (the lease
    /// keeps the task ours meanwhile).
    async fn finish(&self, task: &TaskRecord, current: usize) -> StepOutcome {
        loop {
            match self
                .store
                .finish_step(&self.owner, &task.id, current, self.now(), self.config.lease, self.config.step_context)
                .await
            {
                Ok(o) => return o,
                Err(e) => {
                    crate::limited!(
                        warn,
                        &format!("record step {e}"),
                        error = %e,
                        step = current,
                        "could not record step; retrying"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Logs and counts a recorded step end; the step to go on with, if any.
    fn after_step(&self, op: &'static str, task: &TaskRecord, current: usize, outcome: StepOutcome) -> Option<usize> {
        let outcome_name = match outcome {
            StepOutcome::Next(_) => "completed",
            StepOutcome::Ended(status) => status.as_str(),
            StepOutcome::Lost => "lost",
        };
        tracing::debug!(task_id = %task.id, owner = %self.owner, step = current, at = self.now_ms(), outcome = outcome_name, "step ended");
        match outcome {
            StepOutcome::Next(n) => Some(n),
            StepOutcome::Ended(status) => {
                telemetry::task_ended(op, status);
                tracing::info!(status = status.as_str(), "task ended");
                None
            }
            StepOutcome::Lost => {
                tracing::warn!("lease lost; another worker has the task");
                None
            }
        }
    }
}

/// How long the engine waits for its tasks to stop at shutdown: an executor's grace between
/// SIGTERM and SIGKILL, and a little more to record nothing and hand the lease back.
fn self_grace(engine: &Engine) -> Duration {
    let kill = engine.executors.as_ref().map_or(Duration::ZERO, |d| d.executors.kill_grace);
    kill + Duration::from_secs(2)
}
