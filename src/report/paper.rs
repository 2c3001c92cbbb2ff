//! The report's Tables 1-4 regenerated from a run's `metrics.csv`, like for like: each published
//! number stands beside our value of the same metric in the same setting, as the report's code
//! computed it (docs/metrics.md), with the difference; our other metrics and our own settings
//! stand in rows and sections of their own, never mixed with the published ones.
//!
//! * Tables 1-2 print `mAP_report` (the report's "mAP@k", `(1/k) Σ rel_i P@i`) and `mAHP_mean`
//!   under the `report` protocol; Table 2 is hash + re-rank with the report's shortlist
//!   `N' = k = 250` (`hamming_rerank_report`). Two of its cells are Algorithm 2's values, by a
//!   copy bug in the report's code, and are marked.
//! * Tables 3-4 print `mP_hit20` and `mAHP_hit20` (the report's "mAP@k" and "mAHP@k", averaged
//!   over only the queries with a hit in the first 20) for IWAN on the report's own graph and
//!   its 500 queries (`iwan_report_graph`, train database); a run fills the table of its own
//!   topIWK. Table 4 also carries the plain mP@k of the report's own rankings, measured here.
//!
//! [`seed_tables`] sets every published cell beside our mean ± sd over the runs of a seed sweep,
//! with the 95% interval that decides whether the cell is beaten.

use super::check::{Key, lookup};
use crate::config::{REPORT_GRAPH_METHOD, REPORT_TABLE2_METHOD};
use crate::eval::stats::seed_summary;
use crate::store::frame::{Frame, Values};
use std::fmt::Write as _;

/// One published table.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// "Table 1" ...
    pub name: &'static str,
    /// What it shows.
    pub title: &'static str,
    /// Our method that runs the report's setting of this table.
    pub method: &'static str,
    /// That setting, in words.
    pub setting: &'static str,
    /// The protocol the report used (the difference column compares with it).
    pub protocol: &'static str,
    /// topIWK for the IWAN tables.
    pub top_iwk: Option<usize>,
    /// `(metric, k, value)` as published, each metric named as `metrics.csv` names the
    /// report's definition.
    pub values: &'static [(&'static str, u32, f64)],
    /// `(metric, k, note)` on published cells (k = 0: every k of that metric).
    pub notes: &'static [(&'static str, u32, &'static str)],
    /// Our other metrics, shown in rows of their own without a published value.
    pub also: &'static [&'static str],
    /// Our own settings of the same method family, in sections of their own: `(method, name)`.
    pub ours: &'static [(&'static str, &'static str)],
    /// Seconds per query as published: for Tables 1-2 the mean of `time.process_time()` per
    /// query (CPU time over all threads), for Tables 3-4 the mean wall time.
    pub query_s: f64,
    /// Seconds per query with the model (inference, or the word model for IWAN).
    pub with_model_s: f64,
}

const COPY_BUG: &str = "Algorithm 2's value: the report's test_model.py (blob 04a5169, lines \
                        291-294) printed method 1's mhp1_5 in the method-2 block";
const ROUNDED: &str = "the report's stored value (IWKResults[4] of boosted_results.pickle), \
                       rounded; the report printed mAP in its place";
const REPORT_RANKINGS: &str = "plain mP@k of the report's own Table 4 rankings (shared data \
                               report/iwan_table4_rankings.csv), measured by harness evaluate";

/// The IWAN settings of ours that stand beside Tables 3-4 in sections of their own.
const OUR_IWAN: &[(&str, &str)] = &[
    ("iwan", "ours: predicted words only, all 10,000 queries"),
    (
        "iwan_db_labels",
        "ours with database label words (fine and coarse), all 10,000 queries",
    ),
];

/// The report's four tables (DESIGN §5; the metric each printed number really is, from its
/// code, in docs/metrics.md).
pub const PUBLISHED: [Published; 4] = [
    Published {
        name: "Table 1",
        title: "exact search over the embeddings",
        method: "exact",
        setting: "the report's protocol: the query stays in the test database",
        protocol: "report",
        top_iwk: None,
        values: &[
            ("mAP_report", 1, 1.0),
            ("mAP_report", 5, 0.5656),
            ("mAP_report", 20, 0.4119),
            ("mAP_report", 100, 0.2664),
            ("mAP_report", 250, 0.1321),
            ("mAHP_mean", 1, 1.0),
            ("mAHP_mean", 5, 0.8865),
            ("mAHP_mean", 20, 0.8275),
            ("mAHP_mean", 100, 0.7916),
            ("mAHP_mean", 250, 0.7942),
        ],
        notes: &[],
        also: &["mP", "mAHP"],
        ours: &[],
        query_s: 4.67e-3,
        with_model_s: 220e-3 + 4.67e-3,
    },
    Published {
        name: "Table 2",
        title: "hash shortlist + exact re-rank",
        method: REPORT_TABLE2_METHOD,
        setting: "the report's code: one Hamming top-250 (N' = k = 250) re-ranked by cosine, \
                  every cut-off a prefix; the query stays in the test database",
        protocol: "report",
        top_iwk: None,
        values: &[
            ("mAP_report", 5, 0.5617),
            ("mAP_report", 20, 0.4057),
            ("mAP_report", 100, 0.2559),
            ("mAP_report", 250, 0.1236),
            ("mAHP_mean", 5, 0.8865),
            ("mAHP_mean", 20, 0.8243),
            ("mAHP_mean", 100, 0.7838),
            ("mAHP_mean", 250, 0.7786),
        ],
        notes: &[("mAHP_mean", 5, COPY_BUG)],
        also: &["mP", "mAHP"],
        ours: &[(
            "hamming_rerank",
            "ours: N' = 2k per cut-off (the report's text)",
        )],
        query_s: 4.48e-3,
        with_model_s: 220e-3 + 4.48e-3,
    },
    Published {
        name: "Table 3",
        title: "IWAN, topIWK = 3, topWWK = 4",
        method: REPORT_GRAPH_METHOD,
        setting: "the report's graph and its first 500 test queries, train database",
        protocol: "train_db",
        top_iwk: Some(3),
        values: &[
            ("mP_hit20", 1, 0.5227),
            ("mP_hit20", 5, 0.5356),
            ("mP_hit20", 20, 0.5124),
            ("mP_hit20", 100, 0.4676),
            ("mP_hit20", 250, 0.4299),
        ],
        notes: &[],
        also: &["mP", "mAHP"],
        ours: OUR_IWAN,
        query_s: 0.42,
        with_model_s: 2.54,
    },
    Published {
        name: "Table 4",
        title: "IWAN, topIWK = 4, topWWK = 4",
        method: REPORT_GRAPH_METHOD,
        setting: "the report's graph and its first 500 test queries, train database",
        protocol: "train_db",
        top_iwk: Some(4),
        values: &[
            ("mP_hit20", 1, 0.5210),
            ("mP_hit20", 5, 0.5346),
            ("mP_hit20", 20, 0.5111),
            ("mP_hit20", 100, 0.4662),
            ("mP_hit20", 250, 0.4286),
            ("mAHP_hit20", 1, 0.5951),
            ("mAHP_hit20", 5, 0.6027),
            ("mAHP_hit20", 20, 0.5944),
            ("mAHP_hit20", 100, 0.5818),
            ("mAHP_hit20", 250, 0.5688),
            ("mP", 1, 0.3220),
            ("mP", 5, 0.3072),
            ("mP", 20, 0.3004),
            ("mP", 100, 0.2776),
            ("mP", 250, 0.2520),
        ],
        notes: &[("mAHP_hit20", 0, ROUNDED), ("mP", 0, REPORT_RANKINGS)],
        also: &["mAHP"],
        ours: OUR_IWAN,
        query_s: 0.50,
        with_model_s: 2.7,
    },
];

impl Published {
    /// The note on a published cell, if any.
    pub fn note(&self, metric: &str, k: u32) -> Option<&'static str> {
        self.notes
            .iter()
            .find(|n| n.0 == metric && (n.1 == 0 || n.1 == k))
            .map(|n| n.2)
    }

    /// Whether a run with this topIWK and topWWK fills the table.
    fn fits(&self, facts: &RunFacts) -> bool {
        self.top_iwk.is_none() || (self.top_iwk == facts.top_iwk && facts.top_wwk == Some(4))
    }

    /// Published cut-offs, in order.
    fn ks(&self) -> Vec<u32> {
        let mut ks: Vec<u32> = self.values.iter().map(|v| v.1).collect();
        ks.sort_unstable();
        ks.dedup();
        ks
    }
}

/// What a run contributes besides its metrics.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    /// The run's topIWK (when IWAN ran).
    pub top_iwk: Option<usize>,
    /// The run's topWWK.
    pub top_wwk: Option<usize>,
    /// Seconds per image of the embedding network (encoder + decoder), where known.
    pub inference_s: Option<f64>,
    /// Seconds per image of IWAN's word model, where known.
    pub word_model_s: Option<f64>,
    /// IWAN's word model, as the tables name it.
    pub word_model: Option<&'static str>,
    /// The network that produced the embeddings and codes, encoder and decoder, e.g.
    /// `efficientnet_lite0 at 160 px, frozen -> wide (T = 1024, ...)`.
    pub model: Option<String>,
}

const PROTOCOLS: [&str; 3] = ["report", "leave_one_out", "train_db"];

/// Long-format rows of the paper tables.
#[derive(Default)]
struct Rows {
    table: Vec<String>,
    method: Vec<String>,
    metric: Vec<String>,
    k: Vec<Option<u32>>,
    published: Vec<Option<f64>>,
    ours: [Vec<Option<f64>>; 3],
    difference: Vec<Option<f64>>,
    note: Vec<String>,
}

/// One row of [`Rows`].
struct Row<'a> {
    table: &'a str,
    method: &'a str,
    metric: &'a str,
    k: Option<u32>,
    published: Option<f64>,
    ours: [Option<f64>; 3],
    difference: Option<f64>,
    note: Option<&'a str>,
}

impl Rows {
    fn push(&mut self, r: Row<'_>) {
        self.table.push(r.table.into());
        self.method.push(r.method.into());
        self.metric.push(r.metric.into());
        self.k.push(r.k);
        self.published.push(r.published);
        for (col, v) in self.ours.iter_mut().zip(r.ours) {
            col.push(v);
        }
        self.difference.push(r.difference);
        self.note.push(r.note.unwrap_or_default().into());
    }

    fn frame(self) -> Frame {
        let [report, loo, train] = self.ours;
        Frame::new()
            .with("table", Values::Str(self.table))
            .with("method", Values::Str(self.method))
            .with("metric", Values::Str(self.metric))
            .with("k", Values::U32(self.k))
            .with("published", Values::F64(self.published))
            .with("report", Values::F64(report))
            .with("leave_one_out", Values::F64(loo))
            .with("train_db", Values::F64(train))
            .with("difference", Values::F64(self.difference))
            .with("note", Values::Str(self.note))
    }
}

fn cell(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "—".into())
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{:.3} ms", v * 1e3))
        .unwrap_or_else(|| "—".into())
}

/// A metric lookup: `(method, protocol, metric, k)` to our value.
type Get<'a> = dyn Fn(&str, &str, &str, Option<u32>) -> Option<f64> + 'a;

/// The tables this run can fill: Markdown, and a long frame with the columns
/// `table,method,metric,k,published,report,leave_one_out,train_db,difference,note` (null where
/// absent).
pub fn paper_tables(metrics: &[(Key, f64)], facts: &RunFacts) -> (String, Frame) {
    let get = |method: &str, protocol: &str, metric: &str, k: Option<u32>| {
        let k = k.map(|k| k.to_string()).unwrap_or_default();
        lookup(metrics, method, protocol, metric, &k)
    };
    let mut md = String::from(
        "# The report's tables, regenerated like for like\n\nEach published number stands beside \
         ours for the same metric, computed as the report's code computed it, in the report's \
         setting; the difference is ours minus the report's under the report's protocol \
         (`report` for Tables 1-2, `train_db` for Tables 3-4). `mAP_report@k` is the report's \
         Tables 1-2 \"mAP@k\", (1/k) Σ rel_i P@i; `mAHP_mean@k` its plain mean of HP@1..HP@k; \
         `mP_hit20@k` and `mAHP_hit20@k` its Tables 3-4 \"mAP@k\" and \"mAHP@k\", averaged over \
         only the queries with a hit in the first 20. Our other metrics and our own settings \
         follow in rows and sections of their own. Definitions: docs/metrics.md. This is one \
         run, one seed: a claim needs the seed sweep (configs/seeds.yaml).\n",
    );
    let mut rows = Rows::default();
    for t in PUBLISHED.iter().filter(|t| t.fits(facts)) {
        published_section(&mut md, &mut rows, t, facts, &get);
        for &(method, name) in t.ours {
            ours_section(&mut md, &mut rows, t, method, name, OUR_METRICS, &get);
        }
    }
    (md, rows.frame())
}

/// The metrics of our own settings' sections.
const OUR_METRICS: &[&str] = &["mP", "mAHP", "mAHP_mean", "mAP_report", "mP_hit20"];

/// The report's setting of `t`: each published cell beside ours, then our other metrics.
fn published_section(md: &mut String, rows: &mut Rows, t: &Published, facts: &RunFacts, get: &Get) {
    let protocols: Vec<&str> = PROTOCOLS
        .iter()
        .copied()
        .filter(|p| {
            t.values
                .iter()
                .any(|v| get(t.method, p, v.0, Some(v.1)).is_some())
        })
        .collect();
    if protocols.is_empty() {
        return;
    }
    let setup = match (t.top_iwk, facts.word_model, &facts.model) {
        (Some(_), Some(s), _) => format!("; word model: {s}"),
        (None, _, Some(m)) => format!("; model: {m}"),
        _ => String::new(),
    };
    let others: Vec<&str> = protocols
        .iter()
        .copied()
        .filter(|p| *p != t.protocol)
        .collect();
    let _ = write!(
        md,
        "\n## {}: {}, the report's setting (`{}`{setup})\n\n{}.\n\n\
         | metric (the report's definition) | report | ours, `{}` | ours − report |",
        t.name, t.title, t.method, t.setting, t.protocol
    );
    for p in &others {
        let _ = write!(md, " ours, `{p}` |");
    }
    let _ = writeln!(
        md,
        " note |\n|---|---:|---:|---:|{}---|",
        "---:|".repeat(others.len())
    );
    let mut footnotes: Vec<&str> = Vec::new();
    for &(metric, k, published) in t.values {
        let same = get(t.method, t.protocol, metric, Some(k));
        let difference = same.map(|v| v - published);
        let note = t.note(metric, k);
        let marker = note.map(|n| {
            let i = footnotes.iter().position(|f| *f == n).unwrap_or_else(|| {
                footnotes.push(n);
                footnotes.len() - 1
            });
            format!(" [{}]", i + 1)
        });
        let _ = write!(
            md,
            "| {metric}@{k} | {published:.4} | {} | {} |",
            cell(same),
            difference
                .map(|d| format!("{d:+.4}"))
                .unwrap_or_else(|| "—".into())
        );
        for p in &others {
            let _ = write!(md, " {} |", cell(get(t.method, p, metric, Some(k))));
        }
        let _ = writeln!(md, "{} |", marker.unwrap_or_default());
        rows.push(Row {
            table: t.name,
            method: t.method,
            metric,
            k: Some(k),
            published: Some(published),
            ours: PROTOCOLS.map(|p| get(t.method, p, metric, Some(k))),
            difference,
            note,
        });
    }
    for (i, f) in footnotes.iter().enumerate() {
        let _ = writeln!(md, "\n[{}] {f}.", i + 1);
    }
    if t.values.iter().any(|v| v.0.ends_with("_hit20"))
        && let Some(n) = get(t.method, t.protocol, "mP_hit20_queries", None)
    {
        let a = get(t.method, t.protocol, "mAHP_hit20_queries", None);
        let _ = writeln!(
            md,
            "\nQueries counted: {n:.0} for mP_hit20 (the report's {}: {} of 500), {} for \
             mAHP_hit20 (the report's Table 4: 473).",
            t.name,
            if t.top_iwk == Some(3) { 308 } else { 309 },
            a.map_or("—".into(), |a| format!("{a:.0}"))
        );
    }
    let (model_name, model, timed) = match t.top_iwk {
        Some(_) => ("word model", facts.word_model_s, "mean wall time"),
        None => ("inference", facts.inference_s, "mean CPU time"),
    };
    let ours = get(t.method, t.protocol, "query_median_s", None);
    let _ = writeln!(
        md,
        "\nTime per query: the report {} ({timed}), ours {} (median wall time); with the \
         model ({model_name}): the report {}, ours {}.",
        ms(Some(t.query_s)),
        ms(ours),
        ms(Some(t.with_model_s)),
        ms(ours.zip(model).map(|(a, b)| a + b))
    );
    rows.push(Row {
        table: t.name,
        method: t.method,
        metric: "query_median_s",
        k: None,
        published: Some(t.query_s),
        ours: PROTOCOLS.map(|p| get(t.method, p, "query_median_s", None)),
        difference: None,
        note: Some("the report: mean per query (CPU time for Tables 1-2); ours: median wall time"),
    });
    ours_section(
        md,
        rows,
        t,
        t.method,
        "our other metrics, same setting",
        t.also,
        get,
    );
}

/// A section of ours only (no published value): `metrics` at the table's cut-offs under every
/// protocol the run has for `method`.
fn ours_section(
    md: &mut String,
    rows: &mut Rows,
    t: &Published,
    method: &str,
    name: &str,
    metrics: &[&str],
    get: &Get,
) {
    let ks = t.ks();
    let has = |p: &str, m: &str| ks.iter().any(|&k| get(method, p, m, Some(k)).is_some());
    let protocols: Vec<&str> = PROTOCOLS
        .iter()
        .copied()
        .filter(|p| metrics.iter().any(|m| has(p, m)))
        .collect();
    if protocols.is_empty() {
        return;
    }
    let _ = write!(
        md,
        "\n### {}, {name} (`{method}`; no published value)\n\n| metric |",
        t.name
    );
    for p in &protocols {
        let _ = write!(md, " ours, `{p}` |");
    }
    let _ = writeln!(md, "\n|---|{}", "---:|".repeat(protocols.len()));
    for metric in metrics {
        for &k in &ks {
            let ours = PROTOCOLS.map(|p| get(method, p, metric, Some(k)));
            if ours.iter().all(Option::is_none) {
                continue;
            }
            let _ = write!(md, "| {metric}@{k} |");
            for p in &protocols {
                let _ = write!(md, " {} |", cell(get(method, p, metric, Some(k))));
            }
            md.push('\n');
            rows.push(Row {
                table: t.name,
                method,
                metric,
                k: Some(k),
                published: None,
                ours,
                difference: None,
                note: None,
            });
        }
    }
}

/// How one published cell fares against our values over seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedCell {
    /// "Table 1" ...
    pub table: &'static str,
    /// Our method in the report's setting.
    pub method: &'static str,
    /// Metric name in `metrics.csv`.
    pub metric: &'static str,
    /// Cut-off.
    pub k: u32,
    /// The published value.
    pub published: f64,
    /// Ours over the seeds.
    pub ours: crate::eval::SeedSummary,
    /// `beaten`, `below` or `not separable`: the 95% interval decides.
    pub verdict: &'static str,
    /// The note on the published cell.
    pub note: Option<&'static str>,
}

/// Every published cell that the runs fill, beside our mean ± sd over `runs` (the metrics of
/// each seed, all with IWAN at `top_iwk`, which picks Table 3 or 4), its 95% interval and the
/// verdict it supports; with Markdown and a long frame.
pub fn seed_tables(
    runs: &[&[(Key, f64)]],
    top_iwk: Option<usize>,
) -> (Vec<SeedCell>, String, Frame) {
    let mut cells = Vec::new();
    for t in PUBLISHED
        .iter()
        .filter(|t| t.top_iwk.is_none() || t.top_iwk == top_iwk)
    {
        for &(metric, k, published) in t.values {
            let values: Vec<f64> = runs
                .iter()
                .filter_map(|m| lookup(m, t.method, t.protocol, metric, &k.to_string()))
                .collect();
            if values.len() != runs.len() {
                continue;
            }
            let Ok(ours) = seed_summary(&values) else {
                continue;
            };
            let verdict = if ours.above(published) {
                "beaten"
            } else if ours.below(published) {
                "below"
            } else {
                "not separable"
            };
            cells.push(SeedCell {
                table: t.name,
                method: t.method,
                metric,
                k,
                published,
                ours,
                verdict,
                note: t.note(metric, k),
            });
        }
    }
    let mut md = format!(
        "\n## The report's tables over {} seeds, like for like\n\nOurs as mean ± sample sd over \
         the seeds, with the Student-t 95% interval of the mean. A cell is `beaten` only when the \
         whole interval lies above the published value, and `below` when it lies below.\n\n\
         | table | method | metric (the report's definition) | report | ours, mean ± sd | 95% \
         interval | ours − report | verdict | note |\n|---|---|---|---:|---:|---:|---:|---|---|\n",
        runs.len()
    );
    for c in &cells {
        let _ = writeln!(
            md,
            "| {} | `{}` | {}@{} | {:.4} | {:.4} ± {:.4} | [{:.4}, {:.4}] | {:+.4} | {} | {} |",
            c.table,
            c.method,
            c.metric,
            c.k,
            c.published,
            c.ours.mean,
            c.ours.sd,
            c.ours.ci95_low,
            c.ours.ci95_high,
            c.ours.mean - c.published,
            c.verdict,
            c.note.unwrap_or_default()
        );
    }
    let num = |f: fn(&SeedCell) -> f64| Values::F64(cells.iter().map(|c| Some(f(c))).collect());
    let text = |f: fn(&SeedCell) -> &str| Values::Str(cells.iter().map(|c| f(c).into()).collect());
    let frame = Frame::new()
        .with("table", text(|c| c.table))
        .with("method", text(|c| c.method))
        .with("metric", text(|c| c.metric))
        .with("k", Values::U32(cells.iter().map(|c| Some(c.k)).collect()))
        .with("published", num(|c| c.published))
        .with("seeds", num(|c| c.ours.n as f64))
        .with("mean", num(|c| c.ours.mean))
        .with("sd", num(|c| c.ours.sd))
        .with("ci95_low", num(|c| c.ours.ci95_low))
        .with("ci95_high", num(|c| c.ours.ci95_high))
        .with("verdict", text(|c| c.verdict));
    (cells, md, frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(m: &str, p: &str, n: &str, k: &str) -> Key {
        (m.into(), p.into(), n.into(), k.into())
    }

    #[test]
    fn published_cells_meet_the_same_metric_in_the_same_setting() {
        // hand-made metric rows for a pure-function unit test
        let metrics = vec![
            (key("exact", "report", "mAP_report", "5"), 0.5),
            (key("exact", "report", "mP", "5"), 0.7),
            (key("exact", "leave_one_out", "mAP_report", "5"), 0.4),
            (key("exact", "report", "query_median_s", ""), 0.001),
            (key("hamming_rerank", "report", "mP", "5"), 0.6),
            (key("iwan_report_graph", "train_db", "mP_hit20", "5"), 0.6),
            (
                key("iwan_report_graph", "train_db", "mP_hit20_queries", ""),
                300.0,
            ),
            (key("iwan", "train_db", "mP", "5"), 0.3),
        ];
        let facts = RunFacts {
            top_iwk: Some(4),
            top_wwk: Some(4),
            inference_s: Some(0.002),
            ..RunFacts::default()
        };
        let (md, frame) = paper_tables(&metrics, &facts);
        // Table 1: the report's mAP@5 beside our mAP_report@5, never beside mP@5.
        assert!(
            md.contains("| mAP_report@5 | 0.5656 | 0.5000 | -0.0656 | 0.4000 | |"),
            "{md}"
        );
        assert!(
            md.contains("| mP@5 | 0.7000 |"),
            "mP in a row of its own: {md}"
        );
        // Table 2's like-for-like rows need hamming_rerank_report; ours (N' = 2k) stands alone.
        assert!(!md.contains("\n## Table 2"), "{md}");
        assert!(md.contains("### Table 2, ours: N' = 2k"), "{md}");
        assert!(
            md.contains("| mP_hit20@5 | 0.5346 | 0.6000 | +0.0654 |"),
            "{md}"
        );
        assert!(md.contains("Queries counted: 300 for mP_hit20"), "{md}");
        assert!(!md.contains("Table 3"), "topIWK 4 fills Table 4 only: {md}");
        assert!(
            md.contains("### Table 4, ours: predicted words only"),
            "{md}"
        );
        let table = frame.markdown(4);
        assert!(
            table.contains(
                "| Table 1 | exact | mAP_report | 5 | 0.5656 | 0.5000 | 0.4000 | — | -0.0656 |"
            ),
            "{table}"
        );
    }

    #[test]
    fn a_cell_is_beaten_only_when_the_interval_says_so() {
        // hand-made metric rows for a pure-function unit test: three seeds
        let run = |v: f64| vec![(key("exact", "report", "mAP_report", "5"), v)];
        let (a, b, c) = (run(0.60), run(0.61), run(0.62));
        let (cells, md, _) = seed_tables(&[&a, &b, &c], None);
        let cell = cells
            .iter()
            .find(|c| c.metric == "mAP_report" && c.k == 5)
            .unwrap();
        assert_eq!(cell.verdict, "beaten", "0.61 ± 0.01 against 0.5656");
        assert_eq!(
            cells.len(),
            1,
            "cells without values in every run are left out"
        );
        assert!(
            md.contains("| Table 1 | `exact` | mAP_report@5 | 0.5656 | 0.6100 ± 0.0100 |"),
            "{md}"
        );
        let (d, e) = (run(0.55), run(0.58));
        let (cells, _, _) = seed_tables(&[&d, &e], None);
        assert_eq!(
            cells[0].verdict, "not separable",
            "t(0.975, 1) = 12.7 is wide"
        );
        // IWAN runs at topIWK 4 fill Table 4, never Table 3 (the same method and metric).
        let iwan = |v: f64| vec![(key("iwan_report_graph", "train_db", "mP_hit20", "5"), v)];
        let (f, g) = (iwan(0.5), iwan(0.6));
        let (cells, _, _) = seed_tables(&[&f, &g], Some(4));
        let tables: Vec<&str> = cells.iter().map(|c| c.table).collect();
        assert_eq!(tables, ["Table 4"]);
        assert!(seed_tables(&[&f, &g], None).0.is_empty());
    }
}
