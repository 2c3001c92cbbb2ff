//! The stage bodies: what each stage computes from its inputs and writes into its folder.
//! Which stage runs when, and what is reused, is decided by [`super::run`] and the
//! [`super::engine`]; these functions only compute and write.

use super::ExperimentError;
use crate::artifacts::{
    self, RunLayout, class_embedding_f32, class_similarity, pretrained_weights,
    shipped_efficientnet_weights,
};
use crate::config;
use crate::data::DataRoot;
use crate::data::cifar::{Cifar100, IMAGE_BYTES, SplitName};
use crate::data::hierarchy::Hierarchy;
use crate::data::summary::{DataSummary, class_counts_csv};
use crate::data::usf::UsfNorms;
use crate::embed;
use crate::model::{
    self,
    efficientnet::{EfficientNetLite, Lite},
};
use crate::semantics::{class_embedding, embedding_csv, similarity_csv};
use crate::store::{self, npy};
use crate::train::{self, Images, Inputs, TrainError, TrainJob};
use std::path::{Path, PathBuf};

/// The CIFAR-100 splits, loaded into `slot` on first use (stages that are all reused never
/// read them).
pub(super) fn load_cifar<'c>(
    slot: &'c mut Option<Cifar100>,
    root: &DataRoot,
    verify: bool,
) -> Result<&'c Cifar100, ExperimentError> {
    if slot.is_none() {
        *slot = Some(Cifar100::load(root, verify)?);
    }
    Ok(slot.as_ref().expect("just loaded"))
}

/// An EfficientNet-Lite and the weights file a config names for it (`None`: the shipped
/// ImageNet weights under the data root).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiteWeights<'a> {
    pub lite: Lite,
    pub weights: Option<&'a PathBuf>,
}

/// The EfficientNet-Lite `own` names, loaded on the CPU.
pub(crate) fn load_efficientnet(
    root: &DataRoot,
    own: LiteWeights<'_>,
) -> Result<EfficientNetLite, ExperimentError> {
    let path = own
        .weights
        .cloned()
        .unwrap_or_else(|| shipped_efficientnet_weights(root, own.lite));
    Ok(EfficientNetLite::load(&path, own.lite, &model::cpu_device()).map_err(TrainError::Model)?)
}

/// The EfficientNet-Lite a config runs: its own encoder with the weights it names, or, for a
/// config whose encoder is another network (whose ImageNet word model still needs one),
/// EfficientNet-Lite0 with its shipped weights.
pub(crate) fn own_weights(cfg: &config::Config) -> LiteWeights<'_> {
    match Lite::of(cfg.model.encoder) {
        Some(lite) => LiteWeights {
            lite,
            weights: cfg.model.weights.as_ref(),
        },
        None => LiteWeights {
            lite: Lite::Lite0,
            weights: None,
        },
    }
}

/// The class embedding `C` and the network trained into `train_dir/model.bpk`.
fn trained_network(
    root: &DataRoot,
    cfg: &config::Config,
    train_dir: &Path,
) -> Result<(Vec<f32>, model::HashNet), ExperimentError> {
    let c = class_embedding_f32(root, cfg.model.d as usize)?;
    let net = train::load_trained(
        cfg,
        c.len() / cfg.model.d as usize,
        pretrained_weights(root, &cfg.model).as_deref(),
        &train::checkpoint_in(train_dir),
    )?;
    Ok((c, net))
}

/// The finished run in `run_dir` (config `cfg`) as an [`embed::Embedder`]: its trained network,
/// and for a frozen encoder the encoder its features came from, at the run's input size.
/// `loaded` is that encoder when the caller has it already (the query page shares it with the
/// ImageNet word model); otherwise it is loaded here.
pub fn embedder(
    root: &DataRoot,
    cfg: &config::Config,
    run_dir: &Path,
    loaded: Option<&EfficientNetLite>,
) -> Result<embed::Embedder, ExperimentError> {
    let (c, net) = trained_network(root, cfg, &RunLayout::new(run_dir).train())?;
    let own;
    let encoder = match (frozen_encoder(cfg), loaded) {
        (false, _) => None,
        (true, Some(encoder)) => Some(encoder),
        (true, None) => {
            own = load_efficientnet(root, own_weights(cfg))?;
            Some(&own)
        }
    };
    let size = cfg.model.input_size as usize;
    Ok(embed::Embedder::new(
        net,
        model::Preprocess::of(&cfg.model),
        encoder.map(|e| (e, size, cfg.model.precision)),
        c,
        cfg.model.mirror_average,
    )
    .map_err(TrainError::Model)?)
}

/// Whether the config trains only a decoder on a frozen pretrained encoder's features.
pub(crate) fn frozen_encoder(cfg: &config::Config) -> bool {
    cfg.model.frozen_features()
}

/// Which images a features stage encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// The train and test images as they are.
    Plain,
    /// The images of one split, mirrored left to right (the training images for
    /// `train.augment`, both splits for `model.mirror_average`).
    Mirrored(SplitName),
    /// The training images, each shifted and maybe mirrored by the draws of view `v`
    /// (`train.shifted_views`).
    Shifted(usize),
}

impl View {
    /// The splits the stage encodes.
    pub(crate) fn splits(self) -> &'static [SplitName] {
        match self {
            View::Plain => &[SplitName::Train, SplitName::Test],
            View::Mirrored(SplitName::Train) | View::Shifted(_) => &[SplitName::Train],
            View::Mirrored(SplitName::Test) => &[SplitName::Test],
        }
    }

    /// The name of the stage that computes the view's features.
    pub(crate) fn stage(self) -> String {
        match self {
            View::Plain => "features".into(),
            View::Mirrored(SplitName::Train) => "features_mirrored".into(),
            View::Mirrored(SplitName::Test) => "features_mirrored_test".into(),
            View::Shifted(v) => format!("features_shifted_{v}"),
        }
    }

    /// `pixels` (whole images) as this view sees them.
    fn apply(self, pixels: &[u8]) -> std::borrow::Cow<'_, [u8]> {
        match self {
            View::Plain => std::borrow::Cow::Borrowed(pixels),
            View::Mirrored(_) => std::borrow::Cow::Owned(train::mirrored(pixels)),
            View::Shifted(v) => {
                let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
                    SHIFTED_VIEW_SEED + v as u64,
                );
                let mut out = vec![0u8; pixels.len()];
                for (img, dst) in pixels
                    .chunks_exact(IMAGE_BYTES)
                    .zip(out.chunks_exact_mut(IMAGE_BYTES))
                {
                    let (dx, dy, flip) = train::random_shift(&mut rng);
                    train::shift_flip(img, dx, dy, flip, dst);
                }
                std::borrow::Cow::Owned(out)
            }
        }
    }
}

/// The views a run caches besides the images as they are, in order: those of the training
/// images that `train.augment` draws from (the mirror images first, then the shifted views),
/// then, for `model.mirror_average`, the mirror images of every embedded split (the training
/// images' being the first view). None without a frozen encoder.
pub(crate) fn views(cfg: &config::Config) -> Vec<View> {
    if !frozen_encoder(cfg) {
        return Vec::new();
    }
    let (augment, average) = (cfg.train.augment, cfg.model.mirror_average);
    let embeds_train = embed_splits(cfg).iter().any(|s| s.0 == SplitName::Train);
    let mut views = Vec::new();
    if augment || (average && embeds_train) {
        views.push(View::Mirrored(SplitName::Train));
    }
    if augment {
        views.extend((0..cfg.train.shifted_views).map(View::Shifted));
    }
    if average {
        views.push(View::Mirrored(SplitName::Test));
    }
    views
}

/// The seed of shifted view 0's draws (view `v` uses this plus `v`): fixed, not the run's, so
/// that runs with different seeds share the cached views.
const SHIFTED_VIEW_SEED: u64 = 0x5EED_5A1F_0000;

/// Frozen-encoder features of the train and test prefixes, `n x dim` each.
pub(super) struct Features {
    /// Feature dimension (1280).
    pub dim: usize,
    /// `n_train x dim`.
    pub train: Vec<f32>,
    /// `n_test x dim`.
    pub test: Vec<f32>,
    /// Cached views of the training images, same rows: the mirror images first (when
    /// computed), then the shifted views. `train.augment` draws from them.
    pub train_views: Vec<Vec<f32>>,
    /// Features of the mirrored test images (`model.mirror_average`).
    pub test_mirrored: Option<Vec<f32>>,
}

impl Features {
    /// The network inputs of `split`: features of its first rows.
    fn inputs(&self, split: SplitName) -> Inputs<'_> {
        let (values, views) = match split {
            SplitName::Train => (&self.train, self.train_views.as_slice()),
            SplitName::Test => (&self.test, &[][..]),
        };
        Inputs::Features {
            values,
            dim: self.dim,
            views,
        }
    }

    /// The features of `split`'s mirror images, same rows, when they were loaded.
    fn mirrored(&self, split: SplitName) -> Option<Inputs<'_>> {
        let values = match split {
            SplitName::Train => self.train_views.first(),
            SplitName::Test => self.test_mirrored.as_ref(),
        }?;
        Some(Inputs::Features {
            values,
            dim: self.dim,
            views: &[],
        })
    }
}

/// The cached features in `dir`, the training images' views in `train_views` (the mirror
/// images first, when computed) and the mirrored test images' in `test_mirrored`.
pub(super) fn load_features(
    dir: &Path,
    train_views: &[PathBuf],
    test_mirrored: Option<&Path>,
) -> Result<Features, ExperimentError> {
    let read = |dir: &Path, split: SplitName| -> Result<(usize, Vec<f32>), ExperimentError> {
        let path = dir.join(format!("{split}.npy"));
        let (_, dim, v) = npy::read_f32(&store::read(&path)?)
            .map_err(|e| ExperimentError::unreadable(&path, e))?;
        Ok((dim, v))
    };
    let (dim, train) = read(dir, SplitName::Train)?;
    let (_, test) = read(dir, SplitName::Test)?;
    // A view must have the plain features' shape: same images, same width.
    let same_shape = |view: &Path, split: SplitName, like: &[f32]| {
        let (d, v) = read(view, split)?;
        if d != dim || v.len() != like.len() {
            return Err(ExperimentError::artifact(
                &view.join(format!("{split}.npy")),
                format!(
                    "{} x {d} features of a view do not match the {} x {dim} features of the \
                     images as they are",
                    v.len() / d.max(1),
                    like.len() / dim.max(1)
                ),
            ));
        }
        Ok(v)
    };
    let train_views = train_views
        .iter()
        .map(|view| same_shape(view, SplitName::Train, &train))
        .collect::<Result<_, _>>()?;
    let test_mirrored = test_mirrored
        .map(|view| same_shape(view, SplitName::Test, &test))
        .transpose()?;
    Ok(Features {
        dim,
        train,
        test,
        train_views,
        test_mirrored,
    })
}

/// Runs the frozen EfficientNet-Lite over `view` of the train and test prefixes at `size` px;
/// writes `<split>.npy` (f32, `n x 1280`) for each of the view's splits into `out`.
#[allow(clippy::too_many_arguments)]
pub(super) fn features_stage(
    root: &DataRoot,
    cfg: &config::Config,
    data: &Cifar100,
    size: u32,
    own: LiteWeights<'_>,
    view: View,
    out: &Path,
    progress: bool,
) -> Result<(), ExperimentError> {
    let encoder = load_efficientnet(root, own)?;
    let size = size as usize;
    if cfg.model.precision == config::Precision::Bf16 {
        use crate::model::bf16::{self, Kernel};
        let why = match Kernel::detect() {
            Kernel::Portable => Some(
                "on a CPU without AVX512_BF16 runs its portable path (rounded operands, f32 \
                 products), about 10% slower than fp32",
            ),
            Kernel::DotProducts if !bf16::dot_products_outpace_fma() => Some(
                "runs vdpbf16ps, which on this CPU does fewer multiply-adds per second than \
                 the f32 FMA (timed just now; AMX tiles absent or off): bf16 measured 12-25% \
                 slower than fp32 on such a CPU",
            ),
            _ => None,
        };
        // Once per process, however many views the features stage computes.
        static WARNED: std::sync::Once = std::sync::Once::new();
        if let Some(why) = why {
            WARNED.call_once(|| {
                crate::progress::println(&format!(
                    "warning: model.precision: bf16 {why}; model.precision=fp32 is the faster \
                     choice here (docs/performance.md)"
                ));
            });
        }
    }
    for &split in view.splits() {
        let s = data.split(split);
        let n = split_size(cfg, split).min(s.len());
        let pixels = view.apply(&s.pixels[..n * IMAGE_BYTES]);
        let pass = embed::FeaturePass::Fused(cfg.model.precision);
        let f = embed::encoder_features(&encoder, &pixels, size, 64, progress, pass)
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
        None => Inputs::Pixels(&s.pixels[..n * IMAGE_BYTES]),
    };
    Images {
        inputs,
        labels: &s.fine[..n],
    }
}

/// Trains the network on the (prefix of the) train split; writes checkpoints, `train_log.csv`
/// and the final weights `model.bpk` into `out`.
pub(super) fn train_stage(
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
    train::save_model(&net, &train::checkpoint_in(out))?;
    Ok(())
}

/// Writes `<dir>/<method>-<protocol>.parquet`: `query_id, rank, db_id` (u32; ids index the
/// Both splits with the number of images of each in use (the features stage encodes both).
pub(crate) fn split_sizes(cfg: &config::Config) -> [(SplitName, usize); 2] {
    SplitName::ALL.map(|s| (s, split_size(cfg, s)))
}

/// The number of images of `split` a config uses.
pub(crate) fn split_size(cfg: &config::Config, split: SplitName) -> usize {
    match split {
        SplitName::Train => cfg.data.train_images(),
        SplitName::Test => cfg.data.test_images(),
    }
}

/// The splits to embed: the test split, and the train split when a protocol searches it.
pub(crate) fn embed_splits(cfg: &config::Config) -> Vec<(SplitName, usize)> {
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
pub(super) fn embed_stage(
    root: &DataRoot,
    cfg: &config::Config,
    data: &Cifar100,
    features: Option<&Features>,
    splits: &[(SplitName, usize)],
    train_dir: &Path,
    out: &Path,
    progress: bool,
) -> Result<(), ExperimentError> {
    let (c, net) = trained_network(root, cfg, train_dir)?;
    let prep = model::Preprocess::of(&cfg.model);
    let mut summary = artifacts::EmbedSummary::new();
    for &(name, n) in splits {
        let split = data.split(name);
        let images = inputs(data, features, name, n);
        let batch = train::inference_batch(images, prep);
        let mut e =
            embed::embed(&net, images, prep, &c, batch, progress).map_err(TrainError::Model)?;
        if cfg.model.mirror_average {
            let mirrored = features.and_then(|f| f.mirrored(name)).ok_or_else(|| {
                ExperimentError::artifact(
                    out,
                    format!(
                        "model.mirror_average needs the features of the {name} split's mirror \
                         images, and none were loaded"
                    ),
                )
            })?;
            let images = Images {
                inputs: mirrored,
                labels: images.labels,
            };
            let m =
                embed::embed(&net, images, prep, &c, batch, progress).map_err(TrainError::Model)?;
            e = e.mirror_averaged(&m, &c);
        }
        let correct = e
            .classes
            .chunks(embed::TOP_CLASSES)
            .zip(&split.fine)
            .filter(|(top, label)| top[0].0 == **label)
            .count();
        summary.insert(
            split.name.to_string(),
            artifacts::EmbedSplitSummary {
                images: e.n,
                seconds_per_image: e.seconds_per_image,
                nearest_class_accuracy: correct as f64 / e.n.max(1) as f64,
            },
        );
        artifacts::store_embedded(out, split.name, &e)?;
    }
    artifacts::store_embed_summary(out, &summary)?;
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

/// What the data stage writes into the run folder.
/// Validates the hierarchy and USF norms beside the loaded CIFAR-100, then writes
/// `dataset_summary.json` and `class_counts.csv`.
pub(super) fn data_stage(
    root: &DataRoot,
    cfg: &config::Config,
    cifar: &Cifar100,
    dir: &Path,
) -> Result<(), ExperimentError> {
    let hierarchy = Hierarchy::load(&root.hierarchy_dir(), &cifar.names.fine)?;
    let usf = UsfNorms::load(&root.usf_file())?;
    let used = [cfg.data.train_images(), cfg.data.test_images()];
    let summary = DataSummary::compute(cifar, used, &hierarchy, &usf);
    let layout = RunLayout::new(dir);
    store::write_json_atomic(&layout.dataset_summary(), &summary)?;
    store::write_bytes_atomic(
        &layout.class_counts(),
        class_counts_csv(cifar, used).as_bytes(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-made features (unit test of the reader only): `n x dim` values `0, 1, 2, …`.
    fn write_features(dir: &Path, split: SplitName, n: usize, dim: usize) {
        let values: Vec<f32> = (0..n * dim).map(|i| i as f32).collect();
        store::write_atomic(&dir.join(format!("{split}.npy")), |w| {
            npy::write_f32(w, n, dim, &values)
        })
        .unwrap();
    }

    #[test]
    fn features_are_read_back_with_their_views() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = |name: &str| tmp.path().join(name);
        write_features(&dir("plain"), SplitName::Train, 4, 3);
        write_features(&dir("plain"), SplitName::Test, 2, 3);
        write_features(&dir("mirrored"), SplitName::Train, 4, 3);
        write_features(&dir("shifted"), SplitName::Train, 4, 3);
        write_features(&dir("mirrored_test"), SplitName::Test, 2, 3);
        let views = [dir("mirrored"), dir("shifted")];
        let f = load_features(&dir("plain"), &views, Some(&dir("mirrored_test"))).unwrap();
        assert_eq!((f.dim, f.train.len(), f.test.len()), (3, 12, 6));
        assert_eq!(f.train_views.len(), 2);
        let Inputs::Features { values, dim, views } = f.inputs(SplitName::Train) else {
            panic!("features give feature inputs")
        };
        assert_eq!((values.len(), dim, views.len()), (12, 3, 2));
        let Inputs::Features { views, .. } = f.inputs(SplitName::Test) else {
            panic!("features give feature inputs")
        };
        assert!(views.is_empty(), "test images are never augmented");
        for (split, rows) in [(SplitName::Train, 12), (SplitName::Test, 6)] {
            let Some(Inputs::Features { values, .. }) = f.mirrored(split) else {
                panic!("{split}: mirror images loaded")
            };
            assert_eq!(values.len(), rows);
        }
        let without = load_features(&dir("plain"), &[], None).unwrap();
        assert!(without.mirrored(SplitName::Train).is_none());
        assert!(without.mirrored(SplitName::Test).is_none());
    }

    #[test]
    fn mismatched_or_missing_features_are_named_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let (plain, mirrored) = (tmp.path().join("plain"), tmp.path().join("mirrored"));
        write_features(&plain, SplitName::Train, 4, 3);
        write_features(&plain, SplitName::Test, 2, 3);
        write_features(&mirrored, SplitName::Train, 3, 3);
        write_features(&mirrored, SplitName::Test, 2, 4);
        for (views, test) in [(&[mirrored.clone()][..], None), (&[][..], Some(&*mirrored))] {
            let err = load_features(&plain, views, test)
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains("mirrored") && err.contains("features of a view do not match"),
                "{err}"
            );
        }
        let err = load_features(&plain, std::slice::from_ref(&mirrored), None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("3 x 3") && err.contains("4 x 3"), "{err}");
        std::fs::write(plain.join("test.npy"), b"not an npy file").unwrap();
        let err = load_features(&plain, &[], None).err().unwrap();
        assert!(err.to_string().contains("test.npy"), "{err}");
        assert!(
            std::error::Error::source(&err).is_some(),
            "the npy error is kept as the source"
        );
    }

    #[test]
    fn views_follow_augmentation_and_the_mirror_average() {
        let mut cfg = config::Loaded::embedded_default().unwrap().config;
        assert!(cfg.eval.protocols.contains(&config::Protocol::TrainDb));
        assert!(views(&cfg).is_empty());
        cfg.train.augment = true;
        cfg.train.shifted_views = 2;
        assert_eq!(
            views(&cfg),
            [
                View::Mirrored(SplitName::Train),
                View::Shifted(0),
                View::Shifted(1)
            ]
        );
        cfg.model.mirror_average = true;
        assert_eq!(views(&cfg).last(), Some(&View::Mirrored(SplitName::Test)));
        // The mirror average alone: the mirror images of the embedded splits.
        cfg.train.augment = false;
        assert_eq!(
            views(&cfg),
            [
                View::Mirrored(SplitName::Train),
                View::Mirrored(SplitName::Test)
            ]
        );
        cfg.eval.protocols = vec![config::Protocol::LeaveOneOut];
        assert_eq!(views(&cfg), [View::Mirrored(SplitName::Test)]);
        let names: Vec<String> = [View::Plain, View::Shifted(3)].map(View::stage).into();
        assert_eq!(names, ["features", "features_shifted_3"]);
    }

    #[test]
    fn shifted_views_are_fixed_draws_of_shifts_and_mirrors() {
        // Real CIFAR-100 test images are not needed: any bytes show the view's geometry.
        // (hand-made pixels for a pure-function unit test: image i is all value i + 1)
        let pixels: Vec<u8> = (0..8u8).flat_map(|i| vec![i + 1; IMAGE_BYTES]).collect();
        let a = View::Shifted(0).apply(&pixels).into_owned();
        assert_eq!(
            a,
            View::Shifted(0).apply(&pixels).into_owned(),
            "fixed draws"
        );
        assert_ne!(a, View::Shifted(1).apply(&pixels).into_owned());
        for (i, img) in a.chunks_exact(IMAGE_BYTES).enumerate() {
            // Each pixel is the image's value or zero fill from the shift.
            assert!(img.iter().all(|&v| v == 0 || v == i as u8 + 1));
        }
        assert!(matches!(
            View::Plain.apply(&pixels),
            std::borrow::Cow::Borrowed(_)
        ));
        let m = View::Mirrored(SplitName::Train).apply(&pixels);
        assert_eq!(
            &m[..],
            &pixels[..],
            "a uniform image is its own mirror image"
        );
    }

    #[test]
    fn split_sizes_follow_the_subsets() {
        let mut cfg = config::Loaded::embedded_default().unwrap().config;
        assert_eq!(
            split_sizes(&cfg),
            [(SplitName::Train, 50_000), (SplitName::Test, 10_000)]
        );
        cfg.data.train_subset = Some(700);
        cfg.data.test_subset = Some(300);
        cfg.eval.protocols = vec![config::Protocol::Report];
        assert_eq!(embed_splits(&cfg), [(SplitName::Test, 300)]);
        cfg.eval.protocols.push(config::Protocol::TrainDb);
        assert_eq!(
            embed_splits(&cfg),
            [(SplitName::Test, 300), (SplitName::Train, 700)]
        );
    }
}
