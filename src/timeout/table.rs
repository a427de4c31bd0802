//! The configuration: a default limit, rules by path and method, and how to answer.

use std::{fmt, time::Duration};

use http::{HeaderName, Method, StatusCode};

/// The name of the header a client may use to ask for a shorter deadline, by default.
///
/// Its value is a positive whole number of milliseconds, e.g. `request-timeout-ms: 2500`.
pub const DEFAULT_DEADLINE_HEADER: &str = "request-timeout-ms";

/// How long a route may take to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// The response head must be ready within this duration.
    After(Duration),
    /// No server-imposed limit: the route opts out (streams, long polls, uploads).
    /// A client's deadline header still applies, since it can only shorten.
    Unlimited,
}

impl Limit {
    /// The duration, or `None` when unlimited.
    pub const fn duration(self) -> Option<Duration> {
        match self {
            Self::After(d) => Some(d),
            Self::Unlimited => None,
        }
    }
}

impl From<Duration> for Limit {
    fn from(duration: Duration) -> Self {
        Self::After(duration)
    }
}

/// What kind of path a rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleKind {
    /// Whole segments at the start of the path.
    Prefix,
    /// An axum-style pattern: literal, `{param}` and a final `{*wildcard}` segment.
    Pattern,
}

/// One rule as written.
#[derive(Debug, Clone)]
pub(crate) struct RuleSpec {
    pub(crate) kind: RuleKind,
    pub(crate) method: Option<Method>,
    pub(crate) path: &'static str,
    pub(crate) limit: Limit,
}

/// The configuration of a [`RouteTimeoutLayer`](super::RouteTimeoutLayer): a
/// default limit, rules choosing a limit by path (and optionally method), the
/// status of the timeout answer and the client's deadline header.
///
/// Rule paths are `&'static str` so the response future can name the route that
/// timed out without holding a reference count; build them from configuration
/// with [`String::leak`] if they are not literals.
///
/// See the [module docs](super) for how paths match and which rule wins.
#[derive(Debug, Clone)]
pub struct TimeoutTable {
    pub(crate) default: Limit,
    pub(crate) rules: Vec<RuleSpec>,
    pub(crate) status: StatusCode,
    pub(crate) header: Option<HeaderName>,
    pub(crate) deadline_extension: bool,
}

impl TimeoutTable {
    /// A table whose routes all get `default` until rules say otherwise; the
    /// answer is `504 Gateway Timeout` and clients may shorten the deadline with
    /// the [`request-timeout-ms`](DEFAULT_DEADLINE_HEADER) header.
    pub fn new(default: impl Into<Limit>) -> Self {
        Self {
            default: default.into(),
            rules: Vec::new(),
            status: StatusCode::GATEWAY_TIMEOUT,
            header: Some(HeaderName::from_static(DEFAULT_DEADLINE_HEADER)),
            deadline_extension: true,
        }
    }

    /// Paths starting with the whole segments of `prefix` (`/api/auth/` matches
    /// `/api/auth` and `/api/auth/login`, not `/api/authors`), any method.
    pub fn prefix(self, prefix: &'static str, limit: impl Into<Limit>) -> Self {
        self.rule(RuleKind::Prefix, None, prefix, limit.into())
    }

    /// Like [`prefix`](Self::prefix), for one method only.
    pub fn prefix_for(self, method: Method, prefix: &'static str, limit: impl Into<Limit>) -> Self {
        self.rule(RuleKind::Prefix, Some(method), prefix, limit.into())
    }

    /// Paths matching an axum-style `pattern` (`/api/campaigns/{id}/status`,
    /// `/files/{*rest}`), any method.
    pub fn route(self, pattern: &'static str, limit: impl Into<Limit>) -> Self {
        self.rule(RuleKind::Pattern, None, pattern, limit.into())
    }

    /// Like [`route`](Self::route), for one method only.
    pub fn route_for(self, method: Method, pattern: &'static str, limit: impl Into<Limit>) -> Self {
        self.rule(RuleKind::Pattern, Some(method), pattern, limit.into())
    }

    /// The status of the timeout answer (default `504 Gateway Timeout`). Avoid
    /// `408 Request Timeout`: it tells clients the request never fully arrived and
    /// invites them to send it again.
    pub fn timeout_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The header a client may send to shorten its deadline (default
    /// [`request-timeout-ms`](DEFAULT_DEADLINE_HEADER)).
    pub fn deadline_header(mut self, name: HeaderName) -> Self {
        self.header = Some(name);
        self
    }

    /// Ignores every client deadline header.
    pub fn without_deadline_header(mut self) -> Self {
        self.header = None;
        self
    }

    /// Enforces the limits without putting a [`Deadline`](crate::Deadline) in the
    /// request's extensions (an earlier one an outer layer put there is still
    /// enforced). For services where nothing reads the deadline: the insert is
    /// the layer's largest cost on a request that arrives with no extensions
    /// (the map and the entry are allocated, then freed with the request).
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::timeout::{RouteTimeoutLayer, TimeoutTable};
    ///
    /// let timeouts = RouteTimeoutLayer::new(
    ///     TimeoutTable::new(Duration::from_secs(15)).without_deadline_extension(),
    /// );
    /// # let _ = timeouts;
    /// ```
    pub fn without_deadline_extension(mut self) -> Self {
        self.deadline_extension = false;
        self
    }

    fn rule(
        mut self,
        kind: RuleKind,
        method: Option<Method>,
        path: &'static str,
        limit: Limit,
    ) -> Self {
        self.rules.push(RuleSpec {
            kind,
            method,
            path,
            limit,
        });
        self
    }
}

/// A rule that cannot be compiled: a malformed path, or a second rule for the
/// same path shape and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError {
    pub(crate) path: &'static str,
    pub(crate) reason: &'static str,
}

impl TableError {
    /// The path of the offending rule.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid timeout rule `{}`: {}", self.path, self.reason)
    }
}

impl std::error::Error for TableError {}
