//! The embed stage: every image of a split through the trained network, stored in formats other
//! tools read directly.
//!
//! Per split: `embeddings/<split>.npy` (f32, `N x d`, row i = image i of the split),
//! `activations/<split>.npy` (f32, `N x h`, the hash layer's sigmoid outputs),
//! `codes/<split>.npy` (u64, `N x ceil(h/64)`; bit j of an image's code is bit `j % 64` of word
//! `j / 64`, set when activation j >= 0.5, as in Lin et al.) and `classes/<split>.parquet`
//! (`image_id,rank,class_id,score`: the top classes by cosine to the class embedding).

use crate::codes;
use crate::config::Precision;
use crate::data::cifar::IMAGE_BYTES;
use crate::model::efficientnet::{self, EfficientNetLite};
use crate::model::frozen::FrozenLite;
use crate::model::{HashNet, ModelError, Preprocess};
use crate::train::{self, Images, Inputs};
use burn::prelude::*;
use std::time::Instant;

/// Top classes kept per image.
pub const TOP_CLASSES: usize = 5;

/// What the network says about every image of a split.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    /// Images.
    pub n: usize,
    /// Embedding dimension `d`.
    pub d: usize,
    /// Hash bits `h`.
    pub h: usize,
    /// `n x d` network outputs.
    pub embeddings: Vec<f32>,
    /// `n x h` sigmoid activations.
    pub activations: Vec<f32>,
    /// `n x ceil(h/64)` packed hash bits.
    pub codes: Vec<u64>,
    /// `n x TOP_CLASSES` (class, cosine) pairs, best first.
    pub classes: Vec<(u8, f32)>,
    /// Forward-pass seconds per image (batched, warm).
    pub seconds_per_image: f64,
}

impl Embedded {
    /// The outputs of the images whose mirror images gave `mirrored` (same rows) averaged with
    /// them: the mean embedding and the mean hash activations, the bits (activation >= 0.5) and
    /// the top classes (cosine to `class_embedding`) taken from the means; the time per image
    /// is both passes'.
    pub fn mirror_averaged(&self, mirrored: &Embedded, class_embedding: &[f32]) -> Embedded {
        debug_assert_eq!(
            (self.n, self.d, self.h),
            (mirrored.n, mirrored.d, mirrored.h)
        );
        let mean = |a: &[f32], b: &[f32]| -> Vec<f32> {
            a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect()
        };
        let embeddings = mean(&self.embeddings, &mirrored.embeddings);
        let activations = mean(&self.activations, &mirrored.activations);
        let codes = codes::pack_codes(&activations, self.h);
        let classes = top_classes_of_rows(&embeddings, self.d, class_embedding);
        Embedded {
            n: self.n,
            d: self.d,
            h: self.h,
            embeddings,
            activations,
            codes,
            classes,
            seconds_per_image: self.seconds_per_image + mirrored.seconds_per_image,
        }
    }
}

/// The `k` classes whose embedding rows (`classes x d`, unit norm) have the largest cosine with
/// `e`, best first, ties by lower class id.
pub fn top_classes(e: &[f32], class_embedding: &[f32], k: usize) -> Vec<(u8, f32)> {
    let d = e.len();
    let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    let mut scores: Vec<(u8, f32)> = class_embedding
        .chunks_exact(d)
        .enumerate()
        .map(|(c, row)| {
            (
                c as u8,
                row.iter().zip(e).map(|(a, b)| a * b).sum::<f32>() / norm,
            )
        })
        .collect();
    scores.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scores.truncate(k);
    scores
}

/// The [`TOP_CLASSES`] classes of each `d`-wide row of `embeddings`, one row after the other.
fn top_classes_of_rows(embeddings: &[f32], d: usize, class_embedding: &[f32]) -> Vec<(u8, f32)> {
    embeddings
        .chunks_exact(d.max(1))
        .flat_map(|e| top_classes(e, class_embedding, TOP_CLASSES))
        .collect()
}

/// Rows a forward pass computes at least (when its batch size allows): a shorter batch, such as
/// a split's last or a single uploaded image, is filled up with copies of its own rows.
///
/// burn's matrix products (through `gemm`) sum in a different order for few rows: measured on
/// the decoder of `tests/fixtures/tiny_frozen.yaml`, a pass over 1, 16 or 64 rows gave
/// embeddings that differ from a pass over 300 or 500 rows in the last bits, and a pass over 128
/// rows gave the same bits. With the filling, an image's outputs do not depend on how many
/// images shared its pass, so an upload of a test image embeds bit for bit as the embed stage
/// embedded it. The serve tests check that on both fixtures.
pub const MIN_PASS_ROWS: usize = 128;

/// `ids` filled up to `rows` by repeating them from the start (unchanged when already as long).
fn filled(ids: &[usize], rows: usize) -> Vec<usize> {
    ids.iter()
        .copied()
        .cycle()
        .take(ids.len().max(rows))
        .collect()
}

/// The (row, column) of the first non-finite value of `width`-wide rows.
fn first_non_finite(values: &[f32], width: usize) -> Option<(usize, usize)> {
    let i = values.iter().position(|v| !v.is_finite())?;
    Some((i / width.max(1), i % width.max(1)))
}

/// Runs `images` through `net` (inference mode) in batches; fails on the first non-finite
/// output, naming the image.
pub fn embed(
    net: &HashNet,
    images: Images<'_>,
    prep: Preprocess,
    class_embedding: &[f32],
    batch: usize,
    progress: bool,
) -> Result<Embedded, ModelError> {
    let device = net.hash.weight.val().device();
    let (h, d) = (net.hash.weight.dims()[1], net.embed.weight.dims()[1]);
    let n = images.len();
    let bar = progress.then(|| {
        crate::progress::bar(
            n as u64,
            "embed [{bar:30}] {pos}/{len} images {per_sec} eta {eta}",
        )
    });
    let mut embeddings = Vec::with_capacity(n * d);
    let mut activations = Vec::with_capacity(n * h);
    let started = Instant::now();
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(batch.max(1)) {
        let pass = filled(chunk, batch.clamp(1, MIN_PASS_ROWS));
        let (x, _) = train::batch(images, &pass, None, prep, &device)?;
        let out = net.forward(x)?;
        let rows = chunk.len();
        embeddings.extend(out.embedding.into_data().iter::<f32>().take(rows * d));
        activations.extend(out.activations.into_data().iter::<f32>().take(rows * h));
        if let Some(b) = &bar {
            b.inc(chunk.len() as u64);
        }
    }
    let seconds_per_image = started.elapsed().as_secs_f64() / n.max(1) as f64;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    for (output, values, width) in [
        ("embedding", &embeddings, d),
        ("hash activation", &activations, h),
    ] {
        if let Some((image, column)) = first_non_finite(values, width) {
            return Err(ModelError::NonFiniteOutput {
                output,
                image,
                column,
                value: values[image * width + column],
            });
        }
    }
    let codes = codes::pack_codes(&activations, h);
    let classes = top_classes_of_rows(&embeddings, d, class_embedding);
    Ok(Embedded {
        n,
        d,
        h,
        embeddings,
        activations,
        codes,
        classes,
        seconds_per_image,
    })
}

/// A run's trained network, embedding images outside the dataset (a query page's uploads) by
/// the path the run's own images took: for a decoder trained on frozen features, the fused
/// encoder's features at the run's input size first (as the features stage computes them), then
/// the network, then the codes and top classes (as [`embed`] derives them).
pub struct Embedder {
    net: HashNet,
    prep: Preprocess,
    /// The fused frozen encoder and its input size, when the network reads cached features.
    frozen: Option<(FrozenLite, usize)>,
    class_embedding: Vec<f32>,
    /// Average each image's outputs with its mirror image's (`model.mirror_average`).
    mirror_average: bool,
}

impl Embedder {
    /// `net` with its preprocessing; `frozen` is the encoder, input size and precision of the
    /// features the network was trained on, if it was; `mirror_average` as the run's
    /// `model.mirror_average`.
    pub fn new(
        net: HashNet,
        prep: Preprocess,
        frozen: Option<(&EfficientNetLite, usize, Precision)>,
        class_embedding: Vec<f32>,
        mirror_average: bool,
    ) -> Result<Self, ModelError> {
        let frozen = frozen
            .map(|(encoder, size, precision)| {
                Ok::<_, ModelError>((FrozenLite::compile(encoder, precision)?, size))
            })
            .transpose()?;
        Ok(Self {
            net,
            prep,
            frozen,
            class_embedding,
            mirror_average,
        })
    }

    /// Embeds planar 32x32 RGB images (`pixels` holds them one after the other).
    pub fn embed(&self, pixels: &[u8]) -> Result<Embedded, ModelError> {
        if !pixels.len().is_multiple_of(IMAGE_BYTES) {
            return Err(ModelError::InvalidInput {
                what: format!("{} bytes are not whole 32x32 RGB images", pixels.len()),
            });
        }
        let plain = self.embed_as_they_are(pixels)?;
        if !self.mirror_average {
            return Ok(plain);
        }
        let mirrored = self.embed_as_they_are(&train::mirrored(pixels))?;
        Ok(plain.mirror_averaged(&mirrored, &self.class_embedding))
    }

    /// The network's outputs on whole images, without the mirror average.
    fn embed_as_they_are(&self, pixels: &[u8]) -> Result<Embedded, ModelError> {
        let labels = vec![0u8; pixels.len() / IMAGE_BYTES];
        let features;
        let inputs = match &self.frozen {
            Some((encoder, size)) => {
                features = encoder.features(pixels, *size)?;
                Inputs::Features {
                    values: &features,
                    dim: efficientnet::FEATURE_DIM,
                    views: &[],
                }
            }
            None => Inputs::Pixels(pixels),
        };
        let images = Images {
            inputs,
            labels: &labels,
        };
        let batch = train::inference_batch(images, self.prep);
        embed(
            &self.net,
            images,
            self.prep,
            &self.class_embedding,
            batch,
            false,
        )
    }
}

/// How [`encoder_features`] computes a frozen EfficientNet-Lite's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeaturePass {
    /// The fused channels-last inference of [`FrozenLite`] (the same function as
    /// [`EfficientNetLite::forward_features`], one image per worker of the current rayon
    /// pool), its 1x1 convolutions at this precision: what the features stage runs.
    Fused(Precision),
    /// burn's layers on batches through [`EfficientNetLite::forward_features`], in `f32`: the
    /// reference the fused path is tested and benchmarked against.
    BurnLayers,
}

impl FeaturePass {
    /// Its name in benchmark records: `fused`, `fused-bf16` or `burn-layers`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Fused(Precision::Fp32) => "fused",
            Self::Fused(Precision::Bf16) => "fused-bf16",
            Self::BurnLayers => "burn-layers",
        }
    }
}

/// Pooled EfficientNet-Lite features (`n x 1280`) of 32x32 images (`n * 3072` planar u8),
/// each upsampled bicubically to `size x size` and normalised as `(x - 127) / 128`.
///
/// `batch` images between progress updates, by `pass`.
pub fn encoder_features(
    encoder: &EfficientNetLite,
    pixels: &[u8],
    size: usize,
    batch: usize,
    progress: bool,
    pass: FeaturePass,
) -> Result<Vec<f32>, ModelError> {
    let n = pixels.len() / IMAGE_BYTES;
    let device = encoder.fc.weight.val().device();
    let prep = Preprocess::EfficientNet { size };
    let frozen = match pass {
        FeaturePass::Fused(precision) => Some(FrozenLite::compile(encoder, precision)?),
        FeaturePass::BurnLayers => None,
    };
    let bar = progress.then(|| {
        crate::progress::bar(
            n as u64,
            &format!(
                "features {size}px [{{bar:30}}] {{pos}}/{{len}} images {{per_sec}} eta {{eta}}"
            ),
        )
    });
    let mut out = Vec::with_capacity(n * efficientnet::FEATURE_DIM);
    for start in (0..n).step_by(batch.max(1)) {
        let end = (start + batch).min(n);
        let images = &pixels[start * IMAGE_BYTES..end * IMAGE_BYTES];
        match &frozen {
            Some(frozen) => out.extend(frozen.features(images, size)?),
            None => {
                let mut input = Vec::with_capacity((end - start) * 3 * size * size);
                for img in images.chunks_exact(IMAGE_BYTES) {
                    prep.append(img, &mut input)?;
                }
                let x = prep.tensor(input, end - start, &device);
                out.extend(encoder.forward_features(x).into_data().iter::<f32>());
            }
        }
        if let Some(b) = &bar {
            b.set_position(end as u64);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(out)
}

/// The `k` most probable ImageNet classes of each image, from its pooled features (`n x 1280`)
/// through the pretrained classifier head and a softmax: `(class, probability)`, best first.
pub fn imagenet_top_labels(
    encoder: &EfficientNetLite,
    features: &[f32],
    k: usize,
) -> Vec<Vec<(u16, f32)>> {
    let dim = efficientnet::FEATURE_DIM;
    let device = encoder.fc.weight.val().device();
    let mut out = Vec::with_capacity(features.len() / dim);
    for chunk in features.chunks(dim * 512) {
        let n = chunk.len() / dim;
        // At least MIN_PASS_ROWS rows per pass, as in `embed`.
        let rows: Vec<usize> = filled(&(0..n).collect::<Vec<_>>(), MIN_PASS_ROWS);
        let mut input = Vec::with_capacity(rows.len() * dim);
        for &r in &rows {
            input.extend_from_slice(&chunk[r * dim..(r + 1) * dim]);
        }
        let x = Tensor::<2>::from_data(TensorData::new(input, [rows.len(), dim]), &device);
        let probs = burn::tensor::activation::softmax(encoder.fc.forward(x), 1);
        let values: Vec<f32> = probs.into_data().iter::<f32>().collect();
        for row in values.chunks_exact(efficientnet::NUM_CLASSES).take(n) {
            let mut idx: Vec<u16> = (0..row.len() as u16).collect();
            idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
            out.push(
                idx.into_iter()
                    .take(k)
                    .map(|c| (c, row[c as usize]))
                    .collect(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_average_takes_bits_and_classes_from_the_means() {
        // Hand-made outputs for a pure-function unit test: two images, d = 2, h = 3, and a
        // class embedding of two unit rows (class 0 = x axis, class 1 = y axis).
        const C: [f32; 4] = [1.0, 0.0, 0.0, 1.0];
        let outputs = |embeddings: Vec<f32>, activations: Vec<f32>| {
            let codes = codes::pack_codes(&activations, 3);
            Embedded {
                n: 2,
                d: 2,
                h: 3,
                classes: top_classes_of_rows(&embeddings, 2, &C),
                embeddings,
                activations,
                codes,
                seconds_per_image: 0.25,
            }
        };
        // (Dyadic values, so that the means are exact.)
        let plain = outputs(
            vec![1.0, 0.25, 0.0, 1.0],
            vec![0.75, 0.25, 0.125, 0.5, 0.625, 0.0],
        );
        let mirrored = outputs(
            vec![0.0, 1.75, 0.0, 3.0],
            vec![0.25, 0.875, 0.25, 0.75, 0.25, 0.0],
        );
        let m = plain.mirror_averaged(&mirrored, &C);
        assert_eq!(m.embeddings, [0.5, 1.0, 0.0, 2.0]);
        assert_eq!(m.activations, [0.5, 0.5625, 0.1875, 0.625, 0.4375, 0.0]);
        // Bits 0 and 1 of image 0 (0.5, 0.5625 >= 0.5), bit 0 of image 1; bit 1 of image 0 was
        // clear in the plain outputs and set in the mean.
        assert_eq!(m.codes, [0b011, 0b001]);
        assert_eq!(plain.classes[0].0, 0, "plain image 0 is nearest class 0");
        assert_eq!(m.classes[0].0, 1, "its mean is nearest class 1");
        assert_eq!(m.classes[2].0, 1);
        assert_eq!(m.seconds_per_image, 0.5);
    }

    #[test]
    fn short_passes_are_filled_with_copies_of_their_rows() {
        assert_eq!(filled(&[7, 8], 5), vec![7, 8, 7, 8, 7]);
        assert_eq!(filled(&[1, 2, 3], 2), vec![1, 2, 3]);
        assert!(filled(&[], 4).is_empty());
    }

    #[test]
    fn the_first_non_finite_value_is_located() {
        // hand-made rows for a pure-function unit test
        let v = [0.0, 1.0, 2.0, 3.0, f32::NAN, 5.0, f32::INFINITY];
        assert_eq!(first_non_finite(&v, 3), Some((1, 1)));
        assert_eq!(first_non_finite(&v[..4], 2), None);
        assert_eq!(first_non_finite(&[f32::NEG_INFINITY], 1), Some((0, 0)));
    }

    #[test]
    fn wide_decoder_codes_are_the_hash_branch_bits() {
        use crate::config::{Decoder, Encoder, ModelConfig};
        use burn::tensor::activation::{relu, sigmoid};
        let root = crate::data::DataRoot::resolve(None, None).expect("real data root");
        let test = crate::data::cifar::Cifar100::load(&root, false)
            .expect("CIFAR-100")
            .test;
        let n = 24;
        let lite = efficientnet::Lite::Lite0;
        let encoder =
            EfficientNetLite::load(&root.path.join(lite.weights_file()), lite, &Device::flex())
                .expect("weights");
        let features = encoder_features(
            &encoder,
            &test.pixels[..n * IMAGE_BYTES],
            64,
            8,
            false,
            FeaturePass::Fused(Precision::Fp32),
        )
        .unwrap();
        let cfg = ModelConfig {
            encoder: Encoder::EfficientnetLite0,
            input_size: 64,
            decoder: Decoder::Wide,
            trunk: 96,
            dropout: 0.5,
            h: 48,
            aux_ce_weight: 0.1,
            ..ModelConfig::default()
        };
        let device = Device::flex();
        device.seed(11);
        let net = HashNet::new(&cfg, 100, None, &device).expect("network");
        let c = crate::artifacts::class_embedding_f32(&root, 100).expect("class embedding");
        let images = Images {
            inputs: train::Inputs::Features {
                values: &features,
                dim: efficientnet::FEATURE_DIM,
                views: &[],
            },
            labels: &test.fine[..n],
        };
        // One batch of all n, so the hand computation below sees the same matrix shapes.
        let e = embed(
            &net,
            images,
            Preprocess::EfficientNet { size: 64 },
            &c,
            n,
            false,
        )
        .unwrap();
        assert_eq!((e.n, e.h, e.d, e.codes.len()), (n, 48, 100, n));
        // The hash branch by hand: trunk (linear, batch norm on running statistics, ReLU; no
        // dropout at inference), then the hash layer, then the threshold of Lin et al.
        let trunk = net.trunk.as_ref().expect("wide decoder has a trunk");
        let x = Tensor::<2>::from_data(
            TensorData::new(features.clone(), [n, efficientnet::FEATURE_DIM]),
            &device,
        );
        let hidden = relu(trunk.norm.forward(trunk.linear.forward(x)));
        let acts: Vec<f32> = sigmoid(net.hash_norm.forward(net.hash.forward(hidden.clone())))
            .into_data()
            .iter::<f32>()
            .collect();
        let mut set = 0;
        for i in 0..n {
            for j in 0..48 {
                let bit = (e.codes[i] >> j) & 1 == 1;
                assert_eq!(bit, acts[i * 48 + j] >= 0.5, "image {i}, bit {j}");
                set += usize::from(bit);
            }
        }
        assert!(
            set > n * 48 / 10 && set < n * 48 * 9 / 10,
            "{set} bits set: degenerate"
        );
        // The embedding is the trunk's, not a map of the bits.
        let embedding: Vec<f32> = net
            .embed
            .forward(hidden)
            .into_data()
            .iter::<f32>()
            .collect();
        assert_eq!(embedding, e.embeddings);
    }

    #[test]
    fn top_classes_rank_by_cosine_with_ties_by_id() {
        // hand-made input: three unit class vectors in 2-D.
        let c = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0];
        let t = top_classes(&[2.0, 0.0], &c, 3);
        assert_eq!(t.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 2, 1]);
        assert!((t[0].1 - 1.0).abs() < 1e-6);
    }
}
