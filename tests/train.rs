//! Training on a small prefix of the real CIFAR-100 train split: determinism, resume after an
//! interrupt, divergence and a failed checkpoint write.

use crate::common::data_root;
use harness::config::{Config, Loaded};
use harness::data::cifar::Cifar100;
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
    let f = fixture();
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let job = TrainJob {
        config: cfg,
        class_embedding: &f.c,
        train: Images {
            inputs: Inputs::Pixels(&f.cifar.train.pixels[..256 * 3072]),
            labels: &f.cifar.train.fine[..256],
        },
        eval: Images {
            inputs: Inputs::Pixels(&f.cifar.test.pixels[..200 * 3072]),
            labels: &f.cifar.test.fine[..200],
        },
        dir,
        progress: false,
    };
    train::train(&job)
}

fn embeddings(net: &harness::model::HashNet) -> Vec<f32> {
    let f = fixture();
    let images = Images {
        inputs: Inputs::Pixels(&f.cifar.test.pixels[..64 * 3072]),
        labels: &f.cifar.test.fine[..64],
    };
    harness::embed::embed(net, images, &f.c, 32, false)
        .unwrap()
        .embeddings
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
    assert_eq!(
        embeddings(&net_a),
        embeddings(&net_b),
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
