//! PostgreSQL: schemas, login roles, grants, tables and row-level security.
//!
//! Every statement that must not be half-done runs as one simple-query batch, which
//! PostgreSQL executes as a single implicit transaction. A create's batch runs at most
//! once however its answers are lost ([`execute_once`]: the next attempt asks whether
//! the earlier transaction committed), so a create never fails on the object its own
//! attempt made. A schema or role carries the create's token in its comment, written in
//! the creating transaction, which tells a resumed create its object from someone
//! else's. Role passwords are sent as
//! SCRAM-SHA-256 verifiers computed here, so the plain password never reaches the
//! server, its logs or `pg_stat_statements`.

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;

use super::catalog::Catalog;
use super::{
    CreateMode, Provider, ProviderError, ReadOptions, ReadRequest, ReadResult, failed_batch,
    generated_password,
};
use crate::connect::postgres::{
    PostgresConfig, PostgresPool, db_error, execute_once, ident, literal, pooled,
};
use crate::connect::retry::RetryPolicy;
use crate::resource::postgres::column_json;
use crate::resource::{
    Attributes, CreateToken, Resource, ResourceAddress, ResourceType, attr_bool, attr_str,
    required_str, string_list,
};
use crate::secret::generate_password;

const SERVICE: &str = "PostgreSQL";

/// What a create appends to the comment it writes with a schema or role, in the
/// creating transaction: the create's token, which tells a resumed create its object
/// from someone else's. Reads leave it out, so it is never drift.
const CREATE_MARK: &str = " [tenantform create ";

fn with_create_mark(comment: &str, token: CreateToken) -> String {
    format!("{comment}{CREATE_MARK}{token}]")
}

/// A comment as the resource sees it: without a create's mark.
fn without_create_mark(comment: &str) -> &str {
    comment
        .find(CREATE_MARK)
        .map_or(comment, |at| &comment[..at])
}

/// An object of the name exists. Two creates of one name at once: the second waits
/// for the first and fails on the catalog's unique index (23505) instead.
fn is_duplicate(e: &ProviderError) -> bool {
    matches!(e, ProviderError::Api { code, .. }
        if [
            SqlState::DUPLICATE_OBJECT,
            SqlState::DUPLICATE_SCHEMA,
            SqlState::DUPLICATE_TABLE,
            SqlState::UNIQUE_VIOLATION,
        ]
            .iter().any(|s| s.code() == code))
}

/// Schemas, roles, grants, tables and row-level security in one database.
pub struct PostgresProvider {
    config: PostgresConfig,
    pool: PostgresPool,
    retry: RetryPolicy,
}

impl PostgresProvider {
    /// A provider with at most `max_connections` admin connections to `config`'s
    /// database, opened on first use.
    pub fn new(config: PostgresConfig, max_connections: usize) -> Result<Self, ProviderError> {
        Ok(PostgresProvider {
            pool: config.pool(max_connections)?,
            config,
            retry: RetryPolicy::DEFAULT,
        })
    }

    /// The database settings the provider connects with.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// Runs `sql` (one or more statements, as one implicit transaction) with retries.
    pub(crate) async fn batch(&self, sql: &str) -> Result<(), ProviderError> {
        self.retry
            .run(SERVICE, || async {
                let client = pooled(&self.pool).await?;
                client.batch_execute(sql).await.map_err(|e| db_error(&e))
            })
            .await
    }

    /// Runs `sql` (statements that must not run twice, such as a create) as one
    /// transaction that takes effect at most once across the retries
    /// ([`execute_once`]).
    pub(crate) async fn batch_once(&self, sql: &str) -> Result<(), ProviderError> {
        execute_once(&self.pool, &self.retry, sql).await
    }

    /// Runs a query with text parameters and returns its rows, with retries.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&str],
    ) -> Result<Vec<tokio_postgres::Row>, ProviderError> {
        self.retry
            .run(SERVICE, || async {
                let client = pooled(&self.pool).await?;
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                client.query(sql, &params).await.map_err(|e| db_error(&e))
            })
            .await
    }

    /// Runs a query whose one parameter, `$1`, is the list `names` (as `text[]`), with
    /// retries: the catalog read of many resources at once.
    pub(crate) async fn query_in(
        &self,
        sql: &str,
        names: &[String],
    ) -> Result<Vec<tokio_postgres::Row>, ProviderError> {
        self.retry
            .run(SERVICE, || async {
                let client = pooled(&self.pool).await?;
                client.query(sql, &[&names]).await.map_err(|e| db_error(&e))
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

    /// Creates an object named `name` whose `create` batch writes its comment with the
    /// create's mark ([`with_create_mark`]). A resumed create first reads the comment
    /// of the object of that name (`comment_sql`, `$1` = the name): an object whose
    /// comment carries this create's token is the one the interrupted run made, and
    /// `adopt` brings it to the desired state; any other is someone else's. The create
    /// runs once however its answers are lost ([`Self::batch_once`]). If a resumed
    /// create finds the name taken meanwhile (the interrupted run's own statement,
    /// which the server finishes after its client is gone), it looks again.
    async fn create_marked(
        &self,
        mode: CreateMode,
        (comment_sql, name): (&str, &str),
        create: &str,
        adopt: &str,
        what: impl Fn() -> String,
    ) -> Result<(), ProviderError> {
        let mut looked_again = false;
        loop {
            match self.comment_if_resumed(mode, comment_sql, name).await? {
                Some(c) if mode.token().is_in(&c) => return self.batch(adopt).await,
                Some(_) => return Err(ProviderError::AlreadyExists { what: what() }),
                None => match self.batch_once(create).await {
                    Err(e) if is_duplicate(&e) && mode.is_resume() && !looked_again => {
                        looked_again = true;
                    }
                    Err(e) if is_duplicate(&e) => {
                        return Err(ProviderError::AlreadyExists { what: what() });
                    }
                    other => return other,
                },
            }
        }
    }

    /// The comment of the object that `sql` (with `$1` = its name) finds (`Some("")`
    /// for none), or `None` when there is no such object; asked only by a resumed
    /// create, which alone may find its own object.
    async fn comment_if_resumed(
        &self,
        mode: CreateMode,
        sql: &str,
        name: &str,
    ) -> Result<Option<String>, ProviderError> {
        if !mode.is_resume() {
            return Ok(None);
        }
        let rows = self.query(sql, &[name]).await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// Runs a create batch once ([`Self::batch_once`], so an attempt whose answer was
    /// lost is never mistaken for someone else's object); a resumed create runs
    /// `resume_sql`, which takes an existing object of the name. A duplicate object is
    /// someone else's.
    async fn create_batch(
        &self,
        sql: &str,
        resume_sql: &str,
        mode: CreateMode,
        what: impl FnOnce() -> String,
    ) -> Result<(), ProviderError> {
        let sql = if mode.is_resume() { resume_sql } else { sql };
        match self.batch_once(sql).await {
            Err(e) if is_duplicate(&e) => Err(ProviderError::AlreadyExists { what: what() }),
            other => other,
        }
    }

    // --- schema -------------------------------------------------------------------

    async fn read_schema(&self, current: &Attributes) -> Result<Option<Attributes>, ProviderError> {
        let name = required_str(current, "name")?;
        let rows = self
            .query(
                "SELECT coalesce(obj_description(oid, 'pg_namespace'), '') FROM pg_namespace WHERE nspname = $1",
                &[name],
            )
            .await?;
        Ok(rows.first().map(|row| schema_attributes(name, row.get(0))))
    }

    async fn create_schema(&self, a: &Attributes, mode: CreateMode) -> Result<(), ProviderError> {
        let name = required_str(a, "name")?;
        let comment = literal(&with_create_mark(required_str(a, "comment")?, mode.token()));
        let id = ident(name);
        self.create_marked(
            mode,
            (
                "SELECT coalesce(obj_description(oid, 'pg_namespace'), '') FROM pg_namespace WHERE nspname = $1",
                name,
            ),
            &format!("CREATE SCHEMA {id}; COMMENT ON SCHEMA {id} IS {comment};"),
            &format!("COMMENT ON SCHEMA {id} IS {comment};"),
            || format!("PostgreSQL schema {name:?}"),
        )
        .await
    }

    // --- role ---------------------------------------------------------------------

    fn role_options(attrs: &Attributes) -> String {
        let flag = |name: &str, on: &str, off: &str| {
            if attr_bool(attrs, name) { on } else { off }.to_owned()
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
        let name = required_str(current, "name")?;
        let rows = self
            .query(
                "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolinherit, rolconnlimit \
                 FROM pg_roles WHERE rolname = $1",
                &[name],
            )
            .await?;
        Ok(rows.first().map(|row| role_attributes(name, row, 0)))
    }

    async fn create_role(
        &self,
        attrs: &Attributes,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError> {
        let name = required_str(attrs, "name")?;
        let (password, verifier) = new_password();
        let options = Self::role_options(attrs);
        let id = ident(name);
        let pw = literal(&verifier);
        // A role has no comment of its own: the comment is the create's mark alone.
        let comment = literal(&with_create_mark("created by tenantform", mode.token()));
        // Adopted from the interrupted run, with a password nobody recorded: set a new one.
        self.create_marked(
            mode,
            (
                "SELECT coalesce(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE rolname = $1",
                name,
            ),
            &format!(
                "CREATE ROLE {id} {options} PASSWORD {pw}; COMMENT ON ROLE {id} IS {comment};"
            ),
            &format!("ALTER ROLE {id} {options} PASSWORD {pw};"),
            || format!("PostgreSQL role {name:?}"),
        )
        .await?;
        Ok(generated_password(password))
    }

    async fn delete_role(&self, current: &Attributes) -> Result<(), ProviderError> {
        let name = required_str(current, "name")?;
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
        let role = required_str(attrs, "role")?.to_owned();
        let schema = required_str(attrs, "schema")?;
        Ok(match t {
            ResourceType::PostgresSchemaGrant => {
                let present = self
                    .read_privileges(&Self::schema_acl(1), &[schema], &role)
                    .await?;
                (format!("SCHEMA {}", ident(schema)), role, present)
            }
            _ => {
                let table = required_str(attrs, "table")?;
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
        Ok(grant_attributes(current, present))
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
        let role = required_str(current, "role")?;
        let schema = required_str(current, "schema")?;
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
                let table = required_str(current, "table")?;
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
        let schema = required_str(current, "schema")?;
        let name = required_str(current, "name")?;
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
        let columns: Vec<Value> = rows.iter().map(|r| column_of(r, 0)).collect();
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
        Ok(Some(table_attributes(schema, name, columns, pk)))
    }

    fn create_table_sql(attrs: &Attributes, if_not_exists: bool) -> Result<String, ProviderError> {
        let table = format!(
            "{}.{}",
            ident(required_str(attrs, "schema")?),
            ident(required_str(attrs, "name")?)
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
        let schema = required_str(desired, "schema")?;
        let name = required_str(desired, "name")?;
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
        let schema = required_str(current, "schema")?;
        let table = required_str(current, "table")?;
        let policy = required_str(current, "policy")?;
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
        Ok(Some(row_security_attributes(
            current,
            (flags.get(0), flags.get(1)),
            p,
            0,
        )))
    }

    fn row_security_flags_sql(attrs: &Attributes, table: &str) -> String {
        format!(
            "ALTER TABLE {table} {} ROW LEVEL SECURITY; ALTER TABLE {table} {} ROW LEVEL SECURITY;",
            if attr_bool(attrs, "enabled") {
                "ENABLE"
            } else {
                "DISABLE"
            },
            if attr_bool(attrs, "forced") {
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
        let mut s = format!("TO {roles} USING {}", required_str(attrs, "using")?);
        let check = required_str(attrs, "with_check")?;
        if !check.is_empty() {
            s += &format!(" WITH CHECK {check}");
        }
        Ok(s)
    }

    fn create_row_security_sql(attrs: &Attributes, replace: bool) -> Result<String, ProviderError> {
        let table = format!(
            "{}.{}",
            ident(required_str(attrs, "schema")?),
            ident(required_str(attrs, "table")?)
        );
        let policy = ident(required_str(attrs, "policy")?);
        let mut sql = Self::row_security_flags_sql(attrs, &table);
        if replace {
            sql += &format!("DROP POLICY IF EXISTS {policy} ON {table};");
        }
        sql += &format!(
            "CREATE POLICY {policy} ON {table} AS PERMISSIVE FOR {} {};",
            required_str(attrs, "command")?,
            Self::policy_clauses(attrs)?
        );
        Ok(sql)
    }

    async fn delete_row_security(&self, current: &Attributes) -> Result<(), ProviderError> {
        let schema = required_str(current, "schema")?;
        let table_name = required_str(current, "table")?;
        if !self.table_exists(schema, table_name).await? {
            return Ok(());
        }
        let table = format!("{}.{}", ident(schema), ident(table_name));
        self.batch(&format!(
            "DROP POLICY IF EXISTS {} ON {table}; ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY; \
             ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;",
            ident(required_str(current, "policy")?)
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

// --- what a read answers, whether one resource is read or many at once ------------

pub(crate) fn schema_attributes(name: &str, comment: String) -> Attributes {
    Attributes::from([
        ("name".into(), json!(name)),
        ("comment".into(), json!(without_create_mark(&comment))),
    ])
}

/// A role from a `pg_roles` row whose flags start at column `first`: `rolcanlogin,
/// rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolinherit, rolconnlimit`.
pub(crate) fn role_attributes(name: &str, row: &tokio_postgres::Row, first: usize) -> Attributes {
    Attributes::from([
        ("name".into(), json!(name)),
        ("login".into(), json!(row.get::<_, bool>(first))),
        ("superuser".into(), json!(row.get::<_, bool>(first + 1))),
        ("create_db".into(), json!(row.get::<_, bool>(first + 2))),
        ("create_role".into(), json!(row.get::<_, bool>(first + 3))),
        ("bypass_rls".into(), json!(row.get::<_, bool>(first + 4))),
        ("inherit".into(), json!(row.get::<_, bool>(first + 5))),
        (
            "connection_limit".into(),
            json!(row.get::<_, i32>(first + 6)),
        ),
    ])
}

/// A grant with the privileges the role holds; gone when it holds none.
pub(crate) fn grant_attributes(current: &Attributes, present: Vec<String>) -> Option<Attributes> {
    if present.is_empty() {
        return None;
    }
    let mut attrs = current.clone();
    attrs.insert("privileges".into(), json!(present));
    Some(attrs)
}

/// A column from a row whose columns start at `first`: `attname, format_type,
/// attnotnull, default expression, attidentity`.
pub(crate) fn column_of(row: &tokio_postgres::Row, first: usize) -> Value {
    let identity: String = row.get(first + 4);
    column_json(
        row.get::<_, String>(first).as_str(),
        row.get::<_, String>(first + 1).as_str(),
        row.get(first + 2),
        row.get::<_, Option<String>>(first + 3).as_deref(),
        match identity.as_str() {
            "a" => Some("always"),
            "d" => Some("by default"),
            _ => None,
        },
    )
}

pub(crate) fn table_attributes(
    schema: &str,
    name: &str,
    columns: Vec<Value>,
    primary_key: Vec<String>,
) -> Attributes {
    Attributes::from([
        ("schema".into(), json!(schema)),
        ("name".into(), json!(name)),
        ("columns".into(), json!(columns)),
        ("primary_key".into(), json!(primary_key)),
    ])
}

/// Row-level security of `current`'s table: its (enabled, forced) flags and its
/// policy, from a `pg_policies` row whose columns start at `first`: `cmd, roles,
/// qual, with_check`.
pub(crate) fn row_security_attributes(
    current: &Attributes,
    (enabled, forced): (bool, bool),
    policy: &tokio_postgres::Row,
    first: usize,
) -> Attributes {
    let name = |k: &str| current.get(k).cloned().unwrap_or(Value::Null);
    Attributes::from([
        ("schema".into(), name("schema")),
        ("table".into(), name("table")),
        ("policy".into(), name("policy")),
        ("command".into(), json!(policy.get::<_, String>(first))),
        ("enabled".into(), json!(enabled)),
        ("forced".into(), json!(forced)),
        (
            "roles".into(),
            json!(policy.get::<_, Vec<String>>(first + 1)),
        ),
        ("using".into(), json!(policy.get::<_, String>(first + 2))),
        (
            "with_check".into(),
            json!(policy.get::<_, String>(first + 3)),
        ),
    ])
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

    /// In bulk: the catalog of every schema and role of the batch in eight queries
    /// (see [`super::catalog`]).
    async fn read_many(&self, reads: &[ReadRequest<'_>], _: ReadOptions) -> Vec<ReadResult> {
        match Catalog::read(self, reads).await {
            Ok(catalog) => reads
                .iter()
                .map(|(address, current)| catalog.answer(address.resource_type, current))
                .collect(),
            Err(e) => failed_batch(reads, &e),
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
            ResourceType::PostgresSchema => self.create_schema(a, mode).await?,
            ResourceType::PostgresRole => return self.create_role(a, mode).await,
            t @ (ResourceType::PostgresSchemaGrant | ResourceType::PostgresTableGrant) => {
                self.converge_grant(t, a).await?
            }
            ResourceType::PostgresTable => {
                let name = format!(
                    "{}.{}",
                    required_str(a, "schema")?,
                    required_str(a, "name")?
                );
                self.create_batch(
                    &Self::create_table_sql(a, false)?,
                    &Self::create_table_sql(a, true)?,
                    mode,
                    || format!("PostgreSQL table {name:?}"),
                )
                .await?;
                if mode.is_resume() {
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
        changed: &[String],
    ) -> Result<Attributes, ProviderError> {
        let a = &resource.attributes;
        match resource.address.resource_type {
            ResourceType::PostgresSchema => {
                self.batch(&format!(
                    "COMMENT ON SCHEMA {} IS {};",
                    ident(required_str(a, "name")?),
                    literal(required_str(a, "comment")?)
                ))
                .await?
            }
            ResourceType::PostgresRole => {
                // A password the plan changes (rotation, credentials delivered anew, a
                // role adopted from Terraform): a new one is set, and handed over.
                let rotate = changed.iter().any(|c| c == "password");
                let mut sql = format!(
                    "ALTER ROLE {} {}",
                    ident(required_str(a, "name")?),
                    Self::role_options(a)
                );
                let mut computed = Attributes::new();
                if rotate {
                    let (password, verifier) = new_password();
                    sql += &format!(" PASSWORD {}", literal(&verifier));
                    computed = generated_password(password);
                }
                self.batch(&(sql + ";")).await?;
                return Ok(computed);
            }
            t @ (ResourceType::PostgresSchemaGrant | ResourceType::PostgresTableGrant) => {
                self.converge_grant(t, a).await?
            }
            ResourceType::PostgresTable => self.update_table(a, current).await?,
            ResourceType::PostgresRowSecurity => {
                let table = format!(
                    "{}.{}",
                    ident(required_str(a, "schema")?),
                    ident(required_str(a, "table")?)
                );
                let mut sql = Self::row_security_flags_sql(a, &table);
                sql += &format!(
                    "ALTER POLICY {} ON {table} {};",
                    ident(required_str(a, "policy")?),
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
                    ident(required_str(current, "name")?)
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
                    ident(required_str(current, "schema")?),
                    ident(required_str(current, "name")?)
                ))
                .await
            }
            ResourceType::PostgresRowSecurity => self.delete_row_security(current).await,
            #[allow(unreachable_patterns)]
            other => Err(unsupported(other)),
        }
    }
}

/// A generated role password and its SCRAM-SHA-256 verifier, which is what the server
/// is sent: the plain password never reaches it, nor its logs.
fn new_password() -> (String, String) {
    let password = generate_password(32);
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    (password, verifier)
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
    fn a_create_mark_is_found_by_its_token_only_and_left_out_of_the_comment() {
        let token = CreateToken::issue();
        let marked = with_create_mark("Tenant a's data", token);
        assert!(token.is_in(&marked));
        assert!(!CreateToken::issue().is_in(&marked));
        assert_eq!(without_create_mark(&marked), "Tenant a's data");
        assert_eq!(without_create_mark("plain"), "plain");
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
}
