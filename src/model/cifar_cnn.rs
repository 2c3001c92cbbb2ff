//! `cifar_cnn`: a compact CNN for 32x32 CIFAR images, trained from scratch.
//!
//! Three blocks of [conv 3x3, batch norm, ReLU, max-pool 2x2] with 32, 64 and 128 channels, then
//! flattening to 2048 features: about 10 M multiply-adds per image, small enough to train for a
//! few epochs on two CPU cores.
//!
//! Two exact rewrites make it cheaper than the textbook layer order on burn's CPU backend: ReLU
//! runs after the max-pool (they commute, since ReLU is monotonic, and the pooled tensor is a
//! quarter of the size), and at inference the batch norm's affine map is folded into the
//! convolution ([`super::fold_batch_norm`]) and the max-pool is computed as two element-wise
//! maxima over reshaped views ([`max_pool_2x2`]), which burn's CPU backend runs faster than its
//! general pooling kernel.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d, Relu};
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

/// Width of the feature vector the encoder emits.
pub const FEATURES: usize = 128 * 4 * 4;

/// One conv-BN-ReLU unit.
#[derive(Module, Debug)]
pub struct ConvUnit {
    conv: Conv2d,
    norm: BatchNorm,
    relu: Relu,
}

impl ConvUnit {
    fn new(input: usize, output: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([input, output], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(output).init(device),
            relu: Relu::new(),
        }
    }

    /// Convolution and batch norm, before pooling and ReLU.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if x.device().is_autodiff() && self.norm.training.is_enabled() {
            return self.norm.forward(self.conv.forward(x));
        }
        let (weight, bias) = super::fold_batch_norm(&self.norm, self.conv.weight.val());
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        conv2d(x, weight, Some(bias), options)
    }
}

/// The encoder.
#[derive(Module, Debug)]
pub struct CifarCnn {
    units: Vec<ConvUnit>,
    pool: MaxPool2d,
}

impl CifarCnn {
    /// Freshly initialised layers.
    pub fn new(device: &Device) -> Self {
        let widths = [(3, 32), (32, 64), (64, 128)];
        Self {
            units: widths
                .iter()
                .map(|&(i, o)| ConvUnit::new(i, o, device))
                .collect(),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        }
    }

    /// `[batch, 3, 32, 32]` to `[batch, FEATURES]`.
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<2> {
        for unit in &self.units {
            let y = unit.forward(x); // [batch, 32|64|128, 32|16|8, 32|16|8]
            let pooled = if y.device().is_autodiff() {
                self.pool.forward(y)
            } else {
                max_pool_2x2(y)
            };
            x = unit.relu.forward(pooled); // [batch, 32|64|128, 16|8|4, 16|8|4]
        }
        let batch = x.dims()[0];
        x.reshape([batch, FEATURES])
    }
}

/// 2x2 max-pooling with stride 2 of `[batch, channels, h, w]` (even `h` and `w`): the maximum of
/// each pair of rows, then of each pair of columns, over reshaped views.
pub fn max_pool_2x2(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let rows = b * c * h / 2;
    let pairs = x.reshape([rows, 2 * w]); // each row: image row 2i, then row 2i + 1
    let r = pairs
        .clone()
        .slice([0..rows, 0..w])
        .max_pair(pairs.slice([0..rows, w..2 * w])); // [rows, w]
    r.reshape([rows * w / 2, 2])
        .max_dim(1)
        .reshape([b, c, h / 2, w / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_pool_2x2_matches_burns_max_pool() {
        let device = Device::flex();
        device.seed(1);
        let x = Tensor::<4>::random([3, 5, 8, 6], burn::tensor::Distribution::Default, &device);
        let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
        let a: Vec<f32> = pool.forward(x.clone()).into_data().iter().collect();
        let b: Vec<f32> = max_pool_2x2(x).into_data().iter().collect();
        assert_eq!(a, b);
    }

    #[test]
    fn inference_equals_the_textbook_layer_order() {
        // Train-mode passes on the autodiff device give the batch norms non-trivial running
        // statistics; the inference network (folded batch norm, ReLU after the pool, pooling
        // by views) must then compute conv -> batch norm -> ReLU -> max-pool.
        let device = Device::flex().autodiff();
        device.seed(2);
        let net = CifarCnn::new(&device);
        for _ in 0..3 {
            let x =
                Tensor::<4>::random([8, 3, 32, 32], burn::tensor::Distribution::Default, &device);
            let _ = net.forward(x.mul_scalar(3.0).add_scalar(0.5));
        }
        let net = net.valid();
        let plain = Device::flex();
        let x = Tensor::<4>::random([4, 3, 32, 32], burn::tensor::Distribution::Default, &plain);
        let mut reference = x.clone();
        for unit in &net.units {
            let y = unit
                .relu
                .forward(unit.norm.forward(unit.conv.forward(reference)));
            reference = net.pool.forward(y);
        }
        let reference: Vec<f32> = reference
            .reshape([4, FEATURES])
            .into_data()
            .iter()
            .collect();
        let fast: Vec<f32> = net.forward(x).into_data().iter().collect();
        let diff = crate::model::max_abs_diff(&reference, &fast);
        assert!(diff < 1e-4, "max difference {diff}");
    }
}
