//! Holder-bound writs: proof of possession (docs/spec/holder.md).
//!
//! A request for a writ may carry a holder's public key (`cnf.jwk`, an
//! Ed25519 OKP JWK); the writ then carries its RFC 7638 thumbprint as
//! `cnf.jkt` (RFC 7800, section 3.1). Every use of such a writ must come with
//! a fresh *proof*: a compact JWS signed by that key, in the one shape below,
//! over the writ's `jti`, its audience, the use it is for and a time:
//!
//! ```text
//! header  {"alg":"EdDSA","jwk":{"crv":"Ed25519","kty":"OKP","x":"..."},"typ":"writ-pop+jwt"}
//! payload {"aud":"<writ aud>","iat":<secs>,"jti":"<32 hex>","use":"start","writ":"<writ jti>"}
//! ```
//!
//! Both are RFC 8785 bytes, so a proof has exactly one encoding. A proof is
//! good for [`POP_WINDOW_SECS`] after its `iat` (plus the verifier's skew,
//! either way) and, where an authority spends it (start, renew, finish),
//! once. Anything else is [`ReasonCode::HolderMismatch`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::canonical;
use crate::env::{Entropy, EntropyError};
use crate::keys::thumbprint;
use crate::reason::{Denial, ReasonCode};

/// Header `typ` of a proof of possession.
pub const POP_TYP: &str = "writ-pop+jwt";
/// A proof longer than this is refused before any parsing.
pub const POP_BYTES_MAX: usize = 2048;
/// How long a proof is good after its `iat`, plus the verifier's clock
/// skew; it may be dated at most the skew ahead of the verifier's clock.
pub const POP_WINDOW_SECS: u64 = 30;

/// What a proof is for: a proof made for one use is refused for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PopUse {
    Start,
    Renew,
    Finish,
    Verify,
}

impl PopUse {
    pub fn as_str(self) -> &'static str {
        match self {
            PopUse::Start => "start",
            PopUse::Renew => "renew",
            PopUse::Finish => "finish",
            PopUse::Verify => "verify",
        }
    }
}

/// The public key of a holder, as a request carries it (`cnf.jwk`): an
/// Ed25519 OKP JWK with exactly these members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolderJwk {
    pub crv: String,
    pub kty: String,
    pub x: String,
}

/// Why a holder's key (`cnf.jwk`, a proof's `jwk`) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HolderKeyError {
    /// A key whose `kty`/`crv` is not `OKP`/`Ed25519`.
    #[error("the holder key is {kty}/{crv}; only OKP/Ed25519 keys are accepted")]
    NotEd25519 { kty: String, crv: String },
    /// An `x` that is not unpadded base64url.
    #[error("the holder key's x is not unpadded base64url: {0}")]
    BadX(String),
    /// An `x` that does not decode to 32 bytes.
    #[error("the holder key's x is not 32 bytes")]
    XLength,
    /// An `x` that is not an Ed25519 curve point.
    #[error("the holder key is not a curve point: {0}")]
    NotCurvePoint(String),
    /// A small-order point, which a signature cannot bind.
    #[error("the holder key is a small-order point")]
    SmallOrder,
}

impl HolderJwk {
    /// The key, after checking it is an Ed25519 public key that is a valid,
    /// not small-order, curve point.
    pub fn verifying_key(&self) -> Result<VerifyingKey, HolderKeyError> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(HolderKeyError::NotEd25519 {
                kty: self.kty.clone(),
                crv: self.crv.clone(),
            });
        }
        let raw = URL_SAFE_NO_PAD
            .decode(&self.x)
            .map_err(|e| HolderKeyError::BadX(e.to_string()))?;
        let bytes: [u8; 32] = raw.try_into().map_err(|_| HolderKeyError::XLength)?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|e| HolderKeyError::NotCurvePoint(e.to_string()))?;
        if key.is_weak() {
            return Err(HolderKeyError::SmallOrder);
        }
        Ok(key)
    }

    /// Its RFC 7638 thumbprint, the writ's `cnf.jkt`.
    pub fn thumbprint(&self) -> Result<String, HolderKeyError> {
        self.verifying_key().map(|k| thumbprint(&k))
    }
}

/// A holder's key pair: made per run by an enforcement point, kept in its
/// memory only, never written anywhere; with the randomness its proofs'
/// ids take.
pub struct HolderKey {
    signing: SigningKey,
    entropy: Arc<dyn Entropy>,
}

impl std::fmt::Debug for HolderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HolderKey")
            .field("jkt", &self.jkt())
            .finish_non_exhaustive()
    }
}

impl HolderKey {
    pub fn generate(entropy: Arc<dyn Entropy>) -> Result<HolderKey, EntropyError> {
        let mut seed = [0u8; 32];
        entropy.fill(&mut seed)?;
        Ok(HolderKey {
            signing: SigningKey::from_bytes(&seed),
            entropy,
        })
    }

    pub fn jwk(&self) -> HolderJwk {
        HolderJwk {
            crv: "Ed25519".into(),
            kty: "OKP".into(),
            x: URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes()),
        }
    }

    pub fn jkt(&self) -> String {
        thumbprint(&self.signing.verifying_key())
    }

    /// A proof that this key's holder is using writ `jti` (for audience
    /// `aud`) for `purpose` at `now_unix_secs`.
    pub fn prove(
        &self,
        jti: &str,
        aud: &str,
        purpose: PopUse,
        now_unix_secs: u64,
    ) -> Result<String, EntropyError> {
        let mut id = [0u8; 16];
        self.entropy.fill(&mut id)?;
        let claims = ProofClaims {
            aud: aud.to_owned(),
            iat: now_unix_secs,
            jti: hex::encode(id),
            use_: purpose,
            writ: jti.to_owned(),
        };
        let payload = canonical::to_canonical_bytes(&claims)
            .map_err(|e| EntropyError(format!("cannot encode a proof: {e}")))?;
        let mut token = URL_SAFE_NO_PAD.encode(header_bytes(&self.jwk().x));
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let sig = self.signing.sign(token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig.to_bytes()));
        Ok(token)
    }
}

/// The claims of a proof, in RFC 8785 member order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofClaims {
    aud: String,
    iat: u64,
    jti: String,
    #[serde(rename = "use")]
    use_: PopUse,
    writ: String,
}

fn header_bytes(x: &str) -> Vec<u8> {
    format!(
        "{{\"alg\":\"EdDSA\",\"jwk\":{{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"{x}\"}},\"typ\":\"{POP_TYP}\"}}"
    )
    .into_bytes()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofHeader {
    #[allow(dead_code)]
    alg: String,
    jwk: HolderJwk,
    #[allow(dead_code)]
    typ: String,
}

/// The writ a proof must be for.
#[derive(Debug, Clone, Copy)]
pub struct Bound<'a> {
    pub jti: &'a str,
    pub aud: &'a str,
    /// The writ's `cnf.jkt`.
    pub jkt: &'a str,
}

/// A proof that passed [`check`]; only this module builds one. Where an
/// authority checks proofs, it spends `proof_jti` of writ `writ` once
/// (until `until`).
#[derive(Debug, Clone)]
pub struct ProvenHolder {
    writ: String,
    proof_jti: String,
    until: u64,
}

impl ProvenHolder {
    /// The `jti` of the writ the proof is for.
    pub fn writ(&self) -> &str {
        &self.writ
    }
    /// The proof's own `jti`: 32 lowercase hex digits.
    pub fn proof_jti(&self) -> &str {
        &self.proof_jti
    }
    /// Unix seconds after which the proof is refused anyway.
    pub fn until(&self) -> u64 {
        self.until
    }
}

fn mismatch(msg: impl Into<String>) -> Denial {
    Denial::new(ReasonCode::HolderMismatch, msg)
}

/// Check `proof` is a fresh proof by the holder of `bound.jkt` for using
/// writ `bound.jti` for `purpose`. Every failure is `holder_mismatch`.
pub fn check(
    proof: &str,
    bound: Bound<'_>,
    purpose: PopUse,
    now_unix_secs: u64,
    skew_secs: u64,
) -> Result<ProvenHolder, Denial> {
    if proof.is_empty() {
        return Err(mismatch(format!(
            "writ {} is bound to holder key {}; no proof of possession was presented",
            bound.jti, bound.jkt
        )));
    }
    if proof.len() > POP_BYTES_MAX {
        return Err(mismatch(format!(
            "the proof of possession is {} bytes; at most {POP_BYTES_MAX} are accepted",
            proof.len()
        )));
    }
    let mut it = proof.split('.');
    let (Some(h64), Some(p64), Some(s64), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(mismatch(
            "a proof of possession is a compact JWS of exactly three parts",
        ));
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD.decode(part).map_err(|e| {
            mismatch(format!(
                "the proof's {what} is not canonical unpadded base64url: {e}"
            ))
        })
    };
    let header_raw = decode(h64, "header")?;
    let header: ProofHeader = serde_json::from_slice(&header_raw)
        .map_err(|e| mismatch(format!("the proof's header is not {{alg, jwk, typ}}: {e}")))?;
    // The exact bytes: alg EdDSA, typ writ-pop+jwt, jwk {crv, kty, x}, in
    // RFC 8785 form (x, being base64url, needs no escaping).
    let x_ok = header
        .jwk
        .x
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !x_ok || header_bytes(&header.jwk.x) != header_raw {
        return Err(mismatch(format!(
            "the proof's header is not the canonical {{\"alg\":\"EdDSA\",\"jwk\":..,\"typ\":\"{POP_TYP}\"}}"
        )));
    }
    let key = header
        .jwk
        .verifying_key()
        .map_err(|e| mismatch(e.to_string()))?;
    let jkt = thumbprint(&key);
    if jkt != bound.jkt {
        return Err(mismatch(format!(
            "the proof is signed by key {jkt}; writ {} is bound to {}",
            bound.jti, bound.jkt
        )));
    }
    let sig: [u8; 64] = decode(s64, "signature")?
        .try_into()
        .map_err(|_| mismatch("an Ed25519 signature is exactly 64 bytes"))?;
    let signing_input = &proof.as_bytes()[..h64.len() + 1 + p64.len()];
    key.verify_strict(signing_input, &Signature::from_bytes(&sig))
        .map_err(|_| mismatch("the proof's signature does not verify"))?;
    let payload = decode(p64, "payload")?;
    let claims: ProofClaims = serde_json::from_slice(&payload).map_err(|e| {
        mismatch(format!(
            "the proof's claims are not {{aud, iat, jti, use, writ}}: {e}"
        ))
    })?;
    if canonical::to_canonical_bytes(&claims).map_err(mismatch)? != payload {
        return Err(mismatch(
            "the proof's claims are not in RFC 8785 canonical form",
        ));
    }
    if claims.writ != bound.jti || claims.aud != bound.aud {
        return Err(mismatch(format!(
            "the proof is for writ {} at {:?}, not writ {} at {:?}",
            claims.writ, claims.aud, bound.jti, bound.aud
        )));
    }
    if claims.use_ != purpose {
        return Err(mismatch(format!(
            "the proof is for {}, not {}",
            claims.use_.as_str(),
            purpose.as_str()
        )));
    }
    // Made at most the skew ahead of this clock (a proof dated later
    // would stay good, and remembered, longer), and at most the window
    // and the skew behind it.
    let window = POP_WINDOW_SECS.saturating_add(skew_secs);
    if claims.iat > now_unix_secs.saturating_add(skew_secs)
        || now_unix_secs > claims.iat.saturating_add(window)
    {
        return Err(mismatch(format!(
            "the proof was made at {} and it is now {now_unix_secs}: not within the last {window} s",
            claims.iat
        )));
    }
    let jti_ok = claims.jti.len() == 32
        && claims
            .jti
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if !jti_ok {
        return Err(mismatch("the proof's jti is not 32 lowercase hex digits"));
    }
    Ok(ProvenHolder {
        writ: claims.writ,
        proof_jti: claims.jti,
        until: claims.iat.saturating_add(window),
    })
}

#[cfg(test)]
mod tests;
