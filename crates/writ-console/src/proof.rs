//! The proof viewer's checks: a pasted writ's claims and each verification
//! step (run by `writ_artifact::verify` itself, one more condition at a
//! time), its decision entry, the entry's inclusion proof up to the latest
//! signed checkpoint, and the checkpoint's signatures (the log's and the
//! witnesses').

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use writ_artifact::{
    Claims, Denial, HolderCheck, KeyRing, NoStatus, ReasonCode, StatusOracle, VerifyOptions,
};
use writ_log::note::{Note, NoteVerifier, SignedCheckpoint};
use writ_log::{Entry, Hash};

use crate::api::{fail, unavailable};
use crate::state::{Console, Shared};
use crate::summary::summarize;

fn check(name: &str, r: Result<String, Denial>) -> Value {
    match r {
        Ok(detail) => json!({"name": name, "ok": true, "detail": detail}),
        Err(d) => json!({"name": name, "ok": false, "reason": d.reason, "detail": d.message}),
    }
}

fn pending(name: &str, detail: &str) -> Value {
    json!({"name": name, "ok": null, "detail": detail})
}

/// Revocation and nonce state as the authority knows it.
struct Status<'a>(&'a Console);

impl StatusOracle for Status<'_> {
    fn revoked(&self, c: &Claims) -> Result<Option<String>, Denial> {
        Ok(self
            .0
            .authority
            .revoked_status(&c.jti)
            .and_then(|ev| match ev {
                writ_authority::Event::Revocation { reason, .. } => Some(reason),
                _ => None,
            }))
    }
    fn spent(&self, jti: &str) -> Result<bool, Denial> {
        self.0
            .authority
            .reads()
            .execution(jti)
            .map(|e| e.is_some())
            .map_err(|e| Denial::new(ReasonCode::AuthorityUnavailable, e.to_string()))
    }
}

fn writ_checks(c: &Console, token: &str, claims: &Claims) -> Vec<Value> {
    let a = &c.authority;
    let ring = match KeyRing::from_jwks(&a.jwks()) {
        Ok(r) => r,
        Err(e) => {
            return vec![check(
                "signature",
                Err(Denial::new(ReasonCode::AuthorityUnavailable, e.to_string())),
            )]
        }
    };
    let now = a.clock().now_unix_secs();
    let skew = a.config().skew_secs;
    let mut accepted = a.config().extra_accepted_policies.clone();
    accepted.insert(a.active_policy());
    // Each step is the real verifier with one more condition switched on.
    // The holder's proof is not the console's to make: a holder-bound writ
    // says so in its own step.
    let at_nbf = VerifyOptions {
        now_unix_secs: claims.nbf,
        holder: HolderCheck::Inspect,
        ..VerifyOptions::default()
    };
    let window = VerifyOptions {
        now_unix_secs: now,
        skew_secs: skew,
        ..at_nbf.clone()
    };
    let policy = VerifyOptions {
        accepted_policies: Some(accepted),
        ..window.clone()
    };
    let spent = VerifyOptions {
        check_spent: true,
        ..policy.clone()
    };
    let run = |opts: &VerifyOptions, status: &dyn StatusOracle| {
        writ_artifact::verify(token, &ring, opts, status).map(|_| ())
    };
    let holder = check(
        "holder (proof of possession)",
        Ok(match &claims.cnf {
            Some(c) => format!(
                "bound to holder key {}: each use needs a fresh proof signed by it",
                c.jkt
            ),
            None => "not holder-bound: whoever presents it may use it".into(),
        }),
    );
    vec![
        check(
            "signature and claims (Ed25519, known key, exact shape)",
            run(&at_nbf, &NoStatus).map(|()| "verifies against the authority's JWKS".into()),
        ),
        check(
            "validity window (nbf .. exp)",
            run(&window, &NoStatus).map(|()| {
                format!(
                    "valid until {} ({}s left)",
                    claims.exp,
                    claims.exp.saturating_sub(now)
                )
            }),
        ),
        check(
            "policy bundle accepted",
            run(&policy, &NoStatus).map(|()| format!("{} is accepted", claims.writ.policy)),
        ),
        check(
            "not revoked (writ, ancestors, principal)",
            run(&policy, &Status(c)).map(|()| "nothing on its chain is revoked".into()),
        ),
        check(
            "nonce unspent (single use)",
            run(&spent, &Status(c)).map(|()| "not started yet: it can be used once".into()),
        ),
        holder,
    ]
}

fn path_steps(index: u64, size: u64, leaf: &Hash, proof: &[Hash]) -> Vec<Value> {
    // RFC 9162 section 2.1.3.2, step by step, to show each intermediate hash;
    // the verdict is writ_log::merkle::verify_inclusion's.
    let (mut fnode, mut snode) = (index, size.saturating_sub(1));
    let mut r = *leaf;
    let mut out = Vec::new();
    for p in proof {
        let left = fnode & 1 == 1 || fnode == snode;
        if left {
            r = writ_log::node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = writ_log::node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
        out.push(json!({
            "sibling": STANDARD.encode(p),
            "side": if left { "left" } else { "right" },
            "result": STANDARD.encode(r),
        }));
    }
    out
}

/// The log side of a proof: the entry, its inclusion in the latest signed
/// checkpoint, and that checkpoint's signatures.
fn log_proof(c: &Console, index: u64, jti: Option<&str>) -> Value {
    let store = c.authority.reads();
    let mut checks = Vec::new();
    let leaf = match store.entries(index, index.saturating_add(1)) {
        Ok(mut v) if v.len() == 1 => v.remove(0),
        Ok(_) => {
            checks.push(check(
                "decision entry in the log",
                Err(Denial::new(
                    ReasonCode::IntegrityFailure,
                    format!("the log has no entry {index}"),
                )),
            ));
            return json!({"index": index, "checks": checks});
        }
        Err(e) => {
            checks.push(check(
                "decision entry in the log",
                Err(Denial::new(ReasonCode::AuthorityUnavailable, e.to_string())),
            ));
            return json!({"index": index, "checks": checks});
        }
    };
    let mut out = entry_proof(index, jti, &leaf, &mut checks);
    let Some(log) = &c.log else {
        checks.push(pending(
            "signed checkpoint",
            "this server publishes no checkpoints",
        ));
        out["checks"] = json!(checks);
        return out;
    };
    let cp = match store.latest_checkpoint() {
        Ok(Some(cp)) => cp,
        Ok(None) => {
            checks.push(pending(
                "signed checkpoint",
                "no checkpoint has been signed yet",
            ));
            out["checks"] = json!(checks);
            return out;
        }
        Err(e) => {
            checks.push(check(
                "signed checkpoint",
                Err(Denial::new(ReasonCode::AuthorityUnavailable, e.to_string())),
            ));
            out["checks"] = json!(checks);
            return out;
        }
    };
    out["checkpoint"] = json!({"size": cp.size, "time_ms": cp.time_ms, "note": cp.note});
    let signed = SignedCheckpoint::verify(&cp.note, log.verifier());
    checks.push(check(
        "checkpoint signed by the log key",
        signed
            .as_ref()
            .map(|s| format!("{} signed size {}", log.verifier().name, s.checkpoint.size))
            .map_err(|e| Denial::new(ReasonCode::IntegrityFailure, e.to_string())),
    ));
    let root = signed.as_ref().ok().map(|s| s.checkpoint.root);
    inclusion(c, &leaf, cp.size, root, &mut out, &mut checks);
    out["signatures"] = json!(signatures(c, log.verifier(), &cp.note, &mut checks));
    out["checks"] = json!(checks);
    out
}

/// The entry itself: its summary, its fields (unless a decision logged
/// before sealing, whose request is not this public page's to show), and
/// whether its bytes are its stored hash's and the decision that issued
/// writ `jti`.
fn entry_proof(
    index: u64,
    jti: Option<&str>,
    leaf: &writ_store::StoredLeaf,
    checks: &mut Vec<Value>,
) -> Value {
    if leaf.leaf.is_empty() {
        // Erased (a decision logged before sealing held its request): the
        // hash stays, so the proofs below still hold.
        checks.push(pending(
            "decision entry in the log",
            "the content of this entry was erased; its leaf hash stays in the log",
        ));
    }
    let entry = Entry::from_leaf(&leaf.leaf);
    let summary = entry.as_ref().ok().map(|e| summarize(index, e));
    // A decision logged before sealing holds its request: this page is
    // public, so its values are not shown (docs/spec/log.md).
    let raw = match &entry {
        Ok(Entry::Decision(d)) if d.content.is_none() => None,
        Ok(e) => serde_json::to_value(e).ok(),
        Err(_) => None,
    };
    let leaf_ok = writ_log::leaf_hash(&leaf.leaf) == leaf.leaf_hash;
    let entry_check = (!leaf.leaf.is_empty()).then(|| match (&entry, jti) {
        (Err(e), _) => Err(Denial::new(ReasonCode::IntegrityFailure, e.to_string())),
        (Ok(_), _) if !leaf_ok => Err(Denial::new(
            ReasonCode::IntegrityFailure,
            "the stored leaf hash is not the hash of the leaf",
        )),
        (Ok(Entry::Decision(d)), Some(j)) if d.jti.as_deref() != Some(j) => Err(Denial::new(
            ReasonCode::IntegrityFailure,
            format!("entry {index} is not the decision that issued writ {j}"),
        )),
        (Ok(_), _) => Ok(format!(
            "entry {index}, leaf hash {}",
            STANDARD.encode(leaf.leaf_hash)
        )),
    });
    if let Some(entry_check) = entry_check {
        checks.push(check("decision entry in the log", entry_check));
    }
    json!({
        "index": index,
        "entry": summary,
        "raw": raw,
        "leaf_hash": STANDARD.encode(leaf.leaf_hash),
    })
}

/// The entry's inclusion proof in the checkpoint of `size` (whose verified
/// root is `root`), each step shown in `out["path"]`.
fn inclusion(
    c: &Console,
    leaf: &writ_store::StoredLeaf,
    size: u64,
    root: Option<Hash>,
    out: &mut Value,
    checks: &mut Vec<Value>,
) {
    const NAME: &str = "inclusion in the signed checkpoint";
    let index = leaf.index;
    if index >= size {
        checks.push(pending(
            NAME,
            &format!("entry {index} is newer than the latest checkpoint (size {size}); it is covered by the next one"),
        ));
        return;
    }
    let proof = match c.authority.reads().inclusion_proof(index, size) {
        Ok(proof) => proof,
        Err(e) => {
            checks.push(check(
                NAME,
                Err(Denial::new(ReasonCode::AuthorityUnavailable, e.to_string())),
            ));
            return;
        }
    };
    out["path"] = json!(path_steps(index, size, &leaf.leaf_hash, &proof));
    let verdict = match &root {
        Some(root) => {
            if writ_log::merkle::verify_inclusion(index, size, &leaf.leaf_hash, &proof, root) {
                Ok(format!(
                    "{} hashes lead to root {}",
                    proof.len(),
                    STANDARD.encode(root)
                ))
            } else {
                Err(Denial::new(
                    ReasonCode::IntegrityFailure,
                    "the proof does not lead to the checkpoint's root",
                ))
            }
        }
        None => Err(Denial::new(
            ReasonCode::IntegrityFailure,
            "no verified checkpoint root to prove against",
        )),
    };
    out["root"] = json!(root.map(|r| STANDARD.encode(r)));
    checks.push(check(NAME, verdict));
}

/// Every signature line of the checkpoint `note`, and whose it is (the
/// log's, signed by `log_key`, or a witness's); a check per witness.
fn signatures(
    c: &Console,
    log_key: &NoteVerifier,
    note: &str,
    checks: &mut Vec<Value>,
) -> Vec<Value> {
    let mut sigs = Vec::new();
    let Ok(note) = Note::parse(note) else {
        return sigs;
    };
    for s in &note.sigs {
        let mut who = "unknown key";
        let mut valid = Value::Null;
        if s.name == log_key.name && s.key_id == log_key.key_id {
            who = "log";
            valid = json!(note.is_signed_by(log_key));
        }
        for w in &c.witnesses {
            if s.name == w.name && s.key_id == w.key_id {
                who = "witness";
                valid = json!(note.is_signed_by(w));
            }
        }
        sigs.push(json!({"name": s.name, "key_id": format!("{:08x}", s.key_id), "role": who, "valid": valid}));
    }
    for w in &c.witnesses {
        checks.push(check(
            &format!("cosigned by witness {}", w.name),
            if note.is_signed_by(w) {
                Ok("its cosignature/v1 line verifies".into())
            } else {
                Err(Denial::new(
                    ReasonCode::IntegrityFailure,
                    "the latest checkpoint carries no valid cosignature of this witness",
                ))
            },
        ));
    }
    if c.witnesses.is_empty() {
        checks.push(pending(
            "witness cosignatures",
            "this server asks no witness (writ serve --witness)",
        ));
    }
    sigs
}

#[derive(Deserialize)]
pub(crate) struct IndexQuery {
    index: u64,
}

/// `GET /console/api/proof?index=N`: an entry picked from the log.
pub(crate) async fn by_index(
    State(c): State<Shared>,
    q: Result<Query<IndexQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return fail(
            StatusCode::BAD_REQUEST,
            "index must be a non-negative integer",
        );
    };
    let c2 = c.clone();
    match c.readers.run(move || log_proof(&c2, q.index, None)).await {
        Ok(v) => axum::Json(json!({"log": v})).into_response(),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct WritBody {
    writ: String,
}

/// `POST /console/api/proof {writ}`: a pasted writ.
pub(crate) async fn by_writ(
    State(c): State<Shared>,
    body: Result<axum::Json<WritBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(axum::Json(b)) = body else {
        return fail(
            StatusCode::BAD_REQUEST,
            "send {\"writ\": \"<compact JWS>\"}",
        );
    };
    let token = b.writ.trim().to_owned();
    let c2 = c.clone();
    let out = c2.readers.run(move || {
        let decoded = writ_artifact::decode_unverified(&token);
        let (kid, claims) = match decoded {
            Ok(d) => d,
            Err(d) => {
                return json!({"checks": [check("well-formed writ (compact JWS of the exact writ shape)", Err(d))]});
            }
        };
        let mut checks = vec![check(
            "well-formed writ (compact JWS of the exact writ shape)",
            Ok(format!("kid {kid}")),
        )];
        checks.extend(writ_checks(&c, &token, &claims));
        let log = log_proof(&c, claims.writ.log.index, Some(&claims.jti));
        json!({"kid": kid, "claims": claims, "checks": checks, "log": log})
    })
    .await;
    match out {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => unavailable(e),
    }
}
