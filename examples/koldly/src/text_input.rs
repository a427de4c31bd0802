//! Text input, checked once at the edge for every route: no string a client
//! sends may carry characters that no field needs.
//!
//! [`RejectHostileTextLayer`] runs inside the body limit, before the router:
//! it reads a JSON body (already bounded by the body limit) and the query
//! string, and answers `400` problem+json naming the first offending field when
//! a string — or an object key — holds:
//!
//! - a control character: C0 (U+0000–U+001F), DEL or C1 (U+0080–U+009F);
//!   only the free-text fields in [`MULTILINE_FIELDS`] may hold a newline,
//!   carriage return or tab. (A NUL reached PostgreSQL as a 500: `text`
//!   cannot store it.)
//! - a Unicode bidirectional control (U+202A–U+202E, U+2066–U+2069, U+200E,
//!   U+200F, U+061C) in an identifier ([`is_identifier`]: emails, tokens,
//!   ids, codes), where it would make one address look like another.
//!
//! Handlers behind it never see such text, whatever route is added later.
//! Bodies that are not JSON pass untouched (the extractor answers them), and so
//! do malformed JSON bodies, for axum's `Json` to describe.
//!
//! Cost: a JSON request body is collected, parsed twice (here into a
//! `serde_json::Value`, then by the handler's extractor; the body limit, 64 KiB
//! by default, bounds both) and its future boxed. Any other request without a
//! query string pays one header lookup and passes straight to the router.
//!
//! ```
//! use axum::{Router, routing::post};
//! use koldly::text_input::RejectHostileTextLayer;
//! use tower::Layer;
//!
//! let router: Router = Router::new().route("/echo", post(|body: String| async { body }));
//! let service = RejectHostileTextLayer.layer(router);
//! # let _ = service;
//! ```

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use steadfast::{BoxError, Problem};
use tower::{Layer, Service};

use crate::error::types;

/// Keys of free-text fields where a newline, carriage return or tab is text.
pub const MULTILINE_FIELDS: &[&str] = &[
    "body",
    "body_text",
    "body_template",
    "description",
    "notes",
    "research_notes",
    "signature",
    "product_description",
    "value_proposition",
    "pain_points",
    "message",
    "feedback",
    "reason",
];

/// Whether the field named `key` holds an identifier (no bidi controls).
pub fn is_identifier(key: &str) -> bool {
    key == "email"
        || key.ends_with("_email")
        || key == "token"
        || key.ends_with("_token")
        || key == "id"
        || key.ends_with("_id")
        || key == "code"
        || key == "state"
}

/// Why a string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Where: `email`, `prospects[2].email`, or `query parameter code`.
    pub field: String,
    /// The offending character.
    pub character: char,
    /// `control character` or `bidirectional control`.
    pub kind: &'static str,
}

impl Refusal {
    fn problem(&self) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST)
            .with_type(types::VALIDATION)
            .with_title("Invalid characters in the request")
            .with_detail(format!(
                "{} contains U+{:04X}, a {} this field does not allow",
                self.field, self.character as u32, self.kind
            ))
            .with_extension("field", self.field.clone())
    }
}

/// The first character of `text` a field named `key` must not hold.
pub fn check_str(key: &str, text: &str) -> Option<(char, &'static str)> {
    let multiline = MULTILINE_FIELDS.contains(&key);
    let identifier = is_identifier(key);
    text.chars().find_map(|c| {
        let control = c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'));
        if control {
            return Some((c, "control character"));
        }
        let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}');
        (identifier && bidi).then_some((c, "bidirectional control"))
    })
}

/// The first refused string in a JSON document; `path` names where `value` is.
pub fn check_json(path: &str, key: &str, value: &Value) -> Option<Refusal> {
    let refusal = |field: &str, (character, kind): (char, &'static str)| Refusal {
        field: field.to_owned(),
        character,
        kind,
    };
    match value {
        Value::String(s) => check_str(key, s).map(|c| refusal(path, c)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| check_json(&format!("{path}[{i}]"), key, item)),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let child = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            check_str("key", k)
                .map(|c| refusal(&child, c))
                .or_else(|| check_json(&child, k, v))
        }),
        _ => None,
    }
}

/// The first refused query parameter.
pub fn check_query(query: &str) -> Option<Refusal> {
    form_urlencoded::parse(query.as_bytes()).find_map(|(k, v)| {
        let field = format!("query parameter {k}");
        check_str("key", &k)
            .or_else(|| check_str(&k, &v))
            .map(|(character, kind)| Refusal {
                field,
                character,
                kind,
            })
    })
}

fn is_json<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|essence| {
            essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"))
        })
}

/// Applies [`RejectHostileText`] (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct RejectHostileTextLayer;

impl<S> Layer<S> for RejectHostileTextLayer {
    type Service = RejectHostileText<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RejectHostileText { inner }
    }
}

/// Refuses a request whose query or JSON body holds text no field allows.
///
/// The inner service takes the request as it came (`Request<B>`) or, after a
/// JSON body was read, with that body in memory (`Request<Body>`); axum's
/// `Router` takes both with one future type.
#[derive(Debug, Clone)]
pub struct RejectHostileText<S> {
    inner: S,
}

impl<S> RejectHostileText<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, F> Service<Request<B>> for RejectHostileText<S>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    S: Service<Request<B>, Response = Response, Error = Infallible, Future = F>
        + Service<Request<Body>, Response = Response, Error = Infallible, Future = F>
        + Clone
        + Send
        + 'static,
    F: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture<F>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        <S as Service<Request<B>>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(refusal) = req.uri().query().and_then(check_query) {
            return ResponseFuture::refused(refusal);
        }
        if !is_json(&req) {
            return ResponseFuture::Inner {
                future: self.inner.call(req),
            };
        }
        // The service that was made ready takes the request; its clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::Checking {
            future: Box::pin(async move {
                let (parts, body) = req.into_parts();
                let bytes = match body.collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(err) => return Ok(unreadable(err.into())),
                };
                let refusal = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|value| check_json("", "", &value));
                if let Some(refusal) = refusal {
                    return Ok(refusal.problem().into_response());
                }
                let req = Request::from_parts(parts, Body::from(bytes));
                <S as Service<Request<Body>>>::call(&mut inner, req).await
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RejectHostileText`]: the inner service's, a JSON body
    /// being checked (boxed), or a refusal.
    #[project = Projected]
    pub enum ResponseFuture<F> {
        /// Passed straight on.
        Inner { #[pin] future: F },
        /// A JSON body being read and checked.
        Checking { future: Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>> },
        /// Refused before the inner service.
        Refused { response: Option<Response> },
    }
}

impl<F> ResponseFuture<F> {
    fn refused(refusal: Refusal) -> Self {
        Self::Refused {
            response: Some(refusal.problem().into_response()),
        }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projected::Inner { future } => future.poll(cx),
            Projected::Checking { future } => future.as_mut().poll(cx),
            Projected::Refused { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}

/// A body that could not be read: over the body limit (413), or cut off.
fn unreadable(err: BoxError) -> Response {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
                .with_detail("The request body is larger than this server accepts.")
                .into_response();
        }
        source = e.source();
    }
    Problem::new(StatusCode::BAD_REQUEST)
        .with_detail("The request body could not be read.")
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn control_characters_are_refused_with_their_field() {
        let refusal = check_json("", "", &json!({ "email": "a@b.co", "name": "x\u{0}y" })).unwrap();
        assert_eq!(refusal.field, "name");
        assert_eq!(refusal.character, '\0');
        let nested = json!({ "prospects": [{ "email": "ok@x.io" }, { "title": "a\u{1b}[31m" }] });
        assert_eq!(
            check_json("", "", &nested).unwrap().field,
            "prospects[1].title"
        );
        assert_eq!(
            check_json("", "", &json!({ "a\u{0}": 1 })).unwrap().field,
            "a\u{0}"
        );
        assert!(check_json("", "", &json!({ "name": "Zoë 李 😀", "n": 3 })).is_none());
        assert!(check_json("", "", &json!({ "name": "del\u{7f}" })).is_some());
        assert!(check_json("", "", &json!({ "name": "c1\u{85}" })).is_some());
    }

    #[test]
    fn newlines_only_in_free_text() {
        assert!(check_json("", "", &json!({ "body": "Hi,\r\n\tthere" })).is_none());
        assert!(check_json("", "", &json!({ "body": "nul\u{0}" })).is_some());
        assert!(check_json("", "", &json!({ "name": "two\nlines" })).is_some());
    }

    #[test]
    fn bidi_controls_only_refused_in_identifiers() {
        let spoof = "ann\u{202e}moc.liame@x.io";
        assert_eq!(
            check_json("", "", &json!({ "email": spoof })).unwrap().kind,
            "bidirectional control"
        );
        assert!(check_json("", "", &json!({ "from_email": spoof })).is_some());
        assert!(check_json("", "", &json!({ "name": "\u{200f}שלום" })).is_none());
    }

    #[test]
    fn query_parameters() {
        assert_eq!(
            check_query("code=abc%00def&state=x").unwrap().field,
            "query parameter code"
        );
        assert!(check_query("code=abc&state=x%2Fy").is_none());
    }
}
