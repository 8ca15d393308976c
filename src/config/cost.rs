//! The `[cost]` section: DR tiers per model, scheduled capacity per
//! provisioned endpoint, idle detection and the `advise` thresholds. Types,
//! raw shape and validation, in one place (as `config/router.rs` does for
//! the router). The decisions themselves are pure functions in `core::tier`,
//! `core::schedule`, `core::idle` and `core::advise`; see
//! docs/cost-and-tiers.md for the design.
//!
//! Everything here has a default, so a file without `[cost]` keeps today's
//! behaviour: every model `tier2` (automatic failover, as before), no
//! schedules, idle detection off.
//!
//! Per-model tiers live in `[cost.tiers]` (model name = tier) rather than on
//! `[[models]]` entries, so that this section owns its keys; every name must
//! be a configured model.
//!
//! # The prepare budget next to the workflow and the stuck rule
//!
//! A `tier2` prepare step waits for the target's scale-up for at most
//! `cost.prepare_budget`, then warms the endpoints for at most
//! `timings.prepare_budget`, then calls back. Two bounds hold it
//! ([`Validator::cost_against_timings`], only when some region has a
//! provisioned endpoint, the only thing a prepare step scales):
//!
//! - the workflow must not time out a prepare step that is still working:
//!   both budgets plus 30 s for the status reads and the callback fit in the
//!   `PrepareTarget` task's `TimeoutSeconds` ([`PREPARE_TIMEOUT`],
//!   900 s; a dead worker is still caught within `HeartbeatSeconds`, 60 s,
//!   because it stops heartbeating);
//! - the daemons must not settle a failover whose target is still scaling:
//!   the record does not change while the prepare step works, so both
//!   budgets plus 90 s (the callback and the workflow's DynamoDB retries
//!   around the task, under a minute) must not exceed
//!   `timings.stuck_failover`.
//!
//! Hence the default of 3 minutes: with `timings.prepare_budget` at 30 s it
//! fills `timings.stuck_failover`'s 5 minutes exactly. A longer scale-up
//! needs both keys raised together; check-config names both.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::Validator;
use super::workflow::PREPARE_TIMEOUT;
use super::{Consistency, ModelConfig, RegionConfig, human_duration};
use crate::core::advise::Thresholds;
use crate::core::idle::IdlePolicy;
use crate::core::schedule::{Clock, Days, Schedule, Window};
use crate::core::tier::{self, Tier};

/// Room for the endpoint status reads and the callback after the budgets.
const CALLBACK_ROOM: Duration = Duration::from_secs(30);
/// Room for the callback and the workflow's DynamoDB retries around the
/// prepare task (five attempts, at most 8 s apart: under a minute), during
/// which the record does not change either. The warm-up alone is checked
/// against it too (config/constraints.rs).
pub(super) const STALL_ROOM: Duration = Duration::from_secs(90);
/// Default `cost.prepare_budget` (see the module doc).
pub const DEFAULT_PREPARE_BUDGET: &str = "3m";

/// Cost controls and DR tiers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    /// `production` reduces idle endpoints and never stops them.
    pub environment: Environment,
    /// Tier of a model without an entry in `tiers`.
    pub default_tier: Tier,
    /// Tier per model name.
    pub tiers: BTreeMap<String, Tier>,
    /// Longest the prepare step may take to scale the target up and see it
    /// `InService` before the switch.
    #[serde(with = "human_duration")]
    pub prepare_budget: Duration,
    /// How often the daemon's cost task applies the schedule and idle
    /// detection to its region's endpoints.
    #[serde(with = "human_duration")]
    pub interval: Duration,
    /// How often each standby daemon compares its region's endpoints with
    /// the active's (`control::standby`: exists, serves, last update,
    /// model and image, instance type, capacity against the fleet's need).
    #[serde(with = "human_duration")]
    pub readiness_interval: Duration,
    /// Whose policies readiness's IAM dry run judges (an IAM role's or
    /// user's ARN). Unset (the default): the daemon's own identity, from
    /// STS, an assumed role's session judged by its role (which names no
    /// path: set this for a role with one).
    pub readiness_principal: Option<String>,
    pub idle: Idle,
    /// Invocations a minute one instance of a provisioned endpoint serves:
    /// what turns the router's measured traffic into the active region's
    /// need (`metrics::counts::need_from`). Unset (the default): the need
    /// is not measured, and the schedule never lowers the active region.
    pub instance_invocations_per_minute: Option<u64>,
    /// `[cost.capacity_units]`: the units one instance of each type
    /// provides (`core::pools`); a type not listed provides 1. The
    /// measured need is read in units, and a variant on instance pools
    /// is judged and topped up by its units, not its instance count.
    pub capacity_units: crate::core::pools::CapacityUnits,
    /// Scheduled capacity per provisioned endpoint.
    pub schedules: Vec<EndpointSchedule>,
    pub advise: Advise,
}

/// Where this fleet runs; only `production` changes behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Production,
    Staging,
    Development,
    Test,
}

/// Idle detection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Idle {
    /// Off by default: a setting that changes capacity is turned on on purpose.
    pub enabled: bool,
    /// Zero invocations for this long makes an endpoint idle.
    #[serde(with = "human_duration")]
    pub window: Duration,
    /// Outside production, stop (delete) idle `tier3` endpoints instead of
    /// reducing them.
    pub stop_outside_production: bool,
    /// Also read CloudWatch `Invocations` (traffic that bypasses the
    /// routers); an endpoint is then idle only when CloudWatch was read and
    /// counted nothing either. On by default; turn off only when every
    /// caller goes through a failoverd router.
    pub cloudwatch: bool,
}

/// A schedule and the provisioned endpoint it applies to (in every region
/// that names it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointSchedule {
    pub endpoint: String,
    #[serde(flatten)]
    pub schedule: Schedule,
}

/// `failoverd advise` settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advise {
    /// Business hours, to judge steadiness and off-hours traffic.
    pub business_hours: Schedule,
    pub thresholds: Thresholds,
}

impl Cost {
    /// The tier of `model`.
    pub fn tier_of(&self, model: &str) -> Tier {
        self.tiers.get(model).copied().unwrap_or(self.default_tier)
    }

    /// The tier that governs the fleet's endpoints and automatic failover:
    /// the strictest of the configured models' (`core::tier::strictest`;
    /// every endpoint serves every model), or the default tier when no
    /// model is configured (a single-model endpoint).
    pub fn fleet_tier(&self, models: &[ModelConfig]) -> Tier {
        tier::strictest(models.iter().map(|m| self.tier_of(&m.name))).unwrap_or(self.default_tier)
    }

    /// The schedule of `endpoint`, if it has one.
    pub fn schedule_for(&self, endpoint: &str) -> Option<&Schedule> {
        self.schedules
            .iter()
            .find(|s| s.endpoint == endpoint)
            .map(|s| &s.schedule)
    }

    /// The idle policy for `core::idle::decide`.
    pub fn idle_policy(&self) -> IdlePolicy {
        IdlePolicy {
            window_ms: self.idle.window.as_millis() as u64,
            production: self.environment == Environment::Production,
            stop_outside_production: self.idle.stop_outside_production,
            cloudwatch: self.idle.cloudwatch,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawCost {
    pub(super) environment: Option<String>,
    pub(super) default_tier: Option<String>,
    #[serde(default)]
    pub(super) tiers: BTreeMap<String, String>,
    pub(super) prepare_budget: Option<String>,
    pub(super) interval: Option<String>,
    pub(super) readiness_interval: Option<String>,
    pub(super) readiness_principal: Option<String>,
    pub(super) instance_invocations_per_minute: Option<i64>,
    #[serde(default)]
    pub(super) capacity_units: BTreeMap<String, f64>,
    #[serde(default)]
    pub(super) idle: RawIdle,
    #[serde(default)]
    pub(super) schedules: Vec<RawSchedule>,
    #[serde(default)]
    pub(super) advise: RawAdvise,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawIdle {
    pub(super) enabled: Option<bool>,
    pub(super) window: Option<String>,
    pub(super) stop_outside_production: Option<bool>,
    pub(super) cloudwatch: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawSchedule {
    pub(super) endpoint: Option<String>,
    pub(super) timezone: Option<String>,
    pub(super) off_hours_min: Option<i64>,
    #[serde(default)]
    pub(super) windows: Vec<RawWindow>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawWindow {
    pub(super) days: Option<String>,
    pub(super) start: Option<String>,
    pub(super) end: Option<String>,
    pub(super) min: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawAdvise {
    pub(super) timezone: Option<String>,
    pub(super) days: Option<String>,
    pub(super) start: Option<String>,
    pub(super) end: Option<String>,
    pub(super) steady_requests_per_minute: Option<i64>,
    pub(super) sporadic_requests_per_hour: Option<i64>,
    pub(super) off_hours_ratio: Option<f64>,
    pub(super) idle_gap: Option<String>,
    pub(super) cold_starts_per_day: Option<i64>,
}

/// Largest instance count a schedule may ask for (SageMaker's per-variant
/// quotas are far lower; this only catches typos like `20000`).
const MAX_INSTANCES: i64 = 1000;

impl Validator<'_> {
    /// The `[cost]` section. Needs the validated models (tier names), the
    /// regions (schedule endpoints), the control table's consistency (tier1
    /// needs strong) and the router's batch threshold (advise).
    pub(super) fn cost(
        &mut self,
        raw: RawCost,
        models: &[ModelConfig],
        regions: &[RegionConfig],
        consistency: Option<Consistency>,
        batch_threshold: u64,
    ) -> Option<Cost> {
        let environment = self.cost_environment(raw.environment);
        let eventual = consistency == Some(Consistency::Eventual);
        let default_tier = self.cost_tier(
            "cost.default_tier",
            raw.default_tier.as_deref().unwrap_or("tier2"),
            eventual,
        );
        let tiers = self.cost_model_tiers(&raw.tiers, models, eventual);
        let s = Duration::from_secs;
        let prepare_budget = self.duration(
            "cost.prepare_budget",
            raw.prepare_budget,
            DEFAULT_PREPARE_BUDGET,
            s(60),
            s(2 * 3600),
        );
        let interval = self.duration("cost.interval", raw.interval, "1m", s(1), s(3600));
        let readiness_interval = self.duration(
            "cost.readiness_interval",
            raw.readiness_interval,
            "5m",
            s(1),
            s(3600),
        );
        let readiness_principal = self.cost_principal(raw.readiness_principal);
        let idle = self.cost_idle(raw.idle);
        let schedules = self.cost_schedules(raw.schedules, regions, models);
        let advise = self.cost_advise(raw.advise, batch_threshold);
        let per_instance = self.cost_instance_invocations(raw.instance_invocations_per_minute);
        let capacity_units = self.cost_capacity_units(raw.capacity_units);
        Some(Cost {
            environment: environment?,
            default_tier: default_tier?,
            tiers,
            prepare_budget: prepare_budget?,
            interval: interval?,
            readiness_interval: readiness_interval?,
            readiness_principal: readiness_principal?,
            instance_invocations_per_minute: per_instance?,
            capacity_units: capacity_units?,
            idle: idle?,
            schedules: schedules?,
            advise: advise?,
        })
    }

    /// `cost.environment`: one of the four names; production when unset.
    fn cost_environment(&mut self, raw: Option<String>) -> Option<Environment> {
        match raw.as_deref().map(str::trim) {
            None | Some("production") => Some(Environment::Production),
            Some("staging") => Some(Environment::Staging),
            Some("development") => Some(Environment::Development),
            Some("test") => Some(Environment::Test),
            Some(other) => {
                self.err(
                    "cost.environment",
                    format!("{other:?} is not an environment: use \"production\", \"staging\", \"development\" or \"test\" (only production never stops endpoints, so a typo must not count as \"not production\")"),
                );
                None
            }
        }
    }

    /// A tier name at `key`; a tier that needs strong consistency is
    /// refused over an `eventual` control table.
    fn cost_tier(&mut self, key: &str, text: &str, eventual: bool) -> Option<Tier> {
        match text.parse::<Tier>() {
            Ok(t) if t.requires_strong_consistency() && eventual => {
                self.err(
                    key,
                    format!("{t} ({}) needs tables.consistency = \"strong\" (MRSC): its synchronous replication cannot hold over eventual (MREC) replicas; use tier2, or make the control table strong", t.pattern()),
                );
                None
            }
            Ok(t) => Some(t),
            Err(e) => {
                self.err(key, e.to_string());
                None
            }
        }
    }

    /// `[cost.tiers]`: each name a configured model, each value a tier.
    fn cost_model_tiers(
        &mut self,
        raw: &BTreeMap<String, String>,
        models: &[ModelConfig],
        eventual: bool,
    ) -> BTreeMap<String, Tier> {
        let mut tiers = BTreeMap::new();
        for (model, text) in raw {
            let key = format!("cost.tiers.{model}");
            if !models.iter().any(|m| &m.name == model) {
                let known: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
                self.err(
                    &key,
                    format!("no model {model:?} in [[models]] (models: {known:?})"),
                );
                continue;
            }
            if let Some(t) = self.cost_tier(&key, text, eventual) {
                tiers.insert(model.clone(), t);
            }
        }
        tiers
    }

    /// `[cost.idle]`: the idle window's bounds; the switches default.
    fn cost_idle(&mut self, raw: RawIdle) -> Option<Idle> {
        let s = Duration::from_secs;
        let window = self.duration("cost.idle.window", raw.window, "60m", s(300), s(7 * 86400));
        Some(Idle {
            enabled: raw.enabled.unwrap_or(false),
            window: window?,
            stop_outside_production: raw.stop_outside_production.unwrap_or(false),
            cloudwatch: raw.cloudwatch.unwrap_or(true),
        })
    }

    /// `[[cost.schedules]]`: each on a provisioned endpoint, one per
    /// endpoint, with valid windows and time zone; `None` unless all are.
    fn cost_schedules(
        &mut self,
        raw: Vec<RawSchedule>,
        regions: &[RegionConfig],
        models: &[ModelConfig],
    ) -> Option<Vec<EndpointSchedule>> {
        // The regions' shared provisioned endpoints and the models' own.
        let mut provisioned: Vec<&str> = regions
            .iter()
            .filter_map(|r| r.sagemaker.provisioned.as_deref())
            .chain(
                models
                    .iter()
                    .flat_map(|m| &m.serving)
                    .filter_map(|s| Some(s.provisioned.as_ref()?.endpoint.as_str())),
            )
            .collect();
        provisioned.sort_unstable();
        provisioned.dedup();
        let mut schedules: Vec<EndpointSchedule> = Vec::new();
        let mut all_ok = true;
        for (i, rs) in raw.into_iter().enumerate() {
            let k = |f: &str| format!("cost.schedules[{i}].{f}");
            let endpoint = self.required(&k("endpoint"), rs.endpoint);
            if let Some(e) = &endpoint {
                if !provisioned.contains(&e.as_str()) {
                    self.err(
                        &k("endpoint"),
                        format!("{e:?} is no region's sagemaker.provisioned endpoint nor a model's provisioned endpoint (schedules apply to provisioned variants; serverless scales itself): {provisioned:?}"),
                    );
                } else if schedules.iter().any(|s| &s.endpoint == e) {
                    self.err(
                        &k("endpoint"),
                        format!("{e:?} already has a schedule; put every window in one"),
                    );
                }
            }
            let off = self.instances(&k("off_hours_min"), rs.off_hours_min, Some(1));
            if rs.windows.is_empty() {
                self.err(
                    &k("windows"),
                    "no windows: give at least one [[cost.schedules.windows]] (days, start, end, min)",
                );
                all_ok = false;
            }
            let mut windows = Vec::new();
            for (j, w) in rs.windows.into_iter().enumerate() {
                let key = |f: &str| format!("cost.schedules[{i}].windows[{j}].{f}");
                match self.window(&key, w) {
                    Some(w) => windows.push(w),
                    None => all_ok = false,
                }
            }
            let tz = self.required(&k("timezone"), rs.timezone);
            let schedule =
                tz.and_then(
                    |tz| match Schedule::new(tz.trim(), off.unwrap_or(1), windows) {
                        Ok(s) => Some(s),
                        Err(e) => {
                            self.err(&k("timezone"), e.to_string());
                            None
                        }
                    },
                );
            match (endpoint, schedule, off) {
                (Some(endpoint), Some(schedule), Some(_)) => {
                    schedules.push(EndpointSchedule { endpoint, schedule })
                }
                _ => all_ok = false,
            }
        }
        all_ok.then_some(schedules)
    }

    /// `[cost.advise]`: business hours and the thresholds `advise` judges
    /// traffic by.
    fn cost_advise(&mut self, a: RawAdvise, batch_threshold: u64) -> Option<Advise> {
        let business_hours = self.cost_business_hours(a.timezone, a.days, a.start, a.end);
        let count = |v: &mut Self, key: &str, val: Option<i64>, default: i64| -> Option<u64> {
            v.in_range(key, val, default, 1, 10_000_000).map(u64::from)
        };
        let steady = count(
            self,
            "cost.advise.steady_requests_per_minute",
            a.steady_requests_per_minute,
            500,
        );
        let sporadic = count(
            self,
            "cost.advise.sporadic_requests_per_hour",
            a.sporadic_requests_per_hour,
            50,
        );
        let cold = self
            .in_range(
                "cost.advise.cold_starts_per_day",
                a.cold_starts_per_day,
                24,
                0,
                1_000_000,
            )
            .map(u64::from);
        let ratio = a.off_hours_ratio.unwrap_or(0.2);
        if !(0.0..=1.0).contains(&ratio) {
            self.err(
                "cost.advise.off_hours_ratio",
                format!("{ratio} is out of range: must be between 0 and 1"),
            );
        }
        let s = Duration::from_secs;
        let gap = self.duration("cost.advise.idle_gap", a.idle_gap, "15m", s(60), s(86400));
        Some(Advise {
            business_hours: business_hours?,
            thresholds: Thresholds {
                steady_per_minute: steady?,
                sporadic_per_hour: sporadic?,
                batch_payload_bytes: batch_threshold,
                off_hours_ratio: ratio,
                idle_gap_minutes: gap?.as_secs() / 60,
                cold_starts_per_day: cold?,
            },
        })
    }

    /// `cost.advise` business hours: one window (weekdays 09:00-18:00 by
    /// default) in a time zone (America/New_York by default).
    fn cost_business_hours(
        &mut self,
        timezone: Option<String>,
        days: Option<String>,
        start: Option<String>,
        end: Option<String>,
    ) -> Option<Schedule> {
        let business = self.window(
            &|f: &str| format!("cost.advise.{f}"),
            RawWindow {
                days: Some(days.unwrap_or_else(|| "MON-FRI".into())),
                start: Some(start.unwrap_or_else(|| "09:00".into())),
                end: Some(end.unwrap_or_else(|| "18:00".into())),
                min: Some(1),
            },
        );
        let business_tz = timezone.unwrap_or_else(|| "America/New_York".into());
        business.and_then(|w| match Schedule::new(business_tz.trim(), 0, vec![w]) {
            Ok(s) => Some(s),
            Err(e) => {
                self.err("cost.advise.timezone", e.to_string());
                None
            }
        })
    }

    /// `cost.readiness_principal`: unset, or an IAM role's or user's ARN
    /// (`arn:<partition>:iam::<12 digits>:role/<name>` or `:user/<name>`,
    /// a path allowed), what IAM's simulator takes as `PolicySourceArn`.
    fn cost_principal(&mut self, raw: Option<String>) -> Option<Option<String>> {
        let Some(v) = raw.filter(|s| !s.trim().is_empty()) else {
            return Some(None);
        };
        let ok = crate::core::permissions::principal_of(&v).is_some_and(|p| p == v);
        if ok {
            Some(Some(v))
        } else {
            self.err(
                "cost.readiness_principal",
                format!(
                    "{v:?} is not an IAM role's or user's ARN \
                     (arn:aws:iam::111122223333:role/failoverd-daemon)"
                ),
            );
            None
        }
    }

    /// `cost.instance_invocations_per_minute`: unset, or 1 to 10,000,000.
    fn cost_instance_invocations(&mut self, raw: Option<i64>) -> Option<Option<u64>> {
        match raw {
            None => Some(None),
            Some(v) => self
                .in_range(
                    "cost.instance_invocations_per_minute",
                    Some(v),
                    1,
                    1,
                    10_000_000,
                )
                .map(|v| Some(u64::from(v))),
        }
    }

    /// `[cost.capacity_units]`: each key an instance type (`ml.` ...), each
    /// value the positive units one instance of it provides. The key holds
    /// dots, so the problem's origin is the table's.
    fn cost_capacity_units(
        &mut self,
        raw: BTreeMap<String, f64>,
    ) -> Option<crate::core::pools::CapacityUnits> {
        const TABLE: &str = "cost.capacity_units";
        let mut ok = true;
        for (itype, units) in &raw {
            let message = if !itype.starts_with("ml.") {
                format!(
                    "{itype:?} is not a SageMaker instance type (they begin with \"ml.\", e.g. \"ml.g5.xlarge\")"
                )
            } else if !(units.is_finite() && *units > 0.0 && *units <= 10_000.0) {
                format!(
                    "{units} is not a number of units: one instance of {itype} provides a positive number of them, at most 10000 (a type not listed provides 1)"
                )
            } else {
                continue;
            };
            ok = false;
            self.err_found_at(TABLE, &format!("{TABLE}.\"{itype}\""), message);
        }
        ok.then_some(crate::core::pools::CapacityUnits(raw))
    }

    /// The prepare budget against the workflow's prepare timeout and
    /// `timings.stuck_failover` (see the module doc). Reported at
    /// `cost.prepare_budget`, naming the other key.
    pub(super) fn cost_against_timings(
        &mut self,
        cost: Option<&Cost>,
        regions: &[RegionConfig],
        models: &[ModelConfig],
        warmup: Option<Duration>,
        stuck: Option<Duration>,
    ) {
        let (Some(cost), Some(warmup)) = (cost, warmup) else {
            return;
        };
        let model_provisioned = models
            .iter()
            .flat_map(|m| &m.serving)
            .any(|s| s.provisioned.is_some());
        if !regions.iter().any(|r| r.sagemaker.provisioned.is_some()) && !model_provisioned {
            return;
        }
        let fmt = |d: Duration| humantime::format_duration(d).to_string();
        let budget = cost.prepare_budget;
        let work = budget + warmup + CALLBACK_ROOM;
        if work > PREPARE_TIMEOUT {
            let max = PREPARE_TIMEOUT.saturating_sub(warmup + CALLBACK_ROOM);
            self.err(
                "cost.prepare_budget",
                format!(
                    "{} plus timings.prepare_budget ({}) and {} for the callback is longer than the workflow's prepare task waits (PrepareTarget TimeoutSeconds = {} in deploy/statemachines/failover.asl.json): the workflow would time out a target still scaling up; use at most {}",
                    fmt(budget),
                    fmt(warmup),
                    fmt(CALLBACK_ROOM),
                    PREPARE_TIMEOUT.as_secs(),
                    fmt(max)
                ),
            );
        }
        if let Some(stuck) = stuck {
            let stall = budget + warmup + STALL_ROOM;
            if stall > stuck {
                self.err(
                    "cost.prepare_budget",
                    format!(
                        "{} plus timings.prepare_budget ({}) and {} for the callback and the workflow's retries exceeds timings.stuck_failover ({}): the daemons would settle a failover whose target is still scaling up; raise timings.stuck_failover to at least {} or lower cost.prepare_budget to at most {}",
                        fmt(budget),
                        fmt(warmup),
                        fmt(STALL_ROOM),
                        fmt(stuck),
                        fmt(stall),
                        fmt(stuck.saturating_sub(warmup + STALL_ROOM))
                    ),
                );
            }
        }
    }

    /// An instance count 1..=MAX_INSTANCES; production variants cannot
    /// scale to zero.
    fn instances(&mut self, key: &str, v: Option<i64>, default: Option<i64>) -> Option<u32> {
        match v.or(default) {
            None => {
                self.err(key, "missing: give the minimum instance count");
                None
            }
            Some(0) => {
                self.err(
                    key,
                    "0: a production variant needs at least one instance (only inference components scale to zero)",
                );
                None
            }
            Some(n) => self.in_range(key, Some(n), 1, 1, MAX_INSTANCES),
        }
    }

    fn window(&mut self, key: &dyn Fn(&str) -> String, w: RawWindow) -> Option<Window> {
        let days = self
            .required(&key("days"), w.days)
            .and_then(|d| match d.parse::<Days>() {
                Ok(d) => Some(d),
                Err(e) => {
                    self.err(&key("days"), e.to_string());
                    None
                }
            });
        let clock = |v: &mut Self, f: &str, text: Option<String>| {
            v.required(&key(f), text)
                .and_then(|t| match t.parse::<Clock>() {
                    Ok(c) => Some(c),
                    Err(e) => {
                        v.err(&key(f), e.to_string());
                        None
                    }
                })
        };
        let start = clock(self, "start", w.start);
        let end = clock(self, "end", w.end);
        let min = self.instances(&key("min"), w.min, None);
        let (days, start, end, min) = (days?, start?, end?, min?);
        match Window::new(days, start, end, min) {
            Ok(w) => Some(w),
            Err(e) => {
                self.err(&key("start"), e.to_string());
                None
            }
        }
    }
}
