//! A standard JOSE library (PyJWT) verifies a writ against the served JWKS,
//! and rejects every single-character change to it.
//!
//! Needs python3; a venv with `pyjwt[crypto]` is made at `target/pyenv` when
//! missing. Set `WRIT_SKIP_PY=1` to skip; otherwise a failed install fails the
//! test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use crate::common::*;
use serde_json::{json, Value};

const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `target/pyenv/bin/python`, with PyJWT importable; created if needed.
fn python() -> PathBuf {
    python_venv(
        "pyenv",
        "pyjwt[crypto]",
        "import jwt, cryptography; assert jwt.__version__ >= '2'",
    )
}

/// Decodes every token of `tokens` with PyJWT against the one JWK given;
/// prints `[{"ok": bool, "claims"|"error": ...}]`.
const SCRIPT: &str = include_str!("fixtures/pyjwt_decode.py");

/// Run `script` with `job` as JSON on its standard input; its standard
/// output, parsed as JSON.
fn run_py(py: &Path, script: &str, job: &Value) -> Value {
    let out = run_script(py, script, job);
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn pyjwt_decode(py: &Path, jwk: &Value, tokens: &[String]) -> Vec<Value> {
    let job = json!({"jwk": jwk, "audience": AUD, "tokens": tokens});
    let v: Vec<Value> = serde_json::from_value(run_py(py, SCRIPT, &job)).unwrap();
    assert_eq!(v.len(), tokens.len());
    v
}

/// A server, a writ for AUD, and the JWK (from the served JWKS) that signed it.
fn setup() -> (Server, String, Value) {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["lifetime_secs"] = json!(600);
    let (writ, _, _) = srv.authorize_ok(&agent, &req);
    let r = srv.get("/.well-known/jwks.json", None);
    assert_eq!(r.status, 200);
    let jwks = r.json();
    let kid = header_of(&writ)["kid"].clone();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .cloned()
        .unwrap_or_else(|| panic!("kid {kid} is not in the JWKS {jwks}"));
    assert_eq!(
        (
            jwk["kty"].as_str(),
            jwk["crv"].as_str(),
            jwk["alg"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA")),
        "{jwk}"
    );
    (srv, writ, jwk)
}

/// The character at `i` replaced by one that changes the decoded bytes (the
/// top bit of its 6-bit value flips, which is never a padding bit); a '.' is
/// replaced by a letter.
fn mutate_at(token: &str, i: usize) -> String {
    let c = token.as_bytes()[i] as char;
    let sub = match ALPHABET.find(c) {
        Some(v) => ALPHABET.as_bytes()[v ^ 0x20] as char,
        None => 'A',
    };
    assert_ne!(sub, c);
    let mut s = token.to_owned();
    s.replace_range(i..=i, &sub.to_string());
    s
}

#[test]
fn pyjwt_accepts_the_writ_and_rejects_every_one_character_change() {
    if skip_python("the PyJWT interop test") {
        return;
    }
    let py = python();
    let (srv, writ, jwk) = setup();
    let variants: Vec<String> = (0..writ.len()).map(|i| mutate_at(&writ, i)).collect();
    assert!(variants.len() > 600, "{} positions", variants.len());
    let mut tokens = vec![writ.clone()];
    tokens.extend(variants.iter().cloned());
    let results = pyjwt_decode(&py, &jwk, &tokens);

    let original = &results[0];
    assert_eq!(
        original["ok"], true,
        "PyJWT must accept the writ: {original}"
    );
    assert_eq!(
        original["claims"],
        claims_of(&writ),
        "PyJWT sees the same claims"
    );
    assert_eq!(original["header"]["typ"], "writ+jwt");
    assert_eq!(original["claims"]["sub"], "Agent::\"planner\"");

    let accepted: Vec<(usize, &Value)> = results[1..]
        .iter()
        .enumerate()
        .filter(|(_, r)| r["ok"] == true)
        .collect();
    assert!(
        accepted.is_empty(),
        "PyJWT accepted {} one-character variants, e.g. at positions {:?}",
        accepted.len(),
        accepted
            .iter()
            .take(10)
            .map(|(i, _)| *i)
            .collect::<Vec<_>>()
    );
    // Every kind of failure is a real rejection, not a crash of the script.
    let kinds: std::collections::BTreeSet<String> = results[1..]
        .iter()
        .map(|r| {
            r["error"]
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(kinds.contains("InvalidSignatureError"), "{kinds:?}");

    // writ's own verifier rejects them all as well (a sample through the server).
    for v in variants.iter().step_by(37) {
        let r = srv.verify(&json!({"writ": v, "audience": AUD}));
        assert_eq!(r["valid"], false, "{v}: {r}");
    }
}

/// The last character of an 86-character signature carries 2 bits of data and
/// 4 padding bits, so 15 other characters decode to the same 64 bytes in a
/// lenient base64 decoder. writ must refuse all of them (one encoding only).
/// Recent PyJWT (2.10+) re-encodes and refuses them too; older versions did
/// not, so PyJWT's answer is only reported.
#[test]
fn writ_refuses_signature_encodings_that_lenient_decoders_accept() {
    if skip_python("the PyJWT interop test") {
        return;
    }
    let py = python();
    let (srv, writ, jwk) = setup();
    let last = writ.chars().last().unwrap();
    let v = ALPHABET.find(last).unwrap();
    assert_eq!(v & 0x0f, 0);
    let twins: Vec<String> = (1..16)
        .map(|low| {
            format!(
                "{}{}",
                &writ[..writ.len() - 1],
                ALPHABET.as_bytes()[v | low] as char
            )
        })
        .collect();
    let mut tokens = vec![writ.clone()];
    tokens.extend(twins.iter().cloned());
    let results = pyjwt_decode(&py, &jwk, &tokens);
    assert_eq!(
        results[0]["ok"], true,
        "control: PyJWT accepts the canonical writ: {}",
        results[0]
    );
    let pyjwt_accepted = results[1..].iter().filter(|r| r["ok"] == true).count();
    eprintln!(
        "note: PyJWT accepted {pyjwt_accepted} of {} non-canonical signature encodings",
        twins.len()
    );
    for t in &twins {
        let r = srv.verify(&json!({"writ": t, "audience": AUD}));
        assert_eq!(
            (r["valid"].as_bool(), r["reason"].as_str()),
            (Some(false), Some("malformed_artifact")),
            "{r}"
        );
    }
}

/// A holder with nothing but a standard JOSE library (PyJWT and its
/// `cryptography` Ed25519 key) asks for a holder-bound writ and proves
/// possession at `POST /v1/verify` and at the start of its execution: the
/// proof format (docs/spec/holder.md) is plain JWS, not writ's own code.
#[test]
fn a_holder_with_pyjwt_alone_proves_possession() {
    if skip_python("a PyJWT holder") {
        return;
    }
    let py = python();
    // The holder's key, made and used in Python; only the public JWK and
    // the proofs come out.
    const HOLDER: &str = include_str!("fixtures/pyjwt_holder.py");
    let holder = |job: Value| run_py(&py, HOLDER, &job);
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let made = holder(json!({}));
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["cnf"] = json!({"jwk": made["jwk"]});
    let (writ, jti, _) = srv.authorize_ok(&agent, &req);
    let proofs = holder(json!({"pem": made["pem"], "aud": AUD, "writ": jti,
                                "uses": ["verify", "start"]}))["proofs"]
        .clone();
    let v = srv.verify(&json!({"writ": writ, "pop": proofs["verify"]}));
    assert_eq!(v["valid"], true, "{v}");
    let v = srv.verify(&json!({"writ": writ}));
    assert_eq!(v["reason"], "holder_mismatch", "{v}");
    let r = srv.post(
        &format!("/v1/executions/{jti}/start"),
        Some(&agent),
        &json!({"pop": proofs["start"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}
