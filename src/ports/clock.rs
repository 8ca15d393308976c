//! Wall-clock time and randomness as ports.
//!
//! Durations and timeouts use `tokio::time` (monotonic, and paused under
//! the simulation). Wall time is what crosses regions: vote timestamps,
//! journal entries, token expiries. It comes from a [`Clock`] so the
//! simulation can skew one region's clock against the others and check that
//! nothing compares two regions' clocks where it must not. Randomness
//! (incarnation ids, jitter) comes from an [`Entropy`] so one seed replays a
//! whole run.

use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the unix epoch, as this host's clock says.
    fn now_ms(&self) -> u64;
}

/// The host's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A source of random numbers.
pub trait Entropy: Send + Sync + 'static {
    fn next_u64(&self) -> u64;
}

/// Randomness from the standard library's per-process random hash keys,
/// mixed with a counter: enough for ids and jitter (not for secrets).
#[derive(Debug, Default)]
pub struct SystemEntropy {
    counter: std::sync::atomic::AtomicU64,
}

impl Entropy for SystemEntropy {
    fn next_u64(&self) -> u64 {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    }
}
