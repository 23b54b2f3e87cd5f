//! The validation suite: eight real checks against a tenant's real resources, each
//! with a result, a message and a duration. Independent checks run concurrently.
//!
//! Every check uses what the tenant itself would use (its database role and password,
//! its Redis user, its IAM role's credentials), never the platform's admin rights,
//! except where reading back what exists is the point (cost tags).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Engine;
use crate::connect::aws::AssumedRole;
use crate::connect::aws::{AwsClients, sdk_error};
use crate::connect::postgres::{PostgresConfig, ident};
use crate::connect::redis::RedisConfig;
use crate::resource::{ResourceType, attr_str, tags_of};
use crate::secret::Credentials;
use crate::spec::{Specs, TenantSpec};
use crate::state::{ResourceStatus, TenantState};

/// What a failed check means for the tenant (the failure policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckCategory {
    /// A failure rolls the tenant back.
    Security,
    /// A failure rolls the tenant back.
    Integration,
    /// A failure warns the platform team; the tenant is still activated.
    Performance,
    /// A failure blocks activation; resources are kept for a fix.
    Compliance,
}

impl CheckCategory {
    /// The category as stored and shown (`security`).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckCategory::Security => "security",
            CheckCategory::Integration => "integration",
            CheckCategory::Performance => "performance",
            CheckCategory::Compliance => "compliance",
        }
    }
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub category: CheckCategory,
    pub passed: bool,
    pub message: String,
    pub duration_ms: u64,
}

/// What the checks need to know besides the tenant's state.
pub struct CheckContext<'a> {
    pub engine: &'a Engine,
    pub specs: &'a Specs,
    pub spec: &'a TenantSpec,
    pub state: &'a TenantState,
    /// Another tenant with resources (at most one), for the negative isolation test.
    pub others: &'a [TenantState],
    pub pg: &'a PostgresConfig,
    pub redis: Option<&'a RedisConfig>,
    pub aws: &'a AwsClients,
    /// Where the metrics are served (`http://127.0.0.1:PORT/metrics`).
    pub metrics_url: &'a str,
    /// Secret for the JWT check; a fresh random one when the platform sets none.
    pub jwt_secret: &'a [u8],
    /// Real queries measured for the latency check.
    pub latency_queries: usize,
    /// The tenant's credentials, read from its secret by the first check that needs
    /// them (an empty cell to begin with).
    pub credentials: tokio::sync::OnceCell<Result<Credentials, String>>,
}

/// The names of the checks, in the order they are reported.
pub const CHECKS: [&str; 8] = [
    "database_connectivity",
    "cross_tenant_isolation",
    "vector_search",
    "jwt_claims",
    "query_latency",
    "s3_access",
    "metrics_endpoint",
    "cost_tags",
];

/// Runs the suite. Checks that do not depend on each other run concurrently; the
/// latency check runs alone afterwards so that the others do not distort it.
pub async fn run_suite(cx: &CheckContext<'_>) -> Vec<CheckResult> {
    let (db, iso, vector, jwt, s3, metrics, tags) = tokio::join!(
        timed(
            "database_connectivity",
            CheckCategory::Integration,
            database_connectivity(cx)
        ),
        timed(
            "cross_tenant_isolation",
            CheckCategory::Security,
            cross_tenant_isolation(cx)
        ),
        timed(
            "vector_search",
            CheckCategory::Integration,
            vector_search(cx)
        ),
        timed("jwt_claims", CheckCategory::Security, jwt_claims(cx)),
        timed("s3_access", CheckCategory::Integration, s3_access(cx)),
        timed(
            "metrics_endpoint",
            CheckCategory::Integration,
            metrics_endpoint(cx)
        ),
        timed("cost_tags", CheckCategory::Compliance, cost_tags(cx)),
    );
    let latency = timed(
        "query_latency",
        CheckCategory::Performance,
        query_latency(cx),
    )
    .await;
    vec![db, iso, vector, jwt, latency, s3, metrics, tags]
}

async fn timed(
    name: &str,
    category: CheckCategory,
    f: impl std::future::Future<Output = Result<String, String>>,
) -> CheckResult {
    let started = Instant::now();
    // No check may hang the workflow.
    let outcome = match tokio::time::timeout(Duration::from_secs(60), Box::pin(f)).await {
        Ok(r) => r,
        Err(_) => Err("did not finish within 60 s".into()),
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    let (passed, message) = match outcome {
        Ok(m) => (true, m),
        Err(m) => (false, m),
    };
    CheckResult {
        name: name.to_owned(),
        category,
        passed,
        message,
        duration_ms,
    }
}

/// A created resource's attributes from state.
fn attrs_of<'s>(
    state: &'s TenantState,
    t: ResourceType,
    name: &str,
) -> Result<&'s crate::resource::Attributes, String> {
    state
        .resources
        .get(&format!("{t}.{name}"))
        .filter(|r| r.status == ResourceStatus::Created)
        .map(|r| &r.attributes)
        .ok_or_else(|| format!("the tenant has no {t}.{name} in state"))
}

fn string(attrs: &crate::resource::Attributes, name: &str) -> Result<String, String> {
    attr_str(attrs, name)
        .map(str::to_owned)
        .ok_or_else(|| format!("attribute {name} is missing"))
}

/// A connection with the tenant's own login, from its credentials secret:
/// (client, role, schema).
pub(super) async fn connect_as_tenant(
    pg: &PostgresConfig,
    credentials: &Credentials,
    state: &TenantState,
) -> Result<(tokio_postgres::Client, String, String), String> {
    let schema = string(
        attrs_of(state, ResourceType::PostgresSchema, "main")?,
        "name",
    )?;
    let login = &credentials.postgres;
    // Where the secret says, as the application would connect; the engine's own
    // settings for what the secret does not carry (TLS, timeouts).
    let tenant_pg = PostgresConfig {
        host: login.host.clone(),
        port: login.port,
        database: login.dbname.clone().unwrap_or_else(|| pg.database.clone()),
        ..pg.clone()
    };
    let role = login.username.clone();
    let client = tenant_pg
        .connect(Some((&role, &login.password)))
        .await
        .map_err(|e| format!("cannot connect as {role}: {e}"))?;
    Ok((client, role, schema))
}

/// The tenant's credentials as its application reads them: its IAM role assumed (the
/// engine's principal is one of the role's trusted principals), the value of its
/// credentials secret read with the role's credentials. The engine's own credentials
/// are refused the value by the secret's resource policy.
pub async fn tenant_credentials(
    aws: &AwsClients,
    state: &TenantState,
) -> Result<Credentials, String> {
    let arn = string(attrs_of(state, ResourceType::IamRole, "app")?, "arn")?;
    let assumed = aws
        .assume_tenant_role(&arn, &format!("tenantform-validate-{}", state.tenant))
        .await
        .map_err(|e| format!("cannot assume {arn}: {e}"))?;
    let text = read_secret_as(&assumed, state)
        .await
        .map_err(|e| e.to_string())?;
    Credentials::parse(&text)
        .map_err(|e| format!("the credentials secret of tenant {}: {e}", state.tenant))
}

/// The value of `state`'s credentials secret, read as `role` (the tenant's own, or
/// another tenant's for the negative test of isolation).
pub async fn read_secret_as(
    role: &AssumedRole,
    state: &TenantState,
) -> Result<String, crate::connect::ServiceError> {
    let secret = attrs_of(state, ResourceType::Secret, "credentials")
        .map_err(crate::connect::ServiceError::Config)?;
    let (name, region) = (string(secret, "name"), string(secret, "region"));
    let (name, region) = name
        .and_then(|n| Ok((n, region?)))
        .map_err(crate::connect::ServiceError::Config)?;
    role.secret_string(&region, &name).await
}

/// The tenant's credentials, read from its secret with its role once per suite.
async fn credentials<'c>(cx: &'c CheckContext<'_>) -> Result<&'c Credentials, String> {
    cx.credentials
        .get_or_init(|| tenant_credentials(cx.aws, cx.state))
        .await
        .as_ref()
        .map_err(Clone::clone)
}

async fn tenant_db(
    cx: &CheckContext<'_>,
) -> Result<(tokio_postgres::Client, String, String), String> {
    connect_as_tenant(cx.pg, credentials(cx).await?, cx.state).await
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| "none".into())
}

/// Check 1: The tenant's own credentials reach its schema: write, read and delete a document.
async fn database_connectivity(cx: &CheckContext<'_>) -> Result<String, String> {
    let (db, role, schema) = tenant_db(cx).await?;
    let who: String = db
        .query_one("SELECT current_user::text", &[])
        .await
        .map_err(|e| format!("query as {role}: {e}"))?
        .get(0);
    if who != role {
        return Err(format!("connected as {who}, expected {role}"));
    }
    let table = format!("{}.documents", ident(&schema));
    let id: i64 = db
        .query_one(
            &format!("INSERT INTO {table} (title, content) VALUES ('validation probe', 'connectivity check') RETURNING id"),
            &[],
        )
        .await
        .map_err(|e| format!("insert into {table} as {role}: {e}"))?
        .get(0);
    let n = db
        .query(&format!("SELECT 1 FROM {table} WHERE id = $1"), &[&id])
        .await
        .map_err(|e| format!("read back from {table}: {e}"))?
        .len();
    db.execute(&format!("DELETE FROM {table} WHERE id = $1"), &[&id])
        .await
        .map_err(|e| format!("delete from {table}: {e}"))?;
    if n != 1 {
        return Err(format!("wrote a document to {table} but read back {n}"));
    }
    Ok(format!(
        "connected as {role}; wrote, read and deleted a document in {table}"
    ))
}

/// Check 2: A negative test: the tenant's credentials must be refused what belongs to
/// others: another tenant's rows (or, with no other tenant, the platform registry),
/// rows tagged for another tenant in its own table, another tenant's Redis keys and
/// server-wide Redis commands, and another tenant's bucket objects.
async fn cross_tenant_isolation(cx: &CheckContext<'_>) -> Result<String, String> {
    let mut proven = Vec::new();
    let (db, role, schema) = tenant_db(cx).await?;
    let foreign = cx
        .others
        .iter()
        .find_map(|o| attrs_of(o, ResourceType::PostgresSchema, "main").ok())
        .and_then(|a| attr_str(a, "name").map(|s| format!("{}.documents", ident(s))))
        .unwrap_or_else(|| "tenantform.requests".to_owned());
    match db
        .query(&format!("SELECT * FROM {foreign} LIMIT 1"), &[])
        .await
    {
        Err(e) if sqlstate(&e) == "42501" => proven.push(format!("{role} is refused {foreign}")),
        Err(e) => {
            return Err(format!(
                "reading {foreign} as {role} failed, but not with a permission error: {e}"
            ));
        }
        Ok(_) => return Err(format!("ISOLATION BROKEN: {role} can read {foreign}")),
    }
    let table = format!("{}.documents", ident(&schema));
    match db
        .execute(
            &format!("INSERT INTO {table} (tenant_id, content) VALUES ('another-tenant', 'isolation probe')"),
            &[],
        )
        .await
    {
        Err(e) if sqlstate(&e) == "42501" => {
            proven.push("row-level security refuses rows of another tenant".into())
        }
        Err(e) => return Err(format!("inserting a foreign row failed, but not by row-level security: {e}")),
        Ok(_) => {
            let _ = db
                .execute(&format!("DELETE FROM {table} WHERE tenant_id = 'another-tenant'"), &[])
                .await;
            return Err(format!("ISOLATION BROKEN: {role} could write a row of another tenant into {table}"));
        }
    }

    if let Some(redis) = cx.redis {
        let login = &credentials(cx).await?.redis;
        let (name, password) = (login.username.clone(), &login.password);
        let client = redis::Client::open(redis.url_for(&name, password))
            .map_err(|e| format!("Redis URL: {e}"))?;
        let mut con = crate::connect::redis::connect(&client)
            .await
            .map_err(|e| format!("cannot connect to Redis as {name}: {e}"))?;
        let own = format!("tenant:{}:validation-probe", cx.spec.id);
        let _: () = redis::cmd("SET")
            .arg(&own)
            .arg("1")
            .arg("EX")
            .arg(60)
            .query_async(&mut con)
            .await
            .map_err(|e| format!("{name} cannot write its own key {own}: {e}"))?;
        let other = cx
            .others
            .first()
            .map(|o| o.tenant.to_string())
            .unwrap_or_else(|| "another-tenant".into());
        let foreign_key = format!("tenant:{other}:validation-probe");
        for (what, cmd) in [
            (
                format!("GET {foreign_key}"),
                redis::cmd("GET").arg(&foreign_key).clone(),
            ),
            ("FLUSHALL".to_owned(), redis::cmd("FLUSHALL").clone()),
        ] {
            match cmd.query_async::<redis::Value>(&mut con).await {
                Err(e) if e.code() == Some("NOPERM") => {}
                Err(e) => return Err(format!("{what} as {name} failed, but not with NOPERM: {e}")),
                Ok(_) => return Err(format!("ISOLATION BROKEN: {name} may run {what}")),
            }
        }
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&own).query_async(&mut con).await;
        proven.push(format!(
            "Redis user {name} is refused {foreign_key} and FLUSHALL"
        ));
    }

    if let Some(other) = cx
        .others
        .iter()
        .find(|o| attrs_of(o, ResourceType::IamRole, "app").is_ok())
    {
        // The other tenant's role asks for this tenant's credentials.
        let arn = string(attrs_of(other, ResourceType::IamRole, "app")?, "arn")?;
        let assumed = cx
            .aws
            .assume_tenant_role(&arn, &format!("tenantform-validate-{}", other.tenant))
            .await
            .map_err(|e| format!("cannot assume {arn}: {e}"))?;
        match read_secret_as(&assumed, cx.state).await {
            Err(e) if e.code() == "AccessDeniedException" => proven.push(format!(
                "the role of tenant {} is refused this tenant's credentials secret",
                other.tenant
            )),
            Err(e) => {
                return Err(format!(
                    "reading the credentials secret as tenant {}'s role failed, but not with AccessDeniedException: {e}",
                    other.tenant
                ));
            }
            Ok(_) => {
                return Err(format!(
                    "ISOLATION BROKEN: the role of tenant {} can read this tenant's credentials",
                    other.tenant
                ));
            }
        }
    }

    if let Some(other_bucket) = cx
        .others
        .iter()
        .find_map(|o| attrs_of(o, ResourceType::S3Bucket, "documents").ok())
    {
        let bucket = string(other_bucket, "bucket")?;
        let region = string(other_bucket, "region")?;
        let s3 = tenant_s3(cx, &region).await?;
        match s3
            .get_object()
            .bucket(&bucket)
            .key("validation-probe")
            .send()
            .await
        {
            Err(e) if is_access_denied(&e) => proven.push(format!(
                "the tenant role is refused objects of bucket {bucket}"
            )),
            Err(e) => {
                return Err(format!(
                    "reading from {bucket} with the tenant role failed, but not with AccessDenied: {}",
                    sdk_error("S3", e)
                ));
            }
            Ok(_) => {
                return Err(format!(
                    "ISOLATION BROKEN: the tenant role can read {bucket}"
                ));
            }
        }
    }
    Ok(proven.join("; "))
}

fn is_access_denied<E: aws_sdk_s3::error::ProvideErrorMetadata>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    let code = e.as_service_error().and_then(|s| s.code());
    code == Some("AccessDenied") || e.raw_response().is_some_and(|r| r.status().as_u16() == 403)
}

/// An S3 client with the tenant's IAM role's temporary credentials.
async fn tenant_s3(cx: &CheckContext<'_>, region: &str) -> Result<aws_sdk_s3::Client, String> {
    let role = attrs_of(cx.state, ResourceType::IamRole, "app")?;
    let arn = string(role, "arn")?;
    let assumed = cx
        .aws
        .assume_tenant_role(&arn, &format!("tenantform-validate-{}", cx.spec.id))
        .await
        .map_err(|e| format!("cannot assume {arn}: {e}"))?;
    Ok(assumed.s3(region))
}

/// Check 3: Insert an embedding and find it again as the nearest neighbour.
async fn vector_search(cx: &CheckContext<'_>) -> Result<String, String> {
    let ns = attrs_of(cx.state, ResourceType::VectorNamespace, "embeddings")?;
    let table = format!(
        "{}.{}",
        ident(&string(ns, "schema")?),
        ident(&string(ns, "table")?)
    );
    let dimension = ns
        .get("dimension")
        .and_then(Value::as_u64)
        .ok_or("the vector namespace has no dimension")? as usize;
    let (db, role, _) = tenant_db(cx).await?;
    // A direction no other stored vector is likely to share.
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let v: Vec<String> = (0..dimension)
        .map(|_| format!("{:.6}", rng.f64() - 0.5))
        .collect();
    let literal = format!("[{}]", v.join(","));
    let id: i64 = db
        .query_one(
            &format!("INSERT INTO {table} (chunk, embedding) VALUES ('validation probe', $1::text::vector) RETURNING id"),
            &[&literal],
        )
        .await
        .map_err(|e| format!("insert into {table} as {role}: {e}"))?
        .get(0);
    let found: Option<i64> = db
        .query_opt(
            &format!("SELECT id FROM {table} ORDER BY embedding <=> $1::text::vector LIMIT 1"),
            &[&literal],
        )
        .await
        .map_err(|e| format!("nearest-neighbour query on {table}: {e}"))?
        .map(|r| r.get(0));
    db.execute(&format!("DELETE FROM {table} WHERE id = $1"), &[&id])
        .await
        .map_err(|e| format!("delete from {table}: {e}"))?;
    if found != Some(id) {
        return Err(format!(
            "the nearest neighbour of the inserted embedding was {found:?}, not {id}"
        ));
    }
    Ok(format!(
        "inserted a {dimension}-dimension embedding into {table}; the nearest-neighbour query returned it"
    ))
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    tenant_id: String,
    tier: String,
    iss: String,
    aud: String,
    exp: u64,
    iat: u64,
}

/// Check 4: A token with the tenant's claims is issued and verified; a token of another
/// tenant, and one signed with another key, are refused.
async fn jwt_claims(cx: &CheckContext<'_>) -> Result<String, String> {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
    let issuer = cx.specs.platform.platform.name.clone();
    let audience = "rag-api".to_owned();
    let now = chrono::Utc::now().timestamp() as u64;
    let claims_for = |tenant: &str| Claims {
        sub: format!("tenant:{tenant}"),
        tenant_id: tenant.to_owned(),
        tier: cx.spec.tier.clone(),
        iss: issuer.clone(),
        aud: audience.clone(),
        exp: now + 300,
        iat: now,
    };
    let key = EncodingKey::from_secret(cx.jwt_secret);
    let sign = |c: &Claims, k: &EncodingKey| {
        encode(&Header::new(Algorithm::HS256), c, k).map_err(|e| format!("signing: {e}"))
    };
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[&issuer]);
    validation.set_audience(&[&audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let verify_for_tenant = |token: &str, key: &[u8]| -> Result<Claims, String> {
        let data = decode::<Claims>(token, &DecodingKey::from_secret(key), &validation)
            .map_err(|e| format!("verification failed: {e}"))?;
        if data.claims.tenant_id != cx.spec.id.as_str() {
            return Err(format!("token is for tenant {}", data.claims.tenant_id));
        }
        Ok(data.claims)
    };
    let token = sign(&claims_for(cx.spec.id.as_str()), &key)?;
    let claims = verify_for_tenant(&token, cx.jwt_secret)?;
    if claims.tier != cx.spec.tier {
        return Err(format!(
            "tier claim {} is not {}",
            claims.tier, cx.spec.tier
        ));
    }
    let foreign = sign(&claims_for("another-tenant"), &key)?;
    if verify_for_tenant(&foreign, cx.jwt_secret).is_ok() {
        return Err("a token of another tenant was accepted".into());
    }
    let forged = sign(
        &claims_for(cx.spec.id.as_str()),
        &EncodingKey::from_secret(b"not the platform key"),
    )?;
    if verify_for_tenant(&forged, cx.jwt_secret).is_ok() {
        return Err("a token signed with another key was accepted".into());
    }
    Ok(format!(
        "issued and verified an HS256 token for tenant {} (tier {}); another tenant's token and a forged one were refused",
        cx.spec.id, cx.spec.tier
    ))
}

/// Check 5: The p95 of real queries with the tenant's credentials is under the tier's SLA.
async fn query_latency(cx: &CheckContext<'_>) -> Result<String, String> {
    let sla = cx.specs.tier_of(cx.spec).sla_latency_ms as f64;
    let (db, role, schema) = tenant_db(cx).await?;
    let table = format!("{}.documents", ident(&schema));
    let statement = db
        .prepare(&format!(
            "SELECT id, title FROM {table} WHERE content ILIKE $1 ORDER BY created_at DESC LIMIT 10"
        ))
        .await
        .map_err(|e| format!("prepare as {role}: {e}"))?;
    let n = cx.latency_queries.max(5);
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        db.query(&statement, &[&format!("%term{i}%")])
            .await
            .map_err(|e| format!("query as {role}: {e}"))?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    let p95 = samples[((samples.len() as f64 * 0.95).ceil() as usize).saturating_sub(1)];
    let message = format!("p95 {p95:.1} ms over {n} queries (SLA {sla:.0} ms)");
    if p95 <= sla {
        Ok(message)
    } else {
        Err(message)
    }
}

/// Check 6: Put, get and delete an object in the tenant's bucket with the tenant role.
async fn s3_access(cx: &CheckContext<'_>) -> Result<String, String> {
    let bucket_attrs = attrs_of(cx.state, ResourceType::S3Bucket, "documents")?;
    let bucket = string(bucket_attrs, "bucket")?;
    let region = string(bucket_attrs, "region")?;
    let s3 = tenant_s3(cx, &region).await?;
    let key = format!("validation/{}.txt", uuid::Uuid::new_v4());
    let body = format!("validation probe of tenant {}", cx.spec.id);
    let ctx = |what: &str, e: &dyn std::fmt::Display| {
        format!("{what} s3://{bucket}/{key} with the tenant role: {e}")
    };
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(body.clone().into_bytes().into())
        .send()
        .await
        .map_err(|e| ctx("put", &sdk_error("S3", e)))?;
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| ctx("get", &sdk_error("S3", e)))?
        .body
        .collect()
        .await
        .map_err(|e| ctx("read", &e))?
        .into_bytes();
    s3.delete_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| ctx("delete", &sdk_error("S3", e)))?;
    if got.as_ref() != body.as_bytes() {
        return Err(format!(
            "s3://{bucket}/{key} read back other bytes than were written"
        ));
    }
    Ok(format!(
        "put, got and deleted an object in {bucket} with the tenant role"
    ))
}

/// Check 7: The metrics endpoint serves the tenant's series.
async fn metrics_endpoint(cx: &CheckContext<'_>) -> Result<String, String> {
    let text = reqwest::Client::new()
        .get(cx.metrics_url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("cannot scrape {}: {e}", cx.metrics_url))?
        .error_for_status()
        .map_err(|e| format!("scrape of {}: {e}", cx.metrics_url))?
        .text()
        .await
        .map_err(|e| format!("scrape body: {e}"))?;
    let needle = format!("tenant=\"{}\"", cx.spec.id);
    let series: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(&needle))
        .collect();
    if !series
        .iter()
        .any(|l| l.starts_with("tenantform_tenant_info{"))
    {
        return Err(format!(
            "{} has no tenantform_tenant_info series with {needle}",
            cx.metrics_url
        ));
    }
    Ok(format!(
        "{} serves {} series of the tenant",
        cx.metrics_url,
        series.len()
    ))
}

/// Check 8: Every taggable resource, read back from its endpoint, carries TenantID, Tier and
/// CostCenter with the tenant's values.
async fn cost_tags(cx: &CheckContext<'_>) -> Result<String, String> {
    let tier = cx.specs.tier_of(cx.spec);
    let expected = BTreeMap::from([
        ("TenantID".to_owned(), cx.spec.id.to_string()),
        ("Tier".to_owned(), tier.display_name.clone()),
        ("CostCenter".to_owned(), cx.spec.cost_center.clone()),
    ]);
    let states = BTreeMap::from([(cx.spec.id.clone(), Some(cx.state.clone()))]);
    let read = cx
        .engine
        .refresh(cx.specs, &states)
        .await
        .map_err(|e| format!("reading the resources back: {e}"))?;
    let read = read.get(&cx.spec.id).cloned().unwrap_or_default();
    let mut checked = 0;
    let mut problems = Vec::new();
    for (key, r) in &cx.state.resources {
        if !r.attributes.get("tags").is_some_and(Value::is_object) {
            continue;
        }
        checked += 1;
        let Some(Some(actual)) = read.get(key) else {
            problems.push(format!("{key} does not exist"));
            continue;
        };
        let tags = tags_of(actual);
        for (k, v) in &expected {
            match tags.get(k) {
                Some(found) if found == v => {}
                Some(found) => problems.push(format!("{key}: {k} is {found:?}, not {v:?}")),
                None => problems.push(format!("{key}: no {k} tag")),
            }
        }
    }
    if checked == 0 {
        return Err("the tenant has no taggable resource in state".into());
    }
    if problems.is_empty() {
        Ok(format!(
            "{checked} taggable resources carry TenantID, Tier and CostCenter"
        ))
    } else {
        Err(problems.join("; "))
    }
}
