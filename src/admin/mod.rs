//! The admin listener: `/healthz` (the process is alive and serving) and
//! `/readyz` (this daemon is fit to take part: started, not draining, and —
//! with later modules — able to see a quorum). `/readyz` answers 503 with
//! every reason it is not ready, so an operator sees why at a glance.
//! `/active` answers 200 only while this daemon may act as the active region
//! (it holds a current lease; see docs/lease.md) and 503 otherwise: a fence
//! for active-only work outside the daemon, and a target for a Route 53
//! health check behind DNS failover records. `/metrics` renders the
//! inference router's counters and the role in the Prometheus text format.
//! `/traffic` is the per-model traffic `failoverd advise` reads
//! (`core::advise::TrafficSet`); until the router counts per model it says
//! `collected: false` rather than pretending there was no traffic.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use crate::core::control::Role;
use crate::http::{self, HttpResponse};
use crate::state::{Readiness, Shared};

/// `failoverd_role`: one series per role, 1 for the current one, so
/// `sum(failoverd_role{role="active"}) > 1` across regions alerts on two
/// actives.
fn role_metric(role: Option<&Role>) -> String {
    let current = role.map_or("unknown", Role::kind);
    let mut out = String::from(
        "# HELP failoverd_role This daemon's role (1 = current).\n# TYPE failoverd_role gauge\n",
    );
    for r in Role::KINDS.into_iter().chain(["unknown"]) {
        out.push_str(&format!(
            "failoverd_role{{role=\"{r}\"}} {}\n",
            u8::from(r == current)
        ));
    }
    out
}

/// State the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub readiness: Arc<Readiness>,
    pub region: String,
    /// The reconcile loop's last round.
    pub shared: Arc<Shared>,
    /// The inference router's metrics (`GET /metrics`), when it runs.
    pub metrics: Option<Arc<crate::router::metrics::Metrics>>,
}

/// Route one admin request.
pub async fn handle(state: AdminState, req: Request<Incoming>) -> HttpResponse {
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
            let now = crate::aws::control_table::now_ms();
            let (role, epoch) = state
                .shared
                .read(|st| (st.role_at(now), st.record.as_ref().map(|r| r.epoch)));
            let active = role.as_ref().is_some_and(|r| r.is_active());
            let body = serde_json::json!({
                "active": active,
                "region": state.region,
                "epoch": epoch,
                "role": role,
                "reason": match &role {
                    None => "no control record read yet",
                    Some(Role::Active) => "named active, lease held",
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
            snap.role = snap.role_at(crate::aws::control_table::now_ms());
            http::json(
                StatusCode::OK,
                &serde_json::to_value(&snap)
                    .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()})),
            )
        }
        (&Method::GET, "/metrics") => {
            let mut body = state
                .metrics
                .as_ref()
                .map(|m| m.render())
                .unwrap_or_default();
            let role = state.shared.role_at(crate::aws::control_table::now_ms());
            body.push_str(&role_metric(role.as_ref()));
            hyper::Response::builder()
                .status(StatusCode::OK)
                .header(
                    hyper::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap_or_else(|e| http::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        }
        (&Method::GET, "/traffic") => http::json(
            StatusCode::OK,
            &serde_json::to_value(crate::core::advise::TrafficSet {
                region: state.region.clone(),
                collected: false,
                models: Vec::new(),
            })
            .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()})),
        ),
        (_, "/healthz" | "/readyz" | "/active" | "/status" | "/metrics" | "/traffic") => {
            http::text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
        }
        _ => http::text(StatusCode::NOT_FOUND, "not found\n"),
    }
}
