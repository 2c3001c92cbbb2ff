//! Class embeddings from a class-similarity matrix S, after Barz & Denzler
//! (WACV 2019, "Hierarchy-based Image Embeddings for Semantic Image
//! Retrieval"): the validated [`SimilarityMatrix`], the exact unit-sphere
//! embedding of their Algorithm 1 ([`unit_sphere_embedding`]), a rank-d
//! approximation by eigendecomposition ([`low_rank_embedding`]) built on a
//! cyclic Jacobi eigen solver ([`symmetric_eigen`]), and the Gram-error check
//! [`max_abs_gram_error`].
//!
//! Notation: n classes, S ∈ R^{n×n} with `S[u][v]` = sim(u, v) (in this project
//! 1 - height(lcs(u, v)) / max_height), class embedding c_u ∈ R^d with
//! <c_u, c_v> ≈ `S[u][v]` and |c_u| = 1. All arithmetic is f64.

use crate::data::hierarchy::Hierarchy;
use serde::Serialize;
use std::fmt::Write as _;
use thiserror::Error;

/// Absolute tolerance for symmetry and the unit diagonal of S.
const MATRIX_TOL: f64 = 1e-12;
/// 1 - |x|^2 below -NEG_TOL means S is not realisable (not PSD).
const NEG_TOL: f64 = 1e-9;
/// 1 - |x|^2 at or below this is treated as an exactly dependent class
/// (pivot 0) in the unit-sphere construction.
const DEPENDENT_TOL: f64 = 1e-14;
/// A zero-pivot constraint must already hold within this tolerance.
const DEPENDENT_RESIDUAL_TOL: f64 = 1e-6;
/// Relative off-diagonal tolerance of the Jacobi iteration.
const JACOBI_TOL: f64 = 1e-12;
/// Maximum number of Jacobi sweeps.
const JACOBI_MAX_SWEEPS: usize = 100;

/// Errors from building similarity matrices and embeddings.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SemanticsError {
    /// n = 0.
    #[error("matrix must have at least one class")]
    Empty,
    /// The number of values is not n².
    #[error("expected {n}x{n} = {expected} values, got {got}")]
    Shape {
        /// Number of classes n.
        n: usize,
        /// n².
        expected: usize,
        /// Number of values given.
        got: usize,
    },
    /// A value is NaN or infinite.
    #[error("entry ({row}, {col}) = {value} is not finite")]
    NonFinite {
        /// Row.
        row: usize,
        /// Column.
        col: usize,
        /// Offending value.
        value: f64,
    },
    /// |`S[u][v]` - `S[v][u]`| > 1e-12.
    #[error("matrix not symmetric at ({row}, {col}): difference {diff:e}")]
    Asymmetric {
        /// Row.
        row: usize,
        /// Column.
        col: usize,
        /// |`S[row][col]` - `S[col][row]`|.
        diff: f64,
    },
    /// |`S[u][u]` - 1| > 1e-12.
    #[error("diagonal entry {index} is {value}, expected 1")]
    Diagonal {
        /// Class u.
        index: usize,
        /// `S[u][u]`.
        value: f64,
    },
    /// S cannot be the Gram matrix of unit vectors (it is not PSD).
    #[error("similarity not realisable by unit vectors at class {class}: residual {residual:e}")]
    NotRealisable {
        /// Class whose embedding could not be constructed.
        class: usize,
        /// 1 - |x|^2 (negative), or the violated constraint's residual.
        residual: f64,
    },
    /// Embedding dimension d is 0 or larger than n.
    #[error("embedding dimension d = {d} must be in 1..={n}")]
    InvalidDimension {
        /// Requested d.
        d: usize,
        /// Number of classes n.
        n: usize,
    },
    /// A class has a zero row in the rank-d approximation and cannot be
    /// normalised.
    #[error("class {class} has a zero embedding in the rank-{d} approximation")]
    ZeroRow {
        /// Class u.
        class: usize,
        /// Dimension d.
        d: usize,
    },
    /// The Jacobi iteration did not converge.
    #[error("Jacobi eigen solver did not converge after {sweeps} sweeps (off-norm {off_norm:e})")]
    NoConvergence {
        /// Sweeps done.
        sweeps: usize,
        /// Remaining off-diagonal Frobenius norm.
        off_norm: f64,
    },
}

fn check_square(n: usize, values: &[f64]) -> Result<(), SemanticsError> {
    if n == 0 {
        return Err(SemanticsError::Empty);
    }
    let expected = n.checked_mul(n).ok_or(SemanticsError::Shape {
        n,
        expected: usize::MAX,
        got: values.len(),
    })?;
    if values.len() != expected {
        return Err(SemanticsError::Shape {
            n,
            expected,
            got: values.len(),
        });
    }
    if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
        return Err(SemanticsError::NonFinite {
            row: pos / n,
            col: pos % n,
            value: values[pos],
        });
    }
    Ok(())
}

fn check_symmetric(n: usize, values: &[f64]) -> Result<(), SemanticsError> {
    for row in 0..n {
        for col in row + 1..n {
            let diff = (values[row * n + col] - values[col * n + row]).abs();
            if diff > MATRIX_TOL {
                return Err(SemanticsError::Asymmetric { row, col, diff });
            }
        }
    }
    Ok(())
}

/// Validated class-similarity matrix S (n × n, row-major, f64): finite,
/// symmetric within 1e-12, diagonal 1 within 1e-12. Entries are not required
/// to lie in [0, 1]; realisability (PSD) is checked by the embeddings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimilarityMatrix {
    n: usize,
    values: Vec<f64>,
}

impl SimilarityMatrix {
    /// Validates and wraps row-major values of an n × n matrix S.
    pub fn new(n: usize, values: Vec<f64>) -> Result<Self, SemanticsError> {
        check_square(n, &values)?;
        check_symmetric(n, &values)?;
        for index in 0..n {
            let value = values[index * n + index];
            if (value - 1.0).abs() > MATRIX_TOL {
                return Err(SemanticsError::Diagonal { index, value });
            }
        }
        Ok(Self { n, values })
    }

    /// Builds `S[u][v]` = f(u, v) for u, v < n and validates it.
    pub fn from_fn(
        n: usize,
        mut f: impl FnMut(usize, usize) -> f64,
    ) -> Result<Self, SemanticsError> {
        let mut values = Vec::with_capacity(n.saturating_mul(n));
        for u in 0..n {
            for v in 0..n {
                values.push(f(u, v));
            }
        }
        Self::new(n, values)
    }

    /// Barz & Denzler's class similarity over the leaves of a hierarchy:
    /// `S[u][v] = 1 - height(lcs(u, v)) / max_height`.
    pub fn from_hierarchy(hierarchy: &Hierarchy) -> Result<Self, SemanticsError> {
        Self::from_fn(hierarchy.n_leaves(), |u, v| hierarchy.similarity(u, v))
    }

    /// Number of classes n.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Row-major values (usable as the `sim` argument of the metrics).
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// `S[u][v]`. Panics if u or v >= n.
    pub fn get(&self, u: usize, v: usize) -> f64 {
        assert!(u < self.n && v < self.n, "class index out of range");
        self.values[u * self.n + v]
    }

    /// Row u of S. Panics if u >= n.
    pub fn row(&self, u: usize) -> &[f64] {
        &self.values[u * self.n..(u + 1) * self.n]
    }

    /// The row-major values, consuming the matrix.
    pub fn into_values(self) -> Vec<f64> {
        self.values
    }
}

/// Class embedding: n class vectors c_u ∈ R^d, row-major n × d, f64.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassEmbedding {
    n: usize,
    d: usize,
    values: Vec<f64>,
}

impl ClassEmbedding {
    /// Wraps row-major n × d values; errors if the length is not n·d, n or d
    /// is 0, or a value is not finite.
    pub fn new(n: usize, d: usize, values: Vec<f64>) -> Result<Self, SemanticsError> {
        if n == 0 || d == 0 {
            return Err(SemanticsError::InvalidDimension { d, n });
        }
        let expected = n.saturating_mul(d);
        if values.len() != expected {
            return Err(SemanticsError::Shape {
                n,
                expected,
                got: values.len(),
            });
        }
        if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
            return Err(SemanticsError::NonFinite {
                row: pos / d,
                col: pos % d,
                value: values[pos],
            });
        }
        Ok(Self { n, d, values })
    }

    /// Number of classes n.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Embedding dimension d.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Row-major n × d values.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// c_u, the embedding of class u. Panics if u >= n.
    pub fn row(&self, u: usize) -> &[f64] {
        &self.values[u * self.d..(u + 1) * self.d]
    }

    /// Row-major n × d values converted to f32 (e.g. as regression targets).
    pub fn to_f32(&self) -> Vec<f32> {
        self.values.iter().map(|&v| v as f32).collect()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Barz & Denzler's Algorithm 1: n unit vectors c_0, ..., c_{n-1} ∈ R^n with
/// <c_u, c_v> = `S[u][v]`.
///
/// c_0 = e_0. For class i, c_i has non-zeros only in its first i + 1
/// coordinates: the first i coordinates x solve <x, c_j> = `S[i][j]` for j < i
/// by forward substitution (c_j is zero beyond coordinate j, so the system is
/// lower triangular with diagonal `c_j[j]`), and `c_i[i]` = sqrt(1 - |x|²).
///
/// * 1 - |x|² < -1e-9: S is not PSD → [`SemanticsError::NotRealisable`];
///   small negatives are clamped to 0.
/// * Rank-deficient S (a class in the span of earlier ones, 1 - |x|² <=
///   1e-14): that class gets pivot `c_j[j]` = 0; later classes set x_j = 0 and
///   the j-th constraint must already hold within 1e-6, else NotRealisable.
///
/// Cost O(n³/6).
pub fn unit_sphere_embedding(s: &SimilarityMatrix) -> Result<ClassEmbedding, SemanticsError> {
    let n = s.n();
    let mut c = vec![0.0f64; n * n];
    for i in 0..n {
        let (done, rest) = c.split_at_mut(i * n);
        let ci = &mut rest[..n];
        for j in 0..i {
            let cj = &done[j * n..(j + 1) * n];
            let residual = s.get(i, j) - dot(&cj[..j], &ci[..j]);
            let pivot = cj[j];
            if pivot > 0.0 {
                ci[j] = residual / pivot;
            } else if residual.abs() <= DEPENDENT_RESIDUAL_TOL {
                ci[j] = 0.0;
            } else {
                return Err(SemanticsError::NotRealisable { class: i, residual });
            }
        }
        let rest_norm = 1.0 - dot(&ci[..i], &ci[..i]);
        if rest_norm < -NEG_TOL {
            return Err(SemanticsError::NotRealisable {
                class: i,
                residual: rest_norm,
            });
        }
        ci[i] = if rest_norm <= DEPENDENT_TOL {
            0.0
        } else {
            rest_norm.sqrt()
        };
    }
    ClassEmbedding::new(n, n, c)
}

/// Eigendecomposition A = V Λ V^T of a real symmetric matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SymmetricEigen {
    /// Matrix size n.
    pub n: usize,
    /// Eigenvalues λ_1 >= ... >= λ_n (descending).
    pub values: Vec<f64>,
    /// Row-major n × n V; column k is the unit eigenvector of `values[k]`.
    pub vectors: Vec<f64>,
}

impl SymmetricEigen {
    /// Eigenvector k (column k of V). Panics if k >= n.
    pub fn vector(&self, k: usize) -> Vec<f64> {
        (0..self.n).map(|r| self.vectors[r * self.n + k]).collect()
    }
}

/// Cyclic Jacobi eigenvalue algorithm for a real symmetric n × n matrix
/// (row-major). Sweeps over all pairs (p, q), p < q, annihilating `A[p][q]` by a
/// plane rotation, until the off-diagonal Frobenius norm is below
/// 1e-12 · max(1, |A|_F) (at most 100 sweeps). Suited to n up to a few
/// hundred (O(n³) per sweep).
///
/// Errors: n = 0, wrong length, non-finite entries, asymmetry > 1e-12,
/// no convergence.
pub fn symmetric_eigen(a: &[f64], n: usize) -> Result<SymmetricEigen, SemanticsError> {
    check_square(n, a)?;
    check_symmetric(n, a)?;
    let mut m = a.to_vec();
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let frobenius = m.iter().map(|x| x * x).sum::<f64>().sqrt();
    let tol = JACOBI_TOL * frobenius.max(1.0);
    let off_norm = |m: &[f64]| -> f64 {
        let mut sum = 0.0;
        for p in 0..n {
            for q in p + 1..n {
                sum += 2.0 * m[p * n + q] * m[p * n + q];
            }
        }
        sum.sqrt()
    };
    let mut sweeps = 0;
    loop {
        let off = off_norm(&m);
        if off < tol {
            break;
        }
        if sweeps == JACOBI_MAX_SWEEPS {
            return Err(SemanticsError::NoConvergence {
                sweeps,
                off_norm: off,
            });
        }
        sweeps += 1;
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let app = m[p * n + p];
                let aqq = m[q * n + q];
                // tan of the rotation angle: smaller root of t² + 2τt - 1 = 0
                let tau = (aqq - app) / (2.0 * apq);
                let t = if tau >= 0.0 {
                    1.0 / (tau + tau.hypot(1.0))
                } else {
                    -1.0 / (-tau + tau.hypot(1.0))
                };
                let c = 1.0 / t.hypot(1.0);
                let s = t * c;
                for k in 0..n {
                    if k == p || k == q {
                        continue;
                    }
                    let akp = m[k * n + p];
                    let akq = m[k * n + q];
                    let new_kp = c * akp - s * akq;
                    let new_kq = s * akp + c * akq;
                    m[k * n + p] = new_kp;
                    m[p * n + k] = new_kp;
                    m[k * n + q] = new_kq;
                    m[q * n + k] = new_kq;
                }
                m[p * n + p] = app - t * apq;
                m[q * n + q] = aqq + t * apq;
                m[p * n + q] = 0.0;
                m[q * n + p] = 0.0;
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| m[y * n + y].total_cmp(&m[x * n + x]));
    let values = order.iter().map(|&k| m[k * n + k]).collect();
    let mut vectors = vec![0.0f64; n * n];
    for r in 0..n {
        for (new_k, &old_k) in order.iter().enumerate() {
            vectors[r * n + new_k] = v[r * n + old_k];
        }
    }
    Ok(SymmetricEigen { n, values, vectors })
}

/// Rank-d class embedding: with S = V Λ V^T (Jacobi, eigenvalues descending),
/// X = V_d · sqrt(Λ_d) using the d largest eigenvalues (negatives clamped to
/// 0), then every row re-normalised to unit length, so that X X^T is the best
/// rank-d approximation of S up to the row normalisation. d = n reproduces S
/// (for PSD S).
///
/// Errors: d = 0 or d > n, Jacobi non-convergence, or a class with a zero row
/// (it cannot be normalised).
pub fn low_rank_embedding(
    s: &SimilarityMatrix,
    d: usize,
) -> Result<ClassEmbedding, SemanticsError> {
    let n = s.n();
    if d == 0 || d > n {
        return Err(SemanticsError::InvalidDimension { d, n });
    }
    let eig = symmetric_eigen(s.values(), n)?;
    let scales: Vec<f64> = eig.values[..d].iter().map(|&l| l.max(0.0).sqrt()).collect();
    let mut x = vec![0.0f64; n * d];
    for (class, row) in x.chunks_exact_mut(d).enumerate() {
        for (k, (out, scale)) in row.iter_mut().zip(&scales).enumerate() {
            *out = eig.vectors[class * n + k] * scale;
        }
        let norm = dot(row, row).sqrt();
        if norm <= f64::EPSILON {
            return Err(SemanticsError::ZeroRow { class, d });
        }
        row.iter_mut().for_each(|v| *v /= norm);
    }
    ClassEmbedding::new(n, d, x)
}

/// max_{u,v} |<c_u, c_v> - `S[u][v]`|: how far the embedding's Gram matrix C C^T
/// is from S. Returns +∞ if the embedding and S have different n.
pub fn max_abs_gram_error(embedding: &ClassEmbedding, s: &SimilarityMatrix) -> f64 {
    if embedding.n() != s.n() {
        return f64::INFINITY;
    }
    let n = s.n();
    let mut worst = 0.0f64;
    for u in 0..n {
        for v in 0..n {
            let err = (dot(embedding.row(u), embedding.row(v)) - s.get(u, v)).abs();
            worst = worst.max(err);
        }
    }
    worst
}

/// The class embedding of dimension `d`: the exact unit-sphere embedding when `d == n`,
/// otherwise the best rank-`d` approximation ([`low_rank_embedding`]).
pub fn class_embedding(s: &SimilarityMatrix, d: usize) -> Result<ClassEmbedding, SemanticsError> {
    if d == s.n() {
        unit_sphere_embedding(s)
    } else {
        low_rank_embedding(s, d)
    }
}

/// `similarity.csv`: a header `label,name,<name_0>,...` and one row per class.
pub fn similarity_csv(s: &SimilarityMatrix, names: &[String]) -> String {
    let mut out = format!("label,name,{}\n", names.join(","));
    for (u, name) in names.iter().enumerate().take(s.n()) {
        let _ = write!(out, "{u},{name}");
        for v in 0..s.n() {
            let _ = write!(out, ",{}", s.get(u, v));
        }
        out.push('\n');
    }
    out
}

/// `class_embedding.csv`: `label,name,d0,d1,...`, one row per class.
pub fn embedding_csv(e: &ClassEmbedding, names: &[String]) -> String {
    let header: Vec<String> = (0..e.d()).map(|j| format!("d{j}")).collect();
    let mut out = format!("label,name,{}\n", header.join(","));
    for (u, name) in names.iter().enumerate().take(e.n()) {
        let _ = write!(out, "{u},{name}");
        for x in e.row(u) {
            let _ = write!(out, ",{x}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::stats::SplitMix64;

    /// S from a small hand-written tree of height 3 with 6 leaves, all at
    /// depth 3: `S[u][v]` = 1 - height(lcs(u, v)) / 3.
    ///
    /// ```text
    ///             root (h 3)
    ///           /            \
    ///        A (h 2)        B (h 2)
    ///       /     \         /     \
    ///   A1 (h 1) A2 (h 1) B1 (h 1) B2 (h 1)
    ///    / \       |       / \       |
    ///   l0  l1     l2     l3  l4     l5
    /// ```
    fn tree_similarity() -> SimilarityMatrix {
        // hand-made input for a pure-function unit test
        // ancestors of each leaf from the root: [depth 0, depth 1, depth 2]
        let paths = [
            ["root", "A", "A1"],
            ["root", "A", "A1"],
            ["root", "A", "A2"],
            ["root", "B", "B1"],
            ["root", "B", "B1"],
            ["root", "B", "B2"],
        ];
        SimilarityMatrix::from_fn(6, |u, v| {
            if u == v {
                return 1.0;
            }
            // common ancestors m in 1..=3; the lcs is at depth m - 1, so its
            // height is 3 - (m - 1) = 4 - m
            let m = paths[u]
                .iter()
                .zip(&paths[v])
                .take_while(|(a, b)| a == b)
                .count();
            1.0 - (4 - m) as f64 / 3.0
        })
        .unwrap()
    }

    fn assert_unit_rows(e: &ClassEmbedding) {
        for u in 0..e.n() {
            let norm = dot(e.row(u), e.row(u)).sqrt();
            assert!((norm - 1.0).abs() < 1e-12, "row {u} norm {norm}");
        }
    }

    #[test]
    fn tree_similarity_values() {
        let s = tree_similarity();
        // siblings under A1: lcs A1 of height 1 -> 1 - 1/3
        assert!((s.get(0, 1) - 2.0 / 3.0).abs() < 1e-15);
        // l0, l2 meet at A (height 2) -> 1/3
        assert!((s.get(0, 2) - 1.0 / 3.0).abs() < 1e-15);
        // l0, l5 meet at the root (height 3) -> 0
        assert_eq!(s.get(0, 5), 0.0);
        assert_eq!(s.get(4, 4), 1.0);
    }

    #[test]
    fn unit_sphere_reproduces_tree_similarity() {
        let s = tree_similarity();
        let e = unit_sphere_embedding(&s).unwrap();
        assert_eq!((e.n(), e.d()), (6, 6));
        assert!(max_abs_gram_error(&e, &s) < 1e-9);
        assert_unit_rows(&e);
        // c_i is zero beyond coordinate i (lower-triangular construction)
        for i in 0..6 {
            assert!(e.row(i)[i + 1..].iter().all(|&x| x == 0.0));
        }
        // c_0 = e_0
        assert_eq!(e.row(0), &[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let f = e.to_f32();
        assert_eq!(f.len(), 36);
        assert!((f[6] as f64 - e.row(1)[0]).abs() < 1e-7);
    }

    #[test]
    fn unit_sphere_rejects_non_psd() {
        // hand-made input for a pure-function unit test
        // c_1 = (0.9, sqrt(0.19)); c_2: x_0 = 0.9,
        // x_1 = (-0.9 - 0.9 * 0.9) / sqrt(0.19) = -1.71 / 0.436 = -3.92,
        // so 1 - |x|^2 = 1 - 0.81 - 15.4 < 0: not realisable
        let s =
            SimilarityMatrix::new(3, vec![1.0, 0.9, 0.9, 0.9, 1.0, -0.9, 0.9, -0.9, 1.0]).unwrap();
        assert!(matches!(
            unit_sphere_embedding(&s),
            Err(SemanticsError::NotRealisable { class: 2, .. })
        ));
        // hand-made input for a pure-function unit test
        // classes 0 and 1 identical (c_1 = c_0 = e_0, pivot 0) but S[2][0] = 0
        // and S[2][1] = 1 contradict each other
        let s =
            SimilarityMatrix::new(3, vec![1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]).unwrap();
        assert!(matches!(
            unit_sphere_embedding(&s),
            Err(SemanticsError::NotRealisable { class: 2, .. })
        ));
    }

    #[test]
    fn unit_sphere_handles_rank_deficient_realisable() {
        // hand-made input for a pure-function unit test
        // classes 0 and 1 identical, class 2 at 60 degrees from both
        let s =
            SimilarityMatrix::new(3, vec![1.0, 1.0, 0.5, 1.0, 1.0, 0.5, 0.5, 0.5, 1.0]).unwrap();
        let e = unit_sphere_embedding(&s).unwrap();
        assert!(max_abs_gram_error(&e, &s) < 1e-12);
        assert_eq!(e.row(1), &[1.0, 0.0, 0.0]);
        assert_unit_rows(&e);
    }

    #[test]
    fn similarity_matrix_validation() {
        assert_eq!(SimilarityMatrix::new(0, vec![]), Err(SemanticsError::Empty));
        assert!(matches!(
            SimilarityMatrix::new(2, vec![1.0; 3]),
            Err(SemanticsError::Shape { .. })
        ));
        assert!(matches!(
            SimilarityMatrix::new(2, vec![1.0, 0.5, 0.4, 1.0]),
            Err(SemanticsError::Asymmetric { row: 0, col: 1, .. })
        ));
        assert!(matches!(
            SimilarityMatrix::new(2, vec![1.0, 0.5, 0.5, 0.9]),
            Err(SemanticsError::Diagonal { index: 1, .. })
        ));
        assert!(matches!(
            SimilarityMatrix::new(2, vec![1.0, f64::NAN, f64::NAN, 1.0]),
            Err(SemanticsError::NonFinite { row: 0, col: 1, .. })
        ));
        let s = SimilarityMatrix::new(2, vec![1.0, 0.25, 0.25, 1.0]).unwrap();
        assert_eq!(s.row(1), &[0.25, 1.0]);
        assert_eq!(s.values().len(), 4);
    }

    #[test]
    fn jacobi_known_eigenvalues() {
        // hand-made input for a pure-function unit test
        // [[2, 1], [1, 2]] has eigenvalues 3 (vector (1,1)/√2) and 1
        let eig = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2).unwrap();
        assert!((eig.values[0] - 3.0).abs() < 1e-12);
        assert!((eig.values[1] - 1.0).abs() < 1e-12);
        let v0 = eig.vector(0);
        assert!((v0[0].abs() - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((v0[0] - v0[1]).abs() < 1e-12);
    }

    #[test]
    fn jacobi_reconstructs_random_symmetric() {
        let mut rng = SplitMix64::new(11);
        for n in [1usize, 3, 7, 20] {
            let mut a = vec![0.0; n * n];
            for i in 0..n {
                for j in i..n {
                    let x = 2.0 * rng.next_f64() - 1.0;
                    a[i * n + j] = x;
                    a[j * n + i] = x;
                }
            }
            let eig = symmetric_eigen(&a, n).unwrap();
            assert!(eig.values.windows(2).all(|w| w[0] >= w[1]));
            for i in 0..n {
                for j in 0..n {
                    // (V Λ V^T)_ij and (V^T V)_ij
                    let rec: f64 = (0..n)
                        .map(|k| eig.vectors[i * n + k] * eig.values[k] * eig.vectors[j * n + k])
                        .sum();
                    assert!((rec - a[i * n + j]).abs() < 1e-10, "n={n} ({i},{j})");
                    let gram: f64 = (0..n)
                        .map(|k| eig.vectors[k * n + i] * eig.vectors[k * n + j])
                        .sum();
                    let id = if i == j { 1.0 } else { 0.0 };
                    assert!((gram - id).abs() < 1e-10);
                }
            }
        }
        assert!(symmetric_eigen(&[1.0, 2.0, 3.0, 1.0], 2).is_err());
    }

    #[test]
    fn hundred_class_ultrametric() {
        // hand-made input for a pure-function unit test
        // 100 leaves of a complete binary tree of height 7, max_height 8:
        // S[u][v] = 1 - height(lcs(u, v)) / 8, values in {1 - j/8}
        let s = SimilarityMatrix::from_fn(100, |u, v| {
            1.0 - f64::from(usize::BITS - (u ^ v).leading_zeros()) / 8.0
        })
        .unwrap();
        let e = unit_sphere_embedding(&s).unwrap();
        assert!(max_abs_gram_error(&e, &s) < 1e-9);
        let full = low_rank_embedding(&s, 100).unwrap();
        assert!(max_abs_gram_error(&full, &s) < 1e-9);
        let low = low_rank_embedding(&s, 50).unwrap();
        assert_unit_rows(&low);
    }

    #[test]
    fn low_rank_full_dimension_reproduces_s() {
        let s = tree_similarity();
        let e = low_rank_embedding(&s, 6).unwrap();
        assert_eq!((e.n(), e.d()), (6, 6));
        assert!(max_abs_gram_error(&e, &s) < 1e-9);
        assert_unit_rows(&e);
    }

    #[test]
    fn low_rank_rows_are_unit_and_dimension_checked() {
        let s = tree_similarity();
        // The subtrees A and B are identical and have similarity 0 to each
        // other, so S is block diagonal with every eigenvalue doubled. Jacobi
        // never mixes the blocks (cross-block entries stay 0), so the single
        // top eigenvector lives in one block and d = 1 leaves the other
        // block's classes with zero rows.
        assert!(matches!(
            low_rank_embedding(&s, 1),
            Err(SemanticsError::ZeroRow { d: 1, .. })
        ));
        // Worked by hand on the tree: each subtree's S block is [[1, 2/3, 1/3], [2/3, 1, 1/3],
        // [1/3, 1/3, 1]]. With one direction per block (d = 2, and d = 3 for the block that does
        // not get the third) a block's three unit rows coincide, Gram 1 against S = 1/3: error
        // 2/3. With two (d = 4, 5) only the identical A1 leaves coincide, Gram 1 against 2/3:
        // error 1/3. With all six S is exact.
        let expected = [2.0 / 3.0, 2.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.0];
        for (d, want) in (2..=6).zip(expected) {
            let e = low_rank_embedding(&s, d).unwrap();
            assert_eq!(e.d(), d);
            assert_unit_rows(&e);
            let err = max_abs_gram_error(&e, &s);
            assert!(
                (err - want).abs() < 1e-9,
                "d = {d}: error {err}, expected {want}"
            );
        }
        assert_eq!(
            low_rank_embedding(&s, 0),
            Err(SemanticsError::InvalidDimension { d: 0, n: 6 })
        );
        assert_eq!(
            low_rank_embedding(&s, 7),
            Err(SemanticsError::InvalidDimension { d: 7, n: 6 })
        );
        let small = unit_sphere_embedding(&SimilarityMatrix::new(1, vec![1.0]).unwrap()).unwrap();
        assert_eq!(max_abs_gram_error(&small, &s), f64::INFINITY);
    }
}
