//! Fault injection for the kill-and-resume tests (in the spirit of FoundationDB's "buggify"):
//! with `HARNESS_FAULT=<stage>:<n>` in the environment, the process aborts just before the
//! `n`-th atomic rename made while `<stage>` runs: its temporary file is complete and synced,
//! nothing is renamed yet, no destructor runs and no lock is released. That is the worst moment
//! a `kill -9` or a power cut can pick. Without the variable this is one relaxed atomic load per
//! atomic write.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The environment variable.
pub const FAULT_ENV: &str = "HARNESS_FAULT";

static STAGE: Mutex<String> = Mutex::new(String::new());
static RENAMES: AtomicUsize = AtomicUsize::new(0);

/// Marks the start of `stage` (the engine's stages, and `report` for `harness report`).
pub fn enter(stage: &str) {
    if let Ok(mut s) = STAGE.lock() {
        s.clear();
        s.push_str(stage);
    }
    RENAMES.store(0, Ordering::Relaxed);
}

/// Called by [`super::write_atomic`] before renaming its temporary file over `path`.
pub(crate) fn before_rename(path: &Path) {
    let n = RENAMES.fetch_add(1, Ordering::Relaxed) + 1;
    let Some((stage, at)) = armed() else {
        return;
    };
    let current = STAGE.lock().map(|s| s.clone()).unwrap_or_default();
    if current == stage && n == at {
        eprintln!(
            "{FAULT_ENV}: aborting in stage {stage} before rename {n} ({})",
            path.display()
        );
        std::process::abort();
    }
}

/// `(stage, n)` from the environment, read once.
fn armed() -> Option<(String, usize)> {
    static ARMED: std::sync::OnceLock<Option<(String, usize)>> = std::sync::OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(FAULT_ENV).ok()?;
            let (stage, n) = spec.rsplit_once(':')?;
            Some((stage.to_string(), n.parse().ok()?))
        })
        .clone()
}
