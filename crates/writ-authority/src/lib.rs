//! The authority: authenticate the caller, decide with Cedar, append the
//! decision durably to the log, and only then sign the writ.
//!
//! **Invariant:** a writ is signed only after the commit holding its decision
//! entry returned; an allow that cannot be logged is a deny
//! (`authority_unavailable`).
//!
//! **Invariant:** every error on the way to a decision is a denial with a
//! reason code; nothing here turns an error into an allow.
//!
//! **API boundary:** no network, no files, no clock or randomness of its own:
//! storage is a [`writ_store::Store`], time a [`writ_artifact::Clock`],
//! randomness a [`writ_artifact::Entropy`], keys are handed in. The HTTP
//! server and the CLI are thin layers over [`Authority`].
#![forbid(unsafe_code)]

mod api;
mod authority;
mod checkpoint;
pub mod logsource;
mod status;

pub use api::*;
pub use authority::{
    validate_authorize_request, Authority, AuthorityConfig, BootstrapOutput, DecisionEvent, Event,
    PendingFinish, Principal, StateError, FRESHNESS_MS_DEFAULT,
};
pub use checkpoint::{stored_log_verifiers, LogPublisher, PublishError, Published};
pub use writ_api::*;
