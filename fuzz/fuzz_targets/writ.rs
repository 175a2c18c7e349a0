//! The writ parser and verifier: any string is either a `VerifiedWrit` or a
//! denial with one reason code; nothing panics. Seeds are real writs of the
//! authority whose JWKS is `seeds/keys/jwks.json`, so mutations start from
//! tokens that verify.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use writ_artifact::pop::{Bound, PopUse};
use writ_artifact::{
    decode_unverified, verify, HolderCheck, Jwks, KeyRing, NoStatus, VerifyOptions,
};

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let jwks: Jwks = serde_json::from_str(include_str!("../seeds/keys/jwks.json"))
            .unwrap_or_else(|e| panic!("seeds/keys/jwks.json: {e}"));
        KeyRing::from_jwks(&jwks).unwrap_or_else(|e| panic!("seeds/keys/jwks.json: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let unverified = decode_unverified(token);
    // Inside the writ's own validity window (so the checks after the clock
    // are reached), and far outside it.
    let nbf = unverified.as_ref().map_or(0, |(_, c)| c.nbf);
    for now in [nbf, 0, u64::MAX] {
        let opts = VerifyOptions {
            now_unix_secs: now,
            skew_secs: 5,
            audience: Some("exec@fuzz".into()),
            request_digest: None,
            environment_digest: None,
            accepted_policies: None,
            check_spent: false,
            holder: HolderCheck::Proof {
                proof: token.to_owned(),
                purpose: PopUse::Verify,
            },
        };
        // The same bytes as a proof of possession: refused or accepted,
        // never a panic.
        let _ = writ_artifact::pop::check(
            token,
            Bound {
                jti: "0123456789abcdef0123456789abcdef",
                aud: "exec@fuzz",
                jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
            },
            PopUse::Verify,
            now,
            5,
        );
        if let Ok(v) = verify(token, ring(), &opts, &NoStatus) {
            // What verifies must also decode, to the same claims.
            let (kid, claims) = unverified
                .clone()
                .unwrap_or_else(|d| panic!("verified but does not decode: {d:?}"));
            assert_eq!(&claims, v.claims());
            assert!(ring().get(&kid).is_some());
            // And it has exactly one encoding: re-encoding the claims gives the payload.
            let payload = token.split('.').nth(1).unwrap_or_default();
            let bytes = v.claims().canonical_bytes().unwrap_or_default();
            assert_eq!(
                payload,
                base64_url(&bytes),
                "a verified writ's payload is its canonical claims"
            );
        }
    }
});

fn base64_url(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=n {
            out.push(A[((v >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
