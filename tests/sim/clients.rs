//! Clients and the client-request invariant: the seam for the router.
//!
//! The issue asks for "every client request gets an answer before its
//! deadline whenever some region can serve it, and none is answered
//! twice". The router on `main` still calls the SDK itself and is served
//! only over TCP; the reworked router (another branch) takes `Inference` /
//! `Blobs` / `Jobs` ports and exposes a handler callable without TCP. Once
//! it is merged, the simulator wires it like this:
//!
//! 1. each daemon gets a router built with that region's fake ports (the
//!    SageMaker fake grows an `Inference` side: the `Behaviour` it already
//!    has decides each invocation; S3 and jobs get in-memory fakes) and the
//!    daemon's `Shared`;
//! 2. a client task per region sends requests (seeded arrival times,
//!    payload sizes, deadlines) to that region's handler, and records each
//!    in a [`Ledger`] (sent, answered, with what, when);
//! 3. the invariant below runs every step, and at the end.
//!
//! The ledger and its rule are here already, with their tests, so the
//! wiring is all that is left.

use std::collections::BTreeMap;

/// How a request was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A model answer (2xx), from a region.
    Served { region: String },
    /// Accepted for later (202 with a job id): durable, so it counts.
    Accepted { job: String },
    /// Refused or failed (4xx/5xx) with a status.
    Failed { status: u16 },
}

/// One request's life.
#[derive(Debug, Clone)]
pub struct Entry {
    pub sent_ms: u64,
    pub deadline_ms: u64,
    /// Whether some region could serve it for the whole of its life
    /// (decided by the simulator from the world: a region up, its models
    /// answering, and the client's region's daemon reachable).
    pub servable: bool,
    pub answers: Vec<(u64, Answer)>,
}

/// Every request the simulated clients sent.
#[derive(Debug, Default)]
pub struct Ledger {
    pub requests: BTreeMap<u64, Entry>,
}

impl Ledger {
    pub fn sent(&mut self, id: u64, sent_ms: u64, deadline_ms: u64, servable: bool) {
        self.requests.insert(
            id,
            Entry {
                sent_ms,
                deadline_ms,
                servable,
                answers: Vec::new(),
            },
        );
    }

    pub fn answered(&mut self, id: u64, at_ms: u64, a: Answer) {
        if let Some(e) = self.requests.get_mut(&id) {
            e.answers.push((at_ms, a));
        }
    }

    /// The violations at `now`: a request answered twice; a servable
    /// request without a good answer (served or accepted) by its deadline.
    pub fn violations(&self, now: u64) -> Vec<String> {
        let mut out = Vec::new();
        for (id, e) in &self.requests {
            if e.answers.len() > 1 {
                out.push(format!(
                    "request {id} answered {} times: {:?}",
                    e.answers.len(),
                    e.answers
                ));
            }
            if e.servable && now > e.deadline_ms {
                let good = e.answers.iter().any(|(at, a)| {
                    *at <= e.deadline_ms
                        && matches!(a, Answer::Served { .. } | Answer::Accepted { .. })
                });
                if !good {
                    out.push(format!(
                        "request {id} (sent at {} ms, deadline {} ms) could be served but got {:?}",
                        e.sent_ms, e.deadline_ms, e.answers
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        let mut l = Ledger::default();
        l.sent(1, 0, 1000, true);
        l.sent(2, 0, 1000, true);
        l.sent(3, 0, 1000, false);
        l.sent(4, 0, 1000, true);
        l.answered(
            1,
            500,
            Answer::Served {
                region: "us-west-2".into(),
            },
        );
        l.answered(
            2,
            1500,
            Answer::Served {
                region: "us-west-2".into(),
            },
        );
        l.answered(3, 10, Answer::Failed { status: 503 });
        l.answered(4, 10, Answer::Accepted { job: "j".into() });
        l.answered(4, 20, Answer::Failed { status: 500 });
        let early = l.violations(900);
        assert_eq!(
            early.len(),
            1,
            "nothing is late before the deadline: {early:?}"
        );
        assert!(early[0].starts_with("request 4 answered 2 times"));
        let v = l.violations(2000);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].starts_with("request 2"), "late");
        assert!(v[1].starts_with("request 4 answered 2 times"));
    }
}
