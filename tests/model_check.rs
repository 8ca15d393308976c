//! An explicit-state model checker for the failover protocol (docs/design.md
//! §5, proof in layers): a hand-written breadth-first search over
//! every interleaving of a small model, with a hash set of visited states, so
//! a counterexample is always a shortest one. Every daemon and operator
//! decision is made by the REAL planner, `failoverd::core::plan::plan`, on a
//! `Tally` from the real `failoverd::core::quorum::tally` (or
//! `tally_as_operator`) of concrete `Vote`s; the model performs the
//! planner's action with the executor's semantics (`src/control/executor.rs`,
//! `src/aws/control_table/`) and plays Step Functions
//! (`deploy/statemachines/failover.asl.json`) and DynamoDB. Results and how
//! to read a trace: docs/model-check.md.
//!
//! # What is modelled
//!
//! - **Three regions**: us-east-1 (priority 1, initially active), us-west-2
//!   (2), eu-west-1 (3); each with a daemon and its own Step Functions.
//! - **The control record**: version, epoch, active, mode, phase, target,
//!   execution, initiator, previous, step and the execution's flags.
//!   - `strong` (MRSC): one record that everyone reads and writes atomically.
//!   - `eventual` (MREC): one replica per region. A conditional write is
//!     evaluated against the writer's local replica only; each write then
//!     travels to each other replica as an in-flight message, applied later,
//!     last writer wins by `(timestamp, writer region)`. Timestamps are
//!     Lamport clocks (a local write is stamped one more than the replica's
//!     record), the most favourable reading of "last writer wins";
//!     replication is FIFO per (source, destination), as DynamoDB streams are
//!     ordered per item. A daemon uses its own region's replica; the
//!     workflow of a region writes that region's replica.
//! - **Votes are adversarial, without bound**: every round of every daemon
//!   (and every operator request) may see *any* board of views (each
//!   observer says Up or Down of each region), so safety must hold whatever
//!   the health signals say. This is stronger than a bounded number of view
//!   flips and keeps the votes out of the state: a round's transitions are
//!   the distinct planner decisions over all boards (enumerated through the
//!   distinct results of the real `tally`). Freshness is a boolean per vote:
//!   the round publishes the daemon's own vote; an up, connected daemon's
//!   vote is fresh; a crashed or partitioned daemon's vote goes stale at a
//!   moment of the environment's choosing.
//! - **Daemon round**: publish the vote, read the record and the votes, ask
//!   Step Functions for the execution's status if the record is failing over
//!   and this daemon initiated it, plan, and perform the action's
//!   conditional write. `StartExecution` (second half of `StartFailover`, or
//!   `EnsureExecution`) is a separate, later step, so a crash can land between
//!   the claim and the start. Reading and writing in one step loses no
//!   behaviour: every write is conditional on the `version` read, so any
//!   change of the record in between would make it fail either way.
//! - **Crash and restart** of a daemon (its in-flight intent is lost).
//!   **Partition** of a daemon from its AWS APIs and **heal**: while cut off,
//!   its reads are `Unreadable` (it does nothing), its StartExecution fails,
//!   it cannot call back, and its vote goes stale.
//! - **The operator** (the CLI path: `tally_as_operator` and the planner with
//!   a `Request`): a failover to any region, graceful or `--ungraceful`, with
//!   or without `--force`, or a pause, through any region's replica; the
//!   CLI's StartExecution in the target region is a separate step, and the
//!   CLI may be killed before it. A refused request changes nothing, so only
//!   requests the planner accepts (and whose write wins) are transitions.
//! - **Step Functions**: each execution advances one state at a time,
//!   interleaved with everything else: MarkFailingOver, PrepareTarget (a task
//!   token for the target region), SwitchActive, DrainChoice, DrainOld (a
//!   token for the old region; skipped when ungraceful or the old region's
//!   vote was stale; a timeout continues), MarkSteady, and the catch paths
//!   AbortPrepareFailed and Superseded. Each record update is conditional on
//!   `epoch = :epoch AND execution = :exec`. StartExecution is idempotent by
//!   name per region: a start whose name exists there (open or closed)
//!   creates nothing. A workflow update may also fail for another reason
//!   (throttling, a lost response), applied or not, which `States.ALL` sends
//!   to Superseded (bounded, see `Bounds::faults`).
//! - **Task tokens**: the addressed daemon, while up and connected, may call
//!   `SendTaskSuccess` any number of times (duplicates, as after a lapsed
//!   claim) at any time after the token was issued, also after it timed out
//!   or its execution ended (late); the token's timeout fires at any moment
//!   while its task waits. Step Functions accepts only the first success of
//!   a waiting task; a rejected call (`TaskTimedOut` / `InvalidToken`)
//!   changes nothing, so it is a self-loop of the state graph, and only the
//!   accepted one is a transition.
//!
//! # What is abstracted away
//!
//! - Time: `now` is constant, `min_failover_interval` is 0 (it limits
//!   flapping; safety must not depend on it), freshness is the boolean above.
//!   The lease (`core::control::role`) and the health hysteresis are not
//!   modelled: they bound *when* a region acts, not what the record says.
//! - Votes are one board (not replicated per replica): in `eventual` mode
//!   their lag is covered by their being arbitrary anyway.
//! - Token items in the table (claims, heartbeats, expiry marks): only the
//!   callbacks, which decide what the workflow does, are modelled. The
//!   journal and the router are not modelled.
//! - Record attributes that no decision reads back (`forced`, `reason`,
//!   `changed_by`, times) are not kept in the state.
//! - Clock skew between replicas: see "Lamport clocks" above. If MREC could
//!   stamp a local write *lower* than an item the replica already received,
//!   replicas could diverge for good; the model does not cover that.
//!
//! # Invariants
//!
//! 1. **At most one active region per epoch.** A record *asserts* "`active`
//!    is the active region of `epoch`" when it is steady, or when its step is
//!    `switched` (SwitchActive wrote it). After the claim and before the
//!    switch the record carries the new epoch with the old region's name,
//!    which is not an assertion (the old region serves on the strength of
//!    the previous epoch). A ghost variable accumulates every assertion made
//!    by any replica in any state on the path; for each epoch the set of
//!    asserted regions must have at most one member.
//! 2. **Epochs never decrease** on any replica (checked on every transition,
//!    replication included). A daemon reads only its own region's replica,
//!    and each read sees that replica's current record, so the epochs one
//!    daemon observes are a subsequence of one replica's history: no daemon
//!    observes a decrease exactly when no replica has one.
//! 3. **At most one failover execution per epoch**, over every region's
//!    Step Functions.
//! 4. **Each task token succeeds at most once**: Step Functions accepts at
//!    most one `SendTaskSuccess` per token.
//! 5. **A decision applies only to the proposal it names** (manual
//!    approval): an accepted approval or rejection found that very proposal
//!    open (its epoch, and its id and target when named by them) and
//!    decided it (`check_decided`). The operator names proposals by epoch
//!    alone or by the name of any proposal written on the path (a ghost
//!    list), so stale names of an epoch withdrawn and proposed again are
//!    tried.
//!
//! # Bounds and runs
//!
//! Per run (see each test's `Bounds`): daemon crashes, partitions, workflow
//! faults and operator requests each have a budget, and epochs are capped:
//! a state whose record passed `max_epoch` is checked but not expanded, i.e.
//! each path has at most `max_epoch - 1` failovers. Votes, callbacks and
//! timeouts are unbounded. Each exploration is exhaustive within its bounds.
//!
//! - (a) `strong`, automatic failover and failback allowed, plus one
//!   operator request: pairs of environment budgets (a crash and a
//!   partition; a crash and a workflow fault), a deeper run (3 failovers),
//!   and bootstrap from an empty table. No violation.
//! - (b) `eventual`, automatic failover allowed: violations found; the
//!   shortest traces (two executions for one epoch in 4 steps, two active
//!   regions for one epoch in 10) are printed. This is why the daemon
//!   refuses automatic failover in eventual mode. No failure is needed.
//! - (c) `eventual` as the daemon runs it (no automatic failover), one
//!   operator request: safe, also from an empty table (the first version of
//!   the planner was not: `Initialize` followed the votes; it now names the
//!   preferred region in eventual mode).
//! - Beyond (c): two operator requests in `eventual` mode: not safe.
//! - Liveness probe (`strong`): without time, a failover whose initiator is
//!   lost wedges the record in `failing_over`. The daemon settles such a
//!   record after `Policy::stuck_failover_ms` (longer than the workflow can
//!   run); time is not modelled, so that rule is tested in tests/planner.rs.
//! - Two runs with all four budgets at once (about a minute each).
//! - Manual approval (`policy.approval = "manual"`, issue 13): the planner
//!   proposes instead of claiming; the operator approves or rejects any
//!   epoch at any moment; a proposal's timeout may pass at any moment
//!   (expire or proceed). Safe, every automatic claim is of an approved
//!   proposal of its epoch (or a proceeding timeout), and without an
//!   approval no automatic failover completes.
//!
//! Each run prints `model check <mode>: N states explored, depth D, result`
//! on stdout and stderr (visible with `cargo test -- --nocapture`, and with
//! nextest). `MODEL_CHECK_PROGRESS=1` prints progress while it runs.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use failoverd::core::control::{
    ControlRecord, Mode, Phase, Proposal, ProposalState, Step as RecStep, execution_name,
    proposal_id, proposal_id_version,
};
use failoverd::core::health::Verdict;
use failoverd::core::plan::{
    Action, Approval, Decision, ExecutionStatus, FailoverPlan, Inputs, OnApprovalTimeout, Policy,
    RecordRead, Request, plan,
};
use failoverd::core::quorum::{Tally, Vote, tally, tally_as_operator};
use failoverd::core::record::{self, RecordWrite, Settlement};
use failoverd::core::standby::{FleetReadiness, Ready};

// ---------------------------------------------------------------------------
// Regions and small helpers
// ---------------------------------------------------------------------------

const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];
const N: usize = REGIONS.len();
/// "No region" in a `u8` region field; also "the operator" as a planner.
const NONE: u8 = u8::MAX;
/// The model's constant clock (unix ms) and the vote freshness window.
const NOW: u64 = 1_800_000_000_000;
const FRESHNESS_MS: u64 = 30_000;
/// Size of the ghost table of invariant 1 (epochs 0..MAX_EPOCH).
const MAX_EPOCH: usize = 16;
/// Room for executions (over all regions).
const MAX_EXECS: usize = 6;
/// Proposals per path (the largest `Bounds::proposals`).
const MAX_PROPOSALS: usize = 3;
/// The record's incarnation in the model (execution names are
/// `failover-m-<epoch>`).
const INCARNATION: &str = "m";
/// A stall longer than every bound of the policy: the model's way of saying
/// "this daemon has seen the record stand still for too long". Time is
/// abstract here, so a daemon may judge a failover stalled at any moment.
const STALLED_MS: u64 = u64::MAX / 4;

fn region_index(name: &str) -> u8 {
    REGIONS
        .iter()
        .position(|r| *r == name)
        .unwrap_or_else(|| panic!("the planner named an unknown region {name:?}")) as u8
}

fn region_name(i: u8) -> &'static str {
    if i == NONE { "-" } else { REGIONS[i as usize] }
}

fn opt_region(i: u8) -> Option<String> {
    (i != NONE).then(|| REGIONS[i as usize].to_string())
}

/// The epoch in an execution name `failover-<incarnation>-<epoch>`, with
/// or without a claim's suffix (the model names an execution by its epoch:
/// it has no record put back to an older copy, which is what the suffix
/// tells apart).
fn execution_epoch(name: &str) -> u8 {
    name.strip_prefix("failover-")
        .and_then(|n| n.strip_prefix(INCARNATION))
        .and_then(|n| n.strip_prefix('-'))
        .and_then(|_| failoverd::core::control::execution_epoch(name))
        .and_then(|e| u8::try_from(e).ok())
        .unwrap_or_else(|| panic!("execution name {name:?} is not failover-{INCARNATION}-<epoch>"))
}

/// FxHash: the default SipHash is slow in the debug profile tests run in.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

// ---------------------------------------------------------------------------
// The state
// ---------------------------------------------------------------------------

/// The control record as one replica holds it (regions as indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Rec {
    version: u8,
    epoch: u8,
    active: u8,
    paused: bool,
    failing: bool,
    target: u8,
    /// `execution` is `failover-<execution>`; 0 = none.
    execution: u8,
    initiator: u8,
    previous: u8,
    step: RecStep,
    /// `aborts > 0` (the count itself only times retries, and time is
    /// abstract here).
    aborted: bool,
    ungraceful: bool,
    old_region_healthy: bool,
    // (`forced` is not kept: nothing reads it back but the journal.)
    /// `last_failover_at` is set.
    failed_over: bool,
    /// The proposal awaiting approval, or the last one decided.
    proposal: Option<Prop>,
    /// Last-writer-wins stamp: (Lamport timestamp, region of the write).
    ts: u8,
    writer: u8,
}

impl Rec {
    fn initial(active: u8) -> Self {
        Rec {
            version: 1,
            epoch: 1,
            active,
            paused: false,
            failing: false,
            target: NONE,
            execution: 0,
            initiator: NONE,
            previous: NONE,
            step: RecStep::Init,
            aborted: false,
            ungraceful: false,
            old_region_healthy: false,
            failed_over: false,
            proposal: None,
            ts: 0,
            writer: 0,
        }
    }

    /// Back from the planner's record (after `core::record::apply`), with
    /// the replication stamp of `stamp_of`.
    fn from_control_record(c: &ControlRecord, stamp_of: Option<Rec>) -> Self {
        let opt = |r: &Option<String>| r.as_deref().map_or(NONE, region_index);
        Rec {
            version: c.version as u8,
            epoch: c.epoch as u8,
            active: region_index(&c.active),
            paused: c.mode == Mode::Paused,
            failing: c.phase == Phase::FailingOver,
            target: opt(&c.target),
            execution: c.execution.as_deref().map_or(0, execution_epoch),
            initiator: opt(&c.initiator),
            previous: opt(&c.previous),
            step: c.step,
            aborted: c.aborts > 0,
            ungraceful: c.ungraceful,
            old_region_healthy: c.old_region_healthy,
            failed_over: c.last_failover_at.is_some(),
            proposal: c.proposal.as_ref().map(|p| {
                let target = region_index(&p.target);
                let id = prop_id(&p.id, target);
                Prop {
                    id,
                    epoch: p.epoch as u8,
                    from: region_index(&p.from),
                    target,
                    state: p.state,
                }
            }),
            ts: stamp_of.map_or(0, |r| r.ts),
            writer: stamp_of.map_or(0, |r| r.writer),
        }
    }

    /// The record as the planner sees it.
    fn to_control_record(self) -> ControlRecord {
        ControlRecord {
            version: u64::from(self.version),
            incarnation: INCARNATION.into(),
            epoch: u64::from(self.epoch),
            active: region_name(self.active).to_string(),
            mode: if self.paused {
                Mode::Paused
            } else {
                Mode::Auto
            },
            phase: if self.failing {
                Phase::FailingOver
            } else {
                Phase::Steady
            },
            target: opt_region(self.target),
            execution: (self.execution > 0)
                .then(|| execution_name(INCARNATION, u64::from(self.execution))),
            initiator: opt_region(self.initiator),
            state_machine: None,
            previous: opt_region(self.previous),
            changed_by: "model".into(),
            changed_at: NOW,
            reason: String::new(),
            last_failover_at: self.failed_over.then_some(NOW),
            switched_at: None,
            step: self.step,
            aborts: u64::from(self.aborted),
            ungraceful: self.ungraceful,
            old_region_healthy: self.old_region_healthy,
            forced: false,
            proposal: self.proposal.map(|p| Proposal {
                id: prop_id_text(p.id, p.target),
                epoch: u64::from(p.epoch),
                from: region_name(p.from).into(),
                target: region_name(p.target).into(),
                proposer: region_name(p.target).into(),
                proposed_at: NOW,
                reason: String::new(),
                state: p.state,
                decided_by: (p.state != ProposalState::Proposed).then(|| "model".into()),
                decided_at: (p.state != ProposalState::Proposed).then_some(NOW),
                decision: None,
            }),
        }
    }

    /// Does a proposal await a decision (its timeout may pass)?
    fn proposed(&self) -> bool {
        self.proposal
            .is_some_and(|p| p.state == ProposalState::Proposed)
    }

    /// Does this record assert "`active` is the active region of `epoch`"?
    fn asserts_active(&self) -> bool {
        !self.failing || self.step == RecStep::Switched
    }

    /// The last-writer-wins order.
    fn stamp(&self) -> (u8, u8) {
        (self.ts, self.writer)
    }

    fn short(&self) -> String {
        let mut s = format!(
            "e{} v{} {}/{} active={}",
            self.epoch,
            self.version,
            if self.failing {
                "failing_over"
            } else {
                "steady"
            },
            self.step.as_str(),
            region_name(self.active)
        );
        if self.failing {
            let _ = write!(
                s,
                " target={} init={}",
                region_name(self.target),
                region_name(self.initiator)
            );
        }
        if self.paused {
            s.push_str(" PAUSED");
        }
        if let Some(p) = self.proposal {
            let _ = write!(
                s,
                " proposal(#{} e{} {}->{} {})",
                p.id,
                p.epoch,
                region_name(p.from),
                region_name(p.target),
                p.state.as_str()
            );
        }
        s
    }
}

/// A proposal as the record holds it (its times, proposer and texts are not
/// kept: the proposer is always its target's daemon, and time is abstract).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Prop {
    /// Its id, by the record version it was written at: the id itself is
    /// `proposal_id(INCARNATION, id, target, NOW)` ([`prop_id_text`]).
    id: u8,
    epoch: u8,
    from: u8,
    target: u8,
    state: ProposalState,
}

/// A proposal's id as the planner makes it for the model's proposal
/// written at version `v` by `target`'s daemon (time is `NOW`).
fn prop_id_text(v: u8, target: u8) -> String {
    proposal_id(INCARNATION, u64::from(v), region_name(target), NOW)
}

/// Back from a proposal id to the version it names; the id must be the one
/// the planner makes for it (a planner that made another would show here).
fn prop_id(id: &str, target: u8) -> u8 {
    let v = proposal_id_version(id).unwrap_or_else(|| panic!("proposal id {id:?}")) as u8;
    assert_eq!(id, prop_id_text(v, target), "proposal id of v{v}");
    v
}

/// How an operator named a proposal (`--proposal ID --to TARGET --epoch
/// N`): a ghost of every proposal written on the path, so that stale names
/// (of a proposal withdrawn and made again) are tried too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PropName {
    epoch: u8,
    target: u8,
    id: u8,
}

/// The execution input: a pure function of the failover plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Input {
    epoch: u8,
    from: u8,
    to: u8,
    ungraceful: bool,
    old_region_healthy: bool,
}

/// A StartExecution still to make: execution `failover-<name>` in `region`'s
/// Step Functions with `input`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Intent {
    name: u8,
    region: u8,
    input: Input,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum TokenState {
    NotIssued,
    Waiting,
    Succeeded,
    TimedOut,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Token {
    state: TokenState,
    /// SendTaskSuccess calls Step Functions accepted.
    accepted: u8,
}

impl Token {
    const NEW: Token = Token {
        state: TokenState::NotIssued,
        accepted: 0,
    };
}

/// The state an execution runs next (or its end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Pc {
    MarkFailingOver,
    /// Waiting for the prepare token.
    PrepareTarget,
    SwitchActive,
    /// Waiting for the drain token.
    DrainOld,
    MarkSteady,
    AbortPrepareFailed,
    /// A DynamoDB step failed after its retries (not its condition).
    AbortWorkflowError,
    /// Ended: SUCCEEDED.
    Succeeded,
    /// Ended: FAILED (PrepareFailed).
    FailedPrepare,
    /// Ended: FAILED (WorkflowFailed).
    WorkflowFailed,
    /// Ended: FAILED (SteadyFailed: switched, but MarkSteady failed).
    SteadyFailed,
    /// Ended: FAILED (Superseded).
    Superseded,
}

impl Pc {
    fn status(self) -> ExecutionStatus {
        match self {
            Pc::Succeeded => ExecutionStatus::Succeeded,
            Pc::FailedPrepare | Pc::WorkflowFailed | Pc::SteadyFailed | Pc::Superseded => {
                ExecutionStatus::Ended
            }
            _ => ExecutionStatus::Running,
        }
    }
}

/// One execution in one region's Step Functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Exec {
    /// The region whose Step Functions runs it.
    region: u8,
    /// `failover-<name>`.
    name: u8,
    input: Input,
    pc: Pc,
    prepare: Token,
    drain: Token,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Daemon {
    up: bool,
    partitioned: bool,
    /// The StartExecution of a StartFailover / EnsureExecution, not made yet.
    intent: Option<Intent>,
    /// Its vote is fresh.
    fresh: bool,
}

/// An in-flight replication of one write (`eventual` only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Msg {
    from: u8,
    to: u8,
    rec: Rec,
}

/// Environment budgets left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Budget {
    crashes: u8,
    partitions: u8,
    faults: u8,
    requests: u8,
    approvals: u8,
    proposals: u8,
}

/// The whole system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    /// `strong`: only `replicas[0]`. `eventual`: one per region.
    replicas: [Option<Rec>; N],
    /// Replication in flight, in send order.
    inflight: Vec<Msg>,
    daemons: [Daemon; N],
    /// Every region's Step Functions executions, ordered by (region, name).
    execs: [Option<Exec>; MAX_EXECS],
    /// The operator CLI's StartExecution, not made yet.
    operator: Option<Intent>,
    budget: Budget,
    /// Ghost (invariant 1): bit r of `asserted[e]` = some replica asserted,
    /// at some point on the path here, that region r is active in epoch e.
    asserted: [u8; MAX_EPOCH],
    /// Ghost (invariant 5): every proposal written on the path, the names
    /// an operator may approve or reject by (bounded by `Bounds::proposals`).
    proposals: [Option<PropName>; MAX_PROPOSALS],
}

impl State {
    fn fresh_mask(&self) -> u8 {
        (0..N)
            .filter(|&d| self.daemons[d].fresh)
            .fold(0, |m, d| m | 1 << d)
    }

    fn execs(&self) -> impl Iterator<Item = &Exec> {
        self.execs.iter().flatten()
    }

    fn find_exec(&self, region: u8, name: u8) -> Option<&Exec> {
        self.execs().find(|e| e.region == region && e.name == name)
    }

    fn exec(&self, region: u8, name: u8) -> &Exec {
        self.find_exec(region, name).expect("execution exists")
    }

    fn exec_mut(&mut self, region: u8, name: u8) -> &mut Exec {
        self.execs
            .iter_mut()
            .flatten()
            .find(|e| e.region == region && e.name == name)
            .expect("execution exists")
    }
}

/// Record every assertion "`active` is active in `epoch`" (invariant 1).
fn note_assertions(s: &mut State) {
    for r in s.replicas.iter().flatten() {
        if r.asserts_active() {
            s.asserted[r.epoch as usize] |= 1 << r.active;
        }
    }
}

// ---------------------------------------------------------------------------
// Transitions
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Tok {
    Prepare,
    Drain,
}

/// A workflow update failing for a reason other than its condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Fault {
    None,
    /// Not applied; the task failed.
    NotApplied,
    /// Applied, but the task saw an error (lost response).
    AppliedButFailed,
}

/// An operator request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Req {
    Failover {
        to: u8,
        ungraceful: bool,
        force: bool,
    },
    Pause,
    /// `failoverd approve` (`true`) or `reject` (`false`), naming the
    /// proposal by `--epoch N` alone (`named: None`: the prompt shows which
    /// proposal that is), or by `--epoch N --proposal ID --to TARGET`.
    Decide {
        epoch: u8,
        named: Option<PropName>,
        approve: bool,
    },
}

/// What the model does with a planner decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Effect {
    Nothing,
    Initialize {
        active: u8,
    },
    Claim {
        expected_version: u8,
        intent: Intent,
        /// Supersedes the in-flight failover (an operator's `--force`).
        supersedes: bool,
    },
    Ensure {
        intent: Intent,
    },
    Settle {
        expected_version: u8,
        execution: u8,
        completed: bool,
    },
    SetMode {
        paused: bool,
        expected_version: u8,
    },
    Propose {
        expected_version: u8,
        /// The id's version (`Prop::id`).
        id: u8,
        epoch: u8,
        from: u8,
        target: u8,
    },
    Resolve {
        expected_version: u8,
        epoch: u8,
        target: u8,
        id: u8,
        state: ProposalState,
    },
}

/// One transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Step {
    /// A crashed or partitioned daemon's vote ages out.
    VoteExpires {
        daemon: u8,
    },
    Crash {
        daemon: u8,
    },
    Restart {
        daemon: u8,
    },
    Partition {
        daemon: u8,
    },
    Heal {
        daemon: u8,
    },
    /// Publish the vote, read record and votes, plan, conditional write.
    /// `effect` is the planner's decision on the board the environment chose.
    Round {
        daemon: u8,
        effect: Effect,
    },
    /// The daemon's StartExecution.
    StartExecution {
        daemon: u8,
    },
    /// An operator request through `replica`'s table.
    Operator {
        replica: u8,
        req: Req,
        effect: Effect,
    },
    OperatorStartExecution,
    /// The CLI dies before its StartExecution.
    OperatorKilled,
    /// The oldest in-flight write from `from` to `to` is applied (or
    /// discarded by last-writer-wins).
    Replicate {
        from: u8,
        to: u8,
    },
    /// Execution `failover-<name>` in `region` runs its next update.
    Workflow {
        region: u8,
        name: u8,
        fault: Fault,
    },
    /// The addressed daemon calls SendTaskSuccess.
    Callback {
        region: u8,
        name: u8,
        token: Tok,
    },
    /// The task waiting for the token times out.
    TokenTimeout {
        region: u8,
        name: u8,
        token: Tok,
    },
}

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Consistency {
    Strong,
    Eventual,
}

#[derive(Clone, Copy, Debug)]
struct Bounds {
    crashes: u8,
    partitions: u8,
    /// Workflow updates failing for another reason than their condition.
    faults: u8,
    /// Operator requests.
    requests: u8,
    /// Operator approvals and rejections (any epoch, stale ones included).
    approvals: u8,
    /// Proposals written (each proposal and withdrawal is a write that
    /// moves the version without moving the epoch, so without this bound a
    /// path could propose and withdraw for ever).
    proposals: u8,
    /// States whose record passed this epoch are not expanded.
    max_epoch: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Explore everything; states that violate an invariant are not expanded.
    Never,
    /// Stop at the first violation of this invariant; explore through
    /// violations of the others (their first traces are kept too).
    AtInvariant(u8),
}

#[derive(Clone, Debug)]
struct Model {
    name: &'static str,
    consistency: Consistency,
    policy: Policy,
    bounds: Bounds,
    /// Start without a control record (bootstrap through `Initialize`).
    start_missing: bool,
    /// A daemon that is dead (down, its vote stale) from the start.
    dead: Option<u8>,
    stop: Stop,
    /// Readiness (issue 26): every round may also see any standby
    /// readiness of each region (the "Readiness" section below).
    readiness: bool,
}

/// Everything a planner call depends on except the views on the board.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PlanKey {
    /// The daemon, or NONE for the operator.
    me: u8,
    /// The record read (`None`: missing); its stamp cleared.
    rec: Option<Rec>,
    /// Bit o: observer o's vote is fresh.
    fresh: u8,
    /// Status of the record's execution (when failing over, for a daemon):
    /// 0 not started, 1 running, 2 succeeded, 3 ended.
    execution: Option<u8>,
    /// The daemon judges the failover stalled (past every bound), or, while
    /// a proposal awaits approval, its approval timeout passed.
    stalled: bool,
    req: Option<Req>,
}

/// A vote board: bit `3 * observer + region` set = that observer says that
/// region is Down; with readiness, bit `9 + region` set = that region's
/// standby readiness is unready (the "Readiness" section).
type Board = u16;

/// Memo tables. The planner and the tally are pure, so each distinct input
/// is computed once.
#[derive(Default)]
struct Memo {
    /// (me, fresh) -> every distinct tally over all boards, with a board.
    tallies: FxMap<(u8, u8), Vec<(Tally, Board)>>,
    /// Planner input -> every distinct decision over all boards, with a board.
    effects: FxMap<PlanKey, Vec<(Effect, Board)>>,
    planner_calls: usize,
}

#[derive(Clone, Debug)]
struct Violation {
    invariant: u8,
    what: String,
}

fn votes_of(board: Board, fresh: u8) -> Vec<Vote> {
    (0..N)
        .map(|o| Vote {
            observer: REGIONS[o].to_string(),
            instance: None,
            at: if fresh & (1 << o) != 0 {
                NOW
            } else {
                NOW - 10 * FRESHNESS_MS
            },
            seen_epoch: 0,
            view: (0..N)
                .map(|r| {
                    let down = board & (1 << (3 * o + r)) != 0;
                    (
                        REGIONS[r].to_string(),
                        if down { Verdict::Down } else { Verdict::Up },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
            traffic: None,
            fleet: None,
            readiness: None,
            lease_ms: None,
        })
        .collect()
}

fn board_text(board: Board, fresh: u8) -> String {
    let unready: Vec<&str> = (0..N)
        .filter(|r| board & (1 << (9 + r)) != 0)
        .map(|r| REGIONS[r])
        .collect();
    let unready = (!unready.is_empty()).then(|| format!("unready={{{}}}", unready.join(",")));
    (0..N)
        .filter(|o| fresh & (1 << o) != 0)
        .map(|o| {
            let down: Vec<&str> = (0..N)
                .filter(|r| board & (1 << (3 * o + r)) != 0)
                .map(|r| REGIONS[r])
                .collect();
            format!("{} says down={{{}}}", REGIONS[o], down.join(","))
        })
        .chain(
            (0..N)
                .filter(|o| fresh & (1 << o) == 0)
                .map(|o| format!("{} stale", REGIONS[o])),
        )
        .chain(unready)
        .collect::<Vec<_>>()
        .join("; ")
}

fn request_of(req: Req) -> Request {
    match req {
        Req::Failover {
            to,
            ungraceful,
            force,
        } => Request::Failover {
            to: region_name(to).into(),
            reason: "model".into(),
            ungraceful,
            force,
            operator: "model".into(),
        },
        Req::Pause => Request::Pause {
            reason: "model".into(),
            operator: "model".into(),
        },
        Req::Decide {
            epoch,
            named,
            approve,
        } => {
            let epoch = Some(u64::from(epoch));
            let proposal = named.map(|n| prop_id_text(n.id, n.target));
            let to = named.map(|n| region_name(n.target).to_string());
            let (reason, operator) = ("model".to_string(), "model".to_string());
            if approve {
                Request::Approve {
                    epoch,
                    proposal,
                    to,
                    reason,
                    operator,
                }
            } else {
                Request::Reject {
                    epoch,
                    proposal,
                    to,
                    reason,
                    operator,
                }
            }
        }
    }
}

fn effect_of(d: &Decision) -> Effect {
    let Decision::Act { action } = d else {
        return Effect::Nothing;
    };
    let intent = |p: &FailoverPlan| {
        let name = execution_epoch(&p.execution);
        assert_eq!(
            u64::from(name),
            p.epoch,
            "execution name and epoch disagree: {p:?}"
        );
        Intent {
            name,
            region: region_index(&p.initiator),
            input: Input {
                epoch: p.epoch as u8,
                from: region_index(&p.from),
                to: region_index(&p.to),
                ungraceful: p.ungraceful,
                old_region_healthy: p.old_region_healthy,
            },
        }
    };
    match action {
        Action::Initialize { active } => Effect::Initialize {
            active: region_index(active),
        },
        // The model never loses its record, and its daemons hold no copy
        // (`Inputs::held` is None): re-creation is the simulation's
        // (tests/sim: a deleted and a restored record).
        Action::Recreate { .. } => unreachable!("the model never loses the record"),
        Action::StartFailover(p) => Effect::Claim {
            expected_version: p.expected_version as u8,
            intent: intent(p),
            supersedes: p.supersedes.is_some(),
        },
        Action::EnsureExecution(p) => Effect::Ensure { intent: intent(p) },
        Action::Settle {
            expected_version,
            execution,
            outcome,
            ..
        } => Effect::Settle {
            expected_version: *expected_version as u8,
            execution: execution_epoch(execution),
            completed: *outcome == Settlement::Completed,
        },
        Action::SetMode {
            mode,
            expected_version,
            ..
        } => Effect::SetMode {
            paused: *mode == Mode::Paused,
            expected_version: *expected_version as u8,
        },
        Action::Propose {
            expected_version,
            id,
            epoch,
            from,
            target,
            ..
        } => {
            let target = region_index(target);
            let id = prop_id(id, target);
            assert_eq!(
                u64::from(id),
                expected_version + 1,
                "a proposal's id names the version it is written at"
            );
            Effect::Propose {
                expected_version: *expected_version as u8,
                id,
                epoch: *epoch as u8,
                from: region_index(from),
                target,
            }
        }
        Action::Resolve {
            expected_version,
            epoch,
            target,
            id,
            state,
            ..
        } => {
            let target = region_index(target);
            Effect::Resolve {
                expected_version: *expected_version as u8,
                epoch: *epoch as u8,
                target,
                id: prop_id(id, target),
                state: *state,
            }
        }
    }
}

fn decision_text(d: &Decision) -> String {
    match d {
        Decision::Act { action } => match action {
            Action::StartFailover(p) => format!(
                "StartFailover {} -> {} ({}, expected v{}, old_region_healthy={}{})",
                p.from,
                p.to,
                p.execution,
                p.expected_version,
                p.old_region_healthy,
                if p.ungraceful { ", ungraceful" } else { "" }
            ),
            Action::EnsureExecution(p) => format!("EnsureExecution {}", p.execution),
            Action::Settle {
                expected_version,
                execution,
                outcome,
                reason,
                ..
            } => format!(
                "Settle {execution} as {outcome:?} (expected v{expected_version}): {reason}"
            ),
            Action::Initialize { active } => format!("Initialize active={active}"),
            Action::Recreate { from, .. } => format!("Recreate {from:?}"),
            Action::SetMode {
                mode,
                expected_version,
                ..
            } => format!("SetMode {mode:?} (expected v{expected_version})"),
            Action::Propose {
                expected_version,
                epoch,
                from,
                target,
                ..
            } => format!(
                "Propose {from} -> {target} for epoch {epoch} (expected v{expected_version})"
            ),
            Action::Resolve {
                expected_version,
                epoch,
                state,
                reason,
                ..
            } => format!(
                "Resolve the proposal of epoch {epoch} as {} (expected v{expected_version}): {reason}",
                state.as_str()
            ),
        },
        Decision::Idle { why } => format!("idle: {why}"),
        Decision::Refuse { why } => format!("refused: {why}"),
    }
}

impl Model {
    fn replica_of(&self, region: u8) -> usize {
        match self.consistency {
            Consistency::Strong => 0,
            Consistency::Eventual => region as usize,
        }
    }

    fn replicas(&self) -> std::ops::Range<u8> {
        match self.consistency {
            Consistency::Strong => 0..1,
            Consistency::Eventual => 0..N as u8,
        }
    }

    fn initial(&self) -> State {
        let rec = if self.start_missing {
            None
        } else {
            Some(Rec::initial(0))
        };
        let mut replicas = [None; N];
        for k in self.replicas() {
            replicas[k as usize] = rec;
        }
        let b = self.bounds;
        let mut s = State {
            replicas,
            inflight: Vec::new(),
            daemons: [Daemon {
                up: true,
                partitioned: false,
                intent: None,
                fresh: true,
            }; N],
            execs: [None; MAX_EXECS],
            operator: None,
            budget: Budget {
                crashes: b.crashes,
                partitions: b.partitions,
                faults: b.faults,
                requests: b.requests,
                approvals: b.approvals,
                proposals: b.proposals,
            },
            asserted: [0; MAX_EPOCH],
            proposals: [None; MAX_PROPOSALS],
        };
        if let Some(d) = self.dead {
            s.daemons[d as usize].up = false;
            s.daemons[d as usize].fresh = false;
        }
        note_assertions(&mut s);
        s
    }

    /// The shortest path from the initial state to a state where `goal`
    /// holds, if there is one within the bounds.
    fn reach(&self, goal: impl Fn(&State) -> bool) -> Option<Vec<Step>> {
        let mut memo = Memo::default();
        let init = self.initial();
        let mut seen: FxMap<State, u32> = FxMap::default();
        let mut nodes: Vec<(u32, Option<Step>)> = vec![(0, None)];
        seen.insert(init.clone(), 0);
        let mut queue = VecDeque::from([(init, 0u32)]);
        while let Some((s, idx)) = queue.pop_front() {
            if goal(&s) {
                let mut steps = Vec::new();
                let mut cur = idx;
                while let (parent, Some(step)) = nodes[cur as usize] {
                    steps.push(step);
                    cur = parent;
                }
                steps.reverse();
                return Some(steps);
            }
            if self.past_cap(&s) {
                continue;
            }
            for (step, n) in self.successors(&s, &mut memo) {
                if seen.contains_key(&n) {
                    continue;
                }
                let id = nodes.len() as u32;
                nodes.push((idx, Some(step)));
                seen.insert(n.clone(), id);
                queue.push_back((n, id));
            }
        }
        None
    }

    // ----- the real planner -----

    /// What `me` (a daemon, or NONE for the operator) would plan with, but
    /// for the board.
    fn plan_key(
        &self,
        s: &State,
        me: u8,
        replica: usize,
        req: Option<Req>,
        stalled: bool,
    ) -> PlanKey {
        let rec = s.replicas[replica].map(|r| Rec {
            ts: 0,
            writer: 0,
            ..r
        });
        let mut fresh = s.fresh_mask();
        if me != NONE {
            fresh |= 1 << me; // the round publishes our vote first
        }
        let execution = match rec {
            Some(r) if me != NONE && r.failing && r.initiator != NONE => {
                let status = s
                    .find_exec(r.initiator, r.execution)
                    .map_or(ExecutionStatus::NotStarted, |e| e.pc.status());
                Some(match status {
                    ExecutionStatus::NotStarted => 0,
                    ExecutionStatus::Running => 1,
                    ExecutionStatus::Succeeded => 2,
                    ExecutionStatus::Ended => 3,
                })
            }
            _ => None,
        };
        PlanKey {
            me,
            rec,
            fresh,
            execution,
            stalled: stalled && rec.is_some_and(|r| r.failing || r.proposed()),
            req,
        }
    }

    /// The real planner on `k` and the real tally of `board` (and, with
    /// readiness, the board's readiness bits).
    fn decide(&self, k: &PlanKey, t: &Tally, board: Board) -> Decision {
        let readiness: FleetReadiness = (0..N)
            .map(|r| {
                let ready = if board & (1 << (9 + r)) != 0 {
                    Ready::Unready("model".into())
                } else {
                    Ready::Ready
                };
                (REGIONS[r].to_string(), ready)
            })
            .collect();
        let record = match k.rec {
            Some(r) => RecordRead::Found(r.to_control_record()),
            None => RecordRead::Missing,
        };
        let execution = k.execution.map(|e| match e {
            0 => ExecutionStatus::NotStarted,
            1 => ExecutionStatus::Running,
            2 => ExecutionStatus::Succeeded,
            _ => ExecutionStatus::Ended,
        });
        let request = k.req.map(request_of);
        // Time is abstract: a round may judge a proposal's approval timeout
        // passed at any moment (its `stalled` flag).
        let late = k.stalled && k.rec.is_some_and(|r| r.proposed());
        plan(&Inputs {
            now: if late {
                NOW + self.policy.approval_timeout_ms
            } else {
                NOW
            },
            me: if k.me == NONE {
                "operator"
            } else {
                REGIONS[k.me as usize]
            },
            tally: t,
            record: &record,
            execution,
            stalled_ms: if k.stalled && !late { STALLED_MS } else { 0 },
            policy: &self.policy,
            request: request.as_ref(),
            held: None,
            fleet_epoch: 0,
            readiness: &readiness,
        })
    }

    fn tally_of(me: u8, board: Board, fresh: u8) -> Tally {
        let regions: Vec<String> = REGIONS.iter().map(|r| r.to_string()).collect();
        let votes = votes_of(board, fresh);
        if me == NONE {
            tally_as_operator(&regions, &votes, NOW, FRESHNESS_MS)
        } else {
            tally(REGIONS[me as usize], &regions, &votes, NOW, FRESHNESS_MS)
        }
    }

    /// Every distinct decision the planner can take on `k`, over every board.
    fn effects(&self, memo: &mut Memo, k: PlanKey) -> Vec<(Effect, Board)> {
        if let Some(v) = memo.effects.get(&k) {
            return v.clone();
        }
        let tallies = memo
            .tallies
            .entry((k.me, k.fresh))
            .or_insert_with(|| {
                // Views of stale observers do not count: enumerate the fresh ones'.
                let mut out: Vec<(Tally, Board)> = Vec::new();
                for board in 0..(1u16 << (3 * N)) {
                    let stale_bits =
                        (0..N).any(|o| k.fresh & (1 << o) == 0 && board & (0b111 << (3 * o)) != 0);
                    if stale_bits {
                        continue;
                    }
                    let t = Self::tally_of(k.me, board, k.fresh);
                    if !out.iter().any(|(u, _)| *u == t) {
                        out.push((t, board));
                    }
                }
                out
            })
            .clone();
        let mut out: Vec<(Effect, Board)> = Vec::new();
        // With readiness, every assignment of unready regions on top of
        // every tally (`Ready::Unknown` plans as `Ready`, so two values
        // cover the planner's cases).
        let masks: u16 = if self.readiness { 1 << N } else { 1 };
        for (t, board) in &tallies {
            for mask in 0..masks {
                let board = board | (mask << 9);
                memo.planner_calls += 1;
                let e = effect_of(&self.decide(&k, t, board));
                if !out.iter().any(|(f, _)| *f == e) {
                    out.push((e, board));
                }
            }
        }
        memo.effects.insert(k, out.clone());
        out
    }

    // ----- writes -----

    /// A conditional write that succeeded on replica `k`: stamp it and
    /// replicate it.
    fn write(&self, s: &mut State, k: usize, mut rec: Rec) {
        if self.consistency == Consistency::Eventual {
            let ts = s.replicas[k].map_or(0, |r| r.ts);
            rec.ts = ts.checked_add(1).expect("timestamp overflow");
            rec.writer = k as u8;
            for j in self.replicas() {
                if j as usize != k {
                    s.inflight.push(Msg {
                        from: k as u8,
                        to: j,
                        rec,
                    });
                }
            }
        }
        s.replicas[k] = Some(rec);
    }

    /// Apply one conditional write to replica `k` with the real transition
    /// function (`core::record::apply`, the semantics the DynamoDB adapter
    /// and the state machine implement). `false`: its condition failed.
    fn write_record(&self, s: &mut State, k: usize, w: &RecordWrite) -> bool {
        let cur = s.replicas[k];
        let before = cur.map(Rec::to_control_record);
        match record::apply(before.as_ref(), w) {
            Ok(next) => {
                let rec = Rec::from_control_record(&next, cur);
                self.write(s, k, rec);
                true
            }
            Err(_) => false,
        }
    }

    /// Perform a planner effect through replica `k` (the executor). `Err`:
    /// the conditional write lost and nothing changed.
    fn apply(&self, s: &mut State, k: usize, e: Effect) -> Result<Option<Intent>, ()> {
        let w = match e {
            Effect::Nothing => return Ok(None),
            Effect::Ensure { intent } => return Ok(Some(intent)),
            Effect::Initialize { active } => RecordWrite::Initialize {
                active: region_name(active).into(),
                incarnation: INCARNATION.into(),
                by: "model".into(),
                at: NOW,
                reason: String::new(),
            },
            Effect::Claim {
                expected_version,
                intent,
                supersedes,
            } => RecordWrite::Claim {
                plan: FailoverPlan {
                    from: region_name(intent.input.from).into(),
                    to: region_name(intent.input.to).into(),
                    epoch: u64::from(intent.input.epoch),
                    execution: execution_name(INCARNATION, u64::from(intent.name)),
                    initiator: region_name(intent.region).into(),
                    expected_version: u64::from(expected_version),
                    reason: String::new(),
                    ungraceful: intent.input.ungraceful,
                    old_region_healthy: intent.input.old_region_healthy,
                    forced: supersedes,
                    automatic: false,
                    changed_by: "model".into(),
                    claimed_at: NOW,
                    supersedes: supersedes.then(|| "superseded".to_string()),
                    state_machine: None,
                },
            },
            Effect::Settle {
                expected_version,
                execution,
                completed,
            } => RecordWrite::Settle {
                expected_version: u64::from(expected_version),
                execution: execution_name(INCARNATION, u64::from(execution)),
                outcome: if completed {
                    Settlement::Completed
                } else {
                    Settlement::Aborted
                },
                by: "model".into(),
                at: NOW,
                reason: String::new(),
            },
            Effect::SetMode {
                paused,
                expected_version,
            } => RecordWrite::SetMode {
                mode: if paused { Mode::Paused } else { Mode::Auto },
                expected_version: u64::from(expected_version),
                by: "model".into(),
                at: NOW,
                reason: String::new(),
            },
            Effect::Propose {
                expected_version,
                id,
                epoch,
                from,
                target,
            } => RecordWrite::Propose {
                expected_version: u64::from(expected_version),
                id: prop_id_text(id, target),
                epoch: u64::from(epoch),
                from: region_name(from).into(),
                target: region_name(target).into(),
                by: region_name(target).into(),
                at: NOW,
                reason: String::new(),
            },
            Effect::Resolve {
                expected_version,
                epoch,
                target,
                id,
                state,
            } => RecordWrite::Resolve {
                expected_version: u64::from(expected_version),
                epoch: u64::from(epoch),
                target: region_name(target).into(),
                id: prop_id_text(id, target),
                state,
                by: "model".into(),
                at: NOW,
                reason: String::new(),
            },
        };
        if !self.write_record(s, k, &w) {
            return Err(());
        }
        Ok(match e {
            Effect::Claim { intent, .. } => Some(intent),
            _ => None,
        })
    }

    /// StartExecution: idempotent by name within a region.
    fn start_execution(s: &mut State, i: Intent) {
        if s.find_exec(i.region, i.name).is_some() {
            return; // the same execution (open) or ExecutionAlreadyExists (closed)
        }
        let slot = s
            .execs
            .iter_mut()
            .find(|e| e.is_none())
            .expect("raise MAX_EXECS");
        *slot = Some(Exec {
            region: i.region,
            name: i.name,
            input: i.input,
            pc: Pc::MarkFailingOver,
            prepare: Token::NEW,
            drain: Token::NEW,
        });
        s.execs
            .sort_by_key(|e| e.map_or((u8::MAX, u8::MAX), |e| (e.region, e.name)));
    }

    /// Run one record update of an execution against its region's replica,
    /// with the real transition function: a failed condition goes to
    /// Superseded (Catch ConditionalCheckFailed); another failure after the
    /// retries (`fault`, applied or not) to the state machine's error path.
    fn workflow_update(&self, s: &mut State, region: u8, name: u8, fault: Fault) {
        let k = self.replica_of(region);
        let e = *s.exec(region, name);
        let (epoch, execution) = (
            u64::from(e.input.epoch),
            execution_name(INCARNATION, u64::from(e.name)),
        );
        let w = match e.pc {
            Pc::MarkFailingOver => RecordWrite::Mark { epoch, execution },
            Pc::SwitchActive => RecordWrite::Switch {
                epoch,
                execution,
                from: region_name(e.input.from).into(),
                to: region_name(e.input.to).into(),
                at: NOW,
            },
            Pc::MarkSteady => RecordWrite::Steady { epoch, execution },
            Pc::AbortPrepareFailed | Pc::AbortWorkflowError => {
                RecordWrite::Abort { epoch, execution }
            }
            other => unreachable!("not an update state: {other:?}"),
        };
        let held = if fault == Fault::NotApplied {
            // Not applied: whether the condition would have held does not
            // matter, the task fails with another error.
            true
        } else {
            self.write_record(s, k, &w)
        };
        let ex = s.exec_mut(region, name);
        ex.pc = if !held {
            Pc::Superseded
        } else if fault != Fault::None {
            match e.pc {
                Pc::MarkFailingOver | Pc::SwitchActive => Pc::AbortWorkflowError,
                Pc::MarkSteady => Pc::SteadyFailed,
                Pc::AbortPrepareFailed => Pc::FailedPrepare,
                _ => Pc::WorkflowFailed,
            }
        } else {
            match e.pc {
                Pc::MarkFailingOver => {
                    ex.prepare.state = TokenState::Waiting; // JournalStarted, PrepareTarget
                    Pc::PrepareTarget
                }
                Pc::SwitchActive if e.input.ungraceful || !e.input.old_region_healthy => {
                    Pc::MarkSteady
                }
                Pc::SwitchActive => {
                    ex.drain.state = TokenState::Waiting;
                    Pc::DrainOld
                }
                Pc::MarkSteady => Pc::Succeeded,
                Pc::AbortPrepareFailed => Pc::FailedPrepare,
                Pc::AbortWorkflowError => Pc::WorkflowFailed,
                other => other,
            }
        };
    }

    // ----- successors -----

    fn successors(&self, s: &State, memo: &mut Memo) -> Vec<(Step, State)> {
        let mut out: Vec<(Step, State)> = Vec::new();
        let mut push = |step: Step, mut next: State| {
            note_assertions(&mut next);
            out.push((step, next));
        };

        // Daemons and their environment.
        for d in 0..N as u8 {
            let du = d as usize;
            let dm = s.daemons[du];
            if (!dm.up || dm.partitioned) && dm.fresh {
                let mut n = s.clone();
                n.daemons[du].fresh = false;
                push(Step::VoteExpires { daemon: d }, n);
            }
            if dm.up && s.budget.crashes > 0 {
                let mut n = s.clone();
                n.budget.crashes -= 1;
                n.daemons[du].up = false;
                n.daemons[du].intent = None;
                push(Step::Crash { daemon: d }, n);
            }
            // A daemon dead from the start stays dead.
            if !dm.up && self.dead != Some(d) {
                let mut n = s.clone();
                n.daemons[du].up = true;
                push(Step::Restart { daemon: d }, n);
            }
            if dm.up && !dm.partitioned && s.budget.partitions > 0 {
                let mut n = s.clone();
                n.budget.partitions -= 1;
                n.daemons[du].partitioned = true;
                push(Step::Partition { daemon: d }, n);
            }
            if dm.partitioned {
                let mut n = s.clone();
                n.daemons[du].partitioned = false;
                push(Step::Heal { daemon: d }, n);
            }
            // A round. (A partitioned daemon reads `Unreadable` and idles: no
            // change, no transition.)
            if dm.up && !dm.partitioned && dm.intent.is_none() {
                let k = self.replica_of(d);
                let failing = s.replicas[k].is_some_and(|r| r.failing || r.proposed());
                let stalls: &[bool] = if failing { &[false, true] } else { &[false] };
                let mut effects: Vec<Effect> = Vec::new();
                for &stalled in stalls {
                    let key = self.plan_key(s, d, k, None, stalled);
                    for (effect, _) in self.effects(memo, key) {
                        if !effects.contains(&effect) {
                            effects.push(effect);
                        }
                    }
                }
                for effect in effects {
                    self.check_approved(s, k, effect);
                    let proposes = matches!(effect, Effect::Propose { .. });
                    if proposes && s.budget.proposals == 0 {
                        continue;
                    }
                    let mut n = s.clone();
                    n.daemons[du].fresh = true;
                    if let Ok(intent) = self.apply(&mut n, k, effect) {
                        n.daemons[du].intent = intent;
                        if let Effect::Propose {
                            id, epoch, target, ..
                        } = effect
                        {
                            n.budget.proposals -= 1;
                            let slot = n
                                .proposals
                                .iter_mut()
                                .find(|p| p.is_none())
                                .expect("raise MAX_PROPOSALS");
                            *slot = Some(PropName { epoch, target, id });
                        }
                    }
                    if n != *s {
                        push(Step::Round { daemon: d, effect }, n);
                    }
                }
            }
            if let Some(i) = dm.intent {
                let mut n = s.clone();
                n.daemons[du].intent = None;
                if !dm.partitioned {
                    Self::start_execution(&mut n, i);
                }
                push(Step::StartExecution { daemon: d }, n);
            }
        }

        // The operator.
        if s.budget.requests > 0 && s.operator.is_none() {
            let mut reqs = vec![Req::Pause];
            for to in 0..N as u8 {
                for ungraceful in [false, true] {
                    for force in [false, true] {
                        reqs.push(Req::Failover {
                            to,
                            ungraceful,
                            force,
                        });
                    }
                }
            }
            for replica in self.replicas() {
                for &req in &reqs {
                    let key = self.plan_key(s, NONE, replica as usize, Some(req), false);
                    for (effect, _) in self.effects(memo, key) {
                        let mut n = s.clone();
                        // A refused request, or a lost write, changes nothing.
                        if let Ok(intent) = self.apply(&mut n, replica as usize, effect)
                            && n.replicas != s.replicas
                        {
                            n.budget.requests -= 1;
                            n.operator = intent;
                            push(
                                Step::Operator {
                                    replica,
                                    req,
                                    effect,
                                },
                                n,
                            );
                        }
                    }
                }
            }
        }
        // The operator's approvals and rejections, of any epoch (a stale or
        // future one must be refused).
        // By epoch alone, or by the full name of any proposal written on
        // the path (the current one, or one withdrawn, expired or rejected
        // since, whose epoch a later proposal may have again).
        if s.budget.approvals > 0 && s.operator.is_none() {
            let names = (1..=self.bounds.max_epoch + 1)
                .map(|epoch| (epoch, None))
                .chain(s.proposals.iter().flatten().map(|n| (n.epoch, Some(*n))));
            let reqs: Vec<Req> = names
                .flat_map(|(epoch, named)| {
                    [true, false].map(|approve| Req::Decide {
                        epoch,
                        named,
                        approve,
                    })
                })
                .collect();
            for replica in self.replicas() {
                for &req in &reqs {
                    let key = self.plan_key(s, NONE, replica as usize, Some(req), false);
                    for (effect, _) in self.effects(memo, key) {
                        let mut n = s.clone();
                        if self.apply(&mut n, replica as usize, effect).is_ok()
                            && n.replicas != s.replicas
                        {
                            Self::check_decided(s, &n, replica as usize, req);
                            n.budget.approvals -= 1;
                            push(
                                Step::Operator {
                                    replica,
                                    req,
                                    effect,
                                },
                                n,
                            );
                        }
                    }
                }
            }
        }
        if let Some(i) = s.operator {
            let mut n = s.clone();
            n.operator = None;
            Self::start_execution(&mut n, i);
            push(Step::OperatorStartExecution, n);
            let mut n = s.clone();
            n.operator = None;
            push(Step::OperatorKilled, n);
        }

        // Replication: the oldest message of each (from, to) channel.
        let mut heads: Vec<(u8, u8)> = Vec::new();
        for (x, m) in s.inflight.iter().enumerate() {
            if heads.contains(&(m.from, m.to)) {
                continue;
            }
            heads.push((m.from, m.to));
            let mut n = s.clone();
            n.inflight.remove(x);
            let dst = &mut n.replicas[m.to as usize];
            if dst.is_none_or(|cur| m.rec.stamp() > cur.stamp()) {
                *dst = Some(m.rec);
            }
            push(
                Step::Replicate {
                    from: m.from,
                    to: m.to,
                },
                n,
            );
        }

        // Step Functions.
        for e in s.execs() {
            let (region, name) = (e.region, e.name);
            {
                if matches!(
                    e.pc,
                    Pc::MarkFailingOver
                        | Pc::SwitchActive
                        | Pc::MarkSteady
                        | Pc::AbortPrepareFailed
                        | Pc::AbortWorkflowError
                ) {
                    let faults: &[Fault] = if s.budget.faults > 0 {
                        &[Fault::None, Fault::NotApplied, Fault::AppliedButFailed]
                    } else {
                        &[Fault::None]
                    };
                    for &fault in faults {
                        let mut n = s.clone();
                        if fault != Fault::None {
                            n.budget.faults -= 1;
                        }
                        self.workflow_update(&mut n, region, name, fault);
                        push(
                            Step::Workflow {
                                region,
                                name,
                                fault,
                            },
                            n,
                        );
                    }
                }
                for token in [Tok::Prepare, Tok::Drain] {
                    let (t, addressee) = match token {
                        Tok::Prepare => (e.prepare, e.input.to),
                        Tok::Drain => (e.drain, e.input.from),
                    };
                    let dm = s.daemons[addressee as usize];
                    // Any number of callbacks, at any time after the token
                    // was issued: one on a task that no longer waits
                    // (duplicate, late) is rejected and changes nothing, so
                    // only the one that meets a waiting task is a transition.
                    if t.state == TokenState::Waiting && dm.up && !dm.partitioned {
                        let mut n = s.clone();
                        let ex = n.exec_mut(region, name);
                        let (tk, next) = match token {
                            Tok::Prepare => (&mut ex.prepare, Pc::SwitchActive),
                            Tok::Drain => (&mut ex.drain, Pc::MarkSteady),
                        };
                        tk.state = TokenState::Succeeded;
                        tk.accepted += 1;
                        ex.pc = next;
                        push(
                            Step::Callback {
                                region,
                                name,
                                token,
                            },
                            n,
                        );
                    }
                    if t.state == TokenState::Waiting {
                        let mut n = s.clone();
                        let ex = n.exec_mut(region, name);
                        match token {
                            Tok::Prepare => {
                                ex.prepare.state = TokenState::TimedOut;
                                ex.pc = Pc::AbortPrepareFailed;
                            }
                            Tok::Drain => {
                                ex.drain.state = TokenState::TimedOut;
                                ex.pc = Pc::MarkSteady; // JournalDrainSkipped
                            }
                        }
                        push(
                            Step::TokenTimeout {
                                region,
                                name,
                                token,
                            },
                            n,
                        );
                    }
                }
            }
        }
        out
    }

    // ----- invariants -----

    /// With manual approval, a daemon claims an automatic failover only when
    /// the record holds that epoch's proposal, approved (or still proposed
    /// and its timeout passed, with `on_approval_timeout = "proceed"`), and
    /// an operator's decision names the proposal's epoch. Checked on every
    /// round's decision; a violation is a bug in the planner.
    fn check_approved(&self, s: &State, k: usize, effect: Effect) {
        if self.policy.approval != Approval::Manual {
            return;
        }
        if let Effect::Claim { intent, .. } = effect {
            let rec = s.replicas[k].expect("a claim reads a record");
            if rec.failing {
                return; // not an automatic claim of a new failover
            }
            let ok = rec.proposal.is_some_and(|p| {
                p.epoch == intent.input.epoch
                    && p.target == intent.input.to
                    && (p.state == ProposalState::Approved
                        || (p.state == ProposalState::Proposed
                            && self.policy.on_approval_timeout == OnApprovalTimeout::Proceed))
            });
            assert!(
                ok,
                "an automatic claim without an approved proposal: {} claims epoch {} on [{}]",
                region_name(intent.region),
                intent.input.epoch,
                rec.short()
            );
        }
    }

    /// Invariant 5: **an operator's approval or rejection is applied only
    /// to the proposal it names**: the record held, open (proposed), the
    /// proposal of the epoch named, and, when named by id and target, that
    /// very one; the write decided that proposal and changed nothing else
    /// of it. Checked on every accepted decision; a violation is a bug in
    /// the planner or in `core::record::apply`.
    fn check_decided(s: &State, n: &State, k: usize, req: Req) {
        let Req::Decide {
            epoch,
            named,
            approve,
        } = req
        else {
            return;
        };
        let before = s.replicas[k].and_then(|r| r.proposal);
        let after = n.replicas[k].and_then(|r| r.proposal);
        let want = if approve {
            ProposalState::Approved
        } else {
            ProposalState::Rejected
        };
        let ok = match (before, after) {
            (Some(b), Some(a)) => {
                b.state == ProposalState::Proposed
                    && b.epoch == epoch
                    && named.is_none_or(|m| (m.epoch, m.target, m.id) == (b.epoch, b.target, b.id))
                    && a == Prop { state: want, ..b }
            }
            _ => false,
        };
        assert!(
            ok,
            "a decision applied to a proposal it does not name: {req:?} turned {before:?} into {after:?}"
        );
    }

    /// Invariants 1, 3, 4 on `s`, and 2 on the transition from `prev`.
    fn check_invariants(&self, prev: Option<&State>, s: &State) -> Option<Violation> {
        if let Some(p) = prev {
            for k in self.replicas() {
                if let (Some(a), Some(b)) = (p.replicas[k as usize], s.replicas[k as usize])
                    && b.epoch < a.epoch
                {
                    return Some(Violation {
                        invariant: 2,
                        what: format!(
                            "the epoch of replica {} went from {} to {}",
                            REGIONS[k as usize], a.epoch, b.epoch
                        ),
                    });
                }
            }
        }
        for (e, bits) in s.asserted.iter().enumerate() {
            if bits.count_ones() > 1 {
                let who: Vec<&str> = (0..N)
                    .filter(|r| bits & (1 << r) != 0)
                    .map(|r| REGIONS[r])
                    .collect();
                return Some(Violation {
                    invariant: 1,
                    what: format!("epoch {e} has two active regions: {}", who.join(" and ")),
                });
            }
        }
        for a in s.execs() {
            if s.execs().filter(|b| b.input.epoch == a.input.epoch).count() > 1 {
                let all: Vec<String> = s
                    .execs()
                    .filter(|b| b.input.epoch == a.input.epoch)
                    .map(|b| format!("{}/failover-{}", REGIONS[b.region as usize], b.name))
                    .collect();
                return Some(Violation {
                    invariant: 3,
                    what: format!(
                        "epoch {} has {} failover executions: {}",
                        a.input.epoch,
                        all.len(),
                        all.join(", ")
                    ),
                });
            }
            for (tok, t) in [("prepare", a.prepare), ("drain", a.drain)] {
                if t.accepted > 1 {
                    return Some(Violation {
                        invariant: 4,
                        what: format!(
                            "token {}/failover-{}#{tok} succeeded {} times",
                            REGIONS[a.region as usize], a.name, t.accepted
                        ),
                    });
                }
            }
        }
        None
    }

    fn past_cap(&self, s: &State) -> bool {
        s.replicas
            .iter()
            .flatten()
            .any(|r| r.epoch > self.bounds.max_epoch)
    }

    // ----- exploration -----

    fn explore(&self) -> Outcome {
        assert!((self.bounds.max_epoch as usize) < MAX_EPOCH - 1);
        let started = Instant::now();
        let mut memo = Memo::default();
        let init = self.initial();
        assert!(
            self.check_invariants(None, &init).is_none(),
            "the initial state violates an invariant"
        );
        let progress = std::env::var_os("MODEL_CHECK_PROGRESS").is_some();
        let mut next_report = 100_000;
        let mut seen: FxMap<State, u32> = FxMap::default();
        // Per state index: (parent, step, depth); 0 is the initial state.
        let mut nodes: Vec<(u32, Option<Step>, u16)> = vec![(0, None, 0)];
        seen.insert(init.clone(), 0);
        let mut queue: VecDeque<(State, u32)> = VecDeque::from([(init, 0)]);
        let mut found: Vec<(Violation, u32)> = Vec::new();
        let (mut cut, mut max_depth, mut edges) = (0usize, 0u16, 0usize);
        'bfs: while let Some((s, idx)) = queue.pop_front() {
            if self.past_cap(&s) {
                cut += 1;
                continue;
            }
            let depth = nodes[idx as usize].2;
            if progress && seen.len() >= next_report {
                next_report += 100_000;
                eprintln!(
                    "  [{}] {} states, depth {depth}, queue {}, {:.0}s",
                    self.name,
                    seen.len(),
                    queue.len(),
                    started.elapsed().as_secs_f64()
                );
            }
            for (step, next) in self.successors(&s, &mut memo) {
                edges += 1;
                let violation = self.check_invariants(Some(&s), &next);
                let known = seen.contains_key(&next);
                if known && violation.as_ref().is_none_or(|v| v.invariant != 2) {
                    continue; // (a transition into a known state can still break invariant 2)
                }
                let id = nodes.len() as u32;
                nodes.push((idx, Some(step), depth + 1));
                if !known {
                    seen.insert(next.clone(), id);
                    max_depth = max_depth.max(depth + 1);
                }
                match violation {
                    Some(v) => {
                        let inv = v.invariant;
                        if !found.iter().any(|(f, _)| f.invariant == inv) {
                            found.push((v, id));
                        }
                        match self.stop {
                            Stop::AtInvariant(i) if i == inv => break 'bfs,
                            Stop::AtInvariant(_) if !known => queue.push_back((next, id)),
                            _ => {}
                        }
                    }
                    None => queue.push_back((next, id)),
                }
            }
        }
        let traces = found
            .into_iter()
            .map(|(v, id)| {
                let mut steps = Vec::new();
                let mut cur = id;
                while let (parent, Some(step), _) = nodes[cur as usize] {
                    steps.push(step);
                    cur = parent;
                }
                steps.reverse();
                (v, steps)
            })
            .collect();
        Outcome {
            states: seen.len(),
            edges,
            depth: max_depth,
            cut,
            planner_calls: memo.planner_calls,
            traces,
            secs: started.elapsed().as_secs_f64(),
        }
    }

    // ----- liveness probe -----

    /// From `start`, with the environment frozen (no more crashes,
    /// partitions or workflow faults, and no restart or heal: whoever is
    /// down stays down), can every replica's record become steady? Operator
    /// requests left in the budget may be used.
    fn can_settle(&self, start: &State, memo: &mut Memo) -> bool {
        let mut s0 = start.clone();
        s0.budget.crashes = 0;
        s0.budget.partitions = 0;
        s0.budget.faults = 0;
        let steady = |s: &State| s.replicas.iter().flatten().all(|r| !r.failing);
        let mut seen: FxMap<State, ()> = FxMap::default();
        let mut queue = VecDeque::from([s0]);
        while let Some(s) = queue.pop_front() {
            if steady(&s) {
                return true;
            }
            for (step, n) in self.successors(&s, memo) {
                if matches!(step, Step::Restart { .. } | Step::Heal { .. }) || seen.contains_key(&n)
                {
                    continue;
                }
                seen.insert(n.clone(), ());
                queue.push_back(n);
            }
        }
        false
    }

    /// The shortest path to a state where a record is failing over, its
    /// initiator's daemon is down, and — if that daemon never comes back —
    /// nothing can ever make the record steady again.
    fn find_wedge(&self) -> Option<Vec<Step>> {
        let mut memo = Memo::default();
        let init = self.initial();
        let mut seen: FxMap<State, u32> = FxMap::default();
        let mut nodes: Vec<(u32, Option<Step>)> = vec![(0, None)];
        seen.insert(init.clone(), 0);
        let mut queue = VecDeque::from([(init, 0u32)]);
        while let Some((s, idx)) = queue.pop_front() {
            let lost_initiator =
                s.replicas.iter().flatten().any(|r| {
                    r.failing && r.initiator != NONE && !s.daemons[r.initiator as usize].up
                });
            if lost_initiator && !self.can_settle(&s, &mut memo) {
                let mut steps = Vec::new();
                let mut cur = idx;
                while let (parent, Some(step)) = nodes[cur as usize] {
                    steps.push(step);
                    cur = parent;
                }
                steps.reverse();
                return Some(steps);
            }
            if self.past_cap(&s) {
                continue;
            }
            for (step, n) in self.successors(&s, &mut memo) {
                if seen.contains_key(&n) {
                    continue;
                }
                let id = nodes.len() as u32;
                nodes.push((idx, Some(step)));
                seen.insert(n.clone(), id);
                queue.push_back((n, id));
            }
        }
        None
    }

    // ----- traces -----

    /// Replay `steps` from the initial state, describing each.
    fn render_trace(&self, start: &State, steps: &[Step]) -> String {
        let mut memo = Memo::default();
        let mut s = start.clone();
        let mut out = String::new();
        let _ = writeln!(out, "      start: {}", self.summary(&s));
        for (i, step) in steps.iter().enumerate() {
            let next = self
                .successors(&s, &mut memo)
                .into_iter()
                .find(|(st, _)| st == step)
                .map(|(_, n)| n)
                .unwrap_or_else(|| panic!("trace step {step:?} is not enabled on replay"));
            let _ = writeln!(
                out,
                "  {:>2}. {}",
                i + 1,
                self.describe(&mut memo, &s, step, &next)
            );
            let changed = self.changes(&s, &next);
            if !changed.is_empty() {
                let _ = writeln!(out, "        => {changed}");
            }
            s = next;
        }
        let _ = writeln!(out, "      end: {}", self.summary(&s));
        out
    }

    /// What a step changed: records and executions.
    fn changes(&self, a: &State, b: &State) -> String {
        let mut out = Vec::new();
        for k in self.replicas() {
            let k = k as usize;
            if a.replicas[k] != b.replicas[k] {
                let name = match self.consistency {
                    Consistency::Strong => "record",
                    Consistency::Eventual => REGIONS[k],
                };
                let rec = b.replicas[k].map_or("missing".to_string(), |r| r.short());
                out.push(format!("{name}: [{rec}]"));
            }
        }
        for e in b.execs() {
            let before = a.find_exec(e.region, e.name);
            if before.is_none_or(|x| x.pc != e.pc) {
                out.push(format!(
                    "sfn {}/failover-{} ({} -> {}){} at {:?}",
                    REGIONS[e.region as usize],
                    e.name,
                    region_name(e.input.from),
                    region_name(e.input.to),
                    if e.input.ungraceful {
                        " ungraceful"
                    } else {
                        ""
                    },
                    e.pc
                ));
            }
        }
        out.join("; ")
    }

    fn summary(&self, s: &State) -> String {
        let mut out = String::new();
        for k in self.replicas() {
            let name = match self.consistency {
                Consistency::Strong => "record",
                Consistency::Eventual => REGIONS[k as usize],
            };
            let rec = s.replicas[k as usize].map_or("missing".to_string(), |r| r.short());
            let _ = write!(out, "{name}: [{rec}]  ");
        }
        if !s.inflight.is_empty() {
            let _ = write!(
                out,
                "| {} replication message(s) in flight  ",
                s.inflight.len()
            );
        }
        for e in s.execs() {
            let _ = write!(
                out,
                "| sfn {}/failover-{} ({} -> {}) at {:?}  ",
                REGIONS[e.region as usize],
                e.name,
                region_name(e.input.from),
                region_name(e.input.to),
                e.pc
            );
        }
        let down: Vec<&str> = (0..N)
            .filter(|&d| !s.daemons[d].up)
            .map(|d| REGIONS[d])
            .collect();
        if !down.is_empty() {
            let _ = write!(out, "| daemon(s) down: {}  ", down.join(", "));
        }
        out.trim_end().to_string()
    }

    /// The decision behind a round, on the board that produced it.
    fn explain(&self, memo: &mut Memo, key: PlanKey, effect: Effect) -> String {
        let board = self
            .effects(memo, key)
            .into_iter()
            .find(|(e, _)| *e == effect)
            .map(|(_, b)| b)
            .expect("the effect is one of the planner's decisions");
        let t = Self::tally_of(key.me, board, key.fresh);
        format!(
            "{}   [votes: {}]",
            decision_text(&self.decide(&key, &t, board)),
            board_text(board, key.fresh)
        )
    }

    fn describe(&self, memo: &mut Memo, s: &State, step: &Step, next: &State) -> String {
        let write = |k: usize| {
            if next.replicas[k] != s.replicas[k] {
                "write WON"
            } else {
                "write lost"
            }
        };
        match *step {
            Step::VoteExpires { daemon } => {
                format!("{}'s vote goes stale", REGIONS[daemon as usize])
            }
            Step::Crash { daemon } => format!("{} daemon crashes", REGIONS[daemon as usize]),
            Step::Restart { daemon } => format!("{} daemon restarts", REGIONS[daemon as usize]),
            Step::Partition { daemon } => format!(
                "{} daemon is cut off from its AWS APIs",
                REGIONS[daemon as usize]
            ),
            Step::Heal { daemon } => format!(
                "{} daemon reaches its AWS APIs again",
                REGIONS[daemon as usize]
            ),
            Step::Round { daemon, effect } => {
                let k = self.replica_of(daemon);
                // The decision came from a round that judged the failover
                // stalled or not: explain it with the key that makes it.
                let key = [false, true]
                    .into_iter()
                    .map(|stalled| self.plan_key(s, daemon, k, None, stalled))
                    .find(|key| self.effects(memo, *key).iter().any(|(e, _)| *e == effect))
                    .expect("the effect is one of the planner's decisions");
                let stalled = if key.stalled {
                    " (judging the failover stalled)"
                } else {
                    ""
                };
                let result = match effect {
                    Effect::Nothing | Effect::Ensure { .. } => String::new(),
                    _ => format!(" -> {}", write(k)),
                };
                format!(
                    "{} round{stalled}, reading {}: {}{result}",
                    REGIONS[daemon as usize],
                    match self.consistency {
                        Consistency::Strong => "the record".to_string(),
                        Consistency::Eventual => format!("replica {}", REGIONS[k]),
                    },
                    self.explain(memo, key, effect)
                )
            }
            Step::StartExecution { daemon } => match s.daemons[daemon as usize].intent {
                Some(i) if !s.daemons[daemon as usize].partitioned => format!(
                    "{} daemon: StartExecution failover-{} in {}{}",
                    REGIONS[daemon as usize],
                    i.name,
                    REGIONS[i.region as usize],
                    if next.execs != s.execs {
                        " (new run)"
                    } else {
                        " (exists: no new run)"
                    }
                ),
                _ => format!(
                    "{} daemon: StartExecution fails (cut off)",
                    REGIONS[daemon as usize]
                ),
            },
            Step::Operator {
                replica,
                req,
                effect,
            } => {
                let key = self.plan_key(s, NONE, replica as usize, Some(req), false);
                format!(
                    "operator {:?} through replica {}: {} -> {}",
                    req,
                    REGIONS[replica as usize],
                    self.explain(memo, key, effect),
                    write(replica as usize)
                )
            }
            Step::OperatorStartExecution => {
                let i = s.operator.expect("operator intent");
                format!(
                    "operator CLI: StartExecution failover-{} in {}{}",
                    i.name,
                    REGIONS[i.region as usize],
                    if next.execs != s.execs {
                        " (new run)"
                    } else {
                        " (exists: no new run)"
                    }
                )
            }
            Step::OperatorKilled => "operator CLI killed before its StartExecution".to_string(),
            Step::Replicate { from, to } => {
                let m = s
                    .inflight
                    .iter()
                    .find(|m| m.from == from && m.to == to)
                    .expect("message");
                format!(
                    "replication {} -> {} of [{}] stamp {:?}: {}",
                    REGIONS[from as usize],
                    REGIONS[to as usize],
                    m.rec.short(),
                    m.rec.stamp(),
                    if next.replicas[to as usize] != s.replicas[to as usize] {
                        "applied"
                    } else {
                        "older, discarded"
                    }
                )
            }
            Step::Workflow {
                region,
                name,
                fault,
            } => format!(
                "sfn {}/failover-{}: {:?}{} -> {:?}",
                REGIONS[region as usize],
                name,
                s.exec(region, name).pc,
                match fault {
                    Fault::None => String::new(),
                    f => format!(" (fault: {f:?})"),
                },
                next.exec(region, name).pc
            ),
            Step::Callback {
                region,
                name,
                token,
            } => {
                let e = s.exec(region, name);
                let t = if token == Tok::Prepare {
                    e.prepare
                } else {
                    e.drain
                };
                format!(
                    "SendTaskSuccess on {}/failover-{}#{:?}: {}",
                    REGIONS[region as usize],
                    name,
                    token,
                    if t.state == TokenState::Waiting {
                        "accepted".to_string()
                    } else {
                        format!("rejected (task {:?})", t.state)
                    }
                )
            }
            Step::TokenTimeout {
                region,
                name,
                token,
            } => {
                format!(
                    "{}/failover-{}#{:?} times out",
                    REGIONS[region as usize], name, token
                )
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Running and reporting
// ---------------------------------------------------------------------------

struct Outcome {
    states: usize,
    edges: usize,
    depth: u16,
    cut: usize,
    planner_calls: usize,
    /// The first (shortest) violation found of each invariant, with its trace.
    traces: Vec<(Violation, Vec<Step>)>,
    secs: f64,
}

fn say(text: &str) {
    println!("{text}");
    eprintln!("{text}");
}

fn run(model: &Model) -> Outcome {
    let o = model.explore();
    let result = if o.traces.is_empty() {
        "no violation".to_string()
    } else {
        o.traces
            .iter()
            .map(|(v, t)| {
                format!(
                    "invariant {} VIOLATED in {} steps ({})",
                    v.invariant,
                    t.len(),
                    v.what
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    say(&format!(
        "model check {}: {} states explored, depth {}, {}  [{} transitions, {} planner calls, {} states at the epoch cap, {:.1}s]",
        model.name, o.states, o.depth, result, o.edges, o.planner_calls, o.cut, o.secs
    ));
    for (v, steps) in &o.traces {
        say(&format!(
            "shortest counterexample to invariant {} ({}), {}:\n{}",
            v.invariant,
            v.what,
            model.name,
            model.render_trace(&model.initial(), steps)
        ));
    }
    o
}

fn policy(automatic_allowed: bool, auto_failback: bool) -> Policy {
    Policy {
        priorities: REGIONS
            .iter()
            .enumerate()
            .map(|(i, r)| (r.to_string(), i as u32 + 1))
            .collect(),
        min_failover_interval_ms: 0,
        auto_failback,
        automatic_allowed,
        // Time is abstract: a daemon's round may judge a failover stalled
        // (`STALLED_MS`) at any moment, so settles are explored whenever the
        // planner would make them, including early ones.
        stuck_failover_ms: failoverd::core::plan::STUCK_FAILOVER_MS,
        start_timeout_ms: failoverd::core::plan::START_TIMEOUT_MS,
        abort_retry_ms: 0,
        approval: Approval::None,
        approval_timeout_ms: failoverd::core::plan::APPROVAL_TIMEOUT_MS,
        on_approval_timeout: OnApprovalTimeout::Expire,
    }
}

// ---------------------------------------------------------------------------
// The runs
// ---------------------------------------------------------------------------

/// The bounds of a run: `ci` in the default run (each run a few minutes at
/// most on a 2-core CI machine, in the debug profile), `full` with
/// `MODEL_CHECK_FULL=1` (the figures in docs/model-check.md come from full
/// runs).
fn bounds(ci: Bounds, full: Bounds) -> Bounds {
    if std::env::var_os("MODEL_CHECK_FULL").is_some() {
        full
    } else {
        ci
    }
}

fn strong_automatic(name: &'static str, bounds: Bounds) -> Model {
    Model {
        name,
        consistency: Consistency::Strong,
        policy: policy(true, true),
        bounds,
        start_missing: false,
        dead: None,
        stop: Stop::Never,
        readiness: false,
    }
}

fn eventual_manual(name: &'static str, bounds: Bounds, start_missing: bool, stop: Stop) -> Model {
    Model {
        name,
        consistency: Consistency::Eventual,
        policy: policy(false, false),
        bounds,
        start_missing,
        dead: None,
        stop,
        readiness: false,
    }
}

/// (a) MRSC, automatic failover and failback allowed, an operator request
/// at any moment, a crash (e.g. between claim and StartExecution) and a
/// partition; up to two failovers. Must be safe.
#[test]
fn strong_automatic_crash_partition_operator_is_safe() {
    let bounds = bounds(
        Bounds {
            crashes: 1,
            partitions: 1,
            faults: 0,
            requests: 1,
            approvals: 0,
            proposals: 0,
            max_epoch: 2,
        },
        Bounds {
            crashes: 1,
            partitions: 1,
            faults: 0,
            requests: 1,
            approvals: 0,
            proposals: 0,
            max_epoch: 3,
        },
    );
    let o = run(&strong_automatic(
        "strong/automatic+crash+partition+operator",
        bounds,
    ));
    assert!(o.traces.is_empty(), "strong mode must be safe");
}

/// (a) MRSC as above, with a workflow update failing (applied or not)
/// instead of the partition.
#[test]
fn strong_automatic_crash_fault_operator_is_safe() {
    let bounds = bounds(
        Bounds {
            crashes: 1,
            partitions: 0,
            faults: 1,
            requests: 1,
            approvals: 0,
            proposals: 0,
            max_epoch: 2,
        },
        Bounds {
            crashes: 1,
            partitions: 0,
            faults: 1,
            requests: 1,
            approvals: 0,
            proposals: 0,
            max_epoch: 3,
        },
    );
    let o = run(&strong_automatic(
        "strong/automatic+crash+fault+operator",
        bounds,
    ));
    assert!(o.traces.is_empty(), "strong mode must be safe");
}

/// (a) MRSC, deeper: up to three failovers (failover, failback, failover).
#[test]
fn strong_automatic_three_failovers_is_safe() {
    let bounds = bounds(
        Bounds {
            crashes: 1,
            partitions: 0,
            faults: 0,
            requests: 0,
            approvals: 0,
            proposals: 0,
            max_epoch: 4,
        },
        Bounds {
            crashes: 1,
            partitions: 0,
            faults: 0,
            requests: 1,
            approvals: 0,
            proposals: 0,
            max_epoch: 4,
        },
    );
    let o = run(&strong_automatic(
        "strong/automatic+crash+operator, 3 failovers",
        bounds,
    ));
    assert!(o.traces.is_empty(), "strong mode must be safe");
}

/// (a) MRSC, bootstrap: the daemons create the record (`Initialize`,
/// conditional on its absence).
#[test]
fn strong_bootstrap_is_safe() {
    let model = Model {
        start_missing: true,
        ..strong_automatic(
            "strong/bootstrap+crash+operator",
            Bounds {
                crashes: 1,
                partitions: 0,
                faults: 0,
                requests: 1,
                approvals: 0,
                proposals: 0,
                max_epoch: 2,
            },
        )
    };
    let o = run(&model);
    assert!(o.traces.is_empty(), "strong bootstrap must be safe");
}

/// (b) MREC with automatic failover: two regions each win the claim on their
/// own replica, start two executions for one epoch, and both switch. This is
/// why the daemon refuses automatic failover in eventual mode
/// (`Policy::automatic_allowed`). No crash or partition is needed.
#[test]
fn eventual_automatic_is_unsafe() {
    let model = Model {
        name: "eventual/automatic",
        consistency: Consistency::Eventual,
        policy: policy(true, false),
        bounds: Bounds {
            crashes: 0,
            partitions: 0,
            faults: 0,
            requests: 0,
            approvals: 0,
            proposals: 0,
            max_epoch: 3,
        },
        start_missing: false,
        dead: None,
        stop: Stop::AtInvariant(1),
        readiness: false,
    };
    let o = run(&model);
    assert!(
        o.traces.iter().any(|(v, _)| v.invariant == 1),
        "expected two active regions for one epoch in eventual mode with automatic failover"
    );
}

/// (c) MREC as the daemon runs it (no automatic failover), once the record
/// exists: one operator request, a crash and a partition. Safe.
#[test]
fn eventual_manual_crash_partition_is_safe() {
    let bounds = bounds(
        Bounds {
            crashes: 1,
            partitions: 1,
            faults: 0,
            requests: 1,
            approvals: 0,
            proposals: 0,
            max_epoch: 2,
        },
        Bounds {
            crashes: 1,
            partitions: 1,
            faults: 0,
            requests: 1,
            approvals: 0,
            proposals: 0,
            max_epoch: 3,
        },
    );
    let o = run(&eventual_manual(
        "eventual/manual-only+crash+partition",
        bounds,
        false,
        Stop::Never,
    ));
    assert!(
        o.traces.is_empty(),
        "eventual mode with one operator request must be safe once the record exists"
    );
}

/// (c) As above with a workflow fault instead of the partition. Safe.
#[test]
fn eventual_manual_crash_fault_is_safe() {
    let bounds = Bounds {
        crashes: 1,
        partitions: 0,
        faults: 1,
        requests: 1,
        approvals: 0,
        proposals: 0,
        max_epoch: 3,
    };
    let o = run(&eventual_manual(
        "eventual/manual-only+crash+fault",
        bounds,
        false,
        Stop::Never,
    ));
    assert!(
        o.traces.is_empty(),
        "eventual mode with one operator request must be safe once the record exists"
    );
}

/// (c) MREC as the daemon runs it, from an empty table. This run first
/// found that `Initialize` named the best region *up by quorum*, so two
/// daemons whose rounds saw different votes created the record on their own
/// replicas with different active regions, both in epoch 1. The planner now
/// initializes the preferred region whatever the votes when automatic
/// failover is off (eventual mode): safe.
#[test]
fn eventual_manual_bootstrap_is_safe() {
    let bounds = Bounds {
        crashes: 0,
        partitions: 0,
        faults: 0,
        requests: 0,
        approvals: 0,
        proposals: 0,
        max_epoch: 2,
    };
    let o = run(&eventual_manual(
        "eventual/manual-only bootstrap",
        bounds,
        true,
        Stop::Never,
    ));
    assert!(
        o.traces.is_empty(),
        "every replica must be initialized with the same active region"
    );
}

/// Beyond (c): MREC, no automatic failover, TWO operator requests (by one
/// operator or two) through different regions' replicas before replication
/// caught up: NOT safe. A pause through one replica beats a failover claimed
/// on another by last-writer-wins (the epoch goes back), and two failovers
/// each win on their replica; both executions are named `failover-2`, so one
/// passes the other's `epoch = :epoch AND execution = :exec` fence. "One
/// operator at a time" must also mean "one request at a time, each after the
/// previous one has replicated".
#[test]
fn eventual_two_operator_requests_are_unsafe() {
    let bounds = Bounds {
        crashes: 0,
        partitions: 0,
        faults: 0,
        requests: 2,
        approvals: 0,
        proposals: 0,
        max_epoch: 3,
    };
    let o = run(&eventual_manual(
        "eventual/manual-only, two requests",
        bounds,
        false,
        Stop::AtInvariant(1),
    ));
    assert!(o.traces.iter().any(|(v, _)| v.invariant == 1));
    assert!(o.traces.iter().any(|(v, _)| v.invariant == 2));
}

/// Liveness (not one of the four safety invariants), MRSC: a failover
/// whose initiator is lost between the claim and the end of its workflow
/// must not wedge the record. This run used to find a wedge (only the
/// initiator could move an in-flight record, and operators were refused,
/// `--force` included); now any daemon with a quorum settles a stalled
/// failover (whatever the initiator's liveness, time being abstract: at any
/// moment), and `--force` supersedes one. The search looks for a state with
/// the record failing over and its initiator down from which, with the
/// environment frozen, no path leads back to a steady record.
#[test]
fn strong_lost_initiator_does_not_wedge_the_record() {
    let model = strong_automatic(
        "strong/liveness",
        Bounds {
            crashes: 1,
            partitions: 0,
            faults: 1,
            requests: 1,
            approvals: 0,
            proposals: 0,
            max_epoch: 2,
        },
    );
    let wedge = model.find_wedge();
    match &wedge {
        Some(steps) => say(&format!(
            "liveness {}: WEDGED after {} steps:\n{}",
            model.name,
            steps.len(),
            model.render_trace(&model.initial(), steps)
        )),
        None => say(&format!("liveness {}: no wedge found", model.name)),
    }
    assert!(wedge.is_none(), "a lost initiator wedges the record");
}

/// Issue #8 item 1, MRSC: the preferred target's daemon is dead (down, its
/// vote stale) from the start. Safety holds, and a path exists on which the
/// next region by priority (eu-west-1) becomes active in epoch 2: a region
/// whose daemon cannot run the prepare step is not a target.
#[test]
fn strong_dead_target_daemon_is_passed_over() {
    let model = Model {
        dead: Some(1),
        ..strong_automatic(
            "strong/dead target (us-west-2's daemon)",
            Bounds {
                crashes: 0,
                partitions: 0,
                faults: 1,
                requests: 1,
                approvals: 0,
                proposals: 0,
                max_epoch: 3,
            },
        )
    };
    let o = run(&model);
    assert!(o.traces.is_empty(), "strong mode must be safe");
    let eu = region_index("eu-west-1");
    let path = model
        .reach(|s| s.replicas[0].is_some_and(|r| !r.failing && r.epoch == 2 && r.active == eu));
    match &path {
        Some(steps) => say(&format!(
            "dead target: eu-west-1 active in epoch 2 after {} steps:\n{}",
            steps.len(),
            model.render_trace(&model.initial(), steps)
        )),
        None => say("dead target: eu-west-1 never becomes active"),
    }
    assert!(path.is_some(), "the next region must be able to take over");
    // And no path ever makes the dead region active.
    let w2 = region_index("us-west-2");
    assert!(
        model
            .reach(|s| s.replicas[0].is_some_and(|r| r.active == w2))
            .is_none(),
        "a region whose daemon is dead became active"
    );
}

/// MRSC with an operator who may `--force` over an in-flight failover (a
/// superseding claim, epoch 3) and a workflow fault, every daemon alive.
#[test]
fn strong_operator_force_supersedes_safely() {
    let o = run(&strong_automatic(
        "strong/automatic+fault+operator (force supersedes)",
        Bounds {
            crashes: 0,
            partitions: 0,
            faults: 1,
            requests: 1,
            approvals: 0,
            proposals: 0,
            max_epoch: 3,
        },
    ));
    assert!(o.traces.is_empty(), "strong mode must be safe");
}

/// Larger runs: all four environment budgets at once (about a minute each
/// in the debug profile; they run in CI like the rest).
#[test]
fn strong_automatic_all_at_once_is_safe() {
    let bounds = bounds(
        Bounds {
            crashes: 1,
            partitions: 1,
            faults: 1,
            requests: 1,
            approvals: 0,
            proposals: 0,
            max_epoch: 2,
        },
        Bounds {
            crashes: 1,
            partitions: 1,
            faults: 1,
            requests: 1,
            approvals: 0,
            proposals: 0,
            max_epoch: 3,
        },
    );
    let o = run(&strong_automatic(
        "strong/automatic+crash+partition+fault+operator",
        bounds,
    ));
    assert!(o.traces.is_empty(), "strong mode must be safe");
}

#[test]
fn eventual_manual_all_at_once_is_safe() {
    let bounds = bounds(
        Bounds {
            crashes: 1,
            partitions: 1,
            faults: 1,
            requests: 1,
            approvals: 0,
            proposals: 0,
            max_epoch: 2,
        },
        Bounds {
            crashes: 1,
            partitions: 1,
            faults: 1,
            requests: 1,
            approvals: 0,
            proposals: 0,
            max_epoch: 3,
        },
    );
    let o = run(&eventual_manual(
        "eventual/manual-only+crash+partition+fault",
        bounds,
        false,
        Stop::Never,
    ));
    assert!(
        o.traces.is_empty(),
        "eventual mode with one operator request must be safe once the record exists"
    );
}

/// `policy.approval = "manual"` (issue 13): the automatic planner proposes
/// instead of claiming; the operator approves or rejects any epoch (stale
/// and future ones included) at any moment; a round may judge a proposal's
/// approval timeout passed at any moment.
fn strong_approval(name: &'static str, bounds: Bounds, on_timeout: OnApprovalTimeout) -> Model {
    let mut policy = policy(true, true);
    policy.approval = Approval::Manual;
    policy.on_approval_timeout = on_timeout;
    Model {
        name,
        consistency: Consistency::Strong,
        policy,
        bounds,
        start_missing: false,
        dead: None,
        stop: Stop::Never,
        readiness: false,
    }
}

/// Manual approval, timeouts expire: the four invariants hold with an
/// operator request and two approvals or rejections (with a crash, a
/// partition and a fault in the full run); every automatic
/// claim is of an approved proposal of its epoch (`check_approved`).
#[test]
fn strong_manual_approval_is_safe() {
    let bounds = bounds(
        Bounds {
            crashes: 0,
            partitions: 0,
            faults: 0,
            requests: 1,
            approvals: 2,
            proposals: 2,
            max_epoch: 2,
        },
        Bounds {
            crashes: 1,
            partitions: 1,
            faults: 1,
            requests: 1,
            approvals: 2,
            proposals: 3,
            max_epoch: 3,
        },
    );
    let o = run(&strong_approval(
        "strong/manual approval (expire)+operator",
        bounds,
        OnApprovalTimeout::Expire,
    ));
    assert!(o.traces.is_empty(), "manual approval must be safe");
}

/// Manual approval, timeouts proceed: safe too (a proceeding timeout is a
/// claim like any other, fenced on the version).
#[test]
fn strong_manual_approval_proceed_is_safe() {
    let bounds = bounds(
        Bounds {
            crashes: 1,
            partitions: 0,
            faults: 0,
            requests: 0,
            approvals: 2,
            proposals: 2,
            max_epoch: 2,
        },
        Bounds {
            crashes: 1,
            partitions: 1,
            faults: 1,
            requests: 1,
            approvals: 2,
            proposals: 3,
            max_epoch: 3,
        },
    );
    let o = run(&strong_approval(
        "strong/manual approval (proceed)+crash",
        bounds,
        OnApprovalTimeout::Proceed,
    ));
    assert!(o.traces.is_empty(), "manual approval must be safe");
}

/// The gate gates: with timeouts that expire and no operator, no region
/// ever becomes active but the first; with one approval, a failover
/// completes, and its shortest path goes through a proposal and the
/// operator's approval of its epoch.
#[test]
fn strong_manual_approval_gates_automatic_failover() {
    let b = |approvals| Bounds {
        crashes: 0,
        partitions: 0,
        faults: 0,
        requests: 0,
        approvals,
        proposals: 2,
        max_epoch: 2,
    };
    let switched = |s: &State| {
        s.replicas[0].is_some_and(|r| r.active != 0 && !r.failing && r.step == RecStep::Done)
    };
    let none = strong_approval("gate, no operator", b(0), OnApprovalTimeout::Expire);
    assert_eq!(
        none.reach(switched),
        None,
        "an automatic failover completed without approval"
    );
    let one = strong_approval("gate, one approval", b(1), OnApprovalTimeout::Expire);
    let path = one
        .reach(switched)
        .expect("an approved failover must be able to complete");
    let proposed = path.iter().position(|st| {
        matches!(
            st,
            Step::Round {
                effect: Effect::Propose { .. },
                ..
            }
        )
    });
    let approved = path.iter().position(|st| {
        matches!(
            st,
            Step::Operator {
                req: Req::Decide { approve: true, .. },
                ..
            }
        )
    });
    assert!(
        matches!((proposed, approved), (Some(p), Some(a)) if p < a),
        "expected propose, then approve, in {path:?}"
    );
    say(&format!(
        "approval gate: shortest approved failover, {} steps:\n{}",
        path.len(),
        one.render_trace(&one.initial(), &path)
    ));
}

/// Issue 19, item 4: a proposal withdrawn and made again for the same epoch
/// (to another target, or to the same target: only the id tells them
/// apart) is explored, and from there the operator's approvals and
/// rejections by every name written on the path (the stale one included)
/// and by epoch alone are tried; invariant 5 (`check_decided`: a decision
/// applies only to the proposal it names) is checked on every one accepted,
/// in this run and in the manual-approval runs above.
#[test]
fn strong_manual_approval_binds_the_proposal_it_names() {
    let b = Bounds {
        crashes: 0,
        partitions: 0,
        faults: 0,
        requests: 0,
        approvals: 1,
        proposals: 2,
        max_epoch: 2,
    };
    let m = strong_approval(
        "strong/manual approval, re-proposed epochs",
        b,
        OnApprovalTimeout::Expire,
    );
    let again = |same_target: bool| {
        move |s: &State| {
            let [Some(a), Some(b), ..] = s.proposals else {
                return false;
            };
            a.epoch == b.epoch && (a.target == b.target) == same_target && a.id != b.id
        }
    };
    for same_target in [false, true] {
        let path = m
            .reach(again(same_target))
            .expect("a withdrawn epoch proposed again must be reachable");
        say(&format!(
            "re-proposed epoch ({} target), {} steps:\n{}",
            if same_target { "same" } else { "another" },
            path.len(),
            m.render_trace(&m.initial(), &path)
        ));
    }
    let o = run(&m);
    assert!(o.traces.is_empty(), "manual approval must be safe");
}

// ---------------------------------------------------------------------------
// Readiness (issue 26): the planner prefers a target that is not unready
// ---------------------------------------------------------------------------
//
// Each round of each daemon may see, besides any board of views, any
// standby readiness of each region (ready or unready; unknown plans as
// ready): a fresh reading, a stale one, one daemon's view differing from
// another's, all are among the assignments. The claim stays fenced on the
// record's version whatever target the planner picks, so invariants 1-5
// must hold unchanged; these runs check it with the real planner.

/// (a) with readiness: MRSC, automatic failover and failback, a crash, a
/// partition and an operator request, any readiness in every round.
#[test]
fn strong_readiness_crash_partition_operator_is_safe() {
    let bounds = bounds(
        Bounds {
            crashes: 1,
            partitions: 1,
            faults: 0,
            requests: 1,
            approvals: 0,
            proposals: 0,
            max_epoch: 2,
        },
        Bounds {
            crashes: 1,
            partitions: 1,
            faults: 0,
            requests: 1,
            approvals: 0,
            proposals: 0,
            max_epoch: 3,
        },
    );
    let model = Model {
        readiness: true,
        ..strong_automatic(
            "strong/readiness+automatic+crash+partition+operator",
            bounds,
        )
    };
    let o = run(&model);
    assert!(o.traces.is_empty(), "readiness must not break safety");
}

/// With readiness, a dead target's daemon (us-west-2) and a workflow fault:
/// safe, and still no path makes the dead region active.
#[test]
fn strong_readiness_dead_target_is_safe() {
    let model = Model {
        dead: Some(1),
        readiness: true,
        ..strong_automatic(
            "strong/readiness+dead target (us-west-2's daemon)",
            Bounds {
                crashes: 0,
                partitions: 0,
                faults: 1,
                requests: 1,
                approvals: 0,
                proposals: 0,
                max_epoch: 3,
            },
        )
    };
    let o = run(&model);
    assert!(o.traces.is_empty(), "readiness must not break safety");
    let w2 = region_index("us-west-2");
    assert!(
        model
            .reach(|s| s.replicas[0].is_some_and(|r| r.active == w2))
            .is_none(),
        "a region whose daemon is dead became active"
    );
}

/// With readiness and manual approval: a proposal's target may turn unready
/// (withdrawn unless approved) in any round; invariants 1-5 hold.
#[test]
fn strong_readiness_manual_approval_is_safe() {
    let bounds = bounds(
        Bounds {
            crashes: 0,
            partitions: 0,
            faults: 0,
            requests: 1,
            approvals: 2,
            proposals: 2,
            max_epoch: 2,
        },
        Bounds {
            crashes: 1,
            partitions: 1,
            faults: 1,
            requests: 1,
            approvals: 2,
            proposals: 3,
            max_epoch: 3,
        },
    );
    let model = Model {
        readiness: true,
        ..strong_approval(
            "strong/readiness+manual approval (expire)+operator",
            bounds,
            OnApprovalTimeout::Expire,
        )
    };
    let o = run(&model);
    assert!(o.traces.is_empty(), "readiness must not break safety");
}
