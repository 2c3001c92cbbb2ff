//! The AMX tile kernel of the bfloat16 products ([`super::bf16`]): `tdpbf16ps` multiplies a
//! 16 x 32 tile of bf16 activations by a 32 x 16 tile of bf16 weights into a 16 x 16 tile of
//! `f32` sums, 8,192 multiply-adds in one instruction. On a CPU with AMX-BF16 that is several
//! times the rate of `vdpbf16ps` (which, on such CPUs, does half the multiply-adds per second
//! of the `f32` FMA).
//!
//! The operands are those of the `vdpbf16ps` kernel: the weights in strips of 16 columns of
//! bf16 pairs (each pair row of a strip is 64 bytes, one tile row), here with the pairs padded
//! to a multiple of 16 (one tile's depth); the activations in rows of bf16 padded with zeros
//! to a multiple of 32 values. Each output block of 32 rows by
//! 32 columns is four accumulator tiles that sum the depth's tiles in order from zero (the
//! last rows of a product, fewer than 32, run on tiles configured to their height); the
//! start terms (the bias, plus the residual) are added as the block is stored. (Loading them
//! into the tiles first would read memory the vector unit has just written, which stalls the
//! tile loads.) The sums differ from the `vdpbf16ps` kernel's in the last bits, and stay
//! within the bound of reordered `f32` sums of the plain twin, which the tests check.
//!
//! Stable Rust has no AMX intrinsics, so the tile instructions are inline assembly, and Linux
//! hands a process the tile state only on request (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), which
//! [`available`] makes once.

#[cfg(target_arch = "x86_64")]
use super::tiles::{self, STRIP, Start};
#[cfg(target_arch = "x86_64")]
use std::arch::{asm, x86_64::*};

/// Depth of one tile in bf16 values (16 pairs, 64 bytes a row).
pub const DEPTH: usize = 32;
/// Rows of one output block: two tiles of 16.
pub const BLOCK_ROWS: usize = 32;

/// Whether this process may run the tile instructions: x86-64 Linux with AMX-TILE and
/// AMX-BF16, tiles allowed ([`crate::simd::tiles_allowed`]: the AVX-512 level, not capped by
/// `HARNESS_SIMD`), and the kernel granted the tile state. Asked once per process.
#[must_use]
pub fn available() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        static GRANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *GRANTED.get_or_init(|| {
            // CPUID leaf 7: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE.
            let leaf = __cpuid_count(7, 0);
            let cpu = leaf.edx & (1 << 22) != 0 && leaf.edx & (1 << 24) != 0;
            crate::simd::tiles_allowed() && cpu && request_tile_state()
        })
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// Asks Linux for the AMX tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`); false where the kernel refuses it (before Linux 5.16, or a
/// hypervisor that hides it).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with these arguments only changes the process's permitted XSAVE
    // features; it reads and writes no memory of ours.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

/// The `ldtilecfg` operand: palette 1, all eight tiles 16 rows of 64 bytes.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

/// Palette 1, all eight tiles 16 rows of 64 bytes.
#[cfg(target_arch = "x86_64")]
static CONFIG: TileConfig = TileConfig::with_rows(16, 16);

#[cfg(target_arch = "x86_64")]
impl TileConfig {
    /// Palette 1, rows of 64 bytes: the first row tile's sums and activations (tiles 0, 1
    /// and 4) `upper` rows, the second's (2, 3 and 5) `lower` rows (0: not configured), the
    /// weight tiles (6 and 7) 16 pair rows. A block of fewer rows runs on shorter tiles:
    /// `tdpbf16ps` takes time in proportion to its rows down to about 4 (measured on the
    /// Xeon: 4.6 ns for 16 rows, 2.9 for 8, 2.6 for 4), so the last rows of a product are not
    /// computed as a whole block of 32.
    const fn with_rows(upper: u8, lower: u8) -> Self {
        let bytes = if lower > 0 { 64 } else { 0 };
        Self {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [
                64, 64, bytes, bytes, 64, bytes, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            rows: [
                upper, upper, lower, lower, upper, lower, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        }
    }
}

/// Values of one output block's sums: 32 rows of 32 `f32` (two tiles side by side).
pub const BLOCK_LEN: usize = BLOCK_ROWS * 2 * STRIP;

/// Row stride of a block in bytes.
#[cfg(target_arch = "x86_64")]
const BLOCK_STRIDE: usize = 2 * STRIP * 4;

/// `out = start + a x packed` (then ReLU6 where asked): `a` is `m` rows of `width` bf16 values
/// (`width` a multiple of [`DEPTH`], zero past the product's depth), padded with any values to
/// `m.div_ceil(BLOCK_ROWS) * BLOCK_ROWS` rows; `packed` the weight strips of `n =
/// start.bias.len()` columns, `strip_len` values apart, each `width / 2` pairs. `blocks` is
/// room for two blocks' sums (`2 * BLOCK_LEN` values, any contents).
///
/// # Safety
/// [`available`] is true; the slices have the lengths above; `out` and the skip hold `m * n`
/// values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    a: &[u16],
    m: usize,
    width: usize,
    packed: &[u16],
    strip_len: usize,
    start: Start<'_>,
    out: &mut [f32],
    relu6: bool,
    blocks: &mut [f32],
) {
    let n = start.bias.len();
    let strips = n.div_ceil(STRIP);
    assert!(blocks.len() >= 2 * BLOCK_LEN, "room for two blocks");
    assert!(
        width > 0 && width.is_multiple_of(DEPTH),
        "a whole number of tiles deep"
    );
    debug_assert!(a.len() >= m.div_ceil(BLOCK_ROWS) * BLOCK_ROWS * width);
    debug_assert!(packed.len() >= strips * strip_len && strip_len >= width * STRIP);
    // Two blocks: each block's sums are added up and stored after the next block's products
    // are issued, so the vector loads do not wait on the tile stores just made, and the
    // epilogue runs while the tile unit works.
    let (first, second) = blocks.split_at_mut(BLOCK_LEN);
    let blocks = [first, second];
    // The block whose sums wait to be stored: its buffer, first output, rows and masks.
    let mut pending: Option<(usize, usize, usize, [__mmask16; 2])> = None;
    // The whole blocks of 32 rows, then the rest on tiles of its height.
    let whole = m - m % BLOCK_ROWS;
    for (first, last) in [(0, whole), (whole, m)] {
        if first == last {
            continue;
        }
        let rows = BLOCK_ROWS.min(last - first);
        let config = if rows == BLOCK_ROWS {
            &CONFIG
        } else {
            let upper = rows.min(16);
            &TileConfig::with_rows(upper as u8, (rows - upper) as u8)
        };
        // SAFETY: `available` checked AMX and the tile state; the configuration is 64 bytes.
        unsafe { asm!("ldtilecfg [{}]", in(reg) config as *const TileConfig, options(nostack)) };
        let mut strip = 0;
        while strip < strips {
            let two = strip + 1 < strips;
            let cols = (n - strip * STRIP).min(if two { 2 * STRIP } else { STRIP });
            let masks = tiles::masks::<2>(cols);
            let b = packed[strip * strip_len..].as_ptr();
            for row in (first..last).step_by(BLOCK_ROWS) {
                let at = row * n + strip * STRIP;
                let buffer = pending.map_or(0, |(b, ..)| 1 - b);
                // SAFETY: the caller's bounds: `BLOCK_ROWS` rows of `a` from `row`, the
                // strips' tiles; then the pending block's rows of the skip and output.
                unsafe {
                    let a = a[row * width..].as_ptr();
                    let b1 = if two { b.add(strip_len) } else { b };
                    let c = blocks[buffer].as_mut_ptr();
                    if rows > 16 {
                        products(c, a, width, b, b1);
                    } else {
                        upper_products(c, a, width, b, b1);
                    }
                    if let Some((done, at, rows, masks)) = pending {
                        store_block(blocks[done], &start, at, n, rows, masks, out, relu6);
                    }
                }
                pending = Some((buffer, at, rows, masks));
            }
            strip += if two { 2 } else { 1 };
        }
    }
    if let Some((done, at, rows, masks)) = pending {
        // SAFETY: the caller's bounds, as above.
        unsafe { store_block(blocks[done], &start, at, n, rows, masks, out, relu6) };
    }
    // SAFETY: releases the tile state this function configured.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// Writes the products of two strips (`b` and `b1`) over the whole depth into the block at
/// `c`: tiles 0-3 accumulate from zero (rows 0-15 and 16-31 by each strip), 4-5 hold the two
/// row tiles of `a`, 6-7 the strips' weight tiles. An odd last strip passes itself twice; its
/// second copy's sums are never stored.
///
/// # Safety
/// The tiles are configured ([`matmul`]); `c` has room for [`BLOCK_LEN`] values, `a` holds 32
/// rows of `width` values, `b` and `b1` `width / 2` pair rows each.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn products(c: *mut f32, a: *const u16, width: usize, b: *const u16, b1: *const u16) {
    // SAFETY: the caller's bounds; every tile load and store stays in the block, the 32 rows
    // of `a` and the two strips.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "2:",
            "tileloadd tmm4, [{a} + {lda}*1]",
            "tileloadd tmm5, [{a_low} + {lda}*1]",
            "tileloadd tmm6, [{b0} + {ldb}*1]",
            "tileloadd tmm7, [{b1} + {ldb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {a}, 64",
            "add {a_low}, 64",
            "add {b0}, 1024",
            "add {b1}, 1024",
            "dec {steps}",
            "jnz 2b",
            "tilestored [{c} + {ldc}*1], tmm0",
            "tilestored [{c} + {ldc}*1 + 64], tmm1",
            "tilestored [{c_low} + {ldc}*1], tmm2",
            "tilestored [{c_low} + {ldc}*1 + 64], tmm3",
            c = in(reg) c,
            c_low = in(reg) c.add(16 * 2 * STRIP),
            ldc = in(reg) BLOCK_STRIDE,
            a = inout(reg) a => _,
            a_low = inout(reg) a.add(16 * width) => _,
            lda = in(reg) width * 2,
            b0 = inout(reg) b => _,
            b1 = inout(reg) b1 => _,
            ldb = in(reg) 64usize,
            steps = inout(reg) width / DEPTH => _,
            options(nostack),
        );
    }
}

/// [`products`] for a block of at most 16 rows, on the first row tile only (tiles 0, 1 and 4,
/// configured to the block's rows; 2, 3 and 5 are not used).
///
/// # Safety
/// As for [`products`], with the tiles configured for at most 16 rows and `a` holding them.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn upper_products(c: *mut f32, a: *const u16, width: usize, b: *const u16, b1: *const u16) {
    // SAFETY: the caller's bounds; every tile load and store stays in the block, the rows of
    // `a` and the two strips.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "2:",
            "tileloadd tmm4, [{a} + {lda}*1]",
            "tileloadd tmm6, [{b0} + {ldb}*1]",
            "tileloadd tmm7, [{b1} + {ldb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "add {a}, 64",
            "add {b0}, 1024",
            "add {b1}, 1024",
            "dec {steps}",
            "jnz 2b",
            "tilestored [{c} + {ldc}*1], tmm0",
            "tilestored [{c} + {ldc}*1 + 64], tmm1",
            c = in(reg) c,
            ldc = in(reg) BLOCK_STRIDE,
            a = inout(reg) a => _,
            lda = in(reg) width * 2,
            b0 = inout(reg) b => _,
            b1 = inout(reg) b1 => _,
            ldb = in(reg) 64usize,
            steps = inout(reg) width / DEPTH => _,
            options(nostack),
        );
    }
}

/// Adds the start terms (the bias, plus the skip from `at`) to the block's first `rows` rows
/// and stores them into `out` from `at` (row stride `n`), masked to the valid columns, clamped
/// to `[0, 6]` where asked.
///
/// # Safety
/// AVX-512F; the bias from `at % n`, the skip and `out` from `at` cover `rows` rows of the
/// masked columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn store_block(
    block: &[f32],
    start: &Start<'_>,
    at: usize,
    n: usize,
    rows: usize,
    masks: [__mmask16; 2],
    out: &mut [f32],
    relu6: bool,
) {
    // SAFETY: masked lanes are neither read nor written; the rest is the caller's bounds.
    unsafe {
        let bias: [__m512; 2] = std::array::from_fn(|s| {
            _mm512_maskz_loadu_ps(masks[s], start.bias.as_ptr().add(at % n + s * STRIP))
        });
        let out = out.as_mut_ptr().add(at);
        for r in 0..rows {
            for (s, &mask) in masks.iter().enumerate() {
                let sum = _mm512_loadu_ps(block[r * 2 * STRIP + s * STRIP..].as_ptr());
                let mut v = _mm512_add_ps(sum, bias[s]);
                if let Some(skip) = start.skip {
                    let x = _mm512_maskz_loadu_ps(mask, skip.as_ptr().add(at + r * n + s * STRIP));
                    v = _mm512_add_ps(v, x);
                }
                let v = if relu6 { tiles::relu6(v) } else { v };
                _mm512_mask_storeu_ps(out.add(r * n + s * STRIP), mask, v);
            }
        }
    }
}

/// Multiply-adds of one `tdpbf16ps`: a 16 x 16 tile of sums over a depth of 32.
pub const MACS_PER_INSTRUCTION: f64 = 16.0 * 16.0 * 32.0;

/// The instruction peak: `iterations` rounds of 12 `tdpbf16ps` into six independent
/// accumulator tiles from two operand tiles already loaded, nothing else (`harness bench
/// peak`). Returns a value of the sums so the loop is not dead.
///
/// # Safety
/// [`available`] is true.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn peak_loop(iterations: u64) -> f32 {
    // Small bf16 values (0x3c00 is 2^-7): the sums stay finite.
    let operand = [f32::from_bits(0x3c00_3c00); BLOCK_LEN];
    let mut sums = [0.0f32; BLOCK_LEN];
    // SAFETY: `available` checked AMX and the tile state; every tile load and store stays in
    // `operand` and `sums` (16 rows of 64 bytes at a stride of 128).
    unsafe {
        asm!(
            "ldtilecfg [{config}]",
            "tileloadd tmm6, [{x} + {stride}*1]",
            "tileloadd tmm7, [{x} + {stride}*1 + 64]",
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "tilezero tmm4",
            "tilezero tmm5",
            "test {n}, {n}",
            "jz 3f",
            "2:",
            ".rept 2",
            "tdpbf16ps tmm0, tmm6, tmm7",
            "tdpbf16ps tmm1, tmm6, tmm7",
            "tdpbf16ps tmm2, tmm6, tmm7",
            "tdpbf16ps tmm3, tmm6, tmm7",
            "tdpbf16ps tmm4, tmm6, tmm7",
            "tdpbf16ps tmm5, tmm6, tmm7",
            ".endr",
            "dec {n}",
            "jnz 2b",
            "3:",
            "tilestored [{out} + {stride}*1], tmm0",
            "tilerelease",
            config = in(reg) &raw const CONFIG,
            x = in(reg) operand.as_ptr(),
            out = in(reg) sums.as_mut_ptr(),
            stride = in(reg) BLOCK_STRIDE,
            n = inout(reg) iterations => _,
            options(nostack),
        );
    }
    sums[0]
}
