//! Bounded top-k collectors: [`ScoreTopK`] (binary heap keyed by score, for
//! similarities) and [`DistTopK`] (per-distance buckets, for bounded integer
//! Hamming distances; O(1) per insertion, never sorts the database).

use super::{Hit, score_order};

/// Keeps the best `k` hits by (score desc, id asc) in a binary heap whose root
/// is the worst kept hit.
#[derive(Debug, Default)]
pub(crate) struct ScoreTopK {
    k: usize,
    heap: Vec<Hit>,
}

/// True when `a` ranks strictly before `b`.
#[inline]
fn better(a: &Hit, b: &Hit) -> bool {
    a.score > b.score || (a.score == b.score && a.id < b.id)
}

impl ScoreTopK {
    /// Empties the collector and sets its capacity.
    pub(crate) fn reset(&mut self, k: usize) {
        self.k = k;
        self.heap.clear();
        self.heap.reserve(k);
    }

    /// Scores `<=` this value can never enter when ids arrive in ascending
    /// order (an equal score with a higher id ranks after the worst kept hit).
    #[inline]
    pub(crate) fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap.first().map_or(f32::INFINITY, |h| h.score)
        }
    }

    /// Offers a hit (any id order).
    #[inline]
    pub(crate) fn push(&mut self, score: f32, id: u32) {
        let hit = Hit { id, score };
        if self.heap.len() < self.k {
            self.heap.push(hit);
            self.sift_up(self.heap.len() - 1);
        } else if self.k > 0 && better(&hit, &self.heap[0]) {
            self.heap[0] = hit;
            self.sift_down(0);
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let p = (i - 1) / 2;
            // the parent must be worse than (ranked after) the child
            if better(&self.heap[p], &self.heap[i]) {
                self.heap.swap(p, i);
                i = p;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut worst = i;
            if l < n && better(&self.heap[worst], &self.heap[l]) {
                worst = l;
            }
            if r < n && better(&self.heap[worst], &self.heap[r]) {
                worst = r;
            }
            if worst == i {
                break;
            }
            self.heap.swap(i, worst);
            i = worst;
        }
    }

    /// Appends the kept hits to `out` in final order and empties the collector.
    pub(crate) fn drain_sorted(&mut self, out: &mut Vec<Hit>) {
        self.heap.sort_unstable_by(score_order);
        out.append(&mut self.heap);
    }
}

/// Keeps the best `k` ids by (distance asc, id asc) for integer distances
/// `0..=max_dist`, in one bucket per distance.
///
/// Two insertion disciplines: *ordered* (ids offered in ascending order, as in
/// a linear scan: an id whose distance equals the current k-th distance can be
/// rejected) and *unordered* (ids in any order, as in multi-index hashing:
/// such an id must be kept because it may beat a higher id on the tie).
#[derive(Debug, Default)]
pub(crate) struct DistTopK {
    k: usize,
    buckets: Vec<Vec<u32>>,
    /// Items currently stored.
    total: usize,
    /// No item with a distance above `bound` is stored or useful.
    bound: usize,
    /// `total >= k` (then `bound` is the k-th smallest distance).
    full: bool,
}

impl DistTopK {
    /// Empties the collector for distances `0..=max_dist` and capacity `k`.
    pub(crate) fn reset(&mut self, k: usize, max_dist: usize) {
        let used = self.bound.min(self.buckets.len().saturating_sub(1));
        for b in self.buckets.iter_mut().take(used + 1) {
            b.clear();
        }
        if self.buckets.len() < max_dist + 1 {
            self.buckets.resize_with(max_dist + 1, Vec::new);
        }
        self.k = k;
        self.total = 0;
        self.bound = max_dist;
        self.full = k == 0;
    }

    /// Ordered discipline: distances `< limit` may enter.
    #[inline]
    pub(crate) fn ordered_limit(&self) -> u32 {
        if self.full {
            self.bound as u32
        } else {
            self.bound as u32 + 1
        }
    }

    /// Unordered discipline: distances `<= limit` may enter.
    #[inline]
    pub(crate) fn unordered_limit(&self) -> u32 {
        self.bound as u32
    }

    /// True when the k best items all have distance `<= b`.
    #[inline]
    pub(crate) fn complete_within(&self, b: usize) -> bool {
        self.full && self.bound <= b
    }

    /// Stores an item; the caller has checked the distance against the limit
    /// of its discipline.
    #[inline]
    pub(crate) fn insert(&mut self, dist: u32, id: u32) {
        let d = dist as usize;
        debug_assert!(d <= self.bound);
        self.buckets[d].push(id);
        self.total += 1;
        if self.total >= self.k {
            self.full = true;
            while self.bound > 0 && self.total - self.buckets[self.bound].len() >= self.k {
                self.total -= self.buckets[self.bound].len();
                self.buckets[self.bound].clear();
                self.bound -= 1;
            }
        }
    }

    /// Appends the best `k` in (distance, id) order to `out` as hits with the
    /// distance as score. With `sort_ids` the ids of each bucket are sorted
    /// first (needed after unordered insertion).
    pub(crate) fn drain(&mut self, sort_ids: bool, out: &mut Vec<Hit>) {
        let mut left = self.k;
        for d in 0..=self.bound {
            if left == 0 {
                break;
            }
            let b = &mut self.buckets[d];
            if sort_ids {
                // Only the lowest `left` ids are taken: select them, then sort those.
                if b.len() > left {
                    b.select_nth_unstable(left - 1);
                    b.truncate(left);
                }
                b.sort_unstable();
            }
            for &id in b.iter().take(left) {
                out.push(Hit {
                    id,
                    score: d as f32,
                });
            }
            left -= b.len().min(left);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_topk_keeps_best_with_id_ties() {
        let mut t = ScoreTopK::default();
        t.reset(3);
        for (i, s) in [0.5, 0.9, 0.5, 0.1, 0.9, 0.5].iter().enumerate() {
            t.push(*s, i as u32);
        }
        let mut out = Vec::new();
        t.drain_sorted(&mut out);
        let ids: Vec<u32> = out.iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![1, 4, 0]);
    }

    #[test]
    fn dist_topk_both_disciplines() {
        let dists = [3u32, 1, 3, 0, 2, 1, 3, 0];
        let mut t = DistTopK::default();
        t.reset(4, 3);
        for (i, &d) in dists.iter().enumerate() {
            if d < t.ordered_limit() {
                t.insert(d, i as u32);
            }
        }
        let mut out = Vec::new();
        t.drain(false, &mut out);
        let ids: Vec<u32> = out.iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![3, 7, 1, 5]);
        // unordered: offer in reverse order
        t.reset(5, 3);
        for (i, &d) in dists.iter().enumerate().rev() {
            if d <= t.unordered_limit() {
                t.insert(d, i as u32);
            }
        }
        out.clear();
        t.drain(true, &mut out);
        let ids: Vec<u32> = out.iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![3, 7, 1, 5, 4]);
        assert!(t.complete_within(2));
    }
}
