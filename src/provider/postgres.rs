//! PostgreSQL: schemas, login roles, grants, tables and row-level security.
//!
//! Every statement that must not be half-done runs as one simple-query batch, which
//! PostgreSQL executes as a single implicit transaction. Role passwords are sent as
//! SCRAM-SHA-256 verifiers computed here, so the plain password never reaches the
//! server, its logs or `pg_stat_statements`.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::retry::RetryPolicy;
use super::{CreateMode, Provider, ProviderError};
use crate::resource::{Attributes, Resource, ResourceAddress, ResourceType, attr_str};
use crate::secret::{Secret, generate_password};
use crate::spec::PostgresEndpoint;

const SERVICE: &str = "PostgreSQL";

/// The resource types this provider serves.
pub const TYPES: &[ResourceType] = &[
    ResourceType::PostgresSchema,
    ResourceType::PostgresRole,
    ResourceType::PostgresSchemaGrant,
    ResourceType::PostgresTable,
    ResourceType::PostgresRowSecurity,
    ResourceType::PostgresTableGrant,
];

/// Where the platform's PostgreSQL is and how the engine logs in as its admin.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    pub database: String,
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("database", &self.database)
            .finish()
    }
}

impl PostgresConfig {
    /// The platform file's settings, completed from `PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGPASSWORD` and `PGDATABASE`.
    pub fn resolve(endpoint: &PostgresEndpoint) -> Result<Self, ProviderError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let missing = |what: &str, var: &str| {
            ProviderError::Config(format!(
                "the PostgreSQL {what} is not set: set it under [postgres] in platform.toml or export {var} (`scripts/stack env` prints a working set)"
            ))
        };
        let host = endpoint
            .host
            .clone()
            .or_else(|| env("PGHOST"))
            .ok_or_else(|| missing("host", "PGHOST"))?;
        let port = match endpoint.port {
            Some(p) => p,
            None => match env("PGPORT") {
                Some(p) => p.parse().map_err(|_| {
                    ProviderError::Config(format!("PGPORT={p:?} is not a port number"))
                })?,
                None => 5432,
            },
        };
        let user = endpoint
            .user
            .clone()
            .or_else(|| env("PGUSER"))
            .ok_or_else(|| missing("admin user", "PGUSER"))?;
        let password_var = endpoint.password_env.as_deref().unwrap_or("PGPASSWORD");
        let password = env(password_var).map(Secret::new);
        let database = endpoint
            .database
            .clone()
            .or_else(|| env("PGDATABASE"))
            .unwrap_or_else(|| user.clone());
        Ok(PostgresConfig {
            host,
            port,
            user,
            password,
            database,
        })
    }

    /// One connection as `user` (the admin when `None`), for code outside the provider
    /// that needs the platform database: the registry, validation checks.
    pub async fn connect(&self, user: Option<(&str, &str)>) -> Result<Client, ProviderError> {
        let mut config = self.connect_config();
        if let Some((user, password)) = user {
            config.user(user).password(password);
        }
        Self::open(config).await
    }

    /// One admin connection that `pg_stat_activity` shows as `application` (the
    /// registry's reads, the runs queue), apart from the providers' connections.
    pub async fn connect_as(&self, application: &str) -> Result<Client, ProviderError> {
        let mut config = self.connect_config();
        config.application_name(application);
        Self::open(config).await
    }

    async fn open(config: tokio_postgres::Config) -> Result<Client, ProviderError> {
        let (client, connection) = config.connect(NoTls).await.map_err(|e| db_error(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }

    pub(crate) fn connect_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.database)
            .application_name("tenantform")
            .connect_timeout(Duration::from_secs(10));
        if let Some(p) = &self.password {
            c.password(p.expose());
        }
        c
    }
}

/// A small pool of admin connections, opened on first use.
struct Pool {
    config: PostgresConfig,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

struct PooledClient<'a> {
    client: Option<Client>,
    pool: &'a Pool,
    _permit: OwnedSemaphorePermit,
}

impl Deref for PooledClient<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl DerefMut for PooledClient<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until drop")
    }
}

impl Drop for PooledClient<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.is_closed()
        {
            self.pool.idle.lock().expect("pool lock").push(c);
        }
    }
}

impl Pool {
    async fn get(&self) -> Result<PooledClient<'_>, ProviderError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let idle = {
            let mut idle = self.idle.lock().expect("pool lock");
            std::iter::from_fn(|| idle.pop()).find(|c| !c.is_closed())
        };
        let client = match idle {
            Some(c) => c,
            None => {
                let (client, connection) = self
                    .config
                    .connect_config()
                    .connect(NoTls)
                    .await
                    .map_err(|e| db_error(&e))?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "PostgreSQL connection closed");
                    }
                });
                client
            }
        };
        Ok(PooledClient {
            client: Some(client),
            pool: self,
            _permit: permit,
        })
    }
}

/// Maps a driver error to a provider error; serialization conflicts, dropped
/// connections and concurrent catalog updates are retryable.
pub fn db_error(e: &tokio_postgres::Error) -> ProviderError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let retryable = [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code)
            // "tuple concurrently updated": two catalog updates of one object at once.
            || (*code == SqlState::INTERNAL_ERROR && db.message().contains("concurrently"));
        ProviderError::Api {
            service: SERVICE,
            code: code.code().to_owned(),
            message: db.message().to_owned(),
            retryable,
        }
    } else {
        ProviderError::Unreachable {
            service: SERVICE,
            detail: e.to_string(),
        }
    }
}

fn is_duplicate(e: &ProviderError) -> bool {
    matches!(e, ProviderError::Api { code, .. }
        if [SqlState::DUPLICATE_OBJECT, SqlState::DUPLICATE_SCHEMA, SqlState::DUPLICATE_TABLE]
            .iter().any(|s| s.code() == code))
}

/// `"name"` with embedded quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled (standard_conforming_strings is on).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

pub(crate) fn req<'a>(attrs: &'a Attributes, name: &str) -> Result<&'a str, ProviderError> {
    attr_str(attrs, name).ok_or_else(|| {
        ProviderError::Config(format!("attribute {name} is missing or not a string"))
    })
}

fn bool_attr(attrs: &Attributes, name: &str) -> bool {
    attrs.get(name).and_then(Value::as_bool).unwrap_or(false)
}

pub(crate) fn string_list(attrs: &Attributes, name: &str) -> Vec<String> {
    attrs
        .get(name)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Schemas, roles, grants, tables and row-level security in one database.
pub struct PostgresProvider {
    pool: Pool,
    retry: RetryPolicy,
}

impl PostgresProvider {
    pub fn new(config: PostgresConfig, max_connections: usize) -> Self {
        PostgresProvider {
            pool: Pool {
                config,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(max_connections.max(1))),
            },
            retry: RetryPolicy::DEFAULT,
        }
    }

    pub fn config(&self) -> &PostgresConfig {
        &self.pool.config
    }

    /// Runs `sql` (one or more statements, as one implicit transaction) with retries.
    pub(crate) async fn batch(&self, sql: &str) -> Result<(), ProviderError> {
        self.retry
            .run(SERVICE, || async {
                let client = self.pool.get().await?;
                client.batch_execute(sql).await.map_err(|e| db_error(&e))
            })
            .await
    }

    /// Runs a query with text parameters and returns its rows, with retries.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&str],
    ) -> Result<Vec<tokio_postgres::Row>, ProviderError> {
        self.retry
            .run(SERVICE, || async {
                let client = self.pool.get().await?;
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                client.query(sql, &params).await.map_err(|e| db_error(&e))
            })
            .await
    }

    async fn exists(&self, sql: &str, params: &[&str]) -> Result<bool, ProviderError> {
        Ok(!self.query(sql, params).await?.is_empty())
    }

    pub(crate) async fn role_exists(&self, role: &str) -> Result<bool, ProviderError> {
        self.exists("SELECT 1 FROM pg_roles WHERE rolname = $1", &[role])
            .await
    }

    pub(crate) async fn schema_exists(&self, schema: &str) -> Result<bool, ProviderError> {
        self.exists("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[schema])
            .await
    }

    pub(crate) async fn table_exists(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<bool, ProviderError> {
        self.exists(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[schema, table],
        )
        .await
    }

    /// Runs a create batch; a duplicate object is ours in resume mode and someone
    /// else's otherwise.
    async fn create_batch(
        &self,
        sql: &str,
        resume_sql: &str,
        mode: CreateMode,
        what: impl FnOnce() -> String,
    ) -> Result<(), ProviderError> {
        let sql = match mode {
            CreateMode::Fresh => sql,
            CreateMode::Resume => resume_sql,
        };
        match self.batch(sql).await {
            Err(e) if is_duplicate(&e) => Err(ProviderError::AlreadyExists { what: what() }),
            other => other,
        }
    }

    // --- schema -------------------------------------------------------------------

    async fn read_schema(&self, current: &Attributes) -> Result<Option<Attributes>, ProviderError> {
        let name = req(current, "name")?;
        let rows = self
            .query(
                "SELECT coalesce(obj_description(oid, 'pg_namespace'), '') FROM pg_namespace WHERE nspname = $1",
                &[name],
            )
            .await?;
        Ok(rows.first().map(|row| {
            let comment: String = row.get(0);
            Attributes::from([
                ("name".into(), json!(name)),
                ("comment".into(), json!(comment)),
            ])
        }))
    }

    fn schema_sql(attrs: &Attributes, if_not_exists: bool) -> Result<String, ProviderError> {
        let name = ident(req(attrs, "name")?);
        Ok(format!(
            "CREATE SCHEMA {}{name}; COMMENT ON SCHEMA {name} IS {};",
            if if_not_exists { "IF NOT EXISTS " } else { "" },
            literal(req(attrs, "comment")?)
        ))
    }

    // --- role ---------------------------------------------------------------------

    fn role_options(attrs: &Attributes) -> String {
        let flag = |name: &str, on: &str, off: &str| {
            if bool_attr(attrs, name) { on } else { off }.to_owned()
        };
        let limit = attrs
            .get("connection_limit")
            .and_then(Value::as_i64)
            .unwrap_or(-1);
        [
            flag("login", "LOGIN", "NOLOGIN"),
            flag("superuser", "SUPERUSER", "NOSUPERUSER"),
            flag("create_db", "CREATEDB", "NOCREATEDB"),
            flag("create_role", "CREATEROLE", "NOCREATEROLE"),
            flag("bypass_rls", "BYPASSRLS", "NOBYPASSRLS"),
            flag("inherit", "INHERIT", "NOINHERIT"),
            format!("CONNECTION LIMIT {limit}"),
        ]
        .join(" ")
    }

    async fn read_role(&self, current: &Attributes) -> Result<Option<Attributes>, ProviderError> {
        let name = req(current, "name")?;
        let rows = self
            .query(
                "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolinherit, rolconnlimit \
                 FROM pg_roles WHERE rolname = $1",
                &[name],
            )
            .await?;
        Ok(rows.first().map(|row| {
            Attributes::from([
                ("name".into(), json!(name)),
                ("login".into(), json!(row.get::<_, bool>(0))),
                ("superuser".into(), json!(row.get::<_, bool>(1))),
                ("create_db".into(), json!(row.get::<_, bool>(2))),
                ("create_role".into(), json!(row.get::<_, bool>(3))),
                ("bypass_rls".into(), json!(row.get::<_, bool>(4))),
                ("inherit".into(), json!(row.get::<_, bool>(5))),
                ("connection_limit".into(), json!(row.get::<_, i32>(6))),
            ])
        }))
    }

    async fn create_role(
        &self,
        attrs: &Attributes,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError> {
        let name = req(attrs, "name")?;
        let password = generate_password(32);
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let options = Self::role_options(attrs);
        let create = format!(
            "CREATE ROLE {} {options} PASSWORD {}",
            ident(name),
            literal(&verifier)
        );
        // Resume: the role may exist from the interrupted run, with a password nobody
        // recorded; set a new one.
        let resume = format!(
            "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {lit}) THEN \
             EXECUTE {create_lit}; END IF; END$$; ALTER ROLE {id} {options} PASSWORD {pw};",
            lit = literal(name),
            create_lit = literal(&format!("CREATE ROLE {}", ident(name))),
            id = ident(name),
            pw = literal(&verifier),
        );
        self.create_batch(&create, &resume, mode, || {
            format!("PostgreSQL role {name:?}")
        })
        .await?;
        Ok(Attributes::from([("password".into(), json!(password))]))
    }

    async fn delete_role(&self, current: &Attributes) -> Result<(), ProviderError> {
        let name = req(current, "name")?;
        if !self.role_exists(name).await? {
            return Ok(());
        }
        // Privileges the role still has in this database (grants are separate resources
        // and normally gone already; this covers anything granted by hand).
        self.batch(&format!(
            "DROP OWNED BY {id}; DROP ROLE IF EXISTS {id};",
            id = ident(name)
        ))
        .await
    }

    // --- grants -------------------------------------------------------------------

    pub(crate) async fn read_privileges(
        &self,
        acl_sql: &str,
        params: &[&str],
        role: &str,
    ) -> Result<Vec<String>, ProviderError> {
        let sql = format!(
            "SELECT a.privilege_type FROM aclexplode(({acl_sql})) a \
             JOIN pg_roles r ON r.oid = a.grantee WHERE r.rolname = ${} ORDER BY 1",
            params.len() + 1
        );
        let mut all: Vec<&str> = params.to_vec();
        all.push(role);
        let rows = self.query(&sql, &all).await?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    /// GRANT what is desired and not there, REVOKE what is there and not desired.
    pub(crate) fn grant_sql(
        on: &str,
        role: &str,
        desired: &[String],
        present: &[String],
    ) -> String {
        let mut sql = String::new();
        let grant: Vec<&str> = desired
            .iter()
            .filter(|p| !present.contains(p))
            .map(String::as_str)
            .collect();
        let revoke: Vec<&str> = present
            .iter()
            .filter(|p| !desired.contains(p))
            .map(String::as_str)
            .collect();
        if !grant.is_empty() {
            sql += &format!("GRANT {} ON {on} TO {};", grant.join(", "), ident(role));
        }
        if !revoke.is_empty() {
            sql += &format!("REVOKE {} ON {on} FROM {};", revoke.join(", "), ident(role));
        }
        sql
    }

    fn schema_acl(schema_param: usize) -> String {
        format!("SELECT nspacl FROM pg_namespace WHERE nspname = ${schema_param}")
    }

    pub(crate) fn table_acl() -> &'static str {
        "SELECT c.relacl FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2"
    }

    async fn grant_target(
        &self,
        t: ResourceType,
        attrs: &Attributes,
    ) -> Result<(String, String, Vec<String>), ProviderError> {
        let role = req(attrs, "role")?.to_owned();
        let schema = req(attrs, "schema")?;
        Ok(match t {
            ResourceType::PostgresSchemaGrant => {
                let present = self
                    .read_privileges(&Self::schema_acl(1), &[schema], &role)
                    .await?;
                (format!("SCHEMA {}", ident(schema)), role, present)
            }
            _ => {
                let table = req(attrs, "table")?;
                let present = self
                    .read_privileges(Self::table_acl(), &[schema, table], &role)
                    .await?;
                (
                    format!("TABLE {}.{}", ident(schema), ident(table)),
                    role,
                    present,
                )
            }
        })
    }

    async fn read_grant(
        &self,
        t: ResourceType,
        current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        let (_, _, present) = self.grant_target(t, current).await?;
        if present.is_empty() {
            return Ok(None);
        }
        let mut attrs = current.clone();
        attrs.insert("privileges".into(), json!(present));
        Ok(Some(attrs))
    }

    async fn converge_grant(
        &self,
        t: ResourceType,
        attrs: &Attributes,
    ) -> Result<(), ProviderError> {
        let (on, role, present) = self.grant_target(t, attrs).await?;
        let sql = Self::grant_sql(&on, &role, &string_list(attrs, "privileges"), &present);
        if sql.is_empty() {
            return Ok(());
        }
        self.batch(&sql).await
    }

    async fn delete_grant(
        &self,
        t: ResourceType,
        current: &Attributes,
    ) -> Result<(), ProviderError> {
        let role = req(current, "role")?;
        let schema = req(current, "schema")?;
        if !self.role_exists(role).await? {
            return Ok(());
        }
        let on = match t {
            ResourceType::PostgresSchemaGrant => {
                if !self.schema_exists(schema).await? {
                    return Ok(());
                }
                format!("SCHEMA {}", ident(schema))
            }
            _ => {
                let table = req(current, "table")?;
                if !self.table_exists(schema, table).await? {
                    return Ok(());
                }
                format!("TABLE {}.{}", ident(schema), ident(table))
            }
        };
        self.batch(&format!("REVOKE ALL ON {on} FROM {};", ident(role)))
            .await
    }

    // --- table --------------------------------------------------------------------

    async fn read_table(&self, current: &Attributes) -> Result<Option<Attributes>, ProviderError> {
        let schema = req(current, "schema")?;
        let name = req(current, "name")?;
        if !self.table_exists(schema, name).await? {
            return Ok(None);
        }
        let rows = self
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                        pg_get_expr(d.adbin, d.adrelid), a.attidentity::text \
                 FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[schema, name],
            )
            .await?;
        let columns: Vec<Value> = rows
            .iter()
            .map(|r| {
                let identity: String = r.get(4);
                column_json(
                    r.get::<_, String>(0).as_str(),
                    r.get::<_, String>(1).as_str(),
                    r.get(2),
                    r.get::<_, Option<String>>(3).as_deref(),
                    match identity.as_str() {
                        "a" => Some("always"),
                        "d" => Some("by default"),
                        _ => None,
                    },
                )
            })
            .collect();
        let pk = self
            .query(
                "SELECT a.attname::text FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) \
                 WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary \
                 ORDER BY array_position(i.indkey::int2[], a.attnum)",
                &[schema, name],
            )
            .await?;
        let pk: Vec<String> = pk.iter().map(|r| r.get(0)).collect();
        Ok(Some(Attributes::from([
            ("schema".into(), json!(schema)),
            ("name".into(), json!(name)),
            ("columns".into(), json!(columns)),
            ("primary_key".into(), json!(pk)),
        ])))
    }

    fn create_table_sql(attrs: &Attributes, if_not_exists: bool) -> Result<String, ProviderError> {
        let table = format!(
            "{}.{}",
            ident(req(attrs, "schema")?),
            ident(req(attrs, "name")?)
        );
        let mut defs: Vec<String> = columns(attrs)?.iter().map(Column::definition).collect();
        let pk = string_list(attrs, "primary_key");
        if !pk.is_empty() {
            let cols: Vec<String> = pk.iter().map(|c| ident(c)).collect();
            defs.push(format!("PRIMARY KEY ({})", cols.join(", ")));
        }
        Ok(format!(
            "CREATE TABLE {}{table} ({});",
            if if_not_exists { "IF NOT EXISTS " } else { "" },
            defs.join(", ")
        ))
    }

    async fn update_table(
        &self,
        desired: &Attributes,
        current: &Attributes,
    ) -> Result<(), ProviderError> {
        let schema = req(desired, "schema")?;
        let name = req(desired, "name")?;
        let table = format!("{}.{}", ident(schema), ident(name));
        // Compare with the table as it is, not as state remembers it.
        let actual = self
            .read_table(current)
            .await?
            .ok_or_else(|| ProviderError::Api {
                service: SERVICE,
                code: SqlState::UNDEFINED_TABLE.code().into(),
                message: format!("table {schema}.{name} does not exist"),
                retryable: false,
            })?;
        let want = columns(desired)?;
        let have = columns(&actual)?;
        let mut sql = Vec::new();
        for w in &want {
            match have.iter().find(|h| h.name == w.name) {
                None => sql.push(format!("ADD COLUMN {}", w.definition())),
                Some(h) => sql.extend(w.alterations_from(h)),
            }
        }
        for h in &have {
            if !want.iter().any(|w| w.name == h.name) {
                sql.push(format!("DROP COLUMN {}", ident(&h.name)));
            }
        }
        let want_pk = string_list(desired, "primary_key");
        if want_pk != string_list(&actual, "primary_key") {
            let pk_name = format!("{name}_pkey");
            sql.push(format!("DROP CONSTRAINT IF EXISTS {}", ident(&pk_name)));
            if !want_pk.is_empty() {
                let cols: Vec<String> = want_pk.iter().map(|c| ident(c)).collect();
                sql.push(format!("ADD PRIMARY KEY ({})", cols.join(", ")));
            }
        }
        if sql.is_empty() {
            return Ok(());
        }
        self.batch(&format!("ALTER TABLE {table} {};", sql.join(", ")))
            .await
    }

    // --- row-level security -------------------------------------------------------

    async fn read_row_security(
        &self,
        current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        let schema = req(current, "schema")?;
        let table = req(current, "table")?;
        let policy = req(current, "policy")?;
        let flags = self
            .query(
                "SELECT c.relrowsecurity, c.relforcerowsecurity FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                &[schema, table],
            )
            .await?;
        let Some(flags) = flags.first() else {
            return Ok(None);
        };
        let rows = self
            .query(
                "SELECT cmd, roles::text[], coalesce(qual, ''), coalesce(with_check, '') FROM pg_policies \
                 WHERE schemaname = $1 AND tablename = $2 AND policyname = $3",
                &[schema, table, policy],
            )
            .await?;
        let Some(p) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(Attributes::from([
            ("schema".into(), json!(schema)),
            ("table".into(), json!(table)),
            ("policy".into(), json!(policy)),
            ("command".into(), json!(p.get::<_, String>(0))),
            ("enabled".into(), json!(flags.get::<_, bool>(0))),
            ("forced".into(), json!(flags.get::<_, bool>(1))),
            ("roles".into(), json!(p.get::<_, Vec<String>>(1))),
            ("using".into(), json!(p.get::<_, String>(2))),
            ("with_check".into(), json!(p.get::<_, String>(3))),
        ])))
    }

    fn row_security_flags_sql(attrs: &Attributes, table: &str) -> String {
        format!(
            "ALTER TABLE {table} {} ROW LEVEL SECURITY; ALTER TABLE {table} {} ROW LEVEL SECURITY;",
            if bool_attr(attrs, "enabled") {
                "ENABLE"
            } else {
                "DISABLE"
            },
            if bool_attr(attrs, "forced") {
                "FORCE"
            } else {
                "NO FORCE"
            },
        )
    }

    fn policy_clauses(attrs: &Attributes) -> Result<String, ProviderError> {
        let roles: Vec<String> = string_list(attrs, "roles")
            .iter()
            .map(|r| ident(r))
            .collect();
        let roles = if roles.is_empty() {
            "PUBLIC".to_owned()
        } else {
            roles.join(", ")
        };
        let mut s = format!("TO {roles} USING {}", req(attrs, "using")?);
        let check = req(attrs, "with_check")?;
        if !check.is_empty() {
            s += &format!(" WITH CHECK {check}");
        }
        Ok(s)
    }

    fn create_row_security_sql(attrs: &Attributes, replace: bool) -> Result<String, ProviderError> {
        let table = format!(
            "{}.{}",
            ident(req(attrs, "schema")?),
            ident(req(attrs, "table")?)
        );
        let policy = ident(req(attrs, "policy")?);
        let mut sql = Self::row_security_flags_sql(attrs, &table);
        if replace {
            sql += &format!("DROP POLICY IF EXISTS {policy} ON {table};");
        }
        sql += &format!(
            "CREATE POLICY {policy} ON {table} AS PERMISSIVE FOR {} {};",
            req(attrs, "command")?,
            Self::policy_clauses(attrs)?
        );
        Ok(sql)
    }

    async fn delete_row_security(&self, current: &Attributes) -> Result<(), ProviderError> {
        let schema = req(current, "schema")?;
        let table_name = req(current, "table")?;
        if !self.table_exists(schema, table_name).await? {
            return Ok(());
        }
        let table = format!("{}.{}", ident(schema), ident(table_name));
        self.batch(&format!(
            "DROP POLICY IF EXISTS {} ON {table}; ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY; \
             ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;",
            ident(req(current, "policy")?)
        ))
        .await
    }
}

/// One column of a table, as the `columns` attribute lists it.
#[derive(Debug, PartialEq)]
struct Column {
    name: String,
    data_type: String,
    not_null: bool,
    default: Option<String>,
    identity: Option<String>,
}

/// A column as the `columns` attribute holds it.
pub fn column_json(
    name: &str,
    data_type: &str,
    not_null: bool,
    default: Option<&str>,
    identity: Option<&str>,
) -> Value {
    json!({
        "name": name,
        "type": data_type,
        "not_null": not_null,
        "default": default,
        "identity": identity,
    })
}

fn columns(attrs: &Attributes) -> Result<Vec<Column>, ProviderError> {
    let bad = || ProviderError::Config("attribute columns is not a list of columns".into());
    attrs
        .get("columns")
        .and_then(Value::as_array)
        .ok_or_else(bad)?
        .iter()
        .map(|c| {
            let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
            Ok(Column {
                name: s("name").ok_or_else(bad)?,
                data_type: s("type").ok_or_else(bad)?,
                not_null: c.get("not_null").and_then(Value::as_bool).unwrap_or(false),
                default: s("default"),
                identity: s("identity"),
            })
        })
        .collect()
}

impl Column {
    fn definition(&self) -> String {
        let mut d = format!("{} {}", ident(&self.name), self.data_type);
        if let Some(identity) = &self.identity {
            d += &format!(" GENERATED {} AS IDENTITY", identity.to_uppercase());
        }
        if self.not_null {
            d += " NOT NULL";
        }
        if let Some(default) = &self.default {
            d += &format!(" DEFAULT {default}");
        }
        d
    }

    /// ALTER TABLE clauses that turn `have` into `self`.
    fn alterations_from(&self, have: &Column) -> Vec<String> {
        let col = format!("ALTER COLUMN {}", ident(&self.name));
        let mut out = Vec::new();
        if self.data_type != have.data_type {
            out.push(format!(
                "{col} TYPE {} USING {}::{}",
                self.data_type,
                ident(&self.name),
                self.data_type
            ));
        }
        if self.identity != have.identity {
            if have.identity.is_some() {
                out.push(format!("{col} DROP IDENTITY IF EXISTS"));
            }
            if let Some(identity) = &self.identity {
                out.push(format!(
                    "{col} ADD GENERATED {} AS IDENTITY",
                    identity.to_uppercase()
                ));
            }
        }
        if self.default != have.default {
            out.push(match &self.default {
                Some(d) => format!("{col} SET DEFAULT {d}"),
                None => format!("{col} DROP DEFAULT"),
            });
        }
        if self.not_null != have.not_null {
            out.push(format!(
                "{col} {} NOT NULL",
                if self.not_null { "SET" } else { "DROP" }
            ));
        }
        out
    }
}

#[async_trait]
impl Provider for PostgresProvider {
    async fn read(
        &self,
        address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        match address.resource_type {
            ResourceType::PostgresSchema => self.read_schema(current).await,
            ResourceType::PostgresRole => self.read_role(current).await,
            t @ (ResourceType::PostgresSchemaGrant | ResourceType::PostgresTableGrant) => {
                self.read_grant(t, current).await
            }
            ResourceType::PostgresTable => self.read_table(current).await,
            ResourceType::PostgresRowSecurity => self.read_row_security(current).await,
            #[allow(unreachable_patterns)]
            other => Err(unsupported(other)),
        }
    }

    async fn create(
        &self,
        resource: &Resource,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError> {
        let a = &resource.attributes;
        let what = || {
            format!(
                "{} of {}",
                resource.address.resource_type, resource.address.tenant
            )
        };
        match resource.address.resource_type {
            ResourceType::PostgresSchema => {
                let name = req(a, "name")?;
                self.create_batch(
                    &Self::schema_sql(a, false)?,
                    &Self::schema_sql(a, true)?,
                    mode,
                    || format!("PostgreSQL schema {name:?}"),
                )
                .await?;
            }
            ResourceType::PostgresRole => return self.create_role(a, mode).await,
            t @ (ResourceType::PostgresSchemaGrant | ResourceType::PostgresTableGrant) => {
                self.converge_grant(t, a).await?
            }
            ResourceType::PostgresTable => {
                let name = format!("{}.{}", req(a, "schema")?, req(a, "name")?);
                self.create_batch(
                    &Self::create_table_sql(a, false)?,
                    &Self::create_table_sql(a, true)?,
                    mode,
                    || format!("PostgreSQL table {name:?}"),
                )
                .await?;
                if mode == CreateMode::Resume {
                    // The table may predate a change of its columns.
                    self.update_table(a, a).await?;
                }
            }
            ResourceType::PostgresRowSecurity => {
                self.create_batch(
                    &Self::create_row_security_sql(a, false)?,
                    &Self::create_row_security_sql(a, true)?,
                    mode,
                    || {
                        format!(
                            "row-level security policy {:?} ({})",
                            attr_str(a, "policy").unwrap_or(""),
                            what()
                        )
                    },
                )
                .await?;
            }
            #[allow(unreachable_patterns)]
            other => return Err(unsupported(other)),
        }
        Ok(Attributes::new())
    }

    async fn update(
        &self,
        resource: &Resource,
        current: &Attributes,
        _changed: &[String],
    ) -> Result<Attributes, ProviderError> {
        let a = &resource.attributes;
        match resource.address.resource_type {
            ResourceType::PostgresSchema => {
                self.batch(&format!(
                    "COMMENT ON SCHEMA {} IS {};",
                    ident(req(a, "name")?),
                    literal(req(a, "comment")?)
                ))
                .await?
            }
            ResourceType::PostgresRole => {
                self.batch(&format!(
                    "ALTER ROLE {} {};",
                    ident(req(a, "name")?),
                    Self::role_options(a)
                ))
                .await?
            }
            t @ (ResourceType::PostgresSchemaGrant | ResourceType::PostgresTableGrant) => {
                self.converge_grant(t, a).await?
            }
            ResourceType::PostgresTable => self.update_table(a, current).await?,
            ResourceType::PostgresRowSecurity => {
                let table = format!("{}.{}", ident(req(a, "schema")?), ident(req(a, "table")?));
                let mut sql = Self::row_security_flags_sql(a, &table);
                sql += &format!(
                    "ALTER POLICY {} ON {table} {};",
                    ident(req(a, "policy")?),
                    Self::policy_clauses(a)?
                );
                self.batch(&sql).await?
            }
            #[allow(unreachable_patterns)]
            other => return Err(unsupported(other)),
        }
        Ok(Attributes::new())
    }

    async fn delete(
        &self,
        address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<(), ProviderError> {
        match address.resource_type {
            ResourceType::PostgresSchema => {
                self.batch(&format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE;",
                    ident(req(current, "name")?)
                ))
                .await
            }
            ResourceType::PostgresRole => self.delete_role(current).await,
            t @ (ResourceType::PostgresSchemaGrant | ResourceType::PostgresTableGrant) => {
                self.delete_grant(t, current).await
            }
            ResourceType::PostgresTable => {
                self.batch(&format!(
                    "DROP TABLE IF EXISTS {}.{};",
                    ident(req(current, "schema")?),
                    ident(req(current, "name")?)
                ))
                .await
            }
            ResourceType::PostgresRowSecurity => self.delete_row_security(current).await,
            #[allow(unreachable_patterns)]
            other => Err(unsupported(other)),
        }
    }
}

fn unsupported(t: ResourceType) -> ProviderError {
    ProviderError::Config(format!(
        "the PostgreSQL provider does not manage {t} resources"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("tenant_a"), "\"tenant_a\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn grant_sql_grants_the_missing_and_revokes_the_extra() {
        let want = vec!["SELECT".to_owned(), "INSERT".to_owned()];
        let have = vec!["SELECT".to_owned(), "TRUNCATE".to_owned()];
        assert_eq!(
            PostgresProvider::grant_sql("TABLE t", "r", &want, &have),
            "GRANT INSERT ON TABLE t TO \"r\";REVOKE TRUNCATE ON TABLE t FROM \"r\";"
        );
        assert_eq!(
            PostgresProvider::grant_sql("TABLE t", "r", &want, &want),
            ""
        );
    }

    #[test]
    fn column_alterations_cover_type_default_and_nullability() {
        let want = Column {
            name: "c".into(),
            data_type: "text".into(),
            not_null: true,
            default: Some("'x'::text".into()),
            identity: None,
        };
        let have = Column {
            name: "c".into(),
            data_type: "character varying(10)".into(),
            not_null: false,
            default: None,
            identity: None,
        };
        assert_eq!(
            want.alterations_from(&have),
            vec![
                "ALTER COLUMN \"c\" TYPE text USING \"c\"::text",
                "ALTER COLUMN \"c\" SET DEFAULT 'x'::text",
                "ALTER COLUMN \"c\" SET NOT NULL",
            ]
        );
        assert!(want.alterations_from(&want).is_empty());
    }

    #[test]
    fn config_debug_output_hides_the_password() {
        let c = PostgresConfig {
            host: "h".into(),
            port: 1,
            user: "u".into(),
            password: Some(Secret::new("hunter2")),
            database: "d".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
