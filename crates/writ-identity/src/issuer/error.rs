//! Why an issuer's spec, its keys or a token of it is refused: each says
//! what failed, in the words `writ issuer add` and a refused caller see.

use std::fmt;

use super::{quote, JWT_BYTES_MAX, REFRESH_MIN_SECS, STALE_SECS_MAX};

/// What a key set that is not one is told.
const NOT_JWKS: &str = "a JWKS is a JSON object with a `keys` array (RFC 7517 section 5)";

/// Why an issuer's spec is refused before it is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// A name that is not 1 to 64 letters, digits, `-`, `_` or `.`.
    Name,
    /// An empty, overlong or unprintable `issuer` or `audience`.
    Text { field: &'static str },
    /// A principal type that is not a Cedar entity type.
    PrincipalType(String),
    /// A trust domain that is not a SPIFFE trust domain.
    TrustDomain(String),
    /// An empty, overlong or unprintable `claim`.
    Claim,
    /// A JWKS URL longer than 2048 bytes.
    UrlTooLong,
    /// A JWKS URL that does not parse.
    Url { url: String, reason: String },
    /// A JWKS URL that is not `https`.
    NotHttps(String),
    /// A JWKS URL with a user name or password.
    UrlCredentials,
    /// A registered key set that is not a JWKS.
    NotJwks,
    /// A registered key set with no usable signing key.
    NoUsableKey,
    /// A JWKS CA for keys that are not fetched.
    CaWithoutUrl,
    /// A JWKS CA that is not PEM certificates.
    CaNotPem,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Name => {
                f.write_str("an issuer's name is 1 to 64 letters, digits, `-`, `_` or `.`")
            }
            SpecError::Text { field } => {
                write!(f, "`{field}` must be 1 to 1024 printable characters")
            }
            SpecError::PrincipalType(t) => write!(
                f,
                "principal type `{t}` is not a Cedar entity type (e.g. `Agent`, `Ns::Workload`)"
            ),
            SpecError::TrustDomain(td) => write!(
                f,
                "trust domain `{td}` is not a SPIFFE trust domain (lowercase letters, digits, `.`, `-`, `_`)"
            ),
            SpecError::Claim => f.write_str("`claim` must be 1 to 128 printable characters"),
            SpecError::UrlTooLong => f.write_str("the JWKS URL is longer than 2048 bytes"),
            SpecError::Url { url, reason } => write!(f, "JWKS URL `{url}`: {reason}"),
            SpecError::NotHttps(url) => write!(
                f,
                "JWKS URL `{url}` is not https: keys that prove identities must not cross a network in clear"
            ),
            SpecError::UrlCredentials => f.write_str("the JWKS URL must not hold credentials"),
            SpecError::NotJwks => f.write_str(NOT_JWKS),
            SpecError::NoUsableKey => f.write_str(
                "the key set holds no usable signing key (OKP Ed25519, EC P-256 or RSA)",
            ),
            SpecError::CaWithoutUrl => f.write_str("a JWKS CA is for a JWKS URL"),
            SpecError::CaNotPem => f.write_str("the JWKS CA is not a PEM certificate file"),
        }
    }
}

impl std::error::Error for SpecError {}

/// Why no key of an issuer checks a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysError {
    /// The registered key set is not a JWKS.
    NotJwks,
    /// The fetched key set is not a JWKS.
    FetchedNotJwks { issuer: String },
    /// The key cache's lock is poisoned.
    CacheUnusable,
    /// A fetch failed a moment ago and what was fetched before is too old.
    Stale { issuer: String },
    /// Fetching the keys failed, and none fetched before may stand in.
    Fetch { issuer: String, reason: String },
    /// The token names a key id the issuer's key set does not hold.
    UnknownKid { kid: String, issuer: String },
    /// The token names no key id, and the set holds not exactly one key of
    /// its algorithm.
    NoSingleKey { issuer: String, alg: &'static str },
    /// The token's algorithm is not its key's.
    KeyAlg {
        alg: &'static str,
        issuer: String,
        key_alg: &'static str,
    },
}

impl fmt::Display for KeysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeysError::NotJwks => f.write_str(NOT_JWKS),
            KeysError::FetchedNotJwks { issuer } => write!(f, "issuer {issuer}'s JWKS: {NOT_JWKS}"),
            KeysError::CacheUnusable => f.write_str("the key cache is unusable"),
            KeysError::Stale { issuer } => write!(
                f,
                "issuer {issuer} has no keys fetched within {STALE_SECS_MAX} s; fetching again in at most {REFRESH_MIN_SECS} s"
            ),
            KeysError::Fetch { issuer, reason } => {
                write!(f, "issuer {issuer}'s keys cannot be fetched: {reason}")
            }
            KeysError::UnknownKid { kid, issuer } => write!(
                f,
                "key id {} is not in issuer {issuer}'s key set",
                quote(kid)
            ),
            KeysError::NoSingleKey { issuer, alg } => write!(
                f,
                "the JWT names no key id, and issuer {issuer}'s key set does not hold exactly one {alg} key"
            ),
            KeysError::KeyAlg {
                alg,
                issuer,
                key_alg,
            } => write!(
                f,
                "algorithm {alg} does not fit issuer {issuer}'s key (a {key_alg} key)"
            ),
        }
    }
}

impl std::error::Error for KeysError {}

/// Why a token of a registered issuer authenticates no one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Longer than [`JWT_BYTES_MAX`].
    TooLong,
    /// Not three parts joined by `.`.
    NotJwt,
    /// A part (`header`, `claims`) that is not base64url.
    NotBase64 { part: &'static str },
    /// A part that is not a JSON object.
    NotObject { part: &'static str },
    /// An algorithm other than EdDSA, ES256 and RS256 (its first 32
    /// characters).
    AlgNotAllowed(String),
    /// A header with no `alg`.
    NoAlg,
    /// A header with `crit` extensions.
    Crit,
    /// No `iss` string.
    NoIss,
    /// An `iss` no registered issuer has.
    UnknownIssuer(String),
    /// No key of the issuer checks it.
    Keys(KeysError),
    /// The signature does not verify.
    BadSignature { issuer: String, kid: Option<String> },
    /// The algorithm does not fit the key.
    AlgMismatch { alg: &'static str, issuer: String },
    /// jsonwebtoken refused it otherwise (its error kind).
    Malformed(String),
    /// An `iss` that is not the issuer's.
    Iss(String),
    /// No `aud`.
    NoAud,
    /// An `aud` that does not hold the issuer's audience.
    Aud { audience: String, issuer: String },
    /// A time claim (`exp`, `nbf`) that is not a NumericDate.
    NotNumericDate(&'static str),
    /// No `exp`.
    NoExp,
    /// Past its `exp` (and the skew).
    Expired { exp: u64, now: u64 },
    /// Before its `nbf` (less the skew).
    NotYetValid { nbf: u64, now: u64 },
    /// The claim naming the principal is empty or longer than 1024 bytes.
    ClaimLength(String),
    /// The claim naming the principal is not a string.
    ClaimNotString(String),
    /// The token has no claim naming the principal.
    NoClaim(String),
    /// The claim naming the principal holds control characters.
    ClaimControl(String),
    /// A `sub` that is not a SPIFFE ID in the issuer's trust domain.
    TrustDomain {
        issuer: String,
        bound: String,
        sub: String,
    },
}

impl From<KeysError> for TokenError {
    fn from(e: KeysError) -> TokenError {
        TokenError::Keys(e)
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::TooLong => write!(f, "the JWT is longer than {JWT_BYTES_MAX} bytes"),
            TokenError::NotJwt => f.write_str("not a JWT (three base64url parts joined by `.`)"),
            TokenError::NotBase64 { part } => write!(f, "the JWT's {part} is not base64url"),
            TokenError::NotObject { part } => write!(f, "the JWT's {part} is not a JSON object"),
            TokenError::AlgNotAllowed(alg) => write!(
                f,
                "algorithm `{alg}` is not allowed (EdDSA, ES256 or RS256)"
            ),
            TokenError::NoAlg => f.write_str("the JWT's header names no algorithm"),
            TokenError::Crit => {
                f.write_str("the JWT's header has `crit` extensions writ does not know")
            }
            TokenError::NoIss => f.write_str("the JWT has no `iss` claim (a string)"),
            TokenError::UnknownIssuer(iss) => {
                write!(f, "no registered issuer has `iss` {}", quote(iss))
            }
            TokenError::Keys(e) => fmt::Display::fmt(e, f),
            TokenError::BadSignature { issuer, kid } => write!(
                f,
                "the signature does not verify against issuer {issuer}'s key{}",
                kid.as_deref()
                    .map(|k| format!(" {}", quote(k)))
                    .unwrap_or_default()
            ),
            TokenError::AlgMismatch { alg, issuer } => {
                write!(f, "algorithm {alg} does not fit issuer {issuer}'s key")
            }
            TokenError::Malformed(kind) => write!(f, "the JWT is malformed: {kind}"),
            TokenError::Iss(issuer) => write!(f, "`iss` is not {}", quote(issuer)),
            TokenError::NoAud => f.write_str("the JWT has no `aud` claim"),
            TokenError::Aud { audience, issuer } => write!(
                f,
                "`aud` does not hold {} (issuer {issuer}'s audience for writ)",
                quote(audience)
            ),
            TokenError::NotNumericDate(name) => write!(f, "`{name}` is not a NumericDate"),
            TokenError::NoExp => f.write_str("the JWT has no `exp` claim"),
            TokenError::Expired { exp, now } => write!(f, "the JWT expired at {exp} (now {now})"),
            TokenError::NotYetValid { nbf, now } => {
                write!(f, "the JWT is not valid before {nbf} (now {now})")
            }
            TokenError::ClaimLength(c) => write!(f, "claim `{c}` must be 1 to 1024 bytes"),
            TokenError::ClaimNotString(c) => write!(f, "claim `{c}` is not a string"),
            TokenError::NoClaim(c) => write!(f, "the JWT has no `{c}` claim"),
            TokenError::ClaimControl(c) => write!(f, "claim `{c}` holds control characters"),
            TokenError::TrustDomain { issuer, bound, sub } => write!(
                f,
                "issuer {issuer} speaks for trust domain {bound}; `sub` {sub:?} is not a SPIFFE ID in it"
            ),
        }
    }
}

impl std::error::Error for TokenError {}
