//! Scopes: whose key is it?
//!
//! An entry is found by (scope, key), so two clients that happen to send the
//! same key never see each other's responses. The scope is whatever identifies
//! the client: the authenticated principal an auth layer put in the request
//! extensions, an API key, a tenant.

use http::request::Parts;

/// Derives the scope of a request from its head.
///
/// `None` means the request cannot be scoped (it carries no identity); a keyed
/// request is then answered 400 and never reaches the store. Any closure
/// `Fn(&Parts) -> Option<String>` is a scope; set it with
/// [`IdempotencyLayer::scope`](super::IdempotencyLayer::scope).
///
/// The scope is hashed together with the key; it is never stored as is, so an
/// API key used as a scope does not end up in Redis.
///
/// ```
/// use steadfast::idempotency::{IdempotencyLayer, MemoryStore};
///
/// /// What your authentication layer puts in the request extensions.
/// #[derive(Clone)]
/// struct Principal { id: String }
///
/// let layer = IdempotencyLayer::new(MemoryStore::new())
///     .scope(|parts: &http::request::Parts| parts.extensions.get::<Principal>().map(|p| p.id.clone()));
/// # let _ = layer;
/// ```
pub trait Scope: Send + Sync + 'static {
    /// The scope of this request, or `None` when it has none.
    fn scope(&self, parts: &Parts) -> Option<String>;
}

/// One scope shared by every client: the default, fit only for a service with a
/// single client or for tests. **Production must set a scope.**
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalScope;

impl Scope for GlobalScope {
    fn scope(&self, _parts: &Parts) -> Option<String> {
        Some(String::new())
    }
}

impl<F> Scope for F
where
    F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
{
    fn scope(&self, parts: &Parts) -> Option<String> {
        self(parts)
    }
}
