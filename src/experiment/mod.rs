//! The runner: turns a config into run directories, stage by stage.
//!
//! Layout: `<out>/<run-id>/` per run, where `<out>` defaults to `results/<experiment>/` and the
//! run id is the sweep values plus a short hash of the resolved config, so the same config
//! always maps to the same folder and an interrupted run resumes there. Each run folder holds
//! `manifest.json`, `config.resolved.yaml` and the stage outputs; a stage records its
//! completion (with the hash of the config it ran under) in `stages/<stage>.json` and is skipped
//! when that record matches. Sweeps also get `<out>/sweep.json`. Expensive stages (features,
//! train, embed) write into a shared cache folder named by a hash of exactly the settings they
//! depend on, and the run folder links to it, so runs that differ only downstream share them.
//!
//! The pieces, each readable on its own:
//! - this module: the run loop, the run manifest and sweep.json, the order of the stages;
//! - `engine`: stage records, cache folders and their locks (what is skipped, what reruns);
//! - `keys`: the cache keys of the features, train and embed stages;
//! - `stages`: the stage bodies (data, semantics, features, train, embed);
//! - `evaluate`: the eval stage (every method under every protocol, IWAN, rankings);
//! - [`render`]: tables and figures from stored results; [`iwan`]: the IWAN inputs of a run;
//!   [`manifest`]: provenance; [`lock`]: one process per run or cache folder.

pub mod compare;
mod engine;
mod evaluate;
pub mod iwan;
mod keys;
pub mod lock;
pub mod manifest;
pub mod render;
mod stages;
pub mod status;

pub(crate) use stages::{
    embed_splits, frozen_encoder, load_efficientnet, own_weights, split_sizes,
};
pub use stages::{embedder, semantics_stage};

use crate::artifacts::{ExperimentLayout, RunLayout};
use crate::config::{self, Loaded, Run};
use crate::data::cifar::SplitName;
use crate::data::{DataError, DataRoot};
use crate::model;
use crate::semantics::SemanticsError;
use crate::store::{self, StoreError};
use crate::train::TrainError;
use engine::Stages;
use lock::{LockError, RunLock};
use manifest::Manifest;
use serde::Serialize;
use stages::{View, split_size};
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
    /// A stored run artifact or a derived input could not be read.
    #[error(transparent)]
    Stored(#[from] crate::artifacts::ArtifactError),
    /// A stored artifact is not what this harness expects (no underlying error to show).
    #[error("{path}: {message}")]
    Artifact {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong, and what to do.
        message: String,
    },
    /// A stored artifact could not be parsed.
    #[error("{path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Evaluating a method failed.
    #[error("evaluating {method} under {protocol}: {source}")]
    Eval {
        /// The method (an index method or an IWAN variant).
        method: String,
        /// The protocol.
        protocol: config::Protocol,
        /// What failed.
        source: crate::eval::retrieval::EvalError,
    },
    /// An IWAN setting this run cannot serve (the message says which, and why).
    #[error("iwan: {0}")]
    Iwan(String),
    /// `--run-index` names no run of the sweep.
    #[error("--run-index {index} is outside this config's runs 0..{runs}")]
    RunIndex {
        /// The index asked for.
        index: usize,
        /// How many runs the config has.
        runs: usize,
    },
    /// Training or the model failed.
    #[error(transparent)]
    Train(#[from] TrainError),
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

impl ExperimentError {
    /// `path` is not what this harness expects; `message` says why and what to do.
    pub(crate) fn artifact(path: &Path, message: impl Into<String>) -> Self {
        Self::Artifact {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// `path` could not be parsed; keeps the parser's error as the source.
    pub(crate) fn unreadable(
        path: &Path,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Unreadable {
            path: path.to_path_buf(),
            source: source.into(),
        }
    }
}

/// Where and how to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Experiment folder; default `results/<name>`.
    pub out: Option<PathBuf>,
    /// `--data-root` from the command line.
    pub data_root: Option<PathBuf>,
    /// Shared stage cache; default `<out>/cache` with `--out`, else `results/cache`.
    pub cache: Option<PathBuf>,
    /// Draw progress bars on stderr.
    pub progress: bool,
    /// Print one plain line per stage start and end on stderr (when there are no bars).
    pub lines: bool,
    /// Reuse finished stages without checking their files' checksums.
    pub no_verify: bool,
    /// Run only the sweep's run with this index (`--run-index`: one Slurm array task).
    pub run_index: Option<usize>,
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

/// Runs every run of `loaded` in order (or only the one `opts.run_index` selects); returns one
/// outcome per run.
pub fn run(loaded: &Loaded, opts: &RunOptions) -> Result<Vec<RunOutcome>, ExperimentError> {
    let runs = loaded.runs()?;
    let exp_dir = experiment_dir(loaded, opts);
    let exp = ExperimentLayout::new(&exp_dir);
    let cache = cache_dir(loaded, opts);
    if let Some(i) = opts.run_index {
        // One run of a sweep, as a cluster task runs it: other runs may be running at the same
        // time, so sweep.json and the sweep tables are left to `harness status --aggregate`.
        let run = runs.get(i).ok_or_else(|| ExperimentError::RunIndex {
            index: i,
            runs: runs.len(),
        })?;
        if !exp.sweep().exists() && runs.len() > 1 {
            record_sweep(&exp_dir, &runs)?;
        }
        return Ok(vec![run_one(
            run,
            &loaded.command_line,
            exp.run(&run.id).dir(),
            &cache,
            opts,
        )?]);
    }
    let sweep_bar = (opts.progress && runs.len() > 1).then(|| {
        crate::progress::bar(runs.len() as u64, "sweep [{bar:30}] {pos}/{len} runs {msg}")
    });
    let mut outcomes = Vec::with_capacity(runs.len());
    let mut statuses = vec!["pending"; runs.len()];
    for (i, run) in runs.iter().enumerate() {
        if let Some(bar) = &sweep_bar {
            bar.set_message(run.id.clone());
        }
        let result = run_one(
            run,
            &loaded.command_line,
            exp.run(&run.id).dir(),
            &cache,
            opts,
        );
        statuses[i] = if result.is_ok() { "complete" } else { "failed" };
        if runs.len() > 1 {
            write_sweep(&exp_dir, &runs, &statuses)?;
            render::render_sweep(&exp_dir)?;
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

/// Writes `sweep.json` for `runs` with each run's state as its folder shows it now.
pub fn record_sweep(exp_dir: &Path, runs: &[Run]) -> Result<(), StoreError> {
    let exp = ExperimentLayout::new(exp_dir);
    let states: Vec<status::RunState> = runs
        .iter()
        .map(|r| status::run_state(exp.run(&r.id).dir()))
        .collect();
    let statuses: Vec<&str> = states.iter().map(status::RunState::sweep_status).collect();
    write_sweep(exp_dir, runs, &statuses)
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
    store::write_json_atomic(&ExperimentLayout::new(dir).sweep(), &entries)
}

fn run_one(
    run: &Run,
    command_line: &[String],
    dir: &Path,
    cache: &Path,
    opts: &RunOptions,
) -> Result<RunOutcome, ExperimentError> {
    let _lock = RunLock::acquire(dir)?;
    let layout = RunLayout::new(dir);
    let manifest_path = layout.manifest();
    check_format(&manifest_path)?;
    let cfg = &run.config;
    // A backend this binary cannot run fails before any stage does work.
    model::device(cfg.backend).map_err(TrainError::Model)?;
    let root = DataRoot::resolve(opts.data_root.as_deref(), cfg.data.root.as_deref())?;
    root.require_for_run()?;
    let mut manifest = Manifest {
        format_version: manifest::FORMAT_VERSION,
        harness_version: env!("CARGO_PKG_VERSION").into(),
        experiment: cfg.name.clone(),
        run_id: run.id.clone(),
        config_hash: run.hash.clone(),
        config: cfg.clone(),
        overrides: run.overrides.iter().cloned().collect(),
        command_line: command_line.to_vec(),
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
    store::write_bytes_atomic(&layout.resolved_config(), config::to_yaml(cfg).as_bytes())?;
    store::write_json_atomic(&manifest_path, &manifest)?;

    let mut stages = Stages::new(dir, opts.progress);
    stages.verify = !opts.no_verify;
    stages.lines = opts.lines && !opts.progress;
    let result = run_stages(&mut stages, &root, run, cache);
    let outcome = stages.outcome;
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

/// The stage cache: `--cache`, else `<out>/cache` when `--out` is given, else `results/cache`
/// (shared by every experiment under `results/`).
pub fn cache_dir(loaded: &Loaded, opts: &RunOptions) -> PathBuf {
    match (&opts.cache, &opts.out) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => ExperimentLayout::new(experiment_dir(loaded, opts)).cache(),
        (None, None) => ExperimentLayout::new("results").cache(),
    }
}

/// The stages of one run, in order.
fn run_stages(
    st: &mut Stages<'_>,
    root: &DataRoot,
    run: &Run,
    cache: &Path,
) -> Result<(), ExperimentError> {
    let cfg = &run.config;
    let dir = st.run_dir;
    let layout = st.layout.clone();
    let progress = st.progress;
    let mut cifar = None;
    let verify = cfg.data.verify_checksums;
    st.run("data", &run.hash, RunLayout::DATA_OUTPUTS, || {
        let data = stages::load_cifar(&mut cifar, root, verify)?;
        stages::data_stage(root, cfg, data, dir)
    })?;
    st.run("semantics", &run.hash, &["semantics"], || {
        semantics_stage(root, cfg.model.d as usize, &layout.semantics())
    })?;

    // A frozen pretrained encoder runs once per (encoder, input size, weights, images, view);
    // its pooled features are cached and the decoder trains on them.
    let mut features_at =
        |st: &mut Stages<'_>, name: &str, size: u32, own: stages::LiteWeights<'_>, view: View| {
            let key = keys::features(cache, cfg, size, own, view);
            st.images = Some(view.splits().iter().map(|&s| split_size(cfg, s)).sum());
            st.run_cached(name, &key.key, &key.dir, |out| {
                let data = stages::load_cifar(&mut cifar, root, verify)?;
                model::with_threads(cfg.train.threads, || {
                    stages::features_stage(root, cfg, data, size, own, view, out, progress)
                })
            })?;
            Ok::<PathBuf, ExperimentError>(key.dir)
        };
    let own_weights = stages::own_weights(cfg);
    let frozen = stages::frozen_encoder(cfg);
    let size = cfg.model.input_size;
    let features_dir = if frozen {
        Some(features_at(st, "features", size, own_weights, View::Plain)?)
    } else {
        None
    };
    // The other views of the images (augmentation, the mirror average), each cached once.
    let (mut train_views, mut test_mirrored) = (Vec::new(), None);
    for view in stages::views(cfg) {
        let dir = features_at(st, &view.stage(), size, own_weights, view)?;
        match view {
            View::Mirrored(SplitName::Test) => test_mirrored = Some(dir),
            _ => train_views.push(dir),
        }
    }
    // Training reads the training images' views; embedding, with the mirror average, the
    // mirror images (the first training view) and the mirrored test images.
    let embed_views = if cfg.model.mirror_average {
        &train_views[..train_views.len().min(1)]
    } else {
        &[]
    };
    // IWAN's ImageNet word model reads the classifier head on the same encoder's features,
    // shared with the model's features when the input size agrees.
    let iwan_features = if cfg.iwan.enabled && cfg.iwan.word_model == config::WordModel::Imagenet {
        if frozen && cfg.iwan.input_size == size {
            features_dir.clone()
        } else {
            let size = cfg.iwan.input_size;
            Some(features_at(
                st,
                "iwan_features",
                size,
                own_weights,
                View::Plain,
            )?)
        }
    } else {
        None
    };

    // Training and embedding depend only on the data subsets, seed, backend, model and training
    // settings, so runs of a sweep over index or IWAN parameters share them.
    let train = keys::train(cache, cfg);
    st.images = Some(split_sizes(cfg)[0].1 * cfg.train.epochs);
    st.run_cached("train", &train.key, &train.dir, |out| {
        let data = stages::load_cifar(&mut cifar, root, verify)?;
        let features = features_dir
            .as_deref()
            .map(|d| stages::load_features(d, &train_views, None))
            .transpose()?;
        model::with_threads(cfg.train.threads, || {
            stages::train_stage(root, cfg, data, features.as_ref(), out, progress)
        })
    })?;
    let splits = embed_splits(cfg);
    let embed = keys::embed(cache, cfg, &train, &splits);
    st.images = Some(splits.iter().map(|s| s.1).sum());
    st.run_cached("embed", &embed.key, &embed.dir, |out| {
        let data = stages::load_cifar(&mut cifar, root, verify)?;
        let features = features_dir
            .as_deref()
            .map(|d| stages::load_features(d, embed_views, test_mirrored.as_deref()))
            .transpose()?;
        model::with_threads(cfg.train.threads, || {
            stages::embed_stage(
                root,
                cfg,
                data,
                features.as_ref(),
                &splits,
                &train.dir,
                out,
                progress,
            )
        })
    })?;
    st.run("eval", &run.hash, RunLayout::EVAL_OUTPUTS, || {
        let data = stages::load_cifar(&mut cifar, root, verify)?;
        evaluate::eval_stage(
            root,
            cfg,
            data,
            &embed.dir,
            iwan_features.as_deref(),
            &layout,
        )
    })?;
    Ok(())
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
