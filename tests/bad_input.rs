//! Bad input, each through the real binary: a clear message naming the file, field or line,
//! exit code 2, and nothing half-written.

use crate::common::{ScratchRoot, TINY, harness, quality_rows, run_dirs, text};
use std::path::Path;

/// Writes `yaml` to a temp config, runs `harness validate` on it and returns stderr; asserts
/// the exit code is 2.
fn validate_err(yaml: &str) -> String {
    validate_err_bytes(yaml.as_bytes())
}

/// [`validate_err`] for arbitrary bytes.
fn validate_err_bytes(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, bytes).unwrap();
    let out = harness(&["validate", path.to_str().unwrap()], None);
    let (_, err) = text(&out);
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected failure for:\n{shown}\nstderr: {err}"
    );
    assert!(err.contains("bad.yaml"), "error must name the file: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn unknown_key_names_key_line_and_allowed_keys() {
    let err = validate_err("name: x\nmodel:\n  encoder: cifar_cnn\n  hash_bits: 48\n");
    assert!(err.contains("unknown field `hash_bits`"), "{err}");
    assert!(err.contains("line 4"), "{err}");
    assert!(
        err.contains("encoder, input_size, freeze, weights, h, d, aux_ce_weight"),
        "{err}"
    );
}

#[test]
fn the_reports_settings_and_metrics_are_checked() {
    let err = validate_err("name: x\neval:\n  metrics: [mP, mAP_reprt]\n");
    assert!(
        err.contains("line 3") && err.contains("unknown variant `mAP_reprt`"),
        "{err}"
    );
    assert!(
        err.contains("mAP_report, mP_hit20, mAHP_hit20"),
        "lists the names: {err}"
    );
    let err = validate_err("name: x\neval:\n  metrics: []\n");
    assert!(
        err.contains("eval.metrics") && err.contains("at least one"),
        "{err}"
    );
    let err = validate_err("name: x\nindex:\n  methods: [exact]\n  report_setting: true\n");
    assert!(
        err.contains("index.report_setting") && err.contains("hamming_rerank"),
        "{err}"
    );
    let err = validate_err("name: x\niwan:\n  report_graph: true\n");
    assert!(
        err.contains("iwan.report_graph") && err.contains("train_db"),
        "{err}"
    );
}

#[test]
fn unknown_top_level_section() {
    let err = validate_err("name: x\ntraining:\n  epochs: 3\n");
    assert!(
        err.contains("unknown field `training`") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn wrong_type() {
    let err = validate_err("name: x\nmodel:\n  h: forty-eight\n");
    assert!(err.contains("line 3") && err.contains("invalid"), "{err}");
}

#[test]
fn zero_hash_bits() {
    let err = validate_err("name: x\nmodel:\n  h: 0\n");
    assert!(
        err.contains("field `model.h` (line 3)") && err.contains("1..=1024"),
        "{err}"
    );
}

#[test]
fn too_many_hash_bits_and_embedding_dims() {
    let err = validate_err("name: x\nmodel:\n  h: 4096\n");
    assert!(err.contains("model.h"), "{err}");
    let err = validate_err("name: x\nmodel:\n  d: 101\n");
    assert!(
        err.contains("model.d") && err.contains("number of classes"),
        "{err}"
    );
}

#[test]
fn negative_k() {
    let err = validate_err("name: x\neval:\n  ks: [1, -1]\n");
    assert!(err.contains("line 3") && err.contains("invalid"), "{err}");
}

#[test]
fn zero_k_and_empty_ks_and_k_beyond_database() {
    let err = validate_err("name: x\neval:\n  ks: [0]\n");
    assert!(err.contains("eval.ks") && err.contains("got 0"), "{err}");
    let err = validate_err("name: x\neval:\n  ks: []\n");
    assert!(err.contains("at least one cut-off"), "{err}");
    let err = validate_err("name: x\neval:\n  ks: [20000]\n  protocols: [train_db, report]\n");
    assert!(
        err.contains("1..=10000 (the smallest database the protocols search)"),
        "{err}"
    );
    let err = validate_err("name: x\neval:\n  ks: [10000]\n  protocols: [leave_one_out]\n");
    assert!(err.contains("1..=9999"), "{err}");
}

#[test]
fn unknown_protocol_lists_valid_ones() {
    let err = validate_err("name: x\neval:\n  protocols: [leave-one-out]\n");
    assert!(
        err.contains("leave-one-out") && err.contains("leave_one_out"),
        "{err}"
    );
}

#[test]
fn unknown_encoder_lists_valid_ones() {
    let err = validate_err("name: x\nmodel:\n  encoder: resnet50\n");
    assert!(err.contains("resnet50"), "{err}");
    assert!(
        err.contains("cifar_cnn") && err.contains("efficientnet_lite0") && err.contains("alexnet"),
        "{err}"
    );
}

#[test]
fn shortlist_factor_below_one() {
    let err = validate_err("name: x\nindex:\n  shortlist_factor: 0.5\n");
    assert!(
        err.contains("index.shortlist_factor") && err.contains(">= 1"),
        "{err}"
    );
}

#[test]
fn empty_sweep_list() {
    let err = validate_err("name: x\nsweep:\n  params:\n    iwan.top_iwk: []\n");
    assert!(
        err.contains("empty") && err.contains("iwan.top_iwk"),
        "{err}"
    );
}

#[test]
fn sweep_key_that_names_no_field() {
    let err = validate_err("name: x\nsweep:\n  params:\n    model.hh: [16]\n");
    assert!(err.contains("did you mean `model.h`"), "{err}");
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let err = validate_err("name: x\nmodel:\n  h: [1, 2\n  d: 3\n");
    assert!(err.contains("line") && err.contains("column"), "{err}");
}

#[test]
fn bad_experiment_name() {
    let err = validate_err("name: ../escape\n");
    assert!(err.contains("field `name`"), "{err}");
}

#[test]
fn missing_config_file() {
    let out = harness(&["validate", "configs/does-not-exist.yaml"], None);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("configs/does-not-exist.yaml"), "{err}");
}

/// Runs the default config against `root` into a fresh output folder; asserts failure with a
/// message containing `expect`, and that no result file was written.
fn run_fails_on(root: &Path, expect: &[&str]) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = harness(
        &[
            "--quiet",
            "--data-root",
            root.to_str().unwrap(),
            "run",
            "--out",
            out_dir.path().to_str().unwrap(),
        ],
        None,
    );
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for e in expect {
        assert!(err.contains(e), "expected `{e}` in: {err}");
    }
    // Nothing half-written: no summary, no stage record, manifest says failed.
    let runs = run_dirs(out_dir.path());
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert!(!run.join("dataset_summary.json").exists());
    assert!(!run.join("stages/data.json").exists());
    let manifest = std::fs::read_to_string(run.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"status\": \"failed: "), "{manifest}");
    let leftovers: Vec<_> = std::fs::read_dir(run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            // A released lock keeps its file, with its record emptied.
            name.ends_with(".tmp") || (name == ".lock" && std::fs::metadata(p).unwrap().len() > 0)
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn truncated_test_bin() {
    let root = ScratchRoot::new();
    let mut bytes = root.real("cifar-100-binary/test.bin");
    bytes.truncate(bytes.len() - 1000);
    root.replace("cifar-100-binary/test.bin", &bytes);
    run_fails_on(
        root.path(),
        &["test.bin", "not a multiple of the 3074-byte record"],
    );
}

#[test]
fn label_byte_out_of_range() {
    let root = ScratchRoot::new();
    let mut bytes = root.real("cifar-100-binary/test.bin");
    bytes[5 * 3074 + 1] = 150; // fine label of record 5
    root.replace("cifar-100-binary/test.bin", &bytes);
    // The checksum check catches the change first; disable it to reach the label check.
    let cfg = tempfile::tempdir().unwrap();
    let path = cfg.path().join("nochk.yaml");
    std::fs::write(&path, "name: nochk\ndata:\n  verify_checksums: false\n").unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = harness(
        &[
            "--quiet",
            "--data-root",
            root.path().to_str().unwrap(),
            "run",
            path.to_str().unwrap(),
            "--out",
            out_dir.path().to_str().unwrap(),
        ],
        None,
    );
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("record 5") && err.contains("fine 150"),
        "{err}"
    );
}

#[test]
fn corrupt_test_bin_fails_the_checksum() {
    let root = ScratchRoot::new();
    let mut bytes = root.real("cifar-100-binary/test.bin");
    bytes[1000] ^= 1; // a pixel byte
    root.replace("cifar-100-binary/test.bin", &bytes);
    run_fails_on(
        root.path(),
        &["test.bin", "sha256", "does not match the known value"],
    );
}

#[test]
fn hierarchy_with_a_cycle() {
    let root = ScratchRoot::new();
    let mut text = String::from_utf8(root.real("hierarchy/cifar.parent-child.txt")).unwrap();
    text.push_str("0 108\n"); // the root gets a parent: no root remains
    root.replace("hierarchy/cifar.parent-child.txt", text.as_bytes());
    run_fails_on(root.path(), &["cifar.parent-child.txt", "cycle"]);
}

#[test]
fn hierarchy_with_a_missing_leaf() {
    let root = ScratchRoot::new();
    let text = String::from_utf8(root.real("hierarchy/cifar.parent-child.txt")).unwrap();
    // Hang class 57 (pear) below class 5 (bed): class 5 is no longer a leaf.
    let edited: String = text
        .lines()
        .map(|l| {
            if l.split_whitespace().nth(1) == Some("57") {
                "5 57".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    root.replace("hierarchy/cifar.parent-child.txt", edited.as_bytes());
    run_fails_on(
        root.path(),
        &["cifar.parent-child.txt", "classes that are not leaves: [5]"],
    );
}

#[test]
fn usf_without_the_fsg_column() {
    let root = ScratchRoot::new();
    let text = String::from_utf8(root.real("usf/usf_free_association_norms.csv")).unwrap();
    let dropped: String = text
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(5); // FSG
            f.join(",")
        })
        .collect::<Vec<_>>()
        .join("\n");
    root.replace("usf/usf_free_association_norms.csv", dropped.as_bytes());
    run_fails_on(
        root.path(),
        &["usf_free_association_norms.csv", "missing column `FSG`"],
    );
}

#[test]
fn usf_with_a_non_numeric_strength() {
    let root = ScratchRoot::new();
    let text = String::from_utf8(root.real("usf/usf_free_association_norms.csv")).unwrap();
    let edited = text.replacen(",.667,.513,", ",high,.513,", 1);
    assert_ne!(edited, text);
    root.replace("usf/usf_free_association_norms.csv", edited.as_bytes());
    run_fails_on(root.path(), &["(DOG -> CAT): FSG `high`"]);
}

#[test]
fn data_root_missing() {
    let out = harness(&["--data-root", "/nonexistent/data", "data", "info"], None);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("/nonexistent/data") && err.contains("--data-root"),
        "{err}"
    );
}

/// The run folder `harness run TINY --out <exp>` uses.
fn tiny_run_dir(exp: &Path) -> std::path::PathBuf {
    let loaded = harness::config::Loaded::from_path(Path::new(TINY)).unwrap();
    exp.join(&loaded.runs().unwrap()[0].id)
}

#[test]
fn run_directory_in_use() {
    let out_dir = tempfile::tempdir().unwrap();
    let run = tiny_run_dir(out_dir.path());
    std::fs::create_dir_all(&run).unwrap();
    // This test's process holds the lock.
    let _held = harness::experiment::lock::RunLock::acquire(&run).unwrap();
    let second = harness(
        &[
            "--quiet",
            "run",
            TINY,
            "--out",
            out_dir.path().to_str().unwrap(),
        ],
        None,
    );
    let (_, err) = text(&second);
    assert_eq!(second.status.code(), Some(2));
    assert!(err.contains("in use by another harness process"), "{err}");
    assert!(
        !run.join("manifest.json").exists(),
        "nothing written while locked"
    );
}

#[test]
fn results_folder_not_writable() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let out = harness(
        &[
            "--quiet",
            "run",
            "--out",
            blocker.join("sub").to_str().unwrap(),
        ],
        None,
    );
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("a-file"), "{err}");
}

#[test]
fn run_folder_from_another_format_version() {
    let out_dir = tempfile::tempdir().unwrap();
    let run = tiny_run_dir(out_dir.path());
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("manifest.json"), "{\"format_version\": 0}").unwrap();
    let again = harness(
        &[
            "--quiet",
            "run",
            TINY,
            "--out",
            out_dir.path().to_str().unwrap(),
        ],
        None,
    );
    let (_, err) = text(&again);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        err.contains("format 0") && err.contains("format 1"),
        "{err}"
    );
}

#[test]
fn iwan_top_k_outside_the_word_models_labels() {
    let err = validate_err("name: x\niwan:\n  top_iwk: 0\n");
    assert!(
        err.contains("iwan.top_iwk") && err.contains("1..=1000"),
        "{err}"
    );
    let err = validate_err("name: x\niwan:\n  word_model: classes\n  top_iwk: 101\n");
    assert!(
        err.contains("1..=100 (the classes word model has 100 labels), got 101"),
        "{err}"
    );
    let err = validate_err("name: x\niwan:\n  top_wwk: 0\n");
    assert!(
        err.contains("iwan.top_wwk") && err.contains("got 0"),
        "{err}"
    );
}

// ---- Hostile YAML -------------------------------------------------------------------------

#[test]
fn empty_config() {
    let err = validate_err("");
    assert!(err.contains("unexpected end of input at line 1"), "{err}");
}

#[test]
fn config_that_is_not_utf8() {
    let err = validate_err_bytes(b"name: x\nmodel:\n  encoder: \xff\xfe\n");
    assert!(
        err.contains("not UTF-8") && err.contains("byte 26"),
        "{err}"
    );
}

#[test]
fn duplicate_keys() {
    let err = validate_err("name: x\nmodel:\n  h: 48\n  h: 32\n");
    assert!(err.to_lowercase().contains("duplicate"), "{err}");
}

#[test]
fn a_config_of_100_megabytes_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(100 << 20).unwrap(); // sparse: nothing is written or read
    let out = harness(&["validate", path.to_str().unwrap()], None);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("bad.yaml") && err.contains("104857600 bytes") && err.contains("limit"),
        "{err}"
    );
}

#[test]
fn deeply_nested_config() {
    // Sweep values are free-form, so the parser itself must bound the nesting (serde-saphyr's
    // recursion limit), before any stack overflow.
    let depth = 5000;
    let yaml = format!(
        "name: x\nsweep:\n  params:\n    model.h: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let err = validate_err(&yaml);
    assert!(
        err.contains("recursion limit exceeded") && err.contains("line 4"),
        "{err}"
    );
}

#[test]
fn alias_bomb() {
    // The "billion laughs" in free-form sweep values: nine levels of nine aliases would expand
    // to 9^9 strings; serde-saphyr's node budget stops it (at 250,000 nodes).
    let lol = ["\"lol\""; 9].join(",");
    let mut yaml = format!("name: x\nsweep:\n  params:\n    model.a: &a [{lol}]\n");
    for level in b'b'..=b'i' {
        let (name, prev) = (level as char, (level - 1) as char);
        let refs = vec![format!("*{prev}"); 9].join(",");
        yaml.push_str(&format!("    model.{name}: &{name} [{refs}]\n"));
    }
    let err = validate_err(&yaml);
    assert!(err.contains("budget breached"), "{err}");
}

// ---- Hostile CIFAR files (loaded directly; each error names the file) ---------------------

fn cifar_err(root: &ScratchRoot, verify: bool) -> String {
    let data = harness::data::DataRoot::resolve(Some(root.path()), None).unwrap();
    let err = harness::data::cifar::Cifar100::load(&data, verify).unwrap_err();
    err.to_string()
}

#[test]
fn truncated_train_bin() {
    let root = ScratchRoot::new();
    let mut bytes = root.real("cifar-100-binary/train.bin");
    bytes.truncate(bytes.len() - 3074 * 3 - 10);
    root.replace("cifar-100-binary/train.bin", &bytes);
    let err = cifar_err(&root, false);
    assert!(
        err.contains("train.bin") && err.contains("not a multiple of the 3074-byte record"),
        "{err}"
    );
}

#[test]
fn train_bin_with_whole_records_missing() {
    let root = ScratchRoot::new();
    let mut bytes = root.real("cifar-100-binary/train.bin");
    bytes.truncate(bytes.len() - 3074 * 2);
    root.replace("cifar-100-binary/train.bin", &bytes);
    let err = cifar_err(&root, false);
    assert!(err.contains("train.bin") && err.contains("49998"), "{err}");
}

#[test]
fn train_bin_with_an_out_of_range_coarse_label() {
    let root = ScratchRoot::new();
    let mut bytes = root.real("cifar-100-binary/train.bin");
    bytes[123 * 3074] = 20; // coarse label of record 123
    root.replace("cifar-100-binary/train.bin", &bytes);
    let err = cifar_err(&root, false);
    assert!(
        err.contains("train.bin") && err.contains("record 123") && err.contains("coarse 20"),
        "{err}"
    );
}

#[test]
fn train_bin_whose_labels_disagree_with_fine_to_coarse() {
    let root = ScratchRoot::new();
    let mut bytes = root.real("cifar-100-binary/train.bin");
    let coarse = bytes[77 * 3074];
    bytes[77 * 3074] = (coarse + 1) % 20; // a valid coarse id, but not this fine class's
    root.replace("cifar-100-binary/train.bin", &bytes);
    let err = cifar_err(&root, false);
    assert!(
        err.contains("train.bin") && err.contains("record 77"),
        "{err}"
    );
}

#[test]
fn an_edited_train_bin_fails_the_checksum() {
    let root = ScratchRoot::new();
    let mut bytes = root.real("cifar-100-binary/train.bin");
    bytes[10_000] ^= 0x80;
    root.replace("cifar-100-binary/train.bin", &bytes);
    let err = cifar_err(&root, true);
    assert!(err.contains("train.bin") && err.contains("sha256"), "{err}");
}

#[test]
fn label_name_files_with_the_wrong_count() {
    let root = ScratchRoot::new();
    let text = String::from_utf8(root.real("cifar-100-binary/fine_label_names.txt")).unwrap();
    let fewer: Vec<&str> = text.lines().take(99).collect();
    root.replace(
        "cifar-100-binary/fine_label_names.txt",
        fewer.join("\n").as_bytes(),
    );
    let err = cifar_err(&root, false);
    assert!(
        err.contains("fine_label_names.txt") && err.contains("99 names, expected 100"),
        "{err}"
    );
    let root = ScratchRoot::new();
    let text = String::from_utf8(root.real("cifar-100-binary/coarse_label_names.txt")).unwrap();
    root.replace(
        "cifar-100-binary/coarse_label_names.txt",
        format!("{text}\nextra_class\n").as_bytes(),
    );
    let err = cifar_err(&root, false);
    assert!(
        err.contains("coarse_label_names.txt") && err.contains("21 names, expected 20"),
        "{err}"
    );
}

/// `fine_to_coarse.csv` with its line `line` (1-based, after the header) replaced.
fn fine_to_coarse_err(line: usize, replacement: &str) -> String {
    let root = ScratchRoot::new();
    let text = String::from_utf8(root.real("cifar-100-binary/fine_to_coarse.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[line] = replacement.to_string();
    root.replace(
        "cifar-100-binary/fine_to_coarse.csv",
        lines.join("\n").as_bytes(),
    );
    let err = cifar_err(&root, false);
    assert!(err.contains("fine_to_coarse.csv"), "{err}");
    err
}

#[test]
fn corrupt_fine_to_coarse_csv() {
    let err = fine_to_coarse_err(1, "0,apple,4");
    assert!(err.contains("line 2") && err.contains("3 columns"), "{err}");
    let err = fine_to_coarse_err(1, "zero,apple,4,fruit_and_vegetables");
    assert!(err.contains("fine_label is not a number"), "{err}");
    let err = fine_to_coarse_err(1, "0,apple,40,fruit_and_vegetables");
    assert!(err.contains("label out of range"), "{err}");
    let err = fine_to_coarse_err(1, "0,pear,4,fruit_and_vegetables");
    assert!(err.contains("disagree with the label name files"), "{err}");
    let err = fine_to_coarse_err(1, "");
    assert!(
        err.contains("fine class 0 (apple) has no coarse class"),
        "{err}"
    );
}

// ---- Baselines for `harness check` --------------------------------------------------------

/// `harness check` of a hand-made run folder against a hand-made baseline (the CLI's error
/// path only); returns stderr.
fn check_err(baseline: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("metrics.csv"),
        "method,protocol,metric,k,value\nexact,report,mP,5,0.5\n",
    )
    .unwrap();
    let base = dir.path().join("base.csv");
    std::fs::write(&base, baseline).unwrap();
    let out = harness(
        &[
            "check",
            dir.path().to_str().unwrap(),
            "--baseline",
            base.to_str().unwrap(),
        ],
        None,
    );
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("base.csv"), "{err}");
    err
}

#[test]
fn malformed_baselines() {
    let err = check_err("");
    assert!(err.contains("empty file"), "{err}");
    let err = check_err("method,metric,value\n");
    assert!(
        err.contains("line 1") && err.contains("expected `method,protocol"),
        "{err}"
    );
    let err = check_err("method,protocol,metric,k,value\nexact,report,mP,5\n");
    assert!(
        err.contains("line 2") && err.contains("4 fields, expected 5"),
        "{err}"
    );
    let err = check_err("method,protocol,metric,k,value\nexact,report,mP,5,high\n");
    assert!(
        err.contains("line 2") && err.contains("`high` is not a number"),
        "{err}"
    );
    let err = check_err("method,protocol,metric,k,value\nexact,report,mP,20,0.5\n");
    assert!(err.contains("exact/report/mP@20"), "{err}");
}

// ---- Damaged caches and non-finite outputs ------------------------------------------------

#[test]
fn damaged_cached_features_are_recomputed_and_nan_outputs_stop_the_embed_stage() {
    let out_dir = tempfile::tempdir().unwrap();
    let exp = out_dir.path().to_str().unwrap();
    let config = crate::common::TINY_FROZEN;
    let run_cmd = |extra: &[&str]| {
        let mut args = vec!["--quiet", "run", config, "--out", exp];
        args.extend_from_slice(extra);
        harness(&args, None)
    };
    let out = run_cmd(&[]);
    assert!(out.status.success(), "{}", text(&out).1);
    let run = run_dirs(out_dir.path()).remove(0);
    let clean = quality_rows(&run);
    assert!(clean.len() > 10);

    // Poison test image 42's first feature with a NaN, keeping the file's size, and make the
    // embed stage run again.
    let features = run.join("features/test.npy").canonicalize().unwrap();
    let mut bytes = std::fs::read(&features).unwrap();
    let header = 10 + usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let at = header + 42 * 1280 * 4;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&features, &bytes).unwrap();
    let embed_record = run.join("embed").canonicalize().unwrap().join("stage.json");
    std::fs::remove_file(&embed_record).unwrap();

    // Trusting the cache (--no-verify), the NaN reaches the network: the embed stage stops and
    // names the image instead of ranking it.
    let out = run_cmd(&["--no-verify"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("embedding of image 42") && err.contains("NaN"),
        "{err}"
    );
    assert!(!embed_record.exists(), "a failed stage records nothing");

    // Verifying (the default), the damaged file is named, the features are recomputed, and the
    // metrics (evaluated again) are those of the clean run, bit for bit.
    std::fs::remove_file(run.join("stages/eval.json")).unwrap();
    let out = run_cmd(&[]);
    let (_, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("stage features") && err.contains("test.npy: contents changed"),
        "{err}"
    );
    assert_eq!(quality_rows(&run), clean);
}

#[test]
fn a_cuda_config_in_a_cpu_build_fails_before_any_work() {
    a_backend_config_in_a_build_without_it_fails_before_any_work("cuda");
}

/// wgpu is opt-in: the README's build (no features) refuses it with the feature to build.
#[cfg(not(feature = "wgpu"))]
#[test]
fn a_wgpu_config_in_a_default_build_fails_before_any_work() {
    a_backend_config_in_a_build_without_it_fails_before_any_work("wgpu");
}

fn a_backend_config_in_a_build_without_it_fails_before_any_work(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gpu.yaml");
    std::fs::write(&cfg, format!("name: gpu\nbackend: {backend}\n")).unwrap();
    let out = harness(
        &[
            "--quiet",
            "run",
            cfg.to_str().unwrap(),
            "--out",
            dir.path().join("out").to_str().unwrap(),
        ],
        None,
    );
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("--features {backend}")), "{err}");
    // No stage ran: no stage record, no cache folder.
    let runs = run_dirs(&dir.path().join("out"));
    assert!(runs.iter().all(|r| !r.join("stages").exists()), "{runs:?}");
    assert!(!dir.path().join("out/cache").exists());
}
