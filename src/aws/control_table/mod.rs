//! The control table in DynamoDB: the [`ControlStore`] port over one
//! replica of the global table.
//!
//! Every change to the record is one of `core::record::RecordWrite`, sent
//! as a conditional write whose condition and update mirror
//! `core::record::apply` exactly (and, for the workflow's writes,
//! `deploy/statemachines/failover.asl.json`); `tests/lab_aws.rs` runs every
//! write against moto and against `apply` and compares the record read back
//! (`tests/lab_approval.rs` the proposal writes beside a running fleet). A lost condition
//! (`ConditionalCheckFailedException`, or `ReplicatedWriteConflictException`
//! under MRSC) is [`Write::Conflict`], never an error: the caller re-reads
//! and decides again.
//!
//! Times are unix milliseconds in `N` attributes when the daemon writes
//! them; the workflow writes RFC 3339 strings (`$$.State.EnteredTime`), so
//! readers accept both. An item that cannot be decoded (a missing version,
//! an unknown state, mode, step or token status) is an error of kind
//! `Malformed`, never a silent default; in lists the bad item is skipped
//! and logged so one bad item cannot hide the others.
//!
//! The port's parts live beside their encodings: `record.rs` (the control
//! record: decoding, reading, one function per write), `duty.rs` (which
//! of a region's daemons holds its active duties), `votes.rs` (votes
//! and published readings), `tokens.rs` (the workflow's task tokens) and
//! `journal.rs` (the event journal). This file holds the table, the helpers
//! they share and the one `impl ControlStore`, which hands each method to
//! its part.

mod duty;
mod journal;
mod record;
mod tokens;
mod votes;

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use tracing::warn;

use super::errors::port_error;
use crate::core::control::ControlRecord;
use crate::core::duty::{DutyItem, DutyWrite};
use crate::core::quorum::Vote;
use crate::core::record::RecordWrite;
use crate::core::tokens::TokenStatus;
use crate::ports::store::{ControlStore, Event, Page, PublishedReading, TokenItem, Write, is_live};
use crate::ports::{ErrorKind, PortError};

pub use votes::{vote_from, vote_item};

type Item = HashMap<String, AttributeValue>;

const SERVICE: &str = "DynamoDB";
const CONTROL: &str = "CONTROL";

pub use crate::ports::clock::{parse_time, rfc3339};

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn b(v: bool) -> AttributeValue {
    AttributeValue::Bool(v)
}

fn get_s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, k: &str) -> Option<u64> {
    match item.get(k)? {
        AttributeValue::N(x) => x.parse::<f64>().ok().map(|f| f as u64),
        AttributeValue::S(x) => x.parse().ok(),
        _ => None,
    }
}

/// A time attribute: unix ms (`N`) or RFC 3339 (`S`).
fn get_time(item: &Item, k: &str) -> Option<u64> {
    match item.get(k)? {
        AttributeValue::N(x) => x.parse::<f64>().ok().map(|f| f as u64),
        AttributeValue::S(x) => parse_time(x),
        _ => None,
    }
}

/// The control table in one region (one replica).
#[derive(Clone)]
pub struct ControlTable {
    client: Client,
    table: String,
    region: String,
}

/// A decoding problem: which attribute, and what was wrong.
struct Bad(String);

fn need<T>(v: Option<T>, what: &str) -> Result<T, Bad> {
    v.ok_or_else(|| Bad(format!("missing or unreadable attribute {what:?}")))
}

/// An optional attribute read strictly: absent is `None`, present but not
/// decodable by `read` is an error (never a default a decision would act
/// on, such as 0 aborts or a proposal made at the epoch).
fn optional<T>(it: &Item, k: &str, read: fn(&Item, &str) -> Option<T>) -> Result<Option<T>, Bad> {
    match it.get(k) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(_) => read(it, k)
            .map(Some)
            .ok_or_else(|| Bad(format!("unreadable attribute {k:?}"))),
    }
}

/// A flag: absent is false (it is written with the first claim), present
/// but not a boolean is an error.
fn flag(it: &Item, k: &str) -> Result<bool, Bad> {
    match it.get(k) {
        None => Ok(false),
        Some(AttributeValue::Bool(b)) => Ok(*b),
        Some(_) => Err(Bad(format!("unreadable attribute {k:?}: not a boolean"))),
    }
}

impl ControlTable {
    pub fn new(client: Client, table: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            region: region.into(),
        }
    }

    /// The replica's region.
    pub fn region(&self) -> &str {
        &self.region
    }

    fn fail<E>(
        &self,
        op: &str,
        e: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> PortError
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        port_error(SERVICE, format!("{op} on {}", self.table), &self.region, e)
    }

    fn malformed(&self, op: &str, what: String) -> PortError {
        PortError::malformed(
            SERVICE,
            format!("{op} on {}", self.table),
            &self.region,
            what,
        )
    }

    /// A conditional write's outcome: a failed condition (or an MRSC
    /// replicated-write conflict) is a lost race, not an error.
    fn conditional<O, E>(
        &self,
        op: &str,
        r: Result<
            O,
            aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
        >,
    ) -> Result<Write, PortError>
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        match r {
            Ok(_) => Ok(Write::Written),
            Err(e) => {
                let err = self.fail(op, e);
                if err.kind == ErrorKind::Conflict {
                    Ok(Write::Conflict)
                } else {
                    Err(err)
                }
            }
        }
    }

    fn key(pk: &str, sk: &str) -> Item {
        HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
    }

    async fn query_pk(
        &self,
        pk: &str,
        newest_first: bool,
        limit: Option<usize>,
    ) -> Result<(Vec<Item>, bool), PortError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .scan_index_forward(!newest_first)
                .set_limit(limit.map(|l| (l + 1).min(i32::MAX as usize) as i32))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.fail(&format!("Query {pk}"), e))?;
            items.extend(out.items().iter().cloned());
            if let Some(l) = limit
                && items.len() > l
            {
                items.truncate(l);
                return Ok((items, true));
            }
            match out.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => return Ok((items, false)),
            }
        }
    }
}

/// Decode every item of a list; skip (and log) those that cannot be.
fn decode_all<T>(
    table: &ControlTable,
    what: &str,
    items: &[Item],
    now: u64,
    f: fn(&Item) -> Result<T, Bad>,
) -> Vec<T> {
    items
        .iter()
        .filter(|it| is_live(get_n(it, "ttl"), now))
        .filter_map(|it| match f(it) {
            Ok(v) => Some(v),
            Err(Bad(why)) => {
                warn!(
                    table = %table.table,
                    replica = %table.region,
                    item = ?get_s(it, "sk"),
                    %why,
                    "skipping a {what} item that cannot be decoded"
                );
                None
            }
        })
        .collect()
}

#[async_trait]
impl ControlStore for ControlTable {
    fn replica(&self) -> &str {
        &self.region
    }

    async fn read_record(&self) -> Result<Option<ControlRecord>, PortError> {
        self.fetch_record().await
    }

    async fn write_record(&self, w: &RecordWrite) -> Result<Write, PortError> {
        self.send_record_write(w).await
    }

    async fn put_vote(&self, v: &Vote) -> Result<(), PortError> {
        self.send_vote(v).await
    }

    async fn read_duty(&self, region: &str) -> Result<Option<DutyItem>, PortError> {
        self.fetch_duty(region).await
    }

    async fn write_duty(&self, w: &DutyWrite) -> Result<Write, PortError> {
        self.send_duty(w).await
    }

    async fn read_votes(&self) -> Result<Vec<Vote>, PortError> {
        self.query_votes().await
    }

    async fn put_reading(&self, r: &PublishedReading) -> Result<(), PortError> {
        self.send_reading(r).await
    }

    async fn read_readings(&self) -> Result<Vec<PublishedReading>, PortError> {
        self.query_readings().await
    }

    async fn pending_tokens(&self, region: &str, now: u64) -> Result<Vec<TokenItem>, PortError> {
        self.query_pending_tokens(region, now).await
    }

    async fn tokens(&self, limit: usize, now: u64) -> Result<Page<TokenItem>, PortError> {
        self.query_tokens(limit, now).await
    }

    async fn claim_token(
        &self,
        id: &str,
        owner: &str,
        now: u64,
        claim_ms: u64,
    ) -> Result<Write, PortError> {
        self.send_claim(id, owner, now, claim_ms).await
    }

    async fn extend_claim(
        &self,
        id: &str,
        owner: &str,
        now: u64,
        claim_ms: u64,
    ) -> Result<Write, PortError> {
        self.send_claim_extension(id, owner, now, claim_ms).await
    }

    async fn finish_token(
        &self,
        id: &str,
        status: TokenStatus,
        note: &str,
        now: u64,
    ) -> Result<Write, PortError> {
        self.send_finish(id, status, note, now).await
    }

    async fn journal(&self, e: &Event) -> Result<(), PortError> {
        self.send_event(e).await
    }

    async fn events(&self, limit: usize, now: u64) -> Result<Page<Event>, PortError> {
        self.query_events(limit, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_parse_both_forms() {
        let ms = 1_795_000_000_123;
        assert_eq!(parse_time(&rfc3339(ms)), Some(ms));
        assert_eq!(
            parse_time("2026-11-26T17:56:54.123Z"),
            Some(1_795_715_814_123)
        );
        assert_eq!(
            parse_time("2026-11-26T17:56:54.123+00:00"),
            Some(1_795_715_814_123)
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}
