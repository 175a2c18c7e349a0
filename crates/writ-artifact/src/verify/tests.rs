use super::*;
use crate::claims::{EnvironmentBinding, Lineage, LogPointer, Scope, WritBody};
use crate::env::{Entropy, EntropyError};
use crate::pop::PopUse;
use serde_json::json;

struct Seeded(u8);
impl Entropy for Seeded {
    fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError> {
        buf.fill(self.0);
        Ok(())
    }
}

const NOW: u64 = 1_800_000_000;

fn claims() -> Claims {
    let facts = json!({"host": "a", "cwd": "/"})
        .as_object()
        .unwrap()
        .clone();
    let jti = "0123456789abcdef0123456789abcdef".to_string();
    Claims {
        iss: "writ".into(),
        sub: "Agent::\"planner\"".into(),
        aud: "exec@a".into(),
        cnf: None,
        iat: NOW,
        nbf: NOW,
        exp: NOW + 60,
        jti: jti.clone(),
        writ: WritBody {
            action: "Action::\"exec\"".into(),
            resource: "Command::\"/bin/true\"".into(),
            request: canonical::digest_json(&json!({"argv": ["/bin/true"]})).unwrap(),
            environment: EnvironmentBinding::bind(facts).unwrap(),
            scope: Scope::default(),
            policy: canonical::digest_bytes(b"bundle"),
            lineage: Lineage {
                parent: None,
                root: jti,
                depth: 0,
            },
            log: LogPointer {
                origin: "writ.test".into(),
                index: 0,
            },
        },
    }
}

fn ring(key: &WritKey) -> KeyRing {
    let mut r = KeyRing::new();
    r.insert(key.verifying_key());
    r
}

fn opts() -> VerifyOptions {
    VerifyOptions {
        now_unix_secs: NOW + 1,
        skew_secs: 5,
        ..VerifyOptions::default()
    }
}

fn code(r: Result<VerifiedWrit, Denial>) -> ReasonCode {
    r.expect_err("expected a denial").reason
}

fn resign_raw(key: &WritKey, header: &[u8], payload: &[u8]) -> String {
    let mut t = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = key.sign(t.as_bytes());
    t.push('.');
    t.push_str(&URL_SAFE_NO_PAD.encode(sig));
    t
}

#[test]
fn a_signed_writ_verifies_and_yields_its_claims() {
    let k = WritKey::generate(&Seeded(1)).unwrap();
    let t = sign(&k, &claims()).unwrap();
    let v = verify(&t, &ring(&k), &opts(), &NoStatus).unwrap();
    assert_eq!(v.claims(), &claims());
    assert_eq!(v.token(), t);
}

/// A grant comes from a verified writ and carries exactly what it granted;
/// a writ that fails verification yields none (there is no other way to
/// make one: see the compile_fail examples on `Grant`).
#[test]
fn only_a_verified_writ_yields_a_grant() {
    let k = WritKey::generate(&Seeded(1)).unwrap();
    let mut c = claims();
    c.writ.scope = Scope {
        net: true,
        read: vec!["/data".into()],
        write: vec!["/tmp/out".into()],
    };
    let t = sign(&k, &c).unwrap();
    let enforcing = VerifyOptions::enforcing(
        NOW + 1,
        c.aud.clone(),
        c.writ.request.clone(),
        HolderCheck::None,
    );
    let g = verify(&t, &ring(&k), &enforcing, &NoStatus)
        .unwrap()
        .grant()
        .unwrap();
    assert_eq!(g.scope(), &c.writ.scope);
    assert_eq!(g.jti(), c.jti);
    assert_eq!(g.audience(), c.aud);
    assert_eq!(g.exp(), c.exp);
    assert_eq!(g.lineage(), &c.writ.lineage);
    let other = WritKey::generate(&Seeded(2)).unwrap();
    let denied: Result<crate::Grant, Denial> =
        verify(&t, &ring(&other), &enforcing, &NoStatus).and_then(|v| v.grant());
    assert_eq!(denied.unwrap_err().reason, ReasonCode::InvalidSignature);
    // Verified for inspection (no audience or request, or the holder left
    // unchecked): a good writ, but nothing may run on it.
    let inspected = [
        opts(),
        VerifyOptions {
            audience: None,
            ..enforcing.clone()
        },
        VerifyOptions {
            request_digest: None,
            ..enforcing.clone()
        },
        VerifyOptions {
            holder: HolderCheck::Inspect,
            ..enforcing.clone()
        },
    ];
    for o in inspected {
        let v = verify(&t, &ring(&k), &o, &NoStatus).unwrap();
        assert_eq!(v.grant().unwrap_err().reason, ReasonCode::IntegrityFailure);
    }
}

#[test]
fn missing_and_malformed_shapes() {
    let k = WritKey::generate(&Seeded(1)).unwrap();
    let r = ring(&k);
    assert_eq!(
        code(verify("", &r, &opts(), &NoStatus)),
        ReasonCode::MissingArtifact
    );
    let good = sign(&k, &claims()).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    for bad in [
        "a.b".to_string(),
        format!("{good}.x"),
        format!("{}={}", &good[..good.len() - 1], ""), // padding char
        format!("{}.{}.{}+", parts[0], parts[1], parts[2]), // standard alphabet
        "x".repeat(WRIT_BYTES_MAX + 1),
    ] {
        assert_eq!(
            code(verify(&bad, &r, &opts(), &NoStatus)),
            ReasonCode::MalformedArtifact,
            "{bad}"
        );
    }
}

#[test]
fn wrong_alg_typ_extra_header_fields_and_noncanonical_json_are_malformed() {
    let k = WritKey::generate(&Seeded(1)).unwrap();
    let r = ring(&k);
    let payload = canonical::to_canonical_bytes(&claims()).unwrap();
    let kid = k.kid();
    for header in [
        format!(r#"{{"alg":"HS256","kid":"{kid}","typ":"writ+jwt"}}"#),
        format!(r#"{{"alg":"none","kid":"{kid}","typ":"writ+jwt"}}"#),
        format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"JWT"}}"#),
        format!(r#"{{"alg":"EdDSA","jku":"x","kid":"{kid}","typ":"writ+jwt"}}"#),
        format!(r#"{{"typ":"writ+jwt","alg":"EdDSA","kid":"{kid}"}}"#),
        format!(r#"{{"alg":"EdDSA", "kid":"{kid}","typ":"writ+jwt"}}"#),
    ] {
        let t = resign_raw(&k, header.as_bytes(), &payload);
        assert_eq!(
            code(verify(&t, &r, &opts(), &NoStatus)),
            ReasonCode::MalformedArtifact,
            "{header}"
        );
    }
    let header = format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"writ+jwt"}}"#);
    // Same claims, but pretty-printed / extra field / duplicate key.
    let pretty = serde_json::to_vec_pretty(&claims()).unwrap();
    let mut extra = serde_json::to_value(claims()).unwrap();
    extra["admin"] = json!(true);
    let extra = canonical::to_canonical_bytes(&extra).unwrap();
    let s = String::from_utf8(payload.clone()).unwrap();
    let dup = s.replacen("{\"aud\":", "{\"aud\":\"other\",\"aud\":", 1);
    for p in [pretty, extra, dup.into_bytes()] {
        let t = resign_raw(&k, header.as_bytes(), &p);
        assert_eq!(
            code(verify(&t, &r, &opts(), &NoStatus)),
            ReasonCode::MalformedArtifact
        );
    }
    // The canonical form itself passes, so the rejections above are about shape.
    let t = resign_raw(&k, header.as_bytes(), &payload);
    assert!(verify(&t, &r, &opts(), &NoStatus).is_ok());
}

#[test]
fn foreign_key_unknown_kid_edited_claims_and_noncanonical_signature_are_invalid() {
    let k = WritKey::generate(&Seeded(1)).unwrap();
    let foreign = WritKey::generate(&Seeded(2)).unwrap();
    let r = ring(&k);
    let t = sign(&foreign, &claims()).unwrap();
    assert_eq!(
        code(verify(&t, &r, &opts(), &NoStatus)),
        ReasonCode::InvalidSignature
    );

    // Edited claims, re-encoded canonically but not re-signed.
    let good = sign(&k, &claims()).unwrap();
    let mut c = claims();
    c.sub = "User::\"admin\"".into();
    let forged_payload = URL_SAFE_NO_PAD.encode(canonical::to_canonical_bytes(&c).unwrap());
    let p: Vec<&str> = good.split('.').collect();
    let forged = format!("{}.{}.{}", p[0], forged_payload, p[2]);
    assert_eq!(
        code(verify(&forged, &r, &opts(), &NoStatus)),
        ReasonCode::InvalidSignature
    );

    // A foreign kid with our signature bytes.
    let foreign_header = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"alg":"EdDSA","kid":"{}","typ":"writ+jwt"}}"#,
        foreign.kid()
    ));
    let swapped = format!("{}.{}.{}", foreign_header, p[1], p[2]);
    assert_eq!(
        code(verify(&swapped, &r, &opts(), &NoStatus)),
        ReasonCode::InvalidSignature
    );

    // Non-canonical S: add the group order L to S. Plain verification of the
    // "same" signature would be malleable; verify_strict refuses it.
    let mut sig = URL_SAFE_NO_PAD.decode(p[2]).unwrap();
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for i in 0..32 {
        let s = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
        sig[32 + i] = (s & 0xff) as u8;
        carry = s >> 8;
    }
    let malleated = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(&sig));
    assert_eq!(
        code(verify(&malleated, &r, &opts(), &NoStatus)),
        ReasonCode::InvalidSignature
    );
}

#[test]
fn time_window_with_skew() {
    let k = WritKey::generate(&Seeded(1)).unwrap();
    let r = ring(&k);
    let t = sign(&k, &claims()).unwrap();
    let at = |now| VerifyOptions {
        now_unix_secs: now,
        skew_secs: 5,
        ..VerifyOptions::default()
    };
    assert!(
        verify(&t, &r, &at(NOW - 5), &NoStatus).is_ok(),
        "skew tolerated before nbf"
    );
    assert_eq!(
        code(verify(&t, &r, &at(NOW - 6), &NoStatus)),
        ReasonCode::NotYetValid
    );
    assert!(
        verify(&t, &r, &at(NOW + 64), &NoStatus).is_ok(),
        "skew tolerated after exp"
    );
    assert_eq!(
        code(verify(&t, &r, &at(NOW + 65), &NoStatus)),
        ReasonCode::Expired
    );
}

#[test]
fn audience_policy_request_environment_mismatches() {
    let k = WritKey::generate(&Seeded(1)).unwrap();
    let r = ring(&k);
    let t = sign(&k, &claims()).unwrap();
    let c = claims();
    let with = |f: &dyn Fn(&mut VerifyOptions)| {
        let mut o = opts();
        f(&mut o);
        verify(&t, &r, &o, &NoStatus)
    };
    assert_eq!(
        code(with(&|o| o.audience = Some("mcp:fs".into()))),
        ReasonCode::AudienceMismatch
    );
    assert!(with(&|o| o.audience = Some("exec@a".into())).is_ok());
    let other = BTreeSet::from([canonical::digest_bytes(b"other bundle")]);
    assert_eq!(
        code(with(&|o| o.accepted_policies = Some(other.clone()))),
        ReasonCode::PolicyMismatch
    );
    let digest = canonical::digest_json(&json!({"argv": ["/bin/false"]})).unwrap();
    assert_eq!(
        code(with(&|o| o.request_digest = Some(digest.clone()))),
        ReasonCode::RequestMismatch
    );
    assert!(with(&|o| o.request_digest = Some(c.writ.request.clone())).is_ok());
    let env = canonical::digest_json(&json!({"host": "b", "cwd": "/"})).unwrap();
    assert_eq!(
        code(with(&|o| o.environment_digest = Some(env.clone()))),
        ReasonCode::EnvironmentMismatch
    );
    assert!(with(&|o| o.environment_digest = Some(c.writ.environment.digest.clone())).is_ok());
}

struct Status {
    revoked: bool,
    spent: bool,
    down: bool,
}
impl StatusOracle for Status {
    fn revoked(&self, c: &Claims) -> Result<Option<String>, Denial> {
        if self.down {
            return Err(Denial::new(ReasonCode::AuthorityUnavailable, "store down"));
        }
        Ok(self.revoked.then(|| format!("{} revoked", c.jti)))
    }
    fn spent(&self, _: &str) -> Result<bool, Denial> {
        Ok(self.spent)
    }
}

#[test]
fn revoked_replayed_and_unavailable_status_fail_closed() {
    let k = WritKey::generate(&Seeded(1)).unwrap();
    let r = ring(&k);
    let t = sign(&k, &claims()).unwrap();
    let online = VerifyOptions {
        check_spent: true,
        ..opts()
    };
    let st = |revoked, spent, down| Status {
        revoked,
        spent,
        down,
    };
    assert_eq!(
        code(verify(&t, &r, &online, &st(true, false, false))),
        ReasonCode::Revoked
    );
    assert_eq!(
        code(verify(&t, &r, &online, &st(false, true, false))),
        ReasonCode::Replayed
    );
    assert!(
        verify(&t, &r, &opts(), &st(false, true, false)).is_ok(),
        "offline skips nonce"
    );
    assert_eq!(
        code(verify(&t, &r, &online, &st(false, false, true))),
        ReasonCode::AuthorityUnavailable
    );
}

#[test]
fn signed_claims_that_do_not_hang_together_are_refused() {
    let k = WritKey::generate(&Seeded(1)).unwrap();
    let r = ring(&k);
    let mut c = claims();
    c.writ.environment.digest = canonical::digest_bytes(b"x");
    assert_eq!(
        code(verify(&sign(&k, &c).unwrap(), &r, &opts(), &NoStatus)),
        ReasonCode::MalformedArtifact
    );
    let mut c = claims();
    c.exp = c.nbf + WRIT_LIFETIME_SECS_MAX + 1;
    assert_eq!(
        code(verify(&sign(&k, &c).unwrap(), &r, &opts(), &NoStatus)),
        ReasonCode::MalformedArtifact
    );
    let mut c = claims();
    c.writ.lineage.depth = 1;
    assert_eq!(
        code(verify(&sign(&k, &c).unwrap(), &r, &opts(), &NoStatus)),
        ReasonCode::LineageBroken
    );
}

struct ProofsSeen(std::sync::Mutex<std::collections::HashSet<String>>);
impl StatusOracle for ProofsSeen {
    fn revoked(&self, _: &Claims) -> Result<Option<String>, Denial> {
        Ok(None)
    }
    fn spent(&self, _: &str) -> Result<bool, Denial> {
        Ok(false)
    }
    fn spend_proof(&self, p: &ProvenHolder) -> Result<bool, Denial> {
        Ok(self.0.lock().unwrap().insert(p.proof_jti().to_owned()))
    }
}

#[test]
fn a_holder_bound_writ_needs_a_fresh_proof_by_its_holder() {
    use crate::pop::HolderKey;
    use crate::OsEntropy;
    let k = WritKey::generate(&Seeded(3)).unwrap();
    let holder = HolderKey::generate(std::sync::Arc::new(OsEntropy)).unwrap();
    let mut c = claims();
    c.cnf = Some(crate::Confirmation { jkt: holder.jkt() });
    let t = sign(&k, &c).unwrap();
    let r = ring(&k);
    // No proof: refused, whatever else is right.
    assert_eq!(
        code(verify(&t, &r, &opts(), &NoStatus)),
        ReasonCode::HolderMismatch
    );
    let with = |proof: String, purpose| VerifyOptions {
        holder: HolderCheck::Proof { proof, purpose },
        ..opts()
    };
    let proof = holder.prove(&c.jti, &c.aud, PopUse::Verify, NOW).unwrap();
    let seen = ProofsSeen(Default::default());
    assert!(verify(&t, &r, &with(proof.clone(), PopUse::Verify), &seen).is_ok());
    // The same proof again, where the oracle keeps track: refused.
    assert_eq!(
        code(verify(&t, &r, &with(proof.clone(), PopUse::Verify), &seen)),
        ReasonCode::HolderMismatch
    );
    // A proof for another use, or by another key.
    assert_eq!(
        code(verify(&t, &r, &with(proof, PopUse::Start), &NoStatus)),
        ReasonCode::HolderMismatch
    );
    let thief = HolderKey::generate(std::sync::Arc::new(OsEntropy)).unwrap();
    let forged = thief.prove(&c.jti, &c.aud, PopUse::Verify, NOW).unwrap();
    assert_eq!(
        code(verify(&t, &r, &with(forged, PopUse::Verify), &NoStatus)),
        ReasonCode::HolderMismatch
    );
    // Inspection skips the holder, and nothing else.
    let inspect = VerifyOptions {
        holder: HolderCheck::Inspect,
        ..opts()
    };
    assert!(verify(&t, &r, &inspect, &NoStatus).is_ok());
    // A writ without cnf needs no proof.
    let plain = sign(&k, &claims()).unwrap();
    assert!(verify(&plain, &r, &opts(), &NoStatus).is_ok());
    // A signed cnf that is not a thumbprint: made by a broken signer.
    c.cnf = Some(crate::Confirmation {
        jkt: "short".into(),
    });
    let t = sign(&k, &c).unwrap();
    assert_eq!(
        code(verify(&t, &r, &inspect, &NoStatus)),
        ReasonCode::MalformedArtifact
    );
}
