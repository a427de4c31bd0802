//! The fingerprint of a request: what a key is bound to.
//!
//! SHA-256 over the method, the path and query, the headers the user names and
//! the body. A JSON body (`application/json` or `application/*+json`) is
//! canonicalised first when [`canonical_json`](super::IdempotencyLayer::canonical_json)
//! is on (the default), so whitespace and the order of object members do not
//! change the fingerprint.

use std::fmt;

use http::{HeaderName, header, request::Parts};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The SHA-256 fingerprint of a request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// A fingerprint from its 32 bytes (as a store read them back).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// What goes into a fingerprint besides method, path, query and body.
#[derive(Debug, Clone)]
pub(crate) struct FingerprintSpec {
    pub(crate) headers: Vec<HeaderName>,
    pub(crate) canonical_json: bool,
}

impl Default for FingerprintSpec {
    fn default() -> Self {
        Self {
            headers: Vec::new(),
            canonical_json: true,
        }
    }
}

impl FingerprintSpec {
    /// The fingerprint of a request head and its complete body.
    pub(crate) fn fingerprint(&self, parts: &Parts, body: &[u8]) -> Fingerprint {
        let mut h = Sha256::new();
        h.update(b"steadfast-idempotency-fingerprint-v1\0");
        field(&mut h, parts.method.as_str().as_bytes());
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        field(&mut h, target.as_bytes());
        for name in &self.headers {
            field(&mut h, name.as_str().as_bytes());
            let values = parts.headers.get_all(name);
            h.update((values.iter().count() as u64).to_be_bytes());
            for value in values {
                field(&mut h, value.as_bytes());
            }
        }
        match self
            .canonical_json
            .then(|| canonical_json(&parts.headers, body))
            .flatten()
        {
            Some(canonical) => {
                h.update(b"J");
                field(&mut h, &canonical);
            }
            None => {
                h.update(b"R");
                field(&mut h, body);
            }
        }
        Fingerprint(h.finalize().into())
    }
}

/// A length-prefixed field, so that no two different requests hash the same bytes.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// Whether a Content-Type is JSON: `application/json` or `application/*+json`.
fn is_json(headers: &http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// The canonical form of a JSON body: no insignificant whitespace, object members
/// sorted by key. `None` when the body is not JSON (it is then hashed as is).
fn canonical_json(headers: &http::HeaderMap, body: &[u8]) -> Option<Vec<u8>> {
    if !is_json(headers) {
        return None;
    }
    canonical(body)
}

/// The canonical form of `body` if it is JSON: no insignificant whitespace,
/// object members sorted by key.
pub(crate) fn canonical(body: &[u8]) -> Option<Vec<u8>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let mut out = Vec::with_capacity(body.len());
    write_canonical(&value, &mut out);
    Some(out)
}

/// Writes `value` with object keys sorted explicitly, whatever serde_json's map
/// order is (its `preserve_order` feature may be on elsewhere in the build).
/// Depth is bounded by serde_json's recursion limit on parsing.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<_> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => write_json(scalar, out),
    }
}

fn write_json<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing a string or a scalar into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn fp(spec: &FingerprintSpec, req: Request<&'static str>) -> Fingerprint {
        let (parts, body) = req.into_parts();
        spec.fingerprint(&parts, body.as_bytes())
    }

    fn json(uri: &str, body: &'static str) -> Request<&'static str> {
        Request::post(uri)
            .header("content-type", "application/json; charset=utf-8")
            .body(body)
            .unwrap()
    }

    #[test]
    fn json_whitespace_and_key_order_do_not_matter() {
        let spec = FingerprintSpec::default();
        let a = fp(&spec, json("/o", r#"{"a":1,"b":{"y":[1,2],"x":"s"}}"#));
        let b = fp(
            &spec,
            json("/o", "{ \"b\" : {\"x\":\"s\", \"y\":[1, 2]},\n \"a\":1 }"),
        );
        assert_eq!(a, b);
        let c = fp(&spec, json("/o", r#"{"a":2,"b":{"y":[1,2],"x":"s"}}"#));
        assert_ne!(a, c);
        let d = fp(&spec, json("/o", r#"{"a":1,"b":{"y":[2,1],"x":"s"}}"#));
        assert_ne!(a, d, "array order matters");
    }

    #[test]
    fn raw_comparison_when_turned_off_or_not_json() {
        let spec = FingerprintSpec {
            canonical_json: false,
            ..Default::default()
        };
        assert_ne!(
            fp(&spec, json("/o", r#"{"a":1,"b":2}"#)),
            fp(&spec, json("/o", r#"{"b":2,"a":1}"#))
        );
        let text = |body| {
            Request::post("/o")
                .header("content-type", "text/plain")
                .body(body)
                .unwrap()
        };
        let spec = FingerprintSpec::default();
        assert_ne!(
            fp(&spec, text(r#"{"a":1,"b":2}"#)),
            fp(&spec, text(r#"{"b":2,"a":1}"#))
        );
        // Invalid JSON is hashed as is rather than rejected.
        assert_ne!(fp(&spec, json("/o", "{")), fp(&spec, json("/o", "{ ")));
    }

    #[test]
    fn method_target_and_named_headers_count() {
        let spec = FingerprintSpec {
            headers: vec![HeaderName::from_static("x-account")],
            canonical_json: true,
        };
        let base = fp(&spec, json("/o?x=1", "{}"));
        assert_ne!(base, fp(&spec, json("/o?x=2", "{}")));
        assert_ne!(base, fp(&spec, json("/p?x=1", "{}")));
        let mut patch = json("/o?x=1", "{}");
        *patch.method_mut() = http::Method::PATCH;
        assert_ne!(base, fp(&spec, patch));
        let mut named = json("/o?x=1", "{}");
        named
            .headers_mut()
            .insert("x-account", "7".parse().unwrap());
        assert_ne!(base, fp(&spec, named));
        let mut other = json("/o?x=1", "{}");
        other.headers_mut().insert("x-other", "7".parse().unwrap());
        assert_eq!(base, fp(&spec, other), "unnamed headers do not count");
    }

    /// Found by fuzzing: serde_json's default float parsing read some numbers
    /// to a neighbour, so the canonical form of a canonical form could differ.
    #[test]
    fn canonical_form_of_extreme_floats_is_stable() {
        for body in [
            "[7.777777777777778e+40]",
            "[2.5883117654044277e+299]",
            "1e48",
        ] {
            let once = canonical(body.as_bytes()).unwrap();
            assert_eq!(canonical(&once).unwrap(), once, "{body}");
            let read: Value = serde_json::from_str(body).unwrap();
            assert_eq!(serde_json::from_slice::<Value>(&once).unwrap(), read);
        }
    }

    #[test]
    fn json_media_types() {
        let mut h = http::HeaderMap::new();
        for (ct, expect) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("application/problem+json", true),
            ("text/json", false),
            ("application/jsonx", false),
            ("application/+json", false),
        ] {
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            assert_eq!(is_json(&h), expect, "{ct}");
        }
    }
}

/// Canonical JSON is equal for equal values: however a value is written
/// (member order, whitespace), its canonical form is one, and different
/// values have different canonical forms.
#[cfg(test)]
mod properties {
    use super::canonical;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng, rngs::SmallRng, seq::SliceRandom};
    use serde_json::{Map, Value};

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-c\u{e9}\"\\\\\n]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map("[a-d]{0,2}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    /// `value` written with its object members shuffled and random whitespace.
    fn write_shuffled(value: &Value, rng: &mut SmallRng, out: &mut String) {
        let space = |rng: &mut SmallRng, out: &mut String| {
            for _ in 0..rng.random_range(0..3) {
                out.push([' ', '\n', '\t', '\r'][rng.random_range(0..4)]);
            }
        };
        space(rng, out);
        match value {
            Value::Object(map) => {
                let mut members: Vec<_> = map.iter().collect();
                members.shuffle(rng);
                out.push('{');
                for (i, (k, v)) in members.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    space(rng, out);
                    out.push_str(&serde_json::to_string(k).unwrap());
                    space(rng, out);
                    out.push(':');
                    write_shuffled(v, rng, out);
                }
                space(rng, out);
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_shuffled(v, rng, out);
                }
                space(rng, out);
                out.push(']');
            }
            scalar => out.push_str(&serde_json::to_string(scalar).unwrap()),
        }
        space(rng, out);
    }

    proptest! {
        #[test]
        fn equal_values_have_one_canonical_form(value in value(), seeds in any::<(u64, u64)>()) {
            let mut one = String::new();
            write_shuffled(&value, &mut SmallRng::seed_from_u64(seeds.0), &mut one);
            let mut two = String::new();
            write_shuffled(&value, &mut SmallRng::seed_from_u64(seeds.1), &mut two);
            let a = canonical(one.as_bytes()).unwrap();
            let b = canonical(two.as_bytes()).unwrap();
            prop_assert_eq!(&a, &b, "{} / {}", one, two);
            // The canonical form holds the value as read (serde_json reads
            // some extreme floats to a neighbour; both writings read alike).
            let read: Value = serde_json::from_str(&one).unwrap();
            let back: Value = serde_json::from_slice(&a).unwrap();
            prop_assert_eq!(back, read);
        }

        #[test]
        fn different_values_have_different_canonical_forms(a in value(), b in value()) {
            let ca = canonical(a.to_string().as_bytes()).unwrap();
            let cb = canonical(b.to_string().as_bytes()).unwrap();
            prop_assert_eq!(a == b, ca == cb);
        }
    }
}
