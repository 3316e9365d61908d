//! The duration histogram: fixed buckets from 1 ms to 30 s plus one above, the sum and
//! the largest value, and percentiles estimated from the buckets.
//!
//! Bucket bounds are inclusive upper bounds (`le`, as Prometheus has them), so a value of
//! exactly 5 ms counts in the 5 ms bucket. Counts are kept per bucket (not cumulative),
//! which makes two histograms add up column by column.

/// Upper bounds of the finite buckets, in microseconds: 1, 2.5, 5, 10, 25, 50, 100, 250,
/// 500, 1000, 2500, 5000, 10000 and 30000 ms. One more bucket holds everything above.
pub const BOUNDS_US: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];

/// The finite buckets and the `+Inf` one.
pub const BUCKETS: usize = BOUNDS_US.len() + 1;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Values per bucket; the last bucket is above 30 s.
    pub counts: [u64; BUCKETS],
    pub sum_us: u64,
    pub max_us: u64,
}

/// The bucket a value falls in.
pub fn bucket_of(value_us: u64) -> usize {
    BOUNDS_US.partition_point(|&bound| bound < value_us)
}

impl Histogram {
    pub fn observe(&mut self, value_us: u64) {
        self.counts[bucket_of(value_us)] += 1;
        self.sum_us += value_us;
        self.max_us = self.max_us.max(value_us);
    }

    pub fn add(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Counts of values at or below each bound, `+Inf` last (Prometheus `_bucket`).
    pub fn cumulative(&self) -> [u64; BUCKETS] {
        let mut running = 0;
        self.counts.map(|n| {
            running += n;
            running
        })
    }

    /// Estimates the `q` quantile (0.5 for the median) in microseconds; None when empty.
    ///
    /// The value ranked `q * count` is found in its bucket, and its place inside the
    /// bucket is interpolated linearly between the bucket's bounds, as if the values in
    /// it were spread evenly (the lowest bucket starts at 0). The top bucket has no upper
    /// bound, so the largest value seen stands in for it. Since that largest value is
    /// known exactly, no estimate exceeds it. The error is therefore at most the width
    /// of one bucket, and small when the values are close together.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0;
        for (bucket, &n) in self.counts.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let lower = match bucket {
                    0 => 0,
                    b => BOUNDS_US[b - 1],
                };
                let upper = BOUNDS_US.get(bucket).copied().unwrap_or(self.max_us);
                let fraction = (rank - below as f64) / n as f64;
                let estimate = lower as f64 + upper.saturating_sub(lower) as f64 * fraction;
                return Some(estimate.min(self.max_us as f64));
            }
            below += n;
        }
        Some(self.max_us as f64)
    }

    /// The mean in microseconds; None when empty.
    pub fn mean(&self) -> Option<f64> {
        let count = self.count();
        (count > 0).then(|| self.sum_us as f64 / count as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values_ms: &[f64]) -> Histogram {
        let mut h = Histogram::default();
        for ms in values_ms {
            h.observe((ms * 1000.0) as u64);
        }
        h
    }

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_they_do_not_exceed() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1_000), 0);
        assert_eq!(bucket_of(1_001), 1);
        assert_eq!(bucket_of(2_500), 1);
        assert_eq!(bucket_of(5_000), 2);
        assert_eq!(bucket_of(30_000_000), 13);
        assert_eq!(bucket_of(30_000_001), 14);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn cumulative_counts_never_decrease_and_end_at_the_count() {
        let h = of(&[0.5, 3.0, 3.0, 40.0, 45_000.0]);
        let cumulative = h.cumulative();
        assert!(cumulative.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(cumulative[BUCKETS - 1], h.count());
        assert_eq!(cumulative[0], 1);
        assert_eq!(cumulative[2], 3);
        assert_eq!((h.max_us, h.sum_us), (45_000_000, 45_046_500));
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_and_never_pass_the_max() {
        let mut values = vec![3.0; 90];
        values.extend([40.0; 10]);
        let h = of(&values);
        // Rank 50 of 90 values in (2.5, 5] ms: 2.5 + 2.5 * 50/90.
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 - 3_888.9).abs() < 0.1, "{p50}");
        // Rank 90 is the last value of the lower bucket: its upper bound, 5 ms, capped
        // by nothing since the max is 40 ms.
        assert_eq!(h.quantile(0.9), Some(5_000.0));
        // Rank 99 in (25, 50] ms would be 47.5 ms, but nothing above 40 ms was seen.
        assert_eq!(h.quantile(0.99), Some(40_000.0));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn the_top_bucket_uses_the_largest_value_as_its_bound() {
        let h = of(&[40_000.0, 50_000.0]);
        assert_eq!(h.quantile(1.0), Some(50_000_000.0));
        let p50 = h.quantile(0.5).unwrap();
        assert!((30_000_000.0..=50_000_000.0).contains(&p50), "{p50}");
    }

    #[test]
    fn histograms_add_up() {
        let mut a = of(&[1.0, 2.0]);
        a.add(&of(&[7.0]));
        assert_eq!(a, of(&[1.0, 2.0, 7.0]));
        assert_eq!(a.mean(), Some(10_000.0 / 3.0));
    }
}
