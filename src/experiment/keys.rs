//! Cache keys of the expensive stages: a hash of exactly the settings a stage's output depends
//! on, so that runs differing only downstream (index, IWAN, evaluation settings) share the
//! folder. The cache folder is `<cache>/<stage>-<first 16 hex digits of the key>`.
//!
//! The JSON layouts below are part of the cache format: changing one orphans every cached
//! folder of that stage (it is then computed again, never reused wrongly).

use super::stages::{LiteWeights, View};
use crate::config::{self, Config};
use crate::data::cifar::SplitName;
use std::path::{Path, PathBuf};

/// A stage's cache key and folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheKey {
    /// The full hash, recorded in the folder's `stage.json`.
    pub key: String,
    /// `<cache>/<stage>-<key[..16]>`.
    pub dir: PathBuf,
}

impl CacheKey {
    fn new(cache: &Path, stage: &str, value: &serde_json::Value) -> Self {
        let key = config::hash_value(value);
        let dir = cache.join(format!("{stage}-{}", &key[..16]));
        Self { key, dir }
    }
}

/// The frozen EfficientNet-Lite features at `size` px of `view` of the configured subsets,
/// computed with `own`'s network and weights (the shipped ImageNet weights when `None`).
/// (Lite0's keys, and those of the plain and mirrored training images, are those of the
/// versions before Lite2 and the other views existed, so their cache entries stay valid.)
pub(crate) fn features(
    cache: &Path,
    cfg: &Config,
    size: u32,
    own: LiteWeights<'_>,
    view: View,
) -> CacheKey {
    features_on(cache, cfg, size, own, view, bf16_kernel(cfg))
}

/// The kernel that sums a bf16 config's products in this process (`None` for fp32): the AMX
/// tiles, `vdpbf16ps` and the portable path sum in different orders, so their features, and
/// the networks trained on them, get their own cache entries.
fn bf16_kernel(cfg: &Config) -> Option<&'static str> {
    (!cfg.model.precision.is_fp32()).then(|| crate::model::bf16::Kernel::detect().name())
}

/// [`features`], its bf16 products summed by `kernel`.
fn features_on(
    cache: &Path,
    cfg: &Config,
    size: u32,
    own: LiteWeights<'_>,
    view: View,
    kernel: Option<&str>,
) -> CacheKey {
    let mut value = serde_json::json!({
        "stage": "features",
        "encoder": own.lite.encoder(),
        // The fused channels-last inference (model::frozen) sums in another order than burn's
        // layers, so its features get their own cache entries.
        "implementation": "fused-nhwc",
        "input_size": size,
        "weights": own.weights,
        "train_subset": cfg.data.train_subset,
        "test_subset": cfg.data.test_subset,
    });
    if let Some(kernel) = kernel {
        value["precision"] = serde_json::json!(cfg.model.precision);
        value["bf16_kernel"] = serde_json::json!(kernel);
    }
    match view {
        View::Plain => {}
        View::Mirrored(split) => {
            value["mirrored"] = serde_json::Value::Bool(true);
            if split == SplitName::Test {
                value["split"] = serde_json::json!(split);
            }
        }
        View::Shifted(v) => value["shifted_view"] = serde_json::json!(v),
    }
    CacheKey::new(cache, "features", &value)
}

/// The trained network: the data subsets, seed, backend, model and training settings. (The
/// test prefix only enters the per-epoch accuracy in `train_log.csv`.)
pub(crate) fn train(cache: &Path, cfg: &Config) -> CacheKey {
    // The mirror average only changes how the trained network embeds.
    let model = config::ModelConfig {
        mirror_average: false,
        ..cfg.model.clone()
    };
    let mut value = serde_json::json!({
        "stage": "train",
        "seed": cfg.seed,
        "backend": cfg.backend,
        "train_subset": cfg.data.train_subset,
        "test_subset": cfg.data.test_subset,
        "model": model,
        "train": cfg.train,
    });
    if let Some(kernel) = bf16_kernel(cfg) {
        value["bf16_kernel"] = serde_json::json!(kernel);
    }
    CacheKey::new(cache, "train", &value)
}

/// The embedded `splits` (with their sizes) under the network of `train`, as `cfg` embeds
/// them (`model.mirror_average`).
pub(crate) fn embed(
    cache: &Path,
    cfg: &Config,
    train: &CacheKey,
    splits: &[(SplitName, usize)],
) -> CacheKey {
    let mut value = serde_json::json!({
        "stage": "embed",
        "train": train.key,
        "splits": splits,
        // Every forward pass fills up to `embed::MIN_PASS_ROWS` rows, which changes the last
        // bits of a split's short final batch: its outputs get their own cache entries.
        "passes": "filled-128",
    });
    if cfg.model.mirror_average {
        value["mirror_average"] = serde_json::Value::Bool(true);
    }
    CacheKey::new(cache, "embed", &value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::efficientnet::Lite;

    fn lite0(weights: Option<&PathBuf>) -> LiteWeights<'_> {
        LiteWeights {
            lite: Lite::Lite0,
            weights,
        }
    }

    /// The default recipe in fp32, as `configs/seeds.yaml` and the sweeps pin it: the recipe
    /// whose cached folders the tests below name. The shipped default runs bf16.
    fn default_config() -> Config {
        let mut cfg = config::Loaded::embedded_default().unwrap().config;
        assert_eq!(
            cfg.model.precision,
            config::Precision::Bf16,
            "the shipped default"
        );
        cfg.model.precision = config::Precision::Fp32;
        cfg
    }

    #[test]
    fn downstream_settings_share_the_cached_stages() {
        let cache = Path::new("cache");
        let base = default_config();
        let mut other = base.clone();
        other.index.shortlist_factor += 3.0;
        other.iwan.top_iwk += 1;
        other.eval.ks.push(7);
        other.eval.timing_queries += 1;
        assert_eq!(train(cache, &base), train(cache, &other));
        assert_eq!(
            features(cache, &base, 160, lite0(None), View::Plain),
            features(cache, &other, 160, lite0(None), View::Plain)
        );
        // The decoder and the training settings change the network, not the features.
        let mut retrained = base.clone();
        retrained.model.h = 32;
        retrained.train.epochs += 1;
        assert_ne!(train(cache, &base), train(cache, &retrained));
        assert_eq!(
            features(cache, &base, 160, lite0(None), View::Plain),
            features(cache, &retrained, 160, lite0(None), View::Plain)
        );
    }

    #[test]
    fn every_input_of_a_stage_changes_its_key() {
        let cache = Path::new("cache");
        let cfg = default_config();
        let plain = features(cache, &cfg, 160, lite0(None), View::Plain);
        assert_ne!(plain, features(cache, &cfg, 224, lite0(None), View::Plain));
        assert_ne!(
            plain,
            features(
                cache,
                &cfg,
                160,
                lite0(None),
                View::Mirrored(SplitName::Train)
            )
        );
        let weights = PathBuf::from("other.safetensors");
        assert_ne!(
            plain,
            features(cache, &cfg, 160, lite0(Some(&weights)), View::Plain)
        );
        let lite2 = LiteWeights {
            lite: Lite::Lite2,
            weights: None,
        };
        assert_ne!(plain, features(cache, &cfg, 160, lite2, View::Plain));
        let mut subset = cfg.clone();
        subset.data.train_subset = Some(1000);
        assert_ne!(
            plain,
            features(cache, &subset, 160, lite0(None), View::Plain)
        );
        assert_ne!(train(cache, &cfg), train(cache, &subset));
        // bf16 features are other features, so the network trained on them is another one.
        let mut bf16 = cfg.clone();
        bf16.model.precision = config::Precision::Bf16;
        assert_ne!(plain, features(cache, &bf16, 160, lite0(None), View::Plain));
        assert_ne!(train(cache, &cfg), train(cache, &bf16));
        // ... and so are bf16 features summed by another kernel.
        let on = |kernel| features_on(cache, &bf16, 160, lite0(None), View::Plain, Some(kernel));
        assert_ne!(on("amx"), on("vdpbf16ps"));
        assert_ne!(on("vdpbf16ps"), on("portable"));
        let mut seeded = cfg.clone();
        seeded.seed += 1;
        assert_ne!(train(cache, &cfg), train(cache, &seeded));
        let t = train(cache, &cfg);
        let test_only = [(SplitName::Test, 10_000)];
        let both = [(SplitName::Test, 10_000), (SplitName::Train, 50_000)];
        assert_ne!(
            embed(cache, &cfg, &t, &test_only),
            embed(cache, &cfg, &t, &both)
        );
        assert_ne!(
            embed(cache, &cfg, &t, &both),
            embed(cache, &cfg, &train(cache, &seeded), &both)
        );
    }

    #[test]
    fn every_view_has_its_own_features() {
        let cache = Path::new("cache");
        let cfg = default_config();
        let views = [
            View::Plain,
            View::Mirrored(SplitName::Train),
            View::Mirrored(SplitName::Test),
            View::Shifted(0),
            View::Shifted(1),
        ];
        let keys: Vec<CacheKey> = views
            .iter()
            .map(|&v| features(cache, &cfg, 224, lite0(None), v))
            .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a.key, b.key);
            }
        }
    }

    #[test]
    fn the_mirror_average_changes_the_embeddings_not_the_network() {
        let cache = Path::new("cache");
        let base = default_config();
        let mut averaged = base.clone();
        averaged.model.mirror_average = true;
        assert_eq!(train(cache, &base), train(cache, &averaged));
        let t = train(cache, &base);
        let splits = [(SplitName::Test, 10_000)];
        assert_ne!(
            embed(cache, &base, &t, &splits),
            embed(cache, &averaged, &t, &splits)
        );
        // More cached views change what the network trained on.
        let mut shifted = base.clone();
        shifted.train.shifted_views = 2;
        assert_ne!(train(cache, &base), train(cache, &shifted));
    }

    #[test]
    fn folders_are_named_by_stage_and_key_prefix() {
        let k = features(
            Path::new("/c"),
            &default_config(),
            160,
            lite0(None),
            View::Plain,
        );
        assert_eq!(
            k.dir,
            Path::new("/c").join(format!("features-{}", &k.key[..16]))
        );
        assert_eq!(k.key.len(), 64, "a sha256 in hex");
    }

    /// The features folder of the default config that the runner before this module existed
    /// (commit f423977) wrote under `results/cache/`: a changed key layout would silently
    /// orphan every user's cached feature pass, so a change here must be deliberate.
    #[test]
    fn the_default_features_key_is_unchanged() {
        let k = features(
            Path::new("c"),
            &default_config(),
            160,
            lite0(None),
            View::Plain,
        );
        assert_eq!(&k.key[..16], DEFAULT_FEATURES_PREFIX);
    }

    const DEFAULT_FEATURES_PREFIX: &str = "ca2b6e9ee0f3ed84";

    /// The EfficientNet-Lite2 224 px folders cpu_best's run-319267fa (commit ecd9619, before
    /// the other views existed) wrote: the images as they are and the mirrored training images.
    #[test]
    fn the_lite2_keys_of_cpu_best_are_unchanged() {
        let lite2 = LiteWeights {
            lite: Lite::Lite2,
            weights: None,
        };
        let cfg = default_config();
        let key = |view| features(Path::new("c"), &cfg, 224, lite2, view).key[..16].to_string();
        assert_eq!(key(View::Plain), "44af47f957df1881");
        assert_eq!(key(View::Mirrored(SplitName::Train)), "03b1b48d5e9790e8");
    }
}
