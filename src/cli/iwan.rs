//! `harness iwan ...` and `harness bench iwan`: explanations, exports and latency benchmarks on
//! a finished run's IWAN network.

use super::args::{BenchIwanArgs, IwanCommand, NetworkArgs};
use crate::data::cifar::SplitName;
use crate::eval::stats::summarize;
use crate::experiment::iwan::{IwanRun, Network};
use crate::iwan::export;
use crate::iwan::graph::{Node, Ranked};
use crate::store;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::time::Instant;

fn open(run_dir: &Path, data_root: Option<&Path>) -> Result<IwanRun> {
    IwanRun::open(run_dir, data_root)
        .with_context(|| format!("opening the IWAN network of {}", run_dir.display()))
}

fn network(run: &IwanRun, a: &NetworkArgs) -> Result<Network> {
    run.network(a.db.into(), a.top_iwk, a.top_wwk)
        .with_context(|| format!("building the network over the {:?} split", a.db))
}

/// Runs `harness iwan ...`.
pub fn run(cmd: IwanCommand, data_root: Option<&Path>) -> Result<()> {
    match cmd {
        IwanCommand::Explain {
            run_dir,
            query,
            net,
            k,
            include_self,
        } => {
            let run = open(&run_dir, data_root)?;
            let n = network(&run, &net)?;
            explain(&run, &n, query, k as usize, include_self)
        }
        IwanCommand::Export {
            run_dir,
            out,
            net,
            queries,
            k,
        } => {
            let run = open(&run_dir, data_root)?;
            let n = network(&run, &net)?;
            export_network(&run, &n, &out, queries, k as usize)
        }
    }
}

fn explain(run: &IwanRun, n: &Network, query: usize, k: usize, include_self: bool) -> Result<()> {
    let Some(edges) = n.queries.get(query) else {
        bail!(
            "--query {query} is outside the test split's 0..{} queries",
            n.queries.len()
        );
    };
    let data = &run.data;
    let names = &data.names;
    let class_of = |split: SplitName, i: u32| {
        let s = data.split(split);
        let (f, c) = (s.fine[i as usize] as usize, s.coarse[i as usize] as usize);
        (f, c, format!("{} / {}", names.fine[f], names.coarse[c]))
    };
    let (qf, qc, qname) = class_of(SplitName::Test, query as u32);
    println!("query: test image {query} ({qname})");
    let words: Vec<String> = n.query_words[query]
        .iter()
        .map(|(w, s)| {
            let in_graph = n.graph.word_node(w).is_some();
            format!(
                "{w} {s:.3}{}",
                if in_graph { "" } else { " (not in graph)" }
            )
        })
        .collect();
    println!(
        "words (strength): {}",
        if words.is_empty() {
            "none: the word model's labels map to no USF word".to_string()
        } else {
            words.join(", ")
        }
    );
    if run.uses_labels() {
        println!("note: database images are annotated with ground-truth label words");
    }
    let exclude = (n.database == SplitName::Test && !include_self).then_some(query as u32);
    let ranked = n.graph.rank(edges, k, exclude, run.config.iwan.score);
    if ranked.is_empty() {
        eprintln!("warning: the query reaches no database image; the ranking is empty");
        return Ok(());
    }
    let images: Vec<u32> = ranked.iter().map(|r| r.image).collect();
    let paths = n.graph.explain(edges, &images);
    for (rank, (r, path)) in ranked.iter().zip(&paths).enumerate() {
        let (f, c, name) = class_of(n.database, r.image);
        let mark = if f == qf {
            "same class"
        } else if c == qc {
            "same superclass"
        } else {
            "other"
        };
        println!(
            "{:>3}. {} image {} ({name}), distance {:.4} [{mark}]",
            rank + 1,
            n.database,
            r.image,
            r.distance
        );
        let hops: Vec<String> = path
            .iter()
            .map(|&(node, w)| {
                let label = match n.graph.node(node) {
                    Node::Query => "query".to_string(),
                    Node::Image(i) => format!("image {i}"),
                    Node::Word(word) => format!("\"{word}\""),
                };
                if node == 0 {
                    label
                } else {
                    format!("--{w:.3} (s {:.3})--> {label}", 1.0 / w)
                }
            })
            .collect();
        println!("     {}", hops.join(" "));
    }
    Ok(())
}

fn export_network(run: &IwanRun, n: &Network, out: &Path, queries: usize, k: usize) -> Result<()> {
    let q = if queries == 0 {
        n.queries.len()
    } else {
        queries.min(n.queries.len())
    };
    let g = &n.graph;
    let rankings: Vec<Vec<Ranked>> = n.queries[..q]
        .iter()
        .map(|e| g.rank(e, k, None, run.config.iwan.score))
        .collect();
    let write = |name: &str, text: String| -> Result<()> {
        let path = out.join(name);
        store::write_bytes_atomic(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    };
    write("edges.csv", export::edges_csv(g))?;
    write("nodes.csv", export::nodes_csv(g))?;
    write("query_edges.csv", export::query_edges_csv(&n.queries[..q]))?;
    write("topk.csv", export::topk_csv(&rankings))?;
    let meta = serde_json::json!({
        "run": run.dir.display().to_string(),
        "database": n.database.as_str(),
        "images": g.n_images(),
        "words": g.words().len(),
        "nodes": g.node_count(),
        "edges": g.edge_count(),
        "queries": q,
        "k": k,
        "top_iwk": n.top_iwk,
        "top_wwk": n.top_wwk,
        "score": run.config.iwan.score.method_name(),
        "db_words": run.config.iwan.db_words,
    });
    write("meta.json", serde_json::to_string_pretty(&meta)? + "\n")?;
    println!(
        "wrote {} ({} nodes, {} edges, {q} queries, top {k})",
        out.display(),
        g.node_count(),
        g.edge_count()
    );
    Ok(())
}

/// Runs `harness bench iwan`: one JSON line per (topIWK, topWWK).
pub fn bench(a: &BenchIwanArgs, data_root: Option<&Path>) -> Result<()> {
    if a.queries == 0 || a.k == 0 {
        bail!("--queries and --k must be at least 1");
    }
    let run = open(&a.run_dir, data_root)?;
    let iwks = if a.top_iwk.is_empty() {
        vec![run.config.iwan.top_iwk]
    } else {
        a.top_iwk.clone()
    };
    let wwks = if a.top_wwk.is_empty() {
        vec![run.config.iwan.top_wwk]
    } else {
        a.top_wwk.clone()
    };
    let cost = run.inputs.cost;
    for &iwk in &iwks {
        for &wwk in &wwks {
            let net = NetworkArgs {
                db: a.db,
                top_iwk: Some(iwk),
                top_wwk: Some(wwk),
            };
            let n = network(&run, &net)?;
            let q = a.queries.min(n.queries.len());
            let score = run.config.iwan.score;
            if let Some(first) = n.queries.first() {
                n.graph.rank(first, a.k, None, score);
            }
            let times: Vec<f64> = n.queries[..q]
                .iter()
                .map(|e| {
                    let t = Instant::now();
                    std::hint::black_box(n.graph.rank(e, a.k, None, score));
                    t.elapsed().as_secs_f64()
                })
                .collect();
            let s = summarize(&times).context("summarising query times")?;
            let model = cost.total_s_per_image();
            let record = serde_json::json!({
                "database": n.database.as_str(),
                "images": n.graph.n_images(),
                "words": n.graph.words().len(),
                "nodes": n.graph.node_count(),
                "edges": n.graph.edge_count(),
                "bytes": n.graph.bytes(),
                "build_s": n.build_s,
                "top_iwk": iwk,
                "top_wwk": wwk,
                "score": score.method_name(),
                "queries": q,
                "queries_without_words": n.queries[..q].iter().filter(|e| e.is_empty()).count(),
                "k": a.k,
                "median_s": s.median,
                "p95_s": s.p95,
                "mean_s": s.mean,
                "word_model": cost,
                "with_model_median_s": s.median + model,
                "with_model_p95_s": s.p95 + model,
            });
            println!("{record}");
        }
    }
    Ok(())
}
