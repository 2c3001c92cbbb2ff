//! The runner: turns a config into run directories, stage by stage.
//!
//! Layout: `<out>/<run-id>/` per run, where `<out>` defaults to `results/<experiment>/` and the
//! run id is the sweep values plus a short hash of the resolved config, so the same config
//! always maps to the same folder and an interrupted run resumes there. Each run folder holds
//! `manifest.json`, `config.resolved.yaml` and the stage outputs; a stage records its
//! completion (with the hash of the config it ran under) in `stages/<stage>.json` and is skipped
//! when that record matches. Sweeps also get `<out>/sweep.json`.

pub mod lock;
pub mod manifest;

use crate::config::{self, Loaded, Run};
use crate::data::cifar::{Cifar100, SplitName};
use crate::data::hierarchy::Hierarchy;
use crate::data::summary::{DataSummary, class_counts_csv};
use crate::data::usf::UsfNorms;
use crate::data::{DataError, DataRoot};
use crate::semantics::{
    SemanticsError, SimilarityMatrix, class_embedding, embedding_csv, similarity_csv,
};
use crate::store::{self, StoreError};
use lock::{LockError, RunLock};
use manifest::Manifest;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Data could not be loaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A result could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The class embedding could not be built.
    #[error(transparent)]
    Semantics(#[from] SemanticsError),
    /// The run directory is in use.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A run directory written by an incompatible version.
    #[error(
        "{path}: written by run-directory format {found}, this harness writes format {expected}; use a new --out folder or delete the old run"
    )]
    Format {
        /// The manifest.
        path: PathBuf,
        /// Its format version.
        found: u32,
        /// Ours.
        expected: u32,
    },
}

/// Where and how to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Experiment folder; default `results/<name>`.
    pub out: Option<PathBuf>,
    /// `--data-root` from the command line.
    pub data_root: Option<PathBuf>,
    /// Draw progress bars on stderr.
    pub progress: bool,
}

/// What one run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// The run folder.
    pub dir: PathBuf,
    /// Stages executed now.
    pub ran: Vec<String>,
    /// Stages reused from an earlier, matching execution.
    pub reused: Vec<String>,
}

/// Completion record of a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StageRecord {
    stage: String,
    config_hash: String,
    finished_at: String,
}

/// One entry of `sweep.json`.
#[derive(Debug, Clone, Serialize)]
struct SweepEntry<'a> {
    index: usize,
    id: &'a str,
    config_hash: &'a str,
    overrides: serde_json::Map<String, serde_json::Value>,
    status: &'a str,
}

/// The experiment folder for `loaded` under `opts`.
pub fn experiment_dir(loaded: &Loaded, opts: &RunOptions) -> PathBuf {
    opts.out
        .clone()
        .unwrap_or_else(|| Path::new("results").join(&loaded.config.name))
}

/// Runs every run of `loaded` in order; returns one outcome per run.
pub fn run(loaded: &Loaded, opts: &RunOptions) -> Result<Vec<RunOutcome>, ExperimentError> {
    let runs = loaded.runs()?;
    let exp_dir = experiment_dir(loaded, opts);
    let sweep_bar = (opts.progress && runs.len() > 1).then(|| {
        let bar = indicatif::ProgressBar::new(runs.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("sweep [{bar:30}] {pos}/{len} runs {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut outcomes = Vec::with_capacity(runs.len());
    let mut statuses = vec!["pending"; runs.len()];
    for (i, run) in runs.iter().enumerate() {
        if let Some(bar) = &sweep_bar {
            bar.set_message(run.id.clone());
        }
        let result = run_one(run, &exp_dir.join(&run.id), opts);
        statuses[i] = if result.is_ok() { "complete" } else { "failed" };
        if runs.len() > 1 {
            write_sweep(&exp_dir, &runs, &statuses)?;
        }
        outcomes.push(result?);
        if let Some(bar) = &sweep_bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = sweep_bar {
        bar.finish_and_clear();
    }
    Ok(outcomes)
}

fn write_sweep(dir: &Path, runs: &[Run], statuses: &[&str]) -> Result<(), StoreError> {
    let entries: Vec<SweepEntry<'_>> = runs
        .iter()
        .zip(statuses)
        .map(|(r, s)| SweepEntry {
            index: r.index,
            id: &r.id,
            config_hash: &r.hash,
            overrides: r.overrides.iter().cloned().collect(),
            status: s,
        })
        .collect();
    store::write_json_atomic(&dir.join("sweep.json"), &entries)
}

fn run_one(run: &Run, dir: &Path, opts: &RunOptions) -> Result<RunOutcome, ExperimentError> {
    let _lock = RunLock::acquire(dir)?;
    let manifest_path = dir.join("manifest.json");
    check_format(&manifest_path)?;
    let cfg = &run.config;
    let root = DataRoot::resolve(opts.data_root.as_deref(), cfg.data.root.as_deref())?;
    let mut manifest = Manifest {
        format_version: manifest::FORMAT_VERSION,
        harness_version: env!("CARGO_PKG_VERSION").into(),
        experiment: cfg.name.clone(),
        run_id: run.id.clone(),
        config_hash: run.hash.clone(),
        config: cfg.clone(),
        overrides: run.overrides.iter().cloned().collect(),
        seed: cfg.seed,
        backend: serde_json::to_value(cfg.backend)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        git: manifest::git_state(),
        crates: manifest::crate_versions(),
        machine: manifest::machine(),
        data_root: format!("{} ({})", root.path.display(), root.chosen_by),
        protocols: manifest::protocol_splits(&cfg.eval.protocols),
        started_at: manifest::now(),
        finished_at: None,
        status: "running".into(),
        stages: Vec::new(),
    };
    store::write_bytes_atomic(
        &dir.join("config.resolved.yaml"),
        config::to_yaml(cfg).as_bytes(),
    )?;
    store::write_json_atomic(&manifest_path, &manifest)?;

    let mut outcome = RunOutcome {
        dir: dir.to_path_buf(),
        ran: Vec::new(),
        reused: Vec::new(),
    };
    let result = stage(dir, "data", &run.hash, &mut outcome, opts.progress, || {
        data_stage(&root, cfg, dir)
    })
    .and_then(|()| {
        stage(
            dir,
            "semantics",
            &run.hash,
            &mut outcome,
            opts.progress,
            || semantics_stage(&root, cfg.model.d as usize, &dir.join("semantics")),
        )
    });
    match &result {
        Ok(()) => {
            manifest.status = "complete".into();
            manifest.finished_at = Some(manifest::now());
        }
        Err(e) => manifest.status = format!("failed: {e}"),
    }
    manifest.stages = outcome.ran.iter().chain(&outcome.reused).cloned().collect();
    store::write_json_atomic(&manifest_path, &manifest)?;
    result.map(|()| outcome)
}

/// Refuses to reuse a run folder written in another layout version.
fn check_format(manifest_path: &Path) -> Result<(), ExperimentError> {
    let Ok(text) = std::fs::read_to_string(manifest_path) else {
        return Ok(());
    };
    let found = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("format_version")?.as_u64())
        .unwrap_or(0) as u32;
    if found != manifest::FORMAT_VERSION {
        return Err(ExperimentError::Format {
            path: manifest_path.to_path_buf(),
            found,
            expected: manifest::FORMAT_VERSION,
        });
    }
    Ok(())
}

/// Runs `body` unless `stages/<name>.json` records a completion under the same config hash.
fn stage(
    dir: &Path,
    name: &str,
    key: &str,
    outcome: &mut RunOutcome,
    progress: bool,
    body: impl FnOnce() -> Result<(), ExperimentError>,
) -> Result<(), ExperimentError> {
    let record_path = dir.join("stages").join(format!("{name}.json"));
    let done = std::fs::read_to_string(&record_path)
        .ok()
        .and_then(|t| serde_json::from_str::<StageRecord>(&t).ok())
        .is_some_and(|r| r.config_hash == key);
    if done {
        outcome.reused.push(name.to_string());
        return Ok(());
    }
    let spinner = progress.then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!("stage {name}"));
        s.enable_steady_tick(std::time::Duration::from_millis(120));
        s
    });
    let result = body();
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    result?;
    let record = StageRecord {
        stage: name.into(),
        config_hash: key.into(),
        finished_at: manifest::now(),
    };
    store::write_json_atomic(&record_path, &record)?;
    outcome.ran.push(name.to_string());
    Ok(())
}

/// Writes the class similarity matrix and the class embedding of dimension `d` (Barz & Denzler)
/// to `out/similarity.csv` and `out/class_embedding.csv`.
pub fn semantics_stage(root: &DataRoot, d: usize, out: &Path) -> Result<(), ExperimentError> {
    let names = crate::data::cifar::load_names(&root.cifar_dir())?;
    let hierarchy = Hierarchy::load(&root.hierarchy_dir(), &names.fine)?;
    let s = SimilarityMatrix::from_hierarchy(&hierarchy)?;
    let embedding = class_embedding(&s, d)?;
    store::write_bytes_atomic(
        &out.join("similarity.csv"),
        similarity_csv(&s, &names.fine).as_bytes(),
    )?;
    store::write_bytes_atomic(
        &out.join("class_embedding.csv"),
        embedding_csv(&embedding, &names.fine).as_bytes(),
    )?;
    Ok(())
}

/// Loads and validates all data, then writes `dataset_summary.json` and `class_counts.csv`.
fn data_stage(root: &DataRoot, cfg: &config::Config, dir: &Path) -> Result<(), ExperimentError> {
    let cifar = Cifar100::load(root, cfg.data.verify_checksums)?;
    let hierarchy = Hierarchy::load(&root.hierarchy_dir(), &cifar.names.fine)?;
    let usf = UsfNorms::load(&root.usf_file())?;
    let used = [
        cfg.data.train_subset.unwrap_or(SplitName::Train.records()),
        cfg.data.test_subset.unwrap_or(SplitName::Test.records()),
    ];
    let summary = DataSummary::compute(&cifar, used, &hierarchy, &usf);
    store::write_json_atomic(&dir.join("dataset_summary.json"), &summary)?;
    store::write_bytes_atomic(
        &dir.join("class_counts.csv"),
        class_counts_csv(&cifar, used).as_bytes(),
    )?;
    Ok(())
}
