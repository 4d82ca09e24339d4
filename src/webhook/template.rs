//! Custom payload templates: a TOML table whose values are static primitives, nested tables, arrays
//! or references to telemetry fields (`"{{sensor.id}}"`). A string that is exactly one reference
//! takes the field's JSON type; a reference inside other text is interpolated as text. References
//! are checked when the configuration is loaded, never at send time.

use serde_json::{Map, Value};

/// A compiled payload template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Static(Value),
    Ref(Vec<String>),
    Text(Vec<Segment>),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Lit(String),
    Ref(Vec<String>),
}

/// A template that cannot be compiled: the key (dotted path inside `payload`) and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("payload.{key}: {message}")]
pub struct TemplateError {
    /// Dotted path of the offending key inside the payload table.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// The fields a reference may name; `*` matches any one name (value keys, tag names).
const KNOWN: &[&str] = &[
    "event",
    "version",
    "timestamp",
    "delivery",
    "delivery.id",
    "telemetry",
    "id",
    "seq",
    "received_at",
    "gateway",
    "gateway.id",
    "gateway.base_id",
    "sensor",
    "sensor.id",
    "sensor.name",
    "sensor.eep",
    "sensor.tags",
    "sensor.tags.*",
    "values",
    "values.*",
    "values.*.value",
    "values.*.unit",
    "values.*.shortcut",
    "values.*.raw",
    "values.*.status",
    "signal",
    "signal.dbm",
    "signal.repeater_count",
    "signal.sub_telegrams",
    "raw",
    "raw.rorg",
    "raw.payload",
    "raw.status",
    "raw.destination",
    "raw.security_level",
];

fn known(path: &[String]) -> bool {
    KNOWN.iter().any(|k| {
        let parts: Vec<&str> = k.split('.').collect();
        parts.len() == path.len()
            && parts
                .iter()
                .zip(path)
                .all(|(p, s)| *p == "*" || *p == s.as_str())
    })
}

impl Template {
    /// Compiles a payload table; an unknown reference or a malformed `{{…}}` names its key.
    pub fn compile(table: &toml::Table) -> Result<Self, TemplateError> {
        Ok(Self {
            root: compile_table(table, "")?,
        })
    }

    /// Renders the template for one record. `context` is the telemetry's JSON object extended
    /// with `event`, `version`, `timestamp`, `delivery.id` and `telemetry`.
    pub fn render(&self, context: &Value) -> Value {
        render(&self.root, context)
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn compile_table(table: &toml::Table, prefix: &str) -> Result<Node, TemplateError> {
    let mut out = Vec::with_capacity(table.len());
    for (k, v) in table {
        let key = join(prefix, k);
        out.push((k.clone(), compile_value(v, &key)?));
    }
    Ok(Node::Object(out))
}

fn compile_value(v: &toml::Value, key: &str) -> Result<Node, TemplateError> {
    Ok(match v {
        toml::Value::String(s) => compile_string(s, key)?,
        toml::Value::Integer(i) => Node::Static(Value::from(*i)),
        toml::Value::Float(f) => Node::Static(
            serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .ok_or_else(|| TemplateError {
                    key: key.to_owned(),
                    message: format!("{f} cannot be written as JSON"),
                })?,
        ),
        toml::Value::Boolean(b) => Node::Static(Value::Bool(*b)),
        toml::Value::Datetime(d) => Node::Static(Value::String(d.to_string())),
        toml::Value::Array(a) => Node::Array(
            a.iter()
                .enumerate()
                .map(|(i, v)| compile_value(v, &format!("{key}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(t) => compile_table(t, key)?,
    })
}

fn compile_string(s: &str, key: &str) -> Result<Node, TemplateError> {
    let mut segments = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            segments.push(Segment::Lit(rest[..start].to_owned()));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| TemplateError {
            key: key.to_owned(),
            message: format!("unclosed `{{{{` in {s:?}"),
        })?;
        let name = after[..end].trim();
        let path: Vec<String> = name.split('.').map(str::to_owned).collect();
        if name.is_empty() || path.iter().any(|p| p.is_empty()) || !known(&path) {
            return Err(TemplateError {
                key: key.to_owned(),
                message: format!("unknown reference `{{{{{name}}}}}`"),
            });
        }
        segments.push(Segment::Ref(path));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Lit(rest.to_owned()));
    }
    Ok(match segments.as_slice() {
        [] => Node::Static(Value::String(String::new())),
        [Segment::Ref(p)] => Node::Ref(p.clone()),
        [Segment::Lit(l)] => Node::Static(Value::String(l.clone())),
        _ => Node::Text(segments),
    })
}

fn lookup<'a>(ctx: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = ctx;
    for p in path {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

fn render(node: &Node, ctx: &Value) -> Value {
    match node {
        Node::Static(v) => v.clone(),
        Node::Ref(p) => lookup(ctx, p).cloned().unwrap_or(Value::Null),
        Node::Text(segs) => {
            let mut s = String::new();
            for seg in segs {
                match seg {
                    Segment::Lit(l) => s.push_str(l),
                    Segment::Ref(p) => match lookup(ctx, p) {
                        None | Some(Value::Null) => {}
                        Some(Value::String(t)) => s.push_str(t),
                        Some(other) => s.push_str(&other.to_string()),
                    },
                }
            }
            Value::String(s)
        }
        Node::Object(fields) => {
            let mut m = Map::new();
            for (k, n) in fields {
                m.insert(k.clone(), render(n, ctx));
            }
            Value::Object(m)
        }
        Node::Array(items) => Value::Array(items.iter().map(|n| render(n, ctx)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_reference_names_key() {
        let t: toml::Table = toml::from_str("a = { b = \"{{sensor.idd}}\" }").unwrap();
        let e = Template::compile(&t).unwrap_err();
        assert_eq!(e.key, "a.b");
        assert!(e.message.contains("sensor.idd"), "{}", e.message);
    }

    #[test]
    fn interpolation_and_types() {
        let t: toml::Table =
            toml::from_str("n = \"{{signal.dbm}}\"\ns = \"dBm={{signal.dbm}}!\"\nk = 3").unwrap();
        let t = Template::compile(&t).unwrap();
        let ctx = serde_json::json!({"signal": {"dbm": -60}});
        assert_eq!(
            t.render(&ctx),
            serde_json::json!({"n": -60, "s": "dBm=-60!", "k": 3})
        );
    }
}
