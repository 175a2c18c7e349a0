//! C2SP signed notes and `tlog-checkpoint` bodies: `Note::parse`,
//! `Checkpoint::parse`, `SignedCheckpoint::verify` against the seeds' log key,
//! and the verifier-key parser. A note that parses renders back to the same
//! text; nothing panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use writ_log::note::{Checkpoint, Note, NoteVerifier, SignedCheckpoint};

fn log_key() -> &'static NoteVerifier {
    static KEY: OnceLock<NoteVerifier> = OnceLock::new();
    KEY.get_or_init(|| {
        NoteVerifier::parse(include_str!("../seeds/keys/log.vkey").trim())
            .unwrap_or_else(|e| panic!("seeds/keys/log.vkey: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(note) = Note::parse(text) {
        assert_eq!(note.render(), text, "a parsed note renders to its own text");
        let _ = note.verified_by(log_key());
    }
    if let Ok(cp) = Checkpoint::parse(text) {
        // The checkpoint text is canonical: it renders back to the input.
        assert_eq!(
            cp.text(),
            text,
            "a parsed checkpoint renders to its own text"
        );
    }
    if let Ok(sc) = SignedCheckpoint::verify(text, log_key()) {
        assert!(sc.checkpoint.size <= u64::MAX);
        let _ = sc.require_cosigners(&[log_key().clone()]);
    }
    // The same bytes as a verifier key (`writ log verify --log-key`, witnesses).
    if let Ok(v) = NoteVerifier::parse(text) {
        assert_eq!(
            NoteVerifier::parse(&v.vkey()).ok().as_ref(),
            Some(&v),
            "a parsed vkey round-trips"
        );
    }
});
