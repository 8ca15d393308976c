//! Caller identity from AWS IAM (issue 22 item 2, docs/threat-model.md):
//! callers keep their own roles. The pattern is Vault's AWS auth method and
//! EKS's aws-iam-authenticator: the client presigns an
//! `sts:GetCallerIdentity` request with its own credentials, with
//! [`FLEET_HEADER`] among the signed headers, and sends the presigned URL
//! (base64url, after `v1.`) in [`HEADER`]. The router checks that the URL
//! is a genuine STS endpoint's `GetCallerIdentity` and nothing else (so it
//! cannot be made to call anywhere, or anything, else), sends it with
//! [`FLEET_HEADER`] set to `router.iam.fleet`, and takes the ARN STS
//! answers as the caller's identity. STS checks the signature, the expiry
//! and the header: a token made for another fleet (or another service
//! using the same pattern with another header) does not verify here.
//!
//! An answer is cached per token (its SHA-256, never the text) until the
//! presigned URL expires, at most 15 minutes: a client reuses its token
//! for many requests, and STS is called once per token. The token is never
//! logged, and neither is the URL (its signature is a credential for as
//! long as it is valid).
//!
//! STS is reached with the router's own HTTPS client (rustls, the
//! platform's roots); an endpoint that is not AWS's public STS (an
//! interface VPC endpoint, or an emulator) is accepted only when its
//! origin is listed in `router.iam.sts_endpoints`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::HeaderValue;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

use crate::config::IamAuth;
use crate::core::mono::Mono;
use crate::http::Identity;

/// The request header that carries the token: `v1.` and the presigned
/// URL in base64url (padding optional).
pub const HEADER: &str = "x-failoverd-iam";
/// The header the presigned request must have signed, and that the router
/// sends with the fleet's name (`router.iam.fleet`).
pub const FLEET_HEADER: &str = "x-failoverd-fleet";
/// The longest token read (a presigned URL with a session token is about
/// 1.5 KB; STS's own limit on a URL is far under this).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The longest a presigned URL may be valid for, and an answer cached.
pub const MAX_EXPIRES_SECS: u64 = 900;
/// The time STS has to answer.
pub const STS_TIMEOUT: Duration = Duration::from_secs(5);
/// Answers cached at most; past it, expired ones are dropped first, then
/// the cache is emptied (each caller then costs one more STS call).
const CACHE_MAX: usize = 10_000;
/// The largest STS answer read.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Why a token was not taken. `Refused`: the caller's fault (403
/// `AccessDeniedException`); `Unavailable`: STS could not be asked (503,
/// retryable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IamError {
    #[error("{HEADER}: {0}")]
    Refused(String),
    #[error("cannot verify the caller with STS: {0}")]
    Unavailable(String),
}

fn refused(why: impl Into<String>) -> IamError {
    IamError::Refused(why.into())
}

/// A token that passed every local check: the URL to send, and when it
/// expires (unix ms, by the signer's `X-Amz-Date`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    pub url: String,
    pub expires_ms: u64,
}

/// Check a token: `v1.` + base64url of an `https://` URL of AWS's public
/// STS (`sts.amazonaws.com`, `sts[-fips].<region>.amazonaws.com[.cn]`) or
/// an origin in `extra`, path `/`, whose query is exactly a SigV4
/// presigned `GetCallerIdentity` (version 2011-06-15) signing `host` and
/// [`FLEET_HEADER`], valid for at most 15 minutes and not expired at
/// `now_ms` (the router's wall clock).
pub fn parse(token: &[u8], extra: &[String], now_ms: u64) -> Result<Presigned, IamError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(refused(format!("over {MAX_TOKEN_BYTES} bytes")));
    }
    let b64 = token
        .strip_prefix(b"v1.")
        .ok_or_else(|| refused("not a v1 token (\"v1.\" and a base64url presigned URL)"))?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(
            b64.strip_suffix(b"==")
                .or(b64.strip_suffix(b"="))
                .unwrap_or(b64),
        )
        .map_err(|_| refused("not base64url"))?;
    let text = String::from_utf8(raw).map_err(|_| refused("the URL is not UTF-8"))?;
    let url = url::Url::parse(&text).map_err(|_| refused("not a URL"))?;
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(refused("the URL has user information or a fragment"));
    }
    let host = url.host_str().unwrap_or_default();
    let origin = url.origin().ascii_serialization();
    let public =
        url.scheme() == "https" && url.port().is_none_or(|p| p == 443) && is_public_sts(host);
    if !public && !extra.iter().any(|o| o.trim_end_matches('/') == origin) {
        return Err(refused(format!(
            "{origin} is not an STS endpoint this router accepts"
        )));
    }
    if url.path() != "/" {
        return Err(refused("the URL's path is not /"));
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    for (k, v) in url.query_pairs() {
        if seen.insert(k.to_string(), v.to_string()).is_some() {
            return Err(refused(format!("query parameter {k} given twice")));
        }
    }
    let get = |k: &str| seen.get(k).map(String::as_str);
    const KNOWN: [&str; 9] = [
        "Action",
        "Version",
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
    ];
    if let Some(k) = seen.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(refused(format!("unexpected query parameter {k}")));
    }
    if get("Action") != Some("GetCallerIdentity") {
        return Err(refused("not a GetCallerIdentity request"));
    }
    if get("Version") != Some("2011-06-15") {
        return Err(refused("not STS API version 2011-06-15"));
    }
    if get("X-Amz-Algorithm") != Some("AWS4-HMAC-SHA256") {
        return Err(refused("not signed with AWS4-HMAC-SHA256"));
    }
    let credential = get("X-Amz-Credential").ok_or_else(|| refused("no X-Amz-Credential"))?;
    if credential.split('/').nth(3) != Some("sts") {
        return Err(refused("the signature's scope is not sts"));
    }
    let signed = get("X-Amz-SignedHeaders").ok_or_else(|| refused("no X-Amz-SignedHeaders"))?;
    if !signed.split(';').any(|h| h == "host") || !signed.split(';').any(|h| h == FLEET_HEADER) {
        return Err(refused(format!(
            "the signature does not cover host and {FLEET_HEADER}"
        )));
    }
    let signature = get("X-Amz-Signature").unwrap_or_default();
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refused("X-Amz-Signature is not a SigV4 signature"));
    }
    let expires_s: u64 = get("X-Amz-Expires")
        .and_then(|e| e.parse().ok())
        .filter(|e| (1..=MAX_EXPIRES_SECS).contains(e))
        .ok_or_else(|| {
            refused(format!(
                "X-Amz-Expires must be 1..={MAX_EXPIRES_SECS} seconds"
            ))
        })?;
    let signed_at = get("X-Amz-Date")
        .and_then(amz_date_ms)
        .ok_or_else(|| refused("X-Amz-Date is not a time (yyyymmddThhmmssZ)"))?;
    let expires_ms = signed_at + expires_s * 1000;
    if expires_ms <= now_ms {
        return Err(refused("the presigned request has expired"));
    }
    Ok(Presigned {
        url: url.into(),
        expires_ms,
    })
}

/// AWS's public STS host names: the global endpoint and the regional
/// ones, FIPS included, in the commercial and China partitions.
fn is_public_sts(host: &str) -> bool {
    if host == "sts.amazonaws.com" {
        return true;
    }
    let rest = host
        .strip_prefix("sts-fips.")
        .or_else(|| host.strip_prefix("sts."));
    let Some(rest) = rest else {
        return false;
    };
    let region = rest
        .strip_suffix(".amazonaws.com.cn")
        .or_else(|| rest.strip_suffix(".amazonaws.com"));
    region.is_some_and(is_region_name)
}

/// `us-east-1`, `ap-southeast-4`, `us-gov-west-1`: lowercase words and a
/// number, dash-separated.
fn is_region_name(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// `yyyymmddThhmmssZ` as unix ms.
fn amz_date_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs).ok().map(|s| s * 1000)
}

/// The `<Arn>` of a `GetCallerIdentityResponse`.
fn arn_of(xml: &str) -> Option<&str> {
    let start = xml.find("<Arn>")? + "<Arn>".len();
    let end = start + xml[start..].find("</Arn>")?;
    let arn = xml[start..end].trim();
    (arn.starts_with("arn:") && !arn.contains(['<', '&']) && !arn.is_empty()).then_some(arn)
}

/// The router's IAM verifier: the STS client and the cache of answers.
pub struct Verifier {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// SHA-256 of a token -> (the identity, when the answer expires on the
    /// monotonic clock).
    cache: Mutex<HashMap<[u8; 32], (Identity, Mono)>>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// With the system's trust roots (without them, every HTTPS endpoint
    /// is refused: logged once, at start).
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(STS_TIMEOUT));
        http.enforce_http(false);
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let https = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(b) => b.https_or_http().enable_http1().wrap_connector(http),
            Err(e) => {
                tracing::warn!(error = %e, "no system trust roots: no HTTPS STS endpoint can be verified");
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("ring supports rustls's default protocol versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http)
            }
        };
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(https),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Identity, Mono)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The identity `token` proves under `cfg`, at `now_ms` (wall) and
    /// `mono`: from the cache, or from STS.
    pub async fn identify(
        &self,
        cfg: &IamAuth,
        token: &HeaderValue,
        now_ms: u64,
        mono: Mono,
    ) -> Result<Identity, IamError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((id, until)) = self.lock().get(&key)
            && mono < *until
        {
            return Ok(id.clone());
        }
        let p = parse(token.as_bytes(), &cfg.sts_endpoints, now_ms)?;
        let fleet = HeaderValue::from_str(&cfg.fleet)
            .map_err(|_| IamError::Unavailable("router.iam.fleet is not a header value".into()))?;
        let req = hyper::Request::get(p.url.as_str())
            .header(FLEET_HEADER, fleet)
            .body(Empty::new())
            .map_err(|_| refused("the URL cannot be requested"))?;
        let answer = tokio::time::timeout(STS_TIMEOUT, async {
            let res = self
                .client
                .request(req)
                .await
                .map_err(|e| IamError::Unavailable(crate::error_chain(&e)))?;
            let status = res.status();
            let body = Limited::new(res.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| IamError::Unavailable(format!("reading STS's answer: {e}")))?
                .to_bytes();
            Ok::<_, IamError>((status, body))
        })
        .await
        .map_err(|_| {
            IamError::Unavailable(format!("STS did not answer within {STS_TIMEOUT:?}"))
        })??;
        let (status, body) = answer;
        let text = String::from_utf8_lossy(&body);
        if status.is_server_error() || status == hyper::StatusCode::TOO_MANY_REQUESTS {
            return Err(IamError::Unavailable(format!("STS answered {status}")));
        }
        if !status.is_success() {
            // STS's own reason (expired, signature does not match, ...):
            // its <Message>, which names no secret.
            let why = text
                .find("<Message>")
                .and_then(|s| {
                    let s = s + "<Message>".len();
                    text[s..]
                        .find("</Message>")
                        .map(|e| text[s..s + e].to_string())
                })
                .unwrap_or_else(|| status.to_string());
            return Err(refused(format!("STS refused the presigned request: {why}")));
        }
        let arn =
            arn_of(&text).ok_or_else(|| IamError::Unavailable("STS's answer has no Arn".into()))?;
        let id = Identity(std::sync::Arc::from(arn));
        let ttl = p
            .expires_ms
            .saturating_sub(now_ms)
            .min(MAX_EXPIRES_SECS * 1000);
        let mut cache = self.lock();
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, until)| *until > mono);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, (id.clone(), mono.plus(ttl)));
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_612_400_000; // 2026-12-07T03:00:00Z

    fn token(url: &str) -> Vec<u8> {
        let mut t = b"v1.".to_vec();
        t.extend(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(url)
                .into_bytes(),
        );
        t
    }

    fn url(host: &str, extra: &str) -> String {
        format!(
            "https://{host}/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261207%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Date=20261207T025900Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host%3Bx-failoverd-fleet&X-Amz-Signature={}{extra}",
            "a".repeat(64)
        )
    }

    #[test]
    fn the_dates_are_unix_time() {
        assert_eq!(amz_date_ms("19700101T000000Z"), Some(0));
        assert_eq!(amz_date_ms("20261207T030000Z"), Some(NOW));
        assert_eq!(amz_date_ms("20261307T030000Z"), None);
        assert_eq!(amz_date_ms("2026-12-07T03:00"), None);
    }

    #[test]
    fn a_genuine_presigned_get_caller_identity_passes() {
        for host in [
            "sts.amazonaws.com",
            "sts.us-east-1.amazonaws.com",
            "sts-fips.us-gov-west-1.amazonaws.com",
            "sts.cn-north-1.amazonaws.com.cn",
        ] {
            let p =
                parse(&token(&url(host, "")), &[], NOW).unwrap_or_else(|e| panic!("{host}: {e}"));
            assert_eq!(p.expires_ms, NOW - 60_000 + 300_000, "{host}");
        }
        // With a session token (assumed roles), and padding.
        let mut t = token(&url(
            "sts.eu-west-1.amazonaws.com",
            "&X-Amz-Security-Token=abc%2Bdef",
        ));
        t.extend(b"==");
        assert!(parse(&t, &[], NOW).is_ok());
    }

    #[test]
    fn anything_but_sts_get_caller_identity_is_refused() {
        let cases = [
            // Request forgery: somewhere else.
            url("sts.amazonaws.com.evil.example", ""),
            url("evil.example", ""),
            url("169.254.169.254", ""),
            url("sts.us-east-1.amazonaws.com:8443", ""),
            url("user@sts.amazonaws.com", ""),
            url("sts.us-east-1.amazonaws.com", "#x").replacen("/?", "/x?", 1),
            url("sts.amazonaws.com", "").replace("https://", "http://"),
            // Another action or API, or more than the presigned request.
            url("sts.amazonaws.com", "").replace("GetCallerIdentity", "AssumeRole"),
            url("sts.amazonaws.com", "&RoleArn=x"),
            url("sts.amazonaws.com", "&Action=GetCallerIdentity"),
            url("sts.amazonaws.com", "").replace("2011-06-15", "2010-01-01"),
            // Not bound to the fleet, or not STS's scope.
            url("sts.amazonaws.com", "").replace("host%3Bx-failoverd-fleet", "host"),
            url("sts.amazonaws.com", "").replace("%2Fsts%2F", "%2Fs3%2F"),
            // Too long-lived, or expired.
            url("sts.amazonaws.com", "").replace("Expires=300", "Expires=3600"),
            url("sts.amazonaws.com", "").replace("T025900Z", "T024000Z"),
        ];
        for u in cases {
            match parse(&token(&u), &[], NOW) {
                Err(IamError::Refused(_)) => {}
                other => panic!("{u}: {other:?}"),
            }
        }
        for t in [b"v2.abc".to_vec(), b"v1.***".to_vec(), b"v1.".to_vec()] {
            assert!(parse(&t, &[], NOW).is_err(), "{t:?}");
        }
        assert!(parse(&vec![b'a'; MAX_TOKEN_BYTES + 1], &[], NOW).is_err());
    }

    #[test]
    fn a_listed_origin_is_accepted_as_an_sts_endpoint() {
        let vpce = "https://vpce-0abc-de12.sts.us-east-1.vpce.amazonaws.com";
        let u = url("vpce-0abc-de12.sts.us-east-1.vpce.amazonaws.com", "");
        assert!(parse(&token(&u), &[], NOW).is_err(), "not listed");
        assert!(parse(&token(&u), &[format!("{vpce}/")], NOW).is_ok());
        let lab = url("127.0.0.1:4566", "").replace("https://", "http://");
        assert!(parse(&token(&lab), &["http://127.0.0.1:4566".into()], NOW).is_ok());
        assert!(parse(&token(&lab), &["http://127.0.0.1:4567".into()], NOW).is_err());
    }

    /// An STS stand-in on 127.0.0.1:0 that answers every request with
    /// `answer` and counts the requests and the fleet headers it saw.
    async fn fake_sts(
        answer: &'static str,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while let Ok(n) = s.read(&mut chunk).await {
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            buf.drain(..end + 4);
                            let fleet = head
                                .lines()
                                .find_map(|l| l.strip_prefix("x-failoverd-fleet: "))
                                .unwrap_or("-")
                                .to_string();
                            log.lock().unwrap().push(fleet);
                            let (status, body) = answer.split_once('|').unwrap();
                            let reply = format!(
                                "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if s.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (origin, seen)
    }

    fn local_token(origin: &str) -> HeaderValue {
        let u = url("x", "").replace("https://x", origin);
        HeaderValue::from_bytes(&token(&u)).unwrap()
    }

    #[tokio::test]
    async fn sts_is_asked_once_per_token_with_the_fleets_header() {
        let ok = "200 OK|<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:sts::1:assumed-role/R/s</Arn></GetCallerIdentityResult></GetCallerIdentityResponse>";
        let (origin, seen) = fake_sts(ok).await;
        let cfg = IamAuth {
            fleet: "prod".into(),
            sts_endpoints: vec![origin.clone()],
        };
        let v = Verifier::new();
        let t = local_token(&origin);
        for i in 0..3 {
            let id = v.identify(&cfg, &t, NOW, Mono(1_000 + i)).await.unwrap();
            assert_eq!(&*id.0, "arn:aws:sts::1:assumed-role/R/s");
        }
        assert_eq!(
            *seen.lock().unwrap(),
            ["prod"],
            "one call for three requests"
        );
        // After the token's expiry (by the monotonic clock), asked again.
        v.identify(&cfg, &t, NOW, Mono(1_000 + 240_000))
            .await
            .unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_refusal_by_sts_is_the_callers_and_an_outage_is_not() {
        let (origin, _) = fake_sts(
            "403 Forbidden|<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error></ErrorResponse>",
        )
        .await;
        let cfg = IamAuth {
            fleet: "prod".into(),
            sts_endpoints: vec![origin.clone()],
        };
        match Verifier::new()
            .identify(&cfg, &local_token(&origin), NOW, Mono(1))
            .await
        {
            Err(IamError::Refused(m)) => assert!(m.contains("does not match"), "{m}"),
            other => panic!("{other:?}"),
        }
        let (origin, _) = fake_sts("503 Service Unavailable|busy").await;
        let cfg = IamAuth {
            fleet: "prod".into(),
            sts_endpoints: vec![origin.clone()],
        };
        let got = Verifier::new()
            .identify(&cfg, &local_token(&origin), NOW, Mono(1))
            .await;
        assert!(matches!(got, Err(IamError::Unavailable(_))), "{got:?}");
    }

    #[test]
    fn the_arn_is_read_from_the_answer() {
        let xml = "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:sts::123456789012:assumed-role/Caller/s1</Arn><UserId>x</UserId></GetCallerIdentityResult></GetCallerIdentityResponse>";
        assert_eq!(
            arn_of(xml),
            Some("arn:aws:sts::123456789012:assumed-role/Caller/s1")
        );
        assert_eq!(arn_of("<Arn>not-an-arn</Arn>"), None);
        assert_eq!(arn_of("<Arn>arn:a&lt;</Arn>"), None);
        assert_eq!(arn_of("<Arn>arn:x"), None);
    }
}
