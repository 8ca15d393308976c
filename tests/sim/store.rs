//! The control table as DynamoDB global tables keep it, in memory: MRSC
//! (strong) and MREC (eventual), behind the daemon's `ControlStore` port and
//! the item-level calls the failover workflow's DynamoDB tasks make.
//!
//! Semantics, as AWS documents them:
//! - **MRSC** (multi-Region strong consistency): one linearizable copy.
//!   Every read is strongly consistent in every region. A write takes effect
//!   at its commit point and is acknowledged once replicated; while it is
//!   being replicated, a write to the same item through another region's
//!   replica fails with `ReplicatedWriteConflictException` (the port calls
//!   it a conflict: `Write::Conflict` for conditional writes). A replica cut
//!   off from the others (`isolate`) fails every read and write.
//! - **MREC** (multi-Region eventual consistency): one table per replica.
//!   Conditions are evaluated against the local replica only; each write is
//!   applied locally, then replicated to every other replica after a lag
//!   (`set_lag`), item by item, last writer wins (by the write's
//!   timestamp). A replica cut off from the others still serves its own
//!   region and catches up when the cut heals.
//! - Either: the sparse `pending` index (a GSI) is eventually consistent
//!   even under MRSC: a token's index entry follows the base item by up to
//!   `GSI_LAG_MS`.
//!
//! Every control-record write goes through `core::record::apply`, the one
//! statement of their conditions; token writes mirror the conditions of
//! `aws::control_table` (claim, extend, finish).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use failoverd::aws::control_table::{parse_time, rfc3339};
use failoverd::core::control::ControlRecord;
use failoverd::core::duty::{DutyItem, DutyWrite};
use failoverd::core::quorum::Vote;
use failoverd::core::record::{self, RecordWrite};
use failoverd::core::tokens::{TokenStatus, TokenView};
use failoverd::ports::store::{
    ControlStore, Event, Page, PublishedReading, TokenItem, Write, is_live, ttl_for,
};
use failoverd::ports::{ErrorKind, PortError};
use serde_json::Value;
use tokio::time::Instant;

use super::world::{Caller, Fault, NetError, Svc, World};

/// How far the pending index may lag its base items.
pub const GSI_LAG_MS: u64 = 800;

/// Which kind of global table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Mrsc,
    Mrec,
}

/// An item's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Control,
    Vote(String),
    /// A region's duty item (`core::duty`).
    Duty(String),
    Reading(String),
    Token(String),
    Event(String),
}

/// A token item as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub item: TokenItem,
    /// The sparse index's key: present only while the token is open.
    pub pending_for: Option<String>,
    pub ttl: Option<u64>,
    pub claims: u32,
}

/// An item.
#[derive(Debug, Clone, PartialEq, Eq)]
// One control record per table, the other items many: boxing the record
// would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Item {
    Record(ControlRecord),
    Vote(Vote),
    Duty(DutyItem),
    Reading(PublishedReading),
    Token(TokenRow),
    Event(Event, Option<u64>),
}

/// (write order, for last-writer-wins).
type Stamp = u64;

#[derive(Debug, Default, Clone)]
struct Table {
    items: BTreeMap<Key, (Item, Stamp)>,
    /// The pending index: token id -> the row as the index shows it.
    gsi: BTreeMap<String, (Option<TokenRow>, Stamp)>,
}

impl Table {
    fn record(&self) -> Option<&ControlRecord> {
        match self.items.get(&Key::Control) {
            Some((Item::Record(r), _)) => Some(r),
            _ => None,
        }
    }
}

struct State {
    /// MRSC: one table (under the key ""); MREC: one per replica region.
    tables: BTreeMap<String, Table>,
    isolated: BTreeSet<String>,
    /// MREC replication lag, (least, most) ms.
    lag: (u64, u64),
    seq: Stamp,
    /// MRSC: an item being replicated: (replica region, until).
    busy: BTreeMap<Key, (String, Instant)>,
    /// Every record a write produced, with when and where (not
    /// replication): what the invariants read to see claims as they happen.
    log: Vec<Logged>,
}

/// A record write, as it happened.
#[derive(Debug, Clone)]
pub struct Logged {
    pub at_ms: u64,
    pub replica: String,
    pub record: ControlRecord,
}

/// Why a DynamoDB call failed, by the name the workflow's Retry and Catch
/// match (`DynamoDb.<code>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdbError {
    pub code: &'static str,
    pub message: String,
}

impl DdbError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The kind the port reports, as `aws::errors::classify` would: a
    /// client-side failure is transport, a 500 is unavailable.
    fn kind(&self) -> ErrorKind {
        match self.code {
            "SdkClientException" => ErrorKind::Transport,
            "InternalServerErrorException" => ErrorKind::Unavailable,
            code => failoverd::aws::errors::kind_of_code(code),
        }
    }
}

/// The global table.
pub struct FakeStore {
    pub world: Arc<World>,
    pub consistency: Consistency,
    pub replicas: Vec<String>,
    /// MRSC's members: the replicas and the witness, if any. A write or
    /// read commits only while a majority of them can reach each other.
    members: Vec<String>,
    state: Mutex<State>,
}

/// One of a replica's answers to a write.
enum Applied {
    Written,
    Refused,
}

impl FakeStore {
    pub fn new(world: Arc<World>, consistency: Consistency, replicas: &[String]) -> Arc<Self> {
        Self::with_witness(world, consistency, replicas, None)
    }

    /// A table of two replicas and a witness (MRSC): the witness holds no
    /// readable copy, but counts towards the majority.
    pub fn with_witness(
        world: Arc<World>,
        consistency: Consistency,
        replicas: &[String],
        witness: Option<&str>,
    ) -> Arc<Self> {
        let tables = match consistency {
            Consistency::Mrsc => [(String::new(), Table::default())].into(),
            Consistency::Mrec => replicas
                .iter()
                .map(|r| (r.clone(), Table::default()))
                .collect(),
        };
        Arc::new(Self {
            world,
            consistency,
            replicas: replicas.to_vec(),
            members: replicas
                .iter()
                .cloned()
                .chain(witness.map(String::from))
                .collect(),
            state: Mutex::new(State {
                tables,
                isolated: BTreeSet::new(),
                lag: (50, 900),
                seq: 0,
                busy: BTreeMap::new(),
                log: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn table_key(&self, replica: &str) -> String {
        match self.consistency {
            Consistency::Mrsc => String::new(),
            Consistency::Mrec => replica.to_string(),
        }
    }

    /// Cut a replica off from the others (or heal it).
    pub fn isolate(&self, replica: &str, on: bool) {
        let mut g = self.lock();
        if on {
            g.isolated.insert(replica.to_string());
        } else {
            g.isolated.remove(replica);
        }
    }

    pub fn is_isolated(&self, replica: &str) -> bool {
        self.lock().isolated.contains(replica)
    }

    /// MRSC: whether `replica` can commit: it reaches the others, and a
    /// majority of the members (replicas and witness) reach each other.
    /// Isolation cuts a member off from every other, so with two members
    /// cut off the third is alone too.
    fn mrsc_commits(&self, replica: &str) -> bool {
        let g = self.lock();
        let reachable = self
            .members
            .iter()
            .filter(|m| !g.isolated.contains(*m))
            .count();
        !g.isolated.contains(replica) && reachable * 2 > self.members.len()
    }

    /// MREC replication lag bounds (ms).
    pub fn set_lag(&self, least: u64, most: u64) {
        self.lock().lag = (least, most.max(least));
    }

    /// The record item gone from every replica (deleted by hand, or the
    /// table re-created): what it was.
    pub fn lose_record(&self) -> Option<ControlRecord> {
        let mut g = self.lock();
        let mut lost = None;
        for t in g.tables.values_mut() {
            if let Some((Item::Record(r), _)) = t.items.remove(&Key::Control)
                && lost
                    .as_ref()
                    .is_none_or(|l: &ControlRecord| r.version > l.version)
            {
                lost = Some(r);
            }
        }
        g.seq += 1;
        lost
    }

    /// A point-in-time restore: every replica's record replaced by an
    /// older version of the newest record's incarnation (`back` writes
    /// before the newest one). Returns (newest, restored).
    pub fn restore_record(&self, back: usize) -> Option<(ControlRecord, ControlRecord)> {
        let mut g = self.lock();
        let newest = g
            .log
            .iter()
            .map(|l| &l.record)
            .max_by_key(|r| r.version)?
            .clone();
        let older = g
            .log
            .iter()
            .rev()
            .map(|l| &l.record)
            .filter(|r| r.incarnation == newest.incarnation && r.version < newest.version)
            .nth(back)?
            .clone();
        let stamp = Self::next_stamp(&mut g);
        for t in g.tables.values_mut() {
            t.items
                .insert(Key::Control, (Item::Record(older.clone()), stamp));
        }
        Some((newest, older))
    }

    // --- views for the invariants (no latency, no faults) ---

    /// The record as `replica` holds it.
    pub fn record(&self, replica: &str) -> Option<ControlRecord> {
        let k = self.table_key(replica);
        self.lock().tables.get(&k)?.record().cloned()
    }

    /// Every token item as `replica` holds it.
    pub fn tokens(&self, replica: &str) -> Vec<TokenRow> {
        let k = self.table_key(replica);
        let g = self.lock();
        g.tables
            .get(&k)
            .map(|t| {
                t.items
                    .values()
                    .filter_map(|(i, _)| match i {
                        Item::Token(t) => Some(t.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every journal entry any replica holds (the readiness invariants,
    /// issue 26).
    pub fn journal(&self) -> Vec<Event> {
        let g = self.lock();
        g.tables
            .values()
            .flat_map(|t| t.items.values())
            .filter_map(|(i, _)| match i {
                Item::Event(e, _) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// Record writes from index `from` on.
    pub fn log_since(&self, from: usize) -> Vec<Logged> {
        self.lock()
            .log
            .get(from..)
            .map(<[Logged]>::to_vec)
            .unwrap_or_default()
    }

    /// A counter that moves with every write anywhere (replication
    /// included): nothing to look at while it stands still.
    pub fn seq(&self) -> u64 {
        self.lock().seq
    }

    /// Do all replicas hold the same record (MREC: replication caught up)?
    pub fn converged(&self) -> bool {
        let g = self.lock();
        let mut recs = g.tables.values().map(|t| t.record());
        let first = recs.next().flatten();
        recs.all(|r| r == first)
    }

    /// Every replica region with its record.
    pub fn records(&self) -> Vec<(String, Option<ControlRecord>)> {
        self.replicas
            .iter()
            .map(|r| (r.clone(), self.record(r)))
            .collect()
    }

    // --- the write path ---

    fn next_stamp(g: &mut State) -> Stamp {
        g.seq += 1;
        g.seq
    }

    /// Is `key` being replicated from another replica (MRSC)?
    fn conflict(&self, g: &State, key: &Key, replica: &str) -> bool {
        self.consistency == Consistency::Mrsc
            && g.busy
                .get(key)
                .is_some_and(|(r, until)| r != replica && Instant::now() < *until)
    }

    /// Store `item` at `key` in `replica` (already decided), then replicate.
    fn put(self: &Arc<Self>, g: &mut State, replica: &str, key: Key, item: Item) {
        let stamp = Self::next_stamp(g);
        if let Item::Record(r) = &item {
            g.log.push(Logged {
                at_ms: self.world.elapsed_ms(),
                replica: replica.to_string(),
                record: r.clone(),
            });
        }
        let tk = self.table_key(replica);
        if let Some(t) = g.tables.get_mut(&tk) {
            t.items.insert(key.clone(), (item.clone(), stamp));
        }
        if let Item::Token(row) = &item {
            self.index_later(&tk, row, stamp);
        }
        match self.consistency {
            Consistency::Mrsc => {
                // Acknowledged once replicated: the item stays busy for the
                // synchronous replication's round trip.
                let ms = self.world.with_rng(|r| r.range(10, 60));
                g.busy.insert(
                    key,
                    (
                        replica.to_string(),
                        Instant::now() + Duration::from_millis(ms),
                    ),
                );
            }
            Consistency::Mrec => {
                let (lo, hi) = g.lag;
                for dst in self.replicas.iter().filter(|r| *r != replica) {
                    let lag = self.world.with_rng(|r| r.range(lo, hi));
                    let me = self.clone();
                    let (src, dst) = (replica.to_string(), dst.clone());
                    let (key, item) = (key.clone(), item.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(lag)).await;
                        // A cut replica neither sends nor receives; the
                        // stream resumes when the cut heals.
                        while me.is_isolated(&src) || me.is_isolated(&dst) {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        me.replicate(&dst, key, item, stamp);
                    });
                }
            }
        }
    }

    /// Apply a replicated item at `dst`: last writer wins.
    fn replicate(self: &Arc<Self>, dst: &str, key: Key, item: Item, stamp: Stamp) {
        let mut g = self.lock();
        let Some(t) = g.tables.get_mut(dst) else {
            return;
        };
        if t.items.get(&key).is_some_and(|(_, s)| *s >= stamp) {
            return;
        }
        t.items.insert(key, (item.clone(), stamp));
        // Moves the change counter (stamps stay increasing).
        g.seq += 1;
        if let Item::Token(row) = &item {
            self.index_later(dst, row, stamp);
        }
    }

    /// The pending index follows the base item after a short lag.
    fn index_later(self: &Arc<Self>, table: &str, row: &TokenRow, stamp: Stamp) {
        let lag = self.world.with_rng(|r| r.range(0, GSI_LAG_MS));
        let me = self.clone();
        let table = table.to_string();
        let id = row.item.view.id.clone();
        let entry = row.pending_for.is_some().then(|| row.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(lag)).await;
            let mut g = me.lock();
            if let Some(t) = g.tables.get_mut(&table)
                && t.gsi.get(&id).is_none_or(|(_, s)| *s < stamp)
            {
                t.gsi.insert(id, (entry, stamp));
            }
        });
    }

    /// Common entry of every call through `replica`: the network, then the
    /// replica's own health. `Ok(arrived)` when the request reached a
    /// replica able to serve it.
    async fn arrive(
        &self,
        caller: &Caller,
        replica: &str,
    ) -> Result<super::world::Arrived, DdbError> {
        let a = match self.world.send(caller, Svc::Store).await {
            Ok(a) => a,
            Err(NetError::Throttled) => {
                return Err(DdbError::new(
                    "ThrottlingException",
                    "Rate of requests exceeds the allowed throughput.",
                ));
            }
            Err(NetError::Transport(t)) => return Err(DdbError::new("SdkClientException", t)),
        };
        if self.consistency == Consistency::Mrsc && !self.mrsc_commits(replica) {
            // The replica cannot reach a majority: MRSC serves nothing.
            let _ = self.world.reply(a, false).await;
            return Err(DdbError::new(
                "InternalServerErrorException",
                format!("replica {replica} cannot reach the other replicas"),
            ));
        }
        Ok(a)
    }

    async fn depart(&self, a: super::world::Arrived, wrote: bool) -> Result<(), DdbError> {
        self.world.reply(a, wrote).await.map_err(|e| match e {
            NetError::Transport(t) => DdbError::new("SdkClientException", t),
            NetError::Throttled => DdbError::new("ThrottlingException", "throttled"),
        })
    }

    /// One read of `replica`'s table.
    async fn read<T>(
        &self,
        caller: &Caller,
        replica: &str,
        f: impl FnOnce(&Table) -> T,
    ) -> Result<T, DdbError> {
        let a = self.arrive(caller, replica).await?;
        let out = {
            let g = self.lock();
            let empty = Table::default();
            f(g.tables.get(&self.table_key(replica)).unwrap_or(&empty))
        };
        self.depart(a, false).await?;
        Ok(out)
    }

    /// One write to `replica`: `decide` sees the item as the replica holds
    /// it and returns the new item, or `None` when its condition fails.
    async fn write(
        self: &Arc<Self>,
        caller: &Caller,
        replica: &str,
        key: Key,
        decide: impl FnOnce(Option<&Item>) -> Option<Item>,
    ) -> Result<Applied, DdbError> {
        let a = self.arrive(caller, replica).await?;
        let applied = self.commit(replica, key, decide);
        self.depart(a, matches!(applied, Some(Applied::Written)))
            .await?;
        applied.ok_or_else(|| {
            DdbError::new(
                "ReplicatedWriteConflictException",
                "the item is being modified by a request in another Region",
            )
        })
    }

    /// The commit point of a write: `None` on a replicated-write conflict.
    fn commit(
        self: &Arc<Self>,
        replica: &str,
        key: Key,
        decide: impl FnOnce(Option<&Item>) -> Option<Item>,
    ) -> Option<Applied> {
        let mut g = self.lock();
        if self.conflict(&g, &key, replica) {
            return None;
        }
        let tk = self.table_key(replica);
        let current = g
            .tables
            .get(&tk)
            .and_then(|t| t.items.get(&key))
            .map(|x| &x.0);
        Some(match decide(current) {
            Some(item) => {
                self.put(&mut g, replica, key, item);
                Applied::Written
            }
            None => Applied::Refused,
        })
    }

    // --- the workflow's DynamoDB tasks (aws-sdk:dynamodb integrations) ---

    /// `updateItem` on the control record, as one of the workflow's
    /// `RecordWrite`s (`Mark`, `Switch`, `Steady`, `Abort`).
    pub async fn workflow_update(
        self: &Arc<Self>,
        sfn_region: &str,
        replica: &str,
        w: &RecordWrite,
    ) -> Result<(), DdbError> {
        let caller = Caller::Workflow {
            region: sfn_region.to_string(),
        };
        let outcome = self.apply_record(&caller, replica, w).await?;
        match outcome {
            Applied::Written => Ok(()),
            Applied::Refused => Err(DdbError::new(
                "ConditionalCheckFailedException",
                "The conditional request failed",
            )),
        }
    }

    /// `putItem` of a token or journal item (DynamoDB JSON, as the state
    /// machine's `Parameters.Item`).
    pub async fn workflow_put(
        self: &Arc<Self>,
        sfn_region: &str,
        replica: &str,
        item: &Value,
    ) -> Result<(), DdbError> {
        let caller = Caller::Workflow {
            region: sfn_region.to_string(),
        };
        let (key, item) = decode_item(item).map_err(|e| DdbError::new("ValidationException", e))?;
        self.write(&caller, replica, key, |_| Some(item)).await?;
        Ok(())
    }

    async fn apply_record(
        self: &Arc<Self>,
        caller: &Caller,
        replica: &str,
        w: &RecordWrite,
    ) -> Result<Applied, DdbError> {
        let world = self.world.clone();
        let who = caller.site();
        let w2 = w.clone();
        let replica_name = replica.to_string();
        self.write(caller, replica, Key::Control, move |cur| {
            let cur = match cur {
                Some(Item::Record(r)) => Some(r),
                _ => None,
            };
            match record::apply(cur, &w2) {
                Ok(next) => {
                    world.trace(format!(
                        "store[{replica_name}] {who}: {} -> v{} epoch {} active {} {:?}/{}{}",
                        w2.name(),
                        next.version,
                        next.epoch,
                        next.active,
                        next.phase,
                        next.step.as_str(),
                        next.execution
                            .as_deref()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    ));
                    Some(Item::Record(next))
                }
                Err(why) => {
                    world.trace(format!(
                        "store[{replica_name}] {who}: {} refused: {why}",
                        w2.name()
                    ));
                    None
                }
            }
        })
        .await
    }
}

/// DynamoDB JSON (`{"S": ..}`, `{"N": ..}`) -> the attribute's text.
fn attr<'a>(item: &'a Value, k: &str) -> Option<&'a str> {
    let v = item.get(k)?;
    v.get("S").or_else(|| v.get("N")).and_then(Value::as_str)
}

fn attr_n(item: &Value, k: &str) -> Option<u64> {
    attr(item, k)?.parse::<f64>().ok().map(|f| f as u64)
}

/// Decode a workflow `putItem` the way `aws::control_table` decodes what it
/// reads: a token or a journal entry. An item it cannot decode is an error
/// (the real reader would skip it and log).
fn decode_item(item: &Value) -> Result<(Key, Item), String> {
    let need = |k: &str| attr(item, k).ok_or_else(|| format!("item has no {k}: {item}"));
    let pk = need("pk")?;
    let sk = need("sk")?.to_string();
    match pk {
        "TOKEN" => {
            let status = match need("status")? {
                "pending" => TokenStatus::Pending,
                other => return Err(format!("a new token with status {other}")),
            };
            let created_at = parse_time(need("created_at")?).ok_or("created_at is not RFC 3339")?;
            let row = TokenRow {
                item: TokenItem {
                    view: TokenView {
                        id: sk.clone(),
                        target_region: need("target_region")?.to_string(),
                        step: need("step")?.to_string(),
                        status,
                        claimed_by: None,
                        claim_until: None,
                        created_at,
                        timeout_ms: attr_n(item, "timeout_seconds").ok_or("timeout_seconds")?
                            * 1000,
                    },
                    token: need("token")?.to_string(),
                    execution_arn: need("execution_arn")?.to_string(),
                    epoch: attr_n(item, "epoch").ok_or("epoch")?,
                    note: None,
                },
                pending_for: attr(item, "pending_for").map(String::from),
                ttl: attr_n(item, "ttl"),
                claims: 0,
            };
            Ok((Key::Token(sk), Item::Token(row)))
        }
        "EVENT" => {
            let e = Event {
                at: parse_time(need("at")?).ok_or("at is not RFC 3339")?,
                who: need("region")?.to_string(),
                kind: need("kind")?.to_string(),
                epoch: attr_n(item, "epoch"),
                detail: attr(item, "detail").unwrap_or_default().to_string(),
            };
            Ok((Key::Event(sk), Item::Event(e, attr_n(item, "ttl"))))
        }
        other => Err(format!("the workflow does not put {other} items")),
    }
}

/// The `ControlStore` port of one caller, through one replica.
pub struct StoreClient {
    pub store: Arc<FakeStore>,
    pub caller: Caller,
    pub replica: String,
}

impl StoreClient {
    fn err(&self, op: &str, e: DdbError) -> PortError {
        PortError::new(
            "DynamoDB",
            op.to_string(),
            self.replica.clone(),
            e.kind(),
            Fault(format!("{}: {}", e.code, e.message)),
        )
    }

    /// A conditional write's outcome: a failed condition or a replicated
    /// write conflict is a lost race (as `aws::control_table` maps it).
    fn conditional(&self, op: &str, r: Result<Applied, DdbError>) -> Result<Write, PortError> {
        match r {
            Ok(Applied::Written) => Ok(Write::Written),
            Ok(Applied::Refused) => Ok(Write::Conflict),
            Err(e) if e.kind() == ErrorKind::Conflict => Ok(Write::Conflict),
            Err(e) => Err(self.err(op, e)),
        }
    }

    fn token_update(
        &self,
        id: &str,
        f: impl FnOnce(&TokenRow) -> Option<TokenRow>,
    ) -> impl FnOnce(Option<&Item>) -> Option<Item> {
        let _ = id;
        move |cur| match cur {
            Some(Item::Token(t)) => f(t).map(Item::Token),
            _ => None,
        }
    }
}

#[async_trait]
impl ControlStore for StoreClient {
    fn replica(&self) -> &str {
        &self.replica
    }

    async fn read_record(&self) -> Result<Option<ControlRecord>, PortError> {
        self.store
            .read(&self.caller, &self.replica, |t| t.record().cloned())
            .await
            .map_err(|e| self.err("GetItem CONTROL", e))
    }

    async fn write_record(&self, w: &RecordWrite) -> Result<Write, PortError> {
        let r = self
            .store
            .apply_record(&self.caller, &self.replica, w)
            .await;
        self.conditional(&format!("UpdateItem CONTROL ({})", w.name()), r)
    }

    async fn put_vote(&self, v: &Vote) -> Result<(), PortError> {
        let item = Item::Vote(v.clone());
        self.store
            .write(&self.caller, &self.replica, Key::Vote(v.who()), |_| {
                Some(item)
            })
            .await
            .map(|_| ())
            .map_err(|e| self.err("PutItem VOTE", e))
    }

    async fn read_votes(&self) -> Result<Vec<Vote>, PortError> {
        self.store
            .read(&self.caller, &self.replica, |t| {
                t.items
                    .values()
                    .filter_map(|(i, _)| match i {
                        Item::Vote(v) => Some(v.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .await
            .map_err(|e| self.err("Query VOTE", e))
    }

    async fn read_duty(&self, region: &str) -> Result<Option<DutyItem>, PortError> {
        let key = Key::Duty(region.to_string());
        self.store
            .read(&self.caller, &self.replica, |t| match t.items.get(&key) {
                Some((Item::Duty(d), _)) => Some(d.clone()),
                _ => None,
            })
            .await
            .map_err(|e| self.err("GetItem DUTY", e))
    }

    async fn write_duty(&self, w: &DutyWrite) -> Result<Write, PortError> {
        let next = DutyItem {
            holder: w.holder.clone(),
            instance: w.instance.clone(),
            version: w.expected.map_or(1, |v| v + 1),
        };
        let expected = w.expected;
        let r = self
            .store
            .write(
                &self.caller,
                &self.replica,
                Key::Duty(w.region.clone()),
                move |cur| {
                    let at = match cur {
                        Some(Item::Duty(d)) => Some(d.version),
                        _ => None,
                    };
                    (at == expected).then_some(Item::Duty(next))
                },
            )
            .await;
        self.conditional("PutItem DUTY", r)
    }

    async fn put_reading(&self, r: &PublishedReading) -> Result<(), PortError> {
        let item = Item::Reading(r.clone());
        self.store
            .write(
                &self.caller,
                &self.replica,
                Key::Reading(r.check_id.clone()),
                |_| Some(item),
            )
            .await
            .map(|_| ())
            .map_err(|e| self.err("PutItem READING", e))
    }

    async fn read_readings(&self) -> Result<Vec<PublishedReading>, PortError> {
        self.store
            .read(&self.caller, &self.replica, |t| {
                t.items
                    .values()
                    .filter_map(|(i, _)| match i {
                        Item::Reading(r) => Some(r.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .await
            .map_err(|e| self.err("Query READING", e))
    }

    async fn pending_tokens(&self, region: &str, now: u64) -> Result<Vec<TokenItem>, PortError> {
        let region = region.to_string();
        self.store
            .read(&self.caller, &self.replica, move |t| {
                t.gsi
                    .values()
                    .filter_map(|(row, _)| row.as_ref())
                    .filter(|row| row.pending_for.as_deref() == Some(region.as_str()))
                    .filter(|row| is_live(row.ttl, now))
                    .map(|row| row.item.clone())
                    .collect()
            })
            .await
            .map_err(|e| self.err("Query pending", e))
    }

    async fn tokens(&self, limit: usize, now: u64) -> Result<Page<TokenItem>, PortError> {
        self.store
            .read(&self.caller, &self.replica, move |t| {
                let mut all: Vec<&TokenRow> = t
                    .items
                    .values()
                    .filter_map(|(i, _)| match i {
                        Item::Token(r) => Some(r),
                        _ => None,
                    })
                    .collect();
                // Newest first by sort key, as the query reads them.
                all.reverse();
                let truncated = all.len() > limit;
                Page {
                    items: all
                        .into_iter()
                        .take(limit)
                        .filter(|r| is_live(r.ttl, now))
                        .map(|r| r.item.clone())
                        .collect(),
                    truncated,
                }
            })
            .await
            .map_err(|e| self.err("Query TOKEN", e))
    }

    async fn claim_token(
        &self,
        id: &str,
        owner: &str,
        now: u64,
        claim_ms: u64,
    ) -> Result<Write, PortError> {
        let owner = owner.to_string();
        let f = self.token_update(id, move |t| {
            let v = &t.item.view;
            let ok = v.status == TokenStatus::Pending
                || (v.status == TokenStatus::Claimed
                    && (v.claim_until.is_some_and(|u| u < now)
                        || v.claimed_by.as_deref() == Some(owner.as_str())));
            ok.then(|| {
                let mut n = t.clone();
                n.item.view.status = TokenStatus::Claimed;
                n.item.view.claimed_by = Some(owner.clone());
                n.item.view.claim_until = Some(now + claim_ms);
                n.claims += 1;
                n
            })
        });
        let r = self
            .store
            .write(&self.caller, &self.replica, Key::Token(id.to_string()), f)
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
        let owner = owner.to_string();
        let f = self.token_update(id, move |t| {
            let v = &t.item.view;
            (v.status == TokenStatus::Claimed && v.claimed_by.as_deref() == Some(owner.as_str()))
                .then(|| {
                    let mut n = t.clone();
                    n.item.view.claim_until = Some(now + claim_ms);
                    n
                })
        });
        let r = self
            .store
            .write(&self.caller, &self.replica, Key::Token(id.to_string()), f)
            .await;
        self.conditional("UpdateItem TOKEN (extend)", r)
    }

    async fn finish_token(
        &self,
        id: &str,
        status: TokenStatus,
        note: &str,
        _now: u64,
    ) -> Result<Write, PortError> {
        if matches!(status, TokenStatus::Pending | TokenStatus::Claimed) {
            return Err(PortError::malformed(
                "DynamoDB",
                "UpdateItem TOKEN (finish)",
                &self.replica,
                format!("a token is finished as done or expired, not {status:?}"),
            ));
        }
        let note = note.to_string();
        let world = self.store.world.clone();
        let who = self.caller.site();
        let f = self.token_update(id, move |t| {
            let v = &t.item.view;
            (!matches!(v.status, TokenStatus::Done | TokenStatus::Expired)).then(|| {
                world.trace(format!(
                    "token {} {status:?} by {who}: {note}",
                    short_token(&t.item.token)
                ));
                let mut n = t.clone();
                n.item.view.status = status;
                n.item.note = Some(note.clone());
                n.pending_for = None;
                n
            })
        });
        let r = self
            .store
            .write(&self.caller, &self.replica, Key::Token(id.to_string()), f)
            .await;
        self.conditional("UpdateItem TOKEN (finish)", r)
    }

    async fn journal(&self, e: &Event) -> Result<(), PortError> {
        let sk = format!("{}#{}#{}", rfc3339(e.at), e.who, e.kind);
        let item = Item::Event(e.clone(), Some(ttl_for(e.at)));
        self.store
            .write(&self.caller, &self.replica, Key::Event(sk), |_| Some(item))
            .await
            .map(|_| ())
            .map_err(|err| self.err("PutItem EVENT", err))
    }

    async fn events(&self, limit: usize, now: u64) -> Result<Page<Event>, PortError> {
        self.store
            .read(&self.caller, &self.replica, move |t| {
                let mut all: Vec<&Event> = t
                    .items
                    .iter()
                    .rev()
                    .filter_map(|(_, (i, _))| match i {
                        Item::Event(e, ttl) if is_live(*ttl, now) => Some(e),
                        _ => None,
                    })
                    .collect();
                let truncated = all.len() > limit;
                all.truncate(limit);
                let mut items: Vec<Event> = all.into_iter().cloned().collect();
                items.sort_by(|a, b| a.at.cmp(&b.at).then(a.kind.cmp(&b.kind)));
                Page { items, truncated }
            })
            .await
            .map_err(|e| self.err("Query EVENT", e))
    }
}

/// A token, shortened for the trace.
pub fn short_token(t: &str) -> &str {
    t.rsplit(':').next().unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::world::Link;
    use failoverd::core::control::{Phase, execution_name};
    use failoverd::core::plan::FailoverPlan;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    fn regions() -> Vec<String> {
        ["us-east-1", "us-west-2", "us-east-2"]
            .map(String::from)
            .to_vec()
    }

    fn client(store: &Arc<FakeStore>, region: &str, pid: u64) -> StoreClient {
        StoreClient {
            store: store.clone(),
            caller: Caller::Daemon {
                region: region.into(),
                pid,
            },
            replica: region.into(),
        }
    }

    fn init(active: &str) -> RecordWrite {
        RecordWrite::Initialize {
            active: active.into(),
            incarnation: "abc".into(),
            by: active.into(),
            at: 1,
            reason: "test".into(),
        }
    }

    fn claim(r: &ControlRecord, to: &str) -> RecordWrite {
        RecordWrite::Claim {
            plan: FailoverPlan {
                from: r.active.clone(),
                to: to.into(),
                epoch: r.epoch + 1,
                execution: execution_name(&r.incarnation, r.epoch + 1),
                initiator: to.into(),
                expected_version: r.version,
                reason: "test".into(),
                ungraceful: false,
                old_region_healthy: true,
                forced: false,
                automatic: true,
                changed_by: to.into(),
                claimed_at: 5,
                supersedes: None,
                state_machine: None,
            },
        }
    }

    #[test]
    fn mrsc_conditional_writes_are_linearizable() {
        rt().block_on(async {
            let world = World::new(1);
            let store = FakeStore::new(world.clone(), Consistency::Mrsc, &regions());
            let (a, b) = (world.spawn_pid(), world.spawn_pid());
            let east = client(&store, "us-east-1", a);
            let west = client(&store, "us-west-2", b);
            assert_eq!(
                east.write_record(&init("us-east-1")).await.unwrap(),
                Write::Written
            );
            assert_eq!(
                west.write_record(&init("us-west-2")).await.unwrap(),
                Write::Conflict,
                "the record exists: the condition fails"
            );
            // Every replica reads the same record at once (strong reads).
            let r = west.read_record().await.unwrap().unwrap();
            assert_eq!(r.active, "us-east-1");
            // Two claims from the same version, concurrently: exactly one wins.
            let (c1, c2) = (claim(&r, "us-east-2"), claim(&r, "us-west-2"));
            let (x, y) = tokio::join!(east.write_record(&c1), west.write_record(&c2));
            let wins = [x.unwrap(), y.unwrap()]
                .iter()
                .filter(|w| **w == Write::Written)
                .count();
            assert_eq!(wins, 1);
            let after = store.record("us-east-2").unwrap();
            assert_eq!((after.version, after.phase), (2, Phase::FailingOver));
        });
    }

    #[test]
    fn mrsc_concurrent_writes_from_two_regions_conflict() {
        rt().block_on(async {
            let world = World::new(2);
            let store = FakeStore::new(world.clone(), Consistency::Mrsc, &regions());
            let w = world.spawn_pid();
            // us-east-1 has just written item "x" (it is being replicated)
            // and us-west-2 writes the same item.
            let vote = |observer: &str| Vote {
                observer: observer.into(),
                instance: None,
                at: 1,
                seen_epoch: 0,
                view: BTreeMap::new(),
                traffic: None,
                fleet: None,
                readiness: None,
                lease_ms: None,
            };
            let west = StoreClient {
                store: store.clone(),
                caller: Caller::Daemon {
                    region: "us-west-2".into(),
                    pid: w,
                },
                replica: "us-west-2".into(),
            };
            // A write to another item goes through.
            west.put_vote(&vote("us-west-2")).await.unwrap();
            // The same item, within the replication window: conflict.
            store.lock().busy.insert(
                Key::Vote("x".into()),
                ("us-east-1".into(), Instant::now() + Duration::from_secs(1)),
            );
            let e = west.put_vote(&vote("x")).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
            // Through the same region's replica there is no conflict.
            let east = client(&store, "us-east-1", w);
            east.put_vote(&vote("x")).await.unwrap();
        });
    }

    #[test]
    fn mrsc_a_cut_off_replica_serves_nothing() {
        rt().block_on(async {
            let world = World::new(3);
            let store = FakeStore::new(world.clone(), Consistency::Mrsc, &regions());
            let p = world.spawn_pid();
            let east = client(&store, "us-east-1", p);
            store.isolate("us-east-1", true);
            let e = east.read_record().await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unavailable);
            let e = east.write_record(&init("us-east-1")).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unavailable);
            // The others still serve.
            let west = client(&store, "us-west-2", p);
            assert_eq!(
                west.write_record(&init("us-west-2")).await.unwrap(),
                Write::Written
            );
            store.isolate("us-east-1", false);
            assert_eq!(
                east.read_record().await.unwrap().unwrap().active,
                "us-west-2"
            );
        });
    }

    #[test]
    fn a_black_holed_caller_times_out_and_a_dead_one_never_hears_back() {
        rt().block_on(async {
            let world = World::new(4);
            let store = FakeStore::new(world.clone(), Consistency::Mrsc, &regions());
            let p = world.spawn_pid();
            let east = client(&store, "us-east-1", p);
            world.set_link("us-east-1", Svc::Store, Link::Blackhole);
            let t0 = Instant::now();
            let e = east.read_record().await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Transport);
            assert_eq!(t0.elapsed(), super::super::world::SDK_TIMEOUT);
            world.set_link("us-east-1", Svc::Store, Link::Up);
            // Killed mid-call: the write lands (it was in flight), the
            // answer never comes. (20 ms there, 20 ms back; killed at 30.)
            world.set_latency(20, 20);
            let w = init("us-east-1");
            let write = east.write_record(&w);
            let killer = async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                world.kill(p);
            };
            let r = tokio::time::timeout(Duration::from_secs(60), async {
                tokio::join!(write, killer).0
            })
            .await;
            assert!(r.is_err(), "a dead process gets no answer");
            assert!(
                store.record("us-east-1").is_some(),
                "the request was in flight"
            );
        });
    }

    #[test]
    fn mrec_conditions_are_local_and_the_last_writer_wins() {
        rt().block_on(async {
            let world = World::new(5);
            let store = FakeStore::new(world.clone(), Consistency::Mrec, &regions());
            store.set_lag(1000, 1000);
            let p = world.spawn_pid();
            let east = client(&store, "us-east-1", p);
            let west = client(&store, "us-west-2", p);
            // Both initialize on their own replica: both conditions hold
            // locally (no record there yet).
            assert_eq!(
                east.write_record(&init("us-east-1")).await.unwrap(),
                Write::Written
            );
            assert_eq!(
                west.write_record(&init("us-west-2")).await.unwrap(),
                Write::Written
            );
            assert_eq!(store.record("us-east-2"), None, "not replicated yet");
            assert!(!store.converged());
            tokio::time::sleep(Duration::from_secs(2)).await;
            // The later write (us-west-2's) wins everywhere.
            for r in regions() {
                assert_eq!(store.record(&r).unwrap().active, "us-west-2", "{r}");
            }
            assert!(store.converged());
            // A cut replica stops replicating, and catches up after.
            store.isolate("us-east-2", true);
            let r = west.read_record().await.unwrap().unwrap();
            assert_eq!(
                west.write_record(&claim(&r, "us-west-2")).await.unwrap(),
                Write::Written
            );
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert_eq!(store.record("us-east-2").unwrap().version, 1);
            assert_eq!(store.record("us-east-1").unwrap().version, 2);
            store.isolate("us-east-2", false);
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(store.converged());
        });
    }

    #[test]
    fn tokens_follow_the_adapter_conditions_and_the_index_lags() {
        rt().block_on(async {
            let world = World::new(6);
            let store = FakeStore::new(world.clone(), Consistency::Mrsc, &regions());
            let p = world.spawn_pid();
            let west = client(&store, "us-west-2", p);
            let item = serde_json::json!({
                "pk": {"S": "TOKEN"}, "sk": {"S": "failover-abc-2#prepare"},
                "pending_for": {"S": "us-west-2"}, "target_region": {"S": "us-west-2"},
                "step": {"S": "prepare"}, "status": {"S": "pending"},
                "token": {"S": "token:us-west-2:1"},
                "execution": {"S": "failover-abc-2"},
                "execution_arn": {"S": "arn:aws:states:us-west-2:1:execution:sm:failover-abc-2"},
                "epoch": {"N": "2"}, "created_at": {"S": "2026-01-01T00:00:00.000Z"},
                "timeout_seconds": {"N": "120"}, "ttl": {"N": "1769817600"}
            });
            store
                .workflow_put("us-west-2", "us-west-2", &item)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(GSI_LAG_MS + 1)).await;
            let now = super::super::world::EPOCH_MS + 1000;
            let pending = west.pending_tokens("us-west-2", now).await.unwrap();
            assert_eq!(pending.len(), 1);
            assert_eq!(pending[0].view.created_at, super::super::world::EPOCH_MS);
            let id = "failover-abc-2#prepare";
            assert_eq!(
                west.claim_token(id, "a", now, 10_000).await.unwrap(),
                Write::Written
            );
            assert_eq!(
                west.claim_token(id, "b", now, 10_000).await.unwrap(),
                Write::Conflict
            );
            assert_eq!(
                west.extend_claim(id, "b", now, 10_000).await.unwrap(),
                Write::Conflict
            );
            // A lapsed claim may be taken over.
            assert_eq!(
                west.claim_token(id, "b", now + 10_001, 10_000)
                    .await
                    .unwrap(),
                Write::Written
            );
            assert_eq!(
                west.finish_token(id, TokenStatus::Done, "ok", now)
                    .await
                    .unwrap(),
                Write::Written
            );
            assert_eq!(
                west.finish_token(id, TokenStatus::Expired, "late", now)
                    .await
                    .unwrap(),
                Write::Conflict,
                "a closed token stays closed"
            );
            // The index drops the token only after its lag.
            tokio::time::sleep(Duration::from_millis(GSI_LAG_MS + 1)).await;
            assert!(
                west.pending_tokens("us-west-2", now)
                    .await
                    .unwrap()
                    .is_empty()
            );
            // Unknown ids and bad statuses.
            assert_eq!(
                west.claim_token("nope", "a", now, 1).await.unwrap(),
                Write::Conflict
            );
            assert!(
                west.finish_token(id, TokenStatus::Pending, "x", now)
                    .await
                    .is_err()
            );
        });
    }
}
