//! Route matching shared by every layer that picks a rule by request path
//! ([`timeout`](crate::timeout), [`audit`](crate::audit)): one syntax, one
//! precedence rule, one error policy.
//!
//! # Syntax
//!
//! Paths are axum's: they start with `/` and are compared segment by segment
//! (split at `/`). A literal segment matches itself; `{name}` matches any one
//! non-empty segment; a final `{*name}` matches the non-empty rest. A trailing
//! slash is significant, as in axum. Against axum's `MatchedPath` (the route's
//! own pattern), `{id}` in a rule matches `{id}` in the route, while a literal
//! in a rule only matches a route registered with that literal.
//!
//! A *prefix* rule (where a layer offers one) matches the whole segments at the
//! start of a path: `/api/auth/` and `/api/auth` both match `/api/auth` and
//! `/api/auth/login`, not `/api/authors`; `/` matches every path.
//!
//! # Precedence
//!
//! When several rules match, the most specific wins, in this order:
//!
//! 1. a pattern matching the whole path beats a prefix or a `{*wildcard}` pattern;
//! 2. a rule naming more segments beats one naming fewer;
//! 3. at the first segment where two rules differ, a literal beats a `{param}`;
//! 4. a `{*wildcard}` pattern beats a prefix of the same segments;
//! 5. a method-specific rule beats an any-method rule (the path decides first).
//!
//! # Errors
//!
//! A malformed path (not starting with `/`, braces that do not enclose a whole
//! segment, a `{*wildcard}` that is not last, a prefix holding a wildcard, more
//! than 64 segments) and a second rule of the same path shape, kind and method
//! are refused with a [`RouteError`] when the rules are compiled.

mod matcher;
#[cfg(any(test, fuzzing))]
pub(crate) mod reference;

use std::fmt;

pub(crate) use matcher::Matcher;

/// What kind of path a rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleKind {
    /// Whole segments at the start of the path.
    Prefix,
    /// An axum-style pattern: literal, `{param}` and a final `{*wildcard}` segment.
    Pattern,
}

/// A route rule that cannot be compiled: a malformed path, or a second rule for
/// the same path shape and method.
///
/// Every layer that picks rules by path (timeouts, audit) reads axum's syntax:
/// literal segments, `{name}` for one segment, a final `{*name}` for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    path: Box<str>,
    reason: &'static str,
}

impl RouteError {
    pub(crate) fn new(path: &str, reason: &'static str) -> Self {
        Self {
            path: path.into(),
            reason,
        }
    }

    /// The path of the offending rule.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid route rule `{}`: {}", self.path, self.reason)
    }
}

impl std::error::Error for RouteError {}

/// A rule's path as configured: borrowed when it is a literal, shared when it
/// was built at run time, so naming it per request never copies the text.
#[cfg(feature = "timeout")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteName {
    Static(&'static str),
    Shared(std::sync::Arc<str>),
}

#[cfg(feature = "timeout")]
impl RouteName {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Static(s) => s,
            Self::Shared(s) => s,
        }
    }
}

#[cfg(feature = "timeout")]
impl From<std::borrow::Cow<'static, str>> for RouteName {
    fn from(path: std::borrow::Cow<'static, str>) -> Self {
        match path {
            std::borrow::Cow::Borrowed(s) => Self::Static(s),
            std::borrow::Cow::Owned(s) => Self::Shared(s.into()),
        }
    }
}

/// The path rules are matched against: axum's route pattern when the layer runs
/// inside a `Router` (the `axum` feature), the URI path otherwise.
#[inline]
pub(crate) fn route_path<B>(req: &http::Request<B>) -> &str {
    #[cfg(feature = "axum")]
    if let Some(matched) = req.extensions().get::<axum::extract::MatchedPath>() {
        return matched.as_str();
    }
    req.uri().path()
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
