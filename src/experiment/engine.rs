//! The stage engine: runs a stage unless a completion record with the same key says it is done.
//!
//! A stage whose outputs live in the run folder records itself in `stages/<name>.json`. A stage
//! whose outputs live in a shared cache folder (features, train, embed) records itself in
//! `<cache>/stage.json` too, holds that folder's lock while it runs, and the run folder gets a
//! `<name>` symlink to it. A record is written only after the stage body returned, so a stage that
//! failed or was interrupted runs again next time.
//!
//! A record also lists the size and CRC-32 of every file the stage wrote ([`digest`]). Reuse
//! checks them first (unless `--no-verify`): a file that is missing, truncated or overwritten
//! is named in a warning and the stage runs again, so a damaged artifact never reaches a
//! metric. Records without checksums (written by an older harness) are not trusted either.

use super::lock::RunLock;
use super::{ExperimentError, RunOutcome, manifest};
use crate::artifacts::RunLayout;
use crate::store::digest::{self, FileSum};
use crate::store::{self, StoreError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Completion record of a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StageRecord {
    pub stage: String,
    /// The key the stage ran under: the run's config hash, or the cache key.
    pub config_hash: String,
    pub finished_at: String,
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub cache_dir: Option<String>,
    /// Every file the stage wrote, relative to its folder; `None` in records of older versions.
    #[serde(default)]
    pub files: Option<Vec<FileSum>>,
}

/// The record of `stage` in the run folder `run`, if it finished.
pub(crate) fn stage_record(run: &RunLayout, stage: &str) -> Option<StageRecord> {
    read_record(&run.stage_record(stage))
}

/// Executes stages, skipping those whose completion record matches their key.
pub(crate) struct Stages<'a> {
    /// The run folder's layout.
    pub layout: RunLayout,
    /// The run folder.
    pub run_dir: &'a Path,
    pub progress: bool,
    /// Without bars (stderr not a terminal, and not `--quiet`): one plain line when a stage
    /// starts, reruns or is reused, and one when it ends, with its seconds (for logs).
    pub lines: bool,
    /// Check the recorded checksums before reusing a stage.
    pub verify: bool,
    /// Images the next stage processes (set before it, cleared by it): its end line then gives
    /// images/s.
    pub images: Option<usize>,
    pub outcome: RunOutcome,
}

impl<'a> Stages<'a> {
    /// An engine for the run folder `run_dir`, nothing run yet.
    pub fn new(run_dir: &'a Path, progress: bool) -> Self {
        Self {
            layout: RunLayout::new(run_dir),
            run_dir,
            progress,
            lines: false,
            verify: true,
            images: None,
            outcome: RunOutcome {
                dir: run_dir.to_path_buf(),
                ran: Vec::new(),
                reused: Vec::new(),
            },
        }
    }

    /// A stage whose outputs live in the run folder, at the files or folders `outputs`
    /// (relative to it); its record is `stages/<name>.json`.
    pub fn run(
        &mut self,
        name: &str,
        key: &str,
        outputs: &[&str],
        body: impl FnOnce() -> Result<(), ExperimentError>,
    ) -> Result<(), ExperimentError> {
        let record = self.layout.stage_record(name);
        if self.reusable(name, &record, key, self.run_dir) {
            self.reused(name);
            return Ok(());
        }
        store::remove_stale_temps(self.run_dir);
        let seconds = self.timed(name, body)?;
        let files = digest::sum_paths(self.run_dir, outputs)?;
        write_record(&record, name, key, seconds, None, files)?;
        self.outcome.ran.push(name.to_string());
        Ok(())
    }

    /// Whether the record at `record` says the stage ran under `key` and (when verifying) every
    /// file it lists under `root` is intact; says why not when it was close.
    fn reusable(&self, name: &str, record: &Path, key: &str, root: &Path) -> bool {
        let Some(r) = read_record(record).filter(|r| r.config_hash == key) else {
            return false;
        };
        if !self.verify {
            return true;
        }
        let problem = match &r.files {
            None => format!(
                "{} has no checksums (written by an older harness)",
                record.display()
            ),
            Some(files) => match digest::verify(root, files) {
                Ok(()) => return true,
                Err(m) => m.to_string(),
            },
        };
        crate::progress::println(&format!(
            "warning: stage {name}: {problem}; running it again"
        ));
        false
    }

    /// A stage whose outputs live in a shared cache folder `dir` (locked while it runs); the run
    /// folder gets a `<name>` symlink to it and a record in `stages/<name>.json`.
    pub fn run_cached(
        &mut self,
        name: &str,
        key: &str,
        dir: &Path,
        body: impl FnOnce(&Path) -> Result<(), ExperimentError>,
    ) -> Result<(), ExperimentError> {
        let cache_record = dir.join(CACHE_RECORD);
        let record = self.layout.stage_record(name);
        if self.reusable(name, &cache_record, key, dir) {
            self.reused(name);
        } else {
            // Another process (a sweep's other task, perhaps on another host) may be computing
            // this entry: wait for it, then reuse what it wrote instead of computing it again.
            let lines = self.lines;
            let _lock = RunLock::wait(dir, super::lock::wait_timeout()?, |owner| {
                let message = format!("stage {name}: waiting for {owner}, which is computing it");
                if lines {
                    eprintln!("{message}");
                } else {
                    crate::progress::println(&message);
                }
            })?;
            if self.reusable(name, &cache_record, key, dir) {
                self.reused(name);
            } else {
                store::remove_stale_temps(dir);
                let seconds = self.timed(name, || body(dir))?;
                let mut files = digest::sum_paths(dir, &[""])?;
                files.retain(|f| f.path != CACHE_RECORD);
                write_record(&cache_record, name, key, seconds, None, files)?;
                self.outcome.ran.push(name.to_string());
            }
        }
        link(dir, &self.layout.stage(name));
        let seconds = read_record(&cache_record).map_or(0.0, |r| r.seconds);
        Ok(write_record(
            &record,
            name,
            key,
            seconds,
            Some(dir),
            Vec::new(),
        )?)
    }

    fn reused(&mut self, name: &str) {
        self.images = None;
        if self.lines {
            eprintln!("stage {name}: reused");
        }
        self.outcome.reused.push(name.to_string());
    }

    fn timed(
        &mut self,
        name: &str,
        body: impl FnOnce() -> Result<(), ExperimentError>,
    ) -> Result<f64, ExperimentError> {
        let images = self.images.take();
        let spinner = self
            .progress
            .then(|| crate::progress::spinner(format!("stage {name}")));
        if self.lines {
            eprintln!("stage {name}: started");
        }
        store::fault::enter(name);
        let started = std::time::Instant::now();
        let result = body();
        let seconds = started.elapsed().as_secs_f64();
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        if self.lines {
            match &result {
                Ok(()) => match images {
                    Some(n) => eprintln!(
                        "stage {name}: done in {seconds:.1} s ({n} images, {:.0} images/s)",
                        n as f64 / seconds.max(1e-9)
                    ),
                    None => eprintln!("stage {name}: done in {seconds:.1} s"),
                },
                Err(_) => eprintln!("stage {name}: failed after {seconds:.1} s"),
            }
        }
        result.map(|()| seconds)
    }
}

/// The record a cached stage keeps in its own folder.
const CACHE_RECORD: &str = "stage.json";

fn read_record(path: &Path) -> Option<StageRecord> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn write_record(
    path: &Path,
    name: &str,
    key: &str,
    seconds: f64,
    cache: Option<&Path>,
    files: Vec<FileSum>,
) -> Result<(), StoreError> {
    let record = StageRecord {
        stage: name.into(),
        config_hash: key.into(),
        finished_at: manifest::now(),
        seconds,
        cache_dir: cache.map(|c| c.display().to_string()),
        // A run folder's record of a cached stage points at the cache, which is verified.
        files: (cache.is_none()).then_some(files),
    };
    store::write_json_atomic(path, &record)
}

/// Points `at` to `target` with a symlink (best effort: the stage record names the folder too).
fn link(target: &Path, at: &Path) {
    let target = target
        .canonicalize()
        .unwrap_or_else(|_| target.to_path_buf());
    if std::fs::read_link(at).is_ok_and(|t| t == target) {
        return;
    }
    let _ = std::fs::remove_file(at);
    #[cfg(unix)]
    let _ = std::os::unix::fs::symlink(&target, at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn failing() -> Result<(), ExperimentError> {
        Err(ExperimentError::Iwan("the body failed".into()))
    }

    #[test]
    fn a_stage_runs_once_per_key() {
        let tmp = tempfile::tempdir().unwrap();
        let calls = Cell::new(0);
        let body = || {
            calls.set(calls.get() + 1);
            Ok(())
        };
        let mut st = Stages::new(tmp.path(), false);
        st.run("data", "k1", &[], body).unwrap();
        st.run("data", "k1", &[], body).unwrap();
        assert_eq!(calls.get(), 1);
        assert_eq!(st.outcome.ran, ["data"]);
        assert_eq!(st.outcome.reused, ["data"]);
        let record = stage_record(&RunLayout::new(tmp.path()), "data").unwrap();
        assert_eq!(
            (record.stage.as_str(), record.config_hash.as_str()),
            ("data", "k1")
        );
        assert_eq!(record.cache_dir, None);
        // Another key (an edited config) runs the stage again and replaces the record.
        let mut st = Stages::new(tmp.path(), false);
        st.run("data", "k2", &[], body).unwrap();
        assert_eq!(calls.get(), 2);
        assert_eq!(
            stage_record(&RunLayout::new(tmp.path()), "data")
                .unwrap()
                .config_hash,
            "k2"
        );
    }

    #[test]
    fn a_failed_stage_leaves_no_record_and_runs_again() {
        let tmp = tempfile::tempdir().unwrap();
        let mut st = Stages::new(tmp.path(), false);
        let err = st.run("eval", "k", &[], failing).unwrap_err();
        assert!(err.to_string().contains("the body failed"), "{err}");
        assert!(stage_record(&RunLayout::new(tmp.path()), "eval").is_none());
        assert!(st.outcome.ran.is_empty());
        let ran = Cell::new(false);
        st.run("eval", "k", &[], || {
            ran.set(true);
            Ok(())
        })
        .unwrap();
        assert!(ran.get());
    }

    #[test]
    fn a_cached_stage_is_shared_between_run_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache").join("train-0123");
        let (run_a, run_b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&run_a).unwrap();
        std::fs::create_dir_all(&run_b).unwrap();
        let calls = Cell::new(0);
        let body = |out: &Path| {
            calls.set(calls.get() + 1);
            std::fs::write(out.join("model.bpk"), b"weights").map_err(|e| {
                ExperimentError::Store(StoreError::Write {
                    path: out.to_path_buf(),
                    source: e,
                })
            })
        };
        let mut a = Stages::new(&run_a, false);
        a.run_cached("train", "key", &cache, body).unwrap();
        let mut b = Stages::new(&run_b, false);
        b.run_cached("train", "key", &cache, body).unwrap();
        assert_eq!(calls.get(), 1, "the second run folder reuses the cache");
        assert_eq!((a.outcome.ran.len(), b.outcome.reused.len()), (1, 1));
        for run in [&run_a, &run_b] {
            assert_eq!(
                std::fs::read(run.join("train").join("model.bpk")).unwrap(),
                b"weights",
                "{} links to the cache folder",
                run.display()
            );
            let record = stage_record(&RunLayout::new(run), "train").unwrap();
            assert_eq!(record.cache_dir.as_deref(), Some(cache.to_str().unwrap()));
        }
        // The cache's own record is what decides reuse: without it the stage runs again.
        std::fs::remove_file(cache.join("stage.json")).unwrap();
        Stages::new(&run_b, false)
            .run_cached("train", "key", &cache, body)
            .unwrap();
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn a_torn_record_counts_as_not_done() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("stages")).unwrap();
        std::fs::write(tmp.path().join("stages/data.json"), b"{\"stage\": \"da").unwrap();
        let ran = Cell::new(false);
        Stages::new(tmp.path(), false)
            .run("data", "k", &[], || {
                ran.set(true);
                Ok(())
            })
            .unwrap();
        assert!(ran.get());
    }

    /// A stage writing one hand-made output file (unit test of the engine only).
    fn write_output(dir: &Path, bytes: &[u8]) -> Result<(), ExperimentError> {
        Ok(store::write_bytes_atomic(&dir.join("out.npy"), bytes)?)
    }

    #[test]
    fn a_damaged_output_is_found_and_the_stage_runs_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let calls = Cell::new(0);
        let body = || {
            calls.set(calls.get() + 1);
            write_output(dir, &[1u8; 4096])
        };
        Stages::new(dir, false)
            .run("embed", "k", &["out.npy"], body)
            .unwrap();
        let record = stage_record(&RunLayout::new(dir), "embed").unwrap();
        let files = record.files.unwrap();
        assert_eq!((files[0].path.as_str(), files[0].bytes), ("out.npy", 4096));
        Stages::new(dir, false)
            .run("embed", "k", &["out.npy"], body)
            .unwrap();
        assert_eq!(calls.get(), 1, "intact outputs are reused");
        // Overwrite bytes in the middle, keeping the size: found, and the stage reruns.
        let mut bytes = std::fs::read(dir.join("out.npy")).unwrap();
        bytes[2000..2100].fill(9);
        std::fs::write(dir.join("out.npy"), &bytes).unwrap();
        let mut st = Stages::new(dir, false);
        st.run("embed", "k", &["out.npy"], body).unwrap();
        assert_eq!((calls.get(), st.outcome.ran.len()), (2, 1));
        assert_eq!(std::fs::read(dir.join("out.npy")).unwrap(), [1u8; 4096]);
        // With verification off, the damage goes unnoticed, as the user asked.
        std::fs::write(dir.join("out.npy"), b"short").unwrap();
        let mut st = Stages::new(dir, false);
        st.verify = false;
        st.run("embed", "k", &["out.npy"], body).unwrap();
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn a_damaged_cache_file_is_recomputed_for_every_run_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("embed-0123");
        let run = tmp.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        let calls = Cell::new(0);
        let body = |out: &Path| {
            calls.set(calls.get() + 1);
            write_output(out, &[3u8; 100])
        };
        Stages::new(&run, false)
            .run_cached("embed", "k", &cache, body)
            .unwrap();
        let cached = read_record(&cache.join(CACHE_RECORD)).unwrap();
        let names: Vec<String> = cached.files.unwrap().into_iter().map(|f| f.path).collect();
        assert_eq!(
            names,
            ["out.npy"],
            "the record lists the outputs, not itself"
        );
        std::fs::remove_file(cache.join("out.npy")).unwrap();
        Stages::new(&run, false)
            .run_cached("embed", "k", &cache, body)
            .unwrap();
        assert_eq!(calls.get(), 2);
        Stages::new(&run, false)
            .run_cached("embed", "k", &cache, body)
            .unwrap();
        assert_eq!(calls.get(), 2, "recomputed once, then reused");
    }

    #[test]
    fn a_record_without_checksums_is_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let record = StageRecord {
            stage: "data".into(),
            config_hash: "k".into(),
            finished_at: "then".into(),
            seconds: 1.0,
            cache_dir: None,
            files: None,
        };
        store::write_json_atomic(&dir.join("stages/data.json"), &record).unwrap();
        let ran = Cell::new(false);
        Stages::new(dir, false)
            .run("data", "k", &[], || {
                ran.set(true);
                Ok(())
            })
            .unwrap();
        assert!(ran.get());
        assert_eq!(
            stage_record(&RunLayout::new(dir), "data").unwrap().files,
            Some(Vec::new())
        );
    }
}
