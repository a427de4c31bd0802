//! Validation shared by every route: request bodies parsed into typed values
//! with problems that name the field, and the field rules (lengths, enums).
//!
//! A body that is not JSON is a 400 (`errors: [{field: "body", ...}]`); JSON
//! of the wrong shape (a wrong type, an unknown field, an unknown enum value)
//! and content that breaks a rule are 422, each error naming its field by its
//! path (`name`, `prospects[3].email`). Handlers take [`JsonBody<T>`] instead of
//! axum's `Json<T>`, whose rejections carry no field, and collect rule
//! violations in [`FieldErrors`].

use std::marker::PhantomData;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use bytes::Bytes;
use http::request::Parts;
use http::{StatusCode, header};
use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};
use steadfast::Problem;

use crate::error::{ApiError, types};

/// One thing wrong with a request: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's path in the request (`name`, `prospects[2].email`, `limit`).
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// The problems found in one request; empty when it is valid.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// No error yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is wrong.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A required text: trimmed, not empty, at most `max` characters.
    pub fn required_text(&mut self, field: &str, value: &str, max: usize) -> String {
        let value = value.trim();
        if value.is_empty() {
            self.add(field, "must not be empty");
        } else {
            self.max_chars(field, value, max);
        }
        value.to_owned()
    }

    /// An optional text: trimmed, at most `max` characters; empty becomes `None`.
    pub fn optional_text(
        &mut self,
        field: &str,
        value: Option<&str>,
        max: usize,
    ) -> Option<String> {
        let value = value.map(str::trim).filter(|v| !v.is_empty())?;
        self.max_chars(field, value, max);
        Some(value.to_owned())
    }

    /// An integer within `range`.
    pub fn in_range(&mut self, field: &str, value: i64, range: std::ops::RangeInclusive<i64>) {
        if !range.contains(&value) {
            self.add(
                field,
                format!(
                    "must be between {} and {}, not {value}",
                    range.start(),
                    range.end()
                ),
            );
        }
    }

    fn max_chars(&mut self, field: &str, value: &str, max: usize) {
        if let Err(message) = check_chars(value, max) {
            self.add(field, message);
        }
    }

    /// `Ok(())` when nothing was recorded, else the 422 problem listing them.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(problem(StatusCode::UNPROCESSABLE_ENTITY, self.0))
        }
    }

    /// The errors recorded.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

/// Whether `value` fits a text field of at most `max` characters: no NUL
/// (PostgreSQL text cannot hold one) and not too long.
pub fn check_chars(value: &str, max: usize) -> Result<(), String> {
    if value.contains('\0') {
        return Err("must not contain NUL characters".to_owned());
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(format!("must be at most {max} characters, not {chars}"));
    }
    Ok(())
}

/// A resource whose id a path carries, named in its 404.
pub trait Resource: Send + Sync + 'static {
    /// How a 404 names it ("campaign").
    const NAME: &'static str;
}

/// The `{id}` of a path naming an `R`. Ids are UUIDs: anything else cannot
/// exist, and is answered the same 404 as a missing id without a query.
#[derive(Debug)]
pub struct PathId<R>(pub String, pub PhantomData<fn() -> R>);

impl<R: Resource, S: Send + Sync> FromRequestParts<S> for PathId<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found(R::NAME))?;
        match uuid::Uuid::try_parse(&id) {
            Ok(_) => Ok(Self(id, PhantomData)),
            Err(_) => Err(ApiError::not_found(R::NAME)),
        }
    }
}

/// A problem (400 or 422) listing `errors`; its detail repeats the first one.
pub fn problem(status: StatusCode, errors: Vec<FieldError>) -> ApiError {
    let detail = match errors.as_slice() {
        [] => "The request is invalid.".to_owned(),
        [only] => format!("`{}` {}", only.field, only.message),
        [first, rest @ ..] => format!(
            "`{}` {} (and {} more: see `errors`)",
            first.field,
            first.message,
            rest.len()
        ),
    };
    let title = if status == StatusCode::BAD_REQUEST {
        "Malformed request"
    } else {
        "Invalid request content"
    };
    ApiError::from(
        Problem::new(status)
            .with_type(types::VALIDATION)
            .with_title(title)
            .with_detail(detail)
            .with_extension(
                "errors",
                serde_json::to_value(errors).expect("field errors serialize"),
            ),
    )
}

/// A problem for one field.
pub fn field_problem(
    status: StatusCode,
    field: impl Into<String>,
    message: impl Into<String>,
) -> ApiError {
    problem(
        status,
        vec![FieldError {
            field: field.into(),
            message: message.into(),
        }],
    )
}

/// Whether a request's content type is `essence` (parameters such as `charset`
/// ignored, case-insensitive).
pub fn has_content_type(headers: &http::HeaderMap, essence: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(essence))
}

/// Parses `bytes` as JSON into `T`: 400 when it is not JSON, 422 naming the
/// field when it does not fit `T`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        json_problem(&path, &err.into_inner())
    })?;
    de.end().map_err(|err| json_problem("", &err))?;
    Ok(value)
}

/// 422 naming `path` when the JSON did not fit the type, 400 when it is not JSON.
fn json_problem(path: &str, err: &serde_json::Error) -> ApiError {
    let status = match err.classify() {
        serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::BAD_REQUEST,
    };
    let message = json_message(err);
    if status == StatusCode::BAD_REQUEST {
        // Not JSON: the body as a whole is at fault, wherever parsing stopped.
        return field_problem(status, "body", message);
    }
    let parent = if path == "." { "" } else { path };
    // serde reports a missing or unknown field at its parent: name the field.
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|start| message.strip_prefix(start)?.split('`').next());
    let field = match (named, parent) {
        (Some(name), parent) if parent == name || parent.ends_with(&format!(".{name}")) => {
            parent.to_owned()
        }
        (Some(name), "") => name.to_owned(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, "") => "body".to_owned(),
        (None, parent) => parent.to_owned(),
    };
    field_problem(status, field, message)
}

/// serde_json's message without its " at line L column C" suffix when the
/// problem is about the data, kept when it is about the syntax.
fn json_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match err.classify() {
        serde_json::error::Category::Data => match text.rfind(" at line ") {
            Some(at) => text[..at].to_owned(),
            None => text,
        },
        serde_json::error::Category::Eof => "the JSON body ends too early".to_owned(),
        _ => text,
    }
}

/// A JSON request body parsed into `T` (see the module docs): 415 without a
/// JSON content type, 400 for malformed JSON, 422 naming the field otherwise.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !has_content_type(req.headers(), "application/json") {
            return Err(ApiError::status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Send the body as JSON with `Content-Type: application/json`.",
            ));
        }
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(Self)
    }
}

/// Like [`JsonBody`], for routes whose body is optional: an empty body is
/// `T::default()`.
#[derive(Debug, Clone)]
pub struct OptionalJsonBody<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJsonBody<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = has_content_type(req.headers(), "application/json");
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        if !json {
            return Err(ApiError::status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Send the body as JSON with `Content-Type: application/json`.",
            ));
        }
        // A JSON `null` is no body too: the document describes these optional
        // bodies as nullable, and schemathesis sent one (it was a 422).
        parse_json::<Option<T>>(&bytes).map(|body| Self(body.unwrap_or_default()))
    }
}

/// The whole request body. Over the body limit it is a 413 problem.
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        let status = rejection.status();
        ApiError::status(status, rejection.body_text())
    })
}

/// For PATCH bodies: tells an absent field (`None`) from an explicit `null`
/// (`Some(None)`). Use with `#[serde(default, deserialize_with = "nullable")]`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Whether `email` looks like an address: one `@`, a local part, a domain with
/// a dot, no spaces, at most 254 characters. Deliverability is the mail
/// provider's business.
pub fn is_plausible_email(email: &str) -> bool {
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Form {
        name: String,
        limit: Option<i64>,
    }

    fn errors(err: ApiError) -> (u16, serde_json::Value) {
        let status = err.0.status().as_u16();
        (status, err.0.extension("errors").cloned().unwrap())
    }

    #[test]
    fn malformed_json_is_400_and_wrong_types_are_422_naming_the_field() {
        let (status, errs) = errors(parse_json::<Form>(b"{\"name\": ").unwrap_err());
        assert_eq!(status, 400);
        assert_eq!(errs[0]["field"], "body");
        let (status, errs) =
            errors(parse_json::<Form>(br#"{"name": "x", "limit": "ten"}"#).unwrap_err());
        assert_eq!(status, 422);
        assert_eq!(errs[0]["field"], "limit");
        let (status, errs) =
            errors(parse_json::<Form>(br#"{"name": "x", "nmae": 1}"#).unwrap_err());
        assert_eq!(status, 422);
        assert_eq!(errs[0]["field"], "nmae");
        let (_, errs) = errors(parse_json::<Form>(br#"{"limit": 1}"#).unwrap_err());
        assert_eq!(errs[0]["field"], "name");
        let (_, errs) = errors(parse_json::<Vec<Form>>(br#"[{"name": "a"}, {}]"#).unwrap_err());
        assert_eq!(errs[0]["field"], "[1].name");
        assert!(parse_json::<Form>(br#"{"name": "x"} trailing"#).is_err());
    }

    #[test]
    fn text_rules() {
        let mut errs = FieldErrors::new();
        assert_eq!(errs.required_text("name", "  ok ", 5), "ok");
        assert!(errs.is_empty());
        errs.required_text("name", "   ", 5);
        errs.required_text("title", "ééééééé", 5);
        assert_eq!(errs.optional_text("x", Some(" "), 5), None);
        let list = errs.into_vec();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].message, "must be at most 5 characters, not 7");
    }

    #[test]
    fn plausible_emails() {
        assert!(is_plausible_email("ann@example.com"));
        for bad in [
            "", "ann", "ann@", "@x.io", "a@b", "a b@x.io", "a@@x.io", "a@x.io.",
        ] {
            assert!(!is_plausible_email(bad), "{bad}");
        }
    }
}
