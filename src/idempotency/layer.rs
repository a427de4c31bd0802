//! [`IdempotencyLayer`] and its builder.

use std::{borrow::Cow, sync::Arc, time::Duration};

use http::{HeaderName, Method, StatusCode};
use tower::Layer;

use super::{
    Idempotency,
    fingerprint::FingerprintSpec,
    scope::{GlobalScope, Scope},
    store::Store,
};

/// What the layer does when its store fails (down, slow, corrupt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStoreFailure {
    /// Answer 503 problem+json with `Retry-After`; the handler does not run. The
    /// default: without the store, the layer cannot promise exactly-once.
    #[default]
    FailClosed,
    /// Run the handler without deduplication, and store nothing: availability
    /// over exactly-once, for handlers whose effects are harmless to repeat or
    /// that are idempotent by themselves.
    FailOpen,
}

/// Which response statuses are stored and replayed; for any other the claim is
/// released, so a retry runs the handler again. Any closure
/// `Fn(StatusCode) -> bool` is one.
///
/// ```
/// use http::StatusCode;
/// use steadfast::idempotency::{DefaultStoreIf, IdempotencyLayer, MemoryStore, StoreIf};
///
/// // Store what the default stores, and 409 answers too.
/// let layer = IdempotencyLayer::new(MemoryStore::new())
///     .store_if(|status: StatusCode| status == StatusCode::CONFLICT || DefaultStoreIf.store(status));
/// # let _ = layer;
/// ```
pub trait StoreIf: Send + Sync + 'static {
    /// Whether a response with `status` is stored.
    fn store(&self, status: StatusCode) -> bool;
}

impl<F> StoreIf for F
where
    F: Fn(StatusCode) -> bool + Send + Sync + 'static,
{
    fn store(&self, status: StatusCode) -> bool {
        self(status)
    }
}

/// The statuses stored by default: everything below 500 except 408, 409 and 429
/// (and 1xx). A validation error (400, 422) replays as itself, as Stripe does; a
/// transient failure (408, 409, 429, any 5xx) is not stored, so a retry runs again.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultStoreIf;

impl StoreIf for DefaultStoreIf {
    fn store(&self, status: StatusCode) -> bool {
        !status.is_informational()
            && !status.is_server_error()
            && !matches!(status.as_u16(), 408 | 409 | 429)
    }
}

/// The default documentation the problems' `type` URIs point to (with an anchor
/// per problem).
pub const DEFAULT_DOCUMENTATION: &str =
    "https://docs.rs/steadfast/latest/steadfast/idempotency/index.html";

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) methods: Vec<Method>,
    /// The standard methods among `methods`, one bit each (see [`method_bit`]).
    pub(crate) method_mask: u16,
    pub(crate) required: bool,
    pub(crate) wait: Option<Duration>,
    pub(crate) lock_ttl: Duration,
    pub(crate) retention: Duration,
    pub(crate) max_request_bytes: usize,
    pub(crate) max_response_bytes: usize,
    pub(crate) fingerprint: FingerprintSpec,
    pub(crate) store_if: Arc<dyn StoreIf>,
    pub(crate) on_store_failure: OnStoreFailure,
    pub(crate) store_timeout: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) documentation: Cow<'static, str>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            methods: vec![Method::POST, Method::PATCH],
            method_mask: method_mask(&[Method::POST, Method::PATCH]),
            required: false,
            wait: None,
            lock_ttl: Duration::from_secs(60),
            retention: Duration::from_secs(24 * 60 * 60),
            max_request_bytes: 1024 * 1024,
            max_response_bytes: 1024 * 1024,
            fingerprint: FingerprintSpec::default(),
            store_if: Arc::new(DefaultStoreIf),
            on_store_failure: OnStoreFailure::FailClosed,
            store_timeout: Duration::from_secs(1),
            retry_after: Duration::from_secs(1),
            documentation: Cow::Borrowed(DEFAULT_DOCUMENTATION),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("methods", &self.methods)
            .field("required", &self.required)
            .field("wait", &self.wait)
            .field("lock_ttl", &self.lock_ttl)
            .field("retention", &self.retention)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("fingerprint", &self.fingerprint)
            .field("on_store_failure", &self.on_store_failure)
            .field("store_timeout", &self.store_timeout)
            .field("retry_after", &self.retry_after)
            .field("documentation", &self.documentation)
            .finish_non_exhaustive()
    }
}

impl Config {
    #[inline]
    pub(crate) fn applies_to(&self, method: &Method) -> bool {
        match method_bit(method) {
            Some(bit) => self.method_mask & bit != 0,
            None => self.methods.iter().any(|m| m == method),
        }
    }
}

/// The bit of a standard method in [`Config::method_mask`]; `None` for an
/// extension method. A match on the method's variant: no comparison of names.
#[inline]
fn method_bit(method: &Method) -> Option<u16> {
    let index = match *method {
        Method::OPTIONS => 0,
        Method::GET => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::HEAD => 5,
        Method::TRACE => 6,
        Method::CONNECT => 7,
        Method::PATCH => 8,
        _ => return None,
    };
    Some(1 << index)
}

/// The bits of the standard methods in `methods`.
fn method_mask(methods: &[Method]) -> u16 {
    methods
        .iter()
        .filter_map(method_bit)
        .fold(0, |mask, bit| mask | bit)
}

/// What every clone of the layer and its services shares.
pub(crate) struct Shared<St, Sc> {
    pub(crate) store: St,
    pub(crate) scope: Arc<Sc>,
    pub(crate) config: Config,
}

impl<St: Clone, Sc> Clone for Shared<St, Sc> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            scope: self.scope.clone(),
            config: self.config.clone(),
        }
    }
}

/// Applies [`Idempotency`] to a service. See the [module docs](super).
///
/// Configured with setters, as tower-http's layers are:
///
/// ```
/// use std::time::Duration;
/// use steadfast::idempotency::{IdempotencyLayer, MemoryStore};
///
/// let layer = IdempotencyLayer::new(MemoryStore::new())
///     .scope(|parts: &http::request::Parts| {
///         parts.headers.get("x-client-id")?.to_str().ok().map(str::to_owned)
///     })
///     .lock_ttl(Duration::from_secs(30))
///     .wait(Duration::from_secs(5));
/// # let _ = layer;
/// ```
pub struct IdempotencyLayer<St, Sc = GlobalScope> {
    /// Shared with every service the layer makes: `layer` is a reference count,
    /// however often a router calls it.
    shared: Arc<Shared<St, Sc>>,
}

impl<St, Sc> Clone for IdempotencyLayer<St, Sc> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<St, Sc> std::fmt::Debug for IdempotencyLayer<St, Sc> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<St: Store> IdempotencyLayer<St, GlobalScope> {
    /// The layer with its defaults over `store`. Set a [scope](Self::scope) for
    /// anything with more than one client.
    pub fn new(store: St) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                scope: Arc::new(GlobalScope),
                config: Config::default(),
            }),
        }
    }
}

impl<St, Sc> IdempotencyLayer<St, Sc> {
    /// The store.
    pub fn store(&self) -> &St {
        &self.shared.store
    }
}

impl<S, St, Sc> Layer<S> for IdempotencyLayer<St, Sc> {
    type Service = Idempotency<S, St, Sc>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency::new(inner, self.shared.clone())
    }
}

impl<St: Store, Sc: Scope> IdempotencyLayer<St, Sc> {
    /// Scopes keys by what `scope` returns for a request — the authenticated
    /// principal, an API key, a tenant: a [`Scope`], or any closure
    /// `Fn(&Parts) -> Option<String>`. **Set this in production**: without it,
    /// one scope is shared by every client, and two clients sending the same key
    /// would be answered each other's responses.
    ///
    /// `None` means the request has no identity: a keyed request is then answered
    /// 400 and never reaches the store.
    pub fn scope<Sc2: Scope>(self, scope: Sc2) -> IdempotencyLayer<St, Sc2> {
        let Shared { store, config, .. } = self.into_shared();
        IdempotencyLayer {
            shared: Arc::new(Shared {
                store,
                scope: Arc::new(scope),
                config,
            }),
        }
    }

    /// The shared part, to change: taken over when this is the only handle
    /// (configuration before the layer is used), copied otherwise.
    fn into_shared(self) -> Shared<St, Sc> {
        Arc::try_unwrap(self.shared).unwrap_or_else(|shared| (*shared).clone())
    }

    /// Changes the configuration.
    fn configure(self, set: impl FnOnce(&mut Config)) -> Self {
        let mut shared = self.into_shared();
        set(&mut shared.config);
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The methods deduplicated (default `POST` and `PATCH`); others pass through
    /// untouched, without a store access or an allocation.
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.configure(|config| {
            config.methods = methods.into_iter().collect();
            config.method_mask = method_mask(&config.methods);
        })
    }

    /// Whether a request without an `Idempotency-Key` is answered 400 (default
    /// false: it passes through, without deduplication).
    pub fn required(self, required: bool) -> Self {
        self.configure(|config| {
            config.required = required;
        })
    }

    /// Makes a duplicate that arrives while the first request is in flight wait
    /// up to `max` for it, and replay its response (or run, if the first released
    /// its claim), instead of being answered 409 at once (the default, as the
    /// draft describes).
    pub fn wait(self, max: Duration) -> Self {
        self.configure(|config| {
            config.wait = Some(max);
        })
    }

    /// How long a claim holds at most (default 60 s). After it, another request
    /// may take the key over — the claim of a process that died. Set it above
    /// the longest time the handler may take.
    pub fn lock_ttl(self, ttl: Duration) -> Self {
        self.configure(|config| {
            config.lock_ttl = ttl;
        })
    }

    /// How long a completed response is kept for replay (default 24 h).
    pub fn retention(self, retention: Duration) -> Self {
        self.configure(|config| {
            config.retention = retention;
        })
    }

    /// The largest request body buffered to fingerprint it (default 1 MiB); a
    /// larger keyed request is answered 413.
    pub fn max_request_bytes(self, max: usize) -> Self {
        self.configure(|config| {
            config.max_request_bytes = max;
        })
    }

    /// The largest response body stored (default 1 MiB). A larger response still
    /// reaches its client whole, but is not stored: its duplicates are answered
    /// 409 ("response not stored") and never run the handler again.
    pub fn max_response_bytes(self, max: usize) -> Self {
        self.configure(|config| {
            config.max_response_bytes = max;
        })
    }

    /// Adds a request header to the fingerprint (none by default), so that the
    /// same key with another value of it is answered 422.
    pub fn fingerprint_header(self, name: HeaderName) -> Self {
        self.configure(|config| {
            config.fingerprint.headers.push(name);
        })
    }

    /// Whether JSON bodies are canonicalised before fingerprinting (default true):
    /// whitespace and the order of object members then do not make a request
    /// different.
    pub fn canonical_json(self, canonical: bool) -> Self {
        self.configure(|config| {
            config.fingerprint.canonical_json = canonical;
        })
    }

    /// Which response statuses are stored and replayed (default
    /// [`DefaultStoreIf`]): a [`StoreIf`], or any closure `Fn(StatusCode) -> bool`.
    /// For any other status the claim is released, so a retry runs the handler
    /// again.
    pub fn store_if(self, store_if: impl StoreIf) -> Self {
        self.configure(|config| {
            config.store_if = Arc::new(store_if);
        })
    }

    /// What to do when the store fails (default [`OnStoreFailure::FailClosed`]).
    pub fn on_store_failure(self, policy: OnStoreFailure) -> Self {
        self.configure(|config| {
            config.on_store_failure = policy;
        })
    }

    /// The longest the layer waits for one store call (default 1 s); a slower
    /// store counts as failed.
    pub fn store_timeout(self, timeout: Duration) -> Self {
        self.configure(|config| {
            config.store_timeout = timeout;
        })
    }

    /// The `Retry-After` of 409 (in flight) and 503 (store failed) answers
    /// (default 1 s).
    pub fn retry_after(self, delay: Duration) -> Self {
        self.configure(|config| {
            config.retry_after = delay;
        })
    }

    /// The page documenting this endpoint's idempotency behaviour; the problems'
    /// `type` URIs are it plus an anchor (`#key-reused`, ...). Defaults to
    /// [`DEFAULT_DOCUMENTATION`], this module's docs.
    pub fn documentation(self, uri: impl Into<Cow<'static, str>>) -> Self {
        self.configure(|config| {
            config.documentation = uri.into();
        })
    }
}
