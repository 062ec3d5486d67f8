//! The pruner: removes the finished task records a project's retention policy no longer keeps
//! ([`crate::domain::retention`] decides which), in small batches with a pause between them,
//! in one process at a time (a lease row in the database, renewed per batch), each batch one
//! transaction with its counts and one audit event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::retention::{PRUNE_ACTION, PruneRule, RetentionPolicy};
use crate::domain::{Clock, InstanceId, ProjectId};
use crate::storage::{AuditEvent, RetentionStore, StoreResult};

/// How long the pruning lease lasts without renewal; a pruner renews it before each batch.
pub const LEASE: Duration = Duration::from_secs(30);
/// Instances read per page while walking them.
const INSTANCE_PAGE: u64 = 200;

#[derive(Debug, Clone)]
pub struct PrunerConfig {
    /// The policy of projects that have not set their own.
    pub defaults: RetentionPolicy,
    /// Time between pruning rounds.
    pub interval: Duration,
    /// Most records removed per transaction.
    pub batch: u64,
    /// Pause between two batches, so that API writes get the database between them.
    pub pause: Duration,
}

/// What one round removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub by_age: u64,
    pub by_cap: u64,
    pub batches: u64,
}

pub struct Pruner {
    store: Arc<dyn RetentionStore>,
    config: PrunerConfig,
    clock: Clock,
    owner: String,
}

impl Pruner {
    pub fn new(store: Arc<dyn RetentionStore>, config: PrunerConfig, clock: Clock) -> Self {
        let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        Pruner { store, config, clock, owner }
    }

    /// Prunes every `interval` until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.interval) => {}
                _ = shutdown.changed() => {}
                // Moved forward (test control), records age at once.
                _ = self.clock.moved() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            match self.round(&shutdown).await {
                Ok(p) if p.batches > 0 => {
                    tracing::info!(by_age = p.by_age, by_cap = p.by_cap, batches = p.batches, "pruned task records")
                }
                Ok(_) => {}
                Err(e) => crate::limited!(warn, "retention round", error = %e, "pruning failed; retried next round"),
            }
        }
        let _ = self.store.release_prune_lease(&self.owner).await;
    }

    /// Holds (or renews) the lease; `false` when another process prunes now.
    async fn lease(&self) -> StoreResult<bool> {
        let now = self.clock.now();
        self.store.take_prune_lease(&self.owner, now, now.after(LEASE)).await
    }

    /// One pass over every instance, if this process holds the lease.
    pub async fn round(&self, shutdown: &watch::Receiver<bool>) -> StoreResult<Pruned> {
        let mut pruned = Pruned::default();
        // Nothing to prune anywhere: no write at all (an idle service stays idle).
        if !self.config.defaults.prunes() && !self.store.has_retention_policies().await? {
            return Ok(pruned);
        }
        if !self.lease().await? {
            return Ok(pruned);
        }
        let mut policies: HashMap<ProjectId, RetentionPolicy> = HashMap::new();
        let mut after: Option<InstanceId> = None;
        'walk: loop {
            let page = self.store.instances_after(after.as_ref(), INSTANCE_PAGE).await?;
            let full = page.len() as u64 == INSTANCE_PAGE;
            for (instance, project) in page {
                if *shutdown.borrow() {
                    break 'walk;
                }
                let policy = match policies.get(&project) {
                    Some(p) => p.clone(),
                    None => {
                        let p =
                            self.store.get_retention(&project).await?.unwrap_or_else(|| self.config.defaults.clone());
                        policies.insert(project.clone(), p.clone());
                        p
                    }
                };
                if policy.prunes() && !self.instance(&instance, &project, &policy, &mut pruned).await? {
                    break 'walk;
                }
                after = Some(instance);
            }
            if !full {
                break;
            }
        }
        self.store.release_prune_lease(&self.owner).await?;
        Ok(pruned)
    }

    /// Applies the age rule, then the cap, to one instance. `false` when the lease was lost.
    async fn instance(
        &self,
        instance: &InstanceId,
        project: &ProjectId,
        policy: &RetentionPolicy,
        pruned: &mut Pruned,
    ) -> StoreResult<bool> {
        let batch = self.config.batch.max(1);
        let now = self.clock.now_ms();
        if let Some(bound) = policy.scan_bound(now) {
            let mut cursor = None;
            loop {
                let page = self.store.finished_tasks(instance, bound, cursor.clone(), batch).await?;
                let full = page.len() as u64 == batch;
                cursor = page.last().map(|c| (c.created_at, c.id.clone()));
                let doomed: Vec<_> = page.into_iter().filter(|c| policy.expired(c, now)).collect();
                if !doomed.is_empty() {
                    match self.batch(instance, project, doomed, PruneRule::Age).await? {
                        None => return Ok(false),
                        Some(n) => pruned.by_age += n,
                    }
                    pruned.batches += 1;
                }
                if !full {
                    break;
                }
            }
        }
        let mut left = policy.excess(self.store.finished_count(instance).await?);
        while left > 0 {
            let oldest = self.store.finished_tasks(instance, i64::MAX, None, left.min(batch)).await?;
            if oldest.is_empty() {
                break;
            }
            let n = match self.batch(instance, project, oldest, PruneRule::Cap).await? {
                None => return Ok(false),
                Some(n) => n,
            };
            pruned.by_cap += n;
            pruned.batches += 1;
            if n == 0 {
                // Every one changed or is held by another transaction: the next round sees.
                break;
            }
            left = left.saturating_sub(n);
        }
        Ok(true)
    }

    /// One batch: renews the lease, removes what is still removable, pauses. `None` when the
    /// lease went to another process.
    async fn batch(
        &self,
        instance: &InstanceId,
        project: &ProjectId,
        tasks: Vec<crate::storage::Candidate>,
        rule: PruneRule,
    ) -> StoreResult<Option<u64>> {
        if !self.lease().await? {
            return Ok(None);
        }
        let event = AuditEvent {
            at: self.clock.now_ms(),
            request_id: uuid::Uuid::new_v4().simple().to_string(),
            project_id: project.as_str().to_owned(),
            user_id: "retention".to_owned(),
            user_name: "retention".to_owned(),
            access_key: None,
            action: PRUNE_ACTION.to_owned(),
            target: instance.as_str().to_owned(),
            status: 200,
            detail: None,
        };
        let n = self.store.prune_tasks(instance, tasks, rule, event).await?;
        if !self.config.pause.is_zero() {
            tokio::time::sleep(self.config.pause).await;
        }
        Ok(Some(n))
    }
}
