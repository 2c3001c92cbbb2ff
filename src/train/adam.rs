//! Adam in one pass over each parameter.
//!
//! burn's [`burn::optim::Adam`] updates a parameter with about a dozen whole-tensor operations
//! (each moment scaled, the gradient squared and scaled, sums, a square root, a division, the
//! step), each a pass over memory with a fresh allocation. [`FusedAdam`] computes the same
//! formulas element by element in one pass: the same `f32` operations in the same order, so
//! the parameters and moments are bit for bit burn's (tested against it on the real decoder).
//! Its state is burn's [`AdamState`], so checkpoints keep their format and resume either way.

use crate::simd::{Level, level};
use burn::optim::{AdamState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::prelude::*;
use rayon::prelude::*;

/// Elements per parallel work item of the update.
const CHUNK: usize = 1 << 15;

/// Adam (Kingma & Ba) with burn's defaults and formulas: `beta_1`, `beta_2`, `epsilon` and
/// an optional L2 weight-decay penalty added to the gradient (as burn's `WeightDecay` does).
#[derive(Debug, Clone)]
pub struct FusedAdam {
    /// Decay of the first moment (burn: 0.9).
    pub beta_1: f32,
    /// Decay of the second moment (burn: 0.999).
    pub beta_2: f32,
    /// Added to the root of the second moment (burn: 1e-5).
    pub epsilon: f32,
    /// `grad + penalty * parameter`, if set.
    pub weight_decay: Option<f32>,
}

impl Default for FusedAdam {
    /// burn's `AdamConfig::new()`.
    fn default() -> Self {
        Self {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
            weight_decay: None,
        }
    }
}

impl FusedAdam {
    /// Step `time` (1-based) of Adam over plain slices: parameters `p`, gradient `g`, moments
    /// `m` and `v` (ignored, and overwritten, at step 1), at learning rate `lr`.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn update(
        &self,
        lr: f64,
        time: usize,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        assert!(
            g.len() == p.len() && m.len() == p.len() && v.len() == p.len(),
            "parameters, gradient and moments differ in length"
        );
        let t = time as i32;
        let bias_correction2_sqrt = (1.0 - self.beta_2.powi(t)).sqrt();
        let k = Step {
            b1: self.beta_1,
            b2: self.beta_2,
            f1: 1.0 - self.beta_1,
            f2: 1.0 - self.beta_2,
            combined: bias_correction2_sqrt / (1.0 - self.beta_1.powi(t)),
            eps: self.epsilon * bias_correction2_sqrt,
            lr: lr as f32,
            penalty: self.weight_decay.unwrap_or(0.0),
        };
        let (first, decay) = (time <= 1, self.weight_decay.is_some());
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| match (first, decay) {
                (true, true) => k.at_level::<true, true>(p, g, m, v),
                (true, false) => k.at_level::<true, false>(p, g, m, v),
                (false, true) => k.at_level::<false, true>(p, g, m, v),
                (false, false) => k.at_level::<false, false>(p, g, m, v),
            });
    }
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec::<f32>()
        .expect("Adam updates f32 parameters")
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let device = tensor.device();
        let shape = tensor.shape();
        let mut p = host(tensor);
        let g = host(grad);
        let (mut m, mut v, time) = match state {
            Some(s) => (
                host(s.momentum.moment_1),
                host(s.momentum.moment_2),
                s.momentum.time + 1,
            ),
            None => (Vec::new(), Vec::new(), 1),
        };
        if m.is_empty() {
            m.resize(p.len(), 0.0);
            v.resize(p.len(), 0.0);
        }
        self.update(lr, time, &mut p, &g, &mut m, &mut v);
        let tensor = |values: Vec<f32>| {
            Tensor::<D>::from_data(TensorData::new(values, shape.clone()), &device)
        };
        let momentum = AdaptiveMomentumState::new(time, tensor(m), tensor(v));
        (tensor(p), Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        let momentum = state.momentum;
        AdamState::new(AdaptiveMomentumState::new(
            momentum.time,
            momentum.moment_1.to_device(device),
            momentum.moment_2.to_device(device),
        ))
    }
}

/// The constants of one step.
#[derive(Debug, Clone, Copy)]
struct Step {
    b1: f32,
    b2: f32,
    f1: f32,
    f2: f32,
    combined: f32,
    eps: f32,
    lr: f32,
    penalty: f32,
}

impl Step {
    /// [`Step::update`] compiled for the CPU's SIMD level (the same arithmetic at each: no
    /// operation is fused or reordered).
    fn at_level<const FIRST: bool, const DECAY: bool>(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        match level() {
            // SAFETY (both): `level` returns these only after detecting their features.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { self.update_avx512::<FIRST, DECAY>(p, g, m, v) },
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { self.update_avx2::<FIRST, DECAY>(p, g, m, v) },
            _ => self.update::<FIRST, DECAY>(p, g, m, v),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx2")]
    unsafe fn update_avx512<const FIRST: bool, const DECAY: bool>(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        self.update::<FIRST, DECAY>(p, g, m, v);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn update_avx2<const FIRST: bool, const DECAY: bool>(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        self.update::<FIRST, DECAY>(p, g, m, v);
    }

    /// burn's formulas, element by element: the gradient plus the weight-decay term, both
    /// moments (on the first step, from the scaled gradient alone), the bias-corrected step.
    #[inline(always)]
    fn update<const FIRST: bool, const DECAY: bool>(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        let n = p.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        for i in 0..n {
            let g = if DECAY {
                p[i] * self.penalty + g[i]
            } else {
                g[i]
            };
            let (mi, vi) = if FIRST {
                (g * self.f1, (g * g) * self.f2)
            } else {
                (
                    m[i] * self.b1 + g * self.f1,
                    v[i] * self.b2 + (g * g) * self.f2,
                )
            };
            m[i] = mi;
            v[i] = vi;
            p[i] -= ((mi * self.combined) / (vi.sqrt() + self.eps)) * self.lr;
        }
    }
}
