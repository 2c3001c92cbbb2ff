//! Training and inference throughput of the networks on real CIFAR-100 images
//! (`harness bench model`), for comparison with the same network in PyTorch
//! (`scripts/bench_torch.sh`).
//!
//! Training times whole optimiser steps: building the batch from the u8 pixels, the forward
//! pass, the cosine loss against the class embedding, the backward pass and an SGD step with
//! momentum 0.9. Inference times the forward pass without gradients (batch norm on running
//! statistics) on the same batches. EfficientNet-Lite0 inference times the frozen
//! feature pass the features stage runs (bicubic upsampling included).

use crate::config::{ModelConfig, Precision};
use crate::data::cifar::IMAGE_BYTES;
use crate::embed;
use crate::model::efficientnet::{EfficientNetLite, Lite};
use crate::model::frozen::FrozenLite;
use crate::model::{self, HashNet, ModelError, Preprocess};
use crate::train::{self, Images, Inputs};
use burn::optim::{GradientsParams, SgdConfig, momentum::MomentumConfig};
use burn::prelude::*;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// What to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Optimiser steps.
    Train,
    /// Forward passes without gradients.
    Infer,
}

impl std::str::FromStr for Mode {
    type Err = String;

    /// `train` or `infer`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Self::Train),
            "infer" => Ok(Self::Infer),
            other => Err(format!("unknown mode `{other}`; expected train or infer")),
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Always `burn`; the PyTorch script prints `torch`.
    pub framework: &'static str,
    /// burn's backend (`flex`, `ndarray`).
    pub backend: &'static str,
    /// `train` or `infer`.
    pub mode: &'static str,
    /// Encoder name as in the config.
    pub encoder: String,
    /// Input side in pixels.
    pub input_size: usize,
    /// Frozen EfficientNet-Lite: `fused` or `fused-bf16` (the features stage) or
    /// `burn-layers`.
    pub path: &'static str,
    /// Images per step.
    pub batch: usize,
    /// Worker threads.
    pub threads: usize,
    /// Images timed (after warm-up).
    pub images: usize,
    /// Wall seconds for them.
    pub seconds: f64,
    /// Throughput.
    pub images_per_second: f64,
    /// A frozen EfficientNet-Lite's arithmetic rate: 2 x its multiply-adds per image
    /// ([`crate::model::frozen::FrozenLite::multiply_adds`]) x images/s, in 10^9 FLOP/s;
    /// `harness bench peak` measures what the cores can do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
}

/// Settings of one measurement.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The network (encoder, input size, `h`, `d`).
    pub model: ModelConfig,
    /// Images per step.
    pub batch: usize,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// Worker threads (the rayon pool burn's CPU backend runs on).
    pub threads: usize,
    /// Seed of the initial weights.
    pub seed: u64,
    /// The burn device (without autodiff; training adds it).
    pub device: Device,
    /// Its name in the records.
    pub backend: &'static str,
    /// How a frozen EfficientNet-Lite computes its features: the fused inference the features
    /// stage runs (see [`crate::model::frozen`]) at a precision, or burn's plain layers.
    pub pass: embed::FeaturePass,
}

/// Times `mode` on the first `(warmup + steps) * batch` images of `pixels` (planar u8 CIFAR
/// records, with their fine `labels`). `class_embedding` is `C` (`100 x d`); `pretrained` the
/// encoder's weights file where it needs one.
pub fn measure(
    settings: &Settings,
    mode: Mode,
    pixels: &[u8],
    labels: &[u8],
    class_embedding: &[f32],
    pretrained: Option<&Path>,
) -> Result<Record, ModelError> {
    let need = (settings.warmup + settings.steps) * settings.batch;
    if labels.len() < need || pixels.len() < need * IMAGE_BYTES {
        return Err(ModelError::InvalidInput {
            what: format!(
                "{} steps of {} images need {need} images, got {}",
                settings.warmup + settings.steps,
                settings.batch,
                labels.len()
            ),
        });
    }
    let images = Images {
        inputs: Inputs::Pixels(&pixels[..need * IMAGE_BYTES]),
        labels: &labels[..need],
    };
    let (seconds, multiply_adds) = model::with_threads(settings.threads, || match mode {
        Mode::Train => Ok((
            time_training(settings, images, class_embedding, pretrained)?,
            None,
        )),
        Mode::Infer => time_inference(settings, images, pretrained),
    })?;
    let timed = settings.steps * settings.batch;
    let images_per_second = timed as f64 / seconds.max(1e-12);
    Ok(Record {
        framework: "burn",
        backend: settings.backend,
        mode: match mode {
            Mode::Train => "train",
            Mode::Infer => "infer",
        },
        encoder: settings.model.encoder.as_str().to_owned(),
        input_size: Preprocess::of(&settings.model).side(),
        path: settings.pass.name(),
        batch: settings.batch,
        threads: settings.threads,
        images: timed,
        seconds,
        images_per_second,
        gflops: multiply_adds.map(|m| 2.0 * m as f64 * images_per_second / 1e9),
    })
}

fn time_training(
    settings: &Settings,
    images: Images<'_>,
    class_embedding: &[f32],
    pretrained: Option<&Path>,
) -> Result<f64, ModelError> {
    let device = settings.device.clone().autodiff();
    device.seed(settings.seed);
    let d = settings.model.d as usize;
    let classes = class_embedding.len() / d;
    // In an Option so each step can move the network into the optimiser and take it back.
    let mut net = Some(HashNet::new(&settings.model, classes, pretrained, &device)?);
    let c = Tensor::<2>::from_data(
        TensorData::new(class_embedding.to_vec(), [classes, d]),
        &device,
    );
    let mut optim = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }))
        .init();
    let prep = Preprocess::of(&settings.model);
    let started = time_steps(settings, images.len(), |chunk| {
        let model = net.take().expect("put back by the previous step");
        let (x, labels) = train::batch(images, chunk, None, prep, &device)?;
        let out = model.forward(x)?;
        let loss = train::cosine_loss(out.embedding, c.clone().select(0, labels));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        net = Some(optim.step(0.01, model, grads));
        Ok(())
    })?;
    // Wait for the last step's values, so queued work is not left out of the time.
    if let Some(net) = &net {
        let _ = net.hash.weight.val().into_data();
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Runs `step` on consecutive batches of ids `0..n` and returns when the steps after the first
/// `settings.warmup` began (the timed ones).
fn time_steps(
    settings: &Settings,
    n: usize,
    mut step: impl FnMut(&[usize]) -> Result<(), ModelError>,
) -> Result<Instant, ModelError> {
    let ids: Vec<usize> = (0..n).collect();
    let mut started = Instant::now();
    for (i, chunk) in ids.chunks(settings.batch).enumerate() {
        if i == settings.warmup {
            started = Instant::now();
        }
        step(chunk)?;
    }
    Ok(started)
}

/// Seconds for the timed images, and a frozen EfficientNet-Lite's multiply-adds per image.
fn time_inference(
    settings: &Settings,
    images: Images<'_>,
    pretrained: Option<&Path>,
) -> Result<(f64, Option<u64>), ModelError> {
    let device = settings.device.clone();
    device.seed(settings.seed);
    let prep = Preprocess::of(&settings.model);
    let Inputs::Pixels(pixels) = images.inputs else {
        unreachable!("measure passes pixels")
    };
    // A frozen EfficientNet-Lite runs as the features stage runs it.
    if let (Some(lite), true) = (Lite::of(settings.model.encoder), settings.model.freeze) {
        let path = pretrained.ok_or_else(|| {
            ModelError::Misconfigured(format!("{} needs its weights file", lite.name()))
        })?;
        let encoder = EfficientNetLite::load(path, lite, &device)?;
        let warm = settings.warmup * settings.batch * IMAGE_BYTES;
        let run = |pixels: &[u8]| {
            embed::encoder_features(
                &encoder,
                pixels,
                prep.side(),
                settings.batch,
                false,
                settings.pass,
            )
        };
        run(&pixels[..warm])?;
        let started = Instant::now();
        run(&pixels[warm..])?;
        let seconds = started.elapsed().as_secs_f64();
        let multiply_adds =
            FrozenLite::compile(&encoder, Precision::Fp32)?.multiply_adds(prep.side());
        return Ok((seconds, Some(multiply_adds)));
    }
    let net = HashNet::new(&settings.model, 100, pretrained, &device)?;
    let started = time_steps(settings, images.len(), |chunk| {
        let (x, _) = train::batch(images, chunk, None, prep, &device)?;
        let _ = net.forward(x)?.embedding.into_data();
        Ok(())
    })?;
    Ok((started.elapsed().as_secs_f64(), None))
}
