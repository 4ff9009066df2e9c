//! A log-linear latency histogram in nanoseconds, HdrHistogram-style: values below 128 ns
//! have a bucket each; above, every power of two is split into 64 buckets, so a bucket's
//! width is at most 1/64 (1.6%) of its values. Fixed size (2,304 counters, up to ~18 min).

const SUB: u32 = 7; // 2^7 = 128 exact buckets, then 64 per power of two
const HALF: u64 = 1 << (SUB - 1);
const BUCKETS: usize = (1 << SUB) + (41 - SUB as usize) * HALF as usize;

pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    max: u64,
}

fn index(v: u64) -> usize {
    if v < (1 << SUB) {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - (SUB - 1);
    let sub = v >> shift; // in [64, 128)
    ((1 << SUB) + (msb - SUB) as u64 * HALF + (sub - HALF)) as usize
}

/// The highest value that falls in bucket `i` (what a percentile reports: never optimistic).
fn upper(i: usize) -> u64 {
    if i < (1 << SUB) {
        return i as u64;
    }
    let j = (i - (1 << SUB)) as u64;
    let msb = j / HALF + SUB as u64;
    let sub = j % HALF + HALF;
    let shift = msb - (SUB as u64 - 1);
    ((sub + 1) << shift) - 1
}

impl Histogram {
    pub fn new() -> Self {
        Histogram { counts: vec![0; BUCKETS], count: 0, sum: 0, max: 0 }
    }

    pub fn record(&mut self, ns: u64) {
        let ns = ns.min((1u64 << 40) - 1);
        self.counts[index(ns)] += 1;
        self.count += 1;
        self.sum += u128::from(ns);
        self.max = self.max.max(ns);
    }

    /// The value at or below which `p` percent of the recorded values lie (bucket upper bound).
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }

    /// `{"count":…,"mean_us":…,"p50_us":…,…,"max_us":…}`
    pub fn json_us(&self) -> String {
        let us = |ns: u64| ns as f64 / 1e3;
        let mean = if self.count > 0 { self.sum as f64 / self.count as f64 / 1e3 } else { 0.0 };
        format!(
            "{{\"count\":{},\"mean_us\":{:.1},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1}}}",
            self.count,
            mean,
            us(self.percentile(50.0)),
            us(self.percentile(90.0)),
            us(self.percentile(99.0)),
            us(self.percentile(99.9)),
            us(self.max)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for v in (0..1u64 << 34).step_by(9973).chain([1 << 39, (1 << 40) - 1]) {
            let i = index(v);
            assert!(i < BUCKETS, "{v} → {i}");
            assert!(i >= last, "index not monotonic at {v}");
            last = i;
            let hi = upper(i);
            assert!(hi >= v, "upper({i}) = {hi} < {v}");
            assert!((hi - v) as f64 <= v as f64 / 64.0 + 1.0, "bucket of {v} too wide: {hi}");
        }
    }

    #[test]
    fn percentiles_of_a_uniform_range() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.percentile(50.0) as f64;
        let p99 = h.percentile(99.0) as f64;
        assert!((p50 / 50_000_000.0 - 1.0).abs() < 0.02, "p50 {p50}");
        assert!((p99 / 99_000_000.0 - 1.0).abs() < 0.02, "p99 {p99}");
        assert_eq!(h.percentile(100.0), 100_000_000);
    }
}
