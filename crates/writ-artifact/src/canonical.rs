//! RFC 8785 (JSON Canonicalization Scheme) and the `sha256:` digests built on it.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Why a value has no canonical form, or JSON text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// RFC 8785 cannot write it (a number out of range, a key not a string).
    #[error("cannot canonicalize JSON: {0}")]
    Unrepresentable(String),
    /// serde_json could not write it.
    #[error("{0}")]
    Json(String),
    /// JSON text that names a key twice in one object.
    #[error("{0}")]
    DuplicateKey(String),
    /// Text that is not JSON.
    #[error("{0}")]
    NotJson(String),
}

impl From<CanonicalError> for String {
    fn from(e: CanonicalError) -> String {
        e.to_string()
    }
}

/// Prefix of every digest writ prints or binds.
pub const DIGEST_PREFIX: &str = "sha256:";

/// The RFC 8785 canonical bytes of a JSON value.
pub fn to_canonical_bytes<T: serde::Serialize + ?Sized>(
    value: &T,
) -> Result<Vec<u8>, CanonicalError> {
    serde_jcs::to_vec(value).map_err(|e| CanonicalError::Unrepresentable(e.to_string()))
}

/// Whether serde_json's compact output of `v` is already its RFC 8785 form:
/// no floats and no integers beyond 2^53 (their ECMAScript formatting
/// differs), and every object's keys
/// ASCII and already in order (so insertion order, which serde_json keeps
/// here, equals the UTF-16 order RFC 8785 asks for).
pub fn is_plain(v: &Value) -> bool {
    match v {
        Value::Number(n) => exact_integer(n),
        Value::Array(items) => items.iter().all(is_plain),
        Value::Object(map) => plain_map(map),
        Value::Null | Value::Bool(_) | Value::String(_) => true,
    }
}

/// [`is_plain`] for an object.
pub fn plain_map(map: &Map<String, Value>) -> bool {
    let mut prev: Option<&str> = None;
    for (k, v) in map {
        if !k.is_ascii() || prev.is_some_and(|p| p >= k.as_str()) || !is_plain(v) {
            return false;
        }
        prev = Some(k);
    }
    true
}

/// The RFC 8785 bytes of a JSON value, taking the fast path of
/// [`write_value`] when the value holds no float. Same bytes as
/// [`to_canonical_bytes`], which a test checks.
pub fn value_to_canonical_bytes(v: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    if write_value(v, &mut out) {
        Ok(out)
    } else {
        to_canonical_bytes(v)
    }
}

/// Append the RFC 8785 form of `v` to `out`, ordering object keys as it
/// goes (by UTF-16 code units, RFC 8785 section 3.2.3) without copying the
/// value. Returns `false`, with `out` holding a partial value, when `v`
/// holds a number that is not an integer: its ECMAScript form is
/// [`to_canonical_bytes`]'s job (so is an integer beyond 2^53, which
/// RFC 8785 prints as a double). Strings and integers are serde_json's
/// compact output, which is already RFC 8785's (escapes only for `"`, `\`
/// and control characters, lowercase `\u00xx`; integers in decimal).
pub fn write_value(v: &Value, out: &mut Vec<u8>) -> bool {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if !exact_integer(n) {
                return false;
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if !write_value(item, out) {
                    return false;
                }
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if !plain_order(&entries) {
                entries.sort_by(|a, b| utf16_cmp(a.0, b.0));
            }
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                if !write_value(v, out) {
                    return false;
                }
            }
            out.push(b'}');
        }
    }
    true
}

/// Largest integer magnitude an IEEE 754 double holds exactly.
const EXACT_INTEGER_MAX: u64 = 1 << 53;

/// Whether `n` is an integer whose decimal digits are its RFC 8785 form.
/// RFC 8785 numbers are doubles: a larger integer is printed as the double
/// nearest to it (`u64::MAX` as `18446744073709552000`), which is
/// [`to_canonical_bytes`]'s job.
fn exact_integer(n: &serde_json::Number) -> bool {
    n.as_i64()
        .map(i64::unsigned_abs)
        .or(n.as_u64())
        .is_some_and(|m| m <= EXACT_INTEGER_MAX)
}

/// A JSON string as serde_json writes it (RFC 8785's escaping).
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, and a &str always serializes.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Whether keys are already in RFC 8785 order (strictly increasing ASCII).
fn plain_order(entries: &[(&String, &Value)]) -> bool {
    entries.iter().all(|(k, _)| k.is_ascii())
        && entries
            .windows(2)
            .all(|w| w[0].0.as_str() < w[1].0.as_str())
}

/// RFC 8785 key order: by UTF-16 code units (for ASCII, byte order).
fn utf16_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// Sort every object's keys (byte order, which is RFC 8785's UTF-16 order for
/// ASCII keys), so that a value built in any order can take the fast path of
/// [`value_to_canonical_bytes`].
pub fn sort_keys_deep(v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(sort_keys_deep),
        Value::Object(map) => {
            map.sort_keys();
            map.values_mut().for_each(sort_keys_deep);
        }
        _ => {}
    }
}

/// `sha256:` of the RFC 8785 form of an object.
pub fn digest_map(map: &Map<String, Value>) -> Result<String, CanonicalError> {
    if plain_map(map) {
        serde_json::to_vec(map)
            .map(|b| digest_bytes(&b))
            .map_err(|e| CanonicalError::Json(e.to_string()))
    } else {
        digest_json(map)
    }
}

/// `sha256:` of the RFC 8785 form of a value.
pub fn digest_value(v: &Value) -> Result<String, CanonicalError> {
    Ok(digest_bytes(&value_to_canonical_bytes(v)?))
}

/// `sha256:<hex>` of arbitrary bytes.
pub fn digest_bytes(bytes: &[u8]) -> String {
    let mut hex = [0u8; 64];
    // Infallible: the buffer is exactly twice the digest's length.
    let _ = hex::encode_to_slice(Sha256::digest(bytes), &mut hex);
    let mut s = String::with_capacity(DIGEST_PREFIX.len() + hex.len());
    s.push_str(DIGEST_PREFIX);
    s.extend(hex.iter().map(|&c| char::from(c)));
    s
}

/// `sha256:<hex>` of the RFC 8785 canonical form of a JSON value. This is how a
/// writ binds its request and its environment.
pub fn digest_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, CanonicalError> {
    Ok(digest_bytes(&to_canonical_bytes(value)?))
}

/// Whether `s` has the exact shape of a digest this crate produces.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix(DIGEST_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Refuse JSON text in which any object, at any depth, names a key twice
/// (after unescaping: `"a"` and `"\u0061"` are the same key). RFC 8259 leaves
/// duplicates to the parser, and parsers differ (first wins, last wins, error),
/// so a body with duplicates can mean one thing to the policy and another to a
/// gateway in another language. Nesting is bounded by serde_json's recursion
/// limit (128).
pub fn check_no_duplicate_keys(json: &[u8]) -> Result<(), CanonicalError> {
    serde_json::from_slice::<NoDuplicates>(json)
        .map(|_| ())
        .map_err(|e| {
            let m = e.to_string();
            // NoDuplicates's own error (below) is the only one saying so.
            if m.starts_with(DUPLICATE_KEY) {
                CanonicalError::DuplicateKey(m)
            } else {
                CanonicalError::NotJson(m)
            }
        })
}

/// How [`check_no_duplicate_keys`]'s refusal of a duplicate key begins.
const DUPLICATE_KEY: &str = "duplicate key";

/// Deserializes any JSON value, keeping nothing, failing on a duplicate key.
struct NoDuplicates;

impl<'de> serde::Deserialize<'de> for NoDuplicates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> serde::de::Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i128<E>(self, _: i128) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u128<E>(self, _: u128) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<NoDuplicates, A::Error> {
        while s.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<NoDuplicates, A::Error> {
        let mut seen = std::collections::BTreeSet::new();
        while let Some(k) = m.next_key::<String>()? {
            if seen.contains(&k) {
                return Err(serde::de::Error::custom(format!("{DUPLICATE_KEY} {k:?}")));
            }
            m.next_value::<NoDuplicates>()?;
            seen.insert(k);
        }
        Ok(NoDuplicates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc8785_orders_keys_and_normalizes_numbers_and_strings() {
        // Key order is by UTF-16 code units; numbers use the ECMAScript form.
        let v =
            json!({"b": [1.0, 1e21, -0.0, "\u{20ac}"], "a": {"z": null, "\u{0080}": true, "A": 2}});
        let s = String::from_utf8(to_canonical_bytes(&v).unwrap()).unwrap();
        assert_eq!(
            s,
            "{\"a\":{\"A\":2,\"z\":null,\"\u{0080}\":true},\"b\":[1,1e+21,0,\"\u{20ac}\"]}"
        );
    }

    #[test]
    fn the_fast_path_gives_the_same_bytes_as_full_jcs() {
        for v in [
            json!({"a": 1, "b": [true, null, "x\u{1}\"\\"], "c": {"d": -5, "e": "\u{e9}\u{20ac}"}}),
            json!({"b": 1, "a": 2}),
            json!({"f": 1.5, "g": 1e21}),
            json!({"\u{e9}": 1, "z": 2}),
            json!([1, {"y": 1, "x": 2}]),
        ] {
            assert_eq!(
                value_to_canonical_bytes(&v).unwrap(),
                to_canonical_bytes(&v).unwrap(),
                "{v}"
            );
            assert_eq!(digest_value(&v).unwrap(), digest_json(&v).unwrap());
            if let Value::Object(m) = &v {
                assert_eq!(digest_map(m).unwrap(), digest_json(m).unwrap());
            }
        }
        assert!(!is_plain(&json!(1.5)));
        // RFC 8785 prints integers as doubles: past 2^53 they change.
        assert!(is_plain(&json!(9007199254740992_u64)));
        assert!(!is_plain(&json!(9007199254740993_u64)));
        assert_eq!(
            value_to_canonical_bytes(&json!([u64::MAX, i64::MIN])).unwrap(),
            b"[18446744073709552000,-9223372036854776000]"
        );
    }

    /// Random JSON values (a small xorshift generator: no dependency) with
    /// unordered, non-ASCII and escaped keys and strings, integers at the
    /// edges, and now and then a float.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn random_value(state: &mut u64, depth: u32) -> Value {
        let next = |s: &mut u64| xorshift(s);
        const TEXTS: [&str; 9] = [
            "a",
            "B",
            "\u{e9}t\u{e9}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{ffff}",
            "x\"y\\z",
            "\u{1}\n\u{7f}",
            "",
        ];
        match next(state) % if depth > 3 { 5 } else { 7 } {
            0 => Value::Null,
            1 => Value::Bool(next(state) % 2 == 0),
            2 => match next(state) % 5 {
                0 => Value::from(i64::MIN),
                1 => Value::from(u64::MAX),
                2 => Value::from(0.5 + (next(state) % 100) as f64),
                _ => Value::from((next(state) % 2001) as i64 - 1000),
            },
            3 | 4 => Value::String(
                TEXTS[(next(state) % 9) as usize].repeat((next(state) % 3) as usize + 1),
            ),
            5 => Value::Array(
                (0..next(state) % 4)
                    .map(|_| random_value(state, depth + 1))
                    .collect(),
            ),
            _ => {
                let mut m = Map::new();
                for _ in 0..next(state) % 6 {
                    let k = format!("{}{}", TEXTS[(next(state) % 9) as usize], next(state) % 3);
                    m.insert(k, random_value(state, depth + 1));
                }
                Value::Object(m)
            }
        }
    }

    #[test]
    fn the_streaming_writer_gives_the_same_bytes_as_full_jcs() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut floats = 0;
        for _ in 0..5000 {
            let v = random_value(&mut state, 0);
            let jcs = to_canonical_bytes(&v).unwrap();
            let mut out = Vec::new();
            if write_value(&v, &mut out) {
                assert_eq!(out, jcs, "{v}");
            } else {
                floats += 1;
            }
            assert_eq!(value_to_canonical_bytes(&v).unwrap(), jcs, "{v}");
        }
        assert!(floats > 0 && floats < 5000, "{floats} values held floats");
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

    #[test]
    fn duplicate_keys_are_found_at_any_depth_and_after_unescaping() {
        assert!(check_no_duplicate_keys(br#"{"a":1,"b":[{"c":1,"d":{"e":null}}]}"#).is_ok());
        for bad in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"x":[{"a":1,"a":1}]}"#,
            br#"{"x":{"y":{"k":true,"k":false}}}"#,
            br#"{"a":1,"\u0061":2}"#,
        ] {
            let e = check_no_duplicate_keys(bad).unwrap_err().to_string();
            assert!(e.contains("duplicate key"), "{e}");
        }
        assert!(check_no_duplicate_keys(b"{").is_err());
        assert!(check_no_duplicate_keys(b"[1] x").is_err());
    }
}
