//! The network (burn): an image encoder, then the report's decoder MLP
//! `features -> h sigmoid units (the hash layer) -> d outputs (the embedding)`.
//!
//! Only this module, [`crate::train`] and [`crate::embed`] know about burn. The encoder is chosen
//! by `model.encoder` in the config; `cifar_cnn` is the compact from-scratch CNN for 32x32 inputs.

pub mod cifar_cnn;

use crate::config::{Backend, ModelConfig};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

/// Why a model could not be built, loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The config asks for a backend this binary was not built with.
    #[error(
        "backend `cuda` was requested but this binary was built without the `cuda` cargo feature; \
         rebuild with `cargo build --release --features cuda` (needs internet access for burn's \
         LLVM bundle) or set `backend: cpu`"
    )]
    BackendNotCompiled,
    /// The encoder exists in the schema but is not available in this build yet.
    #[error("encoder `{0}` is not available yet in this build; use `cifar_cnn`")]
    EncoderUnavailable(String),
    /// A weights or checkpoint file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Picks the burn device for a backend, failing early when it is not compiled in.
pub fn device(backend: Backend) -> Result<Device, ModelError> {
    match backend {
        Backend::Cpu => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        Backend::Cuda => Ok(Device::cuda(0)),
        #[cfg(not(feature = "cuda"))]
        Backend::Cuda => Err(ModelError::BackendNotCompiled),
    }
}

/// Encoder, hash layer and embedding layer.
#[derive(Module, Debug)]
pub struct HashNet {
    /// Image encoder.
    pub encoder: cifar_cnn::CifarCnn,
    /// `features -> h`, followed by a sigmoid: the hash layer.
    pub hash: Linear,
    /// `h -> d`: the embedding layer.
    pub embed: Linear,
    /// Optional `h -> classes` softmax head for the auxiliary cross-entropy loss.
    pub classify: Option<Linear>,
}

/// What a forward pass returns.
#[derive(Debug, Clone)]
pub struct Output {
    /// Sigmoid activations of the hash layer, `[batch, h]`; the hash bits are `> 0.5`.
    pub activations: Tensor<2>,
    /// The embedding, `[batch, d]` (not normalised).
    pub embedding: Tensor<2>,
    /// Class logits when the auxiliary head exists, `[batch, classes]`.
    pub logits: Option<Tensor<2>>,
}

impl HashNet {
    /// A freshly initialised network for `cfg` (the device's seed decides the initial weights).
    pub fn new(cfg: &ModelConfig, classes: usize, device: &Device) -> Result<Self, ModelError> {
        let encoder = match cfg.encoder {
            crate::config::Encoder::CifarCnn => cifar_cnn::CifarCnn::new(device),
            other => {
                let name = serde_json::to_value(other)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                return Err(ModelError::EncoderUnavailable(name));
            }
        };
        let (h, d) = (cfg.h as usize, cfg.d as usize);
        Ok(Self {
            hash: LinearConfig::new(cifar_cnn::FEATURES, h).init(device),
            embed: LinearConfig::new(h, d).init(device),
            classify: (cfg.aux_ce_weight > 0.0).then(|| LinearConfig::new(h, classes).init(device)),
            encoder,
        })
    }

    /// `[batch, 3, 32, 32]` normalised images to activations, embedding and logits.
    pub fn forward(&self, images: Tensor<4>) -> Output {
        let features = self.encoder.forward(images); // [batch, FEATURES]
        let activations = sigmoid(self.hash.forward(features)); // [batch, h]
        let embedding = self.embed.forward(activations.clone()); // [batch, d]
        let logits = self
            .classify
            .as_ref()
            .map(|c| c.forward(activations.clone()));
        Output {
            activations,
            embedding,
            logits,
        }
    }
}

/// Per-channel mean of the CIFAR-100 training images (RGB, in [0, 1]).
pub const CIFAR_MEAN: [f32; 3] = [0.5071, 0.4865, 0.4409];
/// Per-channel standard deviation of the CIFAR-100 training images.
pub const CIFAR_STD: [f32; 3] = [0.2673, 0.2564, 0.2762];

/// Normalises `[3, 32, 32]` u8 planes into `out` with the CIFAR-100 mean and std.
pub fn normalize_into(pixels: &[u8], out: &mut Vec<f32>) {
    for (c, plane) in pixels.chunks_exact(32 * 32).enumerate() {
        let (m, s) = (CIFAR_MEAN[c], CIFAR_STD[c]);
        out.extend(plane.iter().map(|&p| (f32::from(p) / 255.0 - m) / s));
    }
}
