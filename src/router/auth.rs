//! Authorization per model (issue 22 item 3): `router.allow` lists, per
//! model, the caller identities allowed to invoke it, as patterns over
//! the identity text: a client certificate's SAN, or the ARN STS answered
//! for an IAM caller (router::iam), which the same patterns cover:
//! `arn:aws:sts::111122223333:assumed-role/Caller/*`.
//!
//! A pattern's `*` matches any run of characters, `/` and `.` included;
//! everything else matches itself. A model without a list admits every
//! caller the listener authenticated; a caller without identity (a
//! loopback or `allow_anonymous` router) never matches a list. No
//! allocation: the check runs on every invocation of a listed model, and
//! a router without lists skips it with one emptiness test.

use crate::config::Config;
use crate::http::Identity;

/// Whether `identity` may invoke `model` under `cfg`'s lists.
pub fn allowed(cfg: &Config, model: &str, identity: Option<&Identity>) -> bool {
    if cfg.router.allow.is_empty() {
        return true;
    }
    let Some(patterns) = cfg.router.allow.get(model) else {
        return true;
    };
    let Some(id) = identity else {
        return false;
    };
    patterns.iter().any(|p| matches(p, &id.0))
}

/// `pattern` (with `*` for any run of characters) against `text`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // Iterative glob with one backtrack point (linear in practice).
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_whole_identities() {
        assert!(matches(
            "spiffe://prod/fraud/*",
            "spiffe://prod/fraud/scorer"
        ));
        assert!(matches("spiffe://prod/fraud/*", "spiffe://prod/fraud/a/b"));
        assert!(!matches("spiffe://prod/fraud/*", "spiffe://prod/fraudster"));
        assert!(matches("*.svc.example.com", "a.svc.example.com"));
        assert!(!matches("*.svc.example.com", "svc.example.com.evil"));
        assert!(matches("exact.example", "exact.example"));
        assert!(!matches("exact.example", "exact.example2"));
        assert!(!matches("exact.example", "exact"));
        assert!(matches("*", "anything"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches(
            "arn:aws:sts::111122223333:assumed-role/Caller/*",
            "arn:aws:sts::111122223333:assumed-role/Caller/session-1"
        ));
    }
}
