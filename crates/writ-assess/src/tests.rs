#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use writ_log::{DecisionEntry, RevocationKind};

fn decision(
    allow: bool,
    jti: Option<&str>,
    parent: Option<&str>,
    reason: Option<ReasonCode>,
) -> Entry {
    Entry::Decision(Box::new(DecisionEntry {
        time_ms: 1,
        principal: "Agent::\"a\"".into(),
        action: "Action::\"exec\"".into(),
        resource: "Command::\"/bin/true\"".into(),
        context: serde_json::json!({}),
        request: "sha256:00".into(),
        environment: "sha256:00".into(),
        audience: "exec@test".into(),
        scope: Default::default(),
        policy: "sha256:bundle".into(),
        decision: if allow { Outcome::Allow } else { Outcome::Deny },
        delegates: Vec::new(),
        reason,
        message: String::new(),
        jti: jti.map(str::to_owned),
        parent: parent.map(str::to_owned),
        exp: None,
        probe: false,
        content: None,
    }))
}

fn start(jti: &str) -> Entry {
    Entry::ExecutionStart {
        time_ms: 2,
        jti: jti.into(),
        principal: "Agent::\"a\"".into(),
    }
}

fn tally(entries: &[Entry]) -> Tally {
    let mut t = Tally::default();
    for (i, e) in entries.iter().enumerate() {
        t.observe(i as u64, e);
    }
    t
}

/// A log that shows everything up to level 4.
fn governed() -> Vec<Entry> {
    vec![
        Entry::PolicyActivation {
            time_ms: 0,
            by: "User::\"admin\"".into(),
            hash: "sha256:bundle".into(),
            kid: "k".into(),
        },
        decision(true, Some("p"), None, None),
        start("p"),
        decision(true, Some("c"), Some("p"), None),
        start("c"),
        decision(false, None, None, Some(ReasonCode::PolicyDenied)),
        Entry::Revocation {
            time_ms: 3,
            by: "User::\"admin\"".into(),
            target: "p".into(),
            kind: RevocationKind::Writ,
            reason: "test".into(),
        },
    ]
}

fn verified_log(cosigned: u64) -> LogCheck {
    LogCheck {
        ran: true,
        entries: 7,
        root: "root".into(),
        checkpoints: 2,
        cosigned_checkpoints: cosigned,
        decisions_replayed: 3,
        decisions_not_replayable: 0,
        decisions_content_unavailable: 0,
        unreadable_entries: 0,
        problems: vec![],
    }
}

fn check(evidence: Evidence, level: u8) -> Assessment {
    let a = assess(&evidence);
    assert_eq!(a.level, level, "{a:#?}");
    assert_eq!(a.name, LEVEL_NAMES[usize::from(level)]);
    a
}

/// The tally alone: the log not verified, no witness.
fn log_unverified(tally: Tally) -> Evidence {
    Evidence {
        tally,
        ..Default::default()
    }
}

#[test]
fn an_empty_log_is_level_0() {
    check(Evidence::default(), 0);
}

#[test]
fn logging_alone_is_level_1() {
    let t = tally(&[decision(true, Some("a"), None, None)]);
    check(log_unverified(t), 1);
}

#[test]
fn a_governed_log_without_verification_is_level_4() {
    let t = tally(&governed());
    assert_eq!(
        (
            t.execution_starts,
            t.starts_without_allow,
            t.children,
            t.children_unlinked
        ),
        (2, 0, 1, 0)
    );
    check(log_unverified(t), 4);
}

#[test]
fn level_5_needs_a_verified_log_and_witnesses() {
    let t = tally(&governed());
    let no_witness = Evidence {
        tally: t.clone(),
        log: verified_log(0),
        witnesses_configured: 0,
    };
    let a = check(no_witness, 4);
    let missing: Vec<&str> = a
        .criteria
        .iter()
        .filter(|c| !c.met)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(missing, ["witnesses cosign the checkpoints"]);
    check(
        Evidence {
            tally: t.clone(),
            log: verified_log(2),
            witnesses_configured: 1,
        },
        5,
    );
    // A problem found by verification takes level 5 away.
    let mut bad = verified_log(2);
    bad.problems.push("entry 3: leaf hash differs".into());
    check(
        Evidence {
            tally: t,
            log: bad,
            witnesses_configured: 1,
        },
        4,
    );
}

#[test]
fn a_start_without_an_allow_is_not_governed() {
    let mut log = governed();
    log.push(start("never-allowed"));
    let t = tally(&log);
    assert_eq!(t.starts_without_allow, 1);
    assert_eq!(t.offending_indices, vec![7]);
    let a = check(
        Evidence {
            tally: t,
            log: verified_log(2),
            witnesses_configured: 1,
        },
        3,
    );
    let c = a.criteria.iter().find(|c| c.level == 4 && !c.met).unwrap();
    assert!(
        c.evidence
            .contains("1 without an earlier allow (entries [7])"),
        "{c:?}"
    );
}

#[test]
fn a_child_of_an_unknown_parent_breaks_lineage() {
    let mut log = governed();
    log.push(decision(true, Some("orphan"), Some("nobody"), None));
    let t = tally(&log);
    assert_eq!(t.children_unlinked, 1);
    check(
        Evidence {
            tally: t,
            log: verified_log(2),
            witnesses_configured: 1,
        },
        4,
    );
}

#[test]
fn levels_are_cumulative() {
    // Everything of level 3 and up, but no revocation: level 1.
    let log: Vec<Entry> = governed()
        .into_iter()
        .filter(|e| !matches!(e, Entry::Revocation { .. }))
        .collect();
    check(
        Evidence {
            tally: tally(&log),
            log: verified_log(2),
            witnesses_configured: 1,
        },
        1,
    );
}
