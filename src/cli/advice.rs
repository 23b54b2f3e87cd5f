//! What to run next, for the library's errors. The library says what is wrong in its
//! own terms (its errors also reach HTTP callers, who have no flags to pass); the CLI
//! adds the flags and commands that fix it, as a `Hint:` after the error.

use tenantform::Error;
use tenantform::plan::PlanError;
use tenantform::policy::PolicyError;
use tenantform::state::{StateEditError, StateError};
use tenantform::workflow::WorkflowError;

/// The hint for the first error in `error`'s chain that has one.
pub fn advice(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return for_engine(e);
        }
        if let Some(e) = cause.downcast_ref::<WorkflowError>() {
            return match e {
                WorkflowError::Engine(e) => for_engine(e),
                _ => None,
            };
        }
        if let Some(e) = cause.downcast_ref::<StateError>() {
            return for_state(e);
        }
        if let Some(e) = cause.downcast_ref::<PlanError>() {
            return for_plan(e);
        }
        if let Some(e) = cause.downcast_ref::<StateEditError>() {
            return for_state_edit(e);
        }
        cause.downcast_ref::<PolicyError>().and_then(for_policy)
    })
}

fn for_engine(e: &Error) -> Option<String> {
    match e {
        Error::Refresh { .. } => Some(
            "pass --refresh=false to plan from state alone, without reading the endpoints".into(),
        ),
        Error::State(e) => for_state(e),
        Error::StateEdit(e) => for_state_edit(e),
        Error::Plan(e) => for_plan(e),
        Error::Policy(e) => for_policy(e),
        _ => None,
    }
}

fn for_state(e: &StateError) -> Option<String> {
    match e {
        StateError::StoredCorrupt { tenant, .. } => Some(format!(
            "recover a good version with `tenantform state history {tenant}` and `tenantform state rollback {tenant} --serial N`, or repair the row"
        )),
        StateError::Locked { tenant, holder } => Some(format!(
            "wait for it to finish (or pass --lock-timeout 5m to wait), or if that process is stuck, run `tenantform force-unlock {tenant} {}`",
            holder.id
        )),
        _ => None,
    }
}

fn for_state_edit(e: &StateEditError) -> Option<String> {
    match e {
        StateEditError::NotInState(address) => Some(format!(
            "`tenantform state list --tenant {}` shows what exists",
            address.tenant
        )),
        _ => None,
    }
}

fn for_plan(e: &PlanError) -> Option<String> {
    match e {
        PlanError::UnknownReplaceTarget(address) => Some(format!(
            "`tenantform state list --tenant {}` shows what --replace can name",
            address.tenant
        )),
        _ => None,
    }
}

fn for_policy(e: &PolicyError) -> Option<String> {
    match e {
        PolicyError::NoDirectory { .. } => {
            Some("create it, or fix --policy or [policy] dir in platform.toml".into())
        }
        PolicyError::NoPolicies { .. } => {
            Some("add policies there, or drop --policy or [policy] dir".into())
        }
        _ => None,
    }
}
