//! Exact cosine top-k over L2-normalised float embeddings ([`ExactIndex`], "Algorithm 2").
//!
//! Scores come from the canonical dot product of [`super::kernels`], so the single-query scan,
//! the batched (matrix-matrix) scan, the re-rankers and the test oracles agree bit for bit.
//!
//! # Selection
//! Scores are computed block by block; a block whose maximum does not beat the
//! current k-th score is skipped, the rest go through a size-k heap
//! (`topk::ScoreTopK`). Nothing sorts all N items.

use rayon::prelude::*;

use super::kernels::{LANES, block_max, padded, scores_block, tile};
use super::storage::Array;
use super::topk::ScoreTopK;
use super::{
    Hit, IndexError, Preamble, Query, Scratch, SearchIndex, check_len, effective_exclude, preamble,
};
use crate::simd::huge_zeroed;

pub use super::kernels::dot;

/// Database rows per block in the single-query scan.
const BLOCK: usize = 256;
/// Database rows per block in the batched scan (a block stays in L1).
const BATCH_ROWS: usize = 64;
/// Most queries per group in the batched scan (a group's heaps and rows stay in L2).
const BATCH_QUERIES: usize = 256;

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
    /// its end); owned, or mapped from an index file.
    data: Array<f32>,
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
        Ok(Self {
            n,
            d,
            data: out.into(),
        })
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
        Ok(Self {
            n,
            d,
            data: data.into(),
        })
    }

    /// An index over rows mapped from an index file: `n * d` normalised values and `LANES`
    /// zeros (checked), as [`ExactIndex::padded_rows`] gives them.
    pub(crate) fn from_mapped(n: usize, d: usize, data: Array<f32>) -> Result<Self, IndexError> {
        check_len(n)?;
        if d == 0 || n.checked_mul(d).and_then(|v| v.checked_add(LANES)) != Some(data.len()) {
            return Err(IndexError::DataLength {
                expected: n.saturating_mul(d).saturating_add(LANES),
                got: data.len(),
            });
        }
        if data[n * d..].iter().any(|&v| v != 0.0) {
            return Err(IndexError::Corrupt(
                "the rows' zero padding is not zero".into(),
            ));
        }
        Ok(Self { n, d, data })
    }

    /// True when the rows are read from a mapped index file.
    pub(crate) fn is_mapped(&self) -> bool {
        self.data.is_mapped()
    }

    /// The normalised rows followed by the kernels' `LANES` zeros, as stored in index files.
    pub(crate) fn padded_rows(&self) -> &[f32] {
        &self.data
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
    fn method(&self) -> super::Method {
        super::Method::Exact
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
        let Preamble { ex, k_eff, .. } = preamble(k, query.exclude, self.n, out)?;
        let d = self.d;
        prepare_query(query.embedding, d, &mut scratch.query)?;
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
