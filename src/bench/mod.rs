//! Benchmarks: everything `harness bench` measures, and the peers it launches.
//!
//! | module | measures |
//! |---|---|
//! | [`search`] | the index methods over `.npy` files, an index file or seeded synthetic data |
//! | [`scale`] | the same against database size, up to 20M images, with FAISS beside it |
//! | [`made`] | the databases [`scale`] makes from a run's real outputs, and recall |
//! | [`model`] | training and inference throughput of the networks |
//! | [`iwan`] | IWAN query latency on a finished run's network |
//! | [`peak`] | the cores' multiply-add peak and sustained matrix-product rates |
//!
//! Every latency summary (median, p95) uses the one quantile rule of
//! [`crate::eval::stats::quantile_sorted`] (linear interpolation between order statistics), so
//! the benches, the eval stage's timing rows and the peer scripts agree.

pub mod iwan;
pub mod made;
pub mod model;
pub mod peak;
pub mod scale;
pub mod search;

use std::path::PathBuf;

use crate::eval::stats::StatsError;

/// Errors of a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A benchmark option is out of range or contradicts another.
    #[error("invalid benchmark option: {0}")]
    Option(String),
    /// Building or searching an index failed.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    /// An input `.npy` file could not be parsed.
    #[error("{}: {source}", path.display())]
    Npy {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        #[source]
        source: crate::store::npy::NpyError,
    },
    /// Reading or writing a file failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A peer or child benchmark process failed or printed something unexpected.
    #[error("{what}: {detail}")]
    Peer {
        /// The process and what it was measuring.
        what: String,
        /// What went wrong.
        detail: String,
    },
    /// Times could not be summarised.
    #[error(transparent)]
    Stats(#[from] StatsError),
    /// A network could not be built or run.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// The data root or a data set could not be read.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A run folder's config could not be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A run folder's stored outputs could not be read.
    #[error(transparent)]
    Artifact(#[from] crate::artifacts::ArtifactError),
    /// A finished run's IWAN network could not be rebuilt.
    #[error(transparent)]
    Experiment(#[from] Box<crate::experiment::ExperimentError>),
}

impl From<crate::experiment::ExperimentError> for BenchError {
    fn from(e: crate::experiment::ExperimentError) -> Self {
        BenchError::Experiment(Box::new(e))
    }
}

/// `(VmHWM, RssAnon, RssFile)` of this process in bytes, from `/proc/self/status` (Linux).
pub fn memory_usage() -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmHWM:")?, field("RssAnon:")?, field("RssFile:")?))
}
