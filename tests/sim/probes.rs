//! The daemon's data-plane probes, the host clock and randomness, as the
//! simulation provides them.
//!
//! Probes: a GET of a region's probe URL answers 200 when the region's
//! serving stack is up (or degraded: reachable from our daemons, failing
//! only some of Route 53's checkers), and times out after the daemon's
//! connect and response budgets (`health.probe_*_timeout`) when it is out
//! or when this observer's path to it is cut. Probes are not AWS calls: a
//! daemon cut off from AWS still probes.
//!
//! Clock: each region's host clock is true time plus that region's skew.
//! Entropy: a generator seeded from the run's seed, the region and the
//! process incarnation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use failoverd::core::health::Signal;
use failoverd::ports::clock::Mono;
use failoverd::ports::{Clock, Entropy, Probes};

use super::world::{Caller, Rng, Serving, World};

/// The probes of one daemon.
pub struct ProbeClient {
    pub world: Arc<World>,
    pub caller: Caller,
    /// Probe URL -> the region it watches.
    pub targets: BTreeMap<String, String>,
    /// Connect plus response budget.
    pub timeout: Duration,
}

#[async_trait]
impl Probes for ProbeClient {
    async fn probe(&self, url: &str, _must_contain: Option<&str>) -> (Signal, String) {
        let Caller::Daemon { region: me, .. } = &self.caller else {
            return (Signal::Unknown, "not a daemon".into());
        };
        let Some(target) = self.targets.get(url) else {
            return (Signal::Unhealthy, format!("bad url: {url}"));
        };
        let reachable =
            self.world.serving(target) != Serving::Out && !self.world.probe_cut(me, target);
        if !reachable {
            tokio::time::sleep(self.timeout).await;
            if !self.world.is_alive(&self.caller) {
                std::future::pending::<()>().await;
            }
            return (
                Signal::Unhealthy,
                format!("no response within {:?}", self.timeout),
            );
        }
        let ms = self.world.with_rng(|r| r.range(5, 120));
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if !self.world.is_alive(&self.caller) {
            std::future::pending::<()>().await;
        }
        (Signal::Healthy, "HTTP 200".into())
    }
}

/// A region's host clock.
pub struct SimClock {
    pub world: Arc<World>,
    pub region: String,
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        self.world.wall_ms(&self.region)
    }
    /// The simulation's time: its runtime's clock is paused and advanced.
    fn monotonic(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
    /// Each host's monotonic clock from an origin of its own, so that a
    /// comparison of two hosts' [`Mono`] readings would show.
    fn mono_at(&self, at: tokio::time::Instant) -> Mono {
        self.world.mono_at(&self.region, at)
    }
}

/// Seeded randomness for one process.
pub struct SimEntropy(pub Mutex<Rng>);

impl Entropy for SimEntropy {
    fn next_u64(&self) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn probes_follow_the_serving_stack_and_cuts() {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(async {
                let world = World::new(1);
                let pid = world.spawn_pid();
                let p = ProbeClient {
                    world: world.clone(),
                    caller: Caller::Daemon {
                        region: "us-east-1".into(),
                        pid,
                    },
                    targets: [("https://w/ping".to_string(), "us-west-2".to_string())].into(),
                    timeout: Duration::from_secs(6),
                };
                assert_eq!(p.probe("https://w/ping", None).await.0, Signal::Healthy);
                world.set_serving("us-west-2", Serving::Degraded);
                assert_eq!(p.probe("https://w/ping", None).await.0, Signal::Healthy);
                world.set_serving("us-west-2", Serving::Out);
                let t0 = Instant::now();
                assert_eq!(p.probe("https://w/ping", None).await.0, Signal::Unhealthy);
                assert_eq!(t0.elapsed(), Duration::from_secs(6));
                world.set_serving("us-west-2", Serving::Up);
                world.set_probe_cut("us-east-1", "us-west-2", true);
                assert_eq!(p.probe("https://w/ping", None).await.0, Signal::Unhealthy);
                world.set_skew("us-east-1", -5000);
                let c = SimClock {
                    world: world.clone(),
                    region: "us-east-1".into(),
                };
                assert_eq!(c.now_ms() + 5000, world.true_ms());
            });
    }
}
