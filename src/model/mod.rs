//! The network (burn): an image encoder, then the report's decoder MLP
//! `features -> h sigmoid units (the hash layer) -> d outputs (the embedding)`.
//!
//! Only this module, [`crate::train`] and [`crate::embed`] know about burn. The encoder is chosen
//! by `model.encoder` in the config: `cifar_cnn`, the compact from-scratch CNN for 32x32 inputs;
//! `efficientnet_lite0` with ImageNet weights, frozen (the decoder trains on cached features) or
//! fine-tuned; `alexnet`, the report's network, from scratch or from a weights file.

pub mod alexnet;
pub mod aligned;
pub mod amx;
pub mod bf16;
pub mod cifar_cnn;
pub mod efficientnet;
pub mod fp32;
pub mod frozen;
pub mod resize;
pub(crate) mod safetensors;
pub mod tiles;

use crate::config::{Backend, Decoder, Encoder, ModelConfig};
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use std::path::{Path, PathBuf};

/// Why a model could not be built, loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The config asks for a backend this binary was not built with.
    #[error(
        "backend `{backend}` was requested but this binary was built without the `{backend}` \
         cargo feature; rebuild with `cargo build --release --features {backend}`{note} or set \
         `backend: cpu`"
    )]
    BackendNotCompiled {
        /// The backend, which is also the name of its cargo feature.
        backend: &'static str,
        /// What that build needs, if anything.
        note: &'static str,
    },
    /// A CUDA build on a machine where no GPU can be used.
    #[error(
        "backend `cuda`: {0}; run on a machine with an NVIDIA GPU and its driver, or set \
         `backend: cpu`"
    )]
    NoCudaDevice(String),
    /// A wgpu build where wgpu finds no adapter (no GPU driver and no software renderer).
    #[error(
        "backend `wgpu`: {0}; install a Vulkan or GL driver (on Debian without a GPU, Mesa's \
         software renderer: `apt-get install mesa-vulkan-drivers`), or set `backend: cpu`"
    )]
    NoWgpuAdapter(String),
    /// A frozen encoder's network was asked to read images, or a network that needs
    /// pretrained weights was built without them.
    #[error("{0}")]
    Misconfigured(String),
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
    /// The network produced a NaN or infinite output (diverged weights or non-finite inputs);
    /// nothing downstream may rank it.
    #[error(
        "the network's {output} of image {image} is {value} at column {column}; non-finite \
         outputs are never ranked (check the training log and the cached features)"
    )]
    NonFiniteOutput {
        /// `embedding` or `hash activation`.
        output: &'static str,
        /// Row (image index within the split).
        image: usize,
        /// Column.
        column: usize,
        /// The value.
        value: f32,
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

/// Picks the burn device for a backend, failing early when it is not compiled in or, for
/// CUDA, when no GPU is visible ([`cuda_unavailable`]): burn's CUDA runtime would otherwise
/// fail only at the first tensor operation, with a panic.
pub fn device(backend: Backend) -> Result<Device, ModelError> {
    match backend {
        Backend::Cpu => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        Backend::Cuda => {
            let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
            match cuda_unavailable(Path::new("/proc"), Path::new("/dev"), visible.as_deref()) {
                Some(reason) => Err(ModelError::NoCudaDevice(reason)),
                None => Ok(Device::cuda(0)),
            }
        }
        #[cfg(not(feature = "cuda"))]
        Backend::Cuda => Err(ModelError::BackendNotCompiled {
            backend: "cuda",
            note: " (needs internet access for burn's LLVM bundle)",
        }),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => {
            // burn initialises a wgpu runtime once per process and refuses a second `init`,
            // so the device (or the reason there is none) is kept for every later stage.
            static WGPU: std::sync::OnceLock<Result<Device, String>> = std::sync::OnceLock::new();
            WGPU.get_or_init(|| match Device::wgpu_options().init() {
                Ok(device) => Ok(device),
                // Registered already in this process (a library's tensor on the default
                // device): attach to that runtime.
                Err(burn::tensor::wgpu::WgpuInitError::Registration { .. }) => {
                    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
                }
                Err(e) => Err(e.to_string()),
            })
            .clone()
            .map_err(ModelError::NoWgpuAdapter)
        }
        #[cfg(not(feature = "wgpu"))]
        Backend::Wgpu => Err(ModelError::BackendNotCompiled {
            backend: "wgpu",
            note: "",
        }),
    }
}

/// Why no CUDA device can be used here, if none can: `CUDA_VISIBLE_DEVICES` hides every GPU
/// (empty or `-1`), or neither the NVIDIA driver (`<proc>/driver/nvidia/version`) nor a GPU
/// node (`<dev>/nvidia0`, ...) exists. A visible GPU the driver then fails to open is not
/// caught here (burn reports that when it starts).
pub fn cuda_unavailable(proc: &Path, dev: &Path, visible_devices: Option<&str>) -> Option<String> {
    if let Some(v) = visible_devices.map(str::trim)
        && (v.is_empty() || v == "-1")
    {
        return Some(format!(
            "CUDA_VISIBLE_DEVICES is `{v}`, which hides every GPU"
        ));
    }
    let driver = proc.join("driver/nvidia/version").exists();
    let gpu_node = std::fs::read_dir(dev).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix("nvidia")
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
    });
    (!driver && !gpu_node).then(|| {
        format!(
            "no NVIDIA GPU is visible (no {} and no {}/nvidia0)",
            proc.join("driver/nvidia/version").display(),
            dev.display()
        )
    })
}

/// burn's CPU device (`flex`), where frozen-encoder weights are loaded.
pub fn cpu_device() -> Device {
    Device::flex()
}

/// A burn CPU backend, for `harness bench model --backend` (runs always use `flex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuBackend {
    /// burn 0.22's CPU backend.
    Flex,
    /// burn's deprecated `ndarray` backend (needs the `ndarray` cargo feature).
    Ndarray,
}

impl std::str::FromStr for CpuBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flex" => Ok(Self::Flex),
            "ndarray" => Ok(Self::Ndarray),
            other => Err(format!(
                "unknown backend `{other}`; expected flex or ndarray"
            )),
        }
    }
}

impl CpuBackend {
    /// Its name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
        }
    }

    /// Its device, or an error naming the cargo feature it needs.
    pub fn device(self) -> Result<Device, ModelError> {
        match self {
            Self::Flex => Ok(Device::flex()),
            // burn 0.22 deprecates ndarray; it stays reachable only for the backend comparison.
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            Self::Ndarray => Ok(Device::ndarray()),
            #[cfg(not(feature = "ndarray"))]
            Self::Ndarray => Err(ModelError::Misconfigured(
                "this binary was built without the `ndarray` cargo feature; rebuild with \
                 `cargo build --release --features ndarray`"
                    .into(),
            )),
        }
    }
}

/// The image encoder a network trains with its decoder.
// One per network, so the size difference between variants costs nothing worth a box (which
// burn's module derive would not see through).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ImageEncoder {
    /// The compact from-scratch CNN.
    CifarCnn(cifar_cnn::CifarCnn),
    /// An EfficientNet-Lite being fine-tuned (`freeze: false`).
    EfficientNet(efficientnet::EfficientNetLite),
    /// The report's AlexNet.
    AlexNet(alexnet::AlexNet),
}

impl ImageEncoder {
    /// `[batch, 3, S, S]` preprocessed images to `[batch, features]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Self::CifarCnn(e) => e.forward(x),
            Self::EfficientNet(e) => e.forward_features(x),
            Self::AlexNet(e) => e.forward(x),
        }
    }
}

/// `out += lhs x rhs` for row-major `lhs` (`[m, k]`), `rhs` (`[k, n]`) and `out` (`[m, n]`), on
/// `gemm` (the matrix engine of burn's CPU backend) in the calling thread.
///
/// # Panics
/// If the slices do not have those lengths.
pub fn matmul_acc(m: usize, k: usize, n: usize, lhs: &[f32], rhs: &[f32], out: &mut [f32]) {
    assert_eq!(lhs.len(), m * k, "lhs is not [{m}, {k}]");
    assert_eq!(rhs.len(), k * n, "rhs is not [{k}, {n}]");
    assert_eq!(out.len(), m * n, "out is not [{m}, {n}]");
    // SAFETY: the three matrices are row-major and in bounds (checked above); gemm computes
    // out = 1 * out + 1 * lhs * rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Runs `f` on a rayon pool of `threads` workers (the pool burn's CPU backend computes on), or
/// on the global pool (all cores) when `threads` is 0 or the pool cannot be built.
pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    match (threads > 0).then(|| rayon::ThreadPoolBuilder::new().num_threads(threads).build()) {
        Some(Ok(pool)) => pool.install(f),
        _ => f(),
    }
}

/// A convolution's weights `[out, in/g, k, k]` and bias `[out]` with the inference-mode batch
/// norm that follows it folded in: `w' = w * gamma / sqrt(var + eps)` per output channel, bias
/// `beta - mean * gamma / sqrt(var + eps)`. Convolving with them is the same function as the
/// convolution followed by the batch norm on its running statistics, minus the passes over the
/// activation.
pub fn fold_batch_norm(bn: &BatchNorm, weight: Tensor<4>) -> (Tensor<4>, Tensor<1>) {
    let scale = bn
        .gamma
        .val()
        .div(bn.running_var.value().add_scalar(bn.epsilon).sqrt()); // [out]
    let shift = bn
        .beta
        .val()
        .sub(bn.running_mean.value().mul(scale.clone())); // [out]
    let [out, _, _, _] = weight.dims();
    (weight.mul(scale.reshape([out, 1, 1, 1])), shift)
}

/// Deterministic pseudo-random values in `[-scale, scale)` from a hand-rolled LCG: inputs for
/// unit tests that compare a layer's fast path with its reference, not data.
#[cfg(test)]
pub(crate) fn pseudo_random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 * scale - scale
        })
        .collect()
}

/// The largest absolute element-wise difference of two equally long outputs (for tests that
/// compare a fast path with its reference).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        // A NaN difference wins (f32::max would drop it), so that no check passes on NaN.
        .fold(0.0f32, |m, d| if d.is_nan() || d > m { d } else { m })
}

/// Encoder, hash layer and embedding layer, in one of two layouts (`model.decoder`):
///
/// - `paper` (the report's): `features -> hash (h sigmoid units) -> embed (d)`; the embedding
///   is a linear map of the hash activations and the auxiliary classifier reads them too;
/// - `wide`: `features -> trunk (T ReLU units) -> embed (d)`, the auxiliary classifier on the
///   trunk, and the hash as a branch `trunk -> hash (h sigmoid units) -> hash_embed (d)` whose
///   own cosine loss keeps the bits semantic.
#[derive(Module, Debug)]
pub struct HashNet {
    /// Image encoder trained with the decoder; `None` when the network consumes precomputed
    /// features of a frozen encoder (an EfficientNet-Lite with `freeze: true`).
    pub encoder: Option<ImageEncoder>,
    /// The wide decoder's hidden layer; `None` for the report's decoder.
    pub trunk: Option<Trunk>,
    /// `features -> h` (or `T -> h`), followed by batch norm and a sigmoid: the hash layer.
    pub hash: Linear,
    /// Batch norm of the hash layer's pre-activations. It keeps the sigmoid in its sensitive
    /// range: without it the `h` activations start saturated near 0.5 with little spread and a
    /// network trained from scratch collapses to the mean class direction.
    pub hash_norm: BatchNorm,
    /// The embedding layer: `h -> d` (paper) or `T -> d` (wide).
    pub embed: Linear,
    /// The wide decoder's `h -> d` decoder of the hash branch (trained, never searched).
    pub hash_embed: Option<Linear>,
    /// Optional softmax head for the auxiliary cross-entropy loss, on the hash activations
    /// (paper) or the trunk (wide).
    pub classify: Option<Linear>,
}

/// The wide decoder's hidden layer: `features -> T`, batch norm, ReLU, dropout.
#[derive(Module, Debug)]
pub struct Trunk {
    /// `features -> T`.
    pub linear: Linear,
    /// Batch norm of the pre-activations.
    pub norm: BatchNorm,
    /// Dropout after the ReLU (training only).
    pub dropout: Dropout,
}

impl Trunk {
    /// `[batch, features] -> [batch, T]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.dropout
            .forward(relu(self.norm.forward(self.linear.forward(x))))
    }
}

/// A batch as the network consumes it.
#[derive(Debug, Clone)]
pub enum Batch {
    /// Preprocessed images `[batch, 3, S, S]` (see [`Preprocess`]) for a network with its own
    /// encoder.
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
    /// The wide decoder's hash-branch embedding `[batch, d]` (a training target only).
    pub hash_embedding: Option<Tensor<2>>,
}

impl HashNet {
    /// A freshly initialised network for `cfg` (the device's seed decides the initial weights).
    ///
    /// `pretrained` is the encoder's weights file: required for a fine-tuned EfficientNet-Lite,
    /// optional for AlexNet (from scratch without it), ignored otherwise.
    pub fn new(
        cfg: &ModelConfig,
        classes: usize,
        pretrained: Option<&Path>,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let (encoder, features) = match (cfg.encoder, cfg.freeze) {
            (Encoder::CifarCnn, _) => (
                Some(ImageEncoder::CifarCnn(cifar_cnn::CifarCnn::new(device))),
                cifar_cnn::FEATURES,
            ),
            (Encoder::EfficientnetLite0 | Encoder::EfficientnetLite2, true) => {
                (None, efficientnet::FEATURE_DIM)
            }
            (Encoder::EfficientnetLite0 | Encoder::EfficientnetLite2, false) => {
                let lite = efficientnet::Lite::of(cfg.encoder).expect("an EfficientNet-Lite");
                let path = pretrained.ok_or_else(|| {
                    ModelError::Misconfigured(format!(
                        "fine-tuning {} needs its pretrained weights file",
                        cfg.encoder.as_str()
                    ))
                })?;
                let net = efficientnet::EfficientNetLite::load(path, lite, device)?;
                (
                    Some(ImageEncoder::EfficientNet(net)),
                    efficientnet::FEATURE_DIM,
                )
            }
            (Encoder::Alexnet, _) => {
                let net = match pretrained {
                    Some(path) => alexnet::AlexNet::load(path, device)?,
                    None => alexnet::AlexNet::new(device),
                };
                (Some(ImageEncoder::AlexNet(net)), alexnet::FEATURES)
            }
        };
        let (h, d) = (cfg.h as usize, cfg.d as usize);
        let aux = cfg.aux_ce_weight > 0.0;
        Ok(match cfg.decoder {
            Decoder::Paper => Self {
                trunk: None,
                hash: LinearConfig::new(features, h).init(device),
                hash_norm: BatchNormConfig::new(h).init(device),
                embed: LinearConfig::new(h, d).init(device),
                hash_embed: None,
                classify: aux.then(|| LinearConfig::new(h, classes).init(device)),
                encoder,
            },
            Decoder::Wide => {
                let t = cfg.trunk as usize;
                Self {
                    trunk: Some(Trunk {
                        linear: LinearConfig::new(features, t).init(device),
                        norm: BatchNormConfig::new(t).init(device),
                        dropout: DropoutConfig::new(cfg.dropout).init(),
                    }),
                    hash: LinearConfig::new(t, h).init(device),
                    hash_norm: BatchNormConfig::new(h).init(device),
                    embed: LinearConfig::new(t, d).init(device),
                    hash_embed: Some(LinearConfig::new(h, d).init(device)),
                    classify: aux.then(|| LinearConfig::new(t, classes).init(device)),
                    encoder,
                }
            }
        })
    }

    /// Preprocessed images or precomputed features to activations, embedding and logits.
    pub fn forward(&self, input: Batch) -> Result<Output, ModelError> {
        match (input, &self.encoder) {
            (Batch::Images(x), Some(encoder)) => Ok(self.forward_features(encoder.forward(x))),
            (Batch::Features(f), _) => Ok(self.forward_features(f)),
            (Batch::Images(_), None) => Err(ModelError::Misconfigured(
                "this network consumes precomputed encoder features, not images".into(),
            )),
        }
    }

    /// `[batch, features]` encoder features to activations, embedding and logits.
    pub fn forward_features(&self, features: Tensor<2>) -> Output {
        let Some(trunk) = &self.trunk else {
            let activations = self.hash_activations(features); // [batch, h]
            let embedding = self.embed.forward(activations.clone()); // [batch, d]
            let logits = self
                .classify
                .as_ref()
                .map(|c| c.forward(activations.clone()));
            return Output {
                activations,
                embedding,
                logits,
                hash_embedding: None,
            };
        };
        let hidden = trunk.forward(features); // [batch, T]
        let activations = self.hash_activations(hidden.clone()); // [batch, h]
        Output {
            hash_embedding: self
                .hash_embed
                .as_ref()
                .map(|e| e.forward(activations.clone())), // [batch, d]
            activations,
            embedding: self.embed.forward(hidden.clone()), // [batch, d]
            logits: self.classify.as_ref().map(|c| c.forward(hidden)),
        }
    }

    /// The hash layer: linear, batch norm, sigmoid; `[batch, in] -> [batch, h]`.
    fn hash_activations(&self, x: Tensor<2>) -> Tensor<2> {
        sigmoid(self.hash_norm.forward(self.hash.forward(x)))
    }
}

/// How 32x32 CIFAR images become an encoder's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preprocess {
    /// 32x32, standardised with the CIFAR-100 channel statistics (`cifar_cnn`).
    Cifar,
    /// Bicubic upsampling to `size`, then `(x - 127) / 128` (EfficientNet-Lite).
    EfficientNet {
        /// Output side in pixels.
        size: usize,
    },
    /// Bicubic upsampling to `size`, scaled to `[0, 1]` and standardised with the ImageNet
    /// channel statistics (AlexNet, as torchvision trains it).
    ImageNet {
        /// Output side in pixels.
        size: usize,
    },
}

impl Preprocess {
    /// The preprocessing of the configured encoder.
    pub fn of(cfg: &ModelConfig) -> Self {
        let size = cfg.input_size as usize;
        match cfg.encoder {
            Encoder::CifarCnn => Self::Cifar,
            Encoder::EfficientnetLite0 | Encoder::EfficientnetLite2 => Self::EfficientNet { size },
            Encoder::Alexnet => Self::ImageNet { size },
        }
    }

    /// Side of the preprocessed images.
    pub fn side(self) -> usize {
        match self {
            Self::Cifar => 32,
            Self::EfficientNet { size } | Self::ImageNet { size } => size,
        }
    }

    /// Appends one `[3, 32, 32]` u8 image, preprocessed, to `out` (`3 * side^2` values).
    pub fn append(self, pixels: &[u8], out: &mut Vec<f32>) -> Result<(), ModelError> {
        match self {
            Self::Cifar => normalize_into(pixels, out),
            Self::EfficientNet { size } => {
                let mut x = resize::resize_bicubic_square(pixels, 32, 32, size)?;
                efficientnet::normalize_f32_in_place(&mut x);
                out.extend_from_slice(&x);
            }
            Self::ImageNet { size } => {
                let x = resize::resize_bicubic_square(pixels, 32, 32, size)?;
                for (c, plane) in x.chunks_exact(size * size).enumerate() {
                    let (m, s) = (alexnet::IMAGENET_MEAN[c], alexnet::IMAGENET_STD[c]);
                    out.extend(plane.iter().map(|&p| (p / 255.0 - m) / s));
                }
            }
        }
        Ok(())
    }

    /// `n` preprocessed images as a `[n, 3, side, side]` tensor.
    pub fn tensor(self, values: Vec<f32>, n: usize, device: &Device) -> Tensor<4> {
        let side = self.side();
        Tensor::from_data(TensorData::new(values, [n, 3, side, side]), device)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_gpu_is_named_before_any_work() {
        // Hand-made /proc and /dev trees for a unit test of the probe.
        let root = tempfile::tempdir().unwrap();
        let (proc, dev) = (root.path().join("proc"), root.path().join("dev"));
        std::fs::create_dir_all(proc.join("driver/nvidia")).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("nvidiactl"), "").unwrap();
        let reason = cuda_unavailable(&proc, &dev, None).unwrap();
        assert!(reason.contains("no NVIDIA GPU is visible"), "{reason}");
        std::fs::write(dev.join("nvidia0"), "").unwrap();
        assert_eq!(cuda_unavailable(&proc, &dev, None), None);
        assert_eq!(cuda_unavailable(&proc, &dev, Some("0,1")), None);
        let hidden = cuda_unavailable(&proc, &dev, Some("")).unwrap();
        assert!(hidden.contains("hides every GPU"), "{hidden}");
        assert!(cuda_unavailable(&proc, &dev, Some("-1")).is_some());
        std::fs::remove_file(dev.join("nvidia0")).unwrap();
        std::fs::write(proc.join("driver/nvidia/version"), "NVRM 550").unwrap();
        assert_eq!(cuda_unavailable(&proc, &dev, None), None);
        let e = ModelError::NoCudaDevice(reason).to_string();
        assert!(
            e.starts_with("backend `cuda`: no NVIDIA GPU") && e.contains("backend: cpu"),
            "{e}"
        );
    }
}
