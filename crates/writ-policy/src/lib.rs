//! Cedar policy bundles: canonical content addressing, signing, validation and
//! deterministic evaluation.
//!
//! **API boundary:** this crate does no IO. Callers hand it the bundle's files
//! as strings ([`BundleSource`]) and get back a compiled [`Bundle`] or Cedar's
//! diagnostics. Evaluation is a pure function of the bundle and the input, which
//! is what makes `writ log verify --replay` possible.
#![forbid(unsafe_code)]

mod bundle;
mod decide;
mod shape;
mod testfile;

pub use bundle::{
    Bundle, BundleError, BundleSource, SignedBundle, BUNDLE_BYTES_MAX, BUNDLE_FORMAT,
    BUNDLE_POLICY_FILES_MAX,
};
pub use decide::{check_entity_uid, Decision, DecisionInput, InputError};
pub use testfile::{run_cases, Case, CaseOutcome, TestFile};

/// The bundle `writ init` installs: commented examples that govern
/// `Action::"exec"` and `Action::"call_tool"`.
pub fn default_bundle() -> BundleSource {
    let mut source = BundleSource::default();
    source
        .policies
        .insert("default.cedar".into(), DEFAULT_POLICY.into());
    source
}

const DEFAULT_POLICY: &str = include_str!("default.cedar");

/// The annotation by which a `permit` demands kernel enforcement of the scope:
/// `@enforcement("full")` on a policy means a request it permits is allowed
/// only if the enforcement point reports (and binds, in its environment facts)
/// that level; otherwise the authority denies with `integrity_failure`.
pub const ENFORCEMENT_ANNOTATION: &str = "enforcement";

/// Actions an enforcement point asks for only when some policy's scope
/// names them (`Bundle::names_action`): a policy that mentions one in its
/// conditions alone would never be asked, so a bundle with one is refused.
/// (`writ_api::TOOL_RESULT_ACTION`; docs/spec/api.md, "Screened tool
/// results".)
pub const SCOPE_NAMED_ACTIONS: [(&str, &str); 1] = [("Action", "tool_result")];

/// Order of enforcement levels: `none` < `partial` < `full`; `None` for any
/// other word.
pub fn enforcement_rank(level: &str) -> Option<u8> {
    match level {
        "none" => Some(0),
        "partial" => Some(1),
        "full" => Some(2),
        _ => None,
    }
}
