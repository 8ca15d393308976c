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
use crate::config::{self, Config, EX_CONFIG, EnvSource};
use crate::core::advise::{self, AdviseError, Recommendation, Thresholds, TrafficSet};

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

/// `GET {base}/traffic`.
pub async fn fetch(base: &str) -> Result<TrafficSet, AdviseCliError> {
    let url = format!("{}/traffic", base.trim_end_matches('/'));
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
    parse(&url, &body)
}

/// Advise on `set` with `cfg`'s thresholds and business hours.
pub fn recommend<'a>(cfg: &'a Config, set: TrafficSet) -> Result<AdviseReport<'a>, AdviseCliError> {
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
        return out;
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
    let set = match from {
        Some(path) => read_file(path),
        None => {
            let base = admin.map_or_else(|| admin_url(&cfg), str::to_string);
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(fetch(&base)),
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return super::EX_SOFTWARE;
                }
            }
        }
    };
    match set.and_then(|s| recommend(&cfg, s)) {
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
