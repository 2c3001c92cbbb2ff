//! The packed binary code format shared by the embed stage, which writes codes, and the
//! indices, which read them (Lin et al.: the `h` hash-layer activations thresholded at 0.5).
//!
//! An `h`-bit code is stored in `w = ceil(h / 64)` `u64` words; bit `j` is bit `j % 64` of word
//! `j / 64`, set when activation `j` is `>= 0.5`; the unused high bits of the last word are zero.

/// Number of `u64` words holding a `bits`-bit code.
pub fn words_for(bits: usize) -> usize {
    bits.div_ceil(64)
}

/// Packs one row of activations into `out` (`ceil(h/64)` words, zeroed first): bit j is set
/// when activation j >= 0.5, as bit `j % 64` of word `j / 64`.
pub fn pack_into(acts: &[f32], out: &mut [u64]) {
    out.fill(0);
    for (j, &a) in acts.iter().enumerate() {
        if a >= 0.5 {
            out[j / 64] |= 1u64 << (j % 64);
        }
    }
}

/// Packs activations (`n x h`, row-major) into codes, `ceil(h/64)` words each.
pub fn pack_codes(activations: &[f32], h: usize) -> Vec<u64> {
    let w = words_for(h);
    let mut codes = vec![0u64; activations.len() / h.max(1) * w];
    for (row, out) in activations.chunks_exact(h).zip(codes.chunks_exact_mut(w)) {
        pack_into(row, out);
    }
    codes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_pack_bit_j_into_word_j_div_64() {
        // hand-made input for a pure-function unit test: h = 65, bits 0, 63 and 64 set.
        let mut a = vec![0.1f32; 65];
        a[0] = 0.9;
        a[63] = 0.51;
        a[64] = 1.0;
        a[1] = 0.5; // exactly 0.5 is set (Lin et al.: H = 1 when the activation is >= 0.5)
        assert_eq!(pack_codes(&a, 65), vec![0b11u64 | (1u64 << 63), 1u64]);
        assert_eq!(
            (words_for(0), words_for(1), words_for(64), words_for(65)),
            (0, 1, 1, 2)
        );
    }
}
