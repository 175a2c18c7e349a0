//! OAuth 2.0 Protected Resource Metadata (RFC 9728) of the HTTP front, as
//! the MCP authorization specification asks of a server: with
//! `--resource-url URL`, the front serves a metadata document naming the
//! resource and the authorization servers whose tokens it takes
//! (`--authorization-server`), and every 401 names that document in its
//! `WWW-Authenticate` challenge, so that a standard MCP client finds where
//! to get a token. The tokens themselves are checked by the authority (an
//! issuer registered with `writ issuer add --audience URL`), never here
//! (docs/spec/mcp-http.md, "Finding the authorization server").

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use reqwest::Url;
use serde_json::json;

use super::wire::{respond, Body};

/// The well-known path prefix of RFC 9728, section 3.1.
const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The metadata document and the challenge that points at it.
pub(super) struct ResourceMetadata {
    /// Paths the document is served at: the well-known path with the
    /// resource's path appended, the endpoint's, and the bare one.
    paths: Vec<String>,
    document: Bytes,
    /// `WWW-Authenticate` of a 401 without a token, and with a refused one.
    missing: HeaderValue,
    refused: HeaderValue,
}

/// An absolute `https` URL (or `http` to this machine), without query or
/// fragment: what a resource or an authorization server identifier is.
fn identifier(flag: &str, text: &str) -> Result<Url> {
    let url = Url::parse(text).with_context(|| format!("{flag} {text:?}: not an absolute URL"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        s => bail!("{flag} {text:?}: must be https (http only on this machine), not {s}"),
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("{flag} {text:?}: must have no query or fragment (RFC 9728)");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("{flag} {text:?}: must hold no credentials");
    }
    Ok(url)
}

impl ResourceMetadata {
    /// The metadata of `--resource-url`, or `None` without one.
    pub(super) fn new(
        name: &str,
        resource: Option<&str>,
        servers: &[String],
    ) -> Result<Option<ResourceMetadata>> {
        let Some(resource) = resource else {
            return Ok(None);
        };
        let url = identifier("--resource-url", resource)?;
        let servers = servers
            .iter()
            .map(|s| identifier("--authorization-server", s).map(|_| s.clone()))
            .collect::<Result<Vec<_>>>()?;
        let path = url.path().trim_end_matches('/');
        let mut paths = vec![
            format!("{WELL_KNOWN}{path}"),
            format!("{WELL_KNOWN}{}", super::PATH),
        ];
        paths.push(WELL_KNOWN.to_owned());
        paths.dedup();
        let mut at = url.clone();
        at.set_path(&paths[0]);
        let document = json!({
            "resource": resource,
            "authorization_servers": servers,
            "bearer_methods_supported": ["header"],
            "resource_name": format!("writ mcp-proxy {name}"),
        });
        let challenge = |extra: &str| {
            HeaderValue::from_str(&format!("Bearer resource_metadata=\"{at}\"{extra}"))
                .context("--resource-url: not usable in a header")
        };
        Ok(Some(ResourceMetadata {
            paths,
            document: Bytes::from(document.to_string()),
            missing: challenge("")?,
            refused: challenge(", error=\"invalid_token\"")?,
        }))
    }

    /// Whether `path` is one the document is served at.
    pub(super) fn serves(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p == path)
    }

    /// `200` with the document (public: it names no one and nothing secret).
    pub(super) fn response(&self) -> Response<Body> {
        respond(
            StatusCode::OK,
            &[
                ("content-type", "application/json"),
                ("cache-control", "max-age=300"),
            ],
            Body::Full(Some(self.document.clone())),
        )
    }

    /// The challenge of a 401: `refused` when a token was given and refused.
    pub(super) fn challenge(&self, refused: bool) -> &HeaderValue {
        if refused {
            &self.refused
        } else {
            &self.missing
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_served_where_rfc_9728_puts_it() {
        let m = ResourceMetadata::new(
            "fs",
            Some("https://mcp.example.com/tools/mcp"),
            &["https://idp.example.com".into()],
        )
        .unwrap()
        .unwrap();
        for p in [
            "/.well-known/oauth-protected-resource/tools/mcp",
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource",
        ] {
            assert!(m.serves(p), "{p}");
        }
        assert!(!m.serves("/.well-known/oauth-protected-resource/other"));
        assert_eq!(
            m.challenge(false).to_str().unwrap(),
            "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/tools/mcp\""
        );
        assert!(m
            .challenge(true)
            .to_str()
            .unwrap()
            .ends_with(", error=\"invalid_token\""));
        let doc: serde_json::Value = serde_json::from_slice(&m.document).unwrap();
        assert_eq!(doc["resource"], "https://mcp.example.com/tools/mcp");
        assert_eq!(doc["authorization_servers"][0], "https://idp.example.com");
    }

    #[test]
    fn identifiers_are_https_urls_without_query_fragment_or_credentials() {
        let bad = [
            "mcp.example.com/mcp",
            "http://mcp.example.com/mcp",
            "https://mcp.example.com/mcp?x=1",
            "https://mcp.example.com/mcp#f",
            "https://u:p@mcp.example.com/mcp",
            "ftp://mcp.example.com/",
        ];
        for b in bad {
            assert!(ResourceMetadata::new("fs", Some(b), &[]).is_err(), "{b}");
            let err = ResourceMetadata::new("fs", Some("https://ok.example/mcp"), &[b.into()]);
            assert!(err.is_err(), "--authorization-server {b}");
        }
        for ok in [
            "http://127.0.0.1:8080/mcp",
            "http://localhost/mcp",
            "https://a.example",
        ] {
            assert!(
                ResourceMetadata::new("fs", Some(ok), &[])
                    .unwrap()
                    .is_some(),
                "{ok}"
            );
        }
        assert!(ResourceMetadata::new("fs", None, &[]).unwrap().is_none());
    }
}
