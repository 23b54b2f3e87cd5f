//! What the engine believes exists: one state file per tenant.
//!
//! Layout of a state directory:
//!
//! ```text
//! state/tenants/<id>.json         the tenant's state (mode 0600)
//! state/tenants/<id>.json.backup  the version before the last write
//! state/tenants/<id>.lock         held (flock) while an operation writes the state
//! ```
//!
//! Guarantees:
//! - A write is atomic: a reader sees the old file or the new one, never a mix, even
//!   after a crash or `kill -9` (temp file, fsync, rename, fsync of the directory).
//! - Every write increases `serial`; `lineage` is fixed when the state is first
//!   created. A saved plan records both and refuses to apply on anything else.
//! - A file that cannot be read (corrupt JSON, a newer format, another tenant's
//!   state) is an error that names it, and is never overwritten.
//! - Writing requires a [`StateLock`] of the same tenant: only a lock holder writes.
//!
//! Architecture invariant: only this module touches the state directory.

mod lock;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub(crate) use lock::host_name;
pub use lock::{LockInfo, StateLock};

use crate::resource::{Attributes, ResourceAddress, ResourceType, TenantId};
use crate::spec::TenantSpec;

/// The state file format this build reads and writes.
pub const STATE_FORMAT_VERSION: u32 = 1;

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
    pub applied_spec: Option<TenantSpec>,
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
}

/// Whether a resource is known to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceStatus {
    /// Created and recorded.
    Created,
    /// A create was started and not confirmed (the run died or the call failed with an
    /// unknown outcome). The resource may or may not exist; the next run finishes the
    /// create, accepting an existing resource of that name as its own.
    Creating,
}

impl TenantState {
    pub fn new(tenant: TenantId) -> Self {
        TenantState {
            format_version: STATE_FORMAT_VERSION,
            tenant,
            serial: 0,
            lineage: Uuid::new_v4(),
            protected: false,
            updated_at: Utc::now(),
            applied_spec: None,
            resources: BTreeMap::new(),
        }
    }

    pub fn address_of(&self, key: &str) -> Option<ResourceAddress> {
        let r = self.resources.get(key)?;
        Some(ResourceAddress::new(&self.tenant, r.resource_type, &r.name))
    }

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
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "state file {} cannot be read ({detail}); it was left untouched: restore it from {}.backup or repair it, then run again",
        path.display(), path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "state file {} has format version {found}, newer than this tenantform understands ({STATE_FORMAT_VERSION}); it was left untouched: use a newer tenantform",
        path.display()
    )]
    NewerFormat { path: PathBuf, found: u64 },
    #[error(
        "state file {} holds tenant {found:?}, not {expected:?}; it was left untouched: move it to the file named after its tenant",
        path.display()
    )]
    WrongTenant {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error(
        "tenant {tenant} is locked by {holder}; wait for it to finish (or pass --lock-timeout to wait), or if that process is stuck, run `tenantform force-unlock {tenant} {}`",
        holder.id
    )]
    Locked {
        tenant: TenantId,
        holder: Box<LockInfo>,
    },
    #[error("tenant {tenant} is not locked; nothing to unlock")]
    NotLocked { tenant: TenantId },
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

/// A directory of tenant state files.
#[derive(Clone, Debug)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tenants_dir(&self) -> PathBuf {
        self.dir.join("tenants")
    }

    pub fn path_of(&self, tenant: &TenantId) -> PathBuf {
        self.tenants_dir().join(format!("{tenant}.json"))
    }

    fn backup_path(&self, tenant: &TenantId) -> PathBuf {
        self.tenants_dir().join(format!("{tenant}.json.backup"))
    }

    fn lock_path(&self, tenant: &TenantId) -> PathBuf {
        self.tenants_dir().join(format!("{tenant}.lock"))
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
        parse_state(&path, &bytes, tenant).map(Some)
    }

    /// Takes the tenant's lock for `operation`, waiting up to `timeout` for a holder to
    /// release it.
    pub fn lock(
        &self,
        tenant: &TenantId,
        operation: &str,
        timeout: std::time::Duration,
    ) -> Result<StateLock, StateError> {
        let dir = self.tenants_dir();
        fs::create_dir_all(&dir).map_err(|e| StateError::io("create", &dir, e))?;
        lock::acquire(&self.lock_path(tenant), tenant, operation, timeout)
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
    /// backup. The caller must hold the tenant's lock.
    pub fn write(&self, lock: &StateLock, state: &mut TenantState) -> Result<(), StateError> {
        assert_eq!(
            lock.tenant(),
            &state.tenant,
            "state written under another tenant's lock"
        );
        let path = self.path_of(&state.tenant);
        state.serial += 1;
        state.updated_at = Utc::now();
        state.format_version = STATE_FORMAT_VERSION;
        let mut json = serde_json::to_vec_pretty(state).expect("state serializes");
        json.push(b'\n');

        let dir = self.tenants_dir();
        fs::create_dir_all(&dir).map_err(|e| StateError::io("create", &dir, e))?;
        let tmp = dir.join(format!(".{}.json.tmp", state.tenant));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| StateError::io("create", &tmp, e))?;
            f.write_all(&json)
                .and_then(|_| f.sync_all())
                .map_err(|e| StateError::io("write", &tmp, e))?;
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
            fs::rename(&tmp, &path).map_err(|e| StateError::io("replace", &path, e))?;
            sync_dir(&dir)
        })();
        if result.is_err() {
            state.serial -= 1;
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Removes the state file of a tenant that no longer has any resource. The backup
    /// stays, as the last record of what the tenant had.
    pub fn remove(&self, lock: &StateLock, tenant: &TenantId) -> Result<(), StateError> {
        assert_eq!(
            lock.tenant(),
            tenant,
            "state removed under another tenant's lock"
        );
        let path = self.path_of(tenant);
        if path.exists() {
            let backup = self.backup_path(tenant);
            fs::rename(&path, &backup).map_err(|e| StateError::io("remove", &path, e))?;
            sync_dir(&self.tenants_dir())?;
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StateError::io("sync", dir, e))
}

/// Parses a state file's bytes, checking the format version before the content so that
/// a newer file is reported as newer, not as corrupt.
fn parse_state(path: &Path, bytes: &[u8], tenant: &TenantId) -> Result<TenantState, StateError> {
    let corrupt = |detail: String| StateError::Corrupt {
        path: path.to_owned(),
        detail,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("invalid JSON: {e}")))?;
    let version = value
        .get("format_version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| corrupt("no format_version".into()))?;
    if version > u64::from(STATE_FORMAT_VERSION) {
        return Err(StateError::NewerFormat {
            path: path.to_owned(),
            found: version,
        });
    }
    let state: TenantState =
        serde_json::from_value(value).map_err(|e| corrupt(format!("unexpected content: {e}")))?;
    if &state.tenant != tenant {
        return Err(StateError::WrongTenant {
            path: path.to_owned(),
            expected: tenant.to_string(),
            found: state.tenant.to_string(),
        });
    }
    for (key, r) in &state.resources {
        let expected = format!("{}.{}", r.resource_type, r.name);
        if *key != expected {
            return Err(corrupt(format!(
                "resource key {key:?} does not match its type and name ({expected})"
            )));
        }
    }
    Ok(state)
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
        let store = StateStore::new(dir.path());
        let lock = store.lock(&tenant(), "test", Duration::ZERO).unwrap();
        let mut s = TenantState::new(tenant());
        store.write(&lock, &mut s).unwrap();
        assert_eq!(s.serial, 1);
        s.protected = true;
        store.write(&lock, &mut s).unwrap();
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

    #[test]
    fn corrupt_newer_and_misplaced_files_are_errors_and_stay_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
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

    #[test]
    fn a_second_lock_names_the_holder_and_force_unlock_needs_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        let first = store.lock(&tenant(), "apply", Duration::ZERO).unwrap();
        let err = store
            .lock(&tenant(), "destroy", Duration::from_millis(200))
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
        let second = store.lock(&tenant(), "destroy", Duration::ZERO).unwrap();
        drop(first);
        // Dropping the broken lock must not release the new holder's lock.
        assert!(store.lock(&tenant(), "plan", Duration::ZERO).is_err());
        drop(second);
        store.lock(&tenant(), "plan", Duration::ZERO).unwrap();
    }

    #[test]
    fn a_released_lock_can_be_taken_again_and_waiting_works() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        let first = store.lock(&tenant(), "apply", Duration::ZERO).unwrap();
        let store2 = store.clone();
        let waiter = std::thread::spawn(move || {
            store2
                .lock(&tenant(), "apply", Duration::from_secs(10))
                .map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(300));
        drop(first);
        waiter.join().unwrap().unwrap();
    }
}
