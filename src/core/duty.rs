//! The active duties within the active region: which of its daemons holds
//! them (docs/instances.md, "One owner of the active duties").
//!
//! A region may run several daemons. The record names a *region* active;
//! among that region's daemons, one at a time holds the region's duties
//! (`/active` answers 200 on it alone, so a health check or a job runner
//! behind it sees one owner). The holder is written in a per-region item
//! of the control table (`DUTY` / `<region>`: holder, version), changed
//! only by conditional writes on its version, the way the record is
//! fenced by its version.
//!
//! The rules, all on the daemon's own monotonic clock (as the record's
//! lease, docs/lease.md "Only local clocks"):
//!
//! - a daemon whose region is named active writes itself as holder when the
//!   item is absent, released, already its own (a renewal), or has stood at
//!   the same version for a whole lease since this daemon first *received*
//!   a read showing that version (its holder stopped renewing);
//! - a daemon holds the duties while its last successful write was *sent*
//!   less than a lease ago (and its region is active by the record);
//! - a holder whose region is no longer named active releases the item
//!   (holder empty, version + 1), having stopped holding first, so the next
//!   time the region is active one of its daemons takes the duties at once.
//!
//! Why at most one holds at a time: the old holder's last successful write
//! was sent at `s` and committed at `c >= s`; a challenger's first read of
//! that version came back at `r >= c`, and it writes at `r + lease` or
//! later, when the holder's hold (from `s`) has run out. A write of the old
//! holder after the challenger's fails its condition (the version moved).
//! Both daemons of a region write the same replica (their region's), so the
//! conditions are decided in one place under MREC too.

use super::mono::Mono;

/// The duty item as read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DutyItem {
    /// The holding process (`<region>/<instance>.<nonce>`, unique per
    /// process); empty when released.
    pub holder: String,
    /// The holder's instance name, for display.
    pub instance: String,
    /// Raised by every write: the fence.
    pub version: u64,
}

/// A conditional write of the duty item: `expected` is the version it must
/// still be at (`None`: absent), and the item becomes `holder` (empty:
/// released) at `expected + 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DutyWrite {
    pub region: String,
    pub expected: Option<u64>,
    pub holder: String,
    pub instance: String,
}

/// What a daemon does with the duty item it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DutyStep {
    /// Write itself as holder (take or renew), expecting this version.
    Take { expected: Option<u64> },
    /// Release the item it holds (its region is no longer active).
    Release { expected: u64 },
    /// Another daemon holds it: wait; it may be taken after this long.
    Wait { remaining_ms: u64 },
    /// Nothing to do.
    Nothing,
}

/// One daemon's view of its region's duties.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DutyClock {
    /// When the last successful write naming us as holder was sent.
    pub confirmed_at: Option<Mono>,
    /// The version last read, and when a read first showed it.
    seen: Option<(u64, Mono)>,
}

impl DutyClock {
    /// Decide on a read of the item (`read`, received at `received`), as
    /// process `me`, whose region is (`named`) or is not named active.
    /// `lease_ms` is how long another holder's item must stand still before
    /// it is taken: the holder's lease, the longest the fleet announced
    /// by its region's votes (`quorum::longest_lease`), at least this
    /// daemon's own.
    pub fn step(
        &mut self,
        me: &str,
        named: bool,
        read: Option<&DutyItem>,
        received: Mono,
        lease_ms: u64,
    ) -> DutyStep {
        let version = read.map_or(0, |d| d.version);
        match self.seen {
            Some((v, _)) if v == version => {}
            _ => self.seen = Some((version, received)),
        }
        let mine = read.is_some_and(|d| d.holder == me);
        if !named {
            // Stop holding first, then release.
            self.confirmed_at = None;
            return match read {
                Some(d) if mine => DutyStep::Release {
                    expected: d.version,
                },
                _ => DutyStep::Nothing,
            };
        }
        match read {
            None => DutyStep::Take { expected: None },
            Some(d) if d.holder.is_empty() || mine => DutyStep::Take {
                expected: Some(d.version),
            },
            Some(d) => {
                // Another holder: we do not hold, whatever we thought.
                self.confirmed_at = None;
                let since = self.seen.map_or(0, |(_, at)| received.since(at));
                if since >= lease_ms {
                    DutyStep::Take {
                        expected: Some(d.version),
                    }
                } else {
                    DutyStep::Wait {
                        remaining_ms: lease_ms - since,
                    }
                }
            }
        }
    }

    /// Our write naming us as holder, sent at `sent`, succeeded.
    pub fn written(&mut self, sent: Mono) {
        self.confirmed_at = Some(self.confirmed_at.map_or(sent, |c| c.max(sent)));
    }

    /// Our write lost its condition: someone else moved first.
    pub fn lost(&mut self) {
        self.confirmed_at = None;
    }

    /// Do we hold the duties at `now`?
    pub fn holds(&self, now: Mono, lease_ms: u64) -> bool {
        self.confirmed_at.is_some_and(|at| now.since(at) < lease_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: u64 = 30_000;

    fn item(holder: &str, version: u64) -> DutyItem {
        DutyItem {
            holder: holder.into(),
            instance: holder.into(),
            version,
        }
    }

    #[test]
    fn the_first_daemon_takes_and_renews_the_second_waits_a_lease() {
        let mut a = DutyClock::default();
        let mut b = DutyClock::default();
        assert_eq!(
            a.step("a", true, None, Mono(0), LEASE),
            DutyStep::Take { expected: None }
        );
        a.written(Mono(0));
        assert!(a.holds(Mono(29_999), LEASE));
        assert!(!a.holds(Mono(30_000), LEASE));
        // b reads a's item: it waits a lease from its first read.
        assert_eq!(
            b.step("b", true, Some(&item("a", 1)), Mono(1_000), LEASE),
            DutyStep::Wait {
                remaining_ms: LEASE
            }
        );
        // a renews (version 2): b's wait starts again.
        assert_eq!(
            a.step("a", true, Some(&item("a", 1)), Mono(5_000), LEASE),
            DutyStep::Take { expected: Some(1) }
        );
        a.written(Mono(5_000));
        assert!(matches!(
            b.step("b", true, Some(&item("a", 2)), Mono(30_000), LEASE),
            DutyStep::Wait { remaining_ms } if remaining_ms == LEASE
        ));
        // a dies; b takes once version 2 stood a lease on b's clock, and
        // by then a's hold (from its send at 5 s) has run out.
        assert_eq!(
            b.step("b", true, Some(&item("a", 2)), Mono(60_000), LEASE),
            DutyStep::Take { expected: Some(2) }
        );
        assert!(!a.holds(Mono(60_000), LEASE));
        assert!(!b.holds(Mono(60_000), LEASE), "not before its write");
        b.written(Mono(60_000));
        assert!(b.holds(Mono(60_001), LEASE));
    }

    #[test]
    fn a_holder_no_longer_named_active_stops_and_releases() {
        let mut a = DutyClock::default();
        a.step("a", true, None, Mono(0), LEASE);
        a.written(Mono(0));
        assert_eq!(
            a.step("a", false, Some(&item("a", 1)), Mono(1_000), LEASE),
            DutyStep::Release { expected: 1 }
        );
        assert!(!a.holds(Mono(1_000), LEASE), "before the release is sent");
        // Released: the next daemon takes at once.
        let mut b = DutyClock::default();
        assert_eq!(
            b.step("b", true, Some(&item("", 2)), Mono(2_000), LEASE),
            DutyStep::Take { expected: Some(2) }
        );
        // A daemon that does not hold it does nothing when not named.
        assert_eq!(
            b.step("b", false, Some(&item("a", 2)), Mono(3_000), LEASE),
            DutyStep::Nothing
        );
    }

    #[test]
    fn a_lost_write_or_another_holder_ends_the_hold() {
        let mut a = DutyClock::default();
        a.step("a", true, None, Mono(0), LEASE);
        a.written(Mono(0));
        a.lost();
        assert!(!a.holds(Mono(1), LEASE));
        a.written(Mono(2));
        a.step("a", true, Some(&item("b", 9)), Mono(3), LEASE);
        assert!(!a.holds(Mono(4), LEASE));
    }
}
