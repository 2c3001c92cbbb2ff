//! Training on a small prefix of the real CIFAR-100 train split: determinism, resume after an
//! interrupt, divergence and a failed checkpoint write.

use crate::common::data_root;
use harness::config::{Config, Loaded};
use harness::data::cifar::{Cifar100, IMAGE_BYTES};
use harness::model::Preprocess;
use harness::semantics::{SimilarityMatrix, class_embedding};
use harness::train::{self, Images, Inputs, TrainError, TrainJob};
use std::path::Path;
use std::sync::OnceLock;

struct Fixture {
    cifar: Cifar100,
    c: Vec<f32>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = data_root();
        let cifar = Cifar100::load(&root, false).unwrap();
        let h = harness::data::hierarchy::Hierarchy::load(&root.hierarchy_dir(), &cifar.names.fine)
            .unwrap();
        let s = SimilarityMatrix::from_hierarchy(&h).unwrap();
        let c = class_embedding(&s, 100).unwrap().to_f32();
        Fixture { cifar, c }
    })
}

fn config(epochs: usize, lr: f64) -> Config {
    let text = format!(
        "name: t\nseed: 11\nmodel: {{h: 32, d: 100}}\ntrain: {{optimizer: sgd, lr: {lr}, momentum: 0.9, batch_size: 32, epochs: {epochs}, augment: true}}\n"
    );
    Loaded::from_text("test", text).unwrap().config
}

/// burn's CPU backend seeds one process-wide generator, so trainings in parallel test threads
/// would interleave their random draws; the tests train one at a time.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(
    cfg: &Config,
    dir: &Path,
) -> Result<(harness::model::HashNet, Vec<train::EpochLog>), TrainError> {
    run_on(cfg, dir, 256, 200, None)
}

/// Trains on the first `n_train` real training images, evaluating on the first `n_eval` test
/// images.
fn run_on(
    cfg: &Config,
    dir: &Path,
    n_train: usize,
    n_eval: usize,
    pretrained: Option<&Path>,
) -> Result<(harness::model::HashNet, Vec<train::EpochLog>), TrainError> {
    let f = fixture();
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let job = TrainJob {
        config: cfg,
        class_embedding: &f.c,
        train: Images {
            inputs: Inputs::Pixels(&f.cifar.train.pixels[..n_train * IMAGE_BYTES]),
            labels: &f.cifar.train.fine[..n_train],
        },
        eval: Images {
            inputs: Inputs::Pixels(&f.cifar.test.pixels[..n_eval * IMAGE_BYTES]),
            labels: &f.cifar.test.fine[..n_eval],
        },
        pretrained,
        dir,
        progress: false,
    };
    train::train(&job)
}

fn embeddings(net: &harness::model::HashNet, cfg: &Config) -> Vec<f32> {
    let f = fixture();
    let images = Images {
        inputs: Inputs::Pixels(&f.cifar.test.pixels[..64 * IMAGE_BYTES]),
        labels: &f.cifar.test.fine[..64],
    };
    let prep = Preprocess::of(&cfg.model);
    harness::embed::embed(net, images, prep, &f.c, 32, false)
        .unwrap()
        .embeddings
}

/// The values of one parameter tensor, found by its path in the module (e.g.
/// `encoder.EfficientNet.stem.conv.weight`), on any device.
fn param_values(net: &harness::model::HashNet, path: &str) -> Vec<f32> {
    use burn::store::ModuleSnapshot;
    let tensor = net
        .collect(None, None, false)
        .into_iter()
        .find(|t| t.name == path)
        .unwrap_or_else(|| panic!("no parameter `{path}`"));
    burn::store::bridge::to_data(&tensor)
        .unwrap()
        .iter::<f32>()
        .collect()
}

#[test]
fn training_is_deterministic_and_resumes_exactly() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (net_a, log_a) = run(&config(2, 0.01), a.path()).unwrap();
    assert_eq!(log_a.len(), 2);
    assert!(
        log_a
            .iter()
            .all(|e| e.loss.is_finite() && e.loss > 0.0 && e.loss < 2.0)
    );
    // Interrupted after one epoch, then resumed to two.
    run(&config(1, 0.01), b.path()).unwrap();
    let (net_b, log_b) = run(&config(2, 0.01), b.path()).unwrap();
    assert_eq!(log_b.len(), 2);
    assert_eq!(
        log_a[1].loss, log_b[1].loss,
        "the resumed epoch sees the same batches"
    );
    let cfg = config(2, 0.01);
    assert_eq!(
        embeddings(&net_a, &cfg),
        embeddings(&net_b, &cfg),
        "bit-identical weights"
    );
    let csv = std::fs::read_to_string(b.path().join("train_log.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3);
}

#[test]
fn divergence_stops_with_epoch_and_batch_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    run(&config(1, 0.01), dir.path()).unwrap();
    let err = run(&config(2, 1e38), dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, TrainError::NonFiniteLoss { epoch: 2, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("epoch 2, batch") && msg.contains("last good checkpoint"),
        "{msg}"
    );
    let latest = std::fs::read_to_string(dir.path().join("checkpoints/latest.json")).unwrap();
    assert!(latest.contains("\"epoch\": 1"), "{latest}");
    assert!(dir.path().join("checkpoints/epoch-001/model.bpk").exists());
}

#[test]
fn failed_checkpoint_write_keeps_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    run(&config(1, 0.01), dir.path()).unwrap();
    // A regular file where the next checkpoint folder goes: writing epoch 2 fails.
    std::fs::write(dir.path().join("checkpoints/epoch-002"), b"in the way").unwrap();
    let err = run(&config(2, 0.01), dir.path()).unwrap_err();
    assert!(err.to_string().contains("epoch-002"), "{err}");
    let latest = std::fs::read_to_string(dir.path().join("checkpoints/latest.json")).unwrap();
    assert!(latest.contains("\"epoch\": 1"), "{latest}");
    // And training resumes from it once the obstacle is gone.
    std::fs::remove_file(dir.path().join("checkpoints/epoch-002")).unwrap();
    let (_, log) = run(&config(2, 0.01), dir.path()).unwrap();
    assert_eq!(log.len(), 2);
}

#[test]
fn fine_tuning_efficientnet_updates_the_pretrained_encoder_and_checkpoints_it() {
    // freeze: false at 32 px (the smallest sensible input) so one epoch over 32 real images
    // stays quick; the encoder starts from the shipped ImageNet weights.
    let text = "name: t\nseed: 5\nmodel: {encoder: efficientnet_lite0, input_size: 32, freeze: false, h: 16, d: 100}\n\
                train: {optimizer: adam, lr: 0.001, batch_size: 8, epochs: 1}\n";
    let cfg = Loaded::from_text("test", text.to_string()).unwrap().config;
    let weights = data_root()
        .path
        .join("pretrained/efficientnet_lite0.safetensors");
    let dir = tempfile::tempdir().unwrap();
    let (net, log) = run_on(&cfg, dir.path(), 32, 16, Some(&weights)).unwrap();
    assert!(log[0].loss.is_finite() && log[0].loss > 0.0, "{log:?}");

    // Building networks draws from burn's process-wide generator too.
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let stem = "encoder.EfficientNet.stem.conv.weight";
    let device = burn::tensor::Device::flex();
    let pretrained =
        harness::model::HashNet::new(&cfg.model, 100, Some(&weights), &device).unwrap();
    let (before, after) = (param_values(&pretrained, stem), param_values(&net, stem));
    assert_eq!(before.len(), 32 * 3 * 3 * 3);
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(
        changed > before.len() / 2,
        "only {changed} stem weights moved"
    );

    // The saved model holds the fine-tuned encoder, not the pretrained one.
    let path = dir.path().join("model.bpk");
    train::save_model(&net, &path).unwrap();
    let loaded = train::load_trained(&cfg, 100, Some(&weights), &path).unwrap();
    assert_eq!(param_values(&loaded, stem), after);
    assert_eq!(embeddings(&loaded, &cfg), embeddings(&net, &cfg));
}

#[test]
fn alexnet_trains_end_to_end_from_scratch() {
    // One SGD step of the report's network at its smallest input side (63 px) on 4 real
    // images: the loss is finite and the first convolution's weights move.
    use burn::optim::{GradientsParams, SgdConfig};
    let text = "name: t\nseed: 3\nmodel: {encoder: alexnet, input_size: 63, freeze: false, h: 48, d: 100}\n";
    let cfg = Loaded::from_text("test", text.to_string()).unwrap().config;
    let f = fixture();
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let device = burn::tensor::Device::flex().autodiff();
    device.seed(cfg.seed);
    let net = harness::model::HashNet::new(&cfg.model, 100, None, &device).unwrap();
    let images = Images {
        inputs: Inputs::Pixels(&f.cifar.train.pixels[..4 * IMAGE_BYTES]),
        labels: &f.cifar.train.fine[..4],
    };
    let prep = Preprocess::of(&cfg.model);
    let (x, labels) = train::batch(images, &[0, 1, 2, 3], None, prep, &device).unwrap();
    let out = net.forward(x).unwrap();
    assert_eq!(out.activations.dims(), [4, 48]);
    let c = burn::tensor::Tensor::<2>::from_data(
        burn::tensor::TensorData::new(f.c.clone(), [100, 100]),
        &device,
    );
    let loss = train::cosine_loss(out.embedding, c.select(0, labels));
    let value: f32 = loss.clone().into_scalar();
    assert!(value.is_finite() && value > 0.0, "loss {value}");
    let conv = "encoder.AlexNet.convs.0.weight";
    let before = param_values(&net, conv);
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    let mut optim = SgdConfig::new().init();
    let net = optim.step(0.1, net, grads);
    let after = param_values(&net, conv);
    assert_eq!(before.len(), 64 * 3 * 11 * 11);
    assert!(
        before.iter().zip(&after).any(|(a, b)| a != b),
        "conv1 did not move"
    );
}
