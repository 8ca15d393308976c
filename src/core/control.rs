//! The control record: which region is active, in which term (epoch), and
//! whether automatic decisions are allowed.
//!
//! Two counters, on purpose:
//! - `epoch` is the *term*: it grows by exactly one with each failover, and
//!   names the failover's execution (`failover-<epoch>`), which makes
//!   starting it idempotent.
//! - `version` is the record's *generation*: every write (failover, pause,
//!   resume, each workflow step) is conditional on the version it read and
//!   bumps it. Fencing on the epoch alone would let a pause and a failover
//!   that both read the same epoch both succeed.
//!
//! The lease: an active region that has not confirmed (read) the record for
//! longer than `lease` stops acting as active, like a primary that cannot
//! renew its lock; a region that has just become active waits until the
//! lease that the old active might still hold has run out before it acts.

use serde::{Deserialize, Serialize};

use super::mono::Mono;

/// Automatic decisions allowed or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Auto,
    Paused,
}

/// Whether a failover is moving the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Steady,
    FailingOver,
}

/// The last step written to the record: by the executor (`Init`,
/// `Claimed`, settles) or by the failover workflow (`Mark`, `Switched`,
/// `Done`, `Aborted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The record was created.
    Init,
    /// A daemon or operator claimed the epoch; no workflow has marked it yet.
    Claimed,
    /// The workflow confirmed it owns the epoch (MarkFailingOver).
    Mark,
    /// The workflow switched `active` (SwitchActive).
    Switched,
    /// The failover completed (MarkSteady, or a settle after the switch).
    Done,
    /// The failover ended without switching (the target refused to prepare,
    /// the execution failed, never started, or made no progress).
    Aborted,
}

impl Step {
    /// Every step, in the order a failover writes them.
    pub const ALL: [Step; 6] = [
        Step::Init,
        Step::Claimed,
        Step::Mark,
        Step::Switched,
        Step::Done,
        Step::Aborted,
    ];

    /// The stored name (`step` attribute; the workflow writes the same).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Init => "init",
            Step::Claimed => "claimed",
            Step::Mark => "mark",
            Step::Switched => "switched",
            Step::Done => "done",
            Step::Aborted => "aborted",
        }
    }

    /// Parse a stored name; an unknown name is `None` (the caller reports it).
    pub fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The control record as read from the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRecord {
    /// Generation: grows with every write.
    pub version: u64,
    /// Created with the record and never changed: names this record's
    /// lifetime, so execution names stay unique when the table is recreated
    /// (Step Functions reserves a closed execution's name for 90 days).
    pub incarnation: String,
    /// Term: grows by one with every failover.
    pub epoch: u64,
    /// The region serving as active.
    pub active: String,
    pub mode: Mode,
    pub phase: Phase,
    /// Where the in-flight (or last) failover goes.
    pub target: Option<String>,
    /// `failover-<incarnation>-<epoch>-c<6 hex>` of the in-flight (or last)
    /// failover ([`claim_execution_name`]).
    pub execution: Option<String>,
    /// Region whose Step Functions runs that execution.
    pub initiator: Option<String>,
    /// The state machine that execution was started under (the claim
    /// writes it): where every daemon looks the execution up, whatever its
    /// configuration says now. A changed `state_machine_arn` (a reload, a
    /// restart) otherwise made the initiator look under the new ARN, find
    /// nothing, and start the same epoch a second time. `None` on records
    /// claimed before this was written: the initiator's configured one.
    #[serde(default)]
    pub state_machine: Option<String>,
    /// The region that was active before the last switch.
    pub previous: Option<String>,
    /// Who made the last change (region, or `operator:<name>`), when, why.
    pub changed_by: String,
    pub changed_at: u64,
    pub reason: String,
    /// When the last failover started (unix ms).
    pub last_failover_at: Option<u64>,
    /// When the active region last switched (unix ms).
    pub switched_at: Option<u64>,
    /// The last step written.
    pub step: Step,
    /// Failovers that ended without switching since the last one that
    /// completed (the planner retries sooner after an abort, with backoff).
    pub aborts: u64,
    /// Flags of the in-flight (or last) failover, kept so a restarted
    /// initiator starts the execution with the same input.
    pub ungraceful: bool,
    pub old_region_healthy: bool,
    pub forced: bool,
    /// An automatic failover awaiting an operator's approval (`policy.approval
    /// = "manual"`), or the last one decided. A claim clears it.
    #[serde(default)]
    pub proposal: Option<Proposal>,
}

impl ControlRecord {
    /// Whether a live proposal (awaiting approval, or approved) names
    /// `region` as its target.
    pub fn proposes(&self, region: &str) -> bool {
        self.proposal
            .as_ref()
            .is_some_and(|p| p.state.is_live() && p.target == region)
    }
}

/// Where a proposed automatic failover stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalState {
    /// Awaiting `failoverd approve` or `failoverd reject`.
    Proposed,
    /// An operator approved it: the target's daemon claims the epoch once its
    /// conditions still hold.
    Approved,
    /// An operator rejected it: no automatic failover of that epoch; a new
    /// proposal only after `min_failover_interval`.
    Rejected,
    /// Nobody decided within `policy.approval_timeout` (and
    /// `policy.on_approval_timeout = "expire"`): like a rejection.
    Expired,
    /// Its conditions stopped holding (the active recovered, the target is
    /// no longer fit) before it was claimed.
    Withdrawn,
}

impl ProposalState {
    /// Every state.
    pub const ALL: [ProposalState; 5] = [
        ProposalState::Proposed,
        ProposalState::Approved,
        ProposalState::Rejected,
        ProposalState::Expired,
        ProposalState::Withdrawn,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalState::Proposed => "proposed",
            ProposalState::Approved => "approved",
            ProposalState::Rejected => "rejected",
            ProposalState::Expired => "expired",
            ProposalState::Withdrawn => "withdrawn",
        }
    }

    /// Still waiting to become a claim (proposed or approved).
    pub fn is_live(self) -> bool {
        matches!(self, ProposalState::Proposed | ProposalState::Approved)
    }
}

/// An automatic failover the planner would claim, recorded instead of
/// claimed because the policy wants an operator's approval first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Names this proposal and no other ([`proposal_id`]): an approval or
    /// rejection carries it (with the epoch and the target), so it never
    /// applies to a proposal withdrawn and made again for the same epoch.
    /// Empty on a proposal written before ids existed (it decodes, and is
    /// decided by naming it so).
    #[serde(default)]
    pub id: String,
    /// The epoch the failover would claim (the record's epoch + 1 when
    /// proposed). An approval names it, so it never approves a newer one.
    pub epoch: u64,
    /// The active region it would fail over from.
    pub from: String,
    /// The region it would fail over to (whose daemon proposed it and
    /// will claim it).
    pub target: String,
    /// The daemon that proposed it.
    pub proposer: String,
    /// When, on the proposer's clock (unix ms): the timeout counts from here,
    /// judged by the same daemon (the target's), so no two clocks are compared.
    pub proposed_at: u64,
    /// Why the planner wants it.
    pub reason: String,
    pub state: ProposalState,
    /// Who decided (`operator:<name>`, or the region that expired or withdrew it).
    pub decided_by: Option<String>,
    pub decided_at: Option<u64>,
    /// Why it was decided so.
    pub decision: Option<String>,
}

/// The id of the proposal written at record `version` (the version the
/// `Propose` write creates) by `proposer` at `at` (its clock), in the record
/// of `incarnation`: `<version>-<6 hex digits>`. Unique within a record's
/// life by construction (versions never repeat: every write bumps it), and
/// across recreated tables by the digest of the incarnation, proposer and
/// time. Deterministic (no randomness): the simulation and the model check
/// replay it.
pub fn proposal_id(incarnation: &str, version: u64, proposer: &str, at: u64) -> String {
    let short = short_digest(&[
        incarnation.as_bytes(),
        proposer.as_bytes(),
        &at.to_be_bytes(),
    ]);
    format!("{version}-{short:06x}")
}

/// FNV-1a, 64 bits, over `parts` (each followed by 0xff), folded to 24:
/// short enough to type, and only ever compared together with what comes
/// before it (a version, an epoch).
fn short_digest(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter().chain(std::iter::once(&0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    (h ^ (h >> 24) ^ (h >> 48)) & 0xff_ffff
}

/// The version part of a proposal id (`None` for an empty or foreign one).
pub fn proposal_id_version(id: &str) -> Option<u64> {
    id.split_once('-')?.0.parse().ok()
}

/// The execution name for an epoch of a record's incarnation:
/// `failover-<incarnation>-<epoch>`, the base of [`claim_execution_name`].
pub fn execution_name(incarnation: &str, epoch: u64) -> String {
    format!("failover-{incarnation}-{epoch}")
}

/// The execution name a claim writes: the epoch's base name and `-c` with
/// six hex digits of the incarnation, the claimer and its clock at the
/// claim (`failover-7263f1f89e77-3-c0a1b2c`). It is the idempotency key of
/// StartExecution (whoever starts the claimed failover takes the name from
/// the record), and the workflow's record writes are fenced on it.
///
/// Why not the epoch alone: a control record put back to an older copy
/// that no daemon had seen past (a restore, an old item written back;
/// simulation seed 30740) lets the next claim reuse an epoch whose
/// execution is still running. With the same name the old execution's
/// fenced writes (switch, abort) would pass against the new claim; with
/// the claim's own suffix they fail, as a superseded run's do.
/// Deterministic (no randomness): the simulation and the model check
/// replay it.
pub fn claim_execution_name(incarnation: &str, epoch: u64, claimer: &str, at: u64) -> String {
    let short = short_digest(&[
        incarnation.as_bytes(),
        &epoch.to_be_bytes(),
        claimer.as_bytes(),
        &at.to_be_bytes(),
    ]);
    format!("{}-c{short:06x}", execution_name(incarnation, epoch))
}

/// The epoch an execution name carries, with or without a claim's suffix.
pub fn execution_epoch(name: &str) -> Option<u64> {
    let mut parts = name.rsplit('-');
    let last = parts.next()?;
    let claim = last.len() == 7
        && last.starts_with('c')
        && last[1..].bytes().all(|b| b.is_ascii_hexdigit());
    if claim {
        parts.next()?.parse().ok()
    } else {
        last.parse().ok()
    }
}

/// The region of a Step Functions ARN (`arn:aws:states:REGION:...`).
pub fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

/// What this daemon may do as far as the active role goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum Role {
    /// The record names us and we hold a current lease.
    Active,
    /// Another region is active.
    Standby { active: String },
    /// The record names us, but we could not confirm it within the lease.
    StoodDown { unconfirmed_ms: u64 },
    /// We just became active; the old active's lease runs for
    /// `remaining_ms` more (on our clock).
    Waiting { remaining_ms: u64 },
}

/// What a daemon knows of its own reads of the record, on its own
/// monotonic clock ([`Mono`]). Only local durations enter the lease rules:
/// no two regions' clocks are ever compared, and a step of this host's wall
/// clock (an NTP correction) changes none of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseClock {
    /// When the last successful read of the record was *sent*. The read
    /// shows the record as of some moment after that, so an active's lease,
    /// counted from here, never outlives what it saw. `None` until a read
    /// confirms the record.
    pub confirmed_at: Option<Mono>,
    /// When this process first *received* a record naming it active in the
    /// current epoch (under MREC: when a majority of replicas first did, see
    /// [`LeaseClock::observe`]). The switch had committed by then, so any
    /// read the old active sent afterwards shows it the switch: its lease,
    /// counted from a read sent before this moment, runs out before
    /// `named_since + lease`.
    pub named_since: Option<Mono>,
    /// When this process first received a record naming it active after
    /// another region (`previous` not us), for as long as it stays named:
    /// the lease it must wait out. Kept across epochs, because a later
    /// record that still names us (a new claim away from us, which writes
    /// `previous` = us) does not end the old active's lease. Found by the
    /// simulation (seed 589): an operator's `failover --force` claimed away
    /// from a region that was still waiting out its predecessor's lease,
    /// the claim named it `previous`, and it acted while the old active's
    /// lease still ran.
    #[serde(default)]
    pub preceded_since: Option<Mono>,
}

impl LeaseClock {
    /// Account for a successful read sent at `sent` and received at
    /// `received`. `confirmed` says whether the read confirms the record:
    /// always under MRSC; under MREC only when a majority of replicas agree
    /// (an active cut off from the others must not renew its lease from its
    /// own replica alone), and then `received` is when the last of those
    /// replicas' answers came back.
    ///
    /// Only a confirmed read starts a wait (`named_since`,
    /// `preceded_since`). Under MREC the old active renews its lease from any
    /// majority still naming it, so the switch "has committed" for it only
    /// once a majority holds it: a wait counted from our own replica's
    /// receipt ran out while the old active still confirmed from the two
    /// replicas replication had not reached (simulation seed 18671: lag of
    /// up to 44 s over a 30 s lease). Counted from a majority's receipt,
    /// any majority the old active reads later meets a replica that holds
    /// the switch, so its last confirming read was sent before our wait
    /// began.
    pub fn observe(
        &mut self,
        me: &str,
        record: &ControlRecord,
        seen_epoch: Option<u64>,
        sent: Mono,
        received: Mono,
        confirmed: bool,
    ) {
        if confirmed {
            self.confirmed_at = Some(sent);
        }
        if record.active != me {
            self.named_since = None;
            self.preceded_since = None;
            return;
        }
        let first = self.named_since.is_none();
        let new_epoch = first || seen_epoch != Some(record.epoch);
        if !confirmed {
            // Named on our replica alone: no wait starts yet. A sighting of
            // an earlier epoch must not stand for this one either, and no
            // lease either: the reads that confirmed a record before this
            // one confirmed a record that did not name us in this epoch (a
            // standby's reads, say, before its own replica alone took an
            // `Initialize` naming it, which has no `previous` to wait on).
            if new_epoch {
                self.named_since = None;
                self.confirmed_at = None;
            }
            return;
        }
        if new_epoch {
            self.named_since = Some(received);
        }
        // Preceded: named after another region. A first sighting of a
        // record that has any `previous` counts too, even `previous` = us:
        // a claim away from us writes that, and this process may have
        // missed the switch to us just before it (only `Initialize`, which
        // writes no `previous`, follows nobody).
        let other = record.previous.as_deref().is_some_and(|p| p != me);
        if (first && record.previous.is_some()) || (new_epoch && other) {
            self.preceded_since = Some(received);
        }
    }

    /// How long since the last confirmed read was sent, at `now`.
    pub fn unconfirmed_ms(&self, now: Mono) -> Option<u64> {
        self.confirmed_at.map(|at| now.since(at))
    }
}

/// Compute this daemon's role at `now` (its monotonic clock) from the record
/// it last read.
///
/// `wait_out_lease` chooses safety (no two regions act as active at once)
/// over speed (the new region acts at once). A region that was not preceded
/// by another (`previous` empty or itself) has no lease to wait out.
///
/// `lease_ms` is this daemon's own lease (it stands down when its last
/// confirmed read is older); `wait_ms` is its predecessor's, which it waits
/// out: the longest the fleet announced (`quorum::longest_lease`), at least
/// `lease_ms`.
pub fn role(
    me: &str,
    record: &ControlRecord,
    now: Mono,
    clock: &LeaseClock,
    lease_ms: u64,
    wait_ms: u64,
    wait_out_lease: bool,
) -> Role {
    if record.active != me {
        return Role::Standby {
            active: record.active.clone(),
        };
    }
    // Never confirmed (an MREC read no majority agreed with): as old as can be.
    let unconfirmed = clock.unconfirmed_ms(now).unwrap_or(u64::MAX);
    if unconfirmed > lease_ms {
        return Role::StoodDown {
            unconfirmed_ms: unconfirmed,
        };
    }
    let preceded = record
        .previous
        .as_deref()
        .is_some_and(|p| p != me)
        .then(|| clock.named_since.unwrap_or(now));
    if let (true, Some(since)) = (wait_out_lease, clock.preceded_since.or(preceded)) {
        let until = since.plus(lease_ms.max(wait_ms));
        if now < until {
            return Role::Waiting {
                remaining_ms: until.since(now),
            };
        }
    }
    Role::Active
}

impl Role {
    /// Every role's name, as [`Role::kind`] gives it.
    pub const KINDS: [&'static str; 4] = ["active", "standby", "stood_down", "waiting"];

    /// Whether this daemon may act as the active region now.
    pub fn is_active(&self) -> bool {
        matches!(self, Role::Active)
    }

    /// The role's name (as serialized in the `role` tag).
    pub fn kind(&self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Standby { .. } => "standby",
            Role::StoodDown { .. } => "stood_down",
            Role::Waiting { .. } => "waiting",
        }
    }
}

/// The active region the router should go by. The record's, except when it
/// names us and we have stood down: our copy is older than the lease, the
/// others may have moved on, so we no longer claim the traffic ourselves
/// and rank regions by priority and health instead. (`Waiting` still routes
/// locally: serving inference from two regions at once is harmless, and the
/// surviving region must take traffic at once.)
pub fn routing_active<'a>(
    record: Option<&'a ControlRecord>,
    role: Option<&Role>,
) -> Option<&'a str> {
    match role {
        Some(Role::StoodDown { .. }) => None,
        _ => record.map(|r| r.active.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(active: &str) -> ControlRecord {
        ControlRecord {
            version: 3,
            incarnation: "0123456789ab".into(),
            epoch: 2,
            active: active.into(),
            mode: Mode::Auto,
            phase: Phase::Steady,
            target: None,
            execution: None,
            initiator: None,
            state_machine: None,
            previous: Some("us-east-1".into()),
            changed_by: "test".into(),
            changed_at: 0,
            reason: String::new(),
            last_failover_at: None,
            switched_at: Some(10_000),
            step: Step::Done,
            aborts: 0,
            ungraceful: false,
            old_region_healthy: false,
            forced: false,
            proposal: None,
        }
    }

    fn clock(confirmed_at: u64, named_since: Option<u64>) -> LeaseClock {
        LeaseClock {
            confirmed_at: Some(Mono(confirmed_at)),
            named_since: named_since.map(Mono),
            preceded_since: None,
        }
    }

    /// A claim's execution name: the epoch's, with a suffix of its own per
    /// claimer and clock (seed 30740), from which the epoch still reads.
    #[test]
    fn a_claims_execution_name_is_its_own_and_names_its_epoch() {
        let a = claim_execution_name("7263f1f89e77", 3, "us-east-1", 130_400);
        assert!(
            a.starts_with("failover-7263f1f89e77-3-c") && a.len() == 31,
            "{a}"
        );
        assert_eq!(
            a,
            claim_execution_name("7263f1f89e77", 3, "us-east-1", 130_400)
        );
        assert_ne!(
            a,
            claim_execution_name("7263f1f89e77", 3, "us-east-1", 203_500)
        );
        assert_ne!(
            a,
            claim_execution_name("7263f1f89e77", 3, "us-east-2", 130_400)
        );
        assert_eq!(execution_epoch(&a), Some(3));
        assert_eq!(execution_epoch("failover-abc-12"), Some(12));
        assert_eq!(execution_epoch("failover-abc-x"), None);
    }

    /// Seed 18671 (MREC, replication lag over the lease): the new active's
    /// own replica names it long before a majority does, and the old active
    /// keeps confirming its lease from the majority that has not yet got
    /// the switch. The wait must count from the majority's receipt.
    #[test]
    fn under_mrec_the_wait_counts_from_a_majority_naming_us() {
        let lease = 30_000;
        let mut switched = rec("us-east-2");
        switched.epoch = 2;
        switched.previous = Some("us-east-1".into());
        // The old active, us-east-1: at 380 s its replica and a second one
        // still hold the claim of epoch 2, which names it, so its read
        // confirms (the claim and the switch share an epoch).
        let mut claim = rec("us-east-1");
        claim.epoch = 2;
        claim.previous = None;
        let old = clock(380_000, Some(0));
        // The new active: its own replica names it at 353.3 s (no majority),
        // a majority at 390 s.
        let mut new = LeaseClock::default();
        new.observe(
            "us-east-2",
            &switched,
            Some(1),
            Mono(353_200),
            Mono(353_300),
            false,
        );
        assert_eq!(new.named_since, None, "no wait starts on one replica");
        new.observe(
            "us-east-2",
            &switched,
            Some(2),
            Mono(389_900),
            Mono(390_000),
            true,
        );
        let mut at = 390_000;
        while at < 420_000 {
            let now_old = role("us-east-1", &claim, Mono(at), &old, lease, lease, true);
            let now_new = role("us-east-2", &switched, Mono(at), &new, lease, lease, true);
            assert!(
                !(now_old.is_active() && now_new.is_active()),
                "two active regions at {at} ms: {now_old:?} {now_new:?}"
            );
            at += 500;
        }
        new.observe(
            "us-east-2",
            &switched,
            Some(2),
            Mono(410_000),
            Mono(410_100),
            true,
        );
        assert_eq!(
            new.named_since,
            Some(Mono(390_000)),
            "a renewal, not a new sighting"
        );
        assert_eq!(
            role(
                "us-east-2",
                &switched,
                Mono(420_000),
                &new,
                lease,
                lease,
                true
            ),
            Role::Active
        );
        // A later epoch named on one replica does not inherit the earlier
        // epoch's sighting.
        let mut back = switched.clone();
        back.epoch = 3;
        new.observe(
            "us-east-2",
            &back,
            Some(2),
            Mono(500_000),
            Mono(500_100),
            false,
        );
        assert_eq!(new.named_since, None);
    }

    /// Seed 589: named after another region, then a claim away from us
    /// (which names us `previous`) while we still wait: the wait goes on.
    #[test]
    fn a_claim_away_from_a_waiting_active_does_not_end_the_wait() {
        let mut switched = rec("us-east-2");
        switched.epoch = 3;
        switched.previous = Some("us-west-2".into());
        let mut c = LeaseClock::default();
        c.observe(
            "us-east-2",
            &switched,
            Some(3),
            Mono(276_600),
            Mono(276_700),
            true,
        );
        assert_eq!(
            role(
                "us-east-2",
                &switched,
                Mono(277_000),
                &c,
                10_000,
                10_000,
                true
            ),
            Role::Waiting {
                remaining_ms: 9_700
            }
        );
        let mut claimed = switched.clone();
        claimed.epoch = 4;
        claimed.previous = Some("us-east-2".into());
        claimed.phase = Phase::FailingOver;
        c.observe(
            "us-east-2",
            &claimed,
            Some(3),
            Mono(282_400),
            Mono(282_483),
            true,
        );
        assert_eq!(
            role(
                "us-east-2",
                &claimed,
                Mono(282_700),
                &c,
                10_000,
                10_000,
                true
            ),
            Role::Waiting {
                remaining_ms: 4_000
            },
            "the old active's lease still runs"
        );
        assert_eq!(
            role(
                "us-east-2",
                &claimed,
                Mono(286_800),
                &c,
                10_000,
                10_000,
                true
            ),
            Role::Active
        );
        // Named away and back: a fresh wait, from the new naming.
        c.observe(
            "us-east-2",
            &rec("us-west-2"),
            Some(4),
            Mono(290_000),
            Mono(290_100),
            true,
        );
        assert_eq!(c.preceded_since, None);
        // A process whose first sight of itself named is that claim (it
        // missed the switch to it) waits too: the claim hides who was before.
        let mut fresh = LeaseClock::default();
        fresh.observe(
            "us-east-2",
            &claimed,
            None,
            Mono(282_400),
            Mono(282_483),
            true,
        );
        assert_eq!(
            role(
                "us-east-2",
                &claimed,
                Mono(282_700),
                &fresh,
                10_000,
                10_000,
                true
            ),
            Role::Waiting {
                remaining_ms: 9_783
            }
        );
        // Only a record nobody preceded (Initialize's) needs no wait.
        let mut init = rec("us-east-2");
        init.previous = None;
        let mut first = LeaseClock::default();
        first.observe("us-east-2", &init, None, Mono(1_000), Mono(1_010), true);
        assert_eq!(
            role(
                "us-east-2",
                &init,
                Mono(1_020),
                &first,
                10_000,
                10_000,
                true
            ),
            Role::Active
        );
    }

    /// MREC: a standby's confirmed reads do not confirm a record that only
    /// its own replica holds and that names it (an `Initialize` with no
    /// `previous`, written through its replica while the others name
    /// another region): it is not active until a majority agrees.
    #[test]
    fn a_record_named_on_our_replica_alone_has_no_lease_from_earlier_reads() {
        let standby = rec("us-east-1");
        let mut c = LeaseClock::default();
        c.observe("us-east-2", &standby, None, Mono(1_000), Mono(1_010), true);
        let mut init = rec("us-east-2");
        init.epoch = standby.epoch + 1;
        init.previous = None;
        c.observe("us-east-2", &init, None, Mono(2_000), Mono(2_010), false);
        assert_eq!(
            role("us-east-2", &init, Mono(2_020), &c, 10_000, 10_000, true),
            Role::StoodDown {
                unconfirmed_ms: u64::MAX
            }
        );
        // Once a majority holds it, it is active (nobody preceded it).
        c.observe("us-east-2", &init, None, Mono(3_000), Mono(3_050), true);
        assert_eq!(
            role("us-east-2", &init, Mono(3_060), &c, 10_000, 10_000, true),
            Role::Active
        );
        // An active whose later read does not confirm the same epoch keeps
        // the lease its earlier reads confirmed.
        c.observe(
            "us-east-2",
            &init,
            Some(init.epoch),
            Mono(4_000),
            Mono(4_010),
            false,
        );
        assert_eq!(
            role("us-east-2", &init, Mono(4_020), &c, 10_000, 10_000, true),
            Role::Active
        );
    }

    #[test]
    fn proposal_ids_are_stable_and_differ_per_proposal() {
        let a = proposal_id("0123456789ab", 8, "us-west-2", 1_800_000_000_000);
        assert_eq!(
            a,
            proposal_id("0123456789ab", 8, "us-west-2", 1_800_000_000_000)
        );
        assert!(a.starts_with("8-") && a.len() == 8, "{a}");
        assert_eq!(proposal_id_version(&a), Some(8));
        assert_eq!(proposal_id_version(""), None);
        for other in [
            proposal_id("0123456789ab", 10, "us-west-2", 1_800_000_000_000),
            proposal_id("0123456789ab", 8, "eu-west-1", 1_800_000_000_000),
            proposal_id("0123456789ab", 8, "us-west-2", 1_800_000_000_001),
            proposal_id("ba9876543210", 8, "us-west-2", 1_800_000_000_000),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn lease_rules() {
        let r = rec("us-west-2");
        assert_eq!(
            role(
                "us-east-1",
                &r,
                Mono(20_000),
                &clock(20_000, None),
                4000,
                4000,
                true
            ),
            Role::Standby {
                active: "us-west-2".into()
            }
        );
        // The new active waits out the old active's lease from when it first
        // saw itself named, on its own clock...
        let c = clock(12_000, Some(12_100));
        assert_eq!(
            role("us-west-2", &r, Mono(12_200), &c, 4000, 4000, true),
            Role::Waiting {
                remaining_ms: 3_900
            }
        );
        // ...unless configured to act at once.
        assert_eq!(
            role("us-west-2", &r, Mono(12_200), &c, 4000, 4000, false),
            Role::Active
        );
        let c = clock(16_000, Some(12_100));
        assert_eq!(
            role("us-west-2", &r, Mono(16_100), &c, 4000, 4000, true),
            Role::Active
        );
        // A predecessor that announced a longer lease is waited out to its
        // end (seed 30580: a lease drifted to half on the new active), never
        // a shorter one.
        assert_eq!(
            role("us-west-2", &r, Mono(16_100), &c, 4000, 8000, true),
            Role::Waiting {
                remaining_ms: 4_000
            }
        );
        assert_eq!(
            role("us-west-2", &r, Mono(16_100), &c, 4000, 1000, true),
            Role::Active
        );
        // An active that cannot confirm the record stands down.
        assert_eq!(
            role(
                "us-west-2",
                &r,
                Mono(30_000),
                &clock(25_000, Some(12_100)),
                4000,
                4000,
                true
            ),
            Role::StoodDown {
                unconfirmed_ms: 5000
            }
        );
        // Nobody before us (bootstrap): nothing to wait out.
        let mut first = rec("us-east-1");
        first.previous = None;
        assert_eq!(
            role(
                "us-east-1",
                &first,
                Mono(1_000),
                &clock(1_000, Some(1_000)),
                4000,
                4000,
                true
            ),
            Role::Active
        );
    }

    #[test]
    fn the_clock_counts_from_the_send_and_the_first_sighting() {
        let preceded = |c: LeaseClock, at: u64| LeaseClock {
            preceded_since: Some(Mono(at)),
            ..c
        };
        let r = rec("us-west-2");
        let mut c = LeaseClock::default();
        c.observe("us-west-2", &r, None, Mono(100), Mono(180), true);
        assert_eq!(c, preceded(clock(100, Some(180)), 180));
        // Later reads of the same epoch move the confirmation, not the sighting.
        c.observe(
            "us-west-2",
            &r,
            Some(r.epoch),
            Mono(1_000),
            Mono(1_050),
            true,
        );
        assert_eq!(c, preceded(clock(1_000, Some(180)), 180));
        // A new epoch naming us again is a new sighting.
        let mut next = r.clone();
        next.epoch += 1;
        c.observe(
            "us-west-2",
            &next,
            Some(r.epoch),
            Mono(2_000),
            Mono(2_040),
            true,
        );
        assert_eq!(c, preceded(clock(2_000, Some(2_040)), 2_040));
        // Named elsewhere: no sighting.
        c.observe(
            "us-east-1",
            &next,
            Some(next.epoch),
            Mono(3_000),
            Mono(3_010),
            true,
        );
        assert_eq!(c, clock(3_000, None));
        // A read that does not confirm (no majority of replicas) does not renew.
        c.observe(
            "us-east-1",
            &next,
            Some(next.epoch),
            Mono(4_000),
            Mono(4_010),
            false,
        );
        assert_eq!(c, clock(3_000, None));
    }

    #[test]
    fn a_stood_down_region_stops_claiming_traffic() {
        let r = rec("us-west-2");
        let down = role(
            "us-west-2",
            &r,
            Mono(30_000),
            &clock(25_000, Some(0)),
            4000,
            4000,
            true,
        );
        assert!(!down.is_active());
        assert_eq!(routing_active(Some(&r), Some(&down)), None);
        let waiting = role(
            "us-west-2",
            &r,
            Mono(12_000),
            &clock(12_000, Some(12_000)),
            4000,
            4000,
            true,
        );
        assert!(!waiting.is_active());
        assert_eq!(routing_active(Some(&r), Some(&waiting)), Some("us-west-2"));
        let standby = role(
            "us-east-1",
            &r,
            Mono(30_000),
            &clock(1_000, None),
            4000,
            4000,
            true,
        );
        assert_eq!(routing_active(Some(&r), Some(&standby)), Some("us-west-2"));
        assert_eq!(routing_active(None, None), None);
    }
}
