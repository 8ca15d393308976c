//! The journal, as the daemon writes it: best effort. The journal is for
//! humans (status, drill reports); losing an entry must never stop a
//! failover, so a failed write is logged and forgotten.

use tracing::warn;

use crate::ports::ControlStore;
use crate::ports::store::Event;

/// Append one entry at `at` (the writer's clock).
pub async fn journal(
    store: &dyn ControlStore,
    at: u64,
    who: &str,
    kind: &str,
    epoch: Option<u64>,
    detail: impl Into<String>,
) {
    let e = Event {
        at,
        who: who.into(),
        kind: kind.into(),
        epoch,
        detail: detail.into(),
    };
    if let Err(err) = store.journal(&e).await {
        warn!(error = %crate::error_chain(&err), kind, "cannot write journal entry");
    }
}
