//! Faults: the process killed in the middle of every stage, and a disk that fills up mid-write.
//! After each, nothing half-written looks complete, the lock is taken over, and a rerun gives
//! the metrics of an uninterrupted run bit for bit.

use crate::common::{harness, quality_rows, run_dirs, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The frozen-encoder fixture: features, IWAN features, train, embed and eval all write files.
const CONFIG: &str = crate::common::TINY_FROZEN;

fn run(exp: &Path, fault: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.args(["--quiet", "run", CONFIG, "--out", exp.to_str().unwrap()])
        .env_remove("HARNESS_DATA")
        .env_remove("HARNESS_FAULT");
    if let Some(f) = fault {
        cmd.env("HARNESS_FAULT", f);
    }
    cmd.output().unwrap()
}

/// Every file under `dir`, following no symlinks.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn uninterrupted() -> &'static [String] {
    static CLEAN: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    CLEAN.get_or_init(|| {
        let exp = tempfile::tempdir().unwrap();
        let out = run(exp.path(), None);
        assert!(out.status.success(), "{}", text(&out).1);
        quality_rows(&run_dirs(exp.path())[0])
    })
}

/// Kills a run just before the `n`-th atomic rename of `stage`, checks what was left, reruns.
fn kill_and_resume(stage: &str, n: usize) {
    let exp = tempfile::tempdir().unwrap();
    let out = run(exp.path(), Some(&format!("{stage}:{n}")));
    let (_, err) = text(&out);
    assert!(
        !out.status.success(),
        "the fault in {stage} did not fire: {err}"
    );
    assert!(err.contains(&format!("aborting in stage {stage}")), "{err}");
    let run_dir = run_dirs(exp.path()).remove(0);
    assert!(
        !run_dir
            .join("stages")
            .join(format!("{stage}.json"))
            .exists(),
        "{stage}: a killed stage has no completion record"
    );
    // What the kill left: the dead process's lock and one hidden temporary file, complete but
    // never renamed; no visible file is a temporary one.
    let left = files(exp.path());
    let names: Vec<String> = left
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == ".lock"), "{stage}: {names:?}");
    let temps: Vec<&String> = names.iter().filter(|n| n.ends_with(".tmp")).collect();
    assert_eq!(temps.len(), 1, "{stage}: {names:?}");
    assert!(temps[0].starts_with('.'), "temporary files are hidden");

    let out = run(exp.path(), None);
    assert!(
        out.status.success(),
        "{stage}: resume failed: {}",
        text(&out).1
    );
    assert_eq!(
        quality_rows(&run_dir),
        uninterrupted(),
        "{stage}: metrics after resuming"
    );
    let after: Vec<String> = files(exp.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n == ".lock")
        .collect();
    assert!(
        after.is_empty(),
        "{stage}: left behind after resuming: {after:?}"
    );
}

#[test]
fn killed_in_the_data_stage() {
    kill_and_resume("data", 2);
}

#[test]
fn killed_in_the_semantics_stage() {
    kill_and_resume("semantics", 1);
}

#[test]
fn killed_in_the_features_stage() {
    kill_and_resume("features", 2);
}

#[test]
fn killed_in_the_train_stage() {
    kill_and_resume("train", 2);
}

#[test]
fn killed_in_the_embed_stage() {
    kill_and_resume("embed", 3);
}

#[test]
fn killed_in_the_eval_stage() {
    kill_and_resume("eval", 2);
}

#[test]
fn killed_while_rendering_a_report() {
    let exp = tempfile::tempdir().unwrap();
    assert!(run(exp.path(), None).status.success());
    let run_dir = run_dirs(exp.path()).remove(0);
    let paper = run_dir.join("tables/paper.md");
    let before = std::fs::read(&paper).unwrap();
    let report = |fault: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
        cmd.args(["report", run_dir.to_str().unwrap()])
            .env_remove("HARNESS_DATA");
        if let Some(f) = fault {
            cmd.env("HARNESS_FAULT", f);
        }
        cmd.output().unwrap()
    };
    let out = report(Some("report:1"));
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read(&paper).unwrap(),
        before,
        "earlier tables intact"
    );
    let out = report(None);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(
        std::fs::read(&paper).unwrap(),
        before,
        "re-rendered identically"
    );
}

#[test]
fn a_disk_that_fills_up_mid_write() {
    // RLIMIT_FSIZE of 2,000 blocks of 512 bytes in a child shell: the 1.3 MB features file
    // cannot be written. SIGXFSZ is ignored, so the write fails with EFBIG instead of killing
    // the process.
    let exp = tempfile::tempdir().unwrap();
    let harness_bin = env!("CARGO_BIN_EXE_harness");
    let script = format!(
        "trap '' XFSZ; ulimit -f 2000; exec '{harness_bin}' --quiet run {CONFIG} --out '{}'",
        exp.path().display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .env_remove("HARNESS_DATA")
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot write") && err.contains("train.npy"),
        "{err}"
    );
    let run_dir = run_dirs(exp.path()).remove(0);
    // Earlier outputs stay; nothing half-written remains, not even a temporary file.
    assert!(run_dir.join("stages/data.json").exists());
    assert!(run_dir.join("dataset_summary.json").exists());
    let names: Vec<String> = files(exp.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    assert!(!names.iter().any(|n| n == "train.npy"), "{names:?}");
    let manifest = std::fs::read_to_string(run_dir.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"status\": \"failed: "), "{manifest}");
    // With room again, the run completes with the uninterrupted metrics.
    let out = harness(
        &[
            "--quiet",
            "run",
            CONFIG,
            "--out",
            exp.path().to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(quality_rows(&run_dir), uninterrupted());
}
