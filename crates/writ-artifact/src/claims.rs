use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::canonical;

/// The claim set of a writ, in its one accepted shape. Unknown fields are
/// refused, and verification additionally demands that the payload bytes
/// are exactly the RFC 8785 form of this struct (docs/spec/writ.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    // Fields are in RFC 8785 (lexicographic) order, so that the compact
    // serde_json form of a claim set with plain facts is already canonical
    // (see `claims_bytes`).
    /// The enforcement point the writ is for (`exec@host-a`, `mcp:filesystem`).
    pub aud: String,
    /// The holder's key (RFC 7800 confirmation), for a holder-bound writ:
    /// every use needs a proof of possession (docs/spec/holder.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    pub exp: u64,
    pub iat: u64,
    /// The authority's name.
    pub iss: String,
    /// 128-bit nonce, 32 lowercase hex digits (the authority issues 48 bits
    /// of issue time in ms, then 80 random bits); spent once.
    pub jti: String,
    pub nbf: u64,
    /// The principal, as a Cedar entity UID (`Agent::"planner"`).
    pub sub: String,
    pub writ: WritBody,
}

/// RFC 7800 confirmation: the RFC 7638 thumbprint of the holder's key
/// (`jkt`, as RFC 9449 names it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    pub jkt: String,
}

/// writ's own claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritBody {
    // Lexicographic order; see `Claims`.
    /// Cedar entity UID of the action (`Action::"exec"`).
    pub action: String,
    pub environment: EnvironmentBinding,
    pub lineage: Lineage,
    pub log: LogPointer,
    /// `sha256:` of the policy bundle that allowed it.
    pub policy: String,
    /// `sha256:` of the RFC 8785 form of the exact request.
    pub request: String,
    /// Cedar entity UID of the resource.
    pub resource: String,
    pub scope: Scope,
}

/// The environment facts the writ is bound to, and their digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentBinding {
    pub digest: String,
    pub facts: Map<String, Value>,
}

impl EnvironmentBinding {
    /// Bind a set of facts: the digest is the RFC 8785 `sha256:` of the facts.
    pub fn bind(
        mut facts: Map<String, Value>,
    ) -> Result<EnvironmentBinding, canonical::CanonicalError> {
        // Stored in canonical key order, so the claim set's canonical bytes can
        // take the fast path.
        facts.sort_keys();
        let digest = canonical::digest_map(&facts)?;
        Ok(EnvironmentBinding { facts, digest })
    }
}

/// What the action may touch. Enforced by the gateway; a child's scope must
/// lie inside its parent's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(default)]
    pub net: bool,
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub write: Vec<String>,
}

/// Why a scope is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A list (`read` or `write`) naming more than [`SCOPE_PATHS_MAX`] paths.
    #[error("scope.{list} holds {count} paths; at most {SCOPE_PATHS_MAX} are allowed")]
    TooManyPaths { list: &'static str, count: usize },
    /// A path that is not absolute and lexically normal.
    #[error(
        "scope.{list} path {path:?} is not a normal absolute path (no '.', '..', '//' or trailing '/')"
    )]
    NotNormal { list: &'static str, path: String },
}

/// Longest path a scope may name.
pub const SCOPE_PATH_BYTES_MAX: usize = 4096;
/// Most paths one scope list may hold.
pub const SCOPE_PATHS_MAX: usize = 64;

impl Scope {
    /// Check every path is absolute and lexically normal (no `.`/`..`
    /// components, no empty components, no trailing slash except `/`).
    pub fn validate(&self) -> Result<(), ScopeError> {
        for (paths, list) in [(&self.read, "read"), (&self.write, "write")] {
            if paths.len() > SCOPE_PATHS_MAX {
                return Err(ScopeError::TooManyPaths {
                    list,
                    count: paths.len(),
                });
            }
            if let Some(p) = paths.iter().find(|p| !is_normal_absolute(p)) {
                return Err(ScopeError::NotNormal {
                    list,
                    path: p.clone(),
                });
            }
        }
        Ok(())
    }

    /// Whether this scope asks for nothing beyond `parent`: every read path lies
    /// under one of the parent's read or write paths, every write path under one
    /// of the parent's write paths, and network only if the parent has it.
    pub fn is_within(&self, parent: &Scope) -> bool {
        let under_any = |p: &str, roots: &[&String]| roots.iter().any(|r| path_is_under(p, r));
        let parent_readable: Vec<&String> = parent.read.iter().chain(parent.write.iter()).collect();
        let parent_writable: Vec<&String> = parent.write.iter().collect();
        self.read.iter().all(|p| under_any(p, &parent_readable))
            && self.write.iter().all(|p| under_any(p, &parent_writable))
            && (!self.net || parent.net)
    }
}

fn is_normal_absolute(p: &str) -> bool {
    if p == "/" {
        return true;
    }
    p.len() <= SCOPE_PATH_BYTES_MAX
        && p.starts_with('/')
        && !p.ends_with('/')
        && !p.contains('\0')
        && p[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Whether `path` is `root` or lies below it, component-wise (`/data2` is not
/// under `/data`).
pub fn path_is_under(path: &str, root: &str) -> bool {
    if root == "/" {
        return path.starts_with('/');
    }
    path == root || (path.starts_with(root) && path.as_bytes().get(root.len()) == Some(&b'/'))
}

/// Where a writ sits in its execution tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lineage {
    /// 0 for a root.
    pub depth: u32,
    /// The parent writ's `jti`, or `null` for a root.
    pub parent: Option<String>,
    /// The root writ's `jti` (its own for a root).
    pub root: String,
}

/// Which log entry recorded the decision behind this writ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPointer {
    pub index: u64,
    pub origin: String,
}

impl Claims {
    /// The RFC 8785 bytes of the claim set. Fast path: with plain facts the
    /// compact serde_json form is canonical, because every struct above lists
    /// its fields in lexicographic order and every other value is a string,
    /// integer, bool or null. A test checks both paths agree.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, canonical::CanonicalError> {
        // serde_json and RFC 8785 escape strings identically, so only the
        // facts (floats, key order) can differ.
        if canonical::plain_map(&self.writ.environment.facts) {
            serde_json::to_vec(self).map_err(|e| canonical::CanonicalError::Json(e.to_string()))
        } else {
            canonical::to_canonical_bytes(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_fast_path_equals_full_jcs() {
        let mut facts = serde_json::Map::new();
        facts.insert("cwd".into(), Value::from("/tmp/\u{e9}\"q\""));
        facts.insert("host".into(), Value::from("a"));
        let mut c = Claims {
            aud: "exec@a".into(),
            cnf: None,
            exp: 70,
            iat: 10,
            iss: "writ".into(),
            jti: "0123456789abcdef0123456789abcdef".into(),
            nbf: 10,
            sub: "Agent::\"p\"".into(),
            writ: WritBody {
                action: "Action::\"exec\"".into(),
                environment: EnvironmentBinding::bind(facts).unwrap(),
                lineage: Lineage {
                    depth: 1,
                    parent: Some("p".into()),
                    root: "r".into(),
                },
                log: LogPointer {
                    index: 3,
                    origin: "o".into(),
                },
                policy: "sha256:x".into(),
                request: "sha256:y".into(),
                resource: "Command::\"/bin/true\"".into(),
                scope: Scope {
                    net: true,
                    read: vec!["/a".into()],
                    write: vec![],
                },
            },
        };
        assert_eq!(
            c.canonical_bytes().unwrap(),
            canonical::to_canonical_bytes(&c).unwrap()
        );
        c.writ.environment = EnvironmentBinding::bind(
            serde_json::json!({"z": 1.5, "a": [1e21]})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
        assert_eq!(
            c.canonical_bytes().unwrap(),
            canonical::to_canonical_bytes(&c).unwrap()
        );
    }

    fn scope(read: &[&str], write: &[&str], net: bool) -> Scope {
        Scope {
            read: read.iter().map(|s| s.to_string()).collect(),
            write: write.iter().map(|s| s.to_string()).collect(),
            net,
        }
    }

    #[test]
    fn scope_containment_is_component_wise() {
        let parent = scope(&["/data"], &["/tmp/work"], false);
        assert!(scope(&["/data/x", "/tmp/work/y"], &["/tmp/work"], false).is_within(&parent));
        assert!(!scope(&["/data2"], &[], false).is_within(&parent));
        assert!(
            !scope(&[], &["/data/x"], false).is_within(&parent),
            "read does not grant write"
        );
        assert!(
            !scope(&[], &[], true).is_within(&parent),
            "no network from a parent without it"
        );
        assert!(scope(&["/etc"], &[], false).is_within(&scope(&["/"], &[], false)));
    }

    #[test]
    fn scope_paths_must_be_normal_and_absolute() {
        assert!(scope(&["/a/b"], &["/"], false).validate().is_ok());
        for bad in ["a/b", "/a/../b", "/a/./b", "/a//b", "/a/", ""] {
            assert!(
                scope(&[bad], &[], false).validate().is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
