//! Bounded top-k selection over `(score, row)` pairs.
//!
//! Ordering ("better" first): higher score wins; on equal scores the **higher row id** wins
//! (rows are appended over time, so newer memories win ties). NaN scores are never kept.
//! `-0.0` and `+0.0` compare equal.

/// Keeps the `k` best `(score, row)` pairs seen so far.
///
/// Internally a binary min-heap of size `<= k` whose root is the worst kept entry, so
/// [`TopK::push`] is O(1) whenever the candidate does not beat that entry (the overwhelmingly
/// common case in a scan) and O(log k) otherwise.
#[derive(Clone, Debug)]
pub struct TopK {
    k: usize,
    /// Min-heap by [`better`]: `heap[0]` is the worst kept entry.
    heap: Vec<(f32, u32)>,
}

/// `a` ranks strictly before `b`.
#[inline(always)]
fn better(a: (f32, u32), b: (f32, u32)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 > b.1)
}

impl TopK {
    /// An empty selector keeping at most `k` entries (`k == 0` keeps nothing).
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: Vec::with_capacity(k.min(1 << 16)),
        }
    }

    /// The capacity `k`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of entries currently kept (`<= k`).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// True once `k` entries are kept (from then on a candidate must beat the threshold).
    pub fn is_full(&self) -> bool {
        self.heap.len() >= self.k
    }

    /// The score a candidate has to reach to be kept: `-inf` while fewer than `k` entries are
    /// kept, `+inf` when `k == 0`, otherwise the worst kept score. A candidate with
    /// `score < threshold()` is always rejected; with `score == threshold()` it is kept only
    /// if its row id is higher than the worst kept entry's (ties favour newer rows); with
    /// `score > threshold()` it is always kept. So `score >= threshold()` is an exact cheap
    /// pre-filter for callers that want to skip calling [`TopK::push`].
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.k == 0 {
            f32::INFINITY
        } else if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap[0].0
        }
    }

    /// Offers a candidate; returns whether it was kept. O(1) when it is rejected (including
    /// every `score < threshold()`), O(log k) when kept.
    #[inline]
    pub fn push(&mut self, score: f32, row: u32) -> bool {
        if score.is_nan() {
            return false;
        }
        if self.heap.len() < self.k {
            self.heap.push((score, row));
            self.sift_up(self.heap.len() - 1);
            return true;
        }
        match self.heap.first() {
            Some(&worst) if better((score, row), worst) => {
                self.heap[0] = (score, row);
                self.sift_down(0);
                true
            }
            _ => false,
        }
    }

    /// Offers `scores[i]` for row `first_row + i`, for every `i`.
    pub fn push_scores(&mut self, scores: &[f32], first_row: u32) {
        for (i, &s) in scores.iter().enumerate() {
            // Fast reject without touching the heap (equal scores still go through `push`).
            if s >= self.threshold() {
                self.push(s, first_row + i as u32);
            }
        }
    }

    /// Merges another selector's entries into this one (e.g. per-thread partial results).
    pub fn merge(&mut self, other: TopK) {
        for (s, r) in other.heap {
            self.push(s, r);
        }
    }

    /// The kept entries, best first: descending score, equal scores by descending row id.
    pub fn into_sorted_vec(self) -> Vec<(f32, u32)> {
        let mut v = self.heap;
        v.sort_unstable_by(|a, b| {
            b.0.partial_cmp(&a.0)
                .expect("TopK never stores NaN")
                .then(b.1.cmp(&a.1))
        });
        v
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            // Min-heap: a child must not be worse than its parent.
            if better(self.heap[parent], self.heap[i]) {
                self.heap.swap(parent, i);
                i = parent;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            // Pick the worse child.
            let c = if r < n && better(self.heap[l], self.heap[r]) { r } else { l };
            if better(self.heap[i], self.heap[c]) {
                self.heap.swap(i, c);
                i = c;
            } else {
                break;
            }
        }
    }
}
