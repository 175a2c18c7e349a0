//! The client side: what every writ client trusts and presents.
//!
//! Trusted: the system's roots (as `rustls-native-certs` finds them, read
//! once per process) plus every certificate in the PEM file `WRIT_CA`.
//! Presented: the certificate chain `WRIT_CLIENT_CERT` with its key
//! `WRIT_CLIENT_KEY` (both or neither), for servers that require mutual
//! TLS. The variables hold paths, never key material.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::{pem, provider, TlsError};

/// A PEM file of certificate authorities to trust besides the system's.
pub const CA_ENV: &str = "WRIT_CA";
/// A PEM certificate chain to present (mutual TLS).
pub const CLIENT_CERT_ENV: &str = "WRIT_CLIENT_CERT";
/// The PEM private key of `WRIT_CLIENT_CERT`.
pub const CLIENT_KEY_ENV: &str = "WRIT_CLIENT_KEY";

/// How a server's certificate is checked (libpq's `sslmode` names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Chain to a trusted root, and valid for the host name (`verify-full`;
    /// the only mode for HTTPS).
    Full,
    /// Chain to a trusted root, whatever name it is for (`verify-ca`).
    CaOnly,
    /// Encrypt, check nothing of the certificate (`require`, `prefer`).
    EncryptOnly,
}

/// A client's TLS settings.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl ClientTls {
    /// From `WRIT_CA`, `WRIT_CLIENT_CERT` and `WRIT_CLIENT_KEY` (empty is unset).
    pub fn from_env() -> ClientTls {
        ClientTls {
            ca: env_path(CA_ENV),
            cert: env_path(CLIENT_CERT_ENV),
            key: env_path(CLIENT_KEY_ENV),
        }
    }

    /// The system's roots plus `ca`.
    pub fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = system_roots().clone();
        if let Some(ca) = &self.ca {
            add_roots(&mut roots, ca)?;
        }
        Ok(roots)
    }

    /// A config for HTTPS: [`ClientTls::roots`], [`Verify::Full`].
    pub fn config(&self) -> Result<ClientConfig, TlsError> {
        self.config_with(self.roots()?, Verify::Full)
    }

    /// A config trusting `roots`, checking as `verify` says, presenting the
    /// client certificate when one is set.
    pub fn config_with(
        &self,
        roots: RootCertStore,
        verify: Verify,
    ) -> Result<ClientConfig, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match verify {
            Verify::Full => builder.with_root_certificates(roots),
            Verify::CaOnly => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    chain: Some(full_verifier(roots)?),
                })),
            Verify::EncryptOnly => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient { chain: None })),
        };
        match (&self.cert, &self.key) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(pem::certificates(cert)?, pem::private_key(key)?)
                .map_err(|e| {
                    TlsError::Config(format!("{} with {}: {e}", cert.display(), key.display()))
                }),
            _ => Err(TlsError::Config(format!(
                "set both {CLIENT_CERT_ENV} and {CLIENT_KEY_ENV}, or neither"
            ))),
        }
    }
}

/// Add every certificate of the PEM file at `path` to `roots`.
pub fn add_roots(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    for c in pem::certificates(path)? {
        roots.add(c).map_err(|e| TlsError::File {
            path: path.display().to_string(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(())
}

/// The system's trusted roots, read once per process (an unreadable
/// certificate among them is skipped, as browsers and curl do).
pub fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "a system root certificate could not be read");
        }
        let mut roots = RootCertStore::empty();
        let (_, skipped) = roots.add_parsable_certificates(found.certs);
        if skipped > 0 {
            tracing::debug!(skipped, "system root certificates rustls cannot use");
        }
        roots
    })
}

/// An HTTP client that speaks HTTPS with [`ClientTls::from_env`]; a
/// setting that cannot be used is an error, never a silent downgrade.
pub fn http_client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, TlsError> {
    let config = ClientTls::from_env().config()?;
    builder
        .redirect(reqwest::redirect::Policy::none())
        .use_preconfigured_tls(config)
        .build()
        .map_err(|e| TlsError::Config(format!("building the HTTP client: {e}")))
}

/// An HTTPS client trusting the system's roots plus the PEM certificates
/// `ca_pem` (held in configuration shared by a mesh, not in a file), with
/// no client certificate, no redirects, and full verification.
pub fn https_client_with_ca_pem(
    builder: reqwest::ClientBuilder,
    ca_pem: Option<&str>,
) -> Result<reqwest::Client, TlsError> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = system_roots().clone();
    if let Some(pem) = ca_pem {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Config(format!("the CA is not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(TlsError::Config("the CA holds no certificate".into()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| TlsError::Config(format!("not a usable CA certificate: {e}")))?;
        }
    }
    let config = ClientTls::default().config_with(roots, Verify::Full)?;
    builder
        .redirect(reqwest::redirect::Policy::none())
        .use_preconfigured_tls(config)
        .build()
        .map_err(|e| TlsError::Config(format!("building the HTTP client: {e}")))
}

fn full_verifier(roots: RootCertStore) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// `verify-ca` (`chain` holds the roots' verifier: the chain must verify,
/// whatever name it is for) and `require` (no `chain`: the certificate is
/// not checked). The handshake's signatures are checked either way, with
/// the provider's algorithms, as the chain verifier itself checks them.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
