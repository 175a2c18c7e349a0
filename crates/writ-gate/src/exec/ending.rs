//! The end of a governed program: signals passed on while it runs, its
//! process group and every descendant ended when the run must stop or the
//! program is gone.

use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::signal::unix::SignalKind;

use crate::lease::Stop;

/// How long to wait, after a SIGTERM passed on ended the program, for the
/// governor to report a reason of its own.
const FORWARDED_STOP_WAIT: Duration = Duration::from_millis(500);

/// Wait for the program to end, passing signals on to it, and ending its
/// group (see [`terminate`]) when `governor` says the run must stop. Its
/// status, and the governor's reason if it stopped the run.
pub(super) async fn supervise(
    pgid: u32,
    kill_grace: Duration,
    waiter: &mut Waiter,
    governor: impl std::future::Future<Output = Stop>,
    forward: &mut crate::signals::Forwarder,
) -> Result<(std::process::ExitStatus, Option<Stop>)> {
    tokio::pin!(governor);
    let mut stop = None;
    let mut forwarded_term = false;
    let status = loop {
        tokio::select! {
            r = &mut *waiter => break r??,
            s = &mut governor => {
                stop = Some(s);
                break terminate(pgid, kill_grace, waiter).await?;
            }
            sig = forward.recv() => {
                forwarded_term |= sig == SignalKind::terminate().as_raw_value();
                let _ = writ_exec::signal_group(pgid, sig);
            }
        }
    };
    // A SIGTERM passed on is most often a parent runner ending its subtree
    // for a reason that concerns this run too (a revocation reaches every
    // descendant's stream at about the same moment): give the governor a
    // moment to say so, so the log records why rather than just "signal 15".
    // (The other way round, a program that is itself a runner hearing of a
    // subtree revocation first and exiting before this runner's stream
    // delivers it, needs no wait: the finish answer says the writ was
    // revoked, below.)
    if forwarded_term && stop.is_none() {
        if let Ok(s) = tokio::time::timeout(FORWARDED_STOP_WAIT, &mut governor).await {
            stop = Some(s);
        }
    }
    Ok((status, stop))
}

/// The program's exit status, from the thread that waits for it.
type Waiter = tokio::sync::oneshot::Receiver<std::io::Result<std::process::ExitStatus>>;

/// SIGTERM to the group and every descendant; SIGKILL to whatever still
/// runs after `grace`. A process that outlives the group's leader (one that
/// ends in order on SIGTERM, such as `writ mcp-proxy` finishing its session
/// while the shell that started it is already gone) has the rest of the
/// grace too.
async fn terminate(
    pgid: u32,
    grace: Duration,
    waiter: &mut Waiter,
) -> Result<std::process::ExitStatus> {
    let _ = writ_exec::signal_group(pgid, SIGTERM);
    writ_exec::signal_descendants(SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    let status = match tokio::time::timeout_at(deadline, &mut *waiter).await {
        Ok(r) => r??,
        Err(_) => {
            let _ = writ_exec::signal_group(pgid, SIGKILL);
            writ_exec::signal_descendants(SIGKILL);
            waiter.await??
        }
    };
    while tokio::time::Instant::now() < deadline && !writ_exec::descendants().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = writ_exec::signal_group(pgid, SIGKILL);
    kill_descendants().await;
    Ok(status)
}

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// End every live descendant of the runner (the program is gone): SIGTERM,
/// SIGKILL to those still running after `grace`. How many there were.
pub(super) async fn end_descendants(grace: Duration) -> usize {
    let n = writ_exec::signal_descendants(SIGTERM);
    if n == 0 {
        return 0;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && !writ_exec::descendants().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    kill_descendants().await;
    n
}

/// SIGKILL every live descendant until none is left (one may fork between
/// the listing and the signal; a killed one cannot fork again). Gives up
/// after a second of trying.
async fn kill_descendants() {
    for _ in 0..100 {
        if writ_exec::signal_descendants(SIGKILL) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
