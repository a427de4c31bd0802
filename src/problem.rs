//! RFC 9457 problem details: the one error format every steadfast layer answers with.
//!
//! A [`Problem`] has the five standard members — `type` (default `about:blank`),
//! `title`, `status`, `detail` and `instance` — plus extension members, and is
//! served as `application/problem+json`. Its `status` member always equals the
//! status of the response it becomes.
//!
//! ```
//! use steadfast::Problem;
//! use http::StatusCode;
//!
//! let problem = Problem::new(StatusCode::CONFLICT)
//!     .with_detail("A request with this Idempotency-Key is still being processed.")
//!     .with_extension("request_id", "f81d4fae");
//! let res: http::Response<http_body_util::Full<bytes::Bytes>> = problem.to_response();
//! assert_eq!(res.status(), StatusCode::CONFLICT);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! ```
//!
//! With the `axum` feature a `Problem` is an `IntoResponse`, so handlers can
//! return `Result<T, Problem>`.

use std::{borrow::Cow, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The members a problem document reserves; extensions may not use them.
const RESERVED: [&str; 5] = ["type", "title", "status", "detail", "instance"];

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type", default = "about_blank")]
    type_uri: Cow<'static, str>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    title: Option<Cow<'static, str>>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    detail: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    instance: Option<String>,
    #[serde(flatten)]
    extensions: Map<String, Value>,
    #[serde(skip)]
    headers: HeaderMap,
}

fn about_blank() -> Cow<'static, str> {
    Cow::Borrowed("about:blank")
}

impl Problem {
    /// A problem of type `about:blank` whose title is the status's reason phrase.
    pub fn new(status: StatusCode) -> Self {
        Self {
            type_uri: about_blank(),
            title: status.canonical_reason().map(Cow::Borrowed),
            status: status.as_u16(),
            detail: None,
            instance: None,
            extensions: Map::new(),
            headers: HeaderMap::new(),
        }
    }

    /// Sets the `type` member: a URI naming the kind of problem, ideally one that
    /// documents it.
    pub fn with_type(mut self, type_uri: impl Into<Cow<'static, str>>) -> Self {
        self.type_uri = type_uri.into();
        self
    }

    /// Sets the `title` member: a short summary of the kind of problem.
    pub fn with_title(mut self, title: impl Into<Cow<'static, str>>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the `detail` member: what happened here and what the client can do about it.
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets the `instance` member: a URI for this occurrence.
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Adds an extension member. The five standard member names are reserved and
    /// ignored here, so an extension can never contradict them.
    pub fn with_extension(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        let name = name.into();
        if !RESERVED.contains(&name.as_str()) {
            self.extensions.insert(name, value.into());
        }
        self
    }

    /// Adds a header to the response this problem becomes (`WWW-Authenticate`, `Allow`, ...).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sets `Retry-After` on the response, in whole seconds (rounded up).
    pub fn with_retry_after(self, delay: Duration) -> Self {
        let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        self.with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The `type` member.
    pub fn type_uri(&self) -> &str {
        &self.type_uri
    }

    /// The `title` member.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// The `detail` member.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The `instance` member.
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// One extension member.
    pub fn extension(&self, name: &str) -> Option<&Value> {
        self.extensions.get(name)
    }

    /// The headers the response will carry besides `Content-Type`.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The JSON document.
    pub fn to_bytes(&self) -> Bytes {
        // Serialising strings, numbers and JSON values into a Vec cannot fail.
        serde_json::to_vec(self)
            .map(Bytes::from)
            .unwrap_or_default()
    }

    /// The response: this problem's status and headers, `Content-Type:
    /// application/problem+json`, and the JSON document as body.
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let mut res = Response::new(B::from(self.to_bytes()));
        *res.status_mut() = self.status();
        let headers = res.headers_mut();
        headers.clone_from(&self.headers);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}

/// Marks a problem response written by a steadfast layer (not by a handler), so
/// the error handler may complete it with the request id. Written by the layers
/// that answer themselves, read by the error handler: either side may be
/// compiled out by the features chosen.
#[derive(Debug, Clone)]
#[cfg_attr(
    not(all(
        feature = "error-handler",
        any(
            feature = "timeout",
            feature = "idempotency",
            feature = "breaker",
            feature = "overload"
        )
    )),
    allow(dead_code)
)]
pub(crate) struct LayerProblem(pub(crate) Problem);

#[cfg(any(
    feature = "timeout",
    feature = "idempotency",
    feature = "breaker",
    feature = "overload"
))]
impl Problem {
    /// [`Problem::to_response`], marked as written by a steadfast layer.
    pub(crate) fn into_layer_response<B: From<Bytes>>(self) -> Response<B> {
        let mut res = self.to_response();
        res.extensions_mut().insert(LayerProblem(self));
        res
    }
}

/// Whether headers say the body is a problem document.
pub fn is_problem_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(PROBLEM_JSON))
        })
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)?;
        if let Some(title) = &self.title {
            write!(f, " {title}")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Problem {
    fn into_response(self) -> axum::response::Response {
        self.to_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[test]
    fn serialises_standard_members_and_extensions() {
        let p = Problem::new(StatusCode::TOO_MANY_REQUESTS)
            .with_type("https://example.com/probs/rate")
            .with_detail("slow down")
            .with_instance("/login")
            .with_extension("request_id", "abc")
            .with_extension("status", 200);
        let v: Value = serde_json::from_slice(&p.to_bytes()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "https://example.com/probs/rate",
                "title": "Too Many Requests",
                "status": 429,
                "detail": "slow down",
                "instance": "/login",
                "request_id": "abc",
            })
        );
    }

    #[test]
    fn response_has_status_content_type_and_headers() {
        let res: Response<Full<Bytes>> = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_retry_after(Duration::from_millis(1500))
            .to_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(res.headers()[header::RETRY_AFTER], "2");
        assert!(is_problem_json(res.headers()));
    }

    #[test]
    fn round_trips_through_json() {
        let p = Problem::new(StatusCode::NOT_FOUND).with_extension("x", 1);
        let back: Problem = serde_json::from_slice(&p.to_bytes()).unwrap();
        assert_eq!(back, p);
        let minimal: Problem = serde_json::from_str(r#"{"status":400}"#).unwrap();
        assert_eq!(minimal.type_uri(), "about:blank");
        assert_eq!(minimal.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn content_type_with_parameters_is_problem_json() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/Problem+JSON; charset=utf-8"),
        );
        assert!(is_problem_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(!is_problem_json(&h));
    }
}
