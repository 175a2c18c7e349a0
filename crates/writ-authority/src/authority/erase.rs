//! Erasing what a log entry holds of a request, so that privacy law can be
//! obeyed while every proof stays valid.

use super::*;

impl Authority {
    /// Erase the content of entry `index`: a sealed decision's values and
    /// salt, kept beside the log; or, for a decision logged before sealing
    /// (its leaf holds the values), the leaf's bytes, its hash kept. The
    /// tree, every checkpoint and proof are unchanged; the decision can no
    /// longer be replayed, nor its execution renewed. Admin only; logged as
    /// `content_erased`.
    pub async fn erase_content(
        &self,
        who: &Principal,
        index: u64,
        reason: &str,
    ) -> Result<u64, CallError> {
        self.require_admin_now(who)?;
        // One erasure at a time (on this node): two of the same entry would
        // both pass the check below and log it twice.
        let _serial = self.lifecycle.lock().await;
        let end = index
            .checked_add(1)
            .ok_or_else(|| CallError::NotFound(format!("the log has no entry {index}")))?;
        if reason.trim().is_empty() || reason.len() > NAME_BYTES_MAX {
            return Err(CallError::BadRequest(format!(
                "give a reason of 1 to {NAME_BYTES_MAX} bytes: it is logged"
            )));
        }
        let leaf = self
            .store
            .entries(index, end)?
            .pop()
            .ok_or_else(|| CallError::NotFound(format!("the log has no entry {index}")))?;
        if leaf.leaf.is_empty() {
            return Err(CallError::Conflict(format!(
                "the content of entry {index} was erased already"
            )));
        }
        let leaf_too = match Entry::from_leaf(&leaf.leaf) {
            Ok(Entry::Decision(d)) if d.content.is_some() => {
                if self.store.contents(index, end)?.is_empty() {
                    return Err(CallError::Conflict(format!(
                        "the content of entry {index} was erased already"
                    )));
                }
                false
            }
            // Logged before decisions were sealed: the leaf holds the values.
            Ok(Entry::Decision(_)) => true,
            Ok(e) => {
                return Err(CallError::BadRequest(format!(
                    "entry {index} is a {} entry: it holds no request content",
                    e.kind()
                )))
            }
            Err(e) => return Err(CallError::Unavailable(format!("entry {index}: {e}"))),
        };
        let now_ms = self.clock.now_unix_ms();
        let note = Entry::ContentErased {
            time_ms: now_ms,
            by: who.uid.clone(),
            index,
            reason: reason.to_owned(),
        }
        .to_leaf()
        .map_err(CallError::from)?;
        let indices = self
            .store
            .submit(Tx::new(vec![
                Op::EraseContent { index, leaf_too },
                Op::Append { leaf: note },
            ]))
            .await?;
        self.note_indices(&indices);
        Ok(indices.first().copied().unwrap_or_default())
    }
}
