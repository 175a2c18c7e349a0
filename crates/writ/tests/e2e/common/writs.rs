//! Requests, and writs taken apart, rebuilt and signed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use writ_artifact::WritKey;

/// The audience the tests ask their writs for.
pub const AUD: &str = "exec@host-a";

/// An authorize body for `Action::"exec"` of `argv[0]`, bound to `argv`.
pub fn exec_req(argv: &[&str], audience: &str) -> Value {
    json!({
        "action": "Action::\"exec\"",
        "resource": format!("Command::{}", serde_json::to_string(argv[0]).unwrap()),
        "request": {"argv": argv},
        "audience": audience,
    })
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s)
        .unwrap_or_else(|e| panic!("{s:?} is not base64url: {e}"))
}

/// The three parts of a compact JWS.
pub fn parts(writ: &str) -> (String, String, String) {
    let v: Vec<&str> = writ.split('.').collect();
    assert_eq!(v.len(), 3, "not a compact JWS: {writ}");
    (v[0].to_owned(), v[1].to_owned(), v[2].to_owned())
}

pub fn header_of(writ: &str) -> Value {
    serde_json::from_slice(&unb64(&parts(writ).0)).unwrap()
}

pub fn claims_of(writ: &str) -> Value {
    serde_json::from_slice(&unb64(&parts(writ).1)).unwrap()
}

/// The `jti` claim of a writ (surrounding whitespace, as a CLI prints it,
/// ignored).
pub fn jti_of(writ: &str) -> String {
    claims_of(writ.trim())["jti"].as_str().unwrap().to_owned()
}

/// RFC 8785 bytes of `v`.
pub fn canonical(v: &Value) -> Vec<u8> {
    writ_artifact::canonical::to_canonical_bytes(v).unwrap()
}

/// A compact JWS over exactly these header and payload bytes, signed by `key`.
pub fn sign_raw(key: &WritKey, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}
