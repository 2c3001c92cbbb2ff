//! Where a run keeps its files, and what the harness reads back rather than computes.
//!
//! * [`RunLayout`] and [`ExperimentLayout`] own every path and JSON file of a run folder and of
//!   an experiment folder, with typed readers and writers. No other module spells one.
//! * A run's stored embed outputs (`embed/{embeddings,activations,codes}/<split>.npy` and
//!   `embed/classes/<split>.parquet`), written by [`store_embedded`] and read by
//!   [`load_embedded`].
//! * The inputs every stage derives from the data root: the class similarity `S` and class
//!   embedding `C` from the hierarchy, the pretrained weights' path.
//!
//! The orchestrator ([`crate::experiment`]), the query server, the benches and the CLI all go
//! through here, so none of them reaches into another's internals.

use crate::codes;
use crate::config::{self, Config, ConfigError, Encoder, ModelConfig};
use crate::data::cifar::{LabelNames, SplitName};
use crate::data::hierarchy::Hierarchy;
use crate::data::{DataError, DataRoot};
use crate::embed::{Embedded, TOP_CLASSES};
use crate::eval::retrieval::SplitView;
use crate::index::Method;
use crate::model::efficientnet::Lite;
use crate::semantics::{SemanticsError, SimilarityMatrix, class_embedding};
use crate::store::frame::{Frame, TableFormat, Values};
use crate::store::{self, StoreError, npy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a stored artifact or a derived input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The data root's files could not be loaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The class similarity or embedding could not be built.
    #[error(transparent)]
    Semantics(#[from] SemanticsError),
    /// A file could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A `.npy` file is malformed.
    #[error("{path}: {source}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: npy::NpyError,
    },
    /// The three files of a split disagree on the number of images.
    #[error("{dir}: embeddings, activations and codes hold {counts:?} rows")]
    RowCounts {
        /// The embed folder.
        dir: PathBuf,
        /// Rows of each file, in that order.
        counts: [usize; 3],
    },
}

/// One split's embed outputs, as read back from the `.npy` files.
#[derive(Debug, Clone)]
pub struct StoredEmbedding {
    /// `n x d` embeddings.
    pub embeddings: Vec<f32>,
    /// Embedding dimension `d`.
    pub d: usize,
    /// `n x h` hash-layer activations.
    pub activations: Vec<f32>,
    /// Hash bits `h`.
    pub h: usize,
    /// `n x ceil(h/64)` packed codes (see [`crate::codes`]).
    pub codes: Vec<u64>,
}

impl StoredEmbedding {
    /// Images stored.
    pub fn rows(&self) -> usize {
        self.embeddings.len() / self.d.max(1)
    }

    /// Row `i` as (embedding, packed code, activations).
    pub fn row(&self, i: usize) -> (&[f32], &[u64], &[f32]) {
        let w = self.codes.len() / self.rows().max(1);
        (
            &self.embeddings[i * self.d..(i + 1) * self.d],
            &self.codes[i * w..(i + 1) * w],
            &self.activations[i * self.h..(i + 1) * self.h],
        )
    }

    /// A view with the split's labels (the first `n` of them, `n` = rows stored).
    pub fn view<'a>(&'a self, labels: &'a [u8]) -> SplitView<'a> {
        let n = self.rows();
        SplitView {
            embeddings: &self.embeddings,
            d: self.d,
            activations: &self.activations,
            codes: &self.codes,
            h: self.h,
            labels: &labels[..n.min(labels.len())],
        }
    }
}

const DATASET_SUMMARY: &str = "dataset_summary.json";
const CLASS_COUNTS: &str = "class_counts.csv";
const METRICS: &str = "metrics.csv";
const HP_CURVES: &str = "hp_curves.csv";
const INDICES: &str = "indices";
const RANKINGS: &str = "rankings";
const IWAN: &str = "iwan";
const IWAN_GRAPH: &str = "iwan_graph.json";

/// The files of a run folder, `results/<experiment>/<run-id>/`.
///
/// | path | written by |
/// |---|---|
/// | `manifest.json`, `config.resolved.yaml` | the runner, first (and [`crate::experiment::lock`]'s `.lock` while it works) |
/// | `stages/<stage>.json` | the stage engine: each finished stage's record and checksums |
/// | `<stage>/` | each stage's folder; a link into the shared cache for cached stages |
/// | `dataset_summary.json`, `class_counts.csv` | the data stage |
/// | `train/model.bpk` | the train stage ([`crate::train::checkpoint_in`]) |
/// | `embed/` | the embed stage ([`store_embedded`], [`EmbedSummary`]) |
/// | `metrics.csv`, `hp_curves.csv`, `indices/`, `rankings/`, `iwan/`, `iwan_graph.json` | the eval stage |
/// | `metrics.parquet`, `tables/`, `figures/` | rendering |
/// | `scale/` | `harness bench scale` |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLayout {
    dir: PathBuf,
}

impl RunLayout {
    /// What the data stage writes, relative to the run folder.
    pub const DATA_OUTPUTS: &'static [&'static str] = &[DATASET_SUMMARY, CLASS_COUNTS];
    /// What the eval stage writes, relative to the run folder.
    pub const EVAL_OUTPUTS: &'static [&'static str] =
        &[METRICS, HP_CURVES, INDICES, RANKINGS, IWAN, IWAN_GRAPH];

    /// The layout of the run folder `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `dir` holds a run (its manifest exists).
    pub fn is_run(&self) -> bool {
        self.manifest().is_file()
    }

    /// Whether the run has finished its eval stage (manifest and metrics exist).
    pub fn has_metrics(&self) -> bool {
        self.is_run() && self.metrics().is_file()
    }

    /// `dataset_summary.json`: what the data stage found.
    pub fn dataset_summary(&self) -> PathBuf {
        self.dir.join(DATASET_SUMMARY)
    }

    /// `class_counts.csv`: images per class in each split used.
    pub fn class_counts(&self) -> PathBuf {
        self.dir.join(CLASS_COUNTS)
    }

    /// `manifest.json`: provenance and stage list.
    pub fn manifest(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }

    /// `config.resolved.yaml`: the config the run ran, defaults filled in.
    pub fn resolved_config(&self) -> PathBuf {
        self.dir.join("config.resolved.yaml")
    }

    /// The run's resolved config, read and validated.
    pub fn config(&self) -> Result<Config, ConfigError> {
        Ok(config::Loaded::from_path(&self.resolved_config())?.config)
    }

    /// `stages/<stage>.json`: the stage's record.
    pub fn stage_record(&self, stage: &str) -> PathBuf {
        self.dir.join("stages").join(format!("{stage}.json"))
    }

    /// `<stage>/`: the stage's folder (or the link to its cache entry).
    pub fn stage(&self, stage: &str) -> PathBuf {
        self.dir.join(stage)
    }

    /// `train/`: the trained network.
    pub fn train(&self) -> PathBuf {
        self.stage("train")
    }

    /// `embed/`: the embed outputs.
    pub fn embed(&self) -> PathBuf {
        self.stage("embed")
    }

    /// `semantics/`: `S` and `C` as CSV.
    pub fn semantics(&self) -> PathBuf {
        self.stage("semantics")
    }

    /// Whether the embed stage stored `split`.
    pub fn has_embeddings(&self, split: SplitName) -> bool {
        embed_file(&self.embed(), "embeddings", split).is_file()
    }

    /// `metrics.csv`: every metric, long format.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join(METRICS)
    }

    /// `hp_curves.csv`: the HP@k curves.
    pub fn hp_curves(&self) -> PathBuf {
        self.dir.join(HP_CURVES)
    }

    /// `tables/`: rendered tables.
    pub fn tables(&self) -> PathBuf {
        self.dir.join("tables")
    }

    /// `figures/`: rendered figures.
    pub fn figures(&self) -> PathBuf {
        self.dir.join("figures")
    }

    /// `rankings/`: the optional ranking dumps.
    pub fn rankings(&self) -> PathBuf {
        self.dir.join(RANKINGS)
    }

    /// `indices/<method>-<db>.idx`: the index the eval stage built over database split `db`.
    pub fn index_file(&self, method: Method, db: SplitName) -> PathBuf {
        self.dir.join(INDICES).join(format!("{method}-{db}.idx"))
    }

    /// `iwan/`: the word model's outputs.
    pub fn iwan(&self) -> PathBuf {
        self.dir.join(IWAN)
    }

    /// `iwan/predicted-<split>.csv`: the words predicted for each image of `split`.
    pub fn predicted_words(&self, split: SplitName) -> PathBuf {
        self.iwan().join(format!("predicted-{split}.csv"))
    }

    /// `iwan/word_model.json`: the word model's cost ([`WordModelCost`]).
    pub fn word_model(&self) -> PathBuf {
        self.iwan().join("word_model.json")
    }

    /// The word model's cost, if the run stored one that parses.
    pub fn read_word_model(&self) -> Option<WordModelCost> {
        read_json(&self.word_model())
    }

    /// `iwan/report_graph.json`: the report's own IWAN graph's summary.
    pub fn report_graph(&self) -> PathBuf {
        self.iwan().join("report_graph.json")
    }

    /// `iwan_graph.json`: our IWAN graph's summary.
    pub fn iwan_graph(&self) -> PathBuf {
        self.dir.join(IWAN_GRAPH)
    }

    /// The embed stage's summary, if the run stored one that parses.
    pub fn read_embed_summary(&self) -> Option<EmbedSummary> {
        read_json(&embed_summary_path(&self.embed()))
    }

    /// `scale/`: `harness bench scale`'s default output folder.
    pub fn scale(&self) -> PathBuf {
        self.dir.join("scale")
    }
}

/// The files of an experiment folder, `results/<experiment>/`: its runs, one folder each,
/// and for a sweep `sweep.json`, `status.{md,json}`, `tables/` and `figures/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentLayout {
    dir: PathBuf,
}

impl ExperimentLayout {
    /// The layout of the experiment folder `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The experiment folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The run `id`'s folder.
    pub fn run(&self, id: &str) -> RunLayout {
        RunLayout::new(self.dir.join(id))
    }

    /// `sweep.json`: the runs of a sweep, in order, with their overrides.
    pub fn sweep(&self) -> PathBuf {
        self.dir.join("sweep.json")
    }

    /// `status.md`.
    pub fn status_md(&self) -> PathBuf {
        self.dir.join("status.md")
    }

    /// `status.json`.
    pub fn status_json(&self) -> PathBuf {
        self.dir.join("status.json")
    }

    /// `tables/`.
    pub fn tables(&self) -> PathBuf {
        self.dir.join("tables")
    }

    /// `figures/`.
    pub fn figures(&self) -> PathBuf {
        self.dir.join("figures")
    }

    /// `cache/`: the default shared cache of the experiment's stages.
    pub fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }
}

/// One split's line of the embed stage's summary (`embed/embed_summary.json`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmbedSplitSummary {
    /// Images embedded.
    pub images: usize,
    /// Seconds per image of the decoder pass.
    pub seconds_per_image: f64,
    /// Share of images whose nearest class embedding is their class.
    pub nearest_class_accuracy: f64,
}

/// The embed stage's summary, by split name.
pub type EmbedSummary = BTreeMap<String, EmbedSplitSummary>;

/// `embed_summary.json` in an embed folder.
fn embed_summary_path(embed_dir: &Path) -> PathBuf {
    embed_dir.join("embed_summary.json")
}

/// `<kind>/<split>.npy` in an embed folder.
fn embed_file(embed_dir: &Path, kind: &str, split: SplitName) -> PathBuf {
    embed_dir.join(kind).join(format!("{split}.npy"))
}

/// A JSON file as `T`, or `None` when it is missing or does not parse.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Writes the embed stage's summary into its folder.
pub fn store_embed_summary(embed_dir: &Path, summary: &EmbedSummary) -> Result<(), StoreError> {
    store::write_json_atomic(&embed_summary_path(embed_dir), summary)
}

/// Writes one split's embed outputs into an embed folder: the three `.npy` files and the top
/// classes as Parquet.
pub fn store_embedded(embed_dir: &Path, split: SplitName, e: &Embedded) -> Result<(), StoreError> {
    store::write_atomic(&embed_file(embed_dir, "embeddings", split), |w| {
        npy::write_f32(w, e.n, e.d, &e.embeddings)
    })?;
    store::write_atomic(&embed_file(embed_dir, "activations", split), |w| {
        npy::write_f32(w, e.n, e.h, &e.activations)
    })?;
    store::write_atomic(&embed_file(embed_dir, "codes", split), |w| {
        npy::write_u64(w, e.n, codes::words_for(e.h), &e.codes)
    })?;
    let (mut image, mut rank, mut class, mut score) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, row) in e.classes.chunks(TOP_CLASSES).enumerate() {
        for (r, &(c, s)) in row.iter().enumerate() {
            image.push(Some(i as u32));
            rank.push(Some(r as u32));
            class.push(Some(u32::from(c)));
            score.push(s);
        }
    }
    Frame::new()
        .with("image_id", Values::U32(image))
        .with("rank", Values::U32(rank))
        .with("class_id", Values::U32(class))
        .with("score", Values::F32(score))
        .write(
            &embed_dir.join("classes"),
            split.as_str(),
            &[TableFormat::Parquet],
        )?;
    Ok(())
}

/// Reads `split`'s embeddings, activations and codes from an embed folder.
///
/// # Errors
/// [`ArtifactError`] naming the file that is missing or malformed, or the folder whose files
/// disagree on the number of images.
pub fn load_embedded(embed_dir: &Path, split: SplitName) -> Result<StoredEmbedding, ArtifactError> {
    let read = |sub: &str| -> Result<Vec<u8>, ArtifactError> {
        Ok(store::read(&embed_file(embed_dir, sub, split))?)
    };
    let npy_err = |sub: &str| {
        let path = embed_file(embed_dir, sub, split);
        move |source| ArtifactError::Npy { path, source }
    };
    let (n, d, embeddings) = npy::read_f32(&read("embeddings")?).map_err(npy_err("embeddings"))?;
    let (n2, h, activations) =
        npy::read_f32(&read("activations")?).map_err(npy_err("activations"))?;
    let (n3, _, codes) = npy::read_u64(&read("codes")?).map_err(npy_err("codes"))?;
    if n != n2 || n != n3 {
        return Err(ArtifactError::RowCounts {
            dir: embed_dir.to_path_buf(),
            counts: [n, n2, n3],
        });
    }
    Ok(StoredEmbedding {
        embeddings,
        d,
        activations,
        h,
        codes,
    })
}

/// The fine class names and Barz & Denzler's class similarity `S` from the hierarchy.
///
/// # Errors
/// [`ArtifactError::Data`] or [`ArtifactError::Semantics`] for unreadable or invalid files.
pub fn class_similarity(root: &DataRoot) -> Result<(LabelNames, SimilarityMatrix), ArtifactError> {
    let names = crate::data::cifar::load_names(&root.cifar_dir())?;
    let hierarchy = Hierarchy::load(&root.hierarchy_dir(), &names.fine)?;
    let s = SimilarityMatrix::from_hierarchy(&hierarchy)?;
    Ok((names, s))
}

/// The class embedding `C` of dimension `d` as f32, row-major `classes x d`.
///
/// # Errors
/// As [`class_similarity`], or [`ArtifactError::Semantics`] for an invalid `d`.
pub fn class_embedding_f32(root: &DataRoot, d: usize) -> Result<Vec<f32>, ArtifactError> {
    let (_, s) = class_similarity(root)?;
    Ok(class_embedding(&s, d)?.to_f32())
}

/// The shipped ImageNet weights of `lite` under the data root.
pub fn shipped_efficientnet_weights(root: &DataRoot, lite: Lite) -> PathBuf {
    root.path.join(lite.weights_file())
}

/// The weights file a trained encoder starts from: `model.weights`, else the shipped ImageNet
/// weights of an EfficientNet-Lite encoder; AlexNet without `model.weights` trains from
/// scratch.
pub fn pretrained_weights(root: &DataRoot, model: &ModelConfig) -> Option<PathBuf> {
    match (model.encoder, Lite::of(model.encoder)) {
        (_, Some(lite)) => Some(
            model
                .weights
                .clone()
                .unwrap_or_else(|| shipped_efficientnet_weights(root, lite)),
        ),
        (Encoder::Alexnet, None) => model.weights.clone(),
        (_, None) => None,
    }
}

/// What the word model cost, per image.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct WordModelCost {
    /// Seconds per image for the labels from stored encoder outputs (classifier head or class
    /// embedding lookup).
    pub head_s_per_image: f64,
    /// Seconds per image of the encoder pass that produced those outputs, where this run
    /// measured it (frozen EfficientNet features); `None` otherwise.
    pub encoder_s_per_image: Option<f64>,
}

impl WordModelCost {
    /// Head plus encoder: the word model's full cost per query image.
    pub fn total_s_per_image(&self) -> f64 {
        self.head_s_per_image + self.encoder_s_per_image.unwrap_or(0.0)
    }
}
