//! The console that `writ serve` serves at `/`: the governance console, the
//! proof viewer, the infrastructure health dashboard, the lineage explorer,
//! the runtime governance demo and the maturity (EGMM) assessment.
//!
//! Pages are server-rendered HTML shells (one per area, with the same
//! navigation) and one small vanilla script and style sheet, all embedded
//! with `include_str!`: nothing is fetched from anywhere but this server (the
//! Content-Security-Policy says so to the browser too). Live parts use
//! server-sent events.
//!
//! **API boundary:** the console decides nothing. Its JSON and SSE routes
//! only read the authority and the store (what the public `/v1/log/*` routes
//! already reveal: entries, bundles, checkpoints), run the verifiers of
//! `writ-artifact`, `writ-log` and `writ-audit`, and the runtime demo calls
//! the same [`writ_authority::Authority`] methods the HTTP API calls. Every
//! action that changes something (revoke, demo) needs a bearer token the
//! browser holds; the server never renders a token into a page.
#![forbid(unsafe_code)]

pub mod api;
mod assess;
pub mod demo;
mod proof;
pub mod readers;
mod state;
mod summary;

use std::sync::Arc;

pub use api::{node_status, policy_listing};
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
pub use state::{Assessed, Console};
pub use summary::summarize;
use writ_authority::Authority;

/// Largest body a console route accepts (a pasted writ).
pub const CONSOLE_BODY_BYTES_MAX: usize = 64 * 1024;

/// One area of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Governance,
    Proof,
    Health,
    Lineage,
    Demo,
    Maturity,
}

impl Page {
    pub const ALL: [Page; 6] = [
        Page::Governance,
        Page::Proof,
        Page::Health,
        Page::Lineage,
        Page::Demo,
        Page::Maturity,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Page::Governance => "/",
            Page::Proof => "/console/proof",
            Page::Health => "/console/health",
            Page::Lineage => "/console/lineage",
            Page::Demo => "/console/demo",
            Page::Maturity => "/console/maturity",
        }
    }

    fn id(self) -> &'static str {
        match self {
            Page::Governance => "governance",
            Page::Proof => "proof",
            Page::Health => "health",
            Page::Lineage => "lineage",
            Page::Demo => "demo",
            Page::Maturity => "maturity",
        }
    }

    /// The navigation label and the page's heading.
    pub fn title(self) -> &'static str {
        match self {
            Page::Governance => "Governance",
            Page::Proof => "Proof viewer",
            Page::Health => "Health",
            Page::Lineage => "Lineage",
            Page::Demo => "Runtime demo",
            Page::Maturity => "Maturity",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Page::Governance => include_str!("../assets/governance.html"),
            Page::Proof => include_str!("../assets/proof.html"),
            Page::Health => include_str!("../assets/health.html"),
            Page::Lineage => include_str!("../assets/lineage.html"),
            Page::Demo => include_str!("../assets/demo.html"),
            Page::Maturity => include_str!("../assets/maturity.html"),
        }
    }
}

/// Everything may come from this server only; no inline script or style.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The HTML of one page (static: the script fills it in).
pub fn render(page: Page) -> String {
    let mut nav = String::new();
    for p in Page::ALL {
        let current = if p == page {
            " aria-current=\"page\""
        } else {
            ""
        };
        nav.push_str(&format!(
            "<li><a href=\"{}\"{current}>{}</a></li>",
            p.path(),
            p.title()
        ));
    }
    format!(
        include_str!("../assets/shell.html"),
        title = page.title(),
        id = page.id(),
        nav = nav,
        body = page.body()
    )
}

fn html(page: Page) -> Response {
    let mut r = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        render(page),
    )
        .into_response();
    secure(&mut r);
    r
}

fn secure(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `GET /`: the governance console (writ-server routes `/` here), with the
/// active bundle's hash rendered by the server (the script keeps it current).
pub fn index(authority: &Authority) -> Response {
    let page = render(Page::Governance).replacen(
        "<code id=\"policy-hash\">…</code>",
        &format!(
            "<code id=\"policy-hash\">{}</code>",
            escape(&authority.active_policy())
        ),
        1,
    );
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
    secure(&mut r);
    r
}

/// Text made safe for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    secure(&mut r);
    r
}

/// The console's pages, assets and JSON/SSE routes (everything but `/`).
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/console/proof", get(|| async { html(Page::Proof) }))
        .route("/console/health", get(|| async { html(Page::Health) }))
        .route("/console/lineage", get(|| async { html(Page::Lineage) }))
        .route("/console/demo", get(|| async { html(Page::Demo) }))
        .route("/console/maturity", get(|| async { html(Page::Maturity) }))
        .route(
            "/console/assets/console.css",
            get(|| async {
                asset(
                    "text/css; charset=utf-8",
                    include_str!("../assets/console.css"),
                )
            }),
        )
        .route(
            "/console/assets/console.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../assets/console.js"),
                )
            }),
        )
        .route("/console/api/entries", get(api::entries))
        .route("/console/api/stream", get(api::stream))
        .route("/console/api/policy", get(api::policy))
        .route("/console/api/revocations", get(api::revocations))
        .route("/console/api/executions", get(api::executions))
        .route("/console/api/lineage/{jti}", get(api::lineage))
        .route("/console/api/health", get(api::health))
        .route("/console/api/assess", get(assess::assess))
        .route(
            "/console/api/proof",
            get(proof::by_index).post(proof::by_writ),
        )
        .route("/console/api/demo", post(demo::run))
        .layer(DefaultBodyLimit::max(CONSOLE_BODY_BYTES_MAX))
        .with_state(console)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn every_page_links_every_area_and_marks_itself() {
        for p in Page::ALL {
            let h = render(p);
            for q in Page::ALL {
                assert!(
                    h.contains(&format!("href=\"{}\"", q.path())),
                    "{p:?} lacks {q:?}"
                );
            }
            assert_eq!(h.matches("aria-current=\"page\"").count(), 1, "{p:?}");
            assert!(h.contains(&format!("<h1>{}</h1>", p.title())), "{p:?}");
            // Nothing from elsewhere: no absolute URL to another host.
            assert!(!h.contains("http://") && !h.contains("https://"), "{p:?}");
        }
    }

    #[test]
    fn escape_neutralizes_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn assets_fetch_nothing_from_elsewhere() {
        for a in [
            include_str!("../assets/console.js"),
            include_str!("../assets/console.css"),
        ] {
            // The SVG namespace is a name, not something fetched.
            let a = a.replace("'http://www.w3.org/2000/svg'", "");
            assert!(!a.contains("http://") && !a.contains("https://"));
            assert!(!a.contains("@import") && !a.contains("url("));
        }
    }
}
