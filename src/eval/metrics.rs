//! Retrieval metrics for semantic image retrieval: precision P@k, average
//! precision AP@k and full-ranking AP, hierarchical precision HP@k, the area
//! under the HP curve AHP@K (trapezoid) and AHP_mean@K (plain mean), the
//! evaluation [`crate::config::Protocol`]s, the per-query [`QueryEvaluator`] and the
//! [`MetricsAggregator`] that keeps per-query values and produces means,
//! summaries and mean HP@1..HP@K curves.
//!
//! Notation: a query q with fine label y_q, a database D with labels y(x), a
//! ranking r_1, r_2, ... of database ids, rel_i = [y(r_i) == y_q], R = number
//! of items of D with label y_q (the query's own db item excluded when the
//! protocol excludes it), sim(u, v) a class-similarity matrix.
//!
//! * P@k = (1/k) Σ_{i<=k} rel_i. Positions beyond the end of a ranking
//!   shorter than k count as non-relevant (rel_i = 0, sim contribution 0),
//!   while the denominator stays k. Its mean over queries is mP@k
//!   ([`Metric::Precision`]); the report's "mAP@k" is not this but AP_report
//!   (Tables 1-2) or P_hit (Tables 3-4), below.
//! * AP@k = (1/min(R, k)) Σ_{i<=k} rel_i · P@i, and 0 when R = 0.
//! * Full AP = (1/R) Σ_i rel_i · P@i over the whole ranking (equal to
//!   sklearn's `average_precision_score` on the full ranking without ties);
//!   only reported when the ranking covers all of D minus the excluded item;
//!   0 when R = 0.
//! * HP@k = Σ_{i<=k} sim(y_q, y(r_i)) / max_k, where max_k is the sum of the k
//!   largest sim(y_q, y(x)) over x in D (excluded item removed). When D has
//!   fewer than k items, max_k is the sum over all of D. When max_k = 0, HP@k
//!   is defined as 0 (as sklearn's nDCG does for all-zero gains).
//! * AHP@K = (1/K) (Σ_{i=1..K} HP@i - (HP@1 + HP@K)/2): trapezoid area under
//!   HP@1..HP@K with step 1/K; a perfect ranking scores (K-1)/K, so AHP@1 = 0.
//! * AHP_mean@K = (1/K) Σ_{i=1..K} HP@i (the report's definition; a perfect
//!   ranking scores 1).
//! * AP_report@k = (1/k) Σ_{i<=k} rel_i · P@i: what the report's Tables 1-2 call "AP@k"
//!   (rounaksaha12/Information-Retrieval-CBIR-project @ 14c2141, `evaluate_retrieval.py`
//!   lines 18-32). Always <= P@k; equal to AP@k when R >= k.
//! * P_hit@k: the report's Tables 3-4 "AP@k" (ritszaar/Semantic-Similarity-Word-Associations @
//!   209c5d1, `test.py`, `compute_average_precisions`): the mean of P@i over the ranks i <= k
//!   where P@i > 0, i.e. from the first hit f to k, (1/(k-f+1)) Σ_{i=f..k} P@i; 0 without a
//!   hit in the first k. Its mean is taken only over the queries with a hit in the first
//!   [`HIT_WINDOW`] = 20 ranks ([`QueryMetrics::hit20`]): `mP_hit20@k`.
//! * AHP_hit@k: the same with the hierarchical relevance s_j = sim(y_q, y(r_j)) in place of
//!   rel_j: the mean of (1/i) Σ_{j<=i} s_j over the ranks i <= k where it is > 0; its mean is
//!   taken over the queries whose first 20 results have a positive similarity
//!   ([`QueryMetrics::sim_hit20`]): `mAHP_hit20@k`.
//!
//! Similarities are converted to and computed in f64 (inputs may be f32 or
//! f64); they must be finite and non-negative.

use std::fmt;

use serde::Serialize;
use thiserror::Error;

use super::stats::{StatsError, Summary, summarize};
#[cfg(test)]
use crate::config::Protocol;

/// Errors from metric evaluation and aggregation.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MetricsError {
    /// The number of classes was 0 or above 65,536 (labels are `u16`).
    #[error("number of classes must be in 1..=65536, got {0}")]
    InvalidClassCount(usize),
    /// The similarity matrix does not hold n_classes² values.
    #[error("similarity matrix has {len} values, expected {n_classes}^2")]
    SimilarityShape {
        /// Number of values given.
        len: usize,
        /// Number of classes.
        n_classes: usize,
    },
    /// A similarity was negative, NaN or infinite.
    #[error("similarity ({row}, {col}) = {value} is not finite and >= 0")]
    SimilarityValue {
        /// Row (query class).
        row: usize,
        /// Column (database class).
        col: usize,
        /// Offending value.
        value: f64,
    },
    /// The database holds more items than `u32` ids can address.
    #[error("database of {0} items does not fit u32 ids")]
    DatabaseTooLarge(usize),
    /// A database label is not below n_classes.
    #[error("database item {index} has label {label} >= n_classes {n_classes}")]
    DbLabelOutOfRange {
        /// Database id.
        index: usize,
        /// Offending label.
        label: u16,
        /// Number of classes.
        n_classes: usize,
    },
    /// The query label is not below n_classes.
    #[error("query label {label} >= n_classes {n_classes}")]
    QueryLabelOutOfRange {
        /// Offending label.
        label: u16,
        /// Number of classes.
        n_classes: usize,
    },
    /// A database id (in the ranking or as the excluded id) is out of range.
    #[error("database id {id} out of range for a database of {db_len} items")]
    DbIdOutOfRange {
        /// Offending id.
        id: u32,
        /// Database size |D|.
        db_len: usize,
    },
    /// The excluded (query's own) id appears in the ranking.
    #[error("excluded id {id} appears in the ranking at position {position}")]
    ExcludedInRanking {
        /// The excluded id.
        id: u32,
        /// 0-based position in the ranking.
        position: usize,
    },
    /// A database id appears twice in the ranking.
    #[error("database id {id} appears twice in the ranking (second at position {position})")]
    DuplicateInRanking {
        /// Repeated id.
        id: u32,
        /// 0-based position of the repeat.
        position: usize,
    },
    /// No cut-offs k were given.
    #[error("the list of cut-offs k is empty")]
    EmptyKs,
    /// A cut-off k was 0.
    #[error("cut-off k must be >= 1")]
    ZeroK,
    /// Query metrics were computed for other cut-offs than the aggregator's.
    #[error("cut-offs {got:?} differ from the aggregator's {expected:?}")]
    KsMismatch {
        /// Aggregator's cut-offs.
        expected: Vec<usize>,
        /// Cut-offs of the pushed metrics.
        got: Vec<usize>,
    },
    /// A requested cut-off is not among the aggregator's.
    #[error("cut-off k = {0} was not evaluated")]
    UnknownK(usize),
    /// Summary statistics failed (e.g. no queries aggregated).
    #[error(transparent)]
    Stats(#[from] StatsError),
}

/// One metric family evaluated at a cut-off k.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// P@k (its mean over queries is mP@k).
    Precision,
    /// AP@k = (1/min(R,k)) Σ_{i<=k} rel_i P@i.
    AveragePrecision,
    /// HP@k.
    HierarchicalPrecision,
    /// AHP@k, trapezoid area under HP@1..HP@k (perfect ranking: (k-1)/k).
    Ahp,
    /// AHP_mean@k, plain mean of HP@1..HP@k (perfect ranking: 1).
    AhpMean,
    /// AP_report@k = (1/k) Σ_{i<=k} rel_i P@i (the report's Tables 1-2 "AP@k").
    ApReport,
    /// P_hit@k: mean of P@i from the first hit to k (the report's Tables 3-4 "AP@k").
    PrecisionFromHit,
    /// AHP_hit@k: the same with hierarchical relevance (the report's Tables 3-4 "AHP@k").
    AhpFromHit,
}

/// The report's Tables 3-4 average their measures only over the queries with a hit in the
/// first 20 results (`test.py`, `compute_metrics`).
pub const HIT_WINDOW: usize = 20;

impl Metric {
    /// All metrics, in declaration order.
    pub const ALL: [Metric; 8] = [
        Metric::Precision,
        Metric::AveragePrecision,
        Metric::HierarchicalPrecision,
        Metric::Ahp,
        Metric::AhpMean,
        Metric::ApReport,
        Metric::PrecisionFromHit,
        Metric::AhpFromHit,
    ];

    /// Short name of the per-query metric ("P", "AP", "HP", "AHP", "AHP_mean").
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Precision => "P",
            Metric::AveragePrecision => "AP",
            Metric::HierarchicalPrecision => "HP",
            Metric::Ahp => "AHP",
            Metric::AhpMean => "AHP_mean",
            Metric::ApReport => "AP_report",
            Metric::PrecisionFromHit => "P_hit",
            Metric::AhpFromHit => "AHP_hit",
        }
    }

    /// This metric's value in one [`MetricsAtK`].
    pub fn of(self, m: &MetricsAtK) -> f64 {
        match self {
            Metric::Precision => m.precision,
            Metric::AveragePrecision => m.average_precision,
            Metric::HierarchicalPrecision => m.hierarchical_precision,
            Metric::Ahp => m.ahp,
            Metric::AhpMean => m.ahp_mean,
            Metric::ApReport => m.ap_report,
            Metric::PrecisionFromHit => m.p_hit,
            Metric::AhpFromHit => m.ahp_hit,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// All metrics of one query at one cut-off k.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MetricsAtK {
    /// Cut-off k (for AHP the K of AHP@K).
    pub k: usize,
    /// P@k.
    pub precision: f64,
    /// AP@k.
    pub average_precision: f64,
    /// HP@k.
    pub hierarchical_precision: f64,
    /// AHP@k (trapezoid).
    pub ahp: f64,
    /// AHP_mean@k (plain mean of HP@1..HP@k).
    pub ahp_mean: f64,
    /// AP_report@k = (1/k) Σ_{i<=k} rel_i P@i.
    pub ap_report: f64,
    /// P_hit@k: mean of P@i over i <= k from the first hit on; 0 without a hit.
    pub p_hit: f64,
    /// AHP_hit@k: mean of (1/i) Σ_{j<=i} s_j over i <= k where it is > 0; 0 where none is.
    pub ahp_hit: f64,
}

/// Metrics of one query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryMetrics {
    /// Query label y_q.
    pub query_label: u16,
    /// R: number of relevant items in D (excluded item removed).
    pub relevant_total: usize,
    /// One entry per requested k, in the order the ks were given.
    pub at_k: Vec<MetricsAtK>,
    /// Full-ranking AP; `Some` only when the ranking covers all of D minus the
    /// excluded item.
    pub ap_full: Option<f64>,
    /// HP@1, ..., HP@K for K = the largest requested k.
    pub hp_curve: Vec<f64>,
    /// A relevant item among the first [`HIT_WINDOW`] results (the report's Tables 3-4 count
    /// only such queries in their mAP).
    pub hit20: bool,
    /// A positive similarity among the first [`HIT_WINDOW`] results (likewise for their mAHP).
    pub sim_hit20: bool,
}

impl QueryMetrics {
    /// The requested cut-offs, in order.
    pub fn ks(&self) -> impl Iterator<Item = usize> + '_ {
        self.at_k.iter().map(|m| m.k)
    }

    /// Metrics at cut-off k, if k was requested.
    pub fn at(&self, k: usize) -> Option<&MetricsAtK> {
        self.at_k.iter().find(|m| m.k == k)
    }
}

/// Per-query evaluator, built once per (database labels, class similarity,
/// n_classes). Precomputes per-class counts of D and, for every query class,
/// the classes ordered by decreasing similarity, so that max_k for k = 1..K
/// costs O(n_classes + K) per query instead of sorting D.
///
/// `evaluate` takes `&self`; the evaluator is `Sync` and can be shared by
/// threads.
#[derive(Debug, Clone)]
pub struct QueryEvaluator {
    n_classes: usize,
    db_labels: Vec<u16>,
    /// Row-major n_classes × n_classes similarity, f64.
    sim: Vec<f64>,
    /// Number of items of D per class.
    class_counts: Vec<usize>,
    /// Row-major n_classes × n_classes: for query class c, class ids sorted by
    /// decreasing sim(c, ·) (ties by class id).
    order: Vec<u16>,
}

impl QueryEvaluator {
    /// Builds the evaluator.
    ///
    /// * `db_labels[x]`: fine label y(x) of database item x (x is the db id
    ///   used in rankings).
    /// * `sim`: row-major n_classes × n_classes similarity sim(u, v) (row =
    ///   query class), f32 or f64; converted to f64. Must be finite and >= 0.
    pub fn new<T: Copy + Into<f64>>(
        db_labels: &[u16],
        sim: &[T],
        n_classes: usize,
    ) -> Result<Self, MetricsError> {
        if n_classes == 0 || n_classes > usize::from(u16::MAX) + 1 {
            return Err(MetricsError::InvalidClassCount(n_classes));
        }
        if sim.len() != n_classes * n_classes {
            return Err(MetricsError::SimilarityShape {
                len: sim.len(),
                n_classes,
            });
        }
        if u32::try_from(db_labels.len()).is_err() {
            return Err(MetricsError::DatabaseTooLarge(db_labels.len()));
        }
        let sim: Vec<f64> = sim.iter().map(|&v| v.into()).collect();
        if let Some(pos) = sim.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(MetricsError::SimilarityValue {
                row: pos / n_classes,
                col: pos % n_classes,
                value: sim[pos],
            });
        }
        let mut class_counts = vec![0usize; n_classes];
        for (index, &label) in db_labels.iter().enumerate() {
            match class_counts.get_mut(usize::from(label)) {
                Some(c) => *c += 1,
                None => {
                    return Err(MetricsError::DbLabelOutOfRange {
                        index,
                        label,
                        n_classes,
                    });
                }
            }
        }
        let mut order = Vec::with_capacity(n_classes * n_classes);
        for row in sim.chunks_exact(n_classes) {
            // n_classes <= 65536, so every class id fits u16.
            let mut classes: Vec<u16> = (0..n_classes).map(|c| c as u16).collect();
            classes.sort_by(|&a, &b| {
                row[usize::from(b)]
                    .total_cmp(&row[usize::from(a)])
                    .then(a.cmp(&b))
            });
            order.extend_from_slice(&classes);
        }
        Ok(Self {
            n_classes,
            db_labels: db_labels.to_vec(),
            sim,
            class_counts,
            order,
        })
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Database size |D| (including any item a query may exclude).
    pub fn db_len(&self) -> usize {
        self.db_labels.len()
    }

    /// Number of items of D per class.
    pub fn class_counts(&self) -> &[usize] {
        &self.class_counts
    }

    /// sim(u, v) in f64. Panics if u or v >= n_classes.
    pub fn similarity(&self, u: u16, v: u16) -> f64 {
        self.sim[usize::from(u) * self.n_classes + usize::from(v)]
    }

    /// R for a query of class `query_label` with optional excluded db item.
    /// Errors if the label or the excluded id is out of range.
    pub fn relevant_total(
        &self,
        query_label: u16,
        exclude: Option<u32>,
    ) -> Result<usize, MetricsError> {
        self.check_query(query_label)?;
        let excluded_label = self.excluded_label(exclude)?;
        Ok(self.relevant_unchecked(query_label, excluded_label))
    }

    /// Cumulative ideal gains max_1, ..., max_K for a query class: max_k is the
    /// sum of the k largest sim(y_q, y(x)) over x in D minus the excluded item
    /// (the sum over all of D when k > |D|). Errors on out-of-range input.
    pub fn ideal_gains(
        &self,
        query_label: u16,
        exclude: Option<u32>,
        k_max: usize,
    ) -> Result<Vec<f64>, MetricsError> {
        self.check_query(query_label)?;
        let excluded_label = self.excluded_label(exclude)?;
        Ok(self.ideal_unchecked(query_label, excluded_label, k_max))
    }

    fn check_query(&self, query_label: u16) -> Result<(), MetricsError> {
        if usize::from(query_label) < self.n_classes {
            Ok(())
        } else {
            Err(MetricsError::QueryLabelOutOfRange {
                label: query_label,
                n_classes: self.n_classes,
            })
        }
    }

    fn excluded_label(&self, exclude: Option<u32>) -> Result<Option<u16>, MetricsError> {
        exclude
            .map(|id| {
                self.db_labels
                    .get(id as usize)
                    .copied()
                    .ok_or(MetricsError::DbIdOutOfRange {
                        id,
                        db_len: self.db_labels.len(),
                    })
            })
            .transpose()
    }

    fn count_without(&self, class: u16, excluded_label: Option<u16>) -> usize {
        let count = self.class_counts[usize::from(class)];
        if excluded_label == Some(class) {
            count.saturating_sub(1)
        } else {
            count
        }
    }

    fn relevant_unchecked(&self, query_label: u16, excluded_label: Option<u16>) -> usize {
        self.count_without(query_label, excluded_label)
    }

    fn ideal_unchecked(
        &self,
        query_label: u16,
        excluded_label: Option<u16>,
        k_max: usize,
    ) -> Vec<f64> {
        let q = usize::from(query_label);
        let row = &self.sim[q * self.n_classes..(q + 1) * self.n_classes];
        let order = &self.order[q * self.n_classes..(q + 1) * self.n_classes];
        let mut ideal = Vec::with_capacity(k_max);
        let mut cum = 0.0f64;
        for &class in order {
            if ideal.len() == k_max {
                break;
            }
            let take = self
                .count_without(class, excluded_label)
                .min(k_max - ideal.len());
            let s = row[usize::from(class)];
            for _ in 0..take {
                cum += s;
                ideal.push(cum);
            }
        }
        // |D| < k_max: max_k stays the sum over all of D.
        ideal.resize(k_max, cum);
        ideal
    }

    /// Checks a ranking: ids in range, no duplicates, excluded id absent.
    /// Returns whether it covers all of D minus the excluded item.
    fn check_ranking(&self, exclude: Option<u32>, ranking: &[u32]) -> Result<bool, MetricsError> {
        let db_len = self.db_labels.len();
        let mut seen = vec![0u64; db_len.div_ceil(64)];
        for (position, &id) in ranking.iter().enumerate() {
            let x = id as usize;
            if x >= db_len {
                return Err(MetricsError::DbIdOutOfRange { id, db_len });
            }
            if exclude == Some(id) {
                return Err(MetricsError::ExcludedInRanking { id, position });
            }
            let (word, bit) = (x / 64, 1u64 << (x % 64));
            if seen[word] & bit != 0 {
                return Err(MetricsError::DuplicateInRanking { id, position });
            }
            seen[word] |= bit;
        }
        Ok(ranking.len() == db_len - usize::from(exclude.is_some()))
    }

    /// Evaluates one query.
    ///
    /// * `query_label`: y_q.
    /// * `exclude`: the query's own db id when the protocol excludes it
    ///   ([`crate::config::Protocol::exclusion`]); it is removed from R and max_k and must not
    ///   appear in `ranking`.
    /// * `ranking`: db ids in rank order r_1, r_2, ... (a prefix of length >= K
    ///   suffices for the @k metrics; pass the full ranking to get full AP).
    /// * `ks`: cut-offs k >= 1 (any order); metrics are returned in this order.
    ///
    /// Cost O(|ranking| + n_classes + K) with K = max(ks); the |ranking| part
    /// is the validation of ids (range, duplicates, exclusion) and full AP.
    ///
    /// Errors: label/id out of range, excluded id or duplicate in the ranking,
    /// empty ks or k = 0.
    pub fn evaluate(
        &self,
        query_label: u16,
        exclude: Option<u32>,
        ranking: &[u32],
        ks: &[usize],
    ) -> Result<QueryMetrics, MetricsError> {
        self.check_query(query_label)?;
        let excluded_label = self.excluded_label(exclude)?;
        let k_max = *ks.iter().max().ok_or(MetricsError::EmptyKs)?;
        if ks.contains(&0) {
            return Err(MetricsError::ZeroK);
        }
        let covers_db = self.check_ranking(exclude, ranking)?;
        let r_total = self.relevant_unchecked(query_label, excluded_label);
        let ideal = self.ideal_unchecked(query_label, excluded_label, k_max);

        let q = usize::from(query_label);
        let sim_row = &self.sim[q * self.n_classes..(q + 1) * self.n_classes];
        // Per position i = 1..=K: hits_i = Σ_{j<=i} rel_j, ap_i = Σ_{j<=i}
        // rel_j P@j, hp_i = HP@i, hp_cum_i = Σ_{j<=i} HP@j; for the report's Tables 3-4,
        // p_cum_i = Σ_{j<=i} P@j and s_cum_i = Σ_{j<=i} (1/j) Σ_{l<=j} s_l, with the first rank
        // at which each becomes positive.
        let mut hits_at = Vec::with_capacity(k_max);
        let mut ap_at = Vec::with_capacity(k_max);
        let mut hp_curve = Vec::with_capacity(k_max);
        let mut hp_cum_at = Vec::with_capacity(k_max);
        let mut p_cum_at = Vec::with_capacity(k_max);
        let mut s_cum_at = Vec::with_capacity(k_max);
        let (mut hits, mut ap_sum, mut gain, mut hp_cum) = (0usize, 0.0f64, 0.0f64, 0.0f64);
        let (mut p_cum, mut s_cum) = (0.0f64, 0.0f64);
        let (mut first_hit, mut first_sim) = (None, None);
        for (i, &max_i) in ideal.iter().enumerate() {
            let rank = (i + 1) as f64;
            if let Some(&id) = ranking.get(i) {
                let label = self.db_labels[id as usize];
                if label == query_label {
                    hits += 1;
                    ap_sum += hits as f64 / rank;
                    first_hit.get_or_insert(i);
                }
                let s = sim_row[usize::from(label)];
                if s > 0.0 {
                    first_sim.get_or_insert(i);
                }
                gain += s;
            }
            let hp = if max_i > 0.0 { gain / max_i } else { 0.0 };
            hp_cum += hp;
            p_cum += hits as f64 / rank;
            s_cum += gain / rank;
            hits_at.push(hits);
            ap_at.push(ap_sum);
            hp_curve.push(hp);
            hp_cum_at.push(hp_cum);
            p_cum_at.push(p_cum);
            s_cum_at.push(s_cum);
        }
        // The mean of a running value over the ranks i <= k from `first` on (where it is > 0;
        // before `first` it is 0 and adds nothing to the cumulative sum).
        let from_first = |cum: &[f64], first: Option<usize>, j: usize| match first {
            Some(f) if f <= j => cum[j] / (j - f + 1) as f64,
            _ => 0.0,
        };
        let window = |relevant: &dyn Fn(u16) -> bool| {
            ranking
                .iter()
                .take(HIT_WINDOW)
                .any(|&id| relevant(self.db_labels[id as usize]))
        };

        let at_k = ks
            .iter()
            .map(|&k| {
                let j = k - 1;
                let kf = k as f64;
                let average_precision = if r_total == 0 {
                    0.0
                } else {
                    ap_at[j] / r_total.min(k) as f64
                };
                MetricsAtK {
                    k,
                    precision: hits_at[j] as f64 / kf,
                    average_precision,
                    hierarchical_precision: hp_curve[j],
                    ahp: (hp_cum_at[j] - 0.5 * (hp_curve[0] + hp_curve[j])) / kf,
                    ahp_mean: hp_cum_at[j] / kf,
                    ap_report: ap_at[j] / kf,
                    p_hit: from_first(&p_cum_at, first_hit, j),
                    ahp_hit: from_first(&s_cum_at, first_sim, j),
                }
            })
            .collect();

        let ap_full = covers_db.then(|| self.full_ap(query_label, ranking, r_total));
        Ok(QueryMetrics {
            query_label,
            relevant_total: r_total,
            at_k,
            ap_full,
            hp_curve,
            hit20: window(&|label| label == query_label),
            sim_hit20: window(&|label| sim_row[usize::from(label)] > 0.0),
        })
    }

    /// (1/R) Σ_i rel_i P@i over the whole ranking; 0 when R = 0.
    fn full_ap(&self, query_label: u16, ranking: &[u32], r_total: usize) -> f64 {
        if r_total == 0 {
            return 0.0;
        }
        let mut hits = 0usize;
        let mut sum = 0.0f64;
        for (i, &id) in ranking.iter().enumerate() {
            if self.db_labels[id as usize] == query_label {
                hits += 1;
                sum += hits as f64 / (i + 1) as f64;
            }
        }
        sum / r_total as f64
    }
}

/// Means of all metrics over queries at one cut-off k.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeansAtK {
    /// Cut-off k.
    pub k: usize,
    /// mP@k, mean precision at k.
    pub mean_precision: f64,
    /// mAP@k: mean AP@k.
    pub mean_average_precision: f64,
    /// mHP@k: mean HP@k.
    pub mean_hierarchical_precision: f64,
    /// mAHP@k: mean trapezoid AHP@k.
    pub mean_ahp: f64,
    /// Mean AHP_mean@k (the report's Tables 1-2 "mAHP@k").
    pub mean_ahp_mean: f64,
    /// mAP_report@k: mean AP_report@k (the report's Tables 1-2 "mAP@k").
    pub mean_ap_report: f64,
    /// mP_hit20@k: mean P_hit@k over the queries with a hit in the first 20 (the report's
    /// Tables 3-4 "mAP@k"); `None` when no query has one.
    pub mean_p_hit20: Option<f64>,
    /// mAHP_hit20@k: mean AHP_hit@k over the queries with a positive similarity in the first
    /// 20 (the report's Tables 3-4 "mAHP@k"); `None` when no query has one.
    pub mean_ahp_hit20: Option<f64>,
}

/// Aggregated means over all pushed queries, ready to serialise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AggregateReport {
    /// Number of queries.
    pub n_queries: usize,
    /// Means per requested k, in the aggregator's k order.
    pub at_k: Vec<MeansAtK>,
    /// mAP over full rankings; `Some` only if every query had full AP.
    pub map_full: Option<f64>,
    /// Number of queries that had a full AP.
    pub n_full_ap: usize,
    /// Mean HP@i for i = 1..=K (K = largest k).
    pub hp_curve: Vec<f64>,
    /// Queries counted in mP_hit20 (a hit in the first 20).
    pub n_hit20: usize,
    /// Queries counted in mAHP_hit20 (a positive similarity in the first 20).
    pub n_sim_hit20: usize,
}

/// Collects [`QueryMetrics`] of many queries, keeping every per-query value
/// (for means, medians, confidence intervals) plus running sums of the
/// HP@1..HP@K curves.
#[derive(Debug, Clone)]
pub struct MetricsAggregator {
    ks: Vec<usize>,
    k_max: usize,
    /// `columns[metric.index() * ks.len() + k_index]` = per-query values.
    columns: Vec<Vec<f64>>,
    ap_full: Vec<f64>,
    relevant_totals: Vec<usize>,
    query_labels: Vec<u16>,
    hp_curve_sum: Vec<f64>,
    /// Per query, [`QueryMetrics::hit20`] and [`QueryMetrics::sim_hit20`].
    hit20: Vec<(bool, bool)>,
}

impl MetricsAggregator {
    /// New aggregator for the cut-offs `ks` (same list and order as passed to
    /// [`QueryEvaluator::evaluate`]). Errors on empty ks or k = 0.
    pub fn new(ks: &[usize]) -> Result<Self, MetricsError> {
        let k_max = *ks.iter().max().ok_or(MetricsError::EmptyKs)?;
        if ks.contains(&0) {
            return Err(MetricsError::ZeroK);
        }
        Ok(Self {
            ks: ks.to_vec(),
            k_max,
            columns: vec![Vec::new(); Metric::ALL.len() * ks.len()],
            ap_full: Vec::new(),
            relevant_totals: Vec::new(),
            query_labels: Vec::new(),
            hp_curve_sum: vec![0.0; k_max],
            hit20: Vec::new(),
        })
    }

    /// The cut-offs k.
    pub fn ks(&self) -> &[usize] {
        &self.ks
    }

    /// Number of queries pushed.
    pub fn len(&self) -> usize {
        self.query_labels.len()
    }

    /// Whether no query was pushed.
    pub fn is_empty(&self) -> bool {
        self.query_labels.is_empty()
    }

    /// Adds one query's metrics. Errors if its ks differ from the aggregator's.
    pub fn push(&mut self, m: &QueryMetrics) -> Result<(), MetricsError> {
        if !m.ks().eq(self.ks.iter().copied()) || m.hp_curve.len() != self.k_max {
            return Err(MetricsError::KsMismatch {
                expected: self.ks.clone(),
                got: m.ks().collect(),
            });
        }
        let nk = self.ks.len();
        for metric in Metric::ALL {
            for (ki, at) in m.at_k.iter().enumerate() {
                self.columns[metric.index() * nk + ki].push(metric.of(at));
            }
        }
        if let Some(ap) = m.ap_full {
            self.ap_full.push(ap);
        }
        for (sum, hp) in self.hp_curve_sum.iter_mut().zip(&m.hp_curve) {
            *sum += hp;
        }
        self.relevant_totals.push(m.relevant_total);
        self.query_labels.push(m.query_label);
        self.hit20.push((m.hit20, m.sim_hit20));
        Ok(())
    }

    /// Appends all queries of `other` (e.g. from another thread).
    pub fn merge(&mut self, other: &MetricsAggregator) -> Result<(), MetricsError> {
        if other.ks != self.ks {
            return Err(MetricsError::KsMismatch {
                expected: self.ks.clone(),
                got: other.ks.clone(),
            });
        }
        for (a, b) in self.columns.iter_mut().zip(&other.columns) {
            a.extend_from_slice(b);
        }
        self.ap_full.extend_from_slice(&other.ap_full);
        for (a, b) in self.hp_curve_sum.iter_mut().zip(&other.hp_curve_sum) {
            *a += b;
        }
        self.relevant_totals
            .extend_from_slice(&other.relevant_totals);
        self.query_labels.extend_from_slice(&other.query_labels);
        self.hit20.extend_from_slice(&other.hit20);
        Ok(())
    }

    /// Per-query values of `metric` at cut-off k, in push order; `None` if k
    /// is not one of the aggregator's cut-offs.
    pub fn values(&self, metric: Metric, k: usize) -> Option<&[f64]> {
        let ki = self.ks.iter().position(|&x| x == k)?;
        Some(&self.columns[metric.index() * self.ks.len() + ki])
    }

    /// Mean of `metric` at k over queries (e.g. mP@k, mAP@k, mHP@k, mAHP@k);
    /// `None` if k is unknown or no query was pushed.
    pub fn mean(&self, metric: Metric, k: usize) -> Option<f64> {
        let v = self.values(metric, k)?;
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Mean of `metric` at k over only the queries `counted` keeps (by push order); `None` if k
    /// is unknown or no query is counted.
    fn mean_where(&self, metric: Metric, k: usize, counted: impl Fn(usize) -> bool) -> Option<f64> {
        let v = self.values(metric, k)?;
        let (sum, n) = v
            .iter()
            .enumerate()
            .filter(|&(i, _)| counted(i))
            .fold((0.0f64, 0usize), |(s, n), (_, x)| (s + x, n + 1));
        (n > 0).then(|| sum / n as f64)
    }

    /// mP_hit20@k: mean P_hit@k over the queries with a hit in the first 20.
    pub fn mean_p_hit20(&self, k: usize) -> Option<f64> {
        self.mean_where(Metric::PrecisionFromHit, k, |i| self.hit20[i].0)
    }

    /// mAHP_hit20@k: mean AHP_hit@k over the queries with a positive similarity in the first 20.
    pub fn mean_ahp_hit20(&self, k: usize) -> Option<f64> {
        self.mean_where(Metric::AhpFromHit, k, |i| self.hit20[i].1)
    }

    /// Queries counted by [`Self::mean_p_hit20`] and by [`Self::mean_ahp_hit20`].
    pub fn hit20_counts(&self) -> (usize, usize) {
        self.hit20.iter().fold((0, 0), |(a, b), &(h, s)| {
            (a + usize::from(h), b + usize::from(s))
        })
    }

    /// [`Summary`] (mean, median, CI, ...) of `metric` at k over queries.
    pub fn summary(&self, metric: Metric, k: usize) -> Result<Summary, MetricsError> {
        let v = self.values(metric, k).ok_or(MetricsError::UnknownK(k))?;
        Ok(summarize(v)?)
    }

    /// Per-query full AP values (only queries whose ranking covered D).
    pub fn ap_full_values(&self) -> &[f64] {
        &self.ap_full
    }

    /// mAP over full rankings; `Some` only if at least one query was pushed
    /// and every query had a full AP.
    pub fn map_full(&self) -> Option<f64> {
        (!self.is_empty() && self.ap_full.len() == self.len())
            .then(|| self.ap_full.iter().sum::<f64>() / self.ap_full.len() as f64)
    }

    /// Per-query R, in push order.
    pub fn relevant_totals(&self) -> &[usize] {
        &self.relevant_totals
    }

    /// Per-query labels y_q, in push order.
    pub fn query_labels(&self) -> &[u16] {
        &self.query_labels
    }

    /// Mean HP@i over queries for i = 1..=K (K = largest k), for plotting;
    /// `None` if no query was pushed.
    pub fn hp_curve(&self) -> Option<Vec<f64>> {
        let n = self.len() as f64;
        (!self.is_empty()).then(|| self.hp_curve_sum.iter().map(|s| s / n).collect())
    }

    /// Means of all metrics per k, full mAP and the mean HP curve; `None` if
    /// no query was pushed.
    pub fn report(&self) -> Option<AggregateReport> {
        let hp_curve = self.hp_curve()?;
        let mean = |metric, k| self.mean(metric, k).unwrap_or(f64::NAN);
        let at_k = self
            .ks
            .iter()
            .map(|&k| MeansAtK {
                k,
                mean_precision: mean(Metric::Precision, k),
                mean_average_precision: mean(Metric::AveragePrecision, k),
                mean_hierarchical_precision: mean(Metric::HierarchicalPrecision, k),
                mean_ahp: mean(Metric::Ahp, k),
                mean_ahp_mean: mean(Metric::AhpMean, k),
                mean_ap_report: mean(Metric::ApReport, k),
                mean_p_hit20: self.mean_p_hit20(k),
                mean_ahp_hit20: self.mean_ahp_hit20(k),
            })
            .collect();
        let (n_hit20, n_sim_hit20) = self.hit20_counts();
        Some(AggregateReport {
            n_queries: self.len(),
            at_k,
            map_full: self.map_full(),
            n_full_ap: self.ap_full.len(),
            hp_curve,
            n_hit20,
            n_sim_hit20,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Semantics as _;
    use super::super::stats::SplitMix64;
    use super::*;

    const EPS: f64 = 1e-12;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < EPS
    }

    // hand-made input for a pure-function unit test
    // 3 classes; classes 0 and 1 are siblings (sim 0.5), class 2 is unrelated.
    const SIM3: [f64; 9] = [1.0, 0.5, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0, 1.0];
    // hand-made input for a pure-function unit test
    // db ids 0..6 -> labels; counts: class 0 = 3 (ids 0, 2, 5),
    // class 1 = 2 (ids 1, 4), class 2 = 1 (id 3).
    const LABELS6: [u16; 6] = [0, 1, 0, 2, 1, 0];

    fn evaluator() -> QueryEvaluator {
        QueryEvaluator::new(&LABELS6, &SIM3, 3).unwrap()
    }

    #[test]
    fn golden_report_protocol_full_ranking() {
        let ev = evaluator();
        // query label 0, query stays in D (report / train_db style), full ranking
        let ranking = [1, 0, 3, 2, 4, 5];
        let m = ev.evaluate(0, None, &ranking, &[1, 2, 3, 4, 6, 8]).unwrap();
        // labels along the ranking: 1, 0, 2, 0, 1, 0 -> rel = 0, 1, 0, 1, 0, 1
        // R = |class 0| = 3
        assert_eq!(m.relevant_total, 3);
        let at = |k| *m.at(k).unwrap();
        // P@1 = 0/1, P@2 = 1/2, P@3 = 1/3, P@4 = 2/4, P@6 = 3/6,
        // P@8 = 3/8 (positions 7, 8 missing -> non-relevant)
        assert!(close(at(1).precision, 0.0));
        assert!(close(at(2).precision, 0.5));
        assert!(close(at(3).precision, 1.0 / 3.0));
        assert!(close(at(4).precision, 0.5));
        assert!(close(at(6).precision, 0.5));
        assert!(close(at(8).precision, 3.0 / 8.0));
        // rel_i * P@i at the hits: i=2 -> 1/2, i=4 -> 2/4, i=6 -> 3/6
        // AP@1 = 0 / min(3,1) = 0
        // AP@2 = (1/2) / min(3,2) = 0.25
        // AP@3 = (1/2) / min(3,3) = 1/6
        // AP@4 = (1/2 + 1/2) / 3 = 1/3
        // AP@6 = (1/2 + 1/2 + 1/2) / 3 = 0.5 ; AP@8 identical = 0.5
        assert!(close(at(1).average_precision, 0.0));
        assert!(close(at(2).average_precision, 0.25));
        assert!(close(at(3).average_precision, 1.0 / 6.0));
        assert!(close(at(4).average_precision, 1.0 / 3.0));
        assert!(close(at(6).average_precision, 0.5));
        assert!(close(at(8).average_precision, 0.5));
        // full AP = (1/R) Σ rel_i P@i = 1.5 / 3 = 0.5
        assert!(close(m.ap_full.unwrap(), 0.5));
        // sims to class 0 along the ranking: 0.5, 1, 0, 1, 0.5, 1
        // cumulative gain: 0.5, 1.5, 1.5, 2.5, 3, 4
        // ideal sims over D: 1, 1, 1 (class 0), 0.5, 0.5 (class 1), 0 (class 2)
        // cumulative max_k: 1, 2, 3, 3.5, 4, 4 (and 4 for k > 6)
        // HP@1 = 0.5/1, HP@2 = 1.5/2, HP@3 = 1.5/3, HP@4 = 2.5/3.5,
        // HP@5 = 3/4, HP@6 = 4/4, HP@7 = HP@8 = 4/4
        let hp = [0.5, 0.75, 0.5, 2.5 / 3.5, 0.75, 1.0, 1.0, 1.0];
        assert_eq!(m.hp_curve.len(), 8);
        for (a, b) in m.hp_curve.iter().zip(hp) {
            assert!(close(*a, b), "{a} vs {b}");
        }
        assert!(close(at(4).hierarchical_precision, 5.0 / 7.0));
        // AHP@1 = (HP@1 - (HP@1 + HP@1)/2) / 1 = 0 ; AHP_mean@1 = HP@1 = 0.5
        assert!(close(at(1).ahp, 0.0));
        assert!(close(at(1).ahp_mean, 0.5));
        // AHP@3 = (0.5 + 0.75 + 0.5 - (0.5 + 0.5)/2) / 3 = 1.25/3 = 5/12
        // AHP_mean@3 = 1.75 / 3 = 7/12
        assert!(close(at(3).ahp, 5.0 / 12.0));
        assert!(close(at(3).ahp_mean, 7.0 / 12.0));
        // AHP@2 = (0.5 + 0.75 - (0.5 + 0.75)/2) / 2 = 0.625/2 = 0.3125
        assert!(close(at(2).ahp, 0.3125));
    }

    #[test]
    fn golden_report_definitions() {
        let ev = evaluator();
        // query label 2 (class 2 has one item, id 3; sim(2, .) = 0 except itself)
        let ranking = [1, 0, 3, 2, 4, 5];
        let m = ev.evaluate(2, None, &ranking, &[1, 2, 3, 4, 6]).unwrap();
        let at = |k| *m.at(k).unwrap();
        // labels 1, 0, 2, 0, 1, 0 -> rel = 0, 0, 1, 0, 0, 0; P@i = 0, 0, 1/3, 1/4, 1/5, 1/6
        // AP_report@k = (1/k) Σ rel_i P@i: k = 1, 2 -> 0; k = 3 -> (1/3)/3 = 1/9;
        // k = 4 -> (1/3)/4 = 1/12; k = 6 -> (1/3)/6 = 1/18
        assert!(close(at(2).ap_report, 0.0));
        assert!(close(at(3).ap_report, 1.0 / 9.0));
        assert!(close(at(4).ap_report, 1.0 / 12.0));
        assert!(close(at(6).ap_report, 1.0 / 18.0));
        // P_hit@k: mean of P@i over i <= k from the first hit (rank 3): k = 2 -> 0 (no hit);
        // k = 3 -> 1/3; k = 4 -> (1/3 + 1/4)/2 = 7/24; k = 6 -> (1/3+1/4+1/5+1/6)/4 = 19/80
        assert!(close(at(2).p_hit, 0.0));
        assert!(close(at(3).p_hit, 1.0 / 3.0));
        assert!(close(at(4).p_hit, 7.0 / 24.0));
        assert!(close(at(6).p_hit, 19.0 / 80.0));
        // sims to class 2: 0, 0, 1, 0, 0, 0 -> the same running values, so AHP_hit = P_hit
        assert!(close(at(6).ahp_hit, 19.0 / 80.0));
        assert!(m.hit20 && m.sim_hit20);

        // query label 0: sims 0.5, 1, 0, 1, 0.5, 1; running mean of sims (1/i) Σ s_j:
        // 0.5, 0.75, 0.5, 0.625, 0.6, 4/6, positive from rank 1
        let m = ev.evaluate(0, None, &ranking, &[1, 3, 6]).unwrap();
        let at = |k| *m.at(k).unwrap();
        assert!(close(at(1).ahp_hit, 0.5));
        assert!(close(at(3).ahp_hit, 1.75 / 3.0));
        assert!(close(at(6).ahp_hit, (2.975 + 4.0 / 6.0) / 6.0));
        // rel = 0, 1, 0, 1, 0, 1: first hit at rank 2; P@i = 0, 1/2, 1/3, 1/2, 2/5, 1/2
        // P_hit@1 = 0 (no hit yet), P_hit@3 = (1/2 + 1/3)/2 = 5/12
        assert!(close(at(1).p_hit, 0.0));
        assert!(close(at(3).p_hit, 5.0 / 12.0));
    }

    #[test]
    fn hit20_means_count_only_queries_with_a_hit_in_the_first_20() {
        // hand-made input for a pure-function unit test: 30 db items, class 0 at ids 25..30,
        // class 1 everywhere else; sim(0, 1) = 0
        let labels: Vec<u16> = (0..30).map(|i| u16::from(i < 25)).collect();
        let sim = [1.0, 0.0, 0.0, 1.0];
        let ev = QueryEvaluator::new(&labels, &sim, 2).unwrap();
        let ks = [1, 30];
        let mut agg = MetricsAggregator::new(&ks).unwrap();
        let ranking: Vec<u32> = (0..30).collect();
        // A query of class 1 hits at rank 1 (counted); one of class 0 hits first at rank 26
        // (not counted, although its P_hit@30 is positive).
        let hit = ev.evaluate(1, None, &ranking, &ks).unwrap();
        let late = ev.evaluate(0, None, &ranking, &ks).unwrap();
        assert!(hit.hit20 && hit.sim_hit20);
        assert!(!late.hit20 && !late.sim_hit20);
        assert!(late.at(30).unwrap().p_hit > 0.0);
        agg.push(&hit).unwrap();
        agg.push(&late).unwrap();
        assert_eq!(agg.hit20_counts(), (1, 1));
        // Only the counted query (class 1): hits at ranks 1..25, so P@i = 1 for i <= 25 and
        // 25/i after; P_hit@30 = (25 + 25/26 + ... + 25/30) / 30.
        let expected = (25.0 + (26..=30).map(|i| 25.0 / f64::from(i)).sum::<f64>()) / 30.0;
        assert!(close(agg.mean_p_hit20(30).unwrap(), expected));
        let r = agg.report().unwrap();
        assert_eq!((r.n_hit20, r.n_sim_hit20), (1, 1));
        // sim is 0/1 here, so the hierarchical measure equals the plain one
        assert!(close(r.at_k[1].mean_ahp_hit20.unwrap(), expected));
    }

    #[test]
    fn golden_leave_one_out() {
        let ev = evaluator();
        // query = db item 0 (label 0), removed from its own ranking
        let ranking = [1, 3, 2, 4, 5];
        let m = ev
            .evaluate(
                0,
                Protocol::LeaveOneOut.exclusion(0),
                &ranking,
                &[1, 2, 3, 5],
            )
            .unwrap();
        // R = 3 - 1 (query excluded) = 2
        assert_eq!(m.relevant_total, 2);
        // labels 1, 2, 0, 1, 0 -> rel = 0, 0, 1, 0, 1
        let at = |k| *m.at(k).unwrap();
        // P@3 = 1/3, P@5 = 2/5
        assert!(close(at(3).precision, 1.0 / 3.0));
        assert!(close(at(5).precision, 0.4));
        // AP@3 = (1/3) / min(2, 3) = 1/6 ; AP@5 = (1/3 + 2/5) / 2 = 11/30
        assert!(close(at(3).average_precision, 1.0 / 6.0));
        assert!(close(at(5).average_precision, 11.0 / 30.0));
        // the ranking covers D minus the query -> full AP = 11/30
        assert!(close(m.ap_full.unwrap(), 11.0 / 30.0));
        // sims: 0.5, 0, 1, 0.5, 1 -> cumulative 0.5, 0.5, 1.5, 2, 3
        // ideal without the query: 1, 1, 0.5, 0.5, 0 -> 1, 2, 2.5, 3, 3
        // HP@1 = 0.5, HP@2 = 0.25, HP@3 = 1.5/2.5 = 0.6, HP@5 = 3/3 = 1
        assert!(close(at(1).hierarchical_precision, 0.5));
        assert!(close(at(2).hierarchical_precision, 0.25));
        assert!(close(at(3).hierarchical_precision, 0.6));
        assert!(close(at(5).hierarchical_precision, 1.0));
    }

    #[test]
    fn prefix_ranking_has_no_full_ap() {
        let ev = evaluator();
        let m = ev.evaluate(0, None, &[1, 0], &[2]).unwrap();
        assert_eq!(m.ap_full, None);
        // same first two positions as the golden test: P@2 = 0.5, HP@2 = 0.75
        assert!(close(m.at_k[0].precision, 0.5));
        assert!(close(m.at_k[0].hierarchical_precision, 0.75));
    }

    #[test]
    fn errors() {
        let ev = evaluator();
        assert_eq!(
            ev.evaluate(0, Some(0), &[1, 0], &[1]),
            Err(MetricsError::ExcludedInRanking { id: 0, position: 1 })
        );
        assert_eq!(
            ev.evaluate(0, None, &[1, 1], &[1]),
            Err(MetricsError::DuplicateInRanking { id: 1, position: 1 })
        );
        assert!(matches!(
            ev.evaluate(0, None, &[6], &[1]),
            Err(MetricsError::DbIdOutOfRange { id: 6, .. })
        ));
        assert!(matches!(
            ev.evaluate(0, Some(9), &[], &[1]),
            Err(MetricsError::DbIdOutOfRange { id: 9, .. })
        ));
        assert!(matches!(
            ev.evaluate(3, None, &[], &[1]),
            Err(MetricsError::QueryLabelOutOfRange { .. })
        ));
        assert_eq!(ev.evaluate(0, None, &[0], &[]), Err(MetricsError::EmptyKs));
        assert_eq!(
            ev.evaluate(0, None, &[0], &[1, 0]),
            Err(MetricsError::ZeroK)
        );
        assert!(matches!(
            QueryEvaluator::new(&[0, 3], &SIM3, 3),
            Err(MetricsError::DbLabelOutOfRange { index: 1, .. })
        ));
        assert!(matches!(
            QueryEvaluator::new(&[0], &SIM3[..8], 3),
            Err(MetricsError::SimilarityShape { .. })
        ));
        assert!(matches!(
            QueryEvaluator::new(&[0], &[1.0f32, -0.5, 0.0, 1.0], 2),
            Err(MetricsError::SimilarityValue { row: 0, col: 1, .. })
        ));
        let mut agg = MetricsAggregator::new(&[1, 2]).unwrap();
        let m = ev.evaluate(0, None, &[0], &[2]).unwrap();
        assert!(matches!(agg.push(&m), Err(MetricsError::KsMismatch { .. })));
        assert!(agg.summary(Metric::Precision, 1).is_err());
        assert!(matches!(
            agg.summary(Metric::Precision, 3),
            Err(MetricsError::UnknownK(3))
        ));
        assert!(agg.report().is_none());
    }

    #[test]
    fn zero_similarity_gives_zero_hp() {
        // hand-made input for a pure-function unit test
        // D holds only class 1, which has sim 0 to class 0 -> max_k = 0
        let ev = QueryEvaluator::new(&[1, 1], &[1.0f32, 0.0, 0.0, 1.0], 2).unwrap();
        let m = ev.evaluate(0, None, &[0, 1], &[2]).unwrap();
        assert_eq!(m.relevant_total, 0);
        assert_eq!(m.at_k[0].hierarchical_precision, 0.0);
        assert_eq!(m.at_k[0].average_precision, 0.0);
        assert_eq!(m.ap_full, Some(0.0));
    }

    /// LCS-style similarity of 8 leaves of a complete binary tree of height 3:
    /// sim(u, v) = 1 - height(lcs(u, v)) / 3.
    fn binary_tree_sim() -> Vec<f64> {
        let mut s = vec![0.0; 64];
        for u in 0..8usize {
            for v in 0..8usize {
                // height of the lcs = number of bits needed to tell u and v apart
                let h = (usize::BITS - (u ^ v).leading_zeros()) as f64;
                s[u * 8 + v] = 1.0 - h / 3.0;
            }
        }
        s
    }

    fn shuffle(rng: &mut SplitMix64, v: &mut [u32]) {
        for i in (1..v.len()).rev() {
            let j = rng.next_below(i + 1);
            v.swap(i, j);
        }
    }

    /// sklearn's average_precision_score on a tie-free ranking, brute force:
    /// Σ_n (Recall_n - Recall_{n-1}) Precision_n over every cut-off n.
    fn sklearn_ap(rel: &[bool]) -> f64 {
        let positives = rel.iter().filter(|&&r| r).count();
        if positives == 0 {
            return 0.0;
        }
        let mut ap = 0.0;
        let mut prev_recall = 0.0;
        for n in 1..=rel.len() {
            let tp = rel[..n].iter().filter(|&&r| r).count() as f64;
            let precision = tp / n as f64;
            let recall = tp / positives as f64;
            ap += (recall - prev_recall) * precision;
            prev_recall = recall;
        }
        ap
    }

    #[test]
    fn properties_on_random_rankings() {
        let sim = binary_tree_sim();
        let mut rng = SplitMix64::new(2024);
        for trial in 0..200 {
            let db_len = 1 + rng.next_below(60);
            let labels: Vec<u16> = (0..db_len).map(|_| rng.next_below(8) as u16).collect();
            let ev = QueryEvaluator::new(&labels, &sim, 8).unwrap();
            let ks: Vec<usize> = vec![1, 2, 5, 10, 25, 80];
            let leave_one_out = trial % 2 == 0;
            let query_id = rng.next_below(db_len) as u32;
            let (q, exclude) = if leave_one_out {
                (labels[query_id as usize], Some(query_id))
            } else {
                (rng.next_below(8) as u16, None)
            };
            let mut ranking: Vec<u32> =
                (0..db_len as u32).filter(|&x| Some(x) != exclude).collect();
            shuffle(&mut rng, &mut ranking);

            let count_q = labels.iter().filter(|&&l| l == q).count();
            let m = ev.evaluate(q, exclude, &ranking, &ks).unwrap();
            // leave-one-out removes the query from R
            assert_eq!(m.relevant_total, count_q - usize::from(leave_one_out));

            for at in &m.at_k {
                // P@k <= HP@k holds when 0 <= sim <= 1 and sim(u, u) = 1:
                // Σ sim >= #hits (relevant items contribute 1, others >= 0)
                // and max_k <= k (each term <= 1), so HP@k >= #hits/k = P@k.
                assert!(at.precision <= at.hierarchical_precision + EPS);
                assert!((0.0..=1.0 + EPS).contains(&at.average_precision));
                assert!((0.0..=1.0 + EPS).contains(&at.hierarchical_precision));
            }
            // full AP equals the brute-force sklearn definition
            let rel: Vec<bool> = ranking.iter().map(|&x| labels[x as usize] == q).collect();
            assert!((m.ap_full.unwrap() - sklearn_ap(&rel)).abs() < 1e-12);
            // AP@k with k >= |ranking| equals full AP when R <= k
            let last = m.at(80).unwrap();
            assert!((last.average_precision - m.ap_full.unwrap()).abs() < 1e-12);

            // truncated ranking gives the same @k metrics but no full AP
            let cut = ranking.len().min(10);
            let mt = ev
                .evaluate(q, exclude, &ranking[..cut], &[1, 2, 5, 10])
                .unwrap();
            for at in &mt.at_k {
                assert_eq!(Some(at), m.at(at.k));
            }
            if cut < ranking.len() {
                assert_eq!(mt.ap_full, None);
            }

            // ideal ranking: sorted by decreasing similarity to y_q
            let mut ideal = ranking.clone();
            ideal.sort_by(|&a, &b| {
                let sa = sim[usize::from(q) * 8 + usize::from(labels[a as usize])];
                let sb = sim[usize::from(q) * 8 + usize::from(labels[b as usize])];
                sb.total_cmp(&sa)
            });
            let mi = ev.evaluate(q, exclude, &ideal, &ks).unwrap();
            // max_k is non-decreasing in k; when max_1 = 0 (every item of D has
            // sim 0 to y_q, or D minus the query is empty) HP is 0 by convention.
            let max_gains = ev.ideal_gains(q, exclude, 80).unwrap();
            if max_gains[0] == 0.0 {
                assert!(mi.hp_curve.iter().all(|&hp| hp == 0.0));
                continue;
            }
            for (i, hp) in mi.hp_curve.iter().enumerate() {
                assert!((hp - 1.0).abs() < EPS, "HP@{} = {hp}", i + 1);
            }
            for at in &mi.at_k {
                let k = at.k as f64;
                assert!((at.ahp - (k - 1.0) / k).abs() < EPS);
                assert!((at.ahp_mean - 1.0).abs() < EPS);
            }
        }
    }

    #[test]
    fn aggregator_means_and_curves() {
        let ev = evaluator();
        let ks = [1, 3];
        let mut agg = MetricsAggregator::new(&ks).unwrap();
        let a = ev.evaluate(0, None, &[1, 0, 3, 2, 4, 5], &ks).unwrap();
        let b = ev.evaluate(0, None, &[0, 2, 5], &ks).unwrap();
        agg.push(&a).unwrap();
        let mut other = MetricsAggregator::new(&ks).unwrap();
        other.push(&b).unwrap();
        agg.merge(&other).unwrap();
        assert_eq!(agg.len(), 2);
        // P@1: a = 0, b = 1 -> mean 0.5 ; P@3: a = 1/3, b = 1 -> mean 2/3
        assert!(close(agg.mean(Metric::Precision, 1).unwrap(), 0.5));
        assert!(close(agg.mean(Metric::Precision, 3).unwrap(), 2.0 / 3.0));
        assert_eq!(agg.values(Metric::Precision, 3).unwrap().len(), 2);
        assert!(agg.values(Metric::Precision, 2).is_none());
        // HP curves: a = 0.5, 0.75, 0.5 ; b = 1, 1, 1 -> mean 0.75, 0.875, 0.75
        let curve = agg.hp_curve().unwrap();
        assert_eq!(curve.len(), 3);
        for (c, e) in curve.iter().zip([0.75, 0.875, 0.75]) {
            assert!(close(*c, e));
        }
        // b is a prefix ranking -> not every query has a full AP
        assert_eq!(agg.map_full(), None);
        assert_eq!(agg.ap_full_values(), &[0.5]);
        let s = agg.summary(Metric::HierarchicalPrecision, 1).unwrap();
        assert_eq!(s.n, 2);
        assert!(close(s.median, 0.75));
        let report = agg.report().unwrap();
        assert_eq!(report.n_queries, 2);
        assert_eq!(report.n_full_ap, 1);
        assert!(close(
            report.at_k[1].mean_ahp_mean,
            (7.0 / 12.0 + 1.0) / 2.0
        ));
        assert_eq!(agg.relevant_totals(), &[3, 3]);
        assert_eq!(agg.query_labels(), &[0, 0]);
    }

    #[test]
    fn ten_thousand_queries_aggregate_to_the_hand_counted_mean_precision() {
        // 10,000 queries x K = 250 over a 10,000-item database of 100 classes (seeded random
        // labels and rankings: a unit test of the aggregation, not a reported metric).
        let n_classes = 100usize;
        let mut sim = vec![0.0f32; n_classes * n_classes];
        for u in 0..n_classes {
            for v in 0..n_classes {
                let h = (usize::BITS - (u ^ v).leading_zeros()).min(8) as f32;
                sim[u * n_classes + v] = 1.0 - h / 8.0;
            }
        }
        let mut rng = SplitMix64::new(5);
        let labels: Vec<u16> = (0..10_000)
            .map(|_| rng.next_below(n_classes) as u16)
            .collect();
        let ev = QueryEvaluator::new(&labels, &sim, n_classes).unwrap();
        let ks = [1, 10, 50, 100, 250];
        // Rankings with random repeats removed, so they are valid.
        let rankings: Vec<Vec<u32>> = (0..10_000)
            .map(|_| {
                let mut seen = std::collections::HashSet::new();
                let mut r: Vec<u32> = (0..250).map(|_| rng.next_below(10_000) as u32).collect();
                r.retain(|x| seen.insert(*x));
                r
            })
            .collect();
        let mut agg = MetricsAggregator::new(&ks).unwrap();
        for (qi, r) in rankings.iter().enumerate() {
            let m = ev.evaluate(labels[qi], None, r, &ks).unwrap();
            agg.push(&m).unwrap();
        }
        assert_eq!(agg.len(), 10_000);
        // mP@50 counted by hand: same-label items among the first 50, over 50, averaged.
        let by_hand = rankings
            .iter()
            .enumerate()
            .map(|(qi, r)| {
                let hits = r[..50]
                    .iter()
                    .filter(|&&d| labels[d as usize] == labels[qi]);
                hits.count() as f64 / 50.0
            })
            .sum::<f64>()
            / 10_000.0;
        let mean = agg.mean(Metric::Precision, 50).unwrap();
        assert!((mean - by_hand).abs() < 1e-12, "{mean} vs {by_hand}");
        // About 1 in 100 random items shares the query's class.
        assert!((0.005..0.015).contains(&mean), "{mean}");
    }
}
