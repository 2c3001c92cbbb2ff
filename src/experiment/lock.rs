//! Exclusive locks on run folders and cache folders, across processes and hosts sharing a
//! filesystem, so two `harness run` processes never write the same results.
//!
//! A lock is a `.lock` file created with `create_new`, holding its owner: host, pid and a
//! random token. While held, a background thread touches it every [`HEARTBEAT`]. A lock is
//! stale when its owner is on this host and its pid is gone, or, for an owner on another host
//! (whose pids this host cannot see), when the file has not been touched for [`STALE_AFTER`].
//!
//! A stale lock is taken over safely: the taker renames it to a name of its own (only one of
//! several racing takers can rename a given file), checks that what it renamed is the lock it
//! judged stale (same token), and only then deletes it and competes with `create_new` like any
//! new owner. A taker that renamed a fresh lock by mistake (one that replaced the stale lock
//! in between) puts it back with a hard link, which fails rather than overwrite a newer lock.

use crate::store;
use serde::{Deserialize, Serialize};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// How often a held lock is touched.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A lock of another host untouched for this long is stale (six missed heartbeats).
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// How often a waiting process looks at a held lock.
const POLL: Duration = Duration::from_millis(250);

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the lock.
    #[error(
        "{dir} is in use by another harness process ({owner}); wait for it to finish, or delete {lock} if that process is gone"
    )]
    Held {
        /// The locked folder.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The owner, as `pid N on HOST`.
        owner: String,
    },
    /// The lock file could not be created.
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
    /// Unique per acquisition (time and a counter), so a taker can tell one lock from its
    /// replacement.
    pub token: String,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {}", self.pid, self.host)
    }
}

impl Owner {
    fn this_process() -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            host: store::hostname(),
            pid: std::process::id(),
            token: format!(
                "{nanos:x}-{:x}",
                ACQUISITIONS.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }
}

/// Locks this process has tried to take, so that two acquisitions in the same nanosecond still
/// get different tokens.
static ACQUISITIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What a lock file says about its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// No lock file.
    Free,
    /// Held by a live owner (as far as this host can tell).
    Held(Owner),
    /// Left by an owner that is gone (or an unreadable file).
    Stale(Option<Owner>),
}

/// The state of the lock on `dir`.
pub fn state(dir: &Path) -> LockState {
    let path = dir.join(".lock");
    let Ok(text) = fs::read_to_string(&path) else {
        return if path.exists() {
            LockState::Stale(None)
        } else {
            LockState::Free
        };
    };
    let Some(owner) = parse(&text) else {
        // Written by a process that died between creating and filling it, or damaged.
        return match age(&path) {
            Some(a) if a < STALE_AFTER => LockState::Held(Owner {
                host: "?".into(),
                pid: 0,
                token: String::new(),
            }),
            _ => LockState::Stale(None),
        };
    };
    let alive = if owner.host == store::hostname() {
        store::process_alive(owner.pid)
    } else {
        age(&path).is_some_and(|a| a < STALE_AFTER)
    };
    if alive {
        LockState::Held(owner)
    } else {
        LockState::Stale(Some(owner))
    }
}

fn parse(text: &str) -> Option<Owner> {
    serde_json::from_str(text).ok().or_else(|| {
        // The format before hosts were recorded: a bare pid, from this host.
        let pid = text.trim().parse().ok()?;
        Some(Owner {
            host: store::hostname(),
            pid,
            token: "pid-only".into(),
        })
    })
}

/// Time since `path` was last modified.
fn age(path: &Path) -> Option<Duration> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    Some(
        SystemTime::now()
            .duration_since(modified)
            .unwrap_or_default(),
    )
}

/// Held while a folder is being written; released on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl RunLock {
    /// Takes the lock on `dir` (creating the folder), or fails at once if a live process holds
    /// it.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        Self::take(dir, None::<fn(&Owner)>)
    }

    /// Takes the lock on `dir`, waiting while a live process holds it; `waiting` is called
    /// once, with the owner, when the wait begins.
    pub fn wait(dir: &Path, waiting: impl FnOnce(&Owner)) -> Result<Self, LockError> {
        Self::take(dir, Some(waiting))
    }

    fn take(dir: &Path, mut waiting: Option<impl FnOnce(&Owner)>) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(".lock");
        let me = Owner::this_process();
        let wait = waiting.is_some();
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let text = serde_json::to_string(&me).expect("an owner serialises");
                    f.write_all(text.as_bytes()).map_err(io)?;
                    f.sync_all().map_err(io)?;
                    return Ok(Self::held(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
            match state(dir) {
                LockState::Free => {}
                LockState::Stale(owner) => take_over(&path, owner.as_ref(), &me).map_err(io)?,
                // (An empty token: a lock file still being written; look again.)
                LockState::Held(owner) if owner.token.is_empty() => {}
                LockState::Held(owner) => {
                    if !wait {
                        return Err(LockError::Held {
                            dir: dir.to_path_buf(),
                            lock: path,
                            owner: owner.to_string(),
                        });
                    }
                    if let Some(f) = waiting.take() {
                        f(&owner);
                    }
                }
            }
            std::thread::sleep(POLL);
        }
    }

    fn held(path: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, file) = (Arc::clone(&stop), path.clone());
        std::thread::spawn(move || {
            let mut last = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= HEARTBEAT {
                    if let Ok(f) = OpenOptions::new().append(true).open(&file) {
                        let _ = f.set_modified(SystemTime::now());
                    }
                    last = Instant::now();
                }
            }
        });
        Self { path, stop }
    }
}

/// Removes the stale lock at `path` that `owner` left, unless it was replaced meanwhile.
fn take_over(path: &Path, owner: Option<&Owner>, me: &Owner) -> std::io::Result<()> {
    let aside = path.with_file_name(format!(".lock.stale-{}-{}", me.host, me.token));
    match fs::rename(path, &aside) {
        Ok(()) => {}
        // Another taker moved it first.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    let moved = fs::read_to_string(&aside).ok().and_then(|t| parse(&t));
    if moved.as_ref() != owner && moved.is_some() {
        // A fresh lock replaced the stale one between our look and our rename: put it back
        // (a hard link never overwrites a lock created since).
        let _ = fs::hard_link(&aside, path);
    }
    fs::remove_file(&aside)
}

impl Drop for RunLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("in use by another harness process"),
            "{err}"
        );
        assert!(
            err.to_string().contains(&store::hostname()),
            "the owner's host is named: {err}"
        );
        drop(first);
        let again = RunLock::acquire(dir.path()).unwrap();
        drop(again);
        assert!(!dir.path().join(".lock").exists());
    }

    #[test]
    fn a_lock_records_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let _lock = RunLock::acquire(dir.path()).unwrap();
        match state(dir.path()) {
            LockState::Held(o) => {
                assert_eq!((o.host, o.pid), (store::hostname(), std::process::id()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stale_locks_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(".lock");
        // The old format, a bare pid: pid 0 never names a user process in /proc.
        fs::write(&lock, "0").unwrap();
        assert!(matches!(state(dir.path()), LockState::Stale(_)));
        drop(RunLock::acquire(dir.path()).unwrap());
        // A dead pid on this host.
        let dead = Owner {
            host: store::hostname(),
            pid: 0,
            token: "t".into(),
        };
        fs::write(&lock, serde_json::to_string(&dead).unwrap()).unwrap();
        assert_eq!(state(dir.path()), LockState::Stale(Some(dead)));
        drop(RunLock::acquire(dir.path()).unwrap());
        // Another host's lock: live while touched, stale once untouched for STALE_AFTER.
        let remote = Owner {
            host: "some-other-node".into(),
            pid: 1,
            token: "r".into(),
        };
        fs::write(&lock, serde_json::to_string(&remote).unwrap()).unwrap();
        assert_eq!(state(dir.path()), LockState::Held(remote.clone()));
        let old = SystemTime::now() - STALE_AFTER - Duration::from_secs(1);
        fs::File::options()
            .append(true)
            .open(&lock)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(state(dir.path()), LockState::Stale(Some(remote)));
        let _lock = RunLock::acquire(dir.path()).unwrap();
        assert!(matches!(state(dir.path()), LockState::Held(o) if o.pid == std::process::id()));
    }

    #[test]
    fn a_waiter_gets_the_lock_when_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let path = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let mut waited = None;
            let lock = RunLock::wait(&path, |o| waited = Some(o.clone())).unwrap();
            (lock, waited)
        });
        std::thread::sleep(Duration::from_millis(600));
        drop(first);
        let (_lock, waited) = waiter.join().unwrap();
        assert_eq!(waited.map(|o| o.pid), Some(std::process::id()));
    }

    #[test]
    fn racing_takers_of_a_stale_lock_end_with_one_owner_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let dead = Owner {
            host: store::hostname(),
            pid: 0,
            token: "dead".into(),
        };
        fs::write(
            dir.path().join(".lock"),
            serde_json::to_string(&dead).unwrap(),
        )
        .unwrap();
        let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (path, inside) = (dir.path().to_path_buf(), Arc::clone(&inside));
                std::thread::spawn(move || {
                    let _lock = RunLock::wait(&path, |_| {}).unwrap();
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
