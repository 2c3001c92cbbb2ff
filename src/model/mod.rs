//! The network (burn): an image encoder, then the report's decoder MLP
//! `features -> h sigmoid units (the hash layer) -> d outputs (the embedding)`.
//!
//! Only this module, [`crate::train`] and [`crate::embed`] know about burn. The encoder is chosen
//! by `model.encoder` in the config; `cifar_cnn` is the compact from-scratch CNN for 32x32 inputs.

pub mod cifar_cnn;
pub mod efficientnet;
pub mod resize;

use crate::config::{Backend, Encoder, ModelConfig};
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use std::path::PathBuf;

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
    #[error(
        "encoder `{0}` is not available yet in this build; use `cifar_cnn`, or `efficientnet_lite0` with `freeze: true`"
    )]
    EncoderUnavailable(String),
    /// The weights file does not exist.
    #[error("weights file {path} does not exist")]
    WeightsNotFound {
        /// Path that was looked up.
        path: PathBuf,
    },
    /// The weights file exists but could not be read.
    #[error("cannot read weights file {path}: {source}")]
    WeightsUnreadable {
        /// Path of the weights file.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a well-formed safetensors file (truncated, bad header, bad offsets).
    #[error("corrupt safetensors file {path}: {what}")]
    CorruptWeights {
        /// Path of the weights file.
        path: PathBuf,
        /// What exactly is wrong.
        what: String,
    },
    /// A tensor the model needs is absent from the weights file.
    #[error("tensor `{name}` is missing from the weights file")]
    MissingTensor {
        /// Name of the missing tensor.
        name: String,
    },
    /// A tensor is present but has the wrong shape.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    WrongShape {
        /// Name of the tensor.
        name: String,
        /// Shape the model needs.
        expected: Vec<usize>,
        /// Shape stored in the file.
        found: Vec<usize>,
    },
    /// A tensor is stored with a dtype the loader cannot convert (only `F32` is supported).
    #[error("tensor `{name}` has unsupported dtype {dtype} (only F32 is supported)")]
    UnsupportedDtype {
        /// Name of the tensor.
        name: String,
        /// Dtype string from the safetensors header.
        dtype: String,
    },
    /// An image buffer or input batch does not match its declared dimensions.
    #[error("invalid model input: {what}")]
    InvalidInput {
        /// What is wrong with the input.
        what: String,
    },
    /// A weights or checkpoint file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
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
    /// Image encoder trained with the decoder; `None` when the network consumes precomputed
    /// features of a frozen encoder (EfficientNet-Lite0 with `freeze: true`).
    pub encoder: Option<cifar_cnn::CifarCnn>,
    /// `features -> h`, followed by batch norm and a sigmoid: the hash layer.
    pub hash: Linear,
    /// Batch norm of the hash layer's pre-activations. It keeps the sigmoid in its sensitive
    /// range: without it the `h` activations start saturated near 0.5 with little spread and a
    /// network trained from scratch collapses to the mean class direction.
    pub hash_norm: BatchNorm,
    /// `h -> d`: the embedding layer.
    pub embed: Linear,
    /// Optional `h -> classes` softmax head for the auxiliary cross-entropy loss.
    pub classify: Option<Linear>,
}

/// A batch as the network consumes it.
#[derive(Debug, Clone)]
pub enum Batch {
    /// Normalised images `[batch, 3, 32, 32]` for a network with its own encoder.
    Images(Tensor<4>),
    /// Frozen-encoder features `[batch, features]`.
    Features(Tensor<2>),
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
        let (encoder, features) = match (cfg.encoder, cfg.freeze) {
            (Encoder::CifarCnn, _) => (Some(cifar_cnn::CifarCnn::new(device)), cifar_cnn::FEATURES),
            (Encoder::EfficientnetLite0, true) => (None, efficientnet::FEATURE_DIM),
            (Encoder::EfficientnetLite0, false) => {
                return Err(ModelError::EncoderUnavailable(
                    "efficientnet_lite0 with freeze: false".into(),
                ));
            }
            (Encoder::Alexnet, _) => return Err(ModelError::EncoderUnavailable("alexnet".into())),
        };
        let (h, d) = (cfg.h as usize, cfg.d as usize);
        Ok(Self {
            hash: LinearConfig::new(features, h).init(device),
            hash_norm: BatchNormConfig::new(h).init(device),
            embed: LinearConfig::new(h, d).init(device),
            classify: (cfg.aux_ce_weight > 0.0).then(|| LinearConfig::new(h, classes).init(device)),
            encoder,
        })
    }

    /// Images (`[batch, 3, 32, 32]`, normalised) or precomputed features to activations,
    /// embedding and logits.
    pub fn forward(&self, input: Batch) -> Result<Output, ModelError> {
        match (input, &self.encoder) {
            (Batch::Images(x), Some(encoder)) => Ok(self.forward_features(encoder.forward(x))),
            (Batch::Features(f), _) => Ok(self.forward_features(f)),
            (Batch::Images(_), None) => Err(ModelError::InvalidInput {
                what: "this network consumes precomputed encoder features, not images".into(),
            }),
        }
    }

    /// `[batch, features]` encoder features to activations, embedding and logits.
    pub fn forward_features(&self, features: Tensor<2>) -> Output {
        let activations = sigmoid(self.hash_norm.forward(self.hash.forward(features))); // [batch, h]
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
