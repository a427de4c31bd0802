//! The `Idempotency-Key` header: parsing and validation.

use std::fmt;

use http::{HeaderMap, HeaderName};

/// The `Idempotency-Key` request header.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The `Idempotent-Replayed: true` response header marking a replayed response.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The longest key accepted, in characters.
pub const MAX_KEY_LEN: usize = 255;

/// A valid idempotency key: 1 to 255 printable ASCII characters.
///
/// The header value is an RFC 8941 sf-String (`"8e03978e-40d5-43e8-bc93-6894a57f9324"`,
/// with `\"` and `\\` escapes); the bare form that Stripe's clients send
/// (`8e03978e-40d5-43e8-bc93-6894a57f9324`, no quotes) is accepted too and means
/// the same key.
///
/// ```
/// use steadfast::idempotency::{IdempotencyKey, KeyError};
///
/// assert_eq!(IdempotencyKey::parse(br#""a\"b""#).unwrap().as_str(), r#"a"b"#);
/// assert_eq!(IdempotencyKey::parse(b"order-17").unwrap().as_str(), "order-17");
/// assert_eq!(IdempotencyKey::parse(b"\"abc"), Err(KeyError::UnterminatedString));
/// assert_eq!(IdempotencyKey::parse(b"\"\""), Err(KeyError::Empty));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why an `Idempotency-Key` header was rejected (a 400 problem whose detail is
/// this error's message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is empty.
    Empty,
    /// The key is longer than 255 characters.
    TooLong,
    /// The header holds bytes outside ASCII.
    NonAscii,
    /// The header holds a control character (a tab, for instance).
    ControlCharacter,
    /// A quoted key has no closing quote.
    UnterminatedString,
    /// A quoted key has a backslash that escapes neither `"` nor `\`.
    InvalidEscape,
    /// Something follows the closing quote.
    TrailingCharacters,
    /// An unquoted key holds a `"`, or a `,` (as two keys folded into one line do).
    StrayCharacter,
    /// The request has more than one `Idempotency-Key` header.
    Multiple,
}

impl KeyError {
    /// The sentence the 400 problem carries as its `detail`.
    pub fn detail(self) -> &'static str {
        match self {
            Self::Empty => {
                "The Idempotency-Key header is empty; send 1 to 255 printable ASCII characters."
            }
            Self::TooLong => "The Idempotency-Key is longer than 255 characters.",
            Self::NonAscii => {
                "The Idempotency-Key holds non-ASCII bytes; only printable ASCII is allowed."
            }
            Self::ControlCharacter => {
                "The Idempotency-Key holds a control character; only printable ASCII is allowed."
            }
            Self::UnterminatedString => {
                "The Idempotency-Key opens a quoted string that is never closed."
            }
            Self::InvalidEscape => {
                "The Idempotency-Key holds a backslash that escapes neither '\"' nor '\\'."
            }
            Self::TrailingCharacters => {
                "The Idempotency-Key has characters after its closing quote."
            }
            Self::StrayCharacter => {
                "An unquoted Idempotency-Key may not hold '\"' or ','; send the key as a quoted string."
            }
            Self::Multiple => {
                "The request has more than one Idempotency-Key header; send exactly one."
            }
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.detail())
    }
}

impl std::error::Error for KeyError {}

impl IdempotencyKey {
    /// The key of a request: `Ok(None)` without an `Idempotency-Key` header, an
    /// error when it is invalid or repeated.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, KeyError> {
        let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(KeyError::Multiple);
        }
        Self::parse(first.as_bytes()).map(Some)
    }

    /// Parses one header value: an sf-String, or a bare key.
    pub fn parse(value: &[u8]) -> Result<Self, KeyError> {
        let value = value.trim_ascii();
        if value.is_empty() {
            return Err(KeyError::Empty);
        }
        if !value.is_ascii() {
            return Err(KeyError::NonAscii);
        }
        if value.iter().any(|b| b.is_ascii_control()) {
            return Err(KeyError::ControlCharacter);
        }
        let key = match value.strip_prefix(b"\"") {
            Some(quoted) => unquote(quoted)?,
            None => {
                if value.iter().any(|b| matches!(b, b'"' | b',')) {
                    return Err(KeyError::StrayCharacter);
                }
                // Printable ASCII, checked above.
                String::from_utf8_lossy(value).into_owned()
            }
        };
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong);
        }
        Ok(Self(key))
    }

    /// The key, unquoted and unescaped.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The content of an sf-String after its opening quote (RFC 8941 §4.2.5).
fn unquote(rest: &[u8]) -> Result<String, KeyError> {
    let mut out = String::with_capacity(rest.len());
    let mut bytes = rest.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(&c @ (b'"' | b'\\')) => out.push(char::from(c)),
                Some(_) => return Err(KeyError::InvalidEscape),
                None => return Err(KeyError::UnterminatedString),
            },
            b'"' => {
                return if bytes.as_slice().is_empty() {
                    Ok(out)
                } else {
                    Err(KeyError::TrailingCharacters)
                };
            }
            c => out.push(char::from(c)),
        }
    }
    Err(KeyError::UnterminatedString)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn quoted_and_bare_forms() {
        assert_eq!(IdempotencyKey::parse(b"\"abc\"").unwrap().as_str(), "abc");
        assert_eq!(IdempotencyKey::parse(b"abc").unwrap().as_str(), "abc");
        assert_eq!(
            IdempotencyKey::parse(b"  \"a b\"  ").unwrap().as_str(),
            "a b"
        );
        assert_eq!(
            IdempotencyKey::parse(br#""a\\b""#).unwrap().as_str(),
            r"a\b"
        );
    }

    #[test]
    fn rejects_each_kind_of_bad_key() {
        let cases: [(&[u8], KeyError); 11] = [
            (b"", KeyError::Empty),
            (b"\"\"", KeyError::Empty),
            (b"\"abc", KeyError::UnterminatedString),
            (b"\"abc\\", KeyError::UnterminatedString),
            (b"\"a\\nb\"", KeyError::InvalidEscape),
            (b"\"abc\"x", KeyError::TrailingCharacters),
            (b"\"a\", \"b\"", KeyError::TrailingCharacters),
            (b"abc\"", KeyError::StrayCharacter),
            (b"a, b", KeyError::StrayCharacter),
            ("caf\u{e9}".as_bytes(), KeyError::NonAscii),
            (b"a\tb", KeyError::ControlCharacter),
        ];
        for (value, err) in cases {
            assert_eq!(IdempotencyKey::parse(value), Err(err), "{value:?}");
        }
    }

    #[test]
    fn length_is_counted_after_unquoting() {
        let max = "k".repeat(MAX_KEY_LEN);
        assert!(IdempotencyKey::parse(max.as_bytes()).is_ok());
        assert!(IdempotencyKey::parse(format!("\"{max}\"").as_bytes()).is_ok());
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert_eq!(
            IdempotencyKey::parse(long.as_bytes()),
            Err(KeyError::TooLong)
        );
    }

    #[test]
    fn two_headers_are_rejected() {
        let mut headers = HeaderMap::new();
        assert_eq!(IdempotencyKey::from_headers(&headers), Ok(None));
        headers.append(IDEMPOTENCY_KEY, HeaderValue::from_static("\"a\""));
        assert!(IdempotencyKey::from_headers(&headers).unwrap().is_some());
        headers.append(IDEMPOTENCY_KEY, HeaderValue::from_static("\"a\""));
        assert_eq!(
            IdempotencyKey::from_headers(&headers),
            Err(KeyError::Multiple)
        );
    }
}
