//! The trainer's own seeded random numbers: data generation, shuffling and weight
//! initialisation draw from here, never from libtorch's process-wide generator, so
//! they are reproducible even while other jobs run in the same process.
//!
//! SplitMix64: tiny, fast, and good enough for shuffles and initial weights.

/// A SplitMix64 stream.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller; one of the pair is discarded for simplicity).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // in (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform integer in [0, n); n must be > 0.
    pub fn below(&mut self, n: usize) -> usize {
        // Multiply-shift: bias is negligible for the sizes used here.
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// A seed for one purpose of one run, mixed from the run's seed and tags, so that
/// streams (init, epoch 3's shuffle, step 17's dropout) are independent.
pub fn derive(seed: u64, tags: &[u64]) -> u64 {
    let mut rng = Rng::new(seed ^ 0x5EED_0FEC_C1A5);
    let mut out = rng.next_u64();
    for &tag in tags {
        let mut mix = Rng::new(out ^ tag.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        out = mix.next_u64();
    }
    out
}

/// Stream tags for [`derive`].
pub mod purpose {
    pub const INIT: u64 = 1;
    pub const SHUFFLE: u64 = 2;
    pub const TORCH: u64 = 3;
    pub const SPLIT: u64 = 4;
    pub const DATA: u64 = 5;
}

/// The epoch's order of training rows: a function of (seed, epoch) only, so a resumed
/// run replays it exactly.
pub fn epoch_permutation(seed: u64, epoch: usize, n: usize) -> Vec<i64> {
    let mut order: Vec<i64> = (0..n as i64).collect();
    Rng::new(derive(seed, &[purpose::SHUFFLE, epoch as u64])).shuffle(&mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        assert_eq!(epoch_permutation(1, 0, 50), epoch_permutation(1, 0, 50));
        assert_ne!(epoch_permutation(1, 0, 50), epoch_permutation(2, 0, 50));
        assert_ne!(epoch_permutation(1, 0, 50), epoch_permutation(1, 1, 50));
        let mut sorted = epoch_permutation(3, 4, 50);
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<i64>>());
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut rng = Rng::new(7);
        let draws: Vec<f64> = (0..20_000).map(|_| rng.normal()).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
