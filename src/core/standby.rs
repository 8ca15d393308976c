//! Standby readiness: can this region take over, judged before it is
//! needed (issue 26; docs/readiness.md). Pure: what the daemon read is
//! passed in.
//!
//! The classic failed failover is a standby that cannot take the load: its
//! endpoint runs last month's model, it was never scaled for the traffic,
//! or its last update failed. The prepare step finds some of that out at
//! the worst moment; this module lets each standby daemon find it out every
//! `cost.readiness_interval`, comparing each of its region's endpoints with
//! the active region's endpoint of the same kind (provisioned with
//! provisioned, ...: what the router would send there instead).
//!
//! Every check gives one [`Finding`] each time, `ok` included, so that a
//! gauge per check goes back to 0 when the problem is fixed:
//!
//! | check | critical | warning | info |
//! |---|---|---|---|
//! | `exists` | the endpoint does not exist | | |
//! | `serving` | not in a serving status (`Failed`, `OutOfService`, ...) | `Updating` / `SystemUpdating` (serves on the old variant) | |
//! | `last_update` | | `FailureReason` set: the last update failed (a scale-up refused for capacity shows so) | |
//! | `model` | a variant runs other images or model data than the active's | | |
//! | `instance_type` | | other instance types than the active's | |
//! | `capacity` | `tier1`: fewer instances than the fleet's measured need | | `tier2`/`tier3`: fewer than the need (prepare scales it up) |
//!
//! A read that failed makes its checks `unknown`, never `ok`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::quorum::Vote;
use super::tier::{StandbyHolds, Tier};

/// How bad a finding is. Ordered: the worst of several is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Info,
    /// Could not be judged (a read failed).
    Unknown,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Unknown => "unknown",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// Parse [`Severity::as_str`]'s spelling.
    pub fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Ok,
            Severity::Info,
            Severity::Unknown,
            Severity::Warning,
            Severity::Critical,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// The gauge's value: 0 ok, 1 info, 2 warning, 3 critical; -1 unknown.
    pub fn gauge(self) -> i64 {
        match self {
            Severity::Ok => 0,
            Severity::Info => 1,
            Severity::Warning => 2,
            Severity::Critical => 3,
            Severity::Unknown => -1,
        }
    }
}

/// What is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Exists,
    Serving,
    LastUpdate,
    Model,
    InstanceType,
    Capacity,
}

impl Check {
    pub const ALL: [Check; 6] = [
        Check::Exists,
        Check::Serving,
        Check::LastUpdate,
        Check::Model,
        Check::InstanceType,
        Check::Capacity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Check::Exists => "exists",
            Check::Serving => "serving",
            Check::LastUpdate => "last_update",
            Check::Model => "model",
            Check::InstanceType => "instance_type",
            Check::Capacity => "capacity",
        }
    }
}

/// One check of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub endpoint: String,
    pub check: Check,
    pub severity: Severity,
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} ({})",
            self.endpoint,
            self.check.as_str(),
            self.severity.as_str(),
            self.detail
        )
    }
}

/// One variant as compared: its name, its containers (image, model data)
/// and instance type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub name: String,
    pub containers: Vec<(String, Option<String>)>,
    pub instance_type: Option<String>,
}

/// One region's endpoint as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub endpoint: String,
    /// `Err`: the read failed (why); `Ok(None)`: the endpoint does not exist.
    pub state: Result<Option<Described>, String>,
}

/// A found endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// `EndpointStatus` as SageMaker names it.
    pub status: String,
    /// Whether that status serves (`InService`, `Updating`, `SystemUpdating`).
    pub serves: bool,
    pub failure_reason: Option<String>,
    /// Instances of its provisioned variants, summed; `None` for an
    /// endpoint without one (serverless).
    pub instances: Option<u32>,
    /// What its variants run; `Err` when that read failed.
    pub variants: Result<Vec<Variant>, String>,
}

/// Judge `standby` (this region's endpoint) against `active` (the active
/// region's endpoint of the same kind, if it has one), for a fleet of
/// `tier` whose measured need is `need` instances.
pub fn judge(standby: &Seen, active: Option<&Seen>, tier: Tier, need: Option<u32>) -> Vec<Finding> {
    let ep = standby.endpoint.as_str();
    let f = |check, severity, detail: String| Finding {
        endpoint: ep.to_string(),
        check,
        severity,
        detail,
    };
    let d = match &standby.state {
        Err(e) => {
            return Check::ALL
                .iter()
                .map(|c| {
                    f(
                        *c,
                        Severity::Unknown,
                        format!("DescribeEndpoint failed: {e}"),
                    )
                })
                .collect();
        }
        Ok(None) => {
            let mut out = vec![f(
                Check::Exists,
                Severity::Critical,
                "does not exist: the router and prepare have nothing to send to here".into(),
            )];
            out.extend(
                Check::ALL[1..]
                    .iter()
                    .map(|c| f(*c, Severity::Unknown, "the endpoint does not exist".into())),
            );
            return out;
        }
        Ok(Some(d)) => d,
    };
    let mut out = vec![f(Check::Exists, Severity::Ok, "exists".into())];
    out.push(match (d.serves, d.status.as_str()) {
        (true, "InService") => f(Check::Serving, Severity::Ok, "InService".into()),
        (true, s) => f(
            Check::Serving,
            Severity::Warning,
            format!("{s}: serves on its old variants while it changes"),
        ),
        (false, s) => f(
            Check::Serving,
            Severity::Critical,
            format!("{s}: not serving"),
        ),
    });
    out.push(match &d.failure_reason {
        Some(r) => f(
            Check::LastUpdate,
            Severity::Warning,
            format!("the last update failed: {r}"),
        ),
        None => f(Check::LastUpdate, Severity::Ok, "no failure".into()),
    });
    let (model, itype) = compare_variants(d, active);
    out.push(f(Check::Model, model.0, model.1));
    out.push(f(Check::InstanceType, itype.0, itype.1));
    out.push(match (d.instances, need) {
        (None, _) => f(
            Check::Capacity,
            Severity::Ok,
            "no provisioned variant (scales itself)".into(),
        ),
        (Some(_), None) => f(
            Check::Capacity,
            Severity::Unknown,
            "the fleet's need is not measured (cost.instance_invocations_per_minute, a whole hour of counts)".into(),
        ),
        (Some(n), Some(need)) if n >= need => f(
            Check::Capacity,
            Severity::Ok,
            format!("holds {n}, the fleet needs {need}"),
        ),
        (Some(n), Some(need)) if tier.standby_holds() == StandbyHolds::ActiveNeed => f(
            Check::Capacity,
            Severity::Critical,
            format!("holds {n}, the fleet needs {need}, and {tier} keeps its standby at the need"),
        ),
        (Some(n), Some(need)) => f(
            Check::Capacity,
            Severity::Info,
            format!("holds {n}, the fleet needs {need}: prepare scales it up ({tier})"),
        ),
    });
    out
}

type Judged = (Severity, String);

/// The `model` and `instance_type` checks: variant by variant (by name),
/// the images and model data, and the instance types, against the active's.
fn compare_variants(d: &Described, active: Option<&Seen>) -> (Judged, Judged) {
    let unknown = |why: String| ((Severity::Unknown, why.clone()), (Severity::Unknown, why));
    let mine = match &d.variants {
        Ok(v) => v,
        Err(e) => return unknown(format!("its models could not be read: {e}")),
    };
    let theirs = match active.map(|a| &a.state) {
        None => {
            return (
                (
                    Severity::Ok,
                    "the active region has no such endpoint to compare with".into(),
                ),
                (Severity::Ok, "nothing to compare with".into()),
            );
        }
        Some(Err(e)) => {
            let why = format!("the active's endpoint could not be read: {e}");
            return unknown(why);
        }
        Some(Ok(None)) => {
            return (
                (
                    Severity::Ok,
                    "the active region's endpoint does not exist".into(),
                ),
                (Severity::Ok, "nothing to compare with".into()),
            );
        }
        Some(Ok(Some(a))) => match &a.variants {
            Ok(v) => v,
            Err(e) => {
                return unknown(format!("the active's models could not be read: {e}"));
            }
        },
    };
    let image_of = |v: &Variant| -> String {
        v.containers
            .iter()
            .map(|(image, data)| match data {
                Some(d) => format!("{image} with {d}"),
                None => image.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut model_diffs = Vec::new();
    let mut type_diffs = Vec::new();
    for a in theirs {
        match mine.iter().find(|m| m.name == a.name) {
            None => model_diffs.push(format!("no variant {} (the active has it)", a.name)),
            Some(m) => {
                // An inference-component variant names no containers on
                // either side: nothing to compare.
                if m.containers != a.containers {
                    model_diffs.push(format!(
                        "{} runs {}, the active runs {}",
                        a.name,
                        image_of(m),
                        image_of(a)
                    ));
                }
                if m.instance_type != a.instance_type {
                    type_diffs.push(format!(
                        "{} on {}, the active on {}",
                        a.name,
                        m.instance_type.as_deref().unwrap_or("serverless"),
                        a.instance_type.as_deref().unwrap_or("serverless")
                    ));
                }
            }
        }
    }
    let model = if model_diffs.is_empty() {
        (
            Severity::Ok,
            "the same images and model data as the active".into(),
        )
    } else {
        (Severity::Critical, model_diffs.join("; "))
    };
    let itype = if type_diffs.is_empty() {
        (Severity::Ok, "the same instance types as the active".into())
    } else {
        (Severity::Warning, type_diffs.join("; "))
    };
    (model, itype)
}

/// The worst severity of `findings` (`Ok` for none).
pub fn worst(findings: &[Finding]) -> Severity {
    findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Severity::Ok)
}

/// One line for the journal and `failoverd status`: `ready`, or the worst
/// severity and every finding that is neither ok nor info.
pub fn summary(findings: &[Finding]) -> String {
    let bad: Vec<String> = findings
        .iter()
        .filter(|f| f.severity > Severity::Info)
        .map(ToString::to_string)
        .collect();
    if bad.is_empty() {
        "ready".to_string()
    } else {
        format!("{}: {}", worst(findings).as_str(), bad.join("; "))
    }
}

/// What a standby daemon publishes of its last readiness round in its vote
/// (`core::quorum::Vote::readiness`), so that every daemon's planner sees
/// every standby's readiness: against which active region it was judged,
/// the worst severity, the critical findings (`endpoint check` each), and
/// how long before the vote was written the round ended, on the writer's
/// monotonic clock (so the reader's judgement of its age needs no
/// agreement between clocks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub against: String,
    pub worst: Severity,
    pub critical: Vec<String>,
    pub checked_ago_ms: u64,
}

impl Published {
    /// From a round's findings (`critical` lists the critical ones).
    pub fn of(against: &str, findings: &[Finding], checked_ago_ms: u64) -> Self {
        Self {
            against: against.to_string(),
            worst: worst(findings),
            critical: findings
                .iter()
                .filter(|f| f.severity == Severity::Critical)
                .map(|f| format!("{} {}", f.endpoint, f.check.as_str()))
                .collect(),
            checked_ago_ms,
        }
    }
}

/// A region's readiness as the planner takes it (`core::plan`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "readiness", content = "why")]
pub enum Ready {
    /// Its latest reading, fresh and against the current active region,
    /// has no critical finding.
    Ready,
    /// Its latest fresh reading against the current active region has a
    /// critical finding (which ones).
    Unready(String),
    /// No reading the planner may use: none published, stale, judged
    /// against another active region, or from a vote that is not fresh.
    /// Taken as ready: the planner never demotes a region on a reading it
    /// does not have.
    Unknown,
}

impl Ready {
    pub fn is_unready(&self) -> bool {
        matches!(self, Ready::Unready(_))
    }
}

/// Every standby's readiness, by region (absent: [`Ready::Unknown`]).
pub type FleetReadiness = BTreeMap<String, Ready>;

/// The fleet's readiness from the votes: only fresh observers' (`fresh`,
/// the tally's), only readings judged against `active` (the record's
/// active region) and at most `stale_after_ms` old when the vote was
/// written. A stale reading is unknown, never unready. A region whose
/// daemon's vote is not fresh cannot take over anyway (`core::plan`).
pub fn fleet_readiness(
    votes: &[Vote],
    fresh: &[String],
    active: &str,
    stale_after_ms: u64,
) -> FleetReadiness {
    votes
        .iter()
        .filter(|v| fresh.contains(&v.observer) && v.observer != active)
        .map(|v| {
            let r = match &v.readiness {
                Some(p) if p.against == active && p.checked_ago_ms <= stale_after_ms => {
                    if p.worst == Severity::Critical {
                        Ready::Unready(if p.critical.is_empty() {
                            "critical".to_string()
                        } else {
                            p.critical.join(", ")
                        })
                    } else {
                        Ready::Ready
                    }
                }
                _ => Ready::Unknown,
            };
            (v.observer.clone(), r)
        })
        .collect()
}

/// How old a published reading may be and still count: two rounds.
pub fn stale_after_ms(readiness_interval: std::time::Duration) -> u64 {
    (readiness_interval.as_millis() as u64).saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(image: &str, itype: &str) -> Variant {
        Variant {
            name: "AllTraffic".into(),
            containers: vec![(image.into(), Some("s3://m/model.tar.gz".into()))],
            instance_type: Some(itype.into()),
        }
    }

    fn seen(image: &str, itype: &str, instances: u32) -> Seen {
        Seen {
            endpoint: "prov".into(),
            state: Ok(Some(Described {
                status: "InService".into(),
                serves: true,
                failure_reason: None,
                instances: Some(instances),
                variants: Ok(vec![variant(image, itype)]),
            })),
        }
    }

    fn of(fs: &[Finding], c: Check) -> &Finding {
        fs.iter().find(|f| f.check == c).unwrap()
    }

    #[test]
    fn a_matching_standby_is_ready_and_every_check_reports() {
        let a = seen("img:2", "ml.g5.xlarge", 4);
        let fs = judge(
            &seen("img:2", "ml.g5.xlarge", 4),
            Some(&a),
            Tier::Tier1,
            Some(4),
        );
        assert_eq!(fs.len(), Check::ALL.len());
        assert_eq!(worst(&fs), Severity::Ok, "{fs:?}");
        assert_eq!(summary(&fs), "ready");
    }

    #[test]
    fn drift_and_shortfalls_are_found_with_their_severity() {
        let a = seen("img:2", "ml.g5.xlarge", 4);
        let fs = judge(
            &seen("img:1", "ml.g5.xlarge", 4),
            Some(&a),
            Tier::Tier2,
            Some(4),
        );
        let m = of(&fs, Check::Model);
        assert_eq!(m.severity, Severity::Critical);
        assert!(
            m.detail
                .contains("runs img:1 with s3://m/model.tar.gz, the active runs img:2"),
            "{m}"
        );
        let fs = judge(
            &seen("img:2", "ml.m5.large", 1),
            Some(&a),
            Tier::Tier2,
            Some(4),
        );
        assert_eq!(of(&fs, Check::InstanceType).severity, Severity::Warning);
        assert_eq!(
            of(&fs, Check::Capacity).severity,
            Severity::Info,
            "tier2: prepare scales"
        );
        let fs = judge(
            &seen("img:2", "ml.g5.xlarge", 1),
            Some(&a),
            Tier::Tier1,
            Some(4),
        );
        assert_eq!(
            of(&fs, Check::Capacity).severity,
            Severity::Critical,
            "tier1 holds the need"
        );
        assert!(
            summary(&fs).starts_with("critical: prov capacity"),
            "{}",
            summary(&fs)
        );
        let fs = judge(
            &seen("img:2", "ml.g5.xlarge", 1),
            Some(&a),
            Tier::Tier1,
            None,
        );
        assert_eq!(
            of(&fs, Check::Capacity).severity,
            Severity::Unknown,
            "never ok unmeasured"
        );
    }

    #[test]
    fn a_failed_update_a_missing_endpoint_and_unread_sides_are_never_ok() {
        let a = seen("img:2", "ml.g5.xlarge", 4);
        let mut failed = seen("img:2", "ml.g5.xlarge", 4);
        if let Ok(Some(d)) = &mut failed.state {
            d.failure_reason = Some("Unable to provision requested ML compute capacity".into());
        }
        let fs = judge(&failed, Some(&a), Tier::Tier2, Some(4));
        assert_eq!(of(&fs, Check::LastUpdate).severity, Severity::Warning);

        let missing = Seen {
            endpoint: "prov".into(),
            state: Ok(None),
        };
        let fs = judge(&missing, Some(&a), Tier::Tier2, Some(4));
        assert_eq!(of(&fs, Check::Exists).severity, Severity::Critical);
        assert_eq!(fs.len(), Check::ALL.len());

        let unread = Seen {
            endpoint: "prov".into(),
            state: Err("timeout".into()),
        };
        let fs = judge(&unread, Some(&a), Tier::Tier2, Some(4));
        assert!(fs.iter().all(|f| f.severity == Severity::Unknown), "{fs:?}");

        let active_unread = Seen {
            endpoint: "prov".into(),
            state: Err("us-east-1 is down".into()),
        };
        let fs = judge(
            &seen("img:2", "ml.g5.xlarge", 4),
            Some(&active_unread),
            Tier::Tier2,
            Some(4),
        );
        assert_eq!(of(&fs, Check::Model).severity, Severity::Unknown);
        assert_eq!(of(&fs, Check::InstanceType).severity, Severity::Unknown);
    }
}
