//! The platform's PostgreSQL: where it is ([`PostgresEndpoint`], the `[postgres]`
//! section of platform.toml), how the engine logs in ([`PostgresConfig`], completed
//! from the `PG*` variables), a pool of admin connections for the providers, single
//! connections as any role for the registry and the validation checks, and the
//! quoting and error mapping every caller needs.

use crate::environment::Environment;
use std::fmt;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::ServiceError;
use super::retry::RetryPolicy;
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

/// A pool of admin connections, opened on first use (see [`PostgresConfig::pool`]);
/// take one with [`pooled`], whose errors name the server.
#[derive(Clone)]
pub struct PostgresPool {
    pool: deadpool_postgres::Pool,
    /// `host:port`, for the error of a connection that cannot be opened.
    address: std::sync::Arc<str>,
}

impl fmt::Debug for PostgresPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresPool")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl PostgresConfig {
    /// The platform file's settings, completed from `PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGPASSWORD` and `PGDATABASE`.
    pub fn resolve(
        endpoint: &PostgresEndpoint,
        environment: &Environment,
    ) -> Result<Self, ServiceError> {
        let env = |name: &str| environment.get(name);
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
        let address = address_of(&config);
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| connect_error(&e, &address))?;
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
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(max_size.max(1))
            .build()
            .map_err(|e| ServiceError::Config(format!("cannot set up the PostgreSQL pool: {e}")))?;
        Ok(PostgresPool {
            pool,
            address: format!("{}:{}", self.host, self.port).into(),
        })
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
    pool.pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => connect_error(&e, &pool.address),
        other => ServiceError::Unreachable {
            service: SERVICE,
            detail: other.to_string(),
        },
    })
}

/// Runs `sql` (one or more statements) as one transaction that takes effect at most
/// once, however many attempts `retry` makes: for statements that must not run again
/// after an attempt whose answer was lost (a `CREATE` would then fail on its own
/// object, a `DROP OWNED BY` on a role the lost attempt dropped).
///
/// Each attempt opens a transaction and learns its id (`txid_current()`) before it
/// sends the statements and the `COMMIT`. If that answer does not come back (the
/// connection drops, the attempt times out), the next attempt asks the server what
/// became of that transaction (`txid_status`) instead of running the statements again:
/// committed is success, aborted runs them again, still in progress waits and asks
/// again. A statement the server refuses aborts the transaction, so its error is
/// returned as the outcome, with nothing changed.
pub async fn execute_once(
    pool: &PostgresPool,
    retry: &RetryPolicy,
    sql: &str,
) -> Result<(), ServiceError> {
    // The transaction of an attempt whose outcome is not known.
    let unsure: std::sync::Mutex<Option<i64>> = std::sync::Mutex::new(None);
    let unsure = &unsure;
    retry
        .run(SERVICE, || async move {
            let earlier = *unsure.lock().expect("not poisoned");
            if let Some(xid) = earlier {
                match transaction_status(pool, xid).await?.as_deref() {
                    Some("committed") => return Ok(()),
                    Some("in progress") => {
                        return Err(ServiceError::Api {
                            service: SERVICE,
                            code: "TransactionInProgress".into(),
                            message: format!(
                                "transaction {xid} of an earlier attempt has not ended yet"
                            ),
                            retryable: true,
                        });
                    }
                    // Aborted (or forgotten, which only an aborted one can be this soon).
                    _ => *unsure.lock().expect("not poisoned") = None,
                }
            }
            let mut connection = Detachable::new(pooled(pool).await?);
            let client = connection.client();
            let xid = begin(client).await?;
            *unsure.lock().expect("not poisoned") = Some(xid);
            match client.batch_execute(&format!("{sql};COMMIT")).await {
                Ok(()) => {
                    *unsure.lock().expect("not poisoned") = None;
                    connection.keep();
                    Ok(())
                }
                Err(e) if e.as_db_error().is_some() => {
                    // The server refused a statement: the transaction is aborted.
                    *unsure.lock().expect("not poisoned") = None;
                    if client.batch_execute("ROLLBACK").await.is_ok() {
                        connection.keep();
                    }
                    Err(db_error(&e))
                }
                Err(e) => Err(db_error(&e)),
            }
        })
        .await
}

/// Opens a transaction on `client` and returns its id.
async fn begin(client: &Client) -> Result<i64, ServiceError> {
    let messages = client
        .simple_query("BEGIN; SELECT txid_current()")
        .await
        .map_err(|e| db_error(&e))?;
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0)?.parse().ok(),
            _ => None,
        })
        .ok_or_else(|| ServiceError::Unreachable {
            service: SERVICE,
            detail: "the server did not say which transaction was opened".into(),
        })
}

/// `committed`, `aborted`, `in progress`, or `None` for a transaction too old to know.
async fn transaction_status(pool: &PostgresPool, xid: i64) -> Result<Option<String>, ServiceError> {
    let client = pooled(pool).await?;
    let row = client
        .query_one("SELECT txid_status($1)", &[&xid])
        .await
        .map_err(|e| db_error(&e))?;
    Ok(row.get(0))
}

/// A pooled connection that goes back to the pool only when [`Detachable::keep`] says
/// it is clean. An attempt that ends any other way (an error, a timeout that drops the
/// attempt) closes it instead, so that no transaction it left open is handed to the
/// next user of the pool; the server aborts such a transaction when the connection
/// closes.
struct Detachable(Option<deadpool_postgres::Object>);

impl Detachable {
    fn new(object: deadpool_postgres::Object) -> Self {
        Detachable(Some(object))
    }

    fn client(&self) -> &Client {
        self.0.as_ref().expect("held until dropped")
    }

    fn keep(&mut self) {
        self.0.take();
    }
}

impl Drop for Detachable {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

/// `host:port` of a connection's settings (the first host, as the driver tries it).
fn address_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// [`db_error`] of opening a connection to `address`: a connection that cannot be
/// opened names the server and the cause ("connection refused"), which the driver's
/// own text ("error connecting to server") leaves out.
fn connect_error(e: &tokio_postgres::Error, address: &str) -> ServiceError {
    match db_error(e) {
        ServiceError::Unreachable { service, detail } => ServiceError::Unreachable {
            service,
            detail: format!("{address}: {detail}"),
        },
        other => other,
    }
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
        // The driver's text is generic ("error connecting to server", "db error");
        // the cause is its source.
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !detail.contains(&text) {
                detail = format!("{detail}: {text}");
            }
            source = cause.source();
        }
        ServiceError::Unreachable {
            service: SERVICE,
            detail,
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

/// A connection that listens for notifications. Without one (it could not be opened,
/// or it dropped), callers fall back to polling: `next` then never returns.
pub struct Listener {
    _client: Option<tokio_postgres::Client>,
    rx: Option<mpsc::UnboundedReceiver<String>>,
}

impl Listener {
    /// A listener on `channels`. Never fails: when the connection cannot be opened, the
    /// listener is one that never returns a notification, and callers poll.
    pub async fn open(pg: &PostgresConfig, channels: &[&str]) -> Listener {
        match Self::try_open(pg, channels).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for notifications; polling instead");
                Listener {
                    _client: None,
                    rx: None,
                }
            }
        }
    }

    async fn try_open(
        pg: &PostgresConfig,
        channels: &[&str],
    ) -> Result<Listener, tokio_postgres::Error> {
        let config = pg.connect_config("tenantform listener");
        let (client, mut connection) = config.connect(NoTls).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_owned()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the notification connection closed; polling instead");
                        break;
                    }
                }
            }
        });
        for c in channels {
            client.batch_execute(&format!("LISTEN {c}")).await?;
        }
        Ok(Listener {
            _client: Some(client),
            rx: Some(rx),
        })
    }

    /// Waits until a notification whose payload starts with `prefix` comes, or
    /// `at_most` has passed: the pause of a follower that polls and wakes early when
    /// told (it reads again either way, so a lost notification costs `at_most`).
    pub async fn wait_for(&mut self, prefix: &str, at_most: Duration) {
        let deadline = tokio::time::sleep(at_most);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                payload = self.next() => if payload.is_some_and(|p| p.starts_with(prefix)) { break },
                _ = &mut deadline => break,
            }
        }
    }

    /// The next notification's payload.
    pub async fn next(&mut self) -> Option<String> {
        match &mut self.rx {
            Some(rx) => match rx.recv().await {
                Some(p) => Some(p),
                None => {
                    self.rx = None;
                    std::future::pending().await
                }
            },
            None => std::future::pending().await,
        }
    }
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
