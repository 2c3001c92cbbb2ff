//! The index fast paths against brute-force oracles on real embeddings and codes: the test
//! prefix embedded by the network trained in the tiny run.

use crate::common::tiny_run;
use harness::index::exact::{ExactIndex, dot};
use harness::index::hamming::{Codes, HammingIndex, HammingRerankIndex, Shortlist, hamming};
use harness::index::mih::MihIndex;
use harness::index::{Hit, Query, Scratch, SearchIndex};
use harness::store::npy;
use std::sync::Arc;

struct Real {
    n: usize,
    d: usize,
    h: usize,
    emb: Vec<f32>,
    codes: Vec<u64>,
}

fn real() -> Real {
    let dir = tiny_run().join("embed");
    let (n, d, emb) =
        npy::read_f32(&std::fs::read(dir.join("embeddings/test.npy")).unwrap()).unwrap();
    let (_, h, _) =
        npy::read_f32(&std::fs::read(dir.join("activations/test.npy")).unwrap()).unwrap();
    let (_, _, codes) = npy::read_u64(&std::fs::read(dir.join("codes/test.npy")).unwrap()).unwrap();
    Real {
        n,
        d,
        h,
        emb,
        codes,
    }
}

fn search(index: &dyn SearchIndex, q: &Query<'_>, k: usize) -> Vec<Hit> {
    let mut out = Vec::new();
    index
        .search(q, k, &mut Scratch::default(), &mut out)
        .unwrap();
    out
}

#[test]
fn exact_matches_a_full_sort_by_cosine() {
    let r = real();
    let index = ExactIndex::new(r.n, r.d, &r.emb).unwrap();
    // The oracle scores with the index's own normalised rows and `dot`, so scores are
    // bit-identical and only the selection differs: a full sort against partial top-k.
    let rows: Vec<&[f32]> = (0..r.n).map(|i| index.row(i)).collect();
    for qi in [0usize, 1, 17, 500, r.n - 1] {
        let q = &r.emb[qi * r.d..(qi + 1) * r.d];
        let qn = index.row(qi);
        let manual: Vec<f32> = {
            let n = q.iter().map(|x| x * x).sum::<f32>().sqrt();
            q.iter().map(|x| x / n).collect()
        };
        assert!(
            manual.iter().zip(qn).all(|(a, b)| (a - b).abs() < 1e-6),
            "rows are L2-normalised"
        );
        for exclude in [None, Some(qi as u32)] {
            let mut oracle: Vec<(u32, f32)> = rows
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i as u32) != exclude)
                .map(|(i, row)| (i as u32, dot(row, qn)))
                .collect();
            oracle.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            for k in [1, 100, r.n + 5] {
                let query = Query {
                    embedding: Some(q),
                    exclude,
                    ..Query::default()
                };
                let got: Vec<u32> = search(&index, &query, k).iter().map(|h| h.id).collect();
                let want: Vec<u32> = oracle.iter().take(k).map(|x| x.0).collect();
                assert_eq!(got, want, "query {qi}, k {k}, exclude {exclude:?}");
            }
        }
    }
}

#[test]
fn hamming_and_mih_match_a_bitwise_scan_and_rerank_with_full_shortlist_is_exact() {
    let r = real();
    let w = r.h.div_ceil(64);
    let codes = Arc::new(Codes::new(r.n, r.h, r.codes.clone()).unwrap());
    let linear = HammingIndex::new(codes.clone());
    let mih = MihIndex::new(codes.clone()).unwrap();
    let exact = Arc::new(ExactIndex::new(r.n, r.d, &r.emb).unwrap());
    let full =
        HammingRerankIndex::new(codes.clone(), exact.clone(), Shortlist::Absolute(r.n)).unwrap();
    for qi in [0usize, 3, 250, 999.min(r.n - 1)] {
        let q = &r.codes[qi * w..(qi + 1) * w];
        // Oracle: bit-by-bit distance, full sort by (distance, id).
        let mut oracle: Vec<(u32, u32)> = (0..r.n)
            .map(|i| {
                let c = &r.codes[i * w..(i + 1) * w];
                let bits = (0..r.h)
                    .filter(|&j| (c[j / 64] ^ q[j / 64]) >> (j % 64) & 1 == 1)
                    .count() as u32;
                assert_eq!(bits, hamming(c, q));
                (bits, i as u32)
            })
            .collect();
        oracle.sort();
        for k in [1, 10, 100] {
            let query = Query {
                code: Some(q),
                ..Query::default()
            };
            let want: Vec<(u32, u32)> = oracle.iter().take(k).map(|&(d, i)| (i, d)).collect();
            let got: Vec<(u32, u32)> = search(&linear, &query, k)
                .iter()
                .map(|h| (h.id, h.score as u32))
                .collect();
            assert_eq!(got, want, "linear, query {qi}, k {k}");
            let got: Vec<(u32, u32)> = search(&mih, &query, k)
                .iter()
                .map(|h| (h.id, h.score as u32))
                .collect();
            assert_eq!(got, want, "mih, query {qi}, k {k}");
            let e = &r.emb[qi * r.d..(qi + 1) * r.d];
            let both = Query {
                code: Some(q),
                embedding: Some(e),
                ..Query::default()
            };
            let exact_q = Query {
                embedding: Some(e),
                ..Query::default()
            };
            assert_eq!(
                search(&full, &both, k),
                search(exact.as_ref(), &exact_q, k),
                "rerank with N' = N"
            );
        }
    }
}
