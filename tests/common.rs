//! Shared helpers: the real data root, the binary, and scratch data roots that mirror the real
//! one with symlinks so a single file can be replaced by a damaged copy.

use harness::data::DataRoot;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The real data root, found as the binary would find it.
pub fn data_root() -> DataRoot {
    DataRoot::resolve(None, None)
        .expect("the real data must be available (../shared/data or $HARNESS_DATA)")
}

/// Runs the `harness` binary with `args` in `cwd` (the repository root when `None`).
pub fn harness(args: &[&str], cwd: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.args(args).env_remove("HARNESS_DATA");
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.output().expect("the harness binary runs")
}

/// stdout and stderr of a finished command, as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A scratch data root whose files are symlinks to the real ones; replace any of them with
/// [`ScratchRoot::replace`].
pub struct ScratchRoot {
    pub dir: tempfile::TempDir,
}

impl ScratchRoot {
    pub fn new() -> Self {
        let real = data_root().path.canonicalize().expect("real data root");
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in [
            "cifar-100-binary",
            "hierarchy",
            "usf",
            "imagenet",
            "pretrained",
        ] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
            for entry in std::fs::read_dir(real.join(sub)).unwrap() {
                let entry = entry.unwrap();
                std::os::unix::fs::symlink(
                    entry.path(),
                    dir.path().join(sub).join(entry.file_name()),
                )
                .unwrap();
            }
        }
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The real content of `rel` (e.g. `usf/usf_free_association_norms.csv`).
    pub fn real(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(rel)).unwrap()
    }

    /// Replaces the symlink `rel` with a regular file holding `bytes`.
    pub fn replace(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// The integration-test config (small prefixes of the real data).
pub const TINY: &str = "tests/fixtures/tiny.yaml";

/// The run folders (those holding a manifest) under an experiment folder.
pub fn run_dirs(exp: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(exp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").exists())
        .collect();
    dirs.sort();
    dirs
}

/// The frozen-encoder integration-test config.
pub const TINY_FROZEN: &str = "tests/fixtures/tiny_frozen.yaml";

type SharedRun = std::sync::OnceLock<(tempfile::TempDir, PathBuf)>;

/// The first run of `config`, made once per test binary into a temp folder kept in `slot`.
fn shared_run(slot: &'static SharedRun, config: &str) -> &'static Path {
    let (_, run) = slot.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = harness(
            &[
                "--quiet",
                "run",
                config,
                "--out",
                dir.path().to_str().unwrap(),
            ],
            None,
        );
        assert!(out.status.success(), "{}", text(&out).1);
        let run = run_dirs(dir.path()).remove(0);
        (dir, run)
    });
    run
}

/// A finished run of [`TINY`], made once per test binary (trained on a prefix of the real data).
pub fn tiny_run() -> &'static Path {
    static RUN: SharedRun = std::sync::OnceLock::new();
    shared_run(&RUN, TINY)
}

/// A finished run of [`TINY_FROZEN`] (EfficientNet-Lite0 features, the ImageNet word model),
/// made once per test binary.
pub fn tiny_frozen_run() -> &'static Path {
    static RUN: SharedRun = std::sync::OnceLock::new();
    shared_run(&RUN, TINY_FROZEN)
}

/// The quality rows (`mP`, `mAP`, `mHP`, `mAHP`, `mAHP_mean`) of a run's metrics.csv, without the
/// timings, which differ run to run.
pub fn quality_rows(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .filter(|l| {
            let metric = l.split(',').nth(2).unwrap_or("");
            ["mP", "mAP", "mHP", "mAHP", "mAHP_mean"].contains(&metric)
        })
        .map(String::from)
        .collect()
}
