//! Ed25519 keys: PKCS#8 PEM, RFC 7638 thumbprints as key ids, JWKS.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

use crate::env::{Entropy, EntropyError};

pub use ed25519_dalek::{Signature, VerifyingKey};

/// Why key material is refused: a PEM that is not an Ed25519 key, a key that
/// cannot be encoded, or a JWK that is not the Ed25519 key its `kid` names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Text that is not an Ed25519 PKCS#8 PEM private key.
    #[error("not an Ed25519 PKCS#8 PEM private key: {0}")]
    NotPem(String),
    /// The key could not be written as PKCS#8 PEM.
    #[error("cannot encode key: {0}")]
    Encode(String),
    /// A JWK whose `kty`/`crv` is not `OKP`/`Ed25519`.
    #[error("key {kid:?} is not an Ed25519 OKP key")]
    NotEd25519 { kid: String },
    /// A JWK whose `x` is not unpadded base64url.
    #[error("key {kid:?}: bad x: {reason}")]
    BadX { kid: String, reason: String },
    /// A JWK whose `x` does not decode to 32 bytes.
    #[error("key {kid:?}: x is not 32 bytes")]
    XLength { kid: String },
    /// A JWK whose `x` is not an Ed25519 curve point.
    #[error("key {kid:?}: not a curve point: {reason}")]
    NotCurvePoint { kid: String, reason: String },
    /// A JWK whose `kid` is not its key's RFC 7638 thumbprint.
    #[error("key {kid:?}: kid is not the RFC 7638 thumbprint")]
    KidMismatch { kid: String },
}

/// A signing key and its key id.
pub struct WritKey {
    signing: SigningKey,
    kid: String,
}

impl std::fmt::Debug for WritKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WritKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl WritKey {
    /// A fresh key from `entropy`.
    pub fn generate(entropy: &dyn Entropy) -> Result<WritKey, EntropyError> {
        let mut seed = [0u8; 32];
        entropy.fill(&mut seed)?;
        Ok(WritKey::from_signing_key(SigningKey::from_bytes(&seed)))
    }

    fn from_signing_key(signing: SigningKey) -> WritKey {
        let kid = thumbprint(&signing.verifying_key());
        WritKey { signing, kid }
    }

    /// Read a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<WritKey, KeyError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(WritKey::from_signing_key)
            .map_err(|e| KeyError::NotPem(e.to_string()))
    }

    /// The PKCS#8 PEM form; the caller stores it with mode 0600.
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        self.signing
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map(|z| z.to_string())
            .map_err(|e| KeyError::Encode(e.to_string()))
    }

    /// RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    pub fn jwk(&self) -> Jwk {
        Jwk::from_verifying_key(&self.verifying_key())
    }
}

/// RFC 7638 JWK thumbprint of an Ed25519 public key: base64url SHA-256 of
/// `{"crv":"Ed25519","kty":"OKP","x":"..."}` (members in lexical order, no
/// whitespace, as section 3 requires).
pub fn thumbprint(key: &VerifyingKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
    let input = format!("{{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"{x}\"}}");
    URL_SAFE_NO_PAD.encode(Sha256::digest(input.as_bytes()))
}

/// One public key as a JWK (RFC 8037 `OKP`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl Jwk {
    pub fn from_verifying_key(key: &VerifyingKey) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(key.as_bytes()),
            kid: thumbprint(key),
            alg: Some(crate::WRIT_ALG.into()),
            use_: Some("sig".into()),
        }
    }

    /// The key, after checking it is an Ed25519 OKP key whose `kid` is its
    /// thumbprint (so a JWKS cannot alias one key under another's id).
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        let kid = || self.kid.clone();
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(KeyError::NotEd25519 { kid: kid() });
        }
        let raw = URL_SAFE_NO_PAD
            .decode(&self.x)
            .map_err(|e| KeyError::BadX {
                kid: kid(),
                reason: e.to_string(),
            })?;
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| KeyError::XLength { kid: kid() })?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|e| KeyError::NotCurvePoint {
            kid: kid(),
            reason: e.to_string(),
        })?;
        if thumbprint(&key) != self.kid {
            return Err(KeyError::KidMismatch { kid: kid() });
        }
        Ok(key)
    }
}

/// A JSON Web Key Set (`/.well-known/jwks.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// The public keys a verifier trusts, by key id. A retired key is simply not
/// in the ring, so a writ signed by it is `invalid_signature`.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: HashMap<String, VerifyingKey>,
}

impl KeyRing {
    pub fn new() -> KeyRing {
        KeyRing::default()
    }

    pub fn insert(&mut self, key: VerifyingKey) {
        self.keys.insert(thumbprint(&key), key);
    }

    pub fn from_jwks(jwks: &Jwks) -> Result<KeyRing, KeyError> {
        let mut ring = KeyRing::new();
        for jwk in &jwks.keys {
            ring.insert(jwk.verifying_key()?);
        }
        Ok(ring)
    }

    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn to_jwks(&self) -> Jwks {
        let mut keys: Vec<Jwk> = self.keys.values().map(Jwk::from_verifying_key).collect();
        keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        Jwks { keys }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Zeros;
    impl Entropy for Zeros {
        fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError> {
            buf.fill(7);
            Ok(())
        }
    }

    #[test]
    fn pem_round_trip_keeps_the_key_and_kid() {
        let k = WritKey::generate(&Zeros).unwrap();
        let pem = k.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let k2 = WritKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(k.kid(), k2.kid());
        assert_eq!(k.sign(b"m"), k2.sign(b"m"));
    }

    #[test]
    fn rfc8037_appendix_a_thumbprint() {
        // RFC 8037 A.3: the thumbprint of the Appendix A.2 public key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(
            thumbprint(&key),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn jwks_refuses_a_kid_that_is_not_the_thumbprint() {
        let k = WritKey::generate(&Zeros).unwrap();
        let mut jwk = k.jwk();
        assert!(jwk.verifying_key().is_ok());
        jwk.kid = "other".into();
        assert!(jwk.verifying_key().is_err());
    }

    #[test]
    fn key_errors_keep_their_words() {
        let good = WritKey::generate(&Zeros).unwrap().jwk();
        let kid = good.kid.clone();
        let refusal = |jwk: Jwk| jwk.verifying_key().unwrap_err().to_string();
        let rsa = Jwk {
            kty: "RSA".into(),
            ..good.clone()
        };
        assert_eq!(
            refusal(rsa),
            format!("key {kid:?} is not an Ed25519 OKP key")
        );
        let padded = Jwk {
            x: format!("{}=", good.x),
            ..good.clone()
        };
        assert!(refusal(padded).starts_with(&format!("key {kid:?}: bad x: ")));
        let short = Jwk {
            x: "AAAA".into(),
            ..good.clone()
        };
        assert_eq!(refusal(short), format!("key {kid:?}: x is not 32 bytes"));
        let other = Jwk {
            kid: "other".into(),
            ..good
        };
        assert_eq!(
            refusal(other),
            "key \"other\": kid is not the RFC 7638 thumbprint"
        );
        let pem = WritKey::from_pkcs8_pem("x").unwrap_err().to_string();
        assert!(
            pem.starts_with("not an Ed25519 PKCS#8 PEM private key: "),
            "{pem}"
        );
    }
}
