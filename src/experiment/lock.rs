//! An exclusive lock on a run directory, so two `harness run` processes never write the same
//! results. The lock is a `.lock` file holding the owner's pid, created with `create_new`; a lock
//! left by a process that no longer exists is taken over.

use crate::store;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the lock.
    #[error(
        "{dir} is in use by another harness process (pid {pid}); wait for it to finish, or delete {lock} if that process is gone"
    )]
    Held {
        /// The locked folder.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The owner's pid.
        pid: u32,
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

/// Held while a run directory is being written; released on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock on `dir` (creating the folder).
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(".lock");
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    write!(f, "{}", std::process::id()).map_err(io)?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    match pid {
                        Some(pid) if store::process_alive(pid) => {
                            return Err(LockError::Held {
                                dir: dir.to_path_buf(),
                                lock: path,
                                pid,
                            });
                        }
                        // Stale (owner gone) or unreadable: take it over.
                        _ => fs::remove_file(&path).map_err(io)?,
                    }
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(io(std::io::Error::other("lock file keeps reappearing")))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
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
        drop(first);
        let again = RunLock::acquire(dir.path()).unwrap();
        drop(again);
        assert!(!dir.path().join(".lock").exists());
    }

    #[test]
    fn stale_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // pid 0 never names a user process in /proc.
        fs::write(dir.path().join(".lock"), "0").unwrap();
        let _lock = RunLock::acquire(dir.path()).unwrap();
    }
}
