//! `harness bench scale`: query time, throughput, recall against exact search, memory and
//! bytes per image against database size, on databases made from a run's real outputs
//! ([`super::made`]), with FAISS's counterparts measured in the same run.
//!
//! For each size `N` it writes one memory-mapped index file (codes and normalised rows), then
//! runs each method in its own `harness bench search --index` process, so that each method's
//! peak resident memory is its own. The queries are the first rows: real CIFAR-100 test images,
//! searched inside the database (each finds itself, as in the report's protocol), with their
//! real hash-layer activations for the asymmetric method. With `--faiss-python`, the peer script
//! `scripts/faiss_scale.py` then searches the same file with FAISS. After each size the table
//! and the figure are rewritten atomically; `scale.json` says which sizes are done.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::BenchError;
use super::made::{RealModelData, SplitOutputs, WithinClass, recall_at_k, within_class};
use crate::artifacts;
use crate::config::FigureFormat;
use crate::data::DataRoot;
use crate::data::cifar::{Cifar100, SplitName};
use crate::index::Method;
use crate::index::persist;
use crate::index::rerank::Shortlist;
use crate::report::figures::{Corner, Figure, LineChart, Series, XAxis};
use crate::store::frame::{Frame, TableFormat, Values};
use crate::store::{self, npy};

type Result<T> = std::result::Result<T, BenchError>;

/// What `harness bench scale` measures, and where it writes.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// The finished run folder whose embed outputs make the databases.
    pub run: PathBuf,
    /// Database sizes.
    pub sizes: Vec<usize>,
    /// Methods to measure; `exact` is always measured first (recall is against it).
    pub methods: Vec<Method>,
    /// Neighbours per query.
    pub k: usize,
    /// Queries in the batch run.
    pub queries: usize,
    /// Queries timed one by one.
    pub single_queries: usize,
    /// Threads of the batch run.
    pub threads: usize,
    /// Shortlist factor of the re-rankers.
    pub shortlist: f64,
    /// Seed of the made rows.
    pub seed: u64,
    /// Output folder (default `<run>/scale`).
    pub out: Option<PathBuf>,
    /// Keep each size's index file.
    pub keep_data: bool,
    /// A Python with FAISS, to run the peer script.
    pub faiss_python: Option<PathBuf>,
    /// The FAISS peer script.
    pub faiss_script: PathBuf,
    /// Only re-render the table and figure from `scale.json`.
    pub replot: bool,
}

fn option(what: impl Into<String>) -> BenchError {
    BenchError::Option(what.into())
}

/// The FAISS index types the peer script measures (see `scripts/faiss_scale.py`).
const FAISS_TYPES: [&str; 3] = ["IndexFlatIP", "IndexBinaryFlat", "IndexBinaryFlat+rerank"];

/// One measured point: a method (ours or FAISS's) at one size. Times are summarised by the
/// harness's one quantile rule; the FAISS script uses the same (NumPy's default, linear).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScalePoint {
    /// `harness` or `faiss`.
    pub engine: String,
    /// Method name (FAISS: its index type).
    pub method: String,
    /// Database size.
    pub n: usize,
    /// Median single-query time, ms.
    pub median_ms: f64,
    /// 95th-percentile single-query time, ms.
    pub p95_ms: f64,
    /// Batch throughput, queries/s.
    pub qps: f64,
    /// Mean recall@k against exact search (ours).
    pub recall: Option<f64>,
    /// Index bytes per image.
    pub bytes_per_item: f64,
    /// Peak resident memory of the process, MB.
    pub peak_rss_mb: Option<f64>,
    /// Anonymous resident memory at the end, MB (mapped file pages excluded).
    pub anon_rss_mb: Option<f64>,
    /// Build (or load) seconds.
    pub build_s: f64,
    /// Method parameters.
    pub params: String,
}

/// A child's JSON record (the fields of `BenchRecord` and of the FAISS script that we use).
#[derive(Debug, Deserialize)]
struct ChildRecord {
    method: String,
    median_s: f64,
    p95_s: f64,
    qps: f64,
    build_s: f64,
    bytes_per_item: f64,
    #[serde(default)]
    params: String,
    peak_rss_bytes: Option<u64>,
    rss_anon_bytes: Option<u64>,
}

/// What was measured with: the run and the settings.
#[derive(Debug, Serialize, Deserialize)]
struct Settings {
    run: String,
    k: usize,
    queries: usize,
    single_queries: usize,
    threads: usize,
    shortlist: f64,
    seed: u64,
}

/// The settings and everything measured so far: `scale.json` without the machine, which is
/// what `--replot` reads back.
#[derive(Debug, Serialize, Deserialize)]
struct Measured {
    #[serde(flatten)]
    settings: Settings,
    sizes_planned: Vec<usize>,
    sizes_done: Vec<usize>,
    within_class_real: Option<WithinClass>,
    within_class_made: Option<WithinClass>,
    points: Vec<ScalePoint>,
}

/// `scale.json`.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    complete: bool,
    machine: crate::experiment::manifest::Machine,
    #[serde(flatten)]
    measured: &'a Measured,
}

fn label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Runs the benchmark (see the module docs).
/// Runs the benchmark (see the module docs); returns the output folder.
pub fn run(a: &ScaleOptions, data_root: Option<&Path>) -> Result<PathBuf> {
    let layout = artifacts::RunLayout::new(&a.run);
    let out = a.out.clone().unwrap_or_else(|| layout.scale());
    if a.replot {
        let path = out.join("scale.json");
        let measured: Measured =
            serde_json::from_slice(&store::read(&path)?).map_err(|e| BenchError::Peer {
                what: path.display().to_string(),
                detail: format!("not a bench scale summary: {e}"),
            })?;
        write_outputs(&out, &measured)?;
        return Ok(out);
    }
    if a.sizes.is_empty() {
        return Err(option("--sizes needs at least one size"));
    }
    if a.k == 0 || a.queries == 0 {
        return Err(option("--k and --queries must be >= 1"));
    }
    let mut sizes = a.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    if a.queries > sizes[0] {
        return Err(option(format!(
            "--queries {} is more than the smallest size {}",
            a.queries, sizes[0]
        )));
    }
    let mut methods = a.methods.clone();
    // Recall is measured against exact search, so it runs first at every size.
    methods.retain(|m| *m != Method::Exact);
    methods.insert(0, Method::Exact);
    Shortlist::Factor(a.shortlist).validate()?;

    let cfg = layout.config()?;
    let root = DataRoot::resolve(data_root, cfg.data.root.as_deref())?;
    let cifar = Cifar100::load(&root, false)?;
    let split = |name: SplitName| -> Result<(SplitOutputs, usize, usize)> {
        let e = artifacts::load_embedded(&layout.embed(), name)?;
        let labels = &cifar.split(name).fine;
        let n = e.embeddings.len() / e.d.max(1);
        if n > labels.len() {
            return Err(option(format!(
                "{name}: {n} embedded images but {} labels",
                labels.len()
            )));
        }
        Ok((
            SplitOutputs {
                activations: e.activations,
                embeddings: e.embeddings,
                labels: labels[..n].iter().map(|&l| u32::from(l)).collect(),
            },
            e.h,
            e.d,
        ))
    };
    let (test, h, d) = split(SplitName::Test)?;
    let train = if layout.has_embeddings(SplitName::Train) {
        Some(split(SplitName::Train)?.0)
    } else {
        eprintln!(
            "note: {} has no training-split embeddings (no train_db protocol); the made rows \
             mix test images",
            a.run.display()
        );
        None
    };
    if a.queries > test.labels.len() {
        return Err(option(format!(
            "--queries {} is more than the run's {} test images",
            a.queries,
            test.labels.len()
        )));
    }

    let single = a.single_queries.min(a.queries);
    let mut measured = Measured {
        settings: Settings {
            run: a.run.display().to_string(),
            k: a.k,
            queries: a.queries,
            single_queries: single,
            threads: a.threads,
            shortlist: a.shortlist,
            seed: a.seed,
        },
        sizes_planned: sizes.clone(),
        sizes_done: Vec::new(),
        within_class_real: None,
        within_class_made: None,
        points: Vec::new(),
    };
    let data_dir = out.join("data");
    let acts_path = data_dir.join("queries-activations.npy");
    store::write_atomic(&acts_path, |w| {
        npy::write_f32(w, a.queries, h, &test.activations[..a.queries * h])
    })?;
    let exe = std::env::current_exe().map_err(|e| BenchError::Peer {
        what: "harness bench search".into(),
        detail: format!("cannot find the harness binary: {e}"),
    })?;

    for &n in &sizes {
        let t = Instant::now();
        let data = RealModelData::new(&test, train.as_ref(), h, d, n, a.seed)?;
        let codes = data.codes()?;
        if measured.within_class_made.is_none() || n == *sizes.last().unwrap_or(&n) {
            (measured.within_class_real, measured.within_class_made) =
                within_class(&data, &codes, 20_000, a.seed ^ 1);
        }
        let index_path = data_dir.join(format!("n{}.idx", label(n)));
        store::write_atomic(&index_path, |w| {
            persist::save_rerank_streamed(w, &codes, d, Shortlist::Factor(a.shortlist), |i, row| {
                data.embedding(i, row)
            })
            .map_err(std::io::Error::other)
        })?;
        drop(codes);
        eprintln!(
            "scale N={}: wrote {} ({:.1} GB) in {:.1} s",
            label(n),
            index_path.display(),
            std::fs::metadata(&index_path).map_or(0.0, |m| m.len() as f64 / 1e9),
            t.elapsed().as_secs_f64()
        );
        let dump = out.join("dumps").join(label(n));
        let mut exact_ids: Option<Vec<u64>> = None;
        for m in &methods {
            let mut cmd = Command::new(&exe);
            cmd.arg("bench")
                .arg("search")
                .arg("--index")
                .arg(&index_path)
                .arg("--activations")
                .arg(&acts_path)
                .args(["--methods", m.as_str()])
                .args(["--k", &a.k.to_string()])
                .args(["--queries", &a.queries.to_string()])
                .args(["--single-queries", &single.to_string()])
                .args(["--threads", &a.threads.to_string()])
                .args(["--shortlist", &a.shortlist.to_string()])
                .arg("--dump-dir")
                .arg(&dump);
            // The file was just written and checksummed by this process.
            cmd.arg("--no-verify");
            let rec = child_record(cmd, &format!("{m} at N={}", label(n)))?;
            let ids = read_ids(&dump, m.as_str())?;
            let recall = match &exact_ids {
                None => {
                    exact_ids = Some(ids);
                    Some(1.0)
                }
                Some(e) => recall_at_k(&ids, e, a.queries, a.k.min(n)),
            };
            let p = point("harness", n, rec, recall);
            eprintln!("  {}", describe(&p));
            measured.points.push(p);
        }
        if let Some(py) = &a.faiss_python {
            for ty in FAISS_TYPES {
                let mut cmd = Command::new(py);
                cmd.arg(&a.faiss_script)
                    .arg("--index")
                    .arg(&index_path)
                    .args(["--type", ty])
                    .args(["--k", &a.k.to_string()])
                    .args(["--queries", &a.queries.to_string()])
                    .args(["--single-queries", &single.to_string()])
                    .args(["--threads", &a.threads.to_string()])
                    .args(["--shortlist", &a.shortlist.to_string()])
                    .arg("--dump-dir")
                    .arg(&dump);
                let rec = child_record(cmd, &format!("FAISS {ty} at N={}", label(n)))?;
                let ids = read_ids(&dump, ty)?;
                let recall = exact_ids
                    .as_ref()
                    .and_then(|e| recall_at_k(&ids, e, a.queries, a.k.min(n)));
                let p = point("faiss", n, rec, recall);
                eprintln!("  {}", describe(&p));
                measured.points.push(p);
            }
        }
        if !a.keep_data {
            std::fs::remove_file(&index_path).map_err(|source| store::StoreError::Write {
                path: index_path.clone(),
                source,
            })?;
        }
        measured.sizes_done.push(n);
        write_outputs(&out, &measured)?;
    }
    Ok(out)
}

fn point(engine: &str, n: usize, r: ChildRecord, recall: Option<f64>) -> ScalePoint {
    let mb = |b: Option<u64>| b.map(|b| b as f64 / 1e6);
    ScalePoint {
        engine: engine.into(),
        method: r.method,
        n,
        median_ms: r.median_s * 1e3,
        p95_ms: r.p95_s * 1e3,
        qps: r.qps,
        recall,
        bytes_per_item: r.bytes_per_item,
        peak_rss_mb: mb(r.peak_rss_bytes),
        anon_rss_mb: mb(r.rss_anon_bytes),
        build_s: r.build_s,
        params: r.params,
    }
}

fn describe(p: &ScalePoint) -> String {
    format!(
        "{} {}: median {:.3} ms, p95 {:.3} ms, {:.0} queries/s, recall {}, {:.0} B/image, peak RSS {}",
        p.engine,
        p.method,
        p.median_ms,
        p.p95_ms,
        p.qps,
        p.recall.map_or("-".into(), |r| format!("{r:.4}")),
        p.bytes_per_item,
        p.peak_rss_mb.map_or("-".into(), |m| format!("{m:.0} MB")),
    )
}

/// Runs `cmd` and parses every JSON line of its standard output.
fn child_records(mut cmd: Command, what: &str) -> Result<Vec<ChildRecord>> {
    let peer = |detail: String| BenchError::Peer {
        what: what.to_string(),
        detail,
    };
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| peer(format!("cannot start {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        return Err(peer(format!(
            "{:?} failed ({})",
            cmd.get_program(),
            out.status
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).map_err(|e| peer(format!("unexpected record `{l}`: {e}"))))
        .collect()
}

fn child_record(cmd: Command, what: &str) -> Result<ChildRecord> {
    let mut records = child_records(cmd, what)?;
    if records.len() != 1 {
        return Err(BenchError::Peer {
            what: what.to_string(),
            detail: format!("expected one record, got {}", records.len()),
        });
    }
    Ok(records.remove(0))
}

fn read_ids(dir: &Path, method: &str) -> Result<Vec<u64>> {
    let path = dir.join(format!("{method}_ids.npy"));
    let (_, _, ids) =
        npy::read_u64(&store::read(&path)?).map_err(|source| BenchError::Npy { path, source })?;
    Ok(ids)
}

/// The table (CSV and Markdown), `scale.json` and the figure, each written atomically.
fn write_outputs(out: &Path, measured: &Measured) -> Result<()> {
    let (a, points) = (&measured.settings, &measured.points);
    let (sizes, done) = (&measured.sizes_planned, &measured.sizes_done);
    let labels = |ns: &[usize]| ns.iter().map(|&n| label(n)).collect::<Vec<_>>().join(", ");
    // Fixed decimals, so a table re-rendered from `scale.json` (`--replot`) is byte-identical.
    let fixed = |v: f64, digits: i32| (v * 10f64.powi(digits)).round() / 10f64.powi(digits);
    let f64s = |f: fn(&ScalePoint) -> f64, digits: i32| {
        Values::F64(points.iter().map(|p| Some(fixed(f(p), digits))).collect())
    };
    let opts = |f: fn(&ScalePoint) -> Option<f64>, digits: i32| {
        Values::F64(
            points
                .iter()
                .map(|p| f(p).map(|v| fixed(v, digits)))
                .collect(),
        )
    };
    let strs = |f: fn(&ScalePoint) -> String| Values::Str(points.iter().map(f).collect());
    let table = Frame::new()
        .with("engine", strs(|p| p.engine.clone()))
        .with("method", strs(|p| p.method.clone()))
        .with(
            "n",
            Values::U32(points.iter().map(|p| u32::try_from(p.n).ok()).collect()),
        )
        .with("median_ms", f64s(|p| p.median_ms, 6))
        .with("p95_ms", f64s(|p| p.p95_ms, 6))
        .with("qps", f64s(|p| p.qps, 3))
        .with("recall", opts(|p| p.recall, 4))
        .with("bytes_per_item", f64s(|p| p.bytes_per_item, 1))
        .with("peak_rss_mb", opts(|p| p.peak_rss_mb, 1))
        .with("anon_rss_mb", opts(|p| p.anon_rss_mb, 1))
        .with("build_s", f64s(|p| p.build_s, 3))
        .with("params", strs(|p| p.params.clone()));
    table.write(out, "scale", &[TableFormat::Csv])?;
    let md = format!(
        "Sizes done: {} of {}. k = {}, {} queries ({} timed one by one), {} thread(s); recall is \
         recall@{} against exact search; times in ms, memory in MB.\n\n{}",
        labels(done),
        labels(sizes),
        a.k,
        a.queries,
        a.single_queries,
        a.threads,
        a.k,
        table.markdown(4),
    );
    store::write_bytes_atomic(&out.join("scale.md"), md.as_bytes())?;
    store::write_json_atomic(
        &out.join("scale.json"),
        &Summary {
            complete: done.len() == sizes.len(),
            machine: crate::experiment::manifest::machine(),
            measured,
        },
    )?;
    let mut series: Vec<Series> = Vec::new();
    for p in points {
        let name = if p.engine == "harness" {
            p.method.clone()
        } else {
            format!("FAISS {}", p.method)
        };
        let xy = ((p.n as f64).log10(), p.median_ms.max(1e-6).log10());
        match series.iter_mut().find(|s| s.label == name) {
            Some(s) => s.points.push(xy),
            None => series.push(Series {
                label: name,
                points: vec![xy],
                published: None,
            }),
        }
    }
    let chart = LineChart {
        title: format!("median time per query against database size (k = {})", a.k),
        x_label: "images in the database N (log scale)".into(),
        y_label: "median time per query (log scale)".into(),
        series,
        markers_only: false,
        x_axis: XAxis::Log10Count,
        y_axis: XAxis::Log10Ms,
        legend: Corner::UpperLeft,
    };
    chart.write(out, "scale-time", &[FigureFormat::Svg, FigureFormat::Png])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_labelled_with_suffixes() {
        assert_eq!(label(20_000_000), "20M");
        assert_eq!(label(100_000), "100k");
        assert_eq!(label(1234), "1234");
    }
}
