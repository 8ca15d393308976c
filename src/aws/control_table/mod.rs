//! The control table in DynamoDB: the [`ControlStore`] port over one
//! replica of the global table.
//!
//! Every change to the record is one of `core::record::RecordWrite`, sent
//! as a conditional write whose condition and update mirror
//! `core::record::apply` exactly (and, for the workflow's writes,
//! `deploy/statemachines/failover.asl.json`); `tests/lab_aws.rs` runs each
//! write against moto and against `apply` and compares. A lost condition
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

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use tracing::warn;

use super::dynamo::PENDING_INDEX;
use super::errors::port_error;
use crate::core::control::{ControlRecord, Mode, Phase, Proposal, ProposalState, Step};
use crate::core::health::Verdict;
use crate::core::quorum::{EndpointTraffic, TRAILING_MS, Traffic, Vote};
use crate::core::record::{RecordWrite, Settlement};
use crate::core::tokens::{TokenStatus, TokenView};
use crate::ports::store::{
    ControlStore, Event, Page, PublishedReading, TokenItem, Write, is_live, ttl_for,
};
use crate::ports::{ErrorKind, PortError};

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

    /// One UpdateItem on the record.
    async fn update_record(
        &self,
        op: &str,
        condition: &str,
        update: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Write, PortError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(CONTROL, CONTROL)))
            .condition_expression(condition)
            .update_expression(update);
        for (k, v) in names {
            req = req.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            req = req.expression_attribute_values(k, v);
        }
        let r = req.send().await;
        self.conditional(op, r)
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
            if let Some(l) = limit {
                if items.len() > l {
                    items.truncate(l);
                    return Ok((items, true));
                }
            }
            match out.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => return Ok((items, false)),
            }
        }
    }
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Auto => "auto",
        Mode::Paused => "paused",
    }
}

fn record_from_item(it: &Item) -> Result<ControlRecord, Bad> {
    let mode = match need(get_s(it, "mode"), "mode")?.as_str() {
        "auto" => Mode::Auto,
        "paused" => Mode::Paused,
        other => return Err(Bad(format!("unknown mode {other:?}"))),
    };
    let phase = match need(get_s(it, "state"), "state")?.as_str() {
        "steady" => Phase::Steady,
        "failing_over" => Phase::FailingOver,
        other => return Err(Bad(format!("unknown state {other:?}"))),
    };
    let step_name = need(get_s(it, "step"), "step")?;
    let step = Step::parse(&step_name).ok_or_else(|| Bad(format!("unknown step {step_name:?}")))?;
    // A failover's flags decide how it runs (drain or not, forced): a claim
    // writes all three, so a record failing over without them is damaged.
    let failover_flag = |k: &str| -> Result<bool, Bad> {
        if phase == Phase::FailingOver && !it.contains_key(k) {
            return Err(Bad(format!(
                "missing attribute {k:?} on a record failing over"
            )));
        }
        flag(it, k)
    };
    Ok(ControlRecord {
        version: need(get_n(it, "version"), "version")?,
        incarnation: need(get_s(it, "incarnation"), "incarnation")?,
        epoch: need(get_n(it, "epoch"), "epoch")?,
        active: need(get_s(it, "active"), "active")?,
        mode,
        phase,
        target: get_s(it, "target"),
        execution: get_s(it, "execution"),
        initiator: get_s(it, "initiator"),
        previous: get_s(it, "previous"),
        changed_by: get_s(it, "changed_by").unwrap_or_default(),
        changed_at: need(get_time(it, "changed_at"), "changed_at")?,
        reason: get_s(it, "reason").unwrap_or_default(),
        last_failover_at: optional(it, "last_failover_at", get_time)?,
        switched_at: optional(it, "switched_at", get_time)?,
        step,
        // The planner's backoff after aborted failovers: written as 0 with
        // the record, never read as 0 when it is not there.
        aborts: need(optional(it, "aborts", get_n)?, "aborts")?,
        ungraceful: failover_flag("ungraceful")?,
        old_region_healthy: failover_flag("old_region_healthy")?,
        forced: failover_flag("forced")?,
        proposal: proposal_from_item(it)?,
    })
}

/// The proposal's attributes (`proposal_*`, flat so the writes can put
/// conditions on its epoch and state), when there is one.
fn proposal_from_item(it: &Item) -> Result<Option<Proposal>, Bad> {
    let Some(state) = get_s(it, "proposal_state") else {
        return Ok(None);
    };
    let state = ProposalState::ALL
        .into_iter()
        .find(|s| s.as_str() == state)
        .ok_or_else(|| Bad(format!("unknown proposal_state {state:?}")))?;
    Ok(Some(Proposal {
        epoch: need(get_n(it, "proposal_epoch"), "proposal_epoch")?,
        from: need(get_s(it, "proposal_from"), "proposal_from")?,
        target: need(get_s(it, "proposal_target"), "proposal_target")?,
        proposer: get_s(it, "proposal_by").unwrap_or_default(),
        // The approval timeout counts from it: a missing time would read as
        // "timed out long ago".
        proposed_at: need(optional(it, "proposal_at", get_time)?, "proposal_at")?,
        reason: get_s(it, "proposal_reason").unwrap_or_default(),
        state,
        decided_by: get_s(it, "proposal_decided_by"),
        decided_at: get_time(it, "proposal_decided_at"),
        decision: get_s(it, "proposal_decision"),
    }))
}

/// Every proposal attribute (a claim removes them all).
const PROPOSAL_ATTRS: &str = "proposal_state, proposal_epoch, proposal_from, proposal_target, \
     proposal_by, proposal_at, proposal_reason, proposal_decided_by, proposal_decided_at, proposal_decision";

fn vote_from_item(it: &Item) -> Result<Vote, Bad> {
    let view = need(it.get("view").and_then(|v| v.as_m().ok()), "view")?;
    let mut verdicts = BTreeMap::new();
    for (r, v) in view {
        let verdict = match v.as_s().map(String::as_str) {
            Ok("down") => Verdict::Down,
            Ok("up") => Verdict::Up,
            _ => return Err(Bad(format!("unknown verdict on {r}: {v:?}"))),
        };
        verdicts.insert(r.clone(), verdict);
    }
    let observer = need(get_s(it, "sk"), "sk")?;
    // Counts that cannot be decoded are unknown (`None`: readers take that
    // as "not counted"), never a reason to lose the vote itself.
    let traffic = match it.get("traffic") {
        None => None,
        Some(t) => match traffic_from_attr(t) {
            Ok(t) => Some(t),
            Err(Bad(why)) => {
                warn!(%observer, why, "the vote's traffic counts cannot be decoded; taking them as unknown");
                None
            }
        },
    };
    Ok(Vote {
        observer,
        at: need(get_time(it, "at"), "at")?,
        seen_epoch: need(get_n(it, "seen_epoch"), "seen_epoch")?,
        view: verdicts,
        traffic,
    })
}

/// A vote's `traffic` attribute: a map with `counted_ms` (N) and `e` (a map
/// from `region/endpoint` to one string of numbers, `last_ago_ms`, the sums
/// over `TRAILING_MS`, then the busiest minute of the hour when known,
/// comma-separated: a few dozen bytes an endpoint, where a nested map of
/// numbers would cost several times that). A string without the last number
/// (from a daemon that did not publish it) reads as "peak unknown".
fn traffic_attr(t: &Traffic) -> AttributeValue {
    let endpoints: HashMap<String, AttributeValue> = t
        .endpoints
        .iter()
        .map(|(k, e)| {
            let mut text = e.last_ago_ms.to_string();
            for x in e.sums.into_iter().chain(e.peak_minute) {
                text.push(',');
                text.push_str(&x.to_string());
            }
            (k.clone(), s(text))
        })
        .collect();
    AttributeValue::M(HashMap::from([
        ("counted_ms".to_string(), n(t.counted_ms)),
        ("e".to_string(), AttributeValue::M(endpoints)),
    ]))
}

fn traffic_from_attr(v: &AttributeValue) -> Result<Traffic, Bad> {
    let m = v.as_m().map_err(|_| Bad("traffic is not a map".into()))?;
    let counted_ms = need(get_n(m, "counted_ms"), "traffic.counted_ms")?;
    let e = need(m.get("e").and_then(|v| v.as_m().ok()), "traffic.e")?;
    let mut endpoints = BTreeMap::new();
    for (k, v) in e {
        let text = v
            .as_s()
            .map_err(|_| Bad(format!("traffic.e.{k} is not a string")))?;
        let nums: Vec<u64> = text
            .split(',')
            .map(|x| x.parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|e| Bad(format!("traffic.e.{k} = {text:?}: {e}")))?;
        let Some((last, sums)) = nums.split_first() else {
            return Err(Bad(format!("traffic.e.{k} is empty")));
        };
        let (sums, peak_minute) = match sums.len() {
            n if n == TRAILING_MS.len() => (sums, None),
            n if n == TRAILING_MS.len() + 1 => (&sums[..n - 1], Some(sums[n - 1])),
            _ => {
                return Err(Bad(format!(
                    "traffic.e.{k} = {text:?}: want {} or {} numbers",
                    TRAILING_MS.len() + 1,
                    TRAILING_MS.len() + 2
                )));
            }
        };
        let sums: [u64; TRAILING_MS.len()] = sums.try_into().map_err(|_| {
            Bad(format!(
                "traffic.e.{k} = {text:?}: want {} numbers",
                TRAILING_MS.len() + 1
            ))
        })?;
        endpoints.insert(
            k.clone(),
            EndpointTraffic {
                last_ago_ms: *last,
                sums,
                peak_minute,
            },
        );
    }
    Ok(Traffic {
        counted_ms,
        endpoints,
    })
}

/// The vote item as written (key included).
pub fn vote_item(v: &Vote) -> Item {
    let view: HashMap<String, AttributeValue> = v
        .view
        .iter()
        .map(|(r, verdict)| {
            let name = match verdict {
                Verdict::Down => "down",
                Verdict::Up => "up",
            };
            (r.clone(), s(name))
        })
        .collect();
    let mut item = ControlTable::key("VOTE", &v.observer);
    item.extend([
        ("at".to_string(), n(v.at)),
        ("seen_epoch".to_string(), n(v.seen_epoch)),
        ("view".to_string(), AttributeValue::M(view)),
    ]);
    if let Some(t) = &v.traffic {
        item.insert("traffic".to_string(), traffic_attr(t));
    }
    item
}

/// A decoded vote item (for tests of the encoding).
pub fn vote_from(item: &Item) -> Option<Vote> {
    vote_from_item(item).ok()
}

fn token_from_item(it: &Item) -> Result<TokenItem, Bad> {
    let status = match need(get_s(it, "status"), "status")?.as_str() {
        "pending" => TokenStatus::Pending,
        "claimed" => TokenStatus::Claimed,
        "done" => TokenStatus::Done,
        "expired" => TokenStatus::Expired,
        other => return Err(Bad(format!("unknown token status {other:?}"))),
    };
    Ok(TokenItem {
        view: TokenView {
            id: need(get_s(it, "sk"), "sk")?,
            target_region: need(get_s(it, "target_region"), "target_region")?,
            step: need(get_s(it, "step"), "step")?,
            status,
            claimed_by: get_s(it, "claimed_by"),
            claim_until: get_n(it, "claim_until"),
            created_at: need(get_time(it, "created_at"), "created_at")?,
            timeout_ms: need(get_n(it, "timeout_seconds"), "timeout_seconds")? * 1000,
        },
        token: need(get_s(it, "token"), "token")?,
        execution_arn: need(get_s(it, "execution_arn"), "execution_arn")?,
        epoch: need(get_n(it, "epoch"), "epoch")?,
        note: get_s(it, "note"),
    })
}

fn event_from_item(it: &Item) -> Result<Event, Bad> {
    Ok(Event {
        at: need(get_time(it, "at"), "at")?,
        who: need(get_s(it, "region"), "region")?,
        kind: need(get_s(it, "kind"), "kind")?,
        epoch: get_n(it, "epoch"),
        detail: get_s(it, "detail").unwrap_or_default(),
    })
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
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(CONTROL, CONTROL)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail("GetItem CONTROL", e))?;
        match out.item() {
            None => Ok(None),
            Some(it) => record_from_item(it)
                .map(Some)
                .map_err(|Bad(why)| self.malformed("GetItem CONTROL", why)),
        }
    }

    async fn write_record(&self, w: &RecordWrite) -> Result<Write, PortError> {
        let op = format!("UpdateItem CONTROL ({})", w.name());
        match w {
            RecordWrite::Initialize {
                active,
                incarnation,
                by,
                at,
                reason,
            } => {
                let mut item = Self::key(CONTROL, CONTROL);
                item.extend([
                    ("version".to_string(), n(1)),
                    ("incarnation".to_string(), s(incarnation)),
                    ("epoch".to_string(), n(1)),
                    ("active".to_string(), s(active)),
                    ("mode".to_string(), s("auto")),
                    ("state".to_string(), s("steady")),
                    ("step".to_string(), s(Step::Init.as_str())),
                    ("aborts".to_string(), n(0)),
                    ("changed_by".to_string(), s(by)),
                    ("changed_at".to_string(), n(*at)),
                    ("reason".to_string(), s(reason)),
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
            RecordWrite::Claim { plan: p } => {
                let condition = if p.supersedes.is_some() {
                    "version = :v"
                } else {
                    "version = :v AND #state = :steady"
                };
                let mut values = vec![
                    (":v", n(p.expected_version)),
                    (":nv", n(p.expected_version + 1)),
                    (":epoch", n(p.epoch)),
                    (":failing", s("failing_over")),
                    (":to", s(&p.to)),
                    (":exec", s(&p.execution)),
                    (":init", s(&p.initiator)),
                    (":by", s(&p.changed_by)),
                    (":now", n(p.claimed_at)),
                    (":reason", s(&p.reason)),
                    (":ung", b(p.ungraceful)),
                    (":orh", b(p.old_region_healthy)),
                    (":forced", b(p.forced)),
                    (":step", s(Step::Claimed.as_str())),
                ];
                if p.supersedes.is_none() {
                    values.push((":steady", s("steady")));
                }
                self.update_record(
                    &op,
                    condition,
                    &format!("SET version = :nv, epoch = :epoch, #state = :failing, target = :to, execution = :exec, \
                     initiator = :init, previous = active, changed_by = :by, changed_at = :now, reason = :reason, \
                     last_failover_at = :now, ungraceful = :ung, old_region_healthy = :orh, forced = :forced, \
                     step = :step REMOVE {PROPOSAL_ATTRS}"),
                    &[("#state", "state")],
                    values,
                )
                .await
            }
            RecordWrite::Propose {
                expected_version,
                epoch,
                from,
                target,
                by,
                at,
                reason,
            } => {
                self.update_record(
                    &op,
                    "version = :v AND #state = :steady AND epoch = :cur \
                     AND (attribute_not_exists(proposal_state) OR NOT proposal_state IN (:proposed, :approved))",
                    "SET version = :nv, proposal_state = :proposed, proposal_epoch = :epoch, \
                     proposal_from = :from, proposal_target = :to, proposal_by = :by, proposal_at = :now, \
                     proposal_reason = :preason, changed_by = :by, changed_at = :now, reason = :reason \
                     REMOVE proposal_decided_by, proposal_decided_at, proposal_decision",
                    &[("#state", "state")],
                    vec![
                        (":v", n(*expected_version)),
                        (":nv", n(expected_version + 1)),
                        (":steady", s("steady")),
                        (":cur", n(epoch.saturating_sub(1))),
                        (":proposed", s(ProposalState::Proposed.as_str())),
                        (":approved", s(ProposalState::Approved.as_str())),
                        (":epoch", n(*epoch)),
                        (":from", s(from)),
                        (":to", s(target)),
                        (":by", s(by)),
                        (":now", n(*at)),
                        (":preason", s(reason)),
                        (":reason", s(format!("proposed failover to {target}: {reason}"))),
                    ],
                )
                .await
            }
            RecordWrite::Resolve {
                expected_version,
                epoch,
                state,
                by,
                at,
                reason,
            } => {
                // The states it may be resolved from, as in `core::record::apply`.
                let (cond, mut values) = match state {
                    ProposalState::Withdrawn => (
                        "version = :v AND proposal_epoch = :epoch AND proposal_state IN (:proposed, :approved)",
                        vec![(":approved", s(ProposalState::Approved.as_str()))],
                    ),
                    ProposalState::Proposed => (
                        // Never accepted: nothing resolves back to proposed.
                        "version = :v AND proposal_epoch = :epoch AND proposal_state = :proposed AND attribute_not_exists(pk)",
                        vec![],
                    ),
                    _ => (
                        "version = :v AND proposal_epoch = :epoch AND proposal_state = :proposed",
                        vec![],
                    ),
                };
                values.extend([
                    (":v", n(*expected_version)),
                    (":nv", n(expected_version + 1)),
                    (":epoch", n(*epoch)),
                    (":proposed", s(ProposalState::Proposed.as_str())),
                    (":st", s(state.as_str())),
                    (":by", s(by)),
                    (":now", n(*at)),
                    (":why", s(reason)),
                    (
                        ":reason",
                        s(format!("proposal of epoch {epoch} {}: {reason}", state.as_str())),
                    ),
                ]);
                self.update_record(
                    &op,
                    cond,
                    "SET version = :nv, proposal_state = :st, proposal_decided_by = :by, \
                     proposal_decided_at = :now, proposal_decision = :why, changed_by = :by, \
                     changed_at = :now, reason = :reason",
                    &[],
                    values,
                )
                .await
            }
            RecordWrite::SetMode {
                mode,
                expected_version,
                by,
                at,
                reason,
            } => {
                self.update_record(
                    &op,
                    "version = :v",
                    "SET version = :nv, #mode = :mode, changed_by = :by, changed_at = :now, reason = :reason",
                    &[("#mode", "mode")],
                    vec![
                        (":v", n(*expected_version)),
                        (":nv", n(expected_version + 1)),
                        (":mode", s(mode_name(*mode))),
                        (":by", s(by)),
                        (":now", n(*at)),
                        (":reason", s(reason)),
                    ],
                )
                .await
            }
            RecordWrite::Settle {
                expected_version,
                execution,
                outcome,
                by,
                at,
                reason,
            } => {
                let (cond, update, step) = match outcome {
                    Settlement::Completed => (
                        "version = :v AND execution = :exec AND #state = :failing AND step = :switched",
                        "SET version = :nv, #state = :steady, step = :step, aborts = :zero, changed_by = :by, changed_at = :now, reason = :reason",
                        Step::Done,
                    ),
                    Settlement::Aborted => (
                        "version = :v AND execution = :exec AND #state = :failing AND step <> :switched",
                        "SET version = :nv, #state = :steady, step = :step, changed_by = :by, changed_at = :now, reason = :reason ADD aborts :one",
                        Step::Aborted,
                    ),
                };
                let mut values = vec![
                    (":v", n(*expected_version)),
                    (":nv", n(expected_version + 1)),
                    (":exec", s(execution)),
                    (":failing", s("failing_over")),
                    (":steady", s("steady")),
                    (":switched", s(Step::Switched.as_str())),
                    (":step", s(step.as_str())),
                    (":by", s(by)),
                    (":now", n(*at)),
                    (":reason", s(reason)),
                ];
                values.push(match outcome {
                    Settlement::Completed => (":zero", n(0)),
                    Settlement::Aborted => (":one", n(1)),
                });
                self.update_record(&op, cond, update, &[("#state", "state")], values)
                    .await
            }
            // The workflow's writes, as the state machine sends them (kept
            // here so the lab can check them against `core::record::apply`).
            RecordWrite::Mark { epoch, execution } => {
                self.update_record(
                    &op,
                    "epoch = :epoch AND execution = :exec AND #state = :failing",
                    "SET step = :step ADD version :one",
                    &[("#state", "state")],
                    vec![
                        (":epoch", n(*epoch)),
                        (":exec", s(execution)),
                        (":failing", s("failing_over")),
                        (":step", s(Step::Mark.as_str())),
                        (":one", n(1)),
                    ],
                )
                .await
            }
            RecordWrite::Switch {
                epoch,
                execution,
                from,
                to,
                at,
            } => {
                self.update_record(
                    &op,
                    "epoch = :epoch AND execution = :exec AND #state = :failing",
                    "SET active = :to, previous = :from, step = :step, switched_at = :now ADD version :one",
                    &[("#state", "state")],
                    vec![
                        (":epoch", n(*epoch)),
                        (":exec", s(execution)),
                        (":failing", s("failing_over")),
                        (":to", s(to)),
                        (":from", s(from)),
                        (":step", s(Step::Switched.as_str())),
                        (":now", n(*at)),
                        (":one", n(1)),
                    ],
                )
                .await
            }
            RecordWrite::Steady { epoch, execution } => {
                self.update_record(
                    &op,
                    "epoch = :epoch AND execution = :exec AND #state = :failing",
                    "SET #state = :steady, step = :step, aborts = :zero ADD version :one",
                    &[("#state", "state")],
                    vec![
                        (":epoch", n(*epoch)),
                        (":exec", s(execution)),
                        (":failing", s("failing_over")),
                        (":steady", s("steady")),
                        (":step", s(Step::Done.as_str())),
                        (":zero", n(0)),
                        (":one", n(1)),
                    ],
                )
                .await
            }
            RecordWrite::Abort { epoch, execution } => {
                self.update_record(
                    &op,
                    "epoch = :epoch AND execution = :exec AND #state = :failing AND step <> :switched",
                    "SET #state = :steady, step = :step ADD version :one, aborts :one",
                    &[("#state", "state")],
                    vec![
                        (":epoch", n(*epoch)),
                        (":exec", s(execution)),
                        (":failing", s("failing_over")),
                        (":switched", s(Step::Switched.as_str())),
                        (":steady", s("steady")),
                        (":step", s(Step::Aborted.as_str())),
                        (":one", n(1)),
                    ],
                )
                .await
            }
        }
    }

    async fn put_vote(&self, v: &Vote) -> Result<(), PortError> {
        let item = vote_item(v);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.fail("PutItem VOTE", e))?;
        Ok(())
    }

    async fn read_votes(&self) -> Result<Vec<Vote>, PortError> {
        let (items, _) = self.query_pk("VOTE", false, None).await?;
        Ok(decode_all(self, "vote", &items, 0, vote_from_item))
    }

    async fn put_reading(&self, r: &PublishedReading) -> Result<(), PortError> {
        let reading = serde_json::to_string(&r.reading).map_err(|e| {
            PortError::new(
                SERVICE,
                "PutItem READING",
                &self.region,
                ErrorKind::Validation,
                e,
            )
        })?;
        let mut item = Self::key("READING", &r.check_id);
        item.extend([
            ("reader".to_string(), s(&r.reader)),
            ("read_at".to_string(), n(r.read_at)),
            ("reading".to_string(), s(reading)),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.fail("PutItem READING", e))?;
        Ok(())
    }

    async fn read_readings(&self) -> Result<Vec<PublishedReading>, PortError> {
        fn decode(it: &Item) -> Result<PublishedReading, Bad> {
            let text = need(get_s(it, "reading"), "reading")?;
            Ok(PublishedReading {
                check_id: need(get_s(it, "sk"), "sk")?,
                reader: need(get_s(it, "reader"), "reader")?,
                read_at: need(get_n(it, "read_at"), "read_at")?,
                reading: serde_json::from_str(&text)
                    .map_err(|e| Bad(format!("reading is not valid JSON: {e}")))?,
            })
        }
        let (items, _) = self.query_pk("READING", false, None).await?;
        Ok(decode_all(self, "reading", &items, 0, decode))
    }

    async fn pending_tokens(&self, region: &str, now: u64) -> Result<Vec<TokenItem>, PortError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(PENDING_INDEX)
                .key_condition_expression("pending_for = :r")
                .expression_attribute_values(":r", s(region))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.fail("Query pending", e))?;
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => break,
            }
        }
        Ok(decode_all(self, "token", &items, now, token_from_item))
    }

    async fn tokens(&self, limit: usize, now: u64) -> Result<Page<TokenItem>, PortError> {
        let (items, truncated) = self.query_pk("TOKEN", true, Some(limit)).await?;
        Ok(Page {
            items: decode_all(self, "token", &items, now, token_from_item),
            truncated,
        })
    }

    async fn claim_token(
        &self,
        id: &str,
        owner: &str,
        now: u64,
        claim_ms: u64,
    ) -> Result<Write, PortError> {
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

    async fn extend_claim(
        &self,
        id: &str,
        owner: &str,
        now: u64,
        claim_ms: u64,
    ) -> Result<Write, PortError> {
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

    async fn finish_token(
        &self,
        id: &str,
        status: TokenStatus,
        note: &str,
        now: u64,
    ) -> Result<Write, PortError> {
        let st = match status {
            TokenStatus::Done => "done",
            TokenStatus::Expired => "expired",
            TokenStatus::Pending | TokenStatus::Claimed => {
                return Err(PortError::malformed(
                    SERVICE,
                    "UpdateItem TOKEN (finish)",
                    &self.region,
                    format!("a token is finished as done or expired, not {status:?}"),
                ));
            }
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

    async fn journal(&self, e: &Event) -> Result<(), PortError> {
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
            ("ttl".to_string(), n(ttl_for(e.at))),
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
            .map_err(|err| self.fail("PutItem EVENT", err))?;
        Ok(())
    }

    async fn events(&self, limit: usize, now: u64) -> Result<Page<Event>, PortError> {
        // The sort key starts with the RFC 3339 time: newest first is one
        // bounded query, not a read of the whole journal.
        let (items, truncated) = self.query_pk("EVENT", true, Some(limit)).await?;
        let mut events = decode_all(self, "event", &items, now, event_from_item);
        events.sort_by(|a, b| a.at.cmp(&b.at).then(a.kind.cmp(&b.kind)));
        Ok(Page {
            items: events,
            truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DynamoDB's item size rule: attribute names and strings by their
    /// UTF-8 bytes, numbers by (significant digits / 2) + 1, maps 3 bytes
    /// plus 1 per element (the AWS developer guide's "item sizes").
    fn item_size(item: &Item) -> usize {
        fn value(v: &AttributeValue) -> usize {
            match v {
                AttributeValue::S(x) => x.len(),
                AttributeValue::N(x) => x.trim_start_matches('0').len().div_ceil(2) + 1,
                AttributeValue::Bool(_) => 1,
                AttributeValue::M(m) => {
                    3 + m.iter().map(|(k, v)| k.len() + value(v) + 1).sum::<usize>()
                }
                _ => 0,
            }
        }
        item.iter().map(|(k, v)| k.len() + value(v)).sum()
    }

    fn busy_vote(endpoints: usize) -> Vote {
        let regions = ["us-east-1", "us-west-2", "eu-west-1"];
        let traffic = Traffic {
            counted_ms: 6 * 86_400_000 + 12_345,
            endpoints: (0..endpoints)
                .map(|i| {
                    (
                        Traffic::key(regions[i % 3], &format!("fraud-detector-provisioned-{i}")),
                        EndpointTraffic {
                            last_ago_ms: 59_999,
                            // Busy: 2000 calls a minute, every window full.
                            sums: TRAILING_MS.map(|w| 2000 * (w / 60_000 + 1)),
                            peak_minute: Some(2000),
                        },
                    )
                })
                .collect(),
        };
        Vote {
            observer: "us-west-2".into(),
            at: 1_795_000_000_123,
            seen_epoch: 42,
            view: regions
                .iter()
                .map(|r| (r.to_string(), Verdict::Up))
                .collect(),
            traffic: Some(traffic),
        }
    }

    #[test]
    fn a_vote_with_counts_round_trips_and_stays_small() {
        for n in [0, 1, 9, 30] {
            let v = busy_vote(n);
            let item = vote_item(&v);
            assert_eq!(vote_from(&item), Some(v), "{n} endpoints");
            let size = item_size(&item);
            println!("vote item with {n} busy endpoints: {size} bytes");
            // Under 1 KB (one write unit) for a three-region fleet's nine
            // endpoints would be ideal; under 400 KB is the hard limit.
            assert!(size < 120 * (n + 1) + 200, "{n} endpoints: {size} bytes");
        }
        // Without counts: the vote as before.
        let mut v = busy_vote(0);
        v.traffic = None;
        let item = vote_item(&v);
        assert!(!item.contains_key("traffic"));
        assert_eq!(vote_from(&item), Some(v));
    }

    /// A vote from a daemon that did not publish the busiest minute (seven
    /// numbers per endpoint) still reads, with the peak unknown.
    #[test]
    fn counts_without_a_peak_read_as_peak_unknown() {
        let v = busy_vote(1);
        let mut item = vote_item(&v);
        item.insert(
            "traffic".into(),
            AttributeValue::M(HashMap::from([
                ("counted_ms".into(), n(5)),
                (
                    "e".into(),
                    AttributeValue::M(HashMap::from([("a/b".into(), s("1,2,3,4,5,6,7"))])),
                ),
            ])),
        );
        let t = vote_from(&item).unwrap().traffic.unwrap();
        let e = &t.endpoints["a/b"];
        assert_eq!((e.last_ago_ms, e.sums[5], e.peak_minute), (1, 7, None));
    }

    #[test]
    fn undecodable_counts_are_unknown_and_the_vote_still_counts() {
        let v = busy_vote(2);
        for bad in [
            AttributeValue::S("nope".into()),
            AttributeValue::M(HashMap::from([("counted_ms".into(), n(5))])),
            AttributeValue::M(HashMap::from([
                ("counted_ms".into(), n(5)),
                (
                    "e".into(),
                    AttributeValue::M(HashMap::from([("a/b".into(), s("1,2"))])),
                ),
            ])),
            AttributeValue::M(HashMap::from([
                ("counted_ms".into(), n(5)),
                (
                    "e".into(),
                    AttributeValue::M(HashMap::from([("a/b".into(), s("1,2,x,4,5,6,7"))])),
                ),
            ])),
        ] {
            let mut item = vote_item(&v);
            item.insert("traffic".into(), bad.clone());
            let got = vote_from(&item).unwrap_or_else(|| panic!("vote lost over {bad:?}"));
            assert_eq!(got.traffic, None, "{bad:?}");
            assert_eq!(got.view, v.view);
        }
    }

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

    fn record_item() -> Item {
        HashMap::from([
            ("pk".into(), s(CONTROL)),
            ("sk".into(), s(CONTROL)),
            ("version".into(), n(3)),
            ("incarnation".into(), s("abc")),
            ("epoch".into(), n(2)),
            ("active".into(), s("us-east-1")),
            ("mode".into(), s("auto")),
            ("state".into(), s("steady")),
            ("step".into(), s("done")),
            ("aborts".into(), n(0)),
            ("changed_at".into(), n(1_795_000_000_000)),
        ])
    }

    #[test]
    fn decision_fields_missing_or_unreadable_are_errors_not_defaults() {
        // Missing.
        for attr in ["aborts", "changed_at"] {
            let mut it = record_item();
            it.remove(attr);
            let Err(Bad(why)) = record_from_item(&it) else {
                panic!("a record without {attr} decoded");
            };
            assert!(why.contains(attr), "{why}");
        }
        // Present but not decodable.
        for (attr, v) in [
            ("aborts", s("many")),
            ("last_failover_at", s("yesterday")),
            ("switched_at", AttributeValue::Bool(true)),
            ("forced", s("yes")),
        ] {
            let mut it = record_item();
            it.insert(attr.into(), v);
            let Err(Bad(why)) = record_from_item(&it) else {
                panic!("{attr} undecodable decoded");
            };
            assert!(why.contains(attr), "{why}");
        }
        // A failover in flight without its flags.
        let mut it = record_item();
        it.insert("state".into(), s("failing_over"));
        assert!(record_from_item(&it).is_err());
        for f in ["ungraceful", "old_region_healthy", "forced"] {
            it.insert(f.into(), AttributeValue::Bool(false));
        }
        assert!(record_from_item(&it).is_ok());
        // A proposal without its time would read as timed out long ago.
        let mut it = record_item();
        for (k, v) in [
            ("proposal_state", s("proposed")),
            ("proposal_epoch", n(3)),
            ("proposal_from", s("us-east-1")),
            ("proposal_target", s("us-west-2")),
        ] {
            it.insert(k.into(), v);
        }
        let Err(Bad(why)) = record_from_item(&it) else {
            panic!("a proposal without proposal_at decoded");
        };
        assert!(why.contains("proposal_at"), "{why}");
        it.insert("proposal_at".into(), n(1_795_000_000_000));
        assert!(record_from_item(&it).is_ok_and(|r| r.proposal.is_some()));
    }

    #[test]
    fn a_record_that_cannot_be_decoded_is_an_error_not_a_default() {
        assert!(record_from_item(&record_item()).is_ok());
        for (attr, bad) in [
            ("version", None),
            ("state", Some("sleeping")),
            ("mode", Some("manual")),
            ("step", Some("halfway")),
            ("incarnation", None),
        ] {
            let mut it = record_item();
            match bad {
                None => {
                    it.remove(attr);
                }
                Some(v) => {
                    it.insert(attr.into(), s(v));
                }
            }
            let Err(Bad(why)) = record_from_item(&it) else {
                panic!("{attr}={bad:?} decoded");
            };
            assert!(
                why.contains(attr) || why.contains(bad.unwrap_or("")),
                "{why}"
            );
        }
    }

    #[test]
    fn an_unknown_token_status_is_not_pending() {
        let mut it: Item = HashMap::from([
            ("sk".into(), s("x#prepare")),
            ("target_region".into(), s("us-west-2")),
            ("step".into(), s("prepare")),
            ("status".into(), s("lost")),
            ("created_at".into(), n(1)),
            ("timeout_seconds".into(), n(120)),
            ("token".into(), s("t")),
            (
                "execution_arn".into(),
                s("arn:aws:states:us-west-2:1:execution:m:x"),
            ),
            ("epoch".into(), n(2)),
        ]);
        assert!(token_from_item(&it).is_err());
        it.insert("status".into(), s("pending"));
        assert_eq!(
            token_from_item(&it).ok().map(|t| t.view.status),
            Some(TokenStatus::Pending)
        );
    }
}
