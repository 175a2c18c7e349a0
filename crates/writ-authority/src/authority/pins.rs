//! Pinned definitions: what an enforcement point said a resource is (an
//! MCP tool as listed, all but `_meta`), pinned by digest by the first
//! allowed probe and changed only by an administrator's approval, so that a
//! server that changes a tool after it was trusted (a "rug pull") is
//! denied `definition_changed` (docs/spec/api.md, "Pinned definitions").

use writ_log::PinChangeKind;

use super::*;

/// A first-use pin an allow adds to its commit.
pub(super) struct FirstUse {
    digest: String,
}

/// `sha256:` and 64 lowercase hex digits.
fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

impl Authority {
    /// The pin check of a request about to be allowed: `Ok(Some)` when it is
    /// a probe carrying the first definition seen for its resource (the
    /// allow pins it), `Ok(None)` when its definition matches the pin, or
    /// it carries none, or nothing is pinned and it is not a probe; and
    /// `definition_changed` when the resource is pinned to another
    /// definition.
    ///
    /// Only a probe pins: that is what an enforcement point asks when it
    /// shows a listing (what the model reads), and it sends each listed
    /// item's own definition. A call may carry what the enforcement point
    /// could learn of an unlisted tool (its bare name): compared, never
    /// pinned. A request without a definition is not held to a pin:
    /// otherwise any principal could stop every caller that sends none (a
    /// `writ exec` of the same command) by pinning a definition first.
    pub(super) fn pin_check(
        &self,
        resource: &str,
        definition: Option<&str>,
        probe: bool,
    ) -> Result<Option<FirstUse>, Denial> {
        let Some(d) = definition else {
            return Ok(None);
        };
        match self.store.pin(resource).map_err(unavailable)? {
            None if probe => Ok(Some(FirstUse { digest: d.to_owned() })),
            None => Ok(None),
            Some(p) if p.digest == d => Ok(None),
            Some(p) => Err(Denial::new(
                ReasonCode::DefinitionChanged,
                format!(
                    "the definition of {resource} is now {d}, not {} as pinned by log entry {}; an administrator who has read the new one approves it with `writ mcp approve`",
                    p.digest, p.log_index
                ),
            )),
        }
    }

    /// The ops that pin `first` for the resource of the decision `who` made
    /// at `time_ms`: its `pin` entry, then the pin itself.
    pub(super) fn first_use_ops(
        &self,
        who: &Principal,
        resource: &str,
        first: FirstUse,
        time_ms: u64,
    ) -> Result<[Op; 2], Attempt> {
        let leaf = Entry::Pin {
            time_ms,
            by: who.uid.clone(),
            resource: resource.to_owned(),
            digest: first.digest.clone(),
            change: PinChangeKind::FirstUse,
            reason: String::new(),
        }
        .to_leaf()
        .map_err(|e| BadRequest(e.to_string()))?;
        Ok([
            Op::Append { leaf },
            Op::Pin {
                resource: resource.to_owned(),
                digest: first.digest,
                time_ms,
                approved: false,
            },
        ])
    }

    /// Approve a new definition of a resource (admin only): from this
    /// entry on, decisions carrying it are allowed as policy says, and the
    /// one pinned before is `definition_changed`.
    pub async fn approve_definition(
        &self,
        who: &Principal,
        req: &PinRequest,
    ) -> Result<PinResponse, CallError> {
        self.require_admin_now(who)?;
        cedar_uid_check(&req.resource).map_err(CallError::BadRequest)?;
        if !is_digest(&req.digest) {
            return Err(CallError::BadRequest(
                "field `digest` must be `sha256:` and 64 lowercase hex digits".into(),
            ));
        }
        let reason = req
            .reason
            .clone()
            .unwrap_or_else(|| "approved by an administrator".into());
        if reason.len() > NAME_BYTES_MAX {
            return Err(CallError::BadRequest(format!(
                "field `reason` is at most {NAME_BYTES_MAX} bytes"
            )));
        }
        let time_ms = self.clock.now_unix_ms();
        let leaf = Entry::Pin {
            time_ms,
            by: who.uid.clone(),
            resource: req.resource.clone(),
            digest: req.digest.clone(),
            change: PinChangeKind::Approved,
            reason,
        }
        .to_leaf()
        .map_err(CallError::from)?;
        let indices = self
            .store
            .submit(Tx::new(vec![
                Op::Append { leaf },
                Op::Pin {
                    resource: req.resource.clone(),
                    digest: req.digest.clone(),
                    time_ms,
                    approved: true,
                },
            ]))
            .await?;
        self.note_indices(&indices);
        Ok(PinResponse {
            resource: req.resource.clone(),
            digest: req.digest.clone(),
            log_index: indices.first().copied().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_digest;

    #[test]
    fn a_digest_is_sha256_and_64_lowercase_hex_digits() {
        assert!(is_digest(&format!("sha256:{}", "0a".repeat(32))));
        for bad in [
            "",
            "sha256:",
            &format!("sha256:{}", "0A".repeat(32)),
            &format!("sha256:{}", "0a".repeat(31)),
            &format!("sha512:{}", "0a".repeat(32)),
            &format!("sha256:{}", "g0".repeat(32)),
        ] {
            assert!(!is_digest(bad), "{bad}");
        }
    }
}
