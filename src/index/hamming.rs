//! The linear Hamming-ranking index ([`HammingIndex`], as in Lin et al.'s deep semantic
//! hashing retrieval), a scan of the packed codes of [`super::scan`].

use std::sync::Arc;

use super::scan::{Codes, scan_topk};
use super::{Hit, IndexError, Preamble, Query, Scratch, SearchIndex, preamble};

/// Pure Hamming ranking by a linear scan: lower distance first, ties by
/// lower id; `score` is the distance.
#[derive(Debug, Clone)]
pub struct HammingIndex {
    pub(crate) codes: Arc<Codes>,
}

impl HammingIndex {
    /// Wraps the database codes.
    pub fn new(codes: Arc<Codes>) -> Self {
        Self { codes }
    }

    /// The database codes.
    pub fn codes(&self) -> &Arc<Codes> {
        &self.codes
    }
}

impl SearchIndex for HammingIndex {
    fn method(&self) -> super::Method {
        super::Method::Hamming
    }

    fn len(&self) -> usize {
        self.codes.n
    }

    fn bytes_per_item(&self) -> usize {
        self.codes.words * 8
    }

    fn search(
        &self,
        query: &Query<'_>,
        k: usize,
        scratch: &mut Scratch,
        out: &mut Vec<Hit>,
    ) -> Result<(), IndexError> {
        let Preamble { ex, k_eff, .. } = preamble(k, query.exclude, self.codes.n, out)?;
        self.codes.check_query(query.code)?;
        let q = query.code.unwrap_or_default();
        if k_eff == 0 {
            return Ok(());
        }
        scratch.dtop.reset(k_eff, self.codes.bits);
        scan_topk(&self.codes, q, ex, &mut scratch.dtop, &mut scratch.dists);
        scratch.dtop.drain(false, out);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::index::exact::tests::{oracle as exact_oracle, random_rows};
    use crate::index::exact::{ExactIndex, dot};
    use crate::index::kernels::dist_block;
    use crate::index::mih::MihIndex;
    use crate::index::rerank::{HammingRerankIndex, Shortlist};
    use crate::index::scan::{hamming, last_word_mask, words_for};
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    /// Random codes with `distinct` different values (many ties when small).
    pub(crate) fn random_codes(n: usize, bits: usize, distinct: usize, seed: u64) -> Codes {
        let mut rng = StdRng::seed_from_u64(seed);
        let w = words_for(bits);
        let mask = last_word_mask(bits);
        let pool: Vec<u64> = (0..distinct.max(1) * w)
            .enumerate()
            .map(|(i, _)| {
                let v: u64 = rng.random();
                if i % w == w - 1 { v & mask } else { v }
            })
            .collect();
        let mut data = Vec::with_capacity(n * w);
        for _ in 0..n {
            let c = rng.random_range(0..distinct.max(1));
            data.extend_from_slice(&pool[c * w..(c + 1) * w]);
        }
        Codes::new(n, bits, data).unwrap()
    }

    pub(crate) fn naive_hamming(a: &[u64], b: &[u64], bits: usize) -> u32 {
        (0..bits)
            .filter(|&j| (a[j / 64] >> (j % 64)) & 1 != (b[j / 64] >> (j % 64)) & 1)
            .count() as u32
    }

    /// Full sort of all distances by (distance, id).
    pub(crate) fn oracle(codes: &Codes, q: &[u64], k: usize, exclude: Option<u32>) -> Vec<Hit> {
        let mut all: Vec<(u32, u32)> = (0..codes.len() as u32)
            .filter(|&i| Some(i) != exclude)
            .map(|i| (naive_hamming(codes.code(i as usize), q, codes.bits()), i))
            .collect();
        all.sort();
        all.truncate(k);
        all.into_iter()
            .map(|(d, id)| Hit {
                id,
                score: d as f32,
            })
            .collect()
    }

    pub(crate) const BITS: [usize; 8] = [1, 8, 48, 63, 64, 65, 128, 387];

    #[test]
    fn popcount_matches_bit_by_bit() {
        for bits in BITS {
            let c = random_codes(50, bits, 50, bits as u64);
            for i in 0..50 {
                for j in [0, 7, 49] {
                    assert_eq!(
                        hamming(c.code(i), c.code(j)),
                        naive_hamming(c.code(i), c.code(j), bits)
                    );
                }
            }
            let mut out = vec![0u16; 50];
            let q = c.code(3).to_vec();
            let m = dist_block(c.as_words(), c.words(), &q, &mut out);
            assert_eq!(m, 0);
            for (i, &d) in out.iter().enumerate() {
                assert_eq!(u32::from(d), naive_hamming(c.code(i), &q, bits));
            }
        }
    }

    #[test]
    fn hamming_index_matches_oracle_with_ties() {
        let mut s = Scratch::default();
        let mut out = Vec::new();
        for bits in BITS {
            for (n, distinct) in [
                (1usize, 1usize),
                (2, 2),
                (1000, 7),
                (1000, 1000),
                (1500, 40),
            ] {
                let codes = Arc::new(random_codes(n, bits, distinct, (bits * 31 + n) as u64));
                let index = HammingIndex::new(codes.clone());
                let qs = random_codes(3, bits, 3, 5);
                for qi in 0..4 {
                    let q = if qi < 3 {
                        qs.code(qi)
                    } else {
                        codes.code(n / 2)
                    };
                    for ex in [None, Some((n / 2) as u32), Some(n as u32 + 5)] {
                        let eff = ex.filter(|&e| (e as usize) < n);
                        let all = oracle(&codes, q, n, eff);
                        for k in [1, n, n + 3, 10] {
                            let query = Query {
                                code: Some(q),
                                exclude: ex,
                                ..Query::default()
                            };
                            index.search(&query, k, &mut s, &mut out).unwrap();
                            assert_eq!(
                                out,
                                all[..k.min(all.len())],
                                "bits={bits} n={n} k={k} ex={ex:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rerank_with_full_shortlist_equals_exact() {
        let (n, d) = (600, 20);
        let data = random_rows(n, d, 8);
        let exact = Arc::new(ExactIndex::new(n, d, &data).unwrap());
        let codes = Arc::new(random_codes(n, 48, 30, 9));
        let full =
            HammingRerankIndex::new(codes.clone(), exact.clone(), Shortlist::Absolute(n)).unwrap();
        let def =
            HammingRerankIndex::new(codes.clone(), exact.clone(), Shortlist::default()).unwrap();
        let mut s = Scratch::default();
        let mut out = Vec::new();
        let qe = random_rows(1, d, 10);
        for k in [1, 10, n, n + 1] {
            for ex in [None, Some(3)] {
                let query = Query {
                    embedding: Some(&qe),
                    code: Some(codes.code(3)),
                    exclude: ex,
                    ..Query::default()
                };
                full.search(&query, k, &mut s, &mut out).unwrap();
                assert_eq!(out, exact_oracle(&exact, &qe, k, ex));
                // default shortlist: rerank of the 2k Hamming-nearest
                def.search(&query, k, &mut s, &mut out).unwrap();
                // The same shortlist taken by MIH (fixed m, and the cost model's choice).
                for mih in [
                    MihIndex::with_substrings(codes.clone(), 3).unwrap(),
                    MihIndex::planned(codes.clone(), 2 * k).unwrap(),
                ] {
                    let by_mih = def.clone().with_mih(Arc::new(mih)).unwrap();
                    assert_eq!(by_mih.method(), crate::index::Method::MihRerank);
                    let mut via = Vec::new();
                    by_mih.search(&query, k, &mut s, &mut via).unwrap();
                    assert_eq!(via, out, "k={k} ex={ex:?}");
                }
                let short = oracle(&codes, codes.code(3), (2 * k).min(n), ex);
                let mut qn = vec![0.0; d];
                crate::index::exact::normalise_into(&qe, &mut qn).unwrap();
                let mut want: Vec<Hit> = short
                    .iter()
                    .map(|h| Hit {
                        id: h.id,
                        score: dot(&qn, exact.row(h.id as usize)),
                    })
                    .collect();
                want.sort_by(crate::index::score_order);
                want.truncate(k);
                assert_eq!(out, want);
            }
        }
    }

    #[test]
    fn an_mih_shortlister_must_index_the_same_codes() {
        let (n, d) = (50, 4);
        let exact = Arc::new(ExactIndex::new(n, d, &random_rows(n, d, 1)).unwrap());
        let codes = Arc::new(random_codes(n, 48, 10, 2));
        let other = Arc::new(random_codes(n, 48, 10, 2));
        let r = HammingRerankIndex::new(codes, exact, Shortlist::default()).unwrap();
        let mih = Arc::new(MihIndex::with_substrings(other, 2).unwrap());
        assert!(matches!(r.with_mih(mih), Err(IndexError::Mismatch(_))));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            Codes::new(1, 0, vec![]),
            Err(IndexError::InvalidBits(0))
        ));
        assert!(matches!(
            Codes::new(1, 1025, vec![0; 17]),
            Err(IndexError::InvalidBits(1025))
        ));
        assert!(matches!(Codes::new(0, 8, vec![]), Err(IndexError::Empty)));
        assert!(matches!(
            Codes::new(2, 8, vec![0]),
            Err(IndexError::DataLength { .. })
        ));
        assert!(matches!(
            Codes::new(2, 8, vec![1, 256]),
            Err(IndexError::CodePadding { row: 1, bits: 8 })
        ));
        let codes = Arc::new(random_codes(10, 65, 10, 1));
        let index = HammingIndex::new(codes.clone());
        let mut s = Scratch::default();
        let mut out = Vec::new();
        let q1 = [0u64];
        let q = |c| Query {
            code: Some(c),
            ..Query::default()
        };
        assert!(matches!(
            index.search(&q(&q1), 1, &mut s, &mut out),
            Err(IndexError::CodeLengthMismatch {
                expected: 2,
                got: 1
            })
        ));
        assert!(matches!(
            index.search(&q(&[0, 2]), 1, &mut s, &mut out),
            Err(IndexError::CodePadding { .. })
        ));
        assert!(matches!(
            index.search(&q(&[0, 1]), 0, &mut s, &mut out),
            Err(IndexError::ZeroK)
        ));
        assert!(matches!(
            index.search(&Query::default(), 1, &mut s, &mut out),
            Err(IndexError::MissingQueryPart("code"))
        ));
        let exact = Arc::new(ExactIndex::new(10, 2, &[1.0; 20]).unwrap());
        for c in [0.5, f64::NAN, -1.0, f64::INFINITY] {
            assert!(matches!(
                HammingRerankIndex::new(codes.clone(), exact.clone(), Shortlist::Factor(c)),
                Err(IndexError::ShortlistFactor(_))
            ));
        }
        let exact9 = Arc::new(ExactIndex::new(9, 2, &[1.0; 18]).unwrap());
        assert!(matches!(
            HammingRerankIndex::new(codes.clone(), exact9, Shortlist::default()),
            Err(IndexError::Mismatch(_))
        ));
        let rr = HammingRerankIndex::new(codes, exact, Shortlist::default()).unwrap();
        assert!(matches!(
            rr.search(&q(&[0, 1]), 1, &mut s, &mut out),
            Err(IndexError::MissingQueryPart("embedding"))
        ));
        assert!(matches!(
            Codes::from_activations(1, 2, &[0.1, f32::NAN]),
            Err(IndexError::NonFinite { row: 0, col: 1 })
        ));
        assert_eq!(
            Codes::from_activations(1, 3, &[0.9, 0.1, 0.5])
                .unwrap()
                .code(0),
            &[0b101]
        );
    }
}
