//! Route 53 health checks behind the daemon's `HealthChecks` port.
//!
//! As AWS documents it:
//! - an endpoint check is probed by checkers in eight regions;
//!   `GetHealthCheckStatus` returns one observation per checker (free text,
//!   `Success: HTTP Status Code 200, OK` or a `Failure: ...`), and Route 53
//!   considers the check healthy when **more than 18%** of the checkers
//!   report success;
//! - `Inverted` flips the status; a `Disabled` check is healthy whatever
//!   its checkers see (they stop checking: its observations freeze), except
//!   that a disabled **and** inverted check is unhealthy (inverting a
//!   disabled check is the documented way to stop routing to a resource);
//! - a calculated check has no observations: it is healthy when at least
//!   `HealthThreshold` of its children are;
//! - the API (in us-east-1) allows five requests per second for the whole
//!   account, and answers `Throttling` beyond it.
//!
//! The checkers' observations come from the world: a region whose serving
//! stack is out fails every checker; a degraded one passes one checker of
//! eight (12.5%: unhealthy); a healthy one fails at most a few at random
//! (never below the threshold). [`FakeRoute53::healthy`] is the status Route
//! 53 itself gives a check (what DNS failover would use), written here
//! independently of `core::health` so the two check each other.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use failoverd::ports::health_checks::{CheckKind, CheckReading, HealthChecks};
use failoverd::ports::{ErrorKind, PortError};
use tokio::time::Instant;

use super::world::{Caller, Fault, NetError, Serving, Svc, World};

/// Route 53's checker regions.
pub const CHECKERS: [&str; 8] = [
    "us-east-1",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "sa-east-1",
];

const OK: &str = "Success: HTTP Status Code 200, OK";
const TIMED_OUT: &str = "Failure: Connection timed out. The endpoint or the internet connection is down, or requests are being blocked by your firewall. See https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/dns-failover-router-firewall-rules.html";

/// What a check watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watches {
    /// A region's serving endpoint.
    Region(String),
    /// Children, healthy when at least `threshold` are.
    Calculated {
        children: Vec<String>,
        threshold: u32,
    },
}

#[derive(Debug, Clone)]
struct Check {
    watches: Watches,
    inverted: bool,
    disabled: bool,
    /// The observations when the check was disabled (checkers stop).
    frozen: Option<Vec<String>>,
}

struct State {
    checks: BTreeMap<String, Check>,
    /// The account's request bucket: (tokens, last refill).
    bucket: (f64, Instant),
    /// Route 53's API is down.
    outage: bool,
}

/// Requests per second, and burst, of the account's API bucket.
pub const API_RATE: f64 = 5.0;

/// Route 53 (global).
pub struct FakeRoute53 {
    world: Arc<World>,
    state: Mutex<State>,
}

impl FakeRoute53 {
    pub fn new(world: Arc<World>) -> Arc<Self> {
        Arc::new(Self {
            world,
            state: Mutex::new(State {
                checks: BTreeMap::new(),
                bucket: (API_RATE, Instant::now()),
                outage: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, id: &str, watches: Watches) {
        self.lock().checks.insert(
            id.to_string(),
            Check {
                watches,
                inverted: false,
                disabled: false,
                frozen: None,
            },
        );
    }

    pub fn set_inverted(&self, id: &str, on: bool) {
        if let Some(c) = self.lock().checks.get_mut(id) {
            c.inverted = on;
        }
    }

    pub fn set_disabled(&self, id: &str, on: bool) {
        let obs = on.then(|| self.observations_of(id));
        if let Some(c) = self.lock().checks.get_mut(id) {
            c.disabled = on;
            c.frozen = obs.flatten();
        }
    }

    pub fn set_outage(&self, on: bool) {
        self.lock().outage = on;
    }

    pub fn ids(&self) -> Vec<String> {
        self.lock().checks.keys().cloned().collect()
    }

    /// The checkers' current observations (none for calculated checks).
    fn observations_of(&self, id: &str) -> Option<Vec<String>> {
        let c = self.lock().checks.get(id)?.clone();
        if let Some(f) = &c.frozen {
            return Some(f.clone());
        }
        let Watches::Region(region) = &c.watches else {
            return Some(Vec::new());
        };
        let n = CHECKERS.len();
        let pass: Vec<bool> = match self.world.serving(region) {
            Serving::Out => vec![false; n],
            Serving::Degraded => (0..n).map(|i| i == 0).collect(),
            Serving::Up => {
                // A few checkers see blips; never so many the check flips.
                let mut v = vec![true; n];
                let blips = self
                    .world
                    .with_rng(|r| if r.chance(0.3) { r.range(1, 3) } else { 0 });
                for _ in 0..blips {
                    let i = self.world.with_rng(|r| r.below(n as u64)) as usize;
                    v[i] = false;
                }
                v
            }
        };
        Some(
            pass.into_iter()
                .map(|ok| if ok { OK } else { TIMED_OUT }.to_string())
                .collect(),
        )
    }

    /// The status Route 53 gives the check now.
    pub fn healthy(&self, id: &str) -> bool {
        self.healthy_at_depth(id, 0)
    }

    fn healthy_at_depth(&self, id: &str, depth: u32) -> bool {
        let Some(c) = self.lock().checks.get(id).cloned() else {
            return false;
        };
        if c.disabled {
            return !c.inverted;
        }
        let raw = match &c.watches {
            Watches::Region(region) => match self.world.serving(region) {
                // The same rule as the observations: out and degraded are
                // at most one success in eight, under 18%; up is at least
                // six in eight.
                Serving::Out | Serving::Degraded => false,
                Serving::Up => true,
            },
            Watches::Calculated {
                children,
                threshold,
            } => {
                depth < 3
                    && children
                        .iter()
                        .filter(|k| self.healthy_at_depth(k, depth + 1))
                        .count() as u32
                        >= *threshold
            }
        };
        raw != c.inverted
    }

    /// One API call: the account's bucket, the outage, then the answer.
    async fn call(&self, caller: &Caller, op: &str) -> Result<super::world::Arrived, PortError> {
        let err = |kind: ErrorKind, msg: String| {
            PortError::new("Route 53", op.to_string(), "us-east-1", kind, Fault(msg))
        };
        let a = self
            .world
            .send(caller, Svc::Route53)
            .await
            .map_err(|e| match e {
                NetError::Throttled => {
                    err(ErrorKind::Throttled, "Throttling: Rate exceeded".into())
                }
                NetError::Transport(t) => err(ErrorKind::Transport, t),
            })?;
        let refused = {
            let mut g = self.lock();
            let now = Instant::now();
            let (tokens, last) = g.bucket;
            let tokens = (tokens + now.duration_since(last).as_secs_f64() * API_RATE).min(API_RATE);
            if g.outage {
                g.bucket = (tokens, now);
                Some(err(ErrorKind::Unavailable, "ServiceUnavailable".into()))
            } else if tokens < 1.0 {
                g.bucket = (tokens, now);
                Some(err(
                    ErrorKind::Throttled,
                    "Throttling: Rate exceeded".into(),
                ))
            } else {
                g.bucket = (tokens - 1.0, now);
                None
            }
        };
        if let Some(e) = refused {
            let _ = self.world.reply(a, false).await;
            return Err(e);
        }
        Ok(a)
    }

    fn kind_of(&self, id: &str) -> Option<CheckKind> {
        let c = self.lock().checks.get(id)?.clone();
        Some(match c.watches {
            Watches::Region(_) => CheckKind::Endpoint,
            Watches::Calculated {
                children,
                threshold,
            } => CheckKind::Calculated {
                children,
                threshold,
            },
        })
    }
}

/// The `HealthChecks` port of one caller.
pub struct R53Client {
    pub r53: Arc<FakeRoute53>,
    pub caller: Caller,
}

impl R53Client {
    fn missing(id: &str) -> PortError {
        PortError::new(
            "Route 53",
            format!("GetHealthCheck {id}"),
            "us-east-1",
            ErrorKind::NotFound,
            Fault(format!("NoSuchHealthCheck: {id}")),
        )
    }

    async fn get(&self, id: &str) -> Result<CheckKind, PortError> {
        let a = self.r53.call(&self.caller, "GetHealthCheck").await?;
        let kind = self.r53.kind_of(id);
        self.r53.world.reply(a, false).await.map_err(|e| {
            PortError::new(
                "Route 53",
                "GetHealthCheck",
                "us-east-1",
                ErrorKind::Transport,
                Fault(format!("{e:?}")),
            )
        })?;
        kind.ok_or_else(|| Self::missing(id))
    }
}

#[async_trait]
impl HealthChecks for R53Client {
    async fn read(&self, id: &str) -> Result<CheckReading, PortError> {
        let kind = self.get(id).await?;
        let (inverted, disabled) = {
            let g = self.r53.lock();
            let c = g.checks.get(id).ok_or_else(|| Self::missing(id))?;
            (c.inverted, c.disabled)
        };
        let observations = match kind {
            CheckKind::Endpoint => {
                let a = self.r53.call(&self.caller, "GetHealthCheckStatus").await?;
                let obs = self.r53.observations_of(id).unwrap_or_default();
                self.r53.world.reply(a, false).await.map_err(|e| {
                    PortError::new(
                        "Route 53",
                        "GetHealthCheckStatus",
                        "us-east-1",
                        ErrorKind::Transport,
                        Fault(format!("{e:?}")),
                    )
                })?;
                obs
            }
            _ => Vec::new(),
        };
        Ok(CheckReading {
            kind,
            inverted,
            disabled,
            observations,
        })
    }

    async fn kind(&self, id: &str) -> Result<CheckKind, PortError> {
        self.get(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use failoverd::core::health::{self, Signal};
    use std::time::Duration;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    fn successes(r: &CheckReading) -> usize {
        r.observations
            .iter()
            .filter(|o| o.starts_with("Success"))
            .count()
    }

    #[test]
    fn observations_follow_the_region_and_the_18_percent_rule() {
        rt().block_on(async {
            let world = World::new(1);
            let r53 = FakeRoute53::new(world.clone());
            r53.add("a", Watches::Region("us-east-1".into()));
            let c = R53Client {
                r53: r53.clone(),
                caller: Caller::Harness,
            };
            for _ in 0..20 {
                let r = c.read("a").await.unwrap();
                assert_eq!(r.observations.len(), CHECKERS.len());
                assert!(successes(&r) >= 5, "healthy: blips never flip it");
                assert!(r53.healthy("a"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            world.set_serving("us-east-1", Serving::Degraded);
            let r = c.read("a").await.unwrap();
            assert_eq!(successes(&r), 1, "1 of 8 = 12.5%, not more than 18%");
            assert!(!r53.healthy("a"));
            world.set_serving("us-east-1", Serving::Out);
            assert_eq!(successes(&c.read("a").await.unwrap()), 0);
            // The fake's status and core::health agree.
            for serving in [Serving::Up, Serving::Degraded, Serving::Out] {
                world.set_serving("us-east-1", serving);
                for (inv, dis) in [(false, false), (true, false), (false, true), (true, true)] {
                    r53.set_inverted("a", inv);
                    r53.set_disabled("a", dis);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let r = c.read("a").await.unwrap();
                    let obs: Vec<&str> = r.observations.iter().map(String::as_str).collect();
                    let core = health::route53_effective(&obs, r.inverted, r.disabled);
                    assert_eq!(
                        core == Signal::Healthy,
                        r53.healthy("a"),
                        "{serving:?} inverted={inv} disabled={dis}"
                    );
                }
            }
        });
    }

    #[test]
    fn disabled_is_healthy_unless_inverted_and_freezes_observations() {
        rt().block_on(async {
            let world = World::new(2);
            let r53 = FakeRoute53::new(world.clone());
            r53.add("a", Watches::Region("us-east-1".into()));
            world.set_serving("us-east-1", Serving::Out);
            r53.set_disabled("a", true);
            assert!(
                r53.healthy("a"),
                "disabled: healthy whatever the checkers see"
            );
            world.set_serving("us-east-1", Serving::Up);
            let c = R53Client {
                r53: r53.clone(),
                caller: Caller::Harness,
            };
            let r = c.read("a").await.unwrap();
            assert_eq!(successes(&r), 0, "checkers stopped when it was disabled");
            assert!(r.disabled);
            r53.set_inverted("a", true);
            assert!(!r53.healthy("a"), "disabled and inverted: unhealthy");
        });
    }

    #[test]
    fn calculated_checks_count_healthy_children() {
        rt().block_on(async {
            let world = World::new(3);
            let r53 = FakeRoute53::new(world.clone());
            r53.add("x", Watches::Region("us-east-1".into()));
            r53.add("y", Watches::Region("us-west-2".into()));
            r53.add(
                "c",
                Watches::Calculated {
                    children: vec!["x".into(), "y".into()],
                    threshold: 2,
                },
            );
            let c = R53Client {
                r53: r53.clone(),
                caller: Caller::Harness,
            };
            let r = c.read("c").await.unwrap();
            assert!(r.observations.is_empty());
            assert_eq!(
                r.kind,
                CheckKind::Calculated {
                    children: vec!["x".into(), "y".into()],
                    threshold: 2
                }
            );
            assert!(r53.healthy("c"));
            world.set_serving("us-west-2", Serving::Out);
            assert!(!r53.healthy("c"));
            r53.set_inverted("y", true);
            assert!(
                r53.healthy("c"),
                "an inverted unhealthy child counts as healthy"
            );
            assert_eq!(c.kind("nope").await.unwrap_err().kind, ErrorKind::NotFound);
        });
    }

    #[test]
    fn the_account_bucket_throttles_bursts() {
        rt().block_on(async {
            let world = World::new(4);
            world.set_latency(0, 0);
            let r53 = FakeRoute53::new(world.clone());
            r53.add("a", Watches::Region("us-east-1".into()));
            let c = R53Client {
                r53: r53.clone(),
                caller: Caller::Harness,
            };
            // Five calls of burst: two readings, then the fifth call is
            // the last one the bucket holds; the sixth is throttled.
            c.read("a").await.unwrap();
            c.read("a").await.unwrap();
            c.kind("a").await.unwrap();
            let e = c.read("a").await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Throttled);
            tokio::time::sleep(Duration::from_secs(1)).await;
            c.read("a").await.unwrap();
            r53.set_outage(true);
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(c.read("a").await.unwrap_err().kind, ErrorKind::Unavailable);
        });
    }
}
