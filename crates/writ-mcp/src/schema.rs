//! A Cedar schema fragment from an MCP server's tool list, so that
//! argument-aware policies validate.
//!
//! It follows the conventions of the Cedar project's MCP schema generator
//! (`cedar-policy-mcp-schema-generator`, cedar-policy/cedar-for-agents):
//! each tool's `inputSchema` becomes a record type named `<tool>Input`
//! (JSON Schema `string` → `String`, `integer` → `Long`, `boolean` → `Bool`,
//! `array` → `Set<...>`, `object` with `properties` → a record, properties
//! not in `required` optional), and the arguments are a context attribute of
//! the tool's action. Where writ differs: every governed call is the one
//! action `call_tool` with the tool as the resource `Tool::"SERVER/TOOL"`,
//! so the context's `arguments` is the union of all tools' inputs, every
//! attribute optional (policies test `context.arguments has path` first, as
//! Cedar's strict validation demands). The fragment also declares the
//! context attributes writ itself adds (`request`, `environment`, `scope`,
//! `audience`, `lineage`) and the session action `mcp_session`. A call's
//! `description` is the tool's, as the server last listed it (absent when
//! it gave none), so that a policy can refuse tools whose descriptions
//! carry instructions.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// Record attributes: name → (type, required).
type Attrs = BTreeMap<String, (Ty, bool)>;

/// A Cedar type, as the fragment writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    String,
    Long,
    Bool,
    Set(Box<Ty>),
    /// attribute name → (type, required)
    Record(BTreeMap<String, (Ty, bool)>),
}

impl Ty {
    fn render(&self, out: &mut String, indent: usize) {
        match self {
            Ty::String => out.push_str("String"),
            Ty::Long => out.push_str("Long"),
            Ty::Bool => out.push_str("Bool"),
            Ty::Set(t) => {
                out.push_str("Set<");
                t.render(out, indent);
                out.push('>');
            }
            Ty::Record(attrs) => render_record(attrs, out, indent),
        }
    }
}

fn render_record(attrs: &BTreeMap<String, (Ty, bool)>, out: &mut String, indent: usize) {
    if attrs.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push_str("{\n");
    for (name, (t, required)) in attrs {
        let _ = write!(
            out,
            "{:w$}{}{}: ",
            "",
            serde_json::to_string(name).unwrap_or_default(),
            if *required { "" } else { "?" },
            w = indent + 2
        );
        t.render(out, indent + 2);
        out.push_str(",\n");
    }
    let _ = write!(out, "{:w$}}}", "", w = indent);
}

/// The Cedar type of a JSON Schema, if it has one (`number` is taken as
/// `Long`: writ hands floats to Cedar as strings, so a fractional argument
/// does not fit and the call is denied, failing closed).
pub fn ty_of(schema: &Value) -> Option<Ty> {
    let t = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        // ["string", "null"] and the like: the non-null type.
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null")?,
        _ => {
            return schema
                .get("properties")
                .is_some()
                .then(|| object_of(schema))
                .flatten()
        }
    };
    match t {
        "string" => Some(Ty::String),
        "integer" | "number" => Some(Ty::Long),
        "boolean" => Some(Ty::Bool),
        "array" => Some(Ty::Set(Box::new(ty_of(schema.get("items")?)?))),
        "object" => object_of(schema),
        _ => None,
    }
}

fn object_of(schema: &Value) -> Option<Ty> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut attrs = BTreeMap::new();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            attrs.insert(k.clone(), (ty_of(v)?, required.contains(&k.as_str())));
        }
    }
    Some(Ty::Record(attrs))
}

/// What the generator made of a tool list.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// The schema text (Cedar human-readable schema format).
    pub text: String,
    /// Tools and arguments that could not be typed, or whose argument names
    /// clash with another tool's type (first one wins), one line each.
    pub warnings: Vec<String>,
}

/// A fragment for server `server` from `tools` (the `tools` array of a
/// `tools/list` result).
pub fn fragment(server: &str, tools: &[Value]) -> Fragment {
    let mut warnings = Vec::new();
    let mut per_tool: Vec<(String, Attrs)> = Vec::new();
    let mut union: BTreeMap<String, (Ty, bool)> = BTreeMap::new();
    let mut declared = std::collections::BTreeSet::new();
    for t in tools {
        let Some(name) = t.get("name").and_then(Value::as_str) else {
            warnings.push("a tool without a name was skipped".into());
            continue;
        };
        // Two tools (a repeated name, or names differing only in characters
        // a Cedar identifier cannot hold) would declare one type twice.
        if !declared.insert(type_name(name)) {
            warnings.push(format!(
                "tool {}: its type {}Input is declared by an earlier tool; skipped",
                serde_json::to_string(name).unwrap_or_default(),
                type_name(name)
            ));
            continue;
        }
        let attrs = match t.get("inputSchema").map(ty_of) {
            Some(Some(Ty::Record(a))) => a,
            None => BTreeMap::new(),
            Some(_) => {
                warnings.push(format!(
                    "tool {name}: its inputSchema has no Cedar type; its arguments are not declared"
                ));
                BTreeMap::new()
            }
        };
        for (k, (ty, _)) in &attrs {
            match union.get(k) {
                Some((existing, _)) if existing != ty => warnings.push(format!(
                    "tool {name}: argument {k} has another type than in an earlier tool; the earlier one is declared (a call of {name} with it is denied)"
                )),
                Some(_) => {}
                None => {
                    union.insert(k.clone(), (ty.clone(), false));
                }
            }
        }
        per_tool.push((name.to_owned(), attrs));
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "// Cedar schema fragment for the tools of MCP server {}, written by\n// `writ policy mcp-schema`. Merge it into the bundle's schema.cedarschema.\n",
        serde_json::to_string(server).unwrap_or_default()
    );
    text.push_str(
        "entity User, Agent;\nentity Tool;\nentity McpServer;\nentity Resource, Prompt, McpMethod;\n\n",
    );
    for (name, attrs) in &per_tool {
        let _ = write!(
            text,
            "// inputSchema of {}\ntype {}Input = ",
            serde_json::to_string(name).unwrap_or_default(),
            type_name(name)
        );
        render_record(attrs, &mut text, 0);
        text.push_str(";\n");
    }
    text.push_str(
        "\n// Every tool's arguments, all optional: test with `has` first.\ntype ToolArguments = ",
    );
    render_record(&union, &mut text, 0);
    text.push_str(";\n\n");
    text.push_str(WRIT_CONTEXT_TYPES);
    for action in &ACTIONS {
        action.declare(&mut text);
    }
    Fragment { text, warnings }
}

/// An action the fragment declares, for every principal type.
struct Action {
    /// Its names, quoted and joined by `, `.
    names: &'static str,
    /// Its resource types, joined by `, `.
    resources: &'static str,
    /// Its own context attributes (`request` among them), each `"name": Type`.
    own: &'static [&'static str],
    /// The type of its `environment`.
    environment: &'static str,
}

impl Action {
    /// The declaration, after a blank line: its own context attributes,
    /// then `environment` and the attributes writ adds to every context.
    fn declare(&self, text: &mut String) {
        let _ = write!(
            text,
            "\naction {} appliesTo {{\n  principal: [User, Agent],\n  resource: [{}],\n  context: {{\n",
            self.names, self.resources
        );
        for attr in self.own {
            let _ = writeln!(text, "    {attr},");
        }
        let _ = write!(
            text,
            "    \"environment\": {},\n{WRIT_CONTEXT}  }}\n}};\n",
            self.environment
        );
    }
}

/// What writ adds to every context besides `request` and `environment`.
const WRIT_CONTEXT: &str =
    "    \"scope\": WritScope,\n    \"audience\": String,\n    \"lineage\": WritLineage,\n";

/// The actions of the fragment: a tool call, the session, and the other
/// requests `writ mcp-proxy` decides (`methods`), whose shapes do not
/// depend on the server. `get_prompt` is not declared: a prompt's
/// arguments are the server's to name, so under a bundle with this schema
/// a prompt request does not validate and is denied.
const ACTIONS: [Action; 6] = [
    Action {
        names: "\"call_tool\"",
        resources: "Tool",
        own: &[
            "\"server\": String",
            "\"tool\": String",
            "\"description\"?: String",
            "\"arguments\": ToolArguments",
            "\"request\": { \"name\": String, \"arguments\": ToolArguments }",
        ],
        environment: "{}",
    },
    Action {
        names: "\"mcp_session\"",
        resources: "McpServer",
        own: &["\"request\": { \"server\": String, \"argv\": Set<String> }"],
        environment: "{ \"enforcement\"?: String, \"allow_partial_enforcement\"?: Bool }",
    },
    Action {
        names: "\"read_resource\", \"subscribe_resource\"",
        resources: "Resource",
        own: &[
            "\"server\": String",
            "\"uri\": String",
            "\"request\": { \"method\": String, \"uri\": String }",
        ],
        environment: "{}",
    },
    Action {
        names: "\"complete\"",
        resources: "Prompt, Resource",
        own: &[
            "\"server\": String",
            "\"argument\"?: String",
            "\"request\": { \"method\": String, \"params\": String }",
        ],
        environment: "{}",
    },
    Action {
        names: "\"set_log_level\"",
        resources: "McpServer",
        own: &[
            "\"server\": String",
            "\"level\": String",
            "\"request\": { \"method\": String, \"level\": String }",
        ],
        environment: "{}",
    },
    Action {
        names: "\"mcp_request\", \"server_request\"",
        resources: "McpMethod",
        own: &[
            "\"server\": String",
            "\"method\": String",
            "\"request\": { \"method\": String, \"params\": String }",
        ],
        environment: "{}",
    },
];

const WRIT_CONTEXT_TYPES: &str = "// What writ adds to every context.
type WritScope = { \"read\": Set<String>, \"write\": Set<String>, \"net\": Bool };
type WritLineage = { \"depth\": Long, \"root_principal\": String, \"parent_action\": String };
";

/// A Cedar identifier from a tool name (other characters become `_`).
fn type_name(tool: &str) -> String {
    let mut s: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tools_whose_types_would_clash_are_skipped_and_names_cannot_break_out() {
        // Found by fuzz/fuzz_targets/mcp_frames.rs: a repeated tool name
        // declared its type twice and Cedar refused the whole fragment.
        let tools = vec![
            json!({"name": "a-b"}),
            json!({"name": "a_b"}),
            json!({"name": "a-b"}),
            json!({"name": "x\ntype Evil = Long;"}),
        ];
        let f = fragment("s", &tools);
        assert_eq!(f.warnings.len(), 2, "{:?}", f.warnings);
        assert!(!f.text.contains("\ntype Evil"), "{}", f.text);
        let (_, warnings) = cedar_policy::SchemaFragment::from_cedarschema_str(&f.text).unwrap();
        assert_eq!(warnings.count(), 0);
    }

    #[test]
    fn json_schema_types_map_to_cedar_types() {
        let s = json!({"type": "object", "properties": {
            "path": {"type": "string"}, "head": {"type": "number"}, "dry": {"type": "boolean"},
            "paths": {"type": "array", "items": {"type": "string"}},
            "edits": {"type": "array", "items": {"type": "object", "properties": {"oldText": {"type": "string"}}, "required": ["oldText"]}}
        }, "required": ["path"]});
        let Some(Ty::Record(a)) = ty_of(&s) else {
            panic!()
        };
        assert_eq!(a["path"], (Ty::String, true));
        assert_eq!(a["head"], (Ty::Long, false));
        assert_eq!(a["dry"], (Ty::Bool, false));
        assert_eq!(a["paths"].0, Ty::Set(Box::new(Ty::String)));
        let mut inner = BTreeMap::new();
        inner.insert("oldText".to_owned(), (Ty::String, true));
        assert_eq!(a["edits"].0, Ty::Set(Box::new(Ty::Record(inner))));
        assert_eq!(ty_of(&json!({"type": "null"})), None);
    }

    #[test]
    fn the_fragment_has_one_input_type_per_tool_and_the_union() {
        let tools = vec![
            json!({"name": "read_text_file", "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}),
            json!({"name": "write-file", "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}}),
            json!({"name": "odd", "inputSchema": {"type": "object", "properties": {"path": {"type": "integer"}}}}),
        ];
        let f = fragment("fs", &tools);
        assert!(
            f.text
                .contains("type read_text_fileInput = {\n  \"path\": String,\n};"),
            "{}",
            f.text
        );
        assert!(f.text.contains("type write_fileInput"), "{}", f.text);
        assert!(
            f.text.contains(
                "type ToolArguments = {\n  \"content\"?: String,\n  \"path\"?: String,\n};"
            ),
            "{}",
            f.text
        );
        assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
        assert!(f.warnings[0].contains("odd"));
    }
}
