//! The signals that end a command run by hand or by a supervisor (SIGINT,
//! SIGTERM, SIGHUP), caught so that the runner and the proxy can pass them
//! on and record why their execution ended instead of dying on the spot.

use anyhow::Result;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT, SIGTERM and SIGHUP received by this process. Once made, these
/// signals no longer end the process: whoever holds it must act on them.
pub struct Forwarder {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Forwarder {
    pub fn new() -> Result<Forwarder> {
        Ok(Forwarder {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next of them, by number.
    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => SignalKind::interrupt().as_raw_value(),
            _ = self.term.recv() => SignalKind::terminate().as_raw_value(),
            _ = self.hup.recv() => SignalKind::hangup().as_raw_value(),
        }
    }
}

/// `SIGTERM` for 15 (and the two others caught here); `signal N` else.
pub fn name(sig: i32) -> String {
    match sig {
        1 => "SIGHUP".into(),
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}
