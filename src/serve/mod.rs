//! `harness serve`: a query page and JSON API over a finished run.
//!
//! The database is the run's test split; a search by query id leaves the query out (the
//! leave-one-out protocol) unless it asks for the report's protocol, and a search by an uploaded
//! image searches the whole split. The server loads the embeddings, codes, stored indices and IWAN
//! network once; requests never name files, `k` is bounded by [`MAX_K`], and ids are checked.
//!
//! API (JSON unless noted):
//! - `GET /api/queries?page=P&per_page=N&fine=C&coarse=C` — test images, paginated and filtered;
//! - `GET /api/methods` — the searchable methods;
//! - `GET /api/search?query=ID&method=NAME&k=K[&protocol=report]` — top k with class, score,
//!   relation to the query and, for IWAN, the explanation path; the query's P@k and HP@k; the
//!   latency (`protocol=report` keeps the query in the database, as the report's protocol does);
//! - `POST /api/search?method=NAME&k=K` with a PNG or JPEG (at most 10 MiB) as the body — the
//!   same search for an image of the user's own, embedded by the run's network (see [`upload`]);
//!   the whole test split is the database;
//! - `GET /api/explain?query=ID&db=ID` — IWAN's shortest path from a query to an image;
//! - `GET /api/metrics` — the run's `metrics.csv` rows;
//! - `GET /api/image/{split}/{id}.png` — a CIFAR-100 image, scaled up 4x (nearest neighbour).
//!
//! Bad parameters get 400, unknown ids or methods 404, both with `{"error": "..."}`.

use crate::artifacts::{self, RunLayout, StoredEmbedding};
use crate::config::{IwanScore, WordModel};
use crate::data::DataRoot;
use crate::data::cifar::{Cifar100, SplitName};
use crate::embed::{Embedded, Embedder};
use crate::experiment::iwan::{IwanInputs, IwanRun, Network, WordModelRun};
use crate::experiment::{self, ExperimentError};
use crate::index::persist::{self, AnyIndex};
use crate::index::{Hit, Query, Scratch};
use crate::iwan::graph::Node;
use crate::report::check::{Key, read_metrics};
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub mod results;
pub mod upload;

pub use results::{Results, results_router};

/// Largest `k` a search may ask for.
pub const MAX_K: usize = 100;
/// Uploads decoded and embedded at the same time; further ones wait their turn. Each can hold
/// up to [`upload::MAX_PIXELS`] decoded pixels (160 MB as RGBA) for a moment.
pub const UPLOADS_AT_ONCE: usize = 4;
/// Scale factor of served images (32 px -> 128 px).
const SCALE: usize = 4;

/// Everything the server holds in memory.
pub struct Served {
    data: Cifar100,
    sim: Vec<f64>,
    n_classes: usize,
    /// Database images per fine class (for the best possible HP@k).
    class_counts: Vec<usize>,
    queries: StoredEmbedding,
    methods: Vec<(String, AnyIndex)>,
    iwan: Option<ServedIwan>,
    /// The run's network, for uploaded images.
    embedder: Embedder,
    /// Uploads decoded and embedded at once (each may hold a 40-megapixel image in memory).
    uploads: tokio::sync::Semaphore,
    metrics: Vec<(Key, f64)>,
}

/// The run's IWAN network over the test split, and what turns an upload into query edges.
struct ServedIwan {
    net: Network,
    score: IwanScore,
    inputs: IwanInputs,
    words: WordModelRun,
}

impl Served {
    /// Loads the run in `dir`.
    pub fn load(dir: &Path, data_root: Option<&Path>) -> Result<Self, ExperimentError> {
        let layout = RunLayout::new(dir);
        if !layout.is_run() {
            return Err(ExperimentError::artifact(
                dir,
                "not a run folder (no manifest.json); pass a folder that `harness run` printed",
            ));
        }
        let cfg = layout.config()?;
        let root = DataRoot::resolve(data_root, cfg.data.root.as_deref())?;
        // One EfficientNet-Lite serves the frozen encoder and the ImageNet word model: both
        // use the config's own weights.
        let imagenet_words = cfg.iwan.enabled && cfg.iwan.word_model == WordModel::Imagenet;
        let encoder = (experiment::frozen_encoder(&cfg) || imagenet_words)
            .then(|| experiment::load_efficientnet(&root, experiment::own_weights(&cfg)))
            .transpose()?;
        let embedder = experiment::embedder(&root, &cfg, dir, encoder.as_ref())?;
        let (data, iwan) = if cfg.iwan.enabled {
            let run = IwanRun::open(dir, data_root)?;
            let net = run.network(SplitName::Test, None, None)?;
            let iwan = ServedIwan {
                net,
                score: cfg.iwan.score,
                words: WordModelRun::open(&root, &cfg, encoder)?,
                inputs: run.inputs,
            };
            (run.data, Some(iwan))
        } else {
            (Cifar100::load(&root, false)?, None)
        };
        let (_, sim) = artifacts::class_similarity(&root)?;
        let queries = artifacts::load_embedded(&layout.embed(), SplitName::Test)?;
        let mut methods = Vec::new();
        for method in &cfg.index.methods {
            let path = layout.index_file(*method, SplitName::Test);
            // Mapped, not read: the index is searched in the file (checksum verified first).
            let index = persist::load_mapped(&path, true)
                .map_err(|e| ExperimentError::unreadable(&path, e))?;
            methods.push((method.as_str().to_string(), index));
        }
        let metrics_path = layout.metrics();
        let metrics = read_metrics(&metrics_path)
            .map_err(|e| ExperimentError::unreadable(&metrics_path, e))?;
        let mut class_counts = vec![0usize; sim.n()];
        for &f in &data.test.fine[..queries.rows()] {
            class_counts[f as usize] += 1;
        }
        Ok(Self {
            data,
            class_counts,
            n_classes: sim.n(),
            sim: sim.values().to_vec(),
            queries,
            methods,
            iwan,
            embedder,
            uploads: tokio::sync::Semaphore::new(UPLOADS_AT_ONCE),
            metrics,
        })
    }

    fn n_queries(&self) -> usize {
        self.queries.rows()
    }

    /// Method names in display order: indices as configured, then IWAN.
    pub fn method_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.methods.iter().map(|m| m.0.clone()).collect();
        if let Some(iwan) = &self.iwan {
            names.push(iwan.score.method_name().to_string());
        }
        names
    }

    fn fine(&self, i: u32) -> usize {
        self.data.test.fine[i as usize] as usize
    }

    fn describe(&self, i: u32) -> Value {
        let f = self.fine(i);
        let c = self.data.test.coarse[i as usize] as usize;
        json!({
            "id": i,
            "fine": f,
            "coarse": c,
            "fine_name": self.data.names.fine[f],
            "coarse_name": self.data.names.coarse[c],
        })
    }

    /// P@k and HP@k of one ranking of `query` over the test split, with the query `left_out`
    /// of the database or not.
    fn query_metrics(&self, query: u32, ids: &[u32], k: usize, left_out: bool) -> (f64, f64) {
        let q = self.fine(query);
        let row = &self.sim[q * self.n_classes..(q + 1) * self.n_classes];
        let hits = ids.iter().filter(|&&i| self.fine(i) == q).count();
        let got: f64 = ids.iter().map(|&i| row[self.fine(i)]).sum();
        // The best possible sum: the k most similar database images.
        let mut counts = self.class_counts.clone();
        counts[q] -= usize::from(left_out);
        let mut classes: Vec<usize> = (0..self.n_classes).collect();
        classes.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let (mut left, mut best) = (k, 0.0);
        for c in classes {
            let take = counts[c].min(left);
            best += take as f64 * row[c];
            left -= take;
        }
        let hp = if best > 0.0 { got / best } else { 0.0 };
        (hits as f64 / k as f64, hp)
    }

    fn relation(&self, query: u32, i: u32) -> &'static str {
        let t = &self.data.test;
        if t.fine[i as usize] == t.fine[query as usize] {
            "same_class"
        } else if t.coarse[i as usize] == t.coarse[query as usize] {
            "same_superclass"
        } else {
            "other"
        }
    }

    /// IWAN's path from a query (its `edges` into the graph) to each of `images`, as JSON hops.
    fn path(&self, net: &Network, edges: &[(u32, f32)], images: &[u32]) -> Vec<Value> {
        net.graph
            .explain(edges, images)
            .into_iter()
            .map(|path| {
                Value::Array(
                    path.into_iter()
                        .map(|(node, w)| {
                            let label = match net.graph.node(node) {
                                Node::Query => "query".to_string(),
                                Node::Image(i) => format!("image {i}"),
                                Node::Word(word) => word.to_string(),
                            };
                            let strength = if node == 0 { None } else { Some(1.0 / w) };
                            json!({ "node": node, "label": label, "weight": w, "strength": strength })
                        })
                        .collect(),
                )
            })
            .collect()
    }

    fn unknown_method(&self, method: &str) -> ApiError {
        ApiError::not_found(format!(
            "unknown method `{method}`; this run serves {}",
            self.method_names().join(", ")
        ))
    }

    /// Ranks the database for one query: `parts` for the indices, `edges` into the IWAN graph.
    fn rank(
        &self,
        parts: &Query<'_>,
        edges: Option<&[(u32, f32)]>,
        method: &str,
        k: usize,
    ) -> Result<Found, ApiError> {
        if !(1..=MAX_K).contains(&k) {
            return Err(ApiError::bad(format!("k must be in 1..={MAX_K}, got {k}")));
        }
        let started = Instant::now();
        let (hits, paths) = if let Some((_, index)) = self.methods.iter().find(|m| m.0 == method) {
            let mut out = Vec::new();
            index
                .as_search()
                .search(parts, k, &mut Scratch::default(), &mut out)
                .map_err(|e| ApiError::bad(e.to_string()))?;
            (out, None)
        } else if let (Some(iwan), Some(edges)) = (
            self.iwan
                .as_ref()
                .filter(|i| i.score.method_name() == method),
            edges,
        ) {
            let ranked = iwan.net.graph.rank(edges, k, parts.exclude, iwan.score);
            let hits: Vec<Hit> = ranked
                .iter()
                .map(|r| Hit {
                    id: r.image,
                    score: r.distance,
                })
                .collect();
            (hits, Some((&iwan.net, edges)))
        } else {
            return Err(self.unknown_method(method));
        };
        // The latency is the search's; IWAN's explanations are extra work for the page.
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let paths = paths.map(|(net, edges)| {
            let ids: Vec<u32> = hits.iter().map(|h| h.id).collect();
            self.path(net, edges, &ids)
        });
        Ok(Found {
            latency_ms,
            hits,
            paths,
        })
    }

    /// The response of a search: the query's description, the ranked results (with their
    /// `relation` to the query, and IWAN's paths), and the query's P@k and HP@k where the
    /// query has a label.
    fn response(
        &self,
        query: Value,
        method: &str,
        k: usize,
        found: Found,
        relation: impl Fn(u32) -> Value,
        metrics: Option<(f64, f64)>,
    ) -> Value {
        let results: Vec<Value> = found
            .hits
            .iter()
            .enumerate()
            .map(|(rank, h)| {
                let mut r = self.describe(h.id);
                r["rank"] = json!(rank);
                r["score"] = json!(h.score);
                r["relation"] = relation(h.id);
                if let Some(p) = &found.paths {
                    r["path"] = p[rank].clone();
                }
                r
            })
            .collect();
        json!({
            "query": query,
            "method": method,
            "k": k,
            "latency_ms": found.latency_ms,
            "precision_at_k": metrics.map(|m| m.0),
            "hp_at_k": metrics.map(|m| m.1),
            "score": if found.paths.is_some() { "path length (lower is better)" } else { "similarity or Hamming distance" },
            "results": results,
        })
    }

    /// Searches `method` for test image `query`, with the query `left_out` of the database
    /// (leave-one-out) or inside it (the report's protocol).
    pub fn search(
        &self,
        query: u32,
        method: &str,
        k: usize,
        left_out: bool,
    ) -> Result<Value, ApiError> {
        if query as usize >= self.n_queries() {
            return Err(ApiError::not_found(format!(
                "query {query} is outside the test split's 0..{}",
                self.n_queries()
            )));
        }
        let q = self.queries.row(query as usize);
        let parts = Query {
            embedding: Some(q.0),
            code: Some(q.1),
            activations: Some(q.2),
            exclude: left_out.then_some(query),
        };
        let edges = self
            .iwan
            .as_ref()
            .map(|i| i.net.queries[query as usize].as_slice());
        let found = self.rank(&parts, edges, method, k)?;
        let ids: Vec<u32> = found.hits.iter().map(|h| h.id).collect();
        let metrics = self.query_metrics(query, &ids, k, left_out);
        Ok(self.response(
            self.describe(query),
            method,
            k,
            found,
            |id| json!(self.relation(query, id)),
            Some(metrics),
        ))
    }

    /// Searches `method` for an uploaded PNG or JPEG (`bytes`), embedded by the run's own
    /// network ([`upload`] gives the geometry). Nothing is left out: the database is the whole
    /// test split. The response has the shape of [`Self::search`]'s; the query is described by
    /// its size, predicted classes and IWAN words, and P@k, HP@k and relations are null, as an
    /// upload has no label.
    pub fn search_image(&self, bytes: &[u8], method: &str, k: usize) -> Result<Value, ApiError> {
        // Checked before the image is decoded and embedded.
        if !self.method_names().iter().any(|m| m == method) {
            return Err(self.unknown_method(method));
        }
        if !(1..=MAX_K).contains(&k) {
            return Err(ApiError::bad(format!("k must be in 1..={MAX_K}, got {k}")));
        }
        let decoded = upload::decode(bytes).map_err(|e| ApiError::bad(e.to_string()))?;
        let e = self
            .embedder
            .embed(&decoded.pixels)
            .map_err(ApiError::internal)?;
        let mut query = json!({
            "upload": { "width": decoded.size.0, "height": decoded.size.1, "format": decoded.format },
            "predicted_classes": e.classes.iter().map(|&(c, cos)| json!({
                "fine": c, "fine_name": self.data.names.fine[c as usize], "cosine": cos,
            })).collect::<Vec<_>>(),
        });
        let edges = match &self.iwan {
            Some(iwan) => {
                let labels = iwan
                    .words
                    .labels(&decoded.pixels, &e.embeddings, iwan.net.top_iwk)
                    .map_err(ApiError::internal)?;
                let words = iwan
                    .inputs
                    .annotator()
                    .predicted_words(&labels[0], iwan.net.top_iwk);
                query["words"] = json!(words);
                Some(iwan.net.graph.query_edges(&words))
            }
            None => None,
        };
        let found = self.rank(&Self::upload_parts(&e), edges.as_deref(), method, k)?;
        Ok(self.response(query, method, k, found, |_| Value::Null, None))
    }

    /// The index query of one embedded upload.
    fn upload_parts(e: &Embedded) -> Query<'_> {
        Query {
            embedding: Some(&e.embeddings),
            code: Some(&e.codes),
            activations: Some(&e.activations),
            exclude: None,
        }
    }
}

/// One ranking and how long it took.
struct Found {
    latency_ms: f64,
    hits: Vec<Hit>,
    /// IWAN's paths, one per hit.
    paths: Option<Vec<Value>>,
}

/// An API error: status and message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad(message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }

    /// A failure of the server's own model on a valid request.
    fn internal(e: impl std::fmt::Display) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("embedding the upload failed: {e}"),
        }
    }

    fn not_found(message: String) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

type Shared = Arc<Served>;

/// Parses an optional numeric parameter, naming it on failure.
fn number(params: &ParamMap, name: &str) -> Result<Option<usize>, ApiError> {
    params
        .0
        .get(name)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<usize>().map_err(|_| {
                ApiError::bad(format!(
                    "`{name}` must be a non-negative integer, got `{v}`"
                ))
            })
        })
        .transpose()
}

/// Query parameters as strings, so that bad values get our own 400 message.
struct ParamMap(std::collections::HashMap<String, String>);

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn methods(State(s): State<Shared>) -> Json<Value> {
    Json(json!({ "methods": s.method_names(), "max_k": MAX_K }))
}

async fn queries(
    State(s): State<Shared>,
    UrlQuery(params): UrlQuery<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let params = ParamMap(params);
    let per_page = number(&params, "per_page")?.unwrap_or(48);
    if !(1..=500).contains(&per_page) {
        return Err(ApiError::bad(format!(
            "per_page must be in 1..=500, got {per_page}"
        )));
    }
    let page = number(&params, "page")?.unwrap_or(0);
    let fine = number(&params, "fine")?;
    let coarse = number(&params, "coarse")?;
    if fine.is_some_and(|f| f >= s.data.names.fine.len())
        || coarse.is_some_and(|c| c >= s.data.names.coarse.len())
    {
        return Err(ApiError::bad("fine must be < 100 and coarse < 20".into()));
    }
    let t = &s.data.test;
    let ids: Vec<u32> = (0..s.n_queries() as u32)
        .filter(|&i| fine.is_none_or(|f| t.fine[i as usize] as usize == f))
        .filter(|&i| coarse.is_none_or(|c| t.coarse[i as usize] as usize == c))
        .collect();
    let items: Vec<Value> = ids
        .iter()
        .skip(page.saturating_mul(per_page))
        .take(per_page)
        .map(|&i| s.describe(i))
        .collect();
    Ok(Json(json!({
        "total": ids.len(),
        "page": page,
        "per_page": per_page,
        "items": items,
        "fine_names": s.data.names.fine,
        "coarse_names": s.data.names.coarse,
    })))
}

async fn search(
    State(s): State<Shared>,
    UrlQuery(params): UrlQuery<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let params = ParamMap(params);
    let query =
        number(&params, "query")?.ok_or_else(|| ApiError::bad("`query` is required".into()))?;
    let method = params
        .0
        .get("method")
        .cloned()
        .ok_or_else(|| ApiError::bad("`method` is required".into()))?;
    let k = number(&params, "k")?.unwrap_or(10);
    let query = u32::try_from(query)
        .map_err(|_| ApiError::not_found(format!("query {query} does not exist")))?;
    let left_out = match params.0.get("protocol").map(String::as_str) {
        None | Some("leave_one_out") => true,
        Some("report") => false,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "`protocol` must be leave_one_out (the default) or report, got `{other}`"
            )));
        }
    };
    s.search(query, &method, k, left_out).map(Json)
}

/// `POST /api/search?method=NAME&k=K` with a PNG or JPEG as the body.
async fn search_upload(
    State(s): State<Shared>,
    UrlQuery(params): UrlQuery<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let params = ParamMap(params);
    let method = params
        .0
        .get("method")
        .cloned()
        .ok_or_else(|| ApiError::bad("`method` is required".into()))?;
    let k = number(&params, "k")?.unwrap_or(10);
    // Refuse a declared oversize body unread; a body that grows past the limit stops there.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > upload::MAX_BYTES as u64) {
        return Err(ApiError::bad(
            upload::UploadError::TooLarge {
                what: format!("Content-Length {}", declared.unwrap_or(0)),
            }
            .to_string(),
        ));
    }
    let bytes = axum::body::to_bytes(body, upload::MAX_BYTES)
        .await
        .map_err(|e| {
            ApiError::bad(
                upload::UploadError::TooLarge {
                    what: format!("the body was cut off at the limit: {e}"),
                }
                .to_string(),
            )
        })?;
    // Decoding and the forward pass take milliseconds of CPU: off the async workers, a few
    // at a time.
    let permit = s.uploads.acquire().await.map_err(ApiError::internal)?;
    let result = tokio::task::spawn_blocking({
        let s = Arc::clone(&s);
        move || s.search_image(&bytes, &method, k)
    })
    .await
    .map_err(ApiError::internal)?;
    drop(permit);
    result.map(Json)
}

async fn explain(
    State(s): State<Shared>,
    UrlQuery(params): UrlQuery<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let params = ParamMap(params);
    let Some(ServedIwan { net, .. }) = &s.iwan else {
        return Err(ApiError::not_found("this run has no IWAN network".into()));
    };
    let query =
        number(&params, "query")?.ok_or_else(|| ApiError::bad("`query` is required".into()))?;
    let db = number(&params, "db")?.ok_or_else(|| ApiError::bad("`db` is required".into()))?;
    if query >= s.n_queries() || db >= net.graph.n_images() {
        return Err(ApiError::not_found(format!(
            "query and db must be below {}",
            s.n_queries()
        )));
    }
    let path = s.path(net, &net.queries[query], &[db as u32]).remove(0);
    Ok(Json(json!({ "query": query, "db": db, "path": path })))
}

async fn metrics(State(s): State<Shared>) -> Json<Value> {
    let rows: Vec<Value> = s
        .metrics
        .iter()
        .map(|((m, p, metric, k), v)| {
            json!({ "method": m, "protocol": p, "metric": metric, "k": k.parse::<u32>().ok(), "value": v })
        })
        .collect();
    Json(Value::Array(rows))
}

async fn image(
    State(s): State<Shared>,
    UrlPath((split, file)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let split = match split.as_str() {
        "test" => SplitName::Test,
        "train" => SplitName::Train,
        other => {
            return Err(ApiError::not_found(format!(
                "unknown split `{other}` (test or train)"
            )));
        }
    };
    let id: usize = file
        .strip_suffix(".png")
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| ApiError::bad(format!("expected <id>.png, got `{file}`")))?;
    let data = s.data.split(split);
    if id >= data.len() {
        return Err(ApiError::not_found(format!(
            "image {id} is outside the {split} split's 0..{}",
            data.len()
        )));
    }
    // Encoding our own 128x128 image cannot be the client's fault: a server error.
    let png = image_png(data.image(id)).map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("encoding image {id} of the {split} split as PNG: {e}"),
    })?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

/// A CIFAR-100 record (planar 32x32 RGB) as a PNG scaled up [`SCALE`] times.
pub fn image_png(planar: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let side = 32 * SCALE;
    let mut rgb = vec![0u8; side * side * 3];
    for y in 0..side {
        for x in 0..side {
            let src = (y / SCALE) * 32 + x / SCALE;
            for c in 0..3 {
                rgb[(y * side + x) * 3 + c] = planar[c * 1024 + src];
            }
        }
    }
    crate::report::figures::encode_png(&rgb, (side as u32, side as u32))
}

/// The router over a loaded run.
pub fn router(served: Served) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/methods", get(methods))
        .route("/api/queries", get(queries))
        .route("/api/search", get(search).post(search_upload))
        .route("/api/explain", get(explain))
        .route("/api/metrics", get(metrics))
        .route("/api/image/{split}/{file}", get(image))
        .with_state(Arc::new(served))
}

/// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`).
///
/// `TcpListener::bind` listens with a backlog of 128. Under 200 simultaneous connections on 2
/// cores, while both workers were busy searching, the queue overflowed (`ListenOverflows` in
/// `/proc/net/netstat` rose by 42 and 49 in the two stalled runs out of four, by 0 in the
/// others); the kernel dropped those SYNs and the clients retried after TCP's 1 s initial
/// retransmission timeout: the 1 s stall the load test had shown.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, so a restart does not wait for
/// `TIME_WAIT`).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::cifar::IMAGE_BYTES;

    #[test]
    fn images_scale_up_by_pixel_replication() {
        // hand-made planar pixels for a pure-function unit test: red top-left pixel only.
        let mut planar = vec![0u8; IMAGE_BYTES];
        planar[0] = 255;
        let png = image_png(&planar).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (128, 128));
        assert_eq!(&buf[..3], &[255, 0, 0]);
        let px = |x: usize, y: usize| &buf[(y * 128 + x) * 3..(y * 128 + x) * 3 + 3];
        assert_eq!(px(3, 3), &[255, 0, 0]);
        assert_eq!(px(4, 0), &[0, 0, 0]);
    }
}
