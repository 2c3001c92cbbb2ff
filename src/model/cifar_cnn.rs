//! `cifar_cnn`: a compact CNN for 32x32 CIFAR images, trained from scratch.
//!
//! Three blocks of [conv 3x3, batch norm, ReLU, max-pool 2x2] with 32, 64 and 128 channels, then
//! flattening to 2048 features: about 10 M multiply-adds per image, small enough to train for a
//! few epochs on two CPU cores.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

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

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.relu.forward(self.norm.forward(self.conv.forward(x)))
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
            x = self.pool.forward(unit.forward(x)); // [batch, 32|64|128, 16|8|4, 16|8|4]
        }
        let batch = x.dims()[0];
        x.reshape([batch, FEATURES])
    }
}
