//! `harness check`: compare a run's `metrics.csv` with a stored baseline, direction-aware.
//!
//! Quality metrics (`mP`, `mAP`, `mHP`, `mAHP`, `mAHP_mean`, `AP_full`) may not drop by more than
//! an absolute tolerance. Latencies and build times may not grow past a generous ratio (and an
//! absolute floor, so microsecond noise never counts), and throughput may not fall below the
//! baseline divided by that ratio: timings move with the machine's load, so only large
//! slowdowns count. Index sizes may not grow. Every baseline row
//! must still exist in the run; a metric that disappeared is an error that lists both sets.
//!
//! With [`Tolerances::both_ways`] a quality metric that *rose* by more than the tolerance is
//! flagged too: on a deterministic config a jump means a changed protocol or a leak (a query
//! finding itself, test labels reaching training), not progress.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Why a comparison could not be made (a regression is not an error: see [`Comparison`]).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not a `method,protocol,metric,k,value` CSV.
    #[error("{path}: line {line}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Baseline rows that the run does not have.
    #[error(
        "the baseline {baseline} has {} metric(s) that the run does not report: {}\nthe run reports: {}",
        .missing.len(), .missing.join(", "), .available.join(", ")
    )]
    MissingMetrics {
        /// The baseline file.
        baseline: PathBuf,
        /// Keys present in the baseline only.
        missing: Vec<String>,
        /// Keys the run has.
        available: Vec<String>,
    },
}

/// `(method, protocol, metric, k)`.
pub type Key = (String, String, String, String);

/// How a metric is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Higher is better; may drop by at most the tolerance.
    Quality,
    /// Lower is better; may grow by at most the time ratio.
    Time,
    /// Higher is better; may fall by at most the time ratio.
    Throughput,
    /// Lower is better; may not grow at all.
    Size,
    /// Recorded, not judged.
    Info,
}

/// The direction of a metric name.
pub fn direction(metric: &str) -> Direction {
    match metric {
        "mP" | "mAP" | "mHP" | "mAHP" | "mAHP_mean" | "AP_full" | "mAP_report" | "mP_hit20"
        | "mAHP_hit20" => Direction::Quality,
        "query_median_s" | "query_p95_s" | "query_mean_s" | "build_s" => Direction::Time,
        "qps" => Direction::Throughput,
        "bytes_per_item" => Direction::Size,
        _ => Direction::Info,
    }
}

/// One compared row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Which metric.
    pub key: Key,
    /// Baseline value.
    pub baseline: f64,
    /// Run value.
    pub current: f64,
    /// Whether it regressed.
    pub regressed: bool,
    /// Whether a quality metric rose beyond the tolerance (judged only with `both_ways`).
    pub jumped: bool,
}

/// The result of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Every baseline row, in file order.
    pub rows: Vec<Row>,
}

impl Comparison {
    /// Rows that regressed.
    pub fn regressions(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.regressed)
    }

    /// Rows that regressed or jumped: what fails the check.
    pub fn flagged(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.regressed || r.jumped)
    }

    /// A Markdown table of every row, regressions marked.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| method | protocol | metric | k | baseline | run | change | verdict |\n|---|---|---|---:|---:|---:|---:|---|\n",
        );
        for r in &self.rows {
            let (m, p, metric, k) = &r.key;
            let change = r.current - r.baseline;
            let verdict = match (r.regressed, r.jumped, direction(metric)) {
                (true, _, _) => "REGRESSION",
                (_, true, _) => "JUMP (suspicious)",
                (_, _, Direction::Info) => "info",
                _ => "ok",
            };
            let _ = writeln!(
                out,
                "| {m} | {p} | {metric} | {k} | {:.6} | {:.6} | {change:+.6} | {verdict} |",
                r.baseline, r.current
            );
        }
        out
    }
}

/// The value of `(method, protocol, metric, k)` in metric rows (`k` empty where it does not
/// apply).
pub fn lookup(
    metrics: &[(Key, f64)],
    method: &str,
    protocol: &str,
    metric: &str,
    k: &str,
) -> Option<f64> {
    metrics
        .iter()
        .find(|((m, p, n, kk), _)| m == method && p == protocol && n == metric && kk == k)
        .map(|r| r.1)
}

/// The `(method, protocol)` pairs of metric rows in first-seen order, and the sorted cut-offs
/// `k` of their `mP` rows.
pub fn groups_and_ks<'a>(
    metrics: impl IntoIterator<Item = &'a (Key, f64)>,
) -> (Vec<(String, String)>, Vec<u32>) {
    let mut groups: Vec<(String, String)> = Vec::new();
    let mut ks: Vec<u32> = Vec::new();
    for ((m, p, metric, k), _) in metrics {
        if !groups.iter().any(|g| g.0 == *m && g.1 == *p) {
            groups.push((m.clone(), p.clone()));
        }
        if metric == "mP"
            && let Ok(k) = k.parse::<u32>()
            && !ks.contains(&k)
        {
            ks.push(k);
        }
    }
    ks.sort_unstable();
    (groups, ks)
}

/// Reads a `method,protocol,metric,k,value` CSV into an ordered list.
pub fn read_metrics(path: &Path) -> Result<Vec<(Key, f64)>, CheckError> {
    let text = std::fs::read_to_string(path).map_err(|source| CheckError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = text.lines().enumerate();
    let bad = |line: usize, message: String| CheckError::Format {
        path: path.to_path_buf(),
        line,
        message,
    };
    match lines.next() {
        Some((_, h)) if h.trim() == "method,protocol,metric,k,value" => {}
        Some((_, h)) => {
            return Err(bad(
                1,
                format!("header `{h}`, expected `method,protocol,metric,k,value`"),
            ));
        }
        None => return Err(bad(1, "empty file".into())),
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 5 {
            return Err(bad(i + 1, format!("{} fields, expected 5", f.len())));
        }
        let value: f64 = f[4]
            .trim()
            .parse()
            .map_err(|_| bad(i + 1, format!("value `{}` is not a number", f[4])))?;
        rows.push(((f[0].into(), f[1].into(), f[2].into(), f[3].into()), value));
    }
    Ok(rows)
}

/// How much worse a run may be than its baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    /// Largest absolute drop of a quality metric.
    pub quality: f64,
    /// Largest slowdown factor of a timing (and drop factor of a throughput).
    pub time_ratio: f64,
    /// A timing must also grow by more than this many seconds to count.
    pub time_floor_s: f64,
    /// Also flag a quality metric that rose by more than `quality`.
    pub both_ways: bool,
}

/// Compares the run's metrics with the baseline's.
pub fn compare(
    run: &[(Key, f64)],
    baseline: &[(Key, f64)],
    baseline_path: &Path,
    tol: Tolerances,
) -> Result<Comparison, CheckError> {
    let current: BTreeMap<&Key, f64> = run.iter().map(|(k, v)| (k, *v)).collect();
    let name = |k: &Key| format!("{}/{}/{}@{}", k.0, k.1, k.2, k.3);
    let missing: Vec<String> = baseline
        .iter()
        .filter(|(k, _)| !current.contains_key(k))
        .map(|(k, _)| name(k))
        .collect();
    if !missing.is_empty() {
        return Err(CheckError::MissingMetrics {
            baseline: baseline_path.to_path_buf(),
            missing,
            available: run.iter().map(|(k, _)| name(k)).collect(),
        });
    }
    let rows = baseline
        .iter()
        .map(|(key, b)| {
            let c = current[key];
            let regressed = match direction(&key.2) {
                Direction::Quality => c < b - tol.quality,
                Direction::Time => c > b * tol.time_ratio && c - b > tol.time_floor_s,
                Direction::Throughput => c < b / tol.time_ratio,
                Direction::Size => c > *b,
                Direction::Info => false,
            } || !c.is_finite();
            let jumped =
                tol.both_ways && direction(&key.2) == Direction::Quality && c > b + tol.quality;
            Row {
                key: key.clone(),
                baseline: *b,
                current: c,
                regressed,
                jumped,
            }
        })
        .collect();
    Ok(Comparison { rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Tolerances = Tolerances {
        quality: 0.01,
        time_ratio: 5.0,
        time_floor_s: 1e-3,
        both_ways: false,
    };

    // hand-made input for a pure-function unit test
    fn key(metric: &str, k: &str) -> Key {
        (
            "exact".into(),
            "leave_one_out".into(),
            metric.into(),
            k.into(),
        )
    }

    #[test]
    fn judges_each_direction() {
        let base = vec![
            (key("mP", "5"), 0.50),
            (key("mAHP", "250"), 0.70),
            (key("query_median_s", ""), 1e-4),
            (key("query_p95_s", ""), 1e-3),
            (key("build_s", ""), 1e-5),
            (key("qps", ""), 1000.0),
            (key("bytes_per_item", ""), 400.0),
            (key("threads", ""), 2.0),
        ];
        let run = vec![
            (key("mP", "5"), 0.495),           // within 0.01
            (key("mAHP", "250"), 0.68),        // dropped 0.02: regression
            (key("query_median_s", ""), 4e-4), // 4x slower, within 5x
            (key("query_p95_s", ""), 9e-3),    // 9x slower and 8 ms more: regression
            (key("build_s", ""), 9e-4),        // 90x slower but under the 1 ms floor
            (key("qps", ""), 150.0),           // below 1000 / 5: regression
            (key("bytes_per_item", ""), 400.0),
            (key("threads", ""), 8.0),
        ];
        let c = compare(&run, &base, Path::new("b.csv"), TOL).unwrap();
        let bad: Vec<&str> = c.regressions().map(|r| r.key.2.as_str()).collect();
        assert_eq!(bad, vec!["mAHP", "query_p95_s", "qps"]);
        assert!(c.table().contains(
            "| exact | leave_one_out | mAHP | 250 | 0.700000 | 0.680000 | -0.020000 | REGRESSION |"
        ));
    }

    #[test]
    fn both_ways_flags_a_quality_jump() {
        let base = vec![
            (key("mP", "5"), 0.50),
            (key("mAHP", "250"), 0.70),
            (key("query_median_s", ""), 1e-3),
        ];
        let run = vec![
            (key("mP", "5"), 0.505),           // within 0.01 upwards
            (key("mAHP", "250"), 0.75),        // rose 0.05: a jump
            (key("query_median_s", ""), 1e-4), // 10x faster: timings may improve freely
        ];
        let one_way = compare(&run, &base, Path::new("b.csv"), TOL).unwrap();
        assert_eq!(one_way.flagged().count(), 0);
        let both = Tolerances {
            both_ways: true,
            ..TOL
        };
        let c = compare(&run, &base, Path::new("b.csv"), both).unwrap();
        let flagged: Vec<&str> = c.flagged().map(|r| r.key.2.as_str()).collect();
        assert_eq!(flagged, ["mAHP"]);
        assert_eq!(c.regressions().count(), 0);
        assert!(
            c.table().contains("| +0.050000 | JUMP (suspicious) |"),
            "{}",
            c.table()
        );
    }

    #[test]
    fn missing_metric_lists_both_sets() {
        let base = vec![(key("mP", "5"), 0.5), (key("mQ", "5"), 0.5)];
        let run = vec![(key("mP", "5"), 0.5)];
        let err = compare(&run, &base, Path::new("b.csv"), TOL)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exact/leave_one_out/mQ@5")
                && err.contains("the run reports: exact/leave_one_out/mP@5"),
            "{err}"
        );
    }
}
