//! [`StateStore`]: the one handle the engine holds, whichever backend keeps the state.
//!
//! Every method is async. The local backend does its file work on the blocking pool,
//! so that no async thread waits on `fsync` or on an `flock`; the PostgreSQL backend
//! talks to the database through a small pool of connections.
//!
//! Which backend: `[state] backend` in platform.toml (`local` by default), overridden
//! by `TENANTFORM_STATE_BACKEND`. PostgreSQL is reached like the providers reach it
//! (`[postgres]`, else `PG*`).

use crate::environment::Environment;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::postgres::PgStore;
use super::{Encryption, LocalStore, LockInfo, LockRequest, StateError, StateLock, TenantState};
use crate::connect::postgres::PostgresConfig;
use crate::resource::TenantId;
use crate::spec::{PlatformSpec, StateBackendKind, StateSettings};

/// The environment variable that overrides `[state] backend`.
pub const BACKEND_ENV: &str = "TENANTFORM_STATE_BACKEND";

/// One version of a tenant's state, as `state history` lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StateVersion {
    pub serial: u64,
    pub lineage: Uuid,
    pub written_at: DateTime<Utc>,
    /// Who wrote it (the writer's lock); `None` for local state, which does not record it.
    pub written_by: Option<LockInfo>,
    /// Whether this is the tenant's state now.
    pub current: bool,
}

impl StateVersion {
    pub(super) fn local(state: &TenantState, current: bool) -> Self {
        StateVersion {
            serial: state.serial,
            lineage: state.lineage,
            written_at: state.updated_at,
            written_by: None,
            current,
        }
    }
}

/// Where tenants' state is kept: a handle to one backend, cheap to clone.
#[derive(Clone, Debug)]
pub struct StateStore {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Local(LocalStore),
    Postgres(Arc<PgStore>),
}

impl StateStore {
    /// State files under `dir` (`dir/tenants/<id>.json`).
    pub fn local(dir: impl Into<PathBuf>) -> Self {
        StateStore {
            backend: Backend::Local(LocalStore::new(dir)),
        }
    }

    /// State in schema `tenantform_state` of `config`'s database, with the history and
    /// lease length of `settings`.
    pub fn postgres(config: &PostgresConfig, settings: &StateSettings) -> Result<Self, StateError> {
        Ok(StateStore {
            backend: Backend::Postgres(Arc::new(PgStore::new(
                config,
                settings.history,
                Duration::from_secs(settings.lease_ttl_seconds),
            )?)),
        })
    }

    /// The backend `platform` chooses (or `TENANTFORM_STATE_BACKEND`), with local state
    /// under `state_dir`.
    pub fn open(
        platform: &PlatformSpec,
        state_dir: &Path,
        environment: &Environment,
    ) -> Result<Self, StateError> {
        Self::open_kind(
            configured_kind(platform, environment)?,
            platform,
            state_dir,
            environment,
        )
    }

    /// The backend `kind`, configured from `platform`, whatever platform.toml chooses.
    pub fn open_kind(
        kind: StateBackendKind,
        platform: &PlatformSpec,
        state_dir: &Path,
        environment: &Environment,
    ) -> Result<Self, StateError> {
        let encryption = Arc::new(Encryption::from_platform(platform, environment)?);
        let backend = match kind {
            StateBackendKind::Local => {
                Backend::Local(LocalStore::new(state_dir).with_encryption(encryption))
            }
            StateBackendKind::Postgres => {
                let config =
                    PostgresConfig::resolve(&platform.postgres, environment).map_err(|e| {
                        StateError::Config {
                            backend: "postgres",
                            detail: e.to_string(),
                        }
                    })?;
                let settings = &platform.state;
                Backend::Postgres(Arc::new(
                    PgStore::new(
                        &config,
                        settings.history,
                        Duration::from_secs(settings.lease_ttl_seconds),
                    )?
                    .with_encryption(encryption),
                ))
            }
        };
        Ok(StateStore { backend })
    }

    /// Writes every tenant's state again, under `request`'s locks: sealed with the
    /// primary key of `[encryption]` (a rotation, once the previous key is the
    /// fallback), or as plain text when no key provider is set. Returns the tenants
    /// written; stops at the first that cannot be, naming it.
    pub async fn rekey(&self, request: &LockRequest) -> Result<Vec<TenantId>, StateError> {
        let mut done = Vec::new();
        for tenant in self.tenants().await? {
            let lock = self.lock(&tenant, request).await?;
            let written = match self.load(&tenant).await {
                Ok(Some(mut state)) => self.write(&lock, &mut state).await.map(|()| true),
                Ok(None) => Ok(false),
                Err(e) => Err(e),
            };
            let released = lock.release().await;
            if written? {
                tracing::info!(%tenant, "state written again under the current key");
                done.push(tenant);
            }
            released?;
        }
        self.settle().await;
        Ok(done)
    }

    /// The backend this store uses.
    pub fn kind(&self) -> StateBackendKind {
        match &self.backend {
            Backend::Local(_) => StateBackendKind::Local,
            Backend::Postgres(_) => StateBackendKind::Postgres,
        }
    }

    /// Where the state is, for messages.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Local(l) => format!("state directory {}", l.dir().display()),
            Backend::Postgres(p) => p.describe().to_owned(),
        }
    }

    /// How messages name a tenant's state: its file, or its row.
    pub fn state_name(&self, tenant: &TenantId) -> String {
        match &self.backend {
            Backend::Local(l) => format!("state file {}", l.path_of(tenant).display()),
            Backend::Postgres(p) => format!("the state of tenant {tenant} in {}", p.describe()),
        }
    }

    /// The tenants that have a state, sorted.
    pub async fn tenants(&self) -> Result<Vec<TenantId>, StateError> {
        match &self.backend {
            Backend::Local(l) => blocking(l, |l| l.tenants()).await,
            Backend::Postgres(p) => p.tenants().await,
        }
    }

    /// A tenant's state; `None` when it has none.
    pub async fn load(&self, tenant: &TenantId) -> Result<Option<TenantState>, StateError> {
        match &self.backend {
            Backend::Local(l) => {
                let tenant = tenant.clone();
                blocking(l, move |l| l.load(&tenant)).await
            }
            Backend::Postgres(p) => p.load(tenant).await,
        }
    }

    /// Takes the tenant's lock for `request` (see the `lock` module for the API).
    pub async fn lock(
        &self,
        tenant: &TenantId,
        request: &LockRequest,
    ) -> Result<StateLock, StateError> {
        match &self.backend {
            Backend::Local(l) => {
                let (tenant, request) = (tenant.clone(), request.clone());
                blocking(l, move |l| l.lock(&tenant, &request)).await
            }
            Backend::Postgres(p) => p.lock(tenant, request).await,
        }
    }

    /// Who holds the tenant's lock, if anyone.
    pub async fn lock_holder(&self, tenant: &TenantId) -> Result<Option<LockInfo>, StateError> {
        match &self.backend {
            Backend::Local(l) => {
                let tenant = tenant.clone();
                blocking(l, move |l| l.lock_holder(&tenant)).await
            }
            Backend::Postgres(p) => p.holder(tenant).await,
        }
    }

    /// Breaks a lock held by a process that cannot release it. `lock_id` must match
    /// the holder's id, so that a lock taken since is not broken by mistake.
    pub async fn force_unlock(
        &self,
        tenant: &TenantId,
        lock_id: &str,
    ) -> Result<LockInfo, StateError> {
        match &self.backend {
            Backend::Local(l) => {
                let (tenant, lock_id) = (tenant.clone(), lock_id.to_owned());
                blocking(l, move |l| l.force_unlock(&tenant, &lock_id)).await
            }
            Backend::Postgres(p) => p.force_unlock(tenant, lock_id).await,
        }
    }

    /// Writes `state` as the next serial. The caller must hold the tenant's lock; in
    /// PostgreSQL the write is refused when the state moved on since it was read
    /// ([`StateError::Moved`]) or the lock was lost ([`StateError::Fenced`]).
    pub async fn write(&self, lock: &StateLock, state: &mut TenantState) -> Result<(), StateError> {
        assert_eq!(
            lock.tenant(),
            &state.tenant,
            "state written under another tenant's lock"
        );
        match &self.backend {
            Backend::Local(l) => {
                let mut written = state.clone();
                let held = lock_for_blocking(lock)?;
                let written = blocking(l, move |l| {
                    l.write(&held, &mut written)?;
                    Ok(written)
                })
                .await?;
                state.serial = written.serial;
                state.updated_at = written.updated_at;
                state.format_version = written.format_version;
                Ok(())
            }
            Backend::Postgres(p) => {
                let lease = lock.held_lease()?;
                p.write(lock, lease, state).await
            }
        }
    }

    /// Removes the state of a tenant that no longer has any resource (`state` as the
    /// caller last read or wrote it). Local state keeps the file as the backup; in
    /// PostgreSQL the versions stay. Nothing to remove is fine.
    pub async fn remove(&self, lock: &StateLock, state: &TenantState) -> Result<(), StateError> {
        assert_eq!(
            lock.tenant(),
            &state.tenant,
            "state removed under another tenant's lock"
        );
        match &self.backend {
            Backend::Local(l) => {
                let held = lock_for_blocking(lock)?;
                let tenant = state.tenant.clone();
                blocking(l, move |l| l.remove(&held, &tenant)).await
            }
            Backend::Postgres(p) => p.remove(lock, state).await,
        }
    }

    /// The versions of a tenant's state kept, newest first (local: the state and its
    /// backup; PostgreSQL: the last `[state] history`).
    pub async fn history(&self, tenant: &TenantId) -> Result<Vec<StateVersion>, StateError> {
        Ok(self
            .versions(tenant)
            .await?
            .into_iter()
            .map(|(v, _)| v)
            .collect())
    }

    async fn versions(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<(StateVersion, TenantState)>, StateError> {
        match &self.backend {
            Backend::Local(l) => {
                let tenant = tenant.clone();
                blocking(l, move |l| l.history(&tenant)).await
            }
            Backend::Postgres(p) => p.history(tenant).await,
        }
    }

    /// Writes the content of version `serial` as the tenant's next serial (a recovery:
    /// nothing is changed but state). The caller holds the tenant's lock. A version of
    /// an earlier lineage (the tenant was destroyed and created again since) is refused.
    pub async fn restore(&self, lock: &StateLock, serial: u64) -> Result<TenantState, StateError> {
        let tenant = lock.tenant();
        let versions = self.versions(tenant).await?;
        let Some((_, version)) = versions.iter().find(|(v, _)| v.serial == serial) else {
            let available = versions
                .iter()
                .map(|(v, _)| v.serial.to_string())
                .collect::<Vec<_>>();
            return Err(StateError::NoSuchVersion {
                tenant: tenant.clone(),
                serial,
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available.join(", ")
                },
            });
        };
        let current = self.load(tenant).await?;
        let mut restored = version.clone();
        restored.serial = match &current {
            Some(c) if c.lineage != version.lineage => {
                return Err(StateError::OtherLineage {
                    tenant: tenant.clone(),
                    serial,
                    version_lineage: version.lineage,
                    current_lineage: c.lineage,
                });
            }
            Some(c) => c.serial,
            // Removed since: continue after the newest serial of its lineage.
            None => versions
                .iter()
                .filter(|(v, _)| v.lineage == version.lineage)
                .map(|(v, _)| v.serial)
                .max()
                .unwrap_or(serial),
        };
        self.write(lock, &mut restored).await?;
        Ok(restored)
    }

    /// Waits until locks dropped so far are released (PostgreSQL releases a dropped
    /// lock in the background). Call it before the process exits.
    pub async fn settle(&self) {
        if let Backend::Postgres(p) = &self.backend {
            p.settle().await;
        }
    }

    /// Writes `versions` (oldest first) as they are, serials included.
    async fn import(
        &self,
        lock: &StateLock,
        versions: &[(StateVersion, TenantState)],
    ) -> Result<(), StateError> {
        match &self.backend {
            Backend::Local(l) => {
                let held = lock_for_blocking(lock)?;
                let states: Vec<TenantState> = versions.iter().map(|(_, s)| s.clone()).collect();
                blocking(l, move |l| l.import(&held, &states)).await
            }
            Backend::Postgres(p) => p.import(lock, versions).await,
        }
    }

    /// Checks, before anything is written, that `incoming` may be moved here.
    async fn check_move(&self, incoming: &TenantState) -> Result<(), StateError> {
        match self.load(&incoming.tenant).await? {
            Some(existing) => {
                super::check_earlier_copy(&incoming.tenant, &existing, incoming, &self.describe())
            }
            None => Ok(()),
        }
    }
}

/// The backend platform.toml chooses, or `TENANTFORM_STATE_BACKEND`.
pub fn configured_kind(
    platform: &PlatformSpec,
    environment: &Environment,
) -> Result<StateBackendKind, StateError> {
    match environment.get(BACKEND_ENV) {
        Some(v) if !v.trim().is_empty() => {
            v.trim()
                .parse()
                .map_err(|detail: String| StateError::Config {
                    backend: "configured",
                    detail: format!("{BACKEND_ENV}: {detail}"),
                })
        }
        _ => Ok(platform.state.backend),
    }
}

/// A local lock for the blocking pool: the local store only checks its tenant.
fn lock_for_blocking(lock: &StateLock) -> Result<TenantId, StateError> {
    match lock.lease() {
        None => Ok(lock.tenant().clone()),
        Some(_) => Err(StateError::ForeignLock {
            tenant: lock.tenant().clone(),
        }),
    }
}

/// Runs `f` on the local store off the async threads.
async fn blocking<T: Send + 'static>(
    store: &LocalStore,
    f: impl FnOnce(&LocalStore) -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .expect("state task does not panic")
}

/// What [`migrate`] moved, from where to where.
#[derive(Clone, Debug, Serialize)]
pub struct MigrationReport {
    pub from: String,
    pub to: String,
    pub tenants: Vec<MigratedTenant>,
}

/// One tenant moved by [`migrate`].
#[derive(Clone, Debug, Serialize)]
pub struct MigratedTenant {
    pub tenant: TenantId,
    pub serial: u64,
    pub lineage: Uuid,
    /// Versions written to the destination, the current one included.
    pub versions: usize,
    /// Versions the source kept that the destination cannot (local state keeps one
    /// backup); they stay where they were.
    pub versions_left: usize,
}

/// Moves every tenant's state from `from` to `to`: serial, lineage and history, under
/// both stores' locks of every tenant. Checks everything before writing anything: when
/// a tenant is locked, or `to` holds a state that is not an earlier copy of the one to
/// move, nothing is moved. After every tenant is written to `to`, each is removed from
/// `from` (local: its file becomes the backup; PostgreSQL: its row goes, its versions
/// stay), so that exactly one place holds each tenant's state.
pub async fn migrate(
    from: &StateStore,
    to: &StateStore,
    request: &LockRequest,
) -> Result<MigrationReport, StateError> {
    let refused = |e: StateError| StateError::NothingMoved(Box::new(e));
    let tenants = from.tenants().await.map_err(refused)?;
    let mut locks = Vec::new();
    let mut moves = Vec::new();
    let prepared: Result<(), StateError> = async {
        for t in &tenants {
            let source = from.lock(t, request).await?;
            let target = to.lock(t, request).await?;
            locks.push((source, target));
        }
        for t in &tenants {
            let mut versions = from.versions(t).await?;
            versions.reverse();
            let Some((_, current)) = versions.last() else {
                continue;
            };
            if !versions.last().is_some_and(|(v, _)| v.current) {
                continue;
            }
            to.check_move(current).await?;
            moves.push(versions);
        }
        Ok(())
    }
    .await;
    if let Err(e) = prepared {
        release_all(locks).await;
        from.settle().await;
        to.settle().await;
        return Err(refused(e));
    }
    let keeps = |versions: usize| match to.kind() {
        StateBackendKind::Local => versions.min(2),
        StateBackendKind::Postgres => versions,
    };
    let mut report = Vec::new();
    for (versions, (_, target)) in moves.iter().zip(&locks) {
        to.import(target, versions).await?;
        let (_, current) = versions.last().expect("not empty");
        report.push(MigratedTenant {
            tenant: current.tenant.clone(),
            serial: current.serial,
            lineage: current.lineage,
            versions: keeps(versions.len()),
            versions_left: versions.len() - keeps(versions.len()),
        });
    }
    for versions in &moves {
        let (_, current) = versions.last().expect("not empty");
        let (source, _) = locks
            .iter()
            .find(|(s, _)| s.tenant() == &current.tenant)
            .expect("locked");
        from.remove(source, current).await?;
    }
    release_all(locks).await;
    Ok(MigrationReport {
        from: from.describe(),
        to: to.describe(),
        tenants: report,
    })
}

async fn release_all(locks: Vec<(StateLock, StateLock)>) {
    for (source, target) in locks {
        for lock in [source, target] {
            let tenant = lock.tenant().clone();
            if let Err(e) = lock.release().await {
                tracing::warn!(%tenant, error = %e, "cannot release a lock after migrating");
            }
        }
    }
}
