//! The writ: the signed authorization artifact, and its fail-closed verification.
//!
//! A writ is a JWS in compact serialization (RFC 7515) signed with Ed25519
//! (`alg` = `EdDSA`, RFC 8037), header `typ` = `writ+jwt`, `kid` = the RFC 7638
//! thumbprint of the signing key. This crate owns:
//!
//! * [`Claims`]: the exact claim set (`iss`, `sub`, `aud`, `iat`, `nbf`, `exp`,
//!   `jti` and the `writ` object);
//! * [`ReasonCode`]: the stable wire contract of denial reasons;
//! * [`canonical`]: RFC 8785 (JCS) canonical JSON and `sha256:` digests;
//! * [`keys`]: Ed25519 keys, PKCS#8 PEM, JWK thumbprints and JWKS;
//! * [`pop`]: holder-bound writs and their proofs of possession;
//! * [`sign`] and [`verify`]: issuing a writ and checking one, where success is
//!   a [`VerifiedWrit`] that only this crate can construct;
//! * [`Grant`]: what a verified writ lets an enforcement point do, made only
//!   by [`VerifiedWrit::grant`] and demanded by whatever runs or forwards.
//!
//! The crate does no IO: time and randomness come in through [`Clock`] and
//! [`Entropy`], key material through [`KeyRing`], and online state (spent
//! nonces, revocations) through [`StatusOracle`].
#![forbid(unsafe_code)]

pub mod canonical;
mod claims;
mod env;
mod grant;
pub mod keys;
pub mod pop;
mod reason;
mod verify;

pub use claims::{
    Claims, Confirmation, EnvironmentBinding, Lineage, LogPointer, Scope, ScopeError, WritBody,
};
pub use env::{Clock, Entropy, EntropyError, FixedClock, OsEntropy, SystemClock};
pub use grant::Grant;
pub use keys::{Jwk, Jwks, KeyError, KeyRing, WritKey};
pub use reason::{Denial, ReasonCode};
pub use verify::{
    decode_unverified, sign, verify, HolderCheck, NoStatus, StatusOracle, VerifiedWrit,
    VerifyOptions, DEFAULT_SKEW_SECS, WRIT_BYTES_MAX,
};

/// Header `typ` of every writ.
pub const WRIT_TYP: &str = "writ+jwt";
/// Header `alg` of every writ (RFC 8037).
pub const WRIT_ALG: &str = "EdDSA";
/// Default lifetime of a writ when the request names none.
pub const WRIT_LIFETIME_SECS_DEFAULT: u64 = 60;
/// No writ lives longer than this, whatever is asked.
pub const WRIT_LIFETIME_SECS_MAX: u64 = 3600;
