//! `manifest.json`: what produced a run directory, so its numbers can be trusted and repeated.
//!
//! It records the resolved config and its hash, the git revision and dirty flag of the source
//! checkout, the versions of the crates the binary was built with, the backend, the machine, the
//! seed and the start and end times.

use crate::config::{Config, Protocol};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Version of the run-directory layout; bump when files move or change meaning.
pub const FORMAT_VERSION: u32 = 1;

/// Git state of the source checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitState {
    /// `git rev-parse HEAD`, or `unknown` outside a checkout.
    pub revision: String,
    /// True when tracked files differ from the revision.
    pub dirty: bool,
}

/// The machine a run ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model from `/proc/cpuinfo`, or `unknown`.
    pub cpu_model: String,
    /// Logical cores available to the process.
    pub cores: usize,
    /// `linux`, `macos`, ...
    pub os: String,
    /// `x86_64`, `aarch64`, ...
    pub arch: String,
    /// The kernel of `model.precision: bf16`'s products on this CPU (`amx`, `vdpbf16ps` or
    /// `portable`, [`crate::model::bf16::Kernel`]): their sums differ in the last bits, so bf16
    /// features are the same only between machines with the same kernel.
    #[serde(default)]
    pub bf16_kernel: String,
}

/// Which splits play database and queries under each protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolSplits {
    /// The protocol.
    pub protocol: Protocol,
    /// Split searched.
    pub database: String,
    /// Split the queries come from.
    pub queries: String,
    /// Whether each query is removed from its own ranking.
    pub query_excluded: bool,
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Version of `harness`.
    pub harness_version: String,
    /// Experiment name.
    pub experiment: String,
    /// Run folder name.
    pub run_id: String,
    /// sha256 of the canonical resolved config.
    pub config_hash: String,
    /// The resolved config.
    pub config: Config,
    /// Sweep values that distinguish this run.
    pub overrides: BTreeMap<String, serde_json::Value>,
    /// The command-line overrides the config was run with (`KEY=VALUE`, `--sweep ...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command_line: Vec<String>,
    /// Master seed.
    pub seed: u64,
    /// Compute backend.
    pub backend: String,
    /// Source checkout state.
    pub git: GitState,
    /// Versions of the direct dependencies, from the `Cargo.lock` the binary was built with.
    pub crates: BTreeMap<String, String>,
    /// Where the run ran.
    pub machine: Machine,
    /// The data root and how it was chosen.
    pub data_root: String,
    /// Database and query splits per protocol.
    pub protocols: Vec<ProtocolSplits>,
    /// RFC 3339 UTC start time.
    pub started_at: String,
    /// RFC 3339 UTC end time; absent while running or after a failure.
    pub finished_at: Option<String>,
    /// `running`, `complete` or `failed: <reason>`.
    pub status: String,
    /// Stages completed, in order.
    pub stages: Vec<String>,
}

/// The current UTC time as RFC 3339, to the second.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Database/query splits per protocol (DESIGN §4).
pub fn protocol_splits(protocols: &[Protocol]) -> Vec<ProtocolSplits> {
    protocols
        .iter()
        .map(|&protocol| {
            let (database, query_excluded) = match protocol {
                Protocol::Report => ("test", false),
                Protocol::LeaveOneOut => ("test", true),
                Protocol::TrainDb => ("train", false),
            };
            ProtocolSplits {
                protocol,
                database: database.into(),
                queries: "test".into(),
                query_excluded,
            }
        })
        .collect()
}

/// Git revision and dirty flag of the checkout the binary was built from (falling back to the
/// current folder).
pub fn git_state() -> GitState {
    let git = |dir: &Path, args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let candidates = [Path::new(env!("CARGO_MANIFEST_DIR")), Path::new(".")];
    for dir in candidates {
        if let Some(revision) = git(dir, &["rev-parse", "HEAD"]) {
            let dirty = git(dir, &["status", "--porcelain", "--untracked-files=no"])
                .map(|s| !s.is_empty())
                .unwrap_or(true);
            return GitState { revision, dirty };
        }
    }
    GitState {
        revision: "unknown".into(),
        dirty: false,
    }
}

/// The machine this process runs on.
pub fn machine() -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    Machine {
        cpu_model,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        bf16_kernel: crate::model::bf16::Kernel::detect().name().into(),
    }
}

/// Versions of the direct dependencies named in `Cargo.toml`, read from the `Cargo.lock` that
/// was compiled into the binary.
pub fn crate_versions() -> BTreeMap<String, String> {
    parse_crate_versions(
        include_str!("../../Cargo.toml"),
        include_str!("../../Cargo.lock"),
    )
}

fn parse_crate_versions(manifest: &str, lock: &str) -> BTreeMap<String, String> {
    let mut direct = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t.ends_with("dependencies]");
            continue;
        }
        if in_deps && let Some((name, _)) = t.split_once('=') {
            direct.push(name.trim().to_string());
        }
    }
    let mut out = BTreeMap::new();
    let mut name: Option<String> = None;
    for line in lock.lines() {
        let value = |l: &str| {
            l.split_once('=')
                .map(|(_, v)| v.trim().trim_matches('"').to_string())
        };
        if line.starts_with("name = ") {
            name = value(line);
        } else if line.starts_with("version = ")
            && let (Some(n), Some(v)) = (name.take(), value(line))
            && direct.contains(&n)
        {
            out.entry(n).or_insert(v);
        }
    }
    out.insert("harness".into(), env!("CARGO_PKG_VERSION").into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_versions_cover_direct_dependencies() {
        let v = crate_versions();
        for name in ["serde-saphyr", "clap", "rayon", "sha2", "harness"] {
            assert!(v.contains_key(name), "{name} missing from {v:?}");
        }
        assert!(!v.contains_key("syn"), "transitive crates are not listed");
    }

    #[test]
    fn protocol_splits_follow_the_design() {
        let s = protocol_splits(&[Protocol::Report, Protocol::LeaveOneOut, Protocol::TrainDb]);
        assert_eq!(
            (s[0].database.as_str(), s[0].query_excluded),
            ("test", false)
        );
        assert_eq!(
            (s[1].database.as_str(), s[1].query_excluded),
            ("test", true)
        );
        assert_eq!(
            (s[2].database.as_str(), s[2].queries.as_str()),
            ("train", "test")
        );
    }
}
