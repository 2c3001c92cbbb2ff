//! Descriptive statistics over per-query values (metric values, timings in
//! seconds): [`Summary`] with mean, median, p95, extremes, sample standard
//! deviation and a normal-approximation 95% confidence interval, the quantile
//! rule used throughout the harness, a seeded percentile bootstrap for the
//! mean, and the tiny [`SplitMix64`] generator that drives it (no `rand`
//! dependency).
//!
//! Quantile rule: linear interpolation between order statistics ("type 7",
//! the default of NumPy's `percentile` and R's `quantile`). For sorted values
//! x_0 <= ... <= x_{n-1} and probability p in [0, 1], let h = (n - 1) * p; the
//! p-quantile is x_{floor(h)} + (h - floor(h)) * (x_{floor(h)+1} - x_{floor(h)}).

use serde::Serialize;
use thiserror::Error;

/// z-value of the two-sided 95% normal confidence interval.
const Z_95: f64 = 1.96;

/// Errors from the statistics helpers.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    /// No values were given.
    #[error("cannot summarise an empty sample")]
    Empty,
    /// A value was NaN or infinite.
    #[error("value at index {index} is not finite ({value})")]
    NonFinite {
        /// Position of the offending value.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A probability/confidence parameter was outside its range.
    #[error("parameter {name} = {value} is outside {range}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Given value.
        value: f64,
        /// Human-readable allowed range.
        range: &'static str,
    },
}

/// Summary of a sample of n values (e.g. AP@k over n queries, or per-query
/// search times in seconds).
///
/// * `mean`: arithmetic mean.
/// * `median`, `p95`: 0.5- and 0.95-quantiles by linear interpolation (see
///   the module docs).
/// * `std`: sample standard deviation (denominator n - 1; 0 when n = 1).
/// * `ci95_low`, `ci95_high`: normal approximation mean ± 1.96 · std / √n
///   (both equal to the mean when n = 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of values.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// 0.5-quantile (linear interpolation).
    pub median: f64,
    /// 0.95-quantile (linear interpolation).
    pub p95: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Sample standard deviation (n - 1 denominator).
    pub std: f64,
    /// Lower end of the normal-approximation 95% CI of the mean.
    pub ci95_low: f64,
    /// Upper end of the normal-approximation 95% CI of the mean.
    pub ci95_high: f64,
}

/// Returns an error if `values` is empty or contains a non-finite value.
fn check_finite(values: &[f64]) -> Result<(), StatsError> {
    if values.is_empty() {
        return Err(StatsError::Empty);
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(StatsError::NonFinite {
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}

fn check_probability(name: &'static str, p: f64) -> Result<(), StatsError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(StatsError::InvalidParameter {
            name,
            value: p,
            range: "[0, 1]",
        })
    }
}

/// Linear-interpolation quantile of already sorted, finite values; no checks.
fn quantile_sorted_unchecked(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = h - lo as f64;
    sorted[lo] + frac * (sorted[hi] - sorted[lo])
}

/// p-quantile of values that are already sorted ascending, by linear
/// interpolation (h = (n - 1) p; see module docs).
///
/// Errors: empty input, non-finite values, p outside [0, 1]. Sortedness is
/// the caller's responsibility (checked only by `debug_assert!`).
pub fn quantile_sorted(sorted: &[f64], p: f64) -> Result<f64, StatsError> {
    check_finite(sorted)?;
    check_probability("p", p)?;
    debug_assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "input not sorted");
    Ok(quantile_sorted_unchecked(sorted, p))
}

/// p-quantile of unsorted values (sorts a copy), linear interpolation.
pub fn quantile(values: &[f64], p: f64) -> Result<f64, StatsError> {
    check_finite(values)?;
    check_probability("p", p)?;
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(quantile_sorted_unchecked(&sorted, p))
}

/// Arithmetic mean of values (no checks; caller ensures non-empty).
fn mean_unchecked(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Summarises n finite values: mean, median, p95, min, max, sample std and
/// the normal-approximation 95% CI mean ± 1.96 · std / √n.
pub fn summarize(values: &[f64]) -> Result<Summary, StatsError> {
    check_finite(values)?;
    let n = values.len();
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mean = mean_unchecked(values);
    let std = if n > 1 {
        let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        (ss / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    let half_width = Z_95 * std / (n as f64).sqrt();
    Ok(Summary {
        n,
        mean,
        median: quantile_sorted_unchecked(&sorted, 0.5),
        p95: quantile_sorted_unchecked(&sorted, 0.95),
        min: sorted[0],
        max: sorted[n - 1],
        std,
        ci95_low: mean - half_width,
        ci95_high: mean + half_width,
    })
}

/// Two-sided 97.5% quantiles of Student's t for 1..=30 degrees of freedom (standard tables,
/// e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2, to 3 decimals).
const T_975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// Mean, sample standard deviation and Student-t 95% interval of a few values, e.g. one
/// metric over the seeds of a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeedSummary {
    /// Number of values (seeds).
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1 denominator; 0 when n = 1).
    pub sd: f64,
    /// Lower end of the 95% interval of the mean, mean - t(0.975, n-1) · sd / √n.
    pub ci95_low: f64,
    /// Upper end.
    pub ci95_high: f64,
}

impl SeedSummary {
    /// Whether the whole interval lies above `value` (the claim "ours beats `value`").
    pub fn above(&self, value: f64) -> bool {
        self.n > 1 && self.ci95_low > value
    }

    /// Whether the whole interval lies below `value`.
    pub fn below(&self, value: f64) -> bool {
        self.n > 1 && self.ci95_high < value
    }
}

/// The [`SeedSummary`] of `values`: with n = 1 the interval is the value itself (and
/// [`SeedSummary::above`] never holds). Errors on an empty or non-finite sample.
pub fn seed_summary(values: &[f64]) -> Result<SeedSummary, StatsError> {
    let s = summarize(values)?;
    let df = s.n.saturating_sub(1);
    let t = match df {
        0 => 0.0,
        1..=30 => T_975[df - 1],
        _ => Z_95,
    };
    let half = t * s.std / (s.n as f64).sqrt();
    Ok(SeedSummary {
        n: s.n,
        mean: s.mean,
        sd: s.std,
        ci95_low: s.mean - half,
        ci95_high: s.mean + half,
    })
}

/// Seeded percentile-bootstrap confidence interval of the mean.
///
/// Draws `resamples` resamples of size n with replacement (indices from
/// [`SplitMix64`] seeded with `seed`), takes each resample's mean and returns
/// the (1 - confidence)/2 and 1 - (1 - confidence)/2 quantiles of those means
/// (linear interpolation). Deterministic for a given seed.
///
/// Errors: empty/non-finite values, `resamples == 0`, confidence outside (0, 1).
pub fn bootstrap_mean_ci(
    values: &[f64],
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Result<(f64, f64), StatsError> {
    check_finite(values)?;
    if resamples == 0 {
        return Err(StatsError::InvalidParameter {
            name: "resamples",
            value: 0.0,
            range: "[1, inf)",
        });
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(StatsError::InvalidParameter {
            name: "confidence",
            value: confidence,
            range: "(0, 1)",
        });
    }
    let n = values.len();
    let mut rng = SplitMix64::new(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            let sum: f64 = (0..n).map(|_| values[rng.next_below(n)]).sum();
            sum / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let alpha = (1.0 - confidence) / 2.0;
    Ok((
        quantile_sorted_unchecked(&means, alpha),
        quantile_sorted_unchecked(&means, 1.0 - alpha),
    ))
}

/// SplitMix64 pseudo-random generator (Steele, Lea & Flood 2014): a 64-bit
/// state advanced by a Weyl constant and finalised by a mixing function.
/// Small, seedable and good enough for bootstrap resampling and test data.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// Creates a generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform integer in [0, n) by the multiply-high method (bias < n / 2^64).
    /// Returns 0 when n == 0.
    pub fn next_below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform float in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn seed_summary_uses_students_t() {
        // hand-made values for a pure-function unit test: mean 3, sd sqrt(2.5)
        let s = seed_summary(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!((s.n, s.mean), (5, 3.0));
        assert!((s.sd - 2.5f64.sqrt()).abs() < 1e-12);
        // t(0.975, 4) = 2.776: half-width 2.776 * 1.5811 / 2.2361 = 1.9629
        assert!((s.ci95_high - 3.0 - 2.776 * 2.5f64.sqrt() / 5f64.sqrt()).abs() < 1e-12);
        assert!(s.above(0.9) && !s.above(1.1) && s.below(5.1) && !s.below(4.9));
        let one = seed_summary(&[0.5]).unwrap();
        assert_eq!((one.sd, one.ci95_low, one.ci95_high), (0.0, 0.5, 0.5));
        assert!(!one.above(0.0), "one seed never supports a claim");
        assert!(seed_summary(&[]).is_err());
    }

    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn quantile_linear_interpolation() {
        // hand-made input for a pure-function unit test
        let v = [4.0, 1.0, 3.0, 2.0];
        // sorted [1, 2, 3, 4], n - 1 = 3
        // median: h = 1.5 -> 2 + 0.5 * (3 - 2) = 2.5
        assert!(close(quantile(&v, 0.5).unwrap(), 2.5));
        // p95: h = 2.85 -> 3 + 0.85 * (4 - 3) = 3.85
        assert!(close(quantile(&v, 0.95).unwrap(), 3.85));
        // p = 0 and p = 1 are the extremes
        assert!(close(quantile(&v, 0.0).unwrap(), 1.0));
        assert!(close(quantile(&v, 1.0).unwrap(), 4.0));
        // odd n: median is the middle element (h = 1 exactly)
        assert!(close(quantile(&[5.0, 1.0, 3.0], 0.5).unwrap(), 3.0));
        assert!(close(quantile_sorted(&[7.0], 0.95).unwrap(), 7.0));
    }

    #[test]
    fn summary_golden() {
        // hand-made input for a pure-function unit test
        let v = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let s = summarize(&v).unwrap();
        assert_eq!(s.n, 8);
        // mean = 40 / 8 = 5
        assert!(close(s.mean, 5.0));
        // squared deviations 9+1+1+1+0+0+4+16 = 32; sample var = 32/7
        let std = (32.0f64 / 7.0).sqrt();
        assert!(close(s.std, std));
        // median: h = 7 * 0.5 = 3.5 -> 4 + 0.5 * (5 - 4) = 4.5
        assert!(close(s.median, 4.5));
        // p95: h = 7 * 0.95 = 6.65 -> 7 + 0.65 * (9 - 7) = 8.3
        assert!(close(s.p95, 8.3));
        assert!(close(s.min, 2.0));
        assert!(close(s.max, 9.0));
        let hw = 1.96 * std / 8f64.sqrt();
        assert!(close(s.ci95_low, 5.0 - hw));
        assert!(close(s.ci95_high, 5.0 + hw));
    }

    #[test]
    fn summary_single_value_and_errors() {
        let s = summarize(&[0.25]).unwrap();
        assert_eq!(s.std, 0.0);
        assert_eq!((s.ci95_low, s.ci95_high), (0.25, 0.25));
        assert_eq!(summarize(&[]), Err(StatsError::Empty));
        assert!(matches!(
            summarize(&[1.0, f64::NAN]),
            Err(StatsError::NonFinite { index: 1, .. })
        ));
        assert!(quantile(&[1.0], 1.5).is_err());
        assert!(bootstrap_mean_ci(&[1.0], 0, 0.95, 1).is_err());
        assert!(bootstrap_mean_ci(&[1.0], 10, 1.0, 1).is_err());
    }

    #[test]
    fn bootstrap_is_seeded_and_sane() {
        let mut rng = SplitMix64::new(7);
        let v: Vec<f64> = (0..500).map(|_| rng.next_f64()).collect();
        let a = bootstrap_mean_ci(&v, 400, 0.95, 42).unwrap();
        let b = bootstrap_mean_ci(&v, 400, 0.95, 42).unwrap();
        assert_eq!(a, b);
        let s = summarize(&v).unwrap();
        assert!(a.0 < s.mean && s.mean < a.1);
        // bootstrap and normal CIs agree roughly for a uniform sample
        assert!((a.0 - s.ci95_low).abs() < 0.01);
        assert!((a.1 - s.ci95_high).abs() < 0.01);
        // constant sample: degenerate interval
        assert_eq!(
            bootstrap_mean_ci(&[3.0; 10], 50, 0.9, 1).unwrap(),
            (3.0, 3.0)
        );
    }

    #[test]
    fn splitmix_ranges() {
        let mut rng = SplitMix64::new(0);
        // first output of SplitMix64 seeded with 0 (reference value)
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        for _ in 0..1000 {
            assert!(rng.next_below(7) < 7);
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
        assert_eq!(rng.next_below(0), 0);
    }
}
