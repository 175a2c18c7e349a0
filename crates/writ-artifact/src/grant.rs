//! What an enforcement point may do, as a proof: a [`Grant`] is made only
//! from a [`VerifiedWrit`](super::VerifiedWrit), so code that runs or forwards an action
//! and demands a `Grant` cannot run without verification (docs/spec/writ.md).

use crate::claims::{Claims, Lineage, Scope};

/// The rights a verified writ grants its enforcement point: the scope the
/// program may touch, the writ's nonce, audience, end of validity and place
/// in its execution tree.
///
/// Its fields are private and it has no constructor outside this crate (no
/// `Default`, no `Deserialize`): the one way to get one is
/// [`VerifiedWrit::grant`](super::VerifiedWrit::grant), once verification
/// passed as an enforcement point verifies (its audience, request and
/// holder checked; not an inspection). A grant cannot be built by hand:
///
/// ```compile_fail,E0451
/// let grant = writ_artifact::Grant {
///     jti: String::new(),
///     aud: String::new(),
///     exp: 0,
///     scope: writ_artifact::Scope::default(),
///     lineage: writ_artifact::Lineage { depth: 0, parent: None, root: String::new() },
/// };
/// ```
///
/// nor read from anywhere:
///
/// ```compile_fail,E0277
/// let grant: writ_artifact::Grant = serde_json::from_str("{}").unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    jti: String,
    aud: String,
    exp: u64,
    scope: Scope,
    lineage: Lineage,
}

impl Grant {
    /// The grant of a claim set that passed verification; only
    /// [`VerifiedWrit`](super::VerifiedWrit) calls this.
    pub(crate) fn of(claims: &Claims) -> Grant {
        Grant {
            jti: claims.jti.clone(),
            aud: claims.aud.clone(),
            exp: claims.exp,
            scope: claims.writ.scope.clone(),
            lineage: claims.writ.lineage.clone(),
        }
    }

    /// The writ's nonce, which names its execution.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// The enforcement point the writ is for.
    pub fn audience(&self) -> &str {
        &self.aud
    }

    /// When the writ ends (its lease, unless renewed), seconds since the epoch.
    pub fn exp(&self) -> u64 {
        self.exp
    }

    /// What the action may touch: the verified scope, to be enforced as it
    /// is, whatever was asked for.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Where the writ sits in its execution tree.
    pub fn lineage(&self) -> &Lineage {
        &self.lineage
    }
}
