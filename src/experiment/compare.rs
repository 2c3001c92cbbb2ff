//! `harness compare`: finished runs and experiments side by side, as MLflow users compare
//! runs. One table (Markdown and CSV) and one figure: the config keys that differ, and each
//! method's headline metrics with their difference from the first input. An experiment folder
//! (a sweep) gives one input per group of its finished runs that differ only in `seed`, whose
//! runs are summarised as mean ± sample sd with a Student-t 95% interval; a difference between
//! two such inputs is called `separable` only when their intervals do not overlap.

use super::ExperimentError;
use crate::artifacts::{ExperimentLayout, RunLayout};
use crate::config;
use crate::eval::{SeedSummary, seed_summary};
use crate::report::check::{Key, groups_and_ks, lookup, read_metrics};
use crate::report::figures::{Corner, Figure, LineChart, Series, XAxis};
use crate::store;
use crate::store::frame::{Frame, Values};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The metrics the comparison shows, as `(metric, k)`.
pub const HEADLINE: [(&str, &str); 5] = [
    ("mP", "100"),
    ("mAHP", "250"),
    ("mAHP_mean", "250"),
    ("mAP_report", "250"),
    ("query_median_s", ""),
];

/// One compared input: a run, or the finished runs of an experiment that differ only in
/// their seed.
#[derive(Debug, Clone)]
pub struct Input {
    /// How the tables name it (the folder's name).
    pub label: String,
    /// Its resolved config, flattened to dotted keys (a seed that varies reads `(swept)`).
    pub config: BTreeMap<String, String>,
    /// The `metrics.csv` of each run.
    pub runs: Vec<Vec<(Key, f64)>>,
}

impl Input {
    /// Reads a run folder (holding `manifest.json`) as one input, or an experiment folder
    /// (holding `sweep.json`) as one input per group of its finished runs that differ only in
    /// `seed`.
    pub fn read(dir: &Path) -> Result<Vec<Self>, ExperimentError> {
        let run_dirs: Vec<PathBuf> = if RunLayout::new(dir).manifest().exists() {
            vec![dir.to_path_buf()]
        } else if ExperimentLayout::new(dir).sweep().exists() {
            let path = ExperimentLayout::new(dir).sweep();
            let entries: serde_json::Value = serde_json::from_slice(&store::read(&path)?)
                .map_err(|e| ExperimentError::unreadable(&path, e))?;
            entries
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["status"] == "complete")
                .filter_map(|e| {
                    let id = e["id"].as_str()?;
                    Some(ExperimentLayout::new(dir).run(id).dir().to_path_buf())
                })
                .collect()
        } else {
            return Err(ExperimentError::artifact(
                dir,
                "neither a run folder (manifest.json) nor an experiment folder (sweep.json)",
            ));
        };
        if run_dirs.is_empty() {
            return Err(ExperimentError::artifact(dir, "no finished run to compare"));
        }
        let mut runs = Vec::new();
        for run in &run_dirs {
            let cfg = RunLayout::new(run).config()?;
            let mut config = flatten(&serde_json::to_value(&cfg).unwrap_or_default());
            config.remove("name");
            let path = RunLayout::new(run).metrics();
            let metrics = read_metrics(&path).map_err(|e| ExperimentError::unreadable(&path, e))?;
            runs.push((config, metrics));
        }
        // The keys that vary between the runs, other than the seed, split them into groups.
        let varying: Vec<String> = runs[0]
            .0
            .keys()
            .filter(|k| *k != "seed" && runs.iter().any(|r| r.0.get(*k) != runs[0].0.get(*k)))
            .cloned()
            .collect();
        // A run is named with its experiment folder (`default/run-e62c632f`), an experiment by
        // its own folder.
        let name = |d: &Path| d.file_name().map(|n| n.to_string_lossy().into_owned());
        let folder = match (name(dir), RunLayout::new(dir).manifest().exists()) {
            (Some(run), true) => match dir.parent().and_then(name) {
                Some(experiment) => format!("{experiment}/{run}"),
                None => run,
            },
            (Some(experiment), false) => experiment,
            (None, _) => dir.display().to_string(),
        };
        let mut groups: Vec<Self> = Vec::new();
        for (config, metrics) in runs {
            let label = if varying.is_empty() {
                folder.clone()
            } else {
                let values: Vec<String> = varying
                    .iter()
                    .map(|k| format!("{k}={}", config.get(k).map_or("", String::as_str)))
                    .collect();
                format!("{folder} ({})", values.join(", "))
            };
            match groups.iter_mut().find(|g| g.label == label) {
                Some(g) => {
                    if g.config.get("seed") != config.get("seed") {
                        g.config.insert("seed".into(), "(swept)".into());
                    }
                    g.runs.push(metrics);
                }
                None => groups.push(Self {
                    label,
                    config,
                    runs: vec![metrics],
                }),
            }
        }
        Ok(groups)
    }

    /// `metric@k` of `method` under `protocol` over this input's runs; `None` unless every run
    /// has it.
    fn summary(&self, method: &str, protocol: &str, metric: &str, k: &str) -> Option<SeedSummary> {
        let values: Option<Vec<f64>> = self
            .runs
            .iter()
            .map(|m| lookup(m, method, protocol, metric, k))
            .collect();
        seed_summary(&values?).ok()
    }
}

/// One row of the comparison's frame.
struct Row {
    input: usize,
    method: String,
    protocol: String,
    metric: &'static str,
    k: &'static str,
    summary: SeedSummary,
    difference: Option<f64>,
}

/// Dotted key to value text of a config tree's leaves.
fn flatten(tree: &serde_json::Value) -> BTreeMap<String, String> {
    config::sweep::leaves(tree)
        .into_iter()
        .map(|(k, v)| (k, v.to_string().trim_matches('"').to_string()))
        .collect()
}

/// The comparison of `inputs` (at least two): Markdown, a long frame
/// (`input,method,protocol,metric,k,runs,mean,sd,ci95_low,ci95_high,difference`) and the
/// figure of mAHP@250 per method and protocol.
pub fn comparison(inputs: &[Input]) -> (String, Frame, LineChart) {
    let mut md = String::from("# Runs compared\n\n");
    for (i, input) in inputs.iter().enumerate() {
        let _ = writeln!(
            md,
            "{}. `{}`: {} run{}",
            i + 1,
            input.label,
            input.runs.len(),
            if input.runs.len() == 1 {
                ""
            } else {
                "s (mean ± sd)"
            }
        );
    }
    let keys: std::collections::BTreeSet<&String> =
        inputs.iter().flat_map(|i| i.config.keys()).collect();
    let differ: Vec<&String> = keys
        .into_iter()
        .filter(|k| {
            inputs
                .iter()
                .any(|i| i.config.get(*k) != inputs[0].config.get(*k))
        })
        .collect();
    let header = inputs
        .iter()
        .map(|i| format!(" `{}` |", i.label))
        .collect::<String>();
    let _ = write!(md, "\n## Config keys that differ\n\n");
    if differ.is_empty() {
        md.push_str("None: the inputs share every key but their names.\n");
    } else {
        let _ = writeln!(md, "| key |{header}\n|---|{}", "---|".repeat(inputs.len()));
        for k in &differ {
            let _ = write!(md, "| {k} |");
            for i in inputs {
                let _ = write!(md, " {} |", i.config.get(*k).map_or("—", String::as_str));
            }
            md.push('\n');
        }
    }
    let _ = write!(
        md,
        "\n## Headline metrics\n\nThe difference is each input minus the first. Between two \
         inputs of several runs it is `separable` when their Student-t 95% intervals do not \
         overlap; a single run has no interval.\n\n| method | protocol | metric |{header}"
    );
    for i in &inputs[1..] {
        let _ = write!(md, " `{}` − `{}` |", i.label, inputs[0].label);
    }
    let _ = writeln!(
        md,
        "\n|---|---|---|{}{}",
        "---:|".repeat(inputs.len()),
        "---:|".repeat(inputs.len() - 1)
    );
    let (groups, _) = groups_and_ks(inputs[0].runs.iter().flatten());
    let mut rows: Vec<Row> = Vec::new();
    let cell = |s: &SeedSummary, scale: f64| {
        if s.n > 1 {
            format!("{:.4} ± {:.4}", s.mean * scale, s.sd * scale)
        } else {
            format!("{:.4}", s.mean * scale)
        }
    };
    for (m, p) in &groups {
        for (metric, k) in HEADLINE {
            let all: Vec<Option<SeedSummary>> =
                inputs.iter().map(|i| i.summary(m, p, metric, k)).collect();
            let Some(first) = all[0] else { continue };
            let scale = if metric.ends_with("_s") { 1e3 } else { 1.0 };
            let name = if k.is_empty() {
                format!("{metric} (ms)")
            } else {
                format!("{metric}@{k}")
            };
            let _ = write!(md, "| {m} | {p} | {name} |");
            for s in &all {
                let _ = write!(
                    md,
                    " {} |",
                    s.as_ref().map_or("—".into(), |s| cell(s, scale))
                );
            }
            for s in &all[1..] {
                let text = s.as_ref().map_or("—".into(), |s| {
                    let d = (s.mean - first.mean) * scale;
                    let separable = s.n > 1
                        && first.n > 1
                        && (s.ci95_low > first.ci95_high || s.ci95_high < first.ci95_low);
                    format!("{d:+.4}{}", if separable { " (separable)" } else { "" })
                });
                let _ = write!(md, " {text} |");
            }
            md.push('\n');
            for (i, s) in all.iter().enumerate() {
                if let Some(s) = s {
                    rows.push(Row {
                        input: i,
                        method: m.clone(),
                        protocol: p.clone(),
                        metric,
                        k,
                        summary: *s,
                        difference: (i > 0).then_some(s.mean - first.mean),
                    });
                }
            }
        }
    }
    let text = |f: &dyn Fn(&Row) -> String| Values::Str(rows.iter().map(f).collect());
    let num = |f: &dyn Fn(&SeedSummary) -> f64| {
        Values::F64(rows.iter().map(|r| Some(f(&r.summary))).collect())
    };
    let frame = Frame::new()
        .with("input", text(&|r| inputs[r.input].label.clone()))
        .with("method", text(&|r| r.method.clone()))
        .with("protocol", text(&|r| r.protocol.clone()))
        .with("metric", text(&|r| r.metric.into()))
        .with(
            "k",
            Values::U32(rows.iter().map(|r| r.k.parse().ok()).collect()),
        )
        .with(
            "runs",
            Values::U32(rows.iter().map(|r| Some(r.summary.n as u32)).collect()),
        )
        .with("mean", num(&|s| s.mean))
        .with("sd", num(&|s| s.sd))
        .with("ci95_low", num(&|s| s.ci95_low))
        .with("ci95_high", num(&|s| s.ci95_high))
        .with(
            "difference",
            Values::F64(rows.iter().map(|r| r.difference).collect()),
        );
    // The figure: mAHP@250 of each (method, protocol), numbered as in the legend below it.
    let _ = writeln!(md, "\n## Figure: mAHP@250 per method and protocol\n");
    for (x, (m, p)) in groups.iter().enumerate() {
        let _ = writeln!(md, "- {}: `{m}`, `{p}`", x + 1);
    }
    let series = inputs
        .iter()
        .map(|input| Series {
            label: input.label.clone(),
            points: groups
                .iter()
                .enumerate()
                .filter_map(|(x, (m, p))| {
                    Some(((x + 1) as f64, input.summary(m, p, "mAHP", "250")?.mean))
                })
                .collect(),
            published: None,
        })
        .collect();
    let chart = LineChart {
        title: "mAHP@250 per method and protocol".into(),
        x_label: "method and protocol (numbered in compare.md)".into(),
        y_label: "mAHP@250".into(),
        series,
        markers_only: true,
        x_axis: XAxis::Linear,
        y_axis: XAxis::Linear,
        legend: Corner::LowerRight,
    };
    (md, frame, chart)
}

/// Compares the run or experiment folders `dirs` into `out` (`compare.md`, `compare.csv`,
/// `compare.png`, `compare.svg`); returns the Markdown and the paths written.
pub fn compare(dirs: &[PathBuf], out: &Path) -> Result<(String, Vec<PathBuf>), ExperimentError> {
    let mut inputs = Vec::new();
    for d in dirs {
        inputs.extend(Input::read(d)?);
    }
    let (md, frame, chart) = comparison(&inputs);
    let mut written = Vec::new();
    let path = out.join("compare.md");
    store::write_bytes_atomic(&path, md.as_bytes())?;
    written.push(path);
    written.extend(frame.write(out, "compare", &[config::TableFormat::Csv])?);
    written.extend(chart.write(
        out,
        "compare",
        &[config::FigureFormat::Png, config::FigureFormat::Svg],
    )?);
    Ok((md, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_and_intervals_between_inputs() {
        // hand-made inputs for a pure-function unit test: a single run and a seed sweep
        let key = |metric: &str, k: &str| -> Key {
            (
                "exact".into(),
                "leave_one_out".into(),
                metric.into(),
                k.into(),
            )
        };
        let run = |v: f64| vec![(key("mP", "100"), 0.4), (key("mAHP", "250"), v)];
        let cfg = |h: &str| BTreeMap::from([("model.h".to_string(), h.to_string())]);
        let a = Input {
            label: "a".into(),
            config: cfg("48"),
            runs: vec![run(0.80), run(0.81), run(0.82)],
        };
        let b = Input {
            label: "b".into(),
            config: cfg("64"),
            runs: vec![run(0.90), run(0.91), run(0.92)],
        };
        let c = Input {
            label: "c".into(),
            config: cfg("48"),
            runs: vec![run(0.85)],
        };
        let (md, frame, chart) = comparison(&[a, b, c]);
        assert!(md.contains("| model.h | 48 | 64 | 48 |"), "{md}");
        assert!(
            md.contains("| exact | leave_one_out | mAHP@250 | 0.8100 ± 0.0100 | 0.9100 ± 0.0100 | 0.8500 | +0.1000 (separable) | +0.0400 |"),
            "{md}"
        );
        assert_eq!(frame.height(), 6);
        assert_eq!(chart.series.len(), 3);
        assert_eq!(chart.series[1].points, vec![(1.0, 0.91)]);
    }
}
