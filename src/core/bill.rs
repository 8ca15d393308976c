//! The control plane's own AWS bill: what failoverd itself costs a month,
//! itemised per service with the quantity and the unit price. Pure: no I/O,
//! no clock. `failoverd advise` shows it; docs/control-plane-bill.md states
//! the figure at the shipped production settings and how it is derived.
//!
//! # Two ways in
//!
//! - [`from_settings`]: from a configuration's settings (poll interval,
//!   daemons, the control table's replicas and mode, the Route 53 checks and
//!   their features, the fleet's Route 53 budget, the cost task, the
//!   router's routing-table refresh) and a few [`Assumptions`] (failovers a
//!   month). The per-round calls are the code's, stated in [`RoundCalls`].
//! - [`from_measured`]: from the per-service, per-operation call counts one
//!   daemon's meter exposes on `/metrics` (`failoverd_aws_calls_total`) and
//!   its round count (`failoverd_round_duration_seconds_count`), parsed by
//!   [`Measured::from_prometheus`]: calls per round x rounds a month x the
//!   fleet's daemons. What the meter does not count (the health checks' own
//!   monthly fee, the router's routing-table scans, the workflow's state
//!   transitions and its own table writes, CloudWatch) comes from the
//!   settings and says so.
//!
//! # DynamoDB units
//!
//! On-demand: a strongly consistent read of up to 4 KB is one read request
//! unit (RRU), an eventually consistent one half (a GSI query is always
//! eventually consistent), transactional reads two; a read that returns
//! nothing still consumes its minimum. A write of up to 1 KB is one write
//! unit. On a global table every write is charged as one *replicated* write
//! unit (rWRU) in every replica region, the one written to included, and a
//! conditional write whose condition fails still consumes its units. Writes
//! that touch the sparse `pending` index (task tokens) also cost one index
//! WRU in each replica region. failoverd makes no transactional calls. Item
//! sizes: the control record and a vote are under 1 KB (a vote with nine
//! busy endpoints' counts still is, `aws::control_table::votes` tests it);
//! the readings, the votes and the record each read back in under 4 KB.
//!
//! # What is not counted
//!
//! Storage and point-in-time recovery of a table of a few kilobytes,
//! cross-Region data transfer of the replication, the SageMaker endpoints
//! themselves (the inference bill, not the control plane's; SageMaker's
//! control-plane calls are not billed), the status page's journal reads
//! while someone has it open (counted by [`from_measured`] when they
//! happened), logs, and the hosts the daemons run on. Free tiers are not
//! applied; [`Bill::notes`] says what they would take off.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::core::health::Route53Source;

/// Seconds in a billing month: 730 hours, AWS's pricing-calculator month.
pub const MONTH_SECS: f64 = 730.0 * 3600.0;

/// When the prices below were last checked against the sources they name.
pub const PRICES_CHECKED: &str = "2026-12-06";

/// A unit price: `usd` for every `per` units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Price {
    pub usd: f64,
    pub per: u64,
}

impl Price {
    pub const fn new(usd: f64, per: u64) -> Self {
        Price { usd, per }
    }

    /// The price of `quantity` units.
    pub fn of(self, quantity: f64) -> f64 {
        self.usd * quantity / self.per as f64
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = match self.per {
            1 => String::new(),
            1_000 => " per 1K".into(),
            1_000_000 => " per 1M".into(),
            n => format!(" per {n}"),
        };
        write!(f, "${}{per}", dollars(self.usd))
    }
}

fn trim_zeros(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0');
    s.strip_suffix('.').unwrap_or(s).to_string()
}

/// Dollars with at least two decimals: 0.5 -> "0.50", 0.125 -> "0.125".
fn dollars(x: f64) -> String {
    let s = trim_zeros(x);
    match s.split_once('.') {
        None => format!("{s}.00"),
        Some((_, d)) if d.len() < 2 => format!("{s}0"),
        Some(_) => s,
    }
}

/// List prices in one AWS region, with where each comes from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prices {
    pub region: &'static str,
    /// DynamoDB on-demand read request unit.
    pub read_request_unit: Price,
    /// DynamoDB on-demand write request unit (GSI writes of a global table).
    pub write_request_unit: Price,
    /// DynamoDB on-demand replicated write request unit, in each replica region.
    pub replicated_write_request_unit: Price,
    /// Route 53 basic health check of an AWS endpoint, a month.
    pub health_check_aws: Price,
    /// Route 53 basic health check of a non-AWS endpoint, a month.
    pub health_check_non_aws: Price,
    /// Each optional feature (HTTPS, string matching, fast interval, latency
    /// measurement) of a check of an AWS endpoint, a month.
    pub health_check_feature_aws: Price,
    /// The same for a non-AWS endpoint.
    pub health_check_feature_non_aws: Price,
    /// Route 53 API requests (GetHealthCheck, GetHealthCheckStatus).
    pub route53_api_request: Price,
    /// Step Functions standard workflow state transition (retries included).
    pub state_transition: Price,
    /// Step Functions API requests (StartExecution, SendTask*, Describe...).
    pub step_functions_api_request: Price,
    /// CloudWatch GetMetricStatistics / ListMetrics request.
    pub cloudwatch_request: Price,
    /// CloudWatch GetMetricData, per metric requested.
    pub cloudwatch_metric_requested: Price,
}

/// us-east-1 list prices, checked on [`PRICES_CHECKED`]. The other US
/// regions of the shipped fleet (us-east-2, us-west-2) list the same
/// figures for every line here.
///
/// - DynamoDB (<https://aws.amazon.com/dynamodb/pricing/on-demand/>, the
///   prices since the 2024-11-01 reduction): $0.125 per million RRU,
///   $0.625 per million WRU; replicated writes "are priced the same as
///   single-Region write units" (developer guide, "Understanding Amazon
///   DynamoDB billing for global tables"): $0.625 per million rWRU.
/// - Route 53 (<https://aws.amazon.com/route53/pricing/>): basic checks
///   $0.50 (AWS endpoint) / $0.75 (non-AWS) a month; optional features
///   $1.00 / $2.00 each a month; no line for API requests.
/// - Step Functions (<https://aws.amazon.com/step-functions/pricing/>):
///   $0.025 per 1,000 state transitions (us-east-1, us-east-2, us-west-2);
///   only transitions are billed.
/// - CloudWatch (<https://aws.amazon.com/cloudwatch/pricing/>): $0.01 per
///   1,000 GetMetricStatistics/ListMetrics requests and per 1,000 metrics
///   GetMetricData requests (not re-read from the page itself: see the doc).
pub const US_EAST_1: Prices = Prices {
    region: "us-east-1",
    read_request_unit: Price::new(0.125, 1_000_000),
    write_request_unit: Price::new(0.625, 1_000_000),
    replicated_write_request_unit: Price::new(0.625, 1_000_000),
    health_check_aws: Price::new(0.50, 1),
    health_check_non_aws: Price::new(0.75, 1),
    health_check_feature_aws: Price::new(1.00, 1),
    health_check_feature_non_aws: Price::new(2.00, 1),
    route53_api_request: Price::new(0.0, 1),
    state_transition: Price::new(0.025, 1_000),
    step_functions_api_request: Price::new(0.0, 1),
    cloudwatch_request: Price::new(0.01, 1_000),
    cloudwatch_metric_requested: Price::new(0.01, 1_000),
};

/// The calls one daemon makes each reconcile round, from the code
/// (`control::reconcile`, `control::signals`, `control::tokens`,
/// `aws::control_table`), steady state (no failover in flight).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RoundCalls {
    /// Strongly consistent reads of at most 4 KB: the published Route 53
    /// readings (Query READING), every vote (Query VOTE), the control
    /// record (GetItem CONTROL).
    pub strong_reads: u32,
    /// Eventually consistent reads of at most 4 KB: the tokens pending for
    /// this region (Query on the `pending` GSI).
    pub eventual_reads: u32,
    /// Writes of at most 1 KB: this daemon's vote (PutItem VOTE).
    pub writes: u32,
}

/// What the code does, per daemon and round.
pub const ROUND: RoundCalls = RoundCalls {
    strong_reads: 3,
    eventual_reads: 1,
    writes: 1,
};

/// Route 53 API requests per health-check reading (GetHealthCheck, then
/// GetHealthCheckStatus); each reading is also one write (PutItem READING).
pub const ROUTE53_REQUESTS_PER_READING: u32 = 2;

/// The failover workflow's happy path (deploy/statemachines/failover.asl.json):
/// MarkFailingOver, JournalStarted, PrepareTarget, SwitchActive,
/// DrainChoice, DrainOld, MarkSteady, JournalDone, Done.
pub const TRANSITIONS_PER_FAILOVER: u32 = 9;

/// Table writes one failover makes: the workflow's seven (three record
/// updates, two journal entries, two token items) and the daemons' (the
/// claim, two token claims, about two claim extensions, two token closes,
/// about a dozen journal entries). An estimate: a few dozen writes a
/// failover are noise next to a vote every round.
pub const WRITES_PER_FAILOVER: u32 = 26;
/// Of those, the writes that touch the `pending` index (the two token
/// items, their claims, extensions and closes).
pub const INDEX_WRITES_PER_FAILOVER: u32 = 8;

/// Read units of one `events` call (the journal view: at most 300 entries
/// of about 256 bytes, strongly consistent): the bound, 19 RRU.
pub const EVENTS_READ_UNITS: f64 = 19.0;

/// A control table's multi-region consistency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableMode {
    /// MRSC (`tables.consistency = "strong"`).
    Mrsc,
    /// MREC (`"eventual"`): the active daemon also reads the other replicas'
    /// record every round to confirm its lease (`reconcile::confirmed`).
    Mrec,
}

/// One Route 53 health check and the features it is billed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    /// An endpoint on AWS (the load balancer in front of the router) rather
    /// than elsewhere.
    pub aws_endpoint: bool,
    pub https: bool,
    pub string_matching: bool,
    /// `RequestInterval` 10 s instead of 30 s.
    pub fast_interval: bool,
    pub latency_measurement: bool,
}

impl HealthCheck {
    /// What deploy/cloudformation/region.yaml creates by default: `Type:
    /// HTTPS`, `RequestInterval: 10`, no string matching, no latency
    /// measurement, on the region's load balancer (an AWS endpoint).
    pub const SHIPPED: HealthCheck = HealthCheck {
        aws_endpoint: true,
        https: true,
        string_matching: false,
        fast_interval: true,
        latency_measurement: false,
    };

    /// How many optional features it is billed for.
    pub fn features(&self) -> u32 {
        [
            self.https,
            self.string_matching,
            self.fast_interval,
            self.latency_measurement,
        ]
        .into_iter()
        .filter(|&f| f)
        .count() as u32
    }
}

/// What the bill is computed from: a fleet's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// `timings.poll_interval`.
    pub poll_interval_ms: u64,
    /// Daemons in the fleet (one per `[[regions]]`).
    pub daemons: u32,
    /// Regions holding a replica of the control table (`tables.replicas`;
    /// an MRSC witness holds none and is not listed).
    pub replicas: Vec<String>,
    pub mode: TableMode,
    /// Every Route 53 health check the fleet reads.
    pub health_checks: Vec<HealthCheck>,
    /// `health.route53_calls_per_second`, for the whole fleet.
    pub route53_calls_per_second: f64,
    /// `health.route53_source`: with `CloudWatch`, a slot is one
    /// GetMetricData of every check (billed per check), and a check's
    /// reading is published once per data point.
    pub route53_source: crate::core::health::Route53Source,
    /// `health.route53_metric_period` (the `CloudWatch` source).
    pub route53_metric_period_ms: u64,
    /// `cost.interval`: each daemon's cost task reads the record once.
    pub cost_interval_ms: u64,
    /// CloudWatch GetMetricStatistics requests the whole fleet's cost tasks
    /// make each `cost.interval`: one per provisioned variant when
    /// `cost.idle.enabled` and `cost.idle.cloudwatch`, else 0.
    pub cloudwatch_requests_per_cost_round: u32,
    /// `router.routing_refresh`: each router scans the routing table
    /// (eventually consistent, under 4 KB); 0 = no router.
    pub routing_refresh_ms: u64,
}

/// What the bill assumes beyond the settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Assumptions {
    /// Failover workflows a month (drills and their failbacks included).
    pub failovers_per_month: f64,
}

impl Default for Assumptions {
    /// A monthly drill and its failback.
    fn default() -> Self {
        Assumptions {
            failovers_per_month: 2.0,
        }
    }
}

/// The service a line is billed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    DynamoDb,
    Route53,
    StepFunctions,
    CloudWatch,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::DynamoDb => "DynamoDB",
            Service::Route53 => "Route 53",
            Service::StepFunctions => "Step Functions",
            Service::CloudWatch => "CloudWatch",
        })
    }
}

/// One line of the bill.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub service: Service,
    pub item: String,
    /// Units a month.
    pub quantity: f64,
    pub unit: &'static str,
    pub unit_price: Price,
    pub usd: f64,
    /// How the quantity was derived.
    pub how: String,
}

/// What one replica region is charged for the table's writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionWrites {
    pub region: String,
    /// Replicated write units (and index write units) charged there a month.
    pub write_units: f64,
    pub usd: f64,
}

/// Where the quantities come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The configuration's settings and the code's calls per round.
    Settings,
    /// One daemon's measured calls per round.
    Measured,
}

/// A month of failoverd's own AWS usage, priced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bill {
    pub basis: Basis,
    pub prices_region: &'static str,
    pub prices_checked: &'static str,
    pub free_tiers_applied: bool,
    pub lines: Vec<Line>,
    /// The table's writes, per replica region.
    pub writes_by_region: Vec<RegionWrites>,
    pub total_usd: f64,
    /// Per service, in [`Service`] order.
    pub by_service: BTreeMap<Service, f64>,
    /// What the figure rests on and what it leaves out.
    pub notes: Vec<String>,
}

impl Bill {
    /// The lines of one service.
    pub fn service(&self, s: Service) -> impl Iterator<Item = &Line> {
        self.lines.iter().filter(move |l| l.service == s)
    }

    /// The quantity of the first line whose item starts with `prefix`.
    pub fn quantity(&self, prefix: &str) -> Option<f64> {
        self.lines
            .iter()
            .find(|l| l.item.starts_with(prefix))
            .map(|l| l.quantity)
    }
}

/// A month of this many seconds' worth of events every `interval_ms`.
fn per_month(interval_ms: u64) -> f64 {
    if interval_ms == 0 {
        0.0
    } else {
        MONTH_SECS * 1000.0 / interval_ms as f64
    }
}

/// Group digits: 1576800 -> "1,576,800"; fractions keep one decimal.
pub fn count(x: f64) -> String {
    let whole = x.trunc() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    let frac = x - x.trunc();
    if frac > 0.05 && whole < 1000 {
        out.push_str(&format!("{:.1}", frac)[1..]);
    }
    out
}

struct Builder<'a> {
    prices: &'a Prices,
    lines: Vec<Line>,
    /// Writes that every replica is charged for, and index writes.
    replicated_writes: f64,
    index_writes: f64,
}

impl Builder<'_> {
    fn line(
        &mut self,
        service: Service,
        item: impl Into<String>,
        quantity: f64,
        unit: &'static str,
        unit_price: Price,
        how: impl Into<String>,
    ) {
        self.lines.push(Line {
            service,
            item: item.into(),
            quantity,
            unit,
            unit_price,
            usd: unit_price.of(quantity),
            how: how.into(),
        });
    }

    fn reads(&mut self, item: &str, units: f64, how: String) {
        let p = self.prices.read_request_unit;
        self.line(Service::DynamoDb, item, units, "RRU", p, how);
    }

    /// `writes` writes a month to a table of `replicas`: one rWRU each in
    /// every replica region.
    fn writes(&mut self, item: &str, writes: f64, replicas: &[String], how: String) {
        let n = replicas.len() as f64;
        self.replicated_writes += writes;
        let p = self.prices.replicated_write_request_unit;
        let how = format!(
            "{how}; x {} replicas ({}), one rWRU in each",
            replicas.len(),
            replicas.join(", ")
        );
        self.line(Service::DynamoDb, item, writes * n, "rWRU", p, how);
    }

    fn index_writes(&mut self, writes: f64, replicas: &[String], how: String) {
        let n = replicas.len() as f64;
        self.index_writes += writes;
        let p = self.prices.write_request_unit;
        let how = format!("{how}; x {} replicas, the index in each", replicas.len());
        self.line(
            Service::DynamoDb,
            "writes to the pending index (GSI)",
            writes * n,
            "WRU",
            p,
            how,
        );
    }

    fn finish(self, basis: Basis, replicas: &[String], mut notes: Vec<String>) -> Bill {
        let per_region = self.replicated_writes * self.prices.replicated_write_request_unit.usd
            / self.prices.replicated_write_request_unit.per as f64
            + self.index_writes * self.prices.write_request_unit.usd
                / self.prices.write_request_unit.per as f64;
        let writes_by_region = replicas
            .iter()
            .map(|r| RegionWrites {
                region: r.clone(),
                write_units: self.replicated_writes + self.index_writes,
                usd: per_region,
            })
            .collect();
        let mut by_service = BTreeMap::new();
        for l in &self.lines {
            *by_service.entry(l.service).or_insert(0.0) += l.usd;
        }
        let total_usd = self.lines.iter().map(|l| l.usd).sum();
        let prices_region = self.prices.region;
        let mut lines = self.lines;
        lines.sort_by_key(|l| l.service);
        let aws_basic: f64 = lines
            .iter()
            .filter(|l| l.item.starts_with("health checks, basic (AWS endpoint)"))
            .map(|l| l.usd)
            .sum();
        notes.push(format!(
            "free tiers not applied: Route 53 bills no basic fee for up to 50 checks of AWS endpoints (here {}), and Step Functions' first 4,000 transitions a month and CloudWatch's first 1,000,000 API requests (GetMetricStatistics) are free",
            usd(aws_basic)
        ));
        Bill {
            basis,
            prices_region,
            prices_checked: PRICES_CHECKED,
            free_tiers_applied: false,
            lines,
            writes_by_region,
            total_usd,
            by_service,
            notes,
        }
    }
}

/// Dollars with cents, or four decimals under a cent.
pub fn usd(x: f64) -> String {
    if x > 0.0 && x < 0.0001 {
        "<$0.0001".to_string()
    } else if x != 0.0 && x.abs() < 0.01 {
        format!("${x:.4}")
    } else {
        format!("${x:.2}")
    }
}

/// Route 53 readings the whole fleet makes a month: one per slot of the
/// budget (two API calls a reading; `core::health::route53_turn`). The
/// daemon whose slot it is reads at the slot, between its rounds
/// (docs/detection.md), so every slot is used.
pub fn readings_per_month(s: &Settings) -> f64 {
    if s.health_checks.is_empty() || s.route53_calls_per_second <= 0.0 {
        return 0.0;
    }
    match s.route53_source {
        Route53Source::Api => MONTH_SECS * 1000.0 / slot_ms(s),
        // One reading per check and data point (control::signals publishes
        // a point once, whoever reads it first).
        Route53Source::CloudWatch => {
            s.health_checks.len() as f64 * MONTH_SECS * 1000.0
                / s.route53_metric_period_ms.max(1) as f64
        }
    }
}

/// The fleet's budget slot: one reading of one check through the API (two
/// calls), one GetMetricData of every check through CloudWatch (one).
fn slot_ms(s: &Settings) -> f64 {
    (s.route53_source.calls_per_slot() as f64 * 1000.0 / s.route53_calls_per_second).max(1.0)
}

/// GetMetricData calls the fleet makes a month with the CloudWatch source
/// (one per slot), and the metrics they request (one per check each).
pub fn metric_calls_per_month(s: &Settings) -> (f64, f64) {
    if s.route53_source != Route53Source::CloudWatch
        || s.health_checks.is_empty()
        || s.route53_calls_per_second <= 0.0
    {
        return (0.0, 0.0);
    }
    let calls = MONTH_SECS * 1000.0 / slot_ms(s);
    (calls, calls * s.health_checks.len() as f64)
}

/// CloudWatch GetMetricData of the checks' `HealthCheckStatus` (the
/// `cloudwatch` source), billed per metric requested.
fn metric_line(b: &mut Builder<'_>, s: &Settings, tag: &str) {
    let (calls, metrics) = metric_calls_per_month(s);
    if calls <= 0.0 {
        return;
    }
    let p = b.prices.cloudwatch_metric_requested;
    b.line(
        Service::CloudWatch,
        format!("GetMetricData (Route 53 HealthCheckStatus){tag}"),
        metrics,
        "metrics requested",
        p,
        format!(
            "{} calls (one per {} ms slot of the fleet's budget) x {} checks",
            count(calls),
            slot_ms(s) as u64,
            s.health_checks.len()
        ),
    );
}

/// The lines every basis takes from the settings: the health checks' fees,
/// the router's scans, CloudWatch, the workflow.
fn configured_lines(b: &mut Builder<'_>, s: &Settings, a: &Assumptions, measured: bool) {
    let tag = if measured { " (configured)" } else { "" };
    // Route 53 health checks: a monthly fee each, plus each feature.
    for aws in [true, false] {
        let checks: Vec<&HealthCheck> = s
            .health_checks
            .iter()
            .filter(|c| c.aws_endpoint == aws)
            .collect();
        if checks.is_empty() {
            continue;
        }
        let (basic, feature, what) = if aws {
            (
                b.prices.health_check_aws,
                b.prices.health_check_feature_aws,
                "AWS endpoint",
            )
        } else {
            (
                b.prices.health_check_non_aws,
                b.prices.health_check_feature_non_aws,
                "non-AWS endpoint",
            )
        };
        b.line(
            Service::Route53,
            format!("health checks, basic ({what}){tag}"),
            checks.len() as f64,
            "check-months",
            basic,
            format!("{} checks", checks.len()),
        );
        let features: u32 = checks.iter().map(|c| c.features()).sum();
        let named: Vec<String> = [
            ("HTTPS", checks.iter().filter(|c| c.https).count()),
            (
                "string matching",
                checks.iter().filter(|c| c.string_matching).count(),
            ),
            (
                "fast interval",
                checks.iter().filter(|c| c.fast_interval).count(),
            ),
            (
                "latency measurement",
                checks.iter().filter(|c| c.latency_measurement).count(),
            ),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(f, n)| format!("{f} x {n}"))
        .collect();
        if features > 0 {
            b.line(
                Service::Route53,
                format!("health checks, optional features ({what}){tag}"),
                features as f64,
                "feature-months",
                feature,
                named.join(", "),
            );
        }
    }
    // The router's routing-table scans (not metered).
    if s.routing_refresh_ms > 0 {
        let scans = per_month(s.routing_refresh_ms) * s.daemons as f64;
        b.reads(
            "routing table scans, eventually consistent (router, not metered)",
            scans * 0.5,
            format!(
                "{} daemons x {} scans (one per {} ms) x 0.5 RRU",
                s.daemons,
                count(per_month(s.routing_refresh_ms)),
                s.routing_refresh_ms
            ),
        );
    }
    // The workflow: its transitions, and the table writes of a failover
    // (the workflow's own are not metered; the daemons' are, in `measured`).
    let transitions = a.failovers_per_month * TRANSITIONS_PER_FAILOVER as f64;
    let p = b.prices.state_transition;
    b.line(
        Service::StepFunctions,
        format!("standard workflow state transitions{tag}"),
        transitions,
        "transitions",
        p,
        format!(
            "{} failovers a month (assumed) x {TRANSITIONS_PER_FAILOVER} transitions (happy path, no retries)",
            trim_zeros(a.failovers_per_month)
        ),
    );
    if !measured {
        let writes = a.failovers_per_month * WRITES_PER_FAILOVER as f64;
        b.writes(
            "failover writes (workflow and daemons)",
            writes,
            &s.replicas,
            format!(
                "{} failovers x {WRITES_PER_FAILOVER} writes",
                trim_zeros(a.failovers_per_month)
            ),
        );
        let index = a.failovers_per_month * INDEX_WRITES_PER_FAILOVER as f64;
        b.index_writes(
            index,
            &s.replicas,
            format!(
                "{} failovers x {INDEX_WRITES_PER_FAILOVER} token writes",
                trim_zeros(a.failovers_per_month)
            ),
        );
    } else {
        let writes = a.failovers_per_month * 7.0;
        b.writes(
            "the workflow's own writes (configured, not metered)",
            writes,
            &s.replicas,
            format!("{} failovers x 7 writes", trim_zeros(a.failovers_per_month)),
        );
    }
    // CloudWatch: the cost task's Invocations reads.
    let requests = s.cloudwatch_requests_per_cost_round as f64 * per_month(s.cost_interval_ms);
    let p = b.prices.cloudwatch_request;
    b.line(
        Service::CloudWatch,
        format!("GetMetricStatistics (idle detection){tag}"),
        requests,
        "requests",
        p,
        if s.cloudwatch_requests_per_cost_round == 0 {
            "none: idle detection does not read CloudWatch (cost.idle.enabled or cost.idle.cloudwatch is off)".to_string()
        } else {
            format!(
                "{} requests (one per provisioned variant) x {} cost rounds (one per {} ms)",
                s.cloudwatch_requests_per_cost_round,
                count(per_month(s.cost_interval_ms)),
                s.cost_interval_ms
            )
        },
    );
}

fn common_notes(s: &Settings) -> Vec<String> {
    vec![format!(
        "month = 730 hours; prices: {} list prices checked {PRICES_CHECKED}, the same in {}",
        US_EAST_1.region,
        s.replicas.join(", ")
    )]
}

/// The bill from a fleet's settings and the code's calls per round.
pub fn from_settings(s: &Settings, a: &Assumptions, prices: &Prices) -> Bill {
    let mut b = Builder {
        prices,
        lines: Vec::new(),
        replicated_writes: 0.0,
        index_writes: 0.0,
    };
    let rounds = per_month(s.poll_interval_ms);
    let fleet_rounds = rounds * s.daemons as f64;
    let per_round = format!(
        "{} daemons x {} rounds (one per {} ms)",
        s.daemons,
        count(rounds),
        s.poll_interval_ms
    );
    b.reads(
        "reads each round: readings, votes, record (strongly consistent)",
        fleet_rounds * ROUND.strong_reads as f64,
        format!("{per_round} x {} reads x 1 RRU", ROUND.strong_reads),
    );
    b.reads(
        "reads each round: pending tokens (GSI, eventually consistent)",
        fleet_rounds * ROUND.eventual_reads as f64 * 0.5,
        format!("{per_round} x {} query x 0.5 RRU", ROUND.eventual_reads),
    );
    if s.mode == TableMode::Mrec {
        let others = s.replicas.len().saturating_sub(1) as f64;
        b.reads(
            "MREC lease confirmation: the other replicas' record (active daemon)",
            rounds * others,
            format!(
                "1 active daemon x {} rounds x {} other replicas x 1 RRU",
                count(rounds),
                others
            ),
        );
    }
    let cost_rounds = per_month(s.cost_interval_ms) * s.daemons as f64;
    b.reads(
        "cost task: the record once each cost.interval",
        cost_rounds,
        format!(
            "{} daemons x {} cost rounds (one per {} ms) x 1 RRU",
            s.daemons,
            count(per_month(s.cost_interval_ms)),
            s.cost_interval_ms
        ),
    );
    b.writes(
        "vote writes, one per daemon and round",
        fleet_rounds * ROUND.writes as f64,
        &s.replicas,
        format!("{per_round} x {} write", ROUND.writes),
    );
    let readings = readings_per_month(s);
    if readings > 0.0 && s.route53_source == Route53Source::Api {
        let slot_ms = slot_ms(s);
        b.writes(
            "Route 53 readings published for the fleet",
            readings,
            &s.replicas,
            format!(
                "one reading per {} ms (the fleet's budget slot)",
                slot_ms as u64
            ),
        );
        let p = prices.route53_api_request;
        b.line(
            Service::Route53,
            "API requests (GetHealthCheck, GetHealthCheckStatus)",
            readings * ROUTE53_REQUESTS_PER_READING as f64,
            "requests",
            p,
            format!(
                "{} readings x {ROUTE53_REQUESTS_PER_READING} requests; Route 53 bills no API requests",
                count(readings)
            ),
        );
    }
    if readings > 0.0 && s.route53_source == Route53Source::CloudWatch {
        b.writes(
            "Route 53 readings published for the fleet (one per check and data point)",
            readings,
            &s.replicas,
            format!(
                "{} checks x one data point per {} ms",
                s.health_checks.len(),
                s.route53_metric_period_ms
            ),
        );
    }
    metric_line(&mut b, s, "");
    configured_lines(&mut b, s, a, false);
    let mut notes = common_notes(s);
    notes.push(format!(
        "per-round calls from the code: {} strongly consistent reads, {} GSI query, {} write per daemon; item sizes under 4 KB read / 1 KB written",
        ROUND.strong_reads, ROUND.eventual_reads, ROUND.writes
    ));
    b.finish(Basis::Settings, &s.replicas, notes)
}

/// One daemon's meter: calls per (service, operation, region) since it
/// started, and the rounds it ran meanwhile.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Measured {
    /// `failoverd_round_duration_seconds_count`.
    pub rounds: u64,
    /// `failoverd_aws_calls_total`: (service, operation) -> calls, summed
    /// over regions.
    pub calls: BTreeMap<(String, String), u64>,
}

/// `/metrics` that cannot be read as the meter's counts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeasuredError {
    #[error(
        "no failoverd_round_duration_seconds_count in the metrics (not a failoverd control side?)"
    )]
    NoRounds,
    #[error("the daemon has not completed a round yet")]
    ZeroRounds,
    #[error("line {line}: {why}")]
    Malformed { line: usize, why: String },
}

/// The value of `key="..."` in a label set.
fn label_value<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &labels[start..];
    rest.find('"').map(|end| &rest[..end])
}

impl Measured {
    /// Parse the Prometheus text a daemon's `/metrics` answers.
    pub fn from_prometheus(text: &str) -> Result<Measured, MeasuredError> {
        let mut m = Measured::default();
        let mut saw_rounds = false;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let bad = |why: &str| MeasuredError::Malformed {
                line: i + 1,
                why: why.to_string(),
            };
            if let Some(v) = line.strip_prefix("failoverd_round_duration_seconds_count ") {
                m.rounds = v.trim().parse::<f64>().map_err(|_| bad("not a number"))? as u64;
                saw_rounds = true;
            } else if let Some(rest) = line.strip_prefix("failoverd_aws_calls_total{") {
                let (labels, value) = rest
                    .split_once('}')
                    .ok_or_else(|| bad("no closing brace"))?;
                let service = label_value(labels, "service").ok_or_else(|| bad("no service"))?;
                let operation =
                    label_value(labels, "operation").ok_or_else(|| bad("no operation"))?;
                let n = value
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| bad("not a number"))? as u64;
                *m.calls
                    .entry((service.to_string(), operation.to_string()))
                    .or_insert(0) += n;
            }
        }
        if !saw_rounds {
            return Err(MeasuredError::NoRounds);
        }
        if m.rounds == 0 {
            return Err(MeasuredError::ZeroRounds);
        }
        Ok(m)
    }

    /// Calls of `operation` per round.
    pub fn per_round(&self, service: &str, operation: &str) -> f64 {
        self.calls
            .get(&(service.to_string(), operation.to_string()))
            .map_or(0.0, |&n| n as f64 / self.rounds.max(1) as f64)
    }
}

/// How one metered operation is billed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cost {
    /// Read units per call.
    Read(f64),
    /// One write per call (one rWRU per replica), and whether it also
    /// writes the pending index.
    Write { index: bool },
    /// Route 53 API requests per call.
    Route53(u32),
    /// A GetMetricData call of every check's `HealthCheckStatus` (billed
    /// per check; the count of checks comes from the settings).
    MetricsPerCheck,
    /// Step Functions API request (not billed).
    StepFunctionsApi,
    /// Not an AWS charge of the control plane (SageMaker's control plane is
    /// not billed; a warm-up is one inference on the endpoint).
    Free,
}

fn cost_of(service: &str, operation: &str) -> Option<Cost> {
    Some(match (service, operation) {
        ("dynamodb", "read_record" | "read_duty" | "read_votes" | "read_readings" | "tokens") => {
            Cost::Read(1.0)
        }
        ("dynamodb", "pending_tokens") => Cost::Read(0.5),
        ("dynamodb", "events") => Cost::Read(EVENTS_READ_UNITS),
        ("dynamodb", "write_record" | "write_duty" | "put_vote" | "put_reading" | "journal") => {
            Cost::Write { index: false }
        }
        ("dynamodb", "claim_token" | "extend_claim" | "finish_token") => {
            Cost::Write { index: true }
        }
        ("route53", "read_health_check") => Cost::Route53(ROUTE53_REQUESTS_PER_READING),
        ("route53", _) => Cost::Route53(1),
        ("cloudwatch", "read_health_check_metrics") => Cost::MetricsPerCheck,
        ("stepfunctions", _) => Cost::StepFunctionsApi,
        ("sagemaker" | "sagemaker_runtime", _) => Cost::Free,
        // None of these APIs is billed (readiness reads them once per round).
        ("application_autoscaling" | "service_quotas" | "iam", _) => Cost::Free,
        _ => return None,
    })
}

/// The bill from one daemon's measured calls per round, scaled to the
/// fleet (`s.daemons` daemons like it, a round every `s.poll_interval_ms`),
/// with what the meter does not count taken from the settings.
pub fn from_measured(m: &Measured, s: &Settings, a: &Assumptions, prices: &Prices) -> Bill {
    let mut b = Builder {
        prices,
        lines: Vec::new(),
        replicated_writes: 0.0,
        index_writes: 0.0,
    };
    let rounds = per_month(s.poll_interval_ms);
    let scale = rounds * s.daemons as f64;
    let scaled = format!(
        "per round x {} rounds (one per {} ms) x {} daemons",
        count(rounds),
        s.poll_interval_ms,
        s.daemons
    );
    let mut unpriced = Vec::new();
    // Group the operations by how they are billed, in a stable order.
    let mut strong: Vec<(String, f64)> = Vec::new();
    let mut eventual: Vec<(String, f64)> = Vec::new();
    let mut writes: Vec<(String, f64)> = Vec::new();
    let mut index: Vec<(String, f64)> = Vec::new();
    let mut r53 = (0.0, Vec::new());
    let mut sfn = (0.0, Vec::new());
    let mut metric_calls = (0.0, Vec::new());
    for ((service, op), &n) in &m.calls {
        let per_round = n as f64 / m.rounds as f64;
        let shown = format!("{op} {per_round:.3}");
        match cost_of(service, op) {
            Some(Cost::Read(u)) if u == 0.5 => eventual.push((shown, per_round * u)),
            Some(Cost::Read(u)) => strong.push((format!("{shown} x {u} RRU"), per_round * u)),
            Some(Cost::Write { index: i }) => {
                writes.push((shown.clone(), per_round));
                if i {
                    index.push((shown, per_round));
                }
            }
            Some(Cost::Route53(k)) => {
                r53.0 += per_round * k as f64;
                r53.1.push(shown);
            }
            Some(Cost::StepFunctionsApi) => {
                sfn.0 += per_round;
                sfn.1.push(shown);
            }
            Some(Cost::MetricsPerCheck) => {
                metric_calls.0 += per_round;
                metric_calls.1.push(shown);
            }
            Some(Cost::Free) => {}
            None => unpriced.push(format!("{service}/{op}")),
        }
    }
    let sum = |v: &[(String, f64)]| v.iter().map(|(_, x)| x).sum::<f64>();
    let names = |v: &[(String, f64)]| {
        v.iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !strong.is_empty() {
        b.reads(
            "strongly consistent reads (measured)",
            sum(&strong) * scale,
            format!("{} {scaled}", names(&strong)),
        );
    }
    if !eventual.is_empty() {
        b.reads(
            "eventually consistent reads, pending index (measured)",
            sum(&eventual) * scale,
            format!("{} x 0.5 RRU {scaled}", names(&eventual)),
        );
    }
    // The cost task's record reads are in read_record already.
    if !writes.is_empty() {
        b.writes(
            "writes (measured)",
            sum(&writes) * scale,
            &s.replicas,
            format!("{} {scaled}", names(&writes)),
        );
    }
    if !index.is_empty() {
        b.index_writes(
            sum(&index) * scale,
            &s.replicas,
            format!("{} {scaled}", names(&index)),
        );
    }
    if !r53.1.is_empty() {
        let p = prices.route53_api_request;
        b.line(
            Service::Route53,
            "API requests (measured)",
            r53.0 * scale,
            "requests",
            p,
            format!(
                "{} {scaled}; Route 53 bills no API requests",
                r53.1.join(", ")
            ),
        );
    }
    if !sfn.1.is_empty() {
        let p = prices.step_functions_api_request;
        b.line(
            Service::StepFunctions,
            "API requests (measured)",
            sfn.0 * scale,
            "requests",
            p,
            format!(
                "{} {scaled}; only state transitions are billed",
                sfn.1.join(", ")
            ),
        );
    }
    if !metric_calls.1.is_empty() {
        let p = prices.cloudwatch_metric_requested;
        let checks = s.health_checks.len().max(1) as f64;
        b.line(
            Service::CloudWatch,
            "GetMetricData (Route 53 HealthCheckStatus, measured)",
            metric_calls.0 * scale * checks,
            "metrics requested",
            p,
            format!(
                "{} {scaled} x {} checks a call",
                metric_calls.1.join(", "),
                checks
            ),
        );
    }
    configured_lines(&mut b, s, a, true);
    let mut notes = common_notes(s);
    notes.push(format!(
        "measured over {} rounds of one daemon, scaled to {} daemons like it: whatever happened in those rounds (a drill, an open status page) counts as if it went on all month",
        m.rounds, s.daemons
    ));
    if !unpriced.is_empty() {
        notes.push(format!(
            "operations this bill does not know how to price (left out): {}",
            unpriced.join(", ")
        ));
    }
    b.finish(Basis::Measured, &s.replicas, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions(n: usize) -> Vec<String> {
        ["us-east-1", "us-west-2", "us-east-2", "eu-west-1"][..n]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// regions/base.toml: three daemons, poll 5 s, an MRSC table with three
    /// replicas, the template's three checks, 0.5 Route 53 calls/s, the cost
    /// task every minute without CloudWatch, the routing table every 30 s.
    fn production() -> Settings {
        Settings {
            poll_interval_ms: 5_000,
            daemons: 3,
            replicas: regions(3),
            mode: TableMode::Mrsc,
            health_checks: vec![HealthCheck::SHIPPED; 3],
            route53_calls_per_second: 0.5,
            route53_source: Route53Source::Api,
            route53_metric_period_ms: 60_000,
            cost_interval_ms: 60_000,
            cloudwatch_requests_per_cost_round: 0,
            routing_refresh_ms: 30_000,
        }
    }

    fn bill(s: &Settings) -> Bill {
        from_settings(s, &Assumptions::default(), &US_EAST_1)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn the_production_bill_line_by_line() {
        let b = bill(&production());
        // 730 h / 5 s = 525,600 rounds a daemon; three daemons.
        assert_eq!(
            b.quantity("reads each round: readings"),
            Some(3.0 * 525_600.0 * 3.0)
        );
        assert_eq!(
            b.quantity("reads each round: pending"),
            Some(525_600.0 * 3.0 * 0.5)
        );
        // Votes: one write a round, one rWRU in each of three replicas.
        assert_eq!(b.quantity("vote writes"), Some(525_600.0 * 3.0 * 3.0));
        // Readings: one per 4 s slot (read between rounds), in three replicas.
        assert_eq!(b.quantity("Route 53 readings"), Some(657_000.0 * 3.0));
        assert_eq!(b.quantity("API requests"), Some(657_000.0 * 2.0));
        // Three HTTPS, fast-interval checks of AWS endpoints: $0.50 + 2 x $1.00 each.
        let r53: f64 = b.service(Service::Route53).map(|l| l.usd).sum();
        assert!(close(r53, 7.5), "{r53}");
        assert!(close(b.by_service[&Service::CloudWatch], 0.0));
        // DynamoDB: reads (4,730,400 + 788,400 + 131,400 + 131,400) RRU at
        // $0.125/M, writes (1,576,800 + 525,600 + 52) x 3 rWRU at $0.625/M,
        // 16 x 3 index WRU.
        let reads = (4_730_400.0 + 788_400.0 + 131_400.0 + 131_400.0) * 0.125 / 1e6;
        let writes = (1_576_800.0 + 657_000.0 + 52.0) * 3.0 * 0.625 / 1e6 + 48.0 * 0.625 / 1e6;
        assert!(
            close(b.by_service[&Service::DynamoDb], reads + writes),
            "{} vs {}",
            b.by_service[&Service::DynamoDb],
            reads + writes
        );
        assert!(close(
            b.by_service[&Service::StepFunctions],
            18.0 * 0.025 / 1000.0
        ));
        let total: f64 = b.lines.iter().map(|l| l.usd).sum();
        assert!(close(b.total_usd, total));
        assert!((12.0..12.5).contains(&b.total_usd), "{}", b.total_usd);
        assert!(!b.free_tiers_applied);
    }

    #[test]
    fn doubling_the_poll_interval_halves_the_round_reads() {
        let a = bill(&production());
        let mut slow = production();
        slow.poll_interval_ms *= 2;
        let b = bill(&slow);
        for item in [
            "reads each round: readings",
            "reads each round: pending",
            "vote writes",
        ] {
            assert!(
                close(b.quantity(item).unwrap() * 2.0, a.quantity(item).unwrap()),
                "{item}"
            );
        }
        // The cost task and the router do not follow the poll interval.
        assert_eq!(b.quantity("cost task"), a.quantity("cost task"));
        assert!(b.total_usd < a.total_usd);
    }

    #[test]
    fn every_replica_region_is_charged_for_every_write() {
        let b = bill(&production());
        // A write in one region lands in the other two as well: three
        // regions charged, the same units each.
        assert_eq!(b.writes_by_region.len(), 3);
        let names: Vec<&str> = b
            .writes_by_region
            .iter()
            .map(|r| r.region.as_str())
            .collect();
        assert_eq!(names, ["us-east-1", "us-west-2", "us-east-2"]);
        let first = &b.writes_by_region[0];
        assert!(b.writes_by_region.iter().all(|r| r
            == &RegionWrites {
                region: r.region.clone(),
                ..first.clone()
            }));
        let rwru: f64 = b
            .lines
            .iter()
            .filter(|l| l.unit == "rWRU")
            .map(|l| l.quantity)
            .sum();
        assert!(close(rwru, first.write_units * 3.0 - 48.0));
        // Two replicas and a witness (MRSC): two regions charged, a third less.
        let mut two = production();
        two.replicas.truncate(2);
        let t = bill(&two);
        assert_eq!(t.writes_by_region.len(), 2);
        assert!(close(
            t.quantity("vote writes").unwrap() * 3.0,
            b.quantity("vote writes").unwrap() * 2.0
        ));
    }

    #[test]
    fn mrec_adds_the_active_daemons_lease_confirmation_reads() {
        let strong = bill(&production());
        let mut eventual = production();
        eventual.mode = TableMode::Mrec;
        let e = bill(&eventual);
        assert_eq!(strong.quantity("MREC"), None);
        // The active daemon reads the two other replicas' record every round.
        assert_eq!(e.quantity("MREC"), Some(525_600.0 * 2.0));
        assert!(e.by_service[&Service::DynamoDb] > strong.by_service[&Service::DynamoDb]);
        // Writes are charged the same way in both modes.
        assert_eq!(e.quantity("vote writes"), strong.quantity("vote writes"));
    }

    #[test]
    fn health_check_features_and_endpoints_are_priced_apart() {
        let mut s = production();
        s.health_checks = vec![
            HealthCheck {
                aws_endpoint: false,
                https: true,
                string_matching: true,
                fast_interval: true,
                latency_measurement: true,
            },
            HealthCheck {
                aws_endpoint: true,
                https: false,
                string_matching: false,
                fast_interval: false,
                latency_measurement: false,
            },
        ];
        let b = bill(&s);
        let r53: f64 = b.service(Service::Route53).map(|l| l.usd).sum();
        // Non-AWS: $0.75 + 4 x $2.00; AWS basic: $0.50.
        assert!(close(r53, 0.75 + 8.0 + 0.5), "{r53}");
        // No checks: no readings, no Route 53 calls.
        s.health_checks.clear();
        let b = bill(&s);
        assert_eq!(b.quantity("Route 53 readings"), None);
    }

    #[test]
    fn the_fleet_reads_once_a_slot_whatever_the_poll() {
        let mut s = production();
        s.route53_calls_per_second = 4.0; // 500 ms slots, rounds every 5 s
        assert!(close(readings_per_month(&s), MONTH_SECS * 2.0));
        s.poll_interval_ms = 250; // rounds faster than the slots
        assert!(close(readings_per_month(&s), MONTH_SECS * 2.0));
    }

    #[test]
    fn cloudwatch_reads_follow_the_cost_interval() {
        let mut s = production();
        s.cloudwatch_requests_per_cost_round = 3;
        let b = bill(&s);
        let cw: Vec<&Line> = b.service(Service::CloudWatch).collect();
        assert_eq!(cw[0].quantity, 3.0 * 43_800.0);
        assert!(close(cw[0].usd, 3.0 * 43_800.0 * 0.01 / 1000.0));
    }

    /// The CloudWatch source: one GetMetricData of every check per slot
    /// (one call of the budget, not two), billed per check; no Route 53
    /// API requests; a reading published per check and data point.
    #[test]
    fn the_metric_source_bills_metrics_requested_not_route53_requests() {
        let mut s = production();
        s.route53_source = Route53Source::CloudWatch;
        let b = bill(&s);
        assert_eq!(
            b.service(Service::Route53)
                .filter(|l| l.item.contains("API"))
                .count(),
            0
        );
        let cw: Vec<&Line> = b
            .service(Service::CloudWatch)
            .filter(|l| l.item.contains("HealthCheckStatus"))
            .collect();
        assert_eq!(cw.len(), 1);
        // 0.5 calls/s, one call per 2 s slot, 3 metrics a call.
        assert!(close(cw[0].quantity, MONTH_SECS * 0.5 * 3.0));
        assert!(close(cw[0].usd, MONTH_SECS * 0.5 * 3.0 * 0.01 / 1000.0));
        assert!(close(readings_per_month(&s), 3.0 * MONTH_SECS / 60.0));
        // A tenth of the budget is a tenth of the bill.
        let mut tenth = s.clone();
        tenth.route53_calls_per_second = 0.05;
        let cw10: f64 = bill(&tenth)
            .service(Service::CloudWatch)
            .map(|l| l.usd)
            .sum();
        assert!(close(cw10, cw[0].usd / 10.0));
    }

    const METRICS: &str = "\
# HELP failoverd_aws_calls_total Calls
# TYPE failoverd_aws_calls_total counter
failoverd_aws_calls_total{service=\"dynamodb\",operation=\"read_record\",region=\"us-east-1\"} 110
failoverd_aws_calls_total{service=\"dynamodb\",operation=\"read_votes\",region=\"us-east-1\"} 100
failoverd_aws_calls_total{service=\"dynamodb\",operation=\"read_readings\",region=\"us-east-1\"} 100
failoverd_aws_calls_total{service=\"dynamodb\",operation=\"pending_tokens\",region=\"us-east-1\"} 100
failoverd_aws_calls_total{service=\"dynamodb\",operation=\"put_vote\",region=\"us-east-1\"} 100
failoverd_aws_calls_total{service=\"dynamodb\",operation=\"put_reading\",region=\"us-east-1\"} 30
failoverd_aws_calls_total{service=\"dynamodb\",operation=\"claim_token\",region=\"us-east-1\"} 2
failoverd_aws_calls_total{service=\"route53\",operation=\"read_health_check\",region=\"us-east-1\"} 30
failoverd_aws_calls_total{service=\"stepfunctions\",operation=\"start_execution\",region=\"us-west-2\"} 1
failoverd_aws_calls_total{service=\"sagemaker\",operation=\"describe_endpoint\",region=\"us-east-1\"} 4
failoverd_aws_calls_total{service=\"dynamodb\",operation=\"something_new\",region=\"us-east-1\"} 4
failoverd_round_duration_seconds_bucket{le=\"+Inf\"} 100
failoverd_round_duration_seconds_sum 3.2
failoverd_round_duration_seconds_count 100
";

    #[test]
    fn the_meters_counts_parse_and_scale_to_the_fleet() {
        let m = Measured::from_prometheus(METRICS).unwrap();
        assert_eq!(m.rounds, 100);
        assert_eq!(m.per_round("dynamodb", "read_record"), 1.1);
        let s = production();
        let b = from_measured(&m, &s, &Assumptions::default(), &US_EAST_1);
        let fleet = 525_600.0 * 3.0;
        assert!(close(
            b.quantity("strongly consistent reads").unwrap(),
            (1.1 + 1.0 + 1.0) * fleet
        ));
        assert!(close(
            b.quantity("eventually consistent reads").unwrap(),
            0.5 * fleet
        ));
        assert!(close(
            b.quantity("writes (measured)").unwrap(),
            (1.0 + 0.3 + 0.02) * fleet * 3.0
        ));
        assert!(close(
            b.quantity("writes to the pending index").unwrap(),
            0.02 * fleet * 3.0
        ));
        assert!(close(
            b.quantity("API requests (measured)").unwrap(),
            0.6 * fleet
        ));
        assert!(
            b.notes.iter().any(|n| n.contains("dynamodb/something_new")),
            "{:?}",
            b.notes
        );
        // What the meter does not count comes from the settings.
        assert!(
            b.quantity("health checks, basic (AWS endpoint) (configured)")
                .is_some()
        );
        // Twice the rounds for the same calls: half the rate.
        let halved = Measured {
            rounds: 200,
            ..m.clone()
        };
        let h = from_measured(&halved, &s, &Assumptions::default(), &US_EAST_1);
        assert!(close(
            h.quantity("strongly consistent reads").unwrap() * 2.0,
            b.quantity("strongly consistent reads").unwrap()
        ));
    }

    #[test]
    fn metrics_without_rounds_are_refused() {
        assert_eq!(
            Measured::from_prometheus("# nothing\n"),
            Err(MeasuredError::NoRounds)
        );
        assert_eq!(
            Measured::from_prometheus("failoverd_round_duration_seconds_count 0\n"),
            Err(MeasuredError::ZeroRounds)
        );
        assert!(matches!(
            Measured::from_prometheus(
                "failoverd_round_duration_seconds_count 3\nfailoverd_aws_calls_total{service=\"dynamodb\"} 1\n"
            ),
            Err(MeasuredError::Malformed { line: 2, .. })
        ));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(1_576_800.0), "1,576,800");
        assert_eq!(count(18.0), "18");
        assert_eq!(count(2.5), "2.5");
        assert_eq!(Price::new(0.125, 1_000_000).to_string(), "$0.125 per 1M");
        assert_eq!(Price::new(0.5, 1).to_string(), "$0.50");
        assert_eq!(Price::new(0.0, 1).to_string(), "$0.00");
        assert_eq!(Price::new(0.025, 1_000).to_string(), "$0.025 per 1K");
        assert_eq!(usd(0.00003), "<$0.0001");
        assert_eq!(usd(0.0012), "$0.0012");
        assert_eq!(usd(12.157), "$12.16");
    }
}
