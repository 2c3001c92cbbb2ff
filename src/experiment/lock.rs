//! Exclusive locks on run folders and cache folders, so two `harness run` processes never write
//! the same results.
//!
//! Mutual exclusion is the kernel's: a lock is an exclusive `flock` on the folder's `.lock`
//! file ([`File::try_lock`]), held for as long as the [`RunLock`] lives. The kernel drops it
//! when the process ends, however it ends (SIGKILL, a crash, the node's OOM killer), so no lock
//! outlives its owner and none has to be judged stale. The file itself is never deleted: a
//! process that deleted it could not know that it still named the file another process had
//! locked. Inside the file the owner writes who it is (host, pid, since when), for messages and
//! `harness status`; it empties the record before it lets go.
//!
//! On a shared filesystem: Linux's NFS client turns `flock` into a lock on the server (NFSv4,
//! or NLM for NFSv3), so processes on different nodes exclude each other; a node that dies
//! loses its locks when the server's lease ends (90 s by default for NFSv4). A filesystem
//! mounted with `nolock` (or `local_lock=flock`) keeps locks per node and does not exclude
//! processes on different nodes.

use crate::store;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a waiting process tries the lock again.
const POLL: Duration = Duration::from_millis(100);
/// How long [`RunLock::acquire`] keeps trying a lock whose holder has not written its record
/// yet (one starting, or a `harness status` looking at the lock).
const SETTLE: Duration = Duration::from_secs(2);
/// How long a process waits for a locked cache folder unless `HARNESS_LOCK_TIMEOUT` says
/// otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(4 * 3600);
/// Environment variable that bounds the wait for a locked cache folder (`90s`, `2h`, ...).
pub const WAIT_ENV: &str = "HARNESS_LOCK_TIMEOUT";

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the lock.
    #[error("{dir} is in use by another harness process ({owner}); wait for it to finish")]
    Held {
        /// The locked folder.
        dir: PathBuf,
        /// The owner, as `pid N on HOST since T`.
        owner: String,
    },
    /// The wait for a lock ran out.
    #[error(
        "gave up after {waited:.1} s waiting for {dir}: {owner} still holds it (if that process is stopped or hung, end it; to wait longer set {WAIT_ENV}, e.g. {WAIT_ENV}=8h)",
        waited = .waited.as_secs_f64()
    )]
    Timeout {
        /// The locked folder.
        dir: PathBuf,
        /// The owner.
        owner: String,
        /// How long this process waited.
        waited: Duration,
    },
    /// `HARNESS_LOCK_TIMEOUT` is not a duration.
    #[error("{WAIT_ENV}=`{value}` is not a duration such as 90s, 30m or 2h")]
    BadTimeout {
        /// The value given.
        value: String,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {dir}: {source}")]
    Io {
        /// The folder.
        dir: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The owner a lock file records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Host name.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// When it took the lock (RFC 3339).
    #[serde(default)]
    pub since: String,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {}", self.pid, self.host)?;
        if !self.since.is_empty() {
            write!(f, " since {}", self.since)?;
        }
        Ok(())
    }
}

impl Owner {
    fn this_process() -> Self {
        Self {
            host: store::hostname(),
            pid: std::process::id(),
            since: super::manifest::now(),
        }
    }
}

/// Who holds the lock on a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// Nobody.
    Free,
    /// A live process; its record, if it has written one yet.
    Held(Option<Owner>),
}

fn lock_path(dir: &Path) -> PathBuf {
    dir.join(".lock")
}

fn read_owner(file: &mut File) -> Option<Owner> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// Who holds the lock on `dir`, asked of the kernel (a shared lock taken and dropped at once).
pub fn state(dir: &Path) -> LockState {
    let Ok(mut file) = File::open(lock_path(dir)) else {
        return LockState::Free;
    };
    match file.try_lock_shared() {
        Ok(()) => LockState::Free,
        Err(_) => LockState::Held(read_owner(&mut file)),
    }
}

/// The wait bound for a locked cache folder: `HARNESS_LOCK_TIMEOUT`, else [`DEFAULT_WAIT`].
pub fn wait_timeout() -> Result<Duration, LockError> {
    match std::env::var(WAIT_ENV) {
        Ok(value) if !value.trim().is_empty() => {
            humantime::parse_duration(value.trim()).map_err(|_| LockError::BadTimeout { value })
        }
        _ => Ok(DEFAULT_WAIT),
    }
}

/// Held while a folder is being written; the kernel releases it when this is dropped or the
/// process ends.
#[derive(Debug)]
pub struct RunLock {
    file: File,
}

impl RunLock {
    /// Takes the lock on `dir` (creating the folder), or fails if a live process holds it.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        Self::take(dir, SETTLE, None::<fn(&str)>)
    }

    /// Takes the lock on `dir`, waiting at most `timeout` while another process holds it;
    /// `waiting` is called once, with the owner, when the wait begins.
    pub fn wait(
        dir: &Path,
        timeout: Duration,
        waiting: impl FnOnce(&str),
    ) -> Result<Self, LockError> {
        Self::take(dir, timeout, Some(waiting))
    }

    fn take(
        dir: &Path,
        timeout: Duration,
        mut waiting: Option<impl FnOnce(&str)>,
    ) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path(dir))
            .map_err(io)?;
        let started = Instant::now();
        let wait = waiting.is_some();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
            // A record whose process is gone (on this host) was left by a killed holder: the
            // lock is only being looked at, by `harness status` or a starting process.
            let owner = read_owner(&mut file)
                .filter(|o| o.host != store::hostname() || store::process_alive(o.pid));
            let named = owner.as_ref().map_or_else(
                || "a process that is starting".to_string(),
                Owner::to_string,
            );
            // Without a waiter, only a holder that has not written its record yet is waited
            // for, briefly.
            let patience = if wait || owner.is_none() {
                timeout
            } else {
                Duration::ZERO
            };
            if started.elapsed() >= patience {
                return Err(if wait {
                    LockError::Timeout {
                        dir: dir.to_path_buf(),
                        owner: named,
                        waited: started.elapsed(),
                    }
                } else {
                    LockError::Held {
                        dir: dir.to_path_buf(),
                        owner: named,
                    }
                });
            }
            if owner.is_some()
                && let Some(f) = waiting.take()
            {
                f(&named);
            }
            std::thread::sleep(POLL);
        }
        let record = serde_json::to_string(&Owner::this_process()).expect("an owner serialises");
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(record.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(Self { file })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Empty the record while still holding the lock; closing the file releases it.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    //! Locks taken through separate open files of one process, which `flock` treats as separate
    //! holders; tests/faults.rs takes them from separate processes, and kills them.
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn second_lock_fails_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use by another harness process"), "{err}");
        assert!(
            err.contains(&format!(
                "pid {} on {}",
                std::process::id(),
                store::hostname()
            )),
            "{err}"
        );
        drop(first);
        assert_eq!(state(dir.path()), LockState::Free);
        // The file stays (it is never deleted), its record emptied.
        assert_eq!(std::fs::read(dir.path().join(".lock")).unwrap(), b"");
        drop(RunLock::acquire(dir.path()).unwrap());
    }

    #[test]
    fn a_lock_records_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let _lock = RunLock::acquire(dir.path()).unwrap();
        match state(dir.path()) {
            LockState::Held(Some(o)) => {
                assert_eq!((o.host, o.pid), (store::hostname(), std::process::id()));
                assert!(!o.since.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_record_left_without_a_holder_is_free() {
        let dir = tempfile::tempdir().unwrap();
        // What a killed holder leaves: its record, and no lock (pid 0 is never a user process).
        let dead = Owner {
            host: store::hostname(),
            pid: 0,
            since: "2026-01-01T00:00:00Z".into(),
        };
        std::fs::write(
            dir.path().join(".lock"),
            serde_json::to_string(&dead).unwrap(),
        )
        .unwrap();
        assert_eq!(state(dir.path()), LockState::Free);
        let _lock = RunLock::acquire(dir.path()).unwrap();
        assert!(
            matches!(state(dir.path()), LockState::Held(Some(o)) if o.pid == std::process::id())
        );
    }

    #[test]
    fn a_waiter_gets_the_lock_when_it_is_released_and_times_out_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::wait(dir.path(), Duration::from_millis(300), |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("gave up after 0.3 s waiting for"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("HARNESS_LOCK_TIMEOUT=8h"), "{err}");
        let path = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let mut waited = None;
            let lock = RunLock::wait(&path, Duration::from_secs(60), |o| {
                waited = Some(o.to_string())
            })
            .unwrap();
            (lock, waited)
        });
        std::thread::sleep(Duration::from_millis(600));
        drop(first);
        let (_lock, waited) = waiter.join().unwrap();
        assert!(
            waited
                .unwrap()
                .contains(&format!("pid {}", std::process::id()))
        );
    }

    #[test]
    fn racing_takers_end_with_one_owner_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (path, inside) = (dir.path().to_path_buf(), Arc::clone(&inside));
                std::thread::spawn(move || {
                    let _lock = RunLock::wait(&path, Duration::from_secs(60), |_| {}).unwrap();
                    assert_eq!(
                        inside.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two owners at once"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
