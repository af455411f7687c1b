//! Seeded, platform-independent sampling of prompts.
//!
//! The generator is SplitMix64 (Steele, Lea & Flood, 2014): `state += 0x9E3779B97F4A7C15`, then
//! the state is mixed with two xor-shift-multiply rounds. Integers below `n` come from Lemire's
//! multiply-shift method with rejection, so they are exactly uniform. Sampling `k` of `n` without
//! replacement is a partial Fisher–Yates shuffle of `0..n`: for `i` in `0..k`, swap position `i`
//! with `i + below(n - i)`; the first `k` positions are the sample, in draw order. With
//! replacement, each draw is `below(n)`. Only integer arithmetic is used, so the same seed gives the
//! same prompts on every platform and in every version of wattbench (the golden test pins it).

/// SplitMix64.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform integer in `0..n` (Lemire 2019). `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0) has no value; this is a bug");
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        let mut low = m as u64;
        if low < n {
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
                low = m as u64;
            }
        }
        (m >> 64) as u64
    }

    /// Uniform float in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal variate (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// `k` distinct indices of `0..n`, in draw order. `k` must not exceed `n`.
pub fn without_replacement(n: usize, k: usize, seed: u64) -> Vec<usize> {
    assert!(
        k <= n,
        "sampling {k} of {n} without replacement; this is a bug"
    );
    let mut rng = SplitMix64::new(seed);
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + rng.below((n - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(k);
    idx
}

/// `k` indices of `0..n` drawn independently.
pub fn with_replacement(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    (0..k).map(|_| rng.below(n as u64) as usize).collect()
}

/// The order in which sampled prompts are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// The order in which they were drawn.
    #[default]
    Random,
    /// Ascending dataset index.
    AsIs,
    /// Ascending prompt length (tokens when a tokenizer is given, else characters), ties by index.
    ByLength,
}

impl std::str::FromStr for Order {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(Order::Random),
            "as-is" => Ok(Order::AsIs),
            "by-length" => Ok(Order::ByLength),
            _ => Err(format!(
                "unknown order {s:?}; use random, as-is or by-length"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs of the reference C implementation for seed 1234567.
        let mut r = SplitMix64::new(1234567);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [
                6457827717110365317,
                3203168211198807973,
                9817491932198370423
            ]
        );
    }

    #[test]
    fn below_is_in_range_and_covers_it() {
        let mut r = SplitMix64::new(7);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[r.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (850..1150).contains(&c)), "{seen:?}");
    }

    #[test]
    fn sampling_without_replacement_is_distinct_and_seeded() {
        let a = without_replacement(52_002, 4_096, 0);
        let mut s = a.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 4_096);
        assert_eq!(a, without_replacement(52_002, 4_096, 0));
        assert_ne!(a, without_replacement(52_002, 4_096, 1));
        assert_eq!(without_replacement(5, 5, 3).len(), 5);
    }
}
