//! When the writer holds a group commit back to gather a larger batch.
//!
//! Each commit has a cost that does not depend on its size: the writer wakes
//! (taking a core from a tokio worker), SQLite rewrites the B-trees' tail
//! pages, and the fdatasync notifies the virtual disk. With every core busy
//! that cost is CPU the decisions themselves need, and an eager writer makes
//! it often: measured at 256 concurrent callers on 2 cores, most commits
//! carried 1-7 transactions. So when the machine is saturated (under
//! [`IDLE_SATURATED`] of its CPU time idle over the last sample) and the
//! last commit carried several transactions, but not so many that the
//! writer itself is the bottleneck, the writer waits [`HOLD`] before it
//! collects the next batch. With idle CPU it never waits: a commit
//! then costs nothing anyone else could use, and latency comes first. If
//! holding back leaves the cores idle (every caller waiting for the commit),
//! the next sample sees the idle time and the writer stops waiting.
//!
//! # Tuning (Writer pacing)
//!
//! Under CPU saturation (under 10% of the machine's CPU time idle over the
//! last 200 ms, from `/proc/stat`) and after a commit of 4 to 127
//! transactions, the writer waits 0.5 ms before it collects its next batch.
//! Why: each commit has fixed costs (the wake-up that preempts a tokio
//! worker, the B-trees' tail pages written again, the disk's notification).
//! At 256 callers on 2 cores an eager writer's batches were bimodal, most
//! carrying 1-7 transactions, and the writer spent 11.3-12.3 us of CPU per
//! decision; waiting brought that to 8-9 us and the governed rate up 8-14% in
//! alternating runs (in full runs, governed / ceiling from 0.59-0.61 to
//! 0.63-0.70).
//!
//! - **Only when saturated.** Waiting always cost latency where nothing is
//!   gained (p50 at 10,000 HTTP decisions/s from 1.0 to 1.7 ms), and so did
//!   waiting whenever the last batch was large, since batches of 8 are common
//!   at that load. Idle CPU means an early commit costs nobody anything.
//! - **Sleep once, do not wake on each arrival**: waking on each arrival
//!   (`recv_timeout`) saved no CPU.
//! - **Not after 128 or more**: the writer is then what callers wait for;
//!   `writ bench log`'s appends (4,096 in flight) were 2-8% slower in each of
//!   three pairs when it waited after batches of up to 1,023.
//! - **200 ms samples**: `/proc/stat` counts ticks of 10 ms per core, so a
//!   10 ms sample cannot tell 5% idle from 25%, and held commits back at
//!   10,000/s. Where `/proc/stat` cannot be read the writer never waits. It
//!   is the whole machine's: in a container held to a CPU quota it shows the
//!   host, so there the writer commits eagerly unless the host is saturated.
//! - **Read only when it could hold**: the counters are read only after a
//!   batch of 4 to 127. Read after every commit that followed 200 ms of
//!   quiet, they put eight `read`s of `/proc/stat` (about 0.1 ms on this VM)
//!   on the path of every lone caller's decision.

use std::time::{Duration, Instant};

/// How long the writer waits for more transactions when saturated.
pub(crate) const HOLD: Duration = Duration::from_micros(500);
/// Below this share of idle CPU time the machine counts as saturated.
pub(crate) const IDLE_SATURATED: f64 = 0.10;
/// The last commit must have carried this many transactions: a lone caller
/// committing one transaction at a time (a script, a test) is never held.
pub(crate) const HOLD_MIN_BATCH: usize = 4;
/// A commit this large means the writer is what the callers wait for (the
/// queue outgrows it): holding back would only idle it.
pub(crate) const HOLD_MAX_BATCH: usize = 128;
/// How often the CPU counters are read. They count in ticks of 10 ms per
/// core, so a sample must span many ticks to tell 5% idle from 25%: 200 ms
/// on 2 cores is 40 ticks.
const SAMPLE: Duration = Duration::from_millis(200);

/// Cumulative CPU time of the whole machine, in `/proc/stat` ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    /// Idle and I/O wait: time a runnable thread could have had.
    pub idle: u64,
    pub total: u64,
}

/// The first line of `/proc/stat` (`cpu  user nice system idle iowait irq
/// softirq steal guest guest_nice`); `None` if it is not that.
pub(crate) fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields
        .map(|f| f.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    if v.len() < 5 {
        return None;
    }
    // guest and guest_nice are already counted in user and nice.
    let total = v.iter().take(8).sum();
    Some(CpuTimes {
        idle: v[3] + v[4],
        total,
    })
}

/// Whether the machine was saturated between two readings. Too few ticks to
/// tell (under a tick elapsed) counts as not saturated.
pub(crate) fn saturated(before: CpuTimes, after: CpuTimes) -> bool {
    let total = after.total.saturating_sub(before.total);
    let idle = after.idle.saturating_sub(before.idle);
    total > 0 && (idle as f64) < IDLE_SATURATED * total as f64
}

/// The writer's pacing state.
pub(crate) struct Pacer {
    read: fn() -> Option<CpuTimes>,
    last: Option<(Instant, CpuTimes)>,
    saturated: bool,
}

fn read_proc_stat() -> Option<CpuTimes> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

impl Pacer {
    pub(crate) fn new() -> Pacer {
        Pacer::with_reader(read_proc_stat)
    }

    /// A pacer reading CPU times with `read` (`None`: unknown, never hold).
    pub(crate) fn with_reader(read: fn() -> Option<CpuTimes>) -> Pacer {
        Pacer {
            read,
            last: None,
            saturated: false,
        }
    }

    /// How long to wait before collecting the batch that follows one of
    /// `last_batch` transactions; zero when the writer should not wait.
    pub(crate) fn hold(&mut self, last_batch: usize) -> Duration {
        // A batch that is never held back reads nothing: a lone caller's
        // commit (one transaction) pays no read of `/proc/stat`. The next
        // batch that could be held compares with the last reading, however
        // old: over a longer span, the same average.
        if !(HOLD_MIN_BATCH..HOLD_MAX_BATCH).contains(&last_batch) {
            return Duration::ZERO;
        }
        let now = Instant::now();
        if self
            .last
            .is_none_or(|(at, _)| now.duration_since(at) >= SAMPLE)
        {
            let times = (self.read)();
            let was = self.saturated;
            self.saturated = match (self.last, times) {
                (Some((_, before)), Some(after)) => saturated(before, after),
                _ => false,
            };
            if self.saturated != was {
                tracing::debug!(
                    saturated = self.saturated,
                    "group commits {} held back for larger batches",
                    if self.saturated {
                        "are"
                    } else {
                        "are no longer"
                    }
                );
            }
            self.last = times.map(|t| (now, t));
        }
        if self.saturated {
            HOLD
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_first_line_of_proc_stat() {
        let text = "cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        assert_eq!(
            parse_proc_stat(text),
            Some(CpuTimes {
                idle: 840,
                total: 1000
            })
        );
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4 5\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2 x 4 5\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2 3\n"), None);
        assert_eq!(parse_proc_stat(""), None);
    }

    #[test]
    fn saturated_means_under_a_tenth_idle() {
        let t = |idle, total| CpuTimes { idle, total };
        assert!(saturated(t(100, 1000), t(105, 1100)));
        assert!(!saturated(t(100, 1000), t(110, 1100)));
        assert!(!saturated(t(100, 1000), t(190, 1100)));
        // No tick elapsed: cannot tell, so not saturated.
        assert!(!saturated(t(100, 1000), t(100, 1000)));
        // Counters that went backwards are not saturation either.
        assert!(!saturated(t(100, 1000), t(0, 0)));
    }

    #[test]
    fn reads_this_machines_counters() {
        if cfg!(target_os = "linux") {
            let t = read_proc_stat().expect("/proc/stat has a cpu line");
            assert!(t.total >= t.idle && t.total > 0, "{t:?}");
        }
    }

    #[test]
    fn holds_only_when_saturated_and_after_a_batch() {
        use std::sync::atomic::{AtomicU64, Ordering};
        // A fake machine whose counters advance 100 ticks per reading, with
        // IDLE idle ticks among them.
        static IDLE: AtomicU64 = AtomicU64::new(0);
        static IDLE_SUM: AtomicU64 = AtomicU64::new(0);
        static TOTAL: AtomicU64 = AtomicU64::new(0);
        fn fake() -> Option<CpuTimes> {
            Some(CpuTimes {
                idle: IDLE_SUM.fetch_add(IDLE.load(Ordering::SeqCst), Ordering::SeqCst)
                    + IDLE.load(Ordering::SeqCst),
                total: TOTAL.fetch_add(100, Ordering::SeqCst) + 100,
            })
        }
        IDLE.store(2, Ordering::SeqCst);
        let mut p = Pacer::with_reader(fake);
        // The first reading has nothing to compare with.
        assert_eq!(p.hold(64), Duration::ZERO);
        std::thread::sleep(SAMPLE);
        assert_eq!(p.hold(64), HOLD, "2% idle is saturated");
        assert_eq!(p.hold(1), Duration::ZERO, "a lone caller is not held");
        assert_eq!(p.hold(HOLD_MIN_BATCH - 1), Duration::ZERO);
        assert_eq!(p.hold(HOLD_MAX_BATCH - 1), HOLD);
        assert_eq!(
            p.hold(HOLD_MAX_BATCH),
            Duration::ZERO,
            "a writer that cannot keep up is not held"
        );
        IDLE.store(30, Ordering::SeqCst);
        std::thread::sleep(SAMPLE);
        assert_eq!(p.hold(64), Duration::ZERO, "30% idle is not saturated");
        // Batches that are never held read no counters.
        let before = TOTAL.load(Ordering::SeqCst);
        std::thread::sleep(SAMPLE);
        for n in [0, 1, HOLD_MIN_BATCH - 1, HOLD_MAX_BATCH, 4096] {
            assert_eq!(p.hold(n), Duration::ZERO);
        }
        assert_eq!(
            TOTAL.load(Ordering::SeqCst),
            before,
            "a lone commit read /proc/stat"
        );
        // Unknown counters never hold.
        let mut blind = Pacer::with_reader(|| None);
        assert_eq!(blind.hold(64), Duration::ZERO);
        std::thread::sleep(SAMPLE);
        assert_eq!(blind.hold(64), Duration::ZERO);
    }
}
