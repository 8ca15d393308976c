//! The control store: the global table the daemons share (the control
//! record, votes, shared Route 53 readings, task tokens, the journal).
//!
//! One implementation talks to DynamoDB (`aws::control_table`); the
//! simulation's fakes keep the same items in memory with MRSC or MREC
//! semantics. Record writes are [`RecordWrite`]s whose semantics are
//! `core::record::apply`; a lost condition is [`Write::Conflict`], never an
//! error. Items that expire (journal, tokens, jobs) carry a `ttl` (unix
//! seconds) and readers skip expired ones themselves: DynamoDB's TTL
//! deletes can lag by days.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::PortError;
use super::health_checks::CheckReading;
use crate::core::control::ControlRecord;
use crate::core::duty::{DutyItem, DutyWrite};
use crate::core::quorum::Vote;
use crate::core::record::RecordWrite;
use crate::core::tokens::{TokenStatus, TokenView};

/// Outcome of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Written,
    /// Someone else moved first (or the item is not in the expected state).
    Conflict,
}

/// A task token item, with what the callback needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenItem {
    pub view: TokenView,
    /// The Step Functions task token (secret-ish: never logged whole).
    pub token: String,
    /// The execution that issued it; its region is where to call back.
    pub execution_arn: String,
    pub epoch: u64,
    pub note: Option<String>,
}

impl TokenItem {
    /// Region whose Step Functions issued the token.
    pub fn issuer_region(&self) -> Option<&str> {
        self.execution_arn
            .split(':')
            .nth(3)
            .filter(|r| !r.is_empty())
    }
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unix ms.
    pub at: u64,
    /// Who: a region, `workflow`, or `operator:<name>`.
    pub who: String,
    pub kind: String,
    pub epoch: Option<u64>,
    pub detail: String,
}

/// A Route 53 reading one daemon made and published for the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedReading {
    pub check_id: String,
    /// Which daemon read it, and when by its clock: together, the reading's
    /// identity (a reading counts once).
    pub reader: String,
    pub read_at: u64,
    pub reading: CheckReading,
}

impl PublishedReading {
    /// Identity of the reading: a tracker counts each one once.
    pub fn id(&self) -> (String, u64) {
        (self.reader.clone(), self.read_at)
    }
}

/// A bounded read: the items, and whether more existed than were read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub truncated: bool,
}

/// How long journal, token and job items live: their `ttl` attribute.
pub fn ttl_for(at_ms: u64) -> u64 {
    at_ms / 1000 + crate::core::plan::ITEM_RETENTION_SECS
}

/// Is an item with this `ttl` (unix seconds) still live at `now_ms`?
pub fn is_live(ttl: Option<u64>, now_ms: u64) -> bool {
    ttl.is_none_or(|t| t.saturating_mul(1000) > now_ms)
}

/// The control store, as one replica.
#[async_trait]
pub trait ControlStore: Send + Sync {
    /// The replica's region.
    fn replica(&self) -> &str;

    /// Read the record (strongly consistent read of this replica). An item
    /// that cannot be decoded is an error of kind `Malformed`.
    async fn read_record(&self) -> Result<Option<ControlRecord>, PortError>;
    /// Perform one conditional write (semantics: `core::record::apply`).
    async fn write_record(&self, w: &RecordWrite) -> Result<Write, PortError>;

    /// Publish this daemon's vote (its own item: votes never conflict).
    async fn put_vote(&self, v: &Vote) -> Result<(), PortError>;
    /// Every region's latest vote.
    async fn read_votes(&self) -> Result<Vec<Vote>, PortError>;

    /// Publish a Route 53 reading for the fleet (one item per check).
    async fn put_reading(&self, r: &PublishedReading) -> Result<(), PortError>;
    /// The latest published reading of every check.
    async fn read_readings(&self) -> Result<Vec<PublishedReading>, PortError>;

    /// Live tokens waiting for `region` (the sparse pending index).
    async fn pending_tokens(&self, region: &str, now: u64) -> Result<Vec<TokenItem>, PortError>;
    /// Live tokens, newest first, at most `limit`.
    async fn tokens(&self, limit: usize, now: u64) -> Result<Page<TokenItem>, PortError>;
    /// Claim a token: pending, or claimed with a lapsed claim (or ours).
    async fn claim_token(
        &self,
        id: &str,
        owner: &str,
        now: u64,
        claim_ms: u64,
    ) -> Result<Write, PortError>;
    /// Extend our claim while we work.
    async fn extend_claim(
        &self,
        id: &str,
        owner: &str,
        now: u64,
        claim_ms: u64,
    ) -> Result<Write, PortError>;
    /// Close a token (done or expired) and take it off the pending index.
    async fn finish_token(
        &self,
        id: &str,
        status: TokenStatus,
        note: &str,
        now: u64,
    ) -> Result<Write, PortError>;

    /// Read `region`'s duty item (`core::duty`; strongly consistent).
    async fn read_duty(&self, region: &str) -> Result<Option<DutyItem>, PortError>;
    /// One conditional write of a duty item (`core::duty::DutyWrite`).
    async fn write_duty(&self, w: &DutyWrite) -> Result<Write, PortError>;

    /// Append a journal entry (kept for [`crate::core::plan::ITEM_RETENTION_SECS`]).
    async fn journal(&self, e: &Event) -> Result<(), PortError>;
    /// The newest live entries, at most `limit`, oldest first.
    async fn events(&self, limit: usize, now: u64) -> Result<Page<Event>, PortError>;
}
