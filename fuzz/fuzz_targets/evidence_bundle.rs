//! Evidence bundles (`writ log export`, `writ log verify --bundle`): any
//! bytes are refused, or parse and are verified (proofs, checkpoint
//! signatures, replay of every decision) to a report; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use writ_audit::evidence::{verify, Evidence};

fuzz_target!(|data: &[u8]| {
    let Ok(ev) = serde_json::from_slice::<Evidence>(data) else {
        return;
    };
    // Bounded: a bundle of many entries replays Cedar for each; the seeds
    // hold a few, and the fuzzer gains nothing from thousands.
    if ev.entries.len() > 64 || ev.bundles.len() > 8 {
        return;
    }
    let _ = verify(&ev, None, &[], true);
});
