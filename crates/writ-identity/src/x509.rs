//! Mutual TLS: who the client certificate says the caller is.
//!
//! The TLS layer has already verified the chain to the configured client CA
//! (`writ serve --client-ca`); this reads the leaf and maps it to a
//! principal by one rule (docs/spec/identity.md):
//!
//! - a certificate with a SPIFFE ID (a URI SAN `spiffe://...`: an X.509-SVID,
//!   which carries exactly one URI SAN, SPIFFE X.509-SVID section 2) is
//!   `Workload::"<SPIFFE ID>"`;
//! - any other certificate is `Workload::"<subject>"`, the subject's
//!   distinguished name as RFC 4514 writes it (`CN=planner,O=Example`), which
//!   can never be mistaken for a SPIFFE ID.
//!
//! A certificate with more than one URI SAN, a malformed SPIFFE ID, or an
//! empty subject and no SPIFFE ID maps to no one.

use serde_json::{Map, Value};
use x509_cert::der::Decode as _;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

use crate::{entity_uid, spiffe_trust_domain, Identity, Method};

/// The entity type of certificate-authenticated principals.
pub const PRINCIPAL_TYPE: &str = "Workload";

/// What a verified client certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The principal it maps to, or why it maps to none.
    pub mapped: Result<(String, Identity), String>,
}

impl PeerCertificate {
    /// Read the leaf certificate (DER) of a verified chain.
    pub fn from_der(der: &[u8]) -> PeerCertificate {
        PeerCertificate { mapped: map(der) }
    }
}

fn map(der: &[u8]) -> Result<(String, Identity), String> {
    let cert = Certificate::from_der(der)
        .map_err(|e| format!("the client certificate cannot be read: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let subject = tbs.subject.to_string();
    let mut uris = Vec::new();
    if let Some((_, san)) = tbs
        .get::<SubjectAltName>()
        .map_err(|e| format!("the client certificate's subjectAltName cannot be read: {e}"))?
    {
        for n in san.0 {
            if let GeneralName::UniformResourceIdentifier(u) = n {
                uris.push(u.to_string());
            }
        }
    }
    let mut facts = Map::new();
    if !subject.is_empty() {
        facts.insert("subject".into(), Value::String(subject.clone()));
    }
    let spiffe: Vec<&String> = uris.iter().filter(|u| u.starts_with("spiffe://")).collect();
    let uid =
        match (spiffe.as_slice(), uris.len()) {
            ([id], 1) => {
                let td = spiffe_trust_domain(id).ok_or_else(|| {
                    format!("the client certificate's SPIFFE ID {id} is not well formed")
                })?;
                facts.insert("spiffe_id".into(), Value::String((*id).clone()));
                facts.insert("trust_domain".into(), Value::String(td.to_owned()));
                entity_uid(PRINCIPAL_TYPE, id)
            }
            ([], _) if !subject.is_empty() => entity_uid(PRINCIPAL_TYPE, &subject),
            ([], _) => {
                return Err("the client certificate has neither a SPIFFE ID nor a subject".into())
            }
            _ => return Err(
                "the client certificate has more than one URI SAN (an X.509-SVID has exactly one)"
                    .into(),
            ),
        };
    Ok((
        uid,
        Identity {
            method: Method::Mtls,
            facts,
        },
    ))
}
