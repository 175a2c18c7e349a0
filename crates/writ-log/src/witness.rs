//! The witness's decision (C2SP `tlog-witness` `add-checkpoint`), as a pure
//! function of its remembered state: verify the log's signature, the old
//! size, the consistency proof, then cosign.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::merkle::verify_consistency;
use crate::note::{Checkpoint, Note, NoteSigner, NoteVerifier};
use crate::Hash;

/// Most consistency proof lines a request may carry (the spec's limit).
pub const PROOF_LINES_MAX: usize = 63;

/// What a witness remembers per log origin: the latest checkpoint it cosigned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessState {
    pub logs: BTreeMap<String, Seen>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub size: u64,
    /// Standard base64 of the root.
    pub root: String,
}

/// A refusal, with the HTTP status the protocol gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// The body (for 409 on an old-size mismatch: the size and a newline).
    pub body: String,
    pub content_type: &'static str,
}

fn refuse(status: u16, m: impl Into<String>) -> Refusal {
    Refusal {
        status,
        body: format!("{}\n", m.into()),
        content_type: "text/plain; charset=utf-8",
    }
}

/// Handle one `add-checkpoint` body. On success returns the cosignature
/// line(s) and the state to persist *before* answering.
pub fn add_checkpoint(
    state: &WitnessState,
    logs: &[NoteVerifier],
    signer: &NoteSigner,
    body: &str,
    now_unix_secs: u64,
) -> Result<(String, WitnessState), Refusal> {
    let (head, note_text) = body.split_once("\n\n").ok_or_else(|| {
        refuse(
            400,
            "expected an old size line, proof lines, a blank line, then the checkpoint",
        )
    })?;
    let mut lines = head.split('\n');
    let old_line = lines.next().unwrap_or_default();
    let old: u64 = old_line
        .strip_prefix("old ")
        .and_then(|n| n.parse().ok().filter(|v: &u64| v.to_string() == n))
        .ok_or_else(|| refuse(400, format!("bad old size line {old_line:?}")))?;
    let mut proof: Vec<Hash> = Vec::new();
    for l in lines {
        let h = STANDARD
            .decode(l)
            .ok()
            .and_then(|b| Hash::try_from(b).ok())
            .ok_or_else(|| refuse(400, format!("proof line {l:?} is not a base64 hash")))?;
        proof.push(h);
        if proof.len() > PROOF_LINES_MAX {
            return Err(refuse(400, "more than 63 proof lines"));
        }
    }
    let note = Note::parse(note_text).map_err(|e| refuse(400, e.to_string()))?;
    let cp = Checkpoint::parse(&note.text).map_err(|e| refuse(400, e.to_string()))?;
    let known: Vec<&NoteVerifier> = logs.iter().filter(|k| k.name == cp.origin).collect();
    if known.is_empty() {
        return Err(refuse(404, format!("unknown log origin {:?}", cp.origin)));
    }
    if !known.iter().any(|k| note.is_signed_by(k)) {
        return Err(refuse(403, "no signature by a trusted key of this log"));
    }
    if old > cp.size {
        return Err(refuse(
            400,
            format!("old size {old} is beyond the checkpoint's {}", cp.size),
        ));
    }
    let seen = state.logs.get(&cp.origin);
    let seen_size = seen.map_or(0, |s| s.size);
    if old != seen_size {
        return Err(Refusal {
            status: 409,
            body: format!("{seen_size}\n"),
            content_type: "text/x.tlog.size",
        });
    }
    if let Some(s) = seen {
        let seen_root: Hash = STANDARD
            .decode(&s.root)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| refuse(500, "the witness's own state is corrupt"))?;
        if old == cp.size {
            if seen_root != cp.root {
                return Err(refuse(409, "same size, different root: the log forked"));
            }
        } else if !verify_consistency(old, cp.size, &seen_root, &cp.root, &proof) {
            return Err(refuse(422, format!("the checkpoint of size {} is not consistent with the one of size {old} this witness cosigned", cp.size)));
        }
    } else if !proof.is_empty() {
        return Err(refuse(
            422,
            "the proof must be empty when the old size is 0",
        ));
    }
    let mut next = state.clone();
    next.logs.insert(
        cp.origin.clone(),
        Seen {
            size: cp.size,
            root: STANDARD.encode(cp.root),
        },
    );
    Ok((signer.sign(&note.text, now_unix_secs).line(), next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, root, MemoryTree};
    use crate::note::{ALG_COSIGNATURE_V1, ALG_ED25519};
    use writ_artifact::{Entropy, WritKey};

    struct Fill(u8);
    impl Entropy for Fill {
        fn fill(&self, b: &mut [u8]) -> Result<(), writ_artifact::EntropyError> {
            b.fill(self.0);
            Ok(())
        }
    }

    struct Log {
        signer: NoteSigner,
        tree: MemoryTree,
    }

    impl Log {
        fn note(&self, size: u64) -> String {
            let cp = Checkpoint {
                origin: "log.example/a".into(),
                size,
                root: root(&self.tree, size).unwrap(),
                extensions: vec![],
            };
            let text = cp.text();
            Note {
                sigs: vec![self.signer.sign(&text, 0)],
                text,
            }
            .render()
        }
        fn body(&self, old: u64, size: u64) -> String {
            let mut b = format!("old {old}\n");
            for h in consistency_proof(&self.tree, old, size).unwrap() {
                b.push_str(&STANDARD.encode(h));
                b.push('\n');
            }
            b.push('\n');
            b.push_str(&self.note(size));
            b
        }
    }

    fn setup() -> (Log, NoteSigner) {
        let leaves: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i]).collect();
        let log = Log {
            signer: NoteSigner::new(
                "log.example/a",
                ALG_ED25519,
                WritKey::generate(&Fill(1)).unwrap(),
            )
            .unwrap(),
            tree: MemoryTree::from_leaves(leaves.iter().map(Vec::as_slice)),
        };
        let w = NoteSigner::new(
            "witness.example/w",
            ALG_COSIGNATURE_V1,
            WritKey::generate(&Fill(2)).unwrap(),
        )
        .unwrap();
        (log, w)
    }

    #[test]
    fn cosigns_consistent_checkpoints_and_remembers() {
        let (log, w) = setup();
        let keys = [log.signer.verifier.clone()];
        let s0 = WitnessState::default();
        let (line, s1) = add_checkpoint(&s0, &keys, &w, &log.body(0, 5), 100).unwrap();
        let mut n = Note::parse(&log.note(5)).unwrap();
        n.sigs
            .extend(Note::parse(&format!("{}\n{line}", n.text)).unwrap().sigs);
        assert_eq!(n.verified_by(&w.verifier), vec![Some(100)]);
        let (_, s2) = add_checkpoint(&s1, &keys, &w, &log.body(5, 13), 101).unwrap();
        assert_eq!(s2.logs["log.example/a"].size, 13);
        // Same size again is fine; old size behind the witness is 409 with its size.
        add_checkpoint(&s2, &keys, &w, &log.body(13, 13), 102).unwrap();
        let e = add_checkpoint(&s2, &keys, &w, &log.body(5, 20), 103).unwrap_err();
        assert_eq!(
            (e.status, e.body.as_str(), e.content_type),
            (409, "13\n", "text/x.tlog.size")
        );
    }

    #[test]
    fn refuses_forks_bad_proofs_unknown_logs_and_bad_signatures() {
        let (log, w) = setup();
        let keys = [log.signer.verifier.clone()];
        let (_, s1) =
            add_checkpoint(&WitnessState::default(), &keys, &w, &log.body(0, 8), 1).unwrap();
        // A forked log: different leaves, same origin and key.
        let forked = Log {
            signer: NoteSigner::new(
                "log.example/a",
                ALG_ED25519,
                WritKey::generate(&Fill(1)).unwrap(),
            )
            .unwrap(),
            tree: MemoryTree::from_leaves(
                (0..20u8)
                    .map(|i| vec![i ^ 0x80])
                    .collect::<Vec<_>>()
                    .iter()
                    .map(Vec::as_slice),
            ),
        };
        assert_eq!(
            add_checkpoint(&s1, &keys, &w, &forked.body(8, 12), 2)
                .unwrap_err()
                .status,
            422
        );
        assert_eq!(
            add_checkpoint(&s1, &keys, &w, &forked.body(8, 8), 2)
                .unwrap_err()
                .status,
            409
        );
        // Unknown origin: 404; a key the witness does not trust: 403.
        assert_eq!(
            add_checkpoint(&s1, &[], &w, &log.body(8, 12), 2)
                .unwrap_err()
                .status,
            404
        );
        let other = NoteSigner::new(
            "log.example/a",
            ALG_ED25519,
            WritKey::generate(&Fill(9)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            add_checkpoint(&s1, &[other.verifier], &w, &log.body(8, 12), 2)
                .unwrap_err()
                .status,
            403
        );
        // Malformed: 400.
        assert_eq!(
            add_checkpoint(&s1, &keys, &w, "old 08\n\nx", 2)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            add_checkpoint(
                &s1,
                &keys,
                &w,
                &log.body(8, 12).replacen("old 8", "old 13", 1),
                2
            )
            .unwrap_err()
            .status,
            400
        );
    }
}
