//! Undoing a new tenant whose provisioning failed part way.
//!
//! The rollback is itself a plan: a delete of every resource the tenant's state holds
//! after the failed run (created ones and ones whose create was under way), walked in
//! reverse dependency order by the same executor. A protected flag does not stop it:
//! protection guards what existed before, and a new tenant had nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;

use super::{ApplyError, ApplyOptions, ProgressSink, SharedRun, StepOutcome, StepRecord, Walk};
use crate::plan::graph::ActionGraph;
use crate::plan::{Action, ActionReason, Plan, PlanMode, ResourceChange, TenantPlan, redact};
use crate::provider::ProviderSet;
use crate::resource::TenantId;
use crate::state::{StateStore, TenantState};

/// The delete plan that empties `state`.
pub fn rollback_plan(state: &TenantState) -> Plan {
    let changes = state
        .resources
        .values()
        .map(|r| {
            let address =
                crate::resource::ResourceAddress::new(&state.tenant, r.resource_type, &r.name);
            ResourceChange {
                address,
                action: Action::Delete,
                reason: ActionReason::Rollback,
                before: Some(redact(&r.attributes, r.resource_type)),
                after: None,
                depends_on_before: r.depends_on.clone(),
                attribute_changes: Vec::new(),
            }
        })
        .collect();
    Plan {
        format_version: crate::plan::PLAN_FORMAT_VERSION.into(),
        created_at: Utc::now(),
        mode: PlanMode::Destroy,
        refreshed: false,
        policy: None,
        tenants: vec![TenantPlan {
            tenant: state.tenant.clone(),
            state_serial: Some(state.serial),
            state_lineage: Some(state.lineage),
            new_tenant: false,
            spec: None,
            protected: state.protected,
            protected_before: state.protected,
            changes,
            cost: None,
        }],
    }
}

/// Rolls the tenant back; returns the steps, the mutating calls made, and whether
/// everything was deleted.
pub(super) async fn run(
    tenant: &TenantId,
    run: SharedRun,
    providers: &ProviderSet,
    store: &StateStore,
    options: &ApplyOptions,
    progress: Option<ProgressSink>,
) -> Result<(Vec<StepRecord>, usize, bool), ApplyError> {
    let plan = {
        let mut r = run.lock().expect("run lock");
        r.halted = false;
        r.failed = false;
        rollback_plan(&r.state)
    };
    tracing::warn!(%tenant, resources = plan.tenants[0].changes.len(), "rolling back a new tenant");
    let walk = Walk {
        graph: Arc::new(ActionGraph::build(&plan)?),
        plan: Arc::new(plan),
        runs: vec![run.clone()],
        providers: providers.clone(),
        store: store.clone(),
        progress,
        calls: Arc::new(AtomicUsize::new(0)),
    };
    let options = ApplyOptions {
        rollback: false,
        ..options.clone()
    };
    let mut records = super::walk_graph(&walk, &options).await?;
    let steps = records.remove(&0).unwrap_or_default();
    let ok = {
        let r: &Mutex<_> = &run;
        let r = r.lock().expect("run lock");
        !r.failed && r.state.resources.is_empty()
    } && steps.iter().all(|s| s.outcome == StepOutcome::Done);
    // The run as a whole failed, whatever the rollback did.
    run.lock().expect("run lock").failed = true;
    Ok((steps, walk.calls.load(Ordering::SeqCst), ok))
}
