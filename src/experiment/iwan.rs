//! IWAN inside a run: the word model's labels for each split, one network per database split,
//! and reopening a finished run for the `harness iwan` and `harness bench iwan` commands.
//!
//! The eval stage stores the word model's top [`MAX_TOP_IWK`] labels per image in
//! `iwan/predicted-<split>.csv` and its cost in `iwan/word_model.json`; [`IwanRun::open`] reads
//! them back with the resolved config, the USF norms and the CIFAR-100 labels, so a network for
//! any topIWK (up to the stored maximum) and topWWK is rebuilt in milliseconds, without burn.

use super::{ExperimentError, check_format, embed_splits, load_efficientnet, own_weights};
use crate::artifacts::{RunLayout, WordModelCost};
use crate::config::{Config, DbWords, IwanConfig, WordModel};
use crate::data::DataRoot;
use crate::data::cifar::{Cifar100, SplitName};
use crate::data::usf::UsfNorms;
use crate::embed;
use crate::iwan::annotate::{self, Annotator, MAX_TOP_IWK, SplitAnnotations, WordList};
use crate::iwan::graph::{GraphConfig, Iwan};
use crate::iwan::words::Vocabulary;
use crate::model::efficientnet::EfficientNetLite;
use crate::model::frozen::FrozenLite;
use crate::store;
use crate::train::TrainError;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything IWAN needs besides the graph settings.
pub struct IwanInputs {
    /// The USF norms.
    pub norms: UsfNorms,
    vocabulary: Vocabulary,
    /// Names of the word model's labels.
    pub label_names: Vec<String>,
    /// Per split in use, the annotations of its images.
    pub splits: Vec<(SplitName, SplitAnnotations)>,
    /// The word model's cost.
    pub cost: WordModelCost,
}

/// A network over one database split, with the test queries' edges into it.
pub struct Network {
    /// The database split.
    pub database: SplitName,
    /// The graph.
    pub graph: Iwan,
    /// Seconds the build took.
    pub build_s: f64,
    /// Per test query, its edges to word nodes.
    pub queries: Vec<Vec<(u32, f32)>>,
    /// Per test query, its words (before dropping those not in the graph).
    pub query_words: Vec<WordList>,
    /// The topIWK it was built with.
    pub top_iwk: usize,
    /// The topWWK it was built with.
    pub top_wwk: usize,
}

impl Network {
    /// Test queries with no edge into the graph.
    pub fn queries_without_words(&self) -> usize {
        self.queries.iter().filter(|q| q.is_empty()).count()
    }

    /// The `iwan_graph.json` entry of this network.
    pub fn summary(&self, cost: &WordModelCost) -> serde_json::Value {
        let g = &self.graph;
        serde_json::json!({
            "database": self.database.as_str(),
            "top_iwk": self.top_iwk,
            "top_wwk": self.top_wwk,
            "images": g.n_images(),
            "words": g.words().len(),
            "nodes": g.node_count(),
            "edges": g.edge_count(),
            "bytes": g.bytes(),
            "build_s": self.build_s,
            "zero_strength_skipped": g.stats.zero_strength_skipped,
            "images_without_words": g.stats.images_without_words,
            "queries_without_words": self.queries_without_words(),
            "word_model": cost,
        })
    }
}

impl IwanInputs {
    /// Runs the word model of `cfg` over the embedded splits (`stored`: split, its rows, and the
    /// embeddings when the word model is `classes`) and collects the ground-truth names.
    pub(super) fn predict(
        root: &DataRoot,
        cfg: &Config,
        data: &Cifar100,
        stored: &[(SplitName, usize, &[f32])],
        features: Option<&super::stages::Features>,
        encoder_s_per_image: Option<f64>,
    ) -> Result<Self, ExperimentError> {
        let norms = UsfNorms::load(&root.usf_file())?;
        let keep = cfg.iwan.top_iwk.max(MAX_TOP_IWK);
        let started = Instant::now();
        let mut n_images = 0;
        let mut predicted = Vec::new();
        let label_names = match cfg.iwan.word_model {
            WordModel::Imagenet => {
                let encoder = load_efficientnet(root, own_weights(cfg))?;
                let f = features.ok_or_else(|| {
                    ExperimentError::Iwan("no features for the imagenet word model".into())
                })?;
                for &(split, rows, _) in stored {
                    let values = match split {
                        SplitName::Train => &f.train,
                        SplitName::Test => &f.test,
                    };
                    let labels = imagenet_labels(&encoder, &values[..rows * f.dim], keep);
                    n_images += labels.len();
                    predicted.push((split, labels));
                }
                crate::data::imagenet::load_names(root)?
            }
            WordModel::Classes => {
                let c = crate::artifacts::class_embedding_f32(root, cfg.model.d as usize)?;
                let d = cfg.model.d as usize;
                for &(split, _, embeddings) in stored {
                    let labels = class_labels(embeddings, &c, d, cfg.iwan.class_temperature, keep);
                    n_images += labels.len();
                    predicted.push((split, labels));
                }
                data.names.fine.clone()
            }
        };
        let cost = WordModelCost {
            head_s_per_image: started.elapsed().as_secs_f64() / n_images.max(1) as f64,
            encoder_s_per_image,
        };
        let splits = predicted
            .into_iter()
            .map(|(split, predicted)| {
                let truth = truth_names(data, split, predicted.len());
                (split, SplitAnnotations { predicted, truth })
            })
            .collect();
        Ok(Self {
            vocabulary: Vocabulary::from_norms(&norms),
            norms,
            label_names,
            splits,
            cost,
        })
    }

    /// Writes `iwan/predicted-<split>.csv` and `iwan/word_model.json` into the run folder.
    pub(super) fn save(&self, run: &RunLayout) -> Result<(), ExperimentError> {
        for (split, a) in &self.splits {
            store::write_bytes_atomic(
                &run.predicted_words(*split),
                annotate::predicted_csv(&a.predicted).as_bytes(),
            )?;
        }
        store::write_json_atomic(&run.word_model(), &self.cost)?;
        Ok(())
    }

    /// Word lists from label lists.
    pub fn annotator(&self) -> Annotator<'_> {
        Annotator {
            vocabulary: &self.vocabulary,
            label_names: &self.label_names,
        }
    }

    /// The annotations of `split`, or an error saying the run did not produce them.
    pub fn split(&self, split: SplitName) -> Result<&SplitAnnotations, ExperimentError> {
        self.splits
            .iter()
            .find(|s| s.0 == split)
            .map(|s| &s.1)
            .ok_or_else(|| {
                ExperimentError::Iwan(format!(
                    "this run has no word-model output for the {split} split; add \
                     `train_db` to eval.protocols to annotate the train split"
                ))
            })
    }

    /// Builds the network over `database` under `iwan` (its `top_iwk`, `top_wwk`, `strength`,
    /// `depth`, `db_words`), with the test queries' edges.
    pub fn network(
        &self,
        database: SplitName,
        iwan: &IwanConfig,
    ) -> Result<Network, ExperimentError> {
        if iwan.top_iwk > self.stored_top_iwk() {
            return Err(ExperimentError::Iwan(format!(
                "topIWK {} is above the {} labels per image this run stored",
                iwan.top_iwk,
                self.stored_top_iwk()
            )));
        }
        let annotator = self.annotator();
        let db = annotator.database(self.split(database)?, iwan.db_words, iwan.top_iwk);
        let started = Instant::now();
        let graph = Iwan::build(
            &db,
            &self.norms,
            GraphConfig {
                top_wwk: iwan.top_wwk,
                strength: iwan.strength,
                depth: iwan.depth,
            },
        );
        let build_s = started.elapsed().as_secs_f64();
        let query_words = annotator.queries(self.split(SplitName::Test)?, iwan.top_iwk);
        let queries = query_words.iter().map(|w| graph.query_edges(w)).collect();
        Ok(Network {
            database,
            graph,
            build_s,
            queries,
            query_words,
            top_iwk: iwan.top_iwk,
            top_wwk: iwan.top_wwk,
        })
    }

    /// Most labels stored for any image.
    fn stored_top_iwk(&self) -> usize {
        self.splits
            .iter()
            .flat_map(|(_, a)| a.predicted.iter().map(Vec::len))
            .max()
            .unwrap_or(0)
    }
}

/// Ground-truth fine and coarse names of the first `n` images of `split`.
fn truth_names(data: &Cifar100, split: SplitName, n: usize) -> Vec<[String; 2]> {
    let s = data.split(split);
    (0..n.min(s.len()))
        .map(|i| {
            [
                data.names.fine[s.fine[i] as usize].clone(),
                data.names.coarse[s.coarse[i] as usize].clone(),
            ]
        })
        .collect()
}

/// A finished run, reopened for IWAN.
pub struct IwanRun {
    /// The run folder.
    pub dir: PathBuf,
    /// Its resolved config.
    pub config: Config,
    /// Its IWAN inputs.
    pub inputs: IwanInputs,
    /// CIFAR-100 (labels for metrics and explanations; pixels for pages).
    pub data: Cifar100,
}

impl IwanRun {
    /// Reads `config.resolved.yaml` and the stored word-model output of the run in `dir`.
    pub fn open(dir: &Path, data_root: Option<&Path>) -> Result<Self, ExperimentError> {
        let run = RunLayout::new(dir);
        let manifest = run.manifest();
        if !manifest.exists() {
            return Err(ExperimentError::artifact(
                dir,
                "not a run folder (no manifest.json); pass a folder that \
                          `harness run` printed",
            ));
        }
        check_format(&manifest)?;
        let cfg = run.config()?;
        if !cfg.iwan.enabled {
            return Err(ExperimentError::Iwan(format!(
                "the run in {} was configured with iwan.enabled: false",
                dir.display()
            )));
        }
        let root = DataRoot::resolve(data_root, cfg.data.root.as_deref())?;
        let data = Cifar100::load(&root, false)?;
        let norms = UsfNorms::load(&root.usf_file())?;
        let label_names = match cfg.iwan.word_model {
            WordModel::Imagenet => crate::data::imagenet::load_names(&root)?,
            WordModel::Classes => data.names.fine.clone(),
        };
        let mut splits = Vec::new();
        for (split, n) in embed_splits(&cfg) {
            let path = run.predicted_words(split);
            if !path.exists() {
                continue;
            }
            let text = String::from_utf8(store::read(&path)?)
                .map_err(|e| ExperimentError::unreadable(&path, e))?;
            let predicted = annotate::parse_predicted_csv(&text, n, label_names.len())
                .map_err(|e| ExperimentError::unreadable(&path, e))?;
            let truth = truth_names(&data, split, n);
            splits.push((split, SplitAnnotations { predicted, truth }));
        }
        if splits.is_empty() {
            return Err(ExperimentError::artifact(
                &run.iwan(),
                "no stored word-model output (predicted-<split>.csv); the eval stage \
                          has not finished, or the run predates it: run `harness run` on its \
                          config again",
            ));
        }
        let cost_path = run.word_model();
        let cost = serde_json::from_slice(&store::read(&cost_path)?)
            .map_err(|e| ExperimentError::unreadable(&cost_path, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config: cfg,
            inputs: IwanInputs {
                vocabulary: Vocabulary::from_norms(&norms),
                norms,
                label_names,
                splits,
                cost,
            },
            data,
        })
    }

    /// The network over `database` with the run's IWAN settings, topIWK and topWWK replaced
    /// where given.
    pub fn network(
        &self,
        database: SplitName,
        top_iwk: Option<usize>,
        top_wwk: Option<usize>,
    ) -> Result<Network, ExperimentError> {
        let mut iwan = self.config.iwan.clone();
        iwan.top_iwk = top_iwk.unwrap_or(iwan.top_iwk);
        iwan.top_wwk = top_wwk.unwrap_or(iwan.top_wwk);
        if iwan.top_iwk == 0 || iwan.top_wwk == 0 {
            return Err(ExperimentError::Iwan(
                "topIWK and topWWK must be at least 1".into(),
            ));
        }
        self.inputs.network(database, &iwan)
    }

    /// Whether database words include ground truth (the `labels` and `both` modes).
    pub fn uses_labels(&self) -> bool {
        self.config.iwan.db_words != DbWords::Predicted
    }
}

/// The `imagenet` word model's labels: the `keep` most probable ImageNet classes of each image's
/// pooled features (`n x 1280`).
fn imagenet_labels(
    encoder: &EfficientNetLite,
    features: &[f32],
    keep: usize,
) -> Vec<Vec<(u32, f32)>> {
    embed::imagenet_top_labels(encoder, features, keep)
        .into_iter()
        .map(|l| l.into_iter().map(|(c, p)| (u32::from(c), p)).collect())
        .collect()
}

/// The `classes` word model's labels: each embedding's (`n x d`) class strengths under `tau`
/// ([`class_strengths`]), the `keep` strongest, zeros dropped.
fn class_labels(
    embeddings: &[f32],
    c: &[f32],
    d: usize,
    tau: f32,
    keep: usize,
) -> Vec<Vec<(u32, f32)>> {
    embeddings
        .chunks_exact(d)
        .map(|e| {
            class_strengths(&embed::top_classes(e, c, c.len() / d), tau)
                .into_iter()
                .take(keep)
                .filter(|&(_, s)| s > 0.0)
                .collect()
        })
        .collect()
}

/// A run's word model, for images outside the dataset (the query page's uploads): labels as the
/// eval stage derived them for the run's own images.
pub enum WordModelRun {
    /// Class strengths of the embedding: the class embedding `C` (`classes x d`), `d`, `tau`.
    Classes(Vec<f32>, usize, f32),
    /// The ImageNet head on the fused encoder's features at the word model's input size.
    Imagenet(Box<EfficientNetLite>, Box<FrozenLite>, usize),
}

impl WordModelRun {
    /// The word model of `cfg` (`iwan.word_model` and its input size). `loaded` is the
    /// config's EfficientNet-Lite when the caller has it already; otherwise the ImageNet word
    /// model loads it.
    pub fn open(
        root: &DataRoot,
        cfg: &Config,
        loaded: Option<EfficientNetLite>,
    ) -> Result<Self, ExperimentError> {
        Ok(match cfg.iwan.word_model {
            WordModel::Classes => {
                let d = cfg.model.d as usize;
                let c = crate::artifacts::class_embedding_f32(root, d)?;
                Self::Classes(c, d, cfg.iwan.class_temperature)
            }
            WordModel::Imagenet => {
                let encoder = match loaded {
                    Some(encoder) => encoder,
                    None => load_efficientnet(root, own_weights(cfg))?,
                };
                // At the precision the features stage computed the dataset's features with.
                let frozen = FrozenLite::compile(&encoder, cfg.model.precision)
                    .map_err(TrainError::Model)?;
                Self::Imagenet(
                    Box::new(encoder),
                    Box::new(frozen),
                    cfg.iwan.input_size as usize,
                )
            }
        })
    }

    /// Labels of images given as planar 32x32 `pixels` and their `embeddings`, the `keep`
    /// strongest each.
    pub fn labels(
        &self,
        pixels: &[u8],
        embeddings: &[f32],
        keep: usize,
    ) -> Result<Vec<Vec<(u32, f32)>>, ExperimentError> {
        Ok(match self {
            Self::Classes(c, d, tau) => class_labels(embeddings, c, *d, *tau, keep),
            Self::Imagenet(encoder, frozen, size) => {
                let f = frozen.features(pixels, *size).map_err(TrainError::Model)?;
                imagenet_labels(encoder, &f, keep)
            }
        })
    }
}

/// Softmax over cosine scores at temperature `tau`, best first: the `classes` word model's
/// label strengths, in (0, 1].
pub fn class_strengths(scores: &[(u8, f32)], tau: f32) -> Vec<(u32, f32)> {
    let best = scores.iter().map(|s| s.1).fold(f32::NEG_INFINITY, f32::max);
    let z: f32 = scores.iter().map(|s| ((s.1 - best) / tau).exp()).sum();
    scores
        .iter()
        .map(|&(c, s)| (u32::from(c), ((s - best) / tau).exp() / z))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_strengths_are_a_sharpened_softmax() {
        // hand-made cosine scores for a pure-function unit test
        let s = class_strengths(&[(7, 0.9), (3, 0.8), (1, -0.2)], 0.1);
        assert_eq!(s.iter().map(|x| x.0).collect::<Vec<_>>(), vec![7, 3, 1]);
        let total: f32 = s.iter().map(|x| x.1).sum();
        assert!((total - 1.0).abs() < 1e-6);
        // exp(0) : exp(-1) : exp(-11), normalised.
        let z = 1.0 + (-1.0f32).exp() + (-11.0f32).exp();
        assert!((s[0].1 - 1.0 / z).abs() < 1e-6 && (s[1].1 - (-1.0f32).exp() / z).abs() < 1e-6);
        assert!(s.iter().all(|x| x.1 > 0.0 && x.1 <= 1.0));
    }
}
