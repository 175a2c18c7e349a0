use serde::{Deserialize, Serialize};
use std::fmt;

/// Why something was denied. A stable wire contract: the `snake_case` names are
/// what clients, logs and tests rely on (docs/spec/reason-codes.md).
///
/// Deliberately *not* `#[non_exhaustive]`: every match on a reason must be
/// revisited when a code is added, because each code maps to behaviour
/// (exit status, HTTP status, console colour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    MissingArtifact,
    MalformedArtifact,
    InvalidSignature,
    Expired,
    NotYetValid,
    Replayed,
    RequestMismatch,
    EnvironmentMismatch,
    AudienceMismatch,
    PolicyMismatch,
    Revoked,
    LineageBroken,
    ScopeEscalation,
    PolicyDenied,
    Unauthenticated,
    AuthorityUnavailable,
    IntegrityFailure,
    HolderMismatch,
    DefinitionChanged,
}

impl ReasonCode {
    /// Every code, in the order of docs/spec/reason-codes.md.
    pub const ALL: [ReasonCode; 19] = [
        ReasonCode::MissingArtifact,
        ReasonCode::MalformedArtifact,
        ReasonCode::InvalidSignature,
        ReasonCode::Expired,
        ReasonCode::NotYetValid,
        ReasonCode::Replayed,
        ReasonCode::RequestMismatch,
        ReasonCode::EnvironmentMismatch,
        ReasonCode::AudienceMismatch,
        ReasonCode::PolicyMismatch,
        ReasonCode::Revoked,
        ReasonCode::LineageBroken,
        ReasonCode::ScopeEscalation,
        ReasonCode::PolicyDenied,
        ReasonCode::Unauthenticated,
        ReasonCode::AuthorityUnavailable,
        ReasonCode::IntegrityFailure,
        ReasonCode::HolderMismatch,
        ReasonCode::DefinitionChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::MissingArtifact => "missing_artifact",
            ReasonCode::MalformedArtifact => "malformed_artifact",
            ReasonCode::InvalidSignature => "invalid_signature",
            ReasonCode::Expired => "expired",
            ReasonCode::NotYetValid => "not_yet_valid",
            ReasonCode::Replayed => "replayed",
            ReasonCode::RequestMismatch => "request_mismatch",
            ReasonCode::EnvironmentMismatch => "environment_mismatch",
            ReasonCode::AudienceMismatch => "audience_mismatch",
            ReasonCode::PolicyMismatch => "policy_mismatch",
            ReasonCode::Revoked => "revoked",
            ReasonCode::LineageBroken => "lineage_broken",
            ReasonCode::ScopeEscalation => "scope_escalation",
            ReasonCode::PolicyDenied => "policy_denied",
            ReasonCode::Unauthenticated => "unauthenticated",
            ReasonCode::AuthorityUnavailable => "authority_unavailable",
            ReasonCode::IntegrityFailure => "integrity_failure",
            ReasonCode::HolderMismatch => "holder_mismatch",
            ReasonCode::DefinitionChanged => "definition_changed",
        }
    }

    /// Parse a wire name back into a code.
    pub fn parse(s: &str) -> Option<ReasonCode> {
        ReasonCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The process exit status the CLI uses for this denial. Documented in
    /// README.md; 0 is success/allow, 1 an operating error, 2 a usage error.
    pub fn exit_status(self) -> u8 {
        match self {
            ReasonCode::PolicyDenied => 10,
            ReasonCode::MissingArtifact => 11,
            ReasonCode::MalformedArtifact => 12,
            ReasonCode::InvalidSignature => 13,
            ReasonCode::Expired => 14,
            ReasonCode::NotYetValid => 15,
            ReasonCode::Replayed => 16,
            ReasonCode::RequestMismatch => 17,
            ReasonCode::EnvironmentMismatch => 18,
            ReasonCode::AudienceMismatch => 19,
            ReasonCode::PolicyMismatch => 20,
            ReasonCode::Revoked => 21,
            ReasonCode::LineageBroken => 22,
            ReasonCode::ScopeEscalation => 23,
            ReasonCode::Unauthenticated => 24,
            ReasonCode::AuthorityUnavailable => 25,
            ReasonCode::IntegrityFailure => 26,
            ReasonCode::HolderMismatch => 27,
            ReasonCode::DefinitionChanged => 28,
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A denial: exactly one reason code plus a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    pub reason: ReasonCode,
    pub message: String,
}

impl Denial {
    pub fn new(reason: ReasonCode, message: impl Into<String>) -> Denial {
        Denial {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for Denial {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_and_exit_statuses_are_distinct() {
        let mut statuses = std::collections::BTreeSet::new();
        for code in ReasonCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(ReasonCode::parse(code.as_str()), Some(code));
            assert!(
                statuses.insert(code.exit_status()),
                "duplicate exit status for {code}"
            );
            assert!(code.exit_status() >= 10);
        }
    }
}
