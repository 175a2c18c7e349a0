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
    actions: HashMap<String, Map<String, Value>>,
    /// Common types by name, qualified (`Ns::T`) and, within their own
    /// namespace, as written there (`T`).
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
        let mut contexts: Vec<(String, &Value)> = Vec::new();
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
                    shapes.common.entry(name.clone()).or_insert(ty.clone());
                }
            }
            if let Some(Value::Object(actions)) = body.get("actions") {
                for (name, a) in actions {
                    if let Some(ctx) = a.get("appliesTo").and_then(|t| t.get("context")) {
                        let uid = format!(
                            "{}::{}",
                            qualify("Action"),
                            serde_json::to_string(name).unwrap_or_default()
                        );
                        contexts.push((uid, ctx));
                    }
                }
            }
        }
        let actions = contexts
            .into_iter()
            .map(|(uid, ctx)| {
                let attrs = shapes
                    .resolve(ctx, 0)
                    .and_then(|t| t.get("attributes").and_then(Value::as_object).cloned())
                    .unwrap_or_default();
                (uid, attrs)
            })
            .collect();
        shapes.actions = actions;
        shapes
    }

    /// A type with common-type references followed (to a bounded depth).
    fn resolve<'a>(&'a self, ty: &'a Value, depth: u8) -> Option<&'a Value> {
        if depth > 16 {
            return None;
        }
        let kind = ty.get("type").and_then(Value::as_str)?;
        let name = match kind {
            "EntityOrCommon" => ty.get("name").and_then(Value::as_str)?,
            "Record" | "Set" | "String" | "Long" | "Boolean" | "Entity" | "Extension" => {
                return Some(ty)
            }
            other => other,
        };
        match self.common.get(name) {
            Some(t) => self.resolve(t, depth + 1),
            None => Some(ty),
        }
    }

    /// `value` trimmed to the type `action` declares for context attribute
    /// `attr`; `None` if it declares none.
    pub(crate) fn fit(&self, action: &str, attr: &str, value: Value) -> Option<Value> {
        let ty = self.actions.get(action)?.get(attr)?;
        Some(self.trim(value, ty, 0))
    }

    fn trim(&self, value: Value, ty: &Value, depth: u8) -> Value {
        let Some(ty) = self.resolve(ty, depth) else {
            return value;
        };
        match (value, ty.get("type").and_then(Value::as_str)) {
            (Value::Object(m), Some("Record")) => {
                let declared = ty.get("attributes").and_then(Value::as_object);
                let kept = m
                    .into_iter()
                    .filter_map(|(k, v)| {
                        let t = declared?.get(&k)?;
                        Some((k, self.trim(v, t, depth + 1)))
                    })
                    .collect();
                Value::Object(kept)
            }
            (Value::Array(items), Some("Set")) => match ty.get("element") {
                Some(el) => Value::Array(
                    items
                        .into_iter()
                        .map(|v| self.trim(v, el, depth + 1))
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
