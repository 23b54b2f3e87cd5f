//! The "module": one tenant's spec plus the platform's catalog in, the tenant's
//! desired resources with their dependencies out.
//!
//! Architecture invariant: pure. No I/O, no clock, no randomness: the same specs
//! always give the same resources, so plans are reproducible and testable. Values
//! only known after creation (a generated password, an ARN) are computed attributes
//! filled in by providers, never here.

mod aws;
mod dashboard;
mod postgres;
pub mod redis;
mod secret;
mod settings;
mod vector;

pub use aws::tenant_tags;

use crate::resource::{Resource, ResourceType, TenantId};
use crate::spec::{PlatformSpec, TenantSpec};

/// Everything one tenant should have.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantBlueprint {
    pub tenant: TenantId,
    pub resources: Vec<Resource>,
}

/// The desired resources of `tenant`, in dependency order (dependencies first).
pub fn tenant_blueprint(tenant: &TenantSpec, platform: &PlatformSpec) -> TenantBlueprint {
    let tier = &platform.tiers[&tenant.tier];
    let mut resources = Vec::new();
    resources.extend(postgres::resources(tenant, tier, &platform.naming));
    resources.extend(aws::resources(
        tenant,
        tier,
        &platform.naming,
        &platform.platform,
        &platform.aws,
    ));
    let find = |t: ResourceType| {
        resources
            .iter()
            .find(|r| r.address.resource_type == t)
            .cloned()
            .expect("the PostgreSQL part declares a schema and a role")
    };
    let (schema, role, schema_grant, iam_role) = (
        find(ResourceType::PostgresSchema),
        find(ResourceType::PostgresRole),
        find(ResourceType::PostgresSchemaGrant),
        find(ResourceType::IamRole),
    );
    resources.extend(settings::resources(tenant, tier));
    let redis_user = redis::resources(tenant, &platform.naming);
    let credentials = secret::resources(
        tenant,
        &platform.naming,
        &tenant_tags(tenant, tier, &platform.platform),
        &role,
        &redis_user[0],
        &iam_role,
    );
    resources.extend(redis_user);
    resources.extend(credentials);
    resources.extend(vector::resources(
        tenant,
        &platform.vector,
        &schema,
        &role,
        &schema_grant,
    ));
    resources.extend(dashboard::resources(tenant, tier, &platform.dashboards));
    TenantBlueprint {
        tenant: tenant.id.clone(),
        resources,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Specs;
    use std::collections::HashSet;

    fn example_specs() -> Specs {
        Specs::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs"))
            .expect("example specs are valid")
    }

    #[test]
    fn every_dependency_is_declared_earlier_in_the_same_tenant() {
        let specs = example_specs();
        for tenant in specs.tenants.values() {
            let bp = tenant_blueprint(tenant, &specs.platform);
            let mut seen = HashSet::new();
            for r in &bp.resources {
                assert_eq!(r.address.tenant, tenant.id);
                for d in &r.depends_on {
                    assert!(
                        seen.contains(d),
                        "{} depends on {d}, not declared before it",
                        r.address
                    );
                }
                assert!(
                    seen.insert(r.address.clone()),
                    "{} declared twice",
                    r.address
                );
            }
        }
    }

    #[test]
    fn blueprint_sets_only_declared_configurable_attributes() {
        let specs = example_specs();
        for tenant in specs.tenants.values() {
            for r in tenant_blueprint(tenant, &specs.platform).resources {
                let schema = r.schema();
                for name in r.attributes.keys() {
                    let a = schema
                        .attribute(name)
                        .unwrap_or_else(|| panic!("{}: attribute {name} not in schema", r.address));
                    assert!(!a.computed, "{}: {name} is computed", r.address);
                }
                for a in schema.attributes.iter().filter(|a| !a.computed) {
                    assert!(
                        r.attributes.contains_key(a.name),
                        "{}: {} unset",
                        r.address,
                        a.name
                    );
                }
            }
        }
    }
}
