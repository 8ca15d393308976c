//! Task-token lifecycle: pending -> claimed -> done | expired.
//!
//! The workflow writes a token item (`putItem.waitForTaskToken`) addressed to
//! the region that must act. That region's daemon claims it with a
//! conditional write (owner + claim lease), does the work while sending
//! heartbeats, calls back to the Step Functions of the region that issued it,
//! and marks it done. A claim whose lease ran out (its daemon crashed) can be
//! claimed again. A token past its task timeout is expired by its expiry
//! time, never by DynamoDB TTL (TTL deletes can take days).
//!
//! Step Functions makes the callback itself single use, so "at most one
//! success per token" holds even if two claimants race; the claim only keeps
//! the work from being done twice in the common case.

use serde::{Deserialize, Serialize};

/// Where a token is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    Pending,
    Claimed,
    Done,
    Expired,
}

/// The parts of a token item the decisions need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// `<execution>#<step>`.
    pub id: String,
    /// The region that must act.
    pub target_region: String,
    /// `prepare` or `drain`.
    pub step: String,
    pub status: TokenStatus,
    /// `<region>/<instance>` of the claimant.
    pub claimed_by: Option<String>,
    /// Unix ms until which the claim holds.
    pub claim_until: Option<u64>,
    /// Unix ms when the workflow wrote it.
    pub created_at: u64,
    /// The task's TimeoutSeconds, in ms.
    pub timeout_ms: u64,
}

impl TokenView {
    /// When the workflow stops waiting for this token.
    pub fn expires_at(&self) -> u64 {
        self.created_at.saturating_add(self.timeout_ms)
    }
}

/// What to do with one token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum TokenAction {
    /// Claim it (conditional on the status/claim we read) and do the work.
    Claim { id: String },
    /// We hold the claim: carry on (heartbeat, finish, call back).
    Continue { id: String },
    /// Past its timeout: mark expired and journal it.
    Expire { id: String },
}

/// Decide for one token, as daemon `owner` (`<region>/<instance>`) of `region`.
pub fn decide(t: &TokenView, region: &str, owner: &str, now: u64) -> Option<TokenAction> {
    if t.target_region != region || matches!(t.status, TokenStatus::Done | TokenStatus::Expired) {
        return None;
    }
    if now > t.expires_at() {
        return Some(TokenAction::Expire { id: t.id.clone() });
    }
    match t.status {
        TokenStatus::Pending => Some(TokenAction::Claim { id: t.id.clone() }),
        TokenStatus::Claimed if t.claimed_by.as_deref() == Some(owner) => {
            Some(TokenAction::Continue { id: t.id.clone() })
        }
        TokenStatus::Claimed if t.claim_until.is_none_or(|u| u < now) => {
            Some(TokenAction::Claim { id: t.id.clone() })
        }
        _ => None,
    }
}

/// The steps a workflow can go on without: the drain (the switch has
/// happened; the workflow catches a drain's failure or timeout and goes on
/// to steady). Prepare is never skipped: the new region must be ready.
pub const SKIPPABLE_STEPS: &[&str] = &["drain"];

/// May another daemon answer for this token, whose addressee's daemon is
/// not live? Only a skippable step, still pending (or with a lapsed
/// claim: the claim condition is the same as `decide`'s), not yet expired.
pub fn skippable(t: &TokenView, now: u64) -> bool {
    SKIPPABLE_STEPS.contains(&t.step.as_str())
        && now <= t.expires_at()
        && match t.status {
            TokenStatus::Pending => true,
            TokenStatus::Claimed => t.claim_until.is_none_or(|u| u < now),
            TokenStatus::Done | TokenStatus::Expired => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(status: TokenStatus, claimed_by: Option<&str>, claim_until: Option<u64>) -> TokenView {
        TokenView {
            id: "failover-2#prepare".into(),
            target_region: "us-west-2".into(),
            step: "prepare".into(),
            status,
            claimed_by: claimed_by.map(String::from),
            claim_until,
            created_at: 1000,
            timeout_ms: 300_000,
        }
    }

    #[test]
    fn lifecycle() {
        let me = "us-west-2/a";
        assert_eq!(
            decide(
                &tok(TokenStatus::Pending, None, None),
                "us-west-2",
                me,
                2000
            ),
            Some(TokenAction::Claim {
                id: "failover-2#prepare".into()
            })
        );
        assert_eq!(
            decide(
                &tok(TokenStatus::Pending, None, None),
                "eu-west-1",
                "eu-west-1/x",
                2000
            ),
            None,
            "not addressed to us"
        );
        assert_eq!(
            decide(
                &tok(TokenStatus::Claimed, Some(me), Some(9000)),
                "us-west-2",
                me,
                2000
            ),
            Some(TokenAction::Continue {
                id: "failover-2#prepare".into()
            })
        );
        // Someone else's live claim is left alone; a lapsed one (crashed daemon) is re-claimed.
        assert_eq!(
            decide(
                &tok(TokenStatus::Claimed, Some("us-west-2/b"), Some(9000)),
                "us-west-2",
                me,
                2000
            ),
            None
        );
        assert_eq!(
            decide(
                &tok(TokenStatus::Claimed, Some("us-west-2/b"), Some(9000)),
                "us-west-2",
                me,
                9001
            ),
            Some(TokenAction::Claim {
                id: "failover-2#prepare".into()
            })
        );
        assert_eq!(
            decide(
                &tok(TokenStatus::Done, Some(me), None),
                "us-west-2",
                me,
                2000
            ),
            None
        );
        assert_eq!(
            decide(
                &tok(TokenStatus::Pending, None, None),
                "us-west-2",
                me,
                301_001
            ),
            Some(TokenAction::Expire {
                id: "failover-2#prepare".into()
            })
        );
    }

    #[test]
    fn only_a_pending_drain_may_be_skipped() {
        let mut t = tok(TokenStatus::Pending, None, None);
        assert!(!skippable(&t, 2000), "prepare is never skipped");
        t.step = "drain".into();
        assert!(skippable(&t, 2000));
        assert!(
            !skippable(&t, t.expires_at() + 1),
            "an expired token is expired, not skipped"
        );
        let mut held = tok(TokenStatus::Claimed, Some("us-west-2/b"), Some(9000));
        held.step = "drain".into();
        assert!(!skippable(&held, 2000), "a live claim is left alone");
        assert!(skippable(&held, 9001), "a lapsed claim is not");
        let mut done = tok(TokenStatus::Done, None, None);
        done.step = "drain".into();
        assert!(!skippable(&done, 2000));
    }
}
