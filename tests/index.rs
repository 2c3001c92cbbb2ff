//! The index fast paths against brute-force oracles on real embeddings and codes: the test
//! prefix embedded by the network trained in the tiny run.

use crate::common::tiny_run;
use harness::index::exact::ExactIndex;
use harness::index::hamming::HammingIndex;
use harness::index::mih::MihIndex;
use harness::index::rerank::{HammingRerankIndex, Shortlist};
use harness::index::scan::{Codes, hamming};
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
    // The oracle shares no code with the index: cosines in f64 from the raw embeddings. The
    // index computes in f32, so its scores must agree within 1e-5, and its selection may differ
    // from the f64 order only among items within that tolerance of the k-th score.
    const TOL: f64 = 1e-5;
    let row = |i: usize| &r.emb[i * r.d..(i + 1) * r.d];
    let norm = |v: &[f32]| {
        v.iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt()
    };
    let cosine = |a: &[f32], b: &[f32]| {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        dot / (norm(a) * norm(b))
    };
    for qi in [0usize, 1, 17, 500, r.n - 1] {
        let q = row(qi);
        let cos: Vec<f64> = (0..r.n).map(|i| cosine(q, row(i))).collect();
        for exclude in [None, Some(qi as u32)] {
            let n_eff = r.n - usize::from(exclude.is_some());
            for k in [1, 100, r.n + 5] {
                let query = Query {
                    embedding: Some(q),
                    exclude,
                    ..Query::default()
                };
                let got = search(&index, &query, k);
                let what = format!("query {qi}, k {k}, exclude {exclude:?}");
                assert_eq!(got.len(), k.min(n_eff), "{what}");
                for w in got.windows(2) {
                    let (a, b) = (&w[0], &w[1]);
                    assert!(
                        a.score > b.score || (a.score == b.score && a.id < b.id),
                        "{what}: not in (score desc, id asc) order"
                    );
                }
                let mut taken = vec![false; r.n];
                for h in &got {
                    assert_ne!(Some(h.id), exclude, "{what}");
                    let c = cos[h.id as usize];
                    assert!((f64::from(h.score) - c).abs() < TOL, "{what}: id {}", h.id);
                    taken[h.id as usize] = true;
                }
                let kth = got
                    .iter()
                    .map(|h| cos[h.id as usize])
                    .fold(f64::INFINITY, f64::min);
                for i in (0..r.n).filter(|&i| !taken[i] && Some(i as u32) != exclude) {
                    assert!(cos[i] <= kth + TOL, "{what}: id {i} ({}) missed", cos[i]);
                }
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

#[test]
fn the_bounded_scan_equals_the_exact_index_on_real_embeddings() {
    // Real embeddings are clustered (many near-equal scores within a class), the hard case for
    // bounds; the int8 scan must still give the exact index's ids, order and scores.
    let r = real();
    let exact = ExactIndex::new(r.n, r.d, &r.emb).unwrap();
    let bounded = harness::index::bounded::BoundedIndex::new(Arc::new(exact.clone()));
    for i in 0..r.n {
        let q = &r.emb[i * r.d..(i + 1) * r.d];
        for (k, exclude) in [(1, Some(i as u32)), (100, Some(i as u32)), (250, None)] {
            let query = Query {
                embedding: Some(q),
                exclude,
                ..Query::default()
            };
            let want = search(&exact, &query, k);
            let got = search(&bounded, &query, k);
            let bits = |h: &[Hit]| {
                h.iter()
                    .map(|h| (h.id, h.score.to_bits()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&got), bits(&want), "query {i}, k {k}");
        }
    }
}
