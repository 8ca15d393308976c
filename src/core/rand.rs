//! Seeded, counter-based randomness: one `splitmix64` for the whole crate.
//!
//! The router's backoff jitter, batch job ids and the lab's fault patterns
//! all need numbers that look random but are a pure function of a seed and
//! a counter, so a sequence replays exactly (tests, the simulation). We
//! rejected the `rand` crate: one 64-bit mixer (Steele, Lea and Flood's
//! SplitMix64 finaliser, also Java's `SplittableRandom`) is all any of them
//! needs, and it keeps `core` free of dependencies.

/// The golden-ratio increment SplitMix64 adds between outputs.
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijective mix of `z` (every bit of the
/// input affects every bit of the output).
pub fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `n`-th output of the SplitMix64 stream seeded with `seed`.
pub fn nth(seed: u64, n: u64) -> u64 {
    splitmix64(seed.wrapping_add(n.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
}

/// A number in `[0, 1)` from 64 random bits (the top 53, a double's mantissa).
pub fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_range() {
        // The reference stream seeded with 0 (Vigna's splitmix64.c).
        assert_eq!(nth(0, 0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(nth(0, 1), 0x6E78_9E6A_A1B9_65F4);
        assert_ne!(nth(1, 0), nth(0, 0));
        for n in 0..10_000 {
            let u = unit(nth(7, n));
            assert!((0.0..1.0).contains(&u));
        }
        assert_eq!(unit(u64::MAX), 1.0 - 1.0 / (1u64 << 53) as f64);
        assert_eq!(unit(0), 0.0);
    }
}
