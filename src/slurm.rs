//! `harness run CONFIG --slurm`: a sweep as a Slurm job array, one task per run, and an
//! aggregation job that runs after the array whatever its tasks' fates (`afterany`).
//!
//! Everything a person needs to see what was submitted lands in `<experiment>/slurm/`:
//! - `config.yaml`, the config text as submitted (tasks read this copy, so editing the original
//!   does not change runs already queued);
//! - `runs.tsv`, each run's index and id;
//! - `array.sbatch` and `aggregate.sbatch`, the batch scripts;
//! - `submissions.jsonl`, one line per submission (job ids, indices, time);
//! - `logs/<run-id>.log`, each task's output (its stage lines), and `logs/aggregate-<job>.log`.
//!
//! Tasks share the stage cache, so the folder given to `--cache` must be on a filesystem every
//! node sees: a task that needs a stage another task is computing waits on its lock
//! ([`crate::experiment::lock`]), then reuses it.

use crate::config::{Loaded, SlurmConfig};
use crate::experiment::status::{self, RunState};
use crate::experiment::{self, ExperimentError, RunOptions};
use crate::store::{self, StoreError};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a submission failed.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// `sbatch` could not be started.
    #[error("cannot run `sbatch` ({0}); is Slurm installed and on PATH on this machine?")]
    NoSbatch(#[source] std::io::Error),
    /// `sbatch` refused the job.
    #[error("`{command}` failed: {stderr}")]
    Sbatch {
        /// The command line.
        command: String,
        /// What sbatch printed.
        stderr: String,
    },
    /// The experiment's folders or runs.
    #[error(transparent)]
    Experiment(#[from] ExperimentError),
    /// Writing the scripts.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A path the scripts need could not be made absolute.
    #[error("{path}: {source}")]
    Path {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What was submitted.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The experiment folder.
    pub experiment_dir: PathBuf,
    /// The array job's id (absent when every run was already done).
    pub array_job: Option<String>,
    /// The aggregation job's id.
    pub aggregate_job: Option<String>,
    /// (index, run id) of each submitted run.
    pub runs: Vec<(usize, String)>,
    /// Runs left out with `--resume`: done, or running now.
    pub skipped: Vec<status::RunStatus>,
}

/// Everything a batch script names, as absolute paths.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The harness binary.
    pub binary: PathBuf,
    /// The working folder of the submission (relative paths in the config resolve from it).
    pub workdir: PathBuf,
    /// The experiment folder.
    pub experiment: PathBuf,
    /// The stage cache.
    pub cache: PathBuf,
    /// `--data-root`, when given.
    pub data_root: Option<PathBuf>,
}

impl Layout {
    fn slurm_dir(&self) -> PathBuf {
        self.experiment.join("slurm")
    }
}

/// A word for a POSIX shell, single-quoted.
fn quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"))
}

/// The `#SBATCH` lines shared by both scripts.
fn common_lines(job_name: &str, layout: &Layout, s: &SlurmConfig) -> String {
    let mut out = format!("#SBATCH --job-name={job_name}\n");
    out.push_str(&format!(
        "#SBATCH --chdir={}\n",
        layout.workdir.to_string_lossy()
    ));
    if let Some(p) = &s.partition {
        out.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    for line in &s.extra {
        out.push_str(&format!("#SBATCH {line}\n"));
    }
    out
}

/// The array task script: finds its run id in `runs.tsv` by `SLURM_ARRAY_TASK_ID`, then runs
/// exactly that run, its output in `logs/<run-id>.log`.
pub fn array_script(name: &str, layout: &Layout, s: &SlurmConfig) -> String {
    let dir = layout.slurm_dir();
    let mut out = format!(
        "#!/bin/bash\n# Written by `harness run --slurm` (harness {}): one array task per run of \
         experiment `{name}`.\n",
        env!("CARGO_PKG_VERSION")
    );
    out.push_str(&common_lines(&format!("harness-{name}"), layout, s));
    out.push_str(&format!(
        "#SBATCH --output={}\n",
        dir.join("logs").join("slurm-%A_%a.out").to_string_lossy()
    ));
    if let Some(t) = &s.time {
        out.push_str(&format!("#SBATCH --time={t}\n"));
    }
    if let Some(c) = s.cpus_per_task {
        out.push_str(&format!("#SBATCH --cpus-per-task={c}\n"));
    }
    if let Some(g) = s.gpus_per_task {
        out.push_str(&format!("#SBATCH --gpus-per-task={g}\n"));
    }
    if let Some(m) = &s.mem {
        out.push_str(&format!("#SBATCH --mem={m}\n"));
    }
    out.push_str("set -euo pipefail\n");
    out.push_str(
        "# Threads: the task's CPUs, not the whole node's.\n\
         if [ -n \"${SLURM_CPUS_PER_TASK:-}\" ]; then export RAYON_NUM_THREADS=\"$SLURM_CPUS_PER_TASK\"; fi\n",
    );
    out.push_str(&format!(
        "run_id=$(awk -F'\\t' -v i=\"$SLURM_ARRAY_TASK_ID\" '$1 == i {{ print $2 }}' {})\n",
        quote(&dir.join("runs.tsv"))
    ));
    out.push_str(&format!(
        "exec {} run {} --out {} --cache {}{} --run-index \"$SLURM_ARRAY_TASK_ID\" \\\n  > {}/\"$run_id\".log 2>&1\n",
        quote(&layout.binary),
        quote(&dir.join("config.yaml")),
        quote(&layout.experiment),
        quote(&layout.cache),
        layout
            .data_root
            .as_ref()
            .map(|d| format!(" --data-root {}", quote(d)))
            .unwrap_or_default(),
        quote(&dir.join("logs")),
    ));
    out
}

/// The aggregation script: `harness status --aggregate` over the experiment folder.
pub fn aggregate_script(name: &str, layout: &Layout, s: &SlurmConfig) -> String {
    let dir = layout.slurm_dir();
    let mut out = format!(
        "#!/bin/bash\n# Written by `harness run --slurm` (harness {}): the sweep tables, figures \
         and status of experiment `{name}`, after its array tasks (done or not).\n",
        env!("CARGO_PKG_VERSION")
    );
    out.push_str(&common_lines(
        &format!("harness-{name}-aggregate"),
        layout,
        s,
    ));
    out.push_str(&format!(
        "#SBATCH --output={}\n#SBATCH --cpus-per-task=1\n",
        dir.join("logs").join("aggregate-%j.log").to_string_lossy()
    ));
    out.push_str(&format!(
        "exec {} --quiet status {} --aggregate\n",
        quote(&layout.binary),
        quote(&layout.experiment)
    ));
    out
}

/// The `--array` value: indices, and `%cap` when given.
pub fn array_spec(indices: &[usize], cap: Option<u32>) -> String {
    let list: Vec<String> = indices.iter().map(usize::to_string).collect();
    match cap {
        Some(c) => format!("{}%{c}", list.join(",")),
        None => list.join(","),
    }
}

fn absolute(p: &Path) -> Result<PathBuf, SlurmError> {
    std::path::absolute(p).map_err(|source| SlurmError::Path {
        path: p.to_path_buf(),
        source,
    })
}

/// Runs `sbatch --parsable ARGS SCRIPT`; returns the job id.
fn sbatch(args: &[String], script: &Path) -> Result<String, SlurmError> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .arg(script)
        .output()
        .map_err(SlurmError::NoSbatch)?;
    let command = format!("sbatch --parsable {} {}", args.join(" "), script.display());
    if !out.status.success() {
        return Err(SlurmError::Sbatch {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    // `--parsable` prints `jobid` or `jobid;cluster`.
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() {
        return Err(SlurmError::Sbatch {
            command,
            stderr: format!("no job id in its output `{}`", text.trim()),
        });
    }
    Ok(id)
}

/// Submits the runs of `loaded` (only those not done, with `resume`), then the aggregation job.
pub fn submit(
    loaded: &Loaded,
    opts: &RunOptions,
    slurm: &SlurmConfig,
    resume: bool,
) -> Result<Submission, SlurmError> {
    let runs = loaded.runs().map_err(ExperimentError::from)?;
    let layout = Layout {
        binary: std::env::current_exe().map_err(|source| SlurmError::Path {
            path: "harness".into(),
            source,
        })?,
        workdir: absolute(Path::new("."))?,
        experiment: absolute(&experiment::experiment_dir(loaded, opts))?,
        cache: absolute(&experiment::cache_dir(loaded, opts))?,
        data_root: opts.data_root.as_deref().map(absolute).transpose()?,
    };
    let exp = &layout.experiment;
    let dir = layout.slurm_dir();
    std::fs::create_dir_all(dir.join("logs")).map_err(|source| StoreError::Write {
        path: dir.join("logs"),
        source,
    })?;
    // Also for a single run, so that `harness status` lists it before its task starts.
    experiment::record_sweep(exp, &runs)?;
    let (mut chosen, mut skipped) = (Vec::new(), Vec::new());
    for r in &runs {
        let state = status::run_state(&exp.join(&r.id));
        let skip = resume && matches!(state, RunState::Done | RunState::Running(_));
        if skip {
            skipped.push(status::RunStatus {
                index: r.index,
                id: r.id.clone(),
                state,
            });
        } else {
            chosen.push((r.index, r.id.clone()));
        }
    }
    let name = &loaded.config.name;
    store::write_bytes_atomic(&dir.join("config.yaml"), loaded.text.as_bytes())?;
    let tsv: String = runs
        .iter()
        .map(|r| format!("{}\t{}\n", r.index, r.id))
        .collect();
    store::write_bytes_atomic(&dir.join("runs.tsv"), tsv.as_bytes())?;
    let array = dir.join("array.sbatch");
    store::write_bytes_atomic(&array, array_script(name, &layout, slurm).as_bytes())?;
    let aggregate = dir.join("aggregate.sbatch");
    store::write_bytes_atomic(
        &aggregate,
        aggregate_script(name, &layout, slurm).as_bytes(),
    )?;
    let array_job = if chosen.is_empty() {
        None
    } else {
        let indices: Vec<usize> = chosen.iter().map(|c| c.0).collect();
        Some(sbatch(
            &[format!(
                "--array={}",
                array_spec(&indices, slurm.max_parallel)
            )],
            &array,
        )?)
    };
    let dependency: Vec<String> = array_job
        .iter()
        .map(|id| format!("--dependency=afterany:{id}"))
        .collect();
    let aggregate_job = Some(sbatch(&dependency, &aggregate)?);
    let record = serde_json::json!({
        "submitted_at": experiment::manifest::now(),
        "array_job": array_job,
        "aggregate_job": aggregate_job,
        "runs": chosen.iter().map(|c| c.0).collect::<Vec<_>>(),
        "resume": resume,
    });
    let log = dir.join("submissions.jsonl");
    let mut lines = std::fs::read_to_string(&log).unwrap_or_default();
    lines.push_str(&format!("{record}\n"));
    store::write_bytes_atomic(&log, lines.as_bytes())?;
    Ok(Submission {
        experiment_dir: exp.clone(),
        array_job,
        aggregate_job,
        runs: chosen,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        // hand-made paths for a unit test of the script text
        Layout {
            binary: "/opt/harness/bin/harness".into(),
            workdir: "/home/me/project".into(),
            experiment: "/shared/results/sweep it".into(),
            cache: "/shared/cache".into(),
            data_root: Some("/shared/data".into()),
        }
    }

    #[test]
    fn the_array_script_runs_one_run_per_task_with_its_resources() {
        let s = SlurmConfig {
            partition: Some("gpu".into()),
            time: Some("1:00:00".into()),
            cpus_per_task: Some(8),
            gpus_per_task: Some(1),
            mem: Some("16G".into()),
            max_parallel: Some(4),
            extra: vec!["--qos=short".into()],
        };
        let text = array_script("sweep", &layout(), &s);
        for line in [
            "#SBATCH --partition=gpu",
            "#SBATCH --time=1:00:00",
            "#SBATCH --cpus-per-task=8",
            "#SBATCH --gpus-per-task=1",
            "#SBATCH --mem=16G",
            "#SBATCH --qos=short",
            "#SBATCH --chdir=/home/me/project",
            "--run-index \"$SLURM_ARRAY_TASK_ID\"",
            "--out '/shared/results/sweep it'",
            "--data-root '/shared/data'",
            "> '/shared/results/sweep it/slurm/logs'/\"$run_id\".log",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        let agg = aggregate_script("sweep", &layout(), &s);
        assert!(
            agg.contains("status '/shared/results/sweep it' --aggregate"),
            "{agg}"
        );
        assert!(!agg.contains("--gpus-per-task"), "{agg}");
        assert_eq!(array_spec(&[0, 2, 5], Some(2)), "0,2,5%2");
        assert_eq!(array_spec(&[1], None), "1");
    }

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(quote(Path::new("/a b/it's")), r"'/a b/it'\''s'");
    }
}
