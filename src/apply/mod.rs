//! Apply: walk a plan's [`ActionGraph`] with bounded parallelism, calling providers
//! and checkpointing state after every step.
//!
//! # Expected flow
//!
//! The caller holds the lock of every tenant in the plan (a [`TenantRun`] each) and has
//! checked that each state is the one the plan was made against. [`apply`] records the
//! plan's protection flag and spec in each state, then walks the graph
//! (`drain.rs`): a ready-queue of steps ([`queue`]) says which step may start, workers
//! make the provider calls (`step.rs`), and one coordinator applies what they report
//! to the tenants' states and writes them. When the graph is drained, each *new*
//! tenant in which a step failed is rolled back ([`rollback`]): a delete plan of
//! everything its state now holds, walked the same way (all such tenants in one walk).
//! Last, the state file of a tenant left with nothing is removed.
//!
//! # Guarantees
//!
//! - A step starts only after every step it depends on finished and was checkpointed;
//!   deletes run in reverse dependency order. At most `parallelism` steps are in
//!   flight. Among the steps that may start, the next is the first in address order
//!   (for one address: a delete, then a create, then an update), so a run with
//!   `parallelism` 1 always takes the same order.
//! - Before a create's provider call, state records the resource as `creating`, and
//!   that record is on disk before the call starts. After every finished step, its
//!   outcome is on disk before the step counts as done. So after a crash at any
//!   instant (`kill -9`), state names every resource that may exist: created ones as
//!   `created`, ones whose create was under way as `creating`, with the create's token
//!   ([`crate::resource::CreateToken`]). The next run resumes such a create with the
//!   same token and accepts the resource it finds only if that carries the token (see
//!   [`crate::provider`]), so nothing is orphaned, nothing is created twice, and nothing
//!   foreign is adopted. A create's own attempts are held to the same rule by the provider:
//!   an answer lost on the way is not a reason to disown what the call made.
//! - Only the coordinator changes a state or writes it; a provider call never does.
//!   A tenant's state is written at most twice per create (`creating`, then done) and
//!   at most once per update or delete, whatever the parallelism; steps of one tenant
//!   that finish together share a write.
//! - A create that fails because the name is taken by something else leaves no record,
//!   so that a rollback never deletes what is not ours.
//! - A failed step skips everything that depends on it; independent steps go on
//!   (other tenants are not held back by one tenant's failure).
//! - A new tenant is all-or-nothing: if any of its steps fails, its steps that have not
//!   started are skipped, and every resource it got in this run is deleted again, in
//!   reverse dependency order, unless rollback is disabled. If the rollback fails too,
//!   state keeps what is left, so that a retry (apply or destroy) finishes it.
//! - On interrupt, no new step starts; steps in flight finish and are checkpointed;
//!   no rollback starts.
//! - A state write that fails stops the apply: no new step starts, steps in flight
//!   finish (their checkpoints are still attempted), and the apply returns
//!   [`ApplyError::Checkpoint`]. A create whose `creating` record could not be written
//!   never calls its provider.
//! - A tenant whose lock this apply lost (PostgreSQL state: its lease was taken over
//!   after this process paused past it, or force-unlock broke it) is another process's
//!   now: the store refuses the write ([`StateError::Fenced`]), and the apply stops as
//!   after a failed write, with [`ApplyError::Fenced`] and no rollback (undoing would
//!   delete what the new holder may be working on). A lock known to be lost
//!   ([`StateLock::is_lost`]) starts no further step, rollback steps included.
//!
//! # Assumptions
//!
//! - Providers keep the contract in [`crate::provider`]: idempotent deletes, "not
//!   found" as an answer, `AlreadyExists` only when nothing was changed.
//! - Nobody else changes the tenant's resources or state while the run holds its lock.
//!
//! # Caveats
//!
//! - An update that fails half-way leaves the resource between old and new; state
//!   keeps the old attributes and the next plan (with refresh) shows what is left.
//! - Rollback applies only to tenants that had nothing before the run. Changes to an
//!   existing tenant are not undone (as in Terraform); the next apply converges.
//! - Rollbacks start when the whole graph is drained, not as soon as the failed
//!   tenant's own steps are over.
//! - Among ready steps the order is the address order, chosen for determinism, not by
//!   how much work waits behind a step: a long chain whose first step comes late in
//!   the order also starts late.

mod drain;
pub mod queue;
pub mod rollback;
mod step;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::plan::graph::{ActionGraph, StepKind};
use crate::plan::{Plan, PlanError};
use crate::provider::ProviderSet;
use crate::resource::{ResourceAddress, TenantId};
use crate::state::{StateError, StateLock, StateStore, TenantState};
pub(crate) use drain::step_name;
use drain::{DrainState, TenantLedger, Walk};

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
    /// A step started.
    Started {
        address: ResourceAddress,
        kind: StepKind,
    },
    /// A step finished successfully.
    Finished {
        address: ResourceAddress,
        kind: StepKind,
        elapsed: Duration,
    },
    /// A step failed; `error` is the message also recorded in the report.
    Failed {
        address: ResourceAddress,
        kind: StepKind,
        error: String,
    },
    /// A rollback of a tenant's new resources started.
    RollbackStarted { tenant: TenantId, resources: usize },
}

/// A callback that receives progress events.
pub type ProgressSink = Arc<dyn Fn(&Progress) + Send + Sync>;

/// What became of one step.
#[derive(Clone, Debug, Serialize)]
pub struct StepRecord {
    pub address: ResourceAddress,
    /// The object in its service (bucket, role, schema name), where the plan names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physical_id: Option<String>,
    pub step: &'static str,
    pub outcome: StepOutcome,
    pub duration_ms: u64,
}

/// How one step ended; serialized with a `status` tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepOutcome {
    /// The step made its change.
    Done,
    /// The step failed; `code` is the error's stable code.
    Failed { error: String, code: String },
    /// Not started: a dependency failed, the tenant is being rolled back, or the run
    /// was interrupted.
    Skipped,
}

/// How a tenant came out of an apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantOutcome {
    /// No step ran: the plan had nothing to change for the tenant.
    Unchanged,
    /// Every step succeeded.
    Applied,
    /// A step failed and no rollback was done (the tenant existed before, or rollback was off).
    Failed,
    /// A step failed and the tenant's new resources were removed again.
    RolledBack,
    /// A step failed and the rollback failed too: resources may be left behind.
    RollbackFailed,
    /// The run was interrupted before all the tenant's steps ran.
    Interrupted,
}

/// What an apply did to one tenant.
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
            StepOutcome::Failed { error, .. } => Some(match &s.physical_id {
                Some(id) => format!("{} ({id}): {error}", s.address),
                None => format!("{}: {error}", s.address),
            }),
            _ => None,
        })
    }
}

/// The version of the apply report's JSON (`apply --json`): the minor part grows with
/// fields added, the major part changes when a field changes meaning or goes.
pub const APPLY_REPORT_FORMAT_VERSION: &str = "1.0";

/// What an apply did.
#[derive(Clone, Debug, Serialize)]
pub struct ApplyReport {
    /// [`APPLY_REPORT_FORMAT_VERSION`].
    pub format_version: &'static str,
    pub tenants: Vec<TenantReport>,
    pub duration_ms: u64,
    pub interrupted: bool,
    /// Provider calls that change something (create, update, delete), rollback included.
    pub mutating_calls: usize,
}

impl ApplyReport {
    /// Whether every tenant was applied or unchanged and the run was not interrupted.
    pub fn succeeded(&self) -> bool {
        !self.interrupted
            && self
                .tenants
                .iter()
                .all(|t| matches!(t.outcome, TenantOutcome::Applied | TenantOutcome::Unchanged))
    }

    /// How many steps of kind `step` (`"create"`, `"update"`, ...) succeeded, over all tenants.
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
    /// The state could not be read or written.
    #[error("cannot record progress in state, so the apply stopped: {0}")]
    State(#[from] StateError),
    /// A checkpoint (state written between steps) failed.
    #[error("cannot record progress in state, so the apply stopped after the steps in flight: {0}")]
    Checkpoint(String),
    /// Another process took the tenant's lock; this apply stopped without rollback.
    #[error(
        "tenant {tenant} is no longer this apply's to change ({detail}); the apply stopped after the steps in flight, without rollback: the process that holds the tenant's lock now carries on from the last checkpoint"
    )]
    Fenced { tenant: TenantId, detail: String },
    /// The plan cannot be applied as it is.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A service refused the engine's credentials before any change; one message per refusal.
    #[error("the apply changed nothing: {}", .0.join("; "))]
    NoAccess(Vec<String>),
}

impl ApplyError {
    /// What a refused or failed state write means for the apply.
    fn from_write(e: StateError) -> ApplyError {
        match e {
            StateError::Fenced { ref tenant, .. } => ApplyError::Fenced {
                tenant: tenant.clone(),
                detail: e.to_string(),
            },
            e => ApplyError::State(e),
        }
    }
}

/// Asks every provider the plan will call to change something whether its service
/// takes the engine's credentials, before the first change: wrong or missing
/// credentials for one service would otherwise fail half-way, after the others made
/// their part (and roll it back).
async fn check_access(plan: &Plan, providers: &ProviderSet) -> Result<(), ApplyError> {
    let types = plan
        .tenants
        .iter()
        .flat_map(|t| &t.changes)
        .filter(|c| c.action != crate::plan::Action::NoOp)
        .map(|c| c.address.resource_type);
    let checks = providers.serving(types);
    let answers = futures::future::join_all(checks.iter().map(|p| p.check_access())).await;
    let mut refusals: Vec<String> = Vec::new();
    for e in answers.into_iter().filter_map(Result::err) {
        let e = e.to_string();
        if !refusals.contains(&e) {
            refusals.push(e);
        }
    }
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(ApplyError::NoAccess(refusals))
    }
}

/// One tenant given to an apply: its lock, and the state the plan was made against.
pub struct TenantRun {
    pub lock: StateLock,
    pub state: TenantState,
}

impl TenantRun {
    /// A run of the tenant `lock` holds, from `state` (a fresh, empty state when `None`).
    pub fn new(lock: StateLock, state: Option<TenantState>) -> Self {
        let tenant = lock.tenant().clone();
        TenantRun {
            lock,
            state: state.unwrap_or_else(|| TenantState::new(tenant)),
        }
    }
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
    check_access(plan, providers).await?;
    let mut tenants: Vec<TenantLedger> = plan
        .tenants
        .iter()
        .map(|t| {
            let run = runs
                .remove(&t.tenant)
                .expect("the caller locked every tenant of the plan");
            TenantLedger::new(run)
        })
        .collect();

    // Record the protection flag and the applied spec, even when no resource changes.
    for (t, ledger) in plan.tenants.iter().zip(&mut tenants) {
        if ledger.take_flags(t) {
            ledger
                .write_now(store)
                .await
                .map_err(ApplyError::from_write)?;
        }
    }

    let walk = Walk {
        providers,
        store,
        options,
        progress: progress.as_ref(),
    };
    let drained = DrainState::new(plan, &graph, tenants.iter_mut().collect(), walk)?
        .run()
        .await?;
    let failed: Vec<bool> = tenants.iter().map(|t| t.failed).collect();
    let (rollbacks, rollback_calls) = rollback::roll_back_failed(plan, &mut tenants, walk).await?;

    let mut reports = Vec::with_capacity(plan.tenants.len());
    let parts = plan.tenants.iter().zip(tenants).zip(drained.steps);
    for (((t, ledger), steps), (failed, rolled_back)) in
        parts.zip(failed.into_iter().zip(rollbacks))
    {
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
        if let Some(r) = rolled_back {
            outcome = if r.complete {
                TenantOutcome::RolledBack
            } else {
                TenantOutcome::RollbackFailed
            };
            rollback_steps = r.steps;
        }
        let serial = ledger.close(store).await.map_err(ApplyError::from_write)?;
        reports.push(TenantReport {
            tenant: t.tenant.clone(),
            outcome,
            steps,
            rollback: rollback_steps,
            state_serial: serial,
        });
    }
    Ok(ApplyReport {
        format_version: APPLY_REPORT_FORMAT_VERSION,
        tenants: reports,
        duration_ms: started.elapsed().as_millis() as u64,
        interrupted: options.cancel.is_cancelled(),
        mutating_calls: drained.calls + rollback_calls,
    })
}
