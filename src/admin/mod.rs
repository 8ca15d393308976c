//! The admin listener: what an on-call engineer, a load balancer and
//! Prometheus ask a daemon.
//!
//! - `/healthz`: the process is alive and serving.
//! - `/readyz`: this daemon is fit to take part (started, not draining, sees
//!   a quorum); 503 with every reason it is not, so an operator sees why at
//!   a glance.
//! - `/active`: 200 only while this daemon may act as the active region (it
//!   holds a current lease; see docs/lease.md) and, of its region's daemons,
//!   holds the region's active duties (`core::duty`: one at a time), 503
//!   otherwise: a fence for
//!   active-only work outside the daemon, and a target for a Route 53 health
//!   check behind DNS failover records.
//! - `/status`: the last round as JSON.
//! - `/`: the status page (`page`), one self-contained HTML document that
//!   works with no internet; `/ui/data` is the JSON it refreshes from.
//! - `/metrics`: the control loop's and the router's series in the
//!   Prometheus text format (`metrics`).
//! - `/traffic`: the per-model traffic `failoverd advise` reads
//!   (`core::advise::TrafficSet`, from `metrics::observed`): every configured
//!   model, requests per whole minute since the router started (up to 7
//!   days), payload sizes and cold starts. When no router runs here it says
//!   `collected: false` rather than pretending there was no traffic.
//! - `POST /v1/pause`, `POST /v1/resume`: the only mutations, behind a bearer
//!   token read from `listen.admin_token_file` (`auth`). Without a token
//!   file the listener stays read-only.
//!
//! Cut by job: `page` (HTML and its data), `metrics`, `auth` (token and
//! mutations), `journal` (a bounded, cached read of the journal and tokens),
//! `timeline` (failovers and their figures from the journal, and their SVG),
//! `traffic` (the router's series regrouped for the page).

pub mod auth;
pub mod journal;
pub mod metrics;
pub mod page;
pub mod timeline;
pub mod traffic;

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use tokio::sync::watch;

use crate::config::Config;
use crate::core::control::Role;
use crate::http::{self, HttpResponse, ShutdownRx};
use crate::ports::Ports;
use crate::state::{Readiness, Shared};

/// State the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub readiness: Arc<Readiness>,
    pub region: String,
    /// The reconcile loop's last round.
    pub shared: Arc<Shared>,
    /// The inference router's metrics (`GET /metrics`), when it runs.
    pub metrics: Option<Arc<crate::metrics::router::Metrics>>,
    /// Wall time for what the handlers show (ages, `/active`'s lease).
    pub clock: Arc<dyn crate::ports::Clock>,
    /// What the page, the journal-derived metrics and the mutations need
    /// beyond the last round; `None` serves only what the round holds.
    pub ops: Option<Arc<Ops>>,
}

/// The daemon's configuration and ports, for the admin's own reads and
/// its mutations.
pub struct Ops {
    pub config: watch::Receiver<Arc<Config>>,
    pub ports: Ports,
    pub journal: Arc<journal::JournalView>,
}

impl Ops {
    /// Build, and start the task that re-reads the journal whenever the
    /// control record moves (so the last failover's figures are current
    /// without anyone looking at the page), until `shutdown`.
    pub fn start(
        config: watch::Receiver<Arc<Config>>,
        ports: Ports,
        shared: Arc<Shared>,
        shutdown: ShutdownRx,
    ) -> Arc<Self> {
        let journal = Arc::new(journal::JournalView::new(
            ports.store.clone(),
            ports.clock.clone(),
        ));
        tokio::spawn(journal.clone().follow(shared, shutdown));
        Arc::new(Self {
            config,
            ports,
            journal,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }
}

/// Route one admin request.
pub async fn handle(state: AdminState, req: Request<Incoming>) -> HttpResponse {
    let now = state.clock.now_ms();
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => http::text(StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") => {
            let reasons = state.readiness.reasons();
            if reasons.is_empty() {
                http::json(
                    StatusCode::OK,
                    &serde_json::json!({"ready": true, "region": state.region}),
                )
            } else {
                http::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"ready": false, "region": state.region, "reasons": reasons}),
                )
            }
        }
        (&Method::GET | &Method::HEAD, "/active") => {
            let mono = state.clock.mono();
            let (role, epoch, instance) = state.shared.read(|st| {
                (
                    st.role_at(mono),
                    st.record.as_ref().map(|r| r.epoch),
                    st.instance.clone(),
                )
            });
            let duty = state.shared.duty();
            let holds = duty.holds(mono);
            // One owner per region: the region is active by the record,
            // and this daemon holds its duties among the region's daemons.
            let active = role.as_ref().is_some_and(|r| r.is_active()) && holds;
            let body = serde_json::json!({
                "active": active,
                "region": state.region,
                "instance": instance,
                "epoch": epoch,
                "role": role,
                "duties": duty.holder,
                "reason": match &role {
                    None => "no control record read yet",
                    Some(Role::Active) if holds => "named active, lease held, this daemon holds the region's duties",
                    Some(Role::Active) => "named active, lease held, but another of the region's daemons holds its duties (or none yet)",
                    Some(Role::Standby { .. }) => "another region is active",
                    Some(Role::StoodDown { .. }) => "named active, but the record could not be confirmed within the lease",
                    Some(Role::Waiting { .. }) => "named active, waiting out the old active's lease",
                },
            });
            let code = if active {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            http::json(code, &body)
        }
        (&Method::GET, "/status") => {
            let mut snap = state.shared.snapshot();
            snap.role = snap.role_at(state.clock.mono());
            http::json(
                StatusCode::OK,
                &serde_json::to_value(&snap)
                    .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()})),
            )
        }
        (&Method::GET, "/metrics") => {
            let body = metrics::render(&state, now);
            hyper::Response::builder()
                .status(StatusCode::OK)
                .header(
                    hyper::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap_or_else(|e| http::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        }
        (&Method::GET, "/") => page::html(&state, now).await,
        (&Method::GET, "/ui/data") => http::json(StatusCode::OK, &page::data(&state, now).await),
        (&Method::POST, "/v1/pause" | "/v1/resume") => auth::mutation(&state, req).await,
        (&Method::GET, "/traffic") => http::json(
            StatusCode::OK,
            &serde_json::to_value(traffic_set(&state, now))
                .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()})),
        ),
        (_, "/v1/pause" | "/v1/resume") => {
            let mut r = http::text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
            r.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("POST"),
            );
            r
        }
        (
            _,
            "/" | "/ui/data" | "/healthz" | "/readyz" | "/active" | "/status" | "/metrics"
            | "/traffic",
        ) => {
            let mut r = http::text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
            r.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("GET"),
            );
            r
        }
        _ => http::text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// `GET /traffic`: this router's per-model observations, every configured
/// model included (a model nobody called is all zeros: counted, and
/// nothing came); `collected: false` when no router runs here.
fn traffic_set(state: &AdminState, now: u64) -> crate::core::advise::TrafficSet {
    let models = match (&state.metrics, &state.ops) {
        (Some(_), Some(ops)) => {
            let cfg = ops.config();
            state
                .shared
                .models
                .observations(cfg.models.iter().map(|m| m.name.as_str()), now)
        }
        _ => None,
    };
    crate::core::advise::TrafficSet {
        region: state.region.clone(),
        collected: models.is_some(),
        models: models.unwrap_or_default(),
    }
}
