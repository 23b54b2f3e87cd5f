//! Undoing a new tenant whose provisioning failed part way.
//!
//! The rollback is itself a plan: a delete of every resource the tenant's state holds
//! after the failed run (created ones and ones whose create was under way), walked in
//! reverse dependency order by the same executor. A new tenant had nothing before the
//! run, so that is exactly what this run created; a create that failed because the name
//! was taken left no record, so what belongs to someone else is never deleted. A
//! protected flag does not stop it: protection guards what existed before, and a new
//! tenant had nothing.

use chrono::Utc;

use super::drain::{DrainState, TenantLedger, Walk};
use super::{ApplyError, ApplyOptions, Progress, StepOutcome, StepRecord};
use crate::plan::graph::ActionGraph;
use crate::plan::{Action, ActionReason, Plan, PlanMode, ResourceChange, TenantPlan, redact};
use crate::resource::ResourceAddress;
use crate::state::TenantState;

/// The delete plan that empties `state`.
pub fn rollback_plan(state: &TenantState) -> Plan {
    delete_plan(vec![emptying(state)])
}

/// The delete of everything `state` holds, as one tenant's part of a plan.
fn emptying(state: &TenantState) -> TenantPlan {
    let changes = state
        .resources
        .values()
        .map(|r| ResourceChange {
            address: ResourceAddress::new(&state.tenant, r.resource_type, &r.name),
            action: Action::Delete,
            reason: ActionReason::Rollback,
            before: Some(redact(&r.attributes, r.resource_type)),
            after: None,
            depends_on_before: r.depends_on.clone(),
            attribute_changes: Vec::new(),
        })
        .collect();
    TenantPlan {
        tenant: state.tenant.clone(),
        state_serial: Some(state.serial),
        state_lineage: Some(state.lineage),
        new_tenant: false,
        spec: None,
        protected: state.protected,
        protected_before: state.protected,
        changes,
        cost: None,
    }
}

fn delete_plan(tenants: Vec<TenantPlan>) -> Plan {
    Plan {
        format_version: crate::plan::PLAN_FORMAT_VERSION.into(),
        created_at: Utc::now(),
        mode: PlanMode::Destroy,
        refreshed: false,
        policy: None,
        aws_account_id: None,
        tenants,
    }
}

/// How one tenant's rollback went.
pub(super) struct RolledBack {
    pub steps: Vec<StepRecord>,
    /// Everything was deleted and state holds nothing.
    pub complete: bool,
}

/// Rolls back every new tenant of `plan` whose provisioning failed, all in one walk
/// (unless rollback is off or the apply was interrupted). Returns, per tenant of the
/// plan, its rollback if it had one, and the mutating calls made.
pub(super) async fn roll_back_failed(
    plan: &Plan,
    tenants: &mut [TenantLedger],
    walk: Walk<'_>,
) -> Result<(Vec<Option<RolledBack>>, usize), ApplyError> {
    let mut out: Vec<Option<RolledBack>> = tenants.iter().map(|_| None).collect();
    if !walk.options.rollback || walk.options.cancel.is_cancelled() {
        return Ok((out, 0));
    }
    let chosen: Vec<bool> = plan
        .tenants
        .iter()
        .zip(tenants.iter())
        .map(|(t, l)| t.new_tenant && l.failed)
        .collect();
    if !chosen.contains(&true) {
        return Ok((out, 0));
    }
    let mut parts = Vec::new();
    for (ledger, _) in tenants.iter_mut().zip(&chosen).filter(|(_, c)| **c) {
        let resources = ledger.state.resources.len();
        tracing::warn!(tenant = %ledger.state.tenant, resources, "rolling back a new tenant");
        if let Some(sink) = walk.progress {
            sink(&Progress::RollbackStarted {
                tenant: ledger.state.tenant.clone(),
                resources,
            });
        }
        ledger.failed = false;
        ledger.halted = false;
        parts.push(emptying(&ledger.state));
    }
    let rollback = delete_plan(parts);
    let graph = ActionGraph::build(&rollback)?;
    let options = ApplyOptions {
        rollback: false,
        ..walk.options.clone()
    };
    let walk = Walk {
        options: &options,
        ..walk
    };
    let ledgers: Vec<&mut TenantLedger> = tenants
        .iter_mut()
        .zip(&chosen)
        .filter(|(_, c)| **c)
        .map(|(l, _)| l)
        .collect();
    let drained = DrainState::new(&rollback, &graph, ledgers, walk)?
        .run()
        .await?;
    let mut steps = drained.steps.into_iter();
    for ((ledger, slot), _) in tenants
        .iter_mut()
        .zip(out.iter_mut())
        .zip(&chosen)
        .filter(|(_, c)| **c)
    {
        let steps = steps
            .next()
            .expect("one record list per rolled back tenant");
        let complete = !ledger.failed
            && ledger.state.resources.is_empty()
            && steps.iter().all(|s| s.outcome == StepOutcome::Done);
        // The run as a whole failed, whatever the rollback did.
        ledger.failed = true;
        *slot = Some(RolledBack { steps, complete });
    }
    Ok((out, drained.calls))
}
