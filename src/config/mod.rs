//! Experiment configs: YAML in, validated typed values out.
//!
//! A config file is read with `serde-saphyr` into the plain structs of [`schema`]
//! (`deny_unknown_fields`, defaults filled in), checked by [`validate`] for ranges and
//! cross-field rules, and expanded by [`sweep`] into the list of runs it describes. Every error
//! names the file, the field and, where it can be found, the line.

pub mod schema;
pub mod sweep;

pub use schema::*;
pub use sweep::{Run, expand};
use sweep::{check_field, set_field};

use crate::index::Method;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The config shipped as `configs/default.yaml`, embedded so `harness run` works with no file.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/default.yaml");

/// Largest hash length the packed code format supports.
pub const MAX_HASH_BITS: u32 = 1024;
/// Largest width of the wide decoder's hidden layer.
pub const MAX_TRUNK: u32 = 8192;
/// Most cached shifted views of the training images (`train.shifted_views`).
pub const MAX_SHIFTED_VIEWS: usize = 16;
/// Number of CIFAR-100 fine classes: the largest embedding dimension the class embedding has.
pub const MAX_EMBEDDING_DIM: u32 = 100;
/// Largest config file read (a config is a few kB; a sweep with long lists stays far below).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Official CIFAR-100 split sizes.
pub const TRAIN_SIZE: usize = 50_000;
/// Official CIFAR-100 test split size.
pub const TEST_SIZE: usize = 10_000;

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is larger than any config could need (checked before reading it).
    #[error("config {path}: {bytes} bytes, more than the {limit}-byte limit for a config")]
    TooLarge {
        /// The config path.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// [`MAX_CONFIG_BYTES`].
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error("config {path}: not UTF-8 text (byte {offset} starts an invalid sequence)")]
    NotUtf8 {
        /// The config path.
        path: PathBuf,
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// YAML syntax error, unknown key or wrong type (the message carries line and column).
    #[error("config {origin}: {message}")]
    Parse {
        /// File path or `<embedded default>`.
        origin: String,
        /// The parser's message with a snippet of the offending line.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("config {origin}: field `{field}`{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Invalid {
        /// File path or `<embedded default>`.
        origin: String,
        /// Dotted path of the field, e.g. `model.h`.
        field: String,
        /// 1-based line of the field in the file, when it is written there.
        line: Option<usize>,
        /// What was expected.
        message: String,
    },
}

/// A config as loaded: the typed value plus where it came from and its text (for line lookups).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file path, or `<embedded default>`.
    pub origin: String,
    /// The source text.
    pub text: String,
    /// The parsed, validated config (before sweep expansion).
    pub config: Config,
    /// The command-line overrides applied to the file (`KEY=VALUE`, then `--sweep` lists), as
    /// typed; recorded in each run's manifest.
    pub command_line: Vec<String>,
}

/// A config file's text, refused when too large or not UTF-8.
fn read_config_text(path: &Path) -> Result<String, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::metadata(path).map_err(read_err)?.len();
    if bytes > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            bytes,
            limit: MAX_CONFIG_BYTES,
        });
    }
    let raw = std::fs::read(path).map_err(read_err)?;
    String::from_utf8(raw).map_err(|e| ConfigError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// The tree of the config at `path` with its `base:` chain merged under it; `chain` holds the
/// files being read (to refuse a cycle).
fn based_tree(path: &Path, chain: &mut Vec<PathBuf>) -> Result<serde_json::Value, ConfigError> {
    let origin = path.display().to_string();
    let invalid = |message: String| ConfigError::Invalid {
        origin: origin.clone(),
        field: "base".into(),
        line: None,
        message,
    };
    let canonical = path.canonicalize().map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(i) = chain.iter().position(|p| *p == canonical) {
        let names: Vec<String> = chain[i..]
            .iter()
            .chain([&canonical])
            .map(|p| p.display().to_string())
            .collect();
        return Err(invalid(format!("a cycle of bases: {}", names.join(" -> "))));
    }
    let text = read_config_text(path)?;
    let mut tree: serde_json::Value =
        serde_saphyr::from_str(&text).map_err(|e| ConfigError::Parse {
            origin: origin.clone(),
            message: e.to_string().replace("<input>", &origin),
        })?;
    let Some(map) = tree.as_object_mut() else {
        return Err(invalid("expected a mapping of config sections".into()));
    };
    let Some(base) = map.remove("base") else {
        return Ok(tree);
    };
    let base = base
        .as_str()
        .ok_or_else(|| invalid(format!("expected a file path, got {base}")))?;
    let base_path = path.parent().unwrap_or(Path::new(".")).join(base);
    chain.push(canonical);
    let mut merged = based_tree(&base_path, chain).map_err(|e| match e {
        ConfigError::Read { path: p, source } => {
            invalid(format!("cannot read the base {}: {source}", p.display()))
        }
        other => other,
    })?;
    chain.pop();
    merge(&mut merged, tree);
    Ok(merged)
}

/// Merges `over` into `base`: mappings key by key, any other value replacing the base's.
fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// A `KEY=VALUE` from the command line: a dotted config path and a value read as YAML
/// (`20`, `true`, `adam`, `[exact, mih]`, `null`).
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The dotted path, e.g. `train.epochs`.
    pub key: String,
    /// The value.
    pub value: serde_json::Value,
    /// The argument as typed.
    pub text: String,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(arg: &str) -> Result<Self, String> {
        let (key, value) = arg
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| format!("`{arg}`: expected KEY=VALUE, e.g. train.epochs=20"))?;
        Ok(Self {
            key: key.trim().to_string(),
            value: yaml_value(value).map_err(|e| format!("`{arg}`: {e}"))?,
            text: arg.to_string(),
        })
    }
}

/// A `--sweep KEY=V1,V2,...` from the command line: one sweep parameter and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepArg {
    /// The dotted path.
    pub key: String,
    /// The values, each read as YAML.
    pub values: Vec<serde_json::Value>,
    /// The argument as typed.
    pub text: String,
}

impl std::str::FromStr for SweepArg {
    type Err = String;

    fn from_str(arg: &str) -> Result<Self, String> {
        let o: Override = arg.parse()?;
        let list = arg.split_once('=').map(|(_, v)| v).unwrap_or_default();
        let values = list
            .split(',')
            .map(|v| yaml_value(v).map_err(|e| format!("`{arg}`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            key: o.key,
            values,
            text: arg.to_string(),
        })
    }
}

/// A command-line value read as YAML (an empty one is null).
fn yaml_value(text: &str) -> Result<serde_json::Value, String> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_saphyr::from_str(text).map_err(|e| format!("the value `{text}` is not YAML: {e}"))
}

impl Loaded {
    /// Reads, parses and validates a config file.
    ///
    /// A config whose top level says `base: FILE` (a path relative to the config's folder)
    /// starts from that config, its own keys winning: mappings merge key by key, any other
    /// value replaces the base's. Bases may have bases; a cycle is refused with the chain
    /// named. The resolved YAML becomes the text, so its hash and run ids are those of a
    /// single file that says the same.
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        let text = read_config_text(path)?;
        let origin = path.display().to_string();
        let has_base = serde_saphyr::from_str::<serde_json::Value>(&text)
            .ok()
            .is_some_and(|v| v.get("base").is_some());
        if !has_base {
            return Self::from_text(&origin, text);
        }
        let tree = based_tree(path, &mut Vec::new())?;
        let config: Config = serde_json::from_value(tree).map_err(|e| ConfigError::Parse {
            origin: origin.clone(),
            message: format!("with its bases merged: {e}"),
        })?;
        let loaded = Self {
            origin,
            text: to_yaml(&config),
            config,
            command_line: Vec::new(),
        };
        loaded.check(&loaded.config)?;
        Ok(loaded)
    }

    /// The embedded default config (`configs/default.yaml`).
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::from_text("<embedded default>", DEFAULT_CONFIG.to_string())
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn from_text(origin: &str, text: String) -> Result<Self, ConfigError> {
        let config: Config = serde_saphyr::from_str(&text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string().replace("<input>", origin),
        })?;
        let loaded = Self {
            origin: origin.to_string(),
            text,
            config,
            command_line: Vec::new(),
        };
        loaded.check(&loaded.config)?;
        Ok(loaded)
    }

    /// Applies command-line overrides, later ones winning, then replaces the config's sweep by
    /// the `--sweep` parameters (combined by `mode`, default `product`), checking the result
    /// as a config file is checked. An error names the override. The resolved YAML becomes the
    /// config's text, so a Slurm submission runs exactly what was asked for, and the resolved
    /// config, its hash and its run ids are the same as for a file that says the same.
    pub fn with_command_line(
        self,
        overrides: &[Override],
        sweep: &[SweepArg],
        mode: Option<SweepMode>,
    ) -> Result<Self, ConfigError> {
        if overrides.is_empty() && sweep.is_empty() {
            return Ok(self);
        }
        let origin = format!("{} (with command-line overrides)", self.origin);
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            origin: origin.clone(),
            field: field.to_string(),
            line: None,
            message,
        };
        let mut tree =
            serde_json::to_value(&self.config).map_err(|e| invalid("config", e.to_string()))?;
        for o in overrides {
            let at = |m: String| invalid(&o.key, format!("override `{}`: {m}", o.text));
            check_field(&tree, &o.key).map_err(at)?;
            set_field(&mut tree, &o.key, o.value.clone());
            serde_json::from_value::<Config>(tree.clone()).map_err(|e| at(e.to_string()))?;
        }
        if !sweep.is_empty() {
            let params: serde_json::Map<String, serde_json::Value> = sweep
                .iter()
                .map(|s| (s.key.clone(), serde_json::Value::from(s.values.clone())))
                .collect();
            tree["sweep"] = serde_json::json!({
                "mode": mode.unwrap_or(SweepMode::Product),
                "params": params,
            });
        }
        let config: Config =
            serde_json::from_value(tree).map_err(|e| invalid("sweep", e.to_string()))?;
        let command_line = overrides
            .iter()
            .map(|o| o.text.clone())
            .chain(sweep.iter().map(|s| format!("--sweep {}", s.text)))
            .collect();
        let loaded = Self {
            origin,
            text: to_yaml(&config),
            config,
            command_line,
        };
        loaded.check(&loaded.config)?;
        Ok(loaded)
    }

    /// Validates `config` (the base or one expanded run), attributing errors to this file.
    pub fn check(&self, config: &Config) -> Result<(), ConfigError> {
        validate(config).map_err(|(field, message)| ConfigError::Invalid {
            origin: self.origin.clone(),
            line: locate(&self.text, &field),
            field,
            message,
        })
    }

    /// The runs this config describes: one, or one per sweep point.
    pub fn runs(&self) -> Result<Vec<Run>, ConfigError> {
        expand(self)
    }
}

/// Checks ranges and cross-field rules. On failure returns the dotted field path and what was
/// expected.
pub fn validate(c: &Config) -> Result<(), (String, String)> {
    fn fail<T>(field: &str, message: impl Into<String>) -> Result<T, (String, String)> {
        Err((field.to_string(), message.into()))
    }
    let name_ok = !c.name.is_empty()
        && c.name.len() <= 100
        && c.name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
        && !c.name.starts_with('.');
    if !name_ok {
        return fail(
            "name",
            format!(
                "`{}` is not a usable experiment name: use 1-100 letters, digits, `-`, `_` or `.` \
                 (not starting with `.`); it becomes a folder name",
                c.name
            ),
        );
    }
    for (field, v) in [
        (
            "data.train_subset",
            c.data.train_subset.map(|n| (n, TRAIN_SIZE)),
        ),
        (
            "data.test_subset",
            c.data.test_subset.map(|n| (n, TEST_SIZE)),
        ),
    ] {
        if let Some((n, max)) = v
            && !(1..=max).contains(&n)
        {
            return fail(
                field,
                format!("expected 1..={max} records or null, got {n}"),
            );
        }
    }
    let m = &c.model;
    if !(1..=MAX_HASH_BITS).contains(&m.h) {
        return fail(
            "model.h",
            format!("hash bits must be in 1..={MAX_HASH_BITS}, got {}", m.h),
        );
    }
    if !(1..=MAX_EMBEDDING_DIM).contains(&m.d) {
        return fail(
            "model.d",
            format!(
                "embedding dimension must be in 1..={MAX_EMBEDDING_DIM} (the number of classes), got {}",
                m.d
            ),
        );
    }
    if !(16..=512).contains(&m.input_size) {
        return fail(
            "model.input_size",
            format!("expected 16..=512 pixels, got {}", m.input_size),
        );
    }
    if m.encoder == Encoder::CifarCnn && m.input_size != 32 {
        return fail(
            "model.input_size",
            "the cifar_cnn encoder takes 32x32 inputs; set input_size: 32",
        );
    }
    if m.input_size < m.encoder.min_input_size() {
        return fail(
            "model.input_size",
            format!(
                "the {} encoder needs inputs of at least {} pixels (the report uses 224), got {}",
                m.encoder.as_str(),
                m.encoder.min_input_size(),
                m.input_size
            ),
        );
    }
    if m.encoder == Encoder::Alexnet && m.freeze {
        return fail(
            "model.freeze",
            "the alexnet encoder trains end to end; set freeze: false (frozen, cached features \
             are for efficientnet_lite0)",
        );
    }
    if m.encoder == Encoder::CifarCnn && m.weights.is_some() {
        return fail(
            "model.weights",
            "the cifar_cnn encoder always trains from scratch; remove model.weights",
        );
    }
    if !(m.aux_ce_weight.is_finite() && m.aux_ce_weight >= 0.0) {
        return fail(
            "model.aux_ce_weight",
            format!("expected a finite value >= 0, got {}", m.aux_ce_weight),
        );
    }
    if !(1..=MAX_TRUNK).contains(&m.trunk) {
        return fail(
            "model.trunk",
            format!("expected 1..={MAX_TRUNK} hidden units, got {}", m.trunk),
        );
    }
    if !(0.0..1.0).contains(&m.dropout) {
        return fail(
            "model.dropout",
            format!("expected a probability in [0, 1), got {}", m.dropout),
        );
    }
    let t = &c.train;
    if !(t.lr.is_finite() && t.lr > 0.0) {
        return fail(
            "train.lr",
            format!("expected a finite learning rate > 0, got {}", t.lr),
        );
    }
    if !(0.0..1.0).contains(&t.momentum) {
        return fail(
            "train.momentum",
            format!("expected a value in [0, 1), got {}", t.momentum),
        );
    }
    if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
        return fail(
            "train.weight_decay",
            format!("expected a finite value >= 0, got {}", t.weight_decay),
        );
    }
    if t.batch_size == 0 || t.batch_size > 4096 {
        return fail(
            "train.batch_size",
            format!("expected 1..=4096, got {}", t.batch_size),
        );
    }
    if t.epochs == 0 || t.epochs > 10_000 {
        return fail(
            "train.epochs",
            format!("expected 1..=10000, got {}", t.epochs),
        );
    }
    if t.subset == Some(0) {
        return fail(
            "train.subset",
            "expected at least 1 training image, or null for all of them",
        );
    }
    // Cached views and the mirror average read a frozen encoder's features.
    let frozen = m.frozen_features();
    if m.mirror_average && !frozen {
        return fail(
            "model.mirror_average",
            "the mirror average embeds cached features of the mirror images: it needs a frozen \
             efficientnet_lite0 or efficientnet_lite2 encoder (freeze: true)",
        );
    }
    if m.precision == Precision::Bf16 && !frozen {
        return fail(
            "model.precision",
            "bf16 is the arithmetic of the frozen encoder's features stage: it needs a frozen \
             efficientnet_lite0 or efficientnet_lite2 encoder (freeze: true); trained networks \
             run in fp32",
        );
    }
    if t.shifted_views > MAX_SHIFTED_VIEWS {
        return fail(
            "train.shifted_views",
            format!(
                "expected 0..={MAX_SHIFTED_VIEWS} views (each is a feature pass over the training \
                 images), got {}",
                t.shifted_views
            ),
        );
    }
    if t.shifted_views > 0 && !(frozen && t.augment) {
        return fail(
            "train.shifted_views",
            "shifted views are cached features that `train.augment` draws from: they need a \
             frozen efficientnet_lite0 or efficientnet_lite2 encoder and augment: true (a \
             trained encoder's augmentation already shifts every batch)",
        );
    }
    if t.engine == Engine::Fused {
        let unsupported = [
            (
                !frozen,
                "a frozen efficientnet_lite0 or efficientnet_lite2 encoder (freeze: true)",
            ),
            (m.decoder != Decoder::Wide, "model.decoder: wide"),
            (m.dropout != 0.0, "model.dropout: 0"),
            (t.optimizer != Optimizer::Adam, "train.optimizer: adam"),
            (c.backend != Backend::Cpu, "backend: cpu"),
        ];
        if let Some((_, needs)) = unsupported.iter().find(|(missing, _)| *missing) {
            return fail(
                "train.engine",
                format!("the fused engine needs {needs}; set train.engine=burn for this network"),
            );
        }
    }
    let ix = &c.index;
    if ix.methods.is_empty() && !c.iwan.enabled {
        return fail(
            "index.methods",
            "no retrieval method selected: list index methods or enable iwan",
        );
    }
    if let Some(dup) = first_duplicate(&ix.methods) {
        return fail("index.methods", format!("method {dup:?} is listed twice"));
    }
    if ix.methods.contains(&Method::MihRerank) {
        return fail(
            "index.methods",
            "`mih_rerank` is a `harness bench search` method (its results are those of \
             `hamming_rerank`, with the shortlist from MIH): list `hamming_rerank`",
        );
    }
    if !(ix.shortlist_factor.is_finite() && ix.shortlist_factor >= 1.0) {
        return fail(
            "index.shortlist_factor",
            format!(
                "N'/k must be a finite number >= 1, got {}",
                ix.shortlist_factor
            ),
        );
    }
    if ix.shortlist == Some(0) {
        return fail(
            "index.shortlist",
            "N' must be at least 1 (or null to use shortlist_factor)",
        );
    }
    if let Some(s) = ix.mih_substrings
        && !(1..=m.h).contains(&s)
    {
        return fail(
            "index.mih_substrings",
            format!("m must be in 1..=h ({}), got {s}", m.h),
        );
    }
    let w = &c.iwan;
    // topIWK counts the word model's labels: 1,000 ImageNet classes or 100 CIFAR-100 classes.
    let (labels, model) = match w.word_model {
        WordModel::Imagenet => (1000, "imagenet"),
        WordModel::Classes => (100, "classes"),
    };
    if !(1..=labels).contains(&w.top_iwk) {
        return fail(
            "iwan.top_iwk",
            format!(
                "topIWK must be in 1..={labels} (the {model} word model has {labels} labels), got {}",
                w.top_iwk
            ),
        );
    }
    if !(1..=1000).contains(&w.top_wwk) {
        return fail(
            "iwan.top_wwk",
            format!("topWWK must be in 1..=1000, got {}", w.top_wwk),
        );
    }
    if !(1..=5).contains(&w.depth) {
        return fail(
            "iwan.depth",
            format!("expansion depth must be in 1..=5, got {}", w.depth),
        );
    }
    if !(16..=512).contains(&w.input_size) {
        return fail(
            "iwan.input_size",
            format!("expected 16..=512 pixels, got {}", w.input_size),
        );
    }
    if !(w.class_temperature > 0.0 && w.class_temperature <= 10.0) {
        return fail(
            "iwan.class_temperature",
            format!(
                "expected a temperature in (0, 10], got {}",
                w.class_temperature
            ),
        );
    }
    let e = &c.eval;
    if e.protocols.is_empty() {
        return fail(
            "eval.protocols",
            "list at least one of report, leave_one_out, train_db",
        );
    }
    if let Some(dup) = first_duplicate(&e.protocols) {
        return fail(
            "eval.protocols",
            format!("protocol {dup:?} is listed twice"),
        );
    }
    if e.ks.is_empty() {
        return fail("eval.ks", "list at least one cut-off k");
    }
    // The smallest database any protocol searches (leave-one-out drops the query itself).
    let test_db = c.data.test_images();
    let db_max = e
        .protocols
        .iter()
        .map(|p| match p {
            Protocol::Report => test_db,
            Protocol::LeaveOneOut => test_db.saturating_sub(1),
            Protocol::TrainDb => c.data.train_images(),
        })
        .min()
        .unwrap_or(test_db);
    for &k in &e.ks {
        if k == 0 || k > db_max {
            return fail(
                "eval.ks",
                format!(
                    "each k must be in 1..={db_max} (the smallest database the protocols search), got {k}"
                ),
            );
        }
    }
    if e.timing_queries == 0 {
        return fail("eval.timing_queries", "time at least one query");
    }
    if e.metrics.is_empty() {
        return fail(
            "eval.metrics",
            "list at least one metric (leave the key out to write all of them)",
        );
    }
    if let Some(dup) = first_duplicate(&e.metrics) {
        return fail("eval.metrics", format!("metric {dup:?} is listed twice"));
    }
    if c.index.report_setting && !c.index.methods.contains(&Method::HammingRerank) {
        return fail(
            "index.report_setting",
            "the report's Table 2 setting re-runs `hamming_rerank`: add it to index.methods",
        );
    }
    if c.iwan.report_graph && !(c.iwan.enabled && e.protocols.contains(&Protocol::TrainDb)) {
        return fail(
            "iwan.report_graph",
            "the report's IWAN graph is searched over the train database: set iwan.enabled \
             and add train_db to eval.protocols",
        );
    }
    if let Some(slurm) = &c.slurm {
        validate_slurm(slurm).map_err(|(f, m)| (format!("slurm.{f}"), m))?;
    }
    Ok(())
}

/// Checks the `slurm` settings (from the config or the command line); on failure returns the
/// field (`time`, `mem`, ...) and what was expected.
pub fn validate_slurm(s: &SlurmConfig) -> Result<(), (String, String)> {
    let fail = |field: &str, message: String| Err((field.to_string(), message));
    if let Some(p) = &s.partition
        && (p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ',')))
    {
        return fail(
            "partition",
            format!("`{p}` is not a partition name (letters, digits, `_-.,`)"),
        );
    }
    if let Some(t) = &s.time
        && !slurm_time_ok(t)
    {
        return fail(
            "time",
            format!(
                "`{t}` is not a Slurm time limit; use MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or                  D-HH:MM:SS (e.g. 90 or 1:30:00)"
            ),
        );
    }
    if let Some(m) = &s.mem {
        let digits = m.trim_end_matches(['K', 'M', 'G', 'T']);
        if digits.is_empty()
            || !digits.chars().all(|c| c.is_ascii_digit())
            || m.len() - digits.len() > 1
        {
            return fail(
                "mem",
                format!(
                    "`{m}` is not a Slurm memory size; use a number with K, M, G or T (e.g. 16G)"
                ),
            );
        }
    }
    for (field, value) in [
        ("cpus_per_task", s.cpus_per_task),
        ("gpus_per_task", s.gpus_per_task),
        ("max_parallel", s.max_parallel),
    ] {
        if value == Some(0) {
            return fail(field, "must be at least 1 when given".into());
        }
    }
    for line in &s.extra {
        let option = line.split(['=', ' ']).next().unwrap_or("");
        if !line.starts_with('-') || line.contains(['\n', '\r', '\0']) {
            return fail(
                "extra",
                format!("`{line}` is not one sbatch option (e.g. --qos=short) on one line"),
            );
        }
        if [
            "--array",
            "-a",
            "--dependency",
            "-d",
            "--output",
            "-o",
            "--chdir",
            "-D",
        ]
        .contains(&option)
        {
            return fail(
                "extra",
                format!("`{option}` is set by harness itself (array, dependency, logs, folder)"),
            );
        }
    }
    Ok(())
}

/// Whether `t` is a Slurm `--time` value.
fn slurm_time_ok(t: &str) -> bool {
    let numbers = |s: &str, max_parts: usize| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() <= max_parts
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 6 && p.chars().all(|c| c.is_ascii_digit()))
    };
    if ["UNLIMITED", "INFINITE"].contains(&t) {
        return true;
    }
    match t.split_once('-') {
        Some((days, rest)) => numbers(days, 1) && numbers(rest, 3),
        None => numbers(t, 3),
    }
}

fn first_duplicate<T: PartialEq + Copy>(items: &[T]) -> Option<T> {
    items
        .iter()
        .enumerate()
        .find(|(i, x)| items[..*i].contains(x))
        .map(|(_, x)| *x)
}

/// Best-effort 1-based line of a dotted field path (`model.h`) in block-style YAML text.
pub fn locate(text: &str, field: &str) -> Option<usize> {
    let mut stack: Vec<(usize, &str)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let body = line.split('#').next().unwrap_or("");
        let trimmed = body.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('-') {
            continue;
        }
        let Some((key, _)) = trimmed.split_once(':') else {
            continue;
        };
        let indent = body.len() - trimmed.len();
        while stack.last().is_some_and(|&(ind, _)| ind >= indent) {
            stack.pop();
        }
        stack.push((indent, key.trim().trim_matches(['"', '\''])));
        // Compare joined paths, so keys that contain dots (sweep keys) match too.
        let path: Vec<&str> = stack.iter().map(|&(_, k)| k).collect();
        if path.join(".") == field {
            return Some(i + 1);
        }
    }
    None
}

/// Stable hash of a config: sha256 of its canonical JSON (keys sorted, defaults filled in), hex.
pub fn hash(config: &Config) -> String {
    hash_value(&serde_json::to_value(config).unwrap_or(serde_json::Value::Null))
}

/// Stable hash of any JSON value (sha256 of its canonical form), hex: stage cache keys.
pub fn hash_value(value: &serde_json::Value) -> String {
    hex(&Sha256::digest(canonical_json(value).as_bytes()))
}

/// JSON with object keys sorted, so equal configs give equal text whatever the field order.
pub fn canonical_json(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<_> = map.keys().collect();
            keys.sort();
            let body: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(items) => {
            format!(
                "[{}]",
                items
                    .iter()
                    .map(canonical_json)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
        other => other.to_string(),
    }
}

pub use crate::store::hex;

/// The config as YAML, for `config.resolved.yaml` and `harness validate`.
pub fn to_yaml(config: &Config) -> String {
    serde_saphyr::to_string(config).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_config_inherits_from_its_base() {
        // hand-made config files for a unit test of the merge
        let tmp = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = tmp.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            p
        };
        write("base.yaml", DEFAULT_CONFIG);
        let child = write(
            "sub/child.yaml",
            "base: ../base.yaml\nname: child\ntrain:\n  epochs: 3\n",
        );
        let l = Loaded::from_path(&child).unwrap();
        let mut want = Loaded::embedded_default().unwrap().config;
        want.name = "child".into();
        want.train.epochs = 3;
        assert_eq!(
            l.config, want,
            "its keys win, the rest of each section is the base's"
        );
        assert_eq!(hash(&l.config), hash(&want));
        assert_eq!(Loaded::from_text("t", l.text.clone()).unwrap().config, want);
        // A cycle is refused with the chain named; a missing base is named too.
        let a = write("a.yaml", "base: b.yaml\nname: a\n");
        write("b.yaml", "base: a.yaml\nname: b\n");
        let e = Loaded::from_path(&a).unwrap_err().to_string();
        assert!(
            e.contains("a cycle of bases") && e.contains("a.yaml -> ") && e.contains("b.yaml"),
            "{e}"
        );
        let m = write("m.yaml", "base: nowhere.yaml\nname: m\n");
        let e = Loaded::from_path(&m).unwrap_err().to_string();
        assert!(e.contains("`base`") && e.contains("nowhere.yaml"), "{e}");
        let u = write("u.yaml", "base: base.yaml\ntrain:\n  epoch: 3\n");
        let e = Loaded::from_path(&u).unwrap_err().to_string();
        assert!(e.contains("unknown field `epoch`"), "{e}");
    }

    #[test]
    fn command_line_overrides_resolve_like_a_file() {
        let o = |a: &str| -> Override { a.parse().unwrap() };
        let sw = |a: &str| -> SweepArg { a.parse().unwrap() };
        let base = Loaded::embedded_default().unwrap();
        let over = base
            .clone()
            .with_command_line(
                &[
                    o("train.epochs=20"),
                    o("model.h=64"),
                    o("iwan.report_graph=false"),
                ],
                &[sw("seed=1,2,3")],
                None,
            )
            .unwrap();
        assert_eq!((over.config.train.epochs, over.config.model.h), (20, 64));
        assert!(
            !over.config.iwan.report_graph,
            "a field the tree leaves out is set too"
        );
        assert_eq!(
            over.command_line,
            [
                "train.epochs=20",
                "model.h=64",
                "iwan.report_graph=false",
                "--sweep seed=1,2,3"
            ]
        );
        // The same settings written in a file give the same runs, ids and hashes.
        let text = DEFAULT_CONFIG
            .replace("epochs: 12", "epochs: 20")
            .replace("  h: 48", "  h: 64")
            .replace("report_graph: true", "report_graph: false")
            + "sweep:\n  params:\n    seed: [1, 2, 3]\n";
        let file = Loaded::from_text("file", text).unwrap();
        let ids = |l: &Loaded| -> Vec<(String, String)> {
            l.runs()
                .unwrap()
                .into_iter()
                .map(|r| (r.id, r.hash))
                .collect()
        };
        assert_eq!(ids(&over), ids(&file));
        assert_eq!(ids(&over).len(), 3);
        // The resolved text is what a Slurm submission copies: it loads back to the same.
        let back = Loaded::from_text("back", over.text.clone()).unwrap();
        assert_eq!(ids(&back), ids(&file));

        let err = |o: Override| {
            base.clone()
                .with_command_line(&[o], &[], None)
                .unwrap_err()
                .to_string()
        };
        let e = err(o("train.epoch=20"));
        assert!(
            e.contains("`train.epoch` names no config field; did you mean `train.epochs`?"),
            "{e}"
        );
        let e = err(o("model.h=forty"));
        assert!(
            e.contains("override `model.h=forty`") && e.contains("invalid"),
            "{e}"
        );
        let e = err(o("model.h=0"));
        assert!(e.contains("`model.h`") && e.contains("hash bits"), "{e}");
        assert!(
            "train.epochs"
                .parse::<Override>()
                .unwrap_err()
                .contains("KEY=VALUE")
        );
        let e = base
            .clone()
            .with_command_line(&[], &[sw("train.epoc=1,2")], None)
            .and_then(|l| l.runs())
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `train.epochs`"), "{e}");
    }

    use super::*;

    #[test]
    fn protocol_names_match_their_config_spelling() {
        for p in Protocol::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }

    #[test]
    fn embedded_default_is_valid() {
        let loaded = Loaded::embedded_default().unwrap();
        assert_eq!(loaded.config.name, "default");
        assert_eq!(loaded.runs().unwrap().len(), 1);
    }

    #[test]
    fn locate_finds_nested_fields() {
        // hand-made input for a pure-function unit test
        let text = "name: x\nmodel:\n  encoder: cifar_cnn # c\n  h: 0\ntrain:\n  h: 3\n";
        assert_eq!(locate(text, "model.h"), Some(4));
        assert_eq!(locate(text, "train.h"), Some(6));
        assert_eq!(locate(text, "name"), Some(1));
        assert_eq!(locate(text, "eval.ks"), None);
    }

    #[test]
    fn hash_ignores_field_order_but_not_values() {
        let a = Loaded::from_text("a", "name: x\nseed: 1\nmodel: {h: 32}\n".into()).unwrap();
        let b = Loaded::from_text("b", "model: {h: 32}\nseed: 1\nname: x\n".into()).unwrap();
        let c = Loaded::from_text("c", "model: {h: 33}\nseed: 1\nname: x\n".into()).unwrap();
        assert_eq!(hash(&a.config), hash(&b.config));
        assert_ne!(hash(&a.config), hash(&c.config));
    }

    #[test]
    fn mih_rerank_is_a_bench_method_only() {
        let e = Loaded::from_text(
            "a",
            "name: x\nindex:\n  methods: [exact, mih_rerank]\n".into(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("index.methods") && e.contains("hamming_rerank"),
            "{e}"
        );
        let e = Loaded::from_text("a", "name: x\nindex:\n  methods: [exact, nope]\n".into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("mih_rerank") && e.contains("asymmetric"), "{e}");
    }

    #[test]
    fn cached_views_and_the_mirror_average_need_a_frozen_lite() {
        let lite = "model: {encoder: efficientnet_lite2, input_size: 224, freeze: true}\n";
        let ok = |text: String| Loaded::from_text("a", format!("name: x\n{text}")).unwrap();
        let err = |text: String| {
            Loaded::from_text("a", format!("name: x\n{text}"))
                .unwrap_err()
                .to_string()
        };
        let with = |model: &str, train: &str| format!("{}train: {{{train}}}\n", model);
        // Without these fields a config hashes as before they existed.
        let plain = ok(with(lite, "augment: true"));
        let views = ok(with(lite, "augment: true, shifted_views: 2"));
        assert_eq!(views.config.train.shifted_views, 2);
        assert_ne!(hash(&plain.config), hash(&views.config));
        assert!(!to_yaml(&plain.config).contains("shifted_views"));
        assert!(!to_yaml(&plain.config).contains("mirror_average"));
        for (text, field) in [
            (
                with(lite, "augment: false, shifted_views: 1"),
                "train.shifted_views",
            ),
            (
                with(lite, "augment: true, shifted_views: 17"),
                "train.shifted_views",
            ),
            (
                with(
                    "model: {encoder: cifar_cnn}\n",
                    "augment: true, shifted_views: 1",
                ),
                "train.shifted_views",
            ),
            (
                "model: {encoder: efficientnet_lite0, freeze: false, mirror_average: true}\n"
                    .into(),
                "model.mirror_average",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(field), "{e}");
        }
        ok("model: {encoder: efficientnet_lite0, input_size: 96, mirror_average: true}\n".into());
    }

    #[test]
    fn bf16_is_for_a_frozen_lite_and_leaves_fp32_hashes_alone() {
        let load = |model: &str| Loaded::from_text("a", format!("name: x\nmodel: {{{model}}}\n"));
        let plain = load("encoder: efficientnet_lite0").unwrap();
        let fp32 = load("encoder: efficientnet_lite0, precision: fp32").unwrap();
        let bf16 = load("encoder: efficientnet_lite0, precision: bf16").unwrap();
        assert_eq!(bf16.config.model.precision, Precision::Bf16);
        assert_eq!(hash(&plain.config), hash(&fp32.config));
        assert_ne!(hash(&plain.config), hash(&bf16.config));
        assert!(!to_yaml(&fp32.config).contains("precision"));
        assert!(to_yaml(&bf16.config).contains("precision: bf16"));
        for model in [
            "encoder: efficientnet_lite0, freeze: false, precision: bf16",
            "encoder: cifar_cnn, precision: bf16",
        ] {
            let e = load(model).unwrap_err().to_string();
            assert!(e.contains("model.precision"), "{e}");
        }
        let e = load("encoder: efficientnet_lite0, precision: fp16")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fp16") && e.contains("bf16"), "{e}");
    }

    #[test]
    fn slurm_settings_are_checked_and_left_out_of_run_hashes() {
        let plain = Loaded::from_text("a", "name: x\n".into()).unwrap();
        let text = "name: x\nslurm:\n  partition: gpu\n  time: 1-02:00\n  mem: 16G\n  \
                    cpus_per_task: 4\n  max_parallel: 8\n  extra: [--qos=short]\n";
        let with = Loaded::from_text("b", text.into()).unwrap();
        assert_eq!(
            with.config.slurm.as_ref().unwrap().mem.as_deref(),
            Some("16G")
        );
        assert_eq!(plain.runs().unwrap()[0].hash, with.runs().unwrap()[0].hash);
        for (field, yaml, needle) in [
            ("slurm.time", "time: 90min", "not a Slurm time limit"),
            ("slurm.mem", "mem: 16GB", "not a Slurm memory size"),
            (
                "slurm.partition",
                "partition: 'a b'",
                "not a partition name",
            ),
            ("slurm.max_parallel", "max_parallel: 0", "at least 1"),
            ("slurm.extra", "extra: [qos=short]", "not one sbatch option"),
            (
                "slurm.extra",
                "extra: [--array=1-3]",
                "set by harness itself",
            ),
        ] {
            let text = format!("name: x\nslurm:\n  {yaml}\n");
            let err = Loaded::from_text("c", text).unwrap_err().to_string();
            assert!(err.contains(field) && err.contains(needle), "{yaml}: {err}");
        }
        for ok in [
            "30",
            "30:00",
            "1:30:00",
            "2-12",
            "2-12:30",
            "2-12:30:00",
            "UNLIMITED",
        ] {
            assert!(slurm_time_ok(ok), "{ok}");
        }
        for bad in ["", "1:2:3:4", "a", "1-", "-5", "1h"] {
            assert!(!slurm_time_ok(bad), "{bad}");
        }
    }

    #[test]
    fn resolved_yaml_round_trips() {
        let loaded = Loaded::embedded_default().unwrap();
        let text = to_yaml(&loaded.config);
        let again = Loaded::from_text("resolved", text).unwrap();
        assert_eq!(again.config, loaded.config);
    }
}
