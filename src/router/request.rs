//! Request parsing: which route, which model, which traffic class and
//! deadline, and the body (read within `router.body_read_timeout`, never
//! more than the route can take). Everything a client can get wrong is
//! refused here, before any upstream call, with a [`RouterError`].
//!
//! Two invocation APIs share the parsing:
//!
//! - [`Api::SageMaker`], `POST /endpoints/{model}/invocations`: the
//!   SageMaker runtime wire API. Synchronous like `InvokeEndpoint`: bodies
//!   up to 6 MiB (real-time; serverless only up to its 4 MiB), never a
//!   batch job, so its body limit is the real-time one.
//! - [`Api::Native`], `POST /v1/models/{model}/invoke`: the seed's rule with
//!   batch (a payload at or over the class's batch threshold is stored and
//!   answered `202` + `Location: /v1/jobs/{id}`), so its limit is the
//!   largest payload any configured path takes, up to
//!   `router.max_batch_payload`.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::Method;
use hyper::header::{
    ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING,
};
use tokio::time::Instant;

use super::reply::{H_CUSTOM, RouterError};
use crate::config::{Config, ModelConfig};
use crate::core::routing::{self, Path};
use crate::http::percent_decode_utf8;
use crate::ports::inference::Invocation;

const H_CLASS: HeaderName = HeaderName::from_static("x-traffic-class");
const H_DEADLINE: HeaderName = HeaderName::from_static("x-deadline-ms");

/// Which invocation API a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/endpoints/{model}/invocations`: synchronous, real-time paths only.
    SageMaker,
    /// `/v1/models/{model}/invoke`: the seed's rule, batch included.
    Native,
}

/// What a request asks for, from its method and path alone.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'r> {
    Invoke {
        api: Api,
        model: String,
    },
    /// `/endpoints/{model}/async-invocations` (`InvokeEndpointAsync`).
    Async {
        model: String,
    },
    Job(&'r str),
    Ping,
}

impl<'r> Route<'r> {
    /// The route of `method path`, or why there is none.
    pub fn of(method: &Method, path: &'r str) -> Result<Self, RouterError> {
        let post = |route| {
            if method == Method::POST {
                Ok(route)
            } else {
                Err(RouterError::Method {
                    method: method.clone(),
                    allow: "POST",
                })
            }
        };
        let get = |route| {
            if method == Method::GET {
                Ok(route)
            } else {
                Err(RouterError::Method {
                    method: method.clone(),
                    allow: "GET",
                })
            }
        };
        if let Some(name) = path
            .strip_prefix("/endpoints/")
            .and_then(|r| r.strip_suffix("/invocations"))
            .filter(|n| !n.contains('/'))
        {
            return post(Route::Invoke {
                api: Api::SageMaker,
                model: label(name)?,
            });
        }
        if let Some(name) = path
            .strip_prefix("/endpoints/")
            .and_then(|r| r.strip_suffix("/async-invocations"))
            .filter(|n| !n.contains('/'))
        {
            return post(Route::Async {
                model: label(name)?,
            });
        }
        if let Some(name) = path
            .strip_prefix("/v1/models/")
            .and_then(|r| r.strip_suffix("/invoke"))
            .filter(|n| !n.contains('/'))
        {
            return post(Route::Invoke {
                api: Api::Native,
                model: label(name)?,
            });
        }
        if let Some(id) = path.strip_prefix("/v1/jobs/") {
            return get(Route::Job(id));
        }
        if path == "/ping" {
            return get(Route::Ping);
        }
        Err(RouterError::NoRoute(path.to_string()))
    }
}

/// A model label from the path, percent-decoded; refused when the bytes
/// are not UTF-8 (a lossy decode would let two labels name one model).
fn label(name: &str) -> Result<String, RouterError> {
    percent_decode_utf8(name).ok_or(RouterError::BadLabel)
}

/// A parsed, body-complete invocation.
#[derive(Debug)]
pub struct Ask<'c> {
    pub api: Api,
    pub model: &'c ModelConfig,
    pub class: Cow<'c, str>,
    pub deadline: Instant,
    pub inv: Invocation,
}

/// The largest body `api` takes under `cfg`.
pub fn body_limit(cfg: &Config, model: &ModelConfig, api: Api) -> u64 {
    let paths = model.serving.iter().flat_map(|r| {
        let a = super::available(r);
        Path::ALL
            .into_iter()
            .filter(move |&p| a.has(p) && (api == Api::Native || p.is_realtime()))
            .map(Path::max_payload)
    });
    let most = paths.max().unwrap_or(routing::REALTIME_MAX_PAYLOAD);
    match api {
        Api::SageMaker => most.min(routing::REALTIME_MAX_PAYLOAD),
        Api::Native => most.min(cfg.router.max_batch_payload),
    }
}

/// The refusal of a body over `limit` on `api`.
pub fn too_large(api: Api, len: Option<u64>, limit: u64) -> RouterError {
    RouterError::TooLarge {
        len,
        limit,
        hint: match api {
            Api::SageMaker => {
                " of a real-time invocation (InvokeEndpoint); larger payloads go to the native API, /v1/models/{model}/invoke, as batch jobs"
            }
            Api::Native => "",
        },
    }
}

/// The model of `POST /endpoints/{model}/invocations-response-stream`
/// (`InvokeEndpointWithResponseStream`), if `path` is that route: the
/// model, or the refusal of another method.
pub fn stream_route(method: &Method, path: &str) -> Option<Result<String, RouterError>> {
    let name = path
        .strip_prefix("/endpoints/")
        .and_then(|r| r.strip_suffix("/invocations-response-stream"))
        .filter(|n| !n.contains('/'))?;
    Some(if method == Method::POST {
        label(name)
    } else {
        Err(RouterError::Method {
            method: method.clone(),
            allow: "POST",
        })
    })
}

/// A header's value as text (trimmed), or the refusal of one that is not
/// visible ASCII.
fn text<'h>(
    name: &HeaderName,
    value: Option<&'h HeaderValue>,
) -> Result<Option<&'h str>, RouterError> {
    match value {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| RouterError::BadHeader(name.clone())),
    }
}

/// A header passed through to the model, checked to be visible ASCII (as
/// SageMaker requires of `Content-Type`, `Accept` and custom attributes).
fn passed(
    name: &HeaderName,
    value: Option<&HeaderValue>,
) -> Result<Option<HeaderValue>, RouterError> {
    text(name, value)?;
    Ok(value.cloned())
}

/// The request headers the router reads, found in one pass over them (a
/// lookup each would hash every name, a dozen times per request): the
/// first value of each, as `HeaderMap::get` gives it.
#[derive(Default)]
struct Seen<'h> {
    transfer_encoding: bool,
    class: Option<&'h HeaderValue>,
    deadline: Option<&'h HeaderValue>,
    content_length: Option<&'h HeaderValue>,
    content_type: Option<&'h HeaderValue>,
    accept: Option<&'h HeaderValue>,
    custom_attributes: Option<&'h HeaderValue>,
    /// `X-Amzn-SageMaker-Target-Model`.
    target_model: Option<HeaderValue>,
    /// The other `X-Amzn-SageMaker-*` headers passed on.
    passed: crate::ports::inference::Passed,
    /// The first `X-Amzn-SageMaker-*` header (of those above, in the
    /// map's order) whose value is not visible ASCII.
    bad_sagemaker: Option<&'h HeaderName>,
}

impl<'h> Seen<'h> {
    fn of(headers: &'h HeaderMap) -> Self {
        let mut seen = Seen::default();
        for (name, value) in headers {
            let first = |slot: &mut Option<&'h HeaderValue>| {
                slot.get_or_insert(value);
            };
            if *name == TRANSFER_ENCODING {
                seen.transfer_encoding = true;
                continue;
            }
            if *name == CONTENT_LENGTH {
                first(&mut seen.content_length);
                continue;
            }
            if *name == CONTENT_TYPE {
                first(&mut seen.content_type);
                continue;
            }
            if *name == ACCEPT {
                first(&mut seen.accept);
                continue;
            }
            if *name == H_CLASS {
                first(&mut seen.class);
                continue;
            }
            if *name == H_DEADLINE {
                first(&mut seen.deadline);
                continue;
            }
            if *name == H_CUSTOM {
                first(&mut seen.custom_attributes);
                continue;
            }
            if seen.bad_sagemaker.is_some() {
                // Refused already: the rest of the SageMaker headers no
                // longer matter (as when the first bad one ended the pass).
                continue;
            }
            let Some(rest) = name.as_str().strip_prefix("x-amzn-sagemaker-") else {
                continue;
            };
            let p = &mut seen.passed;
            let slot = match rest {
                "target-model" => &mut seen.target_model,
                "target-variant" => &mut p.target_variant,
                "target-container-hostname" => &mut p.target_container_hostname,
                "inference-id" => &mut p.inference_id,
                "enable-explanations" => &mut p.enable_explanations,
                "inference-component" => &mut p.inference_component,
                "session-id" => &mut p.session_id,
                _ => continue,
            };
            if slot.is_none() {
                if value.to_str().is_err() {
                    seen.bad_sagemaker = Some(name);
                    continue;
                }
                *slot = Some(value.clone());
            }
        }
        seen
    }
}

/// `class` if a client may name it: the seed's classes and any model's
/// (borrowed, no copy per request), and any the routing table has a
/// threshold for.
fn known_class<'c>(
    cfg: &'c Config,
    thresholds: &dyn Fn(&str) -> bool,
    class: &str,
) -> Option<Cow<'c, str>> {
    if class == routing::SERVERLESS_PREFERRED {
        return Some(Cow::Borrowed(routing::SERVERLESS_PREFERRED));
    }
    if class == routing::STANDARD {
        return Some(Cow::Borrowed(routing::STANDARD));
    }
    if let Some(m) = cfg.models.iter().find(|m| m.traffic_class == class) {
        return Some(Cow::Borrowed(m.traffic_class.as_str()));
    }
    thresholds(class).then(|| Cow::Owned(class.to_string()))
}

/// Headers into everything but the body; `started` is when the request
/// arrived (the deadline counts from it).
pub fn parse_head<'c>(
    cfg: &'c Config,
    api: Api,
    model: &'c ModelConfig,
    headers: &HeaderMap,
    started: Instant,
    has_threshold: &dyn Fn(&str) -> bool,
    known_classes: &dyn Fn() -> Vec<String>,
) -> Result<Ask<'c>, RouterError> {
    // hyper refuses a request whose Content-Length values differ (400) and
    // reads one with both Content-Length and chunked Transfer-Encoding by
    // the latter, hiding the former: refusing every Transfer-Encoding is
    // the one way to refuse that pair too. SDK clients send a
    // Content-Length (a SageMaker invocation's body is a blob).
    let seen = Seen::of(headers);
    if seen.transfer_encoding {
        return Err(RouterError::TransferEncoding);
    }
    let class = match text(&H_CLASS, seen.class)? {
        None => Cow::Borrowed(model.traffic_class.as_str()),
        Some(c) => match known_class(cfg, has_threshold, c) {
            Some(k) => k,
            None => {
                return Err(RouterError::UnknownClass {
                    class: c.to_string(),
                    known: known_classes().join(", "),
                });
            }
        },
    };
    let max_ms = cfg.router.max_deadline.as_millis() as u64;
    let deadline = match text(&H_DEADLINE, seen.deadline)? {
        None => cfg.router.default_deadline,
        Some(d) => match d.parse::<u64>() {
            Ok(ms) if (1..=max_ms).contains(&ms) => Duration::from_millis(ms),
            _ => {
                return Err(RouterError::BadDeadline {
                    value: d.to_string(),
                    max_ms,
                });
            }
        },
    };
    let limit = body_limit(cfg, model, api);
    if let Some(len) =
        text(&CONTENT_LENGTH, seen.content_length)?.and_then(|l| l.parse::<u64>().ok())
        && len > limit
    {
        return Err(too_large(api, Some(len), limit));
    }
    if let Some(name) = seen.bad_sagemaker {
        return Err(RouterError::BadHeader(name.clone()));
    }
    Ok(Ask {
        api,
        model,
        class,
        deadline: started + deadline,
        inv: Invocation {
            // The client's TargetModel, as SageMaker would take it; the
            // configured one is the serving table's, per region
            // (`router::for_target`).
            target_model: seen.target_model,
            body: Bytes::new(),
            content_type: passed(&CONTENT_TYPE, seen.content_type)?,
            accept: passed(&ACCEPT, seen.accept)?,
            custom_attributes: passed(&H_CUSTOM, seen.custom_attributes)?,
            passed: seen.passed,
        },
    })
}

/// Read `body` into `ask`, within `router.body_read_timeout` and the API's
/// limit.
pub async fn read_body<B>(cfg: &Config, ask: &mut Ask<'_>, body: B) -> Result<(), RouterError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limit = body_limit(cfg, ask.model, ask.api);
    let body = Limited::new(body, limit as usize);
    let timeout = cfg.router.body_read_timeout;
    let mut collect = std::pin::pin!(body.collect());
    // A small body has usually arrived with the head: then no timer is set
    // up (a clock reading and a timer entry per request); otherwise the
    // timeout runs from here, as it did.
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(collect.as_mut().poll(cx))).await;
    let read = match first {
        std::task::Poll::Ready(r) => Ok(r),
        std::task::Poll::Pending => tokio::time::timeout(timeout, collect).await,
    };
    match read {
        Ok(Ok(c)) => {
            ask.inv.body = c.to_bytes();
            Ok(())
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(too_large(ask.api, None, limit))
        }
        Ok(Err(e)) => Err(RouterError::BodyUnreadable(e)),
        Err(_) => Err(RouterError::BodyTimeout(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let post = Method::POST;
        assert_eq!(
            Route::of(&post, "/endpoints/a%20b/invocations").unwrap(),
            Route::Invoke {
                api: Api::SageMaker,
                model: "a b".into()
            }
        );
        assert_eq!(
            Route::of(&post, "/v1/models/m/invoke").unwrap(),
            Route::Invoke {
                api: Api::Native,
                model: "m".into()
            }
        );
        assert_eq!(
            Route::of(&Method::GET, "/v1/jobs/abc").unwrap(),
            Route::Job("abc")
        );
        assert_eq!(Route::of(&Method::GET, "/ping").unwrap(), Route::Ping);
        assert_eq!(
            Route::of(&post, "/endpoints/m/async-invocations").unwrap(),
            Route::Async { model: "m".into() }
        );
        assert!(matches!(
            Route::of(&Method::GET, "/endpoints/m/invocations"),
            Err(RouterError::Method { allow: "POST", .. })
        ));
        assert!(matches!(
            Route::of(&post, "/v1/jobs/abc"),
            Err(RouterError::Method { allow: "GET", .. })
        ));
        assert!(matches!(
            Route::of(&post, "/endpoints/a/b/invocations"),
            Err(RouterError::NoRoute(_))
        ));
        assert!(matches!(
            Route::of(&post, "/elsewhere"),
            Err(RouterError::NoRoute(_))
        ));
        assert!(matches!(
            Route::of(&post, "/endpoints/a%ffb/invocations"),
            Err(RouterError::BadLabel)
        ));
        assert!(matches!(
            Route::of(&post, "/v1/models/%c3%28/invoke"),
            Err(RouterError::BadLabel)
        ));
    }
}
