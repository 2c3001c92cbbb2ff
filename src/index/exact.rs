//! Exact cosine top-k over L2-normalised float embeddings ([`ExactIndex`],
//! "Algorithm 2"), the shared dot product [`dot`], and its blocked kernels.
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
//! # Selection
//! Scores are computed block by block; a block whose maximum does not beat the
//! current k-th score is skipped, the rest go through a size-k heap
//! (`topk::ScoreTopK`). Nothing sorts all N items.

use rayon::prelude::*;

use super::topk::ScoreTopK;
use super::{Hit, IndexError, Query, Scratch, SearchIndex, check_len, effective_exclude};
use crate::simd::{Level, huge_zeroed, level};

/// Accumulator lanes of the canonical dot product.
const LANES: usize = 8;
/// Database rows per block in the single-query scan.
const BLOCK: usize = 256;
/// Database rows per block in the batched scan (a block stays in L1).
const BATCH_ROWS: usize = 64;
/// Most queries per group in the batched scan (a group's heaps and rows stay in L2).
const BATCH_QUERIES: usize = 256;

/// Dot product of two vectors by the crate's canonical formula (see the
/// module docs). Vectors of different lengths are treated as zero-padded.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    match level() {
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
mod fma {
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
    fn reduce(v: __m256) -> f32 {
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
type Lanes = [f32; LANES];

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

fn scores_block(q: &[Lanes], data: &[f32], d: usize, out: &mut [f32]) {
    match level() {
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

fn tile(qs: &[Lanes], chunks: usize, data: &[f32], d: usize, nb: usize, out: &mut [f32]) {
    match level() {
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

/// Offers the scores of rows `first..first + scores.len()` (ascending ids) to `top`.
#[inline]
pub(crate) fn offer_block(top: &mut ScoreTopK, scores: &[f32], first: usize, exclude: Option<u32>) {
    let mut thr = top.threshold();
    if block_max(scores) <= thr {
        return;
    }
    for (j, &s) in scores.iter().enumerate() {
        if s > thr {
            let id = (first + j) as u32;
            if Some(id) != exclude {
                top.push(s, id);
                thr = top.threshold();
            }
        }
    }
}

/// Rounds a dimension up to a multiple of the lane count.
fn padded(d: usize) -> usize {
    d.div_ceil(LANES) * LANES
}

/// L2-normalises `src` into `dst[..src.len()]` (norm computed in `f64`).
/// Returns `Err(Some(col))` for a non-finite value, `Err(None)` for zero norm.
pub(crate) fn normalise_into(src: &[f32], dst: &mut [f32]) -> Result<(), Option<usize>> {
    let mut ss = 0.0f64;
    for (c, &v) in src.iter().enumerate() {
        if !v.is_finite() {
            return Err(Some(c));
        }
        ss += f64::from(v) * f64::from(v);
    }
    if ss == 0.0 {
        return Err(None);
    }
    let inv = 1.0 / ss.sqrt();
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = (f64::from(v) * inv) as f32;
    }
    Ok(())
}

/// Normalises a query embedding into `buf` (resized to the padded dimension,
/// zero tail) after checking it against dimension `d`.
pub(crate) fn prepare_query(
    embedding: Option<&[f32]>,
    d: usize,
    buf: &mut Vec<f32>,
) -> Result<(), IndexError> {
    let e = embedding.ok_or(IndexError::MissingQueryPart("embedding"))?;
    if e.len() != d {
        return Err(IndexError::DimensionMismatch {
            expected: d,
            got: e.len(),
        });
    }
    buf.clear();
    buf.resize(padded(d), 0.0);
    normalise_into(e, buf).map_err(|col| match col {
        Some(col) => IndexError::QueryValue { col, value: e[col] },
        None => IndexError::QueryZeroNorm,
    })
}

/// Exact cosine-similarity index: L2-normalised rows stored row-major and
/// contiguous; a query is normalised too and scored by [`dot`].
#[derive(Debug, Clone, PartialEq)]
pub struct ExactIndex {
    n: usize,
    d: usize,
    /// `n * d` normalised values followed by `LANES` zeros of slack (the
    /// kernels read whole 8-lane chunks, and a row's last chunk may run past
    /// its end).
    data: Vec<f32>,
}

impl ExactIndex {
    /// Builds the index from `n` rows of dimension `d` (row-major `data`),
    /// normalising each row. Rejects NaN/inf (with row and column), zero-norm
    /// rows, `n == 0`, `d == 0` and a `data` length other than `n * d`.
    pub fn new(n: usize, d: usize, data: &[f32]) -> Result<Self, IndexError> {
        check_len(n)?;
        if d == 0 {
            return Err(IndexError::InvalidParameter(
                "embedding dimension must be >= 1".into(),
            ));
        }
        let expected = n
            .checked_mul(d)
            .ok_or_else(|| IndexError::InvalidParameter("n * d overflows".into()))?;
        if data.len() != expected {
            return Err(IndexError::DataLength {
                expected,
                got: data.len(),
            });
        }
        let mut out = huge_zeroed::<f32>(expected + LANES);
        for (row, (src, dst)) in data
            .chunks_exact(d)
            .zip(out.chunks_exact_mut(d))
            .enumerate()
        {
            normalise_into(src, dst).map_err(|col| match col {
                Some(col) => IndexError::NonFinite { row, col },
                None => IndexError::ZeroNorm { row },
            })?;
        }
        Ok(Self { n, d, data: out })
    }

    /// Rebuilds an index from already-normalised rows (as saved by
    /// [`ExactIndex::normalised_rows`]) without renormalising them.
    pub fn from_normalised(n: usize, d: usize, data: Vec<f32>) -> Result<Self, IndexError> {
        check_len(n)?;
        if d == 0 || n.checked_mul(d) != Some(data.len()) {
            return Err(IndexError::DataLength {
                expected: n.saturating_mul(d),
                got: data.len(),
            });
        }
        if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
            return Err(IndexError::NonFinite {
                row: pos / d,
                col: pos % d,
            });
        }
        let mut data = data;
        data.resize(data.len() + LANES, 0.0);
        Ok(Self { n, d, data })
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// The normalised row of item `i` (panics if `i >= len()`).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.d..(i + 1) * self.d]
    }

    /// All normalised rows, row-major.
    pub fn normalised_rows(&self) -> &[f32] {
        &self.data[..self.n * self.d]
    }
}

impl SearchIndex for ExactIndex {
    fn name(&self) -> &'static str {
        "exact"
    }

    fn len(&self) -> usize {
        self.n
    }

    fn bytes_per_item(&self) -> usize {
        self.d * std::mem::size_of::<f32>()
    }

    fn search(
        &self,
        query: &Query<'_>,
        k: usize,
        scratch: &mut Scratch,
        out: &mut Vec<Hit>,
    ) -> Result<(), IndexError> {
        out.clear();
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let d = self.d;
        prepare_query(query.embedding, d, &mut scratch.query)?;
        let ex = effective_exclude(query.exclude, self.n);
        let k_eff = k.min(self.n - usize::from(ex.is_some()));
        let Scratch {
            query: q,
            scores,
            top,
            ..
        } = scratch;
        top.reset(k_eff);
        if k_eff == 0 {
            return Ok(());
        }
        scores.resize(BLOCK, 0.0);
        let q = q.as_chunks::<LANES>().0;
        let mut start = 0;
        while start < self.n {
            let nb = BLOCK.min(self.n - start);
            let s = &mut scores[..nb];
            scores_block(q, &self.data[start * d..], d, s);
            offer_block(top, s, start, ex);
            start += nb;
        }
        top.drain_sorted(out);
        Ok(())
    }

    fn search_many(
        &self,
        queries: &[Query<'_>],
        k: usize,
        pool: &rayon::ThreadPool,
    ) -> Result<Vec<Vec<Hit>>, IndexError> {
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let (d, dp) = (self.d, padded(self.d));
        let nq = queries.len();
        let mut qbuf = vec![0.0f32; nq * dp];
        let mut tmp = Vec::new();
        for (q, dst) in queries.iter().zip(qbuf.chunks_exact_mut(dp)) {
            prepare_query(q.embedding, d, &mut tmp)?;
            dst.copy_from_slice(&tmp);
        }
        if nq == 0 {
            return Ok(Vec::new());
        }
        let threads = pool.current_num_threads().max(1);
        let group = nq.div_ceil(threads).clamp(1, BATCH_QUERIES);
        let groups: Vec<Vec<Vec<Hit>>> = pool.install(|| {
            qbuf.par_chunks(group * dp)
                .zip(queries.par_chunks(group))
                .map(|(qs, qmeta)| self.scan_group(qs, dp, qmeta, k))
                .collect()
        });
        Ok(groups.into_iter().flatten().collect())
    }
}

impl ExactIndex {
    /// Batched scan of one query group over the whole database.
    fn scan_group(&self, qs: &[f32], dp: usize, qmeta: &[Query<'_>], k: usize) -> Vec<Vec<Hit>> {
        let d = self.d;
        let nq = qmeta.len();
        let excl: Vec<Option<u32>> = qmeta
            .iter()
            .map(|q| effective_exclude(q.exclude, self.n))
            .collect();
        let mut tops: Vec<ScoreTopK> = excl
            .iter()
            .map(|e| {
                let mut t = ScoreTopK::default();
                t.reset(k.min(self.n - usize::from(e.is_some())));
                t
            })
            .collect();
        let mut tilebuf = vec![0.0f32; nq * BATCH_ROWS];
        let chunks = dp / LANES;
        let qs = qs.as_chunks::<LANES>().0;
        let mut start = 0;
        while start < self.n {
            let nb = BATCH_ROWS.min(self.n - start);
            let t = &mut tilebuf[..nq * nb];
            tile(qs, chunks, &self.data[start * d..], d, nb, t);
            for (i, top) in tops.iter_mut().enumerate() {
                offer_block(top, &t[i * nb..(i + 1) * nb], start, excl[i]);
            }
            start += nb;
        }
        tops.iter_mut()
            .map(|t| {
                let mut out = Vec::new();
                t.drain_sorted(&mut out);
                out
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::index::score_order;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    pub(crate) fn random_rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// Brute force: every score by `dot`, full sort by (score desc, id asc).
    pub(crate) fn oracle(
        index: &ExactIndex,
        q: &[f32],
        k: usize,
        exclude: Option<u32>,
    ) -> Vec<Hit> {
        let mut qn = vec![0.0; q.len()];
        normalise_into(q, &mut qn).unwrap();
        let mut all: Vec<Hit> = (0..index.len())
            .filter(|&i| Some(i as u32) != exclude)
            .map(|i| Hit {
                id: i as u32,
                score: dot(&qn, index.row(i)),
            })
            .collect();
        all.sort_by(score_order);
        all.truncate(k);
        all
    }

    fn pool(t: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .unwrap()
    }

    #[test]
    fn dot_matches_f64_reference() {
        for d in [1, 7, 8, 9, 100, 387] {
            let a = random_rows(1, d, 1);
            let b = random_rows(1, d, 2);
            let r: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((f64::from(dot(&a, &b)) - r).abs() < 1e-4, "d={d}");
        }
    }

    #[test]
    fn single_and_batch_match_oracle() {
        let p = pool(2);
        for (n, d) in [(1usize, 3usize), (2, 8), (1000, 100), (333, 17)] {
            let data = random_rows(n, d, n as u64 + d as u64);
            let index = ExactIndex::new(n, d, &data).unwrap();
            let qs = random_rows(9, d, 99);
            let queries: Vec<Query> = qs
                .chunks(d)
                .enumerate()
                .map(|(i, e)| Query {
                    embedding: Some(e),
                    exclude: (i % 2 == 0).then_some((i * 7 % n) as u32),
                    ..Query::default()
                })
                .collect();
            for k in [1, n, n + 5] {
                let batch = search_batch_ref(&index, &queries, k, &p);
                let mut s = Scratch::default();
                for (qi, q) in queries.iter().enumerate() {
                    let mut out = Vec::new();
                    index.search(q, k, &mut s, &mut out).unwrap();
                    let want = oracle(&index, q.embedding.unwrap(), k, q.exclude);
                    assert_eq!(out, want, "n={n} d={d} k={k} q={qi}");
                    assert_eq!(batch[qi], want, "batch n={n} d={d} k={k} q={qi}");
                }
            }
        }
    }

    fn search_batch_ref(
        index: &ExactIndex,
        q: &[Query],
        k: usize,
        p: &rayon::ThreadPool,
    ) -> Vec<Vec<Hit>> {
        crate::index::search_batch(index, q, k, p).unwrap()
    }

    #[test]
    fn ties_are_broken_by_lower_id() {
        // duplicated rows give identical scores
        let base = random_rows(5, 12, 3);
        let mut data = Vec::new();
        for _ in 0..40 {
            data.extend_from_slice(&base);
        }
        let index = ExactIndex::new(200, 12, &data).unwrap();
        let q = random_rows(1, 12, 4);
        let mut out = Vec::new();
        let query = Query {
            embedding: Some(&q),
            exclude: Some(0),
            ..Query::default()
        };
        index
            .search(&query, 50, &mut Scratch::default(), &mut out)
            .unwrap();
        assert_eq!(out, oracle(&index, &q, 50, Some(0)));
        let batch = search_batch_ref(&index, &[query], 50, &pool(1));
        assert_eq!(batch[0], out);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut data = random_rows(4, 3, 5);
        data[7] = f32::NAN;
        assert!(matches!(
            ExactIndex::new(4, 3, &data),
            Err(IndexError::NonFinite { row: 2, col: 1 })
        ));
        data[7] = f32::INFINITY;
        assert!(matches!(
            ExactIndex::new(4, 3, &data),
            Err(IndexError::NonFinite { row: 2, col: 1 })
        ));
        data[6..9].fill(0.0);
        assert!(matches!(
            ExactIndex::new(4, 3, &data),
            Err(IndexError::ZeroNorm { row: 2 })
        ));
        assert!(matches!(ExactIndex::new(0, 3, &[]), Err(IndexError::Empty)));
        assert!(matches!(
            ExactIndex::new(4, 3, &data[..5]),
            Err(IndexError::DataLength { .. })
        ));
        let index = ExactIndex::new(2, 3, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]).unwrap();
        let mut s = Scratch::default();
        let mut out = Vec::new();
        let q = [1.0, 2.0];
        let query = Query {
            embedding: Some(&q),
            ..Query::default()
        };
        assert!(matches!(
            index.search(&query, 1, &mut s, &mut out),
            Err(IndexError::DimensionMismatch {
                expected: 3,
                got: 2
            })
        ));
        let q3 = [1.0, f32::NAN, 0.0];
        let query3 = Query {
            embedding: Some(&q3),
            ..Query::default()
        };
        assert!(matches!(
            index.search(&query3, 0, &mut s, &mut out),
            Err(IndexError::ZeroK)
        ));
        assert!(matches!(
            index.search(&query3, 1, &mut s, &mut out),
            Err(IndexError::QueryValue { col: 1, .. })
        ));
        assert!(matches!(
            index.search(&Query::default(), 1, &mut s, &mut out),
            Err(IndexError::MissingQueryPart("embedding"))
        ));
        assert!(matches!(
            search_batch(&index, &[query3], 1, &pool(1)),
            Err(IndexError::QueryValue { col: 1, .. })
        ));
    }

    use crate::index::search_batch;

    #[test]
    fn single_item_leave_one_out_is_empty() {
        let index = ExactIndex::new(1, 2, &[1.0, 1.0]).unwrap();
        let mut out = vec![Hit { id: 9, score: 0.0 }];
        let q = [1.0, 0.0];
        let query = Query {
            embedding: Some(&q),
            exclude: Some(0),
            ..Query::default()
        };
        index
            .search(&query, 3, &mut Scratch::default(), &mut out)
            .unwrap();
        assert!(out.is_empty());
    }
}
