//! AWS Signature Version 4 for the router's hot path (SageMaker runtime
//! `InvokeEndpoint`), with the signing key cached.
//!
//! The SDK derives the signing key (four chained HMACs) and builds the
//! canonical request through generic, allocating machinery on every call.
//! The key only changes with the date, the region and the credentials, so
//! here it is derived once per (day, region, access key) with the SDK's own
//! primitive (`aws_sigv4::sign::v4::generate_signing_key`), and with it the
//! two SHA-256 states the signature's HMAC starts from (the key XOR the
//! inner and the outer pad, one block each); the canonical request is
//! written straight into one buffer for the one request shape the router
//! sends: a POST with no query string. Per request that leaves a SHA-256 of
//! the payload, one of the canonical request, and the HMAC's two
//! finishing hashes.
//!
//! The tests sign the same requests with the SDK's general signer
//! (`aws_sigv4::http_request::sign`) and require the same signature.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sigv4::sign::v4::generate_signing_key;
use sha2::{Digest, Sha256};

/// The signing algorithm's name.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The credentials a request is signed with.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

/// One request to sign.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent (already percent-encoded once); no query string.
    pub path: &'a str,
    /// The `Host` header as sent.
    pub host: &'a str,
    /// Other headers to sign: lowercase names, values as sent. `host`,
    /// `x-amz-date` and `x-amz-security-token` are added here.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
    pub region: &'a str,
    pub service: &'a str,
    pub time: SystemTime,
}

/// The headers that carry a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// `x-amz-date`.
    pub amz_date: String,
    /// `authorization`.
    pub authorization: String,
}

/// A derived signing key.
struct CachedKey {
    date: String,
    region: String,
    service: String,
    access_key_id: String,
    secret_access_key: String,
    key: HmacKey,
}

/// An HMAC-SHA256 key as the two hash states it starts from: SHA-256
/// after the key XOR ipad, and after the key XOR opad (RFC 2104).
#[derive(Clone)]
struct HmacKey {
    inner: Sha256,
    outer: Sha256,
}

impl HmacKey {
    /// `key` must be at most a block (64 bytes); a signing key is 32.
    fn new(key: &[u8]) -> Self {
        let mut block = [0u8; 64];
        block[..key.len()].copy_from_slice(key);
        let pad = |b: u8| {
            let mut p = block;
            p.iter_mut().for_each(|x| *x ^= b);
            let mut h = Sha256::new();
            h.update(p);
            h
        };
        Self {
            inner: pad(0x36),
            outer: pad(0x5c),
        }
    }

    /// HMAC-SHA256 of `data`.
    fn sign(&self, data: &[u8]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        inner.update(data);
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

/// A signer that remembers the signing keys it derived.
#[derive(Default)]
pub struct Signer {
    keys: Mutex<Vec<CachedKey>>,
}

/// Most keys kept (regions × credentials × the day boundary).
const MAX_KEYS: usize = 32;

impl CachedKey {
    /// Whether this is the key of (`date`, region, service, credentials).
    fn is_for(&self, keys: &Keys<'_>, date: &str, req: &Request<'_>) -> bool {
        self.date == date
            && self.region == req.region
            && self.service == req.service
            && self.access_key_id == keys.access_key_id
            && self.secret_access_key == keys.secret_access_key
    }
}

impl Signer {
    /// The signing key for (`date`, region, service, credentials): the
    /// one this thread used last if it is that one (no lock shared with
    /// the other threads), else from the signer's cache.
    fn key(&self, keys: &Keys<'_>, date: &str, req: &Request<'_>) -> HmacKey {
        // A key depends only on what it is looked up by, so a thread's
        // last one serves any signer.
        thread_local! {
            static LAST: std::cell::RefCell<Option<CachedKey>> =
                const { std::cell::RefCell::new(None) };
        }
        let last = LAST.with_borrow(|last| {
            last.as_ref()
                .filter(|k| k.is_for(keys, date, req))
                .map(|k| k.key.clone())
        });
        if let Some(key) = last {
            return key;
        }
        let key = self.shared_key(keys, date, req);
        LAST.with_borrow_mut(|last| {
            *last = Some(CachedKey {
                date: date.to_string(),
                region: req.region.to_string(),
                service: req.service.to_string(),
                access_key_id: keys.access_key_id.to_string(),
                secret_access_key: keys.secret_access_key.to_string(),
                key: key.clone(),
            });
        });
        key
    }

    /// [`Signer::key`] from the signer's own cache (derived on a miss).
    fn shared_key(&self, keys: &Keys<'_>, date: &str, req: &Request<'_>) -> HmacKey {
        let mut cache = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = cache.iter().find(|k| k.is_for(keys, date, req)) {
            return k.key.clone();
        }
        let key = HmacKey::new(
            generate_signing_key(keys.secret_access_key, req.time, req.region, req.service)
                .as_ref(),
        );
        if cache.len() >= MAX_KEYS {
            // Keys of past days (or rotated credentials) go first.
            cache.retain(|k| k.date == date);
            if cache.len() >= MAX_KEYS {
                cache.clear();
            }
        }
        cache.push(CachedKey {
            date: date.to_string(),
            region: req.region.to_string(),
            service: req.service.to_string(),
            access_key_id: keys.access_key_id.to_string(),
            secret_access_key: keys.secret_access_key.to_string(),
            key: key.clone(),
        });
        key
    }

    /// Sign `req` with `keys`.
    pub fn sign(&self, keys: &Keys<'_>, req: &Request<'_>) -> Signed {
        let amz_date = amz_date(req.time);

        // Canonical headers, sorted by name: on the stack when they fit
        // (the router sends at most a dozen).
        let mut on_stack = [("", ""); 16];
        let mut on_heap = Vec::new();
        let n = req.headers.len() + 2 + usize::from(keys.session_token.is_some());
        let headers: &mut [(&str, &str)] = if n <= on_stack.len() {
            &mut on_stack[..n]
        } else {
            on_heap.resize(n, ("", ""));
            &mut on_heap
        };
        headers[0] = ("host", req.host);
        headers[1] = ("x-amz-date", &amz_date);
        let mut i = 2;
        if let Some(t) = keys.session_token {
            headers[i] = ("x-amz-security-token", t);
            i += 1;
        }
        headers[i..].copy_from_slice(req.headers);
        headers.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let headers = &*headers;

        // The canonical request and the string to sign are written into
        // this thread's buffers (no allocation per request once grown).
        thread_local! {
            static SCRATCH: std::cell::RefCell<(String, String)> =
                const { std::cell::RefCell::new((String::new(), String::new())) };
        }
        let authorization = SCRATCH.with_borrow_mut(|(creq, sts)| {
            creq.clear();
            sts.clear();
            self.authorization(keys, req, &amz_date, headers, creq, sts)
        });
        Signed {
            amz_date,
            authorization,
        }
    }

    /// The `Authorization` value of [`Signer::sign`], once the headers
    /// are sorted; the canonical request and the string to sign are
    /// written into `creq` and `sts` (empty).
    fn authorization(
        &self,
        keys: &Keys<'_>,
        req: &Request<'_>,
        amz_date: &str,
        headers: &[(&str, &str)],
        creq: &mut String,
        sts: &mut String,
    ) -> String {
        let date = &amz_date[..8];
        creq.push_str(req.method);
        creq.push('\n');
        canonical_path(creq, req.path);
        creq.push_str("\n\n"); // no query string
        for (name, value) in headers {
            creq.push_str(name);
            creq.push(':');
            trim_all(creq, value);
            creq.push('\n');
        }
        creq.push('\n');
        let signed_headers_at = creq.len();
        for (i, (name, _)) in headers.iter().enumerate() {
            if i > 0 {
                creq.push(';');
            }
            creq.push_str(name);
        }
        let signed_headers_end = creq.len();
        creq.push('\n');
        hex_into(creq, &Sha256::digest(req.payload));

        sts.push_str(ALGORITHM);
        sts.push('\n');
        sts.push_str(amz_date);
        sts.push('\n');
        let scope_at = sts.len();
        sts.push_str(date);
        sts.push('/');
        sts.push_str(req.region);
        sts.push('/');
        sts.push_str(req.service);
        sts.push_str("/aws4_request");
        let scope_end = sts.len();
        sts.push('\n');
        hex_into(sts, &Sha256::digest(creq.as_bytes()));

        let signature = self.key(keys, date, req).sign(sts.as_bytes());
        let signed_headers = &creq[signed_headers_at..signed_headers_end];
        let scope = &sts[scope_at..scope_end];
        let mut authorization = String::with_capacity(
            ALGORITHM.len() + keys.access_key_id.len() + scope.len() + signed_headers.len() + 110,
        );
        authorization.push_str(ALGORITHM);
        authorization.push_str(" Credential=");
        authorization.push_str(keys.access_key_id);
        authorization.push('/');
        authorization.push_str(scope);
        authorization.push_str(", SignedHeaders=");
        authorization.push_str(signed_headers);
        authorization.push_str(", Signature=");
        hex_into(&mut authorization, &signature);
        authorization
    }
}

/// Whether `b` is left as it is by URI encoding (RFC 3986 unreserved).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xf)] as char);
}

/// Percent-encode one path segment (what SDKs do to an endpoint name).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    encode_segment_into(&mut out, segment);
    out
}

/// [`encode_segment`], appended to `out`.
pub fn encode_segment_into(out: &mut String, segment: &str) {
    escape_into(out, segment, unreserved);
}

/// `s` appended to `out` with every byte `keep` refuses percent-encoded:
/// runs of kept bytes are copied whole.
fn escape_into(out: &mut String, s: &str, keep: fn(u8) -> bool) {
    let mut run = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if !keep(b) {
            // Kept bytes are ASCII: a run of them starts and ends on
            // character boundaries (an empty one may not).
            if run < i {
                out.push_str(&s[run..i]);
            }
            push_escaped(out, b);
            run = i + 1;
        }
    }
    out.push_str(&s[run..]);
}

/// The canonical URI of `path` for every service but S3: the path as sent,
/// URI-encoded once more (`%` becomes `%25`), slashes kept.
fn canonical_path(out: &mut String, path: &str) {
    if path.is_empty() {
        out.push('/');
        return;
    }
    escape_into(out, path, |b| unreserved(b) || b == b'/');
}

/// A header value with leading and trailing spaces removed and inner runs
/// of spaces collapsed to one (SigV4's "Trimall").
fn trim_all(out: &mut String, value: &str) {
    let value = value.trim();
    if !value.contains('\t') && !value.contains("  ") {
        // Nothing to collapse (the usual case).
        out.push_str(value);
        return;
    }
    let mut space = false;
    for c in value.chars() {
        if c == ' ' || c == '\t' {
            space = true;
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
}

fn hex_into(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for part in bytes.chunks(32) {
        let mut buf = [0u8; 64];
        for (digits, &b) in buf.chunks_exact_mut(2).zip(part) {
            digits[0] = HEX[usize::from(b >> 4)];
            digits[1] = HEX[usize::from(b & 0xf)];
        }
        // Hex digits are ASCII.
        out.push_str(std::str::from_utf8(&buf[..2 * part.len()]).unwrap_or_default());
    }
}

/// `YYYYMMDDTHHMMSSZ` in UTC (written digit by digit: `format!` was a
/// visible share of a request's signing).
pub fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let mut out = String::with_capacity(16);
    push_digits(&mut out, y.clamp(0, 9999) as u64, 4);
    push_digits(&mut out, u64::from(m), 2);
    push_digits(&mut out, u64::from(d), 2);
    out.push('T');
    push_digits(&mut out, rem / 3600, 2);
    push_digits(&mut out, rem % 3600 / 60, 2);
    push_digits(&mut out, rem % 60, 2);
    out.push('Z');
    out
}

/// The last `width` decimal digits of `n`, zero-padded.
fn push_digits(out: &mut String, n: u64, width: u32) {
    for i in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10u64.pow(i) % 10) as u8));
    }
}

/// (year, month, day) of a count of days since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use std::time::Duration;

    /// The SDK's general signer on the same request.
    fn sdk_signature(keys: &Keys<'_>, req: &Request<'_>) -> String {
        let creds = aws_sdk_sagemakerruntime::config::Credentials::new(
            keys.access_key_id,
            keys.secret_access_key,
            keys.session_token.map(str::to_string),
            None,
            "test",
        );
        let identity = creds.into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(req.region)
            .name(req.service)
            .time(req.time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let uri = format!("https://{}{}", req.host, req.path);
        let mut headers = vec![("host", req.host)];
        headers.extend(req.headers.iter().copied());
        let signable = SignableRequest::new(
            req.method,
            uri,
            headers.into_iter(),
            SignableBody::Bytes(req.payload),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let (headers, _) = instructions.into_parts();
        headers
            .iter()
            .find(|h| h.name() == "authorization")
            .map(|h| h.value().to_string())
            .unwrap()
    }

    /// Credentials, extra headers, path and payload of one case.
    type Case<'a> = (Keys<'a>, Vec<(&'a str, &'a str)>, &'a str, &'a [u8]);

    #[test]
    fn signatures_match_the_sdks_signer() {
        let signer = Signer::default();
        let time = UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let cases: Vec<Case<'_>> = vec![
            (
                Keys {
                    access_key_id: "AKIDEXAMPLE",
                    secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                    session_token: None,
                },
                vec![("content-type", "application/json")],
                "/endpoints/lab-provisioned/invocations",
                b"{\"x\":1}",
            ),
            (
                Keys {
                    access_key_id: "ASIAEXAMPLE",
                    secret_access_key: "secret",
                    session_token: Some("token/with+chars=="),
                },
                vec![
                    ("accept", "text/csv"),
                    ("content-type", "text/csv"),
                    ("x-amzn-sagemaker-custom-attributes", "  trace=1   a  "),
                    ("x-amzn-sagemaker-target-model", "model.tar.gz"),
                ],
                "/endpoints/a%20b%2Fc/invocations",
                &[0u8; 5000],
            ),
            (
                Keys {
                    access_key_id: "AKID",
                    secret_access_key: "s",
                    session_token: None,
                },
                vec![],
                "/prefix/endpoints/e/invocations",
                b"",
            ),
        ];
        for (keys, headers, path, payload) in &cases {
            for region in ["us-east-1", "eu-west-1"] {
                let req = Request {
                    method: "POST",
                    path,
                    host: "runtime.sagemaker.us-east-1.amazonaws.com",
                    headers,
                    payload,
                    region,
                    service: "sagemaker",
                    time,
                };
                let ours = signer.sign(keys, &req);
                assert_eq!(ours.amz_date, "20261130T005320Z");
                assert_eq!(
                    ours.authorization,
                    sdk_signature(keys, &req),
                    "{path} {region}"
                );
                // Again, from the cached key.
                assert_eq!(signer.sign(keys, &req), ours);
            }
        }
    }

    #[test]
    fn dates_and_segments() {
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(
            amz_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z",
            "a leap day"
        );
        assert_eq!(
            amz_date(UNIX_EPOCH + Duration::from_secs(4_102_444_799)),
            "20991231T235959Z"
        );
        assert_eq!(encode_segment("lab-provisioned"), "lab-provisioned");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
        let trimmed = |v: &str| {
            let mut s = String::new();
            trim_all(&mut s, v);
            s
        };
        assert_eq!(trimmed("  a   b \t c "), "a b c");
        assert_eq!(trimmed("a\tb"), "a b");
        assert_eq!(trimmed(" a b "), "a b");
        assert_eq!(trimmed("text/csv"), "text/csv");
        let mut hex = String::new();
        hex_into(&mut hex, &[0x00, 0x9f, 0xff]);
        assert_eq!(hex, "009fff");
        assert_eq!(encode_segment("é~x"), "%C3%A9~x");
        let mut path = String::new();
        canonical_path(&mut path, "/endpoints/a%20b/invocations");
        assert_eq!(path, "/endpoints/a%2520b/invocations");
    }
}
