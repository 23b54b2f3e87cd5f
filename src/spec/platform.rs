//! `specs/platform.toml`: endpoints, naming, the tier catalog, regions, data
//! classifications and approval rules. One file for the whole platform.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::diagnostic::{SourceMap, SpecDiagnostic, from_toml_error, is_unprintable};
use super::limits::{
    POSTGRES_NAME_MAX, aws_tag_key_problem, aws_tag_value_problem, email_problem, text_problem,
};
use crate::connect::aws::AwsEndpoint;
use crate::connect::postgres::PostgresEndpoint;
use crate::connect::redis::RedisEndpoint;

/// The platform: everything that is the same for every tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformSpec {
    pub platform: PlatformInfo,
    #[serde(default)]
    pub postgres: PostgresEndpoint,
    #[serde(default)]
    pub state: StateSettings,
    #[serde(default)]
    pub encryption: EncryptionSettings,
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
    /// Signed HTTP notifications of run and request events (`[[webhooks]]`).
    #[serde(default)]
    pub webhooks: Vec<WebhookSettings>,
    #[serde(default)]
    pub validation: ValidationSettings,
    #[serde(default)]
    pub runs: RunSettings,
    #[serde(default)]
    pub naming: Naming,
    #[serde(default)]
    pub policy: PolicySettings,
    /// Tier name (`gold`) to what the tier gets.
    pub tiers: BTreeMap<String, Tier>,
    /// Region name (`eu-west-1`) to its properties. Only these regions are allowed.
    pub regions: BTreeMap<String, Region>,
    /// Data classification (`phi`, `eu-personal`) to where such data may live.
    pub data_classifications: BTreeMap<String, DataClassification>,
    pub approval: ApprovalRules,
}

/// The platform's name and the tags every tenant's resources carry (`[platform]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformInfo {
    pub name: String,
    /// Tags put on every taggable resource of every tenant, besides the tenant's own.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Where tenants' state is kept, and how its locks behave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSettings {
    /// `local` (files under `--state`, locked with `flock`: one machine) or `postgres`
    /// (schema `tenantform_state` of the platform database, reached like `[postgres]`:
    /// any number of machines). `TENANTFORM_STATE_BACKEND` overrides it.
    pub backend: StateBackendKind,
    /// Versions of each tenant's state kept in PostgreSQL, the current one included
    /// (`tenantform state history`). Local state keeps one backup.
    pub history: u32,
    /// How long a PostgreSQL lock outlives its holder's last heartbeat: a holder that
    /// died is taken over this long after its last renewal (renewed every third of it).
    pub lease_ttl_seconds: u64,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            backend: StateBackendKind::Local,
            history: 10,
            lease_ttl_seconds: 30,
        }
    }
}

/// How state and saved plans are encrypted at rest (`[encryption]`; README "Security").
/// Plain data: the state module reads the passphrases and checks the values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionSettings {
    /// Who wraps each write's data key: `passphrase` or `aws_kms`. Absent: nothing new
    /// is encrypted (encrypted records still read with the fallback, to go back to
    /// plain text).
    pub key_provider: Option<KeyProviderKind>,
    /// The environment variable that holds the passphrase (at least 16 characters).
    pub passphrase_env: String,
    /// The KMS key of `aws_kms`: a key id, key ARN, alias name (`alias/NAME`) or alias
    /// ARN. Reached like every AWS service (`[aws]`); an ARN's region is the key's.
    pub kms_key_id: Option<String>,
    /// The variable of the previous passphrase during a rotation: records it wrapped
    /// still read, and are written under the new key (`tenantform state rekey`).
    pub fallback_passphrase_env: Option<String>,
    /// The previous KMS key during a rotation (from or to another key or provider):
    /// records it wrapped still read.
    pub fallback_kms_key_id: Option<String>,
    /// PBKDF2-SHA512 iterations for new writes (at least 200,000).
    pub iterations: u32,
    /// Refuse plain text: never write it, and refuse to read it.
    pub enforced: bool,
}

impl Default for EncryptionSettings {
    fn default() -> Self {
        EncryptionSettings {
            key_provider: None,
            passphrase_env: "TENANTFORM_STATE_PASSPHRASE".into(),
            kms_key_id: None,
            fallback_passphrase_env: None,
            fallback_kms_key_id: None,
            iterations: 600_000,
            enforced: false,
        }
    }
}

/// What can wrap a data key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyProviderKind {
    /// A key derived from a passphrase (PBKDF2-SHA512).
    Passphrase,
    /// A key of AWS KMS (`GenerateDataKey`, `Decrypt`).
    AwsKms,
}

/// A place tenants' state can be kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateBackendKind {
    /// State files in a directory ([`LocalStore`](crate::state::LocalStore)).
    Local,
    /// Rows in the platform's PostgreSQL database, with state history.
    Postgres,
}

impl StateBackendKind {
    /// The name as written in platform.toml (`local`, `postgres`).
    pub fn as_str(self) -> &'static str {
        match self {
            StateBackendKind::Local => "local",
            StateBackendKind::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for StateBackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StateBackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(StateBackendKind::Local),
            "postgres" => Ok(StateBackendKind::Postgres),
            other => Err(format!(
                "{other:?} is not a state backend; use \"local\" or \"postgres\""
            )),
        }
    }
}

/// `[aws]`: how the engine reaches AWS (or an AWS-compatible endpoint), and what
/// tenants' roles trust. Every field is optional: credentials always come from the
/// standard AWS chain (environment, profile, instance role), and what is not set here
/// comes from it too (`AWS_REGION`, `AWS_ENDPOINT_URL`). The connection part goes to
/// [`crate::connect`] as an [`AwsEndpoint`]; the principals are the blueprint's, the
/// cache wait the ElastiCache provider's.
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

impl From<&AwsSettings> for AwsEndpoint {
    fn from(s: &AwsSettings) -> Self {
        AwsEndpoint {
            endpoint_url: s.endpoint_url.clone(),
            region: s.region.clone(),
            profile: s.profile.clone(),
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

/// The events a webhook may ask for (`[[webhooks]] events`).
pub const WEBHOOK_EVENTS: &[&str] = &[
    "run.created",
    "run.needs_approval",
    "run.applied",
    "run.errored",
    "run.rolled_back",
    "run.drift_detected",
    "request.created",
    "request.needs_approval",
    "request.active",
    "request.rejected",
    "request.failed",
    "request.rolled_back",
];

/// One `[[webhooks]]`: where run and request events are POSTed, signed with the secret
/// the variable `secret_env` holds (the file never holds the secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// `https://...` (or `http://` to a private receiver).
    pub url: String,
    /// The variable that holds the shared secret of the signature.
    pub secret_env: String,
    /// The events to send ([`WEBHOOK_EVENTS`]); empty or left out: all.
    #[serde(default)]
    pub events: Vec<String>,
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
    /// The tenant's credentials secret in AWS Secrets Manager.
    pub credentials_secret: String,
    /// Templates a key had before it was changed (`postgres_schema = ["tenant_{id_}"]`).
    /// State is checked against the names the templates give each tenant; a name made
    /// by a template listed here is still accepted as the tenant's own, so that the next
    /// apply can replace it with the new name. Remove the entry once every tenant is
    /// applied.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub renamed_from: BTreeMap<String, Vec<String>>,
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
            credentials_secret: "rag-{id}-credentials".into(),
            renamed_from: BTreeMap::new(),
        }
    }
}

impl Naming {
    /// The template keys, as written in `[naming]`.
    pub const KEYS: &'static [&'static str] = &[
        "postgres_schema",
        "postgres_role",
        "s3_bucket",
        "iam_role",
        "iam_policy",
        "cache_cluster",
        "redis_user",
        "credentials_secret",
    ];

    /// The template of `key`, mutable (one of [`Naming::KEYS`]).
    pub fn template_mut(&mut self, key: &str) -> Option<&mut String> {
        Some(match key {
            "postgres_schema" => &mut self.postgres_schema,
            "postgres_role" => &mut self.postgres_role,
            "s3_bucket" => &mut self.s3_bucket,
            "iam_role" => &mut self.iam_role,
            "iam_policy" => &mut self.iam_policy,
            "cache_cluster" => &mut self.cache_cluster,
            "redis_user" => &mut self.redis_user,
            "credentials_secret" => &mut self.credentials_secret,
            _ => return None,
        })
    }

    fn templates(&self) -> [(&'static str, &str); 3] {
        [
            ("postgres_schema", &self.postgres_schema),
            ("postgres_role", &self.postgres_role),
            ("redis_user", &self.redis_user),
        ]
    }

    /// AWS name templates with the longest name AWS accepts for each.
    fn aws_templates(&self) -> [(&'static str, &str, usize); 5] {
        [
            ("s3_bucket", &self.s3_bucket, 63),
            ("iam_role", &self.iam_role, 64),
            ("iam_policy", &self.iam_policy, 128),
            ("cache_cluster", &self.cache_cluster, 40),
            // 512 less the 7 characters of the suffix AWS adds to the ARN.
            ("credentials_secret", &self.credentials_secret, 505),
        ]
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
    /// The name as written in platform.toml (`pgvector`).
    pub fn as_str(self) -> &'static str {
        match self {
            VectorBackend::Pgvector => "pgvector",
        }
    }
}

/// How the distance between two vectors is measured, which the index is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorDistance {
    /// Cosine distance (pgvector's `vector_cosine_ops`).
    Cosine,
    /// Euclidean distance (`vector_l2_ops`).
    L2,
    /// Inner product (`vector_ip_ops`).
    InnerProduct,
}

impl VectorDistance {
    /// The name as written in platform.toml (`cosine`, `l2`, `inner_product`).
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

/// The Rego policies every plan is checked against (see `crate::policy`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// Directory of `.rego` files. A relative path is relative to the directory of
    /// platform.toml. Unset: plans are checked only against `--policy DIR`.
    pub dir: Option<PathBuf>,
    /// `dir` made absolute (filled in when the file is loaded).
    #[serde(skip)]
    pub resolved_dir: Option<PathBuf>,
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

/// The product features a tier turns on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierFeatures {
    pub advanced_search: bool,
    pub realtime_indexing: bool,
    pub custom_models: bool,
}

/// The usage limits of a tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    pub queries_per_minute: u32,
    pub documents_per_month: u32,
}

/// The language model a tier uses, and its answer length.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    pub model: String,
    pub max_tokens: u32,
}

/// A region tenants may be placed in (`[regions.NAME]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Cost relative to us-east-1.
    pub cost_multiplier: f64,
    /// The legal area the region is in (`us`, `eu`, `in`); residency rules name these.
    pub jurisdiction: String,
}

/// A class of data and where it may be held (`[data_classifications.NAME]`).
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
        spec.policy.resolved_dir = spec.policy.dir.as_deref().map(|d| resolve_path(base, d));
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

    /// The sorted region names, for messages.
    pub fn region_names(&self) -> String {
        self.regions.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// The sorted data classification names, for messages.
    pub fn classification_names(&self) -> String {
        self.data_classifications
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn check(&self, path: &Path, source: &str) -> Vec<SpecDiagnostic> {
        let mut found = Problems::new(path, source);
        let p = &mut found;
        if self.tiers.is_empty() {
            p.push(
                &["tiers"],
                "no tier is defined",
                "add at least one [tiers.NAME]",
            );
        }
        self.check_tags(p);
        for (name, tier) in &self.tiers {
            self.check_tier(p, name, tier);
        }
        let runs = &self.runs;
        if runs.lease_secs == 0 || runs.heartbeat_secs == 0 || runs.poll_secs == 0 {
            p.push(
                &["runs"],
                "lease_secs, heartbeat_secs and poll_secs must be at least 1",
                "e.g. lease_secs = 30, heartbeat_secs = 10, poll_secs = 5",
            );
        } else if runs.heartbeat_secs * 2 > runs.lease_secs {
            p.push(
                &["runs", "heartbeat_secs"],
                format!(
                    "a heartbeat every {} s does not renew a lease of {} s in time: a worker that misses one heartbeat would lose its runs",
                    runs.heartbeat_secs, runs.lease_secs
                ),
                "set heartbeat_secs to at most half of lease_secs (a third is usual)",
            );
        }
        for (name, region) in &self.regions {
            let at = |k: &'static str| ["regions", name.as_str(), k];
            if !is_region_name(name) {
                p.push(
                    &["regions", name],
                    format!("region key {name:?} is not an AWS region name"),
                    "write the region as AWS names it, e.g. [regions.eu-west-1]",
                );
            }
            if !(region.cost_multiplier > 0.0 && region.cost_multiplier.is_finite()) {
                p.push(
                    &at("cost_multiplier"),
                    "must be a positive number",
                    "e.g. 1.0 or 1.2",
                );
            }
            if region.jurisdiction.trim().is_empty() || text_problem(&region.jurisdiction).is_some()
            {
                p.push(
                    &at("jurisdiction"),
                    "the jurisdiction is empty or unprintable",
                    "name the legal area of the region, e.g. \"eu\"",
                );
            }
        }
        let jurisdictions: Vec<&str> = self
            .regions
            .values()
            .map(|r| r.jurisdiction.as_str())
            .collect();
        for (name, class) in &self.data_classifications {
            let field = [
                "data_classifications",
                name.as_str(),
                "allowed_jurisdictions",
            ];
            if name.trim().is_empty() || text_problem(name).is_some() {
                p.push(
                    &["data_classifications", name],
                    format!("data classification key {name:?} is empty or unprintable"),
                    "name the classification, e.g. [data_classifications.eu-personal]",
                );
            }
            if class.allowed_jurisdictions.is_empty() {
                p.push(
                    &field,
                    "no jurisdiction is allowed, so no tenant could use this classification",
                    format!(
                        "list the jurisdictions its data may live in, e.g. [{:?}]",
                        jurisdictions.first().copied().unwrap_or("eu")
                    ),
                );
            }
            for j in &class.allowed_jurisdictions {
                if !jurisdictions.contains(&j.as_str()) {
                    p.push(
                        &field,
                        format!("jurisdiction {j:?} has no region"),
                        format!(
                            "use a jurisdiction of a region in [regions] ({})",
                            jurisdictions.join(", ")
                        ),
                    );
                }
            }
        }
        self.check_naming(p);
        self.check_aws(p);
        self.check_stack(p);
        self.check_webhooks(p);
        for tier in self.approval.tiers.keys() {
            if !self.tiers.contains_key(tier) {
                p.push(
                    &["approval", "tiers", tier],
                    format!("approval rule for unknown tier {tier:?}"),
                    format!("use one of: {}", self.tier_names()),
                );
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
            p.push(
                &["approval", "home_jurisdiction"],
                format!("home jurisdiction {home:?} is not the jurisdiction of any region"),
                format!(
                    "use one of: {}",
                    known.into_iter().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        found.into_vec()
    }

    /// `[platform] tags`: they go on every AWS resource, so AWS's tag rules apply.
    fn check_tags(&self, p: &mut Problems<'_>) {
        for (key, value) in &self.platform.tags {
            let field = ["platform", "tags", key.as_str()];
            if let Some(problem) = aws_tag_key_problem(key) {
                p.push(
                    &field,
                    format!("the tag key {problem}"),
                    "use a key of 1 to 128 letters, digits, spaces and _ . : / = + - @, not starting with aws:",
                );
            }
            if let Some(problem) = aws_tag_value_problem(value) {
                p.push(
                    &field,
                    format!("the tag value {problem}"),
                    "use up to 256 letters, digits, spaces and _ . : / = + - @",
                );
            }
        }
    }

    fn check_tier(&self, p: &mut Problems<'_>, name: &str, tier: &Tier) {
        let at = |k: &'static str| ["tiers", name, k];
        if !is_catalog_key(name) {
            p.push(
                &["tiers", name],
                format!("tier key {name:?} is not usable"),
                "name the tier with 1 to 32 lowercase letters, digits, hyphens or underscores, starting with a letter, e.g. [tiers.gold]",
            );
        }
        if tier.budget_min_inr < 0 || tier.budget_max_inr < tier.budget_min_inr {
            p.push(
                &at("budget_min_inr"),
                format!(
                    "budget range {}..{} is empty or negative",
                    tier.budget_min_inr, tier.budget_max_inr
                ),
                "set 0 <= budget_min_inr <= budget_max_inr",
            );
        }
        if tier.dedicated_cache && (tier.cache_node_type.is_none() || tier.cache_nodes.is_none()) {
            p.push(
                &at("dedicated_cache"),
                "a tier with a dedicated cache needs its node type and count",
                "set cache_node_type and cache_nodes",
            );
        }
        if tier.postgres_connection_limit < 1 {
            p.push(
                &at("postgres_connection_limit"),
                "must be at least 1",
                "set a positive limit",
            );
        }
        // The display name is the value of the Tier tag on every AWS resource.
        let display_problem = if tier.display_name.trim().is_empty() {
            Some("is empty".to_owned())
        } else {
            aws_tag_value_problem(&tier.display_name)
        };
        if let Some(problem) = display_problem {
            p.push(
                &at("display_name"),
                format!("the display name {problem}"),
                "use up to 256 letters, digits, spaces and _ . : / = + - @ (it becomes the Tier tag), e.g. \"Gold\"",
            );
        }
        // The blueprint moves objects to Standard-IA at 30 days only when Glacier comes
        // 30 days after that (S3 needs 30 days between the two transitions); in between,
        // the tier would silently lose its Standard-IA step.
        let glacier = tier.s3_glacier_days;
        if glacier == 0 || glacier > MAX_LIFECYCLE_DAYS {
            p.push(
                &at("s3_glacier_days"),
                format!("{glacier} days is out of range"),
                format!("use 1 to {MAX_LIFECYCLE_DAYS} days"),
            );
        } else if glacier > STANDARD_IA_DAYS && glacier < 2 * STANDARD_IA_DAYS {
            p.push(
                &at("s3_glacier_days"),
                format!(
                    "Glacier at {glacier} days is only {} days after Standard-IA (at {STANDARD_IA_DAYS}); S3 needs {STANDARD_IA_DAYS} days between the two",
                    glacier - STANDARD_IA_DAYS
                ),
                format!(
                    "use {STANDARD_IA_DAYS} or fewer days (straight to Glacier, no Standard-IA step) or {} or more",
                    2 * STANDARD_IA_DAYS
                ),
            );
        }
        if let Some(node_type) = &tier.cache_node_type
            && !(node_type.starts_with("cache.")
                && node_type.len() <= 64
                && node_type
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.'))
        {
            p.push(
                &at("cache_node_type"),
                format!(
                    "{:?} is not an ElastiCache node type",
                    printable_short(node_type)
                ),
                "name a node type such as \"cache.r6g.large\"",
            );
        }
        let model = &tier.llm.model;
        if model.trim().is_empty() || text_problem(model).is_some() || model.len() > 200 {
            p.push(
                &["tiers", name, "llm"],
                "the LLM model name is empty, too long or holds control characters",
                "name the model, e.g. \"gpt-4o\"",
            );
        }
    }

    fn check_naming(&self, p: &mut Problems<'_>) {
        for (key, template) in self.naming.templates() {
            self.check_postgres_template(p, &["naming", key], key, template);
        }
        for (key, template, max_len) in self.naming.aws_templates() {
            if let Some(problem) = aws_template_problem(template, max_len) {
                p.push(
                    &["naming", key],
                    problem,
                    "start with a lowercase letter, use lowercase letters, digits, single hyphens and {id}, and keep it short",
                );
            }
        }
        let postgres_keys: Vec<&str> = self.naming.templates().iter().map(|(k, _)| *k).collect();
        for (key, olds) in &self.naming.renamed_from {
            let field = ["naming", "renamed_from", key.as_str()];
            let aws = self
                .naming
                .aws_templates()
                .into_iter()
                .find(|(k, ..)| k == key);
            if !postgres_keys.contains(&key.as_str()) && aws.is_none() {
                p.push(
                    &field,
                    format!("{key:?} is not a naming template"),
                    format!("use one of: {}", Naming::KEYS.join(", ")),
                );
                continue;
            }
            for old in olds {
                match aws {
                    Some((_, _, max_len)) => {
                        if let Some(problem) = aws_template_problem(old, max_len) {
                            p.push(
                                &field,
                                problem,
                                "list the template exactly as it was before the rename",
                            );
                        }
                    }
                    None => self.check_postgres_template(p, &field, key, old),
                }
            }
        }
    }

    /// A template of a PostgreSQL schema or role, or a Redis user.
    fn check_postgres_template(
        &self,
        p: &mut Problems<'_>,
        field: &[&str],
        key: &str,
        template: &str,
    ) {
        if !template.contains("{id}") && !template.contains("{id_}") {
            p.push(
                field,
                format!("template {template:?} does not contain the tenant id"),
                "include {id} or {id_} so that every tenant gets its own name",
            );
            return;
        }
        let sample = render_name(template, &"a-b".parse().expect("valid id"));
        if sample
            .chars()
            .any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            || !sample.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        {
            p.push(
                field,
                format!("template {template:?} yields characters PostgreSQL names would need quoting for"),
                "use only lowercase letters, digits, underscores and {id_}",
            );
            return;
        }
        let longest = render_name(template, &longest_tenant_id());
        if key != "redis_user" && longest.len() > POSTGRES_NAME_MAX {
            p.push(
                field,
                format!(
                    "template {template:?} yields names of up to {} bytes; PostgreSQL cuts names at {POSTGRES_NAME_MAX}",
                    longest.len()
                ),
                "shorten the fixed part of the template",
            );
        }
        if key != "redis_user" && sample.starts_with("pg_") {
            p.push(
                field,
                format!("template {template:?} yields names starting with pg_, which PostgreSQL reserves for itself"),
                "use another prefix, e.g. \"tenant_{id_}\"",
            );
        }
    }

    fn check_aws(&self, p: &mut Problems<'_>) {
        let sp = &self.aws.service_principal;
        // It is written into every tenant role's trust policy (a JSON document).
        let plain_service = !sp.is_empty()
            && sp.len() <= 128
            && sp.contains('.')
            && sp.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && sp.ends_with(|c: char| c.is_ascii_lowercase())
            && sp
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
        if !plain_service {
            p.push(
                &["aws", "service_principal"],
                format!("{:?} is not an AWS service principal", printable_short(sp)),
                "name the service that runs the tenants' applications, e.g. \"ecs-tasks.amazonaws.com\"",
            );
        }
        for arn in &self.aws.trusted_principals {
            let plain_arn = arn.starts_with("arn:")
                && arn.len() <= 2048
                && !arn.contains(|c: char| {
                    c.is_whitespace() || is_unprintable(c) || "\"\\".contains(c)
                });
            if !plain_arn {
                p.push(
                    &["aws", "trusted_principals"],
                    format!("{:?} is not an IAM principal ARN", printable_short(arn)),
                    "write an ARN such as \"arn:aws:iam::{aws_account_id}:role/validation\"",
                );
            }
        }
    }

    fn check_webhooks(&self, p: &mut Problems<'_>) {
        for (i, hook) in self.webhooks.iter().enumerate() {
            let n = i.to_string();
            let at = |k: &'static str| ["webhooks", n.as_str(), k];
            let scheme_ok = hook
                .url
                .split_once("://")
                .is_some_and(|(s, rest)| matches!(s, "http" | "https") && !rest.is_empty());
            if !scheme_ok
                || hook
                    .url
                    .chars()
                    .any(|c| is_unprintable(c) || c.is_whitespace())
            {
                p.push(
                    &at("url"),
                    format!("webhook {} has no http(s) URL", i + 1),
                    "give the receiver's URL, e.g. url = \"https://hooks.example.com/tenantform\"",
                );
            }
            if hook.secret_env.trim().is_empty() {
                p.push(
                    &at("secret_env"),
                    format!("webhook {} names no variable for its secret", i + 1),
                    "name the environment variable that holds the shared secret, e.g. secret_env = \"TENANTFORM_WEBHOOK_SECRET\"",
                );
            }
            for e in &hook.events {
                if !WEBHOOK_EVENTS.contains(&e.as_str()) {
                    p.push(
                        &at("events"),
                        format!("webhook {}: {e:?} is not an event", i + 1),
                        format!(
                            "use some of: {}; or leave events out for all",
                            WEBHOOK_EVENTS.join(", ")
                        ),
                    );
                }
            }
        }
    }

    /// The Redis, vector, dashboard and validation sections.
    fn check_stack(&self, p: &mut Problems<'_>) {
        let v = &self.vector;
        // pgvector's HNSW index takes vectors of up to 2000 dimensions.
        if !(1..=2000).contains(&v.dimension) {
            p.push(
                &["vector", "dimension"],
                format!("dimension {} is out of range", v.dimension),
                "set the embedding model's output size, 1 to 2000 (an HNSW index takes no more)",
            );
        }
        if !(2..=100).contains(&v.hnsw_m) {
            p.push(
                &["vector", "hnsw_m"],
                format!("hnsw_m {} is out of range", v.hnsw_m),
                "use 2 to 100 (default 16)",
            );
        }
        if !(4..=1000).contains(&v.hnsw_ef_construction) || v.hnsw_ef_construction < 2 * v.hnsw_m {
            p.push(
                &["vector", "hnsw_ef_construction"],
                format!(
                    "hnsw_ef_construction {} is out of range",
                    v.hnsw_ef_construction
                ),
                "use 4 to 1000 and at least twice hnsw_m (default 64)",
            );
        }
        let plain_identifier = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.len() <= 40
                && !s.starts_with("pg_")
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !plain_identifier(&v.table) || v.table == "documents" {
            p.push(
                &["vector", "table"],
                format!("table name {:?} is not usable", v.table),
                "use up to 40 lowercase letters, digits and underscores, starting with a letter, not pg_, other than \"documents\" (e.g. \"embeddings\")",
            );
        }
        if self.redis.url_env.trim().is_empty() {
            p.push(
                &["redis", "url_env"],
                "the variable name is empty",
                "name the environment variable holding the Redis URL, e.g. \"REDIS_URL\"",
            );
        }
        if self
            .policy
            .dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            p.push(
                &["policy", "dir"],
                "the policy directory is empty",
                "set dir, e.g. \"policies\" (relative to this file), or remove [policy]",
            );
        }
        let st = &self.state;
        if !(1..=1000).contains(&st.history) {
            p.push(
                &["state", "history"],
                format!("history {} is out of range", st.history),
                "keep 1 to 1000 versions of each tenant's state (default 10)",
            );
        }
        if !(1..=3600).contains(&st.lease_ttl_seconds) {
            p.push(
                &["state", "lease_ttl_seconds"],
                format!("lease_ttl_seconds {} is out of range", st.lease_ttl_seconds),
                "use 1 to 3600 seconds (default 30): how long a dead holder keeps a tenant locked",
            );
        }
        let d = &self.dashboards;
        if d.dir.as_os_str().is_empty() {
            p.push(
                &["dashboards", "dir"],
                "the dashboards directory is empty",
                "set dir, e.g. \"../dashboards\" (relative to this file)",
            );
        } else if !d.resolved_dir.starts_with(&p.platform_root) {
            p.push(
                &["dashboards", "dir"],
                format!(
                    "{} resolves to {}, outside the platform directory {}",
                    d.dir.display(),
                    d.resolved_dir.display(),
                    p.platform_root.display()
                ),
                "keep dashboards inside the directory that holds the specs, e.g. \"../dashboards\"; tenantform writes and deletes files there",
            );
        }
        if let Some(url) = &d.grafana_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            p.push(
                &["dashboards", "grafana_url"],
                format!("{:?} is not an http(s) URL", printable_short(url)),
                "write Grafana's base URL, e.g. \"http://grafana:3000\"",
            );
        }
        if d.datasource_uid.trim().is_empty() {
            p.push(
                &["dashboards", "datasource_uid"],
                "the data source uid is empty",
                "set the uid of the Prometheus data source in Grafana",
            );
        }
        // Notifications go to a mail server, which refuses what is not an address.
        let n = &self.notifications;
        let addresses = std::iter::once(("from", &n.from))
            .chain(n.platform_team.iter().map(|a| ("platform_team", a)))
            .chain(n.finance.iter().map(|a| ("finance", a)));
        for (key, address) in addresses {
            if let Some(problem) = email_problem(address) {
                p.push(
                    &["notifications", key],
                    format!("{:?} {problem}", printable_short(address)),
                    "write one address like \"platform-team@example.com\"",
                );
            }
        }
        let q = self.validation.latency_queries;
        if !(1..=MAX_LATENCY_QUERIES).contains(&q) {
            p.push(
                &["validation", "latency_queries"],
                format!("{q} queries is out of range"),
                format!("measure 1 to {MAX_LATENCY_QUERIES} queries (default 20)"),
            );
        }
    }
}

/// Days S3 keeps an object before it may move to Standard-IA, and the least time between
/// two transitions.
pub const STANDARD_IA_DAYS: u32 = 30;
/// A hundred years: S3 takes days as a 32-bit number; a lifecycle past this is a typo.
const MAX_LIFECYCLE_DAYS: u32 = 36_500;
/// The latency check runs its queries one after another, inside the validation run.
const MAX_LATENCY_QUERIES: usize = 10_000;

/// The tenant id that gives the longest names.
fn longest_tenant_id() -> crate::resource::TenantId {
    "a".repeat(crate::resource::TenantId::MAX_LEN)
        .parse()
        .expect("valid id")
}

/// Why an AWS name template would give some tenant a name AWS refuses.
fn aws_template_problem(template: &str, max_len: usize) -> Option<String> {
    let sample = render_name(template, &longest_tenant_id());
    if template.contains("{id_}") {
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
    }
}

/// A tier or other catalog key: what the settings row, dashboard tags and messages carry.
fn is_catalog_key(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// `us-east-1`, `eu-central-1`, `ap-south-2`, `us-gov-west-1`.
fn is_region_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// A value quoted back in a message: at most 60 characters of it.
fn printable_short(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// The problems of one platform file, each placed at the key it is about.
struct Problems<'s> {
    path: &'s Path,
    source: &'s str,
    map: SourceMap<'s>,
    /// The directory that holds the specs directory: what the platform may write to.
    platform_root: PathBuf,
    found: Vec<SpecDiagnostic>,
}

impl<'s> Problems<'s> {
    fn new(path: &'s Path, source: &'s str) -> Self {
        let base = path.parent().unwrap_or(Path::new("."));
        Problems {
            path,
            source,
            map: SourceMap::new(source),
            platform_root: resolve_path(base, Path::new("..")),
            found: Vec::new(),
        }
    }

    fn push(&mut self, field: &[&str], message: impl Into<String>, fix: impl Into<String>) {
        let d = SpecDiagnostic::new(self.path, message, fix).field(field.join("."));
        let d = match self.map.offset_of(field) {
            Some(offset) => d.at(self.source, offset),
            None => d,
        };
        self.found.push(d);
    }

    fn into_vec(self) -> Vec<SpecDiagnostic> {
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> String {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/platform.toml"))
            .expect("example platform file")
    }

    /// Every problem reported for the example with `from` replaced by `to`, one a line.
    fn problems_after_edit(source: &str, from: &str, to: &str) -> String {
        let edited = source.replace(from, to);
        assert_ne!(edited, source);
        PlatformSpec::parse(Path::new("platform.toml"), &edited)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn webhooks_need_a_url_a_secret_variable_and_known_events() {
        let source = example();
        let good = format!(
            "{source}\n[[webhooks]]\nurl = \"https://hooks.example.com/t\"\nsecret_env = \"HOOK_SECRET\"\nevents = [\"run.applied\"]\n"
        );
        let spec = PlatformSpec::parse(Path::new("platform.toml"), &good).unwrap();
        assert_eq!(spec.webhooks[0].events, ["run.applied"]);
        let bad = format!(
            "{source}\n[[webhooks]]\nurl = \"ftp://x\"\nsecret_env = \" \"\nevents = [\"run.exploded\"]\n"
        );
        let problems = PlatformSpec::parse(Path::new("platform.toml"), &bad).unwrap_err();
        let fields: Vec<&str> = problems.iter().filter_map(|p| p.field.as_deref()).collect();
        assert_eq!(
            fields,
            [
                "webhooks.0.url",
                "webhooks.0.secret_env",
                "webhooks.0.events"
            ],
            "{problems:?}"
        );
        assert!(
            problems[2]
                .message
                .contains("\"run.exploded\" is not an event")
        );
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
    fn notification_addresses_and_node_types_are_checked() {
        let source = example();
        let edited = source
            .replace(
                "finance = [\"finance@rag-platform.example\"]",
                "finance = [\"finance\\u0000@x.example\", \"nobody\"]",
            )
            .replace(
                "cache_node_type = \"cache.r6g.large\"",
                "cache_node_type = \"big; DROP\"",
            );
        assert_ne!(edited, source);
        let problems = PlatformSpec::parse(Path::new("platform.toml"), &edited).unwrap_err();
        let fields: Vec<&str> = problems.iter().filter_map(|p| p.field.as_deref()).collect();
        assert_eq!(
            fields,
            [
                "tiers.gold.cache_node_type",
                "notifications.finance",
                "notifications.finance"
            ],
            "{problems:?}"
        );
        assert!(problems.iter().all(|p| p.line.is_some()), "{problems:?}");
    }

    #[test]
    fn state_settings_default_to_local_and_bad_ones_are_reported() {
        let source = example();
        let spec = PlatformSpec::parse(Path::new("platform.toml"), &source).unwrap();
        assert_eq!(spec.state, StateSettings::default());
        for (from, to, says) in [
            ("history = 10", "history = 0", "state.history"),
            (
                "lease_ttl_seconds = 30",
                "lease_ttl_seconds = 0",
                "state.lease_ttl_seconds",
            ),
            (
                "backend = \"local\"",
                "backend = \"mysql\"",
                "unknown variant",
            ),
        ] {
            let text = problems_after_edit(&source, from, to);
            assert!(text.contains(says), "{to}: {text}");
            assert!(text.contains("platform.toml:"), "{text}");
        }
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
            let text = problems_after_edit(&source, from, to);
            assert!(text.contains(says), "{to}: {text}");
        }
    }
}
