//! The maturity page's assessment: `writ_assess::gather` over the store,
//! then `writ_assess::assess`, kept while it is fresh.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use writ_authority::logsource::StoreSource;
use writ_store::StoreRead;

use crate::api::{read, unavailable};
use crate::state::{Assessed, Shared};

/// The trusted policy keys, from the store's key records.
pub(crate) fn policy_keys(store: &dyn StoreRead) -> Result<writ_artifact::KeyRing, String> {
    let keys = store
        .keys()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|k| k.role == writ_store::KeyRole::Policy)
        .map(|k| serde_json::from_str::<writ_artifact::Jwk>(&k.public_jwk))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    writ_artifact::KeyRing::from_jwks(&writ_artifact::Jwks { keys }).map_err(|e| e.to_string())
}

/// An assessment replays the whole log: it is kept, and made again only
/// when the log has grown and this long has passed.
const ASSESS_FRESH: Duration = Duration::from_secs(30);

/// `GET /console/api/assess`: the EGMM level this deployment demonstrates
/// (`writ_assess::gather` over the store, then `writ_assess::assess`), made
/// at most once per [`ASSESS_FRESH`] while the log grows, one at a time, on
/// a reader thread.
pub(crate) async fn assess(State(c): State<Shared>) -> Response {
    let Some(log) = c.log.clone() else {
        return unavailable("this server has no log key, so its checkpoints cannot be assessed");
    };
    // Held while one is made: callers meanwhile wait for it, not redo it.
    let mut kept = c.assessed.lock().await;
    let size = match c.authority.reads().log_size() {
        Ok(n) => n,
        Err(e) => return unavailable(e),
    };
    if let Some(a) = kept.as_ref() {
        if a.size == size || a.at.elapsed() < ASSESS_FRESH {
            return axum::Json(a.value.clone()).into_response();
        }
    }
    let witnesses = c.witnesses.clone();
    let evidence = read(&c, move |c| {
        let store = c.authority.reads();
        let keys = policy_keys(store.as_ref())?;
        let log_keys = log.log_verifiers().map_err(|e| e.to_string())?;
        writ_assess::gather(&StoreSource(store), log_keys, witnesses, keys)
            .map_err(|e| e.to_string())
    })
    .await;
    match evidence {
        Ok(evidence) => {
            let a = writ_assess::assess(&evidence);
            let value = json!({"assessment": a, "evidence": evidence, "log_size": size});
            *kept = Some(Assessed {
                at: std::time::Instant::now(),
                size,
                value: value.clone(),
            });
            axum::Json(value).into_response()
        }
        Err(r) => r,
    }
}
