//! Who a caller is, proven by the identity systems a deployment already
//! has, not by a secret writ minted (docs/spec/identity.md):
//!
//! - [`issuer`]: JWTs of registered issuers (an OIDC provider's ID or
//!   access token, a SPIFFE JWT-SVID, a Kubernetes projected
//!   service-account token), checked against the issuer's JWKS.
//! - [`x509`]: the client certificate of a mutual-TLS connection (a SPIFFE
//!   X.509-SVID, or any certificate the configured CA issued).
//! - [`peercred`]: a local caller over a Unix socket, as the kernel names
//!   it (uid, gid, pid, and the executable behind the pid).
//!
//! What it proves is an [`Identity`]: how the caller authenticated and the
//! facts of that proof, which the authority puts in the Cedar context
//! (`context.identity`) so that a policy can say which workloads may act.
#![forbid(unsafe_code)]

pub mod issuer;
pub mod peercred;
pub mod x509;

use serde_json::{Map, Value};

/// How a caller proved who it is (`context.identity.method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A principal's token, minted by writ.
    Token,
    /// The credential of the execution a runner started (minted by writ).
    Credential,
    /// A JWT of a registered issuer (OIDC, SPIFFE JWT-SVID, Kubernetes).
    Oidc,
    /// A client certificate of a mutual-TLS connection.
    Mtls,
    /// The kernel's word for a local peer (a Unix socket's credentials).
    Peercred,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Token => "token",
            Method::Credential => "credential",
            Method::Oidc => "oidc",
            Method::Mtls => "mtls",
            Method::Peercred => "peercred",
        }
    }
}

/// How a caller authenticated, and what that proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub method: Method,
    /// Facts of the proof: for `oidc` the issuer, subject and claims; for
    /// `mtls` the SPIFFE ID, trust domain and subject; none for tokens.
    pub facts: Map<String, Value>,
}

impl Identity {
    /// An identity with no facts beyond its method.
    pub fn of(method: Method) -> Identity {
        Identity {
            method,
            facts: Map::new(),
        }
    }

    /// `context.identity`: `{"method": ..., <facts>}`.
    pub fn to_context(&self) -> Value {
        let mut m = Map::with_capacity(self.facts.len() + 1);
        m.insert("method".into(), Value::String(self.method.as_str().into()));
        for (k, v) in &self.facts {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// The trust domain of a SPIFFE ID (`spiffe://<trust domain>/<path>`), if
/// `id` is one as the SPIFFE ID specification (section 2) spells it: a
/// lowercase trust domain of letters, digits, `.`, `-` and `_`, and a path
/// of segments that are neither empty, `.` nor `..`, with no query or
/// fragment.
pub fn spiffe_trust_domain(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("spiffe://")?;
    let (td, path) = match rest.split_once('/') {
        Some((td, path)) => (td, Some(path)),
        None => (rest, None),
    };
    let td_ok = !td.is_empty()
        && td.len() <= 255
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    let path_ok = path.is_none_or(|p| {
        p.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        })
    });
    (td_ok && path_ok && id.len() <= 2048).then_some(td)
}

/// `TYPE::"<id>"`, the id escaped as a JSON string (which Cedar reads).
pub fn entity_uid(ty: &str, id: &str) -> String {
    format!(
        "{ty}::{}",
        serde_json::to_string(id).unwrap_or_else(|_| "\"\"".into())
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_as_the_spec_spells_them() {
        assert_eq!(
            spiffe_trust_domain("spiffe://example.org/ns/prod/sa/planner"),
            Some("example.org")
        );
        assert_eq!(
            spiffe_trust_domain("spiffe://example.org"),
            Some("example.org")
        );
        for bad in [
            "spiffe://",
            "spiffe://Example.org/x",
            "spiffe://example.org/",
            "spiffe://example.org//x",
            "spiffe://example.org/../x",
            "spiffe://example.org/x?y",
            "spiffe://example.org/x#y",
            "spiffe://user@example.org/x",
            "spiffe://example.org:8443/x",
            "https://example.org/x",
        ] {
            assert_eq!(spiffe_trust_domain(bad), None, "{bad}");
        }
    }

    #[test]
    fn identity_context_has_the_method_first() {
        let mut id = Identity::of(Method::Mtls);
        id.facts.insert("trust_domain".into(), "example.org".into());
        assert_eq!(
            id.to_context(),
            serde_json::json!({"method": "mtls", "trust_domain": "example.org"})
        );
        assert_eq!(entity_uid("Workload", "a\"b"), "Workload::\"a\\\"b\"");
    }
}
