//! IWAN query latency on a finished run's network (`harness bench iwan`): one [`IwanRecord`]
//! per (topIWK, topWWK), the queries timed one by one on the calling thread.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::BenchError;
use crate::artifacts::WordModelCost;
use crate::data::cifar::SplitName;
use crate::eval::stats::summarize;
use crate::experiment::iwan::IwanRun;
use crate::iwan::graph::SearchScratch;

/// What `harness bench iwan` measures.
#[derive(Debug, Clone)]
pub struct IwanOptions {
    /// The finished run folder.
    pub run_dir: PathBuf,
    /// The database split.
    pub db: SplitName,
    /// Queries timed one by one (the first of the test split).
    pub queries: usize,
    /// Neighbours per query.
    pub k: usize,
    /// topIWK values; empty = the run's own.
    pub top_iwk: Vec<usize>,
    /// topWWK values; empty = the run's own.
    pub top_wwk: Vec<usize>,
}

/// One measured network.
#[derive(Debug, Clone, Serialize)]
pub struct IwanRecord {
    /// The database split.
    pub database: &'static str,
    /// Image nodes.
    pub images: usize,
    /// Word nodes.
    pub words: usize,
    /// All nodes.
    pub nodes: usize,
    /// Edges.
    pub edges: usize,
    /// Bytes the graph holds.
    pub bytes: usize,
    /// Seconds the build took.
    pub build_s: f64,
    /// topIWK.
    pub top_iwk: usize,
    /// topWWK.
    pub top_wwk: usize,
    /// The scoring's method name.
    pub score: &'static str,
    /// Queries timed.
    pub queries: usize,
    /// Of those, queries whose words are all outside the graph.
    pub queries_without_words: usize,
    /// Neighbours per query.
    pub k: usize,
    /// Median search time (s).
    pub median_s: f64,
    /// 95th-percentile search time (s).
    pub p95_s: f64,
    /// Mean search time (s).
    pub mean_s: f64,
    /// The word model's cost per query image, as the run measured it.
    pub word_model: WordModelCost,
    /// Median with the word model's cost added.
    pub with_model_median_s: f64,
    /// p95 with the word model's cost added.
    pub with_model_p95_s: f64,
}

/// Runs the benchmark on the run in `o.run_dir`; one record per (topIWK, topWWK).
pub fn run(o: &IwanOptions, data_root: Option<&Path>) -> Result<Vec<IwanRecord>, BenchError> {
    if o.queries == 0 || o.k == 0 {
        return Err(BenchError::Option(
            "--queries and --k must be at least 1".into(),
        ));
    }
    let run = IwanRun::open(&o.run_dir, data_root)?;
    let or_own = |v: &[usize], own: usize| if v.is_empty() { vec![own] } else { v.to_vec() };
    let iwks = or_own(&o.top_iwk, run.config.iwan.top_iwk);
    let wwks = or_own(&o.top_wwk, run.config.iwan.top_wwk);
    let cost = run.inputs.cost;
    let score = run.config.iwan.score;
    let mut records = Vec::new();
    for &iwk in &iwks {
        for &wwk in &wwks {
            let n = run.network(o.db, Some(iwk), Some(wwk))?;
            let q = o.queries.min(n.queries.len());
            let mut scratch = SearchScratch::default();
            if let Some(first) = n.queries.first() {
                n.graph.rank_with(first, o.k, None, score, &mut scratch);
            }
            let times: Vec<f64> = n.queries[..q]
                .iter()
                .map(|e| {
                    let t = Instant::now();
                    std::hint::black_box(n.graph.rank_with(e, o.k, None, score, &mut scratch));
                    t.elapsed().as_secs_f64()
                })
                .collect();
            let s = summarize(&times)?;
            let model = cost.total_s_per_image();
            records.push(IwanRecord {
                database: n.database.as_str(),
                images: n.graph.n_images(),
                words: n.graph.words().len(),
                nodes: n.graph.node_count(),
                edges: n.graph.edge_count(),
                bytes: n.graph.bytes(),
                build_s: n.build_s,
                top_iwk: iwk,
                top_wwk: wwk,
                score: score.method_name(),
                queries: q,
                queries_without_words: n.queries[..q].iter().filter(|e| e.is_empty()).count(),
                k: o.k,
                median_s: s.median,
                p95_s: s.p95,
                mean_s: s.mean,
                word_model: cost,
                with_model_median_s: s.median + model,
                with_model_p95_s: s.p95 + model,
            });
        }
    }
    Ok(records)
}
