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
//! With one table (`m = 1`, so `h <= 64`) a key is the whole code: every
//! entry of a bucket is at the probed radius, with ascending ids, so only its
//! first `k + 1` entries can matter (one may be the excluded query) and the
//! rest are skipped. Clustered semantic codes put thousands of images on one
//! code; this keeps their cost at `k` per bucket.
//!
//! The search counts its work in linear-scan item equivalents (a key probe
//! counts 512, a verified candidate 32, or 256 when its code is fetched by id).
//! If finishing the next radius's probes would push the total past `N` (long
//! substrings, far neighbours as with uniformly random codes, or `k` close to
//! `N`), it finishes with a linear scan instead, so the worst case stays
//! within about 2x of [`super::hamming::HammingIndex`]; results are identical
//! either way.
//!
//! # Choice of `m`, or no tables at all
//! [`MihIndex::new`] asks a cost model ([`plan`]) what a search for `k`
//! neighbours would cost with each candidate `m`, on sample queries: 32 of the
//! database's items (evenly spaced ids), or codes of the workload's own
//! queries ([`MihIndex::planned_for`]). For each, a linear
//! scan gives the exact k-th nearest distance `D`, hence where the search
//! stops (`r = D / m`, table `D % m`); a sample of up to 2^17 items (evenly
//! spaced) gives, scaled to `N`, how many bucket entries each table holds at
//! each radius. The search is then replayed on those counts, radius by radius
//! and table by table, with the work units and the fallback rule the search
//! itself uses (`simulated_cost`). The `m` with the cheapest median query
//! wins, among those whose mean (what a batch pays) is below a scan's `N`,
//! unless even that median is above three quarters of a scan; then the index
//! keeps no tables and every search is the linear scan (uniformly random
//! codes, or small `N`).
//! Results are the same whatever it chooses. The choice depends only on the
//! codes, `k` and the sample queries, so it is reproducible.
//! [`MihIndex::auto_substrings`] is the paper's rule (substrings of about
//! `log2 N` bits); override everything with [`MihIndex::with_substrings`].

use std::sync::Arc;

use super::scan::{Codes, scan_topk, words_for};
use super::{Hit, IndexError, Preamble, Query, Scratch, SearchIndex, preamble};
use crate::simd::{Level, level};

/// Cost of probing one key, in linear-scan item equivalents (a probe is a
/// cache miss or two; the popcount scan streams an item in well under 1 ns).
const PROBE_COST: f64 = 512.0;
/// Cost of verifying one candidate with co-located codes: its distance, the
/// first-reach test and the tie bookkeeping. Measured on a real-model 1M
/// database (48 bits, k = 100): about 12 ns an entry, where the scan spends
/// 0.36 ns an item.
const CAND_COST: f64 = 32.0;
/// Cost of verifying one candidate whose code must be fetched by id (a cache
/// miss more).
const CAND_COST_SCATTERED: f64 = 256.0;

/// Co-locate codes in the tables when that costs at most this many extra
/// `u64` words per item.
const COLOCATE_MAX_WORDS: usize = 8;

/// Sample queries of the cost model.
const PLAN_QUERIES: usize = 32;
/// Items sampled to estimate how many bucket entries a search verifies.
const PLAN_ITEMS: usize = 1 << 17;
/// MIH is chosen only when its estimated median query costs less than this
/// fraction of a scan (the model is coarse, and the scan's cost is certain).
const PLAN_MARGIN: f64 = 0.75;
/// The `k` that [`MihIndex::new`] plans for.
pub const DEFAULT_PLAN_K: usize = 100;

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

/// The `m` substrings of an `h`-bit code: the first `h % m` are one bit longer.
fn split(h: usize, m: usize) -> Vec<Sub> {
    let (q, r) = (h / m, h % m);
    let mut start = 0;
    (0..m)
        .map(|i| {
            let len = q + usize::from(i < r);
            start += len;
            Sub {
                start: start - len,
                len,
            }
        })
        .collect()
}

/// What the cost model ([`plan`]) chose for a database and a `k`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MihPlan {
    /// Substrings to build, or `None` when a linear scan is cheaper.
    pub substrings: Option<usize>,
    /// The `k` planned for.
    pub k: usize,
    /// The estimates of each candidate `m`.
    pub costs: Vec<PlanCost>,
    /// Database size.
    pub n: usize,
}

/// The estimated cost per query of one candidate `m`, in linear-scan item
/// equivalents (a scan costs `n`), over the sample queries.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PlanCost {
    /// Substrings.
    pub substrings: usize,
    /// Median over the sample queries (a typical single query).
    pub median: f64,
    /// Mean over the sample queries (what a batch pays per query).
    pub mean: f64,
}

impl MihPlan {
    /// The estimated speed-up of a typical (median) query over a linear scan
    /// with the chosen `m` (1 for a scan).
    pub fn estimated_speedup(&self) -> f64 {
        self.substrings
            .and_then(|m| self.costs.iter().find(|c| c.substrings == m))
            .map_or(1.0, |c| self.n as f64 / c.median.max(1.0))
    }
}

/// The candidate substring counts for `h`-bit codes: one per distinct
/// substring length from 64 (or `h`) down to 4 bits.
fn candidate_substrings(h: usize) -> Vec<usize> {
    let mut ms: Vec<usize> = (4..=h.clamp(4, 64))
        .rev()
        .map(|len| h.div_ceil(len))
        .filter(|&m| m >= 1 && m <= h && h.div_ceil(m) <= 64)
        .collect();
    ms.dedup();
    ms
}

/// The work (in linear-scan item equivalents) that [`MihIndex`]'s search with substrings
/// `subs` does for query `q` whose `k_eff`-th nearest distance is `kth`, following the search
/// step by step: radius by radius and table by table it probes every key at that radius and
/// verifies the bucket entries there (counted on `sample`, scaled by `scale`; for one table,
/// at most `k + 1` per probed key), and it stops at the first table where `m r + i >= kth`,
/// or falls back to the scan (cost `n` more) where the search would.
#[allow(clippy::too_many_arguments)]
fn simulated_cost(
    codes: &Codes,
    q: &[u64],
    subs: &[Sub],
    kth: usize,
    k_eff: usize,
    sample: &[usize],
    scale: f64,
    xor: &mut [u64],
) -> f64 {
    let (n, w, m) = (codes.len() as f64, codes.words(), subs.len());
    let max_len = subs.iter().map(|s| s.len).max().unwrap_or(0);
    // entries[i][r]: sampled items whose substring i is at distance r from the query's.
    let mut entries = vec![vec![0usize; max_len + 1]; m];
    for &x in sample {
        let code = codes.code(x);
        for t in 0..w {
            xor[t] = code[t] ^ q[t];
        }
        for (i, sub) in subs.iter().enumerate() {
            entries[i][sub.extract(xor).count_ones() as usize] += 1;
        }
    }
    let cand_cost = if m * w <= COLOCATE_MAX_WORDS {
        CAND_COST
    } else {
        CAND_COST_SCATTERED
    };
    let mut spent = 0.0;
    for r in 0..=max_len {
        let probes: f64 = subs.iter().map(|s| binomial(s.len, r)).sum();
        if r > 0 && spent + probes * PROBE_COST > n {
            return spent + n;
        }
        for (i, sub) in subs.iter().enumerate() {
            if r <= sub.len {
                let keys = binomial(sub.len, r);
                let mut found = entries[i].get(r).map_or(0.0, |&e| e as f64) * scale;
                if m == 1 {
                    found = found.min(keys * (k_eff + 1) as f64);
                }
                spent += keys * PROBE_COST + found * cand_cost;
            }
            if m * r + i >= kth {
                return spent;
            }
        }
    }
    spent
}

/// Estimates the cost of a `k`-nearest search for each candidate `m` and
/// chooses one, or the linear scan (see the module docs). The sample queries
/// are `queries` (codes of the workload, e.g. held-out images; each may be a
/// database item, which is then left out of its own neighbours), or 32 of the
/// database's own items when `None`.
pub fn plan(codes: &Codes, k: usize, queries: Option<&[&[u64]]>) -> MihPlan {
    let (n, h, w) = (codes.len(), codes.bits(), codes.words());
    let candidates = candidate_substrings(h);
    let splits: Vec<Vec<Sub>> = candidates.iter().map(|&m| split(h, m)).collect();
    let k = k.max(1);
    let own: Vec<&[u64]>;
    let queries = match queries {
        Some(q) => q,
        None => {
            let count = PLAN_QUERIES.min(n);
            own = (0..count).map(|j| codes.code(j * n / count)).collect();
            &own
        }
    };
    let stride = n.div_ceil(PLAN_ITEMS).max(1);
    let sample: Vec<usize> = (0..n).step_by(stride).collect();
    let scale = n as f64 / sample.len().max(1) as f64;
    let mut per_query: Vec<Vec<f64>> = vec![Vec::new(); candidates.len()];
    let mut hist = vec![0usize; h + 1];
    let mut xor = vec![0u64; w];
    let mut counted = 0usize;
    for &q in queries {
        hist.iter_mut().for_each(|c| *c = 0);
        for i in 0..n {
            hist[super::scan::hamming(codes.code(i), q) as usize] += 1;
        }
        // A query that is itself in the database does not count as its own neighbour.
        let own_match = usize::from(hist[0] > 0);
        hist[0] -= own_match;
        let k_eff = k.min(n - own_match);
        if k_eff == 0 {
            continue;
        }
        counted += 1;
        let mut seen = 0;
        let kth = hist
            .iter()
            .position(|&c| {
                seen += c;
                seen >= k_eff
            })
            .unwrap_or(h);
        for (c, subs) in splits.iter().enumerate() {
            per_query[c].push(simulated_cost(
                codes, q, subs, kth, k_eff, &sample, scale, &mut xor,
            ));
        }
    }
    let costs: Vec<PlanCost> = candidates
        .iter()
        .zip(&mut per_query)
        .map(|(&m, c)| {
            c.sort_by(f64::total_cmp);
            PlanCost {
                substrings: m,
                median: c.get(c.len() / 2).copied().unwrap_or(f64::INFINITY),
                mean: c.iter().sum::<f64>() / c.len().max(1) as f64,
            }
        })
        .collect();
    // The cheapest typical query, among the m that also beat the scan on average.
    let scan = n as f64;
    let substrings = costs
        .iter()
        .filter(|c| counted > 0 && c.mean < scan && c.median < PLAN_MARGIN * scan)
        .min_by(|a, b| {
            a.median
                .total_cmp(&b.median)
                .then(a.substrings.cmp(&b.substrings))
        })
        .map(|c| c.substrings);
    MihPlan {
        substrings,
        k,
        costs,
        n,
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
/// tie order) as [`super::hamming::HammingIndex`]. With no tables (the cost
/// model's choice for codes where MIH would lose) every search is the scan.
#[derive(Debug, Clone)]
pub struct MihIndex {
    pub(crate) codes: Arc<Codes>,
    subs: Vec<Sub>,
    tables: Vec<Table>,
    /// The cost model's estimates, when it chose.
    plan: Option<MihPlan>,
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

    /// Builds what the cost model chooses for `k =` [`DEFAULT_PLAN_K`].
    pub fn new(codes: Arc<Codes>) -> Result<Self, IndexError> {
        Self::planned(codes, DEFAULT_PLAN_K)
    }

    /// Builds what the cost model ([`plan`]) chooses for searches of `k`
    /// neighbours, planned on the database's own items: tables with the
    /// cheapest `m`, or none (scan).
    pub fn planned(codes: Arc<Codes>, k: usize) -> Result<Self, IndexError> {
        Self::planned_for(codes, k, None)
    }

    /// [`MihIndex::planned`] with sample queries from the workload (see [`plan`]).
    pub fn planned_for(
        codes: Arc<Codes>,
        k: usize,
        queries: Option<&[&[u64]]>,
    ) -> Result<Self, IndexError> {
        let p = plan(&codes, k, queries);
        let mut index = match p.substrings {
            Some(m) => Self::with_substrings(codes, m)?,
            None => Self::scan_only(codes),
        };
        index.plan = Some(p);
        Ok(index)
    }

    /// No tables: every search is the linear scan.
    pub fn scan_only(codes: Arc<Codes>) -> Self {
        let budget = codes.len() as f64;
        Self {
            codes,
            subs: Vec::new(),
            tables: Vec::new(),
            plan: None,
            budget,
        }
    }

    /// The cost model's estimates, for an index it planned.
    pub fn plan(&self) -> Option<&MihPlan> {
        self.plan.as_ref()
    }

    /// Builds the tables with `m` substrings (`ceil(bits/64) <= m <= bits`).
    pub fn with_substrings(codes: Arc<Codes>, m: usize) -> Result<Self, IndexError> {
        let h = codes.bits();
        if m == 0 || m > h || h.div_ceil(m) > 64 {
            return Err(IndexError::InvalidParameter(format!(
                "MIH needs 1..={h} substrings of at most 64 bits for {h}-bit codes, got m = {m}"
            )));
        }
        let subs = split(h, m);
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
            plan: None,
            budget,
        })
    }

    /// Number of substrings (hash tables); 0 when every search is the scan.
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
        if m == 0 {
            scan_topk(&self.codes, q, ex, top, &mut scratch.dists);
            top.drain(false, out);
            return;
        }
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
                        // With one table the key is the whole code, so every entry of a
                        // bucket is at distance `r`, ids ascending: past its first `k + 1`
                        // (one may be excluded), none can beat them on the tie.
                        let end = if m == 1 {
                            end.min(start.saturating_add(k_eff as u32 + 1))
                        } else {
                            end
                        };
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
    fn method(&self) -> super::Method {
        super::Method::Mih
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
        let Preamble { ex, n_eff, k_eff } = preamble(k, query.exclude, self.codes.len(), out)?;
        self.codes.check_query(query.code)?;
        let q = query.code.unwrap_or_default();
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
    fn the_cost_model_scans_random_codes_and_hashes_clustered_ones_with_equal_results() {
        let mut s = Scratch::default();
        let mut out = Vec::new();
        // Uniform codes: the 100 nearest of 20,000 64-bit codes lie far away, so MIH would
        // probe more keys than a scan reads codes. Few distinct codes: they are close.
        for (distinct, hashed) in [(20_000usize, false), (40, true)] {
            let codes = Arc::new(random_codes(20_000, 64, distinct, 9));
            let mih = MihIndex::planned(codes.clone(), 100).unwrap();
            let plan = mih.plan().unwrap();
            assert_eq!(plan.substrings.is_some(), hashed, "{plan:?}");
            assert_eq!(mih.substrings(), plan.substrings.unwrap_or(0));
            assert!(
                plan.costs
                    .iter()
                    .all(|c| c.median.is_finite() && c.mean >= 0.0)
            );
            for qi in [0, 7, 19_999] {
                for ex in [None, Some(qi as u32)] {
                    let query = Query {
                        code: Some(codes.code(qi)),
                        exclude: ex,
                        ..Query::default()
                    };
                    mih.search(&query, 100, &mut s, &mut out).unwrap();
                    assert_eq!(
                        out,
                        oracle(&codes, codes.code(qi), 100, ex),
                        "distinct={distinct}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_plan_for_tiny_databases_is_well_formed() {
        for n in [1usize, 2, 5] {
            let codes = Arc::new(random_codes(n, 48, n, 1));
            let mih = MihIndex::planned(codes.clone(), 10).unwrap();
            let mut out = Vec::new();
            let query = Query {
                code: Some(codes.code(0)),
                ..Query::default()
            };
            mih.search(&query, 10, &mut Scratch::default(), &mut out)
                .unwrap();
            assert_eq!(out, oracle(&codes, codes.code(0), 10, None));
        }
        // One m per longest-substring length: 9 and 11 give the 6- and 5-bit ones of 8 and 10.
        assert_eq!(candidate_substrings(48), [1, 2, 3, 4, 5, 6, 7, 8, 10, 12]);
        assert_eq!(candidate_substrings(64)[0], 1);
        assert!(
            candidate_substrings(1024)
                .iter()
                .all(|&m| 1024usize.div_ceil(m) <= 64)
        );
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
