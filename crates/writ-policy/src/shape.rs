//! The context each action's schema declares, so that writ sends what a
//! schema asks for and nothing it would refuse.
//!
//! Under a schema, Cedar refuses a context with an attribute the action does
//! not declare. Attributes writ adds to every context in later versions
//! (`identity`) would then make every request of an older schema fail; so
//! such an attribute is sent only when the schema declares it, and then
//! only the parts of it the schema declares (nested records are trimmed to
//! their declared attributes). Without a schema it is sent whole.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Declared context attributes by action UID (`Action::"exec"`,
/// `Ns::Action::"exec"`), and the common types they may name.
#[derive(Debug, Default)]
pub(crate) struct ContextShapes {
    /// Each action's namespace and its context's declared attributes.
    actions: HashMap<String, (String, Map<String, Value>)>,
    /// Common types by qualified name (`Ns::T`; `T` in the empty namespace).
    common: HashMap<String, Value>,
}

impl ContextShapes {
    /// From the Cedar schema text (its JSON form, as Cedar converts it). A
    /// schema Cedar cannot convert declares nothing.
    pub(crate) fn of_schema(text: &str) -> ContextShapes {
        let json = cedar_policy::SchemaFragment::from_cedarschema_str(text)
            .ok()
            .and_then(|(f, _)| f.to_json_value().ok());
        let mut shapes = ContextShapes::default();
        let Some(Value::Object(namespaces)) = json else {
            return shapes;
        };
        // Every action's context type, resolved once all common types are
        // known.
        let mut contexts: Vec<(String, &str, &Value)> = Vec::new();
        for (ns, body) in &namespaces {
            let qualify = |name: &str| {
                if ns.is_empty() {
                    name.to_owned()
                } else {
                    format!("{ns}::{name}")
                }
            };
            if let Some(Value::Object(types)) = body.get("commonTypes") {
                for (name, ty) in types {
                    shapes.common.insert(qualify(name), ty.clone());
                }
            }
            if let Some(Value::Object(actions)) = body.get("actions") {
                for (name, a) in actions {
                    if let Some(ctx) = a.get("appliesTo").and_then(|t| t.get("context")) {
                        let text = format!(
                            "{}::{}",
                            qualify("Action"),
                            serde_json::to_string(name).unwrap_or_default()
                        );
                        // Keyed by Cedar's own rendering of the UID, which
                        // `Bundle::fit_to_context` looks up by.
                        if let Ok(uid) =
                            <cedar_policy::EntityUid as std::str::FromStr>::from_str(&text)
                        {
                            contexts.push((uid.to_string(), ns.as_str(), ctx));
                        }
                    }
                }
            }
        }
        let actions = contexts
            .into_iter()
            .map(|(uid, ns, ctx)| {
                let attrs = shapes
                    .resolve(ctx, ns, 0)
                    .and_then(|(t, _)| t.get("attributes").and_then(Value::as_object).cloned())
                    .unwrap_or_default();
                (uid, (ns.to_owned(), attrs))
            })
            .collect();
        shapes.actions = actions;
        shapes
    }

    /// A type with common-type references followed (to a bounded depth),
    /// and the namespace it was defined in. A name written in namespace
    /// `ns` is that namespace's type, else the empty namespace's (or, when
    /// qualified, the one it names), as Cedar resolves it.
    fn resolve<'a>(&'a self, ty: &'a Value, ns: &str, depth: u8) -> Option<(&'a Value, String)> {
        if depth > 16 {
            return None;
        }
        let kind = ty.get("type").and_then(Value::as_str)?;
        let name = match kind {
            "EntityOrCommon" => ty.get("name").and_then(Value::as_str)?,
            "Record" | "Set" | "String" | "Long" | "Boolean" | "Entity" | "Extension" => {
                return Some((ty, ns.to_owned()))
            }
            other => other,
        };
        let local = (!ns.is_empty() && !name.contains("::")).then(|| format!("{ns}::{name}"));
        let found = local
            .as_ref()
            .and_then(|q| self.common.get(q).map(|t| (t, q.clone())))
            .or_else(|| self.common.get(name).map(|t| (t, name.to_owned())));
        match found {
            Some((t, qualified)) => {
                let home = qualified
                    .rsplit_once("::")
                    .map_or("", |(n, _)| n)
                    .to_owned();
                self.resolve(t, &home, depth + 1)
            }
            None => Some((ty, ns.to_owned())),
        }
    }

    /// `value` trimmed to the type `action` declares for context attribute
    /// `attr`; `None` if it declares none.
    pub(crate) fn fit(&self, action: &str, attr: &str, value: Value) -> Option<Value> {
        let (ns, attrs) = self.actions.get(action)?;
        let ty = attrs.get(attr)?;
        Some(self.trim(value, ty, ns, 0))
    }

    fn trim(&self, value: Value, ty: &Value, ns: &str, depth: u8) -> Value {
        let Some((ty, ns)) = self.resolve(ty, ns, depth) else {
            return value;
        };
        match (value, ty.get("type").and_then(Value::as_str)) {
            (Value::Object(m), Some("Record")) => {
                let declared = ty.get("attributes").and_then(Value::as_object);
                let kept = m
                    .into_iter()
                    .filter_map(|(k, v)| {
                        let t = declared?.get(&k)?;
                        Some((k, self.trim(v, t, &ns, depth + 1)))
                    })
                    .collect();
                Value::Object(kept)
            }
            (Value::Array(items), Some("Set")) => match ty.get("element") {
                Some(el) => Value::Array(
                    items
                        .into_iter()
                        .map(|v| self.trim(v, el, &ns, depth + 1))
                        .collect(),
                ),
                None => Value::Array(items),
            },
            (v, _) => v,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn declared_parts_are_kept_and_the_rest_left_out() {
        let shapes = ContextShapes::of_schema(
            r#"
            entity Agent;
            entity Command;
            type Identity = { "method": String, "claims"?: { "team"?: String } };
            action "exec" appliesTo { principal: [Agent], resource: [Command],
                context: { "identity": Identity } };
            action "other" appliesTo { principal: [Agent], resource: [Command],
                context: { "x": Long } };
            namespace Other {
                entity B;
                type Identity = { "other"?: String };
                action "x" appliesTo { principal: [B], resource: [B], context: { "identity": Identity } };
            }
            namespace Ns {
                entity A;
                action "deploy" appliesTo { principal: [A], resource: [A],
                    context: { "identity": { "trust_domain"?: String } } };
            }
            "#,
        );
        let id = json!({"method": "oidc", "issuer": "i", "claims": {"team": "a", "email": "e"}});
        assert_eq!(
            shapes.fit("Action::\"exec\"", "identity", id.clone()),
            Some(json!({"method": "oidc", "claims": {"team": "a"}}))
        );
        assert_eq!(
            shapes.fit("Action::\"other\"", "identity", id.clone()),
            None
        );
        assert_eq!(shapes.fit("Action::\"nope\"", "identity", id), None);
        assert_eq!(
            shapes.fit(
                "Ns::Action::\"deploy\"",
                "identity",
                json!({"method": "mtls", "trust_domain": "example.org"})
            ),
            Some(json!({"trust_domain": "example.org"}))
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod bundle_tests {
    use serde_json::json;

    /// The action is found by what Cedar reads; another spelling of it
    /// (escaped, spaced) is no action to Cedar either (it refuses UIDs not
    /// in normal form), so it is denied, never decided without `identity`.
    #[test]
    fn only_the_normal_spelling_of_an_action_is_an_action() {
        let src = crate::BundleSource {
            policies: [(
                "p.cedar".to_owned(),
                "permit(principal, action == Action::\"exec\", resource);".to_owned(),
            )]
            .into_iter()
            .collect(),
            schema: Some(
                "entity A; action \"exec\" appliesTo { principal: [A], resource: [A], \
                 context: { \"identity\"?: { \"method\": String } } };"
                    .to_owned(),
            ),
            entities: None,
        };
        let b = crate::Bundle::compile(src).unwrap();
        assert_eq!(
            b.fit_to_context(
                "Action::\"exec\"",
                "identity",
                json!({"method": "oidc", "x": 1})
            ),
            Some(json!({"method": "oidc"}))
        );
        for spelling in ["Action::\"\\u{65}xec\"", "Action :: \"exec\""] {
            assert_eq!(b.fit_to_context(spelling, "identity", json!({})), None);
            let refused = b.decide(crate::DecisionInput {
                principal: "A::\"a\"",
                action: spelling,
                resource: "A::\"b\"",
                context: &json!({}),
            });
            assert!(refused.is_err(), "{spelling} was decided");
        }
    }
}
