//! The numeric kernels of the indices, each compiled for several instruction-set levels and
//! dispatched at run time ([`crate::simd::level`]): the canonical dot product [`dot`], its
//! blocked forms for the exact scan ([`scores_block`], [`tile`]), the block maximum, and the
//! Hamming distances of a block of packed codes ([`dist_block`]).
//!
//! # Arithmetic
//! Every similarity in this crate is computed by one canonical formula, so the
//! single-query scan, the batched (matrix-matrix) scan, the re-rankers and the
//! test oracles produce bit-identical scores: both vectors are (virtually)
//! zero-padded to a multiple of 8, eight lane accumulators are updated chunk by
//! chunk in order with a multiply-add (fused when the CPU has FMA, detected at
//! run time, else a separate multiply and add), and the lanes are summed as
//! `((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7))`. The kernels compute several
//! (query, row) pairs at once but keep exactly this per-pair order; LLVM turns
//! the eight lanes into one SIMD register.
//!
//! # Testing
//! Each kernel has a `_ref` twin in the tests, written independently and as plainly as
//! possible, and every level this CPU supports is checked against it at awkward lengths: bit
//! for bit against the twin of the same fusedness, and the fused against the unfused within a
//! stated rounding bound. `.ci/run` also runs the whole crate's index tests under
//! `HARNESS_SIMD=base`, so the portable kernels serve every search there.

use crate::simd::{Level, level};

/// Accumulator lanes of the canonical dot product.
pub(crate) const LANES: usize = 8;

/// Dot product of two vectors by the crate's canonical formula (see the
/// module docs). Vectors of different lengths are treated as zero-padded.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_at(level(), a, b)
}

/// [`dot`] with the kernel of `level` (one this CPU supports: [`level()`] or a level from
/// [`crate::simd::supported`]).
fn dot_at(level: Level, a: &[f32], b: &[f32]) -> f32 {
    debug_assert!(crate::simd::supported(level));
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    match level {
        Level::Base => dot_impl::<false>(a, b),
        // SAFETY: `level()` returned Avx2 or Avx512, so the CPU supports AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        _ => unsafe { dot_fma(a, b) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => dot_impl::<false>(a, b),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_fma(a: &[f32], b: &[f32]) -> f32 {
    fma::dot(a, b)
}

/// AVX2 + FMA kernels written with `std::arch` intrinsics (LLVM's
/// auto-vectoriser interleaves the portable kernel's lanes across rows and
/// runs it at under half speed). Same arithmetic as the portable code:
/// `_mm256_fmadd_ps` is a per-lane `f32::mul_add`, `fma::reduce` uses the
/// canonical grouping.
#[cfg(target_arch = "x86_64")]
pub(crate) mod fma {
    use super::{LANES, Lanes, padded_lanes};
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn load(a: &Lanes) -> __m256 {
        // SAFETY: `a` refers to 8 readable f32 values; `loadu` needs no alignment.
        unsafe { _mm256_loadu_ps(a.as_ptr()) }
    }

    /// `((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7))`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn reduce(v: __m256) -> f32 {
        let s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        let (ac, ar) = a.as_chunks::<LANES>();
        let (bc, br) = b.as_chunks::<LANES>();
        let mut acc = _mm256_setzero_ps();
        for (x, y) in ac.iter().zip(bc) {
            acc = _mm256_fmadd_ps(load(x), load(y), acc);
        }
        if !ar.is_empty() {
            acc = _mm256_fmadd_ps(load(&padded_lanes(ar)), load(&padded_lanes(br)), acc);
        }
        reduce(acc)
    }

    /// See [`super::kernel`].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn kernel<const MR: usize, const NR: usize>(
        q: [&[Lanes]; MR],
        x: [&[Lanes]; NR],
        chunks: usize,
    ) -> [[f32; NR]; MR] {
        let mut q = q;
        for r in q.iter_mut() {
            *r = &r[..chunks];
        }
        let mut x = x;
        for r in x.iter_mut() {
            *r = &r[..chunks];
        }
        let mut acc = [[_mm256_setzero_ps(); NR]; MR];
        for c in 0..chunks {
            let mut xv = [_mm256_setzero_ps(); NR];
            for j in 0..NR {
                xv[j] = load(&x[j][c]);
            }
            for i in 0..MR {
                let qv = load(&q[i][c]);
                for j in 0..NR {
                    acc[i][j] = _mm256_fmadd_ps(qv, xv[j], acc[i][j]);
                }
            }
        }
        let mut out = [[0.0; NR]; MR];
        for i in 0..MR {
            for j in 0..NR {
                out[i][j] = reduce(acc[i][j]);
            }
        }
        out
    }
}

/// The kernel for the `FMA` setting: intrinsics on x86-64, portable elsewhere.
#[inline(always)]
fn kern<const FMA: bool, const MR: usize, const NR: usize>(
    q: [&[Lanes]; MR],
    x: [&[Lanes]; NR],
    chunks: usize,
) -> [[f32; NR]; MR] {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: `FMA` is only true inside functions compiled for (and called
        // after detecting) AVX2 + FMA.
        return unsafe { fma::kernel::<MR, NR>(q, x, chunks) };
    }
    kernel::<FMA, MR, NR>(q, x, chunks)
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

#[inline(always)]
fn reduce(a: &[f32; LANES]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// Eight lanes of a vector.
pub(crate) type Lanes = [f32; LANES];

/// The first `n` values of `s` in a zero-padded lane array (`n <= 8`).
#[inline(always)]
fn padded_lanes(s: &[f32]) -> Lanes {
    let mut t = [0.0; LANES];
    for (l, v) in t.iter_mut().enumerate() {
        *v = s.get(l).copied().unwrap_or(0.0);
    }
    t
}

#[inline(always)]
fn dot_impl<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let (ac, ar) = a.as_chunks::<LANES>();
    let (bc, br) = b.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, y) in ac.iter().zip(bc) {
        for l in 0..LANES {
            acc[l] = madd::<FMA>(x[l], y[l], acc[l]);
        }
    }
    if !ar.is_empty() {
        let (x, y) = (padded_lanes(ar), padded_lanes(br));
        for l in 0..LANES {
            acc[l] = madd::<FMA>(x[l], y[l], acc[l]);
        }
    }
    reduce(&acc)
}

/// Computes the `MR x NR` dot products of `q` rows and `x` rows, each given
/// as `chunks` lane arrays, by the canonical formula.
///
/// The `x` rows are read from the contiguous storage with stride `d`, so the
/// last chunk of a row runs into the next row (or the zero slack after the
/// last row); the query's zero padding cancels those values: `madd(0, x,
/// acc) == acc` for finite `x` (up to the sign of a zero accumulator, which
/// no comparison sees).
#[inline(always)]
fn kernel<const FMA: bool, const MR: usize, const NR: usize>(
    q: [&[Lanes]; MR],
    x: [&[Lanes]; NR],
    chunks: usize,
) -> [[f32; NR]; MR] {
    let q = q.map(|r| &r[..chunks]);
    let x = x.map(|r| &r[..chunks]);
    let mut acc = [[[0.0f32; LANES]; NR]; MR];
    for c in 0..chunks {
        for i in 0..MR {
            let qv = q[i][c];
            for j in 0..NR {
                let xv = x[j][c];
                for l in 0..LANES {
                    acc[i][j][l] = madd::<FMA>(qv[l], xv[l], acc[i][j][l]);
                }
            }
        }
    }
    let mut out = [[0.0; NR]; MR];
    for i in 0..MR {
        for j in 0..NR {
            out[i][j] = reduce(&acc[i][j]);
        }
    }
    out
}

/// Row `j` of stride-`d` storage as `chunks` lane arrays (reads into the slack).
#[inline(always)]
fn row_lanes(data: &[f32], d: usize, j: usize, chunks: usize) -> &[Lanes] {
    data[j * d..j * d + chunks * LANES].as_chunks::<LANES>().0
}

/// Scores one padded query against rows `0..out.len()` of `data` (stride
/// `d`, followed by at least `LANES` readable values). Two rows at a time:
/// measured 2x faster than four (more concurrent row streams defeat the
/// hardware prefetcher and the scan falls well below memory bandwidth).
#[inline(always)]
fn scores_block_impl<const FMA: bool>(q: &[Lanes], data: &[f32], d: usize, out: &mut [f32]) {
    const NR: usize = 2;
    let chunks = q.len();
    let nb = out.len();
    let mut j = 0;
    while j + NR <= nb {
        let x: [&[Lanes]; NR] = std::array::from_fn(|t| row_lanes(data, d, j + t, chunks));
        let r = kern::<FMA, 1, NR>([q], x, chunks);
        out[j..j + NR].copy_from_slice(&r[0]);
        j += NR;
    }
    while j < nb {
        out[j] = kern::<FMA, 1, 1>([q], [row_lanes(data, d, j, chunks)], chunks)[0][0];
        j += 1;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn scores_block_fma(q: &[Lanes], data: &[f32], d: usize, out: &mut [f32]) {
    scores_block_impl::<true>(q, data, d, out);
}

/// Scores the padded query `q` (`chunks` lane arrays) against rows `0..out.len()` of `data`
/// (stride `d`, followed by at least `LANES` readable values) into `out`.
pub(crate) fn scores_block(q: &[Lanes], data: &[f32], d: usize, out: &mut [f32]) {
    scores_block_at(level(), q, data, d, out);
}

fn scores_block_at(level: Level, q: &[Lanes], data: &[f32], d: usize, out: &mut [f32]) {
    debug_assert!(crate::simd::supported(level));
    match level {
        Level::Base => scores_block_impl::<false>(q, data, d, out),
        // SAFETY: `level()` returned Avx2 or Avx512, so the CPU supports AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        _ => unsafe { scores_block_fma(q, data, d, out) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => scores_block_impl::<false>(q, data, d, out),
    }
}

/// Scores `qs.len() / chunks` padded queries against rows `0..nb` of `data`
/// (stride `d`, with slack) into `out` (`[query][row]`, stride `nb`).
#[inline(always)]
fn tile_impl<const FMA: bool>(
    qs: &[Lanes],
    chunks: usize,
    data: &[f32],
    d: usize,
    nb: usize,
    out: &mut [f32],
) {
    const MR: usize = 4;
    const NR: usize = 3;
    let nq = qs.len() / chunks;
    let qrow = |i: usize| &qs[i * chunks..(i + 1) * chunks];
    let mut i = 0;
    while i < nq {
        let mr = if i + MR <= nq { MR } else { 1 };
        let mut j = 0;
        while j < nb {
            let nr = if j + NR <= nb { NR } else { 1 };
            if mr == MR && nr == NR {
                let q: [&[Lanes]; MR] = std::array::from_fn(|t| qrow(i + t));
                let x: [&[Lanes]; NR] = std::array::from_fn(|t| row_lanes(data, d, j + t, chunks));
                let r = kern::<FMA, MR, NR>(q, x, chunks);
                for (t, rr) in r.iter().enumerate() {
                    out[(i + t) * nb + j..(i + t) * nb + j + NR].copy_from_slice(rr);
                }
            } else if mr == MR {
                let q: [&[Lanes]; MR] = std::array::from_fn(|t| qrow(i + t));
                let r = kern::<FMA, MR, 1>(q, [row_lanes(data, d, j, chunks)], chunks);
                for (t, rr) in r.iter().enumerate() {
                    out[(i + t) * nb + j] = rr[0];
                }
            } else if nr == NR {
                let x: [&[Lanes]; NR] = std::array::from_fn(|t| row_lanes(data, d, j + t, chunks));
                let r = kern::<FMA, 1, NR>([qrow(i)], x, chunks);
                out[i * nb + j..i * nb + j + NR].copy_from_slice(&r[0]);
            } else {
                out[i * nb + j] =
                    kern::<FMA, 1, 1>([qrow(i)], [row_lanes(data, d, j, chunks)], chunks)[0][0];
            }
            j += nr;
        }
        i += mr;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tile_fma(qs: &[Lanes], chunks: usize, data: &[f32], d: usize, nb: usize, out: &mut [f32]) {
    tile_impl::<true>(qs, chunks, data, d, nb, out);
}

/// Scores `qs.len() / chunks` padded queries against rows `0..nb` of `data` (stride `d`, with
/// slack) into `out` (`[query][row]`, stride `nb`).
pub(crate) fn tile(
    qs: &[Lanes],
    chunks: usize,
    data: &[f32],
    d: usize,
    nb: usize,
    out: &mut [f32],
) {
    tile_at(level(), qs, chunks, data, d, nb, out);
}

fn tile_at(
    level: Level,
    qs: &[Lanes],
    chunks: usize,
    data: &[f32],
    d: usize,
    nb: usize,
    out: &mut [f32],
) {
    debug_assert!(crate::simd::supported(level));
    match level {
        Level::Base => tile_impl::<false>(qs, chunks, data, d, nb, out),
        // SAFETY: `level()` returned Avx2 or Avx512, so the CPU supports AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        _ => unsafe { tile_fma(qs, chunks, data, d, nb, out) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => tile_impl::<false>(qs, chunks, data, d, nb, out),
    }
}

/// Maximum of a slice (`-inf` when empty), written so that it vectorises.
#[inline]
pub(crate) fn block_max(s: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let mut it = s.chunks_exact(LANES);
    for c in &mut it {
        for l in 0..LANES {
            m[l] = if c[l] > m[l] { c[l] } else { m[l] };
        }
    }
    for &v in it.remainder() {
        m[0] = if v > m[0] { v } else { m[0] };
    }
    m.into_iter()
        .fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a })
}

/// Rounds a dimension up to a multiple of the lane count.
pub(crate) fn padded(d: usize) -> usize {
    d.div_ceil(LANES) * LANES
}

/// Distances of every code in `codes` (`w` words each) to `q` into `out`;
/// returns their minimum (`u16::MAX` for an empty block).
#[inline(always)]
fn dist_block_impl(codes: &[u64], w: usize, q: &[u64], out: &mut [u16]) -> u16 {
    let mut m = u16::MAX;
    if w == 1 {
        let q0 = q[0];
        for (o, &c) in out.iter_mut().zip(codes) {
            let d = (c ^ q0).count_ones() as u16;
            *o = d;
            m = m.min(d);
        }
    } else if w == 2 {
        let (q0, q1) = (q[0], q[1]);
        for (o, c) in out.iter_mut().zip(codes.chunks_exact(2)) {
            let d = ((c[0] ^ q0).count_ones() + (c[1] ^ q1).count_ones()) as u16;
            *o = d;
            m = m.min(d);
        }
    } else {
        for (o, c) in out.iter_mut().zip(codes.chunks_exact(w)) {
            let d = c
                .iter()
                .zip(q)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum::<u32>() as u16;
            *o = d;
            m = m.min(d);
        }
    }
    m
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
fn dist_block_avx2(codes: &[u64], w: usize, q: &[u64], out: &mut [u16]) -> u16 {
    dist_block_impl(codes, w, q, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vpopcntdq,avx2,popcnt")]
fn dist_block_avx512(codes: &[u64], w: usize, q: &[u64], out: &mut [u16]) -> u16 {
    dist_block_impl(codes, w, q, out)
}

/// Distances of every code in `codes` (`w` words each) to `q` into `out`, by the best kernel
/// for this CPU; returns their minimum (`u16::MAX` for an empty block).
pub(crate) fn dist_block(codes: &[u64], w: usize, q: &[u64], out: &mut [u16]) -> u16 {
    dist_block_at(level(), codes, w, q, out)
}

fn dist_block_at(level: Level, codes: &[u64], w: usize, q: &[u64], out: &mut [u16]) -> u16 {
    debug_assert!(crate::simd::supported(level));
    match level {
        Level::Base => dist_block_impl(codes, w, q, out),
        // SAFETY: `level()` returned Avx2, so AVX2 and POPCNT are available.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { dist_block_avx2(codes, w, q, out) },
        // SAFETY: `level()` returned Avx512, so all enabled features are available.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { dist_block_avx512(codes, w, q, out) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => dist_block_impl(codes, w, q, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::supported_levels;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    /// Lengths around every lane and block boundary, and a few long ones.
    const LENGTHS: [usize; 16] = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 100, 257, 1031];

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// Whether `level` fuses its multiply-adds.
    fn fused(level: Level) -> bool {
        cfg!(target_arch = "x86_64") && level != Level::Base
    }

    /// The canonical formula spelled out element by element: element `i` goes to lane `i % 8`,
    /// the tail is zero-padded, the lanes are summed in the canonical grouping. Shares no code
    /// with the kernels.
    fn dot_ref(a: &[f32], b: &[f32], fused: bool) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = [0.0f32; 8];
        for i in 0..n.next_multiple_of(8) {
            let (x, y) = if i < n { (a[i], b[i]) } else { (0.0, 0.0) };
            acc[i % 8] = if fused {
                x.mul_add(y, acc[i % 8])
            } else {
                x * y + acc[i % 8]
            };
        }
        ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
    }

    /// Differing bits, counted one bit at a time.
    fn hamming_ref(a: &[u64], b: &[u64]) -> u16 {
        let mut d = 0;
        for (x, y) in a.iter().zip(b) {
            for bit in 0..64 {
                d += u16::from((x >> bit) & 1 != (y >> bit) & 1);
            }
        }
        d
    }

    /// Stride-`d` rows followed by `LANES` zeros of slack, as `ExactIndex` stores them.
    fn rows_with_slack(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut v = random(n * d, seed);
        v.resize(n * d + LANES, 0.0);
        v
    }

    /// `q` zero-padded to whole lane arrays.
    fn padded_query(q: &[f32]) -> Vec<Lanes> {
        let mut p = q.to_vec();
        p.resize(padded(q.len()), 0.0);
        p.as_chunks::<LANES>().0.to_vec()
    }

    #[test]
    fn dot_equals_its_twin_at_every_level() {
        for level in supported_levels() {
            for (i, &n) in LENGTHS.iter().enumerate() {
                let (a, b) = (random(n, i as u64), random(n, 100 + i as u64));
                let got = dot_at(level, &a, &b);
                let want = dot_ref(&a, &b, fused(level));
                assert_eq!(got.to_bits(), want.to_bits(), "{level:?} n={n}");
                // Unequal lengths: the longer vector's extra values are ignored.
                let longer = [b.as_slice(), &[5.0, -3.0]].concat();
                assert_eq!(dot_at(level, &a, &longer).to_bits(), want.to_bits());
            }
        }
    }

    #[test]
    fn fused_and_unfused_dots_stay_within_the_rounding_bound() {
        for (i, &n) in LENGTHS.iter().enumerate() {
            let (a, b) = (random(n, 7 + i as u64), random(n, 70 + i as u64));
            let exact: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            let magnitude: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y).abs()).sum();
            // Each lane adds ceil(n/8) terms in order, the reduction adds three more levels and
            // an unfused product rounds once: m = ceil(n/8) + 4 roundings of at most eps/2 each,
            // on partial sums bounded by the magnitude. The bound allows m * eps, twice the
            // first-order term, which covers the higher-order ones.
            let bound = (n.div_ceil(8) + 4) as f64 * f64::from(f32::EPSILON) * magnitude;
            for fused in [false, true] {
                let err = (f64::from(dot_ref(&a, &b, fused)) - exact).abs();
                assert!(err <= bound, "n={n} fused={fused}: {err} > {bound}");
            }
        }
    }

    #[test]
    fn score_blocks_equal_row_by_row_dots() {
        for level in supported_levels() {
            for d in [1, 3, 7, 8, 9, 17, 100, 127] {
                for nb in [1, 2, 3, 5, 64, 67] {
                    let data = rows_with_slack(nb, d, (d * nb) as u64);
                    let q = random(d, d as u64);
                    let mut out = vec![f32::NAN; nb];
                    scores_block_at(level, &padded_query(&q), &data, d, &mut out);
                    for (j, &got) in out.iter().enumerate() {
                        let want = dot_ref(&q, &data[j * d..(j + 1) * d], fused(level));
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{level:?} d={d} nb={nb} j={j}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn tiles_equal_pair_by_pair_dots() {
        for level in supported_levels() {
            for d in [1, 5, 8, 13, 100] {
                for (nq, nb) in [(1, 1), (3, 2), (4, 3), (5, 7), (9, 10), (12, 64)] {
                    let data = rows_with_slack(nb, d, (d + nb) as u64);
                    let queries = random(nq * d, (d * nq) as u64);
                    let qs: Vec<Lanes> = queries.chunks(d).flat_map(padded_query).collect();
                    let chunks = padded(d) / LANES;
                    let mut out = vec![f32::NAN; nq * nb];
                    tile_at(level, &qs, chunks, &data, d, nb, &mut out);
                    for i in 0..nq {
                        for j in 0..nb {
                            let q = &queries[i * d..(i + 1) * d];
                            let want = dot_ref(q, &data[j * d..(j + 1) * d], fused(level));
                            let got = out[i * nb + j];
                            assert_eq!(got.to_bits(), want.to_bits(), "{level:?} d={d} ({i},{j})");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn block_max_is_the_maximum() {
        for (i, &n) in LENGTHS.iter().enumerate() {
            let v = random(n, 300 + i as u64);
            let want = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(block_max(&v).to_bits(), want.to_bits(), "n={n}");
        }
    }

    #[test]
    fn hamming_blocks_equal_bit_by_bit_counts() {
        let mut rng = StdRng::seed_from_u64(5);
        for level in supported_levels() {
            for w in [1, 2, 3, 5] {
                for n in [0, 1, 2, 7, 33, 1025] {
                    let codes: Vec<u64> = (0..n * w).map(|_| rng.random()).collect();
                    let q: Vec<u64> = (0..w).map(|_| rng.random()).collect();
                    let mut out = vec![u16::MAX; n];
                    let min = dist_block_at(level, &codes, w, &q, &mut out);
                    let want: Vec<u16> = codes.chunks(w).map(|c| hamming_ref(c, &q)).collect();
                    assert_eq!(out, want, "{level:?} w={w} n={n}");
                    assert_eq!(min, want.iter().copied().min().unwrap_or(u16::MAX));
                }
            }
        }
    }
}
