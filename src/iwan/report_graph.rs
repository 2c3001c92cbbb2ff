//! IWAN built as the report's code built it for its Tables 3-4 (GitHub
//! ritszaar/Semantic-Similarity-Word-Associations @ 209c5d1; rules read from its
//! `compute_words.py`, `compute_image_links.py`, `compute_word_links.py` and
//! `compute_partial_test_results.py`), as a named setting beside ours, never mixed with it:
//!
//! * a node is a whole label name (`maple_tree` -> `maple tree`; an ImageNet name as it is),
//!   never mapped to a USF word; USF look-ups use its **last token** (`maple tree` looks up
//!   `tree`), on both the cue and the target side;
//! * the vocabulary is the 100 fine label names, each database image's top [`VOCABULARY_TOP`]
//!   predictions, and for each of those words the [`VOCABULARY_TOP`] strongest USF targets
//!   (forward strength, ties alphabetical) of its last token, each target a whole word;
//! * a database image links to its fine label at strength [`LABEL_STRENGTH`] (never to its
//!   coarse label) and to its top-topIWK predictions at their strength rounded to 6 decimals
//!   (a strength that rounds to 0 gives no edge; a prediction outside the vocabulary none);
//! * **every** pair of vocabulary words with a USF association between their last tokens is
//!   linked, with strength the larger of the two directions' forward strengths (topWWK plays no
//!   part: the report hard-codes 4 for the vocabulary);
//! * a query links to **all** of its stored predictions (up to 10) that are in the vocabulary;
//! * paths end at images: Dijkstra does not pass through an image node;
//! * the queries are the first [`REPORT_QUERIES`] test images; ties go to the lower train index.
//!
//! Where it cannot match: the report's word model was Keras's ResNet-50 on 224 px images; ours
//! are EfficientNet-Lite0's ImageNet labels or the trained network's CIFAR-100 classes. Its
//! weights are f64 and ours f32, so exact ties may break differently. Its fine-label list
//! misspells `crab` as `cra` (a node without associations); ours spells it right.

use super::graph::{BuildStats, Edges, Iwan};
use crate::data::usf::UsfNorms;
use std::collections::{BTreeSet, HashMap};

/// Predictions per database image in the vocabulary, and USF targets per word (hard-coded to
/// 4 in the report's `compute_words.py`).
pub const VOCABULARY_TOP: usize = 4;
/// Strength of an image's edge to its own fine label (weight 1.25).
pub const LABEL_STRENGTH: f32 = 0.8;
/// The report's queries: the first 500 test images (`graph_experiment.sh`).
pub const REPORT_QUERIES: usize = 500;

/// A label as the report names its node: `_` to a space, lower case (our USF words are lower
/// case; the report's were upper case).
pub fn node_name(label: &str) -> String {
    label.replace('_', " ").trim().to_lowercase()
}

fn last_token(word: &str) -> &str {
    word.rsplit(' ').next().unwrap_or(word)
}

/// The report's graph and its queries' edges.
pub struct ReportGraph {
    /// The network (images are sinks).
    pub graph: Iwan,
    /// Per query, its edges into the graph.
    pub queries: Vec<Vec<(u32, f32)>>,
    /// Database predictions at ranks up to topIWK that are not in the vocabulary (no edge).
    pub predictions_outside_vocabulary: usize,
}

/// Builds the report's graph.
///
/// * `label_names`: the word model's label names (ImageNet or CIFAR-100 classes);
/// * `fine_names`: the 100 CIFAR-100 fine label names; `db_fine[i]` image i's fine label;
/// * `db_predicted[i]`: image i's predictions `(label, strength)`, best first;
/// * `query_predicted[q]`: the same for each query (all of them are linked);
/// * `top_iwk`: predictions per database image that get an edge.
pub fn build(
    label_names: &[String],
    fine_names: &[String],
    db_fine: &[u8],
    db_predicted: &[Vec<(u32, f32)>],
    query_predicted: &[Vec<(u32, f32)>],
    norms: &UsfNorms,
    top_iwk: usize,
) -> ReportGraph {
    let label_node: Vec<String> = label_names.iter().map(|l| node_name(l)).collect();
    let fine_node: Vec<String> = fine_names.iter().map(|l| node_name(l)).collect();
    // Forward strengths by cue, and each cue's targets, strongest first (ties alphabetical).
    let mut fsg: HashMap<(&str, &str), f32> = HashMap::new();
    let mut targets: HashMap<&str, Vec<(&str, f32)>> = HashMap::new();
    for a in &norms.rows {
        if let Some(s) = a.fsg.filter(|s| *s > 0.0) {
            fsg.insert((a.cue.as_str(), a.target.as_str()), s);
            targets
                .entry(a.cue.as_str())
                .or_default()
                .push((a.target.as_str(), s));
        }
    }
    for list in targets.values_mut() {
        list.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(y.0)));
    }
    // The vocabulary.
    let mut base: BTreeSet<String> = fine_node.iter().cloned().collect();
    for p in db_predicted {
        for &(l, _) in p.iter().take(VOCABULARY_TOP) {
            base.insert(label_node[l as usize].clone());
        }
    }
    let mut vocabulary = base.clone();
    for w in &base {
        for &(t, _) in targets
            .get(last_token(w))
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .take(VOCABULARY_TOP)
        {
            vocabulary.insert(t.to_string());
        }
    }
    let words: Vec<String> = vocabulary.into_iter().collect();
    let n = db_predicted.len();
    let index: HashMap<&str, u32> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.as_str(), (n + 1 + i) as u32))
        .collect();
    let mut edges = Edges::default();
    let mut stats = BuildStats::default();
    let mut outside = 0;
    for (i, p) in db_predicted.iter().enumerate() {
        let image = i as u32 + 1;
        edges.add(
            image,
            index[fine_node[usize::from(db_fine[i])].as_str()],
            1.0 / LABEL_STRENGTH,
        );
        for &(l, s) in p.iter().take(top_iwk) {
            // The report's link files print strengths with 6 decimals.
            let s = ((f64::from(s) * 1e6).round() / 1e6) as f32;
            match index.get(label_node[l as usize].as_str()) {
                Some(&w) if s > 0.0 => edges.add(image, w, 1.0 / s),
                Some(_) => stats.zero_strength_skipped += 1,
                None => outside += 1,
            }
        }
    }
    // Every pair of words whose last tokens are associated, in either direction.
    let mut by_token: HashMap<&str, Vec<u32>> = HashMap::new();
    for w in &words {
        by_token
            .entry(last_token(w))
            .or_default()
            .push(index[w.as_str()]);
    }
    let mut strongest: HashMap<(u32, u32), f32> = HashMap::new();
    for (&(cue, target), &s) in &fsg {
        let (Some(a), Some(b)) = (by_token.get(cue), by_token.get(target)) else {
            continue;
        };
        for &x in a {
            for &y in b {
                if x != y {
                    let e = strongest.entry((x.min(y), x.max(y))).or_insert(s);
                    *e = e.max(s);
                }
            }
        }
    }
    for ((a, b), s) in strongest {
        edges.add(a, b, 1.0 / s);
    }
    let graph = Iwan::from_edges(n, words, edges, stats, true);
    let queries = query_predicted
        .iter()
        .map(|p| {
            p.iter()
                .filter(|(_, s)| *s > 0.0)
                .filter_map(|&(l, s)| {
                    let w = graph.word_node(&label_node[l as usize])?;
                    Some((w, 1.0 / s))
                })
                .collect()
        })
        .collect();
    ReportGraph {
        graph,
        queries,
        predictions_outside_vocabulary: outside,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::usf::Association;

    fn assoc(cue: &str, target: &str, fsg: f32) -> Association {
        Association {
            cue: cue.into(),
            target: target.into(),
            normed: true,
            fsg: Some(fsg),
            bsg: None,
        }
    }

    #[test]
    fn the_reports_rules_on_a_tiny_graph() {
        // hand-made input for a pure-function unit test
        let norms = UsfNorms {
            rows: vec![
                assoc("tree", "leaf", 0.5),
                assoc("tree", "oak", 0.2),
                assoc("dog", "cat", 0.4),
                assoc("cat", "dog", 0.6),
                assoc("leaf", "green", 0.3),
            ],
        };
        let fine = vec!["maple_tree".to_string(), "dog".to_string()];
        let labels = vec!["cat".to_string(), "oak".to_string(), "wolf".to_string()];
        // image 0: a maple tree predicted as oak; image 1: a dog predicted as cat, then wolf
        let db = vec![vec![(1, 0.9)], vec![(0, 0.7), (2, 0.0000001)]];
        let queries = vec![vec![(0, 0.5), (2, 0.25), (1, 0.1)]];
        let r = build(&labels, &fine, &[0, 1], &db, &queries, &norms, 4);
        let g = &r.graph;
        // Whole names are nodes; the last token's targets join the vocabulary; `green` (a
        // target of a target) does not.
        // `wolf` is in the vocabulary (a top-4 prediction), though its edge rounds to 0.
        assert_eq!(
            g.words(),
            ["cat", "dog", "leaf", "maple tree", "oak", "wolf"]
        );
        let node = |w: &str| g.word_node(w).unwrap();
        let weight = |a: u32, b: u32| {
            let (t, w) = g.neighbours(a);
            t.iter().position(|&x| x == b).map(|i| w[i])
        };
        // The fine label at 0.8, the prediction at its strength; `wolf` rounds to 0: no edge.
        assert_eq!(weight(1, node("maple tree")), Some(1.25));
        assert_eq!(weight(1, node("oak")), Some(1.0 / 0.9));
        assert_eq!(g.neighbours(2).0.len(), 2, "dog and cat only");
        // `maple tree` looks up `tree`: linked to leaf and oak; cat - dog at the larger FSG.
        assert_eq!(weight(node("maple tree"), node("leaf")), Some(2.0));
        assert_eq!(weight(node("maple tree"), node("oak")), Some(5.0));
        assert_eq!(weight(node("cat"), node("dog")), Some(1.0 / 0.6));
        // The query links to every prediction in the vocabulary, not only its top topIWK.
        assert_eq!(
            r.queries[0],
            [(node("cat"), 2.0), (node("wolf"), 4.0), (node("oak"), 10.0)]
        );
        // Image 1 (dog) is reached through cat at 2 + 1/0.7, image 0 through oak at 10 + 1/0.9.
        let ranked = g.search(&r.queries[0], 2, None);
        assert_eq!(ranked[0].image, 1);
        assert!((ranked[0].distance - (2.0 + 1.0 / 0.7)).abs() < 1e-6);
        assert_eq!(ranked[1].image, 0);
        let (plain, _) = g.search_plain(&r.queries[0], 2, None);
        assert_eq!(plain, ranked);
    }
}
