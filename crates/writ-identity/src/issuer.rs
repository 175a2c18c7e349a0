//! External issuers: a JWT from a registered issuer authenticates its
//! caller as `TYPE::"<claim>"` (docs/spec/identity.md).
//!
//! Checked as RFC 7519 (JWT), RFC 7515 (JWS), RFC 8725 (JWT best current
//! practices) and the SPIFFE JWT-SVID specification say: the algorithm is
//! one of EdDSA, ES256 and RS256 (never `none`, never HMAC, and it must fit
//! the key: RFC 8725 section 3.1); the signature verifies against a key of
//! the issuer's JWKS (fetched over TLS, cached, fetched again when a token
//! names a key id it does not hold, at most once per
//! [`REFRESH_MIN_SECS`]); `iss` is the issuer's, `aud` holds its audience,
//! `exp` is present and not past and `nbf` not ahead (both with skew).
//! Every failure says what failed, and authenticates no one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::{entity_uid, spiffe_trust_domain, Identity, Method};

mod error;
pub use error::{KeysError, SpecError, TokenError};

/// Longest JWT accepted (bytes).
pub const JWT_BYTES_MAX: usize = 8 * 1024;
/// Largest JWKS document fetched or registered (bytes).
pub const JWKS_BYTES_MAX: usize = 256 * 1024;
/// Most keys of one JWKS kept.
pub const JWKS_KEYS_MAX: usize = 64;
/// How long fetched keys are used before they are fetched again.
pub const CACHE_SECS: u64 = 300;
/// How long fetched keys may still be used when fetching them again fails.
pub const STALE_SECS_MAX: u64 = 3600;
/// Least time between two fetches of one issuer's keys (an unknown key id
/// does not make writ fetch on every request).
pub const REFRESH_MIN_SECS: u64 = 10;
/// How long one fetch may take.
pub const FETCH_TIMEOUT_SECS: u64 = 5;
/// Most issuers registered at once.
pub const ISSUERS_MAX: usize = 64;

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JwksSource {
    /// Fetched over HTTPS (an OIDC provider's `jwks_uri`, a SPIRE OIDC
    /// discovery provider's keys, the Kubernetes API server's
    /// `/openid/v1/jwks`).
    Url(String),
    /// A key set registered with the issuer (read from a file by
    /// `writ issuer add --jwks FILE`), shared by every node of a mesh.
    Keys(Value),
}

/// A registered issuer, as stored and logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSpec {
    /// The name writ knows it by (`writ issuer remove NAME`).
    pub name: String,
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// The `aud` its tokens must hold for writ.
    pub audience: String,
    pub jwks: JwksSource,
    /// The Cedar entity type of the principals it vouches for.
    pub principal_type: String,
    /// The claim that names the principal.
    pub claim: String,
    /// PEM certificate authorities trusted for the JWKS URL besides the
    /// system's (a private OIDC provider or an in-cluster API server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_ca: Option<String>,
    /// The SPIFFE trust domain it speaks for (a SPIRE server's OIDC
    /// discovery provider): its tokens' `sub` must be a SPIFFE ID in it, and
    /// only then does `context.identity` carry `spiffe_id` and
    /// `trust_domain`. Without it, an issuer's word on a trust domain is
    /// not taken (another registered issuer could claim any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
}

impl IssuerSpec {
    /// Check a spec before it is registered: names, the URL's scheme, the
    /// key set (at least one usable key), the CA's PEM.
    pub fn validate(&self) -> Result<(), SpecError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(SpecError::Name);
        }
        for (field, v) in [("issuer", &self.issuer), ("audience", &self.audience)] {
            if v.is_empty() || v.len() > 1024 || v.chars().any(char::is_control) {
                return Err(SpecError::Text { field });
            }
        }
        let type_ok = !self.principal_type.is_empty()
            && self.principal_type.len() <= 128
            && self.principal_type.split("::").all(|seg| {
                seg.bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
        if !type_ok {
            return Err(SpecError::PrincipalType(self.principal_type.clone()));
        }
        if let Some(td) = &self.trust_domain {
            // SPIFFE ID spec, section 2.1: lowercase letters, digits, `.`,
            // `-` and `_`.
            let td_ok = !td.is_empty()
                && td.len() <= 255
                && td
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
            if !td_ok {
                return Err(SpecError::TrustDomain(td.clone()));
            }
        }
        let claim_ok = !self.claim.is_empty()
            && self.claim.len() <= 128
            && !self.claim.chars().any(char::is_control);
        if !claim_ok {
            return Err(SpecError::Claim);
        }
        match &self.jwks {
            JwksSource::Url(u) => {
                if u.len() > 2048 {
                    return Err(SpecError::UrlTooLong);
                }
                let url = reqwest::Url::parse(u).map_err(|e| SpecError::Url {
                    url: u.clone(),
                    reason: e.to_string(),
                })?;
                if url.scheme() != "https" {
                    return Err(SpecError::NotHttps(u.clone()));
                }
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(SpecError::UrlCredentials);
                }
            }
            JwksSource::Keys(v) => {
                let keys = parse_jwks(v).ok_or(SpecError::NotJwks)?;
                if keys.is_empty() {
                    return Err(SpecError::NoUsableKey);
                }
            }
        }
        if let Some(pem) = &self.jwks_ca {
            if !matches!(self.jwks, JwksSource::Url(_)) {
                return Err(SpecError::CaWithoutUrl);
            }
            if pem.len() > JWKS_BYTES_MAX || !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(SpecError::CaNotPem);
            }
        }
        Ok(())
    }

    /// What the log says of its keys: the URL, or the `sha256:` of the
    /// registered key set's canonical JSON.
    pub fn jwks_summary(&self) -> String {
        match &self.jwks {
            JwksSource::Url(u) => u.clone(),
            JwksSource::Keys(v) => format!(
                "sha256:{}",
                hex_of(&Sha256::digest(serde_json::to_vec(v).unwrap_or_default()))
            ),
        }
    }

    /// `TYPE::"<claim>"`, as a pattern for people.
    pub fn maps_to(&self) -> String {
        format!("{}::\"<{}>\"", self.principal_type, self.claim)
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A signing key of an issuer and the algorithm it is for.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: Arc<DecodingKey>,
}

/// The usable signing keys of a JWKS document: `OKP`/Ed25519 (EdDSA),
/// `EC`/P-256 (ES256) and `RSA` (RS256); symmetric keys, other curves,
/// encryption keys, and keys whose `alg` is another are left out. `None`
/// when `v` is not a JWKS (a JSON object with a `keys` array, RFC 7517
/// section 5).
fn parse_jwks(v: &Value) -> Option<Vec<Key>> {
    let keys = v.get("keys").and_then(Value::as_array)?;
    let mut out = Vec::new();
    for k in keys.iter().take(JWKS_KEYS_MAX * 4) {
        let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let alg = match &jwk.algorithm {
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Algorithm::EdDSA
            }
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            _ => continue,
        };
        // A key that names its algorithm is for that one only.
        if let Some(named) = k.get("alg").and_then(Value::as_str) {
            if named != alg_name(alg) {
                continue;
            }
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        out.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key: Arc::new(key),
        });
        if out.len() == JWKS_KEYS_MAX {
            break;
        }
    }
    Some(out)
}

fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::EdDSA => "EdDSA",
        Algorithm::ES256 => "ES256",
        Algorithm::RS256 => "RS256",
        _ => "other",
    }
}

/// What a valid token proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The principal: `TYPE::"<claim value>"`.
    pub uid: String,
    pub identity: Identity,
}

/// One issuer's keys as last fetched.
struct Cached {
    /// The spec they were fetched for (a changed spec fetches again).
    source: JwksSource,
    keys: Vec<Key>,
    fetched: u64,
    /// The last attempt, successful or not.
    attempted: u64,
}

/// Verifies tokens of registered issuers, keeping their fetched keys.
#[derive(Default)]
pub struct Verifier {
    cache: Mutex<HashMap<String, Cached>>,
    /// One fetch per issuer at a time; requests of that issuer wait for its
    /// keys, others go on.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A JSON object.
type Object = Map<String, Value>;

/// The parts of a compact JWS, unverified: header and claims as JSON.
fn unverified(token: &str) -> Result<(Object, Object), TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::NotJwt);
    };
    let json = |text: &str, part: &'static str| -> Result<Object, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| TokenError::NotBase64 { part })?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(TokenError::NotObject { part }),
        }
    };
    Ok((json(h, "header")?, json(p, "claims")?))
}

/// Whether `token` has the shape of a JWT (so it is not a writ token).
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

impl Verifier {
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// Verify `token` against the registered `issuers` at `now` (unix
    /// seconds) with `skew` seconds of leeway.
    pub async fn verify(
        &self,
        issuers: &[IssuerSpec],
        token: &str,
        now: u64,
        skew: u64,
    ) -> Result<Verified, TokenError> {
        if token.len() > JWT_BYTES_MAX {
            return Err(TokenError::TooLong);
        }
        let (header, claims) = unverified(token)?;
        let alg = match header.get("alg").and_then(Value::as_str) {
            Some("EdDSA") => Algorithm::EdDSA,
            Some("ES256") => Algorithm::ES256,
            Some("RS256") => Algorithm::RS256,
            Some(other) => {
                return Err(TokenError::AlgNotAllowed(
                    other.chars().take(32).collect::<String>(),
                ))
            }
            None => return Err(TokenError::NoAlg),
        };
        if header.contains_key("crit") {
            // RFC 7515 section 4.1.11: extensions we do not understand.
            return Err(TokenError::Crit);
        }
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(TokenError::NoIss)?;
        let spec = issuers
            .iter()
            .find(|s| s.issuer == iss)
            .ok_or_else(|| TokenError::UnknownIssuer(iss.to_owned()))?;
        let kid = header.get("kid").and_then(Value::as_str);
        let key = self.key(spec, kid, alg, now).await?;
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => TokenError::BadSignature {
                    issuer: spec.name.clone(),
                    kid: kid.map(str::to_owned),
                },
                K::InvalidAlgorithm => TokenError::AlgMismatch {
                    alg: alg_name(alg),
                    issuer: spec.name.clone(),
                },
                other => TokenError::Malformed(format!("{other:?}")),
            }
        })?;
        check_claims(spec, &claims, now, skew)?;
        let subject = match claims.get(&spec.claim) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => s.clone(),
            Some(Value::String(_)) => return Err(TokenError::ClaimLength(spec.claim.clone())),
            Some(_) => return Err(TokenError::ClaimNotString(spec.claim.clone())),
            None => return Err(TokenError::NoClaim(spec.claim.clone())),
        };
        if subject.chars().any(char::is_control) {
            return Err(TokenError::ClaimControl(spec.claim.clone()));
        }
        let mut facts = Map::new();
        facts.insert("issuer".into(), Value::String(iss.to_owned()));
        facts.insert("issuer_name".into(), Value::String(spec.name.clone()));
        facts.insert("subject".into(), Value::String(subject.clone()));
        if let Some(bound) = &spec.trust_domain {
            // A SPIFFE JWT-SVID: its `sub` is the workload's SPIFFE ID, in
            // the trust domain this issuer speaks for.
            let sub = claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if spiffe_trust_domain(sub) != Some(bound.as_str()) {
                return Err(TokenError::TrustDomain {
                    issuer: spec.name.clone(),
                    bound: bound.clone(),
                    sub: sub.to_owned(),
                });
            }
            facts.insert("spiffe_id".into(), Value::String(sub.to_owned()));
            facts.insert("trust_domain".into(), Value::String(bound.clone()));
        }
        facts.insert("claims".into(), Value::Object(claims));
        Ok(Verified {
            uid: entity_uid(&spec.principal_type, &subject),
            identity: Identity {
                method: Method::Oidc,
                facts,
            },
        })
    }

    /// The key of `spec` for a token naming `kid` (or none) signed with
    /// `alg`, fetching the issuer's keys when they are missing, old, or
    /// do not hold `kid`.
    async fn key(
        &self,
        spec: &IssuerSpec,
        kid: Option<&str>,
        alg: Algorithm,
        now: u64,
    ) -> Result<Arc<DecodingKey>, KeysError> {
        let url = match &spec.jwks {
            JwksSource::Keys(v) => {
                let keys = parse_jwks(v).ok_or(KeysError::NotJwks)?;
                return pick(&keys, spec, kid, alg);
            }
            JwksSource::Url(u) => u,
        };
        // Fresh keys that hold the key: no fetch.
        let (fresh, found) = self.cached(spec, kid, alg, now);
        if let (true, Some(k)) = (fresh, &found) {
            return Ok(k.clone());
        }
        let lock = match self.fetching.lock() {
            Ok(mut m) => m.entry(spec.name.clone()).or_default().clone(),
            Err(_) => return Err(KeysError::CacheUnusable),
        };
        let _one = lock.lock().await;
        // Another request may have fetched them while this one waited.
        let (fresh, found) = self.cached(spec, kid, alg, now);
        if let (true, Some(k)) = (fresh, &found) {
            return Ok(k.clone());
        }
        let attempted = self.attempted(spec);
        if now.saturating_sub(attempted) < REFRESH_MIN_SECS {
            // Tried a moment ago: use what there is, if it is not too old.
            if !self.fetched_within(spec, now, STALE_SECS_MAX) {
                return Err(KeysError::Stale {
                    issuer: spec.name.clone(),
                });
            }
            return match found {
                Some(k) => Ok(k),
                None => pick(&self.keys_of(spec), spec, kid, alg),
            };
        }
        self.note_attempt(spec, now);
        match fetch(url, spec.jwks_ca.as_deref()).await {
            Ok(v) => {
                let keys = parse_jwks(&v).ok_or_else(|| KeysError::FetchedNotJwks {
                    issuer: spec.name.clone(),
                })?;
                let picked = pick(&keys, spec, kid, alg);
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(
                        spec.name.clone(),
                        Cached {
                            source: spec.jwks.clone(),
                            keys,
                            fetched: now,
                            attempted: now,
                        },
                    );
                }
                picked
            }
            Err(e) => {
                tracing::warn!(issuer = %spec.name, error = %e, "fetching an issuer's JWKS failed");
                match found {
                    // Keys fetched within the stale bound still prove what
                    // they proved; past it, nobody of this issuer is let in.
                    Some(k) if self.fetched_within(spec, now, STALE_SECS_MAX) => Ok(k),
                    _ => Err(KeysError::Fetch {
                        issuer: spec.name.clone(),
                        reason: e,
                    }),
                }
            }
        }
    }

    /// Whether the cached keys of `spec` are fresh, and the key for
    /// `kid`/`alg` among them.
    fn cached(
        &self,
        spec: &IssuerSpec,
        kid: Option<&str>,
        alg: Algorithm,
        now: u64,
    ) -> (bool, Option<Arc<DecodingKey>>) {
        self.of_cache(spec, |e| {
            (
                now.saturating_sub(e.fetched) < CACHE_SECS,
                pick(&e.keys, spec, kid, alg).ok(),
            )
        })
        .unwrap_or((false, None))
    }

    /// `read` of the keys cached for `spec`, if any were fetched for it.
    fn of_cache<T>(&self, spec: &IssuerSpec, read: impl FnOnce(&Cached) -> T) -> Option<T> {
        self.cache.lock().ok().and_then(|c| {
            c.get(&spec.name)
                .filter(|e| e.source == spec.jwks)
                .map(read)
        })
    }

    fn keys_of(&self, spec: &IssuerSpec) -> Vec<Key> {
        self.of_cache(spec, |e| e.keys.clone()).unwrap_or_default()
    }

    fn attempted(&self, spec: &IssuerSpec) -> u64 {
        self.of_cache(spec, |e| e.attempted).unwrap_or(0)
    }

    fn note_attempt(&self, spec: &IssuerSpec, now: u64) {
        if let Ok(mut c) = self.cache.lock() {
            let e = c.entry(spec.name.clone()).or_insert_with(|| Cached {
                source: spec.jwks.clone(),
                keys: Vec::new(),
                fetched: 0,
                attempted: 0,
            });
            if e.source != spec.jwks {
                *e = Cached {
                    source: spec.jwks.clone(),
                    keys: Vec::new(),
                    fetched: 0,
                    attempted: 0,
                };
            }
            e.attempted = now;
        }
    }

    fn fetched_within(&self, spec: &IssuerSpec, now: u64, secs: u64) -> bool {
        self.cache.lock().ok().is_some_and(|c| {
            c.get(&spec.name)
                .is_some_and(|e| e.fetched > 0 && now.saturating_sub(e.fetched) < secs)
        })
    }

    /// Forget the keys of issuers no longer registered.
    pub fn retain(&self, issuers: &[IssuerSpec]) {
        if let Ok(mut c) = self.cache.lock() {
            c.retain(|name, _| issuers.iter().any(|s| &s.name == name));
        }
        if let Ok(mut f) = self.fetching.lock() {
            f.retain(|name, _| issuers.iter().any(|s| &s.name == name));
        }
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(&s.chars().take(128).collect::<String>()).unwrap_or_default()
}

/// The key for a token naming `kid` (or, naming none, the only key of the
/// set for `alg`).
fn pick(
    keys: &[Key],
    spec: &IssuerSpec,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Arc<DecodingKey>, KeysError> {
    let key = match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .ok_or_else(|| KeysError::UnknownKid {
                kid: kid.to_owned(),
                issuer: spec.name.clone(),
            })?,
        None => {
            let mut fit = keys.iter().filter(|k| k.alg == alg);
            match (fit.next(), fit.next()) {
                (Some(k), None) => k,
                _ => {
                    return Err(KeysError::NoSingleKey {
                        issuer: spec.name.clone(),
                        alg: alg_name(alg),
                    })
                }
            }
        }
    };
    if key.alg != alg {
        return Err(KeysError::KeyAlg {
            alg: alg_name(alg),
            issuer: spec.name.clone(),
            key_alg: alg_name(key.alg),
        });
    }
    Ok(key.key.clone())
}

/// `iss`, `aud`, `exp`, `nbf` (RFC 7519 section 4.1).
fn check_claims(
    spec: &IssuerSpec,
    claims: &Map<String, Value>,
    now: u64,
    skew: u64,
) -> Result<(), TokenError> {
    if claims.get("iss").and_then(Value::as_str) != Some(spec.issuer.as_str()) {
        return Err(TokenError::Iss(spec.issuer.clone()));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == spec.audience,
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(spec.audience.as_str())),
        _ => return Err(TokenError::NoAud),
    };
    if !aud_ok {
        return Err(TokenError::Aud {
            audience: spec.audience.clone(),
            issuer: spec.name.clone(),
        });
    }
    let time = |name: &'static str| -> Result<Option<u64>, TokenError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or(TokenError::NotNumericDate(name)),
        }
    };
    let exp = time("exp")?.ok_or(TokenError::NoExp)?;
    if now >= exp.saturating_add(skew) {
        return Err(TokenError::Expired { exp, now });
    }
    if let Some(nbf) = time("nbf")? {
        if now.saturating_add(skew) < nbf {
            return Err(TokenError::NotYetValid { nbf, now });
        }
    }
    Ok(())
}

/// GET the JWKS at `url` over TLS: the system's roots plus `ca_pem`, no
/// redirects, no proxy, a timeout, a size bound.
async fn fetch(url: &str, ca_pem: Option<&str>) -> Result<Value, String> {
    let client = writ_tls::client::https_client_with_ca_pem(
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(FETCH_TIMEOUT_SECS))
            .no_proxy(),
        ca_pem,
    )
    .map_err(|e| e.to_string())?;
    let mut resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?
    {
        if body.len() + chunk.len() > JWKS_BYTES_MAX {
            return Err(format!("GET {url}: larger than {JWKS_BYTES_MAX} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
