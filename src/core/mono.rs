//! Local time for local durations.
//!
//! A [`Mono`] is a reading of one process's monotonic clock, in
//! milliseconds since an origin of that process's choosing. It never steps
//! when the wall clock does (an NTP correction, an operator's `date -s`), so
//! every duration this daemon measures for itself — the lease, the wait for
//! a predecessor's lease, how long the record has stalled, how long ago a
//! vote or a token was first seen — is measured in `Mono`, never in wall
//! milliseconds. It is a type of its own so that the compiler refuses to mix
//! the two: a `Mono` means nothing to another process, and a wall timestamp
//! read from the table means nothing to this clock.
//!
//! Wall time (`u64` unix milliseconds) stays where a time is shown or
//! shared: vote timestamps, journal entries, token and claim expiries, the
//! record's own times.

use serde::{Deserialize, Serialize};

/// Milliseconds on this process's monotonic clock.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Mono(pub u64);

impl Mono {
    /// Milliseconds from `earlier` to `self` (0 if `earlier` is later).
    pub fn since(self, earlier: Mono) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// `ms` later.
    pub fn plus(self, ms: u64) -> Mono {
        Mono(self.0.saturating_add(ms))
    }

    /// Express `self`, a moment on this clock, on the wall clock, given a
    /// reading of both taken together (`now` and `wall_now`): for showing,
    /// never for comparing with another host's times.
    pub fn to_wall(self, now: Mono, wall_now: u64) -> u64 {
        if self <= now {
            wall_now.saturating_sub(now.since(self))
        } else {
            wall_now.saturating_add(self.since(now))
        }
    }

    /// The inverse of [`Mono::to_wall`] for a moment not yet past: `wall`
    /// (unix ms) on this clock, given a reading of both taken together; a
    /// wall time already past is `now`.
    pub fn from_wall(wall: u64, now: Mono, wall_now: u64) -> Mono {
        now.plus(wall.saturating_sub(wall_now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_saturate_and_convert() {
        assert_eq!(Mono(5_000).since(Mono(1_000)), 4_000);
        assert_eq!(Mono(1_000).since(Mono(5_000)), 0);
        assert_eq!(Mono(1_000).plus(u64::MAX), Mono(u64::MAX));
        assert_eq!(Mono(1_000).to_wall(Mono(5_000), 1_000_000), 996_000);
        assert_eq!(Mono(9_000).to_wall(Mono(5_000), 1_000_000), 1_004_000);
    }
}
