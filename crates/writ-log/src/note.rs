//! C2SP `signed-note`, `tlog-checkpoint` and `tlog-cosignature` (Ed25519).
//!
//! A signed note is UTF-8 text ending in a newline, a blank line, then one or
//! more signature lines `— <name> <base64(key id || signature)>`. A checkpoint
//! is a note whose text is `origin\nsize\nbase64(root)\n` plus optional
//! extension lines. The log signs checkpoints with a *note* key (signature
//! type `0x01`: the signature is Ed25519 over the text); witnesses add
//! *cosignatures* (type `0x04`: Ed25519 over `cosignature/v1\ntime T\n` and the
//! text, prefixed by the 8-byte big-endian timestamp T).
//!
//! Parsing is strict: anything the specifications do not allow is an error,
//! never skipped. Signatures by keys a verifier does not know are ignored, as
//! the specification requires; a verifier decides which keys it needs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use writ_artifact::WritKey;

use crate::Hash;

/// Longest note accepted (text and signatures).
pub const NOTE_BYTES_MAX: usize = 64 * 1024;
/// Most signature lines accepted on one note.
pub const NOTE_SIGS_MAX: usize = 100;
/// The em dash that starts a signature line.
const DASH: &str = "\u{2014} ";

/// Signature type byte of a plain Ed25519 note signature.
pub const ALG_ED25519: u8 = 0x01;
/// Signature type byte of an Ed25519 `cosignature/v1`.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    Malformed(String),
    #[error("malformed checkpoint: {0}")]
    Checkpoint(String),
    #[error("malformed verifier key: {0}")]
    Key(String),
    #[error("no valid signature by {0}")]
    Unsigned(String),
}

fn malformed(m: impl Into<String>) -> NoteError {
    NoteError::Malformed(m.into())
}

/// A key name: non-empty, no whitespace, no `+` (C2SP signed-note). A log's
/// origin is the name of its key, so the same rule holds for origins.
pub fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(malformed(format!(
            "key name {name:?} must be non-empty without spaces or '+'"
        )));
    }
    Ok(())
}

/// `SHA-256(name || 0x0A || alg || public key)[:4]` as a big-endian u32.
pub fn key_id(name: &str, alg: u8, key: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', alg]);
    h.update(key.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSig {
    pub name: String,
    pub key_id: u32,
    /// The bytes after the key id (a 64-byte signature, or 8-byte timestamp
    /// and signature for a cosignature).
    pub sig: Vec<u8>,
}

impl NoteSig {
    /// The line, with its final newline.
    pub fn line(&self) -> String {
        let mut b = self.key_id.to_be_bytes().to_vec();
        b.extend_from_slice(&self.sig);
        format!("{DASH}{} {}\n", self.name, STANDARD.encode(b))
    }
}

/// A parsed signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in a newline.
    pub text: String,
    pub sigs: Vec<NoteSig>,
}

impl Note {
    /// Parse a signed note strictly.
    pub fn parse(s: &str) -> Result<Note, NoteError> {
        if s.len() > NOTE_BYTES_MAX {
            return Err(malformed(format!(
                "{} bytes; at most {NOTE_BYTES_MAX}",
                s.len()
            )));
        }
        if s.chars().any(|c| c.is_control() && c != '\n') {
            return Err(malformed("control characters other than newline"));
        }
        let split = s
            .rfind("\n\n")
            .ok_or_else(|| malformed("no blank line before the signatures"))?;
        let text = &s[..split + 1];
        let sigs_text = &s[split + 2..];
        if !sigs_text.ends_with('\n') || sigs_text.len() < 2 {
            return Err(malformed("signature lines must end with a newline"));
        }
        let mut sigs = Vec::new();
        for line in sigs_text[..sigs_text.len() - 1].split('\n') {
            let rest = line.strip_prefix(DASH).ok_or_else(|| {
                malformed(format!("signature line {line:?} must start with '— '"))
            })?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| malformed(format!("signature line {line:?} has no signature")))?;
            check_name(name)?;
            let raw = STANDARD
                .decode(b64)
                .map_err(|e| malformed(format!("signature of {name} is not base64: {e}")))?;
            if STANDARD.encode(&raw) != b64 || raw.len() < 5 {
                return Err(malformed(format!(
                    "signature of {name} is not canonical base64 of a key id and signature"
                )));
            }
            sigs.push(NoteSig {
                name: name.to_owned(),
                key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
                sig: raw[4..].to_vec(),
            });
            if sigs.len() > NOTE_SIGS_MAX {
                return Err(malformed(format!("more than {NOTE_SIGS_MAX} signatures")));
            }
        }
        Ok(Note {
            text: text.to_owned(),
            sigs,
        })
    }

    /// The note as text: the text, a blank line, the signature lines.
    pub fn render(&self) -> String {
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.sigs {
            s.push_str(&sig.line());
        }
        s
    }

    /// The signatures by `v` that verify (there may be several, e.g. several
    /// cosignatures at different times). For a cosigner key, each comes with
    /// its timestamp.
    pub fn verified_by(&self, v: &NoteVerifier) -> Vec<Option<u64>> {
        self.sigs
            .iter()
            .filter(|s| s.name == v.name && s.key_id == v.key_id)
            .filter_map(|s| v.check(&self.text, &s.sig))
            .collect()
    }

    /// Whether `v` signed this note (at least one valid signature).
    pub fn is_signed_by(&self, v: &NoteVerifier) -> bool {
        !self.verified_by(v).is_empty()
    }

    /// Add `sig` unless an identical line is present.
    pub fn add(&mut self, sig: NoteSig) {
        if !self.sigs.contains(&sig) {
            self.sigs.push(sig);
        }
    }
}

/// A public key that checks note signatures: a log key (`0x01`) or a witness
/// cosigner key (`0x04`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    pub name: String,
    pub alg: u8,
    pub key_id: u32,
    pub key: VerifyingKey,
}

impl NoteVerifier {
    pub fn new(name: &str, alg: u8, key: VerifyingKey) -> Result<NoteVerifier, NoteError> {
        check_name(name).map_err(|e| NoteError::Key(e.to_string()))?;
        if alg != ALG_ED25519 && alg != ALG_COSIGNATURE_V1 {
            return Err(NoteError::Key(format!(
                "signature type {alg:#04x} is not supported"
            )));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            alg,
            key_id: key_id(name, alg, &key),
            key,
        })
    }

    /// Parse a verifier key string `name+hexkeyid+base64(alg || key)`.
    pub fn parse(vkey: &str) -> Result<NoteVerifier, NoteError> {
        let bad = |m: &str| NoteError::Key(format!("{vkey:?}: {m}"));
        let mut parts = vkey.trim().splitn(3, '+');
        let (name, id, b64) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(b)) => (n, i, b),
            _ => return Err(bad("expected name+keyid+base64key")),
        };
        let raw = STANDARD.decode(b64).map_err(|_| bad("key is not base64"))?;
        if raw.len() != 33 {
            return Err(bad("key must be a type byte and 32 bytes"));
        }
        let mut k = [0u8; 32];
        k.copy_from_slice(&raw[1..]);
        let key = VerifyingKey::from_bytes(&k).map_err(|_| bad("not an Ed25519 public key"))?;
        let v = NoteVerifier::new(name, raw[0], key)?;
        if id.len() != 8 || u32::from_str_radix(id, 16).ok() != Some(v.key_id) {
            return Err(bad("key id does not match the name and key"));
        }
        Ok(v)
    }

    /// The verifier key string.
    pub fn vkey(&self) -> String {
        let mut raw = vec![self.alg];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, STANDARD.encode(raw))
    }

    /// Check one signature over `text`; a cosignature yields its timestamp.
    fn check(&self, text: &str, sig: &[u8]) -> Option<Option<u64>> {
        match self.alg {
            ALG_ED25519 => {
                let s = Signature::from_slice(sig).ok()?;
                self.key.verify_strict(text.as_bytes(), &s).ok()?;
                Some(None)
            }
            _ => {
                if sig.len() != 72 {
                    return None;
                }
                let mut t = [0u8; 8];
                t.copy_from_slice(&sig[..8]);
                let time = u64::from_be_bytes(t);
                if time > i64::MAX as u64 {
                    return None;
                }
                let s = Signature::from_slice(&sig[8..]).ok()?;
                self.key
                    .verify_strict(cosigned_message(time, text).as_bytes(), &s)
                    .ok()?;
                Some(Some(time))
            }
        }
    }
}

fn cosigned_message(time: u64, text: &str) -> String {
    format!("cosignature/v1\ntime {time}\n{text}")
}

/// A signer of notes: the log (`0x01`) or a witness (`0x04`).
pub struct NoteSigner {
    pub verifier: NoteVerifier,
    key: WritKey,
}

impl NoteSigner {
    pub fn new(name: &str, alg: u8, key: WritKey) -> Result<NoteSigner, NoteError> {
        Ok(NoteSigner {
            verifier: NoteVerifier::new(name, alg, key.verifying_key())?,
            key,
        })
    }

    /// Sign `text`; a cosigner stamps it with `time` (POSIX seconds).
    pub fn sign(&self, text: &str, time: u64) -> NoteSig {
        let sig = if self.verifier.alg == ALG_ED25519 {
            self.key.sign(text.as_bytes()).to_vec()
        } else {
            let mut b = time.to_be_bytes().to_vec();
            b.extend_from_slice(&self.key.sign(cosigned_message(time, text).as_bytes()));
            b
        };
        NoteSig {
            name: self.verifier.name.clone(),
            key_id: self.verifier.key_id,
            sig,
        }
    }
}

/// A C2SP `tlog-checkpoint` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parse a note text as a checkpoint.
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let bad = |m: String| NoteError::Checkpoint(m);
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("must end with a newline".into()))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(bad("empty origin line".into()));
        }
        let size_s = lines
            .next()
            .ok_or_else(|| bad("no tree size line".into()))?;
        let size: u64 = size_s
            .parse()
            .ok()
            .filter(|n: &u64| n.to_string() == size_s)
            .ok_or_else(|| {
                bad(format!(
                    "tree size {size_s:?} is not a decimal without leading zeros"
                ))
            })?;
        let root_s = lines
            .next()
            .ok_or_else(|| bad("no root hash line".into()))?;
        let raw = STANDARD
            .decode(root_s)
            .map_err(|_| bad(format!("root hash {root_s:?} is not base64")))?;
        let root: Hash = raw
            .try_into()
            .map_err(|_| bad("root hash is not 32 bytes".into()))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("empty extension line".into()));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

/// A checkpoint note parsed and checked: the log's signature verifies and the
/// origin is the log's key name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: Note,
}

impl SignedCheckpoint {
    /// Parse `s` and require a valid signature by `log`.
    pub fn verify(s: &str, log: &NoteVerifier) -> Result<SignedCheckpoint, NoteError> {
        let note = Note::parse(s)?;
        let checkpoint = Checkpoint::parse(&note.text)?;
        if checkpoint.origin != log.name {
            return Err(NoteError::Checkpoint(format!(
                "origin {:?} is not the log key's name {:?}",
                checkpoint.origin, log.name
            )));
        }
        if !note.is_signed_by(log) {
            return Err(NoteError::Unsigned(log.vkey()));
        }
        Ok(SignedCheckpoint { checkpoint, note })
    }

    /// Require a cosignature by each of `witnesses`.
    pub fn require_cosigners(&self, witnesses: &[NoteVerifier]) -> Result<(), NoteError> {
        for w in witnesses {
            if !self.note.is_signed_by(w) {
                return Err(NoteError::Unsigned(w.vkey()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use writ_artifact::Entropy;

    struct Seq(u8);
    impl Entropy for Seq {
        fn fill(&self, buf: &mut [u8]) -> Result<(), writ_artifact::EntropyError> {
            buf.fill(self.0);
            Ok(())
        }
    }

    fn signer(name: &str, alg: u8, seed: u8) -> NoteSigner {
        NoteSigner::new(name, alg, WritKey::generate(&Seq(seed)).unwrap()).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "writ.example/log".into(),
            size: 20852163,
            root: [7u8; 32],
            extensions: vec![],
        }
    }

    #[test]
    fn checkpoint_note_round_trips_and_verifies() {
        let log = signer("writ.example/log", ALG_ED25519, 1);
        let text = checkpoint().text();
        assert_eq!(
            text,
            "writ.example/log\n20852163\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"
        );
        let note = Note {
            text: text.clone(),
            sigs: vec![log.sign(&text, 0)],
        };
        let s = note.render();
        let parsed = SignedCheckpoint::verify(&s, &log.verifier).unwrap();
        assert_eq!(parsed.checkpoint, checkpoint());
        // The verifier key string round-trips and pins the key id.
        let vk = log.verifier.vkey();
        assert_eq!(NoteVerifier::parse(&vk).unwrap(), log.verifier);
        let wrong_id = format!(
            "writ.example/log+00000000+{}",
            vk.rsplit('+').next().unwrap()
        );
        assert!(NoteVerifier::parse(&wrong_id).is_err());
        // Another key, or an edited byte, is refused.
        let other = signer("writ.example/log", ALG_ED25519, 2);
        assert!(SignedCheckpoint::verify(&s, &other.verifier).is_err());
        let edited = s.replacen("20852163", "20852164", 1);
        assert!(SignedCheckpoint::verify(&edited, &log.verifier).is_err());
    }

    #[test]
    fn key_id_follows_the_spec() {
        let s = signer("example.com/log", ALG_ED25519, 3);
        let mut h = Sha256::new();
        h.update(b"example.com/log\n\x01");
        h.update(s.verifier.key.as_bytes());
        let d = h.finalize();
        assert_eq!(s.verifier.key_id.to_be_bytes(), [d[0], d[1], d[2], d[3]]);
        let w = signer("example.com/log", ALG_COSIGNATURE_V1, 3);
        assert_ne!(w.verifier.key_id, s.verifier.key_id);
    }

    #[test]
    fn cosignatures_carry_a_timestamp_and_cover_the_text() {
        let log = signer("writ.example/log", ALG_ED25519, 1);
        let wit = signer("witness.example/w1", ALG_COSIGNATURE_V1, 4);
        let text = checkpoint().text();
        let mut note = Note {
            text: text.clone(),
            sigs: vec![log.sign(&text, 0)],
        };
        note.add(wit.sign(&text, 1_679_315_147));
        let sc = SignedCheckpoint::verify(&note.render(), &log.verifier).unwrap();
        assert_eq!(
            sc.note.verified_by(&wit.verifier),
            vec![Some(1_679_315_147)]
        );
        sc.require_cosigners(std::slice::from_ref(&wit.verifier))
            .unwrap();
        // A cosignature is not a log signature, even with the same key bytes.
        let wit_as_log =
            NoteVerifier::new("witness.example/w1", ALG_ED25519, wit.verifier.key).unwrap();
        assert!(!sc.note.is_signed_by(&wit_as_log));
        // A missing witness is named.
        let other = signer("witness.example/w2", ALG_COSIGNATURE_V1, 5);
        assert!(matches!(
            sc.require_cosigners(&[other.verifier]),
            Err(NoteError::Unsigned(_))
        ));
    }

    #[test]
    fn strict_parsing() {
        let log = signer("writ.example/log", ALG_ED25519, 1);
        let text = checkpoint().text();
        let good = Note {
            text: text.clone(),
            sigs: vec![log.sign(&text, 0)],
        }
        .render();
        SignedCheckpoint::verify(&good, &log.verifier).unwrap();
        for bad in [
            good.replace("\n\n", "\n"),                // no blank line
            good.replace('\u{2014}', "-"),             // not an em dash
            good.trim_end().to_owned(),                // no final newline
            good.replacen("20852163", "020852163", 1), // leading zero
            good.replacen('\n', "\r\n", 1),            // control character
        ] {
            assert!(
                SignedCheckpoint::verify(&bad, &log.verifier).is_err(),
                "accepted {bad:?}"
            );
        }
        assert!(Checkpoint::parse("o\n1\nAAAA\n").is_err());
        assert!(Checkpoint::parse("o\n1\n").is_err());
        assert!(Checkpoint::parse(&format!("{text}\n")).is_err());
        let mut ext = checkpoint();
        ext.extensions.push("ext line".into());
        assert_eq!(Checkpoint::parse(&ext.text()).unwrap(), ext);
    }
}
