//! The image-word association network and its shortest-path search.
//!
//! Nodes: 0 is the query, `1..=N` the database images, `N+1..=N+M` the words, sorted
//! alphabetically. Each image links to its words with weight `1/strength`; each word links to
//! its `topWWK` strongest USF associates (weight `1/strength`), expanded `depth` times. Edges are
//! undirected; a pair linked twice keeps the lighter edge. Storage is CSR.
//!
//! A query attaches to its own words through edges that exist for that search only, so the
//! shared graph is never mutated. [`Iwan::search`] keeps only words in Dijkstra's heap, relaxes
//! images as leaves and stops once the top k are final; it returns exactly what
//! [`Iwan::search_plain`], textbook Dijkstra over every node, returns.

use crate::config::{IwanScore, Strength};
use crate::data::usf::UsfNorms;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

/// Graph-building settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphConfig {
    /// `topWWK`: associates per word.
    pub top_wwk: usize,
    /// Which USF strength weights word-word edges.
    pub strength: Strength,
    /// Expansion depth (1: image words and their associates).
    pub depth: usize,
}

/// Counts reported while building.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct BuildStats {
    /// USF rows skipped because the chosen strength was 0 or missing.
    pub zero_strength_skipped: usize,
    /// Database images without any word (isolated nodes).
    pub images_without_words: usize,
}

/// Undirected edges keyed by `(low node, high node)`; a pair added twice keeps the lighter edge.
#[derive(Debug, Clone, Default)]
pub(crate) struct Edges(BTreeMap<(u32, u32), f32>);

impl Edges {
    /// Adds the edge `a - b` of weight `w` (the lighter of duplicates wins).
    pub(crate) fn add(&mut self, a: u32, b: u32, w: f32) {
        let e = self.0.entry((a.min(b), a.max(b))).or_insert(w);
        *e = e.min(w);
    }
}

/// One search result: a database image (0-based) and its path length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    /// Database image, 0-based (its node is `image + 1`).
    pub image: u32,
    /// Shortest path length from the query.
    pub distance: f32,
}

/// The buffers of one search, kept between queries (one per thread) so that a query costs
/// no allocation proportional to the graph: image distances are reset through the list of
/// images the last search reached, word distances by one fill.
#[derive(Debug, Default)]
pub struct SearchScratch {
    wdist: Vec<f32>,
    idist: Vec<f32>,
    touched: Vec<u32>,
    heap: BinaryHeap<Reverse<(u32, u32)>>,
    /// Image distances, for the k-th best (the stopping bound).
    kth: Vec<f32>,
    /// The candidates of the final top k.
    ranked: Vec<Ranked>,
}

impl SearchScratch {
    /// Every distance infinite for a graph of `words` word nodes and `images` images.
    fn reset(&mut self, words: usize, images: usize) {
        self.wdist.clear();
        self.wdist.resize(words, f32::INFINITY);
        if self.idist.len() == images {
            // Only the images the previous search reached are finite.
            for &t in &self.touched {
                self.idist[t as usize] = f32::INFINITY;
            }
        } else {
            self.idist.clear();
            self.idist.resize(images, f32::INFINITY);
        }
        self.touched.clear();
        self.heap.clear();
    }
}

/// The network.
#[derive(Debug, Clone)]
pub struct Iwan {
    n_images: usize,
    words: Vec<String>,
    word_ids: HashMap<String, u32>,
    /// CSR over nodes `1..=N+M` (row `node - 1`).
    offsets: Vec<u32>,
    targets: Vec<u32>,
    weights: Vec<f32>,
    /// The lightest image-word edge (the search's stopping bound).
    min_image_weight: f32,
    /// Whether paths end at images (the report's search) instead of passing through them.
    images_are_sinks: bool,
    /// Build counts.
    pub stats: BuildStats,
}

fn strength_of(a: &crate::data::usf::Association, s: Strength) -> Option<f32> {
    match s {
        Strength::Fsg => a.fsg,
        Strength::Bsg => a.bsg,
        Strength::Max => match (a.fsg, a.bsg) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        },
    }
}

impl Iwan {
    /// Builds the network from each database image's words (already normalised to USF words,
    /// strongest first, strengths in (0, 1]) and the norms.
    pub fn build(image_words: &[Vec<(String, f32)>], norms: &UsfNorms, cfg: GraphConfig) -> Self {
        let mut stats = BuildStats::default();
        // Strongest associates of each cue.
        let mut assoc: HashMap<&str, Vec<(&str, f32)>> = HashMap::new();
        for a in &norms.rows {
            match strength_of(a, cfg.strength) {
                Some(s) if s > 0.0 => assoc
                    .entry(a.cue.as_str())
                    .or_default()
                    .push((a.target.as_str(), s)),
                _ => stats.zero_strength_skipped += 1,
            }
        }
        for list in assoc.values_mut() {
            list.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(y.0)));
            list.truncate(cfg.top_wwk);
        }
        let mut words: BTreeSet<String> = image_words
            .iter()
            .flatten()
            .map(|(w, _)| w.clone())
            .collect();
        let mut frontier: Vec<String> = words.iter().cloned().collect();
        let mut word_edges: Vec<(String, String, f32)> = Vec::new();
        for _ in 0..cfg.depth {
            let mut next = Vec::new();
            for w in &frontier {
                for &(t, s) in assoc.get(w.as_str()).map(Vec::as_slice).unwrap_or(&[]) {
                    word_edges.push((w.clone(), t.to_string(), 1.0 / s));
                    if words.insert(t.to_string()) {
                        next.push(t.to_string());
                    }
                }
            }
            frontier = next;
        }
        let words: Vec<String> = words.into_iter().collect();
        let word_ids: HashMap<&str, u32> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.as_str(), i as u32))
            .collect();
        let n = image_words.len();
        let word_node = |w: &str| (n + 1) as u32 + word_ids[w];
        let mut edges = Edges::default();
        for (i, list) in image_words.iter().enumerate() {
            if list.is_empty() {
                stats.images_without_words += 1;
            }
            for (w, s) in list {
                edges.add(i as u32 + 1, word_node(w), 1.0 / s);
            }
        }
        for (a, b, w) in &word_edges {
            if a != b {
                edges.add(word_node(a), word_node(b), *w);
            }
        }
        Self::from_edges(n, words, edges, stats, false)
    }

    /// The network over `n` images and the sorted `words` (word `i` is node `n + 1 + i`) with
    /// `edges`; `images_are_sinks` ends every path at its first image.
    pub(crate) fn from_edges(
        n: usize,
        words: Vec<String>,
        edges: Edges,
        stats: BuildStats,
        images_are_sinks: bool,
    ) -> Self {
        let word_ids: HashMap<String, u32> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        let edges = edges.0;
        let nodes = n + words.len();
        let mut degree = vec![0u32; nodes + 1];
        for &(a, b) in edges.keys() {
            degree[a as usize - 1] += 1;
            degree[b as usize - 1] += 1;
        }
        let mut offsets = vec![0u32; nodes + 1];
        for i in 0..nodes {
            offsets[i + 1] = offsets[i] + degree[i];
        }
        let mut fill = offsets.clone();
        let mut targets = vec![0u32; offsets[nodes] as usize];
        let mut weights = vec![0f32; offsets[nodes] as usize];
        for (&(a, b), &w) in &edges {
            for (from, to) in [(a, b), (b, a)] {
                let slot = &mut fill[from as usize - 1];
                targets[*slot as usize] = to;
                weights[*slot as usize] = w;
                *slot += 1;
            }
        }
        let min_image_weight = weights[..offsets[n] as usize]
            .iter()
            .copied()
            .fold(f32::INFINITY, f32::min);
        Self {
            n_images: n,
            words,
            word_ids,
            offsets,
            targets,
            weights,
            min_image_weight,
            images_are_sinks,
            stats,
        }
    }

    fn word_index(&self, node: u32) -> usize {
        node as usize - self.n_images - 1
    }

    /// Neighbours of a non-query node and the edge weights.
    pub fn neighbours(&self, node: u32) -> (&[u32], &[f32]) {
        let (a, b) = (
            self.offsets[node as usize - 1] as usize,
            self.offsets[node as usize] as usize,
        );
        (&self.targets[a..b], &self.weights[a..b])
    }

    /// Number of database images `N`.
    pub fn n_images(&self) -> usize {
        self.n_images
    }

    /// The words, sorted; word `i` is node `N + 1 + i`.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The node of a word.
    pub fn word_node(&self, word: &str) -> Option<u32> {
        self.word_ids
            .get(word)
            .map(|&i| (self.n_images + 1) as u32 + i)
    }

    /// Nodes, the query node included.
    pub fn node_count(&self) -> usize {
        1 + self.n_images + self.words.len()
    }

    /// Undirected edges (the query's excluded).
    pub fn edge_count(&self) -> usize {
        self.targets.len() / 2
    }

    /// Bytes of the CSR arrays.
    pub fn bytes(&self) -> usize {
        self.offsets.len() * 4 + self.targets.len() * 4 + self.weights.len() * 4
    }

    /// The query's edges to word nodes: `(word node, 1/strength)`, unknown words dropped.
    pub fn query_edges(&self, words: &[(String, f32)]) -> Vec<(u32, f32)> {
        words
            .iter()
            .filter_map(|(w, s)| self.word_node(w).map(|n| (n, 1.0 / s)))
            .collect()
    }

    /// The `k` best database images under `score`, skipping `exclude` (see [`Iwan::search`] and
    /// [`Iwan::search_multi_path`]).
    pub fn rank(
        &self,
        query: &[(u32, f32)],
        k: usize,
        exclude: Option<u32>,
        score: IwanScore,
    ) -> Vec<Ranked> {
        self.rank_with(query, k, exclude, score, &mut SearchScratch::default())
    }

    /// [`Iwan::rank`] with buffers kept between queries.
    pub fn rank_with(
        &self,
        query: &[(u32, f32)],
        k: usize,
        exclude: Option<u32>,
        score: IwanScore,
        scratch: &mut SearchScratch,
    ) -> Vec<Ranked> {
        if k == 0 {
            return Vec::new();
        }
        let multi_path = score == IwanScore::MultiPath;
        // The multi-path score needs every word's distance, so its Dijkstra runs to the end.
        let stop = (!multi_path).then_some((k, exclude));
        self.dijkstra(query, stop, scratch);
        let SearchScratch {
            wdist,
            idist,
            touched,
            ranked,
            ..
        } = scratch;
        ranked.clear();
        ranked.extend(
            touched
                .iter()
                .copied()
                .filter(|&i| Some(i) != exclude)
                .map(|i| Ranked {
                    image: i,
                    distance: if multi_path {
                        self.multi_path_distance(wdist, i)
                    } else {
                        idist[i as usize]
                    },
                }),
        );
        top_k(ranked, k)
    }

    /// The `k` nearest database images (ties by lower id), skipping `exclude`. Unreachable
    /// images are not returned.
    ///
    /// Dijkstra keeps only word nodes in its heap. Images are leaves between words, so when a
    /// word settles at `d`, each of its images gets the candidate distance `d + w` and, when that
    /// improves the image, the image's other words are relaxed from it at once; because
    /// rounding is monotone this yields the same distances, bit for bit, as popping the image
    /// from the heap. The search stops as soon as the next word, plus the lightest image edge,
    /// is farther than the k-th best image found so far: no later word can reach or improve an
    /// image below that bound, so the top k are final.
    pub fn search(&self, query: &[(u32, f32)], k: usize, exclude: Option<u32>) -> Vec<Ranked> {
        let score = IwanScore::ShortestPath;
        self.rank_with(query, k, exclude, score, &mut SearchScratch::default())
    }

    /// The multi-path score: an image's distance is the soft minimum
    /// `-ln(sum over its words a of exp(-(dist(a) + w(a, image))))`, which ranks images exactly
    /// as the sum of `exp(-path length)` over their words does, so an image reached through
    /// several short paths beats one reached through a single path of the same length. Needs
    /// every word's distance, so it runs Dijkstra to the end.
    pub fn search_multi_path(
        &self,
        query: &[(u32, f32)],
        k: usize,
        exclude: Option<u32>,
    ) -> Vec<Ranked> {
        let score = IwanScore::MultiPath;
        self.rank_with(query, k, exclude, score, &mut SearchScratch::default())
    }

    /// An image's multi-path distance from the word distances `wdist` (see
    /// [`Iwan::search_multi_path`]).
    fn multi_path_distance(&self, wdist: &[f32], image: u32) -> f32 {
        let (t, w) = self.neighbours(image + 1);
        let paths: Vec<f64> = t
            .iter()
            .zip(w)
            .map(|(&a, &wt)| f64::from(wdist[self.word_index(a)] + wt))
            .filter(|x| x.is_finite())
            .collect();
        let best = paths.iter().copied().fold(f64::INFINITY, f64::min);
        let sum: f64 = paths.iter().map(|x| (best - x).exp()).sum();
        (best - sum.ln()) as f32
    }

    /// Dijkstra over the word nodes (see [`Iwan::search`]); with `stop = Some((k, exclude))` it
    /// ends once the top `k` images other than `exclude` are final. Leaves in `scratch` the word
    /// distances, the image distances and the images reached, in the order they were first
    /// reached.
    fn dijkstra(
        &self,
        query: &[(u32, f32)],
        stop: Option<(usize, Option<u32>)>,
        scratch: &mut SearchScratch,
    ) {
        let n = self.n_images;
        scratch.reset(self.words.len(), n);
        let SearchScratch {
            wdist,
            idist,
            touched,
            heap,
            kth,
            ..
        } = scratch;
        for &(node, w) in query {
            let i = self.word_index(node);
            let d = 0.0 + w;
            if d < wdist[i] {
                wdist[i] = d;
                heap.push(Reverse((d.to_bits(), i as u32)));
            }
        }
        // Upper bound on the k-th best image distance (`bound`), refreshed now and then.
        let mut bound = f32::INFINITY;
        let mut settled = 0usize;
        while let Some(Reverse((bits, i))) = heap.pop() {
            let d = f32::from_bits(bits);
            let i = i as usize;
            if d > wdist[i] {
                continue;
            }
            if let Some((k, exclude)) = stop {
                settled += 1;
                if settled.is_multiple_of(32) && touched.len() > k {
                    kth.clear();
                    kth.extend(
                        touched
                            .iter()
                            .filter(|&&t| Some(t) != exclude)
                            .map(|&t| idist[t as usize]),
                    );
                    if kth.len() >= k {
                        let (_, at_k, _) = kth.select_nth_unstable_by(k - 1, f32::total_cmp);
                        bound = bound.min(*at_k);
                    }
                }
                if d + self.min_image_weight > bound {
                    break;
                }
            }
            let (t, w) = self.neighbours((n + 1 + i) as u32);
            for (&to, &wt) in t.iter().zip(w) {
                let nd = d + wt;
                if to as usize > n {
                    let j = self.word_index(to);
                    if nd < wdist[j] {
                        wdist[j] = nd;
                        heap.push(Reverse((nd.to_bits(), j as u32)));
                    }
                    continue;
                }
                let image = to as usize - 1;
                if nd >= idist[image] {
                    continue;
                }
                if idist[image].is_infinite() {
                    touched.push(image as u32);
                }
                idist[image] = nd;
                if self.images_are_sinks {
                    continue;
                }
                let (t2, w2) = self.neighbours(to);
                for (&b, &wb) in t2.iter().zip(w2) {
                    let j = self.word_index(b);
                    let nd2 = nd + wb;
                    if nd2 < wdist[j] {
                        wdist[j] = nd2;
                        heap.push(Reverse((nd2.to_bits(), j as u32)));
                    }
                }
            }
        }
    }

    /// The same result as [`Iwan::search`] by plain Dijkstra over every node, with the
    /// predecessor of each settled node (for explanations).
    pub fn search_plain(
        &self,
        query: &[(u32, f32)],
        k: usize,
        exclude: Option<u32>,
    ) -> (Vec<Ranked>, Vec<u32>) {
        let nodes = self.node_count();
        let mut dist = vec![f32::INFINITY; nodes];
        let mut pred = vec![u32::MAX; nodes];
        dist[0] = 0.0;
        let mut heap = BinaryHeap::new();
        for &(node, w) in query {
            let d = 0.0 + w;
            if d < dist[node as usize] {
                dist[node as usize] = d;
                pred[node as usize] = 0;
                heap.push(Reverse((d.to_bits(), node)));
            }
        }
        while let Some(Reverse((bits, node))) = heap.pop() {
            let d = f32::from_bits(bits);
            if d > dist[node as usize] {
                continue;
            }
            if self.images_are_sinks && (node as usize) <= self.n_images {
                continue;
            }
            let (t, w) = self.neighbours(node);
            for (&to, &wt) in t.iter().zip(w) {
                let nd = d + wt;
                if nd < dist[to as usize] {
                    dist[to as usize] = nd;
                    pred[to as usize] = node;
                    heap.push(Reverse((nd.to_bits(), to)));
                }
            }
        }
        let mut images: Vec<Ranked> = (1..=self.n_images as u32)
            .filter(|&n| dist[n as usize].is_finite() && Some(n - 1) != exclude)
            .map(|n| Ranked {
                image: n - 1,
                distance: dist[n as usize],
            })
            .collect();
        (top_k(&mut images, k), pred)
    }

    /// The shortest path query -> ... -> image for each of `images`, as `(node, weight of the
    /// edge into it)` starting with the query node 0 (weight 0); empty when unreachable. One
    /// plain Dijkstra serves all of them.
    pub fn explain(&self, query: &[(u32, f32)], images: &[u32]) -> Vec<Vec<(u32, f32)>> {
        let (_, pred) = self.search_plain(query, 0, None);
        let weight = |from: u32, to: u32| -> f32 {
            let edges: Box<dyn Iterator<Item = (u32, f32)>> = if from == 0 {
                Box::new(query.iter().copied())
            } else {
                let (t, w) = self.neighbours(from);
                Box::new(t.iter().copied().zip(w.iter().copied()))
            };
            edges
                .filter(|e| e.0 == to)
                .map(|e| e.1)
                .fold(f32::INFINITY, f32::min)
        };
        images
            .iter()
            .map(|&image| {
                let mut path = Vec::new();
                let mut node = image + 1;
                while node != 0 {
                    let p = pred[node as usize];
                    if p == u32::MAX {
                        return Vec::new();
                    }
                    path.push((node, weight(p, node)));
                    node = p;
                }
                path.push((0, 0.0));
                path.reverse();
                path
            })
            .collect()
    }

    /// What a node is.
    pub fn node(&self, node: u32) -> Node<'_> {
        let n = node as usize;
        if n == 0 {
            Node::Query
        } else if n <= self.n_images {
            Node::Image(node - 1)
        } else {
            Node::Word(&self.words[self.word_index(node)])
        }
    }

    /// Every undirected edge once, as `(lower node, higher node, weight)`, by lower node.
    pub fn edges(&self) -> impl Iterator<Item = (u32, u32, f32)> + '_ {
        (1..self.node_count() as u32).flat_map(move |a| {
            let (t, w) = self.neighbours(a);
            t.iter()
                .zip(w)
                .filter(move |(b, _)| **b > a)
                .map(move |(&b, &wt)| (a, b, wt))
        })
    }
}

/// A node of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node<'a> {
    /// Node 0.
    Query,
    /// A database image, 0-based.
    Image(u32),
    /// A USF word.
    Word(&'a str),
}

/// The `k` best by (distance, image id), sorted; `images` is left reordered.
fn top_k(images: &mut [Ranked], k: usize) -> Vec<Ranked> {
    let order = |a: &Ranked, b: &Ranked| {
        a.distance
            .total_cmp(&b.distance)
            .then(a.image.cmp(&b.image))
    };
    let k = k.min(images.len());
    if k == 0 {
        return Vec::new();
    }
    if k < images.len() {
        images.select_nth_unstable_by(k - 1, order);
    }
    let best = &mut images[..k];
    best.sort_by(order);
    best.to_vec()
}
