use cedar_policy::{Authorizer, Context, EntityUid, Request, RestrictedExpression};
use serde_json::{Map, Value};
use std::str::FromStr;

use crate::bundle::{render_diagnostic, Bundle};

/// One question for the policy: may `principal` do `action` on `resource`, in
/// `context`? Entity UIDs are strings in Cedar syntax (`Action::"exec"`).
#[derive(Debug, Clone, Copy)]
pub struct DecisionInput<'a> {
    pub principal: &'a str,
    pub action: &'a str,
    pub resource: &'a str,
    pub context: &'a Value,
}

/// Cedar's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    /// Ids of the policies that decided: the permits that matched on allow,
    /// the forbids that matched (or erred, see [`Decision::erring_forbids`])
    /// on deny (empty on a default deny).
    pub policies: Vec<String>,
    /// Policies that erred while evaluating. Cedar skips them; writ does too
    /// for a permit (one that cannot be evaluated permits nothing), but a
    /// forbid that errs denies: it might have forbidden the request.
    pub errors: Vec<String>,
    /// Ids of the forbid policies among [`Decision::errors`] when they are
    /// what denied: the permits would have allowed. (A forbid that errs on a
    /// request denied anyway is only listed in `errors`.)
    pub erring_forbids: Vec<String>,
    /// On allow: the strictest `@enforcement("...")` level that a permitting
    /// policy demands of the enforcement point, with that policy's id.
    pub enforcement: Option<(String, String)>,
}

impl Decision {
    /// A one-line explanation naming the deciding policy ids.
    pub fn message(&self) -> String {
        if !self.erring_forbids.is_empty() {
            // Their errors only (Cedar names the policy in backquotes); all
            // of them should that form ever change.
            let theirs: Vec<&str> = self
                .errors
                .iter()
                .filter(|e| {
                    self.erring_forbids
                        .iter()
                        .any(|id| e.contains(&format!("`{id}`")))
                })
                .map(String::as_str)
                .collect();
            let errors = if theirs.is_empty() {
                self.errors.iter().map(String::as_str).collect()
            } else {
                theirs
            };
            return format!(
                "denied because forbid policies could not be evaluated (an erring forbid denies): {}",
                errors.join("; ")
            );
        }
        let mut m = match (self.allow, self.policies.is_empty()) {
            (true, _) => format!("permitted by {}", self.policies.join(", ")),
            (false, true) => "no policy permits this request".to_string(),
            (false, false) => format!("forbidden by {}", self.policies.join(", ")),
        };
        if !self.errors.is_empty() {
            m.push_str(&format!(
                " (policies that erred and were skipped: {})",
                self.errors.join("; ")
            ));
        }
        m
    }
}

/// The request could not be put to Cedar (bad entity UID, unknown type or
/// action under the schema, context that does not fit). The authority denies
/// these with `policy_denied` and this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

fn uid(what: &str, s: &str) -> Result<EntityUid, InputError> {
    EntityUid::from_str(s).map_err(|e| {
        InputError(format!(
            "{what} {s:?} is not a Cedar entity UID such as Type::\"id\": {}",
            render_diagnostic(&e)
        ))
    })
}

/// Whether `s` is an entity UID in Cedar syntax (`User::"alice"`), by the
/// parser decisions use: a principal registered under anything else could
/// never be decided for.
pub fn check_entity_uid(s: &str) -> Result<(), InputError> {
    uid("entity UID", s).map(|_| ())
}

/// Cedar has no floats and no null: floats become their decimal string, nulls
/// are dropped. Everything else keeps its JSON shape (arrays become sets).
pub fn to_cedar_json(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.as_i64().is_none() => Value::String(n.to_string()),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|v| !v.is_null())
                .map(to_cedar_json)
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), to_cedar_json(v)))
                .collect::<Map<String, Value>>(),
        ),
        other => other.clone(),
    }
}

/// A JSON value as a Cedar restricted expression, with the conventions of
/// [`to_cedar_json`] (floats as strings, nulls dropped) and Cedar's
/// `{"__entity": {"type", "id"}}` escape for entity references.
fn restricted(v: &Value) -> Result<RestrictedExpression, InputError> {
    Ok(match v {
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => RestrictedExpression::new_string(n.to_string()),
        },
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Array(items) => RestrictedExpression::new_set(
            items
                .iter()
                .filter(|v| !v.is_null())
                .map(restricted)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Value::Object(map) => {
            if let (1, Some(Value::Object(e))) = (map.len(), map.get("__entity")) {
                if let (Some(Value::String(t)), Some(Value::String(id))) =
                    (e.get("type"), e.get("id"))
                {
                    let text = format!("{t}::{}", serde_json::to_string(id).unwrap_or_default());
                    return uid("entity reference", &text)
                        .map(RestrictedExpression::new_entity_uid);
                }
            }
            let pairs = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| Ok((k.clone(), restricted(v)?)))
                .collect::<Result<Vec<_>, InputError>>()?;
            RestrictedExpression::new_record(pairs)
                .map_err(|e| InputError(format!("context record: {e}")))?
        }
        // Callers drop nulls before they get here (Cedar has none).
        Value::Null => return Err(InputError("null is not a Cedar value".into())),
    })
}

impl Bundle {
    /// Decide. Deterministic: the same bundle and input always give the same
    /// decision, which `writ log verify --replay` relies on.
    pub fn decide(&self, input: DecisionInput<'_>) -> Result<Decision, InputError> {
        let principal = uid("principal", input.principal)?;
        let action = uid("action", input.action)?;
        let resource = uid("resource", input.resource)?;
        let context = match &self.schema {
            // With a schema, Cedar's JSON parser reads the context by its declared
            // types (extension values, entity references).
            Some(schema) => {
                Context::from_json_value(to_cedar_json(input.context), Some((schema, &action)))
                    .map_err(|e| {
                        InputError(format!(
                            "context does not fit the schema: {}",
                            render_diagnostic(&e)
                        ))
                    })?
            }
            // Without one, build the record directly: the same values, without
            // the JSON parser's trial deserializations.
            None => {
                let Value::Object(map) = input.context else {
                    return Err(InputError("context must be a JSON object".into()));
                };
                let pairs = map
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| Ok((k.clone(), restricted(v)?)));
                Context::from_pairs(pairs.collect::<Result<Vec<_>, InputError>>()?)
                    .map_err(|e| InputError(format!("context: {}", render_diagnostic(&e))))?
            }
        };
        let request = Request::new(principal, action, resource, context, self.schema.as_ref())
            .map_err(|e| {
                InputError(format!(
                    "request does not fit the schema: {}",
                    render_diagnostic(&e)
                ))
            })?;
        let response = Authorizer::new().is_authorized(&request, &self.policies, &self.entities);
        let diag = response.diagnostics();
        let mut policies: Vec<String> = diag.reason().map(ToString::to_string).collect();
        policies.sort();
        let errors: Vec<String> = diag.errors().map(|e| e.to_string()).collect();
        // Fail closed: Cedar skips a policy whose evaluation errs (a missing
        // attribute, a type error on caller-supplied context), which for a
        // forbid would let the request through.
        let mut erring_forbids: Vec<String> = diag
            .errors()
            .map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => e.policy_id(),
            })
            .filter(|id| {
                self.policies
                    .policy(id)
                    .is_none_or(|p| p.effect() == cedar_policy::Effect::Forbid)
            })
            .map(ToString::to_string)
            .collect();
        erring_forbids.sort();
        erring_forbids.dedup();
        let cedar_allows = response.decision() == cedar_policy::Decision::Allow;
        if cedar_allows && !erring_forbids.is_empty() {
            // What decided is the forbids that could not be evaluated.
            policies.clone_from(&erring_forbids);
        } else {
            // Denied anyway (a forbid that matched, or no permit): that is
            // what decided, and is named.
            erring_forbids.clear();
        }
        let allow = cedar_allows && erring_forbids.is_empty();
        let enforcement = if allow {
            diag.reason()
                .filter_map(|id| {
                    let (rank, level) = self.enforcement.get(id)?;
                    Some((*rank, level, id))
                })
                .max()
                .map(|(_, level, id)| (level.clone(), id.to_string()))
        } else {
            None
        };
        Ok(Decision {
            allow,
            policies,
            errors,
            erring_forbids,
            enforcement,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BundleSource;
    use serde_json::json;

    fn bundle(
        policies: &[(&str, &str)],
        schema: Option<&str>,
    ) -> Result<Bundle, crate::BundleError> {
        let mut s = BundleSource::default();
        for (f, t) in policies {
            s.policies.insert((*f).into(), (*t).into());
        }
        s.schema = schema.map(str::to_owned);
        Bundle::compile(s)
    }

    fn ask(b: &Bundle, p: &str, a: &str, r: &str, ctx: Value) -> Result<Decision, InputError> {
        b.decide(DecisionInput {
            principal: p,
            action: a,
            resource: r,
            context: &ctx,
        })
    }

    #[test]
    fn default_bundle_allows_harmless_exec_and_names_policies() {
        let b = Bundle::compile(crate::default_bundle()).unwrap();
        let ctx =
            json!({"scope": {"read": [], "write": [], "net": false}, "lineage": {"depth": 0}});
        let d = ask(
            &b,
            "User::\"a\"",
            "Action::\"exec\"",
            "Command::\"/usr/bin/true\"",
            ctx.clone(),
        )
        .unwrap();
        assert!(d.allow);
        assert_eq!(d.policies, vec!["exec-harmless-commands"]);
        let d = ask(
            &b,
            "User::\"a\"",
            "Action::\"exec\"",
            "Command::\"/usr/bin/rm\"",
            ctx.clone(),
        )
        .unwrap();
        assert!(!d.allow);
        assert_eq!(d.message(), "no policy permits this request");
        let mut net = ctx.clone();
        net["scope"]["net"] = json!(true);
        let d = ask(
            &b,
            "User::\"a\"",
            "Action::\"exec\"",
            "Command::\"/usr/bin/true\"",
            net,
        )
        .unwrap();
        assert!(!d.allow);
        assert_eq!(d.message(), "forbidden by exec-no-network");
        let mut deep = ctx;
        deep["lineage"]["depth"] = json!(4);
        let d = ask(
            &b,
            "Agent::\"x\"",
            "Action::\"exec\"",
            "Command::\"/usr/bin/true\"",
            deep,
        )
        .unwrap();
        assert_eq!(d.policies, vec!["lineage-max-depth-3"]);
    }

    #[test]
    fn a_forbid_that_errs_denies_and_a_permit_that_errs_permits_nothing() {
        // The README's argument-aware example, in short: without a schema the caller
        // chooses the type of `path`, and a set makes `like` err.
        let b = bundle(
            &[(
                "p.cedar",
                r#"@id("all-tools") permit (principal, action, resource);
                @id("read-public-only")
                forbid (principal, action == Action::"call_tool", resource == Tool::"fs/read_text_file")
                when { context.arguments has path && !(context.arguments.path like "/data/public/*") };
                @id("odd-permit") permit (principal, action, resource) when { context.n > 1 };"#,
            )],
            None,
        )
        .unwrap();
        let call = |args: Value| {
            ask(
                &b,
                "Agent::\"a\"",
                "Action::\"call_tool\"",
                "Tool::\"fs/read_text_file\"",
                json!({"arguments": args, "n": 2}),
            )
            .unwrap()
        };
        assert!(call(json!({"path": "/data/public/a"})).allow);
        assert!(!call(json!({"path": "/etc/shadow"})).allow);
        for bypass in [
            json!({"path": ["/etc/shadow"]}),
            json!({"path": {"p": "/etc/shadow"}}),
            json!({"path": 1}),
        ] {
            let d = call(bypass.clone());
            assert!(!d.allow, "{bypass} must not be allowed: {}", d.message());
            assert_eq!(d.erring_forbids, vec!["read-public-only"]);
            assert_eq!(d.policies, vec!["read-public-only"]);
            assert!(
                d.message()
                    .starts_with("denied because forbid policies could not be evaluated"),
                "{}",
                d.message()
            );
        }
        // A permit that errs (`n` is a string) is skipped: the other permit
        // still allows, and nothing is counted as an erring forbid.
        let d = ask(
            &b,
            "Agent::\"a\"",
            "Action::\"call_tool\"",
            "Tool::\"fs/other\"",
            json!({"arguments": {}, "n": "x"}),
        )
        .unwrap();
        assert!(d.allow, "{}", d.message());
        assert!(d.erring_forbids.is_empty());
        assert_eq!(d.errors.len(), 1);
        // The erring permit is not blamed when the forbid errs too.
        let d = ask(
            &b,
            "Agent::\"a\"",
            "Action::\"call_tool\"",
            "Tool::\"fs/read_text_file\"",
            json!({"arguments": {"path": 1}, "n": "x"}),
        )
        .unwrap();
        assert!(!d.allow, "{}", d.message());
        assert_eq!(d.errors.len(), 2, "{:?}", d.errors);
        assert!(d.message().contains("read-public-only"), "{}", d.message());
        assert!(!d.message().contains("odd-permit"), "{}", d.message());
    }

    /// A forbid that matched decides and is named, even when another
    /// forbid errs on the same request.
    #[test]
    fn a_matching_forbid_is_named_beside_an_erring_one() {
        let b = bundle(
            &[(
                "p.cedar",
                r#"@id("all") permit (principal, action, resource);
                @id("no-rm") forbid (principal, action, resource == Command::"/usr/bin/rm");
                @id("typed") forbid (principal, action, resource) when { context.n > 1 };"#,
            )],
            None,
        )
        .unwrap();
        let d = ask(
            &b,
            "User::\"a\"",
            "Action::\"exec\"",
            "Command::\"/usr/bin/rm\"",
            json!({"n": "x"}),
        )
        .unwrap();
        assert!(!d.allow);
        assert_eq!(d.policies, vec!["no-rm"], "{}", d.message());
        assert!(
            d.message().starts_with("forbidden by no-rm"),
            "{}",
            d.message()
        );
        assert!(d.erring_forbids.is_empty());
        // Without the matching forbid, the erring one denies.
        let d = ask(
            &b,
            "User::\"a\"",
            "Action::\"exec\"",
            "Command::\"/usr/bin/ls\"",
            json!({"n": "x"}),
        )
        .unwrap();
        assert!(!d.allow);
        assert_eq!(d.policies, vec!["typed"], "{}", d.message());
    }

    #[test]
    fn ids_fall_back_to_file_and_position() {
        let b = bundle(&[("a.cedar", "permit(principal,action,resource);\nforbid(principal,action,resource) when { context.x == 1 };")], None).unwrap();
        assert_eq!(b.policy_ids(), vec!["a.cedar#0", "a.cedar#1"]);
        let d = ask(&b, "U::\"u\"", "Action::\"a\"", "R::\"r\"", json!({"x": 1})).unwrap();
        assert_eq!(d.policies, vec!["a.cedar#1"]);
    }

    #[test]
    fn bad_policy_text_is_refused_with_cedar_diagnostics() {
        let e = bundle(
            &[(
                "bad.cedar",
                "permit(principal, action, resource) when { context.x == };",
            )],
            None,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("policy file bad.cedar: "), "{msg}");
        assert!(msg.contains("unexpected token"), "{msg}");
    }

    const SCHEMA: &str = r#"
        entity User;
        entity Command;
        action "exec" appliesTo { principal: [User], resource: [Command], context: { force: Bool } };
    "#;

    #[test]
    fn schema_validation_refuses_ill_typed_policies() {
        let ok = bundle(
            &[(
                "p.cedar",
                "permit(principal, action == Action::\"exec\", resource) when { context.force };",
            )],
            Some(SCHEMA),
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
        let e = bundle(&[("p.cedar", "permit(principal, action == Action::\"exec\", resource) when { context.force == 3 };")], Some(SCHEMA)).unwrap_err();
        assert!(matches!(e, crate::BundleError::Validation(_)), "{e}");
        let e = bundle(
            &[(
                "p.cedar",
                "permit(principal == Robot::\"r\", action, resource);",
            )],
            Some(SCHEMA),
        )
        .unwrap_err();
        assert!(e.to_string().contains("Robot"), "{e}");
        let e = bundle(
            &[("p.cedar", "permit(principal, action, resource);")],
            Some("entity User; action \"exec\" appliesTo { principal: [Nope], resource: [User] };"),
        )
        .unwrap_err();
        assert!(matches!(e, crate::BundleError::Schema(_)), "{e}");
    }

    #[test]
    fn diagnostics_say_where_and_why() {
        // A syntax error on the second line is given as a line and column.
        let e = bundle(
            &[(
                "p.cedar",
                "permit(principal, action, resource);\npermit(principal, action, resource) when { context.x == };",
            )],
            None,
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(m.contains("p.cedar") && m.contains("line 2, column"), "{m}");
        assert!(!m.contains("offset"), "{m}");
        // Entities that do not deserialize say what is wrong with them, not
        // only that deserialization failed.
        let mut s = BundleSource::default();
        s.policies.insert(
            "p.cedar".into(),
            "permit(principal, action, resource);".into(),
        );
        s.entities = Some(serde_json::json!({"a": 1}));
        let m = Bundle::compile(s).unwrap_err().to_string();
        let top = "error during entity deserialization";
        assert!(m.contains(top), "{m}");
        assert!(m.len() > "entities.json: ".len() + top.len() + 10, "{m}");
        // A validation error names the policy's file and points into it.
        let e = bundle(
            &[(
                "typed.cedar",
                "permit(principal, action, resource);\n@id(\"bad\")\npermit(principal, action == Action::\"exec\", resource) when { context.force == 3 };",
            )],
            Some(SCHEMA),
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("policy bad (typed.cedar)") && m.contains("line 3, column"),
            "{m}"
        );
        assert_eq!(
            crate::bundle::miette_like::line_column("ab\ncd\né", 7),
            "line 3, column 1",
            "an offset inside a character counts from its start"
        );
    }

    #[test]
    fn unknown_types_and_actions_under_a_schema_are_input_errors() {
        let b = bundle(
            &[(
                "p.cedar",
                "permit(principal, action == Action::\"exec\", resource);",
            )],
            Some(SCHEMA),
        )
        .unwrap();
        assert!(
            ask(
                &b,
                "User::\"u\"",
                "Action::\"exec\"",
                "Command::\"/x\"",
                json!({"force": true})
            )
            .unwrap()
            .allow
        );
        for (p, a, r) in [
            ("Robot::\"u\"", "Action::\"exec\"", "Command::\"/x\""),
            ("User::\"u\"", "Action::\"fly\"", "Command::\"/x\""),
            ("User::\"u\"", "Action::\"exec\"", "Plane::\"/x\""),
            ("not a uid", "Action::\"exec\"", "Command::\"/x\""),
        ] {
            assert!(
                ask(&b, p, a, r, json!({"force": true})).is_err(),
                "{p} {a} {r}"
            );
        }
        assert!(ask(
            &b,
            "User::\"u\"",
            "Action::\"exec\"",
            "Command::\"/x\"",
            json!({"force": 1})
        )
        .is_err());
    }

    #[test]
    fn floats_and_nulls_are_made_cedar_safe() {
        let b = bundle(&[("p.cedar", "permit(principal, action, resource) when { context.f == \"1.5\" && !(context has n) };")], None).unwrap();
        assert!(
            ask(
                &b,
                "U::\"u\"",
                "A::\"a\"",
                "R::\"r\"",
                json!({"f": 1.5, "n": null})
            )
            .unwrap()
            .allow
        );
    }

    #[test]
    fn direct_context_and_json_context_decide_alike() {
        // The schema-less path builds the context directly; the JSON path is
        // Cedar's own parser. They must agree on what policies see.
        let text = r#"permit(principal, action, resource) when {
            context.n == 3 && context.f == "2.5" && context.s.contains("b") && context.r.x == "y"
            && context.e == User::"u" && !(context has z) };"#;
        let b = bundle(&[("p.cedar", text)], None).unwrap();
        let ctx = json!({"n": 3, "f": 2.5, "s": ["a", "b"], "r": {"x": "y"}, "e": {"__entity": {"type": "User", "id": "u"}}, "z": null});
        assert!(
            ask(&b, "U::\"u\"", "A::\"a\"", "R::\"r\"", ctx.clone())
                .unwrap()
                .allow
        );
        let via_json = Context::from_json_value(to_cedar_json(&ctx), None).unwrap();
        let req = Request::new(
            uid("p", "U::\"u\"").unwrap(),
            uid("a", "A::\"a\"").unwrap(),
            uid("r", "R::\"r\"").unwrap(),
            via_json,
            None,
        )
        .unwrap();
        assert_eq!(
            Authorizer::new()
                .is_authorized(&req, &b.policies, &b.entities)
                .decision(),
            cedar_policy::Decision::Allow
        );
    }

    #[test]
    fn the_strictest_enforcement_of_the_permitting_policies_is_demanded() {
        let text = r#"
            @id("p-none") @enforcement("none") permit(principal, action, resource);
            @id("p-full") @enforcement("full") permit(principal, action, resource) when { context.x == 1 };
            @id("p-partial") @enforcement("partial") permit(principal, action, resource);
            @id("p-plain") permit(principal, action, resource);
        "#;
        let b = bundle(&[("e.cedar", text)], None).unwrap();
        let ask_x = |x: i64| ask(&b, "U::\"u\"", "A::\"a\"", "R::\"r\"", json!({"x": x})).unwrap();
        assert_eq!(ask_x(1).enforcement, Some(("full".into(), "p-full".into())));
        assert_eq!(
            ask_x(2).enforcement,
            Some(("partial".into(), "p-partial".into()))
        );
        let plain = bundle(&[("p.cedar", "permit(principal, action, resource);")], None).unwrap();
        let d = ask(&plain, "U::\"u\"", "A::\"a\"", "R::\"r\"", json!({})).unwrap();
        assert!(d.allow && d.enforcement.is_none());
    }

    #[test]
    fn a_bundle_knows_the_actions_its_policies_name() {
        let text = r#"
            @id("eq") forbid(principal, action == Action::"tool_result", resource)
                when { context.result.text like "*SECRET*" };
            @id("in") permit(principal, action in [Action::"a", Action::"b"], resource);
            @id("any") permit(principal, action, resource);
        "#;
        let b = bundle(&[("n.cedar", text)], None).unwrap();
        for named in ["Action::\"tool_result\"", "Action::\"a\"", "Action::\"b\""] {
            assert!(b.names_action(named), "{named}");
        }
        // An open scope names nothing; the default bundle names no result rule.
        assert!(!b.names_action("Action::\"c\""));
        let d = Bundle::compile(crate::default_bundle()).unwrap();
        assert!(!d.names_action("Action::\"tool_result\""));
        assert!(d.names_action("Action::\"call_tool\""));

        // A group the action is in counts.
        let mut src = BundleSource::default();
        src.policies.insert(
            "g.cedar".into(),
            r#"forbid(principal, action in Action::"outputs", resource)
               when { context.result.text like "*x*" };"#
                .into(),
        );
        src.entities = Some(json!([
            {"uid": {"type": "Action", "id": "tool_result"}, "attrs": {},
             "parents": [{"type": "Action", "id": "outputs"}]},
            {"uid": {"type": "Action", "id": "outputs"}, "attrs": {}, "parents": []}
        ]));
        let g = Bundle::compile(src).unwrap();
        assert!(g.names_action("Action::\"tool_result\""));
        assert!(!g.names_action("Action::\"call_tool\""));
    }

    #[test]
    fn a_result_rule_outside_its_scope_is_refused() {
        // It would never be asked: enforcement points screen results only
        // when a policy's scope names the action.
        for text in [
            r#"@id("hidden") forbid(principal, action, resource)
               when { action == Action::"tool_result" && context.result.text like "*x*" };"#,
            r#"@id("hidden") forbid(principal, action == Action::"call_tool", resource)
               unless { action in [Action::"tool_result"] };"#,
        ] {
            let e = bundle(&[("h.cedar", text)], None).unwrap_err().to_string();
            assert!(
                e.contains("policy \"hidden\" mentions Action::\"tool_result\" outside its scope"),
                "{e}"
            );
        }
        // Named in the scope, the same condition is fine.
        let ok = r#"forbid(principal, action in [Action::"tool_result"], resource)
                    when { action == Action::"tool_result" };"#;
        assert!(bundle(&[("ok.cedar", ok)], None).is_ok());
    }

    #[test]
    fn hash_is_content_addressed() {
        let a = crate::default_bundle();
        let mut b = crate::default_bundle();
        assert_eq!(a.hash().unwrap(), b.hash().unwrap());
        b.policies.insert(
            "x.cedar".into(),
            "permit(principal,action,resource);".into(),
        );
        assert_ne!(a.hash().unwrap(), b.hash().unwrap());
    }
}
