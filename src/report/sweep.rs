//! Sweep tables: one row per run, with the swept values, for each method and protocol.

use super::check::Key;
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
}

/// `(markdown, csv)`: per (method, protocol), a table of runs with mP@k for every k found,
/// mAHP@250 and the median query time. The CSV is long: `run,<swept keys...>,method,protocol,
/// metric,k,value`.
pub fn sweep_tables(name: &str, runs: &[SweepRun]) -> (String, String) {
    let params: Vec<String> = runs
        .first()
        .map(|r| r.overrides.iter().map(|o| o.0.clone()).collect())
        .unwrap_or_default();
    let mut groups: Vec<(String, String)> = Vec::new();
    let mut ks: Vec<u32> = Vec::new();
    for r in runs {
        for ((m, p, metric, k), _) in &r.metrics {
            if !groups.contains(&(m.clone(), p.clone())) {
                groups.push((m.clone(), p.clone()));
            }
            if metric == "mP"
                && let Ok(k) = k.parse::<u32>()
                && !ks.contains(&k)
            {
                ks.push(k);
            }
        }
    }
    ks.sort_unstable();
    let mut md = format!(
        "# Sweep `{name}`: one row per run\n\nmP@k is the report's \"mAP@k\"; mAHP@250 uses the \
         trapezoid rule; times are median milliseconds per query.\n"
    );
    let mut csv = format!("run,{},method,protocol,metric,k,value\n", params.join(","));
    let value = |r: &SweepRun, m: &str, p: &str, metric: &str, k: &str| {
        r.metrics
            .iter()
            .find(|((a, b, c, d), _)| a == m && b == p && c == metric && d == k)
            .map(|x| x.1)
    };
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
    for r in runs {
        let swept: Vec<&str> = r.overrides.iter().map(|o| o.1.as_str()).collect();
        for ((m, p, metric, k), v) in &r.metrics {
            let _ = writeln!(csv, "{},{},{m},{p},{metric},{k},{v}", r.id, swept.join(","));
        }
    }
    (md, csv)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        let (md, csv) = sweep_tables("s", &[run("a", "1", 0.25), run("b", "2", 0.5)]);
        assert!(
            md.contains("| iwan.top_iwk | mP@5 | mAHP@250 | ms/query |"),
            "{md}"
        );
        assert!(md.contains("| 1 | 0.2500 | — | 0.5000 |"), "{md}");
        assert!(md.contains("| 2 | 0.5000 | — | 0.5000 |"), "{md}");
        assert!(csv.starts_with("run,iwan.top_iwk,method,protocol,metric,k,value\n"));
        assert!(csv.contains("b,2,iwan,train_db,mP,5,0.5\n"), "{csv}");
    }
}
