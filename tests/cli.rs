//! End-to-end runs of the binary on the real data in temp folders.

use crate::common::{TINY, harness, run_dirs, text};

/// Reads an `.npy` file written by the embed stage.
fn npy_f32(path: &std::path::Path) -> (usize, usize, Vec<f32>) {
    harness::store::npy::read_f32(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn run_trains_embeds_and_resumes() {
    let out_dir = tempfile::tempdir().unwrap();
    let exp = out_dir.path().to_str().unwrap();
    let out = harness(&["--quiet", "run", TINY, "--out", exp], None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("results: "), "{stdout}");
    let runs = run_dirs(out_dir.path());
    assert_eq!(runs.len(), 1);
    let run = &runs[0];

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "complete");
    assert_eq!(manifest["format_version"], 1);
    assert_eq!(manifest["seed"], 3);
    assert_eq!(manifest["backend"], "cpu");
    assert_eq!(manifest["config_hash"].as_str().unwrap().len(), 64);
    assert!(manifest["git"]["revision"].is_string());
    assert!(manifest["crates"]["burn"].is_string());
    assert!(manifest["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(manifest["finished_at"].is_string());
    assert_eq!(manifest["protocols"][1]["protocol"], "leave_one_out");
    assert_eq!(manifest["protocols"][1]["query_excluded"], true);
    let hash = manifest["config_hash"].as_str().unwrap();
    assert!(
        run.file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with(&hash[..8])
    );
    assert_eq!(
        manifest["stages"],
        serde_json::json!([
            "data",
            "semantics",
            "iwan_features",
            "train",
            "embed",
            "eval"
        ])
    );

    let resolved = std::fs::read_to_string(run.join("config.resolved.yaml")).unwrap();
    let again = harness::config::Loaded::from_text("resolved", resolved).unwrap();
    assert_eq!(harness::config::hash(&again.config), hash);

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("dataset_summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["splits"][0]["records"], 50_000);
    assert_eq!(summary["splits"][0]["used"], 512);
    assert_eq!(summary["splits"][1]["sha256_matches"], true);
    assert_eq!(summary["hierarchy_height"], 8);
    assert_eq!(summary["usf_rows"], 72_176);
    let counts = std::fs::read_to_string(run.join("class_counts.csv")).unwrap();
    assert!(
        counts.lines().count() == 101
            && counts.contains("\n19,cattle,11,large_omnivores_and_herbivores,")
    );
    let heat = std::fs::read(run.join("semantics/similarity.png")).unwrap();
    assert_eq!(&heat[1..4], b"PNG", "the similarity heat map");
    let svg = std::fs::read_to_string(run.join("semantics/similarity.svg")).unwrap();
    assert!(
        svg.contains("class similarity S"),
        "the heat map has its caption"
    );
    let emb = std::fs::read_to_string(run.join("semantics/class_embedding.csv")).unwrap();
    assert_eq!(emb.lines().count(), 101);

    // Training: two epochs logged; embed: the test prefix only (no train_db protocol).
    let log = std::fs::read_to_string(run.join("train/train_log.csv")).unwrap();
    assert_eq!(log.lines().count(), 3, "{log}");
    let (n, d, e) = npy_f32(&run.join("embed/embeddings/test.npy"));
    assert_eq!((n, d), (1000, 100));
    assert!(e.iter().all(|x| x.is_finite()));
    let (n, h, a) = npy_f32(&run.join("embed/activations/test.npy"));
    assert_eq!((n, h), (1000, 48));
    let (n, w, codes) =
        harness::store::npy::read_u64(&std::fs::read(run.join("embed/codes/test.npy")).unwrap())
            .unwrap();
    assert_eq!((n, w), (1000, 1));
    // Bit j of image i is bit j of its one word, set when activation j >= 0.5 (Lin et al.),
    // checked bit by bit here rather than with the packing code that wrote the file.
    let mut set = 0usize;
    for (i, &code) in codes.iter().enumerate() {
        for j in 0..48 {
            let bit = (code >> j) & 1 == 1;
            assert_eq!(bit, a[i * 48 + j] >= 0.5, "image {i}, bit {j}");
            set += usize::from(bit);
        }
        assert_eq!(code >> 48, 0, "image {i}: bits above h are zero");
    }
    assert!(set > 1000 && set < 47_000, "{set} of 48,000 bits set");
    assert!(!run.join("embed/embeddings/train.npy").exists());
    use polars::prelude::SerReader as _;
    let file = std::fs::File::open(run.join("embed/classes/test.parquet")).unwrap();
    let classes = polars::prelude::ParquetReader::new(file).finish().unwrap();
    assert_eq!(
        classes.shape(),
        (1000 * harness::embed::TOP_CLASSES, 4),
        "{classes}"
    );

    // Evaluation: long-format metrics for both methods under both protocols.
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let value = |method: &str, protocol: &str, metric: &str, k: &str| -> f64 {
        let prefix = format!("{method},{protocol},{metric},{k},");
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{prefix} missing"));
        line[prefix.len()..].parse().unwrap()
    };
    // Under the report's protocol the query is in the database and finds itself first (cosine 1).
    assert!(value("exact", "report", "mP", "1") > 0.99);
    assert_eq!(
        value("exact", "report", "mAHP", "1"),
        0.0,
        "trapezoid AHP@1 is 0 by definition"
    );
    assert!(value("exact", "report", "mAHP_mean", "1") > 0.99);
    for method in ["exact", "hamming_rerank"] {
        for protocol in ["report", "leave_one_out"] {
            for k in ["1", "5", "20", "100"] {
                let p = value(method, protocol, "mP", k);
                assert!((0.0..=1.0).contains(&p), "{method} {protocol} {k}: {p}");
            }
            assert!(value(method, protocol, "qps", "") > 0.0);
        }
    }
    assert!(value("exact", "leave_one_out", "mP", "1") < value("exact", "report", "mP", "1"));
    // IWAN with the ImageNet word model, on the same queries and database.
    for protocol in ["report", "leave_one_out"] {
        let p = value("iwan", protocol, "mP", "20");
        assert!(p > 0.0 && p <= 1.0, "iwan {protocol}: {p}");
    }
    let graph: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("iwan_graph.json")).unwrap())
            .unwrap();
    assert_eq!(graph[0]["images"], 1000);
    assert!(graph[0]["words"].as_u64().unwrap() > 100, "{graph}");
    let summary = std::fs::read_to_string(run.join("tables/summary.md")).unwrap();
    assert!(
        summary.contains("## Protocol `leave_one_out`") && summary.contains("| hamming_rerank |"),
        "{summary}"
    );

    // Second run: same folder, every stage reused.
    let out = harness(&["--quiet", "run", TINY, "--out", exp], None);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.contains("(reused: data, semantics, iwan_features, train, embed, eval)"),
        "{stdout}"
    );
}

#[test]
fn every_shipped_config_validates() {
    let mut paths: Vec<String> = std::fs::read_dir("configs")
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 2, "{paths:?}");
    let mut args = vec!["validate", "--brief"];
    args.extend(paths.iter().map(String::as_str));
    let out = harness(&args, None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
        paths.len()
    );
}

#[test]
fn validate_prints_the_resolved_config_and_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.yaml");
    std::fs::write(
        &path,
        "name: s\nsweep:\n  params:\n    iwan.top_iwk: [1, 2, 3]\n",
    )
    .unwrap();
    let out = harness(&["validate", path.to_str().unwrap()], None);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(stdout.contains("(3 runs)"), "{stdout}");
    assert!(
        stdout.contains("shortlist_factor: 2.0"),
        "defaults are filled in: {stdout}"
    );
    assert!(stdout.contains("iwan.top_iwk=3"), "{stdout}");
}

#[test]
fn data_info_prints_the_real_counts() {
    let out = harness(&["data", "info"], None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("train     50000       500..500"),
        "{stdout}"
    );
    assert!(
        stdout.contains("test      10000       100..100"),
        "{stdout}"
    );
    assert!(stdout.contains("matches the known value"), "{stdout}");
    assert!(
        stdout.contains("hierarchy: 163 nodes, root 108 (entity), height 8"),
        "{stdout}"
    );
    assert!(stdout.contains("USF norms: 72176 rows"), "{stdout}");
    // Golden values from `scripts/golden_counts.py`, an independent Python re-implementation
    // of iwan::words' normalisation rule on the same files (uncovered fine names: flatfish,
    // poppy, streetcar).
    assert!(
        stdout.contains(
            "ImageNet labels 598 of 1000, CIFAR-100 fine names 97 of 100, coarse names 9 of 20"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("14: people"), "{stdout}");
}

#[test]
fn help_teaches() {
    let out = harness(&["run", "--help"], None);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    for needle in [
        "Example: harness run configs/sweep_topiwk.yaml",
        "--slurm --resume",
        "--run-index <N>",
        "Slurm:",
    ] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }
}

/// `model.precision: bf16` without `vdpbf16ps` (here the kernels capped at AVX2 by
/// `HARNESS_SIMD`) runs the portable path, slower than fp32: the features stage says so and
/// names fp32; an fp32 run says nothing.
#[test]
fn bf16_without_dot_product_instructions_warns_and_names_fp32() {
    let warning = "warning: model.precision: bf16 on a CPU without AVX512_BF16";
    let stderr = |precision: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["--quiet", "run", crate::common::TINY_FROZEN])
            .arg(format!("model.precision={precision}"))
            .args(["--out", &path("out"), "--cache", &path("cache")])
            .env_remove("HARNESS_DATA")
            .env("HARNESS_SIMD", "avx2")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out).1);
        text(&out).1
    };
    let bf16 = stderr("bf16");
    assert!(
        bf16.contains(warning) && bf16.contains("model.precision=fp32 is the faster choice"),
        "{bf16}"
    );
    let fp32 = stderr("fp32");
    assert!(!fp32.contains(warning), "{fp32}");
}

/// The bf16 kernel follows the CPU's flags, read from `/proc/cpuinfo` (not from the
/// harness): the AMX tiles where the CPU has AMX-BF16 (and the AVX-512 level with
/// AVX512_BF16), else `vdpbf16ps`, else the portable path; `HARNESS_SIMD=avx512` turns the
/// tiles off. The manifest records it. Where `vdpbf16ps` does fewer multiply-adds per second
/// than the f32 FMA (as `harness bench peak` times them), a bf16 run on it warns and names
/// fp32; where it does clearly more, it does not.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn the_bf16_kernel_follows_the_cpu_and_warns_where_it_is_slower_than_fp32() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().collect())
        .unwrap_or_default();
    let has = |f: &str| flags.contains(&f);
    let avx512 = ["avx2", "fma", "popcnt", "avx512f", "avx512bw", "avx512vl"]
        .iter()
        .all(|f| has(f))
        && has("avx512_vpopcntdq");
    let dots = avx512 && has("avx512_bf16");
    let tiles = dots && has("amx_bf16") && has("amx_tile");
    let kernel_of = |simd: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_harness"));
        cmd.args([
            "--quiet",
            "run",
            crate::common::TINY_FROZEN,
            "model.precision=bf16",
        ])
        .args(["--out", &path("out"), "--cache", &path("cache")])
        .env_remove("HARNESS_DATA")
        .env_remove("HARNESS_SIMD");
        if let Some(simd) = simd {
            cmd.env("HARNESS_SIMD", simd);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out).1);
        let run = run_dirs(&dir.path().join("out")).remove(0);
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap())
                .unwrap();
        let kernel = manifest["machine"]["bf16_kernel"]
            .as_str()
            .unwrap()
            .to_owned();
        (kernel, text(&out).1)
    };
    let expected = if tiles {
        "amx"
    } else if dots {
        "vdpbf16ps"
    } else {
        "portable"
    };
    assert_eq!(kernel_of(None).0, expected, "flags: {flags:?}");
    if !dots {
        return;
    }
    let (kernel, stderr) = kernel_of(Some("avx512"));
    assert_eq!(kernel, "vdpbf16ps");
    let peak = harness(
        &["bench", "peak", "--threads", "1", "--n", "64", "-q"],
        None,
    );
    let rate = |kind: &str| -> f64 {
        text(&peak)
            .0
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|r| r["kind"] == kind && r["threads"] == 1)
            .and_then(|r| r["gflops"].as_f64())
            .unwrap()
    };
    let ratio = rate("dpbf16") / rate("fma-f32");
    let warning = "warning: model.precision: bf16 runs vdpbf16ps";
    // Intel cores measure about 0.5, AMD Zen 4 about 2; in between, no claim.
    if ratio < 0.8 {
        assert!(
            stderr.contains(warning) && stderr.contains("model.precision=fp32"),
            "{stderr}"
        );
    } else if ratio > 1.25 {
        assert!(!stderr.contains(warning), "ratio {ratio}: {stderr}");
    }
}

#[test]
fn frozen_encoder_features_are_cached_and_feed_the_decoder() {
    let out_dir = tempfile::tempdir().unwrap();
    let exp = out_dir.path().to_str().unwrap();
    let config = crate::common::TINY_FROZEN;
    let out = harness(&["--quiet", "run", config, "--out", exp], None);
    assert!(out.status.success(), "{}", text(&out).1);
    let run = run_dirs(out_dir.path()).remove(0);
    let (n, dim, f) = npy_f32(&run.join("features/train.npy"));
    assert_eq!((n, dim), (256, 1280));
    assert!(f.iter().all(|x| x.is_finite()) && f.iter().any(|&x| x != 0.0));
    let (n, _, _) = npy_f32(&run.join("features/test.npy"));
    assert_eq!(n, 300);
    let (n, h, _) = npy_f32(&run.join("embed/activations/test.npy"));
    assert_eq!((n, h), (300, 64));
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(metrics.contains("mih,leave_one_out,mP,100,"), "{metrics}");
    // The bounded int8 scan returns the exact index's rankings, so every quality metric is
    // the exact row's value, to the last digit.
    let quality = |method: &str| -> Vec<String> {
        crate::common::quality_rows(&run)
            .into_iter()
            .filter_map(|l| l.strip_prefix(&format!("{method},")).map(String::from))
            .collect()
    };
    assert!(quality("exact").len() > 10);
    assert_eq!(quality("exact_bounded"), quality("exact"));

    // A different decoder over the same encoder reuses the cached features.
    let text_cfg = std::fs::read_to_string(config)
        .unwrap()
        .replace("h: 64", "h: 32");
    let cfg2 = out_dir.path().join("h32.yaml");
    std::fs::write(&cfg2, text_cfg).unwrap();
    let out = harness(
        &["--quiet", "run", cfg2.to_str().unwrap(), "--out", exp],
        None,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("(reused: features, iwan_features)"),
        "{stdout}"
    );
}

#[test]
fn efficientnet_lite2_trains_and_embeds_with_its_real_weights() {
    // The tiny frozen config with EfficientNet-Lite2 (its shipped ImageNet weights) instead of
    // Lite0: its own features, a decoder trained on them, embeddings and metrics; and IWAN's
    // ImageNet word model reads Lite2's own classifier.
    let out_dir = tempfile::tempdir().unwrap();
    let exp = out_dir.path().to_str().unwrap();
    let config = crate::common::TINY_FROZEN;
    let out = harness(
        &[
            "--quiet",
            "run",
            config,
            "model.encoder=efficientnet_lite2",
            "--out",
            exp,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let run = run_dirs(out_dir.path()).remove(0);
    let (n, dim, lite2) = npy_f32(&run.join("features/train.npy"));
    assert_eq!((n, dim), (256, 1280));
    assert!(lite2.iter().all(|x| x.is_finite()) && lite2.iter().any(|&x| x != 0.0));
    let (_, _, lite0) = npy_f32(&crate::common::tiny_frozen_run().join("features/train.npy"));
    assert_eq!(lite0.len(), lite2.len());
    assert_ne!(lite0, lite2, "Lite2's features are not Lite0's");
    let (n, h, _) = npy_f32(&run.join("embed/activations/test.npy"));
    assert_eq!((n, h), (300, 64));
    let resolved = std::fs::read_to_string(run.join("config.resolved.yaml")).unwrap();
    assert!(
        resolved.contains("encoder: efficientnet_lite2"),
        "{resolved}"
    );
    assert!(crate::common::quality_rows(&run).len() > 10);
}

#[test]
fn check_passes_against_itself_and_flags_regressions() {
    let run = crate::common::tiny_run();
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("baseline.csv");
    let run_arg = run.to_str().unwrap();

    std::fs::write(&baseline, &metrics).unwrap();
    let out = harness(
        &["check", run_arg, "--baseline", baseline.to_str().unwrap()],
        None,
    );
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("no regression"), "{stdout}");

    // A baseline that claims a better mP@5 for exact under leave_one_out: the run regressed.
    let better: String = metrics
        .lines()
        .map(|l| {
            if l.starts_with("exact,leave_one_out,mP,5,") {
                "exact,leave_one_out,mP,5,0.99".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&baseline, better).unwrap();
    let out = harness(
        &["check", run_arg, "--baseline", baseline.to_str().unwrap()],
        None,
    );
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("| exact | leave_one_out | mP | 5 | 0.990000 |")
            && stdout.contains("REGRESSION"),
        "{stdout}"
    );

    // A metric the run does not have: an error naming both sets.
    std::fs::write(
        &baseline,
        "method,protocol,metric,k,value\nexact,report,mQ,5,0.5\n",
    )
    .unwrap();
    let out = harness(
        &["check", run_arg, "--baseline", baseline.to_str().unwrap()],
        None,
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("exact/report/mQ@5")
            && stderr.contains("the run reports: exact/report/mP@1"),
        "{stderr}"
    );
}

#[test]
fn iwan_explain_export_and_bench_read_a_finished_run() {
    let run = crate::common::tiny_run();
    let run_arg = run.to_str().unwrap();

    let out = harness(
        &["iwan", "explain", run_arg, "--query", "3", "--k", "5"],
        None,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("query: test image 3 ("), "{stdout}");
    let ranked = stdout
        .lines()
        .filter(|l| l.contains(". test image "))
        .count();
    let paths = stdout.lines().filter(|l| l.contains("query --")).count();
    assert_eq!((ranked, paths), (5, 5), "{stdout}");
    assert!(
        !stdout.contains(". test image 3 ("),
        "the query itself is left out: {stdout}"
    );

    let out = harness(&["iwan", "explain", run_arg, "--query", "1000"], None);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("--query 1000 is outside"), "{stderr}");
    // The tiny run evaluates no train_db protocol, so it has no train annotations.
    let out = harness(
        &["iwan", "explain", run_arg, "--query", "1", "--db", "train"],
        None,
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("train_db"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let out = harness(
        &[
            "iwan",
            "export",
            run_arg,
            "--out",
            dir.path().to_str().unwrap(),
            "--queries",
            "20",
            "--k",
            "7",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&read("meta.json")).unwrap();
    let edges = read("edges.csv");
    assert_eq!(
        edges.lines().next(),
        Some("source,target,cost,reverse_cost")
    );
    assert_eq!(
        edges.lines().count() - 1,
        meta["edges"].as_u64().unwrap() as usize
    );
    let nodes = read("nodes.csv");
    assert_eq!(
        nodes.lines().count() - 1,
        meta["nodes"].as_u64().unwrap() as usize
    );
    assert!(nodes.lines().nth(1) == Some("0,query,"), "{nodes}");
    let query_edges = read("query_edges.csv");
    let queries: std::collections::BTreeSet<&str> = query_edges
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert!(queries.len() <= 20 && !queries.is_empty());
    let topk = read("topk.csv");
    assert!(topk.lines().count() - 1 <= 20 * 7);
    assert!(topk.lines().nth(1).unwrap().starts_with("0,0,"), "{topk}");

    let out = harness(
        &[
            "bench",
            "iwan",
            run_arg,
            "--queries",
            "20",
            "--top-iwk",
            "1,2",
            "--top-wwk",
            "3",
        ],
        None,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    for (r, iwk) in records.iter().zip([1, 2]) {
        assert_eq!(
            (r["top_iwk"].as_u64(), r["top_wwk"].as_u64()),
            (Some(iwk), Some(3))
        );
        assert_eq!(r["images"].as_u64(), Some(1000));
        let median = r["median_s"].as_f64().unwrap();
        assert!(median > 0.0 && median <= r["p95_s"].as_f64().unwrap());
        assert!(r["with_model_median_s"].as_f64().unwrap() > median);
    }
}

#[test]
fn report_rerenders_the_papers_tables_from_stored_metrics() {
    let run = crate::common::tiny_run();
    let paper = run.join("tables/paper.md");
    let written = std::fs::read_to_string(&paper).unwrap();
    std::fs::remove_file(&paper).unwrap();
    let out = harness(&["report", run.to_str().unwrap()], None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("tables/paper.md"), "{stdout}");
    let again = std::fs::read_to_string(&paper).unwrap();
    assert_eq!(again, written, "the eval stage and `harness report` agree");
    // The tiny run uses exact search and IWAN at topIWK 4 under two protocols: Table 1 like
    // for like, and our IWAN in a section of its own (the report's graph did not run).
    assert!(
        again.contains("## Table 1") && again.contains("### Table 4, ours: predicted words only"),
        "{again}"
    );
    assert!(!again.contains("\n## Table 4"), "{again}");
    assert!(
        again.contains("| mAP_report@5 | 0.5656 |") && again.contains("ours, `leave_one_out`"),
        "{again}"
    );
    for file in [
        "tables/paper.csv",
        "tables/paper.parquet",
        "tables/summary.parquet",
        "metrics.parquet",
        "figures/hp_curves-leave_one_out.png",
        "figures/hp_curves-report.svg",
        "figures/pareto-leave_one_out.svg",
    ] {
        assert!(stdout.contains(file), "{file} not re-rendered: {stdout}");
    }
    let svg = std::fs::read_to_string(run.join("figures/pareto-leave_one_out.svg")).unwrap();
    assert!(
        svg.contains("exact") && svg.contains("iwan"),
        "one point per method"
    );
    let out = harness(&["report", "tests"], None);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("neither a run folder"),
        "{}",
        text(&out).1
    );
}

/// The `query_id`, `rank` and `db_id` columns of a run's dumped rankings, read with polars.
fn dumped_rankings(
    run: &std::path::Path,
    method: &str,
    protocol: &str,
) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    use polars::prelude::SerReader as _;
    let path = run.join(format!("rankings/{method}-{protocol}.parquet"));
    let file = std::fs::File::open(&path).unwrap();
    let df = polars::prelude::ParquetReader::new(file).finish().unwrap();
    let names: Vec<&str> = df.get_column_names().iter().map(|n| n.as_str()).collect();
    assert_eq!(names, ["query_id", "rank", "db_id", "score"]);
    let col = |name: &str| -> Vec<u32> {
        df.column(name)
            .unwrap()
            .u32()
            .unwrap()
            .into_no_null_iter()
            .collect()
    };
    (col("query_id"), col("rank"), col("db_id"))
}

#[test]
fn dumped_rankings_reproduce_the_reported_precision() {
    let run = crate::common::tiny_run();
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let test = harness::data::cifar::Cifar100::load(&crate::common::data_root(), false)
        .unwrap()
        .test;
    for (method, protocol) in [("exact", "leave_one_out"), ("hamming_rerank", "report")] {
        let (query, rank, db) = dumped_rankings(run, method, protocol);
        assert_eq!(query.len(), 1000 * 100, "top max(ks) of every query");
        for k in [1usize, 5, 20, 100] {
            let mut hits = vec![0usize; 1000];
            for ((&q, &r), &d) in query.iter().zip(&rank).zip(&db) {
                if (r as usize) < k && test.fine[q as usize] == test.fine[d as usize] {
                    hits[q as usize] += 1;
                }
            }
            let mp = hits.iter().map(|&h| h as f64 / k as f64).sum::<f64>() / 1000.0;
            let prefix = format!("{method},{protocol},mP,{k},");
            let reported: f64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap()
                .parse()
                .unwrap();
            assert!((mp - reported).abs() < 1e-9, "{prefix} {mp} vs {reported}");
        }
    }
}

/// Barz & Denzler's class similarity computed here from the raw `parent child` lines, sharing no
/// code with `harness::semantics`: `sim(u, v) = 1 - height(lcs(u, v)) / height(root)`, where a
/// node's height is its longest path down to a leaf.
fn hierarchy_similarity() -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(
        crate::common::data_root()
            .path
            .join("hierarchy/cifar.parent-child.txt"),
    )
    .unwrap();
    let mut parent = std::collections::HashMap::new();
    let mut children: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split_whitespace().map(|x| x.parse::<u32>().unwrap());
        let (p, c) = (f.next().unwrap(), f.next().unwrap());
        parent.insert(c, p);
        children.entry(p).or_default().push(c);
    }
    fn height(n: u32, children: &std::collections::HashMap<u32, Vec<u32>>) -> u32 {
        children.get(&n).map_or(0, |cs| {
            1 + cs.iter().map(|&c| height(c, children)).max().unwrap()
        })
    }
    let ancestors = |mut n: u32| {
        let mut path = vec![n];
        while let Some(&p) = parent.get(&n) {
            path.push(p);
            n = p;
        }
        path
    };
    let root = *ancestors(0).last().unwrap();
    let max_height = f64::from(height(root, &children));
    assert_eq!(max_height, 8.0, "DESIGN §3: height 8");
    (0..100)
        .map(|u| {
            let up = ancestors(u);
            (0..100)
                .map(|v| {
                    let vp = ancestors(v);
                    let lcs = *up.iter().find(|a| vp.contains(a)).unwrap();
                    1.0 - f64::from(height(lcs, &children)) / max_height
                })
                .collect()
        })
        .collect()
}

#[test]
fn hierarchy_similarity_matches_hand_worked_pairs() {
    // Worked by hand from cifar.parent-child.txt: classes 0 (apple) and 57 (pear) share the
    // parent 103, a node of height 1: sim = 1 - 1/8. A class with itself: 1.
    let sim = hierarchy_similarity();
    assert_eq!(sim[0][57], 1.0 - 1.0 / 8.0);
    assert_eq!(sim[57][0], sim[0][57]);
    assert_eq!(sim[3][3], 1.0);
    // harness's own S agrees on every pair.
    let (_, s) = harness::artifacts::class_similarity(&crate::common::data_root()).unwrap();
    for (u, row) in sim.iter().enumerate() {
        for (v, &want) in row.iter().enumerate() {
            let got = s.values()[u * 100 + v];
            assert!(
                (got - want).abs() < 1e-12,
                "S[{u}][{v}] = {got}, expected {want}"
            );
        }
    }
}

#[test]
fn dumped_rankings_reproduce_the_reported_mahp() {
    // mAHP@100 (trapezoid, DESIGN §4) under leave-one-out, recomputed from the dumped rankings
    // with the similarity above: independent of harness's metric code.
    let run = crate::common::tiny_run();
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let fine = harness::data::cifar::Cifar100::load(&crate::common::data_root(), false)
        .unwrap()
        .test
        .fine;
    let sim = hierarchy_similarity();
    let (query, rank, db) = dumped_rankings(run, "exact", "leave_one_out");
    let (n, k) = (1000usize, 100usize);
    let mut ranked = vec![vec![0u32; k]; n];
    for ((&q, &r), &d) in query.iter().zip(&rank).zip(&db) {
        ranked[q as usize][r as usize] = d;
    }
    let mut total = 0.0;
    for (q, ranking) in ranked.iter().enumerate() {
        let yq = fine[q] as usize;
        assert!(
            !ranking.contains(&(q as u32)),
            "leave-one-out ranks query {q} itself"
        );
        // The best possible gains: the k largest similarities over the database minus the query.
        let mut ideal: Vec<f64> = (0..n)
            .filter(|&x| x != q)
            .map(|x| sim[yq][fine[x] as usize])
            .collect();
        ideal.sort_by(|a, b| b.total_cmp(a));
        let (mut got, mut best, mut hp) = (0.0, 0.0, Vec::with_capacity(k));
        for i in 0..k {
            got += sim[yq][fine[ranking[i] as usize] as usize];
            best += ideal[i];
            hp.push(got / best);
        }
        let ahp = (hp.iter().sum::<f64>() - (hp[0] + hp[k - 1]) / 2.0) / k as f64;
        total += ahp;
    }
    let ours = total / n as f64;
    let reported: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("exact,leave_one_out,mAHP,100,"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (ours - reported).abs() < 1e-9,
        "mAHP@100 {ours} vs reported {reported}"
    );
    assert!(ours > 0.1 && ours < 0.95, "not degenerate: {ours}");
}

#[test]
fn without_a_terminal_stages_print_plain_lines_and_the_run_ends_with_a_summary() {
    let out_dir = tempfile::tempdir().unwrap();
    let exp = out_dir.path().to_str().unwrap();
    let config = crate::common::TINY_FROZEN;
    // stderr is a pipe here: no bars, one line per stage start and end.
    let out = harness(&["run", config, "--out", exp], None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for stage in ["data", "semantics", "features", "train", "embed", "eval"] {
        assert!(
            stderr.contains(&format!("stage {stage}: started")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("stage {stage}: done in ")),
            "{stderr}"
        );
    }
    // The image stages also give their count and rate: 256 + 300 images through the encoder,
    // 3 epochs over 256, and the 300 test images embedded.
    for (stage, images) in [("features", 556), ("train", 768), ("embed", 300)] {
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("stage {stage}: done in ")))
            .unwrap();
        assert!(
            line.contains(&format!("({images} images, ")) && line.ends_with(" images/s)"),
            "{line}"
        );
    }
    let run = run_dirs(out_dir.path()).remove(0);
    // The summary's numbers are the run's own metrics.
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let value = |key: &str| {
        let line = metrics.lines().find(|l| l.starts_with(key)).unwrap();
        format!(
            "{:.4}",
            line.rsplit(',').next().unwrap().parse::<f64>().unwrap()
        )
    };
    let row = stdout
        .lines()
        .find(|l| l.starts_with("exact "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains(&value("exact,leave_one_out,mP,100,")), "{row}");
    assert!(
        row.contains(&value("exact,leave_one_out,mAHP,100,")),
        "{row}"
    );
    assert!(
        stdout.contains("mP@100") && stdout.contains("tables/paper.md"),
        "{stdout}"
    );

    // Again: every stage is reused, and says so; --quiet keeps only the results line.
    let out = harness(&["run", config, "--out", exp], None);
    assert!(text(&out).1.contains("stage train: reused"));
    let out = harness(&["--quiet", "run", config, "--out", exp], None);
    let (stdout, stderr) = text(&out);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("results: "), "{stdout}");
    assert!(!stderr.contains("stage "), "{stderr}");
}

#[test]
fn bench_scale_writes_its_table_and_figure_with_identical_mih_results() {
    // The tiny run's real outputs (1,000 test and 512 training images) make a 600-row database
    // of test images only and a 3,000-row one with 1,488 made rows.
    let run = crate::common::tiny_run();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("scale");
    let o = harness(
        &[
            "bench",
            "scale",
            run.to_str().unwrap(),
            "--sizes",
            "600,3k",
            "--queries",
            "40",
            "--single-queries",
            "5",
            "--k",
            "20",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("results:"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("scale.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let methods = [
        "exact",
        "exact_bounded",
        "hamming_rerank",
        "mih_rerank",
        "asymmetric",
        "hamming",
        "mih",
    ];
    assert_eq!(rows.len(), 2 * methods.len(), "{csv}");
    for n in ["600", "3000"] {
        let recall = |m: &str| {
            rows.iter()
                .find(|r| r[1] == m && r[2] == n)
                .unwrap_or_else(|| panic!("{m} at {n} missing: {csv}"))[6]
                .parse::<f64>()
                .unwrap()
        };
        assert_eq!(recall("exact"), 1.0);
        assert_eq!(recall("exact_bounded"), 1.0, "the bounded scan is exact");
        // Identical result lists, not only equal recall.
        let dump = out
            .join("dumps")
            .join(if n == "600" { "600" } else { "3k" });
        for (a, b) in [
            ("mih", "hamming"),
            ("mih_rerank", "hamming_rerank"),
            ("exact_bounded", "exact"),
        ] {
            assert_eq!(
                std::fs::read(dump.join(format!("{a}_ids.npy"))).unwrap(),
                std::fs::read(dump.join(format!("{b}_ids.npy"))).unwrap(),
                "{a} vs {b} at N={n}"
            );
        }
    }
    // Every method ran in its own process over a mapped file and reported its memory.
    assert!(
        rows.iter().all(|r| r[8].parse::<f64>().unwrap() > 0.0),
        "{csv}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scale.json")).unwrap()).unwrap();
    assert_eq!(summary["complete"], serde_json::json!(true));
    assert_eq!(summary["sizes_done"], serde_json::json!([600, 3000]));
    assert!(summary["within_class_made"]["mean"].as_f64().unwrap() > 0.0);
    let svg = std::fs::read_to_string(out.join("scale-time.svg")).unwrap();
    assert!(
        svg.contains("median time per query") && svg.contains("mih_rerank"),
        "{svg}"
    );
    assert!(out.join("scale-time.png").exists());
    // The per-size index files are removed unless --keep-data.
    assert!(!out.join("data/n600.idx").exists() && !out.join("data/n3k.idx").exists());
    // --replot measures nothing and renders the same table and figure from scale.json.
    let (md, svg_before) = (
        std::fs::read(out.join("scale.md")).unwrap(),
        std::fs::read(out.join("scale-time.svg")).unwrap(),
    );
    for f in ["scale.csv", "scale.md", "scale-time.svg"] {
        std::fs::remove_file(out.join(f)).unwrap();
    }
    let o = harness(
        &[
            "bench",
            "scale",
            run.to_str().unwrap(),
            "--replot",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(std::fs::read_to_string(out.join("scale.csv")).unwrap(), csv);
    assert_eq!(std::fs::read(out.join("scale.md")).unwrap(), md);
    assert_eq!(
        std::fs::read(out.join("scale-time.svg")).unwrap(),
        svg_before
    );
}

#[test]
fn overrides_and_sweeps_from_the_command_line() {
    // validate shows the overrides applied and the sweep that replaces the config's own.
    let out = harness(
        &[
            "validate",
            "configs/ci.yaml",
            "train.epochs=3",
            "--sweep",
            "seed=1,2",
        ],
        None,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("ok: configs/ci.yaml (2 runs)"), "{stdout}");
    assert!(
        stdout.contains("# command line: train.epochs=3 --sweep seed=1,2"),
        "{stdout}"
    );
    assert!(stdout.contains("epochs: 3"), "{stdout}");
    // A misspelt key is named with the closest field, and nothing runs.
    let out = harness(&["run", "configs/ci.yaml", "train.epoch=3"], None);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("train.epoch") && stderr.contains("did you mean `train.epochs`"),
        "{stderr}"
    );
    // A run records its overrides in the manifest and resolves them into its config.
    let tmp = tempfile::tempdir().unwrap();
    let out = harness(
        &[
            "--quiet",
            "run",
            crate::common::TINY,
            "train.epochs=1",
            "--out",
            tmp.path().to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let run = crate::common::run_dirs(tmp.path()).remove(0);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["command_line"],
        serde_json::json!(["train.epochs=1"])
    );
    assert_eq!(manifest["config"]["train"]["epochs"], 1);
}

#[test]
fn compare_sets_two_real_runs_side_by_side() {
    let (a, b) = (crate::common::tiny_run(), crate::common::tiny_frozen_run());
    let tmp = tempfile::tempdir().unwrap();
    let out = harness(
        &[
            "compare",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--out",
            tmp.path().to_str().unwrap(),
        ],
        None,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // The encoders differ; exact leave-one-out is in both runs, with a difference.
    assert!(
        stdout.contains("| model.encoder | cifar_cnn | efficientnet_lite0 |"),
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| exact | leave_one_out | mP@100 |"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    let (x, y, d): (f64, f64, f64) = (
        cells[4].parse().unwrap(),
        cells[5].parse().unwrap(),
        cells[6].parse().unwrap(),
    );
    assert!((y - x - d).abs() < 2e-4, "{row}");
    for f in ["compare.md", "compare.csv", "compare.png", "compare.svg"] {
        assert!(tmp.path().join(f).exists(), "{f}");
    }
    // A folder that is neither a run nor an experiment is named.
    let out = harness(
        &["compare", a.to_str().unwrap(), tmp.path().to_str().unwrap()],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("neither a run folder"),
        "{}",
        text(&out).1
    );
}
