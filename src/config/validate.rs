//! Validation: raw values to the typed [`Config`], collecting every
//! problem with its file and key. Each section of the file has its own
//! method, called in turn by [`Validator::validate`]; the tables' live in
//! `config/tables.rs`, the router's and the models' in `config/router.rs`,
//! the cost section's in `config/cost.rs`.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::cost::RawCost;
use super::load::{Origins, Problem};
use super::raw::{
    RawConfig, RawEndpoints, RawHealth, RawListen, RawRegion, RawSageMaker, RawTimings, RawTls,
};
use super::*;
use crate::core::health::Route53Source;

pub(super) struct Validator<'a> {
    origins: Origins<'a>,
    problems: Vec<Problem>,
    /// What loads but an operator should see (config/constraints.rs).
    warnings: Vec<Problem>,
    /// `policy.approval` was not set and took the two-region default.
    pub(super) approval_defaulted: bool,
}

impl<'a> Validator<'a> {
    pub(super) fn new(origins: Origins<'a>, problems: Vec<Problem>) -> Self {
        Self {
            origins,
            problems,
            warnings: Vec::new(),
            approval_defaulted: false,
        }
    }

    /// The errors, then the warnings.
    pub(super) fn into_parts(self) -> (Vec<Problem>, Vec<Problem>) {
        (self.problems, self.warnings)
    }
}

/// The least `timings.stuck_failover` accepted: above a drain that runs to
/// its timeout plus the workflow's retries around it (a unit test in
/// config/workflow.rs checks it against the ASL).
pub(super) const STUCK_FAILOVER_MIN: Duration = Duration::from_secs(180);

/// Defaults for settings a file may leave out. Regions, tables and the local
/// region have no defaults: a failover daemon must be told what it guards.
mod defaults {
    pub const POLL_INTERVAL: &str = "5s";
    pub const FAILURE_THRESHOLD: i64 = 3;
    pub const RECOVERY_THRESHOLD: i64 = 3;
    pub const VOTE_FRESHNESS: &str = "30s";
    pub const LEASE: &str = "30s";
    pub const MIN_FAILOVER_INTERVAL: &str = "10m";
    pub const SHUTDOWN_GRACE: &str = "20s";
    /// The warm-up's share of the workflow's prepare timeout (900 s),
    /// which a tier2 scale-up (`cost.prepare_budget`) shares too
    /// (config/cost.rs checks the sum).
    pub const PREPARE_BUDGET: &str = "30s";
    pub const START_TIMEOUT: &str = "60s";
    /// Derived in docs/protocol.md: the longest wait between two record
    /// writes of the workflow (a callback task's 120 s timeout) plus its
    /// DynamoDB retries, with room.
    pub const STUCK_FAILOVER: &str = "5m";
    pub const ABORT_RETRY: &str = "30s";
    /// Long enough for an on-call operator to be paged and look.
    pub const APPROVAL_TIMEOUT: &str = "15m";
    /// Loopback: a router reachable from elsewhere is a choice (with TLS
    /// and caller identity, or `router.allow_anonymous`), not a default.
    pub const ROUTER: &str = "127.0.0.1:8080";
    pub const ADMIN: &str = "127.0.0.1:9090";
    pub const ADMIN_TOKEN_FILE: &str = "/etc/failoverd/admin-token";
}

impl Validator<'_> {
    pub(super) fn err(&mut self, key: &str, message: impl Into<String>) {
        let p = self.origins.problem(key, message.into());
        self.problems.push(p);
    }

    /// A problem at `key` whose value's origin is looked up at `found_at`
    /// (a key that holds dots, as an instance type does, cannot be walked).
    pub(super) fn err_found_at(&mut self, found_at: &str, key: &str, message: impl Into<String>) {
        let mut p = self.origins.problem(key, message.into());
        p.origin = self.origins.of(found_at);
        self.problems.push(p);
    }

    pub(super) fn warn(&mut self, key: &str, message: impl Into<String>) {
        let p = self.origins.problem(key, message.into());
        self.warnings.push(p);
    }

    /// `instance`: unset (one is generated at start), or 1 to 32 of
    /// `A-Z a-z 0-9 . _ -` (it is part of the vote's key and the journal's
    /// `who`, so no `#` or `/`).
    fn instance(&mut self, raw: Option<String>) -> Option<String> {
        let v = raw?;
        let ok = !v.is_empty()
            && v.len() <= 32
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            self.err(
                "instance",
                format!("{v:?}: 1 to 32 letters, digits, '.', '_' or '-'"),
            );
            return None;
        }
        Some(v)
    }

    pub(super) fn required(&mut self, key: &str, v: Option<String>) -> Option<String> {
        match v {
            Some(s) if !s.trim().is_empty() => Some(s),
            Some(_) => {
                self.err(key, "must not be empty");
                None
            }
            None => {
                self.problems.push(Problem {
                    origin: "(every layer)".into(),
                    key: key.into(),
                    message: "missing; this setting has no default".into(),
                });
                None
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        v: Option<String>,
        default: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let text = v.unwrap_or_else(|| default.to_string());
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d < min || d > max => {
                self.err(
                    key,
                    format!(
                        "{text:?} is out of range: must be between {} and {}",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    key,
                    format!("{text:?} is not a duration ({e}); write it like \"10s\", \"500ms\" or \"5m\""),
                );
                None
            }
        }
    }

    /// `lo` (at `lo_key`) must not exceed `hi` (at `hi_key`).
    pub(super) fn not_above(
        &mut self,
        lo_key: &str,
        lo: Option<Duration>,
        hi_key: &str,
        hi: Option<Duration>,
    ) {
        if let (Some(l), Some(h)) = (lo, hi)
            && l > h
        {
            self.err(
                lo_key,
                format!(
                    "{} is longer than {hi_key} ({})",
                    humantime::format_duration(l),
                    humantime::format_duration(h)
                ),
            );
        }
    }

    pub(super) fn in_range(
        &mut self,
        key: &str,
        v: Option<i64>,
        default: i64,
        lo: i64,
        hi: i64,
    ) -> Option<u32> {
        let n = v.unwrap_or(default);
        if n < lo || n > hi {
            self.err(
                key,
                format!("{n} is out of range: must be between {lo} and {hi}"),
            );
            None
        } else {
            Some(n as u32)
        }
    }

    pub(super) fn addr(
        &mut self,
        key: &str,
        v: Option<String>,
        default: &str,
    ) -> Option<SocketAddr> {
        let text = v.unwrap_or_else(|| default.to_string());
        match text.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                self.err(
                    key,
                    format!(
                        "{text:?} is not a listen address ({e}); write it like \"127.0.0.1:9090\""
                    ),
                );
                None
            }
        }
    }

    pub(super) fn url(&mut self, key: &str, v: &str) -> bool {
        let ok = v
            .parse::<hyper::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if ok.is_none() {
            self.err(key, format!("{v:?} is not an http(s) URL"));
            false
        } else {
            true
        }
    }

    pub(super) fn optional_url(&mut self, key: &str, v: Option<String>) -> Option<String> {
        let v = v.filter(|s| !s.trim().is_empty())?;
        self.url(key, &v).then_some(v)
    }

    /// Every section in the order its problems are reported, then the
    /// [`Config`] if there were none.
    pub(super) fn validate(&mut self, raw: RawConfig, files: &[PathBuf]) -> Option<Config> {
        let region = self.required("region", raw.region);
        let instance = self.instance(raw.instance);
        // Without models, every region needs shared endpoints; with them,
        // each model's mapping is checked per region (config/serving.rs).
        let need_shared = raw.models.is_empty();
        let regions = self.regions(raw.regions, region.as_deref(), need_shared);
        // Tables (config/tables.rs).
        let tables = self.tables(raw.tables, &regions);
        let timings = self.timings(raw.timings);
        let health = self.health(raw.health);
        // Router and models (config/router.rs).
        let router = self.router(raw.router);
        let models = self.models(raw.models, &regions);
        let cost = self.cost_section(
            raw.cost,
            &models,
            &regions,
            tables.as_ref(),
            router.as_ref(),
            &timings,
        );
        // Approval of automatic failover.
        let policy = self.policy(raw.policy, regions.len());
        let listen = self.listen(raw.listen);
        let endpoints = self.endpoints(raw.endpoints);

        if let (Some(r), Some(l)) = (router.as_ref(), listen.as_ref()) {
            self.router_access(r, &models, l);
        }
        if !self.problems.is_empty() {
            return None;
        }
        let config = Config {
            region: region?,
            instance,
            regions,
            tables: tables?,
            timings: timings.complete()?,
            policy: policy?,
            router: router?,
            models,
            health: health?,
            listen: listen?,
            endpoints,
            cost: cost?,
            sources: files.to_vec(),
            warnings: Vec::new(),
        };
        // Constraints between sections (config/constraints.rs).
        self.derived(&config);
        self.problems.is_empty().then_some(config)
    }

    /// `[[regions]]`: at least two valid entries with unique names and
    /// priorities, the local `region` among them.
    fn regions(
        &mut self,
        raw: Vec<RawRegion>,
        local: Option<&str>,
        need_shared: bool,
    ) -> Vec<RegionConfig> {
        if raw.len() < 2 {
            self.problems.push(Problem {
                origin: self.origins.of("regions"),
                key: "regions".into(),
                message: format!(
                    "{} region(s) listed; failover needs at least 2 ([[regions]] entries)",
                    raw.len()
                ),
            });
        }
        let mut regions = Vec::new();
        let mut seen_names: HashMap<String, usize> = HashMap::new();
        let mut seen_prio: HashMap<u32, String> = HashMap::new();
        for (i, r) in raw.into_iter().enumerate() {
            if let Some(region) =
                self.region_entry(i, r, need_shared, &mut seen_names, &mut seen_prio)
            {
                regions.push(region);
            }
        }
        self.local_region_listed(local, &seen_names);
        regions
    }

    /// One `[[regions]]` entry; `None` when its name, priority or state
    /// machine is missing or refused.
    fn region_entry(
        &mut self,
        i: usize,
        r: RawRegion,
        need_shared: bool,
        seen_names: &mut HashMap<String, usize>,
        seen_prio: &mut HashMap<u32, String>,
    ) -> Option<RegionConfig> {
        let name = self.region_name(i, r.name, seen_names);
        let priority = self.region_priority(i, r.priority, name.as_deref(), seen_prio);
        self.region_watchers(
            i,
            &r.health_check_ids,
            &r.probe_urls,
            r.probe_match.as_deref(),
        );
        let arn = self.state_machine_arn(i, r.state_machine_arn, name.as_deref());
        let sm = self.sagemaker_endpoints(i, r.sagemaker, need_shared);
        let (Some(name), Some(priority), Some(state_machine_arn)) = (name, priority, arn) else {
            return None;
        };
        Some(RegionConfig {
            name,
            priority,
            health_check_ids: r.health_check_ids,
            probe_urls: r.probe_urls,
            probe_match: r.probe_match,
            state_machine_arn,
            sagemaker: sm,
            control_replica: r.control_replica.filter(|c| !c.is_empty()),
        })
    }

    /// `regions[i].name`: present, an AWS region name, not listed before.
    fn region_name(
        &mut self,
        i: usize,
        raw: Option<String>,
        seen_names: &mut HashMap<String, usize>,
    ) -> Option<String> {
        let key = format!("regions[{i}].name");
        let name = self.required(&key, raw);
        if let Some(n) = &name {
            if !is_region_name(n) {
                self.err(
                    &key,
                    format!("{n:?} is not an AWS region name like \"us-east-1\""),
                );
            }
            if let Some(first) = seen_names.insert(n.clone(), i) {
                self.err(
                    &key,
                    format!("duplicate region {n:?}: already listed as regions[{first}]"),
                );
            }
        }
        name
    }

    /// `regions[i].priority`: present, 1 to 1000, used by no other region.
    fn region_priority(
        &mut self,
        i: usize,
        raw: Option<i64>,
        name: Option<&str>,
        seen_prio: &mut HashMap<u32, String>,
    ) -> Option<u32> {
        let key = format!("regions[{i}].priority");
        let priority = match raw {
            None => {
                self.err(
                    &key,
                    "missing; give every region a unique priority (1 = preferred)",
                );
                None
            }
            Some(p) => self.in_range(&key, Some(p), 0, 1, 1000),
        };
        if let (Some(p), Some(n)) = (priority, name)
            && let Some(other) = seen_prio.insert(p, n.to_string())
        {
            self.err(
                    &key,
                    format!("priority {p} is also used by {other:?}; priorities must be unique so the failover target is unambiguous"),
                );
        }
        priority
    }

    /// A region's health signals: non-empty check ids, http(s) probe URLs,
    /// at least one of the two, and a `probe_match` of 1 to 5120 bytes.
    fn region_watchers(
        &mut self,
        i: usize,
        health_check_ids: &[String],
        probe_urls: &[String],
        probe_match: Option<&str>,
    ) {
        for (j, id) in health_check_ids.iter().enumerate() {
            if id.trim().is_empty() {
                self.err(
                    &format!("regions[{i}].health_check_ids[{j}]"),
                    "must not be empty",
                );
            }
        }
        for (j, u) in probe_urls.iter().enumerate() {
            self.url(&format!("regions[{i}].probe_urls[{j}]"), u);
        }
        if health_check_ids.is_empty() && probe_urls.is_empty() {
            self.problems.push(Problem {
                origin: self.origins.of(&format!("regions[{i}]")),
                key: format!("regions[{i}]"),
                message: "no health_check_ids and no probe_urls: nothing would watch this region"
                    .into(),
            });
        }
        if let Some(m) = probe_match
            && (m.is_empty() || m.len() > 5120)
        {
            self.err(
                &format!("regions[{i}].probe_match"),
                "must be 1 to 5120 bytes (probes read the first 5120 bytes of the body)",
            );
        }
    }

    /// `regions[i].state_machine_arn`: present, a state machine ARN. Which
    /// region it may be in depends on the tables (the workflow writes its
    /// own region's replica): config/constraints.rs checks it.
    fn state_machine_arn(
        &mut self,
        i: usize,
        raw: Option<String>,
        name: Option<&str>,
    ) -> Option<String> {
        let key = format!("regions[{i}].state_machine_arn");
        let arn = self.required(&key, raw);
        if let (Some(a), Some(_)) = (&arn, name) {
            let parts: Vec<&str> = a.split(':').collect();
            if parts.len() < 7
                || parts[0] != "arn"
                || parts[2] != "states"
                || parts[5] != "stateMachine"
                || !is_region_name(parts[3])
            {
                self.err(
                    &key,
                    format!("{a:?} is not a state machine ARN (arn:aws:states:REGION:ACCOUNT:stateMachine:NAME)"),
                );
            }
        }
        arn
    }

    /// `regions[i].sagemaker`: at least one endpoint when no model maps
    /// its own (empty names unset).
    fn sagemaker_endpoints(
        &mut self,
        i: usize,
        raw: RawSageMaker,
        need_shared: bool,
    ) -> SageMakerEndpoints {
        let sm = SageMakerEndpoints {
            serverless: raw.serverless.filter(|s| !s.is_empty()),
            provisioned: raw.provisioned.filter(|s| !s.is_empty()),
            batch: raw.batch.filter(|s| !s.is_empty()),
        };
        if sm.serverless.is_none() && sm.provisioned.is_none() && sm.batch.is_none() && need_shared
        {
            self.problems.push(Problem {
                origin: self.origins.of(&format!("regions[{i}]")),
                key: format!("regions[{i}].sagemaker"),
                message: "no SageMaker endpoint (serverless, provisioned or batch): this region could not serve".into(),
            });
        }
        sm
    }

    /// `region`: the local region is one of the `[[regions]]` names.
    fn local_region_listed(&mut self, local: Option<&str>, seen_names: &HashMap<String, usize>) {
        if let Some(local) = local
            && !seen_names.contains_key(local)
        {
            let listed: Vec<&str> = seen_names
                .keys()
                .map(String::as_str)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            self.err(
                "region",
                format!("local region {local:?} is missing from the region list {listed:?}"),
            );
        }
    }

    /// `[timings]`: each key within its bounds, then the vote freshness
    /// and the lease against the poll interval.
    fn timings(&mut self, t: RawTimings) -> CheckedTimings {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        // Fields are evaluated, and their problems reported, in this order.
        let checked = CheckedTimings {
            poll_interval: self.duration(
                "timings.poll_interval",
                t.poll_interval,
                defaults::POLL_INTERVAL,
                ms(100),
                s(3600),
            ),
            failure_threshold: self.in_range(
                "timings.failure_threshold",
                t.failure_threshold,
                defaults::FAILURE_THRESHOLD,
                1,
                100,
            ),
            recovery_threshold: self.in_range(
                "timings.recovery_threshold",
                t.recovery_threshold,
                defaults::RECOVERY_THRESHOLD,
                1,
                100,
            ),
            vote_freshness: self.duration(
                "timings.vote_freshness",
                t.vote_freshness,
                defaults::VOTE_FRESHNESS,
                ms(200),
                s(86400),
            ),
            lease: self.duration("timings.lease", t.lease, defaults::LEASE, ms(100), s(86400)),
            min_failover_interval: self.duration(
                "timings.min_failover_interval",
                t.min_failover_interval,
                defaults::MIN_FAILOVER_INTERVAL,
                ms(0),
                s(7 * 86400),
            ),
            shutdown_grace: self.duration(
                "timings.shutdown_grace",
                t.shutdown_grace,
                defaults::SHUTDOWN_GRACE,
                ms(0),
                s(600),
            ),
            prepare_budget: self.duration(
                "timings.prepare_budget",
                t.prepare_budget,
                defaults::PREPARE_BUDGET,
                s(1),
                s(100),
            ),
            start_timeout: self.duration(
                "timings.start_timeout",
                t.start_timeout,
                defaults::START_TIMEOUT,
                s(5),
                s(3600),
            ),
            stuck_failover: self.duration(
                "timings.stuck_failover",
                t.stuck_failover,
                defaults::STUCK_FAILOVER,
                STUCK_FAILOVER_MIN,
                s(86400),
            ),
            abort_retry: self.duration(
                "timings.abort_retry",
                t.abort_retry,
                defaults::ABORT_RETRY,
                ms(0),
                s(86400),
            ),
        };
        self.against_poll_interval(checked.poll_interval, checked.vote_freshness, checked.lease);
        checked
    }

    /// `timings.vote_freshness` and `timings.lease`: each at least two
    /// poll intervals.
    fn against_poll_interval(
        &mut self,
        poll: Option<Duration>,
        fresh: Option<Duration>,
        lease: Option<Duration>,
    ) {
        if let (Some(p), Some(f)) = (poll, fresh)
            && f < p * 2
        {
            self.err(
                    "timings.vote_freshness",
                    format!(
                        "{} is shorter than two poll intervals ({}): every vote would be stale before the next one is written",
                        humantime::format_duration(f),
                        humantime::format_duration(p * 2)
                    ),
                );
        }
        if let (Some(p), Some(l)) = (poll, lease)
            && l < p * 2
        {
            self.err(
                    "timings.lease",
                    format!(
                        "{} is shorter than two poll intervals ({}): the active region could not renew it in time",
                        humantime::format_duration(l),
                        humantime::format_duration(p * 2)
                    ),
                );
        }
    }

    /// `[health]`: the Route 53 call rate and the probe timeouts.
    fn health(&mut self, h: RawHealth) -> Option<Health> {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let r53 = h.route53_calls_per_second.unwrap_or(0.5);
        if !(0.01..=100.0).contains(&r53) {
            self.err("health.route53_calls_per_second", format!("{r53} is out of range: must be between 0.01 and 100 (AWS allows five requests per second per account for the whole Route 53 API)"));
        }
        let (source, period) = self.route53_source(&h, r53);
        let connect = self.duration(
            "health.probe_connect_timeout",
            h.probe_connect_timeout,
            "4s",
            ms(10),
            s(60),
        );
        let response = self.duration(
            "health.probe_response_timeout",
            h.probe_response_timeout,
            "2s",
            ms(10),
            s(60),
        );
        let warmup_payload = h
            .warmup_payload
            .unwrap_or_else(|| "{\"warmup\": true}".into());
        Some(Health {
            route53_calls_per_second: r53,
            route53_source: source?,
            route53_metric_period: period?,
            probe_connect_timeout: connect?,
            probe_response_timeout: response?,
            warmup_payload,
        })
    }

    /// `health.route53_source` and `health.route53_metric_period`
    /// (docs/detection.md "Two sources").
    fn route53_source(
        &mut self,
        h: &RawHealth,
        budget: f64,
    ) -> (Option<Route53Source>, Option<Duration>) {
        let source = match h.route53_source.as_deref().map(str::trim) {
            None | Some("api") => Some(Route53Source::Api),
            Some("cloudwatch") => Some(Route53Source::CloudWatch),
            Some(other) => {
                self.err(
                    "health.route53_source",
                    format!("{other:?} is not a source: use \"api\" (GetHealthCheck + GetHealthCheckStatus) or \"cloudwatch\" (the AWS/Route53 HealthCheckStatus metric)"),
                );
                None
            }
        };
        let period = self.duration(
            "health.route53_metric_period",
            h.route53_metric_period.clone(),
            "60s",
            Duration::from_secs(1),
            Duration::from_secs(3600),
        );
        if period.is_some_and(|p| p.subsec_nanos() != 0) {
            self.err(
                "health.route53_metric_period",
                "must be whole seconds (CloudWatch's Period is in seconds)",
            );
        }
        if let (Some(Route53Source::CloudWatch), Some(p)) = (source, period) {
            if p.as_millis() % 60_000 != 0 {
                self.warn(
                    "health.route53_metric_period",
                    format!("{} is not a whole number of minutes: Route 53 publishes HealthCheckStatus once a minute (a shorter period suits only a lab that publishes faster)", humantime::format_duration(p)),
                );
            }
            let calls_per_period = budget * p.as_secs_f64();
            if calls_per_period > 6.0 {
                self.warn(
                    "health.route53_calls_per_second",
                    format!("{budget} GetMetricData calls a second read each check's metric {calls_per_period:.0} times a period ({}): the metric changes once a period, and each call is billed per check; about one call per 10 s of period is enough (docs/detection.md)", humantime::format_duration(p)),
                );
            }
        }
        (source, period)
    }

    /// Cost controls and tiers (config/cost.rs), given the router's batch
    /// threshold and the control table's consistency; then the prepare
    /// budget against the timings.
    fn cost_section(
        &mut self,
        raw: RawCost,
        models: &[ModelConfig],
        regions: &[RegionConfig],
        tables: Option<&Tables>,
        router: Option<&Router>,
        timings: &CheckedTimings,
    ) -> Option<Cost> {
        let batch_threshold = router.map_or(4 * 1024 * 1024, |r| r.default_batch_threshold);
        let consistency = tables.map(|t| t.consistency);
        let cost = self.cost(raw, models, regions, consistency, batch_threshold);
        self.cost_against_timings(
            cost.as_ref(),
            regions,
            models,
            timings.prepare_budget,
            timings.stuck_failover,
        );
        cost
    }

    /// `[listen]`: the router's and the admin API's addresses (not the
    /// same one) and the admin token's file.
    fn listen(&mut self, raw: RawListen) -> Option<Listen> {
        let router = self.addr("listen.router", raw.router, defaults::ROUTER);
        let admin = self.addr("listen.admin", raw.admin, defaults::ADMIN);
        if let (Some(r), Some(a)) = (router, admin)
            && r == a
            && r.port() != 0
        {
            self.err("listen.admin", format!("{a} is also the router's address"));
        }
        let token_file = raw
            .admin_token_file
            .unwrap_or_else(|| defaults::ADMIN_TOKEN_FILE.into());
        if token_file.trim().is_empty() {
            self.err("listen.admin_token_file", "must not be empty");
        }
        let router_tls = self.tls("listen.router_tls", raw.router_tls);
        let admin_tls = self.tls("listen.admin_tls", raw.admin_tls);
        Some(Listen {
            router: router?,
            admin: admin?,
            admin_token_file: PathBuf::from(token_file),
            router_tls: router_tls?,
            admin_tls: admin_tls?,
        })
    }

    /// A listener's TLS table (`key`): `cert` and `key` required, and the
    /// files read and built into a server configuration now, so a bad file
    /// fails here, before anything binds. `Some(None)` is plain HTTP.
    fn tls(&mut self, key: &str, raw: Option<RawTls>) -> Option<Option<tls::TlsFiles>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let cert = self.required(&format!("{key}.cert"), raw.cert);
        let pkey = self.required(&format!("{key}.key"), raw.key);
        let client_ca = match raw.client_ca {
            Some(c) if c.trim().is_empty() => {
                self.err(&format!("{key}.client_ca"), "must not be empty");
                return None;
            }
            c => c.map(PathBuf::from),
        };
        let files = tls::TlsFiles {
            cert: PathBuf::from(cert?),
            key: PathBuf::from(pkey?),
            client_ca,
        };
        if let Err(e) = files.server_config() {
            self.err(&format!("{key}.{}", e.which), e.to_string());
            return None;
        }
        Some(Some(files))
    }

    /// `[endpoints]`: each override, when set, an http(s) URL.
    fn endpoints(&mut self, e: RawEndpoints) -> EndpointOverrides {
        EndpointOverrides {
            dynamodb: self.optional_url("endpoints.dynamodb", e.dynamodb),
            route53: self.optional_url("endpoints.route53", e.route53),
            sfn: self.optional_url("endpoints.sfn", e.sfn),
            sagemaker_runtime: self
                .optional_url("endpoints.sagemaker_runtime", e.sagemaker_runtime),
            sagemaker: self.optional_url("endpoints.sagemaker", e.sagemaker),
            s3: self.optional_url("endpoints.s3", e.s3),
            cloudwatch: self.optional_url("endpoints.cloudwatch", e.cloudwatch),
            application_autoscaling: self.optional_url(
                "endpoints.application_autoscaling",
                e.application_autoscaling,
            ),
            service_quotas: self.optional_url("endpoints.service_quotas", e.service_quotas),
            iam: self.optional_url("endpoints.iam", e.iam),
        }
    }
}

/// The `[timings]` section as checked, each key `None` when it was
/// refused: the cost section is checked against the prepare budget and the
/// stuck rule even when another timing is wrong.
struct CheckedTimings {
    poll_interval: Option<Duration>,
    failure_threshold: Option<u32>,
    recovery_threshold: Option<u32>,
    vote_freshness: Option<Duration>,
    lease: Option<Duration>,
    min_failover_interval: Option<Duration>,
    shutdown_grace: Option<Duration>,
    prepare_budget: Option<Duration>,
    start_timeout: Option<Duration>,
    stuck_failover: Option<Duration>,
    abort_retry: Option<Duration>,
}

impl CheckedTimings {
    /// The whole [`Timings`], when every key was valid.
    fn complete(self) -> Option<Timings> {
        Some(Timings {
            poll_interval: self.poll_interval?,
            failure_threshold: self.failure_threshold?,
            recovery_threshold: self.recovery_threshold?,
            vote_freshness: self.vote_freshness?,
            lease: self.lease?,
            min_failover_interval: self.min_failover_interval?,
            shutdown_grace: self.shutdown_grace?,
            prepare_budget: self.prepare_budget?,
            start_timeout: self.start_timeout?,
            stuck_failover: self.stuck_failover?,
            abort_retry: self.abort_retry?,
        })
    }
}

impl Validator<'_> {
    /// `[policy]`: the switches and the approval gate. `approval` defaults
    /// to `"none"`, and to `"manual"` in a fleet of fewer than three voting
    /// regions, which cannot fail over automatically when a region is lost
    /// (config/constraints.rs refuses an explicit `"none"` there).
    fn policy(&mut self, raw: super::raw::RawPolicy, voting: usize) -> Option<Policy> {
        let approval_kind = |v: &mut Self, key: &str, text: &str| {
            let a = Approval::parse(text.trim());
            if a.is_none() {
                v.err(
                    key,
                    format!("{text:?} is not an approval rule: use \"none\" or \"manual\""),
                );
            }
            a
        };
        let approval = match raw.approval.as_deref() {
            None if voting < super::constraints::MIN_AUTOMATIC_REGIONS => {
                self.approval_defaulted = true;
                Some(Approval::Manual)
            }
            None => Some(Approval::None),
            Some(t) => approval_kind(self, "policy.approval", t),
        };
        let mut by_tier = BTreeMap::new();
        for (tier, text) in &raw.approval_by_tier {
            let key = format!("policy.approval_by_tier.{tier}");
            let t = Tier::ALL.into_iter().find(|t| t.as_str() == tier.as_str());
            if t.is_none() {
                self.err(
                    &key,
                    format!("{tier:?} is not a tier: use tier1, tier2 or tier3"),
                );
            }
            let a = approval_kind(self, &key, text);
            if let (Some(t), Some(a)) = (t, a) {
                by_tier.insert(t, a);
            }
        }
        let timeout = self.duration(
            "policy.approval_timeout",
            raw.approval_timeout,
            defaults::APPROVAL_TIMEOUT,
            Duration::from_secs(10),
            Duration::from_secs(24 * 3600),
        );
        let on_timeout = match raw.on_approval_timeout.as_deref() {
            None => Some(OnApprovalTimeout::Expire),
            Some(t) => {
                let o = OnApprovalTimeout::parse(t.trim());
                if o.is_none() {
                    self.err(
                        "policy.on_approval_timeout",
                        format!("{t:?} is not a timeout rule: use \"expire\" or \"proceed\""),
                    );
                }
                o
            }
        };
        Some(Policy {
            auto_failback: raw.auto_failback.unwrap_or(false),
            wait_out_lease: raw.wait_out_lease.unwrap_or(true),
            approval: approval?,
            approval_by_tier: by_tier,
            approval_timeout: timeout?,
            on_approval_timeout: on_timeout?,
        })
    }
}

/// `us-east-1`, `eu-west-2`, `ap-southeast-1`, `us-gov-west-1`.
pub(super) fn is_region_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

/// Serialize durations the way operators write them (`10s`, `1m 30s`).
pub(super) mod human_duration {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}
