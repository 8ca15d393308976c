//! `failoverd advise`: the seed's decision matrix (`core::advise`) over the
//! traffic the router observed, as a text table or JSON.
//!
//! The observations come from the daemon's admin endpoint (`GET /traffic`,
//! a [`TrafficSet`]: what that region's router observed per model, see
//! `metrics::observed`) or from a file (`--from FILE`, `-` for stdin) in the
//! same shape. A daemon that runs no router answers `collected: false`;
//! `advise` then says so and exits 69 instead of advising on nothing, since
//! "not collected" is not "no traffic". One router sees the traffic its own
//! region's clients send; to judge another region's, point `--admin` at
//! that daemon.
//!
//! After the recommendations, the control plane's own AWS bill, per month
//! (`core::bill`): from the configuration's settings always, and from the
//! daemon's measured calls per round when `advise` reads a live daemon (its
//! `GET /metrics`: the meter's `failoverd_aws_calls_total` and round count).
//! A daemon whose `/metrics` cannot be read leaves the measured bill out and
//! says why; it never changes the exit code.
//!
//! Exit codes: 0 advised; 65 the observations are malformed (bad JSON, a
//! model twice); 66 the file cannot be read; 69 the daemon cannot be reached
//! or collects nothing yet; 78 invalid configuration.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use super::Output;
use crate::config::{self, Config, Consistency, EX_CONFIG, EnvSource};
use crate::core::advise::{self, AdviseError, Recommendation, Thresholds, TrafficSet};
use crate::core::bill::{self, Assumptions, Bill, HealthCheck, Measured, Settings, TableMode};

/// Exit: the observations are malformed (sysexits.h `EX_DATAERR`).
pub const EX_DATAERR: i32 = 65;
/// Exit: the input file cannot be read (`EX_NOINPUT`).
pub const EX_NOINPUT: i32 = 66;
/// Exit: the daemon cannot be reached or has nothing collected (`EX_UNAVAILABLE`).
pub const EX_UNAVAILABLE: i32 = 69;

/// Largest `/traffic` answer read (a week of minutes for a few hundred models).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Whole exchange with the admin endpoint.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why `advise` could not advise.
#[derive(Debug, thiserror::Error)]
pub enum AdviseCliError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin} is not a traffic set (JSON: region, collected, models[])")]
    Parse {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot reach the daemon's admin endpoint {url}; is it running? (or pass --from FILE)")]
    Fetch {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("no answer from {url} within {FETCH_TIMEOUT:?}")]
    Timeout { url: String },
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error(
        "the daemon in {region} runs no router, so it observed no traffic to advise on (this is not the same as no traffic); ask a daemon that routes (--admin URL) or pass --from FILE"
    )]
    NotCollected { region: String },
    #[error(transparent)]
    Input(#[from] AdviseError),
}

impl AdviseCliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            AdviseCliError::Read { .. } => EX_NOINPUT,
            AdviseCliError::Parse { .. } | AdviseCliError::Input(_) => EX_DATAERR,
            AdviseCliError::Fetch { .. }
            | AdviseCliError::Timeout { .. }
            | AdviseCliError::Status { .. }
            | AdviseCliError::NotCollected { .. } => EX_UNAVAILABLE,
        }
    }
}

/// What `--output json` prints.
#[derive(Debug, Serialize)]
pub struct AdviseReport<'a> {
    /// The region whose router observed the traffic.
    pub region: String,
    pub thresholds: Thresholds,
    /// Business hours used to judge steadiness and quiet nights.
    pub business_hours: &'a crate::core::schedule::Schedule,
    pub recommendations: Vec<Recommendation>,
    /// The control plane's own AWS bill, per month.
    pub bill: ControlPlaneBill,
}

/// What failoverd itself costs a month (`core::bill`).
#[derive(Debug, Serialize)]
pub struct ControlPlaneBill {
    /// The settings the bill was computed from (the configuration's).
    pub settings: Settings,
    pub assumptions: Assumptions,
    /// From the settings and the code's calls per round.
    pub configured: Bill,
    /// From the daemon's measured calls per round, when read.
    pub measured: Option<Bill>,
    /// Why there is no measured bill.
    pub measured_missing: Option<String>,
}

/// The bill's settings from a configuration. Route 53 checks are billed as
/// deploy/cloudformation/region.yaml creates them (HTTPS, 10 s interval, an
/// AWS endpoint); the configuration names only their ids.
pub fn bill_settings(cfg: &Config) -> Settings {
    let mut checks: Vec<&String> = cfg
        .regions
        .iter()
        .flat_map(|r| r.health_check_ids.iter())
        .collect();
    checks.sort();
    checks.dedup();
    // Every provisioned endpoint, the models' own included
    // (config/serving.rs): each region's daemon reads each.
    let provisioned = cfg
        .regions
        .iter()
        .map(|r| cfg.provisioned_in(&r.name).len())
        .sum::<usize>() as u32;
    Settings {
        poll_interval_ms: cfg.timings.poll_interval.as_millis() as u64,
        daemons: cfg.regions.len() as u32,
        replicas: cfg.tables.replicas.clone(),
        mode: match cfg.tables.consistency {
            Consistency::Strong => TableMode::Mrsc,
            Consistency::Eventual => TableMode::Mrec,
        },
        health_checks: vec![HealthCheck::SHIPPED; checks.len()],
        route53_calls_per_second: cfg.health.route53_calls_per_second,
        route53_source: cfg.health.route53_source,
        route53_metric_period_ms: cfg.health.route53_metric_period.as_millis() as u64,
        cost_interval_ms: cfg.cost.interval.as_millis() as u64,
        // One GetMetricStatistics per provisioned variant (one assumed per
        // endpoint) each cost round, by each region's own daemon.
        cloudwatch_requests_per_cost_round: if cfg.cost.idle.enabled && cfg.cost.idle.cloudwatch {
            provisioned
        } else {
            0
        },
        routing_refresh_ms: cfg.router.routing_refresh.as_millis() as u64,
    }
}

/// The bill for `cfg`, with the daemon's measured calls when there are any.
pub fn control_plane_bill(
    cfg: &Config,
    measured: Option<Result<Measured, String>>,
) -> ControlPlaneBill {
    let settings = bill_settings(cfg);
    let assumptions = Assumptions::default();
    let configured = bill::from_settings(&settings, &assumptions, &bill::US_EAST_1);
    let (measured, measured_missing) = match measured {
        None => (
            None,
            Some("no live daemon read (--from FILE): measured calls unknown".to_string()),
        ),
        Some(Ok(m)) => (
            Some(bill::from_measured(
                &m,
                &settings,
                &assumptions,
                &bill::US_EAST_1,
            )),
            None,
        ),
        Some(Err(why)) => (None, Some(why)),
    };
    ControlPlaneBill {
        settings,
        assumptions,
        configured,
        measured,
        measured_missing,
    }
}

/// The admin URL of the daemon `cfg` describes: its admin address, with a
/// wildcard bind replaced by loopback.
pub fn admin_url(cfg: &Config) -> String {
    let mut a: SocketAddr = cfg.listen.admin;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{a}")
}

/// Parse a traffic set.
pub fn parse(origin: &str, bytes: &[u8]) -> Result<TrafficSet, AdviseCliError> {
    serde_json::from_slice(bytes).map_err(|source| AdviseCliError::Parse {
        origin: origin.to_string(),
        source,
    })
}

/// Read a traffic set from `path` (`-` = stdin).
pub fn read_file(path: &Path) -> Result<TrafficSet, AdviseCliError> {
    let mut buf = Vec::new();
    let r = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut buf).map(|_| ())
    } else {
        std::fs::read(path).map(|b| buf = b)
    };
    r.map_err(|source| AdviseCliError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&path.display().to_string(), &buf)
}

/// `GET {base}{path}`: the body of a 2xx answer.
async fn get(base: &str, path: &str) -> Result<(String, Bytes), AdviseCliError> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let fetch_err = |source: Box<dyn std::error::Error + Send + Sync>| AdviseCliError::Fetch {
        url: url.clone(),
        source,
    };
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = url.parse().map_err(|e| fetch_err(Box::new(e)))?;
    let exchange = async {
        let resp = client.get(uri).await.map_err(|e| fetch_err(Box::new(e)))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(fetch_err)?
            .to_bytes();
        Ok::<_, AdviseCliError>((status, body))
    };
    let (status, body) = tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .map_err(|_| AdviseCliError::Timeout { url: url.clone() })??;
    if !status.is_success() {
        return Err(AdviseCliError::Status {
            url,
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body[..body.len().min(512)])
                .trim()
                .to_string(),
        });
    }
    Ok((url, body))
}

/// `GET {base}/traffic`.
pub async fn fetch(base: &str) -> Result<TrafficSet, AdviseCliError> {
    let (url, body) = get(base, "/traffic").await?;
    parse(&url, &body)
}

/// `GET {base}/metrics`: the meter's calls and rounds, or why not.
pub async fn fetch_measured(base: &str) -> Result<Measured, String> {
    let (url, body) = get(base, "/metrics")
        .await
        .map_err(|e| format!("cannot read the daemon's calls: {}", crate::error_chain(&e)))?;
    Measured::from_prometheus(&String::from_utf8_lossy(&body))
        .map_err(|e| format!("cannot read the daemon's calls from {url}: {e}"))
}

/// Advise on `set` with `cfg`'s thresholds and business hours; the bill
/// from `cfg` and, when read, the daemon's `measured` calls.
pub fn recommend<'a>(
    cfg: &'a Config,
    set: TrafficSet,
    measured: Option<Result<Measured, String>>,
) -> Result<AdviseReport<'a>, AdviseCliError> {
    if !set.collected {
        return Err(AdviseCliError::NotCollected { region: set.region });
    }
    let a = &cfg.cost.advise;
    let recommendations = advise::advise(&set.models, &a.thresholds, Some(&a.business_hours))?;
    Ok(AdviseReport {
        region: set.region,
        thresholds: a.thresholds,
        business_hours: &a.business_hours,
        recommendations,
        bill: control_plane_bill(cfg, measured),
    })
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The text table: one row per model, the reason on the right.
pub fn render_table(report: &AdviseReport<'_>) -> String {
    let header = [
        "MODEL",
        "RECOMMENDATION",
        "REQ/MIN p50",
        "REQ/MIN p95",
        "REQ/HOUR max",
        "IDLE GAP",
        "COLD/DAY",
        "PAYLOAD p95",
        "WHY",
    ];
    let mut rows: Vec<[String; 9]> = vec![header.map(String::from)];
    for r in &report.recommendations {
        let n = &r.numbers;
        let approach = if r.scheduled_scaling {
            format!("{} + scheduled scaling", r.approach)
        } else {
            r.approach.to_string()
        };
        rows.push([
            r.model.clone(),
            approach,
            n.per_minute_p50.to_string(),
            n.per_minute_p95.to_string(),
            n.per_hour_max.to_string(),
            format!("{} min", n.longest_idle_gap_minutes),
            format!("{:.1}", n.cold_starts_per_day),
            human_bytes(n.payload_bytes.p95),
            r.why.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "traffic observed by {}; business hours {} ({})\n",
        report.region,
        report
            .business_hours
            .windows
            .iter()
            .map(|w| format!("{} {}-{}", w.days, w.start, w.end))
            .collect::<Vec<_>>()
            .join(", "),
        report.business_hours.timezone
    );
    if report.recommendations.is_empty() {
        out.push_str("no models observed\n");
        rows.clear();
    }
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c == 8 {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&render_bill(&report.bill));
    out
}

/// Columns left-aligned to their widest cell; the last one as it is.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|x| x.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c + 1 == n {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn bill_lines(b: &Bill) -> String {
    let mut rows = vec![
        [
            "SERVICE",
            "ITEM",
            "QUANTITY/MONTH",
            "UNIT PRICE",
            "USD/MONTH",
            "HOW",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for l in &b.lines {
        rows.push(vec![
            l.service.to_string(),
            l.item.clone(),
            format!("{} {}", bill::count(l.quantity), l.unit),
            l.unit_price.to_string(),
            bill::usd(l.usd),
            l.how.clone(),
        ]);
    }
    let services: Vec<String> = b
        .by_service
        .iter()
        .map(|(s, usd)| format!("{s} {}", bill::usd(*usd)))
        .collect();
    rows.push(vec![
        "total".into(),
        String::new(),
        String::new(),
        String::new(),
        bill::usd(b.total_usd),
        services.join(", "),
    ]);
    let mut out = columns(&rows);
    let regions: Vec<String> = b
        .writes_by_region
        .iter()
        .map(|r| format!("{} {}", r.region, bill::usd(r.usd)))
        .collect();
    out.push_str(&format!(
        "table writes are charged in every replica region: {}\n",
        regions.join(", ")
    ));
    for n in &b.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

/// The bill section of the text output.
pub fn render_bill(bill: &ControlPlaneBill) -> String {
    let s = &bill.settings;
    let c = &bill.configured;
    let mut out = format!(
        "control plane's own AWS bill, per month ({} list prices checked {}; free tiers not applied)\n",
        c.prices_region, c.prices_checked
    );
    out.push_str(&format!(
        "from the configuration: {} daemons, a round every {} ms, {} control table with {} replicas ({}), {} Route 53 checks, {} failovers a month (assumed): {} a month\n",
        s.daemons,
        s.poll_interval_ms,
        match s.mode {
            TableMode::Mrsc => "MRSC",
            TableMode::Mrec => "MREC",
        },
        s.replicas.len(),
        s.replicas.join(", "),
        s.health_checks.len(),
        bill.assumptions.failovers_per_month,
        bill::usd(c.total_usd)
    ));
    out.push_str(&bill_lines(c));
    match (&bill.measured, &bill.measured_missing) {
        (Some(m), _) => {
            out.push_str(&format!(
                "\nfrom this daemon's measured calls per round, scaled to the fleet: {} a month\n",
                bill::usd(m.total_usd)
            ));
            out.push_str(&bill_lines(m));
        }
        (None, Some(why)) => out.push_str(&format!("\nmeasured: none ({why})\n")),
        (None, None) => {}
    }
    out
}

/// The subcommand: returns the exit code.
pub fn run(
    config_path: &Path,
    env: &EnvSource,
    from: Option<&Path>,
    admin: Option<&str>,
    output: Output,
) -> i32 {
    let cfg = match config::load(config_path, env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.report());
            eprintln!("{}: configuration is invalid", config_path.display());
            return EX_CONFIG;
        }
    };
    let (set, measured) = match from {
        Some(path) => (read_file(path), None),
        None => {
            let base = admin.map_or_else(|| admin_url(&cfg), str::to_string);
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(async {
                    let set = fetch(&base).await;
                    // The calls only of a daemon that answered and routes.
                    let measured = match &set {
                        Ok(s) if s.collected => Some(fetch_measured(&base).await),
                        _ => None,
                    };
                    (set, measured)
                }),
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return super::EX_SOFTWARE;
                }
            }
        }
    };
    match set.and_then(|s| recommend(&cfg, s, measured)) {
        Ok(report) => {
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                ),
                Output::Text => print!("{}", render_table(&report)),
            }
            0
        }
        Err(e) => {
            eprintln!("error: {}", crate::error_chain(&e));
            e.exit_code()
        }
    }
}
