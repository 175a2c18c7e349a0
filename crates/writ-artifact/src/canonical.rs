//! RFC 8785 (JSON Canonicalization Scheme) and the `sha256:` digests built on it.

use sha2::{Digest, Sha256};

/// Prefix of every digest writ prints or binds.
pub const DIGEST_PREFIX: &str = "sha256:";

/// The RFC 8785 canonical bytes of a JSON value.
pub fn to_canonical_bytes<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    serde_jcs::to_vec(value).map_err(|e| format!("cannot canonicalize JSON: {e}"))
}

/// `sha256:<hex>` of arbitrary bytes.
pub fn digest_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(DIGEST_PREFIX.len() + 64);
    s.push_str(DIGEST_PREFIX);
    for b in Sha256::digest(bytes) {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `sha256:<hex>` of the RFC 8785 canonical form of a JSON value. This is how a
/// writ binds its request and its environment.
pub fn digest_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, String> {
    Ok(digest_bytes(&to_canonical_bytes(value)?))
}

/// Whether `s` has the exact shape of a digest this crate produces.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix(DIGEST_PREFIX).is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc8785_orders_keys_and_normalizes_numbers_and_strings() {
        // Key order is by UTF-16 code units; numbers use the ECMAScript form.
        let v = json!({"b": [1.0, 1e21, -0.0, "\u{20ac}"], "a": {"z": null, "\u{0080}": true, "A": 2}});
        let s = String::from_utf8(to_canonical_bytes(&v).unwrap()).unwrap();
        assert_eq!(s, "{\"a\":{\"A\":2,\"z\":null,\"\u{0080}\":true},\"b\":[1,1e+21,0,\"\u{20ac}\"]}");
    }

    #[test]
    fn digests_ignore_key_order_but_not_values() {
        let a = digest_json(&json!({"x": 1, "y": [1, 2]})).unwrap();
        let b = digest_json(&json!({"y": [1, 2], "x": 1})).unwrap();
        let c = digest_json(&json!({"y": [2, 1], "x": 1})).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(is_digest(&a));
        assert!(!is_digest("sha256:ABC"));
        assert_eq!(
            digest_bytes(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
