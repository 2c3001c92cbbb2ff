//! Bad input, each through the real binary: a clear message naming the file, field or line,
//! exit code 2, and nothing half-written.

use crate::common::{ScratchRoot, TINY, harness, run_dirs, text};
use std::path::Path;

/// Writes `yaml` to a temp config, runs `harness validate` on it and returns stderr; asserts
/// the exit code is 2.
fn validate_err(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = harness(&["validate", path.to_str().unwrap()], None);
    let (_, err) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected failure for:\n{yaml}\nstderr: {err}"
    );
    assert!(err.contains("bad.yaml"), "error must name the file: {err}");
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
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n == ".lock")
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
    // Pretend a live process (this test) holds the lock.
    std::fs::write(run.join(".lock"), std::process::id().to_string()).unwrap();
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
