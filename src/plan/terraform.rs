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
//! - types appear as themselves (`s3_bucket`, not `aws_s3_bucket`), with the
//!   addresses and values tenantform uses everywhere else. Policies written for the
//!   plan (Rego, terraform-compliance features) use these;
//! - AWS checks (checkov's, and every library keyed on the AWS provider's types) know
//!   nothing of these types, and a tenantform bucket folds versioning, lifecycle and
//!   the public access block into one resource, which such checks would misread. So
//!   each tenant module also holds a child module `module.aws` with every AWS
//!   resource written as the Terraform AWS provider's resources (a bucket becomes
//!   `aws_s3_bucket`, `aws_s3_bucket_versioning`,
//!   `aws_s3_bucket_lifecycle_configuration` and `aws_s3_bucket_public_access_block`,
//!   joined to the bucket by references in `configuration`, as HCL would). These
//!   equivalents are only in `planned_values` and `configuration`: they describe the
//!   same objects again, and apply and `resource_changes` know only tenantform's;
//! - every resource is `mode: "managed"`; the provider is the family that manages it
//!   (`tenantform/aws`, `tenantform/postgres`, ...);
//! - sensitive values are left out of `values` (and marked in `sensitive_values`),
//!   never shown redacted or in clear.
//!
//! Pure: a view of a [`Plan`], no I/O.

use serde_json::{Map, Value, json};

use super::stream::Part;
use super::{Action, Plan, ResourceChange, TenantPlan};
use crate::resource::{Attributes, ResourceType, TenantId, schema};

/// The Terraform version the document claims to come from. Consumers check it
/// (terraform-compliance accepts 0.12 to 1.x, trivy and checkov detect a plan by its
/// presence); 1.2 is the release whose `show -json` has every field tenantform emits
/// (`replace_paths`, `action_reason`) at `format_version` 1.0.
pub const TERRAFORM_VERSION: &str = "1.2.9";

/// The name of the module every tenant is an instance of.
pub const TENANT_MODULE: &str = "tenant";

/// The child module of a tenant that holds its AWS resources in the AWS provider's
/// vocabulary.
pub const AWS_EQUIVALENTS_MODULE: &str = "aws";

/// The provider of the AWS equivalents.
const AWS_PROVIDER: &str = "registry.terraform.io/hashicorp/aws";

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
        | ResourceType::ElasticacheCluster
        | ResourceType::Secret => "tenantform/aws",
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

/// What a tenant's module holds: its resources' attributes after the plan, or before.
type Pick = for<'c> fn(&'c ResourceChange) -> Option<&'c Attributes>;

/// A root module with one child module per tenant that has resources in `pick`; with
/// `aws_equivalents`, each tenant's AWS resources again in a child module of its own.
/// The child modules are made one at a time, as they are written.
fn root_module(plan: &Plan, pick: Pick, aws_equivalents: bool) -> Part<'_> {
    Part::Object(vec![
        ("resources", Part::Whole(json!([]))),
        (
            "child_modules",
            Part::Items(Box::new(
                plan.tenants
                    .iter()
                    .filter_map(move |t| tenant_module(t, pick, aws_equivalents)),
            )),
        ),
    ])
}

/// A tenant's child module; `None` when it has no resource in `pick`.
fn tenant_module(t: &TenantPlan, pick: Pick, aws_equivalents: bool) -> Option<Value> {
    let resources: Vec<Value> = t
        .changes
        .iter()
        .filter_map(|c| pick(c).map(|a| resource(c, a)))
        .collect();
    if resources.is_empty() {
        return None;
    }
    let address = module_address(&t.tenant);
    let mut module = json!({"address": address, "resources": resources});
    let aws_address = format!("{address}.module.{AWS_EQUIVALENTS_MODULE}");
    let aws: Vec<Value> = t
        .changes
        .iter()
        .filter(|_| aws_equivalents)
        .filter_map(|c| pick(c).map(|a| (c, a)))
        .flat_map(|(c, a)| aws_equivalents_of(c.address.resource_type, &c.address.name, a))
        .map(|e| {
            json!({
                "address": format!("{aws_address}.{}.{}", e.resource_type, e.name),
                "mode": "managed",
                "type": e.resource_type,
                "name": e.name,
                "provider_name": AWS_PROVIDER,
                "schema_version": 0,
                "values": e.values,
                "sensitive_values": {},
            })
        })
        .collect();
    if !aws.is_empty() {
        module["child_modules"] = json!([{"address": aws_address, "resources": aws}]);
    }
    Some(module)
}

/// `planned_values`: every resource as it will be after the plan.
pub fn planned_values(plan: &Plan) -> Part<'_> {
    Part::Object(vec![("root_module", root_module(plan, planned, true))])
}

/// `prior_state`: every resource as it is now; `None` when no tenant has state.
pub fn prior_state(plan: &Plan) -> Option<Part<'_>> {
    plan.tenants
        .iter()
        .any(|t| t.state_serial.is_some())
        .then(|| {
            Part::Object(vec![
                (
                    "format_version",
                    Part::Whole(json!(super::render::JSON_FORMAT_VERSION)),
                ),
                ("terraform_version", Part::Whole(json!(TERRAFORM_VERSION))),
                (
                    "values",
                    Part::Object(vec![("root_module", root_module(plan, prior, false))]),
                ),
            ])
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
    let mut aws: Map<String, Value> = Map::new();
    for c in plan.changes() {
        let Some(after) = planned(c) else { continue };
        for e in aws_equivalents_of(c.address.resource_type, &c.address.name, after) {
            let local = format!("{}.{}", e.resource_type, e.name);
            let expressions: Map<String, Value> = e
                .references
                .iter()
                .map(|(field, target)| {
                    let r = json!({"references": [format!("{target}.id"), target]});
                    ((*field).to_owned(), r)
                })
                .collect();
            aws.entry(local.clone()).or_insert_with(|| {
                json!({
                    "address": local,
                    "mode": "managed",
                    "type": e.resource_type,
                    "name": e.name,
                    "provider_config_key": "aws",
                    "expressions": expressions,
                    "schema_version": 0,
                })
            });
        }
    }
    let aws: Vec<Value> = aws.into_iter().map(|(_, v)| v).collect();
    json!({
        "root_module": {
            "module_calls": {
                TENANT_MODULE: {
                    "source": TENANT_MODULE_SOURCE,
                    "module": {
                        "resources": resources,
                        "module_calls": {
                            AWS_EQUIVALENTS_MODULE: {
                                "source": TENANT_MODULE_SOURCE,
                                "module": {"resources": aws},
                            }
                        },
                    },
                }
            }
        }
    })
}

/// One resource of the Terraform AWS provider standing for (part of) a tenantform one.
struct AwsEquivalent {
    resource_type: &'static str,
    name: String,
    values: Value,
    /// Arguments that refer to another equivalent (`bucket` -> `aws_s3_bucket.NAME`).
    references: Vec<(&'static str, String)>,
}

/// A policy document as the AWS provider holds it: JSON text.
fn policy_text(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(other) => Value::String(other.to_string()),
        None => Value::Null,
    }
}

/// The AWS provider's resources for one tenantform resource (none for a type that is
/// not AWS).
fn aws_equivalents_of(t: ResourceType, name: &str, a: &Attributes) -> Vec<AwsEquivalent> {
    let get = |k: &str| a.get(k).cloned().unwrap_or(Value::Null);
    let tags = || a.get("tags").cloned().unwrap_or_else(|| json!({}));
    let one = |resource_type, values| AwsEquivalent {
        resource_type,
        name: name.to_owned(),
        values,
        references: Vec::new(),
    };
    let part = |resource_type, values| AwsEquivalent {
        resource_type,
        name: name.to_owned(),
        values,
        references: vec![("bucket", format!("aws_s3_bucket.{name}"))],
    };
    match t {
        ResourceType::S3Bucket => {
            let rules: Vec<Value> = a
                .get("lifecycle_rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|r| {
                    let enabled = r.get("enabled").and_then(Value::as_bool).unwrap_or(true);
                    json!({
                        "id": r.get("id"),
                        "status": if enabled { "Enabled" } else { "Disabled" },
                        "filter": [{"prefix": r.get("prefix").cloned().unwrap_or(json!(""))}],
                        "transition": r.get("transitions").cloned().unwrap_or(json!([])),
                    })
                })
                .collect();
            let block = a.get("public_access_block");
            let flag = |k: &str| {
                block
                    .and_then(|b| b.get(k))
                    .cloned()
                    .unwrap_or(json!(false))
            };
            vec![
                one(
                    "aws_s3_bucket",
                    json!({"bucket": get("bucket"), "force_destroy": false, "tags": tags()}),
                ),
                part(
                    "aws_s3_bucket_versioning",
                    json!({"bucket": get("bucket"),
                           "versioning_configuration": [{"status": get("versioning")}]}),
                ),
                part(
                    "aws_s3_bucket_lifecycle_configuration",
                    json!({"bucket": get("bucket"), "rule": rules}),
                ),
                part(
                    "aws_s3_bucket_public_access_block",
                    json!({
                        "bucket": get("bucket"),
                        "block_public_acls": flag("block_public_acls"),
                        "block_public_policy": flag("block_public_policy"),
                        "ignore_public_acls": flag("ignore_public_acls"),
                        "restrict_public_buckets": flag("restrict_public_buckets"),
                    }),
                ),
            ]
        }
        ResourceType::S3BucketPolicy => vec![part(
            "aws_s3_bucket_policy",
            json!({"bucket": get("bucket"), "policy": policy_text(a.get("policy"))}),
        )],
        ResourceType::IamPolicy => vec![one(
            "aws_iam_policy",
            json!({"name": get("name"), "description": get("description"),
                   "policy": policy_text(a.get("document")), "tags": tags()}),
        )],
        ResourceType::IamRole => vec![one(
            "aws_iam_role",
            json!({"name": get("name"), "description": get("description"),
                   "assume_role_policy": policy_text(a.get("assume_role_policy")),
                   "tags": tags()}),
        )],
        ResourceType::IamRolePolicyAttachment => vec![one(
            "aws_iam_role_policy_attachment",
            json!({"role": get("role"), "policy_arn": get("policy_arn")}),
        )],
        ResourceType::ElasticacheCluster => vec![one(
            "aws_elasticache_cluster",
            json!({"cluster_id": get("cluster_id"), "engine": get("engine"),
                   "node_type": get("node_type"), "num_cache_nodes": get("num_nodes"),
                   "tags": tags()}),
        )],
        // Not AWS: none.
        _ => Vec::new(),
    }
}
