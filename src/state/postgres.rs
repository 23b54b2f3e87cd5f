//! The `postgres` state backend: every tenant's state, its last versions and its lock
//! in schema `tenantform_state` of the platform database, so that any number of
//! machines (service replicas, CI runners that share no disk) work on one truth.
//!
//! ```text
//! tenantform_state.states    one row per tenant: format_version, serial, lineage,
//!                            document (jsonb), written_at, written_by (the writer's lock)
//! tenantform_state.versions  the last `[state] history` versions of each tenant
//! tenantform_state.locks     one row per locked tenant: lock id, holder (operation, pid,
//!                            host, user, run id and attempt), since, expires_at
//! ```
//!
//! # Guarantees
//!
//! - Taking a lock is one statement: insert the tenant's row, or replace one whose
//!   lease has expired. Two holders never both succeed; a holder that died is taken
//!   over once its lease expires (`[state] lease_ttl_seconds` after its last renewal).
//! - While its [`super::StateLock`] lives, a heartbeat task renews the lease every third
//!   of its TTL. A renewal that finds the row gone or someone else's marks the lock
//!   lost ([`super::StateLock::is_lost`]).
//! - Every write is one statement: a compare-and-swap on the serial and lineage the
//!   writer holds, conditional on the writer's lock id still being the tenant's lock
//!   row, which the statement locks (`FOR SHARE`). A takeover therefore either waits for
//!   a write in progress or is seen by it: a holder that was paused past its lease and
//!   taken over (the fence) has every write refused, and nothing it writes lands after
//!   the new holder read the state. The version is recorded in the same statement, and
//!   versions beyond the history are pruned there too.
//! - Times are the database's (`now()`), never a machine's clock.
//! - Connections are pooled, and nothing session-scoped is ever left on one: no session
//!   advisory locks (migrations take a transaction-scoped one), no `SET`.
//!
//! # Caveats
//!
//! - The fence protects state, not the endpoints: a provider call that was in flight
//!   when its holder was paused still reaches its endpoint. A holder should stop
//!   changing anything once [`super::StateLock::is_lost`] says so, and may call
//!   [`super::StateLock::ensure_held`] before a change that must not run without the lock.
//! - A dropped lock is released by a background task; [`PgStore::settle`] waits for it
//!   (the engine does, before it returns). If the process exits first, the lock is
//!   taken over when its lease expires.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::{Json, ToSql};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::lock::{Held, LockInfo, LockRequest, StateLock};
use super::{
    Encryption, STATE_FORMAT_VERSION, StateError, StateVersion, TenantState, Unreadable,
    check_bound, check_earlier_copy, decode_state,
};
use crate::connect::postgres::{PostgresConfig, PostgresPool, db_error, migrate, pooled};
use crate::resource::TenantId;

/// The schema the state lives in.
pub const SCHEMA: &str = "tenantform_state";

/// Migrations, applied in order, each once. Never edit one that shipped: add another.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
CREATE TABLE tenantform_state.states (
    tenant text PRIMARY KEY,
    format_version integer NOT NULL,
    serial bigint NOT NULL CHECK (serial > 0),
    lineage uuid NOT NULL,
    document jsonb NOT NULL,
    written_at timestamptz NOT NULL,
    written_by jsonb NOT NULL
);

CREATE TABLE tenantform_state.versions (
    id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    serial bigint NOT NULL,
    lineage uuid NOT NULL,
    format_version integer NOT NULL,
    document jsonb NOT NULL,
    written_at timestamptz NOT NULL,
    written_by jsonb NOT NULL,
    UNIQUE (tenant, lineage, serial)
);
CREATE INDEX versions_by_tenant ON tenantform_state.versions (tenant, id);

CREATE TABLE tenantform_state.locks (
    tenant text PRIMARY KEY,
    lock_id uuid NOT NULL,
    operation text NOT NULL,
    pid integer NOT NULL,
    host text NOT NULL,
    username text NOT NULL,
    run_id uuid,
    run_attempt integer,
    since timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    renewed_at timestamptz NOT NULL
);

-- State holds secrets (generated passwords): only the platform's admin reads it.
REVOKE ALL ON SCHEMA tenantform_state FROM PUBLIC;
"#,
)];

/// Connections the store opens at most. Writes are single statements of a few
/// milliseconds; more connections would only take server slots from the providers.
const MAX_CONNECTIONS: usize = 4;

/// How often a waiting lock request looks again.
const LOCK_POLL: Duration = Duration::from_millis(200);

/// The writer's lock, locked for the rest of the statement (`FOR SHARE`): a takeover
/// waits for the statement, and the statement sees a takeover that committed before it.
/// `$1` is the tenant, `$2` the writer's lock id.
const FENCE: &str = "fence AS (SELECT lock_id FROM tenantform_state.locks \
                     WHERE tenant = $1 AND lock_id = $2 FOR SHARE)";

/// The columns a [`LockInfo`] is read from, in [`lock_info`]'s order.
const LOCK_COLUMNS: &str =
    "lock_id, operation, pid, host, username, run_id, run_attempt, since, expires_at";

/// Tenant state in PostgreSQL.
pub struct PgStore {
    pool: PostgresPool,
    where_: String,
    history: u32,
    lease_ttl: Duration,
    migrated: tokio::sync::OnceCell<()>,
    /// Releases of dropped locks still in flight.
    releases: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    encryption: Arc<Encryption>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("where", &self.where_)
            .field("history", &self.history)
            .field("lease_ttl", &self.lease_ttl)
            .finish()
    }
}

fn database(action: &str, e: impl fmt::Display) -> StateError {
    StateError::Database {
        action: action.to_owned(),
        detail: e.to_string(),
    }
}

fn query_error(action: &'static str) -> impl Fn(tokio_postgres::Error) -> StateError {
    move |e| database(action, db_error(&e))
}

impl PgStore {
    /// A store in `config`'s database keeping `history` versions per tenant, with
    /// leases of `lease_ttl`. Connects on first use.
    pub fn new(
        config: &PostgresConfig,
        history: u32,
        lease_ttl: Duration,
    ) -> Result<PgStore, StateError> {
        let where_ = format!(
            "PostgreSQL schema {SCHEMA} of database {} on {}:{}",
            config.database, config.host, config.port
        );
        let pool = config
            .pool_as("tenantform state", MAX_CONNECTIONS)
            .map_err(|e| StateError::Config {
                backend: "postgres",
                detail: e.to_string(),
            })?;
        Ok(PgStore {
            pool,
            where_,
            history: history.max(1),
            lease_ttl: lease_ttl.max(Duration::from_secs(1)),
            migrated: tokio::sync::OnceCell::new(),
            releases: Mutex::new(Vec::new()),
            encryption: Arc::new(Encryption::plain()),
        })
    }

    /// The same store, its documents sealed and opened with `encryption`.
    pub fn with_encryption(self, encryption: Arc<Encryption>) -> Self {
        PgStore { encryption, ..self }
    }

    /// A state's document as stored: the state, or its envelope when encryption is on.
    fn document(&self, state: &TenantState) -> Result<serde_json::Value, StateError> {
        if !self.encryption.seals() {
            return Ok(serde_json::to_value(state).expect("state serializes"));
        }
        let json = serde_json::to_vec(state).expect("state serializes");
        let binding =
            super::encryption::Binding::state(state.tenant.as_str(), state.lineage, state.serial);
        let sealed = self
            .encryption
            .seal(&row_name(&state.tenant), binding, &json)?;
        Ok(serde_json::from_slice(&sealed).expect("an envelope is JSON"))
    }

    /// A state read from a row (its format version, document, lineage and serial),
    /// opened and checked like a state file.
    fn stored_state(
        &self,
        tenant: &TenantId,
        format_version: i32,
        document: String,
        lineage: Uuid,
        serial: i64,
    ) -> Result<TenantState, StateError> {
        let what = row_name(tenant);
        let expected = super::encryption::Expected {
            content: "state",
            tenant: Some(tenant.as_str()),
            lineage: Some(lineage),
            serial: Some(serial as u64),
        };
        let (plain, binding) = self
            .encryption
            .open(&what, &expected, document.as_bytes())?;
        let state = stored_state(tenant, format_version, &plain)?;
        if let Some(binding) = &binding {
            check_bound(&what, binding, &state)?;
        }
        Ok(state)
    }

    /// Where the state is, for messages.
    pub fn describe(&self) -> &str {
        &self.where_
    }

    /// How long a lock lease lasts without renewal.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// A pooled connection, the schema brought up to date on the first.
    async fn client(&self) -> Result<deadpool_postgres::Object, StateError> {
        self.migrated
            .get_or_try_init(|| async {
                let mut client = pooled(&self.pool)
                    .await
                    .map_err(|e| database("connect", e))?;
                migrate(&mut client, SCHEMA, "migrations", MIGRATIONS)
                    .await
                    .map_err(|e| database("create or migrate the schema", e))
            })
            .await?;
        pooled(&self.pool).await.map_err(|e| database("connect", e))
    }

    /// Runs one statement on a pooled connection; `action` says what it does, in errors.
    async fn query(
        &self,
        action: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StateError> {
        let client = self.client().await?;
        client.query(sql, params).await.map_err(query_error(action))
    }

    async fn query_opt(
        &self,
        action: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StateError> {
        Ok(self.query(action, sql, params).await?.into_iter().next())
    }

    /// A statement that returns exactly one row (a `SELECT` of counts).
    async fn query_one(
        &self,
        action: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, StateError> {
        self.query_opt(action, sql, params)
            .await?
            .ok_or_else(|| database(action, "the statement returned no row"))
    }

    async fn execute(
        &self,
        action: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StateError> {
        let client = self.client().await?;
        client
            .execute(sql, params)
            .await
            .map_err(query_error(action))
    }

    /// The tenants that have a state row, sorted.
    pub async fn tenants(&self) -> Result<Vec<TenantId>, StateError> {
        let rows = self
            .query(
                "list the tenants",
                &format!("SELECT tenant FROM {SCHEMA}.states ORDER BY tenant"),
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let name: String = r.get(0);
                name.parse::<TenantId>()
                    .map_err(|detail| StateError::Database {
                        action: "list the tenants".into(),
                        detail: format!("row {name:?} is not a tenant id: {detail}"),
                    })
            })
            .collect()
    }

    /// The state of `tenant`, or `None` when it has none.
    pub async fn load(&self, tenant: &TenantId) -> Result<Option<TenantState>, StateError> {
        let row = self
            .query_opt(
                "read the state",
                &format!(
                    "SELECT s.format_version, s.document::text, s.lineage, s.serial, \
                       (SELECT max(v.serial) FROM {SCHEMA}.versions v \
                        WHERE v.tenant = s.tenant AND v.lineage = s.lineage) \
                     FROM {SCHEMA}.states s WHERE s.tenant = $1"
                ),
                &[&tenant.as_str()],
            )
            .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let (serial, newest): (i64, Option<i64>) = (r.get(3), r.get(4));
        let state = self.stored_state(tenant, r.get(0), r.get(1), r.get(2), serial)?;
        // A whole row put back from an older version (serial column included) is
        // consistent in itself; the newest version kept says it is old.
        if let Some(newest) = newest.filter(|n| *n > serial)
            && self.encryption.seals()
        {
            return Err(StateError::Encryption(
                super::encryption::EncryptionError::Misplaced {
                    what: row_name(tenant),
                    expected: format!("state of tenant {tenant} serial {newest} or later"),
                    found: format!("state serial {serial}"),
                },
            ));
        }
        Ok(Some(state))
    }

    /// Takes the tenant's lock (see the module doc), waiting up to `request.timeout`.
    pub async fn lock(
        self: &Arc<Self>,
        tenant: &TenantId,
        request: &LockRequest,
    ) -> Result<StateLock, StateError> {
        let started = Instant::now();
        let mut info = LockInfo::of_this_process(request);
        let ttl = self.lease_ttl.as_secs_f64();
        let (run_id, run_attempt) = (request.run.map(|r| r.id), request.run.map(|r| r.attempt));
        loop {
            let row = self
                .query_opt(
                    "take the lock",
                        &format!(
                            "WITH previous AS ( \
                               SELECT {LOCK_COLUMNS} FROM {SCHEMA}.locks WHERE tenant = $1 \
                             ), taken AS ( \
                               INSERT INTO {SCHEMA}.locks AS l (tenant, lock_id, operation, pid, host, \
                                 username, run_id, run_attempt, since, expires_at, renewed_at) \
                               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), \
                                 now() + make_interval(secs => $9), now()) \
                               ON CONFLICT (tenant) DO UPDATE SET lock_id = EXCLUDED.lock_id, \
                                 operation = EXCLUDED.operation, pid = EXCLUDED.pid, \
                                 host = EXCLUDED.host, username = EXCLUDED.username, \
                                 run_id = EXCLUDED.run_id, run_attempt = EXCLUDED.run_attempt, \
                                 since = EXCLUDED.since, expires_at = EXCLUDED.expires_at, \
                                 renewed_at = EXCLUDED.renewed_at \
                               WHERE l.expires_at < now() \
                               RETURNING since, expires_at \
                             ) \
                             SELECT t.since, t.expires_at, p.* FROM taken t LEFT JOIN previous p ON true"
                        ),
                        &[
                            &tenant.as_str(),
                            &info.id,
                            &info.operation,
                            &(info.pid as i32),
                            &info.host,
                            &info.user,
                            &run_id,
                            &run_attempt,
                            &ttl,
                        ],
                )
                .await?;
            if let Some(row) = row {
                info.since = row.get(0);
                info.expires_at = Some(row.get(1));
                if row.get::<_, Option<Uuid>>(2).is_some() {
                    let previous = lock_info(&row, 2);
                    tracing::warn!(
                        %tenant,
                        previous = %previous,
                        "took over a lock whose holder let its lease expire"
                    );
                }
                let lease = Lease::start(self.clone(), tenant.clone(), info.id);
                return Ok(StateLock::new(tenant.clone(), info, Held::Lease(lease)));
            }
            let Some(holder) = self.holder(tenant).await? else {
                // Released between the two statements: try again at once.
                continue;
            };
            if started.elapsed() >= request.timeout {
                return Err(StateError::Locked {
                    tenant: tenant.clone(),
                    holder: Box::new(holder),
                });
            }
            let left = request.timeout.saturating_sub(started.elapsed());
            tokio::time::sleep(LOCK_POLL.min(left)).await;
        }
    }

    /// Who holds the tenant's lock; an expired lease still counts until it is taken
    /// over (its [`LockInfo::expires_at`] says so).
    pub async fn holder(&self, tenant: &TenantId) -> Result<Option<LockInfo>, StateError> {
        let row = self
            .query_opt(
                "read the lock",
                &format!("SELECT {LOCK_COLUMNS} FROM {SCHEMA}.locks WHERE tenant = $1"),
                &[&tenant.as_str()],
            )
            .await?;
        Ok(row.map(|r| lock_info(&r, 0)))
    }

    /// Deletes the tenant's lock row if `lock_id` is its id.
    pub async fn force_unlock(
        &self,
        tenant: &TenantId,
        lock_id: &str,
    ) -> Result<LockInfo, StateError> {
        let holder = self
            .holder(tenant)
            .await?
            .ok_or_else(|| StateError::NotLocked {
                tenant: tenant.clone(),
            })?;
        let mismatch = |holder: LockInfo| StateError::LockIdMismatch {
            tenant: tenant.clone(),
            given: lock_id.to_owned(),
            holder: Box::new(holder),
        };
        let Ok(id) = lock_id.parse::<Uuid>() else {
            return Err(mismatch(holder));
        };
        let row = self
            .query_opt(
                "break the lock",
                &format!(
                    "DELETE FROM {SCHEMA}.locks WHERE tenant = $1 AND lock_id = $2 RETURNING {LOCK_COLUMNS}"
                ),
                &[&tenant.as_str(), &id],
            )
            .await?;
        match row {
            Some(r) => Ok(lock_info(&r, 0)),
            None => match self.holder(tenant).await? {
                Some(now) => Err(mismatch(now)),
                None => Err(StateError::NotLocked {
                    tenant: tenant.clone(),
                }),
            },
        }
    }

    /// Writes `state` as the next serial (see the module doc for the fence).
    pub async fn write(
        &self,
        lock: &StateLock,
        lease: &Lease,
        state: &mut TenantState,
    ) -> Result<(), StateError> {
        let read = state.serial;
        state.serial += 1;
        state.updated_at = Utc::now();
        state.format_version = STATE_FORMAT_VERSION;
        let result = self.swap(lock, lease, state, read).await;
        if result.is_err() {
            state.serial = read;
        }
        result
    }

    async fn swap(
        &self,
        lock: &StateLock,
        lease: &Lease,
        state: &TenantState,
        read: u64,
    ) -> Result<(), StateError> {
        let tenant = &state.tenant;
        let row = self
            .query_one(
                "write the state",
                    &format!(
                        "WITH {FENCE}, written AS ( \
                           INSERT INTO {SCHEMA}.states AS s \
                             (tenant, format_version, serial, lineage, document, written_at, written_by) \
                           SELECT $1::text, $3::integer, $4::bigint, $5::uuid, $6::jsonb, now(), $7::jsonb FROM fence \
                           ON CONFLICT (tenant) DO UPDATE SET \
                             format_version = EXCLUDED.format_version, serial = EXCLUDED.serial, \
                             document = EXCLUDED.document, written_at = EXCLUDED.written_at, \
                             written_by = EXCLUDED.written_by \
                           WHERE s.serial = $8 AND s.lineage = EXCLUDED.lineage \
                           RETURNING s.tenant, s.serial, s.lineage, s.format_version, s.document, \
                             s.written_at, s.written_by \
                         ), version AS ( \
                           INSERT INTO {SCHEMA}.versions \
                             (tenant, serial, lineage, format_version, document, written_at, written_by) \
                           SELECT * FROM written \
                           RETURNING id \
                         ), pruned AS ( \
                           DELETE FROM {SCHEMA}.versions v \
                           WHERE v.tenant = $1 AND EXISTS (SELECT 1 FROM version) \
                             AND v.id <= (SELECT id FROM {SCHEMA}.versions WHERE tenant = $1 \
                                          ORDER BY id DESC OFFSET $9 LIMIT 1) \
                         ) \
                         SELECT (SELECT count(*) FROM fence), (SELECT count(*) FROM written)"
                    ),
                    &[
                        &tenant.as_str(),
                        &lock.info().id,
                        &(state.format_version as i32),
                        &(state.serial as i64),
                        &state.lineage,
                        &Json(self.document(state)?),
                        &Json(&written_by(lock.info())),
                        &(read as i64),
                        &(i64::from(self.history) - 1),
                    ],
            )
            .await?;
        let (fenced_in, written): (i64, i64) = (row.get(0), row.get(1));
        if written == 1 {
            return Ok(());
        }
        if fenced_in == 0 {
            return Err(self.fenced(tenant, lease).await);
        }
        Err(StateError::Moved {
            tenant: tenant.clone(),
            read,
            current: self.describe_current(tenant).await,
        })
    }

    /// The error of a holder whose lock is not the tenant's lock any more.
    async fn fenced(&self, tenant: &TenantId, lease: &Lease) -> StateError {
        lease.lost.store(true, Ordering::SeqCst);
        let now = match self.holder(tenant).await {
            Ok(Some(holder)) => format!("its lease expired and {holder} took it over"),
            Ok(None) => "it was broken (force-unlock) or released; nobody holds it now".into(),
            Err(e) => format!("who holds it now cannot be read: {e}"),
        };
        StateError::Fenced {
            tenant: tenant.clone(),
            lock_id: lease.id,
            now,
        }
    }

    /// The tenant's current state in words: serial, lineage, writer and time.
    async fn describe_current(&self, tenant: &TenantId) -> String {
        let row = self
            .query_opt(
                "read the state",
                &format!(
                    "SELECT serial, lineage, written_at, written_by::text FROM {SCHEMA}.states WHERE tenant = $1"
                ),
                &[&tenant.as_str()],
            )
            .await;
        match row {
            Ok(Some(r)) => {
                let serial: i64 = r.get(0);
                let lineage: Uuid = r.get(1);
                let at: DateTime<Utc> = r.get(2);
                let by = writer(r.get(3))
                    .map(|w| w.to_string())
                    .unwrap_or_else(|| "an unknown writer".into());
                format!(
                    "serial {serial} of lineage {lineage}, written by {by} at {}",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            }
            Ok(None) => "removed (no state)".into(),
            Err(e) => format!("unreadable ({e})"),
        }
    }

    /// Deletes the tenant's state row (its versions stay, as the record of what it
    /// had), fenced like a write.
    pub async fn remove(&self, lock: &StateLock, state: &TenantState) -> Result<(), StateError> {
        let tenant = &state.tenant;
        let lease = lock.held_lease()?;
        let row = self
            .query_one(
                "remove the state",
                &format!(
                    "WITH {FENCE}, gone AS ( \
                           DELETE FROM {SCHEMA}.states \
                           WHERE tenant = $1 AND serial = $3 AND EXISTS (SELECT 1 FROM fence) \
                           RETURNING 1 \
                         ) \
                         SELECT (SELECT count(*) FROM fence), (SELECT count(*) FROM gone), \
                           (SELECT count(*) FROM {SCHEMA}.states WHERE tenant = $1)"
                ),
                &[&tenant.as_str(), &lock.info().id, &(state.serial as i64)],
            )
            .await?;
        let (fenced_in, gone, existed): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if fenced_in == 0 {
            return Err(self.fenced(tenant, lease).await);
        }
        if gone == 1 || existed == 0 {
            return Ok(());
        }
        Err(StateError::Moved {
            tenant: tenant.clone(),
            read: state.serial,
            current: self.describe_current(tenant).await,
        })
    }

    /// The versions kept, newest first, with their states.
    pub async fn history(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<(StateVersion, TenantState)>, StateError> {
        let rows = self
            .query(
                "read the state history",
                &format!(
                    "SELECT v.serial, v.lineage, v.written_at, v.written_by::text, \
                       (s.serial = v.serial AND s.lineage = v.lineage) IS TRUE, \
                       v.format_version, v.document::text \
                     FROM {SCHEMA}.versions v LEFT JOIN {SCHEMA}.states s ON s.tenant = v.tenant \
                     WHERE v.tenant = $1 ORDER BY v.id DESC"
                ),
                &[&tenant.as_str()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let version = StateVersion {
                    serial: r.get::<_, i64>(0) as u64,
                    lineage: r.get(1),
                    written_at: r.get(2),
                    written_by: writer(r.get(3)),
                    current: r.get(4),
                };
                let state = self.stored_state(tenant, r.get(5), r.get(6), r.get(1), r.get(0))?;
                Ok((version, state))
            })
            .collect()
    }

    /// Writes states moved here from elsewhere, oldest first, with their own serials,
    /// in one transaction under `lock`: the versions, and the last as the state. The
    /// tenant must have no state here, or an earlier one of the same lineage.
    pub async fn import(
        &self,
        lock: &StateLock,
        versions: &[(StateVersion, TenantState)],
    ) -> Result<(), StateError> {
        let Some((_, current)) = versions.last() else {
            return Ok(());
        };
        let tenant = &current.tenant;
        let lease = lock.held_lease()?;
        let fenced_in = self.import_fenced(lock, versions, current).await?;
        if !fenced_in {
            return Err(self.fenced(tenant, lease).await);
        }
        Ok(())
    }

    /// [`PgStore::import`]'s transaction; `false` when the lock is not the tenant's.
    async fn import_fenced(
        &self,
        lock: &StateLock,
        versions: &[(StateVersion, TenantState)],
        current: &TenantState,
    ) -> Result<bool, StateError> {
        let tenant = &current.tenant;
        let failed = query_error("move the state");
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(&failed)?;
        let fence = tx
            .query_opt(
                &format!("WITH {FENCE} SELECT 1 FROM fence"),
                &[&tenant.as_str(), &lock.info().id],
            )
            .await
            .map_err(&failed)?;
        if fence.is_none() {
            return Ok(false);
        }
        let existing = tx
            .query_opt(
                &format!(
                    "SELECT format_version, document::text, lineage, serial FROM {SCHEMA}.states WHERE tenant = $1 FOR UPDATE"
                ),
                &[&tenant.as_str()],
            )
            .await
            .map_err(&failed)?;
        if let Some(r) = existing {
            let existing = self.stored_state(tenant, r.get(0), r.get(1), r.get(2), r.get(3))?;
            check_earlier_copy(tenant, &existing, current, &self.where_)?;
        }
        let writer_of = |v: &StateVersion| {
            v.written_by
                .clone()
                .unwrap_or_else(|| written_by(lock.info()))
        };
        for (version, state) in versions {
            tx.execute(
                &format!(
                    "INSERT INTO {SCHEMA}.versions \
                       (tenant, serial, lineage, format_version, document, written_at, written_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (tenant, lineage, serial) DO NOTHING"
                ),
                &[
                    &tenant.as_str(),
                    &(state.serial as i64),
                    &state.lineage,
                    &(state.format_version as i32),
                    &Json(self.document(state)?),
                    &version.written_at,
                    &Json(&writer_of(version)),
                ],
            )
            .await
            .map_err(&failed)?;
        }
        let (version, _) = versions.last().expect("not empty");
        tx.execute(
            &format!(
                "INSERT INTO {SCHEMA}.states AS s \
                   (tenant, format_version, serial, lineage, document, written_at, written_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (tenant) DO UPDATE SET format_version = EXCLUDED.format_version, \
                   serial = EXCLUDED.serial, lineage = EXCLUDED.lineage, document = EXCLUDED.document, \
                   written_at = EXCLUDED.written_at, written_by = EXCLUDED.written_by"
            ),
            &[
                &tenant.as_str(),
                &(current.format_version as i32),
                &(current.serial as i64),
                &current.lineage,
                &Json(self.document(current)?),
                &version.written_at,
                &Json(&writer_of(version)),
            ],
        )
        .await
        .map_err(&failed)?;
        tx.execute(
            &format!(
                "DELETE FROM {SCHEMA}.versions WHERE tenant = $1 AND id < ( \
                   SELECT id FROM {SCHEMA}.versions WHERE tenant = $1 \
                   ORDER BY id DESC OFFSET $2 LIMIT 1)"
            ),
            &[&tenant.as_str(), &(i64::from(self.history) - 1)],
        )
        .await
        .map_err(&failed)?;
        tx.commit().await.map_err(&failed)?;
        Ok(true)
    }

    /// Renews the lease `id` of `tenant`; `false` when the row is gone or not ours.
    async fn renew(&self, tenant: &TenantId, id: Uuid) -> Result<bool, StateError> {
        let n = self
            .execute(
                "renew the lock",
                &format!(
                    "UPDATE {SCHEMA}.locks SET expires_at = now() + make_interval(secs => $3), \
                       renewed_at = now() \
                     WHERE tenant = $1 AND lock_id = $2"
                ),
                &[&tenant.as_str(), &id, &self.lease_ttl.as_secs_f64()],
            )
            .await?;
        Ok(n == 1)
    }

    async fn delete_lock(&self, tenant: &TenantId, id: Uuid) -> Result<(), StateError> {
        let client = self.client().await?;
        client
            .execute(
                &format!("DELETE FROM {SCHEMA}.locks WHERE tenant = $1 AND lock_id = $2"),
                &[&tenant.as_str(), &id],
            )
            .await
            .map_err(query_error("release the lock"))?;
        Ok(())
    }

    /// Waits until the locks dropped so far are released.
    pub async fn settle(&self) {
        loop {
            let pending = std::mem::take(&mut *self.releases.lock().expect("releases lock"));
            if pending.is_empty() {
                return;
            }
            for task in pending {
                let _ = task.await;
            }
        }
    }
}

/// How errors name a tenant's row.
fn row_name(tenant: &TenantId) -> String {
    format!("the state of tenant {tenant} in PostgreSQL ({SCHEMA}.states)")
}

/// A state read from a row's plain document, checked like a state file.
fn stored_state(
    tenant: &TenantId,
    format_version: i32,
    document: &[u8],
) -> Result<TenantState, StateError> {
    if format_version > STATE_FORMAT_VERSION as i32 {
        return Err(StateError::StoredNewerFormat {
            tenant: tenant.clone(),
            found: format_version as u64,
        });
    }
    decode_state(document, tenant).map_err(|u| match u {
        Unreadable::Corrupt(detail) => StateError::StoredCorrupt {
            tenant: tenant.clone(),
            detail,
        },
        Unreadable::Newer(found) => StateError::StoredNewerFormat {
            tenant: tenant.clone(),
            found,
        },
        Unreadable::OtherTenant(found) => StateError::StoredCorrupt {
            tenant: tenant.clone(),
            detail: format!("it holds tenant {found:?}"),
        },
        Unreadable::Cycle(cycle) => StateError::StoredCorrupt {
            tenant: tenant.clone(),
            detail: format!(
                "its depends_on entries form a cycle: {}",
                cycle
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(" -> ")
            ),
        },
    })
}

/// What a version records of its writer: its lock, without the lease's expiry of the
/// moment (which says nothing about the version).
fn written_by(lock: &LockInfo) -> LockInfo {
    LockInfo {
        expires_at: None,
        ..lock.clone()
    }
}

/// The writer recorded with a state (the [`LockInfo`] of its lock).
fn writer(json: Option<String>) -> Option<LockInfo> {
    json.and_then(|j| serde_json::from_str(&j).ok())
}

/// A [`LockInfo`] from the [`LOCK_COLUMNS`] of a row, starting at column `at`.
fn lock_info(row: &Row, at: usize) -> LockInfo {
    let run_id: Option<Uuid> = row.get(at + 5);
    let attempt: Option<i32> = row.get(at + 6);
    LockInfo {
        id: row.get(at),
        operation: row.get(at + 1),
        pid: row.get::<_, i32>(at + 2) as u32,
        host: row.get(at + 3),
        user: row.get(at + 4),
        run: run_id.map(|id| super::RunRef {
            id,
            attempt: attempt.unwrap_or(0),
        }),
        since: row.get(at + 7),
        expires_at: Some(row.get(at + 8)),
    }
}

/// A held lease: its heartbeat runs until it is released or dropped.
pub struct Lease {
    store: Arc<PgStore>,
    tenant: TenantId,
    id: Uuid,
    lost: Arc<AtomicBool>,
    stop: CancellationToken,
    released: bool,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("tenant", &self.tenant)
            .field("id", &self.id)
            .field("lost", &self.is_lost())
            .finish()
    }
}

impl Lease {
    fn start(store: Arc<PgStore>, tenant: TenantId, id: Uuid) -> Lease {
        let lost = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let every = store.lease_ttl / 3;
        let heartbeat = {
            let (store, tenant, lost, stop) =
                (store.clone(), tenant.clone(), lost.clone(), stop.clone());
            async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    match store.renew(&tenant, id).await {
                        Ok(true) => tracing::debug!(%tenant, lock_id = %id, "lease renewed"),
                        Ok(false) => {
                            lost.store(true, Ordering::SeqCst);
                            tracing::warn!(
                                %tenant,
                                lock_id = %id,
                                "the lock was taken over or broken: this process no longer holds it, and its writes will be refused"
                            );
                            return;
                        }
                        // The next beat tries again; the lease lasts three beats.
                        Err(e) => tracing::warn!(%tenant, error = %e, "cannot renew the lease"),
                    }
                }
            }
        };
        tokio::spawn(heartbeat);
        Lease {
            store,
            tenant,
            id,
            lost,
            stop,
            released: false,
        }
    }

    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    pub(super) async fn renew_now(&self) -> Result<(), StateError> {
        if !self.is_lost() && self.store.renew(&self.tenant, self.id).await? {
            return Ok(());
        }
        Err(self.store.fenced(&self.tenant, self).await)
    }

    pub(super) async fn release(mut self) -> Result<(), StateError> {
        self.released = true;
        self.stop.cancel();
        self.store.delete_lock(&self.tenant, self.id).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
        if self.released {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(tenant = %self.tenant, "lock dropped outside a runtime: it is released when its lease expires");
            return;
        };
        let (store, tenant, id) = (self.store.clone(), self.tenant.clone(), self.id);
        let task = runtime.spawn({
            let store = store.clone();
            async move {
                if let Err(e) = store.delete_lock(&tenant, id).await {
                    tracing::warn!(%tenant, error = %e, "cannot release the lock: it is released when its lease expires");
                }
            }
        });
        store.releases.lock().expect("releases lock").push(task);
    }
}
