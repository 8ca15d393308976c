//! Wall-clock time and randomness as ports.
//!
//! Durations are measured on the port's monotonic clock ([`Clock::monotonic`]:
//! tokio's `Instant`, which the simulation's paused runtime advances), and
//! timeouts wait on `tokio::time`. Wall time is what crosses regions: vote timestamps,
//! journal entries, token expiries. It comes from a [`Clock`] so the
//! simulation can skew one region's clock against the others and check that
//! nothing compares two regions' clocks where it must not. Randomness
//! (incarnation ids, jitter) comes from an [`Entropy`] so one seed replays a
//! whole run.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

pub use crate::core::mono::Mono;

/// A source of time: the wall clock, and a monotonic one for durations.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the unix epoch, as this host's clock says.
    fn now_ms(&self) -> u64;

    /// Now on this host's monotonic clock, for durations, deadlines and
    /// ages measured here: it never steps when the wall clock does.
    fn monotonic(&self) -> Instant;

    /// How long since `earlier` on the monotonic clock.
    fn since(&self, earlier: Instant) -> Duration {
        self.monotonic().saturating_duration_since(earlier)
    }

    /// Now on the monotonic clock as [`Mono`] milliseconds, for the local
    /// durations the pure core measures (the lease, stalls, first
    /// sightings). The origin is this process's first reading less a day,
    /// so no reading is ever 0 and none saturates.
    fn mono(&self) -> Mono {
        self.mono_at(self.monotonic())
    }

    /// `at`, a reading of [`Clock::monotonic`], as [`Mono`] milliseconds.
    fn mono_at(&self, at: Instant) -> Mono {
        mono_of(at)
    }
}

/// `at` as [`Mono`] milliseconds of this process.
pub fn mono_of(at: Instant) -> Mono {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    const HEADROOM: Duration = Duration::from_secs(86_400);
    let origin = *ORIGIN.get_or_init(|| at);
    let ms = if at >= origin {
        HEADROOM + at.duration_since(origin)
    } else {
        HEADROOM.saturating_sub(origin.duration_since(at))
    };
    Mono(ms.as_millis() as u64)
}

/// The host's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one read of the host's wall clock in the daemon (clippy.toml
    // disallows it everywhere else).
    #[allow(clippy::disallowed_methods)]
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    // The one read of the monotonic clock in the daemon (clippy.toml
    // disallows it everywhere else).
    #[allow(clippy::disallowed_methods)]
    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// Unix milliseconds from the host's clock, for the lab's tools and tests.
/// Daemon code takes time from the [`Clock`] port (clippy.toml disallows
/// this function under `src/`).
pub fn wall_ms() -> u64 {
    SystemClock.now_ms()
}

/// `ms` (unix milliseconds) as a [`SystemTime`], for what needs one (SigV4).
pub fn system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// RFC 3339 with milliseconds, for humans and the journal's sort key.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(system_time(ms)).to_string()
}

/// Parse RFC 3339 (`2026-11-26T17:56:54.123Z`, `...+00:00`) to unix ms.
pub fn parse_time(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t
        .strip_suffix("+00:00")
        .map(|x| format!("{x}Z"))
        .unwrap_or_else(|| t.to_string());
    humantime::parse_rfc3339_weak(&t)
        .ok()
        .and_then(|st| st.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
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
    // Seeds randomness with the clock's nanoseconds: not a time reading.
    #[allow(clippy::disallowed_methods)]
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
