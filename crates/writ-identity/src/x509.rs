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

use std::fmt;

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
    pub mapped: Result<(String, Identity), CertError>,
}

/// Why a verified client certificate maps to no one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertError {
    /// Its DER cannot be read (why).
    Unreadable(String),
    /// Its subjectAltName extension cannot be read (why).
    SubjectAltName(String),
    /// Its one URI SAN is a malformed SPIFFE ID.
    SpiffeId(String),
    /// It has neither a SPIFFE ID nor a subject.
    Anonymous,
    /// It has more than one URI SAN.
    ManyUris,
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::Unreadable(e) => write!(f, "the client certificate cannot be read: {e}"),
            CertError::SubjectAltName(e) => write!(
                f,
                "the client certificate's subjectAltName cannot be read: {e}"
            ),
            CertError::SpiffeId(id) => write!(
                f,
                "the client certificate's SPIFFE ID {id} is not well formed"
            ),
            CertError::Anonymous => {
                f.write_str("the client certificate has neither a SPIFFE ID nor a subject")
            }
            CertError::ManyUris => f.write_str(
                "the client certificate has more than one URI SAN (an X.509-SVID has exactly one)",
            ),
        }
    }
}

impl std::error::Error for CertError {}

impl PeerCertificate {
    /// Read the leaf certificate (DER) of a verified chain.
    pub fn from_der(der: &[u8]) -> PeerCertificate {
        PeerCertificate { mapped: map(der) }
    }
}

fn map(der: &[u8]) -> Result<(String, Identity), CertError> {
    let cert = Certificate::from_der(der).map_err(|e| CertError::Unreadable(e.to_string()))?;
    let tbs = &cert.tbs_certificate;
    let subject = tbs.subject.to_string();
    let mut uris = Vec::new();
    if let Some((_, san)) = tbs
        .get::<SubjectAltName>()
        .map_err(|e| CertError::SubjectAltName(e.to_string()))?
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
    let uid = match (spiffe.as_slice(), uris.len()) {
        ([id], 1) => {
            let td = spiffe_trust_domain(id).ok_or_else(|| CertError::SpiffeId((*id).clone()))?;
            facts.insert("spiffe_id".into(), Value::String((*id).clone()));
            facts.insert("trust_domain".into(), Value::String(td.to_owned()));
            entity_uid(PRINCIPAL_TYPE, id)
        }
        ([], _) if !subject.is_empty() => entity_uid(PRINCIPAL_TYPE, &subject),
        ([], _) => return Err(CertError::Anonymous),
        _ => return Err(CertError::ManyUris),
    };
    Ok((
        uid,
        Identity {
            method: Method::Mtls,
            facts,
        },
    ))
}
