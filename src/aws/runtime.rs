//! SageMaker runtime adapter: the [`Inference`] port, and the one place
//! where SageMaker runtime errors become [`InvokeError`] kinds.
//!
//! Two clients, for two kinds of traffic:
//!
//! - `InvokeEndpoint` (every real-time request, the router's hot path) goes
//!   through a lean client: HTTP/1.1 on kept-alive connections (TLS by
//!   rustls through hyper-rustls's connector) that the calling task drives
//!   itself ([`wire`]: no connection task, no channel, no wake-up of another
//!   thread per request), SigV4 with the signing key cached per day ([`super::sigv4`]), the
//!   endpoint URL resolved once per region by the SDK's own endpoint
//!   resolver (partitions, FIPS, dual-stack, the configured override) and
//!   credentials from the SDK's default chain, cached until five minutes
//!   before they expire. The wire format is the one the SDK speaks
//!   (restJson1: `POST /endpoints/{name}/invocations`, the body as is, the
//!   `Content-Type`, `Accept` and every `X-Amzn-SageMaker-*` request header
//!   `InvokeEndpoint` documents (custom attributes, target model, variant
//!   and container hostname, inference id, explanations, inference
//!   component, session id); errors as `x-amzn-errortype` plus a JSON
//!   body). We measured the SDK's per-call machinery (interceptors,
//!   runtime plugins, type-erased config bags, a fresh canonical request
//!   and signing key) at more than half of the router's CPU per request:
//!   docs/router-performance.md has the profile.
//! - `InvokeEndpointAsync` (the batch path: a few calls, each after an S3
//!   upload) stays on the SDK client.
//!
//! Both clients have no retries of their own: the router is the only retry
//! loop, so its budget really bounds the extra load, and it bounds every
//! attempt itself.
//!
//! SageMaker answers a missing endpoint with a plain `ValidationError`
//! whose message reads "Endpoint {name} of account {id} not found." That is
//! the only way to tell a regional misconfiguration (try the next region)
//! from a bad request (answer 400), so the message is matched here, once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sagemakerruntime::config::endpoint::{Params, ResolveEndpoint};
use aws_sdk_sagemakerruntime::config::{Credentials, ProvideCredentials};
use aws_sdk_sagemakerruntime::error::DisplayErrorContext;
use aws_sdk_sagemakerruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sagemakerruntime::operation::invoke_endpoint_async::InvokeEndpointAsyncError;
use aws_sdk_sagemakerruntime::operation::invoke_endpoint_with_response_stream::InvokeEndpointWithResponseStreamError;
use aws_sdk_sagemakerruntime::types::ResponseStream;
use aws_sdk_sagemakerruntime::types::error::ResponseStreamError;
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;
use tokio::time::Instant;
use tracing::warn;

use super::AwsClients;
use super::errors::{ErrorKind, classify, kind_of_code};
use super::sigv4::{self, Keys, Signer};
use crate::ports::clock::{Clock, system_time};
use crate::ports::inference::{
    Answer, AsyncAccepted, AsyncInvocation, AsyncLimits, BoxError, Delivery, Inference, Invocation,
    InvokeError, ModelFailure, StreamError, Streamed,
};

/// SigV4 signing name of the SageMaker runtime.
const SIGNING_NAME: &str = "sagemaker";
/// Largest response body read (SageMaker's real-time limit is 6 MB; its
/// response streaming is not used here).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// Credentials are refreshed this long before they expire.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(300);

const H_CUSTOM: &str = "x-amzn-sagemaker-custom-attributes";
const H_TARGET_MODEL: &str = "x-amzn-sagemaker-target-model";
const H_TARGET_VARIANT: &str = "x-amzn-sagemaker-target-variant";
const H_TARGET_HOSTNAME: &str = "x-amzn-sagemaker-target-container-hostname";
const H_INFERENCE_ID: &str = "x-amzn-sagemaker-inference-id";
const H_EXPLANATIONS: &str = "x-amzn-sagemaker-enable-explanations";
const H_COMPONENT: &str = "x-amzn-sagemaker-inference-component";
const H_SESSION: &str = "x-amzn-sagemaker-session-id";
const H_VARIANT: &str = "x-amzn-invoked-production-variant";
const H_NEW_SESSION: &str = "x-amzn-sagemaker-new-session-id";
const H_CLOSED_SESSION: &str = "x-amzn-sagemaker-closed-session-id";
const H_ERRORTYPE: &str = "x-amzn-errortype";
const USER_AGENT_VALUE: &str = concat!("failoverd/", env!("CARGO_PKG_VERSION"), " (router)");
/// A kept-alive connection idle this long is closed, not reused.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most idle connections kept per region (more are closed when returned).
const POOL_MAX_IDLE: usize = 256;

/// Where one region's `InvokeEndpoint` calls go, and its idle connections.
struct RegionEndpoint {
    /// `scheme://authority/`, what the connector connects to.
    origin: Uri,
    /// A path prefix of the endpoint URL, without a trailing slash.
    base_path: String,
    /// The `Host` header (the URL's authority).
    host: String,
    /// Kept-alive connections, most recently used last: one pool per
    /// thread of the router's per-core server (`http::worker`), so a
    /// connection is used on the runtime whose reactor it is registered
    /// with, and one (the first) for every other thread.
    idle: Box<[Mutex<Vec<wire::Conn>>]>,
}

impl RegionEndpoint {
    /// This thread's idle connections.
    fn pool(&self) -> &Mutex<Vec<wire::Conn>> {
        let i = crate::http::worker().map_or(0, |w| w + 1);
        &self.idle[i % self.idle.len()]
    }
}

/// The credentials requests are signed with, cached: a clone of the SDK's
/// `Credentials` copies its property bag, so the strings are kept instead.
struct CachedCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    expiry: Option<std::time::SystemTime>,
}

/// The [`Inference`] port over SageMaker runtime.
pub struct SageMakerRuntime {
    clients: Arc<AwsClients>,
    connector: wire::Connector,
    signer: Signer,
    regions: RwLock<HashMap<String, Arc<RegionEndpoint>>>,
    credentials: RwLock<Option<Arc<CachedCredentials>>>,
    refresh: tokio::sync::Mutex<()>,
    /// Wall time for signing (SigV4 dates) and credential expiry; monotonic
    /// time for the idle connections' age.
    clock: Arc<dyn Clock>,
}

/// A service's error answer (the source of [`InvokeError`]s from the
/// lean client).
#[derive(Debug, thiserror::Error)]
#[error("SageMaker runtime answered {status} {}: {}", .code.as_deref().unwrap_or("(no error type)"), .message.as_deref().unwrap_or("(no message)"))]
pub struct ServiceError {
    pub status: u16,
    pub code: Option<String>,
    pub message: Option<String>,
}

/// Why a call could not be made at all.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot resolve the SageMaker runtime endpoint of {region}")]
    Endpoint {
        region: String,
        #[source]
        source: BoxError,
    },
    #[error("the SageMaker runtime endpoint of {region} is not a usable URL: {url:?}")]
    Url { region: String, url: String },
    #[error("no AWS credentials provider is configured")]
    NoCredentialsProvider,
    #[error("cannot load AWS credentials")]
    Credentials(#[source] BoxError),
    #[error("header {0} is not visible ASCII")]
    Header(&'static str),
}

impl SageMakerRuntime {
    pub fn new(clients: Arc<AwsClients>, clock: Arc<dyn Clock>) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(3)));
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let https = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(b) => b,
            Err(e) => {
                // Without trust roots every https call fails (and says
                // why); http endpoints (an override) still work.
                warn!(error = %e, "no TLS trust roots: SageMaker runtime calls over https will fail");
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("the default provider supports the default versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
            }
        }
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
        Self {
            clients,
            connector: https,
            signer: Signer::default(),
            regions: RwLock::default(),
            credentials: RwLock::default(),
            refresh: tokio::sync::Mutex::new(()),
            clock,
        }
    }

    /// Where `region`'s calls go, resolved once.
    async fn endpoint(&self, region: &str) -> Result<Arc<RegionEndpoint>, SetupError> {
        if let Some(e) = self
            .regions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(region)
        {
            return Ok(e.clone());
        }
        let sdk = self.clients.sdk_config();
        let mut params = Params::builder()
            .region(region.to_string())
            .use_fips(sdk.use_fips().unwrap_or(false))
            .use_dual_stack(sdk.use_dual_stack().unwrap_or(false));
        if let Some(url) = self
            .clients
            .endpoints()
            .sagemaker_runtime
            .clone()
            .or_else(|| sdk.endpoint_url().map(str::to_string))
        {
            params = params.endpoint(url);
        }
        let setup = |source: BoxError| SetupError::Endpoint {
            region: region.to_string(),
            source,
        };
        let params = params.build().map_err(|e| setup(Box::new(e)))?;
        let resolved = aws_sdk_sagemakerruntime::config::endpoint::DefaultResolver::new()
            .resolve_endpoint(&params)
            .await
            .map_err(setup)?;
        let url = resolved.url();
        let bad = || SetupError::Url {
            region: region.to_string(),
            url: url.to_string(),
        };
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let parts = uri.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(bad());
        };
        let base_path = parts
            .path_and_query
            .map(|p| p.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        let host = authority.as_str().to_string();
        if HeaderValue::from_str(&host).is_err() {
            return Err(bad());
        }
        let origin = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|_| bad())?;
        let e = Arc::new(RegionEndpoint {
            origin,
            base_path,
            host,
            idle: (0..=crate::http::cores())
                .map(|_| Mutex::default())
                .collect(),
        });
        self.regions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(region.to_string(), e.clone());
        Ok(e)
    }

    /// Credentials from the SDK's chain, cached until shortly before they
    /// expire (a clone is a reference count); `now_ms` is the wall time.
    async fn credentials(&self, now_ms: u64) -> Result<Arc<CachedCredentials>, SetupError> {
        let fresh = |c: &Arc<CachedCredentials>| {
            c.expiry
                .is_none_or(|e| e > system_time(now_ms) + CREDENTIALS_MARGIN)
        };
        let cached = |s: &Self| {
            s.credentials
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .filter(|c| fresh(c))
                .cloned()
        };
        if let Some(c) = cached(self) {
            return Ok(c);
        }
        // One refresh at a time; the others wait for it.
        let _one = self.refresh.lock().await;
        if let Some(c) = cached(self) {
            return Ok(c);
        }
        let provider = self
            .clients
            .sdk_config()
            .credentials_provider()
            .ok_or(SetupError::NoCredentialsProvider)?;
        let c = provider
            .provide_credentials()
            .await
            .map_err(|e| SetupError::Credentials(Box::new(e)))?;
        let c = Arc::new(CachedCredentials::of(&c));
        *self.credentials.write().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    async fn invoke_endpoint(
        &self,
        region: &str,
        endpoint: &str,
        inv: &Invocation,
    ) -> Result<Answer, InvokeError> {
        let setup = |e: SetupError| InvokeError::Other {
            source: Box::new(e),
        };
        let target = self.endpoint(region).await.map_err(setup)?;
        // One reading of the wall clock: credentials' freshness and the
        // signature's date.
        let now_ms = self.clock.now_ms();
        let creds = self.credentials(now_ms).await.map_err(setup)?;
        let mut path = String::with_capacity(target.base_path.len() + endpoint.len() + 24);
        path.push_str(&target.base_path);
        path.push_str("/endpoints/");
        sigv4::encode_segment_into(&mut path, endpoint);
        path.push_str("/invocations");
        // The headers passed through, as sent and as signed.
        let p = &inv.passed;
        let mut passed = [("", ""); 10];
        let mut n = 0;
        for (name, v) in [
            ("accept", &inv.accept),
            ("content-type", &inv.content_type),
            (H_CUSTOM, &inv.custom_attributes),
            (H_TARGET_MODEL, &inv.target_model),
            (H_TARGET_VARIANT, &p.target_variant),
            (H_TARGET_HOSTNAME, &p.target_container_hostname),
            (H_INFERENCE_ID, &p.inference_id),
            (H_EXPLANATIONS, &p.enable_explanations),
            (H_COMPONENT, &p.inference_component),
            (H_SESSION, &p.session_id),
        ] {
            if let Some(v) = v {
                let text = v.to_str().map_err(|_| setup(SetupError::Header(name)))?;
                passed[n] = (name, text);
                n += 1;
            }
        }
        let passed = &passed[..n];
        let session_token = creds.session_token.as_deref();
        let sig = self.signer.sign(
            &Keys {
                access_key_id: &creds.access_key_id,
                secret_access_key: &creds.secret_access_key,
                session_token,
            },
            &sigv4::Request {
                method: "POST",
                path: &path,
                host: &target.host,
                headers: passed,
                payload: &inv.body,
                region,
                service: SIGNING_NAME,
                time: system_time(now_ms),
            },
        );
        // The request head, written once: what hyper's client sent (the
        // same header names and values), without a header map.
        let mut head = Vec::with_capacity(
            path.len() + target.host.len() + sig.authorization.len() + 256 + passed.len() * 64,
        );
        head.extend_from_slice(b"POST ");
        head.extend_from_slice(path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        let mut header = |name: &str, value: &[u8]| {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        };
        header("host", target.host.as_bytes());
        header("user-agent", USER_AGENT_VALUE.as_bytes());
        for (name, v) in passed {
            header(name, v.as_bytes());
        }
        header("x-amz-date", sig.amz_date.as_bytes());
        header("authorization", sig.authorization.as_bytes());
        if let Some(t) = session_token {
            header("x-amz-security-token", t.as_bytes());
        }
        let mut digits = [0u8; 20];
        header(
            "content-length",
            decimal(inv.body.len() as u64, &mut digits),
        );
        head.extend_from_slice(b"\r\n");

        let resp = self
            .exchange(&target, &head, &inv.body)
            .await
            .map_err(|e| InvokeError::Transport {
                delivery: e.delivery(),
                source: Box::new(e),
            })?;
        if resp.status.is_success() {
            return Ok(Answer {
                body: resp.body,
                content_type: resp.content_type,
                custom_attributes: resp.custom_attributes,
                invoked_variant: resp.invoked_variant,
                new_session_id: resp.new_session_id,
                closed_session_id: resp.closed_session_id,
            });
        }
        let mut headers = HeaderMap::new();
        if let Some(t) = resp.errortype {
            headers.insert(H_ERRORTYPE, t);
        }
        Err(error_answer(resp.status, &headers, &resp.body))
    }

    /// Send `head` and `body` on a kept-alive connection to `target` (a new
    /// one if none is idle) and read the answer; the connection goes back
    /// to the pool if the answer leaves it reusable. A pooled connection
    /// whose first write fails (the server closed it) is replaced by a new
    /// one once: nothing of the request left. A write that fails part way,
    /// or anything after the request was written, is not resent here: the
    /// router decides, from [`wire::Error::delivery`].
    async fn exchange(
        &self,
        target: &RegionEndpoint,
        head: &[u8],
        body: &[u8],
    ) -> Result<wire::Response, wire::Error> {
        // One reading of the monotonic clock: the pool's ages are a
        // minute, a request's time does not matter to them.
        let now = self.clock.monotonic();
        let (mut conn, reused) = match self.checkout(target, now) {
            Some(c) => (c, true),
            None => (self.connect(target, now).await?, false),
        };
        if let Err(e) = conn.send(head, body).await {
            if !reused || e.delivery() != Delivery::NotSent {
                return Err(e);
            }
            conn = self.connect(target, now).await?;
            conn.send(head, body).await?;
        }
        let (resp, reusable) = conn.receive(MAX_RESPONSE).await?;
        if reusable {
            let mut idle = target.pool().lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < POOL_MAX_IDLE {
                conn.idle_since = now;
                idle.push(conn);
            }
        }
        Ok(resp)
    }

    /// The most recently used idle connection to `target` that is still
    /// open; connections idle for longer than the pool's timeout are closed.
    fn checkout(&self, target: &RegionEndpoint, now: Instant) -> Option<wire::Conn> {
        let mut idle = target.pool().lock().unwrap_or_else(|p| p.into_inner());
        // Oldest first: drop the ones idle too long.
        let stale = idle
            .iter()
            .take_while(|c| now.saturating_duration_since(c.idle_since) >= POOL_IDLE_TIMEOUT)
            .count();
        idle.drain(..stale);
        while let Some(mut c) = idle.pop() {
            if c.is_open() {
                return Some(c);
            }
        }
        None
    }

    async fn connect(
        &self,
        target: &RegionEndpoint,
        now: Instant,
    ) -> Result<wire::Conn, wire::Error> {
        wire::Conn::connect(&self.connector, &target.origin, now).await
    }
}

impl CachedCredentials {
    fn of(c: &Credentials) -> Self {
        Self {
            access_key_id: c.access_key_id().to_string(),
            secret_access_key: c.secret_access_key().to_string(),
            session_token: c.session_token().map(str::to_string),
            expiry: c.expiry(),
        }
    }
}

/// The decimal digits of `n`, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[async_trait]
impl Inference for SageMakerRuntime {
    async fn invoke(
        &self,
        region: &str,
        endpoint: &str,
        inv: &Invocation,
    ) -> Result<Answer, InvokeError> {
        self.invoke_endpoint(region, endpoint, inv).await
    }

    /// Through the SDK client (a stream is long-lived: its per-call
    /// machinery is not the cost that matters), retries off.
    async fn invoke_stream(
        &self,
        region: &str,
        endpoint: &str,
        inv: &Invocation,
    ) -> Result<Streamed, InvokeError> {
        use aws_sdk_sagemakerruntime::primitives::Blob;
        let text =
            |v: &Option<HeaderValue>| v.as_ref().and_then(|v| v.to_str().ok()).map(str::to_string);
        let p = &inv.passed;
        let out = self
            .clients
            .sagemaker_runtime(region)
            .invoke_endpoint_with_response_stream()
            .endpoint_name(endpoint)
            .body(Blob::new(inv.body.to_vec()))
            .set_content_type(text(&inv.content_type))
            .set_accept(text(&inv.accept))
            .set_custom_attributes(text(&inv.custom_attributes))
            .set_target_variant(text(&p.target_variant))
            .set_target_container_hostname(text(&p.target_container_hostname))
            .set_inference_id(text(&p.inference_id))
            .set_inference_component_name(text(&p.inference_component))
            .set_session_id(text(&p.session_id))
            .send()
            .await
            .map_err(invoke_stream_error)?;
        let header = |v: Option<&str>| v.and_then(|v| HeaderValue::from_str(v).ok());
        let content_type = header(out.content_type());
        let custom_attributes = header(out.custom_attributes());
        let invoked_variant = header(out.invoked_production_variant());
        let events = futures_util::stream::unfold(Some(out.body), |rx| async move {
            let mut rx = rx?;
            loop {
                match rx.recv().await {
                    Ok(Some(ResponseStream::PayloadPart(part))) => {
                        let bytes = part.bytes.map(Blob::into_inner).unwrap_or_default();
                        return Some((Ok(Bytes::from(bytes)), Some(rx)));
                    }
                    // An event this SDK does not know: not the client's.
                    Ok(Some(_)) => continue,
                    Ok(None) => return None,
                    // An error ends the stream.
                    Err(e) => return Some((Err(stream_error(e)), None)),
                }
            }
        });
        Ok(Streamed {
            content_type,
            custom_attributes,
            invoked_variant,
            events: Box::pin(events),
        })
    }

    async fn invoke_async(
        &self,
        region: &str,
        endpoint: &str,
        inv: &AsyncInvocation<'_>,
    ) -> Result<AsyncAccepted, InvokeError> {
        self.invoke_async_limited(region, endpoint, inv, AsyncLimits::default())
            .await
    }

    async fn invoke_async_limited(
        &self,
        region: &str,
        endpoint: &str,
        inv: &AsyncInvocation<'_>,
        limits: AsyncLimits,
    ) -> Result<AsyncAccepted, InvokeError> {
        let text = |v: Option<&HeaderValue>| v.and_then(|v| v.to_str().ok()).map(str::to_string);
        let out = self
            .clients
            .sagemaker_runtime(region)
            .invoke_endpoint_async()
            .endpoint_name(endpoint)
            .input_location(inv.input_location)
            .inference_id(inv.inference_id)
            .set_content_type(text(inv.content_type))
            .set_accept(text(inv.accept))
            .set_custom_attributes(text(inv.custom_attributes))
            .set_request_ttl_seconds(limits.request_ttl_seconds)
            .set_invocation_timeout_seconds(limits.invocation_timeout_seconds)
            .send()
            .await
            .map_err(invoke_async_error)?;
        Ok(AsyncAccepted {
            output_location: out.output_location,
            failure_location: out.failure_location,
        })
    }
}

/// Whether a `ValidationError`'s message says the endpoint does not exist
/// ("Endpoint {name} of account {id} not found.").
pub fn is_endpoint_not_found(message: &str) -> bool {
    message.starts_with("Endpoint ") && message.contains(" not found")
}

fn validation(message: Option<&str>) -> InvokeError {
    let message = message.unwrap_or("ValidationError").to_string();
    if is_endpoint_not_found(&message) {
        InvokeError::EndpointNotFound { message }
    } else {
        InvokeError::Validation { message }
    }
}

/// The restJson1 error body (members SageMaker's errors may carry).
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(rename = "__type")]
    type_: Option<String>,
    code: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
    #[serde(rename = "OriginalStatusCode")]
    original_status_code: Option<i64>,
    #[serde(rename = "OriginalMessage")]
    original_message: Option<String>,
    #[serde(rename = "LogStreamArn")]
    log_stream_arn: Option<String>,
}

/// An error code as restJson1 sends it, without a namespace
/// (`aws.protocoltests#Foo`) or a trailing `:http://...`.
fn bare_code(raw: &str) -> &str {
    let raw = raw.split(':').next().unwrap_or(raw);
    raw.rsplit('#').next().unwrap_or(raw).trim()
}

/// A non-2xx `InvokeEndpoint` answer as an [`InvokeError`].
pub fn error_answer(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> InvokeError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let code = headers
        .get(H_ERRORTYPE)
        .and_then(|v| v.to_str().ok())
        .or(parsed.type_.as_deref())
        .or(parsed.code.as_deref())
        .map(bare_code)
        .filter(|c| !c.is_empty());
    let message = parsed.message.clone();
    match code {
        Some("ModelNotReadyException") => InvokeError::ModelNotReady { message },
        Some("ModelError") => InvokeError::Model(ModelFailure {
            original_status: parsed
                .original_status_code
                .and_then(|s| u16::try_from(s).ok()),
            original_message: parsed.original_message,
            log_stream_arn: parsed.log_stream_arn,
            message,
        }),
        Some("ValidationError") => validation(message.as_deref()),
        _ => {
            let source = ServiceError {
                status: status.as_u16(),
                code: code.map(str::to_string),
                message,
            };
            by_code(status.is_server_error(), code, source)
        }
    }
}

/// Errors that are neither cold starts, model errors nor validation, by
/// the shared classification of codes ([`super::errors::kind_of_code`]).
fn by_code(
    server_error: bool,
    code: Option<&str>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> InvokeError {
    let kind = code.map_or(ErrorKind::Other, kind_of_code);
    let code_text = code.unwrap_or("unknown").to_string();
    match kind {
        ErrorKind::Throttled => InvokeError::Throttled {
            code: code_text,
            message: Some(source.to_string()),
        },
        ErrorKind::Unavailable => InvokeError::Unavailable {
            code: code_text,
            source: Some(Box::new(source)),
        },
        _ if server_error => InvokeError::Unavailable {
            code: code_text,
            source: Some(Box::new(source)),
        },
        _ => InvokeError::Other {
            source: Box::new(source),
        },
    }
}

/// `InvokeEndpointWithResponseStream`'s errors before the stream started.
/// SageMaker does not model `ModelNotReadyException` for it; the code is
/// matched as for `InvokeEndpoint`.
pub fn invoke_stream_error(e: SdkError<InvokeEndpointWithResponseStreamError>) -> InvokeError {
    use InvokeEndpointWithResponseStreamError as E;
    match e.as_service_error() {
        Some(E::ValidationError(v)) => return validation(v.message()),
        Some(E::ModelError(m)) => {
            return InvokeError::Model(ModelFailure {
                original_status: m.original_status_code().and_then(|s| u16::try_from(s).ok()),
                original_message: m.original_message().map(str::to_string),
                log_stream_arn: m.log_stream_arn().map(str::to_string),
                message: m.message().map(str::to_string),
            });
        }
        Some(E::ModelStreamError(m)) => {
            return InvokeError::Model(ModelFailure {
                original_status: None,
                original_message: None,
                log_stream_arn: None,
                message: m.message().map(str::to_string),
            });
        }
        _ => {}
    }
    if e.code() == Some("ModelNotReadyException") {
        return InvokeError::ModelNotReady {
            message: e.message().map(str::to_string),
        };
    }
    sdk_by_kind(e)
}

/// A failure of a stream that had started: SageMaker's in-band events by
/// their type, anything else (the connection, an unreadable event) an
/// internal failure.
fn stream_error<R: std::fmt::Debug>(e: SdkError<ResponseStreamError, R>) -> StreamError {
    match e.as_service_error() {
        Some(ResponseStreamError::ModelStreamError(m)) => StreamError::Model {
            message: m.message().unwrap_or("ModelStreamError").to_string(),
            error_code: m.error_code().map(str::to_string),
        },
        Some(ResponseStreamError::InternalStreamFailure(f)) => StreamError::Internal {
            message: f.message().unwrap_or("InternalStreamFailure").to_string(),
        },
        _ => StreamError::Internal {
            message: DisplayErrorContext(&e).to_string(),
        },
    }
}

/// `InvokeEndpointAsync`'s errors.
pub fn invoke_async_error(e: SdkError<InvokeEndpointAsyncError>) -> InvokeError {
    if let Some(InvokeEndpointAsyncError::ValidationError(v)) = e.as_service_error() {
        return validation(v.message());
    }
    sdk_by_kind(e)
}

/// Everything not modelled above, by the shared classification
/// ([`super::errors::classify`]): throttling codes, 5xx, transport.
fn sdk_by_kind<E>(e: SdkError<E>) -> InvokeError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.code().unwrap_or("unknown").to_string();
    let message = e.message().map(str::to_string);
    match classify(&e) {
        ErrorKind::Throttled => InvokeError::Throttled { code, message },
        ErrorKind::Unavailable => InvokeError::Unavailable {
            code,
            source: Some(Box::new(e)),
        },
        ErrorKind::Transport => InvokeError::Transport {
            delivery: sdk_delivery(&e),
            source: Box::new(e),
        },
        ErrorKind::Validation if e.as_service_error().is_some() => validation(message.as_deref()),
        _ => InvokeError::Other {
            source: Box::new(e),
        },
    }
}

/// How far an SDK call that got no answer went. The SDK's
/// `DispatchFailure` only says the request "MAY have been sent", and its
/// kinds (`is_io`, `is_timeout`, ...) give a refused connection and a reset
/// after the body the same `io`; the connector's own error, kept in the
/// chain, says whether it failed while connecting (hyper-util's
/// `is_connect`). Everything else (timeouts included) may have been sent.
fn sdk_delivery<E>(e: &SdkError<E>) -> Delivery
where
    E: std::error::Error + 'static,
{
    let SdkError::DispatchFailure(_) = e else {
        return Delivery::Unknown;
    };
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(h) = err.downcast_ref::<hyper_util::client::legacy::Error>()
            && h.is_connect()
        {
            return Delivery::NotSent;
        }
        next = err.source();
    }
    Delivery::Unknown
}

/// The lean client's wire: one HTTP/1.1 connection, driven by the task
/// that makes the call.
///
/// hyper's pooled client runs every connection as a task of its own and
/// hands each request to it through a channel, and the response and its
/// body back through two more: per request, the calling task and the
/// connection's task wake each other up several times, often on the other
/// worker thread. Here the calling task writes the request and reads the
/// answer itself, and a connection between requests is only a socket in the
/// pool. What it speaks is the small part of HTTP/1.1 a SageMaker runtime
/// answer needs: a status line and headers (parsed by httparse, as hyper
/// does), a body framed by `Content-Length`, by chunks or by the end of the
/// connection, and informational (1xx) answers skipped.
mod wire {
    use std::io::IoSlice;
    use std::task::{Context, Poll, Waker};

    use bytes::{Buf, Bytes, BytesMut};
    use hyper::header::HeaderValue;
    use hyper::{StatusCode, Uri};
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioIo;

    use crate::ports::inference::Delivery;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
    use tokio::time::Instant;
    use tower_service::Service;

    pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
    type Stream = TokioIo<hyper_rustls::MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>>;

    /// Most header lines in an answer (hyper's limit too).
    const MAX_HEADERS: usize = 100;
    /// Largest answer head, and largest chunk-size or trailer line.
    const MAX_HEAD: usize = 64 * 1024;
    /// What one read asks for at least.
    const READ_CHUNK: usize = 8 * 1024;

    /// Why a call failed on the wire.
    #[derive(Debug, thiserror::Error)]
    pub enum Error {
        #[error("cannot connect")]
        Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
        /// `partial`: part of the request was written before it failed.
        #[error("cannot send the request")]
        Write {
            partial: bool,
            #[source]
            source: std::io::Error,
        },
        #[error("cannot read the answer")]
        Read(#[source] std::io::Error),
        #[error("connection closed before the answer was complete")]
        Closed,
        #[error("the answer is not valid HTTP/1.1: {0}")]
        Invalid(&'static str),
        #[error("the answer's body is over the {0}-byte limit")]
        TooLarge(usize),
    }

    impl Error {
        /// Whether any of the request may have reached the server: not if
        /// the connection failed or nothing of the request was written.
        pub fn delivery(&self) -> Delivery {
            match self {
                Error::Connect(_) | Error::Write { partial: false, .. } => Delivery::NotSent,
                _ => Delivery::Unknown,
            }
        }
    }

    /// What the router reads of an answer.
    #[derive(Debug)]
    pub struct Response {
        pub status: StatusCode,
        pub content_type: Option<HeaderValue>,
        pub custom_attributes: Option<HeaderValue>,
        pub invoked_variant: Option<HeaderValue>,
        pub new_session_id: Option<HeaderValue>,
        pub closed_session_id: Option<HeaderValue>,
        pub errortype: Option<HeaderValue>,
        pub body: Bytes,
    }

    /// One connection.
    pub struct Conn {
        /// Boxed: a TLS stream is over a kilobyte, and a connection moves
        /// in and out of the idle list on every request.
        io: Box<Stream>,
        /// The read buffer, kept from one answer to the next: once the
        /// last answer's head and body are dropped (the client got them)
        /// its memory is used again instead of a new 8 KiB per answer.
        buf: BytesMut,
        /// When it went back to the pool.
        pub idle_since: Instant,
    }

    /// How an answer's body is framed.
    enum Framing {
        Length(u64),
        Chunked,
        UntilClose,
    }

    impl Conn {
        pub async fn connect(
            connector: &Connector,
            origin: &Uri,
            now: Instant,
        ) -> Result<Self, Error> {
            let mut c = connector.clone();
            std::future::poll_fn(|cx| c.poll_ready(cx))
                .await
                .map_err(Error::Connect)?;
            let stream = c.call(origin.clone()).await.map_err(Error::Connect)?;
            Ok(Self {
                io: Box::new(TokioIo::new(stream)),
                buf: BytesMut::new(),
                idle_since: now,
            })
        }

        /// Whether an idle connection is still open: the server has neither
        /// closed it nor sent anything (a read would block).
        pub fn is_open(&mut self) -> bool {
            let mut cx = Context::from_waker(Waker::noop());
            let mut byte = [0u8; 1];
            let mut buf = ReadBuf::new(&mut byte);
            matches!(
                std::pin::Pin::new(&mut *self.io).poll_read(&mut cx, &mut buf),
                Poll::Pending
            )
        }

        /// Write `head` then `body`, vectored (usually one system call).
        pub async fn send(&mut self, head: &[u8], body: &[u8]) -> Result<(), Error> {
            let (mut head, mut body) = (head, body);
            let mut partial = false;
            let failed = |partial, source| Error::Write { partial, source };
            while !head.is_empty() || !body.is_empty() {
                let n = self
                    .io
                    .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
                    .await
                    .map_err(|e| failed(partial, e))?;
                if n == 0 {
                    return Err(failed(partial, std::io::ErrorKind::WriteZero.into()));
                }
                partial = true;
                let h = n.min(head.len());
                head = &head[h..];
                body = &body[n - h..];
            }
            // Over TLS the last records may still be buffered: written in part.
            self.io.flush().await.map_err(|e| failed(partial, e))
        }

        /// Read more into `buf`; the end of the connection is an error.
        async fn fill(&mut self, buf: &mut BytesMut) -> Result<(), Error> {
            if buf.capacity() - buf.len() < READ_CHUNK {
                buf.reserve(READ_CHUNK);
            }
            match self.io.read_buf(buf).await {
                Ok(0) => Err(Error::Closed),
                Ok(_) => Ok(()),
                Err(e) => Err(Error::Read(e)),
            }
        }

        /// Read an answer of at most `limit` body bytes; `true` with it if
        /// the connection can carry another request.
        pub async fn receive(&mut self, limit: usize) -> Result<(Response, bool), Error> {
            // Empty: what followed the last answer made it not reusable.
            let mut buf = std::mem::take(&mut self.buf);
            loop {
                let Some(head) = parse_head(&mut buf)? else {
                    if buf.len() > MAX_HEAD {
                        return Err(Error::Invalid("head too large"));
                    }
                    self.fill(&mut buf).await?;
                    continue;
                };
                // Informational answers (100 Continue...) precede the real one.
                if head.status.is_informational() {
                    if head.status == StatusCode::SWITCHING_PROTOCOLS {
                        return Err(Error::Invalid("unexpected protocol switch"));
                    }
                    continue;
                }
                let no_body = head.status == StatusCode::NO_CONTENT
                    || head.status == StatusCode::NOT_MODIFIED;
                let (body, framed) = match head.framing {
                    _ if no_body => (Bytes::new(), true),
                    Framing::Length(n) => {
                        if n > limit as u64 {
                            return Err(Error::TooLarge(limit));
                        }
                        let n = n as usize;
                        if buf.len() < n {
                            buf.reserve(n - buf.len());
                        }
                        while buf.len() < n {
                            self.fill(&mut buf).await?;
                        }
                        (buf.split_to(n).freeze(), true)
                    }
                    Framing::Chunked => (self.chunked(&mut buf, limit).await?, true),
                    Framing::UntilClose => {
                        loop {
                            if buf.len() > limit {
                                return Err(Error::TooLarge(limit));
                            }
                            buf.reserve(READ_CHUNK);
                            match self.io.read_buf(&mut buf).await {
                                Ok(0) => break,
                                Ok(_) => {}
                                Err(e) => return Err(Error::Read(e)),
                            }
                        }
                        (std::mem::take(&mut buf).freeze(), false)
                    }
                };
                // Anything after the answer was not asked for: do not reuse.
                let reusable = framed && head.keep_alive && buf.is_empty();
                self.buf = buf;
                let resp = Response {
                    status: head.status,
                    content_type: head.content_type,
                    custom_attributes: head.custom_attributes,
                    invoked_variant: head.invoked_variant,
                    new_session_id: head.new_session_id,
                    closed_session_id: head.closed_session_id,
                    errortype: head.errortype,
                    body,
                };
                return Ok((resp, reusable));
            }
        }

        /// A chunked body (chunk extensions and trailers are read and dropped).
        async fn chunked(&mut self, buf: &mut BytesMut, limit: usize) -> Result<Bytes, Error> {
            let mut body = BytesMut::new();
            loop {
                let line = self.line(buf).await?;
                let size = line.split(|&b| b == b';').next().unwrap_or_default();
                let size = std::str::from_utf8(size)
                    .ok()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .and_then(|s| usize::from_str_radix(s, 16).ok())
                    .ok_or(Error::Invalid("bad chunk size"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !self.line(buf).await?.is_empty() {}
                    return Ok(body.freeze());
                }
                if body.len() + size > limit {
                    return Err(Error::TooLarge(limit));
                }
                while buf.len() < size + 2 {
                    self.fill(buf).await?;
                }
                body.extend_from_slice(&buf[..size]);
                if &buf[size..size + 2] != b"\r\n" {
                    return Err(Error::Invalid("chunk without CRLF"));
                }
                buf.advance(size + 2);
            }
        }

        /// The next CRLF-terminated line of `buf`, without its CRLF.
        async fn line(&mut self, buf: &mut BytesMut) -> Result<Bytes, Error> {
            let mut from = 0;
            loop {
                if let Some(i) = buf[from..].windows(2).position(|w| w == b"\r\n") {
                    let line = buf.split_to(from + i).freeze();
                    buf.advance(2);
                    return Ok(line);
                }
                if buf.len() > MAX_HEAD {
                    return Err(Error::Invalid("line too long"));
                }
                from = buf.len().saturating_sub(1);
                self.fill(buf).await?;
            }
        }
    }

    /// A parsed answer head.
    struct Head {
        status: StatusCode,
        framing: Framing,
        keep_alive: bool,
        content_type: Option<HeaderValue>,
        custom_attributes: Option<HeaderValue>,
        invoked_variant: Option<HeaderValue>,
        new_session_id: Option<HeaderValue>,
        closed_session_id: Option<HeaderValue>,
        errortype: Option<HeaderValue>,
    }

    /// The head at the start of `buf`, taken out of it, or `None` while it
    /// is incomplete.
    fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, Error> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut headers);
        let len = match r.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(Error::Invalid("cannot parse the head")),
        };
        let status = r
            .code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or(Error::Invalid("bad status"))?;
        let http11 = r.version == Some(1);
        // Header values are kept as slices of the head (no copies): their
        // offsets first, while `r` borrows `buf`.
        let base = buf.as_ptr() as usize;
        let at = |v: &[u8]| (v.as_ptr() as usize - base, v.len());
        let mut wanted: [Option<(usize, usize)>; 6] = [None; 6];
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut encoded = false;
        let mut close = !http11;
        for h in r.headers.iter() {
            let name = h.name;
            let slot = if name.eq_ignore_ascii_case("content-type") {
                Some(0)
            } else if name.eq_ignore_ascii_case(super::H_CUSTOM) {
                Some(1)
            } else if name.eq_ignore_ascii_case(super::H_VARIANT) {
                Some(2)
            } else if name.eq_ignore_ascii_case(super::H_ERRORTYPE) {
                Some(3)
            } else if name.eq_ignore_ascii_case(super::H_NEW_SESSION) {
                Some(4)
            } else if name.eq_ignore_ascii_case(super::H_CLOSED_SESSION) {
                Some(5)
            } else {
                None
            };
            if let Some(i) = slot {
                // The first value, as `HeaderMap::remove` gave it.
                wanted[i].get_or_insert(at(h.value));
            } else if name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or(Error::Invalid("bad content-length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(Error::Invalid("conflicting content-length"));
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                encoded = true;
                // Chunked only if it is the last coding.
                chunked = h
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && !http11 {
                        close = false;
                    }
                }
            }
        }
        let framing = match (encoded, chunked, length) {
            (true, true, _) => Framing::Chunked,
            (true, false, _) => Framing::UntilClose,
            (false, _, Some(n)) => Framing::Length(n),
            (false, _, None) => Framing::UntilClose,
        };
        let head = buf.split_to(len).freeze();
        let value = |w: Option<(usize, usize)>| {
            w.and_then(|(o, l)| HeaderValue::from_maybe_shared(head.slice(o..o + l)).ok())
        };
        Ok(Some(Head {
            status,
            framing,
            keep_alive: !close,
            content_type: value(wanted[0]),
            custom_attributes: value(wanted[1]),
            invoked_variant: value(wanted[2]),
            errortype: value(wanted[3]),
            new_session_id: value(wanted[4]),
            closed_session_id: value(wanted[5]),
        }))
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::ports::clock::Clock;

        fn head(text: &str) -> Result<Option<Head>, Error> {
            parse_head(&mut BytesMut::from(text))
        }

        #[test]
        fn heads() {
            let h = head("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Amzn-Invoked-Production-Variant: v1\r\nx-amzn-invoked-production-variant: v2\r\nContent-Length: 5\r\n\r\nhello")
                .unwrap()
                .unwrap();
            assert_eq!(h.status, StatusCode::OK);
            assert!(matches!(h.framing, Framing::Length(5)));
            assert!(h.keep_alive);
            assert_eq!(h.content_type.unwrap(), "application/json");
            assert_eq!(h.invoked_variant.unwrap(), "v1");
            assert!(h.custom_attributes.is_none());
            assert!(head("HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
            let h = head("HTTP/1.1 424 Failed\r\nx-amzn-ErrorType: ModelError\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap();
            assert!(matches!(h.framing, Framing::Chunked));
            assert!(!h.keep_alive);
            assert_eq!(h.errortype.unwrap(), "ModelError");
            let h = head("HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
            assert!(matches!(h.framing, Framing::UntilClose));
            assert!(!h.keep_alive);
            assert!(
                head("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err()
            );
            assert!(head("nonsense\r\n\r\n").is_err());
        }

        /// A server on loopback that answers each connection with `answers`
        /// (one per request read), then keeps it open.
        async fn server(answers: Vec<&'static [u8]>) -> Uri {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                for a in answers {
                    // One request: its head and a 3-byte body.
                    let mut got = Vec::new();
                    while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"abc")) {
                        let n = s.read(&mut buf).await.unwrap();
                        got.extend_from_slice(&buf[..n]);
                    }
                    s.write_all(a).await.unwrap();
                }
                let _ = s.read(&mut buf).await;
            });
            format!("http://{addr}/").parse().unwrap()
        }

        fn connector() -> Connector {
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http)
        }

        #[tokio::test]
        async fn answers_framed_every_way() {
            let origin = server(vec![
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nt: 1\r\n\r\n",
                b"HTTP/1.1 204 No Content\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nover",
            ])
            .await;
            let now = crate::ports::clock::SystemClock.monotonic();
            let mut c = Conn::connect(&connector(), &origin, now).await.unwrap();
            let req = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\n";
            c.send(req, b"abc").await.unwrap();
            let (r, reuse) = c.receive(1024).await.unwrap();
            assert_eq!(
                (r.status, &r.body[..], reuse),
                (StatusCode::OK, &b"ok"[..], true)
            );
            assert!(c.is_open());
            c.send(req, b"abc").await.unwrap();
            let (r, reuse) = c.receive(1024).await.unwrap();
            assert_eq!((&r.body[..], reuse), (&b"abcde"[..], true));
            c.send(req, b"abc").await.unwrap();
            let (r, reuse) = c.receive(1024).await.unwrap();
            assert_eq!(
                (r.status, r.body.len(), reuse),
                (StatusCode::NO_CONTENT, 0, true)
            );
            c.send(req, b"abc").await.unwrap();
            assert!(matches!(c.receive(4).await, Err(Error::TooLarge(4))));
        }

        #[tokio::test]
        async fn failures_say_whether_the_request_may_have_arrived() {
            let now = crate::ports::clock::SystemClock.monotonic();
            // Nothing listens: refused, nothing sent.
            let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = closed.local_addr().unwrap().port();
            drop(closed);
            let origin: Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
            let e = Conn::connect(&connector(), &origin, now)
                .await
                .err()
                .unwrap();
            assert_eq!(e.delivery(), Delivery::NotSent, "{e:?}");
            // Read, then closed without an answer: it may have run.
            let origin = server(vec![]).await;
            let mut c = Conn::connect(&connector(), &origin, now).await.unwrap();
            c.send(b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\n", b"abc")
                .await
                .unwrap();
            let e = c.receive(1024).await.err().unwrap();
            assert_eq!(e.delivery(), Delivery::Unknown, "{e:?}");
        }

        #[tokio::test]
        async fn a_closed_connection_is_seen() {
            let origin = server(vec![
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            ])
            .await;
            let now = crate::ports::clock::SystemClock.monotonic();
            let mut c = Conn::connect(&connector(), &origin, now).await.unwrap();
            c.send(b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\n", b"abc")
                .await
                .unwrap();
            let (_, reuse) = c.receive(1024).await.unwrap();
            assert!(!reuse);
            // The server reads once more, then drops the connection.
            c.send(b"x", b"").await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            assert!(!c.is_open());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, errortype: Option<&str>, body: &str) -> InvokeError {
        let mut h = HeaderMap::new();
        if let Some(t) = errortype {
            h.insert(H_ERRORTYPE, HeaderValue::from_str(t).unwrap());
        }
        error_answer(StatusCode::from_u16(status).unwrap(), &h, body.as_bytes())
    }

    #[test]
    fn error_answers_become_kinds() {
        assert!(matches!(
            answer(429, Some("ModelNotReadyException"), r#"{"message":"warming"}"#),
            InvokeError::ModelNotReady { message: Some(m) } if m == "warming"
        ));
        match answer(
            424,
            Some("ModelError"),
            r#"{"message":"m","OriginalStatusCode":418,"OriginalMessage":"teapot","LogStreamArn":"arn"}"#,
        ) {
            InvokeError::Model(f) => {
                assert_eq!(f.original_status, Some(418));
                assert_eq!(f.original_message.as_deref(), Some("teapot"));
                assert_eq!(f.log_stream_arn.as_deref(), Some("arn"));
                assert_eq!(f.message.as_deref(), Some("m"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            answer(
                400,
                Some("ValidationError"),
                r#"{"Message":"Endpoint x of account 1 not found."}"#
            ),
            InvokeError::EndpointNotFound { .. }
        ));
        assert!(matches!(
            answer(400, None, r#"{"__type":"com.amazon#ValidationError","message":"bad"}"#),
            InvokeError::Validation { message } if message == "bad"
        ));
        assert!(matches!(
            answer(400, Some("ThrottlingException:http://internal"), "{}"),
            InvokeError::Throttled { code, .. } if code == "ThrottlingException"
        ));
        assert!(matches!(
            answer(503, Some("ServiceUnavailable"), "{}"),
            InvokeError::Unavailable { .. }
        ));
        assert!(matches!(
            answer(530, Some("InternalDependencyException"), "{}"),
            InvokeError::Unavailable { .. }
        ));
        assert!(matches!(
            answer(502, None, "<html>bad gateway</html>"),
            InvokeError::Unavailable { .. }
        ));
        assert!(matches!(
            answer(418, Some("Teapot"), "{}"),
            InvokeError::Other { .. }
        ));
    }

    #[test]
    fn endpoint_not_found_is_told_from_other_validation_errors() {
        assert!(is_endpoint_not_found(
            "Endpoint lab-provisioned of account 123456789012 not found."
        ));
        assert!(!is_endpoint_not_found("Request abc has oversize body."));
        assert!(matches!(validation(None), InvokeError::Validation { .. }));
    }
}
