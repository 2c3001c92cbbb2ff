//! Databases of any size made from a trained network's real outputs ([`RealModelData`]), for
//! `harness bench scale`, and recall against exact search ([`recall_at_k`]).
//!
//! # How the rows are made
//! The source is one run's embed stage: for every CIFAR-100 image, its hash-layer activations
//! `a` (sigmoid outputs, `h` of them), its packed code (`a >= 0.5`) and its embedding `e`
//! (`d` values, the decoder's output), with the image's true class. A database of `N` rows is:
//! 1. the 10,000 test images (or the first `N`), so `N = 10k` is the report's own database and
//!    the queries (the first rows) are always real held-out images;
//! 2. then the 50,000 training images (when the run embedded them; otherwise the test images
//!    stand in for them below);
//! 3. then, for every further row, a new item between two real training images of one class:
//!    `x` uniform over the training images, `y` uniform over the training images of `x`'s
//!    class, `λ` uniform in `[0, 1)`, and
//!    `a = λ a_x + (1 − λ) a_y`, code `= a >= 0.5`, `e = λ e_x + (1 − λ) e_y`.
//!
//! So a new item's code differs from `x`'s only in bits where `x` and `y` differ: the bit flips
//! are drawn from the measured within-class differences, never uniformly. Its embedding is the
//! decoder's own output for `a` when the decoder is affine in the hash layer (the report's
//! decoder: one linear layer on the sigmoid units), and in any case lies between two real
//! embeddings of the class. Everything is seeded.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::BenchError;
use crate::index::IndexError;
use crate::index::scan::{Codes, hamming, pack_into, words_for};

/// One split of a run's embed outputs, row-major.
#[derive(Debug, Clone)]
pub struct SplitOutputs {
    /// `n x h` hash-layer activations.
    pub activations: Vec<f32>,
    /// `n x d` embeddings.
    pub embeddings: Vec<f32>,
    /// `n` true classes.
    pub labels: Vec<u32>,
}

impl SplitOutputs {
    fn len(&self) -> usize {
        self.labels.len()
    }
}

/// The row indices of each class's images, by class id.
fn members_by_class(labels: &[u32]) -> Vec<Vec<u32>> {
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut by_class = vec![Vec::new(); classes];
    for (i, &c) in labels.iter().enumerate() {
        by_class[c as usize].push(i as u32);
    }
    by_class
}

/// Row `j` of a row-major array of rows of `w` values.
fn row(values: &[f32], j: u32, w: usize) -> &[f32] {
    &values[j as usize * w..(j as usize + 1) * w]
}

/// Where one database row comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Row {
    Test(u32),
    Train(u32),
    Mix { x: u32, y: u32, lambda: f32 },
}

/// A database of `n` rows made from a run's real outputs (see the module docs).
#[derive(Debug, Clone)]
pub struct RealModelData<'a> {
    test: &'a SplitOutputs,
    train: &'a SplitOutputs,
    h: usize,
    d: usize,
    rows: Vec<Row>,
}

impl<'a> RealModelData<'a> {
    /// Plans `n` rows from `test` and `train` (`h` bits, `d` dimensions), seeded; without
    /// `train`, the made rows mix test images.
    pub fn new(
        test: &'a SplitOutputs,
        train: Option<&'a SplitOutputs>,
        h: usize,
        d: usize,
        n: usize,
        seed: u64,
    ) -> Result<Self, BenchError> {
        let real_train = train.is_some();
        let train = train.unwrap_or(test);
        for (name, s) in [("test", test), ("train", train)] {
            if s.activations.len() != s.len() * h || s.embeddings.len() != s.len() * d {
                return Err(BenchError::Option(format!(
                    "{name}: {} labels, {} activations ({h} each), {} embedding values ({d} each)",
                    s.len(),
                    s.activations.len(),
                    s.embeddings.len()
                )));
            }
        }
        if train.len() == 0 || h == 0 || d == 0 {
            return Err(BenchError::Option(
                "real-model data needs training images, h >= 1 and d >= 1".into(),
            ));
        }
        let by_class = members_by_class(&train.labels);
        let mut rows = Vec::with_capacity(n);
        rows.extend((0..test.len().min(n) as u32).map(Row::Test));
        if real_train {
            rows.extend((0..train.len().min(n - rows.len()) as u32).map(Row::Train));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        while rows.len() < n {
            let x = rng.random_range(0..train.len());
            let class = &by_class[train.labels[x] as usize];
            let y = class[rng.random_range(0..class.len())];
            let lambda = rng.random::<f32>();
            rows.push(Row::Mix {
                x: x as u32,
                y,
                lambda,
            });
        }
        Ok(Self {
            test,
            train,
            h,
            d,
            rows,
        })
    }

    /// Rows in the database.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the database is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The activations of row `i` into `out` (`h` values).
    pub fn activations(&self, i: usize, out: &mut [f32]) {
        self.fill(i, |s| &s.activations, self.h, out);
    }

    /// The embedding of row `i` into `out` (`d` values, not normalised).
    pub fn embedding(&self, i: usize, out: &mut [f32]) {
        self.fill(i, |s| &s.embeddings, self.d, out);
    }

    /// Row `i` of the per-image array `of` (`w` values each): a real image's own values, or
    /// the mixture of its two images' values.
    fn fill(&self, i: usize, of: fn(&SplitOutputs) -> &[f32], w: usize, out: &mut [f32]) {
        match self.rows[i] {
            Row::Test(j) => out.copy_from_slice(row(of(self.test), j, w)),
            Row::Train(j) => out.copy_from_slice(row(of(self.train), j, w)),
            Row::Mix { x, y, lambda } => {
                let (vx, vy) = (row(of(self.train), x, w), row(of(self.train), y, w));
                for (o, (&a, &b)) in out.iter_mut().zip(vx.iter().zip(vy)) {
                    *o = lambda * a + (1.0 - lambda) * b;
                }
            }
        }
    }

    /// Every row's code (`a >= 0.5`, as the embed stage binarises).
    pub fn codes(&self) -> Result<Codes, IndexError> {
        let (h, w) = (self.h, words_for(self.h));
        let mut words = vec![0u64; self.len() * w];
        let mut a = vec![0f32; h];
        for (i, c) in words.chunks_exact_mut(w).enumerate() {
            self.activations(i, &mut a);
            pack_into(&a, c);
        }
        Codes::new(self.len(), h, words)
    }
}

/// Quartiles and mean of the Hamming distance between two distinct same-class items, over
/// `pairs` seeded random pairs: of two real training images, or of a made row (beyond the
/// first `real` rows) and a real training image of its class.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WithinClass {
    /// Mean distance.
    pub mean: f64,
    /// 25th, 50th and 75th percentiles.
    pub quartiles: [u32; 3],
}

impl WithinClass {
    fn of(mut d: Vec<u32>) -> Option<Self> {
        if d.is_empty() {
            return None;
        }
        d.sort_unstable();
        let q = |p: f64| d[((p * d.len() as f64) as usize).min(d.len() - 1)];
        Some(Self {
            mean: d.iter().map(|&v| f64::from(v)).sum::<f64>() / d.len() as f64,
            quartiles: [q(0.25), q(0.5), q(0.75)],
        })
    }
}

/// Within-class distances of real training pairs and of made rows, to show how the made rows
/// compare (`None` where there are none).
pub fn within_class(
    data: &RealModelData<'_>,
    codes: &Codes,
    pairs: usize,
    seed: u64,
) -> (Option<WithinClass>, Option<WithinClass>) {
    let train = data.train;
    let (h, w) = (data.h, words_for(data.h));
    let train_code = |j: usize, buf: &mut Vec<u64>| {
        buf.resize(w, 0);
        pack_into(&train.activations[j * h..(j + 1) * h], buf);
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let by_class = members_by_class(&train.labels);
    let (mut cx, mut cy) = (Vec::new(), Vec::new());
    let mut real = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        let x = rng.random_range(0..train.len());
        let class = &by_class[train.labels[x] as usize];
        let y = class[rng.random_range(0..class.len())] as usize;
        if x != y {
            train_code(x, &mut cx);
            train_code(y, &mut cy);
            real.push(hamming(&cx, &cy));
        }
    }
    let made: Vec<usize> = (0..data.len())
        .filter(|&i| matches!(data.rows[i], Row::Mix { .. }))
        .take(pairs)
        .collect();
    let mut synthetic = Vec::with_capacity(made.len());
    for i in made {
        let Row::Mix { x, .. } = data.rows[i] else {
            continue;
        };
        let class = &by_class[train.labels[x as usize] as usize];
        let y = class[rng.random_range(0..class.len())] as usize;
        train_code(y, &mut cy);
        synthetic.push(hamming(codes.code(i), &cy));
    }
    (WithinClass::of(real), WithinClass::of(synthetic))
}

/// Mean over queries of `|top-k of A ∩ top-k of exact| / k`, for result rows of equal count
/// (`u64::MAX` pads short rows and is ignored).
pub fn recall_at_k(found: &[u64], exact: &[u64], queries: usize, k: usize) -> Option<f64> {
    if queries == 0 || k == 0 || found.len() != queries * k || exact.len() != queries * k {
        return None;
    }
    let mut total = 0.0;
    let mut truth: Vec<u64> = Vec::with_capacity(k);
    for q in 0..queries {
        truth.clear();
        truth.extend(exact[q * k..(q + 1) * k].iter().filter(|&&v| v != u64::MAX));
        truth.sort_unstable();
        let hits = found[q * k..(q + 1) * k]
            .iter()
            .filter(|&&v| v != u64::MAX && truth.binary_search(&v).is_ok())
            .count();
        total += hits as f64 / truth.len().max(1) as f64;
    }
    Some(total / queries as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-made outputs for unit tests of the pure functions: 4 training images of 2 classes,
    /// 2 test images, h = 3, d = 2.
    fn outputs() -> (SplitOutputs, SplitOutputs) {
        let test = SplitOutputs {
            activations: vec![0.9, 0.1, 0.2, 0.1, 0.8, 0.7],
            embeddings: vec![1.0, 0.0, 0.0, 1.0],
            labels: vec![0, 1],
        };
        let train = SplitOutputs {
            activations: vec![
                0.9, 0.1, 0.2, 0.6, 0.4, 0.9, // class 0
                0.1, 0.8, 0.7, 0.2, 0.9, 0.6, // class 1
            ],
            embeddings: vec![1.0, 0.1, 0.8, 0.3, 0.1, 1.0, 0.2, 0.9],
            labels: vec![0, 0, 1, 1],
        };
        (test, train)
    }

    #[test]
    fn rows_are_test_then_train_then_same_class_mixtures() {
        let (test, train) = outputs();
        let data = RealModelData::new(&test, Some(&train), 3, 2, 50, 7).unwrap();
        assert_eq!(data.len(), 50);
        let codes = data.codes().unwrap();
        // Real rows keep their own codes (bits 0b001 for test 0, 0b110 for test 1).
        assert_eq!(codes.code(0), &[0b001]);
        assert_eq!(codes.code(1), &[0b110]);
        assert_eq!(codes.code(2), &[0b001]);
        let (mut a, mut e) = (vec![0f32; 3], vec![0f32; 2]);
        for i in 6..50 {
            let Row::Mix { x, y, lambda } = data.rows[i] else {
                panic!("row {i} is not made");
            };
            assert_eq!(train.labels[x as usize], train.labels[y as usize]);
            assert!((0.0..1.0).contains(&lambda));
            data.activations(i, &mut a);
            data.embedding(i, &mut e);
            for (j, &aj) in a.iter().enumerate() {
                let (ax, ay) = (
                    train.activations[x as usize * 3 + j],
                    train.activations[y as usize * 3 + j],
                );
                assert_eq!(aj, lambda * ax + (1.0 - lambda) * ay);
                // A bit can differ from x's only where x and y differ.
                let bit = (codes.code(i)[0] >> j) & 1 == 1;
                if (ax >= 0.5) == (ay >= 0.5) {
                    assert_eq!(bit, ax >= 0.5);
                }
            }
            assert_eq!(
                e[0],
                lambda * train.embeddings[x as usize * 2]
                    + (1.0 - lambda) * train.embeddings[y as usize * 2]
            );
        }
        // Seeded: the same plan twice.
        let again = RealModelData::new(&test, Some(&train), 3, 2, 50, 7).unwrap();
        assert_eq!(again.rows, data.rows);
        // Without training images the test images are mixed instead.
        let test_only = RealModelData::new(&test, None, 3, 2, 5, 7).unwrap();
        assert!(matches!(
            test_only.rows[..],
            [Row::Test(0), Row::Test(1), Row::Mix { .. }, ..]
        ));
        let (real, made) = within_class(&data, &codes, 100, 1);
        assert!(real.is_some() && made.is_some());
    }

    #[test]
    fn small_databases_take_the_test_images_first() {
        let (test, train) = outputs();
        let data = RealModelData::new(&test, Some(&train), 3, 2, 1, 0).unwrap();
        assert_eq!(data.rows, vec![Row::Test(0)]);
        let bad = SplitOutputs {
            labels: vec![0],
            ..test.clone()
        };
        assert!(RealModelData::new(&bad, Some(&train), 3, 2, 5, 0).is_err());
    }

    #[test]
    fn recall_counts_the_shared_ids() {
        let exact = [1, 2, 3, 4, 5, 6];
        assert_eq!(recall_at_k(&[3, 2, 1, 4, 5, 6], &exact, 2, 3), Some(1.0));
        assert_eq!(
            recall_at_k(&[1, 2, u64::MAX, 4, 8, 7], &exact, 2, 3),
            Some(0.5)
        );
        assert_eq!(recall_at_k(&[1], &exact, 2, 3), None);
    }
}
