//! # Tuning (Deciding)
//!
//! - `@enforcement` annotations are read once per bundle when it is compiled
//!   (`Bundle::enforcement`): Cedar's `Policy::annotation` parses its key on
//!   every call, which was a fifth of a decision.
//! - A decision's leaf is written field by field in RFC 8785 key order
//!   (`DecisionEntry::write_leaf`: 7.6 to 1.7 us) instead of through a JSON
//!   value; a context holding a number only the generic path can write takes
//!   the generic path. A test checks both give the same bytes.
//! - `Claims::canonical_bytes` (`crates/writ-artifact/src/claims.rs`) takes the
//!   compact serde form when the environment facts are plain: every struct
//!   lists its fields in lexicographic order. A test checks both paths agree.
//! - Digests and jtis are hex-encoded by the `hex` crate (2.6% fewer
//!   instructions per governed decision under callgrind).
//!
//! Where a governed decision's CPU went before the writer's pacing (perf, 256
//! callers, 2026-12-04 and 05): tokio workers 81% of the samples (signing and
//! Cedar about 41% each of theirs), the SQLite writer 17%, the checkpointer
//! 2%. The ratio to the ceiling at full CPU is then
//! the ceiling's 37 us over the governed path's 60-64 us: the faster Cedar
//! and signing get, the lower the ratio, because the log's share does not
//! shrink with them.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cedar_policy::{
    ActionConstraint, Entities, EntityUid, PolicyId, PolicySet, Schema, ValidationMode, Validator,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use writ_artifact::canonical;
use writ_artifact::WritKey;

/// Format tag inside the canonical form; part of what is hashed.
pub const BUNDLE_FORMAT: &str = "writ.bundle.v1";
/// Total bytes of policy, schema and entity text one bundle may hold.
pub const BUNDLE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most policy files one bundle may hold.
pub const BUNDLE_POLICY_FILES_MAX: usize = 1024;
/// Domain separation for bundle signatures.
const BUNDLE_SIGNING_CONTEXT: &str = "writ-bundle-v1:";

/// A bundle as its author wrote it: `*.cedar` files by name, an optional
/// `schema.cedarschema`, an optional `entities.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSource {
    pub policies: BTreeMap<String, String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub entities: Option<Value>,
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is too large: {0}")]
    TooLarge(String),
    #[error("bundle has no policy files (*.cedar)")]
    Empty,
    #[error("policy file {file}: {diagnostics}")]
    Parse { file: String, diagnostics: String },
    #[error("schema.cedarschema: {0}")]
    Schema(String),
    #[error("policies do not validate against schema.cedarschema:\n{0}")]
    Validation(String),
    #[error("entities.json: {0}")]
    Entities(String),
    #[error("bundle signature: {0}")]
    Signature(String),
    #[error("cannot canonicalize bundle: {0}")]
    Canonical(String),
}

impl BundleSource {
    /// The canonical form: RFC 8785 JSON of `{format, policies, schema,
    /// entities}`. Its SHA-256 is the bundle's identity.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, BundleError> {
        let v = serde_json::json!({
            "format": BUNDLE_FORMAT,
            "policies": self.policies,
            "schema": self.schema,
            "entities": self.entities,
        });
        canonical::to_canonical_bytes(&v).map_err(|e| BundleError::Canonical(e.to_string()))
    }

    /// `sha256:` of the canonical form.
    pub fn hash(&self) -> Result<String, BundleError> {
        Ok(canonical::digest_bytes(&self.canonical_bytes()?))
    }

    fn check_limits(&self) -> Result<(), BundleError> {
        if self.policies.is_empty() {
            return Err(BundleError::Empty);
        }
        if self.policies.len() > BUNDLE_POLICY_FILES_MAX {
            return Err(BundleError::TooLarge(format!(
                "{} policy files; at most {BUNDLE_POLICY_FILES_MAX}",
                self.policies.len()
            )));
        }
        let entities_len = match &self.entities {
            Some(v) => serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX),
            None => 0,
        };
        let total = self
            .policies
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            + self.schema.as_ref().map_or(0, String::len)
            + entities_len;
        if total > BUNDLE_BYTES_MAX {
            return Err(BundleError::TooLarge(format!(
                "{total} bytes; at most {BUNDLE_BYTES_MAX}"
            )));
        }
        Ok(())
    }

    /// Sign the bundle's hash with a policy key.
    pub fn sign(self, key: &WritKey) -> Result<SignedBundle, BundleError> {
        let hash = self.hash()?;
        let sig = key.sign(format!("{BUNDLE_SIGNING_CONTEXT}{hash}").as_bytes());
        Ok(SignedBundle {
            source: self,
            hash,
            kid: key.kid().to_owned(),
            signature: STANDARD.encode(sig),
        })
    }
}

/// A bundle with its hash and the policy key's signature over it. The unit
/// that is uploaded, stored forever by hash, and named by every decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBundle {
    pub source: BundleSource,
    pub hash: String,
    pub kid: String,
    pub signature: String,
}

impl SignedBundle {
    /// Check the hash is the source's and the signature is by one of `keys`
    /// (the trusted policy keys).
    pub fn check(&self, keys: &writ_artifact::KeyRing) -> Result<(), BundleError> {
        let hash = self.source.hash()?;
        if hash != self.hash {
            return Err(BundleError::Signature(format!(
                "hash {} does not match the content ({hash})",
                self.hash
            )));
        }
        let key = keys.get(&self.kid).ok_or_else(|| {
            BundleError::Signature(format!("policy key {:?} is not trusted", self.kid))
        })?;
        let sig: [u8; 64] = STANDARD
            .decode(&self.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| BundleError::Signature("signature is not 64 bytes of base64".into()))?;
        key.verify_strict(
            format!("{BUNDLE_SIGNING_CONTEXT}{hash}").as_bytes(),
            &writ_artifact::keys::Signature::from_bytes(&sig),
        )
        .map_err(|_| BundleError::Signature("signature does not verify".into()))
    }
}

/// A compiled, validated bundle, ready to decide.
pub struct Bundle {
    pub(crate) hash: String,
    pub(crate) policies: PolicySet,
    /// `@enforcement` of each policy that has one: `(rank, level)`, read
    /// once here (Cedar parses the annotation key on every lookup, which was
    /// a fifth of a decision).
    pub(crate) enforcement: HashMap<PolicyId, (u8, String)>,
    pub(crate) schema: Option<Schema>,
    /// The actions some policy's scope names (`action == A`, `A` in the
    /// list of `action in [...]`, or a group `A` is in), as Cedar prints
    /// their UIDs: read per decision, so found once here.
    named_actions: std::collections::HashSet<String>,
    /// What the schema declares of each action's context.
    shapes: crate::shape::ContextShapes,
    pub(crate) entities: Entities,
    source: BundleSource,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl Bundle {
    /// Parse every policy file, validate against the schema when there is one
    /// (strict mode), and parse the entities. Any failure refuses the whole
    /// bundle with Cedar's diagnostics.
    pub fn compile(source: BundleSource) -> Result<Bundle, BundleError> {
        source.check_limits()?;
        let hash = source.hash()?;
        let mut policies = PolicySet::new();
        let mut enforcement = HashMap::new();
        // Which file each policy came from, so that a validation error can
        // point at its line and column.
        let mut file_of: HashMap<String, (&str, &str)> = HashMap::new();
        for (file, text) in &source.policies {
            let parsed: PolicySet =
                text.parse()
                    .map_err(|e: cedar_policy::ParseErrors| BundleError::Parse {
                        file: file.clone(),
                        diagnostics: render_parse_errors(&e, text),
                    })?;
            if parsed.templates().next().is_some() {
                return Err(BundleError::Parse {
                    file: file.clone(),
                    diagnostics: "policy templates are not supported in bundles".into(),
                });
            }
            let mut list: Vec<_> = parsed.policies().collect();
            // Keep the order the author wrote, so fallback ids are stable.
            list.sort_by_key(|p| p.id().to_string()[6..].parse::<usize>().unwrap_or(0));
            for (n, policy) in list.into_iter().enumerate() {
                let id = policy
                    .annotation("id")
                    .map_or_else(|| format!("{file}#{n}"), str::to_owned);
                if let Some(level) = policy.annotation(crate::ENFORCEMENT_ANNOTATION) {
                    let Some(rank) = crate::enforcement_rank(level) else {
                        return Err(BundleError::Parse {
                            file: file.clone(),
                            diagnostics: format!(
                                "policy {id:?}: @enforcement({level:?}) must be \"full\", \"partial\" or \"none\""
                            ),
                        });
                    };
                    enforcement.insert(PolicyId::new(&id), (rank, level.to_owned()));
                }
                file_of.insert(id.clone(), (file.as_str(), text.as_str()));
                policies
                    .add(policy.new_id(PolicyId::new(&id)))
                    .map_err(|e| BundleError::Parse {
                        file: file.clone(),
                        diagnostics: format!("policy id {id:?}: {e}"),
                    })?;
            }
        }
        let schema = match &source.schema {
            None => None,
            Some(text) => {
                let (schema, _warnings) = Schema::from_cedarschema_str(text).map_err(|e| {
                    BundleError::Schema(miette_like::Diag::render_rich(&e, Some(text)))
                })?;
                let result =
                    Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
                if !result.validation_passed() {
                    let mut msg = String::new();
                    for e in result.validation_errors() {
                        let id = e.policy_id().to_string();
                        let _ = match file_of.get(&id) {
                            Some((file, text)) => writeln!(
                                msg,
                                "  - policy {id} ({file}): {}",
                                miette_like::Diag::render_rich(e, Some(text))
                            ),
                            None => writeln!(msg, "  - policy {id}: {}", render_refusal(e)),
                        };
                    }
                    return Err(BundleError::Validation(msg));
                }
                Some(schema)
            }
        };
        let entities = match &source.entities {
            None => Entities::empty(),
            Some(v) => Entities::from_json_value(v.clone(), schema.as_ref())
                .map_err(|e| BundleError::Entities(render_refusal(&e)))?,
        };
        let entities = match &schema {
            Some(s) => {
                let actions = s
                    .action_entities()
                    .map_err(|e| BundleError::Schema(render_refusal(&e)))?;
                entities
                    .add_entities(actions, Some(s))
                    .map_err(|e| BundleError::Entities(render_refusal(&e)))?
            }
            None => entities,
        };
        let shapes = source
            .schema
            .as_deref()
            .map(crate::shape::ContextShapes::of_schema)
            .unwrap_or_default();
        let named_actions = named_actions(&policies);
        scope_named_only(&policies, &entities, &named_actions, &file_of)?;
        let named_actions = with_group_members(named_actions, &entities);
        Ok(Bundle {
            hash,
            policies,
            named_actions,
            enforcement,
            schema,
            shapes,
            entities,
            source,
        })
    }

    /// `sha256:` of the canonical form.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn source(&self) -> &BundleSource {
        &self.source
    }

    /// Policy ids in the bundle, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .policies
            .policies()
            .map(|p| p.id().to_string())
            .collect();
        ids.sort();
        ids
    }

    /// Whether some policy's scope names `action` (`Action::"tool_result"`):
    /// `action == A`, `action in [..., A, ...]`, or `action in G` for a group
    /// `G` that `A` is in. A policy whose scope leaves the action open does
    /// not count (an enforcement point asks for such an action only when a
    /// policy names it; docs/spec/api.md, "Screened tool results").
    pub fn names_action(&self, action: &str) -> bool {
        self.named_actions.contains(action)
    }

    pub fn has_schema(&self) -> bool {
        self.schema.is_some()
    }

    /// What of `value` to send as context attribute `attr` of `action`:
    /// all of it without a schema; under one, the parts its declared type
    /// holds, or nothing when the action declares no such attribute (see
    /// `shape`).
    pub fn fit_to_context(&self, action: &str, attr: &str, value: Value) -> Option<Value> {
        if self.schema.is_none() {
            return Some(value);
        }
        // Looked up by its text, which is Cedar's rendering of the action:
        // Cedar refuses a UID in any other spelling (`Action::"\u{65}xec"`),
        // so such a request is denied without a shape, and the authorize
        // path parses no UID twice.
        self.shapes.fit(action, attr, value)
    }
}

fn render_parse_errors(e: &cedar_policy::ParseErrors, text: &str) -> String {
    let mut s = String::new();
    for (i, err) in e.iter().enumerate() {
        if i > 0 {
            s.push_str("; ");
        }
        s.push_str(&miette_like::Diag::render_rich(err, Some(text)));
    }
    s
}

/// Cedar's message plus its help text and labelled source spans, as
/// decisions have always logged it.
///
/// **Invariant:** this rendering is part of logged decisions (an input
/// error becomes a `policy_denied` entry's message) and `writ log verify
/// --replay` compares messages byte for byte: it must not change. Bundle
/// refusals, which are not logged, use [`miette_like::Diag::render_rich`].
pub(crate) fn render_diagnostic<E: miette_like::Diag + ?Sized>(e: &E) -> String {
    e.render()
}

/// A bundle refusal's diagnostic: the richer rendering.
fn render_refusal<E: miette_like::Diag + ?Sized>(e: &E) -> String {
    e.render_rich(None)
}

pub(crate) mod miette_like {
    /// Renders any Cedar error that implements `miette::Diagnostic`.
    pub trait Diag {
        /// Message, help and byte offsets (see `render_diagnostic`).
        fn render(&self) -> String;
        /// Message, the causes it does not already say, help, and where it
        /// points: as lines and columns of `text` when the source is known.
        fn render_rich(&self, text: Option<&str>) -> String;
    }
    impl<T: miette::Diagnostic + ?Sized> Diag for T {
        fn render(&self) -> String {
            let mut s = self.to_string();
            if let Some(help) = self.help() {
                s.push_str(&format!(" (help: {help})"));
            }
            if let Some(labels) = self.labels() {
                let spans: Vec<String> = labels
                    .map(|l| format!("at offset {}..{}", l.offset(), l.offset() + l.len()))
                    .collect();
                if !spans.is_empty() {
                    s.push_str(&format!(" [{}]", spans.join(", ")));
                }
            }
            s
        }

        fn render_rich(&self, text: Option<&str>) -> String {
            let mut s = self.to_string();
            // Cedar often says what failed at the top and why underneath
            // ("error during entity deserialization": which attribute, and
            // how); each cause not already said is added.
            let mut cause = std::error::Error::source(self);
            while let Some(c) = cause {
                let said = c.to_string();
                if !said.is_empty() && !s.contains(&said) {
                    s.push_str(": ");
                    s.push_str(&said);
                }
                cause = c.source();
            }
            if let Some(help) = self.help() {
                s.push_str(&format!(" (help: {help})"));
            }
            if let Some(labels) = self.labels() {
                let spans: Vec<String> = labels
                    .map(|l| {
                        let at = match text {
                            Some(t) => line_column(t, l.offset()),
                            None => format!("offset {}..{}", l.offset(), l.offset() + l.len()),
                        };
                        match l.label() {
                            Some(what) => format!("at {at}: {what}"),
                            None => format!("at {at}"),
                        }
                    })
                    .collect();
                if !spans.is_empty() {
                    s.push_str(&format!(" [{}]", spans.join(", ")));
                }
            }
            s
        }
    }

    /// `line L, column C` (both from 1; columns in characters) of a byte
    /// offset into `text`.
    pub(crate) fn line_column(text: &str, offset: usize) -> String {
        // An offset inside a character counts from the character's start.
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit_once('\n')
            .map_or(before, |(_, tail)| tail)
            .chars()
            .count()
            + 1;
        format!("line {line}, column {column}")
    }
}

/// Every action UID a policy's scope names, as Cedar prints it.
fn named_actions(policies: &PolicySet) -> std::collections::HashSet<String> {
    let mut named = std::collections::HashSet::new();
    for p in policies.policies() {
        match p.action_constraint() {
            ActionConstraint::Any => {}
            ActionConstraint::Eq(a) => {
                named.insert(a.to_string());
            }
            ActionConstraint::In(list) => named.extend(list.iter().map(ToString::to_string)),
        }
    }
    named
}

/// `named` and every action entity in a group among `named`.
fn with_group_members(
    named: std::collections::HashSet<String>,
    entities: &Entities,
) -> std::collections::HashSet<String> {
    let members: Vec<String> = entities
        .iter()
        .map(|e| e.uid())
        .filter(|uid| uid.type_name().basename() == "Action" && names(&named, entities, uid))
        .map(|uid| uid.to_string())
        .collect();
    let mut all = named;
    all.extend(members);
    all
}

/// Whether `uid`, or a group it is in, is among `named`.
fn names(named: &std::collections::HashSet<String>, entities: &Entities, uid: &EntityUid) -> bool {
    named.contains(&uid.to_string())
        || entities
            .ancestors(uid)
            .is_some_and(|mut a| a.any(|g| named.contains(&g.to_string())))
}

/// Whether the policy's JSON form holds the entity `(type, id)` anywhere.
fn mentions(v: &serde_json::Value, (ty, id): (&str, &str)) -> bool {
    match v {
        serde_json::Value::Object(m) => {
            (m.get("type").and_then(|t| t.as_str()) == Some(ty)
                && m.get("id").and_then(|i| i.as_str()) == Some(id))
                || m.values().any(|x| mentions(x, (ty, id)))
        }
        serde_json::Value::Array(a) => a.iter().any(|x| mentions(x, (ty, id))),
        _ => false,
    }
}

/// Refuse a policy that mentions one of [`crate::SCOPE_NAMED_ACTIONS`]
/// without its scope naming it (say `forbid (principal, action, resource)
/// when { action == Action::"tool_result" && ... }`): no enforcement point
/// would ever ask for it, and the policy would silently never apply.
fn scope_named_only(
    policies: &PolicySet,
    entities: &Entities,
    named: &std::collections::HashSet<String>,
    file_of: &HashMap<String, (&str, &str)>,
) -> Result<(), BundleError> {
    for (ty, id) in crate::SCOPE_NAMED_ACTIONS {
        let uid_text = format!("{ty}::{}", serde_json::Value::from(id));
        let Ok(uid) = uid_text.parse::<EntityUid>() else {
            continue;
        };
        let scoped = names(named, entities, &uid);
        for p in policies.policies() {
            let in_scope = match p.action_constraint() {
                ActionConstraint::Eq(a) => names(&[a.to_string()].into(), entities, &uid),
                ActionConstraint::In(list) => names(
                    &list.iter().map(ToString::to_string).collect(),
                    entities,
                    &uid,
                ),
                ActionConstraint::Any => false,
            };
            if in_scope || !p.to_json().is_ok_and(|j| mentions(&j, (ty, id))) {
                continue;
            }
            let pid = p.id().to_string();
            return Err(BundleError::Parse {
                file: file_of
                    .get(&pid)
                    .map_or_else(String::new, |(f, _)| (*f).to_owned()),
                diagnostics: format!(
                    "policy {pid:?} mentions {uid_text} outside its scope: name it there \
                     (`action == {uid_text}` or in `action in [...]`), since an enforcement point \
                     asks for it only when a policy's scope names it{}",
                    if scoped {
                        ""
                    } else {
                        " (no policy's scope does)"
                    }
                ),
            });
        }
    }
    Ok(())
}
