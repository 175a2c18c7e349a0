//! Issuing and verifying writs. Verification is fail-closed: every path that is
//! not a complete success returns a [`Denial`] with exactly one reason code.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use crate::canonical;
use crate::claims::Claims;
use crate::grant::Grant;
use crate::keys::{KeyRing, WritKey};
use crate::pop::{self, Bound, PopUse, ProvenHolder};
use crate::reason::{Denial, ReasonCode};
use crate::{WRIT_ALG, WRIT_LIFETIME_SECS_MAX, WRIT_TYP};

/// A writ longer than this is refused before any parsing.
pub const WRIT_BYTES_MAX: usize = 16 * 1024;

/// The one accepted protected header. Field order here is irrelevant: the bytes
/// must equal the RFC 8785 form, which orders `alg`, `kid`, `typ`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    kid: String,
    typ: String,
}

/// The RFC 8785 header for `kid`. A kid is a base64url thumbprint (checked by
/// the caller for foreign input), so it needs no escaping.
fn header_bytes(kid: &str) -> Vec<u8> {
    format!("{{\"alg\":\"{WRIT_ALG}\",\"kid\":\"{kid}\",\"typ\":\"{WRIT_TYP}\"}}").into_bytes()
}

/// Sign `claims` with `key`: header and payload are the RFC 8785 bytes, so the
/// writ has exactly one encoding.
pub fn sign(key: &WritKey, claims: &Claims) -> Result<String, canonical::CanonicalError> {
    let h = URL_SAFE_NO_PAD.encode(header_bytes(key.kid()));
    let p = URL_SAFE_NO_PAD.encode(claims.canonical_bytes()?);
    let mut token = String::with_capacity(h.len() + p.len() + 90);
    token.push_str(&h);
    token.push('.');
    token.push_str(&p);
    let sig = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(token)
}

/// Online state a verifier may consult. An error from the oracle is a denial
/// (usually `authority_unavailable`): verification never passes on missing state.
pub trait StatusOracle {
    /// `Some(message)` when the writ, an ancestor in its lineage, or its
    /// principal is revoked.
    fn revoked(&self, claims: &Claims) -> Result<Option<String>, Denial>;
    /// Whether the nonce was already spent by an execution start.
    fn spent(&self, jti: &str) -> Result<bool, Denial>;
    /// Spend a proof of possession: `false` if it was already used. An
    /// offline verifier cannot know, and accepts it (the proof's short
    /// window bounds its use).
    fn spend_proof(&self, _proof: &ProvenHolder) -> Result<bool, Denial> {
        Ok(true)
    }
}

/// Offline verification: nothing is revoked or spent as far as it can know.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoStatus;

impl StatusOracle for NoStatus {
    fn revoked(&self, _: &Claims) -> Result<Option<String>, Denial> {
        Ok(None)
    }
    fn spent(&self, _: &str) -> Result<bool, Denial> {
        Ok(false)
    }
}

/// Clock skew every writ verifier tolerates unless told otherwise, seconds
/// (docs/spec/writ.md).
pub const DEFAULT_SKEW_SECS: u64 = 5;

/// What a verifier expects of a writ beyond its signature.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Current time, seconds since the epoch.
    pub now_unix_secs: u64,
    /// Clock skew tolerated on both `nbf` and `exp`.
    pub skew_secs: u64,
    /// The enforcement point's own audience; `None` skips the check (only for
    /// inspection, never at a gateway).
    pub audience: Option<String>,
    /// `sha256:` digest of the request being executed.
    pub request_digest: Option<String>,
    /// `sha256:` digest of the re-measured environment.
    pub environment_digest: Option<String>,
    /// Policy bundle hashes the verifier accepts; `None` accepts any.
    pub accepted_policies: Option<BTreeSet<String>>,
    /// Whether to ask the oracle if the nonce is spent (online verification).
    pub check_spent: bool,
    /// The proof of possession for a holder-bound writ.
    pub holder: HolderCheck,
}

impl VerifyOptions {
    /// What an enforcement point checks before it runs a request: its own
    /// audience, the request's digest, the default skew, the holder's proof;
    /// offline (no spent check), any policy. Set the other fields after.
    pub fn enforcing(
        now_unix_secs: u64,
        audience: impl Into<String>,
        request_digest: impl Into<String>,
        holder: HolderCheck,
    ) -> Self {
        VerifyOptions {
            now_unix_secs,
            skew_secs: DEFAULT_SKEW_SECS,
            audience: Some(audience.into()),
            request_digest: Some(request_digest.into()),
            holder,
            ..VerifyOptions::default()
        }
    }
}

/// What a verifier has to show that the presenter holds a holder-bound
/// writ's key. A writ without `cnf` needs nothing.
#[derive(Debug, Clone, Default)]
pub enum HolderCheck {
    /// No proof: a holder-bound writ is refused (`holder_mismatch`).
    #[default]
    None,
    /// This proof (a compact JWS, see [`crate::pop`]) for this use.
    Proof { proof: String, purpose: PopUse },
    /// Not checked: only for inspection (the console's proof view), never
    /// at an enforcement point, like `audience: None`.
    Inspect,
}

/// A writ that passed every check. Only [`verify`] builds one, so code that
/// executes an action can demand this type and cannot skip verification.
#[derive(Debug, Clone)]
pub struct VerifiedWrit {
    claims: Claims,
    token: String,
    /// Verified as an enforcement point verifies: its audience, its
    /// request and its holder were checked ([`VerifyOptions::enforcing`]).
    enforced: bool,
}

impl VerifiedWrit {
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
    pub fn jti(&self) -> &str {
        &self.claims.jti
    }
    pub fn token(&self) -> &str {
        &self.token
    }
    /// What this writ lets its enforcement point do: the only way to get
    /// the [`Grant`] a launcher or forwarder demands. Refused
    /// (`integrity_failure`) for a writ verified without its audience, its
    /// request or its holder's proof (an inspection, as the console's):
    /// nothing may run on that.
    pub fn grant(&self) -> Result<Grant, Denial> {
        if !self.enforced {
            return Err(Denial::new(
                ReasonCode::IntegrityFailure,
                "this writ was verified for inspection only (no audience, request or holder check): nothing may run on it",
            ));
        }
        Ok(Grant::of(&self.claims))
    }
}

fn malformed(msg: impl Into<String>) -> Denial {
    Denial::new(ReasonCode::MalformedArtifact, msg)
}

/// Split and decode a compact JWS of the exact writ shape, *without* checking
/// the signature. Used by [`verify`] and by viewers that only display claims.
pub fn decode_unverified(token: &str) -> Result<(String, Claims), Denial> {
    decode_parts(token).map(|p| (p.kid, p.claims))
}

struct Parts<'a> {
    kid: String,
    claims: Claims,
    signing_input: &'a [u8],
    signature: Signature,
}

fn decode_parts(token: &str) -> Result<Parts<'_>, Denial> {
    if token.is_empty() {
        return Err(Denial::new(
            ReasonCode::MissingArtifact,
            "no writ was presented",
        ));
    }
    if token.len() > WRIT_BYTES_MAX {
        return Err(malformed(format!(
            "writ is {} bytes; at most {WRIT_BYTES_MAX} are accepted",
            token.len()
        )));
    }
    let mut it = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(malformed(
            "a writ is a compact JWS of exactly three '.'-separated parts",
        ));
    };
    // URL_SAFE_NO_PAD refuses padding, the standard alphabet and non-zero trailing
    // bits, so every accepted part has exactly one encoding.
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| malformed(format!("{what} is not canonical unpadded base64url: {e}")))
    };
    let header_bytes = decode(h64, "header")?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|e| {
        malformed(format!(
            "header is not the writ header {{alg, kid, typ}}: {e}"
        ))
    })?;
    if header.alg != WRIT_ALG {
        return Err(malformed(format!(
            "header alg {:?} is not \"{WRIT_ALG}\"",
            header.alg
        )));
    }
    if header.typ != WRIT_TYP {
        return Err(malformed(format!(
            "header typ {:?} is not \"{WRIT_TYP}\"",
            header.typ
        )));
    }
    let kid_ok = header
        .kid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !kid_ok || self::header_bytes(&header.kid) != header_bytes {
        return Err(malformed("header is not in RFC 8785 canonical form"));
    }
    let payload = decode(p64, "payload")?;
    let claims: Claims = serde_json::from_slice(&payload)
        .map_err(|e| malformed(format!("claims are not the writ claim set: {e}")))?;
    if claims.canonical_bytes().map_err(malformed)? != payload {
        return Err(malformed("claims are not in RFC 8785 canonical form"));
    }
    let sig_bytes: [u8; 64] = decode(s64, "signature")?
        .try_into()
        .map_err(|_| malformed("an Ed25519 signature is exactly 64 bytes"))?;
    let signing_input_len = h64.len() + 1 + p64.len();
    Ok(Parts {
        kid: header.kid,
        claims,
        signing_input: token
            .as_bytes()
            .get(..signing_input_len)
            .unwrap_or_default(),
        signature: Signature::from_bytes(&sig_bytes),
    })
}

/// Verify `token` against `keys` and `opts`, consulting `status` for
/// revocation and (when `opts.check_spent`) the nonce. The order of checks is
/// part of the contract: shape, signature, claim integrity, time, audience,
/// policy, request, environment, holder, revocation, replay.
pub fn verify(
    token: &str,
    keys: &KeyRing,
    opts: &VerifyOptions,
    status: &dyn StatusOracle,
) -> Result<VerifiedWrit, Denial> {
    let parts = decode_parts(token)?;
    let Some(key) = keys.get(&parts.kid) else {
        return Err(Denial::new(
            ReasonCode::InvalidSignature,
            format!("key {:?} is unknown or retired", parts.kid),
        ));
    };
    // verify_strict rejects non-canonical S and small-order keys/points
    // (malleability); plain `verify` would accept them.
    key.verify_strict(parts.signing_input, &parts.signature)
        .map_err(|_| Denial::new(ReasonCode::InvalidSignature, "signature does not verify"))?;
    let c = parts.claims;
    check_integrity(&c)?;
    if c.nbf > opts.now_unix_secs.saturating_add(opts.skew_secs) {
        return Err(Denial::new(
            ReasonCode::NotYetValid,
            format!(
                "writ is valid from {} and it is now {}",
                c.nbf, opts.now_unix_secs
            ),
        ));
    }
    if opts.now_unix_secs >= c.exp.saturating_add(opts.skew_secs) {
        return Err(Denial::new(
            ReasonCode::Expired,
            format!(
                "writ expired at {} and it is now {}",
                c.exp, opts.now_unix_secs
            ),
        ));
    }
    if let Some(aud) = &opts.audience {
        if &c.aud != aud {
            return Err(Denial::new(
                ReasonCode::AudienceMismatch,
                format!("writ is for {:?}, this enforcement point is {aud:?}", c.aud),
            ));
        }
    }
    if let Some(accepted) = &opts.accepted_policies {
        if !accepted.contains(&c.writ.policy) {
            return Err(Denial::new(
                ReasonCode::PolicyMismatch,
                format!(
                    "policy bundle {} is not one this verifier accepts",
                    c.writ.policy
                ),
            ));
        }
    }
    if let Some(d) = &opts.request_digest {
        if &c.writ.request != d {
            return Err(Denial::new(
                ReasonCode::RequestMismatch,
                format!(
                    "writ binds request {} but {d} is being executed",
                    c.writ.request
                ),
            ));
        }
    }
    if let Some(d) = &opts.environment_digest {
        if &c.writ.environment.digest != d {
            return Err(Denial::new(
                ReasonCode::EnvironmentMismatch,
                format!(
                    "writ binds environment {} but {d} was measured",
                    c.writ.environment.digest
                ),
            ));
        }
    }
    check_holder(&c, opts, status)?;
    if let Some(why) = status.revoked(&c)? {
        return Err(Denial::new(ReasonCode::Revoked, why));
    }
    if opts.check_spent && status.spent(&c.jti)? {
        return Err(Denial::new(
            ReasonCode::Replayed,
            format!("writ {} was already spent", c.jti),
        ));
    }
    Ok(VerifiedWrit {
        claims: c,
        token: token.to_owned(),
        enforced: opts.audience.is_some()
            && opts.request_digest.is_some()
            && !matches!(opts.holder, HolderCheck::Inspect),
    })
}

/// A holder-bound writ needs a proof by its holder, spent once where the
/// oracle keeps track.
fn check_holder(c: &Claims, opts: &VerifyOptions, status: &dyn StatusOracle) -> Result<(), Denial> {
    let Some(cnf) = &c.cnf else {
        return Ok(());
    };
    let bound = Bound {
        jti: &c.jti,
        aud: &c.aud,
        jkt: &cnf.jkt,
    };
    let proven = match &opts.holder {
        HolderCheck::Inspect => return Ok(()),
        HolderCheck::None => pop::check("", bound, PopUse::Verify, opts.now_unix_secs, 0)?,
        HolderCheck::Proof { proof, purpose } => {
            pop::check(proof, bound, *purpose, opts.now_unix_secs, opts.skew_secs)?
        }
    };
    if !status.spend_proof(&proven)? {
        return Err(Denial::new(
            ReasonCode::HolderMismatch,
            format!(
                "proof {} was already used; each use of writ {} needs a fresh one",
                proven.proof_jti(),
                c.jti
            ),
        ));
    }
    Ok(())
}

/// Internal consistency of a signed claim set. A signed writ that fails this
/// was made by a broken or hostile signer: `malformed_artifact`.
fn check_integrity(c: &Claims) -> Result<(), Denial> {
    if c.jti.len() != 32
        || !c
            .jti
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(malformed("jti is not 32 lowercase hex digits"));
    }
    if !(c.iat <= c.nbf && c.nbf < c.exp) || c.exp - c.nbf > WRIT_LIFETIME_SECS_MAX {
        return Err(malformed(format!(
            "validity window iat={} nbf={} exp={} is not well formed (at most {WRIT_LIFETIME_SECS_MAX} s)",
            c.iat, c.nbf, c.exp
        )));
    }
    if !canonical::is_digest(&c.writ.request) || !canonical::is_digest(&c.writ.policy) {
        return Err(malformed("request and policy must be sha256: digests"));
    }
    let env_digest = canonical::digest_map(&c.writ.environment.facts).map_err(malformed)?;
    if env_digest != c.writ.environment.digest {
        return Err(malformed("environment digest does not match its facts"));
    }
    c.writ
        .scope
        .validate()
        .map_err(|e| malformed(e.to_string()))?;
    if let Some(cnf) = &c.cnf {
        // An RFC 7638 SHA-256 thumbprint: 43 unpadded base64url characters.
        let b64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if cnf.jkt.len() != 43 || !cnf.jkt.bytes().all(b64url) {
            return Err(malformed("cnf.jkt is not an RFC 7638 SHA-256 thumbprint"));
        }
    }
    let l = &c.writ.lineage;
    let linked = match &l.parent {
        None => l.depth == 0 && l.root == c.jti,
        Some(p) => l.depth > 0 && p != &c.jti && l.root != c.jti,
    };
    if !linked {
        return Err(Denial::new(
            ReasonCode::LineageBroken,
            "lineage claims do not link (root, parent and depth disagree)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
