//! `harness serve` against the shared tiny run (real CIFAR-100, a trained network, real IWAN
//! words): the JSON API, checked against the run's own metrics; bad parameters; a load test; and
//! an end-to-end browser test with Debian's chromium through chromedriver (WebDriver).

use crate::common::{data_root, tiny_frozen_run, tiny_run};
use harness::data::cifar::Cifar100;
use harness::serve::{Results, Served, results_router, router, serve};
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The server's base URL; it runs on a loopback port for the whole test binary.
fn server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let served = Served::load(tiny_run(), None).expect("load the tiny run");
        spawn(move || router(served))
    })
}

/// Serves `router` on a loopback port from its own runtime thread; returns the base URL.
fn spawn(make: impl FnOnce() -> axum::Router + Send + 'static) -> String {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(async { harness::serve::bind("127.0.0.1:0".parse().unwrap()) })
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let router = make();
    std::thread::spawn(move || {
        runtime
            .block_on(serve(listener, router, std::future::pending()))
            .unwrap();
    });
    format!("http://{addr}")
}

/// A results folder holding the shared tiny and tiny_frozen runs (linked as `tiny/<id>` and
/// `tiny_frozen/<id>`, beside a `cache/` that must be skipped), served as `harness serve RESULTS`
/// serves it.
struct ResultsServer {
    url: String,
    /// Each run's URL path and folder.
    runs: Vec<(String, std::path::PathBuf)>,
    _dir: tempfile::TempDir,
}

fn results_server() -> &'static ResultsServer {
    static SERVER: OnceLock<ResultsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut runs = Vec::new();
        for (experiment, run) in [("tiny", tiny_run()), ("tiny_frozen", tiny_frozen_run())] {
            let id = run.file_name().unwrap().to_str().unwrap().to_string();
            std::fs::create_dir_all(dir.path().join(experiment)).unwrap();
            std::os::unix::fs::symlink(run, dir.path().join(experiment).join(&id)).unwrap();
            runs.push((format!("{experiment}/{id}"), run.to_path_buf()));
        }
        std::fs::create_dir_all(dir.path().join("cache")).unwrap();
        std::os::unix::fs::symlink(tiny_run(), dir.path().join("cache/not-a-run")).unwrap();
        let results = Results::scan(dir.path(), None).expect("scan the results folder");
        assert_eq!(results.len(), 2, "cache/ is skipped");
        ResultsServer {
            url: spawn(move || results_router(results)),
            runs,
            _dir: dir,
        }
    })
}

/// A client that gives up after 60 s, so that a blocked server fails a test instead of hanging
/// it (a liveness bound, not a speed check).
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// GET `path` of the run's server: status and body.
fn get(path: &str) -> (u16, Vec<u8>) {
    get_url(&format!("{}{path}", server()))
}

/// GET a full URL: status and body.
fn get_url(url: &str) -> (u16, Vec<u8>) {
    let mut r = agent().get(url).call().unwrap();
    let status = r.status().as_u16();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut r.body_mut().as_reader(), &mut body).unwrap();
    (status, body)
}

fn get_json(path: &str) -> (u16, Value) {
    let (status, body) = get(path);
    (status, serde_json::from_slice(&body).unwrap())
}

fn metric(run_metrics: &str, prefix: &str) -> f64 {
    run_metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("{prefix} missing"))
        .parse()
        .unwrap()
}

#[test]
fn per_query_metrics_average_to_the_runs_metrics_under_both_protocols() {
    let (status, methods) = get_json("/api/methods");
    assert_eq!(status, 200);
    let names: Vec<&str> = methods["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"exact") && names.contains(&"hamming_rerank") && names.contains(&"iwan")
    );
    let run_metrics = std::fs::read_to_string(tiny_run().join("metrics.csv")).unwrap();
    for method in ["exact", "hamming_rerank", "iwan"] {
        let (mut p, mut hp, mut p_report) = (0.0, 0.0, 0.0);
        for q in 0..1000 {
            // k = max(ks) of the run, since hash + re-rank's shortlist (N' = 2k) depends on k.
            let (status, r) = get_json(&format!("/api/search?query={q}&method={method}&k=100"));
            assert_eq!(status, 200, "{r}");
            let results = r["results"].as_array().unwrap();
            assert!(
                results.iter().all(|x| x["id"] != json!(q)),
                "the query is left out"
            );
            p += r["precision_at_k"].as_f64().unwrap();
            hp += r["hp_at_k"].as_f64().unwrap();
            let (status, r) = get_json(&format!(
                "/api/search?query={q}&method={method}&k=100&protocol=report"
            ));
            assert_eq!(status, 200, "{r}");
            p_report += r["precision_at_k"].as_f64().unwrap();
            if method == "iwan" && !results.is_empty() {
                let path = results[0]["path"].as_array().unwrap();
                assert_eq!(path[0]["label"], "query");
                let total: f64 = path.iter().map(|h| h["weight"].as_f64().unwrap()).sum();
                let score = results[0]["score"].as_f64().unwrap();
                assert!(
                    (total - score).abs() <= 1e-5 * score.max(1.0),
                    "query {q}: path {total} vs score {score}"
                );
            }
        }
        let want_p = metric(&run_metrics, &format!("{method},leave_one_out,mP,100,"));
        let want_hp = metric(&run_metrics, &format!("{method},leave_one_out,mHP,100,"));
        let want_report = metric(&run_metrics, &format!("{method},report,mP,100,"));
        assert!(
            (p_report / 1000.0 - want_report).abs() < 1e-9,
            "{method}, report protocol: {} vs {want_report}",
            p_report / 1000.0
        );
        assert!(
            (p / 1000.0 - want_p).abs() < 1e-9,
            "{method}: {} vs {want_p}",
            p / 1000.0
        );
        assert!(
            (hp / 1000.0 - want_hp).abs() < 1e-6,
            "{method}: {} vs {want_hp}",
            hp / 1000.0
        );
    }
}

#[test]
fn bad_parameters_get_400_and_unknown_ids_404() {
    for (path, status, needle) in [
        (
            "/api/search?query=1&method=exact&k=0",
            400,
            "k must be in 1..=100",
        ),
        (
            "/api/search?query=1&method=exact&k=101",
            400,
            "k must be in 1..=100",
        ),
        ("/api/search?query=abc&method=exact", 400, "`query` must be"),
        ("/api/search?method=exact", 400, "`query` is required"),
        ("/api/search?query=1", 400, "`method` is required"),
        (
            "/api/search?query=1000&method=exact",
            404,
            "outside the test split",
        ),
        (
            "/api/search?query=1&method=faiss",
            404,
            "unknown method `faiss`",
        ),
        ("/api/explain?query=1&db=5000", 404, "below"),
        ("/api/queries?per_page=0", 400, "per_page"),
        ("/api/queries?fine=100", 400, "fine must be"),
        ("/api/image/valid/1.png", 404, "unknown split"),
        ("/api/image/test/x.png", 400, "expected <id>.png"),
        ("/api/image/test/10000.png", 404, "outside the test split"),
    ] {
        let (got, body) = get_json(path);
        assert_eq!(got, status, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(needle),
            "{path}: {body}"
        );
    }
}

#[test]
fn hostile_requests_get_clear_errors() {
    let huge = "9".repeat(40);
    for (path, status, needle) in [
        ("/api/search?query=-1&method=exact", 400, "`query` must be"),
        (
            &format!("/api/search?query={huge}&method=exact") as &str,
            400,
            "`query` must be",
        ),
        ("/api/search?query=1&method=exact&k=-5", 400, "`k` must be"),
        (
            &format!("/api/search?query=1&method=exact&k={huge}"),
            400,
            "`k` must be",
        ),
        ("/api/queries?page=-1", 400, "page"),
        ("/api/queries?per_page=100000", 400, "per_page"),
        ("/api/explain?query=1&db=-3", 400, "db"),
    ] {
        let (got, body) = get_json(path);
        assert_eq!(got, status, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap_or("").contains(needle),
            "{path}: {body}"
        );
    }
    // A page past the end is empty, not an error.
    let (status, v) = get_json("/api/queries?page=100000&per_page=50");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(0), "{v}");
    // Unknown routes, and a path that tries to name a file.
    for path in [
        "/api/nothing",
        "/etc/passwd",
        "/api/image/test/..%2F..%2Fmanifest.json",
    ] {
        let (status, _) = get(path);
        assert!(status == 404 || status == 400, "{path}: {status}");
    }
    // A 60 kB query string (near the client's 64 kB URI limit) is refused or answered, never a
    // crash; the server stays up.
    let long = format!(
        "/api/search?query=1&method=exact&pad={}",
        "x".repeat(60_000)
    );
    let (status, _) = get(&long);
    assert!((400..500).contains(&status) || status == 200, "{status}");
    assert_eq!(get("/api/methods").0, 200);
}

/// POST `body` to `path`: status and JSON.
fn post_json(path: &str, body: &[u8]) -> (u16, Value) {
    let mut r = agent()
        .post(&format!("{}{path}", server()))
        .header("Content-Type", "application/octet-stream")
        .send(body)
        .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: {status} {text}")),
    )
}

/// Image `id` of the real CIFAR-100 test split, read straight from `test.bin` (3,074-byte
/// records: two label bytes, then planar RGB) and written as a PNG by the `image` crate, so
/// neither the loader nor the server's own PNG code is involved.
fn cifar_test_png(id: usize) -> Vec<u8> {
    cifar_png(id, false)
}

/// Test image `id` as a PNG, mirrored left to right when `mirror`.
fn cifar_png(id: usize, mirror: bool) -> Vec<u8> {
    use std::io::{Read, Seek};
    let path = data_root().path.join("cifar-100-binary/test.bin");
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(std::io::SeekFrom::Start(id as u64 * 3074 + 2))
        .unwrap();
    let mut planar = vec![0u8; 3072];
    f.read_exact(&mut planar).unwrap();
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        let x = if mirror { 31 - x } else { x };
        let p = (y * 32 + x) as usize;
        image::Rgb([planar[p], planar[1024 + p], planar[2048 + p]])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// (id, score) of each result, and IWAN's paths.
fn ranking(v: &Value) -> (Vec<(u64, f64)>, Vec<Value>) {
    let results = v["results"].as_array().unwrap_or_else(|| panic!("{v}"));
    (
        results
            .iter()
            .map(|r| (r["id"].as_u64().unwrap(), r["score"].as_f64().unwrap()))
            .collect(),
        results.iter().map(|r| r["path"].clone()).collect(),
    )
}

#[test]
fn an_uploaded_cifar_png_ranks_as_its_query_id_with_the_query_in_the_database() {
    // An upload searches the whole test split, so the by-id search to compare with is the
    // report's protocol (the query inside the database), not leave-one-out.
    for id in [0, 7, 123, 999] {
        let png = cifar_test_png(id);
        for method in ["exact", "hamming_rerank", "iwan"] {
            let (status, up) = post_json(&format!("/api/search?method={method}&k=20"), &png);
            assert_eq!(status, 200, "{up}");
            let (_, by_id) = get_json(&format!(
                "/api/search?query={id}&method={method}&k=20&protocol=report"
            ));
            assert_eq!(ranking(&up), ranking(&by_id), "image {id}, {method}");
            assert_eq!(up["query"]["upload"]["width"], 32);
            assert_eq!(up["precision_at_k"], Value::Null, "an upload has no label");
            if method == "exact" {
                // With itself in the database, the query is its own nearest neighbour.
                assert_eq!(up["results"][0]["id"], json!(id), "{up}");
            }
        }
    }
}

#[test]
fn an_uploaded_photo_of_any_size_is_searched_by_every_method() {
    // A real 768 x 576 JPEG (darknet's dog.jpg, shipped with the EfficientNet weights).
    let jpeg = std::fs::read(data_root().path.join("pretrained/test_images/dog.jpg")).unwrap();
    for method in ["exact", "hamming_rerank", "iwan"] {
        let (status, v) = post_json(&format!("/api/search?method={method}&k=15"), &jpeg);
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["results"].as_array().map(Vec::len), Some(15), "{v}");
        let q = &v["query"];
        assert_eq!(
            (
                &q["upload"]["width"],
                &q["upload"]["height"],
                &q["upload"]["format"]
            ),
            (&json!(768), &json!(576), &json!("JPEG"))
        );
        assert_eq!(q["predicted_classes"].as_array().map(Vec::len), Some(5));
        assert!(!q["words"].as_array().unwrap().is_empty(), "{q}");
        if method == "iwan" {
            assert_eq!(v["results"][0]["path"][0]["label"], "query", "{v}");
        }
    }
}

#[test]
fn bad_uploads_get_400_with_their_reason() {
    let png = cifar_test_png(5);
    // A PNG whose header claims 50,000 x 50,000 pixels over a small data chunk (a decompression
    // bomb's signature), and one whose pixel data is damaged.
    let mut bomb = png.clone();
    bomb[16..24].copy_from_slice(&[0, 0, 0xc3, 0x50, 0, 0, 0xc3, 0x50]);
    let crc = crc32fast::hash(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let mut damaged = png.clone();
    let mid = damaged.len() / 2;
    damaged[mid..mid + 40].fill(0xAB);
    let gif = b"GIF89a\x20\x00\x20\x00\x00\x00\x00;".to_vec();
    for (path, body, status, needle) in [
        ("/api/search?method=exact", Vec::new(), 400, "body is empty"),
        (
            "/api/search?method=exact",
            b"<html>not an image</html>".to_vec(),
            400,
            "not a PNG or JPEG image: the first bytes are 3c 68",
        ),
        ("/api/search?method=exact", gif, 400, "Gif image"),
        (
            "/api/search?method=exact",
            bomb,
            400,
            "refused before decoding",
        ),
        (
            "/api/search?method=exact",
            damaged,
            400,
            "PNG image cannot be decoded",
        ),
        (
            "/api/search?method=exact",
            png[..60].to_vec(),
            400,
            "PNG image cannot be decoded",
        ),
        (
            "/api/search?method=exact&k=0",
            png.clone(),
            400,
            "k must be in",
        ),
        ("/api/search?k=5", png.clone(), 400, "`method` is required"),
        (
            "/api/search?method=faiss",
            png.clone(),
            404,
            "unknown method",
        ),
    ] {
        let (got, v) = post_json(path, &body);
        assert_eq!(got, status, "{path}, {} bytes: {v}", body.len());
        assert!(
            v["error"].as_str().unwrap_or("").contains(needle),
            "{path}: {v}"
        );
    }
    // Over 10 MiB: refused from a declared Content-Length before the body is read, and cut off
    // at the limit when the length is not declared (chunked).
    let head = "POST /api/search?method=exact HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    let declared = format!("{head}Content-Length: 104857600\r\n\r\n");
    let (status, v) = raw_request(declared.as_bytes(), &png);
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("10 MiB limit"), "{v}");
    let mut chunked = Vec::new();
    for _ in 0..11 {
        chunked.extend(format!("{:x}\r\n", 1 << 20).as_bytes());
        chunked.extend(vec![0u8; 1 << 20]);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    let streamed = format!("{head}Transfer-Encoding: chunked\r\n\r\n");
    let (status, v) = raw_request(streamed.as_bytes(), &chunked);
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("10 MiB limit"), "{v}");
    // The server still answers.
    assert_eq!(post_json("/api/search?method=exact", &png).0, 200);
}

/// Sends `head` then `body` on a raw connection (a writer thread that ignores the server
/// closing early) and reads the response: status and JSON body.
fn raw_request(head: &[u8], body: &[u8]) -> (u16, Value) {
    use std::io::{Read, Write};
    let addr = server().trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let request = [head, body].concat();
    let sent = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    sent.join().unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let json = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(json).unwrap_or_else(|_| panic!("{text}")),
    )
}

#[test]
fn uploads_to_a_frozen_encoder_run_embed_through_its_encoder() {
    // The frozen-EfficientNet fixture: an upload goes through the fused encoder at the run's
    // input size, the trained decoder, and the ImageNet word model, as the run's own images did.
    let served = Served::load(crate::common::tiny_frozen_run(), None).unwrap();
    for id in [0u32, 42, 299] {
        let png = cifar_test_png(id as usize);
        for method in ["exact", "mih", "iwan"] {
            let up = served.search_image(&png, method, 10).unwrap();
            let by_id = served.search(id, method, 10, false).unwrap();
            assert_eq!(ranking(&up), ranking(&by_id), "image {id}, {method}");
        }
    }
}

#[test]
fn the_mirror_average_embeds_an_image_and_its_mirror_image_alike() {
    // tiny_frozen trained with augmentation from the mirror images and one shifted view, and
    // embedded with the mirror average. Averaged, an image and its mirror image have the same
    // outputs (the same two passes, added in the other order), so uploading the mirror image of
    // a test image must find what the stage's embedding of the image finds, score for score;
    // without the average it is another query.
    let dir = tempfile::tempdir().unwrap();
    let out = crate::common::harness(
        &[
            "--quiet",
            "run",
            crate::common::TINY_FROZEN,
            "train.augment=true",
            "train.shifted_views=1",
            "model.mirror_average=true",
            "--out",
            dir.path().to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", crate::common::text(&out).1);
    let run = crate::common::run_dirs(dir.path()).remove(0);
    for stage in [
        "features_mirrored",
        "features_shifted_0",
        "features_mirrored_test",
    ] {
        let record = run.join("stages").join(format!("{stage}.json"));
        assert!(record.is_file(), "{} is missing", record.display());
    }
    let averaged = Served::load(&run, None).unwrap();
    let plain = Served::load(tiny_frozen_run(), None).unwrap();
    let mut differs_without = 0;
    for id in [0u32, 42, 299] {
        let mirror = cifar_png(id as usize, true);
        for method in ["exact", "mih"] {
            let up = averaged.search_image(&mirror, method, 10).unwrap();
            let by_id = averaged.search(id, method, 10, false).unwrap();
            assert_eq!(ranking(&up), ranking(&by_id), "image {id}, {method}");
            let up = plain.search_image(&mirror, method, 10).unwrap();
            let by_id = plain.search(id, method, 10, false).unwrap();
            differs_without += usize::from(ranking(&up) != ranking(&by_id));
        }
    }
    assert!(
        differs_without > 0,
        "the plain run ranks mirror images alike"
    );
}

#[test]
fn idle_connections_do_not_block_searches() {
    let path = "/api/search?query=3&method=exact&k=10";
    let (_, alone) = get_json(path);
    let addr = server().trim_start_matches("http://").to_string();
    // 300 connections opened and left idle (a slowloris-style client)...
    let idle: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    // ...while a search still gets the same answer.
    let (status, v) = get_json(path);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"].as_array().map(Vec::len), Some(10), "{v}");
    assert_eq!(v["results"], alone["results"]);
    drop(idle);
}

#[test]
fn images_queries_explanations_and_the_page() {
    let (status, png) = get("/api/image/test/7.png");
    assert_eq!(status, 200);
    let mut reader = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (128, 128));
    let cifar = Cifar100::load(&data_root(), false).unwrap();
    let record = cifar.test.image(7);
    // Pixel (x, y) of the PNG is CIFAR pixel (x / 4, y / 4), channels stored as planes.
    for (x, y) in [(0, 0), (37, 90), (127, 127)] {
        let src = (y / 4) * 32 + x / 4;
        let want = [record[src], record[1024 + src], record[2048 + src]];
        assert_eq!(buf[(y * 128 + x) * 3..(y * 128 + x) * 3 + 3], want);
    }

    let (status, q) = get_json("/api/queries?per_page=5&page=1&fine=3");
    assert_eq!(status, 200);
    let items = q["items"].as_array().unwrap();
    assert!(items.iter().all(|i| i["fine"] == 3), "{q}");
    let total = (0..1000).filter(|&i| cifar.test.fine[i] == 3).count();
    assert_eq!(q["total"], total);

    // Explain the path to IWAN's own best hit for query 3, which is reachable by definition.
    let (status, top) = get_json("/api/search?query=3&method=iwan&k=1");
    assert_eq!(status, 200);
    let best = top["results"][0]["id"]
        .as_u64()
        .expect("IWAN returns a hit for query 3");
    let (status, e) = get_json(&format!("/api/explain?query=3&db={best}"));
    assert_eq!(status, 200);
    let path = e["path"].as_array().unwrap();
    assert!(path.len() >= 3, "query -> word(s) -> image: {e}");
    assert_eq!(path.last().unwrap()["label"], format!("image {best}"));

    let (status, page) = get("/");
    assert_eq!(status, 200);
    assert!(
        String::from_utf8(page)
            .unwrap()
            .contains("api/search?query=")
    );
    let (status, metrics) = get_json("/api/metrics");
    assert_eq!(status, 200);
    assert!(metrics.as_array().unwrap().len() > 10);
}

#[test]
fn two_hundred_concurrent_searches_succeed() {
    let url = server().to_string();
    // The ids each request must return, from the same searches made one at a time first.
    let ids = |v: &Value| -> Vec<u64> {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect()
    };
    let path = |i: usize| {
        let method = ["exact", "hamming_rerank", "iwan"][i % 3];
        format!("/api/search?query={}&method={method}&k=100", i * 5)
    };
    let expected: Vec<Vec<u64>> = (0..200)
        .map(|i| {
            let (status, v) = get_json(&path(i));
            assert_eq!(status, 200);
            ids(&v)
        })
        .collect();
    // Exact and hash + re-rank always return k hits (IWAN's queries without a word return none).
    assert!(
        (0..200)
            .filter(|i| i % 3 != 2)
            .all(|i| expected[i].len() == 100)
    );
    let started = Instant::now();
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let method = ["exact", "hamming_rerank", "iwan"][i % 3];
                let t = Instant::now();
                let mut r = agent()
                    .get(&format!(
                        "{url}/api/search?query={}&method={method}&k=100",
                        i * 5
                    ))
                    .call()
                    .unwrap();
                let status = r.status().as_u16();
                let body: Value =
                    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
                (status, body, t.elapsed().as_secs_f64())
            })
        })
        .collect();
    let mut times: Vec<f64> = handles
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let (status, body, t) = h.join().unwrap();
            assert_eq!(status, 200);
            assert_eq!(
                ids(&body),
                expected[i],
                "request {i} under load: {}",
                path(i)
            );
            t
        })
        .collect();
    let wall = started.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    // Reported for the closing note; not asserted (benchmarks are not tests). The harness's
    // one quantile rule (linear interpolation).
    let q = |p: f64| harness::eval::stats::quantile_sorted(&times, p).unwrap() * 1e3;
    eprintln!(
        "serve load: 200 concurrent searches, {:.0} requests/s, p50 {:.1} ms, p95 {:.1} ms, \
         p99 {:.1} ms",
        200.0 / wall,
        q(0.5),
        q(0.95),
        q(0.99)
    );
}

/// WebDriver over HTTP: a minimal client for chromedriver.
struct Driver {
    base: String,
    session: String,
    child: std::process::Child,
}

impl Driver {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let a = agent();
        let mut r = match (method, body) {
            ("GET", _) => a.get(&url).call(),
            ("DELETE", _) => a.delete(&url).call(),
            (_, b) => a
                .post(&url)
                .header("Content-Type", "application/json")
                .send(b.unwrap_or(json!({})).to_string()),
        }
        .unwrap();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        v["value"].clone()
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.as_object()?.values().next()?.as_str().map(String::from))
        .collect()
    }

    /// Saves a screenshot of the page under the test target's temp folder.
    fn screenshot(&self, name: &str) {
        let shot = self.call("GET", "/screenshot", None);
        let png = base64_decode(shot.as_str().unwrap());
        assert_eq!(&png[1..4], b"PNG");
        let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&out, png).unwrap();
        eprintln!("screenshot: {}", out.display());
    }

    /// Polls until `css` matches at least `n` elements (or 20 s pass).
    fn wait_for(&self, css: &str, n: usize) -> Vec<String> {
        let started = Instant::now();
        loop {
            let found = self.find_all(css);
            if found.len() >= n || started.elapsed() > Duration::from_secs(20) {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = agent()
            .delete(&format!("{}/session/{}", self.base, self.session))
            .call();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_program(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Standard base64 (with padding) to bytes.
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| u32::from(value(c))).collect();
        let n = v.iter().fold(0u32, |acc, x| (acc << 6) | x) << (6 * (4 - v.len()));
        out.extend(&n.to_be_bytes()[1..v.len()]);
    }
    out
}

#[test]
fn base64_decodes_rfc_4648_vectors() {
    // RFC 4648 test vectors, for the decoder the browser test uses.
    assert_eq!(base64_decode("Zm9vYmFy"), b"foobar");
    assert_eq!(base64_decode("Zm9vYg=="), b"foob");
    assert_eq!(base64_decode("Zm8="), b"fo");
}

#[test]
fn the_page_in_headless_chromium_shows_three_columns_a_word_path_and_an_upload() {
    let (Some(chromedriver), Some(chromium)) = (
        find_program("chromedriver"),
        find_program("chromium").or_else(|| find_program("chromium-browser")),
    ) else {
        assert!(
            std::env::var_os("HARNESS_REQUIRE_BROWSER").is_none(),
            "HARNESS_REQUIRE_BROWSER is set but chromium / chromedriver are not installed \
             (apt-get install chromium chromium-driver)"
        );
        // Written past libtest's output capture, so the skip shows in `cargo test` output.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "serve::browser test SKIPPED: chromium / chromedriver not installed \
             (apt-get install chromium chromium-driver; CI sets HARNESS_REQUIRE_BROWSER=1)"
        );
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while agent().get(&format!("{base}/status")).call().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
        "binary": chromium,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1400,1100"]
    }}}});
    let mut r = agent()
        .post(&format!("{base}/session"))
        .header("Content-Type", "application/json")
        .send(caps.to_string())
        .unwrap();
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    let session = v["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no session: {v}"))
        .to_string();
    let d = Driver {
        base,
        session,
        child,
    };
    d.call(
        "POST",
        "/url",
        Some(json!({"url": format!("{}/", server())})),
    );
    let thumbs = d.wait_for(".query-thumb", 48);
    assert_eq!(thumbs.len(), 48, "one page of query thumbnails");
    d.call("POST", &format!("/element/{}/click", thumbs[3]), None);
    for method in ["exact", "hamming_rerank", "iwan"] {
        let css = format!(".column[data-method=\"{method}\"] .result");
        assert_eq!(
            d.wait_for(&css, 10).len(),
            10,
            "{method} shows k = 10 results"
        );
    }
    assert!(
        !d.wait_for(".iwan-path", 1).is_empty(),
        "an IWAN word path is shown"
    );
    assert!(
        d.wait_for("#overall-table tr", 2).len() >= 2,
        "the run table is shown"
    );
    d.screenshot("serve-page.png");

    // Search by a file of one's own, chosen through the page's file input (WebDriver types the
    // path into it, as a user picking the file would).
    let photo = data_root().path.join("pretrained/test_images/giraffe.jpg");
    let input = d.wait_for("#upload", 1);
    assert_eq!(input.len(), 1, "the page has a file input");
    d.call(
        "POST",
        &format!("/element/{}/value", input[0]),
        Some(json!({"text": photo.canonicalize().unwrap().to_str().unwrap()})),
    );
    assert_eq!(
        d.wait_for("#upload-preview", 1).len(),
        1,
        "the upload is shown as the query"
    );
    for method in ["exact", "hamming_rerank", "iwan"] {
        let css = format!(".column[data-method=\"{method}\"] .result");
        assert_eq!(
            d.wait_for(&css, 10).len(),
            10,
            "{method} shows k = 10 results for the upload"
        );
    }
    assert!(
        d.find_all(".query-metrics").is_empty(),
        "no P@k for an unlabelled upload"
    );
    d.screenshot("serve-upload.png");

    // Drag and drop: a real `drop` event carrying a file (the page's own 128 x 128 PNG of test
    // image 3, fetched in the page) on the drop zone.
    let script = "const done = arguments[arguments.length - 1];
        fetch('/api/image/test/3.png').then((r) => r.blob()).then((b) => {
          const dt = new DataTransfer();
          dt.items.add(new File([b], 'dropped.png', { type: 'image/png' }));
          document.getElementById('drop').dispatchEvent(
            new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
          done(true);
        });";
    let ran = d.call(
        "POST",
        "/execute/async",
        Some(json!({"script": script, "args": []})),
    );
    assert_eq!(ran, json!(true), "{ran}");
    let started = Instant::now();
    let heading = loop {
        let text = d
            .find_all("#query-info h2")
            .first()
            .map(|e| d.call("GET", &format!("/element/{e}/text"), None))
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        if text.contains("128 x 128 PNG") || started.elapsed() > Duration::from_secs(20) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        heading.contains("128 x 128 PNG"),
        "the dropped file is the query: {heading}"
    );
    for method in ["exact", "hamming_rerank", "iwan"] {
        let css = format!(".column[data-method=\"{method}\"] .result");
        assert_eq!(d.wait_for(&css, 10).len(), 10, "{method} after the drop");
    }

    // The runs page of a results folder: sort by mP@100, then open a run's query page.
    let base = &results_server().url;
    d.call("POST", "/url", Some(json!({"url": format!("{base}/")})));
    assert!(
        d.wait_for("#body tr", 2).len() >= 2,
        "one row per run and method"
    );
    let header = d.wait_for("th[data-key=\"mP@100\"]", 1);
    assert_eq!(header.len(), 1, "an mP@100 column");
    let column = |d: &Driver| -> Vec<f64> {
        let index = d
            .find_all("#head th")
            .iter()
            .position(|th| {
                d.call("GET", &format!("/element/{th}/attribute/data-key"), None) == json!("mP@100")
            })
            .unwrap();
        d.find_all(&format!("#body td:nth-child({})", index + 1))
            .iter()
            .filter_map(|td| {
                d.call("GET", &format!("/element/{td}/attribute/data-value"), None)
                    .as_str()
                    .and_then(|v| v.parse().ok())
            })
            .collect()
    };
    d.call("POST", &format!("/element/{}/click", header[0]), None);
    let sorted = column(&d);
    assert!(sorted.len() >= 2, "{sorted:?}");
    assert!(
        sorted.windows(2).all(|w| w[0] >= w[1]),
        "descending: {sorted:?}"
    );
    let header = d.find_all("th[data-key=\"mP@100\"]");
    d.call("POST", &format!("/element/{}/click", header[0]), None);
    let reversed = column(&d);
    assert!(
        reversed.windows(2).all(|w| w[0] <= w[1]),
        "ascending: {reversed:?}"
    );
    d.screenshot("serve-runs.png");
    let link = d.wait_for(".run-link", 1);
    d.call("POST", &format!("/element/{}/click", link[0]), None);
    assert_eq!(
        d.wait_for(".query-thumb", 48).len(),
        48,
        "the run's query page"
    );
}

/// The value of one metrics.csv row, read from the file's text (the oracle of the runs page).
fn csv_value(run: &std::path::Path, method: &str, protocol: &str, metric: &str, k: &str) -> f64 {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let prefix = format!("{method},{protocol},{metric},{k},");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{prefix} missing"))
        .parse()
        .unwrap()
}

#[test]
fn the_runs_page_lists_each_run_with_its_metrics_and_serves_its_query_page() {
    let ResultsServer {
        url: base, runs, ..
    } = results_server();
    let (status, body) = get_url(&format!("{base}/api/runs"));
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_slice(&body).unwrap();
    let listed = listed["runs"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for ((path, dir), run) in runs.iter().zip(listed) {
        assert_eq!(run["path"], json!(path));
        assert_eq!(run["status"], json!("complete"));
        let metrics = run["metrics"].as_array().unwrap();
        // Every headline row of metrics.csv, with its value, and nothing else.
        let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        let headline = csv
            .lines()
            .filter(|l| {
                let f: Vec<&str> = l.split(',').collect();
                matches!(
                    (f[2], f[3]),
                    ("mP", "100")
                        | ("mAHP", "250")
                        | ("mAHP_mean", "250")
                        | ("mAP_report", "250")
                        | ("query_median_s", "")
                )
            })
            .count();
        assert!(headline > 0);
        assert_eq!(metrics.len(), headline, "{path}");
        for m in metrics {
            let s = |k: &str| m[k].as_str().unwrap().to_string();
            let want = csv_value(dir, &s("method"), &s("protocol"), &s("metric"), &s("k"));
            // serde_json's default float parser may miss the nearest double by one ulp.
            let got = m["value"].as_f64().unwrap();
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want.abs(),
                "{path} {m}: {want}"
            );
        }
    }

    // The page, and each run's own page and API under /run/<path>/.
    let (status, page) = get_url(&format!("{base}/"));
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("<title>harness: runs</title>"));
    let tiny = &runs[0].0;
    let (status, page) = get_url(&format!("{base}/run/{tiny}"));
    assert_eq!(status, 200, "redirected to the trailing slash");
    assert!(String::from_utf8_lossy(&page).contains("<title>harness: CIFAR-100 retrieval</title>"));
    let (_, methods) = get_url(&format!("{base}/run/{tiny}/api/methods"));
    assert_eq!(
        serde_json::from_slice::<Value>(&methods).unwrap(),
        get_json("/api/methods").1
    );
    let search = "/api/search?query=3&method=exact&k=10";
    let (status, nested) = get_url(&format!("{base}/run/{tiny}{search}"));
    assert_eq!(status, 200);
    let nested: Value = serde_json::from_slice(&nested).unwrap();
    assert_eq!(ranking(&nested), ranking(&get_json(search).1));
    let (status, body) = get_url(&format!("{base}/run/nope/x"));
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("no run `nope/x`"));
}
