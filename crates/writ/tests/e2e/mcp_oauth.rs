//! The HTTP front's OAuth protected-resource metadata (RFC 9728; docs/spec/
//! mcp-http.md, "Finding the authorization server"): the TypeScript SDK's
//! own discovery functions find the authorization server from a 401, and a
//! token that server issues (made by PyJWT, its issuer registered with the
//! front's URL as audience) opens a session as its subject, with the
//! TypeScript SDK's Streamable HTTP client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use crate::mcp_http::{
    client, echo, free_port, front_on, initialize, list, node_json, post, sessions, setup, Upstream,
};
use serde_json::{json, Value};

const DISCOVER: &str = include_str!("fixtures/mcp_oauth_discover.mjs");
const ISSUER: &str = "https://idp.test";

/// A key set written to `dir/jwks.json`, and tokens of `ISSUER` for
/// `audience` (one per entry: `[audience, sub]`), made by PyJWT.
fn tokens(dir: &std::path::Path, wanted: &[(&str, &str)]) -> Vec<String> {
    let py = python_venv(
        "pyenv",
        "pyjwt[crypto]",
        "import jwt, cryptography; assert jwt.__version__ >= '2'",
    );
    let script = r#"
import json, sys, time, jwt
from jwt.algorithms import ECAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
job = json.load(sys.stdin)
k = ec.generate_private_key(ec.SECP256R1())
pub = json.loads(ECAlgorithm.to_jwk(k.public_key())); pub.update({"kid": "k1", "alg": "ES256", "use": "sig"})
json.dump({"keys": [pub]}, open(job["jwks"], "w"))
now = int(time.time())
print(json.dumps([jwt.encode({"iss": job["iss"], "aud": aud, "sub": sub, "iat": now, "exp": now + 600},
                             k, algorithm="ES256", headers={"kid": "k1"}) for aud, sub in job["wanted"]]))
"#;
    let job = json!({"jwks": dir.join("jwks.json"), "iss": ISSUER, "wanted": wanted});
    let out = run_script(&py, script, &job);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_oauth_client_finds_the_authorization_server_and_its_token_opens_a_session() {
    if skip_python("the OAuth discovery test") {
        return;
    }
    let (srv, _agent, dir) = setup();
    let up = Upstream::start(dir.path(), None);
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let (_proxy, addr) = front_on(
        &srv.url,
        dir.path(),
        &up.url(),
        port,
        &[
            "--resource-url",
            &resource,
            "--authorization-server",
            ISSUER,
        ],
    );
    let metadata_url = format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp");

    // A client without a token learns where the metadata is, and from it
    // the authorization server (the TypeScript SDK's discovery).
    let out = node_json(
        "writ-e2e-oauth-discover.mjs",
        DISCOVER,
        &json!({"url": resource}),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found["status"], 401, "{found}");
    assert_eq!(found["challenge"], metadata_url.as_str(), "{found}");
    assert_eq!(found["metadata"]["resource"], resource.as_str(), "{found}");
    assert_eq!(
        found["metadata"]["authorization_servers"],
        json!([ISSUER]),
        "{found}"
    );

    // The authority takes that server's tokens for this resource only.
    let issued = tokens(
        dir.path(),
        &[
            (&resource, "oauth-agent"),
            ("https://elsewhere.test/mcp", "oauth-agent"),
        ],
    );
    let jwks = dir.path().join("jwks.json");
    srv.cli(
        Some(&srv.admin_token),
        &[
            "issuer",
            "add",
            "idp",
            "--issuer",
            ISSUER,
            "--audience",
            &resource,
            "--jwks",
            jwks.to_str().unwrap(),
        ],
    )
    .expect_code(0, "issuer add");
    let out = client("ts", &resource, &issued[0], None, &[list(), echo("hello")]);
    assert_eq!(
        out[1],
        json!({"isError": false, "text": "hello"}),
        "{out:?}"
    );
    let s = sessions(&srv);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0]["principal"], "Agent::\"oauth-agent\"");
    assert_eq!(s[0]["context"]["identity"]["method"], "oidc", "{:?}", s[0]);

    // A token of another audience is refused, and the challenge says the
    // token was the trouble; the metadata is public, the endpoint is not.
    let bearer = format!("Bearer {}", issued[1]);
    let r = post(&addr, &[("authorization", &bearer)], &initialize());
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"]["data"]["writ/reason"], "unauthenticated");
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            format!("Bearer resource_metadata=\"{metadata_url}\", error=\"invalid_token\"")
                .as_str()
        )
    );
    let r = http(
        &addr,
        "GET",
        "/.well-known/oauth-protected-resource",
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["resource"], resource.as_str());
    assert_eq!(sessions(&srv).len(), 1);
}
