//! Taking over tenants that Terraform manages today (`tenantform adopt`), without
//! recreating anything.
//!
//! The old setup is one module instance per tenant (`module.tenant["acme"]`), holding
//! the tenant's bucket and its parts, IAM policy, role and attachment, ElastiCache
//! cluster and PostgreSQL schema, role and grants. Adoption is planned in full before
//! anything is written:
//!
//! 1. [`tfstate`] reads the Terraform state (format version 4 only);
//! 2. [`map_terraform_state`] maps each resource instance of a tenant's module instance
//!    to the tenant's address by its type, and checks its identity (bucket name, role
//!    name, policy ARN, cluster id, schema name) against the name the tenant's spec and
//!    `[naming]` give that address, saying which setting to change where they differ;
//! 3. [`conflicts`] refuses an object another tenant's state (or the tenant's own)
//!    already holds;
//! 4. the engine ([`crate::Engine::adopt`]) writes the objects into candidate states,
//!    reads every one back from its endpoint, plans with the ordinary refreshing plan,
//!    and [`plan_refusals`] refuses any delete or replace of an adopted resource. Only
//!    then, and not with `--dry-run`, are the states written.
//!
//! Never guessed, always refused (nothing is written): a tainted or deposed instance,
//! a resource type with no mapping, two Terraform objects for one address, an identity
//! that does not match, an object already managed, a tenant without a spec. Data
//! sources are ignored (listed); `random_password` and its kind are ignored too: a
//! secret Terraform had is never taken over, and the plan's rule for a generated
//! secret that state lacks has the first apply set a new one.
//!
//! Terraform's state file is never written: [`AdoptionReport::handover`] gives the
//! `terraform state rm` commands that end Terraform's management of what was adopted.
//!
//! Pure: no I/O. The engine reads the file and the endpoints.

pub mod tfstate;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::blueprint::tenant_blueprint;
use crate::plan::identity::physical_id;
use crate::plan::render::Style;
use crate::plan::{Action, Plan};
use crate::report::Report;
use crate::resource::iam::with_account;
use crate::resource::{Attributes, Resource, ResourceAddress, ResourceType, TenantId, attr_str};
use crate::spec::{Specs, printable};
use crate::state::{ADOPTED_FROM_VERSION, AdoptedFrom, AdoptedObject, ResourceStatus, TenantState};

pub use tfstate::{TERRAFORM_STATE_VERSION, TerraformState};

/// The module instance of one tenant in the old setup, `{id}` standing for its id.
pub const DEFAULT_MODULE_ADDRESS: &str = "module.tenant[\"{id}\"]";

/// Why a Terraform state cannot be adopted from at all.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// The file could not be read.
    #[error("cannot read the Terraform state {file}: {problem}; nothing was changed")]
    Read { file: String, problem: String },
    /// The file is not JSON of a Terraform state.
    #[error(
        "{file} is not a Terraform state: {problem}; give the terraform.tfstate Terraform wrote (`terraform state pull > terraform.tfstate` prints it); nothing was changed"
    )]
    NotAState { file: String, problem: String },
    /// The state is of a format version other than 4.
    #[error(
        "{file} is a Terraform state of format version {found}; tenantform reads version 4 only (Terraform 0.12 and later): have Terraform 0.12 or later write it again (`terraform refresh`), then adopt again; nothing was changed"
    )]
    StateVersion { file: String, found: u64 },
    /// `--module-address` has no `{id}`.
    #[error(
        "--module-address {0:?} does not say where the tenant id is: write it with {{id}}, e.g. module.tenant[\"{{id}}\"]"
    )]
    ModuleTemplate(String),
}

/// What to adopt.
#[derive(Clone, Debug)]
pub struct AdoptOptions {
    /// Only these tenants; empty: every tenant module instance in the state.
    pub tenants: Vec<TenantId>,
    /// The module instance of a tenant, `{id}` standing for its id.
    pub module_address: String,
    /// Plan and report only; write nothing.
    pub dry_run: bool,
}

impl Default for AdoptOptions {
    fn default() -> Self {
        AdoptOptions {
            tenants: Vec::new(),
            module_address: DEFAULT_MODULE_ADDRESS.into(),
            dry_run: false,
        }
    }
}

/// One resource of a tenant and the Terraform objects it is adopted from.
#[derive(Clone, Debug, Serialize)]
pub struct MappedObject {
    pub address: ResourceAddress,
    /// Terraform addresses: a bucket is its `aws_s3_bucket` and its parts.
    pub terraform: Vec<String>,
    /// The object in its service (bucket name, role name, ...).
    pub id: String,
    /// What the tenant's spec wants at the address.
    #[serde(skip_serializing)]
    pub desired: Resource,
}

/// Something that stops the adoption, with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Refusal {
    /// The Terraform address or the tenant address it is about.
    pub subject: String,
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            printable(&self.subject),
            printable(&self.reason)
        )
    }
}

/// A Terraform object left alone, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Ignored {
    pub terraform: String,
    pub why: String,
}

/// The Terraform state mapped onto tenants: what would be adopted, what is refused,
/// what is left alone.
#[derive(Clone, Debug, Serialize)]
pub struct Adoption {
    /// The state file as given.
    pub source: String,
    pub lineage: String,
    pub serial: u64,
    pub terraform_version: String,
    pub tenants: BTreeMap<TenantId, Vec<MappedObject>>,
    pub refusals: Vec<Refusal>,
    pub ignored: Vec<Ignored>,
}

impl Adoption {
    /// The provenance record for `tenant`'s state.
    pub fn record_for(&self, tenant: &TenantId, at: DateTime<Utc>) -> AdoptedFrom {
        AdoptedFrom {
            version: ADOPTED_FROM_VERSION,
            tool: "terraform".into(),
            source: self.source.clone(),
            lineage: self.lineage.clone(),
            serial: self.serial,
            terraform_version: self.terraform_version.clone(),
            adopted_at: at,
            objects: self
                .tenants
                .get(tenant)
                .into_iter()
                .flatten()
                .map(|o| AdoptedObject {
                    address: o.address.clone(),
                    terraform: o.terraform.clone(),
                })
                .collect(),
        }
    }
}

/// How a Terraform type maps onto a tenant's address, and which of its attributes name
/// the object.
struct Mapping {
    resource_type: ResourceType,
    name: &'static str,
    /// Whether this type is the object itself (not one of a bucket's parts), which must
    /// be there for the address to be adopted.
    primary: bool,
    identity: &'static [Identity],
}

/// One attribute naming the object: Terraform's name for it, ours, and the `[naming]`
/// key whose template gives it.
struct Identity {
    terraform: &'static str,
    ours: &'static str,
    naming: &'static str,
}

const BUCKET_ID: &[Identity] = &[Identity {
    terraform: "bucket",
    ours: "bucket",
    naming: "s3_bucket",
}];
const GRANT_ID: &[Identity] = &[
    Identity {
        terraform: "schema",
        ours: "schema",
        naming: "postgres_schema",
    },
    Identity {
        terraform: "role",
        ours: "role",
        naming: "postgres_role",
    },
];

/// What happens to a Terraform type: mapped, left alone (with why), or refused.
enum Disposition {
    Map(Mapping),
    Ignore(&'static str),
    Refuse(String),
}

fn disposition(tf_type: &str, attributes: &serde_json::Map<String, Value>) -> Disposition {
    use ResourceType as T;
    let map = |resource_type, name, primary, identity| {
        Disposition::Map(Mapping {
            resource_type,
            name,
            primary,
            identity,
        })
    };
    match tf_type {
        "aws_s3_bucket" => map(T::S3Bucket, "documents", true, BUCKET_ID),
        "aws_s3_bucket_versioning"
        | "aws_s3_bucket_lifecycle_configuration"
        | "aws_s3_bucket_public_access_block" => map(T::S3Bucket, "documents", false, BUCKET_ID),
        "aws_s3_bucket_policy" => map(T::S3BucketPolicy, "documents", true, BUCKET_ID),
        "aws_iam_policy" => map(
            T::IamPolicy,
            "documents_access",
            true,
            &[Identity {
                terraform: "name",
                ours: "name",
                naming: "iam_policy",
            }],
        ),
        "aws_iam_role" => map(
            T::IamRole,
            "app",
            true,
            &[Identity {
                terraform: "name",
                ours: "name",
                naming: "iam_role",
            }],
        ),
        "aws_iam_role_policy_attachment" => map(
            T::IamRolePolicyAttachment,
            "documents_access",
            true,
            &[
                Identity {
                    terraform: "role",
                    ours: "role",
                    naming: "iam_role",
                },
                Identity {
                    terraform: "policy_arn",
                    ours: "policy_arn",
                    naming: "iam_policy",
                },
            ],
        ),
        "aws_elasticache_cluster" => map(
            T::ElasticacheCluster,
            "cache",
            true,
            &[Identity {
                terraform: "cluster_id",
                ours: "cluster_id",
                naming: "cache_cluster",
            }],
        ),
        "postgresql_schema" => map(
            T::PostgresSchema,
            "main",
            true,
            &[Identity {
                terraform: "name",
                ours: "name",
                naming: "postgres_schema",
            }],
        ),
        "postgresql_role" => map(
            T::PostgresRole,
            "app",
            true,
            &[Identity {
                terraform: "name",
                ours: "name",
                naming: "postgres_role",
            }],
        ),
        "postgresql_grant" => match attributes.get("object_type").and_then(Value::as_str) {
            Some("schema") => map(T::PostgresSchemaGrant, "app", true, GRANT_ID),
            Some("table") => {
                let objects: Vec<&str> = attributes
                    .get("objects")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if objects == ["documents"] {
                    map(T::PostgresTableGrant, "documents", true, GRANT_ID)
                } else {
                    Disposition::Refuse(format!(
                        "a table grant on {objects:?}: tenantform grants on the documents table only; revoke it or keep it in Terraform outside the tenant's module"
                    ))
                }
            }
            other => Disposition::Refuse(format!(
                "a grant on object type {other:?}: tenantform manages grants on the tenant's schema and its documents table only"
            )),
        },
        "random_password" | "random_string" => Disposition::Ignore(
            "a secret Terraform generated: never taken over; the first apply sets the role a new password",
        ),
        other => Disposition::Refuse(format!(
            "resource type {other} has no mapping onto a tenant's resources; move it out of the tenant's module (or delete it in Terraform) before adopting"
        )),
    }
}

/// The value of a Terraform identity attribute as tenantform writes it: a policy ARN is
/// compared by its policy name (the account is the provider's).
fn comparable(attribute: &str, value: &str) -> String {
    if attribute == "policy_arn" {
        return value.rsplit('/').next().unwrap_or(value).to_owned();
    }
    value.to_owned()
}

/// What to set so that `[naming] key` gives `found` for `tenant`.
fn naming_fix(key: &str, found: &str, tenant: &TenantId) -> String {
    let template = if found.contains(tenant.as_str()) {
        Some(found.replace(tenant.as_str(), "{id}"))
    } else if found.contains(&tenant.underscored()) {
        Some(found.replace(&tenant.underscored(), "{id_}"))
    } else {
        None
    };
    match template {
        Some(t) => format!("set [naming] {key} = {t:?} in platform.toml"),
        None => format!(
            "the name does not contain the tenant id, so no [naming] {key} template gives it; rename the object in Terraform first"
        ),
    }
}

/// Maps `state` onto the tenants of `specs`: every managed instance of a tenant's
/// module instance becomes a resource of that tenant, or a refusal; data sources,
/// secrets and objects outside the tenant modules are listed as ignored.
pub fn map_terraform_state(
    state: &TerraformState,
    source: &str,
    specs: &Specs,
    options: &AdoptOptions,
) -> Result<Adoption, AdoptError> {
    let template = &options.module_address;
    if template.matches("{id}").count() != 1 {
        return Err(AdoptError::ModuleTemplate(template.clone()));
    }
    let module_prefix = template.split("{id}").next().unwrap_or_default();
    let selected: BTreeSet<&TenantId> = options.tenants.iter().collect();
    let mut refusals = BTreeSet::new();
    let mut ignored = BTreeSet::new();
    let mut seen_tenants = BTreeSet::new();
    // Per tenant address: the Terraform objects by type, and whether the primary one was seen.
    let mut found: BTreeMap<ResourceAddress, (MappedObject, BTreeMap<String, String>, bool)> =
        BTreeMap::new();
    let mut refuse = |subject: &str, reason: String| {
        refusals.insert(Refusal {
            subject: subject.to_owned(),
            reason,
        });
    };
    for resource in &state.resources {
        for instance in &resource.instances {
            let tf_address = resource.address(instance);
            let module = resource.module.as_deref().unwrap_or("");
            let tenant = tfstate::tenant_of_module(template, module);
            let Some(tenant) = tenant else {
                if !module_prefix.is_empty() && module.starts_with(module_prefix) {
                    refuse(
                        &tf_address,
                        format!(
                            "in a module nested inside a tenant's module instance ({template}): it has no mapping; move it into the tenant's module or out of it"
                        ),
                    );
                } else {
                    ignored.insert(Ignored {
                        terraform: tf_address,
                        why: format!("outside the tenants' module instances ({template})"),
                    });
                }
                continue;
            };
            let tenant = match tenant.parse::<TenantId>() {
                Ok(t) => t,
                Err(e) => {
                    refuse(
                        &tf_address,
                        format!("{tenant:?} is not a valid tenant id: {e}"),
                    );
                    continue;
                }
            };
            if !selected.is_empty() && !selected.contains(&tenant) {
                continue;
            }
            seen_tenants.insert(tenant.clone());
            if resource.mode == "data" {
                ignored.insert(Ignored {
                    terraform: tf_address,
                    why: "a data source: nothing to adopt".into(),
                });
                continue;
            }
            if instance.status.as_deref() == Some("tainted") {
                refuse(
                    &tf_address,
                    "tainted in Terraform's state (Terraform would replace it): run terraform apply, or terraform untaint it, then adopt again".into(),
                );
                continue;
            }
            if let Some(key) = &instance.deposed {
                refuse(
                    &tf_address,
                    format!(
                        "a deposed object ({key}) left by a create_before_destroy replacement: finish it with terraform apply, then adopt again"
                    ),
                );
                continue;
            }
            let mapping = match disposition(&resource.resource_type, &instance.attributes) {
                Disposition::Map(m) => m,
                Disposition::Ignore(why) => {
                    ignored.insert(Ignored {
                        terraform: tf_address,
                        why: why.into(),
                    });
                    continue;
                }
                Disposition::Refuse(reason) => {
                    refuse(&tf_address, reason);
                    continue;
                }
            };
            let Some(spec) = specs.tenants.get(&tenant) else {
                refuse(
                    &tf_address,
                    format!(
                        "tenant {tenant} has no spec: write specs/tenants/{tenant}.toml (tenantform adopts only what a spec declares)"
                    ),
                );
                continue;
            };
            let address = ResourceAddress::new(&tenant, mapping.resource_type, mapping.name);
            let blueprint = tenant_blueprint(spec, &specs.platform);
            let Some(desired) = blueprint
                .resources
                .into_iter()
                .find(|r| r.address == address)
            else {
                refuse(
                    &tf_address,
                    format!(
                        "the spec of tenant {tenant} (tier {}) has no {}: change the tier, or delete the object in Terraform first",
                        spec.tier,
                        address.local()
                    ),
                );
                continue;
            };
            let mut mismatched = false;
            for id in mapping.identity {
                let want = attr_str(&desired.attributes, id.ours).unwrap_or_default();
                let have = instance
                    .attributes
                    .get(id.terraform)
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let (want_c, have_c) = (comparable(id.ours, want), comparable(id.ours, have));
                if want_c != have_c {
                    mismatched = true;
                    refuse(
                        &tf_address,
                        format!(
                            "its {} is {have:?}, but tenant {tenant}'s spec gives {address} {}: {}",
                            id.terraform,
                            printable(&want_c),
                            naming_fix(id.naming, &have_c, &tenant)
                        ),
                    );
                }
            }
            if mismatched {
                continue;
            }
            let entry = found.entry(address.clone()).or_insert_with(|| {
                (
                    MappedObject {
                        address: address.clone(),
                        terraform: Vec::new(),
                        id: physical_id(address.resource_type, &desired.attributes)
                            .unwrap_or_default(),
                        desired: desired.clone(),
                    },
                    BTreeMap::new(),
                    false,
                )
            });
            if let Some(other) = entry.1.get(&resource.resource_type) {
                refuse(
                    &tf_address,
                    format!(
                        "two Terraform objects map onto {address}: {other} and this one; remove one of them from Terraform's state first"
                    ),
                );
                continue;
            }
            entry
                .1
                .insert(resource.resource_type.clone(), tf_address.clone());
            entry.0.terraform.push(tf_address);
            entry.2 |= mapping.primary;
        }
    }
    for t in &options.tenants {
        if !seen_tenants.contains(t) {
            refuse(
                t.as_str(),
                format!(
                    "no module instance of tenant {t} ({}) in {source}",
                    template.replace("{id}", t.as_str())
                ),
            );
        }
    }
    let mut tenants: BTreeMap<TenantId, Vec<MappedObject>> = BTreeMap::new();
    for (address, (mut object, _, primary)) in found {
        if !primary {
            refuse(
                &object.terraform.join(", "),
                format!(
                    "parts of {address} without the object itself in Terraform's state: adopt them together"
                ),
            );
            continue;
        }
        object.terraform.sort();
        tenants
            .entry(address.tenant.clone())
            .or_default()
            .push(object);
    }
    if tenants.is_empty() && refusals.is_empty() {
        refusals.insert(Refusal {
            subject: source.to_owned(),
            reason: format!(
                "no managed object of a tenant module instance ({template}) in it: nothing to adopt; check --module-address"
            ),
        });
    }
    Ok(Adoption {
        source: source.to_owned(),
        lineage: state.lineage.clone(),
        serial: state.serial,
        terraform_version: state.terraform_version.clone(),
        tenants,
        refusals: refusals.into_iter().collect(),
        ignored: ignored.into_iter().collect(),
    })
}

/// Objects of `adoption` that a stored state already holds: another tenant's (refused,
/// naming the tenant), or the same address of the tenant's own.
pub fn conflicts(adoption: &Adoption, states: &[TenantState]) -> Vec<Refusal> {
    let mut out = Vec::new();
    for object in adoption.tenants.values().flatten() {
        let t = object.address.resource_type;
        for state in states {
            for (key, r) in &state.resources {
                if r.resource_type != t {
                    continue;
                }
                let same_object = physical_id(t, &r.attributes).as_deref() == Some(&object.id);
                let same_address =
                    state.tenant == object.address.tenant && key == &object.address.local();
                if same_address && r.status == ResourceStatus::Created {
                    out.push(Refusal {
                        subject: object.address.to_string(),
                        reason: format!(
                            "already managed by tenantform (in the state of tenant {}); nothing to adopt",
                            state.tenant
                        ),
                    });
                } else if same_object && state.tenant != object.address.tenant {
                    out.push(Refusal {
                        subject: object.address.to_string(),
                        reason: format!(
                            "{} already belongs to tenant {} ({}/{key} in its state); an object has one owner: remove it from that state first (tenantform state rm)",
                            printable(&object.id),
                            state.tenant,
                            state.tenant
                        ),
                    });
                }
            }
        }
    }
    out
}

/// What the adoption plan does to adopted resources that may not happen: a delete or a
/// replace, or an object the endpoint does not have (`refreshed` is what was read back,
/// per tenant and local address).
pub fn plan_refusals(
    adoption: &Adoption,
    plan: &Plan,
    refreshed: &BTreeMap<TenantId, BTreeMap<String, Option<Attributes>>>,
) -> Vec<Refusal> {
    let adopted: BTreeSet<&ResourceAddress> = adoption
        .tenants
        .values()
        .flatten()
        .map(|o| &o.address)
        .collect();
    let mut out = Vec::new();
    for a in &adopted {
        if let Some(None) = refreshed.get(&a.tenant).and_then(|r| r.get(&a.local())) {
            out.push(Refusal {
                subject: a.to_string(),
                reason: "Terraform's state names it, but its endpoint does not have it: run terraform plan to see the drift, and adopt what exists".into(),
            });
        }
    }
    for change in plan.changes() {
        if !adopted.contains(&change.address) {
            continue;
        }
        let what = match change.action {
            Action::Delete => "delete",
            Action::Replace => "replace",
            _ => continue,
        };
        let forcing: Vec<&str> = change
            .attribute_changes
            .iter()
            .filter(|c| c.forces_replacement)
            .map(|c| c.name.as_str())
            .collect();
        let because = if forcing.is_empty() {
            format!(" ({})", change.reason)
        } else {
            format!(
                " ({} differs from the spec and cannot change in place)",
                forcing.join(", ")
            )
        };
        out.push(Refusal {
            subject: change.address.to_string(),
            reason: format!(
                "adopting it would {what} it{because}: make the spec give what exists, or change the object in Terraform first"
            ),
        });
    }
    out
}

/// The outcome of `tenantform adopt`: the mapping, the plan it was checked with, and
/// whether the states were written.
#[derive(Clone, Debug, Serialize)]
pub struct AdoptionReport {
    pub adoption: Adoption,
    /// The refreshing plan of the adopted tenants, made as if adopted; `None` when the
    /// mapping was refused before anything was read.
    pub plan: Option<Plan>,
    pub dry_run: bool,
    /// Whether the tenants' states were written.
    pub committed: bool,
}

impl AdoptionReport {
    /// Whether anything stops the adoption.
    pub fn refused(&self) -> bool {
        !self.adoption.refusals.is_empty()
    }

    /// The commands that end Terraform's management of the adopted objects without
    /// touching them, one per tenant (run in Terraform's working directory).
    pub fn handover(&self) -> Vec<String> {
        self.adoption
            .tenants
            .values()
            .map(|objects| {
                let mut addresses: Vec<&String> =
                    objects.iter().flat_map(|o| &o.terraform).collect();
                addresses.sort();
                let quoted: Vec<String> = addresses
                    .iter()
                    .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
                    .collect();
                format!("terraform state rm {}", quoted.join(" "))
            })
            .collect()
    }
}

impl Report for AdoptionReport {
    const NAME: &'static str = "an adoption report";

    /// The account the plan read stands in for the placeholder in the mapping's ARNs
    /// too, as it does in the plan.
    fn human(&self, style: Style) -> String {
        let text = self.human_text(style);
        match &self.plan {
            Some(plan) => plan.show_account(text),
            None => text,
        }
    }

    fn json(&self) -> Value {
        let document = self.json_document();
        match self.plan.as_ref().and_then(|p| p.aws_account_id.as_deref()) {
            Some(account) => with_account(&document, account),
            None => document,
        }
    }
}

impl AdoptionReport {
    fn human_text(&self, style: Style) -> String {
        let a = &self.adoption;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Terraform state {} (Terraform {}, lineage {}, serial {})",
            printable(&a.source),
            printable(&a.terraform_version),
            printable(&a.lineage),
            a.serial
        );
        for (tenant, objects) in &a.tenants {
            let _ = writeln!(out, "\nTenant {tenant}:");
            for o in objects {
                let _ = writeln!(
                    out,
                    "  {} ({}) <- {}",
                    o.address.local(),
                    printable(&o.id),
                    o.terraform
                        .iter()
                        .map(|t| printable(t).into_owned())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        if !a.ignored.is_empty() {
            let _ = writeln!(out, "\nLeft alone:");
            for i in &a.ignored {
                let _ = writeln!(out, "  {}: {}", printable(&i.terraform), i.why);
            }
        }
        if let Some(plan) = &self.plan {
            let _ = writeln!(
                out,
                "\nThe plan after adoption (read back from every endpoint):\n"
            );
            out.push_str(&crate::plan::render::human(plan, style));
        }
        if self.refused() {
            let _ = writeln!(out, "\nRefused, nothing was written:");
            for r in &a.refusals {
                let _ = writeln!(out, "  {r}");
            }
            return out;
        }
        if !self.committed {
            let _ = writeln!(
                out,
                "\nDry run: nothing was written. Without --dry-run these objects are adopted."
            );
            return out;
        }
        let _ = writeln!(
            out,
            "\nAdopted {} resources of {} tenants; each tenant's state records lineage {} serial {} as its origin.",
            a.tenants.values().map(Vec::len).sum::<usize>(),
            a.tenants.len(),
            printable(&a.lineage),
            a.serial
        );
        let _ = writeln!(
            out,
            "\nNow make Terraform stop managing them (its state file was not touched). In Terraform's working directory:\n"
        );
        for c in self.handover() {
            let _ = writeln!(out, "  {}", printable(&c));
        }
        let _ = writeln!(
            out,
            "\nthen remove these tenants from the module's for_each; `terraform plan` must show no destroy. `tenantform apply` then creates what Terraform did not manage and sets the role's new password."
        );
        out
    }

    fn json_document(&self) -> Value {
        json!({
            "format_version": "1",
            "source": self.adoption.source,
            "lineage": self.adoption.lineage,
            "serial": self.adoption.serial,
            "terraform_version": self.adoption.terraform_version,
            "dry_run": self.dry_run,
            "committed": self.committed,
            "tenants": self.adoption.tenants,
            "ignored": self.adoption.ignored,
            "refusals": self.adoption.refusals,
            "plan": self.plan.as_ref().map(crate::plan::render::json),
            "terraform_state_rm": if self.committed { self.handover() } else { Vec::new() },
        })
    }
}

#[cfg(test)]
mod tests;
