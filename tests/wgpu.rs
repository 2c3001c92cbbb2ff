//! `backend: wgpu` end to end: the tiny fixture trained and embedded on burn's wgpu backend,
//! against the same config on the CPU, and each run's checkpoint reloaded on the other device.
//!
//! Built with the `wgpu` cargo feature (opt-in; `.ci/run` builds it in its last step). Needs a wgpu adapter; on a machine without
//! a GPU, Mesa's lavapipe (Debian's `mesa-vulkan-drivers`) is one, and `.ci/run` installs it.
//! With `HARNESS_REQUIRE_WGPU` set (CI sets it), a missing adapter fails the test instead of
//! skipping it.

use crate::common::{data_root, harness, run_dirs, text};
use harness::config::{Backend, Loaded};
use harness::data::cifar::{Cifar100, IMAGE_BYTES};
use std::path::{Path, PathBuf};

const FIXTURE: &str = "tests/fixtures/tiny_wgpu.yaml";
/// Test images embedded again after the checkpoint moves to the other device.
const MOVED: usize = 100;

/// Runs `config` into a fresh folder; `None` when wgpu has no adapter here (and it is not
/// required).
fn run(config: &Path, out: &Path) -> Option<PathBuf> {
    let o = harness(
        &[
            "--quiet",
            "run",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    let (_, stderr) = text(&o);
    if !o.status.success() && stderr.contains("backend `wgpu`:") {
        assert!(
            std::env::var_os("HARNESS_REQUIRE_WGPU").is_none(),
            "HARNESS_REQUIRE_WGPU is set but wgpu has no adapter: {stderr}"
        );
        eprintln!("skipped: {stderr}");
        return None;
    }
    assert!(o.status.success(), "{stderr}");
    Some(run_dirs(out).remove(0))
}

/// Quality metric name -> value (timings left out) of a run's metrics.csv.
fn quality(run: &Path) -> Vec<(String, f64)> {
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (metric, value) = (col("metric"), col("value"));
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        // The means over all queries; the report's hit20 measures average over a set of
        // queries that itself moves with rounding, and their counts are not fractions.
        .filter(|f| ["mP", "mAP", "mHP", "mAHP", "mAHP_mean", "mAP_report"].contains(&f[metric]))
        .map(|f| (f.join(","), f[value].parse().unwrap()))
        .collect()
}

/// Embeds the first test images with `run`'s checkpoint loaded on `backend`.
fn embed_on(run: &Path, backend: Backend, pixels: &[u8]) -> Vec<f32> {
    let mut cfg = Loaded::from_path(&run.join("config.resolved.yaml"))
        .unwrap()
        .config;
    cfg.backend = backend;
    let embedder = harness::experiment::embedder(&data_root(), &cfg, run, None).unwrap();
    embedder.embed(pixels).unwrap().embeddings
}

fn stored_test_embeddings(run: &Path, n: usize) -> Vec<f32> {
    let e = harness::artifacts::load_embedded(
        &run.join("embed"),
        harness::data::cifar::SplitName::Test,
    )
    .unwrap();
    e.embeddings[..n * e.d].to_vec()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn wgpu_trains_and_embeds_like_the_cpu_and_checkpoints_move_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let Some(gpu) = run(Path::new(FIXTURE), &dir.path().join("wgpu")) else {
        return;
    };
    let cpu_config = dir.path().join("tiny_cpu.yaml");
    let text_cfg = std::fs::read_to_string(FIXTURE).unwrap();
    assert!(text_cfg.contains("backend: wgpu"));
    std::fs::write(
        &cpu_config,
        text_cfg.replace("backend: wgpu", "backend: cpu"),
    )
    .unwrap();
    let cpu = run(&cpu_config, &dir.path().join("cpu")).unwrap();

    // The same seed, data and schedule on two devices: the arithmetic differs in rounding
    // only, so every quality metric agrees within 0.03 (measured: see docs/backends.md).
    let (g, c) = (quality(&gpu), quality(&cpu));
    assert_eq!(g.len(), c.len());
    assert!(!g.is_empty());
    for ((name, gv), (_, cv)) in g.iter().zip(&c) {
        assert!((gv - cv).abs() <= 0.03, "{name}: wgpu {gv} vs cpu {cv}");
    }
    assert_ne!(
        g, c,
        "two devices, yet bit-identical metrics: was wgpu really used?"
    );

    // A checkpoint written on one device, loaded on the other, embeds as it did where it was
    // trained (up to rounding).
    let cifar = Cifar100::load(&data_root(), false).unwrap();
    let pixels = &cifar.test.pixels[..MOVED * IMAGE_BYTES];
    for (run, other) in [(&gpu, Backend::Cpu), (&cpu, Backend::Wgpu)] {
        let moved = embed_on(run, other, pixels);
        let stored = stored_test_embeddings(run, MOVED);
        let diff = max_abs_diff(&moved, &stored);
        assert!(
            diff <= 1e-3,
            "{} reloaded on {other:?}: max |diff| {diff}",
            run.display()
        );
    }
}
