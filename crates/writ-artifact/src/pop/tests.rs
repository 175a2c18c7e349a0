use super::*;
use crate::env::OsEntropy;

const NOW: u64 = 1_800_000_000;
const JTI: &str = "0123456789abcdef0123456789abcdef";
const AUD: &str = "exec@a";

fn key() -> HolderKey {
    HolderKey::generate(std::sync::Arc::new(OsEntropy)).unwrap()
}

fn reason(r: Result<ProvenHolder, Denial>) -> ReasonCode {
    r.expect_err("expected a denial").reason
}

fn resign(k: &SigningKey, header: &[u8], payload: &[u8]) -> String {
    let mut t = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = k.sign(t.as_bytes());
    t.push('.');
    t.push_str(&URL_SAFE_NO_PAD.encode(sig.to_bytes()));
    t
}

#[test]
fn a_fresh_proof_by_the_holder_passes_once_made() {
    let k = key();
    let jkt = k.jkt();
    assert_eq!(k.jwk().thumbprint().unwrap(), jkt);
    let bound = bound(&jkt);
    let p = k.prove(JTI, AUD, PopUse::Start, NOW).unwrap();
    let proven = check(&p, bound, PopUse::Start, NOW + 3, 5).unwrap();
    assert_eq!(proven.proof_jti().len(), 32);
    assert_eq!(proven.until(), NOW + POP_WINDOW_SECS + 5);
    // Two proofs never share a jti.
    let q = k.prove(JTI, AUD, PopUse::Start, NOW).unwrap();
    let again = check(&q, bound, PopUse::Start, NOW, 5).unwrap();
    assert_ne!(again.proof_jti(), proven.proof_jti());
}

#[test]
fn every_wrong_proof_is_holder_mismatch() {
    let k = key();
    let jkt = k.jkt();
    let bound = bound(&jkt);
    let good = k.prove(JTI, AUD, PopUse::Renew, NOW).unwrap();
    let at = |p: &str, use_: PopUse, now: u64| reason(check(p, bound, use_, now, 5));
    // Missing, oversized, not three parts.
    assert_eq!(at("", PopUse::Renew, NOW), ReasonCode::HolderMismatch);
    assert_eq!(
        at(&"a".repeat(POP_BYTES_MAX + 1), PopUse::Renew, NOW),
        ReasonCode::HolderMismatch
    );
    assert_eq!(at("a.b", PopUse::Renew, NOW), ReasonCode::HolderMismatch);
    // Another use, too old, too far ahead.
    assert_eq!(at(&good, PopUse::Start, NOW), ReasonCode::HolderMismatch);
    assert_eq!(
        at(&good, PopUse::Renew, NOW + 36),
        ReasonCode::HolderMismatch
    );
    // Dated more than the skew ahead of the verifier's clock.
    assert_eq!(
        at(&good, PopUse::Renew, NOW - 6),
        ReasonCode::HolderMismatch
    );
    assert!(check(&good, bound, PopUse::Renew, NOW - 5, 5).is_ok());
    assert!(check(&good, bound, PopUse::Renew, NOW + 35, 5).is_ok());
    // Another key: a thief's own proof for the stolen writ.
    let thief = key().prove(JTI, AUD, PopUse::Renew, NOW).unwrap();
    let d = check(&thief, bound, PopUse::Renew, NOW, 5).unwrap_err();
    assert_eq!(d.reason, ReasonCode::HolderMismatch);
    assert!(d.message.contains("is bound to"), "{}", d.message);
    // Another writ or audience.
    let other = "fedcba9876543210fedcba9876543210";
    let p = k.prove(other, AUD, PopUse::Renew, NOW).unwrap();
    assert_eq!(at(&p, PopUse::Renew, NOW), ReasonCode::HolderMismatch);
    let p = k.prove(JTI, "exec@b", PopUse::Renew, NOW).unwrap();
    assert_eq!(at(&p, PopUse::Renew, NOW), ReasonCode::HolderMismatch);
    // A flipped signature bit.
    let mut bad = good.clone().into_bytes();
    let last = bad.len() - 2;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    assert_eq!(at(&bad, PopUse::Renew, NOW), ReasonCode::HolderMismatch);
}

#[test]
fn only_the_one_canonical_shape_is_accepted() {
    let k = key();
    let jkt = k.jkt();
    let bound = bound(&jkt);
    let x = k.jwk().x;
    let payload = format!(
        "{{\"aud\":\"{AUD}\",\"iat\":{NOW},\"jti\":\"00000000000000000000000000000001\",\"use\":\"verify\",\"writ\":\"{JTI}\"}}"
    );
    let canonical_header = header_bytes(&x);
    let ok = resign(&k.signing, &canonical_header, payload.as_bytes());
    assert!(check(&ok, bound, PopUse::Verify, NOW, 5).is_ok());
    let headers = [
        // alg none, HMAC, another typ, whitespace, member order, extra member.
        format!("{{\"alg\":\"none\",\"jwk\":{{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"{x}\"}},\"typ\":\"{POP_TYP}\"}}"),
        format!("{{\"alg\":\"HS256\",\"jwk\":{{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"{x}\"}},\"typ\":\"{POP_TYP}\"}}"),
        format!("{{\"alg\":\"EdDSA\",\"jwk\":{{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"{x}\"}},\"typ\":\"dpop+jwt\"}}"),
        format!("{{\"alg\":\"EdDSA\", \"jwk\":{{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"{x}\"}},\"typ\":\"{POP_TYP}\"}}"),
        format!("{{\"jwk\":{{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"{x}\"}},\"alg\":\"EdDSA\",\"typ\":\"{POP_TYP}\"}}"),
        format!("{{\"alg\":\"EdDSA\",\"jwk\":{{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"{x}\"}},\"kid\":\"k\",\"typ\":\"{POP_TYP}\"}}"),
        format!("{{\"alg\":\"EdDSA\",\"jwk\":{{\"crv\":\"Ed25519\",\"d\":\"AA\",\"kty\":\"OKP\",\"x\":\"{x}\"}},\"typ\":\"{POP_TYP}\"}}"),
    ];
    for h in headers {
        let p = resign(&k.signing, h.as_bytes(), payload.as_bytes());
        assert_eq!(
            reason(check(&p, bound, PopUse::Verify, NOW, 5)),
            ReasonCode::HolderMismatch,
            "{h}"
        );
    }
    let payloads = [
        // Whitespace, member order, an extra claim, an uppercase jti.
        payload.replace(',', ", "),
        format!("{{\"iat\":{NOW},\"aud\":\"{AUD}\",\"jti\":\"00000000000000000000000000000001\",\"use\":\"verify\",\"writ\":\"{JTI}\"}}"),
        payload.replace("}", ",\"z\":1}"),
        payload.replace("00000000000000000000000000000001", "0000000000000000000000000000000A"),
    ];
    for p in payloads {
        let t = resign(&k.signing, &canonical_header, p.as_bytes());
        assert_eq!(
            reason(check(&t, bound, PopUse::Verify, NOW, 5)),
            ReasonCode::HolderMismatch,
            "{p}"
        );
    }
}

#[test]
fn holder_keys_must_be_ed25519_points() {
    let good = key().jwk();
    assert!(good.thumbprint().is_ok());
    let mut rsa = good.clone();
    rsa.kty = "RSA".into();
    assert!(rsa.thumbprint().is_err());
    let mut short = good.clone();
    short.x = URL_SAFE_NO_PAD.encode([7u8; 31]);
    assert!(short.thumbprint().is_err());
    // The identity point is small-order.
    let mut id = [0u8; 32];
    id[0] = 1;
    let mut weak = good;
    weak.x = URL_SAFE_NO_PAD.encode(id);
    assert!(weak
        .thumbprint()
        .unwrap_err()
        .to_string()
        .contains("small-order"));
    // Unknown members are refused when parsed.
    let extra = serde_json::json!({"crv": "Ed25519", "kty": "OKP", "x": "AA", "d": "AA"});
    assert!(serde_json::from_value::<HolderJwk>(extra).is_err());
}

/// The writ every proof here is for, held by the key of thumbprint `jkt`.
fn bound(jkt: &str) -> Bound<'_> {
    Bound {
        jti: JTI,
        aud: AUD,
        jkt,
    }
}
