//! The per-tenant lock: an advisory `flock` on `<id>.lock`, plus who holds it.
//!
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
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (pid {} on {}, user {}, since {}, lock id {})",
            self.operation,
            self.pid,
            self.host,
            self.user,
            self.since.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.id
        )
    }
}

/// A held tenant lock; released when dropped.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
    tenant: TenantId,
    info: LockInfo,
}

impl StateLock {
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn info(&self) -> &LockInfo {
        &self.info
    }
}

impl Drop for StateLock {
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
    operation: &str,
    timeout: Duration,
) -> Result<StateLock, StateError> {
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
                let info = LockInfo {
                    id: Uuid::new_v4(),
                    operation: operation.to_owned(),
                    pid: std::process::id(),
                    host: host_name(),
                    user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
                    since: Utc::now(),
                };
                let json = serde_json::to_vec(&info).expect("lock info serializes");
                file.set_len(0)
                    .and_then(|_| file.rewind())
                    .and_then(|_| file.write_all(&json))
                    .and_then(|_| file.sync_data())
                    .map_err(|e| StateError::io("write", path, e))?;
                return Ok(StateLock {
                    file,
                    path: path.to_owned(),
                    tenant: tenant.clone(),
                    info,
                });
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

/// This machine's name, for lock holders and worker ids.
pub(crate) fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
