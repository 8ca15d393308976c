//! SageMaker runtime adapter: the [`Inference`] port, and the one place
//! where SageMaker runtime errors become [`InvokeError`] kinds.
//!
//! Two clients, for two kinds of traffic:
//!
//! - `InvokeEndpoint` (every real-time request, the router's hot path) goes
//!   through a lean client: hyper's pooled HTTP/1.1 client (TLS by rustls),
//!   SigV4 with the signing key cached per day ([`super::sigv4`]), the
//!   endpoint URL resolved once per region by the SDK's own endpoint
//!   resolver (partitions, FIPS, dual-stack, the configured override) and
//!   credentials from the SDK's default chain, cached until five minutes
//!   before they expire. The wire format is the one the SDK speaks
//!   (restJson1: `POST /endpoints/{name}/invocations`, the body as is, the
//!   `Content-Type`, `Accept`, `X-Amzn-SageMaker-Custom-Attributes` and
//!   `-Target-Model` headers; errors as `x-amzn-errortype` plus a JSON
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
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sagemakerruntime::config::endpoint::{Params, ResolveEndpoint};
use aws_sdk_sagemakerruntime::config::{Credentials, ProvideCredentials};
use aws_sdk_sagemakerruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sagemakerruntime::operation::invoke_endpoint_async::InvokeEndpointAsyncError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderValue, USER_AGENT};
use hyper::{Method, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tracing::warn;

use super::AwsClients;
use super::errors::{ErrorKind, classify, kind_of_code};
use super::sigv4::{self, Keys, Signer};
use crate::ports::clock::{Clock, system_time};
use crate::ports::inference::{
    Answer, AsyncAccepted, AsyncInvocation, BoxError, Inference, Invocation, InvokeError,
    ModelFailure,
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
const H_VARIANT: &str = "x-amzn-invoked-production-variant";
const H_ERRORTYPE: &str = "x-amzn-errortype";
const USER_AGENT_VALUE: HeaderValue = HeaderValue::from_static(concat!(
    "failoverd/",
    env!("CARGO_PKG_VERSION"),
    " (router)"
));

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Where one region's `InvokeEndpoint` calls go.
#[derive(Debug)]
struct RegionEndpoint {
    scheme: hyper::http::uri::Scheme,
    authority: hyper::http::uri::Authority,
    /// A path prefix of the endpoint URL, without a trailing slash.
    base_path: String,
    host: HeaderValue,
}

/// The [`Inference`] port over SageMaker runtime.
pub struct SageMakerRuntime {
    clients: Arc<AwsClients>,
    http: HttpClient,
    signer: Signer,
    regions: RwLock<HashMap<String, Arc<RegionEndpoint>>>,
    credentials: RwLock<Option<Credentials>>,
    refresh: tokio::sync::Mutex<()>,
    /// Wall time for signing (SigV4 dates) and credential expiry.
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
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Self {
            clients,
            http,
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
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| bad())?;
        let e = Arc::new(RegionEndpoint {
            scheme,
            authority,
            base_path,
            host,
        });
        self.regions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(region.to_string(), e.clone());
        Ok(e)
    }

    /// Credentials from the SDK's chain, cached until shortly before they
    /// expire (a clone is a reference count).
    async fn credentials(&self) -> Result<Credentials, SetupError> {
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|e| e > system_time(self.clock.now_ms()) + CREDENTIALS_MARGIN)
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
        let creds = self.credentials().await.map_err(setup)?;
        let path = format!(
            "{}/endpoints/{}/invocations",
            target.base_path,
            sigv4::encode_segment(endpoint)
        );
        let mut signed: Vec<(&str, &str)> = Vec::with_capacity(4);
        for (name, v) in [
            ("accept", &inv.accept),
            ("content-type", &inv.content_type),
            (H_CUSTOM, &inv.custom_attributes),
            (H_TARGET_MODEL, &inv.target_model),
        ] {
            if let Some(v) = v {
                let text = v.to_str().map_err(|_| setup(SetupError::Header(name)))?;
                signed.push((name, text));
            }
        }
        let host = target.host.to_str().unwrap_or_default();
        let session_token = creds.session_token();
        let sig = self.signer.sign(
            &Keys {
                access_key_id: creds.access_key_id(),
                secret_access_key: creds.secret_access_key(),
                session_token,
            },
            &sigv4::Request {
                method: "POST",
                path: &path,
                host,
                headers: &signed,
                payload: &inv.body,
                region,
                service: SIGNING_NAME,
                time: system_time(self.clock.now_ms()),
            },
        );
        let uri = Uri::builder()
            .scheme(target.scheme.clone())
            .authority(target.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| InvokeError::Other {
                source: Box::new(e),
            })?;
        let mut req = hyper::Request::new(Full::new(inv.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        h.insert(HOST, target.host.clone());
        h.insert(USER_AGENT, USER_AGENT_VALUE);
        for (name, v) in [
            ("accept", &inv.accept),
            ("content-type", &inv.content_type),
            (H_CUSTOM, &inv.custom_attributes),
            (H_TARGET_MODEL, &inv.target_model),
        ] {
            if let Some(v) = v {
                h.insert(name, v.clone());
            }
        }
        let header = |s: String| {
            HeaderValue::try_from(s).map_err(|e| InvokeError::Other {
                source: Box::new(e),
            })
        };
        h.insert("x-amz-date", header(sig.amz_date)?);
        h.insert(hyper::header::AUTHORIZATION, header(sig.authorization)?);
        if let Some(t) = session_token {
            h.insert("x-amz-security-token", header(t.to_string())?);
        }

        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| InvokeError::Transport {
                source: Box::new(e),
            })?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_RESPONSE)
            .collect()
            .await
            .map_err(|source| InvokeError::Transport { source })?
            .to_bytes();
        if parts.status.is_success() {
            let mut headers = parts.headers;
            return Ok(Answer {
                body,
                content_type: headers.remove(CONTENT_TYPE),
                custom_attributes: headers.remove(H_CUSTOM),
                invoked_variant: headers.remove(H_VARIANT),
            });
        }
        Err(error_answer(parts.status, &parts.headers, &body))
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

    async fn invoke_async(
        &self,
        region: &str,
        endpoint: &str,
        inv: &AsyncInvocation<'_>,
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
            source: Box::new(e),
        },
        ErrorKind::Validation if e.as_service_error().is_some() => validation(message.as_deref()),
        _ => InvokeError::Other {
            source: Box::new(e),
        },
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
