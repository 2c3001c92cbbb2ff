//! `harness iwan ...`: explanations and exports of a finished run's IWAN network.

use super::args::{IwanCommand, NetworkArgs};
use crate::data::cifar::SplitName;
use crate::experiment::iwan::{IwanRun, Network};
use crate::iwan::export;
use crate::iwan::graph::{Node, Ranked};
use crate::store;
use anyhow::{Context, Result, bail};
use std::path::Path;

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
