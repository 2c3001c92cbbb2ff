//! Pure-Rust resampling of planar RGB images (`[3, height, width]`, channel planes stored one
//! after the other, row-major within a plane). Outputs are `f32` on the input's scale (e.g.
//! `0.0..=255.0` for `u8` input, up to bicubic overshoot).
//!
//! Kernels and their conventions (all separable, rows first, then columns):
//!
//! * **Bicubic** ([`resize_bicubic`]), PyTorch's `interpolate(mode="bicubic",
//!   align_corners=False)`: output pixel `d` samples the source at
//!   `s = (d + 0.5) * in / out - 0.5` (not clamped). With `i = floor(s)` and `t = s - i`, the
//!   four taps are the source pixels `i - 1 ..= i + 2`, each index clamped to `[0, in - 1]`
//!   (border replication), weighted with the Keys cubic convolution kernel with `a = -0.75`:
//!   `W(x) = (a + 2)|x|^3 - (a + 3)|x|^2 + 1` for `|x| <= 1`,
//!   `W(x) = a|x|^3 - 5a|x|^2 + 8a|x| - 4a` for `1 < |x| < 2`, else `0`;
//!   the four weights are `W(t + 1), W(t), W(1 - t), W(2 - t)`. The result is not clamped, so
//!   it can overshoot `[0, 255]` next to sharp edges, exactly as in PyTorch.
//! * **Bilinear** ([`resize_bilinear`]), PyTorch's `interpolate(mode="bilinear",
//!   align_corners=False)` without antialiasing: `s = max((d + 0.5) * in / out - 0.5, 0)`,
//!   `i0 = floor(s)`, `i1 = min(i0 + 1, in - 1)`, weights `1 - t` and `t` with `t = s - i0`.
//! * **Antialiased bilinear** ([`resize_bilinear_antialias`]), Pillow's `BILINEAR` filter
//!   (also torchvision's `antialias=True`): a triangle filter widened by the downscale factor
//!   `f = max(in / out, 1)`, centred at `c = (d + 0.5) * in / out`, over the source pixels `j`
//!   with `|j + 0.5 - c| < f`, weights `1 - |j + 0.5 - c| / f` normalised to sum 1. When
//!   upscaling it equals plain bilinear; when downscaling it averages instead of aliasing.
//!
//! [`resize_shorter_center_crop`] is the ImageNet evaluation geometry used for the
//! EfficientNet sanity checks: Pillow-compatible 8-bit bilinear resize of the shorter side,
//! then a centre crop.

use super::ModelError;

/// Number of colour planes in a planar RGB image.
pub const CHANNELS: usize = 3;

/// Keys cubic convolution parameter used by PyTorch (and OpenCV) for bicubic resampling.
pub const BICUBIC_A: f32 = -0.75;

/// A pixel sample that can be read as `f32` (implemented for `u8` and `f32`).
pub trait Sample: Copy {
    /// The sample's value as `f32`.
    fn to_f32(self) -> f32;
}

impl Sample for u8 {
    fn to_f32(self) -> f32 {
        f32::from(self)
    }
}

impl Sample for f32 {
    fn to_f32(self) -> f32 {
        self
    }
}

/// The source samples contributing to one output coordinate along one axis: a contiguous
/// window starting at `first`, one weight per sample. Taps that border clamping maps onto the
/// same source sample are merged into one weight.
#[derive(Debug, Clone, PartialEq)]
struct Window {
    first: usize,
    weights: Vec<f32>,
}

impl Window {
    /// Builds a window from (possibly repeated) source indices and their weights.
    fn from_taps(taps: &[(usize, f32)]) -> Self {
        let first = taps.iter().map(|&(i, _)| i).min().unwrap_or(0);
        let last = taps.iter().map(|&(i, _)| i).max().unwrap_or(0);
        let mut weights = vec![0.0; last - first + 1];
        for &(i, w) in taps {
            weights[i - first] += w;
        }
        Self { first, weights }
    }

    /// Weighted sum of `samples[first..]` read through `read`.
    fn apply(&self, read: impl Fn(usize) -> f32) -> f32 {
        self.weights
            .iter()
            .enumerate()
            .map(|(k, &w)| read(self.first + k) * w)
            .sum()
    }
}

/// Keys cubic kernel for `|x| <= 1`.
fn cubic_inner(x: f32) -> f32 {
    ((BICUBIC_A + 2.0) * x - (BICUBIC_A + 3.0)) * x * x + 1.0
}

/// Keys cubic kernel for `1 < |x| < 2`.
fn cubic_outer(x: f32) -> f32 {
    ((BICUBIC_A * x - 5.0 * BICUBIC_A) * x + 8.0 * BICUBIC_A) * x - 4.0 * BICUBIC_A
}

/// Bicubic windows for every output coordinate of an axis resized from `in_size` to
/// `out_size`.
fn bicubic_windows(in_size: usize, out_size: usize) -> Vec<Window> {
    let scale = in_size as f32 / out_size as f32;
    let last = in_size as isize - 1;
    (0..out_size)
        .map(|d| {
            let s = (d as f32 + 0.5) * scale - 0.5;
            let i = s.floor();
            let t = s - i;
            let i = i as isize;
            let at = |k: isize| (i + k).clamp(0, last) as usize;
            Window::from_taps(&[
                (at(-1), cubic_outer(t + 1.0)),
                (at(0), cubic_inner(t)),
                (at(1), cubic_inner(1.0 - t)),
                (at(2), cubic_outer(2.0 - t)),
            ])
        })
        .collect()
}

/// Plain (non-antialiased) bilinear windows.
fn bilinear_windows(in_size: usize, out_size: usize) -> Vec<Window> {
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|d| {
            let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(in_size - 1);
            let i1 = (i0 + 1).min(in_size - 1);
            let t = s - i0 as f32;
            Window::from_taps(&[(i0, 1.0 - t), (i1, t)])
        })
        .collect()
}

/// Antialiased (Pillow-style) bilinear windows.
fn antialias_windows(in_size: usize, out_size: usize) -> Vec<Window> {
    let scale = in_size as f64 / out_size as f64;
    let support = scale.max(1.0);
    (0..out_size)
        .map(|d| {
            let center = (d as f64 + 0.5) * scale;
            let lo = (center - support + 0.5).floor().max(0.0) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(in_size);
            let raw: Vec<f64> = (lo..hi)
                .map(|j| (1.0 - ((j as f64 + 0.5 - center) / support).abs()).max(0.0))
                .collect();
            let total: f64 = raw.iter().sum();
            Window {
                first: lo,
                weights: raw.iter().map(|w| (w / total) as f32).collect(),
            }
        })
        .collect()
}

/// Checks that `len` samples make a non-empty planar RGB image of `height` x `width`.
fn check_planar(len: usize, height: usize, width: usize) -> Result<(), ModelError> {
    if height == 0 || width == 0 {
        return Err(ModelError::InvalidInput {
            what: format!("image has zero size {height}x{width}"),
        });
    }
    let expected = CHANNELS * height * width;
    if len != expected {
        return Err(ModelError::InvalidInput {
            what: format!(
                "planar RGB image of {height}x{width} needs {expected} samples, got {len}"
            ),
        });
    }
    Ok(())
}

/// Checks a requested output size.
fn check_output(out_height: usize, out_width: usize) -> Result<(), ModelError> {
    if out_height == 0 || out_width == 0 {
        return Err(ModelError::InvalidInput {
            what: format!("requested output size {out_height}x{out_width} is empty"),
        });
    }
    Ok(())
}

/// Rounds to the nearest 8-bit value, as Pillow does after each pass on 8-bit images.
fn round_u8(v: f32) -> f32 {
    v.round().clamp(0.0, 255.0)
}

/// Separable resampling of planar images with their row and column windows computed once
/// (the feature pass upsamples every 32x32 image to the same size): horizontal pass over
/// every source row, then vertical pass. With `round_to_u8`, each pass's output is rounded to
/// 8 bits (Pillow's behaviour on 8-bit images).
///
/// Each output value is the same sum as [`Window::apply`]'s, term by term in the same order;
/// the vertical pass only computes a whole output row at a time (one tap across the row, then
/// the next), which vectorises, and on the AVX-512 level the horizontal pass computes 16
/// output columns at a time from a source row held in two registers ([`ColumnPlan`]).
/// `resample_ref` is the per-pixel twin it is tested against.
#[derive(Debug, Clone)]
pub struct Resampler {
    height: usize,
    width: usize,
    rows: Vec<Window>,
    cols: Vec<Window>,
    round_to_u8: bool,
    columns: Option<ColumnPlan>,
}

/// The most source columns [`ColumnPlan`] takes: two AVX-512 registers of `f32`.
const PLAN_WIDTH: usize = 32;

/// The most taps of a window [`ColumnPlan`] takes (bicubic has 4).
const PLAN_TAPS: usize = 8;

/// The horizontal pass as 16-lane permutes of a source row of at most [`PLAN_WIDTH`] values:
/// for each chunk of 16 output columns and each tap, the source column of every lane, its
/// weight, and which lanes have that tap (a window may have fewer taps than the longest).
/// Tap 0 exists in every window, so a lane's sum starts as its first product, as
/// [`Window::apply`]'s `-0.0 + p0` does; later taps are added only in the lanes that have
/// them, so no added zero turns a `-0.0` sum into `+0.0`.
#[derive(Debug, Clone)]
struct ColumnPlan {
    taps: usize,
    chunks: Vec<ColumnChunk>,
}

#[derive(Debug, Clone)]
struct ColumnChunk {
    index: [[i32; 16]; PLAN_TAPS],
    weight: [[f32; 16]; PLAN_TAPS],
    has_tap: [u16; PLAN_TAPS],
    /// The lanes that are output columns.
    columns: u16,
}

impl ColumnPlan {
    /// The plan for `cols` over a source `width` wide, if it fits the permutes.
    fn new(width: usize, cols: &[Window]) -> Option<Self> {
        let taps = cols.iter().map(|c| c.weights.len()).max()?;
        let fits = |c: &Window| !c.weights.is_empty() && c.first + c.weights.len() <= width;
        if width > PLAN_WIDTH || taps > PLAN_TAPS || !cols.iter().all(fits) {
            return None;
        }
        let chunks = cols
            .chunks(16)
            .map(|windows| {
                let mut chunk = ColumnChunk {
                    index: [[0; 16]; PLAN_TAPS],
                    weight: [[0.0; 16]; PLAN_TAPS],
                    has_tap: [0; PLAN_TAPS],
                    columns: 0,
                };
                for (lane, window) in windows.iter().enumerate() {
                    chunk.columns |= 1 << lane;
                    for (t, &w) in window.weights.iter().enumerate() {
                        chunk.index[t][lane] = (window.first + t) as i32;
                        chunk.weight[t][lane] = w;
                        chunk.has_tap[t] |= 1 << lane;
                    }
                }
                chunk
            })
            .collect();
        Some(Self { taps, chunks })
    }
}

impl Resampler {
    /// Resampling of `height x width` planes with these row and column windows (the output is
    /// `rows.len() x cols.len()`).
    fn new(
        height: usize,
        width: usize,
        rows: Vec<Window>,
        cols: Vec<Window>,
        round_to_u8: bool,
    ) -> Self {
        let columns = (!round_to_u8)
            .then(|| ColumnPlan::new(width, &cols))
            .flatten();
        Self {
            height,
            width,
            rows,
            cols,
            round_to_u8,
            columns,
        }
    }

    /// Bicubic resampling of planar RGB images `[3, height, width]` to `[3, out_height,
    /// out_width]`, as [`resize_bicubic`].
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] if any size is zero.
    pub fn bicubic(
        height: usize,
        width: usize,
        out_height: usize,
        out_width: usize,
    ) -> Result<Self, ModelError> {
        check_planar(CHANNELS * height * width, height, width)?;
        check_output(out_height, out_width)?;
        let rows = bicubic_windows(height, out_height);
        let cols = bicubic_windows(width, out_width);
        Ok(Self::new(height, width, rows, cols, false))
    }

    /// The values of one output image.
    pub fn output_len(&self) -> usize {
        CHANNELS * self.rows.len() * self.cols.len()
    }

    /// The resampled image, in a new buffer.
    fn run<P: Sample>(&self, src: &[P]) -> Vec<f32> {
        let (mut out, mut horizontal) = (Vec::new(), Vec::new());
        self.run_into(src, &mut out, &mut horizontal);
        out
    }

    /// Resamples `src` into `out` ([`Resampler::output_len`] values); `horizontal` is scratch
    /// for the horizontal pass. Both keep their capacity from call to call.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] if `src` is not a planar RGB image of the resampler's
    /// input size.
    pub fn resample_into<P: Sample>(
        &self,
        src: &[P],
        out: &mut Vec<f32>,
        horizontal: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        check_planar(src.len(), self.height, self.width)?;
        self.run_into(src, out, horizontal);
        Ok(())
    }

    fn run_into<P: Sample>(&self, src: &[P], out: &mut Vec<f32>, horizontal: &mut Vec<f32>) {
        out.resize(self.output_len(), 0.0);
        horizontal.resize(self.height * self.cols.len(), 0.0);
        #[cfg(target_arch = "x86_64")]
        if let Some(plan) = &self.columns
            && crate::simd::level() == crate::simd::Level::Avx512
        {
            // SAFETY: the AVX-512 level is only reported where the CPU has AVX-512F.
            unsafe { self.run_wide(src, plan, out, horizontal) };
            return;
        }
        let finish = |v: f32| if self.round_to_u8 { round_u8(v) } else { v };
        self.passes(src, out, horizontal, |src_row, dst_row| {
            for (dst, window) in dst_row.iter_mut().zip(&self.cols) {
                *dst = finish(window.apply(|i| src_row[i].to_f32()));
            }
        });
    }

    /// [`Resampler::run_into`] on AVX-512: the horizontal pass on `plan`'s permutes, and the
    /// vertical pass compiled for 16 lanes.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_wide<P: Sample>(
        &self,
        src: &[P],
        plan: &ColumnPlan,
        out: &mut [f32],
        horizontal: &mut [f32],
    ) {
        self.passes(src, out, horizontal, |src_row, dst_row| {
            let mut row = [0.0f32; PLAN_WIDTH];
            for (r, s) in row.iter_mut().zip(src_row) {
                *r = s.to_f32();
            }
            // SAFETY: `run_wide`'s caller checked AVX-512F; the plan's indices are below
            // `PLAN_WIDTH`, and it has a chunk for every 16 of `dst_row`'s columns.
            unsafe { horizontal_row_wide(&row, plan, dst_row) };
        });
    }

    /// Both passes over the three planes of `src` into `out`, the horizontal one a source row
    /// at a time by `horizontal_row` (source row, its resampled `[out_w]` row).
    #[inline(always)]
    fn passes<P: Sample>(
        &self,
        src: &[P],
        out: &mut [f32],
        horizontal: &mut [f32],
        horizontal_row: impl Fn(&[P], &mut [f32]),
    ) {
        let (height, width, out_w) = (self.height, self.width, self.cols.len());
        let planes = src
            .chunks_exact(height * width)
            .zip(out.chunks_exact_mut(self.rows.len() * out_w));
        for (plane, out_plane) in planes {
            for (src_row, dst_row) in plane
                .chunks_exact(width)
                .zip(horizontal.chunks_exact_mut(out_w))
            {
                horizontal_row(src_row, dst_row);
            }
            for (window, dst) in self.rows.iter().zip(out_plane.chunks_exact_mut(out_w)) {
                let tap = |k: usize| &horizontal[(window.first + k) * out_w..][..out_w];
                // `Window::apply` sums from -0.0, and -0.0 + x == x for every x.
                let (&w0, rest) = window.weights.split_first().expect("a window has a tap");
                for (d, &v) in dst.iter_mut().zip(tap(0)) {
                    *d = v * w0;
                }
                for (k, &wk) in rest.iter().enumerate() {
                    for (d, &v) in dst.iter_mut().zip(tap(k + 1)) {
                        *d += v * wk;
                    }
                }
                if self.round_to_u8 {
                    dst.iter_mut().for_each(|d| *d = round_u8(*d));
                }
            }
        }
    }
}

/// One source row's horizontal pass on the permutes of `plan`: `row` holds the row's values
/// (zeros past its width), `dst` gets its `plan`'s output columns.
///
/// # Safety
/// The CPU has AVX-512F; `plan` has a chunk for every 16 columns of `dst`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn horizontal_row_wide(row: &[f32; PLAN_WIDTH], plan: &ColumnPlan, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    assert!(
        plan.chunks.len() * 16 >= dst.len(),
        "a chunk for every 16 columns"
    );
    // SAFETY: the loads read `row`, the plan's arrays; each store is masked to the chunk's
    // columns, which lie in `dst`.
    unsafe {
        let lo = _mm512_loadu_ps(row.as_ptr());
        let hi = _mm512_loadu_ps(row.as_ptr().add(16));
        for (c, chunk) in plan.chunks.iter().enumerate() {
            let product = |t: usize| {
                let index = _mm512_loadu_si512(chunk.index[t].as_ptr().cast());
                let x = _mm512_permutex2var_ps(lo, index, hi);
                _mm512_mul_ps(x, _mm512_loadu_ps(chunk.weight[t].as_ptr()))
            };
            let mut sum = product(0);
            for t in 1..plan.taps {
                sum = _mm512_mask_add_ps(sum, chunk.has_tap[t], sum, product(t));
            }
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(c * 16), chunk.columns, sum);
        }
    }
}

/// The per-pixel twin of [`Resampler`].
#[cfg(test)]
fn resample_ref<P: Sample>(
    src: &[P],
    height: usize,
    width: usize,
    rows: &[Window],
    cols: &[Window],
    round_to_u8: bool,
) -> Vec<f32> {
    let finish = |v: f32| if round_to_u8 { round_u8(v) } else { v };
    let out_w = cols.len();
    let mut out = Vec::with_capacity(CHANNELS * rows.len() * out_w);
    let mut horizontal = vec![0.0f32; height * out_w];
    for plane in src.chunks_exact(height * width) {
        for (src_row, dst_row) in plane
            .chunks_exact(width)
            .zip(horizontal.chunks_exact_mut(out_w))
        {
            for (dst, window) in dst_row.iter_mut().zip(cols) {
                *dst = finish(window.apply(|i| src_row[i].to_f32()));
            }
        }
        for window in rows {
            for x in 0..out_w {
                out.push(finish(window.apply(|i| horizontal[i * out_w + x])));
            }
        }
    }
    out
}

/// Bicubic resize of a planar RGB image `[3, height, width]` to `[3, out_height, out_width]`
/// (PyTorch `interpolate(mode="bicubic", align_corners=False)`, `a = -0.75`, border
/// replication, no clamping of the result; see the module docs).
///
/// # Errors
/// [`ModelError::InvalidInput`] if `src.len() != 3 * height * width` or any size is zero.
pub fn resize_bicubic<P: Sample>(
    src: &[P],
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
) -> Result<Vec<f32>, ModelError> {
    check_planar(src.len(), height, width)?;
    Ok(Resampler::bicubic(height, width, out_height, out_width)?.run(src))
}

/// Bicubic resize of a planar RGB image `[3, height, width]` to a square `[3, size, size]`.
///
/// # Errors
/// As [`resize_bicubic`].
pub fn resize_bicubic_square<P: Sample>(
    src: &[P],
    height: usize,
    width: usize,
    size: usize,
) -> Result<Vec<f32>, ModelError> {
    resize_bicubic(src, height, width, size, size)
}

/// Plain bilinear resize of a planar RGB image `[3, height, width]` to
/// `[3, out_height, out_width]` (PyTorch `interpolate(mode="bilinear", align_corners=False)`,
/// no antialiasing: downscaling by more than 2x aliases).
///
/// # Errors
/// [`ModelError::InvalidInput`] if `src.len() != 3 * height * width` or any size is zero.
pub fn resize_bilinear<P: Sample>(
    src: &[P],
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
) -> Result<Vec<f32>, ModelError> {
    check_planar(src.len(), height, width)?;
    check_output(out_height, out_width)?;
    let rows = bilinear_windows(height, out_height);
    let cols = bilinear_windows(width, out_width);
    Ok(Resampler::new(height, width, rows, cols, false).run(src))
}

/// Antialiased bilinear resize of a planar RGB image `[3, height, width]` to
/// `[3, out_height, out_width]` (Pillow `BILINEAR` / torchvision `antialias=True`, in `f32`
/// without intermediate rounding; see the module docs). Equal to [`resize_bilinear`] when
/// upscaling.
///
/// # Errors
/// [`ModelError::InvalidInput`] if `src.len() != 3 * height * width` or any size is zero.
pub fn resize_bilinear_antialias<P: Sample>(
    src: &[P],
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
) -> Result<Vec<f32>, ModelError> {
    check_planar(src.len(), height, width)?;
    check_output(out_height, out_width)?;
    let rows = antialias_windows(height, out_height);
    let cols = antialias_windows(width, out_width);
    Ok(Resampler::new(height, width, rows, cols, false).run(src))
}

/// ImageNet evaluation geometry ("resize shorter side 256 bilinear, centre crop 224"),
/// reproducing Pillow on an 8-bit RGB image: antialiased bilinear resize so that the shorter
/// side becomes `shorter` (the longer side becomes `floor(longer * shorter / shorter_in)`),
/// rounding to 8 bits after the horizontal and after the vertical pass, then a centre crop of
/// `crop` x `crop` at offset `floor((side - crop) / 2)`. Returns `[3, crop, crop]` whole
/// numbers in `0.0..=255.0`; only the cropped window is computed.
///
/// The antialiasing matters: plain bilinear ([`resize_bilinear`]) on a 768x576 photo shifts
/// EfficientNet-Lite0's top-1 on `dog.jpg` from German shepherd to malamute.
///
/// # Errors
/// [`ModelError::InvalidInput`] if the buffer does not match its dimensions, a size is zero, or
/// `crop > shorter`.
pub fn resize_shorter_center_crop(
    src: &[u8],
    height: usize,
    width: usize,
    shorter: usize,
    crop: usize,
) -> Result<Vec<f32>, ModelError> {
    check_planar(src.len(), height, width)?;
    check_output(crop, crop)?;
    if crop > shorter {
        return Err(ModelError::InvalidInput {
            what: format!("centre crop {crop} is larger than the resized shorter side {shorter}"),
        });
    }
    let (out_h, out_w) = if height <= width {
        (shorter, width * shorter / height)
    } else {
        (height * shorter / width, shorter)
    };
    let top = (out_h - crop) / 2;
    let left = (out_w - crop) / 2;
    let rows = antialias_windows(height, out_h);
    let cols = antialias_windows(width, out_w);
    let (rows, cols) = (&rows[top..top + crop], &cols[left..left + crop]);
    Ok(Resampler::new(height, width, rows.to_vec(), cols.to_vec(), true).run(src))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resampler (its row-at-a-time vertical pass, and on the AVX-512 level its permuted
    /// horizontal pass) equals the per-pixel twin bit for bit, on real CIFAR-100 test images:
    /// as u8, as signed floats (with `-0.0` for the darkest values), and their
    /// float resamplings to 13 x 13 (a source narrower than a register pair) and 64 x 64 (wider
    /// than the permutes take), for every kernel, upscaling and downscaling, with and without
    /// 8-bit rounding.
    #[test]
    fn resample_equals_its_per_pixel_twin_bit_for_bit() {
        let root = crate::data::DataRoot::resolve(None, None).expect("real data root");
        let test = crate::data::cifar::Cifar100::load(&root, false)
            .expect("CIFAR-100")
            .test;
        type Windows = fn(usize, usize) -> Vec<Window>;
        let kernels: [(&str, Windows); 3] = [
            ("bicubic", bicubic_windows),
            ("bilinear", bilinear_windows),
            ("antialias", antialias_windows),
        ];
        let same_bits = |fast: &[f32], plain: &[f32], what: &str| {
            assert_eq!(fast.len(), plain.len(), "{what}: lengths");
            let differs = fast
                .iter()
                .zip(plain)
                .position(|(a, b)| a.to_bits() != b.to_bits());
            if let Some(i) = differs {
                panic!("{what}: value {i} is {} against {}", fast[i], plain[i]);
            }
        };
        // The permutes take every bicubic and bilinear window from a source of at most 32
        // columns, without rounding (antialiased downscaling has longer windows).
        let resampler = |name: &str, side: usize, rows: &[Window], cols: &[Window], round| {
            let resampler = Resampler::new(side, side, rows.to_vec(), cols.to_vec(), round);
            if name != "antialias" && side <= PLAN_WIDTH && !round {
                assert!(resampler.columns.is_some(), "{name}: a plan at {side} px");
            }
            resampler
        };
        for image in test.pixels.chunks_exact(3 * 32 * 32).take(40) {
            // Dark values as -0.0: a window of them sums to -0.0, which an added +0.0 would
            // turn into +0.0.
            let signed: Vec<f32> = image
                .iter()
                .map(|&v| {
                    if v < 96 {
                        -0.0
                    } else {
                        (f32::from(v) - 128.0) / 4.0
                    }
                })
                .collect();
            for (name, windows) in kernels {
                let resized = |side| {
                    resampler(name, 32, &windows(32, side), &windows(32, side), false).run(&signed)
                };
                let sources = [(resized(13), 13), (resized(64), 64), (signed.clone(), 32)];
                for (oh, ow) in [(160, 160), (224, 224), (64, 96), (13, 7), (32, 32)] {
                    let (rows, cols) = (windows(32, oh), windows(32, ow));
                    for round in [false, true] {
                        let fast = resampler(name, 32, &rows, &cols, round).run(image);
                        let plain = resample_ref(image, 32, 32, &rows, &cols, round);
                        same_bits(&fast, &plain, &format!("{name} {oh}x{ow} u8 {round}"));
                    }
                    for (src, side) in &sources {
                        let (rows, cols) = (windows(*side, oh), windows(*side, ow));
                        let fast = resampler(name, *side, &rows, &cols, false).run(&src[..]);
                        let plain = resample_ref(&src[..], *side, *side, &rows, &cols, false);
                        same_bits(&fast, &plain, &format!("{name} {side} -> {oh}x{ow} f32"));
                    }
                }
            }
        }
    }

    fn assert_close(actual: &[f32], expected: &[f32], tol: f32) {
        assert_eq!(actual.len(), expected.len());
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            assert!((a - e).abs() <= tol, "index {i}: got {a}, expected {e}");
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        // hand-made input for a pure-function unit test
        let src = vec![200u8; 3 * 5 * 7];
        for (h, w) in [(5, 7), (12, 3), (32, 32), (2, 9), (1, 1)] {
            let expected = vec![200.0; 3 * h * w];
            let out = resize_bicubic(&src, 5, 7, h, w).expect("valid sizes");
            assert_close(&out, &expected, 1e-3);
            let out = resize_bilinear(&src, 5, 7, h, w).expect("valid sizes");
            assert_close(&out, &expected, 1e-3);
            let out = resize_bilinear_antialias(&src, 5, 7, h, w).expect("valid sizes");
            assert_close(&out, &expected, 1e-3);
        }
    }

    #[test]
    fn same_size_is_identity() {
        // hand-made input for a pure-function unit test
        let src: Vec<u8> = (0..3 * 4 * 6).map(|i| (i * 37 % 256) as u8).collect();
        let expected: Vec<f32> = src.iter().map(|&v| f32::from(v)).collect();
        assert_eq!(resize_bicubic(&src, 4, 6, 4, 6).expect("valid"), expected);
        assert_eq!(resize_bilinear(&src, 4, 6, 4, 6).expect("valid"), expected);
        assert_eq!(
            resize_bilinear_antialias(&src, 4, 6, 4, 6).expect("valid"),
            expected
        );
        let src_f: Vec<f32> = expected.iter().map(|v| v * 0.5 - 3.0).collect();
        assert_eq!(resize_bicubic(&src_f, 4, 6, 4, 6).expect("valid"), src_f);
    }

    #[test]
    fn bilinear_reproduces_linear_ramp() {
        // hand-made input for a pure-function unit test: v(y, x) = 10 x + 3 y + c on plane c.
        let (h, w) = (8, 8);
        let ramp = |c: f32, y: f32, x: f32| 10.0 * x + 3.0 * y + c;
        let src: Vec<f32> = (0..3)
            .flat_map(|c| (0..h).flat_map(move |y| (0..w).map(move |x| (c, y, x))))
            .map(|(c, y, x)| ramp(c as f32, y as f32, x as f32))
            .collect();
        // Downscale 8 -> 4: output d samples s = (d + 0.5) * 2 - 0.5 = 2d + 0.5 (interior).
        let out = resize_bilinear(&src, h, w, 4, 4).expect("valid");
        let expected: Vec<f32> = (0..3)
            .flat_map(|c| (0..4).flat_map(move |y| (0..4).map(move |x| (c, y, x))))
            .map(|(c, y, x)| ramp(c as f32, 2.0 * y as f32 + 0.5, 2.0 * x as f32 + 0.5))
            .collect();
        assert_close(&out, &expected, 1e-4);
        // Upscale 8 -> 16: s = (d + 0.5) / 2 - 0.5, clamped to [0, 7] at the borders.
        let out = resize_bilinear(&src, h, w, 16, 16).expect("valid");
        let coord = |d: usize| ((d as f32 + 0.5) / 2.0 - 0.5).clamp(0.0, 7.0);
        let expected: Vec<f32> = (0..3)
            .flat_map(|c| (0..16).flat_map(move |y| (0..16).map(move |x| (c, y, x))))
            .map(|(c, y, x)| ramp(c as f32, coord(y), coord(x)))
            .collect();
        assert_close(&out, &expected, 1e-4);
        // Antialiased bilinear is the same filter when upscaling.
        let aa = resize_bilinear_antialias(&src, h, w, 16, 16).expect("valid");
        assert_close(&aa, &out, 1e-4);
    }

    #[test]
    fn bicubic_2x2_to_4x4_matches_hand_computation() {
        // hand-made input for a pure-function unit test: every plane is [[0, 10], [20, 30]].
        //
        // Scale 2 -> 4: s = (d + 0.5) / 2 - 0.5, so d = 0 gives s = -0.25 (i = -1, t = 0.75)
        // and d = 1 gives s = 0.25 (i = 0, t = 0.25). With a = -0.75:
        //   W(0.25) = (1.25 * 0.25 - 2.25) * 0.0625 + 1                =  0.87890625
        //   W(0.75) = (1.25 * 0.75 - 2.25) * 0.5625 + 1                =  0.26171875
        //   W(1.25) = ((-0.75 * 1.25 + 3.75) * 1.25 - 6) * 1.25 + 3    = -0.10546875
        //   W(1.75) = ((-0.75 * 1.75 + 3.75) * 1.75 - 6) * 1.75 + 3    = -0.03515625
        // d = 0: taps at clamped indices (0, 0, 0, 1) with weights
        //   (W(1.75), W(0.75), W(0.25), W(1.25)); only index 1 differs from index 0, so the
        //   value moves from v0 by W(1.25) * (v1 - v0) = -0.10546875 * (v1 - v0).
        // d = 1: taps at (0, 0, 1, 1) with weights (W(1.25), W(0.25), W(0.75), W(1.75)): the
        //   step is (W(0.75) + W(1.75)) * (v1 - v0) = 0.2265625 * (v1 - v0).
        // The input is bilinear in (x, y) with steps 10 (x) and 20 (y), so
        //   out[0][0] = 10 * -0.10546875 + 20 * -0.10546875 = -3.1640625 (overshoot)
        //   out[0][1] = 10 *  0.2265625  + 20 * -0.10546875 =  0.15625
        //   out[1][1] = 10 *  0.2265625  + 20 *  0.2265625  =  6.796875
        // and out[3][3] mirrors out[0][0]: 30 + 3.1640625. (PyTorch agrees, e.g.
        // [[1, 2], [3, 4]] -> 0.68359375 at [0][0].)
        let plane = [0u8, 10, 20, 30];
        let src: Vec<u8> = plane.iter().copied().cycle().take(12).collect();
        let out = resize_bicubic_square(&src, 2, 2, 4).expect("valid");
        assert_eq!(out.len(), 3 * 16);
        for p in out.chunks_exact(16) {
            assert!((p[0] - -3.1640625).abs() < 1e-4, "got {}", p[0]);
            assert!((p[1] - 0.15625).abs() < 1e-4, "got {}", p[1]);
            assert!((p[5] - 6.796875).abs() < 1e-4, "got {}", p[5]);
            assert!((p[15] + p[0] - 30.0).abs() < 1e-4, "got {}", p[15]);
        }
    }

    #[test]
    fn antialias_downscale_matches_hand_computation() {
        // hand-made input for a pure-function unit test: every row of every plane is
        // [0, 10, 20, 30], height 1. Width 4 -> 2: scale f = 2, output 0 is centred at c = 1
        // and sees pixels j with |j + 0.5 - 1| < 2, i.e. j = 0, 1, 2, with triangle weights
        // 1 - |j - 0.5| / 2 = 0.75, 0.75, 0.25 (sum 1.75), so
        //   out[0] = (0 * 0.75 + 10 * 0.75 + 20 * 0.25) / 1.75 = 50 / 7 = 7.142857...
        // and by symmetry out[1] = 30 - 50 / 7.
        let src: Vec<u8> = [0u8, 10, 20, 30].repeat(3);
        let out = resize_bilinear_antialias(&src, 1, 4, 1, 2).expect("valid");
        let expected = [50.0 / 7.0, 30.0 - 50.0 / 7.0].repeat(3);
        assert_close(&out, &expected, 1e-4);
    }

    #[test]
    fn shorter_side_and_center_crop_geometry() {
        // hand-made input for a pure-function unit test: v(y, x) = 10 x on every plane.
        let (h, w) = (2, 4);
        let src: Vec<u8> = (0..3 * h * w).map(|i| (10 * (i % w)) as u8).collect();
        // Shorter side 2 -> 1 (f = 2): resized to 1x2, each column as in the antialias test
        // (7.14 and 22.86, rounded to 7 and 23); crop 1 keeps column (2 - 1) / 2 = 0.
        let out = resize_shorter_center_crop(&src, h, w, 1, 1).expect("valid");
        assert_eq!(out, vec![7.0; 3]);
        // A square image resized to its own size and cropped in the middle.
        let src: Vec<u8> = (0..3 * 16).map(|i| i as u8).collect();
        let out = resize_shorter_center_crop(&src, 4, 4, 4, 2).expect("valid");
        // Plane c holds 16 c + 4 y + x; the crop keeps rows and columns 1..3.
        let expected: Vec<f32> = (0..3)
            .flat_map(|c| [5.0, 6.0, 9.0, 10.0].map(|v| v + 16.0 * c as f32))
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn rejects_bad_buffers() {
        // hand-made input for a pure-function unit test
        assert!(matches!(
            resize_bicubic(&[0u8; 10], 2, 2, 4, 4),
            Err(ModelError::InvalidInput { .. })
        ));
        assert!(matches!(
            resize_bilinear(&[0u8; 12], 2, 2, 0, 4),
            Err(ModelError::InvalidInput { .. })
        ));
        assert!(matches!(
            resize_bilinear_antialias(&[0u8; 0], 0, 2, 1, 1),
            Err(ModelError::InvalidInput { .. })
        ));
        assert!(matches!(
            resize_shorter_center_crop(&[0u8; 12], 2, 2, 2, 3),
            Err(ModelError::InvalidInput { .. })
        ));
    }
}
