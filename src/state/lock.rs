//! Tenant locks: who holds one, what a caller asks for, and the held lock itself.
//!
//! The public lock API, the same for every backend:
//!
//! ```text
//! let lock = store.lock(&tenant, &LockRequest {
//!     operation: "apply".into(),
//!     timeout: Duration::from_secs(30),            // ZERO: fail at once when held
//!     run: Some(RunRef { id: run_id, attempt: 2 }), // the run this lock acts for, if any
//! }).await?;                                        // StateError::Locked names the holder
//! store.write(&lock, &mut state).await?;            // fenced: refused once the lock is lost
//! lock.release().await?;                            // or drop it (released in the background)
//! ```
//!
//! [`LockInfo`] says who holds a lock (operation, pid, host, user, run and attempt,
//! since, and for a lease its expiry); it is what `Locked`, `force-unlock` and state
//! history show. A [`StateLock`] is held either as an `flock` (local state, below) or as
//! a lease row in PostgreSQL (`super::postgres`), renewed by a heartbeat task the lock
//! owns; [`StateLock::is_lost`] and [`StateLock::ensure_held`] tell its holder whether
//! it still holds it.
//!
//! The local lock: an advisory `flock` on `<id>.lock`, plus who holds it.
//! The kernel releases an `flock` when its process dies, so a crashed or killed run
//! never leaves a stale lock behind. `force-unlock` breaks a lock held by a live but
//! stuck process by unlinking the file: the stuck process keeps a lock on a file that
//! no longer has a name, and the next run creates a fresh one. Every acquirer checks,
//! after locking, that the file it locked is still the one at the path, so two runs
//! can never both believe they hold the lock.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StateError;
use crate::resource::TenantId;

/// Who holds a tenant's lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: Uuid,
    pub operation: String,
    pub pid: u32,
    pub host: String,
    pub user: String,
    pub since: DateTime<Utc>,
    /// The run the holder acts for (a queued run of the service), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunRef>,
    /// When a lease ends unless its heartbeat renews it; `None` for a local `flock`,
    /// which lasts as long as its process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl LockInfo {
    /// This process, taking a lock for `request` now.
    pub(super) fn of_this_process(request: &LockRequest) -> LockInfo {
        LockInfo {
            id: Uuid::new_v4(),
            operation: request.operation.clone(),
            pid: std::process::id(),
            host: host_name(),
            user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            since: Utc::now(),
            run: request.run,
            expires_at: None,
        }
    }
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (pid {} on {}, user {}, ",
            self.operation, self.pid, self.host, self.user
        )?;
        if let Some(run) = &self.run {
            write!(f, "run {} attempt {}, ", run.id, run.attempt)?;
        }
        write!(
            f,
            "since {}, ",
            self.since.to_rfc3339_opts(SecondsFormat::Secs, true)
        )?;
        if let Some(expires) = &self.expires_at {
            let verb = if *expires < Utc::now() {
                "expired"
            } else {
                "expires"
            };
            write!(
                f,
                "lease {verb} {}, ",
                expires.to_rfc3339_opts(SecondsFormat::Secs, true)
            )?;
        }
        write!(f, "lock id {})", self.id)
    }
}

/// The run a lock acts for: a queued run and which attempt of it, so that a lock (and
/// the state versions written under it) can be traced to the run, and a run's later
/// attempt can tell its own lock from an earlier attempt's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRef {
    pub id: Uuid,
    pub attempt: i32,
}

/// What a caller asks for when it takes a tenant's lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockRequest {
    /// What the holder does (`apply`, `destroy`, `import`, ...), shown to others.
    pub operation: String,
    /// How long to wait for a holder to finish; zero fails at once.
    pub timeout: Duration,
    /// The run the lock acts for, if any.
    pub run: Option<RunRef>,
}

impl LockRequest {
    /// A request for `operation` by no particular run.
    pub fn new(operation: impl Into<String>, timeout: Duration) -> Self {
        LockRequest {
            operation: operation.into(),
            timeout,
            run: None,
        }
    }
}

/// A held tenant lock. Only its holder may write the tenant's state (the store checks
/// it on every write). Released by [`StateLock::release`], or when dropped (a lease is
/// then deleted in the background; `StateStore::settle` waits for that).
#[derive(Debug)]
pub struct StateLock {
    tenant: TenantId,
    info: LockInfo,
    held: Held,
}

#[derive(Debug)]
pub(super) enum Held {
    File(FileLock),
    Lease(super::postgres::Lease),
}

impl StateLock {
    pub(super) fn new(tenant: TenantId, info: LockInfo, held: Held) -> Self {
        StateLock { tenant, info, held }
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    pub(super) fn lease(&self) -> Option<&super::postgres::Lease> {
        match &self.held {
            Held::Lease(l) => Some(l),
            Held::File(_) => None,
        }
    }

    /// The lease this lock is held as; a lock of the local backend cannot write to
    /// PostgreSQL.
    pub(super) fn held_lease(&self) -> Result<&super::postgres::Lease, StateError> {
        self.lease().ok_or_else(|| StateError::ForeignLock {
            tenant: self.tenant.clone(),
        })
    }

    /// Whether the lock is known to be lost: its lease was taken over after it expired,
    /// or broken with force-unlock. A lost lock's writes are refused; its holder should
    /// stop changing anything. Always false for a local lock.
    pub fn is_lost(&self) -> bool {
        self.lease().is_some_and(|l| l.is_lost())
    }

    /// Renews a lease now and fails if it was lost: a check before an action that must
    /// not run without the lock (a local lock is always held).
    pub async fn ensure_held(&self) -> Result<(), StateError> {
        match &self.held {
            Held::File(_) => Ok(()),
            Held::Lease(l) => l.renew_now().await,
        }
    }

    /// Releases the lock and waits until others can take it.
    pub async fn release(self) -> Result<(), StateError> {
        match self.held {
            Held::File(f) => {
                drop(f);
                Ok(())
            }
            Held::Lease(l) => l.release().await,
        }
    }
}

/// A held `flock` on a lock file; released when dropped.
#[derive(Debug)]
pub(super) struct FileLock {
    file: File,
    path: PathBuf,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Remove the file only while it is still ours: after a force-unlock the path may
        // name another run's lock file.
        if same_file(&self.file, &self.path) {
            let _ = fs::remove_file(&self.path);
        }
        let _ = self.file.unlock();
    }
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

const POLL: Duration = Duration::from_millis(50);

pub(super) fn acquire(
    path: &Path,
    tenant: &TenantId,
    request: &LockRequest,
) -> Result<StateLock, StateError> {
    let timeout = request.timeout;
    let started = Instant::now();
    loop {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| StateError::io("open", path, e))?;
        match file.try_lock() {
            Ok(()) => {
                if !same_file(&file, path) {
                    // The file was unlinked (released or broken) between open and lock.
                    continue;
                }
                let info = LockInfo::of_this_process(request);
                let json = serde_json::to_vec(&info).expect("lock info serializes");
                file.set_len(0)
                    .and_then(|_| file.rewind())
                    .and_then(|_| file.write_all(&json))
                    .and_then(|_| file.sync_data())
                    .map_err(|e| StateError::io("write", path, e))?;
                let held = Held::File(FileLock {
                    file,
                    path: path.to_owned(),
                });
                return Ok(StateLock::new(tenant.clone(), info, held));
            }
            Err(fs::TryLockError::WouldBlock) => {
                if started.elapsed() >= timeout {
                    let holder = read_info(&mut file).unwrap_or_else(|| LockInfo {
                        id: Uuid::nil(),
                        operation: "an operation that has not yet said who it is".into(),
                        pid: 0,
                        host: "unknown".into(),
                        user: "unknown".into(),
                        since: Utc::now(),
                        run: None,
                        expires_at: None,
                    });
                    return Err(StateError::Locked {
                        tenant: tenant.clone(),
                        holder: Box::new(holder),
                    });
                }
                drop(file);
                std::thread::sleep(POLL.min(timeout.saturating_sub(started.elapsed())));
            }
            Err(fs::TryLockError::Error(e)) => return Err(StateError::io("lock", path, e)),
        }
    }
}

fn read_info(file: &mut File) -> Option<LockInfo> {
    let mut buf = Vec::new();
    file.rewind().ok()?;
    file.read_to_end(&mut buf).ok()?;
    serde_json::from_slice(&buf).ok()
}

/// The holder of the lock at `path`; `None` when nobody holds it.
pub(super) fn holder(path: &Path) -> Result<Option<LockInfo>, StateError> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StateError::io("open", path, e)),
    };
    match file.try_lock() {
        // Nobody holds it: a file left by a process that died.
        Ok(()) => {
            let _ = file.unlock();
            Ok(None)
        }
        Err(fs::TryLockError::WouldBlock) => Ok(read_info(&mut file)),
        Err(fs::TryLockError::Error(e)) => Err(StateError::io("lock", path, e)),
    }
}

pub(super) fn break_lock(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StateError::io("remove", path, e)),
    }
}

pub(super) fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
