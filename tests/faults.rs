//! Faults: the process killed in the middle of every stage, and a disk that fills up mid-write.
//! After each, nothing half-written looks complete, the lock is free again, and a rerun gives
//! the metrics of an uninterrupted run bit for bit. Then the locks between real processes: an
//! owner killed with SIGKILL, one stopped with SIGSTOP, and two processes started together.

use crate::common::{harness, quality_rows, run_dirs, text};
use harness::experiment::lock::{self, LockState};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// Whether `path` is a `.lock` file holding an owner's record (emptied on a clean release).
fn held_record(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == ".lock")
        && std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
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
    // What the kill left: the dead process's lock record (the lock itself died with it) and
    // one hidden temporary file, complete but never renamed; no visible file is a temporary one.
    let left = files(exp.path());
    let names: Vec<String> = left
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let records: Vec<&PathBuf> = left.iter().filter(|p| held_record(p)).collect();
    assert!(!records.is_empty(), "{stage}: {names:?}");
    for r in records {
        assert_eq!(
            lock::state(r.parent().unwrap()),
            LockState::Free,
            "{}",
            r.display()
        );
    }
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
        .filter(|p| p.to_string_lossy().ends_with(".tmp") || held_record(p))
        .map(|p| p.display().to_string())
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

/// `harness run` of the fixture into `out` with the stage cache `cache`, in the background.
fn spawn_run(out: &Path, cache: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", CONFIG, "--out", out.to_str().unwrap(), "--cache"])
        .arg(cache)
        .env_remove("HARNESS_DATA")
        .env_remove("HARNESS_FAULT")
        .env_remove(lock::WAIT_ENV)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The folders under `dir` whose lock `pid` holds, as the kernel and the record say.
fn held_by(dir: &Path, pid: u32) -> Vec<PathBuf> {
    if !dir.exists() {
        return Vec::new();
    }
    lock_folders(dir)
        .into_iter()
        .filter(|folder| matches!(lock::state(folder), LockState::Held(Some(o)) if o.pid == pid))
        .collect()
}

/// Every folder under `dir` with a lock file.
fn lock_folders(dir: &Path) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == ".lock"))
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect()
}

/// Polls until `pid` holds a lock under `dir` (30 s at most).
fn wait_until_held(dir: &Path, pid: u32) -> Vec<PathBuf> {
    let started = Instant::now();
    loop {
        let held = held_by(dir, pid);
        if !held.is_empty() {
            return held;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "pid {pid} never held a lock under {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}

#[test]
fn an_owner_killed_with_sigkill_leaves_its_locks_to_the_next_process() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, cache) = (tmp.path().join("out"), tmp.path().join("cache"));
    let mut owner = spawn_run(&out, &cache, &[]);
    let pid = owner.id();
    let held = wait_until_held(tmp.path(), pid);
    owner.kill().unwrap(); // SIGKILL: no destructor runs, the record stays
    owner.wait().unwrap();
    // The run folder's lock is taken first and held for the whole run, so the killed owner's
    // record stays there. (A cache folder's lock is held only while its stage runs: the owner
    // may have released it, with its record, between the poll and the kill.)
    let run_folder = held
        .iter()
        .find(|f| f.starts_with(&out))
        .expect("the run folder's lock is held first");
    assert!(
        held_record(&run_folder.join(".lock")),
        "the record of the killed owner stays"
    );
    // The kernel releases a lock when the last descriptor of its open file closes. A child the
    // owner was starting (`git`, for the manifest) holds a copy until its exec closes it, a
    // moment after the owner dies; so each lock must be free within a few seconds.
    for folder in lock_folders(tmp.path()) {
        let started = Instant::now();
        while lock::state(&folder) != LockState::Free && started.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            lock::state(&folder),
            LockState::Free,
            "the kernel released {}",
            folder.display()
        );
    }
    // The next process, on the same run folder and cache, takes every lock and finishes.
    let next = spawn_run(&out, &cache, &[]).wait_with_output().unwrap();
    assert!(next.status.success(), "{}", text(&next).1);
    assert_eq!(quality_rows(&run_dirs(&out)[0]), uninterrupted());
}

#[test]
fn an_owner_stopped_with_sigstop_is_waited_for_by_name_until_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let mut owner = spawn_run(&tmp.path().join("a"), &cache, &[]);
    let pid = owner.id();
    // Stop it while it holds a cache folder (a stage it is computing).
    let stopped = loop {
        wait_until_held(&cache, pid);
        signal(pid, "-STOP");
        let held = held_by(&cache, pid);
        if !held.is_empty() {
            break held;
        }
        signal(pid, "-CONT"); // it let go just before the stop; try again
    };
    let waiter = spawn_run(&tmp.path().join("b"), &cache, &[(lock::WAIT_ENV, "2s")])
        .wait_with_output()
        .unwrap();
    let err = text(&waiter).1;
    let host = harness::store::hostname();
    assert!(!waiter.status.success());
    assert!(
        err.contains(&format!("waiting for pid {pid} on {host}")),
        "{err}"
    );
    assert!(
        err.contains("gave up after 2.0 s waiting for")
            && err.contains(&format!("pid {pid} on {host}"))
            && err.contains("still holds it"),
        "{err}"
    );
    assert_eq!(
        held_by(&cache, pid),
        stopped,
        "the stopped owner still holds its folder"
    );
    // A wait bound that is not a duration is named.
    let bad = spawn_run(
        &tmp.path().join("c"),
        &tmp.path().join("fresh"),
        &[(lock::WAIT_ENV, "soon")],
    )
    .wait_with_output()
    .unwrap();
    assert!(
        text(&bad)
            .1
            .contains("HARNESS_LOCK_TIMEOUT=`soon` is not a duration"),
        "{}",
        text(&bad).1
    );
    owner.kill().unwrap();
    owner.wait().unwrap();
}

#[test]
fn two_processes_started_together_compute_once_and_agree_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let first = spawn_run(&tmp.path().join("a"), &cache, &[]);
    let second = spawn_run(&tmp.path().join("b"), &cache, &[]);
    let outs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    for (o, dir) in outs.iter().zip(["a", "b"]) {
        assert!(o.status.success(), "{}", text(o).1);
        assert_eq!(
            quality_rows(&run_dirs(&tmp.path().join(dir))[0]),
            uninterrupted(),
            "{dir}"
        );
    }
    // The features were computed by one of them and reused by the other.
    let reused: Vec<bool> = outs
        .iter()
        .map(|o| {
            let line = text(o)
                .0
                .lines()
                .find(|l| l.starts_with("results: "))
                .unwrap_or("")
                .to_string();
            line.contains("(reused: ") && line.contains("features")
        })
        .collect();
    assert_eq!(
        reused.iter().filter(|r| **r).count(),
        1,
        "{reused:?}: {:?}",
        outs.iter().map(|o| text(o).0).collect::<Vec<_>>()
    );
}
