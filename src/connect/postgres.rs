//! The platform's PostgreSQL: where it is ([`PostgresEndpoint`], the `[postgres]`
//! section of platform.toml), how the engine logs in ([`PostgresConfig`], completed
//! from the `PG*` variables), a pool of admin connections for the providers, single
//! connections as any role for the registry and the validation checks, and the
//! quoting and error mapping every caller needs.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::ServiceError;
use crate::secret::Secret;

const SERVICE: &str = "PostgreSQL";

/// The admin connection to the platform's PostgreSQL, as `[postgres]` in platform.toml
/// states it. Every field is optional: what is not set here comes from the standard
/// `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD` and `PGDATABASE` variables, so that
/// `psql` and the engine see the same server.
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

/// A pool of admin connections, opened on first use (see [`PostgresConfig::pool`]).
pub type PostgresPool = deadpool_postgres::Pool;

impl PostgresConfig {
    /// The platform file's settings, completed from `PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGPASSWORD` and `PGDATABASE`.
    pub fn resolve(endpoint: &PostgresEndpoint) -> Result<Self, ServiceError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let missing = |what: &str, var: &str| {
            ServiceError::Config(format!(
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
                    ServiceError::Config(format!("PGPORT={p:?} is not a port number"))
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

    /// One connection as `user` (the admin when `None`), for code that needs the
    /// platform database outside the providers' pool: the registry, validation checks.
    pub async fn connect(&self, user: Option<(&str, &str)>) -> Result<Client, ServiceError> {
        let mut config = self.connect_config("tenantform");
        if let Some((user, password)) = user {
            config.user(user).password(password);
        }
        Self::open(config).await
    }

    /// One admin connection that `pg_stat_activity` shows as `application` (the
    /// registry's reads, the runs queue), apart from the providers' connections.
    pub async fn connect_as(&self, application: &str) -> Result<Client, ServiceError> {
        Self::open(self.connect_config(application)).await
    }

    async fn open(config: tokio_postgres::Config) -> Result<Client, ServiceError> {
        let (client, connection) = config.connect(NoTls).await.map_err(|e| db_error(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }

    /// A pool of at most `max_size` admin connections, opened on first use. A
    /// connection that closed (a restarted server, an idle timeout) is dropped when it
    /// is next handed out, and a new one opened in its place.
    pub fn pool(&self, max_size: usize) -> Result<PostgresPool, ServiceError> {
        self.pool_as("tenantform", max_size)
    }

    /// [`PostgresConfig::pool`], its connections shown as `application` in
    /// `pg_stat_activity` (the state store's, apart from the providers').
    pub fn pool_as(
        &self,
        application: &str,
        max_size: usize,
    ) -> Result<PostgresPool, ServiceError> {
        let manager = deadpool_postgres::Manager::from_config(
            self.connect_config(application),
            NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        deadpool_postgres::Pool::builder(manager)
            .max_size(max_size.max(1))
            .build()
            .map_err(|e| ServiceError::Config(format!("cannot set up the PostgreSQL pool: {e}")))
    }

    /// The driver's settings of a connection named `application`, for a caller that
    /// drives the connection itself (a LISTEN loop).
    pub fn connect_config(&self, application: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.database)
            .application_name(application)
            .connect_timeout(Duration::from_secs(10));
        if let Some(p) = &self.password {
            c.password(p.expose());
        }
        c
    }
}

/// A connection out of `pool`.
pub async fn pooled(pool: &PostgresPool) -> Result<deadpool_postgres::Object, ServiceError> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => db_error(&e),
        other => ServiceError::Unreachable {
            service: SERVICE,
            detail: other.to_string(),
        },
    })
}

/// Maps a driver error to a service error; serialization conflicts, dropped
/// connections and concurrent catalog updates are retryable.
pub fn db_error(e: &tokio_postgres::Error) -> ServiceError {
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
        ServiceError::Api {
            service: SERVICE,
            code: code.code().to_owned(),
            message: db.message().to_owned(),
            retryable,
        }
    } else {
        ServiceError::Unreachable {
            service: SERVICE,
            detail: e.to_string(),
        }
    }
}

/// Brings one migration track of `schema` up to date: applies the `migrations`
/// (version, SQL) that table `<schema>.<track>` does not record yet, in order, in one
/// transaction. The one migration routine of every schema tenantform owns (the
/// registry's and the runs' tracks in `tenantform`, the state's in `tenantform_state`).
///
/// - Up to date (every call but the first of a database): one read, no lock and no
///   DDL, which DDL locks and event triggers would make costly.
/// - Otherwise one process migrates at a time: the transaction holds an advisory lock
///   named after the schema (one for every track of it: they share the schema they
///   create), released at commit, so it is safe on a pooled connection.
/// - A track newer than `migrations` knows is an error and is never touched.
pub async fn migrate(
    client: &mut Client,
    schema: &str,
    track: &str,
    migrations: &[(i32, &str)],
) -> Result<(), ServiceError> {
    let newest = migrations.last().map_or(0, |m| m.0);
    let table = format!("{schema}.{track}");
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(|e| db_error(&e))?
        .get(0);
    if exists {
        let current: Option<i32> = client
            .query_one(&format!("SELECT max(version) FROM {table}"), &[])
            .await
            .map_err(|e| db_error(&e))?
            .get(0);
        if current == Some(newest) {
            return Ok(());
        }
    }
    let tx = client.transaction().await.map_err(|e| db_error(&e))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("{schema}.migrations")],
    )
    .await
    .map_err(|e| db_error(&e))?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}; \
         CREATE TABLE IF NOT EXISTS {table} \
           (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    ))
    .await
    .map_err(|e| db_error(&e))?;
    let applied: Option<i32> = tx
        .query_one(&format!("SELECT max(version) FROM {table}"), &[])
        .await
        .map_err(|e| db_error(&e))?
        .get(0);
    let applied = applied.unwrap_or(0);
    if applied > newest {
        return Err(ServiceError::Config(format!(
            "schema {schema} is at version {applied} of {track}, newer than this tenantform knows ({newest}); use a newer tenantform"
        )));
    }
    for (version, sql) in migrations.iter().filter(|m| m.0 > applied) {
        tx.batch_execute(sql).await.map_err(|e| db_error(&e))?;
        tx.execute(
            &format!("INSERT INTO {table} (version) VALUES ($1)"),
            &[version],
        )
        .await
        .map_err(|e| db_error(&e))?;
    }
    tx.commit().await.map_err(|e| db_error(&e))
}

/// `"name"` with embedded quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled (standard_conforming_strings is on).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
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
