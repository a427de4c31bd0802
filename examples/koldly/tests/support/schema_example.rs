//! A small valid instance of a schema of the OpenAPI document: what a test
//! sends when it needs a request the route accepts as far as its body goes,
//! without a hand-written body per route (the cross-tenant matrix).
//!
//! [`Members::Required`] fills in only the required members, each with the
//! least value its schema allows (an `example`, `const` or `default` when the
//! schema gives one), so the instance stays inside bounds the route may add by
//! hand; [`Members::All`] fills in every documented member (for a PATCH that
//! must change something).

use serde_json::{Map, Value, json};

/// Which members of an object an instance has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Members {
    /// The required ones.
    Required,
    /// Every documented one.
    All,
}

/// A small instance of `schema`, its `$ref`s looked up in `doc`.
pub fn example(doc: &Value, schema: &Value, members: Members) -> Value {
    instance(doc, schema, members, 0)
}

/// Deeper than this, a schema is recursive: its optional parts are left out
/// and a required recursive member gets `null`.
const MAX_DEPTH: usize = 12;

fn instance(doc: &Value, schema: &Value, members: Members, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    let schema = resolve(doc, schema);
    for given in ["const", "example", "default"] {
        if let Some(value) = schema.get(given) {
            return value.clone();
        }
    }
    if let Some(first) = schema["examples"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(values) = schema["enum"].as_array() {
        return values
            .iter()
            .find(|v| !v.is_null())
            .or(values.first())
            .cloned()
            .unwrap_or(Value::Null);
    }
    if let Some(parts) = schema["allOf"].as_array() {
        let mut merged = Map::new();
        for part in parts {
            match instance(doc, part, members, depth + 1) {
                Value::Object(members) => merged.extend(members),
                other if parts.len() == 1 => return other,
                _ => {}
            }
        }
        return Value::Object(merged);
    }
    for alternatives in ["oneOf", "anyOf"] {
        if let Some(options) = schema[alternatives].as_array() {
            let option = options
                .iter()
                .find(|o| resolve(doc, o)["type"] != "null")
                .or(options.first());
            return option.map_or(Value::Null, |o| instance(doc, o, members, depth + 1));
        }
    }
    match type_of(schema) {
        "object" => object(doc, schema, members, depth),
        "array" => {
            let n = schema["minItems"].as_u64().unwrap_or(0).max(1) as usize;
            let item = instance(doc, &schema["items"], members, depth + 1);
            Value::Array(vec![item; n])
        }
        "string" => string(schema),
        "integer" => json!(least_number(schema) as i64),
        "number" => json!(least_number(schema)),
        "boolean" => Value::Bool(false),
        "null" => Value::Null,
        _ => Value::Null,
    }
}

/// The schema's type: the first that is not `null` of a list; `object` when
/// it has members but no type.
fn type_of(schema: &Value) -> &str {
    match &schema["type"] {
        Value::String(t) => t,
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "",
    }
}

fn object(doc: &Value, schema: &Value, members: Members, depth: usize) -> Value {
    let names: Vec<&str> = match members {
        Members::Required => schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect(),
        Members::All => schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, _)| name.as_str())
            .collect(),
    };
    let mut object = Map::new();
    for name in names {
        let member = &schema["properties"][name];
        object.insert(name.to_owned(), instance(doc, member, members, depth + 1));
    }
    Value::Object(object)
}

fn string(schema: &Value) -> Value {
    let min = schema["minLength"].as_u64().unwrap_or(1) as usize;
    let text = match schema["format"].as_str() {
        Some("email") => "lead@example.com".to_owned(),
        Some("uuid") => uuid::Uuid::now_v7().to_string(),
        Some("date-time") => "2030-01-01T00:00:00Z".to_owned(),
        Some("date") => "2030-01-01".to_owned(),
        Some("uri" | "url") => "https://example.com/".to_owned(),
        _ => "x".repeat(min.max(1)),
    };
    Value::String(text)
}

/// The least number the schema allows, and 1 when it allows that.
fn least_number(schema: &Value) -> f64 {
    let mut least: f64 = 1.0;
    if let Some(min) = schema["minimum"].as_f64() {
        least = least.max(min);
    }
    if let Some(min) = schema["exclusiveMinimum"].as_f64() {
        least = least.max(min + 1.0);
    }
    if let Some(max) = schema["maximum"].as_f64() {
        least = least.min(max);
    }
    least
}

/// `schema` with its `$ref` (to `#/...` of `doc`) followed, repeatedly.
pub fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let Some(pointer) = reference.strip_prefix('#') else {
            break;
        };
        match doc.pointer(pointer) {
            Some(target) => schema = target,
            None => break,
        }
    }
    schema
}
