//! The daemon's own data-plane probes: HTTP(S) GET with a 4 s connect and
//! 2 s response budget (configurable), 2xx/3xx healthy, an optional string
//! match on the first 5120 bytes. Route 53 is one signal; these keep working
//! when Route 53's API (in us-east-1) does not.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::core::health::{Signal, probe_result};

/// How much of a body a probe reads (Route 53's string-match window).
pub const BODY_WINDOW: usize = 5120;

/// A reusable HTTP(S) prober.
#[derive(Clone)]
pub struct Prober {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl Prober {
    /// Build with the system's trust roots.
    pub fn new(connect_timeout: Duration, response_timeout: Duration) -> std::io::Result<Self> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.enforce_http(false);
        http.set_nodelay(true);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Self {
            client,
            connect_timeout,
            response_timeout,
        })
    }

    /// Probe one URL.
    pub async fn probe(&self, url: &str, must_contain: Option<&str>) -> (Signal, String) {
        let uri: hyper::Uri = match url.parse() {
            Ok(u) => u,
            Err(e) => return (Signal::Unhealthy, format!("bad url: {e}")),
        };
        let req = match hyper::Request::get(uri)
            .header("user-agent", "failoverd-probe")
            .body(Empty::new())
        {
            Ok(r) => r,
            Err(e) => return (Signal::Unhealthy, format!("bad request: {e}")),
        };
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("request failed: {}", crate::error_chain(&e)))?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            let mut buf: Vec<u8> = Vec::new();
            while buf.len() < BODY_WINDOW {
                match body.frame().await {
                    Some(Ok(f)) => {
                        if let Ok(d) = f.into_data() {
                            buf.extend_from_slice(&d[..d.len().min(BODY_WINDOW - buf.len())]);
                        }
                    }
                    Some(Err(e)) => return Err(format!("body: {e}")),
                    None => break,
                }
            }
            Ok::<_, String>((status, buf))
        };
        // The connector enforces the connect budget; this bounds the whole exchange.
        match tokio::time::timeout(self.connect_timeout + self.response_timeout, fut).await {
            Ok(Ok((status, body))) => (
                probe_result(status, &body, must_contain),
                format!("HTTP {status}"),
            ),
            Ok(Err(e)) => (Signal::Unhealthy, e),
            Err(_) => (
                Signal::Unhealthy,
                format!(
                    "no response within {:?}",
                    self.connect_timeout + self.response_timeout
                ),
            ),
        }
    }
}

#[async_trait::async_trait]
impl crate::ports::Probes for Prober {
    async fn probe(&self, url: &str, must_contain: Option<&str>) -> (Signal, String) {
        Prober::probe(self, url, must_contain).await
    }
}
