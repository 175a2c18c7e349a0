//! Publishing signed checkpoints of the log.
//!
//! **Invariant:** a checkpoint is signed only after the tree it names was
//! proved consistent with the previous signed checkpoint (read back from the
//! store and its signature checked). A failure is refused, logged at error
//! level and counted; the log keeps the last good checkpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use writ_artifact::{Clock, Jwk, WritKey};
use writ_log::merkle::{verify_consistency, ProofError};
use writ_log::note::{
    Checkpoint, Note, NoteError, NoteSigner, NoteVerifier, SignedCheckpoint, ALG_ED25519,
};
use writ_log::Entry;
use writ_store::{CheckpointRecord, KeyRecord, Op, Store, StoreError, Tx};

/// Why no checkpoint was published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("cannot read the tree: {0}")]
    Tree(#[from] ProofError),
    /// The stored tree does not extend the last signed checkpoint: the log
    /// (or its store) was rewritten. Nothing is signed.
    #[error("REFUSING TO SIGN: the tree of size {size} is not consistent with the signed checkpoint of size {previous}: {detail}")]
    Inconsistent {
        previous: u64,
        size: u64,
        detail: String,
    },
    /// A stored checkpoint fails its own verification.
    #[error("stored checkpoint of size {size} is invalid: {detail}")]
    BadStored { size: u64, detail: String },
}

/// A checkpoint the log published, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub record: CheckpointRecord,
    pub checkpoint: Checkpoint,
}

/// `first`, then every other log key `store` records, as verifiers under
/// `first`'s name (in a mesh each node signs checkpoints with its own key
/// while it leads).
pub fn stored_log_verifiers(
    store: &dyn Store,
    first: &NoteVerifier,
) -> Result<Vec<NoteVerifier>, StoreError> {
    let mut out = vec![first.clone()];
    for k in store.keys()? {
        if k.role != writ_store::KeyRole::Log {
            continue;
        }
        let v = serde_json::from_str::<Jwk>(&k.public_jwk)
            .map_err(|e| e.to_string())
            .and_then(|j| j.verifying_key().map_err(|e| e.to_string()))
            .and_then(|vk| {
                NoteVerifier::new(&first.name, ALG_ED25519, vk).map_err(|e| e.to_string())
            })
            .map_err(|e| StoreError::Integrity(format!("stored log key {}: {e}", k.kid)))?;
        if v.key != first.key {
            out.push(v);
        }
    }
    Ok(out)
}

/// Signs checkpoints of one log.
pub struct LogPublisher {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    signer: NoteSigner,
    /// The log key's JWK thumbprint.
    kid: String,
    serial: tokio::sync::Mutex<()>,
    /// The log key's record and `key_change` entry are known to be stored.
    key_recorded: AtomicBool,
}

impl LogPublisher {
    /// `origin` is the checkpoint's first line and the log key's name.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        origin: &str,
        key: WritKey,
    ) -> Result<LogPublisher, NoteError> {
        Ok(LogPublisher {
            kid: key.kid().to_owned(),
            signer: NoteSigner::new(origin, ALG_ED25519, key)?,
            store,
            clock,
            serial: tokio::sync::Mutex::new(()),
            key_recorded: AtomicBool::new(false),
        })
    }

    /// The log's verifier key.
    pub fn verifier(&self) -> &NoteVerifier {
        &self.signer.verifier
    }

    /// The latest stored checkpoint, its log signature checked.
    pub fn latest(&self) -> Result<Option<Published>, PublishError> {
        match self.store.latest_checkpoint()? {
            None => Ok(None),
            Some(r) => self.check_stored(r).map(Some),
        }
    }

    /// The log keys the store records (every node of a mesh signs with its
    /// own), this publisher's first.
    pub fn log_verifiers(&self) -> Result<Vec<NoteVerifier>, StoreError> {
        stored_log_verifiers(self.store.as_ref(), self.verifier())
    }

    fn check_stored(&self, record: CheckpointRecord) -> Result<Published, PublishError> {
        let mut verified = SignedCheckpoint::verify(&record.note, self.verifier());
        if verified.is_err() {
            // Signed by another node of the mesh?
            for v in self.log_verifiers()?.iter().skip(1) {
                if let Ok(sc) = SignedCheckpoint::verify(&record.note, v) {
                    verified = Ok(sc);
                    break;
                }
            }
        }
        let sc = verified.map_err(|e| PublishError::BadStored {
            size: record.size,
            detail: e.to_string(),
        })?;
        if sc.checkpoint.size != record.size {
            return Err(PublishError::BadStored {
                size: record.size,
                detail: format!("its note names size {}", sc.checkpoint.size),
            });
        }
        Ok(Published {
            record,
            checkpoint: sc.checkpoint,
        })
    }

    /// Sign and store a checkpoint of the current tree, unless the latest one
    /// already covers it; returns the latest checkpoint either way.
    pub async fn publish(&self) -> Result<Published, PublishError> {
        let _one = self.serial.lock().await;
        let out = self.publish_locked().await;
        if let Err(e) = &out {
            if matches!(
                e,
                PublishError::Inconsistent { .. } | PublishError::BadStored { .. }
            ) {
                tracing::error!(error = %e, "checkpoint refused");
            }
        }
        out
    }

    async fn publish_locked(&self) -> Result<Published, PublishError> {
        self.record_key_once().await?;
        let previous = self.latest()?;
        let size = self.store.log_size()?;
        if let Some(p) = &previous {
            if p.record.size == size {
                return Ok(p.clone());
            }
        }
        let root = self.store.tree_root(size)?;
        if let Some(p) = &previous {
            let inconsistent = |detail: String| PublishError::Inconsistent {
                previous: p.record.size,
                size,
                detail,
            };
            if p.record.size > size {
                return Err(inconsistent(
                    "the log is shorter than its checkpoint".into(),
                ));
            }
            let proof = self.store.consistency_proof(p.record.size, size)?;
            if !verify_consistency(p.record.size, size, &p.checkpoint.root, &root, &proof) {
                return Err(inconsistent("the consistency proof does not verify".into()));
            }
        }
        let checkpoint = Checkpoint {
            origin: self.verifier().name.clone(),
            size,
            root,
            extensions: vec![],
        };
        let text = checkpoint.text();
        let note = Note {
            sigs: vec![self.signer.sign(&text, 0)],
            text,
        };
        let record = CheckpointRecord {
            size,
            note: note.render(),
            time_ms: self.clock.now_unix_ms(),
        };
        self.store
            .submit(Tx::new(vec![Op::PutCheckpoint(record.clone())]))
            .await?;
        tracing::debug!(size, "checkpoint published");
        Ok(Published { record, checkpoint })
    }

    /// Make the log key part of the log: a key record and a `key_change`
    /// entry, the first time this key publishes.
    async fn record_key_once(&self) -> Result<(), PublishError> {
        if self.key_recorded.load(Ordering::Relaxed) {
            return Ok(());
        }
        let kid = self.kid.clone();
        if self
            .store
            .keys()?
            .iter()
            .any(|k| k.kid == kid && k.role == writ_store::KeyRole::Log)
        {
            self.key_recorded.store(true, Ordering::Relaxed);
            return Ok(());
        }
        let now = self.clock.now_unix_ms();
        let jwk = serde_json::to_string(&Jwk::from_verifying_key(&self.verifier().key))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let leaf = Entry::KeyChange {
            time_ms: now,
            by: "writ".into(),
            kid: kid.clone(),
            role: writ_store::KeyRole::Log.as_str().into(),
            status: writ_store::KeyStatus::Active.as_str().into(),
        }
        .to_leaf()
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        self.store
            .submit(Tx::new(vec![
                Op::PutKey(KeyRecord {
                    kid,
                    role: writ_store::KeyRole::Log,
                    public_jwk: jwk,
                    status: writ_store::KeyStatus::Active,
                    created_ms: now,
                    verify_until_ms: None,
                }),
                Op::Append { leaf },
            ]))
            .await?;
        self.key_recorded.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Add witness cosignatures (C2SP signature lines) to the stored
    /// checkpoint of `size`. Only lines that verify under one of `witnesses`
    /// are kept; returns how many were added.
    pub async fn add_cosignatures(
        &self,
        size: u64,
        lines: &str,
        witnesses: &[NoteVerifier],
    ) -> Result<usize, PublishError> {
        let _one = self.serial.lock().await;
        let Some(record) = self
            .store
            .checkpoints(size, 1)?
            .into_iter()
            .find(|c| c.size == size)
        else {
            return Ok(0);
        };
        let published = self.check_stored(record)?;
        let mut note =
            Note::parse(&published.record.note).map_err(|e| PublishError::BadStored {
                size,
                detail: e.to_string(),
            })?;
        let offered = Note::parse(&format!("{}\n{lines}", note.text)).map_err(|e| {
            PublishError::BadStored {
                size,
                detail: format!("witness answer: {e}"),
            }
        })?;
        let mut added = 0;
        for sig in offered.sigs {
            let one = Note {
                text: note.text.clone(),
                sigs: vec![sig.clone()],
            };
            if witnesses.iter().any(|w| one.is_signed_by(w)) && !note.sigs.contains(&sig) {
                note.add(sig);
                added += 1;
            }
        }
        if added > 0 {
            self.store
                .submit(Tx::new(vec![Op::Cosign {
                    size,
                    note: note.render(),
                }]))
                .await?;
        }
        Ok(added)
    }
}
