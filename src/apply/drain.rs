//! The walk of one action graph: a coordinator, its workers, and its state writes.
//!
//! # Overview
//!
//! [`DrainState`] is an apply in progress. It owns a [`ReadyQueue`] of the graph's
//! steps and, for every tenant of the plan, a [`TenantLedger`]: the tenant's state (the
//! only copy that changes during the walk), its lock, and how its steps went. It is the
//! only code that changes a state or asks for it to be written. Around it run two kinds
//! of task: *workers*, each making one provider call ([`super::step`]), and *state
//! writes*, each awaiting the store with a snapshot of one tenant's state.
//!
//! The coordinator runs one loop: start the steps that may start, then wait for a
//! worker's [`StepEvent`] or a finished state write, and act on it. Everything it does
//! between two waits is in memory and short; nothing it waits for blocks another tenant.
//!
//! # Scheduling
//!
//! A step is in flight from the moment it leaves the queue until its outcome is on
//! disk, and at most `parallelism` steps are in flight. Taken in order:
//!
//! - a create is first recorded in state as `creating`, and its worker starts only
//!   once that record is written;
//! - an update or delete starts its worker at once (a delete of a resource that state
//!   no longer holds has nothing to call and is done at once);
//! - when the worker reports, the coordinator applies the outcome to the state and asks
//!   for a write; the step is over, and its dependents may start, when that write is
//!   done. A failed call that changed nothing is over at once.
//!
//! Which step starts next is the queue's rule: among the steps whose dependencies are
//! done, address order, and for one address a delete before a create before an update.
//! A failed step skips everything that depends on it. When a new tenant's step fails
//! and rollback is on, the tenant is halted: its steps that have not started are
//! skipped. On interrupt or after a failed write, no step starts any more; the loop
//! ends when the steps in flight are over, and what never started is skipped.
//!
//! # Checkpoints
//!
//! Each tenant has at most one write under way, of its whole state as the coordinator
//! holds it when the write starts. Requests that come while a write is under way are
//! served together by the next one, which contains all their changes. So a step waits
//! for a write that contains its change and for nothing else, writes of different
//! tenants run side by side, and a tenant gets at most one write per request, often
//! fewer when its steps finish together.
//!
//! # Messages
//!
//! Workers speak to the coordinator only through [`StepEvent`], the value their task
//! ends with; a state write ends with its tenant and the written state (for its serial)
//! or the error. The coordinator hands a worker copies of what its call needs, so a
//! worker never reads or changes a state.
//!
//! Nothing is shared behind a mutex: a write task owns its snapshot and a handle to the
//! tenant's lock, so the coordinator never waits on a lock while the store works (with
//! PostgreSQL, a write is a network round trip, and a lease's heartbeat runs beside it).
//!
//! # Losing a tenant
//!
//! With PostgreSQL state, a lock is a lease. A process paused past it (a stopped VM,
//! `SIGSTOP`) finds on waking that another process took the tenant over: the store
//! refuses its writes (the fence) and the lease's heartbeat marks the lock lost. Either
//! stops the walk at once, like a failed write, but as [`ApplyError::Fenced`]: no step
//! of any tenant starts any more (a delete or update would otherwise reach its endpoint
//! before any write could be refused), and no rollback follows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use petgraph::graph::NodeIndex;
use tokio::task::JoinSet;
use tracing::{Instrument, Span};

use super::queue::{DependencyQueue, QueueError, ReadyQueue};
use super::step::{self, StepCall, StepEvent};
use super::{ApplyError, ApplyOptions, Progress, ProgressSink, StepOutcome, StepRecord, TenantRun};
use crate::plan::graph::{ActionGraph, StepKind};
use crate::plan::{Plan, PlanError, TenantPlan};
use crate::provider::{CreateMode, Provider, ProviderError, ProviderSet};
use crate::resource::secret::INPUT_VERSIONS;
use crate::resource::{
    Attributes, CreateToken, Resource, ResourceAddress, TenantId, schema, version_of,
};
use crate::state::{ResourceState, ResourceStatus, StateError, StateLock, StateStore, TenantState};

/// What every walk of one apply shares: where calls go, where state goes, how to run.
#[derive(Clone, Copy)]
pub(super) struct Walk<'a> {
    pub providers: &'a ProviderSet,
    pub store: &'a StateStore,
    pub options: &'a ApplyOptions,
    pub progress: Option<&'a ProgressSink>,
}

/// One tenant while an apply runs: its state, its lock, how its steps went, and its
/// state writes.
pub(super) struct TenantLedger {
    lock: Arc<StateLock>,
    pub state: TenantState,
    /// A step failed.
    pub failed: bool,
    /// Steps that have not started are skipped: a new tenant that will be rolled back.
    pub halted: bool,
    /// A write was attempted, so a stored state may exist even if this one is empty.
    wrote: bool,
    /// What waits for the write under way; `None` when no write is under way.
    writing: Option<Vec<AfterCheckpoint>>,
    /// What waits for the next write; empty when none is wanted.
    next: Vec<AfterCheckpoint>,
}

impl TenantLedger {
    /// The ledger of `run` before its first step: nothing failed, nothing written yet.
    pub fn new(run: TenantRun) -> Self {
        TenantLedger {
            lock: Arc::new(run.lock),
            state: run.state,
            failed: false,
            halted: false,
            wrote: false,
            writing: None,
            next: Vec::new(),
        }
    }

    /// Takes the plan's protection flag and spec into the state. Returns whether that
    /// must be written on its own: no step will write this state, and it differs.
    pub fn take_flags(&mut self, plan: &TenantPlan) -> bool {
        let has_steps = plan.changes.iter().any(|c| c.action.is_change());
        let differs = self.state.protected != plan.protected
            || (plan.spec.is_some() && self.state.applied_spec != plan.spec);
        self.state.protected = plan.protected;
        if plan.spec.is_some() {
            self.state.applied_spec = plan.spec.clone();
        }
        differs && !has_steps && !self.state.resources.is_empty()
    }

    /// Writes the state now, outside a walk.
    pub async fn write_now(&mut self, store: &StateStore) -> Result<(), StateError> {
        self.wrote = true;
        let written = write_snapshot(store.clone(), self.lock.clone(), self.state.clone()).await?;
        self.adopt(&written);
        Ok(())
    }

    /// Ends the tenant's part in the apply, releasing its lock: removes the stored state
    /// of a tenant left with nothing. Returns the final serial.
    pub async fn close(self, store: &StateStore) -> Result<Option<u64>, StateError> {
        let serial = if self.state.resources.is_empty() {
            // A state of serial 0 was never stored: nothing to remove.
            if self.wrote || self.state.serial > 0 {
                store.remove(&self.lock, &self.state).await?;
            }
            None
        } else {
            Some(self.state.serial)
        };
        let tenant = self.state.tenant;
        // No write task holds the lock any more; were one to, the lock would be released
        // when it is dropped.
        if let Ok(lock) = Arc::try_unwrap(self.lock)
            && let Err(e) = lock.release().await
        {
            tracing::warn!(%tenant, error = %e, "cannot release the lock; it ends with its lease");
        }
        Ok(serial)
    }

    /// Takes what a write changed in the state it wrote (serial, time, format).
    fn adopt(&mut self, written: &TenantState) {
        self.state.serial = written.serial;
        self.state.updated_at = written.updated_at;
        self.state.format_version = written.format_version;
    }
}

/// Writes `snapshot` as the tenant's next state; returns it as written. Owns what it
/// needs, so that it runs as a task of its own.
async fn write_snapshot(
    store: StateStore,
    lock: Arc<StateLock>,
    mut snapshot: TenantState,
) -> Result<TenantState, StateError> {
    store.write(&lock, &mut snapshot).await.map(|()| snapshot)
}

/// What happens once a tenant's state is on disk.
enum AfterCheckpoint {
    /// A create's `creating` record is written: its call may start.
    Call {
        node: NodeIndex,
        provider: Arc<dyn Provider>,
        call: StepCall,
    },
    /// A step's outcome is written: the step is over (failed, if `failure`).
    Settle {
        node: NodeIndex,
        failure: Option<ProviderError>,
    },
}

/// A step in flight.
struct Running {
    started: Instant,
    span: Span,
    /// For a create: whether an existing resource of that name is ours.
    mode: Option<CreateMode>,
    /// For a create or update given every ephemeral input it takes: the inputs'
    /// versions, recorded when it succeeds ([`INPUT_VERSIONS`]).
    input_versions: Option<serde_json::Value>,
}

/// Why a step failed: its provider call, or writing its outcome.
#[derive(Debug)]
enum StepFailure {
    Provider(ProviderError),
    State(String),
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
            StepFailure::State(e) => f.write_str(e),
        }
    }
}

/// The outcome of a walk: the step records of each tenant of the plan (in the queue's
/// order) and the mutating provider calls made.
pub(super) struct Drained {
    pub steps: Vec<Vec<StepRecord>>,
    pub calls: usize,
}

/// A walk in progress; see the module doc.
pub(super) struct DrainState<'a> {
    plan: &'a Plan,
    graph: &'a ActionGraph,
    walk: Walk<'a>,
    queue: ReadyQueue<NodeIndex>,
    /// By the plan's tenant index.
    tenants: Vec<&'a mut TenantLedger>,
    workers: JoinSet<StepEvent>,
    writes: JoinSet<(usize, Result<TenantState, StateError>)>,
    /// By node index.
    running: Vec<Option<Running>>,
    /// By node index.
    records: Vec<Option<StepRecord>>,
    /// Provider calls that change something.
    calls: usize,
    /// A state write failed or a tenant was lost: no step starts any more.
    fatal: Option<Halt>,
    /// Ephemeral values (generated passwords) computed by this walk's steps, by
    /// resource, for the resources that take them as inputs. Never written anywhere.
    handed: HashMap<ResourceAddress, Attributes>,
}

/// Why a walk starts no step any more.
enum Halt {
    /// A state write failed.
    Write(String),
    /// A tenant's lock was lost: the tenant is another process's now.
    Fenced { tenant: TenantId, detail: String },
}

impl<'a> DrainState<'a> {
    /// A walk of `graph` (made from `plan`) over `tenants`, one per tenant of the plan
    /// and in its order.
    pub fn new(
        plan: &'a Plan,
        graph: &'a ActionGraph,
        tenants: Vec<&'a mut TenantLedger>,
        walk: Walk<'a>,
    ) -> Result<Self, PlanError> {
        assert_eq!(tenants.len(), plan.tenants.len(), "one ledger per tenant");
        let nodes = graph.graph.node_count();
        Ok(DrainState {
            queue: step_queue(plan, graph)?,
            plan,
            graph,
            walk,
            tenants,
            workers: JoinSet::new(),
            writes: JoinSet::new(),
            running: (0..nodes).map(|_| None).collect(),
            records: vec![None; nodes],
            calls: 0,
            fatal: None,
            handed: HashMap::new(),
        })
    }

    /// Runs the walk to its end. A failed state write ends it with
    /// [`ApplyError::Checkpoint`], a lost tenant with [`ApplyError::Fenced`], once the
    /// steps in flight are over.
    pub async fn run(mut self) -> Result<Drained, ApplyError> {
        let cancel = self.walk.options.cancel.clone();
        let mut cancel_seen = false;
        loop {
            self.start_ready();
            if self.workers.is_empty() && self.writes.is_empty() {
                break;
            }
            tokio::select! {
                Some(written) = self.writes.join_next() => {
                    let (tenant, result) = written.expect("a state write does not panic");
                    self.checkpointed(tenant, result);
                }
                Some(event) = self.workers.join_next() => {
                    self.step_event(event.expect("a step task does not panic"));
                }
                // Only wakes the loop: `start_ready` stops starting.
                () = cancel.cancelled(), if !cancel_seen => cancel_seen = true,
            }
        }
        debug_assert_eq!(self.queue.in_flight(), 0, "every step in flight is over");
        for n in self.queue.skip_rest() {
            self.record(n, StepOutcome::Skipped, Duration::ZERO);
        }
        match self.fatal {
            Some(Halt::Write(e)) => return Err(ApplyError::Checkpoint(e)),
            Some(Halt::Fenced { tenant, detail }) => {
                return Err(ApplyError::Fenced { tenant, detail });
            }
            None => {}
        }
        let mut steps: Vec<Vec<StepRecord>> = vec![Vec::new(); self.plan.tenants.len()];
        for n in self.queue.nodes() {
            let record = self.records[n.index()]
                .take()
                .expect("every step has a record");
            steps[self.graph.graph[*n].tenant].push(record);
        }
        Ok(Drained {
            steps,
            calls: self.calls,
        })
    }

    fn stopping(&self) -> bool {
        self.fatal.is_some() || self.walk.options.cancel.is_cancelled()
    }

    /// Starts steps while there is room and a step may start.
    fn start_ready(&mut self) {
        let bound = self.walk.options.parallelism.max(1);
        while self.queue.in_flight() < bound && !self.stopping() {
            let Some(&node) = self.queue.peek() else {
                break;
            };
            let ledger = &self.tenants[self.graph.graph[node].tenant];
            if ledger.lock.is_lost() {
                let tenant = ledger.state.tenant.clone();
                tracing::error!(%tenant, "the tenant's lock was lost: no step starts any more");
                self.fatal = Some(Halt::Fenced {
                    tenant,
                    detail: "its lock was taken over by another process after this one let the lease lapse, or broken with force-unlock".into(),
                });
                break;
            }
            if ledger.halted {
                for n in self.queue.skip(&node) {
                    self.record(n, StepOutcome::Skipped, Duration::ZERO);
                }
                continue;
            }
            self.queue.dequeue();
            self.start(node);
        }
    }

    fn start(&mut self, node: NodeIndex) {
        let step = self.graph.graph[node];
        let change = step.change(self.plan);
        let address = &change.address;
        let span = tracing::info_span!(
            "step",
            address = %address,
            step = step_name(step.kind),
            reason = %change.reason,
        );
        self.progress(Progress::Started {
            address: address.clone(),
            kind: step.kind,
        });
        let mut running = Running {
            started: Instant::now(),
            span,
            mode: None,
            input_versions: None,
        };
        let provider = match self.walk.providers.get(address.resource_type) {
            Ok(p) => p.clone(),
            Err(e) => {
                self.running[node.index()] = Some(running);
                self.settle(node, Err(StepFailure::Provider(e)));
                return;
            }
        };
        let key = address.local();
        let state = &mut self.tenants[step.tenant].state;
        match step.kind {
            StepKind::Create => {
                let resource = change
                    .after
                    .clone()
                    .expect("a create has a desired resource");
                let interrupted = state
                    .resources
                    .get(&key)
                    .filter(|e| e.status == ResourceStatus::Creating);
                // A resumed create keeps its token, which the object it made carries.
                let token = interrupted
                    .and_then(|e| e.create_token)
                    .unwrap_or_else(CreateToken::issue);
                let mode = if interrupted.is_some() || change.resumes() {
                    CreateMode::Resume(token)
                } else {
                    CreateMode::Fresh(token)
                };
                running.mode = Some(mode);
                state.resources.insert(
                    key,
                    ResourceState {
                        resource_type: address.resource_type,
                        name: address.name.clone(),
                        status: ResourceStatus::Creating,
                        attributes: resource.attributes.clone(),
                        depends_on: resource.depends_on.clone(),
                        create_token: Some(token),
                    },
                );
                let (resource, versions) = self.with_inputs(step.tenant, resource);
                running.input_versions = versions;
                self.running[node.index()] = Some(running);
                let call = StepCall::Create { resource, mode };
                self.checkpoint(
                    step.tenant,
                    AfterCheckpoint::Call {
                        node,
                        provider,
                        call,
                    },
                );
            }
            StepKind::Update => {
                let resource = change
                    .after
                    .clone()
                    .expect("an update has a desired resource");
                let current = state
                    .resources
                    .get(&key)
                    .map(|e| e.attributes.clone())
                    .unwrap_or_default();
                let changed = change
                    .attribute_changes
                    .iter()
                    .map(|a| a.name.clone())
                    .collect();
                let (resource, versions) = self.with_inputs(step.tenant, resource);
                running.input_versions = versions;
                self.running[node.index()] = Some(running);
                let call = StepCall::Update {
                    resource,
                    current,
                    changed,
                };
                self.call(node, provider, call);
            }
            StepKind::Delete => {
                let current = state.resources.get(&key).map(|e| e.attributes.clone());
                self.running[node.index()] = Some(running);
                match current {
                    // Not in state any more: nothing of ours to delete.
                    None => self.settle(node, Ok(())),
                    Some(current) => {
                        let call = StepCall::Delete {
                            address: address.clone(),
                            current,
                        };
                        self.call(node, provider, call);
                    }
                }
            }
        }
    }

    /// `resource` with its inputs put in among its attributes: an ephemeral one from
    /// what this walk's steps computed (absent when its resource was not created or
    /// updated here: the provider then keeps what it wrote before), any other from the
    /// tenant's state. With the versions of the ephemeral inputs when all of them were
    /// there.
    fn with_inputs(
        &self,
        tenant: usize,
        mut resource: Resource,
    ) -> (Resource, Option<serde_json::Value>) {
        let state = &self.tenants[tenant].state;
        let recorded = |from: &ResourceAddress, attribute: &str| {
            state
                .resources
                .get(&from.local())
                .and_then(|e| e.attributes.get(attribute))
                .cloned()
        };
        let mut versions = serde_json::Map::new();
        let mut all_handed = true;
        for (name, input) in &resource.inputs {
            let ephemeral = schema(input.from.resource_type)
                .attribute(&input.attribute)
                .is_some_and(|a| a.ephemeral);
            let value = if ephemeral {
                let handed = self
                    .handed
                    .get(&input.from)
                    .and_then(|h| h.get(&input.attribute))
                    .cloned();
                match (
                    &handed,
                    recorded(&input.from, &version_of(&input.attribute)),
                ) {
                    (Some(_), Some(v)) => {
                        versions.insert(name.clone(), v);
                    }
                    _ => all_handed = false,
                }
                handed
            } else {
                recorded(&input.from, &input.attribute)
            };
            if let Some(v) = value {
                resource.attributes.insert(name.clone(), v);
            }
        }
        let versions = (all_handed && !versions.is_empty()).then(|| versions.into());
        (resource, versions)
    }

    /// Starts the worker of step `node`.
    fn call(&mut self, node: NodeIndex, provider: Arc<dyn Provider>, call: StepCall) {
        self.calls += 1;
        let span = self.running[node.index()]
            .as_ref()
            .expect("a step that calls was started")
            .span
            .clone();
        self.workers
            .spawn(step::perform(node, provider, call).instrument(span));
    }

    /// Applies a worker's report to its tenant's state.
    fn step_event(&mut self, event: StepEvent) {
        let node = match &event {
            StepEvent::Finished { node, .. } | StepEvent::Failed { node, .. } => *node,
        };
        let step = self.graph.graph[node];
        let change = step.change(self.plan);
        let key = change.address.local();
        let input_versions = self.running[node.index()]
            .as_ref()
            .and_then(|r| r.input_versions.clone());
        let state = &mut self.tenants[step.tenant].state;
        match event {
            StepEvent::Finished { computed, .. } => {
                // Ephemeral values go to the steps that take them, never to state.
                let s = schema(change.address.resource_type);
                let (ephemeral, mut computed): (Attributes, Attributes) = computed
                    .into_iter()
                    .partition(|(k, _)| s.attribute(k).is_some_and(|a| a.ephemeral));
                if !ephemeral.is_empty() {
                    self.handed.insert(change.address.clone(), ephemeral);
                }
                if let Some(v) = input_versions {
                    computed.insert(INPUT_VERSIONS.into(), v);
                }
                match step.kind {
                    StepKind::Create => {
                        if let Some(e) = state.resources.get_mut(&key) {
                            e.status = ResourceStatus::Created;
                            e.create_token = None;
                            e.attributes.extend(computed);
                        }
                    }
                    StepKind::Update => {
                        let desired = change
                            .after
                            .as_ref()
                            .expect("an update has a desired resource");
                        if let Some(e) = state.resources.get_mut(&key) {
                            e.attributes = merged_attributes(
                                &desired.attributes,
                                &e.attributes,
                                computed,
                                &change.address,
                            );
                            e.depends_on = desired.depends_on.clone();
                        }
                    }
                    StepKind::Delete => {
                        state.resources.remove(&key);
                    }
                }
                let then = AfterCheckpoint::Settle {
                    node,
                    failure: None,
                };
                self.checkpoint(step.tenant, then);
            }
            StepEvent::Failed { error, .. } => {
                let create = self.running[node.index()]
                    .as_ref()
                    .is_some_and(|r| r.mode.is_some());
                if create && matches!(error, ProviderError::AlreadyExists { .. }) {
                    // The name is someone else's and nothing was created (in a resumed
                    // create too: the object does not carry the token): forget the
                    // record so that a rollback leaves the existing resource alone.
                    state.resources.remove(&key);
                    let then = AfterCheckpoint::Settle {
                        node,
                        failure: Some(error),
                    };
                    self.checkpoint(step.tenant, then);
                } else {
                    self.settle(node, Err(StepFailure::Provider(error)));
                }
            }
        }
    }

    /// Asks for `tenant`'s state to be written; `then` happens when a write that
    /// contains the state as it is now is done.
    fn checkpoint(&mut self, tenant: usize, then: AfterCheckpoint) {
        let ledger = &mut self.tenants[tenant];
        if ledger.writing.is_some() {
            ledger.next.push(then);
        } else {
            ledger.writing = Some(vec![then]);
            self.start_write(tenant);
        }
    }

    fn start_write(&mut self, tenant: usize) {
        let ledger = &mut self.tenants[tenant];
        ledger.wrote = true;
        let write = write_snapshot(
            self.walk.store.clone(),
            ledger.lock.clone(),
            ledger.state.clone(),
        );
        self.writes.spawn(async move { (tenant, write.await) });
    }

    /// A write of `tenant`'s state is over: starts the next one if wanted, and lets
    /// what waited for this one go on.
    fn checkpointed(&mut self, tenant: usize, result: Result<TenantState, StateError>) {
        let ledger = &mut self.tenants[tenant];
        let waiting = ledger.writing.take().expect("a write was under way");
        let failure = match result {
            Ok(written) => {
                ledger.adopt(&written);
                // The crash harness (tests/crash.rs) stops the process dead here, after
                // the k-th checkpoint: `FAILPOINTS=apply::checkpoint=K*off->return`.
                #[cfg(feature = "failpoints")]
                fail::fail_point!("apply::checkpoint", |_| std::process::abort());
                None
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(tenant = %ledger.state.tenant, error = %message, "cannot write state");
                match e {
                    // Takes precedence: it decides that nothing is undone.
                    StateError::Fenced { tenant, .. } => {
                        self.fatal = Some(Halt::Fenced {
                            tenant,
                            detail: message.clone(),
                        });
                    }
                    _ => {
                        self.fatal
                            .get_or_insert_with(|| Halt::Write(message.clone()));
                    }
                }
                Some(message)
            }
        };
        let ledger = &mut self.tenants[tenant];
        if !ledger.next.is_empty() {
            ledger.writing = Some(std::mem::take(&mut ledger.next));
            self.start_write(tenant);
        }
        for then in waiting {
            match (then, &failure) {
                (
                    AfterCheckpoint::Call {
                        node,
                        provider,
                        call,
                    },
                    None,
                ) => self.call(node, provider, call),
                // The `creating` record is not on disk: the call must not start.
                (AfterCheckpoint::Call { node, .. }, Some(e)) => {
                    self.settle(node, Err(StepFailure::State(e.clone())))
                }
                (AfterCheckpoint::Settle { node, failure }, None) => self.settle(
                    node,
                    failure.map_or(Ok(()), |e| Err(StepFailure::Provider(e))),
                ),
                (AfterCheckpoint::Settle { node, .. }, Some(e)) => {
                    self.settle(node, Err(StepFailure::State(e.clone())))
                }
            }
        }
    }

    /// Step `node` is over: records it and tells the queue.
    fn settle(&mut self, node: NodeIndex, result: Result<(), StepFailure>) {
        let running = self.running[node.index()]
            .take()
            .expect("a step that ends was started");
        let elapsed = running.started.elapsed();
        let _in_span = running.span.enter();
        let step = self.graph.graph[node];
        let address = &step.change(self.plan).address;
        let outcome = match result {
            Ok(()) => {
                tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "done");
                self.progress(Progress::Finished {
                    address: address.clone(),
                    kind: step.kind,
                    elapsed,
                });
                self.queue.finish(&node);
                StepOutcome::Done
            }
            Err(e) => {
                tracing::error!(error = %e, "failed");
                self.progress(Progress::Failed {
                    address: address.clone(),
                    kind: step.kind,
                    error: e.to_string(),
                });
                let ledger = &mut self.tenants[step.tenant];
                ledger.failed = true;
                if self.plan.tenants[step.tenant].new_tenant && self.walk.options.rollback {
                    ledger.halted = true;
                }
                for n in self.queue.fail(&node) {
                    self.record(n, StepOutcome::Skipped, Duration::ZERO);
                }
                StepOutcome::Failed {
                    code: e.code().to_owned(),
                    error: e.to_string(),
                }
            }
        };
        self.record(node, outcome, elapsed);
    }

    fn record(&mut self, node: NodeIndex, outcome: StepOutcome, elapsed: Duration) {
        let step = self.graph.graph[node];
        let change = step.change(self.plan);
        self.records[node.index()] = Some(StepRecord {
            address: change.address.clone(),
            physical_id: change.physical_id(),
            step: step_name(step.kind),
            outcome,
            duration_ms: elapsed.as_millis() as u64,
        });
    }

    fn progress(&self, event: Progress) {
        if let Some(sink) = self.walk.progress {
            sink(&event);
        }
    }
}

/// The steps of `graph` in a ready-queue. Among the steps that may start: address
/// order, and for one address a delete before a create before an update.
fn step_queue(plan: &Plan, graph: &ActionGraph) -> Result<ReadyQueue<NodeIndex>, PlanError> {
    let mut queue = DependencyQueue::with_capacity(graph.len());
    for n in graph.graph.node_indices() {
        let step = graph.graph[n];
        let address = &step.change(plan).address;
        queue.queue(n, (address, start_rank(step.kind)), graph.dependencies(n));
    }
    queue.seal().map_err(|e| match e {
        QueueError::Cycle(nodes) => PlanError::Cycle(
            nodes
                .iter()
                .map(|n| graph.graph[*n].change(plan).address.clone())
                .collect(),
        ),
        QueueError::Duplicate(n) | QueueError::UnknownDependency { node: n, .. } => {
            unreachable!("{n:?}: a graph holds each node once, and its edges join its nodes")
        }
    })
}

/// For one address: a delete before a create (a replace) before an update.
fn start_rank(kind: StepKind) -> u8 {
    match kind {
        StepKind::Delete => 0,
        StepKind::Create => 1,
        StepKind::Update => 2,
    }
}

/// The name of a step kind, as reports and run events say it.
pub(crate) fn step_name(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Create => "create",
        StepKind::Update => "update",
        StepKind::Delete => "delete",
    }
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
        .filter(|(k, _)| s.attribute(k).is_some_and(|a| a.computed && !a.ephemeral))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.extend(desired.clone());
    out.extend(computed);
    out
}
