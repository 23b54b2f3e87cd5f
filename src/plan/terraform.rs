//! The parts of the JSON plan that make it read as Terraform's machine-readable plan
//! (`terraform show -json`) to the tools that consume one: `terraform_version`,
//! `planned_values`, `prior_state`, `configuration`, and per resource `mode`,
//! `provider_name` and `module_address`.
//!
//! How tenantform maps onto Terraform's model:
//! - each tenant is one instance of a module called `tenant`, with `for_each` over the
//!   tenants: module address `module.tenant["acme"]`;
//! - a resource keeps its tenantform address (`acme/s3_bucket.documents`) in every
//!   part of the document, so that `planned_values` and `resource_changes` agree
//!   (tools join them by address) and the address is the one the CLI takes;
//! - types appear as themselves (`s3_bucket`, not `aws_s3_bucket`): a tenantform
//!   bucket folds versioning, lifecycle and the public access block into one resource,
//!   so checks written for the AWS provider's resources would misread it. Tools scan
//!   every resource and apply policies written for these types (see the README);
//! - every resource is `mode: "managed"`; the provider is the family that manages it
//!   (`tenantform/aws`, `tenantform/postgres`, ...);
//! - sensitive values are left out of `values` (and marked in `sensitive_values`),
//!   never shown redacted or in clear.
//!
//! Pure: a view of a [`Plan`], no I/O.

use serde_json::{Map, Value, json};

use super::{Action, Plan, ResourceChange};
use crate::resource::{Attributes, ResourceType, TenantId, schema};

/// The Terraform version the document claims to come from. Consumers check it
/// (terraform-compliance accepts 0.12 to 1.x, trivy and checkov detect a plan by its
/// presence); 1.2 is the release whose `show -json` has every field tenantform emits
/// (`replace_paths`, `action_reason`) at `format_version` 1.0.
pub const TERRAFORM_VERSION: &str = "1.2.9";

/// The name of the module every tenant is an instance of.
pub const TENANT_MODULE: &str = "tenant";

/// Where the tenant module's resources come from, as a module call's `source`.
const TENANT_MODULE_SOURCE: &str = "tenantform/blueprint";

/// The provider that manages a type, as a Terraform provider source address.
pub fn provider_name(t: ResourceType) -> &'static str {
    match t {
        ResourceType::PostgresSchema
        | ResourceType::PostgresRole
        | ResourceType::PostgresSchemaGrant
        | ResourceType::PostgresTable
        | ResourceType::PostgresRowSecurity
        | ResourceType::PostgresTableGrant
        | ResourceType::TenantSettings => "tenantform/postgres",
        ResourceType::S3Bucket
        | ResourceType::S3BucketPolicy
        | ResourceType::IamPolicy
        | ResourceType::IamRole
        | ResourceType::IamRolePolicyAttachment
        | ResourceType::ElasticacheCluster => "tenantform/aws",
        ResourceType::RedisAclUser => "tenantform/redis",
        ResourceType::VectorNamespace => "tenantform/pgvector",
        ResourceType::GrafanaDashboard => "tenantform/grafana",
    }
}

/// `module.tenant["acme"]`.
pub fn module_address(tenant: &TenantId) -> String {
    format!("module.{TENANT_MODULE}[{:?}]", tenant.as_str())
}

/// `attrs` without its sensitive attributes (and without redaction markers).
pub fn values(attrs: &Attributes, t: ResourceType) -> Value {
    let s = schema(t);
    Value::Object(
        attrs
            .iter()
            .filter(|(k, _)| !s.is_sensitive(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// `{"password": true}`: every sensitive attribute of the type, as Terraform's
/// `*_sensitive` and `sensitive_values` mark them.
pub fn sensitive_values(t: ResourceType) -> Value {
    Value::Object(
        schema(t)
            .attributes
            .iter()
            .filter(|a| a.sensitive)
            .map(|a| (a.name.to_owned(), Value::Bool(true)))
            .collect(),
    )
}

/// The resource's attributes after the plan, when it exists then.
fn planned(c: &ResourceChange) -> Option<&Attributes> {
    match c.action {
        Action::Delete => None,
        _ => c.after.as_ref().map(|r| &r.attributes),
    }
}

/// The resource's attributes before the plan, when it exists now. A no-op keeps no
/// `before` in memory: it equals its desired attributes.
pub fn prior(c: &ResourceChange) -> Option<&Attributes> {
    match c.action {
        Action::NoOp => c.after.as_ref().map(|r| &r.attributes),
        Action::Create => None,
        _ => c.before.as_ref(),
    }
}

fn resource(c: &ResourceChange, attrs: &Attributes) -> Value {
    let t = c.address.resource_type;
    json!({
        "address": c.address.to_string(),
        "mode": "managed",
        "type": t.as_str(),
        "name": c.address.name,
        "provider_name": provider_name(t),
        "schema_version": 0,
        "values": values(attrs, t),
        "sensitive_values": sensitive_values(t),
    })
}

/// A root module with one child module per tenant that has resources in `pick`.
fn root_module(plan: &Plan, pick: impl Fn(&ResourceChange) -> Option<&Attributes>) -> Value {
    let child_modules: Vec<Value> = plan
        .tenants
        .iter()
        .filter_map(|t| {
            let resources: Vec<Value> = t
                .changes
                .iter()
                .filter_map(|c| pick(c).map(|a| resource(c, a)))
                .collect();
            (!resources.is_empty())
                .then(|| json!({"address": module_address(&t.tenant), "resources": resources}))
        })
        .collect();
    json!({"resources": [], "child_modules": child_modules})
}

/// `planned_values`: every resource as it will be after the plan.
pub fn planned_values(plan: &Plan) -> Value {
    json!({"root_module": root_module(plan, planned)})
}

/// `prior_state`: every resource as it is now; `None` when no tenant has state.
pub fn prior_state(plan: &Plan) -> Option<Value> {
    plan.tenants
        .iter()
        .any(|t| t.state_serial.is_some())
        .then(|| {
            json!({
                "format_version": super::render::JSON_FORMAT_VERSION,
                "terraform_version": TERRAFORM_VERSION,
                "values": {"root_module": root_module(plan, prior)},
            })
        })
}

/// `configuration`: the tenant module and the resources it declares (thin: no
/// expressions, which belong to HCL).
pub fn configuration(plan: &Plan) -> Value {
    let mut declared: Map<String, Value> = Map::new();
    for c in plan.changes().filter(|c| c.after.is_some()) {
        let t = c.address.resource_type;
        declared.entry(c.address.local()).or_insert_with(|| {
            json!({
                "address": c.address.local(),
                "mode": "managed",
                "type": t.as_str(),
                "name": c.address.name,
                "provider_config_key": provider_name(t),
                "schema_version": 0,
            })
        });
    }
    let resources: Vec<Value> = declared.into_iter().map(|(_, v)| v).collect();
    json!({
        "root_module": {
            "module_calls": {
                TENANT_MODULE: {
                    "source": TENANT_MODULE_SOURCE,
                    "module": {"resources": resources},
                }
            }
        }
    })
}
