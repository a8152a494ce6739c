//! SplitMix64: the bootstrap's random numbers.
//!
//! In-crate rather than from `rand` so that a bootstrap interval written to a result file is
//! reproducible bit for bit on any machine and with any future version of any dependency.

/// Steele, Lea & Flood's SplitMix64 (OOPSLA 2014), as in Vigna's reference `splitmix64.c`.
/// Fast, passes BigCrush, and trivially seedable from a single `u64`.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` by rejecting the top partial bucket of `u64` and taking the rest
    /// modulo `n`: the rule the mmlu-lite subset sampler was published with, kept as it is so
    /// that a suite's item choice (and its manifest hash) never changes. Panics if n is 0.
    pub fn below_rejecting_top(&mut self, n: u64) -> u64 {
        assert!(n > 0, "SplitMix64::below_rejecting_top(0)");
        let limit = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < limit {
                return x % n;
            }
        }
    }

    /// Uniform integer in [0, n), without modulo bias (Lemire 2019, "Fast random integer
    /// generation in an interval"). Panics if n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "SplitMix64::below(0)");
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            // Reject the few low products that would over-represent some outputs.
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_outputs() {
        // Vigna's splitmix64.c seeded with 1234567 (the vector used by e.g. rand_xoshiro's
        // tests; reproduced with a 6-line Python port).
        let mut r = SplitMix64::new(1234567);
        let expected = [
            6457827717110365317u64,
            3203168211198807973,
            9817491932198370423,
            4593380528125082431,
            16408922859458223821,
        ];
        for e in expected {
            assert_eq!(r.next_u64(), e);
        }
        let mut r0 = SplitMix64::new(0);
        assert_eq!(r0.next_u64(), 16294208416658607535);
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = SplitMix64::new(42);
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            counts[r.below(7) as usize] += 1;
        }
        // Each bin expects 10,000 with sd ≈ 93; ±500 is over 5 sd.
        for c in counts {
            assert!((9_500..=10_500).contains(&c), "{counts:?}");
        }
        assert_eq!(r.below(1), 0);
    }
}
