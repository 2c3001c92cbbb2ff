//! Re-rendering tables from stored results (`harness report`), without recomputing anything:
//! the report's Tables 1-4 per run, and the sweep table of an experiment folder.

use super::{ExperimentError, check_format, read_record, split_sizes};
use crate::config::{self, Loaded};
use crate::report::check::read_metrics;
use crate::report::paper::{RunFacts, paper_tables};
use crate::report::sweep::{SweepRun, sweep_tables};
use crate::store;
use std::path::{Path, PathBuf};

fn artifact(path: &Path, message: impl ToString) -> ExperimentError {
    ExperimentError::Artifact {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// What the tables need from a run folder besides `metrics.csv`.
fn run_facts(dir: &Path, cfg: &config::Config) -> RunFacts {
    let images: usize = split_sizes(cfg).iter().map(|s| s.1).sum();
    let encoder = read_record(&dir.join("stages").join("features.json"))
        .map(|r| r.seconds / images.max(1) as f64);
    let decoder = read_json(&dir.join("embed").join("embed_summary.json"))
        .and_then(|v| v["test"]["seconds_per_image"].as_f64());
    let word_model = read_json(&dir.join("iwan").join("word_model.json")).and_then(|v| {
        Some(v["head_s_per_image"].as_f64()? + v["encoder_s_per_image"].as_f64().unwrap_or(0.0))
    });
    RunFacts {
        top_iwk: cfg.iwan.enabled.then_some(cfg.iwan.top_iwk),
        top_wwk: cfg.iwan.enabled.then_some(cfg.iwan.top_wwk),
        inference_s: decoder.map(|d| d + encoder.unwrap_or(0.0)),
        word_model_s: word_model,
        iwan_setup: cfg
            .iwan
            .enabled
            .then_some(match (cfg.iwan.word_model, cfg.iwan.db_words) {
                (config::WordModel::Imagenet, config::DbWords::Predicted) => {
                    "ImageNet-classifier words, predicted words only"
                }
                (config::WordModel::Classes, config::DbWords::Predicted) => {
                    "CIFAR-100 class words from the trained net, predicted words only"
                }
                (_, config::DbWords::Labels) => "database annotated with ground-truth labels",
                (_, config::DbWords::Both) => {
                    "database annotated with predicted words and ground-truth labels"
                }
            }),
    }
}

/// Writes `tables/paper.md` and `tables/paper.csv` of the run in `dir`; returns the paths.
pub fn render_run(dir: &Path) -> Result<Vec<PathBuf>, ExperimentError> {
    check_format(&dir.join("manifest.json"))?;
    let cfg = Loaded::from_path(&dir.join("config.resolved.yaml"))?.config;
    let metrics_path = dir.join("metrics.csv");
    let metrics =
        read_metrics(&metrics_path).map_err(|e| artifact(&metrics_path, e.to_string()))?;
    let (md, csv) = paper_tables(&metrics, &run_facts(dir, &cfg));
    let paths = [dir.join("tables/paper.md"), dir.join("tables/paper.csv")];
    store::write_bytes_atomic(&paths[0], md.as_bytes())?;
    store::write_bytes_atomic(&paths[1], csv.as_bytes())?;
    Ok(paths.to_vec())
}

/// Writes `tables/sweep.md` and `tables/sweep.csv` of the experiment folder `dir` from its
/// `sweep.json` and the metrics of its finished runs; returns the paths.
pub fn render_sweep(dir: &Path) -> Result<Vec<PathBuf>, ExperimentError> {
    let sweep_path = dir.join("sweep.json");
    let entries = read_json(&sweep_path)
        .and_then(|v| v.as_array().cloned())
        .ok_or_else(|| artifact(&sweep_path, "expected a JSON array of runs"))?;
    let mut runs = Vec::new();
    for e in &entries {
        let id = e["id"].as_str().unwrap_or_default();
        if e["status"] != "complete" {
            continue;
        }
        let path = dir.join(id).join("metrics.csv");
        let metrics = read_metrics(&path).map_err(|err| artifact(&path, err.to_string()))?;
        let overrides = e["overrides"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.to_string().trim_matches('"').to_string()))
                    .collect()
            })
            .unwrap_or_default();
        runs.push(SweepRun {
            id: id.to_string(),
            overrides,
            metrics,
        });
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (md, csv) = sweep_tables(&name, &runs);
    let paths = [dir.join("tables/sweep.md"), dir.join("tables/sweep.csv")];
    store::write_bytes_atomic(&paths[0], md.as_bytes())?;
    store::write_bytes_atomic(&paths[1], csv.as_bytes())?;
    Ok(paths.to_vec())
}

/// `harness report DIR`: a run folder gets its tables again; an experiment folder gets each
/// finished run's tables and, for a sweep, the sweep table.
pub fn render(dir: &Path) -> Result<Vec<PathBuf>, ExperimentError> {
    if dir.join("manifest.json").exists() {
        return render_run(dir);
    }
    let mut written = Vec::new();
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| artifact(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("metrics.csv").exists() && p.join("manifest.json").exists())
        .collect();
    runs.sort();
    for run in &runs {
        written.extend(render_run(run)?);
    }
    if dir.join("sweep.json").exists() {
        written.extend(render_sweep(dir)?);
    }
    if written.is_empty() {
        return Err(artifact(
            dir,
            "neither a run folder (manifest.json) nor an experiment folder with finished runs",
        ));
    }
    Ok(written)
}
