//! The library's error type: one variant per stage that can fail, each a sentence a
//! person can act on.

use std::path::PathBuf;

use crate::apply::ApplyError;
use crate::plan::PlanError;
use crate::plan::identity::IdentityMismatch;
use crate::policy::PolicyError;
use crate::provider::ProviderError;
use crate::resource::{ResourceAddress, TenantId};
use crate::spec::SpecErrors;
use crate::state::{StateEditError, StateError};

/// Everything the [`Engine`](crate::Engine) can fail with; the message of each says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The specs or platform.toml are invalid; every problem is listed.
    #[error(transparent)]
    Spec(#[from] SpecErrors),
    /// The state could not be read, locked or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A plan could not be made from the specs and state.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The apply stopped as a whole (failed steps are in the [`ApplyReport`](crate::ApplyReport) instead).
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The Terraform state to adopt from cannot be read (see [`crate::adopt`]).
    #[error(transparent)]
    Adopt(#[from] crate::adopt::AdoptError),
    /// The policy checks could not run.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A resource could not be read back from its endpoint while refreshing a plan.
    #[error("cannot read {address} back from its endpoint: {source}")]
    Refresh {
        address: ResourceAddress,
        source: Box<ProviderError>,
    },
    // Not a `#[source]`: the message already includes it, and `{:#}` printers would
    // repeat it.
    /// The providers could not be set up (configuration or credentials).
    #[error("cannot set up the providers: {0}")]
    Provider(ProviderError),
    /// The tenant specs requested through the registry could not be read; nothing was done.
    #[error(
        "cannot read the specs of the tenants requested through the registry (table tenantform.tenant_specs in the platform database): {0}; nothing was done, since a plan without them would delete those tenants: check the [postgres] settings and that the database is up"
    )]
    RegisteredSpecs(String),
    /// The tenant has neither a spec nor state.
    #[error("unknown tenant {0}: there is no specs/tenants/{0}.toml and no state for it")]
    UnknownTenant(TenantId),
    /// `--rotate` names a tenant whose secrets the run cannot rotate; nothing was done.
    #[error(
        "cannot rotate the secrets of tenant {tenant} (--rotate {tenant}): {why}; nothing was changed"
    )]
    RotateTarget { tenant: TenantId, why: String },
    /// A saved plan was made against another state serial than the current one; nothing was changed.
    #[error(
        "the saved plan is stale for tenant {tenant}: it was made against {planned}, but the state is now {current}; nothing was changed: run `tenantform plan` again"
    )]
    StalePlan {
        tenant: TenantId,
        planned: String,
        current: String,
    },
    /// A state or plan names objects that do not belong to the tenant; nothing was changed.
    #[error(
        "{what} names objects that are not tenant {tenant}'s: {}; nothing was changed: if the file was edited, restore it (a state file from its .backup, a plan by planning again); if a [naming] template changed, list the old template under [naming] renamed_from",
        mismatches.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("; ")
    )]
    NotTheTenants {
        /// "state file PATH", the state's row in PostgreSQL, or "the saved plan".
        what: String,
        tenant: TenantId,
        mismatches: Vec<IdentityMismatch>,
    },
    /// A plan file could not be read, parsed or written.
    #[error("cannot use plan file {}: {detail}", path.display())]
    PlanFile { path: PathBuf, detail: String },
    /// A manual state edit (`state rm`, `state mv`, ...) was refused.
    #[error(transparent)]
    StateEdit(#[from] StateEditError),
    /// The address to import is not declared in the tenant's spec.
    #[error(
        "{address} is not in the spec of tenant {}: import adopts only what the spec declares ({known})", address.tenant
    )]
    ImportNotInSpec {
        address: ResourceAddress,
        known: String,
    },
    /// The id given to import is not the one the spec derives for the address.
    #[error(
        "the spec declares {address} as {expected:?}, not {given:?}; nothing was changed: import {expected:?}, or change the spec first"
    )]
    ImportIdMismatch {
        address: ResourceAddress,
        given: String,
        expected: String,
    },
    /// The address to import is already in state.
    #[error("{0} is already managed by tenantform; nothing was changed")]
    ImportAlreadyManaged(ResourceAddress),
    /// The object to import does not exist at its endpoint.
    #[error("cannot import {address}: {id:?} does not exist at its endpoint; nothing was changed")]
    ImportNotFound {
        address: ResourceAddress,
        id: String,
    },
}

impl From<ProviderError> for Error {
    fn from(e: ProviderError) -> Self {
        Error::Provider(e)
    }
}
