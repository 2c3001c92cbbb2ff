//! IWAN evaluated like the index methods: single-query latency, batch throughput and every
//! metric at `ks`, from the shortest-path rankings.

use super::Semantics as _;
use super::retrieval::{EvalError, EvalSettings, MethodResult, Timing, score};
use super::stats::summarize;
use crate::config::{IwanScore, Protocol};
use crate::index::Hit;
use crate::iwan::graph::{Iwan, SearchScratch};
use rayon::prelude::*;
use std::time::Instant;

/// Inputs of an IWAN evaluation.
pub struct IwanEval<'a> {
    /// The network over the database.
    pub graph: &'a Iwan,
    /// Each query's edges to word nodes.
    pub query_edges: &'a [Vec<(u32, f32)>],
    /// Fine labels of the database images.
    pub db_labels: &'a [u8],
    /// Fine labels of the queries.
    pub query_labels: &'a [u8],
    /// Seconds it took to build the graph.
    pub build_s: f64,
    /// How paths become a ranking.
    pub score: IwanScore,
}

/// Ranks every query by shortest path and scores the rankings; the method is named `name`.
pub fn evaluate(
    name: &str,
    e: &IwanEval<'_>,
    protocol: Protocol,
    sim: &[f64],
    n_classes: usize,
    s: &EvalSettings,
) -> Result<MethodResult, EvalError> {
    let k = s.ks.iter().copied().max().unwrap_or(1);
    let exclude = |i: usize| protocol.exclusion(i as u32);
    let timed = s.timing_queries.min(e.query_edges.len());
    let mut times = Vec::with_capacity(timed);
    let mut scratch = SearchScratch::default();
    if let Some(q) = e.query_edges.first() {
        e.graph.rank_with(q, k, exclude(0), e.score, &mut scratch);
    }
    for (i, q) in e.query_edges[..timed].iter().enumerate() {
        let t = Instant::now();
        e.graph.rank_with(q, k, exclude(i), e.score, &mut scratch);
        times.push(t.elapsed().as_secs_f64());
    }
    let latency = summarize(&times)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(s.threads.max(1))
        .build()
        .map_err(|err| EvalError::Input(format!("cannot start {} threads: {err}", s.threads)))?;
    let t = Instant::now();
    let rankings: Vec<Vec<Hit>> = pool.install(|| {
        e.query_edges
            .par_iter()
            .enumerate()
            .map_init(SearchScratch::default, |scratch, (i, q)| {
                e.graph
                    .rank_with(q, k, exclude(i), e.score, scratch)
                    .into_iter()
                    .map(|r| Hit {
                        id: r.image,
                        score: r.distance,
                    })
                    .collect()
            })
            .collect()
    });
    let qps = rankings.len() as f64 / t.elapsed().as_secs_f64().max(1e-12);
    let ids: Vec<Vec<u32>> = rankings
        .iter()
        .map(|h| h.iter().map(|x| x.id).collect())
        .collect();
    let report = score(
        &ids,
        protocol,
        e.db_labels,
        e.query_labels,
        sim,
        n_classes,
        &s.ks,
    )?;
    Ok(MethodResult {
        method: name.to_string(),
        protocol,
        report,
        timing: Timing::new(
            &latency,
            qps,
            s.threads,
            e.build_s,
            e.graph.bytes() / e.graph.n_images().max(1),
        ),
        rankings,
        index: None,
    })
}
