//! What the console reads, shared by its routes.

use std::sync::Arc;

use serde_json::Value;
use writ_authority::{Authority, LogPublisher};
use writ_log::note::NoteVerifier;

use crate::readers;

/// The console as its routes hold it.
pub(crate) type Shared = Arc<Console>;

/// What the console reads.
pub struct Console {
    pub authority: Arc<Authority>,
    /// Signs checkpoints; `None` when the server has no log key.
    pub log: Option<Arc<LogPublisher>>,
    /// Witnesses asked to cosign each checkpoint.
    pub witnesses: Vec<NoteVerifier>,
    /// Where large or slow reads run (low priority, bounded).
    pub readers: Arc<readers::Readers>,
    /// The last maturity assessment (`GET /console/api/assess`).
    pub assessed: tokio::sync::Mutex<Option<Assessed>>,
}

impl Console {
    pub fn new(
        authority: Arc<Authority>,
        log: Option<Arc<LogPublisher>>,
        witnesses: Vec<NoteVerifier>,
        readers: Arc<readers::Readers>,
    ) -> Console {
        Console {
            authority,
            log,
            witnesses,
            readers,
            assessed: tokio::sync::Mutex::new(None),
        }
    }
}

/// The last assessment: when, at what log size, what.
pub struct Assessed {
    pub(crate) at: std::time::Instant,
    pub(crate) size: u64,
    pub(crate) value: Value,
}
