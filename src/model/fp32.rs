//! `f32` matrix products for the 1x1 convolutions of the frozen EfficientNet-Lite
//! (`model.precision: fp32`) on AVX-512: weights packed once, and the epilogue (bias, residual,
//! ReLU6) applied in registers, so that a product reads its input once and writes its output
//! once.
//!
//! **The sums are exactly gemm's**, the engine of the portable path ([`super::matmul_acc`]),
//! so the features are bit for bit the same at every SIMD level: each output starts from its
//! start terms (the bias, plus the residual), `k` is cut into equal blocks of at most
//! [`MAX_BLOCK`] ([`block_len`]), and each block's products are accumulated from zero with
//! fused multiply-adds in the order of `k`, then added to the output in one rounding. That is
//! how gemm 0.19's micro-kernels sum, with the depth blocks its cache model chooses on x86-64
//! (at least 512, split evenly). [`matmul_ref`] is the plain twin, one scalar loop in that
//! order; the tests check the kernel against it and both against gemm, bit for bit.
//!
//! What it saves over gemm: packing the weights at every call, writing the start terms before
//! the product and clamping after it in separate passes, and gemm's narrow edge kernels.

use super::aligned::Aligned;
#[cfg(target_arch = "x86_64")]
use super::tiles::{self, MicroKernel, Tile};
use super::tiles::{STRIP, Start};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// The largest depth block: past it, `k` is split into `k.div_ceil(MAX_BLOCK)` equal blocks.
pub const MAX_BLOCK: usize = 512;

/// The length of the depth blocks of a product over `k` (the last one may be shorter).
#[must_use]
pub fn block_len(k: usize) -> usize {
    k.div_ceil(k.div_ceil(MAX_BLOCK).max(1)).max(1)
}

/// Whether gemm runs an `[m, k] x [k, n]` product on its micro-kernels with the depth blocks
/// of [`block_len`], so that [`matmul`] sums it the same way. gemm takes other paths for a
/// depth of at most 2, a single row or column (matrix-vector products), and a product of at
/// most 64 rows and 64 columns deeper than [`MAX_BLOCK`] (blocks of 512 and a remainder);
/// those stay on gemm.
#[must_use]
pub fn sums_as_gemm(m: usize, k: usize, n: usize) -> bool {
    k > 2 && m > 1 && n > 1 && (k <= MAX_BLOCK || m > 64 || n > 64)
}

/// Whether this process runs the packed kernel: x86-64 at the AVX-512 level (not capped below
/// it by `HARNESS_SIMD`).
#[must_use]
pub fn available() -> bool {
    cfg!(target_arch = "x86_64") && crate::simd::level() == crate::simd::Level::Avx512
}

/// The `[k, n]` weights of a product in strips of 16 columns, each `[k][16]`, zero past `n`.
#[derive(Debug, Clone)]
pub struct PackedWeights {
    k: usize,
    n: usize,
    data: Aligned<f32>,
}

impl PackedWeights {
    /// Lays out `weight` (`[k, n]`, row-major) for the kernel.
    ///
    /// # Panics
    /// If `weight` is not `k * n` long.
    #[must_use]
    pub fn new(weight: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(weight.len(), k * n, "weight is not [{k}, {n}]");
        let strips = n.div_ceil(STRIP);
        let mut data = Aligned::zeroed(strips * k * STRIP);
        for (i, &w) in weight.iter().enumerate() {
            let (row, col) = (i / n, i % n);
            data[((col / STRIP) * k + row) * STRIP + col % STRIP] = w;
        }
        Self { k, n, data }
    }
}

/// `out = start + lhs x weights`, then ReLU6 where asked: `lhs` is `[m, k]` and `out`
/// `[m, n]`, row-major, summed as gemm sums where [`sums_as_gemm`] holds (see the module).
///
/// # Panics
/// If the slices are not `[m, k]`, `[n]` and `[m, n]`, or if [`available`] is false.
pub fn matmul(
    lhs: &[f32],
    m: usize,
    weights: &PackedWeights,
    start: Start<'_>,
    out: &mut [f32],
    relu6: bool,
) {
    let (k, n) = (weights.k, weights.n);
    assert!(available(), "the packed f32 kernel needs AVX-512");
    assert_eq!(lhs.len(), m * k, "lhs is not [{m}, {k}]");
    start.check(m, n, out);
    // SAFETY: `available` found AVX-512; the lengths were checked above.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        tiles::for_each_tile::<Fp32>(lhs, m, k, k, &weights.data, k * STRIP, start, out, relu6);
    }
}

/// The plain twin of [`matmul`] on the `[k, n]` row-major `weight`: per output, the start
/// terms, then each depth block summed from zero with `mul_add` in order of `k` and added;
/// ReLU6 as comparisons (`x > 0 ? x : 0`, then `x < 6 ? x : 6`, so -0 and NaN become 0).
pub fn matmul_ref(
    lhs: &[f32],
    m: usize,
    weight: &[f32],
    start: Start<'_>,
    out: &mut [f32],
    relu6: bool,
) {
    let n = start.bias.len();
    let k = weight.len() / n.max(1);
    let blocks = k.div_ceil(MAX_BLOCK).max(1);
    let len = k.div_ceil(blocks).max(1);
    for i in 0..m {
        for j in 0..n {
            let mut total = start.bias[j] + start.skip.map_or(0.0, |s| s[i * n + j]);
            for from in (0..k).step_by(len) {
                let mut acc = 0.0f32;
                for p in from..(from + len).min(k) {
                    acc = lhs[i * k + p].mul_add(weight[p * n + j], acc);
                }
                total += acc;
            }
            if relu6 {
                total = if total > 0.0 { total } else { 0.0 };
                total = if total < 6.0 { total } else { 6.0 };
            }
            out[i * n + j] = total;
        }
    }
}

/// The `f32` micro-kernel of [`super::tiles`]' walk.
#[cfg(target_arch = "x86_64")]
struct Fp32;

#[cfg(target_arch = "x86_64")]
impl MicroKernel for Fp32 {
    type Elem = f32;
    /// Measured on the Xeon at 224 px, one thread: the 1x1 products took 6.1–6.5 ms per image
    /// with this threshold, 6.4–6.8 with two strips everywhere or from a depth of 64.
    const THREE_STRIPS_FROM: usize = 128;

    /// `R` rows by `S` strips of 16 columns over the whole depth: the totals start from the
    /// bias (plus the skip rows); each depth block accumulates from zero in registers and is
    /// added to the totals, which are stored once.
    ///
    /// # Safety
    /// AVX-512F; `t` covers `R` rows of `a` with `depth` values, `S` strips of weights, and the
    /// tile's valid columns of the bias, skip and output.
    #[target_feature(enable = "avx512f,avx512vl")]
    unsafe fn tile<const R: usize, const S: usize>(t: &Tile<f32>) {
        let masks = tiles::masks::<S>(t.cols);
        let (k, len) = (t.depth, block_len(t.depth));
        // SAFETY: every pointer stays within the bounds the caller guarantees.
        unsafe {
            let mut total = tiles::start_terms::<f32, R, S>(t, masks);
            let mut from = 0;
            while from < k {
                let to = (from + len).min(k);
                let mut acc = [[_mm512_setzero_ps(); S]; R];
                for p in from..to {
                    let w: [__m512; S] = std::array::from_fn(|s| {
                        _mm512_loadu_ps(t.b.add(s * t.strip_len + p * STRIP))
                    });
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let x = _mm512_set1_ps(*t.a.add(r * t.lda + p));
                        for (s, v) in acc.iter_mut().enumerate() {
                            *v = _mm512_fmadd_ps(w[s], x, *v);
                        }
                    }
                }
                for (total, acc) in total.iter_mut().zip(&acc) {
                    for (v, &x) in total.iter_mut().zip(acc) {
                        *v = _mm512_add_ps(*v, x);
                    }
                }
                from = to;
            }
            tiles::store(t, masks, &total);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Hand-made inputs (pseudo-random values), labelled as such: these are unit tests of pure
    //! arithmetic. The real network's features are compared with burn's layers in `frozen`.
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        crate::model::pseudo_random(n, seed, 2.0)
    }

    /// Shapes with every edge: rows not a multiple of 8, columns not a multiple of 16 or 32,
    /// and depths past one block (513, and the network's 672 and 1152, split in 2 and 3);
    /// tiles of three strips (from a depth of 128) with a partial last strip and a short last
    /// tile (13 x 144 x 40).
    const AWKWARD: [(usize, usize, usize); 15] = [
        (1, 1, 1),
        (5, 2, 20),
        (1, 40, 24),
        (1, 600, 80),
        (70, 600, 1),
        (7, 3, 5),
        (9, 16, 16),
        (17, 32, 24),
        (13, 33, 40),
        (8, 96, 17),
        (33, 47, 49),
        (10, 513, 80),
        (9, 672, 112),
        (11, 1152, 40),
        (13, 144, 40),
    ];

    struct Case {
        lhs: Vec<f32>,
        weight: Vec<f32>,
        bias: Vec<f32>,
        skip: Option<Vec<f32>>,
    }

    fn case(m: usize, k: usize, n: usize) -> Case {
        Case {
            lhs: pseudo_random(m * k, (m * 31 + k) as u64),
            weight: pseudo_random(k * n, (k * 17 + n) as u64),
            bias: pseudo_random(n, 5),
            // The residual on every other shape.
            skip: (m % 2 == 1).then(|| pseudo_random(m * n, 6)),
        }
    }

    impl Case {
        fn start(&self) -> Start<'_> {
            Start {
                bias: &self.bias,
                skip: self.skip.as_deref(),
            }
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn block_lengths_split_evenly_past_512() {
        assert_eq!(block_len(1), 1);
        assert_eq!(block_len(512), 512);
        assert_eq!(block_len(513), 257);
        assert_eq!(block_len(672), 336);
        assert_eq!(block_len(1152), 384);
        assert_eq!(block_len(1536), 512);
    }

    /// gemm's way: the start terms written, then `out += lhs x weight`, then ReLU6 by
    /// comparisons (the portable path of the features stage).
    fn on_gemm(c: &Case, m: usize, k: usize, n: usize, relu6: bool) -> Vec<f32> {
        let mut out = vec![f32::NAN; m * n];
        c.start().write(&mut out);
        crate::model::matmul_acc(m, k, n, &c.lhs, &c.weight, &mut out);
        if relu6 {
            for v in &mut out {
                *v = if *v > 0.0 { *v } else { 0.0 };
                *v = if *v < 6.0 { *v } else { 6.0 };
            }
        }
        out
    }

    /// The plain twin and the packed kernel against gemm, bit for bit, on every shape gemm
    /// sums on its micro-kernels: the claim that the kernel leaves the features unchanged
    /// rests on it. The shapes it sums otherwise are named, so that a change of gemm's paths
    /// shows here.
    #[test]
    fn the_kernel_and_its_plain_twin_sum_as_gemm_does() {
        let mut differ = Vec::new();
        let mut elsewhere = Vec::new();
        for (m, k, n) in AWKWARD {
            if !sums_as_gemm(m, k, n) {
                elsewhere.push((m, k, n));
                continue;
            }
            let c = case(m, k, n);
            let packed = PackedWeights::new(&c.weight, k, n);
            for relu6 in [false, true] {
                let expected = bits(&on_gemm(&c, m, k, n, relu6));
                let mut twin = vec![f32::NAN; m * n];
                matmul_ref(&c.lhs, m, &c.weight, c.start(), &mut twin, relu6);
                if bits(&twin) != expected {
                    differ.push(("twin", m, k, n, relu6));
                }
                if available() {
                    let mut out = vec![f32::NAN; m * n];
                    matmul(&c.lhs, m, &packed, c.start(), &mut out, relu6);
                    if bits(&out) != expected {
                        differ.push(("kernel", m, k, n, relu6));
                    }
                }
            }
        }
        assert!(differ.is_empty(), "differ from gemm: {differ:?}");
        assert_eq!(
            elsewhere,
            [
                (1, 1, 1),
                (5, 2, 20),
                (1, 40, 24),
                (1, 600, 80),
                (70, 600, 1),
                (11, 1152, 40)
            ]
        );
    }
}
