//! The simulator: three regions' daemons (the real `Reconciler`, with its
//! token workers and executor) and an operator (the real
//! `cli::ops::run_request`) in one single-threaded tokio runtime on a
//! paused clock, against the fakes, driven by one scenario.
//!
//! A run: build the world and the fakes from the shipped configuration
//! (`regions/base.toml` and the region files, loaded by the real loader),
//! start the daemons (staggered within a poll), then every **step** (100
//! ms of simulated time) apply the scenario's events due and check the
//! invariants (`invariants.rs`). At `fault_end_ms` everything heals; the
//! run goes on until the fleet has settled (or the quiet bound passes,
//! which is itself a violation). A crash kills the process: its reconcile
//! task is aborted and the world stops answering its pid, so the token
//! workers it spawned can do nothing more either.
//!
//! A region runs one or two daemons (instances `a` and `b`; a seed draws
//! which regions have two, and when a second one crashes and restarts, from
//! a stream of its own so the seed's other draws are unchanged). The
//! second daemon is the real `Reconciler` too, with its own router, which
//! carries all of its region's client traffic while it runs (the first's
//! takes over when it is down, as behind a load balancer). Checked beside
//! `invariants.rs`: at most one daemon of a region holds the region's
//! active duties at any step; and, once settled, every daemon's cost task
//! counts the traffic of a two-daemon region in full.
//!
//! Each daemon process also runs its region's router (`clients.rs`): the
//! real `Router` over the SageMaker runtime fake and the fakes of
//! `objects.rs`, sharing the daemon's `Shared`, with its routing-table
//! refresh task. The seed's clients send requests to the routers until the
//! faults end; after every step the world is folded into the life of each
//! request in flight and requests past their deadline are judged. When the
//! fleet has settled the run goes on until every request is judged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use failoverd::config::{Config, EnvSource, load_layers};
use failoverd::control::reconcile::Reconciler;
use failoverd::core::plan::Request;
use failoverd::ports::{ControlStore, Ports};
use failoverd::router::{Ports as RouterPorts, Router};
use failoverd::state::{Readiness, Shared};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::bounds::Bounds;
use super::clients::{Budget, Clients, Figures, Routers};
use super::invariants::Monitor;
use super::objects::{FakeBlobs, FakeJobs, RoutingTableClient};
use super::probes::{ProbeClient, SimClock, SimEntropy};
use super::route53::{FakeRoute53, R53Client, Watches};
use super::sagemaker::{FakeSageMaker, SmClient, SmRuntime};
use super::schedule::{DriftKind, Event, OpCmd, Profile, REGIONS, Scenario};
use super::sfn::{FakeSfn, SfnClient};
use super::store::{Consistency, FakeStore, StoreClient};
use super::world::{Caller, Link, Rng, Serving, Svc, World};

/// What a run found.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub trace: String,
    pub violations: Vec<String>,
    /// Simulated time the run covered.
    pub sim_ms: u64,
    /// Record writes that switched the active region.
    pub switches: usize,
    /// The clients' requests.
    pub requests: Figures,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// A running daemon process.
pub struct Daemon {
    pub pid: u64,
    pub shared: Arc<Shared>,
    pub started_ms: u64,
    task: JoinHandle<()>,
    /// The cost task (schedules next to failover, `control::cost`).
    cost: JoinHandle<()>,
    /// The router's routing-table refresh.
    refresh: JoinHandle<()>,
    /// The configuration in force, as SIGHUP replaces it.
    pub config: watch::Sender<Arc<Config>>,
    /// Its router (the clients reach one router per region).
    router: Arc<Router>,
    _shutdown: watch::Sender<bool>,
}

/// The second daemons: which regions have one (drawn per seed), their
/// crashes and restarts, and the running ones.
#[derive(Default)]
pub struct Twins {
    pub regions: BTreeSet<String>,
    /// (at ms, region, up): a second daemon's crash (`false`) or restart.
    events: Vec<(u64, String, bool)>,
    next: usize,
    pub running: BTreeMap<String, Daemon>,
}

impl Twins {
    /// Draw from `seed` (a stream of its own): each region has a second
    /// daemon with probability 1/2; each second daemon crashes with
    /// probability 1/2 before the faults end, and then restarts with
    /// probability 2/3.
    fn draw(seed: u64, fault_end_ms: u64, regions: &[&str]) -> Self {
        let mut rng = Rng::new(seed).fork(0x1257_A4CE);
        let mut t = Twins::default();
        for r in REGIONS {
            // us-east-2 is drawn last: leaving it out of a two-region
            // fleet changes no other region's draws.
            let runs = regions.contains(&r);
            if rng.below(2) == 1 && runs {
                t.regions.insert(r.to_string());
                if rng.below(2) == 1 {
                    let down = rng.below(fault_end_ms.max(1));
                    t.events.push((down, r.to_string(), false));
                    if rng.below(3) > 0 {
                        let up = down + rng.range(1_000, 60_000);
                        t.events.push((up, r.to_string(), true));
                    }
                }
            }
        }
        t.events.sort();
        t
    }
}

/// The simulator's state.
pub struct Sim {
    pub world: Arc<World>,
    pub scenario: Scenario,
    /// Each region's file as it is now (drift, a new machine): what a
    /// start or SIGHUP reads.
    pub configs: BTreeMap<String, Arc<Config>>,
    /// Each region's file as shipped.
    shipped: BTreeMap<String, Arc<Config>>,
    /// The regions whose file drifted, and how.
    pub drifted: BTreeMap<String, DriftKind>,
    /// The regions whose file names the `-v2` state machines.
    pub v2: BTreeSet<String>,
    /// Proposal ids the operator approved naming them as they were open
    /// when it read the record: no other proposal may become approved.
    pub approved_ids: Arc<Mutex<BTreeSet<String>>>,
    /// Proposals the operator has read (for stale approvals).
    proposals_read: Vec<failoverd::core::control::Proposal>,
    pub store: Arc<FakeStore>,
    pub sfn: Arc<FakeSfn>,
    pub r53: Arc<FakeRoute53>,
    pub sm: Arc<FakeSageMaker>,
    pub daemons: BTreeMap<String, Daemon>,
    pub incarnations: BTreeMap<String, u64>,
    pub bounds: Bounds,
    /// Faults in force, by what they touch (for the invariants' "nothing
    /// else is wrong" conditions).
    pub faults: BTreeMap<String, Event>,
    /// Moves whenever an event is applied: the world's facts the
    /// invariants derive (health for every observer) change only then.
    pub facts: u64,
    /// The checks configured for each region.
    pub checks: BTreeMap<String, Vec<String>>,
    /// Operator commands still running.
    pub operator: Arc<Mutex<usize>>,
    pub monitor: Monitor,
    /// The clients, the routers they reach, and the ledger.
    pub clients: Arc<Clients>,
    /// The router's worst costs at misbehaving regions (the request rule).
    pub budget: Budget,
    /// The last lost (or restored-over) record, and the daemons that held
    /// a copy of a record when it was lost and have not restarted since:
    /// while any of them runs, the record must be re-created from a copy,
    /// never initialized afresh.
    pub lost: Option<(failoverd::core::control::ControlRecord, BTreeSet<String>)>,
    /// When the record was last deleted or restored over (simulated ms):
    /// nothing confirms an active's lease until it is back.
    pub lost_at_ms: Option<u64>,
    /// The second daemons of the regions that have one.
    pub twins: Twins,
    blobs: Arc<FakeBlobs>,
    jobs: Arc<FakeJobs>,
    rng: Rng,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The shipped configuration of every region, loaded by the real loader
/// (once per variant: the TOML parse is the same for every seed).
fn load(
    consistency: Consistency,
    profile: Profile,
    approval: bool,
    two_regions: bool,
) -> BTreeMap<String, Config> {
    type Cache = Mutex<BTreeMap<(bool, bool, bool, bool), BTreeMap<String, Config>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (
        consistency == Consistency::Mrec,
        profile == Profile::Fast,
        approval,
        two_regions,
    );
    let cache = CACHE.get_or_init(Cache::default);
    if let Some(c) = cache.lock().unwrap().get(&key) {
        return c.clone();
    }
    let mut env = EnvSource::new();
    if consistency == Consistency::Mrec {
        env.insert("FAILOVERD__TABLES__CONSISTENCY".into(), "eventual".into());
    }
    if approval {
        env.insert("FAILOVERD__POLICY__APPROVAL".into(), "manual".into());
    }
    if profile == Profile::Fast {
        for (k, v) in [
            ("POLL_INTERVAL", "2s"),
            ("FAILURE_THRESHOLD", "2"),
            ("RECOVERY_THRESHOLD", "2"),
            ("VOTE_FRESHNESS", "10s"),
            ("LEASE", "10s"),
            ("MIN_FAILOVER_INTERVAL", "2m"),
            ("PREPARE_BUDGET", "20s"),
            ("START_TIMEOUT", "30s"),
            ("STUCK_FAILOVER", "3m"),
            ("ABORT_RETRY", "10s"),
        ] {
            env.insert(format!("FAILOVERD__TIMINGS__{k}"), v.into());
        }
        // A tier2 target may scale up in prepare for cost.prepare_budget;
        // the loader requires that to end well inside stuck_failover.
        env.insert("FAILOVERD__COST__PREPARE_BUDGET".into(), "1m".into());
    }
    let dir = root().join("regions");
    let (base, regions) = if two_regions {
        if consistency == Consistency::Mrsc {
            env.insert("FAILOVERD__TABLES__WITNESS".into(), REGIONS[2].into());
        }
        // Loaded from a file of its own, removed once read.
        let path = std::env::temp_dir().join(format!(
            "failoverd-sim-two-regions-{}-{}.toml",
            std::process::id(),
            {
                static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            }
        ));
        std::fs::write(&path, two_region_base()).expect("the two-region base file is written");
        (path, &REGIONS[..2])
    } else {
        (dir.join("base.toml"), &REGIONS[..])
    };
    let configs: BTreeMap<String, Config> = regions
        .iter()
        .map(|r| {
            let files = [base.clone(), dir.join(format!("{r}.toml"))];
            let mut cfg = load_layers(&files, &env).unwrap_or_else(|e| {
                panic!("the shipped configuration of {r} loads: {}", e.report())
            });
            with_cost(&mut cfg);
            // Named instances, as docs/instances.md advises for a region
            // with more than one daemon: the first daemon is `a`.
            cfg.instance = Some("a".into());
            (r.to_string(), cfg)
        })
        .collect();
    if two_regions {
        let _ = std::fs::remove_file(&base);
    }
    cache.lock().unwrap().insert(key, configs.clone());
    configs
}

/// The shipped base file cut to a two-region fleet: us-east-2's
/// `[[regions]]` entry gone and two replicas (the witness, under MRSC, comes
/// from the environment).
fn two_region_base() -> String {
    let text = std::fs::read_to_string(root().join("regions/base.toml")).expect("base.toml");
    let cut = format!("[[regions]]\nname = \"{}\"", REGIONS[2]);
    let start = text.find(&cut).expect("us-east-2's entry in base.toml");
    let end = start
        + text[start..]
            .find("\n\n")
            .expect("a blank line after us-east-2's entry");
    let out = format!("{}{}", &text[..start], &text[end + 2..]);
    let replicas = out
        .lines()
        .find(|l| l.starts_with("replicas = "))
        .expect("tables.replicas in base.toml")
        .to_string();
    out.replace(
        &replicas,
        &format!("replicas = [\"{}\", \"{}\"]", REGIONS[0], REGIONS[1]),
    )
}

/// The cost task beside the failovers (issue 19 item 5): every daemon
/// applies a schedule to its region's provisioned endpoint every 15 s, with
/// a need measured from the routers' counts. The schedule alternates every
/// five minutes between 3 instances and 1 (UTC), so that a run sees the
/// schedule lower standbys, raise them, and meet failovers, proposals and
/// traffic moved by the routers. Every region gets the same settings (no
/// configuration drift).
fn with_cost(cfg: &mut Config) {
    use super::sagemaker::READINESS_INTERVAL;
    use failoverd::config::EndpointSchedule;
    use failoverd::core::schedule::{Schedule, Window};
    let windows: Vec<Window> = (0..24)
        .flat_map(|h| (0..6).map(move |m| (h, m * 10)))
        .map(|(h, m)| {
            Window::new(
                "*".parse().unwrap(),
                format!("{h:02}:{m:02}").parse().unwrap(),
                format!("{h:02}:{:02}", m + 5).parse().unwrap(),
                3,
            )
            .unwrap()
        })
        .collect();
    cfg.cost.interval = std::time::Duration::from_secs(15);
    // Standby readiness (issue 26) every minute: the drift invariant's period.
    cfg.cost.readiness_interval = READINESS_INTERVAL;
    cfg.cost.instance_invocations_per_minute = Some(20);
    cfg.cost.schedules = vec![EndpointSchedule {
        endpoint: "inference-provisioned".into(),
        schedule: Schedule::new("UTC", 1, windows).unwrap(),
    }];
}

/// The ARN a rollout moves `arn` to.
fn v2(arn: &str) -> String {
    format!("{arn}-v2")
}

/// The shipped state machine definition, rendered for `region`.
fn definition(cfg: &Config, region: &str) -> String {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        std::fs::read_to_string(root().join("deploy/statemachines/failover.asl.json"))
            .expect("the shipped state machine")
    });
    failoverd::aws::sfn::render_definition(
        template,
        &[
            ("ControlTable", &cfg.tables.control),
            ("ControlTableRegion", cfg.control_region_for(region)),
        ],
    )
    .expect("the definition renders")
}

/// Run one seed.
pub fn run(seed: u64) -> Report {
    run_scenario(super::schedule::generate(seed))
}

/// Run a scenario in a fresh single-threaded runtime on a paused clock.
pub fn run_scenario(scenario: Scenario) -> Report {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let _log = std::env::var_os("SIM_LOG").map(|_| {
        let start = rt.block_on(async { tokio::time::Instant::now() });
        tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("SIM_LOG")
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_timer(SimTimer(start))
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .finish(),
        )
    });
    let report = rt.block_on(async move { Sim::new(scenario).run().await });
    drop(rt);
    report
}

/// Log lines stamped with simulated time.
struct SimTimer(tokio::time::Instant);

impl tracing_subscriber::fmt::time::FormatTime for SimTimer {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let ms = tokio::time::Instant::now()
            .saturating_duration_since(self.0)
            .as_millis();
        write!(w, "{:>5}.{:03}", ms / 1000, ms % 1000)
    }
}

/// The key under which a fault is held while in force (its end event has
/// the same key).
fn fault_key(e: &Event) -> Option<String> {
    Some(match e {
        Event::Link { region, svc, .. } => format!("link {region} {svc:?}"),
        Event::Isolate { replica, .. } => format!("isolate {replica}"),
        Event::SfnApiDown { region, .. } => format!("sfn-api {region}"),
        Event::SfnStall { region, .. } => format!("sfn-stall {region}"),
        Event::Route53Outage(_) => "route53-outage".into(),
        Event::Throttle { svc, .. } => format!("throttle {svc:?}"),
        Event::Lossy { svc, .. } => format!("lossy {svc:?}"),
        Event::Lag { .. } => "lag".into(),
        Event::Serving { region, .. } => format!("serving {region}"),
        Event::ProbeCut {
            observer, target, ..
        } => format!("probe-cut {observer} {target}"),
        Event::Inverted { region, .. } => format!("inverted {region}"),
        Event::Disabled { region, .. } => format!("disabled {region}"),
        Event::Model { region, .. } => format!("model {region}"),
        Event::Endpoint { region, .. } => format!("endpoint {region}"),
        Event::Crash(region) | Event::Restart(region) => format!("crash {region}"),
        Event::Drift { region, .. } => format!("drift {region}"),
        // A rollout is a fleet-wide change: in force until everything heals
        // (which completes it).
        Event::NewMachine { region } => format!("machine {region}"),
        _ => return None,
    })
}

/// Whether `e` ends its fault (puts things back as they were).
fn is_end(e: &Event) -> bool {
    match e {
        Event::Link { link, .. } => *link == Link::Up,
        Event::Isolate { on, .. }
        | Event::SfnApiDown { on, .. }
        | Event::SfnStall { on, .. }
        | Event::ProbeCut { on, .. }
        | Event::Inverted { on, .. }
        | Event::Disabled { on, .. } => !on,
        Event::Route53Outage(on) => !on,
        Event::Throttle { p, .. } | Event::Lossy { p, .. } => *p == 0.0,
        Event::Lag { hi, .. } => *hi <= 900,
        Event::Serving { s, .. } => *s == Serving::Up,
        Event::Model { b, .. } => *b == super::sagemaker::Behaviour::default(),
        Event::Endpoint { status, .. } => {
            *status == Some(failoverd::ports::endpoints::EndpointStatus::InService)
        }
        Event::Restart(_) => true,
        Event::Drift { kind, .. } => kind.is_none(),
        _ => false,
    }
}

impl Sim {
    pub fn new(scenario: Scenario) -> Self {
        let world = World::new(scenario.seed);
        let mut configs = load(
            scenario.consistency,
            scenario.profile,
            scenario.approval,
            scenario.two_regions,
        );
        let mut checks: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let r53 = FakeRoute53::new(world.clone());
        for cfg in configs.values_mut() {
            if scenario.idle {
                // Idle detection beside the schedule, reading the
                // simulation's CloudWatch (issue 19 item 10).
                cfg.cost.idle.enabled = true;
                cfg.cost.idle.cloudwatch = true;
                cfg.cost.idle.window = std::time::Duration::from_secs(180);
            }
            for rc in &mut cfg.regions {
                if scenario.calculated && rc.name == "us-west-2" {
                    rc.health_check_ids = vec!["calc-us-west-2".into()];
                }
            }
        }
        let any = configs.values().next().expect("regions").clone();
        for rc in &any.regions {
            for id in &rc.health_check_ids {
                if id.starts_with("calc-") {
                    let kids = vec![format!("{id}-a"), format!("{id}-b")];
                    for k in &kids {
                        r53.add(k, Watches::Region(rc.name.clone()));
                    }
                    r53.add(
                        id,
                        Watches::Calculated {
                            children: kids,
                            threshold: 1,
                        },
                    );
                } else {
                    r53.add(id, Watches::Region(rc.name.clone()));
                }
            }
            checks.insert(rc.name.clone(), rc.health_check_ids.clone());
        }
        let replicas = any.tables.replicas.clone();
        let store = FakeStore::with_witness(
            world.clone(),
            scenario.consistency,
            &replicas,
            scenario.witness(),
        );
        // Each region's machine, and the `-v2` a rollout moves to
        // (`Event::NewMachine`).
        let machines = any
            .regions
            .iter()
            .flat_map(|rc| {
                let def = definition(&any, &rc.name);
                [
                    (rc.state_machine_arn.clone(), rc.name.clone(), def.clone()),
                    (v2(&rc.state_machine_arn), rc.name.clone(), def),
                ]
            })
            .collect();
        let sfn = FakeSfn::new(world.clone(), store.clone(), &any.tables.control, machines);
        let sm = FakeSageMaker::new(world.clone());
        for rc in &any.regions {
            for ep in rc.sagemaker.all() {
                sm.create(&rc.name, ep);
            }
        }
        for (region, skew) in &scenario.skews {
            world.set_skew(region, *skew);
        }
        let def: Value = serde_json::from_str(&definition(&any, "us-east-1")).expect("JSON");
        let all_checks = r53.ids().len();
        let bounds = Bounds::new(&any, &def, all_checks);
        let configs: BTreeMap<String, Arc<Config>> =
            configs.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        let rng = Rng::new(scenario.seed).fork(0xF1EE7);
        let monitor = Monitor::new(&scenario);
        let clients = Arc::new(Clients {
            world: world.clone(),
            sm: sm.clone(),
            routers: Arc::new(Routers::default()),
            ledger: Default::default(),
            default_deadline_ms: any.router.default_deadline.as_millis() as u64,
            endpoints: any
                .regions
                .iter()
                .map(|rc| {
                    let eps = rc.sagemaker.all().map(|e| e.to_string()).collect();
                    (rc.name.clone(), eps)
                })
                .collect(),
        });
        let budget = Budget::new(&any);
        let twins = Twins::draw(scenario.seed, scenario.fault_end_ms, scenario.regions());
        Self {
            world,
            scenario,
            shipped: configs.clone(),
            configs,
            drifted: BTreeMap::new(),
            v2: BTreeSet::new(),
            approved_ids: Default::default(),
            proposals_read: Vec::new(),
            store,
            sfn,
            r53,
            sm,
            daemons: BTreeMap::new(),
            incarnations: BTreeMap::new(),
            bounds,
            faults: BTreeMap::new(),
            facts: 0,
            checks,
            operator: Arc::new(Mutex::new(0)),
            monitor,
            clients,
            budget,
            lost: None,
            lost_at_ms: None,
            twins,
            blobs: Arc::new(FakeBlobs::default()),
            jobs: Arc::new(FakeJobs::default()),
            rng,
        }
    }

    /// The ports of a process in `region` (a daemon, or the operator's
    /// CLI acting through that region's replica).
    fn ports(&mut self, region: &str, caller: Caller, incarnation: u64) -> Ports {
        let cfg = &self.configs[region];
        let store_of = |replica: &str| -> Arc<dyn ControlStore> {
            Arc::new(StoreClient {
                store: self.store.clone(),
                caller: caller.clone(),
                replica: replica.to_string(),
            })
        };
        let own = cfg.control_region_for(region).to_string();
        let replicas: BTreeMap<String, Arc<dyn ControlStore>> = cfg
            .tables
            .replicas
            .iter()
            .map(|r| (r.clone(), store_of(r)))
            .collect();
        let store = replicas
            .get(&own)
            .cloned()
            .unwrap_or_else(|| store_of(&own));
        let targets = cfg
            .regions
            .iter()
            .flat_map(|rc| rc.probe_urls.iter().map(|u| (u.clone(), rc.name.clone())))
            .collect();
        let tag = self.rng.fork(incarnation).next_u64() ^ region.len() as u64;
        Ports {
            clock: Arc::new(SimClock {
                world: self.world.clone(),
                region: region.to_string(),
            }),
            entropy: Arc::new(SimEntropy(Mutex::new(
                Rng::new(self.scenario.seed).fork(tag),
            ))),
            store,
            replicas,
            workflows: Arc::new(SfnClient {
                sfn: self.sfn.clone(),
                caller: caller.clone(),
            }),
            health_checks: Arc::new(R53Client {
                r53: self.r53.clone(),
                caller: caller.clone(),
            }),
            endpoints: Arc::new(SmClient {
                sm: self.sm.clone(),
                caller: caller.clone(),
            }),
            endpoint_metrics: if self.scenario.idle {
                Arc::new(super::sagemaker::FakeCloudWatch {
                    sm: self.sm.clone(),
                })
            } else {
                Arc::new(super::sagemaker::NoCloudWatch)
            },
            probes: Arc::new(ProbeClient {
                world: self.world.clone(),
                caller,
                targets,
                timeout: cfg.health.probe_connect_timeout + cfg.health.probe_response_timeout,
            }),
            capacity: Arc::new(super::sagemaker::FakeCapacity),
        }
    }

    fn start(&mut self, region: &str) {
        if self.daemons.contains_key(region) {
            return;
        }
        let d = self.spawn(region, false);
        // The clients reach the second daemon's router while it runs.
        if !self.twins.running.contains_key(region) {
            self.clients.routers.up(region, d.pid, d.router.clone());
        }
        self.daemons.insert(region.to_string(), d);
    }

    /// Start `region`'s second daemon (instance `b`), if it has one.
    fn start_twin(&mut self, region: &str) {
        if !self.twins.regions.contains(region) || self.twins.running.contains_key(region) {
            return;
        }
        let d = self.spawn(region, true);
        self.clients.routers.up(region, d.pid, d.router.clone());
        self.twins.running.insert(region.to_string(), d);
    }

    fn crash_twin(&mut self, region: &str) {
        if let Some((_, holders)) = &mut self.lost {
            holders.remove(&format!("{region}/b"));
        }
        if let Some(d) = self.twins.running.remove(region) {
            self.world.kill(d.pid);
            self.clients.routers.down_pid(region, d.pid);
            if let Some(first) = self.daemons.get(region) {
                self.clients
                    .routers
                    .up(region, first.pid, first.router.clone());
            }
            d.refresh.abort();
            d.task.abort();
            d.cost.abort();
            self.world.trace(format!(
                "{region}: second daemon (b) killed (pid {})",
                d.pid
            ));
        }
    }

    /// A daemon process of `region`: its first (`a`) or second (`b`).
    fn spawn(&mut self, region: &str, second: bool) -> Daemon {
        let pid = self.world.spawn_pid();
        let key = if second {
            format!("{region}/b")
        } else {
            region.to_string()
        };
        let n = self.incarnations.entry(key).or_insert(0);
        *n += 1;
        let incarnation = *n * 16
            + REGIONS.iter().position(|r| *r == region).unwrap_or(0) as u64
            + if second { 8 } else { 0 };
        let caller = Caller::Daemon {
            region: region.to_string(),
            pid,
        };
        let ports = self.ports(region, caller.clone(), incarnation);
        let mut cfg = self.configs[region].clone();
        if second {
            let mut b = (*cfg).clone();
            b.instance = Some("b".into());
            cfg = Arc::new(b);
        }
        let (config_tx, config_rx) = watch::channel(cfg);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared::default());
        let router = self.router(region, caller, incarnation, &config_tx, &shared);
        let cost = failoverd::control::cost::CostTask::new(
            config_tx.subscribe(),
            ports.clone(),
            shared.clone(),
            Arc::new(failoverd::state::FleetCounts::new(
                config_tx.subscribe(),
                shared.clone(),
                ports.clock.clone(),
            )),
        );
        // The standby readiness task (issue 26) beside it, in the same
        // task handle (stopped with it).
        let standby = failoverd::control::standby::StandbyTask::new(
            config_tx.subscribe(),
            ports.clone(),
            shared.clone(),
        );
        let (a, b) = (shutdown_tx.subscribe(), shutdown_tx.subscribe());
        let cost = tokio::spawn(
            async move {
                tokio::join!(cost.run(a), standby.run(b));
            }
            .instrument(tracing::info_span!(
                "daemon",
                region = %region,
                pid
            )),
        );
        let reconciler = Reconciler::new(config_rx, ports, shared.clone(), Readiness::starting());
        let span = tracing::info_span!("daemon", region = %region, pid);
        let refresh = tokio::spawn(
            router
                .clone()
                .refresh_routing_table(shutdown_tx.subscribe())
                .instrument(span.clone()),
        );
        let task = tokio::spawn(reconciler.run(shutdown_rx).instrument(span));
        if second {
            self.world
                .trace(format!("{region}: second daemon (b) started (pid {pid})"));
        } else {
            self.world
                .trace(format!("{region}: daemon started (pid {pid})"));
        }
        Daemon {
            pid,
            shared,
            started_ms: self.world.elapsed_ms(),
            task,
            cost,
            refresh,
            config: config_tx,
            router,
            _shutdown: shutdown_tx,
        }
    }

    /// The router of a daemon process: the real `Router` over the runtime
    /// fake (calling as the process), the shared S3 and job fakes, the
    /// routing table through the process's link to DynamoDB, the host's
    /// clock; routing by what the daemon last saw (`shared`).
    fn router(
        &self,
        region: &str,
        caller: Caller,
        incarnation: u64,
        config: &watch::Sender<Arc<Config>>,
        shared: &Arc<Shared>,
    ) -> Arc<Router> {
        let ports = RouterPorts {
            inference: Arc::new(SmRuntime {
                sm: self.sm.clone(),
                caller: caller.clone(),
            }),
            blobs: self.blobs.clone(),
            jobs: self.jobs.clone(),
            routing_table: Arc::new(RoutingTableClient {
                world: self.world.clone(),
                caller,
                thresholds: HashMap::from([("standard".to_string(), 4 * 1024 * 1024)]),
            }),
            clock: Arc::new(SimClock {
                world: self.world.clone(),
                region: region.to_string(),
            }),
        };
        let router = Router::new(config.subscribe(), ports, shared.clone());
        // Jitter and request ids from the seed, not the process id: a
        // seed replays in any process.
        router.reseed(self.rng.fork(0x2077_0000 ^ incarnation).next_u64());
        router
    }

    /// SIGHUP, as `daemon::reload` does it: the file's configuration with
    /// the restart-only settings held (`Config::hold_restart_only`). With
    /// `tables`, the file now names another control table in the other
    /// consistency mode (an operator preparing a move from eventual to
    /// strong), which must not take effect before a restart: before, the
    /// planner read the consistency mode live. Both of a region's daemons
    /// get it.
    fn reload(&mut self, region: &str, tables: bool) {
        let mut new = (*self.configs[region]).clone();
        if tables {
            new.tables.control = format!("{}-next", new.tables.control);
            new.tables.consistency = match new.tables.consistency {
                failoverd::config::Consistency::Strong => failoverd::config::Consistency::Eventual,
                failoverd::config::Consistency::Eventual => failoverd::config::Consistency::Strong,
            };
        }
        for (who, d) in [
            ("a", self.daemons.get(region)),
            ("b", self.twins.running.get(region)),
        ] {
            let Some(d) = d else { continue };
            let current = d.config.borrow().clone();
            let mut new = new.clone();
            new.instance = current.instance.clone();
            let pending = new.hold_restart_only(&current);
            d.shared.set_restart_pending(&pending);
            d.config.send_replace(Arc::new(new));
            self.world.trace(format!(
                "{region}/{who}: reloaded (held until a restart: {pending:?})"
            ));
        }
    }

    /// `region`'s file as it is now: as shipped, with the new machines
    /// if its rollout came, and its drift.
    fn file(&self, region: &str) -> Config {
        let mut c = (*self.shipped[region]).clone();
        if self.v2.contains(region) {
            for rc in &mut c.regions {
                rc.state_machine_arn = v2(&rc.state_machine_arn);
            }
        }
        match self.drifted.get(region) {
            None => {}
            Some(DriftKind::Priorities) => {
                let p: Vec<u32> = c.regions.iter().map(|rc| rc.priority).collect();
                let n = p.len();
                // The last two swap: the standbys' order.
                if n >= 2 {
                    c.regions[n - 1].priority = p[n - 2];
                    c.regions[n - 2].priority = p[n - 1];
                }
            }
            Some(DriftKind::Lease) => c.timings.lease /= 2,
            Some(DriftKind::Approval) => {
                c.policy.approval = match c.policy.approval {
                    failoverd::core::plan::Approval::None => {
                        failoverd::core::plan::Approval::Manual
                    }
                    failoverd::core::plan::Approval::Manual => {
                        failoverd::core::plan::Approval::None
                    }
                };
            }
        }
        c
    }

    /// Write `region`'s file anew and SIGHUP its daemons.
    fn rewrite(&mut self, region: &str) {
        let file = Arc::new(self.file(region));
        self.configs.insert(region.to_string(), file);
        self.reload(region, false);
    }

    fn crash(&mut self, region: &str) {
        if let Some((_, holders)) = &mut self.lost {
            holders.remove(region);
        }
        if let Some(d) = self.daemons.remove(region) {
            self.world.kill(d.pid);
            self.clients.routers.down_pid(region, d.pid);
            d.refresh.abort();
            d.task.abort();
            d.cost.abort();
            self.world
                .trace(format!("{region}: daemon killed (pid {})", d.pid));
        }
    }

    fn operator(&mut self, from: &str, cmd: &OpCmd) {
        if self.scenario.consistency == Consistency::Mrec {
            // The documented MREC rule: one request at a time, each only
            // after the previous one has replicated to every region.
            let steady = self.store.records().iter().all(|(_, r)| {
                r.as_ref()
                    .is_some_and(|r| r.phase == failoverd::core::control::Phase::Steady)
            });
            if !self.store.converged() || !steady || *self.operator.lock().unwrap() > 0 {
                self.world.trace(format!(
                    "operator: {cmd:?} not sent (MREC: replicas not converged and steady)"
                ));
                return;
            }
        }
        let op = |reason: &str| ("sim: ".to_string() + reason, "sim".to_string());
        let req = match cmd.clone() {
            OpCmd::Failover {
                to,
                force,
                ungraceful,
            } => {
                let (reason, operator) = op("failover");
                Request::Failover {
                    to,
                    reason,
                    ungraceful,
                    force,
                    operator,
                }
            }
            OpCmd::Failback { force } => {
                let (reason, operator) = op("failback");
                Request::Failback {
                    reason,
                    force,
                    operator,
                }
            }
            OpCmd::Pause => {
                let (reason, operator) = op("pause");
                Request::Pause { reason, operator }
            }
            OpCmd::Resume => {
                let (reason, operator) = op("resume");
                Request::Resume { reason, operator }
            }
            OpCmd::Approve { stale } | OpCmd::Reject { stale } => {
                // The operator reads the record (`failoverd status`) and
                // names the open proposal: its epoch, id and target.
                let replica = if self.scenario.consistency == Consistency::Mrec {
                    from
                } else {
                    REGIONS[0]
                };
                let open = self
                    .store
                    .record(replica)
                    .and_then(|r| r.proposal)
                    .filter(|p| p.state.is_live());
                let named = if stale {
                    // One read before that is not the open one; else an id
                    // nobody proposed, with the open one's epoch and target.
                    let open_id = open.as_ref().map(|p| p.id.clone());
                    self.proposals_read
                        .iter()
                        .rev()
                        .find(|p| Some(&p.id) != open_id.as_ref())
                        .cloned()
                        .or_else(|| {
                            open.clone().map(|mut p| {
                                p.id = "p-never-proposed".into();
                                p
                            })
                        })
                } else {
                    open.clone()
                };
                if let Some(p) = &open
                    && !self.proposals_read.iter().any(|q| q.id == p.id)
                {
                    self.proposals_read.push(p.clone());
                }
                let Some(p) = named else {
                    self.world
                        .trace(format!("operator: {cmd:?} not sent (no proposal to name)"));
                    return;
                };
                let approve = matches!(cmd, OpCmd::Approve { .. });
                if approve && !stale {
                    self.approved_ids.lock().unwrap().insert(p.id.clone());
                }
                let (reason, operator) = op(if approve { "approve" } else { "reject" });
                let (epoch, proposal, to) = (Some(p.epoch), Some(p.id.clone()), Some(p.target));
                if approve {
                    Request::Approve {
                        epoch,
                        proposal,
                        to,
                        reason,
                        operator,
                    }
                } else {
                    Request::Reject {
                        epoch,
                        proposal,
                        to,
                        reason,
                        operator,
                    }
                }
            }
        };
        let pid = self.world.spawn_pid();
        let n = self.incarnations.entry("operator".into()).or_insert(0);
        *n += 1;
        let inc = 0x100 + *n;
        let ports = self.ports(from, Caller::Operator { pid }, inc);
        let cfg = self.configs[from].clone();
        let world = self.world.clone();
        let running = self.operator.clone();
        *running.lock().unwrap() += 1;
        world.trace(format!("operator (via {from}): {cmd:?}"));
        tokio::spawn(async move {
            let code = failoverd::cli::ops::run_request(&cfg, &ports, req, true).await;
            world.trace(format!("operator: exit {code}"));
            *running.lock().unwrap() -= 1;
        });
    }

    fn check_ids(&self, region: &str) -> Vec<String> {
        self.checks.get(region).cloned().unwrap_or_default()
    }

    fn apply(&mut self, e: &Event) {
        self.facts += 1;
        if !matches!(e, Event::Start(_) | Event::Operator { .. }) {
            self.world.trace(format!("event: {e:?}"));
        }
        if let Some(k) = fault_key(e) {
            if is_end(e) {
                self.faults.remove(&k);
            } else {
                self.faults.insert(k, e.clone());
            }
        }
        match e {
            Event::Start(r) | Event::Restart(r) => self.start(r),
            Event::Crash(r) => self.crash(r),
            Event::Link { region, svc, link } => self.world.set_link(region, *svc, *link),
            Event::Isolate { replica, on } => self.store.isolate(replica, *on),
            Event::SfnApiDown { region, on } => self.sfn.set_down(region, *on),
            Event::SfnStall { region, on } => self.sfn.set_stalled(region, *on),
            Event::RecordLost { restore } => {
                let lost = if *restore {
                    let back = self.rng.below(3) as usize;
                    self.store.restore_record(back).map(|(newest, _)| newest)
                } else {
                    self.store.lose_record()
                };
                let holders = self
                    .daemons
                    .iter()
                    .map(|(r, d)| (r.clone(), d))
                    .chain(
                        self.twins
                            .running
                            .iter()
                            .map(|(r, d)| (format!("{r}/b"), d)),
                    )
                    .filter(|(_, d)| d.shared.read(|st| st.record.is_some()))
                    .map(|(r, _)| r)
                    .collect();
                self.lost = lost.map(|l| (l, holders));
                self.lost_at_ms = Some(self.world.elapsed_ms());
            }
            Event::Reload { region, tables } => self.reload(region, *tables),
            Event::Drift { region, kind } => {
                match kind {
                    Some(k) => self.drifted.insert(region.clone(), *k),
                    None => self.drifted.remove(region),
                };
                self.rewrite(region);
            }
            Event::NewMachine { region } => {
                self.v2.insert(region.clone());
                self.rewrite(region);
            }
            Event::ClockStep { region, ms } => {
                let skew = self.world.skew(region);
                self.world.set_skew(region, skew + ms);
            }
            Event::Route53Outage(on) => self.r53.set_outage(*on),
            Event::Throttle { svc, p } => self.world.set_throttle(*svc, *p),
            Event::Lossy { svc, p } => self.world.set_lossy(*svc, *p),
            Event::Lag { lo, hi } => self.store.set_lag(*lo, *hi),
            Event::Serving { region, s } => self.world.set_serving(region, *s),
            Event::ProbeCut {
                observer,
                target,
                on,
            } => self.world.set_probe_cut(observer, target, *on),
            Event::Inverted { region, on } => {
                for id in self.check_ids(region) {
                    self.r53.set_inverted(&id, *on);
                }
            }
            Event::Disabled { region, on } => {
                for id in self.check_ids(region) {
                    self.r53.set_disabled(&id, *on);
                }
            }
            Event::Model { region, b } => self.sm.set_behaviour(region, b.clone()),
            Event::Endpoint { region, status } => {
                let cfg = self.configs[region].clone();
                if let Some(ep) = cfg.local().sagemaker.provisioned.clone() {
                    self.sm.set_status(region, &ep, status.clone());
                }
            }
            Event::Operator { from, cmd } => self.operator(from, cmd),
            Event::HealAll => self.heal(),
        }
    }

    fn heal(&mut self) {
        self.world.heal_network();
        // Every file as the fleet agrees: no drift, and a rollout that
        // began completed.
        let rollout = !self.v2.is_empty();
        let drifted = !self.drifted.is_empty();
        self.drifted.clear();
        if rollout || drifted {
            for &r in self.scenario.regions() {
                if rollout {
                    self.v2.insert(r.to_string());
                }
                self.rewrite(r);
            }
        }
        // The witness of a two-region fleet (MRSC) heals too.
        self.store.isolate(REGIONS[2], false);
        for &r in self.scenario.regions() {
            self.world.set_serving(r, Serving::Up);
            self.store.isolate(r, false);
            self.sfn.set_down(r, false);
            self.sfn.set_stalled(r, false);
            for id in self.check_ids(r) {
                self.r53.set_inverted(&id, false);
                self.r53.set_disabled(&id, false);
            }
            self.sm.set_behaviour(r, Default::default());
            let cfg = self.configs[r].clone();
            for ep in cfg.local().sagemaker.all() {
                self.sm.create(r, ep);
            }
            self.start(r);
            self.start_twin(r);
        }
        self.r53.set_outage(false);
        self.store.set_lag(50, 900);
        for svc in Svc::ALL {
            self.world.set_throttle(svc, 0.0);
        }
        self.faults.clear();
    }

    async fn run(mut self) -> Report {
        self.world
            .trace(format!("scenario: {}", self.scenario).trim_end());
        self.world.trace(format!("bounds: {:?}", self.bounds));
        let requests = super::clients::generate(
            self.scenario.seed,
            self.scenario.fault_end_ms,
            self.scenario.regions().len(),
        );
        self.world.trace(format!(
            "clients: {} requests until {} s",
            requests.len(),
            self.scenario.fault_end_ms / 1000
        ));
        let clients = tokio::spawn(self.clients.clone().drive(requests));
        let events = self.scenario.events.clone();
        let mut next = 0;
        let step = 100u64;
        let end = self.scenario.fault_end_ms + self.bounds.quiet;
        let mut t = 0u64;
        loop {
            tokio::time::sleep_until(self.world.at(t)).await;
            while next < events.len() && events[next].at_ms <= t {
                let e = events[next].event.clone();
                if let Event::Start(r) = &e {
                    // The second daemon starts with the first.
                    let r = r.clone();
                    self.apply(&e);
                    self.start_twin(&r);
                } else {
                    self.apply(&e);
                }
                next += 1;
            }
            self.twin_events(t);
            let mut monitor = std::mem::take(&mut self.monitor);
            monitor.step(&self, t);
            self.one_duty_holder(&mut monitor);
            self.check_requests(&mut monitor, t);
            let settled = monitor.settled_for(&self, t);
            self.monitor = monitor;
            if !self.monitor.violations.is_empty() {
                break;
            }
            // Settled is judged at whole seconds only (`settled_for`): end
            // on one, or an operator's claim in the last second goes unseen
            // (seed 26542 ended 27 ms after a forced claim).
            if t > self.scenario.fault_end_ms
                && t.is_multiple_of(1000)
                && settled >= self.bounds.lease + 2 * self.bounds.round
            {
                let mut monitor = std::mem::take(&mut self.monitor);
                self.settled_twins(&mut monitor);
                self.monitor = monitor;
                self.drain_requests(&mut t, step).await;
                break;
            }
            if t >= end {
                let mut monitor = std::mem::take(&mut self.monitor);
                monitor.unsettled(&self, t);
                self.monitor = monitor;
                break;
            }
            t += step;
        }
        clients.abort();
        let violations = self.monitor.violations.clone();
        for v in &violations {
            self.world.trace(format!("VIOLATION: {v}"));
        }
        self.world.trace(format!("end after {} s", t / 1000));
        let switches = self.monitor.switches;
        let requests = self.clients.ledger().figures();
        self.world.trace(format!(
            "requests: {requests:?}; invocations the models answered, by region: {:?}",
            self.sm.answered()
        ));
        for r in REGIONS {
            self.crash(r);
            self.crash_twin(r);
        }
        Report {
            seed: self.scenario.seed,
            trace: self.world.trace_text(),
            violations,
            sim_ms: t,
            switches,
            requests,
        }
    }

    /// Fold the world into every request in flight; judge those past
    /// their deadline.
    fn check_requests(&self, monitor: &mut Monitor, t: u64) {
        let violations = {
            let mut ledger = self.clients.ledger();
            if ledger.has_open() {
                ledger.observe(&self.clients.conditions());
            }
            ledger.judge(t, &self.budget);
            ledger.take_violations()
        };
        for v in violations {
            monitor.violate(self, format!("client {v}"));
        }
    }

    /// After the fleet has settled: go on, checking every invariant, until
    /// every request sent is judged (the last is sent when the faults end,
    /// so this is at most its deadline and the grace).
    async fn drain_requests(&mut self, t: &mut u64, step: u64) {
        while !self.clients.ledger().all_judged() && self.monitor.violations.is_empty() {
            *t += step;
            tokio::time::sleep_until(self.world.at(*t)).await;
            let mut monitor = std::mem::take(&mut self.monitor);
            monitor.step(self, *t);
            self.one_duty_holder(&mut monitor);
            self.check_requests(&mut monitor, *t);
            self.monitor = monitor;
        }
    }

    /// The second daemons' crashes and restarts due by `t` (before the
    /// faults end; the heal restarts every daemon).
    fn twin_events(&mut self, t: u64) {
        while let Some((at, region, up)) = self.twins.events.get(self.twins.next).cloned() {
            if at > t {
                break;
            }
            self.twins.next += 1;
            if at >= self.scenario.fault_end_ms {
                continue;
            }
            self.facts += 1;
            if up {
                self.start_twin(&region);
            } else {
                self.crash_twin(&region);
            }
        }
    }

    /// At most one daemon of a region holds its active duties, at every
    /// step (`core::duty`; issue 24 item 2).
    fn one_duty_holder(&self, monitor: &mut Monitor) {
        for r in REGIONS {
            let mono = self.world.mono(r);
            let holders: Vec<&str> = [("a", self.daemons.get(r)), ("b", self.twins.running.get(r))]
                .into_iter()
                .filter(|(_, d)| d.is_some_and(|d| d.shared.holds_duties(mono)))
                .map(|(n, _)| n)
                .collect();
            if holders.len() > 1 {
                monitor.violate(
                    self,
                    format!("two daemons of {r} hold its active duties: {holders:?}"),
                );
            }
        }
    }

    /// Once settled: the active region's running daemons, one of which
    /// holds its duties; and every daemon's cost task counts each
    /// two-daemon region's routers in full: at least what the routers
    /// themselves counted up to a few rounds ago (traffic went through one
    /// of them at a time, which is the case a region's single vote item
    /// lost; issue 24 item 4).
    fn settled_twins(&self, monitor: &mut Monitor) {
        use failoverd::ports::traffic::InvocationCounts;
        let named = self
            .store
            .records()
            .first()
            .and_then(|(_, r)| r.clone())
            .map(|r| r.active);
        if let Some(active) = named {
            let mono = self.world.mono(&active);
            let held = [self.daemons.get(&active), self.twins.running.get(&active)]
                .into_iter()
                .flatten()
                .filter(|d| d.shared.holds_duties(mono))
                .count();
            if held != 1 {
                monitor.violate(
                    self,
                    format!("settled, but {held} of {active}'s daemons hold its active duties"),
                );
            }
        }
        let lag = 3 * self.bounds.round;
        for r in &self.twins.regions {
            let (Some(a), Some(b)) = (self.daemons.get(r), self.twins.running.get(r)) else {
                continue;
            };
            for (er, eps) in &self.clients.endpoints {
                for ep in eps {
                    let sent: u64 = [a, b]
                        .iter()
                        .filter_map(|d| {
                            let then = failoverd::metrics::counts::Now {
                                wall_ms: self.world.wall_ms(r).saturating_sub(lag),
                                mono: failoverd::core::mono::Mono(
                                    self.world.mono(r).0.saturating_sub(lag),
                                ),
                            };
                            // Two minutes short of the hour: counts round
                            // outward to whole minutes.
                            d.shared
                                .traffic
                                .counted(er, ep, 3_600_000 - lag - 120_000, then)
                        })
                        .map(|c| c.invocations)
                        .sum();
                    if sent == 0 {
                        continue;
                    }
                    let readers = self.daemons.iter().chain(self.twins.running.iter());
                    for (x, d) in readers {
                        let counts = failoverd::state::FleetCounts::new(
                            d.config.subscribe(),
                            d.shared.clone(),
                            Arc::new(SimClock {
                                world: self.world.clone(),
                                region: x.clone(),
                            }),
                        );
                        let now = self.world.wall_ms(x);
                        let got = counts
                            .invocations(er, ep, 3_600_000, now)
                            .map(|c| c.invocations);
                        if got.is_none_or(|g| g < sent) {
                            monitor.violate(
                                self,
                                format!(
                                    "{x}'s cost task counts {got:?} invocations of {er}/{ep} in the last hour; {r}'s two routers counted {sent} up to {lag} ms ago"
                                ),
                            );
                        }
                    }
                }
            }
        }
    }

    /// Whether every daemon runs.
    pub fn all_running(&self) -> bool {
        self.scenario
            .regions()
            .iter()
            .all(|r| self.daemons.contains_key(*r))
    }

    pub fn checks_of(&self, region: &str) -> Vec<String> {
        self.check_ids(region)
    }
}
