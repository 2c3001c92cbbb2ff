//! Runtime CPU-feature detection shared by the indices' dot-product and popcount kernels and
//! the fused EfficientNet-Lite0 inference (no `-C target-cpu` needed: kernels are compiled for
//! several feature levels and one is picked at run time).

use std::sync::OnceLock;

/// The instruction-set level the kernels run at on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// Baseline target features only (SSE2 on x86-64; anything elsewhere).
    Base,
    /// AVX2 + FMA + POPCNT.
    Avx2,
    /// AVX2 level plus AVX-512F/BW/VL and VPOPCNTDQ.
    Avx512,
}

/// Detects the level once per process. `HARNESS_SIMD=base|avx2` caps it (for
/// measurements and for testing the fallback kernels); `HARNESS_SIMD=avx512` keeps this level
/// and turns off only the AMX tiles ([`tiles_allowed`]).
pub(crate) fn level() -> Level {
    caps().0
}

/// Whether kernels above the AVX-512 level (the AMX tiles of `crate::model::amx`) may run:
/// the process runs at the AVX-512 level and `HARNESS_SIMD` caps nothing (`avx512`, `avx2`
/// and `base` all turn the tiles off). Whether the CPU has them is the kernel's to check.
pub(crate) fn tiles_allowed() -> bool {
    caps().1
}

/// The level, and whether tiles may run, as `HARNESS_SIMD` caps them: read once per process.
fn caps() -> (Level, bool) {
    static CAPS: OnceLock<(Level, bool)> = OnceLock::new();
    *CAPS.get_or_init(|| {
        let detected = detect();
        match std::env::var("HARNESS_SIMD").as_deref() {
            Ok("base") => (Level::Base, false),
            Ok("avx2") if detected != Level::Base => (Level::Avx2, false),
            Ok("avx512") => (detected, false),
            _ => (detected, detected == Level::Avx512),
        }
    })
}

/// Whether this CPU can run kernels of `level` (whatever `HARNESS_SIMD` caps [`level`] to).
pub(crate) fn supported(level: Level) -> bool {
    static DETECTED: OnceLock<Level> = OnceLock::new();
    let detected = *DETECTED.get_or_init(detect);
    match level {
        Level::Base => true,
        Level::Avx2 => detected != Level::Base,
        Level::Avx512 => detected == Level::Avx512,
    }
}

/// Every level this CPU supports, lowest first (for testing each kernel against its twin).
#[cfg(test)]
pub(crate) fn supported_levels() -> Vec<Level> {
    [Level::Base, Level::Avx2, Level::Avx512]
        .into_iter()
        .filter(|&l| supported(l))
        .collect()
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    let avx2 = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("popcnt");
    let avx512 = avx2
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vpopcntdq");
    if avx512 {
        Level::Avx512
    } else if avx2 {
        Level::Avx2
    } else {
        Level::Base
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Level {
    Level::Base
}

/// Allocates a zeroed vector whose pages the kernel is asked to back with
/// transparent huge pages (Linux `madvise(MADV_HUGEPAGE)`; advisory, errors
/// ignored). Streaming scans over 4 KiB pages lose hardware prefetching at
/// every page boundary; NumPy (and so FAISS via NumPy) does the same for
/// large arrays.
pub(crate) fn huge_zeroed<T: Copy + Default>(len: usize) -> Vec<T> {
    let v = vec![T::default(); len];
    advise_huge(v.as_ptr().cast(), std::mem::size_of_val(v.as_slice()));
    v
}

#[cfg(target_os = "linux")]
fn advise_huge(ptr: *const u8, bytes: usize) {
    const HUGE: usize = 2 << 20;
    const MADV_HUGEPAGE: i32 = 14;
    unsafe extern "C" {
        fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
    }
    if bytes < 2 * HUGE {
        return;
    }
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + bytes) / HUGE * HUGE;
    if end > start {
        // SAFETY: the range lies inside one live allocation; MADV_HUGEPAGE only
        // changes how the kernel backs the pages, never their contents.
        unsafe {
            madvise(start as *mut std::ffi::c_void, end - start, MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_ptr: *const u8, _bytes: usize) {}
