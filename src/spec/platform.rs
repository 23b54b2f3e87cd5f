//! `specs/platform.toml`: endpoints, naming, the tier catalog, regions, data
//! classifications and approval rules. One file for the whole platform.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

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
    pub redis: RedisEndpoint,
    #[serde(default)]
    pub vector: VectorSettings,
    #[serde(default)]
    pub dashboards: DashboardSettings,
    #[serde(default)]
    pub notifications: NotificationSettings,
    #[serde(default)]
    pub validation: ValidationSettings,
    #[serde(default)]
    pub runs: RunSettings,
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
    /// IAM principals (ARNs) that may also assume tenants' application roles: the
    /// identity that runs validation checks with a tenant's own permissions (S3
    /// put/get/delete, cross-tenant refusal). It also needs `sts:AssumeRole` on the
    /// roles in its own IAM policy. Write the engine's own account as
    /// `{aws_account_id}`: policies are read back with it, so a literal id of that
    /// account would show as a change in every plan.
    pub trusted_principals: Vec<String>,
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
            trusted_principals: Vec::new(),
            cache_wait_timeout_secs: 1800,
        }
    }
}

/// Where the tenant lifecycle sends its notifications. The webhook URL and the SMTP
/// URL are secrets: the file names the environment variables that hold them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationSettings {
    /// Variable holding a Slack incoming-webhook URL; unset or empty: no Slack.
    pub slack_webhook_url_env: Option<String>,
    /// Variable holding `smtp://host:port` or `smtps://user:pass@host:port`; unset or
    /// empty: no e-mail.
    pub smtp_url_env: Option<String>,
    /// The sender of e-mails.
    pub from: String,
    pub platform_team: Vec<String>,
    pub finance: Vec<String>,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            slack_webhook_url_env: Some("SLACK_WEBHOOK_URL".into()),
            smtp_url_env: Some("SMTP_URL".into()),
            from: "tenantform@localhost".into(),
            platform_team: Vec::new(),
            finance: Vec::new(),
        }
    }
}

/// The validation suite's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationSettings {
    /// The metrics endpoint to check for the tenant's series. Unset: tenantform serves
    /// its own metrics on a loopback port for the duration of the check.
    pub metrics_url: Option<String>,
    /// Variable holding the platform's JWT signing secret; unset: a random one per run.
    pub jwt_secret_env: Option<String>,
    /// Queries measured for the latency check.
    pub latency_queries: usize,
}

impl Default for ValidationSettings {
    fn default() -> Self {
        ValidationSettings {
            metrics_url: None,
            jwt_secret_env: Some("TENANTFORM_JWT_SECRET".into()),
            latency_queries: 20,
        }
    }
}

/// Who executes runs (the queued provisionings, plans and applies of `tenantform runs`)
/// and how workers hold them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSettings {
    pub executor: RunExecutor,
    /// A run whose worker has not renewed its lease for this long is taken over by
    /// another worker.
    pub lease_secs: u64,
    /// How often a worker renews the leases of its runs; well under `lease_secs`.
    pub heartbeat_secs: u64,
    /// How often an idle worker looks for runs when no notification woke it.
    pub poll_secs: u64,
    /// How long a run waits for its tenant's state lock (held by a CLI `apply`, say)
    /// before it fails naming the holder.
    pub lock_timeout_secs: u64,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            executor: RunExecutor::Embedded,
            lease_secs: 30,
            heartbeat_secs: 10,
            poll_secs: 5,
            lock_timeout_secs: 300,
        }
    }
}

/// Who executes a queued run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunExecutor {
    /// The command that queued the run executes it itself (one machine, no service).
    Embedded,
    /// `tenantform worker` processes execute it; the command returns at once.
    Workers,
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
    /// The tenant's ACL user on the shared Redis.
    pub redis_user: String,
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
            redis_user: "tenant_{id_}".into(),
        }
    }
}

impl Naming {
    fn templates(&self) -> [(&'static str, &str); 3] {
        [
            ("postgres_schema", &self.postgres_schema),
            ("postgres_role", &self.postgres_role),
            ("redis_user", &self.redis_user),
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

/// The shared Redis on which every tenant gets an ACL user. The URL (with the admin
/// password in it) comes from an environment variable, never from the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisEndpoint {
    /// The environment variable holding `redis://USER:PASSWORD@HOST:PORT/DB`.
    pub url_env: String,
    /// Run `ACL SAVE` after every change, so that users survive a restart of Redis.
    /// Needs an `aclfile` in the server's configuration; off by default, in which
    /// case a restarted Redis shows up as drift and the next apply re-creates the users.
    pub acl_save: bool,
}

impl Default for RedisEndpoint {
    fn default() -> Self {
        RedisEndpoint {
            url_env: "REDIS_URL".into(),
            acl_save: false,
        }
    }
}

/// Which store holds the tenants' embeddings, and their shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VectorSettings {
    /// The provider of `vector_namespace` resources.
    pub backend: VectorBackend,
    /// Dimensions of every embedding (the embedding model's output size).
    pub dimension: u32,
    /// The distance the index is built for.
    pub distance: VectorDistance,
    /// The embeddings table in each tenant's schema (pgvector).
    pub table: String,
    /// HNSW index parameters (pgvector's defaults).
    pub hnsw_m: u32,
    pub hnsw_ef_construction: u32,
}

impl Default for VectorSettings {
    fn default() -> Self {
        VectorSettings {
            backend: VectorBackend::Pgvector,
            dimension: 1536,
            distance: VectorDistance::Cosine,
            table: "embeddings".into(),
            hnsw_m: 16,
            hnsw_ef_construction: 64,
        }
    }
}

/// A vector store. Each variant is served by its own provider; a collection per
/// tenant in Qdrant or a namespace in Pinecone would be further variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorBackend {
    /// A table with a `vector` column and an HNSW index, in the tenant's schema.
    Pgvector,
}

impl VectorBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            VectorBackend::Pgvector => "pgvector",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorDistance {
    Cosine,
    L2,
    InnerProduct,
}

impl VectorDistance {
    pub fn as_str(self) -> &'static str {
        match self {
            VectorDistance::Cosine => "cosine",
            VectorDistance::L2 => "l2",
            VectorDistance::InnerProduct => "inner_product",
        }
    }
}

/// Where the tenants' Grafana dashboards go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardSettings {
    /// Directory for dashboard JSON files, read by a Grafana file provider. A relative
    /// path is relative to the directory of platform.toml, not to the working
    /// directory, so that every run writes to the same place.
    pub dir: PathBuf,
    /// Also upload each dashboard through Grafana's HTTP API (`POST /api/dashboards/db`).
    pub grafana_url: Option<String>,
    /// The environment variable holding a Grafana service-account token.
    pub grafana_token_env: String,
    /// The Prometheus data source the panels query.
    pub datasource_uid: String,
    /// `dir` made absolute (filled in when the file is loaded).
    #[serde(skip)]
    pub resolved_dir: PathBuf,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        DashboardSettings {
            dir: "dashboards".into(),
            grafana_url: None,
            grafana_token_env: "GRAFANA_TOKEN".into(),
            datasource_uid: "prometheus".into(),
            resolved_dir: PathBuf::new(),
        }
    }
}

/// `base.join(path)`, absolute, with `.` and `..` removed without touching the disk
/// (the directory need not exist yet).
pub fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    let joined = base.join(path);
    let absolute = std::path::absolute(&joined).unwrap_or(joined);
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
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
    /// Added when the tenant's region is outside the platform's home jurisdiction.
    pub cross_border: Vec<String>,
    /// The jurisdiction the platform operates from (`in`); a tenant hosted in a region
    /// of another jurisdiction is a cross-border transfer. Unset: no request is.
    #[serde(default)]
    pub home_jurisdiction: Option<String>,
    /// Added per tier (`gold = ["cto"]`).
    #[serde(default)]
    pub tiers: BTreeMap<String, Vec<String>>,
}

impl PlatformSpec {
    /// Parses and checks `platform.toml`; `path` is only used in messages.
    pub fn parse(path: &Path, source: &str) -> Result<PlatformSpec, Vec<SpecDiagnostic>> {
        let mut spec: PlatformSpec =
            toml::from_str(source).map_err(|e| vec![from_toml_error(path, source, &e)])?;
        let base = path.parent().unwrap_or(Path::new("."));
        spec.dashboards.resolved_dir = resolve_path(base, &spec.dashboards.dir);
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
        let runs = &self.runs;
        if runs.lease_secs == 0 || runs.heartbeat_secs == 0 || runs.poll_secs == 0 {
            problems.push(place(
                SpecDiagnostic::new(
                    path,
                    "lease_secs, heartbeat_secs and poll_secs must be at least 1",
                    "e.g. lease_secs = 30, heartbeat_secs = 10, poll_secs = 5",
                )
                .field("runs"),
                "[runs]",
            ));
        } else if runs.heartbeat_secs * 2 > runs.lease_secs {
            problems.push(place(
                SpecDiagnostic::new(
                    path,
                    format!(
                        "a heartbeat every {} s does not renew a lease of {} s in time: a worker that misses one heartbeat would lose its runs",
                        runs.heartbeat_secs, runs.lease_secs
                    ),
                    "set heartbeat_secs to at most half of lease_secs (a third is usual)",
                )
                .field("runs.heartbeat_secs"),
                "heartbeat_secs",
            ));
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
        problems.extend(self.check_stack(path, source));
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
        if let Some(home) = &self.approval.home_jurisdiction
            && !self.regions.values().any(|r| &r.jurisdiction == home)
        {
            let known: std::collections::BTreeSet<&str> = self
                .regions
                .values()
                .map(|r| r.jurisdiction.as_str())
                .collect();
            problems.push(place(
                SpecDiagnostic::new(
                    path,
                    format!("home jurisdiction {home:?} is not the jurisdiction of any region"),
                    format!(
                        "use one of: {}",
                        known.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                )
                .field("approval.home_jurisdiction"),
                "home_jurisdiction",
            ));
        }
        problems
    }

    /// The Redis, vector and dashboard sections.
    fn check_stack(&self, path: &Path, source: &str) -> Vec<SpecDiagnostic> {
        let mut problems = Vec::new();
        let place = |d: SpecDiagnostic, needle: &str| match source.find(needle) {
            Some(offset) => d.at(source, offset),
            None => d,
        };
        let v = &self.vector;
        // pgvector's HNSW index takes vectors of up to 2000 dimensions.
        if !(1..=2000).contains(&v.dimension) {
            problems.push(place(
                SpecDiagnostic::new(
                    path,
                    format!("dimension {} is out of range", v.dimension),
                    "set the embedding model's output size, 1 to 2000 (an HNSW index takes no more)",
                )
                .field("vector.dimension"),
                "dimension",
            ));
        }
        if !(2..=100).contains(&v.hnsw_m) {
            problems.push(place(
                SpecDiagnostic::new(
                    path,
                    format!("hnsw_m {} is out of range", v.hnsw_m),
                    "use 2 to 100 (default 16)",
                )
                .field("vector.hnsw_m"),
                "hnsw_m",
            ));
        }
        if !(4..=1000).contains(&v.hnsw_ef_construction) || v.hnsw_ef_construction < 2 * v.hnsw_m {
            problems.push(place(
                SpecDiagnostic::new(
                    path,
                    format!(
                        "hnsw_ef_construction {} is out of range",
                        v.hnsw_ef_construction
                    ),
                    "use 4 to 1000 and at least twice hnsw_m (default 64)",
                )
                .field("vector.hnsw_ef_construction"),
                "hnsw_ef_construction",
            ));
        }
        let plain_identifier = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.len() <= 40
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !plain_identifier(&v.table) || v.table == "documents" {
            problems.push(place(
                SpecDiagnostic::new(
                    path,
                    format!("table name {:?} is not usable", v.table),
                    "use lowercase letters, digits and underscores, starting with a letter, other than \"documents\" (e.g. \"embeddings\")",
                )
                .field("vector.table"),
                "table",
            ));
        }
        if self.redis.url_env.trim().is_empty() {
            problems.push(place(
                SpecDiagnostic::new(
                    path,
                    "the variable name is empty",
                    "name the environment variable holding the Redis URL, e.g. \"REDIS_URL\"",
                )
                .field("redis.url_env"),
                "[redis]",
            ));
        }
        let d = &self.dashboards;
        if d.dir.as_os_str().is_empty() {
            problems.push(place(
                SpecDiagnostic::new(
                    path,
                    "the dashboards directory is empty",
                    "set dir, e.g. \"../dashboards\" (relative to this file)",
                )
                .field("dashboards.dir"),
                "[dashboards]",
            ));
        }
        if let Some(url) = &d.grafana_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            problems.push(place(
                SpecDiagnostic::new(
                    path,
                    format!("{url:?} is not an http(s) URL"),
                    "write Grafana's base URL, e.g. \"http://grafana:3000\"",
                )
                .field("dashboards.grafana_url"),
                "grafana_url",
            ));
        }
        if d.datasource_uid.trim().is_empty() {
            problems.push(place(
                SpecDiagnostic::new(
                    path,
                    "the data source uid is empty",
                    "set the uid of the Prometheus data source in Grafana",
                )
                .field("dashboards.datasource_uid"),
                "datasource_uid",
            ));
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
