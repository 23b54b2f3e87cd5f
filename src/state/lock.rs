//! Tenant locks: who holds one, what a caller asks for, and the held lock itself.
//!
//! The public lock API, the same for every backend:
//!
//! ```text
//! let lock = store.lock(&tenant, &LockRequest {
//!     operation: "apply".into(),
//!     timeout: Duration::from_secs(30),            // ZERO: fail at once when held
//!     run: Some(RunRef { id: run_id, attempt: 2 }), // the run this lock acts for, if any
//!     user: Some("ci-bot".into()),                  // who, as the holder is shown
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
//!
//! A lock file is complete before anyone can see it: the acquirer writes its holder
//! record to a private temp file, locks it, and only then links it to `<id>.lock`
//! (`link` fails when the name exists, so exactly one acquirer wins). A run that finds
//! the lock taken therefore always reads a whole record and can name the holder.
//!
//! The kernel releases an `flock` when its process dies; the file of a dead holder is
//! then unlocked, and the next acquirer removes it (holding its lock, so that two
//! acquirers never both remove) and links its own. `force-unlock` breaks a lock held by
//! a live but stuck process by unlinking the file: the stuck process keeps a lock on a
//! file that no longer has a name, and the next run links a fresh one. A holder removes
//! the file on release only while it is still the one at the path.

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
            user: request.user.clone().unwrap_or_else(|| "unknown".into()),
            since: Utc::now(),
            run: request.run,
            expires_at: None,
        }
    }
}

impl LockInfo {
    /// Why the holder is taken to be alive, or `None` when it is not: a lease whose
    /// heartbeat has renewed it (it has not expired), or a local lock, which exists only
    /// while its process holds the file lock. A holder on this machine whose process is
    /// stopped (SIGSTOP, a debugger) is alive too, and said so.
    pub fn alive(&self) -> Option<String> {
        let process = if self.host == host_name() {
            match process_state(self.pid) {
                Some('T') | Some('t') => format!("process {} is stopped, not gone", self.pid),
                Some(_) => format!("process {} is running", self.pid),
                None => format!("process {} is not on this machine", self.pid),
            }
        } else {
            format!("process {} is on {}", self.pid, self.host)
        };
        match self.expires_at {
            Some(expires) if expires < Utc::now() => None,
            Some(expires) => Some(format!(
                "its lease is renewed by its heartbeat until {} ({process})",
                expires.to_rfc3339_opts(SecondsFormat::Secs, true)
            )),
            None => Some(format!("it holds the lock file ({process})")),
        }
    }
}

/// The state letter of a process on this machine (`R`, `S`, `T` for stopped, ...), from
/// `/proc/PID/stat`; `None` when there is no such process (or no /proc).
fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMMAND) STATE ...": the command may hold spaces and parentheses.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
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
    /// Who takes it, as others see the holder (the engine passes its environment's
    /// `USER`); `None`: "unknown".
    pub user: Option<String>,
}

impl LockRequest {
    /// A request for `operation` by no particular run.
    pub fn new(operation: impl Into<String>, timeout: Duration) -> Self {
        LockRequest {
            operation: operation.into(),
            timeout,
            run: None,
            user: None,
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

    /// The tenant the lock is on.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Who holds the lock, as recorded with it.
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
/// How long a lock file may look odd (its holder's process gone while another run
/// clears it away) before that is reported; it lasts microseconds.
const SETTLE: Duration = Duration::from_secs(1);

pub(super) fn acquire(
    path: &Path,
    tenant: &TenantId,
    request: &LockRequest,
) -> Result<StateLock, StateError> {
    let timeout = request.timeout;
    let started = Instant::now();
    let id = Uuid::new_v4();
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{id}.tmp"));
    loop {
        let info = LockInfo {
            id,
            ..LockInfo::of_this_process(request)
        };
        let file = write_locked_record(&tmp, &info)?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                let held = Held::File(FileLock {
                    file,
                    path: path.to_owned(),
                });
                return Ok(StateLock::new(tenant.clone(), info, held));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => drop(file),
            Err(e) => return Err(StateError::io("link", path, e)),
        }

        // Another file holds the name: a holder's, or one left by a process that died.
        let mut existing = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            // Released in the meantime: try again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StateError::io("open", path, e)),
        };
        match existing.try_lock() {
            Ok(()) => {
                // Nobody holds it: its holder died. Remove it while holding its lock,
                // and only while it is still the file at the path.
                if same_file(&existing, path) {
                    let _ = fs::remove_file(path);
                }
                drop(existing);
            }
            Err(fs::TryLockError::WouldBlock) => {
                let holder = read_info(&mut existing)
                    .filter(|h| same_file(&existing, path) && !holder_is_gone(h));
                drop(existing);
                let waited = started.elapsed();
                match holder {
                    Some(holder) if waited >= timeout => {
                        return Err(StateError::Locked {
                            tenant: tenant.clone(),
                            holder: Box::new(holder),
                        });
                    }
                    Some(_) => {
                        std::thread::sleep(POLL.min(timeout.saturating_sub(waited)));
                    }
                    // The file changed under us, or a run is clearing a dead holder's
                    // file: look again in a moment.
                    None if waited < timeout.saturating_add(SETTLE) => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    None => {
                        return Err(StateError::Locked {
                            tenant: tenant.clone(),
                            holder: Box::new(holder_of(path).unwrap_or_else(unknown_holder)),
                        });
                    }
                }
            }
            Err(fs::TryLockError::Error(e)) => return Err(StateError::io("lock", path, e)),
        }
    }
}

/// Creates `tmp` (mode 0600) holding `info`, flushed and locked: ready to be linked.
fn write_locked_record(tmp: &Path, info: &LockInfo) -> Result<File, StateError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .or_else(|e| {
            // Left by an attempt of ours that failed between create and remove.
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                let _ = fs::remove_file(tmp);
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(tmp)
            } else {
                Err(e)
            }
        })
        .map_err(|e| StateError::io("create", tmp, e))?;
    let json = serde_json::to_vec(info).expect("lock info serializes");
    let written = file
        .write_all(&json)
        .and_then(|_| file.sync_data())
        .map_err(|e| StateError::io("write", tmp, e))
        .and_then(|_| match file.try_lock() {
            Ok(()) => Ok(()),
            Err(fs::TryLockError::WouldBlock) => Err(StateError::io(
                "lock",
                tmp,
                std::io::Error::other("a private temp file is locked by someone else"),
            )),
            Err(fs::TryLockError::Error(e)) => Err(StateError::io("lock", tmp, e)),
        });
    if let Err(e) = written {
        let _ = fs::remove_file(tmp);
        return Err(e);
    }
    Ok(file)
}

/// Whether the process that wrote `holder` has ended (known only on this host).
fn holder_is_gone(holder: &LockInfo) -> bool {
    holder.host == host_name()
        && holder.pid != std::process::id()
        && !Path::new(&format!("/proc/{}", holder.pid)).exists()
}

fn holder_of(path: &Path) -> Option<LockInfo> {
    holder(path).ok().flatten()
}

fn unknown_holder() -> LockInfo {
    LockInfo {
        id: Uuid::nil(),
        operation: "an operation that has not yet said who it is".into(),
        pid: 0,
        host: "unknown".into(),
        user: "unknown".into(),
        since: Utc::now(),
        run: None,
        expires_at: None,
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
        .unwrap_or_else(|| "unknown".into())
}
