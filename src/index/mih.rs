//! Multi-index hashing ([`MihIndex`]): exact k-nearest-neighbour search in
//! Hamming space after Norouzi, Punjani & Fleet, "Fast Exact Search in
//! Hamming Space with Multi-Index Hashing" (CVPR 2012 / TPAMI 2014).
//!
//! # Structure
//! Each `h`-bit code is cut into `m` disjoint substrings of consecutive bits
//! (lengths `ceil(h/m)` for the first `h % m` substrings and `floor(h/m)` for
//! the rest). Table `i` maps the value of substring `i` to the ids of the items
//! having it, in CSR layout (`offsets` + `ids`): a direct-address offsets array
//! when `2^len` is small (at most `8 * max(n, 8192)` entries), else sorted
//! unique keys searched by binary search. When it costs at most 8 extra words
//! per item (`m * ceil(h/64) <= 8`, e.g. 64-bit codes with `m <= 8`), each
//! table also stores the items' codes in bucket order, so verifying a bucket
//! reads contiguous memory instead of one cache miss per candidate (about 6x
//! faster at 10M items; costs `8 * m * ceil(h/64)` bytes per item).
//!
//! # Search
//! For radius `r = 0, 1, 2, ...` and table `i = 0..m`, every key at exactly
//! Hamming distance `r` from the query's substring `i` is probed and each
//! candidate is verified with its full distance (the sum of its `m` substring
//! distances). An item is processed only where it is first reached, i.e. at
//! `(r, i) = (min_j d_j, first j attaining it)`; later hits are recognised from
//! the substring distances and skipped, so no "seen" set is needed.
//!
//! After table `i` at radius `r`, an unreached item has `d_j >= r + 1` for
//! `j <= i` and `d_j >= r` for `j > i`, hence full distance `>= m*r + i + 1`
//! (pigeonhole; this holds for uneven substring lengths too, as it only sums
//! substring distances). So every item with distance `<= m*r + i` has been
//! reached, and the search stops as soon as the k-th best distance found is
//! `<= m*r + i` — at that point all items tied at the k-th distance are also
//! known, so taking the lowest ids among them gives exactly the linear
//! scan's answer — or when every item has been reached.
//!
//! The search counts its work in linear-scan item equivalents (a key probe
//! counts 512, a verified candidate 4, or 32 when its code is fetched by id).
//! If finishing the next radius's probes would push the total past `N` (long
//! substrings, far neighbours as with uniformly random codes, or `k` close to
//! `N`), it finishes with a linear scan instead, so the worst case stays
//! within about 2x of [`super::hamming::HammingIndex`]; results are identical
//! either way.
//!
//! # Choice of `m`
//! [`MihIndex::auto_substrings`]: substrings of about `log2 N` bits, as the
//! paper recommends: `m = round(h / max(log2 N, 1))`, clamped to
//! `[ceil(h / 64), h]` (a substring key must fit one `u64`). Override with
//! [`MihIndex::with_substrings`].

use std::sync::Arc;

use super::hamming::{Codes, scan_topk, words_for};
use super::{Hit, IndexError, Query, Scratch, SearchIndex, effective_exclude};
use crate::simd::{Level, level};

/// Cost of probing one key, in linear-scan item equivalents (a probe is a
/// cache miss or two; the popcount scan streams an item in well under 1 ns).
const PROBE_COST: f64 = 512.0;
/// Cost of verifying one candidate with co-located codes (streamed).
const CAND_COST: f64 = 4.0;
/// Cost of verifying one candidate whose code must be fetched by id.
const CAND_COST_SCATTERED: f64 = 32.0;

/// Co-locate codes in the tables when that costs at most this many extra
/// `u64` words per item.
const COLOCATE_MAX_WORDS: usize = 8;

/// One substring: `len` bits starting at bit `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sub {
    start: usize,
    len: usize,
}

impl Sub {
    #[inline(always)]
    fn mask(&self) -> u64 {
        if self.len >= 64 {
            u64::MAX
        } else {
            (1u64 << self.len) - 1
        }
    }

    /// Extracts this substring of a packed code (or of an XOR of two codes).
    #[inline(always)]
    fn extract(&self, code: &[u64]) -> u64 {
        let (w, off) = (self.start / 64, self.start % 64);
        let mut v = code[w] >> off;
        if off != 0 && off + self.len > 64 {
            v |= code[w + 1] << (64 - off);
        }
        v & self.mask()
    }
}

/// One hash table in CSR layout: the items whose substring has a given key
/// are `ids[r]` (and, when co-located, `codes[r * w..]`) for the range `r` of
/// that key.
#[derive(Debug, Clone)]
struct Table {
    /// Direct addressing (`offsets` has `2^len + 1` entries) or sorted `keys`.
    direct: bool,
    /// Sorted unique keys (sorted layout only).
    keys: Vec<u64>,
    offsets: Vec<u32>,
    /// Item ids in bucket order (ascending within a bucket).
    ids: Vec<u32>,
    /// The items' codes in bucket order, or empty when not co-located.
    codes: Vec<u64>,
}

impl Table {
    fn build(codes: &Codes, sub: Sub, colocate: bool) -> Table {
        let n = codes.len();
        let (direct, keys, offsets, ids) =
            if sub.len <= 32 && (1usize << sub.len) <= 8 * n.max(8192) {
                let size = 1usize << sub.len;
                let mut offsets = vec![0u32; size + 1];
                for i in 0..n {
                    offsets[sub.extract(codes.code(i)) as usize + 1] += 1;
                }
                for j in 0..size {
                    offsets[j + 1] += offsets[j];
                }
                let mut cursor = offsets[..size].to_vec();
                let mut ids = vec![0u32; n];
                for i in 0..n {
                    let key = sub.extract(codes.code(i)) as usize;
                    ids[cursor[key] as usize] = i as u32;
                    cursor[key] += 1;
                }
                (true, Vec::new(), offsets, ids)
            } else {
                let mut pairs: Vec<(u64, u32)> = (0..n)
                    .map(|i| (sub.extract(codes.code(i)), i as u32))
                    .collect();
                pairs.sort_unstable();
                let mut keys = Vec::new();
                let mut offsets = Vec::new();
                for (p, &(key, _)) in pairs.iter().enumerate() {
                    if keys.last() != Some(&key) {
                        keys.push(key);
                        offsets.push(p as u32);
                    }
                }
                offsets.push(n as u32);
                (
                    false,
                    keys,
                    offsets,
                    pairs.into_iter().map(|(_, id)| id).collect(),
                )
            };
        let table_codes = if colocate {
            let mut c = Vec::with_capacity(n * codes.words());
            for &id in &ids {
                c.extend_from_slice(codes.code(id as usize));
            }
            c
        } else {
            Vec::new()
        };
        Table {
            direct,
            keys,
            offsets,
            ids,
            codes: table_codes,
        }
    }

    /// Positions (into `ids`) of the bucket of `key`.
    #[inline(always)]
    fn bucket(&self, key: u64) -> std::ops::Range<usize> {
        if self.direct {
            let k = key as usize;
            self.offsets[k] as usize..self.offsets[k + 1] as usize
        } else {
            match self.keys.binary_search(&key) {
                Ok(p) => self.offsets[p] as usize..self.offsets[p + 1] as usize,
                Err(_) => 0..0,
            }
        }
    }

    fn bytes(&self) -> usize {
        8 * (self.keys.len() + self.codes.len()) + 4 * (self.offsets.len() + self.ids.len())
    }
}

/// Iterates over all `len`-bit masks with exactly `r` bits set (Gosper's hack).
struct Masks {
    v: u128,
    limit: u128,
}

impl Masks {
    fn new(len: usize, r: usize) -> Self {
        if r > len {
            return Self { v: 1, limit: 0 };
        }
        Self {
            v: (1u128 << r) - 1,
            limit: 1u128 << len,
        }
    }
}

impl Iterator for Masks {
    type Item = u64;

    #[inline(always)]
    fn next(&mut self) -> Option<u64> {
        if self.v >= self.limit {
            return None;
        }
        let cur = self.v;
        if cur == 0 {
            self.v = self.limit; // r == 0: the only mask is 0
        } else {
            let c = cur & cur.wrapping_neg();
            let rr = cur + c;
            self.v = (((rr ^ cur) >> 2) >> c.trailing_zeros()) | rr;
        }
        Some(cur as u64)
    }
}

/// Exact Hamming k-NN by multi-index hashing; same results (ids, distances,
/// tie order) as [`super::hamming::HammingIndex`].
#[derive(Debug, Clone)]
pub struct MihIndex {
    pub(crate) codes: Arc<Codes>,
    subs: Vec<Sub>,
    tables: Vec<Table>,
    /// Work budget (in linear-scan item equivalents) before switching to a
    /// linear scan; `n` by default.
    budget: f64,
}

/// `C(n, r)` as a float (saturating at very large values).
fn binomial(n: usize, r: usize) -> f64 {
    if r > n {
        return 0.0;
    }
    let r = r.min(n - r);
    (0..r).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

impl MihIndex {
    /// The automatic number of substrings for `n` items of `bits` bits
    /// (see the module docs).
    pub fn auto_substrings(n: usize, bits: usize) -> usize {
        let s = (n.max(1) as f64).log2().max(1.0);
        let m = (bits as f64 / s).round() as usize;
        m.clamp(words_for(bits).max(1), bits.max(1))
    }

    /// Builds the tables with the automatic number of substrings.
    pub fn new(codes: Arc<Codes>) -> Result<Self, IndexError> {
        let m = Self::auto_substrings(codes.len(), codes.bits());
        Self::with_substrings(codes, m)
    }

    /// Builds the tables with `m` substrings (`ceil(bits/64) <= m <= bits`).
    pub fn with_substrings(codes: Arc<Codes>, m: usize) -> Result<Self, IndexError> {
        let h = codes.bits();
        if m == 0 || m > h || h.div_ceil(m) > 64 {
            return Err(IndexError::InvalidParameter(format!(
                "MIH needs 1..={h} substrings of at most 64 bits for {h}-bit codes, got m = {m}"
            )));
        }
        let (q, r) = (h / m, h % m);
        let mut subs = Vec::with_capacity(m);
        let mut start = 0;
        for i in 0..m {
            let len = q + usize::from(i < r);
            subs.push(Sub { start, len });
            start += len;
        }
        let colocate = m * codes.words() <= COLOCATE_MAX_WORDS;
        let tables = subs
            .iter()
            .map(|&s| Table::build(&codes, s, colocate))
            .collect();
        let budget = codes.len() as f64;
        Ok(Self {
            codes,
            subs,
            tables,
            budget,
        })
    }

    /// Number of substrings (hash tables).
    pub fn substrings(&self) -> usize {
        self.subs.len()
    }

    /// Core search; `q` is a validated query code.
    #[inline(always)]
    fn search_impl(
        &self,
        q: &[u64],
        k_eff: usize,
        ex: Option<u32>,
        n_eff: usize,
        scratch: &mut Scratch,
        out: &mut Vec<Hit>,
    ) {
        let m = self.subs.len();
        let w = self.codes.words();
        let top = &mut scratch.dtop;
        top.reset(k_eff, self.codes.bits());
        let ranges = &mut scratch.ranges;
        let qkeys = &mut scratch.keys;
        qkeys.clear();
        qkeys.extend(self.subs.iter().map(|s| s.extract(q)));
        let max_len = self.subs.iter().map(|s| s.len).max().unwrap_or(0);
        let mut xor = [0u64; 16];
        let colocated = self.tables.first().is_some_and(|t| !t.codes.is_empty());
        let cand_cost = if colocated {
            CAND_COST
        } else {
            CAND_COST_SCATTERED
        };
        let mut spent = 0.0f64;
        let mut found = 0usize;
        'radius: for r in 0..=max_len {
            let probes: f64 = self.subs.iter().map(|s| binomial(s.len, r)).sum();
            if r > 0 && spent + probes * PROBE_COST > self.budget {
                // Enumerating this radius would cost more than scanning.
                top.reset(k_eff, self.codes.bits());
                scan_topk(&self.codes, q, ex, top, &mut scratch.dists);
                top.drain(false, out);
                return;
            }
            for (i, (sub, table)) in self.subs.iter().zip(&self.tables).enumerate() {
                if r <= sub.len {
                    let qk = qkeys[i];
                    spent += binomial(sub.len, r) * PROBE_COST;
                    // Look all buckets up first: independent loads overlap.
                    ranges.clear();
                    for mask in Masks::new(sub.len, r) {
                        let b = table.bucket(qk ^ mask);
                        if !b.is_empty() {
                            ranges.push((b.start as u32, b.end as u32));
                        }
                    }
                    for &(start, end) in ranges.iter() {
                        spent += (end - start) as f64 * cand_cost;
                        for pos in start as usize..end as usize {
                            let id = table.ids[pos];
                            if Some(id) == ex {
                                continue;
                            }
                            let c = if colocated {
                                &table.codes[pos * w..(pos + 1) * w]
                            } else {
                                self.codes.code(id as usize)
                            };
                            for t in 0..w {
                                xor[t] = c[t] ^ q[t];
                            }
                            // Process only at the first (radius, table) reaching it.
                            let mut total = 0u32;
                            let mut first_here = true;
                            for (j, s) in self.subs.iter().enumerate() {
                                let dj = s.extract(&xor[..w]).count_ones() as usize;
                                if (j < i && dj <= r) || (j > i && dj < r) {
                                    first_here = false;
                                    break;
                                }
                                total += dj as u32;
                            }
                            if !first_here {
                                continue;
                            }
                            found += 1;
                            if total <= top.unordered_limit() {
                                top.insert(total, id);
                            }
                        }
                    }
                }
                if found == n_eff || top.complete_within(m * r + i) {
                    break 'radius;
                }
            }
        }
        top.drain(true, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    fn search_popcnt(
        &self,
        q: &[u64],
        k_eff: usize,
        ex: Option<u32>,
        n_eff: usize,
        scratch: &mut Scratch,
        out: &mut Vec<Hit>,
    ) {
        self.search_impl(q, k_eff, ex, n_eff, scratch, out);
    }
}

impl SearchIndex for MihIndex {
    fn name(&self) -> &'static str {
        "mih"
    }

    fn len(&self) -> usize {
        self.codes.len()
    }

    fn bytes_per_item(&self) -> usize {
        let tables: usize = self.tables.iter().map(Table::bytes).sum();
        self.codes.words() * 8 + tables.div_ceil(self.codes.len())
    }

    fn search(
        &self,
        query: &Query<'_>,
        k: usize,
        scratch: &mut Scratch,
        out: &mut Vec<Hit>,
    ) -> Result<(), IndexError> {
        out.clear();
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        self.codes.check_query(query.code)?;
        let q = query.code.unwrap_or_default();
        let n = self.codes.len();
        let ex = effective_exclude(query.exclude, n);
        let n_eff = n - usize::from(ex.is_some());
        let k_eff = k.min(n_eff);
        if k_eff == 0 {
            return Ok(());
        }
        match level() {
            Level::Base => self.search_impl(q, k_eff, ex, n_eff, scratch, out),
            // SAFETY: `level()` returned Avx2 or Avx512, both of which include POPCNT.
            #[cfg(target_arch = "x86_64")]
            _ => unsafe { self.search_popcnt(q, k_eff, ex, n_eff, scratch, out) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => self.search_impl(q, k_eff, ex, n_eff, scratch, out),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::hamming::tests::{BITS, oracle, random_codes};

    #[test]
    fn masks_enumerate_combinations() {
        assert_eq!(Masks::new(4, 0).collect::<Vec<_>>(), vec![0]);
        assert_eq!(Masks::new(4, 2).count(), 6);
        assert_eq!(Masks::new(3, 3).collect::<Vec<_>>(), vec![7]);
        assert_eq!(Masks::new(3, 4).count(), 0);
        assert_eq!(Masks::new(64, 64).collect::<Vec<_>>(), vec![u64::MAX]);
        assert_eq!(Masks::new(64, 1).count(), 64);
        assert!(Masks::new(10, 3).all(|m| m.count_ones() == 3 && m < 1024));
    }

    #[test]
    fn substring_extraction_covers_all_bits() {
        let codes = Arc::new(random_codes(3, 387, 3, 1));
        for m in [7, 8, 13, 387] {
            let mih = MihIndex::with_substrings(codes.clone(), m).unwrap();
            let c = codes.code(1);
            let total: u32 = mih.subs.iter().map(|s| s.extract(c).count_ones()).sum();
            assert_eq!(total, c.iter().map(|w| w.count_ones()).sum::<u32>());
        }
    }

    #[test]
    fn mih_equals_linear_scan_with_ties() {
        let mut s = Scratch::default();
        let mut out = Vec::new();
        for bits in BITS {
            for (n, distinct) in [(1usize, 1usize), (2, 2), (1000, 5), (1000, 1000)] {
                let codes = Arc::new(random_codes(n, bits, distinct, (bits * 7 + n) as u64));
                let auto = MihIndex::auto_substrings(n, bits);
                let qs = random_codes(2, bits, 2, 77);
                let mut truth = Vec::new();
                for q in [qs.code(0), codes.code(n - 1)] {
                    for ex in [None, Some((n - 1) as u32)] {
                        truth.push(oracle(&codes, q, n, ex));
                    }
                }
                let mut ms = vec![auto, words_for(bits)];
                if bits >= 3 {
                    ms.push(3.max(words_for(bits)));
                }
                for (m, pure) in ms.into_iter().map(|m| (m, false)).chain([(auto, true)]) {
                    let mut mih = MihIndex::with_substrings(codes.clone(), m).unwrap();
                    if pure {
                        mih.budget = f64::INFINITY;
                    }
                    for (qi, q) in [qs.code(0), codes.code(n - 1)].into_iter().enumerate() {
                        for (ei, ex) in [None, Some((n - 1) as u32)].into_iter().enumerate() {
                            let all = &truth[qi * 2 + ei];
                            for k in [1, 10, n, n + 2] {
                                let query = Query {
                                    code: Some(q),
                                    exclude: ex,
                                    ..Query::default()
                                };
                                mih.search(&query, k, &mut s, &mut out).unwrap();
                                assert_eq!(
                                    out,
                                    all[..k.min(all.len())],
                                    "bits={bits} n={n} m={m} pure={pure} k={k} ex={ex:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn clustered_codes_match_with_sorted_tables() {
        // 48-bit codes in 1 substring force the sorted (binary search) table.
        let codes = Arc::new(random_codes(300, 48, 20, 3));
        let mih = MihIndex::with_substrings(codes.clone(), 1).unwrap();
        assert!(!mih.tables[0].direct);
        let mut s = Scratch::default();
        let mut out = Vec::new();
        let query = Query {
            code: Some(codes.code(5)),
            ..Query::default()
        };
        mih.search(&query, 40, &mut s, &mut out).unwrap();
        assert_eq!(out, oracle(&codes, codes.code(5), 40, None));
    }

    #[test]
    fn bad_parameters_are_errors() {
        let codes = Arc::new(random_codes(10, 130, 10, 1));
        for m in [0, 2, 131] {
            assert!(matches!(
                MihIndex::with_substrings(codes.clone(), m),
                Err(IndexError::InvalidParameter(_))
            ));
        }
        let mih = MihIndex::new(codes).unwrap();
        let mut out = Vec::new();
        let q = [0u64; 2];
        let query = Query {
            code: Some(&q),
            ..Query::default()
        };
        assert!(matches!(
            mih.search(&query, 1, &mut Scratch::default(), &mut out),
            Err(IndexError::CodeLengthMismatch {
                expected: 3,
                got: 2
            })
        ));
        assert!(matches!(
            mih.search(&query, 0, &mut Scratch::default(), &mut out),
            Err(IndexError::ZeroK)
        ));
    }

    #[test]
    fn auto_rule() {
        assert_eq!(MihIndex::auto_substrings(10_000_000, 64), 3);
        assert_eq!(MihIndex::auto_substrings(1_000_000, 64), 3);
        assert_eq!(MihIndex::auto_substrings(1, 1), 1);
        assert_eq!(MihIndex::auto_substrings(2, 1024), 1024);
        assert_eq!(MihIndex::auto_substrings(1_000_000, 1024), 51);
    }
}
