//! The wide decoder's training step written out by hand (`train.engine: fused`).
//!
//! burn's autodiff computes a step of the default decoder as about a hundred tensor operations,
//! each a pass over memory into a fresh allocation, most of them on one thread while the other
//! waits (a profile of the train stage on 2 cores: the cores idle 39% of the time, 8% in
//! copies that only move data, 14% in the scheduler). Here the same network is one forward and
//! one backward pass over plain slices: eight matrix products on `gemm`, three forward and five
//! backward (the three heads that read the trunk are one product of a combined weight matrix),
//! batch norm with its activation and each loss with its gradient in single passes, and Adam
//! over all parameters at once ([`FusedAdam::update`]). Buffers are allocated once.
//!
//! The network and loss are those of `model::HashNet` (wide) and `train::training_loss`:
//!
//! ```text
//! hidden = relu(bn1(x W1 + b1))                       [B, T]
//! [z2 | e | logits] = hidden [W2 | W3 | W5] + bc        [B, h + d + K]
//! a = sigmoid(bn2(z2))                                  [B, h]
//! he = a W4 + b4                                        [B, d]
//! loss = mean(1 - cos(e, C[y])) + mean(1 - cos(he, C[y])) + w * CE(logits, y)
//! ```
//!
//! with burn's batch norm in training mode (batch statistics, the biased variance, running
//! statistics updated with momentum) and `cos(u, t) = u . t / max(|u|, 1e-8)`. It sums in other
//! orders than burn, so it is tested against burn's autodiff within a bound, not bit for bit.

use super::adam::FusedAdam;
use rayon::prelude::*;

/// burn's `BatchNormConfig` defaults.
const BN_EPSILON: f32 = 1e-5;
const BN_MOMENTUM: f32 = 0.1;
/// `cosine_loss`'s floor on the output norm.
const NORM_FLOOR: f32 = 1e-8;
/// Multiply-adds from which a product is split over the rayon pool.
const PARALLEL_MACS: usize = 1 << 21;

/// The decoder's widths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Widths {
    /// Input features (1280 for an EfficientNet-Lite).
    pub features: usize,
    /// Hidden units of the trunk.
    pub trunk: usize,
    /// Hash bits.
    pub h: usize,
    /// Embedding dimension.
    pub d: usize,
    /// Outputs of the auxiliary classifier (the classes), 0 without one.
    pub classes: usize,
}

impl Widths {
    /// Columns of the combined head matrix: hash, embedding, classifier.
    pub const fn heads(&self) -> usize {
        self.h + self.d + self.classes
    }

    /// The parameters' offsets in the flat vector, in the order of [`Parts`].
    fn offsets(&self) -> [usize; 11] {
        let (f, t, h, d, n) = (self.features, self.trunk, self.h, self.d, self.heads());
        let sizes = [f * t, t, t, t, t * n, n, h, h, h * d, d];
        let mut at = [0; 11];
        for (i, s) in sizes.iter().enumerate() {
            at[i + 1] = at[i] + s;
        }
        at
    }
}

/// The decoder's tensors by name, row-major, weights `[inputs, outputs]` as burn stores them.
/// The three heads that read the trunk (`hash`, `embed`, `classify`) are one matrix here.
#[derive(Debug, Clone, PartialEq)]
pub struct Parts {
    /// Trunk linear `[features, T]`.
    pub w1: Vec<f32>,
    /// Trunk bias `[T]`.
    pub b1: Vec<f32>,
    /// Trunk batch norm scale `[T]`.
    pub g1: Vec<f32>,
    /// Trunk batch norm shift `[T]`.
    pub be1: Vec<f32>,
    /// `[T, h + d + K]`: the hash layer's, embedding's and classifier's weights side by side.
    pub heads: Vec<f32>,
    /// Their biases `[h + d + K]`.
    pub heads_bias: Vec<f32>,
    /// Hash batch norm scale `[h]`.
    pub g2: Vec<f32>,
    /// Hash batch norm shift `[h]`.
    pub be2: Vec<f32>,
    /// Hash-branch decoder `[h, d]`.
    pub w4: Vec<f32>,
    /// Its bias `[d]`.
    pub b4: Vec<f32>,
}

impl Parts {
    fn fields(&self) -> [&Vec<f32>; 10] {
        [
            &self.w1,
            &self.b1,
            &self.g1,
            &self.be1,
            &self.heads,
            &self.heads_bias,
            &self.g2,
            &self.be2,
            &self.w4,
            &self.b4,
        ]
    }

    /// The flat vector of `widths` (checked against each part's length).
    fn flatten(&self, widths: Widths) -> Result<Vec<f32>, String> {
        let at = widths.offsets();
        let mut flat = Vec::with_capacity(at[10]);
        for (i, part) in self.fields().into_iter().enumerate() {
            if part.len() != at[i + 1] - at[i] {
                return Err(format!(
                    "part {i} has {} values, expected {} for {widths:?}",
                    part.len(),
                    at[i + 1] - at[i]
                ));
            }
            flat.extend_from_slice(part);
        }
        Ok(flat)
    }

    fn unflatten(flat: &[f32], widths: Widths) -> Self {
        let at = widths.offsets();
        let part = |i: usize| flat[at[i]..at[i + 1]].to_vec();
        Self {
            w1: part(0),
            b1: part(1),
            g1: part(2),
            be1: part(3),
            heads: part(4),
            heads_bias: part(5),
            g2: part(6),
            be2: part(7),
            w4: part(8),
            b4: part(9),
        }
    }
}

/// The batch norms' running statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    /// Trunk mean `[T]`.
    pub mean1: Vec<f32>,
    /// Trunk variance `[T]`.
    pub var1: Vec<f32>,
    /// Hash layer mean `[h]`.
    pub mean2: Vec<f32>,
    /// Hash layer variance `[h]`.
    pub var2: Vec<f32>,
}

/// What one step saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// The batch's loss before the update.
    pub loss: f32,
    /// Images whose embedding was nearest (by dot product) to their own class's row of `C`.
    pub hits: usize,
}

/// The decoder, its Adam moments and the buffers of a step.
#[derive(Debug, Clone)]
pub struct Trainer {
    widths: Widths,
    aux_weight: f32,
    adam: FusedAdam,
    params: Vec<f32>,
    grads: Vec<f32>,
    moment_1: Vec<f32>,
    moment_2: Vec<f32>,
    /// Adam steps taken.
    time: usize,
    running: Running,
    buffers: Buffers,
}

/// Per-step activations and gradients, sized for the largest batch seen.
#[derive(Debug, Clone, Default)]
struct Buffers {
    /// `x W1 + b1`, then the gradient at the trunk's output `[B, T]`.
    z1: Vec<f32>,
    /// The trunk's normalised pre-activations `[B, T]`.
    xhat1: Vec<f32>,
    /// The trunk's output `[B, T]`, then the gradient at `x W1 + b1`.
    hidden: Vec<f32>,
    /// The heads' outputs `[B, N]`.
    heads: Vec<f32>,
    /// Gradient at the heads' outputs `[B, N]`.
    d_heads: Vec<f32>,
    /// The hash layer's normalised pre-activations `[B, h]`.
    xhat2: Vec<f32>,
    /// Sigmoid activations `[B, h]`.
    a: Vec<f32>,
    /// Gradient at the activations `[B, h]`.
    d_a: Vec<f32>,
    /// The hash branch's embedding `[B, d]`.
    he: Vec<f32>,
    /// Its gradient `[B, d]`.
    d_he: Vec<f32>,
    /// Each embedding's dot products with the class embedding `[B, K]`.
    scores: Vec<f32>,
    /// Per-column statistics: the trunk's `1 / sqrt(var + eps)` `[T]` and the hash layer's `[h]`.
    inv_std1: Vec<f32>,
    inv_std2: Vec<f32>,
}

impl Trainer {
    /// A trainer starting from `parts` (Adam's moments at zero unless `moments` gives them
    /// with the steps taken) for a loss with classifier weight `aux_weight`.
    ///
    /// # Errors
    /// A part, moment or running statistic whose length does not fit `widths`.
    pub fn new(
        widths: Widths,
        parts: &Parts,
        running: Running,
        aux_weight: f32,
        adam: FusedAdam,
        moments: Option<(Parts, Parts, usize)>,
    ) -> Result<Self, String> {
        let params = parts.flatten(widths)?;
        let (moment_1, moment_2, time) = match moments {
            Some((m1, m2, time)) => (m1.flatten(widths)?, m2.flatten(widths)?, time),
            None => (vec![0.0; params.len()], vec![0.0; params.len()], 0),
        };
        let (t, h) = (widths.trunk, widths.h);
        for (name, v, len) in [
            ("trunk running mean", &running.mean1, t),
            ("trunk running variance", &running.var1, t),
            ("hash running mean", &running.mean2, h),
            ("hash running variance", &running.var2, h),
        ] {
            if v.len() != len {
                return Err(format!("{name} has {} values, expected {len}", v.len()));
            }
        }
        if widths.classes == 0 && aux_weight != 0.0 {
            return Err("a classifier loss weight without a classifier".into());
        }
        Ok(Self {
            widths,
            aux_weight,
            adam,
            grads: vec![0.0; params.len()],
            params,
            moment_1,
            moment_2,
            time,
            running,
            buffers: Buffers::default(),
        })
    }

    /// The current parameters.
    pub fn parts(&self) -> Parts {
        Parts::unflatten(&self.params, self.widths)
    }

    /// Adam's two moments and the steps taken.
    pub fn moments(&self) -> (Parts, Parts, usize) {
        (
            Parts::unflatten(&self.moment_1, self.widths),
            Parts::unflatten(&self.moment_2, self.widths),
            self.time,
        )
    }

    /// The running statistics.
    pub fn running(&self) -> &Running {
        &self.running
    }

    /// The gradient of the last step's loss, by part (before the update).
    pub fn gradients(&self) -> Parts {
        Parts::unflatten(&self.grads, self.widths)
    }

    /// One training step on features `x` (`[B, features]`) with labels `labels` against the
    /// class embedding `c` (`[K, d]`, unit rows), then Adam at learning rate `lr`.
    ///
    /// # Panics
    /// If `x` or `c` does not fit the widths and the batch, or a label is not a row of `c`.
    pub fn step(&mut self, x: &[f32], labels: &[u8], c: &[f32], lr: f64) -> StepOutcome {
        let outcome = self.gradient(x, labels, c);
        self.time += 1;
        self.adam.update(
            lr,
            self.time,
            &mut self.params,
            &self.grads,
            &mut self.moment_1,
            &mut self.moment_2,
        );
        outcome
    }

    /// The forward and backward passes: the loss, the hits and `self.grads`, and the running
    /// statistics updated.
    fn gradient(&mut self, x: &[f32], labels: &[u8], c: &[f32]) -> StepOutcome {
        let Widths {
            features: f,
            trunk: t,
            h,
            d,
            classes: k,
        } = self.widths;
        let n = self.widths.heads();
        let b = labels.len();
        assert_eq!(x.len(), b * f, "features are not [{b}, {f}]");
        assert!(b > 0, "an empty batch");
        assert_eq!(c.len() % d, 0, "class embedding is not [K, {d}]");
        let classes = c.len() / d;
        let at = self.widths.offsets();
        let (params, grads) = (&self.params, &mut self.grads);
        let p = |i: usize| &params[at[i]..at[i + 1]];
        let buf = &mut self.buffers;
        for (v, len) in [
            (&mut buf.z1, b * t),
            (&mut buf.xhat1, b * t),
            (&mut buf.hidden, b * t),
            (&mut buf.heads, b * n),
            (&mut buf.d_heads, b * n),
            (&mut buf.xhat2, b * h),
            (&mut buf.a, b * h),
            (&mut buf.d_a, b * h),
            (&mut buf.he, b * d),
            (&mut buf.d_he, b * d),
            (&mut buf.scores, b * classes),
            (&mut buf.inv_std1, t),
            (&mut buf.inv_std2, h),
        ] {
            v.resize(len, 0.0);
        }

        // Forward.
        fill_rows(&mut buf.z1, p(1));
        product(
            &mut buf.z1,
            true,
            View::rows(x, b, f),
            View::rows(p(0), f, t),
        );
        let (mean1, var1) = (&mut self.running.mean1, &mut self.running.var1);
        batch_norm(
            Columns::new(&buf.z1, b, t, t, 0),
            (p(2), p(3)),
            (&mut buf.xhat1, &mut buf.inv_std1),
            (mean1, var1),
            &mut buf.hidden,
            |y| y.max(0.0),
        );
        fill_rows(&mut buf.heads, p(5));
        product(
            &mut buf.heads,
            true,
            View::rows(&buf.hidden, b, t),
            View::rows(p(4), t, n),
        );
        let (mean2, var2) = (&mut self.running.mean2, &mut self.running.var2);
        batch_norm(
            Columns::new(&buf.heads, b, h, n, 0),
            (p(6), p(7)),
            (&mut buf.xhat2, &mut buf.inv_std2),
            (mean2, var2),
            &mut buf.a,
            |y| 1.0 / (1.0 + (-y).exp()),
        );
        fill_rows(&mut buf.he, p(9));
        product(
            &mut buf.he,
            true,
            View::rows(&buf.a, b, h),
            View::rows(p(8), h, d),
        );

        // The losses and their gradients at the outputs.
        let embedding = View {
            data: &buf.heads[h..],
            rows: b,
            cols: d,
            rs: n,
            cs: 1,
        };
        product(
            &mut buf.scores,
            false,
            embedding,
            View::rows(c, classes, d).t(),
        );
        let scale = 1.0 / b as f32;
        let (mut loss, mut hits) = (0.0f32, 0usize);
        for (i, &label) in labels.iter().enumerate() {
            let y = usize::from(label);
            let target = &c[y * d..(y + 1) * d];
            let row = &buf.heads[i * n..(i + 1) * n];
            let d_row = &mut buf.d_heads[i * n..(i + 1) * n];
            let (e, logits) = row[h..].split_at(d);
            let (d_e, d_logits) = d_row[h..].split_at_mut(d);
            loss += 1.0 - cosine_backward(e, target, -scale, d_e);
            let (he, d_he) = (&buf.he[i * d..][..d], &mut buf.d_he[i * d..][..d]);
            loss += 1.0 - cosine_backward(he, target, -scale, d_he);
            if k > 0 {
                loss += self.aux_weight
                    * cross_entropy_backward(logits, y, self.aux_weight * scale, d_logits);
            }
            hits += usize::from(first_max(&buf.scores[i * classes..][..classes]) == y);
        }
        loss *= scale;

        // Backward: the hash branch's decoder, then the hash batch norm and sigmoid.
        let g = |i: usize| at[i]..at[i + 1];
        let d_he = View::rows(&buf.d_he, b, d);
        product(&mut grads[g(8)], false, View::rows(&buf.a, b, h).t(), d_he);
        column_sums(&buf.d_he, b, d, &mut grads[g(9)]);
        product(&mut buf.d_a, false, d_he, View::rows(p(8), h, d).t());
        for (da, &a) in buf.d_a.iter_mut().zip(&buf.a) {
            *da *= a * (1.0 - a);
        }
        let (g2, be2) = grads[at[6]..at[8]].split_at_mut(h);
        batch_norm_backward(
            &buf.d_a,
            (&buf.xhat2, &buf.inv_std2, p(6)),
            (g2, be2),
            (&mut buf.d_heads, n),
            b,
            h,
        );

        // The heads, then the trunk's batch norm and ReLU.
        product(
            &mut grads[g(4)],
            false,
            View::rows(&buf.hidden, b, t).t(),
            View::rows(&buf.d_heads, b, n),
        );
        column_sums(&buf.d_heads, b, n, &mut grads[g(5)]);
        product(
            &mut buf.z1,
            false,
            View::rows(&buf.d_heads, b, n),
            View::rows(p(4), t, n).t(),
        );
        buf.z1
            .par_chunks_mut(halves(b) * t)
            .zip(buf.hidden.par_chunks(halves(b) * t))
            .for_each(|(dz, out)| {
                for (dz, &out) in dz.iter_mut().zip(out) {
                    if out <= 0.0 {
                        *dz = 0.0;
                    }
                }
            });
        let (g1, be1) = grads[at[2]..at[4]].split_at_mut(t);
        batch_norm_backward(
            &buf.z1,
            (&buf.xhat1, &buf.inv_std1, p(2)),
            (g1, be1),
            (&mut buf.hidden, t),
            b,
            t,
        );

        // The trunk's linear layer (its input needs no gradient).
        product(
            &mut grads[g(0)],
            false,
            View::rows(x, b, f).t(),
            View::rows(&buf.hidden, b, t),
        );
        column_sums(&buf.hidden, b, t, &mut grads[g(1)]);
        StepOutcome { loss, hits }
    }
}

/// A read-only matrix: element `(i, j)` at `data[i * rs + j * cs]`.
#[derive(Debug, Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    /// Row-major `[rows, cols]`.
    fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "not a [{rows}, {cols}] matrix");
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose (no copy).
    fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// `out = a b`, or `out += a b` with `accumulate`; `out` row-major `[a.rows, b.cols]`.
fn product(out: &mut [f32], accumulate: bool, a: View<'_>, b: View<'_>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    assert_eq!(out.len(), m * n, "output is not [{m}, {n}]");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    // Row-major views of whole matrices, so their last elements are in bounds.
    assert!((m - 1) * a.rs + (k - 1) * a.cs < a.data.len());
    assert!((k - 1) * b.rs + (n - 1) * b.cs < b.data.len());
    let parallelism = if m * n * k >= PARALLEL_MACS {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every element each view addresses is in bounds (checked above for the last of
    // each, the strides being non-negative), and `out` is `[m, n]` row-major.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Every row of `out` (`[_, row.len()]`) set to `row`.
fn fill_rows(out: &mut [f32], row: &[f32]) {
    for dst in out.chunks_exact_mut(row.len()) {
        dst.copy_from_slice(row);
    }
}

/// `out[j] = sum_i m[i, j]` for row-major `m` `[rows, cols]`.
fn column_sums(m: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    out.fill(0.0);
    for row in m[..rows * cols].chunks_exact(cols) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// `width` columns from `first` of a row-major matrix `[rows, stride]`.
#[derive(Debug, Clone, Copy)]
struct Columns<'a> {
    data: &'a [f32],
    rows: usize,
    width: usize,
    stride: usize,
    first: usize,
}

impl<'a> Columns<'a> {
    fn new(data: &'a [f32], rows: usize, width: usize, stride: usize, first: usize) -> Self {
        assert!(first + width <= stride && data.len() >= rows * stride);
        Self {
            data,
            rows,
            width,
            stride,
            first,
        }
    }

    fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.stride + self.first..][..self.width]
    }
}

/// Rows `0..split` and `split..rows` of a pass: the halves two threads take. The split
/// depends on `rows` alone, so sums over rows come out the same on any number of threads.
const fn halves(rows: usize) -> usize {
    rows.div_ceil(2)
}

/// `f` over the rows of each half, in parallel, and the two results added column by column.
fn column_totals(rows: usize, w: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let split = halves(rows);
    let part = |range: std::ops::Range<usize>| {
        let mut acc = vec![0.0f32; w];
        for i in range {
            f(i, &mut acc);
        }
        acc
    };
    let (mut a, b) = rayon::join(|| part(0..split), || part(split..rows));
    for (x, y) in a.iter_mut().zip(&b) {
        *x += y;
    }
    a
}

/// Batch norm in training mode over the rows of `z`, then `activation`: the batch's mean and
/// biased variance per column, `xhat = (z - mean) / sqrt(var + eps)` and
/// `out = activation(gamma xhat + beta)` (`out` and `xhat` `[rows, width]`), `inv_std` per column,
/// and the running statistics moved by the momentum towards the batch's.
fn batch_norm(
    z: Columns<'_>,
    (gamma, beta): (&[f32], &[f32]),
    (xhat, inv_std): (&mut [f32], &mut [f32]),
    (running_mean, running_var): (&mut [f32], &mut [f32]),
    out: &mut [f32],
    activation: impl Fn(f32) -> f32 + Sync,
) {
    let (rows, w) = (z.rows, z.width);
    let count = rows as f32;
    let mut mean = column_totals(rows, w, |i, acc| {
        for (s, v) in acc.iter_mut().zip(z.row(i)) {
            *s += v;
        }
    });
    for s in &mut mean {
        *s /= count;
    }
    let mut var = column_totals(rows, w, |i, acc| {
        for ((s, v), m) in acc.iter_mut().zip(z.row(i)).zip(&mean) {
            let c = v - m;
            *s += c * c;
        }
    });
    for (j, s) in var.iter_mut().enumerate() {
        *s /= count;
        inv_std[j] = 1.0 / (*s + BN_EPSILON).sqrt();
        running_mean[j] = running_mean[j] * (1.0 - BN_MOMENTUM) + mean[j] * BN_MOMENTUM;
        running_var[j] = running_var[j] * (1.0 - BN_MOMENTUM) + *s * BN_MOMENTUM;
    }
    let inv_std = &*inv_std;
    let chunk = halves(rows) * w;
    xhat[..rows * w]
        .par_chunks_mut(chunk)
        .zip(out[..rows * w].par_chunks_mut(chunk))
        .enumerate()
        .for_each(|(half, (xhat, out))| {
            let first = half * halves(rows);
            for ((xh, o), i) in xhat
                .chunks_exact_mut(w)
                .zip(out.chunks_exact_mut(w))
                .zip(first..)
            {
                for (j, v) in z.row(i).iter().enumerate() {
                    let x = (v - mean[j]) * inv_std[j];
                    xh[j] = x;
                    o[j] = activation(gamma[j] * x + beta[j]);
                }
            }
        });
}

/// The gradient of [`batch_norm`] (before its activation): from `dy` (`[rows, w]`, at
/// `gamma xhat + beta`) the gradients of `gamma` and `beta`, and
/// `dz = gamma inv_std / rows (rows dy - sum dy - xhat sum(dy xhat))` written into the first
/// `w` columns of `dz` (row-major, `stride` columns).
fn batch_norm_backward(
    dy: &[f32],
    (xhat, inv_std, gamma): (&[f32], &[f32], &[f32]),
    (d_gamma, d_beta): (&mut [f32], &mut [f32]),
    (dz, stride): (&mut [f32], usize),
    rows: usize,
    w: usize,
) {
    let sums = column_totals(rows, 2 * w, |i, acc| {
        let (g, x) = (&dy[i * w..][..w], &xhat[i * w..][..w]);
        let (beta, gamma) = acc.split_at_mut(w);
        for j in 0..w {
            beta[j] += g[j];
            gamma[j] += g[j] * x[j];
        }
    });
    d_beta.copy_from_slice(&sums[..w]);
    d_gamma.copy_from_slice(&sums[w..]);
    let (d_beta, d_gamma) = (&*d_beta, &*d_gamma);
    let count = rows as f32;
    let factor: Vec<f32> = (0..w).map(|j| gamma[j] * inv_std[j] / count).collect();
    dz[..rows * stride]
        .par_chunks_mut(halves(rows) * stride)
        .enumerate()
        .for_each(|(half, dz)| {
            for (out, i) in dz.chunks_exact_mut(stride).zip(half * halves(rows)..) {
                let (g, x) = (&dy[i * w..][..w], &xhat[i * w..][..w]);
                for j in 0..w {
                    out[j] = factor[j] * (count * g[j] - d_beta[j] - x[j] * d_gamma[j]);
                }
            }
        });
}

/// `cos(u, t) = u . t / max(|u|, 1e-8)`, and `scale` times its gradient in `u` written to `du`.
fn cosine_backward(u: &[f32], t: &[f32], scale: f32, du: &mut [f32]) -> f32 {
    let dot: f32 = u.iter().zip(t).map(|(a, b)| a * b).sum();
    let norm = u.iter().map(|a| a * a).sum::<f32>().sqrt();
    let clamped = norm.max(NORM_FLOOR);
    // d/du (dot / clamped) = t / clamped - dot / clamped^2 * d clamped / du, where
    // d clamped / du = u / norm above the floor and 0 at it.
    let radial = if norm > NORM_FLOOR {
        dot / (clamped * clamped * norm)
    } else {
        0.0
    };
    for ((d, &a), &b) in du.iter_mut().zip(u).zip(t) {
        *d = scale * (b / clamped - radial * a);
    }
    dot / clamped
}

/// Cross-entropy `-log softmax(logits)[label]`, and `scale` times its gradient,
/// `softmax - onehot(label)`, written to `d_logits`.
fn cross_entropy_backward(logits: &[f32], label: usize, scale: f32, d_logits: &mut [f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for (d, &l) in d_logits.iter_mut().zip(logits) {
        *d = (l - max).exp();
        sum += *d;
    }
    for d in d_logits.iter_mut() {
        *d *= scale / sum;
    }
    d_logits[label] -= scale;
    max + sum.ln() - logits[label]
}

/// The index of the largest value (the first of ties).
fn first_max(values: &[f32]) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in values.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}
