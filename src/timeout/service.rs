//! The layer and the service: choose the limit, set the deadline, start the race.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{
    future::ResponseFuture,
    table::{Limit, TimeoutTable},
};
use crate::{
    Deadline,
    route::{Matcher, RouteError, RouteName},
};

/// Applies [`RouteTimeout`] to a service. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct RouteTimeoutLayer {
    shared: Arc<Shared>,
}

/// What every clone of the layer and its services share: compiled once.
#[derive(Debug)]
struct Shared {
    matcher: Matcher<Rule>,
    /// What applies when no rule matches.
    default: Rule,
    status: StatusCode,
    header: Option<HeaderName>,
    deadline_extension: bool,
    malformed_headers: AtomicU64,
}

/// The limit a rule sets, and its path as written (`default` for the default),
/// for the log line of a timeout.
#[derive(Debug, Clone)]
struct Rule {
    limit: Limit,
    route: RouteName,
}

impl RouteTimeoutLayer {
    /// Compiles `table` into a layer.
    ///
    /// # Panics
    ///
    /// When a rule is invalid (see [`try_new`](Self::try_new)), like axum's
    /// `Router::route` with an invalid path: a table is configuration, written once.
    pub fn new(table: TimeoutTable) -> Self {
        Self::try_new(table).unwrap_or_else(|err| panic!("{err}"))
    }

    /// Compiles `table` into a layer; an error names the first rule that is not
    /// a valid path or that repeats another rule's path shape and method.
    pub fn try_new(table: TimeoutTable) -> Result<Self, RouteError> {
        let matcher = Matcher::compile(table.rules.iter().map(|rule| {
            let value = Rule {
                limit: rule.limit,
                route: RouteName::from(rule.path.clone()),
            };
            (rule.kind, rule.method.as_ref(), &*rule.path, value)
        }))?;
        Ok(Self {
            shared: Arc::new(Shared {
                matcher,
                default: Rule {
                    limit: table.default,
                    route: RouteName::Static("default"),
                },
                status: table.status,
                header: table.header,
                deadline_extension: table.deadline_extension,
                malformed_headers: AtomicU64::new(0),
            }),
        })
    }

    /// The limit the table gives `method` on `path` (a URI path or an axum route
    /// pattern), before any client header.
    pub fn limit_for(&self, method: &Method, path: &str) -> Limit {
        self.shared.rule(method, path).limit
    }

    /// How many requests carried a malformed deadline header (ignored), across
    /// every service this layer made.
    pub fn malformed_deadline_headers(&self) -> u64 {
        self.shared.malformed_headers.load(Ordering::Relaxed)
    }
}

impl<S> Layer<S> for RouteTimeoutLayer {
    type Service = RouteTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RouteTimeout {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`RouteTimeoutLayer`] produces. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct RouteTimeout<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> RouteTimeout<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// How many requests carried a malformed deadline header (ignored), across
    /// every service the same layer made.
    pub fn malformed_deadline_headers(&self) -> u64 {
        self.shared.malformed_headers.load(Ordering::Relaxed)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RouteTimeout<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<crate::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let entry = shared.rule(req.method(), crate::route::route_path(&req));
        let requested = shared
            .header
            .as_ref()
            .and_then(|name| shared.client_limit(req.headers(), name));
        let limit = crate::deadline::earlier(entry.limit.duration(), requested);
        let Some(limit) = limit else {
            return ResponseFuture::unlimited(self.inner.call(req));
        };
        let started = Instant::now();
        let Some(at) = started.checked_add(limit) else {
            // A limit beyond the end of time is no limit.
            return ResponseFuture::unlimited(self.inner.call(req));
        };
        let own = Deadline::at(at);
        let deadline = if shared.deadline_extension {
            own.insert_into(req.extensions_mut())
        } else {
            Deadline::from_extensions(req.extensions()).map_or(own, |outer| own.earliest(outer))
        };
        ResponseFuture::limited(
            self.inner.call(req),
            deadline.instant(),
            started,
            entry.route.clone(),
            shared.status,
        )
    }
}

impl Shared {
    /// The most specific rule for `method` and `path`, or the default.
    #[inline]
    fn rule(&self, method: &Method, path: &str) -> &Rule {
        self.matcher.lookup(method, path).unwrap_or(&self.default)
    }

    /// The client's deadline header: `None` when absent or malformed (counted and logged).
    fn client_limit(&self, headers: &HeaderMap, name: &HeaderName) -> Option<Duration> {
        if !crate::headers::contains(headers, name) {
            return None;
        }
        let mut values = headers.get_all(name).iter();
        let value = values.next()?;
        let repeated = values.next().is_some();
        let parsed = if repeated {
            None
        } else {
            parse_millis(value.as_bytes())
        };
        if parsed.is_none() {
            self.malformed_headers.fetch_add(1, Ordering::Relaxed);
            // Client input: debug, not warn, so clients cannot flood the logs.
            tracing::debug!(
                header = name.as_str(),
                value = ?value,
                repeated,
                "malformed deadline header ignored"
            );
        }
        parsed
    }
}

/// A positive whole number of milliseconds, digits only.
fn parse_millis(value: &[u8]) -> Option<Duration> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let millis: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (millis > 0).then(|| Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_positive_milliseconds_only() {
        assert_eq!(parse_millis(b"2500"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_millis(b" 7 "), Some(Duration::from_millis(7)));
        assert_eq!(parse_millis(b"007"), Some(Duration::from_millis(7)));
        for bad in [
            &b""[..],
            b" ",
            b"0",
            b"-5",
            b"+5",
            b"1.5",
            b"1e3",
            b"5s",
            b"abc",
            b"99999999999999999999999",
            "٣".as_bytes(),
        ] {
            assert_eq!(
                parse_millis(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
