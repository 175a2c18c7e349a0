//! Policy bundles: the signed bundle JSON (`POST /v1/policies`, the store,
//! evidence), its hash and signature check against the seeds' policy key,
//! and `Bundle::compile` (Cedar policies, schema, entities); a bundle that
//! compiles decides a request without panicking.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use writ_artifact::{Jwks, KeyRing};
use writ_policy::{Bundle, BundleSource, DecisionInput, SignedBundle};

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let jwks: Jwks = serde_json::from_str(include_str!("../seeds/keys/policy-jwks.json"))
            .unwrap_or_else(|e| panic!("seeds/keys/policy-jwks.json: {e}"));
        KeyRing::from_jwks(&jwks).unwrap_or_else(|e| panic!("seeds/keys/policy-jwks.json: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let source = match serde_json::from_slice::<SignedBundle>(data) {
        Ok(signed) => {
            let _ = signed.check(ring());
            signed.source
        }
        Err(_) => match serde_json::from_slice::<BundleSource>(data) {
            Ok(s) => s,
            Err(_) => return,
        },
    };
    let hash = source.hash();
    if let Ok(bundle) = Bundle::compile(source) {
        assert_eq!(hash.ok().as_deref(), Some(bundle.hash()));
        let context = json!({
            "request": {"argv": ["/usr/bin/true"]},
            "environment": {},
            "scope": {"read": [], "write": [], "net": false},
            "audience": "exec@fuzz",
            "lineage": {"depth": 0, "root_principal": "Agent::\"fuzz\"", "parent_action": ""},
        });
        let _ = bundle.decide(DecisionInput {
            principal: "Agent::\"fuzz\"",
            action: "Action::\"exec\"",
            resource: "Command::\"/usr/bin/true\"",
            context: &context,
        });
    }
});
