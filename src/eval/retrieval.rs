//! Retrieval evaluation of one method under one protocol: build the index over the database
//! embeddings and codes, search every query, score the rankings with [`QueryEvaluator`], and time
//! the searches. Plain slices in, numbers out; no burn.

use super::Semantics as _;
use super::metrics::{AggregateReport, MetricsAggregator, MetricsError, QueryEvaluator};
use super::stats::{StatsError, Summary, summarize};
use crate::config::{MetricName, Protocol};
use crate::index::asymmetric::AsymmetricIndex;
use crate::index::bounded::BoundedIndex;
use crate::index::exact::ExactIndex;
use crate::index::hamming::HammingIndex;
use crate::index::mih::MihIndex;
use crate::index::persist::AnyIndex;
use crate::index::rerank::{HammingRerankIndex, Shortlist};
use crate::index::scan::Codes;
use crate::index::{Hit, IndexError, Method, Query, Scratch, SearchIndex, search_batch};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// Why an evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Building or searching an index failed.
    #[error("index: {0}")]
    Index(#[from] IndexError),
    /// Scoring a ranking failed.
    #[error("metrics: {0}")]
    Metrics(#[from] MetricsError),
    /// Scoring one query's ranking failed.
    #[error("query {query}: {source}")]
    Query {
        /// The query id.
        query: u32,
        /// What was wrong with its ranking.
        source: MetricsError,
    },
    /// Timing statistics failed.
    #[error("timing: {0}")]
    Stats(#[from] StatsError),
    /// Inconsistent inputs.
    #[error("{0}")]
    Input(String),
}

/// One split's embed-stage outputs (row i = image i of the split).
#[derive(Debug, Clone, Copy)]
pub struct SplitView<'a> {
    /// `n x d` embeddings.
    pub embeddings: &'a [f32],
    /// `d`.
    pub d: usize,
    /// `n x h` hash activations.
    pub activations: &'a [f32],
    /// `n x ceil(h/64)` packed codes.
    pub codes: &'a [u64],
    /// `h`.
    pub h: usize,
    /// `n` fine labels.
    pub labels: &'a [u8],
}

impl SplitView<'_> {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True without images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn query(&self, i: usize, exclude: Option<u32>) -> Query<'_> {
        let w = self.h.div_ceil(64);
        Query {
            embedding: Some(&self.embeddings[i * self.d..(i + 1) * self.d]),
            code: Some(&self.codes[i * w..(i + 1) * w]),
            activations: Some(&self.activations[i * self.h..(i + 1) * self.h]),
            exclude,
        }
    }
}

/// Settings shared by every method.
#[derive(Debug, Clone)]
pub struct EvalSettings {
    /// Cut-offs `k`.
    pub ks: Vec<usize>,
    /// Shortlist for the re-ranking methods.
    pub shortlist: Shortlist,
    /// Multi-index-hashing substrings (`None`: automatic).
    pub mih_substrings: Option<usize>,
    /// Queries timed one at a time (the first ones).
    pub timing_queries: usize,
    /// Threads for the batch run.
    pub threads: usize,
}

/// Latency and size figures of a method.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timing {
    /// Median single-query wall time (s), warm index, one thread.
    pub query_median_s: f64,
    /// 95th percentile single-query wall time (s).
    pub query_p95_s: f64,
    /// Mean single-query wall time (s).
    pub query_mean_s: f64,
    /// Batch throughput over all queries (queries/s) with `threads` threads.
    pub qps: f64,
    /// Threads of the batch run.
    pub threads: usize,
    /// Index build time (s).
    pub build_s: f64,
    /// Index memory per database item (bytes).
    pub bytes_per_item: usize,
}

impl Timing {
    /// Assembles the figures from the single-query latency summary and the batch run.
    pub fn new(
        latency: &Summary,
        qps: f64,
        threads: usize,
        build_s: f64,
        bytes_per_item: usize,
    ) -> Self {
        Self {
            query_median_s: latency.median,
            query_p95_s: latency.p95,
            query_mean_s: latency.mean,
            qps,
            threads: threads.max(1),
            build_s,
            bytes_per_item,
        }
    }
}

/// Everything one (method, protocol) evaluation produced.
#[derive(Debug, Clone)]
pub struct MethodResult {
    /// The method's name (`exact`, ..., `iwan`).
    pub method: String,
    /// The protocol.
    pub protocol: Protocol,
    /// Mean metrics per k and the HP curve.
    pub report: AggregateReport,
    /// Latencies.
    pub timing: Timing,
    /// Top-`max(ks)` of every query (db ids and scores), in query order.
    pub rankings: Vec<Vec<Hit>>,
    /// The index that was searched (for persistence); `None` for IWAN.
    pub index: Option<AnyIndex>,
}

/// Builds the index for `method` over `db`.
pub fn build_index(
    method: Method,
    db: &SplitView<'_>,
    s: &EvalSettings,
) -> Result<AnyIndex, EvalError> {
    let n = db.len();
    let codes = || Codes::new(n, db.h, db.codes.to_vec()).map(Arc::new);
    let exact = || ExactIndex::new(n, db.d, db.embeddings).map(Arc::new);
    Ok(match method {
        Method::Exact => ExactIndex::new(n, db.d, db.embeddings)?.into(),
        Method::ExactBounded => {
            BoundedIndex::new(Arc::new(ExactIndex::new(n, db.d, db.embeddings)?)).into()
        }
        Method::Hamming => HammingIndex::new(codes()?).into(),
        Method::HammingRerank => HammingRerankIndex::new(codes()?, exact()?, s.shortlist)?.into(),
        Method::Mih => match s.mih_substrings {
            Some(m) => MihIndex::with_substrings(codes()?, m)?,
            None => MihIndex::planned(codes()?, s.ks.iter().copied().max().unwrap_or(1))?,
        }
        .into(),
        Method::Asymmetric => AsymmetricIndex::new(codes()?, s.shortlist)?.into(),
        // Config validation refuses it: its results are hamming_rerank's.
        Method::MihRerank => {
            return Err(EvalError::Input(
                "mih_rerank is a bench method; evaluate hamming_rerank".into(),
            ));
        }
    })
}

/// Evaluates `method` under `protocol`. Under `report` and `leave_one_out` the queries are the
/// database split itself (query i is database item i).
pub fn evaluate(
    method: Method,
    protocol: Protocol,
    db: &SplitView<'_>,
    queries: &SplitView<'_>,
    sim: &[f64],
    n_classes: usize,
    s: &EvalSettings,
) -> Result<MethodResult, EvalError> {
    if protocol.queries_in_db() && queries.len() > db.len() {
        return Err(EvalError::Input(format!(
            "{protocol}: {} queries but the database holds {}",
            queries.len(),
            db.len()
        )));
    }
    let k = s.ks.iter().copied().max().unwrap_or(1).min(db.len());
    let started = Instant::now();
    let index = build_index(method, db, s)?;
    let build_s = started.elapsed().as_secs_f64();
    let exclude = |i: usize| protocol.exclusion(i as u32);
    let batch: Vec<Query<'_>> = (0..queries.len())
        .map(|i| queries.query(i, exclude(i)))
        .collect();

    // Single queries, one thread, after one warm-up query.
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    let timed = s.timing_queries.min(queries.len());
    let mut times = Vec::with_capacity(timed);
    if let Some(q) = batch.first() {
        index.search(q, k, &mut scratch, &mut out)?;
    }
    for q in &batch[..timed] {
        let t = Instant::now();
        index.search(q, k, &mut scratch, &mut out)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let latency = summarize(&times)?;

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(s.threads.max(1))
        .build()
        .map_err(|e| EvalError::Input(format!("cannot start {} threads: {e}", s.threads)))?;
    let t = Instant::now();
    let rankings = search_batch(&index, &batch, k, &pool)?;
    let qps = batch.len() as f64 / t.elapsed().as_secs_f64().max(1e-12);

    let ids: Vec<Vec<u32>> = rankings
        .iter()
        .map(|hits| hits.iter().map(|h| h.id).collect())
        .collect();
    let report = score(
        &ids,
        protocol,
        db.labels,
        queries.labels,
        sim,
        n_classes,
        &s.ks,
    )?;
    Ok(MethodResult {
        method: method.as_str().to_string(),
        protocol,
        report,
        timing: Timing::new(&latency, qps, s.threads, build_s, index.bytes_per_item()),
        rankings,
        index: Some(index),
    })
}

/// Scores rankings (database ids per query, query i = database item i under the protocols that
/// keep queries in the database) with every metric at `ks`.
pub fn score(
    rankings: &[Vec<u32>],
    protocol: Protocol,
    db_labels: &[u8],
    query_labels: &[u8],
    sim: &[f64],
    n_classes: usize,
    ks: &[usize],
) -> Result<AggregateReport, EvalError> {
    let queries = rankings
        .iter()
        .enumerate()
        .map(|(i, ids)| (i as u32, ids.as_slice()));
    score_queries(
        queries,
        protocol,
        db_labels,
        query_labels,
        sim,
        n_classes,
        ks,
    )
}

/// Scores `(query id, ranking)` pairs: the query's label is `query_labels[id]`, and under the
/// protocols that keep queries in the database its own item is database item `id`.
pub fn score_queries<'a>(
    rankings: impl IntoIterator<Item = (u32, &'a [u32])>,
    protocol: Protocol,
    db_labels: &[u8],
    query_labels: &[u8],
    sim: &[f64],
    n_classes: usize,
    ks: &[usize],
) -> Result<AggregateReport, EvalError> {
    let db_labels: Vec<u16> = db_labels.iter().map(|&l| u16::from(l)).collect();
    let evaluator = QueryEvaluator::new(&db_labels, sim, n_classes)?;
    let mut agg = MetricsAggregator::new(ks)?;
    for (q, ids) in rankings {
        let label = query_labels.get(q as usize).ok_or_else(|| {
            EvalError::Input(format!(
                "query id {q} is out of range: the query split holds {} images",
                query_labels.len()
            ))
        })?;
        let m = evaluator
            .evaluate(u16::from(*label), protocol.exclusion(q), ids, ks)
            .map_err(|source| EvalError::Query { query: q, source })?;
        agg.push(&m)?;
    }
    agg.report()
        .ok_or_else(|| EvalError::Input("no queries to evaluate".into()))
}

/// `metrics.csv` rows (`method,protocol,metric,k,value`) of a result, for the metric families
/// in `families` (in their fixed order); `k` is empty where it does not apply.
pub fn metric_rows(
    r: &MethodResult,
    families: &[MetricName],
) -> Vec<(String, String, &'static str, Option<usize>, f64)> {
    let (method, protocol) = (r.method.clone(), r.protocol.as_str().to_string());
    metric_values(&r.report, Some(&r.timing), families)
        .into_iter()
        .map(|(metric, k, v)| (method.clone(), protocol.clone(), metric, k, v))
        .collect()
}

/// `(metric, k, value)` of the families in `families`: the quality metrics of `a` and, where
/// given, the `timing` figures. A conditional mean with no counted query (the report's hit20
/// measures) is left out; its count of 0 is written.
pub fn metric_values(
    a: &AggregateReport,
    timing: Option<&Timing>,
    families: &[MetricName],
) -> Vec<(&'static str, Option<usize>, f64)> {
    let mut rows = Vec::new();
    let mut push = |metric: &'static str, k: Option<usize>, v: f64| rows.push((metric, k, v));
    for family in MetricName::ALL {
        if !families.contains(&family) {
            continue;
        }
        let per_k = |f: fn(&super::MeansAtK) -> Option<f64>| {
            a.at_k.iter().filter_map(move |m| Some((m.k, f(m)?)))
        };
        let (name, values): (&'static str, Vec<(usize, f64)>) = match family {
            MetricName::Precision => ("mP", per_k(|m| Some(m.mean_precision)).collect()),
            MetricName::AveragePrecision => {
                ("mAP", per_k(|m| Some(m.mean_average_precision)).collect())
            }
            MetricName::HierarchicalPrecision => (
                "mHP",
                per_k(|m| Some(m.mean_hierarchical_precision)).collect(),
            ),
            MetricName::Ahp => ("mAHP", per_k(|m| Some(m.mean_ahp)).collect()),
            MetricName::AhpMean => ("mAHP_mean", per_k(|m| Some(m.mean_ahp_mean)).collect()),
            MetricName::ApReport => ("mAP_report", per_k(|m| Some(m.mean_ap_report)).collect()),
            MetricName::PrecisionHit20 => {
                push("mP_hit20_queries", None, a.n_hit20 as f64);
                ("mP_hit20", per_k(|m| m.mean_p_hit20).collect())
            }
            MetricName::AhpHit20 => {
                push("mAHP_hit20_queries", None, a.n_sim_hit20 as f64);
                ("mAHP_hit20", per_k(|m| m.mean_ahp_hit20).collect())
            }
            MetricName::ApFull => {
                if let Some(v) = a.map_full {
                    push("AP_full", None, v);
                }
                continue;
            }
            MetricName::Timing => {
                let Some(t) = timing else { continue };
                push("query_median_s", None, t.query_median_s);
                push("query_p95_s", None, t.query_p95_s);
                push("query_mean_s", None, t.query_mean_s);
                push("qps", None, t.qps);
                push("threads", None, t.threads as f64);
                push("build_s", None, t.build_s);
                push("bytes_per_item", None, t.bytes_per_item as f64);
                continue;
            }
        };
        for (k, v) in values {
            push(name, Some(k), v);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_metrics_choose_the_families_written() {
        // hand-made rankings for a pure-function unit test: 3 db items of classes 0, 0, 1; the
        // query (class 0, db item 0) ranks them 0, 1, 2; sim is the identity
        let sim = [1.0, 0.0, 0.0, 1.0];
        let a = score(
            &[vec![0, 1, 2]],
            Protocol::Report,
            &[0, 0, 1],
            &[0],
            &sim,
            2,
            &[1, 3],
        )
        .unwrap();
        let names = |families: &[MetricName]| -> Vec<(&str, Option<usize>)> {
            metric_values(&a, None, families)
                .into_iter()
                .map(|(m, k, _)| (m, k))
                .collect()
        };
        assert_eq!(
            names(&[MetricName::ApReport, MetricName::Timing]),
            [("mAP_report", Some(1)), ("mAP_report", Some(3))],
            "no timing without a timing; only the chosen family"
        );
        assert_eq!(
            names(&[MetricName::PrecisionHit20]),
            [
                ("mP_hit20_queries", None),
                ("mP_hit20", Some(1)),
                ("mP_hit20", Some(3))
            ]
        );
        // mAP_report@3 = (1/3)(1 + 1) = 2/3: hits at ranks 1 and 2 with P@1 = P@2 = 1
        let v = metric_values(&a, None, &[MetricName::ApReport]);
        assert!((v[1].2 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            metric_values(&a, None, &MetricName::ALL).len(),
            5 * 2 + 3 * 2 + 2 + 1
        );
    }
}
