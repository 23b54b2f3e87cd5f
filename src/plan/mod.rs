//! The plan: desired resources diffed against state into actions.
//!
//! A [`Plan`] is built once, is immutable, and serializes to a saved plan file. It
//! records, per tenant, the state serial and lineage it was made against; applying
//! it to a state that moved on is refused. The [`graph`] module turns a plan into the
//! dependency graph of steps that `apply` walks.
//!
//! Architecture invariant: no I/O. The engine hands in desired resources, state and
//! (optionally) what a refresh read; the plan is a pure function of those.
//!
//! Diff rules, per resource:
//! - in the blueprint, not in state: **create**;
//! - in state as `creating` (an interrupted create): **create**, resuming;
//! - in state, gone on refresh: **create** (deleted outside tenantform);
//! - attributes differ: **update** in place, or **replace** when a differing attribute
//!   cannot change in place (`force_new` in the type's schema) or `--replace` names it;
//! - replacing a resource replaces everything that depends on it, because the delete
//!   takes dependents with it (`DROP SCHEMA ... CASCADE`, a role's grants);
//! - in state, not in the blueprint: **delete**; refused for a protected tenant;
//! - in state without a secret its provider generates (the role's password of a tenant
//!   adopted from Terraform, which had it and never hands it over): **update**, setting
//!   a new one;
//! - the tenant asked to rotate (`--rotate`): **update** of every such secret, each set
//!   anew, the old one no longer valid. A create or replace sets new ones anyway.

pub mod cost;
pub mod graph;
pub mod identity;
pub mod render;
pub mod saved;
pub mod stream;
pub mod terraform;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::blueprint::TenantBlueprint;
use crate::resource::secret::INPUT_VERSIONS;
use crate::resource::{Attributes, Resource, ResourceAddress, TenantId, schema, version_of};
use crate::secret::REDACTED;
use crate::spec::TenantSpec;
use crate::state::{AppliedSpec, ResourceStatus, TenantState};

/// The plan file format this build writes and reads.
pub const PLAN_FORMAT_VERSION: &str = "1.0";

/// What happens to one resource. Serialized in Terraform's vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Nothing to do: the resource is as the spec wants.
    NoOp,
    /// The resource is created.
    Create,
    /// The resource is changed in place.
    Update,
    /// The resource is deleted, then created again.
    Replace,
    /// The resource is deleted.
    Delete,
}

impl Action {
    /// Terraform's `actions` list for this action (`["delete", "create"]` for a replace).
    pub fn terraform_actions(self) -> &'static [&'static str] {
        match self {
            Action::NoOp => &["no-op"],
            Action::Create => &["create"],
            Action::Update => &["update"],
            Action::Replace => &["delete", "create"],
            Action::Delete => &["delete"],
        }
    }

    /// The symbol in human output: `+ ~ -/+ -`.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }

    /// Whether the action changes anything (everything but [`Action::NoOp`]).
    pub fn is_change(self) -> bool {
        self != Action::NoOp
    }
}

/// Why an action is planned; shown in plans and carried in logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActionReason {
    /// In the blueprint and not in state.
    New,
    /// A previous run started creating it and did not record the outcome.
    ResumeInterruptedCreate,
    /// The spec (or platform catalog) asks for other attributes than state records.
    SpecChanged,
    /// State matches the spec, but the real resource differs (refresh).
    Drifted,
    /// State has it, the real resource is gone (refresh).
    DeletedOutsideTenantform,
    /// Asked for with `--replace`.
    ReplaceRequested,
    /// Something it depends on is replaced.
    DependencyReplaced { dependency: ResourceAddress },
    /// In state and no longer in the blueprint (or the tenant's spec was removed).
    RemovedFromSpec,
    /// `destroy` was asked for.
    DestroyRequested,
    /// A failed run of a new tenant is being undone.
    Rollback,
    /// State does not hold a secret the provider generates (adopted without it): a new
    /// one is set.
    SecretNotInState,
    /// Asked for with `--rotate`: the provider sets new generated secrets (passwords),
    /// and the old ones stop working.
    RotationRequested,
    /// The tenant's credentials secret is written anew (it is new, one of its
    /// credentials is set anew, or it is out of step with them): every password it
    /// holds is set anew with it, since it is written whole and never read.
    CredentialsRenewed,
    /// Taken over from another tool (`tenantform adopt`) and not applied since: the
    /// object as that tool left it differs from the spec in `attributes`.
    Adopted {
        /// The tool it came from, as people know it (`Terraform`).
        from: String,
        attributes: Vec<String>,
    },
    /// Nothing to do: the resource matches its spec (a no-op).
    Unchanged,
}

impl fmt::Display for ActionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionReason::New => f.write_str("new in the spec"),
            ActionReason::ResumeInterruptedCreate => {
                f.write_str("an earlier run was interrupted while creating it")
            }
            ActionReason::SpecChanged => f.write_str("the spec changed"),
            ActionReason::Drifted => f.write_str("changed outside tenantform"),
            ActionReason::DeletedOutsideTenantform => f.write_str("deleted outside tenantform"),
            ActionReason::ReplaceRequested => f.write_str("replacement requested with --replace"),
            ActionReason::DependencyReplaced { dependency } => {
                write!(f, "{dependency} is replaced")
            }
            ActionReason::RemovedFromSpec => f.write_str("no longer in the spec"),
            ActionReason::DestroyRequested => f.write_str("destroy requested"),
            ActionReason::Rollback => f.write_str("rollback of a failed run"),
            ActionReason::SecretNotInState => {
                f.write_str("its generated secret is not in state: a new one is set")
            }
            ActionReason::RotationRequested => {
                f.write_str("rotation requested with --rotate: new secrets are set")
            }
            ActionReason::CredentialsRenewed => f.write_str(
                "the credentials secret is written anew: every password in it is set anew",
            ),
            ActionReason::Adopted { from, attributes } => write!(
                f,
                "adopted from {from}; differs from the spec in {}",
                attributes.join(", ")
            ),
            ActionReason::Unchanged => f.write_str("matches the spec"),
        }
    }
}

/// One attribute that changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributeChange {
    pub name: String,
    /// `None`: not set before. Sensitive values are redacted.
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    /// This attribute alone forces a replacement.
    pub forces_replacement: bool,
}

/// The planned change of one resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceChange {
    pub address: ResourceAddress,
    pub action: Action,
    pub reason: ActionReason,
    /// The resource as it is (refreshed state), sensitive values redacted; `None` when
    /// it does not exist yet, and for a no-op (where it is `after`).
    pub before: Option<Attributes>,
    /// The desired resource; `None` for a delete.
    pub after: Option<Resource>,
    /// What the resource depends on now (state), for ordering its delete.
    pub depends_on_before: Vec<ResourceAddress>,
    pub attribute_changes: Vec<AttributeChange>,
}

impl ResourceChange {
    /// Whether creating this resource may find it existing from an interrupted run.
    pub fn resumes(&self) -> bool {
        self.reason == ActionReason::ResumeInterruptedCreate
    }

    /// The object in its service (bucket, role, schema name): see
    /// [`identity::physical_id`]. From the desired resource, else from what exists.
    pub fn physical_id(&self) -> Option<String> {
        let attributes = match (&self.after, &self.before) {
            (Some(after), _) => &after.attributes,
            (None, Some(before)) => before,
            (None, None) => return None,
        };
        identity::physical_id(self.address.resource_type, attributes)
    }
}

/// What the plan will do to one tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantPlan {
    pub tenant: TenantId,
    /// The state the plan was made against (`None`: the tenant had no state).
    pub state_serial: Option<u64>,
    pub state_lineage: Option<Uuid>,
    /// The tenant has nothing in state: its provisioning is all-or-nothing.
    pub new_tenant: bool,
    /// The spec being applied, as state will record it; `None` when the spec file was
    /// removed.
    pub spec: Option<AppliedSpec>,
    /// The protection flag to record: the spec's, or state's when the spec is gone.
    pub protected: bool,
    /// The protection flag recorded in state now.
    pub protected_before: bool,
    /// Every resource of the tenant, no-ops included, in address order.
    pub changes: Vec<ResourceChange>,
    /// The tenant's estimated monthly cost under this plan; `None` when its spec is
    /// gone or the plan destroys it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<cost::CostEstimate>,
}

impl TenantPlan {
    /// Whether applying the plan would change the tenant: a resource action, or a change of
    /// its protection.
    pub fn has_changes(&self) -> bool {
        self.protected != self.protected_before || self.changes.iter().any(|c| c.action.is_change())
    }

    /// How many of the tenant's resources get `action`.
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }
}

/// What kind of run a plan is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanMode {
    /// Converge to the specs.
    Normal,
    /// Delete everything of the selected tenants.
    Destroy,
}

/// A complete plan over one or more tenants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: String,
    pub created_at: DateTime<Utc>,
    pub mode: PlanMode,
    /// Whether resources were read back from their endpoints before diffing.
    pub refreshed: bool,
    pub tenants: Vec<TenantPlan>,
    /// What the policies said about this plan; `None` when no policy directory is
    /// configured. Filled in while the plan is made (the policies read the plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::policy::PolicyReport>,
    /// The AWS account the plan's ARNs are in, when the plan read the endpoints (a
    /// refreshing plan asks it once). The plan's values keep
    /// [`ACCOUNT_PLACEHOLDER`](crate::resource::iam::ACCOUNT_PLACEHOLDER), as state and
    /// the blueprint do; the human and JSON views show this id in its place,
    /// as Terraform shows real ARNs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_account_id: Option<String>,
}

impl Plan {
    /// `text` (a view of this plan) with the account id in place of the placeholder,
    /// when the plan knows it.
    pub(crate) fn show_account(&self, text: String) -> String {
        match &self.aws_account_id {
            Some(account) => text.replace(crate::resource::iam::ACCOUNT_PLACEHOLDER, account),
            None => text,
        }
    }

    /// Whether applying the plan would change any tenant.
    pub fn has_changes(&self) -> bool {
        self.tenants.iter().any(TenantPlan::has_changes)
    }

    /// Every tenant's resource changes, tenant by tenant, no-ops included.
    pub fn changes(&self) -> impl Iterator<Item = &ResourceChange> {
        self.tenants.iter().flat_map(|t| t.changes.iter())
    }

    /// How many resources get `action`, over all tenants.
    pub fn count(&self, action: Action) -> usize {
        self.tenants.iter().map(|t| t.count(action)).sum()
    }

    /// The estimated monthly cost of every tenant in the plan that has an estimate.
    pub fn monthly_cost_inr(&self) -> f64 {
        self.tenants
            .iter()
            .filter_map(|t| t.cost.as_ref())
            .map(|c| c.monthly_inr)
            .sum()
    }

    /// Warnings for tenants whose estimate exceeds their budget.
    pub fn budget_warnings(&self) -> Vec<String> {
        self.tenants
            .iter()
            .filter_map(|t| t.cost.as_ref().and_then(|c| c.warning(t.tenant.as_str())))
            .collect()
    }
}

/// A plan that cannot be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlanError {
    /// The plan would delete or replace resources of a protected tenant; nothing was changed.
    #[error(
        "tenant {tenant} is protected ({source_of_flag}); the plan would {verb} {addresses}; nothing was changed: {fix}"
    )]
    Protected {
        tenant: TenantId,
        source_of_flag: String,
        fix: String,
        verb: &'static str,
        addresses: String,
    },
    /// The resources depend on each other in a cycle.
    #[error("dependency cycle between {}; break it in the blueprint", .0.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" -> "))]
    Cycle(Vec<ResourceAddress>),
    /// A resource depends on one the plan does not know (a blueprint bug).
    #[error(
        "{address} depends on {dependency}, which the plan does not know; this is a blueprint bug"
    )]
    UnknownDependency {
        address: ResourceAddress,
        dependency: ResourceAddress,
    },
    /// `--replace` named a resource that is not in the tenant's state.
    #[error("cannot replace {0}: no such resource in the state of that tenant")]
    UnknownReplaceTarget(ResourceAddress),
}

/// Inputs of one tenant's diff.
pub struct TenantInput<'a> {
    pub tenant: &'a TenantId,
    /// `None` when the tenant's spec file is gone (or in destroy mode).
    pub spec: Option<&'a TenantSpec>,
    pub blueprint: Option<&'a TenantBlueprint>,
    pub state: Option<&'a TenantState>,
    /// Refresh results by local address: `Some(None)` = read and gone,
    /// `Some(Some(attrs))` = read, `None` = not read.
    pub refreshed: &'a BTreeMap<String, Option<Attributes>>,
    /// Rotate the tenant's generated secrets (`--rotate`): every resource that keeps
    /// one gets a new one.
    pub rotate: bool,
}

/// Diffs one tenant. `replace` names resources to replace; `destroy` deletes all.
pub fn plan_tenant(
    input: TenantInput<'_>,
    mode: PlanMode,
    replace: &BTreeSet<ResourceAddress>,
) -> Result<TenantPlan, PlanError> {
    let tenant = input.tenant;
    let empty = TenantState::new(tenant.clone());
    let state = input.state.unwrap_or(&empty);
    let desired: Vec<&Resource> = match (mode, input.blueprint) {
        (PlanMode::Normal, Some(bp)) => bp.resources.iter().collect(),
        _ => Vec::new(),
    };
    for r in replace.iter().filter(|a| &a.tenant == tenant) {
        if state.get(r).is_none() {
            return Err(PlanError::UnknownReplaceTarget(r.clone()));
        }
    }

    let mut changes: BTreeMap<ResourceAddress, ResourceChange> = BTreeMap::new();
    for r in &desired {
        let key = r.address.local();
        let current = state.resources.get(&key);
        let change = match current {
            None => new_change(r, ActionReason::New, None, Vec::new()),
            Some(cur) if cur.status == ResourceStatus::Creating => new_change(
                r,
                ActionReason::ResumeInterruptedCreate,
                None,
                cur.depends_on.clone(),
            ),
            Some(cur) => match input.refreshed.get(&key) {
                Some(None) => new_change(
                    r,
                    ActionReason::DeletedOutsideTenantform,
                    None,
                    cur.depends_on.clone(),
                ),
                refreshed => {
                    let actual = refreshed
                        .and_then(|r| r.as_ref())
                        .unwrap_or(&cur.attributes);
                    let mut change =
                        diff_existing(r, &cur.attributes, actual, cur.depends_on.clone(), replace);
                    set_new_secrets(&mut change, &cur.attributes, input.rotate);
                    mark_adopted(&mut change, state);
                    change
                }
            },
        };
        changes.insert(r.address.clone(), change);
    }
    let desired_keys: BTreeSet<String> = desired.iter().map(|r| r.address.local()).collect();
    for (key, cur) in &state.resources {
        if desired_keys.contains(key) {
            continue;
        }
        let address = ResourceAddress::new(tenant, cur.resource_type, &cur.name);
        let reason = match mode {
            PlanMode::Destroy => ActionReason::DestroyRequested,
            PlanMode::Normal => ActionReason::RemovedFromSpec,
        };
        let before = match input.refreshed.get(key) {
            Some(Some(a)) => Some(redact(a, cur.resource_type)),
            _ => Some(redact(&cur.attributes, cur.resource_type)),
        };
        changes.insert(
            address.clone(),
            ResourceChange {
                address,
                action: Action::Delete,
                reason,
                before,
                after: None,
                depends_on_before: cur.depends_on.clone(),
                attribute_changes: Vec::new(),
            },
        );
    }
    cascade_replacements(&mut changes);
    renew_credentials(&mut changes, state, input.refreshed, input.rotate);
    // A no-op's `before` equals its `after` in every configured attribute. Keeping both
    // would double the memory of a plan over thousands of tenants (mostly no-ops) for
    // nothing; the JSON view shows a no-op's `before` from its `after`.
    for c in changes.values_mut().filter(|c| c.action == Action::NoOp) {
        c.before = None;
    }

    // While the spec exists it decides (as Terraform's prevent_destroy does); once the
    // spec file is removed, the flag recorded in state still holds, so removing the
    // file lifts nothing.
    let protected = input.spec.map_or(state.protected, |s| s.protected);
    if protected {
        let destroyed: Vec<String> = changes
            .values()
            .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
            .map(|c| c.address.to_string())
            .collect();
        if !destroyed.is_empty() {
            let (source_of_flag, fix) = match input.spec {
                Some(_) => (
                    format!("protected = true in specs/tenants/{tenant}.toml"),
                    format!("set protected = false in specs/tenants/{tenant}.toml to allow it"),
                ),
                None => (
                    "recorded in its state; its spec file was removed".into(),
                    format!(
                        "restore specs/tenants/{tenant}.toml with protected = false, apply it, then remove it"
                    ),
                ),
            };
            let all_deleted = changes.values().all(|c| c.action == Action::Delete);
            return Err(PlanError::Protected {
                tenant: tenant.clone(),
                source_of_flag,
                fix,
                verb: if all_deleted {
                    "delete"
                } else {
                    "delete or replace"
                },
                addresses: summarize(&destroyed),
            });
        }
    }

    Ok(TenantPlan {
        tenant: tenant.clone(),
        state_serial: input.state.map(|s| s.serial),
        state_lineage: input.state.map(|s| s.lineage),
        new_tenant: state.resources.is_empty(),
        spec: input.spec.map(AppliedSpec::from),
        protected,
        protected_before: state.protected,
        changes: changes.into_values().collect(),
        cost: None,
    })
}

fn summarize(addresses: &[String]) -> String {
    if addresses.len() <= 3 {
        addresses.join(", ")
    } else {
        format!(
            "{} and {} more",
            addresses[..3].join(", "),
            addresses.len() - 3
        )
    }
}

fn new_change(
    r: &Resource,
    reason: ActionReason,
    before: Option<Attributes>,
    depends_on_before: Vec<ResourceAddress>,
) -> ResourceChange {
    let attribute_changes = r
        .attributes
        .iter()
        .map(|(name, v)| AttributeChange {
            name: name.clone(),
            before: None,
            after: Some(redact_value(r.address.resource_type, name, v)),
            forces_replacement: false,
        })
        .collect();
    ResourceChange {
        address: r.address.clone(),
        action: Action::Create,
        reason,
        before,
        after: Some((*r).clone()),
        depends_on_before,
        attribute_changes,
    }
}

/// Diffs a resource that exists. `recorded` is what state says, `actual` what the
/// refresh read (or state again when not refreshed).
fn diff_existing(
    r: &Resource,
    recorded: &Attributes,
    actual: &Attributes,
    depends_on_before: Vec<ResourceAddress>,
    replace: &BTreeSet<ResourceAddress>,
) -> ResourceChange {
    let schema = r.schema();
    let mut attribute_changes = Vec::new();
    let mut spec_changed = false;
    for a in schema.attributes.iter().filter(|a| !a.computed) {
        let want = r.attributes.get(a.name);
        let have = actual.get(a.name);
        if !a.same(want, have) {
            if !a.same(want, recorded.get(a.name)) {
                spec_changed = true;
            }
            attribute_changes.push(AttributeChange {
                name: a.name.to_owned(),
                before: have.map(|v| redact_value(schema.resource_type, a.name, v)),
                after: want.map(|v| redact_value(schema.resource_type, a.name, v)),
                forces_replacement: a.force_new,
            });
        }
    }
    let (action, reason) = if replace.contains(&r.address) {
        (Action::Replace, ActionReason::ReplaceRequested)
    } else if attribute_changes.is_empty() {
        (Action::NoOp, ActionReason::Unchanged)
    } else {
        let action = if attribute_changes.iter().any(|c| c.forces_replacement) {
            Action::Replace
        } else {
            Action::Update
        };
        let reason = if spec_changed {
            ActionReason::SpecChanged
        } else {
            ActionReason::Drifted
        };
        (action, reason)
    };
    ResourceChange {
        address: r.address.clone(),
        action,
        reason,
        before: Some(redact(actual, r.address.resource_type)),
        after: Some(r.clone()),
        depends_on_before,
        attribute_changes,
    }
}

/// Plans a new value for the secrets the provider generates (computed, sensitive,
/// unreadable): all of them when `rotate` asks for it, else those `recorded` lacks (an
/// adopted resource's secret stays with the tool it came from, never in tenantform's
/// state, so the next apply sets a new one). A create or replace sets new secrets
/// anyway, so only an update or a no-op gets them.
fn set_new_secrets(change: &mut ResourceChange, recorded: &Attributes, rotate: bool) {
    if !matches!(change.action, Action::NoOp | Action::Update) {
        return;
    }
    let schema = schema(change.address.resource_type);
    let new: Vec<&crate::resource::AttributeSchema> = schema
        .attributes
        .iter()
        .filter(|a| a.computed && a.sensitive && !a.readable)
        .filter(|a| rotate || !recorded.contains_key(&recorded_as(a)))
        .collect();
    if new.is_empty() {
        return;
    }
    for a in new {
        change.attribute_changes.push(AttributeChange {
            name: a.name.to_owned(),
            // There was one when state records it (or its version): redacted.
            before: recorded
                .contains_key(&recorded_as(a))
                .then(|| serde_json::Value::String(REDACTED.into())),
            after: Some(serde_json::Value::String(REDACTED.into())),
            forces_replacement: false,
        });
    }
    if change.action == Action::NoOp {
        change.action = Action::Update;
        change.reason = if rotate {
            ActionReason::RotationRequested
        } else {
            ActionReason::SecretNotInState
        };
    }
}

/// Says so when a resource adopted from another tool, and not applied since, differs
/// from its spec: as recorded, it is what that tool left, not an older spec.
fn mark_adopted(change: &mut ResourceChange, state: &TenantState) {
    if change.reason != ActionReason::SpecChanged || state.applied_spec.is_some() {
        return;
    }
    let Some(record) = &state.adopted_from else {
        return;
    };
    if !record.objects.iter().any(|o| o.address == change.address) {
        return;
    }
    let from = match record.tool.as_str() {
        "terraform" => "Terraform".to_owned(),
        other => other.to_owned(),
    };
    change.reason = ActionReason::Adopted {
        from,
        attributes: change
            .attribute_changes
            .iter()
            .map(|a| a.name.clone())
            .collect(),
    };
}

/// Replaces every existing dependent of a replaced resource, transitively.
/// What state records of generated secret `a`: its version when it is ephemeral.
fn recorded_as(a: &crate::resource::AttributeSchema) -> String {
    if a.ephemeral {
        version_of(a.name)
    } else {
        a.name.to_owned()
    }
}

/// A resource that takes ephemeral inputs (the credentials secret takes the role's and
/// the Redis user's passwords) can only be written with all of them, and they exist
/// only in the apply that sets them. So the inputs are set anew together with the
/// write: when the taker is created or replaced, when any input is set anew (its
/// resource created or replaced, `--rotate`, adopted without it), when the versions
/// the taker was last written with are not what state records for its inputs (an apply
/// stopped between the two), or when its value was changed outside tenantform.
fn renew_credentials(
    changes: &mut BTreeMap<ResourceAddress, ResourceChange>,
    state: &TenantState,
    refreshed: &BTreeMap<String, Option<Attributes>>,
    rotate: bool,
) {
    // Per taker, its ephemeral inputs as (input name, resource, attribute).
    type EphemeralInputs = Vec<(String, ResourceAddress, String)>;
    let takers: Vec<(ResourceAddress, EphemeralInputs)> = changes
        .values()
        .filter_map(|c| {
            let inputs: Vec<_> = c
                .after
                .as_ref()?
                .inputs
                .iter()
                .filter(|(_, i)| {
                    schema(i.from.resource_type)
                        .attribute(&i.attribute)
                        .is_some_and(|a| a.ephemeral)
                })
                .map(|(name, i)| (name.clone(), i.from.clone(), i.attribute.clone()))
                .collect();
            (!inputs.is_empty()).then(|| (c.address.clone(), inputs))
        })
        .collect();
    let writes = |c: &ResourceChange| matches!(c.action, Action::Create | Action::Replace);
    for (taker, inputs) in takers {
        let recorded = state.get(&taker).map(|r| &r.attributes);
        let versions = recorded.and_then(|a| a.get(INPUT_VERSIONS));
        let value_changed_outside = match (recorded, refreshed.get(&taker.local())) {
            (Some(before), Some(Some(now))) => before.get("version_id") != now.get("version_id"),
            _ => false,
        };
        let renew = rotate
            || value_changed_outside
            || changes.get(&taker).is_some_and(writes)
            || inputs.iter().any(|(name, from, attribute)| {
                let source = changes.get(from);
                let recorded_version = state
                    .get(from)
                    .and_then(|r| r.attributes.get(&version_of(attribute)));
                source.is_some_and(|c| {
                    writes(c) || c.attribute_changes.iter().any(|a| &a.name == attribute)
                }) || recorded_version.is_none()
                    || versions.and_then(|v| v.get(name)) != recorded_version
            });
        if !renew {
            continue;
        }
        let reason = if rotate {
            ActionReason::RotationRequested
        } else {
            ActionReason::CredentialsRenewed
        };
        let redacted = || Some(serde_json::Value::String(REDACTED.into()));
        let mut renewed: Vec<(ResourceAddress, String)> = inputs
            .into_iter()
            .map(|(_, from, attribute)| (from, attribute))
            .collect();
        renewed.push((taker, crate::resource::secret::VALUE.to_owned()));
        for (address, attribute) in renewed {
            let Some(c) = changes.get_mut(&address) else {
                continue;
            };
            if writes(c) || c.attribute_changes.iter().any(|a| a.name == attribute) {
                continue;
            }
            if !matches!(c.action, Action::NoOp | Action::Update) {
                continue;
            }
            c.attribute_changes.push(AttributeChange {
                name: attribute,
                before: redacted(),
                after: redacted(),
                forces_replacement: false,
            });
            if c.action == Action::NoOp {
                c.action = Action::Update;
                c.reason = reason.clone();
            }
        }
    }
}

fn cascade_replacements(changes: &mut BTreeMap<ResourceAddress, ResourceChange>) {
    loop {
        let replaced: Vec<ResourceAddress> = changes
            .values()
            .filter(|c| c.action == Action::Replace)
            .map(|c| c.address.clone())
            .collect();
        let mut changed = false;
        for c in changes.values_mut() {
            if !matches!(c.action, Action::NoOp | Action::Update) {
                continue;
            }
            let deps = c.after.as_ref().map(|r| &r.depends_on);
            if let Some(dep) = deps
                .into_iter()
                .flatten()
                .chain(&c.depends_on_before)
                .find(|d| replaced.contains(d))
            {
                c.reason = ActionReason::DependencyReplaced {
                    dependency: dep.clone(),
                };
                c.action = Action::Replace;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

fn redact_value(
    t: crate::resource::ResourceType,
    name: &str,
    v: &serde_json::Value,
) -> serde_json::Value {
    if schema(t).is_sensitive(name) {
        serde_json::Value::String(REDACTED.into())
    } else {
        v.clone()
    }
}

/// A copy of `attrs` with sensitive values replaced by [`REDACTED`].
pub fn redact(attrs: &Attributes, t: crate::resource::ResourceType) -> Attributes {
    attrs
        .iter()
        .map(|(k, v)| (k.clone(), redact_value(t, k, v)))
        .collect()
}

#[cfg(test)]
mod render_tests;
#[cfg(test)]
pub(crate) mod tests;
