//! Engine of `harness bench search`: builds each requested index over `.npy`
//! files or seeded synthetic data, times single queries and thread-pool
//! batches, and returns one [`BenchRecord`] per method.
//!
//! * Queries are the first `Q` database rows (not excluded from the database,
//!   so each query finds itself, as a FAISS run over the same files does).
//! * Single-query latency: `min(10, Q)` warm-up queries, then each of the
//!   first `single_queries` queries timed on its own on the calling thread;
//!   median and p95 in seconds, by the harness's one quantile rule
//!   ([`crate::eval::stats::summarize`]).
//! * Throughput: the `Q` queries as one [`search_batch`] on a pool of
//!   `threads` threads, repeated up to 3 times (fewer if a run takes over a
//!   second); `qps = Q / best time`.
//! * Asymmetric queries need activations, which the files do not hold: they
//!   come from `--activations`, or are derived from the query's code as
//!   `0.5 +- 0.5*u` (sign from the bit, `u` uniform in `(0, 1]`, seeded).
//! * `--index FILE` searches a memory-mapped index file in place (its codes
//!   and rows are the database); every record gives the process's peak and
//!   anonymous RSS after its method.
//! * MIH's cost model plans on the 32 rows after the timed queries (the same
//!   kind of rows, not timed), unless `--mih-m` fixes `m`.
//! * Synthetic data ([`SyntheticCodes::Clustered`] by default): 100 clusters;
//!   each item belongs to a random cluster, its embedding is the cluster's
//!   centre (uniform in `[-1, 1]^d`) plus uniform noise in `[-0.5, 0.5]^d`,
//!   and its code is the cluster's random centre code with each bit flipped
//!   with probability 0.1 (semantic hashes cluster by class). `Random` draws
//!   every code bit uniformly.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::{BenchError, memory_usage};
use crate::eval::stats::summarize;
use crate::index::asymmetric::AsymmetricIndex;
use crate::index::bounded::BoundedIndex;
use crate::index::exact::ExactIndex;
use crate::index::hamming::HammingIndex;
use crate::index::mih::MihIndex;
use crate::index::persist::{self, AnyIndex};
use crate::index::rerank::{HammingRerankIndex, Shortlist};
use crate::index::scan::{self, Codes, words_for};
use crate::index::{Hit, IndexError, Method, Query, Scratch, SearchIndex, search_batch};
use crate::store::{self, npy};

/// How synthetic codes are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyntheticCodes {
    /// 100 centre codes, each bit flipped with probability 0.1 (default).
    #[default]
    Clustered,
    /// Every bit uniform.
    Random,
}

impl std::str::FromStr for SyntheticCodes {
    type Err = String;

    /// `clustered` or `random`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "clustered" => Ok(Self::Clustered),
            "random" => Ok(Self::Random),
            other => Err(format!(
                "unknown code distribution `{other}`; expected clustered or random"
            )),
        }
    }
}

/// Options of `harness bench search`.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// `--embeddings FILE`: `.npy` `<f4` array `N x D`.
    pub embeddings: Option<PathBuf>,
    /// `--codes FILE`: `.npy` `<u8` array `N x ceil(H/64)` of packed codes.
    pub codes: Option<PathBuf>,
    /// `--synthetic N`: generate `N` items instead of reading files.
    pub synthetic: Option<usize>,
    /// `--dim D`: synthetic embedding dimension (default 100).
    pub dim: usize,
    /// `--bits H`: code length (default 64); 0 means `64 * columns` of the codes file.
    pub bits: usize,
    /// `--queries Q`: queries (the first `Q` rows; default 1000).
    pub queries: usize,
    /// `--k K`: neighbours per query (default 10).
    pub k: usize,
    /// `--threads T`: threads for the batch run (default: all cores).
    pub threads: usize,
    /// `--seed S`: seed for synthetic data and activations (default 0).
    pub seed: u64,
    /// `--methods a,b,c`: the methods to run; empty = all the data allows.
    pub methods: Vec<Method>,
    /// `--code-dist clustered|random`: synthetic code distribution.
    pub code_dist: SyntheticCodes,
    /// `--single-queries S`: how many queries to time one by one (default `Q`).
    pub single_queries: Option<usize>,
    /// `--shortlist C`: shortlist factor for the re-rankers (default 2).
    pub shortlist: f64,
    /// `--mih-m M`: MIH substrings (default automatic).
    pub mih_m: Option<usize>,
    /// `--dump-dir DIR`: write `<method>_ids.npy` (`u64`) and
    /// `<method>_scores.npy` (`f32`), `Q x min(k, N)`, of the batch results.
    pub dump_dir: Option<PathBuf>,
    /// `--index FILE`: an index file, memory-mapped and searched in place; its
    /// codes and/or normalised rows are the database.
    pub index: Option<PathBuf>,
    /// `--activations FILE`: `.npy` `<f4` hash-layer activations of the first
    /// rows, for the asymmetric method's queries (default: derived from codes).
    pub activations: Option<PathBuf>,
    /// Check the index file's CRC before searching (`--no-verify` skips it).
    pub verify: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            embeddings: None,
            codes: None,
            synthetic: None,
            dim: 100,
            bits: 64,
            queries: 1000,
            k: 10,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            seed: 0,
            methods: Vec::new(),
            code_dist: SyntheticCodes::Clustered,
            single_queries: None,
            shortlist: 2.0,
            mih_m: None,
            dump_dir: None,
            index: None,
            activations: None,
            verify: true,
        }
    }
}

/// One result line of the benchmark (serialised as a JSON object).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchRecord {
    /// The method.
    pub method: Method,
    /// Database size.
    pub n: usize,
    /// Embedding dimension, for methods that use embeddings.
    pub dim: Option<usize>,
    /// Code length, for methods that use codes.
    pub bits: Option<usize>,
    /// Neighbours per query.
    pub k: usize,
    /// Threads of the batch run.
    pub threads: usize,
    /// Median single-query latency (s).
    pub median_s: f64,
    /// 95th-percentile single-query latency (s).
    pub p95_s: f64,
    /// Batch throughput (queries per second).
    pub qps: f64,
    /// Index build time (s).
    pub build_s: f64,
    /// Index memory per item (bytes).
    pub bytes_per_item: usize,
    /// Queries in the batch.
    pub queries: usize,
    /// Queries timed one by one.
    pub single_queries: usize,
    /// Method parameters, e.g. `m=3` or `shortlist=2`.
    pub params: String,
    /// The process's peak resident memory (`VmHWM`) after this method, bytes (Linux).
    pub peak_rss_bytes: Option<u64>,
    /// Anonymous resident memory after this method (`RssAnon`): what cannot be paged back
    /// to a file.
    pub rss_anon_bytes: Option<u64>,
    /// File-backed resident memory after this method (`RssFile`): mapped index pages, which
    /// the kernel may drop under pressure.
    pub rss_file_bytes: Option<u64>,
    /// True when the database was searched in a memory-mapped index file.
    pub mapped: bool,
}

/// The loaded or generated benchmark data.
struct Data {
    n: usize,
    dim: usize,
    embeddings: Option<Vec<f32>>,
    /// A prebuilt (mapped) exact index, from `--index`.
    exact: Option<Arc<ExactIndex>>,
    codes: Option<Arc<Codes>>,
}

fn load_data(opts: &BenchOptions) -> Result<Data, BenchError> {
    if let Some(n) = opts.synthetic {
        if opts.embeddings.is_some() || opts.codes.is_some() {
            return Err(BenchError::Option(
                "--synthetic cannot be combined with --embeddings/--codes".into(),
            ));
        }
        return synthetic(n, opts);
    }
    if let Some(p) = &opts.index {
        if opts.embeddings.is_some() || opts.codes.is_some() {
            return Err(BenchError::Option(
                "--index cannot be combined with --embeddings/--codes".into(),
            ));
        }
        let (codes, exact) = match persist::load_mapped(p, opts.verify)? {
            AnyIndex::Exact(e) => (None, Some(Arc::new(e))),
            AnyIndex::Bounded(b) => (None, Some(Arc::new(b.exact().clone()))),
            AnyIndex::HammingRerank(r) => (Some(r.codes), Some(r.exact)),
            AnyIndex::Hamming(h) => (Some(h.codes), None),
            AnyIndex::Mih(m) => (Some(m.codes), None),
            AnyIndex::Asymmetric(a) => (Some(a.codes), None),
        };
        let n = codes
            .as_ref()
            .map_or_else(|| exact.as_ref().map_or(0, |e| e.len()), |c| c.len());
        return Ok(Data {
            n,
            dim: exact.as_ref().map_or(0, |e| e.dim()),
            embeddings: None,
            exact,
            codes,
        });
    }
    let mut n = None;
    let mut embeddings = None;
    let mut dim = 0;
    if let Some(p) = &opts.embeddings {
        let (rows, cols, data) = read_npy(p, npy::read_f32)?;
        n = Some(rows);
        dim = cols;
        embeddings = Some(data);
    }
    let mut codes = None;
    if let Some(p) = &opts.codes {
        let (rows, cols, data) = read_npy(p, npy::read_u64)?;
        let bits = if opts.bits == 0 { cols * 64 } else { opts.bits };
        if words_for(bits) != cols {
            return Err(BenchError::Option(format!(
                "{bits}-bit codes need {} u64 columns, the codes file has {cols}",
                words_for(bits)
            )));
        }
        if let Some(n) = n
            && n != rows
        {
            return Err(BenchError::Option(format!(
                "{n} embeddings but {rows} codes"
            )));
        }
        n = Some(rows);
        codes = Some(Arc::new(Codes::new(rows, bits, data)?));
    }
    let n = n.ok_or_else(|| {
        BenchError::Option("give --embeddings and/or --codes, or --synthetic N".into())
    })?;
    Ok(Data {
        n,
        dim,
        embeddings,
        exact: None,
        codes,
    })
}

/// Seeded synthetic data (see the module docs).
fn synthetic(n: usize, opts: &BenchOptions) -> Result<Data, BenchError> {
    const CLUSTERS: usize = 100;
    let (d, bits) = (opts.dim, opts.bits);
    if d == 0 {
        return Err(BenchError::Option("--dim must be >= 1".into()));
    }
    if bits == 0 || bits > scan::MAX_BITS {
        return Err(IndexError::InvalidBits(bits).into());
    }
    let w = words_for(bits);
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let centres: Vec<f32> = (0..CLUSTERS * d)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let mut centre_codes = vec![0u64; CLUSTERS * w];
    for c in 0..CLUSTERS {
        let bitsv: Vec<f32> = (0..bits)
            .map(|_| if rng.random_bool(0.5) { 1.0 } else { 0.0 })
            .collect();
        scan::pack_into(&bitsv, &mut centre_codes[c * w..(c + 1) * w]);
    }
    let mut emb = Vec::with_capacity(n * d);
    let mut words = vec![0u64; n * w];
    for i in 0..n {
        let c = rng.random_range(0..CLUSTERS);
        for j in 0..d {
            emb.push(centres[c * d + j] + rng.random_range(-0.5f32..0.5));
        }
        let code = &mut words[i * w..(i + 1) * w];
        match opts.code_dist {
            SyntheticCodes::Clustered => {
                code.copy_from_slice(&centre_codes[c * w..(c + 1) * w]);
                for j in 0..bits {
                    if rng.random_bool(0.1) {
                        code[j / 64] ^= 1u64 << (j % 64);
                    }
                }
            }
            SyntheticCodes::Random => {
                for (t, word) in code.iter_mut().enumerate() {
                    let v: u64 = rng.random();
                    let used = (bits - 64 * t).min(64);
                    *word = if used == 64 {
                        v
                    } else {
                        v & ((1u64 << used) - 1)
                    };
                }
            }
        }
    }
    Ok(Data {
        n,
        dim: d,
        embeddings: Some(emb),
        exact: None,
        codes: Some(Arc::new(Codes::new(n, bits, words)?)),
    })
}

/// Runs the benchmark; see the module docs for the method.
pub fn run(opts: &BenchOptions) -> Result<Vec<BenchRecord>, BenchError> {
    if opts.k == 0 {
        return Err(IndexError::ZeroK.into());
    }
    if opts.queries == 0 || opts.threads == 0 {
        return Err(BenchError::Option(
            "--queries and --threads must be >= 1".into(),
        ));
    }
    let shortlist = Shortlist::Factor(opts.shortlist);
    shortlist.validate()?;
    let data = load_data(opts)?;
    let (n, d) = (data.n, data.dim);
    let nq = opts.queries.min(n);
    let single = opts.single_queries.unwrap_or(nq).min(nq);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| BenchError::Option(format!("thread pool: {e}")))?;

    // Query activations for the asymmetric method: from `--activations`, else derived.
    let acts: Vec<f32> = match (&data.codes, &opts.activations) {
        (Some(c), Some(p)) => {
            let (rows, cols, a) = read_npy(p, npy::read_f32)?;
            if cols != c.bits() || rows < nq {
                return Err(BenchError::Option(format!(
                    "{}: {rows} x {cols} activations, but {nq} queries of {} bits",
                    p.display(),
                    c.bits()
                )));
            }
            a[..nq * cols].to_vec()
        }
        (Some(c), None) => {
            let mut rng = StdRng::seed_from_u64(opts.seed ^ 0xA5A5_5A5A);
            let h = c.bits();
            let mut a = Vec::with_capacity(nq * h);
            for i in 0..nq {
                let code = c.code(i);
                for j in 0..h {
                    let u = 1.0 - rng.random::<f32>();
                    let bit = (code[j / 64] >> (j % 64)) & 1 == 1;
                    a.push(if bit { 0.5 + 0.5 * u } else { 0.5 - 0.5 * u });
                }
            }
            a
        }
        (None, _) => Vec::new(),
    };
    let has_embeddings = data.embeddings.is_some() || data.exact.is_some();
    let queries: Vec<Query> = (0..nq)
        .map(|i| Query {
            embedding: match (&data.embeddings, &data.exact) {
                (Some(e), _) => Some(&e[i * d..(i + 1) * d]),
                (None, Some(e)) => Some(e.row(i)),
                (None, None) => None,
            },
            code: data.codes.as_ref().map(|c| c.code(i)),
            activations: data
                .codes
                .as_ref()
                .map(|c| &acts[i * c.bits()..(i + 1) * c.bits()]),
            exclude: None,
        })
        .collect();

    let wanted: Vec<Method> = Method::ALL
        .into_iter()
        .filter(|m| {
            if opts.methods.is_empty() {
                (!m.uses_embeddings() || has_embeddings)
                    && (!m.uses_codes() || data.codes.is_some())
            } else {
                opts.methods.contains(m)
            }
        })
        .collect();

    let mut exact_cache: Option<(Arc<ExactIndex>, f64)> = data.exact.clone().map(|e| (e, 0.0));
    let mut get_exact = |emb: Option<&Vec<f32>>| -> Result<(Arc<ExactIndex>, f64), IndexError> {
        if let Some(e) = &exact_cache {
            return Ok(e.clone());
        }
        let emb = emb.ok_or(IndexError::MissingQueryPart(
            "embedding (give --embeddings)",
        ))?;
        let t = Instant::now();
        let e = Arc::new(ExactIndex::new(n, d, emb)?);
        let built = (e, t.elapsed().as_secs_f64());
        exact_cache = Some(built.clone());
        Ok(built)
    };
    let need_codes = || -> Result<Arc<Codes>, IndexError> {
        data.codes
            .clone()
            .ok_or(IndexError::MissingQueryPart("code (give --codes)"))
    };

    let mut records = Vec::new();
    for method in wanted {
        let t = Instant::now();
        let (index, build_s, params): (Box<dyn SearchIndex>, f64, String) = match method {
            Method::Exact => {
                let (e, s) = get_exact(data.embeddings.as_ref())?;
                (Box::new(e), s, String::new())
            }
            Method::ExactBounded => {
                let (e, _) = get_exact(data.embeddings.as_ref())?;
                // Timed on its own: the int8 copy and bounds of the shared normalised rows.
                let t2 = Instant::now();
                let idx = BoundedIndex::new(e);
                (Box::new(idx), t2.elapsed().as_secs_f64(), String::new())
            }
            Method::Hamming => (
                Box::new(HammingIndex::new(need_codes()?)),
                0.0,
                String::new(),
            ),
            Method::HammingRerank => {
                let codes = need_codes()?;
                let (e, s) = get_exact(data.embeddings.as_ref())?;
                let t2 = Instant::now();
                let idx = HammingRerankIndex::new(codes, e, shortlist)?;
                (
                    Box::new(idx),
                    s + t2.elapsed().as_secs_f64(),
                    format!("shortlist={}", opts.shortlist),
                )
            }
            Method::Mih => {
                let idx = mih_index(need_codes()?, opts.k, nq, opts)?;
                let p = mih_params(&idx);
                (Box::new(idx), t.elapsed().as_secs_f64(), p)
            }
            Method::MihRerank => {
                let codes = need_codes()?;
                let (e, s) = get_exact(data.embeddings.as_ref())?;
                let t2 = Instant::now();
                // Planned for the shortlist it takes, not for k.
                let mih = mih_index(codes.clone(), shortlist.size(opts.k), nq, opts)?;
                let p = format!("shortlist={} {}", opts.shortlist, mih_params(&mih));
                let idx = HammingRerankIndex::new(codes, e, shortlist)?.with_mih(Arc::new(mih))?;
                (Box::new(idx), s + t2.elapsed().as_secs_f64(), p)
            }
            Method::Asymmetric => {
                let idx = AsymmetricIndex::new(need_codes()?, shortlist)?;
                (Box::new(idx), 0.0, format!("shortlist={}", opts.shortlist))
            }
        };
        records.push(measure(
            index.as_ref(),
            &queries,
            opts,
            single,
            &pool,
            BenchRecord {
                method,
                n,
                dim: method.uses_embeddings().then_some(d),
                bits: method
                    .uses_codes()
                    .then(|| data.codes.as_ref().map_or(0, |c| c.bits())),
                k: opts.k,
                threads: opts.threads,
                median_s: 0.0,
                p95_s: 0.0,
                qps: 0.0,
                build_s,
                bytes_per_item: index.bytes_per_item(),
                queries: nq,
                single_queries: single,
                params,
                peak_rss_bytes: None,
                rss_anon_bytes: None,
                rss_file_bytes: None,
                mapped: data.exact.as_ref().is_some_and(|e| e.is_mapped())
                    || data.codes.as_ref().is_some_and(|c| c.is_mapped()),
            },
        )?);
    }
    Ok(records)
}

/// MIH as `--mih-m` fixes it, or as the cost model plans it for searches of `k` on sample
/// queries: the 32 rows right after the `nq` timed queries (the same kind of rows, not timed),
/// or the database's own items when there are not that many.
fn mih_index(
    codes: Arc<Codes>,
    k: usize,
    nq: usize,
    opts: &BenchOptions,
) -> Result<MihIndex, IndexError> {
    if let Some(m) = opts.mih_m {
        return MihIndex::with_substrings(codes, m);
    }
    let sample: Vec<&[u64]> = (nq..nq + 32)
        .take_while(|&i| i < codes.len())
        .map(|i| codes.code(i))
        .collect();
    let sample = (sample.len() == 32).then_some(&sample[..]);
    MihIndex::planned_for(codes.clone(), k, sample)
}

/// `m=3` (with the plan's estimated speed-up), or `scan` when the plan keeps no tables.
fn mih_params(idx: &MihIndex) -> String {
    let m = match idx.substrings() {
        0 => "scan".to_string(),
        m => format!("m={m}"),
    };
    match idx.plan() {
        Some(p) => format!("{m} (planned, est. {:.1}x)", p.estimated_speedup()),
        None => m,
    }
}

/// Times single queries and batches of one index; fills in the record.
fn measure(
    index: &dyn SearchIndex,
    queries: &[Query<'_>],
    opts: &BenchOptions,
    single: usize,
    pool: &rayon::ThreadPool,
    mut rec: BenchRecord,
) -> Result<BenchRecord, BenchError> {
    let mut scratch = Scratch::default();
    let mut out: Vec<Hit> = Vec::new();
    for q in queries.iter().take(10) {
        index.search(q, opts.k, &mut scratch, &mut out)?;
    }
    let mut times = Vec::with_capacity(single);
    for q in &queries[..single] {
        let t = Instant::now();
        index.search(q, opts.k, &mut scratch, &mut out)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let latency = summarize(&times)?;
    (rec.median_s, rec.p95_s) = (latency.median, latency.p95);

    let mut best = f64::INFINITY;
    let mut spent = 0.0;
    let mut results = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        results = search_batch(index, queries, opts.k, pool)?;
        let s = t.elapsed().as_secs_f64();
        best = best.min(s);
        spent += s;
        if spent > 1.0 {
            break;
        }
    }
    rec.qps = queries.len() as f64 / best;
    if let Some((peak, anon, file)) = memory_usage() {
        (rec.peak_rss_bytes, rec.rss_anon_bytes, rec.rss_file_bytes) =
            (Some(peak), Some(anon), Some(file));
    }
    if let Some(dir) = &opts.dump_dir {
        dump(dir, rec.method, &results)?;
    }
    Ok(rec)
}

/// Writes batch results as `.npy`, each file atomically (rows padded with id `u64::MAX` / NaN
/// if short).
fn dump(dir: &Path, method: Method, results: &[Vec<Hit>]) -> Result<(), BenchError> {
    let cols = results.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(results.len() * cols);
    let mut scores = Vec::with_capacity(results.len() * cols);
    for r in results {
        for j in 0..cols {
            ids.push(r.get(j).map_or(u64::MAX, |h| u64::from(h.id)));
            scores.push(r.get(j).map_or(f32::NAN, |h| h.score));
        }
    }
    store::write_atomic(&dir.join(format!("{method}_ids.npy")), |w| {
        npy::write_u64(w, results.len(), cols, &ids)
    })?;
    store::write_atomic(&dir.join(format!("{method}_scores.npy")), |w| {
        npy::write_f32(w, results.len(), cols, &scores)
    })?;
    Ok(())
}

/// Reads an `.npy` file with `parse`, naming the file in any error.
fn read_npy<T>(path: &Path, parse: fn(&[u8]) -> Result<T, npy::NpyError>) -> Result<T, BenchError> {
    parse(&store::read(path)?).map_err(|source| BenchError::Npy {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_run_produces_all_methods() {
        let dir = tempfile::tempdir().unwrap();
        for code_dist in [SyntheticCodes::Clustered, SyntheticCodes::Random] {
            let opts = BenchOptions {
                synthetic: Some(500),
                dim: 12,
                bits: 48,
                queries: 20,
                k: 5,
                threads: 2,
                code_dist,
                dump_dir: Some(dir.path().to_path_buf()),
                ..BenchOptions::default()
            };
            let recs = run(&opts).unwrap();
            let names: Vec<Method> = recs.iter().map(|r| r.method).collect();
            assert_eq!(names, Method::ALL.to_vec());
            for r in &recs {
                assert!(
                    r.qps > 0.0 && r.median_s > 0.0 && r.p95_s >= r.median_s,
                    "{r:?}"
                );
                assert!(serde_json::to_string(r).unwrap().contains("\"median_s\""));
            }
            // MIH and linear Hamming agree exactly.
            let h =
                npy::read_u64(&std::fs::read(dir.path().join("hamming_ids.npy")).unwrap()).unwrap();
            let m = npy::read_u64(&std::fs::read(dir.path().join("mih_ids.npy")).unwrap()).unwrap();
            assert_eq!(h, m);
            assert_eq!(h.0, 20);
            assert_eq!(h.1, 5);
        }
    }

    #[test]
    fn files_and_bad_options() {
        let dir = tempfile::tempdir().unwrap();
        let ep = dir.path().join("e.npy");
        let cp = dir.path().join("c.npy");
        let emb: Vec<f32> = (0..40 * 3).map(|i| (i % 7) as f32 - 2.5).collect();
        npy::write_f32(std::fs::File::create(&ep).unwrap(), 40, 3, &emb).unwrap();
        let codes: Vec<u64> = (0..40u64).map(|i| i * 2654435761 % (1 << 20)).collect();
        npy::write_u64(std::fs::File::create(&cp).unwrap(), 40, 1, &codes).unwrap();
        let base = BenchOptions {
            embeddings: Some(ep.clone()),
            codes: Some(cp.clone()),
            bits: 20,
            queries: 5,
            k: 3,
            threads: 1,
            ..BenchOptions::default()
        };
        assert_eq!(run(&base).unwrap().len(), Method::ALL.len());
        let only_exact = BenchOptions {
            codes: None,
            ..base.clone()
        };
        let methods: Vec<Method> = run(&only_exact)
            .unwrap()
            .into_iter()
            .map(|r| r.method)
            .collect();
        assert_eq!(methods, [Method::Exact, Method::ExactBounded]);
        let missing = BenchOptions {
            codes: None,
            methods: vec![Method::Mih],
            ..base.clone()
        };
        assert!(matches!(
            run(&missing),
            Err(BenchError::Index(IndexError::MissingQueryPart(_)))
        ));
        let wrong_bits = BenchOptions {
            bits: 65,
            ..base.clone()
        };
        assert!(matches!(run(&wrong_bits), Err(BenchError::Option(_))));
        let too_few_bits = BenchOptions {
            bits: 8,
            ..base.clone()
        };
        assert!(matches!(
            run(&too_few_bits),
            Err(BenchError::Index(IndexError::CodePadding { .. }))
        ));
        let swapped = BenchOptions {
            embeddings: Some(cp),
            ..base.clone()
        };
        assert!(matches!(run(&swapped), Err(BenchError::Npy { .. })));
        let factor = BenchOptions {
            shortlist: 0.5,
            ..base
        };
        assert!(matches!(
            run(&factor),
            Err(BenchError::Index(IndexError::ShortlistFactor(_)))
        ));
    }
}
