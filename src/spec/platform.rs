//! `specs/platform.toml`: endpoints, naming, the tier catalog, regions, data
//! classifications and approval rules. One file for the whole platform.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::diagnostic::{SpecDiagnostic, from_toml_error};

/// The platform: everything that is the same for every tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformSpec {
    pub platform: PlatformInfo,
    #[serde(default)]
    pub postgres: PostgresEndpoint,
    #[serde(default)]
    pub aws: AwsSettings,
    #[serde(default)]
    pub naming: Naming,
    /// Tier name (`gold`) to what the tier gets.
    pub tiers: BTreeMap<String, Tier>,
    /// Region name (`eu-west-1`) to its properties. Only these regions are allowed.
    pub regions: BTreeMap<String, Region>,
    /// Data classification (`phi`, `eu-personal`) to where such data may live.
    pub data_classifications: BTreeMap<String, DataClassification>,
    pub approval: ApprovalRules,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformInfo {
    pub name: String,
    /// Tags put on every taggable resource of every tenant, besides the tenant's own.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// The admin connection to the platform's PostgreSQL. Every field is optional: what is
/// not set here comes from the standard `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD` and
/// `PGDATABASE` variables, so that `psql` and the engine see the same server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresEndpoint {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// The name of the environment variable holding the admin password (never the
    /// password itself: spec files are committed).
    pub password_env: Option<String>,
    pub database: Option<String>,
}

/// How the engine reaches AWS (or an AWS-compatible endpoint). Every field is optional:
/// credentials always come from the standard AWS chain (environment, profile, instance
/// role), and what is not set here comes from it too (`AWS_REGION`, `AWS_ENDPOINT_URL`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSettings {
    /// Send every AWS call here instead of to AWS (moto, LocalStack, MinIO for S3).
    pub endpoint_url: Option<String>,
    /// The region of global services (IAM, STS); tenants' buckets and caches go to the
    /// tenant's own region.
    pub region: Option<String>,
    /// A named profile of the shared AWS config files.
    pub profile: Option<String>,
    /// The service that assumes tenants' application roles.
    pub service_principal: String,
    /// How long to wait for a new cache cluster to become available.
    pub cache_wait_timeout_secs: u64,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            endpoint_url: None,
            region: None,
            profile: None,
            service_principal: "ecs-tasks.amazonaws.com".into(),
            cache_wait_timeout_secs: 1800,
        }
    }
}

/// Name templates of what a tenant gets. `{id}` is the tenant id, `{id_}` the id with
/// hyphens as underscores. Changing a template renames, which replaces the resources.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Naming {
    pub postgres_schema: String,
    pub postgres_role: String,
    /// S3 bucket names are global across all AWS accounts: keep a platform prefix.
    pub s3_bucket: String,
    pub iam_role: String,
    pub iam_policy: String,
    pub cache_cluster: String,
}

impl Default for Naming {
    fn default() -> Self {
        Naming {
            postgres_schema: "tenant_{id_}".into(),
            postgres_role: "tenant_{id_}".into(),
            s3_bucket: "rag-{id}-documents".into(),
            iam_role: "rag-{id}-app".into(),
            iam_policy: "rag-{id}-documents-access".into(),
            cache_cluster: "rag-{id}".into(),
        }
    }
}

impl Naming {
    fn templates(&self) -> [(&'static str, &str); 2] {
        [
            ("postgres_schema", &self.postgres_schema),
            ("postgres_role", &self.postgres_role),
        ]
    }

    /// AWS name templates with the longest name AWS accepts for each.
    fn aws_templates(&self) -> [(&'static str, &str, usize); 4] {
        [
            ("s3_bucket", &self.s3_bucket, 63),
            ("iam_role", &self.iam_role, 64),
            ("iam_policy", &self.iam_policy, 128),
            ("cache_cluster", &self.cache_cluster, 40),
        ]
    }
}

/// Fills a name template for one tenant.
pub fn render_name(template: &str, id: &crate::resource::TenantId) -> String {
    template
        .replace("{id_}", &id.underscored())
        .replace("{id}", id.as_str())
}

/// What one tier gets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub display_name: String,
    /// The range of monthly budgets a request for this tier may carry.
    pub budget_min_inr: i64,
    pub budget_max_inr: i64,
    /// Query latency p95 the tier promises.
    pub sla_latency_ms: u32,
    /// Concurrent connections of the tenant's database role.
    pub postgres_connection_limit: i32,
    pub features: TierFeatures,
    pub rate_limits: RateLimits,
    pub llm: LlmSettings,
    /// Seed demo documents into the tenant after provisioning.
    pub demo_documents: bool,
    /// Days after which documents move to S3 Glacier.
    pub s3_glacier_days: u32,
    pub vector_replicas: u32,
    /// A dedicated cache cluster instead of a namespace on the shared one.
    pub dedicated_cache: bool,
    /// Node type and count of the dedicated cache cluster, when there is one.
    #[serde(default)]
    pub cache_node_type: Option<String>,
    #[serde(default)]
    pub cache_nodes: Option<u32>,
    /// Estimated monthly cost of the tier in us-east-1, in INR, per component.
    pub monthly_cost_inr: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierFeatures {
    pub advanced_search: bool,
    pub realtime_indexing: bool,
    pub custom_models: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    pub queries_per_minute: u32,
    pub documents_per_month: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    pub model: String,
    pub max_tokens: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Cost relative to us-east-1.
    pub cost_multiplier: f64,
    /// The legal area the region is in (`us`, `eu`, `in`); residency rules name these.
    pub jurisdiction: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataClassification {
    /// Jurisdictions whose regions may hold data of this classification.
    pub allowed_jurisdictions: Vec<String>,
    /// Sensitive data needs extra approvers.
    #[serde(default)]
    pub sensitive: bool,
    /// A sentence naming the rule, shown when it is violated.
    pub rule: String,
}

/// Who must approve a tenant request. Budgets are monthly, in INR.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRules {
    /// Below this budget a request is approved automatically.
    pub auto_approve_below_inr: i64,
    /// Up to this budget `approvers_up_to_limit` must approve; above it, `approvers_above_limit`.
    pub limit_inr: i64,
    pub approvers_up_to_limit: Vec<String>,
    pub approvers_above_limit: Vec<String>,
    /// Added when the data classification is sensitive.
    pub sensitive_data: Vec<String>,
    /// Added when the tenant's region is outside its home jurisdiction.
    pub cross_border: Vec<String>,
    /// Added per tier (`gold = ["cto"]`).
    #[serde(default)]
    pub tiers: BTreeMap<String, Vec<String>>,
}

impl PlatformSpec {
    /// Parses and checks `platform.toml`; `path` is only used in messages.
    pub fn parse(path: &Path, source: &str) -> Result<PlatformSpec, Vec<SpecDiagnostic>> {
        let spec: PlatformSpec =
            toml::from_str(source).map_err(|e| vec![from_toml_error(path, source, &e)])?;
        let problems = spec.check(path, source);
        if problems.is_empty() {
            Ok(spec)
        } else {
            Err(problems)
        }
    }

    /// The sorted tier names, for messages.
    pub fn tier_names(&self) -> String {
        self.tiers.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    pub fn region_names(&self) -> String {
        self.regions.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    pub fn classification_names(&self) -> String {
        self.data_classifications
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn check(&self, path: &Path, source: &str) -> Vec<SpecDiagnostic> {
        let mut problems = Vec::new();
        // Place a semantic problem at the line that defines the key, when we can find it.
        let place = |d: SpecDiagnostic, needle: &str| match source.find(needle) {
            Some(offset) => d.at(source, offset),
            None => d,
        };
        if self.tiers.is_empty() {
            problems.push(
                SpecDiagnostic::new(path, "no tier is defined", "add at least one [tiers.NAME]")
                    .field("tiers"),
            );
        }
        for (name, tier) in &self.tiers {
            if tier.budget_min_inr < 0 || tier.budget_max_inr < tier.budget_min_inr {
                problems.push(place(
                    SpecDiagnostic::new(
                        path,
                        format!(
                            "budget range {}..{} is empty or negative",
                            tier.budget_min_inr, tier.budget_max_inr
                        ),
                        "set 0 <= budget_min_inr <= budget_max_inr",
                    )
                    .field(format!("tiers.{name}.budget_min_inr")),
                    &format!("[tiers.{name}]"),
                ));
            }
            if tier.dedicated_cache
                && (tier.cache_node_type.is_none() || tier.cache_nodes.is_none())
            {
                problems.push(place(
                    SpecDiagnostic::new(
                        path,
                        "a tier with a dedicated cache needs its node type and count",
                        "set cache_node_type and cache_nodes",
                    )
                    .field(format!("tiers.{name}.dedicated_cache")),
                    &format!("[tiers.{name}]"),
                ));
            }
            if tier.postgres_connection_limit < 1 {
                problems.push(place(
                    SpecDiagnostic::new(path, "must be at least 1", "set a positive limit")
                        .field(format!("tiers.{name}.postgres_connection_limit")),
                    &format!("[tiers.{name}]"),
                ));
            }
        }
        for (name, region) in &self.regions {
            if !(region.cost_multiplier > 0.0 && region.cost_multiplier.is_finite()) {
                problems.push(place(
                    SpecDiagnostic::new(path, "must be a positive number", "e.g. 1.0 or 1.2")
                        .field(format!("regions.{name}.cost_multiplier")),
                    &format!("[regions.{name}]"),
                ));
            }
        }
        let jurisdictions: Vec<&str> = self
            .regions
            .values()
            .map(|r| r.jurisdiction.as_str())
            .collect();
        for (name, class) in &self.data_classifications {
            for j in &class.allowed_jurisdictions {
                if !jurisdictions.contains(&j.as_str()) {
                    problems.push(place(
                        SpecDiagnostic::new(
                            path,
                            format!("jurisdiction {j:?} has no region"),
                            format!(
                                "use a jurisdiction of a region in [regions] ({})",
                                jurisdictions.join(", ")
                            ),
                        )
                        .field(format!("data_classifications.{name}.allowed_jurisdictions")),
                        &format!("[data_classifications.{name}]"),
                    ));
                }
            }
        }
        for (key, template) in self.naming.templates() {
            if !template.contains("{id}") && !template.contains("{id_}") {
                problems.push(place(
                    SpecDiagnostic::new(
                        path,
                        format!("template {template:?} does not contain the tenant id"),
                        "include {id} or {id_} so that every tenant gets its own name",
                    )
                    .field(format!("naming.{key}")),
                    &format!("{key} ="),
                ));
            }
            let sample = render_name(template, &"a-b".parse().expect("valid id"));
            if sample
                .chars()
                .any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            {
                problems.push(place(
                    SpecDiagnostic::new(
                        path,
                        format!("template {template:?} yields characters PostgreSQL names would need quoting for"),
                        "use only lowercase letters, digits, underscores and {id_}",
                    )
                    .field(format!("naming.{key}")),
                    &format!("{key} ="),
                ));
            }
        }
        // The longest tenant id gives the longest names.
        let longest: crate::resource::TenantId = "a"
            .repeat(crate::resource::TenantId::MAX_LEN)
            .parse()
            .expect("valid id");
        for (key, template, max_len) in self.naming.aws_templates() {
            let sample = render_name(template, &longest);
            let problem = if template.contains("{id_}") {
                Some(format!(
                    "template {template:?} uses {{id_}}; AWS names here take {{id}}"
                ))
            } else if !template.contains("{id}") {
                Some(format!(
                    "template {template:?} does not contain the tenant id {{id}}"
                ))
            } else if !sample.starts_with(|c: char| c.is_ascii_lowercase())
                || sample.ends_with('-')
                || sample.contains("--")
                || sample
                    .chars()
                    .any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            {
                Some(format!(
                    "template {template:?} yields names AWS rejects for some tenants"
                ))
            } else if sample.len() > max_len {
                Some(format!(
                    "template {template:?} yields names of up to {} characters; the limit is {max_len}",
                    sample.len()
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                problems.push(place(
                    SpecDiagnostic::new(
                        path,
                        problem,
                        "start with a lowercase letter, use lowercase letters, digits, single hyphens and {id}, and keep it short",
                    )
                    .field(format!("naming.{key}")),
                    &format!("{key} ="),
                ));
            }
        }
        for tier in self.approval.tiers.keys() {
            if !self.tiers.contains_key(tier) {
                problems.push(place(
                    SpecDiagnostic::new(
                        path,
                        format!("approval rule for unknown tier {tier:?}"),
                        format!("use one of: {}", self.tier_names()),
                    )
                    .field(format!("approval.tiers.{tier}")),
                    "[approval",
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> String {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/platform.toml"))
            .expect("example platform file")
    }

    #[test]
    fn the_aws_section_is_optional_and_has_defaults() {
        let source = example();
        let start = source.find("[aws]").unwrap();
        let end = start + source[start..].find("\n# Names").unwrap();
        let without = format!("{}{}", &source[..start], &source[end..]);
        let spec = PlatformSpec::parse(Path::new("platform.toml"), &without).unwrap();
        assert_eq!(spec.aws, AwsSettings::default());
    }

    #[test]
    fn aws_name_templates_that_aws_would_reject_are_reported() {
        let source = example();
        for (from, to, says) in [
            (
                "s3_bucket = \"rag-{id}-documents\"",
                "s3_bucket = \"rag_{id}\"",
                "AWS rejects",
            ),
            (
                "iam_role = \"rag-{id}-app\"",
                "iam_role = \"rag-app\"",
                "does not contain the tenant id",
            ),
            (
                "cache_cluster = \"rag-{id}\"",
                "cache_cluster = \"rag-cache-cluster-{id}\"",
                "the limit is 40",
            ),
            (
                "s3_bucket = \"rag-{id}-documents\"",
                "s3_bucket = \"rag-{id_}\"",
                "take {id}",
            ),
        ] {
            let edited = source.replace(from, to);
            assert_ne!(edited, source);
            let problems = PlatformSpec::parse(Path::new("platform.toml"), &edited).unwrap_err();
            let text = problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n");
            assert!(text.contains(says), "{to}: {text}");
        }
    }
}
