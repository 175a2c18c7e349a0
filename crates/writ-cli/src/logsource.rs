//! Where the log commands read a log: the data dir's store (offline) or a
//! server's log routes (an auditor's token adds what decisions commit to).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;
use writ_audit::evidence::ProofSource;
use writ_audit::{Leaf, Source, SourceError};
use writ_log::content::Content;
use writ_log::Hash;

use crate::client::Client;

/// The data dir's store as a log source.
pub(crate) use writ_authority::logsource::StoreSource;

/// The server's page is not what was asked: `what` says how.
fn malformed(what: &str) -> SourceError {
    SourceError::malformed(what)
}

/// A server's public log routes as a log source (blocking: run it on a
/// blocking thread).
pub(crate) struct HttpSource {
    pub client: Client,
    pub handle: tokio::runtime::Handle,
    /// Read what decisions hold of their requests too
    /// (`GET /v1/log/contents`, an auditor's token).
    pub with_contents: bool,
}

/// One page of `GET /v1/log/contents`: sealed decisions' contents, and the
/// whole leaves of decisions logged before sealing (withheld from the
/// public), by index.
type ContentsPage = (Vec<(u64, Content)>, std::collections::HashMap<u64, Vec<u8>>);

impl HttpSource {
    fn get(&self, path: &str) -> Result<Value, SourceError> {
        let r = self
            .handle
            .block_on(self.client.get(path))
            .map_err(SourceError::unavailable)?;
        if !r.ok() {
            return Err(SourceError::Unavailable(format!(
                "GET {path}: {}",
                r.message()
            )));
        }
        Ok(r.body)
    }

    fn read_contents(&self, start: u64, end: u64) -> Result<ContentsPage, SourceError> {
        let b64 = |v: &Value, what: &str| -> Result<Vec<u8>, SourceError> {
            v.as_str()
                .and_then(|s| STANDARD.decode(s).ok())
                .ok_or_else(|| SourceError::Malformed(format!("the server's {what} is not base64")))
        };
        let (mut sealed, mut leaves) = (Vec::new(), std::collections::HashMap::new());
        let mut at = start;
        while at < end {
            let page = self
                .get(&format!("/v1/log/contents?start={at}&end={end}"))
                .map_err(|e| {
                    SourceError::Unavailable(format!(
                        "{e} (reading request contents needs an auditor's token)"
                    ))
                })?;
            for c in page["contents"]
                .as_array()
                .ok_or_else(|| malformed("contents is not an array"))?
            {
                let index = c["index"].as_u64().ok_or_else(|| malformed("index"))?;
                if c.get("leaf").is_some() {
                    leaves.insert(index, b64(&c["leaf"], "leaf")?);
                    continue;
                }
                let salt = b64(&c["salt"], "salt")?
                    .try_into()
                    .map_err(|_| malformed("a salt is not 32 bytes"))?;
                let bytes = b64(&c["content"], "content")?;
                sealed.push((index, Content { salt, bytes }));
            }
            let next = page["next"].as_u64().ok_or_else(|| malformed("next"))?;
            if next <= at {
                return Err(SourceError::Malformed(format!(
                    "the server's contents page at {at} did not advance"
                )));
            }
            at = next;
        }
        Ok((sealed, leaves))
    }
}

fn hashes_of(v: &Value) -> Result<Vec<Hash>, SourceError> {
    v.as_array()
        .ok_or_else(|| malformed("hashes is not an array"))?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(|s| STANDARD.decode(s).ok())
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| malformed("a hash is not 32 bytes of base64"))
        })
        .collect()
}

impl Source for HttpSource {
    fn size(&self) -> Result<u64, SourceError> {
        self.get("/readyz")?["log_size"]
            .as_u64()
            .ok_or_else(|| malformed("the server did not report its log size"))
    }
    fn leaves(&self, start: u64, end: u64) -> Result<Vec<Leaf>, SourceError> {
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            let page = self.get(&format!("/v1/log/entries?start={at}&end={end}"))?;
            let arr = page
                .as_array()
                .ok_or_else(|| malformed("entries is not an array"))?;
            if arr.is_empty() {
                break;
            }
            for e in arr {
                // Erased, or withheld from the public: the hash alone.
                let bytes = if e.get("erased").is_some() || e.get("withheld").is_some() {
                    Vec::new()
                } else {
                    e["leaf"]
                        .as_str()
                        .and_then(|s| STANDARD.decode(s).ok())
                        .filter(|b| !b.is_empty())
                        .ok_or_else(|| malformed("leaf is not base64"))?
                };
                out.push(Leaf {
                    index: e["index"].as_u64().ok_or_else(|| malformed("index"))?,
                    bytes,
                    // The server's claimed hash is checked against the bytes.
                    stored_hash: e["leaf_hash"]
                        .as_str()
                        .and_then(|s| STANDARD.decode(s).ok())
                        .and_then(|b| b.try_into().ok()),
                    withheld: e.get("withheld").is_some(),
                });
            }
            at = out.last().map_or(end, |l| l.index + 1);
        }
        // An auditor reads the leaves withheld from the public; the
        // verifier checks them against their hashes.
        if self.with_contents && out.iter().any(|l| l.withheld) {
            let (_, mut leaves) = self.read_contents(start, end)?;
            for l in out.iter_mut().filter(|l| l.withheld) {
                if let Some(b) = leaves.remove(&l.index) {
                    l.bytes = b;
                }
            }
        }
        Ok(out)
    }
    fn contents(&self, start: u64, end: u64) -> Result<Option<Vec<(u64, Content)>>, SourceError> {
        if !self.with_contents {
            return Ok(None);
        }
        Ok(Some(self.read_contents(start, end)?.0))
    }
    fn stored_nodes(
        &self,
        _after: Option<(u8, u64)>,
        _limit: usize,
    ) -> Result<Option<Vec<writ_audit::Node>>, SourceError> {
        Ok(None)
    }
    fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<(u64, String)>, SourceError> {
        let v = self.get(&format!(
            "/v1/log/checkpoints?from={from}&limit={}",
            limit.min(1000)
        ))?;
        v.as_array()
            .ok_or_else(|| malformed("checkpoints is not an array"))?
            .iter()
            .map(|c| {
                Ok((
                    c["size"].as_u64().ok_or_else(|| malformed("size"))?,
                    c["note"]
                        .as_str()
                        .ok_or_else(|| malformed("note"))?
                        .to_owned(),
                ))
            })
            .collect()
    }
    fn bundle(&self, hash: &str) -> Result<Option<String>, SourceError> {
        match self.get(&format!("/v1/log/bundles/{hash}")) {
            Ok(v) => Ok(Some(v.to_string())),
            Err(e) => {
                let e = e.to_string();
                if e.contains("no bundle") {
                    Ok(None)
                } else if e.contains("token") || e.contains("not an auditor") {
                    Err(SourceError::Unavailable(format!(
                        "{e} (policy bundles are an auditor's to read: set WRIT_TOKEN to an auditor's token)"
                    )))
                } else {
                    Err(SourceError::Unavailable(e))
                }
            }
        }
    }
}

impl ProofSource for HttpSource {
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, SourceError> {
        hashes_of(
            &self.get(&format!(
                "/v1/log/proof/inclusion?index={index}&size={size}"
            ))?["hashes"],
        )
    }
    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, SourceError> {
        hashes_of(
            &self.get(&format!(
                "/v1/log/proof/consistency?first={first}&second={second}"
            ))?["hashes"],
        )
    }
    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, SourceError> {
        let r = self
            .handle
            .block_on(self.client.get("/v1/log/checkpoint"))
            .map_err(SourceError::unavailable)?;
        if !r.ok() {
            return Err(SourceError::Unavailable(r.message()));
        }
        let note = r
            .body
            .as_str()
            .ok_or_else(|| malformed("checkpoint is not text"))?
            .to_owned();
        let n = writ_log::note::Note::parse(&note).map_err(SourceError::malformed)?;
        let cp = writ_log::note::Checkpoint::parse(&n.text).map_err(SourceError::malformed)?;
        Ok(Some((cp.size, note)))
    }
}
