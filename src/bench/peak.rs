//! The arithmetic peak of this machine's cores (`harness bench peak`), the yardstick the
//! feature pass is reported against.
//!
//! Two kinds of rate:
//!
//! - **instruction peak**: a loop of independent multiply-adds with nothing else in it, per
//!   thread, on every thread at once: `vfmadd231ps` on 16 (AVX-512) or 8 (AVX2) `f32` lanes,
//!   and `vdpbf16ps` (two bf16 products into each of 16 `f32` lanes) where the CPU has
//!   AVX512_BF16, with twelve accumulator chains to hide the instructions' latency; and
//!   `tdpbf16ps` (a 16 x 16 tile of sums over a depth of 32) into six accumulator tiles where
//!   the CPU has AMX-BF16.
//! - **sustained matrix product**: a square product `C += A x B` of `n x n` matrices split by
//!   rows over the threads, in `f32` on `gemm` (the engine of burn's CPU backend and of the
//!   fused `f32` feature pass below AVX-512) and, at the AVX-512 level, on
//!   [`crate::model::fp32`]'s packed kernel (the feature pass's there), and in bf16 on
//!   [`crate::model::bf16`]'s kernels: the AMX tiles and `vdpbf16ps` where the CPU has both,
//!   else the one it runs. The yardstick is the faster `f32` product.
//!
//! A FLOP is a multiply or an add: one multiply-add is 2.

use crate::model::bf16::{self, Bf16Scratch, Bf16Weights, CHAINS, Kernel};
use crate::model::fp32::{self, PackedWeights};
use crate::model::tiles;
use crate::simd::{Level, level};
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

/// One measured rate.
#[derive(Debug, Clone, Serialize)]
pub struct PeakRecord {
    /// `fma-f32`, `dpbf16`, `amx-bf16`, `matmul-f32` or `matmul-bf16`.
    pub kind: &'static str,
    /// The instructions: `avx512`, `avx2`, `gemm`, `packed` (the AVX-512 `f32` kernel),
    /// `amx` (AMX tiles), `vdpbf16ps` or `portable`.
    pub path: &'static str,
    /// The matrices' side (matrix products only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// Threads working at once.
    pub threads: usize,
    /// Wall seconds of the timed part (the best of the repetitions).
    pub seconds: f64,
    /// Floating-point operations per second, in units of 10^9.
    pub gflops: f64,
}

/// Instruction-peak rates on `threads` threads (each running `iterations` rounds of
/// [`CHAINS`] independent multiply-adds), the best of `repeats`: one record per kind the CPU
/// runs (`fma-f32` needs AVX2, `dpbf16` AVX512_BF16, `amx-bf16` AMX-BF16).
#[must_use]
pub fn instruction_peaks(threads: usize, iterations: u64, repeats: usize) -> Vec<PeakRecord> {
    let mut records = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let fma = |path, kernel, lanes: f64| {
            time_loop(
                "fma-f32",
                path,
                threads,
                iterations,
                repeats,
                kernel,
                lanes * 2.0,
            )
        };
        match level() {
            // SAFETY (all three): `level` returns these only after detecting their features;
            // `dot_product_instructions` checked AVX512_BF16.
            Level::Avx512 => records.push(fma("avx512", |i| unsafe { bf16::fma_loop(i) }, 16.0)),
            Level::Avx2 => records.push(fma("avx2", |i| unsafe { fma_avx2(i) }, 8.0)),
            Level::Base => {}
        }
        if bf16::dot_product_instructions() {
            let kernel: fn(u64) -> f32 = |i| unsafe { bf16::dot_product_loop(i) };
            records.push(time_loop(
                "dpbf16",
                "vdpbf16ps",
                threads,
                iterations,
                repeats,
                kernel,
                32.0 * 2.0,
            ));
        }
    }
    #[cfg(target_arch = "x86_64")]
    if crate::model::amx::available() {
        // SAFETY: `available` checked AMX and the tile state.
        let kernel: fn(u64) -> f32 = |i| unsafe { crate::model::amx::peak_loop(i) };
        // One tile product is 8,192 multiply-adds over about 16 cycles: a sixteenth of the
        // iterations takes about as long as the loops above.
        records.push(time_loop(
            "amx-bf16",
            "tdpbf16ps",
            threads,
            (iterations / 16).max(1),
            repeats,
            kernel,
            crate::model::amx::MACS_PER_INSTRUCTION * 2.0,
        ));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (threads, iterations, repeats);
    records
}

fn time_loop(
    kind: &'static str,
    path: &'static str,
    threads: usize,
    iterations: u64,
    repeats: usize,
    kernel: fn(u64) -> f32,
    flops_per_instruction: f64,
) -> PeakRecord {
    let seconds = best_of(repeats, || {
        let sum: f32 = (0..threads)
            .into_par_iter()
            .map(|_| kernel(std::hint::black_box(iterations)))
            .sum();
        std::hint::black_box(sum);
    });
    let flops = flops_per_instruction * (CHAINS as u64 * iterations * threads as u64) as f64;
    PeakRecord {
        kind,
        path,
        n: None,
        threads,
        seconds,
        gflops: flops / seconds / 1e9,
    }
}

fn best_of(repeats: usize, mut f: impl FnMut()) -> f64 {
    (0..repeats.max(1))
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Sustained rates of an `n x n` matrix product, `C += A x B` (bf16: `C = A x B`), rows split
/// over `threads` threads, the best of `repeats`: `f32` on `gemm` and, where it runs, on the
/// packed AVX-512 kernel; bf16 on the kernel the bf16 feature pass runs (`vdpbf16ps`, or the
/// portable path).
#[must_use]
pub fn matmul_rates(n: usize, threads: usize, repeats: usize) -> Vec<PeakRecord> {
    // Values do not change the time; these are small and exact in bf16.
    let a: Vec<f32> = (0..n * n).map(|i| (i % 13) as f32 / 8.0 - 0.75).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 / 4.0 - 0.75).collect();
    let rows = n.div_ceil(threads.max(1));
    let flops = 2.0 * (n * n * n) as f64;
    let mut c = vec![0.0f32; n * n];
    let f32_seconds = best_of(repeats, || {
        c.par_chunks_mut(rows * n)
            .zip(a.par_chunks(rows * n))
            .for_each(|(c, a)| crate::model::matmul_acc(a.len() / n, n, n, a, &b, c));
    });
    let zero = vec![0.0f32; n];
    let start = tiles::Start {
        bias: &zero,
        skip: None,
    };
    let packed_seconds = fp32::available().then(|| {
        let packed = PackedWeights::new(&b, n, n);
        best_of(repeats, || {
            c.par_chunks_mut(rows * n)
                .zip(a.par_chunks(rows * n))
                .for_each(|(c, a)| fp32::matmul(a, a.len() / n, &packed, start, c, false));
        })
    });
    // Every bf16 kernel this CPU runs, fastest first.
    let bf16_seconds: Vec<(Kernel, f64)> = [Kernel::Tiles, Kernel::DotProducts, Kernel::Portable]
        .into_iter()
        .filter(|k| k.runs_here())
        .take(2)
        .map(|kernel| {
            let weights = Bf16Weights::with_kernel(&b, n, n, kernel);
            let seconds = best_of(repeats, || {
                c.par_chunks_mut(rows * n)
                    .zip(a.par_chunks(rows * n))
                    .for_each_init(Bf16Scratch::default, |scratch, (c, a)| {
                        bf16::matmul(a, a.len() / n, &weights, start, c, false, scratch);
                    });
            });
            (kernel, seconds)
        })
        .collect();
    std::hint::black_box(&c);
    let record = |kind, path, seconds: f64| PeakRecord {
        kind,
        path,
        n: Some(n),
        threads,
        seconds,
        gflops: flops / seconds / 1e9,
    };
    let mut records = vec![record("matmul-f32", "gemm", f32_seconds)];
    records.extend(packed_seconds.map(|s| record("matmul-f32", "packed", s)));
    records.extend(
        bf16_seconds
            .into_iter()
            .map(|(kernel, s)| record("matmul-bf16", kernel.name(), s)),
    );
    records
}

/// `iterations` rounds of [`CHAINS`] independent 8-lane FMAs.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(iterations: u64) -> f32 {
    use std::arch::x86_64::*;
    let x = _mm256_set1_ps(0.999_999);
    let y = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); CHAINS];
    for _ in 0..iterations {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    let mut lanes = [0.0f32; 8];
    let mut total = 0.0;
    for a in acc {
        // SAFETY: `lanes` holds 8 f32s.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
        total += lanes.iter().sum::<f32>();
    }
    total
}
