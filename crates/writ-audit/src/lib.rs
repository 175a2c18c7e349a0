//! Offline verification of a writ log, by anyone holding the public keys.
//!
//! [`verify_log`] streams a whole log from a [`Source`] (a data dir's store, a
//! server's public routes, ...): it recomputes every leaf hash and the tree,
//! compares the stored subtree hashes when the source has them, checks every
//! signed checkpoint's signature and root against the recomputed tree (which
//! also proves every pair of checkpoints consistent), the witness
//! cosignatures a caller requires, and with `replay` re-evaluates every
//! logged decision against the policy bundle it names. [`evidence`] builds and
//! verifies self-contained evidence bundles for a range of entries.
//!
//! Memory is O(log n) plus one chunk of entries, whatever the log's size.
//!
//! **API boundary:** no IO of its own; sources are traits.
#![forbid(unsafe_code)]

pub mod evidence;
mod replay;
mod source;

use std::collections::VecDeque;

use writ_log::content::Content;
use writ_log::merkle::Frontier;
use writ_log::note::{NoteVerifier, SignedCheckpoint};
use writ_log::{leaf_hash, Hash};

pub use replay::{FetchBundle, ReplayError, ReplayOutcome, Replayer};
pub use source::{Leaf, Node, Source, SourceError};

/// Entries read per chunk.
pub const CHUNK: u64 = 8192;

/// What to check besides the tree.
pub struct Options<'a> {
    /// The log's checkpoint key.
    pub log_key: NoteVerifier,
    /// Further checkpoint keys of the same log: in a mesh each node signs
    /// checkpoints with its own key while it is the leader. A checkpoint
    /// signed by any of `log_key` and these verifies.
    pub other_log_keys: Vec<NoteVerifier>,
    /// Witnesses whose cosignature the latest checkpoint must carry.
    pub witnesses: Vec<NoteVerifier>,
    /// Re-evaluate every decision (needs the trusted policy keys).
    pub replay: Option<writ_artifact::KeyRing>,
    /// Told `(entries done, total)` after every chunk.
    pub progress: Option<&'a dyn Fn(u64, u64)>,
    /// Count leaves the source withheld by their hashes, without a finding
    /// (a public reader of a log with decisions from before sealing).
    /// Otherwise each is a finding: a source can withhold any entry.
    pub accept_withheld: bool,
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The entry it concerns, when one can be named.
    pub index: Option<u64>,
    pub message: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub entries: u64,
    /// The recomputed root of all entries (standard base64).
    pub root: String,
    pub checkpoints: u64,
    pub largest_checkpoint: Option<u64>,
    pub cosigned_checkpoints: u64,
    pub stored_nodes_checked: u64,
    pub decisions_replayed: u64,
    pub decisions_not_replayable: u64,
    /// Leaves the source gave as a hash only (erased, or withheld from this
    /// reader): they count in the tree, their bytes were not checked. An
    /// erased one must be named by a later `content_erased` entry; a
    /// withheld one is a finding unless `Options::accept_withheld`.
    pub leaves_without_bytes: u64,
    pub leaves_withheld: u64,
    /// Sealed decisions that could not be replayed because their content
    /// was not at hand (erased, or not given); the first 1000 indices.
    pub content_unavailable: Vec<u64>,
    pub decisions_content_unavailable: u64,
    /// Policy bundles (of an evidence bundle) whose hash and policy-key
    /// signature were checked.
    pub policy_bundles_checked: u64,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
    /// Count one replay's outcome for entry `index`.
    fn replayed(&mut self, index: u64, outcome: Result<ReplayOutcome, ReplayError>) {
        match outcome {
            Ok(ReplayOutcome::Same) => self.decisions_replayed += 1,
            Ok(ReplayOutcome::NotReplayable(_)) => self.decisions_not_replayable += 1,
            Ok(ReplayOutcome::ContentUnavailable) => {
                self.decisions_content_unavailable += 1;
                if self.content_unavailable.len() < 1000 {
                    self.content_unavailable.push(index);
                }
            }
            Ok(ReplayOutcome::Different(m)) => {
                self.problem(Some(index), format!("entry {index}: replay differs: {m}"))
            }
            Err(e) => self.problem(Some(index), format!("entry {index}: cannot replay: {e}")),
        }
    }
    fn problem(&mut self, index: Option<u64>, message: impl Into<String>) {
        // A rewritten log can produce millions of findings; keep the first ones.
        if self.problems.len() < 1000 {
            self.problems.push(Problem {
                index,
                message: message.into(),
            });
        }
    }
}

pub(crate) fn b64(h: &Hash) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// Verify a whole log. `Err` only when the source cannot be read.
///
/// A second thread reads the next chunks of leaves while this one hashes, so
/// reading and hashing overlap.
pub fn verify_log(src: &(dyn Source + Sync), opts: &Options<'_>) -> Result<Report, SourceError> {
    let size = src.size()?;
    std::thread::scope(|scope| {
        let (chunks_tx, chunks) = std::sync::mpsc::sync_channel(2);
        scope.spawn(move || {
            let mut start = 0u64;
            while start < size {
                let end = (start + CHUNK).min(size);
                let chunk = src.leaves(start, end);
                let failed = chunk.is_err();
                // A closed channel: the verification ended early.
                if chunks_tx.send(chunk).is_err() || failed {
                    return;
                }
                start = end;
            }
        });
        verify_chunks(src, size, &chunks, opts)
    })
}

fn verify_chunks(
    src: &dyn Source,
    size: u64,
    chunks: &std::sync::mpsc::Receiver<Result<Vec<Leaf>, SourceError>>,
    opts: &Options<'_>,
) -> Result<Report, SourceError> {
    let mut walk = Walk::start(src, size, opts)?;
    let mut start = 0u64;
    while start < size {
        let end = (start + CHUNK).min(size);
        let leaves = chunks
            .recv()
            .map_err(|_| SourceError::unavailable("the leaf reader stopped"))??;
        if !walk.chunk(start, end, leaves)? {
            return Ok(walk.finish());
        }
        start = end;
        if let Some(p) = opts.progress {
            p(start, size);
        }
    }
    walk.end_of_log(size)?;
    Ok(walk.finish())
}

/// The stored subtree hashes, read ahead in completion order and compared
/// with each subtree the recomputation completes.
struct StoredNodes {
    queue: VecDeque<Node>,
    after: Option<(u8, u64)>,
    /// The source keeps them, and none was found missing yet.
    available: bool,
}

impl StoredNodes {
    /// Read more when fewer than two chunks' worth are queued.
    fn refill(&mut self, src: &dyn Source) -> Result<(), SourceError> {
        if !self.available || self.queue.len() >= 2 * CHUNK as usize {
            return Ok(());
        }
        match src.stored_nodes(self.after, 2 * CHUNK as usize)? {
            None => self.available = false,
            Some(v) => {
                if let Some(last) = v.last() {
                    self.after = Some((last.0, last.1));
                }
                self.queue.extend(v);
            }
        }
        Ok(())
    }
}

/// One verification as it walks the log: the recomputed tree, the
/// checkpoints and stored subtree hashes it is compared with, the replay,
/// and what is found.
struct Walk<'a> {
    src: &'a dyn Source,
    opts: &'a Options<'a>,
    report: Report,
    // Checkpoints: each is checked for its signature when read and against
    // the tree when the recomputation reaches its size.
    feed: Feed,
    frontier: Frontier,
    stored: StoredNodes,
    replayer: Option<Replayer>,
    /// Erased leaves not (yet) named by a `content_erased` entry.
    unexplained: std::collections::BTreeSet<u64>,
    /// Withheld leaves that are a finding.
    withheld: Vec<u64>,
}

/// What the sealed decisions of one chunk commit to, by index.
type ChunkContents = Option<std::collections::HashMap<u64, Content>>;

impl<'a> Walk<'a> {
    fn start(
        src: &'a dyn Source,
        size: u64,
        opts: &'a Options<'a>,
    ) -> Result<Walk<'a>, SourceError> {
        let mut walk = Walk {
            src,
            opts,
            report: Report {
                entries: size,
                ..Report::default()
            },
            feed: Feed::default(),
            frontier: Frontier::default(),
            stored: StoredNodes {
                queue: VecDeque::new(),
                after: None,
                available: true,
            },
            replayer: opts.replay.clone().map(Replayer::new),
            unexplained: Default::default(),
            withheld: Vec::new(),
        };
        walk.feed
            .advance(src, opts, &walk.frontier, &mut walk.report)?;
        Ok(walk)
    }

    /// Entries `start..end`; `false` when one is missing: the walk ends there.
    fn chunk(&mut self, start: u64, end: u64, leaves: Vec<Leaf>) -> Result<bool, SourceError> {
        self.stored.refill(self.src)?;
        // What this chunk's sealed decisions commit to, for replay.
        let contents: ChunkContents = match &self.replayer {
            Some(_) => self
                .src
                .contents(start, end)?
                .map(|v| v.into_iter().collect()),
            None => None,
        };
        let mut expect = start;
        for leaf in leaves {
            if leaf.index != expect {
                self.report.problem(
                    Some(expect),
                    format!(
                        "entry {expect} is missing (next stored index is {})",
                        leaf.index
                    ),
                );
                return Ok(false);
            }
            expect += 1;
            let Some(h) = self.hash_of(&leaf) else {
                return Ok(false);
            };
            self.push(&leaf, h);
            self.replay(&leaf, &contents);
            self.feed
                .advance(self.src, self.opts, &self.frontier, &mut self.report)?;
        }
        if expect != end {
            self.report
                .problem(Some(expect), format!("entries {expect}..{end} are missing"));
            return Ok(false);
        }
        Ok(true)
    }

    /// The leaf's hash: of its bytes (checked against the stored one), or,
    /// given as its hash alone, that hash. `None` when neither was given.
    fn hash_of(&mut self, leaf: &Leaf) -> Option<Hash> {
        if !leaf.bytes.is_empty() {
            if let Some(i) = erasure_named(&leaf.bytes) {
                self.unexplained.remove(&i);
            }
            let h = leaf_hash(&leaf.bytes);
            if leaf.stored_hash.is_some_and(|stored| stored != h) {
                self.report.problem(
                    Some(leaf.index),
                    format!(
                        "entry {}: its bytes do not hash to its stored leaf hash (the entry was altered)",
                        leaf.index
                    ),
                );
            }
            return Some(h);
        }
        let Some(h) = leaf.stored_hash else {
            self.report.problem(
                Some(leaf.index),
                format!(
                    "entry {}: neither its bytes nor its hash were given",
                    leaf.index
                ),
            );
            return None;
        };
        self.report.leaves_without_bytes += 1;
        if leaf.withheld {
            self.report.leaves_withheld += 1;
            if !self.opts.accept_withheld {
                self.withheld.push(leaf.index);
            }
        } else {
            self.unexplained.insert(leaf.index);
        }
        Some(h)
    }

    /// Add the leaf to the recomputed tree, comparing each subtree it
    /// completes with the stored one.
    fn push(&mut self, leaf: &Leaf, h: Hash) {
        let mut mismatched: Option<(u8, u64)> = None;
        let mut missing = false;
        let stored = &mut self.stored;
        let report = &mut self.report;
        self.frontier.push(h, |level, index, node| {
            if !stored.available {
                return;
            }
            match stored.queue.pop_front() {
                Some((l, i, sh)) if l == level && i == index => {
                    report.stored_nodes_checked += 1;
                    if &sh != node && mismatched.is_none() {
                        mismatched = Some((level, index));
                    }
                }
                Some(other) => {
                    stored.queue.push_front(other);
                    missing = true;
                }
                None => missing = true,
            }
        });
        if let Some((level, index)) = mismatched {
            let lo = index << level;
            self.report.problem(
                Some(lo),
                format!(
                    "stored subtree hash (level {level}, index {index}) over entries {lo}..{} does not match the entries",
                    (index + 1) << level
                ),
            );
        }
        if missing {
            self.report.problem(
                Some(leaf.index),
                format!(
                    "the stored tree lacks a subtree hash completed by entry {}",
                    leaf.index
                ),
            );
            self.stored.available = false;
        }
    }

    /// Replay the leaf if it is a decision given with its bytes.
    fn replay(&mut self, leaf: &Leaf, contents: &ChunkContents) {
        let Some(r) = self.replayer.as_mut().filter(|_| !leaf.bytes.is_empty()) else {
            return;
        };
        match writ_log::Entry::from_leaf(&leaf.bytes) {
            Err(e) => self
                .report
                .problem(Some(leaf.index), format!("entry {}: {e}", leaf.index)),
            Ok(writ_log::Entry::Decision(d)) => {
                let content = contents.as_ref().and_then(|m| m.get(&leaf.index));
                let src = self.src;
                let outcome = r.replay(&d, content, &|h| src.bundle(h));
                self.report.replayed(leaf.index, outcome);
            }
            Ok(_) => {}
        }
    }

    /// Every entry was read: what is left unexplained, and what the
    /// checkpoints and stored subtree hashes say beyond the log's end.
    fn end_of_log(&mut self, size: u64) -> Result<(), SourceError> {
        let report = &mut self.report;
        for i in self.unexplained.iter().take(100) {
            report.problem(
                Some(*i),
                format!("entry {i} has no bytes, and no content_erased entry names it: it was removed, not erased"),
            );
        }
        if let Some(&first) = self.withheld.first() {
            report.problem(
                Some(first),
                format!(
                    "{} entries were withheld by the source (from entry {first}): read the log with an auditor's token, or accept them by their hashes (--accept-withheld)",
                    self.withheld.len(),
                ),
            );
        }
        // Checkpoints signed for more entries than the log holds: truncation.
        loop {
            self.feed.fill(self.src, self.opts, report)?;
            let Some((s, _)) = self.feed.pending.pop_front() else {
                break;
            };
            report.problem(
                Some(size),
                format!("a checkpoint is signed for {s} entries but the log holds {size}: entries were removed"),
            );
        }
        if self.stored.available {
            if let Some((l, i, _)) = self.stored.queue.front() {
                report.problem(
                    None,
                    format!(
                        "the stored tree has a subtree hash (level {l}, index {i}) beyond the log"
                    ),
                );
            }
        }
        Ok(())
    }

    fn finish(self) -> Report {
        finish(self.report, self.frontier, self.feed.last, self.opts)
    }
}

/// Checkpoints read ahead (their signatures checked) and compared with the
/// recomputed tree as it reaches each one's size.
#[derive(Default)]
struct Feed {
    pending: VecDeque<(u64, SignedCheckpoint)>,
    next_from: u64,
    done: bool,
    /// The largest size whose checkpoint matched the recomputed tree.
    last_good_size: u64,
    /// The last checkpoint reached.
    last: Option<SignedCheckpoint>,
}

impl Feed {
    /// Compare every checkpoint of the tree's current size, reading more
    /// ahead when few are left.
    fn advance(
        &mut self,
        src: &dyn Source,
        opts: &Options<'_>,
        frontier: &Frontier,
        report: &mut Report,
    ) -> Result<(), SourceError> {
        self.reach(frontier, report);
        if self.pending.len() < 4 {
            self.fill(src, opts, report)?;
            self.reach(frontier, report);
        }
        Ok(())
    }

    fn reach(&mut self, frontier: &Frontier, report: &mut Report) {
        while let Some(&(s, _)) = self.pending.front() {
            if s > frontier.size {
                break;
            }
            let Some((s, sc)) = self.pending.pop_front() else {
                break;
            };
            if s < frontier.size {
                report.problem(
                    None,
                    format!("checkpoint of size {s} was not reached in order"),
                );
                continue;
            }
            if sc.checkpoint.root == frontier.root() {
                self.last_good_size = s;
            } else {
                report.problem(
                    Some(self.last_good_size),
                    format!(
                        "signed checkpoint of size {s} does not match the recomputed tree: an entry in {}..{s} was changed after it was signed",
                        self.last_good_size
                    ),
                );
            }
            report.largest_checkpoint = Some(s);
            self.last = Some(sc);
        }
    }

    fn fill(
        &mut self,
        src: &dyn Source,
        opts: &Options<'_>,
        report: &mut Report,
    ) -> Result<(), SourceError> {
        if self.done || self.pending.len() > 16 {
            return Ok(());
        }
        let batch = src.checkpoints(self.next_from, 256)?;
        if batch.is_empty() {
            self.done = true;
        }
        for (stored_size, note) in batch {
            self.next_from = stored_size + 1;
            report.checkpoints += 1;
            let mut verified = SignedCheckpoint::verify(&note, &opts.log_key);
            for k in &opts.other_log_keys {
                if verified.is_ok() {
                    break;
                }
                if let Ok(sc) = SignedCheckpoint::verify(&note, k) {
                    verified = Ok(sc);
                }
            }
            match verified {
                Ok(sc) if sc.checkpoint.size != stored_size => report.problem(
                    None,
                    format!(
                        "checkpoint stored as size {stored_size} names size {}",
                        sc.checkpoint.size
                    ),
                ),
                Ok(sc) => {
                    if !opts.witnesses.is_empty()
                        && opts.witnesses.iter().all(|w| sc.note.is_signed_by(w))
                    {
                        report.cosigned_checkpoints += 1;
                    }
                    self.pending.push_back((stored_size, sc));
                }
                Err(e) => report.problem(
                    None,
                    format!("checkpoint of size {stored_size} fails verification: {e}"),
                ),
            }
        }
        Ok(())
    }
}

fn finish(
    mut report: Report,
    frontier: Frontier,
    last: Option<SignedCheckpoint>,
    opts: &Options<'_>,
) -> Report {
    report.root = b64(&frontier.root());
    if !opts.witnesses.is_empty() {
        match &last {
            None => report.problem(None, "no checkpoint to carry witness cosignatures"),
            Some(sc) => {
                if let Err(e) = sc.require_cosigners(&opts.witnesses) {
                    report.problem(
                        None,
                        format!(
                            "the latest checkpoint (size {}) lacks a required cosignature: {e}",
                            sc.checkpoint.size
                        ),
                    );
                }
            }
        }
    }
    report
}

/// The index a `content_erased` entry names, read from its leaf without a
/// full parse (its canonical JSON ends with its type): the check runs on
/// every leaf.
pub(crate) fn erasure_named(leaf: &[u8]) -> Option<u64> {
    if !leaf.ends_with(b"\"type\":\"content_erased\",\"v\":1}") {
        return None;
    }
    match writ_log::Entry::from_leaf(leaf) {
        Ok(writ_log::Entry::ContentErased { index, .. }) => Some(index),
        _ => None,
    }
}
