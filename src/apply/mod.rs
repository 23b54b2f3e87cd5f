//! Apply: walk a plan's [`ActionGraph`] with bounded parallelism, calling providers
//! and checkpointing state after every step.
//!
//! # Expected flow
//!
//! The caller holds the lock of every tenant in the plan and has checked that each
//! state is the one the plan was made against. The walk starts every step whose
//! dependencies are done, at most `parallelism` at a time. Before a create it records
//! the resource as `creating`; after every finished step it writes the tenant's state.
//! When the graph is drained, each *new* tenant in which a step failed is rolled back:
//! a delete plan of everything its state now holds, walked the same way.
//!
//! # Guarantees
//!
//! - Dependents start only after their dependencies finished; deletes run in reverse
//!   dependency order.
//! - After a crash at any instant (`kill -9`), state names every resource that may
//!   exist: created ones as `created`, ones whose create was under way as `creating`.
//!   The next run resumes such a create and accepts the resource it finds, so nothing
//!   is orphaned and nothing is created twice.
//! - A create that fails because the name is taken by something else leaves no record,
//!   so that a rollback never deletes what is not ours.
//! - A failed step skips everything that depends on it; independent steps go on
//!   (other tenants are not held back by one tenant's failure).
//! - A new tenant is all-or-nothing: if any of its steps fails, every resource it got
//!   in this run is deleted again, unless rollback is disabled. If the rollback fails
//!   too, state keeps what is left, so that a retry (apply or destroy) finishes it.
//! - On interrupt, no new step starts; steps in flight finish and are checkpointed.
//!
//! # Assumptions
//!
//! - Providers keep the contract in [`crate::provider`]: idempotent deletes, "not
//!   found" as an answer, `AlreadyExists` only when nothing was changed.
//! - Nobody else changes the tenant's resources while the run holds its lock.
//!
//! # Caveats
//!
//! - An update that fails half-way leaves the resource between old and new; state
//!   keeps the old attributes and the next plan (with refresh) shows what is left.
//! - Rollback applies only to tenants that had nothing before the run. Changes to an
//!   existing tenant are not undone (as in Terraform); the next apply converges.

pub mod rollback;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use petgraph::graph::NodeIndex;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::plan::graph::{ActionGraph, StepKind};
use crate::plan::{Plan, PlanError};
use crate::provider::{CreateMode, ProviderError, ProviderSet};
use crate::resource::{Attributes, ResourceAddress, TenantId, schema};
use crate::state::{ResourceState, ResourceStatus, StateError, StateLock, StateStore, TenantState};

/// How an apply runs.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Steps in flight at once.
    pub parallelism: usize,
    /// Undo a new tenant whose provisioning failed part way.
    pub rollback: bool,
    /// Cancelled on interrupt: no new step starts.
    pub cancel: CancellationToken,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 10,
            rollback: true,
            cancel: CancellationToken::new(),
        }
    }
}

/// Something that happened during an apply, for progress output.
#[derive(Clone, Debug)]
pub enum Progress {
    Started {
        address: ResourceAddress,
        kind: StepKind,
    },
    Finished {
        address: ResourceAddress,
        kind: StepKind,
        elapsed: Duration,
    },
    Failed {
        address: ResourceAddress,
        kind: StepKind,
        error: String,
    },
    RollbackStarted {
        tenant: TenantId,
        resources: usize,
    },
}

/// A callback that receives progress events.
pub type ProgressSink = Arc<dyn Fn(&Progress) + Send + Sync>;

/// What became of one step.
#[derive(Clone, Debug, Serialize)]
pub struct StepRecord {
    pub address: ResourceAddress,
    pub step: &'static str,
    pub outcome: StepOutcome,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepOutcome {
    Done,
    Failed {
        error: String,
        code: String,
    },
    /// Not started: a dependency failed, the tenant is being rolled back, or the run
    /// was interrupted.
    Skipped,
}

/// How a tenant came out of an apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantOutcome {
    Unchanged,
    Applied,
    Failed,
    RolledBack,
    RollbackFailed,
    Interrupted,
}

#[derive(Clone, Debug, Serialize)]
pub struct TenantReport {
    pub tenant: TenantId,
    pub outcome: TenantOutcome,
    pub steps: Vec<StepRecord>,
    /// The rollback's steps, when there was one.
    pub rollback: Vec<StepRecord>,
    pub state_serial: Option<u64>,
}

impl TenantReport {
    /// The first failure, as a sentence.
    pub fn first_error(&self) -> Option<String> {
        self.steps.iter().find_map(|s| match &s.outcome {
            StepOutcome::Failed { error, .. } => Some(format!("{}: {error}", s.address)),
            _ => None,
        })
    }
}

/// What an apply did.
#[derive(Clone, Debug, Serialize)]
pub struct ApplyReport {
    pub tenants: Vec<TenantReport>,
    pub duration_ms: u64,
    pub interrupted: bool,
    /// Provider calls that change something (create, update, delete), rollback included.
    pub mutating_calls: usize,
}

impl ApplyReport {
    pub fn succeeded(&self) -> bool {
        !self.interrupted
            && self
                .tenants
                .iter()
                .all(|t| matches!(t.outcome, TenantOutcome::Applied | TenantOutcome::Unchanged))
    }

    pub fn count(&self, step: &str) -> usize {
        self.tenants
            .iter()
            .flat_map(|t| &t.steps)
            .filter(|s| s.step == step && s.outcome == StepOutcome::Done)
            .count()
    }
}

/// A failure that stops the whole apply (as opposed to a failed step).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot record progress in state, so the apply stopped: {0}")]
    State(#[from] StateError),
    #[error("cannot record progress in state, so the apply stopped after the steps in flight: {0}")]
    Checkpoint(String),
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// One tenant during an apply: its lock, its state, and how it is going.
pub struct TenantRun {
    pub lock: StateLock,
    pub state: TenantState,
    failed: bool,
    halted: bool,
    wrote: bool,
}

impl TenantRun {
    pub fn new(lock: StateLock, state: Option<TenantState>) -> Self {
        let tenant = lock.tenant().clone();
        TenantRun {
            lock,
            state: state.unwrap_or_else(|| TenantState::new(tenant)),
            failed: false,
            halted: false,
            wrote: false,
        }
    }
}

type SharedRun = Arc<Mutex<TenantRun>>;

/// Everything a step needs, shared by all steps of a walk.
struct Walk {
    plan: Arc<Plan>,
    graph: Arc<ActionGraph>,
    runs: Vec<SharedRun>,
    providers: ProviderSet,
    store: StateStore,
    progress: Option<ProgressSink>,
    /// Provider calls that change something.
    calls: Arc<AtomicUsize>,
}

/// Applies `plan` to the tenants in `runs` (keyed by tenant, each holding its lock and
/// the state the plan was made against).
pub async fn apply(
    plan: &Plan,
    mut runs: BTreeMap<TenantId, TenantRun>,
    providers: &ProviderSet,
    store: &StateStore,
    options: &ApplyOptions,
    progress: Option<ProgressSink>,
) -> Result<ApplyReport, ApplyError> {
    let started = Instant::now();
    let graph = ActionGraph::build(plan)?;
    let mut shared: Vec<SharedRun> = Vec::new();
    for t in &plan.tenants {
        let run = runs
            .remove(&t.tenant)
            .expect("the caller locked every tenant of the plan");
        shared.push(Arc::new(Mutex::new(run)));
    }

    // Record the protection flag and the applied spec, even when no resource changes.
    for (i, t) in plan.tenants.iter().enumerate() {
        let has_steps = t.changes.iter().any(|c| c.action.is_change());
        let run = shared[i].clone();
        let spec = t.spec.clone();
        let protected = t.protected;
        let store = store.clone();
        let needs_write = {
            let mut r = run.lock().expect("run lock");
            let differs =
                r.state.protected != protected || (spec.is_some() && r.state.applied_spec != spec);
            r.state.protected = protected;
            if spec.is_some() {
                r.state.applied_spec = spec;
            }
            differs && !has_steps && !r.state.resources.is_empty()
        };
        if needs_write {
            write_state(&store, &run).await?;
        }
    }

    let walk = Walk {
        plan: Arc::new(plan.clone()),
        graph: Arc::new(graph),
        runs: shared.clone(),
        providers: providers.clone(),
        store: store.clone(),
        progress: progress.clone(),
        calls: Arc::new(AtomicUsize::new(0)),
    };
    let records = walk_graph(&walk, options).await?;
    let calls = walk.calls.load(Ordering::SeqCst);

    let mut reports = Vec::new();
    let mut mutating_calls = calls;
    for (i, t) in plan.tenants.iter().enumerate() {
        let run = shared[i].clone();
        let steps = records.get(&i).cloned().unwrap_or_default();
        let (failed, resources) = {
            let r = run.lock().expect("run lock");
            (r.failed, r.state.resources.len())
        };
        let mut outcome = if failed {
            TenantOutcome::Failed
        } else if options.cancel.is_cancelled()
            && steps.iter().any(|s| s.outcome == StepOutcome::Skipped)
        {
            TenantOutcome::Interrupted
        } else if steps.is_empty() {
            TenantOutcome::Unchanged
        } else {
            TenantOutcome::Applied
        };
        let mut rollback_steps = Vec::new();
        if failed && t.new_tenant && options.rollback && !options.cancel.is_cancelled() {
            if let Some(p) = &progress {
                p(&Progress::RollbackStarted {
                    tenant: t.tenant.clone(),
                    resources,
                });
            }
            let (steps, calls, ok) = rollback::run(
                &t.tenant,
                run.clone(),
                providers,
                store,
                options,
                progress.clone(),
            )
            .await?;
            rollback_steps = steps;
            mutating_calls += calls;
            outcome = if ok {
                TenantOutcome::RolledBack
            } else {
                TenantOutcome::RollbackFailed
            };
        }
        let serial = finish_tenant(store, &run).await?;
        reports.push(TenantReport {
            tenant: t.tenant.clone(),
            outcome,
            steps,
            rollback: rollback_steps,
            state_serial: serial,
        });
    }
    Ok(ApplyReport {
        tenants: reports,
        duration_ms: started.elapsed().as_millis() as u64,
        interrupted: options.cancel.is_cancelled(),
        mutating_calls,
    })
}

/// Removes the state file of a tenant left with nothing; returns the final serial.
async fn finish_tenant(store: &StateStore, run: &SharedRun) -> Result<Option<u64>, StateError> {
    let store = store.clone();
    let run = run.clone();
    tokio::task::spawn_blocking(move || {
        let r = run.lock().expect("run lock");
        if r.state.resources.is_empty() {
            if r.wrote || store.path_of(&r.state.tenant).exists() {
                store.remove(&r.lock, &r.state.tenant)?;
            }
            Ok(None)
        } else {
            Ok(Some(r.state.serial))
        }
    })
    .await
    .expect("state task does not panic")
}

/// Walks the graph; returns the step records per tenant index.
async fn walk_graph(
    walk: &Walk,
    options: &ApplyOptions,
) -> Result<HashMap<usize, Vec<StepRecord>>, ApplyError> {
    let graph = &walk.graph;
    let mut waiting_on: HashMap<NodeIndex, usize> = graph
        .graph
        .node_indices()
        .map(|n| (n, graph.dependencies(n).count()))
        .collect();
    let mut ready: Vec<NodeIndex> = waiting_on
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(i, _)| *i)
        .collect();
    // Deterministic start order: address order (the vector is used as a stack).
    ready.sort_by_key(|i| std::cmp::Reverse(order_key(walk, *i)));
    let mut records: HashMap<NodeIndex, StepRecord> = HashMap::new();
    let mut running: JoinSet<(NodeIndex, Result<(), StepFailure>, Duration)> = JoinSet::new();
    let mut fatal: Option<String> = None;

    loop {
        // Start what may start.
        while running.len() < options.parallelism.max(1)
            && !options.cancel.is_cancelled()
            && fatal.is_none()
        {
            let Some(node) = ready.pop() else { break };
            let step = graph.graph[node];
            let halted = walk.runs[step.tenant].lock().expect("run lock").halted;
            if halted {
                skip_with_dependents(walk, node, &mut records);
                continue;
            }
            let ctx = StepContext::new(walk, node);
            running.spawn(async move {
                let t0 = Instant::now();
                let r = ctx.run().await;
                (node, r, t0.elapsed())
            });
        }
        if running.is_empty() {
            break;
        }
        let joined = tokio::select! {
            j = running.join_next() => j,
            _ = options.cancel.cancelled(), if !ready.is_empty() => {
                // Stop starting; keep draining what runs.
                for n in ready.drain(..) {
                    skip_with_dependents(walk, n, &mut records);
                }
                continue;
            }
        };
        let Some(joined) = joined else { break };
        let (node, result, elapsed) = joined.expect("step task does not panic");
        let step = graph.graph[node];
        let change = step.change(&walk.plan);
        let outcome = match result {
            Ok(()) => {
                for next in graph.dependents(node) {
                    let n = waiting_on.get_mut(&next).expect("known node");
                    *n -= 1;
                    if *n == 0 && !records.contains_key(&next) {
                        ready.push(next);
                    }
                }
                StepOutcome::Done
            }
            Err(e) => {
                if let StepFailure::State(se) = &e {
                    fatal.get_or_insert_with(|| se.to_string());
                }
                let mut run = walk.runs[step.tenant].lock().expect("run lock");
                run.failed = true;
                if walk.plan.tenants[step.tenant].new_tenant && options.rollback {
                    run.halted = true;
                }
                drop(run);
                for next in graph.dependents(node).collect::<Vec<_>>() {
                    skip_with_dependents(walk, next, &mut records);
                }
                StepOutcome::Failed {
                    code: e.code().to_owned(),
                    error: e.to_string(),
                }
            }
        };
        records.insert(
            node,
            StepRecord {
                address: change.address.clone(),
                step: step_name(step.kind),
                outcome,
                duration_ms: elapsed.as_millis() as u64,
            },
        );
    }
    if let Some(e) = fatal {
        return Err(ApplyError::Checkpoint(e));
    }
    // Whatever never became ready (cancelled, or blocked behind a failure) is skipped.
    for n in graph.graph.node_indices() {
        if !records.contains_key(&n) {
            skip_with_dependents(walk, n, &mut records);
        }
    }
    let mut by_tenant: HashMap<usize, Vec<StepRecord>> = HashMap::new();
    let mut nodes: Vec<NodeIndex> = records.keys().copied().collect();
    nodes.sort_by_key(|n| order_key(walk, *n));
    for n in nodes {
        let t = graph.graph[n].tenant;
        by_tenant
            .entry(t)
            .or_default()
            .push(records.remove(&n).expect("present"));
    }
    Ok(by_tenant)
}

fn order_key(walk: &Walk, n: NodeIndex) -> (ResourceAddress, u8) {
    let step = walk.graph.graph[n];
    let kind = match step.kind {
        StepKind::Delete => 0,
        StepKind::Create => 1,
        StepKind::Update => 2,
    };
    (step.change(&walk.plan).address.clone(), kind)
}

/// The name of a step kind, as reports and run events say it.
pub(crate) fn step_name(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Create => "create",
        StepKind::Update => "update",
        StepKind::Delete => "delete",
    }
}

fn skip_with_dependents(
    walk: &Walk,
    node: NodeIndex,
    records: &mut HashMap<NodeIndex, StepRecord>,
) {
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if records.contains_key(&n) {
            continue;
        }
        let step = walk.graph.graph[n];
        records.insert(
            n,
            StepRecord {
                address: step.change(&walk.plan).address.clone(),
                step: step_name(step.kind),
                outcome: StepOutcome::Skipped,
                duration_ms: 0,
            },
        );
        stack.extend(walk.graph.dependents(n));
    }
}

/// Why a step failed: the provider call, or recording its outcome.
#[derive(Debug)]
enum StepFailure {
    Provider(ProviderError),
    State(StateError),
}

impl StepFailure {
    fn code(&self) -> &str {
        match self {
            StepFailure::Provider(e) => e.code(),
            StepFailure::State(_) => "StateWrite",
        }
    }
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepFailure::Provider(e) => e.fmt(f),
            StepFailure::State(e) => e.fmt(f),
        }
    }
}

/// One step, ready to run on its own task.
struct StepContext {
    kind: StepKind,
    change: crate::plan::ResourceChange,
    run: SharedRun,
    providers: ProviderSet,
    store: StateStore,
    progress: Option<ProgressSink>,
    calls: Arc<AtomicUsize>,
}

impl StepContext {
    fn new(walk: &Walk, node: NodeIndex) -> Self {
        let step = walk.graph.graph[node];
        StepContext {
            kind: step.kind,
            change: step.change(&walk.plan).clone(),
            run: walk.runs[step.tenant].clone(),
            providers: walk.providers.clone(),
            store: walk.store.clone(),
            progress: walk.progress.clone(),
            calls: walk.calls.clone(),
        }
    }

    async fn run(self) -> Result<(), StepFailure> {
        let span = tracing::info_span!(
            "step",
            address = %self.change.address,
            step = step_name(self.kind),
            reason = %self.change.reason,
        );
        let address = self.change.address.clone();
        let kind = self.kind;
        let progress = self.progress.clone();
        let t0 = Instant::now();
        if let Some(p) = &progress {
            p(&Progress::Started {
                address: address.clone(),
                kind,
            });
        }
        let result = self.execute().instrument(span.clone()).await;
        let _enter = span.enter();
        match &result {
            Ok(()) => {
                tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "done");
                if let Some(p) = &progress {
                    p(&Progress::Finished {
                        address,
                        kind,
                        elapsed: t0.elapsed(),
                    });
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "failed");
                if let Some(p) = &progress {
                    p(&Progress::Failed {
                        address,
                        kind,
                        error: e.to_string(),
                    });
                }
            }
        }
        result
    }

    async fn execute(&self) -> Result<(), StepFailure> {
        let address = &self.change.address;
        let key = address.local();
        let provider = self
            .providers
            .get(address.resource_type)
            .map_err(StepFailure::Provider)?
            .clone();
        match self.kind {
            StepKind::Create => {
                let resource = self
                    .change
                    .after
                    .clone()
                    .expect("a create has a desired resource");
                let resuming = {
                    let r = self.run.lock().expect("run lock");
                    r.state
                        .resources
                        .get(&key)
                        .is_some_and(|e| e.status == ResourceStatus::Creating)
                };
                let mode = if resuming || self.change.resumes() {
                    CreateMode::Resume
                } else {
                    CreateMode::Fresh
                };
                let entry = ResourceState {
                    resource_type: address.resource_type,
                    name: address.name.clone(),
                    status: ResourceStatus::Creating,
                    attributes: resource.attributes.clone(),
                    depends_on: resource.depends_on.clone(),
                };
                self.checkpoint(move |s| {
                    s.resources.insert(key, entry);
                })
                .await?;
                self.calls.fetch_add(1, Ordering::SeqCst);
                match provider.create(&resource, mode).await {
                    Ok(computed) => {
                        let key = address.local();
                        self.checkpoint(move |s| {
                            if let Some(e) = s.resources.get_mut(&key) {
                                e.status = ResourceStatus::Created;
                                e.attributes.extend(computed);
                            }
                        })
                        .await
                    }
                    Err(e @ ProviderError::AlreadyExists { .. }) if mode == CreateMode::Fresh => {
                        // Nothing was created: forget the record so that a rollback
                        // leaves the existing resource alone.
                        let key = address.local();
                        self.checkpoint(move |s| {
                            s.resources.remove(&key);
                        })
                        .await?;
                        Err(StepFailure::Provider(e))
                    }
                    Err(e) => Err(StepFailure::Provider(e)),
                }
            }
            StepKind::Update => {
                let resource = self
                    .change
                    .after
                    .clone()
                    .expect("an update has a desired resource");
                let current = {
                    let r = self.run.lock().expect("run lock");
                    r.state.resources.get(&key).map(|e| e.attributes.clone())
                }
                .unwrap_or_default();
                let changed: Vec<String> = self
                    .change
                    .attribute_changes
                    .iter()
                    .map(|a| a.name.clone())
                    .collect();
                self.calls.fetch_add(1, Ordering::SeqCst);
                let computed = provider
                    .update(&resource, &current, &changed)
                    .await
                    .map_err(StepFailure::Provider)?;
                let attributes =
                    merged_attributes(&resource.attributes, &current, computed, address);
                let depends_on = resource.depends_on.clone();
                self.checkpoint(move |s| {
                    if let Some(e) = s.resources.get_mut(&key) {
                        e.attributes = attributes;
                        e.depends_on = depends_on;
                    }
                })
                .await
            }
            StepKind::Delete => {
                let current = {
                    let r = self.run.lock().expect("run lock");
                    r.state.resources.get(&key).map(|e| e.attributes.clone())
                };
                // Not in state any more: nothing of ours to delete.
                let Some(current) = current else {
                    return Ok(());
                };
                self.calls.fetch_add(1, Ordering::SeqCst);
                provider
                    .delete(address, &current)
                    .await
                    .map_err(StepFailure::Provider)?;
                self.checkpoint(move |s| {
                    s.resources.remove(&key);
                })
                .await
            }
        }
    }

    async fn checkpoint(
        &self,
        f: impl FnOnce(&mut TenantState) + Send + 'static,
    ) -> Result<(), StepFailure> {
        let run = self.run.clone();
        {
            let mut r = run.lock().expect("run lock");
            f(&mut r.state);
        }
        write_state(&self.store, &run)
            .await
            .map_err(StepFailure::State)
    }
}

/// Writes a tenant's in-memory state to its file, off the async threads.
async fn write_state(store: &StateStore, run: &SharedRun) -> Result<(), StateError> {
    let store = store.clone();
    let run = run.clone();
    tokio::task::spawn_blocking(move || {
        let mut r = run.lock().expect("run lock");
        let r = &mut *r;
        r.wrote = true;
        store.write(&r.lock, &mut r.state)
    })
    .await
    .expect("state task does not panic")
}

/// The attributes to record after an update: the desired ones, the computed ones kept
/// from before, and what the provider computed anew.
fn merged_attributes(
    desired: &Attributes,
    current: &Attributes,
    computed: Attributes,
    address: &ResourceAddress,
) -> Attributes {
    let s = schema(address.resource_type);
    let mut out: Attributes = current
        .iter()
        .filter(|(k, _)| s.attribute(k).is_some_and(|a| a.computed))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.extend(desired.clone());
    out.extend(computed);
    out
}
