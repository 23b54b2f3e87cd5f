//! State is input too: the names a tenant's state holds must be that tenant's.
//!
//! Every delete and replace acts on the object that *state* names, so a state file
//! edited to name another tenant's role (or the admin's, or `/etc/passwd` as a
//! dashboard file) would have apply drop it. Before a state is planned or applied, each
//! of its resources' identity attributes (the `force_new` attributes that name a
//! physical object: a schema, a role, a bucket, an IAM name, a cluster id, a Redis
//! user, a dashboard uid or file, the schema, table and role of a grant) is compared
//! with what the spec and `[naming]` give that tenant.
//!
//! - A resource at an address the blueprint has must carry exactly the blueprint's
//!   names (or those of a template listed in `[naming] renamed_from`).
//! - A resource at an address the blueprint does not have (left over from an older
//!   blueprint) may only name objects the blueprint gives this tenant elsewhere.
//! - A tenant without a spec is checked against the names its id gets from the naming
//!   templates (identity attributes depend on the id and the platform only).
//!
//! `force_new` attributes that place a resource rather than name it (`region`,
//! `engine`, `num_nodes`, `dimension`, `backend`, `command`, `description`) are not
//! compared: a change of those is an ordinary replacement.
//!
//! Pure, like the rest of `plan`: the engine hands in the state and the specs, and
//! turns the mismatches into an error that names the file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::blueprint::{TenantBlueprint, tenant_blueprint};
use crate::resource::{Attributes, ResourceAddress, TenantId, schema};
use crate::spec::{PlatformSpec, TenantSpec, printable};
use crate::state::TenantState;

/// `force_new` attributes that say where or how big a resource is, not which object.
const PLACEMENT: &[&str] = &[
    "region",
    "engine",
    "num_nodes",
    "dimension",
    "backend",
    "command",
    "description",
];

/// Whether attribute `name` of a resource type names the physical object.
pub fn is_identity(resource_type: crate::resource::ResourceType, name: &str) -> bool {
    schema(resource_type)
        .attribute(name)
        .is_some_and(|a| a.force_new && !a.computed && !PLACEMENT.contains(&a.name))
}

/// The physical object a resource is, in the words of its service (a bucket name, a
/// role name, a schema, a cluster id): its identity attribute's value, or each
/// identity attribute named with its value when there are several. Shown next to the address, as CloudFormation shows the
/// physical id next to the logical one. `None` when `attributes` holds none of them.
pub fn physical_id(
    resource_type: crate::resource::ResourceType,
    attributes: &crate::resource::Attributes,
) -> Option<String> {
    let names: Vec<(&str, String)> = schema(resource_type)
        .attributes
        .iter()
        .filter(|a| is_identity(resource_type, a.name))
        .filter_map(|a| match attributes.get(a.name)? {
            serde_json::Value::String(s) => Some((a.name, printable(s).into_owned())),
            serde_json::Value::Null => None,
            other => Some((a.name, other.to_string())),
        })
        .collect();
    match names.as_slice() {
        [] => None,
        [(_, one)] => Some(one.clone()),
        // Several names (a grant's schema, table and role) say which is which.
        many => Some(
            many.iter()
                .map(|(name, v)| format!("{name} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    }
}

/// One identity attribute whose value is not one the tenant's spec gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityMismatch {
    pub address: ResourceAddress,
    pub attribute: String,
    /// What the spec and `[naming]` give the tenant here.
    pub expected: String,
    pub found: String,
}

impl fmt::Display for IdentityMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: expected {}, found {}",
            self.address,
            self.attribute,
            printable(&self.expected),
            printable(&self.found)
        )
    }
}

/// The identity values a tenant may hold, by address and by attribute name.
pub struct TenantIdentity {
    by_address: BTreeMap<ResourceAddress, BTreeMap<String, BTreeSet<String>>>,
    by_attribute: BTreeMap<String, BTreeSet<String>>,
}

impl TenantIdentity {
    /// What `tenant` may hold: the names of its spec's blueprint (or, without a spec,
    /// of the blueprint its id gets), under the current naming and every template in
    /// `[naming] renamed_from`.
    pub fn of(tenant: &TenantId, spec: Option<&TenantSpec>, platform: &PlatformSpec) -> Self {
        let mut identity = Self::of_spec(spec, platform);
        identity.widen(tenant, spec, platform);
        identity
    }

    /// The names of the spec's blueprint alone: what almost every state holds.
    fn of_spec(spec: Option<&TenantSpec>, platform: &PlatformSpec) -> Self {
        let mut identity = TenantIdentity {
            by_address: BTreeMap::new(),
            by_attribute: BTreeMap::new(),
        };
        if let Some(spec) = spec {
            identity.add(&tenant_blueprint(spec, platform));
        }
        identity
    }

    /// Adds the names of every resource type (a leftover cache cluster of a tenant that
    /// moved to a smaller tier) and those of renamed templates.
    fn widen(&mut self, tenant: &TenantId, spec: Option<&TenantSpec>, platform: &PlatformSpec) {
        // Every resource type, whatever the tenant's tier: a tier with a dedicated cache.
        let Some(every) = identity_spec(tenant, platform) else {
            return;
        };
        self.add(&tenant_blueprint(&every, platform));
        for (key, olds) in &platform.naming.renamed_from {
            for old in olds {
                let mut renamed = platform.clone();
                if let Some(t) = renamed.naming.template_mut(key) {
                    *t = old.clone();
                    self.add(&tenant_blueprint(&every, &renamed));
                    if let Some(spec) = spec {
                        self.add(&tenant_blueprint(spec, &renamed));
                    }
                }
            }
        }
    }

    fn add(&mut self, blueprint: &TenantBlueprint) {
        for r in &blueprint.resources {
            for (name, value) in &r.attributes {
                if is_identity(r.address.resource_type, name) {
                    let v = as_text(value);
                    self.by_address
                        .entry(r.address.clone())
                        .or_default()
                        .entry(name.clone())
                        .or_default()
                        .insert(v.clone());
                    self.by_attribute.entry(name.clone()).or_default().insert(v);
                }
            }
        }
    }

    /// The identity attributes of `resources` that are not this tenant's.
    pub fn mismatches<'a>(
        &self,
        resources: impl IntoIterator<Item = (ResourceAddress, &'a Attributes)>,
    ) -> Vec<IdentityMismatch> {
        let mut out = Vec::new();
        for (address, attributes) in resources {
            for (name, value) in attributes {
                if !is_identity(address.resource_type, name) {
                    continue;
                }
                let found = as_text(value);
                let allowed = self
                    .by_address
                    .get(&address)
                    .and_then(|a| a.get(name))
                    .or_else(|| self.by_attribute.get(name));
                if allowed.is_some_and(|a| a.contains(&found)) {
                    continue;
                }
                let expected = match allowed {
                    Some(a) if a.len() == 1 => a.iter().next().cloned().unwrap_or_default(),
                    Some(a) => format!(
                        "one of {}",
                        a.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    None => "nothing (no spec gives this tenant such an attribute)".into(),
                };
                out.push(IdentityMismatch {
                    address: address.clone(),
                    attribute: name.clone(),
                    expected,
                    found,
                });
            }
        }
        out
    }

    /// The identity attributes of `state`'s resources that are not its tenant's.
    pub fn state_mismatches(&self, state: &TenantState) -> Vec<IdentityMismatch> {
        self.mismatches(
            state
                .resources
                .iter()
                .filter_map(|(key, r)| state.address_of(key).map(|a| (a, &r.attributes))),
        )
    }
}

/// The identity attributes of `state`'s resources that are not its tenant's. Cheap when
/// the state holds exactly the spec's names (one blueprint); the wider set of accepted
/// names is worked out only when something does not match.
pub fn state_mismatches(
    state: &TenantState,
    spec: Option<&TenantSpec>,
    platform: &PlatformSpec,
) -> Vec<IdentityMismatch> {
    let mut identity = TenantIdentity::of_spec(spec, platform);
    if spec.is_some() {
        let found = identity.state_mismatches(state);
        if found.is_empty() {
            return found;
        }
    }
    identity.widen(&state.tenant, spec, platform);
    identity.state_mismatches(state)
}

/// A spec for `tenant` whose blueprint has every resource type: the first tier with a
/// dedicated cache (or any tier) and any region. Identity attributes depend only on the
/// id and the platform, so the rest does not matter.
fn identity_spec(tenant: &TenantId, platform: &PlatformSpec) -> Option<TenantSpec> {
    let tier = platform
        .tiers
        .iter()
        .find(|(_, t)| t.dedicated_cache)
        .or_else(|| platform.tiers.iter().next())?
        .0
        .clone();
    let region = platform.regions.keys().next()?.clone();
    let classification = platform
        .data_classifications
        .keys()
        .next()
        .cloned()
        .unwrap_or_default();
    Some(TenantSpec {
        id: tenant.clone(),
        name: tenant.to_string(),
        tier,
        region,
        budget_inr: 0,
        owner_email: String::new(),
        cost_center: String::new(),
        data_classification: classification,
        protected: false,
    })
}

fn as_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ResourceType;
    use crate::spec::Specs;
    use crate::state::{ResourceState, ResourceStatus};

    fn example() -> Specs {
        Specs::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs")).unwrap()
    }

    /// The state an apply of `spec` records.
    fn applied(spec: &TenantSpec, platform: &PlatformSpec) -> TenantState {
        let mut state = TenantState::new(spec.id.clone());
        for r in tenant_blueprint(spec, platform).resources {
            state.resources.insert(
                r.address.local(),
                ResourceState {
                    resource_type: r.address.resource_type,
                    name: r.address.name.clone(),
                    status: ResourceStatus::Created,
                    attributes: r.attributes.clone(),
                    depends_on: r.depends_on.clone(),
                    create_token: None,
                },
            );
        }
        state
    }

    #[test]
    fn identity_attributes_are_the_names() {
        assert!(is_identity(ResourceType::PostgresRole, "name"));
        assert!(is_identity(ResourceType::PostgresTableGrant, "role"));
        assert!(is_identity(ResourceType::S3Bucket, "bucket"));
        assert!(is_identity(ResourceType::GrafanaDashboard, "file"));
        assert!(!is_identity(ResourceType::S3Bucket, "region"));
        assert!(!is_identity(ResourceType::VectorNamespace, "dimension"));
        assert!(!is_identity(ResourceType::PostgresRole, "connection_limit"));
    }

    #[test]
    fn a_state_of_the_tenants_own_names_passes_and_anothers_names_are_named() {
        let specs = example();
        let mut tenants = specs.tenants.values();
        let (a, b) = (tenants.next().unwrap(), tenants.next().unwrap());
        let identity = TenantIdentity::of(&a.id, Some(a), &specs.platform);
        let mut state = applied(a, &specs.platform);
        assert_eq!(identity.state_mismatches(&state), vec![]);

        // A's state edited to carry B's role name, in the role and in a grant.
        let b_role =
            applied(b, &specs.platform).resources["postgres_role.app"].attributes["name"].clone();
        for key in ["postgres_role.app", "postgres_table_grant.documents"] {
            let r = state.resources.get_mut(key).unwrap();
            let attr = if key.starts_with("postgres_role") {
                "name"
            } else {
                "role"
            };
            r.attributes.insert(attr.into(), b_role.clone());
        }
        let found = identity.state_mismatches(&state);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].found, b_role.as_str().unwrap());
        assert!(
            found[0].expected.contains(&a.id.underscored()),
            "{}",
            found[0]
        );
    }

    #[test]
    fn leftover_and_specless_resources_may_name_only_the_tenants_objects() {
        let specs = example();
        let a = specs.tenants.values().next().unwrap();
        // No spec: the names come from the id.
        let identity = TenantIdentity::of(&a.id, None, &specs.platform);
        let mut state = applied(a, &specs.platform);
        assert_eq!(identity.state_mismatches(&state), vec![]);
        // A resource the blueprint does not have, naming the admin role.
        let mut odd = state.resources["postgres_role.app"].clone();
        odd.name = "admin".into();
        odd.attributes.insert("name".into(), "postgres".into());
        state.resources.insert("postgres_role.admin".into(), odd);
        let found = identity.state_mismatches(&state);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].address.local(), "postgres_role.admin");
        // A dashboard file elsewhere on disk.
        let mut state = applied(a, &specs.platform);
        state
            .resources
            .get_mut("grafana_dashboard.main")
            .unwrap()
            .attributes
            .insert("file".into(), "/etc/passwd".into());
        assert_eq!(identity.state_mismatches(&state).len(), 1);
    }

    #[test]
    fn a_renamed_template_listed_in_renamed_from_is_still_the_tenants() {
        let specs = example();
        let a = specs.tenants.values().next().unwrap();
        let old_state = applied(a, &specs.platform);
        let mut renamed = specs.platform.clone();
        renamed.naming.postgres_schema = "docs_{id_}".into();
        let identity = TenantIdentity::of(&a.id, Some(a), &renamed);
        assert!(!identity.state_mismatches(&old_state).is_empty());
        renamed
            .naming
            .renamed_from
            .insert("postgres_schema".into(), vec!["tenant_{id_}".into()]);
        let identity = TenantIdentity::of(&a.id, Some(a), &renamed);
        assert_eq!(identity.state_mismatches(&old_state), vec![]);
    }
}
