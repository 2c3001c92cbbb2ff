//! `harness run --slurm` on a real Slurm: a one-node cluster on loopback that
//! `scripts/slurm_cluster.sh start DIR` brings up (`.ci/run` does, then runs
//! `cargo test --release --test slurm`). Not part of the README's `cargo test --release`
//! (`test = false` in Cargo.toml): without Slurm these tests fail, by design, instead of
//! skipping.
//!
//! Set `HARNESS_CI_LOCAL` to the experiment folder of a local `harness run configs/ci.yaml`
//! (CI has one) to compare with it; otherwise the test makes one.

#[allow(dead_code)]
mod common;

use common::{harness, quality_rows, text};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Fails unless a Slurm controller answers and its node is idle.
fn require_slurm() {
    let conf = std::env::var("SLURM_CONF").unwrap_or_else(|_| {
        panic!(
            "SLURM_CONF is not set: start a cluster with `scripts/slurm_cluster.sh start DIR` \
             and export SLURM_CONF=DIR/slurm.conf"
        )
    });
    let out = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .expect("sinfo runs");
    let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        state == "idle" || state == "mixed" || state == "allocated",
        "Slurm ({conf}) is not up: sinfo says `{state}` {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The job ids `harness run --slurm` printed: (array, aggregation).
fn job_ids(stdout: &str) -> (Option<String>, String) {
    let id_after = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|rest| rest.split_whitespace().next().unwrap().to_string())
    };
    (
        id_after("submitted: array job "),
        id_after("submitted: aggregation job ").unwrap_or_else(|| panic!("{stdout}")),
    )
}

/// Slurm's state of job `id` (`squeue -t all` keeps finished jobs for MinJobAge, 300 s).
fn job_state(id: &str) -> String {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-j", id, "-o", "%T"])
        .output()
        .expect("squeue runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls until job `id` has ended; returns its final state.
fn wait_for_job(id: &str, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        let state = job_state(id);
        if [
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "TIMEOUT",
            "OUT_OF_MEMORY",
        ]
        .iter()
        .any(|s| state.starts_with(s))
        {
            return state;
        }
        assert!(
            started.elapsed() < limit,
            "job {id} still `{state}` after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn submit(config: &str, exp: &Path, extra: &[&str]) -> (Option<String>, String, String) {
    let mut args = vec![
        "--quiet",
        "run",
        config,
        "--out",
        exp.to_str().unwrap(),
        "--slurm",
        "--max-parallel",
        "2",
    ];
    args.extend_from_slice(extra);
    let out = harness(&args, None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let (array, aggregate) = job_ids(&stdout);
    (array, aggregate, stdout)
}

/// `harness status DIR`: its exit code and table.
fn status(exp: &Path) -> (i32, String) {
    let out = harness(&["status", exp.to_str().unwrap()], None);
    (out.status.code().unwrap(), text(&out).0)
}

/// The run folders of an experiment, by name.
fn runs(exp: &Path) -> Vec<(String, PathBuf)> {
    common::run_dirs(exp)
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect()
}

/// The quality rows of a sweep table (timings and stage seconds differ run to run).
fn sweep_quality(exp: &Path) -> Vec<String> {
    std::fs::read_to_string(exp.join("tables/sweep.csv"))
        .unwrap()
        .lines()
        .filter(|l| {
            let metric = l.split(',').nth(4).unwrap_or("");
            ["mP", "mAP", "mHP", "mAHP", "mAHP_mean", "test_accuracy"].contains(&metric)
        })
        .map(String::from)
        .collect()
}

/// A local run of `config` into `exp` (the reference the cluster runs must equal).
fn local(config: &str, exp: &Path) {
    let out = harness(
        &["--quiet", "run", config, "--out", exp.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", text(&out).1);
}

#[test]
fn the_ci_sweep_on_slurm_equals_the_local_runs_and_computes_each_cached_stage_once() {
    require_slurm();
    let tmp = tempfile::tempdir().unwrap();
    let local_exp = match std::env::var_os("HARNESS_CI_LOCAL") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let dir = tmp.path().join("local");
            let started = Instant::now();
            local("configs/ci.yaml", &dir);
            eprintln!(
                "slurm: the local run of ci.yaml took {:.1} s",
                started.elapsed().as_secs_f64()
            );
            dir
        }
    };
    let exp = tmp.path().join("cluster");
    let submitted = Instant::now();
    let (array, aggregate, stdout) = submit("configs/ci.yaml", &exp, &[]);
    let returned = submitted.elapsed();
    assert!(array.is_some(), "{stdout}");
    for script in [
        "array.sbatch",
        "aggregate.sbatch",
        "runs.tsv",
        "config.yaml",
    ] {
        assert!(exp.join("slurm").join(script).is_file(), "{script}");
    }
    let state = wait_for_job(&aggregate, Duration::from_secs(1500));
    let finished = submitted.elapsed();
    assert_eq!(state, "COMPLETED");
    let (code, table) = status(&exp);
    assert_eq!(code, 0, "{table}");
    assert!(table.contains("2 runs: 2 done"), "{table}");

    // Bit for bit the local runs' metrics, and the same sweep table.
    let local_runs = runs(&local_exp);
    let cluster_runs = runs(&exp);
    assert_eq!(
        local_runs.iter().map(|r| &r.0).collect::<Vec<_>>(),
        cluster_runs.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    for ((id, l), (_, c)) in local_runs.iter().zip(&cluster_runs) {
        let rows = quality_rows(c);
        assert!(rows.len() > 100, "{id}");
        assert_eq!(rows, quality_rows(l), "{id}");
    }
    assert_eq!(sweep_quality(&exp), sweep_quality(&local_exp));

    // Both tasks started together and need the same features, network and embeddings: each
    // was computed once, by one task, while the other waited and reused it.
    let logs: Vec<String> = cluster_runs
        .iter()
        .map(|(id, _)| {
            std::fs::read_to_string(exp.join("slurm/logs").join(format!("{id}.log"))).unwrap()
        })
        .collect();
    // (ci.yaml's word model reads the model's own 64 px features: no iwan_features stage.)
    for stage in ["features", "train", "embed"] {
        let started = logs
            .iter()
            .filter(|l| l.contains(&format!("stage {stage}: started")))
            .count();
        assert_eq!(
            started,
            1,
            "stage {stage} ran {started} times:\n{}",
            logs.join("\n---\n")
        );
        let entries = std::fs::read_dir(exp.join("cache"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.starts_with(&format!("{stage}-"))
            })
            .count();
        assert_eq!(entries, 1, "one cache entry for {stage}");
    }
    eprintln!(
        "slurm: ci.yaml sweep submitted in {:.1} s, finished {:.1} s after submission",
        returned.as_secs_f64(),
        finished.as_secs_f64()
    );
}

#[test]
fn a_cancelled_task_shows_as_failed_and_resume_submits_only_it() {
    require_slurm();
    const CONFIG: &str = "tests/fixtures/slurm_cancel.yaml";
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("cluster");
    let (array, aggregate, stdout) = submit(CONFIG, &exp, &[]);
    let array = array.unwrap_or_else(|| panic!("{stdout}"));
    let ids: Vec<String> = std::fs::read_to_string(exp.join("slurm/runs.tsv"))
        .unwrap()
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap().to_string())
        .collect();
    // Cancel run 1 in the middle of its training stage.
    let log = exp.join("slurm/logs").join(format!("{}.log", ids[1]));
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("stage train: started")
    {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "run 1 never started training"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, during) = status(&exp);
    assert!(
        during
            .lines()
            .any(|l| l.contains(&ids[1]) && l.contains("running")),
        "{during}"
    );
    let cancel = Command::new("scancel")
        .arg(format!("{array}_1"))
        .status()
        .unwrap();
    assert!(cancel.success());
    assert_eq!(
        wait_for_job(&aggregate, Duration::from_secs(900)),
        "COMPLETED"
    );
    let (code, after) = status(&exp);
    assert_eq!(code, 1, "{after}");
    let line = after.lines().find(|l| l.contains(&ids[1])).unwrap();
    assert!(
        line.contains("failed") || line.contains("not started"),
        "{after}"
    );
    assert!(
        after
            .lines()
            .any(|l| l.contains(&ids[0]) && l.contains("done")),
        "{after}"
    );
    let summary = std::fs::read_to_string(exp.join("status.md")).unwrap();
    assert!(
        summary.contains("Missing from the sweep tables") && summary.contains(&ids[1]),
        "{summary}"
    );
    eprintln!("slurm: after scancel of task 1:\n{after}");

    // --resume submits only the missing run.
    let (array, aggregate, stdout) = submit(CONFIG, &exp, &["--resume"]);
    assert!(array.is_some(), "{stdout}");
    assert!(stdout.contains("with 1 task(s) (runs 1)"), "{stdout}");
    assert!(
        stdout.contains(&format!("skipped: run 0 {}", ids[0])),
        "{stdout}"
    );
    assert_eq!(
        wait_for_job(&aggregate, Duration::from_secs(900)),
        "COMPLETED"
    );
    let (code, table) = status(&exp);
    assert_eq!(code, 0, "{table}");

    // Everything equals a local run of the same config.
    let local_exp = tmp.path().join("local");
    local(CONFIG, &local_exp);
    for ((id, l), (_, c)) in runs(&local_exp).iter().zip(&runs(&exp)) {
        assert_eq!(quality_rows(c), quality_rows(l), "{id}");
    }
    assert_eq!(sweep_quality(&exp), sweep_quality(&local_exp));
}
