//! Tables from evaluation results: the long-format `metrics.csv` that scripts read, the HP@k
//! curves, and a Markdown summary for people. Protocols always stay in separate rows.
//! [`check`] compares a run with a stored baseline.

pub mod check;
pub mod figures;
pub mod paper;
pub mod sweep;

use crate::config::{Config, MetricName};
use crate::eval::Semantics as _;
use crate::eval::retrieval::{MethodResult, metric_rows};
use std::fmt::Write as _;

/// `method,protocol,metric,k,value`, one row per number, for the metric families `families`.
pub fn metrics_csv(results: &[MethodResult], families: &[MetricName]) -> String {
    let mut out = String::from("method,protocol,metric,k,value\n");
    for r in results {
        for (method, protocol, metric, k, v) in metric_rows(r, families) {
            let k = k.map(|k| k.to_string()).unwrap_or_default();
            let _ = writeln!(out, "{method},{protocol},{metric},{k},{v}");
        }
    }
    out
}

/// `method,protocol,k,hp`: mean HP@k for k = 1..K.
pub fn hp_curves_csv(results: &[MethodResult]) -> String {
    let mut out = String::from("method,protocol,k,hp\n");
    for r in results {
        let (method, protocol) = (&r.method, r.protocol.as_str());
        for (i, hp) in r.report.hp_curve.iter().enumerate() {
            let _ = writeln!(out, "{method},{protocol},{},{hp}", i + 1);
        }
    }
    out
}

/// A Markdown table per protocol: mP@k, mAHP@k (trapezoid) and the report's mAHP_mean@k per
/// method, with latency and throughput.
pub fn summary_markdown(cfg: &Config, results: &[MethodResult]) -> String {
    let mut out = format!(
        "# {}: retrieval summary\n\nQueries: {} test images. mP@k is mean precision at k (not the report's \"mAP@k\": that is mAP_report, in metrics.csv and tables/paper.md); \
         mAHP@k uses the trapezoid rule (Barz & Denzler); mAHP_mean@k is the report's plain mean of HP@1..HP@k.\n",
        cfg.name,
        results.first().map(|r| r.report.n_queries).unwrap_or(0)
    );
    for &protocol in &cfg.eval.protocols {
        let rows: Vec<&MethodResult> = results.iter().filter(|r| r.protocol == protocol).collect();
        if rows.is_empty() {
            continue;
        }
        let db = if protocol.queries_in_db() {
            "test split"
        } else {
            "train split"
        };
        let note = match protocol {
            crate::config::Protocol::Report => "the query stays in the database, as in the report",
            crate::config::Protocol::LeaveOneOut => "each query is removed from its own ranking",
            crate::config::Protocol::TrainDb => "database = train split, queries = test split",
        };
        let _ = write!(
            out,
            "\n## Protocol `{protocol}` (database: {db}; {note})\n\n| method |"
        );
        let ks = &cfg.eval.ks;
        for k in ks {
            let _ = write!(out, " mP@{k} |");
        }
        for k in ks {
            let _ = write!(out, " mAHP@{k} |");
        }
        for k in ks {
            let _ = write!(out, " mAHP_mean@{k} |");
        }
        out.push_str(" median ms/query | p95 ms/query | queries/s |\n|---|");
        out.push_str(&"---:|".repeat(3 * ks.len() + 3));
        out.push('\n');
        for r in rows {
            let _ = write!(out, "| {} |", r.method);
            for m in &r.report.at_k {
                let _ = write!(out, " {:.4} |", m.mean_precision);
            }
            for m in &r.report.at_k {
                let _ = write!(out, " {:.4} |", m.mean_ahp);
            }
            for m in &r.report.at_k {
                let _ = write!(out, " {:.4} |", m.mean_ahp_mean);
            }
            let t = &r.timing;
            let _ = writeln!(
                out,
                " {:.3} | {:.3} | {:.0} |",
                t.query_median_s * 1e3,
                t.query_p95_s * 1e3,
                t.qps
            );
        }
    }
    out
}
