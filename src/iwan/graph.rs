//! The image-word association network and its shortest-path search.
//!
//! Nodes: 0 is the query, `1..=N` the database images, `N+1..=N+M` the words, sorted
//! alphabetically. Each image links to its words with weight `1/strength`; each word links to
//! its `topWWK` strongest USF associates (weight `1/strength`), expanded `depth` times. Edges are
//! undirected; a pair linked twice keeps the lighter edge. Storage is CSR.
//!
//! A query attaches to its own words through edges that exist for that search only, so the
//! shared graph is never mutated. [`Iwan::search`] runs Dijkstra over the word nodes only:
//! paths that pass through an image (word a -> image -> word b) are precomputed as two-step
//! shortcuts relaxed in the same order of additions as plain Dijkstra, and image distances are
//! then read off their words once. It returns exactly what [`Iwan::search_plain`], Dijkstra
//! over every node, returns.

use crate::config::Strength;
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

/// One search result: a database image (0-based) and its path length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    /// Database image, 0-based (its node is `image + 1`).
    pub image: u32,
    /// Shortest path length from the query.
    pub distance: f32,
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
    /// Per word (0-based): two-step paths through an image, `(other word, w1, w2)`.
    shortcut_offsets: Vec<u32>,
    shortcuts: Vec<(u32, f32, f32)>,
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
        let word_ids: HashMap<String, u32> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        let n = image_words.len();
        let word_node = |w: &str| (n + 1) as u32 + word_ids[w];
        // Undirected edges keyed by (low, high) node; the lighter of duplicates wins.
        let mut edges: BTreeMap<(u32, u32), f32> = BTreeMap::new();
        let mut add = |a: u32, b: u32, w: f32| {
            let key = (a.min(b), a.max(b));
            let e = edges.entry(key).or_insert(w);
            *e = e.min(w);
        };
        for (i, list) in image_words.iter().enumerate() {
            if list.is_empty() {
                stats.images_without_words += 1;
            }
            for (w, s) in list {
                add(i as u32 + 1, word_node(w), 1.0 / s);
            }
        }
        for (a, b, w) in &word_edges {
            if a != b {
                add(word_node(a), word_node(b), *w);
            }
        }
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
        let mut g = Self {
            n_images: n,
            words,
            word_ids,
            offsets,
            targets,
            weights,
            shortcut_offsets: Vec::new(),
            shortcuts: Vec::new(),
            stats,
        };
        g.build_shortcuts();
        g
    }

    /// Two-step paths word -> image -> word, per word, for the fast search.
    fn build_shortcuts(&mut self) {
        let m = self.words.len();
        let mut per_word: Vec<Vec<(u32, f32, f32)>> = vec![Vec::new(); m];
        for image in 1..=self.n_images as u32 {
            let (t, w) = self.neighbours(image);
            for (i, (&a, &wa)) in t.iter().zip(w).enumerate() {
                for (j, (&b, &wb)) in t.iter().zip(w).enumerate() {
                    if i != j {
                        per_word[self.word_index(a)].push((b, wa, wb));
                    }
                }
            }
        }
        self.shortcut_offsets = Vec::with_capacity(m + 1);
        self.shortcut_offsets.push(0);
        for list in per_word {
            self.shortcuts.extend(list);
            self.shortcut_offsets.push(self.shortcuts.len() as u32);
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

    /// Bytes of the CSR arrays and the shortcut table.
    pub fn bytes(&self) -> usize {
        self.offsets.len() * 4
            + self.targets.len() * 4
            + self.weights.len() * 4
            + self.shortcut_offsets.len() * 4
            + self.shortcuts.len() * 12
    }

    /// The query's edges to word nodes: `(word node, 1/strength)`, unknown words dropped.
    pub fn query_edges(&self, words: &[(String, f32)]) -> Vec<(u32, f32)> {
        words
            .iter()
            .filter_map(|(w, s)| self.word_node(w).map(|n| (n, 1.0 / s)))
            .collect()
    }

    /// The `k` nearest database images (ties by lower id), skipping `exclude`, by Dijkstra over
    /// the words with image shortcuts. Unreachable images are not returned.
    pub fn search(&self, query: &[(u32, f32)], k: usize, exclude: Option<u32>) -> Vec<Ranked> {
        let m = self.words.len();
        let mut dist = vec![f32::INFINITY; m];
        let mut heap = BinaryHeap::new();
        for &(node, w) in query {
            let i = self.word_index(node);
            let d = 0.0 + w;
            if d < dist[i] {
                dist[i] = d;
                heap.push(Reverse((d.to_bits(), i as u32)));
            }
        }
        while let Some(Reverse((bits, i))) = heap.pop() {
            let d = f32::from_bits(bits);
            let i = i as usize;
            if d > dist[i] {
                continue;
            }
            let node = (self.n_images + 1 + i) as u32;
            let (t, w) = self.neighbours(node);
            for (&to, &wt) in t.iter().zip(w) {
                if to as usize > self.n_images {
                    let j = self.word_index(to);
                    let nd = d + wt;
                    if nd < dist[j] {
                        dist[j] = nd;
                        heap.push(Reverse((nd.to_bits(), j as u32)));
                    }
                }
            }
            let (a, b) = (
                self.shortcut_offsets[i] as usize,
                self.shortcut_offsets[i + 1] as usize,
            );
            for &(to, w1, w2) in &self.shortcuts[a..b] {
                let j = self.word_index(to);
                let nd = (d + w1) + w2;
                if nd < dist[j] {
                    dist[j] = nd;
                    heap.push(Reverse((nd.to_bits(), j as u32)));
                }
            }
        }
        let mut images: Vec<Ranked> = Vec::new();
        for image in 1..=self.n_images as u32 {
            let (t, w) = self.neighbours(image);
            let best = t
                .iter()
                .zip(w)
                .map(|(&word, &wt)| dist[self.word_index(word)] + wt)
                .fold(f32::INFINITY, f32::min);
            if best.is_finite() && Some(image - 1) != exclude {
                images.push(Ranked {
                    image: image - 1,
                    distance: best,
                });
            }
        }
        top_k(images, k)
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
        let images = (1..=self.n_images as u32)
            .filter(|&n| dist[n as usize].is_finite() && Some(n - 1) != exclude)
            .map(|n| Ranked {
                image: n - 1,
                distance: dist[n as usize],
            })
            .collect();
        (top_k(images, k), pred)
    }

    /// The shortest path query -> ... -> `image` as `(node, weight of the edge into it)`,
    /// starting with the query node 0 (weight 0); empty when unreachable.
    pub fn explain(&self, query: &[(u32, f32)], image: u32) -> Vec<(u32, f32)> {
        let (_, pred) = self.search_plain(query, 0, None);
        let mut path = Vec::new();
        let mut node = image + 1;
        while node != 0 {
            let p = pred[node as usize];
            if p == u32::MAX {
                return Vec::new();
            }
            let w = if p == 0 {
                query
                    .iter()
                    .filter(|q| q.0 == node)
                    .map(|q| q.1)
                    .fold(f32::INFINITY, f32::min)
            } else {
                let (t, w) = self.neighbours(p);
                t.iter()
                    .zip(w)
                    .filter(|(to, _)| **to == node)
                    .map(|(_, w)| *w)
                    .fold(f32::INFINITY, f32::min)
            };
            path.push((node, w));
            node = p;
        }
        path.push((0, 0.0));
        path.reverse();
        path
    }
}

/// The `k` best by (distance, image id), sorted.
fn top_k(mut images: Vec<Ranked>, k: usize) -> Vec<Ranked> {
    let order = |a: &Ranked, b: &Ranked| {
        a.distance
            .total_cmp(&b.distance)
            .then(a.image.cmp(&b.image))
    };
    if k < images.len() {
        if k == 0 {
            return Vec::new();
        }
        images.select_nth_unstable_by(k - 1, order);
        images.truncate(k);
    }
    images.sort_by(order);
    images
}
