//! Criterion benchmarks of the retrieval indexes on seeded synthetic data:
//! exact (single query and batch), linear Hamming, Hamming + cosine re-rank
//! and multi-index hashing, at a few sizes. Kept short (10 samples, ~1 s each).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use harness::index::exact::ExactIndex;
use harness::index::hamming::HammingIndex;
use harness::index::mih::MihIndex;
use harness::index::rerank::{HammingRerankIndex, Shortlist};
use harness::index::scan::Codes;
use harness::index::{Query, Scratch, SearchIndex, search_batch};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const D: usize = 100;
const K: usize = 100;

fn embeddings(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n * D).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// 64-bit codes around 100 random centres, each bit flipped with probability 0.1.
fn clustered_codes(n: usize, seed: u64) -> Codes {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<u64> = (0..100).map(|_| rng.random()).collect();
    let data = (0..n)
        .map(|_| {
            let mut c = centres[rng.random_range(0..100)];
            for j in 0..64 {
                if rng.random_bool(0.1) {
                    c ^= 1 << j;
                }
            }
            c
        })
        .collect();
    Codes::new(n, 64, data).expect("valid codes")
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

fn single<I: SearchIndex>(index: &I, queries: &[Query<'_>]) -> usize {
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    let mut total = 0;
    for q in queries {
        index.search(q, K, &mut scratch, &mut out).expect("search");
        total += out.len();
    }
    total
}

fn bench_exact(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new().build().expect("pool");
    let mut g = c.benchmark_group("exact");
    for n in [10_000usize, 200_000] {
        let data = embeddings(n, 1);
        let index = ExactIndex::new(n, D, &data).expect("index");
        let queries: Vec<Query> = (0..64)
            .map(|i| Query {
                embedding: Some(&data[i * D..(i + 1) * D]),
                ..Query::default()
            })
            .collect();
        g.throughput(Throughput::Elements(8));
        g.bench_with_input(BenchmarkId::new("single", n), &n, |b, _| {
            b.iter(|| black_box(single(&index, &queries[..8])))
        });
        g.throughput(Throughput::Elements(queries.len() as u64));
        g.bench_with_input(BenchmarkId::new("batch64", n), &n, |b, _| {
            b.iter(|| black_box(search_batch(&index, &queries, K, &pool).expect("batch")))
        });
    }
    g.finish();
}

fn bench_hamming(c: &mut Criterion) {
    let mut g = c.benchmark_group("hamming");
    for n in [100_000usize, 1_000_000] {
        let codes = Arc::new(clustered_codes(n, 2));
        let qcodes: Vec<u64> = (0..16).map(|i| codes.code(i)[0]).collect();
        let queries: Vec<Query> = qcodes
            .iter()
            .map(|c| Query {
                code: Some(std::slice::from_ref(c)),
                ..Query::default()
            })
            .collect();
        let linear = HammingIndex::new(codes.clone());
        let mih = MihIndex::new(codes.clone()).expect("mih");
        g.throughput(Throughput::Elements(queries.len() as u64));
        g.bench_with_input(BenchmarkId::new("linear", n), &n, |b, _| {
            b.iter(|| black_box(single(&linear, &queries)))
        });
        g.bench_with_input(BenchmarkId::new("mih", n), &n, |b, _| {
            b.iter(|| black_box(single(&mih, &queries)))
        });
        if n == 100_000 {
            let data = embeddings(n, 3);
            let exact = Arc::new(ExactIndex::new(n, D, &data).expect("index"));
            let rerank =
                HammingRerankIndex::new(codes, exact, Shortlist::default()).expect("rerank");
            let rq: Vec<Query> = queries
                .iter()
                .enumerate()
                .map(|(i, q)| Query {
                    embedding: Some(&data[i * D..(i + 1) * D]),
                    ..*q
                })
                .collect();
            g.bench_with_input(BenchmarkId::new("rerank", n), &n, |b, _| {
                b.iter(|| black_box(single(&rerank, &rq)))
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_exact, bench_hamming
}
criterion_main!(benches);
