//! TLS to PostgreSQL as libpq's `sslmode` and `sslrootcert` say (from the
//! store URL's query), with rustls (`writ_tls`):
//!
//! | `sslmode` | TLS | the server's certificate |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `allow`, `prefer` (the default, on this machine only) | if the server offers it | not checked |
//! | `require` | always | not checked; with `sslrootcert`, as `verify-ca` (as libpq) |
//! | `verify-ca` | always | chains to `sslrootcert` (or `WRIT_CA`): never to the public CAs, since no name is checked |
//! | `verify-full` | always | chains to a trusted root and names the host |
//!
//! Trusted roots for `verify-full`: the PEM file `sslrootcert`
//! (`system`: the system's roots; allowed with `verify-full` only, as
//! libpq), else the system's roots plus `WRIT_CA`. `PGSSLMODE` and
//! `PGSSLROOTCERT` apply when the URL names neither. A store on another host
//! needs an explicit `sslmode`: without one it is refused (`prefer` would
//! let anyone on the path strip TLS); any mode but `verify-full` is warned
//! about. The client certificate, when the server asks for one, is
//! `WRIT_CLIENT_CERT` / `WRIT_CLIENT_KEY`.

use std::path::PathBuf;

use tokio_postgres::config::SslMode;
use writ_tls::client::{ClientTls, Verify};

use crate::StoreError;

/// What the URL asks of TLS.
pub(crate) struct PgTls {
    pub mode: SslMode,
    pub config: writ_tls::rustls::ClientConfig,
}

fn bad(m: impl Into<String>) -> StoreError {
    StoreError::Unavailable(m.into())
}

/// `url` without `sslmode`/`sslrootcert`, and the TLS they ask for.
pub(crate) fn from_url(url: &str) -> Result<(String, PgTls), StoreError> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let (mut sslmode, mut rootcert) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => sslmode = Some(percent_decode(v)?),
            "sslrootcert" => rootcert = Some(percent_decode(v)?),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let explicit = sslmode.is_some() || env("PGSSLMODE").is_some();
    let sslmode = sslmode.or_else(|| env("PGSSLMODE"));
    let rootcert = rootcert.or_else(|| env("PGSSLROOTCERT"));
    let local = is_local(base);
    if !local && !explicit {
        return Err(bad(
            "the store is on another host: give sslmode=verify-full (and sslrootcert=) in its URL, or name a weaker sslmode explicitly",
        ));
    }
    let client = ClientTls::from_env();
    let mode_name = sslmode.as_deref().unwrap_or("prefer");
    if rootcert.as_deref() == Some("system") && mode_name != "verify-full" {
        return Err(bad(format!(
            "sslrootcert=system trusts every public CA: it goes with sslmode=verify-full only, not {mode_name}"
        )));
    }
    let (mode, verify) = match mode_name {
        "disable" => (SslMode::Disable, Verify::EncryptOnly),
        "allow" | "prefer" => (SslMode::Prefer, Verify::EncryptOnly),
        "require" if rootcert.is_some() => (SslMode::Require, Verify::CaOnly),
        "require" => (SslMode::Require, Verify::EncryptOnly),
        "verify-ca" => (SslMode::Require, Verify::CaOnly),
        "verify-full" => (SslMode::Require, Verify::Full),
        other => {
            return Err(bad(format!(
            "sslmode={other}: expected disable, allow, prefer, require, verify-ca or verify-full"
        )))
        }
    };
    let roots = match (verify, rootcert.as_deref()) {
        (Verify::EncryptOnly, _) => writ_tls::rustls::RootCertStore::empty(),
        (_, Some("system")) => writ_tls::client::system_roots().clone(),
        (_, Some(path)) => {
            let mut r = writ_tls::rustls::RootCertStore::empty();
            writ_tls::client::add_roots(&mut r, &PathBuf::from(path))
                .map_err(|e| bad(format!("sslrootcert: {e}")))?;
            r
        }
        // verify-ca checks no name: it trusts only the CA named for it.
        (Verify::CaOnly, None) => match &client.ca {
            Some(ca) => {
                let mut r = writ_tls::rustls::RootCertStore::empty();
                writ_tls::client::add_roots(&mut r, ca).map_err(|e| bad(e.to_string()))?;
                r
            }
            None => {
                return Err(bad(
                    "sslmode=verify-ca checks no host name, so it needs the CA itself: give sslrootcert=FILE (or WRIT_CA)",
                ))
            }
        },
        (Verify::Full, None) => client.roots().map_err(|e| bad(e.to_string()))?,
    };
    let config = client
        .config_with(roots, verify)
        .map_err(|e| bad(format!("TLS to PostgreSQL: {e}")))?;
    if verify != Verify::Full && !local {
        tracing::warn!(
            sslmode = mode_name,
            "the store is on another host and reached without sslmode=verify-full: someone on the network path could read or change what writ stores"
        );
    }
    Ok((url, PgTls { mode, config }))
}

/// Whether the URL's host is this machine (loopback or a Unix socket).
fn is_local(base: &str) -> bool {
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host.is_empty()
        || host.starts_with('%')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn percent_decode(v: &str) -> Result<String, StoreError> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(format!("bad percent-encoding in {v:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(format!("{v:?} is not UTF-8")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_the_url() {
        let (url, tls) =
            from_url("postgres://u@127.0.0.1:5432/db?sslmode=disable&application_name=x").unwrap();
        assert_eq!(url, "postgres://u@127.0.0.1:5432/db?application_name=x");
        assert_eq!(tls.mode, SslMode::Disable);
        let (url, tls) = from_url("postgres://u@localhost/db").unwrap();
        assert_eq!(
            (url.as_str(), tls.mode),
            ("postgres://u@localhost/db", SslMode::Prefer)
        );
        assert!(from_url("postgres://u@h/db?sslmode=verify-everything").is_err());
        let err =
            from_url("postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fnonexistent%2Fca.pem")
                .err()
                .unwrap()
                .to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        assert!(is_local("postgres://u@localhost:5/db") && is_local("postgres://u@[::1]:5/db"));
        // Another host needs a mode named; verify-ca never trusts public CAs.
        let err = |u: &str| from_url(u).err().unwrap().to_string();
        assert!(err("postgres://u@db.example.org/db").contains("sslmode=verify-full"));
        assert!(err("postgres://u@h/db?sslmode=verify-ca").contains("sslrootcert"));
        assert!(err("postgres://u@h/db?sslmode=require&sslrootcert=system")
            .contains("verify-full only"));
        assert!(
            from_url("postgres://u@db.example.org/db?sslmode=verify-full&sslrootcert=system")
                .is_ok()
        );
        assert!(is_local("postgres://u@%2Frun%2Fpostgresql/db"));
        assert!(!is_local("postgres://u@db.example.org:5432/db"));
    }
}
