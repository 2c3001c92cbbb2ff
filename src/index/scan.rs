//! Packed binary codes ([`Codes`]), the Hamming distance ([`hamming`]) and the linear scan
//! that every Hamming index builds on ([`scan_topk`], [`shortlist_into`]).
//!
//! Layout: [`crate::codes`] (an `h`-bit code, 1..=1024 bits, in `w = ceil(h / 64)` `u64`
//! words; bit `j` is bit `j % 64` of word `j / 64`; the unused high bits of the last word must
//! be zero, which [`Codes`] validates).
//!
//! The linear scan computes distances block by block with a popcount kernel
//! chosen at run time (AVX-512 VPOPCNTDQ, POPCNT, or portable); a block whose
//! minimum cannot enter the current top-k is skipped, the rest go through the
//! per-distance bucket collector `topk::DistTopK`, so the database is
//! never sorted.

use super::kernels::dist_block;
use super::storage::Array;
use super::topk::DistTopK;
use super::{IndexError, Scratch, check_len};

/// Longest supported code, in bits.
pub const MAX_BITS: usize = 1024;
/// Items per block in the linear scan.
const BLOCK: usize = 1024;

pub use crate::codes::{pack_into, words_for};

/// Mask of the used bits of the last word of a `bits`-bit code.
pub(crate) fn last_word_mask(bits: usize) -> u64 {
    match bits % 64 {
        0 => u64::MAX,
        r => (1u64 << r) - 1,
    }
}

/// Hamming distance between two packed codes of the same length (XOR and
/// popcount; extra words of the longer one are ignored).
#[inline]
pub fn hamming(a: &[u64], b: &[u64]) -> u32 {
    if a.len() == 1 && b.len() == 1 {
        return (a[0] ^ b[0]).count_ones();
    }
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// Packed binary codes of `n` items, `bits` bits each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codes {
    pub(crate) n: usize,
    pub(crate) bits: usize,
    pub(crate) words: usize,
    /// Owned, or mapped from an index file.
    pub(crate) data: Array<u64>,
}

impl Codes {
    /// Wraps `n` packed codes of `bits` bits (`n * ceil(bits/64)` words,
    /// row-major). Rejects `bits` outside 1..=1024, a wrong length, set
    /// padding bits, `n == 0`.
    pub fn new(n: usize, bits: usize, data: Vec<u64>) -> Result<Self, IndexError> {
        Self::from_array(n, bits, data.into())
    }

    /// [`Codes::new`] over owned or mapped words.
    pub(crate) fn from_array(n: usize, bits: usize, data: Array<u64>) -> Result<Self, IndexError> {
        if bits == 0 || bits > MAX_BITS {
            return Err(IndexError::InvalidBits(bits));
        }
        check_len(n)?;
        let w = words_for(bits);
        let expected = n
            .checked_mul(w)
            .ok_or_else(|| IndexError::InvalidParameter("n * words overflows".into()))?;
        if data.len() != expected {
            return Err(IndexError::DataLength {
                expected,
                got: data.len(),
            });
        }
        let mask = last_word_mask(bits);
        if let Some(row) = data.chunks_exact(w).position(|c| c[w - 1] & !mask != 0) {
            return Err(IndexError::CodePadding { row, bits });
        }
        Ok(Self {
            n,
            bits,
            words: w,
            data,
        })
    }

    /// Binarises `n` rows of `bits` activations (row-major): bit = `a >= 0.5`.
    /// Rejects non-finite activations.
    pub fn from_activations(n: usize, bits: usize, acts: &[f32]) -> Result<Self, IndexError> {
        if bits == 0 || bits > MAX_BITS {
            return Err(IndexError::InvalidBits(bits));
        }
        let expected = n.saturating_mul(bits);
        if acts.len() != expected {
            return Err(IndexError::DataLength {
                expected,
                got: acts.len(),
            });
        }
        let w = words_for(bits);
        let mut data = vec![0u64; n * w];
        for (row, (a, c)) in acts
            .chunks_exact(bits)
            .zip(data.chunks_exact_mut(w))
            .enumerate()
        {
            if let Some(col) = a.iter().position(|v| !v.is_finite()) {
                return Err(IndexError::NonFinite { row, col });
            }
            pack_into(a, c);
        }
        Self::new(n, bits, data)
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always false for a successfully built `Codes`.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Code length in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Words per code.
    pub fn words(&self) -> usize {
        self.words
    }

    /// The packed code of item `i` (panics if `i >= len()`).
    pub fn code(&self, i: usize) -> &[u64] {
        &self.data[i * self.words..(i + 1) * self.words]
    }

    /// True when the words are read from a mapped index file.
    pub(crate) fn is_mapped(&self) -> bool {
        self.data.is_mapped()
    }

    /// All words, row-major.
    pub fn as_words(&self) -> &[u64] {
        &self.data
    }

    /// Checks a query code: `words()` words, zero padding bits.
    pub fn check_query(&self, code: Option<&[u64]>) -> Result<(), IndexError> {
        let c = code.ok_or(IndexError::MissingQueryPart("code"))?;
        if c.len() != self.words {
            return Err(IndexError::CodeLengthMismatch {
                expected: self.words,
                got: c.len(),
            });
        }
        if c[self.words - 1] & !last_word_mask(self.bits) != 0 {
            return Err(IndexError::CodePadding {
                row: 0,
                bits: self.bits,
            });
        }
        Ok(())
    }
}

/// Linear scan: offers every item except `exclude` to `top` (ordered discipline).
pub(crate) fn scan_topk(
    codes: &Codes,
    q: &[u64],
    exclude: Option<u32>,
    top: &mut DistTopK,
    dists: &mut Vec<u16>,
) {
    let w = codes.words;
    dists.resize(BLOCK, 0);
    for (b, chunk) in codes.data.chunks(BLOCK * w).enumerate() {
        let nb = chunk.len() / w;
        let ds = &mut dists[..nb];
        let m = dist_block(chunk, w, q, ds);
        let mut lim = top.ordered_limit();
        if u32::from(m) >= lim {
            continue;
        }
        for (j, &d) in ds.iter().enumerate() {
            let d = u32::from(d);
            if d < lim {
                let id = (b * BLOCK + j) as u32;
                if Some(id) != exclude {
                    top.insert(d, id);
                    lim = top.ordered_limit();
                }
            }
        }
    }
}

/// Takes the Hamming shortlist of `size` items (distance, then id) into `scratch.cands`.
pub(crate) fn shortlist_into(
    codes: &Codes,
    q: &[u64],
    exclude: Option<u32>,
    size: usize,
    scratch: &mut Scratch,
) {
    scratch.cands.clear();
    scratch.dtop.reset(size, codes.bits);
    scan_topk(codes, q, exclude, &mut scratch.dtop, &mut scratch.dists);
    scratch.dtop.drain(false, &mut scratch.cands);
}
