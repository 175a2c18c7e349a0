//! TLS on every hop, with rustls and its `ring` provider (the one crypto
//! stack writ links besides its own Ed25519 and SHA-256; ARCHITECTURE.md).
//!
//! - [`server`]: the server side of `writ serve` and `writ witness`: a
//!   certificate chain and key from PEM files, optionally a client CA (mutual
//!   TLS: a client certificate is then required), reloadable (SIGHUP).
//! - [`client`]: every client (the CLI, `writ exec`, `writ mcp-proxy`, a log
//!   asking its witnesses, mesh nodes reaching PostgreSQL) trusts the
//!   system's roots plus `WRIT_CA` and presents `WRIT_CLIENT_CERT` /
//!   `WRIT_CLIENT_KEY` when set; [`client::Verify`] are libpq's `sslmode`s.
//! - [`pem`]: reading certificates and keys, with errors that name the file.
//!
//! **API boundary:** reads only the PEM files it is given (and the system's
//! roots); no network IO of its own.
#![forbid(unsafe_code)]

pub mod client;
pub mod pem;
pub mod server;

use std::sync::Arc;

pub use rustls;

/// A TLS setting that cannot be used: a file that is missing or holds no
/// certificate or key, or certificates rustls refuses.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Config(String),
}

/// The crypto provider every config here uses: `ring` (no C toolchain or
/// CMake to build, a third of aws-lc-rs's size). rustls 0.23.48 deprecates it
/// because it has no post-quantum key exchange (X25519MLKEM768); moving to
/// aws-lc-rs is a one-line change here (ARCHITECTURE.md, "Choices").
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
