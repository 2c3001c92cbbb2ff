//! The network as CSV edge lists for external tools (pgRouting, networkx, ...): node ids as in
//! [`super::graph`] (0 = query, `1..=N` images, `N+1..` words).

use super::graph::{Iwan, Node, Ranked};
use std::fmt::Write;

/// `edges.csv`: `source,target,cost,reverse_cost`, each undirected edge once.
pub fn edges_csv(g: &Iwan) -> String {
    let mut out = String::from("source,target,cost,reverse_cost\n");
    for (a, b, w) in g.edges() {
        let _ = writeln!(out, "{a},{b},{w},{w}");
    }
    out
}

/// `nodes.csv`: `node,kind,name` (kind query, image or word; name the image id or the word).
pub fn nodes_csv(g: &Iwan) -> String {
    let mut out = String::from("node,kind,name\n");
    for n in 0..g.node_count() as u32 {
        let _ = match g.node(n) {
            Node::Query => writeln!(out, "{n},query,"),
            Node::Image(i) => writeln!(out, "{n},image,{i}"),
            Node::Word(w) => writeln!(out, "{n},word,{}", csv_field(w)),
        };
    }
    out
}

/// `query_edges.csv`: `query_id,word_node,cost`, the edges of node 0 for each query.
pub fn query_edges_csv(queries: &[Vec<(u32, f32)>]) -> String {
    let mut out = String::from("query_id,word_node,cost\n");
    for (q, edges) in queries.iter().enumerate() {
        for (node, w) in edges {
            let _ = writeln!(out, "{q},{node},{w}");
        }
    }
    out
}

/// `topk.csv`: `query_id,rank,image,distance`, a ranking per query (rank 0-based).
pub fn topk_csv(rankings: &[Vec<Ranked>]) -> String {
    let mut out = String::from("query_id,rank,image,distance\n");
    for (q, ranked) in rankings.iter().enumerate() {
        for (rank, r) in ranked.iter().enumerate() {
            let _ = writeln!(out, "{q},{rank},{},{}", r.image, r.distance);
        }
    }
    out
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_commas_are_quoted() {
        // hand-made input for a pure-function unit test
        assert_eq!(csv_field("dog"), "dog");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
