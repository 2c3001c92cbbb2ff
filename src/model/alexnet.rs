//! `alexnet`: the report's encoder (Krizhevsky et al. 2012, in torchvision's single-tower
//! layout), whose 4096-d `fc7` output feeds the hash layer as in Lin et al.
//!
//! Five convolutions (64 11x11/4, 192 5x5, 384 3x3, 256 3x3, 256 3x3, each with bias and ReLU;
//! 3x3/2 max-pooling after the first, second and fifth), adaptive average pooling to 6x6, then
//! `fc6` (9216 -> 4096) and `fc7` (4096 -> 4096), each after dropout 0.5 and followed by ReLU.
//! The trained input is 224x224 (any side from [`MIN_INPUT_SIZE`] up works); images are scaled
//! to `[0, 1]` and normalised with the ImageNet mean and standard deviation.
//!
//! The network trains from scratch, or starts from a safetensors file the user supplies with
//! torchvision's tensor names (`features.{0,3,6,8,10}.{weight,bias}`,
//! `classifier.{1,4}.{weight,bias}`; the 1000-way `classifier.6` is not used), e.g. torchvision's
//! `alexnet` ImageNet weights saved with `safetensors.torch.save_file(model.state_dict(), ...)`.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

use super::ModelError;
use super::safetensors::SafeTensors;

/// Width of the feature vector the encoder emits (`fc7`).
pub const FEATURES: usize = 4096;
/// Smallest input side the convolution and pooling stack accepts (the config checks it).
pub const MIN_INPUT_SIZE: u32 = crate::config::Encoder::Alexnet.min_input_size();
/// ImageNet channel means of images scaled to `[0, 1]` (torchvision's preprocessing).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations of images scaled to `[0, 1]`.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `(in, out, kernel, stride, padding, torchvision index)` of the five convolutions.
const CONVS: [(usize, usize, usize, usize, usize, usize); 5] = [
    (3, 64, 11, 4, 2, 0),
    (64, 192, 5, 1, 2, 3),
    (192, 384, 3, 1, 1, 6),
    (384, 256, 3, 1, 1, 8),
    (256, 256, 3, 1, 1, 10),
];
/// Convolutions followed by max-pooling.
const POOLED: [usize; 3] = [0, 1, 4];
/// Flattened width after the 6x6 adaptive pooling.
const POOLED_FEATURES: usize = 256 * 6 * 6;

/// The encoder.
#[derive(Module, Debug)]
pub struct AlexNet {
    convs: Vec<Conv2d>,
    pool: MaxPool2d,
    avgpool: AdaptiveAvgPool2d,
    fc6: Linear,
    fc7: Linear,
    dropout: Dropout,
    relu: Relu,
}

impl AlexNet {
    /// Freshly initialised layers (the device's seed decides the weights).
    pub fn new(device: &Device) -> Self {
        Self {
            convs: CONVS
                .iter()
                .map(|&(i, o, k, s, p, _)| {
                    Conv2dConfig::new([i, o], [k, k])
                        .with_stride([s, s])
                        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                        .init(device)
                })
                .collect(),
            pool: MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init(),
            avgpool: AdaptiveAvgPool2dConfig::new([6, 6]).init(),
            fc6: LinearConfig::new(POOLED_FEATURES, FEATURES).init(device),
            fc7: LinearConfig::new(FEATURES, FEATURES).init(device),
            dropout: DropoutConfig::new(0.5).init(),
            relu: Relu::new(),
        }
    }

    /// The layers with weights from a torchvision-named safetensors file (see the module docs).
    ///
    /// # Errors
    /// The file is missing, unreadable or corrupt, or a tensor is missing, not F32 or of the
    /// wrong shape (the error names the tensor and both shapes).
    pub fn load(path: &Path, device: &Device) -> Result<Self, ModelError> {
        let file = SafeTensors::read(path)?;
        let mut net = Self::new(device);
        for (conv, &(i, o, k, _, _, index)) in net.convs.iter_mut().zip(&CONVS) {
            conv.weight = file.param(&format!("features.{index}.weight"), [o, i, k, k], device)?;
            conv.bias = Some(file.param(&format!("features.{index}.bias"), [o], device)?);
        }
        for (fc, index, input) in [
            (&mut net.fc6, 1, POOLED_FEATURES),
            (&mut net.fc7, 4, FEATURES),
        ] {
            fc.weight = linear_weight(&file, &format!("classifier.{index}.weight"), input, device)?;
            fc.bias = Some(file.param(&format!("classifier.{index}.bias"), [FEATURES], device)?);
        }
        Ok(net)
    }

    /// `[batch, 3, S, S]` normalised images to `[batch, 4096]` `fc7` features.
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<2> {
        for (i, conv) in self.convs.iter().enumerate() {
            x = self.relu.forward(conv.forward(x));
            if POOLED.contains(&i) {
                x = self.pool.forward(x);
            }
        } // [batch, 256, ~S/32, ~S/32]
        let x = self.avgpool.forward(x); // [batch, 256, 6, 6]
        let batch = x.dims()[0];
        let x = x.reshape([batch, POOLED_FEATURES]);
        let x = self.relu.forward(self.fc6.forward(self.dropout.forward(x))); // [batch, 4096]
        self.relu.forward(self.fc7.forward(self.dropout.forward(x))) // [batch, 4096]
    }
}

/// A PyTorch `[out, in]` linear weight as burn's `[in, out]` parameter.
fn linear_weight(
    file: &SafeTensors,
    name: &str,
    input: usize,
    device: &Device,
) -> Result<Param<Tensor<2>>, ModelError> {
    let w: Tensor<2> = file.tensor(name, [FEATURES, input], device)?;
    Ok(Param::from_tensor(w.transpose()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_shapes_at_the_trained_size_and_the_smallest() {
        let device = Device::flex();
        device.seed(7);
        let net = AlexNet::new(&device);
        for side in [224usize, MIN_INPUT_SIZE as usize] {
            let x = Tensor::<4>::zeros([2, 3, side, side], &device);
            assert_eq!(net.forward(x).dims(), [2, FEATURES], "side {side}");
        }
    }

    /// The torchvision tensors of `net`, as `(name, shape, values)`, with linear weights stored
    /// `[out, in]` as PyTorch does.
    fn torchvision_tensors(net: &AlexNet) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut out = Vec::new();
        let mut push = |name: String, t: Tensor<2>| {
            let shape = t.dims().to_vec();
            out.push((name, shape, t.into_data().iter::<f32>().collect()));
        };
        for (conv, &(i, o, k, _, _, index)) in net.convs.iter().zip(&CONVS) {
            let w = conv.weight.val().reshape([o, i * k * k]);
            push(format!("features.{index}.weight"), w);
            let b = conv.bias.as_ref().map(|b| b.val()).expect("bias");
            push(format!("features.{index}.bias"), b.reshape([1, o]));
        }
        for (fc, index) in [(&net.fc6, 1), (&net.fc7, 4)] {
            push(
                format!("classifier.{index}.weight"),
                fc.weight.val().transpose(),
            );
            let b = fc.bias.as_ref().map(|b| b.val()).expect("bias");
            push(format!("classifier.{index}.bias"), b.reshape([1, FEATURES]));
        }
        // Shapes as torchvision stores them: conv weights 4-d, biases 1-d.
        for (name, shape, _) in &mut out {
            let index = CONVS
                .iter()
                .find(|c| name == &format!("features.{}.weight", c.5));
            if let Some(&(i, o, k, _, _, _)) = index {
                *shape = vec![o, i, k, k];
            } else if name.ends_with("bias") {
                *shape = vec![shape[1]];
            }
        }
        out
    }

    #[test]
    fn loads_torchvision_names_and_rejects_a_wrong_shape() {
        // A torchvision-layout file written from a randomly initialised network (no real
        // AlexNet weights ship with the data); loading it must reproduce the network exactly.
        let device = Device::flex();
        device.seed(11);
        let source = AlexNet::new(&device);
        let tensors = torchvision_tensors(&source);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("alexnet.safetensors");
        crate::model::safetensors::write_f32(&path, &tensors).expect("write");
        let loaded = AlexNet::load(&path, &device).expect("load");
        let x = Tensor::<4>::random([1, 3, 96, 96], burn::tensor::Distribution::Default, &device);
        let a: Vec<f32> = source.forward(x.clone()).into_data().iter().collect();
        let b: Vec<f32> = loaded.forward(x).into_data().iter().collect();
        // The loaded fc weights are transposed views, so summation order may differ slightly.
        let diff = crate::model::max_abs_diff(&a, &b);
        assert!(
            diff < 1e-5,
            "loaded network differs from the one written by {diff}"
        );

        let mut bad = tensors.clone();
        bad[2].1 = vec![192, 64, 3, 3];
        bad[2].2.truncate(192 * 64 * 9);
        crate::model::safetensors::write_f32(&path, &bad).expect("write");
        let err = AlexNet::load(&path, &device)
            .expect_err("wrong shape")
            .to_string();
        assert!(err.contains("features.3.weight"), "{err}");
        assert!(
            err.contains("[192, 64, 5, 5]") && err.contains("[192, 64, 3, 3]"),
            "{err}"
        );

        let missing = dir.path().join("none.safetensors");
        let err = AlexNet::load(&missing, &device)
            .expect_err("missing")
            .to_string();
        assert!(err.contains("none.safetensors"), "{err}");
    }
}
