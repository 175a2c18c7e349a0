//! Finishes answered before their commit (`"durable": false`,
//! docs/spec/api.md, "Finishing before the commit"): the runner's exit
//! waits for no disk. From the answer until the commit returns, the
//! execution counts as finished here (its credential is refused, a second
//! finish is a conflict), and a reader that asks ([`Authority::settled`])
//! waits for the commit, so nothing read after the answer misses the entry.
//!
//! # Tuning (The finish off the critical path)
//!
//! A `writ exec` run was two durable commits in a row on its critical
//! path: the start (with its decision) and the finish. The finish's answer
//! is needed only for one fact, whether the writ was revoked by then, which
//! is decided from the in-memory revocation state when the finish is queued
//! (`submit_if_current` fixes its place in the log relative to every
//! revocation), not at the commit. Answering after the queueing takes one
//! group commit (an fdatasync, 0.1-4 ms on this VM depending on the disk's
//! phase) off every run; BENCHMARKS.md, `writ bench exec`, has the figures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use writ_store::Ticket;

use super::Authority;

/// The finishes answered and not yet committed, by the order they were
/// reserved.
#[derive(Default)]
pub(super) struct Finishing {
    inner: Mutex<Pending>,
    /// Told each time one commits or fails.
    done: tokio::sync::Notify,
}

#[derive(Default)]
struct Pending {
    /// The sequence number the next reservation gets.
    next: u64,
    by_seq: BTreeMap<u64, String>,
}

impl Finishing {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserve the finish of `jti`: `None` if one is already pending.
    pub(super) fn reserve(self: &Arc<Self>, jti: &str) -> Option<Reservation> {
        let mut p = self.lock();
        if p.by_seq.values().any(|j| j == jti) {
            return None;
        }
        let seq = p.next;
        p.next += 1;
        p.by_seq.insert(seq, jti.to_owned());
        Some(Reservation {
            seq,
            finishing: self.clone(),
        })
    }

    /// Whether the finish of `jti` was answered and has not committed yet.
    pub(super) fn contains(&self, jti: &str) -> bool {
        self.lock().by_seq.values().any(|j| j == jti)
    }

    fn release(&self, seq: u64) {
        self.lock().by_seq.remove(&seq);
        self.done.notify_waiters();
    }

    /// Until every reservation made before this call is released.
    async fn settled(&self) {
        let target = {
            let p = self.lock();
            if p.by_seq.is_empty() {
                return;
            }
            p.next
        };
        loop {
            let notified = self.done.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a release between the check
            // and the wait is not missed.
            notified.as_mut().enable();
            if self
                .lock()
                .by_seq
                .keys()
                .next()
                .is_none_or(|&s| s >= target)
            {
                return;
            }
            notified.await;
        }
    }
}

/// A finish reserved (and then answered) whose commit has not returned;
/// released when dropped.
pub(super) struct Reservation {
    seq: u64,
    finishing: Arc<Finishing>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.finishing.release(self.seq);
    }
}

/// A finish answered before its commit: [`PendingFinish::settle`] waits
/// for the commit (the server runs it on a task of its own).
#[must_use = "the finish stays pending until settled"]
pub struct PendingFinish {
    pub(super) jti: String,
    pub(super) ticket: Ticket,
    pub(super) reservation: Reservation,
}

impl PendingFinish {
    /// Wait for the commit; an error is logged (the caller was answered
    /// already: the execution stays open in the log until its lease ends).
    pub async fn settle(self, authority: &Authority) {
        let PendingFinish {
            jti,
            ticket,
            reservation,
        } = self;
        match ticket.await {
            Ok(indices) => authority.note_indices(&indices),
            Err(e) => tracing::error!(
                jti,
                error = %e,
                "a finish answered before its commit was not logged; the execution stays open until its lease ends"
            ),
        }
        drop(reservation);
    }
}

impl Authority {
    /// Wait until every finish answered before this call
    /// (`"durable": false`) has committed or failed, so that a read after
    /// it sees them. Returns at once when none is pending.
    pub async fn settled(&self) {
        self.finishing.settled().await
    }
}
