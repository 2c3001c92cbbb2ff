//! bfloat16 matrix products for the 1x1 convolutions of the frozen EfficientNet-Lite
//! (`model.precision: bf16`).
//!
//! Operands are rounded to bfloat16 (8 significant bits, round to nearest even, subnormal
//! inputs treated as zero) and multiplied exactly; the products are summed in `f32`. Where the
//! CPU has AVX512_BF16, [`Bf16Weights`] holds the weights packed for `vdpbf16ps`, which
//! multiplies two pairs of bf16 values and adds both products to an `f32` lane in one
//! instruction: twice the multiply-adds of an `f32` FMA per instruction, from half the bytes.
//! Elsewhere it holds the rounded weights as `f32` and the product runs on `gemm` with the
//! activations rounded the same way (the portable path): the same products, summed in another
//! order.
//!
//! Where the CPU also has AMX-BF16 (and Linux grants the tile state), the same packed weights
//! run on the tile kernel of [`super::amx`] instead: on such CPUs `vdpbf16ps` does half the
//! multiply-adds per second of the `f32` FMA, and `tdpbf16ps` many times them. [`Kernel`] names
//! the three paths.
//!
//! [`matmul_ref`] is the plain twin all are tested against: one scalar loop in the order
//! `vdpbf16ps` defines (per pair, the odd element's product first).

use super::aligned::Aligned;
use super::amx;
#[cfg(target_arch = "x86_64")]
use super::tiles::{self, MicroKernel, Tile};
use super::tiles::{STRIP, Start};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// `x` rounded to bfloat16 (the upper 16 bits of an `f32`): round to nearest, ties to even;
/// subnormal inputs become a zero of the same sign, NaN stays NaN. The same conversion as
/// `vcvtneps2bf16`.
#[must_use]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x0040) as u16;
    }
    if bits & 0x7f80_0000 == 0 {
        return ((bits >> 16) & 0x8000) as u16;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// The `f32` value of a bfloat16 (exact).
#[must_use]
pub fn from_bf16(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// `x` rounded to the nearest bfloat16, as an `f32`.
#[must_use]
pub fn round_bf16(x: f32) -> f32 {
    from_bf16(to_bf16(x))
}

/// Whether this process runs the `vdpbf16ps` kernels: the CPU has AVX512_BF16 and
/// `HARNESS_SIMD` does not cap the kernels below AVX-512.
#[must_use]
pub fn dot_product_instructions() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::simd::level() == crate::simd::Level::Avx512
            && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The kernel that runs the bf16 products of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AMX tiles (`tdpbf16ps`, [`super::amx`]).
    Tiles,
    /// AVX512_BF16 (`vdpbf16ps`).
    DotProducts,
    /// Rounded operands as `f32` on gemm.
    Portable,
}

impl Kernel {
    /// The fastest kernel this process can run: the first of the three that
    /// [runs here](Kernel::runs_here).
    #[must_use]
    pub fn detect() -> Self {
        if Self::Tiles.runs_here() {
            Self::Tiles
        } else if dot_product_instructions() {
            Self::DotProducts
        } else {
            Self::Portable
        }
    }

    /// Whether this process can run `self`: the tiles need [`super::amx::available`] and, to
    /// round the activations, what [`Kernel::DotProducts`] needs
    /// ([`dot_product_instructions`]).
    #[must_use]
    pub fn runs_here(self) -> bool {
        match self {
            Self::Tiles => amx::available() && dot_product_instructions(),
            Self::DotProducts => dot_product_instructions(),
            Self::Portable => true,
        }
    }

    /// The name benchmarks print: `amx`, `vdpbf16ps` or `portable`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Tiles => "amx",
            Self::DotProducts => "vdpbf16ps",
            Self::Portable => "portable",
        }
    }
}

/// Independent accumulator chains per thread in the instruction-rate loops ([`fma_loop`],
/// [`dot_product_loop`]): enough to hide either instruction's latency.
pub(crate) const CHAINS: usize = 12;

/// `iterations` rounds of [`CHAINS`] independent 16-lane FMAs.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn fma_loop(iterations: u64) -> f32 {
    let x = _mm512_set1_ps(0.999_999);
    let y = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(1.0); CHAINS];
    for _ in 0..iterations {
        for a in &mut acc {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
}

/// `iterations` rounds of [`CHAINS`] independent `vdpbf16ps` (32 bf16 products each).
///
/// # Safety
/// The CPU has AVX-512F and AVX512_BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
pub(crate) unsafe fn dot_product_loop(iterations: u64) -> f32 {
    let x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3), _mm512_set1_ps(1e-3));
    let y = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3), _mm512_set1_ps(1e-3));
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    for _ in 0..iterations {
        for a in &mut acc {
            *a = _mm512_dpbf16_ps(*a, x, y);
        }
    }
    acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
}

/// Whether `vdpbf16ps` does more multiply-adds per second than the `f32` FMA on this core,
/// timed once per process (the best of three short runs of [`dot_product_loop`] and
/// [`fma_loop`], a few milliseconds). Where it does not (an Intel Xeon here starts one every
/// two cycles against two FMAs per cycle: 120 against 233 G multiply-adds/s on 2 cores), bf16
/// products on it are slower than fp32; AMD Zen 4 runs it at the FMA's instruction rate, twice
/// the multiply-adds.
/// False without AVX512_BF16.
#[must_use]
pub fn dot_products_outpace_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static OUTPACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *OUTPACE.get_or_init(|| {
            if !dot_product_instructions() {
                return false;
            }
            const ITERATIONS: u64 = 200_000;
            let best = |run: fn(u64) -> f32| {
                (0..3)
                    .map(|_| {
                        let t = std::time::Instant::now();
                        std::hint::black_box(run(std::hint::black_box(ITERATIONS)));
                        t.elapsed().as_secs_f64()
                    })
                    .fold(f64::INFINITY, f64::min)
            };
            // SAFETY (both): `dot_product_instructions` checked AVX-512F and AVX512_BF16.
            let fma = best(|i| unsafe { fma_loop(i) });
            let dots = best(|i| unsafe { dot_product_loop(i) });
            // Multiply-adds per instruction: 16 for the FMA, 32 for vdpbf16ps.
            32.0 / dots > 16.0 / fma
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The `[k, n]` weights of a matrix product, rounded to bfloat16 and laid out for a kernel.
#[derive(Debug, Clone)]
pub struct Bf16Weights {
    k: usize,
    n: usize,
    layout: Layout,
}

#[derive(Debug, Clone)]
enum Layout {
    /// For `vdpbf16ps` and the AMX tiles: strips of 16 columns, each `[pairs][16 columns][2]`
    /// bf16 values, zero past `k` and `n`; `pairs` is `k / 2` rounded up, for the tiles to a
    /// multiple of 16.
    Packed {
        data: Aligned<u16>,
        pairs: usize,
        tiles: bool,
    },
    /// The portable path: the rounded values as `f32`, `[k, n]` row-major.
    Rounded(Vec<f32>),
}

impl Bf16Weights {
    /// Rounds and lays out `weight` (`[k, n]`, row-major) for the kernel this process runs
    /// ([`Kernel::detect`]).
    #[must_use]
    pub fn new(weight: &[f32], k: usize, n: usize) -> Self {
        Self::with_kernel(weight, k, n, Kernel::detect())
    }

    /// Rounds and lays out `weight` for `kernel`, which must [run here](Kernel::runs_here)
    /// (for benchmarks and tests that compare the kernels).
    ///
    /// # Panics
    /// If `weight` is not `[k, n]`, or this process cannot run `kernel`.
    #[must_use]
    pub fn with_kernel(weight: &[f32], k: usize, n: usize, kernel: Kernel) -> Self {
        assert_eq!(weight.len(), k * n, "weight is not [{k}, {n}]");
        assert!(
            kernel.runs_here(),
            "this CPU cannot run the {} kernel",
            kernel.name()
        );
        let layout = if kernel == Kernel::Portable {
            Layout::Rounded(weight.iter().map(|&w| round_bf16(w)).collect())
        } else {
            let tiles = kernel == Kernel::Tiles;
            let pairs = if tiles {
                k.div_ceil(amx::DEPTH) * amx::DEPTH / 2
            } else {
                k.div_ceil(2)
            };
            let strips = n.div_ceil(STRIP);
            let mut data = Aligned::zeroed(strips * pairs * STRIP * 2);
            for (i, &w) in weight.iter().enumerate() {
                let (row, col) = (i / n, i % n);
                let (strip, lane) = (col / STRIP, col % STRIP);
                data[((strip * pairs + row / 2) * STRIP + lane) * 2 + row % 2] = to_bf16(w);
            }
            Layout::Packed { data, pairs, tiles }
        };
        Self { k, n, layout }
    }

    /// Input width `k`.
    #[must_use]
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output width `n`.
    #[must_use]
    pub fn n(&self) -> usize {
        self.n
    }

    /// For [`matmul_rounded`] on `m` rows: the width of a rounded row (`k`, then zeros) and
    /// the rows the kernel reads (the AMX kernel whole blocks of 32); `None` on the portable
    /// path, which has no such rows.
    #[must_use]
    pub fn rounded_rows(&self, m: usize) -> Option<(usize, usize)> {
        match self.layout {
            Layout::Packed { pairs, tiles, .. } => {
                let padded = if tiles {
                    m.div_ceil(amx::BLOCK_ROWS) * amx::BLOCK_ROWS
                } else {
                    m
                };
                Some((pairs * 2, padded))
            }
            Layout::Rounded(_) => None,
        }
    }
}

/// Reusable buffers of [`matmul`]: the activations rounded to bfloat16, and the AMX kernel's
/// two blocks of sums.
#[derive(Debug, Default)]
pub struct Bf16Scratch {
    pairs: Aligned<u16>,
    rounded: Vec<f32>,
    blocks: Aligned<f32>,
}

/// `out = bias (+ skip) + round(lhs) x round(weights)`: `lhs` is `[m, k]` and `out` `[m, n]`,
/// row-major, with both operands rounded to bfloat16 and the products summed in `f32` onto the
/// start terms. With `relu6`, the sums are then clamped to `[0, 6]`.
///
/// # Panics
/// If the slices are not `[m, k]`, `[n]` and `[m, n]`.
pub fn matmul(
    lhs: &[f32],
    m: usize,
    weights: &Bf16Weights,
    start: Start<'_>,
    out: &mut [f32],
    relu6: bool,
    scratch: &mut Bf16Scratch,
) {
    let (k, n) = (weights.k, weights.n);
    assert_eq!(lhs.len(), m * k, "lhs is not [{m}, {k}]");
    start.check(m, n, out);
    match &weights.layout {
        #[cfg(target_arch = "x86_64")]
        Layout::Packed { .. } => {
            let (width, padded) = weights.rounded_rows(m).expect("a packed layout");
            let rows = scratch.pairs.prefix(padded * width);
            // SAFETY: a packed layout is only built for a kernel that runs here (AVX-512 and
            // AVX512_BF16); `rows` holds `m * width` values.
            unsafe { pairs_bf16(lhs, m, k, width, rows) };
            packed_product(rows, m, weights, start, out, relu6, &mut scratch.blocks);
        }
        #[cfg(not(target_arch = "x86_64"))]
        Layout::Packed { .. } => unreachable!("no packed layout off x86-64"),
        Layout::Rounded(rounded) => {
            start.write(out);
            scratch.rounded.clear();
            scratch.rounded.extend(lhs.iter().map(|&x| round_bf16(x)));
            crate::model::matmul_acc(m, k, n, &scratch.rounded, rounded, out);
            if relu6 {
                clamp_relu6(out);
            }
        }
    }
}

/// [`matmul`] on activations already rounded to bfloat16 as it rounds them: `rows` holds `m`
/// rows of the width [`Bf16Weights::rounded_rows`] gives (the values, then zeros), and as
/// many rows as it says the kernel reads (rows past `m` may hold anything: their sums are not
/// stored). The depthwise layers of the frozen network write their outputs this way, for the
/// projections.
///
/// # Panics
/// If the weights have no packed layout (the portable path), or the slices are not `[n]`,
/// `[m, n]` and the rows `rounded_rows` gives.
pub fn matmul_rounded(
    rows: &[u16],
    m: usize,
    weights: &Bf16Weights,
    start: Start<'_>,
    out: &mut [f32],
    relu6: bool,
    scratch: &mut Bf16Scratch,
) {
    let (width, padded) = weights
        .rounded_rows(m)
        .expect("rounded rows need a packed layout");
    let n = weights.n;
    assert!(
        rows.len() >= padded * width,
        "rows are not [{padded}, {width}]"
    );
    start.check(m, n, out);
    packed_product(rows, m, weights, start, out, relu6, &mut scratch.blocks);
}

/// The packed kernels' product on rounded `rows` (the shapes already checked by the caller).
fn packed_product(
    rows: &[u16],
    m: usize,
    weights: &Bf16Weights,
    start: Start<'_>,
    out: &mut [f32],
    relu6: bool,
    blocks: &mut Aligned<f32>,
) {
    match &weights.layout {
        #[cfg(target_arch = "x86_64")]
        &Layout::Packed {
            ref data,
            pairs,
            tiles,
        } => {
            let width = pairs * 2;
            let strip_len = pairs * STRIP * 2;
            // SAFETY: a packed layout is only built for a kernel that runs here (AVX-512 and
            // AVX512_BF16, and for the tiles AMX); the buffers have the lengths the kernels
            // read and write.
            unsafe {
                if tiles {
                    let blocks = blocks.prefix(2 * amx::BLOCK_LEN);
                    amx::matmul(rows, m, width, data, strip_len, start, out, relu6, blocks);
                } else {
                    tiles::for_each_tile::<DotProducts>(
                        rows,
                        m,
                        width,
                        weights.k.div_ceil(2),
                        data,
                        strip_len,
                        start,
                        out,
                        relu6,
                    );
                }
            }
        }
        _ => unreachable!("rounded_rows is None off the packed layout"),
    }
}

fn clamp_relu6(out: &mut [f32]) {
    for v in out {
        *v = v.clamp(0.0, 6.0);
    }
}

/// The plain twin of [`matmul`]: `weight` is the `f32` `[k, n]` matrix, rounded here, and each
/// sum runs over the pairs of `k` in order, odd element first (as `vdpbf16ps` defines it).
#[allow(clippy::too_many_arguments)]
pub fn matmul_ref(
    lhs: &[f32],
    m: usize,
    weight: &[f32],
    k: usize,
    start: Start<'_>,
    out: &mut [f32],
    relu6: bool,
) {
    let n = start.bias.len();
    for i in 0..m {
        for j in 0..n {
            let mut acc = start.bias[j] + start.skip.map_or(0.0, |s| s[i * n + j]);
            for p in (0..k).step_by(2) {
                if p + 1 < k {
                    acc += round_bf16(lhs[i * k + p + 1]) * round_bf16(weight[(p + 1) * n + j]);
                }
                acc += round_bf16(lhs[i * k + p]) * round_bf16(weight[p * n + j]);
            }
            out[i * n + j] = acc;
        }
    }
    if relu6 {
        clamp_relu6(out);
    }
}

/// Sixteen `f32` rounded to bfloat16 by `vcvtneps2bf16` (as [`to_bf16`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
pub(crate) fn rounded_lanes(v: __m512) -> __m256i {
    // SAFETY: both are 256 bits of plain data.
    unsafe { std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v)) }
}

/// `lhs` (`[m, k]` f32) as bfloat16 rows padded with zeros to `width` (even, at least `k`):
/// `[m, width]`. Sixteen values at a time, masked at the row's end and in the padding (a
/// masked-off lane loads as zero and converts to a zero).
///
/// # Safety
/// The CPU has AVX-512F/BW/VL and AVX512_BF16; `out` holds `m * width` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,avx512vl")]
unsafe fn pairs_bf16(lhs: &[f32], m: usize, k: usize, width: usize, out: &mut [u16]) {
    assert!(width >= k && lhs.len() >= m * k && out.len() >= m * width);
    let lanes = tiles::lane_mask;
    for i in 0..m {
        let row = lhs[i * k..].as_ptr();
        let dst = out[i * width..].as_mut_ptr();
        for c in (0..width).step_by(16) {
            // SAFETY: the masks keep the load within the row's `k` values and the store within
            // its `width`.
            unsafe {
                let x = _mm512_maskz_loadu_ps(lanes(k.saturating_sub(c)), row.add(c));
                let v = rounded_lanes(x);
                _mm256_mask_storeu_epi16(dst.add(c).cast(), lanes(width - c), v);
            }
        }
    }
}

/// The `vdpbf16ps` micro-kernel of [`super::tiles`]' walk.
#[cfg(target_arch = "x86_64")]
struct DotProducts;

#[cfg(target_arch = "x86_64")]
impl MicroKernel for DotProducts {
    type Elem = u16;
    /// 128 values, as the `f32` kernel (its steps are pairs): measured on the Xeon with the
    /// tiles turned off (`HARNESS_SIMD=avx512`), the 1x1 products took 8.9–9.1 ms per image at
    /// 224 px, one thread, against 9.2–9.5 with two strips everywhere.
    const THREE_STRIPS_FROM: usize = 64;

    /// `R` rows by `S` strips of 16 columns (`cols` of them valid) over all pairs of `k` (the
    /// tile's depth); the accumulators start from the bias (and the skip rows), run in
    /// registers, and are stored once.
    ///
    /// # Safety
    /// AVX-512F/BW and AVX512_BF16; `t` covers `R` rows of `a` with `depth` pairs, `S` strips
    /// of packed weights, and the tile's valid columns of the bias, skip and output.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16,avx512vl")]
    unsafe fn tile<const R: usize, const S: usize>(t: &Tile<u16>) {
        let masks = tiles::masks::<S>(t.cols);
        // SAFETY: every pointer stays within the bounds the caller guarantees.
        unsafe {
            let mut acc = tiles::start_terms::<u16, R, S>(t, masks);
            for p in 0..t.depth {
                let w: [__m512bh; S] = std::array::from_fn(|s| {
                    std::mem::transmute(_mm512_loadu_si512(
                        t.b.add(s * t.strip_len + p * 32).cast(),
                    ))
                });
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = t.a.add(r * t.lda + p * 2).cast::<i32>().read_unaligned();
                    let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(x));
                    for (s, v) in acc.iter_mut().enumerate() {
                        *v = _mm512_dpbf16_ps(*v, x, w[s]);
                    }
                }
            }
            tiles::store(t, masks, &acc);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Hand-made inputs (pseudo-random values and edge-case floats), labelled as such: these
    //! are unit tests of pure arithmetic.
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        crate::model::pseudo_random(n, seed, 2.0)
    }

    #[test]
    fn rounding_is_to_nearest_even_and_flushes_subnormals() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
        assert_eq!(round_bf16(1.0 + 2f32.powi(-8)), 1.0);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6.
        assert_eq!(round_bf16(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2f32.powi(-6));
        // Just above the tie rounds up.
        assert_eq!(
            round_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20)),
            1.0 + 2f32.powi(-7)
        );
        assert_eq!(to_bf16(-1.0e-40), 0x8000);
        assert_eq!(to_bf16(1.0e-40), 0);
        assert!(round_bf16(f32::NAN).is_nan());
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
        assert_eq!(round_bf16(f32::MAX), f32::INFINITY);
        assert_eq!(round_bf16(-2.5), -2.5);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_vector_conversion_equals_the_scalar_one() {
        if !dot_product_instructions() {
            return;
        }
        let mut values = pseudo_random(997, 3);
        values.extend([
            0.0,
            -0.0,
            1.0e-40,
            -1.0e-40,
            1.0 + 2f32.powi(-8),
            1.0 + 3.0 * 2f32.powi(-8),
            f32::MAX,
            f32::MIN_POSITIVE,
            65504.0,
            -3.0e38,
        ]);
        let k = values.len();
        // Each row's width as the dot product kernel pads it (even) and as the tiles do (to
        // 32), on two rows: the padding is zero and the second row starts where it should.
        for width in [k.div_ceil(2) * 2, k.div_ceil(32) * 32 + 32] {
            let two_rows: Vec<f32> = values.iter().chain(values.iter().rev()).copied().collect();
            let mut out = vec![1u16; 2 * width];
            // SAFETY: dot_product_instructions() checked the features; out is 2 x width.
            unsafe { pairs_bf16(&two_rows, 2, k, width, &mut out) };
            for (row, dst) in two_rows.chunks(k).zip(out.chunks(width)) {
                for (i, (&v, &b)) in row.iter().zip(dst).enumerate() {
                    assert_eq!(b, to_bf16(v), "width {width}, value {i}: {v:e}");
                }
                assert!(dst[k..].iter().all(|&b| b == 0), "width {width}: padding");
            }
        }
    }

    /// The largest difference of `kernel`'s product from the plain twin on pseudo-random
    /// operands, in units of the sum of |products| (the bound of reordered f32 sums is about
    /// k * 2^-24 of that).
    fn worst_error(m: usize, k: usize, n: usize, kernel: Kernel, relu6: bool) -> f32 {
        let lhs = pseudo_random(m * k, (m * 31 + k) as u64);
        let weight = pseudo_random(k * n, (k * 17 + n) as u64);
        let bias = pseudo_random(n, 5);
        // The residual on every other shape.
        let skip = (m % 2 == 1).then(|| pseudo_random(m * n, 6));
        let start = Start {
            bias: &bias,
            skip: skip.as_deref(),
        };
        let mut expected = vec![f32::NAN; m * n];
        matmul_ref(&lhs, m, &weight, k, start, &mut expected, relu6);
        let weights = Bf16Weights::with_kernel(&weight, k, n, kernel);
        let mut out = vec![f32::NAN; m * n];
        // A scratch that held a larger product before: stale values must not leak in.
        let mut scratch = Bf16Scratch::default();
        let big = pseudo_random((m + 40) * (k + 40), 9);
        matmul(
            &big,
            m + 40,
            &Bf16Weights::with_kernel(&pseudo_random((k + 40) * n, 8), k + 40, n, kernel),
            Start {
                bias: &bias,
                skip: None,
            },
            &mut vec![0.0; (m + 40) * n],
            false,
            &mut scratch,
        );
        matmul(&lhs, m, &weights, start, &mut out, relu6, &mut scratch);
        let mut worst = 0.0f32;
        for i in 0..m {
            for j in 0..n {
                let scale: f32 = (0..k)
                    .map(|p| (round_bf16(lhs[i * k + p]) * round_bf16(weight[p * n + j])).abs())
                    .sum::<f32>()
                    + 1.0;
                let e = (out[i * n + j] - expected[i * n + j]).abs() / scale;
                // A NaN (an output never written) must fail the bound, not vanish in `max`.
                if e.is_nan() || e > worst {
                    worst = e;
                }
            }
        }
        worst
    }

    /// Shapes at the edges of every kernel's blocking: 1 row, 7, 8 and 9 rows (the dot
    /// product tiles), 31, 33 and 70 rows (the AMX blocks of 32); depths odd, below, at and
    /// above one tile (32), and 1152 (three tiles short of Lite0's deepest 1x1); 1 to 5 strips
    /// of 16 columns, partial and whole.
    const AWKWARD: [(usize, usize, usize); 11] = [
        (1, 1, 1),
        (7, 3, 5),
        (9, 16, 16),
        (17, 32, 24),
        (13, 33, 40),
        (8, 96, 17),
        (33, 47, 49),
        (64, 192, 80),
        (31, 64, 33),
        (70, 1152, 49),
        (1, 320, 72),
    ];

    fn check_against_twin(kernel: Kernel) {
        for (m, k, n) in AWKWARD {
            for relu6 in [false, true] {
                let e = worst_error(m, k, n, kernel, relu6);
                assert!(e <= k as f32 * 2f32.powi(-23), "{m}x{k}x{n}: {e:e}");
            }
        }
    }

    #[test]
    fn the_portable_product_equals_its_plain_twin() {
        // Run at whatever level this process detected (or HARNESS_SIMD caps it to).
        check_against_twin(Kernel::Portable);
    }

    #[test]
    fn the_dot_product_kernel_equals_its_plain_twin() {
        if Kernel::DotProducts.runs_here() {
            check_against_twin(Kernel::DotProducts);
        }
    }

    #[test]
    fn the_tile_kernel_equals_its_plain_twin() {
        if Kernel::Tiles.runs_here() {
            check_against_twin(Kernel::Tiles);
        }
    }
}
