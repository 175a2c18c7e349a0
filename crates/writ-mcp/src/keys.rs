//! One meaning per message: object keys that another JSON parser would
//! read as the same key.
//!
//! The proxy decides on its own reading of a message and forwards the bytes
//! it read; a server (or client) reads them with its own parser. Parsers
//! differ on a key named twice (first wins, last wins, error), and some match
//! keys *case-insensitively*: Go's `encoding/json` (the Go MCP SDK, mcp-go)
//! fills a struct field from any key equal to its name under Unicode case
//! folding, the last one winning, so `{"method":"ping","Method":"tools/call"}`
//! is a `tools/call` to a Go server and `"Name"`, `"NAME"` or, with the
//! long s, `"argumentſ"` reach the fields `name` and `arguments`.
//!
//! So a message in which two keys of one object are equal under full
//! Unicode case folding ([`unicase`], which folds `ſ` to `s`, the Kelvin
//! sign to `k` and `ẞ` and `ß` alike) is refused, at any depth and in every
//! message, whatever its method: it has no one meaning. Full folding equates
//! everything Go's simple folding does, and a little more (`ß` and `ss`),
//! which only refuses more.

use std::collections::HashSet;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use unicase::UniCase;

/// Why a message has no one meaning, in serde_json's words (with the line
/// and column).
#[derive(Debug, thiserror::Error)]
pub enum MeaningError {
    /// Two keys of one object are one key to some parser: the first such
    /// pair.
    #[error("{0}")]
    SameKey(serde_json::Error),
    /// The message is not JSON.
    #[error("{0}")]
    NotJson(serde_json::Error),
}

/// `Err` naming the first pair of keys that fold to one, or the JSON error.
pub fn check_one_meaning(json: &[u8]) -> Result<(), MeaningError> {
    serde_json::from_slice::<Checked>(json)
        .map(|_| ())
        .map_err(|e| match e.classify() {
            // The visitor below accepts every JSON value: its only data
            // error is its own refusal of a key.
            serde_json::error::Category::Data => MeaningError::SameKey(e),
            _ => MeaningError::NotJson(e),
        })
}

struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Checked, A::Error> {
        while s.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Checked, A::Error> {
        let mut seen: HashSet<UniCase<String>> = HashSet::new();
        while let Some(k) = m.next_key::<String>()? {
            let folded = UniCase::unicode(k);
            if let Some(earlier) = seen.get(&folded) {
                let (a, b) = (earlier.as_ref(), folded.as_ref());
                return Err(serde::de::Error::custom(if a == b {
                    format!("key {a:?} appears twice")
                } else {
                    format!("keys {a:?} and {b:?} are one key to a case-insensitive parser")
                }));
            }
            m.next_value::<Checked>()?;
            seen.insert(folded);
        }
        Ok(Checked)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn keys_equal_under_case_folding_are_refused_at_any_depth() {
        for bad in [
            r#"{"method":"ping","Method":"tools/call"}"#,
            r#"{"a":{"name":"read","NAME":"write"}}"#,
            r#"{"a":[{"x":1},{"arguments":{},"argumentſ":{"path":"/etc/shadow"}}]}"#,
            // The Kelvin sign folds to k, the capital sharp s to ß (and ss).
            r#"{"kind":1,"Kind":2}"#,
            r#"{"kind":1,"\u212aind":2}"#,
            r#"{"stra\u00dfe":1,"STRA\u1e9eE":2}"#,
            // Escaped and plain spellings of one key.
            r#"{"name":1,"n\u0061me":2}"#,
            r#"{"id":1,"ID":2}"#,
        ] {
            let e = check_one_meaning(bad.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("key"), "{bad}: {e}");
        }
        for good in [
            r#"{"method":"ping","params":{"name":"a","arguments":{"Path":1,"path2":2}}}"#,
            r#"{"a":{"b":1},"c":{"b":2}}"#,
            r#"[{"x":1},{"x":2}]"#,
            // Distinct letters that only look alike are distinct to every parser.
            r#"{"name":1,"n\u0430me":2}"#,
        ] {
            check_one_meaning(good.as_bytes()).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    #[test]
    fn a_key_named_twice_is_told_from_text_that_is_not_json() {
        let twice = check_one_meaning(br#"{"id":1,"ID":2}"#).unwrap_err();
        assert!(matches!(twice, MeaningError::SameKey(_)), "{twice}");
        let cut = check_one_meaning(br#"{"id":1"#).unwrap_err();
        assert!(matches!(cut, MeaningError::NotJson(_)), "{cut}");
    }
}
