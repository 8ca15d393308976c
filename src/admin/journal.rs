//! A bounded, cached read of the journal and the task tokens for the admin
//! listener: the status page's timeline, pending tokens and failovers, and
//! the last failover's figures in `/metrics`.
//!
//! Bounded twice: each read takes at most [`EVENTS`] journal entries and
//! [`TOKENS`] tokens (one query each), and reads are shared: a page open in
//! several browsers, each refreshing, costs one read per
//! [`PAGE_MAX_AGE`]. The scrape path never reads DynamoDB: `/metrics` shows
//! the last read, which [`JournalView::follow`] refreshes whenever the
//! control record moves (a failover claims, switches, ends), so the figures
//! are current within a round of a failover ending without anyone looking
//! at the page. A read that fails is shown as failed (never as "no events").

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::timeline::{self, Failover};
use crate::http::{ShutdownRx, shutdown_signalled};
use crate::ports::store::{Event, Page, TokenItem};
use crate::ports::{Clock, ControlStore};
use crate::state::Shared;

/// Journal entries read at most (newest first).
pub const EVENTS: usize = 300;
/// Tokens read at most (newest first).
pub const TOKENS: usize = 100;
/// Extra reads after a failover settled in the record but not yet in the
/// journal (one a second).
pub const SETTLE_READS: u32 = 30;
/// How old a read the page accepts.
pub const PAGE_MAX_AGE: Duration = Duration::from_secs(4);

/// One read of the journal and the tokens.
#[derive(Debug)]
pub struct Snapshot {
    /// Unix ms (this daemon's clock) when the read was sent.
    pub read_at: u64,
    fetched: Instant,
    pub events: Result<Page<Event>, String>,
    pub tokens: Result<Page<TokenItem>, String>,
    /// Failovers found in `events`, oldest first.
    pub failovers: Vec<Failover>,
}

/// The cache.
pub struct JournalView {
    store: Arc<dyn ControlStore>,
    clock: Arc<dyn Clock>,
    /// Held while reading, so concurrent callers share one read.
    reading: tokio::sync::Mutex<()>,
    last: Mutex<Option<Arc<Snapshot>>>,
}

impl JournalView {
    pub fn new(store: Arc<dyn ControlStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            reading: tokio::sync::Mutex::new(()),
            last: Mutex::new(None),
        }
    }

    /// The last read, if any (never reads).
    pub fn last(&self) -> Option<Arc<Snapshot>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A read no older than `max_age`: the cached one, or a new one.
    pub async fn get(&self, max_age: Duration) -> Arc<Snapshot> {
        let fresh = |s: &Option<Arc<Snapshot>>| {
            s.as_ref()
                .filter(|s| self.clock.since(s.fetched) <= max_age)
                .cloned()
        };
        if let Some(s) = fresh(&self.last()) {
            return s;
        }
        let _one = self.reading.lock().await;
        // Someone else may have read while we waited.
        if let Some(s) = fresh(&self.last()) {
            return s;
        }
        let read_at = self.clock.now_ms();
        let (events, tokens) = tokio::join!(
            self.store.events(EVENTS, read_at),
            self.store.tokens(TOKENS, read_at)
        );
        // Then the record, after the journal: the workflow writes the
        // record before it journals a step, so a record read after the
        // journal is at least as new as every step the journal shows, and
        // the page (which shows the newest record this daemon read) never
        // names an active region older than its own timeline. The daemon's
        // store is metered, which keeps the newest record read; a failed
        // read leaves the last one, shown with its age.
        let _ = self.store.read_record().await;
        let events = events.map_err(|e| crate::error_chain(&e));
        let tokens = tokens.map_err(|e| crate::error_chain(&e));
        let failovers = events
            .as_ref()
            .map(|p| timeline::failovers(&p.items))
            .unwrap_or_default();
        let snap = Arc::new(Snapshot {
            read_at,
            fetched: self.clock.monotonic(),
            events,
            tokens,
            failovers,
        });
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(snap.clone());
        snap
    }

    /// Re-read whenever the control record's version changes (checked
    /// every second against the last round, in memory), until `shutdown`.
    ///
    /// The workflow journals after it writes the record (MarkSteady, then
    /// its `workflow_done` entry), so a read right after the record settled
    /// can miss the end: while the record is steady and the read shows its
    /// failover still in flight, read again, at most [`SETTLE_READS`] times.
    pub async fn follow(self: Arc<Self>, shared: Arc<Shared>, mut shutdown: ShutdownRx) {
        let mut seen: Option<(u64, u64)> = None;
        let mut retries = 0u32;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown_signalled(&mut shutdown) => return,
                _ = tick.tick() => {}
            }
            let now = shared.read(|st| {
                st.record.as_ref().map(|r| {
                    (
                        (r.epoch, r.version),
                        r.phase == crate::core::control::Phase::Steady,
                    )
                })
            });
            let Some((key, steady)) = now else { continue };
            if Some(key) == seen {
                continue;
            }
            let snap = tokio::select! {
                biased;
                _ = shutdown_signalled(&mut shutdown) => return,
                s = self.get(Duration::ZERO) => s,
            };
            // A failed read is retried on the next tick.
            if snap.events.is_err() {
                continue;
            }
            let open = steady
                && snap
                    .failovers
                    .iter()
                    .any(|f| f.epoch == key.0 && f.outcome == timeline::Outcome::InFlight);
            if open && retries < SETTLE_READS {
                retries += 1;
            } else {
                seen = Some(key);
                retries = 0;
            }
        }
    }
}
