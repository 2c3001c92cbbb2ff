//! Tables and figures from stored results, written by the eval stage and re-rendered by
//! `harness report` without recomputing anything: per run the report's Tables 1-4, a summary
//! table, `metrics.parquet`, HP@k curves and a quality-time plot; per sweep its table and its
//! metric-vs-parameter figures.

use super::engine::stage_record;
use super::{ExperimentError, check_format, split_sizes};
use crate::artifacts::{EmbedSplitSummary, ExperimentLayout, RunLayout};
use crate::config;
use crate::data::cifar::SplitName;
use crate::model::efficientnet::Lite;
use crate::report::check::{Key, groups_and_ks, lookup, read_metrics};
use crate::report::figures::{Figure, hp_chart, pareto_chart};
use crate::report::paper::{RunFacts, paper_tables};
use crate::report::sweep::{SweepRun, TIMED_STAGES, seed_tables, sweep_figures, sweep_tables};
use crate::store;
use crate::store::frame::{Frame, Values};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One split's line of the run's embed summary, if it has one.
fn embedded(run: &RunLayout, split: SplitName) -> Option<EmbedSplitSummary> {
    run.read_embed_summary()?.get(split.as_str()).copied()
}

/// What the tables need from a run folder besides `metrics.csv`.
fn run_facts(run: &RunLayout, cfg: &config::Config) -> RunFacts {
    let images: usize = split_sizes(cfg).iter().map(|s| s.1).sum();
    // With the mirror average every image takes two encoder passes (the decoder's two are in
    // the embed summary's time).
    let passes = if cfg.model.mirror_average { 2.0 } else { 1.0 };
    let encoder = stage_record(run, "features").map(|r| passes * r.seconds / images.max(1) as f64);
    let decoder = embedded(run, SplitName::Test).map(|e| e.seconds_per_image);
    let word_model = run.read_word_model().map(|c| c.total_s_per_image());
    RunFacts {
        model: Some(model_label(&cfg.model)),
        top_iwk: cfg.iwan.enabled.then_some(cfg.iwan.top_iwk),
        top_wwk: cfg.iwan.enabled.then_some(cfg.iwan.top_wwk),
        inference_s: decoder.map(|d| d + encoder.unwrap_or(0.0)),
        word_model_s: word_model,
        word_model: cfg.iwan.enabled.then_some(match cfg.iwan.word_model {
            config::WordModel::Imagenet => match super::stages::own_weights(cfg).lite {
                Lite::Lite0 => "EfficientNet-Lite0's ImageNet labels (the report: ResNet-50's)",
                Lite::Lite2 => "EfficientNet-Lite2's ImageNet labels (the report: ResNet-50's)",
            },
            config::WordModel::Classes => {
                "the trained network's CIFAR-100 classes (the report: ResNet-50's ImageNet labels)"
            }
        }),
    }
}

/// How tables name the network that produced a run's embeddings and codes: the encoder (its
/// input size, whether frozen, bf16 arithmetic, the mirror average) and the decoder.
pub(crate) fn model_label(m: &config::ModelConfig) -> String {
    let training = match (m.encoder, m.frozen_features(), m.weights.is_some()) {
        (config::Encoder::CifarCnn, ..) => "from scratch",
        (_, true, _) => "frozen",
        (_, false, true) => "trained from the given weights",
        (config::Encoder::Alexnet, false, false) => "from scratch",
        (_, false, false) => "fine-tuned",
    };
    let precision = match m.precision {
        config::Precision::Fp32 => "",
        config::Precision::Bf16 => ", bf16",
    };
    let average = if m.mirror_average {
        ", mirror average"
    } else {
        ""
    };
    let decoder = match m.decoder {
        config::Decoder::Paper => format!("the report's decoder (h = {}, d = {})", m.h, m.d),
        config::Decoder::Wide => format!(
            "wide decoder (T = {}, dropout {}, hash branch h = {}, d = {})",
            m.trunk, m.dropout, m.h, m.d
        ),
    };
    format!(
        "{} at {} px, {training}{precision}{average} -> {decoder}",
        m.encoder.as_str(),
        m.input_size
    )
}

/// The long `metrics.csv` rows as a frame (`method,protocol,metric,k,value`).
fn metrics_frame(metrics: &[(Key, f64)]) -> Frame {
    let col =
        |f: fn(&Key) -> &String| Values::Str(metrics.iter().map(|r| f(&r.0).clone()).collect());
    Frame::new()
        .with("method", col(|k| &k.0))
        .with("protocol", col(|k| &k.1))
        .with("metric", col(|k| &k.2))
        .with(
            "k",
            Values::U32(metrics.iter().map(|r| r.0.3.parse().ok()).collect()),
        )
        .with(
            "value",
            Values::F64(metrics.iter().map(|r| Some(r.1)).collect()),
        )
}

/// One row per (method, protocol): mP@k for every k, mAHP@250, mAHP_mean@250, median and p95
/// ms per query, queries/s and bytes per item.
fn summary_frame(metrics: &[(Key, f64)]) -> Frame {
    let (groups, ks) = groups_and_ks(metrics);
    let get = |g: &(String, String), metric: &str, k: &str, scale: f64| {
        lookup(metrics, &g.0, &g.1, metric, k).map(|v| v * scale)
    };
    let column = |metric: &str, k: &str, scale: f64| {
        Values::F64(groups.iter().map(|g| get(g, metric, k, scale)).collect())
    };
    let mut f = Frame::new()
        .with(
            "method",
            Values::Str(groups.iter().map(|g| g.0.clone()).collect()),
        )
        .with(
            "protocol",
            Values::Str(groups.iter().map(|g| g.1.clone()).collect()),
        );
    for k in &ks {
        f = f.with(&format!("mP@{k}"), column("mP", &k.to_string(), 1.0));
    }
    f.with("mAHP@250", column("mAHP", "250", 1.0))
        .with("mAHP_mean@250", column("mAHP_mean", "250", 1.0))
        .with("median_ms", column("query_median_s", "", 1e3))
        .with("p95_ms", column("query_p95_s", "", 1e3))
        .with("qps", column("qps", "", 1.0))
        .with("bytes_per_item", column("bytes_per_item", "", 1.0))
}

/// `hp_curves.csv` rows grouped as `(method, protocol, HP@1..HP@K)`.
fn read_hp_curves(path: &Path) -> Result<Vec<(String, String, Vec<f64>)>, ExperimentError> {
    let text =
        String::from_utf8(store::read(path)?).map_err(|e| ExperimentError::unreadable(path, e))?;
    let mut curves: Vec<(String, String, Vec<f64>)> = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let [method, protocol, _, hp] = f[..] else {
            return Err(ExperimentError::artifact(
                path,
                format!("line {}: expected 4 fields", i + 1),
            ));
        };
        let hp: f64 = hp.parse().map_err(|_| {
            ExperimentError::artifact(path, format!("line {}: `{hp}` is not a number", i + 1))
        })?;
        match curves.last_mut() {
            Some(c) if c.0 == method && c.1 == protocol => c.2.push(hp),
            _ => curves.push((method.into(), protocol.into(), vec![hp])),
        }
    }
    Ok(curves)
}

/// Writes the tables and figures of the run `run` (see the module docs); returns the paths.
pub fn render_run(run: &RunLayout) -> Result<Vec<PathBuf>, ExperimentError> {
    check_format(&run.manifest())?;
    let cfg = run.config()?;
    let formats = &cfg.report.tables;
    let metrics_path = run.metrics();
    let metrics =
        read_metrics(&metrics_path).map_err(|e| ExperimentError::unreadable(&metrics_path, e))?;
    let tables = run.tables();
    let mut written = Vec::new();
    let parquet_only: Vec<_> = formats
        .iter()
        .copied()
        .filter(|f| *f == config::TableFormat::Parquet)
        .collect();
    written.extend(metrics_frame(&metrics).write(run.dir(), "metrics", &parquet_only)?);
    let summary = summary_frame(&metrics);
    written.extend(summary.write(&tables, "summary", formats)?);
    if cfg.report.reference_values {
        let (md, frame) = paper_tables(&metrics, &run_facts(run, &cfg));
        if formats.contains(&config::TableFormat::Markdown) {
            let path = tables.join("paper.md");
            store::write_bytes_atomic(&path, md.as_bytes())?;
            written.push(path);
        }
        written.extend(frame.write(&tables, "paper", formats)?);
    }
    let figures = run.figures();
    let curves = read_hp_curves(&run.hp_curves())?;
    for protocol in &cfg.eval.protocols {
        let p = protocol.as_str();
        if let Some(chart) = hp_chart(&curves, p) {
            written.extend(chart.write(
                &figures,
                &format!("hp_curves-{p}"),
                &cfg.report.figures,
            )?);
        }
        let value = |m: &str, metric: &str, k: &str| lookup(&metrics, m, p, metric, k);
        let points: Vec<(String, f64, f64)> = groups_and_ks(&metrics)
            .0
            .iter()
            .filter(|g| g.1 == p)
            .filter_map(|(m, _)| {
                Some((
                    m.clone(),
                    value(m, "query_median_s", "")?,
                    value(m, "mAHP", "250").or_else(|| value(m, "mAHP", "100"))?,
                ))
            })
            .collect();
        if !points.is_empty() {
            let chart = pareto_chart(&points, p, "mAHP@250");
            written.extend(chart.write(&figures, &format!("pareto-{p}"), &cfg.report.figures)?);
        }
    }
    Ok(written)
}

/// Writes `tables/sweep.{md,csv,parquet}` and `figures/` of the experiment folder `dir` from its
/// `sweep.json` and the metrics of its finished runs; returns the paths.
pub fn render_sweep(dir: &Path) -> Result<Vec<PathBuf>, ExperimentError> {
    let exp = ExperimentLayout::new(dir);
    let sweep_path = exp.sweep();
    let entries = std::fs::read(&sweep_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.as_array().cloned())
        .ok_or_else(|| ExperimentError::artifact(&sweep_path, "expected a JSON array of runs"))?;
    let mut runs = Vec::new();
    for e in &entries {
        let id = e["id"].as_str().unwrap_or_default();
        if e["status"] != "complete" {
            continue;
        }
        let run = exp.run(id);
        let path = run.metrics();
        let metrics = read_metrics(&path).map_err(|e| ExperimentError::unreadable(&path, e))?;
        let overrides = e["overrides"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.to_string().trim_matches('"').to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let accuracy = embedded(&run, SplitName::Test).map(|e| e.nearest_class_accuracy);
        let config = run.config().ok();
        let views: Vec<String> = config
            .as_ref()
            .map(|c| super::stages::views(c).iter().map(|v| v.stage()).collect())
            .unwrap_or_default();
        let stage_seconds = TIMED_STAGES
            .iter()
            .filter_map(|&s| {
                let seconds = match s {
                    "views" if views.is_empty() => None,
                    "views" => views
                        .iter()
                        .map(|v| stage_record(&run, v).map(|r| r.seconds))
                        .sum::<Option<f64>>(),
                    _ => stage_record(&run, s).map(|r| r.seconds),
                }?;
                Some((s.to_string(), seconds))
            })
            .collect();
        runs.push(SweepRun {
            model: config.as_ref().map(|c| model_label(&c.model)),
            top_iwk: config
                .as_ref()
                .and_then(|c| c.iwan.enabled.then_some(c.iwan.top_iwk)),
            id: id.to_string(),
            overrides,
            metrics,
            accuracy,
            stage_seconds,
        });
    }
    // The name, formats and the model cost for time plots come from the first finished run.
    let first = runs.first().map(|r| exp.run(&r.id));
    let cfg = match &first {
        Some(run) => Some(run.config()?),
        None => None,
    };
    let name = cfg.as_ref().map_or("sweep", |c| c.name.as_str());
    let (mut md, frame) = sweep_tables(name, &runs);
    let tables = exp.tables();
    let mut written = Vec::new();
    let report = cfg.as_ref().map(|c| c.report.clone()).unwrap_or_default();
    // A seed sweep: mean ± sd over the seeds in sweep.md, every metric in seeds.{csv,...}.
    if let Some((seeds_md, seeds)) = seed_tables(&runs) {
        md.push_str(&seeds_md);
        written.extend(seeds.write(&tables, "seeds", &report.tables)?);
    }
    if report.tables.contains(&config::TableFormat::Markdown) {
        let path = tables.join("sweep.md");
        store::write_bytes_atomic(&path, md.as_bytes())?;
        written.push(path);
    }
    written.extend(frame.write(&tables, "sweep", &report.tables)?);
    let facts = match (&first, &cfg) {
        (Some(run), Some(cfg)) => run_facts(run, cfg),
        _ => RunFacts::default(),
    };
    let model = |method: &str| {
        if method.starts_with("iwan") {
            facts.word_model_s
        } else {
            facts.inference_s
        }
    };
    for (stem, chart) in sweep_figures(&runs, &model) {
        written.extend(chart.write(&exp.figures(), &stem, &report.figures)?);
    }
    Ok(written)
}

/// `harness report DIR`: a run folder gets its tables again; an experiment folder gets each
/// finished run's tables and, for a sweep, the sweep table.
pub fn render(dir: &Path) -> Result<Vec<PathBuf>, ExperimentError> {
    let run = RunLayout::new(dir);
    if run.is_run() {
        return render_run(&run);
    }
    let mut written = Vec::new();
    let mut runs: Vec<RunLayout> = std::fs::read_dir(dir)
        .map_err(|e| ExperimentError::unreadable(dir, e))?
        .filter_map(|e| e.ok().map(|e| RunLayout::new(e.path())))
        .filter(RunLayout::has_metrics)
        .collect();
    runs.sort_by(|a, b| a.dir().cmp(b.dir()));
    for run in &runs {
        written.extend(render_run(run)?);
    }
    if ExperimentLayout::new(dir).sweep().exists() {
        written.extend(render_sweep(dir)?);
    }
    if written.is_empty() {
        return Err(ExperimentError::artifact(
            dir,
            "neither a run folder (manifest.json) nor an experiment folder with finished runs",
        ));
    }
    Ok(written)
}

/// What `harness run` prints after its `results:` lines: per run folder, one row per method
/// and protocol with mP@100, mAHP@250 (or the nearest cut-offs the run has) and the median
/// query time, then where the tables and figures are. A sweep gets one row per run instead,
/// with each method's mAHP under the first protocol, and the path of its sweep table.
pub fn console_summary(exp_dir: &Path, runs: &[PathBuf]) -> Result<String, ExperimentError> {
    let mut out = String::new();
    let read = |run: &Path| {
        let path = RunLayout::new(run).metrics();
        read_metrics(&path).map_err(|e| ExperimentError::unreadable(&path, e))
    };
    // The cut-off nearest `want` among `ks` (the largest below it, else the smallest).
    let pick = |ks: &[u32], want: u32| {
        ks.iter()
            .rev()
            .find(|&&k| k <= want)
            .or(ks.first())
            .copied()
    };
    let cells = |m: &[(Key, f64)], method: &str, protocol: &str, ks: &[u32]| {
        let value = |metric: &str, k: Option<u32>| {
            let k = k.map(|k| k.to_string()).unwrap_or_default();
            lookup(m, method, protocol, metric, &k).map_or("-".to_string(), |v| format!("{v:.4}"))
        };
        let ms = lookup(m, method, protocol, "query_median_s", "")
            .map_or("-".to_string(), |s| format!("{:.3}", s * 1e3));
        (value("mP", pick(ks, 100)), value("mAHP", pick(ks, 250)), ms)
    };
    if let [run] = runs {
        let m = read(run)?;
        let (groups, ks) = groups_and_ks(&m);
        let (kp, ka) = (pick(&ks, 100).unwrap_or(0), pick(&ks, 250).unwrap_or(0));
        let _ = writeln!(
            out,
            "{:<21} {:<14} {:>9} {:>10} {:>10}",
            "method",
            "protocol",
            format!("mP@{kp}"),
            format!("mAHP@{ka}"),
            "median ms"
        );
        for (method, protocol) in &groups {
            let (p, a, ms) = cells(&m, method, protocol, &ks);
            let _ = writeln!(out, "{method:<21} {protocol:<14} {p:>9} {a:>10} {ms:>10}");
        }
        let layout = RunLayout::new(run);
        let tables = layout.tables();
        for path in [
            tables.join("paper.md"),
            tables.join("summary.md"),
            layout.figures(),
        ] {
            if path.exists() {
                let _ = writeln!(out, "{}", path.display());
            }
        }
    } else {
        // One row per run, one column per method: mAHP at the largest cut-off up to 250,
        // under the first protocol.
        let mut header = None;
        for run in runs {
            let m = read(run)?;
            let (groups, ks) = groups_and_ks(&m);
            let Some(protocol) = groups.first().map(|g| g.1.clone()) else {
                continue;
            };
            let methods: Vec<&String> = groups
                .iter()
                .filter(|g| g.1 == protocol)
                .map(|g| &g.0)
                .collect();
            let ka = pick(&ks, 250).unwrap_or(0);
            if header.is_none() {
                let _ = write!(out, "{:<32}", format!("run (mAHP@{ka}, {protocol})"));
                for method in &methods {
                    let _ = write!(out, " {method:>15}");
                }
                out.push('\n');
                header = Some(());
            }
            let id = run
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            let _ = write!(out, "{id:<32}");
            for method in &methods {
                let v = lookup(&m, method, &protocol, "mAHP", &ka.to_string());
                let _ = write!(out, " {:>15}", v.map_or("-".into(), |v| format!("{v:.4}")));
            }
            out.push('\n');
        }
        let table = ExperimentLayout::new(exp_dir).tables().join("sweep.md");
        if table.exists() {
            let _ = writeln!(out, "{}", table.display());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_label_names_encoder_and_decoder() {
        let mut m = config::Loaded::embedded_default().unwrap().config.model;
        assert_eq!(
            model_label(&m),
            "efficientnet_lite0 at 160 px, frozen, bf16 -> wide decoder (T = 1024, dropout 0, \
             hash branch h = 48, d = 100)"
        );
        m.encoder = config::Encoder::EfficientnetLite2;
        m.mirror_average = true;
        m.precision = config::Precision::Bf16;
        assert!(
            model_label(&m)
                .starts_with("efficientnet_lite2 at 160 px, frozen, bf16, mirror average -> ")
        );
        m.precision = config::Precision::Fp32;
        assert!(
            model_label(&m).starts_with("efficientnet_lite2 at 160 px, frozen, mirror average -> ")
        );
        m.freeze = false;
        m.mirror_average = false;
        m.decoder = config::Decoder::Paper;
        assert_eq!(
            model_label(&m),
            "efficientnet_lite2 at 160 px, fine-tuned -> the report's decoder (h = 48, d = 100)"
        );
    }
}
