//! The server side: `writ serve --tls-cert FILE --tls-key FILE [--client-ca
//! FILE]` and `writ witness` with the same options.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::{pem, provider, TlsError};

/// Where a server's certificate, key and (for mutual TLS) client CA are.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Clients must present a certificate issued by one of these (PEM).
    pub client_ca: Option<PathBuf>,
}

/// A server's TLS configuration, reloadable from its files.
#[derive(Debug)]
pub struct ServerTls {
    files: ServerFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Read the files; `Err` names the file and what is wrong with it.
    pub fn load(files: ServerFiles) -> Result<ServerTls, TlsError> {
        let config = build(&files)?;
        Ok(ServerTls {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// The configuration new connections use.
    pub fn config(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Read the files again (a renewed certificate); on error the current
    /// configuration stays and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(build(&self.files)?);
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }
}

fn build(files: &ServerFiles) -> Result<ServerConfig, TlsError> {
    let certs = pem::certificates(&files.cert)?;
    let key = pem::private_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in pem::certificates(ca)? {
                roots.add(c).map_err(|e| TlsError::File {
                    path: ca.display().to_string(),
                    message: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::Config(format!("client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError::Config(format!(
            "{} with {}: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
