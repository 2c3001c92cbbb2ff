//! Retrieval indexes: the shared search API ([`SearchIndex`], [`Query`],
//! [`Hit`], [`Scratch`], [`IndexError`], [`search_batch`]) and the index
//! implementations in the submodules.
//!
//! Result ordering is deterministic everywhere:
//! * similarity indexes ([`exact`], re-ranking indexes): higher score first,
//!   ties broken by lower id;
//! * pure Hamming indexes ([`hamming::HammingIndex`], [`mih`]): lower distance
//!   first, ties by lower id, and [`Hit::score`] is the distance as `f32`.
//!
//! Leave-one-out: [`Query::exclude`] names a database id that must not appear
//! in the result; the result is then exactly the top-k of the database without
//! that item (shortlists are also taken without it). An `exclude` id that is
//! not in the database has no effect.

pub mod asymmetric;
pub mod bounded;
pub mod exact;
pub mod hamming;
pub mod kernels;
mod method;
pub mod mih;
pub mod persist;
pub mod rerank;
pub mod scan;
mod storage;
mod topk;

pub use method::Method;
use rayon::prelude::*;

/// One search result: a database id and its score (similarity, or Hamming
/// distance for the pure Hamming indexes).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Hit {
    /// Row index of the item in the database.
    pub id: u32,
    /// Similarity (higher is better) or Hamming distance (lower is better).
    pub score: f32,
}

/// A query; each index uses the parts it needs and reports
/// [`IndexError::MissingQueryPart`] when one is absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<'a> {
    /// Float embedding (exact and Hamming re-rank indexes), any norm.
    pub embedding: Option<&'a [f32]>,
    /// Packed binary code, same layout as [`scan::Codes`].
    pub code: Option<&'a [u64]>,
    /// Real-valued hash activations in `[0, 1]` (asymmetric index).
    pub activations: Option<&'a [f32]>,
    /// Database id to leave out of the result (leave-one-out protocol).
    pub exclude: Option<u32>,
}

/// Errors from building, querying, saving or loading an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// `k` was zero.
    #[error("k must be at least 1")]
    ZeroK,
    /// A vector has the wrong number of components.
    #[error("dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch {
        /// Dimension required.
        expected: usize,
        /// Dimension given.
        got: usize,
    },
    /// A query code has the wrong number of 64-bit words.
    #[error("code length mismatch: expected {expected} u64 words, got {got}")]
    CodeLengthMismatch {
        /// Words required.
        expected: usize,
        /// Words given.
        got: usize,
    },
    /// A code has bits set above bit `bits - 1`.
    #[error("code of row {row} has bits set beyond the code length of {bits} bits")]
    CodePadding {
        /// Offending row (`0` for a query).
        row: usize,
        /// Code length in bits.
        bits: usize,
    },
    /// The code length is outside `1..=1024`.
    #[error("code length must be 1..=1024 bits, got {0}")]
    InvalidBits(usize),
    /// A buffer's length does not match the stated shape.
    #[error("data length mismatch: shape needs {expected} values, got {got}")]
    DataLength {
        /// Values required by the shape.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// A database value is NaN or infinite.
    #[error("non-finite value at row {row}, column {col}")]
    NonFinite {
        /// Row of the value.
        row: usize,
        /// Column of the value.
        col: usize,
    },
    /// A query value is NaN or infinite (or an activation outside `[0, 1]`).
    #[error("invalid query value at column {col}: {value}")]
    QueryValue {
        /// Column of the value.
        col: usize,
        /// The value.
        value: f32,
    },
    /// A database row has zero norm and cannot be normalised.
    #[error("row {row} has zero norm")]
    ZeroNorm {
        /// Offending row.
        row: usize,
    },
    /// The query embedding has zero norm.
    #[error("query embedding has zero norm")]
    QueryZeroNorm,
    /// The index would hold no items.
    #[error("index is empty (no database items)")]
    Empty,
    /// The database has more items than `u32` ids can name.
    #[error("too many items for u32 ids: {0}")]
    TooManyItems(usize),
    /// A shortlist factor below 1 (or not finite).
    #[error("shortlist factor must be a finite number >= 1, got {0}")]
    ShortlistFactor(f64),
    /// A query lacks the part this index needs.
    #[error("query is missing its {0}")]
    MissingQueryPart(&'static str),
    /// Two inputs that must describe the same items disagree.
    #[error("inputs disagree: {0}")]
    Mismatch(String),
    /// An invalid index parameter.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// A persisted index file is malformed (bad magic, truncated, bad checksum, ...).
    #[error("corrupt index file: {0}")]
    Corrupt(String),
    /// A persisted index file has an unsupported format version.
    #[error("unsupported index file version {found} (this build reads version {supported})")]
    Version {
        /// Version in the file.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },
    /// An I/O error while saving, loading or reading input files.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reusable per-thread buffers for [`SearchIndex::search`]; create one per
/// thread with `Scratch::default()` and pass it to every search.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Normalised query embedding.
    pub(crate) query: Vec<f32>,
    /// Block of scores or distances.
    pub(crate) scores: Vec<f32>,
    /// Block of Hamming distances.
    pub(crate) dists: Vec<u16>,
    /// Top-k by score.
    pub(crate) top: topk::ScoreTopK,
    /// Top-k by Hamming distance.
    pub(crate) dtop: topk::DistTopK,
    /// Shortlisted candidate ids.
    pub(crate) cands: Vec<Hit>,
    /// A query code derived from activations.
    pub(crate) code: Vec<u64>,
    /// Substring keys / distances for multi-index hashing.
    pub(crate) keys: Vec<u64>,
    /// Bucket ranges for multi-index hashing.
    pub(crate) ranges: Vec<(u32, u32)>,
}

/// A searchable index over a fixed database of `len()` items.
pub trait SearchIndex: Send + Sync {
    /// The method this index implements.
    fn method(&self) -> Method;
    /// Number of database items.
    fn len(&self) -> usize;
    /// True when the index has no items (never, for successfully built indexes).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Memory held by the index per database item, in bytes.
    fn bytes_per_item(&self) -> usize;
    /// Writes the top `min(k, len)` hits for `query` into `out` (cleared
    /// first), in the index's deterministic order.
    fn search(
        &self,
        query: &Query<'_>,
        k: usize,
        scratch: &mut Scratch,
        out: &mut Vec<Hit>,
    ) -> Result<(), IndexError>;
    /// Searches many queries on `pool`; results are in query order. Indexes
    /// with a faster batched algorithm override this; the results are the
    /// same as calling [`SearchIndex::search`] per query.
    fn search_many(
        &self,
        queries: &[Query<'_>],
        k: usize,
        pool: &rayon::ThreadPool,
    ) -> Result<Vec<Vec<Hit>>, IndexError> {
        let results: Vec<Result<Vec<Hit>, IndexError>> = pool.install(|| {
            queries
                .par_iter()
                .map_init(Scratch::default, |scratch, q| {
                    let mut out = Vec::new();
                    self.search(q, k, scratch, &mut out).map(|()| out)
                })
                .collect()
        });
        results.into_iter().collect()
    }
}

impl<T: SearchIndex + ?Sized> SearchIndex for std::sync::Arc<T> {
    fn method(&self) -> Method {
        (**self).method()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
    fn bytes_per_item(&self) -> usize {
        (**self).bytes_per_item()
    }
    fn search(
        &self,
        query: &Query<'_>,
        k: usize,
        scratch: &mut Scratch,
        out: &mut Vec<Hit>,
    ) -> Result<(), IndexError> {
        (**self).search(query, k, scratch, out)
    }
    fn search_many(
        &self,
        queries: &[Query<'_>],
        k: usize,
        pool: &rayon::ThreadPool,
    ) -> Result<Vec<Vec<Hit>>, IndexError> {
        (**self).search_many(queries, k, pool)
    }
}

/// Searches all `queries` on the thread pool `pool`; returns one hit list per
/// query, in query order, or the error of the first failing query.
pub fn search_batch(
    index: &dyn SearchIndex,
    queries: &[Query<'_>],
    k: usize,
    pool: &rayon::ThreadPool,
) -> Result<Vec<Vec<Hit>>, IndexError> {
    index.search_many(queries, k, pool)
}

/// Converts a database size to `u32` ids, rejecting empty and oversized databases.
pub(crate) fn check_len(n: usize) -> Result<(), IndexError> {
    if n == 0 {
        return Err(IndexError::Empty);
    }
    if u32::try_from(n).is_err() {
        return Err(IndexError::TooManyItems(n));
    }
    Ok(())
}

/// What every search starts from: `k` and the exclusion resolved against a database of `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Preamble {
    /// The excluded item, if it is one of the database's.
    pub ex: Option<u32>,
    /// Items that may be returned (`n` less the excluded one).
    pub n_eff: usize,
    /// Hits to return: `min(k, n_eff)`.
    pub k_eff: usize,
}

/// The preamble of every [`SearchIndex::search`]: clears `out`, refuses `k == 0` and resolves
/// the exclusion. The query itself is checked by each index, which knows which parts it reads.
pub(crate) fn preamble(
    k: usize,
    exclude: Option<u32>,
    n: usize,
    out: &mut Vec<Hit>,
) -> Result<Preamble, IndexError> {
    out.clear();
    if k == 0 {
        return Err(IndexError::ZeroK);
    }
    let ex = effective_exclude(exclude, n);
    let n_eff = n - usize::from(ex.is_some());
    Ok(Preamble {
        ex,
        n_eff,
        k_eff: k.min(n_eff),
    })
}

/// Returns the exclusion id if it names an item of a database of `n` items.
#[inline]
pub(crate) fn effective_exclude(exclude: Option<u32>, n: usize) -> Option<u32> {
    exclude.filter(|&e| (e as usize) < n)
}

/// Similarity order: higher score first, ties by lower id.
#[inline]
pub(crate) fn score_order(a: &Hit, b: &Hit) -> std::cmp::Ordering {
    b.score
        .partial_cmp(&a.score)
        .unwrap_or(std::cmp::Ordering::Equal)
        .then(a.id.cmp(&b.id))
}
