//! The EfficientNet-Lite family (ImageNet-1k) as a burn module, loaded from a safetensors file whose
//! tensor names follow `lukemelas/efficientnet_pytorch` (`_conv_stem`, `_bn0`,
//! `_blocks.N._expand_conv` / `_bn0` / `_depthwise_conv` / `_bn1` / `_project_conv` / `_bn2`,
//! `_conv_head`, `_bn1`, `_fc`).
//!
//! Architecture (the "lite" variants: ReLU6, no squeeze-and-excitation, fixed stem and head):
//! stem 3x3/2 conv to 32 channels, MBConv blocks in 7 stages, 1x1 head conv to 1280 channels,
//! global mean pool, fully connected 1280 -> 1000. Lite0's stages are [`STAGES`]; every other
//! member scales them by its width and depth multipliers ([`Lite::stages`]): channels
//! `c * width` rounded to a multiple of 8 (never below 90% of `c * width`), blocks
//! `ceil(r * depth)` except in the first and the last stage, the stem's 32 and the head's 1280
//! channels fixed. Every convolution has no
//! bias and is followed by BatchNorm (eps 1e-3; at inference its running statistics are folded
//! into the convolution on the fly, see [`ConvBn`]). Padding is
//! TensorFlow "SAME": for stride 2 and an even input the odd extra row/column goes to the
//! bottom/right, which is applied as an explicit zero pad before the convolution.
//!
//! Inputs are `[batch, 3, S, S]` RGB tensors normalised as `(x - 127) / 128` with `x` in
//! `0..=255` (see [`normalize_u8`]); the weights were trained at [`Lite::native_size`] (224 for
//! Lite0, 260 for Lite2), but any `S` works.
//!
//! The file is read by [`super::safetensors`], so that every failure names the file, the tensor
//! and the shapes involved.

use std::path::Path;

use burn::module::{Param, RunningState};
use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::relu6;
use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};

use super::ModelError;
use super::safetensors::SafeTensors;

/// Number of channels of the pooled feature vector returned by
/// [`EfficientNetLite::forward_features`].
pub const FEATURE_DIM: usize = 1280;
/// Number of ImageNet-1k classes predicted by [`EfficientNetLite::forward`].
pub const NUM_CLASSES: usize = 1000;
/// Input resolution Lite0's ImageNet weights were trained at.
pub const TRAINED_INPUT_SIZE: usize = 224;
/// BatchNorm epsilon of the TensorFlow reference implementation.
pub const BN_EPSILON: f64 = 1e-3;
/// BatchNorm running-statistics momentum (PyTorch convention; TF decay 0.99).
pub const BN_MOMENTUM: f64 = 0.01;

/// Channels of the stem convolution.
const STEM_CHANNELS: usize = 32;

/// One stage of MBConv blocks, as in the `r{repeats}_k{kernel}_s{stride}_e{expand}_i{in}_o{out}`
/// block strings of the reference implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageSpec {
    /// Number of blocks in the stage.
    pub repeats: usize,
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Stride of the first block (the others use stride 1).
    pub stride: usize,
    /// Expansion ratio of the inverted bottleneck.
    pub expand: usize,
    /// Input channels of the first block.
    pub in_channels: usize,
    /// Output channels of every block.
    pub out_channels: usize,
}

/// A member of the EfficientNet-Lite family with shipped ImageNet weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lite {
    /// Width 1.0, depth 1.0, 224 px.
    Lite0,
    /// Width 1.1, depth 1.2, 260 px.
    Lite2,
}

impl Lite {
    /// `(width, depth)` multipliers.
    pub const fn multipliers(self) -> (f64, f64) {
        match self {
            Lite::Lite0 => (1.0, 1.0),
            Lite::Lite2 => (1.1, 1.2),
        }
    }

    /// The input side its ImageNet weights were trained at.
    pub const fn native_size(self) -> usize {
        match self {
            Lite::Lite0 => TRAINED_INPUT_SIZE,
            Lite::Lite2 => 260,
        }
    }

    /// Its name, as in `efficientnet_lite2`.
    pub const fn name(self) -> &'static str {
        match self {
            Lite::Lite0 => "EfficientNet-Lite0",
            Lite::Lite2 => "EfficientNet-Lite2",
        }
    }

    /// Its weights file under the data root.
    pub const fn weights_file(self) -> &'static str {
        match self {
            Lite::Lite0 => "pretrained/efficientnet_lite0.safetensors",
            Lite::Lite2 => "pretrained/efficientnet_lite2.safetensors",
        }
    }

    /// Its seven stages: Lite0's [`STAGES`] scaled by [`Lite::multipliers`] (module docs).
    pub fn stages(self) -> [StageSpec; 7] {
        let (width, depth) = self.multipliers();
        let channels = |c: usize| {
            let scaled = c as f64 * width;
            let rounded = ((scaled + 4.0) as usize / 8 * 8).max(8);
            if (rounded as f64) < 0.9 * scaled {
                rounded + 8
            } else {
                rounded
            }
        };
        let last = STAGES.len() - 1;
        let mut stages = STAGES;
        for (i, s) in stages.iter_mut().enumerate() {
            if i != 0 && i != last {
                s.repeats = (s.repeats as f64 * depth).ceil() as usize;
            }
            s.out_channels = channels(s.out_channels);
            s.in_channels = if i == 0 {
                STEM_CHANNELS
            } else {
                channels(s.in_channels)
            };
        }
        stages
    }

    /// The member a config's `model.encoder` names, if it is one.
    pub const fn of(encoder: crate::config::Encoder) -> Option<Lite> {
        match encoder {
            crate::config::Encoder::EfficientnetLite0 => Some(Lite::Lite0),
            crate::config::Encoder::EfficientnetLite2 => Some(Lite::Lite2),
            _ => None,
        }
    }

    /// The `model.encoder` that names it.
    pub const fn encoder(self) -> crate::config::Encoder {
        match self {
            Lite::Lite0 => crate::config::Encoder::EfficientnetLite0,
            Lite::Lite2 => crate::config::Encoder::EfficientnetLite2,
        }
    }

    /// MBConv blocks in all.
    pub fn blocks(self) -> usize {
        self.stages().iter().map(|s| s.repeats).sum()
    }
}

/// The seven stages of EfficientNet-Lite0.
pub const STAGES: [StageSpec; 7] = [
    stage(1, 3, 1, 1, 32, 16),
    stage(2, 3, 2, 6, 16, 24),
    stage(2, 5, 2, 6, 24, 40),
    stage(3, 3, 2, 6, 40, 80),
    stage(3, 5, 1, 6, 80, 112),
    stage(4, 5, 2, 6, 112, 192),
    stage(1, 3, 1, 6, 192, 320),
];

const fn stage(
    repeats: usize,
    kernel: usize,
    stride: usize,
    expand: usize,
    in_channels: usize,
    out_channels: usize,
) -> StageSpec {
    StageSpec {
        repeats,
        kernel,
        stride,
        expand,
        in_channels,
        out_channels,
    }
}

/// TensorFlow "SAME" padding `(before, after)` of one spatial axis: the output has
/// `ceil(size / stride)` positions and any odd extra padding goes after (bottom/right).
pub fn tf_same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out.saturating_sub(1)) * stride + kernel).saturating_sub(size);
    let before = total / 2;
    (before, total - before)
}

/// Bias-free 2-D convolution with square kernel and TensorFlow "SAME" padding.
#[derive(Module, Debug)]
pub struct SameConv2d {
    /// Weights, `[out_channels, in_channels / groups, kernel, kernel]`.
    pub weight: Param<Tensor<4>>,
    /// Stride along both axes.
    pub stride: usize,
    /// Number of groups (`channels` for a depthwise convolution, else 1).
    pub groups: usize,
}

impl SameConv2d {
    /// Applies the convolution: `[batch, in, H, W]` -> `[batch, out, ceil(H/s), ceil(W/s)]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_with(x, self.weight.val(), None)
    }

    /// The convolution with substitute weights (same shape) and an optional bias `[out]`.
    fn forward_with(&self, x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        let [_, _, height, width] = x.dims();
        let [_, _, kh, kw] = weight.dims();
        let (top, bottom) = tf_same_padding(height, kh, self.stride);
        let (left, right) = tf_same_padding(width, kw, self.stride);
        // The asymmetric part (one extra row/column at the bottom/right) is padded explicitly;
        // the symmetric part is left to the convolution.
        let x = if bottom > top || right > left {
            x.pad(
                [(0, bottom - top), (0, right - left)],
                PadMode::Constant(0.0),
            )
        } else {
            x
        }; // [batch, in, H + bottom - top, W + right - left]
        let options =
            ConvOptions::new([self.stride, self.stride], [top, left], [1, 1], self.groups);
        conv2d(x, weight, bias, options)
    }
}

/// A [`SameConv2d`] followed by BatchNorm (no activation).
///
/// In inference (input not on an autodiff device, or the BatchNorm's training flag off) the
/// BatchNorm's affine map with running statistics is folded into the convolution on the fly:
/// `w' = w * gamma / sqrt(var + eps)` per output channel and bias
/// `beta - mean * gamma / sqrt(var + eps)`. This is the same function as conv followed by
/// `BatchNorm` in inference mode, but saves four full passes over the activation per layer.
/// In training it is the plain `conv -> BatchNorm` (batch statistics, running-stat updates).
#[derive(Module, Debug)]
pub struct ConvBn {
    /// The convolution.
    pub conv: SameConv2d,
    /// The batch normalisation (its parameters and running statistics stay separate).
    pub bn: BatchNorm,
}

impl ConvBn {
    /// `[batch, in, H, W]` -> `[batch, out, ceil(H/s), ceil(W/s)]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if x.device().is_autodiff() && self.bn.training.is_enabled() {
            return self.bn.forward(self.conv.forward(x));
        }
        let (weight, shift) = super::fold_batch_norm(&self.bn, self.conv.weight.val());
        self.conv.forward_with(x, weight, Some(shift))
    }
}

/// Inverted-residual (MBConv) block without squeeze-and-excitation.
#[derive(Module, Debug)]
pub struct MbConvBlock {
    /// 1x1 expansion to `in * expand` channels (absent when the expansion ratio is 1).
    pub expand: Option<ConvBn>,
    /// Depthwise `k x k` convolution carrying the block's stride.
    pub depthwise: ConvBn,
    /// 1x1 linear projection to the output channels.
    pub project: ConvBn,
    /// Whether the input is added to the output (stride 1 and equal channel counts).
    pub residual: bool,
}

impl MbConvBlock {
    /// `[batch, in, H, W]` -> `[batch, out, ceil(H/s), ceil(W/s)]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let skip = self.residual.then(|| x.clone());
        let h = match &self.expand {
            Some(expand) => relu6(expand.forward(x)), // [batch, in * e, H, W]
            None => x,
        };
        let h = relu6(self.depthwise.forward(h)); // [batch, in * e, H / s, W / s]
        let h = self.project.forward(h); // [batch, out, H / s, W / s]
        match skip {
            Some(skip) => h + skip,
            None => h,
        }
    }
}

/// An EfficientNet-Lite network with its ImageNet-1k classifier.
#[derive(Module, Debug)]
pub struct EfficientNetLite {
    /// Stem: 3x3 stride-2 convolution to 32 channels.
    pub stem: ConvBn,
    /// The MBConv blocks (16 in Lite0, 21 in Lite2).
    pub blocks: Vec<MbConvBlock>,
    /// Head: 1x1 convolution from the last stage's channels to 1280.
    pub head: ConvBn,
    /// Classifier 1280 -> 1000 (weight stored `[1280, 1000]`).
    pub fc: Linear,
}

impl EfficientNetLite {
    /// Loads the `lite` network from a safetensors file; see [`load`].
    ///
    /// # Errors
    /// As [`load`].
    pub fn load(path: &Path, lite: Lite, device: &Device) -> Result<Self, ModelError> {
        load(path, lite, device)
    }

    /// Pooled penultimate features: `[batch, 3, S, S]` -> `[batch, 1280]` (after the head
    /// conv, BatchNorm, ReLU6 and global mean pooling; before the classifier).
    ///
    /// # Panics
    /// If the input does not have 3 channels (burn's shape checks).
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = relu6(self.stem.forward(x)); // [batch, 32, S/2, S/2]
        for block in &self.blocks {
            x = block.forward(x);
        } // [batch, 320, S/32, S/32]
        let x = relu6(self.head.forward(x)); // [batch, 1280, S/32, S/32]
        let [batch, channels, height, width] = x.dims();
        x.reshape([batch, channels, height * width]) // [batch, 1280, S/32 * S/32]
            .mean_dim(2) // [batch, 1280, 1]
            .reshape([batch, channels]) // [batch, 1280]
    }

    /// ImageNet-1k logits: `[batch, 3, S, S]` -> `[batch, 1000]`.
    ///
    /// # Panics
    /// As [`forward_features`](Self::forward_features).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.forward_features(x)) // [batch, 1000]
    }
}

/// Maps 8-bit RGB samples to the model's input range, `(x - 127) / 128`.
pub fn normalize_u8(pixels: &[u8]) -> Vec<f32> {
    pixels
        .iter()
        .map(|&x| (f32::from(x) - 127.0) / 128.0)
        .collect()
}

/// Maps samples already in `f32` on the `0..=255` scale (e.g. the output of the resizers in
/// [`super::resize`]) to the model's input range, in place: `x <- (x - 127) / 128`.
pub fn normalize_f32_in_place(pixels: &mut [f32]) {
    for x in pixels {
        *x = (*x - 127.0) / 128.0;
    }
}

/// Builds an input batch `[batch, 3, size, size]` from normalised planar RGB images stored one
/// after the other.
///
/// # Errors
/// [`ModelError::InvalidInput`] if `pixels.len() != batch * 3 * size * size`.
pub fn input_batch(
    pixels: Vec<f32>,
    batch: usize,
    size: usize,
    device: &Device,
) -> Result<Tensor<4>, ModelError> {
    let expected = batch * 3 * size * size;
    if pixels.len() != expected {
        return Err(ModelError::InvalidInput {
            what: format!(
                "a batch of {batch} RGB images of {size}x{size} needs {expected} values, got {}",
                pixels.len()
            ),
        });
    }
    Ok(Tensor::from_data(
        TensorData::new(pixels, [batch, 3, size, size]),
        device,
    ))
}

/// Loads the EfficientNet-Lite `lite` from a safetensors file (F32 tensors, lukemelas naming) onto
/// `device`. BatchNorm layers are created with `eps = 1e-3` and their running statistics;
/// they use those statistics whenever the input is not on an autodiff device.
///
/// # Errors
/// [`ModelError::WeightsNotFound`] / [`ModelError::WeightsUnreadable`] if the file cannot be
/// read, [`ModelError::CorruptWeights`] if it is truncated or malformed,
/// [`ModelError::MissingTensor`], [`ModelError::WrongShape`] or
/// [`ModelError::UnsupportedDtype`] for a tensor the model needs.
pub fn load(path: &Path, lite: Lite, device: &Device) -> Result<EfficientNetLite, ModelError> {
    let file = SafeTensors::read(path)?;
    let loader = Loader {
        file: &file,
        device,
    };

    let stem = loader.conv_bn("_conv_stem", "_bn0", 3, STEM_CHANNELS, 3, 2, 1)?;

    let stages = lite.stages();
    let mut blocks = Vec::new();
    for spec in &stages {
        for repeat in 0..spec.repeats {
            let (in_ch, stride) = if repeat == 0 {
                (spec.in_channels, spec.stride)
            } else {
                (spec.out_channels, 1)
            };
            let prefix = format!("_blocks.{}", blocks.len());
            let mid = in_ch * spec.expand;
            let expand = if spec.expand == 1 {
                None
            } else {
                Some(loader.conv_bn(
                    &format!("{prefix}._expand_conv"),
                    &format!("{prefix}._bn0"),
                    in_ch,
                    mid,
                    1,
                    1,
                    1,
                )?)
            };
            let depthwise = loader.conv_bn(
                &format!("{prefix}._depthwise_conv"),
                &format!("{prefix}._bn1"),
                mid,
                mid,
                spec.kernel,
                stride,
                mid,
            )?;
            let project = loader.conv_bn(
                &format!("{prefix}._project_conv"),
                &format!("{prefix}._bn2"),
                mid,
                spec.out_channels,
                1,
                1,
                1,
            )?;
            blocks.push(MbConvBlock {
                expand,
                depthwise,
                project,
                residual: stride == 1 && in_ch == spec.out_channels,
            });
        }
    }

    let last = stages[stages.len() - 1].out_channels;
    let head = loader.conv_bn("_conv_head", "_bn1", last, FEATURE_DIM, 1, 1, 1)?;

    // PyTorch stores the classifier as [out, in]; burn's Linear wants [in, out].
    let fc_weight = file.f32_tensor("_fc.weight", &[NUM_CLASSES, FEATURE_DIM])?;
    let mut transposed = vec![0.0f32; fc_weight.len()];
    for (o, row) in fc_weight.chunks_exact(FEATURE_DIM).enumerate() {
        for (i, &v) in row.iter().enumerate() {
            transposed[i * NUM_CLASSES + o] = v;
        }
    }
    let fc = Linear {
        weight: Param::from_data(
            TensorData::new(transposed, [FEATURE_DIM, NUM_CLASSES]),
            device,
        ),
        bias: Some(loader.param("_fc.bias", [NUM_CLASSES])?),
    };

    Ok(EfficientNetLite {
        stem,
        blocks,
        head,
        fc,
    })
}

/// Builds burn modules from the tensors of a parsed safetensors file.
struct Loader<'a> {
    file: &'a SafeTensors,
    device: &'a Device,
}

impl Loader<'_> {
    fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<D>, ModelError> {
        self.file.tensor(name, shape, self.device)
    }

    fn param<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Param<Tensor<D>>, ModelError> {
        self.file.param(name, shape, self.device)
    }

    fn batch_norm(&self, prefix: &str, channels: usize) -> Result<BatchNorm, ModelError> {
        Ok(BatchNorm {
            gamma: self.param(&format!("{prefix}.weight"), [channels])?,
            beta: self.param(&format!("{prefix}.bias"), [channels])?,
            training: Param::from_bool(true),
            running_mean: RunningState::new(
                self.tensor(&format!("{prefix}.running_mean"), [channels])?,
            ),
            running_var: RunningState::new(
                self.tensor(&format!("{prefix}.running_var"), [channels])?,
            ),
            momentum: BN_MOMENTUM,
            epsilon: BN_EPSILON,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &self,
        conv: &str,
        bn: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
    ) -> Result<ConvBn, ModelError> {
        let weight = self.param(
            &format!("{conv}.weight"),
            [out_channels, in_channels / groups, kernel, kernel],
        )?;
        Ok(ConvBn {
            conv: SameConv2d {
                weight,
                stride,
                groups,
            },
            bn: self.batch_norm(bn, out_channels)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::resize::resize_shorter_center_crop;
    use burn::tensor::activation::softmax;
    use std::path::PathBuf;

    /// The real data root, found as the binary finds it.
    fn data_root() -> PathBuf {
        crate::data::DataRoot::resolve(None, None)
            .expect("real data root")
            .path
    }

    fn weights_path() -> PathBuf {
        data_root().join("pretrained/efficientnet_lite0.safetensors")
    }

    fn unique_temp_path(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        std::env::temp_dir().join(format!(
            "harness-effnet-{tag}-{}-{nanos}.safetensors",
            std::process::id()
        ))
    }

    /// Decodes a JPEG, resizes shorter side to 256 (bilinear), centre-crops 224, normalises.
    fn imagenet_input(name: &str, device: &Device) -> Tensor<4> {
        imagenet_input_at(name, 256, 224, device)
    }

    /// Decodes a JPEG, resizes shorter side to `shorter` (bilinear), centre-crops `crop`,
    /// normalises.
    fn imagenet_input_at(name: &str, shorter: usize, crop: usize, device: &Device) -> Tensor<4> {
        let path = data_root().join("pretrained/test_images").join(name);
        let rgb = image::ImageReader::open(&path)
            .expect("open test image")
            .decode()
            .expect("decode test image")
            .to_rgb8();
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        let mut planar = vec![0u8; 3 * h * w];
        for (i, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                planar[c * h * w + i] = px.0[c];
            }
        }
        let mut x = resize_shorter_center_crop(&planar, h, w, shorter, crop).expect("resize");
        normalize_f32_in_place(&mut x);
        input_batch(x, 1, crop, device).expect("input batch")
    }

    fn top2(model: &EfficientNetLite, name: &str, device: &Device) -> [(usize, f32); 2] {
        top2_of(model, name, imagenet_input(name, device))
    }

    fn top2_of(model: &EfficientNetLite, name: &str, input: Tensor<4>) -> [(usize, f32); 2] {
        let logits = model.forward(input);
        assert_eq!(logits.dims(), [1, NUM_CLASSES]);
        let probs: Vec<f32> = softmax(logits, 1)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32 output");
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        println!(
            "{name}: top-5 {:?}",
            order[..5]
                .iter()
                .map(|&i| (i, probs[i]))
                .collect::<Vec<_>>()
        );
        [(order[0], probs[order[0]]), (order[1], probs[order[1]])]
    }

    #[test]
    fn the_family_scales_lite0_by_width_and_depth() {
        assert_eq!(Lite::Lite0.stages(), STAGES);
        assert_eq!(Lite::Lite0.blocks(), 16);
        // EfficientNet-Lite2 (width 1.1, depth 1.2), as `../shared/data/SOURCES.txt` gives its
        // blocks per stage and as timm's `tf_efficientnet_lite2` lays out its channels.
        let lite2 = Lite::Lite2.stages();
        let repeats: Vec<usize> = lite2.iter().map(|s| s.repeats).collect();
        assert_eq!(repeats, [1, 3, 3, 4, 4, 5, 1]);
        let outs: Vec<usize> = lite2.iter().map(|s| s.out_channels).collect();
        assert_eq!(outs, [16, 24, 48, 88, 120, 208, 352]);
        let ins: Vec<usize> = lite2.iter().map(|s| s.in_channels).collect();
        assert_eq!(ins, [32, 16, 24, 48, 88, 120, 208]);
    }

    #[test]
    fn lite2_imagenet_sanity_on_the_shipped_test_images() {
        // The classification check of `../shared/data/SOURCES.txt` (timm, shorter side 292,
        // centre crop 260): dog -> 249 malamute (0.23), eagle -> 21 kite (0.27) then 22 bald
        // eagle, giraffe -> 340 zebra (0.20).
        let device = Device::flex();
        let path = data_root().join(Lite::Lite2.weights_file());
        let model = load(&path, Lite::Lite2, &device).expect("load Lite2 weights");
        assert_eq!(model.blocks.len(), 21);
        let input = |name: &str| imagenet_input_at(name, 292, 260, &device);
        let [(top1, p1), _] = top2_of(&model, "dog.jpg", input("dog.jpg"));
        assert_eq!(top1, 249, "dog.jpg should be malamute");
        assert!((p1 - 0.23).abs() <= 0.03, "dog.jpg p = {p1}");
        let [(top1, p1), (second, _)] = top2_of(&model, "eagle.jpg", input("eagle.jpg"));
        assert_eq!((top1, second), (21, 22), "eagle.jpg: kite, then bald eagle");
        assert!((p1 - 0.27).abs() <= 0.03, "eagle.jpg p = {p1}");
        let [(top1, p1), _] = top2_of(&model, "giraffe.jpg", input("giraffe.jpg"));
        assert_eq!(top1, 340, "giraffe.jpg should be zebra");
        assert!((p1 - 0.20).abs() <= 0.03, "giraffe.jpg p = {p1}");
        // Lite0's weights under Lite2's shapes: a named shape error, not a panic.
        let wrong = load(&weights_path(), Lite::Lite2, &device)
            .unwrap_err()
            .to_string();
        assert!(
            wrong.contains("_blocks.") && wrong.contains("shape"),
            "{wrong}"
        );
    }

    #[test]
    fn tf_same_padding_matches_tensorflow() {
        assert_eq!(tf_same_padding(224, 3, 2), (0, 1));
        assert_eq!(tf_same_padding(224, 5, 2), (1, 2));
        assert_eq!(tf_same_padding(7, 3, 2), (1, 1));
        assert_eq!(tf_same_padding(14, 3, 1), (1, 1));
        assert_eq!(tf_same_padding(14, 5, 1), (2, 2));
        assert_eq!(tf_same_padding(7, 1, 1), (0, 0));
    }

    #[test]
    fn normalize_maps_to_model_range() {
        assert_eq!(normalize_u8(&[0, 127, 255]), vec![-127.0 / 128.0, 0.0, 1.0]);
    }

    #[test]
    fn imagenet_sanity_on_the_shipped_test_images() {
        let device = Device::flex();
        let model = load(&weights_path(), Lite::Lite0, &device).expect("load weights");
        assert_eq!(model.blocks.len(), 16);

        let [(top1, p1), _] = top2(&model, "dog.jpg", &device);
        assert_eq!(top1, 235, "dog.jpg should be German shepherd");
        assert!((p1 - 0.40).abs() <= 0.03, "dog.jpg p = {p1}");

        let [(top1, p1), (second, _)] = top2(&model, "eagle.jpg", &device);
        assert_eq!(top1, 21, "eagle.jpg should be kite");
        assert_eq!(second, 22, "eagle.jpg runner-up should be bald eagle");
        assert!((p1 - 0.50).abs() <= 0.03, "eagle.jpg p = {p1}");

        let [(top1, p1), _] = top2(&model, "giraffe.jpg", &device);
        assert_eq!(top1, 340, "giraffe.jpg should be zebra");
        assert!((p1 - 0.55).abs() <= 0.03, "giraffe.jpg p = {p1}");

        // Features: their shape (their values are checked against burn's plain layers and the
        // fused path in model::frozen, and against PyTorch by scripts/bench_efficientnet.sh).
        let a = model.forward_features(imagenet_input("dog.jpg", &device));
        assert_eq!(a.dims(), [1, FEATURE_DIM]);
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        crate::model::pseudo_random(n, seed, 1.0)
    }

    #[test]
    fn folded_batchnorm_matches_conv_then_batchnorm() {
        let device = Device::flex();
        let model = load(&weights_path(), Lite::Lite0, &device).expect("load weights");
        // Stem (3x3 stride 2, odd and even sizes) and a 5x5 stride-2 depthwise layer.
        let cases: [(&ConvBn, usize, usize); 3] = [
            (&model.stem, 3, 17),
            (&model.stem, 3, 16),
            (&model.blocks[3].depthwise, 144, 10),
        ];
        for (layer, channels, size) in cases {
            let x = Tensor::from_data(
                TensorData::new(
                    pseudo_random(2 * channels * size * size, size as u64),
                    [2, channels, size, size],
                ),
                &device,
            );
            let reference = layer.bn.forward(layer.conv.forward(x.clone()));
            let folded = layer.forward(x);
            assert_eq!(reference.dims(), folded.dims());
            let max_diff = (reference - folded).abs().max().into_scalar::<f32>();
            assert!(max_diff < 1e-4, "size {size}: max |diff| = {max_diff}");
        }
    }

    #[test]
    fn missing_file_is_reported() {
        let path = data_root().join("pretrained/no_such_weights.safetensors");
        match load(&path, Lite::Lite0, &Device::flex()) {
            Err(ModelError::WeightsNotFound { path: p }) => assert_eq!(p, path),
            other => panic!("expected WeightsNotFound, got {other:?}"),
        }
    }

    #[test]
    fn truncated_file_is_reported() {
        let bytes = std::fs::read(weights_path()).expect("read weights");
        let path = unique_temp_path("truncated");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("write truncated copy");
        let result = load(&path, Lite::Lite0, &Device::flex());
        let _ = std::fs::remove_file(&path);
        match result {
            Err(err @ ModelError::CorruptWeights { .. }) => {
                let msg = err.to_string();
                assert!(msg.contains("truncated"), "{msg}");
                assert!(msg.contains(&path.display().to_string()), "{msg}");
            }
            other => panic!("expected CorruptWeights, got {other:?}"),
        }
        // Truncated inside the 8-byte length prefix and inside the header.
        for cut in [5, 1000] {
            let path = unique_temp_path("cut");
            std::fs::write(&path, &bytes[..cut]).expect("write truncated copy");
            let result = load(&path, Lite::Lite0, &Device::flex());
            let _ = std::fs::remove_file(&path);
            assert!(
                matches!(result, Err(ModelError::CorruptWeights { .. })),
                "cut at {cut}: {result:?}"
            );
        }
    }

    /// A minimal safetensors file holding the given F32 tensors (zeros).
    fn tiny_safetensors(tensors: &[(&str, &[usize])]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut offset = 0usize;
        for (name, shape) in tensors {
            let bytes = 4 * shape.iter().product::<usize>();
            header.insert(
                (*name).to_owned(),
                serde_json::json!({
                    "dtype": "F32",
                    "shape": shape,
                    "data_offsets": [offset, offset + bytes],
                }),
            );
            offset += bytes;
        }
        let header = serde_json::Value::Object(header).to_string().into_bytes();
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(&header);
        file.resize(file.len() + offset, 0);
        file
    }

    #[test]
    fn wrong_shape_is_reported() {
        let path = unique_temp_path("wrong-shape");
        std::fs::write(
            &path,
            tiny_safetensors(&[("_conv_stem.weight", &[16, 3, 3, 3])]),
        )
        .expect("write tiny file");
        let result = load(&path, Lite::Lite0, &Device::flex());
        let _ = std::fs::remove_file(&path);
        let err = match result {
            Err(err) => err,
            Ok(_) => panic!("a [16, 3, 3, 3] stem must not load"),
        };
        let msg = err.to_string();
        match err {
            ModelError::WrongShape {
                name,
                expected,
                found,
            } => {
                assert_eq!(name, "_conv_stem.weight");
                assert_eq!(expected, [32, 3, 3, 3]);
                assert_eq!(found, [16, 3, 3, 3]);
            }
            other => panic!("expected WrongShape, got {other:?}"),
        }
        assert!(msg.contains("_conv_stem.weight"), "{msg}");
        assert!(msg.contains("[32, 3, 3, 3]"), "{msg}");
        assert!(msg.contains("[16, 3, 3, 3]"), "{msg}");
    }

    #[test]
    fn missing_tensor_is_reported() {
        let path = unique_temp_path("missing-tensor");
        std::fs::write(
            &path,
            tiny_safetensors(&[("_conv_stem.weight", &[32, 3, 3, 3])]),
        )
        .expect("write tiny file");
        let result = load(&path, Lite::Lite0, &Device::flex());
        let _ = std::fs::remove_file(&path);
        match result {
            Err(ModelError::MissingTensor { name }) => assert_eq!(name, "_bn0.weight"),
            other => panic!("expected MissingTensor, got {other:?}"),
        }
    }
}
