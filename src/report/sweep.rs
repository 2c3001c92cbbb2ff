//! Sweep tables: one row per run, with the swept values, for each method and protocol.

use super::check::{Key, groups_and_ks, lookup};
use super::figures::{Corner, LineChart, Series, XAxis};
use super::paper::PUBLISHED;
use crate::store::frame::{Frame, Values};
use std::fmt::Write as _;

/// One finished run of a sweep.
#[derive(Debug, Clone)]
pub struct SweepRun {
    /// Run id (folder name).
    pub id: String,
    /// Swept parameter -> value, as in `sweep.json`.
    pub overrides: Vec<(String, String)>,
    /// Its `metrics.csv`.
    pub metrics: Vec<(Key, f64)>,
    /// Nearest-class accuracy of the trained network on the test images.
    pub accuracy: Option<f64>,
    /// Wall seconds of each stage that ran for it (cached stages count the run that made them).
    pub stage_seconds: Vec<(String, f64)>,
    /// The network (encoder and decoder) that produced its embeddings and codes, as the
    /// tables name it.
    pub model: Option<String>,
    /// Its IWAN topIWK (which of the report's Tables 3-4 it can fill), when IWAN ran.
    pub top_iwk: Option<usize>,
}

/// The stages whose wall time the model table shows, in pipeline order; `views` is the sum of
/// the feature passes over other views of the images (mirror images, shifted copies).
pub const TIMED_STAGES: [&str; 5] = ["features", "views", "train", "embed", "eval"];

/// Markdown and a long frame: per (method, protocol), a Markdown table of runs with mP@k for
/// every k found, mAHP@250 and the median query time; the frame has the columns
/// `run,<swept keys...>,method,protocol,metric,k,value`.
pub fn sweep_tables(name: &str, runs: &[SweepRun]) -> (String, Frame) {
    let params: Vec<String> = runs
        .first()
        .map(|r| r.overrides.iter().map(|o| o.0.clone()).collect())
        .unwrap_or_default();
    let (groups, ks) = groups_and_ks(runs.iter().flat_map(|r| &r.metrics));
    let mut md = format!(
        "# Sweep `{name}`: one row per run\n\nmP@k is mean precision (the report's \"mAP@k\" is mAP_report or mP_hit20: docs/metrics.md); mAHP@250 uses the \
         trapezoid rule; times are median milliseconds per query.\n"
    );
    let value =
        |r: &SweepRun, m: &str, p: &str, metric: &str, k: &str| lookup(&r.metrics, m, p, metric, k);
    if runs.iter().any(|r| r.accuracy.is_some()) {
        let _ = write!(
            md,
            "\n## The model: nearest-class test accuracy, exact leave-one-out mAHP@250, wall \
             seconds per stage\n\nA stage reused from the cache shows the time of the run that \
             computed it; `—` means the stage did not run for this model.\n\n|"
        );
        for param in &params {
            let _ = write!(md, " {param} |");
        }
        let _ = writeln!(
            md,
            " model | accuracy | mAHP@250 |{}\n|{}---|{}",
            TIMED_STAGES.map(|s| format!(" {s} s |")).concat(),
            "---|".repeat(params.len()),
            "---:|".repeat(2 + TIMED_STAGES.len())
        );
        for r in runs {
            md.push('|');
            for (_, v) in &r.overrides {
                let _ = write!(md, " {v} |");
            }
            let mahp = value(r, "exact", "leave_one_out", "mAHP", "250");
            let cell = |v: Option<f64>, digits: usize| {
                v.map(|v| format!("{v:.digits$}"))
                    .unwrap_or_else(|| "—".into())
            };
            let model = r.model.as_deref().unwrap_or("—");
            let _ = write!(
                md,
                " {model} | {} | {} |",
                cell(r.accuracy, 4),
                cell(mahp, 4)
            );
            for stage in TIMED_STAGES {
                let secs = r
                    .stage_seconds
                    .iter()
                    .find(|(n, _)| n == stage)
                    .map(|s| s.1);
                let _ = write!(md, " {} |", cell(secs, 1));
            }
            md.push('\n');
        }
    }
    for (m, p) in &groups {
        let _ = write!(md, "\n## `{m}`, protocol `{p}`\n\n|");
        for param in &params {
            let _ = write!(md, " {param} |");
        }
        for k in &ks {
            let _ = write!(md, " mP@{k} |");
        }
        let _ = writeln!(
            md,
            " mAHP@250 | ms/query |\n|{}{}",
            "---|".repeat(params.len()),
            "---:|".repeat(ks.len() + 2)
        );
        for r in runs {
            md.push('|');
            for (_, v) in &r.overrides {
                let _ = write!(md, " {v} |");
            }
            let fmt = |v: Option<f64>, scale: f64| {
                v.map(|v| format!("{:.4}", v * scale))
                    .unwrap_or_else(|| "—".into())
            };
            for k in &ks {
                let _ = write!(md, " {} |", fmt(value(r, m, p, "mP", &k.to_string()), 1.0));
            }
            let _ = writeln!(
                md,
                " {} | {} |",
                fmt(value(r, m, p, "mAHP", "250"), 1.0),
                fmt(value(r, m, p, "query_median_s", ""), 1e3)
            );
        }
    }
    let mut run_ids = Vec::new();
    let mut swept: Vec<Vec<String>> = vec![Vec::new(); params.len()];
    let mut cols: [Vec<String>; 3] = Default::default();
    let mut k_col = Vec::new();
    let mut values = Vec::new();
    for r in runs {
        // The model rows: method `model`, metric `test_accuracy` or `seconds_<stage>`.
        let model_rows = r
            .accuracy
            .map(|a| (String::from("test_accuracy"), a))
            .into_iter()
            .chain(
                r.stage_seconds
                    .iter()
                    .map(|(n, s)| (format!("seconds_{n}"), *s)),
            );
        let model_keys: Vec<(Key, f64)> = model_rows
            .map(|(metric, v)| (("model".into(), String::new(), metric, String::new()), v))
            .collect();
        for ((m, p, metric, k), v) in r.metrics.iter().chain(&model_keys) {
            run_ids.push(r.id.clone());
            for (col, (_, value)) in swept.iter_mut().zip(&r.overrides) {
                col.push(value.clone());
            }
            for (col, x) in cols.iter_mut().zip([m, p, metric]) {
                col.push(x.clone());
            }
            k_col.push(k.parse::<u32>().ok());
            values.push(Some(*v));
        }
    }
    let mut frame = Frame::new().with("run", Values::Str(run_ids));
    for (param, col) in params.iter().zip(swept) {
        frame = frame.with(param, Values::Str(col));
    }
    let [m, p, metric] = cols;
    let frame = frame
        .with("method", Values::Str(m))
        .with("protocol", Values::Str(p))
        .with("metric", Values::Str(metric))
        .with("k", Values::U32(k_col))
        .with("value", Values::F64(values));
    (md, frame)
}

/// The swept key that names a seed.
pub const SEED_KEY: &str = "seed";

/// For a sweep over `seed` (alone or with other keys): per group of runs that differ only in
/// their seed, every metric as mean ± sample sd with its Student-t 95% interval, the model's
/// accuracy likewise, and the report's published cells beside ours with the verdict the
/// interval supports. Markdown and a long frame
/// (`group,method,protocol,metric,k,seeds,mean,sd,ci95_low,ci95_high`); `None` without a seed
/// key or without a group of two or more seeds.
pub fn seed_tables(runs: &[SweepRun]) -> Option<(String, Frame)> {
    let others = |r: &SweepRun| -> String {
        r.overrides
            .iter()
            .filter(|o| o.0 != SEED_KEY)
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !runs
        .iter()
        .all(|r| r.overrides.iter().any(|o| o.0 == SEED_KEY))
    {
        return None;
    }
    let mut groups: Vec<(String, Vec<&SweepRun>)> = Vec::new();
    for r in runs {
        let g = others(r);
        match groups.iter_mut().find(|x| x.0 == g) {
            Some(x) => x.1.push(r),
            None => groups.push((g, vec![r])),
        }
    }
    groups.retain(|g| g.1.len() > 1);
    if groups.is_empty() {
        return None;
    }
    let mut md = String::new();
    let mut cols: (Vec<String>, [Vec<String>; 3], Vec<Option<u32>>) = Default::default();
    let mut stats: [Vec<Option<f64>>; 5] = Default::default();
    for (group, members) in &groups {
        let title = if group.is_empty() {
            String::new()
        } else {
            format!(" ({group})")
        };
        let seeds: Vec<String> = members
            .iter()
            .filter_map(|r| r.overrides.iter().find(|o| o.0 == SEED_KEY))
            .map(|o| o.1.clone())
            .collect();
        let _ = write!(
            md,
            "\n# Across {} seeds{title}: {}\n\nEvery value is the mean ± sample sd over the \
             seeds; the interval is Student's t at 95%.\n",
            members.len(),
            seeds.join(", ")
        );
        let summary = |values: Vec<Option<f64>>| {
            let v: Option<Vec<f64>> = values.into_iter().collect();
            crate::eval::seed_summary(&v?).ok()
        };
        let pm = |s: Option<crate::eval::SeedSummary>| {
            s.map_or("—".into(), |s| format!("{:.4} ± {:.4}", s.mean, s.sd))
        };
        if let Some(acc) = summary(members.iter().map(|r| r.accuracy).collect()) {
            let _ = writeln!(
                md,
                "\nNearest-class test accuracy: {} (95% interval [{:.4}, {:.4}]).",
                pm(Some(acc)),
                acc.ci95_low,
                acc.ci95_high
            );
        }
        let (pairs, ks) = groups_and_ks(members.iter().flat_map(|r| &r.metrics));
        let _ = write!(md, "\n| method | protocol |");
        for k in &ks {
            let _ = write!(md, " mP@{k} |");
        }
        let _ = writeln!(
            md,
            " mAHP@250 | mAHP_mean@250 | ms/query |\n|---|---|{}",
            "---:|".repeat(ks.len() + 3)
        );
        let over = |m: &str, p: &str, metric: &str, k: &str| {
            summary(
                members
                    .iter()
                    .map(|r| lookup(&r.metrics, m, p, metric, k))
                    .collect(),
            )
        };
        for (m, p) in &pairs {
            let _ = write!(md, "| {m} | {p} |");
            for k in &ks {
                let _ = write!(md, " {} |", pm(over(m, p, "mP", &k.to_string())));
            }
            let ms = over(m, p, "query_median_s", "").map_or("—".into(), |s| {
                format!("{:.3} ± {:.3}", s.mean * 1e3, s.sd * 1e3)
            });
            let _ = writeln!(
                md,
                " {} | {} | {ms} |",
                pm(over(m, p, "mAHP", "250")),
                pm(over(m, p, "mAHP_mean", "250"))
            );
        }
        let metrics: Vec<&[(Key, f64)]> = members.iter().map(|r| r.metrics.as_slice()).collect();
        md.push_str(&super::paper::seed_tables(&metrics, members[0].top_iwk).1);
        // Every (method, protocol, metric, k) the first run has, over the group.
        for ((m, p, metric, k), _) in &members[0].metrics {
            let Some(s) = over(m, p, metric, k) else {
                continue;
            };
            cols.0.push(group.clone());
            for (col, x) in cols.1.iter_mut().zip([m, p, metric]) {
                col.push(x.clone());
            }
            cols.2.push(k.parse().ok());
            for (col, v) in
                stats
                    .iter_mut()
                    .zip([s.n as f64, s.mean, s.sd, s.ci95_low, s.ci95_high])
            {
                col.push(Some(v));
            }
        }
    }
    let [m, p, metric] = cols.1;
    let [n, mean, sd, lo, hi] = stats;
    let frame = Frame::new()
        .with("group", Values::Str(cols.0))
        .with("method", Values::Str(m))
        .with("protocol", Values::Str(p))
        .with("metric", Values::Str(metric))
        .with("k", Values::U32(cols.2))
        .with("seeds", Values::F64(n))
        .with("mean", Values::F64(mean))
        .with("sd", Values::F64(sd))
        .with("ci95_low", Values::F64(lo))
        .with("ci95_high", Values::F64(hi));
    Some((md, frame))
}

/// Figures of a one-parameter sweep with numeric values: for each (method, protocol), mP@k and
/// mAHP@k against the swept value (one line per k), and the median query time against it (with
/// `model_s(method)`, the per-image model cost, added as a second line when known). Returns
/// `(file stem, chart)` pairs; empty when the sweep has no single numeric parameter.
pub fn sweep_figures(
    runs: &[SweepRun],
    model_s: &dyn Fn(&str) -> Option<f64>,
) -> Vec<(String, LineChart)> {
    let Some(param) = runs
        .first()
        .and_then(|r| r.overrides.first())
        .map(|o| o.0.clone())
    else {
        return Vec::new();
    };
    let xs: Vec<Option<f64>> = runs
        .iter()
        .map(|r| {
            (r.overrides.len() == 1)
                .then(|| r.overrides[0].1.parse().ok())
                .flatten()
        })
        .collect();
    if xs.iter().any(Option::is_none) {
        return Vec::new();
    }
    let xs: Vec<f64> = xs.into_iter().flatten().collect();
    let short = param.rsplit('.').next().unwrap_or(&param).to_string();
    let (groups, ks) = groups_and_ks(runs.iter().flat_map(|r| &r.metrics));
    let value = |r: &SweepRun, m: &str, p: &str, metric: &str, k: &str| {
        lookup(&r.metrics, m, p, metric, k).unwrap_or(f64::NAN)
    };
    let mut charts = Vec::new();
    for (m, p) in &groups {
        // A method the swept parameter does not touch (e.g. exact search in a topIWK sweep)
        // gets no figures.
        let varies = ks.iter().any(|k| {
            let first = value(&runs[0], m, p, "mP", &k.to_string());
            runs.iter()
                .any(|r| value(r, m, p, "mP", &k.to_string()).to_bits() != first.to_bits())
        });
        if !varies {
            continue;
        }
        for (metric, label) in [
            ("mP", "mP@k"),
            ("mAHP", "mAHP@k"),
            ("mP_hit20", "mP_hit20@k (the report's Tables 3-4 mAP@k)"),
        ] {
            // The report's conditional measure only where the run wrote it.
            let written = |k: &u32| !value(&runs[0], m, p, metric, &k.to_string()).is_nan();
            if metric == "mP_hit20" && !ks.iter().any(written) {
                continue;
            }
            let mut series: Vec<Series> = ks
                .iter()
                .map(|k| Series {
                    label: format!("k = {k}"),
                    points: runs
                        .iter()
                        .zip(&xs)
                        .map(|(r, &x)| (x, value(r, m, p, metric, &k.to_string())))
                        .collect(),
                    published: None,
                })
                .collect();
            if short == "top_iwk" {
                series.extend(published_iwan_points(m, p, metric, &ks));
            }
            charts.push((
                format!("{metric}-vs-{short}-{m}-{p}"),
                LineChart {
                    title: format!("{m}, {p}: {metric}@k vs {short}"),
                    x_label: param.clone(),
                    y_label: label.into(),
                    series,
                    markers_only: false,
                    x_axis: XAxis::Linear,
                    y_axis: XAxis::Linear,
                    legend: Corner::LowerRight,
                },
            ));
        }
        let times: Vec<(f64, f64)> = runs
            .iter()
            .zip(&xs)
            .map(|(r, &x)| (x, value(r, m, p, "query_median_s", "") * 1e3))
            .collect();
        let mut series = vec![Series {
            label: "search only".into(),
            points: times.clone(),
            published: None,
        }];
        if let Some(model) = model_s(m) {
            series.push(Series {
                label: "with the model".into(),
                points: times.iter().map(|&(x, t)| (x, t + model * 1e3)).collect(),
                published: None,
            });
        }
        charts.push((
            format!("time-vs-{short}-{m}-{p}"),
            LineChart {
                title: format!("{m}, {p}: median time per query vs {short}"),
                x_label: param.clone(),
                y_label: "ms per query".into(),
                series,
                markers_only: false,
                x_axis: XAxis::Linear,
                y_axis: XAxis::Linear,
                legend: Corner::LowerRight,
            },
        ));
    }
    charts
}

/// The report's Tables 3 and 4 as points at topIWK 3 and 4, one series per cut-off `k` in
/// `ks` (the series at index `i` is the one for `ks[i]`), where they are the same metric in the
/// same setting as our series: `metric` of `method` under `protocol` (the report's graph,
/// `iwan_report_graph`, on the train database).
fn published_iwan_points(method: &str, protocol: &str, metric: &str, ks: &[u32]) -> Vec<Series> {
    ks.iter()
        .enumerate()
        .filter_map(|(i, &k)| {
            let points: Vec<(f64, f64)> = PUBLISHED
                .iter()
                .filter(|t| t.method == method && t.protocol == protocol)
                .filter_map(|t| {
                    let x = t.top_iwk? as f64;
                    let v = t.values.iter().find(|v| v.0 == metric && v.1 == k)?.2;
                    Some((x, v))
                })
                .collect();
            (!points.is_empty()).then(|| Series {
                label: format!("report, k = {k}"),
                points,
                published: Some(i),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reports_iwan_points_sit_at_topiwk_3_and_4() {
        let s = published_iwan_points("iwan_report_graph", "train_db", "mP_hit20", &[5, 250, 7]);
        assert_eq!(s.len(), 2, "k = 7 is not published");
        // Tables 3 and 4 of the report: "mAP@250" 0.4299 at topIWK 3, 0.4286 at topIWK 4.
        assert_eq!(s[1].points, [(3.0, 0.4299), (4.0, 0.4286)]);
        assert_eq!((s[0].published, s[1].published), (Some(0), Some(1)));
        // The plain mP of the report's own Table 4 rankings, at topIWK 4 only.
        let p = published_iwan_points("iwan_report_graph", "train_db", "mP", &[250]);
        assert_eq!(p[0].points, [(4.0, 0.2520)]);
        // Our own settings are another metric in another setting: no published points.
        assert!(published_iwan_points("iwan", "train_db", "mP_hit20", &[5]).is_empty());
        assert!(published_iwan_points("iwan_db_labels", "train_db", "mP", &[5]).is_empty());
        assert!(published_iwan_points("exact", "train_db", "mP", &[5]).is_empty());
    }

    #[test]
    fn one_row_per_run_per_method_and_protocol() {
        // hand-made metric rows for a pure-function unit test
        let run = |id: &str, iwk: &str, mp: f64| SweepRun {
            id: id.into(),
            overrides: vec![("iwan.top_iwk".into(), iwk.into())],
            metrics: vec![
                (
                    ("iwan".into(), "train_db".into(), "mP".into(), "5".into()),
                    mp,
                ),
                (
                    (
                        "iwan".into(),
                        "train_db".into(),
                        "query_median_s".into(),
                        String::new(),
                    ),
                    0.0005,
                ),
            ],
            accuracy: None,
            model: None,
            stage_seconds: Vec::new(),
            top_iwk: None,
        };
        let runs = [run("a", "1", 0.25), run("b", "2", 0.5)];
        let (md, frame) = sweep_tables("s", &runs);
        assert!(
            md.contains("| iwan.top_iwk | mP@5 | mAHP@250 | ms/query |"),
            "{md}"
        );
        assert!(md.contains("| 1 | 0.2500 | — | 0.5000 |"), "{md}");
        assert!(md.contains("| 2 | 0.5000 | — | 0.5000 |"), "{md}");
        assert_eq!(
            frame.names(),
            [
                "run",
                "iwan.top_iwk",
                "method",
                "protocol",
                "metric",
                "k",
                "value"
            ]
        );
        assert!(
            frame
                .markdown(2)
                .contains("| b | 2 | iwan | train_db | mP | 5 | 0.50 |"),
            "{}",
            frame.markdown(2)
        );
        let figs = sweep_figures(&runs, &|_| Some(0.001));
        let names: Vec<&str> = figs.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "mP-vs-top_iwk-iwan-train_db",
                "mAHP-vs-top_iwk-iwan-train_db",
                "time-vs-top_iwk-iwan-train_db"
            ]
        );
        assert_eq!(figs[0].1.series[0].points, vec![(1.0, 0.25), (2.0, 0.5)]);
        assert_eq!(figs[2].1.series[1].points[0], (1.0, 1.5));
        assert!(
            !md.contains("## The model"),
            "no model section without accuracies"
        );
    }

    #[test]
    fn seeds_are_summarised_per_group_with_the_reports_cells() {
        // hand-made rows for a pure-function unit test: two groups of two seeds
        let run = |seed: &str, h: &str, v: f64| SweepRun {
            id: format!("{seed}-{h}"),
            overrides: vec![("seed".into(), seed.into()), ("model.h".into(), h.into())],
            metrics: vec![(
                (
                    "exact".into(),
                    "report".into(),
                    "mAP_report".into(),
                    "5".into(),
                ),
                v,
            )],
            accuracy: Some(v),
            stage_seconds: Vec::new(),
            model: None,
            top_iwk: None,
        };
        let runs = [
            run("1", "48", 0.60),
            run("2", "48", 0.62),
            run("1", "64", 0.70),
            run("2", "64", 0.70),
        ];
        let (md, frame) = seed_tables(&runs).unwrap();
        assert!(md.contains("# Across 2 seeds (model.h=48): 1, 2"), "{md}");
        assert!(md.contains("# Across 2 seeds (model.h=64): 1, 2"), "{md}");
        // mean 0.61, sd 0.01414: beaten only if the t(0.975, 1) interval clears 0.5656
        assert!(md.contains("| 0.5656 | 0.6100 ± 0.0141 |"), "{md}");
        assert!(md.contains("not separable"), "{md}");
        assert!(
            md.contains("| 0.5656 | 0.7000 ± 0.0000 |") && md.contains("beaten"),
            "{md}"
        );
        assert_eq!(frame.height(), 2);
        // Without a seed key there is nothing to summarise.
        let mut other = runs[0].clone();
        other.overrides.remove(0);
        assert!(seed_tables(&[other]).is_none());
    }

    #[test]
    fn model_section_shows_accuracy_and_stage_seconds() {
        // hand-made rows for a pure-function unit test
        let run = SweepRun {
            id: "r".into(),
            overrides: vec![("model.input_size".into(), "224".into())],
            metrics: vec![(
                (
                    "exact".into(),
                    "leave_one_out".into(),
                    "mAHP".into(),
                    "250".into(),
                ),
                0.75,
            )],
            accuracy: Some(0.6),
            stage_seconds: vec![
                ("features".into(), 1200.0),
                ("views".into(), 900.0),
                ("train".into(), 30.5),
            ],
            model: Some("wide".into()),
            top_iwk: None,
        };
        let (md, frame) = sweep_tables("s", &[run]);
        assert!(
            md.contains("| 224 | wide | 0.6000 | 0.7500 | 1200.0 | 900.0 | 30.5 | — | — |"),
            "{md}"
        );
        let csv = frame.markdown(3);
        assert!(
            csv.contains("| r | 224 | model |  | test_accuracy | — | 0.600 |"),
            "{csv}"
        );
        assert!(csv.contains("seconds_features"), "{csv}");
        assert!(csv.contains("seconds_views"), "{csv}");
    }
}
