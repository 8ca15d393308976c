//! Scheduled capacity: a business-hours and an off-hours minimum per
//! provisioned endpoint, as weekly windows in an IANA time zone, and the
//! rule that keeps the schedule from fighting failover. Pure: no I/O, no
//! clock (time passed in as unix milliseconds).
//!
//! # Windows
//!
//! A [`Window`] is the seed's pair of cron expressions (`cron(0 9 ? * MON-FRI
//! *)` up, `cron(0 18 ? * MON-FRI *)` down) said as one range: days of the
//! week, a start and an end in local wall-clock time, and the minimum that
//! holds inside. `end <= start` crosses midnight (the days name the day the
//! window *starts*); `end = "24:00"` is the end of the day. Outside every
//! window the schedule's off-hours minimum holds.
//!
//! We evaluate the schedule as a *level* (what minimum holds at this instant)
//! rather than firing edge events as cron does: a daemon that was down at
//! 09:00 still applies business hours at 09:05, and a reload applies at once.
//!
//! # Daylight saving
//!
//! Local times are resolved in the zone with jiff's bundled copy of the IANA
//! database (the `tzdb-bundle-always` feature: the same answers on a host
//! without `/usr/share/zoneinfo` and on one with an older copy). A window
//! boundary at local time `T` on date `D` is **the first instant at which the
//! zone's clock reads `T` or later on `D`**:
//!
//! - in a spring-forward gap (`02:30` in New York on the second Sunday of
//!   March does not exist) that is the transition itself (`03:00` EDT): the
//!   window starts (or ends) as the clock jumps over its boundary;
//! - in a fall-back fold (`01:30` happens twice) it is the first occurrence:
//!   a window runs once, and is not re-entered when the clock repeats.
//!
//! So a daily `00:00–06:00` window lasts 5 hours of real time on the
//! spring-forward day and 7 on the fall-back day, as an operator reading a
//! wall clock expects. AWS's `ScheduledAction` with a `TimeZone` is edge
//! triggered and documents its own DST handling; [`Window::aws_crons`]
//! renders the pair of crons for teams that deploy those instead.
//!
//! # Overlapping windows
//!
//! Windows may overlap; **the highest minimum wins** (ties go to the window
//! listed first, for the reason shown). Overlaps therefore never lower
//! capacity, which is the safe direction for a schedule, and adding a window
//! can only raise the minimum at any instant (a property test checks it).
//! We rejected refusing overlaps: a weekday window plus a "month-end batch"
//! window is a reasonable thing to write.
//!
//! # Next to failover
//!
//! [`desired_minimum`] turns the schedule into what the daemon should set:
//! never while a failover is in flight (the prepare step and the switch own
//! every region then), never below what the router has measured the active
//! region needs, never lower an active region (or a `tier1` standby) whose
//! need is unknown, and a `tier1` standby holds at least the active's need.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone, TimeZoneDatabase};
use jiff::{Timestamp, ToSpan};
use serde::{Serialize, Serializer};

use super::tier::{Guard, RegionRole, StandbyHolds, Tier};

/// Minutes in a day; an `end` of 1440 is `24:00`.
const DAY_MINUTES: u16 = 1440;

/// The IANA database compiled into the binary (never the host's).
fn database() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

/// A time zone name the bundled IANA database does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IANA time zone (write it like \"America/New_York\" or \"Europe/London\")")]
pub struct UnknownTimeZone(pub String);

/// Look up an IANA zone name in the bundled database.
pub fn time_zone(name: &str) -> Result<TimeZone, UnknownTimeZone> {
    database()
        .get(name)
        .map_err(|_| UnknownTimeZone(name.to_string()))
}

/// Days of the week a window starts on (bit 0 = Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(u8);

const DAY_NAMES: [&str; 7] = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

impl Days {
    pub const ALL: Days = Days(0x7f);

    pub fn contains(self, d: Weekday) -> bool {
        self.0 & (1 << d.to_monday_zero_offset()) != 0
    }

    fn names(self) -> impl Iterator<Item = &'static str> {
        (0..7)
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(|i| DAY_NAMES[i])
    }

    /// The days after each of these (a window crossing midnight ends then).
    fn shifted(self) -> Days {
        Days(((self.0 << 1) | (self.0 >> 6)) & 0x7f)
    }
}

/// Why a days expression did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a set of days: write day names MON..SUN, ranges and commas (\"MON-FRI\", \"SAT,SUN\", \"FRI-MON\") or \"*\""
)]
pub struct BadDays(pub String);

impl FromStr for Days {
    type Err = BadDays;

    /// `*`, `MON-FRI`, `SAT,SUN`, `MON-WED,FRI`, `FRI-MON` (wraps), any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadDays(s.to_string());
        let s_up = s.trim().to_ascii_uppercase();
        if s_up == "*" {
            return Ok(Days::ALL);
        }
        let day = |n: &str| DAY_NAMES.iter().position(|d| *d == n.trim());
        let mut bits = 0u8;
        for part in s_up.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a).ok_or_else(bad)?, day(b).ok_or_else(bad)?);
                    let mut i = a;
                    loop {
                        bits |= 1 << i;
                        if i == b {
                            break;
                        }
                        i = (i + 1) % 7;
                    }
                }
                None => bits |= 1 << day(part).ok_or_else(bad)?,
            }
        }
        Ok(Days(bits))
    }
}

impl fmt::Display for Days {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Days::ALL {
            return f.write_str("*");
        }
        f.write_str(&self.names().collect::<Vec<_>>().join(","))
    }
}

impl Serialize for Days {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A wall-clock time `HH:MM`, as minutes after midnight (`24:00` = 1440).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Clock(u16);

/// Why a wall-clock time did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a time of day: write it \"HH:MM\" from \"00:00\" to \"24:00\"")]
pub struct BadClock(pub String);

impl Clock {
    pub fn minutes(self) -> u16 {
        self.0
    }

    pub fn from_minutes(m: u16) -> Option<Clock> {
        (m <= DAY_MINUTES).then_some(Clock(m))
    }
}

impl FromStr for Clock {
    type Err = BadClock;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadClock(s.to_string());
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return Err(bad());
        }
        let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 24 || m > 59 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(Clock(h * 60 + m))
    }
}

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for Clock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One weekly window and the minimum that holds inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Days the window starts on.
    pub days: Days,
    /// Local start, `00:00`..`23:59`.
    pub start: Clock,
    /// Local end; `<= start` crosses midnight, `24:00` ends the day.
    pub end: Clock,
    /// Minimum instance count inside the window.
    pub min: u32,
}

/// A window that cannot be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadWindow {
    #[error("start {0} is the end of the day; a window starts at 00:00..23:59")]
    StartAtMidnight(Clock),
    #[error(
        "start and end are both {0}: an empty (or 24-hour) window is ambiguous; write 00:00-24:00 for a whole day"
    )]
    Empty(Clock),
}

impl Window {
    pub fn new(days: Days, start: Clock, end: Clock, min: u32) -> Result<Window, BadWindow> {
        if start.0 == DAY_MINUTES {
            return Err(BadWindow::StartAtMidnight(start));
        }
        if start == end {
            return Err(BadWindow::Empty(start));
        }
        Ok(Window {
            days,
            start,
            end,
            min,
        })
    }

    fn crosses_midnight(&self) -> bool {
        self.end <= self.start
    }

    /// The window's occurrence that starts on local `date`, as `[start, end)`
    /// instants, if the window starts on that day.
    fn occurrence(&self, tz: &TimeZone, date: Date) -> Option<(Timestamp, Timestamp)> {
        if !self.days.contains(date.weekday()) {
            return None;
        }
        let start = boundary(tz, date, self.start)?;
        let end_date = if self.crosses_midnight() {
            date.tomorrow().ok()?
        } else {
            date
        };
        let end = boundary(tz, end_date, self.end)?;
        Some((start, end))
    }

    /// The two AWS Application Auto Scaling crons (`ScheduledAction`
    /// `Schedule`) that open and close this window: `(up, down)`. The
    /// closing one's days move a day on when the window crosses midnight.
    pub fn aws_crons(&self) -> (String, String) {
        let cron = |c: Clock, days: Days| format!("cron({} {} ? * {days} *)", c.0 % 60, c.0 / 60);
        let up = cron(self.start, self.days);
        let down = if self.end.0 == DAY_MINUTES {
            cron(Clock(0), self.days.shifted())
        } else if self.crosses_midnight() {
            cron(self.end, self.days.shifted())
        } else {
            cron(self.end, self.days)
        };
        (up, down)
    }
}

/// The first instant at which `tz`'s clock reads `at` or later on `date`
/// (see the module doc for gaps and folds).
fn boundary(tz: &TimeZone, date: Date, at: Clock) -> Option<Timestamp> {
    if at.0 == DAY_MINUTES {
        return boundary(tz, date.tomorrow().ok()?, Clock(0));
    }
    let dt: DateTime = date.at((at.0 / 60) as i8, (at.0 % 60) as i8, 0, 0);
    let amb = tz.to_ambiguous_timestamp(dt);
    match amb.offset() {
        AmbiguousOffset::Unambiguous { .. } => amb.unambiguous().ok(),
        // Both readings of a repeated time: the first is earlier.
        AmbiguousOffset::Fold { .. } => amb.earlier().ok(),
        // `at` is skipped: the clock first reads past it at the transition,
        // which follows `at` read with the post-gap offset.
        AmbiguousOffset::Gap { .. } => {
            let before_gap = amb.earlier().ok()?;
            tz.following(before_gap).next().map(|t| t.timestamp())
        }
    }
}

/// One provisioned endpoint's schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    /// IANA zone name, as written.
    pub timezone: String,
    #[serde(skip)]
    tz: TimeZone,
    /// Minimum outside every window.
    pub off_hours_min: u32,
    /// Windows, in the order written (ties in the highest minimum go to the
    /// first).
    pub windows: Vec<Window>,
}

/// What the schedule asks for at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Scheduled {
    pub min: u32,
    /// Index of the window that set it; `None` = off hours.
    pub window: Option<usize>,
}

impl Schedule {
    pub fn new(
        timezone: &str,
        off_hours_min: u32,
        windows: Vec<Window>,
    ) -> Result<Schedule, UnknownTimeZone> {
        Ok(Schedule {
            tz: time_zone(timezone)?,
            timezone: timezone.to_string(),
            off_hours_min,
            windows,
        })
    }

    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// The minimum that holds at `now_ms` (unix ms).
    pub fn at(&self, now_ms: u64) -> Scheduled {
        let Some(now) = timestamp(now_ms) else {
            return self.off_hours();
        };
        let mut best: Option<Scheduled> = None;
        for (i, w) in self.windows.iter().enumerate() {
            if self.covers(w, now) && best.is_none_or(|b| w.min > b.min) {
                best = Some(Scheduled {
                    min: w.min,
                    window: Some(i),
                });
            }
        }
        best.unwrap_or_else(|| self.off_hours())
    }

    fn off_hours(&self) -> Scheduled {
        Scheduled {
            min: self.off_hours_min,
            window: None,
        }
    }

    /// Whether window `w` covers `now`: some occurrence starting the local
    /// day before, of or after `now`'s contains it. (A window is shorter
    /// than a day of wall clock; the day after only matters where a zone
    /// moved its clock back across midnight.)
    fn covers(&self, w: &Window, now: Timestamp) -> bool {
        let today = self.tz.to_datetime(now).date();
        [today.yesterday().ok(), Some(today), today.tomorrow().ok()]
            .into_iter()
            .flatten()
            .filter_map(|d| w.occurrence(&self.tz, d))
            .any(|(s, e)| s <= now && now < e)
    }

    /// Whether `now_ms` is inside some window (business hours).
    pub fn in_window(&self, now_ms: u64) -> bool {
        self.at(now_ms).window.is_some()
    }

    /// The first instant after `now_ms` at which the scheduled minimum
    /// changes, within the next eight days; `None` when it never does.
    pub fn next_change(&self, now_ms: u64) -> Option<u64> {
        let now = timestamp(now_ms)?;
        let current = self.at(now_ms).min;
        let today = self.tz.to_datetime(now).date();
        let mut edges: Vec<Timestamp> = Vec::new();
        for offset in -1..=8i64 {
            let Ok(d) = today.checked_add(offset.days()) else {
                continue;
            };
            for w in &self.windows {
                if let Some((s, e)) = w.occurrence(&self.tz, d) {
                    edges.extend([s, e]);
                }
            }
        }
        edges.retain(|e| *e > now);
        edges.sort();
        edges
            .into_iter()
            .map(|e| e.as_millisecond() as u64)
            .find(|&e| self.at(e).min != current)
    }
}

/// `now_ms` as a jiff timestamp (`None` beyond jiff's range, year 9999).
fn timestamp(ms: u64) -> Option<Timestamp> {
    Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()
}

/// Everything [`desired_minimum`] needs, for one provisioned endpoint.
#[derive(Debug, Clone, Copy)]
pub struct CapacityInputs<'a> {
    pub now_ms: u64,
    /// The endpoint's schedule; `None` = no schedule (the floor holds).
    pub schedule: Option<&'a Schedule>,
    /// The lowest minimum the endpoint may have at all: 1 for production
    /// variants (only inference components scale to zero).
    pub floor: u32,
    /// The endpoint's region's role now.
    pub role: RegionRole,
    /// The strictest tier of the models the endpoint serves.
    pub tier: Tier,
    /// Instances the fleet's traffic needs now, as the routers measured it
    /// (wherever it was served); `None` when not measured (just started,
    /// no per-instance figure, a router without counts).
    pub active_need: Option<u32>,
    /// Why the region must not be lowered now (`core::tier::guard`):
    /// it is then held like the active region, and never lowered.
    pub guard: Option<Guard>,
    /// The scalable target's `MinCapacity` now, if read.
    pub current_min: Option<u32>,
    /// A failover (prepare, switch or settle) is running.
    pub failover_in_flight: bool,
}

/// What the daemon should do with an endpoint's minimum capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum CapacityDecision {
    /// Set the minimum to `min` (which may equal the current one).
    Set { min: u32, why: Basis },
    /// Do not touch the endpoint.
    Leave { why: LeaveReason },
}

/// Which floor set the minimum (the highest of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "basis", rename_all = "snake_case")]
pub enum Basis {
    /// The schedule: window `window` (or off hours when `None`).
    Schedule { window: Option<usize>, min: u32 },
    /// The endpoint's floor (no schedule, or the schedule asked for less).
    Floor { min: u32 },
    /// What the routers measured the fleet's traffic needs.
    ActiveNeed { need: u32 },
}

/// Why an endpoint is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// A failover is in flight: it owns every region until it settles.
    FailoverInFlight,
    /// The region is the target of a failover being prepared.
    FailoverTarget,
    /// The schedule would lower a region that must hold the active's need,
    /// and the router has not measured that need.
    NeedUnknown,
    /// The rules would lower a region that is guarded ([`Guard`]).
    Guarded { guard: Guard },
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Basis::Schedule {
                window: Some(i),
                min,
            } => write!(f, "schedule window {i}: minimum {min}"),
            Basis::Schedule { window: None, min } => write!(f, "off hours: minimum {min}"),
            Basis::Floor { min } => write!(f, "endpoint floor {min}"),
            Basis::ActiveNeed { need } => {
                write!(f, "the routers measured the fleet's traffic needs {need}")
            }
        }
    }
}

impl fmt::Display for LeaveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeaveReason::Guarded { guard } => return guard.fmt(f),
            LeaveReason::FailoverInFlight => "a failover is in flight",
            LeaveReason::FailoverTarget => "the region is a failover target being prepared",
            LeaveReason::NeedUnknown => {
                "the active region's need is not measured yet; not lowering"
            }
        })
    }
}

/// The minimum an endpoint should have now: the highest of the schedule,
/// the endpoint floor and (for the active region, a `tier1` standby and a
/// guarded region) the fleet's measured need; or leave it alone (see
/// [`LeaveReason`]). A guarded region ([`Guard`]) is never lowered.
pub fn desired_minimum(i: &CapacityInputs<'_>) -> CapacityDecision {
    if i.failover_in_flight {
        return CapacityDecision::Leave {
            why: LeaveReason::FailoverInFlight,
        };
    }
    let holds_need = match i.role {
        RegionRole::FailoverTarget => {
            return CapacityDecision::Leave {
                why: LeaveReason::FailoverTarget,
            };
        }
        RegionRole::Active => true,
        RegionRole::Standby => {
            i.guard.is_some() || i.tier.standby_holds() == StandbyHolds::ActiveNeed
        }
    };
    let mut why = match i.schedule.map(|s| s.at(i.now_ms)) {
        Some(s) if s.min >= i.floor => Basis::Schedule {
            window: s.window,
            min: s.min,
        },
        _ => Basis::Floor { min: i.floor },
    };
    let mut min = match why {
        Basis::Schedule { min, .. } | Basis::Floor { min } => min,
        Basis::ActiveNeed { need } => need,
    };
    if holds_need {
        match i.active_need {
            Some(need) if need > min => {
                min = need;
                why = Basis::ActiveNeed { need };
            }
            Some(_) => {}
            None if i.current_min.is_some_and(|c| c > min) => {
                return CapacityDecision::Leave {
                    why: i
                        .guard
                        .map_or(LeaveReason::NeedUnknown, |guard| LeaveReason::Guarded {
                            guard,
                        }),
                };
            }
            None => {}
        }
    }
    if let Some(guard) = i.guard
        && i.current_min.is_some_and(|c| c > min)
    {
        return CapacityDecision::Leave {
            why: LeaveReason::Guarded { guard },
        };
    }
    CapacityDecision::Set { min, why }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;

    fn ms(ts: Timestamp) -> u64 {
        ts.as_millisecond() as u64
    }

    /// Unix ms of a UTC civil time.
    fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> u64 {
        ms(date(y, mo, d)
            .at(h, mi, 0, 0)
            .to_zoned_datetime(TimeZone::UTC)
            .unwrap()
            .timestamp())
    }

    fn win(days: &str, start: &str, end: &str, min: u32) -> Window {
        Window::new(
            days.parse().unwrap(),
            start.parse().unwrap(),
            end.parse().unwrap(),
            min,
        )
        .unwrap()
    }

    /// Real time (minutes) the occurrence starting on `d` lasts.
    fn length(s: &Schedule, w: usize, d: Date) -> i64 {
        let (a, b) = s.windows[w].occurrence(&s.tz, d).unwrap();
        (b.as_second() - a.as_second()) / 60
    }

    #[test]
    fn the_bundled_database_knows_the_zones_without_the_host() {
        // The tzdb-bundle-always feature: no zoneinfo lookup happens at all.
        for z in [
            "America/New_York",
            "Europe/London",
            "Australia/Lord_Howe",
            "UTC",
        ] {
            assert!(time_zone(z).is_ok(), "{z}");
        }
        assert_eq!(
            time_zone("Mars/Olympus").unwrap_err().to_string(),
            "\"Mars/Olympus\" is not an IANA time zone (write it like \"America/New_York\" or \"Europe/London\")"
        );
    }

    #[test]
    fn days_and_clocks_parse() {
        assert_eq!(
            "mon-fri".parse::<Days>().unwrap().to_string(),
            "MON,TUE,WED,THU,FRI"
        );
        assert_eq!(
            "FRI-MON".parse::<Days>().unwrap().to_string(),
            "MON,FRI,SAT,SUN"
        );
        assert_eq!("*".parse::<Days>().unwrap(), Days::ALL);
        assert_eq!("MON-SUN".parse::<Days>().unwrap(), Days::ALL);
        for bad in ["", "MO", "MON-", "MON,,TUE", "weekdays"] {
            assert!(bad.parse::<Days>().is_err(), "{bad}");
        }
        assert_eq!("9:05".parse::<Clock>().unwrap().minutes(), 545);
        assert_eq!("24:00".parse::<Clock>().unwrap().minutes(), 1440);
        for bad in ["24:01", "12:60", "12", "12:5", "-1:00", "a:bc", "123:00"] {
            assert!(bad.parse::<Clock>().is_err(), "{bad}");
        }
        assert!(matches!(
            Window::new(Days::ALL, Clock(600), Clock(600), 1),
            Err(BadWindow::Empty(_))
        ));
        assert!(matches!(
            Window::new(Days::ALL, Clock(1440), Clock(60), 1),
            Err(BadWindow::StartAtMidnight(_))
        ));
    }

    #[test]
    fn the_seeds_business_hours_in_new_york() {
        let s = Schedule::new(
            "America/New_York",
            1,
            vec![win("MON-FRI", "09:00", "18:00", 2)],
        )
        .unwrap();
        // Monday 2025-01-06: EST, UTC-5.
        assert_eq!(s.at(utc(2025, 1, 6, 13, 59)).min, 1);
        assert_eq!(s.at(utc(2025, 1, 6, 14, 0)).min, 2);
        assert_eq!(s.at(utc(2025, 1, 6, 22, 59)).min, 2);
        assert_eq!(s.at(utc(2025, 1, 6, 23, 0)).min, 1);
        // Monday 2025-07-07: EDT, UTC-4: the same wall clock, an hour earlier in UTC.
        assert_eq!(s.at(utc(2025, 7, 7, 13, 0)).min, 2);
        assert_eq!(s.at(utc(2025, 7, 7, 22, 0)).min, 1);
        // Saturday.
        assert_eq!(s.at(utc(2025, 1, 11, 15, 0)).min, 1);
        assert_eq!(
            s.next_change(utc(2025, 1, 6, 12, 0)),
            Some(utc(2025, 1, 6, 14, 0))
        );
        assert_eq!(
            s.next_change(utc(2025, 1, 10, 23, 30)),
            Some(utc(2025, 1, 13, 14, 0)),
            "Friday evening -> Monday"
        );
        assert_eq!(
            win("MON-FRI", "09:00", "18:00", 2).aws_crons(),
            (
                "cron(0 9 ? * MON,TUE,WED,THU,FRI *)".into(),
                "cron(0 18 ? * MON,TUE,WED,THU,FRI *)".into()
            )
        );
        assert_eq!(
            win("FRI", "22:30", "02:00", 2).aws_crons(),
            ("cron(30 22 ? * FRI *)".into(), "cron(0 2 ? * SAT *)".into())
        );
        assert_eq!(
            win("SUN", "20:00", "24:00", 2).aws_crons().1,
            "cron(0 0 ? * MON *)"
        );
    }

    #[test]
    fn dst_days_lengthen_and_shorten_windows_in_real_time() {
        let ny = Schedule::new("America/New_York", 1, vec![win("*", "00:00", "06:00", 3)]).unwrap();
        assert_eq!(length(&ny, 0, date(2025, 3, 8)), 360);
        assert_eq!(length(&ny, 0, date(2025, 3, 9)), 300, "spring forward: 5 h");
        assert_eq!(length(&ny, 0, date(2025, 11, 2)), 420, "fall back: 7 h");
        let ldn = Schedule::new("Europe/London", 1, vec![win("*", "00:00", "06:00", 3)]).unwrap();
        assert_eq!(length(&ldn, 0, date(2025, 3, 30)), 300);
        assert_eq!(length(&ldn, 0, date(2025, 10, 26)), 420);
        // Lord Howe moves its clock by 30 minutes.
        let lh = Schedule::new(
            "Australia/Lord_Howe",
            1,
            vec![win("*", "00:00", "06:00", 3)],
        )
        .unwrap();
        assert_eq!(length(&lh, 0, date(2025, 4, 6)), 390);
        assert_eq!(length(&lh, 0, date(2025, 10, 5)), 330);
    }

    #[test]
    fn a_boundary_in_the_gap_is_the_jump_and_in_the_fold_the_first_pass() {
        // New York, 2025-03-09: 02:00 EST -> 03:00 EDT at 07:00 UTC.
        let s = Schedule::new("America/New_York", 1, vec![win("*", "02:30", "04:00", 5)]).unwrap();
        assert_eq!(s.at(utc(2025, 3, 9, 6, 59)).min, 1);
        assert_eq!(
            s.at(utc(2025, 3, 9, 7, 0)).min,
            5,
            "starts at the jump (03:00 EDT)"
        );
        assert_eq!(s.at(utc(2025, 3, 9, 7, 59)).min, 5);
        assert_eq!(s.at(utc(2025, 3, 9, 8, 0)).min, 1, "ends 04:00 EDT");
        // London, 2025-10-26: 02:00 BST -> 01:00 GMT at 01:00 UTC.
        let s = Schedule::new("Europe/London", 1, vec![win("*", "01:15", "01:45", 5)]).unwrap();
        assert_eq!(s.at(utc(2025, 10, 26, 0, 14)).min, 1);
        assert_eq!(s.at(utc(2025, 10, 26, 0, 15)).min, 5, "01:15 BST");
        assert_eq!(s.at(utc(2025, 10, 26, 0, 44)).min, 5);
        assert_eq!(s.at(utc(2025, 10, 26, 0, 45)).min, 1);
        assert_eq!(
            s.at(utc(2025, 10, 26, 1, 20)).min,
            1,
            "01:20 GMT: not re-entered"
        );
        // An end in the gap ends at the jump.
        let s = Schedule::new("Europe/London", 1, vec![win("*", "00:30", "01:30", 5)]).unwrap();
        assert_eq!(
            length(&s, 0, date(2025, 3, 30)),
            30,
            "00:30 GMT to the 01:00 UTC jump"
        );
    }

    #[test]
    fn overlaps_take_the_highest_minimum_and_the_first_of_ties() {
        let s = Schedule::new(
            "UTC",
            1,
            vec![
                win("MON-FRI", "09:00", "18:00", 2),
                win("MON", "12:00", "14:00", 6),
                win("MON-FRI", "08:00", "20:00", 2),
                win("SUN", "22:00", "10:00", 4),
            ],
        )
        .unwrap();
        // 2025-01-06 is a Monday.
        assert_eq!(
            s.at(utc(2025, 1, 6, 13, 0)),
            Scheduled {
                min: 6,
                window: Some(1)
            }
        );
        assert_eq!(
            s.at(utc(2025, 1, 6, 9, 30)),
            Scheduled {
                min: 4,
                window: Some(3)
            },
            "Sunday's window runs into Monday"
        );
        assert_eq!(
            s.at(utc(2025, 1, 6, 11, 0)),
            Scheduled {
                min: 2,
                window: Some(0)
            }
        );
        assert_eq!(
            s.at(utc(2025, 1, 6, 19, 0)),
            Scheduled {
                min: 2,
                window: Some(2)
            }
        );
        assert_eq!(
            s.at(utc(2025, 1, 6, 21, 0)),
            Scheduled {
                min: 1,
                window: None
            }
        );
    }

    fn inputs(schedule: &Schedule) -> CapacityInputs<'_> {
        CapacityInputs {
            now_ms: utc(2025, 1, 6, 20, 0), // Monday 15:00 in New York
            schedule: Some(schedule),
            floor: 1,
            role: RegionRole::Active,
            tier: Tier::Tier2,
            active_need: Some(1),
            current_min: Some(2),
            failover_in_flight: false,
            guard: None,
        }
    }

    #[test]
    fn desired_minimum_examples() {
        let s = Schedule::new(
            "America/New_York",
            1,
            vec![win("MON-FRI", "09:00", "18:00", 2)],
        )
        .unwrap();
        let i = inputs(&s);
        assert_eq!(
            desired_minimum(&i),
            CapacityDecision::Set {
                min: 2,
                why: Basis::Schedule {
                    window: Some(0),
                    min: 2
                }
            }
        );
        // At 19:00 the schedule says 1, but the router measured 3.
        let evening = CapacityInputs {
            now_ms: utc(2025, 1, 7, 0, 0),
            active_need: Some(3),
            ..i
        };
        assert_eq!(
            desired_minimum(&evening),
            CapacityDecision::Set {
                min: 3,
                why: Basis::ActiveNeed { need: 3 }
            }
        );
        // Unmeasured: the active is not lowered ...
        let blind = CapacityInputs {
            active_need: None,
            ..evening
        };
        assert_eq!(
            desired_minimum(&blind),
            CapacityDecision::Leave {
                why: LeaveReason::NeedUnknown
            }
        );
        // ... but a tier2 standby is.
        let standby = CapacityInputs {
            role: RegionRole::Standby,
            ..blind
        };
        assert_eq!(
            desired_minimum(&standby),
            CapacityDecision::Set {
                min: 1,
                why: Basis::Schedule {
                    window: None,
                    min: 1
                }
            }
        );
        // A tier1 standby holds the active's need.
        let warm = CapacityInputs {
            role: RegionRole::Standby,
            tier: Tier::Tier1,
            ..evening
        };
        assert_eq!(
            desired_minimum(&warm),
            CapacityDecision::Set {
                min: 3,
                why: Basis::ActiveNeed { need: 3 }
            }
        );
        let inflight = CapacityInputs {
            failover_in_flight: true,
            ..evening
        };
        assert_eq!(
            desired_minimum(&inflight),
            CapacityDecision::Leave {
                why: LeaveReason::FailoverInFlight
            }
        );
        // A standby the routers send traffic to (a failover held back) is
        // held like the active, and never lowered, measured or not.
        let serving = CapacityInputs {
            role: RegionRole::Standby,
            current_min: Some(4),
            guard: Some(Guard::Serving { known: true }),
            ..evening
        };
        assert_eq!(
            desired_minimum(&serving),
            CapacityDecision::Leave {
                why: LeaveReason::Guarded {
                    guard: Guard::Serving { known: true }
                }
            }
        );
        // ... and raised to the fleet's need.
        let short = CapacityInputs {
            current_min: Some(1),
            ..serving
        };
        assert_eq!(
            desired_minimum(&short),
            CapacityDecision::Set {
                min: 3,
                why: Basis::ActiveNeed { need: 3 }
            }
        );
        let proposed = CapacityInputs {
            active_need: None,
            guard: Some(Guard::ProposedTarget),
            ..serving
        };
        assert_eq!(
            desired_minimum(&proposed),
            CapacityDecision::Leave {
                why: LeaveReason::Guarded {
                    guard: Guard::ProposedTarget
                }
            }
        );
        // A new active is not lowered to a need measured on a partial window.
        let new_active = CapacityInputs {
            role: RegionRole::Active,
            current_min: Some(4),
            guard: Some(Guard::NewActive { since_ms: 0 }),
            ..evening
        };
        assert!(matches!(
            desired_minimum(&new_active),
            CapacityDecision::Leave {
                why: LeaveReason::Guarded { .. }
            }
        ));
        let no_schedule = CapacityInputs {
            schedule: None,
            active_need: Some(0),
            ..i
        };
        assert_eq!(
            desired_minimum(&no_schedule),
            CapacityDecision::Set {
                min: 1,
                why: Basis::Floor { min: 1 }
            }
        );
    }

    // ---- property tests ----

    const ZONES: [&str; 6] = [
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "America/Sao_Paulo",
        "Asia/Kolkata",
        "UTC",
    ];

    /// Reference boundary by brute force: scan every minute around the
    /// civil time for the first one whose local reading is at or past it.
    fn boundary_ref(tz: &TimeZone, d: Date, at: u16) -> Timestamp {
        let (d, at) = if at == DAY_MINUTES {
            (d.tomorrow().unwrap(), 0)
        } else {
            (d, at)
        };
        let target = d.at((at / 60) as i8, (at % 60) as i8, 0, 0);
        let naive = target.to_zoned_datetime(TimeZone::UTC).unwrap().timestamp();
        let mut t = naive - 16.hours();
        loop {
            if tz.to_datetime(t) >= target {
                return t;
            }
            t += 1.minute();
        }
    }

    fn at_ref(s: &Schedule, now: Timestamp) -> u32 {
        let today = s.tz.to_datetime(now).date();
        let mut best: Option<u32> = None;
        for w in &s.windows {
            for d in [today.yesterday().unwrap(), today, today.tomorrow().unwrap()] {
                if !w.days.contains(d.weekday()) {
                    continue;
                }
                let start = boundary_ref(&s.tz, d, w.start.0);
                let end_d = if w.end <= w.start {
                    d.tomorrow().unwrap()
                } else {
                    d
                };
                let end = boundary_ref(&s.tz, end_d, w.end.0);
                if start <= now && now < end {
                    best = Some(best.map_or(w.min, |b| b.max(w.min)));
                }
            }
        }
        best.unwrap_or(s.off_hours_min)
    }

    fn window() -> impl Strategy<Value = Window> {
        (1u8..128, 0u16..96, 1u16..=96, 1u32..10).prop_filter_map("empty", |(days, a, b, min)| {
            // Quarter hours, so gaps and folds (whole or half hours) are hit.
            Window::new(Days(days), Clock(a * 15), Clock(b * 15), min).ok()
        })
    }

    /// An instant near a DST transition of `zone` (or anywhere, for zones
    /// without one), 2024..2030.
    fn instant(zone: &'static str, seed: u64, spread_min: i64) -> Timestamp {
        let tz = time_zone(zone).unwrap();
        let start = Timestamp::from_second(1_704_067_200).unwrap(); // 2024-01-01
        let base = start + ((seed % (6 * 365)) as i64 * 24).hours();
        let pivot = tz.following(base).next().map_or(base, |t| t.timestamp());
        pivot + (spread_min - 36 * 60).minutes()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Around DST transitions, in zones that move by an hour, by half an
        /// hour, in the south and not at all, the schedule agrees with a
        /// brute-force reading of the documented rule. Half the window
        /// edges are put at wall-clock times near the transition (in the
        /// gap or the fold), and the instant lands within hours of it.
        #[test]
        fn schedule_matches_the_rule_around_dst(
            zone in prop::sample::select(ZONES.to_vec()),
            raw in prop::collection::vec(
                (any::<bool>(), 1u8..128, (any::<bool>(), -8i32..8, 0u16..96), (any::<bool>(), -8i32..8, 1u16..=96), 1u32..10),
                1..4,
            ),
            off in 0u32..3,
            seed: u64,
            spread in (33 * 60i64)..(39 * 60),
        ) {
            let tz = time_zone(zone).unwrap();
            let now = instant(zone, seed, spread);
            // The local clock just before the transition nearest `now`.
            let pivot = instant(zone, seed, 36 * 60);
            let local = tz.to_datetime(pivot - 1.minute()).time();
            let pivot_min = local.hour() as i32 * 60 + local.minute() as i32 + 1;
            let edge = |(near, k, q): (bool, i32, u16)| {
                if near { (pivot_min + k * 15).rem_euclid(1440) as u16 } else { q * 15 }
            };
            let windows: Vec<Window> = raw
                .into_iter()
                .filter_map(|(all, days, a, b, min)| {
                    let days = if all { Days::ALL } else { Days(days) };
                    Window::new(days, Clock(edge(a)), Clock(edge(b).max(1)), min).ok()
                })
                .collect();
            let s = Schedule::new(zone, off, windows).unwrap();
            prop_assert_eq!(s.at(ms(now)).min, at_ref(&s, now), "at {} in {}: {:?}", now, zone, s.windows);
        }

        /// The highest minimum wins: adding a window never lowers the
        /// minimum at any instant, and the order of windows does not matter.
        #[test]
        fn overlaps_never_lower(
            zone in prop::sample::select(ZONES.to_vec()),
            windows in prop::collection::vec(window(), 0..4),
            extra in window(),
            seed: u64,
            spread in 0i64..(72 * 60),
        ) {
            let now = ms(instant(zone, seed, spread));
            let s = Schedule::new(zone, 1, windows.clone()).unwrap();
            let mut more = windows.clone();
            more.push(extra.clone());
            let s2 = Schedule::new(zone, 1, more).unwrap();
            prop_assert!(s2.at(now).min >= s.at(now).min);
            let mut rev = windows;
            rev.reverse();
            prop_assert_eq!(Schedule::new(zone, 1, rev).unwrap().at(now).min, s.at(now).min);
            let inside = s2.at(now);
            if let Some(i) = inside.window {
                prop_assert!(inside.min >= s2.windows[i].min && inside.min == s2.windows[i].min);
            }
        }

        /// Nothing changes before `next_change`, and something does at it.
        #[test]
        fn next_change_is_the_next_change(
            zone in prop::sample::select(ZONES.to_vec()),
            windows in prop::collection::vec(window(), 1..3),
            seed: u64,
            spread in 0i64..(72 * 60),
            probes in prop::collection::vec(0.0f64..1.0, 8),
        ) {
            let s = Schedule::new(zone, 0, windows).unwrap();
            let now = ms(instant(zone, seed, spread));
            let here = s.at(now).min;
            match s.next_change(now) {
                Some(next) => {
                    prop_assert!(next > now);
                    prop_assert_ne!(s.at(next).min, here);
                    for p in probes {
                        let t = now + ((next - now - 1) as f64 * p) as u64;
                        prop_assert_eq!(s.at(t).min, here, "at {}", t);
                    }
                }
                None => {
                    for p in probes {
                        let t = now + (8.0 * 86_400_000.0 * p) as u64;
                        prop_assert_eq!(s.at(t).min, here);
                    }
                }
            }
        }

        /// The rule next to failover, for every input.
        #[test]
        fn desired_minimum_never_fights_failover(
            windows in prop::collection::vec(window(), 0..3),
            off in 0u32..4,
            floor in 0u32..3,
            role in prop::sample::select(vec![RegionRole::Active, RegionRole::Standby, RegionRole::FailoverTarget]),
            tier in prop::sample::select(Tier::ALL.to_vec()),
            need in prop::option::of(0u32..12),
            current in prop::option::of(0u32..12),
            in_flight: bool,
            guarded in prop::option::of(prop::sample::select(vec![
                Guard::Serving { known: true },
                Guard::Serving { known: false },
                Guard::ProposedTarget,
                Guard::NewActive { since_ms: 0 },
            ])),
            seed: u64,
            spread in 0i64..(72 * 60),
        ) {
            let s = Schedule::new("America/New_York", off, windows).unwrap();
            let now_ms = ms(instant("America/New_York", seed, spread));
            let i = CapacityInputs {
                now_ms, schedule: Some(&s), floor, role, tier,
                active_need: need, current_min: current, failover_in_flight: in_flight,
                guard: guarded,
            };
            let d = desired_minimum(&i);
            let holds_need = role == RegionRole::Active
                || (role == RegionRole::Standby && (tier == Tier::Tier1 || guarded.is_some()));
            if guarded.is_some() && let CapacityDecision::Set { min, .. } = d {
                prop_assert!(current.is_none_or(|c| min >= c), "a guarded region was lowered");
            }
            match d {
                CapacityDecision::Leave { why } => {
                    prop_assert!(in_flight || role == RegionRole::FailoverTarget || (holds_need && need.is_none()) || guarded.is_some());
                    if why == LeaveReason::NeedUnknown {
                        // Only when setting the schedule would lower it.
                        prop_assert!(current.unwrap() > s.at(now_ms).min.max(floor));
                    }
                }
                CapacityDecision::Set { min, .. } => {
                    prop_assert!(!in_flight, "never touch a region while a failover is in flight");
                    prop_assert!(role != RegionRole::FailoverTarget);
                    prop_assert!(min >= floor);
                    prop_assert!(min >= s.at(now_ms).min);
                    if holds_need {
                        match need {
                            Some(n) => prop_assert!(min >= n, "below the measured need"),
                            None => prop_assert!(current.is_none_or(|c| min >= c), "lowered without a measurement"),
                        }
                    } else {
                        prop_assert_eq!(min, s.at(now_ms).min.max(floor), "a pilot-light standby follows the schedule");
                    }
                }
            }
        }
    }
}
