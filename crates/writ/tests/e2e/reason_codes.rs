//! Every reason code a running authority can produce, checked through every
//! door: `POST /v1/verify`, `writ verify` on the data dir, and
//! `writ verify --online`; denials of `POST /v1/authorize` and of execution
//! starts; and the CLI's exit statuses and `denied: <code>` on stderr.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use writ_artifact::{OsEntropy, WritKey};

/// A verification context: what the verifier re-measured.
#[derive(Default, Clone)]
struct Ctx {
    request: Option<Value>,
    environment: Option<Value>,
    audience: Option<String>,
    /// `writ verify --skew-secs` for the local CLI (the server has its own).
    skew_secs: Option<u64>,
    /// A proof of possession (`pop`, `--pop`).
    pop: Option<String>,
}

impl Ctx {
    fn body(&self, writ: &str) -> Value {
        let mut b = json!({"writ": writ});
        if let Some(r) = &self.request {
            b["request"] = r.clone();
        }
        if let Some(e) = &self.environment {
            b["environment"] = e.clone();
        }
        if let Some(a) = &self.audience {
            b["audience"] = json!(a);
        }
        if let Some(p) = &self.pop {
            b["pop"] = json!(p);
        }
        b
    }

    fn cli_args(&self, writ: &str, online: bool) -> Vec<String> {
        let mut a = vec!["verify".to_string(), writ.to_string()];
        if let Some(r) = &self.request {
            a.extend(["--request".into(), r.to_string()]);
        }
        if let Some(e) = &self.environment {
            a.extend(["--env".into(), e.to_string()]);
        }
        if let Some(aud) = &self.audience {
            a.extend(["--audience".into(), aud.clone()]);
        }
        if let Some(s) = self.skew_secs {
            a.extend(["--skew-secs".into(), s.to_string()]);
        }
        if let Some(p) = &self.pop {
            a.extend(["--pop".into(), p.clone()]);
        }
        if online {
            a.push("--online".into());
        }
        a
    }
}

fn run_verify_cli(srv: &Server, ctx: &Ctx, writ: &str, online: bool) -> CliOut {
    let args = ctx.cli_args(writ, online);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    srv.cli(None, &args)
}

/// `writ` must be denied with `code` by POST /v1/verify, by `writ verify` on
/// the data dir, and by `writ verify --online`; every message must contain `msg`.
fn denied_everywhere(srv: &Server, ctx: &Ctx, writ: &str, code: &str, msg: &str, what: &str) {
    let v = srv.verify(&ctx.body(writ));
    assert_eq!(v["valid"], false, "{what}: POST /v1/verify: {v}");
    assert_eq!(v["reason"], code, "{what}: POST /v1/verify: {v}");
    let m = v["message"].as_str().unwrap_or_default();
    assert!(
        m.contains(msg),
        "{what}: POST /v1/verify message {m:?} should contain {msg:?}"
    );
    for online in [false, true] {
        let out = run_verify_cli(srv, ctx, writ, online);
        let mode = if online {
            "writ verify --online"
        } else {
            "writ verify (data dir)"
        };
        out.expect_denied(code, &format!("{what}: {mode}"));
        assert!(
            out.stderr.contains(msg),
            "{what}: {mode}: stderr should contain {msg:?}\n{out:#?}"
        );
        assert!(
            out.stdout.is_empty(),
            "{what}: {mode}: a denial prints nothing on stdout\n{out:#?}"
        );
    }
}

/// `writ` must verify on all three paths.
fn valid_everywhere(srv: &Server, ctx: &Ctx, writ: &str, what: &str) {
    let v = srv.verify(&ctx.body(writ));
    assert_eq!(v["valid"], true, "{what}: POST /v1/verify: {v}");
    assert!(v.get("reason").is_none(), "{what}: {v}");
    assert_eq!(v["claims"]["jti"], claims_of(writ)["jti"], "{what}: {v}");
    for online in [false, true] {
        let out = run_verify_cli(srv, ctx, writ, online);
        out.expect_code(0, &format!("{what}: writ verify online={online}"));
        assert!(out.stdout.starts_with("valid: "), "{what}: {out:#?}");
    }
}

/// A server, an agent principal and an allowed writ for `/usr/bin/true`.
struct Fixture {
    srv: Server,
    agent: String,
    writ: String,
    jti: String,
}

fn fixture() -> Fixture {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["environment"] = json!({"host": "host-a", "cwd": "/srv"});
    req["lifetime_secs"] = json!(600);
    let (writ, jti, _) = srv.authorize_ok(&agent, &req);
    Fixture {
        srv,
        agent,
        writ,
        jti,
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

// ---------------------------------------------------------------- shape and signature

#[test]
fn the_untouched_writ_is_valid_everywhere() {
    let f = fixture();
    let ctx = Ctx {
        request: Some(json!({"argv": ["/usr/bin/true"]})),
        environment: Some(json!({"cwd": "/srv", "host": "host-a"})),
        audience: Some(AUD.into()),
        skew_secs: None,
        pop: None,
    };
    valid_everywhere(&f.srv, &ctx, &f.writ, "original writ");
    // No context at all is an inspection, and passes too.
    valid_everywhere(
        &f.srv,
        &Ctx::default(),
        &f.writ,
        "original writ, no bindings checked",
    );
    let h = header_of(&f.writ);
    assert_eq!(
        h,
        json!({"alg": "EdDSA", "kid": f.srv.init["writ_kid"], "typ": "writ+jwt"})
    );
    let c = claims_of(&f.writ);
    assert_eq!(c["sub"], "Agent::\"planner\"");
    assert_eq!(c["jti"], f.jti.as_str());
}

#[test]
fn wrong_algorithm_is_malformed_artifact() {
    let f = fixture();
    let ctx = Ctx {
        audience: Some(AUD.into()),
        ..Ctx::default()
    };
    let (_, p, s) = parts(&f.writ);
    let kid = f.srv.init["writ_kid"].as_str().unwrap();
    let pubkey = f.srv.writ_key().verifying_key().to_bytes();
    let jwks = f.srv.get("/.well-known/jwks.json", None).text();
    for alg in ["HS256", "none", "ES256", "RS256", "EdDSA "] {
        let h = b64(&canonical(
            &json!({"alg": alg, "kid": kid, "typ": "writ+jwt"}),
        ));
        // The original signature, left in place.
        denied_everywhere(
            &f.srv,
            &ctx,
            &format!("{h}.{p}.{s}"),
            "malformed_artifact",
            "alg",
            &format!("alg {alg}, old sig"),
        );
        // No signature at all (the classic alg=none form).
        denied_everywhere(
            &f.srv,
            &ctx,
            &format!("{h}.{p}."),
            "malformed_artifact",
            "alg",
            &format!("alg {alg}, empty sig"),
        );
        // Re-signed with HMAC keyed by the public key (key-confusion attack),
        // keyed by its raw bytes and by the JWKS text.
        for mac_key in [&pubkey[..], jwks.as_bytes()] {
            let mac = hmac_sha256(mac_key, format!("{h}.{p}").as_bytes());
            denied_everywhere(
                &f.srv,
                &ctx,
                &format!("{h}.{p}.{}", b64(&mac)),
                "malformed_artifact",
                "alg",
                &format!("alg {alg}, HMAC"),
            );
        }
    }
    // A wrong typ, even validly signed by the real key.
    let key = f.srv.writ_key();
    let payload = unb64(&p);
    for typ in ["JWT", "jwt", "writ+JWT"] {
        let forged = sign_raw(
            &key,
            &canonical(&json!({"alg": "EdDSA", "kid": kid, "typ": typ})),
            &payload,
        );
        denied_everywhere(
            &f.srv,
            &ctx,
            &forged,
            "malformed_artifact",
            "typ",
            &format!("typ {typ}"),
        );
    }
}

#[test]
fn foreign_keys_are_invalid_signature() {
    let f = fixture();
    let ctx = Ctx {
        audience: Some(AUD.into()),
        ..Ctx::default()
    };
    let claims: writ_artifact::Claims = serde_json::from_value(claims_of(&f.writ)).unwrap();
    let foreign = WritKey::generate(&OsEntropy).unwrap();
    // Signed by a fresh key under its own kid: the kid is unknown.
    let forged = writ_artifact::sign(&foreign, &claims).unwrap();
    assert_ne!(header_of(&forged)["kid"], header_of(&f.writ)["kid"]);
    denied_everywhere(
        &f.srv,
        &ctx,
        &forged,
        "invalid_signature",
        "unknown or retired",
        "foreign key, own kid",
    );
    // Signed by a fresh key but claiming the server's kid.
    let (h, p, _) = parts(&f.writ);
    let forged = sign_raw(&foreign, &unb64(&h), &unb64(&p));
    assert_eq!(parts(&forged).0, h);
    denied_everywhere(
        &f.srv,
        &ctx,
        &forged,
        "invalid_signature",
        "does not verify",
        "foreign key, server's kid",
    );
    // The same with an ed25519-dalek key made independently of writ.
    let sk = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let sig = ed25519_dalek::Signer::sign(&sk, format!("{h}.{p}").as_bytes());
    let forged = format!("{h}.{p}.{}", b64(&sig.to_bytes()));
    denied_everywhere(
        &f.srv,
        &ctx,
        &forged,
        "invalid_signature",
        "does not verify",
        "dalek key, server's kid",
    );
    // Another authority's real writ (its key is not in this one's ring).
    let other = Server::start();
    let (other_writ, _, _) =
        other.authorize_ok(&other.admin_token, &exec_req(&["/usr/bin/true"], AUD));
    denied_everywhere(
        &f.srv,
        &ctx,
        &other_writ,
        "invalid_signature",
        "unknown or retired",
        "another authority's writ",
    );
}

#[test]
fn edited_claims_are_invalid_signature() {
    let f = fixture();
    let ctx = Ctx::default();
    let (h, p, s) = parts(&f.writ);
    let claims = claims_of(&f.writ);
    type Edit = fn(&mut Value);
    let edits: Vec<(&str, Edit)> = vec![
        ("sub", |c: &mut Value| c["sub"] = json!("User::\"mallory\"")),
        ("resource", |c: &mut Value| {
            c["writ"]["resource"] = json!("Command::\"/usr/bin/rm\"")
        }),
        ("aud", |c: &mut Value| c["aud"] = json!("exec@host-b")),
        ("exp", |c: &mut Value| {
            c["exp"] = json!(c["exp"].as_u64().unwrap() + 60)
        }),
        ("scope", |c: &mut Value| {
            c["writ"]["scope"]["write"] = json!(["/"])
        }),
        ("request", |c: &mut Value| {
            c["writ"]["request"] = json!(format!("sha256:{}", "0".repeat(64)))
        }),
    ];
    for (name, edit) in edits {
        let mut c = claims.clone();
        edit(&mut c);
        assert_ne!(c, claims);
        let forged = format!("{h}.{}.{s}", b64(&canonical(&c)));
        denied_everywhere(
            &f.srv,
            &ctx,
            &forged,
            "invalid_signature",
            "signature does not verify",
            &format!("edited {name}"),
        );
    }
    // A flipped bit in the signature itself.
    let mut sig = unb64(&s);
    sig[10] ^= 0x01;
    let forged = format!("{h}.{p}.{}", b64(&sig));
    denied_everywhere(
        &f.srv,
        &ctx,
        &forged,
        "invalid_signature",
        "signature does not verify",
        "flipped signature bit",
    );
}

#[test]
fn non_canonical_encodings_are_malformed_even_when_validly_signed() {
    let mut f = fixture();
    // The standard-alphabet forgeries below need a '-' or '_' in the writ;
    // a signature lacks both about one time in sixteen, so ask again until
    // one has them (same request, so the same context applies).
    for _ in 0..40 {
        if f.writ.contains(['-', '_']) {
            break;
        }
        let mut req = exec_req(&["/usr/bin/true"], AUD);
        req["environment"] = json!({"host": "host-a", "cwd": "/srv"});
        req["lifetime_secs"] = json!(600);
        let (writ, jti, _) = f.srv.authorize_ok(&f.agent, &req);
        (f.writ, f.jti) = (writ, jti);
    }
    let ctx = Ctx::default();
    let (h, p, s) = parts(&f.writ);
    let key = f.srv.writ_key();
    let header = unb64(&h);
    let claims = claims_of(&f.writ);
    let foreign = WritKey::generate(&OsEntropy).unwrap();

    // Padding on any part.
    let pad = |x: &str| format!("{x}{}", "=".repeat(((4 - x.len() % 4) % 4).max(1)));
    for (name, forged) in [
        ("padded header", format!("{}.{p}.{s}", pad(&h))),
        ("padded payload", format!("{h}.{}.{s}", pad(&p))),
        ("padded signature", format!("{h}.{p}.{}", pad(&s))),
    ] {
        denied_everywhere(
            &f.srv,
            &ctx,
            &forged,
            "malformed_artifact",
            "base64url",
            name,
        );
    }
    // The standard alphabet instead of base64url (same bytes).
    let std_alpha = |x: &str| x.replace('-', "+").replace('_', "/");
    let mut tried = 0;
    for (name, forged) in [
        (
            "standard-alphabet header",
            format!("{}.{p}.{s}", std_alpha(&h)),
        ),
        (
            "standard-alphabet payload",
            format!("{h}.{}.{s}", std_alpha(&p)),
        ),
        (
            "standard-alphabet signature",
            format!("{h}.{p}.{}", std_alpha(&s)),
        ),
    ] {
        if forged != f.writ {
            tried += 1;
            denied_everywhere(
                &f.srv,
                &ctx,
                &forged,
                "malformed_artifact",
                "base64url",
                name,
            );
        }
    }
    assert!(tried > 0, "none of 40 writs held a '-' or '_'");
    // A character outside base64url altogether.
    denied_everywhere(
        &f.srv,
        &ctx,
        &format!("{h}.+{}.{s}", &p[1..]),
        "malformed_artifact",
        "base64url",
        "a '+' in the payload",
    );

    // Non-zero trailing bits in the last character of the signature: decodes
    // to the same 64 bytes in lenient decoders, but is a second encoding.
    let last = s.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let val = alphabet.find(last).unwrap();
    assert_eq!(
        val & 0x0f,
        0,
        "a canonical 64-byte signature ends in a char with 4 zero low bits"
    );
    let twin: String = alphabet.chars().nth(val | 0x01).unwrap().to_string();
    let forged = format!("{h}.{p}.{}{twin}", &s[..s.len() - 1]);
    denied_everywhere(
        &f.srv,
        &ctx,
        &forged,
        "malformed_artifact",
        "base64url",
        "signature with non-zero trailing bits",
    );

    // Whitespace in the payload JSON, validly signed by the server's own key,
    // and by a foreign key (shape is checked before the signature).
    let pretty = serde_json::to_vec_pretty(&claims).unwrap();
    denied_everywhere(
        &f.srv,
        &ctx,
        &sign_raw(&key, &header, &pretty),
        "malformed_artifact",
        "canonical",
        "pretty payload, real key",
    );
    denied_everywhere(
        &f.srv,
        &ctx,
        &sign_raw(&foreign, &header, &pretty),
        "malformed_artifact",
        "canonical",
        "pretty payload, foreign key",
    );
    let mut spaced = canonical(&claims);
    spaced.push(b' ');
    denied_everywhere(
        &f.srv,
        &ctx,
        &sign_raw(&key, &header, &spaced),
        "malformed_artifact",
        "canonical",
        "trailing space, real key",
    );
    // Keys out of RFC 8785 order, in header and payload, signed by the real key.
    let kid = f.srv.init["writ_kid"].as_str().unwrap();
    let reordered_header = format!("{{\"typ\":\"writ+jwt\",\"kid\":\"{kid}\",\"alg\":\"EdDSA\"}}");
    denied_everywhere(
        &f.srv,
        &ctx,
        &sign_raw(&key, reordered_header.as_bytes(), &canonical(&claims)),
        "malformed_artifact",
        "canonical",
        "reordered header, real key",
    );
    let canon = String::from_utf8(canonical(&claims)).unwrap();
    assert!(canon.starts_with("{\"aud\":"));
    let aud_field = format!(
        "\"aud\":{},",
        serde_json::to_string(&claims["aud"]).unwrap()
    );
    let rest = canon[1..canon.len() - 1].strip_prefix(&aud_field).unwrap();
    let reordered = format!("{{{rest},{}}}", aud_field.trim_end_matches(','));
    assert_eq!(
        serde_json::from_str::<Value>(&reordered).unwrap(),
        claims,
        "same claims, other order"
    );
    denied_everywhere(
        &f.srv,
        &ctx,
        &sign_raw(&key, &header, reordered.as_bytes()),
        "malformed_artifact",
        "canonical",
        "reordered payload, real key",
    );
    // A duplicated claim key ("sub" twice, the last one forged), real key.
    let dup = format!(
        "{}{}",
        &canon[..canon.len() - 1],
        ",\"sub\":\"User::\\\"mallory\\\"\"}"
    );
    let forged = sign_raw(&key, &header, dup.as_bytes());
    denied_everywhere(
        &f.srv,
        &ctx,
        &forged,
        "malformed_artifact",
        "",
        "duplicate sub, real key",
    );
    // An extra header parameter and an extra claim, real key.
    let extra_header = canonical(
        &json!({"alg": "EdDSA", "jku": "https://evil.example/jwks", "kid": kid, "typ": "writ+jwt"}),
    );
    denied_everywhere(
        &f.srv,
        &ctx,
        &sign_raw(&key, &extra_header, &canonical(&claims)),
        "malformed_artifact",
        "header",
        "extra header field",
    );
    let mut extra_claim = claims.clone();
    extra_claim["admin"] = json!(true);
    denied_everywhere(
        &f.srv,
        &ctx,
        &sign_raw(&key, &header, &canonical(&extra_claim)),
        "malformed_artifact",
        "claim",
        "extra claim",
    );
}

#[test]
fn other_serializations_are_malformed_artifact() {
    let f = fixture();
    let ctx = Ctx::default();
    let (h, p, s) = parts(&f.writ);
    let json_form = json!({"protected": h, "payload": p, "signature": s}).to_string();
    let general_form =
        json!({"payload": p, "signatures": [{"protected": h, "signature": s}]}).to_string();
    let cases: Vec<(&str, String)> = vec![
        ("JWS JSON flattened serialization", json_form),
        ("JWS JSON general serialization", general_form),
        ("four parts", format!("{}.{s}", f.writ)),
        ("two parts", format!("{h}.{p}")),
        ("detached payload", format!("{h}..{s}")),
        ("a single word", "writ".into()),
        ("only dots", "..".into()),
        ("oversized", format!("{h}.{}.{s}", "A".repeat(17 * 1024))),
        (
            "short signature",
            format!("{h}.{p}.{}", b64(&unb64(&s)[..63])),
        ),
        (
            "long signature",
            format!("{h}.{p}.{}", b64(&[unb64(&s), vec![0]].concat())),
        ),
    ];
    for (name, forged) in cases {
        denied_everywhere(&f.srv, &ctx, &forged, "malformed_artifact", "", name);
    }
}

#[test]
fn missing_artifact() {
    let f = fixture();
    let v = f.srv.verify(&json!({"writ": ""}));
    assert_eq!(
        (v["valid"].as_bool(), v["reason"].as_str()),
        (Some(false), Some("missing_artifact")),
        "{v}"
    );
    let v = f.srv.verify(&json!({}));
    assert_eq!(
        (v["valid"].as_bool(), v["reason"].as_str()),
        (Some(false), Some("missing_artifact")),
        "{v}"
    );
    denied_everywhere(
        &f.srv,
        &Ctx::default(),
        "",
        "missing_artifact",
        "no writ",
        "empty writ",
    );
    // Starting an execution no writ was issued for.
    let r = f.srv.start_execution(&f.agent, &"ab".repeat(16));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["reason"], "missing_artifact", "{}", r.text());
    let out = f
        .srv
        .cli(Some(&f.agent), &["execution", "start", &"cd".repeat(16)]);
    out.expect_denied("missing_artifact", "writ execution start of an unknown jti");
}

// ---------------------------------------------------------------- bindings

#[test]
fn audience_request_and_environment_bindings() {
    let f = fixture();
    let good = Ctx {
        request: Some(json!({"argv": ["/usr/bin/true"]})),
        environment: Some(json!({"host": "host-a", "cwd": "/srv"})),
        audience: Some(AUD.into()),
        skew_secs: None,
        pop: None,
    };
    valid_everywhere(&f.srv, &good, &f.writ, "all bindings match");
    // The request is compared by its RFC 8785 digest: key order is irrelevant.
    let reordered = Ctx {
        environment: Some(serde_json::from_str(r#"{"cwd":"/srv","host":"host-a"}"#).unwrap()),
        ..good.clone()
    };
    valid_everywhere(
        &f.srv,
        &reordered,
        &f.writ,
        "environment in another key order",
    );

    let other_aud = Ctx {
        audience: Some("exec@host-b".into()),
        ..good.clone()
    };
    denied_everywhere(
        &f.srv,
        &other_aud,
        &f.writ,
        "audience_mismatch",
        "exec@host-b",
        "other audience",
    );
    let other_req = Ctx {
        request: Some(json!({"argv": ["/usr/bin/true", "--now"]})),
        ..good.clone()
    };
    denied_everywhere(
        &f.srv,
        &other_req,
        &f.writ,
        "request_mismatch",
        "binds request",
        "other request",
    );
    let other_req = Ctx {
        request: Some(json!({"argv": ["/usr/bin/rm"]})),
        ..good.clone()
    };
    denied_everywhere(
        &f.srv,
        &other_req,
        &f.writ,
        "request_mismatch",
        "binds request",
        "other command",
    );
    let other_env = Ctx {
        environment: Some(json!({"host": "host-b", "cwd": "/srv"})),
        ..good.clone()
    };
    denied_everywhere(
        &f.srv,
        &other_env,
        &f.writ,
        "environment_mismatch",
        "binds environment",
        "other host",
    );
    let no_env = Ctx {
        environment: Some(json!({})),
        ..good.clone()
    };
    denied_everywhere(
        &f.srv,
        &no_env,
        &f.writ,
        "environment_mismatch",
        "binds environment",
        "environment missing facts",
    );
    // Audience is checked before request, request before environment.
    let all_wrong = Ctx {
        request: Some(json!({"argv": ["x"]})),
        environment: Some(json!({"host": "x"})),
        audience: Some("x".into()),
        skew_secs: None,
        pop: None,
    };
    denied_everywhere(
        &f.srv,
        &all_wrong,
        &f.writ,
        "audience_mismatch",
        "",
        "all wrong",
    );
}

// ---------------------------------------------------------------- state: replay, revocation, expiry, policy

#[test]
fn replayed_after_start() {
    let f = fixture();
    let r = f.srv.start_execution(&f.agent, &f.jti);
    assert_eq!(r.status, 200, "first start: {}", r.text());
    let first_index = r.json()["log_index"].as_u64().unwrap();
    let r = f.srv.start_execution(&f.agent, &f.jti);
    assert_eq!(r.status, 403, "second start: {}", r.text());
    let v = r.json();
    assert_eq!(v["reason"], "replayed", "{v}");
    assert!(v["message"].as_str().unwrap().contains(&f.jti), "{v}");
    // A third start, through the CLI.
    let out = f.srv.cli(Some(&f.agent), &["execution", "start", &f.jti]);
    out.expect_denied("replayed", "writ execution start, third time");
    // Verification after the start: the nonce is spent.
    denied_everywhere(
        &f.srv,
        &Ctx {
            audience: Some(AUD.into()),
            ..Ctx::default()
        },
        &f.writ,
        "replayed",
        "already spent",
        "verify after start",
    );
    // Exactly one start is in the log.
    let starts: Vec<Value> = f
        .srv
        .log_entries()
        .into_iter()
        .filter(|e| e["entry"]["type"] == "execution_start" && e["entry"]["jti"] == f.jti.as_str())
        .collect();
    assert_eq!(starts.len(), 1, "{starts:#?}");
    assert_eq!(starts[0]["index"], first_index);

    // Many concurrent starts of a fresh writ: exactly one wins.
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["lifetime_secs"] = json!(600);
    let (_, jti2, _) = f.srv.authorize_ok(&f.agent, &req);
    let statuses: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let r = f.srv.start_execution(&f.agent, &jti2);
                    (r.status, r.json())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wins = statuses.iter().filter(|(st, _)| *st == 200).count();
    assert_eq!(wins, 1, "{statuses:#?}");
    for (st, v) in statuses.iter().filter(|(st, _)| *st != 200) {
        assert_eq!((*st, v["reason"].as_str()), (403, Some("replayed")), "{v}");
    }
    // A finished execution cannot be finished again, nor restarted.
    let r = f.srv.post(
        &format!("/v1/executions/{jti2}/finish"),
        Some(&f.agent),
        &json!({"exit_status": 0, "duration_ms": 3}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = f.srv.post(
        &format!("/v1/executions/{jti2}/finish"),
        Some(&f.agent),
        &json!({"exit_status": 0}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    let r = f.srv.start_execution(&f.agent, &jti2);
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (403, json!("replayed")),
        "{}",
        r.text()
    );
}

#[test]
fn revoked_writ_subtree_and_principal() {
    let f = fixture();
    let srv = &f.srv;
    let ctx = Ctx::default();
    // A writ revoked by jti.
    let r = srv.post(
        "/v1/revocations",
        Some(&srv.admin_token),
        &json!({"jti": f.jti, "reason": "test"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["revoked"], json!([f.jti]));
    denied_everywhere(srv, &ctx, &f.writ, "revoked", &f.jti, "revoked writ");
    let r = srv.start_execution(&f.agent, &f.jti);
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (403, json!("revoked")),
        "start of a revoked writ: {}",
        r.text()
    );

    // A parent revoked with its subtree: the child is revoked too.
    let mut preq = exec_req(&["/usr/bin/true"], AUD);
    preq["lifetime_secs"] = json!(600);
    let (_pw, pjti, _) = srv.authorize_ok(&f.agent, &preq);
    assert_eq!(srv.start_execution(&f.agent, &pjti).status, 200);
    let mut creq = exec_req(&["/usr/bin/echo", "hi"], AUD);
    creq["parent"] = json!(pjti);
    let (cw, cjti, _) = srv.authorize_ok(&f.agent, &creq);
    valid_everywhere(srv, &ctx, &cw, "child before revocation");
    let out = srv.cli(
        Some(&srv.admin_token),
        &["revoke", "--jti", &pjti, "--json"],
    );
    out.expect_code(0, "writ revoke --jti");
    // The revocation names its target; the child is revoked through it.
    let revoked = out.json()["revoked"].clone();
    assert_eq!(revoked, json!([pjti]), "the revocation names its target");
    denied_everywhere(
        srv,
        &ctx,
        &cw,
        "revoked",
        &cjti,
        "child of a revoked parent",
    );

    // A principal revoked: its live writs and its future requests.
    let bob = srv.add_principal("Agent::\"bob\"");
    let (bw, _, _) = srv.authorize_ok(&bob, &exec_req(&["/usr/bin/true"], AUD));
    valid_everywhere(srv, &ctx, &bw, "bob's writ before revocation");
    let r = srv.post(
        "/v1/revocations",
        Some(&srv.admin_token),
        &json!({"principal": "Agent::\"bob\""}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    denied_everywhere(
        srv,
        &ctx,
        &bw,
        "revoked",
        "Agent::\"bob\"",
        "writ of a revoked principal",
    );
    // Its token no longer authenticates: refused before anything is
    // decided (and so not logged: a revoked token cannot write to the log).
    let r = srv.authorize(&bob, &exec_req(&["/usr/bin/true"], AUD));
    let v = r.json();
    assert_eq!(
        (r.status, v["decision"].as_str(), v["reason"].as_str()),
        (401, Some("deny"), Some("unauthenticated")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("is revoked"), "{v}");
    assert!(v.get("log_index").is_none(), "{v}");
    let out = srv.cli(
        Some(&bob),
        &["authorize", "--resource", "Command::\"/usr/bin/true\""],
    );
    out.expect_denied("unauthenticated", "writ authorize by a revoked principal");
    // Revocation needs an administrator.
    let r = srv.post("/v1/revocations", Some(&f.agent), &json!({"jti": cjti}));
    assert_eq!(r.status, 403, "{}", r.text());
}

#[test]
fn expired() {
    let srv = Server::start_with(&["--skew-secs", "0"]);
    // A parent started now, which expires a few seconds from now (time
    // enough to start it under a 0 s skew on a slow machine): at the end,
    // a child of it is asked for after its expiry.
    let mut preq = exec_req(&["/usr/bin/true"], AUD);
    preq["lifetime_secs"] = json!(4);
    let (_, pjti, _) = srv.authorize_ok(&srv.admin_token, &preq);
    assert_eq!(srv.start_execution(&srv.admin_token, &pjti).status, 200);
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["lifetime_secs"] = json!(1);
    let (writ, jti, body) = srv.authorize_ok(&srv.admin_token, &req);
    let exp = body["exp"].as_u64().unwrap();
    assert_eq!(claims_of(&writ)["exp"], exp);
    assert_eq!(exp - claims_of(&writ)["nbf"].as_u64().unwrap(), 1);
    // Wait until the clock is past exp (skew 0), with a margin.
    loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        if now >= exp as f64 + 0.2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ctx = Ctx {
        audience: Some(AUD.into()),
        skew_secs: Some(0),
        ..Ctx::default()
    };
    denied_everywhere(
        &srv,
        &ctx,
        &writ,
        "expired",
        "expired at",
        "1-second writ, later",
    );
    let r = srv.start_execution(&srv.admin_token, &jti);
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (403, json!("expired")),
        "{}",
        r.text()
    );
    // A child of an expired parent: lineage_broken.
    let parent_exp = srv
        .log_entries()
        .iter()
        .find(|e| e["entry"]["jti"] == pjti.as_str())
        .unwrap()["entry"]["exp"]
        .as_u64()
        .unwrap();
    while SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        < parent_exp as f64 + 0.2
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut child = exec_req(&["/usr/bin/true"], AUD);
    child["parent"] = json!(pjti);
    let r = srv.authorize(&srv.admin_token, &child);
    let v = r.json();
    assert_eq!(
        (r.status, v["reason"].as_str()),
        (403, Some("lineage_broken")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("expired"), "{v}");
}

#[test]
fn policy_mismatch_after_a_new_bundle_is_activated() {
    let f = fixture();
    let srv = &f.srv;
    let old_policy = srv.active_policy();
    assert_eq!(claims_of(&f.writ)["writ"]["policy"], old_policy.as_str());
    // A new bundle: the default one plus one more policy.
    let bundle = srv.tmp.path().join("bundle2");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::copy(
        srv.dir.join("policy/default.cedar"),
        bundle.join("default.cedar"),
    )
    .unwrap();
    std::fs::write(
        bundle.join("extra.cedar"),
        "@id(\"nobody-may-cat\")\nforbid (principal == User::\"nobody\", action, resource);\n",
    )
    .unwrap();
    let out = srv.cli(
        Some(&srv.admin_token),
        &["policy", "activate", bundle.to_str().unwrap()],
    );
    out.expect_code(0, "writ policy activate");
    let new_policy = srv.active_policy();
    assert_ne!(new_policy, old_policy);
    assert!(out.stdout.contains(&new_policy), "{out:#?}");

    denied_everywhere(
        srv,
        &Ctx::default(),
        &f.writ,
        "policy_mismatch",
        &old_policy,
        "writ of the old bundle",
    );
    // A writ of the new bundle is fine.
    let (w2, _, _) = srv.authorize_ok(&f.agent, &exec_req(&["/usr/bin/true"], AUD));
    assert_eq!(claims_of(&w2)["writ"]["policy"], new_policy.as_str());
    valid_everywhere(srv, &Ctx::default(), &w2, "writ of the new bundle");
}

// ---------------------------------------------------------------- authorize denials

#[test]
fn unauthenticated() {
    let srv = Server::start();
    let before = srv.log_entries().len();
    let req = exec_req(&["/usr/bin/true"], AUD);
    for (what, token) in [
        ("no token", None),
        ("wrong token", Some("writ_not-a-real-token")),
        ("empty token", Some("")),
    ] {
        let r = srv.post("/v1/authorize", token, &req);
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        let v = r.json();
        assert_eq!(
            (v["decision"].as_str(), v["reason"].as_str()),
            (Some("deny"), Some("unauthenticated")),
            "{what}: {v}"
        );
        assert!(v.get("writ").is_none(), "{v}");
    }
    // A token that is too long is not even hashed.
    let r = srv.authorize(&"x".repeat(300), &req);
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (401, json!("unauthenticated"))
    );
    // Other token-protected routes.
    for path in ["/v1/principals", "/v1/revocations", "/access/v1/evaluation"] {
        let r = srv.post(path, Some("writ_wrong"), &json!({}));
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert_eq!(r.json()["reason"], "unauthenticated", "{path}");
    }
    let r = srv.get("/v1/policies", None);
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (401, json!("unauthenticated"))
    );
    // The CLI with a wrong token.
    let out = srv.cli(
        Some("writ_wrong"),
        &["authorize", "--resource", "Command::\"/usr/bin/true\""],
    );
    out.expect_denied("unauthenticated", "writ authorize with a wrong token");
    assert!(out.stdout.is_empty(), "{out:#?}");
    // Nothing was allowed (and nobody could be named in a log entry).
    let after = srv.log_entries();
    assert!(
        after[before..]
            .iter()
            .all(|e| e["entry"]["decision"] != "allow"),
        "{after:#?}"
    );
}

#[test]
fn policy_denied_names_the_deciding_policy() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let r = srv.authorize(&agent, &exec_req(&["/usr/bin/rm", "-rf", "/"], AUD));
    assert_eq!(r.status, 403, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["decision"].as_str(), v["reason"].as_str()),
        (Some("deny"), Some("policy_denied")),
        "{v}"
    );
    assert_eq!(v["message"], "no policy permits this request");
    assert!(v.get("writ").is_none());
    let idx = v["log_index"].as_u64().expect("a denial is logged");
    let e = &srv.log_entries()[idx as usize]["entry"];
    assert_eq!(
        (
            e["type"].as_str(),
            e["decision"].as_str(),
            e["reason"].as_str()
        ),
        (Some("decision"), Some("deny"), Some("policy_denied")),
        "{e}"
    );
    assert_eq!(e["resource"], "Command::\"/usr/bin/rm\"");
    assert_eq!(e["principal"], "Agent::\"planner\"");

    // A forbid names itself.
    let mut net = exec_req(&["/usr/bin/true"], AUD);
    net["scope"] = json!({"net": true});
    let r = srv.authorize(&agent, &net);
    let v = r.json();
    assert_eq!(
        (r.status, v["reason"].as_str()),
        (403, Some("policy_denied")),
        "{v}"
    );
    assert_eq!(v["message"], "forbidden by exec-no-network");

    // The CLI: exit 10 and the reason on stderr.
    let out = srv.cli(
        Some(&agent),
        &[
            "authorize",
            "--resource",
            "Command::\"/usr/bin/rm\"",
            "--request",
            r#"{"argv":["/usr/bin/rm"]}"#,
        ],
    );
    out.expect_denied("policy_denied", "writ authorize rm");
    assert!(
        out.stderr
            .starts_with("denied: policy_denied: no policy permits this request"),
        "{out:#?}"
    );
    let out = srv.cli(
        Some(&agent),
        &[
            "authorize",
            "--resource",
            "Command::\"/usr/bin/true\"",
            "--net",
        ],
    );
    out.expect_denied("policy_denied", "writ authorize --net");
    assert!(out.stderr.contains("exec-no-network"), "{out:#?}");
    // And an allow for contrast: exit 0, the writ on stdout.
    let out = srv.cli(
        Some(&agent),
        &["authorize", "--resource", "Command::\"/usr/bin/true\""],
    );
    out.expect_code(0, "writ authorize true");
    assert_eq!(out.stdout.trim().split('.').count(), 3, "{out:#?}");
    assert!(out.stderr.contains("allow: jti"), "{out:#?}");
}

#[test]
fn lineage_broken() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let deny = |req: &Value, code: &str, msg: &str, what: &str| {
        let r = srv.authorize(&agent, req);
        let v = r.json();
        assert_eq!(
            (r.status, v["decision"].as_str(), v["reason"].as_str()),
            (403, Some("deny"), Some(code)),
            "{what}: {v}"
        );
        assert!(v["message"].as_str().unwrap().contains(msg), "{what}: {v}");
        assert!(v["log_index"].is_u64(), "{what}: the denial is logged: {v}");
    };
    let unknown = "0123456789abcdef0123456789abcdef";
    let mut child = exec_req(&["/usr/bin/true"], AUD);
    child["parent"] = json!(unknown);
    deny(&child, "lineage_broken", "unknown", "unknown parent");
    let out = srv.cli(
        Some(&agent),
        &[
            "authorize",
            "--resource",
            "Command::\"/usr/bin/true\"",
            "--parent",
            unknown,
        ],
    );
    out.expect_denied("lineage_broken", "writ authorize --parent unknown");

    // A parent that was issued but never started.
    let mut preq = exec_req(&["/usr/bin/true"], AUD);
    preq["lifetime_secs"] = json!(600);
    let (_, pjti, _) = srv.authorize_ok(&agent, &preq);
    child["parent"] = json!(pjti);
    deny(
        &child,
        "lineage_broken",
        "never started",
        "parent not started",
    );
    // Started: the child is allowed.
    assert_eq!(srv.start_execution(&agent, &pjti).status, 200);
    let (cw, _, _) = srv.authorize_ok(&agent, &child);
    let lineage = &claims_of(&cw)["writ"]["lineage"];
    assert_eq!(lineage, &json!({"parent": pjti, "root": pjti, "depth": 1}));
    // Finished: no more children.
    let r = srv.post(
        &format!("/v1/executions/{pjti}/finish"),
        Some(&agent),
        &json!({"exit_status": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    deny(&child, "lineage_broken", "finished", "parent finished");
    // A revoked parent.
    let (_, p2, _) = srv.authorize_ok(&agent, &preq);
    assert_eq!(srv.start_execution(&agent, &p2).status, 200);
    assert_eq!(
        srv.post(
            "/v1/revocations",
            Some(&srv.admin_token),
            &json!({"jti": p2})
        )
        .status,
        200
    );
    child["parent"] = json!(p2);
    deny(&child, "lineage_broken", "revoked", "parent revoked");

    // A validly signed writ whose lineage claims do not link.
    let key = srv.writ_key();
    let (w, _, _) = srv.authorize_ok(&agent, &exec_req(&["/usr/bin/true"], AUD));
    let (h, _, _) = parts(&w);
    let mut c = claims_of(&w);
    c["writ"]["lineage"]["depth"] = json!(2);
    let forged = sign_raw(&key, &unb64(&h), &canonical(&c));
    denied_everywhere(
        &srv,
        &Ctx::default(),
        &forged,
        "lineage_broken",
        "do not link",
        "unlinked lineage claims",
    );
}

#[test]
fn scope_escalation() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let mut preq = exec_req(&["/usr/bin/ls", "/data"], AUD);
    preq["scope"] = json!({"read": ["/data"]});
    preq["lifetime_secs"] = json!(600);
    let (_, pjti, _) = srv.authorize_ok(&agent, &preq);
    assert_eq!(srv.start_execution(&agent, &pjti).status, 200);
    let child = |scope: Value, lifetime: Option<u64>| {
        let mut c = exec_req(&["/usr/bin/cat", "/data/x"], AUD);
        c["parent"] = json!(pjti);
        c["scope"] = scope;
        if let Some(l) = lifetime {
            c["lifetime_secs"] = json!(l);
        }
        c
    };
    for (what, scope, lifetime) in [
        (
            "write where the parent may only read",
            json!({"write": ["/data"]}),
            None,
        ),
        ("read outside the parent", json!({"read": ["/etc"]}), None),
        (
            "a sibling path with the same prefix",
            json!({"read": ["/data2"]}),
            None,
        ),
        (
            "the parent of the parent's path",
            json!({"read": ["/"]}),
            None,
        ),
        (
            "network the parent lacks",
            json!({"read": ["/data"], "net": true}),
            None,
        ),
        (
            "a longer life than the parent has left",
            json!({"read": ["/data"]}),
            Some(3600),
        ),
    ] {
        let r = srv.authorize(&agent, &child(scope, lifetime));
        let v = r.json();
        assert_eq!(
            (r.status, v["decision"].as_str(), v["reason"].as_str()),
            (403, Some("deny"), Some("scope_escalation")),
            "{what}: {v}"
        );
        assert!(v["log_index"].is_u64(), "{what}: logged: {v}");
    }
    let r = srv.authorize(&agent, &child(json!({"write": ["/data"]}), None));
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("not inside parent scope"),
        "{}",
        r.text()
    );
    // Inside the parent's scope: allowed, and the lifetime is capped by the parent's.
    let (cw, _, cbody) = srv.authorize_ok(&agent, &child(json!({"read": ["/data/x"]}), None));
    assert_eq!(
        claims_of(&cw)["writ"]["scope"],
        json!({"read": ["/data/x"], "write": [], "net": false})
    );
    let parent_exp = srv
        .log_entries()
        .iter()
        .find(|e| e["entry"]["jti"] == pjti.as_str() && e["entry"]["type"] == "decision")
        .unwrap()["entry"]["exp"]
        .as_u64()
        .unwrap();
    assert!(cbody["exp"].as_u64().unwrap() <= parent_exp);
    // The CLI.
    let out = srv.cli(
        Some(&agent),
        &[
            "authorize",
            "--resource",
            "Command::\"/usr/bin/cat\"",
            "--parent",
            &pjti,
            "--write",
            "/data",
        ],
    );
    out.expect_denied(
        "scope_escalation",
        "writ authorize --write beyond the parent",
    );
}

#[test]
fn authority_unavailable_fails_closed() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["lifetime_secs"] = json!(600);
    let (_, jti, _) = srv.authorize_ok(&agent, &req);
    let size_before = srv.log_entries().len();
    // Make every append to the log fail, under the running server.
    let db = rusqlite::Connection::open(srv.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch("CREATE TRIGGER writ_test_fail BEFORE INSERT ON entries BEGIN SELECT RAISE(FAIL, 'disk on fire'); END;")
        .unwrap();

    for (what, req) in [
        ("allowed request", exec_req(&["/usr/bin/true"], AUD)),
        ("denied request", exec_req(&["/usr/bin/rm"], AUD)),
    ] {
        let r = srv.authorize(&agent, &req);
        let v = r.json();
        assert_eq!(r.status, 503, "{what}: {v}");
        assert_eq!(
            (v["decision"].as_str(), v["reason"].as_str()),
            (Some("deny"), Some("authority_unavailable")),
            "{what}: {v}"
        );
        assert!(
            v.get("writ").is_none() && v.get("log_index").is_none(),
            "{what}: {v}"
        );
    }
    let out = srv.cli(
        Some(&agent),
        &["authorize", "--resource", "Command::\"/usr/bin/true\""],
    );
    out.expect_denied(
        "authority_unavailable",
        "writ authorize with a failing store",
    );
    assert!(out.stdout.is_empty(), "no writ printed: {out:#?}");
    // The AuthZEN door fails closed too.
    let r = srv.post(
        "/access/v1/evaluation",
        Some(&agent),
        &json!({"action": {"name": "exec"}, "resource": {"type": "Command", "id": "/usr/bin/true"}}),
    );
    assert_eq!(r.json()["decision"], false, "{}", r.text());
    // Spending a nonce needs the log too.
    let r = srv.start_execution(&agent, &jti);
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (503, json!("authority_unavailable")),
        "{}",
        r.text()
    );
    assert_eq!(srv.log_entries().len(), size_before, "nothing was appended");

    // Once the store works again, so does the authority (and the failed start did not spend the nonce).
    db.execute_batch("DROP TRIGGER writ_test_fail;").unwrap();
    srv.authorize_ok(&agent, &exec_req(&["/usr/bin/true"], AUD));
    assert_eq!(srv.start_execution(&agent, &jti).status, 200);
}

/// Regression guard (a bug found in review): `POST /v1/keys/rotate` stores the new private key and repoints
/// `keys/current` at it (routes.rs `rotate_key` calls the key saver, i.e.
/// `DataDir::save_writ_key`, before `Authority::rotate_key` commits). When the
/// store then refuses the rotation (503 authority_unavailable), `keys/current`
/// names a key the store never recorded, and the data dir can no longer be
/// opened: `writ serve` and `writ verify` fail with "signing key ... is not an
/// active writ key of this store", even after the store recovers.
#[test]
fn a_failed_key_rotation_leaves_the_data_dir_usable() {
    let srv = Server::start();
    let (writ, _, _) = srv.authorize_ok(&srv.admin_token, &exec_req(&["/usr/bin/true"], AUD));
    srv.cli(None, &["verify", &writ])
        .expect_code(0, "local verify before");
    let db = rusqlite::Connection::open(srv.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch("CREATE TRIGGER writ_test_fail BEFORE INSERT ON entries BEGIN SELECT RAISE(FAIL, 'disk on fire'); END;")
        .unwrap();
    let r = srv.post("/v1/keys/rotate", Some(&srv.admin_token), &json!({}));
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (503, json!("authority_unavailable")),
        "{}",
        r.text()
    );
    db.execute_batch("DROP TRIGGER writ_test_fail;").unwrap();
    // The rotation did not happen: the server still signs with the old key...
    let (w2, _, _) = srv.authorize_ok(&srv.admin_token, &exec_req(&["/usr/bin/true"], AUD));
    assert_eq!(header_of(&w2)["kid"], srv.init["writ_kid"]);
    // ...so the data dir must still open with it.
    srv.cli(None, &["verify", &writ])
        .expect_code(0, "local verify after a failed rotation");
}

// ---------------------------------------------------------------- holder

/// A holder-bound writ (`cnf.jkt`) is good only with a fresh proof by its
/// holder, for the use at hand, once: at verify (all three doors), start,
/// renew and finish. A thief holding the writ, and even the principal's
/// token, gets `holder_mismatch` (exit status 27).
#[test]
fn holder_mismatch() {
    use writ_artifact::pop::{HolderKey, PopUse};
    let f = fixture();
    let srv = &f.srv;
    let holder = HolderKey::generate(std::sync::Arc::new(OsEntropy)).unwrap();
    let thief = HolderKey::generate(std::sync::Arc::new(OsEntropy)).unwrap();
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["lifetime_secs"] = json!(600);
    req["cnf"] = json!({"jwk": holder.jwk()});
    let (writ, jti, _) = srv.authorize_ok(&f.agent, &req);
    assert_eq!(claims_of(&writ)["cnf"], json!({"jkt": holder.jkt()}));
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let proof = |k: &HolderKey, u: PopUse| k.prove(&jti, AUD, u, now()).unwrap();
    let ctx = |pop: Option<String>| Ctx {
        audience: Some(AUD.into()),
        pop,
        ..Ctx::default()
    };
    // Verify: no proof, the thief's proof, a proof for another use, a stale
    // one; each through every door.
    for (pop, msg, what) in [
        (None, "no proof of possession", "no proof"),
        (
            Some(proof(&thief, PopUse::Verify)),
            "is bound to",
            "another key's proof",
        ),
        (
            Some(proof(&holder, PopUse::Start)),
            "not verify",
            "a proof for start",
        ),
        (
            Some(
                holder
                    .prove(&jti, AUD, PopUse::Verify, now() - 120)
                    .unwrap(),
            ),
            "not within",
            "a stale proof",
        ),
    ] {
        denied_everywhere(srv, &ctx(pop), &writ, "holder_mismatch", msg, what);
    }
    // A fresh proof by the holder: valid through each door. A verification
    // spends nothing, so its proof is good again within its window
    // (docs/spec/holder.md); starts, renewals and finishes spend theirs.
    let good = proof(&holder, PopUse::Verify);
    for _ in 0..2 {
        let v = srv.verify(&ctx(Some(good.clone())).body(&writ));
        assert_eq!(v["valid"], true, "{v}");
    }
    for online in [false, true] {
        run_verify_cli(
            srv,
            &ctx(Some(proof(&holder, PopUse::Verify))),
            &writ,
            online,
        )
        .expect_code(0, &format!("writ verify --pop, online={online}"));
    }
    // Start, renew and finish: the principal's own token is not enough.
    let exec_path = |what: &str| format!("/v1/executions/{jti}/{what}");
    let refused = |r: Resp, what: &str| {
        assert_eq!(
            (r.status, r.json()["reason"].as_str().map(str::to_owned)),
            (403, Some("holder_mismatch".to_owned())),
            "{what}: {}",
            r.text()
        );
    };
    refused(srv.start_execution(&f.agent, &jti), "start without a proof");
    f.srv
        .cli(
            Some(&f.agent),
            &[
                "execution",
                "start",
                &jti,
                "--pop",
                &proof(&thief, PopUse::Start),
            ],
        )
        .expect_denied(
            "holder_mismatch",
            "writ execution start with the thief's proof",
        );
    refused(
        srv.post(
            &exec_path("start"),
            Some(&f.agent),
            &json!({"pop": proof(&holder, PopUse::Verify)}),
        ),
        "start with a proof for verify",
    );
    refused(
        srv.post(
            &exec_path("start"),
            Some(&f.agent),
            &json!({"writ": writ, "audience": AUD, "pop": proof(&thief, PopUse::Start)}),
        ),
        "start re-verifying the writ, with the thief's proof",
    );
    let started = srv.post(
        &exec_path("start"),
        Some(&f.agent),
        &json!({"pop": proof(&holder, PopUse::Start)}),
    );
    assert_eq!(
        started.status,
        200,
        "start by the holder: {}",
        started.text()
    );
    refused(
        srv.post(&exec_path("renew"), Some(&f.agent), &json!({})),
        "renew without a proof",
    );
    let renewal = proof(&holder, PopUse::Renew);
    let r = srv.post(
        &exec_path("renew"),
        Some(&f.agent),
        &json!({"pop": renewal}),
    );
    assert_eq!(r.status, 200, "renew by the holder: {}", r.text());
    refused(
        srv.post(
            &exec_path("renew"),
            Some(&f.agent),
            &json!({"pop": renewal}),
        ),
        "a renewal's proof replayed",
    );
    refused(
        srv.post(
            &exec_path("finish"),
            Some(&f.agent),
            &json!({"exit_status": 0, "pop": proof(&thief, PopUse::Finish)}),
        ),
        "finish with the thief's proof",
    );
    let r = srv.post(
        &exec_path("finish"),
        Some(&f.agent),
        &json!({"exit_status": 0, "pop": proof(&holder, PopUse::Finish)}),
    );
    assert_eq!(r.status, 200, "finish by the holder: {}", r.text());
    // `writ authorize --holder-jwk` binds the same way; a key that is not
    // a JWK at all is a usage error naming the flag.
    let out = f.srv.cli(
        Some(&f.agent),
        &[
            "authorize",
            "--action",
            "Action::\"exec\"",
            "--resource",
            "Command::\"/usr/bin/true\"",
            "--request",
            r#"{"argv": ["/usr/bin/true"]}"#,
            "--audience",
            AUD,
            "--holder-jwk",
            &serde_json::to_string(&holder.jwk()).unwrap(),
        ],
    );
    out.expect_code(0, "writ authorize --holder-jwk");
    assert_eq!(
        claims_of(out.stdout.trim())["cnf"],
        json!({"jkt": holder.jkt()})
    );
    let out = f.srv.cli(
        Some(&f.agent),
        &[
            "authorize",
            "--action",
            "Action::\"exec\"",
            "--resource",
            "Command::\"/usr/bin/true\"",
            "--request",
            "{}",
            "--audience",
            AUD,
            "--holder-jwk",
            "not json",
        ],
    );
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("--holder-jwk"), "{out:#?}");
    // Not a holder key at all, or a small-order point (under which any
    // signature verifies): a bad request, nothing issued.
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    for jwk in [
        json!({"kty": "EC", "crv": "P-256", "x": "AA"}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&identity_point)}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": holder.jwk().x, "d": "AA"}),
    ] {
        let mut bad = exec_req(&["/usr/bin/true"], AUD);
        bad["cnf"] = json!({ "jwk": jwk });
        let r = srv.authorize(&f.agent, &bad);
        assert_eq!(r.status, 400, "{jwk}: {}", r.text());
        assert!(r.text().contains("cnf"), "{}", r.text());
    }
    // Proofs signed by the right key in any other shape than the one.
    let key = WritKey::generate(&OsEntropy).unwrap();
    let x = key.jwk().x;
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["cnf"] = json!({"jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}});
    let (writ, jti, _) = srv.authorize_ok(&f.agent, &req);
    let jwk = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    let claims = |n: u8| {
        format!(
            r#"{{"aud":"{AUD}","iat":{},"jti":"{}","use":"verify","writ":"{jti}"}}"#,
            now(),
            format!("{n:02x}").repeat(16)
        )
    };
    let good = format!(r#"{{"alg":"EdDSA","jwk":{jwk},"typ":"writ-pop+jwt"}}"#);
    let bad_headers = [
        format!(r#"{{"alg":"none","jwk":{jwk},"typ":"writ-pop+jwt"}}"#),
        format!(r#"{{"alg":"HS256","jwk":{jwk},"typ":"writ-pop+jwt"}}"#),
        format!(r#"{{"alg":"EdDSA","jwk":{jwk},"typ":"dpop+jwt"}}"#),
        format!(
            r#"{{"alg":"EdDSA","jwk":{{"crv":"Ed25519","d":"AA","kty":"OKP","x":"{x}"}},"typ":"writ-pop+jwt"}}"#
        ),
        format!(r#"{{"alg":"EdDSA","jwk":{jwk},"kid":"k","typ":"writ-pop+jwt"}}"#),
        format!(r#"{{"alg": "EdDSA","jwk":{jwk},"typ":"writ-pop+jwt"}}"#),
        format!(r#"{{"jwk":{jwk},"alg":"EdDSA","typ":"writ-pop+jwt"}}"#),
    ];
    for (i, h) in bad_headers.iter().enumerate() {
        let pop = sign_raw(&key, h.as_bytes(), claims(i as u8 + 1).as_bytes());
        let v = srv.verify(&json!({"writ": writ, "pop": pop}));
        assert_eq!(v["reason"], "holder_mismatch", "{h}: {v}");
    }
    let pop = sign_raw(&key, good.as_bytes(), claims(0x7f).as_bytes());
    let v = srv.verify(&json!({"writ": writ, "pop": pop}));
    assert_eq!(v["valid"], true, "the one shape: {v}");
}

/// A renewal decided again because the state changed under it (another
/// writ revoked meanwhile) spends its holder's proof once: the holder is
/// never told its own fresh proof was already used.
#[test]
fn a_holders_proof_is_spent_once_however_often_its_call_is_decided() {
    use writ_artifact::pop::{HolderKey, PopUse};
    let f = fixture();
    let srv = &f.srv;
    let holder = HolderKey::generate(std::sync::Arc::new(OsEntropy)).unwrap();
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["lifetime_secs"] = json!(600);
    req["cnf"] = json!({"jwk": holder.jwk()});
    req["start"] = json!(true);
    let (_, jti, _) = srv.authorize_ok(&f.agent, &req);
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // Unrelated writs issued and revoked as fast as they go: each
        // revocation changes the state every renewal is decided against.
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (_, other, _) = srv.authorize_ok(&f.agent, &exec_req(&["/usr/bin/true"], AUD));
                let r = srv.post(
                    "/v1/revocations",
                    Some(&srv.admin_token),
                    &json!({"jti": other, "reason": "churn"}),
                );
                assert_eq!(r.status, 200, "{}", r.text());
            }
        });
        let refused: Vec<String> = (0..60)
            .filter_map(|i| {
                let pop = holder.prove(&jti, AUD, PopUse::Renew, now()).unwrap();
                let r = srv.post(
                    &format!("/v1/executions/{jti}/renew"),
                    Some(&f.agent),
                    &json!({"pop": pop}),
                );
                (r.status != 200).then(|| format!("renewal {i}: {}", r.text()))
            })
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(refused.is_empty(), "{refused:#?}");
    });
}

/// A resource whose definition changed since it was pinned:
/// `definition_changed` (exit status 28), logged; the first definition was
/// pinned by the first allowed probe that carried one, in its commit.
#[test]
fn definition_changed() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let ask_as = |definition: Option<Value>, probe: bool| {
        let mut r = exec_req(&["/usr/bin/true"], AUD);
        if let Some(d) = definition {
            r["definition"] = d;
        }
        r["probe"] = json!(probe);
        srv.authorize(&agent, &r)
    };
    let ask = |definition: Option<Value>| ask_as(definition, false);
    // A call carrying a definition of an unpinned resource pins nothing;
    // a denied probe pins nothing.
    let other = json!({"name": "true", "description": "something else"});
    assert_eq!(ask(Some(other.clone())).status, 200);
    let mut rm = exec_req(&["/usr/bin/rm", "-rf", "/"], AUD);
    rm["definition"] = json!({"name": "rm"});
    rm["probe"] = json!(true);
    assert_eq!(srv.authorize(&agent, &rm).status, 403);
    let pins = srv.get("/v1/pins", Some(&srv.admin_token)).json();
    assert_eq!(pins["pins"], json!([]), "{pins}");
    let first = ask_as(
        Some(json!({"name": "true", "description": "does nothing"})),
        true,
    );
    assert_eq!(first.status, 200, "{}", first.text());
    let pin_index = first.json()["log_index"].as_u64().unwrap() as usize + 1;
    let pin = &srv.log_entries()[pin_index]["entry"];
    assert_eq!(
        (pin["type"].as_str(), pin["change"].as_str()),
        (Some("pin"), Some("first_use")),
        "{pin}"
    );
    // What the call carried before the pin is no exemption now.
    assert_eq!(ask(Some(other)).status, 403);
    // The same definition again (keys in another order): allowed.
    let again = ask(Some(json!({"description": "does nothing", "name": "true"})));
    assert_eq!(again.status, 200, "{}", again.text());
    let r = ask(Some(
        json!({"name": "true", "description": "now it does something"}),
    ));
    let v = r.json();
    assert_eq!(
        (r.status, v["reason"].as_str()),
        (403, Some("definition_changed")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("is now sha256:"),
        "{v}"
    );
    let idx = v["log_index"].as_u64().expect("logged") as usize;
    assert_eq!(
        srv.log_entries()[idx]["entry"]["reason"],
        "definition_changed"
    );
    // A caller that sends no definition (a `writ exec`) is not held to the
    // pin another caller set: it could otherwise be stopped by anyone.
    assert_eq!(ask(None).status, 200);
    assert_eq!(
        writ_artifact::ReasonCode::DefinitionChanged.exit_status(),
        28
    );
}
