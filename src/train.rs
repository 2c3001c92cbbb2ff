//! Training (burn): the cosine loss `1 - cos(output, C[label])` against the class embedding `C`,
//! optimised with SGD + momentum (the report) or Adam, with checkpoints every epoch.
//!
//! A checkpoint is a folder `checkpoints/epoch-NNN/` holding the model and optimiser state
//! (burnpack) and `state.json`; `checkpoints/latest.json` names the newest complete one and is
//! written last, atomically. A crash or a full disk while writing a checkpoint therefore leaves
//! the previous one intact, and `harness run` resumes from it. Shuffling is seeded per epoch
//! (`seed + epoch`), so a resumed run sees the same batches as an uninterrupted one.

use crate::config::{Config, Engine, Optimizer, Schedule};
use crate::data::cifar::IMAGE_BYTES;
use crate::model::{self, Batch, HashNet, ModelError, Preprocess};
use crate::store::{self, StoreError};
use burn::module::Module;
use burn::optim::{
    GradientsParams, ModuleOptimizer, SgdConfig, decay::WeightDecayConfig, momentum::MomentumConfig,
};
use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

mod adam;
pub mod decoder;
pub use adam::FusedAdam;

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The model could not be built.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A checkpoint or log could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A checkpoint could not be read back.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The loss became NaN or infinite.
    #[error(
        "loss is {loss} at epoch {epoch}, batch {batch}: training diverged (lower train.lr); \
         the last good checkpoint is kept in {checkpoints}"
    )]
    NonFiniteLoss {
        /// The loss value.
        loss: f32,
        /// 1-based epoch.
        epoch: usize,
        /// 0-based batch within the epoch.
        batch: usize,
        /// The checkpoint folder.
        checkpoints: PathBuf,
    },
}

/// What the network reads for each image.
#[derive(Debug, Clone, Copy)]
pub enum Inputs<'a> {
    /// `N * 3072` u8 pixels, `[N, 3, 32, 32]`.
    Pixels(&'a [u8]),
    /// `N * dim` frozen-encoder features.
    Features {
        /// Row-major values.
        values: &'a [f32],
        /// Feature width.
        dim: usize,
        /// Features of cached views of the same images (same rows: the mirror images, shifted
        /// copies), which `augment` draws instead of `values` with probability 1/2.
        views: &'a [Vec<f32>],
    },
}

/// Images (as pixels or features) and fine labels of one split (or a prefix of it).
#[derive(Debug, Clone, Copy)]
pub struct Images<'a> {
    /// The network's inputs.
    pub inputs: Inputs<'a>,
    /// `N` fine labels.
    pub labels: &'a [u8],
}

impl Images<'_> {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True without images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// One row of `train_log.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Nearest-class accuracy on the training batches as they were trained (running).
    pub train_accuracy: f64,
    /// Nearest-class accuracy on the evaluation split after the epoch.
    pub test_accuracy: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Wall time of the epoch's training, seconds.
    pub seconds: f64,
    /// Training throughput.
    pub images_per_second: f64,
}

/// `checkpoints/latest.json` and each checkpoint's `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CheckpointState {
    epoch: usize,
    dir: String,
    log: Vec<EpochLog>,
}

/// Inputs of a training run.
pub struct TrainJob<'a> {
    /// The resolved run config (`model`, `train`, `seed`, `backend`).
    pub config: &'a Config,
    /// Class embedding `C`, row-major `classes x d`.
    pub class_embedding: &'a [f32],
    /// Training images.
    pub train: Images<'a>,
    /// Images for the per-epoch accuracy (the test split).
    pub eval: Images<'a>,
    /// The encoder's pretrained weights file (see [`HashNet::new`]).
    pub pretrained: Option<&'a Path>,
    /// Folder for checkpoints and `train_log.csv`.
    pub dir: &'a Path,
    /// Draw progress bars.
    pub progress: bool,
}

/// Trains (or resumes) and returns the trained network on the inference device, with the log.
///
/// Runs are reproducible for a given seed. burn's CPU backend keeps one process-wide random
/// generator, so two trainings running at once in the same process would interleave their draws;
/// the harness trains one network at a time.
pub fn train(job: &TrainJob<'_>) -> Result<(HashNet, Vec<EpochLog>), TrainError> {
    let cfg = job.config;
    let t = &cfg.train;
    let classes = job.class_embedding.len() / cfg.model.d as usize;
    let device = model::device(cfg.backend)?.autodiff();
    device.seed(cfg.seed);
    let prep = Preprocess::of(&cfg.model);
    let net = HashNet::new(&cfg.model, classes, job.pretrained, &device)?;
    let ckpt_dir = job.dir.join("checkpoints");
    let resume = latest(&ckpt_dir)?;
    let from = resume.as_ref().map(|state| ckpt_dir.join(&state.dir));
    let mut learner = match t.engine {
        Engine::Burn => Learner::burn(net, &device, cfg, job.class_embedding, from.as_deref())?,
        Engine::Fused => Learner::fused(net, cfg, from.as_deref())?,
    };
    let (start_epoch, mut log) = resume.map_or((0, Vec::new()), |s| (s.epoch, s.log));
    let batches_per_epoch = job.train.len().div_ceil(t.batch_size);
    let total_steps = (batches_per_epoch * t.epochs).max(1);
    for epoch in start_epoch..t.epochs {
        let mut order: Vec<usize> = (0..job.train.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(
            cfg.seed.wrapping_add(epoch as u64),
        ));
        let mut aug_rng =
            StdRng::seed_from_u64(cfg.seed.wrapping_add(1_000_003 * (epoch as u64 + 1)));
        let bar = progress_bar(job.progress, batches_per_epoch, epoch + 1, t.epochs);
        let started = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = t.lr;
        for (b, chunk) in order.chunks(t.batch_size).enumerate() {
            let step = epoch * batches_per_epoch + b;
            lr = learning_rate(cfg, step, total_steps);
            let augment = t.augment.then_some(&mut aug_rng);
            let (value, hits) = learner.step(job, chunk, augment, prep, lr)?;
            if !value.is_finite() {
                return Err(TrainError::NonFiniteLoss {
                    loss: value,
                    epoch: epoch + 1,
                    batch: b,
                    checkpoints: ckpt_dir,
                });
            }
            correct += hits;
            seen += chunk.len();
            loss_sum += f64::from(value) * chunk.len() as f64;
            if let Some(bar) = &bar {
                bar.inc(1);
                let rate = seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "loss {:.4}  {:.0} img/s",
                    loss_sum / seen as f64,
                    rate
                ));
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let valid = learner.network()?;
        let test_accuracy = accuracy(&valid, job.eval, prep, job.class_embedding)?;
        log.push(EpochLog {
            epoch: epoch + 1,
            loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            test_accuracy,
            lr,
            seconds,
            images_per_second: seen as f64 / seconds.max(1e-9),
        });
        save_checkpoint(&ckpt_dir, epoch + 1, &log, |dir| learner.save(&valid, dir))?;
        store::write_bytes_atomic(&job.dir.join("train_log.csv"), log_csv(&log).as_bytes())?;
    }
    Ok((learner.network()?, log))
}

/// What takes the training steps: burn's autodiff and optimiser, or the fused decoder.
// One per training run, so the variants' sizes (a network each) do not matter.
#[allow(clippy::large_enum_variant)]
enum Learner {
    Burn {
        /// `None` only while a step moves it through the optimiser.
        net: Option<HashNet>,
        /// The autodiff device the batches go to.
        device: Device,
        optim: ModuleOptimizer,
        class_embedding: Tensor<2>,
        cross_entropy: burn::nn::loss::CrossEntropyLoss,
    },
    Fused {
        trainer: decoder::Trainer,
        /// The network on the inference device whose values the trainer's replace.
        template: HashNet,
    },
}

impl Learner {
    /// burn's autodiff on `net` (on the autodiff `device`), resumed from checkpoint folder
    /// `from`.
    ///
    /// burn draws a parameter's initial values when it is first read, so nothing here reads
    /// one: the first forward pass does, in its order, as it always has (reading the hash
    /// layer's weights first gave another network from the same seed).
    fn burn(
        net: HashNet,
        device: &Device,
        cfg: &Config,
        class_embedding: &[f32],
        from: Option<&Path>,
    ) -> Result<Self, TrainError> {
        let mut optim = optimizer(cfg);
        let net = match from {
            Some(dir) => {
                optim = load_optimizer(optim, &dir.join("optim.bpk"))?;
                load_model(net, &checkpoint_in(dir))?
            }
            None => net,
        };
        let d = cfg.model.d as usize;
        Ok(Self::Burn {
            net: Some(net),
            device: device.clone(),
            optim,
            class_embedding: Tensor::<2>::from_data(
                TensorData::new(class_embedding.to_vec(), [class_embedding.len() / d, d]),
                device,
            ),
            cross_entropy: burn::nn::loss::CrossEntropyLossConfig::new().init(device),
        })
    }

    /// The fused decoder, starting from `net`'s initial values or resumed from `from`.
    fn fused(net: HashNet, cfg: &Config, from: Option<&Path>) -> Result<Self, TrainError> {
        draw_as_burns_forward_pass(&net);
        let template = net.valid();
        let (template, moments) = match from {
            Some(dir) => {
                let fail = |path: &Path, message: String| TrainError::Checkpoint {
                    path: path.to_path_buf(),
                    message,
                };
                let state_path = dir.join(ADAM_STATE);
                let state: FusedAdamState = serde_json::from_slice(&store::read(&state_path)?)
                    .map_err(|e| fail(&state_path, format!("unreadable: {e}")))?;
                let moment = |name: &str| -> Result<decoder::Parts, TrainError> {
                    let module = load_model(template.clone(), &dir.join(name))?;
                    Ok(decoder_parts(&module)?.0)
                };
                let moments = (moment(MOMENT_1)?, moment(MOMENT_2)?, state.time);
                (load_model(template, &checkpoint_in(dir))?, Some(moments))
            }
            None => (template, None),
        };
        let (parts, running, widths) = decoder_parts(&template)?;
        let aux = cfg.model.aux_ce_weight as f32;
        let trainer = decoder::Trainer::new(widths, &parts, running, aux, adam(cfg), moments)
            .map_err(|e| ModelError::Misconfigured(format!("fused decoder: {e}")))?;
        Ok(Self::Fused { trainer, template })
    }

    /// One step on the images `ids`: the batch's loss before the update and its hits.
    fn step(
        &mut self,
        job: &TrainJob<'_>,
        ids: &[usize],
        augment: Option<&mut StdRng>,
        prep: Preprocess,
        lr: f64,
    ) -> Result<(f32, usize), TrainError> {
        match self {
            Self::Burn {
                net,
                device,
                optim,
                class_embedding,
                cross_entropy,
            } => {
                let model = net.take().expect("the network is back after each step");
                let (x, labels) = batch(job.train, ids, augment, prep, device)?;
                let out = model.forward(x)?;
                let embedding = out.embedding.clone();
                let loss = training_loss(
                    out,
                    class_embedding,
                    labels.clone(),
                    cross_entropy,
                    job.config,
                );
                let value: f32 = loss.clone().into_scalar();
                let predicted = embedding
                    .detach()
                    .matmul(class_embedding.clone().transpose())
                    .argmax(1)
                    .reshape([ids.len()]);
                let hits: i64 = predicted.equal(labels).int().sum().into_scalar();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                *net = Some(optim.step(lr, model, grads));
                Ok((value, hits as usize))
            }
            Self::Fused { trainer, .. } => {
                let Inputs::Features { values, dim, views } = job.train.inputs else {
                    return Err(ModelError::Misconfigured(
                        "the fused decoder trains on frozen-encoder features".into(),
                    )
                    .into());
                };
                let x = gather_features(values, dim, views, ids, augment);
                let labels: Vec<u8> = ids.iter().map(|&i| job.train.labels[i]).collect();
                let out = trainer.step(&x, &labels, job.class_embedding, lr);
                Ok((out.loss, out.hits))
            }
        }
    }

    /// The network as trained so far, on the inference device.
    fn network(&self) -> Result<HashNet, TrainError> {
        match self {
            Self::Burn { net, .. } => Ok(net.as_ref().expect("a network").valid()),
            Self::Fused { trainer, template } => Ok(with_decoder_parts(
                template,
                &trainer.parts(),
                trainer.running(),
            )),
        }
    }

    /// Writes the model and the optimiser state into checkpoint folder `dir` (`valid` is
    /// [`Learner::network`]).
    fn save(&self, valid: &HashNet, dir: &Path) -> Result<(), TrainError> {
        match self {
            Self::Burn { net, optim, .. } => {
                save_model(net.as_ref().expect("a network"), &checkpoint_in(dir))?;
                let bytes = optim
                    .to_record()
                    .into_bytes()
                    .map_err(|e| TrainError::Checkpoint {
                        path: dir.to_path_buf(),
                        message: format!("cannot serialise the optimiser: {e}"),
                    })?;
                store::write_bytes_atomic(&dir.join("optim.bpk"), &bytes)?;
            }
            Self::Fused { trainer, template } => {
                save_model(valid, &checkpoint_in(dir))?;
                // Adam's moments have the parameters' shapes: each is saved as a network.
                let (m1, m2, time) = trainer.moments();
                let running = trainer.running();
                save_model(
                    &with_decoder_parts(template, &m1, running),
                    &dir.join(MOMENT_1),
                )?;
                save_model(
                    &with_decoder_parts(template, &m2, running),
                    &dir.join(MOMENT_2),
                )?;
                store::write_json_atomic(&dir.join(ADAM_STATE), &FusedAdamState { time })?;
            }
        }
        Ok(())
    }
}

/// Reads the linear layers' parameters of a fresh `net` in the order burn's forward pass first
/// reads them (each weight, then its bias: the trunk, the hash layer, the hash branch's decoder,
/// the embedding, the classifier). burn draws a parameter's initial values when it is first
/// read, so this gives the fused engine the initial network burn's engine trains from the same
/// seed. (Batch norm's scales and shifts start at one and zero: no draw.)
fn draw_as_burns_forward_pass(net: &HashNet) {
    let layers = (net.trunk.iter().map(|t| &t.linear))
        .chain([&net.hash])
        .chain(&net.hash_embed)
        .chain([&net.embed])
        .chain(&net.classify);
    for layer in layers {
        let _ = layer.weight.val();
        if let Some(bias) = &layer.bias {
            let _ = bias.val();
        }
    }
}

/// A fused checkpoint's Adam moments (networks of the model's shapes) and step count.
const MOMENT_1: &str = "adam-moment-1.bpk";
const MOMENT_2: &str = "adam-moment-2.bpk";
const ADAM_STATE: &str = "adam.json";

#[derive(Debug, Serialize, Deserialize)]
struct FusedAdamState {
    /// Adam steps taken.
    time: usize,
}

/// The wide decoder's values in the fused trainer's layout, its running statistics and widths.
fn decoder_parts(
    net: &HashNet,
) -> Result<(decoder::Parts, decoder::Running, decoder::Widths), TrainError> {
    let wide = || ModelError::Misconfigured("the fused decoder trains the wide decoder".into());
    let trunk = net.trunk.as_ref().ok_or_else(wide)?;
    let hash_embed = net.hash_embed.as_ref().ok_or_else(wide)?;
    let values = |t: Tensor<1>| t.into_data().iter::<f32>().collect::<Vec<_>>();
    let matrix = |l: &burn::nn::Linear| -> (Vec<f32>, [usize; 2]) {
        let w = l.weight.val();
        let dims = w.dims();
        (w.into_data().iter::<f32>().collect(), dims)
    };
    let bias = |l: &burn::nn::Linear| l.bias.as_ref().map(|b| values(b.val())).unwrap_or_default();
    let (w1, [features, t]) = matrix(&trunk.linear);
    let mut heads_layers = vec![&net.hash, &net.embed];
    heads_layers.extend(net.classify.as_ref());
    let widths_of: Vec<usize> = heads_layers.iter().map(|l| l.weight.dims()[1]).collect();
    let n: usize = widths_of.iter().sum();
    let mut heads = vec![0.0f32; t * n];
    let mut heads_bias = Vec::with_capacity(n);
    let mut first = 0;
    for (layer, &w) in heads_layers.iter().zip(&widths_of) {
        let (m, _) = matrix(layer);
        for r in 0..t {
            heads[r * n + first..][..w].copy_from_slice(&m[r * w..][..w]);
        }
        heads_bias.extend(bias(layer));
        first += w;
    }
    let (w4, [h, d]) = matrix(hash_embed);
    let parts = decoder::Parts {
        w1,
        b1: bias(&trunk.linear),
        g1: values(trunk.norm.gamma.val()),
        be1: values(trunk.norm.beta.val()),
        heads,
        heads_bias,
        g2: values(net.hash_norm.gamma.val()),
        be2: values(net.hash_norm.beta.val()),
        w4,
        b4: bias(hash_embed),
    };
    let running = decoder::Running {
        mean1: values(trunk.norm.running_mean.value()),
        var1: values(trunk.norm.running_var.value()),
        mean2: values(net.hash_norm.running_mean.value()),
        var2: values(net.hash_norm.running_var.value()),
    };
    let widths = decoder::Widths {
        features,
        trunk: t,
        h,
        d,
        classes: n - h - d,
    };
    Ok((parts, running, widths))
}

/// `template` with the values of `parts` and `running` (the inverse of [`decoder_parts`]).
fn with_decoder_parts(
    template: &HashNet,
    parts: &decoder::Parts,
    running: &decoder::Running,
) -> HashNet {
    use burn::module::{Param, RunningState};
    let device = template.hash.weight.val().device();
    let vector =
        |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &device);
    let param = |v: &[f32]| Param::from_tensor(vector(v));
    let matrix = |v: Vec<f32>, rows: usize| {
        let cols = v.len() / rows;
        Param::from_tensor(Tensor::<2>::from_data(
            TensorData::new(v, [rows, cols]),
            &device,
        ))
    };
    let mut net = template.clone();
    let trunk = net.trunk.as_mut().expect("the wide decoder");
    let (features, t) = (trunk.linear.weight.dims()[0], parts.g1.len());
    trunk.linear.weight = matrix(parts.w1.clone(), features);
    trunk.linear.bias = Some(param(&parts.b1));
    trunk.norm.gamma = param(&parts.g1);
    trunk.norm.beta = param(&parts.be1);
    trunk.norm.running_mean = RunningState::new(vector(&running.mean1));
    trunk.norm.running_var = RunningState::new(vector(&running.var1));
    let n = parts.heads_bias.len();
    let mut first = 0;
    for layer in [
        Some(&mut net.hash),
        Some(&mut net.embed),
        net.classify.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        let w = layer.weight.dims()[1];
        let columns: Vec<f32> = (0..t)
            .flat_map(|r| parts.heads[r * n + first..][..w].iter().copied())
            .collect();
        layer.weight = matrix(columns, t);
        layer.bias = Some(param(&parts.heads_bias[first..first + w]));
        first += w;
    }
    net.hash_norm.gamma = param(&parts.g2);
    net.hash_norm.beta = param(&parts.be2);
    net.hash_norm.running_mean = RunningState::new(vector(&running.mean2));
    net.hash_norm.running_var = RunningState::new(vector(&running.var2));
    let hash_embed = net.hash_embed.as_mut().expect("the wide decoder");
    hash_embed.weight = matrix(parts.w4.clone(), parts.g2.len());
    hash_embed.bias = Some(param(&parts.b4));
    net
}

/// The loss of one batch: `1 - cos(embedding, C[label])`, plus the wide decoder's hash-branch
/// cosine loss (its own cosine decoder keeps the bits semantic), plus `model.aux_ce_weight` x
/// the auxiliary classifier's cross-entropy where there is one.
fn training_loss(
    out: model::Output,
    class_embedding: &Tensor<2>,
    labels: Tensor<1, Int>,
    cross_entropy: &burn::nn::loss::CrossEntropyLoss,
    cfg: &Config,
) -> Tensor<1> {
    let target = class_embedding.clone().select(0, labels.clone());
    let mut loss = cosine_loss(out.embedding, target.clone());
    if let Some(hash_embedding) = out.hash_embedding {
        loss = loss + cosine_loss(hash_embedding, target);
    }
    if let Some(logits) = out.logits {
        let ce = cross_entropy.forward(logits, labels);
        loss = loss + ce.mul_scalar(cfg.model.aux_ce_weight);
    }
    loss
}

/// The optimiser the config asks for. Adam is [`FusedAdam`]: burn's Adam computed in one pass
/// per parameter, bit for bit the same (its state is burn's, so checkpoints are unchanged).
fn optimizer(cfg: &Config) -> ModuleOptimizer {
    let t = &cfg.train;
    let decay = (t.weight_decay > 0.0).then(|| WeightDecayConfig::new(t.weight_decay as f32));
    match t.optimizer {
        Optimizer::Sgd => SgdConfig::new()
            .with_momentum((t.momentum > 0.0).then_some(MomentumConfig {
                momentum: t.momentum,
                dampening: 0.0,
                nesterov: false,
            }))
            .with_weight_decay(decay)
            .init(),
        Optimizer::Adam => ModuleOptimizer::from(adam(cfg)),
    }
}

/// The config's Adam: burn's defaults, with `train.weight_decay` as an L2 penalty where set.
fn adam(cfg: &Config) -> FusedAdam {
    let decay = cfg.train.weight_decay;
    FusedAdam {
        weight_decay: (decay > 0.0).then_some(decay as f32),
        ..FusedAdam::default()
    }
}

/// Learning rate at optimiser step `step` of `total`.
pub fn learning_rate(cfg: &Config, step: usize, total: usize) -> f64 {
    let lr = cfg.train.lr;
    let progress = step as f64 / total.max(1) as f64;
    match cfg.train.schedule {
        Schedule::Constant => lr,
        Schedule::Cosine => lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        Schedule::Step if progress >= 0.75 => lr * 0.01,
        Schedule::Step if progress >= 0.5 => lr * 0.1,
        Schedule::Step => lr,
    }
}

/// Mean of `1 - cos(output, target)` over the batch; `target` rows are unit vectors.
pub fn cosine_loss(output: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
    let dot = (output.clone() * target).sum_dim(1); // [batch, 1]
    let norm = output.powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-8); // [batch, 1]
    (dot / norm).neg().add_scalar(1.0).mean()
}

/// Builds a batch (images preprocessed by `prep`, or features) and its labels; with `augment`,
/// each 32x32 image is randomly cropped from a 4-pixel zero-padded copy and flipped
/// horizontally with probability 1/2 before preprocessing, and a frozen encoder's features are,
/// with probability 1/2, those of one of the cached views, drawn uniformly (where views were
/// computed; otherwise they are used as they are).
pub fn batch(
    images: Images<'_>,
    ids: &[usize],
    augment: Option<&mut StdRng>,
    prep: Preprocess,
    device: &Device,
) -> Result<(Batch, Tensor<1, Int>), ModelError> {
    let labels: Vec<i64> = ids.iter().map(|&i| i64::from(images.labels[i])).collect();
    let n = ids.len();
    let labels = Tensor::from_data(TensorData::new(labels, [n]), device);
    let pixels_all = match images.inputs {
        Inputs::Pixels(p) => p,
        Inputs::Features { values, dim, views } => {
            let f = gather_features(values, dim, views, ids, augment);
            return Ok((
                Batch::Features(Tensor::from_data(TensorData::new(f, [n, dim]), device)),
                labels,
            ));
        }
    };
    let side = prep.side();
    let mut pixels = Vec::with_capacity(n * 3 * side * side);
    let mut aug = augment;
    let mut scratch = vec![0u8; IMAGE_BYTES];
    for &i in ids {
        let img = &pixels_all[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES];
        match aug.as_deref_mut() {
            Some(rng) => {
                let (dx, dy, flip) = random_shift(rng);
                shift_flip(img, dx, dy, flip, &mut scratch);
                prep.append(&scratch, &mut pixels)?;
            }
            None => prep.append(img, &mut pixels)?,
        }
    }
    Ok((Batch::Images(prep.tensor(pixels, n, device)), labels))
}

/// The features of images `ids` (`[ids.len(), dim]`): with `augment`, each is, with probability
/// 1/2, that of one of the cached `views`, drawn uniformly (see [`batch`]).
fn gather_features(
    values: &[f32],
    dim: usize,
    views: &[Vec<f32>],
    ids: &[usize],
    augment: Option<&mut StdRng>,
) -> Vec<f32> {
    use rand::RngExt;
    let mut f = Vec::with_capacity(ids.len() * dim);
    let mut aug = augment.filter(|_| !views.is_empty());
    for &i in ids {
        let view = aug.as_deref_mut().and_then(|rng| {
            // One view draws no second number, as before there were several.
            rng.random_bool(0.5).then(|| match views.len() {
                1 => 0,
                k => rng.random_range(0..k),
            })
        });
        let source = view.map_or(values, |v| &views[v]);
        f.extend_from_slice(&source[i * dim..(i + 1) * dim]);
    }
    f
}

/// The augmentation's draw for one image: a shift `(dx, dy)` in `[-4, 4]^2` and whether to
/// mirror it (probability 1/2).
pub fn random_shift(rng: &mut StdRng) -> (i32, i32, bool) {
    use rand::RngExt;
    let (dx, dy) = (rng.random_range(-4i32..=4), rng.random_range(-4i32..=4));
    (dx, dy, rng.random_bool(0.5))
}

/// Whole `[3, 32, 32]` images (one after the other), each mirrored left to right.
pub fn mirrored(pixels: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; pixels.len()];
    for (img, dst) in pixels
        .chunks_exact(IMAGE_BYTES)
        .zip(out.chunks_exact_mut(IMAGE_BYTES))
    {
        shift_flip(img, 0, 0, true, dst);
    }
    out
}

/// Translates a `[3, 32, 32]` image by `(dx, dy)` with zero fill, optionally mirrored: the same
/// as cropping a 32x32 window from the 4-pixel zero-padded image.
pub fn shift_flip(img: &[u8], dx: i32, dy: i32, flip: bool, out: &mut [u8]) {
    for c in 0..3 {
        for y in 0..32i32 {
            for x in 0..32i32 {
                let sx = if flip { 31 - x } else { x } + dx;
                let sy = y + dy;
                let v = if (0..32).contains(&sx) && (0..32).contains(&sy) {
                    img[c * 1024 + (sy * 32 + sx) as usize]
                } else {
                    0
                };
                out[c * 1024 + (y * 32 + x) as usize] = v;
            }
        }
    }
}

/// Images per forward pass when a network only infers: 500 features or 32x32 images, 50
/// images larger than 32x32 (an upsampled batch of 500 would take gigabytes).
pub fn inference_batch(images: Images<'_>, prep: Preprocess) -> usize {
    match images.inputs {
        Inputs::Pixels(_) if prep.side() > 32 => 50,
        _ => 500,
    }
}

/// Nearest-class accuracy (cosine to `C`) of a network on `images`, in batches of
/// [`inference_batch`].
pub fn accuracy(
    net: &HashNet,
    images: Images<'_>,
    prep: Preprocess,
    class_embedding: &[f32],
) -> Result<f64, TrainError> {
    if images.is_empty() {
        return Ok(0.0);
    }
    let device = net.hash.weight.val().device();
    let d = net.embed.weight.dims()[1];
    let classes = class_embedding.len() / d;
    let c = Tensor::<2>::from_data(
        TensorData::new(class_embedding.to_vec(), [classes, d]),
        &device,
    );
    let ids: Vec<usize> = (0..images.len()).collect();
    let mut correct = 0i64;
    for chunk in ids.chunks(inference_batch(images, prep)) {
        let (x, labels) = batch(images, chunk, None, prep, &device)?;
        let out = net.forward(x)?;
        let predicted = out
            .embedding
            .matmul(c.clone().transpose())
            .argmax(1)
            .reshape([chunk.len()]);
        correct += predicted.equal(labels).int().sum().into_scalar::<i64>();
    }
    Ok(correct as f64 / images.len() as f64)
}

fn progress_bar(
    show: bool,
    len: usize,
    epoch: usize,
    epochs: usize,
) -> Option<indicatif::ProgressBar> {
    show.then(|| {
        crate::progress::bar(
            len as u64,
            &format!(
                "train epoch {epoch}/{epochs} [{{bar:30}}] {{pos}}/{{len}} batches {{msg}} eta {{eta}}"
            ),
        )
    })
}

/// `train_log.csv` text.
pub fn log_csv(log: &[EpochLog]) -> String {
    let mut out =
        String::from("epoch,loss,train_accuracy,test_accuracy,lr,seconds,images_per_second\n");
    for e in log {
        out.push_str(&format!(
            "{},{:.6},{:.6},{:.6},{},{:.3},{:.1}\n",
            e.epoch,
            e.loss,
            e.train_accuracy,
            e.test_accuracy,
            e.lr,
            e.seconds,
            e.images_per_second
        ));
    }
    out
}

fn latest(ckpt_dir: &Path) -> Result<Option<CheckpointState>, TrainError> {
    let path = ckpt_dir.join("latest.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TrainError::Checkpoint {
            path,
            message: format!("unreadable: {e}"),
        })
}

fn save_checkpoint(
    ckpt_dir: &Path,
    epoch: usize,
    log: &[EpochLog],
    write: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let name = format!("epoch-{epoch:03}");
    let dir = ckpt_dir.join(&name);
    write(&dir)?;
    let state = CheckpointState {
        epoch,
        dir: name.clone(),
        log: log.to_vec(),
    };
    store::write_json_atomic(&dir.join("state.json"), &state)?;
    // The commit point: only now does the new checkpoint become the one to resume from.
    store::write_json_atomic(&ckpt_dir.join("latest.json"), &state)?;
    // Older checkpoints are no longer needed.
    if let Ok(entries) = std::fs::read_dir(ckpt_dir) {
        for entry in entries.flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            if n.starts_with("epoch-") && n != name {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(())
}

/// The trained network's weights in a train folder (or an epoch checkpoint's folder):
/// `model.bpk`.
pub fn checkpoint_in(dir: &Path) -> std::path::PathBuf {
    dir.join("model.bpk")
}

/// Saves the trained weights to `path` (burnpack, atomically).
pub fn save_model(net: &HashNet, path: &Path) -> Result<(), TrainError> {
    let mut pack = BurnpackStore::from_bytes(None);
    let fail = |e: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("cannot serialise the model: {e}"),
    };
    net.save_into(&mut pack).map_err(|e| fail(e.to_string()))?;
    let bytes = pack.get_bytes().map_err(|e| fail(e.to_string()))?;
    Ok(store::write_bytes_atomic(path, &bytes)?)
}

/// Loads weights saved by [`save_model`] into a network built for `cfg`, on the inference device
/// (`pretrained` as for [`HashNet::new`]; its values are overwritten).
pub fn load_trained(
    cfg: &Config,
    classes: usize,
    pretrained: Option<&Path>,
    path: &Path,
) -> Result<HashNet, TrainError> {
    let device = model::device(cfg.backend)?;
    let net = HashNet::new(&cfg.model, classes, pretrained, &device)?;
    load_model(net, path)
}

fn load_model(net: HashNet, path: &Path) -> Result<HashNet, TrainError> {
    let bytes = store::read(path)?;
    let mut net = net;
    let mut pack = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)));
    net.load_from(&mut pack)
        .map_err(|e| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("cannot load: {e}"),
        })?;
    Ok(net)
}

fn load_optimizer(optim: ModuleOptimizer, path: &Path) -> Result<ModuleOptimizer, TrainError> {
    let bytes = store::read(path)?;
    let record =
        burn::optim::OptimizerRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| {
            TrainError::Checkpoint {
                path: path.to_path_buf(),
                message: format!("cannot load: {e}"),
            }
        })?;
    Ok(optim.load_record(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real inputs for the decoder's tests: EfficientNet-Lite0 features (64 px) of the first
    /// 256 training images, their labels and the real class embedding `[100, 100]`.
    struct DecoderFixture {
        features: Vec<f32>,
        labels: Vec<u8>,
        c: Vec<f32>,
    }

    fn decoder_fixture() -> &'static DecoderFixture {
        static F: std::sync::OnceLock<DecoderFixture> = std::sync::OnceLock::new();
        F.get_or_init(|| {
            let root = crate::data::DataRoot::resolve(None, None).expect("real data root");
            let train = crate::data::cifar::Cifar100::load(&root, false)
                .expect("CIFAR-100")
                .train;
            let n = 256;
            let lite = crate::model::efficientnet::Lite::Lite0;
            let encoder = crate::model::efficientnet::EfficientNetLite::load(
                &root.path.join(lite.weights_file()),
                lite,
                &Device::flex(),
            )
            .expect("weights");
            let features =
                crate::model::frozen::FrozenLite::compile(&encoder, crate::config::Precision::Fp32)
                    .unwrap()
                    .features(&train.pixels[..n * IMAGE_BYTES], 64)
                    .unwrap();
            DecoderFixture {
                features,
                labels: train.fine[..n].to_vec(),
                c: crate::artifacts::class_embedding_f32(&root, 100).unwrap(),
            }
        })
    }

    impl DecoderFixture {
        fn images(&self) -> Images<'_> {
            Images {
                inputs: Inputs::Features {
                    values: &self.features,
                    dim: crate::model::efficientnet::FEATURE_DIM,
                    views: &[],
                },
                labels: &self.labels,
            }
        }
    }

    /// burn's CPU backend seeds one process-wide generator: tests that build networks take
    /// turns.
    static SEEDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The default config with the decoder narrowed to `T = 64` (quick tests).
    fn narrow_default() -> Config {
        let mut cfg = crate::config::Loaded::embedded_default().unwrap().config;
        cfg.model.trunk = 64;
        cfg
    }

    #[test]
    fn fused_adam_trains_the_decoder_exactly_as_burns_adam() {
        // Real inputs (decoder_fixture); the default's wide decoder (narrowed to T = 64), its
        // loss (cosine + hash-branch cosine + 0.1 CE), 6 steps of 64 with a weight decay, then
        // the same from the same initial weights with the other optimiser. burn's Adam shares
        // no code with FusedAdam.
        use burn::optim::{AdamConfig, decay::WeightDecayConfig};
        let _turn = SEEDING.lock().unwrap_or_else(|e| e.into_inner());
        let fixture = decoder_fixture();
        let images = fixture.images();
        let n = images.len();
        let cfg = narrow_default();
        let c = fixture.c.clone();
        let device = Device::flex().autodiff();
        let c = Tensor::<2>::from_data(TensorData::new(c, [100, 100]), &device);
        let cross_entropy = burn::nn::loss::CrossEntropyLossConfig::new().init(&device);
        device.seed(11);
        let initial = HashNet::new(&cfg.model, 100, None, &device).unwrap();
        let trained = |mut optim: ModuleOptimizer| -> Vec<f32> {
            let mut net = initial.clone();
            let ids: Vec<usize> = (0..n).collect();
            for (step, chunk) in ids.chunks(64).cycle().take(6).enumerate() {
                let (x, labels) = batch(images, chunk, None, Preprocess::Cifar, &device).unwrap();
                let loss = training_loss(net.forward(x).unwrap(), &c, labels, &cross_entropy, &cfg);
                let grads = GradientsParams::from_grads(loss.backward(), &net);
                net = optim.step(learning_rate(&cfg, step, 6), net, grads);
            }
            let mut values = Vec::new();
            for p in [
                net.trunk.as_ref().unwrap().linear.weight.val().into_data(),
                net.trunk.as_ref().unwrap().norm.gamma.val().into_data(),
                net.hash.weight.val().into_data(),
                net.embed.bias.as_ref().unwrap().val().into_data(),
                net.classify.as_ref().unwrap().weight.val().into_data(),
            ] {
                values.extend(p.iter::<f32>());
            }
            values
        };
        let burns = trained(
            AdamConfig::new()
                .with_weight_decay(Some(WeightDecayConfig::new(1e-4)))
                .init(),
        );
        let fused = trained(ModuleOptimizer::from(FusedAdam {
            weight_decay: Some(1e-4),
            ..FusedAdam::default()
        }));
        let before = {
            let t = initial
                .trunk
                .as_ref()
                .unwrap()
                .linear
                .weight
                .val()
                .into_data();
            t.iter::<f32>().collect::<Vec<_>>()
        };
        assert_ne!(
            burns[..before.len()],
            before[..],
            "training changed nothing"
        );
        let differing = burns.iter().zip(&fused).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{differing} of {} values differ", burns.len());
    }

    /// `|a - b| <= rel * max|b| + 1e-6` everywhere, or the worst offender.
    fn close(name: &str, a: &[f32], b: &[f32], rel: f32) {
        assert_eq!(a.len(), b.len(), "{name}: lengths differ");
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let bound = rel * scale + 1e-6;
        let worst = crate::model::max_abs_diff(a, b);
        assert!(
            worst <= bound,
            "{name}: differs by {worst} (bound {bound}, max|b| {scale})"
        );
    }

    #[test]
    fn fused_decoder_has_burns_loss_gradients_and_running_statistics() {
        // Oracle: burn's autodiff of HashNet::forward and training_loss (no code shared with
        // train::decoder) on real features, from the same initial weights, one batch of 64.
        let _turn = SEEDING.lock().unwrap_or_else(|e| e.into_inner());
        let fixture = decoder_fixture();
        let cfg = narrow_default();
        let device = Device::flex().autodiff();
        device.seed(11);
        let net = HashNet::new(&cfg.model, 100, None, &device).unwrap();
        let (parts, running, widths) = decoder_parts(&net.valid()).unwrap();
        let ids: Vec<usize> = (0..64).collect();
        let (x, labels) = batch(fixture.images(), &ids, None, Preprocess::Cifar, &device).unwrap();
        let c = Tensor::<2>::from_data(TensorData::new(fixture.c.clone(), [100, 100]), &device);
        let ce = burn::nn::loss::CrossEntropyLossConfig::new().init(&device);
        let loss = training_loss(net.forward(x).unwrap(), &c, labels, &ce, &cfg);
        let burn_loss: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let vector = |p: &burn::module::Param<Tensor<1>>| -> Vec<f32> {
            let g = grads.get::<1>(p.id).expect("a gradient");
            g.into_data().iter::<f32>().collect()
        };
        let matrix = |p: &burn::module::Param<Tensor<2>>| -> Vec<f32> {
            let g = grads.get::<2>(p.id).expect("a gradient");
            g.into_data().iter::<f32>().collect()
        };
        let bias = |l: &burn::nn::Linear| vector(l.bias.as_ref().unwrap());

        let mut trainer =
            decoder::Trainer::new(widths, &parts, running, 0.1, FusedAdam::default(), None)
                .unwrap();
        let x = gather_features(&fixture.features, widths.features, &[], &ids, None);
        let out = trainer.step(&x, &fixture.labels[..64], &fixture.c, 0.0);
        let fused = trainer.gradients();
        assert!(
            (out.loss - burn_loss).abs() <= 1e-5 * burn_loss.abs(),
            "loss {} against burn's {burn_loss}",
            out.loss
        );

        let trunk = net.trunk.as_ref().unwrap();
        close(
            "trunk weight",
            &fused.w1,
            &matrix(&trunk.linear.weight),
            1e-3,
        );
        close("trunk bias", &fused.b1, &bias(&trunk.linear), 1e-3);
        close("trunk gamma", &fused.g1, &vector(&trunk.norm.gamma), 1e-3);
        close("trunk beta", &fused.be1, &vector(&trunk.norm.beta), 1e-3);
        // The heads side by side in the fused layout, taken apart here column by column.
        let (t, n) = (widths.trunk, widths.heads());
        let mut first = 0;
        for (name, layer) in [
            ("hash", &net.hash),
            ("embed", &net.embed),
            ("classify", net.classify.as_ref().unwrap()),
        ] {
            let w = layer.weight.dims()[1];
            let columns: Vec<f32> = (0..t)
                .flat_map(|r| (0..w).map(move |j| r * n + first + j))
                .map(|i| fused.heads[i])
                .collect();
            close(name, &columns, &matrix(&layer.weight), 1e-3);
            close(
                name,
                &fused.heads_bias[first..first + w],
                &bias(layer),
                1e-3,
            );
            first += w;
        }
        assert_eq!(first, n);
        close("hash gamma", &fused.g2, &vector(&net.hash_norm.gamma), 1e-3);
        close("hash beta", &fused.be2, &vector(&net.hash_norm.beta), 1e-3);
        let hash_embed = net.hash_embed.as_ref().unwrap();
        close(
            "hash-branch weight",
            &fused.w4,
            &matrix(&hash_embed.weight),
            1e-3,
        );
        close("hash-branch bias", &fused.b4, &bias(hash_embed), 1e-3);

        // burn's forward pass moved its running statistics; so did the fused step.
        let stats = |t: Tensor<1>| t.into_data().iter::<f32>().collect::<Vec<_>>();
        let r = trainer.running();
        close(
            "trunk mean",
            &r.mean1,
            &stats(trunk.norm.running_mean.value_sync()),
            1e-5,
        );
        close(
            "trunk var",
            &r.var1,
            &stats(trunk.norm.running_var.value_sync()),
            1e-5,
        );
        close(
            "hash mean",
            &r.mean2,
            &stats(net.hash_norm.running_mean.value_sync()),
            1e-5,
        );
        close(
            "hash var",
            &r.var2,
            &stats(net.hash_norm.running_var.value_sync()),
            1e-5,
        );

        // Then eight steps of training from the same weights, with burn's autodiff and Adam on
        // one side: the losses stay together.
        let device = Device::flex().autodiff();
        device.seed(11);
        let mut net = HashNet::new(&cfg.model, 100, None, &device).unwrap();
        let (parts, running, widths) = decoder_parts(&net.valid()).unwrap();
        let mut trainer =
            decoder::Trainer::new(widths, &parts, running, 0.1, FusedAdam::default(), None)
                .unwrap();
        let mut optim = ModuleOptimizer::from(FusedAdam::default());
        let all: Vec<usize> = (0..fixture.labels.len()).collect();
        for (step, ids) in all.chunks(64).cycle().take(8).enumerate() {
            let lr = 0.003 * (1.0 - step as f64 / 8.0);
            let (x, labels) =
                batch(fixture.images(), ids, None, Preprocess::Cifar, &device).unwrap();
            let loss = training_loss(net.forward(x).unwrap(), &c, labels, &ce, &cfg);
            let burn_loss: f32 = loss.clone().into_scalar();
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(lr, net, grads);
            let x = gather_features(&fixture.features, widths.features, &[], ids, None);
            let labels: Vec<u8> = ids.iter().map(|&i| fixture.labels[i]).collect();
            let fused = trainer.step(&x, &labels, &fixture.c, lr).loss;
            assert!(
                (fused - burn_loss).abs() <= 1e-4 * burn_loss,
                "step {step}: loss {fused} against burn's {burn_loss}"
            );
        }
    }

    #[test]
    fn fused_engine_starts_from_burns_initial_network() {
        // burn draws parameters lazily: one network drawn by burn's own first forward pass
        // (real features), one by draw_as_burns_forward_pass, one by the first forward pass of
        // burn's engine; every decoder value the same.
        let _turn = SEEDING.lock().unwrap_or_else(|e| e.into_inner());
        let fixture = decoder_fixture();
        let cfg = narrow_default();
        let device = Device::flex().autodiff();
        let fresh = || {
            device.seed(7);
            HashNet::new(&cfg.model, 100, None, &device).unwrap()
        };
        let by_forward = fresh();
        let ids: Vec<usize> = (0..8).collect();
        let (x, _) = batch(fixture.images(), &ids, None, Preprocess::Cifar, &device).unwrap();
        by_forward.forward(x).unwrap();
        let by_order = fresh();
        draw_as_burns_forward_pass(&by_order);
        let (a, _, _) = decoder_parts(&by_forward.valid()).unwrap();
        let (b, _, _) = decoder_parts(&by_order.valid()).unwrap();
        assert!(a == b, "another initial network");
        // burn's engine reads nothing before its first step either.
        let Learner::Burn { net: Some(net), .. } =
            Learner::burn(fresh(), &device, &cfg, &fixture.c, None).unwrap()
        else {
            panic!("burn's engine")
        };
        let (x, _) = batch(fixture.images(), &ids, None, Preprocess::Cifar, &device).unwrap();
        net.forward(x).unwrap();
        let (d, _, _) = decoder_parts(&net.valid()).unwrap();
        assert!(a == d, "burn's engine trains another initial network");
        // And the order matters: declaration order draws another one.
        let by_declaration = fresh();
        let (c, _, _) = decoder_parts(&by_declaration.valid()).unwrap();
        assert!(a != c, "the draw order made no difference");
    }

    #[test]
    fn fused_engine_leaves_burns_engine_as_burns_own_loop() {
        // The train stage with burn's engine against burn's autodiff loop written out here:
        // the same shuffled batches on the autodiff device, four steps of Adam; the networks
        // bit for bit equal.
        let _turn = SEEDING.lock().unwrap_or_else(|e| e.into_inner());
        let fixture = decoder_fixture();
        let mut cfg = narrow_default();
        cfg.train.engine = Engine::Burn;
        cfg.train.epochs = 1;
        cfg.train.batch_size = 64;
        cfg.train.augment = false;
        let dir = tempfile::tempdir().unwrap();
        let (staged, _) = train(&TrainJob {
            config: &cfg,
            class_embedding: &fixture.c,
            train: fixture.images(),
            eval: fixture.images(),
            pretrained: None,
            dir: dir.path(),
            progress: false,
        })
        .unwrap();

        let device = Device::flex().autodiff();
        device.seed(cfg.seed);
        let mut net = HashNet::new(&cfg.model, 100, None, &device).unwrap();
        let mut optim = optimizer(&cfg);
        let c = Tensor::<2>::from_data(TensorData::new(fixture.c.clone(), [100, 100]), &device);
        let ce = burn::nn::loss::CrossEntropyLossConfig::new().init(&device);
        let mut order: Vec<usize> = (0..fixture.labels.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(cfg.seed));
        for (step, ids) in order.chunks(64).enumerate() {
            let (x, labels) =
                batch(fixture.images(), ids, None, Preprocess::Cifar, &device).unwrap();
            let loss = training_loss(net.forward(x).unwrap(), &c, labels, &ce, &cfg);
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(learning_rate(&cfg, step, 4), net, grads);
        }
        let (a, _, _) = decoder_parts(&staged).unwrap();
        let (b, _, _) = decoder_parts(&net.valid()).unwrap();
        assert!(
            a == b,
            "burn's engine trained another network than burn's loop"
        );
    }

    #[test]
    fn fused_engine_trains_and_resumes_exactly() {
        // Real features (decoder_fixture), two epochs of four batches, then the same stopped
        // after one epoch and resumed from its checkpoint.
        let _turn = SEEDING.lock().unwrap_or_else(|e| e.into_inner());
        let fixture = decoder_fixture();
        let config = |epochs: usize| {
            let mut cfg = narrow_default();
            cfg.train.engine = Engine::Fused;
            cfg.train.epochs = epochs;
            cfg.train.batch_size = 64;
            // The rate of a step does not depend on the epochs asked for.
            cfg.train.schedule = Schedule::Constant;
            crate::config::validate(&cfg).expect("a valid config");
            cfg
        };
        let run = |cfg: &Config, dir: &Path| {
            train(&TrainJob {
                config: cfg,
                class_embedding: &fixture.c,
                train: fixture.images(),
                eval: fixture.images(),
                pretrained: None,
                dir,
                progress: false,
            })
            .unwrap()
        };
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let (fused_net, fused) = run(&config(2), dirs[0].path());
        assert!(fused[1].loss < fused[0].loss, "{fused:?}");
        assert!(fused[1].test_accuracy > 0.1, "{fused:?}");
        run(&config(1), dirs[1].path());
        let (resumed_net, resumed) = run(&config(2), dirs[1].path());
        let losses = |log: &[EpochLog]| log.iter().map(|e| e.loss).collect::<Vec<_>>();
        assert_eq!(
            losses(&resumed),
            losses(&fused),
            "the resumed epoch is the same"
        );
        let (a, _, _) = decoder_parts(&fused_net).unwrap();
        let (b, _, _) = decoder_parts(&resumed_net).unwrap();
        assert!(
            a == b,
            "the resumed network differs from the uninterrupted one"
        );
    }

    #[test]
    fn fused_engine_refuses_networks_it_does_not_train() {
        let mut cfg = narrow_default();
        cfg.model.precision = crate::config::Precision::Fp32;
        cfg.train.engine = Engine::Fused;
        crate::config::validate(&cfg).expect("the default's decoder");
        for (change, field) in [
            (
                (|c: &mut Config| c.model.decoder = crate::config::Decoder::Paper)
                    as fn(&mut Config),
                "model.decoder: wide",
            ),
            (|c: &mut Config| c.model.dropout = 0.5, "model.dropout: 0"),
            (
                |c: &mut Config| c.train.optimizer = Optimizer::Sgd,
                "train.optimizer: adam",
            ),
            (|c: &mut Config| c.model.freeze = false, "freeze: true"),
        ] {
            let mut bad = cfg.clone();
            change(&mut bad);
            let (at, message) = crate::config::validate(&bad).unwrap_err();
            assert_eq!(at, "train.engine");
            assert!(message.contains(field), "{message}");
        }
    }

    #[test]
    fn augmented_feature_batches_draw_a_view_half_the_time() {
        // Hand-made feature rows for a pure-function unit test: row i of the plain features is
        // all i, of view v all -i - 1000 (v + 1), so each batch row says where it came from.
        let (n, dim) = (256usize, 3usize);
        let plain: Vec<f32> = (0..n).flat_map(|i| [i as f32; 3]).collect();
        let view =
            |v: usize| -> Vec<f32> { plain.iter().map(|x| -x - 1000.0 * (v + 1) as f32).collect() };
        let labels = vec![0u8; n];
        let ids: Vec<usize> = (0..n).collect();
        let device = Device::flex();
        let rows = |views: &[Vec<f32>], augment: Option<&mut StdRng>| -> Vec<f32> {
            let images = Images {
                inputs: Inputs::Features {
                    values: &plain,
                    dim,
                    views,
                },
                labels: &labels,
            };
            let (batch, _) = batch(images, &ids, augment, Preprocess::Cifar, &device).unwrap();
            let Batch::Features(x) = batch else {
                panic!("features in, features out")
            };
            x.into_data().iter::<f32>().step_by(dim).collect()
        };
        let in_order: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let views = [view(0), view(1), view(2)];
        // Without augmentation, or without views: the plain rows, in order.
        assert_eq!(rows(&views, None), in_order);
        assert_eq!(rows(&[], Some(&mut StdRng::seed_from_u64(9))), in_order);
        // With them: each row is image i, as it is or from one view; each occurs.
        for k in [1, 3] {
            let got = rows(&views[..k], Some(&mut StdRng::seed_from_u64(9)));
            let mut counts = vec![0usize; k + 1];
            for (i, &x) in got.iter().enumerate() {
                let source = (0..=k)
                    .find(|&s| match s {
                        0 => x == i as f32,
                        v => x == -(i as f32) - 1000.0 * v as f32,
                    })
                    .unwrap_or_else(|| panic!("row {i}: {x} is from no view"));
                counts[source] += 1;
            }
            // Half the rows as they are, the rest spread over the views (binomial bounds far
            // past four standard deviations).
            assert!((96..=160).contains(&counts[0]), "{k} views: {counts:?}");
            for &c in &counts[1..] {
                assert!(c >= 128 / k - 40, "{k} views: {counts:?}");
            }
        }
    }

    #[test]
    fn mirrored_images_reverse_every_row_of_every_image() {
        // hand-made pixels for a pure-function unit test: two images, value = x + image.
        let pixels: Vec<u8> = (0..2 * IMAGE_BYTES)
            .map(|i| ((i % 32) + i / IMAGE_BYTES) as u8)
            .collect();
        let m = mirrored(&pixels);
        for (i, (&a, &b)) in pixels.iter().zip(&m).enumerate() {
            let x = i % 32;
            assert_eq!(b, pixels[i - x + (31 - x)], "pixel {i}");
            assert_eq!(a + b, 31 + 2 * (i / IMAGE_BYTES) as u8);
        }
        assert_eq!(mirrored(&m), pixels);
    }

    #[test]
    fn shift_flip_matches_padded_crop() {
        // hand-made input for a pure-function unit test: pixel value = x + 32 * (y % 4) per plane.
        let img: Vec<u8> = (0..IMAGE_BYTES)
            .map(|i| ((i % 32) + 32 * ((i / 32) % 4)) as u8)
            .collect();
        let mut out = vec![0u8; IMAGE_BYTES];
        shift_flip(&img, 0, 0, false, &mut out);
        assert_eq!(out, img);
        shift_flip(&img, 2, 0, false, &mut out);
        assert_eq!(out[0], img[2]);
        assert_eq!(out[31], 0, "shifted-in column is zero padding");
        shift_flip(&img, 0, 0, true, &mut out);
        assert_eq!(out[0], img[31]);
    }

    #[test]
    fn schedules() {
        let mut cfg = crate::config::Loaded::embedded_default().unwrap().config;
        cfg.train.lr = 1.0;
        cfg.train.schedule = Schedule::Cosine;
        assert_eq!(learning_rate(&cfg, 0, 100), 1.0);
        assert!((learning_rate(&cfg, 50, 100) - 0.5).abs() < 1e-12);
        cfg.train.schedule = Schedule::Step;
        assert_eq!(learning_rate(&cfg, 60, 100), 0.1);
        assert_eq!(learning_rate(&cfg, 80, 100), 0.01);
    }
}
