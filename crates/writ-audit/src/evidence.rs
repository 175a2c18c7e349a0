//! Evidence bundles: one self-contained JSON file proving a range of log
//! entries, verifiable with no server and no data dir. The format is
//! documented in `docs/spec/log.md` ("Evidence bundles").

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use writ_artifact::{Jwks, KeyRing};
use writ_log::content::{Content, SALT_BYTES};
use writ_log::merkle::{verify_consistency, verify_inclusion};
use writ_log::note::{NoteVerifier, SignedCheckpoint};
use writ_log::{leaf_hash, Entry, Hash};
use writ_policy::SignedBundle;

use crate::{b64, Replayer, Report, Source, SourceError};

/// The `format` of version 1.
pub const FORMAT_V1: &str = "writ.evidence.v1";
/// Most entries one bundle holds.
pub const EVIDENCE_ENTRIES_MAX: u64 = 1_000_000;

/// A source that can also prove (a store or a server).
pub trait ProofSource: Source {
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, SourceError>;
    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, SourceError>;
    /// The largest signed checkpoint `(size, note)`.
    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, SourceError>;
}

/// Why [`build`] made no bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// The source could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("empty range {from}..{to}")]
    EmptyRange { from: u64, to: u64 },
    #[error("{entries} entries; one bundle holds at most {max}", max = EVIDENCE_ENTRIES_MAX)]
    TooManyEntries { entries: u64 },
    #[error("no signed checkpoint covers entry {entry} yet; publish one (POST /v1/log/checkpoint) and retry")]
    NoCheckpoint { entry: u64 },
    #[error("the checkpoint of size {size} fails verification: {error}")]
    Checkpoint { size: u64, error: String },
    #[error("this source gives no request contents (an auditor's token is needed)")]
    NoContents,
    #[error("stored bundle {hash}: {error}")]
    Bundle { hash: String, error: String },
    #[error("entry {0} has no bytes and no hash")]
    NoBytes(u64),
    #[error("entry {0} was erased; export a range that also holds the content_erased entry naming it (a later --to)")]
    ErasedUnnamed(u64),
}

/// Why [`verify`] found no evidence bundle to verify at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("format {0:?} is not {v1:?}", v1 = FORMAT_V1)]
    Format(String),
    #[error("log_key: {0}")]
    LogKey(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub format: String,
    /// The log's origin (first line of its checkpoints).
    pub origin: String,
    /// The log's C2SP verifier key.
    pub log_key: String,
    /// Verifier keys of witnesses whose cosignatures the checkpoint carries.
    pub witness_keys: Vec<String>,
    /// Keys that signed writs and policy bundles (JWK sets).
    pub writ_keys: Jwks,
    pub policy_keys: Jwks,
    /// The entries proved: `from..to` (end exclusive).
    pub from: u64,
    pub to: u64,
    /// The signed checkpoint (C2SP signed note) every proof leads to; its
    /// size is at least `to`.
    pub checkpoint: String,
    /// Earlier signed checkpoints, each with its consistency proof to `checkpoint`.
    pub earlier_checkpoints: Vec<EarlierCheckpoint>,
    pub entries: Vec<EvidenceEntry>,
    /// Signed policy bundles named by the decisions, by hash.
    pub bundles: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceEntry {
    pub index: u64,
    /// Standard base64 of the exact leaf bytes; empty when the leaf's
    /// content was erased (then `leaf_hash` stands in for it).
    pub leaf: String,
    /// An erased leaf's hash (standard base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_hash: Option<String>,
    /// A sealed decision's salt and content (standard base64), in a bundle
    /// exported with them: they open its commitment, for replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// RFC 9162 inclusion proof in the checkpoint's tree (standard base64).
    pub proof: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlierCheckpoint {
    pub note: String,
    pub consistency: Vec<String>,
}

/// Keys the exporter knows.
pub struct Keys {
    pub log_key: NoteVerifier,
    pub witness_keys: Vec<NoteVerifier>,
    pub writ_keys: Jwks,
    pub policy_keys: Jwks,
}

/// Export entries `from..to` under the latest checkpoint that covers them;
/// `with_content`: with what the sealed decisions commit to (the source
/// must give it: an auditor's).
pub fn build(
    src: &dyn ProofSource,
    keys: Keys,
    from: u64,
    to: u64,
    with_content: bool,
) -> Result<Evidence, ExportError> {
    if from >= to {
        return Err(ExportError::EmptyRange { from, to });
    }
    if to - from > EVIDENCE_ENTRIES_MAX {
        return Err(ExportError::TooManyEntries { entries: to - from });
    }
    let first = src.checkpoints(to, 1)?.into_iter().next();
    let latest = src.latest_checkpoint()?.filter(|(n, _)| *n >= to);
    let Some((size, note)) = latest else {
        return Err(ExportError::NoCheckpoint { entry: to - 1 });
    };
    let sc =
        SignedCheckpoint::verify(&note, &keys.log_key).map_err(|e| ExportError::Checkpoint {
            size,
            error: e.to_string(),
        })?;
    let mut earlier = Vec::new();
    if let Some((first_size, first_note)) = first {
        if first_size != size {
            let proof = src.consistency_proof(first_size, size)?;
            earlier.push(EarlierCheckpoint {
                note: first_note,
                consistency: proof.iter().map(b64).collect(),
            });
        }
    }
    let mut entries = Vec::with_capacity((to - from) as usize);
    let mut bundles = BTreeMap::new();
    let mut start = from;
    while start < to {
        let end = (start + crate::CHUNK).min(to);
        let mut contents: BTreeMap<u64, Content> = BTreeMap::new();
        if with_content {
            contents = src
                .contents(start, end)?
                .ok_or(ExportError::NoContents)?
                .into_iter()
                .collect();
        }
        for leaf in src.leaves(start, end)? {
            if let Ok(Entry::Decision(d)) = Entry::from_leaf(&leaf.bytes) {
                if !d.policy.is_empty() && !bundles.contains_key(&d.policy) {
                    if let Some(json) = src.bundle(&d.policy)? {
                        let v: serde_json::Value =
                            serde_json::from_str(&json).map_err(|e| ExportError::Bundle {
                                hash: d.policy.clone(),
                                error: e.to_string(),
                            })?;
                        bundles.insert(d.policy.clone(), v);
                    }
                }
            }
            let content = contents.remove(&leaf.index);
            entries.push(EvidenceEntry {
                index: leaf.index,
                leaf: STANDARD.encode(&leaf.bytes),
                leaf_hash: match (leaf.bytes.is_empty(), leaf.stored_hash) {
                    (true, Some(h)) => Some(b64(&h)),
                    (true, None) => return Err(ExportError::NoBytes(leaf.index)),
                    _ => None,
                },
                salt: content.as_ref().map(|c| STANDARD.encode(c.salt)),
                content: content.map(|c| STANDARD.encode(c.bytes)),
                proof: src
                    .inclusion_proof(leaf.index, size)?
                    .iter()
                    .map(b64)
                    .collect(),
            });
        }
        start = end;
    }
    let named = erasures_named(&entries);
    if let Some(e) = entries
        .iter()
        .find(|e| e.leaf.is_empty() && !named.contains(&e.index))
    {
        return Err(ExportError::ErasedUnnamed(e.index));
    }
    Ok(Evidence {
        format: FORMAT_V1.into(),
        origin: sc.checkpoint.origin,
        log_key: keys.log_key.vkey(),
        witness_keys: keys.witness_keys.iter().map(NoteVerifier::vkey).collect(),
        writ_keys: keys.writ_keys,
        policy_keys: keys.policy_keys,
        from,
        to,
        checkpoint: note,
        earlier_checkpoints: earlier,
        entries,
        bundles,
    })
}

fn hash(s: &str) -> Option<Hash> {
    let raw = STANDARD.decode(s).ok()?;
    if STANDARD.encode(&raw) != s {
        return None;
    }
    raw.try_into().ok()
}

fn hashes(v: &[String]) -> Option<Vec<Hash>> {
    v.iter().map(|s| hash(s)).collect()
}

/// The entries `content_erased` entries among `entries` name: an erased
/// leaf must be named by one, otherwise it was removed, not erased.
fn erasures_named(entries: &[EvidenceEntry]) -> BTreeSet<u64> {
    entries
        .iter()
        .filter_map(|e| decode(&e.leaf))
        .filter_map(|b| crate::erasure_named(&b))
        .collect()
}

/// Verify an evidence bundle. `log_key` pins the log's key (otherwise the key
/// in the file is used, which proves integrity but not provenance: the report
/// says so). `Err` only for a file that is not an evidence bundle at all.
pub fn verify(
    ev: &Evidence,
    log_key: Option<&NoteVerifier>,
    witnesses: &[NoteVerifier],
    replay: bool,
) -> Result<Report, EvidenceError> {
    if ev.format != FORMAT_V1 {
        return Err(EvidenceError::Format(ev.format.clone()));
    }
    let mut r = Report::default();
    let key = pinned_key(ev, log_key, &mut r)?;
    let Some((size, root)) = check_checkpoints(ev, &key, witnesses, &mut r) else {
        return Ok(r);
    };
    if ev.to > size || ev.from >= ev.to || ev.entries.len() as u64 != ev.to - ev.from {
        r.problem(
            None,
            format!(
                "range {}..{} with {} entries does not fit a checkpoint of size {size}",
                ev.from,
                ev.to,
                ev.entries.len()
            ),
        );
    }
    let ring = check_bundles(ev, &mut r);
    let mut entries = Entries {
        ev,
        size,
        root,
        named: erasures_named(&ev.entries),
        replayer: match (ring, replay) {
            (Some(ring), true) => Some(Replayer::new(ring)),
            _ => None,
        },
    };
    for (k, e) in ev.entries.iter().enumerate() {
        entries.check(ev.from + k as u64, e, &mut r);
    }
    Ok(r)
}

/// The log key to check the checkpoints with: the pinned one (a finding if
/// the file names another), else the file's.
fn pinned_key(
    ev: &Evidence,
    log_key: Option<&NoteVerifier>,
    r: &mut Report,
) -> Result<NoteVerifier, EvidenceError> {
    let embedded =
        NoteVerifier::parse(&ev.log_key).map_err(|e| EvidenceError::LogKey(e.to_string()))?;
    Ok(match log_key {
        Some(k) => {
            if *k != embedded {
                r.problem(None, "the bundle's log key is not the pinned --log-key");
            }
            k.clone()
        }
        None => embedded,
    })
}

/// The signed checkpoint (its signature and required cosignatures) and the
/// earlier ones (each consistent with it): its size and root, or `None`
/// when it does not verify, and nothing else can be checked.
fn check_checkpoints(
    ev: &Evidence,
    key: &NoteVerifier,
    witnesses: &[NoteVerifier],
    r: &mut Report,
) -> Option<(u64, Hash)> {
    let sc = match SignedCheckpoint::verify(&ev.checkpoint, key) {
        Ok(sc) => sc,
        Err(e) => {
            r.problem(None, format!("the checkpoint fails verification: {e}"));
            return None;
        }
    };
    let size = sc.checkpoint.size;
    let root = sc.checkpoint.root;
    r.checkpoints = 1;
    r.largest_checkpoint = Some(size);
    r.root = b64(&root);
    if let Err(e) = sc.require_cosigners(witnesses) {
        r.problem(
            None,
            format!("the checkpoint lacks a required cosignature: {e}"),
        );
    } else if !witnesses.is_empty() {
        r.cosigned_checkpoints = 1;
    }
    for e in &ev.earlier_checkpoints {
        r.checkpoints += 1;
        match SignedCheckpoint::verify(&e.note, key) {
            Err(err) => r.problem(
                None,
                format!("an earlier checkpoint fails verification: {err}"),
            ),
            Ok(early) => {
                let ok = hashes(&e.consistency).is_some_and(|p| {
                    verify_consistency(
                        early.checkpoint.size,
                        size,
                        &early.checkpoint.root,
                        &root,
                        &p,
                    )
                });
                if !ok {
                    r.problem(
                        None,
                        format!(
                            "the checkpoint of size {} is not consistent with the one of size {size}",
                            early.checkpoint.size
                        ),
                    );
                }
            }
        }
    }
    Some((size, root))
}

/// Every policy bundle the file carries is the one its hash names and is
/// signed by a policy key the file lists, replay or not: a bundle is the
/// evidence of what the rules were. The policy keys, when they parse.
fn check_bundles(ev: &Evidence, r: &mut Report) -> Option<KeyRing> {
    let ring = match KeyRing::from_jwks(&ev.policy_keys) {
        Ok(ring) => Some(ring),
        Err(e) => {
            r.problem(None, format!("policy_keys: {e}"));
            None
        }
    };
    for (h, v) in &ev.bundles {
        let checked = serde_json::from_value::<SignedBundle>(v.clone())
            .map_err(|e| format!("not a signed bundle: {e}"))
            .and_then(|b| {
                if b.hash != *h {
                    return Err(format!("it names itself {}", b.hash));
                }
                match &ring {
                    Some(ring) => b.check(ring).map_err(|e| e.to_string()),
                    None => Err("no policy key to check its signature with".into()),
                }
            });
        match checked {
            Ok(()) => r.policy_bundles_checked += 1,
            Err(e) => r.problem(None, format!("policy bundle {h}: {e}")),
        }
    }
    ring
}

/// Checks each entry of a bundle against its signed checkpoint, and
/// replays its decisions.
struct Entries<'a> {
    ev: &'a Evidence,
    /// The signed checkpoint's size and root.
    size: u64,
    root: Hash,
    /// Indices a `content_erased` entry of the bundle names.
    named: BTreeSet<u64>,
    replayer: Option<Replayer>,
}

impl Entries<'_> {
    /// Entry `want`, given as `e`.
    fn check(&mut self, want: u64, e: &EvidenceEntry, r: &mut Report) {
        r.entries += 1;
        if e.index != want {
            r.problem(
                Some(want),
                format!("entry {want} is missing (found index {})", e.index),
            );
            return;
        }
        let Some(bytes) = self.included(want, e, r) else {
            return;
        };
        if bytes.is_empty() {
            r.leaves_without_bytes += 1;
            if !self.named.contains(&want) {
                r.problem(
                    Some(want),
                    format!("entry {want} has no bytes, and no content_erased entry of the bundle names it: it was removed, not erased"),
                );
            }
            return;
        }
        match Entry::from_leaf(&bytes) {
            Err(err) => r.problem(Some(want), format!("entry {want}: {err}")),
            Ok(Entry::Decision(d)) => self.decision(want, e, &d, r),
            Ok(_) if e.salt.is_some() || e.content.is_some() => r.problem(
                Some(want),
                format!("entry {want}: only a sealed decision has content"),
            ),
            Ok(_) => {}
        }
    }

    /// The entry's leaf bytes (empty when erased: its hash stands in for
    /// them), when its proof leads to the checkpoint's root.
    fn included(&self, want: u64, e: &EvidenceEntry, r: &mut Report) -> Option<Vec<u8>> {
        let Some(bytes) = decode(&e.leaf) else {
            r.problem(
                Some(want),
                format!("entry {want}: leaf is not canonical base64"),
            );
            return None;
        };
        let h = match (bytes.is_empty(), e.leaf_hash.as_deref().map(hash)) {
            (false, None) => leaf_hash(&bytes),
            (true, Some(Some(h))) => h,
            _ => {
                r.problem(
                    Some(want),
                    format!(
                        "entry {want}: give the leaf's bytes or, erased, its hash: one of them"
                    ),
                );
                return None;
            }
        };
        let included =
            hashes(&e.proof).is_some_and(|p| verify_inclusion(want, self.size, &h, &p, &self.root));
        if !included {
            r.problem(
                Some(want),
                format!("entry {want} is not included in the signed checkpoint (its bytes or proof were altered)"),
            );
            return None;
        }
        Some(bytes)
    }

    /// A decision: its bundle is in the file, its content (if given) opens
    /// its commitment, and it replays.
    fn decision(
        &mut self,
        want: u64,
        e: &EvidenceEntry,
        d: &writ_log::DecisionEntry,
        r: &mut Report,
    ) {
        let ev = self.ev;
        if !d.policy.is_empty() && !ev.bundles.contains_key(&d.policy) {
            r.problem(
                Some(want),
                format!(
                    "entry {want}: the policy bundle {} that decided is not in the evidence",
                    d.policy
                ),
            );
        }
        let content = match opening(e, d) {
            Ok(c) => c,
            Err(m) => {
                r.problem(Some(want), format!("entry {want}: {m}"));
                return;
            }
        };
        if let Some(rp) = self.replayer.as_mut() {
            let fetch = |h: &str| -> Result<Option<String>, SourceError> {
                Ok(ev.bundles.get(h).map(|v| v.to_string()))
            };
            let outcome = rp.replay(d, content.as_ref(), &fetch);
            r.replayed(want, outcome);
        }
    }
}

fn decode(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s).ok().filter(|b| STANDARD.encode(b) == s)
}

/// The content an evidence entry gives for sealed decision `d`, checked
/// against its commitment.
fn opening(e: &EvidenceEntry, d: &writ_log::DecisionEntry) -> Result<Option<Content>, String> {
    let (salt, content) = match (&e.salt, &e.content) {
        (None, None) => return Ok(None),
        (Some(s), Some(c)) => (s, c),
        _ => return Err("salt and content go together".into()),
    };
    let Some(committed) = &d.content else {
        return Err("only a sealed decision has content".into());
    };
    let salt: [u8; SALT_BYTES] = decode(salt)
        .and_then(|b| b.try_into().ok())
        .ok_or("salt is not 32 bytes of canonical base64")?;
    let bytes = decode(content).ok_or("content is not canonical base64")?;
    if &writ_log::content::commitment(&salt, &bytes) != committed {
        return Err("its content does not match the decision's commitment (altered)".into());
    }
    Ok(Some(Content { salt, bytes }))
}
