//! Which circuit a request belongs to.

use http::{Extensions, Method, Uri};

/// Chooses the circuit of a request: `None` for the default circuit.
///
/// Any `Fn(&Method, &Uri, &Extensions) -> Option<String>` closure is one.
/// Keys should come from a bounded set (upstream hosts, routes), never from
/// client input: each new key keeps a circuit, up to
/// [`max_keys`](super::BreakerConfig::max_keys).
pub trait KeyFor: Send + Sync + 'static {
    /// The key of a request.
    fn key_for(&self, method: &Method, uri: &Uri, extensions: &Extensions) -> Option<String>;
}

impl<F> KeyFor for F
where
    F: Fn(&Method, &Uri, &Extensions) -> Option<String> + Send + Sync + 'static,
{
    fn key_for(&self, method: &Method, uri: &Uri, extensions: &Extensions) -> Option<String> {
        self(method, uri, extensions)
    }
}

/// One circuit per upstream host and port (for clients): a request without an
/// authority uses the default circuit.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByHost;

impl KeyFor for ByHost {
    fn key_for(&self, _: &Method, uri: &Uri, _: &Extensions) -> Option<String> {
        uri.authority().map(|a| a.as_str().to_ascii_lowercase())
    }
}

/// One circuit per route (for servers): axum's `MatchedPath` pattern when the
/// layer runs inside a `Router` (with the `axum` feature), else the URI path.
/// Prefer it inside the router: URI paths carry ids, an unbounded set.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByRoute;

impl KeyFor for ByRoute {
    fn key_for(&self, _: &Method, uri: &Uri, _extensions: &Extensions) -> Option<String> {
        #[cfg(feature = "axum")]
        if let Some(matched) = _extensions.get::<axum::extract::MatchedPath>() {
            return Some(matched.as_str().to_owned());
        }
        Some(uri.path().to_owned())
    }
}
