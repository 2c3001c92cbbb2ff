//! The CIFAR-100 class hierarchy (WordNet-based, from Barz & Denzler's `Cifar-Hierarchy`).
//!
//! `cifar.parent-child.txt` holds `parent child` id pairs; `class_names.txt` holds `id name`.
//! Leaves must be exactly the fine classes `0..n_leaves` in canonical order. Heights count edges
//! down to the deepest leaf (leaves have height 0); the lowest common subsumer (LCS) of two nodes
//! is their deepest shared ancestor.

use super::{DataError, read_text};
use std::collections::BTreeMap;
use std::path::Path;

/// A validated rooted tree over the class ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    parent: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
    height: Vec<u32>,
    depth: Vec<u32>,
    names: Vec<String>,
    root: usize,
    n_leaves: usize,
}

impl Hierarchy {
    /// Loads `cifar.parent-child.txt` and `class_names.txt` from `dir` and checks that leaves
    /// `0..fine_names.len()` carry `fine_names` in order.
    pub fn load(dir: &Path, fine_names: &[String]) -> Result<Self, DataError> {
        let edges_path = dir.join("cifar.parent-child.txt");
        let names_path = dir.join("class_names.txt");
        let names = parse_names(&names_path, &read_text(&names_path)?)?;
        let edges = parse_edges(&edges_path, &read_text(&edges_path)?)?;
        Self::build(&edges_path, &edges, names, fine_names)
    }

    /// Builds and validates the tree from `(parent, child)` pairs and node names; `origin` names
    /// the edge file in errors.
    pub fn build(
        origin: &Path,
        edges: &[(usize, usize)],
        names: Vec<String>,
        fine_names: &[String],
    ) -> Result<Self, DataError> {
        let bad = |m: String| DataError::invalid(origin, m);
        let n = names.len();
        let mut parent = vec![None; n];
        let mut children = vec![Vec::new(); n];
        for &(p, c) in edges {
            if p >= n || c >= n {
                return Err(bad(format!(
                    "edge {p} -> {c} names a node without a name (ids 0..{n})"
                )));
            }
            if p == c {
                return Err(bad(format!("node {c} is its own parent (a cycle)")));
            }
            if let Some(old) = parent[c] {
                return Err(bad(format!(
                    "node {c} ({}) has two parents, {old} and {p}",
                    names[c]
                )));
            }
            parent[c] = Some(p);
            children[p].push(c);
        }
        let roots: Vec<usize> = (0..n).filter(|&v| parent[v].is_none()).collect();
        let root = match roots.as_slice() {
            [r] => *r,
            [] => {
                return Err(bad(
                    "no root: every node has a parent, so the edges form a cycle".into(),
                ));
            }
            many => {
                return Err(bad(format!(
                    "{} roots ({:?}), expected exactly one",
                    many.len(),
                    &many[..many.len().min(8)]
                )));
            }
        };
        // Depth by walking up; a walk longer than n steps means a cycle.
        let mut depth = vec![0u32; n];
        for v in 0..n {
            let (mut u, mut d) = (v, 0u32);
            while let Some(p) = parent[u] {
                u = p;
                d += 1;
                if d as usize > n {
                    return Err(bad(format!("cycle through node {v} ({})", names[v])));
                }
            }
            depth[v] = d;
        }
        let n_leaves = fine_names.len();
        let leaves: Vec<usize> = (0..n).filter(|&v| children[v].is_empty()).collect();
        if leaves != (0..n_leaves).collect::<Vec<_>>() {
            let missing: Vec<usize> = (0..n_leaves.min(n))
                .filter(|v| !leaves.contains(v))
                .collect();
            let extra: Vec<usize> = leaves.iter().copied().filter(|&v| v >= n_leaves).collect();
            return Err(bad(format!(
                "leaves must be exactly the fine classes 0..{n_leaves}; classes that are not leaves: {missing:?}; \
                 leaves that are not classes: {extra:?}"
            )));
        }
        for (i, fine) in fine_names.iter().enumerate() {
            if names[i] != *fine {
                return Err(bad(format!(
                    "leaf {i} is named `{}` but CIFAR-100 fine class {i} is `{fine}` (leaves must follow the canonical order)",
                    names[i]
                )));
            }
        }
        // Heights bottom-up: process nodes by decreasing depth.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&v| std::cmp::Reverse(depth[v]));
        let mut height = vec![0u32; n];
        for v in order {
            if let Some(p) = parent[v] {
                height[p] = height[p].max(height[v] + 1);
            }
        }
        Ok(Self {
            parent,
            children,
            height,
            depth,
            names,
            root,
            n_leaves,
        })
    }

    /// The root node.
    pub fn root(&self) -> usize {
        self.root
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    /// True for a tree without nodes (never, once built).
    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    /// Number of leaves (the fine classes).
    pub fn n_leaves(&self) -> usize {
        self.n_leaves
    }

    /// Parent of `v` (`None` for the root).
    pub fn parent(&self, v: usize) -> Option<usize> {
        self.parent[v]
    }

    /// Children of `v`.
    pub fn children(&self, v: usize) -> &[usize] {
        &self.children[v]
    }

    /// Name of node `v`.
    pub fn name(&self, v: usize) -> &str {
        &self.names[v]
    }

    /// Height of `v`: edges to its deepest descendant leaf (0 for leaves).
    pub fn height(&self, v: usize) -> u32 {
        self.height[v]
    }

    /// Height of the root, `max_height` in the similarity formula.
    pub fn max_height(&self) -> u32 {
        self.height[self.root]
    }

    /// Depth of `v` (0 for the root).
    pub fn depth(&self, v: usize) -> u32 {
        self.depth[v]
    }

    /// Lowest common subsumer: the deepest node that is an ancestor of both (or equal to one).
    pub fn lcs(&self, mut u: usize, mut v: usize) -> usize {
        while self.depth[u] > self.depth[v] {
            u = self.parent[u].unwrap_or(u);
        }
        while self.depth[v] > self.depth[u] {
            v = self.parent[v].unwrap_or(v);
        }
        while u != v {
            u = self.parent[u].unwrap_or(u);
            v = self.parent[v].unwrap_or(v);
        }
        u
    }

    /// Barz & Denzler's class similarity `1 - height(lcs(u, v)) / max_height`.
    pub fn similarity(&self, u: usize, v: usize) -> f64 {
        1.0 - f64::from(self.height(self.lcs(u, v))) / f64::from(self.max_height())
    }
}

fn parse_edges(path: &Path, text: &str) -> Result<Vec<(usize, usize)>, DataError> {
    let mut edges = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ids: Vec<Option<usize>> = line.split_whitespace().map(|t| t.parse().ok()).collect();
        match ids.as_slice() {
            [Some(p), Some(c)] => edges.push((*p, *c)),
            _ => {
                return Err(DataError::invalid(
                    path,
                    format!(
                        "line {}: `{line}`: expected two integer ids `parent child`",
                        i + 1
                    ),
                ));
            }
        }
    }
    Ok(edges)
}

fn parse_names(path: &Path, text: &str) -> Result<Vec<String>, DataError> {
    let mut by_id = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || {
            DataError::invalid(
                path,
                format!("line {}: `{line}`: expected `id name`", i + 1),
            )
        };
        let (id, name) = line
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(bad)?;
        let id: usize = id.parse().map_err(|_| bad())?;
        if by_id.insert(id, name.trim().to_string()).is_some() {
            return Err(DataError::invalid(
                path,
                format!("line {}: id {id} is named twice", i + 1),
            ));
        }
    }
    let n = by_id.len();
    if by_id.keys().copied().ne(0..n) {
        return Err(DataError::invalid(
            path,
            format!("ids must be 0..{n} without gaps"),
        ));
    }
    Ok(by_id.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    // hand-made input for a pure-function unit test:
    //        4
    //      /   \
    //     3     2
    //    / \
    //   0   1
    fn names() -> Vec<String> {
        ["a", "b", "c", "ab", "root"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
    fn fine() -> Vec<String> {
        names()[..3].to_vec()
    }

    #[test]
    fn heights_lcs_and_similarity() {
        let h = Hierarchy::build(
            Path::new("t"),
            &[(4, 3), (4, 2), (3, 0), (3, 1)],
            names(),
            &fine(),
        )
        .unwrap();
        assert_eq!(h.root(), 4);
        assert_eq!(h.max_height(), 2);
        assert_eq!(h.lcs(0, 1), 3);
        assert_eq!(h.lcs(0, 2), 4);
        assert_eq!(h.similarity(0, 0), 1.0);
        assert_eq!(h.similarity(0, 1), 0.5);
        assert_eq!(h.similarity(1, 2), 0.0);
    }

    #[test]
    fn cycle_is_rejected() {
        // 3 -> 4 -> 3 forms a cycle; 2 is a second root candidate... make every node parented.
        let err = Hierarchy::build(
            Path::new("t"),
            &[(4, 3), (3, 4), (3, 0), (3, 1), (4, 2)],
            names(),
            &fine(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
    }

    #[test]
    fn missing_leaf_is_rejected() {
        // Leaf 2 hangs below leaf 1, so class 1 is no longer a leaf.
        let err = Hierarchy::build(
            Path::new("t"),
            &[(4, 3), (1, 2), (3, 0), (3, 1)],
            names(),
            &fine(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("classes that are not leaves: [1]"),
            "{err}"
        );
    }

    #[test]
    fn two_roots_are_rejected() {
        let err = Hierarchy::build(Path::new("t"), &[(3, 0), (3, 1), (4, 2)], names(), &fine())
            .unwrap_err();
        assert!(err.to_string().contains("2 roots"), "{err}");
    }
}
