//! `harness serve RESULTS_DIR`: the runs under a results folder, listed with their headline
//! metrics on a sortable page, each linking to its own query page.
//!
//! The folder is scanned once at start for run folders (those holding `manifest.json` and
//! `metrics.csv`, at most [`MAX_DEPTH`] levels down, `cache/` skipped). A run's query page and
//! API live under `/run/<path>/`, where `<path>` is the run's folder relative to the results
//! folder; the run is loaded on its first request (it maps its indices and loads the data
//! once), and every later request reuses it.
//!
//! API: `GET /api/runs` — each run's experiment, id, status, finish time, config hash, encoder and
//! the headline metrics of [`crate::experiment::compare::HEADLINE`] for every method and
//! protocol. `GET /run/<path>/...` — the run's own page and API (see [`super`]).

use super::{ApiError, Served, router};
use crate::artifacts::RunLayout;
use crate::experiment::ExperimentError;
use crate::experiment::compare::HEADLINE;
use crate::experiment::manifest::Manifest;
use crate::report::check::read_metrics;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::OnceCell;
use tower::ServiceExt;

/// How deep below the results folder run folders are looked for.
pub const MAX_DEPTH: usize = 4;

/// One run found under the results folder.
struct Listed {
    /// Its folder relative to the results folder, with `/` separators: the URL path.
    rel: String,
    dir: PathBuf,
    summary: Value,
    /// Its query page's router, built on the first request.
    router: OnceCell<Router>,
}

/// The runs under a results folder.
pub struct Results {
    root: PathBuf,
    data_root: Option<PathBuf>,
    runs: Vec<Listed>,
}

impl Results {
    /// Scans `root` for run folders. A folder that is not a results folder, or holds no run,
    /// is an error that says what was looked for.
    pub fn scan(root: &Path, data_root: Option<&Path>) -> Result<Self, ExperimentError> {
        if !root.is_dir() {
            return Err(ExperimentError::artifact(root, "not a folder"));
        }
        let mut dirs = Vec::new();
        find_runs(root, 0, &mut dirs);
        dirs.sort();
        let mut runs = Vec::new();
        for dir in dirs {
            let rel = dir
                .strip_prefix(root)
                .unwrap_or(&dir)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            runs.push(Listed {
                summary: summarize(&dir, &rel)?,
                rel,
                dir,
                router: OnceCell::new(),
            });
        }
        if runs.is_empty() {
            return Err(ExperimentError::artifact(
                root,
                format!(
                    "no run folder (manifest.json and metrics.csv) within {MAX_DEPTH} levels; \
                     pass a run folder or a results folder such as results/"
                ),
            ));
        }
        Ok(Self {
            root: root.to_path_buf(),
            data_root: data_root.map(Path::to_path_buf),
            runs,
        })
    }

    /// How many runs were found.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether no run was found (never, after a successful [`Results::scan`]).
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

fn find_runs(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if RunLayout::new(dir).has_metrics() {
        out.push(dir.to_path_buf());
        return;
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let hidden = name.to_string_lossy().starts_with('.');
        if path.is_dir() && !hidden && name != "cache" {
            find_runs(&path, depth + 1, out);
        }
    }
}

/// A run's row: what its manifest says and its headline metrics.
fn summarize(dir: &Path, rel: &str) -> Result<Value, ExperimentError> {
    let run = RunLayout::new(dir);
    let path = run.manifest();
    let manifest: Manifest = serde_json::from_slice(&crate::store::read(&path)?)
        .map_err(|e| ExperimentError::unreadable(&path, e))?;
    let metrics_path = run.metrics();
    let metrics =
        read_metrics(&metrics_path).map_err(|e| ExperimentError::unreadable(&metrics_path, e))?;
    let headline: Vec<Value> = metrics
        .iter()
        .filter(|((_, _, metric, k), _)| HEADLINE.contains(&(metric.as_str(), k.as_str())))
        .map(|((method, protocol, metric, k), v)| {
            json!({ "method": method, "protocol": protocol, "metric": metric, "k": k, "value": v })
        })
        .collect();
    Ok(json!({
        "path": rel,
        "experiment": manifest.experiment,
        "run_id": manifest.run_id,
        "status": manifest.status,
        "finished_at": manifest.finished_at,
        "config_hash": manifest.config_hash,
        "encoder": serde_json::to_value(manifest.config.model.encoder).unwrap_or(Value::Null),
        "input_size": manifest.config.model.input_size,
        "metrics": headline,
    }))
}

type Shared = Arc<Results>;

async fn page() -> Html<&'static str> {
    Html(include_str!("runs.html"))
}

async fn runs(State(s): State<Shared>) -> Json<Value> {
    Json(json!({
        "root": s.root.display().to_string(),
        "headline": HEADLINE.iter().map(|(m, k)| json!({"metric": m, "k": k})).collect::<Vec<_>>(),
        "runs": s.runs.iter().map(|r| r.summary.clone()).collect::<Vec<_>>(),
    }))
}

/// `/run/<path>/<rest>`: the run's own router, loaded on first use, with `<rest>` as the path.
async fn run(State(s): State<Shared>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let Some(tail) = path.strip_prefix("/run/") else {
        return ApiError::not_found(format!("no route {path}")).into_response();
    };
    // The longest listed run whose path prefixes the tail.
    let Some(listed) = s
        .runs
        .iter()
        .filter(|r| tail == r.rel || tail.starts_with(&format!("{}/", r.rel)))
        .max_by_key(|r| r.rel.len())
    else {
        return ApiError::not_found(format!(
            "no run `{tail}` under {} (GET /api/runs lists them)",
            s.root.display()
        ))
        .into_response();
    };
    let rest = &tail[listed.rel.len()..];
    if rest.is_empty() {
        // The query page fetches `api/...` relative to its own URL, which must end in `/`.
        let to = format!("/run/{}/", listed.rel);
        return (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, to)]).into_response();
    }
    let loaded = listed
        .router
        .get_or_try_init(|| async {
            let (dir, data_root) = (listed.dir.clone(), s.data_root.clone());
            let served =
                tokio::task::spawn_blocking(move || Served::load(&dir, data_root.as_deref()))
                    .await
                    .map_err(|e| format!("loading the run stopped: {e}"))?
                    .map_err(|e| {
                        format!("loading the run in {} failed: {e}", listed.dir.display())
                    })?;
            Ok::<_, String>(router(served))
        })
        .await;
    let inner = match loaded {
        Ok(r) => r.clone(),
        Err(message) => return ApiError::internal(message).into_response(),
    };
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let (mut parts, body) = request.into_parts();
    parts.uri = match format!("{rest}{query}").parse::<Uri>() {
        Ok(u) => u,
        Err(e) => return ApiError::bad(format!("bad path {rest}: {e}")).into_response(),
    };
    match inner.oneshot(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The router over a results folder.
pub fn results_router(results: Results) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/runs", get(runs))
        .route("/run/{*rest}", axum::routing::any(run))
        .with_state(Arc::new(results))
}
