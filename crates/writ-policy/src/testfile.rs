//! `writ policy test FILE`: expected decisions, checked against a bundle.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Bundle, DecisionInput};

/// A file of expected decisions (JSON): `{"cases": [ ... ]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    pub cases: Vec<Case>,
}

/// One expected decision.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// A label for reports; defaults to the case's position.
    #[serde(default)]
    pub name: Option<String>,
    pub principal: String,
    pub action: String,
    pub resource: String,
    #[serde(default = "empty_object")]
    pub context: Value,
    /// `"allow"` or `"deny"`.
    pub expect: Expect,
    /// When set, the deciding policy ids must be exactly these.
    #[serde(default)]
    pub policies: Option<Vec<String>>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Deny,
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseOutcome {
    pub name: String,
    pub passed: bool,
    pub expected: String,
    pub got: String,
    pub message: String,
}

/// Run every case; a case whose request cannot be put to Cedar counts as a
/// deny (that is what the authority would answer).
pub fn run_cases(bundle: &Bundle, file: &TestFile) -> Vec<CaseOutcome> {
    file.cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let name = c.name.clone().unwrap_or_else(|| format!("case {}", i + 1));
            let input = DecisionInput {
                principal: &c.principal,
                action: &c.action,
                resource: &c.resource,
                context: &c.context,
            };
            let (allow, policies, message) = match bundle.decide(input) {
                Ok(d) => (d.allow, Some(d.policies.clone()), d.message()),
                Err(e) => (false, None, e.0),
            };
            let got = if allow { "allow" } else { "deny" };
            let expected = match c.expect {
                Expect::Allow => "allow",
                Expect::Deny => "deny",
            };
            let policies_ok = match (&c.policies, &policies) {
                (None, _) => true,
                (Some(want), Some(have)) => {
                    let mut want = want.clone();
                    want.sort();
                    &want == have
                }
                (Some(_), None) => false,
            };
            let mut expected = expected.to_string();
            if let Some(p) = &c.policies {
                expected.push_str(&format!(" by [{}]", p.join(", ")));
            }
            let mut got = got.to_string();
            if let Some(p) = &policies {
                got.push_str(&format!(" by [{}]", p.join(", ")));
            }
            CaseOutcome {
                name,
                passed: (allow == (c.expect == Expect::Allow)) && policies_ok,
                expected,
                got,
                message,
            }
        })
        .collect()
}
