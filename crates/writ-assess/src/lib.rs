//! The Execution Governance Maturity Model (EGMM): which of the levels 0 to 5
//! (as the seed documents define them) a deployment *demonstrates*, judged
//! from evidence gathered from its own log, never from its configuration.
//!
//! | level | name (seeds) | what counts as evidence here |
//! | --- | --- | --- |
//! | 0 | Untrusted Execution | nothing below holds |
//! | 1 | Observable Execution | execution activity (decisions, execution starts) is logged |
//! | 2 | Reactive Enforcement | a revocation was recorded: something was stopped after the fact |
//! | 3 | Policy-Aware Execution | every decision names the policy bundle that made it, a bundle activation is logged, and the policy said no at least once |
//! | 4 | Governed Execution | executions started, each one only after an allow decision for the same writ, and denials are logged (fail closed) |
//! | 5 | Cryptographically Governed Execution | writs verified at a gateway, the log recomputes and every checkpoint is signed and consistent, decisions replay identically, lineage links, and witnesses cosigned the checkpoints |
//!
//! A level is reached only when its criteria *and those of every level below*
//! hold. [`assess`] is a pure function of an [`Evidence`]; [`Tally`] builds
//! the log-derived part entry by entry, and [`gather`] fills a whole
//! [`Evidence`] from a [`writ_audit::Source`] (the caller picks the source:
//! a data dir's store, a server's public routes).
//!
//! **API boundary:** no IO of its own; sources are traits.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};

use serde::Serialize;
use writ_artifact::ReasonCode;
use writ_log::note::NoteVerifier;
use writ_log::{Entry, Outcome};

/// The highest level of the model.
pub const LEVEL_MAX: u8 = 5;

/// The seeds' name of each level.
pub const LEVEL_NAMES: [&str; 6] = [
    "Untrusted Execution",
    "Observable Execution",
    "Reactive Enforcement",
    "Policy-Aware Execution",
    "Governed Execution",
    "Cryptographically Governed Execution",
];

/// Counts taken from the log, one entry at a time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub entries: u64,
    pub decisions: u64,
    pub allows: u64,
    pub denials: u64,
    pub policy_denied: u64,
    /// Decisions that name the bundle that decided.
    pub decisions_with_policy: u64,
    pub activations: u64,
    pub execution_starts: u64,
    /// Starts whose writ was not allowed by an earlier decision entry.
    pub starts_without_allow: u64,
    pub execution_finishes: u64,
    /// Finishes the runner recorded as ended early (revoked, renewal denied, ...).
    pub finishes_terminated: u64,
    pub renewals: u64,
    pub revocations: u64,
    /// Allowed decisions with a parent (child executions).
    pub children: u64,
    /// Children whose parent is not an earlier allowed writ.
    pub children_unlinked: u64,
    /// The first few indices of entries that broke a rule, to look at.
    pub offending_indices: Vec<u64>,
    #[serde(skip)]
    allowed: HashSet<u64>,
}

/// Offending indices kept at most.
const OFFENDING_INDICES_MAX: usize = 16;

fn jti_key(jti: &str) -> u64 {
    // 64 bits of a keyed-nothing SipHash per jti: the set stays small (8
    // bytes a writ); a collision could only hide an unlinked start, never
    // invent one, and at 2^-64 per pair it is not a practical concern.
    let mut h = DefaultHasher::new();
    jti.hash(&mut h);
    h.finish()
}

impl Tally {
    /// Count entry `index`.
    pub fn observe(&mut self, index: u64, e: &Entry) {
        self.entries += 1;
        match e {
            Entry::Decision(d) => {
                self.decisions += 1;
                if !d.policy.is_empty() {
                    self.decisions_with_policy += 1;
                }
                match d.decision {
                    Outcome::Allow => {
                        self.allows += 1;
                        if let Some(parent) = &d.parent {
                            self.children += 1;
                            if !self.allowed.contains(&jti_key(parent)) {
                                self.children_unlinked += 1;
                                self.offend(index);
                            }
                        }
                        if let Some(j) = &d.jti {
                            self.allowed.insert(jti_key(j));
                        }
                    }
                    Outcome::Deny => {
                        self.denials += 1;
                        if d.reason == Some(ReasonCode::PolicyDenied) {
                            self.policy_denied += 1;
                        }
                    }
                }
            }
            Entry::ExecutionStart { jti, .. } => {
                self.execution_starts += 1;
                if !self.allowed.contains(&jti_key(jti)) {
                    self.starts_without_allow += 1;
                    self.offend(index);
                }
            }
            Entry::ExecutionFinish { terminated, .. } => {
                self.execution_finishes += 1;
                if terminated.is_some() {
                    self.finishes_terminated += 1;
                }
            }
            Entry::ExecutionRenew { .. } => self.renewals += 1,
            Entry::Revocation { .. } => self.revocations += 1,
            Entry::PolicyActivation { .. } => self.activations += 1,
            Entry::KeyChange { .. }
            | Entry::PrincipalAdded { .. }
            | Entry::PrincipalChange { .. }
            | Entry::ContentErased { .. }
            | Entry::IssuerChange { .. }
            | Entry::Pin { .. } => {}
        }
    }

    fn offend(&mut self, index: u64) {
        if self.offending_indices.len() < OFFENDING_INDICES_MAX {
            self.offending_indices.push(index);
        }
    }
}

/// The outcome of verifying the whole log (`writ_audit::verify_log` with
/// replay and the configured witnesses required).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogCheck {
    /// The log was read and verified at all.
    pub ran: bool,
    pub entries: u64,
    pub root: String,
    pub checkpoints: u64,
    pub cosigned_checkpoints: u64,
    pub decisions_replayed: u64,
    pub decisions_not_replayable: u64,
    /// Sealed decisions whose content was not at hand (erased, or not
    /// given to this reader): not replayed.
    pub decisions_content_unavailable: u64,
    /// Unreadable entries (not log entries of this format).
    pub unreadable_entries: u64,
    pub problems: Vec<String>,
}

/// Everything an assessment looks at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    pub tally: Tally,
    pub log: LogCheck,
    /// Witnesses this deployment asks to cosign its checkpoints.
    pub witnesses_configured: usize,
}

/// One criterion of one level, with what was checked.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Criterion {
    pub level: u8,
    pub name: String,
    pub met: bool,
    /// What was found, in words (counts, indices, problems).
    pub evidence: String,
}

/// The answer.
#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    /// The highest level whose criteria, and those of every level below, hold.
    pub level: u8,
    pub name: String,
    pub criteria: Vec<Criterion>,
}

fn c(level: u8, name: &str, met: bool, evidence: String) -> Criterion {
    Criterion {
        level,
        name: name.into(),
        met,
        evidence,
    }
}

fn indices(t: &Tally) -> String {
    if t.offending_indices.is_empty() {
        String::new()
    } else {
        format!(" (entries {:?})", t.offending_indices)
    }
}

/// Which level `e` demonstrates, and why.
pub fn assess(e: &Evidence) -> Assessment {
    let mut criteria = logged_and_stopped(&e.tally);
    criteria.extend(policy_aware(&e.tally));
    criteria.extend(governed(&e.tally));
    criteria.extend(cryptographically_governed(e));
    let mut level = 0;
    for n in 1..=LEVEL_MAX {
        if criteria.iter().filter(|c| c.level == n).all(|c| c.met) {
            level = n;
        } else {
            break;
        }
    }
    Assessment {
        level,
        name: LEVEL_NAMES
            .get(usize::from(level))
            .copied()
            .unwrap_or_default()
            .into(),
        criteria,
    }
}

/// Levels 1 and 2: execution is observed, and stopped after the fact.
fn logged_and_stopped(t: &Tally) -> Vec<Criterion> {
    vec![
        c(
            1,
            "execution activity is logged",
            t.decisions + t.execution_starts > 0,
            format!(
                "{} entries: {} decisions, {} execution starts, {} finishes",
                t.entries, t.decisions, t.execution_starts, t.execution_finishes
            ),
        ),
        c(
            2,
            "executions are stopped after the fact (revocation)",
            t.revocations > 0,
            format!(
                "{} revocation entries; {} runs ended early by their runner",
                t.revocations, t.finishes_terminated
            ),
        ),
    ]
}

/// Level 3: decisions are the policy's.
fn policy_aware(t: &Tally) -> Vec<Criterion> {
    vec![
        c(
            3,
            "every decision names the policy bundle that made it",
            t.decisions > 0 && t.decisions_with_policy == t.decisions,
            format!(
                "{} of {} decisions name a bundle",
                t.decisions_with_policy, t.decisions
            ),
        ),
        c(
            3,
            "a policy bundle activation is logged",
            t.activations > 0,
            format!("{} policy activation entries", t.activations),
        ),
        c(
            3,
            "the policy says no (policy_denied decisions)",
            t.policy_denied > 0,
            format!("{} policy_denied decisions", t.policy_denied),
        ),
    ]
}

/// Level 4: executions are governed by decisions, failing closed.
fn governed(t: &Tally) -> Vec<Criterion> {
    vec![
        c(
            4,
            "executions start only after an allow decision for the same writ",
            t.execution_starts > 0 && t.starts_without_allow == 0,
            format!(
                "{} execution starts, {} without an earlier allow{}",
                t.execution_starts,
                t.starts_without_allow,
                indices(t)
            ),
        ),
        c(
            4,
            "denials are logged (fail closed)",
            t.denials > 0,
            format!(
                "{} denials among {} decisions ({} renewals re-decided)",
                t.denials, t.decisions, t.renewals
            ),
        ),
    ]
}

/// Level 5: the log and its decisions verify, lineage links, witnesses cosign.
fn cryptographically_governed(e: &Evidence) -> Vec<Criterion> {
    let (t, l) = (&e.tally, &e.log);
    vec![
        c(
            5,
            "writs verified at a gateway (nonces spent at execution start)",
            t.execution_starts > 0,
            format!(
                "{} execution start entries, {} finishes",
                t.execution_starts, t.execution_finishes
            ),
        ),
        c(
            5,
            "the log recomputes and every checkpoint is signed and consistent",
            l.ran && l.checkpoints > 0 && l.problems.is_empty() && l.unreadable_entries == 0,
            if l.ran {
                format!(
                    "{} entries recomputed to root {}; {} signed checkpoints checked against it; {} problems{}",
                    l.entries,
                    l.root,
                    l.checkpoints,
                    l.problems.len(),
                    l.problems
                        .first()
                        .map_or(String::new(), |p| format!(" (first: {p})"))
                )
            } else {
                "the log could not be verified".into()
            },
        ),
        c(
            5,
            "decisions replay identically against the bundles they name",
            l.ran && l.decisions_replayed > 0 && l.problems.is_empty(),
            format!(
                "{} decisions replayed, {} not replayable (decided before any bundle), {} without their content (erased, or an auditor's to read)",
                l.decisions_replayed, l.decisions_not_replayable, l.decisions_content_unavailable
            ),
        ),
        c(
            5,
            "lineage links: every child names an earlier allowed parent",
            t.children > 0 && t.children_unlinked == 0,
            format!(
                "{} child writs, {} with no earlier allowed parent",
                t.children, t.children_unlinked
            ),
        ),
        c(
            5,
            "witnesses cosign the checkpoints",
            e.witnesses_configured > 0 && l.cosigned_checkpoints > 0 && l.problems.is_empty(),
            format!(
                "{} witnesses configured; {} checkpoints carry their cosignatures",
                e.witnesses_configured, l.cosigned_checkpoints
            ),
        ),
    ]
}

/// Why [`gather`] gathered nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatherError {
    /// The source could not be read.
    #[error(transparent)]
    Source(#[from] writ_audit::SourceError),
    #[error("no log key to check checkpoints with")]
    NoLogKey,
}

/// Read the whole log from `src`: tally every entry, then verify it with
/// `writ_audit::verify_log` (replaying decisions against `policy_keys`, and
/// requiring the cosignature of every witness in `witnesses`). `Err` only
/// when the source cannot be read. `log_keys`: the log's checkpoint keys
/// (one per node that has led a mesh), at least one.
pub fn gather(
    src: &(dyn writ_audit::Source + Sync),
    log_keys: Vec<NoteVerifier>,
    witnesses: Vec<NoteVerifier>,
    policy_keys: writ_artifact::KeyRing,
) -> Result<Evidence, GatherError> {
    let mut tally = Tally::default();
    let size = src.size()?;
    let mut unreadable = 0u64;
    let mut start = 0;
    while start < size {
        let end = (start + writ_audit::CHUNK).min(size);
        let leaves = src.leaves(start, end)?;
        if leaves.is_empty() {
            break;
        }
        for l in &leaves {
            match Entry::from_leaf(&l.bytes) {
                Ok(e) => tally.observe(l.index, &e),
                Err(_) => unreadable += 1,
            }
        }
        start = leaves.last().map_or(end, |l| l.index + 1);
    }
    let witnesses_configured = witnesses.len();
    let mut log_keys = log_keys.into_iter();
    let log_key = log_keys.next().ok_or(GatherError::NoLogKey)?;
    let other_log_keys: Vec<NoteVerifier> = log_keys.collect();
    let report = writ_audit::verify_log(
        src,
        &writ_audit::Options {
            log_key,
            other_log_keys,
            witnesses,
            replay: Some(policy_keys),
            progress: None,
            accept_withheld: false,
        },
    )?;
    Ok(Evidence {
        tally,
        log: LogCheck {
            ran: true,
            entries: report.entries,
            root: report.root.clone(),
            checkpoints: report.checkpoints,
            cosigned_checkpoints: report.cosigned_checkpoints,
            decisions_replayed: report.decisions_replayed,
            decisions_not_replayable: report.decisions_not_replayable,
            decisions_content_unavailable: report.decisions_content_unavailable,
            unreadable_entries: unreadable,
            problems: report
                .problems
                .iter()
                .map(|p| match p.index {
                    Some(i) => format!("entry {i}: {}", p.message),
                    None => p.message.clone(),
                })
                .collect(),
        },
        witnesses_configured,
    })
}

#[cfg(test)]
mod tests;
