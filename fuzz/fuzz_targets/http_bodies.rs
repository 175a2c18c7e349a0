//! The JSON bodies of the HTTP API, as the server reads them: the duplicate
//! key check, then the typed parse of every request type; an authorize body
//! that parses is validated as `Authority::authorize` does, its request and
//! environment digested, and decided by the default bundle with the context
//! writ builds. Nothing panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use writ_artifact::canonical;
use writ_authority::{
    AuthorizeRequest, FinishRequest, PrincipalRequest, RenewRequest, RevokeRequest, StartRequest,
    VerifyRequest,
};
use writ_policy::{default_bundle, Bundle, DecisionInput};

fn bundle() -> &'static Bundle {
    static B: OnceLock<Bundle> = OnceLock::new();
    B.get_or_init(|| {
        Bundle::compile(default_bundle()).unwrap_or_else(|e| panic!("default bundle: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    if canonical::check_no_duplicate_keys(data).is_err() {
        return;
    }
    let _ = serde_json::from_slice::<VerifyRequest>(data);
    let _ = serde_json::from_slice::<StartRequest>(data);
    let _ = serde_json::from_slice::<FinishRequest>(data);
    let _ = serde_json::from_slice::<RenewRequest>(data);
    let _ = serde_json::from_slice::<RevokeRequest>(data);
    let _ = serde_json::from_slice::<PrincipalRequest>(data);
    let Ok(req) = serde_json::from_slice::<AuthorizeRequest>(data) else {
        return;
    };
    if writ_authority::validate_authorize_request(&req).is_err() {
        return;
    }
    let digest = canonical::digest_json(&req.request);
    let env = canonical::digest_map(&req.environment);
    // The digest of what parsed is stable: parsing its canonical bytes again
    // gives the same digest (one meaning per body).
    if let (Ok(d), Ok(bytes)) = (&digest, canonical::to_canonical_bytes(&req.request)) {
        let again: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert_eq!(canonical::digest_json(&again).ok().as_ref(), Some(d));
    }
    let _ = env;
    let mut context = Value::Object(req.context.clone());
    context["request"] = req.request.clone();
    context["environment"] = Value::Object(req.environment.clone());
    context["scope"] = json!(req.scope);
    context["audience"] = json!(req.audience);
    context["lineage"] =
        json!({"depth": 0, "root_principal": "Agent::\"fuzz\"", "parent_action": ""});
    let _ = bundle().decide(DecisionInput {
        principal: "Agent::\"fuzz\"",
        action: &req.action,
        resource: &req.resource,
        context: &context,
    });
});
