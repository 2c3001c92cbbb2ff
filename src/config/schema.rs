//! The YAML schema: plain serde structs with defaults and `deny_unknown_fields`.
//!
//! These types are what a config file deserializes into. They carry no invariants beyond their
//! types; [`super::validate`] checks ranges and cross-field rules and names the offending field.
//! Defaults follow the report where it states a value (`h = 48`, `d = 100`, SGD with lr 0.001 and
//! momentum 0.9, batch 8, 32 epochs, `N' = 2k`, `topIWK = topWWK = 4`).

use crate::index::Method;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A whole experiment config: one run, or a sweep of runs when `sweep` is present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Experiment name; results go to `results/<name>/`. Letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// Master seed for every random choice (initialisation, shuffling, synthetic data).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Compute backend for the model stages: `cpu` (burn's flex backend), `cuda` or `wgpu`
    /// (each needs its cargo feature).
    #[serde(default)]
    pub backend: Backend,
    /// Where the data comes from and how much of it to use.
    #[serde(default)]
    pub data: DataConfig,
    /// The network: encoder, hash layer `h`, embedding size `d`.
    #[serde(default)]
    pub model: ModelConfig,
    /// Optimiser and schedule.
    #[serde(default)]
    pub train: TrainConfig,
    /// Retrieval indices to build and search.
    #[serde(default)]
    pub index: IndexConfig,
    /// The image-word association network.
    #[serde(default)]
    pub iwan: IwanConfig,
    /// Protocols, cut-offs and metrics.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Output formats.
    #[serde(default)]
    pub report: ReportConfig,
    /// Parameters to vary; absent for a single run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepConfig>,
    /// How `harness run --slurm` submits the runs (command-line options override it). It says
    /// where runs execute, not what they compute, so it is not part of any run's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmConfig>,
}

fn default_seed() -> u64 {
    42
}

/// Compute backend for burn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// burn's pure-Rust CPU backend.
    #[default]
    Cpu,
    /// burn-cuda; requires building with `--features cuda`.
    Cuda,
    /// burn's wgpu backend (Vulkan, Metal, DirectX or GL, on a GPU or Mesa's software
    /// renderers); requires building with `--features wgpu`.
    Wgpu,
}

/// The `data` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Data root holding `cifar-100-binary/`, `hierarchy/`, `usf/`, `pretrained/`, `imagenet/`.
    /// Overridden by `--data-root` and `HARNESS_DATA`; when unset the harness searches
    /// `../shared/data` and `./shared/data`.
    pub root: Option<PathBuf>,
    /// Check the sha256 of `train.bin` and `test.bin` against the known values before use.
    pub verify_checksums: bool,
    /// Use only the first `n` training records (the official order is already shuffled, so
    /// this is close to class-balanced). `null` uses all 50,000.
    pub train_subset: Option<usize>,
    /// Use only the first `n` test records for queries. `null` uses all 10,000; metrics are only
    /// comparable with the report on the full test split.
    pub test_subset: Option<usize>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            root: None,
            verify_checksums: true,
            train_subset: None,
            test_subset: None,
        }
    }
}

impl DataConfig {
    /// Training images in use: `train_subset`, else the whole split.
    pub fn train_images(&self) -> usize {
        self.train_subset.unwrap_or(super::TRAIN_SIZE)
    }

    /// Test images in use: `test_subset`, else the whole split.
    pub fn test_images(&self) -> usize {
        self.test_subset.unwrap_or(super::TEST_SIZE)
    }
}

/// Image encoder in front of the hash decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoder {
    /// A compact CNN trained from scratch on 32x32 inputs.
    #[default]
    CifarCnn,
    /// EfficientNet-Lite0 with ImageNet weights, on bicubically upsampled inputs.
    EfficientnetLite0,
    /// EfficientNet-Lite2 (width 1.1, depth 1.2; trained at 260 px) with ImageNet weights, on
    /// bicubically upsampled inputs.
    EfficientnetLite2,
    /// The report's AlexNet at 224x224 (4096-d features).
    Alexnet,
}

impl std::str::FromStr for Encoder {
    type Err = String;

    /// The name configs use: `cifar_cnn`, `efficientnet_lite0`, `efficientnet_lite2` or
    /// `alexnet`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown encoder `{s}`; expected cifar_cnn, efficientnet_lite0, \
                     efficientnet_lite2 or alexnet"
                )
            })
    }
}

impl Encoder {
    /// Every encoder.
    pub const ALL: [Encoder; 4] = [
        Self::CifarCnn,
        Self::EfficientnetLite0,
        Self::EfficientnetLite2,
        Self::Alexnet,
    ];

    /// The name configs use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CifarCnn => "cifar_cnn",
            Self::EfficientnetLite0 => "efficientnet_lite0",
            Self::EfficientnetLite2 => "efficientnet_lite2",
            Self::Alexnet => "alexnet",
        }
    }

    /// Smallest input side the encoder's convolution and pooling stack accepts (AlexNet's
    /// 11x11/4 stem and three 3x3/2 pools need 63 pixels).
    pub const fn min_input_size(self) -> u32 {
        match self {
            Self::Alexnet => 63,
            Self::CifarCnn | Self::EfficientnetLite0 | Self::EfficientnetLite2 => 16,
        }
    }
}

/// The decoder between the encoder's features and the embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoder {
    /// The report's (Lin et al.): `features -> h` sigmoid units `-> d`. The embedding is a
    /// linear map of the hash layer, so the `h` bits are also the embedding's bottleneck.
    #[default]
    Paper,
    /// `features -> trunk` ReLU units (batch norm, dropout) `-> d`, with the `h`-bit hash as
    /// its own branch off the trunk (`trunk -> h` sigmoid units), trained through its own
    /// cosine decoder `h -> d` against the same class embedding, so the bits stay semantic
    /// while the embedding no longer passes through them.
    Wide,
}

/// The `model` section: encoder -> decoder (`h` sigmoid units: the hash; `d` outputs: the
/// embedding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Which encoder to use.
    pub encoder: Encoder,
    /// Input side in pixels; CIFAR's 32x32 images are upsampled bicubically to it.
    pub input_size: u32,
    /// Keep the pretrained encoder fixed and cache its features (EfficientNet only).
    pub freeze: bool,
    /// Optional weights file for the encoder (AlexNet) or a replacement for an EfficientNet-Lite
    /// encoder's shipped ImageNet weights.
    pub weights: Option<PathBuf>,
    /// Hash bits: the number of sigmoid units in the hidden layer (report: 48).
    pub h: u32,
    /// Embedding dimension `d` (report: 100, the number of classes; smaller values use the
    /// best rank-`d` approximation of the class similarity matrix).
    pub d: u32,
    /// Weight of an auxiliary softmax classification loss (Barz & Denzler use 0.1; the report 0).
    pub aux_ce_weight: f64,
    /// Which decoder: `paper` (the report's) or `wide`.
    pub decoder: Decoder,
    /// Width of the wide decoder's hidden layer (ignored by `paper`).
    pub trunk: u32,
    /// Dropout probability after the wide decoder's hidden layer while training (ignored by
    /// `paper`).
    pub dropout: f64,
    /// Embed every image as the mean of the network's outputs on it and on its mirror image
    /// (embedding and hash activations averaged, the bits and classes taken from the means):
    /// test-time augmentation, for a frozen encoder, at twice the encoder's cost per query. The
    /// trained network is the same with or without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mirror_average: bool,
    /// Arithmetic of the frozen EfficientNet-Lite's 1x1 convolutions in the features stage:
    /// `fp32`, or `bf16` (operands rounded to bfloat16, products summed in `f32`; AMX tiles
    /// where the CPU has AMX-BF16, else `vdpbf16ps` where it has AVX512_BF16, else gemm). Only
    /// for a frozen EfficientNet-Lite.
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
}

/// Arithmetic of the frozen encoder's matrix products (`model.precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Single precision throughout.
    #[default]
    Fp32,
    /// bfloat16 operands, `f32` sums.
    Bf16,
}

impl Precision {
    /// Whether this is the default, `fp32` (which configs and cache keys leave out).
    #[must_use]
    pub const fn is_fp32(&self) -> bool {
        matches!(self, Self::Fp32)
    }

    /// The name configs use: `fp32` or `bf16`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    /// `fp32` or `bf16`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Fp32, Self::Bf16]
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown precision `{s}`; expected fp32 or bf16"))
    }
}

impl ModelConfig {
    /// Whether only the decoder trains, on cached features of a frozen pretrained
    /// EfficientNet-Lite.
    pub const fn frozen_features(&self) -> bool {
        self.freeze
            && matches!(
                self.encoder,
                Encoder::EfficientnetLite0 | Encoder::EfficientnetLite2
            )
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            encoder: Encoder::CifarCnn,
            input_size: 32,
            freeze: true,
            weights: None,
            h: 48,
            d: 100,
            aux_ce_weight: 0.0,
            decoder: Decoder::Paper,
            trunk: 1024,
            dropout: 0.0,
            mirror_average: false,
            precision: Precision::Fp32,
        }
    }
}

/// Optimiser choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// SGD with momentum (the report).
    #[default]
    Sgd,
    /// Adam.
    Adam,
}

/// How the decoder's training steps are computed (`train.engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// burn's autodiff and optimisers: any model, encoder and optimiser.
    #[default]
    Burn,
    /// The wide decoder on frozen features with Adam, its forward and backward passes written
    /// out by hand on `gemm` with the element-wise work fused (`train::decoder`). It sums in
    /// other orders than burn's, so its networks differ from burn's in the last bits.
    Fused,
}

impl Engine {
    /// Whether this is burn's (the default, left out of a resolved config).
    pub const fn is_burn(&self) -> bool {
        matches!(self, Self::Burn)
    }
}

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Fixed learning rate (the report).
    #[default]
    Constant,
    /// Cosine decay to zero over all epochs.
    Cosine,
    /// Multiply by 0.1 at 50% and 75% of the epochs.
    Step,
}

/// The `train` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimiser.
    pub optimizer: Optimizer,
    /// Learning rate.
    pub lr: f64,
    /// SGD momentum, in `[0, 1)`.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Passes over the training images.
    pub epochs: usize,
    /// Train on only the first `n` training images (after `data.train_subset`); the database
    /// and the evaluation still use every image. `null` trains on all of them.
    pub subset: Option<usize>,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Random crop (pad 4) and horizontal flip. With a frozen encoder: each training image's
    /// features are, with probability 1/2, those of a cached view of it instead (the mirror
    /// image, or one of `shifted_views`).
    pub augment: bool,
    /// With a frozen encoder and `augment`: this many more cached views of the training images,
    /// each image shifted by a random `(dx, dy)` in `[-4, 4]^2` (zero fill) and mirrored with
    /// probability 1/2, drawn from a seed of the view's own (not the run's), so that runs share
    /// them. Each costs one feature pass over the training images.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shifted_views: usize,
    /// Worker threads for the CPU backend's feature, training and embedding passes; `0` means
    /// all cores.
    pub threads: usize,
    /// `burn` (any network) or `fused` (the wide decoder on frozen features with Adam, written
    /// out by hand: 1.6x faster than burn on 2 cores).
    #[serde(default, skip_serializing_if = "Engine::is_burn")]
    pub engine: Engine,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            optimizer: Optimizer::Sgd,
            lr: 0.001,
            momentum: 0.9,
            weight_decay: 0.0,
            batch_size: 8,
            epochs: 32,
            subset: None,
            schedule: Schedule::Constant,
            augment: false,
            shifted_views: 0,
            threads: 0,
            engine: Engine::Burn,
        }
    }
}

/// The method name of hash + re-rank in the report's Table 2 setting (`index.report_setting`).
pub const REPORT_TABLE2_METHOD: &str = "hamming_rerank_report";

/// The method name of IWAN on the report's own graph (`iwan.report_graph`).
pub const REPORT_GRAPH_METHOD: &str = "iwan_report_graph";

/// The `index` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Methods to build and evaluate.
    pub methods: Vec<Method>,
    /// Shortlist size as a multiple of `k`: `N' = shortlist_factor * k` (report: 2).
    pub shortlist_factor: f64,
    /// Absolute shortlist size `N'`; overrides `shortlist_factor` when set.
    pub shortlist: Option<usize>,
    /// Number of multi-index-hashing substrings `m`; `null` chooses from `N` and `h`.
    pub mih_substrings: Option<u32>,
    /// Threads for batched search; `0` means all cores.
    pub threads: usize,
    /// Also evaluate hash + re-rank as the report's code ran it for Table 2: one Hamming
    /// shortlist of `N' = k = max(eval.ks)` re-ranked by cosine, every cut-off a prefix of that
    /// ranking, as the separate method `hamming_rerank_report` (needs `hamming_rerank`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub report_setting: bool,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            methods: vec![Method::Exact, Method::HammingRerank],
            shortlist_factor: 2.0,
            shortlist: None,
            mih_substrings: None,
            threads: 0,
            report_setting: false,
        }
    }
}

/// Where an image's words come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordModel {
    /// Top ImageNet labels of the pretrained EfficientNet-Lite classifier: the encoder's own
    /// (Lite0 or Lite2), else Lite0's.
    #[default]
    Imagenet,
    /// The trained embedding network's nearest CIFAR-100 classes.
    Classes,
}

/// Which words annotate database images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbWords {
    /// The word model's predictions only (no ground truth).
    #[default]
    Predicted,
    /// The image's own fine and coarse label names (uses ground truth).
    Labels,
    /// Both of the above (ours; the report linked only the fine label, at strength 0.8: see
    /// `iwan.report_graph`).
    Both,
}

/// Which USF strength weights a word-word edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// Forward strength `FSG` (the report).
    #[default]
    Fsg,
    /// Backward strength `BSG`.
    Bsg,
    /// The larger of the two.
    Max,
}

/// How IWAN turns graph distances into a ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IwanScore {
    /// Shortest path length from the query (the report).
    #[default]
    ShortestPath,
    /// Sum over an image's words of `exp(-dist)`: rewards many short paths.
    MultiPath,
}

impl IwanScore {
    /// The method name IWAN's results carry under this score with predicted database words.
    pub fn method_name(self) -> &'static str {
        self.method_name_with(DbWords::Predicted)
    }

    /// The method name under this score and database annotation. Annotations that use ground
    /// truth get their own names, so their rows are never mixed with the honest `iwan`.
    pub fn method_name_with(self, db: DbWords) -> &'static str {
        match (self, db) {
            (Self::ShortestPath, DbWords::Predicted) => "iwan",
            (Self::MultiPath, DbWords::Predicted) => "iwan_multi_path",
            (Self::ShortestPath, DbWords::Both) => "iwan_db_labels",
            (Self::MultiPath, DbWords::Both) => "iwan_multi_path_db_labels",
            (Self::ShortestPath, DbWords::Labels) => "iwan_labels_only",
            (Self::MultiPath, DbWords::Labels) => "iwan_multi_path_labels_only",
        }
    }
}

/// The `iwan` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IwanConfig {
    /// Build and evaluate IWAN.
    pub enabled: bool,
    /// Source of each image's words.
    pub word_model: WordModel,
    /// `topIWK`: words per image.
    #[serde(alias = "topIWK")]
    pub top_iwk: usize,
    /// `topWWK`: associates per word.
    #[serde(alias = "topWWK")]
    pub top_wwk: usize,
    /// Which words annotate database images.
    pub db_words: DbWords,
    /// Also evaluate our graph with each database image linked to its own fine and coarse label
    /// words besides its predicted words (`db_words: both`), as the separate method
    /// `iwan_db_labels`. (The key's name is historical: the report's own graph, which links
    /// only the fine label, is `report_graph`.)
    pub report_setting: bool,
    /// USF strength used for word-word edges.
    pub strength: Strength,
    /// Word-expansion depth (1 reproduces the report).
    pub depth: usize,
    /// Ranking score.
    pub score: IwanScore,
    /// Side in pixels the 32x32 images are upsampled to for the ImageNet word model.
    pub input_size: u32,
    /// Softmax temperature turning the `classes` word model's cosine scores into strengths
    /// (smaller: sharper). On default.yaml 0.01 sits between the best train-DB mP@250 (0.005)
    /// and the best mAHP@250 (0.02), within 0.003 of each (README, IWAN).
    pub class_temperature: f32,
    /// Also evaluate the network as the report's code built it for Tables 3-4 (its vocabulary,
    /// label edges and query edges; see `iwan::report_graph`), queried by the first 500 test
    /// images on the train database, as the separate method `iwan_report_graph`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub report_graph: bool,
}

impl IwanConfig {
    /// The database annotations evaluated, each as its own method: `db_words`, then the
    /// report's setting (`both`) when `report_setting` asks for it.
    pub fn evaluated_db_words(&self) -> Vec<DbWords> {
        let mut out = vec![self.db_words];
        if self.report_setting && self.db_words != DbWords::Both {
            out.push(DbWords::Both);
        }
        out
    }
}

impl Default for IwanConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            word_model: WordModel::Imagenet,
            top_iwk: 4,
            top_wwk: 4,
            db_words: DbWords::Predicted,
            report_setting: true,
            strength: Strength::Fsg,
            depth: 1,
            score: IwanScore::ShortestPath,
            input_size: 96,
            class_temperature: 0.01,
            report_graph: false,
        }
    }
}

/// Evaluation protocol (see DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// DB = queries = test set, the query stays in the DB (what the report did).
    Report,
    /// As `report`, but each query is removed from its own ranking (Barz & Denzler).
    LeaveOneOut,
    /// DB = the 50,000 train images, queries = the 10,000 test images.
    TrainDb,
}

impl Protocol {
    /// All protocols, in declaration order.
    pub const ALL: [Protocol; 3] = [Protocol::Report, Protocol::LeaveOneOut, Protocol::TrainDb];

    /// Name used in configs and result files.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Report => "report",
            Protocol::LeaveOneOut => "leave_one_out",
            Protocol::TrainDb => "train_db",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A metric family that `metrics.csv` can hold (`eval.metrics`); docs/metrics.md defines each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MetricName {
    /// Mean precision at k.
    #[serde(rename = "mP")]
    Precision,
    /// Mean AP@k, `(1/min(R,k)) Σ rel_i P@i`.
    #[serde(rename = "mAP")]
    AveragePrecision,
    /// Mean hierarchical precision HP@k.
    #[serde(rename = "mHP")]
    HierarchicalPrecision,
    /// Mean AHP@k, the trapezoid area under HP@1..HP@k (Barz & Denzler).
    #[serde(rename = "mAHP")]
    Ahp,
    /// The report's Tables 1-2 "mAHP@k": the plain mean of HP@1..HP@k.
    #[serde(rename = "mAHP_mean")]
    AhpMean,
    /// The report's Tables 1-2 "mAP@k": `(1/k) Σ rel_i P@i`.
    #[serde(rename = "mAP_report")]
    ApReport,
    /// The report's Tables 3-4 "mAP@k", over the queries with a hit in the first 20 (with the
    /// count of those queries, `mP_hit20_queries`).
    #[serde(rename = "mP_hit20")]
    PrecisionHit20,
    /// The report's Tables 3-4 "mAHP@k", likewise (with `mAHP_hit20_queries`).
    #[serde(rename = "mAHP_hit20")]
    AhpHit20,
    /// AP over the whole ranking (where the ranking covers the database).
    #[serde(rename = "AP_full")]
    ApFull,
    /// Query latency, throughput, build time and index size.
    #[serde(rename = "timing")]
    Timing,
}

impl MetricName {
    /// Every metric family, in the order `metrics.csv` writes them.
    pub const ALL: [MetricName; 10] = [
        MetricName::Precision,
        MetricName::AveragePrecision,
        MetricName::HierarchicalPrecision,
        MetricName::Ahp,
        MetricName::AhpMean,
        MetricName::ApReport,
        MetricName::PrecisionHit20,
        MetricName::AhpHit20,
        MetricName::ApFull,
        MetricName::Timing,
    ];
}

fn all_metrics() -> Vec<MetricName> {
    MetricName::ALL.to_vec()
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_all_metrics(m: &[MetricName]) -> bool {
    m == MetricName::ALL
}

/// The `eval` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Protocols to evaluate, each reported in its own rows.
    pub protocols: Vec<Protocol>,
    /// Cut-offs `k`.
    pub ks: Vec<usize>,
    /// Queries timed one at a time for the latency figures.
    pub timing_queries: usize,
    /// Write each method's rankings as Parquet (`query_id, rank, db_id, score`).
    pub dump_rankings: bool,
    /// The metric families written to `metrics.csv` (default: all of them). Left out of the
    /// resolved config when it is the default, so configs that do not name it keep their hash.
    #[serde(default = "all_metrics", skip_serializing_if = "is_all_metrics")]
    pub metrics: Vec<MetricName>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            protocols: vec![Protocol::Report, Protocol::LeaveOneOut],
            ks: vec![1, 5, 20, 100, 250],
            timing_queries: 1000,
            dump_rankings: false,
            metrics: all_metrics(),
        }
    }
}

pub use crate::store::frame::TableFormat;

/// Figure file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FigureFormat {
    /// Raster image.
    Png,
    /// Vector image.
    Svg,
}

/// The `report` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Table formats to write.
    pub tables: Vec<TableFormat>,
    /// Figure formats to write.
    pub figures: Vec<FigureFormat>,
    /// Put the report's published values beside ours.
    pub reference_values: bool,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            tables: vec![
                TableFormat::Csv,
                TableFormat::Parquet,
                TableFormat::Markdown,
            ],
            figures: vec![FigureFormat::Png, FigureFormat::Svg],
            reference_values: true,
        }
    }
}

/// How sweep lists combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepMode {
    /// Every combination (cartesian product).
    #[default]
    Product,
    /// The i-th values of every list together; all lists must have the same length.
    Zip,
}

/// The `slurm` section: the resources of each array task (one per run). Every field is
/// optional; unset ones are left to the cluster's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// `--partition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--time`, in a Slurm time format: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM` or
    /// `D-HH:MM:SS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `--cpus-per-task`; also the task's thread count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<u32>,
    /// `--gpus-per-task` (for `backend: cuda`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_per_task: Option<u32>,
    /// `--mem`, e.g. `16G`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// Array tasks running at once (the array's `%N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// More `sbatch` options, one per entry, e.g. `--account=proj42` or `--qos=short`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
}

/// The `sweep` section: dotted config paths mapped to lists of values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// `product` or `zip`.
    #[serde(default)]
    pub mode: SweepMode,
    /// e.g. `iwan.top_iwk: [1, 2, 3]`. Runs are enumerated with keys in alphabetical order,
    /// the last key varying fastest.
    pub params: BTreeMap<String, Vec<serde_json::Value>>,
}
