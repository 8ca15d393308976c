//! Authenticated admin mutations: `POST /v1/pause` and `POST /v1/resume`.
//!
//! The listener is read-only unless `listen.admin_token_file` holds a token.
//! A request must carry `Authorization: Bearer <token>`; the comparison
//! takes the same time wherever the first difference is ([`same`]), and a
//! missing or wrong token gets 401 with `WWW-Authenticate: Bearer`. The file
//! is read on every mutation (they are rare), so rotating the token is
//! writing the file, no restart; removing it turns mutations off (403).
//! A token shorter than [`MIN_TOKEN_LEN`] bytes is refused as if absent and
//! the start-up check ([`check_token_file`]) says so.
//!
//! A mutation goes through exactly what `failoverd pause|resume` does, the
//! control side's one operator path (`control::operator::perform`): read the
//! record and the votes, plan with the operator's request (`core::plan`),
//! write with the same `Executor` (fenced on the record's version), and
//! plan again when the record moved under the write and the decision is
//! the same. The body names who acts and
//! why (`{"operator": "alice", "reason": "INC-42"}`): the token says only
//! that the caller may, not who they are, and a change is never recorded as
//! by "unknown". Answers: 200 done, 400 bad body, 401, 403, 409 refused by
//! the planner, or the record kept moving or the decision changed under
//! it; 503 the table could not be read or the write failed.
//!
//! We did not put failover or failback behind the API: those ask for a
//! typed confirmation in the CLI, and an HTTP call is one click away from a
//! script loop. Pause (stop automatic failover) and resume are what an
//! on-call engineer needs from a page or a chat bot at 3 a.m.

use std::path::{Path, PathBuf};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;

use super::AdminState;
use crate::control::operator::{self, Outcome};
use crate::core::plan::Request as OpRequest;
use crate::http::{self, HttpResponse};

/// The shortest token accepted (bytes, after trimming the file).
pub const MIN_TOKEN_LEN: usize = 16;
/// The largest request body read.
const MAX_BODY: usize = 4096;

/// Why the token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the admin token file {}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the admin token in {} is shorter than {MIN_TOKEN_LEN} bytes (generate one with: openssl rand -hex 32)",
        path.display()
    )]
    TooShort { path: PathBuf },
}

/// Read the token: `Ok(None)` when the file does not exist (mutations off).
pub fn read_token(path: &Path) -> Result<Option<Vec<u8>>, TokenError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let t = bytes.trim_ascii().to_vec();
            if t.len() < MIN_TOKEN_LEN {
                Err(TokenError::TooShort {
                    path: path.to_path_buf(),
                })
            } else {
                Ok(Some(t))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TokenError::Unreadable {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// At start: say whether mutations are on, and warn about a token file
/// others can read. Never logs the token.
pub fn check_token_file(path: &Path) {
    match read_token(path) {
        Ok(Some(_)) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the admin token file is readable by others than its owner (chmod 600)");
            }
            tracing::info!(path = %path.display(), "admin mutations enabled (POST /v1/pause, /v1/resume with the bearer token)");
        }
        Ok(None) => tracing::info!(
            path = %path.display(),
            "no admin token file: the admin listener is read-only"
        ),
        Err(e) => tracing::warn!(
            error = %crate::error_chain(&e),
            "admin mutations disabled"
        ),
    }
}

/// Equal, in time that depends only on the lengths (never on where the
/// first difference is).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(std::hint::black_box(x ^ y));
    }
    std::hint::black_box(diff) == 0
}

/// Is `header` (the `Authorization` value) `Bearer <token>`?
pub fn authorized(header: Option<&hyper::header::HeaderValue>, token: &[u8]) -> bool {
    let presented = header
        .map(|h| h.as_bytes())
        .and_then(|h| {
            let (scheme, rest) = h.split_at(h.iter().position(|c| *c == b' ')?);
            scheme
                .eq_ignore_ascii_case(b"bearer")
                .then(|| rest.trim_ascii())
        })
        .unwrap_or(b"");
    // Compare even when nothing was presented, so both paths take as long.
    same(presented, token) && !presented.is_empty()
}

/// The body of a mutation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    /// Who acts (recorded as `operator:<name>`).
    operator: String,
    /// Why (recorded in the record and the journal).
    reason: String,
}

fn error(status: StatusCode, why: impl Into<String>) -> HttpResponse {
    http::json(status, &serde_json::json!({"error": why.into()}))
}

/// Handle `POST /v1/pause` or `POST /v1/resume`.
pub async fn mutation(state: &AdminState, req: Request<Incoming>) -> HttpResponse {
    let Some(ops) = state.ops.clone() else {
        return error(
            StatusCode::FORBIDDEN,
            "admin mutations are not available in this process",
        );
    };
    let cfg = ops.config();
    let token = match read_token(&cfg.listen.admin_token_file) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return error(
                StatusCode::FORBIDDEN,
                "admin mutations are disabled: no admin token is configured on this daemon",
            );
        }
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "admin mutation refused");
            return error(
                StatusCode::FORBIDDEN,
                "admin mutations are disabled: the admin token file is unusable (see the daemon's log)",
            );
        }
    };
    if !authorized(req.headers().get(hyper::header::AUTHORIZATION), &token) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <token from listen.admin_token_file>)",
        );
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer realm=\"failoverd admin\""),
        );
        return r;
    }
    let pause = req.uri().path() == "/v1/pause";
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_BODY} bytes or could not be read"),
            );
        }
    };
    let body: Body = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be JSON {{\"operator\": \"<who>\", \"reason\": \"<why>\"}}: {e}"
                ),
            );
        }
    };
    let (operator, reason) = (body.operator.trim(), body.reason.trim());
    if operator.is_empty() || reason.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "operator and reason must not be empty: the record says who changed it and why",
        );
    }
    let reason = format!("{reason} (via the admin API of {})", state.region);
    let request = if pause {
        OpRequest::Pause {
            reason,
            operator: operator.to_string(),
        }
    } else {
        OpRequest::Resume {
            reason,
            operator: operator.to_string(),
        }
    };
    apply(&ops, &cfg, request, operator).await
}

/// Perform an operator request through the control side's one path
/// (`control::operator::perform`), exactly as `failoverd pause|resume --yes`
/// does: the authenticated request is the confirmation.
async fn apply(
    ops: &super::Ops,
    cfg: &crate::config::Config,
    request: OpRequest,
    operator: &str,
) -> HttpResponse {
    match operator::perform(cfg, &ops.ports, &request, |_| Ok(())).await {
        Outcome::Done(what) => {
            tracing::info!(%operator, %what, "admin API mutation");
            http::json(
                StatusCode::OK,
                &serde_json::json!({"done": what, "operator": operator}),
            )
        }
        Outcome::Refused(why) | Outcome::NotConfirmed(why) => {
            error(StatusCode::CONFLICT, format!("refused: {why}"))
        }
        Outcome::Changed { now } => error(
            StatusCode::CONFLICT,
            format!(
                "the control record changed meanwhile, and so did the decision; nothing was changed: now it would {now}"
            ),
        ),
        Outcome::KeptMoving => error(
            StatusCode::CONFLICT,
            format!(
                "the control record kept changing ({} tries); nothing was changed: read it again and retry",
                operator::REPLANS
            ),
        ),
        Outcome::Unreadable(why) => error(StatusCode::SERVICE_UNAVAILABLE, why),
        Outcome::Failed(why) => error(StatusCode::SERVICE_UNAVAILABLE, format!("failed: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn bearer_tokens_compare_whole() {
        let t = b"0123456789abcdef0123";
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(authorized(Some(&h("Bearer 0123456789abcdef0123")), t));
        assert!(authorized(Some(&h("bearer   0123456789abcdef0123 ")), t));
        assert!(!authorized(Some(&h("Bearer 0123456789abcdef012")), t));
        assert!(!authorized(Some(&h("Bearer 0123456789abcdef01234")), t));
        assert!(!authorized(Some(&h("Basic 0123456789abcdef0123")), t));
        assert!(!authorized(Some(&h("Bearer")), t));
        assert!(!authorized(None, t));
        assert!(!authorized(Some(&h("Bearer ")), b""));
        assert!(same(b"", b"") && !same(b"a", b"b") && !same(b"a", b"a\0"));
    }

    #[test]
    fn token_files_missing_short_or_good() {
        let dir = std::env::temp_dir().join(format!("failoverd-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t");
        assert!(matches!(read_token(&p), Ok(None)));
        std::fs::write(&p, "short\n").unwrap();
        assert!(matches!(read_token(&p), Err(TokenError::TooShort { .. })));
        std::fs::write(&p, "  0123456789abcdef0123\n").unwrap();
        assert_eq!(read_token(&p).unwrap().unwrap(), b"0123456789abcdef0123");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
