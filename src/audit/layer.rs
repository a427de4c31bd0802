//! [`AuditLayer`]: which routes are audited, as which action.

use std::{borrow::Cow, sync::Arc};

use http::{HeaderName, Method, Request};
use tower::Layer;

use super::{Audit, Auditor, TrustedProxies};
use crate::route::{Matcher, RouteError, RuleKind};

/// Applies [`Audit`] to a service. See the [module docs](super).
///
/// Routes are the patterns of axum's router (`/campaigns/{id}`, `/files/{*path}`),
/// matched as every steadfast layer matches routes (the [timeout
/// layer's rules](crate::timeout#how-rules-match) say how): behind an axum
/// `Router` against the request's `MatchedPath`, elsewhere (plain tower or
/// hyper, or outside the router) against the URI path; when several routes
/// match, the most specific wins. A request that matches no route passes
/// straight through: a lookup, no allocation.
#[derive(Debug, Clone)]
pub struct AuditLayer {
    config: Arc<Config>,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) auditor: Auditor,
    pub(crate) rules: Vec<Rule>,
    /// The rules compiled, each to its index in `rules`.
    matcher: Matcher<usize>,
    pub(crate) proxies: TrustedProxies,
    pub(crate) request_id_header: HeaderName,
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    method: Option<Method>,
    pub(crate) pattern: Box<str>,
    pub(crate) action: Cow<'static, str>,
}

impl AuditLayer {
    /// A layer recording to `auditor`, auditing no route yet and trusting no proxy.
    pub fn new(auditor: Auditor) -> Self {
        Self {
            config: Arc::new(Config {
                auditor,
                rules: Vec::new(),
                matcher: Matcher::compile([]).expect("no rules"),
                proxies: TrustedProxies::none(),
                request_id_header: crate::headers::X_REQUEST_ID.clone(),
            }),
        }
    }

    /// Audits `method` requests to `route` as `action`.
    ///
    /// # Panics
    ///
    /// When `route` is not a valid pattern or repeats another route's pattern
    /// and method (see [`try_route`](Self::try_route)), as axum's
    /// `Router::route` does: routes are configuration, written once.
    pub fn route(self, method: Method, route: &str, action: impl Into<Cow<'static, str>>) -> Self {
        self.try_route(method, route, action)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// Audits `method` requests to `route` as `action`; an error when `route` is
    /// not a valid pattern or repeats another route's pattern and method.
    pub fn try_route(
        self,
        method: Method,
        route: &str,
        action: impl Into<Cow<'static, str>>,
    ) -> Result<Self, RouteError> {
        self.add(Some(method), route, action.into())
    }

    /// Audits requests of any method to `route` as `action`.
    ///
    /// # Panics
    ///
    /// As [`route`](Self::route); see [`try_route_any`](Self::try_route_any).
    pub fn route_any(self, route: &str, action: impl Into<Cow<'static, str>>) -> Self {
        self.try_route_any(route, action)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// Audits requests of any method to `route` as `action`; an error as for
    /// [`try_route`](Self::try_route).
    pub fn try_route_any(
        self,
        route: &str,
        action: impl Into<Cow<'static, str>>,
    ) -> Result<Self, RouteError> {
        self.add(None, route, action.into())
    }

    /// Which proxies may report the client address (default: none).
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        Arc::make_mut(&mut self.config).proxies = proxies;
        self
    }

    /// The request header the request id is read from (default `x-request-id`,
    /// which tower-http's `SetRequestIdLayer::x_request_id` sets, whatever its
    /// version).
    pub fn request_id_header(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.config).request_id_header = name;
        self
    }

    fn add(
        mut self,
        method: Option<Method>,
        route: &str,
        action: Cow<'static, str>,
    ) -> Result<Self, RouteError> {
        let config = Arc::make_mut(&mut self.config);
        let mut rules = config.rules.clone();
        rules.push(Rule {
            method,
            pattern: route.into(),
            action,
        });
        // Recompiled whole: configuration is written once, lookups are per request.
        config.matcher = Matcher::compile(
            rules
                .iter()
                .enumerate()
                .map(|(i, rule)| (RuleKind::Pattern, rule.method.as_ref(), &*rule.pattern, i)),
        )?;
        config.rules = rules;
        Ok(self)
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit::new(inner, self.config.clone())
    }
}

impl Config {
    /// The index of the rule `request` falls under.
    #[inline]
    pub(crate) fn find<B>(&self, request: &Request<B>) -> Option<usize> {
        if self.rules.is_empty() {
            return None;
        }
        self.matcher
            .lookup(request.method(), crate::route::route_path(request))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::MemorySink;

    fn layer() -> AuditLayer {
        let auditor = Auditor::builder().build(MemorySink::new());
        AuditLayer::new(auditor)
    }

    fn action(layer: &AuditLayer, method: Method, path: &str) -> Option<String> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        let i = layer.config.find(&req)?;
        Some(layer.config.rules[i].action.to_string())
    }

    #[tokio::test]
    async fn routes_match_as_every_layer_matches_them() {
        let layer = layer()
            .route(Method::POST, "/login", "login")
            .route(Method::POST, "/campaigns/{id}", "campaign.any")
            .route(Method::POST, "/campaigns/archive", "campaign.archive")
            .route_any("/files/{*path}", "file");
        assert_eq!(
            action(&layer, Method::POST, "/login").as_deref(),
            Some("login")
        );
        assert_eq!(
            action(&layer, Method::POST, "/login/"),
            None,
            "a trailing slash is significant"
        );
        assert_eq!(action(&layer, Method::GET, "/login"), None);
        assert_eq!(
            action(&layer, Method::POST, "/campaigns/42").as_deref(),
            Some("campaign.any")
        );
        // The most specific route wins, whatever the order they were added in.
        assert_eq!(
            action(&layer, Method::POST, "/campaigns/archive").as_deref(),
            Some("campaign.archive")
        );
        assert_eq!(
            action(&layer, Method::POST, "/campaigns/"),
            None,
            "a param is never empty"
        );
        assert_eq!(
            action(&layer, Method::DELETE, "/files/a/b").as_deref(),
            Some("file")
        );
        assert_eq!(action(&layer, Method::DELETE, "/files"), None);
    }

    #[tokio::test]
    async fn malformed_and_repeated_routes_are_refused() {
        for bad in [
            "users",
            "/users/{id",
            "/a/{*rest}/b",
            "/a/{}",
            "/users/:id",
            "/files/*path",
        ] {
            let err = layer().try_route(Method::POST, bad, "x").unwrap_err();
            assert_eq!(err.path(), bad);
        }
        let err = layer()
            .route(Method::POST, "/a/{x}", "one")
            .try_route(Method::POST, "/a/{y}", "two")
            .unwrap_err();
        assert_eq!(
            err.reason(),
            "another rule has the same path shape and method"
        );
    }
}
