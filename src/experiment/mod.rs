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

pub mod iwan;
pub mod lock;
pub mod manifest;
pub mod render;

use crate::artifacts::{
    class_embedding_f32, class_similarity, default_efficientnet_weights, load_embedded,
    pretrained_weights,
};
use crate::config::{self, Loaded, Run};
use crate::data::cifar::{Cifar100, SplitName};
use crate::data::hierarchy::Hierarchy;
use crate::data::summary::{DataSummary, class_counts_csv};
use crate::data::usf::UsfNorms;
use crate::data::{DataError, DataRoot};
use crate::embed;
use crate::eval::Semantics as _;
use crate::eval::iwan::IwanEval;
use crate::eval::retrieval::{self, EvalSettings};
use crate::index::hamming::Shortlist;
use crate::model::{self, efficientnet::EfficientNetLite0};
use crate::report;
use crate::semantics::{SemanticsError, class_embedding, embedding_csv, similarity_csv};
use crate::store::{self, StoreError, npy};
use crate::train::{self, Images, Inputs, TrainError, TrainJob};
use iwan::{IwanInputs, Network};
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
    /// A stored run artifact or a derived input could not be read.
    #[error(transparent)]
    Stored(#[from] crate::artifacts::ArtifactError),
    /// A stored artifact could not be read back.
    #[error("{path}: {message}")]
    Artifact {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Evaluating a method failed.
    #[error("evaluation of {0}")]
    Eval(String),
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StageRecord {
    stage: String,
    config_hash: String,
    finished_at: String,
    #[serde(default)]
    seconds: f64,
    #[serde(default)]
    cache_dir: Option<String>,
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
    let cache = cache_dir(loaded, opts);
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
        let result = run_one(run, &exp_dir.join(&run.id), &cache, opts);
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

fn run_one(
    run: &Run,
    dir: &Path,
    cache: &Path,
    opts: &RunOptions,
) -> Result<RunOutcome, ExperimentError> {
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

    let mut stages = Stages {
        run_dir: dir,
        progress: opts.progress,
        outcome: RunOutcome {
            dir: dir.to_path_buf(),
            ran: Vec::new(),
            reused: Vec::new(),
        },
    };
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
        (None, Some(_)) => experiment_dir(loaded, opts).join("cache"),
        (None, None) => Path::new("results").join("cache"),
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
    let progress = st.progress;
    let mut cifar: Option<Cifar100> = None;
    st.run("data", &run.hash, || {
        let data = load_cifar(&mut cifar, root, cfg.data.verify_checksums)?;
        data_stage(root, cfg, data, dir)
    })?;
    st.run("semantics", &run.hash, || {
        semantics_stage(root, cfg.model.d as usize, &dir.join("semantics"))
    })?;

    // Training and embedding depend only on the data subsets, seed, backend, model and training
    // settings, so runs of a sweep over index or IWAN parameters share them. (The test prefix
    // only enters the per-epoch accuracy in train_log.csv.)
    let train_key = config::hash_value(&serde_json::json!({
        "stage": "train",
        "seed": cfg.seed,
        "backend": cfg.backend,
        "train_subset": cfg.data.train_subset,
        "test_subset": cfg.data.test_subset,
        "model": cfg.model,
        "train": cfg.train,
    }));
    // A frozen pretrained encoder runs once per (encoder, input size, weights, images); its
    // pooled features are cached and the decoder trains on them.
    let mut features_at =
        |st: &mut Stages<'_>, name: &str, size: u32, weights: Option<&PathBuf>, mirrored: bool| {
            let mut key = serde_json::json!({
                "stage": "features",
                "encoder": config::Encoder::EfficientnetLite0,
                // The fused channels-last inference (model::frozen) sums in another order than
                // burn's layers, so its features get their own cache entries.
                "implementation": "fused-nhwc",
                "input_size": size,
                "weights": weights,
                "train_subset": cfg.data.train_subset,
                "test_subset": cfg.data.test_subset,
            });
            if mirrored {
                key["mirrored"] = serde_json::Value::Bool(true);
            }
            let key = config::hash_value(&key);
            let dir = cache.join(format!("features-{}", &key[..16]));
            st.run_cached(name, &key, &dir, |out| {
                let data = load_cifar(&mut cifar, root, cfg.data.verify_checksums)?;
                model::with_threads(cfg.train.threads, || {
                    features_stage(root, cfg, data, size, weights, mirrored, out, progress)
                })
            })?;
            Ok::<PathBuf, ExperimentError>(dir)
        };
    let own_weights = (cfg.model.encoder == config::Encoder::EfficientnetLite0)
        .then_some(cfg.model.weights.as_ref())
        .flatten();
    let features_dir = if frozen_encoder(cfg) {
        Some(features_at(
            st,
            "features",
            cfg.model.input_size,
            own_weights,
            false,
        )?)
    } else {
        None
    };
    // Augmentation for a frozen encoder: features of the mirrored training images.
    let mirrored_dir = if frozen_encoder(cfg) && cfg.train.augment {
        Some(features_at(
            st,
            "features_mirrored",
            cfg.model.input_size,
            own_weights,
            true,
        )?)
    } else {
        None
    };
    // IWAN's ImageNet word model reads the classifier head on the same encoder's features,
    // shared with the model's features when the input size agrees.
    let iwan_features = if cfg.iwan.enabled && cfg.iwan.word_model == config::WordModel::Imagenet {
        if frozen_encoder(cfg) && cfg.iwan.input_size == cfg.model.input_size {
            features_dir.clone()
        } else {
            Some(features_at(
                st,
                "iwan_features",
                cfg.iwan.input_size,
                own_weights,
                false,
            )?)
        }
    } else {
        None
    };
    let train_dir = cache.join(format!("train-{}", &train_key[..16]));
    st.run_cached("train", &train_key, &train_dir, |out| {
        let data = load_cifar(&mut cifar, root, cfg.data.verify_checksums)?;
        let features = features_dir
            .as_deref()
            .map(|d| load_features(d, mirrored_dir.as_deref()))
            .transpose()?;
        model::with_threads(cfg.train.threads, || {
            train_stage(root, cfg, data, features.as_ref(), out, progress)
        })
    })?;
    let splits = embed_splits(cfg);
    let embed_key = config::hash_value(
        &serde_json::json!({ "stage": "embed", "train": train_key, "splits": splits }),
    );
    let embed_dir = cache.join(format!("embed-{}", &embed_key[..16]));
    st.run_cached("embed", &embed_key, &embed_dir, |out| {
        let data = load_cifar(&mut cifar, root, cfg.data.verify_checksums)?;
        let features = features_dir
            .as_deref()
            .map(|d| load_features(d, None))
            .transpose()?;
        model::with_threads(cfg.train.threads, || {
            embed_stage(
                root,
                cfg,
                data,
                features.as_ref(),
                &splits,
                &train_dir,
                out,
                progress,
            )
        })
    })?;
    st.run("eval", &run.hash, || {
        let data = load_cifar(&mut cifar, root, cfg.data.verify_checksums)?;
        eval_stage(root, cfg, data, &embed_dir, iwan_features.as_deref(), dir)
    })?;
    Ok(())
}

/// Evaluates every configured method under every protocol; writes `metrics.csv` (long format),
/// `hp_curves.csv` and `tables/summary.md`.
fn eval_stage(
    root: &DataRoot,
    cfg: &config::Config,
    data: &Cifar100,
    embed_dir: &Path,
    iwan_features: Option<&Path>,
    dir: &Path,
) -> Result<(), ExperimentError> {
    let (_, sim) = class_similarity(root)?;
    let test = load_embedded(embed_dir, SplitName::Test)?;
    let train = if cfg.eval.protocols.contains(&config::Protocol::TrainDb) {
        Some(load_embedded(embed_dir, SplitName::Train)?)
    } else {
        None
    };
    // Views borrow the label slices of the loaded CIFAR splits.
    let test_view = test.view(&data.test.fine);
    let train_view = train.as_ref().map(|t| t.view(&data.train.fine));
    let settings = EvalSettings {
        ks: cfg.eval.ks.clone(),
        shortlist: match cfg.index.shortlist {
            Some(n) => Shortlist::Absolute(n),
            None => Shortlist::Factor(cfg.index.shortlist_factor),
        },
        mih_substrings: cfg.index.mih_substrings.map(|m| m as usize),
        timing_queries: cfg.eval.timing_queries,
        threads: if cfg.index.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            cfg.index.threads
        },
    };
    let mut results = Vec::new();
    for &protocol in &cfg.eval.protocols {
        let db = match protocol {
            config::Protocol::TrainDb => train_view.as_ref().unwrap_or(&test_view),
            _ => &test_view,
        };
        for &method in &cfg.index.methods {
            let r = retrieval::evaluate(
                method,
                protocol,
                db,
                &test_view,
                sim.values(),
                sim.n(),
                &settings,
            )
            .map_err(|e| ExperimentError::Eval(format!("{method:?} under {protocol}: {e}")))?;
            // One index file per method and database split (report and leave_one_out share one).
            let db_split = protocol.database();
            let path = dir
                .join("indices")
                .join(format!("{}-{db_split}.idx", method.as_str()));
            if let Some(index) = &r.index
                && !path.exists()
            {
                store::write_atomic(&path, |w| index.save(w).map_err(std::io::Error::other))?;
            }
            results.push(r);
        }
    }
    if cfg.iwan.enabled {
        let features = iwan_features.map(|d| load_features(d, None)).transpose()?;
        // The encoder pass behind the word model: the frozen features it reads (the ImageNet
        // head) or those the embedding network's decoder ran on (the classes model).
        let images: usize = split_sizes(cfg).iter().map(|s| s.1).sum();
        let encoder_s_per_image = ["iwan_features", "features"]
            .iter()
            .find_map(|stage| read_record(&dir.join("stages").join(format!("{stage}.json"))))
            .map(|r| r.seconds / images.max(1) as f64);
        let mut stored = vec![(SplitName::Test, test.rows(), test.embeddings.as_slice())];
        if let Some(t) = &train {
            stored.push((SplitName::Train, t.rows(), t.embeddings.as_slice()));
        }
        let inputs = IwanInputs::predict(
            root,
            cfg,
            data,
            &stored,
            features.as_ref(),
            encoder_s_per_image,
        )?;
        inputs.save(dir)?;
        let mut networks: Vec<(config::DbWords, Network)> = Vec::new();
        for db_words in cfg.iwan.evaluated_db_words() {
            let iwan = config::IwanConfig {
                db_words,
                ..cfg.iwan.clone()
            };
            for &protocol in &cfg.eval.protocols {
                let db_split = protocol.database();
                let built =
                    |n: &(config::DbWords, Network)| n.0 == db_words && n.1.database == db_split;
                if !networks.iter().any(built) {
                    let net = inputs.network(db_split, &iwan)?;
                    let empty = net.queries_without_words();
                    if empty > 0 && networks.is_empty() {
                        eprintln!(
                            "warning: iwan: {empty} of {} queries have no word in the graph \
                             (their labels map to no USF word); they get empty rankings",
                            net.queries.len()
                        );
                    }
                    networks.push((db_words, net));
                }
                let net = &networks.iter().find(|n| built(n)).expect("built above").1;
                let e = IwanEval {
                    graph: &net.graph,
                    query_edges: &net.queries,
                    db_labels: &data.split(db_split).fine[..net.graph.n_images()],
                    query_labels: &data.test.fine[..net.queries.len()],
                    build_s: net.build_s,
                    score: cfg.iwan.score,
                };
                let name = cfg.iwan.score.method_name_with(db_words);
                let r = crate::eval::iwan::evaluate(
                    name,
                    &e,
                    protocol,
                    sim.values(),
                    sim.n(),
                    &settings,
                )
                .map_err(|err| ExperimentError::Eval(format!("{name} under {protocol}: {err}")))?;
                results.push(r);
            }
        }
        let summary: Vec<serde_json::Value> = networks
            .iter()
            .map(|(db_words, n)| {
                let mut v = n.summary(&inputs.cost);
                v["db_words"] = serde_json::json!(db_words);
                v
            })
            .collect();
        store::write_json_atomic(&dir.join("iwan_graph.json"), &summary)?;
    }
    if cfg.eval.dump_rankings {
        for r in &results {
            dump_rankings(r, &dir.join("rankings"))?;
        }
    }
    store::write_bytes_atomic(
        &dir.join("metrics.csv"),
        report::metrics_csv(&results).as_bytes(),
    )?;
    store::write_bytes_atomic(
        &dir.join("hp_curves.csv"),
        report::hp_curves_csv(&results).as_bytes(),
    )?;
    store::write_bytes_atomic(
        &dir.join("tables").join("summary.md"),
        report::summary_markdown(cfg, &results).as_bytes(),
    )?;
    render::render_run(dir)?;
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

/// Executes stages, skipping those whose completion record matches their key.
struct Stages<'a> {
    run_dir: &'a Path,
    progress: bool,
    outcome: RunOutcome,
}

impl Stages<'_> {
    /// A stage whose outputs live in the run folder; its record is `stages/<name>.json`.
    fn run(
        &mut self,
        name: &str,
        key: &str,
        body: impl FnOnce() -> Result<(), ExperimentError>,
    ) -> Result<(), ExperimentError> {
        let record = self.run_dir.join("stages").join(format!("{name}.json"));
        if record_matches(&record, key) {
            self.outcome.reused.push(name.to_string());
            return Ok(());
        }
        let seconds = self.timed(name, body)?;
        self.finish(&record, name, key, seconds, None)
    }

    /// A stage whose outputs live in a shared cache folder `dir` (locked while it runs); the run
    /// folder gets a `<name>` symlink to it and a record in `stages/<name>.json`.
    fn run_cached(
        &mut self,
        name: &str,
        key: &str,
        dir: &Path,
        body: impl FnOnce(&Path) -> Result<(), ExperimentError>,
    ) -> Result<(), ExperimentError> {
        let cache_record = dir.join("stage.json");
        let record = self.run_dir.join("stages").join(format!("{name}.json"));
        if record_matches(&cache_record, key) {
            self.outcome.reused.push(name.to_string());
        } else {
            let _lock = RunLock::acquire(dir)?;
            let seconds = self.timed(name, || body(dir))?;
            write_record(&cache_record, name, key, seconds, None)?;
            self.outcome.ran.push(name.to_string());
        }
        link(dir, &self.run_dir.join(name));
        let seconds = read_record(&cache_record).map(|r| r.seconds).unwrap_or(0.0);
        Ok(write_record(&record, name, key, seconds, Some(dir))?)
    }

    fn timed(
        &self,
        name: &str,
        body: impl FnOnce() -> Result<(), ExperimentError>,
    ) -> Result<f64, ExperimentError> {
        let spinner = self.progress.then(|| {
            let s = indicatif::ProgressBar::new_spinner();
            s.set_message(format!("stage {name}"));
            s.enable_steady_tick(std::time::Duration::from_millis(200));
            s
        });
        let started = std::time::Instant::now();
        let result = body();
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        result.map(|()| started.elapsed().as_secs_f64())
    }

    fn finish(
        &mut self,
        record: &Path,
        name: &str,
        key: &str,
        seconds: f64,
        cache: Option<&Path>,
    ) -> Result<(), ExperimentError> {
        write_record(record, name, key, seconds, cache)?;
        self.outcome.ran.push(name.to_string());
        Ok(())
    }
}

fn read_record(path: &Path) -> Option<StageRecord> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn record_matches(path: &Path, key: &str) -> bool {
    read_record(path).is_some_and(|r| r.config_hash == key)
}

fn write_record(
    path: &Path,
    name: &str,
    key: &str,
    seconds: f64,
    cache: Option<&Path>,
) -> Result<(), StoreError> {
    let record = StageRecord {
        stage: name.into(),
        config_hash: key.into(),
        finished_at: manifest::now(),
        seconds,
        cache_dir: cache.map(|c| c.display().to_string()),
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

fn load_cifar<'c>(
    slot: &'c mut Option<Cifar100>,
    root: &DataRoot,
    verify: bool,
) -> Result<&'c Cifar100, ExperimentError> {
    if slot.is_none() {
        *slot = Some(Cifar100::load(root, verify)?);
    }
    Ok(slot.as_ref().expect("just loaded"))
}

/// EfficientNet-Lite0 with `weights`, or the shipped ImageNet weights under the data root.
fn load_efficientnet(
    root: &DataRoot,
    weights: Option<&PathBuf>,
) -> Result<EfficientNetLite0, ExperimentError> {
    let path = weights
        .cloned()
        .unwrap_or_else(|| default_efficientnet_weights(root));
    Ok(EfficientNetLite0::load(&path, &model::cpu_device()).map_err(TrainError::Model)?)
}

/// Whether the config trains only a decoder on a frozen pretrained encoder's features.
fn frozen_encoder(cfg: &config::Config) -> bool {
    cfg.model.encoder == config::Encoder::EfficientnetLite0 && cfg.model.freeze
}

/// Frozen-encoder features of the train and test prefixes, `n x dim` each.
struct Features {
    dim: usize,
    train: Vec<f32>,
    test: Vec<f32>,
    /// Features of the mirrored training images (`train.augment` with a frozen encoder).
    train_mirrored: Option<Vec<f32>>,
}

impl Features {
    /// The network inputs of `split`: features of its first rows.
    fn inputs(&self, split: SplitName) -> Inputs<'_> {
        let (values, mirrored) = match split {
            SplitName::Train => (&self.train, self.train_mirrored.as_deref()),
            SplitName::Test => (&self.test, None),
        };
        Inputs::Features {
            values,
            dim: self.dim,
            mirrored,
        }
    }
}

/// The cached features in `dir`, and the mirrored training images' features in `mirrored`.
fn load_features(dir: &Path, mirrored: Option<&Path>) -> Result<Features, ExperimentError> {
    let read = |dir: &Path, split: SplitName| -> Result<(usize, Vec<f32>), ExperimentError> {
        let path = dir.join(format!("{split}.npy"));
        let (_, dim, v) =
            npy::read_f32(&store::read(&path)?).map_err(|e| ExperimentError::Artifact {
                path,
                message: e.to_string(),
            })?;
        Ok((dim, v))
    };
    let (dim, train) = read(dir, SplitName::Train)?;
    let (_, test) = read(dir, SplitName::Test)?;
    let train_mirrored = match mirrored {
        Some(m) => {
            let (d, v) = read(m, SplitName::Train)?;
            if d != dim || v.len() != train.len() {
                return Err(ExperimentError::Artifact {
                    path: m.join("train.npy"),
                    message: format!(
                        "{} x {d} mirrored features do not match the {} x {dim} features",
                        v.len() / d.max(1),
                        train.len() / dim.max(1)
                    ),
                });
            }
            Some(v)
        }
        None => None,
    };
    Ok(Features {
        dim,
        train,
        test,
        train_mirrored,
    })
}

/// Runs the frozen EfficientNet-Lite0 over the train and test prefixes at `model.input_size`;
/// writes `train.npy` and `test.npy` (f32, `n x 1280`) into `out`. `mirrored` computes only the
/// training images, each mirrored left to right (the augmentation `train.augment` draws from).
#[allow(clippy::too_many_arguments)]
fn features_stage(
    root: &DataRoot,
    cfg: &config::Config,
    data: &Cifar100,
    size: u32,
    weights: Option<&PathBuf>,
    mirrored: bool,
    out: &Path,
    progress: bool,
) -> Result<(), ExperimentError> {
    let encoder = load_efficientnet(root, weights)?;
    let size = size as usize;
    let mut splits = vec![(
        SplitName::Train,
        cfg.data.train_subset.unwrap_or(SplitName::Train.records()),
    )];
    if !mirrored {
        splits.push((
            SplitName::Test,
            cfg.data.test_subset.unwrap_or(SplitName::Test.records()),
        ));
    }
    for (split, n) in splits {
        let s = data.split(split);
        let n = n.min(s.len());
        let pixels = &s.pixels[..n * 3072];
        let flipped: Vec<u8>;
        let pixels = if mirrored {
            let mut out = vec![0u8; pixels.len()];
            for (img, dst) in pixels.chunks_exact(3072).zip(out.chunks_exact_mut(3072)) {
                crate::train::shift_flip(img, 0, 0, true, dst);
            }
            flipped = out;
            &flipped
        } else {
            pixels
        };
        let f = embed::encoder_features(&encoder, pixels, size, 64, progress, false)
            .map_err(TrainError::Model)?;
        store::write_atomic(&out.join(format!("{split}.npy")), |w| {
            npy::write_f32(w, n, f.len() / n.max(1), &f)
        })?;
    }
    Ok(())
}

/// The network inputs of the first `n` images of `split`: cached features for a frozen
/// encoder, pixels otherwise.
fn inputs<'a>(
    data: &'a Cifar100,
    features: Option<&'a Features>,
    split: SplitName,
    n: usize,
) -> Images<'a> {
    let s = data.split(split);
    let n = n.min(s.len());
    let inputs = match features {
        Some(f) => f.inputs(split),
        None => Inputs::Pixels(&s.pixels[..n * 3072]),
    };
    Images {
        inputs,
        labels: &s.fine[..n],
    }
}

/// Trains the network on the (prefix of the) train split; writes checkpoints, `train_log.csv`
/// and the final weights `model.bpk` into `out`.
fn train_stage(
    root: &DataRoot,
    cfg: &config::Config,
    data: &Cifar100,
    features: Option<&Features>,
    out: &Path,
    progress: bool,
) -> Result<(), ExperimentError> {
    let c = class_embedding_f32(root, cfg.model.d as usize)?;
    let [(_, n_train), (_, n_test)] = split_sizes(cfg);
    let n_train = cfg.train.subset.map_or(n_train, |s| s.min(n_train));
    let pretrained = pretrained_weights(root, &cfg.model);
    let job = TrainJob {
        config: cfg,
        class_embedding: &c,
        train: inputs(data, features, SplitName::Train, n_train),
        eval: inputs(data, features, SplitName::Test, n_test),
        pretrained: pretrained.as_deref(),
        dir: out,
        progress,
    };
    let (net, _log) = train::train(&job)?;
    train::save_model(&net, &out.join("model.bpk"))?;
    Ok(())
}

/// Writes `<dir>/<method>-<protocol>.parquet`: `query_id, rank, db_id` (u32; ids index the
/// query and database split files, rank is 0-based) and `score` (f32: similarity for the
/// indices, distance for IWAN), the top max(ks) of every query.
fn dump_rankings(r: &retrieval::MethodResult, dir: &Path) -> Result<(), ExperimentError> {
    use crate::store::frame::{Frame, Values};
    let rows = r.rankings.iter().map(Vec::len).sum::<usize>();
    let (mut query, mut rank, mut db, mut score) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    for (q, hits) in r.rankings.iter().enumerate() {
        for (i, h) in hits.iter().enumerate() {
            query.push(Some(q as u32));
            rank.push(Some(i as u32));
            db.push(Some(h.id));
            score.push(h.score);
        }
    }
    Frame::new()
        .with("query_id", Values::U32(query))
        .with("rank", Values::U32(rank))
        .with("db_id", Values::U32(db))
        .with("score", Values::F32(score))
        .write(
            dir,
            &format!("{}-{}", r.method, r.protocol),
            &[config::TableFormat::Parquet],
        )?;
    Ok(())
}

/// Both splits with the number of images of each in use (the features stage encodes both).
fn split_sizes(cfg: &config::Config) -> [(SplitName, usize); 2] {
    [
        (
            SplitName::Train,
            cfg.data.train_subset.unwrap_or(SplitName::Train.records()),
        ),
        (
            SplitName::Test,
            cfg.data.test_subset.unwrap_or(SplitName::Test.records()),
        ),
    ]
}

/// The splits to embed: the test split, and the train split when a protocol searches it.
fn embed_splits(cfg: &config::Config) -> Vec<(SplitName, usize)> {
    let [train, test] = split_sizes(cfg);
    if cfg.eval.protocols.contains(&config::Protocol::TrainDb) {
        vec![test, train]
    } else {
        vec![test]
    }
}

/// Embeds the needed splits with the trained network from `train_dir`; writes the `.npy` files
/// and `embed_summary.json` into `out`.
#[allow(clippy::too_many_arguments)]
fn embed_stage(
    root: &DataRoot,
    cfg: &config::Config,
    data: &Cifar100,
    features: Option<&Features>,
    splits: &[(SplitName, usize)],
    train_dir: &Path,
    out: &Path,
    progress: bool,
) -> Result<(), ExperimentError> {
    let c = class_embedding_f32(root, cfg.model.d as usize)?;
    let net = train::load_trained(
        cfg,
        c.len() / cfg.model.d as usize,
        pretrained_weights(root, &cfg.model).as_deref(),
        &train_dir.join("model.bpk"),
    )?;
    let prep = model::Preprocess::of(&cfg.model);
    let mut summary = serde_json::Map::new();
    for &(name, n) in splits {
        let split = data.split(name);
        let images = inputs(data, features, name, n);
        let batch = train::inference_batch(images, prep);
        let e = embed::embed(&net, images, prep, &c, batch, progress).map_err(TrainError::Model)?;
        let correct = e
            .classes
            .chunks(embed::TOP_CLASSES)
            .zip(&split.fine)
            .filter(|(top, label)| top[0].0 == **label)
            .count();
        summary.insert(
            split.name.to_string(),
            serde_json::json!({
                "images": e.n,
                "seconds_per_image": e.seconds_per_image,
                "nearest_class_accuracy": correct as f64 / e.n.max(1) as f64,
            }),
        );
        embed::write(out, split.name.as_str(), &e)?;
    }
    store::write_json_atomic(&out.join("embed_summary.json"), &summary)?;
    Ok(())
}

/// Writes the class similarity matrix and the class embedding of dimension `d` (Barz & Denzler)
/// to `out/similarity.csv` and `out/class_embedding.csv`.
pub fn semantics_stage(root: &DataRoot, d: usize, out: &Path) -> Result<(), ExperimentError> {
    let (names, s) = class_similarity(root)?;
    let embedding = class_embedding(&s, d)?;
    store::write_bytes_atomic(
        &out.join("similarity.csv"),
        similarity_csv(&s, &names.fine).as_bytes(),
    )?;
    store::write_bytes_atomic(
        &out.join("class_embedding.csv"),
        embedding_csv(&embedding, &names.fine).as_bytes(),
    )?;
    use crate::report::figures::{Figure, HeatMap};
    HeatMap {
        title: "class similarity S = 1 - height(lcs) / max height (CIFAR-100 fine classes)".into(),
        values: s.values().to_vec(),
        n: s.n(),
    }
    .write(
        out,
        "similarity",
        &[config::FigureFormat::Png, config::FigureFormat::Svg],
    )?;
    Ok(())
}

/// Validates the hierarchy and USF norms beside the loaded CIFAR-100, then writes
/// `dataset_summary.json` and `class_counts.csv`.
fn data_stage(
    root: &DataRoot,
    cfg: &config::Config,
    cifar: &Cifar100,
    dir: &Path,
) -> Result<(), ExperimentError> {
    let hierarchy = Hierarchy::load(&root.hierarchy_dir(), &cifar.names.fine)?;
    let usf = UsfNorms::load(&root.usf_file())?;
    let used = [
        cfg.data.train_subset.unwrap_or(SplitName::Train.records()),
        cfg.data.test_subset.unwrap_or(SplitName::Test.records()),
    ];
    let summary = DataSummary::compute(cifar, used, &hierarchy, &usf);
    store::write_json_atomic(&dir.join("dataset_summary.json"), &summary)?;
    store::write_bytes_atomic(
        &dir.join("class_counts.csv"),
        class_counts_csv(cifar, used).as_bytes(),
    )?;
    Ok(())
}
