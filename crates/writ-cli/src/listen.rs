//! The connection options `writ serve` and `writ witness` share: TLS, the
//! connection limit and request deadlines (`writ_server::listen`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

#[derive(Args, Debug, Clone, Default)]
pub struct ListenArgs {
    /// Serve HTTPS with this certificate chain (PEM, leaf first). Reloaded,
    /// with the key and client CA, on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: every client must present a certificate issued by a CA in
    /// this PEM file (clients set WRIT_CLIENT_CERT and WRIT_CLIENT_KEY); the
    /// bearer token is still what authenticates a principal, unless
    /// `--client-cert-identities`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// With `--client-ca`: a request with no bearer token is made by its
    /// client certificate's principal, `Workload::"<SPIFFE ID>"` (an
    /// X.509-SVID) or `Workload::"<subject>"` (docs/spec/identity.md).
    /// Every certificate the CA issued then authenticates: use a CA that
    /// issues only to workloads.
    #[arg(long, requires = "client_ca")]
    pub client_cert_identities: bool,
    /// Serve plain HTTP on an address other than loopback (tokens, writs and
    /// the keys that verify them then cross the network in cleartext).
    /// Without TLS, only a loopback address is served.
    #[arg(long)]
    pub insecure_plain_http: bool,
    /// Connections open at once; one more is closed as soon as it is
    /// accepted (`writ_connections_refused_total`). One peer address may
    /// hold half of them, one principal's event streams a quarter.
    #[arg(long, value_name = "N", default_value_t = writ_server::listen::MAX_CONNECTIONS_DEFAULT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,
    /// Seconds a request's head (or TLS handshake), and then its body, may
    /// take to arrive, and an answer may wait for the client to read it; a
    /// keep-alive connection idle this long is closed.
    #[arg(long, value_name = "SECS", default_value_t = writ_server::listen::REQUEST_TIMEOUT_SECS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_secs: u64,
}

impl ListenArgs {
    /// The settings, the TLS files read (each error names its file); a
    /// plain-HTTP address that is not loopback is refused unless
    /// `--insecure-plain-http`.
    pub fn listen(&self, bound: SocketAddr) -> Result<writ_server::Listen> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(
                writ_tls::server::ServerTls::load(writ_tls::server::ServerFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: self.client_ca.clone(),
                })
                .context("--tls-cert / --tls-key / --client-ca")?,
            )),
            _ => None,
        };
        if tls.is_none() && !bound.ip().is_loopback() && !self.insecure_plain_http {
            bail!(
                "refusing to serve plain HTTP on {bound}, which is not a loopback address: give --tls-cert and --tls-key (or --insecure-plain-http to accept cleartext tokens)"
            );
        }
        let timeout = Duration::from_secs(self.request_timeout_secs);
        Ok(writ_server::Listen {
            tls,
            max_connections: within_fd_limit(self.max_connections),
            header_timeout: timeout,
            body_timeout: timeout,
            cert_identities: self.client_cert_identities,
        })
    }
}

/// File descriptors kept for the store, logs and outgoing calls.
const FDS_RESERVED: u64 = 64;

/// `wanted`, lowered (with a warning) so that that many connections leave
/// the process [`FDS_RESERVED`] descriptors under its open-file limit:
/// past the limit every accept fails, and the store with it.
fn within_fd_limit(wanted: usize) -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .and_then(|v| v.parse::<u64>().ok());
    let Some(soft) = soft else {
        return wanted;
    };
    let room = usize::try_from(soft.saturating_sub(FDS_RESERVED).max(1)).unwrap_or(usize::MAX);
    if wanted > room {
        tracing::warn!(
            wanted,
            allowed = room,
            open_files_limit = soft,
            "--max-connections lowered to fit the open-file limit (raise it with `ulimit -n`)"
        );
        return room;
    }
    wanted
}

/// The scheme clients use for `listen`.
pub fn scheme(listen: &writ_server::Listen) -> &'static str {
    if listen.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// Reload the TLS files on every SIGHUP (a renewed certificate); a reload
/// that fails keeps the files in use and says why.
pub fn reload_on_sighup(listen: &writ_server::Listen) {
    let Some(tls) = listen.tls.clone() else {
        return;
    };
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP; TLS files are read at start only");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate and key reloaded"),
                Err(e) => tracing::error!(error = %e, "TLS reload failed; the files in use stay"),
            }
        }
    });
}
