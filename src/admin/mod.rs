//! The admin listener: `/healthz` (the process is alive and serving) and
//! `/readyz` (this daemon is fit to take part: started, not draining, and —
//! with later modules — able to see a quorum). `/readyz` answers 503 with
//! every reason it is not ready, so an operator sees why at a glance.
//! `/metrics` renders the inference router's counters in the Prometheus
//! text format.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use crate::http::{self, HttpResponse};

/// Why a daemon is not ready, by component. Ready when empty.
#[derive(Debug, Default)]
pub struct Readiness {
    reasons: Mutex<BTreeMap<&'static str, String>>,
}

impl Readiness {
    /// A new readiness that is unready because it is `starting`.
    pub fn starting() -> Arc<Self> {
        let r = Arc::new(Self::default());
        r.set_unready("startup", "starting");
        r
    }

    /// Mark `component` unready with a reason.
    pub fn set_unready(&self, component: &'static str, reason: impl Into<String>) {
        self.lock().insert(component, reason.into());
    }

    /// Clear `component`'s reason.
    pub fn set_ready(&self, component: &'static str) {
        self.lock().remove(component);
    }

    /// Every current reason.
    pub fn reasons(&self) -> BTreeMap<&'static str, String> {
        self.lock().clone()
    }

    /// Ready when no component objects.
    pub fn is_ready(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, String>> {
        self.reasons.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// State the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub readiness: Arc<Readiness>,
    pub region: String,
    /// The reconcile loop's last round.
    pub shared: Arc<crate::daemon::reconcile::Shared>,
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
        (&Method::GET, "/status") => {
            let snap = state.shared.snapshot();
            http::json(
                StatusCode::OK,
                &serde_json::to_value(&snap)
                    .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()})),
            )
        }
        (&Method::GET, "/metrics") => {
            let body = state
                .metrics
                .as_ref()
                .map(|m| m.render())
                .unwrap_or_default();
            hyper::Response::builder()
                .status(StatusCode::OK)
                .header(
                    hyper::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap_or_else(|e| http::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        }
        (_, "/healthz" | "/readyz" | "/status" | "/metrics") => {
            http::text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
        }
        _ => http::text(StatusCode::NOT_FOUND, "not found\n"),
    }
}
