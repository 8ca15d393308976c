//! The daemon's lifecycle: bind, announce, serve, reload, drain.
//!
//! Order matters and is the contract with systemd: the configuration is
//! validated before anything is bound (an invalid file exits 78 without
//! touching a port); `READY=1` is sent only once the listeners are bound and
//! the clients built; `STOPPING=1` goes out the moment a stop signal
//! arrives, and in-flight work gets `timings.shutdown_grace` to finish.
//! SIGHUP reloads the configuration; an invalid new file is logged in full
//! and the old configuration stays in force.
//!
//! Ports: with `127.0.0.1:0` in `listen.*` the OS chooses each port, and
//! [`BoundAddrs`] is how the chosen ones get out: the startup line names
//! them, and `failoverd run --bound-file PATH` writes them as JSON before
//! `READY=1` (temp file + rename, so a reader never sees half a file). This
//! is the only race-free way for a supervisor or a test to learn a port:
//! picking a "free" port by binding, closing and handing the number on lets
//! the OS hand the same port out again before the daemon binds it (the lab
//! once started a daemon whose admin and router ports were the same).
//!
//! Threads: the control side (the reconcile loop with its token workers and
//! executor, and the cost task) runs on a runtime of its own, on its own OS
//! thread ([`spawn_control`]); the router and the admin listener run on the
//! main multi-threaded runtime. Tokio schedules tasks cooperatively, so on
//! one runtime a burst of router requests delays a lease renewal, and a
//! control round (SDK calls, whose crates are built at a low opt-level)
//! holds a worker that requests queue behind. Two runtimes put the OS
//! scheduler, which preempts, between them. The control thread also runs
//! [`CONTROL_NICE`] steps below the router's CPU priority: a request's
//! budget is a millisecond, a control round's is seconds, so when the two
//! want the same core the request goes first. Nice is a weight, not a
//! ceiling: an idle core still runs a control round at full speed, and a
//! router that saturates every core still leaves the control thread about
//! a quarter of one.

pub mod notify;
pub mod probe;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::admin::{self, AdminState};
use crate::aws::AwsClients;
use crate::config::{self, Config, EnvSource};
use crate::control::{cost, reconcile};
use crate::state::{Readiness, Shared};
use notify::Notifier;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot bind the {what} listener on {addr}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the address the {what} listener bound")]
    LocalAddr {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the bound addresses to {}", path.display())]
    BoundFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the probe client (TLS roots)")]
    Probe(#[source] std::io::Error),
    #[error("cannot install the {0} signal handler")]
    Signal(&'static str, #[source] std::io::Error),
    #[error("cannot start the control thread")]
    ControlThread(#[source] std::io::Error),
    #[error("{key}: the TLS files do not load")]
    Tls {
        key: String,
        #[source]
        source: crate::config::tls::TlsFileError,
    },
}

/// How many nice steps the control thread runs below the router's threads
/// (module doc, "Threads").
pub const CONTROL_NICE: i32 = 5;

/// Lower the calling thread's CPU priority by `steps` nice steps (at most to
/// 19). On Linux a thread id names one thread, so the router's threads keep
/// theirs.
fn lower_this_threads_priority(steps: i32) -> std::io::Result<()> {
    // SAFETY: gettid, getpriority and setpriority take and return plain
    // integers and only touch this thread's scheduling priority; errno is
    // thread-local.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if now == -1 && *libc::__errno_location() != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let target = (now + steps).min(19);
        if libc::setpriority(libc::PRIO_PROCESS, tid, target) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The control side's thread (module doc, "Threads").
pub struct ControlSide {
    done: tokio::sync::oneshot::Receiver<()>,
    release: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ControlSide {
    /// Wait until the control side's work has finished, then let its
    /// runtime go. Call it once nothing else can still be using connections
    /// that runtime drives: the SDK clients are shared, so a pooled
    /// connection the control side opened may carry a draining router
    /// request.
    pub async fn finish(mut self) {
        let _ = (&mut self.done).await;
        drop(self.release.take());
    }
}

/// Run `work` (the control side) on a current-thread runtime on an OS
/// thread of its own; the runtime stays up after `work` ends until
/// [`ControlSide::finish`].
pub fn spawn_control(
    work: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<ControlSide, DaemonError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::ControlThread)?;
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let (release, release_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("failoverd-control".into())
        .spawn(move || {
            if let Err(e) = lower_this_threads_priority(CONTROL_NICE) {
                warn!(error = %e, "cannot lower the control thread's CPU priority; it competes with the router as an equal");
            }
            rt.block_on(async move {
                work.await;
                let _ = done_tx.send(());
                let _ = release_rx.await;
            });
        })
        .map_err(DaemonError::ControlThread)?;
    Ok(ControlSide {
        done,
        release: Some(release),
    })
}

/// Events that drive the daemon from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Reload the configuration from its files (SIGHUP).
    Reload,
    /// Stop, draining in-flight work (SIGTERM, SIGINT).
    Stop,
}

/// Everything the daemon needs, assembled by the caller.
pub struct Daemon {
    pub config: Config,
    pub config_path: PathBuf,
    pub env: EnvSource,
    pub clients: Arc<AwsClients>,
    pub notifier: Notifier,
}

/// Bound listeners, so tests and callers can learn the real ports.
pub struct Listeners {
    pub admin: TcpListener,
    /// The inference router.
    pub router: TcpListener,
}

impl Listeners {
    /// Bind every listener the configuration names.
    pub async fn bind(config: &Config) -> Result<Self, DaemonError> {
        let admin = TcpListener::bind(config.listen.admin)
            .await
            .map_err(|source| DaemonError::Bind {
                what: "admin",
                addr: config.listen.admin,
                source,
            })?;
        let router = TcpListener::bind(config.listen.router)
            .await
            .map_err(|source| DaemonError::Bind {
                what: "router",
                addr: config.listen.router,
                source,
            })?;
        Ok(Self { admin, router })
    }

    /// The addresses really bound (port 0 resolved to the OS's choice).
    pub fn addrs(&self) -> Result<BoundAddrs, DaemonError> {
        let local = |what, l: &TcpListener| {
            l.local_addr()
                .map_err(|source| DaemonError::LocalAddr { what, source })
        };
        Ok(BoundAddrs {
            admin: local("admin", &self.admin)?,
            router: local("router", &self.router)?,
            pid: std::process::id(),
        })
    }
}

/// What `failoverd run --bound-file` writes:
/// `{"admin":"127.0.0.1:41234","router":"127.0.0.1:41235","pid":4242}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BoundAddrs {
    /// The admin listener (`/healthz`, `/readyz`, `/status`, `/metrics`).
    pub admin: SocketAddr,
    /// The inference router.
    pub router: SocketAddr,
    /// The daemon that bound them: a reader can tell its own daemon's file
    /// from one an earlier run left behind (the file is not removed on exit).
    pub pid: u32,
}

impl BoundAddrs {
    /// Write as one JSON line to `path`, atomically: a temporary file in the
    /// same folder (so the rename cannot cross file systems), then a rename.
    pub fn write_to(&self, path: &Path) -> Result<(), DaemonError> {
        let fail = |source| DaemonError::BoundFile {
            path: path.to_path_buf(),
            source,
        };
        let name = path.file_name().ok_or_else(|| {
            fail(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the path names no file",
            ))
        })?;
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", self.pid));
        let tmp = path.with_file_name(tmp_name);
        let mut json = serde_json::to_vec(self)
            .map_err(std::io::Error::other)
            .map_err(fail)?;
        json.push(b'\n');
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                fail(e)
            })
    }
}

impl Daemon {
    /// Run until a `Control::Stop` arrives on `control`.
    pub async fn run(
        self,
        listeners: Listeners,
        mut control: tokio::sync::mpsc::Receiver<Control>,
    ) -> Result<(), DaemonError> {
        log_warnings(&self.config);
        let readiness = Readiness::starting();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (config_tx, config_rx) = watch::channel(Arc::new(self.config.clone()));
        let bound = listeners.addrs()?;

        // The control side's counters: every port call (the ports are
        // wrapped once, here) and every published round.
        let meter = Arc::new(crate::metrics::meter::Meter::new(
            &self
                .config
                .regions
                .iter()
                .map(|r| r.name.clone())
                .collect::<Vec<_>>(),
        ));
        let shared = Arc::new(Shared::with_meter(meter.clone()));
        let router = crate::router::Router::new(
            config_rx.clone(),
            router_ports(&self.clients),
            shared.clone(),
        );
        let prober = probe::Prober::new(
            self.config.health.probe_connect_timeout,
            self.config.health.probe_response_timeout,
        )
        .map_err(DaemonError::Probe)?;
        let ports = crate::metrics::metered::wrap(
            crate::aws::ports(&self.config, self.clients.clone(), Arc::new(prober)),
            meter,
        );
        admin::auth::check_token_file(&self.config.listen.admin_token_file);
        let admin_state = AdminState {
            readiness: readiness.clone(),
            region: self.config.region.clone(),
            shared: shared.clone(),
            metrics: Some(router.metrics.clone()),
            clock: ports.clock.clone(),
            ops: Some(admin::Ops::start(
                config_rx.clone(),
                ports.clone(),
                shared.clone(),
                shutdown_rx.clone(),
            )),
        };
        let grace = self.config.timings.shutdown_grace;
        // The router shares the reconcile loop's view (record, health) and
        // drains on shutdown: new requests 503, requests in flight finish
        // within the grace period.
        let router_task = tokio::spawn(crate::router::serve(
            listeners.router,
            router.clone(),
            shutdown_rx.clone(),
            grace,
        ));
        // TLS on the admin listener, kept current on reload like the
        // router's (router::tls); the files were checked as the
        // configuration loaded.
        let admin_tls = crate::router::tls::cell(&self.config, crate::router::tls::admin_files)
            .map_err(|e| DaemonError::Tls {
                key: format!("listen.admin_tls.{}", e.which),
                source: e,
            })?;
        let admin_tls_task = admin_tls.clone().map(|cell| {
            tokio::spawn(crate::router::tls::keep_current(
                cell,
                config_rx.clone(),
                crate::router::tls::admin_files,
                "admin",
                shutdown_rx.clone(),
            ))
        });
        let admin_task = tokio::spawn(crate::http::serve_limited(
            listeners.admin,
            move |req| admin::handle(admin_state.clone(), req),
            shutdown_rx.clone(),
            grace,
            "admin",
            crate::http::ConnLimits {
                tls: admin_tls,
                ..crate::http::ConnLimits::admin()
            },
        ));

        // Cost controls next to failover (control/cost.rs), judged on the
        // fleet's router counts: this router's own, and the peers' from
        // their votes (metrics::counts).
        let cost = cost::CostTask::new(
            config_rx.clone(),
            ports.clone(),
            shared.clone(),
            Arc::new(crate::state::FleetCounts::new(
                config_rx.clone(),
                shared.clone(),
                ports.clock.clone(),
            )),
        );
        // Standby readiness (control/standby.rs): this region against the
        // active, before it is needed.
        let standby = crate::control::standby::StandbyTask::new(
            config_rx.clone(),
            ports.clone(),
            shared.clone(),
        );
        let reconciler =
            reconcile::Reconciler::new(config_rx, ports, shared.clone(), readiness.clone());
        let control_side = {
            let (a, b, c) = (
                shutdown_rx.clone(),
                shutdown_rx.clone(),
                shutdown_rx.clone(),
            );
            spawn_control(async move {
                tokio::join!(reconciler.run(a), cost.run(b), standby.run(c));
            })?
        };

        readiness.set_ready("startup");
        info!(
            version = env!("CARGO_PKG_VERSION"),
            region = %self.config.region,
            admin = %bound.admin,
            router = %bound.router,
            consistency = %self.config.tables.consistency,
            layers = ?self.config.sources,
            "failoverd started"
        );
        if let Err(e) = self.notifier.notify("READY=1") {
            warn!(error = %e, "cannot notify systemd of readiness");
        }
        let watchdog = self.spawn_watchdog(shutdown_rx.clone());

        while let Some(event) = control.recv().await {
            match event {
                Control::Reload => self.reload(&config_tx, &shared),
                Control::Stop => break,
            }
        }

        info!(grace = ?grace, "stopping: draining in-flight work");
        let _ = self.notifier.notify("STOPPING=1");
        readiness.set_unready("shutdown", "draining");
        readiness.set_unready("router", "draining");
        router.begin_drain();
        shutdown_tx.send_replace(true);
        let _ = router_task.await;
        let _ = admin_task.await;
        if let Some(t) = admin_tls_task {
            let _ = t.await;
        }
        if let Some(w) = watchdog {
            let _ = w.await;
        }
        control_side.finish().await;
        info!("stopped");
        Ok(())
    }

    /// SIGHUP: load the files again; a valid configuration replaces the one
    /// in force (what cannot change without a restart is logged and left),
    /// an invalid one is logged in full and the old one stays.
    fn reload(&self, config_tx: &watch::Sender<Arc<Config>>, shared: &Shared) {
        let _ = self.notifier.notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            notify::monotonic_usec()
        ));
        match config::load(&self.config_path, &self.env) {
            Ok(mut new) => {
                let current = config_tx.borrow().clone();
                // Restart-only settings are not applied at all: the new
                // value is kept aside and the one in force stays (before,
                // the log said "next restart" while the planner and the
                // job store read the new tables at once).
                let pending = new.hold_restart_only(&current);
                shared.set_restart_pending(&pending);
                if !pending.is_empty() {
                    warn!(
                        settings = %pending.join(", "),
                        "restart-only settings changed in the file: not applied; they take effect at the next restart"
                    );
                }
                log_warnings(&new);
                if new.region != current.region {
                    warn!(old = %current.region, new = %new.region, "the local region cannot change on reload; restart instead");
                } else {
                    info!(layers = ?new.sources, "configuration reloaded");
                    config_tx.send_replace(Arc::new(new));
                }
            }
            Err(e) => {
                error!(
                    problems = %e.report().replace('\n', "; "),
                    "reload rejected: the new configuration is invalid; keeping the old one"
                );
            }
        }
        let _ = self.notifier.notify("READY=1");
    }

    /// Ping systemd's watchdog at half its interval until shutdown (when
    /// the unit has one).
    fn spawn_watchdog(
        &self,
        mut stop: crate::http::ShutdownRx,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.notifier.watchdog_interval().map(|interval| {
            let n = self.notifier.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval / 2);
                loop {
                    tokio::select! {
                        _ = tick.tick() => { let _ = n.notify("WATCHDOG=1"); }
                        _ = crate::http::shutdown_signalled(&mut stop) => return,
                    }
                }
            })
        })
    }
}

/// Log what `check-config` prints as warnings: constraints between
/// settings that hold until a fault comes (config::validate).
fn log_warnings(cfg: &Config) {
    for w in &cfg.warnings {
        warn!(origin = %w.origin, key = %w.key, "configuration warning: {}", w.message);
    }
    for (key, addr) in cfg.listen.plaintext_exposed() {
        warn!(key, %addr, "configuration warning: plain HTTP on an address that is not loopback; anyone on the path can read and alter requests (set {key}_tls)");
    }
}

/// Forward SIGTERM/SIGINT/SIGHUP into a control channel.
pub fn signal_control() -> Result<tokio::sync::mpsc::Receiver<Control>, DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| DaemonError::Signal("SIGTERM", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| DaemonError::Signal("SIGINT", e))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| DaemonError::Signal("SIGHUP", e))?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                _ = term.recv() => Control::Stop,
                _ = int.recv() => Control::Stop,
                _ = hup.recv() => Control::Reload,
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
/// The router's ports over the AWS adapters and the host's clock: the
/// composition root builds them (as `aws::ports` does the control side's),
/// so the router itself names no adapter.
pub fn router_ports(clients: &Arc<AwsClients>) -> crate::router::Ports {
    let clock: Arc<dyn crate::ports::Clock> = Arc::new(crate::ports::SystemClock);
    let dynamo = Arc::new(crate::aws::jobs::DynamoJobs::new(
        clients.clone(),
        clock.clone(),
    ));
    crate::router::Ports {
        inference: Arc::new(crate::aws::runtime::SageMakerRuntime::new(
            clients.clone(),
            clock.clone(),
        )),
        blobs: Arc::new(crate::aws::s3::S3Blobs::new(clients.clone())),
        jobs: dynamo.clone(),
        routing_table: dynamo,
        clock,
    }
}
