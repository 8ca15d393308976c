//! A whole lab in one test: moto, the model server, provisioning and one
//! daemon per region, all real processes on 127.0.0.1, stopped on drop.
//! Daemons bind 127.0.0.1:0 and report their ports through `--bound-file`;
//! a restarted daemon gets new ports, which [`Daemon`] then holds.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use failoverd::aws::AwsClients;
use failoverd::aws::control_table::ControlTable;
use failoverd::config::{self, Config, EnvSource};

use super::{
    ChildGuard, ModelServer, Moto, http, root, spawn_guarded, unique, wait_bound, wait_for,
};

pub const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

/// One region's daemon.
pub struct Daemon {
    pub region: String,
    /// Admin port of the running daemon (as it reported; 0 before the first start).
    pub admin: u16,
    /// Router port of the running daemon (as it reported).
    pub router: u16,
    pub log: PathBuf,
    /// Where the daemon reports its bound addresses (`--bound-file`).
    pub bound: PathBuf,
    pub child: Option<ChildGuard>,
}

/// A running lab.
pub struct Lab {
    pub moto: Moto,
    pub model_port: u16,
    _model: ModelServer,
    pub dir: PathBuf,
    pub daemons: Vec<Daemon>,
    pub env: Vec<(String, String)>,
    pub clients: Arc<AwsClients>,
    pub config: Config,
    _replicator: Option<ChildGuard>,
}

/// The environment of the lab's processes (provisioning, daemons): test
/// credentials, every AWS endpoint at moto, the runtime at the model server.
pub fn lab_env(moto: &Moto, model_port: u16, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        (
            "FAILOVERD_LOG",
            "info,aws_config=warn,aws_smithy_runtime=warn".to_string(),
        ),
        ("FAILOVERD__ENDPOINTS__DYNAMODB", moto.url()),
        ("FAILOVERD__ENDPOINTS__S3", moto.url()),
        ("FAILOVERD__ENDPOINTS__ROUTE53", moto.url()),
        ("FAILOVERD__ENDPOINTS__SFN", moto.url()),
        ("FAILOVERD__ENDPOINTS__SAGEMAKER", moto.url()),
        ("FAILOVERD__ENDPOINTS__CLOUDWATCH", moto.url()),
        ("FAILOVERD__ENDPOINTS__APPLICATION_AUTOSCALING", moto.url()),
        ("FAILOVERD__ENDPOINTS__SERVICE_QUOTAS", moto.url()),
        ("FAILOVERD__ENDPOINTS__IAM", moto.url()),
        (
            "FAILOVERD__ENDPOINTS__SAGEMAKER_RUNTIME",
            format!("http://127.0.0.1:{model_port}"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, val) in extra {
        v.push((k.to_string(), val.to_string()));
    }
    v
}

impl Lab {
    /// Start everything; `extra` are additional environment settings for
    /// every daemon (e.g. `FAILOVERD__TIMINGS__POLL_INTERVAL`).
    pub fn start(extra: &[(&str, &str)]) -> Self {
        Self::start_with("strong", extra)
    }

    /// Start in `strong` (one shared replica) or `eventual` mode (a replica
    /// per region, copied by the lab's lagged last-writer-wins replicator).
    pub fn start_with(consistency: &str, extra: &[(&str, &str)]) -> Self {
        let moto = Moto::start();
        let dir = std::env::temp_dir().join(unique("failoverd-lab"));
        std::fs::create_dir_all(&dir).unwrap();
        // The model server writes async (batch) results to moto's S3.
        let model = ModelServer::start(Some(&moto.url()));
        let model_port = model.port;
        let env = lab_env(&moto, model_port, extra);
        let out = Command::new(env!("CARGO_BIN_EXE_failoverd-lab"))
            .current_dir(root())
            .args([
                "provision",
                "--config",
                "regions/lab/us-east-1.toml",
                "--consistency",
                consistency,
                "--out",
            ])
            .arg(dir.join("regions"))
            .env_clear()
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "provision: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env_map: EnvSource = env.iter().cloned().collect();
        let config = config::load(&dir.join("regions/us-east-1.toml"), &env_map).unwrap();
        let clients = Arc::new(
            AwsClients::new(super::sdk_config(), config.endpoints.clone())
                .with_timeouts(failoverd::aws::clients::provisioning_timeouts()),
        );
        let replicator = (consistency == "eventual").then(|| {
            spawn_guarded(
                Command::new(env!("CARGO_BIN_EXE_failoverd-lab"))
                    .args(["replicate", "--lag", "300ms", "--config"])
                    .arg(dir.join("regions/us-east-1.toml"))
                    .env_clear()
                    .envs(env.iter().cloned())
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(dir.join("replicate.log")).unwrap()),
            )
        });
        let mut lab = Self {
            _replicator: replicator,
            moto,
            model_port,
            _model: model,
            dir,
            daemons: Vec::new(),
            env,
            clients,
            config,
        };
        for r in REGIONS {
            let d = Daemon {
                region: r.into(),
                admin: 0,
                router: 0,
                log: lab.dir.join(format!("{r}.log")),
                bound: lab.dir.join(format!("{r}.bound.json")),
                child: None,
            };
            lab.daemons.push(d);
        }
        // All three start at once; then each one's report is read.
        for r in REGIONS {
            lab.spawn_daemon(r, &[]);
        }
        for r in REGIONS {
            lab.await_bound(r);
        }
        lab
    }

    fn daemon_mut(&mut self, region: &str) -> &mut Daemon {
        self.daemons
            .iter_mut()
            .find(|d| d.region == region)
            .expect("a lab region")
    }

    pub fn daemon(&self, region: &str) -> &Daemon {
        self.daemons
            .iter()
            .find(|d| d.region == region)
            .expect("a lab region")
    }

    /// (Re)start one region's daemon; its log is appended to.
    pub fn start_daemon(&mut self, region: &str) {
        self.start_daemon_with(region, &[]);
    }

    /// (Re)start one region's daemon with extra environment on top of the
    /// lab's; returns once it has reported its (new) ports.
    pub fn start_daemon_with(&mut self, region: &str, extra: &[(String, String)]) {
        self.spawn_daemon(region, extra);
        self.await_bound(region);
    }

    /// Start a daemon on 127.0.0.1:0 without waiting for its report.
    fn spawn_daemon(&mut self, region: &str, extra: &[(String, String)]) {
        let dir = self.dir.clone();
        let mut env = self.env.clone();
        env.extend(extra.iter().cloned());
        let d = self.daemon_mut(region);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&d.log)
            .unwrap();
        // A report left by the previous run of this region must not be read
        // as this one's (wait_bound also checks the PID).
        let _ = std::fs::remove_file(&d.bound);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_failoverd"));
        cmd.args(["run", "--log-format", "json", "--bound-file"])
            .arg(&d.bound)
            .arg("--config")
            .arg(dir.join(format!("regions/{region}.toml")))
            .current_dir(&dir)
            .env_clear()
            .envs(env)
            .env("FAILOVERD__LISTEN__ADMIN", "127.0.0.1:0")
            .env("FAILOVERD__LISTEN__ROUTER", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        d.child = Some(spawn_guarded(&mut cmd));
    }

    /// Wait for a started daemon's report and take its ports.
    fn await_bound(&mut self, region: &str) {
        let d = self.daemon_mut(region);
        let child = d.child.as_mut().expect("a started daemon");
        let b = wait_bound(child, &d.bound, &d.log, Duration::from_secs(60));
        d.admin = b.admin.port();
        d.router = b.router.port();
    }

    /// Send `sig` to one region's running daemon (SIGSTOP to freeze it,
    /// SIGCONT to let it go on).
    pub fn signal(&self, region: &str, sig: i32) {
        let pid = self.daemon(region).child.as_ref().expect("running").0.id();
        // SAFETY: kill(2) on a child process we own; no memory is involved.
        let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    /// SIGKILL one daemon (no drain, no goodbye).
    pub fn kill_daemon(&mut self, region: &str) {
        let d = self.daemon_mut(region);
        if let Some(mut c) = d.child.take() {
            let _ = c.0.kill();
            let _ = c.0.wait();
        }
        // Its ports are free for anyone now: port 0 refuses every connection.
        d.admin = 0;
        d.router = 0;
    }

    /// GET a daemon's admin path.
    pub fn admin(&self, region: &str, path: &str) -> Option<(u16, String)> {
        http(
            "GET",
            &format!("127.0.0.1:{}", self.daemon(region).admin),
            path,
            "",
        )
        .ok()
    }

    /// Poll a daemon's admin `path` until `ok(status, body)`; the answer.
    pub fn wait_admin(
        &self,
        region: &str,
        path: &str,
        what: &str,
        cap: Duration,
        ok: impl Fn(u16, &str) -> bool,
    ) -> (u16, String) {
        wait_for(what, cap, || {
            self.admin(region, path).filter(|(s, b)| ok(*s, b))
        })
    }

    /// Wait until every daemon is ready (has a quorum).
    pub fn wait_ready(&self, cap: Duration) {
        for r in REGIONS {
            self.wait_admin(r, "/readyz", &format!("{r} /readyz"), cap, |s, _| s == 200);
        }
    }

    /// The control table as us-east-1's daemon uses it.
    pub fn table(&self) -> ControlTable {
        self.table_in("us-east-1")
    }

    /// The replica `region`'s daemon uses.
    pub fn table_in(&self, region: &str) -> ControlTable {
        let replica = self.config.control_region_for(region).to_string();
        ControlTable::new(
            self.clients.dynamodb(&replica),
            &self.config.tables.control,
            replica,
        )
    }

    /// A runtime for async checks from a sync test.
    pub fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// The lab's health-check id for a region.
    pub fn health_check(&self, region: &str) -> String {
        self.config.region(region).unwrap().health_check_ids[0].clone()
    }

    /// Invert (or restore) a region's Route 53 health check.
    pub fn invert(&self, region: &str, inverted: bool) {
        let id = self.health_check(region);
        Self::rt()
            .block_on(failoverd::aws::route53::set_inverted(
                &self.clients.route53(),
                &id,
                inverted,
            ))
            .unwrap();
    }

    /// Run the operator CLI against the lab.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_failoverd"))
            .args(args)
            .arg("--config")
            .arg(self.dir.join("regions/us-west-2.toml"))
            .env_clear()
            .envs(self.env.clone())
            .env("USER", "lab-test")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Run the operator CLI with the config of `region`'s daemon (its
    /// replica, in eventual mode).
    pub fn cli_in(&self, region: &str, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_failoverd"))
            .args(args)
            .arg("--config")
            .arg(self.dir.join(format!("regions/{region}.toml")))
            .env_clear()
            .envs(self.env.clone())
            .env("USER", "lab-test")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Set a rule on the lab's model server (`PUT /_lab/behaviour`, see
    /// chaos/lab/model_server.rs).
    pub fn behave(&self, rule: serde_json::Value) {
        let (status, body) = http(
            "PUT",
            &format!("127.0.0.1:{}", self.model_port),
            "/_lab/behaviour",
            &rule.to_string(),
        )
        .expect("the model server answers");
        assert!(
            (200..300).contains(&status),
            "behaviour {rule}: {status} {body}"
        );
    }

    /// Stop the eventual-mode replicator (replication is cut from now on).
    pub fn stop_replicator(&mut self) {
        self._replicator = None;
    }

    /// A daemon's log so far.
    pub fn log(&self, region: &str) -> String {
        std::fs::read_to_string(&self.daemon(region).log).unwrap_or_default()
    }
}

/// The control record as us-east-1's daemon reads it (`None` if missing or
/// unreadable).
pub fn record(lab: &Lab) -> Option<failoverd::core::control::ControlRecord> {
    use failoverd::ports::ControlStore;
    Lab::rt().block_on(lab.table().read_record()).ok().flatten()
}

/// Poll the control record until `f` holds; the record.
pub fn wait_record(
    lab: &Lab,
    what: &str,
    cap: Duration,
    f: impl Fn(&failoverd::core::control::ControlRecord) -> bool,
) -> failoverd::core::control::ControlRecord {
    super::wait_for(what, cap, || record(lab).filter(|r| f(r)))
}

/// The journal's newest 1,000 live entries.
pub fn events(lab: &Lab) -> Vec<failoverd::ports::store::Event> {
    use failoverd::ports::ControlStore;
    Lab::rt()
        .block_on(async {
            lab.table()
                .events(1000, failoverd::ports::clock::wall_ms())
                .await
                .map(|p| p.items)
        })
        .unwrap()
}
