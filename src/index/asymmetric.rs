//! Asymmetric re-ranking ([`AsymmetricIndex`]): a Hamming shortlist (as in
//! [`super::rerank::HammingRerankIndex`]) re-scored with the query's
//! real-valued hash activations against the candidates' bits.
//!
//! Score (higher is better): `sum_j (2*a_j - 1) * (2*b_j - 1)` where `a_j` in
//! `[0, 1]` is the query's sigmoid output for bit `j` and `b_j` in `{0, 1}` the
//! candidate's bit — the inner product of the query's soft code and the
//! candidate's hard code, both mapped to `[-1, 1]`. It ranks candidates at the
//! same Hamming distance by how confident the query was about the bits that
//! differ. The sum runs over `j = 0..h` in order in `f32` (each term is exact,
//! `+-(2a_j - 1)`), so results are deterministic; ties go to the lower id. The
//! float embeddings are not used.
//!
//! The shortlist uses `Query::code` when given, otherwise the activations
//! thresholded at 0.5.

use std::sync::Arc;

use super::rerank::Shortlist;
use super::scan::{Codes, pack_into, shortlist_into};
use super::{Hit, IndexError, Preamble, Query, Scratch, SearchIndex, preamble};

/// Asymmetric score of activations `acts` against a packed code.
#[inline]
pub fn asymmetric_score(acts: &[f32], code: &[u64]) -> f32 {
    let mut s = 0.0f32;
    for (j, &a) in acts.iter().enumerate() {
        let t = 2.0 * a - 1.0;
        if (code[j / 64] >> (j % 64)) & 1 == 1 {
            s += t;
        } else {
            s -= t;
        }
    }
    s
}

/// Hamming shortlist of `N'` items re-ranked by [`asymmetric_score`].
#[derive(Debug, Clone)]
pub struct AsymmetricIndex {
    pub(crate) codes: Arc<Codes>,
    pub(crate) shortlist: Shortlist,
}

impl AsymmetricIndex {
    /// Wraps the database codes with a shortlist rule (factor must be >= 1).
    pub fn new(codes: Arc<Codes>, shortlist: Shortlist) -> Result<Self, IndexError> {
        shortlist.validate()?;
        Ok(Self { codes, shortlist })
    }

    /// The shortlist rule.
    pub fn shortlist(&self) -> Shortlist {
        self.shortlist
    }
}

impl SearchIndex for AsymmetricIndex {
    fn method(&self) -> super::Method {
        super::Method::Asymmetric
    }

    fn len(&self) -> usize {
        self.codes.len()
    }

    fn bytes_per_item(&self) -> usize {
        self.codes.words() * 8
    }

    fn search(
        &self,
        query: &Query<'_>,
        k: usize,
        scratch: &mut Scratch,
        out: &mut Vec<Hit>,
    ) -> Result<(), IndexError> {
        let Preamble { ex, n_eff, k_eff } = preamble(k, query.exclude, self.codes.len(), out)?;
        let acts = query
            .activations
            .ok_or(IndexError::MissingQueryPart("activations"))?;
        let h = self.codes.bits();
        if acts.len() != h {
            return Err(IndexError::DimensionMismatch {
                expected: h,
                got: acts.len(),
            });
        }
        if let Some(col) = acts.iter().position(|a| !(0.0..=1.0).contains(a)) {
            return Err(IndexError::QueryValue {
                col,
                value: acts[col],
            });
        }
        let mut derived = std::mem::take(&mut scratch.code);
        let q: &[u64] = match query.code {
            Some(c) => {
                self.codes.check_query(Some(c))?;
                c
            }
            None => {
                derived.resize(self.codes.words(), 0);
                pack_into(acts, &mut derived);
                &derived
            }
        };
        if k_eff > 0 {
            shortlist_into(
                &self.codes,
                q,
                ex,
                self.shortlist.size(k).min(n_eff),
                scratch,
            );
            let Scratch { cands, top, .. } = scratch;
            top.reset(k_eff);
            for c in cands.iter() {
                top.push(asymmetric_score(acts, self.codes.code(c.id as usize)), c.id);
            }
            top.drain_sorted(out);
        }
        scratch.code = derived;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::hamming::tests::{oracle as hamming_oracle, random_codes};
    use crate::index::score_order;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn naive_score(acts: &[f32], code: &[u64]) -> f32 {
        let mut s = 0.0f32;
        for (j, &a) in acts.iter().enumerate() {
            let b = ((code[j / 64] >> (j % 64)) & 1) as f32;
            s += (2.0 * a - 1.0) * (2.0 * b - 1.0);
        }
        s
    }

    #[test]
    fn matches_naive_scorer_on_the_shortlist() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut s = Scratch::default();
        let mut out = Vec::new();
        for bits in crate::index::hamming::tests::BITS {
            for n in [1usize, 2, 1000] {
                let codes = Arc::new(random_codes(n, bits, (n / 3).max(1), bits as u64));
                let acts: Vec<f32> = (0..bits).map(|_| rng.random_range(0.0f32..=1.0)).collect();
                let mut qcode = vec![0u64; codes.words()];
                pack_into(&acts, &mut qcode);
                let truth = [
                    hamming_oracle(&codes, &qcode, n, None),
                    hamming_oracle(&codes, &qcode, n, Some(0)),
                ];
                for sl in [
                    Shortlist::Factor(2.0),
                    Shortlist::Factor(1.0),
                    Shortlist::Absolute(n),
                ] {
                    let index = AsymmetricIndex::new(codes.clone(), sl).unwrap();
                    for k in [1, 10, n, n + 1] {
                        for (ei, ex) in [None, Some(0)].into_iter().enumerate() {
                            for with_code in [false, true] {
                                let query = Query {
                                    activations: Some(&acts),
                                    code: with_code.then_some(&qcode[..]),
                                    exclude: ex,
                                    ..Query::default()
                                };
                                index.search(&query, k, &mut s, &mut out).unwrap();
                                let n_eff = n - usize::from(ex.is_some());
                                let short = &truth[ei][..sl.size(k).min(n_eff)];
                                let mut want: Vec<Hit> = short
                                    .iter()
                                    .map(|h| Hit {
                                        id: h.id,
                                        score: naive_score(&acts, codes.code(h.id as usize)),
                                    })
                                    .collect();
                                want.sort_by(score_order);
                                want.truncate(k);
                                assert_eq!(out, want, "bits={bits} n={n} k={k} {sl:?} ex={ex:?}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let codes = Arc::new(random_codes(5, 8, 5, 1));
        assert!(matches!(
            AsymmetricIndex::new(codes.clone(), Shortlist::Factor(0.99)),
            Err(IndexError::ShortlistFactor(_))
        ));
        let index = AsymmetricIndex::new(codes, Shortlist::default()).unwrap();
        let mut s = Scratch::default();
        let mut out = Vec::new();
        fn q(a: &[f32]) -> Query<'_> {
            Query {
                activations: Some(a),
                ..Query::default()
            }
        }
        assert!(matches!(
            index.search(&Query::default(), 1, &mut s, &mut out),
            Err(IndexError::MissingQueryPart("activations"))
        ));
        assert!(matches!(
            index.search(&q(&[0.5; 7]), 1, &mut s, &mut out),
            Err(IndexError::DimensionMismatch {
                expected: 8,
                got: 7
            })
        ));
        let mut a = [0.5f32; 8];
        a[3] = f32::NAN;
        assert!(matches!(
            index.search(&q(&a), 1, &mut s, &mut out),
            Err(IndexError::QueryValue { col: 3, .. })
        ));
        a[3] = 1.5;
        assert!(matches!(
            index.search(&q(&a), 1, &mut s, &mut out),
            Err(IndexError::QueryValue { col: 3, .. })
        ));
        a[3] = 1.0;
        assert!(matches!(
            index.search(&q(&a), 0, &mut s, &mut out),
            Err(IndexError::ZeroK)
        ));
        let bad_code = [0u64, 0];
        let query = Query {
            activations: Some(&a),
            code: Some(&bad_code),
            ..Query::default()
        };
        assert!(matches!(
            index.search(&query, 1, &mut s, &mut out),
            Err(IndexError::CodeLengthMismatch { .. })
        ));
    }
}
