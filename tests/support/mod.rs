//! Test support: the local stack, a private database per test, and a workspace of
//! specs and state in which the real `tenantform` binary runs.
//!
//! Every test talks to the real services that `scripts/stack up` starts. When the
//! stack's variables are not in the environment (a plain `cargo nextest run`), the
//! first test brings the stack up itself.

#![allow(dead_code)]

pub mod faults;
pub mod server;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tenantform::provider::{CreateMode, Provider, ProviderError};
use tenantform::resource::{Attributes, Resource, ResourceAddress};
use tokio_postgres::{Client, NoTls};

/// Resources a Silver or Bronze tenant gets: 7 PostgreSQL (schema, role, two grants on
/// the schema and documents, the documents table, its row security, the embeddings
/// grant), the vector namespace, tier settings, a Redis user, a dashboard, and 5 AWS
/// (bucket, bucket policy, IAM policy, role, attachment). Gold adds its cache cluster.
pub const PER_TENANT: usize = 17;

pub const BIN: &str = env!("CARGO_BIN_EXE_tenantform");

/// The binary under test: `TENANTFORM_TEST_BIN` when set (a release build, or a copy
/// kept apart from a target directory that other checkouts build into), else the one
/// cargo built for these tests.
pub fn bin() -> PathBuf {
    std::env::var_os("TENANTFORM_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BIN))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The stack's environment: PG*, AWS_*, REDIS_URL.
pub fn stack_env() -> &'static BTreeMap<String, String> {
    static ENV: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let names = [
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGPASSWORD",
            "PGDATABASE",
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
            "REDIS_URL",
            "SMTP_URL",
            "SLACK_WEBHOOK_URL",
            "TENANTFORM_STACK_DIR",
        ];
        if names.iter().all(|n| std::env::var(n).is_ok()) {
            return names
                .iter()
                .map(|n| (n.to_string(), std::env::var(n).unwrap()))
                .collect();
        }
        // Several test processes may get here at once: one brings the stack up.
        let lock_path = std::env::temp_dir().join("tenantform-test-stack.lock");
        let lock = fs::File::create(&lock_path).expect("lock file");
        lock.lock().expect("stack lock");
        let out = Command::new(repo().join("scripts/stack"))
            .arg("up")
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/stack runs");
        assert!(out.status.success(), "scripts/stack up failed");
        parse_exports(&String::from_utf8_lossy(&out.stdout))
    })
}

/// Parses `export NAME=VALUE` lines (values optionally single-quoted).
pub fn parse_exports(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
                .unwrap_or(v);
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

pub fn env(name: &str) -> String {
    stack_env()
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not in the stack environment"))
}

/// A short random suffix of lowercase letters, to keep tests' names apart.
pub fn suffix() -> String {
    let mut buf = [0u8; 6];
    getrandom::fill(&mut buf).unwrap();
    buf.iter().map(|b| (b'a' + b % 26) as char).collect()
}

pub async fn connect(
    user: &str,
    password: &str,
    database: &str,
) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::Config::new()
        .host(env("PGHOST"))
        .port(env("PGPORT").parse().unwrap())
        .user(user)
        .password(password)
        .dbname(database)
        .connect_timeout(Duration::from_secs(10))
        .connect(NoTls)
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

pub async fn admin(database: &str) -> Client {
    connect(&env("PGUSER"), &env("PGPASSWORD"), database)
        .await
        .expect("admin connection")
}

/// Where a workspace keeps its state: files under `state/`, or schema `tenantform_state`
/// of the workspace's database (`TENANTFORM_STATE_BACKEND=postgres`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Local,
    Postgres,
}

/// Runs each named test, `async fn NAME(backend: Backend)`, once per state backend:
/// as `NAME::local` and `NAME::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn local() {
                super::$name(super::Backend::Local).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

/// A tenant to put in a workspace.
#[derive(Clone, Debug)]
pub struct TenantDef {
    pub id: String,
    pub name: String,
    pub tier: String,
    pub region: String,
    pub budget_inr: i64,
    pub classification: String,
    pub protected: bool,
}

impl TenantDef {
    pub fn new(prefix: &str, tier: &str) -> Self {
        let id = format!("{prefix}-{}", suffix());
        TenantDef {
            name: format!("Test tenant {id}"),
            id,
            tier: tier.into(),
            region: "us-east-1".into(),
            budget_inr: 500_000,
            classification: "internal".into(),
            protected: false,
        }
    }

    pub fn toml(&self) -> String {
        format!(
            "id = {:?}\nname = {:?}\ntier = {:?}\nregion = {:?}\nbudget_inr = {}\nowner_email = \"owner@{}.example\"\ncost_center = \"CC-TEST\"\ndata_classification = {:?}\nprotected = {}\n",
            self.id,
            self.name,
            self.tier,
            self.region,
            self.budget_inr,
            self.id,
            self.classification,
            self.protected
        )
    }

    /// The tenant file with the line of `key` set to `value` (TOML, as written).
    pub fn toml_with(&self, key: &str, value: &str) -> String {
        self.toml()
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key} =")) {
                    format!("{key} = {value}")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    /// The schema and role name (the default naming: `tenant_{id_}`).
    pub fn pg_name(&self) -> String {
        format!("tenant_{}", self.id.replace('-', "_"))
    }
}

/// A temp directory with `specs/` (the repository's platform file and the given
/// tenants), `state/`, and a private database that the engine uses as its platform
/// database. Dropping it drops the database and the tenants' roles.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub database: String,
    pub tenants: Vec<TenantDef>,
    extra_env: BTreeMap<String, String>,
}

impl Workspace {
    /// A workspace whose state is kept by `backend`.
    pub async fn with_backend(tenants: &[TenantDef], backend: Backend) -> Workspace {
        let mut ws = Workspace::new(tenants).await;
        if backend == Backend::Postgres {
            ws.set_env("TENANTFORM_STATE_BACKEND", "postgres");
            // The state schema now, before a test may slow every DDL statement down.
            ws.run(&["state", "list"]).ok();
        }
        ws
    }

    pub fn backend(&self) -> Backend {
        match self
            .extra_env
            .get("TENANTFORM_STATE_BACKEND")
            .map(String::as_str)
        {
            Some("postgres") => Backend::Postgres,
            _ => Backend::Local,
        }
    }

    /// Sets `[state] lease_ttl_seconds` in platform.toml.
    pub fn set_lease_ttl(&self, seconds: u64) {
        self.edit_platform(|s| {
            let edited = s.replace(
                "lease_ttl_seconds = 30",
                &format!("lease_ttl_seconds = {seconds}"),
            );
            assert_ne!(edited, s, "platform.toml has lease_ttl_seconds = 30");
            edited
        });
    }

    pub async fn new(tenants: &[TenantDef]) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("specs/tenants")).unwrap();
        fs::copy(
            repo().join("specs/platform.toml"),
            dir.path().join("specs/platform.toml"),
        )
        .unwrap();
        let database = format!("test_{}", suffix());
        admin(&env("PGDATABASE"))
            .await
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .expect("create test database");
        let ws = Workspace {
            dir,
            database,
            tenants: tenants.to_vec(),
            extra_env: BTreeMap::new(),
        };
        for t in tenants {
            ws.write_tenant(t);
        }
        ws
    }

    pub fn specs(&self) -> PathBuf {
        self.dir.path().join("specs")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn write_tenant(&self, t: &TenantDef) {
        fs::write(
            self.specs().join(format!("tenants/{}.toml", t.id)),
            t.toml(),
        )
        .unwrap();
    }

    pub fn remove_tenant_spec(&self, id: &str) {
        fs::remove_file(self.specs().join(format!("tenants/{id}.toml"))).unwrap();
    }

    pub fn platform_path(&self) -> PathBuf {
        self.specs().join("platform.toml")
    }

    /// Rewrites platform.toml with `f`.
    pub fn edit_platform(&self, f: impl FnOnce(String) -> String) {
        let p = self.platform_path();
        fs::write(&p, f(fs::read_to_string(&p).unwrap())).unwrap();
    }

    pub fn set_env(&mut self, name: &str, value: &str) {
        self.extra_env.insert(name.into(), value.into());
    }

    /// The command with this workspace's directories and database.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .arg("--specs")
            .arg(self.specs())
            .arg("--state")
            .arg(self.state())
            .arg("--no-color")
            .envs(stack_env())
            .env("PGDATABASE", &self.database)
            .envs(&self.extra_env)
            .env_remove("TENANTFORM_LOG")
            .stdin(Stdio::null());
        c
    }

    /// Runs `tenantform ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("tenantform runs");
        Run::from(out)
    }

    /// Starts `tenantform ARGS` in the background.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tenantform starts")
    }

    pub async fn admin(&self) -> Client {
        admin(&self.database).await
    }

    pub fn state_file(&self, id: &str) -> PathBuf {
        self.state().join(format!("tenants/{id}.json"))
    }

    /// The tenant's state as its backend stores it (a local file's bytes, or the
    /// document of its row in PostgreSQL); `None` when it has none.
    pub fn state_bytes(&self, id: &str) -> Option<Vec<u8>> {
        match self.backend() {
            Backend::Local => fs::read(self.state_file(id)).ok(),
            Backend::Postgres => self.stored_state(id),
        }
    }

    /// The document of the tenant's row in `tenantform_state.states`, whatever the
    /// workspace's backend; `None` when there is none (or no schema yet).
    pub fn stored_state(&self, id: &str) -> Option<Vec<u8>> {
        let (database, id) = (self.database.clone(), id.to_owned());
        on_own_runtime(async move {
            let row = admin(&database)
                .await
                .query_opt(
                    "SELECT document::text FROM tenantform_state.states WHERE tenant = $1",
                    &[&id],
                )
                .await;
            match row {
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                    None
                }
                row => row
                    .expect("state row")
                    .map(|r| r.get::<_, String>(0).into_bytes()),
            }
        })
    }

    pub fn state_json(&self, id: &str) -> Option<serde_json::Value> {
        self.state_bytes(id)
            .map(|b| serde_json::from_slice(&b).expect("state is JSON"))
    }

    /// The tenant's credentials, read from its secret with its own IAM role, as its
    /// application reads them (state does not hold them).
    pub async fn credentials(&self, id: &str) -> tenantform::secret::Credentials {
        let state: tenantform::state::TenantState =
            serde_json::from_value(self.state_json(id).expect("state")).expect("state parses");
        let aws = tenantform::connect::aws::AwsClients::new(aws_config().await);
        tenantform::workflow::checks::tenant_credentials(&aws, &state)
            .await
            .expect("the tenant's role reads its credentials secret")
    }

    /// The tenant's role password, from its credentials secret.
    pub async fn password(&self, id: &str) -> String {
        self.credentials(id).await.postgres.password
    }

    /// The tenant's Redis password, from its credentials secret.
    pub async fn redis_password(&self, id: &str) -> String {
        self.credentials(id).await.redis.password
    }

    /// Connects as the tenant's own role.
    pub async fn tenant_client(&self, t: &TenantDef) -> Result<Client, tokio_postgres::Error> {
        connect(&t.pg_name(), &self.password(&t.id).await, &self.database).await
    }

    /// Makes every DDL statement in this workspace's database take `seconds` longer,
    /// so that a test can act while an apply is in the middle of its work.
    /// The pgvector extension is created first: its script runs hundreds of DDL
    /// commands, which the slow-down would otherwise stretch to minutes.
    pub async fn slow_down_ddl(&self, seconds: f64) {
        self.slow_down(seconds, "").await;
    }

    /// Like [`Self::slow_down_ddl`], for the DDL commands tagged `tag` only (e.g.
    /// `CREATE SCHEMA`).
    pub async fn slow_down_command(&self, tag: &str, seconds: f64) {
        self.slow_down(seconds, &format!("WHEN TAG IN ('{tag}')"))
            .await;
    }

    async fn slow_down(&self, seconds: f64, when: &str) {
        self.admin()
            .await
            .batch_execute(&format!(
                "CREATE EXTENSION IF NOT EXISTS vector; \
                 CREATE FUNCTION slow_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ \
                 BEGIN PERFORM pg_sleep({seconds}); END $$; \
                 CREATE EVENT TRIGGER slow_ddl ON ddl_command_end {when} EXECUTE FUNCTION slow_ddl();"
            ))
            .await
            .unwrap();
    }

    pub async fn remove_slow_down(&self) {
        self.admin()
            .await
            .batch_execute("DROP EVENT TRIGGER IF EXISTS slow_ddl")
            .await
            .unwrap();
    }
}

impl Workspace {
    /// The admin connection to this workspace's database, as the library takes it.
    pub fn pg_config(&self) -> tenantform::connect::postgres::PostgresConfig {
        tenantform::connect::postgres::PostgresConfig {
            host: env("PGHOST"),
            port: env("PGPORT").parse().unwrap(),
            user: env("PGUSER"),
            password: Some(tenantform::secret::Secret::new(env("PGPASSWORD"))),
            database: self.database.clone(),
        }
    }

    /// The directory the dashboards go to (`../dashboards` from the specs).
    pub fn dashboards(&self) -> PathBuf {
        self.dir.path().join("dashboards")
    }

    /// An attribute of a resource in a tenant's state.
    pub fn state_attr(&self, id: &str, key: &str, attr: &str) -> serde_json::Value {
        self.state_json(id).expect("state")["resources"][key]["attributes"][attr].clone()
    }

    /// A Redis connection as the tenant's own ACL user.
    pub async fn tenant_redis(
        &self,
        t: &TenantDef,
    ) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        redis_as(&t.pg_name(), &self.redis_password(&t.id).await).await
    }
}

/// A Redis connection as the stack's admin.
pub async fn redis_admin() -> redis::aio::MultiplexedConnection {
    redis::Client::open(env("REDIS_URL"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("admin Redis connection")
}

/// A Redis connection as `user` (AUTH happens on connect).
pub async fn redis_as(
    user: &str,
    password: &str,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let url = env("REDIS_URL");
    let endpoint = url.rsplit_once('@').map(|(_, e)| e).unwrap_or(&url);
    let endpoint = endpoint.trim_start_matches("redis://");
    redis::Client::open(format!("redis://{user}:{password}@{endpoint}"))?
        .get_multiplexed_async_connection()
        .await
}

/// Runs one Redis command given as words.
pub async fn redis_cmd(
    c: &mut redis::aio::MultiplexedConnection,
    words: &[&str],
) -> redis::RedisResult<redis::Value> {
    let mut cmd = redis::cmd(words[0]);
    for w in &words[1..] {
        cmd.arg(*w);
    }
    cmd.query_async(c).await
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let database = self.database.clone();
        let roles: Vec<String> = self.tenants.iter().map(|t| t.pg_name()).collect();
        let redis_users = roles.clone();
        // Drop runs inside the test's runtime: clean up on a thread with its own.
        on_own_runtime(async move {
            let Ok(c) = connect(&env("PGUSER"), &env("PGPASSWORD"), &env("PGDATABASE")).await
            else {
                return;
            };
            let _ = c
                .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                .await;
            for r in roles {
                let _ = c
                    .batch_execute(&format!("DROP ROLE IF EXISTS \"{r}\""))
                    .await;
            }
            if let Ok(client) = redis::Client::open(env("REDIS_URL"))
                && let Ok(mut r) = client.get_multiplexed_async_connection().await
            {
                for u in redis_users {
                    let _ = redis_cmd(&mut r, &["ACL", "DELUSER", &u]).await;
                }
            }
        });
    }
}

/// Runs `work` to completion on a thread with a runtime of its own: async work from
/// code that may not block the caller's runtime (a `Drop`, a synchronous helper).
pub fn on_own_runtime<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    })
    .join()
    .expect("the work does not panic")
}

/// A finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success:\n{}", self.all());
        self
    }

    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            code,
            "expected exit code {code}:\n{}",
            self.all()
        );
        self
    }

    #[track_caller]
    pub fn contains(self, needle: &str) -> Self {
        assert!(
            self.all().contains(needle),
            "expected {needle:?} in:\n{}",
            self.all()
        );
        self
    }
}

/// Sends `sig` (`STOP`, `CONT`, `KILL`...) to a child process.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {}", child.id());
}

/// Waits for a child started with [`Workspace::spawn`] and collects its output.
pub fn finish(child: Child) -> Run {
    Run::from(child.wait_with_output().unwrap())
}

/// Waits until `f` holds, polling; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `path` exists, for waits.
pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// The engine as a library, with its providers pointed at this workspace's database and
/// the stack's AWS endpoint. With `counter`, every create, update and delete call is
/// counted.
pub async fn engine(ws: &Workspace, counter: Option<Arc<AtomicUsize>>) -> tenantform::Engine {
    use tenantform::connect::aws::AwsClients;

    let specs = tenantform::spec::Specs::load(&ws.specs()).expect("workspace specs are valid");
    let pg = ws.pg_config();
    let aws = Arc::new(AwsClients::new(aws_config().await));
    // Redis comes from REDIS_URL, as the platform file says. When the stack was brought
    // up by this process (not exported by scripts/test), the engine is given it: the
    // library reads variables only through its environment.
    let mut vars: BTreeMap<String, String> = std::env::vars().collect();
    vars.entry("REDIS_URL".into())
        .or_insert_with(|| env("REDIS_URL"));
    let environment = tenantform::Environment::from_vars(vars);
    let set = tenantform::platform_providers(&specs.platform, pg.clone(), aws, 10, &environment)
        .expect("providers of the workspace");
    let set = match &counter {
        Some(c) => set.map(|p| -> Arc<dyn Provider> {
            Arc::new(CountingProvider {
                inner: p,
                mutating: c.clone(),
            })
        }),
        None => set,
    };
    tenantform::Engine::with_providers(
        tenantform::EngineConfig {
            specs_dir: ws.specs(),
            state_dir: ws.state(),
            environment,
            ..tenantform::EngineConfig::default()
        },
        set,
    )
    .with_registry(pg)
}

/// The SDK configuration of the stack's AWS endpoint (moto), with its test credentials.
pub async fn aws_config() -> aws_config::SdkConfig {
    let creds = aws_sdk_s3::config::Credentials::new(
        env("AWS_ACCESS_KEY_ID"),
        env("AWS_SECRET_ACCESS_KEY"),
        None,
        None,
        "tenantform-tests",
    );
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(env("AWS_REGION")))
        .endpoint_url(env("AWS_ENDPOINT_URL"))
        .credentials_provider(creds)
        .load()
        .await
}

pub async fn s3_client(region: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(&aws_config().await)
        .region(aws_sdk_s3::config::Region::new(region.to_owned()))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A Secrets Manager client for `region` with the stack's admin credentials (the
/// engine's own).
pub async fn secrets_admin(region: &str) -> aws_sdk_secretsmanager::Client {
    tenantform::connect::aws::AwsClients::new(aws_config().await).secrets(region)
}

/// The name of `t`'s credentials secret (the default `[naming] credentials_secret`).
pub fn credentials_secret_of(t: &TenantDef) -> String {
    format!("rag-{}-credentials", t.id)
}

/// Whether `t`'s credentials secret exists and is not scheduled for deletion.
pub async fn credentials_secret_exists(t: &TenantDef) -> bool {
    secrets_admin(&t.region)
        .await
        .describe_secret()
        .secret_id(credentials_secret_of(t))
        .send()
        .await
        .is_ok_and(|s| s.deleted_date().is_none())
}

pub async fn iam_client() -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&aws_config().await)
}

pub async fn elasticache_client(region: &str) -> aws_sdk_elasticache::Client {
    let config = aws_sdk_elasticache::config::Builder::from(&aws_config().await)
        .region(aws_sdk_elasticache::config::Region::new(region.to_owned()))
        .build();
    aws_sdk_elasticache::Client::from_conf(config)
}

/// A provider that counts the calls that change something and passes every call on.
pub struct CountingProvider {
    pub inner: Arc<dyn Provider>,
    pub mutating: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Provider for CountingProvider {
    async fn read(
        &self,
        address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        self.inner.read(address, current).await
    }

    async fn read_many(
        &self,
        reads: &[tenantform::provider::ReadRequest<'_>],
        options: tenantform::provider::ReadOptions,
    ) -> Vec<tenantform::provider::ReadResult> {
        self.inner.read_many(reads, options).await
    }

    async fn create(
        &self,
        resource: &Resource,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError> {
        self.mutating.fetch_add(1, Ordering::SeqCst);
        self.inner.create(resource, mode).await
    }

    async fn update(
        &self,
        resource: &Resource,
        current: &Attributes,
        changed: &[String],
    ) -> Result<Attributes, ProviderError> {
        self.mutating.fetch_add(1, Ordering::SeqCst);
        self.inner.update(resource, current, changed).await
    }

    async fn delete(
        &self,
        address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<(), ProviderError> {
        self.mutating.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(address, current).await
    }

    async fn check_access(&self) -> Result<(), ProviderError> {
        self.inner.check_access().await
    }

    async fn aws_account_id(&self) -> Option<String> {
        self.inner.aws_account_id().await
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET url` (plain HTTP/1.0 on loopback), or `None` if it cannot be had.
pub fn http_get(url: &str) -> Option<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_owned())
}

/// Every stdout and stderr of the CLI runs of a test, checked at the end for secrets:
/// the generated passwords the states hold, the AWS secret key, the admin passwords of
/// PostgreSQL and Redis. A run that asks for secrets (`--show-secrets`) is not one to
/// record.
#[derive(Default)]
pub struct OutputScan {
    outputs: Vec<(String, String)>,
    secrets: std::collections::BTreeSet<String>,
}

impl OutputScan {
    /// A scan that knows the stack's own secrets.
    pub fn new() -> Self {
        let mut scan = OutputScan::default();
        scan.secrets.insert(env("AWS_SECRET_ACCESS_KEY"));
        scan.secrets.insert(env("PGPASSWORD"));
        let redis = env("REDIS_URL");
        if let Some(password) = redis
            .rsplit_once('@')
            .and_then(|(creds, _)| creds.rsplit_once(':'))
            .map(|(_, p)| p.to_owned())
        {
            scan.secrets.insert(password);
        }
        scan
    }

    /// Runs `tenantform ARGS` in `ws` and keeps what it printed.
    pub fn run(&mut self, ws: &Workspace, args: &[&str]) -> Run {
        assert!(
            !args.contains(&"--show-secrets"),
            "a run that shows secrets is not scanned"
        );
        let run = ws.run(args);
        self.outputs.push((args.join(" "), run.all()));
        run
    }

    /// Learns the passwords in the credentials secret of every tenant with a state
    /// (call it after an apply, before a destroy removes them), and every sensitive
    /// attribute the states hold (none, unless written before the secret).
    pub async fn learn_tenant_secrets(&mut self, ws: &Workspace) {
        self.learn_state_secrets(ws);
        let Ok(entries) = fs::read_dir(ws.state().join("tenants")) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let (Some("json"), Some(id)) = (
                path.extension().and_then(|e| e.to_str()),
                path.file_stem().and_then(|s| s.to_str()),
            ) {
                let c = ws.credentials(id).await;
                self.secrets.insert(c.postgres.password);
                self.secrets.insert(c.redis.password);
            }
        }
    }

    /// Learns every sensitive attribute the workspace's states hold now.
    pub fn learn_state_secrets(&mut self, ws: &Workspace) {
        let Ok(entries) = fs::read_dir(ws.state().join("tenants")) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let state: serde_json::Value =
                serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
            let Some(resources) = state["resources"].as_object() else {
                continue;
            };
            for r in resources.values() {
                let Ok(t) = r["type"].as_str().unwrap_or("").parse() else {
                    continue;
                };
                let schema = tenantform::resource::schema(t);
                for (name, value) in r["attributes"].as_object().into_iter().flatten() {
                    if schema.is_sensitive(name)
                        && let Some(s) = value.as_str()
                    {
                        self.secrets.insert(s.to_owned());
                    }
                }
            }
        }
    }

    /// How many secrets the scan looks for.
    pub fn secrets(&self) -> usize {
        self.secrets.len()
    }

    /// Asserts that no recorded output holds a secret; returns how many outputs it read.
    #[track_caller]
    pub fn assert_clean(&self) -> usize {
        for (command, output) in &self.outputs {
            for (i, secret) in self.secrets.iter().enumerate() {
                // Short values (an empty password) would match by chance.
                if secret.len() >= 8 {
                    assert!(
                        !output.contains(secret.as_str()),
                        "`tenantform {command}` printed secret #{i} of the scan"
                    );
                }
            }
        }
        self.outputs.len()
    }
}

/// What is left of tenant `t` on each service: its PostgreSQL schema or role, its Redis
/// user, its S3 bucket, its IAM role or policy, its dashboard file. Empty when nothing is.
pub async fn leftovers(ws: &Workspace, t: &TenantDef) -> Vec<String> {
    let mut left = Vec::new();
    let name = t.pg_name();
    let admin = ws.admin().await;
    for (what, sql) in [
        (
            "schema",
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
        ),
        ("role", "SELECT count(*) FROM pg_roles WHERE rolname = $1"),
    ] {
        let n: i64 = admin.query_one(sql, &[&name]).await.unwrap().get(0);
        if n > 0 {
            left.push(format!("PostgreSQL {what} {name}"));
        }
    }
    let users: Vec<String> = redis::cmd("ACL")
        .arg("USERS")
        .query_async(&mut redis_admin().await)
        .await
        .unwrap();
    if users.contains(&name) {
        left.push(format!("Redis user {name}"));
    }
    let bucket = format!("rag-{}-documents", t.id);
    if s3_client(&t.region)
        .await
        .head_bucket()
        .bucket(&bucket)
        .send()
        .await
        .is_ok()
    {
        left.push(format!("S3 bucket {bucket}"));
    }
    let iam = iam_client().await;
    let role = format!("rag-{}-app", t.id);
    if iam.get_role().role_name(&role).send().await.is_ok() {
        left.push(format!("IAM role {role}"));
    }
    let policy = format!("rag-{}-documents-access", t.id);
    let mut pages = iam.list_policies().into_paginator().send();
    while let Some(page) = pages.next().await {
        if page
            .unwrap()
            .policies()
            .iter()
            .any(|p| p.policy_name() == Some(policy.as_str()))
        {
            left.push(format!("IAM policy {policy}"));
        }
    }
    if credentials_secret_exists(t).await {
        left.push(format!("secret {}", credentials_secret_of(t)));
    }
    let dashboards = ws.dashboards();
    if fs::read_dir(&dashboards).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().contains(&t.id))
    }) {
        left.push(format!("dashboard of {}", t.id));
    }
    left
}

/// Every row of every table of the workspace's database, as text: what a grep of a
/// dump would see.
pub async fn database_text(ws: &Workspace) -> String {
    let admin = ws.admin().await;
    let tables = admin
        .query(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE' \
               AND table_schema NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .unwrap();
    let mut text = String::new();
    for t in tables {
        let name: String = t.get(0);
        for row in admin
            .query(&format!("SELECT t::text FROM {name} t"), &[])
            .await
            .unwrap()
        {
            text += &row.get::<_, String>(0);
            text.push('\n');
        }
    }
    text
}

/// Every file under `dir`, in every subdirectory.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}
