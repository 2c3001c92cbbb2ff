//! Retrieval evaluation: per-query metrics and their aggregation
//! ([`metrics`]) and descriptive statistics with confidence intervals
//! ([`stats`]).

pub mod external;
pub mod iwan;
pub mod metrics;
pub mod protocol;
pub mod retrieval;
pub mod stats;

pub use crate::config::Protocol;
pub use protocol::Semantics;

pub use metrics::{
    AggregateReport, MeansAtK, Metric, MetricsAggregator, MetricsAtK, MetricsError, QueryEvaluator,
    QueryMetrics,
};
pub use stats::{
    SeedSummary, SplitMix64, StatsError, Summary, bootstrap_mean_ci, quantile, quantile_sorted,
    seed_summary, summarize,
};
