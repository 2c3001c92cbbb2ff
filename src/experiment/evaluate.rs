//! The eval stage: every configured method under every protocol, IWAN included, then the
//! run's metrics, curves, rankings, tables and figures.

use super::iwan::{IwanInputs, Network};
use super::stages::{load_features, split_sizes};
use super::{ExperimentError, engine, render};
use crate::artifacts::RunLayout;
use crate::artifacts::{class_similarity, load_embedded};
use crate::config;
use crate::data::DataRoot;
use crate::data::cifar::{Cifar100, SplitName};
use crate::eval::Semantics as _;
use crate::eval::iwan::IwanEval;
use crate::eval::retrieval::{self, EvalSettings};
use crate::index::Hit;
use crate::index::rerank::Shortlist;
use crate::report;
use crate::store;
use std::path::Path;

/// Evaluates every configured method under every protocol; writes `metrics.csv` (long format),
/// `hp_curves.csv` and `tables/summary.md`.
pub(super) fn eval_stage(
    root: &DataRoot,
    cfg: &config::Config,
    data: &Cifar100,
    embed_dir: &Path,
    iwan_features: Option<&Path>,
    run: &RunLayout,
) -> Result<(), ExperimentError> {
    let (_, sim) = class_similarity(root)?;
    let test = load_embedded(embed_dir, SplitName::Test)?;
    let train = if cfg.eval.protocols.contains(&config::Protocol::TrainDb) {
        Some(load_embedded(embed_dir, SplitName::Train)?)
    } else {
        None
    };
    // Views borrow the label slices of the loaded CIFAR splits.
    let test_view = test.view(&data.test.fine);
    let train_view = train.as_ref().map(|t| t.view(&data.train.fine));
    let settings = eval_settings(cfg);
    let mut results = Vec::new();
    let mut saved = std::collections::HashSet::new();
    for &protocol in &cfg.eval.protocols {
        let db = match protocol {
            config::Protocol::TrainDb => train_view.as_ref().unwrap_or(&test_view),
            _ => &test_view,
        };
        for &method in &cfg.index.methods {
            let r = retrieval::evaluate(
                method,
                protocol,
                db,
                &test_view,
                sim.values(),
                sim.n(),
                &settings,
            )
            .map_err(|source| ExperimentError::Eval {
                method: method.as_str().into(),
                protocol,
                source,
            })?;
            // One index file per method and database split (report and leave_one_out share one),
            // written afresh by every execution of the stage so that its checksum describes it.
            let db_split = protocol.database();
            let path = run.index_file(method, db_split);
            if let Some(index) = &r.index
                && saved.insert(path.clone())
            {
                store::write_atomic(&path, |w| index.save(w).map_err(std::io::Error::other))?;
            }
            results.push(r);
        }
        if cfg.index.report_setting {
            results.push(report_table2(protocol, db, &test_view, &sim, &settings)?);
        }
    }
    if cfg.iwan.enabled {
        let features = iwan_features
            .map(|d| load_features(d, &[], None))
            .transpose()?;
        // The encoder pass behind the word model: the frozen features it reads (the ImageNet
        // head) or those the embedding network's decoder ran on (the classes model).
        let images: usize = split_sizes(cfg).iter().map(|s| s.1).sum();
        let encoder_s_per_image = ["iwan_features", "features"]
            .iter()
            .find_map(|stage| engine::stage_record(run, stage))
            .map(|r| r.seconds / images.max(1) as f64);
        let mut stored = vec![(SplitName::Test, test.rows(), test.embeddings.as_slice())];
        if let Some(t) = &train {
            stored.push((SplitName::Train, t.rows(), t.embeddings.as_slice()));
        }
        let inputs = IwanInputs::predict(
            root,
            cfg,
            data,
            &stored,
            features.as_ref(),
            encoder_s_per_image,
        )?;
        inputs.save(run)?;
        let mut networks: Vec<(config::DbWords, Network)> = Vec::new();
        for db_words in cfg.iwan.evaluated_db_words() {
            let iwan = config::IwanConfig {
                db_words,
                ..cfg.iwan.clone()
            };
            for &protocol in &cfg.eval.protocols {
                let db_split = protocol.database();
                let built =
                    |n: &(config::DbWords, Network)| n.0 == db_words && n.1.database == db_split;
                if !networks.iter().any(built) {
                    let net = inputs.network(db_split, &iwan)?;
                    let empty = net.queries_without_words();
                    if empty > 0 && networks.is_empty() {
                        crate::progress::println(&format!(
                            "warning: iwan: {empty} of {} queries have no word in the graph \
                             (their labels map to no USF word); they get empty rankings",
                            net.queries.len()
                        ));
                    }
                    networks.push((db_words, net));
                }
                let net = &networks.iter().find(|n| built(n)).expect("built above").1;
                let e = IwanEval {
                    graph: &net.graph,
                    query_edges: &net.queries,
                    db_labels: &data.split(db_split).fine[..net.graph.n_images()],
                    query_labels: &data.test.fine[..net.queries.len()],
                    build_s: net.build_s,
                    score: cfg.iwan.score,
                };
                let name = cfg.iwan.score.method_name_with(db_words);
                let r = crate::eval::iwan::evaluate(
                    name,
                    &e,
                    protocol,
                    sim.values(),
                    sim.n(),
                    &settings,
                )
                .map_err(|source| ExperimentError::Eval {
                    method: name.into(),
                    protocol,
                    source,
                })?;
                results.push(r);
            }
        }
        if cfg.iwan.report_graph {
            results.push(report_iwan(cfg, data, &inputs, &sim, &settings, run)?);
        }
        let summary: Vec<serde_json::Value> = networks
            .iter()
            .map(|(db_words, n)| {
                let mut v = n.summary(&inputs.cost);
                v["db_words"] = serde_json::json!(db_words);
                v
            })
            .collect();
        store::write_json_atomic(&run.iwan_graph(), &summary)?;
    }
    if cfg.eval.dump_rankings {
        for r in &results {
            let name = format!("{}-{}", r.method, r.protocol);
            dump_rankings(&r.rankings, &run.rankings(), &name)?;
        }
    }
    store::write_bytes_atomic(
        &run.metrics(),
        report::metrics_csv(&results, &cfg.eval.metrics).as_bytes(),
    )?;
    store::write_bytes_atomic(&run.hp_curves(), report::hp_curves_csv(&results).as_bytes())?;
    store::write_bytes_atomic(
        &run.tables().join("summary.md"),
        report::summary_markdown(cfg, &results).as_bytes(),
    )?;
    render::render_run(run)?;
    Ok(())
}

/// Hash + re-rank as the report's code ran it for Table 2 (`retrieve_images.py` line 44: one
/// `torch.topk` over Hamming distances with `k = topk = 250`, then the cosine re-rank): a
/// shortlist of `N' = max(ks)`, so every cut-off is a prefix of one re-ranked top-250.
fn report_table2(
    protocol: config::Protocol,
    db: &retrieval::SplitView<'_>,
    queries: &retrieval::SplitView<'_>,
    sim: &crate::semantics::SimilarityMatrix,
    settings: &EvalSettings,
) -> Result<retrieval::MethodResult, ExperimentError> {
    let k_max = settings.ks.iter().copied().max().unwrap_or(1);
    let settings = EvalSettings {
        shortlist: Shortlist::Absolute(k_max),
        ..settings.clone()
    };
    let method = crate::index::Method::HammingRerank;
    let mut r = retrieval::evaluate(
        method,
        protocol,
        db,
        queries,
        sim.values(),
        sim.n(),
        &settings,
    )
    .map_err(|source| ExperimentError::Eval {
        method: config::REPORT_TABLE2_METHOD.into(),
        protocol,
        source,
    })?;
    r.method = config::REPORT_TABLE2_METHOD.into();
    r.index = None;
    Ok(r)
}

/// IWAN as the report's code ran it for Tables 3-4 (`iwan::report_graph`): its graph over the
/// train split, searched by the first 500 test images; the graph's size goes to
/// `iwan/report_graph.json`.
fn report_iwan(
    cfg: &config::Config,
    data: &Cifar100,
    inputs: &IwanInputs,
    sim: &crate::semantics::SimilarityMatrix,
    settings: &EvalSettings,
    run: &RunLayout,
) -> Result<retrieval::MethodResult, ExperimentError> {
    use crate::iwan::report_graph::{self, REPORT_QUERIES};
    let train = inputs.split(SplitName::Train)?;
    let test = inputs.split(SplitName::Test)?;
    let queries = &test.predicted[..test.predicted.len().min(REPORT_QUERIES)];
    let started = std::time::Instant::now();
    let built = report_graph::build(
        &inputs.label_names,
        &data.names.fine,
        &data.train.fine[..train.predicted.len()],
        &train.predicted,
        queries,
        &inputs.norms,
        cfg.iwan.top_iwk,
    );
    let build_s = started.elapsed().as_secs_f64();
    let g = &built.graph;
    store::write_json_atomic(
        &run.report_graph(),
        &serde_json::json!({
            "top_iwk": cfg.iwan.top_iwk,
            "queries": queries.len(),
            "images": g.n_images(),
            "words": g.words().len(),
            "edges": g.edge_count(),
            "build_s": build_s,
            "predictions_outside_vocabulary": built.predictions_outside_vocabulary,
            "zero_strength_skipped": g.stats.zero_strength_skipped,
            "queries_without_words": built.queries.iter().filter(|q| q.is_empty()).count(),
        }),
    )?;
    let e = IwanEval {
        graph: g,
        query_edges: &built.queries,
        db_labels: &data.train.fine[..g.n_images()],
        query_labels: &data.test.fine[..built.queries.len()],
        build_s,
        score: config::IwanScore::ShortestPath,
    };
    let protocol = config::Protocol::TrainDb;
    crate::eval::iwan::evaluate(
        config::REPORT_GRAPH_METHOD,
        &e,
        protocol,
        sim.values(),
        sim.n(),
        settings,
    )
    .map_err(|source| ExperimentError::Eval {
        method: config::REPORT_GRAPH_METHOD.into(),
        protocol,
        source,
    })
}

/// Writes `<dir>/<method>-<protocol>.parquet`: `query_id, rank, db_id` (u32; ids index the
/// query and database split files, rank is 0-based) and `score` (f32: similarity for the
/// indices, distance for IWAN), the top max(ks) of every query.
fn dump_rankings(rankings: &[Vec<Hit>], dir: &Path, name: &str) -> Result<(), ExperimentError> {
    use crate::store::frame::{Frame, Values};
    let rows = rankings.iter().map(Vec::len).sum::<usize>();
    let (mut query, mut rank, mut db, mut score) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    for (q, hits) in rankings.iter().enumerate() {
        for (i, h) in hits.iter().enumerate() {
            query.push(Some(q as u32));
            rank.push(Some(i as u32));
            db.push(Some(h.id));
            score.push(h.score);
        }
    }
    Frame::new()
        .with("query_id", Values::U32(query))
        .with("rank", Values::U32(rank))
        .with("db_id", Values::U32(db))
        .with("score", Values::F32(score))
        .write(dir, name, &[config::TableFormat::Parquet])?;
    Ok(())
}

/// The retrieval settings of `cfg`: its cut-offs, shortlist, MIH split, timing queries, and its
/// index threads (`0`: one per available core).
fn eval_settings(cfg: &config::Config) -> EvalSettings {
    EvalSettings {
        ks: cfg.eval.ks.clone(),
        shortlist: match cfg.index.shortlist {
            Some(n) => Shortlist::Absolute(n),
            None => Shortlist::Factor(cfg.index.shortlist_factor),
        },
        mih_substrings: cfg.index.mih_substrings.map(|m| m as usize),
        timing_queries: cfg.eval.timing_queries,
        threads: if cfg.index.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            cfg.index.threads
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_the_config() {
        let mut cfg = config::Loaded::embedded_default().unwrap().config;
        cfg.index.shortlist = None;
        cfg.index.shortlist_factor = 3.0;
        cfg.index.threads = 5;
        cfg.index.mih_substrings = Some(4);
        let s = eval_settings(&cfg);
        assert_eq!(s.ks, cfg.eval.ks);
        assert_eq!(s.shortlist, Shortlist::Factor(3.0));
        assert_eq!((s.threads, s.mih_substrings), (5, Some(4)));
        assert_eq!(s.timing_queries, cfg.eval.timing_queries);
        // An absolute shortlist wins over the factor; 0 threads means one per core.
        cfg.index.shortlist = Some(600);
        cfg.index.threads = 0;
        let s = eval_settings(&cfg);
        assert_eq!(s.shortlist, Shortlist::Absolute(600));
        assert_eq!(
            s.threads,
            std::thread::available_parallelism().unwrap().get()
        );
    }

    /// A hand-made two-query result (unit test of the writer only), read back with polars.
    #[test]
    fn rankings_are_dumped_in_rank_order() {
        let tmp = tempfile::tempdir().unwrap();
        let rankings = vec![
            vec![Hit { id: 7, score: 0.9 }, Hit { id: 3, score: 0.5 }],
            vec![Hit { id: 1, score: 0.2 }],
        ];
        dump_rankings(&rankings, tmp.path(), "exact-report").unwrap();
        use polars::prelude::{ParquetReader, SerReader};
        let file = std::fs::File::open(tmp.path().join("exact-report.parquet")).unwrap();
        let df = ParquetReader::new(file).finish().unwrap();
        let column = |name: &str| -> Vec<u32> {
            let c = df.column(name).unwrap().u32().unwrap();
            c.into_no_null_iter().collect()
        };
        assert_eq!(column("query_id"), [0, 0, 1]);
        assert_eq!(column("rank"), [0, 1, 0]);
        assert_eq!(column("db_id"), [7, 3, 1]);
        let score = df.column("score").unwrap().f32().unwrap();
        let scores: Vec<f32> = score.into_no_null_iter().collect();
        assert_eq!(scores, [0.9, 0.5, 0.2]);
    }
}
