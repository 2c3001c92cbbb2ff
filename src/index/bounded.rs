//! Exact cosine top-k that reads a quarter of the bytes: [`BoundedIndex`] scans an int8 copy of
//! the normalised rows, keeps every row whose score could still reach the k-th, and re-scores
//! only those in f32. Its results are [`super::ExactIndex`]'s: the same ids, in the same order,
//! with the same scores, bit for bit.
//!
//! At a million rows the f32 scan reads 400 MB per query (d = 100) and runs at the memory
//! bandwidth limit; FAISS's `IndexFlatIP` is at the same limit. Reading fewer bytes is the only
//! way past it.
//!
//! # The bound
//! Row `x` (unit norm) is stored as `q = round(x * s)` in int8 with `s = 127 / max|x_j|`, and
//! `x ≈ q * r` with `r = 1 / s` kept in f32. For a unit query `y` the scan computes
//! `a = (Σ q_j y_j) * r` in f32. The score the exact index ranks by is `ŝ = dot(x, y)` (the
//! crate's canonical f32 dot product). Then
//!
//! `|ŝ - a| <= ||x - q r||_2 + rounding`,
//!
//! by Cauchy-Schwarz (`||y|| = 1`) for the quantisation part. The rounding of both f32 sums is
//! at most `γ = (d + 8) 2^-23` times the sum of the absolute products, itself at most about 1.
//! Each row keeps `ε = ||x - q r|| (computed in f64) + 3γ + 1e-6`.
//!
//! # The search
//! One pass over the int8 rows keeps a top-k heap of lower bounds `a - ε`. Its k-th value `τ`
//! only grows. A row whose upper bound `a + ε` falls below the current `τ` cannot be in the
//! top k (k rows already have exact scores of at least `τ`), so it is dropped. The others
//! become candidates. At the end, the candidates whose upper bound reaches the final `τ` are
//! re-scored with the exact index's own dot product and offered, in ascending id order, to
//! the same top-k collector the exact index uses. Every row of the true top k, and every row
//! tied with its k-th score, has `ŝ >= τ` and is among them, so ties resolve by id exactly as
//! in the exact index.

use super::exact::{ExactIndex, prepare_query};
use super::kernels::padded;
use super::storage::Array;
use super::topk::ScoreTopK;
use super::{Hit, IndexError, Preamble, Query, Scratch, SearchIndex, preamble};
use crate::simd::{Level, level};
use std::sync::Arc;

/// Rows whose approximate scores are computed at once.
const BLOCK: usize = 256;

/// [`ExactIndex`]'s results from an int8 scan and an f32 re-score of the few rows that could
/// be in the top k.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundedIndex {
    exact: Arc<ExactIndex>,
    /// Int8 rows, each padded with zeros to a multiple of 8.
    codes: Array<i8>,
    /// Per row, interleaved: the scale `r` (`x ≈ q r`) and the error bound `ε`.
    rows: Array<f32>,
}

impl BoundedIndex {
    /// Builds the int8 copy of `exact`'s normalised rows (shared, as the re-rank index
    /// shares it).
    pub fn new(exact: Arc<ExactIndex>) -> Self {
        let (n, d) = (exact.len(), exact.dim());
        let dp = padded(d);
        let gamma = (d + 8) as f64 * 2f64.powi(-23);
        let mut codes = vec![0i8; n * dp];
        let mut rows = Vec::with_capacity(2 * n);
        for (i, q) in codes.chunks_exact_mut(dp).enumerate() {
            let x = exact.row(i);
            let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            // A unit row has max >= 1 / sqrt(d) > 0.
            let scale = 127.0 / max;
            let r = max / 127.0;
            let mut err = 0.0f64;
            for (qj, &xj) in q.iter_mut().zip(x) {
                *qj = (xj * scale).round().clamp(-127.0, 127.0) as i8;
                let e = f64::from(xj) - f64::from(*qj) * f64::from(r);
                err += e * e;
            }
            let eps = err.sqrt() + 3.0 * gamma + 1e-6;
            rows.extend([r, eps as f32 * (1.0 + 1e-6)]);
        }
        Self {
            exact,
            codes: codes.into(),
            rows: rows.into(),
        }
    }

    /// An index over int8 rows and bounds mapped from an index file (as
    /// [`BoundedIndex::parts`] gives them), checking their lengths.
    pub(crate) fn from_parts(
        exact: Arc<ExactIndex>,
        codes: Array<i8>,
        rows: Array<f32>,
    ) -> Result<Self, IndexError> {
        let (n, dp) = (exact.len(), padded(exact.dim()));
        if codes.len() != n * dp || rows.len() != 2 * n {
            return Err(IndexError::Corrupt(format!(
                "bounded index: {} int8 values and {} bounds for {n} rows of {dp}",
                codes.len(),
                rows.len()
            )));
        }
        Ok(Self { exact, codes, rows })
    }

    /// True when the int8 rows are read from a mapped index file.
    #[cfg(test)]
    pub(crate) fn is_mapped(&self) -> bool {
        self.codes.is_mapped()
    }

    /// The int8 rows and the interleaved (scale, bound) pairs, as stored in index files.
    pub(crate) fn parts(&self) -> (&[i8], &[f32]) {
        (&self.codes, &self.rows)
    }

    /// The exact index it re-scores with.
    pub fn exact(&self) -> &ExactIndex {
        &self.exact
    }
}

/// `Σ q_j y_j` for the first `out.len()` int8 rows of `codes` (`dp` values each; `codes` may
/// hold more rows after them), four rows at a time.
#[inline(always)]
fn approx_impl(codes: &[i8], dp: usize, y: &[f32], out: &mut [f32]) {
    let sum = |acc: [f32; 8]| {
        ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
    };
    let y = &y[..dp];
    let mut i = 0;
    while i + 4 <= out.len() {
        let rows: [&[i8]; 4] = std::array::from_fn(|r| &codes[(i + r) * dp..(i + r + 1) * dp]);
        let mut acc = [[0.0f32; 8]; 4];
        for c in (0..dp).step_by(8) {
            for (a, row) in acc.iter_mut().zip(&rows) {
                for l in 0..8 {
                    a[l] += f32::from(row[c + l]) * y[c + l];
                }
            }
        }
        for (r, a) in acc.into_iter().enumerate() {
            out[i + r] = sum(a);
        }
        i += 4;
    }
    while i < out.len() {
        let row = &codes[i * dp..(i + 1) * dp];
        let mut a = [0.0f32; 8];
        for c in (0..dp).step_by(8) {
            for l in 0..8 {
                a[l] += f32::from(row[c + l]) * y[c + l];
            }
        }
        out[i] = sum(a);
        i += 1;
    }
}

/// [`approx_impl`] with AVX2 intrinsics (LLVM's vectoriser converts the int8 values one lane
/// at a time, at a third of this speed): eight int8 values widened to f32 in two instructions,
/// then a fused multiply-add, four rows at once. Fused, so its sums round differently from the
/// portable kernel's, within the same bound.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn approx_avx2(codes: &[i8], dp: usize, y: &[f32], out: &mut [f32]) {
    use super::kernels::fma::reduce;
    use std::arch::x86_64::*;
    assert!(codes.len() >= out.len() * dp && y.len() >= dp && dp.is_multiple_of(8));
    // Eight int8 values of row `r` at chunk `c`, as f32 lanes.
    let lanes = |r: usize, c: usize| {
        // SAFETY: `r < out.len()` and `c * 8 + 8 <= dp`, so the 8 bytes lie inside `codes`
        // (asserted above); `loadl` needs no alignment.
        let b = unsafe { _mm_loadl_epi64(codes.as_ptr().add(r * dp + c * 8).cast()) };
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b))
    };
    // SAFETY: `c * 8 + 8 <= dp <= y.len()`.
    let ylanes = |c: usize| unsafe { _mm256_loadu_ps(y.as_ptr().add(c * 8)) };
    let chunks = dp / 8;
    let mut i = 0;
    // Prefetch this far ahead (bytes): the hardware prefetcher alone left the loop waiting on
    // memory at about half the bandwidth the f32 scan reaches.
    const AHEAD: usize = 4096;
    // (Past the rows asked for, into the rest of `codes`: the caller passes the rows to the
    // end of the index.)
    let end = codes.len();
    while i + 4 <= out.len() {
        let from = i * dp + AHEAD;
        for at in (from..(from + 4 * dp).min(end)).step_by(64) {
            // SAFETY: `at < end <= codes.len()`; a prefetch never faults anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(codes.as_ptr().add(at).cast()) };
        }
        let mut acc = [_mm256_setzero_ps(); 4];
        for c in 0..chunks {
            let yc = ylanes(c);
            for (r, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(lanes(i + r, c), yc, *a);
            }
        }
        for (r, a) in acc.into_iter().enumerate() {
            out[i + r] = reduce(a);
        }
        i += 4;
    }
    while i < out.len() {
        let mut a = _mm256_setzero_ps();
        for c in 0..chunks {
            a = _mm256_fmadd_ps(lanes(i, c), ylanes(c), a);
        }
        out[i] = reduce(a);
        i += 1;
    }
}

fn approx(level: Level, codes: &[i8], dp: usize, y: &[f32], out: &mut [f32]) {
    match level {
        Level::Base => approx_impl(codes, dp, y, out),
        // SAFETY: `level()` returned Avx2 or Avx512, so the CPU supports AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        _ => unsafe { approx_avx2(codes, dp, y, out) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => approx_impl(codes, dp, y, out),
    }
}

impl SearchIndex for BoundedIndex {
    fn method(&self) -> super::Method {
        super::Method::ExactBounded
    }

    fn len(&self) -> usize {
        self.exact.len()
    }

    /// The int8 row, its scale and bound, and the f32 row for re-scoring.
    fn bytes_per_item(&self) -> usize {
        padded(self.exact.dim()) + 8 + self.exact.bytes_per_item()
    }

    fn search(
        &self,
        query: &Query<'_>,
        k: usize,
        scratch: &mut Scratch,
        out: &mut Vec<Hit>,
    ) -> Result<(), IndexError> {
        let (n, d) = (self.len(), self.exact.dim());
        let Preamble { ex, k_eff, .. } = preamble(k, query.exclude, n, out)?;
        let dp = padded(d);
        prepare_query(query.embedding, d, &mut scratch.query)?;
        let Scratch {
            query: y,
            scores,
            top,
            cands,
            ..
        } = scratch;
        if k_eff == 0 {
            return Ok(());
        }
        let level = level();
        // Lower bounds first (only their k-th value matters), candidates with their upper
        // bounds in `cands` (`score` holds the upper bound).
        let mut lower = ScoreTopK::default();
        lower.reset(k_eff);
        cands.clear();
        scores.resize(BLOCK, 0.0);
        let mut start = 0;
        while start < n {
            let nb = BLOCK.min(n - start);
            let s = &mut scores[..nb];
            approx(level, &self.codes[start * dp..], dp, y, s);
            let mut tau = lower.threshold();
            let bounds = self.rows[2 * start..2 * (start + nb)].chunks_exact(2);
            for (j, (&a, re)) in s.iter().zip(bounds).enumerate() {
                let (r, eps) = (re[0], re[1]);
                let a = a * r;
                if a + eps >= tau {
                    let id = (start + j) as u32;
                    if Some(id) != ex {
                        lower.push(a - eps, id);
                        tau = lower.threshold();
                        cands.push(Hit { id, score: a + eps });
                    }
                }
            }
            start += nb;
        }
        let tau = lower.threshold();
        top.reset(k_eff);
        for c in cands.iter().filter(|c| c.score >= tau) {
            let s = super::exact::dot(y, self.exact.row(c.id as usize));
            top.push(s, c.id);
        }
        top.drain_sorted(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::exact::tests::random_rows;

    fn both(n: usize, d: usize, seed: u64) -> (ExactIndex, BoundedIndex) {
        let exact = ExactIndex::new(n, d, &random_rows(n, d, seed)).unwrap();
        (exact.clone(), BoundedIndex::new(Arc::new(exact)))
    }

    fn search(index: &dyn SearchIndex, q: &[f32], k: usize, exclude: Option<u32>) -> Vec<Hit> {
        let mut out = Vec::new();
        let query = Query {
            embedding: Some(q),
            exclude,
            ..Query::default()
        };
        index
            .search(&query, k, &mut Scratch::default(), &mut out)
            .unwrap();
        out
    }

    #[test]
    fn results_equal_the_exact_index_at_awkward_sizes() {
        // Seeded random rows (a pure-function unit test; real embeddings are in tests/index.rs).
        for (n, d, k) in [
            (1, 1, 1),
            (7, 3, 10),
            (300, 100, 250),
            (1001, 17, 5),
            (513, 64, 513),
        ] {
            let (exact, bounded) = both(n, d, n as u64 * 31 + d as u64);
            for (qi, exclude) in [(0, None), (1, Some(0)), (2, Some((n - 1) as u32))] {
                let q = random_rows(1, d, 1000 + qi);
                let want = search(&exact, &q, k, exclude);
                let got = search(&bounded, &q, k, exclude);
                assert_eq!(got.len(), want.len(), "n {n} d {d} k {k}");
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(
                        (g.id, g.score.to_bits()),
                        (w.id, w.score.to_bits()),
                        "n {n} d {d} k {k}"
                    );
                }
            }
        }
    }

    #[test]
    fn ties_resolve_by_id_as_in_the_exact_index() {
        // Duplicated rows (hand-made ties): every copy scores the same, lower ids first.
        let base = random_rows(20, 12, 7);
        let data: Vec<f32> = base.iter().chain(&base).chain(&base).copied().collect();
        let exact = ExactIndex::new(60, 12, &data).unwrap();
        let bounded = BoundedIndex::new(Arc::new(exact.clone()));
        for k in [1, 2, 3, 4, 10, 59, 60] {
            let q = &base[5 * 12..6 * 12];
            assert_eq!(
                search(&bounded, q, k, None),
                search(&exact, q, k, None),
                "k {k}"
            );
            assert_eq!(
                search(&bounded, q, k, Some(5)),
                search(&exact, q, k, Some(5)),
                "k {k}"
            );
        }
    }

    #[test]
    fn the_bound_holds_for_every_row() {
        let (exact, bounded) = both(2000, 100, 3);
        let q = random_rows(1, 100, 9);
        let mut y = Vec::new();
        prepare_query(Some(&q), 100, &mut y).unwrap();
        let dp = padded(100);
        let mut a = vec![0.0; 2000];
        for level in crate::simd::supported_levels() {
            approx(level, &bounded.codes, dp, &y, &mut a);
            for (i, (&ai, re)) in a.iter().zip(bounded.rows.chunks_exact(2)).enumerate() {
                let (r, eps) = (re[0], re[1]);
                let s = crate::index::exact::dot(&y, exact.row(i));
                assert!(
                    (s - ai * r).abs() <= eps,
                    "{level:?} row {i}: {s} vs {} ± {eps}",
                    ai * r
                );
                assert!(eps < 0.05, "row {i}: a loose bound {eps}");
            }
        }
    }
}
