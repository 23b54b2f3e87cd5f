//! What the engine believes exists: one state per tenant, kept in files (`local`) or in
//! PostgreSQL (`postgres`), behind one handle, [`StateStore`].
//!
//! Layout of a local state directory:
//!
//! ```text
//! state/tenants/<id>.json         the tenant's state (mode 0600)
//! state/tenants/<id>.json.backup  the version before the last write
//! state/tenants/<id>.lock         held (flock) while an operation writes the state
//! state/tenants/<id>.serial       the newest encrypted serial written (see below)
//! ```
//!
//! With `[encryption]` configured, each state is stored as an envelope (see
//! [`encryption`]) bound to its tenant, lineage and serial. The local backend also keeps
//! `<id>.serial`, the lineage and serial of its last encrypted write, and refuses an
//! encrypted state of that lineage with a lower serial (an older state copied over the
//! newer one); in PostgreSQL the row's own lineage and serial, and the newest version
//! kept, play that part.
//!
//! In PostgreSQL (schema `tenantform_state`, see [`postgres`]): one row per tenant with
//! its format version, serial, lineage and the document (jsonb), the last versions
//! (`[state] history`), and the locks as lease rows.
//!
//! Guarantees, on both backends:
//! - A write is atomic: a reader sees the old state or the new one, never a mix, even
//!   after a crash or `kill -9` (local: temp file, fsync, rename, fsync of the
//!   directory; PostgreSQL: one statement).
//! - Every write increases `serial`; `lineage` is fixed when the state is first
//!   created. A saved plan records both and refuses to apply on anything else.
//! - A state that cannot be read (corrupt JSON, a newer format, another tenant's
//!   state) is an error that names it, and is never overwritten.
//! - Writing requires a [`StateLock`] of the same tenant: only a lock holder writes.
//!   In PostgreSQL every write is also a compare-and-swap on the serial it read and on
//!   its lock still being the tenant's lock (the fence), so a holder that lost its lock
//!   (paused past its lease and taken over) cannot write.
//!
//! Architecture invariant: only this module touches the state directory and the
//! `tenantform_state` schema.

mod adopted_from;
mod applied_spec;
mod edit;
pub mod encryption;
mod lock;
pub mod postgres;
mod store;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use adopted_from::{ADOPTED_FROM_VERSION, AdoptedFrom, AdoptedObject};
pub use applied_spec::{APPLIED_SPEC_VERSION, AppliedSpec};
pub use edit::{StateEditError, move_resource, remove_resources};
pub use encryption::{Encryption, EncryptionError};
pub(crate) use lock::host_name;
pub use lock::{LockInfo, LockRequest, RunRef, StateLock};
pub use store::{
    BACKEND_ENV, MigratedTenant, MigrationReport, StateStore, StateVersion, configured_kind,
    migrate,
};

use crate::resource::{Attributes, CreateToken, ResourceAddress, ResourceType, TenantId};

/// The state file format this build reads and writes.
pub const STATE_FORMAT_VERSION: u32 = 1;

/// `version` of a versioned record in a state (`what` names it), if this build reads
/// it: 1 to `newest`. A newer one is refused, never half-read.
fn known_record_version<E: serde::de::Error>(
    version: u32,
    what: &str,
    newest: u32,
) -> Result<u32, E> {
    if version == 0 || version > newest {
        return Err(E::custom(format_args!(
            "{what} has version {version}, which this tenantform does not understand (it knows 1 to {newest}); use a newer tenantform"
        )));
    }
    Ok(version)
}

/// One tenant's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantState {
    pub format_version: u32,
    pub tenant: TenantId,
    /// Increases by one on every write.
    pub serial: u64,
    /// Fixed when the state is first created; tells two histories of a tenant apart.
    pub lineage: Uuid,
    /// Deletion is refused while set. Taken from the spec on every apply, kept when the
    /// spec file is removed.
    pub protected: bool,
    pub updated_at: DateTime<Utc>,
    /// The spec as last applied, so that a removed spec still says what the tenant was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_spec: Option<AppliedSpec>,
    /// The Terraform state the tenant's resources were adopted from (`tenantform
    /// adopt`); absent for a tenant tenantform created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted_from: Option<AdoptedFrom>,
    /// Keyed by local address (`postgres_role.app`).
    pub resources: BTreeMap<String, ResourceState>,
}

/// One managed resource as the engine believes it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    #[serde(rename = "type")]
    pub resource_type: ResourceType,
    pub name: String,
    pub status: ResourceStatus,
    /// All attributes, computed and sensitive ones included.
    pub attributes: Attributes,
    pub depends_on: Vec<ResourceAddress>,
    /// While `creating`: the token of the create under way, which the provider writes
    /// with the object where the service allows, so that the next attempt can tell the
    /// object this create made from someone else's. Absent once created, and in records
    /// written before tokens existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_token: Option<CreateToken>,
}

/// Whether a resource is known to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceStatus {
    /// Created and recorded.
    Created,
    /// A create was started and not confirmed (the run died or the call failed with an
    /// unknown outcome). The resource may or may not exist; the next run finishes the
    /// create, accepting an existing resource of that name as its own only when it
    /// carries the record's `create_token` (as the provider module says).
    Creating,
}

impl TenantState {
    /// An empty state for `tenant`: serial 0, a new lineage, no resources, not protected.
    pub fn new(tenant: TenantId) -> Self {
        TenantState {
            format_version: STATE_FORMAT_VERSION,
            tenant,
            serial: 0,
            lineage: Uuid::new_v4(),
            protected: false,
            updated_at: Utc::now(),
            applied_spec: None,
            adopted_from: None,
            resources: BTreeMap::new(),
        }
    }

    /// The address of the resource stored under `key` (its local address, `TYPE.name`), if any.
    pub fn address_of(&self, key: &str) -> Option<ResourceAddress> {
        let r = self.resources.get(key)?;
        Some(ResourceAddress::new(&self.tenant, r.resource_type, &r.name))
    }

    /// The recorded resource at `address`, if this state has it. The tenant part of the
    /// address is not compared.
    pub fn get(&self, address: &ResourceAddress) -> Option<&ResourceState> {
        self.resources.get(&address.local())
    }

    /// The addresses of every resource in this state.
    pub fn addresses(&self) -> impl Iterator<Item = ResourceAddress> + '_ {
        self.resources
            .values()
            .map(|r| ResourceAddress::new(&self.tenant, r.resource_type, &r.name))
    }
}

/// Something wrong with a state file or its lock.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file or directory could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A state file is not valid JSON of the expected shape; it was left untouched.
    #[error(
        "state file {} cannot be read ({detail}); it was left untouched: restore it from {}.backup or repair it, then run again",
        path.display(), path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    /// A state file was written by a newer tenantform; it was left untouched.
    #[error(
        "state file {} has format version {found}, newer than this tenantform understands ({STATE_FORMAT_VERSION}); it was left untouched: use a newer tenantform",
        path.display()
    )]
    NewerFormat { path: PathBuf, found: u64 },
    /// A state file holds another tenant than its name says.
    #[error(
        "state file {} holds tenant {found:?}, not {expected:?}; it was left untouched: move it to the file named after its tenant",
        path.display()
    )]
    WrongTenant {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// The recorded dependencies of a state form a cycle.
    #[error(
        "state file {} has a dependency cycle: {}; it was left untouched: restore it from {}.backup, or remove the depends_on entry that closes the cycle",
        path.display(),
        cycle.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" -> "),
        path.display()
    )]
    Cycle {
        path: PathBuf,
        cycle: Vec<ResourceAddress>,
    },
    /// Another process holds the tenant's lock.
    #[error("tenant {tenant} is locked by {holder}; nothing was changed")]
    Locked {
        tenant: TenantId,
        holder: Box<LockInfo>,
    },
    /// An unlock was asked for a tenant that is not locked.
    #[error("tenant {tenant} is not locked; nothing to unlock")]
    NotLocked { tenant: TenantId },
    /// The state was written by someone else since this operation read it; nothing was written.
    #[error(
        "the state of tenant {tenant} moved on: this operation read serial {read}, but it is now {current}; nothing was written: run the operation again"
    )]
    Moved {
        tenant: TenantId,
        read: u64,
        current: String,
    },
    /// The lock this operation took was broken or taken over; its write was refused.
    #[error(
        "this operation no longer holds the lock of tenant {tenant} (its lock id {lock_id}): {now}; its write was refused and the state is as the current holder left it: make sure this process stops, then run again"
    )]
    Fenced {
        tenant: TenantId,
        lock_id: Uuid,
        now: String,
    },
    /// A query to the PostgreSQL state backend failed.
    #[error(
        "cannot {action} in PostgreSQL (schema {}): {detail}",
        postgres::SCHEMA
    )]
    Database { action: String, detail: String },
    /// A state row in PostgreSQL cannot be read; it was left untouched.
    #[error(
        "the state of tenant {tenant} in PostgreSQL ({}.states) cannot be read ({detail}); it was left untouched, and its earlier versions are kept",
        postgres::SCHEMA
    )]
    StoredCorrupt { tenant: TenantId, detail: String },
    /// A state row in PostgreSQL was written by a newer tenantform; it was left untouched.
    #[error(
        "the state of tenant {tenant} in PostgreSQL has format version {found}, newer than this tenantform understands ({STATE_FORMAT_VERSION}); it was left untouched: use a newer tenantform"
    )]
    StoredNewerFormat { tenant: TenantId, found: u64 },
    /// The state backend's settings are incomplete or wrong.
    #[error("cannot set up the {backend} state backend: {detail}")]
    Config {
        backend: &'static str,
        detail: String,
    },
    /// A rollback or show asked for a state version that is not kept.
    #[error(
        "tenant {tenant} has no state version with serial {serial}; the versions kept are: {available}"
    )]
    NoSuchVersion {
        tenant: TenantId,
        serial: u64,
        available: String,
    },
    /// A kept version belongs to an earlier life of the tenant (another lineage); nothing was changed.
    #[error(
        "version {serial} of tenant {tenant} belongs to lineage {version_lineage}, but the state is lineage {current_lineage} (the tenant was destroyed and created again since); nothing was changed: recover a version of the current lineage"
    )]
    OtherLineage {
        tenant: TenantId,
        serial: u64,
        version_lineage: Uuid,
        current_lineage: Uuid,
    },
    /// A migration found other state for the tenant at the destination; nothing was moved.
    #[error(
        "tenant {tenant} already has state in {place} ({existing}) that is not an earlier copy of the state being moved ({incoming}); nothing was moved: remove one of the two, or migrate the other way"
    )]
    MigrateConflict {
        tenant: TenantId,
        place: String,
        existing: String,
        incoming: String,
    },
    /// A migration failed before anything was moved; the cause is inside.
    #[error("{0}; nothing was moved")]
    NothingMoved(Box<StateError>),
    /// A state could not be sealed or opened.
    #[error(transparent)]
    Encryption(#[from] EncryptionError),
    /// A state older than one already written was put in its place; it was left untouched.
    #[error(
        "{what} holds serial {found} of tenant {tenant}, but serial {newest} of the same lineage was written before (recorded in {}): an older state was put in place of the newer one; it was left untouched: put the newest state back (to go back on purpose, use `tenantform state rollback`; after a deliberate restore by hand, delete {})",
        mark.display(), mark.display()
    )]
    RolledBack {
        what: String,
        tenant: TenantId,
        found: u64,
        newest: u64,
        mark: PathBuf,
    },
    /// A lock taken from another backend was used to write here.
    #[error("a lock of tenant {tenant} taken from another state backend cannot write here")]
    ForeignLock { tenant: TenantId },
    /// `force-unlock` was given a lock id that is not the current lock's.
    #[error(
        "lock id {given} does not match the lock on tenant {tenant} (held by {holder}); pass the id shown in the lock message"
    )]
    LockIdMismatch {
        tenant: TenantId,
        given: String,
        holder: Box<LockInfo>,
    },
}

impl StateError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        StateError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// A directory of tenant state files (the `local` backend).
#[derive(Clone, Debug)]
pub struct LocalStore {
    dir: PathBuf,
    encryption: Arc<Encryption>,
}

impl LocalStore {
    /// The store in `dir` (state files under `dir/tenants/`), stored in plain text.
    /// Touches nothing until used.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalStore {
            dir: dir.into(),
            encryption: Arc::new(Encryption::plain()),
        }
    }

    /// The same directory, its states sealed and opened with `encryption`.
    pub fn with_encryption(self, encryption: Arc<Encryption>) -> Self {
        LocalStore { encryption, ..self }
    }

    /// The directory the store was made with.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tenants_dir(&self) -> PathBuf {
        self.dir.join("tenants")
    }

    /// Where the state file of `tenant` is, whether or not it exists.
    pub fn path_of(&self, tenant: &TenantId) -> PathBuf {
        self.tenants_dir().join(format!("{tenant}.json"))
    }

    fn backup_path(&self, tenant: &TenantId) -> PathBuf {
        self.tenants_dir().join(format!("{tenant}.json.backup"))
    }

    fn lock_path(&self, tenant: &TenantId) -> PathBuf {
        self.tenants_dir().join(format!("{tenant}.lock"))
    }

    fn mark_path(&self, tenant: &TenantId) -> PathBuf {
        self.tenants_dir().join(format!("{tenant}.serial"))
    }

    /// A state file's bytes as stored: its JSON, sealed when encryption is on.
    fn encode(&self, path: &Path, state: &TenantState) -> Result<Vec<u8>, StateError> {
        let json = state_json(state);
        let binding =
            encryption::Binding::state(state.tenant.as_str(), state.lineage, state.serial);
        Ok(self
            .encryption
            .seal(&file_name(path, &state.tenant), binding, &json)?
            .into_owned())
    }

    /// A state file's bytes read: opened, parsed and checked; whether it was sealed.
    fn decode(
        &self,
        path: &Path,
        bytes: &[u8],
        tenant: &TenantId,
    ) -> Result<(TenantState, bool), StateError> {
        let what = file_name(path, tenant);
        let expected = encryption::Expected {
            content: "state",
            tenant: Some(tenant.as_str()),
            ..Default::default()
        };
        let (plain, binding) = self.encryption.open(&what, &expected, bytes)?;
        let state = parse_state(path, &plain, tenant)?;
        if let Some(binding) = &binding {
            check_bound(&what, binding, &state)?;
        }
        Ok((state, binding.is_some()))
    }

    /// Records `state` as the newest encrypted serial written. Best effort: the state is
    /// already in place, and a missing record only weakens the check on older copies.
    fn record_serial(&self, state: &TenantState) {
        let mark = self.mark_path(&state.tenant);
        let record = serde_json::json!({ "lineage": state.lineage, "serial": state.serial });
        if let Err(e) = write_atomically(&mark, record.to_string().as_bytes()) {
            tracing::warn!(tenant = %state.tenant, error = %e, "cannot record the serial written");
        }
    }

    /// Refuses an encrypted state older than the newest of its lineage written here.
    fn check_not_rolled_back(&self, path: &Path, state: &TenantState) -> Result<(), StateError> {
        let mark = self.mark_path(&state.tenant);
        let Ok(bytes) = fs::read(&mark) else {
            return Ok(());
        };
        let Ok(record) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return Ok(());
        };
        let lineage = record["lineage"]
            .as_str()
            .and_then(|l| l.parse::<Uuid>().ok());
        match (lineage, record["serial"].as_u64()) {
            (Some(lineage), Some(newest)) if lineage == state.lineage && state.serial < newest => {
                Err(StateError::RolledBack {
                    what: file_name(path, &state.tenant),
                    tenant: state.tenant.clone(),
                    found: state.serial,
                    newest,
                    mark,
                })
            }
            _ => Ok(()),
        }
    }

    /// The tenants that have a state file, sorted.
    pub fn tenants(&self) -> Result<Vec<TenantId>, StateError> {
        let dir = self.tenants_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StateError::io("list", &dir, e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StateError::io("list", &dir, e))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            match stem.parse::<TenantId>() {
                Ok(id) => ids.push(id),
                Err(detail) => {
                    return Err(StateError::Corrupt {
                        path: entry.path(),
                        detail: format!("its name is not a tenant id: {detail}"),
                    });
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Reads a tenant's state; `None` when the tenant has no state file.
    pub fn load(&self, tenant: &TenantId) -> Result<Option<TenantState>, StateError> {
        let path = self.path_of(tenant);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::io("read", &path, e)),
        };
        let (state, sealed) = self.decode(&path, &bytes, tenant)?;
        if sealed {
            self.check_not_rolled_back(&path, &state)?;
        }
        Ok(Some(state))
    }

    /// Takes the tenant's lock, waiting up to `request.timeout` for a holder to
    /// release it.
    pub fn lock(&self, tenant: &TenantId, request: &LockRequest) -> Result<StateLock, StateError> {
        let dir = self.tenants_dir();
        fs::create_dir_all(&dir).map_err(|e| StateError::io("create", &dir, e))?;
        lock::acquire(&self.lock_path(tenant), tenant, request)
    }

    /// Who holds the tenant's lock, if anyone.
    pub fn lock_holder(&self, tenant: &TenantId) -> Result<Option<LockInfo>, StateError> {
        lock::holder(&self.lock_path(tenant))
    }

    /// Breaks a lock held by a process that cannot release it. `lock_id` must match
    /// the holder's id, so that a lock taken since is not broken by mistake.
    pub fn force_unlock(&self, tenant: &TenantId, lock_id: &str) -> Result<LockInfo, StateError> {
        let path = self.lock_path(tenant);
        let holder = lock::holder(&path)?.ok_or_else(|| StateError::NotLocked {
            tenant: tenant.clone(),
        })?;
        if holder.id.to_string() != lock_id {
            return Err(StateError::LockIdMismatch {
                tenant: tenant.clone(),
                given: lock_id.to_owned(),
                holder: Box::new(holder),
            });
        }
        lock::break_lock(&path)?;
        Ok(holder)
    }

    /// Writes `state` atomically as the next serial, keeping the previous file as the
    /// backup. The caller must hold the lock of `locked`, the state's tenant.
    pub(super) fn write(
        &self,
        locked: &TenantId,
        state: &mut TenantState,
    ) -> Result<(), StateError> {
        assert_eq!(
            locked, &state.tenant,
            "state written under another tenant's lock"
        );
        let path = self.path_of(&state.tenant);
        state.serial += 1;
        state.updated_at = Utc::now();
        state.format_version = STATE_FORMAT_VERSION;
        let dir = self.tenants_dir();
        fs::create_dir_all(&dir).map_err(|e| StateError::io("create", &dir, e))?;
        let tmp = dir.join(format!(".{}.json.tmp", state.tenant));
        let result = (|| {
            write_temp(&tmp, &self.encode(&path, state)?)?;
            // Keep the current version as the backup: a hard link survives the rename
            // below, so there is no moment without a state file.
            if path.exists() {
                let backup = self.backup_path(&state.tenant);
                let backup_tmp = dir.join(format!(".{}.json.backup.tmp", state.tenant));
                let _ = fs::remove_file(&backup_tmp);
                fs::hard_link(&path, &backup_tmp)
                    .map_err(|e| StateError::io("back up", &path, e))?;
                fs::rename(&backup_tmp, &backup)
                    .map_err(|e| StateError::io("back up", &backup, e))?;
            }
            put_in_place(&tmp, &path)
        })();
        if result.is_err() {
            state.serial -= 1;
            let _ = fs::remove_file(&tmp);
        } else if self.encryption.seals() {
            self.record_serial(state);
        }
        result
    }

    /// The versions kept: the current state and its backup, newest first.
    pub fn history(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<(StateVersion, TenantState)>, StateError> {
        let mut out = Vec::new();
        if let Some(current) = self.load(tenant)? {
            out.push((StateVersion::local(&current, true), current));
        }
        let backup = self.backup_path(tenant);
        match fs::read(&backup) {
            Ok(bytes) => {
                let (state, _) = self.decode(&backup, &bytes, tenant)?;
                out.push((StateVersion::local(&state, false), state));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StateError::io("read", &backup, e)),
        }
        Ok(out)
    }

    /// Writes states moved here from elsewhere, oldest first, with their own serials:
    /// the last becomes the state, the one before it the backup. The tenant must have no
    /// state here, or an earlier one of the same lineage.
    pub(super) fn import(
        &self,
        locked: &TenantId,
        versions: &[TenantState],
    ) -> Result<(), StateError> {
        let Some(current) = versions.last() else {
            return Ok(());
        };
        let tenant = &current.tenant;
        assert_eq!(locked, tenant, "state moved under another tenant's lock");
        if let Some(existing) = self.load(tenant)? {
            check_earlier_copy(
                tenant,
                &existing,
                current,
                &format!("{}", self.dir.display()),
            )?;
        }
        let dir = self.tenants_dir();
        if let Some(before) = versions.len().checked_sub(2).map(|i| &versions[i]) {
            let tmp = dir.join(format!(".{tenant}.json.backup.tmp"));
            self.write_private(&tmp, before)?;
            let backup = self.backup_path(tenant);
            fs::rename(&tmp, &backup).map_err(|e| StateError::io("replace", &backup, e))?;
        }
        let tmp = dir.join(format!(".{tenant}.json.tmp"));
        self.write_private(&tmp, current)?;
        let path = self.path_of(tenant);
        fs::rename(&tmp, &path).map_err(|e| StateError::io("replace", &path, e))?;
        sync_dir(&dir)?;
        if self.encryption.seals() {
            self.record_serial(current);
        }
        Ok(())
    }

    /// Writes `state` to a new private file (mode 0600) at `path` and syncs it.
    fn write_private(&self, path: &Path, state: &TenantState) -> Result<(), StateError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| StateError::io("create", dir, e))?;
        }
        write_temp(path, &self.encode(&self.path_of(&state.tenant), state)?)
    }

    /// Removes the state file of a tenant that no longer has any resource. The backup
    /// stays, as the last record of what the tenant had.
    pub(super) fn remove(&self, locked: &TenantId, tenant: &TenantId) -> Result<(), StateError> {
        assert_eq!(locked, tenant, "state removed under another tenant's lock");
        let path = self.path_of(tenant);
        if path.exists() {
            let backup = self.backup_path(tenant);
            fs::rename(&path, &backup).map_err(|e| StateError::io("remove", &path, e))?;
            sync_dir(&self.tenants_dir())?;
        }
        Ok(())
    }
}

/// Replaces the file at `path` with `bytes` the way state files are written: a temp
/// file beside it (mode 0600), fsync, rename over `path`, fsync of the directory. A
/// reader sees the old content or the new, never a part, even after a crash. Saved plans
/// are written this way too.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let name = path
        .file_name()
        .ok_or_else(|| StateError::io("write", path, std::io::ErrorKind::InvalidInput.into()))?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = write_temp(&tmp, bytes).and_then(|()| put_in_place(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The first half of an atomic replace: `tmp` created private (mode 0600) with
/// `bytes`, on disk.
fn write_temp(tmp: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| StateError::io("create", tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| StateError::io("write", tmp, e))
}

/// The second half: `tmp` renamed over `path`, and the directory synced so that the
/// rename survives a crash.
fn put_in_place(tmp: &Path, path: &Path) -> Result<(), StateError> {
    fs::rename(tmp, path).map_err(|e| StateError::io("replace", path, e))?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// How errors name a state file.
fn file_name(path: &Path, tenant: &TenantId) -> String {
    format!("state file {} (tenant {tenant})", path.display())
}

/// Refuses a sealed state whose content is not the tenant, lineage and serial it was
/// sealed for (only a writer holding the key can make one).
fn check_bound(
    what: &str,
    binding: &encryption::Binding,
    state: &TenantState,
) -> Result<(), EncryptionError> {
    if binding.tenant.as_deref() == Some(state.tenant.as_str())
        && binding.lineage == Some(state.lineage)
        && binding.serial == Some(state.serial)
    {
        return Ok(());
    }
    Err(EncryptionError::Malformed {
        what: what.to_owned(),
        detail: "its content is not the tenant, lineage and serial it is sealed for".into(),
    })
}

/// A state as its file holds it.
fn state_json(state: &TenantState) -> Vec<u8> {
    let mut json = serde_json::to_vec_pretty(state).expect("state serializes");
    json.push(b'\n');
    json
}

/// Refuses to move `incoming` over `existing` unless `existing` is an earlier (or the
/// same) version of the same lineage: a copy left by an earlier move.
fn check_earlier_copy(
    tenant: &TenantId,
    existing: &TenantState,
    incoming: &TenantState,
    place: &str,
) -> Result<(), StateError> {
    if existing.lineage == incoming.lineage && existing.serial <= incoming.serial {
        return Ok(());
    }
    let describe = |s: &TenantState| format!("serial {} of lineage {}", s.serial, s.lineage);
    Err(StateError::MigrateConflict {
        tenant: tenant.clone(),
        place: place.to_owned(),
        existing: describe(existing),
        incoming: describe(incoming),
    })
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StateError::io("sync", dir, e))
}

/// Why stored bytes are not a usable state.
enum Unreadable {
    Corrupt(String),
    Newer(u64),
    OtherTenant(String),
    Cycle(Vec<ResourceAddress>),
}

/// Decodes a stored state, checking the format version before the content so that a
/// newer state is reported as newer, not as corrupt.
fn decode_state(bytes: &[u8], tenant: &TenantId) -> Result<TenantState, Unreadable> {
    // The parser's messages quote the stored content: never pass a control character on.
    let corrupt =
        |detail: String| Unreadable::Corrupt(crate::spec::printable(&detail).into_owned());
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("invalid JSON: {e}")))?;
    let version = value
        .get("format_version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| corrupt("no format_version".into()))?;
    if version > u64::from(STATE_FORMAT_VERSION) {
        return Err(Unreadable::Newer(version));
    }
    let state: TenantState =
        serde_json::from_value(value).map_err(|e| corrupt(format!("unexpected content: {e}")))?;
    if &state.tenant != tenant {
        return Err(Unreadable::OtherTenant(state.tenant.to_string()));
    }
    for (key, r) in &state.resources {
        let expected = format!("{}.{}", r.resource_type, r.name);
        if *key != expected {
            return Err(corrupt(format!(
                "resource key {key:?} does not match its type and name ({expected})"
            )));
        }
        if let Some(foreign) = r.depends_on.iter().find(|d| &d.tenant != tenant) {
            return Err(corrupt(format!(
                "{key} depends on {foreign}, a resource of another tenant"
            )));
        }
    }
    if let Some(cycle) = dependency_cycle(&state) {
        return Err(Unreadable::Cycle(cycle));
    }
    Ok(state)
}

/// Parses a state file's bytes.
fn parse_state(path: &Path, bytes: &[u8], tenant: &TenantId) -> Result<TenantState, StateError> {
    decode_state(bytes, tenant).map_err(|u| match u {
        Unreadable::Corrupt(detail) => StateError::Corrupt {
            path: path.to_owned(),
            detail,
        },
        Unreadable::Newer(found) => StateError::NewerFormat {
            path: path.to_owned(),
            found,
        },
        Unreadable::OtherTenant(found) => StateError::WrongTenant {
            path: path.to_owned(),
            expected: tenant.to_string(),
            found,
        },
        Unreadable::Cycle(cycle) => StateError::Cycle {
            path: path.to_owned(),
            cycle,
        },
    })
}

/// A cycle among the `depends_on` of a state's resources, if there is one: deleting
/// them in reverse dependency order would be impossible. Dependencies on resources the
/// state does not hold (already deleted) are no edges.
fn dependency_cycle(state: &TenantState) -> Option<Vec<ResourceAddress>> {
    use petgraph::algo::tarjan_scc;
    use petgraph::graph::DiGraph;

    let mut graph = DiGraph::<&str, ()>::new();
    let nodes: BTreeMap<&str, _> = state
        .resources
        .keys()
        .map(|k| (k.as_str(), graph.add_node(k.as_str())))
        .collect();
    for (key, r) in &state.resources {
        for dep in &r.depends_on {
            if let Some(&to) = nodes.get(dep.local().as_str()) {
                graph.update_edge(nodes[key.as_str()], to, ());
            }
        }
    }
    tarjan_scc(&graph).into_iter().find_map(|scc| {
        let cyclic = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
        cyclic.then(|| {
            let mut cycle: Vec<ResourceAddress> = scc
                .iter()
                .rev()
                .filter_map(|n| state.address_of(graph[*n]))
                .collect();
            cycle.push(cycle[0].clone());
            cycle
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn tenant() -> TenantId {
        "acme".parse().unwrap()
    }

    #[test]
    fn writes_bump_the_serial_keep_a_backup_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let lock = store
            .lock(&tenant(), &LockRequest::new("test", Duration::ZERO))
            .unwrap();
        let mut s = TenantState::new(tenant());
        store.write(lock.tenant(), &mut s).unwrap();
        assert_eq!(s.serial, 1);
        s.protected = true;
        store.write(lock.tenant(), &mut s).unwrap();
        assert_eq!(s.serial, 2);

        let loaded = store.load(&tenant()).unwrap().unwrap();
        assert_eq!(loaded, s);
        let backup: TenantState =
            serde_json::from_slice(&fs::read(store.backup_path(&tenant())).unwrap()).unwrap();
        assert_eq!(backup.serial, 1);
        assert!(!backup.protected);
        let mode = fs::metadata(store.path_of(&tenant()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(store.tenants().unwrap(), vec![tenant()]);
    }

    /// A state file as tenantform 0.1.0 wrote it (its applied spec has no version)
    /// loads, and is written back in the current format.
    #[test]
    fn a_state_file_of_release_0_1_0_loads_and_is_written_back_current() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        fs::create_dir_all(store.tenants_dir()).unwrap();
        fs::write(
            store.path_of(&tenant()),
            include_str!("testdata/acme-0.1.0.json"),
        )
        .unwrap();
        let mut state = store.load(&tenant()).unwrap().unwrap();
        assert_eq!(state.serial, 32);
        let spec = state.applied_spec.clone().unwrap();
        assert_eq!((spec.version, spec.name.as_str()), (1, "Acme"));
        assert_eq!(spec.tier, "bronze");
        assert_eq!(state.resources.len(), 3);
        assert_eq!(
            state.resources["postgres_role.app"].attributes["connection_limit"],
            10
        );

        let lock = store
            .lock(&tenant(), &LockRequest::new("test", Duration::ZERO))
            .unwrap();
        store.write(lock.tenant(), &mut state).unwrap();
        let written: serde_json::Value =
            serde_json::from_slice(&fs::read(store.path_of(&tenant())).unwrap()).unwrap();
        assert_eq!(written["applied_spec"]["version"], APPLIED_SPEC_VERSION);
        assert_eq!(store.load(&tenant()).unwrap().unwrap(), state);
    }

    #[test]
    fn corrupt_newer_and_misplaced_files_are_errors_and_stay_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        fs::create_dir_all(store.tenants_dir()).unwrap();
        let path = store.path_of(&tenant());
        for (content, want) in [
            ("{not json", "invalid JSON"),
            (r#"{"format_version": 99}"#, "newer than this tenantform"),
            (r#"{"format_version": 1}"#, "unexpected content"),
        ] {
            fs::write(&path, content).unwrap();
            let err = store.load(&tenant()).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
            assert!(err.contains("left untouched"), "{err}");
            assert_eq!(fs::read_to_string(&path).unwrap(), content);
        }
        let mut other = TenantState::new("other".parse().unwrap());
        other.serial = 3;
        fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
        let err = store.load(&tenant()).unwrap_err().to_string();
        assert!(err.contains("holds tenant \"other\""), "{err}");
    }

    fn resource(t: ResourceType, name: &str, deps: &[&str]) -> ResourceState {
        ResourceState {
            resource_type: t,
            name: name.into(),
            status: ResourceStatus::Created,
            attributes: Attributes::new(),
            depends_on: deps.iter().map(|d| d.parse().unwrap()).collect(),
            create_token: None,
        }
    }

    #[test]
    fn a_dependency_cycle_is_refused_at_load_naming_the_file_and_the_resources() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        fs::create_dir_all(store.tenants_dir()).unwrap();
        let path = store.path_of(&tenant());
        let mut s = TenantState::new(tenant());
        for r in [
            resource(
                ResourceType::PostgresSchema,
                "main",
                &["acme/postgres_table.documents"],
            ),
            resource(
                ResourceType::PostgresTable,
                "documents",
                &["acme/postgres_schema.main"],
            ),
            resource(
                ResourceType::PostgresRole,
                "app",
                &["acme/postgres_role.gone"],
            ),
        ] {
            s.resources
                .insert(format!("{}.{}", r.resource_type, r.name), r);
        }
        let content = serde_json::to_vec(&s).unwrap();
        fs::write(&path, &content).unwrap();
        let err = store.load(&tenant()).unwrap_err();
        assert!(matches!(err, StateError::Cycle { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("acme/postgres_schema.main"), "{text}");
        assert!(text.contains("acme/postgres_table.documents"), "{text}");
        assert_eq!(fs::read(&path).unwrap(), content);

        // A self-loop is a cycle too; a dependency on another tenant is refused.
        s.resources.clear();
        let r = resource(
            ResourceType::PostgresRole,
            "app",
            &["acme/postgres_role.app"],
        );
        s.resources.insert("postgres_role.app".into(), r);
        fs::write(&path, serde_json::to_vec(&s).unwrap()).unwrap();
        assert!(matches!(
            store.load(&tenant()),
            Err(StateError::Cycle { .. })
        ));
        let r = resource(
            ResourceType::PostgresRole,
            "app",
            &["other/postgres_role.app"],
        );
        s.resources.insert("postgres_role.app".into(), r);
        fs::write(&path, serde_json::to_vec(&s).unwrap()).unwrap();
        let err = store.load(&tenant()).unwrap_err().to_string();
        assert!(err.contains("another tenant"), "{err}");
    }

    #[test]
    fn an_atomic_write_replaces_the_whole_file_privately_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.plan");
        fs::write(&path, "an older, longer content").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["tenants.plan"]);
        let err = write_atomically(&dir.path().join("missing/x.plan"), b"x").unwrap_err();
        assert!(err.to_string().contains("cannot create"), "{err}");
    }

    #[test]
    fn a_second_lock_names_the_holder_and_force_unlock_needs_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let first = store
            .lock(&tenant(), &LockRequest::new("apply", Duration::ZERO))
            .unwrap();
        let err = store
            .lock(
                &tenant(),
                &LockRequest::new("destroy", Duration::from_millis(200)),
            )
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("locked by apply"), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        let holder = store.lock_holder(&tenant()).unwrap().unwrap();
        assert_eq!(holder.operation, "apply");

        assert!(matches!(
            store.force_unlock(&tenant(), "not-the-id"),
            Err(StateError::LockIdMismatch { .. })
        ));
        store
            .force_unlock(&tenant(), &holder.id.to_string())
            .unwrap();
        // The broken lock no longer excludes anyone.
        let second = store
            .lock(&tenant(), &LockRequest::new("destroy", Duration::ZERO))
            .unwrap();
        drop(first);
        // Dropping the broken lock must not release the new holder's lock.
        assert!(
            store
                .lock(&tenant(), &LockRequest::new("plan", Duration::ZERO))
                .is_err()
        );
        drop(second);
        store
            .lock(&tenant(), &LockRequest::new("plan", Duration::ZERO))
            .unwrap();
    }

    /// Fifty runs start at once, twenty times over: one wins, and every loser names
    /// the winner (its id and pid), never an anonymous holder.
    #[test]
    fn simultaneous_lock_attempts_always_name_a_real_holder() {
        use std::sync::{Arc, Barrier};
        const RUNS: usize = 50;
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let mut refusals = 0;
        for round in 0..20 {
            let start = Arc::new(Barrier::new(RUNS));
            let done = Arc::new(Barrier::new(RUNS));
            let threads: Vec<_> = (0..RUNS)
                .map(|i| {
                    let (store, start, done) = (store.clone(), start.clone(), done.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        let result = store.lock(
                            &tenant(),
                            &LockRequest::new(format!("apply-{i}"), Duration::ZERO),
                        );
                        // Keep the lock until every run has tried.
                        done.wait();
                        result.map(|l| l.info().clone())
                    })
                })
                .collect();
            let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            let winners: Vec<&LockInfo> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(winners.len(), 1, "round {round}: {results:?}");
            for r in &results {
                match r {
                    Ok(_) => {}
                    Err(StateError::Locked { holder, .. }) => {
                        refusals += 1;
                        assert_eq!(**holder, *winners[0], "round {round}");
                        assert_ne!(holder.pid, 0);
                        assert!(!holder.id.is_nil());
                        let text = r.as_ref().unwrap_err().to_string();
                        assert!(!text.contains("not yet said who it is"), "{text}");
                    }
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
        }
        assert_eq!(refusals, 20 * (RUNS - 1));
        // No temp file is left behind.
        let left: Vec<_> = fs::read_dir(store.tenants_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        fs::create_dir_all(store.tenants_dir()).unwrap();
        // An unlocked file with a record, as a killed run leaves it.
        let dead = LockInfo {
            id: Uuid::new_v4(),
            operation: "apply".into(),
            pid: u32::MAX - 1,
            host: "elsewhere".into(),
            user: "x".into(),
            since: Utc::now(),
            run: None,
            expires_at: None,
        };
        fs::write(
            store.lock_path(&tenant()),
            serde_json::to_vec(&dead).unwrap(),
        )
        .unwrap();
        assert_eq!(store.lock_holder(&tenant()).unwrap(), None);
        let lock = store
            .lock(&tenant(), &LockRequest::new("apply", Duration::ZERO))
            .unwrap();
        assert_eq!(
            store.lock_holder(&tenant()).unwrap().as_ref(),
            Some(lock.info())
        );
        let mode = fs::metadata(store.lock_path(&tenant()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_released_lock_can_be_taken_again_and_waiting_works() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let first = store
            .lock(&tenant(), &LockRequest::new("apply", Duration::ZERO))
            .unwrap();
        let store2 = store.clone();
        let waiter = std::thread::spawn(move || {
            store2
                .lock(
                    &tenant(),
                    &LockRequest::new("apply", Duration::from_secs(10)),
                )
                .map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(300));
        drop(first);
        waiter.join().unwrap().unwrap();
    }
}
