//! Wall-clock time as a port.
//!
//! Durations and timeouts use `tokio::time` (monotonic, and paused under
//! the simulation). Wall time is what crosses regions: vote timestamps,
//! journal entries, token expiries. It comes from a [`Clock`] so the
//! simulation can skew one region's clock against the others and check that
//! nothing compares two regions' clocks where it must not.

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
