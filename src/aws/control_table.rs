//! The control table's items, typed: the control record, votes, task
//! tokens and the journal. Every change to the record is a conditional write
//! on the `version` read; a lost race comes back as [`Write::Conflict`]
//! (`ConditionalCheckFailedException`, or `ReplicatedWriteConflictException`
//! under MRSC), never as an error: the caller re-reads and decides again.
//!
//! Times are unix milliseconds in `N` attributes when the daemon writes
//! them; the workflow writes RFC 3339 strings (`$$.State.EnteredTime`), so
//! readers accept both.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use crate::core::control::{ControlRecord, Mode, Phase};
use crate::core::health::Verdict;
use crate::core::plan::FailoverPlan;
use crate::core::quorum::Vote;
use crate::core::tokens::{TokenStatus, TokenView};

use super::dynamo::PENDING_INDEX;

type Item = HashMap<String, AttributeValue>;

/// Outcome of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Written,
    /// Someone else moved first (or the item is not in the expected state).
    Conflict,
}

/// A control-table call failed (not a lost race: a real failure).
#[derive(Debug, thiserror::Error)]
#[error("control table {table} in {region}: {op}: {detail}")]
pub struct StoreError {
    pub op: &'static str,
    pub table: String,
    pub region: String,
    pub detail: String,
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    /// Unix ms.
    pub at: u64,
    /// Who: a region, `workflow`, or `operator:<name>`.
    pub who: String,
    pub kind: String,
    pub epoch: Option<u64>,
    pub detail: String,
}

/// Unix milliseconds now (wall clock: votes are compared across hosts).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 with milliseconds, for humans and the journal's sort key.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
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

fn get_bool(item: &Item, k: &str) -> bool {
    matches!(item.get(k), Some(AttributeValue::Bool(true)))
}

/// A time attribute: unix ms (`N`) or RFC 3339 (`S`).
fn get_time(item: &Item, k: &str) -> Option<u64> {
    match item.get(k)? {
        AttributeValue::N(x) => x.parse::<f64>().ok().map(|f| f as u64),
        AttributeValue::S(x) => parse_time(x),
        _ => None,
    }
}

/// Parse RFC 3339 (`2026-11-26T17:56:54.123Z`, `...+00:00`) to unix ms.
pub fn parse_time(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t
        .strip_suffix("+00:00")
        .map(|x| format!("{x}Z"))
        .unwrap_or_else(|| t.to_string());
    humantime::parse_rfc3339_weak(&t)
        .ok()
        .and_then(|st| st.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
}

fn is_conflict<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    matches!(
        e.as_service_error().and_then(|s| s.code()),
        Some(
            "ConditionalCheckFailedException"
                | "ReplicatedWriteConflictException"
                | "TransactionConflictException"
        )
    )
}

const CONTROL: &str = "CONTROL";

/// The control table in one region (one replica).
#[derive(Clone)]
pub struct ControlTable {
    client: Client,
    table: String,
    region: String,
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

    fn err<E>(&self, op: &'static str, e: SdkError<E>) -> StoreError
    where
        E: std::error::Error + 'static,
    {
        StoreError {
            op,
            table: self.table.clone(),
            region: self.region.clone(),
            detail: DisplayErrorContext(&e).to_string(),
        }
    }

    /// A conditional write's outcome: a failed condition (or an MRSC
    /// replicated-write conflict) is a lost race, not an error.
    fn conditional<O, E>(
        &self,
        op: &'static str,
        r: Result<O, SdkError<E>>,
    ) -> Result<Write, StoreError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match r {
            Ok(_) => Ok(Write::Written),
            Err(e) if is_conflict(&e) => Ok(Write::Conflict),
            Err(e) => Err(self.err(op, e)),
        }
    }

    fn key(pk: &str, sk: &str) -> Item {
        HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
    }

    // ----- the control record -----

    /// Read the record (strongly consistent read of this replica).
    pub async fn read_record(&self) -> Result<Option<ControlRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(CONTROL, CONTROL)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("GetItem CONTROL", e))?;
        Ok(out.item().map(record_from_item))
    }

    /// Create the record if there is none: epoch 1, `active`, auto mode.
    pub async fn initialize(&self, active: &str, by: &str, now: u64) -> Result<Write, StoreError> {
        let mut item = Self::key(CONTROL, CONTROL);
        item.extend([
            ("version".to_string(), n(1)),
            ("epoch".to_string(), n(1)),
            ("active".to_string(), s(active)),
            ("mode".to_string(), s("auto")),
            ("state".to_string(), s("steady")),
            ("changed_by".to_string(), s(by)),
            ("changed_at".to_string(), n(now)),
            (
                "reason".to_string(),
                s("initialized: highest-priority region up by quorum"),
            ),
        ]);
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        self.conditional("PutItem CONTROL (initialize)", r)
    }

    /// Claim the next epoch for a failover: conditional on the version read.
    pub async fn claim_failover(&self, p: &FailoverPlan, now: u64) -> Result<Write, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(CONTROL, CONTROL)))
            .condition_expression("version = :v AND #state = :steady")
            .update_expression(
                "SET version = :nv, epoch = :epoch, #state = :failing, target = :to, execution = :exec, \
                 initiator = :init, previous = active, changed_by = :by, changed_at = :now, reason = :reason, \
                 last_failover_at = :now, ungraceful = :ung, old_region_healthy = :orh, forced = :forced, \
                 step = :step REMOVE aborted",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":v", n(p.expected_version))
            .expression_attribute_values(":nv", n(p.expected_version + 1))
            .expression_attribute_values(":steady", s("steady"))
            .expression_attribute_values(":epoch", n(p.epoch))
            .expression_attribute_values(":failing", s("failing_over"))
            .expression_attribute_values(":to", s(&p.to))
            .expression_attribute_values(":exec", s(&p.execution))
            .expression_attribute_values(":init", s(&p.initiator))
            .expression_attribute_values(":by", s(&p.changed_by))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":reason", s(&p.reason))
            .expression_attribute_values(":ung", AttributeValue::Bool(p.ungraceful))
            .expression_attribute_values(":orh", AttributeValue::Bool(p.old_region_healthy))
            .expression_attribute_values(":forced", AttributeValue::Bool(p.forced))
            .expression_attribute_values(":step", s("claimed"))
            .return_values(ReturnValue::None)
            .send()
            .await;
        self.conditional("UpdateItem CONTROL (claim failover)", r)
    }

    /// Pause or resume.
    pub async fn set_mode(
        &self,
        mode: Mode,
        expected_version: u64,
        reason: &str,
        by: &str,
        now: u64,
    ) -> Result<Write, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(CONTROL, CONTROL)))
            .condition_expression("version = :v")
            .update_expression("SET version = :nv, #mode = :mode, changed_by = :by, changed_at = :now, reason = :reason")
            .expression_attribute_names("#mode", "mode")
            .expression_attribute_values(":v", n(expected_version))
            .expression_attribute_values(":nv", n(expected_version + 1))
            .expression_attribute_values(":mode", s(if mode == Mode::Paused { "paused" } else { "auto" }))
            .expression_attribute_values(":by", s(by))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":reason", s(reason))
            .send()
            .await;
        self.conditional("UpdateItem CONTROL (mode)", r)
    }

    /// An execution ended without settling the record: mark it steady.
    pub async fn settle(
        &self,
        expected_version: u64,
        execution: &str,
        by: &str,
        now: u64,
    ) -> Result<Write, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(CONTROL, CONTROL)))
            .condition_expression("version = :v AND execution = :exec AND #state = :failing")
            .update_expression("SET version = :nv, #state = :steady, step = :step, changed_by = :by, changed_at = :now")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":v", n(expected_version))
            .expression_attribute_values(":nv", n(expected_version + 1))
            .expression_attribute_values(":exec", s(execution))
            .expression_attribute_values(":failing", s("failing_over"))
            .expression_attribute_values(":steady", s("steady"))
            .expression_attribute_values(":step", s("settled"))
            .expression_attribute_values(":by", s(by))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        self.conditional("UpdateItem CONTROL (settle)", r)
    }

    // ----- votes -----

    /// Publish this daemon's vote (its own item: votes never conflict).
    pub async fn put_vote(&self, v: &Vote) -> Result<(), StoreError> {
        let view: HashMap<String, AttributeValue> = v
            .view
            .iter()
            .map(|(r, verdict)| {
                (
                    r.clone(),
                    s(if *verdict == Verdict::Down {
                        "down"
                    } else {
                        "up"
                    }),
                )
            })
            .collect();
        let mut item = Self::key("VOTE", &v.observer);
        item.extend([
            ("at".to_string(), n(v.at)),
            ("seen_epoch".to_string(), n(v.seen_epoch)),
            ("view".to_string(), AttributeValue::M(view)),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.err("PutItem VOTE", e))?;
        Ok(())
    }

    /// Every region's latest vote (one query).
    pub async fn read_votes(&self) -> Result<Vec<Vote>, StoreError> {
        let items = self.query_pk("VOTE", false, None).await?;
        Ok(items
            .iter()
            .filter_map(|it| {
                let view = it.get("view")?.as_m().ok()?;
                Some(Vote {
                    observer: get_s(it, "sk")?,
                    at: get_time(it, "at")?,
                    seen_epoch: get_n(it, "seen_epoch").unwrap_or(0),
                    view: view
                        .iter()
                        .filter_map(|(r, v)| {
                            let verdict = match v.as_s().ok()?.as_str() {
                                "down" => Verdict::Down,
                                "up" => Verdict::Up,
                                _ => return None,
                            };
                            Some((r.clone(), verdict))
                        })
                        .collect::<BTreeMap<_, _>>(),
                })
            })
            .collect())
    }

    async fn query_pk(
        &self,
        pk: &str,
        newest_first: bool,
        limit: Option<i32>,
    ) -> Result<Vec<Item>, StoreError> {
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
                .set_limit(limit)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err("Query", e))?;
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) if limit.is_none_or(|l| (items.len() as i32) < l) => {
                    start = Some(k.clone())
                }
                _ => break,
            }
        }
        Ok(items)
    }

    // ----- task tokens -----

    /// Tokens waiting for `region`: a query on the sparse `pending` index.
    pub async fn pending_tokens(&self, region: &str) -> Result<Vec<TokenItem>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(PENDING_INDEX)
            .key_condition_expression("pending_for = :r")
            .expression_attribute_values(":r", s(region))
            .send()
            .await
            .map_err(|e| self.err("Query pending", e))?;
        Ok(out.items().iter().filter_map(token_from_item).collect())
    }

    /// Every token (for `status`).
    pub async fn all_tokens(&self) -> Result<Vec<TokenItem>, StoreError> {
        Ok(self
            .query_pk("TOKEN", false, None)
            .await?
            .iter()
            .filter_map(token_from_item)
            .collect())
    }

    /// Read one token (strongly consistent).
    pub async fn token(&self, id: &str) -> Result<Option<TokenItem>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key("TOKEN", id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("GetItem TOKEN", e))?;
        Ok(out.item().and_then(token_from_item))
    }

    /// Claim a token: pending, or claimed with a lapsed claim.
    pub async fn claim_token(
        &self,
        id: &str,
        owner: &str,
        now: u64,
        claim_ms: u64,
    ) -> Result<Write, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key("TOKEN", id)))
            .condition_expression(
                "attribute_exists(pk) AND (#status = :pending OR (#status = :claimed AND (claim_until < :now OR claimed_by = :me)))",
            )
            .update_expression("SET #status = :claimed, claimed_by = :me, claim_until = :until, claimed_at = :now ADD claims :one")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":until", n(now + claim_ms))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        self.conditional("UpdateItem TOKEN (claim)", r)
    }

    /// Extend our claim while we work.
    pub async fn extend_claim(
        &self,
        id: &str,
        owner: &str,
        now: u64,
        claim_ms: u64,
    ) -> Result<Write, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key("TOKEN", id)))
            .condition_expression("#status = :claimed AND claimed_by = :me")
            .update_expression("SET claim_until = :until")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":until", n(now + claim_ms))
            .send()
            .await;
        self.conditional("UpdateItem TOKEN (extend)", r)
    }

    /// Close a token (done or expired) and take it off the pending index.
    pub async fn finish_token(
        &self,
        id: &str,
        status: TokenStatus,
        note: &str,
        now: u64,
    ) -> Result<Write, StoreError> {
        let st = match status {
            TokenStatus::Done => "done",
            TokenStatus::Expired => "expired",
            _ => "pending",
        };
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key("TOKEN", id)))
            .condition_expression(
                "attribute_exists(pk) AND #status <> :done AND #status <> :expired",
            )
            .update_expression(
                "SET #status = :st, note = :note, finished_at = :now REMOVE pending_for",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":done", s("done"))
            .expression_attribute_values(":expired", s("expired"))
            .expression_attribute_values(":st", s(st))
            .expression_attribute_values(":note", s(note))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        self.conditional("UpdateItem TOKEN (finish)", r)
    }

    // ----- the journal -----

    /// Append an event.
    pub async fn journal(&self, e: &Event) -> Result<(), StoreError> {
        let mut item = Self::key(
            "EVENT",
            &format!(
                "{}#{}#{}#{:04x}",
                rfc3339(e.at),
                e.who,
                e.kind,
                std::process::id() & 0xffff
            ),
        );
        item.extend([
            ("at".to_string(), s(rfc3339(e.at))),
            ("region".to_string(), s(&e.who)),
            ("kind".to_string(), s(&e.kind)),
            ("detail".to_string(), s(&e.detail)),
        ]);
        if let Some(ep) = e.epoch {
            item.insert("epoch".into(), n(ep));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|err| self.err("PutItem EVENT", err))?;
        Ok(())
    }

    /// The newest `limit` events, oldest first.
    pub async fn events(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        let items = self.query_pk("EVENT", false, None).await?;
        let mut events: Vec<Event> = items
            .iter()
            .filter_map(|it| {
                Some(Event {
                    at: get_time(it, "at")?,
                    who: get_s(it, "region").unwrap_or_default(),
                    kind: get_s(it, "kind").unwrap_or_default(),
                    epoch: get_n(it, "epoch"),
                    detail: get_s(it, "detail").unwrap_or_default(),
                })
            })
            .collect();
        events.sort_by(|a, b| a.at.cmp(&b.at).then(a.kind.cmp(&b.kind)));
        let skip = events.len().saturating_sub(limit);
        Ok(events.split_off(skip))
    }
}

fn record_from_item(it: &Item) -> ControlRecord {
    ControlRecord {
        version: get_n(it, "version").unwrap_or(0),
        epoch: get_n(it, "epoch").unwrap_or(0),
        active: get_s(it, "active").unwrap_or_default(),
        mode: if get_s(it, "mode").as_deref() == Some("paused") {
            Mode::Paused
        } else {
            Mode::Auto
        },
        phase: if get_s(it, "state").as_deref() == Some("failing_over") {
            Phase::FailingOver
        } else {
            Phase::Steady
        },
        target: get_s(it, "target"),
        execution: get_s(it, "execution"),
        initiator: get_s(it, "initiator"),
        previous: get_s(it, "previous"),
        changed_by: get_s(it, "changed_by").unwrap_or_default(),
        changed_at: get_time(it, "changed_at").unwrap_or(0),
        reason: get_s(it, "reason").unwrap_or_default(),
        last_failover_at: get_time(it, "last_failover_at"),
        switched_at: get_time(it, "switched_at"),
        step: get_s(it, "step"),
        ungraceful: get_bool(it, "ungraceful"),
        old_region_healthy: get_bool(it, "old_region_healthy"),
        forced: get_bool(it, "forced"),
    }
}

fn token_from_item(it: &Item) -> Option<TokenItem> {
    let status = match get_s(it, "status").as_deref() {
        Some("claimed") => TokenStatus::Claimed,
        Some("done") => TokenStatus::Done,
        Some("expired") => TokenStatus::Expired,
        _ => TokenStatus::Pending,
    };
    Some(TokenItem {
        view: TokenView {
            id: get_s(it, "sk")?,
            target_region: get_s(it, "target_region")?,
            step: get_s(it, "step").unwrap_or_default(),
            status,
            claimed_by: get_s(it, "claimed_by"),
            claim_until: get_n(it, "claim_until"),
            created_at: get_time(it, "created_at").unwrap_or(0),
            timeout_ms: get_n(it, "timeout_seconds").unwrap_or(300) * 1000,
        },
        token: get_s(it, "token").unwrap_or_default(),
        execution_arn: get_s(it, "execution_arn").unwrap_or_default(),
        epoch: get_n(it, "epoch").unwrap_or(0),
        note: get_s(it, "note"),
    })
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
