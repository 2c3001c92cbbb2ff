//! A frozen EfficientNet-Lite (Lite0, Lite2) compiled for CPU inference: the features stage's
//! hot loop.
//!
//! [`FrozenLite::compile`] takes the burn module ([`EfficientNetLite`], loaded from the
//! safetensors file) and folds every batch norm into its convolution (the same fold as
//! [`super::fold_batch_norm`]), then lays the weights out for channels-last (NHWC) inference.
//! [`FrozenLite::features`] computes the same function as
//! [`EfficientNetLite::forward_features`] on upsampled CIFAR images, restructured for the
//! memory hierarchy of a CPU:
//!
//! - **one image per thread**: images are independent, so a worker runs a whole image through
//!   the network alone; its activations stay in its cache instead of a batch of 32 streaming
//!   through memory layer by layer, and no layer waits for a barrier;
//! - **blocks in bands of rows** ([`Block::run`]): each MBConv block's expansion, depthwise
//!   layer and projection run one band of output rows at a time, so the expanded map (4.8 MB at
//!   224 px, past any core's L2) is never written whole;
//! - **NHWC**: the 1x1 convolutions (80% of the work) are plain row-major matrix products
//!   `[H*W, C_in] x [C_in, C_out]`, and the depthwise convolutions vectorise over channels.
//!   The products run on `gemm`, the matrix engine burn's CPU backend uses, or at the AVX-512
//!   level on [`super::fp32`]'s kernel with packed weights, which sums exactly as gemm does;
//! - **fused epilogues**: bias (the folded batch norm), ReLU6 and the residual add are applied
//!   to each tile of a product while it is in cache, instead of in separate passes;
//! - **TensorFlow "SAME" padding** without padded copies: the AVX-512 depthwise row kernel
//!   skips the rows outside and multiplies zeros for the columns outside; elsewhere border
//!   pixels take a bounds-checked path, interior pixels a vectorised one.
//!
//! The result is not bit-identical to burn's layers (sums run in another order), but it is the
//! same function: the tests compare every layer kind and the whole network with burn's plain
//! `conv2d -> BatchNorm -> relu6` on real images. A worker's arithmetic does not depend on the
//! number of threads or on how images are batched, so features are reproducible across both.

use super::ModelError;
use super::aligned::Aligned;
use super::bf16::{self, Bf16Scratch, Bf16Weights};
use super::efficientnet::{ConvBn, EfficientNetLite, FEATURE_DIM, tf_same_padding};
use super::fp32::{PackedWeights, sums_as_gemm};
use super::resize;
use super::tiles::Start;
use crate::config::Precision;
use crate::simd::{Level, level};
use burn::prelude::*;
use rayon::prelude::*;

/// Channel block of the vectorised depthwise and stem loops (every expanded width of Lite0 and
/// Lite2 is a multiple; [`FrozenLite::compile`] checks it).
const LANES: usize = 16;
/// Output pixels the depthwise fast path computes at once (independent accumulator chains).
const PIXELS: usize = 4;
/// The largest depthwise kernel side the fused inference takes (Lite0 and Lite2 use 3 and 5).
const MAX_KERNEL: usize = 7;
/// Output pixels the AVX-512 depthwise row kernel computes at once (its accumulators and the
/// shared input vectors of one kernel row fit the 32 vector registers for kernels up to 5).
const WIDE_PIXELS: usize = 8;
/// Target size of one output tile of a 1x1 convolution, in `f32`s (fits in L2 with its input).
const TILE_VALUES: usize = 48 * 1024;

/// A 1x1 convolution with its batch norm folded in: `[m, c_in] -> [m, c_out]`.
#[derive(Debug, Clone)]
struct Pointwise {
    /// `[c_in, c_out]`, row-major.
    weight: Vec<f32>,
    /// `[c_out]`.
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
    /// The weight rounded to bfloat16 for `model.precision: bf16`, which then replaces it.
    bf16: Option<Bf16Weights>,
    /// The weight packed for the AVX-512 `f32` kernel (the same sums as `gemm` on `weight`),
    /// where this process runs it.
    packed: Option<PackedWeights>,
}

/// A depthwise `k x k` convolution with its batch norm folded in.
#[derive(Debug, Clone)]
struct Depthwise {
    /// `[k, k, c]`, row-major.
    weight: Vec<f32>,
    /// `[c]`.
    bias: Vec<f32>,
    channels: usize,
    kernel: usize,
    stride: usize,
}

/// The 3x3 stride-2 stem, 3 -> 32 channels, batch norm folded in.
#[derive(Debug, Clone)]
struct Stem {
    /// `[3 (ky), 3 (kx), 3 (c_in), 32 (c_out)]`, row-major.
    weight: Vec<f32>,
    /// `[32]`.
    bias: Vec<f32>,
}

const STEM_OUT: usize = 32;

#[derive(Debug, Clone)]
struct Block {
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
    residual: bool,
}

/// An EfficientNet-Lite feature extractor with folded, NHWC-ordered weights; see the module
/// docs. Built from the burn module by [`FrozenLite::compile`].
#[derive(Debug, Clone)]
pub struct FrozenLite {
    stem: Stem,
    blocks: Vec<Block>,
    head: Pointwise,
}

thread_local! {
    /// Each worker thread's buffers, kept from one call of [`FrozenLite::features`] to the
    /// next (about 8 MB a thread at 224 px): rayon may start a task for every group of images,
    /// and fresh buffers cost their zeroing and page faults each time.
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Reusable activation buffers of one worker.
#[derive(Default)]
struct Scratch {
    /// A group's upsampled images, planar, and the upsampling's horizontal pass.
    planar: Vec<Vec<f32>>,
    horizontal: Vec<f32>,
    input: Aligned<f32>,
    a: Aligned<f32>,
    b: Aligned<f32>,
    /// A group's maps, image after image, in and out of the blocks run on the whole group.
    stacked: [Aligned<f32>; 2],
    c: Aligned<f32>,
    d: Aligned<f32>,
    rounded: Aligned<u16>,
    bf16: Bf16Scratch,
}

/// The folded weights and bias of a conv + batch norm, on the host.
struct Folded {
    /// `[out, in/g, k, k]`, row-major.
    weight: Vec<f32>,
    /// `[out]`.
    bias: Vec<f32>,
    /// The weight's shape.
    dims: [usize; 4],
}

fn folded(layer: &ConvBn) -> Result<Folded, ModelError> {
    let (weight, bias) = super::fold_batch_norm(&layer.bn, layer.conv.weight.val());
    let dims = weight.dims();
    let host = |data: TensorData| {
        data.try_to_vec::<f32>()
            .map_err(|e| ModelError::InvalidInput {
                what: format!("EfficientNet-Lite weights are not f32: {e:?}"),
            })
    };
    Ok(Folded {
        weight: host(weight.into_data())?,
        bias: host(bias.into_data())?,
        dims,
    })
}

impl Pointwise {
    fn compile(layer: &ConvBn, precision: Precision) -> Result<Self, ModelError> {
        let Folded {
            weight: w,
            bias,
            dims: [c_out, c_in, _, _],
        } = folded(layer)?;
        // [c_out, c_in] -> [c_in, c_out]
        let mut weight = vec![0.0; w.len()];
        for o in 0..c_out {
            for i in 0..c_in {
                weight[i * c_out + o] = w[o * c_in + i];
            }
        }
        let bf16 = (precision == Precision::Bf16).then(|| Bf16Weights::new(&weight, c_in, c_out));
        let packed = (bf16.is_none() && super::fp32::available())
            .then(|| PackedWeights::new(&weight, c_in, c_out));
        Ok(Self {
            weight,
            bias,
            c_in,
            c_out,
            bf16,
            packed,
        })
    }
}

impl Depthwise {
    fn compile(layer: &ConvBn) -> Result<Self, ModelError> {
        let Folded {
            weight: w,
            bias,
            dims: [channels, _, kernel, _],
        } = folded(layer)?;
        if !channels.is_multiple_of(LANES) {
            return Err(ModelError::InvalidInput {
                what: format!(
                    "a depthwise layer of {channels} channels; the fused inference needs a \
                     multiple of {LANES} (use the plain layers)"
                ),
            });
        }
        if kernel > MAX_KERNEL {
            return Err(ModelError::InvalidInput {
                what: format!(
                    "a {kernel}x{kernel} depthwise layer; the fused inference takes kernels up \
                     to {MAX_KERNEL}x{MAX_KERNEL} (use the plain layers)"
                ),
            });
        }
        // [c, 1, k, k] -> [k, k, c]
        let mut weight = vec![0.0; w.len()];
        for c in 0..channels {
            for t in 0..kernel * kernel {
                weight[t * channels + c] = w[c * kernel * kernel + t];
            }
        }
        Ok(Self {
            weight,
            bias,
            channels,
            kernel,
            stride: layer.conv.stride,
        })
    }
}

impl Stem {
    fn compile(layer: &ConvBn) -> Result<Self, ModelError> {
        let Folded {
            weight: w,
            bias,
            dims,
        } = folded(layer)?;
        if dims != [STEM_OUT, 3, 3, 3] {
            return Err(ModelError::InvalidInput {
                what: format!("stem weights {dims:?}, expected [32, 3, 3, 3]"),
            });
        }
        // [out, in, ky, kx] -> [ky, kx, in, out]
        let mut weight = vec![0.0; w.len()];
        for o in 0..STEM_OUT {
            for i in 0..3 {
                for t in 0..9 {
                    weight[(t * 3 + i) * STEM_OUT + o] = w[(o * 3 + i) * 9 + t];
                }
            }
        }
        Ok(Self { weight, bias })
    }
}

impl FrozenLite {
    /// Folds and re-lays the weights of `net` (any device; they are read back to the host).
    /// With [`Precision::Bf16`] the 1x1 convolutions (the expansions, projections and head)
    /// run on bfloat16 operands ([`super::bf16`]); the stem and the depthwise convolutions stay
    /// in `f32`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] if a depthwise layer's width is not a multiple of the
    /// vector block.
    pub fn compile(net: &EfficientNetLite, precision: Precision) -> Result<Self, ModelError> {
        let pointwise = |layer| Pointwise::compile(layer, precision);
        let blocks = net
            .blocks
            .iter()
            .map(|b| {
                Ok(Block {
                    expand: b.expand.as_ref().map(pointwise).transpose()?,
                    depthwise: Depthwise::compile(&b.depthwise)?,
                    project: pointwise(&b.project)?,
                    residual: b.residual,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Self {
            stem: Stem::compile(&net.stem)?,
            blocks,
            head: pointwise(&net.head)?,
        })
    }

    /// Multiply-adds of one image at `size` px: the stem, the depthwise and the 1x1
    /// convolutions (bias, activation, residual and pooling are not counted). Twice this is the
    /// FLOP count that `harness bench model` divides by.
    #[must_use]
    pub fn multiply_adds(&self, size: usize) -> u64 {
        let out = |side: usize, stride: usize| side.div_ceil(stride);
        let (mut h, mut w) = (out(size, 2), out(size, 2));
        let mut total = (h * w * STEM_OUT * 27) as u64;
        let pw = |p: &Pointwise, pixels: usize| (pixels * p.c_in * p.c_out) as u64;
        for block in &self.blocks {
            if let Some(e) = &block.expand {
                total += pw(e, h * w);
            }
            let d = &block.depthwise;
            (h, w) = (out(h, d.stride), out(w, d.stride));
            total += (h * w * d.channels * d.kernel * d.kernel) as u64;
            total += pw(&block.project, h * w);
        }
        total + pw(&self.head, h * w)
    }

    /// Pooled 1280-d features of planar u8 `[3, 32, 32]` CIFAR images (`pixels` holds them one
    /// after the other), each upsampled bicubically to `size` and normalised as
    /// [`super::efficientnet::normalize_f32_in_place`] does: the same values as
    /// [`EfficientNetLite::forward_features`] on [`super::Preprocess::EfficientNet`] input.
    /// Images are spread over the current rayon pool in groups ([`FrozenLite::group`]), a
    /// group per worker at a time.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] if `pixels` is not a whole number of images or `size` is 0.
    pub fn features(&self, pixels: &[u8], size: usize) -> Result<Vec<f32>, ModelError> {
        self.features_in_groups(pixels, size, self.group(size))
    }

    /// The images a worker runs at once at `size` px: the larger of [`GROUPS`] where that
    /// group runs some blocks stacked ([`FrozenLite::stacked_from`]), each holding at most
    /// [`GROUP_VALUES`] expanded values for the group; else the smaller.
    fn group(&self, size: usize) -> usize {
        let [large, small] = GROUPS;
        let (split, most) = self.stacking(size, large);
        if split < self.blocks.len() && most <= GROUP_VALUES {
            large
        } else {
            small
        }
    }

    /// [`FrozenLite::features`] in groups of `group` images (the tests compare group sizes).
    fn features_in_groups(
        &self,
        pixels: &[u8],
        size: usize,
        group: usize,
    ) -> Result<Vec<f32>, ModelError> {
        const IMAGE: usize = 3 * 32 * 32;
        if !pixels.len().is_multiple_of(IMAGE) || size == 0 {
            return Err(ModelError::InvalidInput {
                what: format!(
                    "{} bytes are not whole 32x32 RGB images, or size {size} is 0",
                    pixels.len()
                ),
            });
        }
        let n = pixels.len() / IMAGE;
        let resize = resize::Resampler::bicubic(32, 32, size, size)?;
        let mut out = vec![0.0f32; n * FEATURE_DIM];
        out.par_chunks_mut(FEATURE_DIM * group)
            .zip(pixels.par_chunks(IMAGE * group))
            .try_for_each(|(features, images)| {
                SCRATCH.with_borrow_mut(|scratch| {
                    let mut planar = std::mem::take(&mut scratch.planar);
                    planar.resize_with(images.len() / IMAGE, Vec::new);
                    for (image, planar) in images.chunks_exact(IMAGE).zip(&mut planar) {
                        resize.resample_into(image, planar, &mut scratch.horizontal)?;
                    }
                    self.group_features(&planar, size, scratch, features);
                    scratch.planar = planar;
                    Ok::<_, ModelError>(())
                })
            })?;
        Ok(out)
    }

    /// Pooled features of planar `[3, size, size]` images on the `0..=255` scale, a row of
    /// `out` each.
    fn group_features(&self, planar: &[Vec<f32>], size: usize, s: &mut Scratch, out: &mut [f32]) {
        match level() {
            // SAFETY (both): `level` returns these only after detecting their features.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { self.forward_avx512(planar, size, s, out) },
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { self.forward_fma(planar, size, s, out) },
            _ => self.forward::<false>(planar, size, s, out),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn forward_fma(
        &self,
        planar: &[Vec<f32>],
        size: usize,
        s: &mut Scratch,
        out: &mut [f32],
    ) {
        self.forward::<true>(planar, size, s, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn forward_avx512(
        &self,
        planar: &[Vec<f32>],
        size: usize,
        s: &mut Scratch,
        out: &mut [f32],
    ) {
        self.forward::<true>(planar, size, s, out);
    }

    /// The first block run on a group of `images` at once ([`Block::run_stacked`]) at `size`
    /// px: from there on, every block's expanded maps of the whole group hold at most
    /// [`STACK_VALUES`].
    ///
    /// A block whose output map is a single pixel runs on each image: its products would then
    /// be of one row per image, which the portable path (gemm) sums as a matrix-vector
    /// product, in another order than the same row among others.
    fn stacked_from(&self, size: usize, images: usize) -> usize {
        self.stacking(size, images).0
    }

    /// [`FrozenLite::stacked_from`], and the most expanded values of a stacked block (0 where
    /// none is).
    fn stacking(&self, size: usize, images: usize) -> (usize, usize) {
        let mut side = size.div_ceil(2);
        let (mut split, mut most) = (0, 0);
        for (i, block) in self.blocks.iter().enumerate() {
            let values = images * side * side * block.depthwise.channels;
            side = side.div_ceil(block.depthwise.stride);
            if values > STACK_VALUES || side == 1 {
                (split, most) = (i + 1, 0);
            } else {
                most = most.max(values);
            }
        }
        (split, most)
    }

    /// The network on the planar `[3, size, size]` images of a group, pooled features into
    /// `out`, a row each. Each image runs alone through the stem and the blocks before
    /// [`FrozenLite::stacked_from`], in bands; the later blocks and the head run on the whole
    /// group at once, its maps one after the other, so that each 1x1 product reads its
    /// weights once for the group (on a 7 x 7 map one image is 49 rows, and a product's
    /// weights are up to 442 K values). Inlined into the feature-level entry points so its
    /// loops are vectorised for that level.
    #[inline(always)]
    fn forward<const FMA: bool>(
        &self,
        planar: &[Vec<f32>],
        size: usize,
        s: &mut Scratch,
        out: &mut [f32],
    ) {
        let Scratch {
            input,
            a,
            b,
            stacked: [sa, sb],
            c,
            d,
            rounded,
            bf16,
            ..
        } = s;
        let images = planar.len();
        // The buffers keep their largest size; each layer uses the prefix it needs.
        let wide = wide_kernels::<FMA>();
        let split = self.stacked_from(size, images);
        let band_values = if self.head.bf16.is_some() {
            BF16_BAND_VALUES
        } else {
            BAND_VALUES
        };
        let mut shape = (0, 0, 0);
        for (g, image) in planar.iter().enumerate() {
            normalized_nhwc(image, input.prefix(size * size * 3), wide);
            let (mut h, mut w) =
                stem::<FMA>(&self.stem, &input[..size * size * 3], size, size, a, wide);
            let mut channels = STEM_OUT;
            for block in &self.blocks[..split] {
                // The block's input is in `a`, its output goes to `b`, which then becomes the
                // next input; `c` and `d` (or `rounded`) hold a band's expanded rows and its
                // depthwise output.
                let input = &a[..h * w * channels];
                let (oh, ow) = block.out_size(h, w);
                let output = b.prefix(oh * ow * block.project.c_out);
                let buffers = Band {
                    window: c,
                    depthwise: d,
                    rounded,
                    bf16,
                };
                block.run::<FMA>(input, (h, w), output, buffers, band_values, wide);
                std::mem::swap(a, b);
                (h, w, channels) = (oh, ow, block.project.c_out);
            }
            let len = h * w * channels;
            sa.prefix(images * len)[g * len..][..len].copy_from_slice(&a[..len]);
            shape = (h, w, channels);
        }
        for block in &self.blocks[split..] {
            let (h, w, channels) = shape;
            let (oh, ow) = block.out_size(h, w);
            let output = sb.prefix(images * oh * ow * block.project.c_out);
            let buffers = Band {
                window: c,
                depthwise: d,
                rounded,
                bf16,
            };
            let input = &sa[..images * h * w * channels];
            block.run_stacked::<FMA>(input, images, (h, w), output, buffers, wide);
            std::mem::swap(sa, sb);
            shape = (oh, ow, block.project.c_out);
        }
        let (h, w, channels) = shape;
        debug_assert_eq!(channels, self.head.c_in);
        let pixels = h * w;
        let head = c.prefix(images * pixels * FEATURE_DIM);
        let input = &sa[..images * pixels * channels];
        // On a single pixel, the head too runs on each image (see `stacked_from`).
        let at_once = if pixels > 1 { images } else { 1 };
        let calls = input
            .chunks_exact(at_once * pixels * channels)
            .zip(head.chunks_exact_mut(at_once * pixels * FEATURE_DIM));
        for (input, head) in calls {
            pointwise(&self.head, input, at_once * pixels, None, true, head, bf16);
        }
        let scale = 1.0 / pixels as f32;
        for (out, head) in out
            .chunks_exact_mut(FEATURE_DIM)
            .zip(head.chunks_exact(pixels * FEATURE_DIM))
        {
            out.fill(0.0);
            for row in head.chunks_exact(FEATURE_DIM) {
                for (o, &v) in out.iter_mut().zip(row) {
                    *o += v;
                }
            }
            for o in out.iter_mut() {
                *o *= scale;
            }
        }
    }
}

/// Images a worker runs through the late blocks at once ([`FrozenLite::group`]), the larger
/// first. Measured on the Xeon (2 threads, batch 32, fp32 and bf16 images/s, three alternated
/// rounds), 16 against 8 images: at 96 px 1,964-2,172 against 1,932-2,185 and 4,968-5,258
/// against 3,488-4,824 (16 images stack blocks of up to 540 K values, 8 images 648 K); at 160
/// px 785-809 against 730-769 and 1,833-1,894 against 1,649-1,803 (450 K; 750 K); at 128 px
/// 1,048-1,093 against 1,095-1,110 and 2,408-2,529 against 2,622-2,741 (960 K; 480 K); at 224
/// px 367-378 against 357-372 and 826-860 against 841-882 (882 K; 441 K).
const GROUPS: [usize; 2] = [16, 8];

/// The most expanded values a stacked block of the larger group may hold ([`GROUPS`]): 640
/// K, 2.5 MB, between the sizes where 16 images were faster (540 K and 450 K) and those where
/// they were not (882 K and 960 K).
const GROUP_VALUES: usize = 640 * 1024;

/// The most expanded values of a group's block run at once: 1 M, 4 MB.
const STACK_VALUES: usize = 1 << 20;

/// Target size of a band's expanded rows, in `f32`s: with the band's depthwise output and
/// its share of the input and output they stay in a core's L2 (1 MB on Zen 4, 2 MB on the
/// Xeon) between the three layers of a block. Measured on the Xeon at 224 px (images/s, fp32
/// and bf16): 8 K 232–234 and 286–296, 24 K 247–249 and 364–365, 48 K 253–255 and 385–395,
/// 96 K 244–250 and 405–406, 192 K 248–263 and 383–392. With aligned buffers and grouped
/// late blocks, fp32 stayed the same from 48 K to 192 K and bf16 preferred 96 K
/// ([`BF16_BAND_VALUES`]).
const BAND_VALUES: usize = 48 * 1024;

/// [`BAND_VALUES`] where the 1x1 convolutions run in bf16: fewer, taller products suit the AMX
/// kernel. Measured on the Xeon, two alternated runs, images/s at 96 and 224 px: 48 K
/// 2,960–2,988 and 717–732, 96 K 3,024–3,098 and 755–758, 192 K 3,033–3,075 and 747–765.
const BF16_BAND_VALUES: usize = 96 * 1024;

/// The scratch buffers of one block's bands: the expanded rows the band's depthwise layer
/// reads (`window`), its depthwise output in `f32` or, for a projection on the packed bf16
/// kernels, rounded to bfloat16 (`rounded`), and the bf16 kernels' scratch.
struct Band<'a> {
    window: &'a mut Aligned<f32>,
    depthwise: &'a mut Aligned<f32>,
    rounded: &'a mut Aligned<u16>,
    bf16: &'a mut Bf16Scratch,
}

impl Block {
    fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let s = self.depthwise.stride;
        (h.div_ceil(s), w.div_ceil(s))
    }

    /// The block (expansion, depthwise, projection with its residual) on `input` (`[h, w,
    /// c_in]`) into `out` (`[oh, ow, c_out]`), in bands of output rows, each band's three
    /// layers one after the other, so that the expanded map, the largest of the network, is
    /// never written whole (at 224 px it is 4.8 MB, past any core's L2). The expanded rows a
    /// band's depthwise layer reads are computed once: rows the next band reads too stay in
    /// the window, moved to its front. Every output sums the same terms in the same order as
    /// the layers run whole (the 1x1 kernels sum each row on its own, the depthwise layer
    /// each pixel on its own), so the features are bit for bit the same.
    ///
    /// `band_values` sizes the bands ([`BAND_VALUES`], [`BF16_BAND_VALUES`]; the tests take it
    /// down to one row).
    #[inline(always)]
    fn run<const FMA: bool>(
        &self,
        input: &[f32],
        (h, w): (usize, usize),
        out: &mut [f32],
        buffers: Band<'_>,
        band_values: usize,
        wide: bool,
    ) {
        let Band {
            window,
            depthwise,
            rounded,
            bf16,
        } = buffers;
        let dw = &self.depthwise;
        let (k, s, mid) = (dw.kernel, dw.stride, dw.channels);
        let c_in = input.len() / (h * w);
        let c_out = self.project.c_out;
        let (pt, _) = tf_same_padding(h, k, s);
        let (pl, _) = tf_same_padding(w, k, s);
        let (oh, ow) = self.out_size(h, w);
        debug_assert_eq!(out.len(), oh * ow * c_out);
        // Bands of equal height, so that no short last band runs its products on a few rows
        // (7 rows of 7 run as 4 + 3, not 6 + 1: the AMX kernel's tiles cost about as much for
        // 4 rows as for 8, and the f32 kernel loads a tile's weights for however few).
        let bands = oh.div_ceil((band_values / (s * w * mid)).clamp(1, oh));
        let band_rows = oh.div_ceil(bands);
        let row = w * mid;
        // The expanded input rows held in `window`, from its start.
        let mut held = 0..0;
        for first in (0..oh).step_by(band_rows) {
            let last = (first + band_rows).min(oh);
            // The input rows the band's depthwise layer reads.
            let need = (first * s).saturating_sub(pt)..((last - 1) * s + k - pt).min(h);
            let (dw_input, row0) = match &self.expand {
                None => (input, 0),
                Some(e) => {
                    let win = window.prefix(need.len().max(held.len()) * row);
                    let kept = need.start..held.end.max(need.start);
                    if !kept.is_empty() {
                        let from = kept.start - held.start;
                        win.copy_within(from * row..(from + kept.len()) * row, 0);
                    }
                    let win = &mut win[..need.len() * row];
                    let fresh = kept.end..need.end;
                    pointwise(
                        e,
                        &input[fresh.start * w * c_in..fresh.end * w * c_in],
                        fresh.len() * w,
                        None,
                        true,
                        &mut win[kept.len() * row..],
                        bf16,
                    );
                    held = need.clone();
                    (&*win, need.start)
                }
            };
            let geometry = Geometry {
                h,
                w,
                pad: (pt, pl),
                rows: first..last,
                ow,
                row0,
            };
            let at = first * ow * c_out..last * ow * c_out;
            let skip = self.residual.then(|| &input[at.clone()]);
            let buffers = (&mut *depthwise, &mut *rounded, &mut *bf16);
            let maps = std::iter::once(dw_input);
            self.depthwise_project::<FMA>(maps, &geometry, skip, &mut out[at], buffers, wide);
        }
    }

    /// The depthwise layer on each of `maps` (the input rows `geometry` reads, from its
    /// `row0`), then the projection (with the `skip` rows) on all their outputs at once into
    /// `out`: one product for the maps' `geometry.rows` of output rows each. `depthwise`
    /// holds the depthwise outputs, or, on the packed bf16 kernels, `rounded` holds them
    /// rounded to bfloat16 by the row kernel itself, so the projection's input is never stored
    /// in f32 and converted again (7-8% of the bf16 pass at 224 px went to that conversion).
    #[inline(always)]
    fn depthwise_project<'a, const FMA: bool>(
        &self,
        maps: impl ExactSizeIterator<Item = &'a [f32]>,
        geometry: &Geometry,
        skip: Option<&[f32]>,
        out: &mut [f32],
        (depthwise, rounded, bf16): (&mut Aligned<f32>, &mut Aligned<u16>, &mut Bf16Scratch),
        wide: bool,
    ) {
        let dw = &self.depthwise;
        let mid = dw.channels;
        let per_map = geometry.rows.len() * geometry.ow;
        let m = maps.len() * per_map;
        let packed = self
            .project
            .bf16
            .as_ref()
            .filter(|_| row_kernel(wide, dw.kernel, dw.stride));
        match packed.and_then(|p| p.rounded_rows(m).map(|r| (p, r))) {
            Some((weights, (width, padded))) => {
                let rows = rounded.prefix(padded * width);
                for (map, rows) in maps.zip(rows.chunks_exact_mut(per_map * width)) {
                    let sink = DwOut::Bf16 { rows, width };
                    depthwise_rows::<FMA>(dw, map, geometry, sink, wide);
                }
                let start = Start {
                    bias: &self.project.bias,
                    skip,
                };
                let rows = &rounded[..padded * width];
                bf16::matmul_rounded(rows, m, weights, start, out, false, bf16);
            }
            None => {
                let band = depthwise.prefix(m * mid);
                for (map, band) in maps.zip(band.chunks_exact_mut(per_map * mid)) {
                    depthwise_rows::<FMA>(dw, map, geometry, DwOut::F32(band), wide);
                }
                pointwise(&self.project, band, m, skip, false, out, bf16);
            }
        }
    }

    /// The block on `images` maps of `[h, w, c_in]` one after the other in `input`, whole (no
    /// bands), into `out` (`images` maps of `[oh, ow, c_out]`): the expansion and the
    /// projection each run as one product over all the images' pixels; the depthwise layer
    /// runs on each image. Every output sums the same terms in the same order as
    /// [`Block::run`] on each image.
    #[inline(always)]
    fn run_stacked<const FMA: bool>(
        &self,
        input: &[f32],
        images: usize,
        (h, w): (usize, usize),
        out: &mut [f32],
        buffers: Band<'_>,
        wide: bool,
    ) {
        let Band {
            window,
            depthwise,
            rounded,
            bf16,
        } = buffers;
        let dw = &self.depthwise;
        let (k, s, mid) = (dw.kernel, dw.stride, dw.channels);
        let pixels = h * w;
        let (oh, ow) = self.out_size(h, w);
        let expanded: &[f32] = match &self.expand {
            None => input,
            Some(e) => {
                let win = window.prefix(images * pixels * mid);
                pointwise(e, input, images * pixels, None, true, win, bf16);
                win
            }
        };
        let geometry = Geometry {
            h,
            w,
            pad: (tf_same_padding(h, k, s).0, tf_same_padding(w, k, s).0),
            rows: 0..oh,
            ow,
            row0: 0,
        };
        let maps = expanded.chunks_exact(pixels * mid).take(images);
        let skip = self.residual.then_some(input);
        let buffers = (depthwise, rounded, bf16);
        self.depthwise_project::<FMA>(maps, &geometry, skip, out, buffers, wide);
    }
}

/// The planar `[3, h, w]` image on the `0..=255` scale as NHWC `[h, w, 3]`, each value `(x -
/// 127) / 128`; `wide`: on the AVX-512 kernels, 16 pixels at a time.
fn normalized_nhwc(planar: &[f32], out: &mut [f32], wide: bool) {
    let plane = planar.len() / 3;
    debug_assert_eq!(out.len(), plane * 3);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if wide {
        // SAFETY: `wide` is only true where the AVX-512 kernels run; the lengths were checked.
        done = unsafe { normalized_nhwc_wide(planar, out) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = wide;
    for p in done..plane {
        for c in 0..3 {
            out[p * 3 + c] = (planar[c * plane + p] - 127.0) / 128.0;
        }
    }
}

/// [`normalized_nhwc`] on whole groups of 16 pixels: the three planes' vectors, normalised
/// (a division by 128 is the multiplication by its exact inverse), are interleaved by two
/// permutations per output vector. Returns the pixels done.
///
/// # Safety
/// AVX-512F; `out` holds three values for each pixel of `planar`'s planes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn normalized_nhwc_wide(planar: &[f32], out: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let plane = planar.len() / 3;
    // Output lane j of vector v holds pixel (16 v + j) / 3's channel (16 v + j) % 3: first the
    // red and green lanes from (red, green), then the blue ones from (that, blue).
    let index = |v: usize, blue: bool| {
        let lanes: [i32; LANES] = std::array::from_fn(|j| {
            let (pixel, channel) = ((16 * v + j) / 3, (16 * v + j) % 3);
            match (blue, channel) {
                (false, 0) | (true, 2) => pixel as i32 + if blue { 16 } else { 0 },
                (false, 1) => pixel as i32 + 16,
                (false, _) => 0,
                (true, _) => j as i32,
            }
        });
        // SAFETY: `lanes` is 16 i32s.
        unsafe { _mm512_loadu_si512(lanes.as_ptr().cast()) }
    };
    let first: [__m512i; 3] = std::array::from_fn(|v| index(v, false));
    let second: [__m512i; 3] = std::array::from_fn(|v| index(v, true));
    let (shift, scale) = (_mm512_set1_ps(127.0), _mm512_set1_ps(1.0 / 128.0));
    let groups = plane / LANES;
    for g in 0..groups {
        let p = g * LANES;
        // SAFETY: 16 values of each plane from `p`, 48 of `out` from `3 p`.
        unsafe {
            let [r, gr, b] = [0, 1, 2].map(|c| {
                let x = _mm512_loadu_ps(planar.as_ptr().add(c * plane + p));
                _mm512_mul_ps(_mm512_sub_ps(x, shift), scale)
            });
            for v in 0..3 {
                let rg = _mm512_permutex2var_ps(r, first[v], gr);
                let rgb = _mm512_permutex2var_ps(rg, second[v], b);
                _mm512_storeu_ps(out.as_mut_ptr().add(3 * p + LANES * v), rgb);
            }
        }
    }
    groups * LANES
}

#[inline(always)]
fn relu6(x: f32) -> f32 {
    // Written with comparisons (not f32::max/min) so it compiles to plain vector max/min.
    let x = if x > 0.0 { x } else { 0.0 };
    if x < 6.0 { x } else { 6.0 }
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, acc: f32) -> f32 {
    if FMA { a.mul_add(b, acc) } else { a * b + acc }
}

/// `out = input x weight + bias (+ skip)`, optionally ReLU6, `[m, c_in] -> [m, c_out]`, one
/// tile of rows at a time so the epilogue runs while the tile is in cache.
#[inline(always)]
fn pointwise(
    pw: &Pointwise,
    input: &[f32],
    m: usize,
    skip: Option<&[f32]>,
    relu: bool,
    out: &mut [f32],
    bf16: &mut Bf16Scratch,
) {
    let (k, n) = (pw.c_in, pw.c_out);
    debug_assert_eq!(out.len(), m * n);
    let tile = (TILE_VALUES / n).clamp(16, m.max(16));
    for start in (0..m).step_by(tile) {
        let rows = tile.min(m - start);
        let dst = &mut out[start * n..(start + rows) * n];
        let terms = Start {
            bias: &pw.bias,
            skip: skip.map(|s| &s[start * n..(start + rows) * n]),
        };
        let lhs = &input[start * k..(start + rows) * k];
        if let Some(weights) = &pw.bf16 {
            super::bf16::matmul(lhs, rows, weights, terms, dst, relu, bf16);
            continue;
        }
        if let Some(weights) = pw.packed.as_ref().filter(|_| sums_as_gemm(rows, k, n)) {
            super::fp32::matmul(lhs, rows, weights, terms, dst, relu);
            continue;
        }
        terms.write(dst);
        super::matmul_acc(rows, k, n, lhs, &pw.weight, dst);
        if relu {
            for d in dst.iter_mut() {
                *d = relu6(*d);
            }
        }
    }
}

/// The stem on a `[h, w, 3]` image: 3x3 stride 2, SAME padding, bias, ReLU6 -> `[oh, ow, 32]`.
#[inline(always)]
fn stem<const FMA: bool>(
    st: &Stem,
    input: &[f32],
    h: usize,
    w: usize,
    out: &mut Aligned<f32>,
    wide: bool,
) -> (usize, usize) {
    let (pt, _) = tf_same_padding(h, 3, 2);
    let (pl, _) = tf_same_padding(w, 3, 2);
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    let out = out.prefix(oh * ow * STEM_OUT);
    for oy in 0..oh {
        let rows_inside = oy * 2 >= pt && oy * 2 - pt + 3 <= h;
        let mut ox = 0;
        while ox < ow {
            #[cfg(target_arch = "x86_64")]
            if wide {
                let valid = WIDE_PIXELS.min(ow - ox);
                let group_inside = rows_inside
                    && valid == WIDE_PIXELS
                    && ox * 2 >= pl
                    && (ox + WIDE_PIXELS - 1) * 2 - pl + 3 <= w;
                let kernel = if group_inside {
                    stem_wide::<false>
                } else {
                    stem_wide::<true>
                };
                let origin = (
                    (oy * 2) as isize - pt as isize,
                    (ox * 2) as isize - pl as isize,
                );
                // SAFETY: `wide` is only set where `wide_kernels` found AVX-512; the interior
                // form gets only groups whose taps lie inside `input` (`group_inside`), the
                // border form checks every tap.
                unsafe { kernel(st, input, (h, w), origin, out, (oy * ow + ox, valid)) };
                ox += valid;
                continue;
            }
            let mut acc = [0.0f32; STEM_OUT];
            acc.copy_from_slice(&st.bias);
            for ky in 0..3 {
                let Some(iy) = (oy * 2 + ky).checked_sub(pt).filter(|&y| y < h) else {
                    continue;
                };
                for kx in 0..3 {
                    let Some(ix) = (ox * 2 + kx).checked_sub(pl).filter(|&x| x < w) else {
                        continue;
                    };
                    let px = &input[(iy * w + ix) * 3..][..3];
                    for (ci, &v) in px.iter().enumerate() {
                        let wv: &[f32; STEM_OUT] = st.weight[((ky * 3 + kx) * 3 + ci) * STEM_OUT..]
                            [..STEM_OUT]
                            .try_into()
                            .expect("STEM_OUT weights");
                        for j in 0..STEM_OUT {
                            acc[j] = madd::<FMA>(v, wv[j], acc[j]);
                        }
                    }
                }
            }
            let dst = &mut out[(oy * ow + ox) * STEM_OUT..][..STEM_OUT];
            for (d, a) in dst.iter_mut().zip(acc) {
                *d = relu6(a);
            }
            ox += 1;
        }
    }
    (oh, ow)
}

/// The stem for [`WIDE_PIXELS`] adjacent output pixels, the first one's top-left tap at input
/// pixel `(iy0, ix0)` (outside the image where it lies in the padding), its output index
/// `first`, of which the first `valid` are stored: 16 accumulators in AVX-512 registers
/// (written with intrinsics: in plain arrays the compiler kept them in memory), each summing
/// the same taps in the same order with the same fused multiply-add as the per-pixel path, so
/// the outputs are bit for bit the same. The `BORDER` form takes the groups whose taps cross
/// the border, and a row's last group of fewer pixels: it skips the taps outside the image, as
/// the per-pixel path does (at 96 px 424 of the 2,304 outputs, which took that path one at a
/// time).
///
/// # Safety
/// AVX-512F; without `BORDER`, the group's taps lie inside `input` (`(h, w)` pixels) and
/// `valid` is `WIDE_PIXELS`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn stem_wide<const BORDER: bool>(
    st: &Stem,
    input: &[f32],
    (h, w): (usize, usize),
    (iy0, ix0): (isize, isize),
    out: &mut [f32],
    (first, valid): (usize, usize),
) {
    use std::arch::x86_64::*;
    const HALF: usize = STEM_OUT / 2;
    // The taps inside the image along one axis, for a tap origin `o`.
    let inside = |o: isize, side: usize| {
        let from = o.clamp(-3, 0).unsigned_abs();
        let to = (side as isize - o).clamp(0, 3) as usize;
        from..to.max(from)
    };
    let rows = inside(iy0, h);
    let cols: [std::ops::Range<usize>; WIDE_PIXELS] = std::array::from_fn(|p| {
        if p < valid {
            inside(ix0 + 2 * p as isize, w)
        } else {
            0..0
        }
    });
    assert!(
        BORDER || (rows == (0..3) && valid == WIDE_PIXELS && cols.iter().all(|c| *c == (0..3))),
        "interior group crosses the border"
    );
    assert!(valid <= WIDE_PIXELS, "at most {WIDE_PIXELS} outputs");
    assert!(input.len() >= h * w * 3, "input pixels");
    assert!((first + valid) * STEM_OUT <= out.len(), "output pixels");
    // SAFETY: the taps read are inside the image (`rows`, `cols`), whose `h * w` pixels
    // `input` holds; the weights are [27, 32] and the bias [32]; the `valid` outputs lie in
    // `out`.
    unsafe {
        let bias = [
            _mm512_loadu_ps(st.bias.as_ptr()),
            _mm512_loadu_ps(st.bias.as_ptr().add(HALF)),
        ];
        let mut acc = [bias; WIDE_PIXELS];
        for ky in rows {
            let iy = (iy0 + ky as isize) as usize;
            for kx in 0..3 {
                for ci in 0..3 {
                    let t = st.weight.as_ptr().add(((ky * 3 + kx) * 3 + ci) * STEM_OUT);
                    let wv = [_mm512_loadu_ps(t), _mm512_loadu_ps(t.add(HALF))];
                    for (p, acc) in acc.iter_mut().enumerate() {
                        if BORDER && !cols[p].contains(&kx) {
                            continue;
                        }
                        let ix = (ix0 + (2 * p + kx) as isize) as usize;
                        let x = _mm512_set1_ps(*input.as_ptr().add((iy * w + ix) * 3 + ci));
                        acc[0] = _mm512_fmadd_ps(x, wv[0], acc[0]);
                        acc[1] = _mm512_fmadd_ps(x, wv[1], acc[1]);
                    }
                }
            }
        }
        for (p, acc) in acc.iter().enumerate().take(valid) {
            for (half, &v) in acc.iter().enumerate() {
                let v = super::tiles::relu6(v);
                _mm512_storeu_ps(
                    out.as_mut_ptr().add((first + p) * STEM_OUT + half * HALF),
                    v,
                );
            }
        }
    }
}

/// A depthwise convolution with SAME padding, bias and ReLU6 on `[h, w, c]` -> `[oh, ow, c]`,
/// the whole map at once (the network runs it in bands, [`Block::run`]). The padding is never
/// materialised: taps outside the input are skipped, or multiplied as zeros by the row
/// kernel's border form (a zero-padded copy of the input measured slower).
#[cfg(test)]
fn depthwise<const FMA: bool>(
    dw: &Depthwise,
    input: &[f32],
    h: usize,
    w: usize,
    out: &mut Aligned<f32>,
    wide: bool,
) -> (usize, usize) {
    let (k, s, c) = (dw.kernel, dw.stride, dw.channels);
    debug_assert_eq!(c % LANES, 0);
    let (pt, _) = tf_same_padding(h, k, s);
    let (pl, _) = tf_same_padding(w, k, s);
    let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
    let out = out.prefix(oh * ow * c);
    let geometry = Geometry {
        h,
        w,
        pad: (pt, pl),
        rows: 0..oh,
        ow,
        row0: 0,
    };
    depthwise_rows::<FMA>(dw, input, &geometry, DwOut::F32(out), wide);
    (oh, ow)
}

/// Where a band of a depthwise layer lies: the whole input's `h x w` and (top, left) zero
/// padding, the output rows the band computes (`ow` pixels each; its output slice starts at
/// the first), and the first input row its input slice holds (it holds every row the band's
/// taps read inside the input).
struct Geometry {
    h: usize,
    w: usize,
    pad: (usize, usize),
    rows: std::ops::Range<usize>,
    ow: usize,
    row0: usize,
}

/// Where a band's depthwise outputs go: `f32` pixels of the layer's channels, or (on the
/// AVX-512 row kernel only) rows of `width` bfloat16 values for the packed bf16 products, the
/// channels rounded as those products round their input ([`bf16::matmul_rounded`]), then
/// zeros to the row's end, as [`bf16::matmul`] pads its rows (the weights there are zero too,
/// so only a NaN left there by an earlier layer would show). The row kernel writes them with
/// the channels: a loop of its own over the rows cost about 2% of the bf16 pass at 96 px
/// (2,294 against 2,351 images/s, one thread, means of four alternated runs).
enum DwOut<'a> {
    F32(&'a mut [f32]),
    Bf16 { rows: &'a mut [u16], width: usize },
}

/// Whether [`depthwise_rows`] takes the AVX-512 row kernel for a `k x k` kernel at `stride`
/// (`wide`: this process runs the AVX-512 kernels).
fn row_kernel(wide: bool, k: usize, stride: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    return wide && wide_kernel(k, stride, false, WIDE_PIXELS, false).is_some();
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (wide, k, stride);
        false
    }
}

/// The depthwise loop over output rows. With `wide`, every row runs in groups of
/// [`WIDE_PIXELS`] on the AVX-512 row kernel ([`depthwise_wide`]): its interior form where all
/// of a full group's taps lie inside the input, its border form elsewhere (a row's last,
/// shorter group, and groups whose taps cross the border). Otherwise groups of [`PIXELS`]
/// interior pixels run on the vectorised path and the other pixels one at a time
/// ([`depthwise_pixel`], bounds-checked). `g` says which rows, and where they lie.
#[inline(always)]
fn depthwise_rows<const FMA: bool>(
    dw: &Depthwise,
    input: &[f32],
    g: &Geometry,
    mut out: DwOut<'_>,
    wide: bool,
) {
    let (k, s) = (dw.kernel, dw.stride);
    let Geometry {
        h,
        w,
        pad: (pt, pl),
        ow,
        row0,
        ..
    } = *g;
    #[cfg(target_arch = "x86_64")]
    if wide && let Some(forms) = WideForms::of(k, s, (w, ow), &out) {
        let span = (WIDE_PIXELS - 1) * s + k;
        for oy in g.rows.clone() {
            let iy0 = (oy * s) as isize - pt as isize;
            let rows_inside = iy0 >= 0 && iy0 as usize + k <= h;
            let mut ox = 0;
            while ox < ow {
                let valid = WIDE_PIXELS.min(ow - ox);
                let ix0 = (ox * s) as isize - pl as isize;
                let inside =
                    rows_inside && valid == WIDE_PIXELS && ix0 >= 0 && ix0 as usize + span <= w;
                let kernel = if inside {
                    forms.interior
                } else if valid == WIDE_PIXELS {
                    forms.border
                } else {
                    forms.last
                };
                let first = (oy - g.rows.start) * ow + ox;
                // SAFETY: `wide` is only set where `wide_kernels` found AVX-512; the interior
                // form gets only groups whose taps lie inside the input (`inside`), the border
                // form checks every tap; the `valid` outputs from `first` lie in `out`.
                unsafe {
                    kernel(
                        dw,
                        input,
                        (h, w, row0),
                        (iy0, ix0),
                        &mut out,
                        (first, valid),
                    );
                }
                ox += valid;
            }
        }
        return;
    }
    let DwOut::F32(out) = out else {
        panic!("bf16 depthwise outputs need the AVX-512 row kernel");
    };
    for oy in g.rows.clone() {
        let rows_inside = oy * s >= pt && oy * s - pt + k <= h;
        let mut ox = 0;
        while ox < ow {
            let inside = |pixels: usize| {
                rows_inside
                    && ox + pixels <= ow
                    && ox * s >= pl
                    && ox * s - pl + (pixels - 1) * s + k <= w
            };
            let first = (oy - g.rows.start) * ow + ox;
            if inside(PIXELS) {
                let at = (oy * s - pt - row0, ox * s - pl);
                depthwise_interior::<PIXELS, FMA>(dw, input, w, at, out, first);
                ox += PIXELS;
            } else {
                depthwise_pixel::<FMA>(dw, input, g, (oy, ox), out, first);
                ox += 1;
            }
        }
    }
}

/// Whether the depthwise layers and the stem take their AVX-512 kernels ([`depthwise_wide`],
/// [`stem_wide`]): on the fused-multiply-add path when this process runs at the AVX-512 level.
fn wide_kernels<const FMA: bool>() -> bool {
    cfg!(target_arch = "x86_64") && FMA && level() == Level::Avx512
}

/// One call of [`depthwise_wide`]: the layer, its input, the whole input's `(h, w)` with the
/// first row the input slice holds, the first output's top-left tap (outside the input where
/// it lies in the padding), and the first output's index with the number of outputs to store.
#[cfg(target_arch = "x86_64")]
type WideKernel = unsafe fn(
    &Depthwise,
    &[f32],
    (usize, usize, usize),
    (isize, isize),
    &mut DwOut<'_>,
    (usize, usize),
);

/// The forms of [`depthwise_wide`] that one layer's rows take: groups of [`WIDE_PIXELS`]
/// inside the input, such groups that cross its border, and a row's last group where the row
/// has `ow % WIDE_PIXELS` pixels left (the whole row where it is narrower than a group).
#[cfg(target_arch = "x86_64")]
struct WideForms {
    interior: WideKernel,
    border: WideKernel,
    last: WideKernel,
}

#[cfg(target_arch = "x86_64")]
impl WideForms {
    /// The forms for a `k x k` kernel at `stride` on rows of `ow` outputs into `out`, if the
    /// row kernel has that kernel. Rows of bfloat16 round with `vcvtneps2bf16` where the CPU
    /// has it ([`depthwise_wide_bf16`]).
    fn of(k: usize, stride: usize, (w, ow): (usize, usize), out: &DwOut<'_>) -> Option<Self> {
        let native = matches!(out, DwOut::Bf16 { .. }) && bf16::dot_product_instructions();
        let form = |border, pixels| wide_kernel(k, stride, border, pixels, native);
        Some(Self {
            interior: form(false, WIDE_PIXELS)?,
            border: form(true, WIDE_PIXELS)?,
            last: narrow_kernel(k, stride, w, native).or_else(|| form(true, ow % WIDE_PIXELS))?,
        })
    }
}

/// The narrow-map form of [`depthwise_wide`] (or, with `native_bf16`,
/// [`depthwise_wide_bf16`]) for a `k x k` kernel at `stride` on a map `w` wide, if it has that
/// form: a row of 1 to 7 outputs is one group, on maps of 1 to 7 pixels at stride 1 and of 2
/// to 14 (even) at stride 2.
#[cfg(target_arch = "x86_64")]
fn narrow_kernel(k: usize, stride: usize, w: usize, native_bf16: bool) -> Option<WideKernel> {
    fn pick<const K: usize, const S: usize, const W: usize, const P: usize>(
        native_bf16: bool,
    ) -> WideKernel {
        if native_bf16 {
            depthwise_wide_bf16::<K, S, true, P, W>
        } else {
            depthwise_wide::<K, S, true, P, W>
        }
    }
    fn form<const K: usize>(stride: usize, w: usize, native: bool) -> Option<WideKernel> {
        Some(match (stride, w) {
            (1, 1) => pick::<K, 1, 1, 1>(native),
            (1, 2) => pick::<K, 1, 2, 2>(native),
            (1, 3) => pick::<K, 1, 3, 3>(native),
            (1, 4) => pick::<K, 1, 4, 4>(native),
            (1, 5) => pick::<K, 1, 5, 5>(native),
            (1, 6) => pick::<K, 1, 6, 6>(native),
            (1, 7) => pick::<K, 1, 7, 7>(native),
            (2, 2) => pick::<K, 2, 2, 1>(native),
            (2, 4) => pick::<K, 2, 4, 2>(native),
            (2, 6) => pick::<K, 2, 6, 3>(native),
            (2, 8) => pick::<K, 2, 8, 4>(native),
            (2, 10) => pick::<K, 2, 10, 5>(native),
            (2, 12) => pick::<K, 2, 12, 6>(native),
            (2, 14) => pick::<K, 2, 14, 7>(native),
            _ => return None,
        })
    }
    match k {
        3 => form::<3>(stride, w, native_bf16),
        5 => form::<5>(stride, w, native_bf16),
        _ => None,
    }
}

/// The form of [`depthwise_wide`] (or, with `native_bf16`, [`depthwise_wide_bf16`]) for a `k
/// x k` kernel at `stride`, groups of `pixels` (1 to [`WIDE_PIXELS`]; a `border` form only,
/// the interior form takes [`WIDE_PIXELS`]), if the row kernel has that kernel.
#[cfg(target_arch = "x86_64")]
fn wide_kernel(
    k: usize,
    stride: usize,
    border: bool,
    pixels: usize,
    native_bf16: bool,
) -> Option<WideKernel> {
    fn pick<const K: usize, const S: usize, const BORDER: bool, const P: usize>(
        native_bf16: bool,
    ) -> WideKernel {
        if native_bf16 {
            depthwise_wide_bf16::<K, S, BORDER, P, 0>
        } else {
            depthwise_wide::<K, S, BORDER, P, 0>
        }
    }
    fn form<const K: usize, const S: usize>(border: bool, p: usize, native: bool) -> WideKernel {
        match (border, p) {
            (true, 1) => pick::<K, S, true, 1>(native),
            (true, 2) => pick::<K, S, true, 2>(native),
            (true, 3) => pick::<K, S, true, 3>(native),
            (true, 4) => pick::<K, S, true, 4>(native),
            (true, 5) => pick::<K, S, true, 5>(native),
            (true, 6) => pick::<K, S, true, 6>(native),
            (true, 7) => pick::<K, S, true, 7>(native),
            (true, _) => pick::<K, S, true, WIDE_PIXELS>(native),
            (false, _) => pick::<K, S, false, WIDE_PIXELS>(native),
        }
    }
    Some(match (k, stride) {
        (3, 1) => form::<3, 1>(border, pixels, native_bf16),
        (3, 2) => form::<3, 2>(border, pixels, native_bf16),
        (5, 1) => form::<5, 1>(border, pixels, native_bf16),
        (5, 2) => form::<5, 2>(border, pixels, native_bf16),
        _ => return None,
    })
}

/// `P` (at most [`WIDE_PIXELS`]) horizontally adjacent output pixels on AVX-512 registers, of
/// which the first `valid` are stored from output index `first`; the first one's top-left tap
/// is input pixel `(iy0, ix0)` of the `(h, w)` input, whose rows `input` holds from row
/// `row0`. For each kernel row the input vectors the outputs share (`(P - 1) * S + K` of them)
/// and the `K` weights are loaded once, where [`depthwise_interior`] loads one input per tap
/// and output: about half the loads for the same multiply-adds. Each output sums the same terms in the same order (the bias, then the taps
/// row by row, one fused multiply-add each) and clamps the same way as the FMA path, so the
/// result is bit for bit [`depthwise_interior`]'s and [`depthwise_pixel`]'s.
///
/// The `BORDER` form takes groups whose taps cross the border, and a row's last group of fewer
/// than `WIDE_PIXELS`: it skips the kernel rows outside the input, as [`depthwise_pixel`]
/// does, and multiplies zeros for the columns outside it. A multiply-add of a zero leaves its
/// sum as it was (up to the sign of a zero sum, which the ReLU6 makes 0 either way), so the
/// outputs are still those of the per-pixel path, which skips those taps. Before it, pixels
/// near the border took that path one at a time: most of the pixels of the 7 x 7 and 14 x 14
/// maps.
///
/// `P` below [`WIDE_PIXELS`] takes a row's last, shorter group without idle accumulators (a
/// row of 12 runs as 8 + 4, not as 8 + 8 with four outputs dropped). A `W` other than 0 is the
/// narrow-map form ([`narrow_kernel`]): the map is `W` wide and the group is its whole row, so
/// which columns lie inside is known when it compiles, and the taps outside are skipped, not
/// multiplied by zeros (on the 3 x 3 map a 5 x 5 kernel row has 9 taps inside, of the 40 that a
/// group of 8 multiplies). These two and the rounding of [`depthwise_wide_bf16`] took Lite0's
/// 3 x 3 layer of 5 x 5 kernels from 77 to 30 ms per 3,200 images at 96 px (one thread, bf16),
/// and its 6 x 6 layer of 672 channels from 82 to 48 ms.
///
/// Outputs to rows of bfloat16 round with AVX-512F alone ([`clamped_to_bf16`]).
///
/// # Safety
/// The CPU has AVX-512F (the function checks every bound it relies on).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn depthwise_wide<
    const K: usize,
    const S: usize,
    const BORDER: bool,
    const P: usize,
    const W: usize,
>(
    dw: &Depthwise,
    input: &[f32],
    (h, w, row0): (usize, usize, usize),
    (iy0, ix0): (isize, isize),
    out: &mut DwOut<'_>,
    (first, valid): (usize, usize),
) {
    // SAFETY: the caller's.
    unsafe {
        depthwise_group::<K, S, BORDER, P, false, W>(
            dw,
            input,
            (h, w, row0),
            (iy0, ix0),
            out,
            (first, valid),
        );
    }
}

/// [`depthwise_wide`] on a CPU with AVX512_BF16: outputs to rows of bfloat16 round with
/// `vcvtneps2bf16`, one instruction where [`clamped_to_bf16`] takes seven (beside nine
/// multiply-adds on a 3 x 3 kernel). Bit for bit the same; 3-5% of the bf16 pass at 96 px.
///
/// # Safety
/// As [`depthwise_wide`], and the CPU has AVX512_BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn depthwise_wide_bf16<
    const K: usize,
    const S: usize,
    const BORDER: bool,
    const P: usize,
    const W: usize,
>(
    dw: &Depthwise,
    input: &[f32],
    (h, w, row0): (usize, usize, usize),
    (iy0, ix0): (isize, isize),
    out: &mut DwOut<'_>,
    (first, valid): (usize, usize),
) {
    // SAFETY: the caller's.
    unsafe {
        depthwise_group::<K, S, BORDER, P, true, W>(
            dw,
            input,
            (h, w, row0),
            (iy0, ix0),
            out,
            (first, valid),
        );
    }
}

/// The body of [`depthwise_wide`] and [`depthwise_wide_bf16`] (`NATIVE_BF16`), inlined into
/// each so that it compiles for its features.
///
/// # Safety
/// As theirs.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn depthwise_group<
    const K: usize,
    const S: usize,
    const BORDER: bool,
    const P: usize,
    const NATIVE_BF16: bool,
    const W: usize,
>(
    dw: &Depthwise,
    input: &[f32],
    (h, w, row0): (usize, usize, usize),
    (iy0, ix0): (isize, isize),
    out: &mut DwOut<'_>,
    (first, valid): (usize, usize),
) {
    use std::arch::x86_64::{
        __m512, _mm256_setzero_si256, _mm256_storeu_si256, _mm512_fmadd_ps, _mm512_loadu_ps,
        _mm512_setzero_ps, _mm512_storeu_ps,
    };
    const { assert!(P <= WIDE_PIXELS) };
    let c = dw.channels;
    let span = (P - 1) * S + K;
    // The kernel rows and the span's columns that lie inside the input.
    let inside = |origin: isize, side: usize, len: usize| {
        let from = origin.clamp(-(len as isize), 0).unsigned_abs();
        let to = (side as isize - origin).clamp(0, len as isize) as usize;
        from..to
    };
    let (rows, cols) = (inside(iy0, h, K), inside(ix0, w, span));
    assert!(
        BORDER || (rows == (0..K) && cols == (0..span) && valid == P),
        "interior group crosses the border"
    );
    // On a map `W` wide ([`narrow_kernel`]) the columns inside are known when this compiles,
    // and the taps outside are skipped, not multiplied by zeros.
    let cols = if W > 0 {
        let left = ((P - 1) * S + K).saturating_sub(W) / 2;
        assert!(cols == (left..left + W), "not a row of a map {W} wide");
        left..left + W
    } else {
        cols
    };
    assert!(valid <= P, "at most {P} outputs");
    // The input rows the taps read, from the slice's first.
    let read = rows.start as isize + iy0 - row0 as isize..rows.end as isize + iy0 - row0 as isize;
    assert!(
        rows.is_empty() || (read.start >= 0 && read.end as usize * w * c <= input.len()),
        "input rows"
    );
    match out {
        DwOut::F32(out) => assert!((first + valid) * c <= out.len(), "output pixels"),
        DwOut::Bf16 { rows, width } => assert!(
            c <= *width
                && (*width - c).is_multiple_of(LANES)
                && (first + valid) * *width <= rows.len(),
            "output rows"
        ),
    }
    assert!(
        dw.weight.len() >= K * K * c && dw.bias.len() >= c,
        "weights"
    );
    if let DwOut::Bf16 { rows, width } = out {
        for p in 0..valid {
            for at in (c..*width).step_by(LANES) {
                // SAFETY: the row's `width` values lie inside `rows` (asserted), and `width -
                // c` is a multiple of 16 (asserted); the caller has AVX-512F.
                unsafe {
                    let at = rows.as_mut_ptr().add((first + p) * *width + at);
                    _mm256_storeu_si256(at.cast(), _mm256_setzero_si256());
                }
            }
        }
    }
    for cb in (0..c).step_by(LANES) {
        // SAFETY (loads and stores): the caller has AVX-512F (and AVX512_BF16 where
        // `NATIVE_BF16`); rows in `rows` and columns in `cols` lie inside the input slice
        // (asserted); the `valid` outputs inside `out`; cb + LANES <= c.
        unsafe {
            let zero = _mm512_setzero_ps();
            let mut acc = [_mm512_loadu_ps(dw.bias.as_ptr().add(cb)); P];
            for ky in 0..K {
                if BORDER && !rows.contains(&ky) {
                    continue;
                }
                let iy = (iy0 + ky as isize) as usize - row0;
                let mut x: [__m512; (WIDE_PIXELS - 1) * 2 + 5] = [zero; (WIDE_PIXELS - 1) * 2 + 5];
                for (j, v) in x.iter_mut().enumerate().take(span) {
                    if !BORDER || cols.contains(&j) {
                        let ix = ix0 + j as isize;
                        *v = _mm512_loadu_ps(input.as_ptr().add((iy * w + ix as usize) * c + cb));
                    }
                }
                for kx in 0..K {
                    let wv = _mm512_loadu_ps(dw.weight.as_ptr().add((ky * K + kx) * c + cb));
                    for (p, a) in acc.iter_mut().enumerate() {
                        if W == 0 || cols.contains(&(p * S + kx)) {
                            *a = _mm512_fmadd_ps(x[p * S + kx], wv, *a);
                        }
                    }
                }
            }
            for (p, a) in acc.iter().enumerate().take(valid) {
                let v = super::tiles::relu6(*a);
                match out {
                    DwOut::F32(out) => {
                        _mm512_storeu_ps(out.as_mut_ptr().add((first + p) * c + cb), v);
                    }
                    DwOut::Bf16 { rows, width } => {
                        let at = rows.as_mut_ptr().add((first + p) * *width + cb);
                        let rounded = if NATIVE_BF16 {
                            bf16::rounded_lanes(v)
                        } else {
                            clamped_to_bf16(v)
                        };
                        _mm256_storeu_si256(at.cast(), rounded);
                    }
                }
            }
        }
    }
}

/// Sixteen outputs of ReLU6 (no NaN, none negative) rounded to bfloat16 as `vcvtneps2bf16`
/// rounds them, to nearest even with subnormals to zero ([`bf16::to_bf16`]), with AVX-512F
/// alone (the row kernel also runs where AVX512_BF16 is missing).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn clamped_to_bf16(v: std::arch::x86_64::__m512) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let bits = _mm512_castps_si512(v);
    let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
    let up = _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    let normal = _mm512_cmpge_epu32_mask(bits, _mm512_set1_epi32(0x0080_0000));
    _mm512_cvtepi32_epi16(_mm512_maskz_srli_epi32::<16>(normal, up))
}

fn lanes(v: &[f32], at: usize) -> [f32; LANES] {
    v[at..at + LANES].try_into().expect("LANES values")
}

/// `P` horizontally adjacent output pixels whose taps all lie inside the input; the first
/// one's top-left tap is input pixel `(iy0, ix0)`, its output index `first`.
#[inline(always)]
fn depthwise_interior<const P: usize, const FMA: bool>(
    dw: &Depthwise,
    input: &[f32],
    w: usize,
    (iy0, ix0): (usize, usize),
    out: &mut [f32],
    first: usize,
) {
    let (k, s, c) = (dw.kernel, dw.stride, dw.channels);
    for cb in (0..c).step_by(LANES) {
        let mut acc = [lanes(&dw.bias, cb); P];
        for ky in 0..k {
            let row = (iy0 + ky) * w + ix0;
            for kx in 0..k {
                let wv = lanes(&dw.weight, (ky * k + kx) * c + cb);
                for (p, acc) in acc.iter_mut().enumerate() {
                    let iv = lanes(input, (row + p * s + kx) * c + cb);
                    for j in 0..LANES {
                        acc[j] = madd::<FMA>(iv[j], wv[j], acc[j]);
                    }
                }
            }
        }
        for (p, acc) in acc.iter().enumerate() {
            let dst = &mut out[(first + p) * c + cb..][..LANES];
            for (d, &a) in dst.iter_mut().zip(acc) {
                *d = relu6(a);
            }
        }
    }
}

/// One output pixel `(oy, ox)` on its own: next to the border, taps outside the input are
/// skipped (zero padding). Its taps are listed once; then [`CHANNEL_GROUP`] channel blocks at
/// a time run as independent chains (one block alone would wait on each multiply-add's
/// latency), each summing the same taps in the same order as the other paths.
#[inline(always)]
fn depthwise_pixel<const FMA: bool>(
    dw: &Depthwise,
    input: &[f32],
    g: &Geometry,
    (oy, ox): (usize, usize),
    out: &mut [f32],
    at: usize,
) {
    let (k, s, c) = (dw.kernel, dw.stride, dw.channels);
    let (h, w, (pt, pl)) = (g.h, g.w, g.pad);
    // (tap index, input pixel) of the taps inside the input, in order.
    let mut taps = [(0, 0); MAX_KERNEL * MAX_KERNEL];
    let mut len = 0;
    for ky in 0..k {
        let Some(iy) = (oy * s + ky).checked_sub(pt).filter(|&y| y < h) else {
            continue;
        };
        for kx in 0..k {
            let Some(ix) = (ox * s + kx).checked_sub(pl).filter(|&x| x < w) else {
                continue;
            };
            taps[len] = (ky * k + kx, (iy - g.row0) * w + ix);
            len += 1;
        }
    }
    let taps = &taps[..len];
    let mut cb = 0;
    while cb + CHANNEL_GROUP * LANES <= c {
        pixel_channels::<CHANNEL_GROUP, FMA>(dw, input, taps, &mut out[at * c..], cb);
        cb += CHANNEL_GROUP * LANES;
    }
    while cb < c {
        pixel_channels::<1, FMA>(dw, input, taps, &mut out[at * c..], cb);
        cb += LANES;
    }
}

/// Channel blocks processed together by [`depthwise_pixel`].
const CHANNEL_GROUP: usize = 4;

/// `G` channel blocks from `cb` of one output pixel (`out` from its first channel).
#[inline(always)]
fn pixel_channels<const G: usize, const FMA: bool>(
    dw: &Depthwise,
    input: &[f32],
    taps: &[(usize, usize)],
    out: &mut [f32],
    cb: usize,
) {
    let c = dw.channels;
    let mut acc: [[f32; LANES]; G] = std::array::from_fn(|g| lanes(&dw.bias, cb + g * LANES));
    for &(t, px) in taps {
        for (g, acc) in acc.iter_mut().enumerate() {
            let wv = lanes(&dw.weight, t * c + cb + g * LANES);
            let iv = lanes(input, px * c + cb + g * LANES);
            for j in 0..LANES {
                acc[j] = madd::<FMA>(iv[j], wv[j], acc[j]);
            }
        }
    }
    for (g, acc) in acc.iter().enumerate() {
        let dst = &mut out[cb + g * LANES..][..LANES];
        for (d, &a) in dst.iter_mut().zip(acc) {
            *d = relu6(a);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The fused kernels against burn's plain layers (`conv2d`, then `BatchNorm` on its running
    //! statistics, then `relu6`), on the real ImageNet weights.
    use super::*;
    use crate::data::cifar::IMAGE_BYTES;
    use crate::embed::FeaturePass;
    use crate::model::efficientnet::{self, Lite, MbConvBlock};
    use burn::tensor::activation::relu6 as burn_relu6;

    fn net() -> EfficientNetLite {
        lite(Lite::Lite0)
    }

    fn lite(lite: Lite) -> EfficientNetLite {
        let root = crate::data::DataRoot::resolve(None, None).expect("real data root");
        EfficientNetLite::load(&root.path.join(lite.weights_file()), lite, &Device::flex())
            .expect("load weights")
    }

    /// A reused buffer's stand-in: `n` NaNs, so that a value the code under test does not
    /// write shows.
    fn nans(n: usize) -> Aligned<f32> {
        std::iter::repeat_n(f32::NAN, n).collect()
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        crate::model::pseudo_random(n, seed, 2.0)
    }

    /// `[c, h, w]` planar -> `[h, w, c]`.
    fn to_nhwc(x: &[f32], c: usize, hw: usize) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        for ch in 0..c {
            for p in 0..hw {
                out[p * c + ch] = x[ch * hw + p];
            }
        }
        out
    }

    /// burn's plain conv -> batch norm (-> relu6) on one `[1, c, h, w]` image, as NHWC.
    fn plain(layer: &ConvBn, x: &[f32], c: usize, h: usize, w: usize, relu: bool) -> Vec<f32> {
        let t = Tensor::<4>::from_data(TensorData::new(x.to_vec(), [1, c, h, w]), &Device::flex());
        let mut y = layer.bn.forward(layer.conv.forward(t));
        if relu {
            y = burn_relu6(y);
        }
        let [_, oc, oh, ow] = y.dims();
        to_nhwc(
            &y.into_data().try_to_vec::<f32>().expect("f32"),
            oc,
            oh * ow,
        )
    }

    fn assert_close(fast: &[f32], reference: &[f32], bound: f32, what: &str) {
        assert_eq!(fast.len(), reference.len(), "{what}: lengths");
        let diff = crate::model::max_abs_diff(fast, reference);
        assert!(
            diff <= bound,
            "{what}: max |fused - burn| = {diff} > {bound}"
        );
    }

    #[test]
    fn stem_equals_burn_conv_batchnorm_relu6() {
        let net = net();
        let compiled = Stem::compile(&net.stem).expect("compile");
        // Even sizes (pad 0 before, 1 after) and odd ones (1 and 1); 40 and 41 wide enough for
        // the AVX-512 group of 8 outputs, 37 leaving a remainder.
        for (h, w) in [
            (16, 16),
            (17, 17),
            (9, 14),
            (2, 3),
            (12, 40),
            (7, 41),
            (5, 37),
        ] {
            let x = to_nhwc(&pseudo_random(3 * h * w, (h * 31 + w) as u64), 3, h * w);
            let reference = plain(
                &net.stem,
                &pseudo_random(3 * h * w, (h * 31 + w) as u64),
                3,
                h,
                w,
                true,
            );
            let what = format!("stem {h}x{w}");
            // A reused buffer, longer than needed and NaN-filled: the stem writes the prefix
            // it needs, every value of it.
            let run = |fma: bool, wide: bool| {
                let mut out = nans(32 * 21 * 21 + 5);
                let (oh, ow) = if fma {
                    stem::<true>(&compiled, &x, h, w, &mut out, wide)
                } else {
                    stem::<false>(&compiled, &x, h, w, &mut out, false)
                };
                assert_eq!((oh, ow), (h.div_ceil(2), w.div_ceil(2)));
                out[..reference.len()].to_vec()
            };
            for fma in [false, true] {
                assert_close(
                    &run(fma, false),
                    &reference,
                    1e-4,
                    &format!("{what} fma {fma}"),
                );
            }
            // The AVX-512 group kernel against the FMA path it replaces: bit for bit.
            if wide_kernels::<true>() {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&run(true, true)),
                    bits(&run(true, false)),
                    "{what}: wide"
                );
            }
        }
    }

    fn depthwise_case(block: &MbConvBlock, h: usize, w: usize, seed: u64) {
        let layer = &block.depthwise;
        let dw = Depthwise::compile(layer).expect("compile");
        let c = dw.channels;
        let x = pseudo_random(c * h * w, seed);
        let reference = plain(layer, &x, c, h, w, true);
        // A reused buffer, longer than needed and NaN-filled: every output must be written.
        let mut out = nans(c * h * w + 3);
        let nhwc = to_nhwc(&x, c, h * w);
        let (oh, ow) = depthwise::<false>(&dw, &nhwc, h, w, &mut out, false);
        assert_eq!((oh, ow), (h.div_ceil(dw.stride), w.div_ceil(dw.stride)));
        let what = format!("depthwise k{} s{} {h}x{w}", dw.kernel, dw.stride);
        assert_close(&out[..reference.len()], &reference, 1e-4, &what);
        // The AVX-512 row kernel against the FMA path it replaces: bit for bit.
        if wide_kernels::<true>() {
            let n = reference.len();
            let mut narrow = nans(n);
            let mut wide = nans(n + 5);
            depthwise::<true>(&dw, &nhwc, h, w, &mut narrow, false);
            depthwise::<true>(&dw, &nhwc, h, w, &mut wide, true);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&wide[..n]),
                bits(&narrow),
                "{what}: wide against narrow"
            );
            assert_close(&wide[..n], &reference, 1e-4, &format!("{what} wide"));
        }
    }

    #[test]
    fn depthwise_equals_burn_grouped_conv() {
        let net = net();
        // k3 s1 (block 0), k3 s2 (1), k5 s2 (3), k5 s1 (4); awkward sizes: smaller than the
        // kernel, odd, not a multiple of the fast path's pixel group, wide enough for it.
        for (i, block) in [(0, 1), (1, 2), (3, 4), (4, 5)]
            .into_iter()
            .map(|(i, seed)| (i, (&net.blocks[i], seed)))
        {
            // 1 to 7 wide at stride 1 and even 2 to 14 wide at stride 2 take the narrow-map
            // forms of the AVX-512 kernel; 13 and 23 a short last group.
            let sizes = [(1, 1), (3, 2), (7, 7), (6, 6), (5, 12), (4, 14), (8, 13)];
            for (h, w) in sizes.into_iter().chain([(12, 23), (9, 40), (50, 51)]) {
                depthwise_case(block.0, h, w, block.1 * 100 + (h * w) as u64);
            }
            let _ = i;
        }
    }

    #[test]
    fn pointwise_equals_burn_conv_with_residual_and_relu6() {
        let net = net();
        let block = &net.blocks[2]; // expansion 24 -> 144, projection 144 -> 24, residual
        let (h, w) = (9, 11);
        let expand =
            Pointwise::compile(block.expand.as_ref().expect("expansion"), Precision::Fp32).unwrap();
        let x = pseudo_random(24 * h * w, 7);
        let reference = plain(block.expand.as_ref().unwrap(), &x, 24, h, w, true);
        // NaN-filled: every output must be written (the layers reuse buffers without zeroing).
        let mut out = vec![f32::NAN; 144 * h * w];
        pointwise(
            &expand,
            &to_nhwc(&x, 24, h * w),
            h * w,
            None,
            true,
            &mut out,
            &mut Bf16Scratch::default(),
        );
        assert_close(&out, &reference, 1e-4, "expansion 24 -> 144 + relu6");

        let project = Pointwise::compile(&block.project, Precision::Fp32).unwrap();
        let y = pseudo_random(144 * h * w, 8);
        let skip = pseudo_random(24 * h * w, 9);
        let mut reference = plain(&block.project, &y, 144, h, w, false);
        for (r, s) in reference.iter_mut().zip(to_nhwc(&skip, 24, h * w)) {
            *r += s;
        }
        let mut out = vec![f32::NAN; 24 * h * w];
        let skip = to_nhwc(&skip, 24, h * w);
        pointwise(
            &project,
            &to_nhwc(&y, 144, h * w),
            h * w,
            Some(&skip),
            false,
            &mut out,
            &mut Bf16Scratch::default(),
        );
        assert_close(&out, &reference, 1e-4, "projection 144 -> 24 + residual");
    }

    #[test]
    fn bf16_pointwise_applies_bias_residual_and_relu6_around_the_bf16_product() {
        // The tiled pointwise layer in bf16 against the plain bf16 product with the epilogue
        // written out: bias (+ skip), then the product, then ReLU6. m = 13 * 41 rows spans
        // several tiles of the 1152-wide expansion (TILE_VALUES / 1152 = 42 rows).
        let net = net();
        let block = &net.blocks[12]; // expansion 192 -> 1152, projection 1152 -> 192
        let m = 13 * 41;
        for (layer, relu, residual) in [
            (block.expand.as_ref().expect("expansion"), true, false),
            (&block.project, false, true),
        ] {
            let fp32 = Pointwise::compile(layer, Precision::Fp32).unwrap();
            let bf16 = Pointwise::compile(layer, Precision::Bf16).unwrap();
            let (k, n) = (fp32.c_in, fp32.c_out);
            let x = pseudo_random(m * k, 11);
            let skip = residual.then(|| pseudo_random(m * n, 12));
            let mut expected = vec![0.0; m * n];
            let start = super::super::tiles::Start {
                bias: &fp32.bias,
                skip: skip.as_deref(),
            };
            super::super::bf16::matmul_ref(&x, m, &fp32.weight, k, start, &mut expected, relu);
            let mut out = vec![f32::NAN; m * n];
            let mut scratch = Bf16Scratch::default();
            pointwise(&bf16, &x, m, skip.as_deref(), relu, &mut out, &mut scratch);
            assert_close(&out, &expected, 1e-4, &format!("bf16 pointwise {k} -> {n}"));
        }
    }

    /// An EfficientNet-Lite's pooled features through burn's plain layers only (no folding).
    fn plain_features(net: &EfficientNetLite, x: Tensor<4>) -> Vec<f32> {
        let convbn = |l: &ConvBn, x: Tensor<4>| l.bn.forward(l.conv.forward(x));
        let mut x = burn_relu6(convbn(&net.stem, x));
        for b in &net.blocks {
            let skip = x.clone();
            let mut y = match &b.expand {
                Some(e) => burn_relu6(convbn(e, x)),
                None => x,
            };
            y = burn_relu6(convbn(&b.depthwise, y));
            y = convbn(&b.project, y);
            x = if b.residual { y + skip } else { y };
        }
        let x = burn_relu6(convbn(&net.head, x));
        let [n, c, h, w] = x.dims();
        x.reshape([n, c, h * w])
            .mean_dim(2)
            .reshape([n, c])
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32")
    }

    /// The row kernel's rounding of its clamped outputs against the scalar `to_bf16`, bit for
    /// bit (hand-made values, labelled as such): zero, the smallest normal and subnormals,
    /// ties on both sides of even, values just past a tie, 6 and every 997th float in [0, 6].
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn clamped_outputs_round_to_bf16_as_the_scalar_rounding() {
        if level() != Level::Avx512 {
            return;
        }
        let mut values = vec![
            0.0,
            f32::MIN_POSITIVE,
            1.0e-40,
            1.0e-45,
            1.0 + 2f32.powi(-8),
            1.0 + 3.0 * 2f32.powi(-8),
            1.0 + 2f32.powi(-8) + 2f32.powi(-20),
            5.0 + 2f32.powi(-6),
            6.0,
        ];
        values.extend((0..6.0f32.to_bits()).step_by(997).map(f32::from_bits));
        values.resize(values.len().div_ceil(LANES) * LANES, 3.0);
        let native = bf16::dot_product_instructions();
        for chunk in values.chunks_exact(LANES) {
            let expected: Vec<u16> = chunk.iter().map(|&x| bf16::to_bf16(x)).collect();
            for native in [false, true].into_iter().filter(|&n| !n || native) {
                let mut got = [0u16; LANES];
                // SAFETY: `level` found AVX-512, and AVX512_BF16 where `native`; 16 values
                // in, 16 out.
                unsafe {
                    use std::arch::x86_64::*;
                    let v = _mm512_loadu_ps(chunk.as_ptr());
                    let rounded = if native {
                        super::bf16::rounded_lanes(v)
                    } else {
                        clamped_to_bf16(v)
                    };
                    _mm256_storeu_si256(got.as_mut_ptr().cast(), rounded);
                }
                assert_eq!(got.to_vec(), expected, "native {native}: {chunk:?}");
            }
        }
    }

    /// Banded blocks against the same block's layers run whole over the map, bit for bit, on
    /// the real weights with pseudo-random inputs (hand-made, labelled as such): blocks 0-4 of
    /// Lite0 (no expansion; k3 and k5 at stride 2; k3 and k5 with the residual), at awkward
    /// sizes, in bands of one row, of three rows and of the whole map, in fp32 and bf16, on the
    /// portable and FMA paths and on the AVX-512 kernels where this CPU has them.
    #[test]
    fn banded_blocks_equal_their_layers_run_whole() {
        let net = net();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for precision in [Precision::Fp32, Precision::Bf16] {
            let frozen = FrozenLite::compile(&net, precision).expect("compile");
            for (b, block) in frozen.blocks.iter().enumerate().take(5) {
                let mid = block.depthwise.channels;
                let c_in = block.expand.as_ref().map_or(mid, |e| e.c_in);
                for (h, w) in [(1, 1), (5, 3), (7, 7), (9, 13), (16, 11)] {
                    let x = pseudo_random(h * w * c_in, (b * 1000 + h * w) as u64);
                    let (oh, ow) = block.out_size(h, w);
                    let n = oh * ow * block.project.c_out;
                    let mut scratch = Scratch::default();
                    let paths: [(bool, bool); 3] = [(false, false), (true, false), (true, true)];
                    for (fma, wide) in paths {
                        if wide && !wide_kernels::<true>() {
                            continue;
                        }
                        // The layers whole: expansion, depthwise, projection.
                        let mut expanded = x.clone();
                        if let Some(e) = &block.expand {
                            expanded = vec![0.0; h * w * mid];
                            pointwise(e, &x, h * w, None, true, &mut expanded, &mut scratch.bf16);
                        }
                        let mut dw = Aligned::default();
                        if fma {
                            depthwise::<true>(&block.depthwise, &expanded, h, w, &mut dw, wide);
                        } else {
                            depthwise::<false>(&block.depthwise, &expanded, h, w, &mut dw, false);
                        }
                        let mut whole = vec![0.0; n];
                        let skip = block.residual.then_some(&x[..]);
                        let dw = &dw[..oh * ow * mid];
                        pointwise(
                            &block.project,
                            dw,
                            oh * ow,
                            skip,
                            false,
                            &mut whole,
                            &mut scratch.bf16,
                        );
                        for rows in [1, 3, oh] {
                            let mut banded = vec![f32::NAN; n];
                            // Stale NaNs (bfloat16) where the bf16 depthwise rows go: their
                            // padding past the channels must be written as zeros.
                            let stale = (oh * ow + 32) * (mid + 32);
                            scratch.rounded.prefix(stale).fill(0x7fc0);
                            let buffers = Band {
                                window: &mut scratch.c,
                                depthwise: &mut scratch.d,
                                rounded: &mut scratch.rounded,
                                bf16: &mut scratch.bf16,
                            };
                            let band_values = rows * block.depthwise.stride * w * mid;
                            if fma {
                                block.run::<true>(
                                    &x,
                                    (h, w),
                                    &mut banded,
                                    buffers,
                                    band_values,
                                    wide,
                                );
                            } else {
                                block.run::<false>(
                                    &x,
                                    (h, w),
                                    &mut banded,
                                    buffers,
                                    band_values,
                                    false,
                                );
                            }
                            assert_eq!(
                                bits(&banded),
                                bits(&whole),
                                "{precision:?} block {b} {h}x{w}, bands of {rows} rows, fma {fma}, wide {wide}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn whole_network_equals_burn_layers_on_real_images() {
        whole_network_equals_burn_layers(Lite::Lite0);
    }

    #[test]
    fn whole_lite2_equals_burn_layers_on_real_images() {
        whole_network_equals_burn_layers(Lite::Lite2);
    }

    fn whole_network_equals_burn_layers(which: Lite) {
        let net = lite(which);
        let frozen = FrozenLite::compile(&net, Precision::Fp32).expect("compile");
        let root = crate::data::DataRoot::resolve(None, None).expect("real data root");
        let test = crate::data::cifar::Cifar100::load(&root, false)
            .expect("CIFAR-100")
            .test;
        let images = &test.pixels[..3 * IMAGE_BYTES];
        for size in [64, 96, 101] {
            let prep = crate::model::Preprocess::EfficientNet { size };
            let mut input = Vec::new();
            for img in images.chunks_exact(IMAGE_BYTES) {
                prep.append(img, &mut input).expect("preprocess");
            }
            let reference = plain_features(&net, prep.tensor(input, 3, &Device::flex()));
            let fused = frozen.features(images, size).expect("fused features");
            assert_close(&fused, &reference, 1e-3, &format!("features at {size} px"));
            // Features are not all clipped or zero: the comparison has something to compare.
            let spread = reference.iter().filter(|&&v| v > 0.05).count();
            assert!(spread > 3 * 200, "{spread} features above 0.05");
            // A worker's arithmetic does not depend on the thread count.
            let one = crate::model::with_threads(1, || frozen.features(images, size)).unwrap();
            assert_eq!(one, fused, "1 thread vs the default pool at {size} px");
        }
        assert!(frozen.features(&images[..100], 64).is_err());
    }

    /// The vector interleaving of the normalised planes equals the per-value loop, bit for bit
    /// (hand-made values: a unit test of a pure function),
    /// on every 8-bit value and on fractional ones (the bicubic upsampling overshoots 0..=255),
    /// at sizes with and without a remainder past the groups of 16 pixels.
    #[test]
    fn the_normalised_image_is_interleaved_as_the_plain_loop_does() {
        for side in [1, 4, 5, 31, 32, 96] {
            let plane = side * side;
            let planar: Vec<f32> = (0..3 * plane)
                .map(|i| {
                    (i % 256) as f32
                        + if i % 7 == 0 {
                            0.37 - (i % 3) as f32
                        } else {
                            0.0
                        }
                })
                .collect();
            let mut plain = vec![f32::NAN; 3 * plane];
            normalized_nhwc(&planar, &mut plain, false);
            for p in 0..plane {
                for c in 0..3 {
                    let expected = (planar[c * plane + p] - 127.0) / 128.0;
                    assert_eq!(plain[p * 3 + c].to_bits(), expected.to_bits());
                }
            }
            if wide_kernels::<true>() {
                let mut fast = vec![f32::NAN; 3 * plane];
                normalized_nhwc(&planar, &mut fast, true);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&plain), "{side} x {side}");
            }
        }
    }

    /// The group size follows the measurements of [`GROUPS`]: 16 images at 96 and 160 px,
    /// where they were faster, 8 at 128 and 224 px, where they were not, and 8 at 256 px,
    /// where 16 images would stack no block at all.
    #[test]
    fn the_group_size_follows_the_measured_sizes() {
        let frozen = FrozenLite::compile(&net(), Precision::Fp32).expect("compile");
        let groups: Vec<usize> = [96, 128, 160, 224, 256]
            .into_iter()
            .map(|size| frozen.group(size))
            .collect();
        assert_eq!(groups, [16, 8, 16, 8, 8]);
        assert_eq!(frozen.stacked_from(256, 16), frozen.blocks.len());
    }

    /// The blocks run on a whole group ([`Block::run_stacked`]) sum every output as the
    /// blocks run on one image in bands: features in groups of 1, 3, 8 and 16 images are bit for
    /// bit the same, at sizes where the group runs some or most blocks at once, or where the
    /// last maps are single pixels (32 px), in fp32 and bf16.
    #[test]
    fn groups_of_images_give_each_image_its_own_features() {
        let net = net();
        let root = crate::data::DataRoot::resolve(None, None).expect("real data root");
        let test = crate::data::cifar::Cifar100::load(&root, false)
            .expect("CIFAR-100")
            .test;
        let images = &test.pixels[..19 * IMAGE_BYTES];
        for precision in [Precision::Fp32, Precision::Bf16] {
            let frozen = FrozenLite::compile(&net, precision).expect("compile");
            for size in [32, 33, 64, 96] {
                let stacked: Vec<usize> = [1, 3, 8]
                    .iter()
                    .map(|&g| frozen.stacked_from(size, g))
                    .collect();
                // At 32 px the last maps are 1x1: those blocks run on each image.
                assert!(
                    size == 32 || stacked[2] < frozen.blocks.len(),
                    "{size} px: groups of 8 run some blocks at once ({stacked:?})"
                );
                let alone = frozen.features_in_groups(images, size, 1).expect("alone");
                for group in [3, 8, 16] {
                    let grouped = frozen.features_in_groups(images, size, group).unwrap();
                    assert!(
                        alone
                            .iter()
                            .zip(&grouped)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{precision:?} at {size} px: groups of {group} differ from one image"
                    );
                }
            }
        }
    }

    #[test]
    fn multiply_adds_count_every_convolution_of_burns_layers() {
        // The oracle runs burn's own convolutions for their output sizes and counts each
        // output pixel's multiply-adds from the weight's shape.
        for which in [Lite::Lite0, Lite::Lite2] {
            let net = lite(which);
            let frozen = FrozenLite::compile(&net, Precision::Fp32).expect("compile");
            for size in [64, 101, 224] {
                let mut x = Tensor::<4>::zeros([1, 3, size, size], &Device::flex());
                let mut total = 0u64;
                let mut conv = |layer: &ConvBn, x: Tensor<4>| {
                    let y = layer.conv.forward(x);
                    let [_, _, h, w] = y.dims();
                    total += (h * w * layer.conv.weight.val().shape().num_elements()) as u64;
                    y
                };
                x = conv(&net.stem, x);
                for b in &net.blocks {
                    if let Some(e) = &b.expand {
                        x = conv(e, x);
                    }
                    x = conv(&b.depthwise, x);
                    x = conv(&b.project, x);
                }
                conv(&net.head, x);
                assert_eq!(frozen.multiply_adds(size), total, "{which:?} at {size} px");
            }
        }
    }

    #[test]
    fn bf16_features_stay_near_fp32_on_real_images() {
        let root = crate::data::DataRoot::resolve(None, None).expect("real data root");
        let test = crate::data::cifar::Cifar100::load(&root, false)
            .expect("CIFAR-100")
            .test;
        let images = &test.pixels[..4 * IMAGE_BYTES];
        for which in [Lite::Lite0, Lite::Lite2] {
            let net = lite(which);
            let fp32 = FrozenLite::compile(&net, Precision::Fp32).expect("compile");
            let bf16 = FrozenLite::compile(&net, Precision::Bf16).expect("compile");
            for size in [64, 101] {
                let exact = fp32.features(images, size).expect("fp32");
                let rounded = bf16.features(images, size).expect("bf16");
                assert_ne!(
                    exact, rounded,
                    "{which:?} at {size} px: bf16 changed nothing"
                );
                for (i, (e, r)) in exact
                    .chunks_exact(FEATURE_DIM)
                    .zip(rounded.chunks_exact(FEATURE_DIM))
                    .enumerate()
                {
                    let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt();
                    let diff = e.iter().zip(r).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
                    let relative = diff.sqrt() / norm;
                    eprintln!(
                        "{which:?} {size} px image {i}: relative L2 {relative:.5}, max {}",
                        crate::model::max_abs_diff(e, r)
                    );
                    assert!(
                        relative <= 0.04,
                        "{which:?} at {size} px, image {i}: {relative}"
                    );
                }
            }
        }
    }

    #[test]
    fn fused_features_match_the_burn_path_of_the_features_stage() {
        // The features stage's two paths (fused, and burn's layers with folded batch norm).
        let net = net();
        let root = crate::data::DataRoot::resolve(None, None).expect("real data root");
        let train = crate::data::cifar::Cifar100::load(&root, false)
            .expect("CIFAR-100")
            .train;
        let images = &train.pixels[..5 * IMAGE_BYTES];
        let features = |pass| crate::embed::encoder_features(&net, images, 80, 2, false, pass);
        let fused = features(FeaturePass::Fused(Precision::Fp32)).unwrap();
        let layers = features(FeaturePass::BurnLayers).unwrap();
        assert_eq!(fused.len(), 5 * efficientnet::FEATURE_DIM);
        assert_close(&fused, &layers, 1e-3, "features stage at 80 px");
    }
}
