//! Where each run of an experiment stands, read from the run folders alone (their manifests and
//! locks), never from a scheduler's accounting: many clusters keep none, and Slurm forgets a
//! finished job minutes after it ends.

use super::lock::{self, LockState};
use super::{ExperimentError, render};
use crate::artifacts::{ExperimentLayout, RunLayout};
use crate::store;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The state of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum RunState {
    /// Every stage finished.
    Done,
    /// Stopped: the last line of its error, or how it was interrupted.
    Failed(String),
    /// A live process holds the run's lock (`pid N on HOST`).
    Running(String),
    /// No trace of it yet.
    NotStarted,
}

impl RunState {
    /// `done`, `failed`, `running` or `not started`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed(_) => "failed",
            Self::Running(_) => "running",
            Self::NotStarted => "not started",
        }
    }

    /// The word `sweep.json` records.
    pub(super) fn sweep_status(&self) -> &'static str {
        match self {
            Self::Done => "complete",
            Self::Failed(_) => "failed",
            Self::Running(_) => "running",
            Self::NotStarted => "pending",
        }
    }
}

/// One run of an experiment and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunStatus {
    /// Position in the sweep (`harness run --run-index`).
    pub index: usize,
    /// The run folder's name.
    pub id: String,
    /// Where it stands.
    #[serde(flatten)]
    pub state: RunState,
}

/// The state of the run folder `dir`.
pub fn run_state(dir: &Path) -> RunState {
    let lock = lock::state(dir);
    let manifest = std::fs::read(RunLayout::new(dir).manifest())
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let status = manifest
        .as_ref()
        .and_then(|m| m["status"].as_str().map(String::from));
    match (status.as_deref(), lock) {
        (_, LockState::Held(owner)) => RunState::Running(
            owner.map_or_else(|| "a process that is starting".into(), |o| o.to_string()),
        ),
        (Some("complete"), _) => RunState::Done,
        (Some(s), _) if s.starts_with("failed") => {
            let message = s
                .trim_start_matches("failed")
                .trim_start_matches(':')
                .trim();
            let last = message.lines().last().unwrap_or(message).trim();
            RunState::Failed(last.to_string())
        }
        (Some(_), _) => RunState::Failed(
            "interrupted: its process ended without finishing (killed, cancelled or out of \
             time); the stages it finished are kept, and a rerun resumes after them"
                .into(),
        ),
        (None, _) => RunState::NotStarted,
    }
}

/// Every run of the experiment folder `dir`, in sweep order: the runs `sweep.json` lists, or,
/// for a single-run experiment, its run folders.
pub fn experiment_status(dir: &Path) -> Result<Vec<RunStatus>, ExperimentError> {
    let sweep = ExperimentLayout::new(dir).sweep();
    let ids: Vec<(usize, String)> = if sweep.exists() {
        let entries: serde_json::Value = serde_json::from_slice(&store::read(&sweep)?)
            .map_err(|e| ExperimentError::unreadable(&sweep, e))?;
        entries
            .as_array()
            .ok_or_else(|| ExperimentError::artifact(&sweep, "expected a JSON array of runs"))?
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let id = e["id"].as_str().ok_or_else(|| {
                    ExperimentError::artifact(&sweep, format!("entry {i} has no `id`"))
                })?;
                let index = e["index"].as_u64().map_or(i, |x| x as usize);
                Ok((index, id.to_string()))
            })
            .collect::<Result<_, ExperimentError>>()?
    } else {
        let mut runs: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| ExperimentError::unreadable(dir, e))?
            .filter_map(|e| e.ok())
            .filter(|e| RunLayout::new(e.path()).manifest().exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        runs.sort();
        if runs.is_empty() {
            return Err(ExperimentError::artifact(
                dir,
                "not an experiment folder: no sweep.json and no run folders; pass the folder \
                 above the run folders (the `--out` of `harness run`)",
            ));
        }
        runs.into_iter().enumerate().collect()
    };
    Ok(ids
        .into_iter()
        .map(|(index, id)| RunStatus {
            index,
            state: run_state(ExperimentLayout::new(dir).run(&id).dir()),
            id,
        })
        .collect())
}

/// The status table as text: one line per run, then the counts.
pub fn status_table(runs: &[RunStatus]) -> String {
    let width = runs.iter().map(|r| r.id.len()).max().unwrap_or(2).max(3);
    let mut out = format!(
        "{:>5}  {:<width$}  {:<11}  detail\n",
        "index", "run", "state"
    );
    for r in runs {
        let detail = match &r.state {
            RunState::Failed(d) | RunState::Running(d) => d.as_str(),
            _ => "",
        };
        out.push_str(&format!(
            "{:>5}  {:<width$}  {:<11}  {detail}\n",
            r.index,
            r.id,
            r.state.label()
        ));
    }
    let count = |label: &str| runs.iter().filter(|r| r.state.label() == label).count();
    out.push_str(&format!(
        "{} runs: {} done, {} failed, {} running, {} not started\n",
        runs.len(),
        count("done"),
        count("failed"),
        count("running"),
        count("not started")
    ));
    out
}

/// What [`aggregate`] wrote.
#[derive(Debug, Clone)]
pub struct Aggregated {
    /// Each run's state.
    pub runs: Vec<RunStatus>,
    /// `status.md` and `status.json`, then the sweep tables and figures.
    pub written: Vec<PathBuf>,
}

/// Refreshes `sweep.json`'s statuses from the run folders, writes the sweep tables and figures
/// over the finished runs, and writes `status.md` and `status.json`, which name any run that
/// is missing: the job that runs after a sweep's array tasks, whether or not they all succeeded.
pub fn aggregate(dir: &Path) -> Result<Aggregated, ExperimentError> {
    let runs = experiment_status(dir)?;
    let mut written = Vec::new();
    let sweep = ExperimentLayout::new(dir).sweep();
    if sweep.exists() {
        let mut entries: serde_json::Value = serde_json::from_slice(&store::read(&sweep)?)
            .map_err(|e| ExperimentError::unreadable(&sweep, e))?;
        for (entry, run) in entries.as_array_mut().into_iter().flatten().zip(&runs) {
            entry["status"] = run.state.sweep_status().into();
        }
        store::write_json_atomic(&sweep, &entries)?;
    }
    let missing: Vec<&RunStatus> = runs.iter().filter(|r| r.state != RunState::Done).collect();
    let mut md = format!(
        "# Status of {}\n\n```\n{}```\n",
        dir.display(),
        status_table(&runs)
    );
    if missing.is_empty() {
        md.push_str("\nEvery run is done; the sweep tables cover all of them.\n");
    } else {
        md.push_str(&format!(
            "\nMissing from the sweep tables: {}. Resubmit them with \
             `harness run CONFIG --slurm --resume` (or rerun locally).\n",
            missing
                .iter()
                .map(|r| format!("{} (index {}, {})", r.id, r.index, r.state.label()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let md_path = ExperimentLayout::new(dir).status_md();
    store::write_bytes_atomic(&md_path, md.as_bytes())?;
    let json_path = ExperimentLayout::new(dir).status_json();
    store::write_json_atomic(&json_path, &runs)?;
    written.extend([md_path, json_path]);
    if sweep.exists() && runs.iter().any(|r| r.state == RunState::Done) {
        written.extend(render::render_sweep(dir)?);
    }
    Ok(Aggregated { runs, written })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(dir: &Path, status: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("manifest.json"),
            serde_json::json!({ "status": status }).to_string(),
        )
        .unwrap();
    }

    #[test]
    fn run_states_come_from_manifests_and_locks() {
        // hand-made manifests for a unit test of the state rules
        let tmp = tempfile::tempdir().unwrap();
        let run = |name: &str| tmp.path().join(name);
        assert_eq!(run_state(&run("absent")), RunState::NotStarted);
        manifest(&run("done"), "complete");
        assert_eq!(run_state(&run("done")), RunState::Done);
        manifest(&run("failed"), "failed: stage train: epoch 3\nloss is NaN");
        assert_eq!(
            run_state(&run("failed")),
            RunState::Failed("loss is NaN".into())
        );
        // "running" with nobody holding the lock: the process is gone.
        manifest(&run("killed"), "running");
        assert!(
            matches!(run_state(&run("killed")), RunState::Failed(m) if m.starts_with("interrupted"))
        );
        let _lock = super::super::lock::RunLock::acquire(&run("killed")).unwrap();
        assert!(matches!(run_state(&run("killed")), RunState::Running(o) if o.contains("pid")));
    }

    #[test]
    fn the_table_counts_each_state() {
        let runs = vec![
            RunStatus {
                index: 0,
                id: "a".into(),
                state: RunState::Done,
            },
            RunStatus {
                index: 1,
                id: "b".into(),
                state: RunState::Failed("boom".into()),
            },
        ];
        let t = status_table(&runs);
        assert!(t.contains("failed       boom"), "{t}");
        assert!(
            t.ends_with("2 runs: 1 done, 1 failed, 0 running, 0 not started\n"),
            "{t}"
        );
    }
}
