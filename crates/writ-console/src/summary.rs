//! One row per log entry, as the console's lists show it: who did what to
//! what, and how it ended, whatever the kind of entry.

use std::collections::HashMap;

use serde_json::{json, Value};
use writ_log::{DecisionEntry, Entry, Outcome};
use writ_store::StoreRead;

/// A row: entry `index` of `kind`, at `time_ms`, by `principal`, who did
/// `action` to `resource`, and how it ended (`outcome`); then the kind's
/// own fields, `"name": value`.
macro_rules! row {
    ($index:expr, $kind:literal, $time_ms:expr, $principal:expr,
     $action:expr, $resource:expr, $outcome:expr $(, $k:literal: $v:expr)* $(,)?) => {
        json!({
            "index": $index, "type": $kind, "time_ms": $time_ms, "principal": $principal,
            "action": $action, "resource": $resource, "outcome": $outcome $(, $k: $v)*
        })
    };
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Allow => "allow",
        Outcome::Deny => "deny",
    }
}

/// The fields every list shows, for any kind of entry.
pub fn summarize(index: u64, e: &Entry) -> Value {
    match e {
        Entry::Decision(d) => decision(index, d),
        Entry::ExecutionStart { .. }
        | Entry::ExecutionFinish { .. }
        | Entry::ExecutionRenew { .. } => execution(index, e),
        Entry::Revocation { .. }
        | Entry::PolicyActivation { .. }
        | Entry::KeyChange { .. }
        | Entry::ContentErased { .. }
        | Entry::Pin { .. } => authority_change(index, e),
        Entry::PrincipalAdded { .. }
        | Entry::PrincipalChange { .. }
        | Entry::IssuerChange { .. } => identity_change(index, e),
    }
}

fn decision(index: u64, d: &DecisionEntry) -> Value {
    row!(index, "decision", d.time_ms, d.principal, d.action, d.resource, outcome(d.decision),
        "reason": d.reason, "message": d.message, "jti": d.jti, "parent": d.parent,
        "policy": d.policy, "audience": d.audience, "probe": d.probe)
}

/// An execution's start, renewal or finish.
fn execution(index: u64, e: &Entry) -> Value {
    match e {
        Entry::ExecutionStart {
            time_ms,
            jti,
            principal,
        } => {
            row!(index, "execution_start", time_ms, principal, "start", jti, "started", "jti": jti)
        }
        Entry::ExecutionFinish {
            time_ms,
            jti,
            principal,
            exit_status,
            terminated,
            duration_ms,
            ..
        } => {
            let message = terminated.clone().unwrap_or_else(|| {
                let status = exit_status.map_or("none".into(), |s| s.to_string());
                format!("exit status {status}, {duration_ms} ms")
            });
            let ended = if terminated.is_some() {
                "terminated"
            } else {
                "finished"
            };
            row!(index, "execution_finish", time_ms, principal, "finish", jti, ended,
                "message": message, "jti": jti)
        }
        Entry::ExecutionRenew {
            time_ms,
            jti,
            principal,
            decision,
            reason,
            message,
            ..
        } => row!(index, "execution_renew", time_ms, principal, "renew", jti, outcome(*decision),
            "reason": reason, "message": message, "jti": jti),
        // `summarize` sends only the kinds above here.
        _ => Value::Null,
    }
}

/// What changed the authority's own state: revocations, policy, keys,
/// erasures.
fn authority_change(index: u64, e: &Entry) -> Value {
    match e {
        Entry::Revocation {
            time_ms,
            by,
            target,
            kind,
            reason,
        } => row!(index, "revocation", time_ms, by, "revoke", target, "revoked",
            "message": reason, "kind": kind),
        Entry::PolicyActivation {
            time_ms, by, hash, ..
        } => row!(
            index,
            "policy_activation",
            time_ms,
            by,
            "activate",
            hash,
            "activated"
        ),
        Entry::KeyChange {
            time_ms,
            by,
            kid,
            role,
            status,
        } => row!(
            index,
            "key_change",
            time_ms,
            by,
            format!("{role} key"),
            kid,
            status
        ),
        Entry::ContentErased {
            time_ms,
            by,
            index: erased,
            reason,
        } => row!(index, "content_erased", time_ms, by, "erase content", format!("entry {erased}"),
            "erased", "message": reason),
        Entry::Pin {
            time_ms,
            by,
            resource,
            digest,
            change,
            reason,
        } => row!(index, "pin", time_ms, by, "pin definition", resource, change.as_str(),
            "message": if reason.is_empty() { digest.clone() } else { format!("{digest}: {reason}") }),
        // `summarize` sends only the kinds above here.
        _ => Value::Null,
    }
}

/// Who may act: principals and identity issuers added and changed.
fn identity_change(index: u64, e: &Entry) -> Value {
    match e {
        Entry::PrincipalAdded {
            time_ms,
            by,
            uid,
            admin,
            auditor,
        } => {
            let added = match (*admin, *auditor) {
                (true, _) => "admin",
                (false, true) => "auditor",
                _ => "added",
            };
            row!(
                index,
                "principal_added",
                time_ms,
                by,
                "add principal",
                uid,
                added
            )
        }
        Entry::PrincipalChange {
            time_ms,
            by,
            uid,
            change,
        } => row!(
            index,
            "principal_change",
            time_ms,
            by,
            "change principal",
            uid,
            change.as_str()
        ),
        Entry::IssuerChange {
            time_ms,
            by,
            name,
            change,
            issuer,
            ..
        } => {
            let changed = match change {
                writ_log::IssuerChangeKind::Added => "added",
                writ_log::IssuerChangeKind::Removed => "removed",
            };
            row!(index, "issuer_change", time_ms, by, "change issuer", name, changed,
                "message": issuer)
        }
        // `summarize` sends only the kinds above here.
        _ => Value::Null,
    }
}

/// The summaries of entries `start..end`, sealed decisions opened with
/// their content (the console is an auditor's), so that their messages show.
pub(crate) fn summaries(store: &dyn StoreRead, start: u64, end: u64) -> Result<Vec<Value>, String> {
    let mut contents: HashMap<u64, writ_log::content::Content> =
        writ_authority::logsource::contents(store, start, end)
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
    Ok(store
        .entries(start, end)
        .map_err(|e| e.to_string())?
        .iter()
        .map(|l| match Entry::from_leaf(&l.leaf) {
            _ if l.leaf.is_empty() => {
                json!({"index": l.index, "type": "erased", "message": "the content of this entry was erased; its hash stays in the log"})
            }
            Ok(Entry::Decision(mut d)) => {
                if let Some(c) = contents.remove(&l.index) {
                    // A content that does not open leaves the message empty;
                    // `writ log verify` names the entry.
                    let _ = d.open(&c);
                }
                summarize(l.index, &Entry::Decision(d))
            }
            Ok(e) => summarize(l.index, &e),
            Err(err) => json!({"index": l.index, "type": "unreadable", "message": err.to_string()}),
        })
        .collect())
}
