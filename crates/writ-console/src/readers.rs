//! Reads that can be large or slow (log pages, lineage trees, the console's
//! scans, the maturity assessment) run here: on threads of their own at the
//! lowest CPU priority (nice 19), off the async workers that decide, with a
//! bounded queue. Readers at any rate then take what CPU decisions leave,
//! and a reader past the queue is told the server is busy (503) instead of
//! piling up (BENCHMARKS.md, "Readers").
//!
//! # Tuning (Reads off the decision path)
//!
//! Every read whose size grows with the log (log entries and contents pages,
//! lineage, the console's scans, revocations, the assessment, proofs, mesh
//! status) is read, built and serialized on reader threads at nice 19 with a
//! queue of `QUEUE_MAX` (64; 503 with `Retry-After` past it), never on the
//! async workers that decide. Log pages stop at 4 MiB (`PAGE_BYTES_MAX`,
//! `crates/writ-server/src/log.rs`) and read the store a few entries at a
//! time; lineage stops at 10,000 nodes; the assessment is kept for 30 s.
//! Before this, 8 anonymous lineage reads moved authorize from 5 ms to 9 s;
//! after it, 8 readers move the authorize p99 by 1.08x (`writ bench readers`).

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The pool of low-priority reader threads.
#[derive(Debug)]
pub struct Readers {
    queue: SyncSender<Job>,
}

/// The reader queue is full, or the pool is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server is busy with other reads; retry shortly")
    }
}

/// Reads waiting at most; one more is refused with [`Busy`].
pub const QUEUE_MAX: usize = 64;

impl Readers {
    /// `threads` reader threads (at least one).
    pub fn new(threads: usize) -> Arc<Readers> {
        let (queue, jobs) = sync_channel::<Job>(QUEUE_MAX);
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads.max(1) {
            let jobs = jobs.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("writ-reader-{i}"))
                .spawn(move || {
                    // Linux: the nice value of the calling thread only.
                    if let Err(e) = rustix::process::setpriority_process(None, 19) {
                        tracing::debug!(error = %e, "reader thread keeps its priority");
                    }
                    loop {
                        let job = match jobs.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A read that panics fails alone (its caller
                            // gets 503); the thread goes on.
                            Ok(job) => {
                                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                                    .is_err()
                                {
                                    tracing::error!("a read panicked");
                                }
                            }
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a reader thread");
            }
        }
        Arc::new(Readers { queue })
    }

    /// Run `f` on a reader thread and wait for it (asynchronously).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => return Err(Busy),
        }
        rx.await.map_err(|_| Busy)
    }
}

/// The reader threads for this machine: half its cores, at least one.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_run_at_the_lowest_priority_and_a_full_queue_is_busy() {
        let r = Readers::new(1);
        let nice = r
            .run(|| rustix::process::getpriority_process(None).unwrap())
            .await
            .unwrap();
        assert_eq!(nice, 19);
        // Block the one thread, fill the queue: the next read is refused.
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let blocker = {
            let r = r.clone();
            tokio::spawn(async move { r.run(move || held.recv().unwrap()).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut waiting = Vec::new();
        for _ in 0..QUEUE_MAX {
            let r = r.clone();
            waiting.push(tokio::spawn(async move { r.run(|| 1).await }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(r.run(|| 2).await, Err(Busy));
        hold.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        for w in waiting {
            assert_eq!(w.await.unwrap(), Ok(1));
        }
    }
}
