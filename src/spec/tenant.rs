//! `specs/tenants/<id>.toml`: one tenant, checked against the platform.

use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::diagnostic::{SpecDiagnostic, from_toml_error};
use super::limits::{aws_tag_value_problem, email_problem, text_problem};
use super::platform::PlatformSpec;
use crate::resource::TenantId;

/// One tenant as declared, after validation. This is input: it is read only from spec
/// files (through [`TenantSpec::parse`]) and written only as one (a request's spec file).
/// State and saved plans record an [`AppliedSpec`](crate::state::AppliedSpec) instead.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TenantSpec {
    pub id: TenantId,
    pub name: String,
    pub tier: String,
    pub region: String,
    /// Monthly budget in INR.
    pub budget_inr: i64,
    pub owner_email: String,
    pub cost_center: String,
    pub data_classification: String,
    /// Refuse to delete this tenant's resources. Recorded in state on apply, so that
    /// removing the spec file does not lift it.
    pub protected: bool,
}

/// The file as written, with the place of every value, before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFile {
    id: Spanned<String>,
    name: Spanned<String>,
    tier: Spanned<String>,
    region: Spanned<String>,
    budget_inr: Spanned<i64>,
    owner_email: Spanned<String>,
    cost_center: Spanned<String>,
    data_classification: Spanned<String>,
    #[serde(default)]
    protected: bool,
}

/// A tenant spec with the byte offset of its `id` value, for duplicate-id messages.
pub struct ParsedTenant {
    pub spec: TenantSpec,
    pub id_offset: usize,
}

impl TenantSpec {
    /// Parses and checks one tenant file against the platform. Reports every problem
    /// in the file, not only the first.
    pub fn parse(
        path: &Path,
        source: &str,
        platform: &PlatformSpec,
    ) -> Result<ParsedTenant, Vec<SpecDiagnostic>> {
        let file: TenantFile =
            toml::from_str(source).map_err(|e| vec![from_toml_error(path, source, &e)])?;
        let mut problems = Vec::new();
        let mut problem = |field: &str, offset: usize, message: String, fix: String| {
            problems.push(
                SpecDiagnostic::new(path, message, fix)
                    .field(field)
                    .at(source, offset),
            );
        };

        let id = match TenantId::problem(file.id.get_ref()) {
            None => Some(TenantId::try_from(file.id.get_ref().clone()).expect("checked")),
            Some(p) => {
                problem(
                    "id",
                    file.id.span().start,
                    format!("tenant id {:?} {p}", file.id.get_ref()),
                    "use lowercase letters, digits and single hyphens, e.g. \"retail-chain\""
                        .into(),
                );
                None
            }
        };
        let name = file.name.get_ref().trim();
        // The name goes into a PostgreSQL comment and a Grafana title, and is printed.
        let name_problem = match text_problem(name) {
            Some(p) => Some(format!("the display name {p}")),
            None if name.is_empty() || name.chars().count() > 100 => {
                Some("the display name must be 1 to 100 characters".into())
            }
            None => None,
        };
        if let Some(p) = name_problem {
            problem(
                "name",
                file.name.span().start,
                p,
                "give the tenant a readable name of printable characters, e.g. \"Retail Chain\""
                    .into(),
            );
        }
        let tier = file.tier.get_ref();
        if !platform.tiers.contains_key(tier) {
            problem(
                "tier",
                file.tier.span().start,
                format!("unknown tier {tier:?}"),
                format!(
                    "use one of the tiers in platform.toml: {}",
                    platform.tier_names()
                ),
            );
        }
        let region = file.region.get_ref();
        let region_spec = platform.regions.get(region);
        if region_spec.is_none() {
            problem(
                "region",
                file.region.span().start,
                format!("region {region:?} is not allowed on this platform"),
                format!("use one of: {}", platform.region_names()),
            );
        }
        if *file.budget_inr.get_ref() < 0 {
            problem(
                "budget_inr",
                file.budget_inr.span().start,
                format!("budget {} is negative", file.budget_inr.get_ref()),
                "write the monthly budget in INR as a positive integer, e.g. 600000".into(),
            );
        }
        let email = file.owner_email.get_ref();
        if let Some(p) = email_problem(email) {
            problem(
                "owner_email",
                file.owner_email.span().start,
                format!("the owner's address {p}"),
                "write one address like \"owner@example.com\"".into(),
            );
        }
        // The cost center is the value of the CostCenter tag on every AWS resource.
        let cost_center = file.cost_center.get_ref();
        let cost_center_problem = if cost_center.trim().is_empty() {
            Some("the cost center is empty".to_owned())
        } else {
            aws_tag_value_problem(cost_center).map(|p| format!("the cost center {p}"))
        };
        if let Some(p) = cost_center_problem {
            problem(
                "cost_center",
                file.cost_center.span().start,
                p,
                "set the cost center that pays for this tenant, e.g. \"CC-1001\" (it becomes the CostCenter tag)"
                    .into(),
            );
        }
        let class_name = file.data_classification.get_ref();
        match platform.data_classifications.get(class_name) {
            None => problem(
                "data_classification",
                file.data_classification.span().start,
                format!("unknown data classification {class_name:?}"),
                format!("use one of: {}", platform.classification_names()),
            ),
            Some(class) => {
                if let Some(region_spec) = region_spec
                    && !class
                        .allowed_jurisdictions
                        .contains(&region_spec.jurisdiction)
                {
                    problem(
                        "region",
                        file.region.span().start,
                        format!(
                            "data residency: {class_name:?} data may not be stored in {region} \
                             ({} jurisdiction): {}",
                            region_spec.jurisdiction, class.rule
                        ),
                        format!(
                            "choose a region in {}",
                            regions_in(platform, &class.allowed_jurisdictions)
                        ),
                    );
                }
            }
        }

        match (problems.is_empty(), id) {
            (true, Some(id)) => Ok(ParsedTenant {
                id_offset: file.id.span().start,
                spec: TenantSpec {
                    id,
                    name: name.to_owned(),
                    tier: tier.clone(),
                    region: region.clone(),
                    budget_inr: file.budget_inr.into_inner(),
                    owner_email: email.clone(),
                    cost_center: file.cost_center.into_inner(),
                    data_classification: class_name.clone(),
                    protected: file.protected,
                },
            }),
            _ => Err(problems),
        }
    }
}

/// The regions of the given jurisdictions, for messages.
fn regions_in(platform: &PlatformSpec, jurisdictions: &[String]) -> String {
    let names: Vec<&str> = platform
        .regions
        .iter()
        .filter(|(_, r)| jurisdictions.contains(&r.jurisdiction))
        .map(|(n, _)| n.as_str())
        .collect();
    if names.is_empty() {
        "(no region of this platform qualifies)".into()
    } else {
        names.join(", ")
    }
}
