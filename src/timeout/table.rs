//! The configuration: a default limit, rules by path and method, and how to answer.

use std::{borrow::Cow, time::Duration};

use http::{HeaderName, Method, StatusCode};

use crate::route::RuleKind;

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

/// One rule as written.
#[derive(Debug, Clone)]
pub(crate) struct RuleSpec {
    pub(crate) kind: RuleKind,
    pub(crate) method: Option<Method>,
    pub(crate) path: Cow<'static, str>,
    pub(crate) limit: Limit,
}

/// The configuration of a [`RouteTimeoutLayer`](super::RouteTimeoutLayer): a
/// default limit, rules choosing a limit by path (and optionally method), the
/// status of the timeout answer and the client's deadline header.
///
/// Rule paths are literals (`&'static str`) or built at run time from
/// configuration (`String`); either costs nothing per request.
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
    pub fn prefix(self, prefix: impl Into<Cow<'static, str>>, limit: impl Into<Limit>) -> Self {
        self.rule(RuleKind::Prefix, None, prefix.into(), limit.into())
    }

    /// Like [`prefix`](Self::prefix), for one method only.
    pub fn prefix_for(
        self,
        method: Method,
        prefix: impl Into<Cow<'static, str>>,
        limit: impl Into<Limit>,
    ) -> Self {
        self.rule(RuleKind::Prefix, Some(method), prefix.into(), limit.into())
    }

    /// Paths matching an axum-style `pattern` (`/api/campaigns/{id}/status`,
    /// `/files/{*rest}`), any method.
    pub fn route(self, pattern: impl Into<Cow<'static, str>>, limit: impl Into<Limit>) -> Self {
        self.rule(RuleKind::Pattern, None, pattern.into(), limit.into())
    }

    /// Like [`route`](Self::route), for one method only.
    pub fn route_for(
        self,
        method: Method,
        pattern: impl Into<Cow<'static, str>>,
        limit: impl Into<Limit>,
    ) -> Self {
        self.rule(
            RuleKind::Pattern,
            Some(method),
            pattern.into(),
            limit.into(),
        )
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
        path: Cow<'static, str>,
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
