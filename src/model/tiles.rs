//! What the two AVX-512 matrix-product kernels of the frozen network share ([`super::fp32`]
//! and [`super::bf16`]): the walk over the output in tiles of [`ROWS`] rows by one to three
//! strips of [`STRIP`] columns, the start terms (bias, residual) a tile's totals begin from,
//! and the store with its optional ReLU6. The kernels differ only in their inner loop.
//! [`Start`], the terms a product starts from, is also what both take.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// The terms a product starts from: `bias` (`[n]`) on every row, plus `skip` (`[m, n]`, the
/// residual) where given.
#[derive(Debug, Clone, Copy)]
pub struct Start<'a> {
    /// Added to every row.
    pub bias: &'a [f32],
    /// Added element-wise.
    pub skip: Option<&'a [f32]>,
}

impl Start<'_> {
    /// Checks the shapes of a product's terms: the bias `[n]`, the output and the skip
    /// `[m, n]`.
    ///
    /// # Panics
    /// If one of them has another length.
    pub(crate) fn check(&self, m: usize, n: usize, out: &[f32]) {
        assert_eq!(self.bias.len(), n, "bias is not [{n}]");
        assert_eq!(out.len(), m * n, "out is not [{m}, {n}]");
        if let Some(skip) = self.skip {
            assert_eq!(skip.len(), m * n, "skip is not [{m}, {n}]");
        }
    }

    /// Writes the start terms into `out` (`[m, n]`).
    pub(crate) fn write(&self, out: &mut [f32]) {
        let n = self.bias.len();
        match self.skip {
            Some(skip) => {
                for (row, s) in out.chunks_exact_mut(n).zip(skip.chunks_exact(n)) {
                    for ((o, &s), &b) in row.iter_mut().zip(s).zip(self.bias) {
                        *o = s + b;
                    }
                }
            }
            None => {
                for row in out.chunks_exact_mut(n) {
                    row.copy_from_slice(self.bias);
                }
            }
        }
    }
}

/// Output columns per packed strip: one 512-bit vector of `f32` lanes.
pub(crate) const STRIP: usize = 16;
/// Rows of the output a micro-kernel computes at once.
pub(crate) const ROWS: usize = 8;

/// One micro-kernel call's operands, all from their first element: `R` rows of `a` (stride
/// `lda`) over `depth` steps, `S` strips of packed weights (`strip_len` apart), the bias and
/// skip of the tile's columns, and the output (stride `ldc`, `cols` valid columns).
pub(crate) struct Tile<T> {
    pub a: *const T,
    pub lda: usize,
    pub depth: usize,
    pub b: *const T,
    pub strip_len: usize,
    pub bias: *const f32,
    pub skip: Option<*const f32>,
    pub c: *mut f32,
    pub ldc: usize,
    pub cols: usize,
    pub relu6: bool,
}

/// A micro-kernel: `R` rows by `S` strips.
pub(crate) trait MicroKernel {
    /// The element of `a` and of the packed weights.
    type Elem;
    /// The depth (in the kernel's steps) from which tiles span three strips rather than two.
    /// An 8 x 3 tile keeps 24 accumulators and three weight vectors in the 32 registers, 11
    /// loads for 24 multiply-adds (8 x 2: 10 for 16), and runs the deep products faster; on
    /// shallow ones (the first expansions, depth 16 to 40) it measured slower. 6 x 4 tiles
    /// measured slower everywhere.
    const THREE_STRIPS_FROM: usize;
    /// # Safety
    /// The CPU has the kernel's features; the pointers of `t` cover the tile.
    unsafe fn tile<const R: usize, const S: usize>(t: &Tile<Self::Elem>);
}

/// Runs `K` over every tile of `out = start + a x packed`: `a` is `m` rows of `lda` elements,
/// `packed` the strips of `n = start.bias.len()` columns, each `strip_len` long.
///
/// # Safety
/// The CPU has `K`'s features; `a` holds `m * lda` elements, `packed` `n.div_ceil(16)`
/// strips, `out` and the skip `m * n` values.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn for_each_tile<K: MicroKernel>(
    a: &[K::Elem],
    m: usize,
    lda: usize,
    depth: usize,
    packed: &[K::Elem],
    strip_len: usize,
    start: Start<'_>,
    out: &mut [f32],
    relu6: bool,
) {
    let n = start.bias.len();
    let strips = n.div_ceil(STRIP);
    let mut strip = 0;
    while strip < strips {
        let widest = if depth >= K::THREE_STRIPS_FROM { 3 } else { 2 };
        let width = (strips - strip).min(widest);
        let cols = (n - strip * STRIP).min(width * STRIP);
        let b = packed[strip * strip_len..].as_ptr();
        let mut row = 0;
        while row < m {
            let rows = ROWS.min(m - row);
            let at = row * n + strip * STRIP;
            let t = Tile {
                a: a[row * lda..].as_ptr(),
                lda,
                depth,
                b,
                strip_len,
                bias: start.bias[strip * STRIP..].as_ptr(),
                skip: start.skip.map(|s| s[at..].as_ptr()),
                c: out[at..].as_mut_ptr(),
                ldc: n,
                cols,
                relu6,
            };
            // SAFETY: the caller's bounds; `rows` rows of `a`, the skip and `out` from `row`,
            // `cols` columns from the strip.
            unsafe {
                match (width, rows) {
                    (3, 8) => K::tile::<8, 3>(&t),
                    (3, r) => rows_of::<K, 3>(r, &t),
                    (2, 8) => K::tile::<8, 2>(&t),
                    (2, r) => rows_of::<K, 2>(r, &t),
                    (_, 8) => K::tile::<8, 1>(&t),
                    (_, r) => rows_of::<K, 1>(r, &t),
                }
            }
            row += rows;
        }
        strip += width;
    }
}

/// `K`'s tile for fewer than [`ROWS`] rows.
unsafe fn rows_of<K: MicroKernel, const S: usize>(rows: usize, t: &Tile<K::Elem>) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match rows {
            1 => K::tile::<1, S>(t),
            2 => K::tile::<2, S>(t),
            3 => K::tile::<3, S>(t),
            4 => K::tile::<4, S>(t),
            5 => K::tile::<5, S>(t),
            6 => K::tile::<6, S>(t),
            _ => K::tile::<7, S>(t),
        }
    }
}

#[cfg(target_arch = "x86_64")]
/// The lane masks of the tile's `S` strips (`cols` valid columns).
pub(crate) fn masks<const S: usize>(cols: usize) -> [__mmask16; S] {
    std::array::from_fn(|s| lane_mask(cols.saturating_sub(s * STRIP)))
}

#[cfg(target_arch = "x86_64")]
/// The mask of the first `lanes` of 16 lanes (all of them from 16 up).
pub(crate) fn lane_mask(lanes: usize) -> __mmask16 {
    if lanes >= STRIP {
        0xffff
    } else {
        ((1u32 << lanes) - 1) as __mmask16
    }
}

#[cfg(target_arch = "x86_64")]
/// The start terms of an `R` x `S` tile: the bias on every row, plus the skip rows.
///
/// # Safety
/// AVX-512F; the bias and skip of `t` cover the tile's valid columns.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn start_terms<T, const R: usize, const S: usize>(
    t: &Tile<T>,
    masks: [__mmask16; S],
) -> [[__m512; S]; R] {
    // SAFETY: masked lanes are neither read nor written; the rest is the caller's bounds.
    unsafe {
        let bias: [__m512; S] =
            std::array::from_fn(|s| _mm512_maskz_loadu_ps(masks[s], t.bias.add(s * STRIP)));
        let mut total = [bias; R];
        if let Some(skip) = t.skip {
            for (r, total) in total.iter_mut().enumerate() {
                for (s, v) in total.iter_mut().enumerate() {
                    let x = _mm512_maskz_loadu_ps(masks[s], skip.add(r * t.ldc + s * STRIP));
                    *v = _mm512_add_ps(*v, x);
                }
            }
        }
        total
    }
}

#[cfg(target_arch = "x86_64")]
/// Stores an `R` x `S` tile's totals, clamped to `[0, 6]` where the tile asks for ReLU6
/// (`max(x, 0)` then `min(x, 6)`: -0 and NaN become 0, as the comparisons of the portable
/// path do).
///
/// # Safety
/// AVX-512F; the output of `t` covers the tile's valid columns.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn store<T, const R: usize, const S: usize>(
    t: &Tile<T>,
    masks: [__mmask16; S],
    total: &[[__m512; S]; R],
) {
    for (r, total) in total.iter().enumerate() {
        for (s, &v) in total.iter().enumerate() {
            let v = if t.relu6 { relu6(v) } else { v };
            // SAFETY: masked lanes are not written; the rest is the caller's bounds.
            unsafe { _mm512_mask_storeu_ps(t.c.add(r * t.ldc + s * STRIP), masks[s], v) };
        }
    }
}

/// ReLU6 on 16 lanes as the portable path's comparisons: `max(x, 0)` (0 for NaN and -0), then
/// `min(x, 6)`. Shared by every AVX-512 kernel of the frozen network.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn relu6(v: __m512) -> __m512 {
    _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(6.0))
}
