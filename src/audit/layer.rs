//! [`AuditLayer`]: which routes are audited, as which action.

use std::{
    borrow::Cow,
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::Arc,
};

use http::{Method, Request};
use tower::Layer;

use super::{Audit, Auditor, TrustedProxies};

/// Applies [`Audit`] to a service. See the [module docs](super).
///
/// Routes are the patterns of axum's router (`/campaigns/{id}`). Behind an axum
/// `Router` the request's `MatchedPath` is looked up as is; elsewhere (plain
/// tower or hyper, or outside the router) the path is matched segment by segment,
/// `{name}` matching any one segment and `{*name}` the rest (a static route
/// wins over a parameterised one, as in axum). A request that matches no route
/// passes straight through: a lookup, no allocation.
#[derive(Debug, Clone)]
pub struct AuditLayer {
    config: Arc<Config>,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) auditor: Auditor,
    pub(crate) rules: Vec<Rule>,
    /// Rule indexes by pattern: for axum's `MatchedPath`, and for paths equal
    /// to a static pattern.
    by_pattern: HashMap<Box<str>, Vec<usize>, BuildHasherDefault<PathHasher>>,
    /// The rules with `{param}` segments, matched segment by segment.
    dynamic: Vec<usize>,
    pub(crate) proxies: TrustedProxies,
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    method: Option<Method>,
    pub(crate) pattern: Box<str>,
    segments: Box<[Segment]>,
    /// Whether the last segment is `{*rest}`.
    rest: bool,
    /// The literal start of the pattern, up to its first parameter.
    prefix: Box<str>,
    pub(crate) action: Cow<'static, str>,
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(Box<str>),
    Param,
    Rest,
}

impl AuditLayer {
    /// A layer recording to `auditor`, auditing no route yet and trusting no proxy.
    pub fn new(auditor: Auditor) -> Self {
        Self {
            config: Arc::new(Config {
                auditor,
                rules: Vec::new(),
                by_pattern: HashMap::default(),
                dynamic: Vec::new(),
                proxies: TrustedProxies::none(),
            }),
        }
    }

    /// Audits `method` requests to `route` as `action`. The first matching
    /// route wins.
    pub fn route(self, method: Method, route: &str, action: impl Into<Cow<'static, str>>) -> Self {
        self.add(Some(method), route, action.into())
    }

    /// Audits requests of any method to `route` as `action`.
    pub fn route_any(self, route: &str, action: impl Into<Cow<'static, str>>) -> Self {
        self.add(None, route, action.into())
    }

    /// Which proxies may report the client address (default: none).
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        Arc::make_mut(&mut self.config).proxies = proxies;
        self
    }

    fn add(mut self, method: Option<Method>, route: &str, action: Cow<'static, str>) -> Self {
        let config = Arc::make_mut(&mut self.config);
        let index = config.rules.len();
        let rule = Rule::new(method, route, action);
        if rule.is_dynamic() {
            config.dynamic.push(index);
        }
        config.rules.push(rule);
        config
            .by_pattern
            .entry(route.into())
            .or_default()
            .push(index);
        self
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit::new(inner, self.config.clone())
    }
}

/// A word-at-a-time multiplicative hash for the route table, several times
/// cheaper than SipHash on short paths. The table is fixed at configuration and
/// only looked up per request, so a client choosing paths that collide can at
/// worst probe the few configured entries: there is no flooding to defend against.
#[derive(Default)]
pub(crate) struct PathHasher(u64);

impl PathHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    #[inline(always)]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for PathHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Mix the high bits down: the table uses both ends of the hash.
        self.0 ^ (self.0 >> 32)
    }
}

impl Config {
    /// The index of the rule `request` falls under.
    pub(crate) fn find<B>(&self, request: &Request<B>) -> Option<usize> {
        if self.rules.is_empty() {
            return None;
        }
        let method = request.method();
        #[cfg(feature = "axum")]
        if let Some(matched) = request.extensions().get::<axum::extract::MatchedPath>() {
            return self
                .by_pattern
                .get(matched.as_str())?
                .iter()
                .copied()
                .find(|&i| self.rules[i].allows(method));
        }
        let path = request.uri().path();
        let exact = self.by_pattern.get(path).and_then(|indexes| {
            indexes
                .iter()
                .copied()
                .find(|&i| self.rules[i].allows(method))
        });
        if exact.is_some() || self.dynamic.is_empty() {
            return exact;
        }
        let segments = path.bytes().filter(|&b| b == b'/').count() + 1;
        self.dynamic.iter().copied().find(|&i| {
            let rule = &self.rules[i];
            rule.fits(path, segments) && rule.allows(method) && rule.matches(path)
        })
    }
}

impl Rule {
    fn new(method: Option<Method>, route: &str, action: Cow<'static, str>) -> Self {
        let segments = parse_segments(route);
        let prefix = match route.find(['{', ':']) {
            Some(at) => &route[..at],
            None => route,
        };
        Self {
            method,
            pattern: route.into(),
            rest: matches!(segments.last(), Some(Segment::Rest)),
            prefix: prefix.into(),
            segments,
            action,
        }
    }

    fn is_dynamic(&self) -> bool {
        self.segments
            .iter()
            .any(|s| !matches!(s, Segment::Literal(_)))
    }

    /// Whether a path of `segments` segments can match, by its start and
    /// segment count alone: the cheap test that rejects most paths.
    fn fits(&self, path: &str, segments: usize) -> bool {
        let count = if self.rest {
            segments >= self.segments.len()
        } else {
            segments == self.segments.len()
        };
        count && path.starts_with(&*self.prefix)
    }

    fn allows(&self, method: &Method) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
    }

    fn matches(&self, path: &str) -> bool {
        let bytes = path.as_bytes();
        // The start of the next part; past the end once every part is used.
        let mut at = 0;
        for segment in &self.segments {
            if at > bytes.len() {
                return false;
            }
            let end = bytes[at..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(bytes.len(), |i| at + i);
            let part = &path[at..end];
            match segment {
                Segment::Rest => return end > at || end < bytes.len(),
                Segment::Literal(lit) if **lit == *part => {}
                Segment::Param if !part.is_empty() => {}
                _ => return false,
            }
            at = end + 1;
        }
        at > bytes.len()
    }
}

fn parse_segments(route: &str) -> Box<[Segment]> {
    route
        .split('/')
        .map(|s| {
            if s.starts_with("{*") && s.ends_with('}') {
                Segment::Rest
            } else if (s.starts_with('{') && s.ends_with('}') && !s.starts_with("{{"))
                || (s.starts_with(':') && s.len() > 1)
            {
                Segment::Param
            } else {
                Segment::Literal(s.into())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(route: &str, path: &str) -> bool {
        let rule = Rule::new(None, route, Cow::Borrowed("x"));
        let segments = path.bytes().filter(|&b| b == b'/').count() + 1;
        let by_count = rule.fits(path, segments);
        assert!(by_count || !rule.matches(path), "{route} {path}");
        by_count && rule.matches(path)
    }

    #[test]
    fn matches_segments() {
        assert!(matches("/login", "/login"));
        assert!(!matches("/login", "/login/"));
        assert!(!matches("/login", "/logins"));
        assert!(matches("/campaigns/{id}", "/campaigns/42"));
        assert!(!matches("/campaigns/{id}", "/campaigns/"));
        assert!(!matches("/campaigns/{id}", "/campaigns/42/send"));
        assert!(matches("/campaigns/{id}/send", "/campaigns/42/send"));
        assert!(matches("/files/{*path}", "/files/a/b/c"));
        assert!(!matches("/files/{*path}", "/files"));
        assert!(matches("/", "/"));
        assert!(!matches("/", "/x"));
    }
}
